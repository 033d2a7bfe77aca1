"""Networks that take a diffusion time step: sinusoidal embedding, an MLP for vectors, a small U-Net for images."""

from __future__ import annotations

__all__ = ["sinusoidal_embedding", "TimeMLP", "UNet"]

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style features of integer or real time steps ``t`` (shape ``(n,)``) -> ``(n, dim)``.

    Example:
        >>> sinusoidal_embedding(torch.tensor([0, 10]), 8).shape
        torch.Size([2, 8])
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return nn.functional.pad(emb, (0, dim % 2))


class _Conditioning(nn.Module):
    """Time embedding plus an optional label embedding (index ``num_classes`` = no label)."""

    def __init__(self, dim: int, num_classes: int | None):
        super().__init__()
        self.dim = dim
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = None if num_classes is None else nn.Embedding(num_classes + 1, dim)

    def forward(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        emb = self.time(sinusoidal_embedding(t, self.dim))
        if self.label is not None:
            if y is None:
                y = torch.full((len(t),), self.label.num_embeddings - 1, dtype=torch.long, device=t.device)
            emb = emb + self.label(y)
        return emb


class TimeMLP(nn.Module):
    """Residual MLP ``f(x_t, t, y)`` for 2-D and tabular diffusion.

    Example:
        >>> TimeMLP(2, hidden=32)(torch.zeros(5, 2), torch.arange(5)).shape
        torch.Size([5, 2])
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, num_classes: int | None = None):
        super().__init__()
        self.cond = _Conditioning(hidden, num_classes)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                                  nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.cond(t, y)
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(min(8, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """A small U-Net with time (and label) embedding, for images of even height and width.

    Two resolutions (H and H/2) with one residual block each way and a middle
    block at H/4 when H is divisible by 4. Sized for 8x8 and 28x28 digits on a CPU.

    Example:
        >>> UNet(1, channels=16)(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2])).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, num_classes: int | None = None):
        super().__init__()
        c, emb = channels, 4 * channels
        self.cond = _Conditioning(emb, num_classes)
        self.inp = nn.Conv2d(in_channels, c, 3, padding=1)
        self.down1 = _ResBlock(c, c, emb)
        self.pool1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.down2 = _ResBlock(2 * c, 2 * c, emb)
        self.pool2 = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)
        self.mid = _ResBlock(2 * c, 2 * c, emb)
        self.up2 = nn.ConvTranspose2d(2 * c, 2 * c, 4, stride=2, padding=1)
        self.dec2 = _ResBlock(4 * c, 2 * c, emb)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.dec1 = _ResBlock(2 * c, c, emb)
        self.out = nn.Sequential(nn.GroupNorm(min(8, c), c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.cond(t, y)
        h1 = self.down1(self.inp(x), emb)
        h2 = self.down2(self.pool1(h1), emb)
        m = self.mid(self.pool2(h2), emb)
        u2 = self.up2(m)[..., :h2.shape[-2], :h2.shape[-1]]
        d2 = self.dec2(torch.cat([u2, h2], 1), emb)
        u1 = self.up1(d2)[..., :h1.shape[-2], :h1.shape[-1]]
        d1 = self.dec1(torch.cat([u1, h1], 1), emb)
        return self.out(d1)
