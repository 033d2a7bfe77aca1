"""Compiled inference: a static Pyro program as one flat torch function.

On small models Pyro's per-step tracing (messages through the handler stack, trace
bookkeeping) costs more than the arithmetic. For a program whose structure is static (the
same sample sites, shapes and distribution types on every call) that work gives the same
result each time, so it can be done once: the loss (an ELBO estimate, or NUTS's potential
energy) is traced with ``torch.fx``'s ``make_fx`` into a graph of plain torch operations of
the parameters (and of the unconstrained latent values, for MCMC) and the inputs, which
later calls replay without Pyro. Random draws are graph operations too, so the replay draws
afresh every call from torch's generator, in the same order as Pyro would.

The structure check, per input signature (shapes, dtypes, device, parameter shapes, the
data size of ``data_plate`` and the modules' plain Python attributes):

* the program is traced twice, with different random draws; the sample sites (name,
  observed or not, distribution type, batch / event / value shapes, plate scale and mask,
  plates) and the traced operations must agree, else the site that changed is named;
* reading a tensor's value into Python (``if z > 0``, ``.item()``, ``int(n)``) is
  data-dependent control flow and is refused at trace time, naming the site being run;
* guide sites must be reparameterisable and none enumerated (``infer={"enumerate": ...}``);
* the first replay is compared with Pyro's own loss on the same draws (float tolerance).

A program that fails the check runs on the ordinary (Pyro) path: ``fit(..., compiled="auto")``
says so in one line (a ``CompileFallbackWarning``), ``compiled=True`` raises
``NotStaticError`` naming the site. A new signature (another minibatch size, a parameter
of a new shape) is traced anew rather than replayed stale.

Example:
    >>> import torch, probgen
    >>> from probgen.infer.compiled import CompiledELBO
    >>> x = torch.randn(100, 2); y = x @ torch.tensor([1.0, -1.0])
    >>> m = probgen.models.BayesianLinearRegression(num_features=2)
    >>> loss_fn = CompiledELBO(m, num_data=100)
    >>> loss = loss_fn((x, y)); loss.backward()
    >>> loss_fn.is_compiled
    True
"""

from __future__ import annotations

__all__ = ["CompiledELBO", "CompiledPotential", "NotStaticError", "CompileFallbackWarning", "check_static",
           "eager_loss"]

import contextlib
import math
import warnings
import weakref
from typing import Any, Callable

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.messenger import Messenger

LOSSES = ("elbo", "meanfield", "iwae")

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class NotStaticError(ValueError):
    """The program is not static, or not compilable; ``site`` names the sample site concerned."""

    def __init__(self, site: str | None, reason: str):
        self.site, self.reason = site, reason
        where = f"site {site!r}: " if site else ""
        super().__init__(f"compiled: {where}{reason}")


class CompileFallbackWarning(UserWarning):
    """``compiled="auto"`` fell back to the ordinary Pyro path; the message says why."""


# ---------------------------------------------------------------- helpers
@contextlib.contextmanager
def _quiet_pyro() -> Any:
    """Pyro's and torch.distributions' validation off while tracing (their checks read tensor values)."""
    infer_on, poutine_on = pyro.infer.is_validation_enabled(), pyro.poutine.is_validation_enabled()
    dist_on = torch.distributions.Distribution._validate_args
    pyro.infer.enable_validation(False)
    pyro.poutine.enable_validation(False)
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        pyro.infer.enable_validation(infer_on)
        pyro.poutine.enable_validation(poutine_on)
        torch.distributions.Distribution.set_default_validate_args(dist_on)


@contextlib.contextmanager
def _rng_kept(device: torch.device):
    """Run the block, then put torch's generator back: tracing must not shift later draws."""
    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


class _SiteTracker(Messenger):
    """Remembers the sample site being processed, so a trace failure can name it."""

    def __init__(self):
        super().__init__()
        self.last: str | None = None

    def _process_message(self, msg):
        if msg["type"] == "sample" and type(msg["fn"]).__name__ != "_Subsample":  # not a plate's own site
            self.last = msg["name"]


