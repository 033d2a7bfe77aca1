"""What every piano-roll model shares: input checks, padding, generation with clamped notes, MIDI output.

A roll is a ``(frames, num_pitches)`` tensor of 0/1; column ``j`` is MIDI pitch ``low_pitch + j``.
Data for ``fit`` / ``log_prob`` is one roll or a list of rolls (pieces of any length). Every
model scores a piece by its log-probability (``log_prob``, one value per piece) and a set of
pieces by the negative log-likelihood per frame (``nll_per_frame``), the measure of the JSB
Chorales literature.

Generation goes through one routine per model, ``_generate(n, num_frames, clamp)``: ``clamp``
is ``(n, num_frames, num_pitches)`` with -1 where a note is free and 0/1 where it is fixed.
A primer fixes whole frames; harmonisation fixes, in every frame, the soprano note and
silences everything above it.
"""

from __future__ import annotations

__all__ = ["MusicModel", "write_midi", "as_rolls", "pad_rolls"]

import os
from typing import Any, Sequence

import numpy as np
import torch

from ...core.base import Model
from ...core.checks import check_positive
from ...core.random import seeded


def as_rolls(x: Any, num_pitches: int, name: str = "rolls") -> list[torch.Tensor]:
    """One roll or a list of rolls (tensors / arrays ``(frames, num_pitches)`` of 0/1, or a ``Chorales``)
    as a list of float tensors; ``ValueError`` naming ``name`` otherwise."""
    if hasattr(x, "rolls") and hasattr(x, "low"):
        x = x.rolls
    if isinstance(x, (list, tuple)) and len(x) == 0:
        return []  # no pieces: scoring answers zero rows (fit refuses them in prepare_data)
    if isinstance(x, (torch.Tensor, np.ndarray)) and np.ndim(x) == 2:
        items = [x]
    elif isinstance(x, (torch.Tensor, np.ndarray)) and np.ndim(x) == 3:
        items = list(x)
    elif isinstance(x, (list, tuple)) and len(x) and all(isinstance(r, (torch.Tensor, np.ndarray)) for r in x):
        items = list(x)
    else:
        raise ValueError(f"{name}: expected a piano roll (frames, {num_pitches}) or a list of them, got "
                         f"{type(x).__name__}")
    out = []
    for i, r in enumerate(items):
        t = torch.as_tensor(np.asarray(r) if isinstance(r, np.ndarray) else r).float().cpu()
        if t.dim() != 2 or t.shape[1] != num_pitches:
            raise ValueError(f"{name}[{i}]: expected shape (frames, {num_pitches}), got {tuple(t.shape)}")
        if len(t) == 0:
            raise ValueError(f"{name}[{i}]: a piece needs at least one frame")
        if not torch.isfinite(t).all() or ((t != 0) & (t != 1)).any():
            raise ValueError(f"{name}[{i}]: a piano roll holds only 0 and 1")
        out.append(t)
    return out


