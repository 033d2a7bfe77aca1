"""Analysis of spreading processes: target choice, influence maximisation, mean-field ODE, final size.

Example:
    >>> round(final_size_equation(2.0), 3)
    0.797
"""

from __future__ import annotations

__all__ = ["choose_nodes", "celf_influence", "homogeneous_ode", "final_size_equation", "excess_degree"]

import heapq
import math
from typing import Sequence

import networkx as nx
import numpy as np
import torch

from ...core.checks import check_choice, check_positive


def choose_nodes(graph: nx.Graph, strategy: str, k: int, seed: int | None = None) -> list:
    """``k`` nodes of ``graph`` picked by ``strategy``.

    "degree": the k highest (out-)degree nodes; "random": uniformly at random;
    "acquaintance": a random neighbour of a random node, repeated (Cohen, Havlin and
    ben-Avraham 2003: it finds hubs without knowing the graph).
    """
    check_choice("strategy", strategy, ["degree", "random", "acquaintance"])
    nodes = list(graph.nodes())
    k = min(int(k), len(nodes))
    rng = np.random.default_rng(seed)
    if strategy == "degree":
        deg = graph.out_degree(weight=None) if graph.is_directed() else graph.degree(weight=None)
        order = sorted(range(len(nodes)), key=lambda i: (-deg[nodes[i]], i))
        return [nodes[i] for i in order[:k]]
    if strategy == "random":
        return [nodes[i] for i in rng.choice(len(nodes), size=k, replace=False)]
    chosen: list = []
    picked: set = set()
    tries = 0
    while len(chosen) < k and tries < 100 * len(nodes):
        tries += 1
        v = nodes[rng.integers(len(nodes))]
        nbrs = list(graph.successors(v) if graph.is_directed() else graph.neighbors(v))
        if not nbrs:
            continue
        u = nbrs[rng.integers(len(nbrs))]
        if u not in picked:
            picked.add(u)
            chosen.append(u)
    for v in nodes:  # fall back on any node when the graph is too small
        if len(chosen) >= k:
            break
        if v not in picked:
            picked.add(v)
            chosen.append(v)
    return chosen


def _reach(src: torch.Tensor, dst: torch.Tensor, live: torch.Tensor, n: int, seeds: Sequence[int]) -> torch.Tensor:
    """Nodes reached from ``seeds`` in each live-edge sample: (n, samples) bool."""
    samples = live.shape[1]
    active = torch.zeros(n, samples, dtype=torch.bool)
    active[list(seeds)] = True
    frontier = active.clone()
    while bool(frontier.any()):
        hit = frontier[src] & live  # (edges, samples)
        reached = torch.zeros(n, samples, dtype=torch.int32).index_add_(0, dst, hit.to(torch.int32)) > 0
        frontier = reached & ~active
        active |= frontier
    return active


def celf_influence(edges: torch.Tensor, probs: torch.Tensor, n: int, k: int, samples: int = 500,
                   seed: int | None = None, candidates: Sequence[int] | None = None) -> tuple[list[int], list[float]]:
    """Greedy influence maximisation for the independent cascade, with lazy evaluation (CELF).

    The spread of a seed set is averaged over ``samples`` live-edge graphs (each
    edge kept with its activation probability, Kempe et al. 2003), drawn once: on
    those samples the spread is exactly monotone and submodular, so the lazy
    greedy (Leskovec et al. 2007) returns the same set as the plain greedy with
    far fewer evaluations. Returns the chosen node indices and the estimated
    expected spread after each pick.
    """
    check_positive("k", k, integer=True)
    check_positive("samples", samples, integer=True)
    gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
    live = torch.rand(len(probs), samples, generator=gen) < probs[:, None]
    src, dst = edges[0], edges[1]
    pool = list(range(n)) if candidates is None else list(candidates)

    def spread(seeds):
        return float(_reach(src, dst, live, n, seeds).sum(0).to(torch.float64).mean())

    heap = [(-spread([v]), v, 0) for v in pool]  # (-gain, node, round when computed)
    heapq.heapify(heap)
    chosen: list[int] = []
    values: list[float] = []
    current = 0.0
    while len(chosen) < min(k, len(pool)) and heap:
        neg_gain, v, stamp = heapq.heappop(heap)
        if stamp == len(chosen):  # gain is up to date: by submodularity it is the best
            chosen.append(v)
            current += -neg_gain
            values.append(current)
        else:
            gain = spread(chosen + [v]) - current
            heapq.heappush(heap, (-gain, v, len(chosen)))
    return chosen, values


def homogeneous_ode(kind: str, n: int, mean_degree: float, initial_infected: int, steps: int, beta: float,
                    gamma: float = 0.0, sigma: float = 0.0, immune: int = 0) -> np.ndarray:
    """The classic homogeneous mean-field ODE (a well-mixed population of mean degree k).

    ``ds/dt = -beta k s i``, ``di/dt = beta k s i - gamma i`` (SIR; SEIR, SIS and SI
    alike), solved with ``scipy.integrate.solve_ivp`` and read at 0, 1, ..., steps.
    Returns (steps + 1, compartments) expected counts. It ignores the network
    beyond its mean degree, which is why it misses what heterogeneity does.
    """
    from scipy.integrate import solve_ivp

    lam = beta * mean_degree
    i0 = initial_infected / n
    r0 = immune / n
    if kind == "SEIR":
        y0 = [1 - i0 - r0, 0.0, i0, r0]

        def f(t, y):
            s, e, i, r = y
            return [-lam * s * i, lam * s * i - sigma * e, sigma * e - gamma * i, gamma * i]
    elif kind in ("SIR", "IC"):
        y0 = [1 - i0 - r0, i0, r0]

        def f(t, y):
            s, i, r = y
            return [-lam * s * i, lam * s * i - gamma * i, gamma * i]
    elif kind in ("SI", "SIS"):
        y0 = [1 - i0 - r0, i0]
        g = gamma if kind == "SIS" else 0.0

        def f(t, y):
            s, i = y
            return [-lam * s * i + g * i, lam * s * i - g * i]
    else:
        raise ValueError(f"model: the mean-field ODE covers SI, SIS, SIR, SEIR and IC, not {kind!r}")
    sol = solve_ivp(f, (0, steps), y0, t_eval=np.arange(steps + 1), rtol=1e-8, atol=1e-10)
    return sol.y.T * n


def final_size_equation(r0: float) -> float:
    """Kermack–McKendrick final size: the root z in (0, 1) of ``z = 1 - exp(-R0 z)`` (0 if R0 <= 1)."""
    check_positive("r0", r0, strict=False)
    if r0 <= 1:
        return 0.0
    z = 1.0
    for _ in range(200):  # the map is a contraction near the positive root
        z = 1 - math.exp(-r0 * z)
    return z


def excess_degree(graph: nx.Graph) -> float:
    """Mean excess degree ``(<k^2> - <k>) / <k>`` (out-degree for directed graphs)."""
    deg = np.array([d for _, d in (graph.out_degree() if graph.is_directed() else graph.degree())], dtype=float)
    if deg.sum() == 0:
        return 0.0
    return float((deg ** 2).mean() - deg.mean()) / float(deg.mean())
