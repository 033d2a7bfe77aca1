"""Semi-supervised generative models: M2, M1+M2 and the SSL-GAN (probgen.models.semisupervised)."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import probgen
from probgen.core.base import NoLikelihoodError
from probgen.datasets import load
from probgen.models import SemiSupervisedGAN, SemiSupervisedVAE, StackedSemiSupervisedVAE
from probgen.models.semisupervised.vae import replicate_labelled


def flat(x: torch.Tensor) -> np.ndarray:
    return x.reshape(len(x), -1).numpy()


@pytest.fixture(scope="module")
def digits():
    return {s: load("digits_binary", split=s) for s in ("train", "test")}


def few_labels(y: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    keep = torch.cat([torch.nonzero(y == c).flatten()[torch.randperm(int((y == c).sum()), generator=g)[:per_class]]
                      for c in range(10)])
    out = torch.full_like(y, -1)
    out[keep] = y[keep]
    return out


@pytest.fixture(scope="module")
def m2(digits):
    """M2 on binarized 8x8 digits with 20 labels per class (200 of 1,437)."""
    tr = digits["train"]
    model = SemiSupervisedVAE(num_classes=10, latent_dim=8, hidden=(128,), alpha=20.0)
    model.fit((tr.x, few_labels(tr.y, 20)), epochs=40, lr=3e-3, progress=False, seed=0)
    return model


# ------------------------------------------------------------ classification
def test_with_all_labels_m2_classifier_matches_the_same_network_trained_supervised(digits):
    tr, te = digits["train"], digits["test"]
    model = SemiSupervisedVAE(num_classes=10, latent_dim=8, hidden=(128,))
    model.fit((tr.x, tr.y), epochs=15, lr=3e-3, batch_size=128, progress=False, seed=0)
    m2_acc = float((model.predict(te.x) == te.y).float().mean())

    torch.manual_seed(0)
    net = SemiSupervisedVAE(data_shape=(1, 8, 8), num_classes=10, latent_dim=8, hidden=(128,)).classifier
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = tr.x.reshape(len(tr.x), -1)
    for _ in range(15):
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), tr.y[idx]).backward()
            opt.step()
    net.eval()
    sup_acc = float((net(te.x.reshape(len(te.x), -1)).argmax(-1) == te.y).float().mean())
    assert sup_acc > 0.85 and abs(m2_acc - sup_acc) < 0.04, (m2_acc, sup_acc)


def test_m2_with_few_labels_beats_the_same_labels_alone(m2, digits):
    tr, te = digits["train"], digits["test"]
    labels = few_labels(tr.y, 20)
    known = labels >= 0
    sup = LogisticRegression(max_iter=2000).fit(flat(tr.x[known]), labels[known].numpy())
    sup_acc = sup.score(flat(te.x), te.y.numpy())
    m2_acc = float((m2.predict(te.x) == te.y).float().mean())
    assert m2_acc > sup_acc, (m2_acc, sup_acc)
    p = m2.predict_proba(te.x)
    assert torch.allclose(p.sum(-1), torch.ones(len(p)), atol=1e-5) and (p >= 0).all()


def test_samples_of_label_c_are_classified_as_c(m2, digits):
    tr = digits["train"]
    judge = LogisticRegression(max_iter=2000).fit(flat(tr.x), tr.y.numpy())  # trained on real digits only
    labels = torch.arange(10).repeat_interleave(50)
    samples = m2.sample(len(labels), label=labels, seed=0)
    assert samples.shape == (500, 1, 8, 8)
    hit = (judge.predict(flat(samples)) == labels.numpy()).mean()
    assert hit >= 0.9, hit
    one = m2.sample(5, label=3, seed=1)
    assert (judge.predict(flat(one)) == 3).mean() >= 0.6


def test_style_is_kept_and_label_varied(m2, digits):
    x = digits["test"].x[:1]
    z = m2.encode(x)
    images = m2.decode(z.repeat(10, 1), torch.arange(10))
    assert images.shape == (10, 1, 8, 8) and float(images.min()) >= 0 and float(images.max()) <= 1
    # the ten renderings differ from each other (the label changes the picture)
    assert float((images[:, None] - images[None]).abs().flatten(2).mean(-1).sum()) > 1.0


# ---------------------------------------------------------------- the bound
def _elbo_estimates(model, x, y, enumerate_: bool, n: int) -> np.ndarray:
    model.enumerate = enumerate_
    elbo = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1) if enumerate_ else pyro.infer.Trace_ELBO()
    out = []
    with torch.no_grad(), model.data_size(len(x)):
        for _ in range(n):
            out.append(-elbo.loss(model.model, model.guide, x, y))
    model.enumerate = True
    return np.array(out)


def test_enumerating_the_label_and_sampling_it_give_the_same_elbo_in_expectation(m2, digits):
    te = digits["test"]
    x = te.x[:40]
    y = torch.where(torch.arange(40) < 10, te.y[:40], -1)  # 10 known, 30 unknown labels
    pyro.set_rng_seed(0)
    m2.eval()
    enum = _elbo_estimates(m2, x, y, True, 300)
    sampled = _elbo_estimates(m2, x, y, False, 300)
    m2.train()
    se = math.sqrt(enum.var() / len(enum) + sampled.var() / len(sampled))
    assert abs(enum.mean() - sampled.mean()) < 4 * se, (enum.mean(), sampled.mean(), se)
    assert enum.std() < sampled.std()  # exact enumeration removes the label's sampling noise
    # and the same bound, computed directly, per example: log_prob sums the unknown label out the same way
    bound = torch.stack([m2.log_prob(x, y, seed=s) for s in range(100)]).mean(0).sum()
    with torch.no_grad():
        alpha_term = m2.alpha * float(torch.log_softmax(m2.classifier(x[:10].reshape(10, -1)), -1)
                                           .gather(1, y[:10, None]).sum())
    assert abs(float(bound) - (enum.mean() - alpha_term)) < 4 * se + 1.0


def test_log_prob_is_a_lower_bound_per_example(m2, digits):
    assert m2.log_prob_kind == "lower_bound"
    x = digits["test"].x[:20]
    lp = m2.log_prob(x, seed=0)
    assert lp.shape == (20,) and torch.isfinite(lp).all() and (lp < 0).all()
    assert torch.equal(m2.log_prob(x, seed=3), m2.log_prob(x, seed=3))


def test_stacked_m1_m2_fits_samples_and_bounds(digits):
    tr, te = digits["train"], digits["test"]
    model = StackedSemiSupervisedVAE(num_classes=10, m1_latent_dim=16, m1_hidden=(128,), latent_dim=4, hidden=(64,),
                                     alpha=20.0)
    result = model.fit((tr.x, few_labels(tr.y, 20)), epochs=30, m1_epochs=60, lr=3e-3, progress=False, seed=0)
    assert result.info["labelled"] == 200 and bool(model.m1_fitted)
    assert float((model.predict(te.x) == te.y).float().mean()) > 0.6  # chance: 0.1
    lp = model.log_prob(te.x[:10], seed=0)
    assert lp.shape == (10,) and torch.isfinite(lp).all()
    assert model.sample(4, label=2, seed=0).shape == (4, 1, 8, 8)
    # a second fit reuses the fitted M1 (m1_epochs not given): M1's weights do not move
    before = {k: v.clone() for k, v in model.m1.state_dict().items()}
    model.fit((tr.x, few_labels(tr.y, 20)), steps=3, progress=False, seed=1)
    assert all(torch.equal(before[k], v) for k, v in model.m1.state_dict().items())


def test_semi_supervised_gan_learns_from_few_labels(digits):
    tr, te = load("digits", split="train"), load("digits", split="test")
    gan = SemiSupervisedGAN(num_classes=10, latent_dim=16, hidden=(128,), critic_hidden=(128, 64))
    result = gan.fit((tr.x, few_labels(tr.y, 10)), epochs=10, batch_size=100, progress=False, seed=0)
    assert result.engine == "adversarial" and {"critic_loss", "generator_loss"} <= set(result.history.columns)
    assert float((gan.predict(te.x) == te.y).float().mean()) > 0.7
    assert gan.sample(3, seed=0).shape == (3, 1, 8, 8)
    assert (gan.predict(gan.sample(6, label=4, seed=0)) == 4).all()
    with pytest.raises(NoLikelihoodError, match="instead"):
        gan.log_prob(te.x)
    assert torch.isfinite(gan.score(te.x)).all()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", [SemiSupervisedVAE, StackedSemiSupervisedVAE, SemiSupervisedGAN])
def test_bad_labels_are_refused_with_clear_errors(cls):
    x = (torch.rand(30, 4, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    y = torch.arange(30) % 3
    model = cls(num_classes=3, hidden=(4,), **({"m1_hidden": (4,), "m1_latent_dim": 2} if cls is
                                               StackedSemiSupervisedVAE else {}))
    bad = y.clone()
    bad[4] = 7
    with pytest.raises(ValueError, match=r"data \(y\): expected labels in \[0, 2\] \(or -1 / NaN"):
        model.fit((x, bad), steps=1, progress=False)
    bad[4] = -2
    with pytest.raises(ValueError, match=r"got \[-2\]"):
        model.fit((x, bad), steps=1, progress=False)
    with pytest.raises(ValueError, match="no labelled examples"):
        model.fit((x, torch.full((30,), float("nan"))), steps=1, progress=False)
    missing = torch.where(y == 1, -1, y)
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no labelled example"):
        model.fit((x, missing), steps=1, progress=False)
    with pytest.raises(ValueError, match="expected \\(x, y\\)"):
        model.fit(x, steps=1, progress=False)


def test_nan_marks_unknown_labels_like_minus_one():
    x = (torch.rand(40, 4, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    y = (torch.arange(40) % 2).float()
    y_nan, y_neg = y.clone(), y.clone()
    y_nan[10:], y_neg[10:] = float("nan"), -1
    a = SemiSupervisedVAE(num_classes=2, latent_dim=2, hidden=(8,))
    b = SemiSupervisedVAE(num_classes=2, latent_dim=2, hidden=(8,))
    ra = a.fit((x, y_nan), steps=5, progress=False, seed=0)
    rb = b.fit((x, y_neg), steps=5, progress=False, seed=0)
    assert ra.info["labelled"] == 10 and np.allclose(ra.history["loss"], rb.history["loss"])


def test_sample_label_is_checked(m2):
    with pytest.raises(ValueError, match=r"label: expected labels in \[0, 9\]"):
        m2.sample(2, label=10)
    with pytest.raises(ValueError, match="label: expected 3 labels"):
        m2.sample(3, label=[1, 2])


def test_replicate_labelled_keeps_every_row():
    x = torch.arange(12.0)[:, None]
    y = torch.tensor([0, 1, 2] + [-1] * 9)
    xr, yr, r = replicate_labelled(x, y, 0.5)
    assert r == 3 and len(xr) == 18 and set(xr[yr < 0, 0].tolist()) == set(range(3, 12))
    assert torch.equal(torch.bincount(yr[yr >= 0]), torch.tensor([3, 3, 3]))


def test_save_and_load_keep_the_classifier(m2, digits, tmp_path):
    path = probgen.save(m2, tmp_path / "m2.safetensors")
    back = probgen.load(path)
    assert torch.equal(back.predict_proba(digits["test"].x), m2.predict_proba(digits["test"].x))


def test_bench_quick_runs():
    from probgen.bench import semisupervised

    report = semisupervised.run(quick=True)
    text = report.render()
    assert "LabelSpreading" in text and "M1+M2" in text


def test_gan_ema_critic_is_the_running_average_and_predicts(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (80,), generator=g)
    x = 0.1 + 0.6 * y[:, None] + 0.2 * torch.rand(80, 6, generator=g)
    labels = torch.where(torch.arange(80) < 20, y, -1)
    gan = SemiSupervisedGAN(data_shape=(6,), num_classes=2, latent_dim=3, hidden=(8,), critic_hidden=(8,), ema=0.9)
    gan.seed_initial_weights(0)  # the weights fit(seed=0) starts from
    start = [p.detach().clone() for p in gan.critic_ema.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(start, gan.critic.parameters()))
    gan.fit((x, labels), steps=1, progress=False, seed=0)
    decay = min(0.9, 2 / 11)  # the warm-up decay after one step
    for a, p, e in zip(start, gan.critic.parameters(), gan.critic_ema.parameters()):
        assert torch.allclose(e, decay * a + (1 - decay) * p.detach(), atol=1e-6)
    gan.fit((x, labels), steps=30, progress=False, seed=1)
    # predictions come from the averaged critic, which differs from the last iterate
    gan.eval()
    with torch.no_grad():
        assert torch.allclose(gan.predict_proba(x), torch.softmax(gan.critic_ema(x)[0], -1))
        assert not torch.allclose(gan.critic_ema(x)[0], gan.critic(x)[0])
    back = probgen.load(probgen.save(gan, tmp_path / "gan.safetensors"))
    assert torch.equal(back.predict_proba(x), gan.predict_proba(x))


def test_gan_unsupervised_weight_scales_the_gan_term():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 5, generator=g), torch.tensor([0, 1] * 4 + [-1] * 8)
    losses = []
    for w in (0.0, 0.5, 1.0):
        gan = SemiSupervisedGAN(data_shape=(5,), num_classes=2, latent_dim=2, hidden=(4,), critic_hidden=(4,),
                                input_noise=0.0, hidden_noise=0.0, unsupervised_weight=w)
        losses.append(gan)
    base = losses[0]
    for gan in losses[1:]:
        gan.load_state_dict(base.state_dict())
    values = []
    for gan in losses:
        torch.manual_seed(1)
        values.append(float(gan.critic_loss(x, y).detach()))
    # linear in the weight: L(w) = supervised + w * unsupervised
    assert values[2] - values[0] == pytest.approx(2 * (values[1] - values[0]), rel=1e-5)
    assert values[1] > values[0]
    with pytest.raises(ValueError, match="unsupervised_weight"):
        SemiSupervisedGAN(num_classes=2, unsupervised_weight=-1.0)
    with pytest.raises(ValueError, match="ema"):
        SemiSupervisedGAN(num_classes=2, ema=1.5)
