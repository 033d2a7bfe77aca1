"""Full-reference image quality: PSNR and SSIM per image, for images in ``[0, data_range]``."""

from __future__ import annotations

__all__ = ["psnr", "ssim"]

from typing import Any

import torch
from torch.nn import functional as F

from ..core.checks import as_tensor, check_positive


def _pair(reference: Any, estimate: Any, ndim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    a = as_tensor(reference, "reference", ndim=ndim)
    b = as_tensor(estimate, "estimate", ndim=ndim).to(a.device)
    if a.shape != b.shape:
        raise ValueError(f"estimate: expected shape {tuple(a.shape)} like reference, got {tuple(b.shape)}")
    if not len(a):
        raise ValueError("reference: expected at least one image, got none")
    return a, b


def psnr(reference: Any, estimate: Any, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per example, in dB (higher is better).

    Example:
        >>> round(float(psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1))[0]), 1)
        20.0
    """
    check_positive("data_range", data_range)
    a, b = _pair(reference, estimate)
    mse = (a - b).pow(2).reshape(len(a), -1).mean(-1).clamp_min(1e-12)
    return 10 * torch.log10(data_range ** 2 / mse)


def ssim(reference: Any, estimate: Any, window: int = 7, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image ``(n, c, h, w)`` (Wang et al. 2004; Gaussian window).

    Example:
        >>> x = torch.rand(2, 1, 16, 16)
        >>> torch.allclose(ssim(x, x), torch.ones(2))
        True
    """
    a, b = _pair(reference, estimate, ndim=4)
    check_positive("window", window, integer=True)
    check_positive("sigma", sigma)
    if min(a.shape[-2:]) < window:
        raise ValueError(f"window: {window} pixels is larger than the images ({tuple(a.shape[-2:])})")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    r = torch.arange(window, dtype=a.dtype, device=a.device) - window // 2
    g = torch.exp(-r ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :])[None, None].expand(a.shape[1], 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, k, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    saa = blur(a * a) - mu_a ** 2
    sbb = blur(b * b) - mu_b ** 2
    sab = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.reshape(len(a), -1).mean(1)
