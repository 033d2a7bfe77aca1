"""Generative adversarial networks: unconditional, conditional, text-to-image, image-to-image, super-resolution."""

from .gan import GAN, ConditionalGAN
from .image import ImageToImageGAN, SuperResolutionGAN
from .text import TextToImageGAN

__all__ = ["GAN", "ConditionalGAN", "TextToImageGAN", "ImageToImageGAN", "SuperResolutionGAN"]
