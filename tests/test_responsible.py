"""Responsible use: DP-SGD through Opacus, provenance of generated files, model cards."""

import json
import math

import pytest
import torch

import probgen
import probgen.plot
from probgen.infer.privacy import parse_privacy


def _binary(n=256, seed=0):
    return (torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


def _max_diff(a, b):
    return max((p.float() - q.float()).abs().max().item() for p, q in zip(a.state_dict().values(),
                                                                         b.state_dict().values()) if p.numel())


# ------------------------------------------------------------------ accountant
def test_epsilon_matches_opacus_own_accounting():
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    x = _binary(320)
    vae = probgen.models.VAE(latent_dim=2, hidden=(8,))
    sigma, steps, batch, delta = 1.1, 12, 32, 1e-4
    r = vae.fit(x, steps=steps, batch_size=batch, seed=0, progress=False,
                privacy={"noise_multiplier": sigma, "delta": delta})
    got = r.info["privacy"]
    q = batch / len(x)
    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    assert got["epsilon"] == pytest.approx(acc.get_epsilon(delta), rel=1e-9)
    orders = RDPAccountant.DEFAULT_ALPHAS
    eps, _ = get_privacy_spent(orders=orders, rdp=compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders),
                               delta=delta)
    assert got["epsilon"] == pytest.approx(eps, rel=1e-9)
    assert got["steps"] == steps and got["sample_rate"] == q


def test_prv_accountant_matches_opacus():
    from opacus.accountants import PRVAccountant

    r = probgen.models.VAE(latent_dim=2, hidden=(8,)).fit(
        _binary(320), steps=12, batch_size=32, seed=0, progress=False,
        privacy={"epsilon": 2.0, "delta": 1e-4, "accountant": "prv"})
    p = r.info["privacy"]
    acc = PRVAccountant()
    acc.history = [(p["noise_multiplier"], p["sample_rate"], 12)]
    assert p["accountant"] == "prv" and 1.9 < p["epsilon"] <= 2.0
    assert p["epsilon"] == pytest.approx(acc.get_epsilon(1e-4), rel=1e-6)


def test_target_epsilon_is_met_and_spent():
    x = _binary(320)
    vae = probgen.models.VAE(latent_dim=2, hidden=(8,))
    r = vae.fit(x, steps=20, batch_size=32, seed=0, progress=False, privacy={"epsilon": 2.0, "delta": 1e-4})
    p = r.info["privacy"]
    assert 1.9 < p["epsilon"] <= 2.0 and p["noise_multiplier"] > 0.5
    # Poisson sampling: the batch sizes vary around the expected 32
    assert r.history["batch_size"].nunique() > 1
    assert 20 < r.history["batch_size"].mean() < 44


# ------------------------------------------------- epsilon = inf is ordinary training
@pytest.mark.parametrize("build, data, options", [
    (lambda: probgen.models.VAE(latent_dim=2, hidden=(16,)), lambda: _binary(), {}),
    (lambda: probgen.models.GAN(data_shape=(2,), hidden=(16,)), lambda: torch.randn(200, 2), {}),
    (lambda: probgen.models.Flow._contract_case().model, lambda: probgen.models.Flow._contract_case().data, {}),
    (lambda: probgen.models.PixelCNN._contract_case().model, lambda: probgen.models.PixelCNN._contract_case().data, {}),
])
def test_infinite_epsilon_without_clipping_equals_ordinary_training(build, data, options):
    torch.manual_seed(0)
    a = build()
    torch.manual_seed(0)
    b = build()
    x = data()
    a.fit(x, steps=8, batch_size=16, seed=3, progress=False, **options)
    r = b.fit(x, steps=8, batch_size=16, seed=3, progress=False, privacy={"epsilon": math.inf, "max_grad_norm": None},
              **options)
    assert r.info["privacy"]["noise_multiplier"] == 0.0
    assert _max_diff(a, b) < 1e-5
    # and it did train (equal losses would also come from frozen weights)
    assert r.history["loss"].dropna().nunique() > 1


