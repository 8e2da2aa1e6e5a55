"""One run of notebook 08: its settings, the arms trained and scored, and the tables it writes.

`AblationRun` holds what the notebook's cells share (data, arms, trained models, per-image
scores, samples) and builds each table of Section 10 with helpers.study.ablations, writing it as
`tables/ablation_<name>.csv`; `results()` gives the numbers for `results/08.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from helpers.config.params import check_all, parse_list
from helpers.core.atomic import atomic_write_csv
from helpers.core.paths import RunPaths
from helpers.data.processed import load_split, to_tensor
from helpers.evaluate import quality
from helpers.study import ablations as ab
from helpers.train.infer import decode_samples

CHECKED = (
    "abl_epochs", "abl_batch_size", "abl_lr", "abl_max_train_images", "abl_checkpoint_every",
    "polyp_train_share", "abl_n_samples", "n_boot", "init", "fid_weights",
)  # fmt: skip
SHORT_SETS = {ab.HEALTHY_TEST: "healthy", ab.POLYPS_EVAL: "polyps"}


@dataclass(frozen=True)
class AblationSettings:
    """Notebook 08's parameters, named as in its parameters cell; checked on creation."""

    abl_epochs: int
    abl_batch_size: int
    abl_lr: float
    abl_max_train_images: int
    abl_checkpoint_every: int
    latent_dims: str
    betas: str
    polyp_train_share: float
    abl_n_samples: int
    n_boot: int
    seed: int
    precision: str = "auto"
    compile: bool = False
    init: str = "pytorch"
    fid_weights: str = ""  # FID Inception weights: "" / "auto" (cache), "none", or a file

    def __post_init__(self) -> None:
        """Apply the rules of helpers.config.params; errors name the bad parameter."""
        check_all(**{name: getattr(self, name) for name in CHECKED})
        self.arms()

    def arms(self) -> list[ab.Arm]:
        """The arms these settings compare."""
        latent = parse_list(self.latent_dims, "latent_dims", int)
        return ab.make_arms(latent, parse_list(self.betas, "betas", float))


