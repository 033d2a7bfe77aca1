"""A normalizing flow as a variational guide (an ``AutoContinuous`` autoguide), and a banana posterior.

The guide draws the whole unconstrained latent vector from a ``Flow`` and lets Pyro's
``AutoContinuous`` split it into the model's sites (through ``biject_to`` of each
site's support), so it works on any Pyro model with continuous latents.
"""

from __future__ import annotations

__all__ = ["FlowGuide", "fit_guide", "elbo_estimate"]

from typing import Any, Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median

from ...core.checks import check_positive
from ...core.result import FitResult
from ...core.random import seeded
from ...infer.loop import train
from ...infer.options import parse_options


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


def fit_guide(model: Callable, guide: Callable, *args: Any, num_particles: int = 8, **options: Any) -> FitResult:
    """Maximise the ELBO of ``guide`` for ``model(*args)`` through the shared training loop.

    Each step is Pyro's vectorized ``Trace_ELBO`` over the whole of ``args`` with
    ``num_particles`` draws, minimised by Adam over the guide's parameters (probgen keeps
    parameters in modules, not in Pyro's global store). Options are the loop's: ``steps``
    (default 1000), ``lr`` (default 1e-2), ``seed``, ``progress``, ``callbacks``, ...
    Returns a ``FitResult`` (engine ``"svi"``) whose history holds the loss per step.
    """
    check_positive("num_particles", num_particles, integer=True)
    opts = parse_options("svi", options, defaults={"steps": 1000, "lr": 1e-2})
    elbo = pyro.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                                 max_plate_nesting=1)

    def negative_elbo(_batch: tuple) -> torch.Tensor:  # the whole problem at every step: no minibatches
        return elbo.differentiable_loss(model, guide, *args)

    with seeded(opts.seed):
        guide(*args)  # builds the lazily-sized parameters before the optimizer sees them
    return train(guide, (torch.zeros(1),), opts, engine="svi", loss_fn=negative_elbo, parameters=guide.parameters)


@torch.no_grad()
def elbo_estimate(model: Callable, guide: Callable, *args: Any, num_particles: int = 2000,
                  seed: int | None = 0, **kwargs: Any) -> float:
    """Monte Carlo ELBO (in nats, higher is better) with ``num_particles`` vectorized draws."""
    elbo = pyro.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
    with seeded(seed):
        return -float(elbo.differentiable_loss(model, guide, *args, **kwargs))
