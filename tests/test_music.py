"""Music: the chorales data set, the four piano-roll families, generation, MIDI and the music metrics."""

import itertools
import math

import numpy as np
import pytest
import torch

import probgen
from probgen.datasets.chorales import build_rolls, load_chorales, roll_from_file, transpose_rolls
from probgen.metrics.music import compare_music, in_key_fraction, parallel_motion, pitch_class_histogram
from probgen.models.music import RNNRBM, ChordNGram, DeepMarkovModel, RollNADE, write_midi

NAMES = ["bach/bwv269", "bach/bwv347", "bach/bwv153.1"]
P, LOW = 3, 60


def _tiny_rolls(n=6, frames=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(frames, P, generator=g) < 0.45).float() for _ in range(n)]


def _fitted(cls):
    rolls = _tiny_rolls()
    if cls is ChordNGram:
        m = cls(num_pitches=P, low_pitch=LOW, smoothing=0.5)
        m.fit(rolls, progress=False)
    elif cls is RollNADE:
        m = cls(num_pitches=P, low_pitch=LOW, rnn_hidden=8, nade_hidden=4)
        m.fit(rolls, steps=20, lr=0.03, progress=False, seed=0)
    elif cls is RNNRBM:
        m = cls(num_pitches=P, low_pitch=LOW, num_hidden=2, rnn_hidden=6, pretrain_epochs=1, gibbs_steps=5)
        m.fit(rolls, steps=20, lr=0.03, progress=False, seed=0)
    else:
        m = cls(num_pitches=P, low_pitch=LOW, z_dim=2, transition_hidden=4, emission_hidden=4, rnn_hidden=4)
        m.fit(rolls, steps=10, lr=0.02, progress=False, seed=0)
    return m


@pytest.fixture(scope="module")
def models():
    return {cls.__name__: _fitted(cls) for cls in (ChordNGram, RollNADE, RNNRBM, DeepMarkovModel)}


def _all_pieces(frames):
    """Every piece of ``frames`` frames over P pitches: 2**(P * frames) rolls."""
    configs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=P * frames)))
    return list(configs.reshape(-1, frames, P))


# ---------------------------------------------------------------- data set
def test_build_is_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBGEN_CACHE_DIR", str(tmp_path))
    first = build_rolls(names=NAMES, cache=True, progress=False)
    assert len(list(tmp_path.glob("chorales-*.npz"))) == 1  # written once, atomically (no temporary left)
    again = build_rolls(names=NAMES, cache=False, progress=False)
    cached = build_rolls(names=NAMES, cache=True, progress=False)
    for other in (again, cached):
        assert other["names"] == first["names"] and other["keys"] == first["keys"]
        assert all(np.array_equal(a, b) for a, b in zip(first["rolls"], other["rolls"]))
    # four voices: every frame sounds 1..4 notes, inside the MIDI range of voices
    for r in first["rolls"]:
        counts = r.sum(1)
        assert counts.max() <= 4 and np.mean(counts >= 3) > 0.9


