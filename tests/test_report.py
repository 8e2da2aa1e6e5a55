"""Tests for the report merge and export (helpers.runner.report), on a small fake run folder."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.core.results import read_results, write_results
from helpers.narrative.summary import format_metric
from helpers.runner import report
from helpers.runner.export import SettlingPDFExporter, fit_table, visible_glyphs

GREEK = "β-VAE with μ and σ, KL ≥ 0"
SECRET = "SECRET_CODE_INPUT_42"
PDF_TOOLS = ("xelatex", "pandoc", "pdftotext")


def _png() -> str:
    """A small PNG as base64 text (what Jupyter stores for an image output)."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _code(source, outputs, *tags):
    """An executed code cell."""
    cell = nbformat.v4.new_code_cell(source, outputs=outputs, execution_count=1)
    cell.metadata["tags"] = list(tags)
    return cell


def _md(source, *tags):
    """A markdown cell."""
    cell = nbformat.v4.new_markdown_cell(source)
    cell.metadata["tags"] = list(tags)
    return cell


def _executed(name: str, data_dir: str, section: str, figure: int):
    """An executed notebook in the bundle's shape, with the noise the report must drop."""
    out = nbformat.v4.new_output
    frame = pd.DataFrame({"Metric": ["PSNR"], "Mean": [12.5]})
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["papermill"] = {"parameters": {"run_dir": "/x", "data_dir": data_dir}}
    nb.cells = [
        _md(f"# {name} · Hidden notebook title", "report-skip"),
        _code("import helpers", [], "report-skip"),
        _code(
            f'run_dir = ""\ndata_dir = "default"\nepochs = {figure}',
            [],
            "parameters",
            "report-skip",
        ),
        _code(f'run_dir = "/x"\ndata_dir = "{data_dir}"', [], "injected-parameters"),
        _md(f"## {section}\n\nThe {GREEK} text survives."),
        _code(
            f"{SECRET} = 1\nplt.show()",
            [
                out(
                    "display_data", data={"image/png": _png(), "text/plain": "<Figure size 10x10>"}
                ),
                out("stream", name="stderr", text="100%|##########| tqdm progress\n"),
                out("execute_result", data={"text/plain": "<matplotlib.image.AxesImage at 0x7f0>"}),
            ],
        ),
        _md(f"**Figure {figure}:** A caption for figure {figure}."),
        _code(
            "frame",
            [out("execute_result", data={"text/html": frame.to_html(), "text/plain": str(frame)})],
        ),
        _code("print('kept stdout')", [out("stream", name="stdout", text="kept stdout\n")]),
    ]
    return nb


def _metric_results(rng) -> dict:
    """notebook 06's results: PSNR/SSIM mean and std per model, random numbers."""
    return {
        model: {
            "psnr": {"mean": rng.uniform(10, 30), "std": rng.uniform(1, 3)},
            "ssim": {"mean": rng.uniform(0.2, 0.9), "std": rng.uniform(0.01, 0.1)},
        }
        for model in ("mse", "bce")
    }


@pytest.fixture
def fake_run(tmp_path):
    """A run folder with two executed notebooks, their results, a source record and run.json."""
    return _make_run(tmp_path / "run", kind="synthetic")


def _make_run(run_dir, kind):
    """Write a fake run folder and return its path."""
    rng = np.random.default_rng()
    (run_dir / "executed").mkdir(parents=True)
    data_dir = "" if kind == "synthetic" else "/data/kvasir"
    nbformat.write(
        _executed("01", data_dir, "2. Data preprocessing", 1),
        run_dir / "executed" / "01_pre.ipynb",
    )
    nbformat.write(
        _executed("06", data_dir, "7. Quantitative evaluation", 5),
        run_dir / "executed" / "06_metrics.ipynb",
    )
    n_healthy, n_polyps = (int(n) for n in rng.integers(3, 20, size=2))
    counts = {"total": n_healthy + n_polyps, "healthy": n_healthy, "polyps": n_polyps}
    write_results(run_dir, "01", {"counts": {**counts, "held-out healthy": 1}})
    write_results(run_dir, "06", {"models": _metric_results(rng)})
    processed = run_dir / "data" / "processed"
    processed.mkdir(parents=True)
    record = {"kind": kind, "fingerprint": "ab" * 32, "generator_version": "1"}
    if kind.startswith("kvasir-"):
        record |= {"container": "zip", "verified": "downloaded from the official address"}
    (processed / "source.json").write_text(json.dumps(record))
    info = {
        "profile": "test",
        "device": "cpu: test",
        "parameters": {
            "01_pre": {"run_dir": "/x", "data_dir": data_dir, "epochs": 1},
            "06_metrics": {"run_dir": "/x", "data_dir": data_dir, "epochs": 5},
        },
    }
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


