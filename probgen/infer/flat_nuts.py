"""NUTS on one flat vector, for a compiled potential (``probgen.infer.compiled.CompiledPotential``).

Written here rather than calling ``pyro.infer.mcmc.NUTS`` because, once the potential and
its gradient are one traced graph, Pyro's integrator and tree building (dicts of tensors per
site, a message per leapfrog step) are most of the time of a leapfrog step on a small model.
The algorithm is the one Pyro and Stan run: multinomial NUTS with biased progressive
sampling between subtrees and the generalised no-U-turn criterion (Betancourt 2017); warm-up
adapts the step size by dual averaging (Hoffman & Gelman 2014) towards ``target_accept`` and
a diagonal mass matrix in Stan's doubling windows (initial buffer 75, last 50, first
window 25, shrunk proportionally for a short warm-up). The state is a float64 numpy vector;
only the potential runs in torch. Its draws are not Pyro's chain but the same posterior.

Example:
    >>> import numpy as np
    >>> vg = lambda q: (0.5 * float(q @ q), q.copy())   # standard normal in 2 dimensions
    >>> out = run_nuts(vg, np.zeros(2), num_warmup=200, num_samples=400, seed=0)
    >>> out.draws.shape
    (400, 2)
    >>> bool(abs(out.draws.mean()) < 0.2 and abs(out.draws.var() - 1) < 0.3)
    True
"""

from __future__ import annotations

__all__ = ["run_nuts", "NutsResult"]

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

_MAX_DELTA_H = 1000.0  # an energy error above this is a divergence (Pyro's and Stan's threshold)


@dataclass
class NutsResult:
    """Draws (num_samples, dim), per-draw divergence flags and tree sizes, the final step size
    and inverse mass matrix (diagonal)."""

    draws: np.ndarray
    diverging: np.ndarray
    num_steps: np.ndarray
    step_size: float
    inverse_mass: np.ndarray


class _Tree:
    __slots__ = ("left", "right", "sample", "log_w", "p_sum", "turning", "diverging", "sum_accept", "n")

    def __init__(self, left, right, sample, log_w, p_sum, turning, diverging, sum_accept, n):
        self.left, self.right, self.sample, self.log_w, self.p_sum = left, right, sample, log_w, p_sum
        self.turning, self.diverging, self.sum_accept, self.n = turning, diverging, sum_accept, n


def _turning(p_left, p_right, p_sum, inv_mass) -> bool:
    rho = p_sum - (p_left + p_right) / 2
    return float((inv_mass * p_left) @ rho) <= 0 or float((inv_mass * p_right) @ rho) <= 0


class _Sampler:
    def __init__(self, vg: Callable, dim: int, rng: np.random.Generator, max_tree_depth: int):
        self.vg, self.dim, self.rng, self.max_tree_depth = vg, dim, rng, max_tree_depth
        self.inv_mass = np.ones(dim)
        self.step = 1.0

    def leapfrog(self, state, eps):
        q, p, g, u = state
        p = p - 0.5 * eps * g
        q = q + eps * self.inv_mass * p
        u, g = self.vg(q)
        p = p - 0.5 * eps * g
        return q, p, g, u

    def energy(self, state) -> float:
        p = state[1]
        return state[3] + 0.5 * float(p @ (self.inv_mass * p))

    def build(self, state, direction: int, depth: int, h0: float) -> _Tree:
        if depth == 0:
            new = self.leapfrog(state, direction * self.step)
            delta = self.energy(new) - h0
            if not math.isfinite(delta):
                delta = math.inf
            diverging = delta > _MAX_DELTA_H
            return _Tree(new, new, new, -delta, new[1], False, diverging, min(1.0, math.exp(min(0.0, -delta))), 1)
        first = self.build(state, direction, depth - 1, h0)
        if first.turning or first.diverging:
            return first
        second = self.build(first.right if direction > 0 else first.left, direction, depth - 1, h0)
        log_w = np.logaddexp(first.log_w, second.log_w)
        # multinomial choice within the subtree: the second half with its share of the weight
        sample = second.sample if math.log(self.rng.random()) < second.log_w - log_w else first.sample
        left, right = (first.left, second.right) if direction > 0 else (second.left, first.right)
        p_sum = first.p_sum + second.p_sum
        turning = second.turning or _turning(left[1], right[1], p_sum, self.inv_mass)
        return _Tree(left, right, sample, log_w, p_sum, turning, second.diverging,
                     first.sum_accept + second.sum_accept, first.n + second.n)

    def transition(self, state):
        """One NUTS draw from ``state`` = (q, p, grad, potential); returns (state, accept stat, diverging, steps)."""
        q, _, g, u = state
        p = self.rng.standard_normal(self.dim) / np.sqrt(self.inv_mass)
        start = (q, p, g, u)
        h0 = self.energy(start)
        left = right = start
        sample, log_w, p_sum = start, 0.0, p.copy()
        sum_accept, n, diverging = 0.0, 0, False
        for depth in range(self.max_tree_depth):
            direction = 1 if self.rng.random() < 0.5 else -1
            tree = self.build(right if direction > 0 else left, direction, depth, h0)
            sum_accept += tree.sum_accept
            n += tree.n
            if tree.diverging:
                diverging = True
                break
            if tree.turning:
                break
            # biased progressive sampling: move to the new subtree with probability min(1, w_new / w_old)
            if math.log(self.rng.random()) < tree.log_w - log_w:
                sample = tree.sample
            log_w = np.logaddexp(log_w, tree.log_w)
            if direction > 0:
                right = tree.right
            else:
                left = tree.left
            p_sum = p_sum + tree.p_sum
            if _turning(left[1], right[1], p_sum, self.inv_mass):
                break
        return sample, sum_accept / max(n, 1), diverging, n

    def reasonable_step(self, state) -> float:
        """Hoffman & Gelman's heuristic: double or halve until one step's acceptance crosses 1/2."""
        q, _, g, u = state
        p = self.rng.standard_normal(self.dim) / np.sqrt(self.inv_mass)
        h0 = self.energy((q, p, g, u))
        def log_accept(eps):
            d = h0 - self.energy(self.leapfrog((q, p, g, u), eps))
            return d if math.isfinite(d) else -math.inf
        eps = self.step
        direction = 1 if log_accept(eps) > math.log(0.5) else -1
        for _ in range(60):
            nxt = eps * (2.0 ** direction)
            if (direction > 0) != (log_accept(nxt) > math.log(0.5)):
                return nxt if direction < 0 else eps
            eps = nxt
        return eps


