"""Fidelity and diversity: precision / recall / density / coverage and α-precision / β-recall.

References:
    Naeem, Oh, Uh, Choi, Yoo 2020, Reliable fidelity and diversity metrics for
    generative models (ICML); Kynkäänniemi et al. 2019, Improved precision and
    recall metric; Alaa, van Breugel, Saveliev, van der Schaar 2022, How faithful
    is your synthetic data? (α-precision, β-recall, authenticity).
"""

from __future__ import annotations

__all__ = ["precision_recall", "alpha_precision_beta_recall"]

from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.checks import check_positive
from ._common import embed_pair, exact_distances, knn_distances, pairwise_blocks, rounding_band, subsample


def precision_recall(real: Any, fake: Any, k: int = 5, *, features: Any = None, max_samples: int | None = 10_000,
                     seed: int = 0, _cache: dict | None = None) -> dict:
    """Precision, recall, density and coverage with k-nearest-neighbour balls.

    Each real sample gets a ball reaching its k-th nearest real neighbour (and each
    generated sample one reaching its k-th nearest generated neighbour).
    *precision*: share of generated samples inside some real ball (fidelity);
    *recall*: share of real samples inside some generated ball (diversity);
    *density*: mean number of real balls holding a generated sample, over k (≈ 1
    for matching distributions, robust to outliers); *coverage*: share of real
    samples whose ball holds a generated sample.

    Distances are exact: radii are float64 distances computed by subtraction, and a
    point lies in a ball when its distance is at most the radius (ties count as
    inside). The bulk of the comparisons uses float32 GEMM distances (twice as fast);
    any pair within their worst-case rounding band of a ball's edge is settled by the
    exact distance, so the answer is that of exact distances and repeated records
    (every discrete table) lie inside each other's radius-0 balls.

    Arguments:
        real, fake: samples (images go through ``image_features``; tables are
            standardized by ``real``'s columns); ``features`` as in ``frechet_distance``.
        k: neighbours defining the balls (Naeem et al. use 5).
        max_samples: at most this many rows per side (drawn with ``seed``).

    Example:
        >>> import torch
        >>> x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
        >>> r = precision_recall(x, x)
        >>> r["precision"], r["recall"], r["coverage"]
        (1.0, 1.0, 1.0)
        >>> precision_recall(x, x + 100)["precision"]
        0.0
    """
    check_positive("k", k, integer=True)
    r, f = embed_pair(real, fake, "precision_recall", features, minimum=k + 1)
    r, f = subsample(r, max_samples, seed), subsample(f, max_samples, seed + 1)
    knn_r = knn_distances(r, None, k)[0]
    rad_r = knn_r[:, -1]
    rad_f = knn_distances(f, None, k)[0][:, -1]
    inside_any = torch.zeros(len(f), dtype=torch.bool)
    count = torch.zeros(len(f), dtype=torch.float64)
    recalled = torch.zeros(len(r), dtype=torch.bool)
    covered = torch.zeros(len(r), dtype=torch.bool)
    nearest_fake = torch.full((len(r),), float("inf"), dtype=torch.float64)
    near_f = torch.zeros(len(f), dtype=torch.long)  # each generated sample's nearest real one
    near_r = torch.zeros(len(r), dtype=torch.long)  # each real sample's nearest generated one
    rr, ff = (r * r).sum(1).float(), (f * f).sum(1).float()
    rad_r2, rad_f2 = rad_r.float().square(), rad_f.float().square()
    for start, d2 in pairwise_blocks(f, r):  # float32 squared distances: (chunk of fake, real)
        rows = slice(start, start + len(d2))
        near_f[rows] = d2.argmin(1)
        v, i = d2.min(0)
        near_r = torch.where(v.double() < nearest_fake, i + start, near_r)
        nearest_fake = torch.minimum(nearest_fake, v.double())
        # pairs within the GEMM's rounding band of a ball's edge are decided by the exact
        # distance (by subtraction, float64), so that a copy of a record lies inside the
        # record's own ball even when that ball has radius 0
        band = rounding_band(ff[rows], rr, r.shape[1])
        in_real = _inside(d2, rad_r2[None, :], rad_r[None, :], band, f[rows], r)
        in_fake = _inside(d2, rad_f2[rows, None], rad_f[rows, None], band, f[rows], r)
        inside_any[rows] = in_real.any(1)
        count[rows] = in_real.sum(1).double()
        covered |= in_real.any(0)
        recalled |= in_fake.any(0)
    if _cache is not None:  # what alpha_precision_beta_recall needs, from the same passes
        _cache.update(args=(real, fake), real_to_real=knn_r[:, 0], near_f=near_f, near_r=near_r)
    return {"precision": float(inside_any.double().mean()), "recall": float(recalled.double().mean()),
            "density": float(count.mean() / k), "coverage": float(covered.double().mean())}


