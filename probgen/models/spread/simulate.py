"""Batched stochastic simulation of spreading processes on a graph.

Discrete time, ``dt = 1``. A susceptible node v is infected in a step with
probability ``1 - exp(-beta * pressure_v)``, ``pressure_v = sum_u w_uv 1[u
infectious]`` (``A[u, v] = w_uv``), which equals ``1 - prod_u (1 - p_uv)`` with
``p_uv = 1 - exp(-beta * w_uv)``: every infectious in-neighbour tries
independently. An infectious node recovers with probability ``1 - exp(-gamma)``
per step (SEIR: E -> I with ``1 - exp(-sigma)``), so rates are per unit time.

Every step advances the whole batch of runs with one sparse product. SIS and
linear threshold use ``pressure = A^T @ infectious`` (nodes x runs, CSR). The
monotone models (SI, SIR, SEIR, cascade) use the equivalent first-passage form
(see ``_run_fpp``): one sparse (min, +) product of the nodes infected at step t
with the adjacency, so the work follows the outbreak instead of nodes x steps.

Independent cascade is the SIR case where a newly active node tries once
(recovery probability 1) with ``p_uv = 1 - (1 - p) ** w_uv``; linear threshold
activates v when the normalised weight of its active in-neighbours reaches a
threshold drawn uniformly per node and run (Kempe, Kleinberg and Tardos 2003).

:func:`gillespie` is the exact continuous-time (Gillespie) alternative for small
graphs: one run at a time in NumPy, states read at integer times.
"""

from __future__ import annotations

__all__ = ["Outbreaks", "COMPARTMENTS", "S", "E", "I", "R", "adjacency", "simulate_batch", "states_from_times", "gillespie"]

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...core.progress import progress_bar

#: compartment codes of the node states
S, E, I, R = 0, 1, 2, 3

#: compartments reported per model, as (name, code) pairs
COMPARTMENTS = {
    "SI": (("S", S), ("I", I)),
    "SIS": (("S", S), ("I", I)),
    "SIR": (("S", S), ("I", I), ("R", R)),
    "SEIR": (("S", S), ("E", E), ("I", I), ("R", R)),
    "IC": (("inactive", S), ("active", I), ("spent", R)),
    "LT": (("inactive", S), ("active", I)),
}


@dataclass
class Outbreaks:
    """Simulated outbreaks: counts per run and step, and per-node times.

    Attributes:
        counts: (runs, steps + 1, compartments) number of nodes in each compartment.
        compartments: names of the last axis of ``counts``.
        infection_time: (runs, nodes) step at which a node was first infected
            (exposed, for SEIR; activated, for cascades), ``-1`` if never; initial
            seeds have 0.
        recovery_time: (runs, nodes) step of (first) recovery, ``-1`` if never
            (SIR, SEIR, SIS, IC); ``None`` otherwise.
        onset_time: (runs, nodes) step E -> I (SEIR only), else ``None``.
        states: (runs, steps + 1, nodes) compartment codes (0=S, 1=E, 2=I, 3=R),
            only when asked for (``return_states=True``).
        times: (steps + 1,) the time of each step.
    """

    counts: torch.Tensor
    compartments: tuple[str, ...]
    infection_time: torch.Tensor
    recovery_time: torch.Tensor | None = None
    onset_time: torch.Tensor | None = None
    states: torch.Tensor | None = None
    times: torch.Tensor | None = field(default=None)

    def __len__(self) -> int:
        return len(self.counts)

    def count(self, name: str) -> torch.Tensor:
        """(runs, steps + 1) counts of the compartment ``name``."""
        if name not in self.compartments:
            raise KeyError(f"unknown compartment {name!r}; valid compartments: {', '.join(self.compartments)}")
        return self.counts[..., self.compartments.index(name)]

    @property
    def final_size(self) -> torch.Tensor:
        """(runs,) number of nodes ever infected (or activated)."""
        return (self.infection_time >= 0).sum(-1)

    def new_cases(self) -> torch.Tensor:
        """(runs, steps) number of new infections (exposures for SEIR) in each step."""
        t = self.infection_time
        steps = self.counts.shape[1] - 1
        out = torch.zeros(t.shape[0], steps + 1, dtype=torch.long, device=t.device)
        ok = t >= 1
        rows = torch.arange(t.shape[0], device=t.device)[:, None].expand_as(t)
        out.index_put_((rows[ok], t[ok]), torch.ones_like(t[ok]), accumulate=True)
        return out[:, 1:]

    def run(self, k: int) -> "Outbreaks":
        """The ``k``-th run alone, as an ``Outbreaks`` of one run."""
        pick = lambda x: None if x is None else x[k:k + 1]  # noqa: E731
        return Outbreaks(pick(self.counts), self.compartments, pick(self.infection_time), pick(self.recovery_time),
                         pick(self.onset_time), pick(self.states), self.times)


