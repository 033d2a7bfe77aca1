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
        num_pitches, low_pitch, resolution: the roll (see ``MusicModel``).
        rnn_hidden: GRU units; nade_hidden: hidden units of the NADE; rnn_layers: GRU layers.
        dropout: dropout on the GRU output during training.

    References:
        Boulanger-Lewandowski, Bengio & Vincent, Modeling temporal dependencies in high-dimensional
        sequences: application to polyphonic music generation and transcription, ICML 2012.

    Example:
        >>> import torch, probgen
        >>> roll = torch.tensor([[1, 0, 1], [0, 1, 0]] * 8, dtype=torch.float32)
        >>> m = probgen.models.RollNADE(num_pitches=3, low_pitch=60, rnn_hidden=8, nade_hidden=8)
        >>> _ = m.fit([roll], steps=150, lr=0.03, progress=False, seed=0)
        >>> m.nll_per_frame([roll]) < 0.5      # nearly deterministic alternation learned
        True
    """

    family = "roll_nade"
    default_inference = "mle"
    log_prob_kind = "exact"

    def __init__(self, num_pitches: int, low_pitch: int = 0, resolution: str = "quarter", rnn_hidden: int = 128,
                 nade_hidden: int = 64, rnn_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self._init_music(num_pitches, low_pitch, resolution)
        check_positive("rnn_hidden", rnn_hidden, integer=True)
        check_positive("nade_hidden", nade_hidden, integer=True)
        check_positive("rnn_layers", rnn_layers, integer=True)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a number in [0, 1), got {dropout!r}")
        p, h = self.num_pitches, int(nade_hidden)
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
        b, c = bias[..., :self.num_pitches], bias[..., self.num_pitches:]
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
    def _generate(self, n: int, num_frames: int, clamp: torch.Tensor, **_: Any) -> torch.Tensor:
        out = torch.zeros(n, num_frames, self.num_pitches, device=clamp.device)
        state = None
        ctx = self.start.expand(n, -1)
        for t in range(num_frames):
            bias = self.to_bias(ctx)
            b, a = bias[:, :self.num_pitches], bias[:, self.num_pitches:].clone()
            frame = torch.zeros(n, self.num_pitches, device=clamp.device)
            for j in range(self.num_pitches - 1, -1, -1):
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

    # lr chosen between 0.01 and 0.02 by the NLL on 5 validation chorales (not the test ones)
    tour_budget = {"full": ({"rnn_hidden": 48, "nade_hidden": 24}, {"steps": 150, "batch_size": 8, "lr": 0.02}, 20),
                   "quick": ({"rnn_hidden": 32, "nade_hidden": 16}, {"steps": 40, "batch_size": 8, "lr": 0.02}, 8)}

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        rolls = [(torch.rand(10, 5, generator=g) < 0.4).float() for _ in range(4)]
        return ContractCase(cls(num_pitches=5, low_pitch=60, rnn_hidden=8, nade_hidden=8), rolls,
                            {"steps": 5, "batch_size": 2}, log_prob_data=rolls[:3])
