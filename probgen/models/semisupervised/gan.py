"""The semi-supervised GAN of Salimans et al. (2016): a K+1-class discriminator, feature matching."""

from __future__ import annotations

__all__ = ["SemiSupervisedGAN"]

import copy
import math
from typing import Any, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ...core.base import ContractCase, Model
from ...core.checks import check_labels, check_positive, check_probability
from ...core.engines import implements
from ...core.random import seeded
from ...nn.averaging import update_average
from ..autoencoders.autoencoder import _CodecMixin
from .vae import _chunks, replicate_labelled, split_partly_labelled


class _NoisyCritic(nn.Module):
    """MLP discriminator with Gaussian noise before every layer (training only), as in the paper's MNIST net."""

    def __init__(self, in_dim: int, hidden: Sequence[int], num_classes: int, input_noise: float, hidden_noise: float,
                 weight_norm: bool = True):
        super().__init__()
        sizes = [in_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], num_classes)
        if weight_norm:  # the paper's discriminator is weight-normalised (Salimans & Kingma 2016)
            for layer in [*self.layers, self.out]:
                nn.utils.parametrizations.weight_norm(layer)
        self.input_noise, self.hidden_noise = input_noise, hidden_noise

    def _noise(self, h: torch.Tensor, sd: float) -> torch.Tensor:
        return h + sd * torch.randn_like(h) if self.training and sd > 0 else h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``(n, K)`` and the last hidden layer (the features matched by the generator)."""
        h = self._noise(x, self.input_noise)
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h if i == 0 else self._noise(h, self.hidden_noise)))
        return self.out(self._noise(h, self.hidden_noise)), h


class SemiSupervisedGAN(_CodecMixin, Model):
    r"""A semi-supervised GAN (Salimans et al. 2016): the discriminator is a K+1-class classifier.

    The discriminator outputs K logits l_1..l_K for the real classes; the logit of the
    (K+1)-th class, "generated", is fixed at 0, so D(x) = Z / (Z + 1) with Z = sum_k exp l_k is the
    probability that x is real. Its loss is the cross-entropy on the labelled examples plus
    ``unsupervised_weight`` times the GAN loss -log D(x) - log(1 - D(G(z))) on every example; the generator matches the mean of
    the discriminator's last hidden layer on real and generated data (feature matching).
    Trained by probgen's ``adversarial`` engine (``critic_loss`` / ``generator_loss``).
    ``fit((x, y))`` takes ``-1`` (or NaN) for unknown labels; labelled examples are repeated to
    make up ``labelled_share`` of each epoch (a ``fit`` option, default 0.5, as the paper's equal
    labelled and unlabelled batches); the learning rate defaults to the paper's 0.003.

    ``predict`` / ``predict_proba`` use the discriminator's K classes. ``sample(n)`` draws from the
    generator (an unconditional one, as in the paper); ``sample(n, label=c)`` keeps the draws the
    discriminator classifies as c (rejection). A GAN has no likelihood: ``log_prob`` raises;
    ``score(x) = -log D(x)``. With ``ema`` set, predictions (and the rejection above) use a moving
    average of the discriminator's weights (Polyak averaging), which smooths the last iterates'
    noise; training itself is unchanged.

    Arguments:
        data_shape: shape of one example (values in [0, 1]); ``None``: taken from the data at ``fit``.
        num_classes: K.
        latent_dim: size of z.
        hidden: the generator's hidden sizes (batch norm and softplus between layers).
        critic_hidden: the discriminator's hidden sizes.
        input_noise, hidden_noise: standard deviations of the discriminator's Gaussian noise layers.
        weight_norm: weight normalisation of the discriminator's layers.
        unsupervised_weight: weight of the real / generated term against the labelled cross-entropy
            (0.5 in the paper's code).
        ema: decay of the averaged discriminator used for predictions (e.g. 0.99), or ``None``.

    References:
        Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen (2016). Improved techniques for training GANs. NeurIPS.

    Example:
        >>> import torch, probgen
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(0, 2, (200,), generator=g)
        >>> x = (0.1 + 0.6 * y[:, None] + 0.2 * torch.rand(200, 8, generator=g))
        >>> labels = torch.where(torch.arange(200) < 20, y, -1)
        >>> gan = probgen.models.SemiSupervisedGAN(num_classes=2, latent_dim=4, hidden=(16,), critic_hidden=(16,))
        >>> _ = gan.fit((x, labels), steps=100, progress=False, seed=0)
        >>> bool((gan.predict(x) == y).float().mean() > 0.9)
        True
    """

    family = "semi_supervised_gan"
    default_inference = "adversarial"
    log_prob_kind = None
    log_prob_alternative = "score(x) (-log D(x)) or predict_proba(x)"

    def __init__(self, data_shape: Sequence[int] | None = None, num_classes: int = 10, latent_dim: int = 64,
                 hidden: Sequence[int] = (500, 500), critic_hidden: Sequence[int] = (500, 250, 250),
                 input_noise: float = 0.3, hidden_noise: float = 0.5, weight_norm: bool = True,
                 unsupervised_weight: float = 0.5, ema: float | None = None):
        super().__init__()
        check_positive("num_classes", num_classes, integer=True)
        if num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes}")
        check_positive("latent_dim", latent_dim, integer=True)
        check_positive("input_noise", input_noise, strict=False)
        check_positive("hidden_noise", hidden_noise, strict=False)
        from .vae import SemiSupervisedVAE

        self.hidden = SemiSupervisedVAE._check_hidden("hidden", hidden)
        self.critic_hidden = SemiSupervisedVAE._check_hidden("critic_hidden", critic_hidden)
        self.num_classes, self.latent_dim = int(num_classes), int(latent_dim)
        self.input_noise, self.hidden_noise = float(input_noise), float(hidden_noise)
        if not isinstance(weight_norm, bool):
            raise ValueError(f"weight_norm: expected True or False, got {weight_norm!r}")
        self.weight_norm = weight_norm
        self.unsupervised_weight = float(check_positive("unsupervised_weight", unsupervised_weight, strict=False))
        if ema is not None and (isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0.0 < ema < 1.0):
            raise ValueError(f"ema: expected a decay in (0, 1) or None, got {ema!r}")
        self.ema = None if ema is None else float(ema)
        self.data_shape: tuple[int, ...] | None = None
        if data_shape is not None:
            self._build(self._check_data_shape(data_shape))

    def _build(self, shape: tuple[int, ...]) -> None:
        self.data_shape = shape
        d = math.prod(shape)
        layers: list[nn.Module] = []
        sizes = [self.latent_dim, *self.hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.Softplus()]
        layers += [nn.Linear(sizes[-1], d), nn.Sigmoid()]
        self.generator = nn.Sequential(*layers)
        self.critic = _NoisyCritic(d, self.critic_hidden, self.num_classes, self.input_noise, self.hidden_noise,
                                   self.weight_norm)
        # predictions use a moving average of the critic's weights when ``ema`` is set (Polyak averaging)
        self.critic_ema = copy.deepcopy(self.critic).requires_grad_(False) if self.ema else None
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))

    # -------------------------------------------------------------------- data
    def _check_values(self, t: torch.Tensor, name: str) -> None:
        if len(t) and (t.min() < 0 or t.max() > 1):
            raise ValueError(f"{name}: expected values in [0, 1] (the generator ends in a sigmoid), "
                             f"got range [{float(t.min()):.3g}, {float(t.max()):.3g}]")

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        x, y = split_partly_labelled(self, data, name)
        return x.cpu(), y.cpu()

    # ------------------------------------------------------------ Pyro program
    def model(self, n: int = 1) -> torch.Tensor:
        """The generator as a Pyro program: ``z ~ N(0, I)``, ``x = G(z)`` (deterministic site ``"x"``)."""
        self._require_built()
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim, device=self.device), 1.0).to_event(1))
            x = self.generator(z).reshape(n, *self.data_shape)
            return pyro.deterministic("x", x, event_dim=len(self.data_shape))

    def _fake(self, n: int) -> torch.Tensor:
        return self.generator(torch.randn(n, self.latent_dim, device=self.device))

    # ----------------------------------------------------- adversarial protocol
    def critic_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on the labelled rows + ``unsupervised_weight`` x the real/fake loss, the "generated"
        logit fixed at 0 (the paper's weighting is 0.5)."""
        logits, features = self.critic(x.flatten(1))
        # kept for the generator's feature-matching step that follows (saves a pass of the critic per step)
        self.__dict__["_real_features"] = features.detach().mean(0)
        known = y >= 0
        supervised = F.cross_entropy(logits[known], y[known]) if bool(known.any()) else logits.sum() * 0
        lse_real = torch.logsumexp(logits, -1)
        with torch.no_grad():
            fake = self._fake(len(x))
        lse_fake = torch.logsumexp(self.critic(fake)[0], -1)
        # -log D(x) = softplus(-lse); -log(1 - D(G(z))) = softplus(lse)
        unsupervised = F.softplus(-lse_real).mean() + F.softplus(lse_fake).mean()
        return supervised + self.unsupervised_weight * unsupervised

    def generator_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Feature matching: squared distance between the mean last-hidden features of real and generated data."""
        real = self.__dict__.pop("_real_features", None)
        if real is None or len(real) != self.critic_hidden[-1]:
            with torch.no_grad():
                real = self.critic(x.flatten(1))[1].mean(0)
        fake = self.critic(self._fake(len(x)))[1].mean(0)
        return ((real - fake) ** 2).mean()

    @torch.no_grad()
    def after_generator_step(self) -> None:
        """Update the averaged critic used for predictions (decay ``min(ema, (1 + t) / (10 + t))``)."""
        if self.critic_ema is not None:
            update_average(self, self.critic_ema, self.critic, self.ema)

    @property
    def _classifier(self) -> nn.Module:
        """The critic that predictions use: the averaged one when ``ema`` is set."""
        return self.critic_ema if self.critic_ema is not None else self.critic

    def critic_parameters(self):
        return self.critic.parameters()

    def generator_parameters(self):
        return self.generator.parameters()

    @implements("adversarial")
    def _fit_adversarial(self, data: Any, labelled_share: float = 0.5, **options: Any):
        """The adversarial engine on the data with repeated labelled rows (``labelled_share`` of each epoch)."""
        from ...infer.adversarial import fit_adversarial

        check_probability("labelled_share", labelled_share)
        if labelled_share >= 1:
            raise ValueError(f"labelled_share: expected a share in [0, 1), got {labelled_share!r}")
        with seeded(options.get("seed")):
            x, y = self.prepare_data(data)
        xr, yr, repeats = replicate_labelled(x, y, labelled_share)
        options.setdefault("lr", 3e-3)  # the paper's
        result = fit_adversarial(self, (xr, yr), **options)
        result.info.update(labelled=int((y >= 0).sum()), unlabelled=int((y < 0).sum()), label_repeats=repeats)
        return result

    # ----------------------------------------------------------------- queries
    def _logits(self, x: Any) -> torch.Tensor:
        self._require_built()
        x = self._as_data(x)
        was = self.training
        self.eval()
        with torch.no_grad():
            out = torch.cat([self._classifier(x[s].flatten(1))[0] for s in _chunks(len(x), 4096)]
                            ) if len(x) else x.new_zeros(0, self.num_classes)
        self.train(was)
        return out

    def predict_proba(self, x: Any) -> torch.Tensor:
        """Class probabilities among the K real classes, ``(n, num_classes)``."""
        return torch.softmax(self._logits(x), -1)

    def predict(self, x: Any) -> torch.Tensor:
        """The most probable real class, ``(n,)``."""
        return self._logits(x).argmax(-1)

    def score(self, x: Any) -> torch.Tensor:
        """-log D(x): how little the discriminator believes x is real (higher = more anomalous)."""
        return F.softplus(-torch.logsumexp(self._logits(x), -1))

    def _sample(self, n: int, label: Any = None, max_draws: int = 100_000) -> torch.Tensor:
        """Generator draws; with ``label=c``, only draws the discriminator classifies as c (at most ``max_draws`` tried)."""
        self._require_built()
        was = self.training
        self.eval()
        try:
            if label is None:
                return self._fake(n).reshape(n, *self.data_shape)
            if isinstance(label, bool) or not isinstance(label, int):
                raise ValueError(f"label: expected one class index (an int), got {label!r}")
            target = int(check_labels([label], self.num_classes, "label")[0])
            kept, tried = [], 0
            while sum(len(k) for k in kept) < n:
                if tried >= max_draws:
                    raise ValueError(f"label: fewer than {n} of {tried} generated examples were classified as "
                                     f"{target}; train longer or ask for fewer")
                batch = self._fake(max(4 * n, 256))
                tried += len(batch)
                kept.append(batch[self._classifier(batch)[0].argmax(-1) == target])
            return torch.cat(kept)[:n].reshape(n, *self.data_shape)
        finally:
            self.train(was)

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 3, (60,), generator=g)
        x = (0.2 + 0.3 * y[:, None] + 0.1 * torch.rand(60, 6, generator=g))
        labels = torch.where(torch.arange(60) < 15, y, -1)
        model = cls(num_classes=3, latent_dim=2, hidden=(8,), critic_hidden=(8,))
        return ContractCase(model, (x, labels), {"steps": 10}, log_prob_data=x[:4])


def _gan_tour(cls, out_dir, quick: bool = False):
    from .vae import _tour

    return _tour(cls, out_dir, quick)


SemiSupervisedGAN.tour = classmethod(_gan_tour)
