"""``probgen.evaluate``: one quality report of generated data against real data.

The report puts fidelity, diversity, distances, mode collapse, memorization and
bias side by side in one pandas table (``report.table``), with plots
(``report.plot()``) and exports (``to_markdown()``, ``to_html()``).
``compare({"name": report, ...})`` lines several reports up column by column.
"""

from __future__ import annotations

__all__ = ["evaluate", "Report", "compare", "METRICS"]

import base64
import io
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.checks import check_positive, unknown_key
from ..core.progress import progress_bar
from ._common import as_samples, embed_sets, subsample

#: metric groups ``evaluate`` knows, in the order they run
METRICS = ("fidelity", "alpha_beta", "frechet", "mmd", "detection", "marginals", "modes", "memorization",
           "log_prob_gap", "attribute")

# metric row -> (group, ideal value, a short reading)
_ROWS = {
    "precision": ("fidelity", 1.0, "share of generated samples inside the real k-NN support"),
    "density": ("fidelity", 1.0, "mean real k-NN balls per generated sample / k"),
    "alpha_precision": ("fidelity", 1.0, "α-precision, integrated (1 = ideal)"),
    "recall": ("diversity", 1.0, "share of real samples inside the generated k-NN support"),
    "coverage": ("diversity", 1.0, "share of real samples with a generated sample in their ball"),
    "beta_recall": ("diversity", 1.0, "β-recall, integrated (1 = ideal)"),
    "frechet": ("distance", 0.0, "Fréchet distance in the feature space"),
    "mmd2": ("distance", 0.0, "squared MMD, RBF kernel"),
    "mmd_p_value": ("distance", None, "permutation p-value of MMD = 0 (small: distributions differ)"),
    "detection_auc": ("distance", 0.5, "classifier two-sample AUC (0.5: indistinguishable)"),
    "marginal_wasserstein": ("table", 0.0, "mean per-column Wasserstein-1 / real std"),
    "marginal_ks_max": ("table", 0.0, "largest per-column Kolmogorov-Smirnov statistic"),
    "correlation_diff_max": ("table", 0.0, "largest |corr(fake) - corr(real)| over column pairs"),
    "modes": ("mode collapse", None, "modes with at least one high-quality sample"),
    "high_quality": ("mode collapse", 1.0, "share of samples within 3 sigma of a mode"),
    "reverse_kl": ("mode collapse", 0.0, "KL(generated mode frequencies || uniform)"),
    "authenticity": ("memorization", None, "share of generated samples not closer to a real record than its neighbour"),
    "dcr_ratio": ("memorization", 1.0, "median distance to closest train / holdout record"),
    "closer_to_train": ("memorization", 0.5, "share of generated samples closer to train than holdout"),
    "exact_copies": ("memorization", 0.0, "share of generated samples that copy a training record"),
    "nndr_median": ("memorization", None, "closest / second-closest training distance (holdout reference in note)"),
    "mia_auc_distance": ("memorization", 0.5, "membership-inference AUC, distance attack"),
    "log_prob_gap": ("memorization", 0.0, "mean log_prob train - holdout"),
    "mia_auc_log_prob": ("memorization", 0.5, "membership-inference AUC, likelihood attack"),
    "attribute_tv": ("bias", 0.0, "total variation between attribute distributions"),
    "attribute_max_gap": ("bias", 0.0, "largest gap in one attribute value's share"),
}

# when a value is far enough from ideal to flag: (metric, test)
_WARN = {
    "precision": lambda v: v < 0.5, "recall": lambda v: v < 0.5, "coverage": lambda v: v < 0.5,
    "density": lambda v: v < 0.5, "detection_auc": lambda v: v > 0.9, "high_quality": lambda v: v < 0.5,
    "closer_to_train": lambda v: v > 0.65, "exact_copies": lambda v: v > 0.01, "mia_auc_distance": lambda v: v > 0.65,
    "mia_auc_log_prob": lambda v: v > 0.65, "dcr_ratio": lambda v: v < 0.7, "attribute_tv": lambda v: v > 0.2,
    "authenticity": lambda v: v < 0.3, "mmd_p_value": lambda v: v < 0.01, "beta_recall": lambda v: v < 0.5,
    "alpha_precision": lambda v: v < 0.5,
}


