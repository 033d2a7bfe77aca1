"""Learnt features for downstream models: the codes of any latent-variable model."""

from __future__ import annotations

__all__ = ["features"]

import sys as _sys
import types as _types
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


class _CallableModule(_types.ModuleType):
    """Calling the module calls ``features``.

    The package names this module like its function, so once the module is imported
    ``probgen.tasks.features`` is the module; making it callable keeps
    ``probgen.tasks.features(...)`` working whatever was imported first.
    """

    def __call__(self, *args: Any, **kwargs: Any):
        return features(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
