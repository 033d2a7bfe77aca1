"""Financial returns with flows: lagged-return features, the GARCH baseline, VaR backtests.

Everything works one step ahead: the density of day ``t`` uses information up to ``t-1``.
"""

from __future__ import annotations

__all__ = ["return_features", "kupiec_test", "var_backtest", "GaussianReturns", "StudentReturns", "GarchT",
           "tail_dependence"]

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..core.checks import as_tensor, check_probability


def _series(returns: Any, name: str = "returns") -> pd.Series:
    if isinstance(returns, pd.Series):
        series = returns.astype(float)
    else:
        series = pd.Series(as_tensor(returns, name, ndim=1).double().numpy())
    if not np.all(np.isfinite(series.to_numpy())):
        raise ValueError(f"{name}: expected finite numbers, found NaN or inf")
    return series


def return_features(returns: Any, lags: int = 5, vol_windows: Sequence[int] = (5, 22, 66)) -> pd.DataFrame:
    """Context for day ``t`` from days before ``t``: the last ``lags`` returns and the log
    realised volatility (root mean square return) over each window in ``vol_windows``.

    The first ``max(lags, *vol_windows)`` rows have no full history and are NaN; drop them.

    Example:
        >>> f = return_features([0.1, -0.2, 0.3, 0.0, 0.5, -0.1], lags=2, vol_windows=(2,))
        >>> list(f.columns), round(float(f.iloc[2]["lag1"]), 2)
        (['lag1', 'lag2', 'logvol2'], -0.2)
    """
    r = _series(returns)
    if lags < 0 or any(int(w) < 1 for w in vol_windows):
        raise ValueError(f"lags, vol_windows: expected lags >= 0 and windows >= 1, got {lags}, {vol_windows}")
    columns = {f"lag{k}": r.shift(k) for k in range(1, lags + 1)}
    for w in vol_windows:
        columns[f"logvol{w}"] = 0.5 * np.log((r ** 2).rolling(int(w)).mean().shift(1) + 1e-12)
    return pd.DataFrame(columns, index=r.index)


def kupiec_test(violations: Any, alpha: float) -> tuple[float, float]:
    """Kupiec's (1995) proportion-of-failures test: likelihood ratio and chi-square(1) p-value.

    ``violations`` are 0/1 indicators that the loss exceeded the ``alpha`` value-at-risk.

    Example:
        >>> lr, p = kupiec_test([0] * 95 + [1] * 5, 0.05)
        >>> round(lr, 6), round(p, 3)
        (0.0, 1.0)
    """
    check_probability("alpha", alpha)
    v = np.asarray(violations, dtype=float)
    n, x = len(v), float(v.sum())
    if n == 0:
        raise ValueError("violations: expected at least one day")

    def loglik(p: float) -> float:
        return (n - x) * math.log1p(-p) if x == 0 else (x * math.log(p) if x == n else
                                                        (n - x) * math.log1p(-p) + x * math.log(p))

    lr = max(0.0, -2.0 * (loglik(alpha) - loglik(x / n)))
    return lr, float(stats.chi2.sf(lr, 1))


def var_backtest(returns: Any, quantiles: dict[str, Any], alphas: Sequence[float]) -> pd.DataFrame:
    """Backtest one-step value-at-risk forecasts.

    ``quantiles[model]`` is an array ``(n, len(alphas))`` of predicted return quantiles
    (the VaR at level a is ``-quantile(a)``); a violation is a return below it.
    Returns one row per model and level: violations, expected, rate and the Kupiec p-value.
    """
    r = _series(returns).to_numpy()
    rows = []
    for name, q in quantiles.items():
        q = np.asarray(q, dtype=float).reshape(len(r), len(alphas))
        for j, a in enumerate(alphas):
            hits = r < q[:, j]
            lr, p = kupiec_test(hits, a)
            rows.append({"model": name, "level": f"{a:.0%}", "violations": int(hits.sum()),
                         "expected": a * len(r), "rate": hits.mean(), "kupiec_p": p})
    return pd.DataFrame(rows)


