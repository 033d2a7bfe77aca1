"""Seeds and devices: the same seed gives the same result on CPU."""

from __future__ import annotations

__all__ = ["seeded", "check_seed", "resolve_device", "cuda_available"]

import contextlib
import random as _random
from typing import Any, Iterator

import numpy as np
import pyro
import torch


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with every random generator seeded, then restore their states.

    With ``seed=None`` the block runs on the current global state, untouched.

    Example:
        >>> with seeded(0): a = torch.rand(2)
        >>> with seeded(0): b = torch.rand(2)
        >>> bool(torch.equal(a, b))
        True
    """
    if seed is None:
        yield
        return
    check_seed(seed)
    py_state, np_state = _random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        pyro.set_rng_seed(int(seed))
        try:
            yield
        finally:
            _random.setstate(py_state)
            np.random.set_state(np_state)


def check_seed(seed: Any) -> Any:
    """Return ``seed`` if it is ``None`` or an integer in [0, 2**32), else raise ``ValueError``.

    (NumPy's global generator, seeded too, takes seeds below 2**32.)

    Example:
        >>> check_seed(3)
        3
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or not 0 <= seed < 2**32):
        raise ValueError(f"seed: expected an integer in [0, 2**32) or None, got {seed!r}")
    return seed


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn ``device`` into a ``torch.device``; CPU when ``None``.

    Raises ``ValueError`` when a CUDA device is asked for and none is present.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device: 'cuda' was requested but no CUDA device is available; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device: {device!r} does not exist; {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type not in ("cpu", "mps"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    return dev
