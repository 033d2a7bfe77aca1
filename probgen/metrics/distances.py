"""Distances between real and generated data: Fréchet, MMD, classifier two-sample test, marginals.

References:
    Heusel et al. 2017 (Fréchet Inception Distance); Gretton et al. 2012, A kernel
    two-sample test (MMD); Lopez-Paz & Oquab 2017, Revisiting classifier two-sample
    tests (detection AUC).
"""

from __future__ import annotations

__all__ = ["frechet_distance", "mmd", "detection_auc", "marginal_distances", "correlation_difference"]

from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.checks import check_choice, check_positive
from ._common import as_samples, embed_pair, subsample, to_numpy


def frechet_distance(real: Any, fake: Any, features: Any = None) -> float:
    """Fréchet distance between Gaussians fitted to ``real`` and ``fake`` features.

    ``|mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r^1/2 S_f S_r^1/2)^1/2)``; the matrix
    square root goes through a symmetric eigendecomposition (stable, no complex
    round-off as with ``scipy.linalg.sqrtm``).

    Arguments:
        real, fake: samples ``(n, ...)``: images ``(n, 1, H, W)`` in [0, 1] go
            through ``image_features`` (the cached digit CNN: an FID stand-in, not
            comparable with published FIDs); tables/points are standardized by
            ``real``'s columns.
        features: ``None``, ``"raw"`` (no transform) or a callable mapping samples
            to feature vectors.

    Example:
        >>> import torch
        >>> x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
        >>> round(frechet_distance(x, x), 6)
        0.0
        >>> frechet_distance(x, x + 1) > 2.5
        True
    """
    r, f = embed_pair(real, fake, "frechet_distance", features, minimum=2)
    return _frechet(r, f)


def _frechet(r: torch.Tensor, f: torch.Tensor) -> float:
    mu_r, mu_f = r.mean(0), f.mean(0)
    s_r, s_f = torch.cov(r.T).reshape(r.shape[1], r.shape[1]), torch.cov(f.T).reshape(f.shape[1], f.shape[1])
    w, v = torch.linalg.eigh(s_r)
    root_r = (v * w.clamp(min=0).sqrt()) @ v.T
    middle = root_r @ s_f @ root_r
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = float((mu_r - mu_f).square().sum() + s_r.trace() + s_f.trace() - 2 * tr_sqrt)
    return max(value, 0.0)


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T).clamp_(min=0)


