"""Section 12 (notebook 10): a sharper EndoVAE beside the faithful one, trained the same way.

The original report ends on blurry images and names what it did not try: a larger latent space,
beta-weighting of the loss, other VAE losses, changes to the network. The sharper model (opt-in:
nothing else uses it) is chosen by measurement (the notebook's table gives the figures):

    latent      32 instead of 6 (64 and 128 measured no better)
    norm        BatchNorm after every hidden conv of encoder and decoder
    beta        0.3: the KL term of the paper's loss weighted by 0.3
    loss        the paper's summed MSE; "sigma" (the sigma-VAE's likelihood with the batch's own
                variance, Rybkin et al. 2021) reconstructs sharper still but samples worse
    ssim        0.03: a term 0.03 * (1 - SSIM) * pixels per image added to the summed MSE
                (helpers.model.losses.ssim_sum), which the pixel loss alone never rewards

Everything else is notebook 03's: the same training images, epochs, batch, Adam learning rate
and schedule, init and seed, with the same trainer (precision, checkpoints, resume). That is
`sharp_budget` "full"; "token" (the quick profile: three EndoVAEs at 03's budget do not fit its
time) trains TOKEN_EPOCHS of those images, a preview whose goals are not assessed and which
leaves out the train-on-synthetic test. For the
train-on-synthetic test a polyp model of each kind is fine-tuned (or trained) with notebook 09's
settings; both pairs generate the same number of frames and train one classifier each.

    prior       "fitted": the sharper model also samples from a Gaussian fitted to its training
                latents (helpers.train.prior), since at beta 0.3 they fill only part of N(0, I);
                the faithful model's samples through its own fitted prior are shown beside, so the
                tables tell the sampler's share from the network's
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from helpers.core.atomic import atomic_write_csv
from helpers.core.paths import RunPaths
from helpers.core.plots import show_grid
from helpers.core.stats import anomaly_auc, auc_bootstrap_ci
from helpers.data.processed import flipped_variants, to_tensor
from helpers.evaluate.metrics import extended_table, paired_table
from helpers.evaluate.qualitative import sample_label
from helpers.model.endovae import EndoVAE, EndoVAEConfig, count_parameters
from helpers.study import synthetic_eval as se
from helpers.study.generate import load_model, train_class_model, trained_on
from helpers.train.checkpoint import read_checkpoint
from helpers.train.fit import TrainConfig, TrainResult, fit
from helpers.train.infer import decode, reconstruct
from helpers.train.prior import LatentPrior
from helpers.train.prior import load as load_prior

FAITHFUL, SHARPER = "faithful", "sharper"
TOKEN_EPOCHS = 1  # sharp_budget "token": one epoch of notebook 03's images (quick: 81 steps of 8)
HEALTHY, POLYPS = "healthy (held-out)", "polyps (held-out)"
SHARP_CHECKPOINT, SHARP_POLYPS = "sharp", "sharp_gen_polyps"


@dataclass(frozen=True)
class Variant:
    """What the sharper model changes: its network shape and its reconstruction loss."""

    latent_dim: int
    norm: str
    loss: str
    beta: float = 1.0
    ssim_weight: float = 0.0
    prior: str = "standard"  # how its samples' z are drawn (helpers.model.endovae.PRIORS)
    budget: str = "full"  # how long it trains (helpers.config.params.SHARP_BUDGETS)

    def model_config(self) -> EndoVAEConfig:
        """The sharper network (errors name a bad latent_dim or norm)."""
        return EndoVAEConfig(latent_dim=self.latent_dim, norm=self.norm)

    def words(self) -> str:
        """One line for tables and prose (short enough for a table cell: no ellipsis)."""
        norm = {"both": "BatchNorm", "encoder": "BatchNorm in the encoder"}.get(
            self.norm, "no norm"
        )
        name = {"sigma": "sigma-VAE"}.get(self.loss, self.loss.upper())
        loss = f"{name} + {self.ssim_weight:g} SSIM" if self.ssim_weight else f"{name} loss"
        beta = f", β = {self.beta:g}" if self.beta != 1 else ""
        return f"latent {self.latent_dim}, {norm}, {loss}{beta}"


def faithful_settings(paths: RunPaths, images: np.ndarray) -> tuple[dict, TrainConfig]:
    """Notebook 03's checkpoint dict and its TrainConfig (the budget both models share); an error
    when it did not train on exactly `images` (e.g. max_train_images was set there)."""
    path = paths.checkpoint("mse")
    state = read_checkpoint(path, producer="03_train_mse")
    if not trained_on(path, images):
        raise ValueError(
            f"{path.name} was not trained on the {len(images)} healthy training images of notebook "
            "01 (was max_train_images set in notebook 03?); rerun notebook 03 with "
            "max_train_images=0 so both models share their training images"
        )
    return state, TrainConfig.from_dict(state["train_config"])


def sharp_config(
    faithful: TrainConfig, variant: Variant, epochs: int, precision: str, compile: bool
):
    """Notebook 03's TrainConfig with the sharper loss, beta and SSIM term (and `epochs` when > 0;
    TOKEN_EPOCHS at the variant's token budget)."""
    epochs = TOKEN_EPOCHS if variant.budget == "token" else epochs
    values = {
        **faithful.to_dict(),
        "loss": variant.loss,
        "beta": variant.beta,
        "ssim_weight": variant.ssim_weight,
        "precision": precision,
        "compile": compile,
    }
    if epochs:
        values["epochs"] = epochs
    return TrainConfig.from_dict(values)


