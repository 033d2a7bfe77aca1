"""``probgen bench vae``: what autoencoders and VAEs are good for, each beside a classic baseline.

* denoising: PSNR of a denoising autoencoder on noisy test digits vs the noisy input
  and the best Gaussian blur (its width chosen on the validation split);
* anomaly detection: a VAE trained on every digit but one, ROC AUC of its score
  (negative ELBO) on the held-out digit vs sklearn's IsolationForest and PCA
  reconstruction error (same training data, same number of components as the code);
* features: logistic regression on VAE codes vs raw pixels and PCA of the same size;
* conditional VAE: how often samples of class c are classified as c by a digit
  classifier trained on real data;
* likelihood: VAE test NLL on binarized mnist5k with k = 1,000 importance samples
  (``likelihood_rows``), next to the published full-MNIST figures.
"""

from __future__ import annotations

__all__ = ["run", "likelihood_rows"]

import functools
import time

import numpy as np
import pandas as pd
import torch

from ..core.random import resolve_device
from .harness import Report

_PUBLISHED_VAE, _PUBLISHED_IWAE = 86.76, 82.90


def _setting(quick: bool) -> dict:
    if quick:
        return {"data": "digits", "latent": 8, "hidden": (64,), "steps": 25, "small": (64,), "anomaly_digits": [0],
                "anomaly_steps": 25, "denoise_steps": 25, "cvae_steps": 25, "k": 50, "lr": 1e-2, "batch": 128}
    # the main VAE (likelihood, features) is the larger model; the others are smaller to keep the bench short
    return {"data": "mnist5k", "latent": 32, "hidden": (512, 256), "steps": 2500, "small": (256,),
            "anomaly_digits": list(range(10)), "anomaly_steps": 300, "denoise_steps": 800, "cvae_steps": 1500,
            "k": 1000, "lr": 1e-3, "batch": 128}


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.reshape(len(x), -1).cpu().numpy()


@functools.lru_cache(maxsize=2)
def _main_vae(quick: bool, device: str = "cpu"):
    """The unconditional Bernoulli VAE on the binarized train split (early stopping on val)."""
    from ..datasets import load
    from ..models.autoencoders.vae import VAE

    s = _setting(quick)
    tr, va = load(f"{s['data']}_binary", split="train"), load(f"{s['data']}_binary", split="val")
    model = VAE(latent_dim=s["latent"], hidden=s["hidden"])
    start = time.perf_counter()
    result = model.fit(tr.x, steps=s["steps"], batch_size=s["batch"], lr=s["lr"], validation=va.x, patience=4,
                       eval_every=None if quick else 100, progress=False, seed=0, device=device)
    return model, result, time.perf_counter() - start


def likelihood_rows(quick: bool = False, device: str = "cpu") -> list[dict]:
    """Test NLL (nats) of probgen's VAE on ``mnist5k_binary`` (digits_binary when quick), k = 1,000.

    Rows: model, nll_nats, k_or_method, protocol.
    """
    from ..datasets import load

    s = _setting(quick)
    model, result, seconds = _main_vae(quick, str(resolve_device(device)))
    test = load(f"{s['data']}_binary", split="test")
    elbo = -float(model.log_prob(test.x, seed=0).mean())
    iwae = -float(model.log_prob(test.x, num_particles=s["k"], seed=0).mean())
    n_train = len(load(f"{s['data']}_binary", split="train"))
    net = f"MLP {'-'.join(map(str, s['hidden']))}, z={s['latent']}"
    protocol = (f"{s['data']}_binary test split ({len(test)} images); trained on its {n_train}-image train split, "
                f"{result.info['steps']} Adam steps at batch {s['batch']} ({seconds:.0f} s), early stopping on val; "
                "published figures: full binarized MNIST (60k train / 10k test)")
    return [
        {"model": f"VAE, probgen ({net})", "nll_nats": elbo, "k_or_method": "ELBO (k=1)", "protocol": protocol},
        {"model": f"VAE, probgen ({net})", "nll_nats": iwae, "k_or_method": f"IWAE bound, k={s['k']}",
         "protocol": protocol},
    ]


