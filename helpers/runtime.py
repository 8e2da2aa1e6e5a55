"""Device choice, seeding, precision policy and library versions."""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def get_device(device: str = "auto") -> torch.device:
    """Resolve "auto" (cuda, then mps, then cpu) or an explicit device name."""
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.split(":")[0] not in DEVICE_CHOICES[1:]:
        raise ValueError(f"device={device!r}: expected one of {', '.join(DEVICE_CHOICES)}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a CPU generator with that seed."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class Precision:
    """How to run the math on a device: autocast dtype (or None) and memory layout."""

    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def label(self) -> str:
        """Short human label, e.g. 'bf16 + channels_last'."""
        parts = [str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        return " + ".join(parts)


def choose_precision(device: torch.device, precision: str = "auto") -> Precision:
    """Pick autocast dtype and layout: bf16 + channels_last where they are faster, else fp32."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision={precision!r}: expected 'auto', 'fp32' or 'bf16'")
    if precision == "fp32":
        return Precision(None, device.type in ("cpu", "cuda"))
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        return Precision(torch.bfloat16 if bf16_ok else torch.float16, True)
    if device.type == "cpu":
        return Precision(torch.bfloat16, True)
    return Precision(torch.bfloat16 if precision == "bf16" else None, False)


def library_versions() -> dict[str, str]:
    """Versions of python and the main libraries, for the report's title page."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for name in (
        "torch",
        "torchvision",
        "numpy",
        "scikit-image",
        "scikit-learn",
        "pandas",
        "papermill",
        "nbconvert",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe_device(device: torch.device) -> str:
    """One line naming the device (GPU name or CPU and core count)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return device.type
