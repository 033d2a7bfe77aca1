"""The tour shared by the piano-roll families: fit on a few chorales, continue a held-out one, score it.

Every music family runs the same tour (``MusicModel.tour``); a family only sets its small
budget in ``_tour_budget(quick)`` (constructor and ``fit`` keywords). The measured figure is
the test NLL per frame on the first held-out chorales (exact, or the importance-weighted
bound for a latent-variable model), beside the chord n-gram and independent notes fitted on
the same pieces.
"""

from __future__ import annotations

__all__ = ["music_tour"]

import os

import torch

#: held-out chorales scored by every music tour (the first of the test split)
N_TEST = 5
#: frames of Bach given as the primer, and frames drawn in the picture
PRIMER, SHOWN = 8, 32


def _independent_nll(train, test) -> float:
    """NLL per frame of independent per-pitch Bernoulli notes (add-1/2 smoothed frequencies)."""
    frames, held = torch.cat(train).double(), torch.cat(test).double()
    q = (frames.sum(0) + 0.5) / (len(frames) + 1)
    return float(-(held * q.log() + (1 - held) * torch.log1p(-q)).sum(-1).mean())


def music_tour(cls, out_dir: str, quick: bool = False):
    """Fit ``cls`` with its tour budget, draw Bach beside the model's continuation, measure the test NLL."""
    import matplotlib.pyplot as plt

    from ... import plot
    from ...gallery import TourSection, demo_source
    from .ngram import ChordNGram

    model_kw, fit_kw, n_train = cls._tour_budget(quick)

    def demo():
        import torch
        import probgen
        train = probgen.datasets.load("chorales", split="train", transpose="common").rolls[:n_train]
        test = probgen.datasets.load("chorales", split="test", transpose="common")
        torch.manual_seed(0)
        m = cls(test.num_pitches, test.low, **model_kw)
        m.fit(train, progress=False, seed=0, **fit_kw)
        bach = test.rolls[0][:32]
        continuation = m.sample(32, seed=0, primer=bach[:8])
        nll = m.nll_per_frame(test.rolls[:5])
        return train, test, m, bach, continuation, nll

    train, test, m, bach, continuation, nll = demo()
    code = demo_source(demo, n_train=n_train, model_kw=model_kw, fit_kw=fit_kw)
    code = code.replace("cls(", f"probgen.models.{cls.__name__}(")
    held = test.rolls[:N_TEST]
    independent = _independent_nll(train, held)
    if cls is ChordNGram:
        baseline_name, baseline = "independent notes", independent
        others = {}
    else:
        ngram = ChordNGram(test.num_pitches, test.low)
        ngram.fit(train, progress=False)
        baseline_name, baseline = "chord n-gram", ngram.nll_per_frame(held)
        others = {"independent notes": f"{independent:.2f} nats per frame"}
    exact = getattr(cls, "log_prob_kind", "exact") == "exact"
    measure = "exact test NLL" if exact else "test NLL bound (importance-weighted, upper bound)"
    frames = sum(len(r) for r in held)
    figures = {measure: f"{nll:.2f} nats per frame ({baseline_name}: {baseline:.2f})", **others,
               "data": f"{len(train)} training chorales; NLL on {len(held)} held-out ({frames} frames)"}
    works = nll < baseline

    primer = torch.zeros_like(bach)
    primer[:PRIMER] = bach[:PRIMER]
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    plot.piano_roll(bach, test.low, ax=axes[0], highlight=primer,
                    title=f"Bach, {test.names[0]} (held out; first {PRIMER} frames in red = primer)")
    plot.piano_roll(continuation, test.low, ax=axes[1], highlight=primer,
                    title=f"{cls.__name__}: continuation of the same {PRIMER}-frame primer (seed 0)")
    fig.tight_layout()
    path = plot.save_figure(fig, os.path.join(out_dir, f"{cls.family}.png"))
    note = (f"a tiny subset: {len(train)} training chorales, a few CPU-seconds of fitting (the corpus is parsed"
            " once, then read from the cache); `python -m probgen.cli bench music` trains on all of them")
    if not works:
        note = f"with this budget it does not beat the {baseline_name} ({nll:.2f} vs {baseline:.2f}); " + note
    return TourSection(cls.family, f"{cls.__name__} on {len(train)} Bach chorales (common key), continuing a held-out one",
                       pictures=[(path, f"Top: the first {SHOWN} quarter-note frames of the held-out chorale "
                                        f"{test.names[0]} (transposed to C major / A minor); bottom: "
                                        f"{cls.__name__}'s continuation of its first {PRIMER} frames (red, given).")],
                       figures=figures, code=code, verdict="works" if works else "limited", note=note)
