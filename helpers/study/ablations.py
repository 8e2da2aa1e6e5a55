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

from helpers.core.atomic import atomic_write_text
from helpers.core.fingerprint import array_digest
from helpers.core.stats import (
    anomaly_auc,
    auc_bootstrap_ci,
    paired_difference,
    summarize,
    unpaired_difference,
)
from helpers.data.processed import (
    assert_disjoint_sources,
    flipped_variants,
    load_split,
    polyp_pool_split,
    to_tensor,
)
from helpers.evaluate.artifacts import flip_list, green_box_flags, mask_artifacts
from helpers.evaluate.metrics import image_metrics
from helpers.model.endovae import EndoVAEConfig
from helpers.train.fit import TrainConfig, fit
from helpers.train.infer import reconstruct_with_kld

BASELINE = "baseline"
MASKED_SCORING = f"{BASELINE} (masked scoring)"  # the baseline scored with the artifact mask
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
_SUBSET_STREAM = 0xAB2
_MIX_STREAM = 0xAB3


# --- parameters and arms ---------------------------------------------------------------------


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
        latent = self.latent_dim
        if isinstance(latent, bool) or int(latent) != latent or latent < 1:
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


# --- subsets ----------------------------------------------------------------------------------


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


# --- training --------------------------------------------------------------------------------


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
    return {"data_sha256": array_digest(images), "n_images": len(images), "train": settings,
            "model": model_config}  # fmt: skip


def run_arm(
    arm: Arm, images: np.ndarray, *, epochs: int, batch_size: int, lr: float, seed: int,
    checkpoint_dir: str | os.PathLike, device: str | torch.device = "auto",
    checkpoint_every: int = 0, progress: bool = True, precision: str = "auto",
    compile: bool = False, init: str = "pytorch",
):  # fmt: skip
    """Train (or resume) one arm; a checkpoint trained on other data or settings is replaced."""
    tcfg = TrainConfig(
        loss="mse", epochs=epochs, batch_size=batch_size, lr=lr, beta=arm.beta, seed=seed,
        checkpoint_every=checkpoint_every, precision=precision, compile=compile, init=init,
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
        records.append({
            "arm": arm.name, "study": arm.study, "label": arm.label,
            "latent_dim": arm.latent_dim, "beta": arm.beta, "mask": arm.mask,
            "train_images": len(rows), "train_polyp_images": int((rows["group"] == "polyps").sum()),
            "epochs": int(hist["epoch"].max()) if len(hist) else 0,
            "images_seen": int(len(rows) * len(hist)),
            "train_seconds": float(hist["seconds"].sum()) if len(hist) else 0.0,
            "images_per_s": res.images_per_s, "final_recon": float(last.get("recon", np.nan)),
            "final_kld": float(last.get("kld", np.nan)),
        })  # fmt: skip
    return pd.DataFrame.from_records(records)


# --- evaluation ------------------------------------------------------------------------------


def score_images(
    model: torch.nn.Module, images: np.ndarray, flips: str | Sequence[str] = "none", *,
    mask_input: bool = False, mask_score: bool = False,
    device: str | torch.device | None = None, batch_size: int = 128,
) -> pd.DataFrame:  # fmt: skip
    """Per image: PSNR, SSIM, MSE, KLD and MSE-sum + KLD, optionally with the artifacts masked."""
    x = to_tensor(images)
    if len(x) == 0:
        raise ValueError("images: need at least one image to score")
    flips = flip_list(flips, len(x))
    inputs = mask_artifacts(x, flips) if mask_input else x
    recon, kld = reconstruct_with_kld(model, inputs, batch_size, device)
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
    model: torch.nn.Module, arm: Arm, data: AblationData, *,
    device: str | torch.device | None = None, batch_size: int = 128,
) -> pd.DataFrame:  # fmt: skip
    """Per-image scores of one arm: entry, arm, scoring, images, file, source_id + metrics.

    The masked arm sees and is scored on masked images; the baseline is scored both as is and
    with the same mask applied to its reconstruction and target ("masked scoring").
    """
    frames = []
    scorings = ["masked"] if arm.mask else ["full"]
    if arm.name == BASELINE:
        scorings.append("masked")
    for scoring in scorings:
        entry = arm.name if scoring == "full" or arm.mask else MASKED_SCORING
        for set_name, (images, rows) in evaluation_sets(arm, data).items():
            if scoring == "masked" and set_name == HEALTHY_TRAIN:
                continue
            scores = score_images(
                model, images, rows["flip"].tolist(), mask_input=arm.mask,
                mask_score=scoring == "masked", device=device, batch_size=batch_size,
            )  # fmt: skip
            keys = {"entry": entry, "arm": arm.name, "scoring": scoring, "images": set_name,
                    "file": rows["file"].to_numpy(), "source_id": rows["source_id"].to_numpy()}  # fmt: skip
            frames.append(pd.concat([pd.DataFrame(keys, index=scores.index), scores], axis=1))
    return pd.concat(frames, ignore_index=True)


def mean_kld(per_image: pd.DataFrame) -> dict[str, float]:
    """Per arm: mean KL divergence (nats per image) of its encoder on the held-out healthy images."""
    rows = per_image[
        (per_image["entry"] == per_image["arm"]) & (per_image["images"] == HEALTHY_TEST)
    ]
    return {arm: float(group["kld"].mean()) for arm, group in rows.groupby("arm", sort=False)}


# --- tables ----------------------------------------------------------------------------------


def _paired(
    per_image: pd.DataFrame, entry: str, reference: str, images: str, metric: str, n_boot: int,
    seed: int,
) -> dict:  # fmt: skip
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
    per_image: pd.DataFrame, entries: Mapping[str, str], reference: str, n_boot: int, seed: int,
    images: Sequence[str] = (HEALTHY_TEST, POLYPS_EVAL), no_delta: Sequence[str] = (),
) -> pd.DataFrame:  # fmt: skip
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


def green_box_table(sources: Mapping[str, Any], n_boot: int, seed: int) -> pd.DataFrame:
    """Green-box rate with a 95 % bootstrap CI for each named image set (real or sampled)."""
    records = []
    for name, images in sources.items():
        flags = green_box_flags(images).astype(float)
        s = summarize(flags, n_boot=n_boot, seed=seed)
        records.append({"images": name, "n": s["n"], "rate": s["mean"],
                        "ci_low": s["ci_low"], "ci_high": s["ci_high"]})  # fmt: skip
    return pd.DataFrame.from_records(records)


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


def split_gap_table(per_image: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Baseline PSNR/SSIM on its training images vs the held-out ones, and the gap (train - test)."""
    rows = per_image[per_image["entry"] == BASELINE]
    records = []
    for metric in ("psnr", "ssim"):
        train = rows.loc[rows["images"] == HEALTHY_TRAIN, metric].to_numpy()
        test = rows.loc[rows["images"] == HEALTHY_TEST, metric].to_numpy()
        for name, values in ((HEALTHY_TRAIN, train), (HEALTHY_TEST, test)):
            s = summarize(values, n_boot=n_boot, seed=seed)
            records.append({"metric": metric, "images": name, "n": s["n"], "mean": s["mean"],
                            "ci_low": s["ci_low"], "ci_high": s["ci_high"]})  # fmt: skip
        d = unpaired_difference(train, test, n_boot, seed)
        records.append({"metric": metric, "images": "gap (training - held-out)", "n": np.nan, **d})
    return pd.DataFrame.from_records(records)
