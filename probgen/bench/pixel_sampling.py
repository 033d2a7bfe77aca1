"""PixelCNN / PixelRNN sampling: cached (each new pixel costs only its own work) vs naive
(the whole network re-run for every pixel), on 28x28 images; plus the likelihood rows.

``run`` times both samplers on the same seed and checks they return the same images.
``likelihood_rows`` trains PixelCNN and PixelRNN on binarized mnist5k and reports the
exact test negative log-likelihood in nats (for the README likelihood table).
"""

from __future__ import annotations

__all__ = ["run", "likelihood_rows"]

import time

import pandas as pd
import torch

from ..core.random import resolve_device
from .harness import Report


def _models(quick: bool):
    from ..models.pixel import PixelCNN, PixelRNN

    size = (1, 8, 8) if quick else (1, 28, 28)
    return [
        ("PixelCNN (gated, 16 ch x 4 blocks)", PixelCNN(size, channels=16, layers=4)),
        ("PixelRNN Row LSTM (16 x 2 layers)", PixelRNN(size, layer="row", hidden=16, layers=2)),
        ("PixelRNN Diagonal BiLSTM (16 x 1 layer)", PixelRNN(size, layer="diagonal", hidden=16, layers=1)),
    ]


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("pixel-sampling", "cached vs naive autoregressive sampling (same seed, same images)")
    dev = resolve_device(device)
    n = 4 if quick else 8
    for name, model in _models(quick):
        torch.manual_seed(0)  # untrained weights, fixed: sampling cost does not depend on training
        model.to(dev).eval()
        h, w = model.data_shape[1:]
        start = time.perf_counter()
        cached = model.sample(n, seed=0, cached=True)
        t_cached = time.perf_counter() - start
        start = time.perf_counter()
        naive = model.sample(n, seed=0, cached=False)
        t_naive = time.perf_counter() - start
        same = bool(torch.equal(cached, naive))
        case = f"{name}, {n} images {h}x{w}"
        report.add(case, "sampling time", t_cached, t_naive, baseline_name="naive (full re-run per pixel)",
                   unit="s", goal="<= 0.1x")
        report.add(case, "speed-up", t_naive / t_cached, unit="x", goal=">= 10")
        report.add(case, "cached == naive samples", float(same), unit="bool", goal="1")
    report.note("ratio = cached time / naive time (lower is better); the samplers share the seed's uniforms")
    return report


def likelihood_rows(quick: bool = False, device: str = "cpu", cpu_budget_s: float | None = None,
                    models: list[str] | None = None) -> list[dict]:
    """Exact test NLL (nats) of PixelCNN and PixelRNN on binarized mnist5k.

    Trained on ``split="train"`` (4,000 images) with early stopping on ``split="val"``
    (500), evaluated on ``split="test"`` (500). Each model's training is capped at
    ``cpu_budget_s`` seconds of process CPU time, validation included (default 200; quick:
    a few steps on 128 images, for the test suite). ``models`` picks rows by name (default all).
    """
    from ..datasets import load
    from ..models.pixel import PixelCNN, PixelRNN

    dev = resolve_device(device)
    train, val, test = (load("mnist5k_binary", split=s) for s in ("train", "val", "test"))
    budget = cpu_budget_s if cpu_budget_s is not None else (2.0 if quick else 200.0)
    if quick:
        train, val, test = train.x[:128], val.x[:32], test.x[:32]
    else:
        train, val, test = train.x, val.x, test.x
    specs = [
        ("PixelCNN", "gated, 16 ch x 4 blocks", lambda: PixelCNN(channels=16, layers=4)),
        ("PixelRNN (Row LSTM)", "16 ch x 2 layers", lambda: PixelRNN(layer="row", hidden=16, layers=2)),
        ("PixelRNN (Diagonal BiLSTM)", "16 ch x 1 layer", lambda: PixelRNN(layer="diagonal", hidden=16, layers=1)),
    ]
    rows = []
    for label, arch, make in specs:
        if models is not None and label not in models:
            continue
        torch.manual_seed(0)
        model = make()
        cpu0, wall0 = time.process_time(), time.perf_counter()

        def over_budget(step, record, m, cpu0=cpu0):
            return time.process_time() - cpu0 > budget

        result = model.fit(train, epochs=1 if quick else 20, batch_size=32, lr=3e-3, validation=val, patience=4,
                           eval_every=None if quick else 50, callbacks=[over_budget], device=dev, progress=False,
                           seed=0)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        nll = float(-model.log_prob(test.to(dev)).mean())
        steps = len(result.history)
        rows.append({"model": label, "nll_nats": nll,
                     "k_or_method": f"exact ({arch}; {steps} steps of 32, {cpu:.0f} CPU-s / {wall:.0f} s wall)",
                     "protocol": f"mnist5k_binary: train {len(train)}, early stop on val {len(val)}, "
                                 f"test {len(test)} images (published: full MNIST, 10,000 test)"})
    return rows


def likelihood_table(quick: bool = False) -> pd.DataFrame:
    """``likelihood_rows`` as a DataFrame (convenience for notebooks)."""
    return pd.DataFrame(likelihood_rows(quick))
