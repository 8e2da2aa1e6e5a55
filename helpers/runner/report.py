"""Merge a run's executed notebooks into one report and export it to PDF and HTML.

    python -m helpers.report [--run-dir DIR] [--out DIR] [--no-publish] [--html-only]

The report is a title page (run facts from `run.json` and notebook 01's source record), every
executed notebook's cells except those tagged `report-skip` / `parameters` /
`injected-parameters` with code inputs hidden, and a "## 13. Summary" written from the
notebooks' `results/NN.json`. It is always written to `<run_dir>/report/EndoVAE_report.
{ipynb,html,pdf}`. A run in its profile's default folder (`runs/<profile>`) is also published
to `report/build/`, so `report/build/EndoVAE_report.pdf` is the report of the last default run.

The PDF needs xelatex and pandoc; when they are missing the HTML is still written and the
command says how to install them.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import nbformat

from helpers.core import paths
from helpers.core.atomic import atomic_write_bytes, atomic_write_text
from helpers.core.results import results_path
from helpers.core.runtime import library_versions
from helpers.data.kvasir import SOURCE_RECORD, read_source_record
from helpers.narrative.summary import describe_record, stale_text, summary_text
from helpers.runner.export import export_html, try_pdf
from helpers.runner.stamps import stale_inputs

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
# The results/NN.json the report quotes: the entry it needs, and what is lost without it.
QUOTED_RESULTS = {
    "01": ("counts", "the title page's image counts are unknown", ""),
    "05": ("quality", "the summary quotes no sample-quality numbers", "Section 6"),
    "06": ("models", "the summary quotes no PSNR/SSIM numbers", "Section 7"),
    "07": ("models", "the summary leaves out the classifier's numbers", "Section 9"),
    "08": ("tables", "the summary leaves out the ablations", "Section 10"),
    "09": ("classifiers", "the summary leaves out the synthetic-data results", "Section 11"),
    "10": ("paired", "the summary leaves out the sharper model", "Section 12"),
}
RUN_INFO_LOST = "the profile, device, settings and training lengths are unknown"
CELL_ID = re.compile(r"[^A-Za-z0-9_-]")
LATEX_SPECIAL = {c: f"\\{c}" for c in "&%$#_{}"} | {
    "\\": "\\textbackslash{}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
}


@dataclass
class ReportResult:
    """Files the report build wrote (pdf is None when it could not be made)."""

    notebook: Path
    html: Path
    pdf: Path | None
    published: list[Path] = field(default_factory=list)
    pdf_error: str = ""
    warnings: list[str] = field(default_factory=list)

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


@dataclass
class RunRecords:
    """What the report read from a run folder (run.json, the quoted results/NN.json) and what
    it could not read: `unread` file -> "is missing" / "is not valid JSON" / ..., `warnings`
    one line per damaged file saying what the report therefore lacks."""

    info: dict[str, Any]
    results: dict[str, dict[str, Any]]
    unread: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _read_json(path: Path) -> tuple[Any, str, str]:
    """(content, "", "") or (None, what is wrong, details): missing, unreadable, not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "is missing", ""
    except (OSError, UnicodeDecodeError) as exc:
        return None, "could not be read", str(exc)
    try:
        return json.loads(text), "", ""
    except json.JSONDecodeError as exc:
        return None, "is not valid JSON", f"{exc.msg} at line {exc.lineno} column {exc.colno}"


def _problem(value: Any, problem: str, key: str | None = None) -> str:
    """The problem of a read JSON file: its read error, not an object, or no `key` entry."""
    if problem:
        return problem
    if not isinstance(value, dict):
        return "holds no JSON object"
    return f"has no {key!r} entry" if key and key not in value else ""


def _results_rel(number: str) -> str:
    """A notebook's results file relative to the run folder ("results/06.json")."""
    path = results_path(Path(), number)
    return f"{path.parent.name}/{path.name}"


