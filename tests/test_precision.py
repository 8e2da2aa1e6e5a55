"""Precision chosen by measurement (issue: a newcomer's first run is fast on every CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from helpers.core import paths, runtime
from helpers.core.runtime import Precision
from helpers.train import fit as train

CPU = torch.device("cpu")
FP32, FP32_CL, BF16_CL = (
    Precision(None, False),
    Precision(None, True),
    Precision(torch.bfloat16, True),
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private precision cache."""
    monkeypatch.setenv("ENDOVAE_CACHE_DIR", str(tmp_path))
    return tmp_path / "precision.json"


@pytest.fixture
def three_candidates(monkeypatch):
    """Pretend the CPU has native bf16, so all three CPU candidates are timed."""
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: True)


@pytest.mark.parametrize(
    "speeds",
    [
        {"fp32": 15.0, "fp32 + channels_last": 18.0, "bfloat16 + channels_last": 1.8},  # AVX2
        {"fp32": 53.0, "fp32 + channels_last": 86.0, "bfloat16 + channels_last": 145.0},  # bf16
        {"fp32": 30.0, "fp32 + channels_last": 20.0, "bfloat16 + channels_last": 25.0},
    ],
)
def test_auto_never_picks_a_slower_candidate(speeds, cache, three_candidates):
    choice = runtime.choose_precision(CPU, measure=lambda p: speeds[p.label], batch_size=8)
    assert choice.label == max(speeds, key=speeds.get)
    assert all(speeds[choice.label] >= s for s in speeds.values())
    assert choice.speeds == speeds
    for label, speed in speeds.items():  # the report can show every candidate's figure
        assert f"{label} {speed:,.1f}" in choice.describe()


def test_measurements_are_cached_per_batch_size(cache, three_candidates):
    calls = []

    def measure(p):
        calls.append(p.label)
        return {"fp32": 1.0, "fp32 + channels_last": 3.0, "bfloat16 + channels_last": 2.0}[p.label]

    first = runtime.choose_precision(CPU, measure=measure, batch_size=8)
    again = runtime.choose_precision(CPU, measure=measure, batch_size=8)
    assert len(calls) == 3 and first.label == again.label == "fp32 + channels_last"
    assert "cached" in again.reason and "measured" in first.reason
    runtime.choose_precision(CPU, measure=measure, batch_size=16)
    assert len(calls) == 6, "another batch size is measured anew"
    stored = json.loads(cache.read_text())
    assert len(stored) == 2 and all("images_per_s" in v for v in stored.values())


def test_emulated_bf16_is_not_a_cpu_candidate(monkeypatch):
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: False)
    assert [p.label for p in runtime.precision_candidates(CPU)] == ["fp32", "fp32 + channels_last"]
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: True)
    assert BF16_CL in runtime.precision_candidates(CPU)


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "fma"})
    assert not runtime.native_cpu_bf16()
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert runtime.native_cpu_bf16()


def test_avx2_kernels_emulate_bf16_and_keep_their_own_speed_cache(monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 on an AVX512-BF16 CPU runs AVX2 kernels: bf16 is emulated there,
    and the speeds measured so must not be read back as the native machine's (or vice versa)."""
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    monkeypatch.setattr(runtime, "cpu_capability", lambda: "AVX512")
    native = runtime.machine_key(CPU, 8)
    monkeypatch.setattr(runtime, "cpu_capability", lambda: "AVX2")
    assert not runtime.native_cpu_bf16()
    assert BF16_CL not in runtime.precision_candidates(CPU)
    assert runtime.machine_key(CPU, 8) != native


def test_fp16_uses_a_gradient_scaler_and_needs_cuda():
    assert Precision(torch.float16, True).needs_scaler
    assert not BF16_CL.needs_scaler and not FP32_CL.needs_scaler
    with pytest.raises(ValueError, match="fp16"):
        runtime.fixed_precision(CPU, "fp16")
    if torch.cuda.is_available():
        assert runtime.fixed_precision(torch.device("cuda"), "fp16").needs_scaler


def test_fit_trains_with_the_measured_choice(cache, monkeypatch):
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: False)
    speeds = {"fp32": 5.0, "fp32 + channels_last": 2.0}
    monkeypatch.setattr(train, "measure_images_per_s", lambda p, *a, **k: speeds[p.label])
    images = torch.randint(0, 256, (8, 96, 96, 3), dtype=torch.uint8).numpy()
    result = train.fit(images, train.TrainConfig(epochs=1, batch_size=8), device="cpu",
                       progress=False)  # fmt: skip
    assert result.precision == "fp32"
    assert (
        "fp32 5.0" in result.precision_choice
        and "fp32 + channels_last 2.0" in result.precision_choice
    )


def test_real_measurement_gives_a_positive_speed():
    speed = train.measure_images_per_s(FP32_CL, CPU, 2, min_steps=1, min_seconds=0.0)
    assert speed > 0


def test_gpu_check_script_runs_its_checks_in_tiny_mode(tmp_path):
    """The GPU check (benchmarks/gpu_check.sh) is exercised on the CPU with tiny sizes."""
    env = {**os.environ, "ENDOVAE_DATA_DIR": str(tmp_path / "data"), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--tiny"]
    proc = subprocess.run(cmd, cwd=paths.PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| check | images/s") and len(table) >= 3
    assert "auto picks:" in proc.stdout
