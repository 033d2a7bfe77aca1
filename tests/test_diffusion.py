"""Denoising diffusion: schedule algebra, samplers, the bound, guidance, inpainting, input checks."""

import pyro
import pytest
import torch

import probgen
from probgen.models import Diffusion
from probgen.models.diffusion.schedule import NoiseSchedule, make_betas


def _mixture(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[-2.0, -2.0], [2.0, 2.0], [-2.0, 2.0], [2.0, -2.0]])
    y = torch.randint(0, 4, (n,), generator=g)
    return means[y] + 0.3 * torch.randn(n, 2, generator=g), y


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_closed_form_marginal_matches_iterated_steps(kind):
    sched = NoiseSchedule(kind, 100)
    betas = make_betas(kind, 100)
    mean, var = torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    for t in range(100):  # moments of x_t = sqrt(1 - b_t) x_{t-1} + sqrt(b_t) eps, from x_0 = 1
        mean, var = (1 - betas[t]).sqrt() * mean, (1 - betas[t]) * var + betas[t]
        ab = sched.alpha_bar[t].double()
        assert abs(float(mean - ab.sqrt())) < 1e-6 and abs(float(var - (1 - ab))) < 1e-6


def test_guide_is_the_forward_chain():
    """Monte Carlo through the Pyro guide agrees with q(x_t | x_0) in closed form."""
    m = Diffusion((2,), timesteps=30, hidden=16)
    x0 = torch.full((4000, 2), 1.5)
    m.prepare_data(torch.randn(50, 2))  # sets the standardization (near identity)
    with probgen.seeded(0):
        trace = pyro.poutine.trace(m.guide).get_trace(x0)
    z0 = m._to_latent(x0)
    for t in (1, 10, 30):
        zt = trace.nodes[f"x_{t}"]["value"]
        ab = m.schedule.alpha_bar[t - 1]
        torch.testing.assert_close(zt.mean(0), ab.sqrt() * z0[0], atol=0.05, rtol=0)
        torch.testing.assert_close(zt.var(0), (1 - ab).expand(2), atol=0.05, rtol=0)


def test_schedules_are_monotone():
    for kind in ("linear", "cosine"):
        ab = NoiseSchedule(kind, 1000).alpha_bar
        assert bool((ab[1:] < ab[:-1]).all()) and 0 < float(ab[-1]) < 0.01 and float(ab[0]) > 0.99


def test_ddim_eta_zero_is_deterministic_given_x_T():
    m = Diffusion((2,), timesteps=50, hidden=16)
    m.fit(torch.randn(64, 2), steps=5, progress=False, seed=0)
    x_T = torch.randn(8, 2)
    a = m.sample(8, seed=1, x_T=x_T, steps=20, eta=0.0)
    b = m.sample(8, seed=2, x_T=x_T, steps=20, eta=0.0)
    c = m.sample(8, seed=2, x_T=x_T, steps=20, eta=1.0)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(m.sample(8, seed=3, method="ddpm"), m.sample(8, seed=3, method="ddpm"))


@pytest.fixture(scope="module")
def trained():
    x, y = _mixture(2000)
    m = Diffusion((2,), timesteps=100, hidden=64)
    m.fit(x, steps=400, batch_size=256, lr=3e-3, progress=False, seed=0)
    return m, x


def test_trained_samples_pass_an_mmd_test(trained):
    from probgen.metrics import mmd

    m, _ = trained
    fresh, _ = _mixture(400, seed=1)
    samples = m.sample(400, seed=0, steps=50)
    assert mmd(samples, fresh, bandwidth=1.0, permutations=200, seed=0)["p_value"] > 0.05
    # and the test has power: a Gaussian with the data's moments is rejected
    gauss = fresh.mean(0) + fresh.std(0) * torch.randn(400, 2, generator=torch.Generator().manual_seed(3))
    assert mmd(gauss, fresh, bandwidth=1.0, permutations=200, seed=0)["p_value"] < 0.01


