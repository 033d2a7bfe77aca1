"""Inference engines, chosen by name: ``svi``, ``mcmc``, ``mle``, ``adversarial``, ``exact``.

A family may implement an engine its own way as ``_fit_<name>(data, **options)``
(Bayesian networks count, Markov chains solve in closed form); otherwise the
generic engine here runs on its Pyro program or its loss.
"""

from __future__ import annotations

__all__ = ["run", "available", "FitOptions", "parse_options", "train", "map_shards"]

import time
from typing import Any, Callable

from ..core.base import Model
from ..core.checks import unknown_key
from ..core.result import FitResult
from .adversarial import fit_adversarial
from .distributed import fit_distributed, map_shards, world
from .exact import fit_exact
from .loop import train
from .mcmc import fit_mcmc
from .mle import fit_mle
from .options import FitOptions, parse_options
from .svi import fit_svi

ENGINES: dict[str, Callable[..., FitResult]] = {
    "svi": fit_svi,
    "mcmc": fit_mcmc,
    "mle": fit_mle,
    "adversarial": fit_adversarial,
    "exact": fit_exact,
}


def available(model: Model | None = None) -> list[str]:
    """Engine names; for a model, also the ones it implements itself."""
    names = set(ENGINES)
    if model is not None:
        names |= {a[len("_fit_"):] for a in dir(type(model)) if a.startswith("_fit_")}
    return sorted(names)


def run(model: Model, data: Any, inference: str | None = None, **options: Any) -> FitResult:
    """Fit ``model`` to ``data`` with the engine named ``inference``.

    Example:
        >>> import probgen, torch
        >>> m = probgen.models.BayesianLinearRegression(n_features=1)
        >>> x = torch.linspace(-1, 1, 20)[:, None]
        >>> r = probgen.fit(m, (x, 2 * x[:, 0]), steps=5, progress=False, seed=0)
        >>> r.engine
        'svi'
    """
    if not isinstance(model, Model):
        raise ValueError(f"model: expected a probgen model, got {type(model).__name__}")
    name = model.default_inference if inference is None else inference
    if not isinstance(name, str):
        raise ValueError(f"inference: expected an engine name, got {name!r}")
    own = getattr(model, f"_fit_{name}", None)
    if own is None and name not in ENGINES:
        raise unknown_key("inference engine", name, available(model))
    if options.get("distributed") and not world().active:
        return fit_distributed(model, data, inference=name, **options)
    start = time.perf_counter()
    result = own(data, **options) if own is not None else ENGINES[name](model, data, **options)
    if not isinstance(result, FitResult):
        result = FitResult(model=model, engine=name, info=dict(result or {}))
    if not result.wall_time:
        result.wall_time = time.perf_counter() - start
    result.engine = name
    return result
