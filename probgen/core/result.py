"""What ``fit`` returns: history, timings, device, engine, and the posterior."""

from __future__ import annotations

__all__ = ["FitResult"]

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd


@dataclass
class FitResult:
    """The outcome of ``Model.fit``.

    Attributes:
        model: the fitted model (fitted in place; also returned here).
        engine: the inference engine's name.
        history: one row per step or epoch (columns such as ``step``, ``loss``,
            ``val_loss``); empty for closed-form fits.
        wall_time: seconds spent in ``fit``.
        device: the device the fit ran on.
        info: anything else the engine reports (best step, early stopping, ...).

    Example:
        >>> r = FitResult(model=None, engine="svi", history=pd.DataFrame({"step": [0], "loss": [1.0]}))
        >>> float(r.final_loss)
        1.0
    """

    model: Any
    engine: str
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    wall_time: float = 0.0
    device: str = "cpu"
    info: dict = field(default_factory=dict)
    inference_data: Any = None
    posterior_fn: Callable[[int], Any] | None = field(default=None, repr=False)

    @property
    def final_loss(self) -> float:
        if "loss" not in self.history or self.history.empty:
            raise ValueError(f"the {self.engine!r} fit recorded no loss history")
        return float(self.history["loss"].iloc[-1])

    def to_arviz(self, num_samples: int = 1000):
        """The posterior as ``arviz.InferenceData``.

        MCMC fits return every chain with its sample statistics; SVI fits return
        ``num_samples`` draws from the guide over the global latent sites.
        """
        if self.inference_data is not None:
            return self.inference_data
        if self.posterior_fn is not None:
            return self.posterior_fn(num_samples)
        raise ValueError(
            f"to_arviz: the {self.engine!r} fit gives a point estimate, not a posterior; "
            "fit with inference='mcmc' or 'svi' (or 'bayes' where the family has it)"
        )

    def diagnostics(self) -> pd.DataFrame:
        """May this fit be trusted? One row per check that applies: ``check``, ``value``,
        ``threshold``, ``ok`` (``None``: too little to judge) and ``what_to_do`` when it failed.

        Gradient fits: has the loss levelled off; MCMC: R-hat, bulk / tail ESS, divergences,
        maximum tree depth; adversarial: critic and sample collapse; plus the family's own checks
        (RBM: the AIS standard error). The rules are in ``probgen.infer.diagnostics``; ``fit``
        emits a ``probgen.FitWarning`` when one fails.

        Example:
            >>> r = FitResult(model=None, engine="mle", history=pd.DataFrame({"loss": [1.0] * 100}))
            >>> bool(r.diagnostics()["ok"].all())
            True
        """
        from ..infer.diagnostics import diagnose

        return diagnose(self)

    def plot(self, ax=None, columns: tuple[str, ...] | None = None):
        """Training curves from ``history`` (a matplotlib Axes)."""
        from .. import plot

        return plot.training_curves(self.history, ax=ax, columns=columns, title=f"{type(self.model).__name__} ({self.engine})")

    def __repr__(self) -> str:
        steps = self.info.get("steps", len(self.history))  # updates (a fused fit keeps one row per epoch)
        return (f"FitResult(model={type(self.model).__name__}, engine={self.engine!r}, steps={steps}, "
                f"wall_time={self.wall_time:.2f}s, device={self.device!r})")
