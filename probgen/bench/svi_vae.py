"""The VAE case of ``probgen bench svi``: one SVI training step at batch 256 against a hand-written torch loop.

Both sides train the same networks (copied weights) on the same binarized digits
with the same single-particle ELBO (reparameterised z, Monte Carlo KL, as Pyro's
``Trace_ELBO`` computes it) and Adam; probgen's side is ``VAE.fit`` itself (the svi
engine, its minibatching and its history), the baseline a plain torch loop.
"""

from __future__ import annotations

__all__ = ["add_cases", "hand_written_steps"]

import time

import torch
import torch.nn.functional as F
from torch.distributions import Normal

from ..core.random import seeded
from .harness import Report


def hand_written_steps(encoder, decoder, x: torch.Tensor, steps: int, batch_size: int = 256, lr: float = 1e-3,
                       seed: int = 0) -> float:
    """Train ``encoder``/``decoder`` for ``steps`` minibatches by hand; returns the wall time."""
    params = [*encoder.parameters(), *decoder.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(x)
    start = time.perf_counter()
    order, pos = torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=g), 0
        batch = x[order[pos:pos + batch_size].to(x.device)]
        pos += batch_size
        opt.zero_grad(set_to_none=True)
        loc, raw = encoder(batch).chunk(2, -1)
        scale = F.softplus(raw) + 1e-4
        q = Normal(loc, scale)
        z = q.rsample()
        logits = decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, batch, reduction="none").reshape(len(batch), -1).sum(-1)
        elbo = log_px + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        loss = -elbo.mean()
        loss.backward()
        opt.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _case(report: Report, quick: bool, device: torch.device, network: str, hidden: tuple,
          compiled: bool | str = "auto") -> None:
    from ..datasets import load
    from ..models.autoencoders.autoencoder import Decoder, Encoder
    from ..models.autoencoders.vae import VAE

    x = load("mnist5k_binary", split="train").x  # (n, 1, 28, 28)
    steps = 10 if quick else 40
    repeats = 1 if quick else 3
    with seeded(0):  # the initial weights fit(seed=0) draws (it re-draws an untouched model's under its seed)
        model = VAE(data_shape=x.shape[1:], latent_dim=16, network=network, hidden=hidden).to(device)
    # the baseline trains plain-torch networks of the same classes, with the same initial weights
    encoder = Encoder(x.shape[1:], 32, network, hidden).to(device)
    decoder = Decoder(16, x.shape[1:], network, hidden).to(device)
    encoder.load_state_dict(model.encoder.state_dict())
    decoder.load_state_dict(model.decoder.state_dict())
    x_dev = x.to(device)
    # warm-up (with compiled=True it also traces: later fits of the same model reuse the graphs)
    # (twice: a fit's first loss call runs in the mode the previous fit left, eval, then in train mode)
    for _ in range(2):
        model.fit(x, steps=3, batch_size=256, progress=False, seed=0, device=device, compiled=compiled)
    hand_written_steps(encoder, decoder, x_dev, 3)
    t_probgen, t_torch = [], []
    # on CPU, CPU seconds of this process (a shared machine's load inflates wall time unevenly); wall time on a GPU
    cpu = torch.device(device).type == "cpu"
    for r in range(repeats):
        start = time.process_time()
        result = model.fit(x, steps=steps, batch_size=256, progress=False, seed=r, device=device, compiled=compiled)
        t_probgen.append((time.process_time() - start if cpu else result.wall_time) / steps)
        start = time.process_time()
        wall = hand_written_steps(encoder, decoder, x_dev, steps, seed=r)
        t_torch.append((time.process_time() - start if cpu else wall) / steps)
    t_p, t_t = sorted(t_probgen)[len(t_probgen) // 2], sorted(t_torch)[len(t_torch) // 2]
    label = "" if compiled == "auto" else f", compiled={compiled}"
    report.add(f"VAE {network} {'-'.join(map(str, hidden))}, mnist5k 28x28, batch 256{label}",
               "CPU time per SVI step" if cpu else "time per SVI step",
               t_p * 1e3, t_t * 1e3, baseline_name="hand-written torch ELBO loop", unit="ms", goal="<= 1.15x")


def add_cases(report: Report, quick: bool, device: torch.device) -> None:
    """Add the VAE rows to the ``svi`` bench report."""
    _case(report, quick, device, "mlp", (512, 256))
    _case(report, quick, device, "mlp", (512, 256), compiled=True)
    if not quick:
        _case(report, quick, device, "conv", (256,))
        _case(report, quick, device, "conv", (256,), compiled=True)
