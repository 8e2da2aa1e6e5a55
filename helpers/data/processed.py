"""The processed set on disk (written by helpers.data.preprocess): manifest, uint8 caches, loaders.

`<group>.npy` caches hold uint8 N x size x size x 3 images in manifest order; each has a
`.npy.json` fingerprint (count, digest of the group's PNG hashes, digest of sample rows). A
cache that does not match is rebuilt from the PNGs, each checked against its manifest sha256.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from helpers.config.params import check
from helpers.core import atomic
from helpers.core.classes import GROUPS, NORMAL_GROUP, POLYP_GROUP
from helpers.core.fingerprint import array_digest, bytes_digest, lines_digest
from helpers.data.images import FLIPS, apply_flip

SPLITS = ("train", "test")
MANIFEST_COLUMNS = (
    "file",
    "group",
    "source_class",
    "source_file",
    "source_id",
    "flip",
    "crop_scale",
    "split",
    "sha256",
)
STAMP_NAME = "preprocess.json"
_POOL_STREAM = 0xAB1  # random stream of the polyp pool split
SKIPPED_NAME = "skipped.csv"
PRODUCER = "run notebooks/01_preprocessing.ipynb first"
_CACHE_SAMPLE_ROWS = 64


def read_stamp(out_dir: Path) -> dict[str, Any] | None:
    """The stamp of the last complete preprocessing run in `out_dir`, or None."""
    try:
        return json.loads((Path(out_dir) / STAMP_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def to_tensor(images_uint8: np.ndarray):
    """uint8 N x H x W x 3 array -> torch.FloatTensor N x 3 x H x W in [0, 1]."""
    array = np.asarray(images_uint8)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(
            f"images_uint8: expected uint8 N x H x W x 3, got {array.dtype} {tuple(array.shape)}"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def _group_fingerprint(frame: pd.DataFrame, group: str) -> str:
    """Digest of the PNG hashes of one group, in manifest order."""
    return lines_digest(list(frame.loc[frame["group"] == group, "sha256"].astype(str)))


def _sample_digest(images: np.ndarray) -> str:
    """Digest of up to 64 evenly spaced rows of a cache (cheap content check)."""
    n = len(images)
    rows = np.unique(np.linspace(0, n - 1, min(n, _CACHE_SAMPLE_ROWS)).astype(int))
    return array_digest(images[rows])


def write_cache(out_dir: Path, group: str, images: np.ndarray, frame: pd.DataFrame) -> None:
    """Write `<group>.npy` and its fingerprint file atomically."""
    with atomic.atomic_path(out_dir / f"{group}.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, images, allow_pickle=False)  # streamed: no second copy in memory
    meta = {
        "count": len(images),
        "shape": list(images.shape),
        "manifest": _group_fingerprint(frame, group),
        "sample": _sample_digest(images),
    }
    atomic.atomic_write_text(out_dir / f"{group}.npy.json", json.dumps(meta))


def _cache_if_valid(out_dir: Path, group: str, frame: pd.DataFrame) -> np.ndarray | None:
    """The cached array when its count and fingerprints match the manifest, else None."""
    try:
        meta = json.loads((out_dir / f"{group}.npy.json").read_text())
        images = np.load(out_dir / f"{group}.npy", allow_pickle=False)
    except (FileNotFoundError, ValueError, OSError, json.JSONDecodeError):
        return None
    expected = int((frame["group"] == group).sum())
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != expected:
        return None
    if meta.get("count") != expected or meta.get("manifest") != _group_fingerprint(frame, group):
        return None
    if meta.get("sample") != _sample_digest(images):
        return None
    return images


def _rebuild_cache(out_dir: Path, group: str, frame: pd.DataFrame) -> np.ndarray:
    """Read the group's PNGs (checking their sha256 against the manifest) into a new cache."""
    rows = frame[frame["group"] == group]
    arrays = []
    for rel, sha in zip(rows["file"], rows["sha256"], strict=True):
        path = out_dir / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in the manifest but missing; {PRODUCER}")
        data = path.read_bytes()
        if bytes_digest(data) != sha:
            raise ValueError(f"{path} does not match its manifest sha256; {PRODUCER}")
        with Image.open(io.BytesIO(data)) as image:
            arrays.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
    if arrays:
        images = np.stack(arrays)
    else:
        size = int(read_stamp(out_dir)["params"]["size"])
        images = np.zeros((0, size, size, 3), np.uint8)
    write_cache(out_dir, group, images, frame)
    return images


