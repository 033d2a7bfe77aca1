"""Networks shared by the families."""

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLP

__all__ = ["ConvEncoder", "ConvDecoder", "MLP"]
