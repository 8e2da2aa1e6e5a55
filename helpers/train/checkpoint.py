"""Checkpoint files: model weights with their config inside, written atomically.

A checkpoint is a plain dict (loadable with `torch.load(..., weights_only=True)`):
    format_version  int (1)
    model_config    dict (EndoVAEConfig.to_dict())
    model           state_dict
    optimizer       optimizer state_dict or None
    epoch           epochs completed
    history         list of per-epoch dicts (epoch, recon, kld, total, seconds, images_per_s)
    train_config    dict of the training settings (loss, epochs, batch_size, lr, beta, seed, ...)
    rng             dict of RNG states (tensors / lists only) or None
    extra           dict, free for callers
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from helpers.core.atomic import atomic_torch_save
from helpers.model.endovae import EndoVAE, EndoVAEConfig

FORMAT_VERSION = 1


def save_checkpoint(
    path: str | os.PathLike,
    model: EndoVAE,
    *,
    optimizer: Any = None,
    epoch: int = 0,
    history: list[dict] | None = None,
    train_config: dict | None = None,
    rng: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash leaves the previous file intact)."""
    state = {
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "history": list(history or []),
        "train_config": dict(train_config or {}),
        "rng": rng,
        "extra": dict(extra or {}),
    }
    return atomic_torch_save(state, path)


def read_checkpoint(path: str | os.PathLike, producer: str | None = None) -> dict:
    """Load a checkpoint dict safely (weights_only); a missing file names its producer."""
    path = Path(path)
    if not path.is_file():
        hint = f" Run notebook {producer} first (it writes this file)." if producer else ""
        raise FileNotFoundError(f"checkpoint not found: {path}.{hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not an EndoVAE checkpoint (format {FORMAT_VERSION})")
    return state


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", producer: str | None = None
) -> tuple[EndoVAE, dict]:
    """Rebuild the EndoVAE stored in a checkpoint (eval mode, on `device`) and return it with the dict."""
    state = read_checkpoint(path, producer)
    model = EndoVAE(EndoVAEConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state
