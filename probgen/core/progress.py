"""Progress bars: tqdm everywhere long work runs, off with ``progress=False``, quiet when nobody watches.

A bar shows on a terminal and in a Jupyter notebook; when standard error goes to a file or a
pipe (a log, CI, a bench redirected to disk) it stays quiet, as tqdm's own ``disable=None`` does
for terminals (the notebook case is added here, since a notebook's stream is not a TTY).
"""

from __future__ import annotations

__all__ = ["progress_bar", "watched"]

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def watched() -> bool:
    """Whether someone can see a progress bar: standard error is a terminal, or this is a notebook kernel.

    Example:
        >>> watched()  # doctests run with captured output
        False
    """
    try:
        if sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # a replaced or closed stream
        pass
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_bar(iterable: Iterable[T] | None = None, *, enabled: bool = True, total: int | None = None,
                 desc: str | None = None, leave: bool = False) -> tqdm:
    """A tqdm bar, silent when ``enabled`` is false or when nobody can see it (see ``watched``)."""
    return tqdm(iterable, total=total, desc=desc, disable=not (enabled and watched()), leave=leave, dynamic_ncols=True)
