"""Markov chain Monte Carlo through ``pyro.infer.MCMC``.

Two uses share the name:

* posterior inference: NUTS (or HMC, or the family's own ``mcmc_kernel()``) over
  the latent sites of ``model.model``; several chains, returned as
  ``arviz.InferenceData`` with sample statistics;
* MCMC-based learning for energy models: when the family defines
  ``mcmc_step(batch, step) -> dict`` (contrastive divergence and the like), the
  shared training loop runs it; a family that also defines
  ``mcmc_steps(tensors, rows, batch_size, first_step) -> dict`` gets the loop's fused
  path (several minibatches per call, one history row per epoch or evaluation period).

Chains run one after the other in this process, each from its own seed: Pyro's
multi-chain mode forks worker processes, which is slow on two cores and breaks
in notebooks; sequential chains give the same draws on any machine.
"""

from __future__ import annotations

__all__ = ["fit_mcmc"]

import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from pyro.infer import HMC, MCMC

from ..core.base import Model
from ..core.checks import check_positive
from ..core.progress import progress_bar
from ..core.random import seeded
from ..core.result import FitResult
from .diagnostics import DepthRecordingNUTS
from .loop import train
from .options import parse_options
from .protocols import EnergyModel, OwnKernel, PosteriorModel, SegmentedChain, ValidatedModel, hook, satisfies


def fit_mcmc(model: Model, data: Any, **options: Any) -> FitResult:
    """Extra options (posterior inference): ``num_samples``, ``warmup_steps``,
    ``num_chains``, ``kernel`` ("nuts" or "hmc"), ``target_accept``, ``max_tree_depth``,
    ``compiled`` ("auto", True or False): when the model is static, its potential energy and
    gradient run as one traced graph (``probgen.infer.compiled.CompiledPotential``) and NUTS runs
    on a flat vector (``probgen.infer.flat_nuts``; HMC keeps Pyro's kernel with the compiled
    potential). The draws are then not Pyro's chain but the same posterior. "auto" falls back to
    Pyro with a one-line note when the model is not static; True raises ``NotStaticError``.
    """
    if satisfies(model, EnergyModel):
        opts = parse_options("mcmc", options)
        tensors = tuple(t.to(opts.device) for t in model.prepare_data(data))
        val = None if opts.validation is None else tuple(t.to(opts.device) for t in model.prepare_data(opts.validation, "validation"))
        model.to(opts.device)
        validation_loss = hook(model, ValidatedModel)
        eval_fn = (lambda b: float(validation_loss(*b))) if validation_loss is not None else None
        return train(model, tensors, opts, engine="mcmc", step_fn=model.mcmc_step, eval_fn=eval_fn, val_tensors=val,
                     segment_fn=hook(model, SegmentedChain))

    opts = parse_options("mcmc", options, extra={"num_samples": 500, "warmup_steps": None, "num_chains": 2,
                                                 "kernel": "nuts", "target_accept": 0.8, "max_tree_depth": 10,
                                                 "compiled": "auto"})
    ex = opts.extra
    for name in ("num_samples", "num_chains"):
        check_positive(name, ex[name], integer=True)
    warmup = ex["num_samples"] if ex["warmup_steps"] is None else check_positive("warmup_steps", ex["warmup_steps"], strict=False, integer=True)
    tensors = tuple(t.to(opts.device) for t in model.prepare_data(data))
    model.to(opts.device)
    start = time.perf_counter()
    chains: list[dict[str, torch.Tensor]] = []
    diverging: list[np.ndarray] = []
    depth_hits: list[np.ndarray] = []  # draws whose NUTS trajectory reached max_tree_depth
    base_seed = 0 if opts.seed is None else opts.seed
    compiled = _compiled_chains(model, tensors, ex, warmup, base_seed, opts.progress)
    if compiled is not None:
        chains, diverging = compiled
    for chain in range(0 if compiled is not None else ex["num_chains"]):
        kernel = _kernel(model, ex)
        sampler = MCMC(kernel, num_samples=ex["num_samples"], warmup_steps=warmup,
                       disable_progbar=not opts.progress)
        with seeded(base_seed + chain), model.data_size(len(tensors[0])):
            sampler.run(*tensors)
        chains.append({k: v.detach().cpu() for k, v in sampler.get_samples().items()})
        diag = sampler.diagnostics().get("divergences", {})
        flags = np.zeros(ex["num_samples"], dtype=bool)
        for idx in diag.get("chain 0", []):
            flags[int(idx)] = True
        diverging.append(flags)
        depth_hits.append(getattr(kernel, "max_depth_hits", None))
    samples = {k: torch.stack([c[k] for c in chains]) for k in chains[0]}
    if satisfies(model, PosteriorModel):
        model.set_posterior_samples({k: v.reshape(-1, *v.shape[2:]) for k, v in samples.items()})
    inference_data = _to_arviz(samples, np.stack(diverging),
                               None if None in depth_hits or len(depth_hits) != len(diverging)
                               else np.array(depth_hits, dtype=bool))  # the compiled path records no depths
    history = pd.DataFrame({"chain": np.repeat(np.arange(ex["num_chains"]), ex["num_samples"]),
                            "draw": np.tile(np.arange(ex["num_samples"]), ex["num_chains"]),
                            "diverging": np.concatenate(diverging)})
    return FitResult(model=model, engine="mcmc", history=history, wall_time=time.perf_counter() - start,
                     device=str(opts.device), inference_data=inference_data,
                     info={"num_chains": ex["num_chains"], "num_samples": ex["num_samples"], "warmup_steps": warmup,
                           "divergences": int(np.sum(diverging))})


