"""Differentially private training (DP-SGD) through Opacus.

``fit(x, privacy={"epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0})`` trains with
DP-SGD (Abadi et al. 2016): each step draws a Poisson sample of the training records
(each record in with probability ``q = batch_size / n``), computes one gradient per
record (Opacus's per-sample gradient hooks), clips each to ``max_grad_norm``, adds
Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` to their sum
and divides by the expected batch size. The noise multiplier is the smallest that keeps
the whole run within ``(epsilon, delta)`` according to Opacus's accountant (RDP by
default, ``"prv"`` on request); ``FitResult.info["privacy"]["epsilon"]`` is the epsilon
that accountant reports for the steps actually taken (fewer when training stops early).

Engines: ``svi`` (the per-record ELBO), ``mle`` (the per-record training loss) and
``adversarial`` (a private critic, as in DP-GAN: only the critic reads the data; the
generator learns from the private critic alone). Everything else is refused with the
reason: closed-form and counting fits, MCMC and contrastive divergence have no
per-record gradient step to clip; BatchNorm mixes the records of a batch; recurrent
layers and parameters that live outside a layer have no per-record gradient in Opacus.

Poisson sampling makes the batch size random. This module draws the Poisson batches
itself (the semantics of Opacus's ``DPDataLoader``; the shared loop's shuffled batch is
ignored) and runs each step through the loop's ``step_fn`` path, which has no fixed
batch size; an empty draw takes a noise-only step, as DP-SGD's analysis assumes. With
``epsilon=inf`` there is no noise and no accounting and the loop's ordinary shuffled
batches are used, so with ``max_grad_norm=None`` (no clipping) private training
reproduces ordinary training with the same seed.

Example:
    >>> import torch, probgen
    >>> x = (torch.rand(512, 1, 4, 4) < 0.5).float()
    >>> vae = probgen.models.VAE(latent_dim=2, hidden=(16,))
    >>> r = vae.fit(x, steps=20, batch_size=64, seed=0, progress=False,
    ...             privacy={"epsilon": 3.0, "delta": 1e-4})
    >>> r.info["privacy"]["epsilon"] <= 3.0
    True

References:
    Abadi et al. 2016, Deep learning with differential privacy; Mironov 2017, Rényi
    differential privacy; Xie et al. 2018, Differentially private GAN; Yousefpour et al.
    2021, Opacus: user-friendly differential privacy library in PyTorch.
"""

from __future__ import annotations

__all__ = ["PrivacySpec", "parse_privacy", "check_engine", "check_per_example", "train_private",
           "PrivateCritic", "PRIVATE_ENGINES"]

import contextlib
import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .adversarial import StepHooks
from .options import FitOptions
from .protocols import AveragedWeights, hook

#: the engines that can train privately
PRIVATE_ENGINES = ("svi", "mle", "adversarial")
_KEYS = ("epsilon", "delta", "max_grad_norm", "accountant", "noise_multiplier")
_NO_GRADIENT = {
    "exact": "a closed-form fit (counts or sufficient statistics) with no gradient steps to clip and noise",
    "bayes": "a closed-form conjugate posterior with no gradient steps to clip and noise",
    "mcmc": "MCMC (and contrastive divergence) moves by Markov-chain updates, not per-record gradient "
            "steps, so DP-SGD's clipping and noise do not apply",
}


@dataclass
class PrivacySpec:
    """A checked ``privacy=`` option (see ``parse_privacy``)."""

    epsilon: float
    delta: float | None
    max_grad_norm: float | None
    accountant: str = "rdp"
    noise_multiplier: float | None = None

    @property
    def private(self) -> bool:
        """False only for ``epsilon=inf``: no noise, no accounting, the loop's ordinary batches."""
        return not (math.isinf(self.epsilon) and not self.noise_multiplier)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
        raise ValueError(f"privacy[{name!r}]: expected a number, got {value!r}")
    return float(value)


