"""Denoising diffusion (DDPM training, DDPM and DDIM sampling, guidance, inpainting)."""

from .diffusion import Diffusion
from .schedule import NoiseSchedule, make_betas

__all__ = ["Diffusion", "NoiseSchedule", "make_betas"]
