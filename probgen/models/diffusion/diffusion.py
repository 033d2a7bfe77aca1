"""Denoising diffusion probabilistic models: DDPM training, DDPM / DDIM sampling, guidance, inpainting."""

from __future__ import annotations

__all__ = ["Diffusion"]

import copy
import math
from typing import Any, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_choice, check_positive, check_probability, class_labels
from ...core.progress import progress_bar
from ...core.rows import cat_rows, require_examples
from ...nn.time_embedding import TimeMLP, UNet
from .schedule import DiscretizedGaussian, NoiseSchedule, gaussian_kl


class Diffusion(Model):
    r"""A denoising diffusion model (Ho et al. 2020) with DDIM sampling (Song et al. 2021).

    The reverse chain x_T → … → x_0 is the Pyro program ``model`` (one
    ``pyro.sample`` per step, x_0 observed through the decoder) and the forward
    noising chain q(x_{1:T} | x_0) is its ``guide``, so Pyro's ELBO over the pair is
    the variational bound. Training minimises the simple loss ‖ε − ε_θ(x_t, t)‖²
    (or the v-prediction loss), a reweighted form of that bound, with EMA weights
    kept for sampling. ``log_prob`` evaluates the bound itself in closed form
    (kind ``"lower_bound"``; ``bits_per_dim`` for images).

    Data are vectors (``data_shape=(d,)``: points, tables; standardized with the
    training data's mean and scale, and the Jacobian is accounted for in
    ``log_prob``) or images (``data_shape=(C, H, W)`` in [0, 1], mapped to [-1, 1];
    the decoder is the discretized Gaussian over 256 levels of Ho et al.).

    Arguments:
        data_shape: shape of one example.
        schedule: ``"linear"`` or ``"cosine"`` noise schedule.
        timesteps: length T of the chain.
        network: ``"mlp"`` (vectors), ``"unet"`` (images) or ``None`` to choose by shape.
        hidden: width of the MLP or channels of the U-Net.
        num_classes: labels for conditional generation with classifier-free guidance.
        prediction: ``"eps"`` or ``"v"`` (Salimans & Ho 2022).
        ema_decay: decay of the exponential moving average of the weights.
        label_dropout: probability of dropping the label in training (classifier-free guidance).

    Example:
        >>> import probgen
        >>> x = probgen.datasets.load("moons", n=256).x
        >>> m = Diffusion((2,), timesteps=50, hidden=32)
        >>> _ = m.fit(x, steps=20, progress=False, seed=0)
        >>> m.sample(5, seed=0, steps=10).shape
        torch.Size([5, 2])
    """

    family = "diffusion"
    default_inference = "mle"
    log_prob_kind = "lower_bound"

    def __init__(self, data_shape: Sequence[int], schedule: str = "linear", timesteps: int = 1000,
                 network: str | None = None, hidden: int | None = None, num_classes: int | None = None,
                 prediction: str = "eps", ema_decay: float = 0.999, label_dropout: float = 0.1):
        super().__init__()
        if isinstance(data_shape, int):
            data_shape = (data_shape,)
        shape = tuple(int(s) for s in data_shape)
        if len(shape) not in (1, 3) or any(s <= 0 for s in shape):
            raise ValueError(f"data_shape: expected (d,) for vectors or (C, H, W) for images, got {data_shape!r}")
        network = network or ("mlp" if len(shape) == 1 else "unet")
        check_choice("network", network, ("mlp", "unet"))
        if (network == "unet") != (len(shape) == 3):
            raise ValueError(f"network: {network!r} does not fit data_shape {shape}; use 'mlp' for (d,), 'unet' for (C, H, W)")
        check_choice("prediction", prediction, ("eps", "v"))
        check_probability("ema_decay", ema_decay)
        check_probability("label_dropout", label_dropout)
        if num_classes is not None:
            check_positive("num_classes", num_classes, integer=True)
        self.data_shape = shape
        self.is_image = len(shape) == 3
        self.timesteps = int(check_positive("timesteps", timesteps, integer=True))
        self.prediction = prediction
        self.ema_decay = float(ema_decay)
        self.label_dropout = float(label_dropout)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.schedule = NoiseSchedule(schedule, self.timesteps)
        if network == "mlp":
            self.network = TimeMLP(shape[0], hidden=hidden or 128, num_classes=self.num_classes)
        else:
            self.network = UNet(shape[0], channels=hidden or 32, num_classes=self.num_classes)
        self.ema_network = copy.deepcopy(self.network).requires_grad_(False)
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("data_loc", torch.zeros(shape[0] if not self.is_image else 1))
        self.register_buffer("data_scale", torch.ones(shape[0] if not self.is_image else 1))
        self.register_buffer("data_fitted", torch.zeros((), dtype=torch.bool))

    # -------------------------------------------------------------- data space
    def _to_latent(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1 if self.is_image else (x - self.data_loc) / self.data_scale

    def _from_latent(self, z: torch.Tensor) -> torch.Tensor:
        return ((z + 1) / 2).clamp(0, 1) if self.is_image else z * self.data_scale + self.data_loc

    def _check_x(self, x: Any, name: str = "x") -> torch.Tensor:
        x = as_tensor(x, name, ndim=len(self.data_shape) + 1, shape=self.data_shape, device=self.device)
        if self.is_image and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{name}: images must lie in [0, 1], got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]")
        return x

    def _labels(self, y: Any, n: int, name: str = "y") -> torch.Tensor | None:
        # labels are optional here: None means unconditional (classifier-free guidance's null label)
        labels = class_labels(y, self.num_classes, n, name, required=False)
        return None if labels is None else labels.to(self.device)

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        if hasattr(data, "x") and hasattr(data, "y"):  # a probgen Dataset
            data = (data.x, data.y) if self.num_classes is not None else data.x
        if isinstance(data, (tuple, list)):
            if len(data) != 2:
                raise ValueError(f"{name}: expected images/points or a pair (x, labels)")
            x = self._check_x(data[0], f"{name}[0]").cpu()
            return x, self._labels(data[1], len(x), f"{name}[1]").cpu()
        if self.num_classes is not None:
            raise ValueError(f"{name}: a conditional model (num_classes={self.num_classes}) needs (x, labels)")
        x = self._check_x(data, name).cpu()
        require_examples(len(x), name)  # before the data's scale is taken
        if not self.is_image and not bool(self.data_fitted) and name == "data":
            self.data_loc.copy_(x.mean(0))
            self.data_scale.copy_(x.std(0).clamp_min(1e-6))
            self.data_fitted.fill_(True)
        return (x,)

    # --------------------------------------------------------------- training
    def _predict_eps(self, net, z: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out = net(z, t, y)
        if self.prediction == "eps":
            return out
        k = z.dim() - 1
        ab = self.schedule.at("alpha_bar", t, k)
        return (1 - ab).sqrt() * z + ab.sqrt() * out  # ε from v

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The simple loss: mean squared error of the predicted noise (or of v)."""
        z0 = self._to_latent(x)
        t = torch.randint(0, self.timesteps, (len(x),), device=x.device)
        noise = torch.randn_like(z0)
        zt = self.schedule.q_sample(z0, t, noise)
        if y is not None and self.label_dropout > 0:
            drop = torch.rand(len(y), device=y.device) < self.label_dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        out = self.network(zt, t, y)
        if self.prediction == "eps":
            target = noise
        else:
            k = z0.dim() - 1
            ab = self.schedule.at("alpha_bar", t, k)
            target = ab.sqrt() * noise - (1 - ab).sqrt() * z0
        return F.mse_loss(out, target)

    def validation_loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.training_loss(x, y)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Update the EMA weights (decay warmed up as (1 + n) / (10 + n) early on)."""
        self.ema_steps += 1
        decay = min(self.ema_decay, (1 + float(self.ema_steps)) / (10 + float(self.ema_steps)))
        for ema, p in zip(self.ema_network.parameters(), self.network.parameters()):
            ema.lerp_(p.detach(), 1 - decay)

    # --------------------------------------------------------- reverse process
    def _reverse_mean_var(self, net, z: torch.Tensor, i: int | torch.Tensor, y, guidance: float = 0.0):
        """Mean and variance of p(z_{t-1} | z_t) at step ``i`` (an int, or one step per example)."""
        t = i if isinstance(i, torch.Tensor) else torch.full((len(z),), i, device=z.device, dtype=torch.long)
        eps = self._guided_eps(net, z, t, y, guidance)
        k = z.dim() - 1
        ab = self.schedule.at("alpha_bar", t, k)
        x0 = (z - (1 - ab).sqrt() * eps) / ab.sqrt()
        if self.is_image:
            x0 = x0.clamp(-1, 1)
        mean, _ = self.schedule.posterior(x0, z, t)
        var = self.schedule.at("posterior_log_var", t, k).exp().expand_as(mean)
        return mean, var

    def _guided_eps(self, net, z, t, y, guidance: float):
        if y is None or guidance == 0:
            return self._predict_eps(net, z, t, y)
        null = torch.full_like(y, self.num_classes)
        eps_c, eps_u = self._predict_eps(net, torch.cat([z, z]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return (1 + guidance) * eps_c - guidance * eps_u

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, n: int | None = None):
        """The reverse chain as a Pyro program: x_T ~ N(0, I), x_{t-1} ~ p_θ(· | x_t), x_0 ~ decoder(x_1).

        Sites are named ``"x_T"`` … ``"x_1"`` and ``"x_0"`` (observed when ``x`` is given),
        in latent space (images in [-1, 1], vectors standardized).
        """
        n = len(x) if x is not None else (n or 1)
        obs = None if x is None else self._to_latent(x)
        k = len(self.data_shape)
        with pyro.plate("data", n):
            z = pyro.sample(f"x_{self.timesteps}", dist.Normal(torch.zeros(n, *self.data_shape, device=self.device), 1.0)
                            .to_event(k))
            for i in range(self.timesteps - 1, 0, -1):
                mean, var = self._reverse_mean_var(self.network, z, i, y)
                z = pyro.sample(f"x_{i}", dist.Normal(mean, var.sqrt()).to_event(k))
            return pyro.sample("x_0", self._decoder(z, y).to_event(k), obs=obs)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, n: int | None = None):
        """The forward noising chain q(x_1 | x_0) … q(x_T | x_{T-1}) as a Pyro program."""
        z = self._to_latent(x)
        k = len(self.data_shape)
        with pyro.plate("data", len(x)):
            for i in range(self.timesteps):
                beta = self.schedule.betas[i]
                z = pyro.sample(f"x_{i + 1}", dist.Normal((1 - beta).sqrt() * z, beta.sqrt()).to_event(k))

    def _decoder(self, z1: torch.Tensor, y) -> dist.TorchDistribution:
        mean, _ = self._reverse_mean_var(self.network, z1, 0, y)
        scale = self.schedule.betas[0].sqrt().expand_as(mean)
        return DiscretizedGaussian(mean, scale) if self.is_image else dist.Normal(mean, scale)

    # -------------------------------------------------------------- sampling
    def _timestep_sequence(self, steps: int | None, method: str) -> list[int]:
        if method == "ddpm":
            if steps not in (None, self.timesteps):
                raise ValueError(f"steps: DDPM runs all {self.timesteps} steps of the chain; use method='ddim' "
                                 "for fewer")
            return list(range(self.timesteps))
        steps = self.timesteps if steps is None else steps
        check_positive("steps", steps, integer=True)
        if steps > self.timesteps:
            raise ValueError(f"steps: at most the {self.timesteps} steps the model was trained with, got {steps}")
        return sorted({int(round(v)) for v in torch.linspace(0, self.timesteps - 1, steps).tolist()})

    def _sample(self, n: int, y: Any = None, method: str = "ddim", steps: int | None = None, eta: float = 0.0,
                guidance: float = 0.0, x_T: Any = None, use_ema: bool = True, progress: bool = False) -> torch.Tensor:
        """Draw ``n`` examples: ``method="ddpm"`` (ancestral, all T steps) or ``"ddim"`` with ``steps``
        (default min(50, T)) and ``eta`` (0: deterministic given ``x_T``); ``y`` labels and ``guidance``
        weight w for classifier-free guidance (ε = (1 + w) ε(y) − w ε(∅))."""
        check_choice("method", method, ("ddpm", "ddim"))
        if method == "ddpm":
            eta = 1.0
        elif steps is None:
            steps = min(50, self.timesteps)
        seq = self._timestep_sequence(steps, method)
        y = self._labels(y, n)
        if guidance and y is None:
            raise ValueError("guidance: classifier-free guidance needs labels y")
        if x_T is None:
            z = torch.randn(n, *self.data_shape, device=self.device)
        else:
            z = as_tensor(x_T, "x_T", shape=self.data_shape, ndim=len(self.data_shape) + 1, device=self.device)
            if len(z) != n:
                raise ValueError(f"x_T: expected {n} starting points, got {len(z)}")
        z = self._run_chain(z, seq, float(eta), y, float(guidance), use_ema, progress)
        return self._from_latent(z)

    def _run_chain(self, z, seq, eta, y, guidance, use_ema, progress, known=None, mask=None):
        net = self.ema_network if use_ema else self.network
        k = z.dim() - 1
        ab_all = self.schedule.alpha_bar
        for j in progress_bar(range(len(seq) - 1, -1, -1), enabled=progress, desc="sampling"):
            i, prev = seq[j], (seq[j - 1] if j > 0 else -1)
            t = torch.full((len(z),), i, device=z.device, dtype=torch.long)
            eps = self._guided_eps(net, z, t, y, guidance)
            ab = ab_all[i]
            ab_prev = ab_all[prev] if prev >= 0 else torch.ones((), device=z.device)
            x0 = (z - (1 - ab).sqrt() * eps) / ab.sqrt()
            if self.is_image:
                x0 = x0.clamp(-1, 1)
                eps = (z - ab.sqrt() * x0) / (1 - ab).sqrt()
            sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).clamp_min(0).sqrt()
            direction = (1 - ab_prev - sigma ** 2).clamp_min(0).sqrt() * eps
            z = ab_prev.sqrt() * x0 + direction
            if prev >= 0 and eta > 0:
                z = z + sigma * torch.randn_like(z)
            if known is not None:
                if prev >= 0:
                    tp = torch.full((len(z),), prev, device=z.device, dtype=torch.long)
                    noisy_known = self.schedule.q_sample(known, tp, torch.randn_like(known))
                else:
                    noisy_known = known
                z = mask * noisy_known + (1 - mask) * z
        return z

    @torch.no_grad()
    def inpaint(self, x: Any, mask: Any, seed: int | None = None, method: str = "ddpm", steps: int | None = None,
                eta: float = 1.0, y: Any = None, guidance: float = 0.0) -> torch.Tensor:
        """Fill the entries of ``x`` where ``mask`` is 0, keeping those where it is 1.

        At every reverse step the known part is replaced by a draw of q(x_t | x_0)
        for the known values (Lugmayr et al. 2022, RePaint, without resampling), so
        the unknown part is generated consistently with it.
        """
        from ...core.random import seeded

        x = self._check_x(x)
        mask = as_tensor(mask, "mask", device=self.device)
        if mask.shape != x.shape and mask.shape != x.shape[1:]:
            raise ValueError(f"mask: expected shape {tuple(x.shape)} or {tuple(x.shape[1:])}, got {tuple(mask.shape)}")
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError("mask: expected 0 (to fill) and 1 (known) entries only")
        mask = mask.expand_as(x)
        seq = self._timestep_sequence(steps, check_choice("method", method, ("ddpm", "ddim")))
        with seeded(seed):
            y = self._labels(y, len(x))
            z = torch.randn_like(x)
            z = self._run_chain(z, seq, 1.0 if method == "ddpm" else float(eta), y, float(guidance), True, False,
                                known=self._to_latent(x), mask=mask)
        return self._from_latent(z)

    # ------------------------------------------------------------ likelihood
    @torch.no_grad()
    def log_prob(self, x: Any, y: Any = None, num_steps: int | None = None, seed: int | None = 0,
                 batch_size: int = 512) -> torch.Tensor:
        """The variational lower bound on log p(x) per example (nats), in data space.

        L = −KL(q(x_T|x_0) ‖ p(x_T)) − Σ_{t≥2} KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) + log p_θ(x_0|x_1),
        each term with one draw of x_t. With ``num_steps=k`` the sum over t is
        estimated from k evenly spaced steps with a random offset drawn for each
        example (an unbiased estimate of the bound, cheaper for long chains).
        """
        from ...core.random import seeded

        if isinstance(x, (tuple, list)) and len(x) == 2 and y is None:
            x, y = x
        x = self._check_x(x)
        y = self._labels(y, len(x))
        out = []
        with seeded(seed):
            for start in range(0, len(x), batch_size):
                yb = None if y is None else y[start:start + batch_size]
                out.append(self._bound(x[start:start + batch_size], yb, num_steps))
        return cat_rows(out, x.new_zeros(0))

    def _bound(self, x: torch.Tensor, y, num_steps: int | None) -> torch.Tensor:
        net = self.ema_network
        z0 = self._to_latent(x)
        k = z0.dim() - 1
        dims = tuple(range(1, z0.dim()))
        n = len(x)
        ab_T = self.schedule.alpha_bar[-1]
        prior_kl = gaussian_kl(ab_T.sqrt() * z0, (1 - ab_T).expand_as(z0), torch.zeros_like(z0),
                               torch.ones_like(z0)).sum(dims)
        T = self.timesteps
        if num_steps is None or num_steps >= T - 1:
            steps, weight = [torch.full((n,), i, device=x.device, dtype=torch.long) for i in range(1, T)], 1.0
        else:
            check_positive("num_steps", num_steps, integer=True)
            # k evenly spaced steps from a random offset drawn for each example: every step has
            # probability k/(T-1) in every row, and the rows' errors average out over a batch
            # (one offset shared by the batch moved the whole batch's mean together)
            offset = torch.randint(0, T - 1, (n,), device=x.device)
            steps = [1 + (offset + j * (T - 1) // num_steps) % (T - 1) for j in range(num_steps)]
            weight = (T - 1) / num_steps
        kl_sum = torch.zeros(n, device=x.device)
        for t in steps:
            zt = self.schedule.q_sample(z0, t, torch.randn_like(z0))
            q_mean, q_var = self.schedule.posterior(z0, zt, t)
            p_mean, p_var = self._reverse_mean_var(net, zt, t, y)
            kl_sum += gaussian_kl(q_mean, q_var, p_mean, p_var).sum(dims)
        t0 = torch.zeros(n, device=x.device, dtype=torch.long)
        z1 = self.schedule.q_sample(z0, t0, torch.randn_like(z0))
        mean, _ = self._reverse_mean_var(net, z1, 0, y)
        scale = self.schedule.betas[0].sqrt()
        if self.is_image:
            decoder_lp = DiscretizedGaussian(mean, scale.expand_as(mean)).log_prob(z0).sum(dims)
            jacobian = 0.0  # a probability mass over the 256 levels: no change of variables
        else:
            decoder_lp = torch.distributions.Normal(mean, scale).log_prob(z0).sum(dims)
            jacobian = -torch.log(self.data_scale).sum()
        del k
        return decoder_lp - weight * kl_sum - prior_kl + jacobian

    def bits_per_dim(self, x: Any, **kwargs: Any) -> torch.Tensor:
        """−log_prob / (D log 2): the bound in bits per dimension."""
        return -self.log_prob(x, **kwargs) / (math.prod(self.data_shape) * math.log(2))

    def score(self, x: Any, **kwargs: Any) -> torch.Tensor:
        """Anomaly score: the negative bound (higher = less likely under the model)."""
        return -self.log_prob(x, **kwargs)

    # --------------------------------------------------------------- examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        from ...datasets import load

        x = load("ring8", n=128).x
        return ContractCase(cls((2,), timesteps=20, hidden=32), x, {"steps": 10}, {"steps": 5}, x[:6])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """A small diffusion model on a ring of eight Gaussians, sampled by DDIM in 50 steps."""
        import os

        import probgen
        from ... import plot
        from ...gallery import TourSection, demo_source
        from ...metrics.modes import modes_covered

        steps = 300 if quick else 1500

        def demo():
            torch.manual_seed(0)  # the networks' initial weights
            data = probgen.datasets.load("ring8", n=4000, sigma=0.1)  # 8 Gaussians on the unit circle
            model = probgen.models.Diffusion((2,), timesteps=100, schedule="cosine", prediction="v", hidden=128,
                                             ema_decay=0.99)
            model.fit(data.x, steps=steps, batch_size=256, lr=2e-3, seed=0, progress=False)
            model.fit(data.x, steps=steps // 3, batch_size=256, lr=2e-4, seed=1, progress=False)  # lower lr to finish
            samples = model.sample(2500, seed=0, method="ddim", steps=50)
            return data, samples

        data, samples = demo()
        stats = modes_covered(samples, data.meta["means"], data.meta["sigma"])
        ax = plot.scatter_2d(data.x[:1000], s=3, color="lightgray", label="data")
        plot.scatter_2d(samples[:1000], ax=ax, s=3, color="C0", alpha=0.5, label="diffusion (DDIM, 50 steps)")
        ax.legend(loc="upper right", fontsize=7)
        ax.set_title(f"{stats['modes']}/8 modes, {100 * stats['high_quality']:.0f}% within 3 sigma")
        path = plot.save_figure(ax, os.path.join(out_dir, "diffusion_ring8.png"))
        works = stats["modes"] == 8 and stats["high_quality"] >= 0.7
        return TourSection(
            cls.family, "Denoising diffusion on a ring of eight Gaussians",
            [(path, "1,000 samples of the diffusion model (blue, DDIM in 50 steps) over the data (gray)")],
            {"modes covered (of 8)": str(stats["modes"]),
             "samples within 3 sigma of a mode": f"{100 * stats['high_quality']:.0f}%"},
            demo_source(demo, steps=steps), "works" if works else "limited",
            "A small network trained for seconds: the modes are found but drawn wider than the data; "
            "`probgen bench diffusion` trains longer (25/25 modes, 99.5% within 3 sigma on grid25)."
            if works else f"{steps} steps are too few here; `probgen bench diffusion` trains longer.")
