"""Preprocessing: flips x centre crop (90-100 %) x 96x96 PNG, manifest, uint8 caches, split.

For every healthy source frame the four flip variants (none, h, v, hv) are written, each centre
cropped to a random fraction `s` of the frame (same `s` on both axes, drawn per output from a
generator seeded by the run seed and the source's id) and resized to `size` x `size` with
Lanczos antialiasing. Polyp frames get the unflipped variant only (all four with
`polyp_flips=True`). Outputs, under `out_dir`:

    normal/<class>_<stem>_<flip>.png, polyps/polyps_<stem>_none.png   lossless 96x96 RGB
    manifest.csv      one row per PNG (see MANIFEST_COLUMNS), written after every PNG
    skipped.csv       unusable source files with the reason
    normal.npy, polyps.npy (+ .json fingerprints)   uint8 N x size x size x 3, manifest order
    preprocess.json   stamp (parameters + digest of the input files), written last

A rerun with the same inputs and parameters does nothing; anything else rebuilds. The raw
frames are only read. Held-out healthy frames are chosen by source (all flips of a source land
on the same side); polyps are all "test" (never used for training).
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core import atomic
from helpers.core.classes import ALL_CLASSES, GROUPS, HEALTHY_CLASSES, POLYP_CLASS, group_of
from helpers.core.fingerprint import bytes_digest
from helpers.core.pool import run_tasks
from helpers.data.images import FLIPS, UnusableImage, apply_flip, crop_resize, open_frame, png_bytes
from helpers.data.images import PNG_COMPRESS_LEVEL as PNG_COMPRESS_LEVEL  # re-export (old home)
from helpers.data.kvasir import list_images
from helpers.data.processed import (
    MANIFEST_COLUMNS,
    SPLITS,
    STAMP_NAME,
    load_manifest,
    read_stamp,
    write_cache,
)
from helpers.data.processed import load_images as load_images  # re-export (old home)
from helpers.data.processed import load_split as load_split  # re-export (old home)
from helpers.data.processed import to_tensor as to_tensor  # re-export (old home)

PIPELINE_VERSION = 1
SKIPPED_NAME = "skipped.csv"
_SPLIT_STREAM = 0x5E1


@dataclass
class PreprocessReport:
    """What preprocess() did: counts, skipped files, where the manifest is, timing."""

    out_dir: Path
    counts: dict[str, dict[str, int]]
    skipped: list[tuple[str, str]]
    manifest: Path
    rebuilt: bool
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)

    def class_table(self) -> pd.DataFrame:
        """Per source class: files found, usable sources, processed images."""
        rows = [
            {
                "class": name,
                "group": "healthy" if group_of(name) == "normal" else "polyps",
                "files found": self.counts["raw"].get(name, 0),
                "usable sources": self.counts["sources"].get(name, 0),
                "processed images": self.counts["images"].get(name, 0),
            }
            for name in ALL_CLASSES
        ]
        return pd.DataFrame(rows).set_index("class")

    def split_table(self) -> pd.DataFrame:
        """Processed images per group and split."""
        rows = []
        for key, n in self.counts["splits"].items():
            group, split = key.split("/")
            rows.append(
                {"group": "healthy" if group == "normal" else group, "split": split, "images": n}
            )
        return pd.DataFrame(rows)

    def skipped_table(self) -> pd.DataFrame:
        """Skipped source files and why."""
        return pd.DataFrame(self.skipped, columns=["file", "reason"])

    def settings_text(self) -> str:
        """One sentence on the crop range, the held-out share and the seed of this run."""
        p = self.params
        return (
            f"In this run the crop fraction was drawn uniformly between {p['crop_min']:.0%} and "
            f"{p['crop_max']:.0%} per image, and {p['healthy_test_fraction']:.0%} of the healthy "
            f"source frames of each class were held out (seed {p['seed']}). "
        )

    def summary(self) -> str:
        """One markdown paragraph describing this run's numbers."""
        src, splits = self.counts["sources"], self.counts["splits"]
        healthy = sum(src.get(c, 0) for c in HEALTHY_CLASSES)
        n_train, n_test = splits.get("normal/train", 0), splits.get("normal/test", 0)
        held = sum(self.counts["held_out_sources"].values())
        polyp_note = (
            "as is and mirrored three ways" if self.params.get("polyp_flips") else "not mirrored"
        )
        text = (
            f"{healthy:,} healthy frames became {n_train + n_test:,} images (each frame as is and "
            f"mirrored three ways): {n_train:,} for training and {n_test:,} held out from "
            f"{held:,} source frames. {src.get(POLYP_CLASS, 0):,} polyp frames became "
            f"{splits.get('polyps/test', 0):,} test images ({polyp_note}). "
        )
        if self.skipped:
            text += f"{len(self.skipped)} unusable file(s) were skipped (listed below). "
        else:
            text += "No file had to be skipped. "
        verb = "built" if self.rebuilt else "reused (inputs and parameters unchanged)"
        return text + f"The processed set was {verb} in {self.seconds:.1f} s."


