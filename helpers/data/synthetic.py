"""Embedded Kvasir-like data set: the bundle's default data when Kvasir is not at hand.

Writes a Kvasir v1 folder tree (``normal-cecum/``, ``normal-pylorus/``, ``normal-z-line/``,
``polyps/``) of JPEG frames drawn by helpers.data.frames, in parallel, resumable and idempotent:
a stamp written last says the tree is complete. The same ``(seed, class, index)`` always gives
the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.core import paths
from helpers.core.atomic import atomic_write_bytes, atomic_write_text
from helpers.core.classes import ALL_CLASSES
from helpers.core.lock import LOCK_WAIT_S, file_lock
from helpers.core.pool import run_tasks
from helpers.data.frames import generate_frame

GENERATOR_VERSION = "1"
STAMP_NAME = "SYNTHETIC.json"  # written last: its presence means the tree is complete
PARTIAL_NAME = ".SYNTHETIC.partial.json"  # settings of a run in progress (lets a rerun resume)
JPEG_QUALITY = 90


def _frame_name(cls: str, index: int) -> str:
    """Path of frame `index` of class `cls`, relative to the dataset folder."""
    return f"{cls}/{cls}_{index:04d}.jpg"


def _jpeg_bytes(img: Image.Image) -> bytes:
    """JPEG encoding of `img` at JPEG_QUALITY."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _write_frame(job: tuple[str, str, int, int]) -> str:
    """Render one frame and write it atomically; return its relative path."""
    out_dir, cls, index, seed = job
    rel = _frame_name(cls, index)
    atomic_write_bytes(Path(out_dir) / rel, _jpeg_bytes(generate_frame(cls, index, seed)))
    return rel


def _settings(n_per_class: int, seed: int) -> dict:
    """The fields a stamp must match for a tree to be reused."""
    return {"generator_version": GENERATOR_VERSION, "n_per_class": n_per_class, "seed": seed}


def _read_json(path: Path) -> dict:
    """Contents of a JSON object file, or {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stamp_matches(out_dir: Path, n_per_class: int, seed: int) -> bool:
    """True when out_dir holds a complete tree stamped for these settings."""
    meta = _read_json(out_dir / STAMP_NAME)
    if any(meta.get(k) != v for k, v in _settings(n_per_class, seed).items()):
        return False
    files = meta.get("files", [])
    expected = {_frame_name(c, i) for c in ALL_CLASSES for i in range(n_per_class)}
    try:
        return {f["path"] for f in files} == expected and all(
            (out_dir / f["path"]).stat().st_size == f["bytes"] for f in files
        )
    except (OSError, KeyError, TypeError):
        return False


def _reusable(out_dir: Path, n_per_class: int, seed: int) -> set[str]:
    """Frames already written for these settings (named by a stamp or an interrupted run's marker)."""
    settings = _settings(n_per_class, seed)
    stamp = _read_json(out_dir / STAMP_NAME)
    marker = _read_json(out_dir / PARTIAL_NAME)
    if not any(all(m.get(k) == v for k, v in settings.items()) for m in (stamp, marker)):
        return set()
    names = (_frame_name(c, i) for c in ALL_CLASSES for i in range(n_per_class))
    return {n for n in names if (out_dir / n).is_file()}


def _prune(out_dir: Path, n_per_class: int) -> None:
    """Remove our frames beyond n_per_class and temporary files left by a killed run."""
    for cls in ALL_CLASSES:
        folder = out_dir / cls
        if not folder.is_dir():
            continue
        ours = re.compile(rf"^{re.escape(cls)}_(\d{{4,}})\.jpg$")
        for f in folder.iterdir():
            match = ours.match(f.name)
            stale_tmp = f.name.startswith(".") and f.name.endswith(".tmp")
            if stale_tmp or (match and int(match.group(1)) >= n_per_class):
                f.unlink(missing_ok=True)


def _check_count(name: str, value: object, minimum: int) -> int:
    """`value` as an int >= minimum, or a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def generate_dataset(
    out_dir: str | os.PathLike,
    n_per_class: int = 500,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    lock_timeout: float | None = LOCK_WAIT_S,
) -> Path:
    """Write n_per_class frames per Kvasir class under out_dir (idempotent, resumable); return it.

    The stamp SYNTHETIC.json is written last; a tree whose stamp matches is left untouched, and
    a tree without one (an interrupted run) is completed. One process at a time writes a tree
    (a second one waits up to `lock_timeout` s, then finds it done).
    """
    n_per_class = _check_count("n_per_class", n_per_class, 1)
    seed = _check_count("seed", seed, 0)
    if workers is not None:
        workers = _check_count("workers", workers, 1)
    out_dir = Path(out_dir)
    if _stamp_matches(out_dir, n_per_class, seed):
        return out_dir
    lock = out_dir.parent / f".{out_dir.name}.lock"
    with file_lock(lock, timeout=lock_timeout, what=f"generation of {out_dir}"):
        if not _stamp_matches(out_dir, n_per_class, seed):  # else done while we waited
            _generate_locked(out_dir, n_per_class, seed, workers, progress)
    return out_dir


def _generate_locked(
    out_dir: Path, n_per_class: int, seed: int, workers: int | None, progress: bool
) -> None:
    """generate_dataset's work, run while holding the tree's lock."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = _reusable(out_dir, n_per_class, seed)
    atomic_write_text(out_dir / PARTIAL_NAME, json.dumps(_settings(n_per_class, seed)))
    (out_dir / STAMP_NAME).unlink(missing_ok=True)
    _prune(out_dir, n_per_class)
    names = [(c, i) for c in ALL_CLASSES for i in range(n_per_class)]
    jobs = [(str(out_dir), c, i, seed) for c, i in names if _frame_name(c, i) not in done]
    run_tasks(
        _write_frame,
        jobs,
        min(workers or os.cpu_count() or 1, max(1, len(jobs))),
        desc="Kvasir-like frames",
        progress=progress,
        max_chunk=8,
        min_per_worker=1,
    )
    files = [
        {"path": p, "bytes": (out_dir / p).stat().st_size}
        for p in (_frame_name(c, i) for c, i in names)
    ]
    stamp = {**_settings(n_per_class, seed), "classes": list(ALL_CLASSES), "files": files}
    atomic_write_text(out_dir / STAMP_NAME, json.dumps(stamp, indent=1))
    (out_dir / PARTIAL_NAME).unlink(missing_ok=True)


def default_synthetic_dir(n_per_class: int, seed: int = 0) -> Path:
    """Where the embedded Kvasir-like set of these settings lives under the data root."""
    return paths.data_root() / "kvasir-like" / f"n{n_per_class}-seed{seed}"


def ensure_synthetic(n_per_class: int, seed: int = 0, progress: bool = True) -> Path:
    """Generate the Kvasir-like set into default_synthetic_dir if needed; return that folder."""
    n_per_class = _check_count("n_per_class", n_per_class, 1)
    seed = _check_count("seed", seed, 0)
    return generate_dataset(
        default_synthetic_dir(n_per_class, seed), n_per_class, seed, progress=progress
    )