@dataclass
class AblationRun:
    """The state notebook 08's cells share, filled in order: load, train, evaluate, tables."""

    paths: RunPaths
    settings: AblationSettings
    device: torch.device | str
    data: ab.AblationData
    arms: list[ab.Arm]
    trained: dict[str, Any] = field(default_factory=dict)  # arm name: fit result
    per_image: pd.DataFrame | None = None
    samples: dict[str, torch.Tensor] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: RunPaths, settings: AblationSettings, device) -> AblationRun:
        """Load notebook 01's images into the ablation sets and make the arms."""
        s = settings
        data = ab.load_ablation_data(
            paths.processed, polyp_share=s.polyp_train_share, seed=s.seed,
            max_train_images=s.abl_max_train_images,
        )  # fmt: skip
        return cls(paths, settings, device, data, settings.arms())

    @property
    def labels(self) -> dict[str, str]:
        """{arm name: label}."""
        return {arm.name: arm.label for arm in self.arms}

    def labels_in(self, study: str) -> dict[str, str]:
        """{arm name: label in the study's table} for the arms of one study."""
        return {a.name: a.label_in(study) for a in ab.study_arms(self.arms, study)}

    def _write(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """Keep a table and write it as `tables/ablation_<name>.csv`."""
        self.tables[name] = table
        atomic_write_csv(self.paths.tables / f"ablation_{name}.csv", table)
        return table

    def train(self) -> None:
        """Train (or resume) every arm under the shared budget; checkpoints per arm."""
        s, folder = self.settings, self.paths.checkpoints / "ablations"
        folder.mkdir(parents=True, exist_ok=True)
        for arm in self.arms:
            images, _ = ab.training_set(arm, self.data, s.seed)
            self.trained[arm.name] = ab.run_arm(
                arm, images, epochs=s.abl_epochs, batch_size=s.abl_batch_size, lr=s.abl_lr,
                seed=s.seed, checkpoint_dir=folder, device=self.device,
                checkpoint_every=s.abl_checkpoint_every, precision=s.precision, compile=s.compile,
                init=s.init,
            )  # fmt: skip

    def arms_table(self) -> pd.DataFrame:
        """Table 4's numbers: settings, training images, budget and time per arm."""
        return self._write(
            "arms", ab.arms_table(self.arms, self.trained, self.data, self.settings.seed)
        )

    def evaluate(self) -> None:
        """Score every arm per image (written as ablation_per_image.csv) and decode its samples."""
        frames = [
            ab.evaluate_arm(self.trained[arm.name].model, arm, self.data, device=self.device)
            for arm in self.arms
        ]
        self.per_image = self._write("per_image", pd.concat(frames, ignore_index=True))
        n, seed = self.settings.abl_n_samples, self.settings.seed
        self.samples = {
            arm.name: decode_samples(self.trained[arm.name].model, n, seed=seed)
            for arm in self.arms
        }

    def _study(self, name: str, entries: dict[str, str], reference: str, **kw) -> pd.DataFrame:
        """A study table (means, paired change vs reference) kept and written under `name`."""
        s = self.settings
        table = ab.study_table(self.per_image, entries, reference, s.n_boot, s.seed, **kw)
        return self._write(name, table)

    def study_table(self, study: str) -> pd.DataFrame:
        """Tables 5, 6 and 9: the arms of one study against the baseline."""
        return self._study(study, self.labels_in(study), ab.BASELINE)

    def artifacts_table(self) -> pd.DataFrame:
        """Table 7: baseline as is and with masked scoring, and the masked arm."""
        entries = {
            ab.BASELINE: "artifacts kept (baseline)",
            ab.MASKED_SCORING: "baseline, masked scoring",
            "masked": "artifacts masked",
        }
        return self._study("artifacts", entries, ab.MASKED_SCORING, no_delta=[ab.BASELINE])

    def baseline_training_set(self):
        """The baseline's training images and their manifest rows."""
        return ab.training_set(
            ab.arm_by_name(self.arms, ab.BASELINE), self.data, self.settings.seed
        )

    def green_table(self) -> pd.DataFrame:
        """Table 8: green-box rates of real images (detector check) and of every arm's samples."""
        sources = {
            "real: healthy training images": self.baseline_training_set()[0],
            "real: held-out healthy images": self.data.healthy_test,
            "real: unseen polyp images": self.data.polyp_eval,
        }
        sources.update({f"samples: {arm.label}": self.samples[arm.name] for arm in self.arms})
        return self._write(
            "green_box", ab.green_box_table(sources, self.settings.n_boot, self.settings.seed)
        )

    def anomaly_arms(self) -> list[str]:
        """Arms scored as anomaly detectors: the baseline, then the other polyp-study arms."""
        others = [a.name for a in ab.study_arms(self.arms, "polyps") if a.name != ab.BASELINE]
        return [ab.BASELINE, *others]

    def anomaly_table(self) -> pd.DataFrame:
        """Table 10: AUC of each anomaly score, held-out healthy vs unseen polyps."""
        s = self.settings
        return self._write(
            "anomaly", ab.anomaly_table(self.per_image, self.anomaly_arms(), s.n_boot, s.seed)
        )

    def gap_table(self) -> pd.DataFrame:
        """Table 11: the baseline on its training images vs the held-out ones."""
        s = self.settings
        return self._write("split", ab.split_gap_table(self.per_image, s.n_boot, s.seed))

    def quality_table(self) -> pd.DataFrame:
        """Table S12: each arm's prior samples against the held-out healthy images (FD, KID, P/R).

        The samples of `evaluate` when they are enough for the reference half, else as many from
        the same seeded z and on; features learnt from all healthy training images, as notebook
        05's Table S11.
        """
        s, test = self.settings, self.data.healthy_test
        train, rows = load_split(self.paths.processed, "normal", "train")
        extractor = quality.extractor_for(
            train, rows["source_class"].tolist(), s.fid_weights, s.seed, self.device
        )
        n, samples = quality.frames_needed(len(test)), {}
        for arm in self.arms:
            have = self.samples[arm.name]
            samples[arm.label] = have if len(have) >= n else decode_samples(
                self.trained[arm.name].model, n, seed=s.seed
            )  # fmt: skip
        table = quality.quality_table(
            extractor, to_tensor(test), samples, seed=s.seed,
            groups=self.data.healthy_test_rows["source_id"].tolist(),
        )  # fmt: skip
        table.attrs["real"] = f"{len(test)} held-out healthy images"
        self.tables["quality"] = table
        atomic_write_csv(self.paths.tables / "ablation_quality.csv", table, index=True)
        return table

    def masked_labels(self) -> list[str]:
        """Labels of the arms trained on masked images (their black regions count in Table S12)."""
        return [arm.label for arm in self.arms if arm.mask]

    def kld_means(self) -> dict[str, float]:
        """Per arm: mean KL divergence on the held-out healthy images."""
        return ab.mean_kld(self.per_image)

    def written(self) -> list[str]:
        """Sorted names of the ablation tables this run wrote."""
        return sorted(f"ablation_{name}.csv" for name in self.tables)

    def results(self) -> dict[str, Any]:
        """The numbers for results/08.json: tables written, study means and changes, AUCs, gap."""
        return {
            "tables": self.written(),
            "studies": {
                name: study_results(self.tables[name])
                for name in ("latent", "beta", "artifacts", "polyps")
                if name in self.tables
            },
            "anomaly_auc": anomaly_results(self.tables.get("anomaly")),
            "split_gap": gap_results(self.tables.get("split")),
            "quality": quality_results(self.tables.get("quality")),
        }

    def saved_text(self, seconds: float) -> str:
        """The closing line: run time and the tables and figures written."""
        saved = self.written()
        saved += sorted(p.name for p in self.paths.figures.glob("fig1[0-5]_*.png"))
        return f"notebook 08 took {seconds:.0f} s; saved: {', '.join(saved)}"


def study_results(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """{entry: {healthy|polyps: psnr, ssim and the paired changes with CIs}} of a study table."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    keys = ("psnr_mean", "ssim_mean", "d_psnr_mean", "d_psnr_ci_low", "d_psnr_ci_high",
            "d_ssim_mean", "d_ssim_ci_low", "d_ssim_ci_high")  # fmt: skip
    for r in table.to_dict("records"):
        images = SHORT_SETS.get(r["images"], r["images"])
        out.setdefault(r["entry"], {})[images] = {k.removesuffix("_mean"): r[k] for k in keys}
    return out


def anomaly_results(table: pd.DataFrame | None) -> dict[str, dict[str, dict[str, float]]]:
    """{arm: {score: auc, ci_low, ci_high}} of the anomaly table ({} when missing)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in [] if table is None else table.to_dict("records"):
        out.setdefault(r["arm"], {})[r["score"]] = {k: r[k] for k in ("auc", "ci_low", "ci_high")}
    return out


def gap_results(table: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    """{psnr|ssim: training, held_out, gap with its CI} of the split table ({} when missing)."""
    out: dict[str, dict[str, float]] = {}
    for r in [] if table is None else table.to_dict("records"):
        metric = out.setdefault(r["metric"], {})
        if r["images"] == ab.HEALTHY_TRAIN:
            metric["training"] = r["mean"]
        elif r["images"] == ab.HEALTHY_TEST:
            metric["held_out"] = r["mean"]
        else:
            metric.update(gap=r["mean"], gap_ci_low=r["ci_low"], gap_ci_high=r["ci_high"])
    return out


def quality_results(table: pd.DataFrame | None) -> dict[str, Any]:
    """Table S12 as results/08.json holds it ({} when it was not made)."""
    if table is None:
        return {}
    return {**quality.quality_results(table), "real": table.attrs.get("real", "")}
