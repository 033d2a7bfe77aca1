"""Spread of rumours and viruses on a network: batched simulation and Bayesian rates."""

from __future__ import annotations

__all__ = ["Spread"]

import math
from typing import Any, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_choice, check_positive, check_probability, unknown_key
from ...core.random import seeded
from ...core.engines import implements
from ...core.rows import require_examples
from . import analysis as analysis
from .inference import log1mexp, mean_field_cases, node_level_stats, node_log_likelihood
from .simulate import COMPARTMENTS, E, I, R, S, Outbreaks, adjacency, gillespie, simulate_batch, states_from_times

#: the rates each model has
_RATES = {"SI": ("beta",), "SIS": ("beta", "gamma"), "SIR": ("beta", "gamma"), "SEIR": ("beta", "gamma", "sigma"),
          "IC": ("p",), "LT": ()}
_DEFAULTS = {"beta": 0.3, "gamma": 0.2, "sigma": 0.5, "p": 0.1}
#: latent sites the guide knows, with their support
_SITES = ("beta", "gamma", "sigma", "p", "rho", "phi")
_UNIT = {"p", "rho"}
#: priors: log-normal (median, log-sd) for positive rates, Beta(a, b) for probabilities
_PRIORS = {"beta": (0.2, 1.5), "gamma": (0.2, 1.0), "sigma": (0.3, 1.0), "phi": (10.0, 1.0), "p": (1.0, 1.0),
           "rho": (2.0, 2.0)}


