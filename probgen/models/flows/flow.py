"""Normalizing flows: exact-likelihood densities from zuko, usable inside any Pyro program."""

from __future__ import annotations

__all__ = ["Flow", "FLOW_KINDS"]

import math
from typing import Any

import pyro
import torch
import zuko
from pyro.contrib.zuko import ZukoToPyro
from torch.distributions import AffineTransform, Independent, Normal, StudentT

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_choice, check_positive
from ...core.engines import implements

#: flow kinds and the zuko class that builds each (coupling kinds need ``dim >= 2``)
FLOW_KINDS = {
    "nsf": "NSF",        # neural spline flow, autoregressive rational-quadratic splines (Durkan et al. 2019)
    "maf": "MAF",        # masked autoregressive flow, affine (Papamakarios et al. 2017)
    "realnvp": "RealNVP",  # affine coupling (Dinh et al. 2017)
    "nice": "NICE",      # additive coupling (Dinh et al. 2015)
    "naf": "NAF",        # neural autoregressive flow (Huang et al. 2018)
    "sospf": "SOSPF",    # sum-of-squares polynomial flow (Jaini et al. 2019)
    "bpf": "BPF",        # Bernstein polynomial flow (Ramasinghe et al. 2021)
}
_COUPLING = ("realnvp", "nice")


class _StudentBase(zuko.lazy.LazyDistribution):
    """A standard Student-t base with one learned degrees-of-freedom per dimension.

    A Lipschitz flow keeps the tail class of its base (Jaini et al. 2020, "Tails of
    Lipschitz triangular flows"), so heavy-tailed data (daily returns) needs a
    heavy-tailed base; the degrees of freedom are fitted with the rest.
    """

    def __init__(self, dim: int):
        super().__init__()
        # df = 2 + softplus(raw) > 2 keeps a finite variance; raw = 1.5 gives df ~ 3.7
        self.raw_df = torch.nn.Parameter(torch.full((dim,), 1.5))
        self.register_buffer("zero", torch.zeros(dim))

    def df(self) -> torch.Tensor:
        return 2.0 + torch.nn.functional.softplus(self.raw_df)

    def forward(self, c: torch.Tensor | None = None):
        return Independent(StudentT(self.df(), self.zero, torch.ones_like(self.zero)), 1)


