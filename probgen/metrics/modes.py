"""Mode collapse on Gaussian mixtures: the PacGAN / VEEGAN protocol."""

from __future__ import annotations

__all__ = ["modes_covered"]

from typing import Any

import numpy as np
import torch

from ..core.checks import as_tensor, check_positive


def modes_covered(samples: Any, means: Any = None, sigma: float | None = None, *, dataset: str | None = None,
                  threshold: float = 3.0, min_count: int = 1) -> dict:
    """Modes covered, share of high-quality samples and reverse KL over modes.

    A sample is *high quality* when it lies within ``threshold`` standard
    deviations of its nearest mode (Lin et al. 2018, PacGAN, Table 1); a mode is
    *covered* when at least ``min_count`` high-quality samples fall on it. The
    reverse KL is KL(generated mode frequencies || uniform), computed over the
    high-quality samples (0 when every mode gets the same share).

    Arguments:
        samples: generated points, shape ``(n, d)``.
        means, sigma: the mixture's modes ``(k, d)`` and standard deviation;
            or ``dataset="ring8" | "grid25"`` to take them from ``probgen.datasets``.

    Example:
        >>> import torch
        >>> means = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
        >>> r = modes_covered(torch.tensor([[0.0, 0.01], [1.0, 0.99], [5.0, 5.0]]), means, 0.05)
        >>> r["modes"], round(r["high_quality"], 3)
        (2, 0.667)
    """
    if dataset is not None:
        from ..datasets._catalog import mixture_modes

        means, sigma = mixture_modes(dataset)
    if means is None or sigma is None:
        raise ValueError("modes_covered: give means and sigma, or dataset='ring8' | 'grid25'")
    check_positive("sigma", sigma)
    x = as_tensor(samples, "samples", ndim=2).double()
    mu = as_tensor(means, "means", ndim=2).double()
    if x.shape[1] != mu.shape[1]:
        raise ValueError(f"modes_covered: samples have {x.shape[1]} dimensions but means have {mu.shape[1]}")
    dist = torch.cdist(x, mu)
    nearest = dist.argmin(dim=1)
    good = dist.gather(1, nearest[:, None])[:, 0] <= threshold * float(sigma)
    counts = np.bincount(nearest[good].numpy(), minlength=len(mu))
    k = len(mu)
    freq = counts / max(1, counts.sum())
    nz = freq > 0
    reverse_kl = float(np.sum(freq[nz] * np.log(freq[nz] * k))) if counts.sum() else float("inf")
    return {"modes": int((counts >= min_count).sum()), "num_modes": k, "high_quality": float(good.double().mean()),
            "reverse_kl": reverse_kl, "counts": counts}
