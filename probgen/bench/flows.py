"""Normalizing flows: S&P 500 one-day-ahead densities and VaR against GARCH(1,1)-t (arch),
Fama-French factor densities and tail dependence, 2-D/tabular density estimation against
scikit-learn's GaussianMixture, and a flow guide against mean-field SVI and NUTS."""

from __future__ import annotations

__all__ = ["run"]

import time

import numpy as np
import pandas as pd
import torch

from ..core.random import resolve_device
from .harness import Report

ALPHAS = (0.01, 0.05)


def _tensor(a, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)


def _fit_flow(flow, train, val, steps: int, lr: float, batch_size: int = 256, patience: int = 6, seed: int = 0,
              **options):
    start = time.perf_counter()
    result = flow.fit(train, validation=val, patience=patience, steps=steps, lr=lr, batch_size=batch_size,
                      progress=False, seed=seed, device=flow.device, **options)
    return time.perf_counter() - start, result


# ------------------------------------------------------------------ S&P 500
def _sp500(report: Report, quick: bool, device) -> None:
    from ..datasets import load
    from ..models.flows.flow import Flow
    from ..tasks.finance import GarchT, GaussianReturns, StudentReturns, return_features, var_backtest

    frame = load("sp500")
    r = frame["log_return"] * 100  # percent
    n_train, n_val = len(load("sp500", split="train")), len(load("sp500", split="val"))
    if quick:  # a short window keeps the quick run to seconds
        r = r.iloc[-900:]
        n_train, n_val = 600, 150
    n = len(r)
    idx = np.arange(n)
    test = idx >= n_train + n_val
    r_test = r[test]
    rows, quantiles = [], {}
    timings = {}

    # baselines are fitted on train + val (1999-2016); they need no early stopping
    past = r.iloc[:n_train + n_val]
    for model in (GaussianReturns().fit(past), StudentReturns().fit(past)):
        rows.append({"model": model.name, "test LL/day": model.log_prob(r_test).mean()})
        quantiles[model.name] = model.quantile(ALPHAS, int(test.sum()))
    start = time.perf_counter()
    garch = GarchT().fit(r, num_train=n_train + n_val)
    timings[garch.name] = time.perf_counter() - start
    rows.append({"model": garch.name, "test LL/day": garch.log_prob()[test].mean(),
                 "fit s": timings[garch.name]})
    quantiles[garch.name] = garch.quantile(ALPHAS)[test]

    # flows: fitted on train (1999-2014), early stopping on val (2015-2016)
    features = return_features(r, lags=5, vol_windows=(5, 22, 66))
    full = features.notna().all(axis=1).to_numpy()
    x = _tensor(r.to_numpy()[:, None], device)
    c = _tensor(features.fillna(0.0).to_numpy(), device)
    tr, va = (idx < n_train) & full, (idx >= n_train) & (idx < n_train + n_val)
    steps = 20 if quick else 2000
    specs = [
        ("flow NSF, Student-t base", dict(kind="nsf", base="student"), False),
        ("flow NSF, normal base", dict(kind="nsf", base="normal"), False),
        ("cond. flow MAF | lags+vol, t base", dict(kind="maf", base="student"), True),
        ("cond. flow NSF | lags+vol, t base", dict(kind="nsf", base="student"), True),
    ]
    if quick:
        specs = [("flow MAF, Student-t base", dict(kind="maf", base="student"), False), specs[2]]
    best = None
    for name, kw, conditional in specs:
        flow = Flow(1, context_dim=c.shape[1] if conditional else None, transforms=2, hidden=(32, 32), **kw).to(device)
        data = (x[tr], c[tr]) if conditional else x[tr]
        val = (x[va], c[va]) if conditional else x[va]
        seconds, result = _fit_flow(flow, data, val, steps=steps, lr=3e-3)
        ctx = c[test] if conditional else None
        with torch.no_grad():
            ll = float(flow.log_prob(x[test], ctx).mean())
            q = flow.quantile(list(ALPHAS), ctx).cpu().numpy()
        quantiles[name] = q if conditional else np.tile(q, (int(test.sum()), 1))
        rows.append({"model": name, "test LL/day": ll, "fit s": seconds, "steps": len(result.history),
                     "t df": float(flow.base_df()[0]) if kw["base"] == "student" else np.nan})
        if conditional and (best is None or ll > best[1]):
            best = (name, ll)
    table = pd.DataFrame(rows).set_index("model")
    report.table("S&P 500 daily log returns (%), test 2017-2018, one-day-ahead log-likelihood per day "
                 "(higher is better)", table)
    garch_ll = table.loc[garch.name, "test LL/day"]
    report.add("S&P 500 test NLL/day: best conditional flow vs GARCH(1,1)-t", "NLL per day", -best[1], -garch_ll,
               baseline_name="arch GARCH(1,1)-t", unit="nats", goal="<= 1x (lower is better)")
    uncond = table.loc[specs[0][0], "test LL/day"]
    report.add("S&P 500 test NLL/day: unconditional flow vs i.i.d. Student-t", "NLL per day", -uncond,
               -table.loc["Student-t", "test LL/day"], baseline_name="scipy Student-t", unit="nats",
               goal="~1x (both i.i.d.)")
    backtest = var_backtest(r_test, quantiles, ALPHAS)
    report.table(f"VaR backtest on {int(test.sum())} test days: violations vs expected, Kupiec p-value "
                 "(p < 0.05 rejects correct coverage)", backtest.set_index(["model", "level"]))
    winner = table["test LL/day"].idxmax()
    report.note(f"S&P 500: best test LL/day is {winner} ({table['test LL/day'].max():.4f}); GARCH(1,1)-t "
                f"{garch_ll:.4f}. Baselines fitted on 1999-2016, flows on 1999-2014 with 2015-2016 for early "
                "stopping; context = 5 lagged returns + log realised vol over 5/22/66 days.")


