"""How long a run will take, estimated before it starts from the measured training speed.

EndoVAE training dominates every profile, so the estimate is (training images of each notebook) /
(images/s measured for the chosen precision) plus a fixed allowance for the rest of each notebook.
With notebooks side by side (helpers.core.lanes) the speed is measured at one lane's thread count and
the notebooks are laid out on the lanes in the order the runner starts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from helpers.core.classes import HEALTHY_CLASSES
from helpers.core.lanes import makespan, threads_per_job, upstream
from helpers.core.paths import RunPaths
from helpers.core.runtime import PrecisionChoice, get_device
from helpers.train.fit import measure_images_per_s, training_precision

# Seconds each notebook spends besides EndoVAE training (quick profile, 2-core AVX2 CPU).
OTHER_SECONDS = {
    "01": 10,
    "02": 12,
    "03": 8,
    "04": 8,
    "05": 15,
    "06": 20,
    "07": 30,
    "08": 30,
    "09": 75,
}
DEFAULT_OTHER_SECONDS = 20
REPORT_SECONDS = 20  # merging the executed notebooks and two xelatex passes
# The rest of a notebook on a lane with fewer threads (imports and plots use one core anyway).
LANE_SLOWDOWN = 1.3
KVASIR_V1_PER_CLASS = 500
FLIPS = 4


def healthy_train_images(params: dict[str, Any], processed: Path) -> int:
    """Healthy training images: from notebook 01's manifest when it exists, else estimated."""
    manifest = processed / "manifest.csv"
    if manifest.is_file():
        frame = pd.read_csv(manifest, usecols=["group", "split"])
        return int(((frame["group"] == "normal") & (frame["split"] == "train")).sum())
    embedded = not str(params.get("data_dir", "")).strip()
    per_class = int(params.get("n_per_class", 60)) if embedded else KVASIR_V1_PER_CLASS
    share = 1.0 - float(params.get("healthy_test_fraction", 0.1))
    return int(len(HEALTHY_CLASSES) * per_class * FLIPS * share)


def ablation_arms(params: dict[str, Any]) -> int:
    """Number of ablation arms notebook 08 trains (baseline, latent sizes, betas, mask, polyps)."""
    latents = [v for v in str(params.get("latent_dims", "")).split(",") if v.strip()]
    betas = [v for v in str(params.get("betas", "")).split(",") if v.strip()]
    others = sum(int(v) != 6 for v in latents) + sum(float(v) != 1.0 for v in betas)
    return 1 + others + 2


def training_images(number: str, params: dict[str, Any], n_train: int) -> int:
    """EndoVAE training images (epochs x images) a notebook processes."""
    if "abl_epochs" in params:
        per_arm = min(int(params.get("abl_max_train_images") or n_train), n_train)
        return ablation_arms(params) * int(params["abl_epochs"]) * per_arm
    if "gen_epochs" in params:  # 09: the polyp EndoVAE on its share of polyp frames (4 flips)
        polyps = n_train / (
            len(HEALTHY_CLASSES) * (1.0 - float(params.get("healthy_test_fraction", 0.1)))
        )
        return int(params["gen_epochs"] * polyps * float(params.get("polyp_train_share", 0.5)))
    if number in ("03", "04") and "epochs" in params:
        cap = int(params.get("max_train_images") or n_train)
        return int(params["epochs"]) * min(cap, n_train)
    return 0


def estimate_seconds(
    notebooks: dict[str, dict[str, Any]],
    images_per_s: float,
    processed: Path,
    report: bool,
    jobs: int = 1,
) -> tuple[float, int]:
    """(expected seconds, training images) for notebooks {name: parameters} on `jobs` lanes."""
    first = next(iter(notebooks.values()), {})
    n_train = healthy_train_images(first | notebooks.get("01_preprocessing", {}), processed)
    slowdown = LANE_SLOWDOWN if jobs > 1 else 1.0
    images, seconds = {}, {}
    for name, params in notebooks.items():
        images[name] = training_images(name[:2], params, n_train)
        other = OTHER_SECONDS.get(name[:2], DEFAULT_OTHER_SECONDS) * slowdown
        seconds[name] = images[name] / images_per_s + other
    wall = makespan(seconds, jobs, lambda name: upstream(name, list(notebooks)))
    return wall + (REPORT_SECONDS if report else 0), sum(images.values())


def current_speed(choice: PrecisionChoice, device: torch.device, batch: int) -> float:
    """Images/s of the chosen path now: a cached figure may come from a faster hour of a shared
    machine (this one's speed drifted by a third within a day), so it is timed again (~2 s)."""
    if choice.fresh and choice.label in choice.speeds:
        return choice.speeds[choice.label]
    return measure_images_per_s(choice.precision, device, batch)


def expected_time(
    chosen: dict[str, dict[str, Any]], run_dir: Path, report: bool, jobs: int = 1
) -> str:
    """One line: the run's expected time, from the training speed measured on this machine
    (with `jobs` notebooks side by side: at one lane's thread count, which the notebooks reuse).

    `chosen` maps each notebook to run to every parameter it will run with.
    """
    processed = RunPaths(run_dir).processed
    trainer = next((p for p in chosen.values() if "precision" in p and "epochs" in p), None)
    if trainer is None:
        seconds, _ = estimate_seconds(chosen, 1.0, processed, report, jobs)
        return f"expected time: about {seconds / 60:.1f} min (no EndoVAE training)"
    device = get_device(str(trainer.get("device", "auto")))
    batch = int(trainer.get("batch_size", 128))
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(threads_per_job(jobs))
    try:
        choice = training_precision(device, str(trainer.get("precision", "auto")), batch)
        speed = current_speed(choice, device, batch)
    finally:
        torch.set_num_threads(threads)
    seconds, images = estimate_seconds(chosen, speed, processed, report, jobs)
    lanes = f"{jobs} notebooks side by side, " if jobs > 1 else ""
    return (
        f"expected time: about {seconds / 60:.1f} min ({lanes}{images:,} EndoVAE training images "
        f"at {speed:,.1f} img/s timed now, {choice.describe()}; plus the rest of each notebook)"
    )
