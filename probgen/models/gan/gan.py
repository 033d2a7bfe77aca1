"""Generative adversarial networks: the generator is a Pyro model, the discriminator its critic."""

from __future__ import annotations

__all__ = ["GAN", "ConditionalGAN", "critic_objective", "generator_objective", "gradient_penalty"]

import copy
import inspect
import math
from typing import Any, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch.nn import functional as F

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_choice, check_labels, check_positive, class_labels
from ...core.random import seeded
from ...core.result import FitResult
from ...infer.loop import train
from ...infer.options import parse_options
from ...nn.averaging import update_average
from ...nn.gan_nets import Critic, Generator, nearest_distance
from ...nn.mlp import MLP

LOSSES = ("non_saturating", "hinge", "wgan_gp")
_COMPONENT_DIM = 16
_RATIO_FOURIER = 64
#: critic steps over which a Fourier critic's frequencies fade in (``fourier_warmup=None``)
DEFAULT_FOURIER_WARMUP = 750


# ------------------------------------------------------------------ objectives
def critic_objective(objective: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The critic's loss for real and fake scores (without any gradient penalty).

    Example:
        >>> float(critic_objective("hinge", torch.tensor([2.0]), torch.tensor([-2.0])))
        0.0
    """
    if objective == "non_saturating":
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    if objective == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    return d_fake.mean() - d_real.mean()


def generator_objective(objective: str, d_fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss for the critic's scores of its samples."""
    if objective == "non_saturating":
        return F.softplus(-d_fake).mean()
    return -d_fake.mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *cond: Any) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): (||grad critic(mix)|| - 1)^2 on random interpolates."""
    n = min(len(real), len(fake))
    real, fake = real[:n], fake[:n]
    eps = torch.rand(n, *([1] * (real.dim() - 1)), device=real.device)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(mix, *cond)
    (grad,) = torch.autograd.grad(out.sum(), mix, create_graph=True)
    return ((grad.reshape(len(grad), -1).norm(dim=1) - 1) ** 2).mean()


def _check_temperature(t: Any) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf:
        raise ValueError(f"temperature: expected a positive number (1 = the trained prior), got {t!r}")
    return float(t)


def _data_tensor(data: Any, name: str) -> Any:
    """Accept a probgen ``Dataset`` (its ``x``) as well as arrays."""
    return data.x if hasattr(data, "x") and hasattr(data, "y") else data


class GAN(Model):
    r"""A generative adversarial network (Goodfellow et al. 2014) with the stabilisers that matter.

    The generator is the Pyro program ``model(n)``: ``z ~ Normal(0, I)`` (site ``"z"``),
    ``x = G(z)`` (deterministic site ``"x"``). The critic ``D`` scores examples; the
    ``"adversarial"`` engine alternates critic and generator steps. A GAN has no
    likelihood: ``log_prob`` raises ``NoLikelihoodError``; ``score(x)`` is the
    f-AnoGAN anomaly score once ``fit_encoder`` has trained an encoder. For vector
    data, ``fit_rejection`` then ``sample(n, rejection=True)`` corrects the trained
    generator post hoc by discriminator rejection sampling (Azadi et al. 2019).

    Arguments:
        data_shape: shape of one example: ``(d,)`` for vectors (MLP nets) or
            ``(C, H, W)`` for images (convolutional nets, outputs in [0, 1]).
        latent_dim: size of z.
        hidden: hidden sizes of the MLPs, or channels of the convolutional nets.
        critic_hidden: the critic's (default: ``hidden``); ``()`` for vector data: a linear critic
            (it compares means only; few weights, for private training).
        objective: ``"non_saturating"`` (Goodfellow), ``"hinge"`` (Lim & Ye) or
            ``"wgan_gp"`` (Gulrajani et al.).
        spectral_norm: spectral normalisation of every critic layer (Miyato et al. 2018).
        pack: PacGAN packing degree (Lin et al. 2018): the critic judges ``pack``
            examples jointly, which penalises mode collapse.
        ema: decay of an exponential moving average of the generator weights used
            for sampling (Yazıcı et al. 2019), or ``None``.
        gp_weight: weight of the gradient penalty (``objective="wgan_gp"``).
        r1_weight: weight of the R1 penalty on real data (Mescheder et al. 2018), 0 = off. ``None``
            (default): 1.0 with a Fourier critic, 0 otherwise. A Fourier critic resolves sharp modes
            well enough to separate real from fake perfectly: its hinge loss then sits at 0, the
            generator gets no gradient and collapses (``probgen bench gan-robust``, 1,000 steps, before
            ``fourier_warmup``: on a 6-Gaussian hexagon 3 of 10 seeds without the penalty, 0 of 10 with
            it; on ring8 5 of 10 without, still 3 of 10 with it); R1 keeps the critic's gradients at
            real data small.
        components: size of a discrete latent (site ``"component"``, uniform) whose
            learned embedding joins z: a generator from a connected latent space
            cannot put no mass between disconnected modes; a discrete latent can
            (DeLiGAN, Gurumurthy et al. 2017; Khayatkhoei et al. 2018). 1 = off.
        fourier, fourier_scale: random Fourier features of vector inputs for the critic
            (``fourier`` frequencies drawn from ``N(0, fourier_scale^2)``, radians per
            data unit): they let the critic see modes much sharper than its MLP resolves.
        fourier_warmup: critic steps over which the Fourier frequencies fade in, lowest first
            (coarse to fine, as BARF, Lin et al. 2021); 0 = all from the start. ``None`` (default):
            750 with a Fourier critic (``DEFAULT_FOURIER_WARMUP``), 0 otherwise. With every sharp
            frequency on from the first step, the critic's ripples pull the generator's first, still
            shapeless samples into a few of its modes, and some seeds never leave them (``probgen bench
            gan-robust``: on ring8, collapses the R1 penalty alone does not prevent); a critic that starts
            from the raw coordinates spreads the samples first and then sharpens them. A fit shorter than
            the warm-up never sees the highest frequencies.
        architecture: ``"auto"`` (convolutional nets for images of 16 pixels or more,
            MLPs otherwise), ``"conv"`` or ``"mlp"``.
        minibatch_distance: the critic also sees each example's distance to its nearest neighbour
            among the other examples of its minibatch (real among real, generated among generated;
            within the same class for ``ConditionalGAN``), divided by its running mean over real
            batches (``nearest_distance``; minibatch discrimination, Salimans et al. 2016, in the
            nearest-neighbour form). A generator that sends many latents to one example gives
            distances near 0, which a critic judging one example at a time cannot see. Calls that
            judge single examples (``score``, ``fit_encoder``) give the feature its real-data value 1.
            Not with private training (one record would move the others' features).

    Example:
        >>> import torch, probgen
        >>> x = torch.randn(256, 2)
        >>> gan = probgen.models.GAN(data_shape=(2,), hidden=(16,))
        >>> _ = gan.fit(x, steps=5, progress=False, seed=0)
        >>> gan.sample(3, seed=0).shape
        torch.Size([3, 2])
    """

    family = "gan"
    renamed_config_keys = {"loss": "objective"}

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """As ``Model.upgrade_config``; files saved before ``minibatch_distance`` existed had none."""
        config = super().upgrade_config(config)
        if "minibatch_distance" in inspect.signature(cls.__init__).parameters:
            config.setdefault("minibatch_distance", False)
        if "fourier_warmup" in inspect.signature(cls.__init__).parameters:
            config.setdefault("fourier_warmup", 0)
        return config
    default_inference = "adversarial"
    log_prob_kind = None
    log_prob_alternative = "score(x) (f-AnoGAN, after fit_encoder) or probgen.metrics (frechet_distance, mmd)"
    #: conditional critics also see real examples under mismatched conditions as fake
    matching_aware = False

    def __init__(self, data_shape: Sequence[int] = (2,), latent_dim: int = 8, hidden: Sequence[int] = (128, 128),
                 critic_hidden: Sequence[int] | None = None, objective: str = "non_saturating",
                 spectral_norm: bool = False, pack: int = 1, ema: float | None = None, gp_weight: float = 10.0,
                 r1_weight: float | None = None, components: int = 1, fourier: int = 0, fourier_scale: float = 1.0,
                 architecture: str = "auto", minibatch_distance: bool = False, fourier_warmup: int | None = None):
        super().__init__()
        if not isinstance(minibatch_distance, bool):
            raise ValueError(f"minibatch_distance: expected True or False, got {minibatch_distance!r}")
        self.minibatch_distance = minibatch_distance
        if isinstance(data_shape, int):
            data_shape = (data_shape,)
        self.data_shape = tuple(int(s) for s in data_shape)
        if len(self.data_shape) not in (1, 3) or min(self.data_shape) < 1:
            raise ValueError(f"data_shape: expected (d,) or (channels, height, width), got {tuple(data_shape)}")
        check_positive("latent_dim", latent_dim, integer=True)
        check_positive("pack", pack, integer=True)
        check_positive("components", components, integer=True)
        check_positive("gp_weight", gp_weight)
        if r1_weight is None:
            r1_weight = 1.0 if fourier else 0.0
        check_positive("r1_weight", r1_weight, strict=False)
        if fourier_warmup is None:
            fourier_warmup = DEFAULT_FOURIER_WARMUP if fourier else 0
        check_positive("fourier_warmup", fourier_warmup, integer=True, strict=False)
        self.objective = check_choice("objective", objective, LOSSES)
        if ema is not None and not (isinstance(ema, float) and 0.0 < ema < 1.0):
            raise ValueError(f"ema: expected a decay in (0, 1) or None, got {ema!r}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden: expected positive layer sizes, got {hidden}")
        critic_hidden = hidden if critic_hidden is None else tuple(int(h) for h in critic_hidden)
        if critic_hidden and min(critic_hidden) < 1:
            raise ValueError(f"critic_hidden: expected positive layer sizes, or () for a linear critic; got {critic_hidden}")
        self.latent_dim, self.pack, self.ema = int(latent_dim), int(pack), ema
        self.gp_weight, self.r1_weight = float(gp_weight), float(r1_weight)
        self.is_image = len(self.data_shape) == 3
        self.components = int(components)
        cond_dim = self._cond_dim()
        self.component_embedding = (torch.nn.Embedding(self.components, _COMPONENT_DIM)
                                    if self.components > 1 else None)
        self.generator = Generator(self.latent_dim, self.data_shape, hidden,
                                   cond_dim + (_COMPONENT_DIM if self.components > 1 else 0),
                                   out_act="sigmoid" if self.is_image else None, architecture=architecture,
                                   skip=self._skip_code())
        self.critic = Critic(self.data_shape, critic_hidden, pack=self.pack, cond_dim=self._critic_cond_dim(),
                             spectral_norm=spectral_norm, fourier=int(fourier), fourier_scale=float(fourier_scale),
                             architecture=architecture, extra=int(minibatch_distance),
                             fourier_warmup=int(fourier_warmup))
        if minibatch_distance:  # running mean of the real minibatches' nearest-neighbour distance
            self.register_buffer("distance_scale", torch.zeros(()))
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False) if ema else None
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        # f-AnoGAN encoder (izi_f), trained after the GAN by fit_encoder
        self.encoder = MLP(math.prod(self.data_shape), self.latent_dim + (self.components if self.components > 1 else 0),
                           hidden=hidden[::-1])
        self.register_buffer("encoder_fitted", torch.zeros((), dtype=torch.bool))
        # density-ratio classifier for discriminator rejection sampling (vector data, unconditional):
        # fitted after training by fit_rejection, used by sample(n, rejection=True)
        self.ratio_critic = (Critic(self.data_shape, critic_hidden or hidden, fourier=_RATIO_FOURIER)
                             if not self.is_image and cond_dim == 0 else None)
        self.register_buffer("ratio_max", torch.full((), math.nan))

    # ------------------------------------------------------- conditioning hooks
    def _cond_dim(self) -> int:
        return 0

    def _critic_cond_dim(self) -> int:
        return self._cond_dim()

    def _skip_code(self) -> int:
        """Size of the one-hot code that ends the generator's condition vector and selects a learned
        offset per class added to its output (0: none)."""
        return 0

    def _condition(self, *cond: torch.Tensor) -> tuple:
        """The generator's condition vectors of a batch (none for the unconditional GAN)."""
        return ()

    def _critic_condition(self, *cond: torch.Tensor) -> tuple:
        """The critic's own condition vectors: its own embedding, so that the generator cannot
        make the conditions uninformative to the critic."""
        return ()

    def _groups(self, *cond: torch.Tensor) -> torch.Tensor | None:
        """Group of each example for the minibatch distance (``None``: the whole batch is one group)."""
        return None

    def _judge(self, x: torch.Tensor, groups: torch.Tensor | None, *c: torch.Tensor,
               update: bool = False) -> torch.Tensor:
        """The critic's scores of one set of examples (all real or all generated), with the minibatch
        distance when ``minibatch_distance`` (``update``: ``x`` is real; update the running scale)."""
        return self.critic(x, *c, extra=self._distance_feature(x, groups, update))

    def _distance_feature(self, x: torch.Tensor, groups: torch.Tensor | None, update: bool = False):
        if not self.minibatch_distance:
            return None
        d = nearest_distance(x, groups)
        if update:
            with torch.no_grad():
                scale = self.distance_scale
                scale.copy_(d.mean() if float(scale) == 0 else torch.lerp(scale, d.mean(), 0.1))
        return (d / self.distance_scale.clamp_min(1e-12))[:, None]

    def _typical_feature(self, n: int):
        """The minibatch feature of single examples judged alone: its real-data value 1."""
        return torch.ones(n, 1, device=self.device) if self.minibatch_distance else None

    # ------------------------------------------------------------ Pyro program
    def model(self, n: int = 1, *cond: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The generator as a Pyro program: ``z ~ N(0, temperature^2 I)``, ``x = G(z)``."""
        c = self._condition(*cond)
        dev = self.device
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim, device=dev), temperature).to_event(1))
            k = None
            if self.components > 1:
                k = pyro.sample("component", dist.Categorical(torch.ones(self.components, device=dev)))
            x = self._generate(self.sampling_generator, z, k, c)
            return pyro.deterministic("x", x, event_dim=len(self.data_shape))

    @property
    def sampling_generator(self) -> Generator:
        """The generator used for sampling: the EMA copy when ``ema`` is set."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    # ------------------------------------------------------------------- data
    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        x = as_tensor(_data_tensor(data, name), name, ndim=1 + len(self.data_shape), shape=self.data_shape)
        if len(x) < self.pack:
            raise ValueError(f"{name}: expected at least pack={self.pack} examples, got {len(x)}")
        return (x,)

    # --------------------------------------------------------------- training
    def critic_parameters(self):
        """The critic's weights and its own condition embeddings."""
        params = list(self.critic.parameters())
        for name in ("critic_label_embedding", "critic_text_encoder"):
            module = getattr(self, name, None)
            if module is not None:
                params += list(module.parameters())
        return params

    def generator_parameters(self):
        """The generator's weights and the embeddings it reads (components, labels, text)."""
        params = list(self.generator.parameters())
        for name in ("component_embedding", "label_embedding", "text_encoder"):
            module = getattr(self, name, None)
            if module is not None:
                params += list(module.parameters())
        return params

    def _generate(self, net: Generator, z: torch.Tensor, component: torch.Tensor | None, c: tuple) -> torch.Tensor:
        """``net(z, [component embedding, conditions])``; ``component`` holds indices or soft weights."""
        parts = list(c)
        if self.components > 1:
            if component is None:
                component = torch.randint(self.components, (len(z),), device=z.device)
            emb = (self.component_embedding(component) if component.dim() == 1
                   else component @ self.component_embedding.weight)
            parts.insert(0, emb)
        return net(z, torch.cat(parts, 1)) if parts else net(z)

    def _fake(self, n: int, c: tuple) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, device=self.device)
        return self._generate(self.generator, z, None, c)

    def critic_loss(self, x: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fake = self._fake(len(x), self._condition(*cond))
        self.critic.advance()
        c = self._critic_condition(*cond)
        if self.r1_weight:
            x = x.detach().requires_grad_(True)
        # one critic pass over real and fake together (half the spectral-norm power iterations
        # and kernel launches of two passes; for 2-D data the per-call overhead dominates)
        n = len(x) - len(x) % self.pack
        x, fake, c = x[:n], fake[:n], tuple(t[:n] for t in c)
        groups = self._groups(*cond)
        groups = None if groups is None else groups[:n]
        extra = None
        if self.minibatch_distance:  # each set's distances within itself
            extra = torch.cat([self._distance_feature(x, groups, update=True), self._distance_feature(fake, groups)])
        both = self.critic(torch.cat([x, fake]), *(torch.cat([t, t]) for t in c), extra=extra)
        d_real, d_fake = both[:n // self.pack], both[n // self.pack:]
        if self.matching_aware and c:
            # matching-aware critic (GAN-INT-CLS, Reed et al. 2016): real images with the
            # conditions of other examples count as fake, so conditions must be respected
            wrong = tuple(t.roll(1, 0) for t in c)
            d_fake = torch.cat([d_fake, self.critic(x.detach(), *wrong, extra=None if extra is None
                                                    else extra[:n].detach())])
        loss = critic_objective(self.objective, d_real, d_fake)
        if self.objective == "wgan_gp":
            judge = (lambda t, *cc: self._judge(t, groups, *cc)) if self.minibatch_distance else self.critic
            loss = loss + self.gp_weight * gradient_penalty(judge, x.detach(), fake, *c)
        if self.r1_weight:
            (grad,) = torch.autograd.grad(d_real.sum(), x, create_graph=True)
            loss = loss + 0.5 * self.r1_weight * grad.pow(2).reshape(len(grad), -1).sum(1).mean()
        return loss

    def generator_loss(self, x: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        weight = getattr(self, "diversity_weight", 0.0)
        if weight:
            g_cond = self._condition(*cond)
            z = torch.randn(len(x), self.latent_dim, device=self.device)
            fake = self._generate(self.generator, z, None, g_cond)
        else:
            fake = self._fake(len(x), self._condition(*cond))
        c = self._critic_condition(*cond)
        params = self._critic_weights()
        for p in params:  # no critic gradients from the generator step (saves time)
            p.requires_grad_(False)
        try:
            loss = generator_objective(self.objective, self._judge(fake, self._groups(*cond), *c))
        finally:
            for p in params:
                p.requires_grad_(True)
        if weight:
            loss = loss + weight * self._mode_seeking(fake, z, g_cond)
        return loss

    def _mode_seeking(self, fake: torch.Tensor, z: torch.Tensor, c: tuple) -> torch.Tensor:
        """Mode-seeking term (MSGAN, Mao et al. 2019): a second draw ``z2`` under the same conditions;
        ``1 / (mean |G(z) - G(z2)| / mean |z - z2| + 1e-5)`` is large when different latents give the
        same example, which is what a conditional generator collapsed within a class does."""
        z2 = torch.randn_like(z)
        fake2 = self._generate(self.generator, z2, None, c)
        ratio = (fake - fake2).abs().mean() / (z - z2).abs().mean()
        return 1.0 / (ratio + 1e-5)

    @property
    def critic_equilibrium_loss(self) -> float | None:
        """The critic's loss when it cannot tell real from fake (all scores 0), for the collapse check
        of ``FitResult.diagnostics()``; ``None`` for the Wasserstein loss, which has no fixed optimum."""
        return {"hinge": 2.0, "non_saturating": 2 * math.log(2)}.get(self.objective)

    @torch.no_grad()
    def diagnostic_samples(self, x: torch.Tensor, *cond: torch.Tensor) -> tuple:
        """``(real, generated, groups)`` for the sample-collapse check: one generated example per real
        one under the same conditions (``groups``: the class labels of a conditional GAN, else ``None``)."""
        z = torch.randn(len(x), self.latent_dim, device=x.device)
        fake = self._generate(self.sampling_generator, z, None, self._condition(*cond))
        groups = cond[0] if cond and cond[0].dtype == torch.long and cond[0].dim() == 1 else None
        return x, fake, groups

    def _critic_weights(self) -> list:
        cached = self.__dict__.get("_critic_weight_cache")
        if cached is None:  # module traversal per step costs as much as the 2-D step itself
            cached = self.__dict__["_critic_weight_cache"] = list(self.critic.parameters())
        return cached

    @torch.no_grad()
    def after_generator_step(self) -> None:
        """Update the EMA generator (with a warm-up: decay min(ema, (1+t)/(10+t)))."""
        if self.generator_ema is not None:
            update_average(self, self.generator_ema, self.generator, self.ema)

    # ----------------------------------------------------------------- queries
    def _sample(self, n: int, temperature: float = 1.0, rejection: bool = False, **condition: Any) -> torch.Tensor:
        """``temperature`` < 1 shrinks z towards 0 (the truncation trick, Brock et al. 2019):
        fewer off-manifold samples, less variety within a mode.

        ``rejection=True``: discriminator rejection sampling (Azadi et al. 2019), a post-hoc
        correction that needs ``fit_rejection`` first. A generated ``x`` is kept with
        probability ``min(1, exp(D(x) - M))``, where ``D`` estimates ``log p_data(x) / p_G(x)``
        and ``M`` is a high quantile of ``D`` over generated samples (see ``fit_rejection``):
        with ``M`` the maximum the kept samples follow ``p_G * exp(D)``, the data distribution
        where ``D`` is exact; a lower quantile caps the weight of the rarest samples but keeps
        many more draws.
        The draws are no longer those of the Pyro program ``model``.
        """
        if condition:
            raise ValueError(f"sample: unexpected condition {sorted(condition)}; the GAN is unconditional")
        temperature = _check_temperature(temperature)
        if not isinstance(rejection, bool):
            raise ValueError(f"rejection: expected True or False, got {rejection!r}")
        if not rejection:
            return self.model(n, temperature=temperature)
        if self.ratio_critic is None or bool(torch.isnan(self.ratio_max)):
            raise RuntimeError("sample(rejection=True): fit the density-ratio critic first with fit_rejection(data)")
        kept, have, drawn = [], 0, 0
        while have < n:
            chunk = max(1024, 2 * (n - have))
            x = self.model(chunk, temperature=temperature)
            logit = self.ratio_critic(x)
            keep = torch.rand(chunk, device=x.device) < torch.exp(logit - self.ratio_max)
            kept.append(x[keep])
            have += int(keep.sum())
            drawn += chunk
            if drawn > 1000 * n + 100_000:
                raise RuntimeError(f"sample(rejection=True): accepted {have} of {drawn} draws; the density-ratio "
                                   "critic rejects almost everything (refit it, or sample without rejection)")
        return torch.cat(kept)[:n]

    def fit_rejection(self, data: Any, **options: Any) -> FitResult:
        """Fit the density-ratio critic that ``sample(n, rejection=True)`` uses (Azadi et al. 2019).

        With the generator frozen, a fresh classifier ``D`` (an MLP on random Fourier
        features, one example at a time, no spectral norm) learns real against generated
        examples with the logistic loss, whose optimum is ``D(x) = log p_data(x) / p_G(x)``.
        A fresh unpacked classifier rather than the training critic: a packed, hinge or
        spectrally normalised critic is not a calibrated density-ratio estimator. It trains
        through the shared training loop (``steps`` default 1000, ``batch_size`` 512 real and as
        many generated examples per step, ``lr`` 1e-3, ``seed``, ``progress``, ...).

        Arguments:
            data: the training examples, shape ``(n, d)``.
            fourier_scale: standard deviation of the Fourier frequencies in radians per data
                unit (default ``8 / std(data)``; higher resolves sharper modes but overfits).
            quantile: ``M`` of ``sample(rejection=True)`` is this quantile of ``D`` over
                10,000 generated examples (1 = the maximum: exact but slow when ``D`` has
                outliers; 0.99 keeps roughly ``exp(-M)`` of the draws with few capped).

        Returns a ``FitResult`` (engine ``"rejection"``) with the logistic loss per step.
        """
        if self.ratio_critic is None:
            raise ValueError("fit_rejection: rejection sampling is available for unconditional GANs of vectors")
        opts = parse_options("rejection", options, extra={"fourier_scale": None, "quantile": 0.99},
                             defaults={"steps": 1000, "batch_size": 512})
        x = GAN.prepare_data(self, data, "data")[0].to(self.device)
        scale = 8.0 / float(x.std()) if opts.extra["fourier_scale"] is None else opts.extra["fourier_scale"]
        quantile = opts.extra["quantile"]
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile <= 1:
            raise ValueError(f"quantile: expected a number in (0, 1], got {quantile!r}")
        check_positive("fourier_scale", scale)
        net = self.ratio_critic
        self.eval()  # the generator is frozen (and spectral norm's power iteration with it)
        with seeded(opts.seed), torch.no_grad():
            net.frequencies.copy_(torch.randn(net.frequencies.shape, device=self.device) * float(scale))
            for layer in net.modules():
                if isinstance(layer, torch.nn.Linear):
                    layer.reset_parameters()

        def logistic_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            real = batch[0]
            with torch.no_grad():
                fake = self.model(len(real))
            out = net(torch.cat([real, fake]))
            return F.softplus(-out[:len(real)]).mean() + F.softplus(out[len(real):]).mean()

        result = train(net, (x,), opts, engine="rejection", loss_fn=logistic_loss, parameters=net.parameters)
        net.eval()
        with seeded(opts.seed), torch.no_grad():
            self.ratio_max.copy_(torch.quantile(net(self.model(10_000)), float(quantile)))
        result.model = self
        return result

    def decode(self, z: Any, *cond: Any, component: Any = None) -> torch.Tensor:
        """Generate from given latents ``z`` of shape ``(n, latent_dim)`` (and mixture ``component`` indices)."""
        z = as_tensor(z, "z", ndim=2, shape=(self.latent_dim,), device=self.device)
        if component is not None:
            component = as_tensor(component, "component", dtype=torch.long, ndim=1, device=self.device)
            if len(component) != len(z) or component.min() < 0 or component.max() >= self.components:
                raise ValueError(f"component: expected {len(z)} indices in [0, {self.components - 1}]")
        with torch.no_grad():
            return self._generate(self.sampling_generator, z, component, self._condition(*cond))

    def encode(self, x: Any) -> torch.Tensor:
        """Latents that the f-AnoGAN encoder assigns to ``x`` (after ``fit_encoder``)."""
        self._require_encoder("encode")
        x = self.prepare_data(x, "x")[0].to(self.device)
        with torch.no_grad():
            return self.encoder(x.reshape(len(x), -1))[:, :self.latent_dim]

    def _require_encoder(self, what: str) -> None:
        self._require_fitted(what, bool(self.encoder_fitted), "train the f-AnoGAN encoder first with fit_encoder(data)")

    def fit_encoder(self, data: Any, *cond: Any, **options: Any) -> FitResult:
        """Train the encoder E with the generator and critic frozen (f-AnoGAN izi_f, Schlegl et al. 2019).

        Minimises ``|x - G(E(x))|^2 + kappa |f(x) - f(G(E(x)))|^2`` with ``f`` the critic's
        features, through the shared training loop (``steps`` default 500, ``batch_size`` 128,
        ``lr`` 1e-3, ``seed``, ``progress``, ...; extra option ``kappa``, default 1).
        Returns a ``FitResult`` (engine ``"encoder"``).
        """
        opts = parse_options("encoder", options, extra={"kappa": 1.0}, defaults={"steps": 500, "batch_size": 128})
        kappa = check_positive("kappa", opts.extra["kappa"], strict=False)
        x = GAN.prepare_data(self, data, "data")[0].to(self.device)
        conds = tuple(t.to(self.device) for t in cond)
        self.eval()

        def encoder_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return self._anomaly_terms(*batch, kappa=kappa).mean()

        result = train(self.encoder, (x, *conds), opts, engine="encoder", loss_fn=encoder_loss,
                       parameters=self.encoder.parameters)
        self.encoder.eval()
        self.encoder_fitted.fill_(True)
        self.kappa = float(kappa)
        result.model = self
        return result

    def _anomaly_terms(self, x: torch.Tensor, *cond: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
        c = self._condition(*cond)
        code = self.encoder(x.reshape(len(x), -1))
        z, soft = code[:, :self.latent_dim], None
        if self.components > 1:
            soft = torch.softmax(code[:, self.latent_dim:], 1)
        recon = self._generate(self.sampling_generator, z, soft, c)
        residual = (recon - x).pow(2).reshape(len(x), -1).mean(1)
        # critic features of each example alone (replicated to fill a pack)
        m = len(x) * self.pack
        f_x = self.critic.features(x.repeat_interleave(self.pack, 0), self._typical_feature(m))
        f_r = self.critic.features(recon.repeat_interleave(self.pack, 0), self._typical_feature(m))
        return residual + kappa * (f_x - f_r).pow(2).mean(1)

    def score(self, x: Any, *cond: Any) -> torch.Tensor:
        """Anomaly score per example (higher = more anomalous).

        After ``fit_encoder``: the f-AnoGAN score (reconstruction residual plus critic-feature
        residual). Before: the negated critic output, a weaker detector.
        """
        x = as_tensor(_data_tensor(x, "x"), "x", ndim=1 + len(self.data_shape), shape=self.data_shape,
                      device=self.device)
        cond = tuple(torch.as_tensor(c, device=self.device) for c in cond)
        with torch.no_grad():
            if not bool(self.encoder_fitted):
                c = tuple(t.repeat_interleave(self.pack, 0) for t in self._critic_condition(*cond))
                return -self.critic(x.repeat_interleave(self.pack, 0), *c,
                                    extra=self._typical_feature(len(x) * self.pack))
            return self._anomaly_terms(x, *cond, kappa=getattr(self, "kappa", 1.0))

    def get_state_json(self) -> dict:
        return {"kappa": getattr(self, "kappa", 1.0)}

    def set_state_json(self, state: dict) -> None:
        self.kappa = float(state.get("kappa", 1.0))

    # --------------------------------------------------------------- examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        x = torch.cat([torch.randn(64, 2, generator=g) * 0.1 - 1, torch.randn(64, 2, generator=g) * 0.1 + 1])
        return ContractCase(cls(data_shape=(2,), latent_dim=2, hidden=(16,), pack=2, ema=0.9),
                            x, {"steps": 20, "batch_size": 64, "lr": 1e-3})

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """A GAN on a ring of eight Gaussians, before and after rejection sampling."""
        import os

        import probgen
        from ... import plot
        from ...gallery import TourSection, demo_source
        from ...metrics.modes import modes_covered

        steps = 300 if quick else 2000

        def demo():
            torch.manual_seed(0)  # the networks' initial weights
            data = probgen.datasets.load("ring8", n=4000, sigma=0.1)  # 8 Gaussians on the unit circle
            gan = probgen.models.GAN(data_shape=(2,), hidden=(128, 128))
            gan.fit(data.x, steps=steps, batch_size=256, lr=1e-3, seed=0, progress=False)
            gan.fit_rejection(data.x, steps=steps // 4, seed=0, progress=False)  # density-ratio critic
            plain = gan.sample(2500, seed=0)
            kept = gan.sample(2500, seed=0, rejection=True)  # discriminator rejection sampling
            return data, plain, kept

        data, plain, kept = demo()
        means, sigma = data.meta["means"], data.meta["sigma"]
        raw, rej = modes_covered(plain, means, sigma), modes_covered(kept, means, sigma)
        pictures = []
        for name, samples, stats in (("plain sampling", plain, raw), ("rejection sampling", kept, rej)):
            ax = plot.scatter_2d(data.x[:1000], s=3, color="lightgray", label="data")
            plot.scatter_2d(samples[:1000], ax=ax, s=3, color="C3", alpha=0.5, label=f"GAN, {name}")
            ax.legend(loc="upper right", fontsize=7)
            ax.set_title(f"{stats['modes']}/8 modes, {100 * stats['high_quality']:.0f}% within 3 sigma")
            path = plot.save_figure(ax, os.path.join(out_dir, f"gan_ring8_{name.split()[0]}.png"))
            pictures.append((path, f"1,000 GAN samples ({name}, red) over the ring-of-eight data (gray)"))
        works = rej["modes"] == 8 and rej["high_quality"] >= 0.8
        return TourSection(
            cls.family, "GAN on a ring of eight Gaussians", pictures,
            {"modes covered (of 8)": f"{raw['modes']} plain, {rej['modes']} with rejection",
             "samples within 3 sigma of a mode": f"{100 * raw['high_quality']:.0f}% plain, "
                                                  f"{100 * rej['high_quality']:.0f}% with rejection sampling"},
            demo_source(demo, steps=steps), "works" if works else "limited",
            "" if works else f"{steps} steps are too few for sharp modes here; `probgen bench gan-modes` trains "
                             "longer (25/25 modes, 97% within 3 sigma on grid25 with rejection sampling).")


class ConditionalGAN(GAN):
    r"""A GAN conditioned on class labels: ``x = G(z, y)``, projection critic ``D(x, y)``.

    ``fit((x, y))`` (or a probgen ``Dataset``); ``sample(n, y=...)`` with one label
    for all, a list of ``n`` labels, or none (uniform labels).

    Arguments:
        num_classes: number of labels.
        embed_dim: size of the label embedding given to generator and critic.
        diversity_weight: weight of the mode-seeking term (MSGAN, Mao et al. 2019) in the generator's
            loss, against collapse within a class (several latents, one image per label).
        minibatch_distance: as for ``GAN``, within each class; on by default: a critic that judges one
            example at a time cannot see a class collapsed onto a few sharp images (``probgen bench
            gan-diversity``: per-class recall 0 without it on 8x8 digits).
        label_skip: the generator also adds a learned offset per class to its output (a table of one
            output-sized vector per label, zero at the start), a short path for what each class looks
            like (as ``VAE(label_skip=True)``), and the critic reads the labels one-hot (its projection
            then holds one vector per class, Miyato & Koyama's form) instead of a learned embedding. With
            ``critic_hidden=()`` this is the DP-GAN of ``probgen bench privacy``: a generator that learns
            from a noisy private critic needs the class means fast, and a linear critic has few weights.
        others: as for ``GAN``.

    Example:
        >>> import torch, probgen
        >>> x, y = torch.randn(128, 2), torch.randint(0, 3, (128,))
        >>> cgan = probgen.models.ConditionalGAN(num_classes=3, data_shape=(2,), hidden=(16,))
        >>> _ = cgan.fit((x, y), steps=5, progress=False, seed=0)
        >>> cgan.sample(4, seed=0, y=2).shape
        torch.Size([4, 2])
    """

    family = "conditional_gan"

    def __init__(self, num_classes: int = 10, data_shape: Sequence[int] = (2,), latent_dim: int = 8,
                 hidden: Sequence[int] = (128, 128), critic_hidden: Sequence[int] | None = None,
                 objective: str = "non_saturating", spectral_norm: bool = False, pack: int = 1, ema: float | None = None,
                 gp_weight: float = 10.0, r1_weight: float = 0.0, embed_dim: int = 16, diversity_weight: float = 0.0,
                 minibatch_distance: bool = True, label_skip: bool = False):
        check_positive("num_classes", num_classes, integer=True)
        if not isinstance(label_skip, bool):
            raise ValueError(f"label_skip: expected True or False, got {label_skip!r}")
        self.label_skip = label_skip
        check_positive("embed_dim", embed_dim, integer=True)
        check_positive("diversity_weight", diversity_weight, strict=False)
        self.diversity_weight = float(diversity_weight)
        self.num_classes, self.embed_dim = int(num_classes), int(embed_dim)
        super().__init__(data_shape, latent_dim, hidden, critic_hidden, objective, spectral_norm, pack, ema, gp_weight,
                         r1_weight, minibatch_distance=minibatch_distance)
        self.label_embedding = torch.nn.Embedding(self.num_classes, self.embed_dim)
        # with label_skip the critic reads the labels one-hot: its projection is a table of one vector
        # per class (Miyato & Koyama's form), for a linear critic a linear function of x per class
        self.critic_label_embedding = (None if label_skip else
                                       torch.nn.Embedding(self.num_classes, self.embed_dim))

    def _cond_dim(self) -> int:
        return self.embed_dim

    def _skip_code(self) -> int:
        return self.num_classes if self.label_skip else 0

    def _critic_cond_dim(self) -> int:
        return self.num_classes if self.label_skip else self.embed_dim

    def _condition(self, *cond: torch.Tensor) -> tuple:
        if len(cond) != 1:
            raise ValueError("y: the conditional GAN needs one label per example")
        return (self._with_code(self.label_embedding(cond[0]), cond[0]),)

    def _critic_condition(self, *cond: torch.Tensor) -> tuple:
        if self.label_skip:
            return (self._one_hot(cond[0]),)
        return (self.critic_label_embedding(cond[0]),)

    def _with_code(self, embedded: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The condition vector: the label embedding, then (``label_skip``) the labels one-hot."""
        if not self.label_skip:
            return embedded
        return torch.cat([embedded, self._one_hot(labels)], 1)

    def _one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.num_classes).float()

    def _groups(self, *cond: torch.Tensor) -> torch.Tensor:
        return cond[0]

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        if hasattr(data, "x") and hasattr(data, "y"):
            data = (data.x, data.y)
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(f"{name}: expected a pair (x, y) of examples and labels in [0, {self.num_classes - 1}]")
        (x,) = super().prepare_data(data[0], f"{name}[0] (x)")
        y = check_labels(data[1], self.num_classes, f"{name}[1] (y)", length=len(x))
        return x, y

    def _labels(self, y: Any, n: int, name: str = "y") -> torch.Tensor:
        labels = class_labels(y, self.num_classes, n, name, required=False)
        if labels is None:  # no label asked for: draw classes uniformly
            return torch.randint(self.num_classes, (n,), device=self.device)
        return labels.to(self.device)

    def _sample(self, n: int, y: Any = None, temperature: float = 1.0, **condition: Any) -> torch.Tensor:
        if condition:
            raise ValueError(f"sample: unexpected condition {sorted(condition)}; give y=labels")
        return self.model(n, self._labels(y, n), temperature=_check_temperature(temperature))

    def model(self, n: int = 1, y: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``y ~ Categorical(uniform)`` unless given, ``z ~ N(0, I)``, ``x = G(z, y)``."""
        with pyro.plate("labels", n):
            y = pyro.sample("y", dist.Categorical(torch.ones(self.num_classes, device=self.device)), obs=y)
        return super().model(n, y, temperature=temperature)

    def encode(self, x: Any) -> torch.Tensor:
        raise NotImplementedError("ConditionalGAN.encode: the encoder needs labels; use score(x, y)")

    def fit_encoder(self, data: Any, *cond: Any, **options: Any) -> FitResult:
        """As ``GAN.fit_encoder``; ``data`` is ``(x, y)`` or a ``Dataset``."""
        x, y = self.prepare_data(data)
        return super().fit_encoder(x, y, **options)

    def score(self, x: Any, y: Any = None) -> torch.Tensor:
        """Anomaly score of ``x`` under its labels ``y`` (or of a pair / ``Dataset``); see ``GAN.score``."""
        if y is None and hasattr(x, "y"):
            x, y = x.x, x.y
        if y is None and isinstance(x, (tuple, list)) and len(x) == 2:
            x, y = x
        if y is None:
            raise ValueError("y: the conditional GAN scores examples under their labels; give score(x, y)")
        x = as_tensor(x, "x", ndim=1 + len(self.data_shape), shape=self.data_shape)
        y = check_labels(y, self.num_classes, "y", length=len(x))
        return super().score(x, y)

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        y = torch.arange(96) % 3
        x = torch.randn(96, 2, generator=g) * 0.1 + y[:, None].float()
        return ContractCase(cls(num_classes=3, data_shape=(2,), latent_dim=2, hidden=(16,), ema=0.9),
                            (x, y), {"steps": 20, "batch_size": 48, "lr": 1e-3}, sample_kwargs={"y": 1})

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """A conditional GAN on 8x8 digits: a row per digit, read back by a classifier."""
        import os

        import probgen
        from ...gallery import TourSection, demo_source, digit_agreement
        from ...plot import sample_grid, save_figure

        steps = 100 if quick else 1000

        def demo():
            torch.manual_seed(0)
            train = probgen.datasets.load("digits", split="train")
            gan = probgen.models.ConditionalGAN(num_classes=10, data_shape=(1, 8, 8), latent_dim=16,
                                                hidden=(256, 256), objective="hinge", spectral_norm=True, ema=0.99)
            gan.fit(train, steps=steps, batch_size=128, lr=5e-4, seed=0, progress=False)
            labels = torch.arange(10).repeat_interleave(10)
            samples = gan.sample(100, seed=0, y=labels)
            return labels, samples

        labels, samples = demo()
        read = digit_agreement(samples, labels)
        path = save_figure(sample_grid(samples, nrow=10, title="conditional GAN: a row per digit"),
                           os.path.join(out_dir, "conditional_gan.png"))
        return TourSection(cls.family, "Conditional GAN on 8x8 digits",
                           [(path, "ten samples of each digit 0-9, one digit per row")],
                           {"samples read as the digit asked for": f"{100 * read:.0f}% (a logistic regression "
                                                                    "trained on real digits; it reads 96% of real ones)"},
                           demo_source(demo, steps=steps), "works" if read >= 0.8 else "limited")

