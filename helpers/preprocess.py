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

import hashlib
import io
import json
import math
import os
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from helpers import atomic
from helpers.kvasir import ALL_CLASSES, HEALTHY_CLASSES, POLYP_CLASS, list_images
from helpers.pool import process_pool

PIPELINE_VERSION = 1
FLIPS = ("none", "h", "v", "hv")
FLIP_LABELS = {"none": "as is", "h": "left-right", "v": "top-bottom", "hv": "both ways"}
GROUPS = ("normal", "polyps")
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
SKIPPED_NAME = "skipped.csv"
PRODUCER = "run notebooks/01_preprocessing.ipynb first"
# Decoding keeps at least this many times the target size before the final Lanczos resize.
OVERSAMPLE = 2.0
# zlib level 1: ~2.5x faster than the default 6 on 96x96 frames, files ~7 % larger (lossless).
PNG_COMPRESS_LEVEL = 1
_SPLIT_STREAM = 0x5E1
_CACHE_SAMPLE_ROWS = 64


class UnusableImage(ValueError):
    """A source file that cannot become a training image (the message is the reason)."""


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
    parent_pid: int


# --- small public building blocks ---------------------------------------------------------------


def group_of(class_name: str) -> str:
    """Output group of a Kvasir class: "normal" for the healthy classes, "polyps" for polyps."""
    if class_name == POLYP_CLASS:
        return "polyps"
    if class_name in HEALTHY_CLASSES:
        return "normal"
    raise ValueError(f"class {class_name!r}: expected one of {', '.join(ALL_CLASSES)}")


def apply_flip(array: np.ndarray, flip: str) -> np.ndarray:
    """Flip an H x W x C array: "none", "h" (left-right), "v" (up-down) or "hv" (both)."""
    if flip not in FLIPS:
        raise ValueError(f"flip={flip!r}: expected one of {', '.join(FLIPS)}")
    if "h" in flip:
        array = array[:, ::-1]
    if "v" in flip:
        array = array[::-1]
    return np.ascontiguousarray(array)


def crop_box(content: tuple[float, float], scale: float) -> tuple[float, float, float, float]:
    """Centred box covering `scale` of both sides of a (width, height) area (float coords)."""
    width, height = content
    bw, bh = width * scale, height * scale
    return ((width - bw) / 2, (height - bh) / 2, (width + bw) / 2, (height + bh) / 2)


def crop_resize(
    image: Image.Image, scale: float, size: int, content: tuple[float, float] | None = None
) -> np.ndarray:
    """Centre crop `scale` of each side and Lanczos-resize to size x size; uint8 H x W x 3."""
    content = content or (float(image.width), float(image.height))
    out = image.resize((size, size), Image.Resampling.LANCZOS, box=crop_box(content, scale))
    return np.asarray(out, dtype=np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any usable PIL mode to 8-bit RGB (16-bit scaled, alpha composited on black)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.float64)
        if mode == "I" and values.max(initial=0) <= 255:
            values = values * 257.0  # 8-bit values stored in a 32-bit container
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        raise UnusableImage("unsupported floating-point image (mode F)")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")


