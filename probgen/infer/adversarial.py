"""Adversarial training: alternate critic and generator updates.

A family provides ``critic_loss(*batch)``, ``generator_loss(*batch)``,
``critic_parameters()`` and ``generator_parameters()``; optionally
``after_generator_step()`` (for EMA weights), ``validation_loss(*batch)``, and for the fit's
diagnostics ``critic_equilibrium_loss`` (the critic's loss at no skill) and
``diagnostic_samples(*batch) -> (real, generated, groups)``.
"""

from __future__ import annotations

__all__ = ["fit_adversarial"]

from typing import Any

from ..core.base import Model
from ..core.random import seeded
from .diagnostics import sample_spread
from .loop import make_optimizer, synchronize_gradients, train
from .options import parse_options
from .protocols import AdversarialModel, CollapseProbe, GeneratorHook, ValidatedModel, hook, members, satisfies


def fit_adversarial(model: Model, data: Any, **options: Any):
    """Extra options: ``num_critic`` (critic steps per generator step), ``critic_lr``, ``betas``."""
    if not satisfies(model, AdversarialModel):
        missing = [name for name in members(AdversarialModel) if not callable(getattr(type(model), name, None))]
        raise ValueError(f"inference: {type(model).__name__} cannot be trained adversarially (it lacks {missing})")
    opts = parse_options("adversarial", options, extra={"num_critic": 1, "critic_lr": None, "betas": (0.5, 0.999)},
                         defaults={"lr": 2e-4})
    tensors = tuple(t.to(opts.device) for t in model.prepare_data(data))
    val = None if opts.validation is None else tuple(t.to(opts.device) for t in model.prepare_data(opts.validation, "validation"))
    model.to(opts.device)
    if opts.privacy is not None:  # DP-GAN: a private critic (infer/privacy.py)
        from .privacy import fit_adversarial_private

        return fit_adversarial_private(model, tensors, val, opts)
    betas = tuple(opts.extra["betas"])
    opt_g = make_optimizer(model.generator_parameters(), opts, betas=betas, foreach=True)
    opt_c = make_optimizer(model.critic_parameters(), opts, lr=opts.extra["critic_lr"] or opts.lr, betas=betas,
                           foreach=True)
    if opts.distributed:
        synchronize_gradients(opt_g)
        synchronize_gradients(opt_c)
    num_critic = int(opts.extra["num_critic"])
    after_generator_step = hook(model, GeneratorHook)
    pending: list = []

    def step_fn(batch, step):
        pending.append(batch)
        opt_c.zero_grad(set_to_none=True)
        critic = model.critic_loss(*batch)
        critic.backward()
        opt_c.step()
        record = {"critic_loss": float(critic.detach())}
        if len(pending) >= num_critic:
            pending.clear()
            opt_g.zero_grad(set_to_none=True)
            gen = model.generator_loss(*batch)
            gen.backward()
            opt_g.step()
            if after_generator_step is not None:
                after_generator_step()
            record["generator_loss"] = float(gen.detach())
            record["loss"] = record["generator_loss"]
        return record

    validation_loss = hook(model, ValidatedModel)
    eval_fn = (lambda b: float(validation_loss(*b))) if validation_loss is not None else None
    result = train(model, tensors, opts, engine="adversarial", step_fn=step_fn, eval_fn=eval_fn, val_tensors=val)
    probe = hook(model, CollapseProbe)
    if probe is not None:  # for the sample-collapse check of result.diagnostics()
        with seeded(opts.seed):
            result.info["sample_spread"] = sample_spread(*probe(*(t[:512] for t in tensors)))
    return result
