"""Merge a run's executed notebooks into one report and export it to PDF and HTML.

    python -m helpers.report [--run-dir DIR] [--out DIR] [--no-publish] [--html-only]

The report is a title page (run facts read from the run folder), every executed notebook's
cells except those tagged `report-skip` / `parameters` / `injected-parameters` with code inputs
hidden, and a "## 12. Summary" written from the run's tables. It is always written to
`<run_dir>/report/EndoVAE_report.{ipynb,html,pdf}`. A run in its profile's default folder
(`runs/<profile>`) is also published to `report/build/` (helpers.paths.report_build_dir()), so
`report/build/EndoVAE_report.pdf` is the report of the last default run that was built.

The PDF needs xelatex and pandoc; when they are missing the HTML is still written and the
command says how to install them.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from helpers import paths
from helpers.atomic import atomic_write_bytes, atomic_write_text
from helpers.kvasir import read_source_record
from helpers.stamps import stale_inputs

TITLE = "Reconstruction of Endoscopy Polyp Images with EndoVAE"
STEM = "EndoVAE_report"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
PDF_TEMPLATE = "endovae_pdf"
DROP_TAGS = frozenset(
    {"report-skip", "parameters", "injected-parameters", "papermill-error-cell-tag"}
)
TEX_TOOLS = ("xelatex", "pandoc")
TEX_INSTALL_HINT = (
    "The PDF needs xelatex and pandoc. On Debian/Ubuntu: sudo apt-get install texlive-xetex "
    "texlive-fonts-recommended texlive-plain-generic pandoc fonts-dejavu-core"
)
SYNTHETIC_DATA = ("", "synthetic", "embedded")  # data_dir values meaning the embedded set
# The original report's numbers (Tables 1-2: 50 polyp images, 3000 epochs, KID -> Kvasir).
ORIGINAL_METRICS = {
    ("mse", "psnr"): (16.952047, 2.294434),
    ("mse", "ssim"): (0.470127, 0.084576),
    ("bce", "psnr"): (16.584135, 2.276679),
    ("bce", "ssim"): (0.447347, 0.093633),
}
# Lines of a pandoc longtable that a plain tabular does not have.
TABLE_DROP_LINES = ("\\endhead", "\\endfirsthead", "\\endfoot", "\\endlastfoot")
# Parameters shown on the title page (in this order) when a notebook declares them.
KEY_SETTINGS = (
    "data_dir",
    "n_per_class",
    "latent_dim",
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
# Status lines of helpers.classifier.build_classifier, shown by notebook 07.
NO_IMAGENET = "No ImageNet weights are available"
WITH_IMAGENET = "ImageNet ResNet18 weights loaded"
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


def read_notebook(path: Path):
    """An executed notebook as a NotebookNode (error naming the file when unreadable)."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable notebook ({exc})") from exc


def run_info(run_dir: Path) -> dict:
    """run.json written by the runner ({} when the run was made another way)."""
    try:
        return json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def notebook_parameters(nb) -> dict[str, Any]:
    """Parameter values a notebook ran with: its parameters cell's literals, then injected ones."""
    values: dict[str, Any] = {}
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and "parameters" in tags:
            values.update(_literal_assignments(cell.source))
    values.update(nb.metadata.get("papermill", {}).get("parameters", {}) or {})
    return values


def _literal_assignments(source: str) -> dict[str, Any]:
    """`name = literal` and `name: type = literal` statements of a cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    values = {}
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
            try:
                values[target.id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return values


def manifest_counts(run_dir: Path) -> dict[str, int]:
    """Processed images from the run's manifest.csv: total, healthy, polyps, held-out healthy."""
    import pandas as pd

    path = paths.RunPaths(Path(run_dir)).manifest
    if not path.is_file():
        return {}
    frame = pd.read_csv(path)
    counts = {"total": len(frame)}
    if "group" in frame.columns:
        group = frame["group"].astype(str)
        counts["healthy"] = int((group == "normal").sum())
        counts["polyps"] = int((group == "polyps").sum())
        if "split" in frame.columns:
            counts["held-out healthy"] = int(
                ((group == "normal") & (frame["split"] == "test")).sum()
            )
    if "source_id" in frame.columns:
        counts["source frames"] = int(frame["source_id"].nunique())
    return counts


