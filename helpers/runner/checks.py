"""Checks a run plan passes before any notebook starts, one line per problem (exit 2):

- data-dependent parameters (n_eval_polyps, n_pairs, ...) against the data's counts: from notebook
  01's manifest when it already ran and is not part of this run, else from the data source itself
  (the embedded set: n_per_class; a folder or zip: its images per class, counted without
  extracting; a download: Kvasir's 500 or 1,000 per class). Before notebook 01 the counts are upper
  bounds (it skips unreadable frames), so a value is refused only when it cannot work;
- memory-sized parameters (batch sizes) against the memory of the device they run on;
- the expected time: a plan that would take more than a week is refused unless `--force`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from helpers.core import paths
from helpers.core.classes import NORMAL_GROUP, POLYP_CLASS, POLYP_GROUP
from helpers.core.runtime import get_device
from helpers.model.endovae import EndoVAE, EndoVAEConfig
from helpers.runner.budget import (
    FLIPS,
    healthy_split,
    healthy_train_images,
    source_class_counts,
)

try:  # a dependency of ipykernel, so normally present; /proc/meminfo otherwise
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

IMAGE_BYTES = 3 * 96 * 96  # one uint8 training image held on the device
# Training memory per image of a batch, as a multiple of the distinct layer outputs of one
# forward pass (7.0 MB per 96x96 image for the paper's EndoVAE). Measured (peak RSS, CPU fp32, one
# Adam step): 11.2 MB per image at batch 32-128, 10.0 MB at 128-512, i.e. 1.4-1.6x; 1.6 is kept.
TRAIN_FACTOR = 1.6
# Reconstruction (no gradients) per image: 4.1 MB measured at batch 256 and 1,024, i.e. 0.6x.
INFER_FACTOR = 0.6
MEMORY_BASE_BYTES = 512 * 2**20  # the model, optimiser state, the kernel and its libraries
WEEK_S = 7 * 24 * 3600  # longer than this is refused unless --force


# --- the data's counts ----------------------------------------------------------------------


@dataclass(frozen=True)
class DataCounts:
    """What the notebooks after 01 will find, and where the figures come from."""

    polyp_sources: int  # polyp source frames
    polyp_images: int  # polyp images (x4 with polyp_flips)
    healthy_train: int
    healthy_test: int
    where: str  # "the manifest of notebook 01" or "data_dir ..." (for the messages)


def predicted_counts(params: dict[str, Any]) -> DataCounts | None:
    """What notebook 01 will write from its data source (upper bounds: unusable frames drop out)."""
    found = source_class_counts(params)
    if found is None:
        return None
    counts, where = found
    train, test = healthy_split(counts, float(params.get("healthy_test_fraction", 0.1)))
    polyps = counts[POLYP_CLASS]
    return DataCounts(
        polyp_sources=polyps,
        polyp_images=polyps * (FLIPS if params.get("polyp_flips") else 1),
        healthy_train=train,
        healthy_test=test,
        where=where,
    )


def manifest_counts(manifest: Path) -> DataCounts | None:
    """The counts of notebook 01's processed set (None when it has none or it is unreadable)."""
    try:
        frame = pd.read_csv(manifest, usecols=["group", "split", "source_id"])
    except (OSError, ValueError):
        return None
    polyps, normal = frame[frame["group"] == POLYP_GROUP], frame[frame["group"] == NORMAL_GROUP]
    return DataCounts(
        polyp_sources=int(polyps["source_id"].nunique()),
        polyp_images=len(polyps),
        healthy_train=int((normal["split"] == "train").sum()),
        healthy_test=int((normal["split"] == "test").sum()),
        where=f"the processed set of notebook 01 ({paths.display_path(manifest.parent)})",
    )


def data_counts(
    selected: list[str], resolved: dict[str, dict[str, Any]], run_dir: Path
) -> DataCounts | None:
    """The counts the selected notebooks will see: predicted from the data source when notebook
    01 runs in this plan, else read from its manifest, else predicted from 01's parameters (when
    it has not run yet); None when none of them is known."""
    first = next((n for n in resolved if n.startswith("01")), None)
    if first is not None and first in selected:
        return predicted_counts(resolved[first])
    found = manifest_counts(paths.RunPaths(run_dir).manifest)
    if found is None and first is not None:
        return predicted_counts(resolved[first])
    return found


