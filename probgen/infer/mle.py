"""Maximum likelihood by gradient descent on a family's training loss.

The loss is ``model.training_loss(*batch)``, which defaults to the negative mean
``log_prob``; families with no likelihood (autoencoders) define a reconstruction
loss there instead.
"""

from __future__ import annotations

__all__ = ["fit_mle", "training_loss"]

from typing import Any, Callable

import torch

from ..core.base import Model
from .loop import train
from .options import parse_options
from .protocols import LossModel, satisfies


def _loss_of(model: Model) -> Callable[..., torch.Tensor]:
    """The model's per-minibatch loss, resolved once: its ``training_loss``, else the mean negative log_prob."""
    if satisfies(model, LossModel):
        return model.training_loss
    return lambda *batch: -model.log_prob(*batch).mean()


def training_loss(model: Model, *batch: torch.Tensor) -> torch.Tensor:
    return _loss_of(model)(*batch)


def fit_mle(model: Model, data: Any, **options: Any):
    """Minimise the family's training loss (negative log-likelihood by default)."""
    opts = parse_options("mle", options)
    tensors = tuple(t.to(opts.device) for t in model.prepare_data(data))
    val = None if opts.validation is None else tuple(t.to(opts.device) for t in model.prepare_data(opts.validation, "validation"))
    model.to(opts.device)
    per_batch = _loss_of(model)  # looked up once, not at every step
    loss = lambda batch: per_batch(*batch)  # noqa: E731
    return train(model, tensors, opts, engine="mle", loss_fn=loss, eval_fn=lambda b: float(loss(b)),
                 val_tensors=val, warmup=lambda b: loss(b))
