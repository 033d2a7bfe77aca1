"""Responsible use: provenance of generated content, model cards, an optional image watermark.

Differentially private training lives with the engines (``probgen.infer.privacy``;
``fit(..., privacy={...})``).
"""

from __future__ import annotations

__all__ = ["stamp", "provenance", "record", "write_samples", "model_hash", "model_card", "card_path"]

from .card import card_path, model_card
from .provenance import model_hash, provenance, record, stamp, write_samples
