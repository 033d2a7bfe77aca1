"""A multilayer perceptron, the building block of the vector-data families."""

from __future__ import annotations

__all__ = ["MLP", "activation"]

from typing import Sequence

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU, "silu": nn.SiLU,
                "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Linear layers with an activation between them.

    Arguments:
        in_features: input size.
        out_features: output size.
        hidden: sizes of the hidden layers.
        act: activation between layers.
        out_act: optional activation after the last layer.

    Example:
        >>> MLP(3, 2, hidden=(8,))(torch.zeros(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (256, 256), act: str = "relu",
                 out_act: str | None = None):
        layers: list[nn.Module] = []
        sizes = [in_features, *hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), activation(act)]
        layers.append(nn.Linear(sizes[-1], out_features))
        if out_act is not None:
            layers.append(activation(out_act))
        super().__init__(*layers)