def is_embedded(run_dir: Path) -> bool | None:
    """True when the run's images are the embedded Kvasir-like set (None: no manifest)."""
    import pandas as pd

    from helpers.metrics import data_is_embedded

    run = paths.RunPaths(Path(run_dir))
    if not run.manifest.is_file():
        return None
    return bool(data_is_embedded(pd.read_csv(run.manifest), str(run.processed)))


def describe_record(record: dict) -> str:
    """Words for the title page and Section 2 from what was checked."""
    digest = str(record.get("fingerprint", ""))[:16]
    if record["kind"] == "synthetic":
        version = record.get("generator_version", "?")
        return (
            f"the embedded Kvasir-like set (procedural frames, not real Kvasir images; generator "
            f"version {version}, content fingerprint {digest})"
        )
    if record["kind"].startswith("kvasir-"):
        name = "Kvasir " + record["kind"].split("-", 1)[1]
        return f"{name}, sha256 {digest} ({record.get('check') or 'not verified'})"
    return f"a folder of images (content fingerprint {digest}; not Kvasir as far as checked)"


def data_source(run_dir: Path, nbs: dict[str, Any]) -> tuple[str, bool]:
    """(words naming the data the run used, True when it is the embedded Kvasir-like set)."""
    record = read_source_record(paths.RunPaths(Path(run_dir)).processed)
    if record is not None:
        return describe_record(record), record["kind"] == "synthetic"
    value = next(
        (str(p["data_dir"]) for p in map(notebook_parameters, nbs.values()) if "data_dir" in p),
        None,
    )
    embedded = is_embedded(run_dir)
    if embedded is None:
        embedded = value is not None and value.strip().lower() in SYNTHETIC_DATA
    if embedded:
        return "the embedded Kvasir-like set (procedural frames, not real Kvasir images)", True
    if value is None:
        return "unknown (no executed notebook declares data_dir)", False
    if value.strip().lower().startswith("download"):
        return "Kvasir, downloaded by the bundle and checked against its pinned SHA-256", False
    kind = "zip file" if value.strip().lower().endswith(".zip") else "folder"
    return f"images from the {kind} {Path(value).name} (given with --data)", False


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


# --- numbers for the summary ------------------------------------------------------------------