def train_sharp(
    paths: RunPaths, images: np.ndarray, config: TrainConfig, variant: Variant, device
) -> TrainResult:
    """Train the sharper healthy model on notebook 03's images; resume its checkpoint only when
    it holds these images and settings (one of other settings, e.g. an earlier sharp_ssim, is
    trained over, as notebook 09 does with its class models)."""
    path = paths.checkpoint(SHARP_CHECKPOINT)
    return fit(
        images, config, model_config=variant.model_config(), checkpoint_path=path,
        history_path=paths.history(SHARP_CHECKPOINT), device=device, desc="sharper EndoVAE",
        resume=trained_on(path, images, config.to_dict(), variant.model_config()),
    )  # fmt: skip


def settings_table(
    faithful: dict, sharp: TrainResult, sharp_cfg: TrainConfig, variant: Variant
) -> pd.DataFrame:
    """Table 13: both models' network, loss, budget, parameters and training time."""
    f_cfg = TrainConfig.from_dict(faithful["train_config"])
    f_model = EndoVAE(EndoVAEConfig(**faithful["model_config"]))
    n_images = int(faithful["extra"]["data"]["n_images"])
    rows = {}
    for name, model, cfg, hist, words in (
        (FAITHFUL, f_model, f_cfg, pd.DataFrame(faithful["history"]), "the paper's (latent 6)"),
        (SHARPER, sharp.model, sharp_cfg, sharp.history, variant.words()),
    ):
        rows[name] = {
            "network and loss": words if name == SHARPER else f"{words}, {cfg.loss.upper()} loss",
            "epochs": len(hist),
            "batch size": cfg.batch_size,
            "training images": n_images,
            "encoder parameters": count_parameters(model.encoder),
            "decoder parameters": count_parameters(model.decoder),
            "training time (s)": round(float(hist["seconds"].sum()), 1),
        }
    table = pd.DataFrame(rows)
    table.index.name = "setting"
    return table


def time_ratio(table: pd.DataFrame) -> float:
    """Training time of the sharper model over the faithful one's (Table 13)."""
    seconds = table.loc["training time (s)"]
    return float(seconds[SHARPER] / seconds[FAITHFUL])


def same_z_figure(
    models: Mapping[str, EndoVAE], n: int, seed: int, path,
    priors: Mapping[str, LatentPrior] | None = None,
) -> None:  # fmt: skip
    """Figure 19: n prior samples per model, each from the same seeded standard-normal draws, and
    a row per fitted prior (the same draws mapped into its Gaussian)."""
    gen = torch.Generator().manual_seed(seed)
    widest = max(m.config.latent_dim for m in models.values())
    z = torch.randn(n, widest, generator=gen)  # the first latent_dim coordinates of one draw
    rows, labels = [], []
    for name, model in models.items():
        eps = z[:, : model.config.latent_dim].contiguous()
        rows.append(decode(model, eps))
        labels.append(sample_label(name, "standard"))
        if name in (priors or {}):
            rows.append(decode(model, priors[name].transform(eps)))
            labels.append(sample_label(name, "fitted"))
    show_grid(torch.cat(rows), n, path=path, row_labels=labels)


