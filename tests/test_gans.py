"""GAN families: mode coverage, conditioning, seeds, save/load, bad input."""

import math

import pytest
import torch

import probgen
from probgen.core.base import NoLikelihoodError
from probgen.models.gan.gan import GAN, ConditionalGAN, critic_objective, generator_objective


@pytest.fixture(autouse=True)
def _seeded_init():
    torch.manual_seed(0)  # network initialisation does not depend on test order


def _two_modes(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    side = torch.randint(0, 2, (n, 1), generator=g).float() * 4 - 2
    return side + 0.1 * torch.randn(n, 1, generator=g)


def test_gan_covers_both_modes_of_a_1d_mixture():
    x = _two_modes()
    gan = GAN(data_shape=(1,), latent_dim=2, hidden=(32, 32), pack=2, ema=0.99)
    gan.fit(x, steps=250, batch_size=128, lr=2e-3, seed=0, progress=False)
    s = gan.sample(1000, seed=1)[:, 0]
    left, right = float((s < 0).float().mean()), float((s >= 0).float().mean())
    assert min(left, right) > 0.25, (left, right)  # both modes get a real share
    near = ((s.abs() - 2).abs() < 0.5).float().mean()
    assert near > 0.5  # and most samples sit on the modes, not between them


def test_conditional_gan_respects_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    y = torch.arange(600) % 3
    x = centres[y] + 0.15 * torch.randn(600, 2, generator=g)
    cgan = ConditionalGAN(num_classes=3, data_shape=(2,), latent_dim=2, hidden=(32, 32), objective="hinge")
    cgan.fit((x, y), steps=250, batch_size=150, lr=2e-3, seed=0, progress=False)
    for k in range(3):
        s = cgan.sample(200, seed=k, y=k)
        nearest = torch.cdist(s, centres).argmin(1)
        assert (nearest == k).float().mean() > 0.9
    mixed = cgan.sample(6, seed=0, y=[0, 1, 2, 0, 1, 2])
    assert torch.cdist(mixed, centres).argmin(1).tolist() == [0, 1, 2, 0, 1, 2]


def test_image_gan_shapes_range_and_seeds():
    x = probgen.datasets.load("digits", split="train").x[:256]
    gan = GAN(data_shape=(1, 8, 8), latent_dim=4, hidden=(8, 4), objective="hinge", spectral_norm=True)
    gan.fit(x, steps=3, batch_size=64, progress=False, seed=0)
    a, b, c = gan.sample(5, seed=0), gan.sample(5, seed=0), gan.sample(5, seed=1)
    assert a.shape == (5, 1, 8, 8) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    build = lambda: GAN(data_shape=(1, 8, 8), latent_dim=4, hidden=(8, 4), objective="hinge", spectral_norm=True)  # noqa: E731
    again = build()
    torch.manual_seed(123)
    other = build()  # other initial weights, which fit's seed re-draws: the same seed gives the same fit
    assert not torch.equal(again.generator.net[0].weight, other.generator.net[0].weight)
    again.fit(x, steps=3, batch_size=64, progress=False, seed=5)
    other.fit(x, steps=3, batch_size=64, progress=False, seed=5)
    assert torch.equal(again.sample(3, seed=0), other.sample(3, seed=0))
    mine = build()
    mine.load_state_dict(build().state_dict())  # weights set by hand are kept, not re-drawn
    kept = mine.generator.net[0].weight.detach().clone()
    assert not mine.seed_initial_weights(5) and torch.equal(mine.generator.net[0].weight, kept)
    mine.fit(x, steps=3, batch_size=64, progress=False, seed=5)
    assert not torch.equal(mine.sample(3, seed=0), again.sample(3, seed=0))


def test_generator_is_a_pyro_model():
    import pyro.poutine as poutine

    gan = GAN(data_shape=(3,), latent_dim=2, hidden=(8,))
    trace = poutine.trace(gan.model).get_trace(7)
    assert trace.nodes["z"]["value"].shape == (7, 2)
    assert trace.nodes["x"]["value"].shape == (7, 3)
    z = torch.zeros(7, 2)
    fixed = poutine.condition(gan.model, data={"z": z})(7)
    assert torch.allclose(fixed, gan.decode(z))


@pytest.mark.parametrize("objective", ["non_saturating", "hinge", "wgan_gp"])
def test_every_objective_trains(objective):
    x = _two_modes(256)
    gan = GAN(data_shape=(1,), latent_dim=2, hidden=(16,), objective=objective, r1_weight=1.0 if objective == "hinge" else 0.0)
    result = gan.fit(x, steps=10, batch_size=64, progress=False, seed=0, num_critic=2)
    h = result.history
    assert h["critic_loss"].notna().all() and h["generator_loss"].dropna().size == 5
    assert math.isfinite(float(h["critic_loss"].iloc[-1]))


def test_objectives_match_their_definitions():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, 0.3])
    ns = critic_objective("non_saturating", real, fake)
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    assert torch.allclose(ns, expected)
    assert torch.allclose(critic_objective("hinge", real, fake), torch.tensor(0.25 + 0.0 + (0.5 + 1.3) / 2))
    assert torch.allclose(generator_objective("non_saturating", fake), -torch.log(torch.sigmoid(fake)).mean())