def parse_privacy(privacy: Any, n: int) -> PrivacySpec:
    """Check a ``privacy=`` option against the data size ``n``.

    Keys: ``epsilon`` (> 0; ``math.inf`` = not private), ``delta`` (in (0, 1/n); default
    ``1e-5``), ``max_grad_norm`` (> 0, default 1.0; ``None`` = no clipping, only with
    ``epsilon=inf``), ``accountant`` (``"rdp"`` or ``"prv"``), or ``noise_multiplier``
    instead of ``epsilon`` (then epsilon is whatever the accountant reports).

    Example:
        >>> parse_privacy({"epsilon": 3}, n=1000)
        PrivacySpec(epsilon=3.0, delta=1e-05, max_grad_norm=1.0, accountant='rdp', noise_multiplier=None)
        >>> parse_privacy({"epsilon": 3, "delta": 0.01}, n=1000)
        Traceback (most recent call last):
        ...
        ValueError: privacy['delta']: expected a value below 1/n = 0.001 (n = 1000 training records); a delta of 1/n or more allows releasing a whole record; got 0.01
    """
    if not isinstance(privacy, dict):
        raise ValueError(f"privacy: expected a dict such as {{'epsilon': 3.0, 'delta': 1e-5, 'max_grad_norm': 1.0}}, "
                         f"got {type(privacy).__name__}")
    unknown = sorted(set(privacy) - set(_KEYS))
    if unknown:
        raise ValueError(f"privacy: unknown key(s) {unknown}; expected some of {list(_KEYS)}")
    if ("epsilon" in privacy) == ("noise_multiplier" in privacy):
        raise ValueError("privacy: give exactly one of 'epsilon' (the budget) and 'noise_multiplier'")
    sigma = None
    if "noise_multiplier" in privacy:
        sigma = _number("noise_multiplier", privacy["noise_multiplier"])
        if not (0 < sigma < math.inf):
            raise ValueError(f"privacy['noise_multiplier']: expected a positive finite number, got {sigma}")
        epsilon = math.nan
    else:
        epsilon = _number("epsilon", privacy["epsilon"])
        if epsilon <= 0:
            raise ValueError(f"privacy['epsilon']: expected a positive budget (or math.inf for no privacy), got {epsilon}")
    infinite = math.isinf(epsilon)
    delta = privacy.get("delta", None if infinite else 1e-5)
    if delta is not None:
        delta = _number("delta", delta)
        if not delta > 0:
            raise ValueError(f"privacy['delta']: expected a positive probability, got {delta}")
        if delta >= 1.0 / n:
            raise ValueError(f"privacy['delta']: expected a value below 1/n = {1.0 / n:.3g} (n = {n} training records); "
                             f"a delta of 1/n or more allows releasing a whole record; got {delta}")
    norm = privacy.get("max_grad_norm", 1.0)
    if norm is None:
        if not infinite:
            raise ValueError("privacy['max_grad_norm']: DP-SGD needs a clipping norm; None (no clipping) only goes "
                             "with epsilon=math.inf")
    else:
        norm = _number("max_grad_norm", norm)
        if not (0 < norm < math.inf):
            raise ValueError(f"privacy['max_grad_norm']: expected a positive finite norm, got {norm}")
    accountant = privacy.get("accountant", "rdp")
    if accountant not in ("rdp", "prv"):
        raise ValueError(f"privacy['accountant']: expected 'rdp' or 'prv', got {accountant!r}")
    return PrivacySpec(epsilon, delta, norm, accountant, sigma)


def check_engine(model: Any, engine: str, distributed: Any = False) -> None:
    """Refuse ``privacy=`` for an engine with no per-record gradient step (with the reason)."""
    if distributed:
        raise ValueError("privacy: private training runs in one process (distributed=... is not supported)")
    if engine in PRIVATE_ENGINES:
        return
    why = _NO_GRADIENT.get(engine, f"the {engine!r} engine has no per-record gradient step")
    raise ValueError(f"privacy: the {getattr(model, 'family', type(model).__name__)!r} family's {engine!r} engine is "
                     f"{why}; differentially private training covers the gradient engines "
                     f"{', '.join(PRIVATE_ENGINES)}")