def pad_rolls(rolls: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, max_frames, P)`` zero-padded rolls and their ``(n,)`` lengths."""
    lengths = torch.tensor([len(r) for r in rolls])
    out = torch.zeros(len(rolls), int(lengths.max()), rolls[0].shape[1])
    for i, r in enumerate(rolls):
        out[i, :len(r)] = r
    return out, lengths


def write_midi(roll: Any, path: str | os.PathLike, low_pitch: int, resolution: str = "quarter",
               tempo: float = 80.0, model: Any = None, seed: int | None = None) -> str:
    """Write a piano roll as a standard MIDI file through music21; returns the path.

    A note held over consecutive frames becomes one note (the roll cannot tell a held note
    from a repeated one, as in the JSB Chorales data). All file writing of this family goes
    through this one function, which also writes the file's provenance sidecar (probgen, the
    ``model``'s family and hash, the ``seed``; read it back with ``probgen.provenance(path)``).

    Example:
        >>> import tempfile, os, torch
        >>> roll = torch.zeros(4, 12); roll[:, [0, 4, 7]] = 1
        >>> path = write_midi(roll, os.path.join(tempfile.mkdtemp(), "c.mid"), low_pitch=60)
        >>> open(path, "rb").read(4)
        b'MThd'
    """
    import music21

    from ...datasets.chorales import RESOLUTIONS

    r = torch.as_tensor(np.asarray(roll)).float()
    if r.dim() != 2:
        raise ValueError(f"roll: expected a (frames, pitches) piano roll, got shape {tuple(r.shape)}")
    if low_pitch < 0 or low_pitch + r.shape[1] > 128:
        raise ValueError(f"low_pitch: the roll's pitches {low_pitch}..{low_pitch + r.shape[1] - 1} leave MIDI's 0..127")
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise ValueError(f"path: the folder {folder!r} does not exist")
    step = RESOLUTIONS[resolution]
    part = music21.stream.Part()
    part.insert(0, music21.tempo.MetronomeMark(number=tempo))
    on = r.numpy() > 0.5
    frames, pitches = on.shape
    for j in range(pitches):
        t = 0
        while t < frames:
            if on[t, j]:
                start = t
                while t < frames and on[t, j]:
                    t += 1
                note = music21.note.Note(low_pitch + j)
                note.quarterLength = (t - start) * step
                part.insert(start * step, note)
            else:
                t += 1
    score = music21.stream.Score([part])
    score.write("midi", fp=path)
    from ...responsible.provenance import record

    record(path, model, seed)
    return path


class MusicModel(Model):
    """Base of the piano-roll families (``ChordNGram``, ``RNNRBM``, ``RollNADE``, ``DeepMarkovModel``).

    Arguments (every subclass):
        num_pitches: columns of the roll.
        low_pitch: MIDI pitch of column 0.
        resolution: ``"quarter"`` or ``"eighth"`` (for ``to_midi``).
    """

    max_sample_frames = 100_000
    #: keyword options ``sample`` / ``harmonize`` pass on to the family's generator
    generate_options: tuple[str, ...] = ()

    def _check_options(self, options: dict) -> None:
        unknown = sorted(set(options) - set(self.generate_options))
        if unknown:
            valid = ", ".join(("seed", "primer", "num_pieces") + self.generate_options)
            raise ValueError(f"sample: unknown option {unknown[0]!r} for {type(self).__name__}; valid options: {valid}")

    def _init_music(self, num_pitches: int, low_pitch: int, resolution: str) -> None:
        check_positive("num_pitches", num_pitches, integer=True)
        if isinstance(low_pitch, bool) or not isinstance(low_pitch, (int, np.integer)) or not 0 <= low_pitch <= 127:
            raise ValueError(f"low_pitch: expected a MIDI pitch 0..127, got {low_pitch!r}")
        if low_pitch + num_pitches > 128:
            raise ValueError(f"num_pitches: {num_pitches} pitches from {low_pitch} go past MIDI pitch 127")
        if resolution not in ("quarter", "eighth"):
            raise ValueError(f"resolution: expected 'quarter' or 'eighth', got {resolution!r}")
        self.num_pitches, self.low_pitch, self.resolution = int(num_pitches), int(low_pitch), resolution

    # ------------------------------------------------------------------ data
    def rolls(self, x: Any, name: str = "rolls") -> list[torch.Tensor]:
        return as_rolls(x, self.num_pitches, name)

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
        """Rolls -> ``(padded (n, T, P), lengths (n,))`` for the minibatch loop."""
        rolls = self.rolls(data, name)
        if not rolls:
            raise ValueError(f"{name}: expected at least one piece, got none")
        return pad_rolls(rolls)

    # --------------------------------------------------------------- scoring
    def frame_log_prob(self, x: Any) -> list[torch.Tensor]:
        """Per piece, the log-probability of each frame given the frames before it."""
        rolls = self.rolls(x)
        if not rolls:
            return []
        padded, lengths = pad_rolls(rolls)
        with torch.no_grad():
            lp = self._frame_log_prob(padded.to(self.device), lengths.to(self.device)).cpu()
        return [lp[i, :int(n)] for i, n in enumerate(lengths)]

    def log_prob(self, x: Any) -> torch.Tensor:
        """Log-probability of each piece (sum over its frames), nats."""
        frames = self.frame_log_prob(x)
        return torch.stack([f.sum() for f in frames]) if frames else torch.zeros(0)

    def nll_per_frame(self, x: Any) -> float:
        """Negative log-likelihood per frame over all pieces (the JSB Chorales measure), nats."""
        lps = self.frame_log_prob(x)
        if not lps:
            raise ValueError("rolls: expected at least one piece to score, got none")
        return float(-sum(float(f.double().sum()) for f in lps) / sum(len(f) for f in lps))

    # ------------------------------------------------------------ generation
    def _check_frames(self, num_frames: Any) -> int:
        if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames <= 0:
            # "n:" as every family's sample(n) says it; here n counts frames (the argument num_frames)
            raise ValueError(f"n: expected a positive integer, got {num_frames!r} (num_frames: the number of frames)")
        if num_frames > self.max_sample_frames:
            raise ValueError(f"num_frames: at most {self.max_sample_frames}, got {num_frames}")
        return int(num_frames)

    def _primer_roll(self, primer: Any) -> torch.Tensor:
        """A primer as a roll: a (frames, P) 0/1 array, or a list of frames, each a list of MIDI pitches."""
        if isinstance(primer, (torch.Tensor, np.ndarray)):
            return as_rolls(primer, self.num_pitches, "primer")[0]
        if not isinstance(primer, (list, tuple)) or not primer:
            raise ValueError("primer: expected a piano roll or a non-empty list of frames (lists of MIDI pitches)")
        roll = torch.zeros(len(primer), self.num_pitches)
        high = self.low_pitch + self.num_pitches - 1
        for t, frame in enumerate(primer):
            notes = [frame] if isinstance(frame, (int, np.integer)) else frame
            if not isinstance(notes, (list, tuple, set)):
                raise ValueError(f"primer[{t}]: expected a list of MIDI pitches, got {frame!r}")
            for p in notes:
                if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
                    raise ValueError(f"primer[{t}]: MIDI pitches are integers, got {p!r}")
                if not self.low_pitch <= p <= high:
                    raise ValueError(f"primer[{t}]: pitch {p} is outside the model's range {self.low_pitch}..{high}")
                roll[t, int(p) - self.low_pitch] = 1
        return roll

    def sample(self, num_frames: int, seed: int | None = None, primer: Any = None, num_pieces: int | None = None,
               **options: Any) -> torch.Tensor:
        """A new piece of ``num_frames`` frames, ``(num_frames, num_pitches)`` (``num_pieces``: a batch of them).

        With ``primer`` (a roll, or a list of frames of MIDI pitches) the piece starts with the
        primer verbatim and continues it; ``num_frames`` counts the primer's frames too.
        """
        num_frames = self._check_frames(num_frames)
        self._check_options(options)
        n = 1 if num_pieces is None else int(check_positive("num_pieces", num_pieces, integer=True))
        clamp = torch.full((n, num_frames, self.num_pitches), -1.0)
        if primer is not None:
            p = self._primer_roll(primer)
            if len(p) > num_frames:
                raise ValueError(f"primer: {len(p)} frames, more than num_frames={num_frames}")
            clamp[:, :len(p)] = p
        self._require_fitted()
        with seeded(seed), torch.no_grad():
            out = self._generate(n, num_frames, clamp.to(self.device), **options).cpu()
        out = torch.where(clamp.cpu() >= 0, clamp.cpu(), out)
        return out[0] if num_pieces is None else out

    def harmonize(self, soprano: Sequence[Any], seed: int | None = None, **options: Any) -> torch.Tensor:
        """Sample the voices below a given soprano line; returns the roll, soprano unchanged.

        ``soprano`` holds one MIDI pitch per frame (``None`` for a frame left free). In each
        frame the soprano note is fixed on and every pitch above it off; the model samples the
        rest conditioned on them (how exactly depends on the family: see its docstring).
        """
        self._check_options(options)
        if isinstance(soprano, (torch.Tensor, np.ndarray)):
            soprano = np.asarray(soprano).tolist()
        if not isinstance(soprano, (list, tuple)) or not soprano:
            raise ValueError("soprano: expected a non-empty list of MIDI pitches, one per frame")
        num_frames = self._check_frames(len(soprano))
        clamp = torch.full((1, num_frames, self.num_pitches), -1.0)
        high = self.low_pitch + self.num_pitches - 1
        for t, p in enumerate(soprano):
            if p is None:
                continue
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not self.low_pitch <= p <= high:
                raise ValueError(f"soprano[{t}]: expected a MIDI pitch in {self.low_pitch}..{high} (or None), got {p!r}")
            j = int(p) - self.low_pitch
            clamp[0, t, j] = 1
            clamp[0, t, j + 1:] = 0
        self._require_fitted()
        with seeded(seed), torch.no_grad():
            out = self._generate(1, num_frames, clamp.to(self.device), **options).cpu()
        return torch.where(clamp >= 0, clamp, out)[0]

    def _generate(self, n: int, num_frames: int, clamp: torch.Tensor, **options: Any) -> torch.Tensor:
        raise NotImplementedError

    def _require_fitted(self) -> None:
        pass

    # --------------------------------------------------------------- examples
    #: the tour's budget per family: ``(constructor keywords, fit keywords, training chorales)``
    tour_budget: dict = {"full": ({}, {}, 20), "quick": ({}, {}, 8)}

    @classmethod
    def _tour_budget(cls, quick: bool) -> tuple[dict, dict, int]:
        model_kw, fit_kw, n_train = cls.tour_budget["quick" if quick else "full"]
        return dict(model_kw), dict(fit_kw), int(n_train)

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Fit on a few chorales, draw Bach beside the model's continuation, measure the test NLL
        per frame beside a baseline (the shared tour of ``probgen.models.music.tour``)."""
        from .tour import music_tour

        return music_tour(cls, out_dir, quick)

    # ------------------------------------------------------------------ output
    def to_midi(self, roll: Any, path: str | os.PathLike, tempo: float = 80.0, seed: int | None = None) -> str:
        """Write ``roll`` (e.g. from ``sample(..., seed=seed)``) as a MIDI file with its provenance; see ``write_midi``."""
        r = as_rolls(roll, self.num_pitches, "roll")[0]
        return write_midi(r, path, self.low_pitch, self.resolution, tempo, model=self, seed=seed)