def _dist_types(fn) -> str:
    names = []
    while fn is not None:
        names.append(type(fn).__name__)
        fn = getattr(fn, "base_dist", None)
    return "/".join(names)


def _scale(value) -> Any:
    if torch.is_tensor(value):
        return ("tensor", tuple(value.shape))
    return float(value)


def _structure(trace) -> list[tuple]:
    """What must not change between calls, per sample site (in program order)."""
    out = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample":
            continue
        fn, value = site["fn"], site["value"]
        mask = site["mask"]
        out.append((name, {
            "observed": bool(site["is_observed"]),
            "distribution": _dist_types(fn),
            "batch shape": tuple(getattr(fn, "batch_shape", ())),
            "event shape": tuple(getattr(fn, "event_shape", ())),
            "value shape": tuple(value.shape) if torch.is_tensor(value) else None,
            "scale": _scale(site["scale"]),
            "mask": None if mask is None else (bool(mask) if isinstance(mask, bool) else tuple(mask.shape)),
            "plates": tuple((f.name, f.size, f.dim) for f in site["cond_indep_stack"]),
        }))
    return out


def _compare_structures(first: list[tuple], second: list[tuple], program: str) -> None:
    a, b = dict(first), dict(second)
    for name, info in first:
        if name not in b:
            raise NotStaticError(name, f"the {program} samples it on one call but not on the next "
                                       "(its structure depends on random draws or on Python state)")
        for key, value in info.items():
            if b[name][key] != value:
                raise NotStaticError(name, f"its {key} changed between two calls of the {program} "
                                           f"({value} then {b[name][key]})")
    for name, _ in second:
        if name not in a:
            raise NotStaticError(name, f"the {program} samples it on one call but not on the next")
    if [n for n, _ in first] != [n for n, _ in second]:
        raise NotStaticError(None, f"the {program}'s sites came in a different order on the next call")


def _check_compilable(model_tr, guide_tr, owned: set | None = None) -> None:
    for trace in (guide_tr, model_tr):
        for name, site in trace.nodes.items():
            if site["type"] == "param" and owned is not None and name not in owned \
                    and f"{name}_unconstrained" not in owned:
                raise NotStaticError(name, "is a pyro.param of the global param store: its value would be frozen "
                                           "into the graph (keep parameters in the module, e.g. PyroParam)")
    for name, site in guide_tr.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        if site["infer"].get("enumerate"):
            raise NotStaticError(name, "is enumerated (use the ordinary path, e.g. loss='enum')")
        if not getattr(site["fn"], "has_rsample", False):
            raise NotStaticError(name, f"{type(site['fn']).__name__} in the guide is not reparameterisable")
        if name not in model_tr.nodes and not site["infer"].get("is_auxiliary"):
            raise NotStaticError(name, "is in the guide but not in the model")
    for name, site in model_tr.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and name not in guide_tr.nodes:
            raise NotStaticError(name, "is a latent site of the model that the guide does not sample")
        if site["type"] == "sample" and site["infer"].get("enumerate"):
            raise NotStaticError(name, "is enumerated")


def _batch_len(batch: tuple) -> int:
    first = batch[0] if batch else None
    return len(first) if torch.is_tensor(first) and first.dim() else 1


def _sample_sites(trace):
    return [(n, s) for n, s in trace.nodes.items() if s["type"] == "sample"]


