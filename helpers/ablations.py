"""The experiments of notebook 08: ablations that test the original report's open hypotheses.

Every arm is an EndoVAE trained with the MSE loss on the same data, seed and budget (the same
number of epochs over the same number of images); arms differ in one setting from the shared
baseline (latent 6, beta 1, artifacts kept, healthy images only):

    latent<d>   latent size d instead of 6
    beta<b>     loss = recon + b * KLD instead of b = 1
    masked      burnt-in text strip and position box blacked out (training and evaluation)
    polyps      a seeded share of the polyp source frames (4 flips each) mixed into training

Healthy metrics use the held-out "test" split of notebook 01 (disjoint from training by source
frame); polyp metrics use the polyp frames that no arm saw (`polyp_pool_split`). Intervals are
95 % percentile bootstraps over images (the AUC intervals resample source frames).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from helpers.atomic import atomic_write_text
from helpers.metrics import PLATEAU_KL_PER_IMAGE, image_metrics, paired_difference, summarize

BASELINE = "baseline"
BASE_LATENT = 6
BASE_BETA = 1.0
STUDIES = ("baseline", "latent", "beta", "artifacts", "polyps")
HEALTHY_TEST = "healthy (held-out)"
HEALTHY_TRAIN = "healthy (training)"
POLYPS_EVAL = "polyps (unseen)"
ANOMALY_SCORES = ("mse", "kld", "elbo")
SCORE_LABELS = {
    "mse": "reconstruction MSE",
    "kld": "KL divergence",
    "elbo": "MSE sum + KLD (ELBO-like)",
}
SHORT_SCORES = {"mse": "MSE", "kld": "KLD", "elbo": "MSE sum + KLD"}
# Artifact mask in the unflipped frame, as fractions of the image side (Kvasir's 720x576
# layout after the 90-100 % centre crop): the text strip on the left margin above the box
# row, and the endoscope-position box in the bottom-left corner.
MASK_SPLIT_ROW = 0.66  # rows [0, 0.66) carry text, rows [0.66, 1) the position box
MASK_TEXT_WIDTH = 0.22  # text strip: columns [0, 0.22)
MASK_BOX_WIDTH = 0.36  # position box: columns [0, 0.36)
GREEN_CORNER = 20  # side in pixels of the corner square the green-box detector looks at
GREEN_THRESHOLD = 0.025  # G must exceed R and B by this much (pixel values in [0, 1])
CORNERS = ("bl", "br", "tl", "tr")
FLIP_CODES = ("none", "h", "v", "hv")
_POOL_STREAM = 0xAB1
_SUBSET_STREAM = 0xAB2
_MIX_STREAM = 0xAB3


# --- parameters and arms -----------------------------------------------------------------------


def parse_list(text: str, name: str, kind: type = float) -> list:
    """Parse a comma-separated parameter such as "6,32,128"; errors name the parameter."""
    example = "6,32,128" if kind is int else "0.1,1,4"
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}={text!r}: expected comma-separated numbers, e.g. {example!r}")
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = kind(part)
        except ValueError:
            raise ValueError(
                f"{name}={text!r}: {part!r} is not {'an integer' if kind is int else 'a number'}"
                f" (expected e.g. {example!r})"
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"{name}={text!r}: {part!r} is not finite")
        values.append(value)
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={text!r}: values repeat")
    return values


def validate_params(**params: Any) -> None:
    """Check the notebook's scalar parameters (by name); raise ValueError naming the bad one."""
    minimum = {
        "abl_epochs": 1,
        "abl_batch_size": 1,
        "abl_max_train_images": 0,
        "abl_n_samples": 8,
        "abl_checkpoint_every": 0,
        "n_boot": 100,
    }
    for name, value in params.items():
        if name in minimum:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum[name]:
                raise ValueError(f"{name}={value!r}: expected an integer >= {minimum[name]}")
        elif name == "polyp_train_share":
            if not isinstance(value, int | float) or not 0 < value < 1:
                raise ValueError(f"{name}={value!r}: expected a number strictly between 0 and 1")
        elif name == "abl_lr":
            if not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r}: expected a positive number")
        else:
            raise ValueError(f"unknown parameter {name!r}")


@dataclass(frozen=True)
class Arm:
    """One training configuration of the ablation study."""

    name: str
    study: str
    latent_dim: int = BASE_LATENT
    beta: float = BASE_BETA
    mask: bool = False
    polyps: bool = False

    def __post_init__(self) -> None:
        """Validate the study name and the settings."""
        if self.study not in STUDIES:
            raise ValueError(f"study={self.study!r}: expected one of {', '.join(STUDIES)}")
        if isinstance(self.latent_dim, bool) or int(self.latent_dim) != self.latent_dim:
            raise ValueError(f"latent_dim={self.latent_dim!r}: expected an integer >= 1")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim={self.latent_dim!r}: expected an integer >= 1")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta={self.beta!r}: expected a finite number >= 0")

    @property
    def label(self) -> str:
        """Short human label: what differs from the baseline."""
        if self.study == "latent":
            return f"latent {self.latent_dim}"
        if self.study == "beta":
            return f"β = {self.beta:g}"
        if self.study == "artifacts":
            return "artifacts masked"
        if self.study == "polyps":
            return "healthy + polyps"
        return f"baseline (latent {self.latent_dim}, β = {self.beta:g})"

    def label_in(self, study: str) -> str:
        """Label of this arm in the table of `study` (the baseline named by that study's knob)."""
        if self.name != BASELINE:
            return self.label
        return {
            "latent": f"latent {self.latent_dim} (baseline)",
            "beta": f"β = {self.beta:g} (baseline)",
            "artifacts": "artifacts kept (baseline)",
            "polyps": "healthy only (baseline)",
        }.get(study, self.label)


def make_arms(latent_dims: Sequence[int], betas: Sequence[float]) -> list[Arm]:
    """The baseline, one arm per other latent size and beta, the masked and the polyp arm."""
    arms = [Arm(BASELINE, "baseline")]
    for d in latent_dims:
        if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1:
            raise ValueError(f"latent_dims: {d!r} is not an integer >= 1")
        if d != BASE_LATENT:
            arms.append(Arm(f"latent{d}", "latent", latent_dim=int(d)))
    for b in betas:
        if not (math.isfinite(b) and b >= 0):
            raise ValueError(f"betas: {b!r} is not a finite number >= 0")
        if b != BASE_BETA:
            arms.append(Arm(f"beta{b:g}", "beta", beta=float(b)))
    arms.append(Arm("masked", "artifacts", mask=True))
    arms.append(Arm("polyps", "polyps", polyps=True))
    return arms