# ---------------------------------------------------------------- FF3 factors
def _ff3(report: Report, quick: bool, device) -> None:
    from sklearn.mixture import GaussianMixture

    from ..datasets import load
    from ..models.flows.flow import Flow
    from ..tasks.finance import tail_dependence

    cols = ["Mkt-RF", "SMB", "HML"]
    parts = {s: load("ff3", split=s)[cols].to_numpy(dtype=float) for s in ("train", "val", "test")}
    train, val, test = parts["train"], parts["val"], parts["test"]
    rows = []
    gauss = GaussianMixture(1, covariance_type="full", random_state=0).fit(np.vstack([train, val]))
    rows.append({"model": "Gaussian (MLE)", "test LL/month": gauss.score(test)})
    best_k, best_val = 1, -np.inf
    for k in (1, 2, 3, 4, 6):
        g = GaussianMixture(k, covariance_type="full", random_state=0, n_init=2).fit(train)
        if g.score(val) > best_val:
            best_k, best_val = k, g.score(val)
    gmm = GaussianMixture(best_k, covariance_type="full", random_state=0, n_init=2).fit(np.vstack([train, val]))
    rows.append({"model": f"GaussianMixture (k={best_k} by val)", "test LL/month": gmm.score(test)})
    flow = Flow(3, kind="maf" if quick else "nsf", base="student", transforms=2, hidden=(32, 32)).to(device)
    seconds, _ = _fit_flow(flow, _tensor(train, device), _tensor(val, device), steps=20 if quick else 1500,
                           lr=3e-3, batch_size=128)
    with torch.no_grad():
        flow_ll = float(flow.log_prob(_tensor(test, device)).mean())
    rows.append({"model": f"flow {flow.kind.upper()}, Student-t base", "test LL/month": flow_ll, "fit s": seconds})
    table = pd.DataFrame(rows).set_index("model")
    report.table("Fama-French 3 factors (monthly %, Mkt-RF/SMB/HML), chronological split, test "
                 "log-likelihood per month (higher is better)", table)
    report.add("FF3 joint density, test LL/month", "LL per month", flow_ll, float(gmm.score(test)),
               baseline_name=f"sklearn GaussianMixture k={best_k}", unit="nats", goal="higher")

    # lower-tail dependence: joint crashes; the data over all months vs each fitted model's samples
    n = 2000 if quick else 20000
    everything = load("ff3")[cols].to_numpy(dtype=float)
    samples = {"data (1926-2018)": everything,
               "flow": flow.sample(n, seed=0).cpu().numpy(),
               "Gaussian": gauss.sample(n)[0],
               f"GMM k={best_k}": gmm.sample(n)[0]}
    pairs = [(0, 1), (0, 2), (1, 2)]
    tail = {name: {f"{cols[i]}|{cols[j]}": tail_dependence(s, 0.05).iloc[i, j] for i, j in pairs}
            for name, s in samples.items()}
    report.table("FF3 lower-tail dependence P(U_i < 5% | U_j < 5%)", pd.DataFrame(tail).T)


# -------------------------------------------------------- density estimation
def _tabular(seed: int = 0):
    from sklearn.datasets import load_breast_cancer

    x = np.log1p(load_breast_cancer().data)
    order = np.random.default_rng(seed).permutation(len(x))
    a, b = int(0.8 * len(x)), int(0.9 * len(x))
    train, val, test = x[order[:a]], x[order[a:b]], x[order[b:]]
    loc, scale = train.mean(0), train.std(0)
    return [(p - loc) / scale for p in (train, val, test)]


