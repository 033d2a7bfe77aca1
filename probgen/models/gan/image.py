"""Image-to-image GANs: pix2pix-style translation (conditional GAN + L1) and super-resolution."""

from __future__ import annotations

__all__ = ["ImageToImageGAN", "SuperResolutionGAN", "occlude", "edges", "downsample"]

from typing import Any, Sequence

import pyro
import torch
from torch.nn import functional as F

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_choice, check_positive
from ...core.rows import flat_rows, require_examples
from ...nn.gan_nets import PatchCritic, UNet
from .gan import LOSSES, _data_tensor, critic_objective, generator_objective


# --------------------------------------------------------------- corruptions
def occlude(x: torch.Tensor, size: int | None = None, seed: int = 0) -> torch.Tensor:
    """Blank a random square (``size`` pixels, default half the width) of each image.

    Example:
        >>> occlude(torch.ones(2, 1, 8, 8)).sum().item() < 128
        True
    """
    x = as_tensor(x, "x", ndim=4)
    n, _, h, w = x.shape
    size = int(size or w // 2)
    g = torch.Generator().manual_seed(seed)
    top = torch.randint(0, h - size + 1, (n,), generator=g)
    left = torch.randint(0, w - size + 1, (n,), generator=g)
    rows, cols = torch.arange(h), torch.arange(w)
    mask = ((rows[None, :, None] >= top[:, None, None]) & (rows[None, :, None] < top[:, None, None] + size)
            & (cols[None, None, :] >= left[:, None, None]) & (cols[None, None, :] < left[:, None, None] + size))
    return x * (~mask[:, None]).to(x.dtype).to(x.device)


def edges(x: torch.Tensor) -> torch.Tensor:
    """Edge map (Sobel gradient magnitude, scaled to [0, 1]) of each image.

    Example:
        >>> edges(torch.zeros(1, 1, 8, 8)).abs().sum().item()
        0.0
    """
    x = as_tensor(x, "x", ndim=4)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device)
    k = torch.stack([kx, kx.T])[:, None]
    g = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), k, padding=1)
    mag = g.pow(2).sum(1, keepdim=True).sqrt().reshape(x.shape)
    return (mag / 4).clamp(0, 1)


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool by ``factor`` (the low-resolution input of super-resolution).

    Example:
        >>> downsample(torch.zeros(2, 1, 28, 28), 4).shape
        torch.Size([2, 1, 7, 7])
    """
    return F.avg_pool2d(as_tensor(x, "x", ndim=4), int(factor))


class ImageToImageGAN(Model):
    r"""pix2pix (Isola et al. 2017): a U-Net translator trained by a PatchGAN critic plus L1.

    The generator maps a source image (for example an occluded or edge-only digit)
    to a target image (as a residual ``clamp(source + U(source))`` when both have the
    same channels); its loss is ``adversarial_weight * GAN loss + l1_weight * |G(s) - t|``.
    ``adversarial_weight=0`` gives the same network trained with L1 only (the
    regression baseline). ``model(source)`` is the Pyro program (a deterministic
    site ``"x"``; pix2pix ignores input noise); ``sample(n, source=...)`` and
    ``translate(source)`` run it; ``score((source, target))`` is the per-image L1
    error (higher = more anomalous). No likelihood.

    Arguments:
        data_shape: target shape ``(C, H, W)``.
        source_channels: channels of the source images.
        width: channels of the U-Net's first level and of the critic.
        l1_weight, adversarial_weight: weights of the two generator terms.
        objective: the adversarial loss (``"non_saturating"`` or ``"hinge"``).
        spectral_norm: spectrally normalise the critic.

    Example:
        >>> import torch
        >>> x = torch.rand(16, 1, 8, 8)
        >>> m = ImageToImageGAN(data_shape=(1, 8, 8), width=4)
        >>> _ = m.fit((occlude(x), x), steps=2, progress=False, seed=0)
        >>> m.translate(occlude(x[:3])).shape
        torch.Size([3, 1, 8, 8])
    """

    family = "image_to_image_gan"
    renamed_config_keys = {"loss": "objective", "image_shape": "data_shape"}
    default_inference = "adversarial"
    log_prob_kind = None
    log_prob_alternative = "score((source, target)) (L1 translation error) or psnr / ssim"

    def __init__(self, data_shape: Sequence[int] = (1, 28, 28), source_channels: int = 1, width: int = 16,
                 l1_weight: float = 100.0, adversarial_weight: float = 1.0, objective: str = "non_saturating",
                 spectral_norm: bool = True):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        if len(self.data_shape) != 3 or min(self.data_shape) < 1:
            raise ValueError(f"data_shape: expected (channels, height, width), got {tuple(data_shape)}")
        check_positive("source_channels", source_channels, integer=True)
        check_positive("width", width, integer=True)
        check_positive("l1_weight", l1_weight, strict=False)
        check_positive("adversarial_weight", adversarial_weight, strict=False)
        self.objective = check_choice("objective", objective, [name for name in LOSSES if name != "wgan_gp"])
        self.source_channels, self.l1_weight, self.adversarial_weight = int(source_channels), float(l1_weight), float(adversarial_weight)
        c = self.data_shape[0]
        self.generator = UNet(self._generator_in_channels(), c, width=width)
        self.critic = PatchCritic(self.source_channels + c, width=width, spectral_norm=spectral_norm)

    # --------------------------------------------------------------- network
    def _generator_in_channels(self) -> int:
        return self.source_channels

    def _source_shape(self) -> tuple[int, ...]:
        return (self.source_channels, *self.data_shape[1:])

    def _condition_image(self, source: torch.Tensor) -> torch.Tensor:
        """The source as the critic sees it (at the target's resolution)."""
        return source

    def _translate(self, source: torch.Tensor) -> torch.Tensor:
        if self.source_channels == self.data_shape[0]:
            # residual: keep what the source already shows right (an L1-trained net otherwise
            # starts at the pixel median, black, and a sigmoid output can stay stuck there)
            return (source + self.generator(source)).clamp(0, 1)
        return torch.sigmoid(self.generator(source))

    # ------------------------------------------------------------------ data
    def _check_source(self, source: Any, name: str) -> torch.Tensor:
        return as_tensor(source, name, ndim=4, shape=self._source_shape())

    def prepare_data(self, data: Any, name: str = "data", *, allow_empty: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(f"{name}: expected a pair (source, target) of image batches, shapes "
                             f"(n, {', '.join(map(str, self._source_shape()))}) and (n, {', '.join(map(str, self.data_shape))})")
        s = self._check_source(data[0], f"{name}[0] (source)")
        t = as_tensor(data[1], f"{name}[1] (target)", ndim=4, shape=self.data_shape)
        if len(s) != len(t):
            raise ValueError(f"{name}: source and target need the same number of images, got {len(s)} and {len(t)}")
        if not allow_empty:
            require_examples(len(s), name)
        return s, t

    # ------------------------------------------------------------- training
    def critic_parameters(self):
        return self.critic.parameters()

    def generator_parameters(self):
        return self.generator.parameters()

    def critic_loss(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.adversarial_weight == 0:  # L1-only baseline: keep the critic untouched
            return sum(p.sum() * 0 for p in self.critic.parameters())
        cond = self._condition_image(source)
        with torch.no_grad():
            fake = self._translate(source)
        d_real = self.critic(torch.cat([cond, target], 1))
        d_fake = self.critic(torch.cat([cond, fake], 1))
        return critic_objective(self.objective, d_real, d_fake)

    def generator_loss(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fake = self._translate(source)
        loss = self.l1_weight * (fake - target).abs().mean()
        if self.adversarial_weight:
            self.critic.requires_grad_(False)
            try:
                d_fake = self.critic(torch.cat([self._condition_image(source), fake], 1))
            finally:
                self.critic.requires_grad_(True)
            loss = loss + self.adversarial_weight * generator_objective(self.objective, d_fake)
        return loss

    def validation_loss(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self._translate(source) - target).abs().mean()

    # --------------------------------------------------------------- queries
    def model(self, source: torch.Tensor) -> torch.Tensor:
        """The translator as a Pyro program: ``x = G(source)`` (deterministic site ``"x"``)."""
        with pyro.plate("data", len(source)):
            return pyro.deterministic("x", self._translate(source), event_dim=3)

    def translate(self, source: Any) -> torch.Tensor:
        """The generator's output for a batch of source images."""
        s = self._check_source(source, "source").to(self.device)
        with torch.no_grad():
            return self.model(s)

    def _sample(self, n: int, source: Any = None, **condition: Any) -> torch.Tensor:
        if condition:
            raise ValueError(f"sample: unexpected condition {sorted(condition)}; give source=images")
        if source is None:
            raise ValueError("source: sample needs source images, e.g. sample(n, source=images)")
        s = self._check_source(source, "source").to(self.device)
        if len(s) == 1:
            s = s.expand(n, *s.shape[1:])
        elif len(s) != n:
            raise ValueError(f"source: expected 1 or n={n} images, got {len(s)}")
        return self.model(s)

    def score(self, data: Any) -> torch.Tensor:
        """Per-image mean absolute error of the translation of ``(source, target)`` pairs."""
        s, t = (p.to(self.device) for p in self.prepare_data(data, allow_empty=True))
        if not len(s):
            return s.new_zeros(0)
        with torch.no_grad():
            return flat_rows(self._translate(s) - t).abs().mean(1)

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(16, 1, 8, 8, generator=g)
        return ContractCase(cls(data_shape=(1, 8, 8), width=4), (occlude(x), x), {"steps": 3, "batch_size": 8},
                            sample_kwargs={"source": occlude(x[:1])})

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Edge maps to digits (pix2pix-style): before and after, PSNR against the input."""
        import os

        import probgen
        from ...gallery import TourSection, demo_source
        from ...metrics.images import psnr
        from ...plot import sample_grid, save_figure

        steps = 20 if quick else 150

        def demo():
            from probgen.models.gan.image import edges

            torch.manual_seed(0)
            train, test = probgen.datasets.load("mnist5k", split="train"), probgen.datasets.load("mnist5k", split="test")
            model = probgen.models.ImageToImageGAN(width=8)  # U-Net generator, patch critic, + L1
            model.fit((edges(train.x), train.x), steps=steps, batch_size=32, lr=1e-3, seed=0, progress=False)
            source = edges(test.x)
            return test.x, source, model.translate(source)

        target, source, output = demo()
        ours, base = float(psnr(target, output).mean()), float(psnr(target, source).mean())
        path = save_figure(sample_grid(torch.cat([source[:8], output[:8], target[:8]]), nrow=8,
                                       title="rows: edge map (input) / translated / real digit"),
                           os.path.join(out_dir, "image_to_image_gan.png"))
        return TourSection(cls.family, "Image-to-image GAN: edge maps to 28x28 digits",
                           [(path, "eight test digits: the edge map given (top), the GAN's image (middle), "
                                   "the real digit (bottom)")],
                           {"PSNR to the real digit": f"{ours:.1f} dB (the edge map itself: {base:.1f} dB)"},
                           demo_source(demo, steps=steps), "works" if ours > base + 3 else "limited")


class SuperResolutionGAN(ImageToImageGAN):
    r"""Super-resolution (SRGAN-style, Ledig et al. 2017): low-resolution -> ``data_shape``.

    The low-resolution image is upsampled bicubically, then a U-Net adds the missing
    detail (a residual); trained like ``ImageToImageGAN`` (PatchGAN critic + L1).
    ``fit(x_high)`` makes the low-resolution inputs by average pooling
    (``downsample``); ``fit((x_low, x_high))`` takes pairs. ``upscale(x_low)``.

    Arguments:
        factor: the upscaling factor (2 or 4: 14x14 or 7x7 -> 28x28).
        others: as for ``ImageToImageGAN``.

    Example:
        >>> import torch
        >>> x = torch.rand(16, 1, 28, 28)
        >>> sr = SuperResolutionGAN(factor=4, width=4)
        >>> _ = sr.fit(x, steps=2, progress=False, seed=0)
        >>> sr.upscale(downsample(x[:2], 4)).shape
        torch.Size([2, 1, 28, 28])
    """

    family = "super_resolution_gan"
    renamed_config_keys = {"loss": "objective", "image_shape": "data_shape"}

    def __init__(self, factor: int = 4, data_shape: Sequence[int] = (1, 28, 28), width: int = 16,
                 l1_weight: float = 100.0, adversarial_weight: float = 1.0, objective: str = "non_saturating",
                 spectral_norm: bool = True):
        check_positive("factor", factor, integer=True)
        shape = tuple(int(s) for s in data_shape)
        if len(shape) == 3 and (shape[1] % factor or shape[2] % factor):
            raise ValueError(f"factor: data_shape {shape} must be divisible by factor={factor}")
        self.factor = int(factor)
        super().__init__(data_shape, shape[0] if len(shape) == 3 else 1, width, l1_weight, adversarial_weight,
                         objective, spectral_norm)

    def _source_shape(self) -> tuple[int, ...]:
        c, h, w = self.data_shape
        return (c, h // self.factor, w // self.factor)

    def bicubic(self, low: torch.Tensor) -> torch.Tensor:
        """Bicubic upsampling to ``data_shape`` (clamped to [0, 1]): the classical baseline."""
        return F.interpolate(low, size=self.data_shape[1:], mode="bicubic", align_corners=False).clamp(0, 1)

    def _condition_image(self, source: torch.Tensor) -> torch.Tensor:
        return self.bicubic(source)

    def _translate(self, source: torch.Tensor) -> torch.Tensor:
        up = self.bicubic(source)
        return (up + self.generator(up)).clamp(0, 1)

    def prepare_data(self, data: Any, name: str = "data", *, allow_empty: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        data = _data_tensor(data, name)
        if isinstance(data, (tuple, list)):
            return super().prepare_data(data, name, allow_empty=allow_empty)
        high = as_tensor(data, name, ndim=4, shape=self.data_shape)
        if not allow_empty:
            require_examples(len(high), name)
        return downsample(high, self.factor), high

    def upscale(self, low: Any) -> torch.Tensor:
        """Super-resolve a batch of low-resolution images."""
        return self.translate(low)

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(16, 1, 8, 8, generator=g)
        return ContractCase(cls(factor=2, data_shape=(1, 8, 8), width=4), x, {"steps": 3, "batch_size": 8},
                            sample_kwargs={"source": downsample(x[:1], 2)})

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """7x7 to 28x28 digits: the GAN's upscaling beside bicubic interpolation."""
        import os

        import probgen
        from ...gallery import TourSection, demo_source
        from ...metrics.images import psnr
        from ...plot import sample_grid, save_figure

        steps = 20 if quick else 150

        def demo():
            from probgen.models.gan.image import downsample

            torch.manual_seed(0)
            train, test = probgen.datasets.load("mnist5k", split="train"), probgen.datasets.load("mnist5k", split="test")
            model = probgen.models.SuperResolutionGAN(factor=4, width=8)
            model.fit(train.x, steps=steps, batch_size=32, lr=1e-3, seed=0, progress=False)
            low = downsample(test.x, 4)  # 7x7
            return test.x, low, model.bicubic(low), model.upscale(low)

        high, low, bicubic, ours_img = demo()
        ours, base = float(psnr(high, ours_img).mean()), float(psnr(high, bicubic).mean())
        nearest = torch.nn.functional.interpolate(low[:8], scale_factor=4, mode="nearest")
        path = save_figure(sample_grid(torch.cat([nearest, bicubic[:8].clamp(0, 1), ours_img[:8], high[:8]]), nrow=8,
                                       title="rows: 7x7 input / bicubic / SR-GAN / real 28x28"),
                           os.path.join(out_dir, "super_resolution_gan.png"))
        return TourSection(cls.family, "Super-resolution GAN: 7x7 to 28x28 digits",
                           [(path, "eight test digits: the 7x7 input (top), bicubic upscaling, the GAN's "
                                   "upscaling and the real image (bottom)")],
                           {"PSNR to the real image": f"{ours:.1f} dB (bicubic {base:.1f} dB)"},
                           demo_source(demo, steps=steps), "works" if ours > base + 1 else "limited")