def _windows(num_warmup: int) -> list[tuple[int, int]]:
    """(first, last) iterations, 0-based, of Stan's diagonal mass-matrix adaptation windows."""
    if num_warmup < 20:
        return []
    init, term, base = 75, 50, 25
    if init + term + base > num_warmup:
        init, term = int(0.15 * num_warmup), int(0.1 * num_warmup)
        base = num_warmup - init - term
    out, start, size = [], init, base
    last = num_warmup - term  # the windows end here; the last stretch adapts the step size only
    while start < last:
        end = start + size
        if end + 2 * size > last:  # the next window would not fit: this one runs to the end
            end = last
        out.append((start, end - 1))
        start, size = end, 2 * size
    return out


def run_nuts(vg: Callable, q0: np.ndarray, num_warmup: int, num_samples: int, seed: int = 0,
             target_accept: float = 0.8, max_tree_depth: int = 10,
             progress: Callable[[int], None] | None = None) -> NutsResult:
    """Run one NUTS chain from ``q0``; ``vg(q) -> (potential, gradient)`` on float64 vectors."""
    rng = np.random.default_rng(seed)
    q0 = np.asarray(q0, dtype=np.float64)
    sampler = _Sampler(vg, len(q0), rng, max_tree_depth)
    u, g = vg(q0)
    state = (q0, np.zeros_like(q0), g, u)
    sampler.step = sampler.reasonable_step(state)
    mu, hbar, log_bar, t = math.log(10 * sampler.step), 0.0, 0.0, 0
    gamma, t0, kappa = 0.05, 10.0, 0.75
    windows = _windows(num_warmup)
    window: list[np.ndarray] = []
    draws = np.empty((num_samples, len(q0)))
    diverging = np.zeros(num_samples, dtype=bool)
    steps = np.zeros(num_samples, dtype=np.int64)
    for it in range(num_warmup + num_samples):
        state, accept, div, n = sampler.transition(state)
        if it < num_warmup:
            t += 1
            hbar = (1 - 1 / (t + t0)) * hbar + (target_accept - accept) / (t + t0)
            log_step = mu - math.sqrt(t) / gamma * hbar
            eta = t ** -kappa
            log_bar = eta * log_step + (1 - eta) * log_bar
            sampler.step = math.exp(log_step)
            current = next(((a, b) for a, b in windows if a <= it <= b), None)
            if current is not None:
                window.append(state[0])
            if current is not None and it == current[1]:
                w = np.asarray(window)
                k = len(w)
                if k > 1:
                    var = w.var(axis=0, ddof=1)
                    sampler.inv_mass = (k / (k + 5.0)) * var + 1e-3 * (5.0 / (k + 5.0))
                window = []
                sampler.step = sampler.reasonable_step(state)
                mu, hbar, log_bar, t = math.log(10 * sampler.step), 0.0, 0.0, 0
            if it == num_warmup - 1:
                sampler.step = math.exp(log_bar)
        else:
            j = it - num_warmup
            draws[j], diverging[j], steps[j] = state[0], div, n
        if progress is not None:
            progress(1)
    return NutsResult(draws, diverging, steps, sampler.step, sampler.inv_mass.copy())