def adjacency(edges: torch.Tensor, weights: torch.Tensor, n: int, device: Any = None) -> torch.Tensor:
    """``A^T`` in CSR form: row v holds the weights of the edges u -> v."""
    dst, src = edges[1], edges[0]
    # indices come from a validated graph: no invariant check needed (and saying so silences torch's warning)
    coo = torch.sparse_coo_tensor(torch.stack([dst, src]), weights.to(torch.float32), (n, n),
                                  check_invariants=False).coalesce()
    with warnings.catch_warnings():
        # torch notes once per process that CSR support is "in beta"; it tells a probgen user nothing
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        csr = coo.to_sparse_csr()
    return csr.to(device) if device is not None else csr


def simulate_batch(at: torch.Tensor, kind: str, rates: dict[str, torch.Tensor], initial: torch.Tensor, steps: int, *,
                   chunk: int, record_states: bool = False, progress: bool = True) -> Outbreaks:
    """Simulate ``initial.shape[1]`` runs for ``steps`` steps, ``chunk`` runs at a time.

    Arguments:
        at: ``A^T`` (nodes x nodes, sparse CSR), see :func:`adjacency`.
        kind: "SI", "SIS", "SIR", "SEIR", "IC" or "LT".
        rates: tensors broadcastable to (runs,): ``beta`` (per-edge hazard;
            IC passes ``-log(1 - p)``), ``gamma``, ``sigma`` where used.
        initial: (nodes, runs) int8 initial states: S, I, or R (immune).
        steps: number of steps.
        chunk: runs advanced together (memory about 40 bytes x nodes x chunk).
        record_states: also return every state (runs, steps + 1, nodes).
    """
    n, runs = initial.shape
    device = initial.device
    monotone = kind != "SIS"
    inf_time = torch.full((runs, n), -1, dtype=torch.long, device=device)
    ons_time = inf_time.clone() if kind == "SEIR" else None
    rec_time = inf_time.clone() if kind in ("SIR", "SEIR", "IC", "SIS") else None
    immune = (initial == R).T.contiguous()
    counts = None if monotone else torch.zeros(runs, steps + 1, 2, dtype=torch.long, device=device)
    states = torch.zeros(runs, steps + 1, n, dtype=torch.int8, device=device) if (record_states and not monotone) else None
    out_csr = _out_csr(at) if kind in ("SI", "SIR", "SEIR", "IC") else None
    bar = progress_bar(total=runs * steps, enabled=progress, desc=f"simulate {kind}")
    for lo in range(0, runs, chunk):
        hi = min(runs, lo + chunk)
        col = {k: _col(v, lo, hi, device) for k, v in rates.items()}
        x0 = initial[:, lo:hi]
        if kind == "SIS":
            _run_sis(at, col, x0, steps, inf_time[lo:hi], rec_time[lo:hi], counts[lo:hi],
                     None if states is None else states[lo:hi], bar)
        elif kind == "LT":
            _run_threshold(at, x0, steps, inf_time[lo:hi], bar)
        else:
            _run_fpp(out_csr, kind, col, x0, steps, inf_time[lo:hi], None if ons_time is None else ons_time[lo:hi],
                     None if rec_time is None else rec_time[lo:hi], bar)
    bar.close()
    names = tuple(name for name, _ in COMPARTMENTS[kind])
    if monotone:
        counts = _counts_from_times(kind, steps, inf_time, ons_time, rec_time, immune)
        if record_states:
            states = states_from_times(steps, inf_time, ons_time, rec_time, immune, kind)
    times = torch.arange(steps + 1, dtype=torch.float32)
    return Outbreaks(counts, names, inf_time, rec_time, ons_time, states, times)


