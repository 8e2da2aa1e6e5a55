"""Image-quality metrics (PSNR, SSIM), the report's tables and the posterior-collapse check.

PSNR and SSIM are computed per image on float tensors N x 3 x H x W in [0, 1] (data range 1).
SSIM uses the Wang et al. (2004) settings, which are also torchmetrics' defaults: an 11-tap
Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample) covariances,
the mean over the 'valid' region (no padding) and then over the RGB channels. scikit-image
with `gaussian_weights=True, sigma=1.5, use_sample_covariance=False` is the reference
(`psnr_skimage`, `ssim_skimage`); the torch versions agree with it to about 1e-6.

Means, standard deviations (ddof=1) and 95 % intervals come from helpers.core.stats.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from helpers.core import stats
from helpers.core.reference import ORIGINAL_METRICS
from helpers.core.similarity import as_float_pair, ssim
from helpers.data.kvasir import SYNTHETIC_STAMP, read_source_record
from helpers.data.processed import to_tensor
from helpers.train.infer import reconstruct

METRICS = ("psnr", "ssim")
METRIC_LABELS = {"psnr": "PSNR", "ssim": "SSIM"}


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (inf where the images are identical)."""
    x, y = as_float_pair(x, y)
    wide = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
    mse = (x.to(wide) - y.to(wide)).pow(2).flatten(1).mean(dim=1)
    return (10.0 * torch.log10(data_range**2 / mse)).float()


