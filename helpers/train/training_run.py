"""The shared work of notebooks 03 and 04: one EndoVAE trained with one reconstruction loss.

Loads the healthy training images (optionally a seeded subset), trains (or resumes), and builds
Table S7 (settings beside the original report's), the loss figure (Figures 3 and 4) and the
final-loss table (Tables S8 and S9). The prose around them is in helpers.narrative.training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.core.atomic import atomic_write_csv
from helpers.core.paths import RunPaths
from helpers.core.plots import plot_loss_curves
from helpers.core.reference import (
    ORIGINAL_BATCH,
    ORIGINAL_EPOCHS,
    ORIGINAL_LATENT_DIM,
    ORIGINAL_LOSSES,
    ORIGINAL_LR,
    ORIGINAL_TRAIN_IMAGES,
    PAPER_EPOCHS,
)
from helpers.core.results import write_results
from helpers.data.processed import load_images, seeded_positions
from helpers.model.endovae import HE_LOGVAR_BIAS, EndoVAEConfig
from helpers.train.fit import TrainConfig, TrainResult, fit

FIGURE_FILES = {"mse": "fig03_loss_mse.png", "bce": "fig04_loss_bce.png"}
NOTEBOOKS = {"mse": "03", "bce": "04"}  # the notebook that trains each model
TERMS = ("recon", "kld", "total")


def training_images(processed, max_train_images: int, seed: int) -> np.ndarray:
    """The healthy training images of notebook 01; at most `max_train_images` (seeded; 0 = all)."""
    images = load_images(processed, "normal", split="train")
    if max_train_images and max_train_images < len(images):
        images = images[seeded_positions(len(images), max_train_images, seed)]
    return images


INIT_LABELS = {
    "pytorch": "PyTorch's defaults",
    "he": f"He-normal decoder, log-variance bias {HE_LOGVAR_BIAS:g}",
}


def lr_label(config: TrainConfig) -> str:
    """The learning rate and its schedule, as Table S7 gives it."""
    if config.lr_cooldown <= 0:
        return f"{config.lr:g}"
    return f"{config.lr:g}, falling linearly to 0 over the last {config.lr_cooldown:.0%} of steps"


def settings_table(config: TrainConfig, n_images: int, precision: str, device: str) -> pd.DataFrame:
    """Table S7: training settings of the original report and of this run."""
    frames = ORIGINAL_TRAIN_IMAGES // 4
    original = [
        "Adam", f"{ORIGINAL_LR:g}", f"{ORIGINAL_BATCH}", f"{ORIGINAL_EPOCHS:,} (paper: {PAPER_EPOCHS:,})",
        f"{ORIGINAL_TRAIN_IMAGES:,} ({frames:,} healthy frames x 4 flips)", "MSE, then BCE",
        f"{ORIGINAL_LATENT_DIM}", "not stated", "not stated",
    ]  # fmt: skip
    this_run = [
        "Adam", lr_label(config), f"{config.batch_size}", f"{config.epochs:,}", f"{n_images:,}",
        config.loss.upper(), f"{EndoVAEConfig().latent_dim}", INIT_LABELS[config.init],
        f"{precision} on {device}",
    ]  # fmt: skip
    index = [
        "optimiser", "learning rate", "batch size", "epochs", "training images",
        "reconstruction loss", "latent_dim", "weight init", "precision, device",
    ]  # fmt: skip
    return pd.DataFrame({"original report": original, "this run": this_run}, index=index)


def train(
    images: np.ndarray, config: TrainConfig, paths: RunPaths, dev, resume: bool
) -> TrainResult:
    """Train (or resume, or load) the model of `config.loss`, with checkpoint and history."""
    return fit(
        images, config, checkpoint_path=paths.checkpoint(config.loss),
        history_path=paths.history(config.loss), device=dev, resume=resume,
        desc=f"EndoVAE {config.loss.upper()}",
    )  # fmt: skip


def loss_figure(history: pd.DataFrame, paths: RunPaths, loss: str):
    """Figure 3 / 4: the loss terms per epoch (saved as PNG)."""
    return plot_loss_curves(
        history,
        path=paths.figures / FIGURE_FILES[loss],
        recon_label=f"{loss.upper()} (reconstruction)",
    )


def final_loss_table(history: pd.DataFrame, loss: str, batch_size: int) -> pd.DataFrame:
    """Tables S8 / S9: final loss terms of this run and the original, per batch and per image."""
    last = history.iloc[-1]
    original = {**ORIGINAL_LOSSES[loss]["final"]}
    original["total"] = sum(original.values())
    columns = {
        f"this run, per batch of {batch_size}": [last[k] for k in TERMS],
        "this run, per image": [last[k] / batch_size for k in TERMS],
        f"original, per batch of {ORIGINAL_BATCH}": [original[k] for k in TERMS],
        "original, per image": [original[k] / ORIGINAL_BATCH for k in TERMS],
    }
    return pd.DataFrame(
        columns, index=[f"{loss.upper()} (reconstruction)", "KL divergence", "total"]
    )


def entropy_floor(images: np.ndarray) -> float:
    """Mean binary entropy of the pixel values (nats): the lowest BCE any model can reach."""
    levels = np.arange(256) / 255.0
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nan_to_num(levels * np.log(levels) + (1 - levels) * np.log(1 - levels))
    return float((np.bincount(images.ravel(), minlength=256) * entropy).sum() / images.size)


def save_outputs(paths: RunPaths, loss: str, final: pd.DataFrame, history: pd.DataFrame) -> None:
    """Write the final-loss table and the results, and print where the notebook's files are."""
    atomic_write_csv(paths.tables / f"final_loss_{loss}.csv", final, index=True)
    per_image = final["this run, per image"]
    results = {
        "epochs": len(history),
        "final_per_image": {term: per_image.iloc[i] for i, term in enumerate(TERMS)},
        "images_per_s": history["images_per_s"].median(),
        "seconds": history["seconds"].sum(),
    }
    write_results(paths.root, NOTEBOOKS[loss], results)
    print(f"checkpoint: {paths.checkpoint(loss)}")
    print(f"history:    {paths.history(loss)}")
    print(f"figure:     {paths.figures / FIGURE_FILES[loss]}")
