"""probgen: one interface for classic generative models on PyTorch, Pyro and pgmpy."""

import pyro as _pyro

# Parameters live in their modules (not in Pyro's global param store), so models
# save with their state_dict and several models coexist in one process.
_pyro.settings.set(module_local_params=True)

from . import datasets, infer, metrics, models  # noqa: E402  (metrics loads its modules on first use)
from .core import FitResult, Model, load, save, seeded  # noqa: E402
from .infer import run as fit  # noqa: E402
from .infer.diagnostics import FitWarning  # noqa: E402
from .responsible import model_card, provenance, write_samples  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Model", "FitResult", "FitWarning", "fit", "sample", "evaluate", "save", "load", "seeded", "datasets",
           "models", "infer", "metrics", "model_card", "provenance", "write_samples", "__version__"]


def sample(model: Model, n: int, seed: int | None = None, **condition):
    """``model.sample(n, seed=seed, **condition)``, as a function."""
    return model.sample(n, seed=seed, **condition)


def evaluate(model_or_samples, real, holdout=None, metrics=None, **options):
    """Quality report of generated data against real data (see ``probgen.metrics``)."""
    from .metrics.report import evaluate as _evaluate

    return _evaluate(model_or_samples, real, holdout=holdout, metrics=metrics, **options)
