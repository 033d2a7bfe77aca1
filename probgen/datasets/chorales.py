"""Bach chorales as piano rolls, built from the corpus music21 ships (nothing is downloaded).

Each four-part chorale becomes a binary piano roll: one frame per quarter note (or per
eighth note with ``resolution="eighth"``), one column per MIDI pitch of the range the
corpus uses; a frame holds the notes sounding at its onset, as in the JSB Chorales
benchmark of Boulanger-Lewandowski et al. (2012), whose frames are sets of MIDI pitches
sampled every quarter note. Parsing the ~370 chorales takes about a minute, so the built
rolls are cached (``~/.cache/probgen``, or ``$PROBGEN_CACHE_DIR``) after the first build,
written atomically; the build is deterministic (sorted corpus order, no randomness).

The split is by piece: a fixed seeded permutation of the pieces, 80 / 10 / 10, after dropping
pieces that repeat an earlier one up to transposition (music21 lists some chorales twice).
"""

from __future__ import annotations

__all__ = ["Chorales", "load_chorales", "build_rolls", "roll_from_file", "transpose_rolls", "cache_dir",
           "RESOLUTIONS"]

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..core.checks import check_choice, check_positive

RESOLUTIONS = {"quarter": 1.0, "eighth": 0.5}
_FRACTIONS = (0.8, 0.1, 0.1)
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where built data sets are cached: ``$PROBGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/probgen``
    or ``~/.cache/probgen``."""
    explicit = os.environ.get("PROBGEN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "probgen"


@dataclass
class Chorales:
    """Piano rolls of chorales: ``rolls[i]`` is a ``(frames, pitches)`` float tensor of 0/1.

    Column ``j`` is MIDI pitch ``low + j``. ``keys[i]`` is ``(tonic pitch class, "major" | "minor")``
    from music21's key analysis of the score. Iterating gives the rolls.

    Example:
        >>> c = Chorales([torch.zeros(3, 4)], ["x"], low=60, keys=[(0, "major")])
        >>> len(c), c.num_pitches, c.frames
        (1, 4, 3)
    """

    rolls: list
    names: list
    low: int
    keys: list
    split: str | None = None
    resolution: str = "quarter"
    meta: dict = field(default_factory=dict)
    width: int | None = None  # pitches per frame (kept for an empty split)

    @property
    def num_pitches(self) -> int:
        if self.width is not None:
            return int(self.width)
        return int(self.rolls[0].shape[1]) if self.rolls else 0

    @property
    def pitches(self) -> list[int]:
        """The MIDI pitch of each column."""
        return list(range(self.low, self.low + self.num_pitches))

    @property
    def frames(self) -> int:
        """Total number of frames over all pieces."""
        return int(sum(len(r) for r in self.rolls))

    def __len__(self) -> int:
        return len(self.rolls)

    def __iter__(self):
        return iter(self.rolls)

    def __getitem__(self, i):
        return self.rolls[i]

    def __repr__(self) -> str:
        return (f"Chorales(split={self.split!r}, pieces={len(self)}, frames={self.frames}, "
                f"pitches={self.low}..{self.low + self.num_pitches - 1}, resolution={self.resolution!r})")


# ------------------------------------------------------------------ parsing
def _score_roll(score, step: float) -> tuple[np.ndarray, int, int] | None:
    """(frames, 128) uint8 roll of a score, the number of parts, and the tonic pitch class / mode code."""
    parts = list(score.parts)
    end = float(score.highestTime)
    num_frames = int(np.ceil(end / step - 1e-9))
    if num_frames <= 0:
        return None
    roll = np.zeros((num_frames, 128), dtype=np.uint8)
    for part in parts:
        for element in part.flatten().notes:
            duration = float(element.quarterLength)
            if duration <= 0:  # grace notes sound at no frame onset
                continue
            start = float(element.offset)  # offsets in a flattened part count from the piece start
            first = int(np.ceil(start / step - 1e-9))
            last = int(np.ceil((start + duration) / step - 1e-9))  # frames with onset in [start, end)
            for p in element.pitches:
                roll[first:last, int(p.midi)] = 1
    return roll, len(parts)


def _corpus_names() -> list[str]:
    from music21 import corpus

    return sorted(str(name) for name in corpus.chorales.Iterator(returnType="filename"))


def _parse_piece(name: str, step: float):
    from music21 import corpus

    score = corpus.parse(name)
    if len(score.parts) != 4:
        return None
    out = _score_roll(score, step)
    if out is None:
        return None
    roll, _ = out
    key = score.analyze("key")
    return roll, (int(key.tonic.pitchClass), str(key.mode))


def build_rolls(resolution: str = "quarter", names: Sequence[str] | None = None, cache: bool = True,
                progress: bool = True) -> dict:
    """Parse chorales into full-range (128-pitch) rolls: ``{"names", "rolls", "keys"}``.

    ``names`` picks corpus entries (``"bach/bwv269"``, ...); ``None`` takes every chorale of
    ``music21.corpus.chorales.Iterator`` with four parts. With ``cache`` the result is read from
    / written to ``cache_dir()`` (one ``.npz`` per resolution and set of names).

    Example:
        >>> out = build_rolls(names=["bach/bwv269"], cache=False, progress=False)
        >>> out["rolls"][0].shape[1], out["keys"][0]
        (128, (7, 'major'))
    """
    check_choice("resolution", resolution, tuple(RESOLUTIONS))
    step = RESOLUTIONS[resolution]
    if names is not None:
        names = [str(n) for n in names]
        if not names:
            raise ValueError("names: expected at least one chorale name")
    tag = "all" if names is None else hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]
    path = cache_dir() / f"chorales-v{_CACHE_VERSION}-{resolution}-{tag}.npz"
    if cache and path.exists():
        with np.load(path, allow_pickle=False) as f:
            lengths = f["lengths"]
            flat = f["rolls"]
            info = json.loads(str(f["info"]))
        rolls = np.split(flat, np.cumsum(lengths)[:-1])
        return {"names": info["names"], "rolls": rolls, "keys": [tuple(k) for k in info["keys"]]}
    from ..core.progress import progress_bar

    requested = _corpus_names() if names is None else names
    known = set(_corpus_names()) if names is not None else None
    out_names, out_rolls, out_keys = [], [], []
    for name in progress_bar(requested, enabled=progress, desc="parsing chorales"):
        if known is not None and name not in known:
            raise ValueError(f"names: {name!r} is not a chorale of music21's corpus (e.g. 'bach/bwv269')")
        parsed = _parse_piece(name, step)
        if parsed is None:
            continue
        out_names.append(name)
        out_rolls.append(parsed[0])
        out_keys.append(parsed[1])
    if not out_rolls:
        raise ValueError("names: none of the given chorales has four parts")
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        info = json.dumps({"names": out_names, "keys": out_keys, "resolution": resolution})
        # atomic: write a temporary file in the same folder, then rename over the target
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        os.close(fd)
        try:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, rolls=np.concatenate(out_rolls), info=np.array(info),
                                    lengths=np.array([len(r) for r in out_rolls]))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return {"names": out_names, "rolls": out_rolls, "keys": out_keys}


# ---------------------------------------------------------------- transposing
def _shift_to_common_key(tonic: int, mode: str) -> int:
    """Semitones that move the tonic to C (major) or A (minor), the smaller way round (-6..5)."""
    target = 0 if mode == "major" else 9
    shift = (target - tonic) % 12
    return shift - 12 if shift > 5 else shift


def transpose_rolls(rolls: Sequence[torch.Tensor], shifts: Sequence[int]) -> list[torch.Tensor]:
    """Every roll shifted by every shift in ``shifts`` (semitones), keeping the pitch range.

    Copies whose notes would leave the range are dropped (augmentation by transposition).

    Example:
        >>> r = torch.zeros(2, 5); r[:, 1] = 1
        >>> [int(x[0].argmax()) for x in transpose_rolls([r], [-1, 0, 2, 4])]
        [0, 1, 3]
    """
    out = []
    for roll in rolls:
        active = torch.nonzero(roll.sum(0)).flatten()
        lo, hi = (int(active.min()), int(active.max())) if len(active) else (0, 0)
        for s in shifts:
            s = int(s)
            if lo + s < 0 or hi + s >= roll.shape[1]:
                continue
            out.append(torch.roll(roll, s, dims=1))
    return out


# -------------------------------------------------------------------- loading
def _split_order(n: int, seed: int) -> np.ndarray:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()


def load_chorales(split: str | None = None, seed: int = 0, resolution: str = "quarter", transpose: str | None = None,
                  names: Sequence[str] | None = None, max_pieces: int | None = None, cache: bool = True,
                  progress: bool = False, **_: Any) -> Chorales:
    """The chorales as ``Chorales`` (see ``probgen.datasets.load("chorales", ...)``).

    Arguments:
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (all pieces, corpus order).
        seed: the split permutation (0: the fixed split every benchmark uses).
        resolution: ``"quarter"`` or ``"eighth"`` note frames.
        transpose: ``None`` (original keys) or ``"common"``: every piece moved to C major / A minor.
        names: only these corpus chorales (tests use a few); ``max_pieces``: only the first n (corpus order).
        cache: read / write the parsed rolls in ``cache_dir()``.

    The pitch range is the one the selected pieces use (after transposition), the same for
    every split.
    """
    check_choice("resolution", resolution, tuple(RESOLUTIONS))
    if transpose is not None:
        check_choice("transpose", transpose, ("common",))
    if max_pieces is not None:
        check_positive("max_pieces", max_pieces, integer=True)
    if names is None and max_pieces is not None:
        names = _corpus_names()[:max_pieces]
    built = build_rolls(resolution, names=names, cache=cache, progress=progress)
    # music21's iterator lists some chorales twice (same name) and some settings appear under two
    # numbers, possibly in another key: keep the first of pieces equal up to transposition, so no
    # test piece is a copy of a training piece
    seen, keep = set(), []
    for i, r in enumerate(built["rolls"]):
        r = np.asarray(r)
        used = np.nonzero(r.any(0))[0]
        canon = (r.shape, r[:, used.min():used.max() + 1].tobytes()) if len(used) else (r.shape, b"")
        if canon not in seen:
            seen.add(canon)
            keep.append(i)
    built = {k: [built[k][i] for i in keep] for k in ("names", "rolls", "keys")}
    rolls = [np.asarray(r) for r in built["rolls"]]
    keys = list(built["keys"])
    if transpose == "common":
        shifted = []
        for r, (tonic, mode) in zip(rolls, keys):
            s = _shift_to_common_key(tonic, mode)
            shifted.append(np.roll(r, s, axis=1))
        rolls = shifted
        keys = [(0 if mode == "major" else 9, mode) for _, mode in keys]
    used = np.nonzero(np.any(np.concatenate(rolls) > 0, axis=0))[0]
    low, high = int(used.min()), int(used.max())
    tensors = [torch.from_numpy(np.ascontiguousarray(r[:, low:high + 1])).float() for r in rolls]
    idx = np.arange(len(tensors))
    if split is not None:
        order = _split_order(len(tensors), seed)
        n = len(tensors)
        a = int(round(_FRACTIONS[0] * n))
        b = a + int(round(_FRACTIONS[1] * n))
        idx = np.sort(order[{"train": slice(0, a), "val": slice(a, b), "test": slice(b, n)}[split]])
    return Chorales([tensors[i] for i in idx], [built["names"][i] for i in idx], low, [keys[i] for i in idx],
                    split, resolution, {"transpose": transpose, "source": "music21 corpus (Bach chorales)",
                                        "step_quarter_lengths": RESOLUTIONS[resolution]}, high - low + 1)


# ------------------------------------------------------------------ user files
def roll_from_file(path: str | os.PathLike, low: int, num_pitches: int, resolution: str = "quarter") -> torch.Tensor:
    """A MIDI or MusicXML file as a ``(frames, num_pitches)`` roll (column j = MIDI pitch ``low + j``).

    Raises ``ValueError`` when the path does not exist, is not music music21 can read, or
    holds pitches outside the range.

    Example:
        >>> roll_from_file("no/such/file.mid", low=36, num_pitches=48)
        Traceback (most recent call last):
        ...
        ValueError: path: no such file 'no/such/file.mid'
    """
    check_choice("resolution", resolution, tuple(RESOLUTIONS))
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    import music21

    try:
        score = music21.converter.parse(str(p))
    except Exception as exc:  # music21 raises many kinds of errors on non-music files
        raise ValueError(f"path: {str(path)!r} is not a MIDI or MusicXML file music21 can read ({type(exc).__name__})") from None
    if not hasattr(score, "parts") or len(score.flatten().notes) == 0:
        raise ValueError(f"path: {str(path)!r} holds no notes")
    if not hasattr(score, "parts") or not len(score.parts):
        score = music21.stream.Score([score])
    out = _score_roll(score, RESOLUTIONS[resolution])
    if out is None:
        raise ValueError(f"path: {str(path)!r} holds no notes")
    roll = out[0]
    sounding = np.nonzero(roll.any(1))[0]
    roll = roll[:int(sounding.max()) + 1]  # MIDI files end on a full bar: drop the trailing silence
    used = np.nonzero(roll.any(0))[0]
    if used.min() < low or used.max() >= low + num_pitches:
        raise ValueError(f"path: {str(path)!r} has MIDI pitches {int(used.min())}..{int(used.max())}, outside the "
                         f"range {low}..{low + num_pitches - 1}")
    return torch.from_numpy(np.ascontiguousarray(roll[:, low:low + num_pitches])).float()