class Spread(Model, PyroModule):
    r"""A spreading process on a graph: SI, SIS, SIR, SEIR, independent cascade or linear threshold.

    Discrete time, ``dt = 1``. A susceptible node v is infected in a step with
    probability ``1 - exp(-beta * sum_u w_uv 1[u infectious])``, the same as every
    infectious in-neighbour u trying on its own with ``1 - exp(-beta * w_uv)``;
    infectious nodes recover with ``1 - exp(-gamma)`` per step, exposed ones become
    infectious with ``1 - exp(-sigma)``. Edge weights (attribute ``"weight"``,
    default 1) scale the contact rate. Independent cascade ("IC"): a newly active
    node tries once on each out-neighbour with ``1 - (1 - p) ** w_uv``. Linear
    threshold ("LT"): v activates when the normalised weight of its active
    in-neighbours reaches a threshold uniform on (0, 1), drawn per run.

    The rates are ``pyro.sample`` sites (log-normal priors; Beta for ``p`` and
    the reporting rate ``rho``). ``fit(observed)`` infers them:

    * node-level data (every node's compartment at every step: a
      ``(steps + 1, nodes)`` or ``(runs, steps + 1, nodes)`` tensor of codes
      0=S, 1=E, 2=I, 3=R, or a simulated :class:`Outbreaks`): the exact
      chain-binomial likelihood, default NUTS (``inference="mcmc"``) or SVI;
    * aggregate data (a 1-D series of new reported cases per step, or a dict
      ``{"cases": ..., "initial": [nodes]}``): the exact likelihood would sum over
      every hidden node-level path and ABC / synthetic likelihoods need thousands of
      simulations per evaluation with no gradient, so we use the individual-based
      mean field (each node's probability of each compartment, neighbours taken
      as independent: one differentiable sparse recursion per evaluation, that
      keeps the graph and the seeds) for the expected new infections, a reporting
      rate ``rho`` and a negative-binomial (gamma-Poisson, dispersion ``phi``)
      observation that absorbs the stochastic noise the mean field leaves out. It
      ignores dynamic correlations between neighbours, so on sparse graphs it
      over-predicts early growth and biases ``beta`` low; prefer node-level data
      when there are any.

    ``R0`` is derived from every posterior draw: transmissibility (the probability
    an infectious node infects a given neighbour before it recovers) times the
    mean excess degree (the configuration-model branching factor, Newman 2002).

    ``log_prob`` is exact: the node-level chain-binomial log-likelihood of each
    outbreak (given its first step), at the model's rates (the posterior mean
    once fitted). ``sample(n)`` draws ``n`` outbreaks as node states, one
    posterior draw of the rates per outbreak once fitted.

    Arguments:
        graph: a networkx graph (directed or not), or the dict that ``get_config``
            writes.
        model: "SI", "SIS", "SIR", "SEIR", "IC" or "LT".
        beta, gamma, sigma: infection, recovery and onset rates per step (>= 0).
        p: activation probability of the independent cascade, in [0, 1].
        priors: overrides of the priors, e.g. ``{"beta": (0.1, 1.0)}`` (log-normal
            median and log-sd) or ``{"rho": (2, 5)}`` (Beta).
        initial: default seed nodes (node ids); ``None``: one random node per run.
        immune: nodes that can never be infected (vaccinated).
        steps: default number of steps of ``sample``.

    Example:
        >>> import networkx as nx, probgen
        >>> m = probgen.models.Spread(nx.path_graph(5), "SI", beta=50.0)
        >>> out = m.simulate(runs=2, steps=4, initial=[0], seed=0)
        >>> out.count("I")[0].tolist()
        [1, 2, 3, 4, 5]
    """

    family = "spread"
    default_inference = "mcmc"
    log_prob_kind = "exact"

    def __init__(self, graph: Any, model: str = "SIR", beta: float | None = None, gamma: float | None = None,
                 sigma: float | None = None, p: float | None = None, priors: dict | None = None,
                 initial: Sequence | None = None, immune: Sequence | None = None, steps: int = 30):
        super().__init__()
        check_choice("model", model, list(_RATES))
        self.kind = model
        self.graph = _as_graph(graph)
        self.nodes = list(self.graph.nodes())
        self.index = {v: i for i, v in enumerate(self.nodes)}
        self.n = len(self.nodes)
        given = {"beta": beta, "gamma": gamma, "sigma": sigma, "p": p}
        self.rates = {}
        for name, value in given.items():
            if value is None:
                continue
            if name not in _RATES[model]:
                raise ValueError(f"{name}: the {model} model has no rate {name!r}; its rates: {list(_RATES[model]) or 'none'}")
        for name in _RATES[model]:
            value = _DEFAULTS[name] if given[name] is None else given[name]
            self.rates[name] = check_probability(name, value) if name == "p" else float(check_positive(name, value, strict=(name == "sigma")))
        self.priors = dict(_PRIORS)
        for name, value in (priors or {}).items():
            if name not in _PRIORS:
                raise unknown_key("prior", name, _PRIORS)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"priors[{name!r}]: expected a pair of positive numbers, got {value!r}")
            for v in value:
                check_positive(f"priors[{name!r}]", v)
            self.priors[name] = tuple(float(v) for v in value)
        self.initial = None if initial is None else self._node_indices(initial, "initial")
        self.immune = [] if immune is None else self._node_indices(immune, "immune")
        self.steps = check_positive("steps", steps, integer=True)
        edges, weights = _edge_list(self.graph, self.index)
        self.register_buffer("edge_index", edges)
        self.register_buffer("edge_weight", weights)
        loc = torch.tensor([math.log(self.priors[s][0]) if s not in _UNIT else 0.0 for s in _SITES])
        self.guide_loc = PyroParam(loc)
        self.guide_scale = PyroParam(torch.full((len(_SITES),), 0.1), constraint=constraints.positive)
        self._posterior_names: list[str] = []
        self._at_cache: dict = {}
        self.kappa = analysis.excess_degree(self.graph)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg["graph"] = _graph_to_dict(self.graph)
        cfg["model"] = self.kind
        cfg.update({k: v for k, v in self.rates.items()})
        cfg["initial"] = None if self.initial is None else [self.nodes[i] for i in self.initial]
        cfg["immune"] = [self.nodes[i] for i in self.immune]
        return cfg

    def get_state_json(self) -> dict:
        return {"posterior": list(self._posterior_names), "draws": self._num_draws()}

    def set_state_json(self, state: dict) -> None:
        k = int(state.get("draws", 0))
        self._set_posterior({name: torch.zeros(k) for name in state.get("posterior", [])})

    # -------------------------------------------------------------- the graph
    def _node_indices(self, nodes: Any, name: str) -> list[int]:
        if isinstance(nodes, (str, int, np.integer)) or not hasattr(nodes, "__iter__"):
            nodes = [nodes]
        out = []
        for v in nodes:
            key = v.item() if isinstance(v, (np.generic, torch.Tensor)) else v
            if key not in self.index:
                raise KeyError(f"{name}: unknown node {key!r}; the graph's nodes are e.g. {self.nodes[:5]}")
            out.append(self.index[key])
        return out

    def adjacency(self, device: Any = None) -> torch.Tensor:
        """``A^T`` as a sparse CSR tensor (row v: weights of the edges u -> v)."""
        device = torch.device(device or self.edge_index.device)
        key = str(device)
        if key not in self._at_cache:
            self._at_cache[key] = adjacency(self.edge_index.cpu(), self.edge_weight.cpu(), self.n, device)
        return self._at_cache[key]

    @property
    def compartments(self) -> tuple[str, ...]:
        return tuple(name for name, _ in COMPARTMENTS[self.kind])

    # ------------------------------------------------------------- simulation
    def _hazard(self, rates: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.kind == "IC":
            p = torch.as_tensor(rates["p"], dtype=torch.float32)
            return {"beta": -torch.log1p(-p.clamp(max=1.0))}
        return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in rates.items()}

    def _initial_states(self, runs: int, initial: Any, immune: Any, device) -> torch.Tensor:
        x = torch.zeros(self.n, runs, dtype=torch.int8, device=device)
        imm = list(self.immune) + ([] if immune is None else self._node_indices(immune, "immune"))
        if imm:
            x[imm] = R
        if initial is None and self.initial is not None:
            initial = [self.nodes[i] for i in self.initial]
        if initial is None or isinstance(initial, (int, np.integer)) and not isinstance(initial, bool):
            k = 1 if initial is None else int(check_positive("initial", initial, integer=True))
            free = torch.nonzero(x[:, 0] == S)[:, 0]
            if k > len(free):
                raise ValueError(f"initial: asked for {k} random seeds but only {len(free)} nodes are susceptible")
            pick = torch.rand(len(free), runs, device=device).topk(k, dim=0).indices
            x.scatter_(0, free[pick], torch.full_like(pick, I, dtype=torch.int8))
        else:
            idx = self._node_indices(initial, "initial")
            if set(idx) & set(imm):
                raise ValueError("initial: a seed node is also immune")
            x[idx] = I
        return x

    def simulate(self, runs: int = 1, steps: int | None = None, initial: Any = None, seed: int | None = None, *,
                 method: str = "discrete", rates: dict | str | None = None, immune: Any = None,
                 chunk: int | None = None, record_states: bool = False, progress: bool = False,
                 device: Any = None) -> Outbreaks:
        """Simulate ``runs`` independent outbreaks for ``steps`` steps.

        Arguments:
            runs: number of runs, simulated together (``chunk`` at a time; default
                keeps the working set near 4 million node-runs).
            steps: number of steps (default: the model's ``steps``).
            initial: seed nodes (a list of node ids, the same in every run; one
                node id that is not an int may be given bare), or an int k for k
                random seeds per run; default: the model's ``initial``, else one
                random node per run.
            seed: random seed.
            method: "discrete" (batched, sparse torch) or "gillespie" (exact
                continuous time, one run at a time in NumPy, for small graphs; the
                states are read at integer times and ``infection_time`` holds the
                continuous times, ``nan`` if never).
            rates: overrides of the rates (dict of floats or per-run tensors), or
                "posterior" for one posterior draw per run.
            immune: more nodes that cannot be infected, for this call.
            record_states: also return every node's state at every step.
        """
        check_positive("runs", runs, integer=True)
        steps = self.steps if steps is None else check_positive("steps", steps, integer=True)
        check_choice("method", method, ["discrete", "gillespie"])
        device = torch.device(device) if device is not None else self.edge_index.device
        use = self._rates_for(runs, rates)
        with seeded(seed), torch.no_grad():
            x0 = self._initial_states(runs, initial, immune, device)
            if method == "gillespie":
                return self._gillespie(runs, steps, x0, use, record_states, seed)
            chunk = max(1, min(runs, 4_000_000 // max(self.n, 1))) if chunk is None else check_positive("chunk", chunk, integer=True)
            return simulate_batch(self.adjacency(device), self.kind, self._hazard(use), x0, steps, chunk=chunk,
                                  record_states=record_states, progress=progress)

    def _rates_for(self, runs: int, rates: dict | str | None) -> dict:
        if rates is None:
            return self.point_rates()
        if isinstance(rates, str):
            check_choice("rates", rates, ["posterior"])
            self._require_fitted("rates='posterior'", bool(self._num_draws()), "call fit(observed) first")
            idx = torch.randint(self._num_draws(), (runs,))
            return {k: getattr(self, f"posterior_{k}")[idx] for k in _RATES[self.kind]}
        out = dict(self.point_rates())
        for k, v in rates.items():
            if k not in _RATES[self.kind]:
                raise unknown_key(f"rate of the {self.kind} model", k, _RATES[self.kind])
            t = torch.as_tensor(v, dtype=torch.float32)
            if not torch.all(torch.isfinite(t)) or torch.any(t < 0) or (k == "p" and torch.any(t > 1)):
                raise ValueError(f"rates[{k!r}]: expected {'probabilities in [0, 1]' if k == 'p' else 'finite rates >= 0'}")
            if t.dim() and len(t) != runs:
                raise ValueError(f"rates[{k!r}]: expected one value or {runs} (one per run), got {len(t)}")
            out[k] = t
        return out

    def _gillespie(self, runs, steps, x0, rates, record_states, seed) -> Outbreaks:
        if self.kind in ("IC", "LT"):
            raise ValueError(f"method: 'gillespie' is for SI/SIS/SIR/SEIR (continuous-time rates), not {self.kind}")
        if self.n > 5000:
            raise ValueError(f"method: 'gillespie' simulates one event at a time; {self.n} nodes is too many (<= 5000)")
        rng = np.random.default_rng(seed)
        edges, weights = self.edge_index.cpu().numpy(), self.edge_weight.cpu().numpy().astype(float)
        snaps, t_inf, t_rec, t_ons = [], [], [], []
        for r in range(runs):
            rr = {k: float(v if not torch.is_tensor(v) or v.dim() == 0 else v[r]) for k, v in rates.items()}
            out = gillespie(edges, weights, self.n, self.kind, rr, x0[:, r].cpu().numpy(), float(steps), rng)
            snaps.append(out[0]); t_inf.append(out[1]); t_rec.append(out[2]); t_ons.append(out[3])  # noqa: E702
        states = torch.as_tensor(np.stack(snaps))
        codes = [c for _, c in COMPARTMENTS[self.kind]]
        counts = torch.stack([(states == c).sum(-1) for c in codes], -1).long()
        f = lambda a: torch.as_tensor(np.stack(a), dtype=torch.float64)  # noqa: E731
        return Outbreaks(counts, self.compartments, f(t_inf), f(t_rec) if self.kind != "SI" else None,
                         f(t_ons) if self.kind == "SEIR" else None, states if record_states else None,
                         torch.arange(steps + 1, dtype=torch.float32))

    # ------------------------------------------------------------ Pyro model
    def _prior(self, name: str, device) -> dist.Distribution:
        a, b = self.priors[name]
        if name in _UNIT:
            return dist.Beta(torch.tensor(a, device=device), torch.tensor(b, device=device))
        return dist.LogNormal(torch.tensor(math.log(a), device=device), torch.tensor(b, device=device))

    def _latent_names(self, mode: int) -> list[str]:
        names = list(_RATES[self.kind])
        return names + (["rho", "phi"] if mode == 1 else [])

    def model(self, mode: torch.Tensor, *data: torch.Tensor) -> None:
        """The Pyro program: rates from their priors, then the observed outbreak.

        ``mode`` 0: node-level chain-binomial counts (infections, recoveries,
        onsets); ``mode`` 1: reported cases per step, gamma-Poisson around
        ``rho`` times the mean-field expected new infections.
        """
        m = int(mode.reshape(-1)[0])
        if self.kind == "LT":
            raise ValueError("fit: the linear threshold model has no rates to infer")
        dev = mode.device
        r = {name: pyro.sample(name, self._prior(name, dev)) for name in self._latent_names(m)}
        beta = -torch.log1p(-r["p"].clamp(max=1 - 1e-6)) if self.kind == "IC" else r["beta"]
        if m == 0:
            pressure, trials, events = (d.reshape(-1) for d in data[:3])
            rec_t, rec_e, ons_t, ons_e = (d.reshape(()) for d in data[3:])
            x = beta * pressure
            pyro.sample("infections", dist.Binomial(trials, logits=x + log1mexp(x)).to_event(1), obs=events)
            if self.kind in ("SIR", "SEIR", "SIS"):
                g = r["gamma"]
                pyro.sample("recoveries", dist.Binomial(rec_t, logits=g + log1mexp(g)), obs=rec_e)
            if self.kind == "SEIR":
                s = r["sigma"]
                pyro.sample("onsets", dist.Binomial(ons_t, logits=s + log1mexp(s)), obs=ons_e)
        else:
            cases, init = data[0].reshape(-1), data[1].reshape(-1)
            mu = mean_field_cases(self.edge_index, self.edge_weight, self.n, self.kind, init, len(cases), beta,
                                  r.get("gamma"), r.get("sigma"))
            mean = r["rho"] * mu + 1e-3
            pyro.sample("cases", dist.GammaPoisson(r["phi"], r["phi"] / mean).to_event(1), obs=cases)

    def guide(self, mode: torch.Tensor, *data: torch.Tensor) -> None:
        """Mean-field guide: log-normal for positive rates, logit-normal for probabilities."""
        for name in self._latent_names(int(mode.reshape(-1)[0])):
            k = _SITES.index(name)
            base = dist.Normal(self.guide_loc[k], self.guide_scale[k])
            if name in _UNIT:
                pyro.sample(name, dist.TransformedDistribution(base, [dist.transforms.SigmoidTransform()]))
            else:
                pyro.sample(name, dist.LogNormal(self.guide_loc[k], self.guide_scale[k]))

    # ---------------------------------------------------------------- data
    def node_states(self, observed: Any, name: str = "observed") -> torch.Tensor:
        """(runs, steps + 1, nodes) int8 states from an ``Outbreaks``, a dict of times, or a tensor of codes."""
        if isinstance(observed, Outbreaks):
            if observed.states is not None:  # checked like any tensor of state codes
                return self.node_states(observed.states, f"{name}.states")
            if self.kind == "SIS" or observed.infection_time.is_floating_point():
                raise ValueError(f"{name}: these outbreaks carry no states; simulate with record_states=True")
            observed = {"infection_time": observed.infection_time, "recovery_time": observed.recovery_time,
                        "onset_time": observed.onset_time, "steps": observed.counts.shape[1] - 1}
        if isinstance(observed, dict):
            unknown = set(observed) - {"infection_time", "recovery_time", "onset_time", "steps", "immune"}
            if unknown:
                raise unknown_key(f"{name} key", sorted(unknown)[0], ["infection_time", "recovery_time", "onset_time", "steps", "immune"])
            if "infection_time" not in observed or "steps" not in observed:
                raise ValueError(f"{name}: node-level times need 'infection_time' and 'steps'")
            steps = check_positive(f"{name}['steps']", int(observed["steps"]), integer=True)
            ts = {}
            for key in ("infection_time", "recovery_time", "onset_time"):
                if observed.get(key) is None:
                    continue
                t = as_tensor(observed[key], f"{name}[{key!r}]", dtype=torch.long, ndim=(1, 2))
                t = t[None] if t.dim() == 1 else t
                if t.shape[-1] != self.n:
                    raise ValueError(f"{name}[{key!r}]: expected one time per node ({self.n}), got {t.shape[-1]}")
                if bool((t > steps).any()) or bool((t < -1).any()):
                    raise ValueError(f"{name}[{key!r}]: times must lie in [0, {steps}] or be -1 (never)")
                ts[key] = t
            need_rec = self.kind in ("SIR", "SEIR", "IC")
            if need_rec and "recovery_time" not in ts:
                raise ValueError(f"{name}: the {self.kind} model needs 'recovery_time' too")
            imm = torch.zeros_like(ts["infection_time"], dtype=torch.bool)
            if observed.get("immune") is not None:
                imm[:, self._node_indices(observed["immune"], f"{name}['immune']")] = True
            return states_from_times(steps, ts["infection_time"], ts.get("onset_time"), ts.get("recovery_time"), imm,
                                     self.kind)
        x = as_tensor(observed, name, dtype=torch.long, ndim=(2, 3))
        x = x[None] if x.dim() == 2 else x
        if x.shape[-1] != self.n:
            raise ValueError(f"{name}: expected {self.n} columns (one per node), got {x.shape[-1]}")
        if x.shape[1] < 2:
            raise ValueError(f"{name}: expected at least 2 steps, got {x.shape[1]}")
        valid = {c for _, c in COMPARTMENTS[self.kind]} | {R}
        if bool(((x < 0) | (x > 3)).any()) or not set(torch.unique(x).tolist()) <= valid:
            raise ValueError(f"{name}: expected state codes in {sorted(valid)} (0=S, 1=E, 2=I, 3=R) for {self.kind}")
        return x.to(torch.int8)

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        """Observed outbreak(s) -> (mode, statistics...), every tensor with a leading axis of 1."""
        if self.kind == "LT":
            raise ValueError("fit: the linear threshold model has no rates to infer")
        if isinstance(data, dict) and "cases" in data or (not isinstance(data, (dict, Outbreaks)) and _ndim(data) == 1):
            cases_in, init = (data["cases"], data.get("initial")) if isinstance(data, dict) else (data, None)
            if isinstance(data, dict):
                extra = set(data) - {"cases", "initial", "steps"}
                if extra:
                    raise unknown_key(f"{name} key", sorted(extra)[0], ["cases", "initial", "steps"])
            cases = as_tensor(cases_in, f"{name} (cases)", ndim=1)
            if isinstance(data, dict) and data.get("steps") is not None and len(cases) != int(data["steps"]):
                raise ValueError(f"{name}: expected {int(data['steps'])} daily counts (steps), got {len(cases)}")
            if len(cases) < 2:
                raise ValueError(f"{name}: expected a series of at least 2 steps of new cases, got {len(cases)}")
            if bool((cases < 0).any()) or not torch.equal(cases, cases.round()):
                raise ValueError(f"{name}: new cases must be non-negative integers")
            if init is None:
                if self.initial is None:
                    raise ValueError(f"{name}: aggregate counts need the seed nodes: pass "
                                     "{'cases': ..., 'initial': [nodes]} or build the model with initial=[...]")
                init = [self.nodes[i] for i in self.initial]
            x0 = torch.zeros(self.n, dtype=torch.int8)
            x0[self.immune] = R
            x0[self._node_indices(init, f"{name}['initial']")] = I
            self._mode = 1
            return torch.ones(1, 1), cases[None], x0[None].float()
        states = self.node_states(data, name)
        require_examples(len(states), name, "outbreak")
        st = node_level_stats(self.adjacency("cpu"), self.kind, states)
        parts = (st.pressure, st.trials, st.events, st.rec_trials.reshape(1), st.rec_events.reshape(1),
                 st.ons_trials.reshape(1), st.ons_events.reshape(1))
        self._mode = 0
        return (torch.zeros(1, 1),) + tuple(p[None] for p in parts)

    # --------------------------------------------------------------- fitting
    def mcmc_kernel(self):
        """NUTS on the rates; JIT-compiled for node-level data (a tiny model where
        Pyro's per-step tracing would dominate: about 1.6x faster)."""
        from pyro.infer import NUTS

        jit = getattr(self, "_mode", 0) == 0
        return NUTS(self.model, jit_compile=jit, ignore_jit_warnings=True, target_accept_prob=0.8)

    @implements("mcmc")
    def _fit_mcmc(self, data: Any, **options: Any):
        from ...infer.mcmc import fit_mcmc

        result = fit_mcmc(self, data, **options)
        result.inference_data = self._with_r0(result.inference_data)
        return result

    @implements("svi")
    def _fit_svi(self, data: Any, **options: Any):
        from ...infer.svi import fit_svi

        options.setdefault("steps", 1500)
        options.setdefault("lr", 0.03)
        result = fit_svi(self, data, **options)
        tensors = self.prepare_data(data)
        mode = int(tensors[0].reshape(-1)[0])
        with seeded(options.get("seed")), torch.no_grad():
            k = 1000
            draws = {}
            for name in self._latent_names(mode):
                j = _SITES.index(name)
                z = self.guide_loc[j] + self.guide_scale[j] * torch.randn(k, device=self.guide_loc.device)
                draws[name] = torch.sigmoid(z) if name in _UNIT else torch.exp(z)
        self.set_posterior_samples(draws)
        fn = result.posterior_fn
        result.posterior_fn = lambda num_samples: self._with_r0(fn(num_samples))
        return result

    def set_posterior_samples(self, samples: dict[str, torch.Tensor]) -> None:
        """Keep posterior draws of the rates: later ``sample``/``log_prob`` use them."""
        self._set_posterior({k: v.detach().reshape(-1).float() for k, v in samples.items() if k in _SITES})

    def _set_posterior(self, draws: dict[str, torch.Tensor]) -> None:
        for name in self._posterior_names:
            delattr(self, f"posterior_{name}")
        self._posterior_names = sorted(draws)
        for name in self._posterior_names:
            self.register_buffer(f"posterior_{name}", draws[name].clone())

    def _num_draws(self) -> int:
        return len(getattr(self, f"posterior_{self._posterior_names[0]}")) if self._posterior_names else 0

    def point_rates(self) -> dict[str, torch.Tensor]:
        """The rates used by default: the posterior mean once fitted, else the given ones."""
        if self._num_draws() and all(k in self._posterior_names for k in _RATES[self.kind]):
            return {k: getattr(self, f"posterior_{k}").mean() for k in _RATES[self.kind]}
        return {k: torch.tensor(v) for k, v in self.rates.items()}

    def posterior(self) -> pd.DataFrame:
        """The posterior draws of the rates (and R0) as a DataFrame."""
        self._require_fitted("posterior", bool(self._num_draws()), "call fit(observed) first")
        frame = pd.DataFrame({k: getattr(self, f"posterior_{k}").cpu().numpy() for k in self._posterior_names})
        if self.kind != "LT":
            frame["R0"] = self.reproduction_number(**{k: frame[k].to_numpy() for k in _RATES[self.kind]})
        return frame

    def _with_r0(self, idata):
        import xarray as xr

        post = idata.posterior
        names = _RATES[self.kind]
        if all(k in post for k in names):
            r0 = self.reproduction_number(**{k: post[k].values for k in names})
            idata.posterior["R0"] = xr.DataArray(np.asarray(r0), dims=post[names[0]].dims)
        return idata

    def reproduction_number(self, beta=None, gamma=None, sigma=None, p=None) -> np.ndarray:
        """R0 = transmissibility x mean excess degree (arrays of rates broadcast).

        Transmissibility: the probability that an infectious node infects a given
        susceptible neighbour (mean edge weight) before it recovers, in discrete
        time ``q / (1 - (1 - q)(1 - r))`` with ``q = 1 - exp(-beta w)`` and
        ``r = 1 - exp(-gamma)``; ``p`` for the cascade; 1 for SI.
        """
        rates = dict(self.rates)
        rates.update({k: v for k, v in {"beta": beta, "gamma": gamma, "sigma": sigma, "p": p}.items() if v is not None})
        w = float(self.edge_weight.mean()) if len(self.edge_weight) else 0.0
        if self.kind == "IC":
            trans = np.asarray(rates["p"], dtype=float)
        elif self.kind in ("SI", "LT"):
            trans = np.ones_like(np.asarray(rates.get("beta", 1.0), dtype=float))
        else:
            q = -np.expm1(-np.asarray(rates["beta"], dtype=float) * w)
            r = -np.expm1(-np.asarray(rates["gamma"], dtype=float))
            trans = q / (1 - (1 - q) * (1 - r))
        return trans * self.kappa

    # ------------------------------------------------------------- queries
    def _sample(self, n: int, steps: int | None = None, initial: Any = None) -> torch.Tensor:
        """``n`` outbreaks as node states (n, steps + 1, nodes) int8."""
        rates = "posterior" if self._num_draws() and all(k in self._posterior_names for k in _RATES[self.kind]) else None
        out = self.simulate(n, steps, initial, rates=rates, record_states=True)
        return out.states

    def log_prob(self, x: Any) -> torch.Tensor:
        """Exact log-likelihood of each node-level outbreak given its first step (per run)."""
        states = self.node_states(x, "x")
        at = self.adjacency("cpu")
        if self.kind == "LT":
            return _threshold_log_prob(at, states)
        rates = self._hazard(self.point_rates())
        out = []
        for st in node_level_stats(at, self.kind, states, per_run=True):
            out.append(node_log_likelihood(st, self.kind, rates["beta"], rates.get("gamma"), rates.get("sigma")))
        return torch.stack(out) if out else torch.zeros(0, dtype=torch.float64)

    def score(self, x: Any) -> torch.Tensor:
        """Negative log-likelihood per outbreak (higher = less like this model)."""
        return -self.log_prob(x)

    # ---------------------------------------------------------- interventions
    def _pick(self, nodes: Any, fraction: float | None, k: int | None, seed: int | None) -> list:
        if isinstance(nodes, str):
            if (fraction is None) == (k is None):
                raise ValueError("fraction, k: give exactly one of them with a strategy")
            if fraction is not None:
                k = int(round(check_probability("fraction", fraction) * self.n))
            else:
                check_positive("k", k, strict=False, integer=True)
            pool = self.graph.subgraph([v for i, v in enumerate(self.nodes) if i not in set(self.immune)])
            return analysis.choose_nodes(pool, nodes, k, seed)
        return [self.nodes[i] for i in self._node_indices(nodes, "nodes")]

    def vaccinate(self, nodes: Any = "degree", fraction: float | None = None, k: int | None = None,
                  seed: int | None = None) -> "Spread":
        """A copy where the chosen nodes are immune.

        Arguments:
            nodes: "degree" (hubs first), "random", "acquaintance" (a random
                neighbour of a random node), or a list of node ids.
            fraction, k: how many, for a strategy (a fraction of all nodes, or a count).
            seed: random seed of the random strategies.
        """
        chosen = self._pick(nodes, fraction, k, seed)
        cfg = self.get_config()
        cfg["immune"] = list(dict.fromkeys(cfg["immune"] + chosen))
        if cfg["initial"] is not None and set(cfg["initial"]) & set(chosen):
            cfg["initial"] = None
        return type(self).from_config(cfg)

    def remove_nodes(self, nodes: Any = "degree", fraction: float | None = None, k: int | None = None,
                     seed: int | None = None) -> "Spread":
        """A copy on the graph without the chosen nodes (same choices as ``vaccinate``)."""
        chosen = set(self._pick(nodes, fraction, k, seed))
        cfg = self.get_config()
        g = self.graph.copy()
        g.remove_nodes_from(chosen)
        cfg["graph"] = g
        cfg["immune"] = [v for v in cfg["immune"] if v not in chosen]
        cfg["initial"] = None if cfg["initial"] is None else [v for v in cfg["initial"] if v not in chosen] or None
        return type(self).from_config(cfg)

    def expected_final_size(self, runs: int = 1000, steps: int | None = None, initial: Any = None,
                            seed: int | None = None, **kwargs: Any) -> tuple[float, float]:
        """Mean number of nodes ever infected over ``runs`` simulations, and its standard error."""
        sizes = self.simulate(runs, steps, initial, seed, **kwargs).final_size.double()
        return float(sizes.mean()), float(sizes.std() / math.sqrt(runs)) if runs > 1 else float("nan")

    def influence_maximization(self, k: int, samples: int = 500, seed: int | None = None) -> tuple[list, list[float]]:
        """The ``k`` seeds of largest expected cascade, greedy with lazy evaluation (CELF).

        Independent cascade only. Returns the chosen node ids and the estimated
        expected number of activated nodes after each pick (over ``samples``
        live-edge graphs).
        """
        if self.kind != "IC":
            raise ValueError(f"influence_maximization: needs the independent cascade (model='IC'), not {self.kind}")
        check_positive("k", k, integer=True)
        p = float(self.point_rates()["p"])
        probs = 1 - (1 - p) ** self.edge_weight.cpu().double()
        keep = ~torch.isin(self.edge_index[1].cpu(), torch.tensor(self.immune, dtype=torch.long))
        cand = [i for i in range(self.n) if i not in set(self.immune)]
        chosen, values = analysis.celf_influence(self.edge_index.cpu()[:, keep], probs[keep].float(), self.n, k,
                                                 samples, seed, cand)
        return [self.nodes[i] for i in chosen], values

    def mean_field(self, steps: int | None = None, initial: Any = None, kind: str = "individual") -> pd.DataFrame:
        """Expected compartment counts per step from a deterministic approximation.

        ``kind="individual"``: the discrete-time individual-based mean field on the
        graph (the recursion behind the aggregate-data likelihood);
        ``"homogeneous"``: the classic ODE of a well-mixed population with the
        graph's mean degree (rates per unit time, read at integer times).
        """
        check_choice("kind", kind, ["individual", "homogeneous"])
        steps = self.steps if steps is None else check_positive("steps", steps, integer=True)
        if initial is None:
            if self.initial is None:
                raise ValueError("initial: the mean field needs seed nodes (a list of node ids)")
            initial = [self.nodes[i] for i in self.initial]
        x0 = self._initial_states(1, initial, None, torch.device("cpu"))[:, 0]
        rates = self._hazard(self.point_rates())
        cols = self.compartments
        codes = [c for _, c in COMPARTMENTS[self.kind]]
        if kind == "homogeneous":
            mean_deg = float(self.edge_weight.sum()) / max(self.n, 1)
            g = float(rates.get("gamma", 0.0)) if self.kind != "IC" else 1.0
            traj = analysis.homogeneous_ode(self.kind, self.n, mean_deg, int((x0 == I).sum()), steps,
                                            float(rates["beta"]), g, float(rates.get("sigma", 0.0)), int((x0 == R).sum()))
            return pd.DataFrame(traj, columns=list(cols)).rename_axis("step")
        with torch.no_grad():
            traj = mean_field_cases(self.edge_index.cpu(), self.edge_weight.cpu(), self.n, self.kind, x0, steps,
                                    rates["beta"], rates.get("gamma"), rates.get("sigma"), trajectory=True)
        return pd.DataFrame(traj[:, codes].numpy(), columns=list(cols)).rename_axis("step")

    # ------------------------------------------------------------- examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        from ... import datasets

        g = datasets.load("karate")
        m = cls(g, "SIR", beta=0.4, gamma=0.3, initial=[0], steps=15)
        data = m.simulate(1, 15, seed=1, record_states=True)
        return ContractCase(m, data, {"inference": "svi", "steps": 60, "lr": 0.05},
                            sample_kwargs={}, log_prob_data=data.states[:, :, :])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """SIR on the karate club: rates inferred by NUTS from one outbreak, epidemic curves against the truth."""
        import os

        import matplotlib.pyplot as plt

        import probgen
        from ... import plot
        from ...gallery import TourSection, demo_source

        draws = 60 if quick else 300

        def demo():
            graph = probgen.datasets.load("karate")
            truth = probgen.models.Spread(graph, "SIR", beta=0.4, gamma=0.3, initial=[0], steps=15)
            observed = truth.simulate(1, 15, seed=3, record_states=True)  # one outbreak, node by node
            model = probgen.models.Spread(graph, "SIR", initial=[0], steps=15)
            model.fit(observed, num_samples=draws, warmup_steps=draws, num_chains=1, seed=0, progress=False)
            predicted = model.simulate(500, 15, seed=1, rates="posterior")  # posterior predictive outbreaks
            return graph, observed, model, predicted

        graph, observed, model, predicted = demo()
        post = model.posterior()
        fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.8))
        times = observed.infection_time[0].float().numpy()
        cmap = plt.get_cmap("viridis")
        colors = [cmap(t / max(times.max(), 1)) if t >= 0 else "lightgray" for t in times]
        plot.draw_network(graph, node_color=colors, ax=left,
                          title="step each member was infected (dark: early, yellow: late, gray: never)")
        steps = np.arange(observed.counts.shape[1])
        for k, name in enumerate(["S", "I", "R"]):
            band = predicted.count(name).float()
            right.fill_between(steps, band.quantile(0.05, 0).numpy(), band.quantile(0.95, 0).numpy(), alpha=0.25,
                               color=f"C{k}", label=f"{name}: 90% of posterior predictive runs")
            right.plot(steps, observed.count(name)[0].numpy(), color=f"C{k}", lw=2, label=f"{name}: observed outbreak")
        right.set(xlabel="step", ylabel="members", title="epidemic curves")
        right.legend(fontsize=6, loc="center right")
        path = plot.save_figure(fig, os.path.join(out_dir, "spread_karate.png"))
        beta, gamma = float(post["beta"].mean()), float(post["gamma"].mean())
        q = post[["beta", "gamma"]].quantile([0.05, 0.95])
        covered = (q["beta"].iloc[0] <= 0.4 <= q["beta"].iloc[1]) and (q["gamma"].iloc[0] <= 0.3 <= q["gamma"].iloc[1])
        return TourSection(
            cls.family, "SIR epidemic on the karate club, rates inferred from one outbreak",
            [(path, "left: when each club member was infected in the observed outbreak; right: susceptible, "
                    "infected and recovered counts of that outbreak (lines) and the 90% band of 500 outbreaks "
                    "simulated from the posterior")],
            {"posterior mean beta": f"{beta:.2f} (true 0.40), 90% interval {q['beta'].iloc[0]:.2f}-{q['beta'].iloc[1]:.2f}",
             "posterior mean gamma": f"{gamma:.2f} (true 0.30), 90% interval {q['gamma'].iloc[0]:.2f}-{q['gamma'].iloc[1]:.2f}",
             "members infected": f"{int(observed.final_size[0])} of 34"},
            demo_source(demo, draws=draws), "works" if covered else "limited",
            "" if covered else "The 90% intervals miss a true rate: one outbreak of 34 people carries little "
                               "information, and the chain is short.")


