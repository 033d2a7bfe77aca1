"""Learning ``BayesianNetwork`` CPTs (counts, Dirichlet posteriors, EM) and structures (pgmpy)."""

from __future__ import annotations

__all__ = ["fit_counts", "posterior_interval", "learn_structure", "shd"]

import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ...core.checks import check_choice, check_positive, check_probability
from ...core.progress import progress_bar
from ...core.random import seeded
from ...core.result import FitResult
from ...infer.options import parse_options
from .plan import batched_query


def _family_counts(bn, codes: torch.Tensor, complete_only: bool = True) -> list[torch.Tensor]:
    """Counts of (parents..., node) configurations over rows where the whole family is observed."""
    out = []
    for v, u in enumerate(bn.nodes):
        fam = list(bn.spec.parents[v]) + [v]
        shape = bn.cpt_shape(u)
        sub = codes[:, fam]
        ok = (sub >= 0).all(1)
        sub = sub[ok]
        strides = torch.tensor([int(np.prod(shape[j + 1:])) for j in range(len(shape))], device=codes.device)
        flat = (sub * strides).sum(1)
        out.append(torch.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).to(torch.float64))
    return out


def _expected_counts(bn, codes: torch.Tensor) -> list[torch.Tensor]:
    """E-step: expected family counts, marginalising each row's missing values exactly."""
    counts = _family_counts(bn, codes)
    for v, u in enumerate(bn.nodes):
        fam = list(bn.spec.parents[v]) + [v]
        incomplete = (codes[:, fam] < 0).any(1)
        if bool(incomplete.any()):
            rows = codes[incomplete]
            joint = batched_query(bn.spec, bn.cpts, rows, fam, mode="joint", plan_cache=bn._plans)
            counts[v] = counts[v] + joint.sum(0)
    return counts


def _prior(bn, prior: str, ess: float, pseudo: float) -> list[torch.Tensor]:
    out = []
    for u in bn.nodes:
        shape = bn.cpt_shape(u)
        if prior == "bdeu":
            q = int(np.prod(shape[:-1]))
            out.append(torch.full(shape, ess / (q * shape[-1]), dtype=torch.float64))
        elif prior == "k2":
            out.append(torch.ones(shape, dtype=torch.float64))
        else:  # "dirichlet": the same pseudo count everywhere
            out.append(torch.full(shape, float(pseudo), dtype=torch.float64))
    return out


def _normalise(counts: torch.Tensor) -> torch.Tensor:
    total = counts.sum(-1, keepdim=True)
    uniform = torch.full_like(counts, 1.0 / counts.shape[-1])
    return torch.where(total > 0, counts / total.clamp(min=1e-300), uniform)


def fit_counts(bn, data: Any, engine: str, bayes: bool, **options: Any) -> FitResult:
    """Closed-form fit (maximum likelihood or Dirichlet posterior); EM when values are missing."""
    extra = {"max_iter": 100, "tol": 1e-6}
    if bayes:
        extra.update({"prior": "BDeu", "equivalent_sample_size": 10.0, "pseudo_counts": 1.0})
    opts = parse_options(engine, options, extra=extra)
    x = opts.extra
    check_positive("max_iter", x["max_iter"], integer=True)
    check_positive("tol", x["tol"])
    prior = None
    if bayes:
        if not isinstance(x["prior"], str) or x["prior"].lower() not in ("bdeu", "k2", "dirichlet"):
            raise ValueError(f"prior: expected 'BDeu', 'K2' or 'dirichlet', got {x['prior']!r}")
        check_positive("equivalent_sample_size", x["equivalent_sample_size"])
        check_positive("pseudo_counts", x["pseudo_counts"], strict=False)
        prior = [p.to(bn.device) for p in _prior(bn, x["prior"].lower(), float(x["equivalent_sample_size"]),
                                                 float(x["pseudo_counts"]))]
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data: expected a pandas DataFrame with one column per variable, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("data: expected at least one row")
    codes, _ = bn._encode(data, "data")
    start = time.perf_counter()
    history = []
    missing = bool((codes < 0).any())
    with seeded(opts.seed):
        if not missing:
            counts = _family_counts(bn, codes)
            iterations = 0
        else:
            # EM: start from available-case estimates (jittered where a column is all missing)
            counts = _family_counts(bn, codes)
            latent = (codes < 0).all(0)
            for v in range(len(bn.nodes)):
                init = counts[v] + 1.0
                if bool(latent[v]):
                    init = init * (1 + 0.5 * torch.rand(init.shape, dtype=torch.float64, device=init.device))
                bn.set_cpd(bn.nodes[v], _normalise(init))
            previous = -np.inf
            iterations = 0
            bar = progress_bar(range(int(x["max_iter"])), enabled=opts.progress, desc="EM")
            for it in bar:
                counts = _expected_counts(bn, codes)
                for v in range(len(bn.nodes)):
                    c = counts[v] + (prior[v] if prior else 0)
                    bn.set_cpd(bn.nodes[v], _normalise(c))
                ll = float(bn.log_prob(data).mean())
                history.append({"step": it, "loss": -ll})
                iterations = it + 1
                if ll - previous < float(x["tol"]):
                    break
                previous = ll
            bar.close()
    for v, u in enumerate(bn.nodes):
        c = counts[v] + (prior[v] if prior else 0)
        bn.set_cpd(u, _normalise(c))
    result = FitResult(model=bn, engine=engine, history=pd.DataFrame(history), device=str(bn.device),
                       info={"num_rows": len(data), "em_iterations": iterations, "missing_values": missing})
    if prior:
        bn._set_alpha([counts[v] + prior[v] for v in range(len(bn.nodes))])
        result.posterior_fn = lambda n: _to_arviz(bn, n, opts.seed)
    result.wall_time = time.perf_counter() - start
    return result


