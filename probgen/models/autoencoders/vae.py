"""Variational autoencoders (Kingma & Welling 2014), β-VAE and conditional VAE, as a Pyro model/guide pair."""

from __future__ import annotations

__all__ = ["VAE"]

import contextlib
import math
from typing import Any, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_choice, check_positive, class_labels
from ...core.random import seeded
from ...core.engines import implements
from .autoencoder import Decoder, Encoder, _chunks, _CodecMixin

LIKELIHOODS = ("bernoulli", "gaussian")


class VAE(_CodecMixin, Model, PyroModule):
    r"""A variational autoencoder: z ~ N(0, I), x ~ p(x | decoder(z)), with an amortised guide q(z | x).

    ``model`` and ``guide`` are Pyro programs over a minibatch plate; the ``svi``
    engine maximises the ELBO (``fit(x, jit=True)`` uses Pyro's JIT ELBO). The
    encoder and decoder are ``PyroModule`` networks (MLP or convolutional) sized from
    the data shape. With ``num_classes`` the model is a conditional VAE: encoder and
    decoder also see the one-hot label; data is ``(x, y)`` and ``sample(n, y=c)``
    draws digits of class ``c``. ``beta`` scales the KL term (β-VAE) during training.

    ``log_prob(x)`` is the ELBO per example (analytic KL, one reconstruction draw);
    ``log_prob(x, num_particles=k)`` the importance-weighted bound of Burda et al.
    (2016), tighter as k grows (both with β = 1: true lower bounds on log p(x)).

    Arguments:
        data_shape: shape of one example; ``None``: taken from the data at ``fit``.
        latent_dim: size of z.
        network: ``"mlp"`` or ``"conv"``.
        hidden: hidden sizes (data side first) of the MLPs, or the conv stem width.
        likelihood: ``"bernoulli"`` (binary data) or ``"gaussian"`` (a learned global scale).
        beta: weight of the KL term in training (1 = the ELBO).
        num_classes: number of label classes for a conditional VAE (``None``: unconditional).
        label_skip: for a conditional VAE, the label also adds a learned offset per class to the
            decoder's output (a linear map from the one-hot label to the logits, beside the network):
            a direct, low-dimensional path for what each class looks like, which private training
            (``privacy=``) learns from far fewer noisy steps than the same through the network
            (``probgen bench privacy``).

    Example:
        >>> import torch, probgen
        >>> x = (torch.rand(64, 1, 4, 4) < 0.5).float()
        >>> vae = probgen.models.VAE(latent_dim=2, hidden=(32,))
        >>> _ = vae.fit(x, steps=20, progress=False, seed=0)
        >>> elbo, iwae = vae.log_prob(x, seed=0), vae.log_prob(x, num_particles=50, seed=0)
        >>> bool(iwae.mean() > elbo.mean())
        True
    """

    family = "vae"
    default_inference = "svi"
    log_prob_kind = "lower_bound"
    max_plate_nesting = 1

    def __init__(self, data_shape: Sequence[int] | None = None, latent_dim: int = 16, network: str = "mlp",
                 hidden: Sequence[int] = (512, 256), likelihood: str = "bernoulli", beta: float = 1.0,
                 num_classes: int | None = None, label_skip: bool = False):
        super().__init__()
        if not isinstance(label_skip, bool):
            raise ValueError(f"label_skip: expected True or False, got {label_skip!r}")
        if label_skip and num_classes is None:
            raise ValueError("label_skip: a per-class output offset needs num_classes (a conditional VAE)")
        self.label_skip = label_skip
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.beta = float(check_positive("beta", beta))
        if num_classes is not None:
            check_positive("num_classes", num_classes, integer=True)
        self.num_classes = None if num_classes is None else int(num_classes)
        self._init_shape(data_shape, network, latent_dim, hidden)

    def _build(self, shape: tuple[int, ...]) -> None:
        self.data_shape = shape
        c = self.num_classes or 0
        self.encoder = Encoder(shape, 2 * self.latent_dim, self.network, self.hidden, c)
        self.decoder = Decoder(self.latent_dim, shape, self.network, self.hidden, c, self.label_skip)
        to_pyro_module_(self.encoder)
        to_pyro_module_(self.decoder)
        if self.likelihood == "gaussian":
            self.log_scale = torch.nn.Parameter(torch.tensor(math.log(0.1)))

    # ------------------------------------------------------------------- data
    def _check_values(self, t: torch.Tensor, name: str) -> None:
        if self.likelihood == "bernoulli":
            if not torch.all((t == 0) | (t == 1)):
                raise ValueError(f"{name}: likelihood='bernoulli' needs binary data in {{0, 1}}; binarize first "
                                 "(e.g. (x > 0.5).float(), or the '*_binary' data sets) or use likelihood='gaussian'")

    def _labels(self, y: Any, n: int, name: str = "y") -> torch.Tensor | None:
        labels = class_labels(y, self.num_classes, n, name)
        return None if labels is None else labels.to(self.device)

    def _split(self, data: Any, y: Any = None, name: str = "data") -> tuple[torch.Tensor, torch.Tensor | None]:
        if hasattr(data, "x") and hasattr(data, "y") and not isinstance(data, torch.Tensor):  # a probgen Dataset
            data = (data.x, data.y) if self.num_classes is not None else data.x
        if isinstance(data, tuple) and len(data) == 2 and y is None:
            x, y = data
        else:
            x = data
        x = self._as_data(x, name if y is None else f"{name} (x)")
        return x, self._labels(y, len(x), f"{name} (y)" if name == "data" else "y")

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        x, y = self._split(data, name=name)
        return (x.cpu(),) if y is None else (x.cpu(), y.cpu())

    def _onehot(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return None if y is None else F.one_hot(y, self.num_classes).to(torch.get_default_dtype())

    # ----------------------------------------------------------- Pyro programs
    def _beta_scale(self):
        return contextlib.nullcontext() if self.beta == 1.0 else poutine.scale(scale=self.beta)

    def _px(self, out: torch.Tensor) -> dist.Distribution:
        event = len(self.data_shape)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False).to_event(event)
        return dist.Normal(out, self.log_scale.exp()).to_event(event)

    def _qz(self, x: torch.Tensor, onehot: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.encoder(x, onehot).chunk(2, -1)
        return loc, F.softplus(raw) + 1e-4

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, n: int | None = None) -> torch.Tensor:
        """z ~ N(0, I); x ~ Bernoulli(logits=decoder(z, y)) or Normal(decoder(z, y), σ); observed when ``x`` is given."""
        self._require_built()
        n = len(x) if x is not None else (len(y) if y is not None else int(n or 1))
        onehot = self._onehot(y)
        with self.data_plate(n, device=self.device):
            with self._beta_scale():
                z = pyro.sample("z", dist.Normal(torch.zeros(n, self.latent_dim, device=self.device), 1.0).to_event(1))
            return pyro.sample("x", self._px(self.decoder(z, onehot)), obs=x)

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, n: int | None = None) -> torch.Tensor:
        """q(z | x, y) = Normal(encoder(x, y)), a diagonal Gaussian."""
        self._require_built()
        loc, scale = self._qz(x, self._onehot(y))
        with self.data_plate(len(x), device=self.device):
            with self._beta_scale():
                return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    @implements("svi")
    def _fit_svi(self, data: Any, **options: Any):
        from ...infer.svi import fit_svi

        self._build_for_fit(data, options)
        return fit_svi(self, data, **options)

    # ---------------------------------------------------------------- queries
    def _log_px(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "bernoulli":
            lp = -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none")
        else:
            lp = dist.Normal(out, self.log_scale.exp()).log_prob(x)
        return lp.reshape(*out.shape[:-len(self.data_shape)], -1).sum(-1)

    def log_prob(self, x: Any, y: Any = None, num_particles: int = 1, chunk_size: int = 65536,
                 seed: int | None = None) -> torch.Tensor:
        """A lower bound on log p(x) per example (nats).

        Arguments:
            x: examples ``(n, *data_shape)``, or ``(x, y)`` / a Dataset for a conditional VAE.
            y: labels, for a conditional VAE (then the bound is on log p(x | y)).
            num_particles: 1 = the ELBO (analytic KL); k > 1 = the importance-weighted bound
                log (1/k) Σ p(x, z_i) / q(z_i | x) with z_i ~ q (Burda et al. 2016).
            chunk_size: at most this many (example, particle) pairs go through the decoder at once.
            seed: seeds the draws.
        """
        self._require_built()
        check_positive("num_particles", num_particles, integer=True)
        check_positive("chunk_size", chunk_size, integer=True)
        x, y = self._split(x, y, name="x")
        out = []
        # Written with torch directly (not through Pyro traces): the per-example weights
        # of many particles need one batched decoder call per chunk, which Pyro's
        # vectorised importance sampling would sum over the data plate.
        with seeded(seed), torch.no_grad():
            rows = max(1, chunk_size // num_particles)
            for s in _chunks(len(x), rows):
                out.append(self._bound(x[s], None if y is None else y[s], int(num_particles), chunk_size))
        return torch.cat(out) if out else x.new_zeros(0)

    def _bound(self, x: torch.Tensor, y: torch.Tensor | None, k: int, chunk_size: int) -> torch.Tensor:
        onehot = self._onehot(y)
        loc, scale = self._qz(x, onehot)
        if k == 1:
            z = loc + scale * torch.randn_like(loc)
            kl = (0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()).sum(-1)
            return self._log_px(self.decoder(z, onehot), x) - kl
        q, prior = dist.Normal(loc, scale), dist.Normal(torch.zeros_like(loc), 1.0)
        per = max(1, chunk_size // len(x))
        parts = []
        for s in _chunks(k, per):
            z = q.sample((s.stop - s.start,))  # (particles, batch, latent)
            flat = z.reshape(-1, self.latent_dim)
            oh = None if onehot is None else onehot.repeat(len(z), 1)
            dec = self.decoder(flat, oh).reshape(len(z), len(x), *self.data_shape)
            log_w = self._log_px(dec, x) + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
            parts.append(torch.logsumexp(log_w, 0))
        return torch.logsumexp(torch.stack(parts), 0) - math.log(k)

    def score(self, x: Any, y: Any = None, num_particles: int = 1) -> torch.Tensor:
        """Negative bound on log p(x) per example (higher = more anomalous)."""
        return -self.log_prob(x, y, num_particles=num_particles)

    def encode(self, x: Any, y: Any = None) -> torch.Tensor:
        """Posterior means E[z | x] ``(n, latent_dim)``."""
        self._require_built()
        x, y = self._split(x, y, name="x")
        with torch.no_grad():
            return torch.cat([self._qz(x[s], self._onehot(None if y is None else y[s]))[0]
                              for s in _chunks(len(x), 2048)]) if len(x) else x.new_zeros(0, self.latent_dim)

    def decode(self, z: Any, y: Any = None) -> torch.Tensor:
        """Means of p(x | z) (pixel probabilities for a Bernoulli likelihood)."""
        self._require_built()
        z = as_tensor(z, "z", ndim=2, shape=(self.latent_dim,), device=self.device)
        onehot = self._onehot(self._labels(y, len(z)))
        with torch.no_grad():
            out = self.decoder(z, onehot)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def reconstruct(self, x: Any, y: Any = None) -> torch.Tensor:
        """``decode(encode(x))``."""
        x, y = self._split(x, y, name="x")
        return self.decode(self.encode(x, y), y)

    def _sample(self, n: int, y: Any = None, mean: bool = True) -> torch.Tensor:
        """``mean=True``: decoder means (the usual picture); ``False``: draws from p(x | z)."""
        self._require_built()
        labels = self._labels(y, n)
        z = torch.randn(n, self.latent_dim, device=self.device)
        if mean:
            return self.decode(z, labels)
        return self._px(self.decoder(z, self._onehot(labels))).sample()

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(64, 1, 6, 6, generator=g) < 0.3).float()
        return ContractCase(cls(latent_dim=2, hidden=(16,)), x, {"steps": 15, "lr": 1e-2}, log_prob_data=x[:4])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """A conditional VAE on binarized digits: four samples of each digit, read back by a classifier."""
        import os

        import probgen
        from ...gallery import TourSection, demo_source, digit_agreement
        from ...plot import sample_grid, save_figure

        epochs = 5 if quick else 60

        def demo():
            torch.manual_seed(0)
            train = probgen.datasets.load("digits_binary", split="train")
            model = probgen.models.VAE(latent_dim=8, hidden=(256,), num_classes=10)
            model.fit(train, epochs=epochs, lr=3e-3, seed=0, progress=False)  # SVI on the Pyro model/guide
            labels = torch.arange(10).repeat_interleave(10)
            samples = model.sample(100, seed=0, y=labels)
            test = probgen.datasets.load("digits_binary", split="test")
            bound = model.log_prob(test.x, y=test.y, num_particles=50).mean()  # IWAE lower bound
            return labels, samples, bound

        labels, samples, bound = demo()
        read = digit_agreement(samples, labels)
        path = save_figure(sample_grid(samples[::2], nrow=10, title="conditional VAE: five samples of each digit"),
                           os.path.join(out_dir, "vae.png"))
        return TourSection(cls.family, "Conditional VAE on binarized 8x8 digits",
                           [(path, "samples of the conditional VAE (the decoder's pixel probabilities), digits 0-9 "
                                   "in reading order, five of each")],
                           {"samples read as the digit asked for": f"{100 * read:.0f}% (a logistic regression "
                                                                    "trained on real digits; it reads 96% of real ones)",
                            "test log-likelihood, IWAE bound (k=50)": f"{float(bound):.1f} nats per image"},
                           demo_source(demo, epochs=epochs), "works" if read >= 0.8 else "limited")
