"""A first-order Markov chain over whole chords (frames), with smoothing for chords never seen."""

from __future__ import annotations

__all__ = ["ChordNGram"]

from typing import Any

import numpy as np
import torch

from ...core.base import ContractCase
from ...core.checks import check_positive
from ...core.engines import implements
from ...core.result import FitResult
from ..markov import MarkovChain
from .base import MusicModel


class ChordNGram(MusicModel):
    r"""A Markov chain whose states are whole frames (chords), as an n-gram over chords.

    The chain is ``probgen.models.MarkovChain`` (order 1) over the chords seen at least
    ``min_count`` times in training plus one "other chord" state, fitted with add-``smoothing``
    counts; its rows are interpolated with the chord frequencies (weight ``backoff``). A chord
    outside the vocabulary gets the "other" state's probability times its probability under
    independent per-pitch Bernoulli marginals, renormalised over all chords outside the
    vocabulary, so every one of the ``2**num_pitches`` frames has probability and they sum to 1:

    .. math:: p(v_t \mid v_{t-1}) = \begin{cases} P(v_t \mid v_{t-1}) & v_t \in V \\
              P(\text{other} \mid v_{t-1})\, q(v_t) / (1 - \sum_{u \in V} q(u)) & \text{otherwise} \end{cases}

    Harmonisation restricts each draw to the chords that agree with the fixed notes (exact
    given the past frames; later soprano notes are not looked ahead at).

    Arguments:
        num_pitches, low_pitch, resolution: the roll (see ``MusicModel``).
        smoothing: add-k pseudo-count of the transition counts.
        backoff: weight of the chord frequencies in each row, in [0, 1).
        min_count: chords seen fewer times in training are "other".

    Example:
        >>> import torch, probgen
        >>> roll = torch.tensor([[1, 0, 1], [0, 1, 0]] * 6, dtype=torch.float32)
        >>> m = probgen.models.ChordNGram(num_pitches=3, low_pitch=60)
        >>> _ = m.fit([roll], progress=False)
        >>> m.sample(4, seed=0, primer=[[60, 62]]).tolist()[:2]
        [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """

    family = "chord_ngram"
    default_inference = "exact"
    log_prob_kind = "exact"

    def __init__(self, num_pitches: int, low_pitch: int = 0, resolution: str = "quarter", smoothing: float = 0.01,
                 backoff: float = 0.05, min_count: int = 1):
        super().__init__()
        self._init_music(num_pitches, low_pitch, resolution)
        check_positive("smoothing", smoothing, strict=False)
        if not 0 <= backoff < 1:
            raise ValueError(f"backoff: expected a number in [0, 1), got {backoff!r}")
        check_positive("min_count", min_count, integer=True)
        self.smoothing, self.backoff, self.min_count = float(smoothing), float(backoff), int(min_count)
        self.chain = MarkovChain(order=1, smoothing=self.smoothing)
        self.register_buffer("marginal", torch.full((self.num_pitches,), 0.5, dtype=torch.float64))
        self.register_buffer("table", torch.zeros(0, 0, dtype=torch.float64))
        self.register_buffer("start", torch.zeros(0, dtype=torch.float64))  # distribution of the first frame
        self.vocab: list[tuple[int, ...]] = []
        self._lookup: dict[tuple[int, ...], int] = {}
        self.fitted = False

    # ----------------------------------------------------------------- state
    def get_state_json(self) -> dict:
        return {"vocab": [list(c) for c in self.vocab], "fitted": self.fitted}

    def set_state_json(self, state: dict) -> None:
        self._set_vocab([tuple(c) for c in state.get("vocab", [])])
        self.fitted = bool(state.get("fitted", False))
        if self.vocab:
            self.chain._set_states(list(range(len(self.vocab) + 1)))
            self.chain.fitted = self.fitted
            v = len(self.vocab) + 1
            self.table = torch.zeros(v, v, dtype=torch.float64)
            self.start = torch.zeros(v, dtype=torch.float64)

    def _set_vocab(self, vocab: list[tuple[int, ...]]) -> None:
        self.vocab = vocab
        self._lookup = {c: i for i, c in enumerate(vocab)}

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("ChordNGram: not fitted yet; call fit(rolls) first")

    @property
    def other(self) -> int:
        """The state index of "a chord outside the vocabulary"."""
        return len(self.vocab)

    # --------------------------------------------------------------- fitting
    def _ids(self, roll: torch.Tensor) -> list[int]:
        return [self._lookup.get(tuple(np.nonzero(f)[0].tolist()), self.other) for f in roll.numpy() > 0.5]

    @implements("exact")
    def _fit_exact(self, data: Any, **options: Any) -> FitResult:
        """Count chords and transitions (closed form)."""
        from ...infer.options import parse_options

        opts = parse_options("exact", options)
        rolls = self.rolls(data, "data")
        if not rolls:
            raise ValueError("data: expected at least one piece, got none")
        counts: dict[tuple[int, ...], int] = {}
        for r in rolls:
            for f in r.numpy() > 0.5:
                key = tuple(np.nonzero(f)[0].tolist())
                counts[key] = counts.get(key, 0) + 1
        self._set_vocab(sorted(c for c, k in counts.items() if k >= self.min_count))
        frames = torch.cat(rolls).double()
        # per-pitch marginals for chords outside the vocabulary (add-1/2 so none is 0 or 1)
        self.marginal = ((frames.sum(0) + 0.5) / (len(frames) + 1.0)).to(self.marginal)
        sequences = [self._ids(r) for r in rolls]
        self.chain = MarkovChain(states=list(range(len(self.vocab) + 1)), order=1, smoothing=self.smoothing)
        # every state must occur for a chain without smoothing; "other" may never occur in training
        self.chain.fit(sequences if self.smoothing > 0 else sequences + [[self.other]], progress=False)
        self._build_table()
        self.fitted = True
        return FitResult(model=self, engine="exact", device=str(opts.device),
                         info={"vocabulary": len(self.vocab), "frames": len(frames)})

    def _build_table(self) -> None:
        chain = self.chain.transition_matrix()
        freq = self.chain.initial.clone()
        table = (1 - self.backoff) * chain + self.backoff * freq[None, :]
        if self.num_pitches <= 62 and len(self.vocab) == 2 ** self.num_pitches:
            # every frame is in the vocabulary: no chord is left for "other", so it gets no mass
            table[:, self.other] = 0
            freq[self.other] = 0
        self.table = table / table.sum(-1, keepdim=True)
        self.start = freq / freq.sum()

    def _log_q(self, frames: torch.Tensor) -> torch.Tensor:
        """log of the independent-Bernoulli probability of each frame (float64)."""
        q = self.marginal
        f = frames.double()
        return (f * q.log() + (1 - f) * torch.log1p(-q)).sum(-1)

    def _log_other_mass(self) -> float:
        """log(1 - sum over vocabulary chords of q(chord))."""
        if not self.vocab:
            return 0.0
        vocab_rolls = torch.zeros(len(self.vocab), self.num_pitches, dtype=torch.float64)
        for i, c in enumerate(self.vocab):
            vocab_rolls[i, list(c)] = 1
        inside = torch.logsumexp(self._log_q(vocab_rolls), 0)
        return float(torch.log1p(-inside.exp().clamp_max(1 - 1e-12)))

    def frame_log_prob(self, x: Any) -> list[torch.Tensor]:
        self._require_fitted()
        out = []
        log_rest = self._log_other_mass()
        log_table = self.table.log()
        log_start = self.start.log()
        for r in self.rolls(x):
            ids = torch.tensor(self._ids(r))
            lp = torch.empty(len(ids), dtype=torch.float64)
            lp[0] = log_start[ids[0]]
            if len(ids) > 1:
                lp[1:] = log_table[ids[:-1], ids[1:]]
            unseen = ids == self.other
            if unseen.any():
                lp[unseen] += self._log_q(r[unseen]) - log_rest
            out.append(lp)
        return out

    # ------------------------------------------------------------ generation
    def _generate(self, n: int, num_frames: int, clamp: torch.Tensor, **_: Any) -> torch.Tensor:
        vocab_rolls = torch.zeros(len(self.vocab), self.num_pitches)
        for i, c in enumerate(self.vocab):
            vocab_rolls[i, list(c)] = 1
        out = torch.zeros(n, num_frames, self.num_pitches)
        prev = None
        for t in range(num_frames):
            c = clamp[:, t]
            probs = (self.start[None].expand(n, -1) if prev is None else self.table[prev]).clone()
            fixed = c >= 0
            # chords that disagree with a fixed note are impossible
            agree = ((vocab_rolls[None] == c[:, None]) | ~fixed[:, None]).all(-1)  # (n, V)
            probs[:, :-1] = probs[:, :-1] * agree
            full = fixed.all(-1)
            ids = torch.empty(n, dtype=torch.long)
            frames = torch.empty(n, self.num_pitches)
            for i in range(n):
                if full[i]:  # a whole frame given (primer)
                    frames[i] = c[i]
                    ids[i] = self._lookup.get(tuple(torch.nonzero(c[i]).flatten().tolist()), self.other)
                    continue
                p = probs[i] / probs[i].sum()
                k = int(torch.multinomial(p.float(), 1))
                ids[i] = k
                frames[i] = vocab_rolls[k] if k < self.other else self._other_chord(c[i], vocab_rolls)
            out[:, t] = frames
            prev = ids
        return out

    def _other_chord(self, clamp: torch.Tensor, vocab_rolls: torch.Tensor) -> torch.Tensor:
        """A chord outside the vocabulary from q (free notes only), by rejection."""
        q = self.marginal.float()
        free = clamp < 0
        seen = {tuple(r.tolist()) for r in vocab_rolls}
        for _ in range(1000):
            f = torch.where(free, torch.bernoulli(q), clamp)
            if tuple(f.tolist()) not in seen:
                return f
        return f

    # -------------------------------------------------------------- examples
    tour_budget = {"full": ({}, {}, 20), "quick": ({}, {}, 8)}  # the same pieces as the neural families, so its figure is their baseline

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        rolls = [(torch.rand(12, 5, generator=g) < 0.4).float() for _ in range(4)]
        return ContractCase(cls(num_pitches=5, low_pitch=60), rolls, log_prob_data=rolls[:3])
