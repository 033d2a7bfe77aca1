"""Discrete-time Markov chains of any order, fitted in closed form (counts or a Dirichlet posterior).

A chain of order ``n`` over ``K`` states is stored as a context-by-next-state
transition table of shape ``(K**n, K)`` (contexts are state tuples, indexed in
base ``K``), with an initial distribution over the first ``n`` states. The chain
analysis (stationary distribution, irreducibility, periodicity, spectral gap,
absorption, hitting times) works on the equivalent first-order chain over the
``K**n`` tuple states.
"""

from __future__ import annotations

__all__ = ["MarkovChain", "sample_chains"]

import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from ...core.base import ContractCase, Model
from ...core.checks import check_positive, unknown_key
from ...core.result import FitResult
from ...core.engines import implements

#: the largest number of tuple states the dense first-order ("lifted") chain may have
MAX_LIFTED_STATES = 4096


def sample_chains(next_probs: Callable[[torch.Tensor], torch.Tensor], context: torch.Tensor, length: int,
                  num_states: int, temperature: float = 1.0, forbid: Sequence[int] = ()) -> torch.Tensor:
    """Run many chains at once: one batched draw per time step for every chain.

    This is the whole sampler, written directly in torch rather than through
    ``pyro.sample`` per site: Pyro's per-site bookkeeping costs more than the
    draw itself, and batching the chains is what makes sampling fast.

    Arguments:
        next_probs: maps a ``(n, order)`` tensor of context state indices to the
            ``(n, K)`` next-state probabilities.
        context: ``(n, order)`` starting contexts (indices).
        length: number of new states to draw per chain.
        num_states: ``K``.
        temperature: probabilities are raised to ``1 / temperature`` and renormalised.
        forbid: state indices that are never drawn (e.g. padding tokens).

    Returns:
        ``(n, length)`` long tensor of drawn state indices.
    """
    n, order = context.shape
    out = torch.empty(n, length, dtype=torch.long, device=context.device)
    uniforms = torch.rand(n, length, dtype=torch.float64, device=context.device)
    forbid = list(forbid)
    for t in range(length):
        p = next_probs(context).to(torch.float64)
        if temperature != 1.0 or forbid:
            if temperature != 1.0:
                p = p.clamp_min(0) ** (1.0 / temperature)
            if forbid:
                p = p.clone()
                p[:, forbid] = 0.0
            p = p / p.sum(-1, keepdim=True)
        # inverse-CDF draw: one searchsorted over the batch of rows
        cdf = p.cumsum(-1)
        u = uniforms[:, t:t + 1] * cdf[:, -1:]
        x = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max(num_states - 1)
        out[:, t] = x
        if order:
            context = torch.cat([context[:, 1:], x[:, None]], 1)
    return out