def study_arms(arms: Sequence[Arm], study: str) -> list[Arm]:
    """The baseline and the arms of one study, ordered by the studied setting."""
    chosen = [a for a in arms if a.study == study or a.name == BASELINE]
    key = {"latent": lambda a: a.latent_dim, "beta": lambda a: a.beta}.get(study)
    return sorted(chosen, key=key) if key else chosen


def arm_by_name(arms: Sequence[Arm], name: str) -> Arm:
    """The arm called `name` (KeyError naming the known arms otherwise)."""
    for arm in arms:
        if arm.name == name:
            return arm
    raise KeyError(f"no arm {name!r}; arms: {', '.join(a.name for a in arms)}")


# --- splits ------------------------------------------------------------------------------------


def assert_disjoint_sources(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    """Raise ValueError when two manifest subsets share a source frame (source_id)."""
    for frame in (a, b):
        if "source_id" not in frame.columns:
            raise ValueError(f"{what}: manifest rows lack the 'source_id' column")
    shared = sorted(set(a["source_id"]) & set(b["source_id"]))
    if shared:
        raise ValueError(
            f"{what}: {len(shared)} source frame(s) on both sides, e.g. {shared[0]!r}; "
            "rerun notebook 01 (its split is by source frame)"
        )


def polyp_pool_split(
    manifest: pd.DataFrame, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split polyp rows by source frame: (pool positions usable for training, eval positions)."""
    if not 0 < share < 1:
        raise ValueError(f"polyp_train_share={share!r}: expected a number strictly between 0 and 1")
    if "source_id" not in manifest.columns:
        raise ValueError("polyp manifest rows lack the 'source_id' column")
    sources = np.array(sorted(set(manifest["source_id"])))
    if len(sources) < 2:
        raise ValueError(
            f"need at least 2 polyp source frames to split into pool and evaluation set, "
            f"found {len(sources)}"
        )
    n_pool = min(len(sources) - 1, max(1, int(math.floor(share * len(sources) + 0.5))))
    order = np.random.default_rng([seed, _POOL_STREAM]).permutation(len(sources))
    pool_sources = set(sources[order[:n_pool]])
    in_pool = manifest["source_id"].isin(pool_sources).to_numpy()
    return np.flatnonzero(in_pool), np.flatnonzero(~in_pool)


def flipped_variants(images: np.ndarray, rows: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """The 4 flips (none, h, v, hv) of each source's unflipped image, with their manifest rows."""
    from helpers.preprocess import apply_flip

    base = rows.reset_index(drop=True)
    keep = base.index[base["flip"] == "none"].to_numpy()
    missing = set(base["source_id"]) - set(base.loc[keep, "source_id"])
    if missing:
        raise ValueError(
            f"{len(missing)} source frame(s) without an unflipped image, e.g. {sorted(missing)[0]!r}"
        )
    out_images, out_rows = [], []
    for i in keep:
        for flip in FLIP_CODES:
            out_images.append(apply_flip(images[i], flip))
            out_rows.append({**base.loc[i].to_dict(), "flip": flip})
    return np.stack(out_images), pd.DataFrame(out_rows)


def _seeded_subset(n: int, k: int, seed: int, stream: int) -> np.ndarray:
    """Sorted positions of k of n items, chosen with a seeded generator."""
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.choice(n, size=k, replace=False))


@dataclass
class AblationData:
    """The image sets every arm uses (uint8 N x 96 x 96 x 3 with their manifest rows)."""

    healthy_train: np.ndarray
    healthy_train_rows: pd.DataFrame
    healthy_test: np.ndarray
    healthy_test_rows: pd.DataFrame
    polyp_pool: np.ndarray
    polyp_pool_rows: pd.DataFrame
    polyp_eval: np.ndarray
    polyp_eval_rows: pd.DataFrame
    n_healthy_train_all: int

    @property
    def n_train(self) -> int:
        """Images per epoch of every arm."""
        return len(self.healthy_train)

    def counts(self) -> dict[str, int]:
        """Image and source counts of each set."""
        out = {}
        for key in ("healthy_train", "healthy_test", "polyp_pool", "polyp_eval"):
            rows = getattr(self, f"{key}_rows")
            out[f"{key}_images"] = len(rows)
            out[f"{key}_sources"] = int(rows["source_id"].nunique())
        return out


def load_ablation_data(
    processed_dir: str | os.PathLike, *, polyp_share: float, seed: int, max_train_images: int
) -> AblationData:
    """Load notebook 01's images; subsample healthy training images; split polyps by source."""
    from helpers.preprocess import load_split

    train, train_rows = load_split(processed_dir, "normal", "train")
    test, test_rows = load_split(processed_dir, "normal", "test")
    polyps, polyp_rows = load_split(processed_dir, "polyps")
    if len(train) == 0:
        raise ValueError(f"no healthy training images in {processed_dir}; rerun notebook 01")
    if len(test) == 0:
        raise ValueError(
            f"no held-out healthy images in {processed_dir}: notebook 01 ran with "
            "healthy_test_fraction=0; rerun it with a held-out share (e.g. 0.1)"
        )
    assert_disjoint_sources(train_rows, test_rows, "healthy training vs held-out images")
    n_all = len(train)
    if 0 < max_train_images < n_all:
        pick = _seeded_subset(n_all, max_train_images, seed, _SUBSET_STREAM)
        train, train_rows = train[pick], train_rows.iloc[pick].reset_index(drop=True)
    pool_idx, eval_idx = polyp_pool_split(polyp_rows, polyp_share, seed)
    pool, pool_rows = flipped_variants(polyps[pool_idx], polyp_rows.iloc[pool_idx])
    eval_rows = polyp_rows.iloc[eval_idx].reset_index(drop=True)
    assert_disjoint_sources(pool_rows, eval_rows, "polyp training pool vs evaluation polyps")
    return AblationData(
        train, train_rows, test, test_rows, pool, pool_rows, polyps[eval_idx], eval_rows, n_all
    )


# --- artifacts ---------------------------------------------------------------------------------


def artifact_mask(flip: str = "none", size: int = 96) -> np.ndarray:
    """Boolean size x size mask of the text strip and position box, mirrored like the image."""
    if flip not in FLIP_CODES:
        raise ValueError(f"flip={flip!r}: expected one of {', '.join(FLIP_CODES)}")
    mask = np.zeros((size, size), dtype=bool)
    split = int(round(MASK_SPLIT_ROW * size))
    mask[:split, : int(round(MASK_TEXT_WIDTH * size))] = True
    mask[split:, : int(round(MASK_BOX_WIDTH * size))] = True
    if "h" in flip:
        mask = mask[:, ::-1]
    if "v" in flip:
        mask = mask[::-1]
    return np.ascontiguousarray(mask)


def _flip_list(flips: str | Sequence[str], n: int) -> list[str]:
    """One flip code per image (a single code applies to all)."""
    if isinstance(flips, str):
        return [flips] * n
    flips = [str(f) for f in flips]
    if len(flips) != n:
        raise ValueError(f"flips: got {len(flips)} codes for {n} images")
    return flips


def mask_artifacts(images: np.ndarray | torch.Tensor, flips: str | Sequence[str] = "none"):
    """A copy of the images with the artifact regions set to 0 (uint8 NHWC or float NCHW)."""
    n = len(images)
    flips = _flip_list(flips, n)
    is_tensor = isinstance(images, torch.Tensor)
    if images.ndim != 4:
        raise ValueError(f"images: expected 4 dimensions, got shape {tuple(images.shape)}")
    channels_first = is_tensor and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3)
    size = images.shape[-1] if channels_first else images.shape[2]
    if (images.shape[-2] if channels_first else images.shape[1]) != size:
        raise ValueError(f"images: expected square images, got shape {tuple(images.shape)}")
    masks = {f: artifact_mask(f, size) for f in set(flips)}
    stacked = np.stack([masks[f] for f in flips]) if n else np.zeros((0, size, size), bool)
    if is_tensor:
        keep = torch.from_numpy(~stacked).to(images.device)
        keep = keep[:, None] if channels_first else keep[..., None]
        return images * keep.to(images.dtype)
    out = np.array(images, copy=True)
    out[stacked] = 0
    return out