def test_ema_weights_follow_the_generator():
    gan = GAN(data_shape=(1,), latent_dim=2, hidden=(8,), ema=0.5)
    before = [p.clone() for p in gan.generator_ema.parameters()]
    gan.fit(_two_modes(128), steps=5, batch_size=64, progress=False, seed=0)
    after = list(gan.generator_ema.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert all(not p.requires_grad for p in after)
    assert int(gan.ema_steps) == 5


def test_save_load_round_trip(tmp_path):
    y = torch.arange(64) % 2
    x = y[:, None].float() + 0.1 * torch.randn(64, 2)
    cgan = ConditionalGAN(num_classes=2, data_shape=(2,), hidden=(8,), spectral_norm=True, pack=2, ema=0.9)
    cgan.fit((x, y), steps=4, batch_size=32, progress=False, seed=0)
    cgan.fit_encoder((x, y), steps=3, progress=False, seed=0, kappa=0.5)
    path = probgen.save(cgan, tmp_path / "cgan.safetensors")
    back = probgen.load(path)
    assert torch.equal(back.sample(4, seed=0, y=1), cgan.sample(4, seed=0, y=1))
    assert torch.allclose(back.score(x[:5], y[:5]), cgan.score(x[:5], y[:5]))


def test_f_anogan_score_flags_outliers():
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(1024, 2, generator=g)
    gan = GAN(data_shape=(2,), latent_dim=2, hidden=(32, 32))
    gan.fit(x, steps=300, batch_size=256, lr=2e-3, seed=0, progress=False)
    gan.fit_encoder(x, steps=200, seed=0, progress=False)
    inliers = 0.3 * torch.randn(200, 2, generator=g)
    outliers = 0.3 * torch.randn(200, 2, generator=g) + torch.tensor([3.0, -3.0])
    scores = gan.score(torch.cat([inliers, outliers]))
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score([0] * 200 + [1] * 200, scores.numpy())
    assert auc > 0.95
    assert gan.encode(inliers).shape == (200, 2)


def test_bad_input_is_reported_clearly():
    gan = GAN(data_shape=(1, 8, 8), hidden=(4, 4))
    with pytest.raises(ValueError, match="data"):
        gan.fit(torch.rand(10, 1, 28, 28), steps=1, progress=False)
    with pytest.raises(NoLikelihoodError, match="score"):
        gan.log_prob(torch.rand(2, 1, 8, 8))
    with pytest.raises(probgen.core.NotFittedError, match="fit_encoder"):
        gan.encode(torch.rand(2, 1, 8, 8))
    assert gan.score(torch.rand(3, 1, 8, 8)).shape == (3,)  # critic-based before fit_encoder
    with pytest.raises(ValueError, match="x"):
        gan.score(torch.rand(3, 1, 7, 8))
    with pytest.raises(ValueError, match="data: contains NaN"):
        gan.fit_encoder(torch.full((4, 1, 8, 8), float("nan")), steps=1, progress=False)
    with pytest.raises(ValueError, match="objective"):
        GAN(objective="least_squares")
    with pytest.raises(ValueError, match="data_shape"):
        GAN(data_shape=(1, 8))
    with pytest.raises(ValueError, match="ema"):
        GAN(ema=1.5)
    cgan = ConditionalGAN(num_classes=3, data_shape=(2,), hidden=(8,))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\]"):
        cgan.fit((torch.zeros(4, 2), torch.tensor([0, 1, 2, 3])), steps=1, progress=False)
    with pytest.raises(ValueError, match="y"):
        cgan.sample(2, y=5)
    with pytest.raises(ValueError, match="y"):
        cgan.sample(3, y=[0, 1])
    with pytest.raises(ValueError, match="unknown option"):
        cgan.fit((torch.zeros(4, 2), torch.tensor([0, 1, 2, 0])), steps=1, progress=False, pac=4)