class MarkovChain(Model, PyroModule):
    r"""A Markov chain of order ``order`` over named states.

    ``fit`` counts transitions (maximum likelihood, add-``smoothing`` pseudo-counts;
    engine ``"exact"``) or forms the Dirichlet posterior of each transition row
    (engine ``"bayes"``, prior concentration ``alpha``; ``result.to_arviz()``).
    Data are sequences of state labels: a list / array / pandas Series is one
    sequence, a list of them (ragged allowed), a 2-D array or a DataFrame (rows) many.
    Every input and output uses the labels, never internal indices.

    The initial distribution (over the first ``order`` states) is the frequency of
    each context over all positions of the training data, so a single long
    sequence gives a usable start distribution.

    Arguments:
        states: the state labels (ints or strings); inferred (sorted) from the data when ``None``.
        order: how many previous states the next one depends on.
        smoothing: add-k pseudo-count for the maximum-likelihood fit (0 = plain counts).
        alpha: Dirichlet prior concentration for ``inference="bayes"``.

    Example:
        >>> import probgen
        >>> m = probgen.models.MarkovChain()
        >>> _ = m.fit([["sun", "sun", "rain", "sun", "rain", "rain", "sun"]], progress=False)
        >>> m.states
        ['rain', 'sun']
        >>> round(float(m.transition_matrix()[1, 0]), 3)   # P(rain | sun)
        0.667
        >>> m.sample(2, length=4, seed=0).shape
        (2, 4)
    """

    family = "markov_chain"
    default_inference = "exact"
    log_prob_kind = "exact"

    def __init__(self, states: Sequence[Any] | None = None, order: int = 1, smoothing: float = 0.0,
                 alpha: float = 1.0):
        check_positive("order", order, integer=True)
        check_positive("smoothing", smoothing, strict=False)
        check_positive("alpha", alpha)
        super().__init__()
        self.order = int(order)
        self.smoothing = float(smoothing)
        self.alpha = float(alpha)
        self._set_states(None if states is None else _check_state_labels(states, "states"))

    # ------------------------------------------------------------------ states
    def _set_states(self, states: list | None) -> None:
        self.states = states
        self._index = None if states is None else {s: i for i, s in enumerate(states)}
        k = 0 if states is None else len(states)
        contexts = k ** self.order if k else 0
        if contexts > 50_000_000:
            raise ValueError(f"order: {k} states at order {self.order} give {contexts} contexts, too many for a dense "
                             "table; use probgen.models.TextGenerator (sparse n-gram counts) for large vocabularies")
        self.register_buffer("transition", torch.zeros(contexts, k, dtype=torch.float64))
        self.register_buffer("initial", torch.zeros(contexts, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(contexts, k, dtype=torch.float64))
        self.fitted = False

    @property
    def num_states(self) -> int:
        return 0 if self.states is None else len(self.states)

    def _require_fitted(self, what: str) -> None:
        super()._require_fitted(what, self.fitted, "it has no transition probabilities yet; call fit(...) or from_matrix(...)")

    def state_names(self) -> list:
        """Labels of the lifted (tuple) states: the states themselves for order 1, tuples otherwise."""
        self._require_fitted("state_names")
        if self.order == 1:
            return list(self.states)
        return [tuple(self.states[i] for i in _digits(c, self.num_states, self.order))
                for c in range(self.num_states ** self.order)]

    def get_state_json(self) -> dict:
        return {"states": self.states, "fitted": self.fitted}

    def set_state_json(self, state: dict) -> None:
        if state.get("states") is not None:
            self._set_states(list(state["states"]))
        self.fitted = bool(state.get("fitted", False))

    # ----------------------------------------------------------------- data in
    def encode_sequences(self, data: Any, name: str = "sequences", min_length: int | None = None,
                         allow_empty: bool = False) -> list[torch.Tensor]:
        """Label sequences to index tensors (``KeyError`` naming unknown labels)."""
        seqs = _as_sequences(data, name, allow_empty)
        Model._require_fitted(self, name, self._index is not None, "the chain has no states yet; fit it first")
        out = []
        for i, seq in enumerate(seqs):
            try:
                out.append(torch.tensor([self._index[s] for s in seq], dtype=torch.long))
            except (KeyError, TypeError):
                bad = next(s for s in seq if not _hashable(s) or s not in self._index)
                raise unknown_key(f"state (in {name}[{i}])", bad, self.states) from None
            if min_length is not None and len(seq) < min_length:
                raise ValueError(f"{name}[{i}]: a chain of order {self.order} needs sequences of at least "
                                 f"{min_length} states, got {len(seq)}")
        return out

    def decode_states(self, indices: torch.Tensor) -> Any:
        """Index tensor to labels: a long tensor when every label is an int, else a NumPy array."""
        if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in self.states):
            table = torch.tensor(self.states, dtype=torch.long, device=indices.device)
            return table[indices]
        return np.asarray(self.states, dtype=object)[indices.cpu().numpy()]

    # --------------------------------------------------------------- fitting
    def _counts_from(self, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = _as_sequences(data, "data")
        if self.states is None:
            labels = {s for seq in seqs for s in seq}
            self._set_states(sorted(labels, key=_sort_key))
        else:
            seen = {s for seq in seqs for s in seq}
            missing = [s for s in self.states if s not in seen]
            if missing and self.smoothing == 0:
                raise ValueError(f"data: states {missing[:5]} never occur, so their transitions cannot be estimated; "
                                 "drop them from states, pass smoothing=k (add-k), or fit with inference='bayes'")
        if not any(len(s) > self.order for s in seqs):
            longest = max(len(s) for s in seqs)
            raise ValueError(f"data: order {self.order} needs at least one sequence longer than {self.order} states; "
                             f"the longest has {longest}")
        k, n = self.num_states, self.order
        # gather every sequence's windows, then count once: one dense bincount per sequence
        # costs O(K**(n+1)) each, which dominates for many short sequences over many states
        windows, moves = [torch.zeros(0, dtype=torch.long)], [torch.zeros(0, dtype=torch.long)]
        for seq in self.encode_sequences(seqs, "data"):
            if len(seq) < n:
                continue
            ctx = _context_index(seq.unfold(0, n, 1), k)  # every window of n states
            windows.append(ctx)
            if len(seq) > n:
                moves.append(ctx[:-1] * k + seq[n:])
        occupancy = torch.bincount(torch.cat(windows), minlength=k ** n).double()
        counts = torch.bincount(torch.cat(moves), minlength=k ** n * k).double()
        return counts.reshape(k ** n, k), occupancy

    def _store(self, counts: torch.Tensor, occupancy: torch.Tensor, transition: torch.Tensor) -> None:
        self.counts = counts.to(self.counts.device)
        self.transition = transition.to(self.counts.device)
        self.initial = (occupancy / occupancy.sum()).to(self.counts.device)
        self.fitted = True

    @implements("exact")
    def _fit_exact(self, data: Any, **options: Any) -> FitResult:
        """Maximum likelihood: normalised transition counts (+ ``smoothing``)."""
        from ...infer.options import parse_options

        opts = parse_options("exact", options)
        counts, occupancy = self._counts_from(data)
        smoothed = counts + self.smoothing
        totals = smoothed.sum(-1, keepdim=True)
        # a context never followed by anything (higher orders): back off to the
        # overall next-state frequencies, so the chain can always move on
        backoff = counts.sum(0) + self.smoothing
        backoff = backoff / backoff.sum()
        transition = torch.where(totals > 0, smoothed / totals.clamp_min(1e-300), backoff)
        self._store(counts, occupancy + self.smoothing, transition)
        return FitResult(model=self, engine="exact", device=str(opts.device),
                         info={"transitions": int(counts.sum()), "num_states": self.num_states})

    @implements("bayes")
    def _fit_bayes(self, data: Any, num_samples: int = 1000, **options: Any) -> FitResult:
        """Dirichlet(``alpha`` + counts) posterior per transition row; keeps the posterior mean.

        ``result.to_arviz()`` holds ``num_samples`` independent posterior draws of the
        transition table (split into 4 chains so ArviZ diagnostics apply).
        """
        import arviz as az

        from ...core.random import seeded
        from ...infer.options import parse_options

        check_positive("num_samples", num_samples, integer=True)
        opts = parse_options("bayes", options)
        counts, occupancy = self._counts_from(data)
        concentration = counts + self.alpha
        self._store(counts, occupancy + self.alpha, concentration / concentration.sum(-1, keepdim=True))
        with seeded(opts.seed):
            draws = dist.Dirichlet(concentration).sample((num_samples,)).numpy()
        chains = 4 if num_samples >= 16 else 1
        keep = num_samples - num_samples % chains
        names = [str(s) for s in self.state_names()]
        idata = az.from_dict(posterior={"transition": draws[:keep].reshape(chains, keep // chains, *draws.shape[1:])},
                             coords={"context": names, "next": [str(s) for s in self.states]},
                             dims={"transition": ["context", "next"]})
        return FitResult(model=self, engine="bayes", device=str(opts.device), inference_data=idata,
                         info={"transitions": int(counts.sum()), "alpha": self.alpha})

    @classmethod
    def from_matrix(cls, transition: Any, states: Sequence[Any] | None = None, initial: Any = None,
                    order: int = 1) -> "MarkovChain":
        """A chain from a row-stochastic matrix (``(K, K)``, or ``(K**order, K)`` for higher orders).

        ``initial`` defaults to uniform over the contexts. Rows must be non-negative and sum to 1.
        """
        p = torch.as_tensor(np.asarray(transition, dtype=np.float64))
        if p.dim() != 2:
            raise ValueError(f"transition: expected a 2-D matrix, got shape {tuple(p.shape)}")
        k = p.shape[1]
        if p.shape[0] != k ** order or k == 0:
            raise ValueError(f"transition: expected shape ({k}**{order}, {k}) for order {order}, got {tuple(p.shape)}")
        if not torch.isfinite(p).all() or (p < 0).any():
            raise ValueError("transition: entries must be finite and non-negative")
        bad = ((p.sum(-1) - 1).abs() > 1e-8).nonzero().flatten()
        if len(bad):
            raise ValueError(f"transition: every row must sum to 1 (row-stochastic); row {int(bad[0])} sums to "
                             f"{float(p[bad[0]].sum()):.6g}")
        states = list(range(k)) if states is None else _check_state_labels(states, "states")
        if len(states) != k:
            raise ValueError(f"states: expected {k} labels, got {len(states)}")
        m = cls(states=states, order=order)
        if initial is None:
            init = torch.full((k ** order,), 1.0 / k ** order, dtype=torch.float64)
        else:
            init = torch.as_tensor(np.asarray(initial, dtype=np.float64)).flatten()
            if len(init) != k ** order or (init < 0).any() or abs(float(init.sum()) - 1) > 1e-8:
                raise ValueError(f"initial: expected {k ** order} non-negative probabilities summing to 1")
        m._store(torch.zeros_like(p), init, p.clone())
        return m

    # ------------------------------------------------------------ Pyro program
    def model(self, sequences: Any = None, length: int | None = None, n: int | None = None) -> torch.Tensor:
        """The chain as a Pyro program: a plate over chains, ``pyro.markov`` over time.

        With ``sequences`` (equal-length label sequences) every state is observed;
        otherwise ``n`` chains of ``length`` states are drawn. Site ``"start"`` is the
        first ``order`` states (as a context index), sites ``"x_t"`` the later states.
        Returns the ``(n, length)`` index tensor.
        """
        self._require_fitted("model")
        k, order = self.num_states, self.order
        obs = None
        if sequences is not None:
            seqs = self.encode_sequences(sequences, "sequences", min_length=order)
            if len({len(s) for s in seqs}) != 1:
                raise ValueError("sequences: the Pyro program needs sequences of equal length")
            obs = torch.stack(seqs).to(self.transition.device)
            n, length = obs.shape
        if n is None or length is None:
            raise ValueError("model: give sequences, or n and length")
        if length < order:
            raise ValueError(f"length: expected at least order={order} states, got {length}")
        with pyro.plate("chains", n, dim=-1):
            ctx = pyro.sample("start", dist.Categorical(self.initial),
                              obs=None if obs is None else _context_index(obs[:, :order], k))
            states = list(torch.stack(_digits_tensor(ctx, k, order), -1).unbind(-1)) if order else []
            for t in pyro.markov(range(order, length)):
                x = pyro.sample(f"x_{t}", dist.Categorical(self.transition[ctx]), obs=None if obs is None else obs[:, t])
                states.append(x)
                ctx = (ctx * k + x) % (k ** order)
        return torch.stack([s.expand(n) if s.dim() == 0 else s for s in states], -1)

    # ----------------------------------------------------------------- queries
    def _start_contexts(self, n: int, start: Any) -> torch.Tensor:
        k, order = self.num_states, self.order
        if start is None:
            ctx = torch.multinomial(self.initial.float(), n, replacement=True)
            return torch.stack(_digits_tensor(ctx, k, order), -1)
        first = [start] if order == 1 and not isinstance(start, (list, tuple)) else list(start)
        if len(first) != order:
            raise ValueError(f"start: expected {order} state label(s) for a chain of order {order}, got {start!r}")
        idx = self.encode_sequences([first], "start")[0].to(self.transition.device)
        return idx.expand(n, order).clone()

    def _sample(self, n: int, length: int = 10, start: Any = None, indices: bool = False) -> Any:
        """``n`` chains of ``length`` states (including the ``order`` start states)."""
        self._require_fitted("sample")
        check_positive("length", length, integer=True)
        if length < self.order:
            raise ValueError(f"length: expected at least order={self.order}, got {length}")
        ctx = self._start_contexts(n, start)
        k = self.num_states
        table = self.transition
        powers = k ** torch.arange(self.order - 1, -1, -1, device=table.device)
        rest = sample_chains(lambda c: table[(c * powers).sum(-1)], ctx, length - self.order, k)
        out = torch.cat([ctx, rest], 1)
        return out if indices else self.decode_states(out)

    def log_prob(self, sequences: Any) -> torch.Tensor:
        """Exact log-probability (nats) of each label sequence (float64)."""
        self._require_fitted("log_prob")
        k, order = self.num_states, self.order
        out = []
        with torch.no_grad():
            for seq in self.encode_sequences(sequences, "sequences", min_length=order, allow_empty=True):
                seq = seq.to(self.transition.device)
                ctx = _context_index(seq.unfold(0, order, 1), k)
                lp = self.initial[ctx[0]].log()
                if len(seq) > order:
                    lp = lp + self.transition[ctx[:-1], seq[order:]].log().sum()
                out.append(lp)
        return torch.stack(out) if out else self.transition.new_zeros(0)

    def transition_matrix(self) -> torch.Tensor:
        """The ``(K**order, K)`` table of next-state probabilities (``(K, K)`` for order 1)."""
        self._require_fitted("transition_matrix")
        return self.transition.clone()

    def lifted_matrix(self) -> torch.Tensor:
        """The equivalent first-order transition matrix over the ``K**order`` tuple states."""
        self._require_fitted("lifted_matrix")
        k, order = self.num_states, self.order
        s = k ** order
        if order == 1:
            return self.transition.clone()
        if s > MAX_LIFTED_STATES:
            raise ValueError(f"order: the lifted chain would have {s} tuple states (limit {MAX_LIFTED_STATES})")
        lifted = torch.zeros(s, s, dtype=torch.float64, device=self.transition.device)
        ctx = torch.arange(s, device=lifted.device)
        nxt = (ctx[:, None] * k + torch.arange(k, device=lifted.device)) % s
        lifted[ctx[:, None].expand(s, k), nxt] = self.transition
        return lifted

    def n_step(self, steps: int) -> torch.Tensor:
        """``P**steps`` of the (lifted) chain: row i is the distribution ``steps`` moves after state i."""
        check_positive("steps", steps, strict=False, integer=True)
        return torch.linalg.matrix_power(self.lifted_matrix(), int(steps))

    def _graph(self):
        import networkx as nx

        p = self.lifted_matrix().cpu().numpy()
        g = nx.DiGraph()
        g.add_nodes_from(range(len(p)))
        g.add_edges_from(zip(*np.nonzero(p > 0)))
        return g

    def _support(self) -> list[int]:
        # tuple states reachable from the initial distribution (for order > 1, many
        # tuples can never occur, and they would make the lifted chain reducible)
        import networkx as nx

        if self.order == 1:
            return list(range(self.num_states))
        g = self._graph()
        start = set(np.nonzero(self.initial.cpu().numpy() > 0)[0].tolist())
        reach = set(start)
        for s in start:
            reach |= nx.descendants(g, s)
        return sorted(reach)

    def is_irreducible(self) -> bool:
        """Every state reaches every other (for order > 1: the tuple states that can occur)."""
        import networkx as nx

        return nx.is_strongly_connected(self._graph().subgraph(self._support()))

    def is_aperiodic(self) -> bool:
        """The chain's period is 1 (checked on its reachable, strongly connected part)."""
        import networkx as nx

        g = self._graph().subgraph(self._support())
        return all(nx.is_aperiodic(g.subgraph(c)) for c in nx.strongly_connected_components(g) if len(c) > 1 or
                   g.has_edge(next(iter(c)), next(iter(c))))

    def stationary_distribution(self) -> torch.Tensor:
        """The exact stationary distribution π (πP = π, Σπ = 1) by a linear solve (float64).

        Indexed like ``state_names()``. Raises ``ValueError`` when it is not unique
        (more than one closed class).
        """
        import networkx as nx

        p = self.lifted_matrix().cpu().numpy()
        g = self._graph()
        closed = list(nx.attracting_components(g))
        if len(closed) != 1:
            raise ValueError(f"stationary_distribution: the chain has {len(closed)} closed classes, so its stationary "
                             "distribution is not unique; see absorption_probabilities()")
        support = sorted(closed[0])
        sub = p[np.ix_(support, support)]
        m = len(support)
        a = sub.T - np.eye(m)
        a[-1, :] = 1.0  # replace one (redundant) balance equation by the normalisation
        b = np.zeros(m)
        b[-1] = 1.0
        pi = np.zeros(len(p))
        pi[support] = np.linalg.solve(a, b)
        return torch.as_tensor(np.clip(pi, 0, None), device=self.transition.device)

    def spectral_gap(self) -> float:
        """1 − |λ₂|, the gap between the largest and second-largest eigenvalue moduli (reachable part)."""
        sup = self._support()
        p = self.lifted_matrix().cpu().numpy()[np.ix_(sup, sup)]
        moduli = np.sort(np.abs(np.linalg.eigvals(p)))[::-1]
        return float(1.0 - (moduli[1] if len(moduli) > 1 else 0.0))

    def mixing_time(self, epsilon: float = 0.25, max_steps: int = 100_000) -> int:
        """Smallest t with max over start states of TV(Pᵗ(i, ·), π) ≤ ``epsilon`` (exact, by matrix powers)."""
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon: expected a number in (0, 1), got {epsilon!r}")
        sup = self._support()
        pi = self.stationary_distribution().cpu().numpy()[sup]
        p = self.lifted_matrix().cpu().numpy()[np.ix_(sup, sup)]
        pt = np.eye(len(sup))
        for t in range(1, max_steps + 1):
            pt = pt @ p
            if 0.5 * np.abs(pt - pi).sum(1).max() <= epsilon:
                return t
        raise ValueError(f"mixing_time: not mixed within {max_steps} steps (periodic or reducible chain?)")

    def absorbing_states(self) -> list:
        """Labels of the states that never leave (P[i, i] = 1)."""
        p = self.lifted_matrix()
        names = self.state_names()
        return [names[i] for i in range(len(p)) if float(p[i, i]) == 1.0]

    def absorption_probabilities(self) -> pd.DataFrame:
        """P(absorbed in each absorbing state | start in each transient state), via the fundamental matrix."""
        p = self.lifted_matrix().cpu().numpy()
        names = self.state_names()
        absorbing = [i for i in range(len(p)) if p[i, i] == 1.0]
        if not absorbing:
            raise ValueError("absorption_probabilities: the chain has no absorbing state")
        transient = [i for i in range(len(p)) if i not in absorbing]
        q = p[np.ix_(transient, transient)]
        r = p[np.ix_(transient, absorbing)]
        b = np.linalg.solve(np.eye(len(transient)) - q, r)
        return pd.DataFrame(b, index=[names[i] for i in transient], columns=[names[i] for i in absorbing])

    def expected_hitting_times(self, target: Any) -> pd.Series:
        """Expected number of steps to reach any of the ``target`` states, from each state (inf if never)."""
        names = self.state_names()
        targets = target if isinstance(target, (list, set)) else [target]
        lookup = {s: i for i, s in enumerate(names)}
        idx = []
        for t in targets:
            if t not in lookup:
                raise unknown_key("state (target)", t, names)
            idx.append(lookup[t])
        p = self.lifted_matrix().cpu().numpy()
        others = [i for i in range(len(p)) if i not in idx]
        h = np.zeros(len(p))
        if others:
            import networkx as nx

            # paths stop at the targets: remove their out-edges, then a start state has a
            # finite expected hitting time iff everything it can reach still reaches a target
            g = self._graph()
            g.remove_edges_from([e for i in idx for e in list(g.out_edges(i))])
            can = set(idx)
            for i in idx:
                can |= nx.ancestors(g, i)
            sure = [i for i in others if i in can and nx.descendants(g, i) <= can]
            never = [i for i in others if i not in sure]
            if sure:
                a = np.eye(len(sure)) - p[np.ix_(sure, sure)]
                h[sure] = np.linalg.solve(a, np.ones(len(sure)))
            h[never] = np.inf
        return pd.Series(h, index=names, name=f"steps to {target!r}")

    # ---------------------------------------------------------------- pgmpy
    def to_pgmpy(self, variable: str = "state"):
        """A pgmpy ``MarkovChain`` with one variable whose integer states index ``state_names()``."""
        from pgmpy.models import MarkovChain as PgmpyMarkovChain

        p = self.lifted_matrix().cpu().numpy()
        mc = PgmpyMarkovChain([variable], [len(p)])
        mc.add_transition_model(variable, {i: {j: float(p[i, j]) for j in range(len(p))} for i in range(len(p))})
        return mc

    @classmethod
    def from_pgmpy(cls, chain, states: Sequence[Any] | None = None) -> "MarkovChain":
        """A first-order chain from a pgmpy ``MarkovChain``.

        With several pgmpy variables (a factored chain, each variable moving
        independently) the states are their joint assignments, labelled ``"a=0|b=2"``.
        """
        variables = list(chain.variables)
        if not variables:
            raise ValueError("chain: the pgmpy MarkovChain has no variables")
        mats = []
        for v in variables:
            tm = chain.transition_models.get(v) or {}
            card = chain.cardinalities[v]
            if len(tm) != card:
                raise ValueError(f"chain: variable {v!r} has no complete transition model")
            mats.append(np.array([[tm[i].get(j, 0.0) for j in range(card)] for i in range(card)], dtype=np.float64))
        p = mats[0]
        for m in mats[1:]:
            p = np.kron(p, m)
        if states is None and len(variables) > 1:
            grids = np.array(np.unravel_index(np.arange(len(p)), [chain.cardinalities[v] for v in variables])).T
            states = ["|".join(f"{v}={s}" for v, s in zip(variables, row)) for row in grids]
        return cls.from_matrix(p, states=states)

    # -------------------------------------------------------------- examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        p = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5]])
        seq, x = [], 0
        for _ in range(200):
            seq.append(x)
            x = int(torch.multinomial(p[x], 1, generator=g))
        return ContractCase(cls(), [seq], sample_kwargs={"length": 8}, log_prob_data=[seq[:10], seq[10:30], seq[50:52]])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Fit a weather chain from simulated days; its exact stationary distribution against sampled chains."""
        import os

        import matplotlib.pyplot as plt

        import probgen
        from ...gallery import TourSection, demo_source

        def demo():
            truth = probgen.models.MarkovChain.from_matrix(
                [[0.8, 0.15, 0.05], [0.3, 0.5, 0.2], [0.25, 0.25, 0.5]], states=["sunny", "cloudy", "rainy"])
            days = truth.sample(1, length=2000, seed=0)[0]  # two thousand days of weather
            model = probgen.models.MarkovChain().fit([list(days)], progress=False).model
            stationary = model.stationary_distribution().numpy()  # exact, from the fitted transitions
            chains = model.sample(500, length=200, seed=1)
            return truth, model, stationary, chains

        truth, model, pi, sims = demo()
        freq = [float((sims == s).mean()) for s in model.states]
        true_share = dict(zip(truth.states, truth.stationary_distribution().tolist()))
        true_pi = np.array([true_share[s] for s in model.states])  # the fitted chain orders its states by name
        fig, ax = plt.subplots(figsize=(5, 3.4))
        pos = np.arange(len(pi))
        ax.bar(pos - 0.27, true_pi, 0.27, label="true chain", color="C7")
        ax.bar(pos, pi, 0.27, label="fitted chain (exact)")
        ax.bar(pos + 0.27, freq, 0.27, label="500 sampled chains")
        ax.set_xticks(pos, model.states)
        ax.set(ylabel="share of days", title="stationary distribution of the weather chain")
        ax.legend(fontsize=7)
        path = os.path.join(out_dir, "markov_chain.png")
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        gap = float(np.abs(pi - true_pi).max())
        return TourSection(cls.family, "Markov chain fitted from 2,000 days of weather",
                           [(path, "share of sunny / cloudy / rainy days: the true chain, the fitted chain's exact "
                                   "stationary distribution and the frequencies in 500 sampled chains")],
                           {"largest error of the fitted stationary distribution": f"{gap:.3f}"},
                           demo_source(demo), "works" if gap < 0.05 else "limited")


# ------------------------------------------------------------------ helpers
def _hashable(x: Any) -> bool:
    try:
        hash(x)
        return True
    except TypeError:
        return False


def _sort_key(x: Any):
    return (0, x, "") if isinstance(x, (int, float, np.integer, np.floating)) else (1, 0, str(x))


def _check_state_labels(states: Any, name: str) -> list:
    if isinstance(states, str) or not hasattr(states, "__iter__"):
        raise ValueError(f"{name}: expected a list of state labels, got {states!r}")
    out = []
    for s in states:
        if isinstance(s, (np.integer,)):
            s = int(s)
        if isinstance(s, bool) or not isinstance(s, (int, str)):
            raise ValueError(f"{name}: state labels must be ints or strings, got {s!r} ({type(s).__name__})")
        out.append(s)
    if not out:
        raise ValueError(f"{name}: expected at least one state")
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: state labels must be distinct")
    return out


def _clean_label(x: Any, name: str) -> Any:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{name}: contains NaN or infinite values")
        if x.is_integer():
            return int(x)
    if x is None:
        raise ValueError(f"{name}: contains missing values (None)")
    if isinstance(x, bool):
        return int(x)
    return x


def _as_sequences(data: Any, name: str, allow_empty: bool = False) -> list[list]:
    """Sequences of labels from lists, arrays, tensors or pandas objects.

    With ``allow_empty`` (queries), a batch of no sequences (``[]``, a DataFrame or 2-D
    array of zero rows) gives ``[]``; ``fit`` refuses it."""
    if isinstance(data, str):
        raise ValueError(f"{name}: expected sequences of state labels, got a string (use list(text), or TextGenerator)")
    if isinstance(data, pd.DataFrame):
        seqs = [list(row) for row in data.itertuples(index=False)]
    elif isinstance(data, pd.Series):
        seqs = [data.tolist()]
    elif isinstance(data, (np.ndarray, torch.Tensor)):
        arr = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data
        if arr.ndim == 1:
            seqs = [arr.tolist()]
        elif arr.ndim == 2:
            seqs = [row.tolist() for row in arr]
        else:
            raise ValueError(f"{name}: expected 1 or 2 dimensions, got shape {arr.shape}")
    elif isinstance(data, (list, tuple)):
        if len(data) and all(isinstance(s, (list, tuple, np.ndarray, torch.Tensor, pd.Series)) for s in data):
            seqs = [list(s.tolist() if hasattr(s, "tolist") else s) for s in data]
        else:
            seqs = [list(data)]
    else:
        raise ValueError(f"{name}: expected a list of sequences, an array or a pandas object, got {type(data).__name__}")
    if allow_empty and (len(data) == 0 if isinstance(data, (list, tuple, pd.DataFrame))
                        else isinstance(data, (np.ndarray, torch.Tensor)) and data.ndim == 2 and len(data) == 0):
        return []
    seqs = [[_clean_label(x, name) for x in s] for s in seqs]
    if not seqs or all(len(s) == 0 for s in seqs):
        raise ValueError(f"{name}: empty; expected at least one non-empty sequence")
    for s in seqs:
        for x in s:
            if not _hashable(x) or isinstance(x, (list, tuple)):
                raise ValueError(f"{name}: state labels must be ints or strings, got {x!r}")
    return seqs


def _context_index(windows: torch.Tensor, k: int) -> torch.Tensor:
    """Rows of ``order`` state indices to context indices (base ``k``, oldest first)."""
    order = windows.shape[-1]
    powers = k ** torch.arange(order - 1, -1, -1, device=windows.device)
    return (windows * powers).sum(-1)


def _digits(c: int, k: int, order: int) -> list[int]:
    return [(c // k ** (order - 1 - j)) % k for j in range(order)]


def _digits_tensor(c: torch.Tensor, k: int, order: int) -> list[torch.Tensor]:
    return [torch.div(c, k ** (order - 1 - j), rounding_mode="floor") % k for j in range(order)]