def test_private_fit_is_reproducible_with_its_seed():
    x = _binary()
    out = []
    for _ in range(2):
        torch.manual_seed(0)
        m = probgen.models.VAE(latent_dim=2, hidden=(8,))
        m.fit(x, steps=5, batch_size=32, seed=1, progress=False, privacy={"epsilon": 1.0, "delta": 1e-4})
        out.append(m)
    assert _max_diff(*out) == 0.0


def test_label_skip_cvae_learns_each_class_privately_and_round_trips(tmp_path):
    # class c lights pixel c of a 2x2 image, nothing else: the per-class offset must learn it
    y = torch.arange(200) % 4
    x = torch.nn.functional.one_hot(y, 4).float().reshape(200, 1, 2, 2)
    vae = probgen.models.VAE(latent_dim=1, hidden=(2,), num_classes=4, label_skip=True)
    r = vae.fit((x, y), steps=30, batch_size=50, lr=0.1, seed=0, progress=False,
                privacy={"noise_multiplier": 1.0, "delta": 1e-3})  # a given noise: no search for it
    assert 0 < r.info["privacy"]["epsilon"] < 20
    assert vae.decoder.skip.weight.shape == (4, 4)
    samples = vae.sample(200, y=y, seed=0).reshape(200, 4)
    per_class = torch.stack([samples[y == c].mean(0) for c in range(4)])
    assert (per_class.argmax(1) == torch.arange(4)).all()  # each class lights its own pixel most
    probgen.save(vae, tmp_path / "cvae.safetensors")
    back = probgen.load(tmp_path / "cvae.safetensors")
    assert back.get_config()["label_skip"] is True
    assert torch.equal(back.sample(8, y=2, seed=1), vae.sample(8, y=2, seed=1))


def test_label_skip_needs_classes():
    with pytest.raises(ValueError, match="label_skip"):
        probgen.models.VAE(label_skip=True)
    with pytest.raises(ValueError, match="label_skip"):
        probgen.models.VAE(num_classes=3, label_skip=1)


def test_private_gan_and_conditional_gan_train():
    x = torch.randn(300, 2)
    y = torch.randint(0, 3, (300,))
    g = probgen.models.ConditionalGAN(num_classes=3, data_shape=(2,), hidden=(16,), minibatch_distance=False)
    r = g.fit((x, y), steps=10, batch_size=32, seed=0, progress=False, privacy={"epsilon": 5.0, "delta": 1e-4})
    assert r.info["privacy"]["epsilon"] <= 5.0 and "generator_loss" in r.history
    assert g.sample(4, y=1, seed=0).shape == (4, 2)


# --------------------------------------------------------------------- refusals
@pytest.mark.parametrize("privacy, match", [
    ({"epsilon": 0.0}, "epsilon"),
    ({"epsilon": -1.0}, "epsilon"),
    ({"epsilon": 1.0, "delta": 1 / 256}, "delta"),
    ({"epsilon": 1.0, "delta": 0.5}, "delta"),
    ({"epsilon": 1.0, "max_grad_norm": 0}, "max_grad_norm"),
    ({"epsilon": 1.0, "max_grad_norm": None}, "max_grad_norm"),
    ({"epsilon": 1.0, "noise_multiplier": 1.0}, "exactly one"),
    ({"epsilon": 1.0, "colour": 1}, "unknown"),
    ("strong", "dict"),
])
def test_bad_privacy_options(privacy, match):
    with pytest.raises(ValueError, match=match):
        probgen.models.VAE(latent_dim=2, hidden=(8,)).fit(_binary(), steps=2, batch_size=16, progress=False,
                                                          privacy=privacy)


def test_batch_size_that_breaks_poisson_sampling():
    with pytest.raises(ValueError, match="batch_size: Poisson sampling"):
        probgen.models.VAE(latent_dim=2, hidden=(8,)).fit(_binary(64), steps=2, batch_size=64, progress=False,
                                                          privacy={"epsilon": 1.0, "delta": 1e-4})


