"""Benchmarks, run as ``probgen bench NAME``: each measures probgen beside a baseline.

A benchmark module defines ``run(quick: bool = False, device: str = "cpu") -> Report``.
"""

from __future__ import annotations

import importlib

from ..core.checks import unknown_key
from .harness import Report, time_call

__all__ = ["run", "available", "Report", "time_call"]

# bench name -> module in this package
_BENCHES = {
    "svi": "svi",
}


def available() -> list[str]:
    return sorted(_BENCHES)


def run(name: str, quick: bool = False, device: str = "cpu", json_path: str | None = None) -> Report:
    """Run the benchmark ``name``, print its table, optionally write JSON."""
    if name not in _BENCHES:
        raise unknown_key("benchmark", name, _BENCHES)
    module = importlib.import_module(f".{_BENCHES[name]}", __name__)
    report = module.run(quick=quick, device=device)
    print(report.render(), flush=True)
    if json_path:
        report.to_json(json_path)
    return report
