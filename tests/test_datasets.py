"""Embedded data: shapes, splits, determinism, and errors; nothing is downloaded."""

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from probgen import datasets


@pytest.mark.parametrize("name, shape, n", [("digits", (1, 8, 8), 1797), ("mnist5k", (1, 28, 28), 5000)])
def test_images_and_splits(name, shape, n):
    full = datasets.load(name)
    assert tuple(full.x.shape[1:]) == shape and len(full) == n
    assert float(full.x.min()) >= 0 and float(full.x.max()) <= 1 and full.y.max() == 9
    parts = [datasets.load(name, split=s) for s in datasets.SPLITS]
    assert sum(len(p) for p in parts) == n
    assert [len(p) for p in parts] == [round(0.8 * n), round(0.1 * n), n - round(0.8 * n) - round(0.1 * n)]
    # the splits are disjoint and cover the data: compare the multisets of image bytes
    rows = lambda d: sorted(map(bytes, d.flat().numpy()))  # noqa: E731
    assert sorted(sum((rows(p) for p in parts), [])) == rows(full)
    again = datasets.load(name, split="test")
    assert torch.equal(again.x, parts[2].x)
    other_seed = datasets.load(name, split="test", seed=1)
    assert not torch.equal(other_seed.x, parts[2].x)


def test_binarized_is_fixed_and_binary():
    a = datasets.load("mnist5k_binary", split="test")
    b = datasets.load("mnist5k_binary", split="test")
    assert set(np.unique(a.x.numpy())) <= {0.0, 1.0} and torch.equal(a.x, b.x)
    grey = datasets.load("mnist5k", split="test")
    # each pixel was drawn Bernoulli(intensity): the means agree
    assert abs(float(a.x.mean()) - float(grey.x.mean())) < 0.005


def test_mixtures():
    d = datasets.load("grid25", n=5000)
    assert d.x.shape == (5000, 2) and d.meta["sigma"] == 0.05 and len(d.meta["means"]) == 25
    dist = torch.cdist(d.x, torch.as_tensor(d.meta["means"])).min(1).values
    assert float(dist.max()) < 6 * 0.05
    ring = datasets.load("ring8")
    assert torch.allclose(ring.x.norm(dim=1), torch.ones(len(ring)), atol=0.06)


def test_tables_series_graphs_text_networks():
    sp = datasets.load("sp500")
    assert sp.index.min().year == 1999 and sp.index.max().year == 2018 and "log_return" in sp
    train, test = datasets.load("sp500", split="train"), datasets.load("sp500", split="test")
    assert train.index.max() < test.index.min()  # chronological
    ff = datasets.load("ff3")
    assert {"Mkt-RF", "SMB", "HML"} <= set(ff.columns)
    ml = datasets.load("movielens")
    assert len(ml) == 100_004 and ml["userId"].nunique() == 671
    assert isinstance(datasets.load("nhefs"), pd.DataFrame)
    assert datasets.load("karate").number_of_nodes() == 34
    assert isinstance(datasets.load("florentine"), nx.Graph)
    text = datasets.load("english", split="val")
    assert isinstance(text, str) and len(text.split()) > 10_000
    asia = datasets.load("asia")
    assert set(asia.nodes()) == {"asia", "tub", "smoke", "lung", "bronc", "either", "xray", "dysp"}
    assert asia.check_model()


def test_errors_name_valid_choices():
    with pytest.raises(KeyError, match="mnist5k"):
        datasets.load("mnist")
    with pytest.raises(ValueError, match="split"):
        datasets.load("digits", split="training")
    with pytest.raises(ValueError, match="seed"):
        datasets.load("digits", seed=-1)
    with pytest.raises(ValueError, match="no splits"):
        datasets.load("karate", split="train")
    assert "alarm" in datasets.available() and len(datasets.describe()) == len(datasets.available())