# --- data-dependent parameters --------------------------------------------------------------


def _fewer(params: dict[str, Any]) -> str:
    """The way out a notebook offers when it declares allow_fewer."""
    return ", or set allow_fewer True" if "allow_fewer" in params else ""


def pair_problems(name: str, params: dict[str, Any], data: DataCounts | None) -> list[str]:
    """Notebook 07's pairs: n_clf_train + n_clf_test within n_pairs, n_pairs within the sources."""
    pairs, train, test = (params.get(k) for k in ("n_pairs", "n_clf_train", "n_clf_test"))
    found = []
    if isinstance(train, int) and isinstance(test, int) and train + test > pairs:
        found.append(
            f"parameters n_clf_train={train} + n_clf_test={test} = {train + test} exceed "
            f"n_pairs={pairs} (notebook {name[:2]} splits the pairs into those two sets)"
        )
    sources = data.polyp_sources if data else pairs
    if pairs > sources and (not params.get("allow_fewer") or sources < 2):
        found.append(
            f"parameter n_pairs={pairs}: {data.where} has {sources} polyp source images "
            f"(notebook {name[:2]} needs at most that{_fewer(params)})"
        )
    return found


def notebook_data_problems(name: str, params: dict[str, Any], data: DataCounts | None) -> list[str]:
    """The values of one notebook that its data cannot satisfy."""
    found = pair_problems(name, params, data) if "n_pairs" in params else []
    if data is None:
        return found
    polyps = params.get("n_eval_polyps")
    if isinstance(polyps, int) and polyps > data.polyp_images and not params.get("allow_fewer"):
        found.append(
            f"parameter n_eval_polyps={polyps}: {data.where} has {data.polyp_images} polyp "
            f"images (notebook {name[:2]} needs at most that{_fewer(params)})"
        )
    if "polyp_train_share" in params and data.polyp_sources < 2:
        found.append(
            f"notebook {name[:2]} splits the polyp source images into a training pool and an "
            f"evaluation set: it needs 2 or more, {data.where} has {data.polyp_sources}"
        )
    if "polyp_train_share" in params and (data.healthy_train == 0 or data.healthy_test == 0):
        found.append(
            f"notebook {name[:2]} needs healthy training and held-out images: {data.where} has "
            f"{data.healthy_train} and {data.healthy_test} (raise healthy_test_fraction above 0 "
            "or use more images per class)"
        )
    return found


def data_problems(
    selected: list[str], resolved: dict[str, dict[str, Any]], run_dir: Path
) -> list[str]:
    """Every data-dependent value of the selected notebooks that cannot work, one line each."""
    data = data_counts(selected, resolved, run_dir)
    found: list[str] = []
    for name in selected:
        found += [p for p in notebook_data_problems(name, resolved[name], data) if p not in found]
    return found


# --- memory ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def activation_bytes_per_image(config: EndoVAEConfig | None = None) -> int:
    """Bytes of the distinct layer outputs of one EndoVAE forward pass on one image (fp32),
    traced on the meta device (shapes only, nothing computed)."""
    with torch.device("meta"):
        model = EndoVAE(config or EndoVAEConfig())
    cfg, seen = model.config, {}

    def record(_module, _inputs, output) -> None:
        """Note each output tensor once (an in-place ReLU returns its input)."""
        for t in output if isinstance(output, tuple) else (output,):
            seen[id(t)] = (t, t.numel() * t.element_size())

    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, cfg.in_channels, cfg.in_size, cfg.in_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(size for _, size in seen.values())


