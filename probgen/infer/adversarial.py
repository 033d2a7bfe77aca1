"""Adversarial training: alternate critic and generator updates.

A family provides ``critic_loss(*batch)``, ``generator_loss(*batch)``,
``critic_parameters()`` and ``generator_parameters()``; optionally
``after_generator_step()`` (for EMA weights), ``validation_loss(*batch)``, and for the fit's
diagnostics ``critic_equilibrium_loss`` (the critic's loss at no skill) and
``diagnostic_samples(*batch) -> (real, generated, groups)``.
"""

from __future__ import annotations

__all__ = ["fit_adversarial", "adversarial_step", "StepHooks"]

import contextlib
from typing import Any, Callable, Iterator

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
    private = None
    if opts.privacy is not None:  # DP-GAN: a private critic around the same step (infer/privacy.py)
        from .privacy import PrivateCritic

        private = PrivateCritic(model, tensors, opts)
    betas = tuple(opts.extra["betas"])
    opt_g = make_optimizer(model.generator_parameters(), opts, betas=betas, foreach=True)
    opt_c = make_optimizer(model.critic_parameters(), opts, lr=opts.extra["critic_lr"] or opts.lr, betas=betas,
                           foreach=True)
    if opts.distributed:
        synchronize_gradients(opt_g)
        synchronize_gradients(opt_c)
    validation_loss = hook(model, ValidatedModel)
    eval_fn = (lambda b: float(validation_loss(*b))) if validation_loss is not None else None
    with private if private is not None else contextlib.nullcontext():
        if private is not None:
            opt_c, opts = private.optimizer(opt_c), private.options
        step_fn = adversarial_step(model, opt_c, opt_g, int(opts.extra["num_critic"]), private)
        result = train(model, tensors, opts, engine="adversarial", step_fn=step_fn, eval_fn=eval_fn, val_tensors=val)
    probe = hook(model, CollapseProbe)
    if private is not None:
        # no sample-spread diagnostic: it reads the records outside the privacy budget
        result.info["privacy"] = private.report()
    elif probe is not None:  # for the sample-collapse check of result.diagnostics()
        with seeded(opts.seed):
            result.info["sample_spread"] = sample_spread(*probe(*(t[:512] for t in tensors)))
    return result


class StepHooks:
    """What ``adversarial_step`` lets a caller change around its shared step; these defaults change nothing.

    Private training (``probgen.infer.privacy``) overrides them: the critic reads a Poisson sample of
    the records, its per-record gradients are paired and clipped, the privacy accountant steps, and
    the generator step runs with the per-record hooks off on a batch that holds no record.
    """

    def critic_batch(self, batch: tuple) -> tuple:
        """The batch the critic step reads (default: the loop's batch)."""
        return batch

    @contextlib.contextmanager
    def critic_backward(self, batch: tuple, record: dict) -> Iterator[None]:
        """Wraps the critic's loss and backward pass (which are skipped for an empty batch)."""
        yield

    def after_critic(self) -> None:
        """Runs after the critic's optimizer step."""

    @contextlib.contextmanager
    def generator(self, batch: tuple) -> Iterator[tuple]:
        """Wraps the generator's update; yields the batch its loss reads (default: the critic's)."""
        yield batch


def adversarial_step(model: Any, opt_c: Any, opt_g: Any, num_critic: int = 1,
                     hooks: StepHooks | None = None) -> Callable[[tuple, int], dict]:
    """The one training step of the adversarial engine, ordinary or private: a critic update on
    ``batch`` and, every ``num_critic``-th call, a generator update. ``hooks`` (a ``StepHooks``)
    wraps its parts; returns ``step_fn(batch, step) -> record`` for ``loop.train``.

    Example:
        >>> import torch, probgen
        >>> from probgen.infer.loop import make_optimizer
        >>> from probgen.infer.options import parse_options
        >>> gan = probgen.models.GAN(data_shape=(2,), hidden=(8,))
        >>> opts = parse_options("adversarial", {"seed": 0})
        >>> opt_g = make_optimizer(gan.generator_parameters(), opts)
        >>> opt_c = make_optimizer(gan.critic_parameters(), opts)
        >>> step = adversarial_step(gan, opt_c, opt_g, num_critic=2)
        >>> sorted(step((torch.randn(16, 2),), 0)), sorted(step((torch.randn(16, 2),), 1))
        (['critic_loss'], ['critic_loss', 'generator_loss', 'loss'])
    """
    hooks = hooks if hooks is not None else StepHooks()
    after_generator_step = hook(model, GeneratorHook)
    count = 0

    def step_fn(batch: tuple, step: int) -> dict:
        nonlocal count
        batch = hooks.critic_batch(batch)
        record: dict = {}
        opt_c.zero_grad(set_to_none=True)
        with hooks.critic_backward(batch, record):
            if len(batch[0]):
                critic = model.critic_loss(*batch)
                critic.backward()
                record["critic_loss"] = float(critic.detach())
        opt_c.step()
        hooks.after_critic()
        count += 1
        if count % num_critic == 0:
            with hooks.generator(batch) as gen_batch:
                opt_g.zero_grad(set_to_none=True)
                gen = model.generator_loss(*gen_batch)
                gen.backward()
                opt_g.step()
            if after_generator_step is not None:
                after_generator_step()
            record["generator_loss"] = float(gen.detach())
            record["loss"] = record["generator_loss"]
        return record

    return step_fn