# --------------------------------------------------------------- the ELBOs
def _particle(model: Callable, guide: Callable, args: tuple, loss: str, tracker: Messenger | None = None,
              owned: set | None = None):
    """One particle: (elbo term, model trace, guide trace), from Pyro's own traces.

    ``elbo``: log p(x, z) - log q(z) with every site's scale and mask (Trace_ELBO's value for
    reparameterised guides); ``meanfield``: analytic KL where torch has it, else that Monte
    Carlo term (TraceMeanField_ELBO); ``iwae``: log p - log q per index of the plates every
    site shares (RenyiELBO's log-weights at alpha = 0).
    """
    stack = tracker if tracker is not None else contextlib.nullcontext()
    with stack:
        guide_tr = poutine.trace(guide).get_trace(*args)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args)
    guide_tr = pyro.poutine.util.prune_subsample_sites(guide_tr)
    model_tr = pyro.poutine.util.prune_subsample_sites(model_tr)
    _check_compilable(model_tr, guide_tr, owned)
    if loss == "iwae":
        return _log_weights(model_tr, guide_tr), model_tr, guide_tr
    model_tr.compute_log_prob()
    guide_tr.compute_log_prob()
    elbo = 0.0
    for name, site in _sample_sites(model_tr):
        if loss == "meanfield" and not site["is_observed"]:
            g = guide_tr.nodes[name]
            try:
                kl = torch.distributions.kl_divergence(g["fn"], site["fn"])
            except NotImplementedError:
                elbo = elbo + site["log_prob_sum"] - g["log_prob_sum"]
                continue
            kl = scale_and_mask(kl, scale=g["scale"], mask=g["mask"])
            elbo = elbo - (kl.sum() if torch.is_tensor(kl) else kl * torch.Size(g["fn"].batch_shape).numel())
        else:
            elbo = elbo + site["log_prob_sum"]
    for name, site in _sample_sites(guide_tr):
        if site["is_observed"]:
            continue
        if loss == "meanfield" and name in model_tr.nodes:
            continue  # counted with its model site
        elbo = elbo - site["log_prob_sum"]
    return elbo, model_tr, guide_tr


def _log_weights(model_tr, guide_tr) -> torch.Tensor:
    """log p - log q summed over all dims but those of the plates common to every site."""
    sites = _sample_sites(model_tr) + [(n, s) for n, s in _sample_sites(guide_tr) if not s["is_observed"]]
    common = None
    for _, site in sites:
        dims = {f.dim for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None}
        common = dims if common is None else common & dims
    common = common or set()
    total = 0.0
    for sign, trace in ((1.0, model_tr), (-1.0, guide_tr)):
        trace.compute_log_prob()
        for _, site in _sample_sites(trace):
            if sign < 0 and site["is_observed"]:
                continue
            lp = site["log_prob"]
            if not torch.is_tensor(lp):
                lp = torch.as_tensor(lp)
            drop = [d for d in range(-lp.dim(), 0) if d not in common]
            if drop:
                lp = lp.sum(drop, keepdim=True)
            total = total + sign * lp
    return total


