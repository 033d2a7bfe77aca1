"""Shared input handling of the metrics: arrays in, checked, embedded in a feature space."""

from __future__ import annotations

__all__ = ["as_samples", "align_tables", "embed_pair", "embed_sets", "check_count", "subsample", "standardize"]

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


def align_tables(sets: list, names: list[str], metric: str) -> list:
    """Tables matched by column name and category before any coding.

    When the sets are DataFrames, every one is reordered to the first one's columns
    (a missing or extra column is a ``ValueError`` naming it) and each text or
    categorical column is one-hot coded over the union of its categories in all the
    sets, sorted, so the same coded column means the same category in every set (a
    set that lacks a category gets a column of zeros for it). Other sets pass unchanged.

    Example:
        >>> import pandas as pd
        >>> a = pd.DataFrame({"x": [1.0, 2.0], "c": ["u", "v"]})
        >>> b = pd.DataFrame({"c": ["v", "v"], "x": [3.0, 4.0]})
        >>> [list(t.columns) for t in align_tables([a, b], ["real", "fake"], "demo")]
        [['x', 'c_u', 'c_v'], ['x', 'c_u', 'c_v']]
    """
    import pandas as pd

    is_frame = [isinstance(s, pd.DataFrame) for s in sets]
    if not any(is_frame):
        return list(sets)
    if not all(is_frame):
        for s, n in zip(sets, names):
            if isinstance(s, pd.DataFrame) and len(s.select_dtypes(exclude=["number", "bool"]).columns):
                other = next(m for t, m in zip(sets, names) if not isinstance(t, pd.DataFrame))
                raise ValueError(f"{metric}: {n} is a table with text columns but {other} is not a DataFrame; give "
                                 "both as DataFrames so that columns and categories are matched by name")
        return list(sets)
    cols = list(sets[0].columns)
    if len(set(map(str, cols))) != len(cols):
        raise ValueError(f"{metric}: {names[0]} has repeated column names")
    for s, n in zip(sets[1:], names[1:]):
        missing = [c for c in cols if c not in s.columns]
        extra = [c for c in s.columns if c not in sets[0].columns]
        if missing or extra:
            raise ValueError(f"{metric}: {n} and {names[0]} differ in columns: {n} lacks {missing} and has extra "
                             f"{extra}")
    aligned = [s[cols] for s in sets]
    text = [c for c in cols if any(not (pd.api.types.is_numeric_dtype(s[c]) or pd.api.types.is_bool_dtype(s[c]))
                                   for s in aligned)]
    if not text:
        return aligned
    for s, n in zip(aligned, names):
        if s[text].isna().any().any():
            bad = [c for c in text if s[c].isna().any()]
            raise ValueError(f"{metric}: {n} has missing values in column(s) {bad}")
    out = [s.copy() for s in aligned]
    for c in text:
        values = [s[c].astype(str) for s in aligned]
        categories = sorted(set().union(*(set(v.unique()) for v in values)))
        for s, v in zip(out, values):
            s[c] = pd.Categorical(v, categories=categories)
    return [pd.get_dummies(s, columns=text, dtype=float) for s in out]


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
    ts = [as_samples(s, metric, n) for s, n in zip(align_tables(sets, names, metric), names)]
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


def pairwise_blocks(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048, dtype: torch.dtype = torch.float32):
    """Yield ``(start, D2)``: squared Euclidean distances of ``a[start:start+chunk]`` to all of ``b``.

    Hand-written rather than sklearn's NearestNeighbors: the fidelity and
    memorization metrics need several reductions of the same distance block (any /
    count / min along either axis), and one pass over blocks computes all of them
    with bounded memory. One GEMM per block (``|a|^2 + |b|^2 - 2ab``) in ``dtype``:
    float32 is half the time of float64, but its rounding error (up to about
    ``2 (dim + 2) 6e-8`` of the squared norms, ``rounding_band``) can put a copy of a
    record outside a radius-0 ball: callers that compare with radii settle the pairs
    within that band by exact distances (``precision_recall``).
    """
    a32, b32 = a.to(dtype), b.to(dtype)
    bb = (b32 * b32).sum(1)
    for start in range(0, len(a32), chunk):
        blk = a32[start:start + chunk]
        d2 = torch.addmm(bb[None, :], blk, b32.T, alpha=-2.0)
        d2.add_((blk * blk).sum(1)[:, None]).clamp_(min=0)
        yield start, d2


def rounding_band(aa: torch.Tensor, bb: torch.Tensor, dim: int) -> torch.Tensor:
    """A bound on the float32 GEMM error of squared distances with squared norms ``aa`` (rows) and ``bb`` (columns).

    Each dot product of ``dim`` terms is off by at most ``dim * u * sum|a_i b_i|`` (u = 2**-24),
    below ``dim * u * (|a|^2 + |b|^2) / 2``, plus the roundings of the norms and the sum: the
    band below is twice that, with two more terms.
    """
    return (2 * (dim + 2) * 2.0 ** -24) * (aa[:, None] + bb[None, :]) + 1e-30


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
    # candidates from float32 blocks (half the time of float64), four spare ones so that a
    # near-tie at the k-th place (within float32 rounding) is settled by the exact distances below
    extra = min(k + 4, len(b) - (1 if self_ref else 0))
    idxs = []
    for start, d in pairwise_blocks(a, b, chunk):
        if self_ref:
            rows = torch.arange(len(d))
            d[rows, rows + start] = float("inf")
        idxs.append(torch.topk(d, max(extra, k), dim=1, largest=False).indices)
    idx = torch.cat(idxs)
    dist = exact_distances(a, b, idx)
    dist, order = dist.sort(dim=1, stable=True)
    return dist[:, :k], idx.gather(1, order)[:, :k]
