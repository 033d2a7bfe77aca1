"""RNN-RBM (Boulanger-Lewandowski et al. 2012): an RBM per frame whose biases a recurrent network sets."""

from __future__ import annotations

__all__ = ["RNNRBM"]

import math
from typing import Any

import torch
import torch.nn.functional as F

from ...core.base import ContractCase
from ...core.checks import check_positive
from ...core.engines import implements
from ...core.result import FitResult
from ..rbm.rbm import MAX_ENUMERATION, RBM, _bernoulli, _binary_configurations
from .base import MusicModel


class RNNRBM(MusicModel):
    r"""An RBM for each frame, with weights ``W`` shared over time and biases set by an RNN.

    With ``u_{t-1}`` the recurrent state after frame t-1 (``u_t = tanh(W_vu v_t + W_uu u_{t-1} + b_u)``),
    frame t is an RBM with visible bias ``b + W_uv u_{t-1}`` and hidden bias ``c + W_uh u_{t-1}``.

    Training (engine ``"mcmc"``, the shared loop of ``probgen.infer.mcmc`` calling ``mcmc_step``):
    the RBM is first pre-trained on the frames with ``probgen.models.RBM`` (persistent CD), then
    every minibatch of pieces runs ``k`` steps of block Gibbs per frame from the data (CD-k) and
    follows the gradient of the free-energy difference ``F_t(v_t) - F_t(ṽ_t)`` into the RBM and,
    through the biases, into the RNN (Adam), as in the paper.

    ``log_prob`` is exact: each frame's partition function is summed over the smaller layer
    (``2**min(num_hidden, num_pitches)`` terms), so the model needs ``min(num_hidden, num_pitches) <= 20``.
    Generation and harmonisation run ``gibbs_steps`` sweeps per frame with the fixed notes
    clamped, which samples the frame's RBM conditioned on them (given the past).

    Arguments:
        num_pitches, low_pitch, resolution: the roll (see ``MusicModel``).
        num_hidden: hidden units of the RBM (at most 20 unless num_pitches is).
        rnn_hidden: recurrent units.
        k: Gibbs steps of CD-k.
        pretrain_epochs: epochs of RBM pre-training on the frames (0: none).

    Example:
        >>> import torch, probgen
        >>> roll = torch.tensor([[1, 0, 1], [0, 1, 0]] * 8, dtype=torch.float32)
        >>> m = probgen.models.RNNRBM(num_pitches=3, low_pitch=60, num_hidden=4, rnn_hidden=8)
        >>> _ = m.fit([roll], steps=200, lr=0.03, progress=False, seed=0)
        >>> m.nll_per_frame([roll]) < 3 * math.log(2)       # beats the uniform frame
        True
    """

    family = "rnn_rbm"
    default_inference = "mcmc"
    log_prob_kind = "exact"
    generate_options = ("gibbs_steps",)

    def __init__(self, num_pitches: int, low_pitch: int = 0, resolution: str = "quarter", num_hidden: int = 16,
                 rnn_hidden: int = 64, k: int = 5, pretrain_epochs: int = 5, gibbs_steps: int = 50):
        super().__init__()
        self._init_music(num_pitches, low_pitch, resolution)
        check_positive("num_hidden", num_hidden, integer=True)
        check_positive("rnn_hidden", rnn_hidden, integer=True)
        check_positive("k", k, integer=True)
        check_positive("pretrain_epochs", pretrain_epochs, strict=False, integer=True)
        check_positive("gibbs_steps", gibbs_steps, integer=True)
        if min(num_hidden, num_pitches) > MAX_ENUMERATION:
            raise ValueError(f"num_hidden: exact per-frame normalisation needs num_hidden <= {MAX_ENUMERATION} (or "
                             f"num_pitches <= {MAX_ENUMERATION}), got num_hidden={num_hidden}, num_pitches={num_pitches}")
        p, h, r = self.num_pitches, int(num_hidden), int(rnn_hidden)
        self.num_hidden, self.rnn_hidden, self.k = h, r, int(k)
        self.pretrain_epochs, self.gibbs_steps = int(pretrain_epochs), int(gibbs_steps)
        g = torch.Generator().manual_seed(0)
        self.W = torch.nn.Parameter(0.01 * torch.randn(p, h, generator=g))
        self.b = torch.nn.Parameter(torch.zeros(p))
        self.c = torch.nn.Parameter(torch.zeros(h))
        self.rnn = torch.nn.RNN(p, r, nonlinearity="tanh", batch_first=True)
        self.start = torch.nn.Parameter(torch.zeros(r))
        self.to_bias = torch.nn.Linear(r, p + h)
        torch.nn.init.zeros_(self.to_bias.weight)
        torch.nn.init.zeros_(self.to_bias.bias)
        object.__setattr__(self, "_optimizer", None)

    # ------------------------------------------------------------------ biases
    def _biases(self, padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Visible and hidden biases of every frame's RBM, (n, T, P) and (n, T, H)."""
        n, t, _ = padded.shape
        out, _ = self.rnn(padded[:, :-1]) if t > 1 else (padded.new_zeros(n, 0, self.rnn_hidden), None)
        ctx = torch.cat([self.start.expand(n, 1, -1), out], 1)
        bias = self.to_bias(ctx)
        return self.b + bias[..., :self.num_pitches], self.c + bias[..., self.num_pitches:]

    @staticmethod
    def _neg_free_energy(v: torch.Tensor, W: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor) -> torch.Tensor:
        return (v * bv).sum(-1) + F.softplus(v @ W + bh).sum(-1)

    def _log_partition(self, bv: torch.Tensor, bh: torch.Tensor) -> torch.Tensor:
        """Exact log Z of each frame's RBM (rows of ``bv``/``bh``), by summing over the smaller layer."""
        W = self.W
        flat_v, flat_h = bv.reshape(-1, self.num_pitches), bh.reshape(-1, self.num_hidden)
        if self.num_hidden <= self.num_pitches:
            terms = []
            for hs in _binary_configurations(self.num_hidden, W):  # (C, H)
                wh = hs @ W.T  # (C, P)
                # log sum_v exp(v·(b + Wh) + c·h) = c·h + sum_p softplus(b_p + (Wh)_p)
                terms.append(flat_h @ hs.T + F.softplus(flat_v[:, None, :] + wh[None]).sum(-1))
        else:
            terms = []
            for vs in _binary_configurations(self.num_pitches, W):
                vw = vs @ W
                terms.append(flat_v @ vs.T + F.softplus(flat_h[:, None, :] + vw[None]).sum(-1))
        return torch.logsumexp(torch.cat(terms, 1), 1).reshape(bv.shape[:-1])

    def _frame_log_prob(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        bv, bh = self._biases(padded)
        mask = torch.arange(padded.shape[1], device=padded.device)[None] < lengths[:, None]
        lp = torch.zeros(mask.shape, device=padded.device)
        rows = mask.nonzero(as_tuple=True)
        v, bv, bh = padded[rows], bv[rows], bh[rows]
        out = torch.empty(len(v), device=padded.device)
        for start in range(0, len(v), 256):  # frames in chunks: the enumeration is (frames x configurations)
            s = slice(start, start + 256)
            out[s] = self._neg_free_energy(v[s], self.W, bv[s], bh[s]) - self._log_partition(bv[s], bh[s])
        lp[rows] = out
        return lp

    # ---------------------------------------------------------------- training
    def _gibbs(self, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, steps: int,
               clamp: torch.Tensor | None = None) -> torch.Tensor:
        for _ in range(steps):
            h = _bernoulli(torch.sigmoid(v @ self.W + bh))
            v = _bernoulli(torch.sigmoid(h @ self.W.T + bv))
            if clamp is not None:
                v = torch.where(clamp >= 0, clamp, v)
        return v

    @implements("mcmc")
    def _fit_mcmc(self, data: Any, **options: Any) -> FitResult:
        """Pre-train the RBM on the frames (``probgen.models.RBM``, PCD), then CD-k through time
        with the shared loop (``probgen.infer.mcmc.fit_mcmc`` calls ``mcmc_step``)."""
        from ...infer.mcmc import fit_mcmc

        rolls = self.rolls(data, "data")
        if not rolls:
            raise ValueError("data: expected at least one piece, got none")
        options.setdefault("lr", 0.01)
        lr = float(check_positive("lr", options["lr"]))
        if self.pretrain_epochs:
            frames = torch.cat(rolls)
            rbm = RBM(num_visible=self.num_pitches, num_hidden=self.num_hidden)
            rbm.fit(frames, epochs=self.pretrain_epochs, batch_size=min(100, len(frames)), lr=0.05, progress=False,
                    seed=options.get("seed"))
            with torch.no_grad():
                self.W.copy_(rbm.W)
                self.b.copy_(rbm.b)
                self.c.copy_(rbm.c)
        object.__setattr__(self, "_optimizer", torch.optim.Adam(self.parameters(), lr=lr))
        try:
            return fit_mcmc(self, rolls, **options)
        finally:
            object.__setattr__(self, "_optimizer", None)

    def mcmc_step(self, batch: tuple[torch.Tensor, torch.Tensor], step: int) -> dict:
        """One CD-k update on a minibatch of padded pieces."""
        padded, lengths = batch
        padded = padded[:, :int(lengths.max())]  # the data are padded to the longest piece of all
        bv, bh = self._biases(padded)
        mask = torch.arange(padded.shape[1], device=padded.device)[None] < lengths[:, None]
        rows = mask.nonzero(as_tuple=True)
        v, bv, bh = padded[rows], bv[rows], bh[rows]
        with torch.no_grad():
            neg = self._gibbs(v, bv.detach(), bh.detach(), self.k)
        cost = (self._neg_free_energy(neg, self.W, bv, bh) - self._neg_free_energy(v, self.W, bv, bh)).mean()
        opt = self._optimizer
        opt.zero_grad(set_to_none=True)
        cost.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters(), 10.0)
        opt.step()
        return {"loss": float(cost.detach()), "recon": float((neg - v).abs().sum(-1).mean())}

    def validation_loss(self, padded: torch.Tensor, lengths: torch.Tensor) -> float:
        """Negative log-likelihood per frame (exact)."""
        return float(-self._frame_log_prob(padded, lengths).sum() / lengths.sum())

    # --------------------------------------------------------------- generation
    def _generate(self, n: int, num_frames: int, clamp: torch.Tensor, gibbs_steps: int | None = None,
                  **_: Any) -> torch.Tensor:
        steps = self.gibbs_steps if gibbs_steps is None else int(check_positive("gibbs_steps", gibbs_steps, integer=True))
        out = torch.zeros(n, num_frames, self.num_pitches, device=clamp.device)
        ctx = self.start.expand(n, -1)
        state = None
        prev = torch.zeros(n, self.num_pitches, device=clamp.device)
        for t in range(num_frames):
            bias = self.to_bias(ctx)
            bv, bh = self.b + bias[:, :self.num_pitches], self.c + bias[:, self.num_pitches:]
            c = clamp[:, t]
            v = torch.where(c >= 0, c, prev)
            v = self._gibbs(v, bv, bh, steps, c)
            out[:, t] = v
            prev = v
            step, state = self.rnn(v[:, None], state)
            ctx = step[:, 0]
        return out

    # ----------------------------------------------------------------- examples
    # chosen among a few settings by the NLL on 5 validation chorales (not the test ones)
    tour_budget = {"full": ({"num_hidden": 12, "rnn_hidden": 32, "pretrain_epochs": 2, "gibbs_steps": 20},
                            {"steps": 60, "batch_size": 8, "lr": 0.005}, 20),
                   "quick": ({"num_hidden": 8, "rnn_hidden": 16, "pretrain_epochs": 1, "gibbs_steps": 10},
                             {"steps": 20, "batch_size": 8, "lr": 0.005}, 8)}

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        rolls = [(torch.rand(10, 5, generator=g) < 0.4).float() for _ in range(4)]
        return ContractCase(cls(num_pitches=5, low_pitch=60, num_hidden=3, rnn_hidden=8, pretrain_epochs=1,
                                gibbs_steps=5), rolls, {"steps": 5, "batch_size": 2}, log_prob_data=rolls[:3])
