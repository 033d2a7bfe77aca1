"""Compiled variable-elimination plans for discrete Bayesian networks, batched over evidence rows.

A plan is compiled once per (targets, observed variables, interventions) pattern:
barren nodes are pruned (only ancestors of the targets and the evidence matter), the
factors are those CPTs, evidence is absorbed by indexing (so factors touching evidence
get a leading row dimension), factor components that do not reach the targets
(d-separated given the evidence) are dropped, and a greedy min-weight / min-fill
elimination order is fixed; consecutive steps are then merged where one pairwise
contraction summing several variables is cheaper than summing them one by one. Executing
a plan runs a few ``torch.einsum`` calls per step; steps that touch no evidence are
computed once and cached, and a batched step is computed once per distinct value of the
evidence it depends on (rows are sorted so that a chunk shares those values). The result
for a row depends on that row only, so rows may be split across processes freely.

We hand-write this (rather than calling pgmpy's ``VariableElimination`` per row)
because pgmpy answers one query at a time in Python; here one plan serves thousands
of rows in a few tensor operations.
"""

from __future__ import annotations

__all__ = ["NetSpec", "Plan", "compile_plan", "run_plan", "run_max_plan", "batched_query", "ZeroEvidenceError"]

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ...core.rows import flat_rows

class ZeroEvidenceError(ValueError):
    """Evidence of probability zero under the network; ``rows`` lists the offending rows."""

    def __init__(self, message: str, rows: Sequence[int] = ()):
        super().__init__(message)
        self.rows = list(rows)


@dataclass(frozen=True)
class NetSpec:
    """The structure a plan needs: cardinalities and parents (by index), topologically ordered."""

    cards: tuple[int, ...]
    parents: tuple[tuple[int, ...], ...]

    @property
    def n(self) -> int:
        return len(self.cards)


@dataclass
class _Factor:
    var: int                      # the CPT's own variable
    perm: tuple[int, ...]         # permutation of the CPT axes: fixed axes first, then free
    fixed_pos: tuple[int, ...]    # positions in Plan.fixed of the fixed axes
    strides: tuple[int, ...]      # strides to flatten the fixed values
    free: tuple[int, ...]         # free variables (remaining axes, in order)


@dataclass
class Plan:
    """A compiled elimination plan (see the module docstring)."""

    targets: tuple[int, ...]
    fixed: tuple[int, ...]
    factors: list[_Factor]
    steps: list[tuple[tuple[int, ...], tuple[int, ...], int | None]]  # (operands, out vars, eliminated var)
    scopes: list[tuple[int, ...]]   # scope of every factor id (inputs, then step outputs)
    batched: list[bool]
    max_row_elems: int              # entries per row of the largest batched tensor (sizes chunks)
    cache: dict = field(default_factory=dict)
    fixed_cards: tuple[int, ...] = ()   # cardinality of every evidence column


def _ancestral(spec: NetSpec, parents: Sequence[Sequence[int]], seeds: set[int]) -> set[int]:
    seen, stack = set(seeds), list(seeds)
    while stack:
        v = stack.pop()
        for p in parents[v]:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


