"""The benchmark harness: probgen and its baseline measured in one run, side by side."""

from __future__ import annotations

__all__ = ["Report", "time_call", "time_interleaved"]

import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pandas as pd
import torch


def time_interleaved(runs: Mapping[str, Callable[[], Any]], repeat: int = 5, warmup: int = 1,
                     clocks: Mapping[str, Callable[[], float]] | None = None) -> tuple[dict, dict]:
    """Median time of each ``runs[name]()``, the runs alternating so that all see the same load.

    ``warmup`` untimed rounds come first, then ``repeat`` timed ones. ``clocks`` names the
    clocks to read (default ``{"wall": time.perf_counter}``; ``time.process_time`` for CPU
    seconds on a shared machine). Returns ``(medians, last)``: ``medians[name][clock]`` in
    seconds and ``last[name]``, what the last call of ``runs[name]`` returned.
    """
    clocks = dict(clocks or {"wall": time.perf_counter})
    times = {name: {c: [] for c in clocks} for name in runs}
    last: dict[str, Any] = {}
    for r in range(warmup + repeat):
        for name, fn in runs.items():
            start = {c: clock() for c, clock in clocks.items()}
            last[name] = fn()
            if r >= warmup:
                for c, clock in clocks.items():
                    times[name][c].append(clock() - start[c])
    return {name: {c: statistics.median(v) for c, v in per.items()} for name, per in times.items()}, last


def time_call(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    return time_interleaved({"fn": fn}, repeat, warmup)[0]["fn"]["wall"]


@dataclass
class Report:
    """What a benchmark prints: rows comparing probgen with a named baseline.

    ``add(case, metric, probgen, baseline, ...)`` records one comparison and its
    ratio ``probgen / baseline``; ``table(name, frame)`` adds a free-form table
    (for example perplexity by order); ``note(text)`` a line of context.
    """

    name: str
    title: str
    rows: list[dict] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, case: str, metric: str, probgen: float, baseline: float | None = None, *,
            baseline_name: str = "", unit: str = "", goal: str = "") -> None:
        ratio = None
        if baseline is not None and probgen is not None and baseline != 0:
            ratio = probgen / baseline
        self.rows.append({"case": case, "metric": metric, "probgen": probgen, "baseline": baseline,
                          "baseline_name": baseline_name, "ratio": ratio, "unit": unit, "goal": goal})

    def table(self, name: str, frame: pd.DataFrame) -> None:
        self.tables[name] = frame

    def note(self, text: str) -> None:
        self.notes.append(text)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["case", "metric", "probgen", "baseline", "baseline_name", "ratio",
                                                "unit", "goal"])

    def render(self) -> str:
        lines = [f"== probgen bench {self.name}: {self.title}", _machine()]
        if self.rows:
            frame = self.frame().copy()
            frame["ratio"] = frame["ratio"].map(lambda r: "" if r is None or pd.isna(r) else f"{r:.3g}x")
            lines.append(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        for name, table in self.tables.items():
            lines += ["", f"-- {name}", table.to_string(float_format=lambda v: f"{v:.4g}")]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_json(self, path: str | os.PathLike) -> None:
        payload = {"name": self.name, "title": self.title, "machine": _machine(), "rows": self.rows,
                   "tables": {k: json.loads(v.to_json(orient="split")) for k, v in self.tables.items()},
                   "notes": self.notes}
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, default=float)
        os.replace(tmp, path)


def _machine() -> str:
    return (f"machine: {platform.machine()}, {os.cpu_count()} cpu, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
