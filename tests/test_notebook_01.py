"""Notebook 01 (preprocessing): structure, and a papermill run with tiny parameters."""

from __future__ import annotations

import json
import re

import nbformat
import pandas as pd
from conftest import TINY_PARAMS, run_notebook
from PIL import Image

from helpers.core import paths
from helpers.data.processed import load_images, load_manifest

NAME = "01_preprocessing"


def _notebook():
    """The source notebook."""
    return nbformat.read(paths.notebooks_dir() / f"{NAME}.ipynb", as_version=4)


def _outputs_text(executed) -> str:
    """All text, markdown and plain outputs of an executed notebook."""
    nb = nbformat.read(executed, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            parts += [
                out.get("text", ""),
                data.get("text/markdown", ""),
                data.get("text/plain", ""),
            ]
    return "\n".join(parts)


def test_notebook_shape():
    """Notebook 01's own parameters and sections (generic shape: test_notebooks_clean.py)."""
    cells = _notebook().cells
    params = cells[3].source
    for name in (*TINY_PARAMS[NAME], "run_dir", "data_dir", "seed", "healthy_test_fraction"):
        assert re.search(rf"^{name}: \w+ = ", params, re.M), name
    text = "\n".join(c.source for c in cells)
    order = [
        "## 1. Introduction",
        "## 2. Data preprocessing",
        "**Figure 1:** A few sample images before and after preprocessing.",
        "figure_1b_caption(",  # Figure 1b's caption, by code, only where real Kvasir is at hand
    ]
    assert [text.index(s) for s in order] == sorted(text.index(s) for s in order)
    assert "fig01_preprocessing.png" in text


def test_notebook_runs_with_tiny_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDOVAE_DATA_DIR", str(tmp_path / "data"))
    run_dir = tmp_path / "run"
    executed = run_notebook(NAME, run_dir, **TINY_PARAMS[NAME])
    run = paths.RunPaths(run_dir)
    n = TINY_PARAMS[NAME]["n_per_class"]
    manifest = load_manifest(run.processed)
    assert (manifest["group"] == "normal").sum() == 3 * n * 4
    assert (manifest["group"] == "polyps").sum() == n
    assert load_images(run.processed, "normal").shape == (3 * n * 4, 96, 96, 3)
    text = _outputs_text(executed)
    assert f"{3 * n} healthy frames became {3 * n * 4} images" in text
    assert "embedded Kvasir-like" in text
    figure = run.figures / "fig01_preprocessing.png"
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.width > 800 and image.height > 300
    assert not (run.figures / "fig01b_data_vs_kvasir.png").exists(), "no real frames: no 1b"
    assert "Figure 1b" not in text
    counts = pd.read_csv(run.tables / "preprocess_counts.csv", index_col=0)
    assert counts.loc["polyps", "processed images"] == n
    nb = nbformat.read(executed, as_version=4)
    assert not [
        o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    # a second run with the same data and parameters reuses the processed set
    again = run_notebook(NAME, run_dir, **TINY_PARAMS[NAME])
    assert "reused (inputs and parameters unchanged)" in _outputs_text(again)
    assert json.loads((run.processed / "source.json").read_text())["kind"] == "synthetic"


def test_figure_1b_appears_with_a_real_sample(tmp_path, monkeypatch, kvasir_sample):
    monkeypatch.setenv("ENDOVAE_DATA_DIR", str(tmp_path / "data"))
    run_dir = tmp_path / "run"
    executed = run_notebook(NAME, run_dir, real_sample_dir=str(kvasir_sample), **TINY_PARAMS[NAME])
    assert (paths.RunPaths(run_dir).figures / "fig01b_data_vs_kvasir.png").is_file()
    text = _outputs_text(executed)
    assert "**Figure 1b:**" in text and str(kvasir_sample) not in text