def test_gan_modes_bench_quick():
    from probgen.bench import gan_modes

    report = gan_modes.run(quick=True)
    frame = report.frame()
    assert len(frame) >= 4
    modes = frame[frame.metric == "modes covered"]
    assert ((modes.probgen >= 0) & (modes.probgen <= 25)).all()
    hq = frame[frame.metric == "high quality"]
    assert ((hq.probgen >= 0) & (hq.probgen <= 100)).all()


# ----------------------------------------------------------------- image-to-image / super-resolution
def test_image_metrics_and_corruptions():
    from probgen.metrics.images import psnr, ssim
    from probgen.models.gan.image import downsample, edges, occlude

    x = torch.rand(4, 1, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(4))
    near, far = x + 0.01, x + 0.2
    assert (psnr(near, x) > psnr(far, x)).all() and (ssim(near.clamp(0, 1), x) > ssim(1 - x, x)).all()
    hole = occlude(torch.ones(3, 1, 16, 16), 8)
    assert torch.equal(hole.sum((1, 2, 3)), torch.full((3,), 256.0 - 64))
    assert downsample(x, 4).shape == (4, 1, 4, 4) and torch.allclose(downsample(x, 4).mean(), x.mean())
    assert edges(torch.ones(1, 1, 8, 8))[0, 0, 2:-2, 2:-2].abs().sum() == 0


def test_image_to_image_and_super_resolution_train_and_check_input():
    from probgen.models.gan.image import ImageToImageGAN, SuperResolutionGAN, downsample, occlude

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(32, 1, 8, 8, generator=g) > 0.7).float()
    l1 = ImageToImageGAN(data_shape=(1, 8, 8), width=4, adversarial_weight=0.0)
    critic_before = [p.clone() for p in l1.critic.parameters()]
    before = float(l1.score((occlude(x), x)).mean())
    l1.fit((occlude(x), x), steps=40, batch_size=16, lr=3e-3, progress=False, seed=0)
    assert float(l1.score((occlude(x), x)).mean()) < before  # L1 training reduces the error
    assert all(torch.equal(a, b) for a, b in zip(critic_before, l1.critic.parameters()))  # L1 only: critic idle
    sr = SuperResolutionGAN(factor=2, data_shape=(1, 8, 8), width=4)
    sr.fit(x, steps=2, batch_size=16, progress=False, seed=0)
    out = sr.sample(3, seed=0, source=downsample(x[:1], 2))
    assert out.shape == (3, 1, 8, 8) and 0 <= float(out.min()) and float(out.max()) <= 1
    with pytest.raises(ValueError, match="source"):
        sr.upscale(torch.rand(2, 1, 8, 8))  # needs 4x4 inputs
    with pytest.raises(ValueError, match="source"):
        sr.sample(3)
    with pytest.raises(ValueError, match="target"):
        l1.fit((torch.rand(4, 1, 8, 8), torch.rand(4, 1, 6, 6)), steps=1, progress=False)
    with pytest.raises(ValueError, match="factor"):
        SuperResolutionGAN(factor=3, data_shape=(1, 28, 28))
    with pytest.raises(NoLikelihoodError):
        sr.log_prob(x)


# ----------------------------------------------------------------------------- text-to-image
def test_captions_measure_thickness_and_slant():
    from probgen.datasets.captions import caption_digits, digit_attributes

    thin, thick, slanted = torch.zeros(1, 1, 12, 12), torch.zeros(1, 1, 12, 12), torch.zeros(1, 1, 12, 12)
    thin[0, 0, 2:10, 5] = 1
    thick[0, 0, 2:10, 4:8] = 1
    for r in range(2, 10):
        slanted[0, 0, r, 10 - r] = 1  # top right, bottom left: leaning right
    t, s = digit_attributes(torch.cat([thin, thick, slanted]))
    assert t[1] > t[0] and s[2] > 0.5 and abs(float(s[0])) < 1e-6
    caps, th = caption_digits(torch.cat([thin, thick, slanted]), [7, 7, 2])
    assert caps[0].endswith("seven") and "thick" in caps[1] and "slanted" in caps[2]
    with pytest.raises(ValueError, match="y"):
        caption_digits(thin, [12])