def available_bytes(device: torch.device) -> int | None:
    """Free memory of the device: the GPU's (CUDA), else the machine's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            fields = dict(line.split(":", 1) for line in fh)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


# parameter names of each kind of batch: (batch size, cap on its images, needs gradients)
BATCHES = (
    ("batch_size", "max_train_images", True),  # 03, 04 (06 has batch_size without epochs)
    ("abl_batch_size", "abl_max_train_images", True),  # 08
    ("gen_batch_size", None, True),  # 09
)


def batch_of(
    params: dict[str, Any], n_train: int, n_eval: int
) -> tuple[str, int, int, bool] | None:
    """(parameter, images per batch, images held, trains) of a notebook; None without batches."""
    for size, cap, trains in BATCHES:
        if size not in params or not isinstance(params[size], int):
            continue
        if size == "batch_size" and "epochs" not in params:  # notebook 06: reconstruction only
            return size, min(params[size], n_eval), 0, False
        images = min(int(params.get(cap) or n_train), n_train) if cap else n_train
        return size, min(params[size], images), images, trains
    return None


def memory_problem(params: dict[str, Any], n_train: int, n_eval: int, free_of: dict) -> str | None:
    """Why a notebook's batch does not fit the memory of its device (None when it does);
    `free_of` keeps each device's free memory, read once per plan."""
    batch = batch_of(params, n_train, n_eval)
    if batch is None:
        return None
    size, per_batch, held, trains = batch
    try:
        device = get_device(str(params.get("device", "auto")))
    except (ValueError, RuntimeError, AssertionError):
        return None  # plan.validate names the device
    if str(device) not in free_of:
        free_of[str(device)] = available_bytes(device)
    free = free_of[str(device)]
    per_image = activation_bytes_per_image() * (TRAIN_FACTOR if trains else INFER_FACTOR)
    need = MEMORY_BASE_BYTES + held * IMAGE_BYTES + per_batch * per_image
    if free is None or need <= free:
        return None
    fits = max(0, int((free - MEMORY_BASE_BYTES - held * IMAGE_BYTES) // per_image))
    work = "training" if trains else "reconstruction"
    return (
        f"parameter {size}={params[size]}: a {work} batch of {per_batch:,} images needs about "
        f"{need / 2**30:.1f} GiB, the {device.type} has {free / 2**30:.1f} GiB free "
        f"(use {size} <= {fits:,}"
    )


def memory_problems(
    chosen: dict[str, dict[str, Any]], run_dir: Path, resolved: dict[str, dict] | None = None
) -> list[str]:
    """The batches of the `chosen` notebooks that do not fit in memory, one line each (naming
    every notebook with it); `resolved`: every notebook's values (notebook 01's data)."""
    data = data_counts(list(chosen), resolved or chosen, run_dir)
    n_train, n_eval = training_images(chosen, run_dir, data), evaluated_images(chosen, data)
    found: dict[str, list[str]] = {}
    free_of: dict[str, int | None] = {}
    for name, params in chosen.items():
        text = memory_problem(params, n_train, n_eval, free_of)
        if text:
            found.setdefault(text, []).append(name[:2])
    return [f"{text}; notebook{'s' * (len(n) > 1)} {', '.join(n)})" for text, n in found.items()]


def training_images(
    chosen: dict[str, dict[str, Any]], run_dir: Path, data: DataCounts | None
) -> int:
    """Healthy training images of the run (the data's counts, else the budget's estimate)."""
    if data is not None:
        return data.healthy_train
    first = next(iter(chosen.values()), {})
    return healthy_train_images(first, paths.RunPaths(run_dir).processed)


def evaluated_images(chosen: dict[str, dict[str, Any]], data: DataCounts | None) -> int:
    """The largest image set notebook 06 reconstructs in batches."""
    if data is None:
        return max((int(p.get("batch_size", 0)) for p in chosen.values()), default=0)
    return max(data.polyp_images, data.healthy_train, data.healthy_test)


def timing_parameters(
    chosen: dict[str, dict[str, Any]], run_dir: Path, resolved: dict[str, dict] | None = None
) -> dict[str, dict]:
    """`chosen` with each training batch no larger than the images it is drawn from (a batch of
    100,000 over 16 images is a batch of 16: that is what the budget should time)."""
    data = data_counts(list(chosen), resolved or chosen, run_dir)
    n_train, out = training_images(chosen, run_dir, data), {}
    for name, params in chosen.items():
        batch = batch_of(params, n_train, evaluated_images(chosen, data))
        out[name] = dict(params)
        if batch is not None and batch[0] == "batch_size" and batch[3]:
            out[name]["batch_size"] = max(1, batch[1])
    return out


# --- expected time --------------------------------------------------------------------------


def time_problem(seconds: float, limit: float = WEEK_S) -> str | None:
    """Why a plan's expected time (`seconds`, helpers.runner.budget.estimate) is absurd (more
    than `limit` seconds), or None."""
    if seconds <= limit:
        return None
    return (
        f"expected time: about {seconds / 86400:,.0f} days on this device (more than "
        f"{limit / 86400:g} days): lower epochs or the training images, or add --force to "
        "start it anyway"
    )
