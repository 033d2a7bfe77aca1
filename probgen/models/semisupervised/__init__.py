"""Semi-supervised learning with generative models: M2 and M1+M2 VAEs, and the SSL-GAN."""

from .gan import SemiSupervisedGAN
from .vae import SemiSupervisedVAE, StackedSemiSupervisedVAE

__all__ = ["SemiSupervisedVAE", "StackedSemiSupervisedVAE", "SemiSupervisedGAN"]
