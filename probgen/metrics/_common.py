"""Shared input handling of the metrics: arrays in, checked, embedded in a feature space."""

from __future__ import annotations

__all__ = ["as_samples", "embed_pair", "embed_sets", "check_count", "subsample", "standardize"]

from typing import Any, Callable  # noqa: F401

import numpy as np
import torch

from ..core.checks import as_tensor


def as_samples(x: Any, metric: str, name: str) -> torch.Tensor:
    """Samples as a float tensor with a leading sample axis (Dataset, DataFrame, array, tensor)."""
    if hasattr(x, "x") and hasattr(x, "y") and isinstance(getattr(x, "x"), torch.Tensor):  # probgen Dataset
        x = x.x
    if hasattr(x, "select_dtypes"):  # DataFrame: numeric columns; categorical ones are one-hot coded
        import pandas as pd

        x = pd.get_dummies(x, dtype=float) if len(x.select_dtypes(exclude="number").columns) else x
    t = as_tensor(x, f"{metric}: {name}", dtype=torch.float64)
    if t.dim() == 0:
        raise ValueError(f"{metric}: {name} must hold samples along its first axis, got a scalar")
    if t.dim() == 1:
        t = t[:, None]
    return t


def check_count(t: torch.Tensor, minimum: int, metric: str, name: str) -> None:
    if len(t) < minimum:
        raise ValueError(f"{metric}: needs at least {minimum} samples in {name}, got {len(t)}")


def subsample(t: torch.Tensor, max_samples: int | None, seed: int) -> torch.Tensor:
    """At most ``max_samples`` rows, drawn without replacement with ``seed``."""
    if max_samples is None or len(t) <= max_samples:
        return t
    g = torch.Generator().manual_seed(seed)
    return t[torch.randperm(len(t), generator=g)[:max_samples]]


def embed_pair(real: Any, fake: Any, metric: str, features: Any = None, *, minimum: int = 2,
               names: tuple[str, str] = ("real", "fake")) -> tuple[torch.Tensor, torch.Tensor]:
    """Check ``real`` and ``fake`` and map both to a feature space (float64, 2-D).

    ``features``: ``None`` (images of 3 or 4 dimensions go through
    ``image_features``; tables and points are standardized by ``real``'s columns),
    ``"raw"`` (as given, flattened), or a callable applied to both.
    """
    r, f = embed_sets([real, fake], list(names), metric, features, minimum=minimum)
    return r, f


def embed_sets(sets: list, names: list[str], metric: str, features: Any = None, *,
               minimum: int = 2) -> list[torch.Tensor]:
    """``embed_pair`` for any number of sets; the first is the reference for standardizing."""
    ts = [as_samples(s, metric, n) for s, n in zip(sets, names)]
    for t, n in zip(ts[1:], names[1:]):
        if t.shape[1:] != ts[0].shape[1:]:
            raise ValueError(f"{metric}: {names[0]} and {n} differ in dimensions: "
                             f"{tuple(ts[0].shape[1:])} vs {tuple(t.shape[1:])} per sample")
    for t, n in zip(ts, names):
        check_count(t, minimum, metric, n)
    if callable(features):
        out = [as_tensor(features(t.float()), f"{metric}: features({n})", dtype=torch.float64) for t, n in zip(ts, names)]
        return [o.reshape(len(o), -1) for o in out]
    if features == "raw":
        return [t.reshape(len(t), -1) for t in ts]
    if features is not None:
        raise ValueError(f"{metric}: features must be None, 'raw' or a callable, got {features!r}")
    if ts[0].dim() >= 3:
        from .features import image_features

        return [image_features(t.float()).double() for t in ts]
    return list(standardize(*[t.reshape(len(t), -1) for t in ts]))


def standardize(r: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Centre and scale every tensor by ``r``'s column means and standard deviations."""
    mu = r.mean(0)
    sd = r.std(0) if len(r) > 1 else torch.ones_like(mu)
    sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
    return tuple((t - mu) / sd for t in (r, *others))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


Featurizer = Callable[[torch.Tensor], Any]


def pairwise_blocks(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048):
    """Yield ``(start, D2)``: squared Euclidean distances of ``a[start:start+chunk]`` to all of ``b``.

    Hand-written rather than sklearn's NearestNeighbors: the fidelity and
    memorization metrics need several reductions of the same distance block (any /
    count / min along either axis), and one pass over blocks computes all of them
    with bounded memory. Computed in float32 (one GEMM per block: half the time of
    float64); ``knn_distances`` recomputes the distances it returns exactly.
    """
    a32, b32 = a.float(), b.float()
    bb = (b32 * b32).sum(1)
    for start in range(0, len(a32), chunk):
        blk = a32[start:start + chunk]
        d2 = torch.addmm(bb[None, :], blk, b32.T, alpha=-2.0)
        d2.add_((blk * blk).sum(1)[:, None]).clamp_(min=0)
        yield start, d2


def exact_distances(a: torch.Tensor, b: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``|a[i] - b[idx[i, j]]|`` in float64, without the cancellation of the GEMM expansion."""
    return (a.double()[:, None, :] - b.double()[idx]).norm(dim=-1)


def knn_distances(a: torch.Tensor, b: torch.Tensor | None = None, k: int = 1, chunk: int = 2048
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (float64, exact) and indices of the ``k`` nearest rows of ``b`` for each row of ``a``.

    With ``b=None`` the neighbours come from ``a`` itself, excluding each row's own index.
    """
    self_ref = b is None
    b = a if self_ref else b
    idxs = []
    for start, d in pairwise_blocks(a, b, chunk):
        if self_ref:
            rows = torch.arange(len(d))
            d[rows, rows + start] = float("inf")
        idxs.append(torch.topk(d, k, dim=1, largest=False).indices)
    idx = torch.cat(idxs)
    dist = exact_distances(a, b, idx)
    dist, order = dist.sort(dim=1)
    return dist, idx.gather(1, order)
