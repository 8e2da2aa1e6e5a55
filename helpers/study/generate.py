"""Synthetic endoscopy frames from a trained EndoVAE: generation, safetensors export, class models.

    python -m helpers.generate --checkpoint PATH --n N --out DIR [--seed S] [--temperature T]
        [--prior FILE] [--class NAME] [--batch-size B] [--device D]

writes N 96x96 PNGs `<class>_<index>.png` and `manifest.csv` (file, class, seed, index, z,
temperature, checkpoint_sha256) into DIR. The latent of frame i is `temperature * eps_i` with
eps_i ~ N(0, I) drawn from numpy's generator seeded by (seed, i), so every frame depends only on
the checkpoint, the seed, the temperature and its index. `--prior FILE` (a fitted latent prior of
that checkpoint, helpers.train.prior) maps each latent into its Gaussian: mean + L @ z (the
manifest's z is the one decoded, the stamp names the prior). Frames are decoded in blocks of
`batch_size` aligned to the index, every PNG and the manifest are written atomically (temp name
+ rename), and `generate.json` records the settings first: a rerun after a crash (even SIGKILL)
decodes only the blocks with missing frames and ends with the same files as an uninterrupted
run. A folder holding anything else, or frames made with other settings, is refused (exit 2).

Checkpoints are `helpers.train.checkpoint` files (.pt) or exports of `export_safetensors` (weights as
safetensors with the config in its metadata, plus a JSON model card beside it).
Class-wise models (the paper trains one EndoVAE per class) come from `train_class_model`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from helpers.core.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_text,
    one_line,
)
from helpers.core.fingerprint import file_digest
from helpers.core.progress import report_progress
from helpers.core.runtime import get_device
from helpers.data.images import PNG_COMPRESS_LEVEL
from helpers.model.endovae import EndoVAE, EndoVAEConfig, count_parameters
from helpers.train.checkpoint import read_checkpoint
from helpers.train.fit import (
    RESUMABLE_CHANGES,
    TrainConfig,
    data_fingerprint,
    fit,
    same_images,
    saved_train_config,
)
from helpers.train.infer import decode, images_to_tensor, to_uint8_nhwc
from helpers.train.prior import LatentPrior
from helpers.train.prior import load as load_prior

MANIFEST_NAME = "manifest.csv"
STAMP_NAME = "generate.json"
MANIFEST_COLUMNS = ("file", "class", "seed", "index", "z", "temperature", "checkpoint_sha256")
STAMP_KEYS = ("checkpoint_sha256", "seed", "temperature", "class", "prior")
STAMP_DEFAULTS = {"prior": "N(0, I)"}  # what a stamp written before the key existed means
CLASS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
TEMP_RE = re.compile(r"^\..+\.tmp$")
CARD_SUFFIX = ".card.json"
SAFETENSORS_FORMAT = "endovae-safetensors-1"


class UsageError(ValueError):
    """Bad parameters or a folder this tool may not write to (the CLI exits with code 2)."""


# --- models ------------------------------------------------------------------------------------


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[EndoVAE, dict]:
    """An EndoVAE (eval mode) from a .pt checkpoint or a .safetensors export, with its metadata."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint={str(path)!r}: file not found")
    if path.suffix == ".safetensors":
        return load_safetensors(path, device)
    model_state = read_checkpoint(path)
    model = EndoVAE(EndoVAEConfig(**model_state["model_config"]))
    model.load_state_dict(model_state["model"])
    meta = {k: model_state.get(k) for k in ("model_config", "train_config", "epoch", "extra")}
    return model.to(device).eval(), meta


