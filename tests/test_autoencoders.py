"""Autoencoders, VAEs, adversarial autoencoders and the tasks built on them."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import probgen  # noqa: E402
import probgen.tasks  # noqa: E402,F401
from probgen.core.base import NoLikelihoodError  # noqa: E402
from probgen.datasets import load  # noqa: E402
from probgen.models import AdversarialAutoencoder, Autoencoder, VAE  # noqa: E402

HELD_OUT = 0  # digit class left out of the unconditional VAE's training data (the anomaly)


def flat(x: torch.Tensor) -> np.ndarray:
    return x.reshape(len(x), -1).numpy()


@pytest.fixture(scope="module")
def digits():
    return {s: load("digits_binary", split=s) for s in ("train", "test")}


@pytest.fixture(scope="module")
def vae(digits):
    """A Bernoulli VAE on binarized 8x8 digits, every class but HELD_OUT."""
    tr = digits["train"]
    model = VAE(latent_dim=8, hidden=(128,))
    model.fit(tr.x[tr.y != HELD_OUT], steps=250, batch_size=128, lr=5e-3, progress=False, seed=0)
    return model


@pytest.fixture(scope="module")
def cvae(digits):
    model = VAE(latent_dim=8, hidden=(128,), num_classes=10)
    model.fit(digits["train"], steps=300, batch_size=128, lr=5e-3, progress=False, seed=0)
    return model


# ------------------------------------------------------------------ bounds
def test_iwae_bound_is_above_the_elbo_and_grows_with_k(vae, digits):
    te = digits["test"]
    x = te.x[te.y != HELD_OUT][:150]
    elbo = torch.stack([vae.log_prob(x, seed=s) for s in range(3)]).mean(0)
    k5 = vae.log_prob(x, num_particles=5, seed=0)
    k50 = vae.log_prob(x, num_particles=50, seed=0)
    k500 = vae.log_prob(x, num_particles=500, seed=0, chunk_size=4096)  # chunked over particles
    assert elbo.mean() < k5.mean() < k50.mean() < k500.mean()
    assert k500.mean() - elbo.mean() < 15  # a gap of nats, not a broken bound
    assert torch.isfinite(k500).all() and k500.shape == (len(x),)


def test_bounds_against_the_exact_likelihood_of_a_one_dimensional_latent():
    """With z in 1-D, log p(x) = log ∫ N(z) p(x|z) dz is exact by quadrature: ELBO <= IWAE_k -> log p(x)."""
    g = torch.Generator().manual_seed(0)
    proto = (torch.rand(2, 1, 3, 3, generator=g) < 0.5).float()
    x = torch.where(torch.rand(120, 1, 3, 3, generator=g) < 0.1, 1 - proto[torch.arange(120) % 2], proto[torch.arange(120) % 2])
    model = VAE(latent_dim=1, hidden=(16,))
    model.fit(x, steps=200, lr=1e-2, progress=False, seed=0)
    z = torch.linspace(-9, 9, 6001)
    with torch.no_grad():
        logits = model.decoder(z[:, None]).reshape(len(z), -1)
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, None].expand(-1, 8, -1), x[:8].reshape(1, 8, -1).expand(len(z), -1, -1), reduction="none").sum(-1)
        integrand = log_px_z + torch.distributions.Normal(0.0, 1.0).log_prob(z)[:, None]
        exact = torch.logsumexp(integrand, 0) + math.log(float(z[1] - z[0]))
    elbo = torch.stack([model.log_prob(x[:8], seed=s) for s in range(50)]).mean(0)
    iwae = model.log_prob(x[:8], num_particles=20000, seed=0)
    assert elbo.mean() <= exact.mean() + 0.05
    assert elbo.mean() < iwae.mean()
    assert torch.allclose(iwae, exact, atol=0.1) and abs(float(iwae.mean() - exact.mean())) < 0.05


def test_the_elbo_matches_pyros_trace_elbo(vae, digits):
    x = digits["test"].x[:64]
    ours = torch.stack([vae.log_prob(x, seed=s).sum() for s in range(40)]).mean()
    elbo = probgen.infer.svi.make_elbo("elbo", num_particles=200)  # vectorised particles
    with torch.no_grad(), probgen.seeded(0):
        pyro_elbo = -elbo.loss(vae.model, vae.guide, x)
    assert abs(float(ours) - pyro_elbo) < 0.01 * abs(pyro_elbo)


# ---------------------------------------------------------- reconstruction
def test_reconstructions_beat_the_mean_image(vae, digits):
    tr, te = digits["train"], digits["test"]
    x = te.x[te.y != HELD_OUT]
    mean_image = tr.x[tr.y != HELD_OUT].mean(0, keepdim=True)
    baseline = ((x - mean_image) ** 2).mean()
    assert ((vae.reconstruct(x) - x) ** 2).mean() < 0.85 * baseline
    ae = Autoencoder(latent_dim=8, hidden=(128,))
    ae.fit(tr.x, steps=150, lr=5e-3, progress=False, seed=0)
    assert ((ae.reconstruct(te.x) - te.x) ** 2).mean() < 0.8 * ((te.x - tr.x.mean(0)) ** 2).mean()


def test_denoising_autoencoder_beats_the_noisy_input_and_blur():
    from probgen.metrics.images import psnr
    from probgen.tasks.denoise import add_noise, gaussian_blur

    tr, te = load("digits", split="train"), load("digits", split="test")
    dae = Autoencoder(latent_dim=16, hidden=(128,), corruption="gaussian", noise_level=0.3)
    dae.fit(tr.x, steps=250, lr=5e-3, progress=False, seed=0)
    noisy = add_noise(te.x, "gaussian", 0.3, seed=1)
    ours = psnr(te.x, probgen.tasks.denoise(dae, noisy)).mean()
    assert ours > psnr(te.x, noisy).mean() + 3
    assert ours > max(psnr(te.x, gaussian_blur(noisy, s)).mean() for s in (0.5, 0.8, 1.2))


def test_conv_networks_fit_and_keep_shapes(digits):
    model = VAE(latent_dim=4, network="conv", hidden=(32,))
    result = model.fit(digits["train"].x[:128], steps=12, lr=5e-3, progress=False, seed=0)
    assert result.history["loss"].iloc[-3:].mean() < result.history["loss"].iloc[:3].mean()
    assert model.sample(3, seed=0).shape == (3, 1, 8, 8)
    assert model.encode(digits["test"].x[:5]).shape == (5, 4)


# ---------------------------------------------------------- conditional VAE
def test_conditional_samples_are_classified_as_their_label(cvae):
    tr = load("digits", split="train")  # a classifier trained on real (grey-level) digits
    clf = LogisticRegression(max_iter=3000).fit(flat(tr.x), tr.y.numpy())
    y = torch.arange(10).repeat_interleave(30)
    samples = cvae.sample(len(y), seed=0, y=y)
    assert samples.shape == (300, 1, 8, 8)
    accuracy = (clf.predict(flat(samples)) == y.numpy()).mean()
    assert accuracy >= 0.9
    assert torch.equal(cvae.sample(4, seed=3, y=2), cvae.sample(4, seed=3, y=torch.full((4,), 2)))


def test_save_load_round_trip_keeps_samples_and_bounds(cvae, digits, tmp_path):
    path = probgen.save(cvae, tmp_path / "cvae.safetensors")
    loaded = probgen.load(path)
    assert loaded.data_shape == (1, 8, 8)
    assert torch.equal(loaded.sample(6, seed=1, y=3), cvae.sample(6, seed=1, y=3))
    te = digits["test"]
    assert torch.equal(loaded.log_prob((te.x[:10], te.y[:10]), seed=0), cvae.log_prob(te.x[:10], y=te.y[:10], seed=0))


def test_seeds_reproduce_a_fit(digits):
    x = digits["train"].x[:200]
    a, b, c = (VAE(latent_dim=2, hidden=(16,)) for _ in range(3))  # networks built (seeded) by fit
    a.fit(x, steps=10, progress=False, seed=1)
    b.fit(x, steps=10, progress=False, seed=1)
    c.fit(x, steps=10, progress=False, seed=2)
    assert torch.equal(a.log_prob(x, seed=0), b.log_prob(x, seed=0))
    assert not torch.equal(a.log_prob(x, seed=0), c.log_prob(x, seed=0))


# ------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors(vae, cvae, digits):
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\)"):
        vae.log_prob(torch.zeros(3, 1, 28, 28))
    with pytest.raises(ValueError, match="binary"):
        VAE(latent_dim=2).fit(load("digits", split="test").x, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"labels in \[0, 9\]"):
        cvae.fit((digits["test"].x, digits["test"].y + 1), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"labels in \[0, 9\]"):
        cvae.sample(2, y=10)
    with pytest.raises(ValueError, match="needs labels"):
        cvae.log_prob(digits["test"].x)
    with pytest.raises(ValueError, match="not class-conditional"):
        vae.sample(2, y=1)
    with pytest.raises(ValueError, match="network"):
        VAE(network="resnet")
    with pytest.raises(ValueError, match="likelihood"):
        VAE(likelihood="poisson")
    with pytest.raises(ValueError, match="num_particles"):
        vae.log_prob(digits["test"].x, num_particles=0)
    with pytest.raises(ValueError, match="NaN"):
        vae.log_prob(torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="reconstruction='mse'"):
        Autoencoder().fit(torch.randn(10, 4), steps=1, progress=False)
    with pytest.raises(ValueError, match="corruption"):
        Autoencoder(corruption="blur")
    with pytest.raises(ValueError, match="'conv' needs images"):
        Autoencoder(network="conv").fit(torch.rand(10, 4), steps=1, progress=False)
    with pytest.raises(ValueError, match="fit the model first"):
        VAE().sample(2)


# -------------------------------------------------- autoencoders without likelihood
def test_autoencoders_point_to_score_and_aae_matches_its_prior(digits):
    x = digits["train"].x
    aae = AdversarialAutoencoder(latent_dim=2, hidden=(128,), critic_hidden=(64, 64))
    aae.fit(x, steps=200, lr=3e-3, progress=False, seed=0)
    with pytest.raises(NoLikelihoodError, match=r"score\(x\)"):
        aae.log_prob(x[:3])
    ae = Autoencoder(latent_dim=2, hidden=(128,))
    ae.fit(x, steps=200, lr=3e-3, progress=False, seed=0)
    # the aggregate posterior of the AAE is pulled to N(0, I); a plain AE's codes go anywhere
    def distance_to_prior(codes):
        return float(codes.mean(0).norm() + (torch.cov(codes.T) - torch.eye(2)).norm())

    aae_codes, ae_codes = aae.encode(x), ae.encode(x)
    assert distance_to_prior(aae_codes) < 0.5 < distance_to_prior(ae_codes)
    assert aae.score(x[:5]).shape == (5,)
    assert aae.sample(4, seed=0).shape == (4, 1, 8, 8)


# ------------------------------------------------------------------- tasks
def test_anomaly_auc_features_and_compression(vae, digits):
    te, tr = digits["test"], digits["train"]
    normal, unseen = te.x[te.y != HELD_OUT], te.x[te.y == HELD_OUT]
    auc = probgen.tasks.anomaly_auc(vae, normal, unseen)  # the score is a one-draw ELBO, drawn under seed=0
    assert 0.7 < auc <= 1.0
    assert auc == probgen.tasks.anomaly_auc(vae, normal, unseen)  # so it repeats
    assert auc != probgen.tasks.anomaly_auc(vae, normal, unseen, seed=1)  # and another seed draws anew
    f_tr, f_te = probgen.tasks.features(vae, tr.x), probgen.tasks.features(vae, te.x)
    assert f_tr.shape == (len(tr.x), 8)
    acc = LogisticRegression(max_iter=2000).fit(f_tr.numpy(), tr.y.numpy()).score(f_te.numpy(), te.y.numpy())
    assert acc > 0.7  # chance is 0.1
    c8 = probgen.tasks.compress(vae, te.x, bits=8)
    c4 = probgen.tasks.compress(vae, te.x, bits=4)
    assert c8.codes.max() <= 255 and c4.codes.max() <= 15
    assert c4.ratio > c8.ratio > 1
    x_hat = probgen.tasks.decompress(vae, c8)
    assert x_hat.shape == te.x.shape
    assert c8.error == pytest.approx(float(((x_hat - te.x) ** 2).mean()), rel=1e-5)
    assert c8.error < c4.error or c8.error < 0.05


def test_plots_draw(vae, cvae, digits):
    from probgen.plot import latent_interpolation, latent_scatter

    te = digits["test"]
    ax = latent_interpolation(vae, te.x[:2], te.x[2:4], steps=5)
    assert ax.images[0].get_array().shape == (2 * 9 + 1, 5 * 9 + 1)
    ax = latent_scatter(cvae, te.x[:50], te.y[:50], y=te.y[:50])
    assert len(ax.collections[0].get_offsets()) == 50


def test_bench_quick_reports_sane_rows():
    from probgen.bench import vae as bench

    report = bench.run(quick=True)
    frame = report.frame()
    assert len(frame) >= 5 and frame["probgen"].notna().all()
    psnr_row = frame[frame["metric"].str.contains("PSNR")].iloc[0]
    assert 5 < psnr_row["probgen"] < 40
    auc = frame[frame["metric"].str.contains("AUC")]["probgen"]
    assert ((auc > 0.5) & (auc <= 1)).all()
    rows = bench.likelihood_rows(quick=True)
    assert rows and {"model", "nll_nats", "k_or_method", "protocol"} <= set(rows[0])
    assert 20 < rows[0]["nll_nats"] < 600
