"""How a family declares the inference engines it implements itself.

The generic engines live in ``probgen.infer`` and state what they need of a model as
protocols; a family that fits in its own way (counts, a closed form, a training loop of
its own around a generic engine) marks the method with ``@implements("name")``. The
declaration is read once, when the class is created, into ``cls.own_engines``: nothing is
found by a name prefix. A subclass may decline an engine its parent implements with
``declined_engines = {"name": "why"}``.

Example:
    >>> from probgen.core.base import Model
    >>> class Counts(Model):
    ...     @implements("exact")
    ...     def fit_by_counting(self, data, **options):
    ...         return {"counted": len(data)}
    >>> Counts.own_engines
    {'exact': 'fit_by_counting'}
"""

from __future__ import annotations

__all__ = ["implements", "collect_own_engines"]

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

_MARK = "__probgen_engine__"


def implements(engine: str) -> Callable[[F], F]:
    """Mark a method as the family's own implementation of the engine named ``engine``.

    The method is called as ``method(data, **options)`` and returns a ``FitResult``.
    """
    if not isinstance(engine, str) or not engine.isidentifier():
        raise ValueError(f"engine: expected an engine name such as 'mle', got {engine!r}")

    def mark(method: F) -> F:
        setattr(method, _MARK, engine)
        return method

    return mark


def collect_own_engines(cls: type) -> dict[str, str]:
    """Engine name -> method name for ``cls``: its bases' declarations, then its own."""
    table: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            engine = getattr(value, _MARK, None)
            if engine is not None:
                table[engine] = attr
        for engine in vars(klass).get("declined_engines", {}) or {}:
            table.pop(engine, None)
    return table
