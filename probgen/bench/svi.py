"""SVI step time: probgen's svi engine against a hand-written torch loop doing the same maths."""

from __future__ import annotations


import torch
from torch.distributions import HalfNormal, LogNormal, Normal

from ..core.random import resolve_device
from ..infer.svi import make_elbo
from .harness import Report, time_call


def _regression_case(report: Report, quick: bool, device: torch.device) -> None:
    from ..models.regression import BayesianLinearRegression

    n, d, steps = (1000, 10, 20) if quick else (10_000, 20, 100)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g).to(device)
    y = x @ torch.randn(d, generator=g).to(device) + 0.3 * torch.randn(n, generator=g).to(device)
    model = BayesianLinearRegression(n_features=d).to(device)
    elbo = make_elbo("elbo")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def probgen_steps():
        for _ in range(steps):
            opt.zero_grad()
            with model.data_size(n):
                loss = elbo.differentiable_loss(model.model, model.guide, x, y) / n
            loss.backward()
            opt.step()

    # The same ELBO (one particle, reparameterised) written out by hand.
    params = {k: torch.zeros(s, device=device, requires_grad=True) for k, s in
              [("wl", (d,)), ("ws", (d,)), ("bl", ()), ("bs", ()), ("sl", ()), ("ss", ())]}
    opt2 = torch.optim.Adam(params.values(), lr=0.01)
    prior, noise = Normal(0.0, 1.0), HalfNormal(torch.tensor(1.0, device=device))

    def torch_steps():
        for _ in range(steps):
            opt2.zero_grad()
            qw = Normal(params["wl"], params["ws"].exp())
            qb = Normal(params["bl"], params["bs"].exp())
            qs = LogNormal(params["sl"], params["ss"].exp())
            w, b, s = qw.rsample(), qb.rsample(), qs.rsample()
            log_p = prior.log_prob(w).sum() + prior.log_prob(b) + noise.log_prob(s) + Normal(x @ w + b, s).log_prob(y).sum()
            log_q = qw.log_prob(w).sum() + qb.log_prob(b) + qs.log_prob(s)
            loss = -(log_p - log_q) / n
            loss.backward()
            opt2.step()

    t_probgen = time_call(probgen_steps, repeat=3) / steps
    t_torch = time_call(torch_steps, repeat=3) / steps
    report.add(f"Bayesian linear regression, n={n}, d={d}", "time per SVI step", t_probgen * 1e3, t_torch * 1e3,
               baseline_name="hand-written torch ELBO", unit="ms", goal="<= 1.15x")


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("svi", "SVI step time against a hand-written torch loop")
    dev = resolve_device(device)
    _regression_case(report, quick, dev)
    try:
        from . import svi_vae  # added by the VAE family
    except ImportError:
        pass
    else:
        svi_vae.add_cases(report, quick, dev)
    report.note("ratio = probgen time / baseline time (lower is better)")
    return report