@dataclass(frozen=True)
class _Task:
    """One source frame to process (picklable, sent to worker processes)."""

    class_name: str
    group: str
    path: str
    source_id: str
    stem: str
    flips: tuple[str, ...]
    scales: tuple[float, ...]
    size: int
    crop_min: float
    out_dir: str


# --- the pipeline ------------------------------------------------------------------------------


def preprocess(
    class_dirs: Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    size: int = 96,
    crop_min: float = 0.9,
    crop_max: float = 1.0,
    polyp_flips: bool = False,
    healthy_test_fraction: float = 0.1,
    workers: int | None = None,
    progress: bool = True,
) -> PreprocessReport:
    """Flip, centre-crop and resize every frame of `class_dirs` into `out_dir` (see module doc)."""
    started = time.perf_counter()
    params = _validated_params(seed, size, crop_min, crop_max, polyp_flips, healthy_test_fraction)
    workers = _validated_workers(workers)
    dirs = _validated_class_dirs(class_dirs)
    out_dir = Path(out_dir).expanduser().resolve()
    listing = {name: _list_sources(folder) for name, folder in dirs.items()}
    stamp = _stamp(params, dirs, listing)
    if _up_to_date(out_dir, stamp):
        return _report_from_disk(
            out_dir, stamp, rebuilt=False, seconds=time.perf_counter() - started
        )
    _invalidate(out_dir)
    tasks, skipped = _plan(listing, params, out_dir)
    results = run_tasks(_process_task, tasks, workers, desc="preprocess", progress=progress)
    skipped += [(r["path"], r["error"]) for r in results if r["error"]]
    _require_usable(dirs, results, skipped)
    frame = _manifest_frame(results, params)
    _remove_strays(out_dir, set(frame["file"]))
    _sync_to_disk()
    atomic.atomic_write_csv(
        out_dir / SKIPPED_NAME, pd.DataFrame(skipped, columns=["file", "reason"])
    )
    atomic.atomic_write_csv(out_dir / "manifest.csv", frame)
    for group in GROUPS:
        arrays = [a for r in results if not r["error"] and r["group"] == group for a in r["arrays"]]
        images = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
        write_cache(out_dir, group, images, frame)
    stamp["counts"] = {"raw": {name: len(files) for name, files in listing.items()}}
    stamp["seconds"] = round(time.perf_counter() - started, 3)
    atomic.atomic_write_text(out_dir / STAMP_NAME, json.dumps(stamp, indent=1))
    return _report_from_disk(out_dir, stamp, rebuilt=True, seconds=time.perf_counter() - started)


