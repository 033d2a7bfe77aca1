"""Seeds every docstring example that ``make test`` runs (``--doctest-modules probgen``).

Each example starts with the same torch, NumPy and ``random`` seeds and one torch thread, so
examples that draw random numbers print the same thing on every machine (as zuko's and
Pyro's conftests do).
"""

import random

import numpy as np
import pytest
import torch
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def _seed_docstring_examples(request):
    if isinstance(request.node, DoctestItem):
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        torch.set_num_threads(1)
    yield