@pytest.mark.parametrize("name, match", [
    ("RBM", "Markov-chain updates"),
    ("MarkovChain", "closed-form"),
    ("BayesianNetwork", "closed-form"),
    ("AdversarialAutoencoder", "reads the training records"),
])
def test_families_without_per_record_gradients_are_refused(name, match):
    case = getattr(probgen.models, name)._contract_case()
    with pytest.raises(ValueError, match=match):
        case.model.fit(case.data, progress=False, privacy={"epsilon": 1.0, "delta": 1e-5})


def test_batchnorm_and_gradient_penalty_are_refused():
    from probgen.infer.privacy import check_per_example

    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="BatchNorm"):
        check_per_example(net, list(net.parameters()), "net")
    gan = probgen.models.GAN(data_shape=(2,), hidden=(8,), objective="wgan_gp")
    with pytest.raises(ValueError, match="double backward"):
        gan.fit(torch.randn(100, 2), steps=2, batch_size=16, progress=False, privacy={"epsilon": 1.0, "delta": 1e-4})
    gaussian = probgen.models.VAE(latent_dim=2, hidden=(8,), likelihood="gaussian")
    with pytest.raises(ValueError, match="log_scale"):
        gaussian.fit(torch.rand(100, 1, 4, 4), steps=2, batch_size=16, progress=False,
                     privacy={"epsilon": 1.0, "delta": 1e-4})


def test_distributed_private_training_is_refused():
    with pytest.raises(ValueError, match="one process"):
        probgen.models.VAE(latent_dim=2, hidden=(8,)).fit(_binary(), steps=2, batch_size=16, progress=False,
                                                          distributed=2, privacy={"epsilon": 1.0, "delta": 1e-4})


def test_parse_privacy_defaults():
    spec = parse_privacy({"epsilon": 3}, n=1000)
    assert (spec.delta, spec.max_grad_norm, spec.accountant) == (1e-5, 1.0, "rdp")


# ------------------------------------------------------------------ provenance
@pytest.fixture(scope="module")
def fitted():
    m = probgen.models.VAE(latent_dim=2, hidden=(8,))
    m.fit(_binary(), steps=3, progress=False, seed=0)
    return m


@pytest.mark.parametrize("name", ["grid.png", "table.csv", "table.parquet", "song.mid"])
def test_provenance_survives_save_and_load(tmp_path, fitted, name):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    model_file = probgen.save(fitted, tmp_path / "vae.safetensors")
    loaded = probgen.load(model_file)
    file_hash = __import__("hashlib").sha256(model_file.read_bytes()).hexdigest()
    samples = loaded.sample(6, seed=4)
    path = tmp_path / name
    if name.endswith(".mid"):  # the hook a MIDI writer calls after writing its file
        path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60")
        probgen.responsible.record(path, model=loaded, seed=4)
    elif name.endswith(".png"):
        probgen.write_samples(samples, path, model=loaded, seed=4)
    else:
        probgen.write_samples(samples.reshape(6, -1), path, model=loaded, seed=4)
    p = probgen.provenance(path)
    assert (p["generator"], p["family"], p["seed"], p["model_sha256"]) == ("probgen", "vae", 4, file_hash)
    if p["source"] == "sidecar":
        assert p["intact"]
        path.write_bytes(path.read_bytes() + b"\n")
        assert not probgen.provenance(path)["intact"]


def test_unsaved_model_is_stamped_by_its_state_hash(tmp_path):
    fitted = probgen.models.VAE(latent_dim=2, hidden=(8,))
    fitted.fit(_binary(), steps=3, progress=False, seed=0)
    path = probgen.write_samples(fitted.sample(4, seed=0).reshape(4, -1), tmp_path / "s.csv", model=fitted, seed=0)
    p = probgen.provenance(path)
    assert "model_sha256" not in p and len(p["state_sha256"]) == 64
    other = probgen.models.VAE(latent_dim=2, hidden=(8,))
    other.fit(_binary(), steps=3, progress=False, seed=1)
    assert probgen.responsible.model_hash(other)["state_sha256"] != p["state_sha256"]