def _validated_params(
    seed: Any, size: Any, crop_min: Any, crop_max: Any, polyp_flips: Any, fraction: Any
) -> dict[str, Any]:
    """Check the numeric parameters; return them as a plain dict (part of the stamp)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size={size!r}: expected an integer >= 8")
    for name, value in (("crop_min", crop_min), ("crop_max", crop_max)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ValueError(f"{name}={value!r}: expected a number in (0, 1]")
    if crop_min > crop_max:
        raise ValueError(
            f"crop_min={crop_min!r} > crop_max={crop_max!r}: expected crop_min <= crop_max"
        )
    if not isinstance(polyp_flips, bool):
        raise ValueError(f"polyp_flips={polyp_flips!r}: expected True or False")
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0 <= fraction < 1
    ):
        raise ValueError(f"healthy_test_fraction={fraction!r}: expected a number in [0, 1)")
    return {
        "seed": seed,
        "size": size,
        "crop_min": float(crop_min),
        "crop_max": float(crop_max),
        "polyp_flips": polyp_flips,
        "healthy_test_fraction": float(fraction),
    }


def _validated_workers(workers: Any) -> int:
    """Worker processes to use: None or 0 = all CPU cores."""
    if workers is None or workers == 0:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers={workers!r}: expected None, 0 (all cores) or a positive integer")
    return workers


def _validated_class_dirs(class_dirs: Mapping[str, Any]) -> dict[str, Path]:
    """Check the class folders: the polyp class, at least one healthy class, each holding files."""
    if not isinstance(class_dirs, Mapping):
        raise ValueError(
            f"class_dirs: expected a dict {{class: folder}}, got {type(class_dirs).__name__}"
        )
    extra = [c for c in class_dirs if c not in ALL_CLASSES]
    healthy = [c for c in HEALTHY_CLASSES if c in class_dirs]
    if extra or POLYP_CLASS not in class_dirs or not healthy:
        raise ValueError(
            f"class_dirs: expected {POLYP_CLASS} and at least one of {', '.join(HEALTHY_CLASSES)}"
            f" (given: {', '.join(map(str, class_dirs)) or 'none'}; unexpected: {extra or 'none'})"
        )
    dirs = {}
    for name in (c for c in ALL_CLASSES if c in class_dirs):
        folder = Path(class_dirs[name]).expanduser().resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"class folder for {name!r} not found: {folder}")
        if not _list_sources(folder):
            raise ValueError(f"class folder for {name!r} holds no image files: {folder}")
        dirs[name] = folder
    return dirs


def _list_sources(folder: Path) -> list[Path]:
    """Image files directly in `folder` (helpers.data.kvasir.list_images: by suffix, sorted)."""
    return list_images(folder)


def _stamp(params: dict, dirs: dict[str, Path], listing: dict[str, list[Path]]) -> dict[str, Any]:
    """Parameters plus a digest of every input file's name, size and mtime."""
    lines = []
    for name in (c for c in ALL_CLASSES if c in dirs):
        lines.append(f"{name}\0{dirs[name]}\n")
        for path in listing[name]:
            st = path.stat()
            lines.append(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n")
    return {
        "version": PIPELINE_VERSION,
        "params": params,
        "class_dirs": {name: str(folder) for name, folder in dirs.items()},
        "inputs_sha256": bytes_digest("".join(lines).encode()),
    }


def _stamp_key(stamp: Mapping[str, Any]) -> tuple:
    """The parts of a stamp that decide whether outputs are current."""
    return (
        stamp.get("version"),
        json.dumps(stamp.get("params"), sort_keys=True),
        json.dumps(stamp.get("class_dirs"), sort_keys=True),
        stamp.get("inputs_sha256"),
    )


def _up_to_date(out_dir: Path, stamp: dict[str, Any]) -> bool:
    """True when the last complete run used the same inputs and parameters and its PNGs exist."""
    old = read_stamp(out_dir)
    if old is None or _stamp_key(old) != _stamp_key(stamp):
        return False
    try:
        frame = pd.read_csv(out_dir / "manifest.csv", usecols=["file"])
    except (FileNotFoundError, ValueError, pd.errors.ParserError):
        return False
    if not (out_dir / SKIPPED_NAME).is_file():
        return False
    return all((out_dir / f).is_file() for f in frame["file"])


def _invalidate(out_dir: Path) -> None:
    """Remove the stamp first (so nothing below is trusted), then manifest and caches."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [STAMP_NAME, "manifest.csv", SKIPPED_NAME]
    names += [f"{g}.npy" for g in GROUPS] + [f"{g}.npy.json" for g in GROUPS]
    for name in names:
        (out_dir / name).unlink(missing_ok=True)
    for group in GROUPS:
        (out_dir / group).mkdir(exist_ok=True)


def _source_id(class_name: str, path: Path) -> str:
    """Stable id of a source frame: '<class>/<stem>'."""
    return f"{class_name}/{path.stem}"


def _plan(
    listing: dict[str, list[Path]], params: dict, out_dir: Path
) -> tuple[list[_Task], list[tuple[str, str]]]:
    """One task per source frame (seeded crop scales); duplicate stems are skipped."""
    tasks, skipped = [], []
    for name in (c for c in ALL_CLASSES if c in listing):
        group = group_of(name)
        flips = FLIPS if group == "normal" or params["polyp_flips"] else FLIPS[:1]
        seen: dict[str, Path] = {}
        for path in listing[name]:
            if path.stem in seen:
                skipped.append((str(path), f"same name stem as {seen[path.stem].name}; rename one"))
                continue
            seen[path.stem] = path
            source_id = _source_id(name, path)
            scales = _crop_scales(params, source_id)
            tasks.append(
                _Task(
                    class_name=name,
                    group=group,
                    path=str(path),
                    source_id=source_id,
                    stem=path.stem,
                    flips=flips,
                    scales=tuple(scales[: len(flips)]),
                    size=params["size"],
                    crop_min=params["crop_min"],
                    out_dir=str(out_dir),
                )
            )
    return tasks, skipped


def _crop_scales(params: dict, source_id: str) -> list[float]:
    """Crop fraction of each flip variant, from a generator seeded by (seed, source id)."""
    rng = np.random.default_rng([params["seed"], zlib.crc32(source_id.encode("utf-8"))])
    return [float(s) for s in rng.uniform(params["crop_min"], params["crop_max"], size=len(FLIPS))]


def _output_name(task: _Task, flip: str) -> str:
    """Relative output path of one variant, e.g. normal/normal-cecum_0001_h.png."""
    return f"{task.group}/{task.class_name}_{task.stem}_{flip}.png"


def _process_task(task: _Task) -> dict[str, Any]:
    """Decode one source frame, write its variants as PNG (temp name + rename), return records."""
    result = {"path": task.path, "class_name": task.class_name, "group": task.group}
    result.update(source_id=task.source_id, error=None, records=[], arrays=[])
    try:
        image, extent = open_frame(task.path, task.size, task.crop_min)
    except UnusableImage as exc:
        result["error"] = str(exc)
        return result
    for flip, scale in zip(task.flips, task.scales, strict=True):
        array = apply_flip(crop_resize(image, scale, task.size, extent), flip)
        data = png_bytes(array)
        rel = _output_name(task, flip)
        _write_png(Path(task.out_dir) / rel, data)
        result["records"].append(
            {
                "file": rel,
                "flip": flip,
                "crop_scale": scale,
                "sha256": bytes_digest(data),
            }
        )
        result["arrays"].append(array)
    return result


def _write_png(path: Path, data: bytes) -> None:
    """Write bytes to a temporary name beside `path`, then rename (no half-written PNG; a failed
    write removes its temp file). One os.sync after all PNGs instead of an fsync each."""
    atomic.atomic_write_bytes(path, data, fsync=False)


def _require_usable(dirs: dict[str, Path], results: list[dict], skipped: list) -> None:
    """Every class must keep at least one usable frame."""
    for name, folder in dirs.items():
        if not any(r["class_name"] == name and not r["error"] for r in results):
            raise ValueError(
                f"class folder for {name!r} has no usable image: {folder} "
                f"({sum(1 for f, _ in skipped if Path(f).parent == folder)} file(s) skipped)"
            )


def _held_out_sources(results: list[dict], params: dict) -> set[str]:
    """Seeded choice of healthy source ids for the test split (per class, by source)."""
    held = set()
    for index, name in enumerate(HEALTHY_CLASSES):
        ids = sorted(r["source_id"] for r in results if r["class_name"] == name and not r["error"])
        n_test = int(math.floor(params["healthy_test_fraction"] * len(ids) + 0.5))
        rng = np.random.default_rng([params["seed"], _SPLIT_STREAM, index])
        held.update(ids[i] for i in rng.permutation(len(ids))[:n_test])
    return held


def _manifest_frame(results: list[dict], params: dict) -> pd.DataFrame:
    """One row per written PNG, grouped normal then polyps, in source and flip order."""
    held = _held_out_sources(results, params)
    rows = []
    for group in GROUPS:
        for r in results:
            if r["error"] or r["group"] != group:
                continue
            split = "test" if group == "polyps" or r["source_id"] in held else "train"
            for rec in r["records"]:
                rows.append(
                    {
                        "file": rec["file"],
                        "group": group,
                        "source_class": r["class_name"],
                        "source_file": r["path"],
                        "source_id": r["source_id"],
                        "flip": rec["flip"],
                        "crop_scale": rec["crop_scale"],
                        "split": split,
                        "sha256": rec["sha256"],
                    }
                )
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def _remove_strays(out_dir: Path, keep: set[str]) -> None:
    """Delete PNGs of earlier runs that this run did not write, and leftover temp files."""
    for group in GROUPS:
        for path in (out_dir / group).iterdir():
            rel = f"{group}/{path.name}"
            stray_png = path.suffix == ".png" and rel not in keep
            temp = path.name.startswith(".") and path.name.endswith(".tmp")
            if path.is_file() and (stray_png or temp):
                path.unlink(missing_ok=True)


def _sync_to_disk() -> None:
    """Flush written PNGs to disk before the manifest refers to them (POSIX only)."""
    if hasattr(os, "sync"):
        os.sync()


def _report_from_disk(
    out_dir: Path, stamp: dict, *, rebuilt: bool, seconds: float
) -> PreprocessReport:
    """Build the report from the manifest, skipped.csv and the stamp in `out_dir`."""
    frame = load_manifest(out_dir)
    skipped_frame = pd.read_csv(out_dir / SKIPPED_NAME, dtype=str, keep_default_na=False)
    old = read_stamp(out_dir) or stamp
    return PreprocessReport(
        out_dir=out_dir,
        counts=_counts(frame, old.get("counts", {}).get("raw", {})),
        skipped=list(skipped_frame.itertuples(index=False, name=None)),
        manifest=out_dir / "manifest.csv",
        rebuilt=rebuilt,
        seconds=seconds,
        params=dict(stamp["params"]),
    )


def _counts(frame: pd.DataFrame, raw: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Counts per class (files, sources, images) and per group/split."""
    splits = {f"{g}/{s}": 0 for g in GROUPS for s in SPLITS if not (g == "polyps" and s == "train")}
    for (group, split), n in frame.groupby(["group", "split"]).size().items():
        splits[f"{group}/{split}"] = int(n)
    sources = frame.groupby("source_class")["source_id"].nunique()
    images = frame.groupby("source_class").size()
    held = frame[(frame["group"] == "normal") & (frame["split"] == "test")]
    held_sources = held.groupby("source_class")["source_id"].nunique()
    return {
        "raw": {c: int(raw.get(c, 0)) for c in ALL_CLASSES},
        "sources": {c: int(sources.get(c, 0)) for c in ALL_CLASSES},
        "images": {c: int(images.get(c, 0)) for c in ALL_CLASSES},
        "splits": splits,
        "held_out_sources": {c: int(held_sources.get(c, 0)) for c in HEALTHY_CLASSES},
    }
