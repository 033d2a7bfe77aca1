"""Deep Markov Model (Krishnan, Shalit & Sontag 2017) as a Pyro model/guide pair over piano rolls."""

from __future__ import annotations

__all__ = ["DeepMarkovModel"]

import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ...core.base import ContractCase
from ...core.checks import check_positive
from .base import MusicModel


class _Transition(nn.Module):
    """Gated transition p(z_t | z_{t-1}): a mix of a linear and a nonlinear proposal (the paper's GatedTransition)."""

    def __init__(self, z: int, hidden: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(z, hidden), nn.ReLU(), nn.Linear(hidden, z), nn.Sigmoid())
        self.proposed = nn.Sequential(nn.Linear(z, hidden), nn.ReLU(), nn.Linear(hidden, z))
        self.linear = nn.Linear(z, z)
        nn.init.eye_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.scale = nn.Linear(z, z)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, prop = self.gate(z), self.proposed(z)
        loc = (1 - g) * self.linear(z) + g * prop
        return loc, F.softplus(self.scale(F.relu(prop))) + 1e-3


class DeepMarkovModel(MusicModel):
    r"""A nonlinear state-space model: ``z_t ~ N(μ(z_{t-1}), σ(z_{t-1}))``, notes ``v_t ~ Bernoulli(f(z_t))``.

    ``model`` and ``guide`` are Pyro programs (a plate over pieces, ``pyro.markov`` over frames,
    padding masked); the guide is the paper's structured one, ``q(z_t | z_{t-1}, v_{t:T})`` with a
    backward GRU over the frames ("ST-R"). Fitted by SVI (engine ``"svi"``, the ELBO).

    ``log_prob`` is a **lower bound**: the importance-weighted bound with ``num_particles``
    draws from the guide (Burda et al. 2016), which tightens as they grow; per-frame figures
    divide it by the frames. Generation draws ``z`` from the prior; fixed notes (primer,
    harmonisation) are clamped in the emission and seen by the future only through the
    guide-free prior, so harmonisation here is a plain clamp, not a posterior over ``z``.

    Arguments:
        num_pitches, low_pitch, resolution: the roll (see ``MusicModel``).
        z_dim: latent dimensions; transition_hidden, emission_hidden, rnn_hidden: network widths.

    References:
        Krishnan, Shalit & Sontag, Structured inference networks for nonlinear state space models, AAAI 2017.

    Example:
        >>> import torch, probgen
        >>> roll = torch.tensor([[1, 0, 1], [0, 1, 0]] * 4, dtype=torch.float32)
        >>> m = probgen.models.DeepMarkovModel(num_pitches=3, low_pitch=60, z_dim=2, rnn_hidden=8)
        >>> _ = m.fit([roll], steps=5, lr=0.02, progress=False, seed=0)
        >>> m.log_prob_kind, m.sample(6, seed=0, primer=[[60, 62]]).shape
        ('lower_bound', torch.Size([6, 3]))
        >>> bool(m.log_prob([roll], num_particles=10).isfinite().all())
        True
    """

    family = "deep_markov"
    default_inference = "svi"
    log_prob_kind = "lower_bound"

    def __init__(self, num_pitches: int, low_pitch: int = 0, resolution: str = "quarter", z_dim: int = 32,
                 transition_hidden: int = 64, emission_hidden: int = 64, rnn_hidden: int = 64):
        super().__init__()
        self._init_music(num_pitches, low_pitch, resolution)
        for name, value in (("z_dim", z_dim), ("transition_hidden", transition_hidden),
                            ("emission_hidden", emission_hidden), ("rnn_hidden", rnn_hidden)):
            check_positive(name, value, integer=True)
        p, z = self.num_pitches, int(z_dim)
        self.z_dim = z
        self.transition = _Transition(z, transition_hidden)
        self.emitter = nn.Sequential(nn.Linear(z, emission_hidden), nn.ReLU(), nn.Linear(emission_hidden, emission_hidden),
                                     nn.ReLU(), nn.Linear(emission_hidden, p))
        self.rnn = nn.GRU(p, rnn_hidden, batch_first=True)
        self.combine_hidden = nn.Linear(z, rnn_hidden)
        self.combine_loc = nn.Linear(rnn_hidden, z)
        self.combine_scale = nn.Linear(rnn_hidden, z)
        self.z0 = nn.Parameter(torch.zeros(z))
        self.q0 = nn.Parameter(torch.zeros(z))

    # ------------------------------------------------------------ networks
    def _guide_states(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Backward GRU over each piece's own frames: state t summarises frames t..T_i."""
        rev = torch.zeros_like(padded)
        for i, n in enumerate(lengths.tolist()):
            rev[i, :n] = padded[i, :n].flip(0)
        out, _ = self.rnn(rev)
        back = torch.zeros_like(out)
        for i, n in enumerate(lengths.tolist()):
            back[i, :n] = out[i, :n].flip(0)
        return back

    def _combine(self, z_prev: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hc = 0.5 * (torch.tanh(self.combine_hidden(z_prev)) + h)
        return self.combine_loc(hc), F.softplus(self.combine_scale(hc)) + 1e-3

    # -------------------------------------------------------------- Pyro
    def model(self, padded: torch.Tensor, lengths: torch.Tensor) -> None:
        """p(v, z): Gaussian transitions, Bernoulli notes; frames past a piece's end are masked."""
        padded = padded[:, :int(lengths.max())]  # the data are padded to the longest piece of all
        n, t_max, _ = padded.shape
        mask = torch.arange(t_max, device=padded.device)[None] < lengths[:, None]
        with self.data_plate(n, "pieces", device=padded.device):
            z = self.z0.expand(n, -1)
            for t in pyro.markov(range(t_max)):
                loc, scale = self.transition(z)
                with pyro.poutine.mask(mask=mask[:, t]):
                    z = pyro.sample(f"z_{t}", dist.Normal(loc, scale).to_event(1))
                    pyro.sample(f"v_{t}", dist.Bernoulli(logits=self.emitter(z)).to_event(1), obs=padded[:, t])

    def guide(self, padded: torch.Tensor, lengths: torch.Tensor) -> None:
        """q(z | v) = prod_t q(z_t | z_{t-1}, v_{t:T}) (structured, backward GRU)."""
        padded = padded[:, :int(lengths.max())]
        n, t_max, _ = padded.shape
        mask = torch.arange(t_max, device=padded.device)[None] < lengths[:, None]
        h = self._guide_states(padded, lengths)
        with self.data_plate(n, "pieces", device=padded.device):
            z = self.q0.expand(n, -1)
            for t in pyro.markov(range(t_max)):
                loc, scale = self._combine(z, h[:, t])
                with pyro.poutine.mask(mask=mask[:, t]):
                    z = pyro.sample(f"z_{t}", dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------ scoring
    def _bound_terms(self, padded: torch.Tensor, lengths: torch.Tensor, k: int) -> torch.Tensor:
        """log p(v, z) - log q(z | v) per frame for ``k`` guide draws: (k, n, T), padding zeroed.

        The same densities as ``model``/``guide``, written in torch to vectorise over draws.
        """
        n, t_max, _ = padded.shape
        mask = (torch.arange(t_max, device=padded.device)[None] < lengths[:, None]).float()
        h = self._guide_states(padded, lengths)
        zq = self.q0.expand(k, n, -1)
        zp = self.z0.expand(k, n, -1)
        out = torch.zeros(k, n, t_max, device=padded.device)
        for t in range(t_max):
            qloc, qscale = self._combine(zq, h[:, t].expand(k, -1, -1))
            z = qloc + qscale * torch.randn_like(qloc)
            ploc, pscale = self.transition(zp)
            log_p = (dist.Normal(ploc, pscale).log_prob(z).sum(-1)
                     + dist.Bernoulli(logits=self.emitter(z)).log_prob(padded[:, t].expand(k, -1, -1)).sum(-1))
            log_q = dist.Normal(qloc, qscale).log_prob(z).sum(-1)
            out[:, :, t] = (log_p - log_q) * mask[:, t]
            # past a piece's end its chain stops; keep its z (the masked terms are zero anyway)
            keep = mask[:, t].bool()[None, :, None]
            zq = torch.where(keep, z, zq)
            zp = torch.where(keep, z, zp)
        return out

    def log_prob(self, x: Any, num_particles: int = 100, seed: int | None = 0) -> torch.Tensor:
        """Importance-weighted lower bound on each piece's log-probability (``num_particles`` guide draws)."""
        from ...core.random import seeded

        check_positive("num_particles", num_particles, integer=True)
        rolls = self.rolls(x)
        out = []
        with seeded(seed), torch.no_grad():
            for r in rolls:
                padded, lengths = r[None].to(self.device), torch.tensor([len(r)], device=self.device)
                terms = self._bound_terms(padded, lengths, num_particles).sum(-1)[:, 0]  # (k,)
                out.append(torch.logsumexp(terms, 0) - math.log(num_particles))
        return torch.stack(out).cpu() if out else torch.zeros(0)

    def frame_log_prob(self, x: Any) -> list[torch.Tensor]:
        """Not available per frame for a latent-variable model: use ``log_prob`` (a bound per piece)."""
        raise NotImplementedError("DeepMarkovModel: the bound is per piece; use log_prob or nll_per_frame")

    def nll_per_frame(self, x: Any, num_particles: int = 100, seed: int | None = 0) -> float:
        """Upper bound on the negative log-likelihood per frame (from the importance-weighted bound)."""
        rolls = self.rolls(x)
        if not rolls:
            raise ValueError("rolls: expected at least one piece to score, got none")
        lp = self.log_prob(rolls, num_particles=num_particles, seed=seed)
        return float(-lp.double().sum() / sum(len(r) for r in rolls))

    # ------------------------------------------------------------ generation
    def _generate(self, n: int, num_frames: int, clamp: torch.Tensor, **_: Any) -> torch.Tensor:
        out = torch.zeros(n, num_frames, self.num_pitches, device=clamp.device)
        z = self.z0.expand(n, -1)
        for t in range(num_frames):
            loc, scale = self.transition(z)
            z = loc + scale * torch.randn_like(loc)
            v = torch.bernoulli(torch.sigmoid(self.emitter(z)))
            out[:, t] = torch.where(clamp[:, t] >= 0, clamp[:, t], v)
        return out

    # ------------------------------------------------------------ examples
    # lr chosen among a few by the bound on 5 validation chorales (not the test ones)
    tour_budget = {"full": ({"z_dim": 8, "rnn_hidden": 16, "transition_hidden": 16, "emission_hidden": 32},
                            {"steps": 25, "batch_size": 8, "lr": 0.05}, 20),
                   "quick": ({"z_dim": 4, "rnn_hidden": 8, "transition_hidden": 8, "emission_hidden": 16},
                             {"steps": 3, "batch_size": 4, "lr": 0.05}, 8)}

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        rolls = [(torch.rand(6, 4, generator=g) < 0.4).float() for _ in range(4)]
        return ContractCase(cls(num_pitches=4, low_pitch=60, z_dim=2, transition_hidden=8, emission_hidden=8,
                                rnn_hidden=8), rolls, {"steps": 3, "batch_size": 2}, log_prob_data=rolls[:3])
