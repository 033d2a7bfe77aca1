"""Inference engines, chosen by name: ``svi``, ``mcmc``, ``mle``, ``adversarial``, ``exact``.

Each generic engine states what it needs of a model as a protocol (``probgen.infer.protocols``);
a family that runs an engine its own way (Bayesian networks count, Markov chains solve in
closed form) marks the method with ``@probgen.core.implements("name")``. ``available(model)``
lists exactly the engines a model can be fitted with, and ``run`` refuses any other with an
error that names them.
"""

from __future__ import annotations

__all__ = ["run", "available", "Engine", "ENGINES", "FitOptions", "parse_options", "train", "map_shards", "FitWarning"]

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..core.base import Model
from ..core.checks import unknown_key
from ..core.result import FitResult
from .adversarial import fit_adversarial
from .diagnostics import FitWarning, warn_if_untrusted
from .distributed import fit_distributed, map_shards, world
from .loop import train
from .mcmc import fit_mcmc
from .mle import fit_mle
from .options import FitOptions, parse_options
from .protocols import (AdversarialModel, EnergyModel, LikelihoodModel, LossModel, PosteriorModel, VariationalModel,
                        satisfies)
from .svi import fit_svi


@dataclass(frozen=True)
class Engine:
    """A generic engine: its fit function, and the test of whether a model has what it needs."""

    fit: Callable[..., FitResult]
    supports: Callable[[Model], bool]
    needs: str


# engine names that exist only as families' own implementations (no generic version)
_CLOSED_FORM = ("exact", "bayes")


def _has_parameters(model: Model) -> bool:
    return any(True for _ in model.parameters())


ENGINES: dict[str, Engine] = {
    "svi": Engine(fit_svi, lambda m: satisfies(m, VariationalModel), "a Pyro model and guide"),
    "mcmc": Engine(fit_mcmc, lambda m: satisfies(m, EnergyModel) or satisfies(m, PosteriorModel),
                   "mcmc_step (energy models) or a Pyro model with set_posterior_samples"),
    "mle": Engine(fit_mle, lambda m: satisfies(m, LossModel)
                  or (satisfies(m, LikelihoodModel) and m.log_prob_kind == "exact" and _has_parameters(m)),
                  "training_loss, or an exact log_prob of trainable parameters"),
    "adversarial": Engine(fit_adversarial, lambda m: satisfies(m, AdversarialModel),
                          "critic and generator losses and parameters"),
}


def available(model: Model | None = None) -> list[str]:
    """Engine names: all of them, or those ``model`` can be fitted with.

    Example:
        >>> import probgen
        >>> available(probgen.models.MarkovChain())
        ['bayes', 'exact']
    """
    if model is None:
        return sorted(set(ENGINES) | set(_CLOSED_FORM))
    names = {name for name, engine in ENGINES.items() if engine.supports(model)}
    names -= set(type(model).declined_engines)
    names |= set(type(model).own_engines)
    return sorted(names)


def run(model: Model, data: Any, inference: str | None = None, **options: Any) -> FitResult:
    """Fit ``model`` to ``data`` with the engine named ``inference``.

    Example:
        >>> import probgen, torch
        >>> m = probgen.models.BayesianLinearRegression(num_features=1)
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
    cls = type(model)
    if name in cls.declined_engines:
        raise ValueError(f"inference: {name!r} does not apply: {cls.declined_engines[name]}")
    if name not in available(model):
        if name in ENGINES or name in _CLOSED_FORM:
            needs = ENGINES[name].needs if name in ENGINES else "a closed-form fit the family implements itself"
            raise ValueError(f"inference: the {cls.family!r} family cannot be fitted with {name!r} (that engine needs "
                             f"{needs}); valid engines for it: {', '.join(available(model))}")
        raise unknown_key("inference engine", name, available(model))
    if options.get("privacy") is not None:
        from .privacy import check_engine

        check_engine(model, name, options.get("distributed"))
    if options.get("seed") is not None:  # the seed fixes the initial weights too, unless fitted or set
        model.seed_initial_weights(options["seed"])
    if options.get("distributed") and not world().active:
        result = fit_distributed(model, data, inference=name, **options)
        model._forget_initial_weights()
        warn_if_untrusted(result)
        return result
    start = time.perf_counter()
    own = cls.own_engines.get(name)
    result = getattr(model, own)(data, **options) if own is not None else ENGINES[name].fit(model, data, **options)
    model._forget_initial_weights()
    if not isinstance(result, FitResult):
        result = FitResult(model=model, engine=name, info=dict(result or {}))
    if options.get("privacy") is not None and "privacy" not in result.info:
        raise ValueError(f"privacy: the {cls.family!r} family's own {name!r} engine does not train through DP-SGD; "
                         "the model was fitted WITHOUT privacy and must not be released as private")
    if not result.wall_time:
        result.wall_time = time.perf_counter() - start
    result.engine = name
    warn_if_untrusted(result)  # a probgen.FitWarning when a diagnostic check fails
    return result