def export_safetensors(
    checkpoint: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    class_name: str = "",
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint's weights as safetensors and a JSON model card beside it; the card path."""
    from safetensors.torch import save

    checkpoint, out_path = Path(checkpoint), Path(out_path)
    if out_path.suffix != ".safetensors":
        raise UsageError(f"out_path={str(out_path)!r}: expected a name ending in .safetensors")
    state = read_checkpoint(checkpoint)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state["model"].items()}
    name = class_name or checkpoint.stem
    meta = {"format": SAFETENSORS_FORMAT, "model_config": json.dumps(state["model_config"])}
    meta["class"] = name
    atomic_write_bytes(out_path, save(tensors, metadata=meta))
    card = model_card(state, checkpoint, out_path, name, metrics)
    card_path = out_path.with_name(out_path.name.removesuffix(".safetensors") + CARD_SUFFIX)
    atomic_write_text(card_path, json.dumps(card, indent=1, default=_json_default))
    export_prior(checkpoint, out_path)
    return card_path


def export_prior(checkpoint: Path, out_path: Path) -> Path | None:
    """The checkpoint's fitted latent prior (<checkpoint>.prior.json, when it belongs to it),
    tied to the export instead, beside it as <export>.prior.json; None when there is none."""
    source = checkpoint.with_suffix(".prior.json")
    if not source.is_file():
        return None
    fitted = load_prior(source)
    if fitted.checkpoint_sha256 != file_digest(checkpoint):
        return None  # a prior of an earlier checkpoint under that name: not this model's
    target = out_path.with_name(out_path.name.removesuffix(".safetensors") + ".prior.json")
    return dataclasses.replace(fitted, checkpoint_sha256=file_digest(out_path)).save(target)


def _json_default(value: Any) -> Any:
    """JSON for numpy scalars and other stragglers."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def model_card(
    state: dict, checkpoint: Path, weights: Path, class_name: str, metrics: dict | None
) -> dict:
    """The model card: architecture, training data digest, epochs, final losses, metrics."""
    import importlib.metadata as md

    model = EndoVAE(EndoVAEConfig(**state["model_config"]))
    history = state.get("history") or []
    tcfg = state.get("train_config") or {}
    last = history[-1] if history else {}
    batch = tcfg.get("batch_size")
    losses = {k: last[k] for k in ("recon", "kld", "total") if k in last}
    return {
        "model": "EndoVAE (Diamantis, Gatoula and Iakovidis, IVMSP 2022)",
        "class": class_name,
        "weights_file": weights.name,
        "weights_sha256": file_digest(weights),
        "source_checkpoint": checkpoint.name,
        "source_checkpoint_sha256": file_digest(checkpoint),
        "architecture": state["model_config"],
        "parameters": count_parameters(model),
        "training": {
            "data": (state.get("extra") or {}).get("data"),
            "epochs": int(state.get("epoch", 0)),
            "settings": tcfg,
            "final_losses_per_batch": losses,
            "final_losses_per_image": {k: v / batch for k, v in losses.items()} if batch else {},
            "loss_unit": f"sum over a batch of {batch} images" if batch else "unknown",
        },
        "metrics": dict(metrics or {}),
        "libraries": {n: md.version(n) for n in ("torch", "safetensors")},
    }


def load_safetensors(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[EndoVAE, dict]:
    """An EndoVAE (eval mode) from an `export_safetensors` file, with its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
        tensors = load_file(str(path))
    except Exception as exc:
        raise UsageError(f"checkpoint={str(path)!r}: not a safetensors file ({exc})") from exc
    if meta.get("format") != SAFETENSORS_FORMAT:
        raise UsageError(f"checkpoint={str(path)!r}: not an EndoVAE export (no model_config)")
    config = json.loads(meta["model_config"])
    model = EndoVAE(EndoVAEConfig(**config))
    model.load_state_dict(tensors)
    return model.to(device).eval(), {"model_config": config, "extra": {"class": meta.get("class")}}


# --- latents and decoding ----------------------------------------------------------------------


def latents(indices: Any, latent_dim: int, seed: int, temperature: float = 1.0) -> torch.Tensor:
    """z of each index: temperature x N(0, I) from numpy's generator seeded by (seed, index)."""
    rows = [np.random.default_rng([seed, int(i)]).standard_normal(latent_dim) for i in indices]
    z = np.stack(rows) if rows else np.zeros((0, latent_dim))
    return torch.from_numpy(z * temperature).float()


