"""Anomaly detection through any model's ``score`` (higher = more anomalous)."""

from __future__ import annotations

__all__ = ["anomaly_scores", "anomaly_auc"]

from typing import Any

import numpy as np
import torch


def anomaly_scores(model: Any, x: Any, **options: Any) -> torch.Tensor:
    """``model.score(x, **options)`` as a 1-D tensor (higher = more anomalous).

    Works for every probgen family: reconstruction error for autoencoders, the
    negative ELBO (or IWAE bound with ``num_particles=k``) for VAEs, -log p(x) for
    exact-likelihood models.
    """
    if not hasattr(model, "score"):
        raise ValueError(f"model: expected a model with score(x), got {type(model).__name__}")
    s = torch.as_tensor(model.score(x, **options)).detach().reshape(-1).cpu()
    if not torch.all(torch.isfinite(s)):
        raise ValueError("model.score returned non-finite values")
    return s


def anomaly_auc(model: Any, normal: Any, anomalous: Any, **options: Any) -> float:
    """ROC AUC of separating ``anomalous`` from ``normal`` examples by ``model.score``.

    0.5 is chance, 1.0 perfect.

    Example:
        >>> import torch, probgen
        >>> x = torch.rand(64, 8) * 0.2
        >>> ae = probgen.models.Autoencoder(latent_dim=2, hidden=(16,))
        >>> _ = ae.fit(x, steps=30, lr=1e-2, progress=False, seed=0)
        >>> probgen.tasks.anomaly_auc(ae, x[:32], 1 - x[:32]) > 0.9
        True
    """
    from sklearn.metrics import roc_auc_score

    s_normal, s_anomalous = anomaly_scores(model, normal, **options), anomaly_scores(model, anomalous, **options)
    if not len(s_normal) or not len(s_anomalous):
        raise ValueError("normal, anomalous: expected at least one example each")
    labels = np.r_[np.zeros(len(s_normal)), np.ones(len(s_anomalous))]
    return float(roc_auc_score(labels, np.r_[s_normal.numpy(), s_anomalous.numpy()]))
