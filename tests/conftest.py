"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import paths

os.environ.setdefault("MPLBACKEND", "Agg")


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
