"""Bias and data dependency: attribute distributions of generated vs real data; quality vs training size."""

from __future__ import annotations

__all__ = ["attribute_gap", "quality_vs_size"]

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.checks import check_positive, unknown_key
from ..core.progress import progress_bar
from ._common import as_samples


def _attribute_values(data: Any, attribute: Any, name: str) -> np.ndarray:
    if attribute is None:
        if hasattr(data, "select_dtypes"):
            data = data.squeeze("columns") if data.shape[1] == 1 else data
            if hasattr(data, "select_dtypes"):
                raise ValueError(f"attribute_gap: {name} is a table; name the column with attribute=")
        vals = np.asarray(data.numpy() if isinstance(data, torch.Tensor) else data)
        if vals.ndim != 1:
            raise ValueError(f"attribute_gap: without attribute=, {name} must be 1-D attribute values, "
                             f"got shape {vals.shape}")
        return vals
    if callable(attribute):
        vals = attribute(data)
        return np.asarray(vals.numpy() if isinstance(vals, torch.Tensor) else vals).reshape(-1)
    if attribute == "label":  # images: the cached digit classifier's predicted class
        from .features import digit_classifier

        x = data.x if hasattr(data, "x") else data
        return digit_classifier().predict(x).numpy()
    if hasattr(data, "columns"):
        if attribute not in data.columns:
            raise unknown_key("column", attribute, data.columns)
        return data[attribute].to_numpy()
    t = as_samples(data, "attribute_gap", name)
    if not isinstance(attribute, (int, np.integer)) or not -t.shape[1] <= attribute < t.shape[1]:
        raise ValueError(f"attribute_gap: attribute must be a column index in [0, {t.shape[1]}), a column name, "
                         f"'label' or a callable, got {attribute!r}")
    return t[:, attribute].numpy()


def attribute_gap(fake: Any, real: Any, attribute: Any = None, *, bins: int = 10) -> dict:
    """Distribution of one attribute (a label or a column) in generated vs real data.

    Arguments:
        fake, real: samples, or directly the attribute values (1-D) when ``attribute`` is None.
        attribute: ``None``; a column index or DataFrame column name; ``"label"`` for
            digit images (the cached digit classifier's predicted class); or a
            callable mapping samples to values.
        bins: numeric attributes with more than ``2 * bins`` distinct values are
            cut into ``bins`` quantile bins of the real values.

    Returns ``dict(table, total_variation, max_gap, worst)``: a DataFrame of shares
    per value (real, fake, fake - real), the total variation distance (0 = same
    distribution, 1 = disjoint), the largest absolute gap and the value it is at.

    Example:
        >>> r = attribute_gap([0, 0, 1, 1], [0, 1, 1, 1])
        >>> r["total_variation"], r["worst"]
        (0.25, 0)
    """
    check_positive("bins", bins, integer=True)
    f = _attribute_values(fake, attribute, "fake")
    r = _attribute_values(real, attribute, "real")
    if len(f) == 0 or len(r) == 0:
        raise ValueError("attribute_gap: needs at least 1 sample on each side")
    if np.issubdtype(r.dtype, np.floating) and len(np.unique(r)) > 2 * bins:
        edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
        r, f = pd.cut(r, edges).astype(str), pd.cut(f, edges).astype(str)
    pr = pd.Series(r).value_counts(normalize=True)
    pf = pd.Series(f).value_counts(normalize=True)
    table = pd.DataFrame({"real": pr, "fake": pf}).fillna(0.0)
    try:
        table = table.sort_index()
    except TypeError:
        pass
    table["gap"] = table["fake"] - table["real"]
    worst = table["gap"].abs().idxmax()
    worst = worst.item() if hasattr(worst, "item") else worst
    return {"table": table, "total_variation": float(0.5 * table["gap"].abs().sum()),
            "max_gap": float(table["gap"].abs().max()), "worst": worst}


def _metric_fn(metric: Any) -> Callable[[Any, Any], float]:
    if callable(metric):
        return metric
    from . import distances, fidelity

    table = {
        "frechet": lambda r, f: distances.frechet_distance(r, f),
        "mmd": lambda r, f: distances.mmd(r, f, permutations=0)["mmd2"],
        "detection_auc": lambda r, f: distances.detection_auc(r, f)["auc"],
        **{k: (lambda key: lambda r, f: fidelity.precision_recall(r, f)[key])(k)
           for k in ("precision", "recall", "density", "coverage")},
    }
    if metric not in table:
        raise unknown_key("metric", metric, table)
    return table[metric]


def quality_vs_size(fit: Callable[[Any], Any], train: Any, test: Any, sizes: Sequence[int], *,
                    metrics: Sequence[Any] = ("frechet",), n_samples: int | None = None, seed: int = 0,
                    progress: bool = True) -> pd.DataFrame:
    """Quality as a function of training-set size: a learning curve for generators.

    For each size, ``fit`` gets a random subset of ``train`` of that size (nested
    subsets, drawn with ``seed``) and returns a fitted model (anything with
    ``sample(n, seed=)``) or the generated samples themselves; the samples are
    scored against ``test`` by each metric.

    Arguments:
        fit: ``subset -> model or samples``.
        train, test: real data; ``test`` is the reference the samples are scored against.
        sizes: training-set sizes, each at most ``len(train)``.
        metrics: names (``"frechet"``, ``"mmd"``, ``"detection_auc"``, ``"precision"``,
            ``"recall"``, ``"density"``, ``"coverage"``) or callables ``(real, fake) -> float``.
        n_samples: generated samples per size (default ``len(test)``).

    Returns a DataFrame with a ``size`` column and one column per metric.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> train, test = torch.randn(400, 2, generator=g) + 3, torch.randn(300, 2, generator=g) + 3
        >>> def fit(x):  # a Gaussian fitted by moments, sampled at once
        ...     return x.mean(0) + x.std(0) * torch.randn(300, 2, generator=g)
        >>> curve = quality_vs_size(fit, train, test, [10, 400], progress=False)
        >>> bool(curve["frechet"].iloc[0] > curve["frechet"].iloc[1])
        True
    """
    tr = train.x if hasattr(train, "x") and isinstance(getattr(train, "x"), torch.Tensor) else train
    tr = as_samples(tr, "quality_vs_size", "train").float()
    n_total = len(tr)
    sizes = list(sizes)
    if not sizes:
        raise ValueError("sizes: expected at least one training-set size")
    for s in sizes:
        check_positive("sizes", s, integer=True)
        if s > n_total:
            raise ValueError(f"sizes: {s} exceeds the {n_total} training rows")
    fns = [(m if isinstance(m, str) else getattr(m, "__name__", f"metric{i}"), _metric_fn(m))
           for i, m in enumerate(metrics)]
    order = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    n_gen = n_samples or len(test)
    rows = []
    for s in progress_bar(sizes, enabled=progress, desc="quality_vs_size"):
        out = fit(tr[order[:s]])
        samples = out.sample(n_gen, seed=seed) if hasattr(out, "sample") else out
        rows.append({"size": s, **{name: float(fn(test, samples)) for name, fn in fns}})
    return pd.DataFrame(rows)


