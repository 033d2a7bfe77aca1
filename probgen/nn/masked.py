"""Masked convolutions, gated blocks and the 2D LSTMs of PixelCNN / PixelRNN.

Every layer here is *causal in raster order*: its output at pixel (i, j) depends
only on inputs at pixels before (i, j) (mask ``"A"``) or at and before (i, j)
(mask ``"B"``), so stacking one ``"A"`` layer under ``"B"`` layers gives an
autoregressive network over the image (van den Oord et al. 2016a, 2016b).

References:
    van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    van den Oord et al. Conditional Image Generation with PixelCNN Decoders. NeurIPS 2016.
"""

from __future__ import annotations

__all__ = ["raster_mask", "MaskedConv2d", "GatedBlock", "RowLSTM", "DiagonalBiLSTM", "gate", "lstm_cell"]

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_choice, check_positive

_KINDS = ("A", "B", "vertical_A", "vertical_B")


def raster_mask(kh: int, kw: int, kind: str) -> torch.Tensor:
    """A (kh, kw) 0/1 mask for a kernel centred on the output pixel.

    ``"A"``: positions strictly before the centre in raster order; ``"B"``: also the
    centre; ``"vertical_A"``: the rows strictly above the centre (every column);
    ``"vertical_B"``: the rows up to and including the centre's row.

    Example:
        >>> raster_mask(3, 3, "A").tolist()
        [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    check_choice("kind", kind, _KINDS)
    ci, cj = kh // 2, kw // 2
    mask = torch.zeros(kh, kw)
    if kind.startswith("vertical"):
        mask[: ci + (kind == "vertical_B")] = 1.0
    else:
        mask[:ci] = 1.0
        mask[ci, : cj + (kind == "B")] = 1.0
    return mask


class MaskedConv2d(nn.Conv2d):
    """A same-padded ``Conv2d`` whose kernel is multiplied by a causal mask.

    Arguments:
        in_channels, out_channels: channel counts.
        kernel_size: an odd int or (kh, kw) pair.
        kind: ``"A"``, ``"B"``, ``"vertical_A"`` or ``"vertical_B"`` (see ``raster_mask``).

    Example:
        >>> conv = MaskedConv2d(1, 4, 3, "A")
        >>> conv(torch.zeros(2, 1, 5, 5)).shape
        torch.Size([2, 4, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], kind: str = "B",
                 bias: bool = True):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"kernel_size: expected odd sizes, got {(kh, kw)}")
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=bias)
        self.kind = check_choice("kind", kind, _KINDS)
        self.register_buffer("mask", raster_mask(kh, kw, kind), persistent=False)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)

    def at(self, window: torch.Tensor) -> torch.Tensor:
        """The output at one pixel from its (n, C, kh, kw) input window (cached sampling)."""
        w = self.masked_weight().reshape(self.out_channels, -1)
        flat = window.reshape(len(window), -1)
        return flat @ w.T if self.bias is None else torch.addmm(self.bias, flat, w.T)


