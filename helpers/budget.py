"""How long a run will take, estimated before it starts from the measured training speed.

EndoVAE training dominates every profile, so the estimate is (training images of each notebook) /
(images/s measured for the chosen precision) plus a fixed allowance for the rest of each notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from helpers.classes import HEALTHY_CLASSES
from helpers.paths import RunPaths
from helpers.runtime import get_device
from helpers.train import measure_images_per_s, training_precision

# Seconds each notebook spends besides EndoVAE training (quick profile, 2-core AVX2 CPU).
OTHER_SECONDS = {
    "01": 15,
    "02": 8,
    "03": 5,
    "04": 5,
    "05": 10,
    "06": 30,
    "07": 45,
    "08": 25,
    "09": 60,
}
DEFAULT_OTHER_SECONDS = 20
REPORT_SECONDS = 25  # merging the executed notebooks and xelatex
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
    notebooks: dict[str, dict[str, Any]], images_per_s: float, processed: Path, report: bool
) -> tuple[float, int]:
    """(expected seconds, training images) for notebooks {name: parameters}."""
    first = next(iter(notebooks.values()), {})
    n_train = healthy_train_images(first | notebooks.get("01_preprocessing", {}), processed)
    images = sum(training_images(n[:2], p, n_train) for n, p in notebooks.items())
    other = sum(OTHER_SECONDS.get(n[:2], DEFAULT_OTHER_SECONDS) for n in notebooks)
    return images / images_per_s + other + (REPORT_SECONDS if report else 0), images


def expected_time(chosen: dict[str, dict[str, Any]], run_dir: Path, report: bool) -> str:
    """One line: the run's expected time, from the training speed measured on this machine.

    `chosen` maps each notebook to run to every parameter it will run with.
    """
    processed = RunPaths(run_dir).processed
    trainer = next((p for p in chosen.values() if "precision" in p and "epochs" in p), None)
    if trainer is None:
        seconds, _ = estimate_seconds(chosen, 1.0, processed, report)
        return f"expected time: about {seconds / 60:.1f} min (no EndoVAE training)"
    device = get_device(str(trainer.get("device", "auto")))
    batch = int(trainer.get("batch_size", 128))
    choice = training_precision(device, str(trainer.get("precision", "auto")), batch)
    speed = choice.speeds.get(choice.label) or measure_images_per_s(choice.precision, device, batch)
    seconds, images = estimate_seconds(chosen, speed, processed, report)
    return (
        f"expected time: about {seconds / 60:.1f} min ({images:,} EndoVAE training images at "
        f"{speed:,.1f} img/s, {choice.describe()}; plus the rest of each notebook)"
    )
