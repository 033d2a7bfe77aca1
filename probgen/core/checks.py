"""Input checks at the public boundary.

Every check raises ``ValueError`` (or ``KeyError`` for unknown names) with a message
that names the argument and says what was expected, so that nothing fails deep
inside torch with an opaque message.
"""

from __future__ import annotations

__all__ = [
    "as_tensor",
    "check_binary",
    "check_choice",
    "check_keywords",
    "check_labels",
    "class_labels",
    "check_positive",
    "check_probability",
    "unknown_key",
]

from typing import Any, Iterable, Sequence

import numpy as np
import torch


def unknown_key(kind: str, name: Any, valid: Iterable[Any]) -> KeyError:
    """A ``KeyError`` for an unknown name that lists the valid ones."""
    valid = sorted(map(str, valid))
    shown = ", ".join(valid[:40]) + (", ..." if len(valid) > 40 else "")
    return KeyError(f"unknown {kind} {name!r}; valid names: {shown}")


def check_choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``options``, else raise ``ValueError``."""
    if value not in options:
        raise ValueError(f"{name}: expected one of {list(options)}, got {value!r}")
    return value


def check_keywords(fn: Any, kwargs: dict, what: str) -> None:
    """Raise ``TypeError`` naming the valid ones when ``fn`` takes none of some ``kwargs``.

    Example:
        >>> def f(n, steps=1): pass
        >>> check_keywords(f, {"step": 2}, "sample")
        Traceback (most recent call last):
        ...
        TypeError: sample: unexpected argument 'step'; valid: steps
    """
    import inspect

    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    valid = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][1:]
    for key in kwargs:
        if key not in valid:
            raise TypeError(f"{what}: unexpected argument {key!r}; valid: {', '.join(valid) or 'none'}")


def check_positive(name: str, value: Any, *, strict: bool = True, integer: bool = False) -> Any:
    """Return ``value`` if it is a (strictly) positive number, else raise ``ValueError``."""
    kind = "integer" if integer else "number"
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok_type or not np.isfinite(value):
        raise ValueError(f"{name}: expected a positive {kind}, got {value!r}")
    if value < 0 or (strict and value == 0):
        what = f"positive {kind}" if strict else f"non-negative {kind}"
        raise ValueError(f"{name}: expected a {what}, got {value!r}")
    return value


def check_probability(name: str, value: Any) -> float:
    """Return ``value`` if it lies in [0, 1], else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def as_tensor(
    x: Any,
    name: str = "x",
    *,
    dtype: torch.dtype = torch.float32,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    device: torch.device | str | None = None,
    allow_nan: bool = False,
) -> torch.Tensor:
    """Convert array-like ``x`` to a tensor and check it.

    Arguments:
        x: array-like (tensor, NumPy array, pandas object or nested lists).
        name: the argument's name, used in error messages.
        dtype: the tensor's dtype after conversion.
        ndim: the allowed number(s) of dimensions.
        shape: the expected trailing shape; ``None`` entries match any size.
        device: where the tensor goes.
        allow_nan: whether NaN/inf are allowed.

    Example:
        >>> as_tensor([[0.0, 1.0]], "x", ndim=2).shape
        torch.Size([1, 2])
    """
    if hasattr(x, "to_numpy") and not isinstance(x, torch.Tensor):
        x = x.to_numpy()
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"{name}: expected an array-like of numbers, got {type(x).__name__}") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"{name}: expected numeric data, got dtype {arr.dtype}")
        t = torch.as_tensor(arr)
    if t.dtype.is_complex:
        raise ValueError(f"{name}: expected real numbers, got dtype {t.dtype}")
    if dtype.is_floating_point is False and t.is_floating_point():
        if not torch.all(torch.isfinite(t)) or not torch.equal(t, t.round()):
            raise ValueError(f"{name}: expected integer values, got non-integer numbers")
    t = t.to(dtype=dtype, device=device)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed:
            raise ValueError(f"{name}: expected {' or '.join(map(str, allowed))} dimensions, got shape {tuple(t.shape)}")
    if shape is not None:
        tail = tuple(t.shape[-len(shape):]) if len(shape) else ()
        if t.dim() < len(shape) or any(s is not None and s != g for s, g in zip(shape, tail)):
            want = "(..., " + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")
    if t.is_floating_point() and not allow_nan and not torch.all(torch.isfinite(t)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return t


def check_binary(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Raise ``ValueError`` unless every entry of ``x`` is 0 or 1."""
    if not torch.all((x == 0) | (x == 1)):
        raise ValueError(f"{name}: expected binary values in {{0, 1}} (binarize first, e.g. x > 0.5)")
    return x


def check_labels(y: Any, num_classes: int, name: str = "y", *, length: int | None = None,
                 unknown: int | None = None, every_class: bool = False) -> torch.Tensor:
    """Convert labels to a long tensor and check they lie in ``[0, num_classes)``.

    With ``unknown`` (a marker such as ``-1``) some labels may be missing: entries equal to
    the marker, or NaN, come back as ``-1``. ``every_class=True`` asks for at least one known
    label of every class (and says so plainly when no label at all is known).

    Example:
        >>> check_labels([0, -1, float("nan"), 1], 2, unknown=-1, every_class=True).tolist()
        [0, -1, -1, 1]
    """
    if unknown is None:
        t = as_tensor(y, name, dtype=torch.long, ndim=1)
        known = t
    else:
        raw = as_tensor(y, name, dtype=torch.float64, ndim=1, allow_nan=True)
        missing = torch.isnan(raw) | (raw == unknown)
        if torch.isinf(raw).any():
            raise ValueError(f"{name}: contains infinite values; use {unknown} or NaN for an unknown label")
        known_raw = raw[~missing]
        if not torch.equal(known_raw, known_raw.round()):
            raise ValueError(f"{name}: expected integer labels (or {unknown} / NaN for unknown), got non-integer numbers")
        t = torch.where(missing, torch.full_like(raw, -1), raw).long()
        known = t[~missing]
    if length is not None and len(t) != length:
        raise ValueError(f"{name}: expected {length} labels, got {len(t)}")
    if len(known) and (known.min() < 0 or known.max() >= num_classes):
        if unknown is None:
            raise ValueError(f"{name}: expected labels in [0, {num_classes - 1}], got range [{int(t.min())}, {int(t.max())}]")
        bad = sorted(set(known[(known < 0) | (known >= num_classes)].tolist()))
        raise ValueError(f"{name}: expected labels in [0, {num_classes - 1}] (or {unknown} / NaN for an unknown "
                         f"label), got {bad[:10]}")
    if every_class:
        if len(t) and not len(known):
            raise ValueError(f"{name}: no labelled examples: every label is unknown ({unknown} or NaN); "
                             "give at least one known label per class")
        counts = torch.bincount(known, minlength=num_classes)
        empty = torch.nonzero(counts == 0).flatten().tolist()
        if empty:
            raise ValueError(f"{name}: class(es) {empty} have no labelled example (every label of them is unknown); "
                             f"give at least one known label for each of the {num_classes} classes")
    return t


def class_labels(y: Any, num_classes: int | None, n: int, name: str = "y", *, required: bool = True) -> torch.Tensor | None:
    """The one label check of class-conditional families: ``n`` labels in ``[0, num_classes)`` or ``None``.

    ``num_classes=None`` means the model is not class-conditional, and labels are refused. An
    ``int`` (or a 0-d tensor) stands for ``n`` copies of itself. ``y=None`` is refused when
    ``required``, and returned as ``None`` otherwise (the family then decides, e.g. draws labels).

    Example:
        >>> class_labels(3, num_classes=10, n=2)
        tensor([3, 3])
        >>> class_labels(None, num_classes=None, n=2) is None
        True
    """
    if num_classes is None:
        if y is not None:
            raise ValueError(f"{name}: this model is not class-conditional (num_classes=None); do not pass labels")
        return None
    if y is None:
        if required:
            raise ValueError(f"{name}: a class-conditional model (num_classes={num_classes}) needs labels, "
                             f"e.g. data=(x, y) or y=...")
        return None
    if (isinstance(y, (int, np.integer)) and not isinstance(y, bool)) or (isinstance(y, torch.Tensor) and y.dim() == 0):
        y = [int(y)] * n
    return check_labels(y, num_classes, name, length=n)