def _run_fpp(at_out, kind, rates, x0, steps, inf_out, ons_out, rec_out, bar) -> None:
    # Event-driven and exact: with independent attempts on every edge at every step,
    # u (infected at T_u, infectious from T_u + L_u for D_u steps) infects v at
    # T_u + L_u + K_uv, K_uv ~ Geometric(1 - exp(-beta w_uv)) the step of the first
    # successful attempt (none if K_uv > D_u), and T_v is the minimum over its
    # in-neighbours: first-passage percolation. Step t is one sparse (min, +)
    # product of the nodes infected at t with the adjacency; random numbers are
    # drawn only for the edges and nodes that the epidemic reaches, so the cost
    # follows the outbreak, not nodes x steps.
    rowptr, col, wts = at_out
    n, b = x0.shape
    device = x0.device
    never = torch.iinfo(torch.int32).max
    t_inf = torch.full((n, b), never, dtype=torch.int32, device=device)
    t_inf[x0 == I] = 0
    blocked = (x0 == R).reshape(-1)
    lat = torch.zeros(n, b, dtype=torch.int32, device=device)
    dur = torch.zeros(n, b, dtype=torch.int32, device=device)
    flat_t = t_inf.view(-1)
    cap = steps + 1
    beta = rates["beta"].expand(1, b).reshape(-1)
    gamma = rates["gamma"].expand(1, b).reshape(-1) if "gamma" in rates else None
    sigma = rates["sigma"].expand(1, b).reshape(-1) if "sigma" in rates else None
    deg = rowptr[1:] - rowptr[:-1]
    # pending[t]: flat (node, run) indices that received a candidate time t; the
    # nodes infected at t are among them, so no step scans all nodes x runs
    pending: dict[int, list[torch.Tensor]] = {0: [(x0 == I).reshape(-1).nonzero()[:, 0]]}
    done = steps
    for t in range(steps + 1):
        if not pending:
            done = t
            break
        hits = pending.pop(t, None)
        if hits is None:
            bar.update(b if t < steps else 0)
            continue
        idx = torch.unique(torch.cat(hits))
        idx = idx[flat_t[idx] == t]
        if len(idx):
            u, r = idx // b, idx % b
            if kind == "SEIR":
                lu = torch.ceil(-torch.log1p(-torch.rand(len(idx), device=device)) / sigma[r]).clamp_(1, cap).int()
                if t == 0:  # the seeds are infectious at once
                    lu = torch.zeros_like(lu)
                lat.view(-1)[idx] = lu
            else:
                lu = torch.zeros(len(idx), dtype=torch.int32, device=device)
            if kind in ("SIR", "SEIR"):
                du = torch.ceil(-torch.log1p(-torch.rand(len(idx), device=device)) / gamma[r]).clamp_(1, cap).int()
            elif kind == "IC":
                du = torch.ones(len(idx), dtype=torch.int32, device=device)
            else:
                du = torch.full((len(idx),), cap, dtype=torch.int32, device=device)
            dur.view(-1)[idx] = du
            cnt = deg[u]
            total = int(cnt.sum())
            if total and t < steps:
                src = torch.repeat_interleave(torch.arange(len(idx), device=device), cnt)
                start = torch.cumsum(cnt, 0) - cnt
                e = rowptr[u][src] + torch.arange(total, device=device) - start[src]
                v = col[e]
                hazard = beta[r[src]] * wts[e]
                k = torch.ceil(-torch.log1p(-torch.rand(total, device=device)) / hazard)
                ok = k <= du[src].to(k.dtype)
                cand = (t + lu[src] + k.clamp(max=cap).int())[ok]
                target = (v * b + r[src])[ok]
                keep = ~blocked[target] & (cand <= steps) & (cand < flat_t[target])
                target, cand = target[keep], cand[keep]
                flat_t.scatter_reduce_(0, target, cand, reduce="amin")
                cand, order = torch.sort(cand)
                when, counts = torch.unique_consecutive(cand, return_counts=True)
                for w, part in zip(when.tolist(), torch.split(target[order], counts.tolist())):
                    pending.setdefault(w, []).append(part)
        bar.update(b if t < steps else 0)
    bar.update(b * max(0, steps - done))
    ever = t_inf <= steps
    ti = torch.where(ever, t_inf.long(), torch.full_like(t_inf, -1, dtype=torch.long))
    inf_out.copy_(ti.T)
    if kind == "SEIR":
        onset = ti + lat.long()
        ons_out.copy_(torch.where(ever & (onset <= steps), onset, -1).T)
        end = onset + dur.long()
    else:
        end = ti + dur.long()
    if rec_out is not None:
        rec_out.copy_(torch.where(ever & (end <= steps), end, -1).T)


