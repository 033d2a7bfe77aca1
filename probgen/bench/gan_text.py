"""The text-to-image part of ``gan-modes`` alone: caption fidelity, unseen word pairs, attribute words."""

from __future__ import annotations

__all__ = ["run"]

from ..core.random import resolve_device
from .gan_modes import text_to_image
from .harness import Report


def run(quick: bool = False, device: str = "cpu") -> Report:
    return text_to_image(quick, resolve_device(device))
