"""Notebook 09: EndoVAE frames as training data (train on real / synthetic / both, test on real).

Splits (all by source frame, so no flip of a test frame is ever trained on):
    healthy  notebook 01's split: "train" sources train the healthy EndoVAE and the classifiers,
             the unflipped image of each "test" source is a test frame
    polyps   `processed.polyp_pool_split`: a seeded share of the polyp sources (4 flips each)
             trains the polyp EndoVAE and the classifiers, the other sources are test frames

The healthy EndoVAE is notebook 03's MSE model when its checkpoint was trained on exactly the
healthy training images (checked by the data digest fit stores), else one is trained here; the
polyp EndoVAE is always trained here (`helpers.study.generate.train_class_model`). Every classifier
is the bonus classifier's network (`helpers.evaluate.classifier`, label 1 = polyp), trained on as many
images per class as the smaller real class has, and tested on the same held-out real frames.
Intervals: 95 % percentile bootstraps over test frames (one frame per source).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from helpers.core.fingerprint import file_digest
from helpers.core.plots import grid_image, save_figure, show_grid
from helpers.core.reference import PAPER_SYNTHETIC_AUC
from helpers.core.runtime import get_device
from helpers.core.stats import auc_bootstrap_ci, bootstrap_ci
from helpers.data.processed import (
    assert_disjoint_sources,
    flipped_variants,
    load_split,
    polyp_pool_split,
    to_tensor,
)
from helpers.evaluate import classifier, quality
from helpers.model.endovae import PRIORS, EndoVAE
from helpers.study.generate import (
    decode_uint8,
    generate_images,
    load_generated,
    load_model,
    train_class_model,
    trained_on,
)
from helpers.train.checkpoint import read_checkpoint
from helpers.train.prior import fit_latent_prior, images_digest
from helpers.train.prior import load as load_prior

ROWS = ("real only", "synthetic only", "real + synthetic")
CLASSES = ("healthy", "polyps")
_PICK_STREAM = 0x09
POLYP_INITS = ("scratch", "healthy")


@dataclass
class Splits:
    """Training and test images of both classes (uint8 N x 96 x 96 x 3) with manifest rows."""

    healthy_train: np.ndarray
    healthy_train_rows: pd.DataFrame
    healthy_test: np.ndarray
    healthy_test_rows: pd.DataFrame
    polyp_train: np.ndarray
    polyp_train_rows: pd.DataFrame
    polyp_test: np.ndarray
    polyp_test_rows: pd.DataFrame

    @property
    def n_per_class(self) -> int:
        """Classifier training images per class (the smaller real class)."""
        return min(len(self.healthy_train), len(self.polyp_train))

    def train(self, name: str) -> np.ndarray:
        """Training images of class `name` (healthy or polyps)."""
        return self.healthy_train if name == "healthy" else self.polyp_train

    def test_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out real frames and labels (0 healthy, 1 polyp)."""
        x = np.concatenate([self.healthy_test, self.polyp_test])
        y = np.r_[np.zeros(len(self.healthy_test)), np.ones(len(self.polyp_test))].astype(int)
        return x, y

    def source_table(self) -> pd.DataFrame:
        """One row per source frame: class, role (train/test) and images used."""
        parts = []
        for cls, role, rows in (
            ("healthy", "train", self.healthy_train_rows), ("healthy", "test", self.healthy_test_rows),
            ("polyps", "train", self.polyp_train_rows), ("polyps", "test", self.polyp_test_rows),
        ):  # fmt: skip
            counts = rows.groupby("source_id").size().rename("images").reset_index()
            parts.append(counts.assign(**{"class": cls, "role": role}))
        return pd.concat(parts, ignore_index=True)[["source_id", "class", "role", "images"]]

    def generator_sets(self, per_healthy_class: bool = False) -> dict[str, tuple]:
        """{model name: (training images, rows)}: healthy (or one per healthy class) and polyps."""
        out = {"healthy": (self.healthy_train, self.healthy_train_rows)}
        if per_healthy_class:
            rows = self.healthy_train_rows
            out = {name: (self.healthy_train[(rows["source_class"] == name).to_numpy()],
                          rows[rows["source_class"] == name].reset_index(drop=True))
                   for name in sorted(set(rows["source_class"]))}  # fmt: skip
        out["polyps"] = (self.polyp_train, self.polyp_train_rows)
        return out

    def model_counts(self, names: Sequence[str]) -> dict[str, int]:
        """Frames each model generates: n_per_class per label, healthy shared by training size."""
        sets = self.generator_sets(per_healthy_class=set(names) != set(CLASSES))
        healthy = [m for m in names if label_of(m) == "healthy"]
        sizes = np.array([len(sets[m][0]) for m in healthy], dtype=float)
        share = self.n_per_class * sizes / sizes.sum()
        counts = np.floor(share).astype(int)
        counts[np.argsort(counts - share)[: self.n_per_class - counts.sum()]] += 1
        return {**dict(zip(healthy, counts.tolist(), strict=True)), "polyps": self.n_per_class}