def check_per_example(module: torch.nn.Module, params: list, what: str) -> None:
    """Refuse modules for which Opacus cannot compute one gradient per record, saying why."""
    from opacus.validators import ModuleValidator

    problems = []
    for name, m in module.named_modules():
        label = f"{what}.{name}" if name else what
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            problems.append(f"{label} is a BatchNorm layer: it normalises each record by the statistics of the "
                            "whole batch, so a record's gradient depends on the other records (use GroupNorm or "
                            "LayerNorm)")
        elif isinstance(m, torch.nn.RNNBase):
            problems.append(f"{label} is a torch recurrent layer, which Opacus's hooks cannot split per record "
                            "(it needs opacus.layers.DPLSTM)")
        elif hasattr(m, "parametrizations") or any(k.endswith("_orig") for k, _ in m.named_parameters(recurse=False)):
            problems.append(f"{label} is reparametrised (e.g. spectral norm): its weight is computed from another "
                            "tensor, whose per-record gradient Opacus does not track")
    if not problems:
        for err in ModuleValidator.validate(module, strict=False):
            problems.append(str(err).split(".")[0])
    wanted = {id(p) for p in params}
    for name, m in module.named_modules():
        own = [k for k, p in m.named_parameters(recurse=False) if id(p) in wanted]
        if own and list(m.children()):
            problems.append(f"parameter(s) {own} belong to {type(m).__name__} ({what}.{name or ''}) itself rather "
                            "than to a layer, so there is no per-record gradient for them")
    if problems:
        raise ValueError("privacy: this model cannot be trained privately: " + "; ".join(problems))


def _alias_grad_samplers(module: torch.nn.Module) -> None:
    """Register Opacus's exact per-sample gradient rule for subclasses that keep their base's
    ``forward`` (Pyro's ``PyroModule[nn.Linear]``), instead of its slower generic functorch path."""
    from opacus.grad_sample import GradSampleModule

    samplers = GradSampleModule.GRAD_SAMPLERS
    for m in module.modules():
        t = type(m)
        if t in samplers:
            if not getattr(samplers[t], "_probgen", False):
                samplers[t] = _contiguous(samplers[t])
            continue
        for base in t.__mro__[1:]:
            if base not in samplers:
                continue
            if t.forward is base.forward or _is_masked(m):
                samplers[t] = _contiguous(_subclass_sampler(samplers[base], base, masked=t.forward is not base.forward))
            break


def _is_masked(m: torch.nn.Module) -> bool:
    """A masked layer (probgen's MaskedConv2d, zuko's MaskedLinear): its base layer's operation with
    ``weight * mask``, the mask a fixed buffer that broadcasts to the weight."""
    mask = m._buffers.get("mask")
    weight = m._parameters.get("weight")
    if mask is None or weight is None:
        return False
    try:
        return torch.broadcast_shapes(mask.shape, weight.shape) == weight.shape
    except RuntimeError:
        return False


def _contiguous(rule: Callable) -> Callable:
    # Opacus's convolution rule unfolds its input with as_strided, assuming a contiguous NCHW layout; a
    # non-contiguous activation (a chunk, a channels-last tensor: PixelCNN's gated stacks) gives wrong
    # per-record weight gradients. The input is made contiguous first (a copy only when it is not).
    def sampler(layer, activations, backprops):
        return rule(layer, [a.contiguous() if isinstance(a, torch.Tensor) else a for a in activations],
                    backprops.contiguous())

    sampler._probgen = True
    return sampler


def _subclass_sampler(base_rule: Callable, base_cls: type, masked: bool) -> Callable:
    # Opacus's convolution rule dispatches on the exact class (type(layer) is nn.Conv2d), so the layer is
    # shown as its base class while the rule runs (no forward pass happens then). For a masked layer the
    # rule gives each record's gradient with respect to the effective weight (weight * mask); the chain
    # rule through the fixed mask multiplies it by the mask.
    def sampler(layer, activations, backprops):
        cls = layer.__class__
        layer.__class__ = base_cls
        try:
            grads = base_rule(layer, activations, backprops)
        finally:
            layer.__class__ = cls
        if masked and layer.weight in grads:
            grads[layer.weight] = grads[layer.weight] * layer.mask.to(grads[layer.weight].dtype)
        return grads

    return sampler


def _clean(module: torch.nn.Module) -> None:
    """Remove the attributes Opacus leaves on parameters and layers (so the model deep-copies and saves)."""
    for p in module.parameters():
        for attr in ("grad_sample", "_current_grad_sample", "summed_grad", "_forward_counter", "_processed"):
            if hasattr(p, attr):
                try:
                    delattr(p, attr)
                except AttributeError:
                    pass
    for m in module.modules():
        for attr in ("activations", "max_batch_len", "ft_compute_sample_grad"):
            if attr in m.__dict__:
                del m.__dict__[attr]


