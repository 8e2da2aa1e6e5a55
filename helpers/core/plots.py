"""Figure helpers shared by the notebooks: image grids, loss curves (one model or several), ROC curves."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from helpers.core.atomic import atomic_path


def to_chw_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Images as float N x 3 x H x W in [0, 1] (accepts uint8 NHWC arrays or float tensors)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.permute(0, 3, 1, 2)
    return images.detach().float().cpu().clamp(0, 1)


def grid_image(images: np.ndarray | torch.Tensor, nrow: int, padding: int = 2) -> np.ndarray:
    """One H x W x 3 float array tiling the images, `nrow` per row (torchvision's make_grid)."""
    grid = make_grid(to_chw_float(images), nrow=nrow, padding=padding, pad_value=1.0)
    return grid.permute(1, 2, 0).numpy()


def save_figure(fig: plt.Figure, path: str | os.PathLike | None, dpi: int = 150) -> None:
    """Save a figure (PNG unless `path` names another format) atomically when `path` is given:
    complete or absent, a disk error is a WriteError naming the file."""
    if path is not None:
        kind = Path(path).suffix.lstrip(".").lower() or "png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=kind)


def show_grid(
    images: np.ndarray | torch.Tensor,
    nrow: int,
    title: str = "",
    path: str | os.PathLike | None = None,
    row_labels: Sequence[str] = (),
    scale: float = 1.2,
) -> plt.Figure:
    """Plot images as a grid (optionally labelling rows) and save it to `path`."""
    grid = grid_image(images, nrow)
    n_rows = int(np.ceil(len(to_chw_float(images)) / nrow))
    fig, ax = plt.subplots(figsize=(scale * nrow + (1.2 if row_labels else 0), scale * n_rows))
    ax.imshow(grid)
    ax.set_xticks([])
    ax.set_yticks([])
    if row_labels:
        step = grid.shape[0] / n_rows
        ax.set_yticks([step * (i + 0.5) for i in range(len(row_labels))], list(row_labels))
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title)
    save_figure(fig, path)
    return fig


def plot_loss_curves(
    history,
    title: str = "",
    path: str | os.PathLike | None = None,
    recon_label: str = "reconstruction",
) -> plt.Figure:
    """Plot reconstruction, KLD and total loss per epoch (history: DataFrame from training)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, column, label in zip(
        axes, ("recon", "kld", "total"), (recon_label, "KL divergence", "total"), strict=True
    ):
        ax.plot(
            history["epoch"], history[column], lw=1.5, marker="o" if len(history) <= 20 else None
        )
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss per batch (sum)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    title: str = "",
    path: str | os.PathLike | None = None,
) -> plt.Figure:
    """Plot ROC curves: {label: (fpr, tpr, auc)}, with the chance diagonal."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, lw=1.8, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_histories(
    histories: Mapping[str, pd.DataFrame], title: str = "", path: str | os.PathLike | None = None
):
    """Reconstruction, KLD and total loss per epoch of several arms, one line per arm."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    names = (
        ("recon", "reconstruction (MSE)"),
        ("kld", "KL divergence"),
        ("total", "total = recon + β·KLD"),
    )
    for ax, (column, label) in zip(axes, names, strict=True):
        for arm_label, hist in histories.items():
            ax.plot(hist["epoch"], hist[column], marker="o", ms=3, lw=1.5, label=arm_label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss per batch (sum)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        values = pd.concat([h[column] for h in histories.values()])
        if (values > 0).all() and values.max() > 100 * values.min():
            ax.set_yscale("log")  # e.g. the KLD of a small beta spans orders of magnitude
            label += " (log scale)"
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def sample_rows(samples: Mapping[str, torch.Tensor], n_show: int) -> tuple[torch.Tensor, list[str]]:
    """Stack the first n_show samples of each arm into one grid batch, with row labels."""
    labels = list(samples)
    shown = [samples[k][:n_show] for k in labels]
    if any(len(s) < n_show for s in shown):
        raise ValueError(f"every arm needs at least {n_show} samples")
    return torch.cat(shown), labels
