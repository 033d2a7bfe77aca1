"""NUTS: effective samples per CPU second of probgen's compiled NUTS against plain Pyro NUTS.

probgen's side is ``fit(..., inference="mcmc")`` with its default ``compiled="auto"`` (the
potential and its gradient traced once into one graph, NUTS on a flat vector, see
``probgen.infer.compiled`` and ``probgen.infer.flat_nuts``); tracing is included in its time.
The baseline is ``pyro.infer.MCMC(NUTS(model))`` with the same warm-up, draws, target
acceptance and chains. Both run the same data in the same process, alternating, in CPU
seconds of one thread. Reported: the smallest bulk ESS over all parameters per CPU second,
the largest R-hat of each side, and whether every posterior mean agrees within 3 Monte Carlo
standard errors (of the difference).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch

from ..core.base import Model
from ..core.random import seeded
from .harness import Report

# Rubin (1981): estimated coaching effects and their standard errors in eight schools
_SCHOOLS_Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
_SCHOOLS_SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


class EightSchools(Model):
    """The eight-schools hierarchical model, non-centred: theta = mu + tau * theta_tilde."""

    def model(self, sigma: torch.Tensor, y: torch.Tensor | None = None) -> None:
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("schools", len(sigma)):
            theta_tilde = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
            pyro.sample("obs", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)

    def set_posterior_samples(self, samples: dict) -> None:
        self.samples = samples


def _summary(idata) -> pd.DataFrame:
    import arviz as az

    return az.summary(idata, kind="all", round_to="none")


def _pyro_side(model: Model, data: tuple, num_samples: int, warmup: int, chains: int, seed: int):
    """Plain Pyro NUTS, chains one after the other (as probgen runs them)."""
    import arviz as az

    draws = []
    for c in range(chains):
        with seeded(seed + c):
            mcmc = pyro.infer.MCMC(pyro.infer.NUTS(model.model, target_accept_prob=0.8), num_samples=num_samples,
                                   warmup_steps=warmup, disable_progbar=True)
            mcmc.run(*data)
        draws.append({k: v.detach().numpy() for k, v in mcmc.get_samples().items()})
    return az.from_dict(posterior={k: np.stack([d[k] for d in draws]) for k in draws[0]})


def _probgen_side(model: Model, data: tuple, num_samples: int, warmup: int, chains: int, seed: int):
    result = model.fit(data, inference="mcmc", num_samples=num_samples, warmup_steps=warmup, num_chains=chains,
                       seed=seed, progress=False)
    return result.inference_data


def _case(report: Report, name: str, make_model, data: tuple, num_samples: int, warmup: int, chains: int,
          repeats: int, rows: list) -> None:
    ratios = []
    for r in range(repeats):
        timed = {}
        for side, fn in (("probgen", _probgen_side), ("pyro", _pyro_side)):
            model = make_model()
            start = time.process_time()
            idata = fn(model, data, num_samples, warmup, chains, seed=100 * r)
            seconds = time.process_time() - start
            s = _summary(idata)
            timed[side] = (seconds, s)
        (tp, sp), (tb, sb) = timed["probgen"], timed["pyro"]
        ess_p, ess_b = sp["ess_bulk"].min() / tp, sb["ess_bulk"].min() / tb
        ratios.append(ess_p / ess_b)
        gap = (sp["mean"] - sb["mean"]).abs() / np.sqrt(sp["mcse_mean"] ** 2 + sb["mcse_mean"] ** 2 + 1e-12)
        rows.append({"case": name, "repeat": r, "probgen CPU s": tp, "pyro CPU s": tb,
                     "probgen min ESS": sp["ess_bulk"].min(), "pyro min ESS": sb["ess_bulk"].min(),
                     "probgen max R-hat": sp["r_hat"].max(), "pyro max R-hat": sb["r_hat"].max(),
                     "max |mean gap| / MCSE": gap.max(), "means within 3 MCSE": bool((gap <= 3).all())})
        report.add(f"{name} (repeat {r})", "min bulk ESS per CPU second", ess_p, ess_b,
                   baseline_name="plain Pyro NUTS", unit="ESS/s", goal=">= 5x")


def run(quick: bool = False, device: str = "cpu") -> Report:
    from ..models.regression import BayesianLinearRegression

    report = Report("nuts", "NUTS effective samples per CPU second: compiled against plain Pyro")
    num_samples, warmup, chains, repeats = (60, 60, 2, 1) if quick else (1000, 500, 2, 2)
    n, d = (100, 2) if quick else (1000, 5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, generator=g) + 0.5 + 0.3 * torch.randn(n, generator=g)
    rows: list = []
    # untimed warm-up of both sides on a tiny model: the process's one-off costs (torch.fx and TorchScript
    # initialisation on probgen's side, about 2 CPU seconds; Pyro's first run) are not charged to either case
    tiny = (x[:20, :1], y[:20])
    _probgen_side(BayesianLinearRegression(num_features=1), tiny, 10, 10, 1, 0)
    _pyro_side(BayesianLinearRegression(num_features=1), tiny, 10, 10, 1, 0)
    _case(report, f"Bayesian linear regression, n={n}, d={d}", lambda: BayesianLinearRegression(num_features=d),
          (x, y), num_samples, warmup, chains, repeats, rows)
    schools = (torch.tensor(_SCHOOLS_SIGMA), torch.tensor(_SCHOOLS_Y))
    _case(report, "eight schools, non-centred", EightSchools, schools, num_samples, warmup, chains, repeats, rows)
    report.table("posterior agreement and convergence", pd.DataFrame(rows).set_index(["case", "repeat"]))
    report.note(f"{chains} chains x ({warmup} warm-up + {num_samples} draws) per side; probgen's time includes "
                "tracing the model's potential (after an untimed warm-up of both libraries on a tiny model); "
                "ratio = probgen ESS/s / Pyro ESS/s (higher is better)")
    return report
