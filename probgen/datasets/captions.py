"""Captions for digit images, from their labels and measured stroke attributes.

The text-to-image GAN learns from these: ``caption_digits`` writes "a thick slanted seven"
from a label and the image's measured thickness and slant (``digit_attributes``).
"""

from __future__ import annotations

__all__ = ["caption_digits", "digit_attributes", "DIGIT_WORDS", "ATTRIBUTE_WORDS"]

from typing import Any

import torch

from ..core.checks import as_tensor

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ATTRIBUTE_WORDS = ("thin", "thick", "upright", "slanted")

def digit_attributes(x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Thickness and slant of each image (n, 1, H, W) in [0, 1].

    Thickness is the mean ink per row that has ink (a stroke-width proxy, in pixels);
    slant is the shear of the ink's second moments, ``cov(col, row) / var(row)``
    (positive: the top leans right).

    Example:
        >>> x = torch.zeros(1, 1, 8, 8); x[0, 0, :, 3] = 1
        >>> [abs(round(float(t[0]), 2)) for t in digit_attributes(x)]
        [1.0, 0.0]
    """
    x = as_tensor(x, "x", ndim=4)
    img = x[:, 0]
    h, w = img.shape[-2:]
    rows = torch.arange(h, dtype=img.dtype, device=img.device)[None, :, None]
    cols = torch.arange(w, dtype=img.dtype, device=img.device)[None, None, :]
    mass = img.sum((1, 2)).clamp_min(1e-6)
    inked_rows = (img.sum(2) > 0.1 * img.amax((1, 2))[:, None]).sum(1).clamp_min(1)
    thickness = mass / inked_rows
    r_mean = (img * rows).sum((1, 2)) / mass
    c_mean = (img * cols).sum((1, 2)) / mass
    var_r = (img * (rows - r_mean[:, None, None]) ** 2).sum((1, 2)) / mass
    cov = (img * (rows - r_mean[:, None, None]) * (cols - c_mean[:, None, None])).sum((1, 2)) / mass
    slant = -cov / var_r.clamp_min(1e-6)  # rows grow downwards: the top leaning right gives negative cov
    return thickness, slant


def caption_digits(x: Any, y: Any, thresholds: dict | None = None) -> tuple[list[str], dict]:
    """Captions such as ``"a thick slanted seven"`` from labels and measured attributes.

    An attribute word is added when the image lies in the lower / upper third of the
    data's thickness ("thin" / "thick") or slant ("upright" / "slanted"). Returns the
    captions and the thresholds (pass them back to caption other images the same way).

    Example:
        >>> x = torch.rand(30, 1, 8, 8); y = torch.arange(30) % 10
        >>> caps, th = caption_digits(x, y)
        >>> caps[0].startswith("a ") and caps[0].endswith("zero")
        True
    """
    thickness, slant = digit_attributes(x)
    labels = as_tensor(y, "y", dtype=torch.long, ndim=1)
    if len(labels) != len(thickness) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError("y: expected one digit label in [0, 9] per image")
    if thresholds is None:
        q = torch.tensor([1 / 3, 2 / 3])
        thresholds = {"thickness": torch.quantile(thickness, q).tolist(), "slant": torch.quantile(slant, q).tolist()}
    captions = []
    for t, s, k in zip(thickness.tolist(), slant.tolist(), labels.tolist()):
        words = ["a"]
        if t < thresholds["thickness"][0]:
            words.append("thin")
        elif t > thresholds["thickness"][1]:
            words.append("thick")
        if s < thresholds["slant"][0]:
            words.append("upright")
        elif s > thresholds["slant"][1]:
            words.append("slanted")
        words.append(DIGIT_WORDS[k])
        captions.append(" ".join(words))
    return captions, thresholds