def _density(report: Report, quick: bool, device) -> None:
    from sklearn.mixture import GaussianMixture

    from ..datasets import load
    from ..models.flows.flow import Flow

    sets = {}
    for name in ("moons", "ring8"):
        sets[name] = [load(name, split=s).x.numpy().astype(float) for s in ("train", "val", "test")]
    sets["breast cancer (30-D, log, std.)"] = _tabular()
    if quick:
        sets = {"moons": sets["moons"]}
    rows = []
    for name, (train, val, test) in sets.items():
        dim = train.shape[1]
        best = (None, -np.inf)
        for k in (1, 2, 4, 8, 16, 32):
            if k * 2 > len(train) // dim:
                continue
            g = GaussianMixture(k, covariance_type="full", random_state=0, reg_covar=1e-5).fit(train)
            if g.score(val) > best[1]:
                best = (g, g.score(val))
        gmm = best[0]
        if dim <= 2:  # spline flow for the 2-D shapes
            kind, kw, fit = "nsf", dict(transforms=3, hidden=(64, 64)), dict(lr=3e-3)
        else:  # few rows in 30-D: a small affine MAF with heavy-tailed base, frequent validation
            kind, kw = "maf", dict(transforms=2, hidden=(32,), base="student")
            fit = dict(lr=1e-3, batch_size=128, eval_every=20)
        if quick:
            kind = "maf"
        flow = Flow(dim, kind=kind, **kw).to(device)
        seconds, result = _fit_flow(flow, _tensor(train, device), _tensor(val, device),
                                    steps=20 if quick else 2000, patience=8, **fit)
        with torch.no_grad():
            ll = float(flow.log_prob(_tensor(test, device)).mean())
        rows.append({"data": name, "n train": len(train), f"flow": kind.upper(), "flow LL": ll,
                     "GMM LL": gmm.score(test), "GMM k (by val)": gmm.n_components, "flow s": seconds,
                     "flow steps": len(result.history)})
        report.add(f"{name}: test LL/point", "LL per point", ll, float(gmm.score(test)),
                   baseline_name=f"sklearn GaussianMixture k={gmm.n_components}", unit="nats", goal="higher")
    report.table("Density estimation, held-out log-likelihood per point (higher is better)",
                 pd.DataFrame(rows).set_index("data"))


# ---------------------------------------------------------- flow as a guide
def _guide(report: Report, quick: bool) -> None:
    import pyro
    from pyro.infer.autoguide import AutoNormal

    from ..models.flows.guide import FlowGuide, elbo_estimate, fit_guide
    from .problems import banana_grid_moments, banana_model, sample_moments

    exact = banana_grid_moments()
    rows = [{"method": "exact (grid quadrature)", "ELBO or log Z": exact.pop("log_evidence"), **exact}]
    steps = 20 if quick else 1000
    for name, guide, lr in (("mean-field Gaussian SVI (AutoNormal)", AutoNormal(banana_model), 1e-2),
                            ("flow guide SVI (MAF, 5 transforms)",
                             FlowGuide(banana_model, kind="maf", transforms=5, hidden=(32, 32)), 5e-3)):
        start = time.perf_counter()
        fit_guide(banana_model, guide, steps=steps, lr=lr, num_particles=32, seed=0, progress=False)
        seconds = time.perf_counter() - start
        with torch.no_grad(), pyro.plate("draws", 2000 if quick else 20000):
            draws = guide()
        rows.append({"method": name, "ELBO or log Z": elbo_estimate(banana_model, guide), "s": seconds,
                     **sample_moments(draws["a"], draws["b"])})
    if not quick:
        start = time.perf_counter()
        pyro.set_rng_seed(0)
        mcmc = pyro.infer.MCMC(pyro.infer.NUTS(banana_model), num_samples=1000, warmup_steps=300,
                               disable_progbar=True)
        mcmc.run()
        s = mcmc.get_samples()
        rows.append({"method": "NUTS (1000 draws)", "s": time.perf_counter() - start,
                     **sample_moments(s["a"], s["b"])})
    table = pd.DataFrame(rows).set_index("method")
    report.table("Flow as SVI guide on a banana posterior (a, b ~ N(0,1), y_i ~ N(a + b^2, 1), y = 1 x4)", table)
    flow_row, mf_row = table.iloc[2], table.iloc[1]
    report.add("banana: corr(a, b^2) error vs exact", "abs error", abs(flow_row["corr_a_b2"] - exact["corr_a_b2"]),
               abs(mf_row["corr_a_b2"] - exact["corr_a_b2"]), baseline_name="mean-field Gaussian guide",
               goal="lower")


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("flows", "normalizing flows: returns vs GARCH, factor densities, density estimation, flow guide")
    dev = resolve_device(device)
    torch.manual_seed(0)
    np.random.seed(0)
    _sp500(report, quick, dev)
    _ff3(report, quick, dev)
    _density(report, quick, dev)
    _guide(report, quick)
    report.note("LL figures are per observation in nats on the data's own units (returns in percent).")
    return report
