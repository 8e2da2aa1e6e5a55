"""End to end: the quick profile through `python -m helpers.run`, then check the PDF it built."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers.core import paths
from helpers.core.results import read_results
from helpers.data import preprocess
from helpers.evaluate import metrics
from helpers.narrative.sharper import NOT_ASSESSED
from helpers.narrative.summary import format_metric
from helpers.runner import report
from helpers.study.sharper import TOKEN_EPOCHS
from helpers.train.checkpoint import load_checkpoint, read_checkpoint
from helpers.train.infer import decode_samples, reconstruct

pytestmark = pytest.mark.slow

# Which notebook produces each caption (DEVELOPING.md, "Report sections and numbering").
EXPECTED = {
    **{f"Figure {n}": nb for n, nb in [(1, "01"), (2, "02"), (3, "03"), (4, "04")]},
    **{f"Figure {n}": "05" for n in range(5, 9)},
    "Table 1": "06",
    "Table 2": "06",
    "Table 3": "07",
    **{f"Figure {n}": "09" for n in (16, 17, 18)},
    "Table 12": "09",
    "Table 13": "09",
    **{f"Figure {n}": "10" for n in (19, 20)},
    **{f"Table {n}": "10" for n in range(14, 20)},
    "Table S14": "10",
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
    reuse = os.environ.get("ENDOVAE_E2E_RUN_DIR")  # check a quick run made earlier instead
    if reuse:
        return Path(reuse), Path(reuse).parent
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
    sample = paths.kvasir_sample_dir() / "polyps"
    if sample.is_dir():  # Figure 1b is drawn only where real Kvasir frames are at hand
        cmd += ["-p", "real_sample_dir", str(sample)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
    assert proc.returncode == 0, f"runner failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return run_dir, base


@functools.cache
def _pdf_text(pdf) -> str:
    """Text of a PDF (pdftotext, UTF-8; read once per file for the module's tests)."""
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
    found = read_results(run_dir, "06").get("models", {})
    assert set(found) == {"mse", "bce"}, f"no PSNR/SSIM results in {run_dir / 'results'}"
    text = " ".join(_pdf_text(run_dir / "report" / f"{report.STEM}.pdf").split())
    for model, values in found.items():
        number = {"mse": "table1_mse", "bce": "table2_bce"}[model]
        table = pd.read_csv(run_dir / "tables" / f"{number}.csv", index_col=0)
        for metric in ("psnr", "ssim"):
            mean, std = values[metric]["mean"], values[metric]["std"]
            assert format_metric(metric, mean, std) in text, (model, metric)
            assert table.loc[metric.upper()].tolist()[:2] == pytest.approx([mean, std])


def test_quick_profile_leaves_the_collapse_plateau(quick_run):
    """Both models pass Table S10's criteria on this run: KL, sample spread, held-out PSNR gain over
    the mean training image and the share of held-out images beating it one by one; notebook 05's
    table gives the same values and says "yes" for both."""
    run_dir, _ = quick_run
    run = paths.RunPaths(run_dir)
    healthy = preprocess.load_images(run.processed, "normal", split="test")
    train_images = preprocess.load_images(run.processed, "normal", split="train")
    x = preprocess.to_tensor(healthy)
    mean_image = preprocess.to_tensor(train_images).mean(0, keepdim=True)
    table = pd.read_csv(run.tables / "plateau_check.csv", index_col=0)
    for name in ("mse", "bce"):
        model, state = load_checkpoint(run.checkpoint(name), "cpu")
        samples = decode_samples(model, 9, seed=0)
        check = metrics.plateau_check(
            pd.DataFrame(state["history"]), state["train_config"]["batch_size"], samples, x,
            reconstruct(model, x), mean_image,
        )  # fmt: skip
        assert check["KL per image (nats)"] >= metrics.PLATEAU_KL_PER_IMAGE, (name, check)
        assert check["sample spread"] >= metrics.PLATEAU_SAMPLE_SPREAD, (name, check)
        assert check["PSNR gain (dB)"] >= metrics.PLATEAU_PSNR_GAIN_DB, (name, check)
        assert check["images beating the mean (%)"] >= 100 * metrics.PLATEAU_BEAT_SHARE, (
            name,
            check,
        )
        assert check["past the plateau"] == "yes"
        row = table.loc[name.upper()]
        assert row["past the plateau"] == "yes", (name, dict(row))
        assert row["PSNR gain (dB)"] == pytest.approx(check["PSNR gain (dB)"], abs=1e-3), name
        assert row["images beating the mean (%)"] == pytest.approx(
            check["images beating the mean (%)"], abs=1e-3
        ), name


def test_sample_quality_scale_is_ordered(quick_run):
    """Table S11 on the quick run: two halves of the real frames are closer than the mean image
    (FD and KID), and the mean image has no recall (it covers one point of the real manifold)."""
    run_dir, _ = quick_run
    rows = read_results(run_dir, "05")["quality"]["rows"]
    floor, mean = rows["real vs real (floor)"], rows["mean image"]
    assert floor["fd"] < mean["fd"] and floor["kid_mean"] < mean["kid_mean"], rows
    assert mean["recall"] < floor["recall"], rows
    summary = _pdf_text(run_dir / "report" / f"{report.STEM}.pdf").split("Summary")[-1]
    assert "Sample quality of the prior samples against" in " ".join(summary.split())


def test_sharper_section_in_the_pdf(quick_run):
    """Section 12 sits before the Summary (now 13); at the quick profile's token budget it says so,
    trains the sharper model for TOKEN_EPOCHS of 03's images, assesses no goal (Table 19 still
    holds this run's values) and leaves out the train-on-synthetic test."""
    run_dir, _ = quick_run
    if not any(paths.notebooks_dir().glob("10_*.ipynb")):
        pytest.skip("notebook 10 not written yet")
    text = " ".join(_pdf_text(run_dir / "report" / f"{report.STEM}.pdf").split())
    section = re.search(r"12\.? Beyond the report", text)
    summary = [m.start() for m in re.finditer(r"13\.? Summary", text)]
    assert section and summary and section.start() < summary[-1], "Section 12 missing or misplaced"
    found = read_results(run_dir, "10")
    assert found["variant"]["budget"] == "token" and found["synthetic_auc"] == {}, found
    sharp = read_checkpoint(run_dir / "checkpoints" / "sharp.pt")
    assert (
        sharp["extra"]["data"]
        == read_checkpoint(run_dir / "checkpoints" / "mse.pt")["extra"]["data"]
    )
    assert len(sharp["history"]) == TOKEN_EPOCHS
    gain = next(r for r in found["paired"]
                if r["images"] == "healthy (held-out)" and r["metric"] == "PSNR")  # fmt: skip
    goals = pd.read_csv(run_dir / "tables" / "table19_sharper_goals.csv", index_col=0)
    psnr = goals.loc["PSNR gain, held-out healthy (dB)", "this run"]
    assert psnr == pytest.approx(gain["mean sharper - faithful"], abs=1e-3)
    assert f"{psnr:.3f}" in text, "Table 19's PSNR gain is not in the PDF"
    assert set(goals["met"]) == {NOT_ASSESSED}, goals
    assert "Token budget (sharp_budget: token" in text
    assert "left out at the token budget" in text, "Table 18 does not say why it is empty"
    assert "token budget, so its goals were not assessed" in text.split("Summary")[-1]


def test_no_absolute_path_of_the_machine_in_the_pdf(quick_run):
    run_dir, base = quick_run
    text = " ".join(_pdf_text(run_dir / "report" / f"{report.STEM}.pdf").split())
    for root in {str(base), str(paths.PROJECT_ROOT), str(Path.home()), "/tmp/", "/work/"}:
        assert root not in text, f"{root} appears in the PDF"


@pytest.mark.parametrize("which", ["source", "executed"])
def test_plain_nbconvert_to_pdf_works_for_a_notebook(quick_run, which, tmp_path):
    """`jupyter nbconvert --to pdf NOTEBOOK`, as Jupyter's "Save and Export as PDF" does."""
    run_dir, _ = quick_run
    if which == "source":
        folder, name = paths.notebooks_dir(), "02_architecture.ipynb"
    else:
        folder, name = run_dir / "executed", "05_generation_reconstruction.ipynb"
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "pdf", name,
           "--output-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / name.replace(".ipynb", ".pdf")).stat().st_size > 10_000
