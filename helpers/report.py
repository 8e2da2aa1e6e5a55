"""Merge a run's executed notebooks into one report and export it to PDF and HTML.

    python -m helpers.report [--run-dir DIR] [--out DIR] [--no-publish] [--html-only]

The report is a title page (run facts from `run.json` and notebook 01's source record), every
executed notebook's cells except those tagged `report-skip` / `parameters` /
`injected-parameters` with code inputs hidden, and a "## 12. Summary" written from the
notebooks' `results/NN.json`. It is always written to `<run_dir>/report/EndoVAE_report.
{ipynb,html,pdf}`. A run in its profile's default folder (`runs/<profile>`) is also published
to `report/build/`, so `report/build/EndoVAE_report.pdf` is the report of the last default run.

The PDF needs xelatex and pandoc; when they are missing the HTML is still written and the
command says how to install them.
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import nbformat

from helpers import paths
from helpers.atomic import atomic_write_bytes, atomic_write_text
from helpers.export import export_html, try_pdf
from helpers.kvasir import read_source_record
from helpers.narrative.summary import describe_record, stale_text, summary_text
from helpers.results import read_results
from helpers.runtime import library_versions
from helpers.stamps import stale_inputs

TITLE = "Reconstruction of Endoscopy Polyp Images with EndoVAE"
STEM = "EndoVAE_report"
TITLE_TEXT = paths.PROJECT_ROOT / "report" / "title.md"
DROP_TAGS = frozenset(
    {"report-skip", "parameters", "injected-parameters", "papermill-error-cell-tag"}
)
# Parameters shown on the title page (in this order) when a notebook declares them.
KEY_SETTINGS = (
    "data_dir",
    "n_per_class",
    "epochs",
    "batch_size",
    "lr",
    "n_eval_polyps",
    "n_pairs",
    "n_clf_train",
    "n_clf_test",
    "clf_epochs",
    "weights",
    "seed",
    "device",
)
OBJECT_REPR = re.compile(r"^<[^>]*(at 0x[0-9a-fA-F]+|Figure size [^>]*)>$")


@dataclass
class ReportResult:
    """Files the report build wrote (pdf is None when it could not be made)."""

    notebook: Path
    html: Path
    pdf: Path | None
    published: list[Path] = field(default_factory=list)
    pdf_error: str = ""

    @property
    def ok(self) -> bool:
        """True unless LaTeX was present and still failed."""
        return self.pdf is not None or self.pdf_error in ("missing-tex", "skipped")


# --- reading the run --------------------------------------------------------------------------


def executed_notebooks(run_dir: Path) -> list[Path]:
    """The executed numbered notebooks of a run, in order."""
    folder = Path(run_dir) / "executed"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if not p.name.startswith("."))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """An executed notebook as a NotebookNode (error naming the file when unreadable)."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable notebook ({exc})") from exc


def data_source(run_dir: Path) -> tuple[str, bool]:
    """(words naming the data the run used, True when it is the embedded Kvasir-like set)."""
    record = read_source_record(paths.RunPaths(Path(run_dir)).processed)
    if record is None:
        return "unknown (notebook 01 left no record of its data)", False
    return describe_record(record), record["kind"] == "synthetic"


def _git(*args: str) -> subprocess.CompletedProcess:
    """Run a git command in the project root and capture its output."""
    return subprocess.run(
        ["git", *args], cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=10
    )


def git_commit() -> str:
    """Short commit of the project (with "+ local changes" when the tree is dirty)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" + local changes" if dirty.stdout.strip() else "")


def key_settings(params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings that shape the results, as the notebooks ran with them (first value wins)."""
    found: dict[str, Any] = {}
    for values in params.values():
        for name, value in values.items():
            if name in KEY_SETTINGS and name not in found:
                found[name] = value
    if isinstance(found.get("data_dir"), str) and "/" in found["data_dir"]:
        found["data_dir"] = Path(found["data_dir"]).name  # no absolute path of the machine
    return {name: found[name] for name in KEY_SETTINGS if name in found}


def training_epochs(params: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Epochs each training notebook (03, 04) ran with."""
    return {
        name: values["epochs"]
        for name, values in params.items()
        if name[:2] in ("03", "04") and isinstance(values.get("epochs"), int)
    }


# --- building the merged notebook -------------------------------------------------------------


def _keep_output(output: dict) -> bool:
    """Drop stderr streams (progress bars, warnings), widgets and bare object reprs."""
    if output.get("output_type") == "stream":
        return output.get("name") != "stderr"
    if output.get("output_type") == "error":
        return True
    data = output.get("data", {})
    if "application/vnd.jupyter.widget-view+json" in data and len(data) <= 2:
        return False
    if set(data) == {"text/plain"}:
        return not OBJECT_REPR.match(str(data["text/plain"]).strip())
    return True


def report_cells(nb: nbformat.NotebookNode, prefix: str) -> list:
    """A notebook's cells for the report: tagged cells dropped, noise outputs removed, new ids."""
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & DROP_TAGS:
            continue
        cell = copy.deepcopy(cell)
        cell["id"] = f"{prefix}-{len(cells)}"
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if _keep_output(o)]
            if not cell.outputs:
                continue
        cells.append(cell)
    return cells


