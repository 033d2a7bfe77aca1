"""Stochastic variational inference for any Pyro model/guide pair.

The ELBO comes from Pyro (``Trace_ELBO``, ``TraceEnum_ELBO``, ``TraceMeanField_ELBO``
and their JIT versions, through ``differentiable_loss``); the update is a plain
torch optimizer over the module's parameters. That keeps every parameter inside
the ``torch.nn.Module`` (no global param store), so a model saves with its
``state_dict`` and trains unchanged under DistributedDataParallel.
"""

from __future__ import annotations

__all__ = ["fit_svi", "guide_posterior", "make_elbo", "svi_loss"]

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
import pyro
import torch
from pyro import poutine

from ..core.base import Model
from .loop import train
from .options import parse_options

_ELBOS = {
    ("elbo", False): pyro.infer.Trace_ELBO,
    ("elbo", True): pyro.infer.JitTrace_ELBO,
    ("meanfield", False): pyro.infer.TraceMeanField_ELBO,
    ("meanfield", True): pyro.infer.JitTraceMeanField_ELBO,
    ("enum", False): pyro.infer.TraceEnum_ELBO,
    ("enum", True): pyro.infer.JitTraceEnum_ELBO,
}


def make_elbo(loss: str = "elbo", jit: bool = False, num_particles: int = 1, max_plate_nesting: int | None = None):
    if loss == "iwae":
        return _IWAE(num_particles)
    if (loss, bool(jit)) not in _ELBOS:
        raise ValueError(f"loss: expected 'elbo', 'meanfield', 'iwae' or 'enum', got {loss!r}")
    kw: dict[str, Any] = {"num_particles": num_particles, "vectorize_particles": num_particles > 1}
    if max_plate_nesting is not None:
        kw["max_plate_nesting"] = max_plate_nesting
    if jit:
        kw["ignore_jit_warnings"] = True
    return _ELBOS[(loss, bool(jit))](**kw)


class _IWAE:
    """The importance-weighted bound (Pyro's ``RenyiELBO`` at alpha 0, which has no differentiable loss)."""

    def __init__(self, num_particles: int):
        self.num_particles = num_particles

    def differentiable_loss(self, model, guide, *args):
        from .compiled import eager_loss

        return eager_loss(model, guide, args, "iwae", self.num_particles)


@contextlib.contextmanager
def _pyro_checks_off() -> Iterator[None]:
    """Pyro's own validation (``pyro.infer`` and ``pyro.poutine``) off within the block.

    torch's distribution argument checks (``validate_args``) stay as they are.
    """
    infer_on, poutine_on = pyro.infer.is_validation_enabled(), pyro.poutine.is_validation_enabled()
    pyro.infer.enable_validation(False)
    pyro.poutine.enable_validation(False)
    try:
        yield
    finally:
        pyro.infer.enable_validation(infer_on)
        pyro.poutine.enable_validation(poutine_on)


def svi_loss(model: Model, elbo, num_data: int, check_every_step: bool = False) -> Callable[[tuple], torch.Tensor]:
    """The loss ``fit_svi`` minimises: ``elbo.differentiable_loss`` of one minibatch per example.

    Pyro's validation (model/guide site matching, site shapes, NaN/inf warnings on every
    ``log_prob_sum`` plus a backward hook on each of them) runs on the first call only,
    unless ``check_every_step``. These checks change no value or gradient, but on a small
    model they are a large share of a step (0.4 of 2.5 ms for the reference regression at
    n=10,000, see ``probgen.bench.svi``); a model whose sites change from step to step can ask
    for them every step. torch's distribution argument checks stay on, and the training loop
    still raises on a NaN/inf loss at every step.
    """
    state = {"checked": False}

    def loss_fn(batch: tuple) -> torch.Tensor:
        with model.data_size(num_data):
            if check_every_step or not state["checked"]:
                loss = elbo.differentiable_loss(model.model, model.guide, *batch) / num_data
                state["checked"] = True
                return loss
            with _pyro_checks_off():
                return elbo.differentiable_loss(model.model, model.guide, *batch) / num_data

    return loss_fn


