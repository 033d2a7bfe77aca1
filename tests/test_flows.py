"""Normalizing flows: exactness of the density, inversion, fitting, finance helpers, flow guide."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch

import probgen
from probgen.models.flows.flow import Flow, _log_normalizer_2d
from probgen.tasks.finance import GarchT, kupiec_test, return_features, tail_dependence, var_backtest


def _scrambled(flow: Flow, seed: int = 0, scale: float = 0.3) -> Flow:
    """An untrained flow with random weights: a far-from-identity transform to test the maths on."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


@pytest.mark.parametrize("kind", ["nsf", "realnvp", "maf"])
def test_density_integrates_to_one_on_a_grid(kind):
    torch.manual_seed(0)
    flow = _scrambled(Flow(2, kind=kind, transforms=2, hidden=(16,)))
    mass = math.exp(_log_normalizer_2d(flow, lim=7.0, n=500))
    # the integral over the box equals the probability of the box (from samples), and that is ~1
    inside = float((flow.sample(40000, seed=0).abs().max(1).values <= 7.0).double().mean())
    assert inside > 0.99
    assert abs(mass - inside) < 0.01


@pytest.mark.parametrize("kind,base,context_dim", [("nsf", "normal", None), ("maf", "student", 2),
                                                   ("realnvp", "normal", None)])
def test_log_prob_is_change_of_variables_with_autograd_jacobian(kind, base, context_dim):
    torch.manual_seed(0)
    flow = _scrambled(Flow(2, kind=kind, base=base, context_dim=context_dim, transforms=2, hidden=(16,))).double()
    with torch.no_grad():  # a non-trivial standardization as well
        flow.x_loc.copy_(torch.tensor([0.5, -1.0]))
        flow.x_scale.copy_(torch.tensor([2.0, 0.5]))
    x = torch.randn(6, 2, dtype=torch.float64)
    c = None if context_dim is None else torch.randn(6, context_dim, dtype=torch.float64)
    got = flow.log_prob(x, c)
    base_dist = flow.flow_distribution(None if c is None else c[:1]).base
    for i in range(len(x)):
        ci = None if c is None else c[i:i + 1]
        fn = lambda v: flow.transform(v[None], ci)[0]  # noqa: E731
        jac = torch.autograd.functional.jacobian(fn, x[i])
        z = fn(x[i])
        expected = base_dist.log_prob(z[None])[0] + torch.linalg.slogdet(jac)[1]
        assert abs(float((got[i] - expected).detach())) < 1e-5


@pytest.mark.parametrize("kind,context_dim", [("nsf", None), ("maf", 3), ("realnvp", None), ("nsf", 2)])
def test_inverse_of_forward_is_identity(kind, context_dim):
    torch.manual_seed(1)
    flow = _scrambled(Flow(3, kind=kind, context_dim=context_dim, transforms=2, hidden=(16,)))
    x = torch.randn(50, 3)
    c = None if context_dim is None else torch.randn(50, context_dim)
    with torch.no_grad():
        back = flow.inverse(flow.transform(x, c), c)
    assert torch.allclose(back, x, atol=1e-4)