def _denoising(report: Report, s: dict, quick: bool, device) -> None:
    from ..datasets import load
    from ..models.autoencoders.autoencoder import Autoencoder
    from ..metrics.images import psnr
    from ..tasks.denoise import add_noise, gaussian_blur

    tr, va, te = (load(s["data"], split=k).x for k in ("train", "val", "test"))
    level = 0.4
    dae = Autoencoder(latent_dim=s["latent"] * 2, hidden=s["small"], corruption="gaussian", noise_level=level)
    dae.fit(tr, steps=s["denoise_steps"], batch_size=s["batch"], lr=max(s["lr"], 2e-3), progress=False, seed=0,
            device=device)
    noisy_val, noisy = add_noise(va, "gaussian", level, seed=1), add_noise(te, "gaussian", level, seed=2)
    sigmas = [0.5, 0.7, 1.0, 1.4, 2.0]
    best = max(sigmas, key=lambda sg: float(psnr(va, gaussian_blur(noisy_val, sg)).mean()))
    ours = float(psnr(te, dae.reconstruct(noisy).cpu()).mean())
    case = f"denoise {s['data']} test, Gaussian noise sd {level}"
    report.add(case, "PSNR dB (higher better)", ours, float(psnr(te, noisy).mean()), baseline_name="noisy input",
               unit="dB", goal="> noisy")
    report.add(case, "PSNR dB (higher better)", ours, float(psnr(te, gaussian_blur(noisy, best)).mean()),
               baseline_name=f"Gaussian blur (sd {best} px, best on val)", unit="dB", goal="> blur")


