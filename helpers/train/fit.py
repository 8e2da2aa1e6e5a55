"""Fast, crash-safe EndoVAE training shared by notebooks 03, 04 and 08.

`fit()` keeps the whole uint8 training set on the device (NCHW, channels_last where chosen),
shuffles it by index each epoch with a seeded generator, converts each batch to float on the
device, and runs in the precision and memory layout that `training_precision` measured fastest
on this machine (fp32, fp32 + channels_last or bf16 + channels_last on a CPU; bf16, or fp16 with
a gradient scaler, on CUDA), with fused Adam and optional `torch.compile`. Loss sums stay on the
device; the host reads them once per epoch, which is also when a non-finite loss is detected.

Logged per epoch (history): recon, kld, total in the original report's unit, the loss summed
over one batch of `batch_size` images, i.e. the epoch's sum times `batch_size / n_images`
(exactly the mean of the per-batch sums when `n_images` is a multiple of `batch_size`; a
smaller last batch is weighted by its size), plus seconds and images_per_s.

Checkpoints (helpers.train.checkpoint) carry model, optimizer, epoch, history, train config and the
RNG states (tensors only, so `torch.load(weights_only=True)` works). With `resume=True` a run
killed at any point continues from its last checkpoint and, on the CPU in fp32, ends with
weights bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from helpers.config.params import check
from helpers.core.atomic import atomic_write_csv
from helpers.core.fingerprint import array_digest, file_digest
from helpers.core.progress import report_progress
from helpers.core.runtime import (
    Precision,
    PrecisionChoice,
    choose_precision,
    get_device,
    seed_everything,
    time_steps,
)
from helpers.model.endovae import EndoVAE, EndoVAEConfig, init_weights
from helpers.model.losses import vae_loss
from helpers.model.step import forward_loss, optimise
from helpers.train.checkpoint import read_checkpoint, save_checkpoint
from helpers.train.infer import images_to_tensor

HISTORY_COLUMNS = ("epoch", "recon", "kld", "total", "seconds", "images_per_s")
# Settings that may differ between a checkpoint and the run resuming it (they do not change
# the numbers of the epochs already trained).
RESUMABLE_CHANGES = ("epochs", "checkpoint_every")
LEGACY_DIGEST_CHARS = 24  # hex digits of the data fingerprint in checkpoints before 0.2


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the paper's (Adam, lr 1e-3, batch 128)."""

    loss: str = "mse"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    seed: int = 0
    checkpoint_every: int = 10
    precision: str = "auto"
    compile: bool = False
    init: str = (
        "pytorch"  # weight init (helpers.model.endovae.INIT_SCHEMES); the paper's code: PyTorch's
    )
    lr_cooldown: float = 0.0  # last share of the steps with lr falling linearly to 0; 0: constant
    ssim_weight: float = 0.0  # weight of an SSIM term in the loss (helpers.model.losses); 0: paper

    def __post_init__(self) -> None:
        """Validate every field; errors name the parameter."""
        for item in fields(self):
            check(item.name, getattr(self, item.name))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and tables."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring keys that are not TrainConfig fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class TrainResult:
    """What `fit` returns."""

    model: EndoVAE
    history: pd.DataFrame
    checkpoint_path: Path | None
    resumed_from_epoch: int
    seconds: float
    device: str = "cpu"
    precision: str = "fp32"
    precision_choice: str = ""

    @property
    def images_per_s(self) -> float:
        """Mean training throughput over the epochs in the history (nan when none)."""
        if self.history.empty:
            return float("nan")
        return float(self.history["images_per_s"].mean())


# --- data ------------------------------------------------------------------------------------


def data_fingerprint(data: torch.Tensor) -> str:
    """`fingerprint.array_digest` of a uint8 NCHW image tensor's pixels in NHWC order."""
    return array_digest(data.detach().cpu().permute(0, 2, 3, 1).numpy())