def test_text_to_image_composes_unseen_word_combinations():
    from probgen.models.gan.text import TextToImageGAN

    g = torch.Generator().manual_seed(0)
    caps, points = [], []
    for i in range(600):
        digit, attr = ("one", "two")[i % 2], ("thin", None, "thick")[(i // 2) % 3]
        if digit == "two" and attr == "thick":
            continue  # never seen together
        caps.append(" ".join(["a"] + ([attr] if attr else []) + [digit]))
        points.append([-2.0 if digit == "one" else 2.0, {"thin": -2.0, None: 0.0, "thick": 2.0}[attr]])
    x = torch.tensor(points) + 0.1 * torch.randn(len(points), 2, generator=g)
    m = TextToImageGAN(data_shape=(2,), latent_dim=2, hidden=(64, 64), text_dim=16, word_dim=16, ema=0.95)
    m.fit((x, caps), steps=300, batch_size=128, lr=2e-3, seed=0, progress=False)
    unseen = m.sample(200, seed=0, caption="a thick two").mean(0)
    thin = m.sample(200, seed=0, caption="a thin two").mean(0)
    assert unseen[0] > 0.5 and thin[0] > 0.5, (unseen, thin)  # the digit word is obeyed
    assert unseen[1] > thin[1] + 1.0, (unseen, thin)  # and "thick" moves the never-seen pair the right way
    with pytest.raises(KeyError, match="purple"):
        m.sample(2, caption="a purple two")
    with pytest.raises(ValueError, match="max_words"):
        m.sample(1, caption=" ".join(["a"] * 9))
    with pytest.raises(ValueError, match="caption"):
        m.sample(3, caption=["a one", "a two"])
    with pytest.raises(ValueError, match="captions"):
        m.fit((x[:3], ["a one"] * 2), steps=1, progress=False)


def test_rejection_sampling_moves_samples_onto_the_modes(tmp_path):
    x = _two_modes(1024)
    gan = GAN(data_shape=(1,), latent_dim=2, hidden=(32, 32), pack=2)
    gan.fit(x, steps=150, batch_size=128, lr=2e-3, seed=0, progress=False)  # short: a blurry generator
    with pytest.raises(RuntimeError, match="fit_rejection"):
        gan.sample(5, rejection=True)
    gan.fit_rejection(x, steps=300, seed=0, progress=False)

    def off_modes(s):  # share of samples more than 3 sd from both modes
        return float(((s[:, 0].abs() - 2).abs() > 0.3).float().mean())

    plain, kept = gan.sample(2000, seed=1), gan.sample(2000, seed=1, rejection=True)
    assert kept.shape == (2000, 1)
    assert off_modes(kept) < 0.5 * off_modes(plain), (off_modes(plain), off_modes(kept))
    assert min(float((kept < 0).float().mean()), float((kept >= 0).float().mean())) > 0.3  # both modes kept
    assert torch.equal(gan.sample(50, seed=3, rejection=True), gan.sample(50, seed=3, rejection=True))
    back = probgen.load(probgen.save(gan, tmp_path / "gan.safetensors"))
    assert torch.equal(back.sample(50, seed=3, rejection=True), gan.sample(50, seed=3, rejection=True))
    with pytest.raises(ValueError, match="quantile"):
        gan.fit_rejection(x, steps=1, quantile=1.5, progress=False)
    with pytest.raises(ValueError, match="rejection"):
        gan.sample(5, rejection="yes")
    with pytest.raises(ValueError, match="fit_rejection"):
        ConditionalGAN(num_classes=2, data_shape=(1,), hidden=(8,)).fit_rejection((x, x[:, 0] > 0), steps=1)


def test_r1_penalty_is_on_by_default_with_a_fourier_critic(tmp_path):
    """The Fourier critic's collapse (hinge loss pinned at 0, ``probgen bench gan-robust``) is what R1 guards
    against: on by default with ``fourier``, off without, an explicit value wins, and files keep it."""
    assert GAN(data_shape=(2,), hidden=(8,), fourier=8).r1_weight == 1.0
    assert GAN(data_shape=(2,), hidden=(8,)).r1_weight == 0.0
    assert GAN(data_shape=(2,), hidden=(8,), fourier=8, r1_weight=0.0).r1_weight == 0.0
    gan = GAN(data_shape=(2,), hidden=(8,), fourier=8, fourier_warmup=0)  # the critic does not change per step
    probgen.save(gan, tmp_path / "gan")
    assert probgen.load(tmp_path / "gan").r1_weight == 1.0
    # the penalty is in the critic's loss: 0.5 * r1 * E|grad_x D(x)|^2 on real data
    x = torch.randn(16, 2)
    with probgen.seeded(0):
        with_r1 = gan.critic_loss(x)
    gan.r1_weight = 0.0
    with probgen.seeded(0):
        without = gan.critic_loss(x)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gan.critic(xr).sum(), xr)
    assert float(with_r1 - without) == pytest.approx(0.5 * float(grad.pow(2).sum(1).mean()), rel=1e-4)


def test_mode_seeking_term_rewards_different_images_for_different_latents():
    cgan = ConditionalGAN(num_classes=3, data_shape=(4,), latent_dim=4, hidden=(16,), diversity_weight=1.0)
    z = torch.randn(32, 4)
    c = cgan._condition(torch.arange(32) % 3)
    varied = float(cgan._mode_seeking(cgan._generate(cgan.generator, z, None, c), z, c))
    first = next(m for m in cgan.generator.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        first.weight[:, :4] = 0  # the generator now ignores z: one image per label
    collapsed = float(cgan._mode_seeking(cgan._generate(cgan.generator, z, None, c), z, c))
    assert collapsed == pytest.approx(1e5) and 0 < varied < 1e3  # identical images for different latents cost most
    with pytest.raises(ValueError, match="diversity_weight"):
        ConditionalGAN(num_classes=3, data_shape=(4,), diversity_weight=-1.0)


def test_per_class_diversity_measure_sees_within_class_collapse():
    """The gan-diversity bench's measure: real digits of each class score full recall / coverage against
    the class, one repeated image per class (a generator collapsed within classes) scores almost none."""
    from probgen.bench.gan_diversity import per_class_quality

    d = probgen.datasets.load("digits", split="train")
    pool = {c: d.x[d.y == c] for c in range(10)}
    real = per_class_quality(lambda n, c: pool[c][torch.randperm(len(pool[c]))[:n]], d.x, d.y, n=100)
    collapsed = per_class_quality(lambda n, c: pool[c][:1].expand(n, -1, -1, -1), d.x, d.y, n=100)
    assert real["recall"] > 0.6 and real["coverage"] > 0.6
    assert collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.1
    assert collapsed["precision"] == 1.0  # each copy is a real digit: fidelity cannot see the collapse


def test_gan_robust_and_diversity_benches_quick():
    from probgen.bench import gan_diversity, gan_robust

    frame = gan_robust.run(quick=True).frame()
    assert set(frame.metric) >= {"collapsed seeds", "collapsed fits flagged", "healthy fits flagged"}
    frame = gan_diversity.run(quick=True).frame()
    scores = frame[frame.metric.str.startswith("per-class")]
    assert len(scores) == 3 * (len(gan_diversity.MODELS) - 1) and ((scores.probgen >= 0) & (scores.probgen <= 1)).all()


# ------------------------------------------------------- minibatch distance (issue 23)
def test_nearest_distance_is_the_brute_force_nearest_neighbour_within_a_group():
    from probgen.nn.gan_nets import nearest_distance

    g = torch.Generator().manual_seed(0)
    x, groups = torch.randn(40, 1, 3, 3, generator=g), torch.randint(0, 4, (40,), generator=g)
    got = nearest_distance(x, groups)
    flat = x.reshape(40, -1).double()
    for i in range(40):
        others = [j for j in range(40) if j != i and groups[j] == groups[i]]
        want = min(float((flat[i] - flat[j]).norm()) for j in others)
        assert float(got[i]) == pytest.approx(want, abs=1e-4)
    # duplicates: distance ~0 and finite gradients even through a double backward (R1 / WGAN-GP)
    dup = torch.cat([x[:5], x[:5]]).requires_grad_(True)
    d = nearest_distance(dup)
    assert float(d.detach().max()) < 1e-4
    (grad,) = torch.autograd.grad(d.sum(), dup, create_graph=True)
    (grad2,) = torch.autograd.grad(grad.pow(2).sum(), dup)
    assert torch.isfinite(grad).all() and torch.isfinite(grad2).all()
    # an example alone in its group gets the mean of the others'
    lone = nearest_distance(torch.tensor([[0.0], [1.0], [5.0]]), torch.tensor([0, 0, 1]))
    assert lone.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)


def test_conditional_gan_critic_sees_collapse_within_a_class():
    """On by default for ConditionalGAN: a batch whose examples of a class are all one image gets
    distance feature 0, a varied real batch about 1 (scaled by the running real mean)."""
    cgan = ConditionalGAN(num_classes=3, data_shape=(4,), hidden=(16,))
    assert cgan.minibatch_distance and not GAN(data_shape=(4,), hidden=(16,)).minibatch_distance
    assert cgan.critic.extra == 1
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 4, generator=g) + y[:, None]
    real = cgan._distance_feature(x, y, update=True)
    assert float(real.mean()) == pytest.approx(1.0, rel=1e-5)
    collapsed = cgan._distance_feature(y[:, None].float().expand(60, 4), y)
    assert float(collapsed.max()) < 1e-3
    # the critic's output depends on the feature (so the generator gets a gradient against collapse)
    c = cgan._critic_condition(y)
    assert not torch.allclose(cgan.critic(x, *c, extra=real), cgan.critic(x, *c, extra=torch.zeros_like(real)))
    # scoring judges each example alone: it does not depend on the other examples of the batch
    cgan.fit((x, y), steps=5, batch_size=30, progress=False, seed=0)
    both = cgan.score(x[:10], y[:10])
    assert torch.allclose(both[:3], cgan.score(x[:3], y[:3]))
    with pytest.raises(ValueError, match="minibatch_distance"):
        ConditionalGAN(num_classes=3, data_shape=(4,), minibatch_distance=1)


