"""Safetensors artifacts with typed metadata, and atomic writes for every file the toolkit produces.

An artifact is a `.safetensors` file whose header metadata holds three string keys:
`schema` (an integer version), `kind` (latents, text-embeds, anchors, ...) and `meta` (JSON: producer
parameters, source path and content hash, whatever the reader needs to use the tensors again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from sama_cli.core.errors import InputError, writing

SCHEMA_VERSION = 1
KINDS = (
    "latents",  # VAE latents of one video or image: `latents` (C, T, H, W), normalized
    "text-embeds",  # text-encoder output: `embeds` (L, D), trimmed to the real length
    "anchors",  # pooled SigLIP tokens of anchor frames: `tokens` (65*N, S)
    "checkpoint",  # model weights in the project's own format
)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary file keeps the final suffix (encoders choose the container from it). On any
    exception the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    with writing(path):  # a refused write (no space, read-only, no permission) is one line naming `path`
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the mode a plain open() gives
            os.replace(tmp_path, path)
        except BaseException:
            tmp_path.unlink(missing_ok=True)  # removed at once: a full disk gets its space back
            raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def content_hash(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """sha256 of a file's bytes, hex; identifies an input independently of its name."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


@dataclass
class Artifact:
    path: Path
    kind: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise InputError(f"artifact of kind {self.kind!r} has no tensor {name!r}", path=self.path) from None


def save_artifact(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, meta: dict[str, Any]) -> Path:
    """Write `tensors` with metadata atomically. Tensors are made contiguous and moved to CPU."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}; known: {', '.join(KINDS)}")
    path = Path(path)
    header = {"schema": str(SCHEMA_VERSION), "kind": kind, "meta": json.dumps(meta, sort_keys=True)}
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata=header)
    return path


def read_header(path: str | Path, kind: str | None = None) -> tuple[str, dict[str, Any]]:
    """(kind, meta) of an artifact without loading its tensors; validates schema and kind."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such artifact file", path=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"not a readable safetensors file ({e})", path=path) from None
    return _check_header(path, header, kind)


def _check_header(path: Path, header: dict[str, str], kind: str | None) -> tuple[str, dict[str, Any]]:
    if "schema" not in header or "kind" not in header:
        raise InputError("safetensors file is not a sama artifact (no schema/kind metadata)", path=path)
    try:
        schema = int(header["schema"])
    except ValueError:
        raise InputError(f"artifact schema {header['schema']!r} is not a version number", path=path) from None
    if schema > SCHEMA_VERSION:
        raise InputError(
            f"artifact schema {schema} is newer than this sama supports ({SCHEMA_VERSION}); upgrade sama",
            path=path,
        )
    if kind is not None and header["kind"] != kind:
        raise InputError(f"expected an artifact of kind {kind!r}, found {header['kind']!r}", path=path)
    try:
        meta = json.loads(header.get("meta", "{}"))
    except json.JSONDecodeError as e:
        raise InputError(f"artifact metadata is not valid JSON ({e})", path=path) from None
    return header["kind"], meta


def load_artifact(path: str | Path, kind: str | None = None, device: str | torch.device = "cpu") -> Artifact:
    """Read an artifact, checking its schema and (if given) its kind."""
    path = Path(path)
    found_kind, meta = read_header(path, kind)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"artifact is truncated or corrupt ({e})", path=path) from None
    return Artifact(path=path, kind=found_kind, tensors=tensors, meta=meta)


def read_shapes(path: str | Path, kind: str | None = None) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """(meta, {tensor name: shape}) of an artifact from its header alone: no tensor is read."""
    path = Path(path)
    _, meta = read_header(path, kind)
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"artifact is truncated or corrupt ({e})", path=path) from None
    return meta, shapes


def is_valid_cache(path: str | Path, kind: str, expect: dict[str, Any]) -> bool:
    """True when `path` is a readable artifact of `kind` whose meta agrees with `expect` on every key
    (used to skip work whose output already exists for the same input content and parameters)."""
    try:
        _, meta = read_header(path, kind)
    except InputError:
        return False
    return all(meta.get(k) == v for k, v in expect.items())