class _Private:
    """The DP-SGD state of one fit: the spec, the noise multiplier, the accountant, the Poisson sampler."""

    def __init__(self, spec: PrivacySpec, n: int, batch_size: int, total: int):
        self.spec, self.n, self.batch_size, self.total = spec, n, batch_size, total
        self.sample_rate = batch_size / n
        if spec.private and not batch_size < n:
            raise ValueError(f"batch_size: Poisson sampling takes each of the n = {n} records with probability "
                             f"batch_size / n, which must be below 1 for the privacy analysis; got batch_size="
                             f"{batch_size} (use at most {n - 1})")
        self.accountant = None
        self.sigma = 0.0
        if spec.private:
            from opacus.accountants import create_accountant
            from opacus.accountants.utils import get_noise_multiplier

            with _quiet():
                self.sigma = spec.noise_multiplier if spec.noise_multiplier is not None else get_noise_multiplier(
                    target_epsilon=spec.epsilon, target_delta=spec.delta, sample_rate=self.sample_rate, steps=total,
                    accountant=spec.accountant)
            self.accountant = create_accountant(spec.accountant)
        self.generator: torch.Generator | None = None
        self.steps = 0

    def optimizer(self, base: torch.optim.Optimizer, expected: float, reduction: str = "mean"):
        from opacus.optimizers import DPOptimizer

        # no clipping (epsilon=inf, max_grad_norm=None): a norm no gradient reaches; the noise is then 0 * norm = 0
        norm = self.spec.max_grad_norm if self.spec.max_grad_norm is not None else 1e30
        return DPOptimizer(base, noise_multiplier=self.sigma, max_grad_norm=norm, expected_batch_size=expected,
                           loss_reduction=reduction)

    def draw(self, tensors: tuple) -> tuple:
        """A Poisson sample: each record independently with probability ``sample_rate``."""
        if self.generator is None:  # seeded from the fit's seeded global state
            self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))
        keep = torch.rand(self.n, generator=self.generator) < self.sample_rate
        idx = keep.nonzero().squeeze(1).to(tensors[0].device)
        return tuple(t[idx] for t in tensors)

    def account(self) -> None:
        self.steps += 1
        if self.accountant is not None:
            self.accountant.step(noise_multiplier=self.sigma, sample_rate=self.sample_rate)

    def report(self) -> dict:
        with _quiet():
            spent = math.inf if self.accountant is None else (
                0.0 if self.steps == 0 else float(self.accountant.get_epsilon(delta=self.spec.delta)))
        return {"epsilon": spent, "delta": self.spec.delta, "target_epsilon": self.spec.epsilon,
                "noise_multiplier": float(self.sigma), "max_grad_norm": self.spec.max_grad_norm,
                "sample_rate": self.sample_rate, "expected_batch_size": self.batch_size, "steps": self.steps,
                "accountant": self.spec.accountant if self.accountant is not None else None,
                "sampling": "poisson" if self.spec.private else "shuffled"}