def gate(t: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The gated activation tanh(a) * sigmoid(b) of the two halves of ``t``."""
    a, b = t.chunk(2, dim)
    return torch.tanh(a) * torch.sigmoid(b)


def lstm_cell(gates: torch.Tensor, c: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update from pre-activation ``gates`` (input, forget, output, cell) and the old cell state."""
    i, f, o, g = gates.chunk(4, dim)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class GatedBlock(nn.Module):
    """A gated PixelCNN layer with a vertical and a horizontal stack (no blind spot).

    The vertical stack at (i, j) sees only rows above i; the horizontal stack sees
    those through a 1x1 link plus row i left of j (and j itself after the first
    layer). ``first=True`` reads the image (masks ``vertical_A`` / ``A``, no residual).

    Arguments:
        in_channels: channels of the inputs (1 for the image in the first block).
        channels: channels of both stacks' outputs.
        kernel_size: odd kernel width.
        first: whether this is the first block (mask A).
        num_classes: for class conditioning, the number of labels (else ``None``).

    Example:
        >>> block = GatedBlock(1, 8, 3, first=True)
        >>> v, h = block(torch.zeros(2, 1, 5, 5), torch.zeros(2, 1, 5, 5))
        >>> v.shape, h.shape
        (torch.Size([2, 8, 5, 5]), torch.Size([2, 8, 5, 5]))
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 3, first: bool = False,
                 num_classes: int | None = None):
        super().__init__()
        check_positive("channels", channels, integer=True)
        self.first = bool(first)
        self.channels = int(channels)
        self.vconv = MaskedConv2d(in_channels, 2 * channels, kernel_size, "vertical_A" if first else "vertical_B")
        self.hconv = MaskedConv2d(in_channels, 2 * channels, (1, kernel_size), "A" if first else "B")
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.res = nn.Conv2d(channels, channels, 1)
        self.cond = None if num_classes is None else nn.Embedding(num_classes, 4 * channels)

    def class_bias(self, y: torch.Tensor | None) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        if self.cond is None or y is None:
            return 0.0, 0.0
        bv, bh = self.cond(y).chunk(2, -1)
        return bv, bh

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None = None):
        bv, bh = self.class_bias(y)
        if isinstance(bv, torch.Tensor):
            bv, bh = bv[:, :, None, None], bh[:, :, None, None]
        vp = self.vconv(v)
        hp = self.hconv(h) + self.link(vp) + bh
        h_out = self.res(gate(hp))
        return gate(vp + bv), h_out if self.first else h + h_out


class RowLSTM(nn.Module):
    """PixelRNN's Row LSTM: processes rows top to bottom, one whole row at a time.

    Input-to-state is a mask-B 1 x k convolution along the row; state-to-state a
    1 x k convolution over the previous row's hidden state (a triangular receptive field).

    Example:
        >>> RowLSTM(8, 3)(torch.zeros(2, 8, 4, 5)).shape
        torch.Size([2, 8, 4, 5])
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.channels = int(channels)
        self.input_to_state = MaskedConv2d(channels, 4 * channels, (1, kernel_size), "B")
        self.state_to_state = nn.Conv1d(channels, 4 * channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        inp = self.input_to_state(x)
        h = x.new_zeros(n, self.channels, width)
        c = torch.zeros_like(h)
        rows = []
        for i in range(height):
            h, c = lstm_cell(inp[:, :, i] + self.state_to_state(h), c)
            rows.append(h)
        return torch.stack(rows, 2)


def _skew(x: torch.Tensor) -> torch.Tensor:
    """Shift row i right by i: (n, C, H, W) -> (n, C, H, W + H - 1); diagonals become columns."""
    # pad each row to W + H, flatten, and re-read with rows one shorter: (i, j) lands at (i, i + j)
    n, c, height, width = x.shape
    flat = F.pad(x, (0, height)).reshape(n, c, height * (width + height))
    return flat[..., : height * (width + height - 1)].reshape(n, c, height, width + height - 1)


def _unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    n, c, height, length = x.shape
    flat = F.pad(x.reshape(n, c, height * length), (0, height))
    return flat.reshape(n, c, height, length + 1)[..., :width]


class _DiagonalLSTM(nn.Module):
    """One direction: the state at (i, j) reads the states at (i-1, j) and (i, j-1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)
        self.input_to_state = nn.Conv2d(channels, 4 * channels, 1)
        self.from_left = nn.Conv1d(channels, 4 * channels, 1, bias=False)
        self.from_up = nn.Conv1d(channels, 4 * channels, 1, bias=False)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        # The skew trick of van den Oord et al.: each anti-diagonal is one column of
        # the skewed map, so a whole diagonal is updated per step (H + W - 1 steps).
        n, _, height, width = x.shape
        pre = self.input_to_state(x)
        inp = _skew(pre if extra is None else pre + extra)
        valid = _skew(x.new_ones(1, 1, height, width))[:, :, :, :]
        h = x.new_zeros(n, self.channels, height)
        c = torch.zeros_like(h)
        cols = []
        for d in range(inp.shape[-1]):
            up = F.pad(h[:, :, :-1], (1, 0))
            h, c = lstm_cell(inp[..., d] + self.from_left(h) + self.from_up(up), c)
            m = valid[..., d]
            h, c = h * m, c * m
            cols.append(h)
        return _unskew(torch.stack(cols, -1), width)


class DiagonalBiLSTM(nn.Module):
    """PixelRNN's Diagonal BiLSTM: a left-to-right and a right-to-left diagonal LSTM.

    The right-to-left direction at (i, j) has seen row i right of j, so its output
    is shifted down one row before the two are added (van den Oord et al. 2016, section 3.2).
    Its input at (i, j) is the feature map there, which in an autoregressive stack (after a
    mask-A convolution) excludes the pixel (i, j) itself: the last pixel of a row then reaches
    the row below only through the left-to-right direction's window, so early pixels of each row
    never see it. With ``pixel_channels`` the right-to-left direction also reads the pixels of its
    own row (``forward(x, pixels)``, a 1x1 projection): that is allowed because its output only
    feeds the rows below, and it makes the context complete: the result at (i, j) depends on every
    pixel of the rows above and, through ``x``, on the pixels (i, < j).

    Arguments:
        channels: state and input channels.
        pixel_channels: channels of the image read by the right-to-left direction (0: none, the
            layer of probgen <= 0.1 whose context misses the end of the row above).

    Example:
        >>> DiagonalBiLSTM(8, pixel_channels=1)(torch.zeros(2, 8, 4, 5), torch.zeros(2, 1, 4, 5)).shape
        torch.Size([2, 8, 4, 5])
    """

    def __init__(self, channels: int, pixel_channels: int = 0):
        super().__init__()
        self.channels = int(channels)
        self.forward_lstm = _DiagonalLSTM(channels)
        self.backward_lstm = _DiagonalLSTM(channels)
        self.pixel_to_state = nn.Conv2d(pixel_channels, 4 * channels, 1, bias=False) if pixel_channels else None

    def forward(self, x: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        fwd = self.forward_lstm(x)
        extra = None
        if self.pixel_to_state is not None:
            if pixels is None:
                raise ValueError("pixels: this DiagonalBiLSTM reads the image in its right-to-left direction; "
                                 "call it as layer(features, pixels)")
            extra = self.pixel_to_state(pixels).flip(-1)
        bwd = self.backward_lstm(x.flip(-1), extra).flip(-1)
        return fwd + F.pad(bwd[:, :, :-1], (0, 0, 1, 0))
