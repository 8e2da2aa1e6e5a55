"""Section 6 (notebook 05): images shown, prior samples, reconstruction grids, plateau, quality.

The prose around them is in helpers.narrative.reconstruction; `results` gathers the numbers the
notebook reports for `results/05.json`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from helpers.core.plots import show_grid
from helpers.data.processed import load_split, to_tensor
from helpers.evaluate import quality
from helpers.evaluate.metrics import plateau_check, recon_stats, sample_stats
from helpers.model.endovae import EndoVAE
from helpers.train.infer import decode_samples, reconstruct
from helpers.train.prior import LatentPrior
from helpers.train.trained import result_key

N_SAMPLES, GRID_SIDE = 9, 3  # generated images per model, shown as a 3 x 3 grid
PLATEAU_KEYS = {  # column of tables/plateau_check.csv -> key in results/05.json
    "KL per image (nats)": "kl_per_image",
    "sample spread": "sample_spread",
    "PSNR, held-out healthy (dB)": "psnr_healthy",
    "PSNR of the mean training image (dB)": "psnr_mean_image",
    "past the plateau": "past_plateau",
}


def healthy_images(processed: str | os.PathLike) -> tuple[np.ndarray, str]:
    """The held-out healthy images (the training ones when none were held out) and the split's name."""
    healthy, _ = load_split(processed, "normal", "test")
    if len(healthy):
        return healthy, "held-out test"
    healthy, _ = load_split(processed, "normal", "train")
    return healthy, "training"


def shown_images(processed: str | os.PathLike) -> tuple[np.ndarray, str, np.ndarray]:
    """Healthy images, their split's name and all polyps; an error when either group is empty."""
    healthy, split = healthy_images(processed)
    polyps, _ = load_split(processed, "polyps")
    if len(healthy) == 0 or len(polyps) == 0:
        raise ValueError(f"no healthy or no polyp images in {processed}; run notebook 01 first")
    return healthy, split, polyps


def prior_samples(models: dict[str, EndoVAE], sample_seed: int) -> dict[str, torch.Tensor]:
    """N_SAMPLES images decoded from the same seeded z ~ N(0, I) by every model."""
    return {label: decode_samples(m, N_SAMPLES, seed=sample_seed) for label, m in models.items()}


def plateau_table(
    models: dict[str, EndoVAE],
    states: dict[str, dict],
    samples: dict[str, torch.Tensor],
    healthy: np.ndarray,
    processed: str | os.PathLike,
    device: str | torch.device,
) -> pd.DataFrame:
    """Table S10: `metrics.plateau_check` per model (rows) on the shown healthy images."""
    train_images, _ = load_split(processed, "normal", "train")
    x_test = to_tensor(healthy)
    mean_image = to_tensor(train_images).mean(0, keepdim=True)
    checks = {}
    for label, model in models.items():
        history = pd.DataFrame(states[label]["history"])
        batch_size = states[label]["train_config"]["batch_size"]
        recon = reconstruct(model, x_test, device=device)
        checks[label] = plateau_check(
            history, batch_size, samples[label], x_test, recon, mean_image
        )
    return pd.DataFrame(checks).T


def plateau_display(checks: pd.DataFrame) -> pd.DataFrame:
    """Table S10 as shown: one column per model, numbers to three decimals (the verdict as is)."""
    shown = checks.T.astype(object)
    for name in shown.index:
        if name != "past the plateau":
            shown.loc[name] = [f"{float(v):.3f}" for v in shown.loc[name]]
    return shown


def sample_quality(
    models: dict[str, EndoVAE],
    processed: str | os.PathLike,
    fid_weights: str = "",
    sample_seed: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    priors: Mapping[str, LatentPrior] | None = None,
) -> pd.DataFrame:
    """Table S11: prior samples of each model against the held-out healthy frames; `priors`
    {label: fitted latent prior} adds a row "<label> model, fitted prior" per model (same eps).

    The feature extractor (helpers.evaluate.quality) learns from the healthy training frames and
    their Kvasir classes; the real frames are split into halves by source frame (the floor), and
    each model decodes as many samples as the reference half holds (the same z as Figures 5 and
    6, then more).
    """
    train, train_rows = load_split(processed, "normal", "train")
    real, rows = load_split(processed, "normal", "test")
    split = "held-out"
    if len(real) == 0:
        real, rows, split = train, train_rows, "training"
    extractor = quality.extractor_for(
        train, train_rows["source_class"].tolist(), fid_weights, seed, device
    )
    n = quality.frames_needed(len(real))
    samples = {sample_label(label, "standard"): decode_samples(m, n, seed=sample_seed)
               for label, m in models.items()}  # fmt: skip
    for label, prior in (priors or {}).items():
        samples[sample_label(label, "fitted")] = decode_samples(
            models[label], n, sample_seed, prior=prior
        )
    table = quality.quality_table(
        extractor, to_tensor(real), samples, seed=seed, groups=rows["source_id"].tolist()
    )
    table.attrs.update(
        real=f"{len(real)} {split} healthy frames", sources=rows["source_id"].nunique()
    )
    return table


def sample_label(label: str, prior: str) -> str:
    """Row name of a model's samples, drawn from N(0, I) ("standard") or its fitted prior."""
    return f"{label} model" + (", fitted prior" if prior == "fitted" else "")


def reconstruction_grid(
    models: dict[str, EndoVAE],
    images: np.ndarray,
    rng: np.random.Generator,
    n_show: int,
    path: str | os.PathLike,
    device: str | torch.device,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pick up to n_show images with `rng`, plot them above each model's reconstructions; return both."""
    pick = rng.choice(len(images), size=min(n_show, len(images)), replace=False)
    x = to_tensor(images[pick])
    recons = {label: reconstruct(m, x, device=device) for label, m in models.items()}
    row_labels = ["input", *(f"{label} model" for label in models)]
    show_grid(torch.cat([x, *recons.values()]), len(pick), path=path, row_labels=row_labels)
    return x, recons


def plateau_values(checks: pd.DataFrame) -> dict[str, dict]:
    """The plateau table as results/05.json holds it: per model key, PLATEAU_KEYS' values."""
    out = {}
    for label, row in checks.iterrows():
        values = {key: row[column] for column, key in PLATEAU_KEYS.items()}
        values["past_plateau"] = values["past_plateau"] == "yes"
        out[result_key(label)] = values
    return out


def results(
    checks: pd.DataFrame,
    samples: dict[str, torch.Tensor],
    real: torch.Tensor,
    shown: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]],
    healthy_split: str,
    sample_quality: pd.DataFrame | None = None,
) -> dict:
    """The numbers notebook 05 reports: plateau check, sample statistics, reconstructions, quality."""
    found = {} if sample_quality is None else {"quality": quality_values(sample_quality)}
    return found | {
        "plateau": plateau_values(checks),
        "samples": {result_key(k): v for k, v in sample_stats(samples, real).items()},
        "reconstructions": {
            group: {
                "n": len(x),
                "models": {result_key(k): v for k, v in recon_stats(x, recons).items()},
            }
            for group, (x, recons) in shown.items()
        },
        "healthy_split": healthy_split,
        "n_healthy": len(real),
    }


def quality_values(table: pd.DataFrame) -> dict:
    """Table S11 as results/05.json holds it (helpers.evaluate.quality.quality_results)."""
    return {**quality.quality_results(table), "real": table.attrs.get("real", "")}