def test_private_training_refuses_the_minibatch_distance():
    cgan = ConditionalGAN(num_classes=2, data_shape=(2,), hidden=(8,))
    x, y = torch.randn(64, 2), torch.arange(64) % 2
    with pytest.raises(ValueError, match="minibatch_distance=False"):
        cgan.fit((x, y), steps=2, batch_size=16, progress=False, privacy={"epsilon": 5.0, "delta": 1e-4})


def test_configs_saved_before_the_new_defaults_load_with_them_off():
    """Files written before ``minibatch_distance`` and ``fourier_warmup`` existed carry neither key: they
    build the nets they were saved with (both off), so their weights load unchanged."""
    old = ConditionalGAN(num_classes=3, data_shape=(2,), hidden=(8,), minibatch_distance=False)
    config = old.get_config()
    del config["minibatch_distance"]
    new = ConditionalGAN.from_config(config)
    assert not new.minibatch_distance
    new.load_state_dict(old.state_dict())  # strict: same nets, same buffers
    old = GAN(data_shape=(2,), hidden=(8,), fourier=8, fourier_warmup=0)
    config = old.get_config()
    del config["fourier_warmup"]
    new = GAN.from_config(config)
    assert new.critic.fourier_warmup == 0
    new.load_state_dict(old.state_dict())
    assert torch.equal(new.critic.frequencies, old.critic.frequencies)


