"""Every notebook committed to git is clean: no outputs, no execution counts, one parameters cell."""

from __future__ import annotations

import subprocess

import nbformat
import pytest

from helpers.core import paths
from helpers.runner import colab


def tracked_notebooks() -> list[str]:
    """Notebooks under notebooks/ that git tracks (empty outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "notebooks/*.ipynb"],
            cwd=paths.PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(line for line in out.splitlines() if line.strip())


NOTEBOOKS = tracked_notebooks()
WORK_LINES = 50  # code lines after the parameters cell: narrative, a call, a figure


def _read(name: str):
    """A tracked notebook as a NotebookNode."""
    return nbformat.read(paths.PROJECT_ROOT / name, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_outputs_or_execution_counts(name):
    nb = _read(name)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{name}: cells {dirty} have outputs or execution counts (clear them)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_exactly_one_parameters_cell(name):
    nb = _read(name)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged 'parameters' (need exactly 1)"
    cell = nb.cells[tagged[0]]
    assert cell.cell_type == "code", f"{name}: the parameters cell must be a code cell"
    assert "report-skip" in cell.metadata.get("tags", []), f"{name}: tag it report-skip too"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_valid_nbformat_with_cell_ids(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert all(cell.get("id") for cell in nb.cells), f"{name}: every cell needs an id"
    assert not nb.metadata.get("papermill"), f"{name}: papermill metadata means it was executed"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_house_shape(name):
    """Title + Colab badge, guarded setup, imports, one typed parameters cell, all report-skip."""
    import re

    import papermill

    cells = _read(name).cells
    stem = name.split("/")[-1].removesuffix(".ipynb")
    title = cells[0]
    assert title.cell_type == "markdown" and title.source.startswith(f"# {stem[:2]} · ")
    assert ("colab-badge.svg" in title.source) == bool(colab.badge(f"{stem}.ipynb")), name
    assert "google.colab" in cells[1].source, f"{name}: cell 1 must be the guarded Colab setup"
    tags = [c.metadata.get("tags", []) for c in cells]
    assert [i for i, t in enumerate(tags) if "parameters" in t] == [3], name
    assert all("report-skip" in t for t in tags[:5]), f"{name}: cells 0-4 must be report-skip"
    params = cells[3].source
    names = []
    for line in params.splitlines():
        assert re.match(r"^\w+: (str|int|float|bool) = [^=]+  # [^=]+$", line), f"{name}: {line}"
        names.append(line.split(":")[0])
    assert {"run_dir", "seed"} <= set(names), f"{name}: run_dir and seed are required"
    inspected = papermill.inspect_notebook(str(paths.PROJECT_ROOT / name))
    assert list(inspected) == names, f"{name}: papermill must see every parameter"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_thin_notebook_defines_no_function(name):
    """Notebooks are narrative and calls: no def/class; the work after the parameters is short."""
    import ast

    cells = _read(name).cells
    first = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    code = "\n".join(
        line
        for cell in cells[2:]
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if not line.lstrip().startswith("%")
    )
    defined = [
        node.name
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    assert not defined, f"{name} defines {defined}: move them into helpers"
    work = [
        line
        for cell in cells[first + 1 :]
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(work) <= WORK_LINES, f"{name}: {len(work)} code lines after the parameters cell"