def mmd(x: Any, y: Any, *, kernel: str = "rbf", bandwidth: float | None = None, permutations: int = 200,
        seed: int = 0, features: Any = None, max_samples: int | None = 2000) -> dict:
    """Squared maximum mean discrepancy (unbiased) with a permutation p-value.

    The p-value is ``(1 + #{permuted MMD² >= observed}) / (1 + permutations)``
    under the null that ``x`` and ``y`` come from one distribution. All
    permutations are evaluated with one matrix product ``K @ U`` (``U`` holds the
    permuted memberships) instead of a Python loop over permutations.

    Arguments:
        x, y: samples (real first: tables are standardized by ``x``'s columns).
        kernel: ``"rbf"`` (Gaussian) or ``"linear"``.
        bandwidth: the RBF length scale; ``None`` takes the median pairwise distance.
        permutations: number of permutations for the p-value (0: no test).
        max_samples: at most this many rows per side (drawn with ``seed``): the
            kernel matrix is ``(n + m)^2``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
        >>> mmd(a, b)["p_value"] > 0.05, mmd(a, b + 1)["p_value"] < 0.01
        (True, True)
    """
    check_choice("kernel", kernel, ("rbf", "linear"))
    if isinstance(permutations, bool) or not isinstance(permutations, (int, np.integer)) or permutations < 0:
        raise ValueError(f"permutations: expected a non-negative integer, got {permutations!r}")
    if bandwidth is not None:
        check_positive("bandwidth", bandwidth)
    r, f = embed_pair(x, y, "mmd", features, minimum=2, names=("x", "y"))
    r, f = subsample(r, max_samples, seed), subsample(f, max_samples, seed + 1)
    n, m = len(r), len(f)
    z = torch.cat([r, f])
    if kernel == "rbf":
        d2 = _sqdist(z, z)
        if bandwidth is None:
            off = d2[~torch.eye(len(z), dtype=torch.bool)]
            off = off[:: max(1, len(off) // 1_000_000)]  # median of a strided subset: same value, less sorting
            bandwidth = float(off.median().sqrt()) or 1.0
        k = torch.exp(-d2 / (2 * bandwidth**2))
    else:
        k = z @ z.T
    k.fill_diagonal_(0.0)  # unbiased estimator: drop i == j terms
    total = k.sum()

    def stat(u: torch.Tensor) -> torch.Tensor:  # u: (n+m, p) membership of x
        ku = k @ u
        sxx = (u * ku).sum(0)
        sxy = ((1 - u) * ku).sum(0)
        syy = total - sxx - 2 * sxy
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)

    u0 = torch.zeros(n + m, 1, dtype=k.dtype)
    u0[:n] = 1
    observed = float(stat(u0)[0])
    p_value = float("nan")
    if permutations:
        g = torch.Generator().manual_seed(seed)
        perm = torch.argsort(torch.rand(permutations, n + m, generator=g), dim=1)
        u = (perm < n).to(k.dtype).T  # each column: a random split into n and m
        null = torch.cat([stat(u[:, i:i + 100]) for i in range(0, permutations, 100)])
        p_value = float((1 + (null >= observed).sum()) / (1 + permutations))
    return {"mmd2": observed, "p_value": p_value, "bandwidth": bandwidth if kernel == "rbf" else None}


def detection_auc(real: Any, fake: Any, *, classifier: Any = None, folds: int = 3, seed: int = 0,
                  features: Any = None, max_samples: int | None = 5000) -> dict:
    """Classifier two-sample test: how well a classifier tells real from generated.

    Out-of-fold predicted probabilities of a classifier trained to separate the two
    sets give a ROC AUC: 0.5 means indistinguishable, 1.0 means every sample is
    caught. Both sides are subsampled to the same size so chance is 0.5.

    Arguments:
        classifier: a scikit-learn classifier with ``predict_proba``; default a
            logistic regression on the standardized features and their squares
            (sees differences in means, variances and, through the squares' mix,
            much of the shape; about 1 s on 10,000 x 64). Pass for example
            ``HistGradientBoostingClassifier()`` for a stronger, slower test.
        folds: cross-validation folds (at least 2).
        max_samples: at most this many rows per side.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)
        >>> 0.4 < detection_auc(a, b)["auc"] < 0.6, detection_auc(a, b + 3)["auc"] > 0.95
        (True, True)
    """
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds: expected an integer >= 2, got {folds!r}")
    r, f = embed_pair(real, fake, "detection_auc", features, minimum=folds)
    size = min(len(r), len(f), max_samples or len(r))
    r, f = subsample(r, size, seed), subsample(f, size, seed + 1)
    x = to_numpy(torch.cat([r, f])).astype(np.float32)
    y = np.r_[np.ones(len(r)), np.zeros(len(f))]
    clf = clone(classifier) if classifier is not None else _default_detector()
    if not hasattr(clf, "predict_proba"):
        raise ValueError("classifier: expected a scikit-learn classifier with predict_proba")
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    prob = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
    return {"auc": float(roc_auc_score(y, prob)), "accuracy": float(((prob > 0.5) == y).mean()), "n_per_side": size}


def _with_squares(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, x * x])


def _default_detector():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(StandardScaler(), FunctionTransformer(_with_squares), StandardScaler(),
                         LogisticRegression(C=1.0, max_iter=500))


