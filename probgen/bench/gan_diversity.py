"""Within-class diversity of the conditional GAN against the conditional VAE (8x8 digits).

For each digit class, 150 generated images of that class are compared with the real training
images of the class by k-nearest-neighbour precision / recall / coverage (``probgen.metrics``,
k = 5, on the 64 pixel values standardized by the class's real ones): *recall* and *coverage* fall when a
class's samples collapse onto a few images. Reported: the mean over the 10 classes, then over 3 seeds
(the fits run in two worker processes). Models: the conditional GAN of ``notebooks/gans.ipynb`` (hinge,
spectral norm, EMA) with today's default ``minibatch_distance=True`` (the critic sees each example's
distance to its nearest neighbour of the same class in its minibatch), the same with
``minibatch_distance=False`` (the previous default), ``ConditionalGAN``'s own defaults (non-saturating
loss, no spectral norm, no EMA), and the conditional VAE (``VAE(num_classes=10)``, Gaussian likelihood,
decoder means).
"""

from __future__ import annotations

__all__ = ["run", "per_class_quality", "CGAN", "MODELS", "GAN_STEPS", "VAE_STEPS"]

import time

import numpy as np
import pandas as pd
import torch

from ..core.random import resolve_device, seeded
from ..datasets import load
from ..metrics import precision_recall
from .harness import Report

#: the notebook's conditional GAN
CGAN = dict(num_classes=10, data_shape=(1, 8, 8), latent_dim=16, hidden=(256, 256), objective="hinge",
            spectral_norm=True, ema=0.99)
GAN_STEPS, VAE_STEPS = 2000, 1500
#: model name -> ConditionalGAN arguments (None: the conditional VAE)
MODELS = {
    "conditional GAN (notebook)": CGAN,
    "same, minibatch_distance=False": dict(CGAN, minibatch_distance=False),
    "ConditionalGAN() defaults": dict(num_classes=10, data_shape=(1, 8, 8), latent_dim=16, hidden=(256, 256)),
    "conditional VAE": None,
}


def per_class_quality(sample, x: torch.Tensor, y: torch.Tensor, n: int = 150, k: int = 5) -> dict:
    """Mean over classes of precision / recall / coverage of ``sample(n, label)`` against the real
    examples of that label (flattened pixels)."""
    rows = []
    for c in torch.unique(y).tolist():
        real = x[y == c].reshape(int((y == c).sum()), -1)
        fake = sample(n, c).reshape(n, -1).clamp(0, 1).cpu()
        rows.append(precision_recall(real, fake, k=k))
    return {key: float(np.mean([r[key] for r in rows])) for key in ("precision", "recall", "coverage")}


def _fit_one(name: str, seed: int, quick: bool, device) -> dict:
    from ..models.autoencoders.vae import VAE
    from ..models.gan.gan import ConditionalGAN

    data = load("digits", split="train")
    start = time.process_time()
    with seeded(seed):
        if MODELS[name] is None:
            model = VAE(data_shape=(1, 8, 8), latent_dim=16, num_classes=10, likelihood="gaussian")
        else:
            model = ConditionalGAN(**MODELS[name])
    steps = 10 if quick else (VAE_STEPS if name == "conditional VAE" else GAN_STEPS)
    lr = 2e-3 if name == "conditional VAE" else 1e-3
    model.fit(data, steps=steps, batch_size=128, lr=lr, seed=seed, progress=False, device=device)
    seconds = time.process_time() - start
    scores = per_class_quality(lambda n, c: model.sample(n, seed=100 * seed + c, y=c), data.x, data.y,
                               n=20 if quick else 150)
    return {"model": name, "seed": seed, **scores, "train_cpu_s": seconds}


def _fit_job(job: tuple) -> dict:
    return _fit_one(*job)


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("gan-diversity", "conditional GAN within-class diversity vs conditional VAE (digits)")
    dev = resolve_device(device)
    seeds = [0] if quick else [0, 1, 2]
    names = tuple(MODELS)
    jobs = [(name, seed, quick, dev) for name in names for seed in seeds]
    if quick or dev.type != "cpu":
        rows = [_fit_one(*job) for job in jobs]
    else:  # independent fits, one thread each, in two worker processes
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            rows = list(pool.map(_fit_job, jobs))
    frame = pd.DataFrame(rows)
    mean = frame.groupby("model", sort=False)[["precision", "recall", "coverage", "train_cpu_s"]].mean()
    vae = mean.loc["conditional VAE"]
    for name in names[:-1]:
        for metric in ("recall", "coverage", "precision"):
            report.add(f"{name} ({len(seeds)} seeds)", f"per-class {metric}", mean.loc[name, metric], vae[metric],
                       baseline_name="conditional VAE", goal=">= cVAE" if metric != "precision" else "")
    report.table("mean over classes and seeds", mean)
    report.table("per seed", frame.set_index(["model", "seed"]))
    report.note(f"conditional GAN (notebook) = ConditionalGAN({', '.join(f'{k}={v}' for k, v in CGAN.items())}), "
                f"{GAN_STEPS} steps, batch 128, lr 1e-3, for every GAN; "
                f"conditional VAE: VAE(latent_dim=16, num_classes=10, likelihood='gaussian'), {VAE_STEPS} steps, "
                "lr 2e-3, decoder means; metrics per class against that class's training digits, k=5, 150 samples")
    return report