def _threshold_log_prob(at: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Exact log-likelihood of linear-threshold runs (thresholds uniform on (0, 1)).

    Given not active after step t - 1, v activates at step t + 1 with probability
    ``(W_t - W_{t-1}) / (1 - W_{t-1})``, W the normalised active in-weight.
    """
    runs, t1, n = states.shape
    indeg = torch.sparse.mm(at, torch.ones(n, 1))[:, 0].clamp_min(1e-30)
    active = (states == I).to(torch.float32)
    w = torch.sparse.mm(at, active.permute(2, 0, 1).reshape(n, -1)).reshape(n, runs, t1).permute(1, 2, 0) / indeg
    w = w.clamp(max=1.0)
    prev = torch.cat([torch.zeros_like(w[:, :1]), w[:, :-1]], 1)
    sus = states[:, :-1] == S
    new = sus & (states[:, 1:] == I)
    stay = sus & (states[:, 1:] == S)
    num, den = (w - prev)[:, :-1], (1 - prev)[:, :-1].clamp_min(1e-12)
    p_act = (num / den).clamp(0.0, 1.0)
    lp = torch.where(new, torch.log(p_act), torch.zeros_like(p_act)) + torch.where(stay, torch.log1p(-p_act), torch.zeros_like(p_act))
    return lp.sum((1, 2))


def _ndim(data: Any) -> int:
    if isinstance(data, torch.Tensor):
        return data.dim()
    try:
        return np.asarray(data).ndim
    except Exception:  # ragged
        return -1


def _as_graph(graph: Any) -> nx.Graph:
    if isinstance(graph, dict) and "edges" in graph and "nodes" in graph:
        g = nx.DiGraph() if graph.get("directed") else nx.Graph()
        g.add_nodes_from(graph["nodes"])
        g.add_weighted_edges_from((u, v, w) for u, v, w in graph["edges"])
        return g
    if not isinstance(graph, nx.Graph):
        raise ValueError(f"graph: expected a networkx graph, got {type(graph).__name__}")
    if graph.number_of_nodes() == 0:
        raise ValueError("graph: the graph is empty; expected at least one node")
    if graph.is_multigraph():
        raise ValueError("graph: multigraphs are not supported; merge parallel edges into weights (nx.Graph(g))")
    return graph


def _edge_list(graph: nx.Graph, index: dict) -> tuple[torch.Tensor, torch.Tensor]:
    src, dst, w = [], [], []
    for u, v, data in graph.edges(data=True):
        weight = data.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) or not np.isfinite(weight) or weight <= 0:
            raise ValueError(f"graph: edge ({u!r}, {v!r}) has weight {weight!r}; expected a finite number > 0")
        src.append(index[u]); dst.append(index[v]); w.append(float(weight))  # noqa: E702
        if not graph.is_directed() and u != v:
            src.append(index[v]); dst.append(index[u]); w.append(float(weight))  # noqa: E702
    edges = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
    return edges, torch.tensor(w, dtype=torch.float32)


def _graph_to_dict(graph: nx.Graph) -> dict:
    nodes = [v.item() if isinstance(v, np.generic) else v for v in graph.nodes()]
    edges = [[u, v, float(d.get("weight", 1.0))] for u, v, d in graph.edges(data=True)]
    return {"nodes": nodes, "edges": edges, "directed": graph.is_directed()}