def block_latents(
    indices: Any, latent_dim: int, seed: int, temperature: float, prior: LatentPrior | None
) -> torch.Tensor:
    """`latents`, mapped into a fitted prior's Gaussian when there is one."""
    z = latents(indices, latent_dim, seed, temperature)
    return z if prior is None else prior.transform(z)


def decode_uint8(model: EndoVAE, z: torch.Tensor) -> np.ndarray:
    """Decode latents (one batch) to uint8 N x H x W x 3 images (rounded)."""
    return to_uint8_nhwc(decode(model, z, batch_size=max(1, len(z)))).numpy()


def z_text(z: torch.Tensor) -> str:
    """A latent as a compact string, e.g. '0.1234 -1.5 ...' (5 decimals)."""
    return " ".join(f"{float(v):.5f}".rstrip("0").rstrip(".") for v in z)


def synthesize(
    model: EndoVAE, n: int, seed: int = 0, temperature: float = 1.0, batch_size: int = 64,
    prior: LatentPrior | None = None,
) -> np.ndarray:  # fmt: skip
    """n synthetic frames as uint8 N x H x W x 3 (the same pixels `generate_images` writes)."""
    blocks = []
    for s in range(0, n, batch_size):
        z = block_latents(range(s, min(n, s + batch_size)), _dim(model), seed, temperature, prior)
        blocks.append(decode_uint8(model, z))
    size = model.config.in_size
    return np.concatenate(blocks) if blocks else np.zeros((0, size, size, 3), np.uint8)


def _dim(model: EndoVAE) -> int:
    """Latent size of a model."""
    return model.config.latent_dim


# --- the generation command --------------------------------------------------------------------