def eager_loss(model: Callable, guide: Callable, args: tuple, loss: str = "elbo", num_particles: int = 1,
               tracker: Messenger | None = None) -> torch.Tensor:
    """The negative ELBO (``loss`` in "elbo", "meanfield", "iwae") computed through Pyro's handlers.

    This is what ``CompiledELBO`` traces; run as is, it is the ordinary path of ``loss="iwae"``
    (Pyro's ``RenyiELBO`` has no differentiable loss). Particles run one after the other.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    terms = [_particle(model, guide, args, loss, tracker)[0] for _ in range(num_particles)]
    if loss == "iwae":
        stacked = torch.stack(torch.broadcast_tensors(*terms)) if num_particles > 1 else terms[0][None]
        return -(torch.logsumexp(stacked, 0) - math.log(num_particles)).sum()
    return -sum(terms) / num_particles


# ---------------------------------------------------------- the compiled loss
def _scalar_state(module: torch.nn.Module) -> tuple:
    """Plain Python attributes of every submodule (a change of one may change the program)."""
    out = []
    for name, sub in module.named_modules():
        for key, value in sub.__dict__.items():
            # (None is skipped: an attribute set to None later reads as one never set, like data_size's)
            if isinstance(value, (bool, int, float, str)) and key != "_num_data" and not key.startswith("__"):
                out.append((name, key, value))
    return tuple(out)


def _signature(module: torch.nn.Module, args: tuple, extra: tuple) -> tuple:
    arg_sig = tuple((tuple(a.shape), a.dtype, a.device, a.requires_grad) if torch.is_tensor(a) else ("py", a)
                    for a in args)
    par_sig = tuple((n, tuple(p.shape), p.dtype, p.device, p.requires_grad)
                    for n, p in module.named_parameters())
    buf_sig = tuple((n, tuple(b.shape), b.dtype) for n, b in module.named_buffers())
    return (arg_sig, par_sig, buf_sig, _scalar_state(module), torch.get_default_dtype(), extra)


def _state_tensors(module: torch.nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    named = list(module.named_parameters()) + list(module.named_buffers())
    return [n for n, _ in named], [t for _, t in named]


def _trace_graph(fn: Callable, inputs: tuple):
    from torch.fx.experimental.proxy_tensor import make_fx

    return make_fx(fn, tracing_mode="real", pre_dispatch=False)(*inputs)


def _scripted(graph_module, inputs: tuple):
    """The graph as a TorchScript function (``torch.jit.trace`` of the plain-aten graph), else as is.

    The graph is already flat, so tracing it records it exactly; TorchScript then runs its
    operations from C++, about three times cheaper per operation than the FX module's Python
    (``probgen bench nuts`` / ``svi``). Any failure keeps the FX module.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.trace(graph_module, inputs, check_trace=False)
    except Exception:  # noqa: BLE001 - TorchScript refuses some graphs; the FX module is as exact
        return graph_module


def _foldable(node) -> bool:
    import operator

    if node.op != "call_function":
        return False
    if node.target is operator.getitem:
        return True
    op = node.target
    if not isinstance(op, torch._ops.OpOverload):
        return False
    if op._schema.is_mutable or torch.Tag.nondeterministic_seeded in op.tags:
        return False
    return not op._schema.name.startswith("aten::empty")


def _optimize(graph_module):
    """Fold what depends only on constants (log of a prior's scale, ...), then drop dead operations.

    Written here because make_fx keeps every operation the program ran, including those whose
    results are unused (a plate's ``arange``) or the same on every call; on a small model they
    are a good part of the step. Random operations and in-place ones are never folded.
    """
    import torch.fx as fx
    from torch.utils._pytree import tree_map

    values: dict = {}
    graph = graph_module.graph
    folded = 0
    for node in list(graph.nodes):
        if node.op == "get_attr":
            values[node] = getattr(graph_module, node.target)
            continue
        if not _foldable(node):
            continue
        ok = True

        def resolve(a):
            nonlocal ok
            if isinstance(a, fx.Node):
                if a not in values:
                    ok = False
                    return None
                return values[a]
            return a

        args = tree_map(resolve, node.args)
        kwargs = tree_map(resolve, node.kwargs)
        if not ok:
            continue
        with torch.no_grad():
            values[node] = node.target(*args, **kwargs)
    for node, value in list(values.items()):
        if node.op != "call_function" or not isinstance(value, torch.Tensor):
            continue
        if any(u not in values for u in node.users):
            name = f"_folded_{folded}"
            folded += 1
            graph_module.register_buffer(name, value, persistent=False)
            with graph.inserting_before(node):
                attr = graph.get_attr(name)
            node.replace_all_uses_with(attr)
    _drop_identities(graph)
    graph.eliminate_dead_code()
    graph_module.recompile()
    return graph_module


_IDENTITY = {"aten::mul": 1, "aten::div": 1, "aten::add": 0, "aten::sub": 0}


def _drop_identities(graph) -> None:
    """``x * 1``, ``x / 1``, ``x + 0``, ``x - 0`` (a constraint's affine map, say) become ``x``."""
    import torch.fx as fx

    for node in list(graph.nodes):
        op = node.target
        if node.op != "call_function" or not isinstance(op, torch._ops.OpOverload):
            continue
        unit = _IDENTITY.get(op._schema.name)
        if unit is None or len(node.args) != 2 or node.kwargs:
            continue
        x, other = node.args
        if not isinstance(x, fx.Node) or isinstance(other, (fx.Node, bool)) or other != unit:
            continue
        val, xval = node.meta.get("val"), x.meta.get("val")
        if val is None or xval is None or val.dtype != xval.dtype or val.shape != xval.shape:
            continue
        node.replace_all_uses_with(x)