class Flow(Model):
    r"""A normalizing flow ``x = T(z)``, ``z ~ base``, with an exact log density.

    The transform comes from zuko (``kind`` names the architecture); ``distribution``
    returns it as a Pyro distribution (``pyro.contrib.zuko.ZukoToPyro`` around zuko's
    ``NormalizingFlow``, itself a transformed distribution), so the flow can be a
    prior, a likelihood or a guide in any Pyro model. With ``context_dim`` the flow
    is conditional: ``p(x | c)``, every call then needs ``context``. The data (and
    the context) are standardized with the mean and standard deviation of the first
    training set; ``log_prob`` includes that Jacobian, so it is the density of the
    data in their own units.

    ``fit`` defaults to exact maximum likelihood (the ``"mle"`` engine); pass
    ``validation=`` (and ``patience=``) for early stopping on held-out likelihood.
    Data: ``x`` of shape ``(n, dim)`` (or ``(n,)`` when ``dim == 1``), or a pair
    ``(x, context)`` for a conditional flow.

    Arguments:
        dim: number of dimensions of ``x``.
        kind: one of ``FLOW_KINDS``: "nsf", "maf", "realnvp", "nice", "naf", "sospf", "bpf".
        context_dim: number of context features (``None``: unconditional).
        transforms: number of stacked transforms.
        hidden: hidden layer widths of each transform's network.
        bins: spline bins (``kind="nsf"`` only).
        base: "normal" or "student" (Student-t with learned degrees of freedom, for heavy tails).
        standardize: standardize data and context with training statistics.

    References:
        Papamakarios et al. 2021, Normalizing Flows for Probabilistic Modeling and
        Inference (JMLR); Rozet et al., zuko.

    Example:
        >>> import torch, probgen
        >>> x = torch.randn(200, 2) * torch.tensor([1.0, 3.0])
        >>> flow = probgen.models.Flow(2, kind="maf", transforms=1, hidden=(8,))
        >>> _ = flow.fit(x, steps=20, lr=1e-2, progress=False, seed=0)
        >>> flow.log_prob(x[:3]).shape, flow.sample(5, seed=0).shape
        (torch.Size([3]), torch.Size([5, 2]))
    """

    family = "flow"
    default_inference = "mle"
    log_prob_kind = "exact"

    def __init__(self, dim: int, kind: str = "nsf", context_dim: int | None = None, transforms: int = 3,
                 hidden: tuple[int, ...] | list[int] = (64, 64), bins: int = 8, base: str = "normal",
                 standardize: bool = True):
        check_positive("dim", dim, integer=True)
        check_choice("kind", kind, list(FLOW_KINDS))
        if context_dim is not None:
            check_positive("context_dim", context_dim, integer=True)
        check_positive("transforms", transforms, integer=True)
        if isinstance(hidden, int) or not all(isinstance(h, int) and h > 0 for h in hidden):
            raise ValueError(f"hidden: expected a sequence of positive integers, got {hidden!r}")
        check_positive("bins", bins, integer=True)
        check_choice("base", base, ["normal", "student"])
        if kind in _COUPLING and dim < 2:
            raise ValueError(f"kind: the coupling flow {kind!r} needs dim >= 2, got dim={dim}; use 'nsf' or 'maf'")
        super().__init__()
        self.dim = int(dim)
        self.kind = kind
        self.context_dim = None if context_dim is None else int(context_dim)
        self.base_kind = base
        self.standardize = bool(standardize)
        options: dict[str, Any] = {"transforms": int(transforms), "hidden_features": tuple(int(h) for h in hidden)}
        if kind == "nsf":
            options["bins"] = int(bins)
        if kind in ("sospf", "bpf"):
            options.pop("transforms")  # these take their depth from polynomials/degree
        self.flow = getattr(zuko.flows, FLOW_KINDS[kind])(self.dim, context=self.context_dim or 0, **options)
        if base == "student":
            self.flow.base = _StudentBase(self.dim)
        cdim = self.context_dim or 0
        self.register_buffer("x_loc", torch.zeros(self.dim))
        self.register_buffer("x_scale", torch.ones(self.dim))
        self.register_buffer("c_loc", torch.zeros(cdim))
        self.register_buffer("c_scale", torch.ones(cdim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ data
    @property
    def conditional(self) -> bool:
        return self.context_dim is not None

    def _check_x(self, x: Any, name: str = "x") -> torch.Tensor:
        t = as_tensor(x, name, ndim=(1, 2) if self.dim == 1 else 2, device=self.device, dtype=self.x_loc.dtype)
        if t.dim() == 1:
            t = t[:, None]
        if t.shape[-1] != self.dim:
            raise ValueError(f"{name}: expected {self.dim} columns (dim={self.dim}), got shape {tuple(t.shape)}")
        return t

    def _check_context(self, context: Any, name: str = "context", rows: int | None = None) -> torch.Tensor | None:
        if not self.conditional:
            if context is not None:
                raise ValueError(f"{name}: this flow is unconditional (context_dim=None); do not pass a context")
            return None
        if context is None:
            raise ValueError(f"{name}: this flow is conditional (context_dim={self.context_dim}); "
                             f"pass context of shape (n, {self.context_dim})")
        c = as_tensor(context, name, ndim=(1, 2), device=self.device, dtype=self.x_loc.dtype)
        if c.dim() == 1:
            c = c[:, None] if self.context_dim == 1 and rows not in (None, 1) else c[None]
        if c.shape[-1] != self.context_dim:
            raise ValueError(f"{name}: expected {self.context_dim} columns (context_dim={self.context_dim}), "
                             f"got shape {tuple(c.shape)}")
        if rows is not None and len(c) not in (1, rows):
            raise ValueError(f"{name}: expected {rows} rows (one per row of x) or 1, got {len(c)}")
        return c

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        if self.conditional:
            if not isinstance(data, (tuple, list)) or len(data) != 2:
                raise ValueError(f"{name}: this flow is conditional (context_dim={self.context_dim}); "
                                 f"expected a pair (x, context)")
            x = self._check_x(data[0], f"{name}[0] (x)").cpu()
            c = self._check_context(data[1], f"{name}[1] (context)", rows=len(x)).cpu()
            if len(c) != len(x):
                raise ValueError(f"{name}: x and context need the same number of rows, got {len(x)} and {len(c)}")
            tensors = (x, c)
        else:
            if isinstance(data, tuple):
                raise ValueError(f"{name}: this flow is unconditional; pass x alone, not a tuple (x, context)")
            tensors = (self._check_x(data, name).cpu(),)
        if len(tensors[0]) == 0:
            raise ValueError(f"{name}: expected at least one example, got none")
        return tensors

    @implements("mle")
    def _fit_mle(self, data: Any, **options: Any):
        """Exact maximum likelihood (the generic "mle" engine) after fixing the standardization."""
        from ...infer.mle import fit_mle

        tensors = self.prepare_data(data)
        if self.standardize and not bool(self.fitted):
            self._set_standardization(*tensors)
        return fit_mle(self, data, **options)

    @torch.no_grad()
    def _set_standardization(self, x: torch.Tensor, c: torch.Tensor | None = None) -> None:
        def stats(t):
            scale = t.std(0) if len(t) > 1 else torch.ones(t.shape[1:])
            return t.mean(0), torch.where(scale > 1e-8, scale, torch.ones_like(scale))

        loc, scale = stats(x)
        self.x_loc.copy_(loc)
        self.x_scale.copy_(scale)
        if c is not None:
            loc, scale = stats(c)
            self.c_loc.copy_(loc)
            self.c_scale.copy_(scale)
        self.fitted.fill_(True)

    # --------------------------------------------------------- distributions
    def flow_distribution(self, context: torch.Tensor | None = None) -> torch.distributions.Distribution:
        """zuko's ``NormalizingFlow`` in data units (a torch distribution), context already checked."""
        c = None if context is None else (context - self.c_loc) / self.c_scale
        inner = self.flow(c)
        # data -> standardized data -> base; zuko composes transforms in the x -> z direction
        standardize = AffineTransform(-self.x_loc / self.x_scale, 1.0 / self.x_scale, event_dim=1)
        transform = zuko.transforms.ComposedTransform(standardize, inner.transform)
        return zuko.distributions.NormalizingFlow(transform, inner.base)

    def distribution(self, context: Any = None) -> pyro.distributions.TorchDistribution:
        """The flow as a Pyro distribution (``ZukoToPyro``); ``context`` of shape (n, context_dim).

        Example:
            >>> import pyro, probgen
            >>> flow = probgen.models.Flow(2, kind="maf", transforms=1, hidden=(8,))
            >>> with pyro.plate("data", 3):
            ...     x = pyro.sample("x", flow.distribution())
            >>> x.shape
            torch.Size([3, 2])
        """
        return ZukoToPyro(self.flow_distribution(self._check_context(context)))

    def model(self, x: torch.Tensor | None = None, context: torch.Tensor | None = None, n: int | None = None):
        """Pyro program: ``x ~ flow(context)`` in a plate over the examples."""
        c = self._check_context(context)
        rows = len(x) if x is not None else (len(c) if c is not None else (n or 1))
        with pyro.plate("data", rows):
            return pyro.sample("x", self.distribution(c), obs=None if x is None else self._check_x(x))

    # --------------------------------------------------------------- queries
    def log_prob(self, x: Any, context: Any = None) -> torch.Tensor:
        """Exact log density of each row of ``x`` (given ``context`` for a conditional flow)."""
        x = self._check_x(x)
        c = self._check_context(context, rows=len(x))
        if not len(x):  # the empty-batch rule (probgen.core.rows)
            return x.new_zeros(0)
        return self.flow_distribution(c).log_prob(x)

    def score(self, x: Any, context: Any = None) -> torch.Tensor:
        """Anomaly score: ``-log_prob``."""
        return -self.log_prob(x, context)

    def _sample(self, n: int, context: Any = None) -> torch.Tensor:
        """``(n, dim)`` draws, or ``(n, m, dim)`` for ``m`` context rows."""
        single = context is not None and _is_single_row(context, self.context_dim)
        c = self._check_context(context)
        out = self.flow_distribution(c).sample((n,))
        return out[:, 0] if single else out

    def transform(self, x: Any, context: Any = None) -> torch.Tensor:
        """Map data to the base space, ``z = T^{-1}(x)``."""
        x = self._check_x(x)
        return self.flow_distribution(self._check_context(context, rows=len(x))).transform(x)

    def inverse(self, z: Any, context: Any = None) -> torch.Tensor:
        """Map base points to data, ``x = T(z)``."""
        z = self._check_x(z, "z")
        return self.flow_distribution(self._check_context(context, rows=len(z))).transform.inv(z)

    def base_df(self) -> torch.Tensor | None:
        """Degrees of freedom of a Student-t base (``None`` for a normal base)."""
        return self.flow.base.df().detach() if self.base_kind == "student" else None

    @torch.no_grad()
    def quantile(self, q: float | Any, context: Any = None) -> torch.Tensor:
        """Exact quantiles of a 1-D flow (its transforms are increasing): ``T(F_base^{-1}(q))``.

        Returns shape ``(len(q),)`` or, with ``m`` context rows, ``(m, len(q))``.
        Value-at-risk at level ``a`` is ``-quantile(a)``.
        """
        if self.dim != 1:
            raise ValueError(f"quantile: defined for 1-D flows only, this flow has dim={self.dim}")
        q = as_tensor(q, "q", ndim=(0, 1), device=self.device, dtype=self.x_loc.dtype).reshape(-1)
        if torch.any((q <= 0) | (q >= 1)):
            raise ValueError(f"q: expected probabilities strictly between 0 and 1, got {q.tolist()}")
        if self.base_kind == "student":
            from scipy.stats import t as student

            z = torch.as_tensor(student.ppf(q.cpu().double().numpy(), float(self.base_df()[0])),
                                dtype=q.dtype, device=self.device)
        else:
            z = Normal(0.0, 1.0).icdf(q)
        c = self._check_context(context)
        m = 1 if c is None else len(c)
        zz = z[None, :].expand(m, -1).reshape(-1, 1)
        cc = None if c is None else c.repeat_interleave(len(q), 0)
        x = self.flow_distribution(cc).transform.inv(zz).reshape(m, len(q))
        return x[0] if c is None else x

    @staticmethod
    def as_guide(model: Any, kind: str = "nsf", **flow_options: Any):
        """A flow guide (``FlowGuide``, an ``AutoContinuous`` autoguide) for the Pyro program ``model``."""
        from .guide import FlowGuide

        return FlowGuide(model, kind=kind, **flow_options)

    # ------------------------------------------------------------- examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        from sklearn.datasets import make_moons

        x, _ = make_moons(64, noise=0.05, random_state=0)
        x = torch.as_tensor(x, dtype=torch.float32)
        return ContractCase(cls(2, kind="maf", transforms=2, hidden=(16,)), x, {"steps": 20, "lr": 1e-2},
                            log_prob_data=x[:5])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """A spline flow on two moons: its density, exact held-out log-likelihood against a Gaussian mixture."""
        import os

        from sklearn.mixture import GaussianMixture

        import probgen
        from ... import plot
        from ...gallery import TourSection, demo_source

        steps = 60 if quick else 800

        def demo():
            torch.manual_seed(0)
            train, test = probgen.datasets.load("moons", split="train").x, probgen.datasets.load("moons", split="test").x
            flow = probgen.models.Flow(2, kind="nsf", transforms=3, hidden=(64, 64))
            flow.fit(train, steps=steps, lr=3e-3, batch_size=256, seed=0, progress=False)
            ll = flow.log_prob(test).mean()  # exact
            mixture = GaussianMixture(8, random_state=0).fit(train.numpy()).score(test.numpy())  # a classic baseline
            return flow, ll, mixture

        flow, ll, mixture = demo()
        ax = _density_axes(flow, (-1.5, 2.5), (-1.0, 1.5), title=f"spline flow density, test LL {float(ll):.2f}")
        path = plot.save_figure(ax, os.path.join(out_dir, "flow_moons.png"))
        works = float(ll) > -0.6
        return TourSection(cls.family, "Normalizing flow (neural spline) on two moons",
                           [(path, "the flow's density exp(log p(x)) on a grid (bright: high)")],
                           {"held-out log-likelihood": f"{float(ll):.2f} nats per point (8-component Gaussian "
                                                      f"mixture: {mixture:.2f})"},
                           demo_source(demo, steps=steps), "works" if works else "limited")


def _density_axes(flow: Flow, xlim, ylim, title: str = "", n: int = 120, ax=None):
    """Image of ``exp(log_prob)`` of a 2-D flow on a grid."""
    import matplotlib.pyplot as plt

    gx, gy = torch.meshgrid(torch.linspace(*xlim, n), torch.linspace(*ylim, n), indexing="xy")
    with torch.no_grad():
        density = flow.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).exp().reshape(n, n)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3.2))
    ax.imshow(density.numpy(), origin="lower", extent=(*xlim, *ylim), aspect="auto", cmap="magma")
    ax.set_title(title)
    return ax


def _log_normalizer_2d(flow: Flow, lim: float = 4.0, n: int = 400) -> float:
    """``log ∫ p`` of a 2-D flow on a square grid (a numerical check of normalization)."""
    g = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        lp = flow.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))
    cell = (2 * lim / (n - 1)) ** 2
    return float(torch.logsumexp(lp, 0) + math.log(cell))


def _is_single_row(context: Any, context_dim: int | None) -> bool:
    """A 1-D context is one row, except for ``context_dim == 1`` where it is a column of rows."""
    shape = tuple(getattr(context, "shape", None) or torch.as_tensor(context).shape)
    return len(shape) == 1 and not (context_dim == 1 and shape[0] > 1)
