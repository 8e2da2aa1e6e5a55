"""Content digests, one scheme for the whole bundle: SHA-256 of files, bytes, image arrays and
JSON-able settings. Stamps of run folders, extraction markers, checkpoints' data fingerprints
and the synthetic-data manifests all use these.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes ("missing" when it is gone); unchanged files are hashed once."""
    try:
        stat = os.stat(path)
        key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
        if key not in _DIGESTS:
            with open(path, "rb") as fh:
                _DIGESTS[key] = hashlib.file_digest(fh, "sha256").hexdigest()
        return _DIGESTS[key]
    except OSError:
        return "missing"


def bytes_digest(data: bytes) -> str:
    """sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and values (C order)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.shape}|{array.dtype}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def json_digest(value: Any) -> str:
    """sha256 of a JSON-able value, with sorted keys (so dict order does not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return bytes_digest(text.encode())


def lines_digest(lines: list[str]) -> str:
    """sha256 of text lines joined by newlines (e.g. "name sha256" manifest lines)."""
    return bytes_digest("\n".join(lines).encode())
