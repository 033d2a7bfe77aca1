"""The empty-input rule, in one place for every family.

* ``fit`` refuses data without examples: ``ValueError`` naming the argument
  (``require_examples``).
* ``log_prob``, ``score`` and ``encode`` answer a batch of zero examples with zero
  answers: a tensor with ``0`` rows (``(0,)`` for ``log_prob`` / ``score``, ``(0, *code)``
  for ``encode``). The batch is still checked (wrong trailing shapes, dtypes and names are
  refused as for any batch).
* ``sample(0)`` is refused: ``n`` must be a positive integer (``probgen.Model.sample``).

Families apply the rule through the helpers below rather than each its own way:
``flat_rows`` and ``cat_rows`` are the two operations that break on zero rows
(``reshape(n, -1)`` and ``torch.cat`` of an empty list), ``map_rows`` runs a per-batch
function chunk by chunk.
"""

from __future__ import annotations

__all__ = ["require_examples", "flat_rows", "cat_rows", "map_rows"]

import math
from typing import Callable

import torch


def require_examples(n: int, name: str = "data", what: str = "example") -> int:
    """Raise ``ValueError`` unless ``n`` (the number of examples given to ``fit``) is positive.

    Example:
        >>> require_examples(3)
        3
        >>> require_examples(0, "data")
        Traceback (most recent call last):
        ...
        ValueError: data: expected at least one example to fit, got none
    """
    if n <= 0:
        raise ValueError(f"{name}: expected at least one {what} to fit, got none")
    return n


def flat_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``(rows, features)``; unlike ``x.reshape(len(x), -1)`` it works for zero rows.

    Example:
        >>> flat_rows(torch.zeros(0, 1, 4, 4)).shape
        torch.Size([0, 16])
    """
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def cat_rows(parts: list[torch.Tensor], empty: torch.Tensor) -> torch.Tensor:
    """``torch.cat(parts)``, or ``empty`` (a tensor with zero rows) when there are no parts.

    Example:
        >>> cat_rows([], torch.zeros(0)).shape
        torch.Size([0])
    """
    return torch.cat(parts) if parts else empty


def map_rows(fn: Callable[..., torch.Tensor], x: torch.Tensor, size: int, *others: torch.Tensor | None,
             empty: torch.Tensor) -> torch.Tensor:
    """``fn`` on consecutive chunks of ``size`` rows of ``x`` (and the same rows of ``others``,
    which may be ``None``), concatenated; ``empty`` for zero rows.

    Example:
        >>> map_rows(lambda a: a.sum(1), torch.ones(5, 2), 2, empty=torch.zeros(0)).tolist()
        [2.0, 2.0, 2.0, 2.0, 2.0]
    """
    parts = [fn(x[s:s + size], *(None if o is None else o[s:s + size] for o in others))
             for s in range(0, len(x), size)]
    return cat_rows(parts, empty)
