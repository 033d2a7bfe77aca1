"""Progress bars: tqdm everywhere long work runs, off with ``progress=False``."""

from __future__ import annotations

__all__ = ["progress_bar"]

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, enabled: bool = True, total: int | None = None,
                 desc: str | None = None, leave: bool = False) -> tqdm:
    """A tqdm bar that is silent when ``enabled`` is false."""
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=leave, dynamic_ncols=True)
