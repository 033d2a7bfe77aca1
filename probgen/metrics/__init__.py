"""Quality control of generated data: fidelity, diversity, mode collapse, memorization, bias.

Each metric family lives in its own module and is imported on first use;
``probgen.evaluate`` (``probgen.metrics.report.evaluate``) runs a set of them.
"""

from __future__ import annotations

import importlib
import importlib.util

# public name -> module in this package
_NAMES = {
    "modes_covered": "modes",
    "evaluate": "report",
    "Report": "report",
    "compare": "report",
    # features.py: the cached digit CNN, probgen's stand-in for Inception features
    "image_features": "features",
    "digit_classifier": "features",
    # distances.py
    "frechet_distance": "distances",
    "mmd": "distances",
    "detection_auc": "distances",
    "marginal_distances": "distances",
    "correlation_difference": "distances",
    # fidelity.py
    "precision_recall": "fidelity",
    "alpha_precision_beta_recall": "fidelity",
    # memorization.py
    "distance_to_closest_record": "memorization",
    "nn_distance_ratio": "memorization",
    "membership_inference_auc": "memorization",
    "log_prob_gap": "memorization",
    # music.py: piano rolls (pitch classes, key, parallel fifths / octaves)
    "pitch_class_histogram": "music",
    "pitch_class_distance": "music",
    "in_key_fraction": "music",
    "parallel_motion": "music",
    "music_statistics": "music",
    "compare_music": "music",
    # images.py
    "psnr": "images",
    "ssim": "images",
    # bias.py
    "attribute_gap": "bias",
    "quality_vs_size": "bias",
}

__all__ = list(_NAMES)


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is not None and importlib.util.find_spec(f"{__name__}.{module}") is not None:
        return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module 'probgen.metrics' has no attribute {name!r}")
