"""Embedded data sets: only what installed packages ship or code generates.

``load(name, split=None, seed=0)`` returns, by kind of data:

* images and points: a ``Dataset`` (``x`` float tensor, ``y`` labels or ``None``);
  images are ``(n, 1, H, W)`` in [0, 1];
* tables and series: a pandas ``DataFrame``;
* graphs: a ``networkx.Graph``; Bayesian networks: a pgmpy ``DiscreteBayesianNetwork``;
* text: a ``str``;
* music (``"chorales"``): a ``probgen.datasets.chorales.Chorales`` of piano rolls, split by piece.

``split`` is ``"train"``, ``"val"`` or ``"test"`` (80/10/10; chronological for time
series, a seeded permutation otherwise), ``None`` for everything. With the
default ``seed=0`` the splits are the fixed ones every benchmark uses.
"""

from __future__ import annotations

__all__ = ["load", "available", "describe", "Dataset", "SPLITS"]

from ._catalog import CATALOG, Dataset, SPLITS, describe, load


def available() -> list[str]:
    """Names accepted by ``load``.

    Example:
        >>> "mnist5k" in available()
        True
    """
    return sorted(CATALOG)
