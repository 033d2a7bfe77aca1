"""Model cards: how a model was made, how good it is, how private, and what it is not for.

``model_card(model, result, report)`` writes Markdown with the sections of Mitchell et
al. (2019), filled from what probgen knows: the family and its config, the training data
(name and size), the engine and its fit figures (steps, batch size, final loss, wall
time, early stopping), the quality report's figures, the privacy budget spent (or a
plain "not trained privately"), the model's hash, and the intended use and known
limitations (the family's own and the caller's). ``probgen.save(model, path, card=...)``
writes it beside the model file as ``<path without suffix>.card.md``.

Reference: Mitchell et al. 2019, Model cards for model reporting.

Example:
    >>> import torch, probgen
    >>> m = probgen.models.BayesianLinearRegression(num_features=1)
    >>> x = torch.linspace(-1, 1, 20)[:, None]
    >>> r = m.fit((x, 2 * x[:, 0]), steps=5, progress=False, seed=0)
    >>> card = probgen.model_card(m, r, data="line y = 2x", intended_use="a doctest")
    >>> card.splitlines()[0]
    '# Model card: BayesianLinearRegression (linear_regression)'
    >>> "not trained with differential privacy" in card
    True
"""

from __future__ import annotations

__all__ = ["model_card", "card_path", "LIMITATIONS"]

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

#: known limitations by family (added to the card; the caller adds its own)
LIMITATIONS = {
    "vae": "Samples are blurrier than the data (the Gaussian / Bernoulli decoder averages); log_prob is a lower bound.",
    "gan": "No likelihood: quality is judged only by sample metrics; prone to mode collapse (check the report's "
           "recall / coverage); samples can be photorealistic enough to mislead.",
    "conditional_gan": "No likelihood; a class label is not a guarantee that a sample shows that class.",
    "flow": "Exact likelihood, but it rates out-of-distribution data highly at times (a known failure of flows).",
    "pixel_cnn": "Exact likelihood; sampling is sequential and slow.",
    "diffusion": "Samples need many network calls; log_prob is a bound.",
    "autoencoder": "Not a generative model of the data distribution on its own: no likelihood, no sampling prior.",
    "bayesian_network": "Answers follow the graph and the tables as given: a wrong edge gives confident wrong answers.",
}
_GENERAL = ("Generated data can reproduce (memorize) training records; check the memorization rows of the "
            "quality report before releasing samples, or train with privacy=... .",
            "Generated content can be mistaken for real data: keep the provenance stamp "
            "(probgen.write_samples / probgen.provenance) with anything you publish.")


def card_path(model_path: str | os.PathLike) -> Path:
    """Where ``probgen.save`` writes a model's card: ``model.safetensors`` -> ``model.card.md``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.md")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            return str(v)
        return f"{v:.4g}"
    return str(v)


def _data_line(data: Any) -> str:
    if data is None:
        return "not given (pass data='name' or data={'name': ..., 'size': ...})"
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in data.items())
    size = len(getattr(data, "x", data))
    return f"{type(data).__name__} of {size} records"


def model_card(model: Any, result: Any = None, report: Any = None, *, data: Any = None,
               intended_use: str | None = None, limitations: Sequence[str] = (), title: str | None = None) -> str:
    """A Markdown model card for ``model`` (see the module docstring).

    Arguments:
        model: a probgen model.
        result: the ``FitResult`` of its training (engine, fit figures, privacy budget).
        report: a quality report (``probgen.evaluate``) or a dict of figures.
        data: the training data: a name, ``{"name": ..., "size": ...}`` or the data itself.
        intended_use: what the model is for (default: research and demonstration).
        limitations: known limitations beyond the family's and the general ones.
        title: the heading (default: class and family).
    """
    from ..core.base import Model
    from .provenance import model_hash

    if not isinstance(model, Model):
        raise ValueError(f"model: expected a probgen model, got {type(model).__name__}")
    family = model.family or type(model).__name__
    lines = [f"# {title or f'Model card: {type(model).__name__} ({family})'}", ""]
    lines += ["## Model", "", f"- family: `{family}`, class `{type(model).__name__}`",
              f"- log_prob: {model.log_prob_kind or 'none (score only)'}",
              f"- parameters: {sum(p.numel() for p in model.parameters()):,}"]
    lines += [f"- {k}: `{v}`" for k, v in model_hash(model).items()]
    try:
        config = json.dumps(model.get_config(), default=str)
    except (TypeError, ValueError):
        config = "(not JSON)"
    lines += ["", "Config:", "", "```json", config, "```", ""]
    lines += ["## Training", "", f"- data: {_data_line(data)}"]
    privacy = None
    if result is not None:
        info = dict(getattr(result, "info", {}) or {})
        privacy = info.pop("privacy", None)
        lines.append(f"- engine: `{result.engine}` on {result.device}, {result.wall_time:.1f} s")
        for key in ("steps", "batch_size", "stopped_early", "best_val_loss", "best_step"):
            if key in info:
                lines.append(f"- {key.replace('_', ' ')}: {_fmt(info[key])}")
        history = getattr(result, "history", None)
        if history is not None and "loss" in history and len(history):
            lines.append(f"- final loss: {_fmt(float(history['loss'].dropna().iloc[-1]))}")
        diagnostics = getattr(result, "diagnostics", None)
        if isinstance(diagnostics, dict) and diagnostics:
            lines += [f"- diagnostic {k}: {_fmt(v)}" for k, v in diagnostics.items() if not isinstance(v, (list, dict))]
    else:
        lines.append("- fit: not recorded (pass the FitResult as result=...)")
    lines += ["", "## Privacy", ""]
    if privacy and math.isfinite(privacy.get("epsilon", math.inf)):
        lines += [f"- differentially private training (DP-SGD, Opacus): epsilon = {_fmt(privacy['epsilon'])} spent "
                  f"(target {_fmt(privacy['target_epsilon'])}), delta = {_fmt(privacy['delta'])}",
                  f"- noise multiplier {_fmt(privacy['noise_multiplier'])}, per-record clipping norm "
                  f"{_fmt(privacy['max_grad_norm'])}, Poisson sampling rate {_fmt(privacy['sample_rate'])}, "
                  f"{privacy['steps']} steps, {privacy['accountant']} accountant"]
    elif result is not None:
        lines.append("- not trained with differential privacy: samples may reveal training records")
    else:
        lines.append("- unknown (no FitResult given); assume not trained with differential privacy")
    lines += ["", "## Quality", ""]
    rows = _report_rows(report)
    if rows:
        lines += ["| metric | value |", "| --- | --- |"] + [f"| {k} | {_fmt(v)} |" for k, v in rows]
    else:
        lines.append("- no quality report given (probgen.evaluate(model, real, holdout=...))")
    lines += ["", "## Intended use", "", f"- {intended_use or 'research, teaching and demonstration on the data above'}",
              "", "## Known limitations", ""]
    lines += [f"- {x}" for x in (*limitations, *([LIMITATIONS[family]] if family in LIMITATIONS else []), *_GENERAL)]
    return "\n".join(lines) + "\n"


def _report_rows(report: Any) -> list[tuple[str, Any]]:
    if report is None:
        return []
    if isinstance(report, dict):
        return [(k, v) for k, v in report.items() if isinstance(v, (int, float))]
    values = getattr(report, "values", None)
    if isinstance(values, dict):
        return [(k, v) for k, v in values.items() if isinstance(v, (int, float))]
    frame = getattr(report, "table", None)
    if frame is not None and "value" in getattr(frame, "columns", ()):
        return [(str(i), float(v)) for i, v in frame["value"].items()]
    return []