def _frame(x: Any, metric: str, name: str, columns: list | None) -> pd.DataFrame:
    if isinstance(x, pd.DataFrame):
        return x
    t = as_samples(x, metric, name)
    if t.dim() != 2:
        raise ValueError(f"{metric}: {name} must be a table (n, columns), got shape {tuple(t.shape)}")
    return pd.DataFrame(t.numpy(), columns=columns if columns is not None else [f"x{i}" for i in range(t.shape[1])])


def marginal_distances(real: Any, fake: Any, columns: list | None = None) -> pd.DataFrame:
    """Per-column distances between the marginals of a table.

    Numeric columns: Wasserstein-1 distance in units of the real column's standard
    deviation and the Kolmogorov-Smirnov statistic; categorical columns: total
    variation distance between category frequencies (in the ``ks`` column's place).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
        >>> b[:, 1] += 2
        >>> d = marginal_distances(a, b)
        >>> bool(d.loc["x1", "wasserstein"] > 1.5 > d.loc["x0", "wasserstein"])
        True
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    r, f = _frame(real, "marginal_distances", "real", columns), _frame(fake, "marginal_distances", "fake", columns)
    if set(r.columns) == set(f.columns):
        f = f[list(r.columns)]  # matched by name
    if list(r.columns) != list(f.columns):
        raise ValueError(f"marginal_distances: real and fake differ in columns: {list(r.columns)} vs {list(f.columns)}")
    if len(r) < 2 or len(f) < 2:
        raise ValueError(f"marginal_distances: needs at least 2 samples on each side, got {len(r)} and {len(f)}")
    rows = []
    for c in r.columns:
        a, b = r[c], f[c]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            a, b = a.to_numpy(float), b.to_numpy(float)
            sd = a.std() or 1.0
            rows.append({"column": c, "kind": "numeric", "wasserstein": wasserstein_distance(a, b) / sd,
                         "ks": ks_2samp(a, b).statistic, "mean_real": a.mean(), "mean_fake": b.mean(),
                         "std_real": a.std(), "std_fake": b.std()})
        else:
            pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
            tv = 0.5 * pa.subtract(pb, fill_value=0).abs().sum()
            rows.append({"column": c, "kind": "categorical", "wasserstein": np.nan, "ks": tv, "mean_real": np.nan,
                         "mean_fake": np.nan, "std_real": np.nan, "std_fake": np.nan})
    return pd.DataFrame(rows).set_index("column")


def correlation_difference(real: Any, fake: Any, columns: list | None = None) -> dict:
    """Differences between the Pearson correlation matrices of real and generated tables.

    Returns ``dict(max_abs, mean_abs, matrix)``: the largest and mean absolute
    difference over column pairs, and the difference matrix (fake - real) as a
    DataFrame. Constant columns count as uncorrelated.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.randn(2000, 2, generator=g)
        >>> b = torch.stack([a[:, 0], a[:, 0] + 0.1 * a[:, 1]], 1)
        >>> round(correlation_difference(a, b)["max_abs"], 1)
        1.0
    """
    r, f = _frame(real, "correlation_difference", "real", columns), _frame(fake, "correlation_difference", "fake", columns)
    if set(r.columns) == set(f.columns):
        f = f[list(r.columns)]  # matched by name
    if list(r.columns) != list(f.columns):
        raise ValueError(f"correlation_difference: real and fake differ in columns: {list(r.columns)} vs {list(f.columns)}")
    num = [c for c in r.columns if pd.api.types.is_numeric_dtype(r[c])]
    if len(num) < 2:
        raise ValueError("correlation_difference: needs at least 2 numeric columns")
    if len(r) < 3 or len(f) < 3:
        raise ValueError(f"correlation_difference: needs at least 3 samples on each side, got {len(r)} and {len(f)}")
    cr = r[num].corr().fillna(0.0)
    cf = f[num].corr().fillna(0.0)
    diff = cf - cr
    iu = np.triu_indices(len(num), 1)
    vals = np.abs(diff.to_numpy()[iu])
    return {"max_abs": float(vals.max()), "mean_abs": float(vals.mean()), "matrix": diff}
