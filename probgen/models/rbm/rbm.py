"""Restricted Boltzmann machines: block-Gibbs sampling, CD-k / persistent CD / parallel tempering, AIS.

The energy of a visible vector v and a binary hidden vector h is
``E(v, h) = -visible_term(v; b) - c·h - vᵀWh`` with ``visible_term = b·v``
(Bernoulli and softmax units, softmax as one-hot groups) or ``-|v - b|²/2``
(Gaussian units of unit variance). Both conditionals factorise, so one Gibbs
sweep is two batched matrix products.
"""

from __future__ import annotations

__all__ = ["RBM", "BlockGibbsKernel", "RBMParams"]

import math
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_binary, check_choice, check_positive
from ...core.rows import flat_rows
from ...core.progress import progress_bar
from ...core.random import seeded
from ...core.result import FitResult
from ...core.engines import implements
from ...infer.diagnostics import ais_check, warn_ais

VISIBLE = ("bernoulli", "gaussian", "softmax")
METHODS = ("cd", "pcd", "pt")
MAX_ENUMERATION = 20


class RBMParams(NamedTuple):
    """Visible bias ``b`` (Dv,), weights ``W`` (Dv, H), hidden bias ``c`` (H,)."""

    b: torch.Tensor
    W: torch.Tensor
    c: torch.Tensor

    def scaled(self, beta: float | torch.Tensor, base_b: torch.Tensor | None = None) -> "RBMParams":
        """The AIS / tempering path: visible bias from ``base_b`` to ``b``; W and c multiplied by ``beta``."""
        b = self.b * beta if base_b is None else base_b + beta * (self.b - base_b)
        return RBMParams(b, self.W * beta, self.c * beta)


