"""PixelCNN and PixelRNN: autoregressive image models with an exact likelihood.

p(x) = prod_ij p(x_ij | pixels before (i, j) in raster order), each factor a
Bernoulli (binary images), a 256-way categorical or a discretized logistic mixture
(grayscale), optionally conditioned on a class label (van den Oord et al. 2016).

References:
    van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    van den Oord et al. Conditional Image Generation with PixelCNN Decoders. NeurIPS 2016.
    Salimans et al. PixelCNN++ (discretized logistic mixture). ICLR 2017.
    Ramachandran et al. Fast Generation for Convolutional Autoregressive Models. 2017 (caching).
"""

from __future__ import annotations

__all__ = ["PixelCNN", "PixelRNN", "PixelDistribution"]

import math
from typing import Any, Sequence

import pyro
import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch import nn
from torch.distributions import constraints

from ..core.base import ContractCase, Model
from ..core.checks import as_tensor, check_choice, check_positive, class_labels
from ..core.progress import progress_bar
from ..core.rows import cat_rows
from ..nn.masked import DiagonalBiLSTM, GatedBlock, MaskedConv2d, RowLSTM, gate, lstm_cell

_OUTPUTS = ("bernoulli", "categorical", "logistic")


def _check_odd_kernels(**kernels: int) -> None:
    """Masked convolutions centre on the current pixel, so every kernel size must be a positive odd integer."""
    for name, k in kernels.items():
        check_positive(name, k, integer=True)
        if k % 2 == 0:
            raise ValueError(f"{name}: expected an odd kernel size, got {k}")