def load_manifest(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The manifest of a complete preprocessing run in `out_dir` (one row per PNG)."""
    out_dir = Path(out_dir)
    path = out_dir / "manifest.csv"
    if not path.is_file() or read_stamp(out_dir) is None:
        raise FileNotFoundError(f"no complete preprocessed data in {out_dir}; {PRODUCER}")
    frame = pd.read_csv(
        path,
        dtype={"file": str, "source_id": str, "split": str, "flip": str, "sha256": str},
        keep_default_na=False,
    )
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing; {PRODUCER}")
    return frame


def _check_group_split(group: str, split: str | None) -> None:
    """Validate the `group` and `split` arguments of the loaders."""
    if group not in GROUPS:
        raise ValueError(f"group={group!r}: expected one of {', '.join(GROUPS)}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split={split!r}: expected None, {', '.join(SPLITS)}")


def seeded_positions(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted positions of k of n items, drawn without replacement with `seed`."""
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def load_split(
    out_dir: str | os.PathLike, group: str = "normal", split: str | None = None
) -> tuple[np.ndarray, pd.DataFrame]:
    """uint8 N x H x W x 3 images of one group (and split) with their manifest rows."""
    _check_group_split(group, split)
    out_dir = Path(out_dir)
    frame = load_manifest(out_dir)
    images = _cache_if_valid(out_dir, group, frame)
    if images is None:
        images = _rebuild_cache(out_dir, group, frame)
    rows = frame[frame["group"] == group].reset_index(drop=True)
    if split is not None:
        mask = (rows["split"] == split).to_numpy()
        return images[mask], rows[mask].reset_index(drop=True)
    return images, rows


def load_images(
    out_dir: str | os.PathLike, group: str = "normal", split: str | None = None
) -> np.ndarray:
    """uint8 N x H x W x 3 images of one group (filtered by split) from the validated cache."""
    return load_split(out_dir, group, split)[0]


def accepted_sources(out_dir: str | os.PathLike, group: str = "polyps") -> list[Path]:
    """Source files that preprocessing accepted for `group` (from the manifest), sorted."""
    _check_group_split(group, None)
    frame = load_manifest(out_dir)
    return sorted({Path(f) for f in frame.loc[frame["group"] == group, "source_file"]})


def manifest_counts(out_dir: str | os.PathLike) -> dict[str, int]:
    """Processed images by group and split, and the source frames they came from."""
    frame = load_manifest(out_dir)
    group, split = frame["group"].astype(str), frame["split"].astype(str)
    return {
        "total": len(frame),
        "healthy": int((group == NORMAL_GROUP).sum()),
        "polyps": int((group == POLYP_GROUP).sum()),
        "held-out healthy": int(((group == NORMAL_GROUP) & (split == "test")).sum()),
        "source frames": int(frame["source_id"].nunique()),
    }


# --- splits by source frame (notebooks 08 and 09) ---------------------------------------


def assert_disjoint_sources(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    """Raise ValueError when two manifest subsets share a source frame (source_id)."""
    for frame in (a, b):
        if "source_id" not in frame.columns:
            raise ValueError(f"{what}: manifest rows lack the 'source_id' column")
    shared = sorted(set(a["source_id"]) & set(b["source_id"]))
    if shared:
        raise ValueError(
            f"{what}: {len(shared)} source frame(s) on both sides, e.g. {shared[0]!r}; "
            "rerun notebook 01 (its split is by source frame)"
        )


def polyp_pool_split(
    manifest: pd.DataFrame, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split polyp rows by source frame: (pool positions usable for training, eval positions)."""
    check("polyp_train_share", share)
    if "source_id" not in manifest.columns:
        raise ValueError("polyp manifest rows lack the 'source_id' column")
    sources = np.array(sorted(set(manifest["source_id"])))
    if len(sources) < 2:
        raise ValueError(
            f"need at least 2 polyp source frames to split into pool and evaluation set, "
            f"found {len(sources)}"
        )
    n_pool = min(len(sources) - 1, max(1, int(math.floor(share * len(sources) + 0.5))))
    order = np.random.default_rng([seed, _POOL_STREAM]).permutation(len(sources))
    pool_sources = set(sources[order[:n_pool]])
    in_pool = manifest["source_id"].isin(pool_sources).to_numpy()
    return np.flatnonzero(in_pool), np.flatnonzero(~in_pool)


def flipped_variants(images: np.ndarray, rows: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """The 4 flips (none, h, v, hv) of each source's unflipped image, with their manifest rows."""
    base = rows.reset_index(drop=True)
    keep = base.index[base["flip"] == "none"].to_numpy()
    missing = set(base["source_id"]) - set(base.loc[keep, "source_id"])
    if missing:
        raise ValueError(
            f"{len(missing)} source frame(s) without an unflipped image, e.g. {sorted(missing)[0]!r}"
        )
    out_images, out_rows = [], []
    for i in keep:
        for flip in FLIPS:
            out_images.append(apply_flip(images[i], flip))
            out_rows.append({**base.loc[i].to_dict(), "flip": flip})
    return np.stack(out_images), pd.DataFrame(out_rows)
