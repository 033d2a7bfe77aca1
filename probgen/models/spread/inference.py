"""Likelihoods of observed outbreaks: exact chain binomial, and a mean-field one for counts.

Node-level data (the compartment of every node at every step) give the exact
likelihood of the discrete-time model in closed form. Given the states at step t,
the transitions to t + 1 are independent: a susceptible node with infection
pressure ``P = sum_u w_uv 1[u infectious]`` is infected with ``1 - exp(-beta P)``;
an infectious node recovers with ``1 - exp(-gamma)``; an exposed one becomes
infectious with ``1 - exp(-sigma)``. Grouping node-steps by their pressure gives
binomial counts (the chain binomial), the sufficient statistics that
:func:`node_level_stats` returns; the likelihood then costs O(distinct pressures),
whatever the graph size, so NUTS on the rates takes seconds.

Aggregate counts (new reported cases per step, a fraction ``rho`` reported) have
no tractable exact likelihood: it sums over every unobserved node-level path.
:func:`mean_field_cases` is the individual-based mean-field recursion (each node's
probability to be S, E, I or R; neighbours treated as independent) that gives
the expected new infections per step as a differentiable function of the rates.
"""

from __future__ import annotations

__all__ = ["NodeStats", "node_level_stats", "node_log_likelihood", "log1mexp", "mean_field_cases"]

from dataclasses import dataclass

import torch

from .simulate import E, I, R, S

#: transitions allowed between consecutive steps, per model
_ALLOWED = {
    "SI": {(S, S), (S, I), (I, I)},
    "SIS": {(S, S), (S, I), (I, I), (I, S)},
    "SIR": {(S, S), (S, I), (I, I), (I, R), (R, R)},
    "SEIR": {(S, S), (S, E), (E, E), (E, I), (I, I), (I, R), (R, R)},
    "IC": {(S, S), (S, I), (I, R), (R, R)},
    "LT": {(S, S), (S, I), (I, I), (R, R)},
}
_NAMES = {S: "S", E: "E", I: "I", R: "R"}


@dataclass
class NodeStats:
    """Sufficient statistics of node-level outbreaks for the chain-binomial likelihood.

    ``pressure[k]`` is a distinct non-zero infection pressure, ``trials[k]`` how many
    susceptible node-steps saw it, ``events[k]`` how many of those were infected;
    ``rec_trials``/``rec_events`` count infectious node-steps and recoveries;
    ``ons_trials``/``ons_events`` exposed node-steps and onsets (SEIR).
    """

    pressure: torch.Tensor
    trials: torch.Tensor
    events: torch.Tensor
    rec_trials: torch.Tensor
    rec_events: torch.Tensor
    ons_trials: torch.Tensor
    ons_events: torch.Tensor


