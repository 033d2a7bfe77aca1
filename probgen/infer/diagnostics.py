"""Fit diagnostics: may a fit be trusted? The checks behind ``FitResult.diagnostics()`` and ``FitWarning``.

Each check gives one row (``check``, ``value``, ``threshold``, ``ok``, ``what_to_do``). A fit that fails
a check emits one ``probgen.FitWarning`` when ``fit`` returns (silence it with
``warnings.simplefilter("ignore", probgen.FitWarning)``). The rules:

* **loss levelled off** (``svi``, ``mle``; shown for ``adversarial`` but not judged, see below): over
  the last 40% of the history
  (at least ``MIN_WINDOW`` rows, else the check is not judged), a robust line (Theil–Sen)
  through the loss gives its drift across the window. The fit has not levelled off when
  ``|drift|`` exceeds both 3 standard errors of the drift (the noise is the MAD of the
  residuals about the line; the standard error of a fitted line's rise over ``n`` evenly spaced
  points is ``noise * sqrt(12 / n)``) and 2% of how far the loss has come (the median of the
  first 5% of the rows minus the median of the window): a change that is real and that matters.
  Calibration (``BayesianLinearRegression``, 80 points, 8 seeds): 500 steps at the default lr
  (slope 0.39 of 1.5) gives 1.7-3.1 times the tolerance, every converged fit (200-1,000 steps at
  lr 0.01-0.05) at most 0.96 times.
* **non-finite loss**: the training loop stops with ``NonFiniteLossError`` naming the step and
  keeps the last state whose parameters were all finite (see ``NonFiniteGuard``).
* **MCMC** (through ArviZ): split R-hat ≤ 1.01 and bulk / tail ESS ≥ 400 for every scalar of every
  site (Vehtari et al. 2021), no divergent transitions, no draws at NUTS' maximum tree depth.
* **AIS** (RBM partition function): the standard error of log Ẑ over chains ≤ 0.1 nats.
* **adversarial**: the critic's loss is not pinned at its optimum (median over the last quarter
  at least 5% of its value when the critic cannot tell real from fake: a critic that separates
  perfectly gives the generator no useful gradient), and generated samples are not collapsed
  (their mean pairwise distance at least 10% of the data's; per class for a conditional GAN).
  The generator's loss trend is shown but does not warn: a GAN's losses are the two sides of a
  game, not a minimised objective, and they keep drifting in healthy fits (6-Gaussian hexagon,
  1,000 steps, seed 0: the plain GAN's generator loss drifts 1.4 times the tolerance above, probgen's best
  GAN with R1 4.6-10 times over seeds 0-1).

References:
    Vehtari, Gelman, Simpson, Carpenter, Bürkner. Rank-normalization, folding, and localization:
    an improved R-hat for assessing convergence of MCMC. Bayesian Analysis 2021.
    Sen. Estimates of the regression coefficient based on Kendall's tau. JASA 1968.
"""

from __future__ import annotations

__all__ = ["FitWarning", "NonFiniteLossError", "NonFiniteGuard", "diagnose", "warn_if_untrusted", "loss_trend",
           "mcmc_checks", "ais_check", "warn_ais", "critic_collapse", "sample_spread", "DepthRecordingNUTS", "THRESHOLDS",
           "COLUMNS"]

import math
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from pyro.infer import NUTS

#: the columns of ``FitResult.diagnostics()``
COLUMNS = ["check", "value", "threshold", "ok", "what_to_do"]
#: the thresholds of the checks (see the module docstring)
THRESHOLDS = {"window": 0.4, "trend_se": 3.0, "trend_progress": 0.02, "r_hat": 1.01, "ess": 400.0,
              "ais_se": 0.1, "critic_floor": 0.05, "sample_spread": 0.1}
