"""Piano-roll models of music: a chord n-gram, RNN-RBM, RNN-NADE (autoregressive) and a Deep Markov Model.

All take rolls ``(frames, num_pitches)`` of 0/1 (``probgen.datasets.load("chorales")``), score
pieces by ``log_prob`` / ``nll_per_frame``, generate with ``sample(num_frames, seed=, primer=)``,
harmonise a soprano line with ``harmonize`` and write MIDI with ``to_midi`` (``write_midi``).
"""

from .base import MusicModel, as_rolls, pad_rolls, write_midi
from .dmm import DeepMarkovModel
from .nade import RollNADE
from .ngram import ChordNGram
from .rnnrbm import RNNRBM

__all__ = ["ChordNGram", "RNNRBM", "RollNADE", "DeepMarkovModel", "MusicModel", "write_midi", "as_rolls",
           "pad_rolls"]