def test_load_splits_by_piece(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBGEN_CACHE_DIR", str(tmp_path))
    names = probgen.datasets.chorales._corpus_names()[:5]
    full = load_chorales(max_pieces=5)
    assert set(full.names) <= set(names) and len(full.names) >= 3  # repeats dropped
    parts = [load_chorales(split=s, names=names) for s in ("train", "val", "test")]
    assert sorted(n for p in parts for n in p.names) == sorted(full.names)
    assert all(p.low == full.low and p.num_pitches == full.num_pitches for p in parts)
    # the range is the one used: first and last columns hold notes
    frames = torch.cat(full.rolls)
    assert frames[:, 0].any() and frames[:, -1].any()
    common = load_chorales(names=names, transpose="common")
    assert {k for k in common.keys} <= {(0, "major"), (9, "minor")}
    via_catalogue = probgen.datasets.load("chorales", split="test", names=names)
    assert via_catalogue.names == parts[2].names


def test_eighth_note_frames_double_the_quarter_frames():
    quarter = build_rolls(names=NAMES[:1], cache=False, progress=False)["rolls"][0]
    eighth = build_rolls("eighth", names=NAMES[:1], cache=False, progress=False)["rolls"][0]
    assert len(eighth) == 2 * len(quarter)
    assert np.array_equal(eighth[::2], quarter)  # every other eighth frame starts on a quarter


def test_repeated_pieces_are_dropped():
    from probgen.datasets.chorales import _corpus_names

    names = _corpus_names()
    twice = next(n for i, n in enumerate(names) if n in names[:i])  # the corpus lists some chorales twice
    data = load_chorales(names=[twice, twice], cache=False)
    assert data.names == [twice]


def test_transposition_keeps_the_range():
    r = torch.zeros(4, 6)
    r[:, [1, 4]] = 1
    out = transpose_rolls([r], range(-3, 4))
    assert len(out) == 3  # shifts -1, 0, +1 stay inside 6 pitches
    assert all(o.sum() == r.sum() for o in out)


# ------------------------------------------------------------ likelihoods
@pytest.mark.parametrize("name", ["ChordNGram", "RollNADE", "RNNRBM"])
def test_exact_likelihoods_sum_to_one(models, name):
    m = models[name]
    assert type(m).log_prob_kind == "exact"
    for frames in (1, 2):
        pieces = _all_pieces(frames)
        total = torch.logsumexp(m.log_prob(pieces).double(), 0).exp()
        assert abs(float(total) - 1.0) < 1e-5, f"{name}: probabilities of all {len(pieces)} pieces sum to {float(total)}"


def test_dmm_bound_is_normalised(models):
    m = models["DeepMarkovModel"]
    assert type(m).log_prob_kind == "lower_bound"
    pieces = _all_pieces(2)
    # exp(importance-weighted bound) is an unbiased estimate of p(piece): over all pieces it sums to about 1
    lp = m.log_prob(pieces, num_particles=2000)
    assert abs(float(torch.logsumexp(lp.double(), 0).exp()) - 1.0) < 0.03
    # one particle is the ELBO, below the many-particle bound (Burda et al. 2016)
    assert m.log_prob(pieces, num_particles=1).mean() < lp.mean()


def test_chord_ngram_gives_unseen_chords_probability():
    rolls = [torch.tensor([[1, 0, 0], [0, 1, 0]] * 4, dtype=torch.float32)]
    m = ChordNGram(num_pitches=3, low_pitch=60)
    m.fit(rolls, progress=False)
    unseen = torch.tensor([[1, 0, 0], [1, 1, 1]], dtype=torch.float32)
    assert torch.isfinite(m.log_prob([unseen])).all()
    assert m.nll_per_frame(rolls) < m.nll_per_frame([unseen])


# ------------------------------------------------------------- generation
@pytest.mark.parametrize("name", ["ChordNGram", "RollNADE", "RNNRBM", "DeepMarkovModel"])
def test_primer_is_reproduced_and_seed_repeats(models, name):
    m = models[name]
    primer = [[60, 62], [61], [], [60, 61, 62]]
    out = m.sample(10, seed=3, primer=primer)
    assert out.shape == (10, P)
    expected = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=torch.float32)
    assert torch.equal(out[:4], expected)
    assert torch.equal(out, m.sample(10, seed=3, primer=primer))
    batch = m.sample(6, seed=1, num_pieces=3, primer=expected[:2])
    assert batch.shape == (3, 6, P) and torch.equal(batch[:, :2], expected[:2].expand(3, -1, -1))


@pytest.mark.parametrize("name", ["ChordNGram", "RollNADE", "RNNRBM", "DeepMarkovModel"])
def test_harmonisation_keeps_the_soprano(models, name):
    m = models[name]
    soprano = [62, 61, 61, 62, 60, 62, 61, 60]
    for seed in range(3):
        out = m.harmonize(soprano, seed=seed)
        top = [int(torch.nonzero(f).max()) + LOW for f in out]
        assert top == soprano


