"""Saving and loading models: JSON config + safetensors weights, never a pickle.

A saved model is one safetensors file. Its header's metadata holds the family
name, the constructor config and any non-tensor state as JSON; its body holds the
``state_dict`` tensors. Loading looks the family up in probgen's registry (never
importing a name read from the file) and parses only JSON and raw tensor bytes,
so loading a file can never execute code from it.

``load`` checks the whole file before it hands anything to a model: the header, the
tensor index against the body (a file cut short is caught here), the family, that the
config and state are JSON objects, that the config builds a model, that every weight
has the shape that model expects, and a SHA-256 checksum that ``save`` writes over the
metadata, the tensor index and the body (a flipped byte anywhere that matters is
caught). Every failure is one ``ModelFileError`` (a ``ValueError``) naming the path and
what is wrong; a model is returned only when all checks pass, so nothing is half-loaded.
"""

from __future__ import annotations

__all__ = ["save", "load", "ModelFileError", "FORMAT_VERSION"]

import hashlib
import json
import math
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

FORMAT_VERSION = "2"
# "1": files written before checksums (they still load); "2": a checksum is required, so a file whose
# checksum entry was damaged is refused rather than read as an old file without one
_READABLE_VERSIONS = ("1", "2")
_MAX_HEADER = 100 * 1024 * 1024
# safetensors dtype names -> bytes per element
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class ModelFileError(ValueError):
    """A file ``probgen.load`` refuses: not a probgen model, damaged, truncated or edited.

    The message names the path and what is wrong.

    Example:
        >>> import probgen, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "junk.safetensors")
        >>> _ = open(p, "wb").write(b"not a model")
        >>> try:
        ...     probgen.load(p)
        ... except ModelFileError as e:
        ...     print("refused")
        refused
    """