def compile_plan(spec: NetSpec, targets: Sequence[int], observed: Sequence[int], do: Sequence[int] = (),
                 keep_all: bool = False, batch_weight: int = 4) -> Plan:
    """Compile the plan for ``P(targets | observed, do(do))``.

    Arguments:
        spec: the network structure.
        targets: free variables wanted in the output (in this order).
        observed: evidence variables (their values come per row at run time).
        do: intervened variables (their values come per row too, as fixed columns).
        keep_all: keep every factor (needed for the evidence probability and for MAP);
            otherwise components not connected to the targets are dropped.
    """
    targets = tuple(targets)
    do_set = set(do)
    parents = [() if v in do_set else spec.parents[v] for v in range(spec.n)]
    fixed_set = set(observed) | do_set
    seeds = set(targets) | set(observed)
    relevant = _ancestral(spec, parents, seeds) if not keep_all else set(range(spec.n))
    scopes_full = {v: tuple(parents[v]) + (v,) for v in sorted(relevant) if v not in do_set}
    free_of = {v: tuple(u for u in s if u not in fixed_set) for v, s in scopes_full.items()}
    if not keep_all:
        # keep only the factors in the connected component(s) of the targets
        adj: dict[int, set[int]] = {}
        for v, free in free_of.items():
            for a in free:
                adj.setdefault(a, set()).update(free)
        comp, stack = set(targets), list(targets)
        while stack:
            a = stack.pop()
            for b in adj.get(a, ()):
                if b not in comp:
                    comp.add(b)
                    stack.append(b)
        keep = [v for v, free in free_of.items() if (free and free[0] in comp) or not free]
    else:
        keep = list(free_of)
    fixed_used = sorted({u for v in keep for u in scopes_full[v] if u in fixed_set})
    fpos = {u: i for i, u in enumerate(fixed_used)}
    factors = []
    for v in keep:
        scope = scopes_full[v]
        fixed_axes = [i for i, u in enumerate(scope) if u in fixed_set]
        free_axes = [i for i, u in enumerate(scope) if u not in fixed_set]
        cards = [spec.cards[scope[i]] for i in fixed_axes]
        strides = [int(np.prod(cards[j + 1:])) for j in range(len(cards))]
        factors.append(_Factor(v, tuple(fixed_axes + free_axes), tuple(fpos[scope[i]] for i in fixed_axes),
                               tuple(strides), tuple(scope[i] for i in free_axes)))
    scopes = [f.free for f in factors]
    batched = [bool(f.fixed_pos) for f in factors]
    # greedy elimination: min resulting factor size (batched ones weighted), ties by variable index.
    # Kept incremental (holders and candidate costs updated only around the last elimination):
    # recomputing every candidate each round made compiling andes cost a tenth of its queries.
    live = set(range(len(factors)))
    to_elim = {u for s in scopes for u in s} - set(targets)
    holders: dict[int, set[int]] = {}
    for i, sc in enumerate(scopes):
        for u in sc:
            holders.setdefault(u, set()).add(i)
    steps = []
    max_elems = max([1] + [int(np.prod([spec.cards[u] for u in s])) for s in scopes])
    max_batched = 1
    cand: dict[int, tuple] = {}
    dirty = set(to_elim)
    while to_elim:
        for x in dirty:
            ops = sorted(holders.get(x, ()))
            union = set().union(*(scopes[i] for i in ops)) - {x}
            size = math.prod(spec.cards[u] for u in union)
            anyb = any(batched[i] for i in ops)
            # a factor with a row dimension costs once per row: weigh it by a typical chunk
            cand[x] = (size * (batch_weight if anyb else 1), x, ops, union, size, anyb)
        _, x, ops, union, weight, anyb = min(cand.values(), key=lambda c: (c[0], c[1]))
        if anyb:
            max_batched = max(max_batched, weight * spec.cards[x])
        to_elim.discard(x)
        del cand[x]
        out = tuple(sorted(union))
        steps.append((tuple(ops), out, x))
        new = len(scopes)
        scopes.append(out)
        batched.append(anyb)
        for i in ops:
            live.discard(i)
            for u in scopes[i]:
                holders[u].discard(i)
        for u in out:
            holders.setdefault(u, set()).add(new)
        live.add(new)
        dirty = set(out) & to_elim
        max_elems = max(max_elems, weight * spec.cards[x])
    live = sorted(live)
    max_elems = max_batched
    # final product over the targets
    steps.append((tuple(live), targets, None))
    scopes.append(targets)
    batched.append(any(batched[i] for i in live))
    return Plan(targets, tuple(fixed_used), factors, steps, scopes, batched, max_elems,
                fixed_cards=tuple(spec.cards[u] for u in fixed_used))


def _factor_tensor(plan: Plan, k: int, cpts: Sequence[torch.Tensor], fixed_vals: torch.Tensor | None) -> torch.Tensor:
    f = plan.factors[k]
    key = ("factor", k)
    base = plan.cache.get(key)
    if base is None:
        t = cpts[f.var].permute(f.perm)
        nfix = len(f.fixed_pos)
        base = t.reshape((-1,) + tuple(t.shape[nfix:])) if nfix else t
        plan.cache[key] = base
    if not f.fixed_pos:
        return base
    idx = fixed_vals[:, list(f.fixed_pos)]
    flat = (idx * torch.tensor(f.strides, device=idx.device)).sum(1) if len(f.strides) > 1 else idx[:, 0]
    return base.index_select(0, flat)


