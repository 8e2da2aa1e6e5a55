"""Device choice, seeding, precision policy and library versions."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpers.core.atomic import atomic_write_text
from helpers.core.fingerprint import bytes_digest

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


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """How to run the math on a device: autocast dtype (or None) and memory layout."""

    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def label(self) -> str:
        """Short human label, e.g. 'bfloat16 + channels_last'."""
        parts = [str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        return " + ".join(parts)

    @property
    def needs_scaler(self) -> bool:
        """fp16 autocast needs a gradient scaler (its range underflows small gradients)."""
        return self.amp_dtype == torch.float16


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses, the images/s measured for each candidate, and why."""

    precision: Precision
    speeds: dict[str, float]
    reason: str
    fresh: bool = False  # the speeds were timed just now (not read from the cache)

    @property
    def label(self) -> str:
        """The chosen precision's label."""
        return self.precision.label

    def describe(self) -> str:
        """One sentence: what was chosen and the measured images/s of each candidate."""
        if not self.speeds:
            return f"{self.label} ({self.reason})"
        shown = ", ".join(f"{label} {speed:,.1f}" for label, speed in self.speeds.items())
        return f"{self.label} ({self.reason}; images/s measured: {shown})"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(match.group(1).split()) if match else set()


def cpu_capability() -> str:
    """The instruction set torch dispatches its CPU kernels to ("AVX512", "AVX2", "DEFAULT", ...;
    env ATEN_CPU_CAPABILITY=avx2 lowers it, e.g. to time an AVX2 machine on an AVX512 one)."""
    return str(torch.backends.cpu.get_cpu_capability())


def native_cpu_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX) and torch dispatches
    its kernels to AVX512; else it is emulated."""
    flags = cpu_flags()  # x86 only: other CPUs' /proc/cpuinfo has no "flags" line
    if flags:
        kernels = cpu_capability().startswith("AVX512")
        return kernels and bool(flags & {"avx512_bf16", "amx_bf16"})
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def precision_candidates(device: torch.device) -> list[Precision]:
    """Numerically safe precisions worth timing on this device (ones that cannot win are left out)."""
    if device.type == "cpu":
        fp32 = [Precision(None, False), Precision(None, True)]
        return fp32 + ([Precision(torch.bfloat16, True)] if native_cpu_bf16() else [])
    if device.type == "cuda":
        half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return [Precision(half, True), Precision(None, True)]
    return [Precision(None, False)]


def fixed_precision(device: torch.device, precision: str) -> Precision:
    """The precision asked for by name ("fp32", "bf16" or "fp16"); "fp16" needs CUDA."""
    if precision not in PRECISIONS[1:]:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    channels_last = device.type in ("cpu", "cuda")
    if precision == "fp32":
        return Precision(None, channels_last)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16': needs a CUDA device, not {device.type}")
    return Precision(torch.float16 if precision == "fp16" else torch.bfloat16, channels_last)


def cache_dir() -> Path:
    """Per-user cache folder (env ENDOVAE_CACHE_DIR, else XDG_CACHE_HOME/endovae)."""
    if os.environ.get("ENDOVAE_CACHE_DIR"):
        return Path(os.environ["ENDOVAE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "endovae"


def machine_key(device: torch.device, batch_size: int, task: str = "endovae") -> str:
    """What a measured speed depends on: task, device, CPU flags and kernels, torch, threads,
    batch size."""
    flags, kernels = bytes_digest(" ".join(sorted(cpu_flags())).encode())[:12], cpu_capability()
    flags += "" if kernels.startswith("AVX512") else f" {kernels}"
    return (f"{task} | {describe_device(device)} | flags {flags} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads | batch {batch_size}")  # fmt: skip


def time_steps(step: Callable[[], Any], batch_size: int, min_steps=3, min_seconds=1.0) -> float:
    """Images/s of a training step `step()` (it must wait for the device): two warm-up steps
    (a fresh clone's first timing, with one, gave 19.8 img/s for a step that then trained at
    ~50), then at least `min_steps` steps and `min_seconds` seconds."""
    step()
    step()
    steps, t0 = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - t0 < min_seconds:
        step()
        steps += 1
    return steps * batch_size / (time.perf_counter() - t0)


def _read_speed_cache(path: Path) -> dict:
    """The cached measurements (an empty dict when missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_speed_cache(path: Path, key: str, speeds: dict[str, float]) -> None:
    """Add one measurement to the cache (best effort: a read-only home just skips caching)."""
    data = _read_speed_cache(path)
    data[key] = {"images_per_s": speeds, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1))


def fastest(candidates: list[Precision], speeds: dict[str, float]) -> Precision:
    """The candidate with the highest measured images/s (the first one on a tie)."""
    return max(candidates, key=lambda c: speeds.get(c.label, float("-inf")))


def choose_precision(
    device: torch.device,
    precision: str = "auto",
    *,
    measure: Callable[[Precision], float] | None = None,
    batch_size: int = 128,
    use_cache: bool = True,
    task: str = "endovae",
) -> PrecisionChoice:
    """Resolve `precision`; "auto" times `measure(candidate)` (images/s) and takes the fastest.

    Measurements are cached per machine, torch version, thread count and batch size in
    `cache_dir()/precision.json`, so a machine pays for them once.
    """
    if precision != "auto":
        return PrecisionChoice(fixed_precision(device, precision), {}, "asked for")
    candidates = precision_candidates(device)
    if len(candidates) == 1 or measure is None:
        why = "the only candidate" if len(candidates) == 1 else "not measured"
        return PrecisionChoice(candidates[0], {}, why)
    path, key = cache_dir() / "precision.json", machine_key(device, batch_size, task)
    cached = _read_speed_cache(path).get(key, {}).get("images_per_s", {}) if use_cache else {}
    if all(c.label in cached for c in candidates):
        speeds, how = {c.label: float(cached[c.label]) for c in candidates}, "cached"
    else:
        speeds, how = {c.label: float(measure(c)) for c in candidates}, "measured"
        if use_cache:
            _write_speed_cache(path, key, speeds)
    best = fastest(candidates, speeds)
    skipped = "" if device.type != "cpu" or native_cpu_bf16() else (
        "; bfloat16 not timed: without AVX512-BF16 or AMX kernels it is emulated and slow"
    )  # fmt: skip
    reason = f"fastest at batch {batch_size}, {how}{skipped}"
    return PrecisionChoice(best, speeds, reason, fresh=how == "measured")


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Autocast context for the device, or a no-op when amp_dtype is None (fp32)."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


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