def test_flow_beats_gaussian_mixture_with_same_parameter_count_on_moons():
    from sklearn.mixture import GaussianMixture

    train = probgen.datasets.load("moons", split="train").x
    val = probgen.datasets.load("moons", split="val").x
    test = probgen.datasets.load("moons", split="test").x
    flow = Flow(2, kind="maf", transforms=4, hidden=(16, 16))
    result = flow.fit(train, validation=val, patience=4, steps=600, lr=5e-3, batch_size=256, progress=False, seed=0)
    n_params = sum(p.numel() for p in flow.parameters())
    k = max(1, round((n_params + 1) / 6))  # full-covariance 2-D GMM: 6k - 1 parameters
    k = min(k, len(train) // 4)
    gmm = GaussianMixture(k, covariance_type="full", random_state=0).fit(train.numpy())
    flow_ll = float(flow.log_prob(test).mean())
    assert flow_ll > gmm.score(test.numpy())
    assert flow_ll > -1.0  # well above a single Gaussian (about -1.9 nats/point)
    assert "best_val_loss" in result.info
    # early stopping restored the best weights: the validation loss now equals the best one seen
    assert abs(float(-flow.log_prob(val).mean()) - result.info["best_val_loss"]) < 1e-4


def test_sampling_seeds_shapes_and_pyro_site():
    flow = _scrambled(Flow(2, kind="maf", context_dim=1, transforms=1, hidden=(8,)))
    c = torch.tensor([[0.5], [-1.0], [2.0]])
    assert flow.sample(5, seed=3, context=c).shape == (5, 3, 2)
    assert flow.sample(5, seed=3, context=[0.5]).shape == (5, 2)
    assert torch.equal(flow.sample(5, seed=3, context=c), flow.sample(5, seed=3, context=c))
    x = torch.randn(3, 2)
    trace = pyro.poutine.trace(flow.model).get_trace(x, c)
    assert torch.allclose(trace.log_prob_sum(), flow.log_prob(x, c).sum(), atol=1e-5)
    assert torch.allclose(flow.score(x, c), -flow.log_prob(x, c))


def test_quantiles_of_a_one_dimensional_conditional_flow_are_exact():
    torch.manual_seed(0)
    flow = _scrambled(Flow(1, kind="nsf", base="student", context_dim=2, transforms=2, hidden=(8,)), scale=0.2)
    c = torch.tensor([[0.0, 1.0], [1.0, -1.0]])
    q = flow.quantile([0.01, 0.05, 0.5], context=c)
    assert q.shape == (2, 3) and torch.all(q[:, 0] < q[:, 1])
    draws = flow.sample(40000, seed=0, context=c)[..., 0]  # (n, 2)
    coverage = (draws < q[None, :, 1]).double().mean(0)
    assert torch.allclose(coverage, torch.full((2,), 0.05, dtype=torch.float64), atol=0.006)
    # and through the CDF: the base quantile maps to q exactly
    z = flow.transform(q[:, 2:3], c)
    assert torch.allclose(z, torch.zeros_like(z), atol=1e-4)


def test_bad_input_gives_clear_errors():
    flow = Flow(2, kind="maf", context_dim=3, transforms=1, hidden=(8,))
    with pytest.raises(ValueError, match="context"):
        flow.log_prob(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="context_dim=3"):
        flow.log_prob(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="dim=2"):
        flow.log_prob(torch.zeros(4, 5), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN|nan|finite"):
        flow.log_prob(torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="context"):
        flow.fit(torch.zeros(10, 2), steps=1, progress=False)
    with pytest.raises(ValueError, match="unconditional"):
        Flow(2, kind="maf").log_prob(torch.zeros(3, 2), context=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="kind"):
        Flow(2, kind="glow")
    with pytest.raises(ValueError, match="dim >= 2"):
        Flow(1, kind="realnvp")
    with pytest.raises(ValueError, match="base"):
        Flow(2, base="laplace")
    with pytest.raises(ValueError, match="quantile"):
        Flow(2).quantile(0.05)


def test_save_load_round_trip_keeps_density_and_standardization(tmp_path):
    torch.manual_seed(0)
    x, c = torch.randn(100, 1) * 3 + 5, torch.randn(100, 2)
    flow = Flow(1, kind="nsf", base="student", context_dim=2, transforms=1, hidden=(8,))
    flow.fit((x, c), steps=5, progress=False, seed=0)
    assert abs(float(flow.x_loc) - float(x.mean())) < 1e-4
    probgen.save(flow, tmp_path / "flow")
    again = probgen.load(tmp_path / "flow")
    assert torch.allclose(again.log_prob(x, c), flow.log_prob(x, c))
    assert torch.allclose(again.base_df(), flow.base_df())
    assert torch.equal(again.sample(3, seed=1, context=c[:2]), flow.sample(3, seed=1, context=c[:2]))


# ----------------------------------------------------------------- finance
def test_garch_log_prob_matches_arch_loglikelihood():
    r = probgen.datasets.load("sp500")["log_return"].to_numpy()[:800] * 100
    g = GarchT().fit(r, num_train=700)
    assert abs(g.log_prob()[:700].sum() - g.result.loglikelihood) < 1e-3 * abs(g.result.loglikelihood)
    q = g.quantile([0.01, 0.05])
    assert q.shape == (800, 2) and np.all(q[:, 0] < q[:, 1])


def test_kupiec_matches_hand_computation_and_features_do_not_look_ahead():
    hits = [1] * 4 + [0] * 96
    lr, p = kupiec_test(hits, 0.01)
    expected = -2 * (96 * math.log(0.99) + 4 * math.log(0.01) - 96 * math.log(0.96) - 4 * math.log(0.04))
    assert abs(lr - expected) < 1e-9 and 0.0 < p < 0.05
    r = np.random.default_rng(0).standard_normal(100)
    f1 = return_features(r, lags=3, vol_windows=(5,))
    r2 = r.copy()
    r2[50] = 100.0
    f2 = return_features(r2, lags=3, vol_windows=(5,))
    assert f1.iloc[:51].equals(f2.iloc[:51]) and not f1.iloc[51:].equals(f2.iloc[51:])
    bt = var_backtest(r[:20], {"m": np.full((20, 1), -1.0)}, [0.05])
    assert int(bt["violations"][0]) == int((r[:20] < -1).sum())
    with pytest.raises(ValueError, match="returns"):
        return_features([0.0, float("nan")])


def test_tail_dependence_separates_comonotone_from_independent():
    z = np.random.default_rng(1).standard_normal((5000, 2))
    td = tail_dependence(np.hstack([z[:, :1], z[:, :1], z[:, 1:]]), 0.05)
    assert td.iloc[0, 1] == 1.0 and td.iloc[0, 2] < 0.15


# -------------------------------------------------------------- flow guide
def test_flow_guide_follows_the_banana_where_mean_field_cannot():
    from probgen.bench.problems import banana_grid_moments, banana_model, sample_moments
    from probgen.models.flows.guide import elbo_estimate, fit_guide

    exact = banana_grid_moments()
    guide = Flow.as_guide(banana_model, kind="maf", transforms=3, hidden=(16, 16))
    fit_guide(banana_model, guide, steps=250, lr=2e-2, num_particles=16, seed=0, progress=False)
    with torch.no_grad(), pyro.plate("draws", 4000):
        draws = guide()
    moments = sample_moments(draws["a"], draws["b"])
    # a mean-field guide has corr(a, b^2) = 0 by construction; the posterior's is about -0.77
    assert moments["corr_a_b2"] < -0.5
    assert abs(moments["sd_b"] - exact["sd_b"]) < 0.2
    elbo = elbo_estimate(banana_model, guide, num_particles=4000)
    assert exact["log_evidence"] - 0.45 < elbo <= exact["log_evidence"] + 0.02


def test_bench_quick_has_rows_and_sane_values():
    from probgen.bench.flows import run

    report = run(quick=True)
    frame = report.frame()
    assert len(frame) >= 4 and frame["probgen"].notna().all()
    sp = report.tables[next(k for k in report.tables if k.startswith("S&P"))]
    assert sp["test LL/day"].between(-3.0, 0.0).all()
    var = report.tables[next(k for k in report.tables if k.startswith("VaR"))]
    assert var["kupiec_p"].between(0, 1).all()
