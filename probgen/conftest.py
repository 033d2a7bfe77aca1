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


# docstring examples of optional extras run only where the extra is installed
_OPTIONAL_EXTRAS = {"probgen.responsible.watermark": ("imwatermark", "cv2")}


def pytest_collection_modifyitems(config, items):
    import importlib.util

    for item in items:
        if not isinstance(item, DoctestItem):
            continue
        for module, needs in _OPTIONAL_EXTRAS.items():
            missing = [name for name in needs if importlib.util.find_spec(name) is None]
            if item.name.startswith(module) and missing:
                item.add_marker(pytest.mark.skip(reason=f"needs the optional extra ({', '.join(missing)} missing)"))
