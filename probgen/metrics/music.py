"""Quality control for generated music (piano rolls): pitch classes, key, parallel fifths and octaves.

Every function takes rolls ``(frames, pitches)`` of 0/1 (one or a list) and ``low``, the MIDI
pitch of column 0. ``music_statistics`` gathers them; ``compare_music`` puts each set of
samples beside a reference (held-out Bach) and says how far each statistic is from it.
"""

from __future__ import annotations

__all__ = ["pitch_class_histogram", "pitch_class_distance", "estimate_key", "in_key_fraction",
           "parallel_motion", "music_statistics", "compare_music"]

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
# minor: natural minor plus the raised 6th and 7th (melodic / harmonic minor), as Bach writes it
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 9, 10, 11)


def _rolls(x: Any) -> list[np.ndarray]:
    if hasattr(x, "rolls") and hasattr(x, "low"):
        x = x.rolls
    if isinstance(x, (torch.Tensor, np.ndarray)) and np.ndim(x) == 2:
        x = [x]
    if isinstance(x, (torch.Tensor, np.ndarray)) and np.ndim(x) == 3:
        x = list(x)
    if not isinstance(x, (list, tuple)) or not x:
        raise ValueError("rolls: expected a piano roll (frames, pitches) or a non-empty list of them")
    out = []
    for i, r in enumerate(x):
        a = np.asarray(r.detach().cpu() if isinstance(r, torch.Tensor) else r) > 0.5
        if a.ndim != 2:
            raise ValueError(f"rolls[{i}]: expected a (frames, pitches) roll, got shape {a.shape}")
        out.append(a)
    return out


def _check_low(low: Any) -> int:
    if isinstance(low, bool) or not isinstance(low, (int, np.integer)) or not 0 <= low <= 127:
        raise ValueError(f"low: expected the MIDI pitch (0..127) of the roll's first column, got {low!r}")
    return int(low)


def pitch_class_histogram(rolls: Any, low: int) -> np.ndarray:
    """Share of sounding notes on each pitch class C, C#, ..., B (sums to 1).

    Example:
        >>> r = np.zeros((2, 12)); r[0, [0, 4, 7]] = 1; r[1, 0] = 1
        >>> pitch_class_histogram(r, low=60)[[0, 4, 7]].tolist()
        [0.5, 0.25, 0.25]
    """
    low = _check_low(low)
    counts = np.zeros(12)
    for r in _rolls(rolls):
        per_pitch = r.sum(0)
        pcs = (low + np.arange(r.shape[1])) % 12
        np.add.at(counts, pcs, per_pitch)
    total = counts.sum()
    return counts / total if total else np.full(12, 1 / 12)


def pitch_class_distance(samples: Any, reference: Any, low: int) -> float:
    """Total-variation distance between the pitch-class histograms of two sets of rolls (0..1)."""
    return float(0.5 * np.abs(pitch_class_histogram(samples, low) - pitch_class_histogram(reference, low)).sum())


def estimate_key(roll: Any, low: int) -> tuple[int, str]:
    """(tonic pitch class, "major" | "minor") by the Krumhansl-Schmuckler profiles (music21's weights)
    correlated with the roll's pitch-class durations.

    Example:
        >>> r = np.zeros((8, 24)); r[np.arange(8), [0, 2, 4, 5, 7, 9, 11, 12]] = 1; r[:, 0] = 1
        >>> estimate_key(r, low=60)
        (0, 'major')
    """
    from music21.analysis.discrete import KrumhanslSchmuckler

    ks = KrumhanslSchmuckler()
    hist = pitch_class_histogram(roll, low)
    best, key = -np.inf, (0, "major")
    for mode in ("major", "minor"):
        profile = np.asarray(ks.getWeights(mode), dtype=float)
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1]
            if r > best:
                best, key = r, (tonic, mode)
    return key