def fitted_priors(
    paths: RunPaths, splits: se.Splits, sharp_checkpoint: Path, prior: str, device
) -> dict[str, LatentPrior]:
    """{faithful, sharper}: each healthy model's latent prior fitted to its training frames
    (written beside its checkpoint), or {} when `prior` is "standard"."""
    if prior == "standard":
        return {}
    checkpoints = {FAITHFUL: paths.checkpoint("mse"), SHARPER: sharp_checkpoint}
    return {name: load_prior(se.fitted_prior(ckpt, splits.healthy_train, device))
            for name, ckpt in checkpoints.items()}  # fmt: skip


def recon_figure(models: Mapping[str, EndoVAE], sets: Mapping[str, tuple], n: int, path):
    """Figure 20: n held-out frames of each of `image_sets` (unflipped) above each model's
    reconstruction."""
    x = to_tensor(np.concatenate([images[: 4 * n : 4] for images, _ in sets.values()]))
    recons = [reconstruct(m, x) for m in models.values()]
    labels = ["input", *(f"{k} model" for k in models)]
    show_grid(torch.cat([x, *recons]), len(x), path=path, row_labels=labels)


def image_sets(splits: se.Splits) -> dict[str, tuple[np.ndarray, pd.DataFrame]]:
    """Held-out healthy frames and held-out polyps (the classifiers' test sources) in their 4
    flips, as the models trained; rows named file#flip so each image has its own key."""
    out = {}
    for name, images, rows in ((HEALTHY, splits.healthy_test, splits.healthy_test_rows),
                               (POLYPS, splits.polyp_test, splits.polyp_test_rows)):  # fmt: skip
        images, rows = flipped_variants(images, rows)
        out[name] = (images, rows.assign(file=rows["file"] + "#" + rows["flip"]))
    return out


def metric_tables(per_image: pd.DataFrame, n_boot: int, seed: int) -> dict[str, pd.DataFrame]:
    """Table 14 (each model and set: PSNR/SSIM with 95 % CIs) and the paired differences."""
    return {
        "metrics": extended_table(per_image, n_boot=n_boot, seed=seed),
        "paired": paired_table(per_image, a=SHARPER, b=FAITHFUL, n_boot=n_boot, seed=seed),
    }


def anomaly_table(
    per_image: pd.DataFrame, sets: Mapping[str, tuple], n_boot: int, seed: int
) -> pd.DataFrame:
    """Table 15: AUC of the reconstruction error (healthy vs polyps) per model, 95 % CI."""
    records = []
    for model in (FAITHFUL, SHARPER):
        scores = {}
        for name in (HEALTHY, POLYPS):
            rows = per_image[(per_image["model"] == model) & (per_image["images"] == name)]
            order = sets[name][1].set_index("file").loc[rows["file"], "source_id"]
            scores[name] = (-rows["psnr"].to_numpy(), order.to_numpy())  # error up = PSNR down
        (h, h_groups), (p, p_groups) = scores[HEALTHY], scores[POLYPS]
        low, high = auc_bootstrap_ci(
            h, p, n_boot=n_boot, seed=seed, healthy_groups=h_groups, polyp_groups=p_groups
        )
        records.append({"model": model, "auc": anomaly_auc(h, p), "ci_low": low, "ci_high": high,
                        "n_healthy": len(h), "n_polyps": len(p)})  # fmt: skip
    return pd.DataFrame.from_records(records).set_index("model")


def sharp_class_models(
    paths: RunPaths, splits: se.Splits, sharp_checkpoint: Path, variant: Variant, *,
    epochs: int, batch_size: int, lr: float, seed: int, device, precision: str, polyp_init: str,
) -> dict[str, dict]:  # fmt: skip
    """{healthy, polyps}: the sharper healthy model and a sharper polyp model trained here with
    notebook 09's settings (fine-tuned from the sharper healthy one when polyp_init is healthy)."""
    images = splits.generator_sets()["polyps"][0]
    init = sharp_checkpoint if polyp_init == "healthy" else None
    result = train_class_model(
        images, "polyps (sharper)", paths.checkpoint(SHARP_POLYPS), epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, device=device, precision=precision,
        init_from=init, loss=variant.loss, model_config=variant.model_config(), beta=variant.beta,
        ssim_weight=variant.ssim_weight,
    )  # fmt: skip
    return {
        "healthy": {"checkpoint": sharp_checkpoint, "how": "this section's sharper model"},
        "polyps": {"checkpoint": result.checkpoint_path, "seconds": result.seconds,
                   "how": f"{'fine-tuned' if init else 'trained'} here, {len(result.history)} epochs"},
    }  # fmt: skip


