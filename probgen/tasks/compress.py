"""Lossy compression with any model that has ``encode`` / ``decode``: codes, size ratio, error."""

from __future__ import annotations

__all__ = ["compress", "decompress", "Compressed"]

from dataclasses import dataclass
from typing import Any

import torch

from ..core.checks import as_tensor, check_positive


@dataclass
class Compressed:
    """Quantized codes and what is needed to decode them.

    ``codes`` are unsigned integers of ``bits`` bits per latent dimension (``bits=32``:
    the float codes themselves); ``low``/``high`` the per-dimension range used for the
    quantization. ``ratio`` = original size / compressed size (the original counted at
    ``original_bits`` per value); ``error`` the mean squared reconstruction error per value.
    """

    codes: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    bits: int
    data_shape: tuple
    ratio: float
    error: float

    @property
    def num_bytes(self) -> int:
        """Size of the codes in bytes (the range vectors add 8 bytes per latent dimension)."""
        return (self.codes.numel() * self.bits + 7) // 8 + 8 * self.low.numel()


def _quantize(z: torch.Tensor, bits: int):
    if bits == 32:
        return z.float(), z.new_zeros(z.shape[1]), z.new_zeros(z.shape[1])
    low, high = z.min(0).values, z.max(0).values
    levels = 2 ** bits - 1
    span = (high - low).clamp_min(1e-8)
    q = torch.round((z - low) / span * levels).to(torch.int64)
    return q, low, high


def _dequantize(c: Compressed) -> torch.Tensor:
    if c.bits == 32:
        return c.codes.float()
    levels = 2 ** c.bits - 1
    return c.low + c.codes.float() / levels * (c.high - c.low).clamp_min(1e-8)


def compress(model: Any, x: Any, bits: int = 8, original_bits: int = 8) -> Compressed:
    """Encode ``x`` and quantize the codes to ``bits`` bits per latent dimension.

    Arguments:
        model: a fitted model with ``encode`` and ``decode`` (autoencoder, VAE, ...).
        x: the examples to compress.
        bits: bits per code value (1-16), or 32 for unquantized float codes.
        original_bits: bits per value of the original data in the size ratio (8 for images).

    Example:
        >>> import torch, probgen
        >>> x = torch.rand(32, 16)
        >>> ae = probgen.models.Autoencoder(latent_dim=4, hidden=(16,))
        >>> _ = ae.fit(x, steps=5, progress=False, seed=0)
        >>> c = probgen.tasks.compress(ae, x)
        >>> round(c.ratio, 1), probgen.tasks.decompress(ae, c).shape
        (3.2, torch.Size([32, 16]))
    """
    if not hasattr(model, "encode") or not hasattr(model, "decode"):
        raise ValueError(f"model: expected a model with encode/decode, got {type(model).__name__}")
    if bits != 32:
        check_positive("bits", bits, integer=True)
        if bits > 16:
            raise ValueError(f"bits: expected 1-16 (or 32 for float codes), got {bits}")
    check_positive("original_bits", original_bits, integer=True)
    x = as_tensor(x, "x")
    z = model.encode(x)
    q, low, high = _quantize(z, int(bits))
    c = Compressed(q, low, high, int(bits), tuple(x.shape[1:]), 0.0, 0.0)
    x_hat = decompress(model, c).to(x.device)
    c.error = float(((x_hat - x.to(x_hat.dtype)) ** 2).mean())
    c.ratio = x.numel() * original_bits / 8 / c.num_bytes
    return c


def decompress(model: Any, compressed: Compressed | Any) -> torch.Tensor:
    """Reconstruct the examples from a ``Compressed`` (or from raw float codes)."""
    z = _dequantize(compressed) if isinstance(compressed, Compressed) else as_tensor(compressed, "compressed", ndim=2)
    return model.decode(z)
