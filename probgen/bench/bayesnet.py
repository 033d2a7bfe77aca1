"""``probgen bench bayesnet``: batched exact posteriors against pgmpy's VariableElimination, row by row.

Protocol: for each network, ``rows`` forward samples with only the leaves observed
(the rest unobserved); the query is the posterior of the first root node. probgen
answers every row in one batched call (plan compilation included in its time);
pgmpy's ``VariableElimination.query`` is timed row by row on a subsample and its
per-row time gives its throughput. Answers are compared on that subsample. Times are CPU time of this process
(one thread, both sides), so concurrent jobs on a shared machine do not skew the ratio. Memory is
the process's peak resident set during probgen's call (reset before it on Linux).
"""

from __future__ import annotations

__all__ = ["run"]

import resource
import time
import warnings

import numpy as np
import pandas as pd

from .harness import Report

NETWORKS = ("alarm", "hepar2", "win95pts", "andes")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _case(name: str, rows: int, subsample: int, seed: int = 0) -> dict:
    from pgmpy.inference import VariableElimination

    from ..models.bayesnet.network import BayesianNetwork

    bn = BayesianNetwork.example(name)
    children = {p for u in bn.nodes for p in bn.parents[u]}
    leaves = [u for u in bn.nodes if u not in children]
    target = next(u for u in bn.nodes if not bn.parents[u])
    evidence = bn.sample(rows, seed=seed)[leaves]
    _reset_peak()
    start = time.process_time()
    ours = bn.posterior(target, evidence)
    t_ours = time.process_time() - start
    peak = _peak_mb()
    ve = VariableElimination(bn.to_pgmpy())
    sub = evidence.iloc[:subsample].astype(str)
    records = sub.to_dict("records")
    ve.query([target], evidence=records[0], show_progress=False)  # warm-up
    start = time.process_time()
    answers = [ve.query([target], evidence=r, show_progress=False) for r in records]
    t_pg = (time.process_time() - start) / len(records)
    ref = np.array([[q.get_value(**{target: s}) for s in bn.states[target]] for q in answers])
    diff = float(np.abs(ref - ours.iloc[:subsample].to_numpy()).max())
    plan = next(iter(bn._plans.values()))
    return {"network": name, "nodes": len(bn.nodes), "leaves observed": len(leaves), "target": target,
            "rows": rows, "unique rows": len(evidence.drop_duplicates()),
            "largest batched tensor (entries/row)": plan.max_row_elems, "probgen s": t_ours,
            "probgen ms/row": 1000 * t_ours / rows, "pgmpy ms/row": 1000 * t_pg, "pgmpy rows timed": len(records),
            "rows/s": rows / t_ours, "pgmpy rows/s": 1 / t_pg, "max abs diff": diff, "peak MB": peak}


def _nhefs() -> tuple[float, float]:
    """Backdoor-adjusted and unadjusted effect of quitting smoking on weight gain (kg), NHEFS.

    The network of ``notebooks/bayesian_networks.ipynb``: confounders into treatment and
    outcome, Bayesian (BDeu) fit, effect read off ``do``.
    """
    from ..models.bayesnet.causal import nhefs_network

    bn, frame, values = nhefs_network()
    effect = bn.ate("qsmk", "weight_gain", "1", "0", outcome_values=values)
    naive = frame.assign(kg=frame["weight_gain"].map(values)).groupby("qsmk")["kg"].mean()
    return float(effect), float(naive["1"] - naive["0"])


def run(quick: bool = False, device: str = "cpu") -> Report:
    """Run the bench (``quick``: 300 rows of alarm and win95pts, 5 pgmpy rows)."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    report = Report("bayesnet", "exact posterior of a root given the leaves, batched vs pgmpy VariableElimination")
    nets = ("alarm", "win95pts") if quick else NETWORKS
    rows = 300 if quick else 10_000
    records = []
    for name in nets:
        sub = 5 if quick else (10 if name == "andes" else 50)
        r = _case(name, rows, sub)
        records.append(r)
        report.add(name, "rows/s", r["rows/s"], r["pgmpy rows/s"], baseline_name="pgmpy VE (row by row)",
                   unit="rows/s", goal=">=100x")
        report.add(name, "max abs diff", r["max abs diff"], None, unit="probability", goal="<=1e-9")
        report.add(name, "peak RSS", r["peak MB"], None, unit="MB", goal="<=2048")
    if not quick:
        effect, naive = _nhefs()
        report.add("nhefs", "quit smoking -> weight gain", effect, naive, baseline_name="unadjusted difference",
                   unit="kg", goal="published IP-weighted ~3.4")
    report.table("details", pd.DataFrame(records).set_index("network").drop(columns=["rows/s", "pgmpy rows/s"]))
    if not quick:
        report.note("nhefs: backdoor-adjusted effect (do) in the discretised network of the notebook, against "
                    "the unadjusted difference of means")
    report.note("rows: forward samples, leaves observed, the rest unobserved; target: the first root node")
    report.note("probgen time includes compiling the elimination plan; pgmpy timed row by row on a subsample")
    report.note("times are CPU seconds of this process (time.process_time), one thread each: the machine is "
                "shared, and wall-clock ratios swing with other jobs' load")
    return report
