"""Markov chains over states and n-gram text generation."""

from .chain import MarkovChain, sample_chains
from .text import TextGenerator, tokenize

__all__ = ["MarkovChain", "TextGenerator", "sample_chains", "tokenize"]
