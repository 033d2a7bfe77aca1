"""Networks shared by the families."""

from .mlp import MLP

__all__ = ["MLP"]
