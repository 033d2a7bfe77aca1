"""A moving average of a network's weights (EMA), as GANs keep for sampling and predictions."""

from __future__ import annotations

__all__ = ["update_average"]

import torch
from torch import nn


@torch.no_grad()
def update_average(owner: nn.Module, average: nn.Module, source: nn.Module, ema: float) -> None:
    """One EMA step of ``average`` towards ``source``, with a warm-up: decay ``min(ema, (1 + t) / (10 + t))``.

    ``owner.ema_steps`` counts the steps (kept in the owner's state, so it survives save/load); the
    parameter lists are cached on the owner (module traversal per step costs as much as a small step);
    buffers (batch-norm statistics) are copied, not averaged.

    Example:
        >>> import copy, torch
        >>> net = torch.nn.Linear(2, 1); avg = copy.deepcopy(net)
        >>> owner = torch.nn.Module(); owner.ema_steps = 0
        >>> with torch.no_grad(): _ = net.weight.add_(1.0)
        >>> update_average(owner, avg, net, ema=0.99)  # first step: decay 2/11
        >>> bool(torch.allclose(avg.weight, net.weight - 2 / 11))
        True
    """
    owner.ema_steps += 1
    t = float(owner.ema_steps)
    decay = min(ema, (1 + t) / (10 + t))
    pairs = owner.__dict__.get("_ema_pairs")
    if pairs is None:
        pairs = owner.__dict__["_ema_pairs"] = (list(average.parameters()), list(source.parameters()),
                                                list(average.buffers()), list(source.buffers()))
    torch._foreach_lerp_(pairs[0], pairs[1], 1 - decay)
    for b_average, b in zip(pairs[2], pairs[3]):
        b_average.copy_(b)