def _to_nhwc_numpy(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """N x C x H x W tensor (or NHWC array) -> float64 NHWC numpy array."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().double().permute(0, 2, 3, 1).numpy()
    return np.asarray(images, dtype=np.float64)


def psnr_skimage(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> np.ndarray:
    """Reference PSNR per image from skimage.metrics.peak_signal_noise_ratio."""
    a, b = _to_nhwc_numpy(x), _to_nhwc_numpy(y)
    with np.errstate(divide="ignore"):
        return np.array(
            [
                peak_signal_noise_ratio(i, j, data_range=data_range)
                for i, j in zip(a, b, strict=True)
            ]
        )


def ssim_skimage(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> np.ndarray:
    """Reference SSIM per image from skimage (Gaussian sigma 1.5, population covariance, RGB)."""
    a, b = _to_nhwc_numpy(x), _to_nhwc_numpy(y)
    return np.array(
        [
            structural_similarity(
                i,
                j,
                channel_axis=-1,
                data_range=data_range,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for i, j in zip(a, b, strict=True)
        ]
    )


def image_metrics(x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> pd.DataFrame:
    """PSNR and SSIM of each image pair (x: originals, y: reconstructions), in batches."""
    x, y = as_float_pair(x, y)
    rows = {"psnr": [], "ssim": []}
    for start in range(0, len(x), batch_size):
        a, b = x[start : start + batch_size], y[start : start + batch_size]
        rows["psnr"].append(psnr(a, b).cpu())
        rows["ssim"].append(ssim(a, b).cpu())
    return pd.DataFrame({k: torch.cat(v).numpy().astype(float) for k, v in rows.items()})


def _check_metric_columns(per_image: pd.DataFrame) -> None:
    """Error unless the per-image table has the psnr and ssim columns."""
    missing = [m for m in METRICS if m not in per_image.columns]
    if missing:
        raise ValueError(
            f"per-image table lacks column(s) {missing}; has {list(per_image.columns)}"
        )


def metrics_table(
    per_image: pd.DataFrame, extended: bool = False, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Rows PSNR and SSIM, columns Mean and Standard Deviation (ddof=1) (+ 95 % CI and n)."""
    _check_metric_columns(per_image)
    rows = {}
    for metric in METRICS:
        s = stats.summarize(per_image[metric], n_boot=n_boot, seed=seed)
        row = {"Mean": s["mean"], "Standard Deviation": s["std"]}
        if extended:
            row.update({"95 % CI low": s["ci_low"], "95 % CI high": s["ci_high"], "n": s["n"]})
        rows[METRIC_LABELS[metric]] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "Metric"
    return table


def extended_table(
    per_image: pd.DataFrame,
    group_cols: Sequence[str] = ("model", "images"),
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per group (e.g. model x image set): n, then mean, std (ddof=1) and 95 % CI per metric."""
    _check_metric_columns(per_image)
    group_cols = list(group_cols)
    records = []
    for keys, group in per_image.groupby(group_cols, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        record = dict(zip(group_cols, keys, strict=True))
        record["n"] = len(group)
        for metric in METRICS:
            s = stats.summarize(group[metric], n_boot=n_boot, seed=seed)
            label = METRIC_LABELS[metric]
            record[f"{label} mean"] = s["mean"]
            record[f"{label} std"] = s["std"]
            record[f"{label} CI low"] = s["ci_low"]
            record[f"{label} CI high"] = s["ci_high"]
        records.append(record)
    return pd.DataFrame.from_records(records)


# --- reconstruction evaluation (notebooks 05 and 06) -----------------------------------------

ALL_POLYPS = "polyps (all)"  # name of the every-polyp image set in per-image tables
EMBEDDED_MARKERS = ("kvasir-like", "kvasir_like", "synthetic")


def evaluate_reconstructions(
    model: torch.nn.Module,
    images_uint8: np.ndarray,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """PSNR and SSIM of each uint8 image against its reconstruction decoded from mu."""
    x = to_tensor(images_uint8)
    if len(x) == 0:
        return pd.DataFrame({"psnr": [], "ssim": []})
    recon = reconstruct(model, x, batch_size=batch_size, device=device)
    return image_metrics(x, recon, batch_size=batch_size)


def edge_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute horizontal + vertical pixel difference per image (lower = blurrier)."""
    x = images.float()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


def sample_stats(samples: dict[str, torch.Tensor], real: torch.Tensor) -> dict[str, dict]:
    """Per model: spread of its prior samples (mean per-pixel std) and their edge energy in % of real images'."""
    real_edges = float(edge_energy(real).mean())
    return {
        label: {
            "n": len(images),
            "spread": float(images.float().std(dim=0).mean()),
            "edge_share_pct": 100 * float(edge_energy(images).mean()) / real_edges,
        }
        for label, images in samples.items()
    }


def recon_stats(x: torch.Tensor, recons: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per model: mean absolute pixel error of its reconstructions and their edge energy in % of x's."""
    base = float(edge_energy(x).mean())
    return {
        label: {
            "mae": float((r - x).abs().mean()),
            "edge_share_pct": 100 * float(edge_energy(r).mean()) / base,
        }
        for label, r in recons.items()
    }


def with_original(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """Table 1/2 layout with the original report's mean and standard deviation beside ours."""
    if model not in ORIGINAL_METRICS:
        raise ValueError(f"model={model!r}: expected one of {', '.join(ORIGINAL_METRICS)}")
    out = table[["Mean", "Standard Deviation"]].copy()
    original = ORIGINAL_METRICS[model]
    out["Original Mean"] = [original[m][0] for m in out.index]
    out["Original Standard Deviation"] = [original[m][1] for m in out.index]
    return out


def data_is_embedded(manifest: pd.DataFrame, processed_dir: str | None = None) -> bool:
    """True when the processed images come from the embedded Kvasir-like set, not Kvasir.

    Notebook 01 records what it checked in `source.json`; older runs fall back to the file names.
    """
    record = read_source_record(processed_dir) if processed_dir is not None else None
    if record is not None:
        return record["kind"] == "synthetic"
    sources = manifest.get("source_file", pd.Series([], dtype=str)).astype(str)
    if sources.str.lower().str.contains("|".join(EMBEDDED_MARKERS), regex=True).any():
        return True
    folders = {Path(s).parent.parent for s in sources.head(200)}
    if processed_dir is not None:
        stamp = Path(processed_dir) / "preprocess.json"
        if stamp.is_file():
            dirs = json.loads(stamp.read_text()).get("class_dirs", {})
            folders |= {Path(d).parent for d in dirs.values()}
    return any((f / SYNTHETIC_STAMP).is_file() for f in folders)


def reconstruction_metrics(
    models: dict[str, torch.nn.Module],
    image_sets: dict[str, tuple[np.ndarray, pd.DataFrame]],
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Per-image PSNR/SSIM for every model x image set: columns model, images, file, psnr, ssim."""
    frames = []
    for label, model in models.items():
        for set_name, (images, rows) in image_sets.items():
            if len(images) != len(rows):
                raise ValueError(f"{set_name}: {len(images)} images but {len(rows)} manifest rows")
            if len(images) == 0:
                continue
            values = evaluate_reconstructions(model, images, batch_size, device)
            frames.append(values.assign(model=label, images=set_name, file=rows["file"].to_numpy()))
    if not frames:
        raise ValueError("no images to evaluate")
    return pd.concat(frames, ignore_index=True)[["model", "images", "file", "psnr", "ssim"]]


def model_values(per_image: pd.DataFrame, images: str, model: str, metric: str) -> np.ndarray:
    """Per-image values of one metric for one model on one image set, in file order."""
    rows = per_image[(per_image["images"] == images) & (per_image["model"] == model)]
    return rows.sort_values("file")[metric].to_numpy()


def paired_table(
    per_image: pd.DataFrame, a: str = "MSE", b: str = "BCE", n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Per image set and metric: mean of (a - b) on the same images with its 95 % bootstrap CI."""
    records = []
    for images in per_image["images"].unique():
        for metric in METRICS:
            va = model_values(per_image, images, a, metric)
            vb = model_values(per_image, images, b, metric)
            if len(va) == 0 or len(va) != len(vb):
                continue
            d = stats.paired_difference(va, vb, n_boot=n_boot, seed=seed)
            records.append(
                {
                    "images": images,
                    "metric": METRIC_LABELS[metric],
                    "n": d["n"],
                    f"mean {a} - {b}": d["mean"],
                    "CI low": d["ci_low"],
                    "CI high": d["ci_high"],
                    f"{a} higher (% of images)": 100 * d["share_a_better"],
                }
            )
    return pd.DataFrame.from_records(records)


def _mean_std_ci(row: pd.Series, label: str, digits: int) -> tuple[str, str]:
    """'mean ± std' and '[low, high]' strings of one metric in an extended-table row."""
    return (
        f"{row[f'{label} mean']:.{digits}f} ± {row[f'{label} std']:.{digits}f}",
        f"[{row[f'{label} CI low']:.{digits}f}, {row[f'{label} CI high']:.{digits}f}]",
    )


def format_extended(extended: pd.DataFrame) -> pd.DataFrame:
    """Compact display of Table 2b: mean ± std (ddof=1) and 95 % CI as text, PSNR in dB."""
    records = []
    for _, row in extended.iterrows():
        psnr_ms, psnr_ci = _mean_std_ci(row, "PSNR", 2)
        ssim_ms, ssim_ci = _mean_std_ci(row, "SSIM", 3)
        records.append(
            {
                "Model": row["model"],
                "Images": row["images"],
                "n": int(row["n"]),
                "PSNR (dB)": psnr_ms,
                "PSNR 95 % CI": psnr_ci,
                "SSIM": ssim_ms,
                "SSIM 95 % CI": ssim_ci,
            }
        )
    return pd.DataFrame.from_records(records).set_index("Model")


def format_paired(paired: pd.DataFrame, a: str = "MSE", b: str = "BCE") -> pd.DataFrame:
    """Compact display of the paired table: mean difference with its 95 % CI as text."""
    records = []
    for _, row in paired.iterrows():
        digits = 2 if row["metric"] == "PSNR" else 3
        records.append(
            {
                "Images": row["images"],
                "Metric": row["metric"],
                "n": int(row["n"]),
                f"Mean {a} - {b}": f"{row[f'mean {a} - {b}']:+.{digits}f}",
                "95 % CI": f"[{row['CI low']:+.{digits}f}, {row['CI high']:+.{digits}f}]",
                f"{a} higher": f"{row[f'{a} higher (% of images)']:.0f} %",
            }
        )
    return pd.DataFrame.from_records(records).set_index("Images")


# --- did training leave the posterior-collapse plateau? ---------------------------------------
PLATEAU_KL_PER_IMAGE = 5.0  # nats per image; a collapsed EndoVAE sits near 0
PLATEAU_SAMPLE_SPREAD = 0.05  # mean per-pixel std across decoded prior samples; collapsed ~0
PLATEAU_PSNR_GAIN_DB = 1.5  # held-out healthy PSNR at least this far above the mean image's
PLATEAU_BEAT_SHARE = 0.9  # share of held-out images, one by one, reconstructed better than the mean
COLLAPSED_KL_PER_IMAGE = 1.0  # nats per image: below this the latent code carries almost nothing


def beats_mean_share(x_test: torch.Tensor, recon_test: torch.Tensor, mean_image) -> float:
    """Share of images whose reconstruction has a higher PSNR than the mean image has for them
    (a model that paints one colour for every input beats it on few or none)."""
    model_db = psnr(recon_test, x_test)
    mean_db = psnr(mean_image.expand_as(x_test), x_test)
    return float((model_db > mean_db).float().mean())


def plateau_check(
    history: pd.DataFrame, batch_size: int, samples: torch.Tensor, x_test, recon_test, mean_image
) -> dict:
    """Did the model leave the plateau? KL per image, spread of prior samples, held-out PSNR
    gain over the mean training image and the share of images it beats one by one."""
    kl = float(history["kld"].iloc[-1]) / batch_size
    spread = float(samples.float().std(0).mean())
    model_db = float(psnr(recon_test, x_test).mean())
    mean_db = float(psnr(mean_image.expand_as(x_test), x_test).mean())
    share = beats_mean_share(x_test, recon_test, mean_image)
    trained = (
        kl >= PLATEAU_KL_PER_IMAGE
        and spread >= PLATEAU_SAMPLE_SPREAD
        and model_db - mean_db >= PLATEAU_PSNR_GAIN_DB
        and share >= PLATEAU_BEAT_SHARE
    )
    return {
        "KL per image (nats)": kl,
        "sample spread": spread,
        "PSNR, held-out healthy (dB)": model_db,
        "PSNR of the mean training image (dB)": mean_db,
        "PSNR gain (dB)": model_db - mean_db,
        "images beating the mean (%)": 100.0 * share,
        "past the plateau": "yes" if trained else "no",
    }
