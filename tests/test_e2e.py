"""End to end: the quick profile through `python -m helpers.run`, then check the PDF it built."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from helpers import paths, report

pytestmark = pytest.mark.slow

# Which notebook produces each caption (DEVELOPING.md, "Report sections and numbering").
EXPECTED = {
    **{f"Figure {n}": nb for n, nb in [(1, "01"), (2, "02"), (3, "03"), (4, "04")]},
    **{f"Figure {n}": "05" for n in range(5, 9)},
    "Table 1": "06",
    "Table 2": "06",
    "Table 3": "07",
}
CAPTION = re.compile(r"^\*\*((?:Figure|Table) \w+):\*\*\s*(.+)$", re.M)


def _squash(text: str) -> str:
    """Text without whitespace, hyphens, markdown marks and curly quotes (as pdftotext gives)."""
    text = text.translate(str.maketrans("‘’“”–—", "''\"\"--"))  # pandoc's smart quotes
    return re.sub(r"[\s\-*_`$\\{}]", "", text)


def _captions(run_dir) -> dict[str, str]:
    """Caption label -> caption text, from the report cells of the executed notebooks."""
    found = {}
    for path in report.executed_notebooks(run_dir):
        for cell in report.report_cells(nbformat.read(path, as_version=4), path.stem):
            if cell.cell_type == "markdown":
                found.update(dict(CAPTION.findall(cell.source)))
    return found


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick profile, run once into a temporary run folder (module-wide)."""
    if not list(paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        pytest.skip("no notebooks yet")
    for tool in ("xelatex", "pandoc", "pdftotext", "pdfinfo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (see README: make setup as root installs it)")
    base = tmp_path_factory.mktemp("e2e")
    run_dir = base / "runs" / "quick"
    env = {
        **os.environ,
        "ENDOVAE_RUNS_DIR": str(base / "runs"),
        "ENDOVAE_DATA_DIR": str(base / "data"),
        "ENDOVAE_REPORT_DIR": str(base / "build"),
        "MPLBACKEND": "Agg",
    }
    cmd = [sys.executable, "-m", "helpers.run", "--profile", "quick", "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
    assert proc.returncode == 0, f"runner failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return run_dir, base


def _pdf_text(pdf) -> str:
    """Text of a PDF (pdftotext, UTF-8)."""
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True)
    return out.stdout.decode("utf-8")


def test_pdf_exists_and_is_long_enough(quick_run):
    run_dir, base = quick_run
    pdf = run_dir / "report" / f"{report.STEM}.pdf"
    assert pdf.is_file()
    assert (base / "build" / pdf.name).is_file(), "runs/<profile> reports are published"
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert pages >= 8, f"only {pages} pages"
    assert (run_dir / "timings.csv").is_file()


def test_every_caption_of_the_run_is_in_the_pdf(quick_run):
    run_dir, _ = quick_run
    captions = _captions(run_dir)
    present = {p.stem[:2] for p in paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb")}
    missing = [label for label, nb in EXPECTED.items() if nb in present and label not in captions]
    assert not missing, f"captions missing from the executed notebooks: {missing}"
    text = _squash(_pdf_text(run_dir / "report" / f"{report.STEM}.pdf"))
    for label, caption in captions.items():
        want = _squash(f"{label}: {caption}")[:60]
        assert want in text, f"{label} caption not found in the PDF: {caption!r}"


def test_metric_numbers_of_the_run_are_in_the_pdf(quick_run):
    run_dir, _ = quick_run
    if not any(paths.notebooks_dir().glob("06_*.ipynb")):
        pytest.skip("notebook 06 not written yet")
    found = report.metric_summary(paths.RunPaths(run_dir).tables)
    assert set(found) == {"mse", "bce"}, f"PSNR/SSIM tables not found in {run_dir / 'tables'}"
    text = " ".join(_pdf_text(run_dir / "report" / f"{report.STEM}.pdf").split())
    for model, values in found.items():
        for metric, (mean, std) in values.items():
            assert report.format_metric(metric, mean, std) in text, (model, metric)
