"""Denoising with any reconstructing model, noise makers and the PSNR figure of merit."""

from __future__ import annotations

__all__ = ["denoise", "add_noise", "gaussian_blur"]

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..core.checks import as_tensor, check_choice, check_positive, check_probability
from ..core.random import seeded


def denoise(model: Any, x: Any) -> torch.Tensor:
    """Denoised examples: ``model.reconstruct(x)`` (or ``decode(encode(x))``).

    A denoising autoencoder (``Autoencoder(corruption=...)``) is trained for this; a
    VAE or plain autoencoder also projects onto what it learnt.

    Example:
        >>> import torch, probgen
        >>> x = torch.rand(32, 16)
        >>> ae = probgen.models.Autoencoder(latent_dim=4, hidden=(16,), corruption="gaussian")
        >>> _ = ae.fit(x, steps=5, progress=False, seed=0)
        >>> probgen.tasks.denoise(ae, x).shape
        torch.Size([32, 16])
    """
    if hasattr(model, "reconstruct"):
        return model.reconstruct(x)
    if hasattr(model, "encode") and hasattr(model, "decode"):
        return model.decode(model.encode(x))
    raise ValueError(f"model: expected a model with reconstruct or encode/decode, got {type(model).__name__}")


def add_noise(x: Any, kind: str = "gaussian", level: float = 0.3, seed: int | None = 0, clip: bool = True) -> torch.Tensor:
    """``x`` corrupted: ``"gaussian"`` (std ``level``), ``"masking"`` or ``"salt_pepper"`` (fraction ``level``)."""
    x = as_tensor(x, "x")
    check_choice("kind", kind, ("gaussian", "masking", "salt_pepper"))
    check_positive("level", level)
    with seeded(seed):
        if kind == "gaussian":
            y = x + level * torch.randn_like(x)
            return y.clamp(0, 1) if clip else y
        check_probability("level", level)
        if kind == "masking":
            return x * (torch.rand_like(x) >= level)
        flip = torch.rand_like(x) < level
        return torch.where(flip, (torch.rand_like(x) < 0.5).to(x.dtype), x)


def gaussian_blur(x: Any, sigma: float = 1.0) -> torch.Tensor:
    """Images ``(n, c, h, w)`` blurred by a Gaussian kernel of std ``sigma`` pixels (a classic denoiser)."""
    x = as_tensor(x, "x", ndim=4)
    check_positive("sigma", sigma)
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = F.pad(x, (radius, radius, radius, radius), mode="reflect" if min(x.shape[-2:]) > radius else "replicate")
    out = F.conv2d(pad, k.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, k.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