def in_key_fraction(rolls: Any, low: int, keys: Sequence[tuple[int, str]] | None = None) -> float:
    """Fraction of sounding frames whose every note lies in the piece's key.

    The key of each piece is ``keys[i]`` or, when not given, ``estimate_key`` of the piece
    (model samples and Bach are then judged the same way). Minor keys admit the raised 6th
    and 7th degrees.

    Example:
        >>> r = np.zeros((3, 12)); r[0, [0, 4, 7]] = 1; r[1, [2, 5, 11]] = 1; r[2, [1, 6]] = 1
        >>> round(in_key_fraction(r, low=60, keys=[(0, "major")]), 3)
        0.667
    """
    low = _check_low(low)
    rs = _rolls(rolls)
    if keys is not None and len(keys) != len(rs):
        raise ValueError(f"keys: expected one key per roll ({len(rs)}), got {len(keys)}")
    inside = total = 0
    for i, r in enumerate(rs):
        tonic, mode = keys[i] if keys is not None else estimate_key(r, low)
        scale = {(tonic + d) % 12 for d in (_MAJOR_SCALE if mode == "major" else _MINOR_SCALE)}
        ok = np.array([(low + j) % 12 in scale for j in range(r.shape[1])])
        sounding = r.any(1)
        inside += int((~(r & ~ok[None]).any(1) & sounding).sum())
        total += int(sounding.sum())
    return inside / total if total else float("nan")


def parallel_motion(rolls: Any, low: int) -> dict:
    """Parallel fifths and octaves between voices, counted over consecutive frames.

    Voices are read from the roll by rank (lowest note = bass, ...) when both frames sound
    the same number of notes (at least 2). A pair of voices moving in the same direction
    from a perfect fifth (or twelfth, ...) to a perfect fifth is a parallel fifth; the same
    for octaves / unisons. ``per_100`` is (fifths + octaves) per 100 frame transitions.

    Example:
        >>> r = np.zeros((2, 24)); r[0, [0, 7]] = 1; r[1, [2, 9]] = 1    # C-G -> D-A
        >>> parallel_motion(r, low=48)["fifths"]
        1
    """
    low = _check_low(low)
    fifths = octaves = transitions = 0
    for r in _rolls(rolls):
        notes = [np.nonzero(f)[0] for f in r]
        for a, b in zip(notes[:-1], notes[1:]):
            transitions += 1
            if len(a) != len(b) or len(a) < 2:
                continue
            move = b - a
            for i in range(len(a)):
                for j in range(i + 1, len(a)):
                    if move[i] == 0 or move[j] == 0 or np.sign(move[i]) != np.sign(move[j]):
                        continue
                    before, after = (a[j] - a[i]) % 12, (b[j] - b[i]) % 12
                    if before == 7 and after == 7:
                        fifths += 1
                    elif before == 0 and after == 0:
                        octaves += 1
    return {"fifths": fifths, "octaves": octaves, "transitions": transitions,
            "per_100": 100.0 * (fifths + octaves) / transitions if transitions else float("nan")}


def music_statistics(rolls: Any, low: int, keys: Sequence[tuple[int, str]] | None = None) -> dict:
    """The pitch-class histogram, in-key fraction, parallels per 100 transitions and notes per frame."""
    rs = _rolls(rolls)
    par = parallel_motion(rs, low)
    return {"pitch_classes": pitch_class_histogram(rs, low), "in_key": in_key_fraction(rs, low, keys),
            "parallels_per_100": par["per_100"], "notes_per_frame": float(np.mean(np.concatenate([r.sum(1) for r in rs])))}


def compare_music(samples: dict[str, Any], reference: Any, low: int) -> pd.DataFrame:
    """One row per set of samples: its statistics, the reference's, and each one's distance from it.

    ``distance`` sums the pitch-class total variation, the in-key gap and the parallels gap
    (per 100 transitions, divided by 10) and the notes-per-frame gap (divided by 4): 0 means
    the samples match the reference on all of them.

    Example:
        >>> r = np.zeros((4, 12)); r[:, [0, 4, 7]] = 1
        >>> float(compare_music({"same": r}, r, low=60).loc["same", "distance"])
        0.0
    """
    ref = music_statistics(reference, low)
    rows = {}
    for name, rolls in {**samples}.items():
        s = music_statistics(rolls, low)
        pc = float(0.5 * np.abs(s["pitch_classes"] - ref["pitch_classes"]).sum())
        gaps = {"pc_distance": pc, "in_key": s["in_key"], "in_key_gap": abs(s["in_key"] - ref["in_key"]),
                "parallels_per_100": s["parallels_per_100"],
                "parallels_gap": abs(s["parallels_per_100"] - ref["parallels_per_100"]),
                "notes_per_frame": s["notes_per_frame"],
                "notes_gap": abs(s["notes_per_frame"] - ref["notes_per_frame"])}
        gaps["distance"] = gaps["pc_distance"] + gaps["in_key_gap"] + gaps["parallels_gap"] / 10 + gaps["notes_gap"] / 4
        rows[name] = gaps
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["reference"] = {k: v for k, v in ref.items() if k != "pitch_classes"}
    return table
