"""Saving and loading models: JSON config + safetensors weights, never a pickle.

A saved model is one safetensors file. Its header's metadata holds the family
name, the constructor config and any non-tensor state as JSON; its body holds the
``state_dict`` tensors. Loading looks the family up in probgen's registry (never
importing a name read from the file) and parses only JSON and raw tensor bytes,
so loading a file can never execute code from it.
"""

from __future__ import annotations

__all__ = ["save", "load", "FORMAT_VERSION"]

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _dump_tensors

from .base import Model
from .random import resolve_device
from .registry import family_class

FORMAT_VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024


def save(model: Model, path: str | os.PathLike, card: bool | str = False) -> Path:
    """Write ``model`` to ``path`` atomically (a temporary file, then a rename).

    ``card=True`` also writes a model card (``probgen.model_card(model)``) beside the file as
    ``<name>.card.md``; ``card="..."`` writes that Markdown instead (e.g. a card built with
    the FitResult and a quality report).

    Example:
        >>> import probgen, tempfile, os
        >>> m = probgen.models.BayesianLinearRegression(n_features=2)
        >>> p = probgen.save(m, os.path.join(tempfile.mkdtemp(), "m.safetensors"))
        >>> type(probgen.load(p)).__name__
        'BayesianLinearRegression'
    """
    if not isinstance(model, Model):
        raise ValueError(f"model: expected a probgen model, got {type(model).__name__}")
    if not model.family:
        raise ValueError(f"model: {type(model).__name__} is not a registered family and cannot be saved")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path: {str(path)!r} is a directory; expected a file path")
    meta = {
        "format": "probgen",
        "format_version": FORMAT_VERSION,
        "family": model.family,
        "config": _to_json(model.get_config(), "config", model),
        "state": _to_json(model.get_state_json(), "state", model),
    }
    tensors = {}
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"model: state_dict entry {key!r} is not a tensor; move it to get_state_json()")
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    payload = _dump_tensors(tensors, metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _responsible_hook(model, path, payload, card)
    return path


def _responsible_hook(model: Model, path: Path, data: bytes, card: bool | str = False) -> None:
    """Remember the file a model was saved to / loaded from (for provenance stamps); write its card."""
    from ..responsible.card import card_path, model_card
    from ..responsible.provenance import remember_file

    remember_file(model, path, data)
    if card is not False and card is not None:
        if not isinstance(card, (bool, str)):
            raise ValueError(f"card: expected True or the Markdown of a model card, got {type(card).__name__}")
        card_path(path).write_text(model_card(model) if card is True else card)


def load(path: str | os.PathLike, device: str | torch.device | None = None) -> Model:
    """Rebuild a model written by ``probgen.save``; refuses anything else.

    A pickle or ``torch.save`` file is refused with ``ValueError`` before any of
    it is interpreted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no file at {str(path)!r}")
    raw = path.read_bytes()
    meta = _read_metadata(raw, path)
    cls = family_class(meta["family"])
    config, state = (_parse_json(meta[key], key, path) for key in ("config", "state"))
    model = cls.from_config(config)
    model.set_state_json(state)
    tensors = _load_tensors(raw)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit a {cls.__name__} built from its config "
                         f"(missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})")
    model.eval()
    if device is not None:
        model.to(resolve_device(device))
    _responsible_hook(model, path, raw)
    return model


def _read_metadata(raw: bytes, path: Path) -> dict:
    refusal = f"{path}: not a probgen model file"
    # a safetensors header length can start with byte 0x80 too: only sniff for pickles when
    # the bytes are not a safetensors header (8-byte length, then a JSON object)
    head = int.from_bytes(raw[:8], "little") if len(raw) >= 9 else 0
    is_safetensors = 0 < head <= len(raw) - 8 and raw[8:9] == b"{"
    if not is_safetensors and (raw[:2] == b"PK" or raw[:1] == b"\x80"):
        raise ValueError(f"{refusal}: it looks like a pickle / torch.save archive, which probgen.load refuses "
                         "because unpickling can execute code")
    if len(raw) < 8:
        raise ValueError(f"{refusal}: too short")
    size = int.from_bytes(raw[:8], "little")
    if size <= 0 or size > min(_MAX_HEADER, len(raw) - 8):
        raise ValueError(f"{refusal}: no safetensors header")
    try:
        header = json.loads(raw[8:8 + size])
        meta = header["__metadata__"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{refusal}: unreadable header") from exc
    if not isinstance(meta, dict) or meta.get("format") != "probgen":
        raise ValueError(f"{refusal}: a safetensors file without probgen metadata")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {meta.get('format_version')!r}; this probgen reads {FORMAT_VERSION!r}")
    for key in ("family", "config", "state"):
        if not isinstance(meta.get(key), str):
            raise ValueError(f"{refusal}: metadata lacks {key!r}")
    return meta


def _parse_json(text: str, key: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not a probgen model file: its {key!r} metadata is not valid JSON ({exc})") from exc


def _to_json(value: Any, what: str, model: Model) -> str:
    try:
        return json.dumps(value)
    except TypeError as exc:
        raise ValueError(f"model: its {what} is not JSON-serializable ({exc}); "
                         f"{type(model).__name__} must override get_config/get_state_json") from exc
