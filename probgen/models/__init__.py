"""The model families: a subpackage per family with several modules, a module otherwise.

Classes are imported on first use (``probgen.models.VAE``), so ``import probgen`` stays fast;
the family table is ``probgen.core.registry.BUILTIN_FAMILIES``. ``available()`` lists the
family names and ``get(name)`` returns a class.
"""

from __future__ import annotations

import importlib

from ..core.registry import BUILTIN_FAMILIES, family_class, family_names

# public class name -> module, derived from the one family table
_CLASSES = {location.partition(":")[2]: location.partition(":")[0] for location in BUILTIN_FAMILIES.values()}

__all__ = ["available", "get", *_CLASSES]


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module 'probgen.models' has no attribute {name!r}")


def available() -> list[str]:
    """The registered family names.

    Example:
        >>> "linear_regression" in available()
        True
    """
    return family_names()


def get(name: str) -> type:
    """The class of the family called ``name`` (``KeyError`` listing valid names).

    Example:
        >>> get("vae").__name__
        'VAE'
    """
    return family_class(name)
