"""A Gaussian copula with kernel-density marginals: an exact density for small tables."""

from __future__ import annotations

__all__ = ["GaussianCopula", "BANDWIDTHS", "TAIL_SIDES"]

import math
from typing import Any

import numpy as np
import pyro
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from ..core.base import ContractCase, Model
from ..core.checks import as_tensor, check_choice, check_positive
from ..core.engines import implements

#: bandwidth rules of the marginal kernel density estimates (a float: the bandwidth in
#: standard deviations of the feature, scipy's ``bw_method`` convention)
BANDWIDTHS = ("scott", "silverman")
#: which tail ``log_tail`` measures: each feature's longer tail (the sign of its skewness),
#: the upper or lower tail, or both (twice the smaller one)
TAIL_SIDES = ("longer", "upper", "lower", "both")
_LOG_2PI = math.log(2 * math.pi)


class GaussianCopula(Model):
    r"""A Gaussian copula over kernel-density marginals: ``p(x) = c_R(z) prod_j f_j(x_j)``.

    Each feature ``j`` gets a one-dimensional Gaussian kernel density ``f_j`` (its CDF ``F_j``
    is a monotone transform of the feature); the normal scores ``z_j = Phi^{-1}(F_j(x_j))``
    are jointly Gaussian with correlation ``R``, shrunk toward the identity (Ledoit-Wolf's
    analytic shrinkage by default, or a fixed ``shrinkage`` in [0, 1], where 1 makes the
    features independent). ``log_prob`` is exact (the marginal log-densities plus the copula's
    log-density); ``sample`` draws ``z ~ N(0, R)`` and inverts each ``F_j``. ``fit`` is closed
    form (the ``"exact"`` engine): it keeps the training rows, sets the bandwidths by the
    named rule and estimates ``R`` from the training normal scores. Suited to small tables
    (tens to a few thousand rows), where a flow or a VAE overfits; evaluation costs
    ``O(rows x training rows x features)``.

    ``log_tail(x)`` gives each feature's log tail probability under its fitted marginal; the
    ``"tail"`` score of ``probgen.tasks.AnomalyDetector`` sums them over features in the
    direction of each feature's longer tail (the skewness rule of COPOD, Li et al. 2020).

    Arguments:
        num_features: number of columns.
        bandwidth: ``"scott"`` (``sd n^{-1/5}``), ``"silverman"`` (``0.9 min(sd, IQR/1.34) n^{-1/5}``)
            or a positive float (the bandwidth in standard deviations of each feature).
        shrinkage: ``"ledoit_wolf"`` or a float in [0, 1]: ``R = (1 - s) C + s I`` with ``C`` the
            correlation of the training normal scores.

    References:
        Liu et al. 2009, The Nonparanormal (JMLR); Ledoit & Wolf 2004, A well-conditioned
        estimator for large-dimensional covariance matrices; Li et al. 2020, COPOD
        (ICDM).

    Example:
        >>> import torch, probgen
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(300, 1, generator=g)
        >>> x = torch.cat([z, z.exp() + 0.3 * torch.randn(300, 1, generator=g)], 1)  # skewed, dependent
        >>> cop = probgen.models.GaussianCopula(2)
        >>> _ = cop.fit(x, progress=False)
        >>> round(float(cop.correlation[0, 1]), 2), cop.sample(4, seed=0).shape
        (0.89, torch.Size([4, 2]))
        >>> bool(cop.log_prob(torch.tensor([[1.0, 2.7]])) > cop.log_prob(torch.tensor([[1.0, -2.0]])))
        True
    """

    family = "gaussian_copula"
    default_inference = "exact"
    log_prob_kind = "exact"

    def __init__(self, num_features: int, bandwidth: str | float = "scott", shrinkage: str | float = "ledoit_wolf"):
        check_positive("num_features", num_features, integer=True)
        if isinstance(bandwidth, str):
            check_choice("bandwidth", bandwidth, BANDWIDTHS)
        elif isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not 0 < bandwidth < math.inf:
            raise ValueError(f"bandwidth: expected one of {list(BANDWIDTHS)} or a positive number, got {bandwidth!r}")
        if isinstance(shrinkage, str):
            check_choice("shrinkage", shrinkage, ["ledoit_wolf"])
        elif isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float)) or not 0 <= shrinkage <= 1:
            raise ValueError(f"shrinkage: expected 'ledoit_wolf' or a number in [0, 1], got {shrinkage!r}")
        super().__init__()
        d = int(num_features)
        self.num_features = d
        self.bandwidth = bandwidth if isinstance(bandwidth, str) else float(bandwidth)
        self.shrinkage = shrinkage if isinstance(shrinkage, str) else float(shrinkage)
        # fitted state (float64: tail probabilities far out need it); the rows are kept, as in any KDE
        self.register_buffer("points", torch.zeros(0, d, dtype=torch.float64))
        self.register_buffer("bandwidths", torch.ones(d, dtype=torch.float64))
        self.register_buffer("correlation", torch.eye(d, dtype=torch.float64))
        self.register_buffer("skew_sign", torch.ones(d, dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.shrinkage_used = float("nan")

    # ------------------------------------------------------------- state
    def get_state_json(self) -> dict:
        return {"num_rows": int(self.points.shape[0]), "shrinkage_used": self.shrinkage_used}

    def set_state_json(self, state: dict) -> None:
        rows = state.get("num_rows", 0)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ValueError(f"num_rows: expected a non-negative integer, got {rows!r}")
        self.points = torch.zeros(rows, self.num_features, dtype=torch.float64)
        self.shrinkage_used = float(state.get("shrinkage_used", float("nan")))

    # -------------------------------------------------------------- data
    def _check_x(self, x: Any, name: str = "x") -> torch.Tensor:
        if hasattr(x, "x") and hasattr(x, "y") and not isinstance(x, torch.Tensor):  # a probgen Dataset
            x = x.x
        t = as_tensor(x, name, ndim=2, dtype=torch.float64)
        if t.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected {self.num_features} columns (num_features={self.num_features}), "
                             f"got shape {tuple(t.shape)}")
        return t.to(self.points.device)

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        t = self._check_x(data, name).cpu()
        if len(t) < 2:
            raise ValueError(f"{name}: expected at least 2 rows to estimate the marginals, got {len(t)}")
        return (t,)

    def _require(self, what: str) -> None:
        self._require_fitted(what, bool(self.fitted))

    # --------------------------------------------------------------- fit
    @implements("exact")
    def _fit_exact(self, data: Any, **options: Any):
        """Closed form: keep the rows, bandwidths by the rule, shrunk correlation of the normal scores."""
        from ..core.result import FitResult
        from ..infer.options import parse_options

        opts = parse_options("exact", options)
        (x,) = self.prepare_data(data)
        n = len(x)
        sd = x.std(0)
        if self.bandwidth == "scott":
            h = sd * n ** -0.2
        elif self.bandwidth == "silverman":
            q = torch.quantile(x, torch.tensor([0.25, 0.75], dtype=x.dtype), dim=0)
            iqr = (q[1] - q[0]) / 1.34
            spread = torch.where(iqr > 0, torch.minimum(sd, iqr), sd)
            h = 0.9 * spread * n ** -0.2
        else:
            h = sd * self.bandwidth
        # a constant column still needs a positive bandwidth
        h = torch.where(h > 1e-12, h, torch.full_like(h, 1e-3) * torch.clamp(x.abs().mean(0), min=1.0))
        self.points = x.to(self.points.device)
        self.bandwidths = h.to(self.points.device)
        centred = x - x.mean(0)
        m3 = centred.pow(3).mean(0)
        self.skew_sign = torch.where(m3 < 0, -1.0, 1.0).to(x).to(self.points.device)
        z = self._normal_scores(x.to(self.points.device))
        corr = torch.as_tensor(np.corrcoef(z.cpu().numpy().T), dtype=torch.float64).reshape(self.num_features, -1)
        corr = torch.nan_to_num(corr, nan=0.0)
        corr.fill_diagonal_(1.0)
        if self.shrinkage == "ledoit_wolf":
            from sklearn.covariance import ledoit_wolf_shrinkage

            scaled = (z - z.mean(0)) / z.std(0).clamp_min(1e-12)
            s = float(ledoit_wolf_shrinkage(scaled.cpu().numpy())) if self.num_features > 1 else 1.0
        else:
            s = float(self.shrinkage)
        eye = torch.eye(self.num_features, dtype=torch.float64)
        self.correlation = ((1 - s) * corr + s * eye).to(self.points.device)
        self.shrinkage_used = s
        self.fitted.fill_(True)
        return FitResult(model=self, engine="exact", device=str(opts.device),
                         info={"rows": n, "shrinkage": s, "bandwidths": h.tolist()})

    # ---------------------------------------------------------- marginals
    def _standardized(self, x: torch.Tensor) -> torch.Tensor:
        """(n, m, d): (x_i - point_k) / h for every row and training row."""
        return (x[:, None, :] - self.points[None]) / self.bandwidths

    def _chunks(self, x: torch.Tensor, fn) -> torch.Tensor:
        # bounded memory: rows x training rows x features at a time
        step = max(1, int(4_000_000 // max(1, len(self.points) * self.num_features)))
        if not len(x):
            return fn(x)
        return torch.cat([fn(x[s:s + step]) for s in range(0, len(x), step)])

    def marginal_log_prob(self, x: Any) -> torch.Tensor:
        """``log f_j(x_j)`` of every feature, shape ``(n, num_features)``."""
        self._require("marginal_log_prob")
        x = self._check_x(x)
        log_norm = math.log(len(self.points)) + 0.5 * _LOG_2PI

        def fn(rows):
            u = self._standardized(rows)
            return torch.logsumexp(-0.5 * u * u, 1) - log_norm - self.bandwidths.log()

        return self._chunks(x, fn)

    def log_tail(self, x: Any, side: str = "longer") -> torch.Tensor:
        """Log tail probabilities of each feature under its fitted marginal, shape ``(n, num_features)``.

        ``side``: ``"upper"`` ``log P(X_j >= x_j)``, ``"lower"`` ``log P(X_j <= x_j)``, ``"longer"``
        the tail on the side of the feature's skewness (upper when the training rows are skewed
        right), ``"both"`` ``log 2 min(F, 1 - F)``.
        """
        self._require("log_tail")
        check_choice("side", side, TAIL_SIDES)
        lower, upper = self._log_cdfs_rows(self._check_x(x))
        if side == "upper":
            return upper
        if side == "lower":
            return lower
        if side == "longer":
            return torch.where(self.skew_sign > 0, upper, lower)
        return (math.log(2.0) + torch.minimum(lower, upper)).clamp_max(0.0)

    def _log_cdfs_rows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not len(x):
            empty = x.new_zeros(0, self.num_features)
            return empty, empty
        log_m = math.log(len(self.points))
        step = max(1, int(4_000_000 // max(1, len(self.points) * self.num_features)))
        lowers, uppers = [], []
        for s in range(0, len(x), step):
            u = self._standardized(x[s:s + step])
            lowers.append(torch.logsumexp(torch.special.log_ndtr(u), 1) - log_m)
            uppers.append(torch.logsumexp(torch.special.log_ndtr(-u), 1) - log_m)
        return torch.cat(lowers), torch.cat(uppers)

    def normal_scores(self, x: Any) -> torch.Tensor:
        """``z_j = Phi^{-1}(F_j(x_j))``, shape ``(n, num_features)``, computed from the smaller tail."""
        self._require("normal_scores")
        return self._normal_scores(self._check_x(x))

    def _normal_scores(self, x: torch.Tensor) -> torch.Tensor:
        from scipy.special import ndtri_exp

        lower, upper = self._log_cdfs_rows(x)
        lo, up = lower.cpu().numpy(), upper.cpu().numpy()
        z = np.where(lo < up, ndtri_exp(np.minimum(lo, 0.0)), -ndtri_exp(np.minimum(up, 0.0)))
        return torch.as_tensor(z, dtype=torch.float64, device=x.device)

    # --------------------------------------------------------------- queries
    def _copula_log_density(self, z: torch.Tensor) -> torch.Tensor:
        chol = torch.linalg.cholesky(self.correlation)
        w = torch.linalg.solve_triangular(chol, z.T, upper=False).T
        log_det = 2 * chol.diagonal().log().sum()
        return -0.5 * (w * w).sum(1) + 0.5 * (z * z).sum(1) - 0.5 * log_det

    def log_prob(self, x: Any) -> torch.Tensor:
        """Exact log density of each row: ``log c_R(z) + sum_j log f_j(x_j)``."""
        self._require("log_prob")
        x = self._check_x(x)
        if not len(x):  # the empty-batch rule (probgen.core.rows)
            return torch.zeros(0, dtype=torch.get_default_dtype(), device=x.device)
        out = self.marginal_log_prob(x).sum(1) + self._copula_log_density(self._normal_scores(x))
        return out.to(torch.get_default_dtype())

    def _sample(self, n: int) -> torch.Tensor:
        self._require("sample")
        chol = torch.linalg.cholesky(self.correlation)
        z = torch.randn(n, self.num_features, dtype=torch.float64, device=self.points.device) @ chol.T
        return self.quantile_transform(z).to(torch.get_default_dtype())

    @torch.no_grad()
    def quantile_transform(self, z: Any) -> torch.Tensor:
        """Invert the marginals: ``x_j = F_j^{-1}(Phi(z_j))``, shape of ``z`` ``(n, num_features)``.

        Safeguarded Newton steps (each ``F_j`` is increasing, its derivative the density ``f_j``)
        from the empirical quantile, falling back to bisection inside the bracket; written here
        because scipy has no vectorised inverse of a kernel CDF.
        """
        self._require("quantile_transform")
        z = as_tensor(z, "z", ndim=2, shape=(self.num_features,), dtype=torch.float64).to(self.points.device)
        if not len(z):
            return z.clone()
        u = torch.special.ndtr(z)
        ordered = self.points.sort(0).values
        m = len(ordered)
        index = (u * (m - 1)).round().long().clamp(0, m - 1)
        x = ordered.gather(0, index)
        lo = (ordered[0] - 40 * self.bandwidths).expand_as(z).clone()
        hi = (ordered[-1] + 40 * self.bandwidths).expand_as(z).clone()
        norm = 1.0 / math.sqrt(2 * math.pi)
        step = max(1, int(4_000_000 // max(1, m * self.num_features)))
        active = torch.arange(len(x), device=x.device)  # rows still moving
        for _ in range(60):
            xa, ua = x[active], u[active]
            cdf, pdf = [], []
            for s in range(0, len(xa), step):
                v = self._standardized(xa[s:s + step])
                cdf.append(torch.special.ndtr(v).mean(1))
                pdf.append((torch.exp(-0.5 * v * v) * norm).mean(1) / self.bandwidths)
            err = torch.cat(cdf) - ua
            density = torch.cat(pdf)
            la = torch.where(err < 0, xa, lo[active])
            ha = torch.where(err < 0, hi[active], xa)
            newton = xa - err / density.clamp_min(1e-300)
            inside = (newton > la) & (newton < ha) & torch.isfinite(newton)
            nxt = torch.where(inside, newton, 0.5 * (la + ha))
            moving = ((nxt - xa).abs() > 1e-9 * self.bandwidths).any(1)
            x[active], lo[active], hi[active] = nxt, la, ha
            active = active[moving]
            if not len(active):
                break
        return x

    def distribution(self) -> TorchDistribution:
        """The fitted copula as a Pyro distribution (``log_prob`` and ``sample``).

        Example:
            >>> import torch, pyro, probgen
            >>> cop = probgen.models.GaussianCopula(2)
            >>> _ = cop.fit(torch.randn(50, 2, generator=torch.Generator().manual_seed(0)), progress=False)
            >>> with pyro.plate("rows", 3):
            ...     x = pyro.sample("x", cop.distribution())
            >>> x.shape
            torch.Size([3, 2])
        """
        self._require("distribution")
        return _CopulaDistribution(self)

    def model(self, x: torch.Tensor | None = None, n: int | None = None):
        """Pyro program: ``x ~ copula`` in a plate over the rows."""
        rows = len(x) if x is not None else int(n or 1)
        with pyro.plate("data", rows):
            return pyro.sample("x", self.distribution(), obs=None if x is None else self._check_x(x).float())

    # -------------------------------------------------------------- examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        z = torch.randn(80, 1, generator=g)
        x = torch.cat([z, z.exp() + 0.2 * torch.randn(80, 1, generator=g), torch.randn(80, 1, generator=g)], 1)
        return ContractCase(cls(3), x, {}, log_prob_data=x[:5])


    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """The copula on scikit-learn's wine table: held-out log-likelihood against a Gaussian, samples."""
        import os

        import matplotlib.pyplot as plt
        from scipy.stats import multivariate_normal
        from sklearn.datasets import load_wine
        from sklearn.model_selection import train_test_split

        import probgen
        from ..gallery import TourSection, demo_source
        from ..plot import save_figure

        def demo():
            x = load_wine().data
            train, test = train_test_split(x, test_size=0.3, random_state=0)
            copula = probgen.models.GaussianCopula(x.shape[1])
            copula.fit(train, progress=False)
            ll = float(copula.log_prob(test).mean())  # exact
            gauss = multivariate_normal(train.mean(0), np.cov(train.T)).logpdf(test).mean()  # the classic baseline
            samples = copula.sample(len(train), seed=0).numpy()
            return copula, train, samples, ll, gauss

        copula, train, samples, ll, gauss = demo()
        names = load_wine().feature_names
        i, j = names.index("flavanoids"), names.index("proline")
        fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2), sharex=True, sharey=True)
        for ax, data, title in ((axes[0], train, "training rows"), (axes[1], samples, "copula samples")):
            ax.scatter(data[:, i], data[:, j], s=8, alpha=0.7)
            ax.set(title=title, xlabel=names[i])
        axes[0].set_ylabel(names[j])
        path = save_figure(fig, os.path.join(out_dir, "gaussian_copula_wine.png"))
        return TourSection(cls.family, "Gaussian copula with kernel-density marginals on the wine table (13 features)",
                           [(path, "two of the 13 features: the training rows (left) and as many rows sampled "
                                   "from the fitted copula (right): the marginals and the overall rank correlation carry "
                                   "over, the curved two-cluster shape does not (a Gaussian copula has one correlation "
                                   "per pair), and the kernel tails put a few flavanoid values just below 0")],
                           {"held-out log-likelihood": f"{ll:.2f} nats per row (multivariate Gaussian: {gauss:.2f})"},
                           demo_source(demo), "works" if ll > gauss else "limited",
                           note="The samples keep each feature's spread and skew and the overall dependence, not the "
                                "three cultivars' clusters: a Gaussian copula has one correlation matrix.")


class _CopulaDistribution(TorchDistribution):
    """``GaussianCopula`` as a torch/Pyro distribution over rows of ``num_features`` values."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, copula: GaussianCopula, batch_shape=torch.Size(), validate_args=None):
        self.copula = copula
        super().__init__(torch.Size(batch_shape), torch.Size([copula.num_features]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return _CopulaDistribution(self.copula, batch_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        flat = value.reshape(-1, self.copula.num_features)
        return self.copula.log_prob(flat).reshape(value.shape[:-1])

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        n = max(1, int(np.prod(shape)) if len(shape) else 1)
        with torch.no_grad():
            out = self.copula._sample(n)
        return out.reshape(*shape, self.copula.num_features)