def _same_graph(g1, g2) -> bool:
    if g1.code != g2.code:
        return False
    for name, value in g1.named_buffers():
        other = dict(g2.named_buffers()).get(name)
        if other is None or not torch.equal(value, other):
            return False
    for name in dir(g1):
        if name.startswith("_tensor_constant"):
            a, b = getattr(g1, name), getattr(g2, name, None)
            if not (torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)):
                return False
    return True


class _Compiler:
    """Traces ``body(*args)`` as a function of the module's parameters and buffers, per signature."""

    def __init__(self, module: torch.nn.Module, what: str, torch_compile: bool = False):
        self._module = weakref.ref(module)  # the per-model cache must not keep its model alive
        self.what, self.torch_compile = what, torch_compile
        self.graphs: dict[tuple, Any] = {}
        self.traces = 0  # how many signatures were traced (the tests read it)

    @property
    def module(self) -> torch.nn.Module:
        return self._module()

    def build(self, body: Callable, args: tuple, key: tuple, check: Callable[[Any, list], None]):
        from torch.nn.utils.stateless import _reparametrize_module

        names, tensors = _state_tensors(self.module)
        structures: list = []
        tracker = _SiteTracker()

        def flat(state: list, *inputs):
            with _reparametrize_module(self.module, dict(zip(names, state)), tie_weights=True), _quiet_pyro():
                out, structure = body(inputs, tracker)
            structures.append(structure)
            return out

        device = next((a.device for a in args if torch.is_tensor(a)), torch.device("cpu"))
        reference = check.reference()  # the ordinary path first: fills the program's own caches
        graphs = []
        with _rng_kept(device):
            for attempt in range(2):
                try:
                    graphs.append(_trace_graph(flat, (list(tensors), *args)))
                except NotStaticError:
                    raise
                except Exception as err:  # noqa: BLE001 - any failure to trace means: not compilable
                    text = str(err)
                    if "data-dependent" in text or "_local_scalar_dense" in text or "tracing tensor" in text:
                        raise NotStaticError(tracker.last, f"the {self.what} reads a tensor's value into Python "
                                             "(data-dependent control flow, .item(), int(...)) at or after this "
                                             "site") from None
                    raise NotStaticError(tracker.last, f"tracing failed: {text.splitlines()[0][:200]}") from err
        for part in range(len(structures[0])):
            _compare_structures(structures[0][part][1], structures[1][part][1], structures[0][part][0])
        if not _same_graph(*graphs):
            raise NotStaticError(None, f"the {self.what} computed different operations or constants on two calls "
                                       "with the same inputs (Python state or draws outside torch change it)")
        graph = _optimize(graphs[0])
        if self.torch_compile:
            graph = torch.compile(graph, dynamic=False)
        else:
            with _rng_kept(device):
                graph = _scripted(graph, (list(tensors), *args))
        check(graph, list(tensors), reference)
        self.graphs[key] = (graph, names)
        self.traces += 1
        return self.graphs[key]

    def state(self) -> list[torch.Tensor]:
        return _state_tensors(self.module)[1]