def label_of(name: str) -> str:
    """Classifier label group of a generative model: "polyps" or "healthy"."""
    return "polyps" if name == "polyps" else "healthy"


def by_label(synthetic: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-model synthetic frames joined per label (healthy, polyps)."""
    return {
        c: np.concatenate([v for k, v in synthetic.items() if label_of(k) == c]) for c in CLASSES
    }


def load_splits(processed: str | os.PathLike, polyp_train_share: float, seed: int) -> Splits:
    """Notebook 01's images split by source frame (see module doc); checks disjointness."""
    h_train, h_train_rows = load_split(processed, "normal", "train")
    h_test, h_test_rows = load_split(processed, "normal", "test")
    polyps, p_rows = load_split(processed, "polyps")
    if len(h_train) == 0 or len(h_test) == 0:
        raise ValueError(
            f"{processed}: need healthy training and held-out images; rerun notebook 01 "
            "with healthy_test_fraction > 0"
        )
    keep = (h_test_rows["flip"] == "none").to_numpy()
    h_test, h_test_rows = h_test[keep], h_test_rows[keep].reset_index(drop=True)
    train_idx, test_idx = polyp_pool_split(p_rows, polyp_train_share, seed)
    p_train, p_train_rows = flipped_variants(polyps[train_idx], p_rows.iloc[train_idx])
    test_rows = p_rows.iloc[test_idx].reset_index(drop=True)
    unflipped = (test_rows["flip"] == "none").to_numpy()
    p_test, p_test_rows = polyps[test_idx][unflipped], test_rows[unflipped].reset_index(drop=True)
    assert_disjoint_sources(h_train_rows, h_test_rows, "healthy training vs test frames")
    assert_disjoint_sources(p_train_rows, p_test_rows, "polyp training vs test frames")
    return Splits(h_train, h_train_rows, h_test, h_test_rows, p_train, p_train_rows, p_test,
                  p_test_rows)  # fmt: skip


# --- the class-wise EndoVAEs -------------------------------------------------------------------


def class_models(
    paths: Any,
    splits: Splits,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "auto",
    precision: str = "auto",
    per_healthy_class: bool = False,
    progress: bool = True,
    polyp_init: str = "scratch",
) -> dict[str, dict]:
    """{model: checkpoint, how, seconds}: notebook 03's MSE model when it fits, else train here.

    `polyp_init` "healthy" starts the polyp model from the healthy model's weights (fine-tuning;
    it then has seen the healthy training frames too), "scratch" trains it as the paper does.
    """
    if polyp_init not in POLYP_INITS:
        raise ValueError(f"polyp_init={polyp_init!r}: expected one of {', '.join(POLYP_INITS)}")
    out = {}
    for cls, (images, _) in splits.generator_sets(per_healthy_class).items():
        reuse = paths.checkpoint("mse") if cls == "healthy" else None
        if reuse is not None and trained_on(reuse, images):
            out[cls] = {"checkpoint": reuse, "how": "notebook 03's MSE model", "seconds": 0.0}
            continue
        init = out.get("healthy", {}).get("checkpoint") if polyp_init == "healthy" else None
        init = init if cls == "polyps" else None
        result = train_class_model(
            images, cls, paths.checkpoint(f"gen_{cls}"), epochs=epochs,
            batch_size=batch_size, lr=lr, seed=seed, device=device, precision=precision,
            progress=progress, init_from=init,
        )  # fmt: skip
        start = "fine-tuned from the healthy model" if init else "trained from scratch"
        how = f"{start} here for {len(result.history)} epochs"
        out[cls] = {"checkpoint": result.checkpoint_path, "how": how, "seconds": result.seconds,
                    "init": "healthy" if init else None}  # fmt: skip
    return out


def provenance(models: Mapping[str, dict], splits: Splits) -> pd.DataFrame:
    """Per model: checkpoint, SHA-256, training images/sources and test sources it saw (must be 0)."""
    table = splits.source_table()
    test_ids = set(table.loc[table["role"] == "test", "source_id"])
    rows = []
    sets = splits.generator_sets(per_healthy_class=set(models) != set(CLASSES))
    for cls, info in models.items():
        images, train_rows = sets[cls]
        seen = train_rows  # fine-tuned: it has also seen what its starting model saw
        seen = pd.concat([seen, sets[info["init"]][1]]) if info.get("init") else seen
        if not trained_on(info["checkpoint"], images):
            raise ValueError(f"{info['checkpoint']}: not trained on the {cls} training images")
        rows.append({
            "class": cls, "checkpoint": Path(info["checkpoint"]).name,
            "checkpoint_sha256": file_digest(info["checkpoint"]), "model": info["how"],
            "training images": len(train_rows),
            "training sources": train_rows["source_id"].nunique(),
            "test sources seen": len(set(seen["source_id"]) & test_ids),
        })  # fmt: skip
    out = pd.DataFrame(rows)
    if out["test sources seen"].any():
        raise ValueError("a generative model saw a test frame; the split is broken")
    return out


def generate_sets(
    models: Mapping[str, dict],
    splits: Splits,
    out_root: str | os.PathLike,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    prior: str = "standard",
) -> dict[str, np.ndarray]:
    """Frames of each model (`Splits.model_counts`) with `helpers.study.generate` into
    out_root/<model>/; `prior` "fitted" samples each model's Gaussian fitted to its own training
    frames (`fitted_prior`), "standard" N(0, I) as the paper."""
    if prior not in PRIORS:
        raise ValueError(f"prior={prior!r}: expected one of {', '.join(PRIORS)}")
    out, sets = {}, splits.generator_sets(per_healthy_class=set(models) != set(CLASSES))
    for cls, n in splits.model_counts(list(models)).items():
        info, folder = models[cls], Path(out_root) / cls
        path = fitted_prior(info["checkpoint"], sets[cls][0], device) if prior == "fitted" else None
        generate_images(info["checkpoint"], n, folder, seed=seed, temperature=temperature,
                        class_name=cls, device=device, replace=True, progress=progress,
                        prior=path)  # fmt: skip
        images, manifest = load_generated(folder)
        out[cls] = images[manifest["index"].to_numpy() < n]
    return out


def fitted_prior(checkpoint: str | os.PathLike, images: np.ndarray, device) -> Path:
    """<checkpoint>.prior.json: the checkpoint's latent prior fitted to `images` (its training
    frames), refitted unless the file already belongs to this checkpoint and these images."""
    checkpoint = Path(checkpoint)
    path, sha = checkpoint.with_suffix(".prior.json"), file_digest(checkpoint)
    with contextlib.suppress(ValueError):
        old = load_prior(path)
        if old.checkpoint_sha256 == sha and old.images_digest == images_digest(images):
            return path
    model = load_model(checkpoint, get_device(str(device)))[0]
    return fit_latent_prior(model, images, checkpoint_sha256=sha).save(path)


# --- sample quality --------------------------------------------------------------------------------


def quality_real(splits: Splits, name: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Held-out real frames of a generative model's class, in their 4 flips (as it trained)."""
    if name == "polyps":
        images, rows = splits.polyp_test, splits.polyp_test_rows
    else:
        images, rows = splits.healthy_test, splits.healthy_test_rows
        if name != "healthy":  # one model per healthy class
            keep = (rows["source_class"] == name).to_numpy()
            images, rows = images[keep], rows[keep].reset_index(drop=True)
    return flipped_variants(images, rows)


def sample_quality(
    splits: Splits, synthetic: Mapping[str, np.ndarray], fid_weights: str = "", seed: int = 0,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:  # fmt: skip
    """Table S13: each model's synthetic frames against its class's held-out real frames.

    One extractor (helpers.evaluate.quality) learns from every training frame of both classes
    and their Kvasir classes; rows are (model, set), each model with its own scale rows.
    """
    train = np.concatenate([splits.healthy_train, splits.polyp_train])
    classes = [*splits.healthy_train_rows["source_class"], *splits.polyp_train_rows["source_class"]]
    extractor = quality.extractor_for(train, classes, fid_weights, seed, device)
    tables, real_words = {}, []
    for name, frames in synthetic.items():
        real, rows = quality_real(splits, name)
        tables[name] = quality.quality_table(
            extractor, to_tensor(real), {f"{name} model": to_tensor(frames)}, seed=seed,
            groups=rows["source_id"].tolist(),
        )  # fmt: skip
        real_words.append(f"{len(real)} {name}")
    table = pd.concat(tables, names=["model", "set"])
    table.attrs = {**tables[next(iter(tables))].attrs,
                   "real": f"held-out real frames in 4 flips: {', '.join(real_words)}"}  # fmt: skip
    return table


def quality_results(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Table S13 for results/09.json: per model, helpers.evaluate.quality.quality_results."""
    out = {}
    for name in table.index.unique("model"):
        part = table.xs(name, level="model")
        part.attrs = dict(table.attrs)
        out[name] = quality.quality_results(part)
    return out


# --- the classifiers -----------------------------------------------------------------------------


def training_sets(
    splits: Splits, synthetic: Mapping[str, np.ndarray], seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images and labels for the rows real only / synthetic only / real + synthetic."""
    n, synthetic = splits.n_per_class, by_label(synthetic)
    rng = np.random.default_rng([seed, _PICK_STREAM])
    real = [splits.train(c)[np.sort(rng.choice(len(splits.train(c)), n, replace=False))]
            for c in CLASSES]  # fmt: skip
    fake = []
    for cls in CLASSES:
        if len(synthetic[cls]) < n:
            raise ValueError(f"synthetic {cls}: {len(synthetic[cls])} frames, need {n}")
        fake.append(synthetic[cls][:n])
    y = np.r_[np.zeros(n), np.ones(n)].astype(int)
    real_x, fake_x = np.concatenate(real), np.concatenate(fake)
    return {
        "real only": (real_x, y),
        "synthetic only": (fake_x, y),
        "real + synthetic": (np.concatenate([real_x, fake_x]), np.r_[y, y]),
    }


def run_experiment(
    sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    test: tuple[np.ndarray, np.ndarray],
    *,
    weights: str = "auto",
    input_size: int = 0,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    n_boot: int = 2000,
    precision: str = "auto",
) -> dict[str, dict]:
    """Train one healthy-vs-polyp classifier per training set; scores and 95 % CIs on `test`."""
    x_test, y_test = to_tensor(test[0]), np.asarray(test[1])
    results = {}
    for name, (x, y) in sets.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, status = classifier.build_classifier(weights, input_size)
        history = classifier.train_classifier(
            model, to_tensor(x), torch.as_tensor(y), epochs=epochs, lr=lr,
            batch_size=batch_size, device=device, seed=seed, precision=precision,
        )  # fmt: skip
        prob = classifier.predict_proba(model, x_test)
        res = classifier.score_metrics(y_test, prob)
        correct = ((prob > 0.5).astype(int) == y_test).astype(float)
        res["accuracy_ci"] = bootstrap_ci(correct, n_boot=n_boot, seed=seed)
        res["auc_ci"] = auc_bootstrap_ci(prob[y_test == 0], prob[y_test == 1], n_boot, seed=seed)
        res.update(prob=prob, history=history, status=status, n_train=len(x), n_test=len(y_test),
                   seconds=float(history["seconds"].sum()),
                   precision=history.attrs.get("precision", ""))  # fmt: skip
        results[name] = res
    return results


def results_table(results: Mapping[str, dict]) -> pd.DataFrame:
    """Numbers of Table 12: one row per training set, CIs and the paper's AUC beside."""
    rows = []
    for name, r in results.items():
        paper = PAPER_SYNTHETIC_AUC.get(name, (np.nan, np.nan))
        rows.append({"Training data": name, "training images": r["n_train"],
                     "test images": r["n_test"], "accuracy": r["accuracy"],
                     "accuracy_low": r["accuracy_ci"][0], "accuracy_high": r["accuracy_ci"][1],
                     "auc": r["auc"], "auc_low": r["auc_ci"][0], "auc_high": r["auc_ci"][1],
                     "paper_auc": paper[0], "paper_auc_std": paper[1]})  # fmt: skip
    columns = ["Training data", "training images", "test images", "accuracy", "accuracy_low",
               "accuracy_high", "auc", "auc_low", "auc_high", "paper_auc", "paper_auc_std"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns).set_index("Training data")


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Table 12 as shown: percentages with 95 % CIs, the paper's AUC (mean ± std) beside."""

    def ci(mean: float, low: float, high: float) -> str:
        """'90.9 % (85.1 to 95.0)'."""
        return f"{100 * mean:.1f} % ({100 * low:.1f} to {100 * high:.1f})"

    return pd.DataFrame(
        {
            "Training images": table["training images"],
            "Accuracy (95 % CI)": [ci(*r) for r in table[["accuracy", "accuracy_low", "accuracy_high"]].to_numpy()],
            "ROC AUC (95 % CI)": [ci(*r) for r in table[["auc", "auc_low", "auc_high"]].to_numpy()],
            "Paper, KID: ROC AUC": [
                "not reported" if np.isnan(m) else f"{100 * m:.1f} ± {100 * s:.1f} %"
                for m, s in table[["paper_auc", "paper_auc_std"]].to_numpy()
            ],
        },
        index=table.index,
    )  # fmt: skip


def roc_curves(results: Mapping[str, dict]) -> dict[str, tuple]:
    """{row: (fpr, tpr, auc)} for helpers.core.plots.plot_roc."""
    return {name: (r["fpr"], r["tpr"], r["auc"]) for name, r in results.items()}


def classifier_results(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Table 12's rows for results/09.json: {row: auc, auc_low, auc_high, accuracy, ...}."""
    keys = ("auc", "auc_low", "auc_high", "accuracy", "accuracy_low", "accuracy_high")
    return {
        row: {**{k: float(r[k]) for k in keys}, "training_images": int(r["training images"]),
              "test_images": int(r["test images"])}
        for row, r in table.iterrows()
    }  # fmt: skip


def saved_text(models: Mapping[str, dict], results: Mapping[str, dict]) -> str:
    """The closing line: what was saved and the training seconds of each model and classifier."""
    seconds = {cls: round(info["seconds"], 1) for cls, info in models.items()}
    seconds |= {row: round(r["seconds"], 1) for row, r in results.items()}
    return f"saved table12_synthetic.csv, fig16-fig18; training seconds: {seconds}"


def spread(images: np.ndarray) -> float:
    """Mean over pixels of the standard deviation across images, in [0, 1] units."""
    return float(np.asarray(images, dtype=np.float32).std(axis=0).mean() / 255.0)


def final_kld_per_image(checkpoint: str | os.PathLike) -> float:
    """The last epoch's KL divergence per image (nats) from a checkpoint's history."""
    state = read_checkpoint(checkpoint)
    history, batch = state.get("history") or [], (state.get("train_config") or {}).get("batch_size")
    return float(history[-1]["kld"] / batch) if history and batch else float("nan")


def model_facts(
    models: Mapping[str, dict],
    prov: pd.DataFrame,
    splits: Splits,
    synthetic: Mapping[str, np.ndarray],
) -> list[dict]:
    """Per generative model: origin, training images/sources, final KLD and frame variation."""
    facts = []
    for _, r in prov.iterrows():
        cls = r["class"]
        real = splits.generator_sets(set(models) != set(CLASSES))[cls][0]
        facts.append({
            "class": cls, "how": models[cls]["how"], "training images": r["training images"],
            "training sources": r["training sources"], "test sources seen": r["test sources seen"],
            "kld": final_kld_per_image(models[cls]["checkpoint"]),
            "spread": spread(synthetic[cls]), "real images": len(real), "real spread": spread(real),
            "generated": len(synthetic[cls]),
        })  # fmt: skip
    return facts


# --- figures and the latent explorer --------------------------------------------------------------


@torch.inference_mode()
def traversal(model: EndoVAE, limit: float = 3.0, steps: int = 7) -> torch.Tensor:
    """Decoded images, one row per latent dimension swept from -limit to limit (others 0)."""
    dim = model.config.latent_dim
    values = torch.linspace(-limit, limit, steps)
    z = torch.zeros(dim, steps, dim)
    for d in range(dim):
        z[d, :, d] = values
    return torch.from_numpy(decode_uint8(model, z.reshape(-1, dim)))


def plot_traversals(models: Mapping[str, EndoVAE], limit: float = 3.0, steps: int = 7, path=None):
    """Side-by-side latent traversal grids (rows z1..zd, columns -limit..limit) per model."""
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 5.0), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items(), strict=True):
        grid = grid_image(traversal(model, limit, steps), nrow=steps)
        dim = model.config.latent_dim
        ax.imshow(grid)
        ax.set_yticks([(i + 0.5) * grid.shape[0] / dim for i in range(dim)],
                      [f"z{i + 1}" for i in range(dim)])  # fmt: skip
        ticks = np.linspace(-limit, limit, steps)
        ax.set_xticks([(i + 0.5) * grid.shape[1] / steps for i in range(steps)],
                      [f"{v:g}" for v in ticks])  # fmt: skip
        ax.set_title(f"{name} model")
        ax.set_xlabel("value of the varied latent dimension (others 0)")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_samples(splits: Splits, synthetic: Mapping[str, np.ndarray], n: int = 8, path=None):
    """Rows: real healthy, synthetic healthy, real polyps, synthetic polyps (n each)."""
    real, synthetic = (
        {"healthy": splits.healthy_train, "polyps": splits.polyp_train},
        by_label(synthetic),
    )
    n = min(n, *(len(a) for a in (*real.values(), *synthetic.values())))
    rows, labels = [], []
    for cls in CLASSES:
        pick = np.linspace(0, len(real[cls]) - 1, n).astype(int)
        rows += [
            real[cls][pick],
            synthetic[cls][np.linspace(0, len(synthetic[cls]) - 1, n).astype(int)],
        ]
        labels += [f"real {cls}", f"synthetic {cls}"]
    return show_grid(np.concatenate(rows), nrow=n, row_labels=labels, path=path)


def live_frontend() -> bool:
    """True in a Jupyter kernel whose frontend answers input requests (Lab, Notebook, Colab).

    papermill, nbconvert and nbclient execute with stdin disabled, so this is False there.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))


def explorer_png(model: EndoVAE, values, scale: int = 3) -> bytes:
    """PNG bytes of the frame decoded from latent `values`, enlarged `scale` times."""
    image = Image.fromarray(
        decode_uint8(model, torch.tensor([list(values)], dtype=torch.float32))[0]
    )
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def latent_explorer(models: Mapping[str, EndoVAE], enabled: bool = True, limit: float = 3.0):
    """ipywidgets panel (model menu, one slider per latent dimension, decoded frame) or None.

    None (so the cell shows nothing) unless `enabled`, ipywidgets is installed and the kernel
    has a live frontend (`live_frontend`); papermill and the PDF get the traversal figure.
    """
    if not enabled or not live_frontend():
        return None
    try:
        import ipywidgets as widgets
    except ImportError:
        return None
    return build_explorer(widgets, models, limit)


def build_explorer(widgets: Any, models: Mapping[str, EndoVAE], limit: float = 3.0):
    """The explorer's widgets, wired: any change redraws the decoded frame."""
    menu = widgets.Dropdown(options=list(models), description="model")
    dim = next(iter(models.values())).config.latent_dim
    sliders = [widgets.FloatSlider(value=0.0, min=-limit, max=limit, step=0.1,
                                   description=f"z{i + 1}") for i in range(dim)]  # fmt: skip
    image = widgets.Image(format="png")

    def redraw(_change=None) -> None:
        """Decode the sliders' latent with the chosen model."""
        image.value = explorer_png(models[menu.value], [s.value for s in sliders])

    for control in (menu, *sliders):
        control.observe(redraw, names="value")
    redraw()
    return widgets.HBox([widgets.VBox([menu, *sliders]), image])
