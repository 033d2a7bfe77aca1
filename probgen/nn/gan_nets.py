"""Generator and critic networks for the GAN families (vectors and small images)."""

from __future__ import annotations

__all__ = ["Generator", "Critic", "UNet", "PatchCritic", "add_spectral_norm", "pack", "use_conv", "nearest_distance"]

import math
from typing import Sequence

import torch
from torch import nn

from ..core.rows import flat_rows
from .conv import ConvDecoder, ConvEncoder
from .mlp import MLP, activation


def add_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectrally normalise every ``Linear`` / ``Conv2d`` weight in ``module`` (Miyato et al. 2018).

    Example:
        >>> net = add_spectral_norm(MLP(2, 1, hidden=(4,)))
        >>> hasattr(net[0], "parametrizations")
        True
    """
    for child in list(module.modules()):
        if isinstance(child, (nn.Linear, nn.Conv2d)) and not hasattr(child, "parametrizations"):
            nn.utils.parametrizations.spectral_norm(child)
    return module


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """Group consecutive examples by ``m`` (PacGAN): ``(n, C, ...)`` -> ``(n // m, m * C, ...)``.

    Leftover examples (``n % m``) are dropped.

    Example:
        >>> pack(torch.zeros(9, 2), 4).shape
        torch.Size([2, 8])
    """
    n = (len(x) // m) * m
    return x[:n].reshape(n // m, m * x.shape[1], *x.shape[2:])


def nearest_distance(x: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Each example's Euclidean distance to its nearest other example of the same group in ``x``.

    The minibatch feature of ``GAN(minibatch_distance=True)``: a generator that sends many latents
    to the same example gives distances near 0, which a critic judging one example at a time cannot
    see. ``groups``: an integer label per example (``None``: one group). An example alone in its
    group gets the mean of the others' distances (0 if no example has a partner).

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [9.0, 9.0]])
        >>> [round(d, 3) for d in nearest_distance(x, torch.tensor([0, 0, 0, 1])).tolist()]
        [1.0, 4.243, 1.0, 2.081]
    """
    flat = x.reshape(len(x), -1)
    sq = flat.pow(2).sum(1)
    # squared distances by the Gram form (no n x n x d difference tensor), and the square root
    # only of each row's minimum, kept off 0: the gradient of a distance at 0 is undefined
    # (torch.cdist's is NaN under the double backward of an R1 or gradient penalty)
    d2 = (sq[:, None] + sq[None, :] - 2 * flat @ flat.T).clamp_min(0)
    apart = torch.eye(len(x), dtype=torch.bool, device=x.device)
    if groups is not None:
        apart = apart | (groups[:, None] != groups[None, :])
    nearest2 = d2.masked_fill(apart, math.inf).min(1).values
    alone = torch.isinf(nearest2)
    nearest = (nearest2.masked_fill(alone, 0) + 1e-12).sqrt()
    if alone.any():
        fill = nearest[~alone].mean() if (~alone).any() else nearest.new_zeros(())
        nearest = torch.where(alone, fill, nearest)
    return nearest


def _is_image(shape: Sequence[int]) -> bool:
    return len(shape) == 3


def use_conv(shape: Sequence[int], architecture: str = "auto") -> bool:
    """Whether nets for examples of ``shape`` are convolutional: ``"auto"`` = images of 16 pixels or more."""
    if architecture not in ("auto", "conv", "mlp"):
        raise ValueError(f"architecture: expected 'auto', 'conv' or 'mlp', got {architecture!r}")
    if architecture == "conv" and not _is_image(shape):
        raise ValueError(f"architecture: 'conv' needs image examples (C, H, W), got shape {tuple(shape)}")
    return architecture == "conv" or (architecture == "auto" and _is_image(shape) and min(shape[1:]) >= 16)


def _offset_table(classes: int, size: int) -> nn.Linear | None:
    """A table of one learned vector per class, zero at the start (read by a one-hot code), or ``None``."""
    if not classes:
        return None
    table = nn.Linear(int(classes), int(size), bias=False)
    nn.init.zeros_(table.weight)
    return table


def _split_code(c: torch.Tensor | None, table: nn.Linear | None) -> tuple:
    """``(one-hot code, rest of c)``: the code is the last ``table.in_features`` entries of ``c``."""
    if table is None or c is None:
        return None, c
    k = table.in_features
    return c[:, -k:], (c[:, :-k] if c.shape[1] > k else None)


class Generator(nn.Module):
    """Maps a latent vector (and an optional condition vector) to a data example.

    Vectors (``out_shape=(d,)``) use an MLP; images (``(C, H, W)``) a convolutional
    decoder (``probgen.nn.ConvDecoder``). ``out_act`` is applied last
    (``"sigmoid"`` for images in [0, 1], ``None`` for real vectors).

    Arguments:
        latent_dim: size of z.
        out_shape: shape of one generated example.
        hidden: MLP hidden sizes (vectors) or decoder channels (images).
        cond_dim: size of the condition vector concatenated to z (0: none), without the ``skip`` code.
        out_act: final activation name or ``None``.
        skip: size of a one-hot code at the end of the condition vector (0: none) that is not
            given to the network but selects a learned offset added to its output (before
            ``out_act``; zero at the start): an offset per class beside the network.

    Example:
        >>> Generator(4, (1, 28, 28), hidden=(16, 8), out_act="sigmoid")(torch.zeros(3, 4)).shape
        torch.Size([3, 1, 28, 28])
    """

    def __init__(self, latent_dim: int, out_shape: Sequence[int], hidden: Sequence[int] = (128, 128),
                 cond_dim: int = 0, out_act: str | None = None, architecture: str = "auto", skip: int = 0):
        super().__init__()
        self.out_shape = tuple(int(s) for s in out_shape)
        inp = int(latent_dim) + int(cond_dim)
        if use_conv(self.out_shape, architecture):
            self.net = ConvDecoder(inp, self.out_shape, channels=tuple(hidden))
        else:
            self.net = MLP(inp, math.prod(self.out_shape), hidden=tuple(hidden))
        self.out_act = activation(out_act) if out_act else nn.Identity()
        self.skip = _offset_table(skip, math.prod(self.out_shape))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        code, c = _split_code(c, self.skip)
        h = z if c is None else torch.cat([z, c], 1)
        out = self.net(h).reshape(len(z), *self.out_shape)
        if code is not None:
            out = out + self.skip(code).reshape(out.shape)
        return self.out_act(out)


class Critic(nn.Module):
    """The discriminator: packed examples (and condition vectors) to one real-valued score.

    Conditions enter by projection (Miyato & Koyama 2018): the score is
    ``w·h + <P c, h>`` with ``h`` the critic's features of the packed input and ``c``
    the concatenated condition vectors of the packed examples.

    Arguments:
        in_shape: shape of one example.
        hidden: MLP hidden sizes (vectors) or convolution channels (images). ``()`` for vectors:
            a linear critic, whose features are the (packed) example itself, zero at the start;
            with a condition it is the projection term alone, a linear function of the example per
            condition. It compares only means, but has few weights, which is what private training
            needs (``probgen bench privacy``).
        pack: number of examples the critic sees at once (PacGAN).
        cond_dim: size of each example's condition vector (0: none).
        spectral_norm: spectrally normalise every layer.
        fourier: for vectors, append ``sin/cos(B x)`` of ``fourier`` random frequencies
            ``B ~ N(0, fourier_scale^2)`` (fixed) to each example: random Fourier
            features (Tancik et al. 2020) let an MLP critic resolve sharp modes that its
            spectral bias otherwise blurs.
        fourier_scale: standard deviation of the frequencies, in radians per data unit.
        fourier_warmup: coarse-to-fine Fourier features (as BARF, Lin et al. 2021, does for
            positional encodings): the frequencies are ordered by norm and faded in one after
            another over the first ``fourier_warmup`` calls of ``advance()`` (0: all on from the start).
        extra: number of per-example features given with the examples (``extra=`` of ``forward``;
            joined to the flattened example, or as constant channels of an image), such as the
            minibatch distance of ``nearest_distance``.

    Example:
        >>> Critic((2,), hidden=(8,), pack=2)(torch.zeros(6, 2)).shape
        torch.Size([3])
    """

    def __init__(self, in_shape: Sequence[int], hidden: Sequence[int] = (128, 128), pack: int = 1,
                 cond_dim: int = 0, spectral_norm: bool = False, feature_dim: int = 128, fourier: int = 0,
                 fourier_scale: float = 1.0, architecture: str = "auto", extra: int = 0, fourier_warmup: int = 0):
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.extra = int(extra)
        self.pack_size = int(pack)
        self.conv = use_conv(self.in_shape, architecture)
        self.fourier = int(fourier) if not self.conv else 0
        self.fourier_warmup = int(fourier_warmup) if self.fourier else 0
        if self.fourier:
            g = torch.Generator().manual_seed(0)
            frequencies = torch.randn(math.prod(self.in_shape), self.fourier, generator=g) * float(fourier_scale)
            if self.fourier_warmup:  # lowest frequencies first
                frequencies = frequencies[:, frequencies.norm(dim=0).argsort()]
                self.register_buffer("fourier_step", torch.zeros((), dtype=torch.long))
            self.register_buffer("frequencies", frequencies)
        if self.conv and not hidden:
            raise ValueError("hidden: a convolutional critic needs at least one channel count; () (a linear "
                             "critic) is for vector examples")
        if self.conv:
            c, h, w = self.in_shape
            self.trunk = nn.Sequential(ConvEncoder(((c + self.extra) * self.pack_size, h, w), feature_dim, channels=tuple(hidden),
                                                   act="leaky_relu"), nn.LeakyReLU(0.2))
            self.feature_dim = int(feature_dim)
        elif not hidden:  # linear critic: the features are the packed example itself
            self.trunk = nn.Identity()
            self.feature_dim = (math.prod(self.in_shape) + 2 * self.fourier + self.extra) * self.pack_size
        else:
            d = (math.prod(self.in_shape) + 2 * self.fourier + self.extra) * self.pack_size
            self.trunk = nn.Sequential(MLP(d, int(hidden[-1]), hidden=tuple(hidden[:-1]), act="leaky_relu"),
                                       nn.LeakyReLU(0.2))
            self.feature_dim = int(hidden[-1])
        linear = not hidden and not self.conv
        # a linear critic with a condition has no shared head: its projection already holds one linear
        # function per condition, and a second copy of their shared part would spend the clipping
        # budget of private training twice (probgen bench privacy: 8x8 digits at epsilon 1, validation
        # TSTR 0.46 with the head, 0.55 without)
        self.head = None if linear and cond_dim else nn.Linear(self.feature_dim, 1)
        self.project = nn.Linear(cond_dim * self.pack_size, self.feature_dim, bias=False) if cond_dim else None
        if linear:  # a linear critic starts at zero: no random verdict to unlearn
            for layer in (self.head, self.project):
                if layer is not None:
                    nn.init.zeros_(layer.weight)
                    if layer.bias is not None:
                        nn.init.zeros_(layer.bias)
        if spectral_norm:
            add_spectral_norm(self)

    def features(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Features of the packed examples, shape ``(n // pack, feature_dim)``."""
        if not self.conv:
            x = flat_rows(x)
        if self.fourier:
            proj = x @ self.frequencies
            sin, cos = torch.sin(proj), torch.cos(proj)
            if self.fourier_warmup:
                weight = self.fourier_weights()
                sin, cos = sin * weight, cos * weight
            x = torch.cat([x, sin, cos], 1)
        if self.extra:
            if extra is None or extra.shape != (len(x), self.extra):
                raise ValueError(f"extra: this critic takes {self.extra} feature(s) per example, shape "
                                 f"({len(x)}, {self.extra}); got {None if extra is None else tuple(extra.shape)}")
            if self.conv:
                extra = extra[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, extra.to(x.dtype)], 1)
        x = pack(x, self.pack_size)
        return self.trunk(x)

    def fourier_weights(self) -> torch.Tensor:
        """Weight of each Fourier frequency now: a cosine ramp from 0 to 1 for frequency ``k`` while
        ``fourier * min(1, step / fourier_warmup)`` passes from ``k`` to ``k + 1``."""
        if not self.fourier_warmup:
            return torch.ones(self.fourier, device=self.frequencies.device)
        reach = (self.fourier_step.float() / self.fourier_warmup).clamp(max=1.0) * self.fourier
        k = torch.arange(self.fourier, device=reach.device)
        return (1 - torch.cos(math.pi * (reach - k).clamp(0.0, 1.0))) / 2

    @torch.no_grad()
    def advance(self) -> None:
        """One training step more for the coarse-to-fine Fourier features (nothing without a warm-up)."""
        if self.fourier_warmup:
            self.fourier_step += 1

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x, extra)
        out = self.head(h)[:, 0] if self.head is not None else h.new_zeros(len(h))
        if self.project is not None:
            if c is None:
                raise ValueError("c: this critic is conditional; give the condition vectors")
            out = out + (self.project(pack(c, self.pack_size)) * h).sum(1)
        return out


class UNet(nn.Module):
    """A small U-Net for 28x28-like images: two halvings, skip connections (pix2pix generator).

    Arguments:
        in_channels, out_channels: image channels in and out.
        width: channels of the first level (doubled at each halving).

    Example:
        >>> UNet(1, 1, width=4)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32):
        super().__init__()
        w = int(width)

        def block(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(b, b, 3, padding=1),
                                 nn.LeakyReLU(0.2))

        self.enc1 = block(in_channels, w)
        self.enc2 = block(w, 2 * w)
        self.mid = block(2 * w, 2 * w)
        self.dec2 = block(4 * w, w)
        self.dec1 = block(2 * w, w)
        self.out = nn.Conv2d(w, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.avg_pool2d(e1, 2, ceil_mode=True))
        m = self.mid(nn.functional.avg_pool2d(e2, 2, ceil_mode=True))
        d2 = self.dec2(torch.cat([nn.functional.interpolate(m, size=e2.shape[-2:]), e2], 1))
        d1 = self.dec1(torch.cat([nn.functional.interpolate(d2, size=e1.shape[-2:]), e1], 1))
        return self.out(d1)


class PatchCritic(nn.Module):
    """PatchGAN critic (pix2pix): judges (input, output) image pairs patch by patch.

    Arguments:
        in_channels: channels of the concatenated pair.
        width: channels of the first layer.
        spectral_norm: spectrally normalise every layer.

    Example:
        >>> PatchCritic(2, width=4)(torch.zeros(3, 2, 28, 28)).shape
        torch.Size([3, 7, 7])
    """

    def __init__(self, in_channels: int = 2, width: int = 32, spectral_norm: bool = True):
        super().__init__()
        w = int(width)
        self.net = nn.Sequential(nn.Conv2d(in_channels, w, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(2 * w, 1, 3, 1, 1))
        if spectral_norm:
            add_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]