class CompiledELBO:
    """The negative ELBO per example of ``model.model`` / ``model.guide``, replayed without Pyro.

    Call it like ``svi_loss``'s function: ``loss_fn(batch)`` with ``batch`` the tuple of
    tensors the programs take. ``loss``: "elbo" (Trace_ELBO), "meanfield"
    (TraceMeanField_ELBO) or "iwae" (importance-weighted bound, RenyiELBO at alpha 0, with
    ``num_particles`` samples); ``num_data``: the full data size that ``data_plate`` scales
    minibatches to (``None``: each batch is the whole data). ``strict``: raise
    ``NotStaticError`` when the program is not static, else run ``fallback(batch)`` (default:
    the same loss through Pyro) and say so once per input signature. ``torch_compile``: also pass the graph to ``torch.compile``.

    Example:
        >>> import torch, probgen
        >>> from probgen.infer.compiled import CompiledELBO
        >>> x = torch.randn(50, 1); y = 2 * x[:, 0]
        >>> m = probgen.models.BayesianLinearRegression(num_features=1)
        >>> f = CompiledELBO(m, num_data=50)
        >>> _ = torch.manual_seed(0); a = f((x, y))
        >>> from probgen.infer.svi import make_elbo
        >>> _ = torch.manual_seed(0)
        >>> with m.data_size(50):
        ...     b = make_elbo("elbo").differentiable_loss(m.model, m.guide, x, y) / 50
        >>> bool(torch.allclose(a, b))
        True
    """

    def __init__(self, model, loss: str = "elbo", num_particles: int = 1, num_data: int | None = None,
                 strict: bool = False, torch_compile: bool = False, fallback: Callable | None = None):
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES} for the compiled path, got {loss!r}")
        self.model, self.loss, self.num_particles, self.num_data = model, loss, int(num_particles), num_data
        self.strict, self.fallback = strict, fallback
        # graphs are kept per model (weakly) so that a second fit of the same model reuses them
        self._compiler = _CACHE.setdefault(model, {}).setdefault(("elbo", torch_compile),
                                                                  _Compiler(model, "model/guide", torch_compile))
        self._refused: dict[tuple, NotStaticError] = {}
        self.fallback_reason: str | None = None

    @property
    def is_compiled(self) -> bool:
        """Whether the last call ran the compiled graph."""
        return getattr(self, "_last_compiled", False)

    @property
    def traces(self) -> int:
        return self._compiler.traces

    def _pyro_loss(self, batch: tuple) -> torch.Tensor:
        n = self.num_data or _batch_len(batch)
        with self.model.data_size(n):
            if self.loss == "iwae":
                return eager_loss(self.model.model, self.model.guide, batch, "iwae", self.num_particles) / n
            elbo = (pyro.infer.Trace_ELBO if self.loss == "elbo" else pyro.infer.TraceMeanField_ELBO)(
                num_particles=self.num_particles, vectorize_particles=False,
                max_plate_nesting=getattr(self.model, "max_plate_nesting", float("inf")))
            return elbo.differentiable_loss(self.model.model, self.model.guide, *batch) / n

    def _body(self, n: int):
        def body(inputs: tuple, tracker: _SiteTracker):
            structure = []
            owned = {name for name, _ in self.model.named_parameters()}
            with self.model.data_size(n):
                terms = []
                for _ in range(self.num_particles):
                    term, model_tr, guide_tr = _particle(self.model.model, self.model.guide, inputs, self.loss,
                                                         tracker, owned)
                    terms.append(term)
                    structure += [("guide", _structure(guide_tr)), ("model", _structure(model_tr))]
            if self.loss == "iwae":
                stacked = torch.stack(torch.broadcast_tensors(*terms)) if len(terms) > 1 else terms[0][None]
                value = -(torch.logsumexp(stacked, 0) - math.log(self.num_particles)).sum()
            else:
                value = -sum(terms) / self.num_particles
            return value / n, structure
        return body

    def _check(self, batch: tuple, n: int):
        device = next((a.device for a in batch if torch.is_tensor(a)), torch.device("cpu"))

        def check(graph, state, reference):
            with _rng_kept(device), torch.no_grad():
                replay = graph(state, *batch)
            if not torch.allclose(replay, reference, rtol=1e-4, atol=1e-5 * max(1.0, float(abs(reference)))):
                raise NotStaticError(None, f"the compiled loss {float(replay):.6g} differs from Pyro's "
                                           f"{float(reference):.6g} on the same draws")

        def reference():
            with _rng_kept(device), torch.no_grad():
                return self._pyro_loss(batch)  # Pyro's checks run here (site shapes, guide/model match)

        check.reference = reference
        return check

    def __call__(self, batch: tuple) -> torch.Tensor:
        batch = tuple(batch)
        n = self.num_data or _batch_len(batch)
        key = _signature(self.model, batch, (n, self.loss, self.num_particles))
        entry = self._compiler.graphs.get(key)
        if entry is None and key not in self._refused:
            try:
                entry = self._compiler.build(self._body(n), batch, key, self._check(batch, n))
            except NotStaticError as err:
                if self.strict:
                    raise
                self._refused[key] = err
                self.fallback_reason = str(err)
                warnings.warn(f"{err}; running the ordinary Pyro path instead", CompileFallbackWarning, stacklevel=2)
        if entry is None:
            self._last_compiled = False
            return self.fallback(batch) if self.fallback is not None else self._pyro_loss(batch)
        self._last_compiled = True
        return entry[0](self._compiler.state(), *batch)