def read_run(run_dir: Path, names: Sequence[str]) -> RunRecords:
    """run.json and the results/NN.json the report quotes; a missing or unreadable one is a
    warning (a missing results file only when its notebook ran: `names`, the executed ones)."""
    run_dir = Path(run_dir)
    found = RunRecords({}, {})
    value, problem, detail = _read_json(run_dir / paths.RUN_INFO)
    problem = _problem(value, problem)
    if problem:
        found.unread[paths.RUN_INFO] = problem
        details = f" ({detail})" if detail else ""
        found.warnings.append(f"{paths.RUN_INFO} {problem}{details}, so {RUN_INFO_LOST}.")
    else:
        found.info = value
    ran = {name[:2]: name for name in names}
    for number, (key, lost, section) in QUOTED_RESULTS.items():
        rel = _results_rel(number)
        value, problem, detail = _read_json(results_path(run_dir, number))
        if problem == "is missing" and number not in ran:
            continue  # the notebook did not run: nothing is damaged
        problem = _problem(value, problem, key)
        if not problem:
            found.results[number] = value
            continue
        found.unread[rel] = problem
        details = f" ({detail})" if detail else ""
        after = f" although notebook {ran[number]} ran" if number in ran else ""
        shown = f" ({section} shows what the notebook printed)" if section and after else ""
        found.warnings.append(f"{rel} {problem}{details}{after}, so {lost}{shown}.")
    return found


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
        cell["id"] = f"{CELL_ID.sub('-', prefix)[:50]}-{len(cells)}"
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if _keep_output(o)]
            if not cell.outputs:
                continue
        cells.append(cell)
    return cells


def _escape_cell(value: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _run_fact(records: RunRecords, key: str) -> Any:
    """A fact from run.json, else "unknown" with the reason (no run.json, unreadable, absent)."""
    if key in records.info:
        return records.info[key]
    problem = records.unread.get(paths.RUN_INFO)
    if problem == "is missing":
        return f"unknown (no {paths.RUN_INFO}: not made by helpers.runner.run)"
    return (
        f"unknown ({paths.RUN_INFO} {problem})" if problem else f"unknown (not in {paths.RUN_INFO})"
    )


def _images_row(records: RunRecords, names: list[str]) -> str:
    """The title page's processed-image counts (results/01.json), or why they are unknown."""
    counts = records.results.get("01", {}).get("counts", {})
    if counts:
        parts = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "total")
        return f"{counts.get('total', '?')} processed images ({parts})"
    rel = _results_rel("01")
    if rel in records.unread:
        return f"unknown ({rel} {records.unread[rel]})"
    if not any(name.startswith("01") for name in names):
        return "unknown (notebook 01 did not run)"
    return f"none ({rel} lists no images)"


def title_cells(
    run_dir: Path, names: list[str], records: RunRecords, source: str, warnings: list[str]
) -> list:
    """The title page: run facts (run.json, results/01.json), the warnings, a table of contents."""
    info = records.info
    rows = [
        ("Built", date.today().isoformat()),
        ("Profile", _run_fact(records, "profile")),
        ("Data", source),
        ("Images", _images_row(records, names)),
        ("Notebooks", ", ".join(names) or "none"),
        ("Git commit", git_commit()),
        ("Device", _run_fact(records, "device")),
        ("Libraries", ", ".join(f"{k} {v}" for k, v in library_versions().items())),
    ]
    settings = key_settings(info.get("parameters", {}))
    if settings:
        rows.append(("Settings", ", ".join(f"{k}={v!r}" for k, v in settings.items())))
    elif paths.RUN_INFO in records.unread:
        rows.append(("Settings", _run_fact(records, "parameters")))
    table = "\n".join(f"| {k} | {_escape_cell(v)} |" for k, v in rows)
    intro = TITLE_TEXT.read_text(encoding="utf-8").strip()
    text = f"{intro}\n\n| Run | Details |\n|---|---|\n{table}"
    heading = nbformat.v4.new_raw_cell(f"<h1>{TITLE}</h1>", metadata={"raw_mimetype": "text/html"})
    toc = nbformat.v4.new_raw_cell(
        "\\newpage\n\\tableofcontents\n\\newpage", metadata={"raw_mimetype": "text/latex"}
    )
    cells = [heading, nbformat.v4.new_markdown_cell(text), *warning_cells(warnings), toc]
    return _with_ids(cells, "title")


