"""RNN-NADE: a recurrent network over frames and an autoregressive (NADE) distribution over each frame's notes."""

from __future__ import annotations

__all__ = ["RollNADE"]

from typing import Any

import torch
import torch.nn.functional as F

from ...core.base import ContractCase
from ...core.checks import check_positive
from .base import MusicModel


class RollNADE(MusicModel):
    r"""Exact likelihood over frames and notes: the PixelRNN idea applied to the piano roll.

    A GRU reads the frames; from its state before frame t it sets the biases of a NADE
    (Larochelle & Murray 2011) over frame t's notes, taken from the highest pitch down, so

    .. math:: \log p(v) = \sum_t \sum_j \log p(v_{t,j} \mid v_{t,>j}, v_{<t}),

    every factor a Bernoulli: the likelihood is exact and normalised (this is the RNN-NADE
    of Boulanger-Lewandowski et al. 2012, trained by maximum likelihood, engine ``"mle"``).

    Because notes are generated from the top down, fixing the soprano (the highest note) and
    silencing the pitches above it conditions the lower voices exactly on it and on the past.

    Arguments:
        n_pitches, low_pitch, resolution: the roll (see ``MusicModel``).
        rnn_hidden: GRU units; nade_hidden: hidden units of the NADE; rnn_layers: GRU layers.
        dropout: dropout on the GRU output during training.

    References:
        Boulanger-Lewandowski, Bengio & Vincent, Modeling temporal dependencies in high-dimensional
        sequences: application to polyphonic music generation and transcription, ICML 2012.

    Example:
        >>> import torch, probgen
        >>> roll = torch.tensor([[1, 0, 1], [0, 1, 0]] * 8, dtype=torch.float32)
        >>> m = probgen.models.RollNADE(n_pitches=3, low_pitch=60, rnn_hidden=8, nade_hidden=8)
        >>> _ = m.fit([roll], steps=150, lr=0.03, progress=False, seed=0)
        >>> m.nll_per_frame([roll]) < 0.5      # nearly deterministic alternation learned
        True
    """

    family = "roll_nade"
    default_inference = "mle"
    log_prob_kind = "exact"

    def __init__(self, n_pitches: int, low_pitch: int = 0, resolution: str = "quarter", rnn_hidden: int = 128,
                 nade_hidden: int = 64, rnn_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self._init_music(n_pitches, low_pitch, resolution)
        check_positive("rnn_hidden", rnn_hidden, integer=True)
        check_positive("nade_hidden", nade_hidden, integer=True)
        check_positive("rnn_layers", rnn_layers, integer=True)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a number in [0, 1), got {dropout!r}")
        p, h = self.n_pitches, int(nade_hidden)
        self.rnn = torch.nn.GRU(p, rnn_hidden, num_layers=rnn_layers, batch_first=True)
        self.start = torch.nn.Parameter(torch.zeros(rnn_hidden))  # the state before the first frame
        self.to_bias = torch.nn.Linear(rnn_hidden, p + h)  # visible biases b_t and NADE hidden biases c_t
        self.W = torch.nn.Parameter(0.05 * torch.randn(p, h, generator=torch.Generator().manual_seed(0)))
        self.V = torch.nn.Parameter(0.05 * torch.randn(p, h, generator=torch.Generator().manual_seed(1)))
        self.dropout = float(dropout)
        self.nade_hidden = h

    # ---------------------------------------------------------------- scoring
    def _context(self, padded: torch.Tensor) -> torch.Tensor:
        """The GRU state before each frame, (n, T, rnn_hidden)."""
        n, t, _ = padded.shape
        out, _ = self.rnn(padded[:, :-1]) if t > 1 else (padded.new_zeros(n, 0, self.rnn.hidden_size), None)
        first = self.start.expand(n, 1, -1)
        ctx = torch.cat([first, out], 1)
        if self.training and self.dropout:
            ctx = F.dropout(ctx, self.dropout)
        return ctx

    def _nade_logits(self, v: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """Logit of each note given the higher notes of its frame and the context (teacher-forced)."""
        bias = self.to_bias(ctx)
        b, c = bias[..., :self.n_pitches], bias[..., self.n_pitches:]
        # top-down order: note j sees the notes above it, j+1 .. P-1. a_j = c + sum_{k > j} v_k W_k
        contrib = v.unsqueeze(-1) * self.W  # (..., P, H)
        above = contrib.flip(-2).cumsum(-2).flip(-2) - contrib  # exclusive sum over higher pitches
        hidden = torch.sigmoid(c.unsqueeze(-2) + above)
        return b + (hidden * self.V).sum(-1)

    def _frame_log_prob(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits = self._nade_logits(padded, self._context(padded))
        lp = -F.binary_cross_entropy_with_logits(logits, padded, reduction="none").sum(-1)
        mask = torch.arange(padded.shape[1], device=padded.device)[None] < lengths[:, None]
        return lp * mask

    def training_loss(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per frame of a minibatch of padded pieces."""
        padded = padded[:, :int(lengths.max())]  # the data are padded to the longest piece of all
        return -self._frame_log_prob(padded, lengths).sum() / lengths.sum()

    # ------------------------------------------------------------- generation
    def _generate(self, n: int, n_frames: int, clamp: torch.Tensor, **_: Any) -> torch.Tensor:
        out = torch.zeros(n, n_frames, self.n_pitches, device=clamp.device)
        state = None
        ctx = self.start.expand(n, -1)
        for t in range(n_frames):
            bias = self.to_bias(ctx)
            b, a = bias[:, :self.n_pitches], bias[:, self.n_pitches:].clone()
            frame = torch.zeros(n, self.n_pitches, device=clamp.device)
            for j in range(self.n_pitches - 1, -1, -1):
                p = torch.sigmoid(b[:, j] + (torch.sigmoid(a) * self.V[j]).sum(-1))
                x = torch.bernoulli(p)
                fixed = clamp[:, t, j]
                x = torch.where(fixed >= 0, fixed, x)
                frame[:, j] = x
                a = a + x[:, None] * self.W[j]
            out[:, t] = frame
            step, state = self.rnn(frame[:, None], state)
            ctx = step[:, 0]
        return out

    # --------------------------------------------------------------- examples
    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Fit on 20 chorales for a few seconds; harmonise a held-out soprano; draw both rolls."""
        import os

        import matplotlib.pyplot as plt

        from ... import plot
        from ...datasets import load
        from ...gallery import TourSection

        train, test = (load("chorales", split=s, max_pieces=20) for s in ("train", "test"))
        m = cls(train.n_pitches, train.low, rnn_hidden=48, nade_hidden=24)
        m.fit(train, steps=40 if quick else 150, batch_size=8, lr=0.01, progress=False, seed=0)
        bach = test.rolls[0][:32]
        soprano = [int(torch.nonzero(f).max()) + train.low if f.any() else None for f in bach]
        harmony = m.harmonize(soprano, seed=0)
        given = torch.zeros_like(harmony)
        for t, p in enumerate(soprano):
            if p is not None:
                given[t, p - train.low] = 1
        fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
        plot.piano_roll(bach, train.low, ax=axes[0], highlight=given, title=f"Bach, {test.names[0]} (soprano in red)")
        plot.piano_roll(harmony, train.low, ax=axes[1], highlight=given, title="RNN-NADE's voices under the same soprano")
        fig.tight_layout()
        path = os.path.join(out_dir, "roll_nade.png")
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        nll = m.nll_per_frame(test)
        frames, held = torch.cat(train.rolls).double(), torch.cat(test.rolls).double()
        q = (frames.sum(0) + 0.5) / (len(frames) + 1)
        independent = float(-(held * q.log() + (1 - held) * torch.log1p(-q)).sum(-1).mean())
        works = nll < independent
        return TourSection(cls.family, f"RNN-NADE on {len(train)} chorales, harmonising a held-out soprano",
                           verdict="works" if works else "limited",
                           note="" if works else "a few seconds of training do not beat independent notes here",
                           figures={"test NLL per frame (nats)": f"{nll:.2f}",
                                    "independent notes": f"{independent:.2f}"},
                           pictures=[(path, "top: Bach; bottom: RNN-NADE's lower voices under Bach's soprano (red)")])

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        rolls = [(torch.rand(10, 5, generator=g) < 0.4).float() for _ in range(4)]
        return ContractCase(cls(n_pitches=5, low_pitch=60, rnn_hidden=8, nade_hidden=8), rolls,
                            {"steps": 5, "batch_size": 2}, log_prob_data=rolls[:3])
