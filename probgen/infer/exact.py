"""Closed-form and enumeration fits (counts, conjugate posteriors).

The engine is a name that families with a closed form implement as
``_fit_exact(data, **options)``; there is no generic closed form to fall back on.
"""

from __future__ import annotations

__all__ = ["fit_exact"]

from typing import Any

from ..core.base import Model


def fit_exact(model: Model, data: Any, **options: Any):
    raise ValueError(f"inference: the {model.family!r} family has no closed-form ('exact') fit; "
                     f"its default engine is {model.default_inference!r}")
