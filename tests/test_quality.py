"""Quality control of generated data: known cases, reference implementations, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import probgen
from probgen.metrics import (alpha_precision_beta_recall, attribute_gap, compare, correlation_difference,
                             detection_auc, distance_to_closest_record, evaluate, frechet_distance,
                             log_prob_gap, marginal_distances, membership_inference_auc, mmd, modes_covered,
                             nn_distance_ratio, precision_recall, quality_vs_size)

pytestmark = pytest.mark.xdist_group("quality")


def _gauss(n, d=4, seed=0, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * scale + shift


# ------------------------------------------------------------------ known cases
def test_identical_sets_are_perfect():
    x = _gauss(400)
    pr = precision_recall(x, x)
    assert pr["precision"] == pr["recall"] == pr["coverage"] == 1.0
    assert pr["density"] >= 1.0  # every sample sits in its own ball plus its neighbours'
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    ab = alpha_precision_beta_recall(x, x)
    assert ab["alpha_precision"] == pytest.approx(1.0, abs=0.02) and ab["beta_recall"] == pytest.approx(1.0, abs=0.02)
    assert ab["authenticity"] == 0.0


def test_disjoint_sets_score_zero():
    x, y = _gauss(300), _gauss(300, seed=1, shift=50.0)
    pr = precision_recall(x, y)
    assert pr == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    assert frechet_distance(x, y, features="raw") > 4 * 50.0**2 * 0.99
    assert detection_auc(x, y)["auc"] > 0.99
    assert mmd(x, y, permutations=100)["p_value"] == pytest.approx(1 / 101)


def test_same_distribution_is_not_rejected():
    x, y = _gauss(500, seed=0), _gauss(500, seed=1)
    assert mmd(x, y)["p_value"] > 0.05
    assert 0.4 < detection_auc(x, y)["auc"] < 0.6
    pr = precision_recall(x, y)
    assert pr["precision"] > 0.8 and pr["recall"] > 0.8


def test_collapse_lowers_recall_not_precision():
    real = _gauss(600, d=2)
    collapsed = real[:600].clone()
    collapsed = collapsed[collapsed[:, 0] > 0.5][:, :].repeat(4, 1)[:600]  # one region only
    pr = precision_recall(real, collapsed)
    assert pr["precision"] > 0.9 and pr["recall"] < 0.5 and pr["coverage"] < 0.5


def test_precision_recall_matches_the_prdc_package():
    from probgen.bench.quality import _prdc_reference

    r, f = _gauss(300, d=5).double(), _gauss(250, d=5, seed=3, scale=1.3).double()
    ours = precision_recall(r, f, k=5, features="raw")
    ref = _prdc_reference(r.numpy(), f.numpy(), 5)
    for key in ours:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12)


def test_alpha_beta_matches_reference():
    from probgen.bench.quality import _alpha_beta_reference

    r, f = _gauss(300, d=3).double(), _gauss(300, d=3, seed=4, shift=0.3).double()
    ours = alpha_precision_beta_recall(r, f, features="raw")
    ref = _alpha_beta_reference(r.numpy(), f.numpy())
    for key in ("alpha_precision", "beta_recall", "authenticity"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-9)


def test_frechet_matches_scipy_sqrtm():
    from probgen.bench.quality import _frechet_reference

    r, f = _gauss(500, d=6), _gauss(400, d=6, seed=2, scale=1.5, shift=0.2)
    assert frechet_distance(r, f, features="raw") == pytest.approx(
        _frechet_reference(r.double().numpy(), f.double().numpy()), rel=1e-6)
    # default standardizes by the real columns: invariant to rescaling both sets
    assert frechet_distance(r * 10, f * 10) == pytest.approx(frechet_distance(r, f), rel=1e-6)


def test_mmd_matches_direct_formula_and_reproduces():
    x, y = _gauss(60, d=3), _gauss(50, d=3, seed=1, shift=0.5)
    res = mmd(x, y, bandwidth=1.5, permutations=50, seed=3, features="raw")
    k = lambda a, b: torch.exp(-torch.cdist(a, b).square() / (2 * 1.5**2)).double()  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    direct = (kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kxy.mean()
    assert res["mmd2"] == pytest.approx(float(direct), rel=1e-6)
    assert mmd(x, y, bandwidth=1.5, permutations=50, seed=3, features="raw") == res


def test_table_marginals_and_correlations():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 3, generator=g)
    b = torch.randn(3000, 3, generator=g)
    b[:, 2] = b[:, 0]  # correlation 1 between columns 0 and 2 in the fake data
    b[:, 1] = b[:, 1] * 2  # wider marginal
    md = marginal_distances(a, b)
    assert md["ks"].idxmax() == "x1" and md.loc["x0", "ks"] < 0.05
    cd = correlation_difference(a, b)
    assert cd["max_abs"] == pytest.approx(1.0, abs=0.05)
    assert cd["matrix"].loc["x0", "x2"] == pytest.approx(1.0, abs=0.05)
    df_r = pd.DataFrame({"u": a[:, 0].numpy(), "c": ["a"] * 1500 + ["b"] * 1500})
    df_f = pd.DataFrame({"u": a[:, 0].numpy(), "c": ["a"] * 3000})
    md = marginal_distances(df_r, df_f)
    assert md.loc["c", "ks"] == pytest.approx(0.5) and md.loc["u", "ks"] == 0.0


# ------------------------------------------------------------------ mode collapse
def test_modes_covered_counts_constructed_samples():
    means, sigma = probgen.datasets._catalog.mixture_modes("ring8")
    g = torch.Generator().manual_seed(0)
    on = torch.as_tensor(means[[0, 0, 1, 2, 3, 4]]).repeat(50, 1)  # 5 modes, mode 0 twice as often
    pts = on + sigma * torch.randn(len(on), 2, generator=g).clamp(-2, 2)
    far = torch.full((100, 2), 5.0)
    r = modes_covered(torch.cat([pts, far]), dataset="ring8")
    assert r["modes"] == 5 and r["num_modes"] == 8
    assert r["high_quality"] == pytest.approx(300 / 400)
    freq = np.array([2, 1, 1, 1, 1]) / 6
    assert r["reverse_kl"] == pytest.approx(float(np.sum(freq * np.log(freq * 8))))
    assert r["counts"].tolist() == [100, 50, 50, 50, 50, 0, 0, 0]
    assert modes_covered(pts, dataset="ring8", min_count=60)["modes"] == 1
    grid = probgen.datasets.load("grid25", n=2500)
    full = modes_covered(grid.x, dataset="grid25")
    assert full["modes"] == 25 and full["high_quality"] > 0.99 and full["reverse_kl"] < 0.02


def test_evaluate_picks_up_mixture_modes():
    real = probgen.datasets.load("ring8", n=800)
    collapsed = real.x[real.y < 3]
    rep = evaluate(collapsed, real, metrics=["modes", "fidelity"], progress=False)
    assert rep["modes"] == 3 and rep["high_quality"] > 0.97 and rep["recall"] < 0.5


# ------------------------------------------------------------------ memorization
class _Copier:
    """A 'model' that hands back training rows."""

    def __init__(self, train):
        self.train = train

    def sample(self, n, seed=None):
        g = torch.Generator().manual_seed(seed or 0)
        return self.train[torch.randint(len(self.train), (n,), generator=g)]


class _Gaussian:
    """The true data distribution, with an exact log_prob."""

    log_prob_kind = "exact"

    def sample(self, n, seed=None):
        return _gauss(n, seed=1000 + (seed or 0))

    def log_prob(self, x):
        return torch.distributions.Normal(0.0, 1.0).log_prob(torch.as_tensor(x)).sum(-1)


class _KDE(_Copier):
    """Kernel density on the training rows with a tiny bandwidth: overfits."""

    log_prob_kind = "exact"

    def log_prob(self, x):
        d2 = torch.cdist(torch.as_tensor(x), self.train).square()
        return torch.logsumexp(-d2 / (2 * 0.05**2), 1)


def test_memorizing_model_is_flagged_and_fresh_one_is_not():
    train, holdout = _gauss(400, seed=10), _gauss(400, seed=11)
    copier = evaluate(_Copier(train), train, holdout, metrics=["memorization"], progress=False)
    fresh = evaluate(_Gaussian(), train, holdout, metrics=["memorization", "log_prob_gap"], progress=False)
    assert copier["exact_copies"] == 1.0 and copier["closer_to_train"] == 1.0 and copier["nndr_median"] == 0.0
    assert copier["mia_auc_distance"] > 0.8 and copier["dcr_ratio"] == 0.0
    assert fresh["exact_copies"] == 0.0 and abs(fresh["closer_to_train"] - 0.5) < 0.1
    assert abs(fresh["mia_auc_distance"] - 0.5) < 0.1 and fresh["nndr_median"] > 0.5
    assert abs(fresh["log_prob_gap"]) < 0.5 and abs(fresh["mia_auc_log_prob"] - 0.5) < 0.1
    assert set(copier.table.loc[["exact_copies", "closer_to_train", "mia_auc_distance"], "flag"]) == {"!"}
    assert fresh.table.loc[["exact_copies", "closer_to_train", "mia_auc_distance"], "flag"].eq("").all()


def test_log_prob_gap_and_membership_inference_catch_overfit_likelihood():
    train, holdout = _gauss(300, seed=20), _gauss(300, seed=21)
    kde = _KDE(train)
    gap = log_prob_gap(kde, train, holdout)
    assert gap["gap"] > 50 and gap["kind"] == "exact"
    mia = membership_inference_auc(kde.sample(300, seed=0), train, holdout, model=kde)
    assert mia["auc_log_prob"] > 0.99 and mia["auc_distance"] > 0.7
    with pytest.raises(ValueError, match="log_prob_gap"):
        log_prob_gap(object(), train, holdout)


def test_a_random_likelihood_estimate_is_drawn_under_the_seed():
    """A VAE's log_prob is a random ELBO estimate: the report draws it under its seed, so it repeats,
    and another seed draws another estimate."""
    x = (torch.rand(120, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    vae = probgen.models.VAE(latent_dim=2, hidden=(8,))
    vae.fit(x[:60], steps=5, batch_size=30, seed=0, progress=False)
    runs = [log_prob_gap(vae, x[:60], x[60:], seed=s)["gap"] for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    log_prob_gap(vae, x[:60], x[60:], seed=0)
    assert torch.equal(torch.rand(1), before)  # the caller's random state is left as it was


def test_memorization_functions_agree_with_sklearn_neighbors():
    from probgen.bench.quality import _memorization_reference

    train, holdout, fake = _gauss(200, seed=1).double(), _gauss(200, seed=2).double(), _gauss(150, seed=3).double()
    ref = _memorization_reference(fake.numpy(), train.numpy(), holdout.numpy())
    dcr = distance_to_closest_record(fake, train, holdout, features="raw")
    assert dcr["closer_to_train"] == pytest.approx(ref["closer_to_train"])
    assert nn_distance_ratio(fake, train, holdout, features="raw")["nndr_median"] == pytest.approx(ref["nndr_median"])
    mia = membership_inference_auc(fake, train, holdout, features="raw")
    assert mia["auc_distance"] == pytest.approx(ref["mia_auc"])


# ------------------------------------------------------------------ bias
def test_attribute_gap_and_quality_curve():
    r = attribute_gap(np.array([0] * 90 + [1] * 10), np.array([0] * 50 + [1] * 50))
    assert r["total_variation"] == pytest.approx(0.4) and r["max_gap"] == pytest.approx(0.4)
    assert r["table"].loc[1, "gap"] == pytest.approx(-0.4)
    df = pd.DataFrame({"sex": ["f"] * 30 + ["m"] * 70})
    assert attribute_gap(df, df, "sex")["total_variation"] == 0.0
    cont = attribute_gap(_gauss(500, seed=1), _gauss(500), 0, bins=5)
    assert len(cont["table"]) == 5 and cont["total_variation"] < 0.15
    train, test = _gauss(500, d=2, shift=3.0), _gauss(400, d=2, seed=1, shift=3.0)
    g = torch.Generator().manual_seed(5)

    def fit(x):  # moments of the subset: better with more data
        return x.mean(0) + x.std(0) * torch.randn(400, 2, generator=g)
    curve = quality_vs_size(fit, train, test, [5, 50, 500], metrics=["frechet", "coverage"], progress=False)
    assert list(curve.columns) == ["size", "frechet", "coverage"]
    assert curve["frechet"].iloc[0] > curve["frechet"].iloc[-1]


# ------------------------------------------------------------------ images and features
def test_digit_classifier_and_image_metrics():
    clf = probgen.metrics.digit_classifier()
    x, y = probgen.datasets.load("digits", split="test")
    xm, ym = probgen.datasets.load("mnist5k", split="test")
    assert clf.accuracy(x, y) > 0.85 and clf.accuracy(xm, ym) > 0.9
    feats = probgen.metrics.image_features(x)
    assert feats.shape == (len(x), 64) and torch.isfinite(feats).all()
    xt, _ = probgen.datasets.load("digits", split="train")
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    blank = torch.zeros_like(x)
    assert frechet_distance(xt, blank) > 10 * frechet_distance(xt, x)
    rep = evaluate(x, xt, metrics=["frechet", "attribute"], progress=False)
    assert rep["attribute_tv"] < 0.15 and rep.info["features"].startswith("digit-CNN")
    ones = x[y == 1]
    assert evaluate(ones, xt, metrics=["attribute"], progress=False)["attribute_tv"] > 0.8


def test_classifier_cache_is_atomic_safetensors(tmp_path, monkeypatch):
    from probgen.metrics import features as F

    calls = []

    def tiny_train():
        calls.append(1)
        torch.manual_seed(0)
        return F.DigitClassifier(), {"version": F._VERSION}

    monkeypatch.setattr(F, "_train", tiny_train)
    monkeypatch.setattr(F, "_MEMORY", {})
    net = F.digit_classifier(tmp_path)
    path = tmp_path / f"{F._VERSION}.safetensors"
    assert path.exists() and not list(tmp_path.glob("*.tmp")) and calls == [1]
    from safetensors.torch import load_file  # plain tensors: no pickle involved

    assert set(load_file(str(path))) == set(net.state_dict())
    monkeypatch.setattr(F, "_MEMORY", {})
    again = F.digit_classifier(tmp_path)  # from disk, no training
    assert calls == [1]
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(net.features(x), again.features(x))
    path.write_bytes(b"not a safetensors file")
    monkeypatch.setattr(F, "_MEMORY", {})
    F.digit_classifier(tmp_path)  # corrupt file: retrained and rewritten
    assert calls == [1, 1] and set(load_file(str(path))) == set(net.state_dict())


# ------------------------------------------------------------------ report
def test_report_table_exports_and_compare():
    train, holdout = _gauss(300, seed=30), _gauss(300, seed=31)
    good = evaluate(_Gaussian(), train, holdout, progress=False, name="good")
    copier = evaluate(_Copier(train), train, holdout, progress=False, name="copier")
    for metric in ("precision", "recall", "density", "coverage", "frechet", "mmd2", "detection_auc",
                   "marginal_wasserstein", "correlation_diff_max", "exact_copies", "log_prob_gap"):
        assert metric in good.table.index
    assert "log_prob_gap" not in copier.table.index  # the copier has no likelihood
    md = good.to_markdown()
    assert md.count("\n|") >= len(good.table) + 1 and "| precision | fidelity |" in md
    html = copier.to_html()
    assert "<table" in html and "data:image/png;base64," in html
    both = compare({"good": good, "copier": copier})
    assert both.loc["exact_copies", "copier"] == 1.0 and both.loc["exact_copies", "good"] == 0.0
    assert good.timings and all(v >= 0 for v in good.timings.values())


def test_bad_input_names_the_metric():
    x = _gauss(50, d=3)
    with pytest.raises(ValueError, match="frechet_distance.*dimensions"):
        frechet_distance(x, _gauss(50, d=4))
    with pytest.raises(ValueError, match="precision_recall.*at least 6"):
        precision_recall(x, x[:4], k=5)
    with pytest.raises(ValueError, match="mmd.*at least 2"):
        mmd(x, x[:1])
    with pytest.raises(ValueError, match="detection_auc: real and fake differ"):
        detection_auc(x, _gauss(50, d=2))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(x, torch.full((5, 3), float("nan")))
    with pytest.raises(ValueError, match="kernel"):
        mmd(x, x, kernel="cosine")
    with pytest.raises(ValueError, match="distance_to_closest_record: needs a holdout"):
        distance_to_closest_record(x, x, None)
    with pytest.raises(ValueError, match="metric 'memorization' needs holdout"):
        evaluate(x, x, metrics=["memorization"], progress=False)
    with pytest.raises(KeyError, match="unknown metric"):
        evaluate(x, x, metrics=["fid"], progress=False)
    with pytest.raises(ValueError, match="evaluate.*precision_recall.*at least 6"):
        evaluate(x[:3], x, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        probgen.metrics.image_features(torch.full((2, 1, 8, 8), 3.0))
    with pytest.raises(ValueError, match="marginal_distances: needs at least 2"):
        marginal_distances(x, x[:1])


# ------------------------------------------------------------------ use of generated data
def test_augment_and_tstr():
    from probgen.tasks import augment, augmentation_gain, train_on_synthetic

    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0] * 30 + [1] * 10)
    x = torch.randn(40, 2, generator=g) + 3 * y[:, None]

    def gen(n, c, seed):
        return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) + 3 * c
    out = augment(gen, (x, y), 20)
    assert len(out) == 60 and (out.y[40:] == 0).sum() == 15 and out.meta["synthetic"].sum() == 20
    assert (augment(gen, (x, y), 20, balance=True).y[40:] == 1).sum() == 10
    assert torch.equal(augment(gen, (x, y), 20).x, out.x)  # seeded
    test_y = torch.randint(0, 2, (200,), generator=g)
    test = (torch.randn(200, 2, generator=g) + 3 * test_y[:, None], test_y)
    syn = (out.x[40:], out.y[40:])
    r = train_on_synthetic(syn, test, real_train=(x, y))
    assert r["tstr"] > 0.9 and r["trtr"] > 0.9 and 0.9 < r["ratio"] < 1.1
    wrong = (syn[0], 1 - syn[1])  # labels flipped: TSTR collapses
    assert train_on_synthetic(wrong, test)["tstr"] < 0.1
    t = augmentation_gain(lambda xs, ys: gen, (x, y), test, sizes=[6, 20], repeats=2, progress=False)
    assert list(t["size"]) == [6, 20] and t["real"].between(0, 1).all()
    with pytest.raises(ValueError, match="sizes"):
        augmentation_gain(lambda xs, ys: gen, (x, y), test, sizes=[100], progress=False)


def test_augment_with_a_conditional_probgen_model():
    from probgen.tasks import augment

    x, y = probgen.datasets.load("digits", split="train")
    model = probgen.models.VAE(data_shape=(1, 8, 8), latent_dim=4, hidden=(32,), likelihood="gaussian",
                               num_classes=10)
    model.fit((x[:100], y[:100]), steps=5, progress=False, seed=0)
    out = augment(model, (x[:100], y[:100]), 30, balance=True)
    assert out.x.shape == (130, 1, 8, 8) and torch.bincount(out.y[100:], minlength=10).tolist() == [3] * 10


def test_bench_quick_runs():
    from probgen.bench.quality import run

    report = run(quick=True)
    frame = report.frame()
    assert len(frame) >= 8 and (frame["probgen"] > 0).all() and (frame["ratio"] > 0).all()
    values = next(iter(report.tables.values()))
    assert (values["probgen"] - values["reference"]).abs().max() < 0.05
