"""RBMs on digits against scikit-learn's BernoulliRBM, and the binarized-MNIST likelihood row."""

from __future__ import annotations

__all__ = ["run", "likelihood_rows"]

import time

import numpy as np
import pandas as pd
import torch

from .harness import Report, time_interleaved

# scikit-learn's example settings (plot_rbm_logistic_classification): 100 hidden units,
# learning rate 0.06, minibatches of 10, PCD with one Gibbs step, no momentum
SETTINGS = {"num_hidden": 100, "lr": 0.06, "batch_size": 10}


def _digits():
    from ..datasets import load

    train, test = load("digits_binary", split="train"), load("digits_binary", split="test")
    return train.flat(), train.y.numpy(), test.flat(), test.y.numpy()


def _logistic_accuracy(f_train, y_train, f_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(f_train, y_train)
    return float(clf.score(f_test, y_test))


def _digits_cases(report: Report, quick: bool) -> None:
    from sklearn.neural_network import BernoulliRBM

    from ..models.rbm.rbm import RBM

    x, y, xt, yt = _digits()
    epochs, repeats = (2, 1) if quick else (10, 5)

    def fit_ours():
        model = RBM(num_visible=64, num_hidden=SETTINGS["num_hidden"], method="pcd", k=1, momentum=0.0)
        model.fit(x, epochs=epochs, batch_size=SETTINGS["batch_size"], lr=SETTINGS["lr"], progress=False, seed=0)
        return model

    def fit_sklearn():
        model = BernoulliRBM(n_components=SETTINGS["num_hidden"], learning_rate=SETTINGS["lr"],
                             batch_size=SETTINGS["batch_size"], n_iter=epochs, random_state=0)
        return model.fit(x_np)

    x_np = x.numpy()
    # CPU time of this process (all threads) and wall time, the two fits alternating so that both
    # see the same load, after one untimed round (imports, allocator); the median of the repeats
    # (seeded: every repeat fits the same weights)
    medians, last = time_interleaved({"probgen": fit_ours, "sklearn": fit_sklearn}, repeat=repeats, warmup=1,
                                     clocks={"cpu": time.process_time, "wall": time.perf_counter})
    ours, sk = last["probgen"], last["sklearn"]
    t_ours, t_sk = medians["probgen"]["cpu"] / epochs, medians["sklearn"]["cpu"] / epochs
    w_ours, w_sk = medians["probgen"]["wall"] / epochs, medians["sklearn"]["wall"] / epochs
    report.add("digits (binarized), 100 hidden, PCD-1", "CPU time per epoch", t_ours * 1e3, t_sk * 1e3,
               baseline_name="sklearn BernoulliRBM", unit="ms", goal="<= 1x")

    # the same AIS estimator for both sets of weights (sklearn has no likelihood of its own)
    their = RBM(num_visible=64, num_hidden=SETTINGS["num_hidden"])
    their.load_state_dict({"W": torch.tensor(sk.components_.T, dtype=torch.float32),
                           "b": torch.tensor(sk.intercept_visible_, dtype=torch.float32),
                           "c": torch.tensor(sk.intercept_hidden_, dtype=torch.float32),
                           "base_bias": ours.base_bias.clone()})
    ais = {"num_chains": 50 if quick else 100, "num_betas": 500 if quick else 10_000}
    ll = {}
    for name, model in (("probgen", ours), ("sklearn", their)):
        log_z, se, _ = model.log_partition("ais", **ais)
        ll[name] = (float(model.free_energy(xt).mean()) + log_z, se)
    report.add("digits test", "AIS negative log-likelihood per image", ll["probgen"][0], ll["sklearn"][0],
               baseline_name="sklearn BernoulliRBM weights, same AIS", unit="nats", goal="<= 1x")

    acc = {"probgen": _logistic_accuracy(ours.transform(x).numpy(), y, ours.transform(xt).numpy(), yt),
           "sklearn": _logistic_accuracy(sk.transform(x.numpy()), y, sk.transform(xt.numpy()), yt),
           "raw pixels": _logistic_accuracy(x.numpy(), y, xt.numpy(), yt)}
    report.add("digits test", "features + logistic regression accuracy", acc["probgen"], acc["sklearn"],
               baseline_name="sklearn BernoulliRBM features", goal=">= 1x")
    report.add("digits test", "features + logistic regression accuracy", acc["probgen"], acc["raw pixels"],
               baseline_name="raw pixels", goal="> 1x")
    report.table("digits", pd.DataFrame({
        "CPU time per epoch (ms)": [t_ours * 1e3, t_sk * 1e3, np.nan],
        "wall time per epoch (ms)": [w_ours * 1e3, w_sk * 1e3, np.nan],
        "AIS test NLL (nats)": [ll["probgen"][0], ll["sklearn"][0], np.nan],
        "AIS std. error": [ll["probgen"][1], ll["sklearn"][1], np.nan],
        "logistic accuracy": [acc["probgen"], acc["sklearn"], acc["raw pixels"]]},
        index=["probgen RBM", "sklearn BernoulliRBM", "raw pixels"]))
    report.note(f"digits: probgen digits_binary split ({len(x)} train / {len(xt)} test), {epochs} epochs, "
                f"settings {SETTINGS}; times: median of {repeats} alternating fits, torch threads "
                f"{torch.get_num_threads()}; AIS {ais['num_chains']} chains x {ais['num_betas']} temperatures; "
                "logistic regression C=10 on every feature set")


def likelihood_rows(quick: bool = False) -> list[dict]:
    """Test NLL of an RBM on binarized mnist5k, by AIS (for the likelihood table).

    The model: 500 hidden units trained by persistent CD (k = 1; 40 epochs, minibatches of
    20, lr 0.01, momentum 0.9, weight decay 1e-4), a much cheaper recipe than the published
    CD-25 one, so that it trains in a few CPU minutes.
    """
    from ..datasets import load
    from ..models.rbm.rbm import RBM

    x = load("mnist5k_binary", split="train").flat()
    xt = load("mnist5k_binary", split="test").flat()
    hidden, epochs, k = (50, 2, 1) if quick else (500, 40, 1)
    rbm = RBM(num_visible=784, num_hidden=hidden, method="pcd", k=k, momentum=0.9, weight_decay=1e-4)
    start = time.perf_counter()
    rbm.fit(x, epochs=epochs, batch_size=20, lr=0.01, progress=False, seed=0)
    train_s = time.perf_counter() - start
    chains, betas = (20, 200) if quick else (100, 14_500)  # 14,500 temperatures as in Salakhutdinov & Murray
    log_z, se, _ = rbm.log_partition("ais", num_chains=chains, num_betas=betas, seed=0)
    nll = float(rbm.free_energy(xt).mean()) + log_z
    return [{"model": f"RBM, {hidden} hidden, PCD-{k} ({epochs} epochs, trained in {train_s:.0f}s on CPU)", "nll_nats": nll,
             "k_or_method": f"AIS, {chains} chains x {betas} temperatures (log Z std. error {se:.2f})",
             "protocol": f"mnist5k_binary: {len(x)} train / {len(xt)} test images (not the full MNIST test set)"}]


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("rbm", "RBM on digits vs scikit-learn BernoulliRBM; AIS likelihood on binarized mnist5k")
    _digits_cases(report, quick)
    rows = likelihood_rows(quick)
    report.table("binarized MNIST test NLL (nats)", pd.DataFrame(rows + [
        {"model": "RBM, 500 hidden, CD-25 (Salakhutdinov & Murray 2008)", "nll_nats": 86.34,
         "k_or_method": "AIS", "protocol": "published, full MNIST test set"}]).set_index("model"))
    report.note("ratio = probgen / baseline; time and NLL: lower is better, accuracy: higher is better")
    return report
