"""Export a merged report notebook to self-contained HTML and to PDF (xelatex, DejaVu fonts).

The nbconvert template lives in the project's `report/templates/` folder. Pandas' HTML tables
get a LaTeX twin that shrinks to the text width; characters the PDF font lacks stay visible as
[U+XXXX] instead of vanishing.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbconvert import HTMLExporter, PDFExporter
from nbconvert.exporters.pdf import LatexFailed
from nbconvert.utils.pandoc import PandocMissing, pandoc

from helpers.core import paths
from helpers.core.atomic import atomic_write_bytes, atomic_write_text

TEMPLATES_DIR = paths.PROJECT_ROOT / "report" / "templates"
PDF_TEMPLATE = "endovae_pdf"
TEX_TOOLS = ("xelatex", "pandoc")
TEX_INSTALL_HINT = (
    "The PDF needs xelatex and pandoc. On Debian/Ubuntu: sudo apt-get install texlive-xetex "
    "texlive-fonts-recommended texlive-plain-generic pandoc fonts-dejavu-core"
)
# Lines of a pandoc longtable that a plain tabular does not have.
TABLE_DROP_LINES = ("\\endhead", "\\endfirsthead", "\\endfoot", "\\endlastfoot")
# What a xelatex pass writes for the next one; once unchanged, the PDF is final.
LATEX_STATE_FILES = (".aux", ".toc", ".out")
# Scripts the DejaVu fonts lack (CJK, kana, hangul, full-width forms): xelatex would drop them.
MISSING_GLYPHS = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def tex_missing() -> list[str]:
    """The PDF tools missing from PATH."""
    return [tool for tool in TEX_TOOLS if shutil.which(tool) is None]


def html_tables_to_latex(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Give HTML tables (pandas) a text/latex twin so the PDF shows a table, not plain text."""
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


def _show_missing(text: Any) -> Any:
    """Text (or a list of texts) with each character the font lacks written as [U+XXXX]."""
    if isinstance(text, list):
        return [_show_missing(t) for t in text]
    if not isinstance(text, str):
        return text
    return MISSING_GLYPHS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def visible_glyphs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the notebook whose text shows characters the PDF font lacks as [U+XXXX]."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.source = _show_missing(cell.source)
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = _show_missing(output["text"])
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/"):
                    output["data"][mime] = _show_missing(value)
    return nb


def export_html(nb: nbformat.NotebookNode, path: Path) -> Path:
    """Write the report as one self-contained HTML file, inputs hidden."""
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, embed_images=True)
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    return atomic_write_text(path, body)


class SettlingPDFExporter(PDFExporter):
    """nbconvert's PDF exporter, but xelatex stops once its .aux and .toc files settle (as
    latexmk does): 2 passes for this report instead of a fixed 3, ~7 s less."""

    def run_latex(self, filename, raise_on_failure=LatexFailed):
        """Run xelatex until the cross-reference files stop changing, at most latex_count times."""
        stem, before = Path(filename).with_suffix(""), None
        for _ in range(self.latex_count):
            if not self.run_command(self.latex_command, filename, 1, self._log, raise_on_failure):
                return False
            after = [_read_or_none(stem.with_suffix(ext)) for ext in LATEX_STATE_FILES]
            if after == before:
                break
            before = after
        return True

    def _log(self, command: list[str], out: bytes) -> None:
        """Log a failed xelatex run as nbconvert does (LatexFailed then carries its output)."""
        self.log.critical("%s failed: %s\n%s", command[0], command, out)


def _read_or_none(path: Path) -> bytes | None:
    """A file's bytes, or None when it does not exist."""
    return path.read_bytes() if path.is_file() else None


def export_pdf(nb: nbformat.NotebookNode, path: Path) -> Path:
    """Write the report as PDF with xelatex and the DejaVu-font template, inputs hidden."""
    exporter = SettlingPDFExporter(
        extra_template_basedirs=[str(TEMPLATES_DIR)],
        template_name=PDF_TEMPLATE,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        raw_mimetypes=["text/latex", ""],
    )
    body, _ = exporter.from_notebook_node(visible_glyphs(html_tables_to_latex(nb)))
    return atomic_write_bytes(path, body)


def try_pdf(nb: nbformat.NotebookNode, path: Path) -> tuple[Path | None, str]:
    """Export the PDF; on failure print why (the end of the LaTeX log) and return the reason."""
    missing = tex_missing()
    if missing:
        print(f"PDF skipped: {', '.join(missing)} not found. {TEX_INSTALL_HINT}", file=sys.stderr)
        return None, "missing-tex"
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