def check_params(n: Any, seed: Any, temperature: Any, batch_size: Any, class_name: str) -> None:
    """Raise UsageError naming the first bad parameter."""
    for name, value, low in (("n", n, 1), ("seed", seed, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise UsageError(f"{name}={value!r}: expected an integer >= {low}")
    ok = isinstance(temperature, int | float) and not isinstance(temperature, bool)
    if not ok or not math.isfinite(temperature) or temperature <= 0:
        raise UsageError(f"temperature={temperature!r}: expected a finite number > 0")
    if not CLASS_RE.match(class_name or ""):
        raise UsageError(f"class={class_name!r}: expected letters, digits and '-' only")


def default_class(checkpoint: Path) -> str:
    """A class name from a checkpoint's file name: gen_polyps.pt -> polyps, my_model.pt -> my-model."""
    stem = Path(checkpoint).stem.removeprefix("gen_")
    return re.sub(r"[^A-Za-z0-9-]+", "-", stem).strip("-") or "frames"


def frame_name(class_name: str, index: int) -> str:
    """File name of frame `index`: '<class>_<index, 6 digits>.png'."""
    return f"{class_name}_{index:06d}.png"


def check_folder(out: Path, stamp: dict) -> tuple[dict | None, pd.DataFrame]:
    """The folder's own stamp and manifest; refuse foreign files or frames of other settings."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"out={str(out)!r}: is a file, expected a folder")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    names = [n for n in names if not TEMP_RE.match(n)]
    if not names:
        return None, _empty_manifest()
    if STAMP_NAME not in names:
        raise UsageError(
            f"out={str(out)!r}: holds files that helpers.study.generate did not write "
            f"(e.g. {names[0]!r}); choose an empty or new folder"
        )
    try:
        old = json.loads((out / STAMP_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"out={str(out)!r}: unreadable {STAMP_NAME} ({exc})") from exc
    own = re.compile(rf"^{re.escape(str(old.get('class')))}_\d{{6,}}\.png$")
    foreign = [n for n in names if n not in (STAMP_NAME, MANIFEST_NAME) and not own.match(n)]
    if foreign:
        raise UsageError(
            f"out={str(out)!r}: holds files that helpers.study.generate did not write "
            f"(e.g. {foreign[0]!r}); choose an empty or new folder"
        )
    diffs = [f"{k}: {old.get(k, STAMP_DEFAULTS.get(k))!r} -> {stamp[k]!r}" for k in STAMP_KEYS
             if old.get(k, STAMP_DEFAULTS.get(k)) != stamp[k]]  # fmt: skip
    if diffs:
        raise UsageError(
            f"out={str(out)!r}: holds frames generated with other settings ({'; '.join(diffs)}); "
            "choose a new folder"
        )
    path = out / MANIFEST_NAME
    manifest = pd.read_csv(path, dtype={"z": str}) if path.is_file() else _empty_manifest()
    return old, manifest


def _empty_manifest() -> pd.DataFrame:
    """A manifest without rows."""
    return pd.DataFrame(columns=list(MANIFEST_COLUMNS))


def clear_folder(out: Path) -> None:
    """Delete this tool's files (frames, manifest, stamp, temp files) from `out`; refuse others."""
    if not out.is_dir():
        return
    stamp_path = out / STAMP_NAME
    if stamp_path.is_file():
        cls = str(json.loads(stamp_path.read_text()).get("class"))
        own = re.compile(rf"^{re.escape(cls)}_\d{{6,}}\.png$")
    else:
        own = None
    for path in out.iterdir():
        mine = path.name in (STAMP_NAME, MANIFEST_NAME) or TEMP_RE.match(path.name)
        if not (mine or (own is not None and own.match(path.name))):
            raise UsageError(
                f"out={str(out)!r}: holds files that helpers.study.generate did not write"
            )
    for path in out.iterdir():
        path.unlink()


def generate_images(
    checkpoint: str | os.PathLike,
    n: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    class_name: str | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    replace: bool = False,
    progress: bool = True,
    prior: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Write n frames + manifest into `out` (resuming a partial run); return the manifest.

    With `replace=True` frames this tool made with other settings are deleted first. `prior`: a
    fitted latent prior file of this checkpoint (helpers.train.prior); None samples N(0, I).
    """
    checkpoint, out = Path(checkpoint), Path(out)
    model, meta = load_model(checkpoint, get_device(str(device)))
    name = class_name or (meta.get("extra") or {}).get("class") or default_class(checkpoint)
    check_params(n, seed, temperature, batch_size, name)
    stamp = {"checkpoint_sha256": file_digest(checkpoint), "seed": int(seed)}
    fitted = checked_prior(prior, model, stamp["checkpoint_sha256"])
    stamp["prior"] = STAMP_DEFAULTS["prior"] if fitted is None else f"fitted {fitted.digest()}"
    stamp.update({"temperature": float(temperature), "class": name, "batch_size": batch_size})
    stamp["checkpoint"] = str(checkpoint)
    try:
        old, manifest = check_folder(out, stamp)
        check_count(out, manifest, n)
    except UsageError:
        if not replace:
            raise
        clear_folder(out)
        old, manifest = None, _empty_manifest()
    _remove_temp_files(out)
    if old is None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / STAMP_NAME, json.dumps(stamp, indent=1))
    block = int((old or stamp)["batch_size"])  # blocks stay aligned across resumed runs
    return _fill(model, out, manifest, n, block, stamp, progress, fitted)


def checked_prior(
    path: str | os.PathLike | None, model: EndoVAE, sha256: str
) -> LatentPrior | None:
    """The prior file at `path` (None: none), refused when it was fitted for another checkpoint."""
    if path is None:
        return None
    fitted = load_prior(path)
    if fitted.latent_dim != _dim(model):
        raise UsageError(f"prior={str(path)!r}: {fitted.latent_dim} latent values, the model has "
                         f"{_dim(model)}")  # fmt: skip
    if fitted.checkpoint_sha256 and fitted.checkpoint_sha256 != sha256:
        raise UsageError(f"prior={str(path)!r}: fitted for another checkpoint (SHA-256 "
                         f"{fitted.checkpoint_sha256[:12]}..., this one {sha256[:12]}...)")  # fmt: skip
    return fitted


def check_count(out: Path, manifest: pd.DataFrame, n: int) -> None:
    """Refuse to shrink a folder: it already holds frames with index >= n."""
    if len(manifest) and int(manifest["index"].max()) >= n:
        raise UsageError(
            f"n={n}: {out} already holds {int(manifest['index'].max()) + 1} frames; "
            "use a larger n or a new folder"
        )


def _remove_temp_files(out: Path) -> None:
    """Delete temp files a killed run left behind."""
    if out.is_dir():
        for path in out.iterdir():
            if TEMP_RE.match(path.name):
                path.unlink(missing_ok=True)


def _fill(model, out: Path, manifest: pd.DataFrame, n: int, block: int, stamp: dict, progress,
          prior: LatentPrior | None = None):  # fmt: skip
    """Decode the blocks holding missing frames; write PNGs, then the manifest, per block."""
    from tqdm.auto import tqdm

    have = {int(i) for i, f in zip(manifest["index"], manifest["file"], strict=True)
            if (out / f).is_file()}  # fmt: skip
    rows = {
        int(r["index"]): dict(r) for r in manifest.to_dict("records") if int(r["index"]) in have
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm.auto without ipywidgets: plain text bar
        bar = tqdm(total=n, initial=len(have), desc=f"generate {stamp['class']}", unit="frame",
                   disable=not progress)  # fmt: skip
    with bar:
        for start in range(0, n, block):
            todo = [i for i in range(start, min(n, start + block)) if i not in have]
            if not todo:
                continue
            idx = list(range(start, min(n, start + block)))
            z = block_latents(idx, _dim(model), stamp["seed"], stamp["temperature"], prior)
            images = decode_uint8(model, z)
            for i, image, zi in zip(idx, images, z, strict=True):
                if i in todo:
                    rows[i] = _write_frame(out, i, image, zi, stamp)
            atomic_write_csv(out / MANIFEST_NAME, _manifest_frame(rows))
            bar.update(len(todo))
            report_progress(task=f"generate {stamp['class']}: {len(rows)}/{n} frames")
    return _manifest_frame(rows)


def _write_frame(out: Path, index: int, image: np.ndarray, z: torch.Tensor, stamp: dict) -> dict:
    """Write one PNG atomically; return its manifest row."""
    name = frame_name(stamp["class"], index)
    with atomic_path(out / name) as tmp:
        Image.fromarray(image, mode="RGB").save(
            tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL
        )
    return {"file": name, "class": stamp["class"], "seed": stamp["seed"], "index": index,
            "z": z_text(z), "temperature": stamp["temperature"],
            "checkpoint_sha256": stamp["checkpoint_sha256"]}  # fmt: skip


def _manifest_frame(rows: dict[int, dict]) -> pd.DataFrame:
    """Manifest rows sorted by index."""
    return pd.DataFrame([rows[i] for i in sorted(rows)], columns=list(MANIFEST_COLUMNS))


def load_generated(out: str | os.PathLike) -> tuple[np.ndarray, pd.DataFrame]:
    """uint8 N x H x W x 3 frames of a generated folder (manifest order) and the manifest."""
    out = Path(out)
    path = out / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run helpers.study.generate first")
    manifest = pd.read_csv(path, dtype={"z": str})
    return np.stack([_read_png(out / f) for f in manifest["file"]]), manifest


def _read_png(path: Path) -> np.ndarray:
    """A PNG as uint8 H x W x 3 (file closed)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# --- class-wise models -------------------------------------------------------------------------


def train_class_model(
    images: np.ndarray,
    class_name: str,
    checkpoint_path: str | os.PathLike,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "auto",
    precision: str = "auto",
    progress: bool = True,
    init_from: str | os.PathLike | None = None,
    loss: str = "mse",
    model_config: EndoVAEConfig | None = None,
    beta: float = 1.0,
    ssim_weight: float = 0.0,
):
    """Train (or resume) one EndoVAE on one class's training images with `fit` (Adam; MSE unless
    `loss` says otherwise); `init_from` starts it from another model's weights (fine-tuning)."""
    tcfg = TrainConfig(loss=loss, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       checkpoint_every=max(1, epochs // 4), precision=precision, beta=beta,
                       ssim_weight=ssim_weight)  # fmt: skip
    path = Path(checkpoint_path)
    return fit(
        images, tcfg, model_config=model_config, checkpoint_path=path,
        history_path=path.with_name(f"{path.stem}_history.csv"),
        device=device, resume=trained_on(path, images, tcfg.to_dict(), model_config, init_from),
        progress=progress,
        desc=f"EndoVAE {class_name}", init_from=init_from,
    )  # fmt: skip


def trained_on(
    path: str | os.PathLike, images: np.ndarray, train_config: dict | None = None,
    model_config: EndoVAEConfig | None = None, init_from: str | os.PathLike | None = None,
) -> bool:  # fmt: skip
    """True when the checkpoint exists and was trained on exactly these images (and settings,
    network shape `model_config`, starting weights `init_from`, when given): one that resuming
    gives the same model as training afresh. So with `train_config` it must hold no more epochs
    than asked, and with a cooldown have been planned for as many (the schedule depends on the
    total); else it is trained over (10's token budget after its full one; a model fine-tuned
    from one that has been trained over since)."""
    path = Path(path)
    if not path.is_file():
        return False
    state = read_checkpoint(path)
    data = (state.get("extra") or {}).get("data") or {}
    tensor = images_to_tensor(images)
    current = {"n_images": len(tensor), "fingerprint": data_fingerprint(tensor)}
    if not same_images({k: data.get(k) for k in current}, current, tensor):
        return False
    if init_from is not None and data.get("init_from") != file_digest(init_from):
        return False
    if model_config is not None and EndoVAEConfig(**state["model_config"]) != model_config:
        return False
    saved = saved_train_config(state)
    if "epochs" in (train_config or {}) and not _same_schedule(state, saved, train_config):
        return False
    keys = [k for k in (train_config or {}) if k not in RESUMABLE_CHANGES]
    return all(saved.get(k) == train_config[k] for k in keys)


def _same_schedule(state: dict, saved: dict, train_config: dict) -> bool:
    """Whether resuming a checkpoint continues the learning-rate schedule `train_config` asks
    for: no more epochs done than asked, and (with a cooldown) as many planned."""
    epochs = int(train_config["epochs"])
    if int(state["epoch"]) > epochs:
        return False
    return not float(saved.get("lr_cooldown") or 0) or int(saved.get("epochs", 0)) == epochs


# --- command line --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `python -m helpers.generate`."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.generate",
        description="Write N synthetic 96x96 frames from an EndoVAE checkpoint, with a manifest.",
    )
    parser.add_argument("--checkpoint", required=True, help=".pt checkpoint or .safetensors export")
    parser.add_argument("--n", type=int, required=True, help="number of frames")
    parser.add_argument("--out", required=True, help="output folder (new, empty, or its own)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--temperature", type=float, default=1.0, help="latent scale (default 1)")
    parser.add_argument(
        "--prior",
        default=None,
        help="fitted latent prior file of the checkpoint (default: N(0, I))",
    )
    parser.add_argument("--class", dest="class_name", default=None,
                        help="class label and file prefix (default: from the file)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64, help="frames per decoded block")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.error = _one_line_error  # type: ignore[method-assign]
    return parser


def _one_line_error(message: str) -> None:
    """argparse errors as one line, exit code 2."""
    print(f"generate: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, generate, print where the frames are."""
    args = build_parser().parse_args(argv)
    try:
        manifest = generate_images(
            args.checkpoint, args.n, args.out, seed=args.seed, temperature=args.temperature,
            class_name=args.class_name, batch_size=args.batch_size, device=args.device,
            progress=not args.quiet, prior=args.prior,
        )  # fmt: skip
    except (UsageError, ValueError) as exc:
        _one_line_error(str(exc).splitlines()[0])
    except OSError as exc:  # an unwritable, read-only or full folder (WriteError names the file)
        _one_line_error(one_line(exc))
    print(f"{len(manifest)} frames and {MANIFEST_NAME} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
