"""Autoencoders: plain and denoising (reconstruction), variational (SVI), adversarial."""

from .autoencoder import AdversarialAutoencoder, Autoencoder
from .vae import VAE

__all__ = ["Autoencoder", "AdversarialAutoencoder", "VAE"]