def _legacy_fingerprint(data: torch.Tensor) -> str:
    """The data fingerprint of checkpoints written before version 0.2 (24 hex digits)."""
    array = np.ascontiguousarray(data.detach().cpu().permute(0, 2, 3, 1).numpy())
    digest = hashlib.blake2b(array.tobytes(), digest_size=LEGACY_DIGEST_CHARS // 2)
    digest.update(str(tuple(data.shape)).encode())
    return digest.hexdigest()


def same_images(saved: dict, data_info: dict, data: torch.Tensor) -> bool:
    """True when a checkpoint's data record names these images (old-style records too)."""
    old = str(saved.get("fingerprint", ""))
    if len(old) == LEGACY_DIGEST_CHARS and old == _legacy_fingerprint(data):
        saved = {**saved, "fingerprint": data_info["fingerprint"]}
    return saved == data_info


def _device_data(data: torch.Tensor, device: torch.device, prec: Precision) -> torch.Tensor:
    """Move the uint8 training set to the device once, in the layout the model runs in."""
    fmt = torch.channels_last if prec.channels_last else torch.contiguous_format
    return data.to(device).contiguous(memory_format=fmt)


# --- RNG, checkpoint and history -------------------------------------------------------------


def _rng_state(shuffle: torch.Generator, device: torch.device) -> dict[str, Any]:
    """RNG states as tensors: torch CPU, the shuffling generator, the device generator."""
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any], shuffle: torch.Generator, device: torch.device) -> None:
    """Restore the states saved by `_rng_state`."""
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def history_frame(rows: list[dict]) -> pd.DataFrame:
    """History rows -> DataFrame with the standard columns."""
    return pd.DataFrame(list(rows), columns=list(HISTORY_COLUMNS))


OLDER_DEFAULTS = {"init": "pytorch", "lr_cooldown": 0.0, "ssim_weight": 0.0}  # keys added later


def saved_train_config(state: dict) -> dict:
    """A checkpoint's training settings, with the defaults of keys older checkpoints lack."""
    return {**OLDER_DEFAULTS, **(state.get("train_config") or {})}


def _config_mismatch(state: dict, tcfg: TrainConfig, mcfg: EndoVAEConfig) -> list[str]:
    """Differences (as 'name: saved -> requested') that forbid resuming from `state`."""
    diffs = []
    saved_t = saved_train_config(state)
    wanted_t = tcfg.to_dict()
    for key in wanted_t:
        if key not in RESUMABLE_CHANGES and saved_t.get(key) != wanted_t[key]:
            diffs.append(f"{key}: {saved_t.get(key)!r} -> {wanted_t[key]!r}")
    saved_m = {"norm": "none", **state.get("model_config", {})}  # older: no norm key
    wanted_m = mcfg.to_dict()
    for key in wanted_m:
        if saved_m.get(key) != wanted_m[key]:
            diffs.append(f"model {key}: {saved_m.get(key)!r} -> {wanted_m[key]!r}")
    return diffs


def _load_resume_state(
    path: Path | None,
    resume: bool,
    tcfg: TrainConfig,
    mcfg: EndoVAEConfig,
    data_info: dict,
    data: torch.Tensor,
):
    """The checkpoint dict to resume from, or None; other settings or other images raise."""
    if not resume or path is None or not path.is_file():
        return None
    state = read_checkpoint(path)
    diffs = _config_mismatch(state, tcfg, mcfg)
    saved = state.get("extra", {}).get("data")
    if saved is not None and not same_images(saved, data_info, data):
        diffs.append(f"training images: {saved} -> {data_info}")
    if diffs:
        raise ValueError(
            f"cannot resume from {path}: it was trained with other settings "
            f"({'; '.join(diffs)}). Delete the file or pass resume=False to start over."
        )
    if int(state["epoch"]) > tcfg.epochs:
        raise ValueError(
            f"epochs={tcfg.epochs}: {path.name} already holds {int(state['epoch'])} epochs; pass "
            f"epochs={int(state['epoch'])} (or more) to use it, or resume=False to train "
            f"{tcfg.epochs} epoch(s) from scratch"
        )
    return state


