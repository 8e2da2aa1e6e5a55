"""Bonus: a ResNet18 classifier telling real polyp images from their VAE reconstructions.

The original report froze an ImageNet-pretrained ResNet18 and trained a head
Linear(512, 256) - ReLU - Dropout(0.3) - Linear(256, 2) for 30 epochs. The ImageNet weights
are used only when they are already on disk (torchvision's cache or an explicit file): this
module never downloads. Without them the whole ResNet18 (same head) is trained from scratch on
small inputs, which is a different experiment, and the status string says so.

Label 0 = real image, label 1 = reconstruction; scores are the softmax probability of label 1.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn
from torchvision.models import resnet18

from helpers.core.atomic import atomic_write_csv
from helpers.core.paths import RunPaths, display_path
from helpers.core.progress import report_progress
from helpers.core.reference import ORIGINAL_TABLE3
from helpers.core.runtime import Precision, PrecisionChoice, autocast, choose_precision, time_steps
from helpers.train.infer import model_device, reconstruct
from helpers.train.trained import result_key

LABELS = ("real", "reconstructed")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = "resnet18-f37072fd.pth"  # torchvision ResNet18_Weights.IMAGENET1K_V1
PRETRAINED_INPUT_SIZE = 224
SCRATCH_INPUT_SIZE = 40  # small from-scratch input keeps the quick CPU run short


def cached_weights_path() -> Path:
    """Where torchvision caches the ImageNet ResNet18 weights (the file may be absent)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def find_weights(weights: str | os.PathLike = "auto") -> Path | None:
    """Resolve the `weights` parameter: "auto" (cache, if present), "none", or a file path."""
    text = str(weights).strip()
    if text.lower() == "none":
        return None
    if text.lower() == "auto":
        path = cached_weights_path()
        return path if path.is_file() else None
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights={text!r}: file not found (use 'auto' for torchvision's cache or 'none')"
        )
    return path


