"""Noise schedules and the closed-form Gaussian algebra of denoising diffusion (Ho et al. 2020)."""

from __future__ import annotations

__all__ = ["make_betas", "NoiseSchedule", "DiscretizedGaussian", "gaussian_kl"]

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from ...core.checks import check_choice, check_positive

SCHEDULES = ("linear", "cosine")


def make_betas(kind: str, timesteps: int) -> torch.Tensor:
    """β_1..β_T (float64) of the ``"linear"`` (Ho et al. 2020) or ``"cosine"`` (Nichol & Dhariwal 2021) schedule.

    The linear schedule runs from 1e-4 to 0.02 at T = 1,000 and is rescaled by
    1000/T for other lengths, so that ᾱ_T stays near zero.

    Example:
        >>> b = make_betas("cosine", 100)
        >>> b.shape, bool((b > 0).all() and (b < 1).all())
        (torch.Size([100]), True)
    """
    check_choice("schedule", kind, SCHEDULES)
    check_positive("timesteps", timesteps, integer=True)
    if kind == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), timesteps, dtype=torch.float64)
    s = 0.008
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(1e-8, 0.999)


class NoiseSchedule(torch.nn.Module):
    """Per-step constants as buffers; index ``i`` (0-based) is diffusion step ``i + 1``.

    ``q_sample`` draws x_t from q(x_t | x_0) in closed form; ``posterior`` gives the
    mean and variance of q(x_{t-1} | x_t, x_0).
    """

    def __init__(self, kind: str, timesteps: int):
        super().__init__()
        betas = make_betas(kind, timesteps)
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        post_var = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
        consts = {
            "betas": betas, "alphas": alphas, "alpha_bar": alpha_bar, "alpha_bar_prev": alpha_bar_prev,
            "posterior_var": post_var,
            # the first step's posterior variance is 0; its log is clipped to β_1 (Ho et al.)
            "posterior_log_var": torch.log(torch.cat([post_var[1:2], post_var[1:]])),
            "coef_x0": betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
            "coef_xt": (1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar),
        }
        for name, value in consts.items():
            self.register_buffer(name, value.float(), persistent=False)
        self.timesteps = timesteps

    def at(self, name: str, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """The constant ``name`` at indices ``t``, shaped to broadcast over ``ndim`` data dims."""
        return getattr(self, name)[t].reshape(-1, *([1] * ndim))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        k = x0.dim() - 1
        return self.at("alpha_bar", t, k).sqrt() * x0 + (1 - self.at("alpha_bar", t, k)).sqrt() * noise

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = x0.dim() - 1
        mean = self.at("coef_x0", t, k) * x0 + self.at("coef_xt", t, k) * xt
        return mean, self.at("posterior_var", t, k).expand_as(mean)


def gaussian_kl(m1: torch.Tensor, v1: torch.Tensor, m2: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """KL(N(m1, v1) || N(m2, v2)) elementwise."""
    return 0.5 * (torch.log(v2) - torch.log(v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


class DiscretizedGaussian(TorchDistribution):
    """A Gaussian integrated over the 256 bins of 8-bit data scaled to [-1, 1] (Ho et al. 2020, eq. 13).

    Independent per element; ``log_prob`` returns elementwise log-masses (use ``to_event``).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.interval(-1.0, 1.0)
    has_rsample = False

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return DiscretizedGaussian(self.loc.expand(batch_shape), self.scale.expand(batch_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = torch.round((value + 1) * 127.5) / 127.5 - 1  # the bin centre
        normal = torch.distributions.Normal(self.loc, self.scale)
        upper = torch.where(value > 0.999, torch.ones_like(value), normal.cdf(value + 1 / 255))
        lower = torch.where(value < -0.999, torch.zeros_like(value), normal.cdf(value - 1 / 255))
        return torch.log((upper - lower).clamp_min(1e-12))

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            z = self.loc.expand(sample_shape + self.loc.shape) + self.scale * torch.randn(
                sample_shape + self.loc.shape, device=self.loc.device)
            return (torch.round((z.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1)