def _corner_means(x: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """Mean RGB (N x 3) of each corner square of float N x 3 x H x W images."""
    return {
        "bl": x[:, :, -size:, :size].mean(dim=(2, 3)),
        "br": x[:, :, -size:, -size:].mean(dim=(2, 3)),
        "tl": x[:, :, :size, :size].mean(dim=(2, 3)),
        "tr": x[:, :, :size, -size:].mean(dim=(2, 3)),
    }


def green_box_flags(
    images: np.ndarray | torch.Tensor,
    size: int = GREEN_CORNER,
    threshold: float = GREEN_THRESHOLD,
    corners: Sequence[str] = CORNERS,
) -> np.ndarray:
    """Per image: True when a corner square's mean colour is green-dominant (G > R, B + thr)."""
    from helpers.plots import to_chw_float

    bad = [c for c in corners if c not in CORNERS]
    if bad or not corners:
        raise ValueError(f"corners={corners!r}: expected a non-empty subset of {CORNERS}")
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch.from_numpy warns on read-only arrays
    x = to_chw_float(images)
    if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < size:
        raise ValueError(f"images: expected RGB images of at least {size} px, got {tuple(x.shape)}")
    flags = torch.zeros(len(x), dtype=torch.bool)
    for name, rgb in _corner_means(x, size).items():
        if name in corners:
            r, g, b = rgb.unbind(dim=1)
            flags |= (g > r + threshold) & (g > b + threshold)
    return flags.numpy()


def green_box_rate(images: np.ndarray | torch.Tensor, **kwargs: Any) -> float:
    """Fraction of images with a green-dominant corner square (see `green_box_flags`)."""
    flags = green_box_flags(images, **kwargs)
    if len(flags) == 0:
        raise ValueError("images: need at least one image")
    return float(flags.mean())


# --- training ------------------------------------------------------------------------------------


def training_set(arm: Arm, data: AblationData, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """The arm's training images (same count for every arm) and their manifest rows."""
    images, rows = data.healthy_train, data.healthy_train_rows
    if arm.polyps:
        images = np.concatenate([images, data.polyp_pool])
        rows = pd.concat([rows, data.polyp_pool_rows], ignore_index=True)
        pick = _seeded_subset(len(images), data.n_train, seed, _MIX_STREAM)
        images, rows = images[pick], rows.iloc[pick].reset_index(drop=True)
    if arm.mask:
        images = mask_artifacts(images, rows["flip"].tolist())
    return images, rows


def _fingerprint(images: np.ndarray, train_config: dict, model_config: dict) -> dict:
    """What a checkpoint was trained on: data digest and settings (epochs excluded)."""
    settings = {k: v for k, v in train_config.items() if k not in ("epochs", "checkpoint_every")}
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    return {
        "data_sha256": digest,
        "n_images": len(images),
        "train": settings,
        "model": model_config,
    }


def run_arm(
    arm: Arm,
    images: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    checkpoint_dir: str | os.PathLike,
    device: str | torch.device = "auto",
    checkpoint_every: int = 0,
    progress: bool = True,
    precision: str = "auto",
    compile: bool = False,
):
    """Train (or resume) one arm; a checkpoint trained on other data or settings is replaced."""
    from helpers.model import EndoVAEConfig
    from helpers.train import TrainConfig, fit

    tcfg = TrainConfig(
        loss="mse", epochs=epochs, batch_size=batch_size, lr=lr, beta=arm.beta, seed=seed,
        checkpoint_every=checkpoint_every, precision=precision, compile=compile,
    )  # fmt: skip
    mcfg = EndoVAEConfig(latent_dim=arm.latent_dim)
    folder = Path(checkpoint_dir)
    stamp_path = folder / f"{arm.name}.json"
    stamp = _fingerprint(images, tcfg.to_dict(), mcfg.to_dict())
    resume = stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp
    atomic_write_text(stamp_path, json.dumps(stamp, indent=1))
    return fit(
        images, tcfg, model_config=mcfg, checkpoint_path=folder / f"{arm.name}.pt",
        history_path=folder / f"{arm.name}_history.csv", device=device, resume=resume,
        progress=progress, desc=arm.name,
    )  # fmt: skip


def arms_table(
    arms: Sequence[Arm], results: Mapping[str, Any], data: AblationData, seed: int
) -> pd.DataFrame:
    """One row per arm: settings, training images (polyps among them), budget, time, last loss."""
    records = []
    for arm in arms:
        res = results[arm.name]
        _, rows = training_set(arm, data, seed)
        hist = res.history
        last = hist.iloc[-1] if len(hist) else pd.Series(dtype=float)
        records.append(
            {
                "arm": arm.name,
                "study": arm.study,
                "label": arm.label,
                "latent_dim": arm.latent_dim,
                "beta": arm.beta,
                "mask": arm.mask,
                "train_images": len(rows),
                "train_polyp_images": int((rows["group"] == "polyps").sum()),
                "epochs": int(hist["epoch"].max()) if len(hist) else 0,
                "images_seen": int(len(rows) * len(hist)),
                "train_seconds": float(hist["seconds"].sum()) if len(hist) else 0.0,
                "images_per_s": res.images_per_s,
                "final_recon": float(last.get("recon", np.nan)),
                "final_kld": float(last.get("kld", np.nan)),
            }
        )
    return pd.DataFrame.from_records(records)


# --- evaluation ----------------------------------------------------------------------------------


@torch.inference_mode()
def _recon_and_kld(
    model: torch.nn.Module, x: torch.Tensor, device: torch.device, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstructions decoded from mu (fp32, on the CPU) and KL(q(z|x) || N(0, I)) per image."""
    model = model.eval().to(device)
    recons, klds = [], []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device).float()
        mu, logvar = model.encode(xb)
        recons.append(model.decode(mu).float().cpu())
        kl = -0.5 * (1 + logvar.float() - mu.float().pow(2) - logvar.float().exp()).sum(dim=1)
        klds.append(kl.cpu())
    return torch.cat(recons), torch.cat(klds)


def _device_of(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    """`device`, or the model's own device when None."""
    if device is None:
        return next(model.parameters()).device
    return device if isinstance(device, torch.device) else torch.device(device)


def anomaly_scores(
    model: torch.nn.Module,
    images: np.ndarray,
    device: str | torch.device | None = None,
    batch_size: int = 128,
) -> pd.DataFrame:
    """Per image: reconstruction MSE, KLD and their ELBO-like sum (squared-error sum + KLD)."""
    return score_images(model, images, device=device, batch_size=batch_size)[list(ANOMALY_SCORES)]


def score_images(
    model: torch.nn.Module,
    images: np.ndarray,
    flips: str | Sequence[str] = "none",
    *,
    mask_input: bool = False,
    mask_score: bool = False,
    device: str | torch.device | None = None,
    batch_size: int = 128,
) -> pd.DataFrame:
    """Per image: PSNR, SSIM, MSE, KLD and MSE-sum + KLD, optionally with the artifacts masked."""
    from helpers.preprocess import to_tensor

    x = to_tensor(images)
    if len(x) == 0:
        raise ValueError("images: need at least one image to score")
    flips = _flip_list(flips, len(x))
    inputs = mask_artifacts(x, flips) if mask_input else x
    recon, kld = _recon_and_kld(model, inputs, _device_of(model, device), batch_size)
    target = inputs
    if mask_score:
        target, recon = mask_artifacts(x, flips), mask_artifacts(recon, flips)
    sq = (recon - target).pow(2).flatten(1)
    frame = image_metrics(target, recon, batch_size=batch_size)
    frame["mse"] = sq.mean(dim=1).double().numpy()
    frame["kld"] = kld.double().numpy()
    frame["elbo"] = (sq.sum(dim=1).double() + kld.double()).numpy()
    return frame


def evaluation_sets(arm: Arm, data: AblationData) -> dict[str, tuple[np.ndarray, pd.DataFrame]]:
    """Image sets an arm is scored on (the baseline also on its own training images)."""
    sets = {
        HEALTHY_TEST: (data.healthy_test, data.healthy_test_rows),
        POLYPS_EVAL: (data.polyp_eval, data.polyp_eval_rows),
    }
    if arm.name == BASELINE:
        sets[HEALTHY_TRAIN] = (data.healthy_train, data.healthy_train_rows)
    return sets


def evaluate_arm(
    model: torch.nn.Module,
    arm: Arm,
    data: AblationData,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 128,
) -> pd.DataFrame:
    """Per-image scores of one arm: entry, arm, scoring, images, file, source_id + metrics.

    The masked arm sees and is scored on masked images; the baseline is scored both as is and
    with the same mask applied to its reconstruction and target ("masked scoring").
    """
    frames = []
    scorings = ["masked"] if arm.mask else ["full"]
    if arm.name == BASELINE:
        scorings.append("masked")
    for scoring in scorings:
        entry = arm.name if scoring == "full" or arm.mask else f"{arm.name} (masked scoring)"
        for set_name, (images, rows) in evaluation_sets(arm, data).items():
            if scoring == "masked" and set_name == HEALTHY_TRAIN:
                continue
            scores = score_images(
                model, images, rows["flip"].tolist(), mask_input=arm.mask,
                mask_score=scoring == "masked", device=device, batch_size=batch_size,
            )  # fmt: skip
            scores.insert(0, "source_id", rows["source_id"].to_numpy())
            scores.insert(0, "file", rows["file"].to_numpy())
            scores.insert(0, "images", set_name)
            scores.insert(0, "scoring", scoring)
            scores.insert(0, "arm", arm.name)
            scores.insert(0, "entry", entry)
            frames.append(scores)
    return pd.concat(frames, ignore_index=True)


# --- tables ----------------------------------------------------------------------------------------


def _paired(
    per_image: pd.DataFrame,
    entry: str,
    reference: str,
    images: str,
    metric: str,
    n_boot: int,
    seed: int,
) -> dict:
    """Paired difference entry - reference of one metric over the same images (by file)."""
    a = per_image[(per_image["entry"] == entry) & (per_image["images"] == images)]
    b = per_image[(per_image["entry"] == reference) & (per_image["images"] == images)]
    joined = (
        a.set_index("file")[metric]
        .to_frame("a")
        .join(b.set_index("file")[metric].rename("b"), how="inner")
    )
    if len(joined) != len(a):
        raise ValueError(f"{entry} and {reference} were not scored on the same {images} images")
    return paired_difference(joined["a"], joined["b"], n_boot=n_boot, seed=seed)


def study_table(
    per_image: pd.DataFrame,
    entries: Mapping[str, str],
    reference: str,
    n_boot: int,
    seed: int,
    images: Sequence[str] = (HEALTHY_TEST, POLYPS_EVAL),
    no_delta: Sequence[str] = (),
) -> pd.DataFrame:
    """Mean PSNR/SSIM with 95 % CIs per entry and image set, and the paired change vs reference.

    Entries in `no_delta` (scored differently from the reference) get no change (NaN).
    """
    records = []
    for set_name in images:
        for entry, label in entries.items():
            rows = per_image[(per_image["entry"] == entry) & (per_image["images"] == set_name)]
            if rows.empty:
                raise ValueError(f"no scores for entry {entry!r} on {set_name!r}")
            record = {"entry": entry, "label": label, "images": set_name, "n": len(rows)}
            for metric in ("psnr", "ssim"):
                s = summarize(rows[metric], n_boot=n_boot, seed=seed)
                record.update({f"{metric}_{k}": s[k] for k in ("mean", "std", "ci_low", "ci_high")})
                if entry == reference:
                    d = {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}
                elif entry in no_delta:
                    d = {"mean": np.nan, "ci_low": np.nan, "ci_high": np.nan}
                else:
                    d = _paired(per_image, entry, reference, set_name, metric, n_boot, seed)
                record.update({f"d_{metric}_{k}": d[k] for k in ("mean", "ci_low", "ci_high")})
            records.append(record)
    return pd.DataFrame.from_records(records)


def _ci_text(mean: float, low: float, high: float, digits: int, signed: bool = False) -> str:
    """'mean [low, high]' with a fixed number of digits."""
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def _delta_cell(r: pd.Series, metric: str, digits: int, is_reference: bool) -> str:
    """Display text of a paired change: 'reference', '–' (not comparable) or 'mean [low, high]'."""
    if is_reference:
        return "reference"
    if not np.isfinite(r[f"d_{metric}_mean"]):
        return "–"
    return _ci_text(
        r[f"d_{metric}_mean"], r[f"d_{metric}_ci_low"], r[f"d_{metric}_ci_high"], digits, True
    )


SHORT_SETS = {HEALTHY_TEST: "healthy", HEALTHY_TRAIN: "healthy (train)", POLYPS_EVAL: "polyps"}


def format_study(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Compact display of a study table: means and the paired change (95 % CI) vs the reference.

    The CIs of the means are in the CSV; the display keeps the page width for the changes.
    """
    out = []
    for _, r in table.iterrows():
        ref = r["entry"] == reference
        out.append(
            {
                "Arm": r["label"],
                "Images": SHORT_SETS.get(r["images"], r["images"]),
                "PSNR": f"{r['psnr_mean']:.2f}",
                "Δ PSNR [95 % CI]": _delta_cell(r, "psnr", 2, ref),
                "SSIM": f"{r['ssim_mean']:.3f}",
                "Δ SSIM [95 % CI]": _delta_cell(r, "ssim", 3, ref),
            }
        )
    return pd.DataFrame.from_records(out).set_index("Arm")


def green_box_table(sources: Mapping[str, Any], n_boot: int, seed: int) -> pd.DataFrame:
    """Green-box rate with a 95 % bootstrap CI for each named image set (real or sampled)."""
    records = []
    for name, images in sources.items():
        flags = green_box_flags(images).astype(float)
        s = summarize(flags, n_boot=n_boot, seed=seed)
        records.append(
            {
                "images": name,
                "n": s["n"],
                "rate": s["mean"],
                "ci_low": s["ci_low"],
                "ci_high": s["ci_high"],
            }
        )
    return pd.DataFrame.from_records(records)


def format_green(table: pd.DataFrame) -> pd.DataFrame:
    """Display form of the green-box table: percentages with CIs."""
    return pd.DataFrame(
        {
            "Images": table["images"],
            "n": table["n"].astype(int),
            "Green box (%)": [
                _ci_text(100 * r.rate, 100 * r.ci_low, 100 * r.ci_high, 1)
                for r in table.itertuples()
            ],
        }
    ).set_index("Images")


def anomaly_auc(healthy_scores: Sequence[float], polyp_scores: Sequence[float]) -> float:
    """ROC AUC of a score that should be higher for polyps (positives) than for healthy images."""
    from sklearn.metrics import roc_auc_score

    h, p = _score_arrays(healthy_scores, polyp_scores)
    labels = np.r_[np.zeros(len(h)), np.ones(len(p))]
    return float(roc_auc_score(labels, np.r_[h, p]))


def _score_arrays(
    healthy: Sequence[float], polyps: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Both score sets as finite 1-D float arrays (each non-empty)."""
    out = []
    for name, values in (("healthy_scores", healthy), ("polyp_scores", polyps)):
        arr = np.asarray(values, dtype=np.float64).ravel()
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: need at least one value, all finite")
        out.append(arr)
    return out[0], out[1]


def auc_bootstrap_ci(
    healthy_scores: Sequence[float],
    polyp_scores: Sequence[float],
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    healthy_groups: Sequence[Any] | None = None,
    polyp_groups: Sequence[Any] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC, resampling each class (by group, e.g. source frame)."""
    h, p = _score_arrays(healthy_scores, polyp_scores)
    rng = np.random.default_rng(seed)
    h_groups = _group_index(h, healthy_groups)
    p_groups = _group_index(p, polyp_groups)
    aucs = np.empty(n_boot)
    for i in range(n_boot):
        hs = h[np.concatenate([h_groups[j] for j in rng.integers(0, len(h_groups), len(h_groups))])]
        ps = p[np.concatenate([p_groups[j] for j in rng.integers(0, len(p_groups), len(p_groups))])]
        aucs[i] = _fast_auc(hs, ps)
    alpha = (1 - ci) / 2
    low, high = np.quantile(aucs, [alpha, 1 - alpha])
    return float(low), float(high)


def _group_index(values: np.ndarray, groups: Sequence[Any] | None) -> list[np.ndarray]:
    """Positions of each group (one group per value when groups is None)."""
    if groups is None:
        return [np.array([i]) for i in range(len(values))]
    codes = pd.factorize(pd.Series(list(groups)))[0]
    if len(codes) != len(values):
        raise ValueError(f"groups: got {len(codes)} labels for {len(values)} scores")
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]


def _fast_auc(healthy: np.ndarray, polyps: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted as one half."""
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[healthy, polyps])
    n_h, n_p = len(healthy), len(polyps)
    return float((ranks[n_h:].sum() - n_p * (n_p + 1) / 2) / (n_h * n_p))


def roc_points(
    healthy_scores: Sequence[float], polyp_scores: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates of the ROC curve (polyps positive)."""
    from sklearn.metrics import roc_curve

    h, p = _score_arrays(healthy_scores, polyp_scores)
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(h)), np.ones(len(p))], np.r_[h, p])
    return fpr, tpr


def anomaly_table(
    per_image: pd.DataFrame, arms: Sequence[str], n_boot: int, seed: int
) -> pd.DataFrame:
    """AUC (held-out healthy vs unseen polyps) with a source-clustered 95 % CI per arm and score."""
    records = []
    for arm in arms:
        rows = per_image[(per_image["entry"] == arm)]
        healthy = rows[rows["images"] == HEALTHY_TEST]
        polyps = rows[rows["images"] == POLYPS_EVAL]
        for score in ANOMALY_SCORES:
            auc = anomaly_auc(healthy[score], polyps[score])
            low, high = auc_bootstrap_ci(
                healthy[score], polyps[score], n_boot=n_boot, seed=seed,
                healthy_groups=healthy["source_id"], polyp_groups=polyps["source_id"],
            )  # fmt: skip
            records.append(
                {"arm": arm, "score": score, "auc": auc, "ci_low": low, "ci_high": high,
                 "n_healthy": len(healthy), "n_polyps": len(polyps),
                 "healthy_sources": healthy["source_id"].nunique(),
                 "polyp_sources": polyps["source_id"].nunique()}
            )  # fmt: skip
    return pd.DataFrame.from_records(records)


def format_anomaly(table: pd.DataFrame, labels: Mapping[str, str]) -> pd.DataFrame:
    """Display form of the anomaly table."""
    return pd.DataFrame(
        {
            "Model": [labels.get(a, a) for a in table["arm"]],
            "Score": [SHORT_SCORES[s] for s in table["score"]],
            "AUC [95 % CI]": [_ci_text(r.auc, r.ci_low, r.ci_high, 3) for r in table.itertuples()],
            "n (healthy / polyps)": [f"{r.n_healthy} / {r.n_polyps}" for r in table.itertuples()],
        }
    ).set_index("Model")


def unpaired_difference(
    a: Sequence[float], b: Sequence[float], n_boot: int, seed: int, ci: float = 0.95
) -> dict:
    """Difference of means a - b of two independent samples with a percentile bootstrap CI."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("unpaired_difference: both samples need at least one value")
    rng = np.random.default_rng(seed)
    diffs = a[rng.integers(0, a.size, (n_boot, a.size))].mean(1) - b[
        rng.integers(0, b.size, (n_boot, b.size))
    ].mean(1)
    alpha = (1 - ci) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return {"mean": float(a.mean() - b.mean()), "ci_low": float(low), "ci_high": float(high)}


def split_gap_table(per_image: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Baseline PSNR/SSIM on its training images vs the held-out ones, and the gap (train - test)."""
    rows = per_image[per_image["entry"] == BASELINE]
    records = []
    for metric in ("psnr", "ssim"):
        train = rows.loc[rows["images"] == HEALTHY_TRAIN, metric].to_numpy()
        test = rows.loc[rows["images"] == HEALTHY_TEST, metric].to_numpy()
        for name, values in ((HEALTHY_TRAIN, train), (HEALTHY_TEST, test)):
            s = summarize(values, n_boot=n_boot, seed=seed)
            records.append(
                {
                    "metric": metric,
                    "images": name,
                    "n": s["n"],
                    "mean": s["mean"],
                    "ci_low": s["ci_low"],
                    "ci_high": s["ci_high"],
                }
            )
        d = unpaired_difference(train, test, n_boot, seed)
        records.append({"metric": metric, "images": "gap (training - held-out)", "n": np.nan, **d})
    return pd.DataFrame.from_records(records)


def format_gap(table: pd.DataFrame) -> pd.DataFrame:
    """Display form of the train-vs-test table."""
    out = []
    for r in table.itertuples():
        digits = 2 if r.metric == "psnr" else 3
        gap = r.images.startswith("gap")
        out.append(
            {
                "Metric": "PSNR (dB)" if r.metric == "psnr" else "SSIM",
                "Images": r.images,
                "n": "" if gap else str(int(r.n)),
                "Mean [95 % CI]": _ci_text(r.mean, r.ci_low, r.ci_high, digits, signed=gap),
            }
        )
    return pd.DataFrame.from_records(out).set_index("Metric")


# --- figures -------------------------------------------------------------------------------------


def plot_histories(
    histories: Mapping[str, pd.DataFrame], title: str = "", path: str | os.PathLike | None = None
):
    """Reconstruction, KLD and total loss per epoch of several arms, one line per arm."""
    import matplotlib.pyplot as plt

    from helpers.plots import save_figure

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    names = (
        ("recon", "reconstruction (MSE)"),
        ("kld", "KL divergence"),
        ("total", "total = recon + β·KLD"),
    )
    from matplotlib.ticker import MaxNLocator

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


def masked_preview(images: np.ndarray, rows: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n training images (those with a green box first) and the same images masked."""
    flags = green_box_flags(images)
    order = np.r_[np.flatnonzero(flags), np.flatnonzero(~flags)]
    pick = np.sort(order[: min(n, len(order))])
    chosen = images[pick]
    return chosen, mask_artifacts(chosen, rows["flip"].iloc[pick].tolist())


# --- generated text ------------------------------------------------------------------------------


def _verdict(low: float, high: float, better: str, worse: str, digits: int = 2) -> str:
    """'better'/'worse' when the CI excludes 0, else a no-clear-difference phrase."""
    if round(low, digits) == 0 and round(high, digits) == 0:
        return "negligible: the whole interval rounds to 0"
    if low > 0:
        return better
    if high < 0:
        return worse
    return "no clear difference: the interval contains 0"


def study_text(table: pd.DataFrame, reference: str) -> str:
    """Markdown sentences comparing each entry with the reference, from the study table."""
    parts = []
    for set_name, group in table.groupby("images", sort=False):
        ref = group[group["entry"] == reference].iloc[0]
        items = []
        for _, r in group[group["entry"] != reference].iterrows():
            if not np.isfinite(r["d_psnr_mean"]):
                continue
            psnr_v = _verdict(r["d_psnr_ci_low"], r["d_psnr_ci_high"], "higher", "lower", 2)
            ssim_v = _verdict(r["d_ssim_ci_low"], r["d_ssim_ci_high"], "higher", "lower", 3)
            items.append(
                f"{r['label']}: PSNR {r['d_psnr_mean']:+.2f} dB "
                f"[{r['d_psnr_ci_low']:+.2f}, {r['d_psnr_ci_high']:+.2f}] ({psnr_v}), "
                f"SSIM {r['d_ssim_mean']:+.3f} [{r['d_ssim_ci_low']:+.3f}, "
                f"{r['d_ssim_ci_high']:+.3f}] ({ssim_v})"
            )
        head = (
            f"On the {ref['n']} {set_name} images, {ref['label']} reaches PSNR "
            f"{ref['psnr_mean']:.2f} dB and SSIM {ref['ssim_mean']:.3f}"
        )
        tail = ". Paired change per image against it: " + "; ".join(items) + "." if items else "."
        parts.append(head + tail)
    return " ".join(parts)


def _and_join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def green_text(table: pd.DataFrame) -> str:
    """Sentences on the green-box rates: real images first (detector check), then samples."""
    real = table[table["images"].str.startswith("real: ")]
    fake = table[table["images"].str.startswith("samples: ")]
    real_part = _and_join(
        [
            f"{100 * r.rate:.1f} % of the {r.images.removeprefix('real: ')}"
            for r in real.itertuples()
        ]
    )
    fake_part = ", ".join(
        f"{r.images.removeprefix('samples: ')} {100 * r.rate:.1f} %" for r in fake.itertuples()
    )
    text = f"The green-box detector flags {real_part}."
    if len(real) and real["rate"].max() == 0:
        text += " It finds no box in real images, so its sample rates below cannot be trusted."
    return text + f" Among the images decoded from noise: {fake_part} (intervals in Table 8)."


def anomaly_text(table: pd.DataFrame, labels: Mapping[str, str]) -> str:
    """Sentences on the AUCs, naming the best score of the healthy-only model."""
    base = table[table["arm"] == BASELINE]
    best = base.loc[base["auc"].idxmax()]
    level = (
        "separates them well" if best["ci_low"] > 0.8
        else "separates them better than chance" if best["ci_low"] > 0.5
        else "does not separate them reliably (the interval reaches 0.5)"
    )  # fmt: skip
    text = (
        f"Scored without any label, the healthy-only model {level}: its best score is the "
        f"{SCORE_LABELS[best['score']]} with AUC {best['auc']:.3f} [{best['ci_low']:.3f}, {best['ci_high']:.3f}] "
        f"({int(best['n_healthy'])} held-out healthy vs {int(best['n_polyps'])} unseen polyp images; "
        "the interval resamples source frames, so the flips of one frame move together)."
    )
    others = table[table["arm"] != BASELINE]
    for arm, group in others.groupby("arm", sort=False):
        g = group.set_index("score")
        b = base.set_index("score")
        changes = ", ".join(
            f"{SCORE_LABELS[s]} {g.loc[s, 'auc']:.3f} (baseline {b.loc[s, 'auc']:.3f})"
            for s in ANOMALY_SCORES
        )
        text += f" The arm trained on {labels.get(arm, arm)} reaches: {changes}."
    b = base.set_index("score")["auc"]
    if abs(b["elbo"] - b["mse"]) < 0.005:
        text += (
            " The ELBO-like score ranks the images almost exactly like the MSE (its curve lies on "
            "the MSE curve): the KLD is small next to the squared-error sum over all pixels and channels."
        )
    return text


def gap_text(table: pd.DataFrame) -> str:
    """Sentence on the baseline's train-vs-held-out gap."""
    parts = []
    for metric, label, unit, digits in (("psnr", "PSNR", " dB", 2), ("ssim", "SSIM", "", 3)):
        r = table[(table["metric"] == metric) & table["images"].str.startswith("gap")].iloc[0]
        verdict = _verdict(
            r["ci_low"],
            r["ci_high"],
            "better on the training images",
            "better on the held-out images",
            digits,
        )
        parts.append(
            f"{label} gap {r['mean']:+.{digits}f}{unit} [{r['ci_low']:+.{digits}f}, {r['ci_high']:+.{digits}f}] ({verdict})"
        )
    return (
        "Baseline, training images minus held-out images: "
        + "; ".join(parts)
        + ". A clear positive "
        "gap would mean the model memorises its training frames; healthy numbers elsewhere in this "
        "section always use the held-out images."
    )


PAPER_BUDGET = 3000 * 6000  # the original report: 3000 epochs over 1,500 healthy frames x 4 flips


def budget_text(arms_tab: pd.DataFrame, batch_size: int) -> str:
    """The budget every arm got, compared with the original report's, with the caveat it implies."""
    seen = int(arms_tab["images_seen"].iloc[0])
    epochs = int(arms_tab["epochs"].iloc[0])
    n = int(arms_tab["train_images"].iloc[0])
    steps = epochs * math.ceil(n / batch_size)
    share = 100 * seen / PAPER_BUDGET
    share_text = "less than 0.01 %" if share < 0.01 else f"{share:.2g} %"
    minutes = arms_tab["train_seconds"].sum() / 60
    text = (
        f"Every arm trained for {epochs} epoch(s) on {n} images ({seen:,} images seen, {steps} "
        f"optimiser steps of batch {batch_size}), {minutes:.1f} min of training for all "
        f"{len(arms_tab)} arms together. That is {share_text} of the original report's budget "
        "(3000 epochs over 6,000 healthy images)."
    )
    if share < 10:
        text += (
            " At this budget the models are far from converged, so differences between arms say "
            "how fast each setting learns rather than where it ends; read the intervals, and rerun "
            "with more epochs (or the paper profile on a GPU) before drawing conclusions."
        )
    return text + " " + plateau_sentence(arms_tab, batch_size)


def plateau_sentence(arms_tab: pd.DataFrame, batch_size: int) -> str:
    """Which arms are still on the posterior-collapse plateau (final KL below the threshold)."""
    kl = arms_tab["final_kld"] / batch_size
    stuck = list(arms_tab.loc[kl < PLATEAU_KL_PER_IMAGE, "label"])
    if not stuck:
        return (
            f"Every arm left the posterior-collapse plateau (final KL divergence at least "
            f"{PLATEAU_KL_PER_IMAGE:g} nats per image)."
        )
    who = (
        "Every arm is"
        if len(stuck) == len(arms_tab)
        else f"{len(stuck)} arms ({', '.join(stuck)}) are"
    )
    return (
        f"{who} not trained past the posterior-collapse plateau (final KL divergence below "
        f"{PLATEAU_KL_PER_IMAGE:g} nats per image): such a model ignores its latent code and "
        "returns nearly one mean image, so comparisons involving it describe the plateau, not the "
        "setting. The paper profile trains every arm past it."
    )


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Images as float N x 3 x H x W in [0, 1] on the CPU (uint8 NHWC or float NCHW in)."""
    from helpers.plots import to_chw_float

    return to_chw_float(images)


def _best_delta(table: pd.DataFrame, reference: str, images: str) -> pd.Series | None:
    """The row of `images` with the largest PSNR change against the reference (None if none)."""
    rows = table[(table["images"] == images) & (table["entry"] != reference)]
    return None if rows.empty else rows.loc[rows["d_psnr_mean"].idxmax()]


def _delta_phrase(row: pd.Series | None, what: str) -> str:
    """'<label> changed held-out PSNR by x dB [ci] (verdict)' or a no-arm phrase."""
    if row is None:
        return f"no {what} arm was trained"
    verdict = _verdict(row["d_psnr_ci_low"], row["d_psnr_ci_high"], "a clear gain", "a clear loss")
    return (
        f"{row['label']} changed held-out PSNR by {row['d_psnr_mean']:+.2f} dB "
        f"[{row['d_psnr_ci_low']:+.2f}, {row['d_psnr_ci_high']:+.2f}]; {verdict}"
    )


def mean_kld(per_image: pd.DataFrame) -> dict[str, float]:
    """Per arm: mean KL divergence (nats per image) of its encoder on the held-out healthy images."""
    rows = per_image[
        (per_image["entry"] == per_image["arm"]) & (per_image["images"] == HEALTHY_TEST)
    ]
    return {arm: float(group["kld"].mean()) for arm, group in rows.groupby("arm", sort=False)}


COLLAPSE_NATS = 1.0  # below this mean KLD per image the latent code carries almost nothing


def collapse_text(kld_means: Mapping[str, float], labels: Mapping[str, str]) -> str:
    """A note naming the arms whose posterior collapsed (KLD near 0 nats), or ''."""
    flat = [f"{labels.get(k, k)} {v:.2f}" for k, v in kld_means.items() if v < COLLAPSE_NATS]
    if not flat:
        return ""
    return (
        f"In {len(flat)} of {len(kld_means)} arms the encoder's posterior has collapsed onto the "
        f"prior: the mean KL divergence per held-out image is below {COLLAPSE_NATS:g} nat "
        f"({'; '.join(flat)}), so the latent vector carries almost no information about the "
        "image, the decoder outputs nearly the same average image whatever the input, and "
        "reconstruction errors mostly measure how far an image is from that average."
    )


def summary_text(
    arms_tab: pd.DataFrame,
    latent_tab: pd.DataFrame,
    beta_tab: pd.DataFrame,
    art_tab: pd.DataFrame,
    green_tab: pd.DataFrame,
    polyp_tab: pd.DataFrame,
    auc_tab: pd.DataFrame,
    gap_tab: pd.DataFrame,
    batch_size: int,
    collapse: str = "",
) -> str:
    """The closing paragraph of Section 10, built from this run's tables (+ a collapse note)."""
    masked_ref = f"{BASELINE} (masked scoring)"
    polyp_row = _best_delta(polyp_tab, BASELINE, POLYPS_EVAL)
    polyp_part = (
        "no polyp arm was trained"
        if polyp_row is None
        else f"adding polyps to training changed PSNR on unseen polyps by "
        f"{polyp_row['d_psnr_mean']:+.2f} dB [{polyp_row['d_psnr_ci_low']:+.2f}, "
        f"{polyp_row['d_psnr_ci_high']:+.2f}]"
    )
    rates = green_tab.set_index("images")["rate"]
    real = rates.get("real: healthy training images", float("nan"))
    base_s = rates.get(f"samples: {Arm(BASELINE, 'baseline').label}", float("nan"))
    masked_s = rates.get("samples: artifacts masked", float("nan"))
    base_auc = auc_tab[auc_tab["arm"] == BASELINE]
    best = base_auc.loc[base_auc["auc"].idxmax()]
    gap = gap_tab[(gap_tab["metric"] == "psnr") & gap_tab["images"].str.startswith("gap")].iloc[0]
    lines = [
        "- Latent size (the arm with the largest PSNR change): "
        f"{_delta_phrase(_best_delta(latent_tab, BASELINE, HEALTHY_TEST), 'latent')}.",
        "- β-VAE (the arm with the largest PSNR change): "
        f"{_delta_phrase(_best_delta(beta_tab, BASELINE, HEALTHY_TEST), 'β')}.",
        f"- Artifacts: {_delta_phrase(_best_delta(art_tab, masked_ref, HEALTHY_TEST), 'masked')} "
        f"under the same mask; green boxes appear in {100 * real:.0f} % of the real training "
        f"images, {100 * base_s:.0f} % of the baseline's samples and {100 * masked_s:.0f} % of "
        "the masked arm's samples.",
        f"- Polyps in training: {polyp_part}.",
        f"- Detection without labels: best AUC {best['auc']:.3f} [{best['ci_low']:.3f}, "
        f"{best['ci_high']:.3f}] with the {SCORE_LABELS[best['score']]}.",
        f"- Training vs held-out healthy images (baseline): PSNR gap {gap['mean']:+.2f} dB "
        f"[{gap['ci_low']:+.2f}, {gap['ci_high']:+.2f}].",
    ]
    closing = budget_text(arms_tab, batch_size) + (" " + collapse if collapse else "")
    return "In this run:\n\n" + "\n".join(lines) + "\n\n" + closing


def format_arms(arms_tab: pd.DataFrame) -> pd.DataFrame:
    """Display form of the arms table (Table 4); the last losses stay in the CSV."""
    return pd.DataFrame(
        {
            "Arm": arms_tab["label"],
            "latent": arms_tab["latent_dim"],
            "β": [f"{b:g}" for b in arms_tab["beta"]],
            "masked": ["yes" if m else "no" for m in arms_tab["mask"]],
            "images": arms_tab["train_images"],
            "polyps": arms_tab["train_polyp_images"],
            "seen": arms_tab["images_seen"],
            "time (s)": arms_tab["train_seconds"].round(1),
        }
    ).set_index("Arm")
