"""Model base class, FitResult, save/load, devices and seeds."""

from .base import ContractCase, Model, NoLikelihoodError
from .checks import as_tensor
from .io import ModelFileError, load, save
from .random import resolve_device, seeded
from .result import FitResult

__all__ = ["Model", "ContractCase", "NoLikelihoodError", "FitResult", "save", "load", "seeded",
           "resolve_device", "as_tensor", "ModelFileError"]