def _save(path, history_path, model, optimizer, epoch, history, tcfg, shuffle, device, data_info):
    """Write checkpoint and history CSV (each atomically)."""
    if path is not None:
        save_checkpoint(
            path,
            model,
            optimizer=optimizer,
            epoch=epoch,
            history=history,
            train_config=tcfg.to_dict(),
            rng=_rng_state(shuffle, device),
            extra={"data": data_info},
        )
    if history_path is not None:
        atomic_write_csv(history_path, history_frame(history))


# --- the training loop -----------------------------------------------------------------------


def _make_optimizer(model: EndoVAE, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam, with the fused kernel on CUDA and CPU (one pass over the 11M parameters per step:
    on a 2-core CPU ~4x faster than the per-tensor loop, which matters at small batches)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in ("cuda", "cpu"))


def _load_optimizer(optimizer: torch.optim.Adam, state: dict) -> None:
    """Load an optimizer state, keeping this device's kernel choice (fused/foreach)."""
    keep = [{k: g.get(k) for k in ("fused", "foreach")} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, keep, strict=True):
        group.update(kept)
        for param in group["params"]:  # fused Adam keeps its step counts on the device
            slot = optimizer.state.get(param, {})
            if torch.is_tensor(slot.get("step")):
                where = param.device if group.get("fused") else torch.device("cpu")
                slot["step"] = slot["step"].to(where, torch.float32)


def cooldown_lr(lr: float, cooldown: float, step: int, total: int) -> float:
    """Learning rate of optimiser step `step` (0-based) of `total`: `lr`, falling linearly to 0
    over the last `cooldown` share of the steps (a warmup-stable-decay schedule without warmup)."""
    tail = cooldown * total
    left = total - step
    return lr if tail <= 0 or left >= tail else lr * left / tail


def _run_epoch(step, data, optimizer, shuffle, batch_size: int, scaler, on_step, lrs=None):
    """One pass over the data in a seeded random order; returns device sums (recon, kld, total).
    `lrs`: the learning rate of each of the epoch's steps (None: leave it as it is)."""
    n = len(data)
    order = torch.randperm(n, generator=shuffle).to(data.device)
    sums = torch.zeros(3, device=data.device)
    for i, start in enumerate(range(0, n, batch_size)):
        if lrs is not None:
            for group in optimizer.param_groups:
                group["lr"] = lrs[i]
        batch = data[order[start : start + batch_size]]
        target = batch.float().div_(255.0)
        total, rec, kl = step(target)
        optimise(total, optimizer, scaler)
        sums += torch.stack((rec.detach(), kl.detach(), total.detach()))
        on_step(min(start + batch_size, n))
    return sums


def _check_finite(values: list[float], epoch: int) -> None:
    """Raise FloatingPointError naming the epoch and the non-finite loss terms."""
    bad = [
        name
        for name, v in zip(("recon", "kld", "total"), values, strict=True)
        if not math.isfinite(v)
    ]
    if bad:
        shown = ", ".join(
            f"{n}={v}" for n, v in zip(("recon", "kld", "total"), values, strict=True)
        )
        raise FloatingPointError(
            f"non-finite loss at epoch {epoch} in {', '.join(bad)} ({shown}); training stopped "
            "without saving this epoch, so the last checkpoint still holds the last good weights. "
            "Try a smaller lr or precision='fp32'."
        )


