"""Autoencoders: deterministic (optionally denoising) and adversarial (AAE).

The encoder/decoder pair (MLP or convolutional, sized from the data shape) is shared
with the VAE family (``probgen.models.autoencoders.vae``).
"""

from __future__ import annotations

__all__ = ["Autoencoder", "AdversarialAutoencoder", "Encoder", "Decoder"]

import math
from typing import Any, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_choice, check_positive, check_probability
from ...core.random import seeded
from ...core.engines import implements
from ...infer.adversarial import fit_adversarial
from ...infer.mle import fit_mle
from ...nn.conv import ConvDecoder, ConvEncoder
from ...nn.mlp import MLP, activation

NETWORKS = ("mlp", "conv")
CORRUPTIONS = (None, "gaussian", "masking", "salt_pepper")


# ------------------------------------------------------------------ networks
class Encoder(nn.Module):
    """Data (and optional one-hot labels) to a vector: a body sized from the data shape, then a linear head.

    Arguments:
        data_shape: shape of one example, e.g. ``(1, 28, 28)`` or ``(d,)``.
        out_dim: output size.
        network: ``"mlp"`` (flattens) or ``"conv"`` (images only).
        hidden: hidden sizes; the last is the width the labels are joined at.
        num_classes: size of the one-hot label input (0 for none).
    """

    def __init__(self, data_shape: Sequence[int], out_dim: int, network: str = "mlp",
                 hidden: Sequence[int] = (256,), num_classes: int = 0):
        super().__init__()
        width = int(hidden[-1])
        if network == "mlp":
            self.body = nn.Sequential(nn.Flatten(), MLP(math.prod(data_shape), width, hidden=tuple(hidden[:-1])),
                                      activation("relu"))
        else:
            self.body = nn.Sequential(ConvEncoder(data_shape, width), activation("relu"))
        self.head = nn.Linear(width + num_classes, int(out_dim))

    def forward(self, x: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        if onehot is not None:
            h = torch.cat([h, onehot], -1)
        return self.head(h)


class Decoder(nn.Module):
    """A latent vector (and optional one-hot labels) to an output of ``data_shape`` (no final activation).

    Arguments:
        latent_dim: size of the code.
        data_shape: shape of one example.
        network: ``"mlp"`` or ``"conv"``.
        hidden: hidden sizes of the MLP, from the data side (used reversed), or the width of the conv stem.
        num_classes: size of the one-hot label input (0 for none).
        label_skip: also add a learned offset per label to the output (a linear map from the
            one-hot label straight to the output, beside the network).
    """

    def __init__(self, latent_dim: int, data_shape: Sequence[int], network: str = "mlp",
                 hidden: Sequence[int] = (256,), num_classes: int = 0, label_skip: bool = False):
        super().__init__()
        self.data_shape = tuple(data_shape)
        if network == "mlp":
            self.net = MLP(latent_dim + num_classes, math.prod(data_shape), hidden=tuple(hidden)[::-1])
        else:
            self.net = ConvDecoder(latent_dim + num_classes, data_shape)
        self.skip = nn.Linear(num_classes, math.prod(data_shape), bias=False) if label_skip and num_classes else None

    def forward(self, z: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        lead = z.shape[:-1]  # (batch,) or (particles, batch) under Pyro's vectorised particles
        if onehot is not None:
            onehot = onehot.expand(*lead, onehot.shape[-1])
            z = torch.cat([z, onehot], -1)
        out = self.net(z.reshape(-1, z.shape[-1]))
        if self.skip is not None and onehot is not None:
            out = out + self.skip(onehot.reshape(-1, onehot.shape[-1])).reshape(out.shape)
        return out.reshape(*lead, *self.data_shape)


# ---------------------------------------------------------- shared plumbing
class _CodecMixin:
    """Data-shape handling shared by the autoencoder families, the VAE and the semi-supervised models.

    ``data_shape=None`` builds the networks from the first data seen by ``fit``
    (the shape is then kept in the saved state).
    """

    data_shape: tuple[int, ...] | None
    network: str = "mlp"  # families without a choice of architecture keep this default

    def _init_shape(self, data_shape, network: str, latent_dim: int, hidden) -> None:
        check_choice("network", network, NETWORKS)
        check_positive("latent_dim", latent_dim, integer=True)
        hidden = tuple(hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden: expected a non-empty sequence of positive integers, got {hidden!r}")
        self.network, self.latent_dim, self.hidden = network, int(latent_dim), hidden
        self.data_shape = None
        if data_shape is not None:
            self._build(self._check_data_shape(data_shape))

    def _check_data_shape(self, shape) -> tuple[int, ...]:
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise ValueError(f"data_shape: expected a shape like (1, 28, 28) or (d,), got {shape!r}") from None
        if not shape or min(shape) < 1:
            raise ValueError(f"data_shape: expected positive sizes, got {shape}")
        if self.network == "conv" and len(shape) != 3:
            raise ValueError(f"network: 'conv' needs images of shape (channels, height, width); data_shape is {shape}")
        return shape

    @property
    def built(self) -> bool:
        return self.data_shape is not None

    def _require_built(self) -> None:
        self._require_fitted(type(self).__name__, self.built,
                             "the networks are built by fit (or give data_shape=...); fit the model first")

    def get_state_json(self) -> dict:
        return {"data_shape": list(self.data_shape) if self.data_shape else None}

    def set_state_json(self, state: dict) -> None:
        if state.get("data_shape") and not self.built:
            self._build(tuple(state["data_shape"]))

    def _as_data(self, x: Any, name: str = "x") -> torch.Tensor:
        """Check ``x`` against ``data_shape`` (building the networks on first sight)."""
        if hasattr(x, "x") and hasattr(x, "y") and not isinstance(x, torch.Tensor):  # a probgen Dataset
            x = x.x
        t = as_tensor(x, name)
        if t.dim() < 2:
            raise ValueError(f"{name}: expected a batch of examples (n, *data_shape), got shape {tuple(t.shape)}")
        if not self.built:
            self._build(self._check_data_shape(t.shape[1:]))
        if tuple(t.shape[1:]) != self.data_shape:
            what = "images" if len(self.data_shape) == 3 else "examples"
            raise ValueError(f"{name}: expected {what} of shape {self.data_shape} (the model's data_shape), "
                             f"got {tuple(t.shape[1:])} per example")
        self._check_values(t, name)
        return t.to(self.device)

    def _check_values(self, t: torch.Tensor, name: str) -> None:
        pass

    def _build_for_fit(self, data: Any, options: dict) -> None:
        """Build the networks from the data under the fit's seed (so ``seed=`` also fixes the initial weights)."""
        if not self.built:
            with seeded(options.get("seed")):
                self.prepare_data(data)


def _in_unit_interval(t: torch.Tensor, name: str, hint: str) -> None:
    if len(t) and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"{name}: expected values in [0, 1] {hint}, got range [{float(t.min()):.3g}, {float(t.max()):.3g}]")


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


# -------------------------------------------------------------- autoencoder
class Autoencoder(_CodecMixin, Model):
    r"""A deterministic autoencoder x -> code -> x̂, optionally denoising.

    Trained by the ``mle`` engine on ``training_loss`` (the reconstruction loss:
    binary cross-entropy for data in [0, 1], or squared error). With ``corruption``
    the encoder sees a corrupted input and learns to restore the clean one (a
    denoising autoencoder). ``score(x)`` is the per-example reconstruction error
    (the anomaly score); ``log_prob`` raises ``NoLikelihoodError``. ``sample`` decodes
    codes drawn from a Gaussian fitted to the training codes.

    Arguments:
        data_shape: shape of one example (``(1, 28, 28)``, ``(d,)``); ``None``: taken from the data at ``fit``.
        latent_dim: size of the code.
        network: ``"mlp"`` or ``"conv"`` encoder/decoder.
        hidden: hidden layer sizes (MLP) or stem width (conv).
        reconstruction: ``"bce"`` (data in [0, 1]) or ``"mse"``.
        corruption: ``None``, ``"gaussian"`` (add N(0, noise_level²)), ``"masking"`` (zero a
            ``noise_level`` fraction of entries) or ``"salt_pepper"`` (set that fraction to 0 or 1).
        noise_level: strength of the corruption.

    Example:
        >>> import torch, probgen
        >>> x = (torch.rand(64, 10) < 0.5).float()
        >>> ae = probgen.models.Autoencoder(latent_dim=4, hidden=(32,))
        >>> _ = ae.fit(x, steps=20, progress=False, seed=0)
        >>> ae.encode(x).shape, ae.score(x).shape
        (torch.Size([64, 4]), torch.Size([64]))
    """

    family = "autoencoder"
    renamed_config_keys = {"loss": "reconstruction"}
    default_inference = "mle"
    log_prob_kind = None
    log_prob_alternative = "score(x) (the per-example reconstruction error)"

    def __init__(self, data_shape: Sequence[int] | None = None, latent_dim: int = 16, network: str = "mlp",
                 hidden: Sequence[int] = (256,), reconstruction: str = "bce", corruption: str | None = None,
                 noise_level: float = 0.3):
        super().__init__()
        self.reconstruction = check_choice("reconstruction", reconstruction, ("bce", "mse"))
        self.corruption = check_choice("corruption", corruption, CORRUPTIONS)
        check_positive("noise_level", noise_level)
        if corruption in ("masking", "salt_pepper"):
            check_probability("noise_level", noise_level)
        self.noise_level = float(noise_level)
        self._init_shape(data_shape, network, latent_dim, hidden)

    def _build(self, shape: tuple[int, ...]) -> None:
        self.data_shape = shape
        self.encoder = Encoder(shape, self.latent_dim, self.network, self.hidden)
        self.decoder = Decoder(self.latent_dim, shape, self.network, self.hidden)
        # a Gaussian over the training codes, for sampling
        self.register_buffer("code_mean", torch.zeros(self.latent_dim))
        self.register_buffer("code_scale_tril", torch.eye(self.latent_dim))

    def _check_values(self, t: torch.Tensor, name: str) -> None:
        if self.reconstruction == "bce":
            _in_unit_interval(t, name, "for reconstruction='bce' (use reconstruction='mse' for other data)")

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor]:
        return (self._as_data(data, name).cpu(),)

    # ---------------------------------------------------------------- training
    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the model's corruption applied (unchanged when there is none)."""
        if self.corruption == "gaussian":
            noisy = x + self.noise_level * torch.randn_like(x)
            return noisy.clamp(0, 1) if self.reconstruction == "bce" else noisy
        if self.corruption == "masking":
            return x * (torch.rand_like(x) >= self.noise_level)
        if self.corruption == "salt_pepper":
            flip = torch.rand_like(x) < self.noise_level
            return torch.where(flip, (torch.rand_like(x) < 0.5).to(x.dtype), x)
        return x

    def _recon_error(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example reconstruction loss summed over the dimensions of one example."""
        if self.reconstruction == "bce":
            err = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            err = (out - x) ** 2
        return err.reshape(len(x), -1).sum(-1)

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean reconstruction loss of a minibatch (of the corrupted input, for a denoising AE)."""
        out = self.decoder(self.encoder(self.corrupt(x)))
        return self._recon_error(out, x).mean()

    def validation_loss(self, x: torch.Tensor) -> torch.Tensor:
        return self._recon_error(self.decoder(self.encoder(x)), x).mean()

    @implements("mle")
    def _fit_mle(self, data: Any, **options: Any):
        self._build_for_fit(data, options)
        result = fit_mle(self, data, **options)
        self._estimate_code_distribution(self.prepare_data(data)[0])
        return result

    @torch.no_grad()
    def _estimate_code_distribution(self, x: torch.Tensor) -> None:
        codes = torch.cat([self.encode(x[s]) for s in _chunks(len(x), 1024)])
        mean = codes.mean(0)
        centred = codes - mean
        cov = centred.T @ centred / max(1, len(codes) - 1) + 1e-4 * torch.eye(self.latent_dim, device=codes.device)
        self.code_mean.copy_(mean)
        self.code_scale_tril.copy_(torch.linalg.cholesky(cov))

    # ----------------------------------------------------------------- queries
    def encode(self, x: Any) -> torch.Tensor:
        """Codes ``(n, latent_dim)`` of the examples ``x``."""
        self._require_built()
        x = self._as_data(x)
        with torch.no_grad():
            return torch.cat([self.encoder(x[s]) for s in _chunks(len(x), 2048)]) if len(x) else x.new_zeros(0, self.latent_dim)

    def decode(self, z: Any) -> torch.Tensor:
        """Reconstructions in data space (probabilities for reconstruction='bce') from codes ``z``."""
        self._require_built()
        z = as_tensor(z, "z", ndim=2, shape=(self.latent_dim,), device=self.device)
        with torch.no_grad():
            out = self.decoder(z)
        return torch.sigmoid(out) if self.reconstruction == "bce" else out

    def reconstruct(self, x: Any) -> torch.Tensor:
        """``decode(encode(x))``: for a denoising autoencoder, the denoised examples."""
        return self.decode(self.encode(x))

    def score(self, x: Any) -> torch.Tensor:
        """Per-example reconstruction error (higher = more anomalous)."""
        self._require_built()
        x = self._as_data(x)
        with torch.no_grad():
            parts = [self._recon_error(self.decoder(self.encoder(x[s])), x[s]) for s in _chunks(len(x), 2048)]
        return torch.cat(parts) if parts else x.new_zeros(0)

    def _sample(self, n: int) -> torch.Tensor:
        self._require_built()
        eps = torch.randn(n, self.latent_dim, device=self.device)
        return self.decode(self.code_mean + eps @ self.code_scale_tril.T)

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(64, 1, 6, 6, generator=g) < 0.3).float()
        return ContractCase(cls(latent_dim=3, hidden=(16,), corruption="masking", noise_level=0.2), x,
                            {"steps": 15, "lr": 1e-2}, log_prob_data=x[:4])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """A denoising autoencoder on digits: clean, noisy and denoised test images, PSNR against a blur."""
        import os

        import probgen
        from ...gallery import TourSection, demo_source
        from ...metrics.images import psnr
        from ...plot import sample_grid, save_figure
        from ...tasks.denoise import gaussian_blur

        epochs = 3 if quick else 30

        def demo():
            torch.manual_seed(0)
            train, test = probgen.datasets.load("digits", split="train"), probgen.datasets.load("digits", split="test")
            model = probgen.models.Autoencoder(latent_dim=16, hidden=(256,), corruption="gaussian", noise_level=0.3)
            model.fit(train.x, epochs=epochs, lr=3e-3, seed=0, progress=False)
            noisy = (test.x + 0.3 * torch.randn(test.x.shape)).clamp(0, 1)
            denoised = model.reconstruct(noisy)
            return test.x, noisy, denoised

        clean, noisy, denoised = demo()
        ours, blurred, raw = (float(psnr(clean, e).mean()) for e in (denoised, gaussian_blur(noisy, 0.7), noisy))
        path = save_figure(sample_grid(torch.cat([clean[:10], noisy[:10], denoised[:10]]), nrow=10,
                                       title="rows: clean / noisy (sd 0.3) / denoised"),
                           os.path.join(out_dir, "autoencoder_denoising.png"))
        return TourSection(cls.family, "Denoising autoencoder on 8x8 digits",
                           [(path, "ten test digits: clean (top), with Gaussian noise (middle), denoised by the "
                                   "autoencoder (bottom)")],
                           {"PSNR on the test split": f"{ours:.1f} dB (noisy input {raw:.1f}, Gaussian blur {blurred:.1f})"},
                           demo_source(demo, epochs=epochs), "works" if ours > max(raw, blurred) else "limited")


# ------------------------------------------------------ adversarial autoencoder
class AdversarialAutoencoder(Autoencoder):
    r"""An autoencoder whose codes are pushed towards a N(0, I) prior by a discriminator.

    The ``adversarial`` engine alternates a critic step (the discriminator tells prior
    draws from codes of data) and a generator step (encoder and decoder minimise the
    reconstruction loss plus ``adversarial_weight`` times the non-saturating loss of
    fooling the critic) (Makhzani et al. 2016, "Adversarial Autoencoders"). Sampling
    decodes prior draws. ``model`` is the generative Pyro program (z ~ prior, x ~ decoder).

    Arguments:
        (as ``Autoencoder``) plus
        adversarial_weight: weight of the prior-matching term in the generator loss.
        critic_hidden: hidden sizes of the discriminator on the codes.

    Example:
        >>> import torch, probgen
        >>> x = (torch.rand(64, 10) < 0.5).float()
        >>> aae = probgen.models.AdversarialAutoencoder(latent_dim=2, hidden=(32,), critic_hidden=(16,))
        >>> _ = aae.fit(x, steps=20, lr=1e-3, progress=False, seed=0)
        >>> aae.sample(5, seed=0).shape
        torch.Size([5, 10])
    """

    family = "adversarial_autoencoder"
    default_inference = "adversarial"
    declined_engines = {"mle": "an AdversarialAutoencoder trains with 'adversarial'; "
                               "use Autoencoder for a plain reconstruction fit"}
    log_prob_kind = None

    def __init__(self, data_shape: Sequence[int] | None = None, latent_dim: int = 8, network: str = "mlp",
                 hidden: Sequence[int] = (256,), reconstruction: str = "bce", corruption: str | None = None,
                 noise_level: float = 0.3, adversarial_weight: float = 1.0, critic_hidden: Sequence[int] = (256, 256)):
        check_positive("adversarial_weight", adversarial_weight, strict=False)
        self.adversarial_weight = float(adversarial_weight)
        self.critic_hidden = tuple(int(h) for h in critic_hidden)
        super().__init__(data_shape, latent_dim, network, hidden, reconstruction, corruption, noise_level)

    def _build(self, shape: tuple[int, ...]) -> None:
        super()._build(shape)
        self.critic = MLP(self.latent_dim, 1, hidden=self.critic_hidden, act="leaky_relu")

    # the adversarial engine's interface
    def critic_parameters(self):
        return self.critic.parameters()

    def generator_parameters(self):
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def critic_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of the critic telling prior draws (1) from data codes (0)."""
        with torch.no_grad():
            fake = self.encoder(x)
        real = torch.randn_like(fake)
        logits_real, logits_fake = self.critic(real), self.critic(fake)
        return (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
                + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))

    def generator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction loss plus the weighted loss of the codes failing to fool the critic."""
        code = self.encoder(self.corrupt(x))
        recon = self._recon_error(self.decoder(code), x).mean()
        logits = self.critic(code)
        fool = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return recon + self.adversarial_weight * fool

    def model(self, x: torch.Tensor | None = None, n: int | None = None) -> torch.Tensor:
        """The generative program: z ~ N(0, I), x ~ Bernoulli(decoder(z)) (or Normal(decoder(z), 1) for mse)."""
        self._require_built()
        n = len(x) if x is not None else int(n or 1)
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(n, self.latent_dim, device=self.device), 1.0).to_event(1))
            out = self.decoder(z)
            px = dist.Bernoulli(logits=out) if self.reconstruction == "bce" else dist.Normal(out, 1.0)
            return pyro.sample("x", px.to_event(len(self.data_shape)), obs=x)

    @implements("adversarial")
    def _fit_adversarial(self, data: Any, **options: Any):
        self._build_for_fit(data, options)
        return fit_adversarial(self, data, **options)


    def _sample(self, n: int) -> torch.Tensor:
        self._require_built()
        return self.decode(torch.randn(n, self.latent_dim, device=self.device))

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(64, 1, 6, 6, generator=g) < 0.3).float()
        return ContractCase(cls(latent_dim=2, hidden=(16,), critic_hidden=(16,)), x, {"steps": 15, "lr": 1e-3},
                            log_prob_data=x[:4])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """An adversarial autoencoder on digits: samples decoded from the prior, and codes against the prior."""
        import os

        import matplotlib.pyplot as plt

        import probgen
        from ... import plot
        from ...gallery import TourSection, demo_source

        steps = 150 if quick else 1500

        def demo():
            torch.manual_seed(0)
            train = probgen.datasets.load("digits", split="train")
            model = probgen.models.AdversarialAutoencoder(latent_dim=2, hidden=(256, 128))
            model.fit(train.x, steps=steps, batch_size=128, lr=1e-3, seed=0, progress=False)
            codes = model.encode(train.x)  # pushed towards N(0, I) by the critic
            samples = model.sample(40, seed=0)  # decoded prior draws
            return train, codes, samples

        train, codes, samples = demo()
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
        plot.sample_grid(samples, nrow=8, ax=left, title="decoded draws from the N(0, I) prior")
        c = codes.detach().cpu().numpy()
        sc = right.scatter(c[:, 0], c[:, 1], c=train.y.numpy(), cmap="tab10", s=4)
        right.legend(*sc.legend_elements(), fontsize=6, title="digit", loc="upper right")
        right.add_patch(plt.Circle((0, 0), 2.0, fill=False, ls="--", color="k"))
        right.set(title="codes of the training digits (dashed: prior's 2 sd)", aspect="equal")
        path = plot.save_figure(fig, os.path.join(out_dir, "adversarial_autoencoder.png"))
        inside = float((codes.detach().pow(2).sum(1) < 4.0).float().mean())
        return TourSection(cls.family, "Adversarial autoencoder on 8x8 digits (2-D codes)",
                           [(path, "left: 40 digits decoded from draws of the prior; right: each training digit's "
                                   "2-D code, coloured by its label, against the prior")],
                           {"codes within the prior's 2 sd circle": f"{100 * inside:.0f}% (prior: 86%)"},
                           demo_source(demo, steps=steps), "works" if 0.7 < inside < 0.97 else "limited")
