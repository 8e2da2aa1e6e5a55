"""Tests for paths, runtime, atomic writes and checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from helpers.core import atomic, paths, runtime
from helpers.model.endovae import EndoVAE, EndoVAEConfig
from helpers.train import checkpoint


def test_run_paths_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("ENDOVAE_RUN_DIR", raising=False)
    monkeypatch.delenv("ENDOVAE_RUNS_DIR", raising=False)
    assert paths.RunPaths.from_param("").root == paths.PROJECT_ROOT / "runs" / "quick"
    monkeypatch.setenv("ENDOVAE_RUN_DIR", str(tmp_path / "r"))
    rp = paths.RunPaths.from_param("")
    assert rp.root == tmp_path / "r"
    assert paths.RunPaths.from_param(tmp_path / "x").root == tmp_path / "x"
    rp.ensure()
    assert rp.processed.is_dir() and rp.checkpoints.is_dir() and rp.figures.is_dir()
    assert rp.checkpoint("mse").name == "mse.pt"


def test_project_root_holds_package():
    assert (paths.PROJECT_ROOT / "helpers" / "core" / "paths.py").is_file()


def test_get_device_and_errors():
    assert runtime.get_device("cpu").type == "cpu"
    assert runtime.get_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device='tpu'"):
        runtime.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            runtime.get_device("cuda")


def test_seed_everything_reproducible():
    runtime.seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    runtime.seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)


def test_choose_precision_by_name():
    cpu = torch.device("cpu")
    assert runtime.choose_precision(cpu, "fp32").precision.amp_dtype is None
    assert runtime.choose_precision(cpu, "bf16").precision.amp_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        runtime.choose_precision(cpu, "fp8")


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic.atomic_write_text(target, "one")
    atomic.atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_atomic_write_failure_keeps_old(tmp_path):
    target = tmp_path / "f.bin"
    atomic.atomic_write_bytes(target, b"good")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"good"
    assert len(list(tmp_path.iterdir())) == 1


def test_atomic_write_survives_sigkill(tmp_path):
    """A writer killed mid-write leaves the previous file intact."""
    target = tmp_path / "big.bin"
    atomic.atomic_write_bytes(target, b"old")
    code = textwrap.dedent(f"""
        import os, signal
        from helpers.core.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"x" * 1000)
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -9
    assert target.read_bytes() == b"old"


def test_checkpoint_roundtrip_weights_only(tmp_path):
    torch.manual_seed(0)
    model = EndoVAE(EndoVAEConfig(latent_dim=4))
    opt = torch.optim.Adam(model.parameters())
    path = checkpoint.save_checkpoint(
        tmp_path / "m.pt",
        model,
        optimizer=opt,
        epoch=3,
        history=[{"epoch": 1, "total": 1.0}],
        train_config={"loss": "mse"},
        rng={"torch": torch.get_rng_state()},
    )
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 3 and raw["model_config"]["latent_dim"] == 4
    loaded, state = checkpoint.load_checkpoint(path)
    assert not loaded.training
    for (k, v), (k2, v2) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)


def test_checkpoint_missing_names_producer(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_train_mse"):
        checkpoint.load_checkpoint(tmp_path / "nope.pt", producer="03_train_mse")


def test_checkpoint_corrupt_file_named(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        checkpoint.read_checkpoint(bad)


def test_import_changes_no_global_state():
    code = (
        "import torch; before = torch.get_num_threads(), torch.initial_seed();"
        "import helpers, helpers.core.paths, helpers.core.runtime, helpers.model.endovae, helpers.model.losses,"
        " helpers.core.atomic, helpers.train.checkpoint, helpers.core.plots;"
        "assert (torch.get_num_threads(), torch.initial_seed()) == before"
    )
    env = {**os.environ, "MPLBACKEND": "Agg"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