def _compiled_chains(model: Model, tensors: tuple, ex: dict, warmup: int, base_seed: int, progress: bool):
    """The chains through the compiled potential, or ``None`` where that path does not apply."""
    import warnings

    from .compiled import CompileFallbackWarning, CompiledPotential, NotStaticError
    from .flat_nuts import run_nuts

    mode = ex["compiled"]
    if mode not in ("auto", True, False):
        raise ValueError(f"compiled: expected 'auto', True or False, got {mode!r}")
    if mode is False or satisfies(model, OwnKernel) or ex["kernel"] not in ("nuts", "hmc"):
        return None
    chains, diverging = [], []
    total = ex["num_chains"] * (warmup + ex["num_samples"])
    bar = progress_bar(total=total, enabled=progress, desc=f"{type(model).__name__} [mcmc, compiled]")
    try:
        for chain in range(ex["num_chains"]):
            with seeded(base_seed + chain), model.data_size(len(tensors[0])):
                potential = CompiledPotential(model, tensors, getattr(model, "max_plate_nesting", None))
                if ex["kernel"] == "hmc":
                    samples, flags = _pyro_hmc(potential, ex, warmup, progress)
                else:
                    out = run_nuts(potential.numpy_value_and_grad(), potential.pack(potential.initial_params).double().numpy(),
                                   warmup, ex["num_samples"], seed=base_seed + chain, target_accept=ex["target_accept"],
                                   max_tree_depth=ex["max_tree_depth"], progress=bar.update)
                    draws = torch.as_tensor(out.draws, dtype=potential.pack(potential.initial_params).dtype)
                    samples, flags = potential.constrain(potential.unpack(draws)), out.diverging
            chains.append({k: v.detach().cpu() for k, v in samples.items()})
            diverging.append(np.asarray(flags, dtype=bool))
    except NotStaticError as err:
        if mode is True:
            raise
        warnings.warn(f"{err}; running Pyro's NUTS instead", CompileFallbackWarning, stacklevel=3)
        return None
    finally:
        bar.close()
    return chains, diverging


def _pyro_hmc(potential, ex: dict, warmup: int, progress: bool):
    kernel = HMC(potential_fn=potential, transforms=potential.transforms, target_accept_prob=ex["target_accept"])
    sampler = MCMC(kernel, num_samples=ex["num_samples"], warmup_steps=warmup, initial_params=potential.initial_params,
                   transforms=potential.transforms, disable_progbar=not progress)
    sampler.run()
    flags = np.zeros(ex["num_samples"], dtype=bool)
    for idx in sampler.diagnostics().get("divergences", {}).get("chain 0", []):
        flags[int(idx)] = True
    return sampler.get_samples(), flags


def _kernel(model: Model, ex: dict):
    own = hook(model, OwnKernel)
    if own is not None:
        return own()
    kw = {"max_plate_nesting": getattr(model, "max_plate_nesting", None)}
    kw = {k: v for k, v in kw.items() if v is not None}
    if ex["kernel"] == "nuts":
        return DepthRecordingNUTS(model.model, target_accept_prob=ex["target_accept"], max_tree_depth=ex["max_tree_depth"], **kw)
    if ex["kernel"] == "hmc":
        return HMC(model.model, target_accept_prob=ex["target_accept"], **kw)
    raise ValueError(f"kernel: expected 'nuts' or 'hmc', got {ex['kernel']!r}")


def _to_arviz(samples: dict[str, torch.Tensor], diverging: np.ndarray, depth_hits: np.ndarray | None = None):
    import arviz as az

    posterior = {k: v.numpy() for k, v in samples.items()}
    stats = {"diverging": diverging}
    if depth_hits is not None:
        stats["reached_max_treedepth"] = depth_hits
    return az.from_dict(posterior=posterior, sample_stats=stats)