def _all_text(nb) -> str:
    """Every cell source and text output of a notebook."""
    parts = []
    for cell in nb.cells:
        parts.append(cell.source)
        for o in cell.get("outputs", []):
            parts.append(str(o.get("text", "")) + " ".join(map(str, o.get("data", {}).values())))
    return "\n".join(parts)


def test_merge_drops_skip_cells_and_noise(fake_run):
    merged = report.merge_notebooks(fake_run)
    text = _all_text(merged)
    assert "Hidden notebook title" not in text
    assert 'data_dir = "default"' not in text and 'run_dir = "/x"' not in text
    assert "import helpers" not in [c.source for c in merged.cells]
    assert "tqdm progress" not in text and "AxesImage at 0x" not in text
    assert "kept stdout" in text
    assert text.index("## 2. Data preprocessing") < text.index("## 7. Quantitative evaluation")
    assert merged.cells[-1].source.startswith("## 13. Summary")
    assert len({c.id for c in merged.cells}) == len(merged.cells)
    nbformat.validate(merged)


def test_title_page_reads_the_run(fake_run):
    merged = report.merge_notebooks(fake_run)
    title = merged.cells[1].source
    counts = read_results(fake_run, "01")["counts"]
    assert f"{counts['total']} processed images" in title
    assert f"{counts['healthy']} healthy" in title and f"{counts['polyps']} polyps" in title
    assert "1 held-out healthy" in title
    assert "| Profile | test |" in title and "cpu: test" in title
    assert "embedded Kvasir-like set" in title
    assert "torch" in title and "nbconvert" in title
    assert "epochs=5" not in title and "epochs=1" in title  # first notebook's value wins


def test_summary_numbers_come_from_the_results(fake_run):
    summary = report.merge_notebooks(fake_run).cells[-1].source
    for values in read_results(fake_run, "06")["models"].values():
        for metric in ("psnr", "ssim"):
            assert format_metric(metric, **values[metric]) in summary
    assert "embedded Kvasir-like set, not Kvasir" in summary


def test_summary_on_real_data_has_no_synthetic_warning(tmp_path):
    run_dir = _make_run(tmp_path / "run", kind="kvasir-v1")
    summary = report.merge_notebooks(run_dir).cells[-1].source
    assert "not Kvasir" not in summary
    assert "Data: Kvasir v1 (verified: downloaded from the official address" in summary
    assert "sha256 abababababababab" in summary
    assert str(tmp_path) not in summary, "no absolute path of the machine in the report"


def test_classifier_summary_and_missing_imagenet_weights(fake_run):
    models = {"mse": {"accuracy": 0.75, "auc": 0.8125}, "bce": {"accuracy": 0.5, "auc": 0.625}}
    write_results(fake_run, "07", {"models": models, "pretrained": False})
    summary = report.merge_notebooks(fake_run).cells[-1].source
    assert "MSE VAE: accuracy 0.750, AUC 0.812" in summary
    assert "BCE VAE: accuracy 0.500, AUC 0.625" in summary
    assert "no ImageNet weights" in summary


def test_format_metric():
    assert format_metric("PSNR", 16.952047, 2.294434) == "16.95 ± 2.29"
    assert format_metric("ssim", 0.470127, 0.084576) == "0.470 ± 0.085"


def test_html_hides_inputs_and_embeds_images(fake_run, tmp_path):
    result = report.build_report(fake_run, pdf=False, publish=False)
    html = result.html.read_text(encoding="utf-8")
    assert result.ok and result.pdf is None
    assert SECRET not in html
    assert "Figure 1:" in html and "data:image/png;base64" in html
    assert report.TITLE in html
    assert result.notebook.is_file() and result.html.parent == fake_run / "report"