def test_every_saved_png_names_probgen(tmp_path):
    path = probgen.plot.save_figure(probgen.plot.sample_grid(torch.rand(4, 1, 8, 8)), tmp_path / "plain.png")
    p = probgen.provenance(path)
    assert p["generator"] == "probgen" and "family" not in p and p["source"] == "png-text"


def test_provenance_missing_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no probgen provenance"):
        probgen.provenance(path)


def test_watermark_detection_and_its_size_limit():
    wm = pytest.importorskip("probgen.responsible.watermark")
    if not wm.available():
        pytest.skip("invisible-watermark not installed")
    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 32, 32, generator=g), size=256, mode="bilinear")[0]
    assert wm.detect(wm.embed(image, "probgen"), "probgen") > 0.95
    assert wm.detect(image, "probgen") < 0.8  # an unmarked image
    with pytest.raises(ValueError, match="too small"):
        wm.embed(torch.rand(1, 28, 28), "probgen")


# ------------------------------------------------------------------ model cards
def test_model_card_and_save_writes_it(tmp_path):
    x = _binary(320)
    vae = probgen.models.VAE(latent_dim=2, hidden=(8,))
    r = vae.fit(x, steps=10, batch_size=32, seed=0, progress=False, privacy={"epsilon": 4.0, "delta": 1e-4})
    card = probgen.model_card(vae, r, {"mia_auc_distance": 0.51}, data={"name": "random 4x4", "size": 320})
    for text in ("vae", "svi", "size: 320", f"epsilon = {r.info['privacy']['epsilon']:.4g}", "mia_auc_distance",
                 "Intended use", "Known limitations", '"latent_dim": 2'):
        assert text in card, text
    path = probgen.save(vae, tmp_path / "m.safetensors", card=card)
    assert (tmp_path / "m.card.md").read_text() == card
    probgen.save(vae, tmp_path / "n.safetensors", card=True)
    assert "no FitResult given" in (tmp_path / "n.card.md").read_text()
    assert "model_sha256" in probgen.model_card(probgen.load(path))
    with pytest.raises(ValueError, match="card"):
        probgen.save(vae, tmp_path / "o.safetensors", card=3)


def test_bench_quick_runs():
    from probgen.bench import privacy

    report = privacy.run(quick=True)
    table = report.frame()
    assert {"digits cVAE (svi)", "digits cGAN (DP critic)"} <= set(table["case"])
    assert json.dumps(report.frame_data.to_dict())  # per-seed rows are plain numbers


def test_label_skip_dp_gan_learns_each_class_privately_and_round_trips(tmp_path):
    # class c lights entry c of a 4-vector: the generator's per-class offset must learn it from the
    # private linear critic alone (the generator never reads a record)
    y = torch.arange(400) % 4
    x = torch.nn.functional.one_hot(y, 4).float()
    torch.manual_seed(0)
    gan = probgen.models.ConditionalGAN(num_classes=4, data_shape=(4,), latent_dim=2, hidden=(4,), critic_hidden=(),
                                        label_skip=True, ema=0.99, minibatch_distance=False)
    r = gan.fit((x, y), steps=300, batch_size=100, lr=1e-2, critic_lr=2e-2, seed=0, progress=False,
                privacy={"noise_multiplier": 1.0, "delta": 1e-3})  # a given noise: no search for it
    assert 0 < r.info["privacy"]["epsilon"] < 40
    samples = gan.sample(400, y=y, seed=0)
    per_class = torch.stack([samples[y == c].mean(0) for c in range(4)])
    assert (per_class.argmax(1) == torch.arange(4)).all()  # each class lights its own entry most
    probgen.save(gan, tmp_path / "dpgan.safetensors")
    back = probgen.load(tmp_path / "dpgan.safetensors")
    assert back.get_config()["label_skip"] is True and tuple(back.get_config()["critic_hidden"]) == ()
    assert torch.equal(back.sample(8, y=2, seed=1), gan.sample(8, y=2, seed=1))