@dataclass
class Report:
    """A quality report: ``table`` (one row per metric: group, value, ideal, flag,
    meaning), ``details`` (curves and per-column tables), ``timings`` (seconds per
    metric group) and the samples it saw, for ``plot()``."""

    name: str
    table: pd.DataFrame
    details: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    _views: dict = field(default_factory=dict, repr=False)

    def __getitem__(self, metric: str) -> float:
        if metric not in self.table.index:
            raise unknown_key("metric", metric, self.table.index)
        return float(self.table.loc[metric, "value"])

    def __repr__(self) -> str:
        return f"Report({self.name!r}, {len(self.table)} metrics)\n" + self.table[["group", "value", "ideal", "flag"]].to_string(
            float_format=lambda v: f"{v:.4g}")

    # ----------------------------------------------------------------- export
    def to_markdown(self, digits: int = 4) -> str:
        """The table as GitHub Markdown (no extra dependency)."""
        head = f"### Quality report: {self.name}\n\n" + ", ".join(f"{k}: {v}" for k, v in self.info.items()) + "\n\n"
        cols = ["group", "value", "ideal", "flag", "meaning"]
        lines = ["| metric | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for metric, row in self.table.iterrows():
            cells = [_fmt(row[c], digits) for c in cols]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        return head + "\n".join(lines) + "\n"

    def to_html(self, plots: bool = True) -> str:
        """A standalone HTML fragment: the table and, with ``plots``, the figure as an embedded PNG."""
        html = f"<h3>Quality report: {self.name}</h3>\n" + self.table.to_html(float_format=lambda v: f"{v:.4g}",
                                                                             na_rep="")
        if plots:
            import matplotlib.pyplot as plt

            fig = self.plot()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=70, bbox_inches="tight")
            plt.close(fig)
            html += f'\n<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'
        return html

    def _repr_html_(self) -> str:
        return self.to_html(plots=False)

    # ------------------------------------------------------------------ plots
    def plot(self, axes: Sequence[Any] | None = None):
        """Real vs generated (PCA scatter or image grid), α/β curves, DCR histograms, attribute shares."""
        import matplotlib.pyplot as plt

        panels = ["samples"] + [p for p in ("alpha_beta", "memorization", "attribute") if p in self.details]
        if axes is None:
            fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0))
            axes = np.atleast_1d(axes)
        else:
            fig = axes[0].figure
        for ax, panel in zip(axes, panels):
            getattr(self, f"_plot_{panel}")(ax)
        fig.suptitle(self.name, fontsize=10)
        fig.tight_layout()
        return fig

    def _plot_samples(self, ax) -> None:
        images = self._views.get("images")
        if images is not None:
            from ..plot import sample_grid

            sample_grid(images[:36], nrow=6, ax=ax, title="generated")
            return
        r, f = self._views["real2d"], self._views["fake2d"]
        ax.scatter(r[:, 0], r[:, 1], s=2, alpha=0.4, label="real")
        ax.scatter(f[:, 0], f[:, 1], s=2, alpha=0.4, label="generated")
        ax.set_title("real vs generated" + (" (PCA)" if self._views.get("pca") else ""), fontsize=9)
        ax.legend(fontsize=7, markerscale=4)

    def _plot_alpha_beta(self, ax) -> None:
        c = self.details["alpha_beta"]
        ax.plot(c["alpha"], c["alpha_precision"], label="α-precision")
        ax.plot(c["alpha"], c["beta_recall"], label="β-recall")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("α, β", fontsize=8)
        ax.set_title("α-precision / β-recall", fontsize=9)
        ax.legend(fontsize=7)

    def _plot_memorization(self, ax) -> None:
        d = self.details["memorization"]
        hi = float(np.quantile(np.r_[d["dcr_train"], d["dcr_holdout"]], 0.99)) or 1.0
        bins = np.linspace(0, hi, 30)
        ax.hist(d["dcr_train"], bins=bins, alpha=0.5, label="to train")
        ax.hist(d["dcr_holdout"], bins=bins, alpha=0.5, label="to holdout")
        ax.set_title("distance to closest record", fontsize=9)
        ax.legend(fontsize=7)

    def _plot_attribute(self, ax) -> None:
        t = self.details["attribute"]
        pos = np.arange(len(t))
        ax.bar(pos - 0.2, t["real"], 0.4, label="real")
        ax.bar(pos + 0.2, t["fake"], 0.4, label="generated")
        ax.set_xticks(pos, [str(i) for i in t.index], fontsize=6, rotation=90 if len(t) > 12 else 0)
        ax.set_title(f"attribute: {self.info.get('attribute', '')}", fontsize=9)
        ax.legend(fontsize=7)