def test_tex_missing_still_writes_html(fake_run, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = report.build_report(fake_run, publish=False)
    err = capsys.readouterr().err
    assert result.pdf is None and result.ok
    assert result.html.is_file()
    assert not (fake_run / "report" / f"{report.STEM}.pdf").exists()
    assert "apt-get install texlive-xetex" in err and "fonts-dejavu-core" in err


def test_default_run_is_published(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDOVAE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ENDOVAE_REPORT_DIR", str(tmp_path / "build"))
    run_dir = _make_run(tmp_path / "runs" / "test", kind="synthetic")
    other = _make_run(tmp_path / "elsewhere", kind="synthetic")
    assert report.build_report(other, pdf=False).published == []
    result = report.build_report(run_dir, pdf=False)
    assert result.published == [tmp_path / "build" / f"{report.STEM}.html"]


def test_cli_without_executed_notebooks_exits_2(tmp_path, capsys):
    assert report.main(["--run-dir", str(tmp_path), "--html-only"]) == 2
    assert "no executed notebooks" in capsys.readouterr().err


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in PDF_TOOLS), reason="needs xelatex, pandoc, pdftotext"
)
def test_pdf_keeps_greek_letters_and_hides_code(fake_run, monkeypatch):
    passes = []
    real = SettlingPDFExporter.run_command
    monkeypatch.setattr(
        SettlingPDFExporter, "run_command", lambda self, *a: passes.append(a) or real(self, *a)
    )
    result = report.build_report(fake_run, publish=False)
    assert result.pdf is not None and result.pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(result.pdf), "-"], capture_output=True, text=True
    ).stdout
    flat = " ".join(text.split())
    assert GREEK in flat
    assert SECRET not in flat
    assert "Figure 1: A caption for figure 1." in flat
    assert "13. Summary" in flat and "12.5" in flat  # the HTML table became a LaTeX table
    assert "Contents" in flat and "<h1>" not in flat  # LaTeX raw cell in, HTML raw cell out
    xelatex = [a for a in passes if a[0][0] == "xelatex"]
    assert len(xelatex) == 2  # the second pass changes no .aux/.toc: no third
    assert re.search(r"Contents 2\. Data preprocessing[ .]+7\..*13\. Summary[ .]+\d", flat)


def test_ablation_paragraph_reads_notebook_08(fake_run):
    nb = _executed("08", "", "10. Beyond the original: ablations", 10)
    nbformat.write(nb, fake_run / "executed" / "08_ablations.ipynb")
    info = json.loads((fake_run / "run.json").read_text())
    info["parameters"]["08_ablations"] = {"abl_epochs": 7, "latent_dims": "6,64"}
    (fake_run / "run.json").write_text(json.dumps(info))
    write_results(fake_run, "08", {"tables": ["ablation_latent.csv"]})
    summary = report.merge_notebooks(fake_run).cells[-1].source
    assert "for 7 epochs per arm (latent sizes 6,64)" in summary
    assert "ablation_latent.csv" in summary


def test_fit_table_makes_a_shrinkable_tabular():
    pytest.importorskip("nbconvert")
    if shutil.which("pandoc") is None:
        pytest.skip("needs pandoc")
    from nbconvert.utils.pandoc import pandoc

    wide = pd.DataFrame(np.arange(40).reshape(2, 20), columns=[f"column {i}" for i in range(20)])
    latex = fit_table(pandoc(wide.to_html(), "html", "latex"))
    assert "longtable" not in latex and "\\endhead" not in latex
    assert latex.count("\\begin{tabular}") == 1 and latex.count("\\bottomrule") == 1
    assert "max width=\\linewidth" in latex
    assert latex.index("column 19") < latex.index("\\midrule") < latex.index("39")
    assert latex.rstrip().endswith("\\end{adjustbox}\\end{center}")
    assert fit_table("no table here") == "no table here"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"kind": "synthetic", "fingerprint": "ab" * 32, "generator_version": "1"},
         "embedded Kvasir-like set (procedural frames, not real Kvasir images; generator version 1"),
        ({"kind": "kvasir-v1", "fingerprint": "cd" * 32, "check": "matches the pinned sha256",
          "container": "zip", "verified": "downloaded from the official address"},
         "Kvasir v1 (verified: downloaded from the official address; sha256 cdcdcdcdcdcdcdcd; "
         "archive check: matches the pinned sha256)"),
        ({"kind": "kvasir-v1", "fingerprint": "cd" * 32, "check": "matches the pinned sha256"},
         "recorded as Kvasir v1 by an older notebook 01 without checking"),  # nothing verified
        ({"kind": "folder", "fingerprint": "ef" * 32},
         "a folder of Kvasir-style images (content fingerprint efefefefefefefef; not verified"),
    ],
)  # fmt: skip
def test_data_source_is_named_from_what_notebook_01_checked(tmp_path, record, expected):
    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    (processed / "source.json").write_text(json.dumps(record))
    text, embedded = report.data_source(tmp_path)
    assert expected in text and embedded == (record["kind"] == "synthetic")


def test_characters_the_pdf_font_lacks_stay_visible():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("skipped: 息肉_01.jpg")]
    out = visible_glyphs(nb)
    assert out.cells[0].source == "skipped: [U+606F][U+8089]_01.jpg"
    assert nb.cells[0].source == "skipped: 息肉_01.jpg", "the HTML keeps the original"