def _contract(plan: Plan, operands: list, out: tuple[int, ...], any_b: bool, dtype, device) -> torch.Tensor:
    """Product of ``operands`` (tensor, scope, batched) summed down to ``out``, two at a time.

    Pairwise on purpose: ``torch.einsum`` with more operands asks opt_einsum for a
    contraction path on every call, which costs more than the arithmetic here.
    """
    if not operands:
        return torch.ones((), dtype=dtype, device=device)
    operands = sorted(operands, key=lambda o: o[0].numel())
    keep_final = set(out)
    acc, scope, b = operands[0]
    scope = tuple(scope)
    for k in range(1, len(operands) + 1):
        rest = operands[k:]
        later = set().union(*(set(o[1]) for o in rest[1:])) if len(rest) > 1 else set()
        if rest:
            t2, s2, b2 = rest[0]
            new_scope = tuple(dict.fromkeys(scope + tuple(s2)))
            new_scope = tuple(u for u in new_scope if u in keep_final or u in later)
            sym = {u: i + 1 for i, u in enumerate(dict.fromkeys(scope + tuple(s2)))}
            a_dims = ([0] if b else []) + [sym[u] for u in scope]
            b_dims = ([0] if b2 else []) + [sym[u] for u in s2]
            o_dims = ([0] if (b or b2) else []) + [sym[u] for u in new_scope]
            acc = torch.einsum(acc, a_dims, t2, b_dims, o_dims)
            scope, b = new_scope, b or b2
        else:
            new_scope = tuple(u for u in scope if u in keep_final)
            sym = {u: i + 1 for i, u in enumerate(scope)}
            if new_scope != scope:
                acc = torch.einsum(acc, ([0] if b else []) + [sym[u] for u in scope],
                                   ([0] if b else []) + [sym[u] for u in new_scope])
                scope = new_scope
    if scope != tuple(out):
        perm = [scope.index(u) for u in out]
        acc = acc.permute(([0] if b else []) + [p + (1 if b else 0) for p in perm])
    return acc


def _evidence_positions(plan: Plan) -> list[tuple[int, ...]]:
    """For every factor id, the evidence columns (positions in ``plan.fixed``) it depends on."""
    ev = plan.cache.get("evpos")
    if ev is None:
        ev = [tuple(f.fixed_pos) for f in plan.factors]
        for ops, _out, _x in plan.steps:
            ev.append(tuple(sorted(set().union(*(ev[i] for i in ops))))) if ops else ev.append(())
        plan.cache["evpos"] = ev
    return ev


def _sort_columns(plan: Plan, spec: NetSpec) -> list[int]:
    """Evidence columns (positions in ``plan.fixed``), heaviest first.

    A column's weight is the work of the batched steps that depend on it. Rows sorted
    with these columns as major keys put rows that share the evidence of the big steps
    next to each other, so a chunk of consecutive rows shares most of that work.
    """
    cols = plan.cache.get("sort_cols")
    if cols is None:
        ev = _evidence_positions(plan)
        nf = len(plan.factors)
        weight = [0.0] * len(plan.fixed)
        for j, (_ops, out, x) in enumerate(plan.steps):
            if plan.batched[nf + j]:
                size = math.prod(spec.cards[u] for u in _step_vars(plan, j))
                for c in ev[nf + j]:
                    weight[c] += size
        cols = sorted(range(len(plan.fixed)), key=lambda c: (-weight[c], c))
        plan.cache["sort_cols"] = cols
    return cols