def format_metric(metric: str, mean: float, std: float) -> str:
    """How the report writes a metric: PSNR in dB with 2 decimals, SSIM with 3."""
    digits = 2 if metric.lower() == "psnr" else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _read_csv(path: Path):
    """A CSV as a DataFrame (None when it cannot be parsed)."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def _model_of(name: str) -> str | None:
    """ "mse" or "bce" when a file or column name mentions exactly one of them."""
    found = [m for m in ("mse", "bce") if re.search(rf"(^|[^a-z]){m}([^a-z]|$)", name.lower())]
    return found[0] if len(found) == 1 else None


def _mse_first(path: Path) -> tuple[int, str]:
    """Sort key: files about the MSE model before BCE (the report's order), then by name."""
    return (0 if _model_of(path.stem) == "mse" else 1, path.name)


def metric_summary(tables_dir: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """{model: {"psnr": (mean, std), "ssim": (...)}} from tables like Tables 1 and 2."""
    found: dict[str, dict[str, tuple[float, float]]] = {}
    for path in sorted(Path(tables_dir).glob("*.csv"), key=_mse_first):
        frame, model = _read_csv(path), _model_of(path.stem)
        if frame is None or model is None or model in found:
            continue
        cols = {c.lower().strip(): c for c in frame.columns}
        std_col = cols.get("standard deviation") or cols.get("std")
        name_col = cols.get("metric") or frame.columns[0]
        if "mean" not in cols or std_col is None:
            continue
        rows = {str(r[name_col]).lower(): r for _, r in frame.iterrows()}
        if {"psnr", "ssim"} <= set(rows):
            found[model] = {
                m: (float(rows[m][cols["mean"]]), float(rows[m][std_col])) for m in ("psnr", "ssim")
            }
    return found


def classifier_summary(tables_dir: Path) -> dict[str, dict[str, float]]:
    """{model: {"accuracy": a, "auc": b}} from a Table-3-like CSV (rows metrics, columns models)."""
    for path in sorted(Path(tables_dir).glob("*.csv")):
        frame = _read_csv(path)
        if frame is None or frame.empty:
            continue
        first = frame.columns[0]
        rows = {str(v).lower().strip(): i for i, v in frame[first].items()}
        if {"accuracy", "auc"} <= set(rows):
            out = {}
            for col in frame.columns[1:]:
                if "original" in str(col).lower():
                    continue
                model = _model_of(str(col)) or str(col)
                out[model] = {k: float(frame.at[rows[k], col]) for k in ("accuracy", "auc")}
            return out
        cols = {c.lower(): c for c in frame.columns}
        if {"accuracy", "auc"} <= set(cols) and "model" in cols:
            return {
                str(r[cols["model"]]).lower(): {k: float(r[cols[k]]) for k in ("accuracy", "auc")}
                for _, r in frame.iterrows()
            }
    return {}


def classifier_pretrained(run_dir: Path, nbs: dict[str, Any]) -> bool | None:
    """Whether the bonus classifier started from ImageNet weights (None when unknown).

    Read from a `pretrained` column of a table, else from the status line notebook 07 shows
    (helpers.classifier.build_classifier).
    """
    for path in sorted(paths.RunPaths(Path(run_dir)).tables.glob("*.csv")):
        frame = _read_csv(path)
        cols = [
            c for c in (frame.columns if frame is not None else []) if c.lower() == "pretrained"
        ]
        if cols and len(frame):
            return str(frame[cols[0]].iloc[0]).strip().lower() in ("true", "1", "yes")
    text = "\n".join(output_texts(nb) for nb in nbs.values())
    if NO_IMAGENET in text:
        return False
    if WITH_IMAGENET in text:
        return True
    return None


def output_texts(nb) -> str:
    """The markdown and plain-text outputs of a notebook, joined."""
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            texts.append(str(data.get("text/markdown", "")) + str(output.get("text", "")))
    return "\n".join(texts)


# --- building the merged notebook -------------------------------------------------------------


def _keep_output(output) -> bool:
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


def report_cells(nb, prefix: str) -> list:
    """A notebook's cells for the report: tagged cells dropped, noise outputs removed, new ids."""
    import copy

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


def title_cells(run_dir: Path, nbs: dict[str, Any]) -> list:
    """The title page: run facts, then a table of contents (PDF) / a heading (HTML)."""
    import nbformat

    from helpers.runtime import library_versions

    info, counts = run_info(run_dir), manifest_counts(run_dir)
    source, _ = data_source(run_dir, nbs)
    parts = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "total")
    images = f"{counts['total']} processed images ({parts})" if counts else "no manifest found"
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    settings = key_settings(nbs)
    rows = [
        ("Built", date.today().isoformat()),
        ("Profile", info.get("profile", "unknown (not made by helpers.run)")),
        ("Data", source),
        ("Images", images),
        ("Notebooks", ", ".join(nbs) or "none"),
        ("Git commit", git_commit()),
        ("Device", info.get("device", "unknown")),
        ("Libraries", versions),
    ]
    if settings:
        rows.append(("Settings", ", ".join(f"{k}={v!r}" for k, v in settings.items())))
    table = "\n".join(f"| {k} | {_escape_cell(v)} |" for k, v in rows)
    text = (
        "This report reproduces *EndoVAE: Generating Endoscopic Images with a Variational "
        "Autoencoder* (Diamantis, Gatoula and Iakovidis, IVMSP 2022) on Kvasir, following the "
        "sections of the original course report. Every figure, table and number below was "
        "produced by this run.\n\n| Run | Details |\n|---|---|\n" + table
    )
    heading = nbformat.v4.new_raw_cell(f"<h1>{TITLE}</h1>", metadata={"raw_mimetype": "text/html"})
    toc = nbformat.v4.new_raw_cell(
        "\\newpage\n\\tableofcontents\n\\newpage", metadata={"raw_mimetype": "text/latex"}
    )
    cells = [heading, nbformat.v4.new_markdown_cell(text), toc]
    for i, cell in enumerate(cells):
        cell["id"] = f"title-{i}"
    return cells


def key_settings(nbs: dict[str, Any]) -> dict[str, Any]:
    """The settings that shape the results, as the notebooks ran with them (first value wins)."""
    found: dict[str, Any] = {}
    for nb in nbs.values():
        for name, value in notebook_parameters(nb).items():
            if name in KEY_SETTINGS and name not in found:
                found[name] = value
    if isinstance(found.get("data_dir"), str) and "/" in found["data_dir"]:
        found["data_dir"] = Path(found["data_dir"]).name  # no absolute path of the machine
    return {name: found[name] for name in KEY_SETTINGS if name in found}


def _escape_cell(value: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def summary_text(run_dir: Path, nbs: dict[str, Any]) -> str:
    """The "## 12. Summary" section, written from the run's tables and parameters."""
    run = paths.RunPaths(Path(run_dir))
    source, synthetic = data_source(run_dir, nbs)
    parts = ["## 12. Summary", ""]
    epochs = {n: notebook_parameters(nb).get("epochs") for n, nb in nbs.items()}
    epochs = {n: e for n, e in epochs.items() if isinstance(e, int)}
    trained = ", ".join(f"{e} epoch{'s' * (e != 1)} in {n}" for n, e in epochs.items())
    parts.append(
        f"Data: {source}." + (f" Training ran for {trained}." if trained else "") + " "
        "The original report trained for 3000 epochs on real Kvasir images."
    )
    if synthetic:
        parts.append(
            "\n**This run used the embedded Kvasir-like set, not Kvasir.** Its numbers show that "
            "the pipeline runs end to end; they say nothing about how EndoVAE does on real "
            "endoscopy images. Run the paper profile on Kvasir for comparable numbers."
        )
    parts += ["", *_metrics_paragraph(metric_summary(run.tables))]
    parts += ["", *_classifier_paragraph(classifier_summary(run.tables), run_dir, nbs)]
    parts += ["", *_ablation_paragraph(run, nbs)]
    parts += ["", *_synthetic_paragraph(run.tables)]
    return "\n".join(parts).strip() + "\n"


def _synthetic_paragraph(tables: Path) -> list[str]:
    """Train-on-synthetic results of Section 11 (notebook 09's Table 12), when it ran."""
    frame = _read_csv(tables / "table12_synthetic.csv")
    if frame is None or "auc" not in frame.columns:
        return []
    frame = frame.set_index(frame.columns[0])
    rows = "; ".join(
        f"{name}: AUC {row['auc']:.3f} (95 % CI {row['auc_low']:.3f} to {row['auc_high']:.3f})"
        for name, row in frame.iterrows()
        if {"auc_low", "auc_high"} <= set(frame.columns)
    )
    return [
        "Healthy-versus-polyp classifiers tested on held-out real frames (Section 11), by "
        f"training data: {rows}. The paper reports AUC 90.9 % (real) and 81.9 % (synthetic only) "
        "on KID."
    ]


def _metrics_paragraph(found: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    """PSNR/SSIM per model as a table beside the original report's numbers, and a comparison."""
    if not found:
        return ["No PSNR/SSIM tables were found in this run (notebook 06 did not run)."]
    lines = [
        "Reconstruction quality on polyp images (mean ± standard deviation), this run next to "
        "the original report:",
        "",
        "| Model | PSNR (dB) | SSIM | PSNR, original | SSIM, original |",
        "|---|---|---|---|---|",
    ]
    for model, values in found.items():
        ours = [format_metric(m, *values[m]) for m in ("psnr", "ssim")]
        orig = [
            format_metric(m, *ORIGINAL_METRICS[(model, m)])
            if (model, m) in ORIGINAL_METRICS
            else "-"
            for m in ("psnr", "ssim")
        ]
        lines.append(f"| {model.upper()} | {ours[0]} | {ours[1]} | {orig[0]} | {orig[1]} |")
    if {"mse", "bce"} <= set(found):
        lines += ["", _comparison_sentence(found)]
    return lines


def _comparison_sentence(found: dict[str, dict[str, tuple[float, float]]]) -> str:
    """Which model scores higher on each metric, and by how much relative to the spread."""
    bits = []
    for metric, unit in (("psnr", " dB"), ("ssim", "")):
        (m_mean, m_std), (b_mean, b_std) = found["mse"][metric], found["bce"][metric]
        better = "MSE" if m_mean > b_mean else "BCE"
        diff = abs(m_mean - b_mean)
        spread = max(m_std, b_std)
        size = "smaller than" if diff < spread else "larger than"
        digits = 2 if metric == "psnr" else 3
        bits.append(
            f"{better} is higher on {metric.upper()} by {diff:.{digits}f}{unit}, "
            f"{size} one standard deviation across images ({spread:.{digits}f}{unit})"
        )
    return "In this run " + "; ".join(bits) + "."


def _classifier_paragraph(
    found: dict[str, dict[str, float]], run_dir: Path, nbs: dict[str, Any]
) -> list[str]:
    """Classifier accuracy/AUC per VAE and whether ImageNet weights were used."""
    if not found:
        return []
    scores = "; ".join(
        f"{m.upper()} VAE: accuracy {v['accuracy']:.3f}, AUC {v['auc']:.3f}"
        for m, v in found.items()
    )
    lines = [f"Real-versus-reconstructed classifier (Section 9): {scores}."]
    pretrained = classifier_pretrained(run_dir, nbs)
    if pretrained is False:
        lines.append(
            "The classifier had no ImageNet weights in this run (ResNet18 trained from scratch), "
            "unlike the original report's pretrained ResNet18."
        )
    elif pretrained:
        lines.append("The classifier started from ImageNet-pretrained ResNet18 weights.")
    return lines


def _ablation_paragraph(run: paths.RunPaths, nbs: dict[str, Any]) -> list[str]:
    """What Section 10 varied, from notebook 08's parameters and the tables it wrote."""
    tables = sorted(p.name for p in run.tables.glob("ablation*.csv"))
    if not tables:
        return []
    params = next(
        (notebook_parameters(nb) for name, nb in nbs.items() if name.startswith("08")), {}
    )
    varied = [
        f"{label} {params[key]}"
        for key, label in (("latent_dims", "latent sizes"), ("betas", "β values"))
        if key in params
    ]
    epochs = f" for {params['abl_epochs']} epochs per arm" if "abl_epochs" in params else ""
    what = f" ({'; '.join(varied)})" if varied else ""
    return [
        f"Section 10 trained its ablation arms{epochs}{what} and wrote "
        f"{len(tables)} tables ({', '.join(tables)}); its closing subsection states what they show."
    ]


def stale_cell(name: str) -> Any:
    """A warning cell for a notebook whose inputs changed after it ran."""
    import nbformat

    cell = nbformat.v4.new_markdown_cell(
        f"> **Stale results ({name}).** Files this notebook read (an earlier notebook's model, "
        "images or tables, or the data folder) changed after it ran, so its figures and numbers "
        "describe the earlier inputs. Run `python -m helpers.run` again to bring them up to date."
    )
    cell["id"] = f"stale-{name}"
    return cell


def merge_notebooks(run_dir: Path) -> Any:
    """One notebook: title page, every executed notebook's report cells, the summary."""
    import nbformat

    run_dir = Path(run_dir)
    paths_ = executed_notebooks(run_dir)
    if not paths_:
        raise FileNotFoundError(f"{run_dir / 'executed'}: no executed notebooks (run helpers.run)")
    nbs = {p.stem: read_notebook(p) for p in paths_}
    merged = nbformat.v4.new_notebook()
    first = next(iter(nbs.values()))
    merged.metadata.update(
        {k: first.metadata[k] for k in ("kernelspec", "language_info") if k in first.metadata}
    )
    merged.metadata["title"] = TITLE
    merged.metadata["date"] = date.today().isoformat()
    merged.cells = title_cells(run_dir, nbs)
    for name, nb in nbs.items():
        if stale_inputs(run_dir, name):
            merged.cells.append(stale_cell(name))
        merged.cells.extend(report_cells(nb, name))
    summary = nbformat.v4.new_markdown_cell(summary_text(run_dir, nbs))
    summary["id"] = "summary"
    merged.cells.append(summary)
    return merged


# --- export -----------------------------------------------------------------------------------


def tex_missing() -> list[str]:
    """The PDF tools missing from PATH."""
    return [tool for tool in TEX_TOOLS if shutil.which(tool) is None]


def html_tables_to_latex(nb) -> Any:
    """Give HTML tables (pandas) a text/latex twin so the PDF shows a table, not plain text."""
    import copy

    from nbconvert.utils.pandoc import pandoc

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "<table" in str(data.get("text/html", "")) and "text/latex" not in data:
                html = re.sub(r"<style.*?</style>", "", str(data["text/html"]), flags=re.S)
                data["text/latex"] = fit_table(pandoc(html, "html", "latex"))
    return nb


def fit_table(latex: str) -> str:
    """Turn pandoc's longtable into a tabular shrunk to the text width when it is wider."""
    match = re.search(r"\\begin\{longtable\}(\[[^\]]*\])?", latex)
    if not match or "\\end{longtable}" not in latex:
        return latex
    spec, rest = _brace_group(latex[match.end() :])
    keep = [
        line
        for line in rest.split("\\end{longtable}")[0].splitlines()
        if line.strip() not in TABLE_DROP_LINES and not line.strip().startswith("\\bottomrule")
    ]
    body = "\n".join(keep).strip()
    return (
        "\\begin{center}\\begin{adjustbox}{max width=\\linewidth}\n"
        f"\\begin{{tabular}}{{{spec}}}\n{body}\n\\bottomrule\n\\end{{tabular}}\n"
        "\\end{adjustbox}\\end{center}"
    )


def _brace_group(text: str) -> tuple[str, str]:
    """Split "{a{b}c} rest" into ("a{b}c", " rest")."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return text[1:i], text[i + 1 :]
    raise ValueError(f"unbalanced braces in LaTeX table spec: {text[:40]!r}")


def export_html(nb, path: Path) -> Path:
    """Write the report as one self-contained HTML file, inputs hidden."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, embed_images=True)
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    return atomic_write_text(path, body)


def export_pdf(nb, path: Path) -> Path:
    """Write the report as PDF with xelatex and the DejaVu-font template, inputs hidden."""
    from nbconvert import PDFExporter

    exporter = PDFExporter(
        extra_template_basedirs=[str(TEMPLATES_DIR)],
        template_name=PDF_TEMPLATE,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        raw_mimetypes=["text/latex", ""],
    )
    body, _ = exporter.from_notebook_node(visible_glyphs(html_tables_to_latex(nb)))
    return atomic_write_bytes(path, body)


# Scripts the DejaVu fonts lack (CJK, kana, hangul, full-width forms): xelatex would drop them.
MISSING_GLYPHS = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def visible_glyphs(nb) -> Any:
    """A copy of the notebook whose text shows characters the PDF font lacks as [U+XXXX]."""
    import copy

    nb = copy.deepcopy(nb)

    def fix(text):
        """Replace each missing character by its code point."""
        if isinstance(text, list):
            return [fix(t) for t in text]
        if not isinstance(text, str):
            return text
        return MISSING_GLYPHS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)

    for cell in nb.cells:
        cell.source = fix(cell.source)
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = fix(output["text"])
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/"):
                    output["data"][mime] = fix(value)
    return nb


def is_default_run(run_dir: Path) -> bool:
    """True when run_dir is runs/<profile> of the profile recorded in its run.json."""
    profile = run_info(run_dir).get("profile")
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
    import nbformat

    notebook = atomic_write_text(out / f"{STEM}.ipynb", nbformat.writes(nb))
    html = export_html(nb, out / f"{STEM}.html")
    result = ReportResult(notebook, html, None)
    missing = tex_missing()
    if not pdf:
        result.pdf_error = "skipped"
    elif missing:
        print(f"PDF skipped: {', '.join(missing)} not found. {TEX_INSTALL_HINT}", file=sys.stderr)
        result.pdf_error = "missing-tex"
    else:
        result.pdf, result.pdf_error = _try_pdf(nb, out / f"{STEM}.pdf")
    if publish if publish is not None else is_default_run(run_dir):
        result.published = _publish(result, paths.report_build_dir())
    for written in [result.pdf, html, *result.published]:
        if written:
            print(f"report: {written}")
    return result


def _try_pdf(nb, path: Path) -> tuple[Path | None, str]:
    """Export the PDF; on a LaTeX failure print the end of its log and return the reason."""
    from nbconvert.exporters.pdf import LatexFailed
    from nbconvert.utils.pandoc import PandocMissing

    try:
        return export_pdf(nb, path), ""
    except PandocMissing:
        print(f"PDF skipped: pandoc not found. {TEX_INSTALL_HINT}", file=sys.stderr)
        return None, "missing-tex"
    except LatexFailed as exc:
        tail = "\n".join(str(exc.output).splitlines()[-25:])
        print(
            f"PDF failed: xelatex reported an error:\n{tail}\n{TEX_INSTALL_HINT}", file=sys.stderr
        )
        return None, "latex-failed"


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