# ------------------------------------------------------- coarse-to-fine Fourier critic (issue 23)
def test_fourier_frequencies_fade_in_lowest_first(tmp_path):
    gan = GAN(data_shape=(2,), hidden=(8,), fourier=16, fourier_warmup=10)
    assert GAN(data_shape=(2,), hidden=(8,), fourier=16).critic.fourier_warmup == 750  # the default
    assert GAN(data_shape=(2,), hidden=(8,)).critic.fourier_warmup == 0
    critic = gan.critic
    norms = critic.frequencies.norm(dim=0)
    assert torch.all(norms[1:] >= norms[:-1])
    assert float(critic.fourier_weights().max()) == 0.0  # only the raw coordinates at first
    seen = []
    for _ in range(10):
        gan.critic_loss(torch.randn(8, 2))  # one critic step each
        seen.append(critic.fourier_weights())
    w = torch.stack(seen)
    assert torch.all(w[1:] >= w[:-1]) and torch.all(w[:, 1:] <= w[:, :-1])  # grows; low frequencies lead
    assert torch.equal(w[-1], torch.ones(16)) and 0 < float(w[4].sum()) < 16
    # a warmed-up critic judges with every frequency, and a saved file keeps the count of steps
    x = torch.randn(5, 2)
    back = probgen.load(probgen.save(gan, tmp_path / "gan"))
    assert int(back.critic.fourier_step) == 10 and torch.allclose(back.critic(x), gan.critic(x))
    with pytest.raises(ValueError, match="fourier_warmup"):
        GAN(data_shape=(2,), fourier=4, fourier_warmup=-1)