def _groups(fixed_vals: torch.Tensor, cols: tuple[int, ...],
            cards: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Rows grouped by their values in ``cols``: ``(inverse, representative row per group)``.

    ``None`` when grouping would save little (more groups than 90% of the rows).
    The columns are folded into one integer key (mixed radix) where it fits in
    int64: a 1-D ``torch.unique`` is several times faster than ``unique(dim=0)``.
    """
    B = fixed_vals.shape[0]
    sub = fixed_vals[:, list(cols)]
    if math.prod(cards[c] for c in cols) < 2 ** 62:
        code = torch.zeros(B, dtype=torch.long, device=fixed_vals.device)
        for i, c in enumerate(cols):
            code = code * cards[c] + sub[:, i]
        _, inv = torch.unique(code, return_inverse=True)
    else:
        _, inv = torch.unique(sub, dim=0, return_inverse=True)
    U = int(inv.max()) + 1 if B else 0
    if U >= 0.9 * B:
        return None
    rep = torch.empty(U, dtype=torch.long, device=fixed_vals.device).scatter_(
        0, inv, torch.arange(B, device=fixed_vals.device))
    return inv, rep


def run_plan(plan: Plan, cpts: Sequence[torch.Tensor], fixed_vals: torch.Tensor,
             rescale: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Execute ``plan`` for a chunk of rows.

    Returns ``(table, log_scale)``: ``table`` has shape ``(B, *target cards)`` and
    the unnormalised joint of targets and evidence is ``table * exp(log_scale)``.
    Each batched intermediate is computed once per distinct value of the evidence it
    depends on (rows sharing those values share the work), then gathered back.
    """
    B = fixed_vals.shape[0]
    dtype = cpts[0].dtype
    device = fixed_vals.device
    log_scale = torch.zeros(B, dtype=dtype, device=device)
    const_log = plan.cache.get("const_log", 0.0)
    tensors: dict[int, torch.Tensor] = {}
    # rows of a batched tensor: None (one per input row) or the evidence columns it was
    # de-duplicated on; groups[cols] = (inverse: input row -> group, representative rows)
    keys: dict[int, tuple[int, ...] | None] = {}
    groups: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor] | None] = {}
    evpos = _evidence_positions(plan)
    nf = len(plan.factors)
    peak = 0
    for k in range(nf):
        tensors[k] = _factor_tensor(plan, k, cpts, fixed_vals)
        keys[k] = None
    for j, (ops, out, _x) in enumerate(plan.steps):
        sid = nf + j
        if not plan.batched[sid] and ("step", sid) in plan.cache:
            tensors[sid] = plan.cache[("step", sid)]
            continue
        any_b = plan.batched[sid]
        inv = None
        key = None
        if any_b:
            cols = tuple(evpos[sid])
            if B > 1 and len(cols) < fixed_vals.shape[1]:
                if cols not in groups:
                    groups[cols] = _groups(fixed_vals, cols, plan.fixed_cards)
                if groups[cols] is not None:
                    key = cols
                    inv, rep = groups[cols]
            operands = []
            for i in ops:
                t = tensors[i]
                if plan.batched[i] and keys[i] != key:
                    # bring operand i to this step's rows (skipped when both share the grouping)
                    m = None if keys[i] is None else groups[keys[i]][0]
                    idx = (rep if m is None else m.index_select(0, rep)) if key is not None else m
                    t = t.index_select(0, idx)
                operands.append((t, plan.scopes[i], plan.batched[i]))
        else:
            operands = [(tensors[i], plan.scopes[i], plan.batched[i]) for i in ops]
        res = _contract(plan, operands, out, any_b, dtype, device)
        if any_b:
            peak = max(peak, res.numel(), *(o[0].numel() for o in operands))
        # rescale batched intermediates every third step (each pass costs a full read and write;
        # three steps of products cannot underflow float64 from a maximum of one)
        if rescale and _x is not None and (not any_b or j % 3 == 0 or j >= len(plan.steps) - 2):
            if any_b:
                m = res.amax(dim=tuple(range(1, res.dim()))) if res.dim() > 1 else res.clone()
                m = torch.where(m > 0, m, torch.ones_like(m))
                res = res / m.reshape((res.shape[0],) + (1,) * (res.dim() - 1))
                lm = torch.log(m)
                log_scale = log_scale + (lm if inv is None else lm.index_select(0, inv))
            else:
                m = res.max() if res.numel() else torch.ones((), dtype=dtype)
                if m > 0:
                    res = res / m
                    const_log = const_log + float(torch.log(m))
        if not any_b:
            plan.cache[("step", sid)] = res
            plan.cache["const_log"] = const_log if rescale else 0.0
        tensors[sid] = res
        keys[sid] = key
        for i in ops:  # free memory early
            if i >= nf:
                tensors.pop(i, None)
    last = nf + len(plan.steps) - 1
    final = tensors[last]
    if not plan.batched[-1]:
        final = final.expand((B,) + tuple(final.shape))
    elif keys[last] is not None:
        final = final.index_select(0, groups[keys[last]][0])
    plan.cache["peak_elems"] = peak
    return final, log_scale + plan.cache.get("const_log", 0.0)