def synthetic_comparison(
    paths: RunPaths, splits: se.Splits, sharp_checkpoint: Path, variant: Variant,
    gen: Mapping[str, Any], clf: Mapping[str, Any], *, seed: int, device, precision: str,
    n_boot: int,
) -> pd.DataFrame:  # fmt: skip
    """Table 18: a synthetic-only classifier per pair of class models (faithful: notebook 09's,
    reused when it ran with these `gen` settings; sharper: trained here), on the same test frames;
    with the variant's prior "fitted", each pair once more through its models' fitted priors.
    At the token budget an empty table: a polyp model fine-tuned from a token model says nothing.

    gen: epochs, batch_size, lr, polyp_init of the polyp models; clf: weights, input_size,
    epochs, lr, batch_size of the classifiers (notebook 09's parameters)."""
    if variant.budget == "token":
        return se.results_table({})
    common = {"seed": seed, "device": device, "precision": precision}
    pairs = {
        FAITHFUL: se.class_models(paths, splits, **gen, **common),
        SHARPER: sharp_class_models(paths, splits, sharp_checkpoint, variant, **gen, **common),
    }
    out_root = paths.root / "synthetic_compare"
    sets = {}
    for sampler in ("standard", *(["fitted"] if variant.prior == "fitted" else [])):
        for name, models in pairs.items():
            frames = se.generate_sets(models, splits, out_root / sampler / name, seed=seed,
                                      device=device, progress=False, prior=sampler)  # fmt: skip
            label = synthetic_label(name, sampler)
            sets[label] = se.training_sets(splits, frames, seed)["synthetic only"]
    results = se.run_experiment(sets, splits.test_set(), **clf, **common, n_boot=n_boot)
    return se.results_table(results)


def synthetic_label(name: str, prior: str) -> str:
    """Table 18's row of one model's synthetic frames, sampled through `prior`."""
    return f"{name} synthetic" + (", fitted prior" if prior == "fitted" else "")


TABLE_FILES = {"settings": "table14_sharper_settings", "metrics": "table15_sharper_metrics",
               "paired": "table16_sharper_paired", "anomaly": "table17_sharper_anomaly",
               "synthetic": "table18_sharper_synthetic", "goals": "table19_sharper_goals",
               "quality": "tableS14_sharper_quality"}  # fmt: skip


def save_tables(paths: RunPaths, **tables: pd.DataFrame) -> None:
    """Write each of the section's tables as tables/<TABLE_FILES[name]>.csv (atomically)."""
    for name, table in tables.items():
        atomic_write_csv(paths.tables / f"{TABLE_FILES[name]}.csv", table, index=True)


def pair_models(paths: RunPaths, sharp: TrainResult, device) -> dict[str, EndoVAE]:
    """{faithful: notebook 03's model, sharper: this section's}, in eval mode on `device`."""
    return {FAITHFUL: load_model(paths.checkpoint("mse"), device)[0], SHARPER: sharp.model.eval()}


def results(
    settings: pd.DataFrame, tables: Mapping[str, pd.DataFrame], anomaly: pd.DataFrame,
    quality_table: pd.DataFrame, synthetic: pd.DataFrame, variant: Variant,
) -> dict[str, Any]:  # fmt: skip
    """What results/10.json records: the variant, time ratio, metrics, differences, AUCs, FD."""
    metrics = tables["metrics"].set_index(["model", "images"])
    paired = tables["paired"]
    out = {
        "variant": {
            "latent_dim": variant.latent_dim,
            "norm": variant.norm,
            "loss": variant.loss,
            "beta": variant.beta,
            "ssim_weight": variant.ssim_weight,
            "prior": variant.prior,
            "budget": variant.budget,
        },  # fmt: skip
        "time_ratio": time_ratio(settings),
        "metrics": {
            f"{m} / {i}": {k: float(v) for k, v in row.items()}
            for (m, i), row in metrics.iterrows()
        },  # fmt: skip
        "paired": paired.to_dict(orient="records"),
        "anomaly_auc": {m: float(a) for m, a in anomaly["auc"].items()},
        "synthetic_auc": {m: float(a) for m, a in synthetic["auc"].items()},
        "fd": {str(k): float(v) for k, v in quality_table["FD"].items()},
    }
    return out
