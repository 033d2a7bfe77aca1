"""Applications built on any fitted model: compress, denoise, anomaly, features, augment.

Each task lives in its own module. The functions are bound here at package import:
several modules share their function's name, and a submodule only rebinds the package
attribute on its first import, so ``probgen.tasks.compress`` stays the function
whatever is imported later.
"""

from __future__ import annotations

from .anomaly import AnomalyDetector, anomaly_auc, anomaly_scores
from .augment import augment, augmentation_gain, train_on_synthetic
from .compress import compress, decompress
from .denoise import denoise
from .features import features

__all__ = ["compress", "decompress", "denoise", "AnomalyDetector", "anomaly_scores", "anomaly_auc", "features", "augment",
           "train_on_synthetic", "augmentation_gain"]