def _escape_cell(value: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def title_cells(run_dir: Path, names: list[str], info: dict, source: str) -> list:
    """The title page: run facts (`info`: run.json), then a table of contents (PDF) / a heading."""
    counts = read_results(run_dir, "01").get("counts", {})
    parts = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "total")
    images = f"{counts['total']} processed images ({parts})" if counts else "no manifest found"
    settings = key_settings(info.get("parameters", {}))
    rows = [
        ("Built", date.today().isoformat()),
        ("Profile", info.get("profile", "unknown (not made by helpers.run)")),
        ("Data", source),
        ("Images", images),
        ("Notebooks", ", ".join(names) or "none"),
        ("Git commit", git_commit()),
        ("Device", info.get("device", "unknown")),
        ("Libraries", ", ".join(f"{k} {v}" for k, v in library_versions().items())),
    ]
    if settings:
        rows.append(("Settings", ", ".join(f"{k}={v!r}" for k, v in settings.items())))
    table = "\n".join(f"| {k} | {_escape_cell(v)} |" for k, v in rows)
    intro = TITLE_TEXT.read_text(encoding="utf-8").strip()
    text = f"{intro}\n\n| Run | Details |\n|---|---|\n{table}"
    heading = nbformat.v4.new_raw_cell(f"<h1>{TITLE}</h1>", metadata={"raw_mimetype": "text/html"})
    toc = nbformat.v4.new_raw_cell(
        "\\newpage\n\\tableofcontents\n\\newpage", metadata={"raw_mimetype": "text/latex"}
    )
    return _with_ids([heading, nbformat.v4.new_markdown_cell(text), toc], "title")


def _with_ids(cells: list, prefix: str) -> list:
    """Give cells the ids prefix-0, prefix-1, ..."""
    for i, cell in enumerate(cells):
        cell["id"] = f"{prefix}-{i}"
    return cells


def summary_cell(run_dir: Path, info: dict, source: str, synthetic: bool) -> nbformat.NotebookNode:
    """The "## 12. Summary" cell, from the run's results and its resolved parameters (run.json)."""
    params = info.get("parameters", {})
    results = {n: read_results(run_dir, n) for n in ("06", "07", "08", "09")}
    ablation = next((v for k, v in params.items() if k.startswith("08")), {})
    text = summary_text(source, synthetic, training_epochs(params), results, ablation)
    return _with_ids([nbformat.v4.new_markdown_cell(text)], "summary")[0]


def merge_notebooks(run_dir: Path) -> nbformat.NotebookNode:
    """One notebook: title page, every executed notebook's report cells, the summary."""
    run_dir = Path(run_dir)
    found = executed_notebooks(run_dir)
    if not found:
        raise FileNotFoundError(f"{run_dir / 'executed'}: no executed notebooks (run helpers.run)")
    nbs = {p.stem: read_notebook(p) for p in found}
    merged = nbformat.v4.new_notebook()
    first = next(iter(nbs.values()))
    merged.metadata.update(
        {k: first.metadata[k] for k in ("kernelspec", "language_info") if k in first.metadata}
    )
    merged.metadata["title"] = TITLE
    merged.metadata["date"] = date.today().isoformat()
    info = paths.read_run_info(run_dir)  # {} for a run made another way
    source, synthetic = data_source(run_dir)
    merged.cells = title_cells(run_dir, list(nbs), info, source)
    for name, nb in nbs.items():
        if stale_inputs(run_dir, name):
            merged.cells += _with_ids([nbformat.v4.new_markdown_cell(stale_text(name))], "stale")
        merged.cells.extend(report_cells(nb, name))
    merged.cells.append(summary_cell(run_dir, info, source, synthetic))
    return merged


# --- building and publishing ------------------------------------------------------------------


def is_default_run(run_dir: Path) -> bool:
    """True when run_dir is runs/<profile> of the profile recorded in its run.json."""
    profile = paths.read_run_info(run_dir).get("profile")
    return bool(profile) and Path(run_dir).resolve() == (paths.runs_root() / profile).resolve()


def build_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    publish: bool | None = None,
    pdf: bool = True,
) -> ReportResult:
    """Merge and export a run's report; publish to report/build/ for default runs."""
    run_dir = Path(run_dir).resolve()
    out = Path(out_dir) if out_dir else run_dir / "report"
    nb = merge_notebooks(run_dir)
    notebook = atomic_write_text(out / f"{STEM}.ipynb", nbformat.writes(nb))
    result = ReportResult(notebook, export_html(nb, out / f"{STEM}.html"), None)
    if pdf:
        result.pdf, result.pdf_error = try_pdf(nb, out / f"{STEM}.pdf")
    else:
        result.pdf_error = "skipped"
    if publish if publish is not None else is_default_run(run_dir):
        result.published = _publish(result, paths.report_build_dir())
    for written in [result.pdf, result.html, *result.published]:
        if written:
            print(f"report: {written}")
    return result


def _publish(result: ReportResult, folder: Path) -> list[Path]:
    """Copy the built report files to `folder` (atomically)."""
    copied = []
    for src in (result.pdf, result.html):
        if src is not None:
            copied.append(atomic_write_bytes(folder / src.name, src.read_bytes()))
    return copied


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--run-dir", default="", help="run folder (default: runs/quick)")
    parser.add_argument("--out", help="output folder (default: <run_dir>/report)")
    parser.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also copy to report/build/ (default: for runs/<profile> only)",
    )
    parser.add_argument("--html-only", action="store_true", help="skip the PDF")
    args = parser.parse_args(argv)
    run_dir = paths.RunPaths.from_param(args.run_dir).root
    try:
        result = build_report(run_dir, args.out, args.publish, pdf=not args.html_only)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
