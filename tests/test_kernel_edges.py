"""Issue 19 kind 7: what a user reads when a kernel dies, and no stray interrupt at shutdown."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from jupyter_client import AsyncKernelManager

from helpers.core import paths
from helpers.model.endovae import EndoVAE, EndoVAEConfig
from helpers.runner import execution
from helpers.train.checkpoint import save_checkpoint


def test_dead_kernel_note_names_the_checkpoint_and_its_epoch(tmp_path):
    """A rerun resumes from the newest checkpoint the notebook wrote; the note says which."""
    model = EndoVAE(EndoVAEConfig())
    (tmp_path / "models").mkdir()
    save_checkpoint(tmp_path / "models" / "old.pt", model, epoch=2, train_config={"epochs": 9})
    save_checkpoint(tmp_path / "models" / "mse.pt", model, epoch=7, train_config={"epochs": 30})
    note = execution.resume_note(tmp_path, ["models/old.pt", "models/mse.pt", "x.json"])
    assert "a rerun resumes from the last checkpoint, models/mse.pt (epoch 7 of 30)" in note
    assert "\n" not in note


def test_dead_kernel_note_without_a_checkpoint_says_the_work_starts_again(tmp_path):
    """No checkpoint written (or none left on disk): the rerun starts this notebook again."""
    note = execution.resume_note(tmp_path, ["models/gone.pt", "results/03.json"])
    assert note.endswith("a rerun starts this notebook's work again")


def test_dead_kernel_note_names_an_unreadable_checkpoint(tmp_path):
    """A truncated checkpoint is named as unreadable, in one line."""
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    note = execution.resume_note(tmp_path, ["bad.pt"])
    assert "its last checkpoint bad.pt is unreadable" in note and "\n" not in note


def test_no_interrupt_is_sent_while_the_kernel_shuts_down(monkeypatch):
    """The SIGINT jupyter_client sends before its shutdown request is skipped (it logged
    "KeyboardInterrupt caught in kernel." after successful runs); a real interrupt still goes."""
    calls = []

    async def record(self):
        calls.append(self.shutting_down)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", record)
    mgr = execution.kernel_manager({})()
    mgr.shutting_down = True
    asyncio.run(mgr._async_interrupt_kernel())
    assert calls == []
    mgr.shutting_down = False
    asyncio.run(mgr._async_interrupt_kernel())
    assert calls == [False]


def test_the_runner_always_uses_its_kernel_manager(monkeypatch, tmp_path):
    """Without extra environment the runner's kernel manager is still the one papermill gets."""
    seen = {}

    def fake_execute(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(execution.pm, "execute_notebook", fake_execute)
    src = tmp_path / "01_x.ipynb"
    src.write_text("{}")
    (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError, match="stop here"):
        execution.execute(src, {}, tmp_path / "out" / "01_x.ipynb")
    cls = seen.get("kernel_manager_class")
    assert cls is not None and issubclass(cls, AsyncKernelManager)


@pytest.mark.parametrize(
    ("script", "extra", "words"),
    [
        ("train_throughput.py", ["--data", "/no/such/folder"], "--data /no/such/folder"),
        ("gpu_check.py", ["--device", "tpu", "--tiny"], "device='tpu'"),
    ],
)
def test_benchmarks_turn_expected_errors_into_one_line(script, extra, words):
    """Issue 19 kind 4: a benchmark given a bad option prints one line and exits 2."""
    done = subprocess.run(
        [sys.executable, str(paths.PROJECT_ROOT / "benchmarks" / script), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]


def test_avx2_timing_refuses_a_run_folder_that_holds_a_run(tmp_path):
    """benchmarks/avx2_quick.sh times a run from scratch: a folder with files in it is left as
    it is, with one line and exit 2, before anything runs."""
    (tmp_path / "run.json").write_text("{}")
    done = subprocess.run(
        ["bash", str(paths.PROJECT_ROOT / "benchmarks" / "avx2_quick.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"error: {tmp_path} is not empty; give a new folder (avx2_quick.sh times a run from "
        "scratch)"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
