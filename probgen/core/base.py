"""The one interface every probgen model family derives from."""

from __future__ import annotations

__all__ = ["Model", "ContractCase", "NoLikelihoodError", "NotFittedError"]

import contextlib
import functools
import hashlib
import inspect
import json
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import numpy as np
import pyro
import torch

from .checks import as_tensor, check_keywords, check_positive
from .engines import collect_own_engines
from .random import seeded
from .registry import register_family


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is queried before it is fitted (a ``ValueError``, as in scikit-learn)."""


class NoLikelihoodError(NotImplementedError):
    """Raised by ``log_prob`` of families without a likelihood; names what to use instead."""


@dataclass
class ContractCase:
    """A tiny, fast example of a family, used by the contract test and the tour."""

    model: "Model"
    data: Any
    fit_options: dict = field(default_factory=dict)
    sample_kwargs: dict = field(default_factory=dict)
    log_prob_data: Any = None


class Model(torch.nn.Module):
    """Base class of every probgen model family.

    A subclass sets the class attributes ``family`` (its registry name),
    ``default_inference`` (an engine name) and ``log_prob_kind`` (``"exact"``,
    ``"lower_bound"``, ``"estimate"`` or ``None`` when it has no likelihood), and
    implements what it has of: ``model``/``guide`` (Pyro programs), ``_sample``,
    ``log_prob``, ``encode``/``decode``. Engines the family runs itself are methods
    marked ``@probgen.core.implements("name")``; the generic engines in
    ``probgen.infer`` take any model that has what their protocol names.

    The constructor's arguments are recorded as the model's config, which
    ``probgen.save`` writes as JSON and ``probgen.load`` passes back to the
    constructor; families whose arguments are not JSON override ``get_config``
    and ``from_config``. Non-tensor fitted state goes through ``get_state_json`` /
    ``set_state_json``; tensors through ``state_dict``.
    """

    family: ClassVar[str] = ""
    default_inference: ClassVar[str] = "svi"
    log_prob_kind: ClassVar[str | None] = None
    #: what ``log_prob`` tells users to call instead when the family has no likelihood
    log_prob_alternative: ClassVar[str] = "score(x)"
    #: engines the family implements itself (engine name -> method), filled from ``@implements``
    own_engines: ClassVar[dict[str, str]] = {}
    #: engines a subclass refuses although a parent implements them: name -> the reason
    declined_engines: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _recording_init(init)
        cls.own_engines = collect_own_engines(cls)
        if cls.__dict__.get("family"):
            register_family(cls)

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict:
        """The constructor arguments as a JSON-serializable dict."""
        return dict(getattr(self, "_config", {}))

    @classmethod
    def from_config(cls, config: dict) -> "Model":
        """Build the model from a saved config (older key names are upgraded first)."""
        return cls(**cls.upgrade_config(dict(config)))

    #: constructor arguments renamed since files were first saved: old name -> new name
    renamed_config_keys: ClassVar[dict[str, str]] = {}

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """Map a config saved by an older probgen onto today's constructor arguments."""
        for old, new in cls.renamed_config_keys.items():
            if old in config and new not in config:
                config[new] = config.pop(old)
        return config

    def get_state_json(self) -> dict:
        """Fitted state that is not a tensor (vocabularies, state names, ...)."""
        return {}

    def set_state_json(self, state: dict) -> None:
        """Restore what ``get_state_json`` returned, before ``load_state_dict``."""

    # -------------------------------------------------------------- inference
    def model(self, *args: Any, **kwargs: Any) -> Any:
        """The family's Pyro program."""
        raise NotImplementedError(f"{type(self).__name__} has no Pyro model")

    def guide(self, *args: Any, **kwargs: Any) -> Any:
        """The family's variational guide (a Pyro program), where it has one."""
        raise NotImplementedError(f"{type(self).__name__} has no guide")

    def fit(self, data: Any, *, inference: str | None = None, **options: Any):
        """Fit to ``data`` with the named engine (the family's default when ``None``).

        Returns a ``probgen.FitResult``. Options common to the engines: ``steps`` or
        ``epochs``, ``batch_size``, ``lr``, ``device``, ``seed``, ``validation``,
        ``patience``, ``callbacks``, ``checkpoint``, ``progress``.
        """
        from ..infer import run

        return run(self, data, inference=inference, **options)

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        """Check and convert training data into a tuple of tensors (first: examples)."""
        parts = data if isinstance(data, (tuple, list)) and not _is_number_list(data) else (data,)
        tensors = tuple(as_tensor(p, f"{name}[{i}]" if len(parts) > 1 else name) for i, p in enumerate(parts))
        n = len(tensors[0]) if tensors[0].dim() else 0
        if n == 0:
            raise ValueError(f"{name}: expected at least one example, got none")
        if any(len(t) != n for t in tensors):
            raise ValueError(f"{name}: all parts must have the same number of rows, got {[len(t) for t in tensors]}")
        return tensors

    @contextlib.contextmanager
    def data_size(self, n: int | None) -> Iterator[None]:
        """Within the block, ``data_plate`` scales minibatch terms to ``n`` examples."""
        previous = getattr(self, "_num_data", None)
        self._num_data = n
        try:
            yield
        finally:
            self._num_data = previous

    def data_plate(self, batch_size: int, name: str = "data", device: torch.device | None = None) -> pyro.plate:
        """A plate over the examples of a minibatch, scaled to the full data size."""
        full = getattr(self, "_num_data", None) or batch_size
        return pyro.plate(name, size=max(full, batch_size), subsample=torch.arange(batch_size, device=device or self.device))

    def seed_initial_weights(self, seed: int) -> bool:
        """Re-draw the weights the constructor drew, under ``seed``, if they are still untouched.

        Families that build networks in their constructor draw initial weights from the global random
        state there. ``fit(..., seed=s)`` calls this first, so that the seed fixes the whole result:
        the weights become those the constructor draws right after ``probgen.seeded(s)``. Weights that
        were fitted, loaded or edited since construction are kept, and a constructor that drew nothing
        at random is not run again (both return ``False``). The global random state is left as it was.

        Example:
            >>> import torch, probgen
            >>> a = probgen.models.GAN(data_shape=(2,), hidden=(4,))
            >>> b = probgen.models.GAN(data_shape=(2,), hidden=(4,))  # other random weights
            >>> a.seed_initial_weights(3), b.seed_initial_weights(3)
            (True, True)
            >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
            True
        """
        start = self.__dict__.get("_initial_fingerprint")
        if start is None or start != _state_fingerprint(self):  # drew nothing at random, or touched since
            return False
        with seeded(seed):
            fresh = type(self).from_config(self.get_config())
        self.load_state_dict(fresh.state_dict())
        object.__setattr__(self, "_initial_fingerprint", fresh.__dict__.get("_initial_fingerprint"))
        return True

    def _forget_initial_weights(self) -> None:
        """After a fit the weights are no longer the constructor's: later fits keep them without hashing."""
        object.__setattr__(self, "_initial_fingerprint", None)

    def _require_fitted(self, what: str, ready: bool, hint: str = "call fit(data) first") -> None:
        """Raise ``NotFittedError`` naming ``what`` was asked for unless ``ready``.

        Every family calls this one check with its own test of being fitted, e.g.
        ``self._require_fitted("sample", self.transitions is not None)``.
        """
        if not ready:
            raise NotFittedError(f"{what}: this {type(self).__name__} is not fitted; {hint}")

    # ------------------------------------------------------------------ query
    def sample(self, n: int, seed: int | None = None, **condition: Any) -> Any:
        """Draw ``n`` new examples (tensors, or a DataFrame for tabular data)."""
        check_positive("n", n, integer=True)
        check_keywords(self._sample, condition, f"{type(self).__name__}.sample")
        with seeded(seed), torch.no_grad():
            return self._sample(int(n), **condition)

    def _sample(self, n: int, **condition: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} cannot sample")

    def log_prob(self, x: Any) -> torch.Tensor:
        """Per-example log-likelihood; ``log_prob_kind`` says whether exact or a bound."""
        raise NoLikelihoodError(
            f"{type(self).__name__}.log_prob: the {self.family!r} family has no likelihood; "
            f"use {self.log_prob_alternative} instead"
        )

    def score(self, x: Any) -> torch.Tensor:
        """Anomaly score per example, higher = more anomalous (default: -log_prob)."""
        return -self.log_prob(x)

    def encode(self, x: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no latent variables to encode")

    def decode(self, z: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no latent variables to decode")

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    # --------------------------------------------------------------- examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        """A tiny example for the contract test and the tour (every family gives one)."""
        raise NotImplementedError(f"{cls.__name__} gives no contract case")

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Fit a small model on embedded data, draw it into ``out_dir``, return a ``probgen.gallery.TourSection``.

        This default fits the family's contract case only and says so; families override it
        with a demonstration that shows them at their best within a few seconds.
        """
        from ..gallery import TourSection

        case = cls._contract_case()
        result = case.model.fit(case.data, progress=False, **case.fit_options)
        samples = case.model.sample(4, seed=0, **case.sample_kwargs)
        return TourSection(cls.family, f"{cls.__name__} on its tiny test case", verdict="limited",
                           figures={"engine": result.engine, "samples drawn": str(len(samples))},
                           note="This family has no tour picture yet: it was fitted on its tiny test case only.")

    def extra_repr(self) -> str:
        cfg = getattr(self, "_config", {})
        return ", ".join(f"{k}={v!r}" for k, v in cfg.items() if _jsonable(v))


def _recording_init(init):
    """Wrap ``__init__`` so the outermost call records its arguments as the config."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        outermost = "_config" not in self.__dict__
        if outermost:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            config = {}
            for name, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    config.update(value)
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    config[name] = value
            object.__setattr__(self, "_config", config)
            before = _random_states()
        init(self, *args, **kwargs)
        if outermost:  # the weights as construction drew them (see Model.seed_initial_weights)
            drew = not _same_random_states(before, _random_states())
            object.__setattr__(self, "_initial_fingerprint", _state_fingerprint(self) if drew else None)

    return wrapped


def _random_states() -> tuple:
    """The global random states a constructor may draw from (torch's CPU generator, numpy's, Python's)."""
    return torch.random.get_rng_state(), np.random.get_state(), random.getstate()


def _same_random_states(a: tuple, b: tuple) -> bool:
    same_numpy = a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1]) and a[1][2:] == b[1][2:]
    return torch.equal(a[0], b[0]) and same_numpy and a[2] == b[2]


def _state_fingerprint(module: torch.nn.Module) -> str:
    """A hash of every tensor in ``module.state_dict()`` (names, shapes, dtypes and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, value in module.state_dict().items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            value = (value.to_dense() if value.layout != torch.strided else value).contiguous().reshape(-1)
            digest.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
            digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def _is_number_list(data: Any) -> bool:
    return isinstance(data, list) and len(data) > 0 and not hasattr(data[0], "__len__")