@contextlib.contextmanager
def _quiet():
    """Opacus's and torch's notices that do not concern the user (hooks on input-free layers, RDP orders)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message="Optimal order is the")
        warnings.filterwarnings("ignore", message="Using a non-full backward hook")
        yield


def _plan(opts: FitOptions, n: int, default_steps: int) -> tuple[int, int]:
    """Batch size and number of steps exactly as ``loop.train`` computes them."""
    batch_size = min(opts.batch_size or min(n, 256), n)
    total = opts.steps or (opts.epochs * math.ceil(n / batch_size) if opts.epochs else default_steps)
    return batch_size, total


def _common_checks(opts: FitOptions, engine: str) -> None:
    if opts.distributed:
        raise ValueError("privacy: private training runs in one process (distributed=True is not supported)")
    if opts.clip_norm is not None or opts.optimizer == "clipped_adam":
        raise ValueError("privacy: clip_norm / 'clipped_adam' clip the batch gradient; private training clips each "
                         "record's gradient instead (privacy['max_grad_norm']): leave clip_norm unset")
    if opts.extra.get("jit"):
        raise ValueError("privacy: jit=True compiles the ELBO for one batch shape; Poisson batches vary in size")


def _zero_rows(params: list) -> None:
    for p in params:
        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)


def train_private(model: torch.nn.Module, tensors: tuple, opts: FitOptions, *, engine: str,
                  loss_fn: Callable | None = None, step_fn: Callable | None = None,
                  default_steps: int = 1000, parameters: Callable | None = None, warmup: Callable | None = None,
                  **train_kw: Any):
    """``loop.train`` with DP-SGD: the loop's ``loss_fn`` engines (svi, mle) run through its ``step_fn`` path."""
    from .loop import make_optimizer, train

    if loss_fn is None or engine not in ("svi", "mle"):
        check_engine(model, engine if engine not in PRIVATE_ENGINES else "this")
    _common_checks(opts, engine)
    n = len(tensors[0])
    spec = parse_privacy(opts.privacy, n)
    batch_size, total = _plan(opts, n, default_steps)
    dp = _Private(spec, n, batch_size, total)
    after_optimizer_step = hook(model, AveragedWeights)
    state: dict = {}

    def setup(batch: tuple) -> None:
        from opacus.grad_sample import GradSampleModule

        if warmup is not None:
            warmup(batch)  # as the loop does before building its optimizer (same random draws)
        params = [p for p in (parameters() if parameters else model.parameters()) if p.requires_grad]
        check_per_example(model, params, type(model).__name__)
        _alias_grad_samplers(model)
        state["gsm"] = GradSampleModule(model, loss_reduction="mean", strict=False)
        state["params"] = params
        state["opt"] = dp.optimizer(make_optimizer(params, opts), expected=batch_size)

    def private_step(batch: tuple, step: int) -> dict:
        if "opt" not in state:
            setup(batch)
        opt = state["opt"]
        if spec.private:
            batch = dp.draw(tensors)
        else:
            opt.expected_batch_size = len(batch[0])  # the mean over this batch, as ordinary training takes
        opt.zero_grad(set_to_none=True)
        record: dict = {"batch_size": float(len(batch[0]))}
        if len(batch[0]) == 0:
            _zero_rows(state["params"])  # an empty Poisson draw: a noise-only step
        else:
            loss = loss_fn(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fit: the loss became {loss.item()} at step {step}; try a smaller lr")
            loss.backward()
            record["loss"] = float(loss.detach())
        opt.step()
        dp.account()
        if after_optimizer_step is not None:
            after_optimizer_step()
        return record

    plain = dataclasses.replace(opts, privacy=None)
    try:
        with _quiet():
            result = train(model, tensors, plain, engine=engine, step_fn=private_step,
                           default_steps=default_steps, **train_kw)
    finally:
        if "gsm" in state:
            state["gsm"].remove_hooks()
        _clean(model)
    result.info["privacy"] = dp.report()
    return result


def _public_generator_batch(model: Any, m: int, device) -> tuple:
    """What the generator step sees under privacy: nothing from the records (zeros for the data,
    uniformly drawn labels for a conditional GAN); the generator learns only from the private critic."""
    from ..models.gan import ConditionalGAN

    x = torch.zeros((m, *model.data_shape), device=device)
    if isinstance(model, ConditionalGAN):
        return x, torch.randint(model.num_classes, (m,), device=device)
    return (x,)


def _check_private_gan(model: Any) -> None:
    from ..models.gan import GAN, ConditionalGAN

    name = type(model).__name__
    if type(model) not in (GAN, ConditionalGAN):
        raise ValueError(f"privacy: {name}'s generator loss reads the training records themselves (not only the "
                         "critic's verdict), so a private critic would not make its training private; private "
                         "adversarial training covers GAN and ConditionalGAN")
    reasons = []
    if model.objective == "wgan_gp":
        reasons.append("objective='wgan_gp' (its gradient penalty needs a double backward pass, which per-record "
                       "gradient hooks do not give)")
    if model.r1_weight:
        reasons.append("r1_weight > 0 (a double backward pass)")
    if model.pack > 1:
        reasons.append("pack > 1 (PacGAN groups consecutive records, so adding one record moves every later pack "
                       "and its influence is not bounded by one clipped gradient)")
    if model.matching_aware:
        reasons.append("a matching-aware critic (it pairs each record with another record's condition)")
    if reasons:
        raise ValueError(f"privacy: this {name} cannot be trained privately: " + "; ".join(reasons))


class PrivateCritic(StepHooks):
    """DP-GAN around the adversarial engine's shared step: the critic trains by DP-SGD on Poisson
    batches; the generator sees no record.

    ``probgen.infer.adversarial.fit_adversarial`` runs the same ``adversarial_step`` with this object
    as its hooks (``StepHooks``), inside ``with PrivateCritic(...)`` (which attaches Opacus's per-record
    gradient hooks to the critic and removes them after). Each critic step's loss covers ``k`` real
    records and ``k`` generated examples (drawn with the records' conditions); Opacus gives one
    gradient per row, and the rows of real record ``i`` and of its generated partner are added before
    clipping, so one record moves the summed gradient by at most ``max_grad_norm`` (as in Opacus's
    DCGAN example, which pairs them by running both halves through the critic separately).

    Example (what ``fit(..., privacy=...)`` of a GAN runs):
        >>> import torch, probgen
        >>> gan = probgen.models.GAN(data_shape=(2,), hidden=(8,))
        >>> r = gan.fit(torch.randn(200, 2), steps=5, batch_size=32, seed=0, progress=False,
        ...             privacy={"epsilon": 3.0, "delta": 1e-3})
        >>> r.info["privacy"]["epsilon"] <= 3.0
        True
    """

    def __init__(self, model: Any, tensors: tuple, opts: FitOptions):
        _check_private_gan(model)
        _common_checks(opts, "adversarial")
        self.model, self.tensors = model, tensors
        n = len(tensors[0])
        self.spec = parse_privacy(opts.privacy, n)
        self.batch_size, total = _plan(opts, n, 1000)
        self.dp = _Private(self.spec, n, self.batch_size, total)
        self.modules = torch.nn.ModuleList([model.critic] + [getattr(model, k) for k in ("critic_label_embedding",)
                                                             if getattr(model, k, None) is not None])
        self.params = [p for p in model.critic_parameters() if p.requires_grad]
        check_per_example(self.modules, self.params, "critic")
        #: the fit's options for the shared loop (privacy handled here)
        self.options = dataclasses.replace(opts, privacy=None)
        self.device = opts.device
        self._gsm = self._opt = None
        self._quiet = _quiet()

    def optimizer(self, base: torch.optim.Optimizer):
        """The critic's optimizer wrapped by Opacus's ``DPOptimizer`` (clip each record, add noise)."""
        self._opt = self.dp.optimizer(base, expected=self.batch_size, reduction="mean")
        return self._opt

    def __enter__(self) -> "PrivateCritic":
        from opacus.grad_sample import GradSampleModule

        self._quiet.__enter__()
        _alias_grad_samplers(self.modules)
        self._gsm = GradSampleModule(self.modules, loss_reduction="sum", strict=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._gsm.remove_hooks()
            _clean(self.model)
        finally:
            self._quiet.__exit__(*exc)

    # ------------------------------------------------------ StepHooks
    def critic_batch(self, batch: tuple) -> tuple:
        """A Poisson sample of the records (the loop's shuffled batch when epsilon is infinite)."""
        if self.spec.private:
            return self.dp.draw(self.tensors)
        self._opt.expected_batch_size = len(batch[0])  # the mean over this batch, as ordinary training takes
        return batch

    @contextlib.contextmanager
    def critic_backward(self, batch: tuple, record: dict):
        """After the backward pass, pair each real record's gradient row with its generated partner's."""
        k = len(batch[0])
        record["batch_size"] = float(k)
        yield
        if k == 0:
            _zero_rows(self.params)  # an empty Poisson draw: a noise-only step
            return
        for p in self.params:
            # rows [real; generated]; the "sum" reduction gave d(loss)/d(row), whose mean-of-k form
            # is undone by the factor k
            g = p.grad_sample
            p.grad_sample = (g[:k] + g[k:]) * k if len(g) == 2 * k else g * k

    def after_critic(self) -> None:
        self.dp.account()

    @contextlib.contextmanager
    def generator(self, batch: tuple):
        """The generator's update with the per-record hooks off, on a batch holding no record."""
        self._gsm.disable_hooks()
        try:
            yield batch if not self.spec.private else _public_generator_batch(self.model, self.batch_size,
                                                                               self.device)
        finally:
            self._gsm.enable_hooks()

    def report(self) -> dict:
        """The privacy spent (``FitResult.info["privacy"]``)."""
        return self.dp.report()