def test_bad_input_is_refused(models, tmp_path):
    m = models["RollNADE"]
    with pytest.raises(ValueError, match="num_frames"):
        m.sample(0)
    with pytest.raises(ValueError, match="num_frames"):
        m.sample(-3, seed=0)
    with pytest.raises(ValueError, match="outside the model's range"):
        m.sample(4, primer=[[60, 70]])
    with pytest.raises(ValueError, match="primer"):
        m.sample(4, primer=torch.zeros(2, P + 1))
    with pytest.raises(ValueError, match="soprano"):
        m.harmonize([60, 99])
    with pytest.raises(ValueError, match="rolls"):
        m.log_prob(torch.full((3, P), 0.5))
    with pytest.raises(ValueError, match="no such file"):
        roll_from_file(tmp_path / "missing.mid", low=LOW, num_pitches=P)
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"this is not music at all")
    with pytest.raises(ValueError, match="not a MIDI or MusicXML"):
        roll_from_file(junk, low=LOW, num_pitches=P)
    with pytest.raises(ValueError, match="folder"):
        m.to_midi(torch.zeros(2, P), tmp_path / "no" / "x.mid")


def test_midi_round_trip(tmp_path):
    roll = torch.zeros(6, 12)
    roll[0:2, [0, 4, 7]] = 1
    roll[2:6, [2, 5, 9]] = 1
    roll[3, 11] = 1
    path = write_midi(roll, tmp_path / "piece.mid", low_pitch=60)
    back = roll_from_file(path, low=60, num_pitches=12)
    assert torch.equal(back, roll)
    with pytest.raises(ValueError, match="outside the range"):
        roll_from_file(path, low=62, num_pitches=12)


def test_midi_written_from_a_model_carries_its_provenance(tmp_path):
    case = ChordNGram._contract_case()
    model = case.model
    model.fit(case.data, progress=False, **case.fit_options)
    roll = model.sample(8, seed=3, **case.sample_kwargs)
    path = model.to_midi(roll, tmp_path / "generated.mid", seed=3)
    stamp = probgen.provenance(path)
    assert stamp["family"] == "chord_ngram" and stamp["seed"] == 3 and stamp["intact"] is True
    open(path, "ab").write(b"\x00")  # an edited file no longer matches its recorded hash
    assert probgen.provenance(path)["intact"] is False


# ----------------------------------------------------------------- metrics
def test_music_metrics_on_known_examples():
    c_major = np.zeros((4, 24))
    c_major[0, [0, 4, 7, 12]] = 1
    c_major[1, [5, 9, 12, 17]] = 1
    c_major[2, [7, 11, 14, 19]] = 1
    c_major[3, [1, 6, 10]] = 1  # C#, F#, A#: out of C major
    assert in_key_fraction(c_major, low=48, keys=[(0, "major")]) == 0.75
    hist = pitch_class_histogram(c_major, low=48)
    assert hist.sum() == pytest.approx(1.0) and hist[0] == pytest.approx(3 / 15)
    parallel = np.zeros((3, 24))
    parallel[0, [0, 7, 12]] = 1  # C G C
    parallel[1, [2, 9, 14]] = 1  # D A D: fifths C-G/D-A, octave C-C/D-D and twelfth G-C... (G-C is a fourth)
    parallel[2, [2, 9, 14]] = 1  # held: no motion
    counts = parallel_motion(parallel, low=48)
    assert (counts["fifths"], counts["octaves"], counts["transitions"]) == (1, 1, 2)
    table = compare_music({"copy": c_major, "shifted": np.roll(c_major, 1, axis=1)}, c_major, low=48)
    assert table.loc["copy", "distance"] == 0 and table.loc["shifted", "distance"] > 0


def test_fitted_models_beat_independent_notes_on_chorales(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBGEN_CACHE_DIR", str(tmp_path))
    data = load_chorales(names=NAMES)
    rolls = data.rolls
    frames = torch.cat(rolls)
    q = (frames.mean(0) * 0.98 + 0.01).double()
    independent = -float((frames * q.log() + (1 - frames) * torch.log1p(-q)).sum(-1).mean())
    m = ChordNGram(num_pitches=data.num_pitches, low_pitch=data.low)
    m.fit(rolls, progress=False)
    assert m.nll_per_frame(rolls) < independent
    assert math.isfinite(independent)


def test_bench_music_quick(tmp_path, monkeypatch):
    from probgen import bench

    monkeypatch.setenv("PROBGEN_CACHE_DIR", str(tmp_path))
    report = bench.run("music", quick=True)
    frame = report.frame()
    nll = report.tables["per-frame test NLL, nats (lower is better)"]
    assert len(nll) == 5 and np.isfinite(nll["test NLL per frame (mean)"]).all()
    assert frame["probgen"].notna().all()