class GaussianReturns:
    """i.i.d. normal returns fitted by maximum likelihood (the textbook baseline)."""

    name = "Gaussian"

    def fit(self, returns: Any) -> "GaussianReturns":
        r = _series(returns).to_numpy()
        self.loc, self.scale = float(r.mean()), float(r.std())
        return self

    def log_prob(self, returns: Any) -> np.ndarray:
        return stats.norm.logpdf(_series(returns).to_numpy(), self.loc, self.scale)

    def quantile(self, alphas: Sequence[float], n: int) -> np.ndarray:
        return np.tile(stats.norm.ppf(alphas, self.loc, self.scale), (n, 1))


class StudentReturns(GaussianReturns):
    """i.i.d. Student-t returns (location, scale, degrees of freedom) by maximum likelihood."""

    name = "Student-t"

    def fit(self, returns: Any) -> "StudentReturns":
        self.df, self.loc, self.scale = (float(v) for v in stats.t.fit(_series(returns).to_numpy()))
        return self

    def log_prob(self, returns: Any) -> np.ndarray:
        return stats.t.logpdf(_series(returns).to_numpy(), self.df, self.loc, self.scale)

    def quantile(self, alphas: Sequence[float], n: int) -> np.ndarray:
        return np.tile(stats.t.ppf(alphas, self.df, self.loc, self.scale), (n, 1))


class GarchT:
    """GARCH(1,1) with standardized Student-t innovations and a constant mean, from ``arch``.

    Fitted on the first ``num_train`` returns; ``log_prob``/``quantile`` on later days use
    the one-step-ahead conditional volatility filtered with the fitted parameters fixed.

    Example:
        >>> import numpy as np
        >>> r = np.random.default_rng(0).standard_t(5, 600)
        >>> g = GarchT().fit(r, num_train=500)
        >>> g.log_prob(r)[500:].shape
        (100,)
    """

    name = "GARCH(1,1)-t (arch)"

    def fit(self, returns: Any, num_train: int | None = None) -> "GarchT":
        from arch import arch_model

        r = _series(returns)
        num_train = len(r) if num_train is None else int(num_train)
        self.returns = r
        model = arch_model(r.reset_index(drop=True), mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
        self.result = model.fit(last_obs=num_train, disp="off")
        self.params = self.result.params
        fixed = model.fix(self.params)
        self.sigma = np.asarray(fixed.conditional_volatility, dtype=float)
        self.mu, self.nu = float(self.params["mu"]), float(self.params["nu"])
        return self

    def _scale(self) -> np.ndarray:
        # arch's t innovations have unit variance: scale = sigma * sqrt((nu - 2) / nu)
        return self.sigma * math.sqrt((self.nu - 2.0) / self.nu)

    def log_prob(self, returns: Any = None) -> np.ndarray:
        """Per-day one-step log density of the returns it was fitted with (all days)."""
        r = self.returns.to_numpy()
        return stats.t.logpdf(r, self.nu, self.mu, self._scale())

    def quantile(self, alphas: Sequence[float]) -> np.ndarray:
        """One-step return quantiles for every day, shape ``(n, len(alphas))``."""
        return self.mu + self._scale()[:, None] * stats.t.ppf(np.asarray(alphas), self.nu)[None, :]


def tail_dependence(x: Any, u: float = 0.05, lower: bool = True) -> pd.DataFrame:
    """Empirical tail dependence ``P(U_i < u | U_j < u)`` for every pair of columns.

    ``U`` are the ranks scaled to (0, 1); with ``lower=False`` the upper tail
    ``P(U_i > 1-u | U_j > 1-u)``. For a Gaussian copula this goes to 0 as ``u -> 0``;
    joint crashes make it stay high.

    Example:
        >>> import numpy as np
        >>> z = np.random.default_rng(0).standard_normal((2000, 1))
        >>> round(float(tail_dependence(np.hstack([z, z]), 0.05).iloc[0, 1]), 2)
        1.0
    """
    frame = pd.DataFrame(np.asarray(x)) if not isinstance(x, pd.DataFrame) else x
    check_probability("u", u)
    ranks = frame.rank(pct=True).to_numpy()
    hit = ranks <= u if lower else ranks > 1 - u
    k = frame.shape[1]
    out = np.ones((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                out[i, j] = (hit[:, i] & hit[:, j]).sum() / max(hit[:, j].sum(), 1)
    return pd.DataFrame(out, index=frame.columns, columns=frame.columns)