def node_level_stats(at: torch.Tensor, kind: str, states: torch.Tensor, per_run: bool = False):
    """Chain-binomial statistics of ``states`` (runs, steps + 1, nodes).

    Raises ``ValueError`` (naming ``observed``) for codes or transitions the model
    cannot produce, and for infections of nodes with no infectious in-neighbour.
    With ``per_run`` a list of one ``NodeStats`` per run.
    """
    if per_run:
        return [node_level_stats(at, kind, states[k:k + 1]) for k in range(len(states))]
    runs, t1, n = states.shape
    x = states.long()
    before, after = x[:, :-1], x[:, 1:]
    pair = before * 4 + after
    seen = torch.unique(pair)
    allowed = {a * 4 + b for a, b in _ALLOWED[kind]}
    for code in seen.tolist():
        if code not in allowed:
            a, b = divmod(code, 4)
            raise ValueError(f"observed: transition {_NAMES.get(a, a)} -> {_NAMES.get(b, b)} between consecutive "
                             f"steps is impossible in the {kind} model")
    infectious = (before == I).to(torch.float32)  # (runs, T, n)
    flat = infectious.reshape(-1, n).T  # (n, runs*T)
    pressure = torch.sparse.mm(at, flat).T.reshape(runs, t1 - 1, n)
    sus = before == S
    infected = sus & (after != S)
    if bool((infected & (pressure <= 0)).any()):
        r, t, v = (infected & (pressure <= 0)).nonzero()[0].tolist()
        raise ValueError(f"observed: node index {v} is infected at step {t + 1} (run {r}) without any infectious "
                         "in-neighbour; infections must come from the graph (put seeds in the first step)")
    exposed = sus & (pressure > 0)
    values = pressure[exposed]
    # group equal pressures (exact for unit weights; rounding merges float noise)
    keys, inverse = torch.unique(torch.round(values * 1e6) / 1e6, return_inverse=True)
    trials = torch.zeros(len(keys)).index_add_(0, inverse, torch.ones_like(values))
    events = torch.zeros(len(keys)).index_add_(0, inverse, infected[exposed].to(torch.float32))
    inf_now = before == I
    rec_trials = inf_now.sum().to(torch.float32)
    rec_events = (inf_now & (after != I)).sum().to(torch.float32)
    exp_now = before == E
    ons_trials = exp_now.sum().to(torch.float32)
    ons_events = (exp_now & (after == I)).sum().to(torch.float32)
    return NodeStats(keys.to(torch.float32), trials, events, rec_trials, rec_events, ons_trials, ons_events)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-x))`` for x > 0, stable at both ends."""
    return torch.where(x < 0.693, torch.log(-torch.expm1(-x)), torch.log1p(-torch.exp(-x)))


def node_log_likelihood(stats: NodeStats, kind: str, beta, gamma=None, sigma=None) -> torch.Tensor:
    """Exact log-likelihood of node-level data (the product of node-step Bernoullis)."""
    x = beta * stats.pressure
    lp = (stats.events * log1mexp(x) - (stats.trials - stats.events) * x).sum(-1)
    if kind in ("SIR", "SEIR", "SIS"):
        lp = lp + stats.rec_events * log1mexp(gamma) - (stats.rec_trials - stats.rec_events) * gamma
    if kind == "SEIR":
        lp = lp + stats.ons_events * log1mexp(sigma) - (stats.ons_trials - stats.ons_events) * sigma
    return lp


def mean_field_cases(edges: torch.Tensor, weights: torch.Tensor, n: int, kind: str, initial: torch.Tensor, steps: int,
                     beta, gamma=None, sigma=None, trajectory: bool = False) -> torch.Tensor:
    """Expected new infections per step, (steps,), from the individual-based mean field.

    Node v is infected in a step with probability
    ``x_S(v) * (1 - prod_u (1 - x_I(u) * (1 - exp(-beta * w_uv))))``; exposed and
    infectious nodes leave their compartment with ``1 - exp(-sigma)`` and
    ``1 - exp(-gamma)``. ``initial`` is the (n,) vector of initial states.
    Differentiable in the rates (for NUTS and SVI). With ``trajectory`` it returns
    the expected (S, E, I, R) counts, shape (steps + 1, 4), instead.
    """
    src, dst = edges[0], edges[1]
    dev = weights.device
    p_edge = -torch.expm1(-beta * weights)
    xs = (initial == S).to(dev, torch.float32)
    xe = (initial == E).to(dev, torch.float32)
    xi = (initial == I).to(dev, torch.float32)
    rec = 0.0 if kind in ("SI", "LT") else (1.0 if kind == "IC" else -torch.expm1(-torch.as_tensor(gamma)))
    ons = -torch.expm1(-torch.as_tensor(sigma)) if kind == "SEIR" else None
    xr = (initial == R).to(dev, torch.float32)
    out = []
    traj = [torch.stack([xs.sum(), xe.sum(), xi.sum(), xr.sum()])]
    for _ in range(steps):
        log_escape = torch.zeros(n, device=dev).index_add(0, dst, torch.log1p(-(xi[src] * p_edge).clamp(max=1 - 1e-7)))
        new = xs * -torch.expm1(log_escape)
        out.append(new.sum())
        leave_i = xi * rec
        xs = xs - new
        if kind == "SIS":
            xs = xs + leave_i
        if kind == "SEIR":
            onset = xe * ons
            xe = xe + new - onset
            xi = xi + onset - leave_i
        else:
            xi = xi + new - leave_i
        if kind != "SIS":
            xr = xr + leave_i
        traj.append(torch.stack([xs.sum(), xe.sum(), xi.sum(), xr.sum()]))
    return torch.stack(traj) if trajectory else torch.stack(out)