def _latex_escape(text: str) -> str:
    """Text safe in LaTeX (its special characters written as commands)."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def warning_cells(warnings: list[str]) -> list:
    """A boxed "Warnings" list (HTML and LaTeX twins) naming what the report could not read."""
    if not warnings:
        return []
    title = "Warnings: this report could not read everything it quotes"
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    box = (
        '<div class="report-warnings" style="border: 2px solid #b00020; padding: 0.4em 1em; '
        f'margin: 1em 0"><strong>{title}</strong><ul>{items}</ul></div>'
    )
    latex_items = "\n".join(f"\\item {_latex_escape(w)}" for w in warnings)
    latex = (
        "\\begin{center}\\fbox{\\begin{minipage}{0.94\\linewidth}\n"
        f"\\textbf{{{title}}}\n\\begin{{itemize}}\n{latex_items}\n\\end{{itemize}}\n"
        "\\end{minipage}}\\end{center}"
    )
    return [
        nbformat.v4.new_raw_cell(box, metadata={"raw_mimetype": "text/html"}),
        nbformat.v4.new_raw_cell(latex, metadata={"raw_mimetype": "text/latex"}),
    ]


def _with_ids(cells: list, prefix: str) -> list:
    """Give cells the ids prefix-0, prefix-1, ... (characters a cell id may not hold become -)."""
    prefix = CELL_ID.sub("-", prefix)[:50]
    for i, cell in enumerate(cells):
        cell["id"] = f"{prefix}-{i}"
    return cells


def _unique_ids(cells: list) -> list:
    """Cells with unique ids: a repeated one gets a suffix (-2, -3, ...), never a random one."""
    seen: set[str] = set()
    for cell in cells:
        base, n = cell["id"], 1
        while cell["id"] in seen:
            n += 1
            cell["id"] = f"{base[:60]}-{n}"
        seen.add(cell["id"])
    return cells


def summary_cell(
    run_dir: Path, records: RunRecords, source: str, synthetic: bool
) -> nbformat.NotebookNode:
    """The "## 13. Summary" cell, from the run's results and its resolved parameters (run.json)."""
    params = records.info.get("parameters", {})
    ablation = next((v for k, v in params.items() if k.startswith("08")), {})
    unread = {  # by notebook number ("06") or "run.json"
        (Path(rel).stem if "/" in rel else rel): f"{rel} {problem}"
        for rel, problem in records.unread.items()
    }
    text = summary_text(
        source, synthetic, training_epochs(params), records.results, ablation, unread=unread
    )
    return _with_ids([nbformat.v4.new_markdown_cell(text)], "summary")[0]


def merge_notebooks(run_dir: Path) -> nbformat.NotebookNode:
    """One notebook: title page, every executed notebook's report cells, the summary.

    What the report could not read (run.json, results/NN.json, the data source record) is
    listed on the title page and in the notebook's metadata ("report_warnings").
    """
    run_dir = Path(run_dir)
    found = executed_notebooks(run_dir)
    if not found:
        raise FileNotFoundError(
            f"{run_dir / 'executed'}: no executed notebooks (run helpers.runner.run)"
        )
    nbs = {p.stem: read_notebook(p) for p in found}
    merged = nbformat.v4.new_notebook()
    first = next(iter(nbs.values()))
    merged.metadata.update(
        {k: first.metadata[k] for k in ("kernelspec", "language_info") if k in first.metadata}
    )
    merged.metadata["title"] = TITLE
    merged.metadata["date"] = date.today().isoformat()
    records = read_run(run_dir, list(nbs))
    source, synthetic = data_source(run_dir)
    warnings = [*records.warnings, *_source_warning(run_dir, list(nbs))]
    merged.metadata["report_warnings"] = warnings
    merged.cells = title_cells(run_dir, list(nbs), records, source, warnings)
    for name, nb in nbs.items():
        if stale_inputs(run_dir, name):
            merged.cells += _with_ids(
                [nbformat.v4.new_markdown_cell(stale_text(name))], f"stale-{name}"
            )
        merged.cells.extend(report_cells(nb, name))
    merged.cells.append(summary_cell(run_dir, records, source, synthetic))
    _unique_ids(merged.cells)
    return merged


def _source_warning(run_dir: Path, names: list[str]) -> list[str]:
    """A warning when notebook 01 ran but its record of the data is missing or unreadable."""
    first = next((name for name in names if name.startswith("01")), None)
    processed = paths.RunPaths(Path(run_dir)).processed
    if first is None or read_source_record(processed) is not None:
        return []
    rel = (processed / SOURCE_RECORD).relative_to(Path(run_dir)).as_posix()
    return [
        f"{rel} is missing or unreadable although notebook {first} ran, so the data source "
        "is unknown."
    ]


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
    for warning in nb.metadata.get("report_warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    notebook = atomic_write_text(out / f"{STEM}.ipynb", nbformat.writes(nb))
    result = ReportResult(notebook, export_html(nb, out / f"{STEM}.html"), None)
    result.warnings = list(nb.metadata.get("report_warnings", []))
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
    except (OSError, ValueError) as exc:  # also a full disk or read-only folder (WriteError)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