@contextlib.contextmanager
def _cudnn_autotune(enabled: bool):
    """Let cuDNN benchmark conv algorithms while training (fixed shapes), then restore the flag."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = previous or enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
    """tqdm.auto bar over epochs (text fallback without ipywidgets, no warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm
    bar = tqdm(
        total=total, initial=initial, desc=desc or "epochs", unit="epoch", disable=not enabled
    )
    bar.endovae_desc = desc or "training"  # the runner's live line names the task
    return bar


def _epoch_row(epoch: int, sums: list[float], scale: float, seconds: float, n: int) -> dict:
    """History row: losses per batch of `batch_size` images, time and throughput."""
    recon, kl, total = (v * scale for v in sums)
    return {"epoch": epoch, "recon": recon, "kld": kl, "total": total,
            "seconds": seconds, "images_per_s": n / seconds}  # fmt: skip


def _progress(desc: str, epoch: int, epochs: int, done: int, n: int, t0: float, last: dict | None):
    """Status for the runner's live line: epoch, images done, losses of the last epoch, speed."""
    elapsed = time.perf_counter() - t0
    speed = done / elapsed if elapsed > 0 and done else None
    left = (epochs - epoch) * n + n - done
    losses = {k: last[k] for k in ("recon", "kld")} if last else {}
    report_progress(
        task=desc, epoch=epoch, epochs=epochs, images_per_s=speed,
        seconds_left=left / speed if speed else None, **losses,
    )  # fmt: skip


def _train_epochs(step, data, optimizer, shuffle, tcfg, history, start_epoch, save, bar, scaler):
    """Epochs start_epoch+1 .. tcfg.epochs: train, check, log, checkpoint (calls `save(epoch)`)."""
    scale, n, desc = tcfg.batch_size / len(data), len(data), bar.endovae_desc
    per_epoch = math.ceil(n / tcfg.batch_size)
    total = tcfg.epochs * per_epoch  # optimiser steps of the whole run (the schedule's length)
    for epoch in range(start_epoch + 1, tcfg.epochs + 1):
        t0 = time.perf_counter()
        last = history[-1] if history else None

        def on_step(done: int, epoch=epoch, t0=t0, last=last) -> None:
            """Live status after each batch (for the runner; a no-op elsewhere)."""
            _progress(desc, epoch, tcfg.epochs, done, n, t0, last)

        first = (epoch - 1) * per_epoch
        lrs = None
        if tcfg.lr_cooldown > 0:
            steps = range(first, first + per_epoch)
            lrs = [cooldown_lr(tcfg.lr, tcfg.lr_cooldown, s, total) for s in steps]
        sums = _run_epoch(step, data, optimizer, shuffle, tcfg.batch_size, scaler, on_step, lrs)
        sums = sums.tolist()  # one sync per epoch
        seconds = time.perf_counter() - t0
        _check_finite(sums, epoch)
        history.append(_epoch_row(epoch, sums, scale, seconds, len(data)))
        last = history[-1]
        bar.set_postfix(
            recon=f"{last['recon']:.4g}", kld=f"{last['kld']:.4g}",
            img_s=f"{last['images_per_s']:.1f}",
        )  # fmt: skip
        bar.update(1)
        every = tcfg.checkpoint_every
        if epoch == tcfg.epochs or (every and epoch % every == 0):
            save(epoch)


def measure_images_per_s(
    prec: Precision,
    device: torch.device,
    batch_size: int,
    *,
    loss: str = "mse",
    model_config: EndoVAEConfig | None = None,
    min_steps: int = 3,
    min_seconds: float = 1.0,
) -> float:
    """Training images/s of the real EndoVAE step in `prec` (untimed warm-up steps first)."""
    mcfg = model_config or EndoVAEConfig()
    fmt = torch.channels_last if prec.channels_last else torch.contiguous_format
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = EndoVAE(mcfg).to(device, memory_format=fmt).train()
        optimizer = _make_optimizer(model, 1e-3, device)
        scaler = torch.amp.GradScaler(device.type, enabled=prec.needs_scaler)
        shape = (batch_size, mcfg.in_channels, mcfg.in_size, mcfg.in_size)
        x = torch.rand(shape, device=device).contiguous(memory_format=fmt)

        def step() -> None:
            """One training step on the fixed batch, waiting for the device."""
            total, _, _ = forward_loss(model, x, x, loss, 1.0, prec.amp_dtype)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
            total.item()

        return time_steps(step, batch_size, min_steps, min_seconds)


def training_gflop_per_image(model_config: EndoVAEConfig | None = None) -> float:
    """FLOPs of one training step (forward, loss, backward) per image, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model, x = EndoVAE(model_config or EndoVAEConfig()), torch.rand(2, 3, 96, 96)
    with FlopCounterMode(display=False) as counter:
        logits, mu, logvar = model(x)
        vae_loss("mse", logits, x, mu, logvar)[0].backward()
    return counter.get_total_flops() / len(x) / 1e9


def training_precision(
    device: str | torch.device, precision: str = "auto", batch_size: int = 128, loss: str = "mse"
) -> PrecisionChoice:
    """The precision `fit` uses: "auto" times each candidate on the real model (cached)."""
    dev = device if isinstance(device, torch.device) else get_device(device)

    def measure(prec: Precision) -> float:
        """Images/s of one candidate."""
        return measure_images_per_s(prec, dev, batch_size, loss=loss)

    return choose_precision(dev, precision, measure=measure, batch_size=batch_size)


def fit(
    images: Any,
    train_config: TrainConfig | dict,
    *,
    model_config: EndoVAEConfig | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    history_path: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    resume: bool = True,
    progress: bool = True,
    desc: str = "",
    init_from: str | os.PathLike | None = None,
) -> TrainResult:
    """Train an EndoVAE on uint8 N x H x W x 3 images; checkpoint, resume, return the eval model.

    `init_from`: a checkpoint whose weights start the training (fine-tuning) instead of the
    seeded initialisation; its SHA-256 is part of what a resumed run must match.
    """
    t_start = time.perf_counter()
    tcfg = (
        train_config
        if isinstance(train_config, TrainConfig)
        else TrainConfig.from_dict(train_config)
    )
    mcfg = model_config or EndoVAEConfig()
    dev = device if isinstance(device, torch.device) else get_device(device)
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    hist_path = Path(history_path) if history_path is not None else None
    cpu_data = images_to_tensor(images, mcfg.in_channels, mcfg.in_size)
    data_info = {"n_images": len(cpu_data), "fingerprint": data_fingerprint(cpu_data)}
    if init_from is not None:
        data_info["init_from"] = file_digest(init_from)
    state = _load_resume_state(ckpt, resume, tcfg, mcfg, data_info, cpu_data)
    # Bad images and a refused checkpoint fail above, before any speed is measured.
    batch = min(tcfg.batch_size, len(cpu_data))  # a batch_size above the images is one batch
    choice = training_precision(dev, tcfg.precision, batch, tcfg.loss)
    prec = choice.precision

    shuffle = seed_everything(tcfg.seed)  # also seeds the weights and the sampling noise
    model = EndoVAE(mcfg)
    history = [dict(r) for r in state["history"]] if state else []
    start_epoch = int(state["epoch"]) if state else 0
    if state:
        model.load_state_dict(state["model"])
    elif init_from is not None:
        model.load_state_dict(read_checkpoint(Path(init_from))["model"])
    else:
        init_weights(model, tcfg.init)
    fmt = torch.channels_last if prec.channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=fmt)
    optimizer = _make_optimizer(model, tcfg.lr, dev)
    if state and start_epoch < tcfg.epochs:
        _load_optimizer(optimizer, state["optimizer"])
        _set_rng_state(state["rng"], shuffle, dev)

    def save(epoch: int) -> None:
        """Checkpoint and history CSV after `epoch`."""
        _save(ckpt, hist_path, model, optimizer, epoch, history, tcfg, shuffle, dev, data_info)

    if start_epoch < tcfg.epochs:
        data = _device_data(cpu_data, dev, prec)
        forward = torch.compile(forward_loss) if tcfg.compile else forward_loss

        def step(target: torch.Tensor):
            """Loss of one batch (the target doubles as the input)."""
            return forward(
                model, target, target, tcfg.loss, tcfg.beta, prec.amp_dtype, tcfg.ssim_weight
            )

        model.train()
        scaler = torch.amp.GradScaler(dev.type, enabled=prec.needs_scaler)
        bar = _progress_bar(tcfg.epochs, start_epoch, desc, progress)
        with bar, _cudnn_autotune(dev.type == "cuda"):
            _train_epochs(
                step, data, optimizer, shuffle, tcfg, history, start_epoch, save, bar, scaler
            )
    elif hist_path is not None:
        atomic_write_csv(hist_path, history_frame(history))
    seconds = time.perf_counter() - t_start
    return TrainResult(
        model.eval(), history_frame(history), ckpt, start_epoch, seconds, str(dev), prec.label,
        choice.describe(),
    )  # fmt: skip