def _anomaly(report: Report, s: dict, quick: bool, device) -> None:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    from ..datasets import load
    from ..models.autoencoders.vae import VAE

    tr, te = load(f"{s['data']}_binary", split="train"), load(f"{s['data']}_binary", split="test")
    rows = []
    for digit in s["anomaly_digits"]:
        x_train = tr.x[tr.y != digit]
        labels = (te.y == digit).numpy().astype(int)
        model = VAE(latent_dim=s["latent"] // 2, hidden=s["small"])
        model.fit(x_train, steps=s["anomaly_steps"], batch_size=s["batch"], lr=max(s["lr"], 2e-3),
                  progress=False, seed=0, device=device)
        vae_auc = roc_auc_score(labels, model.score(te.x).cpu().numpy())
        forest = IsolationForest(random_state=0).fit(_flat(x_train))
        forest_auc = roc_auc_score(labels, -forest.score_samples(_flat(te.x)))
        pca = PCA(n_components=s["latent"] // 2, random_state=0).fit(_flat(x_train))
        recon = pca.inverse_transform(pca.transform(_flat(te.x)))
        pca_auc = roc_auc_score(labels, ((recon - _flat(te.x)) ** 2).sum(1))
        rows.append({"held-out digit": digit, "VAE -ELBO": vae_auc, "IsolationForest": forest_auc,
                     "PCA recon. error": pca_auc})
    frame = pd.DataFrame(rows).set_index("held-out digit")
    case = f"anomaly: held-out digit(s) {s['anomaly_digits'] if quick else '0-9, mean'}, {s['data']}_binary test"
    mean = frame.mean()
    report.add(case, "ROC AUC", float(mean["VAE -ELBO"]), float(mean["IsolationForest"]),
               baseline_name="sklearn IsolationForest", goal="> baseline")
    report.add(case, "ROC AUC", float(mean["VAE -ELBO"]), float(mean["PCA recon. error"]),
               baseline_name=f"PCA ({s['latent'] // 2} comp.) reconstruction error", goal="> baseline")
    report.table("anomaly ROC AUC by held-out digit (one model per digit)", frame)


def _features(report: Report, s: dict, quick: bool, device) -> None:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    from ..datasets import load

    tr, te = load(f"{s['data']}_binary", split="train"), load(f"{s['data']}_binary", split="test")
    model, _, _ = _main_vae(quick, str(device))

    def accuracy(f_train, f_test):
        clf = LogisticRegression(max_iter=3000).fit(f_train, tr.y.numpy())
        return float(clf.score(f_test, te.y.numpy()))

    codes = accuracy(model.encode(tr.x).cpu().numpy(), model.encode(te.x).cpu().numpy())
    pca = PCA(n_components=s["latent"], random_state=0).fit(_flat(tr.x))
    case = f"features + logistic regression, {s['data']}_binary test"
    report.add(case, "accuracy", codes, accuracy(_flat(tr.x), _flat(te.x)),
               baseline_name=f"raw pixels ({_flat(tr.x).shape[1]})")
    report.add(case, "accuracy", codes, accuracy(pca.transform(_flat(tr.x)), pca.transform(_flat(te.x))),
               baseline_name=f"PCA ({s['latent']} comp., = code size)")


def _digit_classifier(s: dict):
    """probgen's digit classifier when present (mnist), else a logistic regression on real train images."""
    from ..datasets import load

    if s["data"] == "mnist5k":
        try:
            from ..metrics import digit_classifier

            clf = digit_classifier()
            return (lambda x: clf.predict(x).cpu().numpy()), "probgen.metrics.digit_classifier (CNN on real mnist5k)"
        except (ImportError, AttributeError):
            pass
    from sklearn.linear_model import LogisticRegression

    tr = load(s["data"], split="train")
    clf = LogisticRegression(max_iter=3000).fit(_flat(tr.x), tr.y.numpy())
    return (lambda x: clf.predict(_flat(x))), f"logistic regression on real {s['data']} train"


def _conditional(report: Report, s: dict, quick: bool, device) -> None:
    from ..datasets import load
    from ..models.autoencoders.vae import VAE

    tr = load(f"{s['data']}_binary", split="train")
    model = VAE(latent_dim=2, hidden=s["small"], num_classes=10)  # a small code leaves the class to the label
    model.fit(tr, steps=s["cvae_steps"], batch_size=s["batch"], lr=max(s["lr"], 2e-3), progress=False, seed=0,
              device=device)
    predict, name = _digit_classifier(s)
    y = torch.arange(10).repeat_interleave(20 if quick else 100)
    samples = model.sample(len(y), seed=0, y=y).cpu()
    accuracy = float((predict(samples) == y.numpy()).mean())
    real = load(s["data"], split="test")
    real_accuracy = float((predict(real.x) == real.y.numpy()).mean())
    report.add(f"conditional VAE samples (means), {len(y)} = {len(y) // 10} per class", "accuracy as class c",
               accuracy, real_accuracy, baseline_name=f"{name}, on real test digits", goal=">= 0.90")


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("vae", "autoencoders and VAEs against classic baselines")
    dev = resolve_device(device)
    s = _setting(quick)
    start = time.perf_counter()
    _denoising(report, s, quick, dev)
    _anomaly(report, s, quick, dev)
    _features(report, s, quick, dev)
    _conditional(report, s, quick, dev)
    rows = likelihood_rows(quick, str(dev))
    iwae = rows[-1]
    report.add(f"VAE test NLL, {s['data']}_binary, {iwae['k_or_method']}", "nats (lower better)", iwae["nll_nats"],
               _PUBLISHED_VAE if not quick else None,
               baseline_name="" if quick else "published VAE 86.76 (Burda 2016, full MNIST: other split)", unit="nats")
    table = pd.DataFrame(rows + [
        {"model": "VAE, 1 stochastic layer (Burda et al. 2016)", "nll_nats": _PUBLISHED_VAE,
         "k_or_method": "k=5000", "protocol": "full binarized MNIST (published)"},
        {"model": "IWAE, 2 layers, k=50 (Burda et al. 2016)", "nll_nats": _PUBLISHED_IWAE,
         "k_or_method": "k=5000", "protocol": "full binarized MNIST (published)"},
    ]).set_index("model")
    report.table("test NLL (nats)", table[["nll_nats", "k_or_method"]])
    report.note(rows[0]["protocol"])
    report.note(f"data: {s['data']} (quick runs use the 8x8 digits); total {time.perf_counter() - start:.0f} s")
    return report
