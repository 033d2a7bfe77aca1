"""The GAN image tasks of ``gan-modes`` alone: super-resolution, occluded / edges -> full, f-AnoGAN."""

from __future__ import annotations

__all__ = ["run"]

from ..core.random import resolve_device
from .gan_modes import image_tasks
from .harness import Report


def run(quick: bool = False, device: str = "cpu") -> Report:
    return image_tasks(quick, resolve_device(device))
