"""The registry of model families: every ``Model`` subclass with a ``family`` name."""

from __future__ import annotations

__all__ = ["register_family", "family_class", "registered_families"]

_FAMILIES: dict[str, type] = {}


def register_family(cls: type) -> type:
    name = cls.family
    if name in _FAMILIES and _FAMILIES[name] is not cls:
        prior = _FAMILIES[name]
        if (prior.__module__, prior.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"family name {name!r} is taken by {prior.__module__}.{prior.__qualname__}")
    _FAMILIES[name] = cls
    return cls


def family_class(name: str) -> type:
    from .checks import unknown_key

    if name not in _FAMILIES:
        from .. import models  # importing the family modules registers them

        models._import_all()
    if name not in _FAMILIES:
        raise unknown_key("family", name, _FAMILIES)
    return _FAMILIES[name]


def registered_families() -> dict[str, type]:
    return dict(_FAMILIES)