#: fewest history rows in the trend window for the loss check to be judged
MIN_WINDOW = 10
_TREND_ENGINES = ("svi", "mle", "adversarial")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FitWarning(UserWarning):
    """A fit finished but should not be trusted as it is (see ``FitResult.diagnostics()``).

    Example:
        >>> import warnings, probgen
        >>> issubclass(probgen.FitWarning, UserWarning)
        True
    """


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite during ``fit``.

    Attributes:
        step: the step at which it happened.
        good_step: the step whose state the model keeps (-1: the state before training).
        result: a ``FitResult`` with the history up to the failure.
    """

    def __init__(self, message: str, step: int, good_step: int, result: Any = None):
        super().__init__(message)
        self.step, self.good_step, self.result = step, good_step, result


def _row(check: str, value: float, threshold: float, ok: bool | None, what_to_do: str) -> dict:
    return {"check": check, "value": float(value), "threshold": float(threshold), "ok": ok,
            "what_to_do": "" if ok or ok is None else what_to_do}


# ------------------------------------------------------------------------------ loss trend
def loss_trend(loss: Any, steps: Any = None, window: float = THRESHOLDS["window"]) -> dict:
    """Has a loss history levelled off? The rule of the module docstring.

    Returns ``drift`` (fall of the robust trend line across the last ``window`` of the rows, in
    loss units; positive = still falling), ``tolerance`` (the larger of 3 standard errors of the
    drift and 2% of the loss's progress since the start), ``noise`` (robust standard deviation about the line),
    ``points`` and ``ok`` (``None`` when there are fewer than ``MIN_WINDOW`` points to judge).

    Example:
        >>> import numpy as np
        >>> t = np.arange(400)
        >>> loss_trend(np.exp(-t / 20) + 0.01 * np.random.default_rng(0).normal(size=400))["ok"]
        True
        >>> loss_trend(np.exp(-t / 400))["ok"]
        False
    """
    from scipy.stats import theilslopes

    y = np.asarray(loss, dtype=float)
    t = np.arange(len(y), dtype=float) if steps is None else np.asarray(steps, dtype=float)
    keep = np.isfinite(y)
    y, t = y[keep], t[keep]
    k = int(math.ceil(len(y) * window))
    out = {"drift": math.nan, "tolerance": math.nan, "noise": math.nan, "points": k, "ok": None}
    if k < MIN_WINDOW:
        return out
    yw, tw = y[-k:], t[-k:]
    # Theil-Sen is O(k^2) in memory: an even subsample of at most 600 points gives the slope
    pick = np.unique(np.linspace(0, k - 1, min(k, 600)).round().astype(int))
    slope, intercept, _, _ = theilslopes(yw[pick], tw[pick])
    resid = yw - (intercept + slope * tw)
    noise = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    drift = -float(slope) * float(tw[-1] - tw[0])
    progress = abs(float(np.median(y[:max(1, len(y) // 20)])) - float(np.median(yw)))
    tol = max(THRESHOLDS["trend_se"] * noise * math.sqrt(12.0 / k), THRESHOLDS["trend_progress"] * progress)
    out.update(drift=drift, tolerance=tol, noise=noise, ok=bool(abs(drift) <= tol))
    return out


def _trend_row(history: pd.DataFrame, column: str, what: str, judged: bool = True) -> dict | None:
    if column not in history or history[column].notna().sum() == 0:
        return None
    steps = history["step"] if "step" in history else None
    trend = loss_trend(history[column], steps)
    if trend["ok"] is None:
        return _row(f"{what} levelled off (too short to judge)", math.nan, math.nan, None, "")
    window = f"{100 * THRESHOLDS['window']:.0f}%"
    if not judged:
        return _row(f"{what} drift over last {window} (shown, not judged: a game, not a minimisation)",
                    trend["drift"], trend["tolerance"], None, "")
    direction = "still falling" if trend["drift"] > 0 else "rising"
    return _row(f"{what} levelled off (drift over last {window})", trend["drift"], trend["tolerance"], trend["ok"],
                f"the {what} is {direction}: train longer (more steps) or with a larger lr; a rising loss needs a "
                "smaller lr")


# ------------------------------------------------------------------------------ MCMC
def mcmc_checks(idata: Any) -> list[dict]:
    """R-hat, bulk and tail ESS (worst over all sites and scalars), divergences and maximum-tree-depth
    hits of an ``arviz.InferenceData``; R-hat is judged only with two or more chains."""
    import arviz as az

    rows: list[dict] = []
    post = idata.posterior
    chains, draws = int(post.sizes.get("chain", 1)), int(post.sizes.get("draw", 0))

    def worst(ds, fn):
        # NaN (a scalar that never moved in some chain) counts as the worst value: the check fails
        values = [np.asarray(ds[v].values, dtype=float).ravel() for v in ds.data_vars]
        values = np.concatenate(values) if values else np.array([])
        return math.nan if not len(values) or np.isnan(values).any() else float(fn(values))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's own "shape validation" chatter on short chains
        if chains >= 2 and draws >= 4:
            r_hat = worst(az.rhat(idata), np.max)
            rows.append(_row("MCMC R-hat (max)", r_hat, THRESHOLDS["r_hat"], bool(r_hat <= THRESHOLDS["r_hat"]),
                             "chains disagree (NaN: a chain never moved): run more warmup_steps / num_samples, "
                             "or reparameterise"))
        if draws >= 4:
            for method in ("bulk", "tail"):
                ess = worst(az.ess(idata, method=method), np.min)
                rows.append(_row(f"MCMC {method} ESS (min)", ess, THRESHOLDS["ess"], bool(ess >= THRESHOLDS["ess"]),
                                 "too few effective draws: raise num_samples or num_chains"))
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        n = int(np.asarray(stats["diverging"].values).sum())
        rows.append(_row("MCMC divergences", n, 0, n == 0,
                         "the sampler hit regions of high curvature: raise target_accept (e.g. 0.95) or "
                         "reparameterise (non-centred)"))
    if stats is not None and "reached_max_treedepth" in stats:
        n = int(np.asarray(stats["reached_max_treedepth"].values).sum())
        rows.append(_row("MCMC draws at max tree depth", n, 0, n == 0,
                         "NUTS stopped doubling early: raise max_tree_depth, or rescale the parameters"))
    return rows


class DepthRecordingNUTS(NUTS):
    """Pyro's NUTS that also records, per draw after warm-up, whether the trajectory reached
    ``max_tree_depth`` (Pyro keeps no such statistic; the draws are unchanged).

    A doubling at depth ``max_tree_depth - 1`` can only be the last one the sampler allows, and the
    recursive subtree builds always have a smaller depth, so a ``_build_tree`` call at that depth
    means the draw hit the limit.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_depth_hits: list[bool] = []
        self._hit = False

    def _build_tree(self, z, r, z_grads, log_slice, direction, tree_depth, energy_current):
        if tree_depth == self._max_tree_depth - 1:
            self._hit = True
        return super()._build_tree(z, r, z_grads, log_slice, direction, tree_depth, energy_current)

    def sample(self, params):
        self._hit = False
        out = super().sample(params)
        if self._t > self._warmup_steps:
            self.max_depth_hits.append(self._hit)
        return out


# ------------------------------------------------------------------------------ AIS
def ais_check(se: float, num_chains: int) -> dict:
    """The AIS row: the standard error of log Ẑ (nats) against ``THRESHOLDS["ais_se"]``."""
    ok = None if not math.isfinite(se) else bool(se <= THRESHOLDS["ais_se"])
    return _row(f"AIS log Z standard error ({num_chains} chains)", se, THRESHOLDS["ais_se"], ok,
                "the importance weights are dominated by a few chains: raise num_betas (more temperatures) and "
                "num_chains")


def warn_ais(se: float, num_chains: int) -> None:
    """Emit a ``FitWarning`` when an AIS estimate's standard error is large."""
    row = ais_check(se, num_chains)
    if row["ok"] is False:
        _warn(f"AIS estimate of log Z is unreliable: standard error {se:.3g} nats over {num_chains} chains "
              f"(threshold {THRESHOLDS['ais_se']}); {row['what_to_do']}")


# ------------------------------------------------------------------------------ adversarial
def critic_collapse(critic_loss: Any, equilibrium: float, window: float = 0.25) -> dict:
    """Is the critic's loss pinned at its optimum (0) over the last ``window`` of training?

    ``value`` is the median critic loss over the window divided by ``equilibrium``, its value when
    the critic cannot tell real from fake (2 for the hinge loss, 2 log 2 for the logistic one).

    Example:
        >>> critic_collapse([1.4] * 50 + [0.0] * 50, 2 * math.log(2))["ok"]
        False
    """
    y = np.asarray(critic_loss, dtype=float)
    y = y[np.isfinite(y)]
    k = int(math.ceil(len(y) * window))
    if k < MIN_WINDOW:
        return _row("critic not collapsed (too short to judge)", math.nan, THRESHOLDS["critic_floor"], None, "")
    value = float(np.median(y[-k:])) / equilibrium
    return _row("critic loss / its no-skill value (median, last 25%)", value, THRESHOLDS["critic_floor"],
                bool(value >= THRESHOLDS["critic_floor"]),
                "the critic separates real from fake perfectly and gives the generator no gradient: add an R1 "
                "penalty (r1_weight), lower critic_lr, or drop critic capacity (e.g. fourier=0)")


def sample_spread(real: torch.Tensor, fake: torch.Tensor, groups: torch.Tensor | None = None,
                  max_points: int = 512) -> float:
    """Mean pairwise distance of ``fake`` over that of ``real`` (flattened examples, at most
    ``max_points`` each): about 1 for a healthy generator, near 0 for collapsed samples. With
    ``groups`` (a label per row of both), the smallest ratio over the groups of two or more rows:
    a conditional generator that collapses within one class is caught too.

    Example:
        >>> x = torch.randn(200, 2)
        >>> round(sample_spread(x, x), 2), sample_spread(x, torch.zeros(200, 2)) < 0.01
        (1.0, True)
    """
    if groups is not None:
        ratios = [sample_spread(real[groups == g], fake[groups == g], None, max_points)
                  for g in torch.unique(groups) if int((groups == g).sum()) > 1]
        ratios = [r for r in ratios if math.isfinite(r)]
        return min(ratios) if ratios else math.nan
    real = real[:max_points].reshape(min(len(real), max_points), -1).float()
    fake = fake[:max_points].reshape(min(len(fake), max_points), -1).float()
    d_real = torch.pdist(real).mean() if len(real) > 1 else torch.tensor(0.0)
    d_fake = torch.pdist(fake).mean() if len(fake) > 1 else torch.tensor(0.0)
    return float(d_fake / d_real) if float(d_real) > 0 else math.nan


def _spread_row(value: float) -> dict:
    ok = None if not math.isfinite(value) else bool(value >= THRESHOLDS["sample_spread"])
    return _row("sample spread / data spread", value, THRESHOLDS["sample_spread"], ok,
                "generated samples have collapsed to a few points: add an R1 penalty (r1_weight), packing "
                "(pack=4), the minibatch distance (minibatch_distance=True) or a smaller lr, and refit")


# ------------------------------------------------------------------------------ all checks
def diagnose(result: Any) -> pd.DataFrame:
    """All checks that apply to a ``FitResult``, one row each (``COLUMNS``).

    Example:
        >>> import torch, probgen
        >>> from probgen.infer.diagnostics import diagnose
        >>> x = torch.linspace(-1, 1, 50)[:, None]
        >>> m = probgen.models.BayesianLinearRegression(num_features=1)
        >>> r = m.fit((x, 3 * x[:, 0]), steps=300, lr=0.05, progress=False, seed=0)
        >>> list(diagnose(r).columns)
        ['check', 'value', 'threshold', 'ok', 'what_to_do']
    """
    rows: list[dict] = []
    history = result.history if isinstance(result.history, pd.DataFrame) else pd.DataFrame()
    if result.engine in _TREND_ENGINES:
        adversarial = result.engine == "adversarial"
        row = _trend_row(history, "loss", "generator loss" if adversarial else "loss", judged=not adversarial)
        if row is not None:
            rows.append(row)
    if result.engine == "adversarial":
        eq = getattr(result.model, "critic_equilibrium_loss", None)
        if eq and "critic_loss" in history:
            rows.append(critic_collapse(history["critic_loss"], eq))
        if "sample_spread" in result.info:
            rows.append(_spread_row(result.info["sample_spread"]))
    if result.inference_data is not None and hasattr(result.inference_data, "posterior"):
        try:
            rows.extend(mcmc_checks(result.inference_data))
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # a posterior ArviZ cannot summarise
            rows.append(_row(f"MCMC checks not run ({type(exc).__name__}: {exc})", math.nan, math.nan, None, ""))
    extra = getattr(result.model, "fit_diagnostics", None)
    if callable(extra):
        rows.extend(extra())
    return pd.DataFrame(rows, columns=COLUMNS)


def _warn(message: str) -> None:
    """Emit a ``FitWarning`` attributed to the user's line (the first frame outside probgen)."""
    import sys

    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, FitWarning, stacklevel=level)


