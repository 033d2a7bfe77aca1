"""Throughput of a data-parallel fit: 1 process against N processes (gloo on CPU, or CUDA).

The same model, data, global batch and number of steps are trained once in this
process and once on ``N`` local worker processes (``fit(..., distributed=N)``);
the table gives examples per second of the training loop itself (process start-up
excluded, reported separately). On a CPU machine the processes share its cores,
so the gain is bounded by how many cores one process leaves idle.
"""

from __future__ import annotations

import os
import time

import torch

from ..core.random import resolve_device
from .harness import Report


def _vae_case(quick: bool):
    from ..datasets import load
    from ..models.autoencoders.vae import VAE

    data = load("mnist5k_binary", split="train")
    steps = 10 if quick else 60
    return (lambda: VAE(data_shape=(1, 28, 28), latent_dim=16, hidden=(512, 256))), data.x, steps, 256


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("scale", "data-parallel training throughput: 1 process vs N processes")
    dev = resolve_device(device)
    make, x, steps, batch = _vae_case(quick)
    cores = os.cpu_count() or 1
    # one process with all the cores it may use, against N processes with one core each (CPU)
    single = make()
    threads = torch.get_num_threads()
    result = single.fit(x, steps=steps, batch_size=batch, lr=1e-3, seed=0, progress=False, device=dev)
    t1 = result.wall_time
    report.add(f"VAE on mnist5k_binary, batch {batch}, {steps} steps", "examples/s, 1 process",
               steps * batch / t1, unit="ex/s")
    if dev.type == "cuda":
        report.note("GPU: the multi-GPU run needs torchrun (see README); the single-GPU figure is shown above")
        return report
    for n in ([2] if quick else sorted({2, min(4, max(2, cores))})):
        multi = make()
        start = time.perf_counter()
        res = multi.fit(x, steps=steps, batch_size=batch, lr=1e-3, seed=0, progress=False, distributed=n)
        total = time.perf_counter() - start
        report.add(f"VAE on mnist5k_binary, batch {batch}, {steps} steps", f"examples/s, {n} processes (gloo)",
                   steps * batch / res.wall_time, steps * batch / t1, baseline_name="1 process", unit="ex/s",
                   goal="> 1x where cores allow")
        report.note(f"{n} processes: {total - res.wall_time:.1f}s of process start-up and transfer on top of "
                    f"{res.wall_time:.1f}s of training")
    report.note(f"machine has {cores} cores; the 1-process run used {threads} torch threads, each worker "
                f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}")
    report.note("ratio = N-process throughput / 1-process throughput (higher is better)")
    return report
