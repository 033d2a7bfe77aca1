"""Use of generated data: augmentation, train-on-synthetic / test-on-real (TSTR), augmentation gain.

References:
    Esteban, Hyland, Rätsch 2017, Real-valued (medical) time series generation with
    recurrent conditional GANs (TSTR / TRTR protocol).
"""

from __future__ import annotations

__all__ = ["augment", "train_on_synthetic", "augmentation_gain"]

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.checks import as_tensor, check_positive
from ..core.progress import progress_bar


def _xy(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x = as_tensor(data[0], f"{name}[0] (x)")
        y = None if data[1] is None else as_tensor(data[1], f"{name}[1] (y)", dtype=torch.long, ndim=1)
        if y is not None and len(y) != len(x):
            raise ValueError(f"{name}: x has {len(x)} examples but y has {len(y)} labels")
        return x, y
    return as_tensor(data, name), None


def _draw(model: Any, n: int, label: int | None, seed: int, condition: str) -> torch.Tensor:
    if isinstance(model, dict):  # one unconditional model per class
        if label not in model:
            raise KeyError(f"model: no generator for class {label!r}; classes: {sorted(model)}")
        out = model[label].sample(n, seed=seed)
    elif hasattr(model, "sample"):
        out = model.sample(n, seed=seed) if label is None else model.sample(n, seed=seed, **{condition: label})
    elif callable(model):
        out = model(n, label, seed)
    else:
        raise ValueError("model: expected a probgen Model, a dict {label: model} or a callable (n, label, seed)")
    out = out[0] if isinstance(out, tuple) else out
    return as_tensor(out.x if hasattr(out, "x") else out, "generated samples")


def augment(model: Any, data: Any, n: int, *, seed: int = 0, balance: bool = False, condition: str = "y"):
    """Real data plus ``n`` generated examples.

    Arguments:
        model: a fitted probgen Model (conditional ones get ``sample(k, y=label)``),
            a dict ``{label: model}`` of per-class models, or a callable
            ``(n, label, seed) -> samples``.
        data: the real data: a ``Dataset``, a pair ``(x, y)``, or unlabelled ``x``.
        n: how many generated examples to add.
        balance: with labels, draw every class equally (default: in the real
            class proportions).
        condition: the keyword that carries the label to ``model.sample``.

    Returns a ``Dataset`` whose ``meta["synthetic"]`` marks the generated rows.

    Example:
        >>> import torch
        >>> x, y = torch.zeros(6, 2), torch.tensor([0, 0, 0, 0, 1, 1])
        >>> fake = lambda n, label, seed: torch.full((n, 2), float(label))
        >>> out = augment(fake, (x, y), 3)
        >>> out.y.tolist(), int(out.meta["synthetic"].sum())
        ([0, 0, 0, 0, 1, 1, 0, 0, 1], 3)
    """
    from ..datasets._catalog import Dataset

    check_positive("n", n, integer=True)
    x, y = _xy(data, "data")
    if y is None:
        new = _draw(model, n, None, seed, condition)
        new_y = None
    else:
        classes, counts = torch.unique(y, return_counts=True)
        share = torch.full((len(classes),), 1.0 / len(classes)) if balance else counts.double() / counts.sum()
        per = torch.floor(share * n).long()
        per[torch.argsort(share * n - per, descending=True)[: n - int(per.sum())]] += 1  # largest remainders
        parts, labels = [], []
        for c, m in zip(classes.tolist(), per.tolist()):
            if m:
                parts.append(_draw(model, m, c, seed + c, condition).to(x.dtype))
                labels.append(torch.full((m,), c, dtype=torch.long))
        new, new_y = torch.cat(parts), torch.cat(labels)
    new = new.reshape(len(new), *x.shape[1:]) if new[0].numel() == x[0].numel() else new
    if new.shape[1:] != x.shape[1:]:
        raise ValueError(f"model: generated samples have shape {tuple(new.shape[1:])}, data {tuple(x.shape[1:])}")
    synthetic = torch.cat([torch.zeros(len(x), dtype=torch.bool), torch.ones(len(new), dtype=torch.bool)])
    name = getattr(data, "name", "data")
    return Dataset(torch.cat([x, new.to(x.dtype)]), None if y is None else torch.cat([y, new_y]), f"{name}+synthetic",
                   getattr(data, "split", None), {**getattr(data, "meta", {}), "synthetic": synthetic})


def _default_classifier(seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, C=0.5, random_state=seed)


def _fit_score(clf, train_x, train_y, test_x, test_y) -> float:
    from sklearn.base import clone

    model = clone(clf).fit(train_x.reshape(len(train_x), -1).numpy(), train_y.numpy())
    return float((model.predict(test_x.reshape(len(test_x), -1).numpy()) == test_y.numpy()).mean())


def train_on_synthetic(synthetic: Any, real_test: Any, *, real_train: Any = None, classifier: Any = None,
                       seed: int = 0) -> dict:
    """TSTR: train a classifier on generated data, test it on real data (and TRTR beside it).

    Arguments:
        synthetic: labelled generated data, a ``Dataset`` or ``(x, y)``.
        real_test: labelled real test data.
        real_train: labelled real training data, for TRTR (train real, test real).
        classifier: a scikit-learn classifier (default: logistic regression).

    Returns ``dict(tstr, trtr, ratio)``: the accuracies and TSTR / TRTR (1 = the
    generated data teaches as much as the real data).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(0, 2, (200,), generator=g)
        >>> x = torch.randn(200, 2, generator=g) + 3 * y[:, None]
        >>> r = train_on_synthetic((x[:100], y[:100]), (x[100:], y[100:]), real_train=(x[:100], y[:100]))
        >>> r["ratio"]
        1.0
    """
    sx, sy = _xy(synthetic, "synthetic")
    tx, ty = _xy(real_test, "real_test")
    if sy is None or ty is None:
        raise ValueError("train_on_synthetic: synthetic and real_test need labels (x, y)")
    if sx[0].numel() != tx[0].numel():
        raise ValueError(f"train_on_synthetic: synthetic examples have {sx[0].numel()} values, real ones {tx[0].numel()}")
    clf = classifier if classifier is not None else _default_classifier(seed)
    tstr = _fit_score(clf, sx, sy, tx, ty)
    trtr = float("nan")
    if real_train is not None:
        rx, ry = _xy(real_train, "real_train")
        if ry is None:
            raise ValueError("real_train: needs labels (x, y)")
        trtr = _fit_score(clf, rx, ry, tx, ty)
    return {"tstr": tstr, "trtr": trtr, "ratio": tstr / trtr if trtr == trtr and trtr > 0 else float("nan")}


def _stratified(y: torch.Tensor, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices with every class present (at least one each when size allows)."""
    classes = np.unique(y.numpy())
    first = [rng.choice(np.flatnonzero(y.numpy() == c)) for c in classes][:size]
    rest = np.setdiff1d(np.arange(len(y)), first)
    return np.r_[first, rng.choice(rest, size - len(first), replace=False)].astype(np.int64)


def augmentation_gain(make_generator: Callable[[torch.Tensor, torch.Tensor], Any], train: Any, test: Any,
                      sizes: Sequence[int] = (50, 100, 200), *, n_synthetic: int | float = 1.0, repeats: int = 3,
                      classifier: Any = None, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """The honest augmentation experiment: does adding conditional samples help a small training set?

    For each size and repeat, a random training subset (every class present) is
    drawn; the generator is fitted on *that subset only*; a classifier is trained
    on the real subset alone, on the subset plus generated examples, and on the
    generated examples alone (TSTR), and all three are scored on ``test``.

    Arguments:
        make_generator: ``(x_subset, y_subset) -> generator`` for ``augment`` (a
            fitted conditional Model, a dict of per-class models, or a callable).
        train, test: labelled real data.
        sizes: training-subset sizes.
        n_synthetic: generated examples to add: an int, or a float = multiple of the subset size.
        repeats: subsets per size (the table reports mean and standard deviation).

    Returns a DataFrame per size: ``real``, ``augmented``, ``synthetic_only`` mean
    accuracies, their standard deviations, and ``gain`` = augmented - real.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(0, 2, (300,), generator=g)
        >>> x = torch.randn(300, 2, generator=g) + 2 * y[:, None]
        >>> def gen(xs, ys):  # per-class Gaussian fitted by moments
        ...     return lambda n, c, s: xs[ys == c].mean(0) + torch.randn(n, 2)
        >>> t = augmentation_gain(gen, (x[:200], y[:200]), (x[200:], y[200:]), sizes=[20], repeats=2, progress=False)
        >>> list(t.columns[:3])
        ['size', 'real', 'augmented']
    """
    tx, ty = _xy(train, "train")
    if ty is None:
        raise ValueError("train: needs labels (x, y)")
    check_positive("repeats", repeats, integer=True)
    clf = classifier if classifier is not None else _default_classifier(seed)
    rows = []
    jobs = [(s, r) for s in sizes for r in range(repeats)]
    for size, rep in progress_bar(jobs, enabled=progress, desc="augmentation_gain"):
        check_positive("sizes", size, integer=True)
        if size > len(tx):
            raise ValueError(f"sizes: {size} exceeds the {len(tx)} training examples")
        idx = torch.from_numpy(_stratified(ty, size, np.random.default_rng([seed, size, rep])))
        xs, ys = tx[idx], ty[idx]
        gen = make_generator(xs, ys)
        n_new = int(round(n_synthetic * size)) if isinstance(n_synthetic, float) else int(n_synthetic)
        aug = augment(gen, (xs, ys), n_new, seed=seed + rep)
        syn = aug.meta["synthetic"]
        rows.append({"size": size, "repeat": rep, "real": _fit_score(clf, xs, ys, *_xy(test, "test")),
                     "augmented": _fit_score(clf, aug.x, aug.y, *_xy(test, "test")),
                     "synthetic_only": _fit_score(clf, aug.x[syn], aug.y[syn], *_xy(test, "test"))})
    raw = pd.DataFrame(rows)
    raw["gain"] = raw["augmented"] - raw["real"]
    mean = raw.groupby("size")[["real", "augmented", "synthetic_only", "gain"]].mean()
    std = raw.groupby("size")[["real", "augmented", "gain"]].std().add_suffix("_std")
    return pd.concat([mean, std], axis=1).reset_index()
