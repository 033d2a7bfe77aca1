"""Networks shared by the families."""

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLP
from .masked import DiagonalBiLSTM, GatedBlock, MaskedConv2d, RowLSTM

__all__ = ["ConvEncoder", "ConvDecoder", "MLP", "MaskedConv2d", "GatedBlock", "RowLSTM", "DiagonalBiLSTM"]
