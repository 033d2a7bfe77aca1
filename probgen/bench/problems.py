"""Test problems with known answers that the benchmarks and tests measure inference against.

``banana_model`` is a two-latent Pyro model whose posterior is a crescent (a mean-field
Gaussian cannot follow it); ``banana_grid_moments`` gives its exact moments and log evidence
by quadrature, and ``sample_moments`` the same moments from draws.

Example:
    >>> m = banana_grid_moments(n=201)
    >>> round(m["log_evidence"], 1)
    -4.8
"""

from __future__ import annotations

__all__ = ["banana_model", "banana_grid_moments", "sample_moments"]

import math
from typing import Any, Callable

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def banana_model(y: torch.Tensor | None = None, noise: float = 1.0) -> None:
    """``a, b ~ N(0, 1)``, ``y_i ~ N(a + b², noise)``: the posterior is a crescent along ``a = ȳ - b²``.

    A mean-field Gaussian guide cannot follow the bend; NUTS and a flow can.
    """
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    y = torch.full((4,), 1.0) if y is None else y
    with pyro.plate("obs", len(y)):
        pyro.sample("y", dist.Normal(a + b ** 2, noise), obs=y)


def banana_grid_moments(y: torch.Tensor | None = None, noise: float = 1.0, lim: float = 6.0,
                        n: int = 801) -> dict[str, float]:
    """Exact posterior moments and log evidence of ``banana_model`` by quadrature on a grid."""
    y = (torch.full((4,), 1.0) if y is None else y).double()
    g = torch.linspace(-lim, lim, n, dtype=torch.float64)
    a, b = torch.meshgrid(g, g, indexing="ij")
    logp = (dist.Normal(0.0, 1.0).log_prob(a) + dist.Normal(0.0, 1.0).log_prob(b)
            + dist.Normal((a + b ** 2)[..., None], noise).log_prob(y).sum(-1))
    cell = (g[1] - g[0]) ** 2
    log_z = torch.logsumexp(logp.reshape(-1), 0) + torch.log(cell)
    w = torch.exp(logp - logp.max())
    w = w / w.sum()
    moments = _moments(lambda f: float((w * f).sum()), a, b)
    moments["log_evidence"] = float(log_z)
    return moments


def _moments(expect: Callable, a, b) -> dict[str, float]:
    ea, eb, eb2 = expect(a), expect(b), expect(b ** 2)
    sa, sb = math.sqrt(expect(a ** 2) - ea ** 2), math.sqrt(expect(b ** 2) - eb ** 2)
    sb2 = math.sqrt(expect(b ** 4) - eb2 ** 2)
    corr = (expect(a * b ** 2) - ea * eb2) / (sa * sb2)
    return {"mean_a": ea, "sd_a": sa, "mean_b2": eb2, "sd_b": sb, "corr_a_b2": corr}


def sample_moments(a: Any, b: Any) -> dict[str, float]:
    """The same moments as ``banana_grid_moments`` from posterior draws of ``a`` and ``b``."""
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    return _moments(lambda f: float(np.mean(f)), a, b)
