"""Model base class, FitResult, save/load, devices and seeds."""

from .base import ContractCase, Model, NoLikelihoodError, NotFittedError
from .checks import as_tensor
from .engines import implements
from .io import ModelFileError, load, save
from .random import resolve_device, seeded
from .result import FitResult

__all__ = ["Model", "ContractCase", "NoLikelihoodError", "NotFittedError", "FitResult", "save", "load", "seeded",
           "resolve_device", "as_tensor", "implements", "ModelFileError"]
