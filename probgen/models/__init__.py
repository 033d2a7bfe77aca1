"""The model families, one module each, imported on first use.

``available()`` lists the registered family names; ``get(name)`` returns a class.
"""

from __future__ import annotations

import importlib

from ..core.registry import family_class, registered_families

# public class name -> module defining it (imported lazily, so `import probgen` stays fast)
_CLASSES = {
    "BayesianLinearRegression": "regression",
}

__all__ = ["available", "get", *_CLASSES]


def __getattr__(name: str):
    if name in _CLASSES:
        module = importlib.import_module(f".{_CLASSES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'probgen.models' has no attribute {name!r}")


def _import_all() -> None:
    for module in sorted(set(_CLASSES.values())):
        importlib.import_module(f".{module}", __name__)


def available() -> list[str]:
    """The registered family names.

    Example:
        >>> "linear_regression" in available()
        True
    """
    _import_all()
    return sorted(registered_families())


def get(name: str) -> type:
    """The class of the family called ``name`` (``KeyError`` listing valid names)."""
    _import_all()
    return family_class(name)
