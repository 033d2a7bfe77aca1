"""Image features for quality metrics: a small digit classifier trained by probgen and cached.

The Fréchet Inception Distance needs Inception-v3 weights, which cannot be
downloaded here. probgen's stand-in is a small CNN digit classifier trained
deterministically (seed 0, one thread) on the ``mnist5k`` training split plus
the ``digits`` training split (upsampled) in about 15 s; its 64-unit penultimate layer is the feature space of
``frechet_distance`` and the other image metrics. Figures computed in this
space are *not* comparable with published FID values (different network,
different data); they compare probgen models with each other.

The weights are cached in memory and on disk under ``~/.cache/probgen/``
(``$PROBGEN_CACHE`` overrides the folder) as safetensors, written atomically
(temporary file + ``os.replace``) and read without pickle.

References:
    Heusel et al. 2017, GANs trained by a two time-scale update rule converge to a
    local Nash equilibrium (FID).
"""

from __future__ import annotations

__all__ = ["image_features", "digit_classifier", "DigitClassifier", "prepare_images", "cache_dir"]

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import as_tensor

_VERSION = "digit-cnn-v5"
_MEMORY: dict[str, "DigitClassifier"] = {}
FEATURE_DIM = 64


def cache_dir() -> Path:
    """The on-disk cache folder: ``$PROBGEN_CACHE``, else ``$XDG_CACHE_HOME/probgen``, else ``~/.cache/probgen``."""
    if os.environ.get("PROBGEN_CACHE"):
        return Path(os.environ["PROBGEN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "probgen"


class DigitClassifier(nn.Module):
    """A small CNN (two conv blocks, a 64-unit feature layer, 10 classes) for 28x28 digits.

    ``features(x)`` gives the 64-d penultimate activations, ``predict(x)`` labels,
    ``accuracy(x, y)`` the share of correct labels. Inputs are images ``(n, 1, H, W)``
    (or ``(n, H, W)``) in [0, 1]; other sizes are resized (see ``prepare_images``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 7 * 7, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, 10)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # logits
        return self.head(F.relu(self._hidden(x)))

    def _batched(self, fn, x: Any, batch_size: int = 2048) -> torch.Tensor:
        x = prepare_images(x)
        dev = next(self.parameters()).device
        with torch.no_grad():
            return torch.cat([fn(x[i:i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)])

    def features(self, x: Any) -> torch.Tensor:
        """Penultimate-layer features, shape ``(n, 64)``."""
        return self._batched(self._hidden, x)

    def predict(self, x: Any) -> torch.Tensor:
        """Predicted digit labels, a LongTensor of shape ``(n,)``."""
        return self._batched(lambda b: self(b).argmax(1), x)

    def accuracy(self, x: Any, y: Any) -> float:
        """Share of ``x`` whose predicted label equals ``y``."""
        y = as_tensor(y, "y", dtype=torch.long, ndim=1)
        pred = self.predict(x)
        if len(y) != len(pred):
            raise ValueError(f"accuracy: x has {len(pred)} images but y has {len(y)} labels")
        return float((pred == y).double().mean())


def prepare_images(x: Any, name: str = "x") -> torch.Tensor:
    """Check images and bring them to ``(n, 1, 28, 28)`` float32 in [0, 1].

    Accepts ``(n, 1, H, W)``, ``(n, H, W)`` or flat ``(n, H*W)`` with a square
    ``H*W``. 8x8 ``digits`` images are resized to 20x20 and padded to 28x28 (MNIST
    centres its digits in a 20x20 box); other sizes are resized to 28x28 (bilinear).
    """
    t = as_tensor(x, name, ndim=(2, 3, 4))
    if t.dim() == 2:
        side = int(round(t.shape[1] ** 0.5))
        if side * side != t.shape[1]:
            raise ValueError(f"{name}: flat images need a square number of pixels, got {t.shape[1]}")
        t = t.reshape(len(t), side, side)
    if t.dim() == 3:
        t = t[:, None]
    if t.shape[1] != 1:
        raise ValueError(f"{name}: expected one channel (n, 1, H, W), got shape {tuple(t.shape)}")
    if len(t) == 0:
        raise ValueError(f"{name}: no images")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name}: expected pixel values in [0, 1], got range [{lo:.3g}, {hi:.3g}] "
                         "(rescale, e.g. (x + 1) / 2 for tanh outputs)")
    h, w = t.shape[-2:]
    if (h, w) == (8, 8):
        t = F.pad(F.interpolate(t, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    elif (h, w) != (28, 28):
        t = F.interpolate(t, size=(28, 28), mode="bilinear", align_corners=False)
    return t.clamp(0, 1).contiguous()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _train(epochs: int = 4, seed: int = 0) -> tuple[DigitClassifier, dict]:
    """Train on mnist5k train, deterministically: seed 0, one thread, fixed batch order."""
    from ..datasets import load

    x, y = load("mnist5k", split="train")
    xt, yt = load("mnist5k", split="test")
    # digits (8x8, thick strokes) look unlike MNIST once upsampled: a classifier trained
    # on MNIST alone labels only about half of them right, so their train split joins in.
    dx_, dy_ = load("digits", split="train")
    dtx, dty = load("digits", split="test")
    x, y = torch.cat([x, prepare_images(dx_)]), torch.cat([y, dy_])
    g = torch.Generator().manual_seed(seed)
    with _one_thread():
        torch.manual_seed(seed)
        net = DigitClassifier()
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), 64):
                idx = order[i:i + 64]
                batch = x[idx]
                # random shifts of up to 2 pixels: features robust to small offsets
                dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
                batch = torch.roll(batch, shifts=(dy, dx), dims=(2, 3))
                loss = F.cross_entropy(net(batch), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        info = {"version": _VERSION, "train_accuracy": f"{net.accuracy(x, y):.4f}",
                "mnist5k_test_accuracy": f"{net.accuracy(xt, yt):.4f}",
                "digits_test_accuracy": f"{net.accuracy(dtx, dty):.4f}",
                "data": "mnist5k train (4,000 images) + digits train (1,438 images, upsampled)"}
    return net, info


def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _try_load(path: Path) -> DigitClassifier | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("version") != _VERSION:
            return None
        net = DigitClassifier()
        net.load_state_dict(load_file(str(path)))
    except Exception:  # missing, truncated or foreign file: retrain
        return None
    net.eval()
    net.info = meta
    return net


def digit_classifier(cache: str | os.PathLike | None = None, *, retrain: bool = False) -> DigitClassifier:
    """The cached digit classifier (trained on first use, about 10 s on one core).

    Arguments:
        cache: the cache folder (default ``cache_dir()``).
        retrain: ignore the memory and disk caches and train again.

    Example:
        >>> import probgen
        >>> x, y = probgen.datasets.load("mnist5k", split="test")
        >>> digit_classifier().accuracy(x, y) > 0.9
        True
    """
    folder = Path(cache) if cache is not None else cache_dir()
    path = folder / f"{_VERSION}.safetensors"
    key = str(path.resolve())
    if not retrain and key in _MEMORY:
        return _MEMORY[key]
    net = None if retrain else _try_load(path)
    if net is None:
        net, info = _train()
        _atomic_save(net.state_dict(), path, info)
        net.info = info
    for p in net.parameters():
        p.requires_grad_(False)
    _MEMORY[key] = net
    return net


def image_features(x: Any) -> torch.Tensor:
    """Penultimate-layer features ``(n, 64)`` of the cached digit classifier.

    probgen's stand-in for Inception features (whose weights cannot be
    downloaded): use it to compare models with each other, not with published FIDs.

    Arguments:
        x: images ``(n, 1, H, W)`` in [0, 1]; 8x8 digits are resized to 28x28.

    Example:
        >>> import probgen
        >>> x, _ = probgen.datasets.load("digits", split="test")
        >>> tuple(image_features(x).shape)
        (179, 64)
    """
    return digit_classifier().features(x)