def open_frame(
    path: str | os.PathLike, size: int, crop_min: float
) -> tuple[Image.Image, tuple[float, float]]:
    """Decode a frame as RGB at >= OVERSAMPLE x the final crop size; return it and its extent.

    JPEGs are decoded at 1/2..1/8 scale when that still leaves enough pixels (Image.draft);
    other formats are box-reduced by an integer factor. The extent (width, height) is the
    area the full frame covers in the returned image (fractional after reduction).
    Raises UnusableImage with the reason for files that cannot be used.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if min(width, height) < size:
                raise UnusableImage(f"too small: {width}x{height} px (need >= {size} px a side)")
            need = math.ceil(OVERSAMPLE * size / crop_min)
            extent = (float(width), float(height))
            if image.format == "JPEG":
                drafted = image.draft(None, (need, need))
                if drafted is not None:
                    extent = (float(drafted[1][2]), float(drafted[1][3]))
            image.load()
            rgb = to_rgb(image)
            factor = int(min(extent) // need)
            if factor >= 2:
                rgb = rgb.reduce(factor)
                extent = (extent[0] / factor, extent[1] / factor)
            return rgb, extent
    except UnusableImage:
        raise
    except FileNotFoundError:
        raise
    except Exception as exc:  # decoders raise many types on corrupt data; all mean "unusable"
        raise UnusableImage(_decode_reason(exc)) from exc


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 H x W x 3 array as lossless PNG (fast zlib level)."""
    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def to_tensor(images_uint8: np.ndarray):
    """uint8 N x H x W x 3 array -> torch.FloatTensor N x 3 x H x W in [0, 1]."""
    import torch

    array = np.asarray(images_uint8)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(
            f"images_uint8: expected uint8 N x H x W x 3, got {array.dtype} {tuple(array.shape)}"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


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
    results = _run_tasks(tasks, workers, progress)
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
        _write_cache(out_dir, group, images, frame)
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
    """Check that the four Kvasir classes are given and each folder holds files."""
    if not isinstance(class_dirs, Mapping):
        raise ValueError(
            f"class_dirs: expected a dict {{class: folder}}, got {type(class_dirs).__name__}"
        )
    missing = [c for c in ALL_CLASSES if c not in class_dirs]
    extra = [c for c in class_dirs if c not in ALL_CLASSES]
    if missing or extra:
        raise ValueError(
            f"class_dirs: expected exactly the classes {', '.join(ALL_CLASSES)}"
            f" (missing: {missing or 'none'}, unexpected: {extra or 'none'})"
        )
    dirs = {}
    for name in ALL_CLASSES:
        folder = Path(class_dirs[name]).expanduser().resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"class folder for {name!r} not found: {folder}")
        if not _list_sources(folder):
            raise ValueError(f"class folder for {name!r} holds no image files: {folder}")
        dirs[name] = folder
    return dirs


def _list_sources(folder: Path) -> list[Path]:
    """Image files directly in `folder` (helpers.kvasir.list_images: by suffix, sorted)."""
    return list_images(folder)


def _stamp(params: dict, dirs: dict[str, Path], listing: dict[str, list[Path]]) -> dict[str, Any]:
    """Parameters plus a digest of every input file's name, size and mtime."""
    digest = hashlib.sha256()
    for name in ALL_CLASSES:
        digest.update(f"{name}\0{dirs[name]}\n".encode())
        for path in listing[name]:
            st = path.stat()
            digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {
        "version": PIPELINE_VERSION,
        "params": params,
        "class_dirs": {name: str(folder) for name, folder in dirs.items()},
        "inputs_sha256": digest.hexdigest(),
    }


def _stamp_key(stamp: Mapping[str, Any]) -> tuple:
    """The parts of a stamp that decide whether outputs are current."""
    return (
        stamp.get("version"),
        json.dumps(stamp.get("params"), sort_keys=True),
        json.dumps(stamp.get("class_dirs"), sort_keys=True),
        stamp.get("inputs_sha256"),
    )


