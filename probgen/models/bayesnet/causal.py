"""Causal queries on a ``BayesianNetwork``: average effects and twin-network counterfactuals."""

from __future__ import annotations

__all__ = ["ate", "counterfactual", "twin_network", "nhefs_network", "NHEFS_EDGES"]

from typing import Any, Mapping, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import torch


def ate(bn, treatment: str, outcome: str, treated: Any, control: Any, *,
        outcome_values: Mapping[str, float] | Sequence[float] | None = None, evidence: Any = None):
    """``P(outcome | evidence, do(treated)) - P(outcome | evidence, do(control))`` (see ``BayesianNetwork.ate``)."""
    bn._check_node(treatment, "treatment")
    bn._check_node(outcome, "outcome")
    if treatment == outcome:
        raise ValueError("outcome: must differ from treatment")
    ev = dict(evidence or {})
    p1 = bn.posterior(outcome, ev, do={treatment: treated}).iloc[0]
    p0 = bn.posterior(outcome, ev, do={treatment: control}).iloc[0]
    diff = p1 - p0
    if outcome_values is None:
        return diff.rename(f"ATE of {treatment}={treated} vs {control} on P({outcome})")
    states = bn.states[outcome]
    if isinstance(outcome_values, Mapping):
        missing = [s for s in states if s not in {str(k) for k in outcome_values}]
        if missing:
            raise KeyError(f"outcome_values: no value for states {missing} of {outcome!r}")
        vals = np.array([float({str(k): v for k, v in outcome_values.items()}[s]) for s in states])
    else:
        vals = np.asarray(outcome_values, dtype=float)
        if vals.shape != (len(states),):
            raise ValueError(f"outcome_values: expected {len(states)} numbers (one per state of {outcome!r}), "
                             f"got shape {vals.shape}")
    return float((diff.to_numpy() * vals).sum())


def _cells(cpt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise cells of the inverse-CDF mechanism: widths and, per cell and parent config, the state."""
    flat = cpt.reshape(-1, cpt.shape[-1])
    cdf = np.cumsum(flat, axis=1)
    cdf[:, -1] = 1.0
    cuts = np.unique(np.concatenate([[0.0, 1.0], cdf.reshape(-1)]))
    cuts = cuts[(cuts >= 0) & (cuts <= 1)]
    widths = np.diff(cuts)
    keep = widths > 1e-15
    mids = ((cuts[:-1] + cuts[1:]) / 2)[keep]
    widths = widths[keep]
    # state of each (parent config, cell): the first state whose CDF exceeds the midpoint
    states = np.stack([np.minimum(np.searchsorted(c, mids, side="right"), flat.shape[1] - 1) for c in cdf])
    return widths / widths.sum(), states  # states: (configs, cells)


def twin_network(bn, do: Mapping[str, Any]):
    """The twin network of ``bn`` for the intervention ``do`` and the name of each counterfactual copy."""
    from .network import BayesianNetwork

    g = bn.graph()
    dvars = list(do)
    affected = set()
    for d in dvars:
        affected |= nx.descendants(g, d)
    affected -= set(dvars)
    cf = {u: (f"{u}__cf" if (u in affected or u in dvars) else u) for u in bn.nodes}
    edges, cpds, states = [], {}, {}
    for u in bn.nodes:
        ps = bn.parents[u]
        cpt = bn.cpts[bn.index[u]].detach().cpu().numpy()
        states[u] = bn.states[u]
        if u not in affected:
            edges += [(p, u) for p in ps]
            cpds[u] = cpt
            if u in dvars:
                states[cf[u]] = bn.states[u]
                code = bn._state_code(u, do[u], f"do[{u!r}]")
                cpds[cf[u]] = np.eye(len(bn.states[u]))[code]
            continue
        widths, table = _cells(cpt)
        noise = f"U__{u}"
        states[noise] = [str(i) for i in range(len(widths))]
        cpds[noise] = widths
        pcards = [len(bn.states[p]) for p in ps]
        onehot = np.eye(cpt.shape[-1])[table]                         # (configs, cells, card)
        det = onehot.reshape(pcards + [len(widths), cpt.shape[-1]])  # parents..., noise, state
        edges += [(p, u) for p in ps] + [(noise, u)]
        cpds[u] = det
        states[cf[u]] = bn.states[u]
        edges += [(cf[p], cf[u]) for p in ps] + [(noise, cf[u])]
        cpds[cf[u]] = det
    return BayesianNetwork(edges, cpds=cpds, states=states, nodes=list(states)), cf


def counterfactual(bn, evidence: Mapping[str, Any], do: Mapping[str, Any], target: str) -> pd.Series:
    """``P(target had do been set | evidence)`` through the twin network (abduction, action, prediction)."""
    if not isinstance(do, Mapping) or not do:
        raise ValueError("do: expected a non-empty dict {variable: state}")
    if not isinstance(evidence, Mapping):
        raise ValueError("evidence: expected a dict {variable: state} (one factual case)")
    bn._check_node(target, "target")
    for k, v in do.items():
        bn._check_node(k, "do")
        bn._state_code(k, v, f"do[{k!r}]")
    for k, v in evidence.items():
        bn._check_node(k, "evidence")
        bn._state_code(k, v, f"evidence[{k!r}]")
    twin, cf = twin_network(bn, do)
    post = twin.posterior(cf[target], dict(evidence)).iloc[0]
    return post.rename(f"P({target} | do({', '.join(f'{k}={v}' for k, v in do.items())}), factual evidence)")


# The confounders of quitting (qsmk) and weight gain, and how they depend on each other.
NHEFS_EDGES = [("sex", "wt71"), ("age", "smokeyrs"), ("sex", "smokeintensity"), ("smokeyrs", "smokeintensity"),
               ("age", "exercise"),
               *[(c, "qsmk") for c in ("sex", "age", "smokeintensity", "smokeyrs", "exercise", "wt71")],
               *[(c, "weight_gain") for c in ("qsmk", "sex", "age", "smokeintensity", "wt71")]]


def nhefs_network():
    """The discretised NHEFS network over ``NHEFS_EDGES``, fitted (BDeu, equivalent sample size 1).

    Returns ``(bn, frame, values)``: the fitted network, the data of ``nhefs_frame`` and the
    outcome bins' values in kg.
    """
    from .network import BayesianNetwork

    from ...datasets.nhefs import nhefs_frame

    frame, values = nhefs_frame()
    bn = BayesianNetwork(NHEFS_EDGES, states={c: sorted(frame[c].unique()) for c in frame.columns})
    bn.fit(frame, inference="bayes", equivalent_sample_size=1.0)
    return bn, frame, values
