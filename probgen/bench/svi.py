"""SVI step time: probgen's svi engine against a hand-written torch loop doing the same maths."""

from __future__ import annotations

import time

import torch
from torch.distributions import HalfNormal, LogNormal, Normal

from ..core.random import resolve_device
from ..infer.compiled import CompiledELBO
from ..infer.svi import make_elbo, svi_loss
from .harness import Report, time_interleaved


def _clock(device: torch.device):
    """CPU seconds of this process on CPU (fair under a shared machine's load); wall time on a GPU."""
    if device.type == "cpu":
        return time.process_time
    def wall():
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return wall


def _metric(device: torch.device) -> str:
    return "CPU time per SVI step" if device.type == "cpu" else "time per SVI step"


def _per_step(runs: dict, steps: int, device: torch.device) -> dict[str, float]:
    """Median seconds per step of each run (5 interleaved timed rounds after a warm-up round)."""
    medians, _ = time_interleaved(runs, repeat=5, warmup=1, clocks={"t": _clock(device)})
    return {name: m["t"] / steps for name, m in medians.items()}


def _regression_case(report: Report, quick: bool, device: torch.device) -> None:
    """Reference Bayesian linear regression: one SVI step of probgen against a hand-written loop.

    Profile of one step before this bench measured probgen's loss (n=10,000, d=20, one idle core,
    cProfile, ms per step): Pyro's own validation 0.4 of 2.5 (NaN/inf checks on every site's
    ``log_prob_sum`` and a backward hook on each), rebuilding the constant priors about 0.1, and
    Pyro's tracing (messages through the handler stack, trace bookkeeping, ``score_parts``) the
    rest of the gap (the "tracing floor" row measures it on a model with almost no arithmetic).
    ``svi_loss`` (the ordinary path) checks on its first call only; the "checks every step" row
    is ``fit(..., check_every_step=True)``. The first row is what ``fit`` runs by default on a
    static model (``compiled="auto"``, fits of 1000 steps or more): the ELBO traced once into a
    flat torch graph (``probgen.infer.compiled.CompiledELBO``); tracing happens before timing.
    """
    from ..models.regression import BayesianLinearRegression

    n, d, steps = (1000, 10, 20) if quick else (10_000, 20, 100)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g).to(device)
    y = x @ torch.randn(d, generator=g).to(device) + 0.3 * torch.randn(n, generator=g).to(device)
    model = BayesianLinearRegression(num_features=d).to(device)
    elbo = make_elbo("elbo")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    compiled = CompiledELBO(model, num_data=n, strict=True)
    compiled((x, y))  # traces once

    def probgen_steps(check_every_step: bool | None):
        # the loss fit(...) minimises, without the loop's minibatch gather (which the baseline lacks)
        if check_every_step is None:
            loss_fn = compiled
        else:
            loss_fn = svi_loss(model, elbo, n, check_every_step=check_every_step)
            loss_fn((x, y))  # the first call runs Pyro's checks in either mode
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn((x, y))
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

    # interleaved repeats, so that both sides see the same load; the median of each
    t = _per_step({"probgen": (lambda: probgen_steps(None)), "torch": torch_steps,
                   "pyro": (lambda: probgen_steps(False)), "checks": (lambda: probgen_steps(True))}, steps, device)
    case, metric = f"Bayesian linear regression, n={n}, d={d}", _metric(device)
    report.add(case + ", compiled (fit's default)", metric, t["probgen"] * 1e3, t["torch"] * 1e3,
               baseline_name="hand-written torch ELBO", unit="ms", goal="<= 1.15x")
    report.add(case + ", ordinary Pyro path (compiled=False)", metric, t["pyro"] * 1e3, t["torch"] * 1e3,
               baseline_name="hand-written torch ELBO", unit="ms")
    report.add(case + ", Pyro checks every step", metric, t["checks"] * 1e3, t["torch"] * 1e3,
               baseline_name="hand-written torch ELBO", unit="ms")


def _tracing_floor_case(report: Report, quick: bool, device: torch.device) -> None:
    """Pyro's per-step cost with almost no arithmetic: three scalar latents and one observation.

    probgen's side is ``svi_loss`` (Trace_ELBO, checks after the first call off) on a plain
    Pyro model/guide; the baseline evaluates the same densities and reparameterised draws with
    torch distributions. Both run loss + backward, no optimizer. What is left is tracing.
    """
    import pyro
    import pyro.distributions as dist

    from ..core.base import Model

    steps = 50 if quick else 200
    locs = torch.zeros(3, device=device, requires_grad=True)
    obs = torch.tensor(0.5, device=device)
    names = ("a", "b", "c")

    class Tiny(Model):
        def model(self):
            total = sum(pyro.sample(k, dist.Normal(zero, one)) for k in names)
            pyro.sample("obs", dist.Normal(total, one), obs=obs)

        def guide(self):
            for i, k in enumerate(names):
                pyro.sample(k, dist.Normal(locs[i], one))

    zero, one = torch.zeros((), device=device), torch.ones((), device=device)
    tiny = Tiny()
    loss_fn = svi_loss(tiny, make_elbo("elbo"), 1)
    compiled = CompiledELBO(tiny, num_data=1, strict=True)
    compiled(())

    def probgen_steps(fn=loss_fn):
        for _ in range(steps):
            fn(()).backward()

    def torch_steps():
        prior = Normal(zero, one)
        for _ in range(steps):
            q = [Normal(locs[i], one) for i in range(3)]
            z = [qi.rsample() for qi in q]
            log_p = sum(prior.log_prob(zi) for zi in z) + Normal(sum(z), one).log_prob(obs)
            log_q = sum(qi.log_prob(zi) for qi, zi in zip(q, z))
            (log_q - log_p).backward()

    loss_fn(())
    t = _per_step({"probgen": probgen_steps, "torch": torch_steps, "compiled": lambda: probgen_steps(compiled)},
                  steps, device)
    case = "Pyro tracing floor: 3 scalar latents + 1 observation, loss + backward"
    report.add(case, _metric(device), t["probgen"] * 1e3, t["torch"] * 1e3, baseline_name="same densities in torch",
               unit="ms")
    report.add(case + ", compiled", _metric(device), t["compiled"] * 1e3, t["torch"] * 1e3,
               baseline_name="same densities in torch", unit="ms")


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("svi", "SVI step time against a hand-written torch loop")
    dev = resolve_device(device)
    _regression_case(report, quick, dev)
    _tracing_floor_case(report, quick, dev)
    try:
        from . import svi_vae  # added by the VAE family
    except ImportError:
        pass
    else:
        svi_vae.add_cases(report, quick, dev)
    report.note("ratio = probgen time / baseline time (lower is better)")
    return report