def _fmt(v: Any, digits: int) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}"
    return str(v)


def compare(reports: dict) -> pd.DataFrame:
    """Several reports side by side: one row per metric, one column per report, plus ``ideal``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> real = torch.randn(300, 2, generator=g)
        >>> good = evaluate(torch.randn(300, 2, generator=g), real, metrics=["fidelity"], progress=False)
        >>> bad = evaluate(torch.zeros(300, 2), real, metrics=["fidelity"], progress=False)
        >>> compare({"good": good, "collapsed": bad}).loc["recall", ["good", "collapsed", "ideal"]].astype(float).round(1).tolist()
        [1.0, 0.0, 1.0]
    """
    if not reports:
        raise ValueError("reports: expected a non-empty dict of name -> Report")
    cols = {name: r.table["value"] for name, r in reports.items()}
    frame = pd.DataFrame(cols)
    ideal = pd.concat([r.table["ideal"] for r in reports.values()])
    frame["ideal"] = ideal[~ideal.index.duplicated()].reindex(frame.index)
    group = pd.concat([r.table["group"] for r in reports.values()])
    frame.insert(0, "group", group[~group.index.duplicated()].reindex(frame.index))
    return frame


def _unwrap(data: Any) -> Any:
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (int, float)):
        return data[0]
    if hasattr(data, "x") and hasattr(data, "y") and isinstance(getattr(data, "x"), torch.Tensor):
        return data.x
    return data


def _applicable(name: str, real_t: torch.Tensor, is_table: bool, model: Any, holdout: Any, modes: Any,
                attribute: Any) -> str | None:
    """Why metric group ``name`` cannot run here (None when it can)."""
    if name == "marginals" and not is_table:
        return "needs a table (n, columns); images and feature vectors use frechet / mmd"
    if name == "modes" and modes is None:
        return "needs modes='ring8' | 'grid25' or modes=(means, sigma)"
    if name == "memorization" and holdout is None:
        return "needs holdout= (real data the model did not see)"
    if name == "log_prob_gap":
        if holdout is None:
            return "needs holdout="
        if model is None or not hasattr(model, "log_prob") or getattr(model, "log_prob_kind", "exact") is None:
            return "needs a model with log_prob"
    if name == "attribute" and attribute is None:
        return "needs attribute= (a column, 'label' for digit images, or a callable)"
    return None