def _read_stamp(out_dir: Path) -> dict[str, Any] | None:
    """The stamp of the last complete run in `out_dir`, or None."""
    try:
        return json.loads((out_dir / STAMP_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _up_to_date(out_dir: Path, stamp: dict[str, Any]) -> bool:
    """True when the last complete run used the same inputs and parameters and its PNGs exist."""
    old = _read_stamp(out_dir)
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
    for name in ALL_CLASSES:
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
                    parent_pid=os.getpid(),
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
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
        result["arrays"].append(array)
    return result


def _write_png(path: Path, data: bytes) -> None:
    """Write bytes to a temporary name beside `path`, then rename (no half-written PNG)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _process_chunk(tasks: Sequence[_Task]) -> list[dict[str, Any]]:
    """Worker entry point: process tasks in order; stop if the parent process has died."""
    results = []
    for task in tasks:
        if os.getppid() != task.parent_pid and os.getpid() != task.parent_pid:
            raise SystemExit("parent process is gone; stopping")
        results.append(_process_task(task))
    return results


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """Consecutive slices of `items` of length `size` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run_tasks(tasks: list[_Task], workers: int, progress: bool) -> list[dict[str, Any]]:
    """Process all tasks (in parallel when worthwhile) with a tqdm bar; results in task order."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="preprocess", unit="frame", disable=not progress)
    try:
        if workers <= 1 or len(tasks) < 4 * workers:
            results = []
            for task in tasks:
                results.append(_process_task(task))
                bar.update(1)
            return results
        chunk = max(1, min(32, math.ceil(len(tasks) / (workers * 8))))
        pieces = list(_chunks(tasks, chunk))
        out: list[list[dict[str, Any]] | None] = [None] * len(pieces)
        with process_pool(workers) as pool:
            futures = {pool.submit(_process_chunk, piece): i for i, piece in enumerate(pieces)}
            for future in as_completed(futures):
                out[futures[future]] = future.result()
                bar.update(len(pieces[futures[future]]))
        return [r for part in out for r in part]
    finally:
        bar.close()


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
    old = _read_stamp(out_dir) or stamp
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


# --- caches and loading ------------------------------------------------------------------------


def _group_fingerprint(frame: pd.DataFrame, group: str) -> str:
    """Digest of the PNG hashes of one group, in manifest order."""
    hashes = frame.loc[frame["group"] == group, "sha256"].astype(str)
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def _sample_digest(images: np.ndarray) -> str:
    """Digest of up to 64 evenly spaced rows of a cache (cheap content check)."""
    n = len(images)
    rows = np.unique(np.linspace(0, n - 1, min(n, _CACHE_SAMPLE_ROWS)).astype(int)) if n else []
    digest = hashlib.sha256(str(images.shape).encode())
    for i in rows:
        digest.update(np.ascontiguousarray(images[i]).tobytes())
    return digest.hexdigest()


def _write_cache(out_dir: Path, group: str, images: np.ndarray, frame: pd.DataFrame) -> None:
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
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"{path} does not match its manifest sha256; {PRODUCER}")
        with Image.open(io.BytesIO(data)) as image:
            arrays.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
    if arrays:
        images = np.stack(arrays)
    else:
        size = int(_read_stamp(out_dir)["params"]["size"])
        images = np.zeros((0, size, size, 3), np.uint8)
    _write_cache(out_dir, group, images, frame)
    return images


def load_manifest(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The manifest of a complete preprocessing run in `out_dir` (one row per PNG)."""
    out_dir = Path(out_dir)
    path = out_dir / "manifest.csv"
    if not path.is_file() or _read_stamp(out_dir) is None:
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


# --- figures for notebook 01 --------------------------------------------------------------------


def _thumbnail(path: str | os.PathLike, longest: int = 320) -> np.ndarray:
    """A raw frame as RGB uint8, shrunk so its longest side is at most `longest` (for display)."""
    with Image.open(path) as image:
        image.draft("RGB", (longest, longest))
        rgb = to_rgb(image)
        rgb.thumbnail((longest, longest), Image.Resampling.LANCZOS)
        return np.asarray(rgb)


def _raw_view(path: str | os.PathLike, longest: int = 320) -> tuple[np.ndarray, tuple] | None:
    """A raw frame's thumbnail and full (width, height), or None when it cannot be read."""
    try:
        with Image.open(path) as original:
            size = original.size
        return _thumbnail(path, longest), size
    except Exception:  # decoders raise many types on bad data; a figure just leaves it out
        return None


def _spread(items: Sequence[Any], n: int) -> list[Any]:
    """`items` reordered: n evenly spaced ones first, then the rest (fallbacks) in order."""
    if not items:
        return []
    first = np.unique(np.linspace(0, len(items) - 1, min(n, len(items))).astype(int)).tolist()
    chosen = set(first)
    return [items[i] for i in first] + [x for i, x in enumerate(items) if i not in chosen]


def _thumbnails(files: Sequence[Path], n: int, longest: int) -> list[np.ndarray]:
    """Up to n thumbnails of evenly spread files, skipping any file that cannot be read."""
    out = []
    for path in _spread(files, n):
        if len(out) == n:
            break
        view = _raw_view(path, longest)
        if view is not None:
            out.append(view[0])
    return out


def accepted_sources(out_dir: str | os.PathLike, group: str = "polyps") -> list[Path]:
    """Source files that preprocessing accepted for `group` (from the manifest), sorted."""
    _check_group_split(group, None)
    frame = load_manifest(out_dir)
    return sorted({Path(f) for f in frame.loc[frame["group"] == group, "source_file"]})


def _source_candidates(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Per healthy class, its accepted source ids: training sources first."""
    picks = {}
    for name in HEALTHY_CLASSES:
        rows = frame[(frame["source_class"] == name) & (frame["group"] == "normal")]
        ordered = pd.concat([rows[rows["split"] == "train"], rows[rows["split"] != "train"]])
        picks[name] = list(dict.fromkeys(ordered["source_id"].astype(str)))
    return picks


def _pick_sources(frame: pd.DataFrame, n: int) -> list[tuple[str, tuple]]:
    """One readable accepted source per healthy class (up to n): (source id, raw view)."""
    picked = []
    for ids in _source_candidates(frame).values():
        for source_id in ids:
            file = frame.loc[frame["source_id"] == source_id, "source_file"].iloc[0]
            view = _raw_view(file)
            if view is not None:
                picked.append((source_id, view))
                break
    return picked[:n]


def plot_before_after(out_dir: str | os.PathLike, n_sources: int = 3, path=None):
    """Report Figure 1: raw frames (crop of the unflipped variant drawn) and their 4 variants.

    Only source files that preprocessing accepted (the manifest) are opened.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    frame = load_manifest(out_dir)
    sources = _pick_sources(frame, n_sources)
    if not sources:
        raise FileNotFoundError(f"no readable healthy source frame listed in {out_dir}; {PRODUCER}")
    fig, axes = plt.subplots(
        len(sources),
        1 + len(FLIPS),
        figsize=(11, 2.35 * len(sources)),
        gridspec_kw={"width_ratios": [1.35] + [1] * len(FLIPS)},
        squeeze=False,
    )
    for row_axes, (source_id, (raw, (width, height))) in zip(axes, sources, strict=True):
        rows = frame[frame["source_id"] == source_id].set_index("flip")
        ax = row_axes[0]
        ax.imshow(raw)
        box = crop_box((raw.shape[1], raw.shape[0]), float(rows.loc["none", "crop_scale"]))
        ax.add_patch(
            Rectangle(
                box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="yellow", lw=1.2, ls="--"
            )
        )
        ax.set_title(f"raw {width}x{height}", fontsize=9)
        ax.set_ylabel(source_id.split("/")[0], fontsize=9)
        for ax, flip in zip(row_axes[1:], FLIPS, strict=True):
            with Image.open(Path(out_dir) / rows.loc[flip, "file"]) as image:
                ax.imshow(np.asarray(image.convert("RGB")))
            label = FLIP_LABELS[flip]
            ax.set_title(f"{label}, crop {rows.loc[flip, 'crop_scale']:.0%}", fontsize=9)
        for ax in row_axes:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    _save(fig, path)
    return fig


def _data_polyp_files(data_polyps: str | os.PathLike, out_dir) -> list[Path]:
    """This run's raw polyp files: those preprocessing accepted when `out_dir` is given."""
    files = list_images(data_polyps)
    if out_dir is None:
        return files
    accepted = set(accepted_sources(out_dir, "polyps"))
    return [f for f in files if f.resolve() in accepted]


def plot_sources_vs_real(
    data_polyps: str | os.PathLike,
    real_polyps: str | os.PathLike | None,
    n: int = 6,
    path=None,
    *,
    out_dir: str | os.PathLike | None = None,
):
    """Supplementary figure: raw polyp frames of this run (top) beside real Kvasir ones (bottom).

    With `out_dir` (the preprocessed folder) only frames preprocessing accepted are opened;
    without it, unreadable files are left out. When `real_polyps` is None or holds no
    images, the bottom row says so instead.
    """
    import matplotlib.pyplot as plt

    real = list_images(real_polyps) if real_polyps and Path(real_polyps).is_dir() else []
    rows = [_thumbnails(_data_polyp_files(data_polyps, out_dir), n, 240), _thumbnails(real, n, 240)]
    if not rows[0]:
        raise FileNotFoundError(f"no readable image files in {data_polyps}")
    cols = max(n, *(len(r) for r in rows))
    fig, axes = plt.subplots(2, cols, figsize=(1.9 * cols, 3.6), squeeze=False)
    for row_axes, images, label in zip(axes, rows, ("this run's data", "real Kvasir"), strict=True):
        for i, ax in enumerate(row_axes):
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if i < len(images):
                ax.imshow(images[i])
        row_axes[0].set_ylabel(label, fontsize=9)
    fig.tight_layout()
    if not rows[1]:
        fig.text(0.5, 0.25, "no real Kvasir frames given", ha="center", fontsize=9)
    _save(fig, path)
    return fig


def _save(fig, path) -> None:
    """Save a figure as PNG atomically when `path` is given."""
    if path is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
        atomic.atomic_write_bytes(path, buffer.getvalue())


def _decode_reason(exc: BaseException) -> str:
    """A short human reason for a decoding failure."""
    message = str(exc).strip() or type(exc).__name__
    if type(exc).__name__ == "UnidentifiedImageError":
        return "not an image PIL can read (unknown or broken format)"
    if "truncated" in message.lower():
        return f"truncated image ({message})"
    return f"cannot decode ({type(exc).__name__}: {message})"
