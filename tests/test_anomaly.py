"""AnomalyDetector: PyOD's interface and threshold rule, per-family scores, corrections, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import probgen
from probgen.tasks.anomaly import FAMILY_SCORES, AnomalyDetector, input_complexity, perturb

QUIET = dict(progress=False, seed=0)


def _blobs(n: int = 400, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    return centers[torch.randint(2, (n,), generator=g)] + 0.4 * torch.randn(n, 2, generator=g)


@pytest.fixture(scope="module")
def flow_detector():
    flow = probgen.models.Flow(2, kind="maf", transforms=2, hidden=(16,))
    return AnomalyDetector(flow, contamination=0.1, fit_options=dict(steps=150, lr=1e-2, **QUIET)).fit(_blobs())


@pytest.mark.parametrize("contamination", [0.02, 0.1, 0.25, 0.5])
def test_threshold_flags_the_requested_share_of_training_points(flow_detector, contamination):
    det = AnomalyDetector(flow_detector.model, contamination=contamination).fit(_blobs())
    assert abs(det.labels_.mean() - contamination) <= 1 / 400 + 1e-9
    # fresh draws of the same distribution: about the same share is flagged
    share = det.predict(_blobs(4000, seed=1)).mean()
    assert abs(share - contamination) < 0.04 + 0.2 * contamination


def test_threshold_labels_and_probabilities_match_pyod_on_the_same_scores(flow_detector):
    from pyod.models.base import BaseDetector

    det = flow_detector
    train, test = _blobs(), _blobs(300, seed=2)
    fixed = {id(train): det.decision_scores_, id(test): det.decision_function(test)}

    class Fixed(BaseDetector):  # PyOD's own threshold and probability code on probgen's scores
        def __init__(self, contamination=0.1):
            super().__init__(contamination=contamination)

        def fit(self, X, y=None):
            self._set_n_classes(None)
            self.decision_scores_ = fixed[id(X)]
            self._process_decision_scores()
            return self

        def decision_function(self, X):
            return fixed[id(X)]

    peer = Fixed(contamination=det.contamination).fit(train)
    assert det.threshold_ == pytest.approx(peer.threshold_)
    np.testing.assert_array_equal(det.labels_, peer.labels_)
    np.testing.assert_array_equal(det.predict(test), peer.predict(test))
    for method in ("linear", "unify"):
        mine = det.predict_proba(test, method=method)
        np.testing.assert_allclose(mine, peer.predict_proba(test, method=method), atol=1e-9)
        np.testing.assert_allclose(mine.sum(1), 1.0)


def _tiny_images(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 6, 6, generator=g) < 0.3).float()


def _fitted(family: str):
    x = _tiny_images()
    if family == "flow":
        m = probgen.models.Flow(2, kind="maf", transforms=1, hidden=(8,))
        m.fit(_blobs(96), steps=10, **QUIET)
        return m, _blobs(50, seed=3)
    if family == "gaussian_copula":
        m = probgen.models.GaussianCopula(2)
        m.fit(_blobs(96), progress=False)
        return m, _blobs(50, seed=3)
    if family == "vae":
        m = probgen.models.VAE(latent_dim=2, hidden=(16,))
    elif family == "autoencoder":
        m = probgen.models.Autoencoder(latent_dim=2, hidden=(16,))
    elif family == "rbm":
        m = probgen.models.RBM(36, 8)
        x = x.reshape(len(x), -1)
    elif family == "diffusion":
        m = probgen.models.Diffusion((2,), timesteps=20, hidden=16)
        m.fit(_blobs(96), steps=5, **QUIET)
        return m, _blobs(50, seed=3)
    elif family == "pixel_cnn":
        m = probgen.models.PixelCNN(data_shape=(1, 6, 6), channels=4, layers=2, first_kernel=3)
    m.fit(x, steps=5, **QUIET)
    return m, x[:50]


@pytest.mark.parametrize("family,score", [("flow", "auto"), ("vae", "auto"), ("vae", "reconstruction"),
                                          ("autoencoder", "auto"), ("rbm", "auto"), ("diffusion", "auto"),
                                          ("diffusion", "reconstruction"), ("pixel_cnn", "auto"),
                                          ("gaussian_copula", "auto"), ("gaussian_copula", "tail")])
def test_scores_do_not_depend_on_the_batch_size(family, score):
    model, x = _fitted(family)
    assert model.family == family
    one = AnomalyDetector(model, score=score, batch_size=7).fit(x).decision_scores_
    many = AnomalyDetector(model, score=score, batch_size=1000).fit(x).decision_function(x)
    # float32 sums differ in the last digits between batch shapes; a batch-dependent noise draw would differ by O(1)
    np.testing.assert_allclose(one, many, rtol=1e-4, atol=1e-4)
    assert one.shape == (len(x),) and np.std(one) > 0


def test_each_family_gets_its_published_default_score():
    expected = {"flow": "log_prob", "pixel_cnn": "log_prob", "vae": "iwae", "rbm": "free_energy",
                "autoencoder": "reconstruction", "gan": "fanogan", "diffusion": "denoising",
                "bayesian_network": "log_prob", "markov_chain": "log_prob", "gaussian_copula": "log_prob"}
    for family, score in expected.items():
        assert FAMILY_SCORES[family] == score
    model, _ = _fitted("rbm")
    assert AnomalyDetector(model).score_name == "free_energy"


def test_vae_iwae_score_is_the_importance_weighted_bound():
    model, x = _fitted("vae")
    ours = -AnomalyDetector(model, score_options={"num_particles": 200}).fit(x).decision_scores_
    bound = model.log_prob(x, num_particles=200, seed=0).numpy()
    elbo = -AnomalyDetector(model, score_options={"num_particles": 1}).fit(x).decision_scores_
    assert abs(ours.mean() - bound.mean()) < 0.05 * abs(bound.mean())
    assert ours.mean() > elbo.mean()


@pytest.mark.parametrize("kind", ["maf", "realnvp"])
def test_exact_likelihood_detectors_find_planted_outliers_in_a_2d_mixture(kind):
    train = _blobs(600)
    g = torch.Generator().manual_seed(5)
    outliers = torch.rand(30, 2, generator=g) * torch.tensor([8.0, 6.0]) - torch.tensor([4.0, 3.0])
    keep = ((outliers[:, None, :] - torch.tensor([[-2.0, 0.0], [2.0, 0.0]])).norm(dim=-1).min(1).values > 1.6)
    outliers = outliers[keep]
    inliers = _blobs(300, seed=9)
    det = AnomalyDetector(probgen.models.Flow(2, kind=kind, transforms=2, hidden=(16,)), contamination=0.05,
                          fit_options=dict(steps=200, lr=1e-2, **QUIET)).fit(train)
    test = torch.cat([inliers, outliers])
    labels = np.r_[np.zeros(len(inliers)), np.ones(len(outliers))]
    assert roc_auc_score(labels, det.decision_function(test)) > 0.95


def test_copula_detector_finds_planted_outliers_in_a_2d_mixture():
    train = _blobs(600)
    g = torch.Generator().manual_seed(5)
    outliers = torch.rand(30, 2, generator=g) * torch.tensor([8.0, 6.0]) - torch.tensor([4.0, 3.0])
    outliers = outliers[(outliers[:, None, :] - torch.tensor([[-2.0, 0.0], [2.0, 0.0]])).norm(dim=-1).min(1).values > 1.6]
    inliers = _blobs(300, seed=9)
    det = AnomalyDetector(probgen.models.GaussianCopula(2), contamination=0.05, fit_options={"progress": False})
    test = torch.cat([inliers, outliers])
    labels = np.r_[np.zeros(len(inliers)), np.ones(len(outliers))]
    assert roc_auc_score(labels, det.fit(train).decision_function(test)) > 0.95


def test_tail_score_sums_each_features_longer_tail_and_matches_pyod_copods_tails():
    from pyod.models.copod import COPOD
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    # right-skewed first feature, left-skewed second: the longer tail differs per feature
    x = torch.stack([torch.randn(400, generator=g).exp(), -torch.randn(400, generator=g).exp()], 1)
    cop = probgen.models.GaussianCopula(2)
    det = AnomalyDetector(cop, score="tail", fit_options={"progress": False}).fit(x[:300])
    test = x[300:]
    ours = det.decision_function(test)
    expected = -(cop.log_tail(test, "upper")[:, 0] + cop.log_tail(test, "lower")[:, 1]).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-10)
    # PyOD's COPOD estimates the same tails with empirical CDFs (U_r: upper, U_l: lower, -log)
    peer = COPOD().fit(x[:300].numpy())
    peer.decision_function(test.numpy())
    upper, lower = peer.U_r[-len(test):, 0], peer.U_l[-len(test):, 1]
    assert spearmanr(-cop.log_tail(test, "upper")[:, 0].numpy(), upper).statistic > 0.97
    assert spearmanr(-cop.log_tail(test, "lower")[:, 1].numpy(), lower).statistic > 0.97
    assert spearmanr(ours, upper + lower).statistic > 0.95
    with pytest.raises(ValueError, match="log_tail"):
        AnomalyDetector(probgen.models.Flow(2, kind="maf", transforms=1, hidden=(4,)), score="tail").fit(x[:10])


def test_gan_detector_trains_the_fanogan_encoder_when_needed():
    x = _blobs(128)
    gan = probgen.models.GAN(data_shape=(2,), latent_dim=2, hidden=(16,), pack=1)
    gan.fit(x, steps=20, batch_size=64, **QUIET)
    assert not bool(gan.encoder_fitted)
    det = AnomalyDetector(gan, score_options={"encoder": {"steps": 20}}).fit(x)
    assert det.score_name == "fanogan" and bool(gan.encoder_fitted)
    np.testing.assert_allclose(det.decision_scores_, gan.score(x).numpy(), rtol=1e-5)


def test_complexity_correction_undoes_the_preference_for_simple_inputs():
    # train on textured vectors; blank (constant) inputs sit at the density's centre and
    # get a higher likelihood than the training data, although they are out of distribution
    g = torch.Generator().manual_seed(0)
    train = torch.rand(500, 64, generator=g)
    normal = torch.rand(100, 64, generator=g)
    blank = torch.full((100, 64), 0.5) + 0.02 * torch.rand(100, 1, generator=g)
    flow = probgen.models.Flow(64, kind="maf", transforms=1, hidden=(32,))
    flow.fit(train, steps=100, lr=1e-2, **QUIET)
    labels = np.r_[np.zeros(100), np.ones(100)]
    test = torch.cat([normal, blank])
    plain = AnomalyDetector(flow).fit(train).decision_function(test)
    corrected = AnomalyDetector(flow, correction="complexity", compressor="zlib").fit(train).decision_function(test)
    assert roc_auc_score(labels, plain) < 0.2
    assert roc_auc_score(labels, corrected) > 0.95
    bits = input_complexity(test, "zlib")
    np.testing.assert_allclose(corrected, plain / np.log(2) - bits)


def test_likelihood_ratio_is_model_minus_background_and_fit_trains_the_background_on_perturbed_data():
    x = _blobs(200)
    opts = dict(steps=30, lr=1e-2, **QUIET)
    model = probgen.models.Flow(2, kind="maf", transforms=1, hidden=(8,))
    background = probgen.models.Flow(2, kind="maf", transforms=1, hidden=(8,))
    before = [p.clone() for p in background.parameters()]
    det = AnomalyDetector(model, correction="likelihood_ratio", background=background, fit_options=opts).fit(x)
    assert any(not torch.equal(a, b) for a, b in zip(before, background.parameters()))
    with torch.no_grad():
        expected = (background.log_prob(x) - model.log_prob(x)).numpy()
    np.testing.assert_allclose(det.decision_scores_, expected, rtol=1e-5, atol=1e-5)
    p = perturb(torch.zeros(10, 1000), rate=0.3, seed=0, binary=True)
    assert 0.1 < float(p.mean()) < 0.2  # 30% replaced by fair coin flips


def test_bad_input_gives_clear_errors(flow_detector):
    flow = flow_detector.model
    with pytest.raises(ValueError, match="X: expected examples of shape"):
        flow_detector.decision_function(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="X: contains NaN"):
        flow_detector.decision_function(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="X: expected at least one example"):
        flow_detector.decision_function(torch.zeros(0, 2))
    for bad in (0, 0.0, 0.6, -0.1, True, "5%"):
        with pytest.raises(ValueError, match="contamination"):
            AnomalyDetector(flow, contamination=bad)
    AnomalyDetector(flow, contamination=0.5)

    class Scoreless(probgen.Model):  # no log_prob, no score
        pass

    with pytest.raises(ValueError, match="has no anomaly score"):
        AnomalyDetector(Scoreless())
    with pytest.raises(ValueError, match="model: expected a probgen model"):
        AnomalyDetector(object())
    with pytest.raises(ValueError, match="score: expected"):
        AnomalyDetector(flow, score="entropy")
    with pytest.raises(ValueError, match="correction"):
        AnomalyDetector(probgen.models.Autoencoder(), correction="complexity")
    with pytest.raises(ValueError, match="background"):
        AnomalyDetector(flow, correction="likelihood_ratio")
    with pytest.raises(ValueError, match="call fit"):
        AnomalyDetector(flow).predict(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="'iwae' is the VAE"):
        AnomalyDetector(flow, score="iwae").fit(torch.zeros(3, 2))


def test_bench_quick_compares_probgen_and_pyod_on_every_data_set():
    from probgen.bench.anomaly import PEERS, run

    report = run(quick=True)
    suite = report.tables["suite: best generative detector vs best PyOD detector (ROC AUC)"]
    assert len(suite) == 3
    assert suite["probgen best"].str.startswith("probgen").all()
    assert all(name.split(" ")[0] in PEERS for name in suite["PyOD best"])
    assert ((suite[["probgen AUC", "PyOD AUC"]] > 0.5) & (suite[["probgen AUC", "PyOD AUC"]] <= 1)).all().all()
    digits = report.tables["one-class digits: mean over digits (fit+score s: per digit)"]
    assert set(PEERS) <= set(digits.index)
    assert {"probgen VAE (IWAE)", "probgen VAE + complexity (Serra)", "probgen VAE + likelihood ratio (Ren)",
            "probgen PixelCNN (exact -log p, binarized)", "probgen PixelCNN + complexity (Serra)",
            "probgen f-AnoGAN (GAN)"} <= set(digits.index)
    cancer = report.tables[next(k for k in report.tables if k.startswith("breast cancer"))]
    assert {"probgen Gaussian copula (exact -log p)", "probgen Gaussian copula, longer-tail probability",
            "COPOD"} <= set(cancer.index)


def test_bayesian_network_tables_are_scored_by_exact_log_likelihood_in_any_batch():
    from probgen.models.bayesnet import BayesianNetwork

    bn = BayesianNetwork.example("asia")
    data = bn.sample(300, seed=0)
    det = AnomalyDetector(bn, contamination=0.1, batch_size=7).fit(data)
    np.testing.assert_allclose(det.decision_scores_, -bn.log_prob(data).numpy(), rtol=1e-6)
    np.testing.assert_allclose(AnomalyDetector(bn, batch_size=1000).fit(data).decision_scores_, det.decision_scores_)
    # many rows share a configuration: ties at the threshold can only lower the flagged share
    assert 0 < det.labels_.mean() <= 0.1
