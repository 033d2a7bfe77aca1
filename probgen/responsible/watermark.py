"""An optional invisible watermark for generated images (DWT-DCT, the ``invisible-watermark`` package).

``embed(image, "probgen", path)`` hides a short text in the frequency domain of an image
(Haar wavelet, then a DCT of 4x4 blocks of the low band: the method Stable Diffusion's
reference scripts use); ``detect(image_or_path, "probgen")`` returns the share of the
watermark's bits recovered (1.0 = all; about 0.5 = no watermark). Install with
``pip install probgen[watermark]``.

Honest limits: the watermark needs room. DWT-DCT hides one bit per 4x4 block of the
half-resolution band, so an image needs at least 256 x 256 pixels to be marked reliably
(the package's own advice). probgen's 8x8 and 28x28 digits are far too small: ``embed``
refuses them (upscale first, or rely on the provenance stamp). The mark survives mild
JPEG compression but not resizing or cropping (``probgen bench privacy`` measures it).

Example:
    >>> import torch
    >>> image = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(0))
    >>> marked = embed(image, "probgen")
    >>> detect(marked, "probgen") > 0.9
    True
"""

from __future__ import annotations

__all__ = ["embed", "detect", "detection_rates", "MIN_SIDE", "available"]

import os
from typing import Any

import numpy as np
import torch

#: the smallest side the watermark is embedded in
MIN_SIDE = 256


def available() -> bool:
    """Whether the optional ``invisible-watermark`` package is installed."""
    try:
        import imwatermark  # noqa: F401
    except ImportError:
        return False
    return True


def _require():
    if not available():
        raise ImportError("the invisible watermark needs the optional package: pip install 'probgen[watermark]' "
                          "(invisible-watermark)")


def _to_bgr(image: Any) -> np.ndarray:
    """(C, H, W) / (H, W) floats in [0, 1], or (H, W, 3) uint8 -> (H, W, 3) uint8 BGR."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    x = torch.as_tensor(image).detach().float().cpu()
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"image: expected (H, W), (1, H, W) or (3, H, W) values in [0, 1], got shape {tuple(x.shape)}")
    x = x.expand(3, -1, -1).clamp(0, 1)
    rgb = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _bits(text: str) -> int:
    return 8 * len(text.encode())


def embed(image: Any, text: str, path: str | os.PathLike | None = None, metadata: dict | None = None) -> np.ndarray:
    """Watermark ``image`` with ``text``; returns the marked image (H, W, 3) uint8 BGR, and writes a PNG
    (with ``metadata`` as text chunks) when ``path`` is given."""
    _require()
    from imwatermark import WatermarkEncoder

    if not isinstance(text, str) or not text:
        raise ValueError(f"text: expected a non-empty string, got {text!r}")
    bgr = _to_bgr(image)
    h, w = bgr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"image: {h}x{w} pixels is too small for a DWT-DCT watermark (needs at least "
                         f"{MIN_SIDE}x{MIN_SIDE}); small images carry only the provenance stamp")
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", text.encode())
    marked = encoder.encode(bgr, "dwtDct")
    if path is not None:
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in (metadata or {}).items():
            info.add_text(key, value)
        Image.fromarray(np.ascontiguousarray(marked[:, :, ::-1])).save(path, pnginfo=info)
    return marked


def detect(image: Any, text: str) -> float:
    """Share of ``text``'s watermark bits found in ``image`` (an array from ``embed``, any image
    array, or a file path): 1.0 = intact, about 0.5 = absent."""
    _require()
    from imwatermark import WatermarkDecoder

    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        with Image.open(image) as im:
            image = np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
    bgr = _to_bgr(image)
    if min(bgr.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image: {bgr.shape[0]}x{bgr.shape[1]} pixels is below the {MIN_SIDE}x{MIN_SIDE} a DWT-DCT "
                         "watermark needs to be read")
    n = _bits(text)
    decoder = WatermarkDecoder("bits", n)
    found = np.asarray(decoder.decode(bgr, "dwtDct"), dtype=bool)
    want = np.unpackbits(np.frombuffer(text.encode(), dtype=np.uint8)).astype(bool)
    return float((found[:n] == want).mean())


def detection_rates(images: Any, text: str = "probgen", threshold: float = 0.85) -> dict:
    """Share of ``images`` whose watermark is still found (bit accuracy >= ``threshold``) after common edits:
    none, JPEG at quality 90 / 75 / 50, a 2x downscale and back, a resize to 75%, a 10% crop. An image
    an edit leaves too small to read counts as not found. Needs opencv (installed with the watermark extra).

    Example:
        >>> import torch
        >>> imgs = torch.rand(2, 1, 256, 256, generator=torch.Generator().manual_seed(0))
        >>> detection_rates(imgs)["none"]
        1.0
    """
    import cv2

    found: dict[str, list[bool]] = {}
    for image in images:
        marked = embed(image, text)
        h, w = marked.shape[:2]
        edited = {"none": marked}
        for q in (90, 75, 50):
            _, buf = cv2.imencode(".jpg", marked, [cv2.IMWRITE_JPEG_QUALITY, q])
            edited[f"jpeg{q}"] = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        edited["downscale 2x and back"] = cv2.resize(cv2.resize(marked, (w // 2, h // 2)), (w, h))
        edited["resize to 75%"] = cv2.resize(marked, (int(w * 0.75), int(h * 0.75)))
        edited["crop 10%"] = marked[h // 10:, w // 10:]
        for name, img in edited.items():
            try:
                ok = detect(img, text) >= threshold
            except ValueError:
                ok = False
            found.setdefault(name, []).append(ok)
    return {name: float(np.mean(v)) for name, v in found.items()}
