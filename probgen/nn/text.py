"""A caption encoder whose code is additive in the caption's words."""

from __future__ import annotations

__all__ = ["TextEncoder"]

import torch
from torch import nn


class TextEncoder(nn.Module):
    """Sum of learned word embeddings, then a linear map.

    The code of a caption is additive in its words (``code("a thick two") = code("a two")
    + e("thick")``), which is what lets a word combination never seen in training still
    mean both of its words.
    """

    def __init__(self, vocab_size: int, embed_dim: int, out_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.linear = nn.Linear(embed_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.embedding(tokens).sum(1))
