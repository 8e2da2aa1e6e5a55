"""Figures of notebook 01: raw frames beside their processed variants (Figure 1) and this run's
polyp frames beside real Kvasir ones. Only files preprocessing accepted are opened.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from PIL import Image

from helpers.core import atomic
from helpers.core.classes import HEALTHY_CLASSES
from helpers.data.images import FLIP_LABELS, FLIPS, crop_box, to_rgb
from helpers.data.kvasir import list_images
from helpers.data.processed import PRODUCER, accepted_sources, load_manifest

DATA_LABELS = {  # by DatasetSource.kind: "kvasir-v1/v2" only when verified (helpers.data.kvasir)
    "synthetic": "embedded Kvasir-like frames",
    "kvasir-v1": "Kvasir v1",
    "kvasir-v2": "Kvasir v2",
    "folder": "a folder or zip of Kvasir-style images, not verified as Kvasir v1 or v2",
}


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


def figure_1b_caption(kind: str) -> str:
    """The caption of Figure 1b for a data source of `kind` (DatasetSource.kind)."""
    return (
        "**Figure 1b:** Polyp frames of this run's data source "
        f"({DATA_LABELS.get(kind, DATA_LABELS['folder'])}, top) beside real Kvasir polyp frames "
        "(bottom)."
    )