def alpha_precision_beta_recall(real: Any, fake: Any, *, steps: int = 30, features: Any = None,
                                max_samples: int | None = 10_000, seed: int = 0, _cache: dict | None = None) -> dict:
    """α-precision, β-recall and authenticity (Alaa et al. 2022), integrated over α, β in [0, 1].

    The α-support of the real data is the ball around the real mean holding a
    share α of the real samples; α-precision(α) is the share of generated samples
    inside it, ideally α. β-recall(β) is the share of real samples whose nearest
    generated sample is closer than their nearest real neighbour *and* lies in the
    generated data's β-support, ideally β. The scores are
    ``1 - sum |curve - α| / sum α`` (1 = ideal). *Authenticity* is the share of
    generated samples farther from their nearest real sample than that real
    sample is from its own nearest real neighbour (low = copies).

    Unlike the paper, the space is the standardized data (or image features), not
    a learned one-class embedding; the estimator follows the authors' reference
    implementation otherwise.

    Example:
        >>> import torch
        >>> x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
        >>> r = alpha_precision_beta_recall(x, x)
        >>> round(r["alpha_precision"], 2), round(r["beta_recall"], 2), r["authenticity"]
        (1.0, 1.0, 0.0)
    """
    check_positive("steps", steps, integer=True)
    r, f = embed_pair(real, fake, "alpha_precision_beta_recall", features, minimum=2)
    r, f = subsample(r, max_samples, seed), subsample(f, max_samples, seed + 1)
    alphas = np.linspace(0, 1, int(steps))
    center_r, center_f = r.mean(0), f.mean(0)
    radii = np.quantile((r - center_r).norm(dim=1).numpy(), alphas)
    fake_to_center = (f - center_r).norm(dim=1).numpy()
    args = _cache.get("args", (None, None)) if _cache is not None else (None, None)
    cached = args[0] is real and args[1] is fake and len(_cache["near_r"]) == len(r) and len(_cache["near_f"]) == len(f)
    if cached:  # nearest neighbours already found by precision_recall's passes
        real_to_real = _cache["real_to_real"].numpy()
        i_rf = _cache["near_r"][:, None]
        d_rf = exact_distances(r, f, i_rf)
        i_fr = _cache["near_f"][:, None]
        d_fr = exact_distances(f, r, i_fr)
    else:
        real_to_real = knn_distances(r, None, 1)[0][:, 0].numpy()
        d_rf, i_rf = knn_distances(r, f, 1)
        d_fr, i_fr = knn_distances(f, r, 1)
    real_to_fake = d_rf[:, 0].numpy()
    closest = f[i_rf[:, 0]]
    closest_to_center = (closest - center_f).norm(dim=1).numpy()
    closest_radii = np.quantile(closest_to_center, alphas)
    ap = np.array([(fake_to_center <= rad).mean() for rad in radii])
    br = np.array([((real_to_fake <= real_to_real) & (closest_to_center <= rad)).mean() for rad in closest_radii])
    # authenticity: per generated sample, against its nearest real sample's own NN distance
    authentic = (d_fr[:, 0].numpy() > real_to_real[i_fr[:, 0].numpy()]).mean()
    score = lambda curve: float(1 - np.abs(curve - alphas).sum() / alphas.sum())  # noqa: E731
    return {"alpha_precision": score(ap), "beta_recall": score(br), "authenticity": float(authentic),
            "curve": pd.DataFrame({"alpha": alphas, "alpha_precision": ap, "beta_recall": br})}


def _inside(d2: torch.Tensor, rad2: torch.Tensor, radius: torch.Tensor, band: torch.Tensor, f: torch.Tensor,
            r: torch.Tensor) -> torch.Tensor:
    """``|f_i - r_j| <= radius`` for a block of float32 GEMM distances, exact within the rounding band."""
    inside = d2 <= rad2 - band
    edge = torch.nonzero((d2 - rad2).abs() <= band)
    radius = radius.expand_as(d2)
    for s in range(0, len(edge), 1 << 20):  # bounded memory when ties are many (discrete tables)
        i, j = edge[s:s + (1 << 20), 0], edge[s:s + (1 << 20), 1]
        inside[i, j] = (f[i].double() - r[j].double()).norm(dim=-1) <= radius[i, j]
    return inside