class RealReconClassifier(nn.Module):
    """ResNet18 backbone (fc removed) + the report's head; input images in [0, 1]."""

    def __init__(self, backbone: nn.Module, frozen: bool, input_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.Linear(512, 256), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(256, 2)
        )
        self.frozen = frozen
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        if frozen:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> RealReconClassifier:
        """Set train/eval mode; a frozen backbone always stays in eval mode (fixed BN stats)."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to the input size (bilinear) and normalise with the ImageNet mean/std."""
        return (_resized(x, self.input_size) - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """512-d backbone features of images in [0, 1]."""
        return self.backbone(self.prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (real, reconstructed) of images in [0, 1]."""
        return self.head(self.features(x))


def build_classifier(
    weights: str | os.PathLike = "auto", input_size: int = 0
) -> tuple[RealReconClassifier, str]:
    """ResNet18 classifier and a plain status line: frozen ImageNet backbone, or from scratch."""
    path = find_weights(weights)
    backbone = resnet18(weights=None)
    if path is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            backbone.load_state_dict(state)
        except Exception as exc:
            raise ValueError(
                f"weights={str(weights)!r}: cannot load {path} as ResNet18: {exc}"
            ) from exc
    backbone.fc = nn.Identity()
    pretrained = path is not None
    if input_size < 0:
        raise ValueError(f"input_size={input_size}: must be >= 0 (0 = automatic)")
    size = input_size or (PRETRAINED_INPUT_SIZE if pretrained else SCRATCH_INPUT_SIZE)
    model = RealReconClassifier(backbone, frozen=pretrained, input_size=size)
    if pretrained:
        status = (
            f"ImageNet ResNet18 weights loaded from {display_path(path)}: the backbone is frozen and only the "
            f"head is trained, on images resized from 96x96 to {size}x{size} (as the original report)."
        )
    else:
        looked = (
            ""
            if str(weights).lower() == "none"
            else f" (not found at {display_path(cached_weights_path())})"
        )
        status = (
            f"No ImageNet weights are available{looked}, and nothing is downloaded: the whole "
            f"ResNet18 with the same head is trained from scratch on {size}x{size} inputs. "
            "This differs from the original report's frozen pretrained backbone."
        )
    return model, status


def select_sources(manifest: pd.DataFrame, n: int, seed: int = 0) -> np.ndarray:
    """Row positions of `n` images with distinct source_id (the first variant of each), seeded."""
    if "source_id" not in manifest.columns:
        raise ValueError("manifest lacks the column 'source_id'")
    firsts = np.flatnonzero(~manifest["source_id"].duplicated().to_numpy())
    if n > len(firsts):
        raise ValueError(
            f"n_pairs={n}: only {len(firsts)} distinct source polyp images are available"
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(firsts, size=n, replace=False))


def split_pairs(
    n_pairs_total: int, n_train: int, n_test: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/test indices over source images (each keeps its real + recon together)."""
    for name, value in (
        ("n_pairs", n_pairs_total),
        ("n_clf_train", n_train),
        ("n_clf_test", n_test),
    ):
        if int(value) < 1:
            raise ValueError(f"{name}={value}: must be >= 1")
    if n_train + n_test > n_pairs_total:
        raise ValueError(
            f"n_clf_train + n_clf_test = {n_train + n_test} exceeds n_pairs={n_pairs_total}"
        )
    order = np.random.default_rng(seed).permutation(n_pairs_total)
    return np.sort(order[:n_train]), np.sort(order[n_train : n_train + n_test])


def pair_set(
    real: torch.Tensor, recon: torch.Tensor, idx: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images real[idx] (label 0) then recon[idx] (label 1), with their labels."""
    if real.shape != recon.shape:
        raise ValueError(
            f"real and recon shapes differ: {tuple(real.shape)} vs {tuple(recon.shape)}"
        )
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    x = torch.cat([real[idx], recon[idx]])
    y = torch.cat([torch.zeros(len(idx), dtype=torch.long), torch.ones(len(idx), dtype=torch.long)])
    return x, y


@torch.no_grad()
def extract_features(
    model: RealReconClassifier, x: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Backbone features of all images, in batches (eval mode)."""
    model.eval()
    device = model_device(model)
    out = [model.features(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def train_classifier(
    model: RealReconClassifier,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    precision: str = "auto",
    compile: bool = False,
) -> pd.DataFrame:
    """Train with Adam + cross-entropy (frozen backbone: head on precomputed features); per-epoch history.

    `precision` "auto" times the candidates of `helpers.core.runtime` on this model and takes the
    fastest (cached per machine); the choice is in `history.attrs["precision"]`.
    """
    if epochs < 1:
        raise ValueError(f"clf_epochs={epochs}: must be >= 1")
    if batch_size < 2:
        raise ValueError(f"clf_batch_size={batch_size}: must be >= 2")
    if len(x_train) != len(y_train):
        raise ValueError(f"x_train has {len(x_train)} images but y_train {len(y_train)} labels")
    device = torch.device(device)
    model.to(device)
    y_train = y_train.long().to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model.frozen:
            inputs, trainable, step = (
                extract_features(model, x_train, batch_size),
                model.head,
                model.head,
            )
        else:  # resize once here, so each epoch only normalises
            inputs, trainable, step = _resized(x_train, model.input_size), model, model
        choice = _classifier_precision(step, inputs, batch_size, device, precision)
        prec = choice.precision
        if prec.channels_last and inputs.ndim == 4:
            model.to(memory_format=torch.channels_last)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam([p for p in trainable.parameters() if p.requires_grad], lr=lr)
        gen = torch.Generator().manual_seed(seed)
        scaler = torch.amp.GradScaler(device.type, enabled=prec.needs_scaler)
        run = torch.compile(step) if compile else step
        history = []
        for epoch in range(1, epochs + 1):
            history.append(
                _train_epoch(model, run, opt, inputs, y_train, batch_size, gen, epoch, prec, scaler)
            )
            seconds = sum(h["seconds"] for h in history)
            report_progress(task="classifier", epoch=epoch, epochs=epochs,
                            seconds_left=seconds / epoch * (epochs - epoch))  # fmt: skip
    model.eval()
    frame = pd.DataFrame(history)
    frame.attrs["precision"] = choice.describe()
    return frame


def _step_speed(
    step: nn.Module, inputs: torch.Tensor, batch_size: int, device: torch.device, prec: Precision
) -> float:
    """Training images/s of a throw-away copy of `step` in `prec`."""
    probe = copy.deepcopy(step).to(device).train()
    x = inputs[:batch_size].to(device)
    if prec.channels_last and x.ndim == 4:
        probe, x = (
            probe.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
    y = torch.zeros(len(x), dtype=torch.long, device=device)
    opt = torch.optim.Adam([p for p in probe.parameters() if p.requires_grad], lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=prec.needs_scaler)

    def one() -> None:
        """One step on a fixed batch."""
        with autocast(device, prec.amp_dtype):
            loss = F.cross_entropy(probe(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        loss.item()

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return time_steps(one, len(x), min_steps=2, min_seconds=0.5)  # dropout draws


def _classifier_precision(
    step: nn.Module, inputs: torch.Tensor, batch_size: int, device: torch.device, precision: str
) -> PrecisionChoice:
    """Resolve `precision`; "auto" times a few steps of a copy of the network per candidate."""
    return choose_precision(
        device,
        precision,
        measure=lambda prec: _step_speed(step, inputs, batch_size, device, prec),
        batch_size=batch_size,
        task="classifier",
    )


def training_speed(
    weights: str = "auto",
    input_size: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    precision: str = "auto",
) -> tuple[float, bool]:
    """(training images/s, frozen backbone) of the classifier a notebook would build, timed here
    (or read from the per-machine cache); frozen: the images/s of extracting features once."""
    device = torch.device(device)
    model, _ = build_classifier(weights, input_size)
    x = torch.rand(batch_size, 3, model.input_size, model.input_size)
    if model.frozen:
        started = time.perf_counter()
        extract_features(model.to(device), x, batch_size)
        return batch_size / max(time.perf_counter() - started, 1e-6), True
    choice = _classifier_precision(model, x, batch_size, device, precision)
    speed = choice.speeds.get(choice.label)
    return speed or _step_speed(model, x, batch_size, device, choice.precision), False


def _resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images resized to size x size (bilinear, antialiased), unchanged if already that size."""
    x = x.float()
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)


def _train_epoch(model, step, opt, inputs, labels, batch_size, gen, epoch, prec, scaler) -> dict:
    """One shuffled pass; returns mean loss and training accuracy of the epoch."""
    start = time.perf_counter()
    model.train()
    device = labels.device
    order = torch.randperm(len(inputs), generator=gen)
    total_loss, correct, seen = 0.0, 0, 0
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        if len(idx) < 2 and seen:  # BatchNorm cannot train on a single image
            continue
        with autocast(device, prec.amp_dtype):
            logits = step(inputs[idx].to(device)).float()
        loss = F.cross_entropy(logits, labels[idx])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        total_loss += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == labels[idx]).sum())
        seen += len(idx)
    return {
        "epoch": epoch,
        "loss": total_loss / seen,
        "accuracy": correct / seen,
        "seconds": time.perf_counter() - start,
    }


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Softmax probability of "reconstructed" (label 1) for each image."""
    model.eval()
    device = model_device(model)
    probs = [
        torch.softmax(model(x[i : i + batch_size].to(device)).float(), dim=1)[:, 1].cpu()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(probs).numpy().astype(np.float64)


def score_metrics(y_true: np.ndarray, prob: np.ndarray) -> dict:
    """Accuracy (argmax, i.e. prob > 0.5), ROC AUC and ROC curve from probabilities of label 1."""
    y_true, prob = np.asarray(y_true).astype(int).ravel(), np.asarray(prob, dtype=float).ravel()
    if y_true.shape != prob.shape:
        raise ValueError(f"{y_true.size} labels but {prob.size} probabilities")
    if set(np.unique(y_true)) != {0, 1}:
        raise ValueError("labels must contain both classes 0 (real) and 1 (reconstructed)")
    fpr, tpr, _ = roc_curve(y_true, prob)
    return {
        "accuracy": float(np.mean((prob > 0.5).astype(int) == y_true)),
        "auc": float(roc_auc_score(y_true, prob)),
        "fpr": fpr,
        "tpr": tpr,
    }


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> dict:
    """accuracy, auc, fpr, tpr of the model on images x with labels y (1 = reconstructed)."""
    prob = predict_proba(model, x, batch_size)
    return score_metrics(np.asarray(torch.as_tensor(y).cpu()), prob)


# --- the bonus experiment of notebook 07 -----------------------------------------------------


def run_experiment(
    real: torch.Tensor,
    recon: torch.Tensor,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    weights: str = "auto",
    input_size: int = 0,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    precision: str = "auto",
    compile: bool = False,
) -> dict:
    """Build, train and test one real-vs-reconstructed classifier; history, metrics and status."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, status = build_classifier(weights, input_size)
    x_train, y_train = pair_set(real, recon, train_idx)
    x_test, y_test = pair_set(real, recon, test_idx)
    start = time.perf_counter()
    history = train_classifier(
        model,
        x_train,
        y_train,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        device=device,
        seed=seed,
        precision=precision,
        compile=compile,
    )
    result = evaluate(model, x_test, y_test, batch_size=max(batch_size, 64))
    result.update(
        {
            "history": history,
            "status": status,
            "pretrained": model.frozen,
            "input_size": model.input_size,
            "n_train": len(x_train),
            "n_test": len(x_test),
            "seconds": time.perf_counter() - start,
            "precision": history.attrs["precision"],
        }
    )
    return result


def check_sizes(n_pairs: int, n_clf_train: int, n_clf_test: int) -> None:
    """The rule that ties three parameters (each checked alone by helpers.config.params): train + test
    pairs fit into n_pairs."""
    if n_clf_train + n_clf_test > n_pairs:
        raise ValueError(
            f"n_clf_train + n_clf_test = {n_clf_train + n_clf_test} exceeds n_pairs={n_pairs}"
        )


def fit_pairs(
    manifest: pd.DataFrame,
    n_pairs: int,
    n_clf_train: int,
    n_clf_test: int,
    allow_fewer: bool,
    processed: str | os.PathLike,
) -> tuple[int, int, int]:
    """n_pairs, n_clf_train, n_clf_test; scaled down (allow_fewer) when fewer source images exist."""
    n_sources = manifest["source_id"].nunique()
    if n_sources >= n_pairs:
        return n_pairs, n_clf_train, n_clf_test
    message = f"n_pairs={n_pairs}: only {n_sources} distinct polyp source images in {processed}"
    if not allow_fewer or n_sources < 2:
        raise ValueError(message + " (set allow_fewer=True to use all of them)")
    warnings.warn(message + "; allow_fewer=True, so all are used", stacklevel=2)
    scale = n_sources / n_pairs
    n_train = max(1, int(n_clf_train * scale))
    return n_sources, n_train, max(1, min(n_sources - n_train, int(n_clf_test * scale)))


def run_experiments(
    models: dict[str, nn.Module],
    real: torch.Tensor,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    device: str | torch.device = "cpu",
    **settings,
) -> dict[str, dict]:
    """`run_experiment` per VAE on the real images and its reconstructions, by label."""
    results = {}
    for label, model in models.items():
        recon = reconstruct(model, real, device=device)
        results[label] = run_experiment(real, recon, train_idx, test_idx, device=device, **settings)
    return results


def table3(results: dict[str, dict]) -> pd.DataFrame:
    """Rows Accuracy and AUC; a column per VAE ("Classifier for MSE VAE"), originals beside."""
    out = pd.DataFrame(index=pd.Index(["Accuracy", "AUC"], name="Metric"))
    for name, res in results.items():
        out[f"Classifier for {name} VAE"] = [res["accuracy"], res["auc"]]
    for name in results:
        out[f"Original: {name} VAE"] = [ORIGINAL_TABLE3[m].get(name, np.nan) for m in out.index]
    return out


def history_table(results: dict[str, dict]) -> pd.DataFrame:
    """Per-epoch training history of every classifier, with its VAE and whether it was pretrained."""
    return pd.concat(
        [
            r["history"].assign(model=label, pretrained=r["pretrained"])
            for label, r in results.items()
        ]
    )


def roc_curves(results: dict[str, dict]) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{"MSE VAE": (fpr, tpr, auc), ...} for `plots.plot_roc` (Figure 9)."""
    return {f"{label} VAE": (r["fpr"], r["tpr"], r["auc"]) for label, r in results.items()}


def save_tables(paths: RunPaths, table: pd.DataFrame, results: dict[str, dict]) -> list[str]:
    """Write Table 3 and the training histories as CSV; return the file names."""
    atomic_write_csv(paths.tables / "table3_classifier.csv", table, index=True)
    atomic_write_csv(paths.tables / "classifier_history.csv", history_table(results))
    return ["table3_classifier.csv", "classifier_history.csv"]


def results_summary(results: dict[str, dict]) -> dict:
    """Table 3's numbers by model key, test sizes, and whether ImageNet weights were used."""
    models = {
        result_key(label): {
            "accuracy": r["accuracy"],
            "auc": r["auc"],
            "n_train": r["n_train"],
            "n_test": r["n_test"],
            "input_size": r["input_size"],
        }
        for label, r in results.items()
    }
    return {"models": models, "pretrained": all(r["pretrained"] for r in results.values())}
