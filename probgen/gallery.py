"""The tour: every family fitted on embedded data, shown on one self-contained HTML page.

Each family's ``tour(out_dir, quick=False)`` fits a small model, draws its picture(s), measures
the figure that shows whether it worked and returns a ``TourSection``; the section carries the
lines of code that produced it (the source of the family's demo function). ``run_tour`` runs
them one after another, printing one line per family, and ``write_page`` writes
``index.html`` with every picture embedded (no network needed to view it).

A section whose measured figure misses the mark the family sets for itself says so
(``verdict="limited"``, with a note): a picture is never titled a success it is not.

Example:
    >>> import tempfile
    >>> s = TourSection("demo", "A demo", figures={"answer": "42"}, code="x = 6 * 7")
    >>> page = write_page([s], tempfile.mkdtemp())
    >>> "A demo" in open(page).read()
    True
"""

from __future__ import annotations

__all__ = ["TourSection", "demo_source", "digit_agreement", "run_tour", "write_page"]

import base64
import functools
import html
import inspect
import os
import textwrap
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable


@dataclass
class TourSection:
    """What one family's tour shows.

    Attributes:
        family: the registry name.
        title: a one-line headline (what was fitted on what).
        pictures: ``(path, caption)`` pairs; each caption says what its picture shows.
        figures: measured figure name -> its value, as text (``{"modes covered": "8 / 8"}``).
        code: the lines that produced the result.
        verdict: ``"works"`` when the measured figures reach the family's own mark,
            ``"limited"`` when the tour's budget cannot show it (then ``note`` says why).
        note: what the reader should know (budget, what a longer run gives).
        text: text output to show verbatim (generated text, a recommendation list).
        seconds: wall time of the tour.
        cpu_seconds: processor time of the tour (what it costs on an idle machine).
    """

    family: str
    title: str
    pictures: list[tuple[str, str]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    code: str = ""
    verdict: str = "works"
    note: str = ""
    text: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def line(self) -> str:
        """One line for the terminal."""
        shown = "; ".join(f"{k} {v}" for k, v in list(self.figures.items())[:3])
        flag = "" if self.verdict == "works" else " [limited]"
        return f"{self.title}: {shown}{flag}"


def demo_source(function: Callable, **budget: object) -> str:
    """The body of a demo function, dedented, without its ``def`` line and final ``return``.

    ``budget`` values (the demo's free variables, such as ``steps``) are written first, as the
    assignments they stand for, so the code shown runs as it reads.

    Example:
        >>> def demo():
        ...     x = steps + 1
        ...     return x
        >>> print(demo_source(demo, steps=3))
        steps = 3
        x = steps + 1
    """
    lines = textwrap.dedent(inspect.getsource(function)).splitlines()
    body = lines[1:]
    while body and (not body[-1].strip() or body[-1].lstrip().startswith("return ")):
        body.pop()
    head = "".join(f"{name} = {value!r}\n" for name, value in budget.items())
    return head + textwrap.dedent("\n".join(body)).strip()


@functools.lru_cache(maxsize=1)
def _digit_reader():
    from sklearn.linear_model import LogisticRegression

    from .datasets import load

    train = load("digits", split="train")
    return LogisticRegression(max_iter=2000).fit(train.flat().numpy(), train.y.numpy())


def digit_agreement(images, labels) -> float:
    """Share of 8x8 digit images that a logistic regression trained on real digits reads as ``labels``.

    The reader scores about 0.96 on real test digits; it is the tours' check that a
    class-conditional model draws the digit it was asked for.
    """
    import numpy as np
    import torch

    x = torch.as_tensor(images).detach().float().cpu().reshape(len(images), -1).numpy()
    return float(np.mean(_digit_reader().predict(x) == np.asarray(torch.as_tensor(labels).cpu())))


def run_tour(out_dir: str, families: Iterable[str] | None = None, quick: bool = False,
             echo: Callable[[str], None] = print) -> list[TourSection]:
    """Run every family's tour (or those named), print one line each, return the sections."""
    from . import models

    os.makedirs(out_dir, exist_ok=True)
    names = list(families) if families is not None else models.available()
    sections = []
    for name in names:
        cls = models.get(name)
        start, cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dependencies' warnings say nothing to a tour reader
            try:
                section = cls.tour(out_dir, quick=quick)
            except Exception as exc:  # report and go on: the page shows every family it can
                section = TourSection(name, f"{cls.__name__}: the tour failed", verdict="failed",
                                      note=f"{type(exc).__name__}: {exc}")
        section.seconds, section.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        sections.append(section)
        echo(f"  {name:<24} {section.seconds:5.1f}s ({section.cpu_seconds:5.1f} CPU-s)  "
             f"{section.line() if section.verdict != 'failed' else section.note}")
    return sections


def _image_tag(path: str, caption: str) -> str:
    with open(path, "rb") as handle:
        data = base64.b64encode(handle.read()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
section{border-top:1px solid #ddd;padding:1em 0}
h2{margin:.2em 0} .family{color:#777;font-size:.8em;font-weight:normal}
.figures{border-collapse:collapse;margin:.5em 0} .figures td{padding:2px 10px;border-bottom:1px solid #eee}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top;max-width:48%}
figure img{max-width:100%;image-rendering:pixelated} figcaption{font-size:.85em;color:#444}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:.85em}
.limited{background:#fff4e5;border-left:4px solid #f0a020;padding:.4em .8em}
.failed{background:#fdecea;border-left:4px solid #d33;padding:.4em .8em}
nav a{margin-right:.8em;font-size:.9em}
"""


def write_page(sections: list[TourSection], out_dir: str, title: str = "probgen tour", quick: bool = False) -> str:
    """Write ``out_dir/index.html`` (pictures embedded) and return its path."""
    os.makedirs(out_dir, exist_ok=True)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             "<p>Every model family of probgen, fitted on data that ships with installed packages, "
             "with the figure that says whether it worked and the code that made it.</p>"]
    if quick:
        parts.append("<p class='limited'>Quick mode: every budget is cut to a fraction, so most pictures "
                     "here are not what the full tour (<code>probgen tour</code>) shows.</p>")
    parts.append("<nav>" + "".join(f"<a href='#{s.family}'>{html.escape(s.family)}</a>" for s in sections) + "</nav>")
    for s in sections:
        parts.append(f"<section id='{s.family}' data-verdict='{s.verdict}'>")
        parts.append(f"<h2>{html.escape(s.title)} <span class='family'>{html.escape(s.family)} · "
                     f"{s.seconds:.1f} s</span></h2>")
        if s.verdict != "works" or s.note:
            css = {"works": "", "limited": "limited", "failed": "failed"}.get(s.verdict, "limited")
            parts.append(f"<p class='{css}'>{html.escape(s.note)}</p>")
        if s.figures:
            parts.append("<table class='figures'>" + "".join(
                f"<tr><td>{html.escape(k)}</td><td><b>{html.escape(v)}</b></td></tr>" for k, v in s.figures.items())
                + "</table>")
        for path, caption in s.pictures:
            parts.append(_image_tag(path, caption))
        if s.text:
            parts.append(f"<pre>{html.escape(s.text)}</pre>")
        if s.code:
            parts.append(f"<details open><summary>code</summary><pre>{html.escape(s.code)}</pre></details>")
        parts.append("</section>")
    parts.append("</body></html>")
    path = os.path.join(out_dir, "index.html")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("\n".join(parts))
    os.replace(tmp, path)
    return path