def run_max_plan(plan: Plan, spec: NetSpec, cpts: Sequence[torch.Tensor],
                 fixed_vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-product version of ``run_plan`` with ``targets == ()`` and traceback.

    Returns ``(assignment, log_max)``: the most probable values of every free variable
    of the plan (columns in the order of ``free_vars(plan)``) and the log of the
    maximal joint probability.
    """
    B = fixed_vals.shape[0]
    dtype = cpts[0].dtype
    nf = len(plan.factors)
    log_scale = torch.zeros(B, dtype=dtype, device=fixed_vals.device)
    tensors = {k: _factor_tensor(plan, k, cpts, fixed_vals) for k in range(nf)}
    argmaxes = []
    for j, (ops, out, x) in enumerate(plan.steps):
        sid = nf + j
        full = tuple(out) + ((x,) if x is not None else ())
        prod = torch.ones((B,) + tuple(spec.cards[u] for u in full), dtype=dtype, device=fixed_vals.device)
        for i in ops:
            t = tensors[i] if (i >= nf or plan.batched[i]) else tensors[i].unsqueeze(0)
            scope = plan.scopes[i]
            order = sorted(range(len(scope)), key=lambda a: full.index(scope[a]))
            t = t.permute([0] + [a + 1 for a in order])
            shape = [t.shape[0]] + [spec.cards[u] if u in scope else 1 for u in full]
            prod = prod * t.reshape(shape)
        if x is not None:
            res, arg = prod.max(-1)
            argmaxes.append((x, out, arg))
        else:
            res = prod
        m = res.reshape(B, -1).amax(1) if res.dim() > 1 else res.clone()
        m = torch.where(m > 0, m, torch.ones_like(m))
        res = res / m.reshape((B,) + (1,) * (res.dim() - 1))
        log_scale = log_scale + torch.log(m)
        tensors[sid] = res
    final = tensors[nf + len(plan.steps) - 1]
    log_max = log_scale + torch.log(final.reshape(B))
    values: dict[int, torch.Tensor] = {}
    rows = torch.arange(B, device=fixed_vals.device)
    for x, out, arg in reversed(argmaxes):
        idx = (rows,) + tuple(values[u] for u in out)
        values[x] = arg[idx]
    return values, log_max


def _pattern_groups(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows grouped by their observed-variable pattern: [(pattern bool vector, row indices)]."""
    if len(mask) == 0:
        return []
    packed = np.packbits(mask, axis=1)
    keys, inverse = np.unique(packed, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
    groups = []
    for g in range(len(keys)):
        rows = order[bounds[g]:bounds[g + 1]]
        groups.append((mask[rows[0]], rows))
    return groups


def _step_vars(plan: Plan, j: int) -> set[int]:
    ops, out, _x = plan.steps[j]
    return set(out).union(*(plan.scopes[i] for i in ops))


def _contract_cost(operands: Sequence[tuple[tuple[int, ...], bool]], out: Sequence[int], cards: Sequence[int],
                   rows: int = 256, peak: bool = False):
    """Work per row of ``_contract`` on operands ``(scope, batched)``: the entries of every pairwise
    product-sum it forms (unbatched ones count once per ``rows`` rows), in the order it forms them.
    With ``peak``, also the largest batched tensor (entries per row) it reads or writes."""
    if not operands:
        return (0.0, 0) if peak else 0.0
    size = lambda sc: math.prod(cards[u] for u in sc)  # noqa: E731
    ops = sorted(operands, key=lambda o: size(o[0]) * (rows if o[1] else 1))
    keep = set(out)
    scope, b = set(ops[0][0]), ops[0][1]
    cost = 0.0
    top = max([size(o[0]) for o in ops if o[1]] + [0])
    for k in range(1, len(ops)):
        s2, b2 = ops[k]
        union = scope | set(s2)
        b = b or b2
        cost += size(union) * (1.0 if b else 1.0 / rows)
        later = set().union(*(set(o[0]) for o in ops[k + 1:]))
        scope = {u for u in union if u in keep or u in later}
        if b:
            top = max(top, size(scope))
    if len(ops) == 1 and scope != keep:
        cost += size(scope) * (1.0 if b else 1.0 / rows)
    return (cost, top) if peak else cost


def _fuse_steps(plan: Plan, spec: NetSpec) -> Plan:
    """Merge each elimination step into the next one that consumes its output, where the merged
    contraction is cheaper: a product followed by sums over variables it shares then becomes one
    pairwise contraction summing several variables at once (bigger inner dimension for the
    matrix products, no intermediate of the unmerged product kept per row).

    Only for sum-product plans (a merged step eliminates a tuple of variables)."""
    nf = len(plan.factors)
    old_scopes, old_batched = plan.scopes, plan.batched
    cards = spec.cards

    def cost(ops, out):
        return _contract_cost([(old_scopes[i], old_batched[i]) for i in ops], out, cards)

    new_id = {k: k for k in range(nf)}
    steps, scopes, batched = [], list(old_scopes[:nf]), list(old_batched[:nf])

    def flush(p):
        ops, out, xs, sid, _c = p
        steps.append((tuple(new_id[i] for i in ops), out, xs if xs is None else tuple(xs)))
        scopes.append(out)
        batched.append(any(batched[new_id[i]] for i in ops))
        new_id[sid] = len(scopes) - 1

    pending = None
    for j, (ops, out, x) in enumerate(plan.steps):
        sid = nf + j
        c = cost(ops, out)
        if pending is not None and x is not None and pending[3] in ops:
            merged = tuple(i for i in pending[0] if i != pending[3]) + tuple(i for i in ops if i != pending[3])
            cm = cost(merged, out)
            if cm <= pending[4] + c:
                pending = (merged, out, pending[2] + [x], sid, cm)
                continue
        if pending is not None:
            flush(pending)
        pending = (ops, out, None if x is None else [x], sid, c)
    flush(pending)
    # the largest batched tensor a row needs: sizes the chunks
    top = max([1] + [_contract_cost([(scopes[i], batched[i]) for i in ops], out, cards, peak=True)[1]
                     for ops, out, _x in steps])
    return Plan(plan.targets, plan.fixed, plan.factors, steps, scopes, batched, top,
                fixed_cards=plan.fixed_cards)


def _row_cost(plan: Plan, spec: NetSpec, rows: int = 1000) -> float:
    nf = len(plan.factors)
    cost = 0.0
    for j, (ops, out, _x) in enumerate(plan.steps):
        cost += _contract_cost([(plan.scopes[i], plan.batched[i]) for i in ops], out, spec.cards, rows) \
            if plan.batched[nf + j] else math.prod(spec.cards[u] for u in _step_vars(plan, j)) / rows
    return cost


def _compile_best(spec: NetSpec, targets, observed, do_vars, keep_all: bool) -> Plan:
    """The plan of least per-row work among a few batch weightings (only tried for big plans)."""
    plan = _fuse_steps(compile_plan(spec, targets, observed, do_vars, keep_all=keep_all), spec)
    if plan.max_row_elems <= 4096:
        return plan
    best = (_row_cost(plan, spec), plan)
    for weight in (1, 3, 6, 16):  # greedy orders are erratic in the weight: try several
        other = _fuse_steps(compile_plan(spec, targets, observed, do_vars, keep_all=keep_all,
                                         batch_weight=weight), spec)
        best = min(best, (_row_cost(other, spec), other), key=lambda t: t[0])
    return best[1]


def batched_query(spec: NetSpec, cpts: Sequence[torch.Tensor], values: torch.Tensor, targets: Sequence[int],
                  do: dict[int, int] | None = None, *, mode: str = "joint", chunk_size: int | None = None,
                  memory_budget: float = 2.5e8, plan_cache: dict | None = None,
                  progress: Callable | None = None) -> torch.Tensor:
    """Exact answers for many evidence rows at once.

    Arguments:
        spec, cpts: the network (CPT of variable ``v`` has axes ``parents(v) + (v,)``).
        values: long tensor ``(N, n_vars)``, the observed state per row, ``-1`` where
            unobserved.
        targets: the query variables.
        do: interventions ``{var: state}`` applied to every row.
        mode: ``"joint"`` (normalised joint of the targets, shape ``(N, *cards)``),
            ``"unnormalised"`` (``(table, log_scale)``) or ``"evidence"`` (log
            probability of each row's evidence, shape ``(N,)``).
        chunk_size: rows per executed chunk (default: from ``memory_budget`` bytes).
        plan_cache: dict keeping compiled plans between calls.
        progress: callable ``progress(n_rows_done)`` for a progress bar.
    """
    do = dict(do or {})
    plan_cache = {} if plan_cache is None else plan_cache
    N = values.shape[0]
    targets = tuple(targets)
    tcards = tuple(spec.cards[t] for t in targets)
    device = values.device
    dtype = cpts[0].dtype
    mask = (values >= 0).cpu().numpy()
    out = torch.zeros((N,) + tcards, dtype=dtype, device=device)
    logz = torch.zeros(N, dtype=dtype, device=device)
    do_vars = tuple(sorted(do))
    for pattern, rows in _pattern_groups(mask):
        observed = tuple(int(v) for v in np.flatnonzero(pattern))
        free_t = tuple(t for t in targets if not pattern[t])
        keep_all = mode == "evidence"
        key = (free_t, observed, do_vars, keep_all)
        plan = plan_cache.get(key)
        if plan is None:
            plan = plan_cache[key] = _compile_best(spec, free_t, observed, do_vars, keep_all)
        rows_t = torch.as_tensor(rows, device=device)
        sub = values.index_select(0, rows_t)
        full = sub.clone()
        for v, s in do.items():
            full[:, v] = s
        fixed_vals = full[:, list(plan.fixed)] if plan.fixed else torch.zeros((len(rows), 0), dtype=torch.long,
                                                                              device=device)
        # de-duplicate rows that agree on every variable the plan reads
        if len(rows) > 1 and fixed_vals.shape[1]:
            # sorted with the heaviest evidence columns as major keys: consecutive rows (one chunk)
            # then share the big steps' evidence, and with it their work
            cols = _sort_columns(plan, spec)
            uniq, inverse = torch.unique(fixed_vals[:, cols], dim=0, return_inverse=True)
            uniq = uniq[:, np.argsort(cols).tolist()]
        else:
            uniq, inverse = fixed_vals[:1], torch.zeros(len(rows), dtype=torch.long, device=device)
        U = uniq.shape[0]
        step = chunk_size or max(1, int(memory_budget // (8 * 4 * max(plan.max_row_elems, 1))))
        tabs, scales = [], []
        a = 0
        while a < U:
            tab, ls = run_plan(plan, cpts, uniq[a:a + step])
            tabs.append(tab)
            scales.append(ls)
            a += len(tab)
            if chunk_size is None:
                # rows that share partial evidence share work and memory: grow the chunk (at most
                # 4x a time) while the largest intermediate stays within the budget
                used = 8 * 4 * max(plan.cache.get("peak_elems", 0), 1)
                step = max(1, min(4 * step, int(step * memory_budget / used)))
        tab = torch.cat(tabs).index_select(0, inverse)
        ls = torch.cat(scales).index_select(0, inverse)
        # embed the free targets into the full target table (observed targets are one-hot)
        if len(free_t) != len(targets):
            full_tab = torch.zeros((len(rows),) + tcards, dtype=dtype, device=device)
            perm_src = [targets.index(t) for t in free_t]
            # assign through a view with the observed target axes first, the free ones last
            view = full_tab.permute([0] + [1 + i for i, t in enumerate(targets) if pattern[t]]
                                    + [1 + i for i in perm_src])
            obs_idx = [sub[:, t] for t in targets if pattern[t]]
            view[(torch.arange(len(rows), device=device), *obs_idx)] = tab
            tab = full_tab
        out[rows_t] = tab
        logz[rows_t] = ls
        if progress is not None:
            progress(len(rows))
    if mode == "unnormalised":
        return out, logz
    total = flat_rows(out).sum(1)  # zero rows too
    if mode == "evidence":
        return logz + torch.log(total)
    bad = torch.nonzero(~(total > 0)).reshape(-1)
    if len(bad):
        raise ZeroEvidenceError("evidence has probability zero", bad.tolist())
    return out / total.reshape((N,) + (1,) * len(tcards))
