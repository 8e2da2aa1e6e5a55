"""Notebook 06's protocol: the evaluated images, the per-image PSNR/SSIM table and Tables 1 to 2c.

Tables 1 and 2 follow the original report (`n_eval_polyps` seeded random polyps, mean and sample
standard deviation); Table 2b (`metrics.extended_table`) and 2c (`metrics.paired_table`) add
every polyp, the healthy images and bootstrap intervals. `results` gathers the numbers the
report quotes for `results/06.json`. The prose is in helpers.narrative.reconstruction.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import torch

from helpers.core.atomic import atomic_write_csv
from helpers.core.paths import RunPaths
from helpers.data.processed import load_split, seeded_positions
from helpers.evaluate import metrics
from helpers.evaluate.metrics import ALL_POLYPS, METRIC_LABELS, METRICS
from helpers.model.endovae import EndoVAE
from helpers.train.trained import result_key

HEALTHY_SETS = {"healthy (held-out)": "test", "healthy (train)": "train"}  # set name: split
TRAIN_SET = "healthy (train)"
TABLE_FILES = {"MSE": "table1_mse.csv", "BCE": "table2_bce.csv"}  # Tables 1 and 2


def image_sets(
    processed: str | os.PathLike, n_eval_train: int = 0, seed: int = 0
) -> dict[str, tuple[np.ndarray, pd.DataFrame]]:
    """Every polyp, then the held-out and the training healthy images, with their manifest rows;
    `n_eval_train` > 0 keeps that many seeded random training images (enough for the gap)."""
    sets = {ALL_POLYPS: load_split(processed, "polyps")}
    sets.update(
        {name: load_split(processed, "normal", split) for name, split in HEALTHY_SETS.items()}
    )
    images, rows = sets[TRAIN_SET]
    if 0 < n_eval_train < len(images):
        keep = seeded_positions(len(images), n_eval_train, seed)
        sets[TRAIN_SET] = (images[keep], rows.iloc[keep].reset_index(drop=True))
    return sets


def eval_pick(
    n_polyps: int, n_eval_polyps: int, allow_fewer: bool, seed: int, processed: str | os.PathLike
) -> np.ndarray:
    """Sorted positions of the seeded random polyps of Tables 1 and 2 (all, if allowed, when too few)."""
    if n_polyps < n_eval_polyps:
        message = f"n_eval_polyps={n_eval_polyps}: only {n_polyps} polyp images in {processed}"
        if not allow_fewer:
            raise ValueError(message + " (set allow_fewer=True to evaluate all of them)")
        warnings.warn(message + "; allow_fewer=True, so all of them are evaluated", stacklevel=2)
    n_eval = min(n_eval_polyps, n_polyps)
    return seeded_positions(n_polyps, n_eval, seed)


def eval_set_name(n_eval: int) -> str:
    """Name of the evaluated polyps in per-image tables: "polyps (50 random)"."""
    return f"polyps ({n_eval} random)"


def healthy_present(sets: dict[str, tuple[np.ndarray, pd.DataFrame]]) -> list[str]:
    """The healthy image sets that hold at least one image."""
    return [name for name in HEALTHY_SETS if len(sets[name][0])]


def per_image_table(
    models: dict[str, EndoVAE],
    sets: dict[str, tuple[np.ndarray, pd.DataFrame]],
    pick: np.ndarray,
    eval_set: str,
    batch_size: int,
    device: str | torch.device,
) -> pd.DataFrame:
    """PSNR/SSIM per model and image, with the picked polyps repeated first as set `eval_set`."""
    per_image = metrics.reconstruction_metrics(models, sets, batch_size=batch_size, device=device)
    chosen = set(sets[ALL_POLYPS][1]["file"].iloc[pick])
    eval_rows = per_image[(per_image["images"] == ALL_POLYPS) & per_image["file"].isin(chosen)]
    return pd.concat([eval_rows.assign(images=eval_set), per_image], ignore_index=True)


def original_tables(per_image: pd.DataFrame, eval_set: str) -> dict[str, pd.DataFrame]:
    """Tables 1 and 2: each model's mean and std on `eval_set`, the original report's beside."""
    tables = {}
    for label in per_image["model"].unique():
        rows = per_image[(per_image["model"] == label) & (per_image["images"] == eval_set)]
        tables[label] = metrics.with_original(metrics.metrics_table(rows), label.lower())
    return tables


def save_tables(
    paths: RunPaths,
    per_image: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    extended: pd.DataFrame,
    paired: pd.DataFrame,
) -> list[str]:
    """Write the per-image values and Tables 1, 2, 2b and 2c as CSV; return the file names."""
    files = {"metrics_per_image.csv": (per_image, False)}
    files.update({TABLE_FILES[label]: (table, True) for label, table in tables.items()})
    files["table2b_extended.csv"] = (extended, False)
    files["paired_mse_vs_bce.csv"] = (paired, False)
    for name, (frame, index) in files.items():
        atomic_write_csv(paths.tables / name, frame, index=index)
    return list(files)


def _summary(row: pd.Series, label: str) -> dict[str, float]:
    """Mean, std and 95 % CI of one metric in a Table 2b row."""
    keys = {"mean": "mean", "std": "std", "ci_low": "CI low", "ci_high": "CI high"}
    return {key: row[f"{label} {column}"] for key, column in keys.items()}


def results(tables: dict[str, pd.DataFrame], extended: pd.DataFrame, paired: pd.DataFrame) -> dict:
    """The numbers of Tables 1, 2 ("models"), 2b ("extended") and 2c ("paired") by model key."""
    models = {
        result_key(label): {
            metric: {
                "mean": table.loc[METRIC_LABELS[metric], "Mean"],
                "std": table.loc[METRIC_LABELS[metric], "Standard Deviation"],
            }
            for metric in METRICS
        }
        for label, table in tables.items()
    }
    wide = {}
    for _, row in extended.iterrows():
        entry = {"n": row["n"], **{m: _summary(row, METRIC_LABELS[m]) for m in METRICS}}
        wide.setdefault(result_key(row["model"]), {})[row["images"]] = entry
    pairs = {}
    diff = next(c for c in paired.columns if c.startswith("mean "))
    share = next(c for c in paired.columns if c.endswith("(% of images)"))
    for _, row in paired.iterrows():
        pairs.setdefault(row["images"], {})[row["metric"].lower()] = {
            "n": row["n"],
            "mean_mse_minus_bce": row[diff],
            "ci_low": row["CI low"],
            "ci_high": row["CI high"],
            "mse_higher_pct": row[share],
        }
    return {"models": models, "extended": wide, "paired": pairs}
