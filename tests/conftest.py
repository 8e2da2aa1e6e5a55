"""Shared pytest fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from helpers.core import paths


def pytest_configure(config) -> None:
    """Keep measured precision speeds of the tests out of the user's cache (kernels inherit it);
    under pytest-xdist, give each worker its own cores."""
    os.environ["ENDOVAE_CACHE_DIR"] = tempfile.mkdtemp(prefix="endovae-test-cache-")
    _own_cores(os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT"))


def _own_cores(worker: str | None, count: str | None) -> None:
    """Pin xdist worker gwI of N (and the kernels and runners it starts) to every N-th core from
    the I-th, with as many OpenMP threads: two workers on two cores then each train on one core
    instead of stalling each other's threads. Nothing without xdist or with fewer cores."""
    if not worker or not count or not hasattr(os, "sched_setaffinity"):
        return
    cores, index, n = sorted(os.sched_getaffinity(0)), int(worker.removeprefix("gw")), int(count)
    if len(cores) < n:
        return
    mine = set(cores[index::n])
    os.sched_setaffinity(0, mine)
    os.environ["OMP_NUM_THREADS"] = str(len(mine))


def pytest_collection_modifyitems(config, items) -> None:
    """The end-to-end module first: under `make test` (`-n 2 --dist loadfile`) its quick run then
    overlaps every other file on the second worker instead of trailing them."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] != "tests/test_e2e.py")


@pytest.fixture
def kvasir_sample() -> Path:
    """The real Kvasir polyp frames in ../shared/kvasir-sample (skip when absent)."""
    folder = paths.kvasir_sample_dir() / "polyps"
    if not folder.is_dir() or not any(folder.glob("*.jpg")):
        pytest.skip(f"real Kvasir sample not found at {folder}")
    return folder


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch) -> Path:
    """Point the run and data folders at a temporary directory."""
    monkeypatch.setenv("ENDOVAE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ENDOVAE_RUN_DIR", str(tmp_path / "runs" / "test"))
    monkeypatch.setenv("ENDOVAE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


# --- papermill smoke tests -------------------------------------------------------------------
# Tiny parameters for the notebooks the later notebooks depend on (the contract every notebook
# owner keeps: these names exist in that notebook's parameters cell).
TINY_PARAMS = {
    "01_preprocessing": {"n_per_class": 12},
    "03_train_mse": {"epochs": 1, "batch_size": 16},
    "04_train_bce": {"epochs": 1, "batch_size": 16},
}


def run_notebook(name: str, run_dir: Path, **params):
    """Execute notebooks/<name>.ipynb with papermill into run_dir/executed; return the output path."""
    import papermill as pm

    src = paths.notebooks_dir() / f"{name}.ipynb"
    out = Path(run_dir) / "executed" / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(src),
        str(out),
        parameters={"run_dir": str(run_dir), **params},
        cwd=str(paths.notebooks_dir()),
        kernel_name="python3",
        progress_bar=False,
    )
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder after notebooks 01, 03 and 04 ran with tiny parameters (session-wide)."""
    base = tmp_path_factory.mktemp("tiny")
    run_dir = base / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("ENDOVAE_DATA_DIR", str(base / "data"))
    mp.setenv("ENDOVAE_RUN_DIR", str(run_dir))
    try:
        for name in ("01_preprocessing", "03_train_mse", "04_train_bce"):
            run_notebook(name, run_dir, **TINY_PARAMS[name])
    finally:
        mp.undo()
    return run_dir