def _run_threshold(at, x0, steps, inf_out, bar) -> None:
    n, b = x0.shape
    device = x0.device
    indeg = torch.sparse.mm(at, torch.ones(n, 1, device=device))
    theta = torch.rand(n, b, device=device) * indeg  # threshold on the normalised in-weight
    theta.masked_fill_(x0 == R, math.inf)
    ever = x0 == I
    acc = torch.zeros(n, b, dtype=torch.int32, device=device)
    done = steps
    for t in range(steps):
        acc += ever
        pressure = torch.sparse.mm(at, ever.to(torch.float32))
        new = ever | ((pressure >= theta) & (pressure > 0))
        bar.update(b)
        if torch.equal(new, ever):
            done = t + 1
            bar.update(b * (steps - done))
            break
        ever = new
    t_inf = torch.where(ever, done - acc.long(), -1)  # acc counts the steps a node was already active
    inf_out.copy_(t_inf.T)


def _run_sis(at, rates, x0, steps, inf_out, rec_out, counts_out, states_out, bar) -> None:
    # SIS is not monotone (nodes are infected again), so it draws one uniform per
    # node and step: infection when u > exp(-beta * pressure), recovery when
    # u < 1 - exp(-gamma); a node is S or I, never both, so one u serves both tests.
    n, b = x0.shape
    x = x0.clone()
    it, rt = inf_out.T, rec_out.T
    it.masked_fill_(x == I, 0)
    recover = -torch.expm1(-rates["gamma"])
    counts_out[:, 0, 0] = (x == S).sum(0)
    counts_out[:, 0, 1] = (x == I).sum(0)
    if states_out is not None:
        states_out[:, 0] = x.T
    u = torch.empty(n, b, device=x.device)
    for t in range(steps):
        infectious = x == I
        pressure = torch.sparse.mm(at, infectious.to(torch.float32))
        u.uniform_()
        new = (x == S) & (u > torch.exp(-rates["beta"] * pressure))
        rec = infectious & (u < recover)
        it.masked_fill_(new & (it < 0), t + 1)
        rt.masked_fill_(rec & (rt < 0), t + 1)
        x = x + (new.to(torch.int8) - rec.to(torch.int8)) * I
        ni = (x == I).sum(0)
        counts_out[:, t + 1, 1] = ni
        counts_out[:, t + 1, 0] = (x == S).sum(0)
        if states_out is not None:
            states_out[:, t + 1] = x.T
        bar.update(b)


def _counts_from_times(kind, steps, t_inf, t_ons, t_rec, immune) -> torch.Tensor:
    """(runs, steps + 1, C) compartment counts from the per-node transition times."""
    runs, n = t_inf.shape

    def reached(times):  # (runs, steps + 1): number of nodes with 0 <= time <= t
        hist = torch.zeros(runs, steps + 2, dtype=torch.long, device=times.device)
        idx = torch.where(times >= 0, times, steps + 1).clamp(max=steps + 1)
        hist.scatter_add_(1, idx, torch.ones_like(idx))
        return hist[:, :steps + 1].cumsum(1)

    n_imm = immune.sum(1, keepdim=True)
    infected = reached(t_inf)
    s = n - n_imm - infected
    if kind in ("SI", "LT"):
        return torch.stack([s, infected], -1)
    recovered = reached(t_rec) + n_imm
    if kind == "SEIR":
        onset = reached(t_ons)
        return torch.stack([s, infected - onset, onset - (recovered - n_imm), recovered], -1)
    return torch.stack([s, infected - (recovered - n_imm), recovered], -1)


