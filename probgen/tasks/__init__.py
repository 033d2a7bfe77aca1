"""Applications built on any fitted model: compress, denoise, anomaly, features, augment.

Each task lives in its own module and is imported on first use.
"""

from __future__ import annotations

import importlib
import importlib.util

# public function name -> module in this package
_FUNCTIONS = {
    "compress": "compress",
    "decompress": "compress",
    "denoise": "denoise",
    "anomaly_scores": "anomaly",
    "anomaly_auc": "anomaly",
    "features": "features",
    "augment": "augment",
    "train_on_synthetic": "augment",
    "augmentation_gain": "augment",
}

__all__ = list(_FUNCTIONS)


def __getattr__(name: str):
    module = _FUNCTIONS.get(name)
    if module is not None and importlib.util.find_spec(f"{__name__}.{module}") is not None:
        return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module 'probgen.tasks' has no attribute {name!r}")