def test_bound_matches_pyro_elbo_and_beats_a_gaussian(trained):
    m, x = trained
    probe = x[:200]
    bound = torch.stack([m.log_prob(probe, seed=s) for s in range(3)]).mean(0)
    # Pyro's ELBO over the model/guide pair, with the EMA weights the bound uses
    net, m.network = m.network, m.ema_network
    try:
        with probgen.seeded(0), torch.no_grad():
            elbo = pyro.infer.Trace_ELBO(num_particles=3, vectorize_particles=False)
            z = m._to_latent(probe)
            pyro_bound = -elbo.loss(m.model, m.guide, probe) / len(probe) - torch.log(m.data_scale).sum()
    finally:
        m.network = net
    assert abs(float(bound.mean()) - float(pyro_bound)) < 0.1 * abs(float(bound.mean())) + 0.1
    gaussian = torch.distributions.MultivariateNormal(x.mean(0), torch.cov(x.T)).log_prob(probe)
    assert float(bound.mean()) > float(gaussian.mean())
    sub = m.log_prob(probe, num_steps=25)
    assert torch.isfinite(sub).all() and sub.shape == (200,)
    del z


def test_inpainting_keeps_the_known_part(trained):
    m, x = trained
    known = torch.tensor([[2.0, 0.0]] * 200)
    mask = torch.tensor([1.0, 0.0])
    filled = m.inpaint(known, mask, seed=0, method="ddim", steps=50, eta=0.0)
    assert torch.allclose(filled[:, 0], known[:, 0], atol=1e-5)
    # given x = 2 the data put y near -2 or +2: the filled values go there, not to 0
    assert float((filled[:, 1].abs() - 2).abs().median()) < 0.5


def test_classifier_free_guidance_follows_labels():
    x, y = _mixture(1500)
    m = Diffusion((2,), timesteps=100, hidden=64, num_classes=4)
    m.fit((x, y), steps=350, batch_size=256, lr=3e-3, progress=False, seed=0)
    means = torch.tensor([[-2.0, -2.0], [2.0, 2.0], [-2.0, 2.0], [2.0, -2.0]])
    labels = torch.arange(4).repeat(50)
    for w in (0.0, 2.0):
        s = m.sample(200, seed=0, y=labels, guidance=w, steps=30)
        nearest = torch.cdist(s, means).argmin(1)
        assert float((nearest == labels).float().mean()) > 0.9


def test_images_and_bits_per_dim():
    data = probgen.datasets.load("digits", split="val")
    m = Diffusion((1, 8, 8), timesteps=50, hidden=8)
    r = m.fit(data.x, steps=3, batch_size=32, progress=False, seed=0)
    assert len(r.history) == 3
    s = m.sample(3, seed=0, steps=5)
    assert s.shape == (3, 1, 8, 8) and float(s.min()) >= 0 and float(s.max()) <= 1
    bpd = m.bits_per_dim(data.x[:4], num_steps=5)
    assert bpd.shape == (4,) and bool((bpd > 0).all())  # a probability mass over 256 levels: at most 8 bits/dim... and > 0
    mask = torch.zeros(1, 8, 8)
    mask[..., :4] = 1
    filled = m.inpaint(data.x[:2], mask, seed=0, method="ddim", steps=5)
    assert torch.allclose(filled[..., :4], data.x[:2, ..., :4], atol=1e-5)


def test_bad_input():
    m = Diffusion((2,), timesteps=20, hidden=8)
    with pytest.raises(ValueError, match="data: expected"):
        m.fit(torch.zeros(10, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        m.fit(torch.full((10, 2), float("nan")), steps=1, progress=False)
    with pytest.raises(ValueError, match="steps: at most the 20"):
        m.sample(2, steps=50)
    with pytest.raises(ValueError, match="DDPM runs all 20"):
        m.sample(2, method="ddpm", steps=10)
    with pytest.raises(ValueError, match="mask: expected shape"):
        m.inpaint(torch.zeros(3, 2), torch.ones(3))
    with pytest.raises(ValueError, match="y: this model is not class-conditional"):
        m.sample(2, y=1)
    with pytest.raises(ValueError, match="data_shape"):
        Diffusion((1, 8))
    with pytest.raises(ValueError, match="schedule"):
        Diffusion((2,), schedule="quadratic")
    img = Diffusion((1, 8, 8), timesteps=10, hidden=8, num_classes=10)
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        img.fit((torch.full((4, 1, 8, 8), 2.0), torch.zeros(4, dtype=torch.long)), steps=1, progress=False)
    with pytest.raises(ValueError, match="labels"):
        img.sample(2, y=[3, 12])
