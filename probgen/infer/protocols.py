"""What each generic engine needs of a model, as ``typing.Protocol`` classes.

``satisfies(model, protocol)`` is true when the model's class provides every member of the
protocol itself: a member that is only ``probgen.Model``'s placeholder (``model``,
``guide``, ``log_prob`` raise until a family defines them) does not count.

Example:
    >>> import probgen
    >>> satisfies(probgen.models.BayesianLinearRegression(num_features=1), VariationalModel)
    True
    >>> satisfies(probgen.models.MarkovChain(), VariationalModel)
    False
"""

from __future__ import annotations

__all__ = ["VariationalModel", "PosteriorModel", "EnergyModel", "LikelihoodModel", "LossModel",
           "AdversarialModel", "ValidatedModel", "AveragedWeights", "GeneratorHook", "SegmentedChain", "OwnKernel",
           "CollapseProbe", "satisfies", "members", "hook"]

from typing import Any, Protocol, runtime_checkable

import torch

from ..core.base import Model


@runtime_checkable
class VariationalModel(Protocol):
    """``svi``: a Pyro model and a guide over the same latent sites."""

    def model(self, *batch: torch.Tensor) -> Any: ...
    def guide(self, *batch: torch.Tensor) -> Any: ...


@runtime_checkable
class PosteriorModel(Protocol):
    """``mcmc`` (NUTS/HMC): a Pyro model with continuous latents, and a place for the draws."""

    def model(self, *batch: torch.Tensor) -> Any: ...
    def set_posterior_samples(self, samples: dict[str, torch.Tensor]) -> None: ...


@runtime_checkable
class EnergyModel(Protocol):
    """``mcmc`` learning (contrastive divergence and the like): one Markov-chain update per minibatch."""

    def mcmc_step(self, batch: tuple[torch.Tensor, ...], step: int) -> dict: ...


@runtime_checkable
class LikelihoodModel(Protocol):
    """``mle``: a differentiable per-example log-likelihood."""

    def log_prob(self, x: Any) -> torch.Tensor: ...


@runtime_checkable
class LossModel(Protocol):
    """``mle`` without a likelihood: a training loss per minibatch (reconstruction, denoising)."""

    def training_loss(self, *batch: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class AdversarialModel(Protocol):
    """``adversarial``: a critic and a generator, each with its loss and its parameters."""

    def critic_loss(self, *batch: torch.Tensor) -> torch.Tensor: ...
    def generator_loss(self, *batch: torch.Tensor) -> torch.Tensor: ...
    def critic_parameters(self) -> Any: ...
    def generator_parameters(self) -> Any: ...


# ---------------------------------------------------------------- optional hooks
# An engine runs without these; a model that provides one gets it called. Each is named here so
# that what an engine may call on a model is written down in one place, not probed by name.

@runtime_checkable
class ValidatedModel(Protocol):
    """Any gradient engine: a loss on held-out batches, for ``validation=`` and early stopping."""

    def validation_loss(self, *batch: torch.Tensor) -> Any: ...


@runtime_checkable
class AveragedWeights(Protocol):
    """``mle`` / ``svi``: called after every optimizer step (e.g. to update an EMA copy of the weights)."""

    def after_optimizer_step(self) -> None: ...


@runtime_checkable
class GeneratorHook(Protocol):
    """``adversarial``: called after every generator step (e.g. the generator's EMA)."""

    def after_generator_step(self) -> None: ...


@runtime_checkable
class SegmentedChain(Protocol):
    """``mcmc`` learning: many chain updates in one call (persistent chains run without Python per step)."""

    def mcmc_steps(self, tensors: tuple[torch.Tensor, ...], rows: torch.Tensor, batch_size: int, step: int) -> dict: ...


@runtime_checkable
class OwnKernel(Protocol):
    """``mcmc`` posterior inference: the family's own transition kernel instead of NUTS/HMC."""

    def mcmc_kernel(self) -> Any: ...


@runtime_checkable
class CollapseProbe(Protocol):
    """``adversarial``: generated and real samples for the sample-collapse check of ``FitResult.diagnostics``."""

    def diagnostic_samples(self, *batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def members(protocol: type) -> list[str]:
    """The method names a protocol asks for."""
    return sorted(name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_"))


def satisfies(model: Any, protocol: type) -> bool:
    """Whether ``model``'s class defines every member of ``protocol`` (Model's placeholders excluded)."""
    cls = type(model)
    for name in members(protocol):
        attr = getattr(cls, name, None)
        if attr is None or not callable(attr) or attr is getattr(Model, name, object()):
            return False
    return True


def hook(model: Any, protocol: type):
    """The model's method for a one-method (optional) protocol, or None when its class lacks it.

    Example:
        >>> import probgen
        >>> hook(probgen.models.Autoencoder(data_shape=(1, 4, 4)), ValidatedModel) is not None
        True
        >>> hook(probgen.models.MarkovChain(), ValidatedModel) is None
        True
    """
    (name,) = members(protocol)
    return getattr(model, name) if satisfies(model, protocol) else None