def check_static(model, *args, loss: str = "elbo", num_data: int | None = None) -> None:
    """Raise ``NotStaticError`` (naming the site) unless ``model.model`` / ``model.guide`` compile.

    Example:
        >>> import torch, probgen
        >>> m = probgen.models.BayesianLinearRegression(num_features=1)
        >>> check_static(m, torch.randn(5, 1), torch.randn(5))
    """
    CompiledELBO(model, loss=loss, num_data=num_data, strict=True)(args)


# ------------------------------------------------------- the compiled potential
class CompiledPotential:
    """NUTS/HMC's potential energy of a Pyro model as a flat function of the unconstrained latents.

    Built from ``pyro.infer.mcmc.util.initialize_model`` (its transforms, initial values and
    potential function, which handles constraints and Jacobians); that potential is traced
    once per input signature, checked like ``CompiledELBO`` (two traces agree; a value read
    into Python is refused) and against Pyro's value at the initial point. Call it with a
    dict of unconstrained tensors, as Pyro's ``NUTS(potential_fn=...)`` does.

    Example:
        >>> import torch, probgen
        >>> from probgen.infer.compiled import CompiledPotential
        >>> m = probgen.models.BayesianLinearRegression(num_features=1)
        >>> x = torch.randn(20, 1); y = x[:, 0]
        >>> pot = CompiledPotential(m, (x, y), seed=0)
        >>> sorted(pot.initial_params)
        ['bias', 'sigma', 'weight']
        >>> bool(torch.isfinite(pot(pot.initial_params)))
        True
    """

    def __init__(self, model, args: tuple, max_plate_nesting: int | None = None, seed: int | None = None,
                 torch_compile: bool = False):
        from pyro.infer.mcmc.util import initialize_model

        from ..core.random import seeded

        self.model, self.args = model, tuple(args)
        with seeded(seed), model.data_size(len(args[0])) if args else contextlib.nullcontext():
            init, potential, transforms, _ = initialize_model(model.model, model_args=self.args,
                                                              max_plate_nesting=max_plate_nesting)
        self.initial_params = {k: v.detach() for k, v in init.items()}
        self.transforms = transforms
        self._pyro_potential = potential
        self._names = sorted(init)
        self._compiler = _CACHE.setdefault(model, {}).setdefault(("potential", torch_compile),
                                                                  _Compiler(model, "model", torch_compile))
        n = len(args[0]) if args else None

        def body(inputs: tuple, tracker: _SiteTracker):
            values = dict(zip(self._names, inputs[:len(self._names)]))
            data = inputs[len(self._names):]
            with model.data_size(n) if n else contextlib.nullcontext(), tracker:
                trace = poutine.trace(poutine.condition(model.model, {
                    k: transforms[k].inv(v) if k in transforms else v for k, v in values.items()})).get_trace(*data)
            value = self._potential_from(values, trace)
            return value, [("model", _structure(trace))]

        def check(graph, state, reference):
            with torch.no_grad(), _quiet_pyro():
                replay = graph(state, *[self.initial_params[k] for k in self._names], *self.args)
            if not torch.allclose(replay, reference, rtol=1e-4, atol=1e-4):
                raise NotStaticError(None, f"the compiled potential {float(replay):.6g} differs from Pyro's "
                                           f"{float(reference):.6g} at the initial point")

        def reference():
            with torch.no_grad():
                return potential(self.initial_params)

        check.reference = reference
        zs = tuple(self.initial_params[k] for k in self._names)
        key = _signature(model, zs + self.args, (n, tuple(self._names), tuple(map(repr, transforms.values()))))
        entry = self._compiler.graphs.get(key) or self._compiler.build(body, zs + self.args, key, check)
        self._graph, self._key = entry[0], key

    def _potential_from(self, values: dict, trace) -> torch.Tensor:
        """-(log joint + log |det J|), as Pyro's ``_PEMaker`` computes it."""
        log_joint = trace.log_prob_sum()
        for name, t in self.transforms.items():
            log_joint = log_joint - torch.sum(t.log_abs_det_jacobian(t.inv(values[name]), values[name]))
        return -log_joint

    def __call__(self, params: dict) -> torch.Tensor:
        return self._graph(self._compiler.state(), *[params[k] for k in self._names], *self.args)

    def value_and_grad(self, torch_compile: bool = False) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``f(q) -> (potential, gradient)`` of one flat vector ``q`` of the unconstrained latents
        (sites in ``self.site_shapes`` order), traced once with its backward pass into one graph:
        no autograd bookkeeping at run time, which on a small model is most of a leapfrog step."""
        cached = self._compiler.graphs.get((self._key, "value_and_grad", torch_compile))
        if cached is not None:
            return cached
        shapes = [tuple(self.initial_params[k].shape) for k in self._names]
        sizes = [math.prod(s) for s in shapes]
        graph, args = self._graph, self.args
        state = [t.detach() for t in self._compiler.state()]

        def vg(q: torch.Tensor):
            q = q.detach().requires_grad_(True)
            zs = [part.reshape(shape) for part, shape in zip(torch.split(q, sizes), shapes)]
            with torch.enable_grad():
                value = graph(state, *zs, *args)
                (grad,) = torch.autograd.grad(value, [q])
            return value.detach(), grad.detach()

        q0 = self.pack(self.initial_params)
        with _rng_kept(q0.device):
            joint = _optimize(_trace_graph(vg, (q0,)))
            fn = torch.compile(joint, dynamic=False) if torch_compile else _scripted(joint, (q0,))
        self._compiler.graphs[(self._key, "value_and_grad", torch_compile)] = fn
        return fn

    def numpy_value_and_grad(self, torch_compile: bool = False) -> Callable:
        """``value_and_grad`` on float64 numpy vectors (what ``probgen.infer.flat_nuts`` runs)."""
        fn = self.value_and_grad(torch_compile)
        dtype = self.pack(self.initial_params).dtype

        def vg(q):
            value, grad = fn(torch.from_numpy(q).to(dtype))
            return float(value), grad.double().numpy()

        return vg

    @property
    def site_shapes(self) -> dict[str, tuple]:
        return {k: tuple(self.initial_params[k].shape) for k in self._names}

    def pack(self, params: dict) -> torch.Tensor:
        """The unconstrained values of ``params`` as one flat vector (site order of ``site_shapes``)."""
        return torch.cat([params[k].reshape(-1) for k in self._names])

    def unpack(self, q: torch.Tensor) -> dict:
        """Inverse of ``pack``; leading dimensions of ``q`` (draws) are kept."""
        out, start = {}, 0
        for k, shape in self.site_shapes.items():
            size = math.prod(shape)
            out[k] = q[..., start:start + size].reshape(*q.shape[:-1], *shape)
            start += size
        return out

    def constrain(self, params: dict) -> dict:
        """Unconstrained values to the model's own (constrained) values."""
        return {k: self.transforms[k].inv(v) if k in self.transforms else v for k, v in params.items()}
