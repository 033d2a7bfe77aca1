"""Learnt features for downstream models: the codes of any latent-variable model."""

from __future__ import annotations

__all__ = ["features"]

from typing import Any

import torch


def features(model: Any, x: Any, **options: Any) -> torch.Tensor:
    """Feature vectors ``(n, k)`` of ``x``: ``model.features(x)`` if it has one, else ``model.encode(x)``.

    For a VAE the features are the posterior means; for an autoencoder its codes;
    for an RBM its hidden-unit probabilities. Feed them to any classifier.

    Example:
        >>> import torch, probgen
        >>> x = torch.rand(32, 16)
        >>> ae = probgen.models.Autoencoder(latent_dim=4, hidden=(16,))
        >>> _ = ae.fit(x, steps=5, progress=False, seed=0)
        >>> probgen.tasks.features(ae, x).shape
        torch.Size([32, 4])
    """
    fn = getattr(model, "features", None) if not callable(getattr(model, "encode", None)) else None
    fn = fn or getattr(model, "encode", None)
    if fn is None:
        raise ValueError(f"model: expected a model with features(x) or encode(x), got {type(model).__name__}")
    z = torch.as_tensor(fn(x, **options)).detach()
    return z.reshape(len(z), -1)