def _draw_cpts(bn, n: int) -> list[torch.Tensor]:
    """``n`` draws of every CPT from its Dirichlet posterior, each ``(n, *cpt shape)``."""
    return [torch.distributions.Dirichlet(a).sample((n,)) for a in bn.alphas]


def _to_arviz(bn, n: int, seed: int | None):
    import arviz as az

    with seeded(seed):
        draws = _draw_cpts(bn, n)
    posterior, dims, coords = {}, {}, {}
    for v, u in enumerate(bn.nodes):
        posterior[u] = draws[v].cpu().numpy()[None]
        names = [f"{u}|{p}" for p in bn.parents[u]] + [f"{u}_state"]
        dims[u] = names
        for p, name in zip(bn.parents[u], names[:-1]):
            coords[name] = bn.states[p]
        coords[names[-1]] = bn.states[u]
    return az.from_dict(posterior=posterior, dims=dims, coords=coords)


def posterior_interval(bn, target: str, evidence: Any, level: float, num_draws: int,
                       seed: int | None) -> pd.DataFrame:
    """Mean and equal-tailed credible interval of ``P(target | evidence)`` over Dirichlet CPT draws."""
    if bn.alphas is None:
        raise ValueError("posterior_interval: needs a Bayesian fit; call fit(data, inference='bayes') first")
    check_probability("level", level)
    check_positive("num_draws", num_draws, integer=True)
    if isinstance(evidence, pd.DataFrame):
        raise ValueError("evidence: posterior_interval takes one case (a dict)")
    bn._check_node(target, "target")
    codes, _ = bn._encode(evidence, "evidence")
    with seeded(seed):
        draws = _draw_cpts(bn, num_draws)
    answers = []
    cache: dict = {}
    for k in range(num_draws):
        for plan in cache.values():
            plan.cache.clear()
        answers.append(batched_query(bn.spec, [d[k] for d in draws], codes, [bn.index[target]], mode="joint",
                                     plan_cache=cache)[0])
    a = torch.stack(answers).cpu().numpy()
    lo, hi = np.quantile(a, [(1 - level) / 2, (1 + level) / 2], axis=0)
    point = bn.posterior(target, evidence).iloc[0].to_numpy()
    return pd.DataFrame({"mean": a.mean(0), "lower": lo, "upper": hi, "plug_in": point},
                        index=pd.Index(bn.states[target], name=target))


def learn_structure(cls, data: pd.DataFrame, method: str, score: str, significance: float,
                    max_indegree: int | None, states: Mapping[str, Sequence[Any]] | None, progress: bool):
    """Structure by pgmpy's ``HillClimbSearch`` (BIC / BDeu) or ``PC``, then maximum-likelihood CPTs."""
    from pgmpy.causal_discovery import PC, HillClimbSearch

    check_choice("method", method, ("hill_climb", "pc"))
    if not isinstance(data, pd.DataFrame) or len(data) == 0:
        raise ValueError("data: expected a non-empty pandas DataFrame of states")
    if data.isna().any().any():
        raise ValueError("data: structure learning needs complete rows; drop or impute missing values first")
    frame = data.astype(str)
    if method == "hill_climb":
        names = {"bic": "bic-d", "bdeu": "bdeu", "k2": "k2"}
        check_choice("score", score, tuple(names))
        from pgmpy.structure_score import get_scoring_method

        scorer = get_scoring_method(names[score], frame)  # an instance: the string form is much slower
        est = HillClimbSearch(scoring_method=scorer, max_indegree=max_indegree, return_type="dag",
                              show_progress=progress)
        dag = est.fit(frame).causal_graph_
    else:
        est = PC(ci_test="chi_square", significance_level=significance, return_type="dag", show_progress=progress)
        dag = est.fit(frame).causal_graph_
    st = {c: sorted(frame[c].unique()) for c in frame.columns}
    st.update({k: [str(s) for s in v] for k, v in (states or {}).items()})
    bn = cls(list(dag.edges()), states=st, nodes=list(frame.columns))
    bn.fit(frame, inference="mle", progress=False)
    return bn


def shd(bn, other) -> int:
    """Structural Hamming distance (pgmpy ``SHD``) between two structures over the same nodes."""
    from pgmpy.base import DAG
    from pgmpy.metrics import SHD

    def dag(x):
        g = DAG()
        nodes = x.nodes if isinstance(x.nodes, list) else list(x.nodes())
        g.add_nodes_from(nodes)
        g.add_edges_from(x.edges if isinstance(x.edges, list) else list(x.edges()))
        return g

    a, b = dag(bn), dag(other)
    if set(a.nodes()) != set(b.nodes()):
        raise ValueError("other: structures must have the same nodes")
    return int(SHD()(true_causal_graph=a, est_causal_graph=b))