def warn_if_untrusted(result: Any) -> pd.DataFrame:
    """Run ``diagnose`` and emit one ``FitWarning`` naming every failed check; returns the table."""
    table = diagnose(result)
    failed = table[table["ok"] == False]  # noqa: E712  (ok is True / False / None)
    if len(failed):
        lines = [f"{r.check}: {r.value:.4g} (threshold {r.threshold:.4g}) - {r.what_to_do}" for r in failed.itertuples()]
        _warn(f"{type(result.model).__name__} fit ({result.engine}) failed {len(failed)} diagnostic check(s); "
              "see result.diagnostics():\n  " + "\n  ".join(lines))
    return table


# ------------------------------------------------------------------------------ non-finite loss
class NonFiniteGuard:
    """Stops training at a NaN / infinite loss and keeps the last good state.

    The guard holds a copy of the model's state from before training and refreshes it at each
    evaluation point (``keep``). At a non-finite loss, the model keeps its current state when all
    its parameters are finite (the loss of this step failed, the update before it did
    not), and otherwise returns to the last copy; the error names both steps.
    """

    def __init__(self, model: torch.nn.Module, engine: str, lr: float | None = None):
        self.model, self.engine, self.lr = model, engine, lr
        self.good_step = -1
        self._state = self._copy()

    def _copy(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _finite(self) -> bool:
        # parameters only: some buffers are NaN by design (e.g. a GAN's unset rejection threshold)
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def keep(self, step: int) -> None:
        """Refresh the copy of the state (at an evaluation point, after a finite step)."""
        if self._finite():
            self._state, self.good_step = self._copy(), step

    def check(self, step: int, record: dict, records: list | None = None) -> None:
        """Raise ``NonFiniteLossError`` if a logged number of ``record`` is NaN or infinite."""
        for key, value in record.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise self.failure(step, value, key, records, updated=True)

    def failure(self, step: int, value: float, name: str = "loss", records: list | None = None,
                updated: bool = False) -> NonFiniteLossError:
        """The error to raise (after restoring the last good state); ``updated``: the step's own update
        has been applied already (engines with their own step)."""
        if self._finite():
            kept = step if updated else step - 1
            where = f"its state after step {kept} (parameters still finite)"
        else:
            self.model.load_state_dict(self._state)
            kept = self.good_step
            where = ("its state from before training" if kept < 0 else
                     f"its state from step {kept}, the last evaluation point with finite parameters")
        self.model.eval()
        hint = f"try a smaller lr (it was {self.lr:g})" if self.lr else "try a smaller lr"
        result = None
        if records is not None:
            from ..core.result import FitResult

            result = FitResult(model=self.model, engine=self.engine, history=pd.DataFrame.from_records(records))
        return NonFiniteLossError(f"fit: the {name} became {value} at step {step} ({self.engine}); training stopped "
                                  f"and the model keeps {where}; {hint} or clip gradients (clip_norm=1.0)",
                                  step, kept, result)
