"""Benchmarks, run as ``probgen bench NAME``: each measures probgen beside a baseline.

A benchmark module defines ``run(quick: bool = False, device: str = "cpu") -> Report``.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..core.checks import unknown_key
from .harness import Report, time_call

__all__ = ["run", "available", "Report", "time_call"]

# bench name -> module in this package
_BENCHES = {
    "svi": "svi",
    "nuts": "nuts",
    "bayesnet": "bayesnet",
    "markov": "markov",
    "spread": "spread",
    "vae": "vae",
    "gan-modes": "gan_modes",
    "gan-images": "gan_images",
    "gan-text": "gan_text",
    "gan-robust": "gan_robust",
    "gan-diversity": "gan_diversity",
    "rbm": "rbm",
    "recommend": "recommend",
    "pixel-sampling": "pixel_sampling",
    "likelihood": "likelihood",
    "flows": "flows",
    "diffusion": "diffusion",
    "quality": "quality",
    "scale": "scale",
    "semisupervised": "semisupervised",
    "music": "music",
    "privacy": "privacy",
    "anomaly": "anomaly",
}


def available() -> list[str]:
    """Benchmark names whose module is present."""
    return sorted(k for k, m in _BENCHES.items() if importlib.util.find_spec(f"{__name__}.{m}") is not None)


def run(name: str, quick: bool = False, device: str = "cpu", json_path: str | None = None) -> Report:
    """Run the benchmark ``name``, print its table, optionally write JSON."""
    if name not in available():
        raise unknown_key("benchmark", name, available())
    module = importlib.import_module(f".{_BENCHES[name]}", __name__)
    report = module.run(quick=quick, device=device)
    print(report.render(), flush=True)
    if json_path:
        report.to_json(json_path)
    return report
