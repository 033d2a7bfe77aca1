"""Spread on networks: batched SIR against NDlib, and calibration of the rate posterior.

Speed: SIR on a Barabási–Albert graph (10,000 nodes, m = 3), 1,000 runs x 100
steps with probgen's batched simulator, against NDlib's ``SIRModel`` (one run at a
time, a Python loop over nodes). NDlib is timed on a few runs and its speed is
reported per node-update (nodes x iterations / seconds), the unit both share; the
same NDlib runs give its mean final size, compared with probgen's within Monte
Carlo error. The two models are the same chain binomial: NDlib's per-contact
probability b and recovery probability g are probgen's rates -log(1 - b) and
-log(1 - g).

Calibration: 20 outbreaks on the karate club, each with rates drawn from the
prior, fitted by NUTS on the exact node-level likelihood; the 90% intervals
should cover the true rates about 90% of the time.
"""

from __future__ import annotations

__all__ = ["run"]

import math
import sys
import time
import types
import warnings

import networkx as nx
import numpy as np
import pandas as pd
import torch

from ..core.random import resolve_device
from .harness import Report


def _import_ndlib():
    """NDlib, with a stand-in for ``six`` (its only use: ``six.add_metaclass``) if six is missing."""
    try:
        import six  # noqa: F401
    except ImportError:
        def add_metaclass(metaclass):
            def wrapper(cls):
                body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
                return metaclass(cls.__name__, cls.__bases__, body)
            return wrapper
        sys.modules["six"] = types.SimpleNamespace(add_metaclass=add_metaclass)
    import ndlib.models.epidemics as ep
    import ndlib.models.ModelConfig as mc

    return ep, mc


def _speed(report: Report, quick: bool, device: torch.device) -> None:
    from ..models.spread.model import Spread

    n, runs, steps, nd_runs = (1000, 50, 30, 2) if quick else (10_000, 1000, 100, 10)
    b, g, seeds = 0.02, 0.1, 10
    graph = nx.barabasi_albert_graph(n, 3, seed=0)
    model = Spread(graph, "SIR", beta=-math.log1p(-b), gamma=-math.log1p(-g)).to(device)
    model.simulate(2, 3, initial=seeds, seed=0)  # warm up (sparse matrix, allocator)
    start = time.perf_counter()
    out = model.simulate(runs, steps, initial=seeds, seed=0)
    t_probgen = time.perf_counter() - start
    ours = out.final_size.double()
    pg_speed = n * runs * steps / t_probgen

    ep, mc = _import_ndlib()
    nd_sizes, nd_time = [], 0.0
    for r in range(nd_runs):
        sim = ep.SIRModel(graph, seed=r)
        cfg = mc.Configuration()
        cfg.add_model_parameter("beta", b)
        cfg.add_model_parameter("gamma", g)
        cfg.add_model_parameter("fraction_infected", seeds / n)
        sim.set_initial_status(cfg)
        sim.iteration()  # iteration 0 only reports the initial status
        start = time.perf_counter()
        its = sim.iteration_bunch(steps, node_status=False, progress_bar=False)
        nd_time += time.perf_counter() - start
        counts = its[-1]["node_count"]
        nd_sizes.append(counts[1] + counts[2])
    nd_sizes = np.array(nd_sizes, dtype=float)
    nd_speed = n * nd_runs * steps / nd_time
    case = f"SIR, BA({n}, m=3), {runs} runs x {steps} steps"
    report.add(case, "node-updates per second", pg_speed / 1e6, nd_speed / 1e6, baseline_name="NDlib SIRModel",
               unit="M/s", goal=">= 100x")
    report.add(case, "wall time, all runs", t_probgen, nd_time / nd_runs * runs, baseline_name="NDlib (extrapolated)",
               unit="s", goal="")
    report.add(case, "ms per iteration (one run)", 1e3 * t_probgen / (runs * steps), 1e3 * nd_time / (nd_runs * steps),
               baseline_name="NDlib SIRModel", unit="ms", goal="anchor: NDlib 8.4 ms")
    se = math.sqrt(ours.var().item() / runs + nd_sizes.var(ddof=1) / nd_runs)
    report.add(case, "mean final size (ever infected)", ours.mean().item(), float(nd_sizes.mean()),
               baseline_name="NDlib SIRModel", unit="nodes", goal=f"|diff| < 3 SE = {3 * se:.1f}")
    report.note(f"NDlib timed on {nd_runs} runs x {steps} iterations and extrapolated per node-update; "
                f"probgen ran all {runs} runs ({torch.get_num_threads()} torch threads, device {device})")
    report.note(f"final sizes: probgen {ours.mean():.1f} +- {ours.std() / math.sqrt(runs):.1f} (SE), NDlib "
                f"{nd_sizes.mean():.1f} +- {nd_sizes.std(ddof=1) / math.sqrt(nd_runs):.1f}; diff / SE = "
                f"{(ours.mean().item() - nd_sizes.mean()) / max(se, 1e-9):.2f}")


def _calibration(report: Report, quick: bool) -> None:
    from .. import datasets
    from ..models.spread.model import Spread

    graph = datasets.load("karate")
    outbreaks, samples = (2, 40) if quick else (20, 200)
    rng = np.random.default_rng(0)
    rows = []
    start = time.perf_counter()
    for k in range(outbreaks):
        prior = Spread(graph, "SIR")
        beta = float(np.exp(rng.normal(math.log(prior.priors["beta"][0]), prior.priors["beta"][1])))
        gamma = float(np.exp(rng.normal(math.log(prior.priors["gamma"][0]), prior.priors["gamma"][1])))
        sim = Spread(graph, "SIR", beta=beta, gamma=gamma)
        data = sim.simulate(1, 20, initial=[0], seed=k, record_states=True)
        model = Spread(graph, "SIR")
        res = model.fit(data, num_samples=samples, warmup_steps=samples, num_chains=1, seed=k, progress=False)
        post = res.to_arviz().posterior
        row = {"outbreak": k, "final size": int(data.final_size[0]), "beta": beta, "gamma": gamma}
        for name, value in (("beta", beta), ("gamma", gamma)):
            lo, hi = np.quantile(post[name].values.ravel(), [0.05, 0.95])
            row[f"{name} covered"] = bool(lo < value < hi)
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("outbreak")
    seconds = (time.perf_counter() - start) / outbreaks
    for name in ("beta", "gamma"):
        report.add(f"SIR on karate, {outbreaks} outbreaks (rates from the prior)", f"90% interval coverage of {name}",
                   float(frame[f"{name} covered"].mean()), 0.9, baseline_name="nominal", unit="fraction",
                   goal="about 0.9 (binomial sd 0.07)")
    report.note(f"calibration: NUTS, {samples} warm-up + {samples} draws, 1 chain; {seconds:.1f} s per outbreak")
    report.table("calibration: true rates and coverage per outbreak", frame)


def run(quick: bool = False, device: str = "cpu") -> Report:
    warnings.filterwarnings("ignore", message="Sparse")
    report = Report("spread", "batched SIR vs NDlib; calibration of the rate posterior")
    _speed(report, quick, resolve_device(device))
    _calibration(report, quick)
    report.note("ratio = probgen / baseline (higher is better for node-updates per second)")
    return report