class PixelDistribution(TorchDistribution):
    """The joint distribution of a batch of images under a PixelCNN / PixelRNN.

    ``log_prob`` is the exact autoregressive log-likelihood (nats, one value per
    image); ``sample()`` runs the model's cached raster-order sampler.

    Arguments:
        pixel_model: a fitted ``PixelCNN`` or ``PixelRNN``.
        n: number of images (the batch shape).
        y: class labels ``(n,)`` for a class-conditional model.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, pixel_model: "_PixelModel", n: int, y: torch.Tensor | None = None, validate_args=None):
        self.pixel_model = pixel_model
        self.y = y
        super().__init__(torch.Size([n]), torch.Size((1, *pixel_model.data_shape[1:])), validate_args=False)

    @constraints.dependent_property
    def support(self):
        base = constraints.boolean if self.pixel_model.output == "bernoulli" else constraints.unit_interval
        return constraints.independent(base, 3)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) == self.batch_shape:
            return self
        raise NotImplementedError("PixelDistribution: build it with the batch size you need instead of expanding")

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.pixel_model._log_prob_tensor(value, self.y)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if len(sample_shape):
            raise NotImplementedError("PixelDistribution.sample: use a pyro.plate for more images")
        n = self.batch_shape[0]
        x = torch.zeros(n, 1, *self.pixel_model.data_shape[1:], device=self.pixel_model.device)
        observed = torch.zeros(n, *self.pixel_model.data_shape[1:], dtype=torch.bool, device=x.device)
        return self.pixel_model._fill(x, observed, self.y, cached=True, progress=False)


class _PixelModel(Model):
    """What PixelCNN and PixelRNN share: data checks, likelihood, Pyro program, samplers."""

    default_inference = "mle"
    log_prob_kind = "exact"

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """Files saved before the naming pass give ``image_shape=(height, width)``."""
        config = super().upgrade_config(config)
        if "image_shape" in config and "data_shape" not in config:
            config["data_shape"] = [1, *config.pop("image_shape")]
        return config

    def _setup(self, data_shape: Sequence[int], output: str, num_classes: int | None, mixtures: int) -> None:
        shape = tuple(data_shape) if isinstance(data_shape, (tuple, list)) else None
        bad = shape is None or len(shape) != 3 or shape[0] != 1
        if bad or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"data_shape: expected (1, height, width) of positive ints (one channel), got {data_shape!r}")
        self.data_shape = shape
        self.output = check_choice("output", output, _OUTPUTS)
        check_positive("mixtures", mixtures, integer=True)
        self.mixtures = int(mixtures)
        if num_classes is not None:
            check_positive("num_classes", num_classes, integer=True)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.levels = 2 if output == "bernoulli" else 256
        self.out_channels = {"bernoulli": 1, "categorical": 256, "logistic": 3 * self.mixtures}[output]

    def _head(self, channels: int) -> None:
        self.head1 = nn.Conv2d(channels, channels, 1)
        self.head2 = nn.Conv2d(channels, self.out_channels, 1)

    def _apply_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head2(F.relu(self.head1(F.relu(f))))

    def _head_at(self, f: torch.Tensor) -> torch.Tensor:
        """The head at one pixel, ``f`` of shape (n, C)."""
        f = F.relu(f)
        f = F.relu(torch.addmm(self.head1.bias, f, self.head1.weight[:, :, 0, 0].T))
        return torch.addmm(self.head2.bias, f, self.head2.weight[:, :, 0, 0].T)

    # ------------------------------------------------------------------ data
    def _check_images(self, x: Any, name: str = "x") -> torch.Tensor:
        h, w = self.data_shape[1:]
        t = as_tensor(x, name, ndim=(3, 4), device=self.device)
        if t.dim() == 3:
            t = t[:, None]
        if tuple(t.shape[1:]) != (1, h, w):
            raise ValueError(f"{name}: expected images of shape (n, 1, {h}, {w}) or (n, {h}, {w}), "
                             f"got {tuple(t.shape)}")
        if self.output == "bernoulli":
            if not torch.all((t == 0) | (t == 1)):
                raise ValueError(f"{name}: expected binary pixels in {{0, 1}} for output='bernoulli' (binarize first)")
        else:
            scaled = t * 255
            if t.min() < 0 or t.max() > 1 or not torch.all((scaled - scaled.round()).abs() < 1e-3):
                raise ValueError(f"{name}: expected grayscale pixels k/255 in [0, 1] for output={self.output!r}")
            t = scaled.round() / 255
        return t

    def _labels(self, y: Any, n: int, name: str = "y") -> torch.Tensor | None:
        labels = class_labels(y, self.num_classes, n, name)
        return None if labels is None else labels.to(self.device)

    def _split(self, data: Any, y: Any = None, name: str = "x") -> tuple[torch.Tensor, torch.Tensor | None]:
        if hasattr(data, "x") and hasattr(data, "y") and not isinstance(data, torch.Tensor):
            if self.num_classes is not None and y is None:
                y = data.y
            data = data.x
        elif isinstance(data, (tuple, list)) and len(data) == 2 and y is None and self.num_classes is not None:
            data, y = data
        x = self._check_images(data, name)
        return x, self._labels(y, len(x), "y")

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        x, y = self._split(data, name=name)
        return (x.cpu(),) if y is None else (x.cpu(), y.cpu())

    # ------------------------------------------------------------ likelihood
    def _levels_of(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] * (self.levels - 1)).round().long()

    def _logistic_log_prob(self, params: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """log P(level k) under a discretized mixture of logistics; params (..., 3M), k broadcastable to (...)."""
        m = self.mixtures
        logit_pi, mu, log_s = params[..., :m], params[..., m:2 * m], params[..., 2 * m:].clamp(-7.0, 7.0)
        centre = (2.0 * k.to(params.dtype) / 255.0 - 1.0)[..., None]
        inv_s = torch.exp(-log_s)
        a = (centre + 1.0 / 255.0 - mu) * inv_s
        b = (centre - 1.0 / 255.0 - mu) * inv_s
        # log(sigmoid(a) - sigmoid(b)) = a + log(1 - e^(b-a)) - softplus(a) - softplus(b), stable for a > b
        mid = a + torch.log(-torch.expm1(b - a)) - F.softplus(a) - F.softplus(b)
        kk = k[..., None].expand_as(mid)
        lp = torch.where(kk == 0, -F.softplus(-a), torch.where(kk == 255, -F.softplus(b), mid))
        return torch.logsumexp(lp + F.log_softmax(logit_pi, -1), -1)

    def _pixel_log_probs(self, out: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Per-pixel log-likelihood (n, H, W) of levels ``k`` given network output (n, K, H, W)."""
        if self.output == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out[:, 0], k.to(out.dtype), reduction="none")
        if self.output == "categorical":
            return F.log_softmax(out, 1).gather(1, k[:, None])[:, 0]
        return self._logistic_log_prob(out.permute(0, 2, 3, 1), k)

    def _level_log_probs(self, out: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of every level (n, levels) from the output (n, K) at one pixel."""
        if self.output == "bernoulli":
            return torch.stack([F.logsigmoid(-out[:, 0]), F.logsigmoid(out[:, 0])], -1)
        if self.output == "categorical":
            return F.log_softmax(out, -1)
        return self._logistic_log_prob(out[:, None, :], torch.arange(256, device=out.device)[None, :])

    def _log_prob_tensor(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self._pixel_log_probs(self(x, y), self._levels_of(x)).sum((1, 2))

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -self._log_prob_tensor(x, y).mean()

    def pixel_log_prob(self, x: Any, y: Any = None, batch_size: int = 500) -> torch.Tensor:
        """Exact log p(x_ij | x_<ij) of every pixel, shape (n, H, W) (a per-pixel likelihood map)."""
        x, y = self._split(x, y)
        with torch.no_grad():
            parts = [self._pixel_log_probs(self(x[s:s + batch_size], None if y is None else y[s:s + batch_size]),
                                           self._levels_of(x[s:s + batch_size])) for s in range(0, len(x), batch_size)]
        return cat_rows(parts, x.new_zeros((0, *x.shape[-2:])))

    def log_prob(self, x: Any, y: Any = None, batch_size: int = 500) -> torch.Tensor:
        """Exact log-likelihood in nats of each image (for grayscale: of its 256-level pixel values).

        Arguments:
            x: images (n, 1, H, W) or (n, H, W) with values in the declared support, a
                Dataset, or ``(x, y)`` for a class-conditional model.
            y: labels for a class-conditional model.
        """
        return self.pixel_log_prob(x, y, batch_size).sum((1, 2))

    def bits_per_dim(self, x: Any, y: Any = None) -> torch.Tensor:
        """Negative log-likelihood in bits per pixel of each image."""
        h, w = self.data_shape[1:]
        return -self.log_prob(x, y) / (h * w * math.log(2.0))

    def score(self, x: Any, y: Any = None) -> torch.Tensor:
        """Anomaly score: the negative exact log-likelihood (nats); higher = more anomalous."""
        return -self.log_prob(x, y)

    # -------------------------------------------------------- Pyro program
    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, n: int | None = None) -> torch.Tensor:
        """x ~ PixelDistribution (exact autoregressive likelihood); observed when ``x`` is given."""
        n = len(x) if x is not None else (len(y) if y is not None else int(n or 1))
        with self.data_plate(n, name="images", device=self.device):
            return pyro.sample("image", PixelDistribution(self, n, y), obs=x)

    # ------------------------------------------------------------- sampling
    def _sample(self, n: int, y: Any = None, cached: bool = True, progress: bool = False) -> torch.Tensor:
        y = self._labels(y, n)
        h, w = self.data_shape[1:]
        x = torch.zeros(n, 1, h, w, device=self.device)
        observed = torch.zeros(n, h, w, dtype=torch.bool, device=self.device)
        return self._fill(x, observed, y, cached=cached, progress=progress)

    def complete(self, x: Any, mask: Any, y: Any = None, seed: int | None = None, cached: bool = True) -> torch.Tensor:
        """Sample the missing pixels (``mask`` False) given the observed ones (``mask`` True).

        Pixels are drawn in raster order from p(x_ij | all pixels before (i, j)), so a
        missing pixel is conditioned on every observed pixel *above it or to its left
        in its row*, but cannot condition on observed pixels that come later in raster
        order (the model has no term for them). Completing the bottom half given the
        top half is therefore exact; filling the top half given the bottom is not a
        posterior sample (it ignores the bottom).

        Arguments:
            x: images (n, 1, H, W) or (n, H, W); missing pixels may hold any value in the support.
            mask: bool of shape (n, 1, H, W), (n, H, W) or (H, W); True = observed.
            y: labels for a class-conditional model.
            seed: random seed.
        """
        from ..core.random import seeded

        x, y = self._split(x, y)
        h, w = self.data_shape[1:]
        m = torch.as_tensor(mask, device=self.device)
        if m.dtype != torch.bool:
            raise ValueError(f"mask: expected a boolean tensor (True = observed), got dtype {m.dtype}")
        if m.dim() == 4:
            m = m[:, 0]
        try:
            m = m.expand(len(x), h, w)
        except RuntimeError as exc:
            raise ValueError(f"mask: expected shape (n, 1, {h}, {w}), (n, {h}, {w}) or ({h}, {w}), "
                             f"got {tuple(m.shape)}") from exc
        x = x.clone()
        x[:, 0][~m] = 0.0
        with seeded(seed), torch.no_grad():
            return self._fill(x, m.clone(), y, cached=cached, progress=False)

    def _draw(self, out: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Inverse-CDF draw of a pixel value in [0, 1] from the output (n, K) and uniforms (n,)."""
        cdf = self._level_log_probs(out).exp().cumsum(-1)
        k = (cdf < u[:, None]).sum(-1).clamp(max=self.levels - 1)
        return k.to(out.dtype) / (self.levels - 1)

    def _fill(self, x: torch.Tensor, observed: torch.Tensor, y: torch.Tensor | None, cached: bool,
              progress: bool) -> torch.Tensor:
        # The uniforms are drawn up front so that the cached and the naive sampler make
        # the same draws: given the same seed they return the same images.
        h, w = self.data_shape[1:]
        u = torch.rand(len(x), h, w, device=x.device)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                if cached:
                    return self._fill_cached(x, observed, u, y, progress)
                return self._fill_naive(x, observed, u, y, progress)
        finally:
            self.train(was_training)

    def _fill_naive(self, x, observed, u, y, progress):
        """Re-run the whole network for every pixel (the baseline of the cached sampler)."""
        h, w = self.data_shape[1:]
        for p in progress_bar(range(h * w), enabled=progress, desc=f"{type(self).__name__} naive sampling"):
            i, j = divmod(p, w)
            out = self(x, y)[:, :, i, j]
            x[:, 0, i, j] = torch.where(observed[:, i, j], x[:, 0, i, j], self._draw(out, u[:, i, j]))
        return x

    def _fill_cached(self, x, observed, u, y, progress):
        h, w = self.data_shape[1:]
        cache = self._cache_init(x, y)
        for p in progress_bar(range(h * w), enabled=progress, desc=f"{type(self).__name__} sampling"):
            i, j = divmod(p, w)
            if j == 0:
                self._cache_row(cache, i)
            out = self._cache_pixel(cache, i, j)
            value = torch.where(observed[:, i, j], x[:, 0, i, j], self._draw(out, u[:, i, j]))
            x[:, 0, i, j] = value
            self._cache_input(cache, i, j, value)
        return x

    # ------------------------------------------------------------- examples
    @classmethod
    def _tiny_digits(cls, n: int = 64) -> torch.Tensor:
        from ..datasets import load

        return (load("digits").x[:n] > 0.5).float()

    @classmethod
    def _contract_case(cls) -> ContractCase:
        x = cls._tiny_digits()
        return ContractCase(cls._tiny(), x, {"steps": 3, "lr": 1e-2}, log_prob_data=x[:5])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Fit on binarized 8x8 digits: samples beside real digits, exact test NLL against independent pixels."""
        import os

        import matplotlib.pyplot as plt

        import probgen
        from ..gallery import TourSection, demo_source
        from ..plot import sample_grid, save_figure

        epochs = 2 if quick else 15
        name = cls.__name__

        def demo():
            torch.manual_seed(0)
            train = (probgen.datasets.load("digits", split="train").x > 0.5).float()
            test = (probgen.datasets.load("digits", split="test").x > 0.5).float()
            model = cls._tour_model()
            model.fit(train, epochs=epochs, batch_size=64, lr=5e-3, seed=0, progress=False)
            nll = -model.log_prob(test).mean()  # exact, in nats per image
            marginal = train.mean(0).clamp(1e-3, 1 - 1e-3)  # baseline: independent pixels
            baseline = -(test * marginal.log() + (1 - test) * (1 - marginal).log()).sum((1, 2, 3)).mean()
            samples = model.sample(32, seed=0)
            return train, samples, nll, baseline

        train, samples, nll, baseline = demo()
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
        sample_grid(samples, nrow=8, ax=left, title=f"{name} samples")
        sample_grid(train[:32], nrow=8, ax=right, title="real binarized digits")
        path = save_figure(fig, os.path.join(out_dir, f"{cls.family}.png"))
        works = float(nll) < 0.9 * float(baseline)
        return TourSection(cls.family, f"{name} on binarized 8x8 digits",
                           [(path, f"left: 32 samples of the {name}; right: 32 real training digits, binarized")],
                           {"exact test NLL": f"{float(nll):.1f} nats per image (independent pixels: "
                                              f"{float(baseline):.1f})"},
                           demo_source(demo, epochs=epochs).replace("cls._tour_model()", cls._tour_model_code),
                           "works" if works else "limited",
                           "8x8 binarized digits are coarse: the samples read as digit-like strokes rather than "
                           "clean digits; `probgen bench likelihood` trains on 28x28 MNIST.")


class PixelCNN(_PixelModel):
    r"""Gated PixelCNN: masked convolutions in a vertical and a horizontal stack.

    The first block uses mask A (a pixel never sees itself), the others mask B; the
    two stacks remove the blind spot of the original PixelCNN. ``sample`` caches each
    layer's vertical features once per row and computes only the new pixel's
    horizontal features (``cached=False`` re-runs the whole network per pixel and
    returns the same images for the same seed).

    Arguments:
        data_shape: (1, height, width): one channel.
        output: ``"bernoulli"`` (binary pixels), ``"categorical"`` (256-way softmax) or
            ``"logistic"`` (discretized mixture of logistics), the last two for k/255 grayscale.
        channels: feature channels of each stack.
        layers: number of gated blocks.
        kernel_size: kernel width of blocks 2..L; ``first_kernel`` of block 1.
        num_classes: class-conditional when given (labels then go with x, sample(n, y=...)).
        mixtures: logistic components for ``output="logistic"``.

    Example:
        >>> import torch, probgen
        >>> x = (torch.rand(32, 1, 5, 5) > 0.5).float()
        >>> m = probgen.models.PixelCNN(data_shape=(1, 5, 5), channels=8, layers=2)
        >>> _ = m.fit(x, steps=2, progress=False, seed=0)
        >>> m.sample(3, seed=0).shape
        torch.Size([3, 1, 5, 5])
    """

    family = "pixel_cnn"

    def __init__(self, data_shape: Sequence[int] = (1, 28, 28), output: str = "bernoulli", channels: int = 32,
                 layers: int = 5, kernel_size: int = 3, first_kernel: int = 7, num_classes: int | None = None,
                 mixtures: int = 5):
        super().__init__()
        self._setup(data_shape, output, num_classes, mixtures)
        check_positive("channels", channels, integer=True)
        check_positive("layers", layers, integer=True)
        _check_odd_kernels(kernel_size=kernel_size, first_kernel=first_kernel)
        self.blocks = nn.ModuleList(
            [GatedBlock(1, channels, first_kernel, first=True, num_classes=num_classes)]
            + [GatedBlock(channels, channels, kernel_size, num_classes=num_classes) for _ in range(layers - 1)])
        self._head(channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Network output (n, K, H, W) for images ``x`` in [0, 1]: pixel (i, j) only sees pixels before it."""
        v = h = 2 * x - 1
        for block in self.blocks:
            v, h = block(v, h, y)
        return self._apply_head(h)

    # Cached sampling (Ramachandran et al. 2017): per row, every block's vertical
    # stack is computed once on a (k x W) strip; per pixel, only the 1 x k horizontal
    # windows are evaluated. A hand-written loop because the cache layout is the point.
    def _cache_init(self, x, y):
        n, (h, w) = len(x), self.data_shape[1:]
        cache = {"v": [], "h": [], "link": [None] * len(self.blocks), "y": y,
                 "bias": [b.class_bias(y) for b in self.blocks]}
        for b in self.blocks:
            pv = b.vconv.padding[0]
            ph = b.hconv.padding[1]
            c_in = b.vconv.in_channels
            cache["v"].append(x.new_zeros(n, c_in, h + 2 * pv, w))
            cache["h"].append(x.new_zeros(n, c_in, 1, w + 2 * ph))
        p0 = self.blocks[0].vconv.padding[0]
        cache["v"][0][:, :, p0:p0 + h] = 2 * x - 1
        cache["x"] = 2 * x - 1
        return cache

    def _cache_row(self, cache, i):
        w = self.data_shape[1:][1]
        for l, b in enumerate(self.blocks):
            pv = b.vconv.padding[0]
            strip = cache["v"][l][:, :, i:i + 2 * pv + 1]
            vp = F.conv2d(strip, b.vconv.masked_weight(), b.vconv.bias, padding=(0, b.vconv.padding[1]))
            cache["link"][l] = b.link(vp)[:, :, 0]
            bv = cache["bias"][l][0]
            v_out = gate(vp[:, :, 0] + (bv[:, :, None] if isinstance(bv, torch.Tensor) else 0.0))
            if l + 1 < len(self.blocks):
                p_next = self.blocks[l + 1].vconv.padding[0]
                cache["v"][l + 1][:, :, i + p_next] = v_out
        # the horizontal input row of block 1 is the image row (future pixels are masked)
        q0 = self.blocks[0].hconv.padding[1]
        cache["h"][0].zero_()
        cache["h"][0][:, :, 0, q0:q0 + w] = cache["x"][:, :, i]
        for l in range(1, len(self.blocks)):
            cache["h"][l].zero_()

    def _cache_pixel(self, cache, i, j):
        h = None
        for l, b in enumerate(self.blocks):
            q = b.hconv.padding[1]
            window = cache["h"][l][:, :, :, j:j + 2 * q + 1]
            bh = cache["bias"][l][1]
            hp = b.hconv.at(window) + cache["link"][l][:, :, j] + bh
            h_out = torch.addmm(b.res.bias, gate(hp), b.res.weight[:, :, 0, 0].T)
            h = h_out if b.first else cache["h"][l][:, :, 0, j + q] + h_out
            if l + 1 < len(self.blocks):
                q_next = self.blocks[l + 1].hconv.padding[1]
                cache["h"][l + 1][:, :, 0, j + q_next] = h
        return self._head_at(h)

    def _cache_input(self, cache, i, j, value):
        b0 = self.blocks[0]
        p0, q0 = b0.vconv.padding[0], b0.hconv.padding[1]
        cache["x"][:, 0, i, j] = 2 * value - 1
        cache["v"][0][:, 0, i + p0, j] = 2 * value - 1
        cache["h"][0][:, 0, 0, j + q0] = 2 * value - 1

    @classmethod
    def _tiny(cls) -> "PixelCNN":
        return cls(data_shape=(1, 8, 8), channels=8, layers=2, first_kernel=5)

    _tour_model_code = "probgen.models.PixelCNN(data_shape=(1, 8, 8), channels=24, layers=3, first_kernel=5)"

    @classmethod
    def _tour_model(cls) -> "PixelCNN":
        return cls(data_shape=(1, 8, 8), channels=24, layers=3, first_kernel=5)


class PixelRNN(_PixelModel):
    r"""PixelRNN: a mask-A convolution, then Row LSTM or Diagonal BiLSTM layers with residuals.

    ``layer="row"``: Row LSTM (rows top to bottom, triangular context);
    ``layer="diagonal"``: Diagonal BiLSTM (full context of all previous pixels: its right-to-left
    direction, shifted down one row, also reads the pixels of its own row, see ``DiagonalBiLSTM``).
    ``sample`` keeps every LSTM state: a new pixel costs one LSTM step per layer (and,
    for the diagonal model, the right-to-left direction of the finished row once per row);
    ``cached=False`` re-runs the whole network per pixel and returns the same images.

    Arguments:
        data_shape: (1, height, width): one channel.
        output: ``"bernoulli"``, ``"categorical"`` or ``"logistic"`` (see ``PixelCNN``).
        layer: ``"row"`` or ``"diagonal"``.
        hidden: LSTM state channels (also the residual stream width).
        layers: number of LSTM layers.
        first_kernel: size of the first mask-A convolution; ``kernel_size`` the Row LSTM's width.
        context: ``"full"`` (default) or ``"legacy"``: the diagonal layer of probgen 0.1, whose early
            pixels of each row miss the end of the row above. Files saved by that version carry no
            ``context`` and load as ``"legacy"``, with their old weights and outputs.
        num_classes: class-conditional when given.
        mixtures: logistic components for ``output="logistic"``.

    Example:
        >>> import torch, probgen
        >>> x = (torch.rand(32, 1, 5, 5) > 0.5).float()
        >>> m = probgen.models.PixelRNN(data_shape=(1, 5, 5), layer="row", hidden=8, layers=1)
        >>> _ = m.fit(x, steps=2, progress=False, seed=0)
        >>> bool(torch.isfinite(m.log_prob(x)).all())
        True
    """

    family = "pixel_rnn"

    def __init__(self, data_shape: Sequence[int] = (1, 28, 28), output: str = "bernoulli", layer: str = "diagonal",
                 hidden: int = 16, layers: int = 2, first_kernel: int = 7, kernel_size: int = 3,
                 num_classes: int | None = None, mixtures: int = 5, context: str = "full"):
        super().__init__()
        self._setup(data_shape, output, num_classes, mixtures)
        self.layer = check_choice("layer", layer, ("row", "diagonal"))
        self.context = check_choice("context", context, ("full", "legacy"))
        pixel_channels = 1 if layer == "diagonal" and context == "full" else 0
        check_positive("hidden", hidden, integer=True)
        check_positive("layers", layers, integer=True)
        _check_odd_kernels(kernel_size=kernel_size, first_kernel=first_kernel)
        self.hidden = int(hidden)
        self.input_conv = MaskedConv2d(1, hidden, first_kernel, "A")
        self.cond = None if num_classes is None else nn.Embedding(num_classes, hidden)
        make = (lambda: RowLSTM(hidden, kernel_size)) if layer == "row" else (lambda: DiagonalBiLSTM(hidden, pixel_channels))
        self.lstms = nn.ModuleList([make() for _ in range(layers)])
        self._head(hidden)

    def _features(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        f = self.input_conv(2 * x - 1)
        if self.cond is not None and y is not None:
            f = f + self.cond(y)[:, :, None, None]
        return f

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Network output (n, K, H, W) for images ``x`` in [0, 1]: pixel (i, j) only sees pixels before it."""
        f = self._features(x, y)
        full = self.layer == "diagonal" and self.context == "full"
        for lstm in self.lstms:
            f = f + (lstm(f, 2 * x - 1) if full else lstm(f))
        return self._apply_head(f)

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """Files saved before ``context`` existed hold the legacy diagonal layer (and its weights)."""
        config = super().upgrade_config(config)
        if config.get("layer", "diagonal") == "diagonal" and "context" not in config:
            config["context"] = "legacy"
        return config

    # Cached sampling: LSTM states of finished pixels are kept; a new pixel costs one
    # input window of the first convolution and one LSTM cell update per layer.
    def _cache_init(self, x, y):
        n, (h, w), c = len(x), self.data_shape[1:], self.hidden
        p = self.input_conv.padding[0]
        xin = x.new_zeros(n, 1, h + 2 * p, w + 2 * p)
        xin[:, :, p:p + h, p:p + w] = 2 * x - 1
        cache = {"x": xin, "bias": None if self.cond is None or y is None else self.cond(y), "layers": []}
        for lstm in self.lstms:
            if self.layer == "row":
                q = lstm.input_to_state.padding[1]
                cache["layers"].append({"f": x.new_zeros(n, c, 1, w + 2 * q), "h_prev": x.new_zeros(n, c, w),
                                        "c_prev": x.new_zeros(n, c, w), "h": x.new_zeros(n, c, w),
                                        "c": x.new_zeros(n, c, w), "ss": None})
            else:
                cache["layers"].append({k: x.new_zeros(n, c, h, w) for k in ("f", "hf", "cf", "hr", "cr")})
        return cache

    def _cache_row(self, cache, i):
        for lstm, st in zip(self.lstms, cache["layers"]):
            if self.layer == "row":
                if i > 0:
                    st["h_prev"], st["c_prev"] = st["h"], st["c"]
                    st["h"], st["c"] = torch.zeros_like(st["h"]), torch.zeros_like(st["c"])
                st["ss"] = lstm.state_to_state(st["h_prev"])
            elif i > 0:
                self._reverse_row(lstm, st, i - 1, cache)

    def _reverse_row(self, lstm, st, r, cache):
        """The right-to-left diagonal LSTM over the finished row r (its states feed row r + 1)."""
        w, direction = self.data_shape[1:][1], lstm.backward_lstm
        inp = F.conv2d(st["f"][:, :, r:r + 1], direction.input_to_state.weight, direction.input_to_state.bias)[:, :, 0]
        if lstm.pixel_to_state is not None:  # the finished row's pixels (2x - 1), as in forward
            p = self.input_conv.padding[0]
            inp = inp + F.conv2d(cache["x"][:, :, p + r:p + r + 1, p:p + w], lstm.pixel_to_state.weight)[:, :, 0]
        w_left, w_up = direction.from_left.weight[:, :, 0], direction.from_up.weight[:, :, 0]
        h = torch.zeros_like(st["hr"][:, :, 0, 0])
        c = torch.zeros_like(h)
        for j in reversed(range(w)):
            up = st["hr"][:, :, r - 1, j] if r > 0 else torch.zeros_like(h)
            h, c = lstm_cell(inp[:, :, j] + h @ w_left.T + up @ w_up.T, c)
            st["hr"][:, :, r, j], st["cr"][:, :, r, j] = h, c

    def _cache_pixel(self, cache, i, j):
        k = self.input_conv.kernel_size[0]
        f = self.input_conv.at(cache["x"][:, :, i:i + k, j:j + k])
        if cache["bias"] is not None:
            f = f + cache["bias"]
        for lstm, st in zip(self.lstms, cache["layers"]):
            if self.layer == "row":
                q = lstm.input_to_state.padding[1]
                st["f"][:, :, 0, j + q] = f
                gates = lstm.input_to_state.at(st["f"][:, :, :, j:j + 2 * q + 1]) + st["ss"][:, :, j]
                h, c = lstm_cell(gates, st["c_prev"][:, :, j])
                st["h"][:, :, j], st["c"][:, :, j] = h, c
                out = h
            else:
                d = lstm.forward_lstm
                st["f"][:, :, i, j] = f
                inp = torch.addmm(d.input_to_state.bias, f, d.input_to_state.weight[:, :, 0, 0].T)
                zero = torch.zeros_like(f)
                left = st["hf"][:, :, i, j - 1] if j > 0 else zero
                up = st["hf"][:, :, i - 1, j] if i > 0 else zero
                h, c = lstm_cell(inp + left @ d.from_left.weight[:, :, 0].T + up @ d.from_up.weight[:, :, 0].T,
                                 st["cf"][:, :, i, j - 1] if j > 0 else zero)
                st["hf"][:, :, i, j], st["cf"][:, :, i, j] = h, c
                out = h + st["hr"][:, :, i - 1, j] if i > 0 else h
            f = f + out
        return self._head_at(f)

    def _cache_input(self, cache, i, j, value):
        p = self.input_conv.padding[0]
        cache["x"][:, 0, i + p, j + p] = 2 * value - 1

    @classmethod
    def _tiny(cls) -> "PixelRNN":
        return cls(data_shape=(1, 8, 8), layer="row", hidden=8, layers=1, first_kernel=5)

    _tour_model_code = "probgen.models.PixelRNN(data_shape=(1, 8, 8), layer='row', hidden=24, layers=1, first_kernel=5)"

    @classmethod
    def _tour_model(cls) -> "PixelRNN":
        return cls(data_shape=(1, 8, 8), layer="row", hidden=24, layers=1, first_kernel=5)