class _Units:
    """What depends on the kind of visible unit: conditionals, free energy, log-partition over v."""

    def __init__(self, kind: str, groups: int):
        self.kind, self.groups = kind, groups

    def hidden_prob(self, v: torch.Tensor, p: RBMParams) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(p.c, v, p.W))

    def visible_mean(self, h: torch.Tensor, p: RBMParams) -> torch.Tensor:
        field = F.linear(h, p.W, p.b)  # b + h Wᵀ in one op
        if self.kind == "bernoulli":
            return torch.sigmoid(field)
        if self.kind == "gaussian":
            return field
        return torch.softmax(field.reshape(len(h), -1, self.groups), -1).reshape(len(h), -1)

    def sample_visible(self, h: torch.Tensor, p: RBMParams) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.visible_mean(h, p)
        if self.kind == "bernoulli":
            return _bernoulli(mean), mean
        if self.kind == "gaussian":
            return mean + torch.randn_like(mean), mean
        probs = mean.reshape(len(h), -1, self.groups)
        idx = torch.multinomial(probs.reshape(-1, self.groups), 1).reshape(probs.shape[:-1])
        return F.one_hot(idx, self.groups).to(mean.dtype).reshape(len(h), -1), mean

    def visible_term(self, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.kind == "gaussian":
            return -0.5 * ((v - b) ** 2).sum(-1)
        return v @ b

    def neg_free_energy(self, v: torch.Tensor, p: RBMParams) -> torch.Tensor:
        """-F(v) = log Σ_h exp(-E(v, h))."""
        return self.visible_term(v, p.b) + F.softplus(torch.addmm(p.c, v, p.W)).sum(-1)

    def log_partition_visible(self, field: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """log ∫ exp(visible_term(v; b) + v·(field - b)) dv, with ``field = b + W h``."""
        if self.kind == "bernoulli":
            return F.softplus(field).sum(-1)
        if self.kind == "gaussian":
            d = field.shape[-1]
            return 0.5 * (field ** 2).sum(-1) - 0.5 * (b ** 2).sum(-1) + 0.5 * d * math.log(2 * math.pi)
        return torch.logsumexp(field.reshape(*field.shape[:-1], -1, self.groups), -1).sum(-1)

    def base_sample(self, n: int, b: torch.Tensor) -> torch.Tensor:
        """Draws from the RBM with W = 0, c = 0 and visible bias ``b`` (the AIS start)."""
        zeros = torch.zeros(n, 0, dtype=b.dtype, device=b.device)
        empty = RBMParams(b, torch.zeros(len(b), 0, dtype=b.dtype, device=b.device), zeros[0])
        return self.sample_visible(zeros, empty)[0]


class RBM(Model):
    r"""A restricted Boltzmann machine trained by MCMC (contrastive divergence).

    ``fit`` (engine ``"mcmc"``) runs CD-k (``method="cd"``), persistent CD
    (``"pcd"``, the default) or persistent chains with parallel tempering
    (``"pt"``) on minibatches; its block-Gibbs sampler is also a Pyro
    ``MCMCKernel`` (``gibbs_kernel()``, ``gibbs_chains()``) for ``pyro.infer.MCMC``.
    ``log_prob`` is exact (enumeration of the smaller layer) when that layer has
    at most 20 units and annealed importance sampling otherwise (Salakhutdinov &
    Murray 2008; ``log_partition()`` also returns its standard error).

    Arguments:
        num_visible: visible units (for ``"softmax"``: units, each over ``num_categories``).
        num_hidden: binary hidden units.
        visible: ``"bernoulli"`` (data in {0, 1}), ``"gaussian"`` (unit variance; standardise
            the data) or ``"softmax"`` (data: integer categories per unit).
        num_categories: categories per softmax unit.
        k: Gibbs steps per update.
        method: ``"cd"``, ``"pcd"`` or ``"pt"``.
        num_temperatures: chains of parallel tempering, at β = 1, 1 − 1/T, ..., 1/T along the
            path from the base model (the data marginals) to the RBM.
        momentum: SGD momentum of the updates.
        weight_decay: L2 penalty on W.

    References:
        Hinton, Training products of experts by minimizing contrastive divergence, 2002.
        Tieleman, Training RBMs using approximations to the likelihood gradient (PCD), ICML 2008.
        Salakhutdinov & Murray, On the quantitative analysis of deep belief networks, ICML 2008.

    Example:
        >>> import torch, probgen
        >>> x = (torch.rand(200, 6) < torch.tensor([0.9, 0.9, 0.1, 0.1, 0.5, 0.5])).float()
        >>> rbm = probgen.models.RBM(num_visible=6, num_hidden=4)
        >>> _ = rbm.fit(x, epochs=20, batch_size=20, lr=0.1, progress=False, seed=0)
        >>> bool(rbm.log_prob(x).mean() > -6 * math.log(2))   # beats the uniform distribution
        True
    """

    family = "rbm"
    renamed_config_keys = {"n_visible": "num_visible", "n_hidden": "num_hidden", "n_categories": "num_categories",
                           "n_temperatures": "num_temperatures"}
    default_inference = "mcmc"
    log_prob_kind = "estimate"

    def __init__(self, num_visible: int, num_hidden: int, visible: str = "bernoulli", num_categories: int = 2,
                 k: int = 1, method: str = "pcd", num_temperatures: int = 5, momentum: float = 0.5,
                 weight_decay: float = 0.0, init_scale: float = 0.01):
        check_positive("num_visible", num_visible, integer=True)
        check_positive("num_hidden", num_hidden, integer=True)
        check_choice("visible", visible, VISIBLE)
        check_positive("num_categories", num_categories, integer=True)
        if visible == "softmax" and num_categories < 2:
            raise ValueError(f"num_categories: softmax units need at least 2 categories, got {num_categories}")
        check_positive("k", k, integer=True)
        check_choice("method", method, METHODS)
        check_positive("num_temperatures", num_temperatures, integer=True)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        check_positive("weight_decay", weight_decay, strict=False)
        check_positive("init_scale", init_scale, strict=False)
        super().__init__()
        self.num_visible, self.num_hidden, self.visible = int(num_visible), int(num_hidden), visible
        self.num_categories = int(num_categories) if visible == "softmax" else 1
        self.k, self.method, self.num_temperatures = int(k), method, int(num_temperatures)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.units = _Units(visible, self.num_categories)
        dv = self.num_visible * self.num_categories
        g = torch.Generator().manual_seed(0)
        self.register_buffer("W", init_scale * torch.randn(dv, self.num_hidden, generator=g))
        self.register_buffer("b", torch.zeros(dv))
        self.register_buffer("c", torch.zeros(self.num_hidden))
        self.register_buffer("base_bias", torch.zeros(dv))  # visible bias of the AIS base model
        self._reset_state()
        self.register_load_state_dict_post_hook(lambda module, keys: module._reset_state())

    def _reset_state(self) -> None:
        # training state in a plain dict: persistent particles, momentum, cached
        # (log Z, standard error, method); nn.Module attribute writes are slow per step
        object.__setattr__(self, "_train_state", {"chains": None, "chain_ph": None, "velocity": None, "logz": None,
                                                  "loss": None, "velocity_aug": None})
        object.__setattr__(self, "_lr", 0.05)

    @property
    def params(self) -> RBMParams:
        return RBMParams(self.b, self.W, self.c)

    # ------------------------------------------------------------------ data
    def _visible(self, x: Any, name: str = "x") -> torch.Tensor:
        """Data to the (n, Dv) float visible representation, with the checks of the unit type."""
        if hasattr(x, "flat") and hasattr(x, "x"):  # a probgen Dataset
            x = x.flat()
        if self.visible == "softmax":
            t = as_tensor(x, name, dtype=torch.long, ndim=(1, 2), device=self.W.device)
            t = flat_rows(t) if t.dim() == 2 else t[None]
            if t.shape[1] != self.num_visible:
                raise ValueError(f"{name}: expected {self.num_visible} categorical values per row, got {t.shape[1]}")
            if len(t) and (t.min() < 0 or t.max() >= self.num_categories):
                raise ValueError(f"{name}: softmax units take categories in [0, {self.num_categories - 1}], "
                                 f"got range [{int(t.min())}, {int(t.max())}]")
            return F.one_hot(t, self.num_categories).float().reshape(len(t), -1)
        t = as_tensor(x, name, device=self.W.device)
        t = flat_rows(t) if t.dim() > 1 else t.reshape(1, -1)
        if t.shape[1] != self.num_visible:
            raise ValueError(f"{name}: expected {self.num_visible} visible values per row, got shape {tuple(t.shape)}")
        if self.visible == "bernoulli":
            check_binary(t, name)
        return t

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor]:
        v = self._visible(data, name)
        if len(v) == 0:
            raise ValueError(f"{name}: expected at least one example, got none")
        return (v,)

    # -------------------------------------------------------------- training
    @implements("mcmc")
    def _fit_mcmc(self, data: Any, k: int | None = None, method: str | None = None, **options: Any) -> FitResult:
        """CD-k / PCD / PT through probgen's mcmc engine (which runs ``mcmc_step`` per minibatch).

        ``k`` and ``method`` override the constructor's for this fit; ``lr`` defaults to 0.05.
        """
        from ...infer.mcmc import fit_mcmc

        if k is not None:
            self.k = int(check_positive("k", k, integer=True))
        if method is not None:
            self.method = check_choice("method", method, METHODS)
        options.setdefault("lr", 0.05)
        object.__setattr__(self, "_lr", float(check_positive("lr", options["lr"])))
        (v,) = self.prepare_data(data)
        self._set_base(v)
        self._train_state.update(chains=None, chain_ph=None, velocity=None, logz=None, loss=None, velocity_aug=None)
        result = fit_mcmc(self, data, **options)
        self._train_state.update(chains=None, chain_ph=None, velocity=None, velocity_aug=None)
        return result

    def _set_base(self, v: torch.Tensor) -> None:
        # AIS base model: the maximum-likelihood model with W = 0 (the data's marginals), as in
        # Salakhutdinov & Murray (2008); its visible bias is also a good initial b.
        mean = v.mean(0)
        if self.visible == "bernoulli":
            m = mean.clamp(1e-3, 1 - 1e-3)
            base = torch.log(m) - torch.log1p(-m)
        elif self.visible == "gaussian":
            base = mean
        else:
            base = torch.log(mean.reshape(-1, self.num_categories).clamp_min(1e-3)).reshape(-1)
        self.base_bias = base.to(self.W)
        if not self._fitted:  # a first fit starts the visible bias at the data marginals
            self.b = base.clone().to(self.W)
            self._fitted = True

    _fitted = False

    def get_state_json(self) -> dict:
        return {"fitted": self._fitted}

    def set_state_json(self, state: dict) -> None:
        self._fitted = bool(state.get("fitted", False))

    def _gibbs(self, v: torch.Tensor, p: RBMParams, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``steps`` block-Gibbs sweeps v -> h -> v; returns the last v and p(h | v)."""
        for _ in range(steps):
            h = _bernoulli(self.units.hidden_prob(v, p))
            v = self.units.sample_visible(h, p)[0]
        return v, self.units.hidden_prob(v, p)

    def _negative(self, v0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative particles and their p(h | v) for this update."""
        p = self.params
        state = self._train_state
        if self.method == "cd":
            return self._gibbs(v0, p, self.k)
        if state.get("chains") is None:  # the persistent particles: as many as the first minibatch
            start = self.units.base_sample(len(v0), self.base_bias)
            state["chains"] = start if self.method == "pcd" else start.expand(self.num_temperatures, *start.shape).clone()
        if self.method == "pcd":
            # keep p(h | particles) from the last update, as scikit-learn's PCD does: one
            # sweep then starts from h, saving a matrix product per update
            ph = state.get("chain_ph")
            if ph is None:
                ph = self.units.hidden_prob(state["chains"], p)
            for _ in range(self.k):
                v = self.units.sample_visible(_bernoulli(ph), p)[0]
                ph = self.units.hidden_prob(v, p)
            state["chains"], state["chain_ph"] = v, ph
            return v, ph
        v = self._tempering_step(p)
        return v, self.units.hidden_prob(v, p)

    def _tempering_step(self, p: RBMParams) -> torch.Tensor:
        """One parallel-tempering round: k Gibbs sweeps at every temperature, then swaps of neighbours."""
        betas = torch.linspace(1.0, 0.0, self.num_temperatures + 1, device=self.W.device)[:-1]
        chains = self._train_state["chains"]
        for t, beta in enumerate(betas.tolist()):
            chains[t] = self._gibbs(chains[t], p.scaled(beta, self.base_bias), self.k)[0]
        for t in range(self.num_temperatures - 1):
            lo, hi = p.scaled(float(betas[t]), self.base_bias), p.scaled(float(betas[t + 1]), self.base_bias)
            a, b = chains[t], chains[t + 1]
            # swap acceptance: f_t(b) f_{t+1}(a) / (f_t(a) f_{t+1}(b)), with f = exp(-F)
            log_r = (self.units.neg_free_energy(b, lo) + self.units.neg_free_energy(a, hi)
                     - self.units.neg_free_energy(a, lo) - self.units.neg_free_energy(b, hi))
            swap = (torch.rand_like(log_r).log() < log_r)[:, None]
            chains[t], chains[t + 1] = torch.where(swap, b, a), torch.where(swap, a, b)
        self._train_state["chains"] = chains
        return chains[0]

    def mcmc_step(self, batch: tuple[torch.Tensor, ...], step: int) -> dict:
        """One contrastive-divergence update on a minibatch (called by the mcmc engine).

        Written with in-place torch ops and no autograd: the CD gradient is the
        difference of two outer-product averages, and on small minibatches the
        per-op overhead is the cost (the bench compares it with scikit-learn).
        The recorded ``loss`` is the squared reconstruction error of a minibatch, measured
        every 10th update.
        """
        v0 = batch[0]
        W, b, c = self.W, self.b, self.c
        ph0 = torch.sigmoid(torch.addmm(c, v0, W))
        vk, phk = self._negative(v0)
        n, m = len(v0), len(vk)
        lr, state = self._lr, self._train_state
        grad_w = torch.addmm(v0.T @ ph0, vk.T, phk, beta=1.0 / n, alpha=-1.0 / m)
        if self.weight_decay:
            grad_w.add_(W, alpha=-self.weight_decay)
        grads = (grad_w, v0.mean(0) - vk.mean(0), ph0.mean(0) - phk.mean(0))
        if self.momentum:
            if state.get("velocity") is None:
                state["velocity"] = [torch.zeros_like(g) for g in grads]
            for vel, g, param in zip(state["velocity"], grads, (W, b, c)):
                param.add_(vel.mul_(self.momentum).add_(g, alpha=lr))
        else:
            for g, param in zip(grads, (W, b, c)):
                param.add_(g, alpha=lr)
        state["logz"] = None
        if step % 10 == 0 or state.get("loss") is None:  # measured every 10th update, carried in between
            recon = self.units.visible_mean(ph0, self.params)
            state["loss"] = float(torch.sum((recon - v0) ** 2)) / n
        return {"loss": state["loss"]}

    def mcmc_steps(self, tensors: tuple[torch.Tensor, ...], rows: torch.Tensor, batch_size: int, step: int) -> dict:
        """The updates of the minibatches ``rows[:batch_size]``, ``rows[batch_size:2 * batch_size]``, ...
        in one call (the mcmc engine's fused path; one history row per call).

        Bernoulli units with CD-k or PCD-k run the fused loop of ``_fused_cd``: the same
        updates as ``mcmc_step``, with the epoch's random numbers drawn up front. Other
        units and tempering run ``mcmc_step`` per minibatch. The returned ``loss`` is the
        mean squared reconstruction error of every 10th minibatch of the call (from its first).
        """
        x = tensors[0]
        if self.visible != "bernoulli" or self.method == "pt":
            losses = []
            for j, start in enumerate(range(0, len(rows), batch_size)):
                if j % 10 == 0:
                    self._train_state["loss"] = None  # measure on this minibatch
                record = self.mcmc_step((x[rows[start:start + batch_size]],), step + j)
                if j % 10 == 0:
                    losses.append(record["loss"])
            return {"loss": float(np.mean(losses))}
        n_full, rest = divmod(len(rows), batch_size)
        losses: list[torch.Tensor] = []
        with torch.no_grad():
            wa = _augment(self.W, self.b, self.c)
            state = self._train_state
            if self.momentum and state["velocity_aug"] is None:
                state["velocity_aug"] = torch.zeros_like(wa)
            # workspace of at most ~4M numbers per group of minibatches
            dv, nh = wa.shape[0] - 1, wa.shape[1] - 1
            per_step = 2 * batch_size * (dv + nh + 2) + self.k * batch_size * (dv + nh + 2)
            group = max(1, (1 << 22) // per_step)
            done = 0
            for start in range(0, n_full, group):
                size = min(group, n_full - start)
                self._fused_group(x, rows[start * batch_size:(start + size) * batch_size].reshape(size, batch_size),
                                  wa, losses, first_local=done)
                done += size
            if rest:
                self._fused_group(x, rows[n_full * batch_size:].reshape(1, rest), wa, losses, first_local=done)
            self.W.copy_(wa[:-1, :-1])
            self.b.copy_(wa[:-1, -1])
            self.c.copy_(wa[-1, :-1])
            state["logz"] = None
            loss = float(torch.stack(losses).mean())
        state["loss"] = loss
        return {"loss": loss}

    def _fused_group(self, x: torch.Tensor, rows: torch.Tensor, wa: torch.Tensor, losses: list, first_local: int) -> None:
        """Workspace and random numbers for ``len(rows)`` minibatches of ``rows.shape[1]`` rows, then ``_fused_cd``."""
        steps, n = rows.shape
        state = self._train_state
        persistent = self.method == "pcd"
        dv, nh = wa.shape[0] - 1, wa.shape[1] - 1
        if persistent and state["chains"] is None:  # the persistent particles: as many as the first minibatch
            state["chains"] = self.units.base_sample(n, self.base_bias)
        m = len(state["chains"]) if persistent else n
        ph_chain = None
        if persistent:
            ph = state["chain_ph"]
            if ph is None:
                ph = self.units.hidden_prob(state["chains"], self.params)
            ph_chain = torch.cat([ph, torch.ones(m, 1, dtype=ph.dtype, device=ph.device)], 1)
        # rows [:n] the minibatch, [n:] the negative particles (uniforms until drawn); last column 1
        v = torch.empty(steps, n + m, dv + 1, dtype=wa.dtype, device=wa.device)
        v[:, :n, :dv] = x[rows.reshape(-1)].reshape(steps, n, dv)
        v[:, :, dv] = 1.0
        v[:, n:, :dv].uniform_()
        u_hidden = torch.rand(steps, self.k, m, nh + 1, dtype=wa.dtype, device=wa.device)
        v_mid = torch.empty(steps, self.k - 1, m, dv + 1, dtype=wa.dtype, device=wa.device)
        v_mid[..., dv] = 1.0
        v_mid[..., :dv].uniform_()
        loss_at = [j for j in range(steps) if (first_local + j) % 10 == 0]
        ph_last = _fused_cd(wa, v, u_hidden, v_mid, n, persistent, self._lr, self.momentum, self.weight_decay,
                            state["velocity_aug"], ph_chain, loss_at, losses)
        if persistent:
            state["chains"] = v[-1, n:, :dv].clone()
            state["chain_ph"] = ph_last

    def validation_loss(self, v: torch.Tensor) -> float:
        """Mean squared reconstruction error (one v -> h -> v pass)."""
        ph = self.units.hidden_prob(v, self.params)
        return float(((self.units.visible_mean(ph, self.params) - v) ** 2).sum(1).mean())

    # ------------------------------------------------------------ likelihood
    def free_energy(self, x: Any) -> torch.Tensor:
        """F(v) = -log Σ_h exp(-E(v, h)) per example (lower = more probable)."""
        with torch.no_grad():
            return -self.units.neg_free_energy(self._visible(x), self.params)

    def exact_log_partition(self) -> float:
        """log Z by enumerating the hidden layer (or the visible layer of a Bernoulli RBM), ≤ 20 units."""
        p = self.params
        with torch.no_grad():
            if self.num_hidden <= MAX_ENUMERATION:
                total = []
                for h in _binary_configurations(self.num_hidden, self.W):
                    field = torch.addmm(p.b, h, p.W.T)
                    total.append(h @ p.c + self.units.log_partition_visible(field, p.b))
                return float(torch.logsumexp(torch.cat(total), 0))
            if self.visible == "bernoulli" and self.num_visible <= MAX_ENUMERATION:
                total = [self.units.neg_free_energy(v, p) for v in _binary_configurations(self.num_visible, self.W)]
                return float(torch.logsumexp(torch.cat(total), 0))
        raise ValueError(f"exact_log_partition: both layers have more than {MAX_ENUMERATION} units; use AIS")

    def ais_log_partition(self, num_chains: int = 100, num_betas: int = 10_000, seed: int | None = 0,
                          progress: bool = False) -> tuple[float, float]:
        """Annealed importance sampling estimate of log Z and its standard error.

        The path runs from the base model (W = 0, visible bias = the data marginals)
        to this RBM through the RBMs with visible bias interpolated and W, c scaled by
        β ∈ [0, 1]; each step is one Gibbs sweep. The standard error is the delta-method
        one of log(mean of the importance weights); it does not see the downward bias of
        log Ẑ when there are too few temperatures for a sharp model (raise ``num_betas``
        until the estimate stops growing).
        """
        check_positive("num_chains", num_chains, integer=True)
        check_positive("num_betas", num_betas, integer=True)
        p, base = self.params, self.base_bias
        # Salakhutdinov & Murray's schedule shape (500 / 4,000 / 10,000 of 14,500 temperatures in
        # [0, 0.5] / [0.5, 0.9] / [0.9, 1]): most steps near beta = 1, where the RBM is sharpest
        n1, n2 = max(2, round(num_betas * 500 / 14_500)), max(2, round(num_betas * 4_000 / 14_500))
        n3 = max(2, num_betas - n1 - n2)
        betas = torch.cat([torch.linspace(0, 0.5, n1 + 1)[:-1], torch.linspace(0.5, 0.9, n2 + 1)[:-1],
                           torch.linspace(0.9, 1.0, n3)]).tolist()
        with seeded(seed), torch.no_grad():
            v = self.units.base_sample(num_chains, base)
            log_w = torch.zeros(num_chains, dtype=torch.float64, device=self.W.device)
            prev = 0.0
            for beta in progress_bar(betas[1:], enabled=progress, desc="AIS"):
                # W and c scale with beta, so one product c + vW serves both free energies and the
                # hidden conditional: two matrix products per temperature instead of four
                act = torch.addmm(p.c, v, p.W)
                b_cur, b_prev = base + beta * (p.b - base), base + prev * (p.b - base)
                log_w += (self.units.visible_term(v, b_cur) - self.units.visible_term(v, b_prev)
                          + (F.softplus(beta * act) - F.softplus(prev * act)).sum(-1)).double()
                h = _bernoulli(torch.sigmoid(beta * act))
                v = self.units.sample_visible(h, p.scaled(beta, base))[0]
                prev = beta
        log_z0 = self.num_hidden * math.log(2) + float(self.units.log_partition_visible(base[None], base)[0])
        mean_log_w = float(torch.logsumexp(log_w, 0) - math.log(num_chains))
        w = torch.exp(log_w - log_w.max())
        se = float(w.std() / (w.mean() * math.sqrt(num_chains))) if num_chains > 1 else float("nan")
        self._train_state["ais_chains"] = num_chains
        warn_ais(se, num_chains)  # a probgen.FitWarning when the standard error is large
        return log_z0 + mean_log_w, se

    def fit_diagnostics(self) -> list[dict]:
        """Rows for ``FitResult.diagnostics()``: the AIS standard error, once log Z has been estimated."""
        cached = self._train_state["logz"]
        if cached is None or cached[2] != "ais":
            return []
        return [ais_check(cached[1], self._train_state.get("ais_chains", 0))]

    def log_partition(self, method: str = "auto", **ais_options: Any) -> tuple[float, float, str]:
        """(log Z, standard error, method): exact when a layer has ≤ 20 units (``"auto"``), else AIS."""
        check_choice("method", method, ("auto", "exact", "ais"))
        small = self.num_hidden <= MAX_ENUMERATION or (self.visible == "bernoulli" and self.num_visible <= MAX_ENUMERATION)
        use = ("exact" if small else "ais") if method == "auto" else method
        cached = self._train_state["logz"]
        if cached is not None and cached[2] == use and not ais_options:
            return cached
        if use == "exact":
            out = (self.exact_log_partition(), 0.0, "exact")
        else:
            out = (*self.ais_log_partition(**ais_options), "ais")
        self._train_state["logz"] = out
        return out

    def log_prob(self, x: Any) -> torch.Tensor:
        """log p(v) = -F(v) - log Z per example (exact for small models, AIS estimate otherwise)."""
        log_z = self.log_partition()[0]
        return -self.free_energy(x) - log_z

    def score(self, x: Any) -> torch.Tensor:
        """The free energy (higher = less probable; needs no partition function)."""
        return self.free_energy(x)

    # --------------------------------------------------------------- queries
    def transform(self, x: Any) -> torch.Tensor:
        """Hidden features p(h = 1 | v)."""
        with torch.no_grad():
            return self.units.hidden_prob(self._visible(x), self.params)

    encode = transform

    def decode(self, h: Any) -> torch.Tensor:
        """Visible means given hidden values."""
        h = as_tensor(h, "h", ndim=2, shape=(self.num_hidden,), device=self.W.device)
        with torch.no_grad():
            return self._output(self.units.visible_mean(h, self.params))

    def _output(self, v: torch.Tensor) -> torch.Tensor:
        if self.visible == "softmax":
            return v.reshape(len(v), self.num_visible, self.num_categories).argmax(-1)
        return v

    def _sample(self, n: int, steps: int = 1000, mean: bool = False, start: Any = None) -> torch.Tensor:
        """``n`` independent Gibbs chains run ``steps`` sweeps from the base model (or from ``start``).

        ``mean=True`` returns the visible means of the last sweep (smoother images).
        """
        check_positive("steps", steps, integer=True)
        v = self.units.base_sample(n, self.base_bias) if start is None else self._visible(start, "start")
        if len(v) != n:
            raise ValueError(f"start: expected {n} rows, got {len(v)}")
        p = self.params
        v, ph = self._gibbs(v, p, steps)
        if mean:
            return self.units.visible_mean(torch.bernoulli(ph), p) if self.visible != "softmax" else self._output(v)
        return self._output(v)

    # ------------------------------------------------------------- Pyro MCMC
    def gibbs_kernel(self, num_particles: int = 1) -> "BlockGibbsKernel":
        """A ``pyro.infer.mcmc.MCMCKernel`` doing one block-Gibbs sweep per ``sample`` call."""
        return BlockGibbsKernel(self, num_particles=num_particles)

    mcmc_kernel = gibbs_kernel

    def gibbs_chains(self, num_samples: int = 500, warmup_steps: int = 100, num_chains: int = 2,
                     seed: int = 0, progress: bool = False):
        """Run ``pyro.infer.MCMC`` with the Gibbs kernel; returns ArviZ ``InferenceData``.

        The chains' variables are ``v`` (visible vector) and ``free_energy`` (a scalar
        trace to diagnose with r-hat and ESS). Chains run one after the other, each
        from its own seed (as the mcmc engine does).
        """
        import arviz as az
        from pyro.infer import MCMC

        draws = []
        for chain in range(num_chains):
            with seeded(seed + chain):
                mcmc = MCMC(self.gibbs_kernel(), num_samples=num_samples, warmup_steps=warmup_steps,
                            disable_progbar=not progress)
                mcmc.run()
            draws.append(mcmc.get_samples())
        posterior = {k: torch.stack([d[k] for d in draws]).squeeze(2).cpu().numpy() for k in draws[0]}
        return az.from_dict(posterior=posterior)

    # -------------------------------------------------------------- examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        proto = torch.tensor([[1, 1, 1, 0, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 0, 1]], dtype=torch.float32)
        x = proto[torch.randint(0, 2, (64,), generator=g)]
        x = torch.where(torch.rand(x.shape, generator=g) < 0.1, 1 - x, x)
        return ContractCase(cls(num_visible=8, num_hidden=4), x, {"epochs": 5, "batch_size": 16, "lr": 0.1},
                            sample_kwargs={"steps": 20}, log_prob_data=x[:6])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """PCD on binarized digits: learned filters, Gibbs samples, and features that help a classifier."""
        import os

        import matplotlib.pyplot as plt
        from sklearn.linear_model import LogisticRegression

        import probgen
        from ... import plot
        from ...gallery import TourSection, demo_source

        epochs = 5 if quick else 40

        def demo():
            train = probgen.datasets.load("digits_binary", split="train")
            test = probgen.datasets.load("digits_binary", split="test")
            rbm = probgen.models.RBM(num_visible=64, num_hidden=100, method="pcd")
            rbm.fit(train.flat(), epochs=epochs, batch_size=20, lr=0.05, seed=0, progress=False)
            samples = rbm.sample(30, seed=0, steps=1000)  # block Gibbs from random starts
            fit_lr = lambda x, y: LogisticRegression(max_iter=3000).fit(x, y)  # noqa: E731
            raw = fit_lr(train.flat(), train.y).score(test.flat(), test.y)
            feat = fit_lr(rbm.transform(train.flat()), train.y).score(rbm.transform(test.flat()), test.y)
            return rbm, samples, raw, feat

        rbm, samples, raw, feat = demo()
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.2))
        plot.sample_grid(rbm.W.T[:36].reshape(-1, 1, 8, 8), nrow=6, ax=left, title="36 of the 100 learned filters")
        plot.sample_grid(samples.reshape(-1, 1, 8, 8), nrow=6, ax=right, title="30 Gibbs samples (1,000 sweeps)")
        path = plot.save_figure(fig, os.path.join(out_dir, "rbm.png"))
        return TourSection(cls.family, "RBM on binarized 8x8 digits (persistent contrastive divergence)",
                           [(path, "left: weights of 36 hidden units, as images; right: samples of the model's "
                                   "block Gibbs chain")],
                           {"logistic regression on RBM features": f"{feat:.3f} test accuracy (raw pixels {raw:.3f})"},
                           demo_source(demo, epochs=epochs), "works" if feat >= raw - 0.01 else "limited")


class BlockGibbsKernel(MCMCKernel):
    """Block Gibbs for an RBM as a Pyro MCMC kernel: each step samples h | v, then v | h.

    The state is ``{"v": (num_particles, Dv), "free_energy": (num_particles,)}``;
    the kernel leaves the RBM's distribution over v invariant.

    Example:
        >>> import torch, pyro, probgen
        >>> rbm = probgen.models.RBM(num_visible=5, num_hidden=3)
        >>> mcmc = pyro.infer.MCMC(rbm.gibbs_kernel(), num_samples=20, warmup_steps=5, disable_progbar=True)
        >>> mcmc.run()
        >>> mcmc.get_samples()["v"].shape
        torch.Size([20, 1, 5])
    """

    def __init__(self, rbm: RBM, num_particles: int = 1):
        check_positive("num_particles", num_particles, integer=True)
        self.rbm, self.num_particles = rbm, int(num_particles)
        self.transforms = {}  # the state is unconstrained: Pyro needs no transforms
        self._initial = None
        self._steps = 0

    def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None:
        self._steps = 0
        if self._initial is None:
            with torch.no_grad():
                v = self.rbm.units.base_sample(self.num_particles, self.rbm.base_bias)
            self._initial = self._state(v)

    def _state(self, v: torch.Tensor) -> dict:
        return {"v": v, "free_energy": -self.rbm.units.neg_free_energy(v, self.rbm.params)}

    @property
    def initial_params(self) -> dict:
        return self._initial

    @initial_params.setter
    def initial_params(self, params: dict) -> None:
        self._initial = self._state(params["v"].reshape(self.num_particles, -1).to(self.rbm.W))

    def sample(self, params: dict) -> dict:
        self._steps += 1
        with torch.no_grad():
            v = self.rbm._gibbs(params["v"], self.rbm.params, 1)[0]
            return self._state(v)

    def logging(self) -> dict:
        return {"sweeps": self._steps}


def _augment(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``[[W, b], [c, 0]]``, (Dv + 1, H + 1): with a 1 appended to v and to h, ``[v, 1] @ A[:, :H] = vW + c``,
    ``[h, 1] @ A[:Dv].T = Wh + b``, and ``[v, 1]ᵀ [p, 1]`` holds the gradients of W, b and c at once."""
    top = torch.cat([W, b[:, None]], 1)
    return torch.cat([top, torch.cat([c, c.new_zeros(1)])[None]], 0)


def _fused_cd(wa: torch.Tensor, v: torch.Tensor, u_hidden: torch.Tensor, v_mid: torch.Tensor, n: int,
              persistent: bool, lr: float, momentum: float, weight_decay: float, velocity: torch.Tensor | None,
              ph_chain: torch.Tensor | None, loss_at: list[int], losses: list) -> torch.Tensor:
    """CD-k (``persistent=False``) or PCD-k updates of the augmented parameters ``wa`` (see ``_augment``), in place.

    Hand-written for speed: on minibatches of 10 each torch call costs more in dispatch than
    in arithmetic, and autograd plus an optimizer would add a dozen calls per update. With
    the bias rows folded into ``wa`` and a ones column in the workspaces, one update is 8
    torch calls (PCD-1, no momentum): draw h, visible means, draw v, the hidden
    probabilities of data and particles in one product, and the three gradients in one
    ``addmm_``. The random numbers of every update are drawn before the loop; all views
    into the workspaces are made once (``unbind``).

    Arguments (``S`` updates, ``m`` negative particles, ``k`` Gibbs sweeps):
        v: (S, n + m, Dv + 1); ``[:, :n, :Dv]`` the minibatches, ``[:, n:, :Dv]`` uniforms that become
            the last sweep's visible samples, column Dv all ones.
        u_hidden: (S, k, m, H + 1) uniforms for the hidden draws (the last column is unused).
        v_mid: (S, k - 1, m, Dv + 1) like ``v[:, n:]``, for the visible draws of the sweeps before the last.
        ph_chain: (m, H + 1) p(h | particles) with a ones column, for PCD (CD starts from the data).
        loss_at: updates whose squared reconstruction error (before the update) is appended to ``losses``.

    Returns p(h | last particles), (m, H).
    """
    steps, rows, dv1 = v.shape
    dv, nh, m, k = dv1 - 1, wa.shape[1] - 1, rows - n, u_hidden.shape[1]
    p = torch.empty(steps, rows, nh + 1, dtype=wa.dtype, device=wa.device)
    p[:, :, nh] = 1.0
    w_hidden, w_visible_t, w_only = wa[:, :nh], wa[:dv, :].T, wa[:dv, :nh]
    scale = torch.cat([torch.full((n, 1), 1.0 / n), torch.full((m, 1), -1.0 / m)]).to(wa)
    scaled = torch.empty(rows, nh + 1, dtype=wa.dtype, device=wa.device)
    v_all, v_t, v_pos, v_neg, v_neg_aug = (v.unbind(0), v.transpose(1, 2).unbind(0), v[:, :n, :dv].unbind(0),
                                           v[:, n:, :dv].unbind(0), v[:, n:].unbind(0))
    p_all, p_h, p_pos, p_pos_h, p_neg, p_neg_h = (p.unbind(0), p[:, :, :nh].unbind(0), p[:, :n].unbind(0),
                                                  p[:, :n, :nh].unbind(0), p[:, n:].unbind(0), p[:, n:, :nh].unbind(0))
    v_pos_aug = v[:, :n].unbind(0)
    u_h = u_hidden.reshape(steps * k, m, nh + 1).unbind(0)  # update i, sweep j at i * k + j
    mid_aug = v_mid.reshape(steps * (k - 1), m, dv + 1)
    mid_all, mid_v = mid_aug.unbind(0), mid_aug[..., :dv].unbind(0)  # update i, sweep j at i * (k - 1) + j
    mid_p = torch.empty(m, nh + 1, dtype=wa.dtype, device=wa.device)
    mid_p[:, nh] = 1.0
    mid_p_h = mid_p[:, :nh]
    velocity_w = velocity[:dv, :nh] if velocity is not None else None
    loss_at = set(loss_at)
    ph = ph_chain
    for i in range(steps):
        if not persistent:  # CD: the chain starts at the data
            torch.mm(v_pos_aug[i], w_hidden, out=p_pos_h[i]).sigmoid_()
            ph = p_pos[i]
        for j in range(k):
            h = u_h[i * k + j].lt_(ph)  # Bernoulli draws in place; the last column stays 1 (u < 1)
            mean = torch.mm(h, w_visible_t).sigmoid_()
            if j < k - 1:
                mid_v[i * (k - 1) + j].lt_(mean)
                torch.mm(mid_all[i * (k - 1) + j], w_hidden, out=mid_p_h).sigmoid_()
                ph = mid_p
            else:
                v_neg[i].lt_(mean)
        if persistent:  # data and particles in one product
            torch.mm(v_all[i], w_hidden, out=p_h[i]).sigmoid_()
        else:
            torch.mm(v_neg_aug[i], w_hidden, out=p_neg_h[i]).sigmoid_()
        ph = p_neg[i]
        if i in loss_at:
            recon = torch.mm(p_pos[i], w_visible_t).sigmoid_()
            losses.append(recon.sub_(v_pos[i]).square_().sum() / n)
        torch.mul(p_all[i], scale, out=scaled)  # rows weighted +1/n (data) and -1/m (particles)
        if momentum:
            velocity.mul_(momentum).addmm_(v_t[i], scaled, alpha=lr)
            if weight_decay:
                velocity_w.add_(w_only, alpha=-lr * weight_decay)
            wa.add_(velocity)
        else:
            if weight_decay:
                w_only.mul_(1.0 - lr * weight_decay)
            wa.addmm_(v_t[i], scaled, alpha=lr)
    return p_neg_h[-1].clone()


def _bernoulli(p: torch.Tensor) -> torch.Tensor:
    # u < p is several times faster than torch.bernoulli on CPU for the small blocks CD works on
    return torch.rand_like(p).lt_(p)  # in place: the uniforms become 0.0 / 1.0


def _binary_configurations(n: int, like: torch.Tensor, chunk: int = 1 << 16):
    """All 2**n binary vectors, in chunks (as float tensors on ``like``'s device)."""
    bits = 2 ** torch.arange(n - 1, -1, -1, device=like.device)
    for start in range(0, 2 ** n, chunk):
        idx = torch.arange(start, min(2 ** n, start + chunk), device=like.device)
        yield ((idx[:, None] & bits) > 0).to(like.dtype)