def fit_svi(model: Model, data: Any, **options: Any):
    """Fit ``model.model`` / ``model.guide`` by maximising the ELBO.

    Extra options: ``loss`` ("elbo", "meanfield", "iwae" or "enum"), ``jit`` (bool),
    ``num_particles``, ``check_every_step`` (bool: Pyro's validation on every step rather
    than the first only, see ``svi_loss``), ``compiled`` ("auto", True or False: run the loss as
    one traced torch function when the program is static, see ``probgen.infer.compiled``;
    "auto" does so for fits of at least ``AUTO_COMPILE_MIN_STEPS`` steps and falls back to Pyro
    with a one-line note, True raises ``NotStaticError`` naming the site that changed). The
    recorded loss is the negative ELBO per example.
    """
    opts = parse_options("svi", options, extra={"loss": "elbo", "jit": False, "num_particles": 1,
                                                "check_every_step": False, "compiled": "auto"})
    if not isinstance(opts.extra["check_every_step"], bool):
        raise ValueError(f"check_every_step: expected True or False, got {opts.extra['check_every_step']!r}")
    tensors = tuple(t.to(opts.device) for t in model.prepare_data(data))
    val = None if opts.validation is None else tuple(t.to(opts.device) for t in model.prepare_data(opts.validation, "validation"))
    model.to(opts.device)
    elbo = make_elbo(opts.extra["loss"], opts.extra["jit"], opts.extra["num_particles"],
                     getattr(model, "max_plate_nesting", None))
    n = len(tensors[0])

    loss_fn = svi_loss(model, elbo, n, opts.extra["check_every_step"])
    loss_fn = _maybe_compiled(model, opts, n, loss_fn)

    def eval_fn(batch):
        with model.data_size(len(batch[0])):
            return float(elbo.differentiable_loss(model.model, model.guide, *batch)) / len(batch[0])

    with contextlib.ExitStack() as stack:
        if opts.extra["jit"]:
            # Pyro's JIT ELBOs look parameters up in the global param store, which module-local
            # parameters bypass. For a JIT fit the module's own parameter tensors are registered in a
            # fresh, private store (the same tensors, so the optimizer and state_dict see every update).
            stack.enter_context(pyro.settings.context(module_local_params=False))
            stack.enter_context(pyro.get_param_store().scope())
        result = train(model, tensors, opts, engine="svi", loss_fn=loss_fn, eval_fn=eval_fn, val_tensors=val,
                       warmup=lambda b: loss_fn(b))
    result.posterior_fn = lambda num_samples: guide_posterior(model, tensors, num_samples, opts.seed)
    return result


#: ``compiled="auto"`` traces the loss only for fits at least this long: tracing costs about half a
#: second per input signature (the first in a process about two), which a short fit does not win back.
AUTO_COMPILE_MIN_STEPS = 1000


def _maybe_compiled(model: Model, opts, n: int, loss_fn: Callable) -> Callable:
    """The compiled loss where ``opts.extra["compiled"]`` asks for it and it applies, else ``loss_fn``."""
    from .compiled import LOSSES, CompiledELBO

    mode, ex = opts.extra["compiled"], opts.extra
    if mode not in ("auto", True, False):
        raise ValueError(f"compiled: expected 'auto', True or False, got {mode!r}")
    if mode is False:
        return loss_fn
    unsupported = ("loss='enum' (enumeration)" if ex["loss"] not in LOSSES else "jit=True" if ex["jit"]
                   else "check_every_step=True" if ex["check_every_step"] else "distributed=True"
                   if opts.distributed else None)
    if unsupported:
        if mode is True:
            raise ValueError(f"compiled: True does not go with {unsupported}; use compiled='auto' or False")
        return loss_fn
    if mode == "auto":
        batch = min(opts.batch_size or min(n, 256), n)
        steps = opts.steps or (opts.epochs * -(-n // batch) if opts.epochs else 1000)
        if steps < AUTO_COMPILE_MIN_STEPS:
            return loss_fn
    return CompiledELBO(model, loss=ex["loss"], num_particles=ex["num_particles"], num_data=n,
                        strict=mode is True, fallback=loss_fn)


def guide_posterior(model: Model, tensors: tuple, num_samples: int, seed: int | None = None):
    """Draws of the global latent sites from the guide, as ``arviz.InferenceData``."""
    import arviz as az

    from ..core.random import seeded

    draws: dict[str, list] = {}
    with seeded(seed), torch.no_grad(), model.data_size(len(tensors[0])):
        for _ in range(num_samples):
            trace = poutine.trace(model.guide).get_trace(*tensors)
            for name, site in trace.nodes.items():
                if site["type"] == "sample" and not site["is_observed"] and not site["cond_indep_stack"]:
                    draws.setdefault(name, []).append(site["value"].detach().cpu().numpy())
    if not draws:
        raise ValueError("to_arviz: the guide has no global latent sites to summarise")
    # The draws are independent, so splitting them into 4 "chains" is legitimate and
    # lets ArviZ compute r_hat (which should then be about 1).
    chains = 4 if num_samples >= 16 else 1
    keep = num_samples - num_samples % chains
    posterior = {k: np.stack(v)[:keep].reshape(chains, keep // chains, *np.shape(v[0])) for k, v in draws.items()}
    return az.from_dict(posterior=posterior)
