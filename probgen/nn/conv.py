"""Convolutional encoder and decoder for images of any size, sized from the data shape."""

from __future__ import annotations

__all__ = ["ConvEncoder", "ConvDecoder"]

import math
from typing import Sequence

import torch
from torch import nn

from .mlp import activation


def _check_shape(name: str, shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{name}: expected an image shape (channels, height, width), got {shape}")
    return shape  # type: ignore[return-value]


def _halvings(size: tuple[int, int], times: int) -> list[tuple[int, int]]:
    sizes = [size]
    for _ in range(times):
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


class ConvEncoder(nn.Module):
    """Strided 3x3 convolutions (each halves height and width), then a linear layer.

    Arguments:
        in_shape: image shape ``(channels, height, width)``.
        out_dim: size of the output vector.
        channels: channels of the convolution layers (one halving each).
        act: activation between layers (``"relu"``, ``"leaky_relu"``, ...).

    Example:
        >>> ConvEncoder((1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_shape: Sequence[int], out_dim: int, channels: Sequence[int] = (32, 64), act: str = "relu"):
        super().__init__()
        c, h, w = _check_shape("in_shape", in_shape)
        if not channels:
            raise ValueError("channels: expected at least one convolution layer")
        layers: list[nn.Module] = []
        previous = c
        for ch in channels:
            layers += [nn.Conv2d(previous, int(ch), 3, stride=2, padding=1), activation(act)]
            previous = int(ch)
        self.features = nn.Sequential(*layers, nn.Flatten())
        last_h, last_w = _halvings((h, w), len(channels))[-1]
        self.out = nn.Linear(previous * last_h * last_w, int(out_dim))
        self.in_shape = (c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class ConvDecoder(nn.Module):
    """A linear layer to a small feature map, then (upsample, 3x3 convolution) stages.

    Each stage doubles the resolution (exactly back to the sizes an encoder with the
    same number of layers goes through, so odd sizes such as 7 -> 14 -> 28 work);
    the output has ``out_shape`` and no final activation (logits or means).

    Arguments:
        latent_dim: size of the input vector.
        out_shape: image shape ``(channels, height, width)``.
        channels: channels of the stages, from the smallest feature map up.
        act: activation between layers.

    Example:
        >>> ConvDecoder(10, (1, 28, 28))(torch.zeros(2, 10)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, latent_dim: int, out_shape: Sequence[int], channels: Sequence[int] = (64, 32), act: str = "relu"):
        super().__init__()
        c, h, w = _check_shape("out_shape", out_shape)
        if not channels:
            raise ValueError("channels: expected at least one upsampling stage")
        channels = [int(ch) for ch in channels]
        sizes = _halvings((h, w), len(channels))
        self.start = (channels[0], *sizes[-1])
        self.fc = nn.Sequential(nn.Linear(int(latent_dim), channels[0] * sizes[-1][0] * sizes[-1][1]), activation(act))
        layers: list[nn.Module] = []
        for i, ch in enumerate(channels):
            target = sizes[len(channels) - 1 - i]
            nxt = channels[i + 1] if i + 1 < len(channels) else c
            layers += [nn.Upsample(size=target, mode="nearest"), nn.Conv2d(ch, nxt, 3, padding=1)]
            if i + 1 < len(channels):
                layers.append(activation(act))
        self.net = nn.Sequential(*layers)
        self.out_shape = (c, h, w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).reshape(len(z), *self.start))
