"""Options every engine understands, checked at the public boundary."""

from __future__ import annotations

__all__ = ["FitOptions", "parse_options"]

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

from ..core.checks import check_positive
from ..core.random import check_seed, resolve_device


@dataclass
class FitOptions:
    """Options common to the gradient engines (svi, mle, adversarial, mcmc learning).

    ``steps`` counts optimizer steps (minibatches); ``epochs`` counts passes over
    the data; give one of them. ``validation`` is held-out data; with
    ``patience`` (in evaluations) training stops when the validation loss has not
    improved and the best weights are restored. ``callbacks`` are called as
    ``cb(step, record, model)`` after each step; one returning ``True`` stops.
    ``checkpoint`` is a path that ``probgen.save`` writes at each evaluation.
    ``privacy`` (a dict such as ``{"epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0}``)
    trains with DP-SGD (see ``probgen.infer.privacy``).
    """

    steps: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    optimizer: str = "adam"
    clip_norm: float | None = None
    weight_decay: float = 0.0
    device: Any = None
    seed: int | None = None
    validation: Any = None
    patience: int | None = None
    eval_every: int | None = None
    callbacks: Sequence[Callable] = ()
    checkpoint: Any = None
    progress: bool = True
    distributed: bool = False
    privacy: Any = None
    extra: dict = field(default_factory=dict)


_COMMON = {f.name for f in fields(FitOptions)} - {"extra"}


def parse_options(engine: str, options: dict, extra: dict[str, Any] | None = None,
                  defaults: dict[str, Any] | None = None) -> FitOptions:
    """Split ``options`` into the common ones and the engine's ``extra`` ones.

    Unknown names raise ``ValueError`` listing what the engine accepts.
    """
    extra = dict(extra or {})
    values = dict(defaults or {})
    for key, value in options.items():
        if key in _COMMON:
            values[key] = value
        elif key in extra:
            extra[key] = value
        else:
            valid = sorted(_COMMON | set(extra))
            raise ValueError(f"fit: unknown option {key!r} for engine {engine!r}; valid options: {', '.join(valid)}")
    values = {k: v for k, v in values.items() if k in _COMMON}
    opts = FitOptions(**values, extra=extra)
    if opts.steps is not None and opts.epochs is not None:
        raise ValueError("fit: give either steps or epochs, not both")
    for name in ("steps", "epochs", "batch_size", "patience", "eval_every"):
        if getattr(opts, name) is not None:
            check_positive(name, getattr(opts, name), integer=True)
    check_positive("lr", opts.lr)
    if opts.optimizer not in ("adam", "clipped_adam", "adamw", "sgd"):
        raise ValueError(f"optimizer: expected 'adam', 'clipped_adam', 'adamw' or 'sgd', got {opts.optimizer!r}")
    if opts.clip_norm is not None:
        check_positive("clip_norm", opts.clip_norm)
    opts.device = resolve_device(opts.device)
    if opts.patience is not None and opts.validation is None:
        raise ValueError("patience: early stopping needs validation data (validation=...)")
    if callable(opts.callbacks):
        opts.callbacks = (opts.callbacks,)
    if not isinstance(opts.callbacks, (list, tuple)) or not all(callable(c) for c in opts.callbacks):
        raise ValueError(f"callbacks: expected a callable or a list of callables, got {opts.callbacks!r}")
    check_seed(opts.seed)
    return opts