# ------------------------------------------------- a short path per class, a linear critic (issue 26)
def test_linear_critic_starts_at_zero_and_is_affine_in_the_example():
    from probgen.nn.gan_nets import Critic

    plain = Critic((3,), hidden=())
    critic = Critic((3,), hidden=(), cond_dim=2)
    x, c = torch.randn(5, 3), torch.nn.functional.one_hot(torch.arange(5) % 2, 2).float()
    assert torch.equal(critic(x, c), torch.zeros(5)) and torch.equal(plain(x), torch.zeros(5))  # no random verdict
    for p in [*critic.parameters(), *plain.parameters()]:
        torch.nn.init.normal_(p)
    x2, a = torch.randn(5, 3), 0.3
    for judge in (plain, lambda t: critic(t, c)):
        assert torch.allclose(judge(a * x + (1 - a) * x2), a * judge(x) + (1 - a) * judge(x2), atol=1e-5)
    # with one-hot conditions it is one linear function of x per class, the projection alone (no shared head)
    assert critic.head is None and plain.head is not None
    expected = (critic.project.weight.T[c.argmax(1)] * x).sum(1)
    assert torch.allclose(critic(x, c), expected, atol=1e-5)
    with pytest.raises(ValueError, match="hidden: a convolutional critic"):
        Critic((1, 16, 16), hidden=())
    with pytest.raises(ValueError, match="critic_hidden"):
        GAN(data_shape=(2,), critic_hidden=(8, 0))


def test_label_skip_adds_a_per_class_offset_that_starts_at_zero():
    torch.manual_seed(0)
    plain = ConditionalGAN(num_classes=3, data_shape=(2,), hidden=(8,))
    torch.manual_seed(0)
    skip = ConditionalGAN(num_classes=3, data_shape=(2,), hidden=(8,), label_skip=True, ema=0.9)
    assert skip.generator.skip.weight.shape == (2, 3) and float(skip.generator.skip.weight.detach().abs().sum()) == 0
    # the offset is the generator's (trained with it, averaged by its EMA copy); the critic reads one-hot labels
    assert any(p is skip.generator.skip.weight for p in skip.generator_parameters())
    assert skip.generator_ema.skip is not None and skip.critic_label_embedding is None
    assert skip.critic.project.in_features == 3
    # at the start the generator's samples equal those of the same net without the offset
    skip.generator.net.load_state_dict(plain.generator.net.state_dict())
    skip.label_embedding.load_state_dict(plain.label_embedding.state_dict())
    y = torch.tensor([0, 1, 2, 1])
    z = torch.randn(4, 8)
    same = skip.generator(z, skip._condition(y)[0])
    assert torch.allclose(same, plain.generator(z, plain._condition(y)[0]))
    with torch.no_grad():
        skip.generator.skip.weight[:, 1] = torch.tensor([5.0, -5.0])
    moved = skip.generator(z, skip._condition(y)[0]) - same
    assert torch.allclose(moved, torch.tensor([[0.0, 0.0], [5.0, -5.0], [0.0, 0.0], [5.0, -5.0]]))
    with pytest.raises(ValueError, match="label_skip"):
        ConditionalGAN(num_classes=3, label_skip="yes")


def test_configs_saved_before_label_skip_load_without_it():
    old = ConditionalGAN(num_classes=3, data_shape=(2,), hidden=(8,), minibatch_distance=False)
    config = old.get_config()
    del config["label_skip"]
    new = ConditionalGAN.from_config(config)
    assert not new.label_skip
    new.load_state_dict(old.state_dict())  # strict: the same nets