def save(model: Model, path: str | os.PathLike, card: bool | str = False) -> Path:
    """Write ``model`` to ``path`` atomically (a temporary file, then a rename).

    ``card=True`` also writes a model card (``probgen.model_card(model)``) beside the file as
    ``<name>.card.md``; ``card="..."`` writes that Markdown instead (e.g. a card built with
    the FitResult and a quality report).

    Example:
        >>> import probgen, tempfile, os
        >>> m = probgen.models.BayesianLinearRegression(num_features=2)
        >>> p = probgen.save(m, os.path.join(tempfile.mkdtemp(), "m.safetensors"))
        >>> type(probgen.load(p)).__name__
        'BayesianLinearRegression'
    """
    if not isinstance(model, Model):
        raise ValueError(f"model: expected a probgen model, got {type(model).__name__}")
    if not model.family:
        raise ValueError(f"model: {type(model).__name__} is not a registered family and cannot be saved")
    path = _as_path(path)
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
    # the checksum covers the metadata, the tensor index and the body; it is written into the
    # header afterwards, which moves no tensor bytes (offsets are relative to the body)
    header, body = _split(payload)
    header["__metadata__"]["checksum"] = _checksum(header, body)
    payload = _join(header, body)
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

    A pickle or ``torch.save`` file is refused before any of it is interpreted; a
    damaged, truncated or edited file raises ``ModelFileError`` (a ``ValueError``)
    naming the path and what is wrong (see the module docstring for the checks).

    Example:
        >>> import probgen, tempfile, os
        >>> m = probgen.models.BayesianLinearRegression(num_features=2)
        >>> p = probgen.save(m, os.path.join(tempfile.mkdtemp(), "m.safetensors"))
        >>> raw = open(p, "rb").read()
        >>> _ = open(p, "wb").write(raw[:-10])   # cut short
        >>> try:
        ...     probgen.load(p)
        ... except ValueError as e:
        ...     print(str(e).split(": ", 1)[1][:40])
        truncated or padded: the header's tensor
    """
    path = _as_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no file at {str(path)!r}")
    raw = path.read_bytes()
    meta = _read_metadata(raw, path)
    index = _check_index(raw, path)
    family = meta["family"]
    try:
        cls = family_class(family)
    except KeyError as exc:
        raise ModelFileError(f"{path}: unknown model family {family!r} ({exc.args[0]})") from None
    config, state = (_parse_json(meta[key], key, path) for key in ("config", "state"))
    stored = meta.get("checksum")
    if stored is not None:
        header, body = _split(raw)
        header["__metadata__"].pop("checksum", None)
        if stored != _checksum(header, body):
            raise ModelFileError(f"{path}: the contents do not match the checksum written when it was saved: the "
                                 "file was damaged or edited after probgen.save wrote it")
    try:
        model = cls.from_config(config)
    except Exception as exc:  # the config is untrusted input: whatever the constructor refuses
        raise ModelFileError(f"{path}: its config does not build a {cls.__name__}: {type(exc).__name__}: {exc}") from exc
    try:
        model.set_state_json(state)
    except Exception as exc:
        raise ModelFileError(f"{path}: its state does not fit a {cls.__name__}: {type(exc).__name__}: {exc}") from exc
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in index]
    unexpected = [k for k in index if k not in expected]
    if missing or unexpected:
        raise ModelFileError(f"{path}: weights do not fit a {cls.__name__} built from its config "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    for key, want in expected.items():
        got = tuple(index[key]["shape"])
        if got != want:
            raise ModelFileError(f"{path}: weights do not fit a {cls.__name__} built from its config: tensor {key!r} "
                                 f"has shape {got} in the file, the model expects {want}")
    try:
        tensors = _load_tensors(raw)
    except Exception as exc:  # safetensors' own checks, after ours
        raise ModelFileError(f"{path}: unreadable tensors ({exc})") from exc
    model.load_state_dict(tensors, strict=True)
    model.eval()
    if device is not None:
        model.to(resolve_device(device))
    _responsible_hook(model, path, raw)
    return model


def _as_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)) or (isinstance(path, str) and not path):
        raise ValueError(f"path: expected a file path (str or os.PathLike), got {path!r}")
    return Path(path)


def _split(raw: bytes) -> tuple[dict, bytes]:
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def _join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the body to 8 bytes
    return len(text).to_bytes(8, "little") + text + body


def _checksum(header: dict, body: bytes) -> str:
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    digest.update(body)
    return "sha256:" + digest.hexdigest()


def _check_index(raw: bytes, path: Path) -> dict[str, dict]:
    """The header's tensor entries, checked against the body: dtypes, shapes, offsets, full coverage."""
    header, body = _split(raw)
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a probgen model file: its header is not a JSON object")
    index = {k: v for k, v in header.items() if k != "__metadata__"}
    end = 0
    spans = []
    for key, entry in index.items():
        where = f"{path}: damaged tensor index: entry {key!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ModelFileError(f"{where} is not {{dtype, shape, data_offsets}}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_BYTES:
            raise ModelFileError(f"{where} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise ModelFileError(f"{where} has shape {shape!r}; expected a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise ModelFileError(f"{where} has data_offsets {offsets!r}; expected [begin, end] with begin <= end")
        if offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise ModelFileError(f"{where}: its {dtype} shape {tuple(shape)} needs "
                                 f"{math.prod(shape) * _DTYPE_BYTES[dtype]} bytes, its offsets span "
                                 f"{offsets[1] - offsets[0]}")
        spans.append(tuple(offsets))
        end = max(end, offsets[1])
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        raise ModelFileError(f"{path}: damaged tensor index: tensors overlap")
    if end != len(body):
        raise ModelFileError(f"{path}: truncated or padded: the header's tensor index needs a body of {end} bytes, "
                             f"the file has {len(body)}")
    return index


def _read_metadata(raw: bytes, path: Path) -> dict:  # raises ModelFileError
    refusal = f"{path}: not a probgen model file"
    # a safetensors header length can start with byte 0x80 too: only sniff for pickles when
    # the bytes are not a safetensors header (8-byte length, then a JSON object)
    head = int.from_bytes(raw[:8], "little") if len(raw) >= 9 else 0
    is_safetensors = 0 < head <= _MAX_HEADER and raw[8:9] == b"{"  # perhaps cut short
    if not is_safetensors and (raw[:2] == b"PK" or raw[:1] == b"\x80"):
        raise ModelFileError(f"{refusal}: it looks like a pickle / torch.save archive, which probgen.load refuses "
                         "because unpickling can execute code")
    if len(raw) < 8:
        raise ModelFileError(f"{refusal}: too short")
    size = int.from_bytes(raw[:8], "little")
    if is_safetensors and size > len(raw) - 8:
        raise ModelFileError(f"{path}: truncated: its header needs {size} bytes, the file has {len(raw) - 8} after the "
                             "length field")
    if size <= 0 or size > min(_MAX_HEADER, len(raw) - 8):
        raise ModelFileError(f"{refusal}: no safetensors header")
    try:
        header = json.loads(raw[8:8 + size])
        meta = header["__metadata__"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"{refusal}: unreadable header") from exc
    if not isinstance(meta, dict) or meta.get("format") != "probgen":
        raise ModelFileError(f"{refusal}: a safetensors file without probgen metadata")
    if meta.get("format_version") not in _READABLE_VERSIONS:
        raise ModelFileError(f"{path}: format version {meta.get('format_version')!r}; this probgen reads "
                             f"{', '.join(map(repr, _READABLE_VERSIONS))}")
    if meta.get("format_version") != "1" and meta.get("checksum") is None:
        raise ModelFileError(f"{path}: not a probgen model file: format version {meta['format_version']!r} "
                             "files carry a checksum, and this one has none (damaged or edited)")
    for key in ("family", "config", "state"):
        if not isinstance(meta.get(key), str):
            raise ModelFileError(f"{refusal}: metadata lacks {key!r}")
    if meta.get("checksum") is not None and not isinstance(meta["checksum"], str):
        raise ModelFileError(f"{refusal}: its checksum is not a string")
    return meta


def _parse_json(text: str, key: str, path: Path) -> dict:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: not a probgen model file: its {key!r} metadata is not valid JSON ({exc})") from exc
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ModelFileError(f"{path}: its {key!r} metadata is a JSON {type(value).__name__}; expected an object "
                             "(name -> value)")
    return value


def _to_json(value: Any, what: str, model: Model) -> str:
    try:
        return json.dumps(value)
    except TypeError as exc:
        raise ValueError(f"model: its {what} is not JSON-serializable ({exc}); "
                         f"{type(model).__name__} must override get_config/get_state_json") from exc