def evaluate(model_or_samples: Any, real: Any, holdout: Any = None, metrics: Sequence[str] | None = None, *,
             n: int | None = None, seed: int = 0, features: Any = None, k: int = 5, attribute: Any = None,
             modes: Any = None, permutations: int = 200, max_samples: int = 10_000, name: str | None = None,
             progress: bool = True) -> Report:
    """Quality report of a model (or of generated samples) against real data.

    Arguments:
        model_or_samples: a probgen Model (anything with ``sample(n, seed=)``; its
            ``log_prob`` feeds the train-holdout gap) or the generated samples.
        real: the real data the model was trained on (tensor, array, DataFrame or
            probgen ``Dataset``); fidelity and diversity are measured against it.
        holdout: real data the model did not see: enables the memorization metrics.
        metrics: groups to run, from ``METRICS``; default every one that applies
            (asking for one that cannot run raises ``ValueError`` saying why).
        n: samples to draw from a model (default ``min(len(real), max_samples)``).
        features: the feature space (see ``frechet_distance``): ``None`` = digit-CNN
            features for images, standardized columns for tables.
        k: neighbours for precision / recall / density / coverage.
        attribute: for the bias rows: a column, ``"label"`` (digit images) or a callable.
            Images default to ``"label"``.
        modes: ``"ring8"`` / ``"grid25"`` or ``(means, sigma)`` for the mode-collapse rows;
            taken from a ``ring8`` / ``grid25`` Dataset automatically.
        max_samples: rows per side for the neighbour-based metrics.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> train, holdout = torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g)
        >>> copier = evaluate(train[:300], train, holdout, progress=False)
        >>> copier["exact_copies"], copier["closer_to_train"]
        (1.0, 1.0)
    """
    check_positive("max_samples", max_samples, integer=True)
    check_positive("k", k, integer=True)
    check_positive("permutations", permutations, integer=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32 - 2:
        raise ValueError(f"seed: expected an integer in [0, 2**32 - 2), got {seed!r}")
    if metrics is None:
        wanted, explicit = list(METRICS), False
    elif isinstance(metrics, str) or not isinstance(metrics, (list, tuple)) or not all(
            isinstance(m, str) for m in metrics):
        raise ValueError(f"metrics: expected a list of metric group names from {list(METRICS)}, got {metrics!r}")
    else:
        wanted, explicit = list(metrics), True
        for m in wanted:
            if m not in METRICS:
                raise unknown_key("metric", m, METRICS)
    model = model_or_samples if hasattr(model_or_samples, "sample") and not isinstance(
        model_or_samples, (torch.Tensor, np.ndarray, pd.DataFrame)) else None
    if modes is None and getattr(real, "name", None) in ("ring8", "grid25") and hasattr(real, "meta"):
        modes = real.name
    real_raw = _unwrap(real)
    real_t = as_samples(real_raw, "evaluate", "real")
    if attribute is None and real_t.dim() >= 3 and features is None:
        attribute = "label"  # digit images: the cached classifier's predicted class
    if model is not None:
        n = n or min(len(real_t), max_samples)
        check_positive("n", n, integer=True)
        fake_raw = _unwrap(model.sample(int(n), seed=seed))
    else:
        fake_raw = _unwrap(model_or_samples)
    holdout_raw = _unwrap(holdout) if holdout is not None else None
    is_table = real_t.dim() == 2

    run = []
    for m in wanted:
        why = _applicable(m, real_t, is_table, model, holdout_raw, modes, attribute)
        if why is None:
            run.append(m)
        elif explicit:
            raise ValueError(f"evaluate: metric {m!r} {why}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sets = [real_raw, fake_raw] + ([holdout_raw] if holdout_raw is not None else [])
    names = ["real", "generated"] + (["holdout"] if holdout_raw is not None else [])
    label = "evaluate (precision_recall with k={})".format(k) if "fidelity" in run else "evaluate"
    embedded = embed_sets(sets, names, label, features, minimum=k + 1 if "fidelity" in run else 2)
    timings["features"] = time.perf_counter() - t0
    r_emb, f_emb = subsample(embedded[0], max_samples, seed), subsample(embedded[1], max_samples, seed + 1)
    h_emb = subsample(embedded[2], max_samples, seed + 2) if holdout_raw is not None else None

    values: dict[str, float] = {}
    shared: dict = {}  # neighbour searches shared by the fidelity metrics
    notes: dict[str, str] = {}
    details: dict[str, Any] = {}
    from . import bias, distances, fidelity, memorization

    for m in progress_bar(run, enabled=progress, desc="evaluate"):
        start = time.perf_counter()
        if m == "fidelity":
            values.update(fidelity.precision_recall(r_emb, f_emb, k=k, features="raw", max_samples=None,
                                                    _cache=shared))
        elif m == "alpha_beta":
            ab = fidelity.alpha_precision_beta_recall(r_emb, f_emb, features="raw", max_samples=None,
                                                      _cache=shared)
            values.update(alpha_precision=ab["alpha_precision"], beta_recall=ab["beta_recall"],
                          authenticity=ab["authenticity"])
            details["alpha_beta"] = ab["curve"]
        elif m == "frechet":
            values["frechet"] = distances._frechet(r_emb, f_emb)
        elif m == "mmd":
            res = distances.mmd(r_emb, f_emb, features="raw", permutations=permutations, seed=seed)
            values.update(mmd2=res["mmd2"], mmd_p_value=res["p_value"])
        elif m == "detection":
            values["detection_auc"] = distances.detection_auc(r_emb, f_emb, features="raw", seed=seed)["auc"]
        elif m == "marginals":
            cols = list(real_raw.columns) if isinstance(real_raw, pd.DataFrame) else None
            md = distances.marginal_distances(real_raw, fake_raw, columns=cols)
            details["marginals"] = md
            values["marginal_wasserstein"] = float(md["wasserstein"].mean())
            values["marginal_ks_max"] = float(md["ks"].max())
            if (md["kind"] == "numeric").sum() >= 2:
                cd = distances.correlation_difference(real_raw, fake_raw, columns=cols)
                details["correlation"] = cd["matrix"]
                values["correlation_diff_max"] = cd["max_abs"]
        elif m == "modes":
            from .modes import modes_covered

            kw = {"dataset": modes} if isinstance(modes, str) else {"means": modes[0], "sigma": modes[1]}
            mc = modes_covered(as_samples(fake_raw, "modes", "generated"), **kw)
            values.update(modes=mc["modes"], high_quality=mc["high_quality"], reverse_kl=mc["reverse_kl"])
            notes["modes"] = f"of {mc['num_modes']}"
            details["modes"] = mc["counts"]
        elif m == "memorization":
            core = memorization.memorization_core(f_emb, r_emb, h_emb, seed=seed)
            mem = memorization.summarize(core)
            values.update(dcr_ratio=mem["dcr_ratio"], closer_to_train=mem["closer_to_train"],
                          exact_copies=mem["exact_copies"], nndr_median=mem["nndr_median"],
                          mia_auc_distance=mem["auc_distance"])
            notes["nndr_median"] = f"holdout reference {mem['nndr_holdout_median']:.3g}"
            details["memorization"] = {"dcr_train": core["dcr_train"], "dcr_holdout": core["dcr_holdout"]}
        elif m == "log_prob_gap":
            gap = memorization.log_prob_gap(model, real_raw, holdout_raw, seed=seed)
            values["log_prob_gap"] = gap["gap"]
            notes["log_prob_gap"] = f"{gap['kind']}: train {gap['train']:.4g}, holdout {gap['holdout']:.4g}"
            values["mia_auc_log_prob"] = memorization._auc(gap["_train_values"], gap["_holdout_values"])
        elif m == "attribute":
            ag = bias.attribute_gap(fake_raw, real_raw, attribute)
            values.update(attribute_tv=ag["total_variation"], attribute_max_gap=ag["max_gap"])
            notes["attribute_max_gap"] = f"at {ag['worst']!r}"
            details["attribute"] = ag["table"]
        timings[m] = time.perf_counter() - start

    rows = []
    for metric, value in values.items():
        group, ideal, meaning = _ROWS[metric]
        flag = "!" if metric in _WARN and np.isfinite(value) and _WARN[metric](value) else ""
        rows.append({"metric": metric, "group": group, "value": float(value), "ideal": ideal, "flag": flag,
                     "meaning": meaning + (f" ({notes[metric]})" if metric in notes else "")})
    table = pd.DataFrame(rows, columns=["metric", "group", "value", "ideal", "flag", "meaning"]).set_index("metric")
    views = _views(real_raw, fake_raw, r_emb, f_emb, seed)
    info = {"real": len(real_t), "generated": len(as_samples(fake_raw, "evaluate", "generated")),
            "holdout": None if holdout_raw is None else len(as_samples(holdout_raw, "evaluate", "holdout")),
            "features": "digit-CNN (64-d)" if real_t.dim() >= 3 and features is None else
            ("standardized columns" if features is None else str(getattr(features, "__name__", features)))}
    if attribute is not None and "attribute" in run:
        info["attribute"] = attribute if isinstance(attribute, (str, int)) else getattr(attribute, "__name__", "callable")
    info = {k: v for k, v in info.items() if v is not None}
    return Report(name or (type(model).__name__ if model is not None else "samples"), table, details, timings,
                  info, views)


def _views(real_raw: Any, fake_raw: Any, r_emb: torch.Tensor, f_emb: torch.Tensor, seed: int) -> dict:
    """What plot() draws: an image grid, or a 2-D view (the data itself, or a PCA of the features)."""
    f = as_samples(fake_raw, "evaluate", "generated")
    if f.dim() >= 3:
        return {"images": f[:36].float().reshape(-1, *f.shape[-3:]) if f.dim() == 4 else f[:36, None].float()}
    r2, f2 = subsample(r_emb, 2000, seed), subsample(f_emb, 2000, seed + 1)
    if r2.shape[1] == 2:
        return {"real2d": r2.numpy(), "fake2d": f2.numpy(), "pca": False}
    mu = r2.mean(0)
    _, _, v = torch.linalg.svd(r2 - mu, full_matrices=False)
    proj = v[:2].T
    return {"real2d": ((r2 - mu) @ proj).numpy(), "fake2d": ((f2 - mu) @ proj).numpy(), "pca": True}