def states_from_times(steps, t_inf, t_ons, t_rec, immune, kind) -> torch.Tensor:
    """(runs, steps + 1, nodes) int8 states of a monotone model from its transition times."""
    t = torch.arange(steps + 1, device=t_inf.device)[None, :, None]
    never = steps + 10

    def at_or_before(times):
        return torch.where(times >= 0, times, never)[:, None, :] <= t

    x = torch.zeros(t_inf.shape[0], steps + 1, t_inf.shape[1], dtype=torch.int8, device=t_inf.device)
    if kind == "SEIR":
        x += at_or_before(t_inf).to(torch.int8) * E
        x += at_or_before(t_ons).to(torch.int8) * (I - E)
    else:
        x += at_or_before(t_inf).to(torch.int8) * I
    if t_rec is not None:
        x += at_or_before(t_rec).to(torch.int8) * (R - I)
    x.masked_fill_(immune[:, None, :], R)
    return x


def _out_csr(at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rowptr, col, weight) of the out-edges u -> v, from ``A^T`` in CSR form."""
    coo = at.to_sparse_coo().coalesce()
    dst, src = coo.indices()
    out = torch.sparse_coo_tensor(torch.stack([src, dst]), coo.values(), coo.shape).coalesce().to_sparse_csr()
    return out.crow_indices(), out.col_indices(), out.values()


def _col(value: torch.Tensor | None, lo: int, hi: int, device) -> torch.Tensor | None:
    if value is None:
        return None
    value = torch.as_tensor(value, dtype=torch.float32, device=device)
    return value[lo:hi][None, :] if value.dim() else value


def gillespie(edges: np.ndarray, weights: np.ndarray, n: int, kind: str, rates: dict[str, float], initial: np.ndarray,
              t_max: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One exact continuous-time run (Gillespie's direct method).

    Infection of v happens at rate ``beta * sum_{u infectious} w_uv``, recovery at
    rate ``gamma``, onset (SEIR) at rate ``sigma``. Returns the states at times
    0, 1, ..., floor(t_max) (shape (steps + 1, n)) and the (continuous) infection,
    recovery and onset times (``nan`` if never).
    """
    x = initial.astype(np.int8).copy()
    src, dst = edges
    out_nbrs = [[] for _ in range(n)]
    for s_, d_, w_ in zip(src, dst, weights):
        out_nbrs[s_].append((d_, w_))
    out_idx = [np.array([d for d, _ in lst], dtype=np.int64) for lst in out_nbrs]
    out_w = [np.array([w for _, w in lst], dtype=np.float64) for lst in out_nbrs]
    beta, gamma, sigma = rates.get("beta", 0.0), rates.get("gamma", 0.0), rates.get("sigma", 0.0)
    pressure = np.zeros(n)
    for u in np.flatnonzero(x == I):
        np.add.at(pressure, out_idx[u], out_w[u])
    t_inf = np.where(x != S, 0.0, np.nan)
    t_rec = np.where(x == R, 0.0, np.nan)
    t_ons = np.where(x == I, 0.0, np.nan)
    steps = int(math.floor(t_max))
    snaps = np.zeros((steps + 1, n), dtype=np.int8)
    snaps[0] = x
    t, next_snap = 0.0, 1
    recovers = kind in ("SIR", "SEIR", "SIS")
    while True:
        r_inf = np.where(x == S, beta * pressure, 0.0)
        r_rec = np.where(x == I, gamma, 0.0) if recovers else np.zeros(n)
        r_ons = np.where(x == E, sigma, 0.0) if kind == "SEIR" else np.zeros(n)
        total = r_inf.sum() + r_rec.sum() + r_ons.sum()
        dt = rng.exponential(1.0 / total) if total > 1e-12 else math.inf
        while next_snap <= steps and t + dt >= next_snap:
            snaps[next_snap] = x
            next_snap += 1
        t += dt
        if t > t_max:
            break
        allr = np.concatenate([r_inf, r_rec, r_ons])
        k = int(np.searchsorted(np.cumsum(allr), rng.random() * total, side="right"))
        k = min(k, 3 * n - 1)
        which, v = divmod(k, n)
        if which == 0:
            x[v] = E if kind == "SEIR" else I
            t_inf[v] = t if np.isnan(t_inf[v]) else t_inf[v]
            if kind != "SEIR":
                np.add.at(pressure, out_idx[v], out_w[v])
        elif which == 1:
            x[v] = S if kind == "SIS" else R
            t_rec[v] = t if np.isnan(t_rec[v]) else t_rec[v]
            np.add.at(pressure, out_idx[v], -out_w[v])
        else:
            x[v] = I
            t_ons[v] = t
            np.add.at(pressure, out_idx[v], out_w[v])
    return snaps, t_inf, t_rec, t_ons
