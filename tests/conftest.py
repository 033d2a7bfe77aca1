"""Shared test set-up: quiet, single-threaded, non-interactive plotting."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def rng():
    """A seeded torch generator for test data."""
    return torch.Generator().manual_seed(0)
