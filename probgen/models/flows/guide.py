"""A normalizing flow as a variational guide (an ``AutoContinuous`` autoguide), and a banana posterior.

The guide draws the whole unconstrained latent vector from a ``Flow`` and lets Pyro's
``AutoContinuous`` split it into the model's sites (through ``biject_to`` of each
site's support), so it works on any Pyro model with continuous latents.
"""

from __future__ import annotations

__all__ = ["FlowGuide", "fit_guide", "elbo_estimate", "banana_model", "banana_grid_moments", "sample_moments"]

import math
from typing import Any, Callable

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median

from ...core.checks import check_positive
from ...core.progress import progress_bar
from ...core.random import seeded


class FlowGuide(AutoContinuous):
    """``q(z) = Flow`` over the model's unconstrained latent vector.

    Arguments:
        model: a Pyro program with continuous latent sites.
        kind: flow kind (see ``probgen.models.flows.flow.FLOW_KINDS``); coupling kinds need >= 2 latents.
        flow_options: passed to ``Flow`` (``transforms``, ``hidden``, ``bins``, ``base``).

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("a", dist.Normal(0.0, 1.0))
        ...     pyro.sample("b", dist.LogNormal(0.0, 1.0))
        >>> guide = FlowGuide(model, kind="maf", transforms=1, hidden=(8,))
        >>> sorted(guide())
        ['a', 'b']
    """

    def __init__(self, model: Callable, kind: str = "nsf", init_loc_fn: Callable = init_to_median,
                 **flow_options: Any):
        self.flow_kind = kind
        self.flow_options = dict(flow_options)
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        from .flow import Flow

        super()._setup_prototype(*args, **kwargs)
        self.flow = Flow(self.latent_dim, kind=self.flow_kind, standardize=False, **self.flow_options)
        with torch.no_grad():  # start centred on the model's initial point (median of the prior by default)
            self.flow.x_loc.copy_(self._init_loc())

    def get_posterior(self, *args: Any, **kwargs: Any):
        return self.flow.distribution()

    def _loc_scale(self, *args: Any, **kwargs: Any):
        with torch.no_grad():
            z = self.flow.sample(4000, seed=0)
        return z.mean(0), z.std(0)


def fit_guide(model: Callable, guide: Callable, *args: Any, steps: int = 1000, lr: float = 1e-2,
              num_particles: int = 8, seed: int | None = None, progress: bool = True, **kwargs: Any) -> list[float]:
    """Maximise the ELBO of ``guide`` for ``model(*args, **kwargs)``; returns the loss history.

    Uses Pyro's vectorized ``Trace_ELBO`` and a torch Adam over the guide's parameters
    (``probgen`` keeps parameters in modules, not in Pyro's global store).
    """
    check_positive("steps", steps, integer=True)
    check_positive("lr", lr)
    check_positive("num_particles", num_particles, integer=True)
    elbo = pyro.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                                 max_plate_nesting=1)
    history = []
    with seeded(seed):
        guide(*args, **kwargs)  # builds the lazily-sized parameters
        optimizer = torch.optim.Adam(guide.parameters(), lr=lr)
        for _ in progress_bar(range(steps), enabled=progress, desc="flow guide [svi]"):
            optimizer.zero_grad(set_to_none=True)
            loss = elbo.differentiable_loss(model, guide, *args, **kwargs)
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
    return history


@torch.no_grad()
def elbo_estimate(model: Callable, guide: Callable, *args: Any, num_particles: int = 2000,
                  seed: int | None = 0, **kwargs: Any) -> float:
    """Monte Carlo ELBO (in nats, higher is better) with ``num_particles`` vectorized draws."""
    elbo = pyro.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
    with seeded(seed):
        return -float(elbo.differentiable_loss(model, guide, *args, **kwargs))


# ------------------------------------------------------------------ the banana
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
