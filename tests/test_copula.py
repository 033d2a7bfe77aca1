"""GaussianCopula: exact density against scipy, normalization, sampling, tails, bad input."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

import probgen
from probgen.models.copula import GaussianCopula


def _data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return torch.cat([z, z.exp() + 0.3 * torch.randn(n, 1, generator=g, dtype=torch.float64)], 1)


def test_log_prob_equals_scipy_kde_marginals_plus_gaussian_copula():
    x = _data()
    cop = GaussianCopula(2, shrinkage=0.3)
    cop.fit(x, progress=False)
    probe = torch.tensor([[0.1, 1.2], [-1.5, 0.2], [2.0, 6.0]], dtype=torch.float64)
    ref_marg, ref_z = 0.0, []
    for j in range(2):
        col = x[:, j].numpy()
        kde = stats.gaussian_kde(col, bw_method="scott")  # bandwidth factor n^(-1/5) times the sd
        h = math.sqrt(kde.covariance[0, 0])
        assert h == pytest.approx(float(cop.bandwidths[j]), rel=1e-2)  # scipy uses ddof=1 too
        # the same bandwidth exactly, to compare densities to float precision
        kde = stats.gaussian_kde(col, bw_method=float(cop.bandwidths[j]) / col.std(ddof=1))
        ref_marg = ref_marg + kde.logpdf(probe[:, j].numpy())
        cdf = np.array([kde.integrate_box_1d(-np.inf, v) for v in probe[:, j].numpy()])
        ref_z.append(stats.norm.ppf(cdf))
    z = np.stack(ref_z, 1)
    r = cop.correlation.numpy()
    ref = ref_marg + stats.multivariate_normal(np.zeros(2), r).logpdf(z) - stats.norm.logpdf(z).sum(1)
    np.testing.assert_allclose(cop.log_prob(probe).double().numpy(), ref, rtol=1e-5, atol=1e-5)
    # the correlation is the shrunk correlation of the training normal scores
    zs = cop.normal_scores(x).numpy()
    np.testing.assert_allclose(r[0, 1], 0.7 * np.corrcoef(zs.T)[0, 1], atol=1e-10)


def test_density_integrates_to_one_and_independence_is_the_product_of_marginals():
    x = _data(120)
    cop = GaussianCopula(2).fit(x, progress=False).model
    assert 0 < cop.shrinkage_used < 1
    gx, gy = torch.meshgrid(torch.linspace(-6, 6, 200), torch.linspace(-3, 14, 200), indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    cell = (12 / 199) * (17 / 199)
    total = float(torch.logsumexp(cop.log_prob(grid).double(), 0).exp() * cell)
    assert total == pytest.approx(1.0, abs=0.01)
    ind = GaussianCopula(2, shrinkage=1.0).fit(x, progress=False).model
    assert torch.allclose(ind.log_prob(grid[:50]).double(), ind.marginal_log_prob(grid[:50]).sum(1), atol=1e-4)


def test_samples_follow_the_marginals_and_the_dependence():
    x = _data(300)
    cop = GaussianCopula(2).fit(x, progress=False).model
    s = cop.sample(4000, seed=0).double()
    assert torch.equal(s, cop.sample(4000, seed=0).double())
    for j in range(2):  # each marginal is the KDE: same mean, variance sd^2 + h^2
        assert float(s[:, j].mean()) == pytest.approx(float(x[:, j].mean()), abs=0.1)
        kde_sd = math.sqrt(float(x[:, j].var(unbiased=False)) + float(cop.bandwidths[j]) ** 2)
        assert float(s[:, j].std()) == pytest.approx(kde_sd, rel=0.08)
    rho_data = stats.spearmanr(x.numpy()).statistic
    rho_sample = stats.spearmanr(s.numpy()).statistic
    assert rho_sample == pytest.approx(rho_data, abs=0.05)
    # quantile_transform inverts the marginal CDFs
    back = cop.normal_scores(cop.quantile_transform(torch.tensor([[-2.0, 0.5], [1.0, 3.0]])))
    assert torch.allclose(back, torch.tensor([[-2.0, 0.5], [1.0, 3.0]], dtype=torch.float64), atol=1e-6)


def test_tails_are_exact_far_out_and_follow_the_skew():
    x = _data()
    cop = GaussianCopula(2).fit(x, progress=False).model
    assert cop.skew_sign.tolist()[1] == 1.0  # exp(z) is skewed right
    far = torch.tensor([[60.0, 200.0]])
    upper = cop.log_tail(far, side="upper")
    assert torch.all(torch.isfinite(upper)) and torch.all(upper < -100)  # no underflow to -inf
    assert torch.isfinite(cop.log_prob(far)).all()
    mid = torch.tensor([[float(x[:, 0].median()), float(x[:, 1].median())]], dtype=torch.float64)
    assert cop.log_tail(mid, side="upper").exp()[0].tolist() == pytest.approx([0.5, 0.5], abs=0.1)
    both = cop.log_tail(mid, side="both")
    assert torch.all(both <= 0) and torch.all(both > math.log(0.75))
    lower, up = cop.log_tail(far, "lower"), cop.log_tail(far, "upper")
    assert torch.allclose(cop.log_tail(far, "longer")[:, 1], up[:, 1])
    assert torch.allclose(torch.logaddexp(lower, up)[:, :1], torch.zeros(1, 1, dtype=torch.float64), atol=1e-9)


def test_save_load_and_pyro():
    import pyro
    import tempfile, os

    cop = GaussianCopula(2, bandwidth="silverman").fit(_data(50), progress=False).model
    path = probgen.save(cop, os.path.join(tempfile.mkdtemp(), "c.safetensors"))
    back = probgen.load(path)
    probe = _data(7, seed=3)
    assert torch.equal(back.log_prob(probe), cop.log_prob(probe))
    trace = pyro.poutine.trace(cop.model).get_trace(probe.float())
    assert torch.allclose(trace.log_prob_sum().double(), cop.log_prob(probe).double().sum(), atol=1e-3)


def test_bad_input_is_reported_clearly():
    with pytest.raises(ValueError, match="bandwidth"):
        GaussianCopula(2, bandwidth="wide")
    with pytest.raises(ValueError, match="shrinkage"):
        GaussianCopula(2, shrinkage=1.5)
    with pytest.raises(ValueError, match="num_features"):
        GaussianCopula(0)
    cop = GaussianCopula(2)
    with pytest.raises(ValueError, match="not fitted"):
        cop.log_prob(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="at least 2 rows"):
        cop.fit(torch.zeros(1, 2), progress=False)
    cop.fit(_data(30), progress=False)
    with pytest.raises(ValueError, match="2 columns"):
        cop.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        cop.log_prob(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="side"):
        cop.log_tail(torch.zeros(1, 2), side="left")
