"""Issue 19: data labelled by what was verified (kind 2) and a report that hides no damage (kind 5)."""

from __future__ import annotations

import hashlib
import io
import json
import warnings

import nbformat
import pytest
from nbformat.warnings import DuplicateCellId
from PIL import Image
from test_kvasir import make_tree, make_zip
from test_report import _make_run

from helpers.core.classes import ALL_CLASSES
from helpers.core.results import write_results
from helpers.data import kvasir
from helpers.data.preprocess_figures import figure_1b_caption
from helpers.narrative.summary import describe_record
from helpers.runner import report

HOLIDAY = "my-holiday-photos"


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    """Bytes of one tiny JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 90, 80)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _kvasir_named_tree(base, jpeg):
    """kvasir-dataset/<class>/ with 4 to 7 images per class and 7 holiday photos beside them."""
    tree = base / "kvasir-dataset"
    for n, name in enumerate(ALL_CLASSES, start=4):
        make_tree(tree, jpeg, n=n, classes=(name,))
    make_tree(tree, jpeg, n=7, classes=(HOLIDAY,))
    return tree


def _claims_kvasir_v1(text: str) -> bool:
    """True when `text` calls the data Kvasir v1 (saying it is *not* verified as such is fine)."""
    for denial in ("not verified as Kvasir v1 or v2", "Kvasir v1 has 500 per class"):
        text = text.replace(denial, "")
    return "Kvasir v1" in text


def _report_texts(tmp_path, record) -> tuple[str, str]:
    """(title page, summary) of a small run whose notebook 01 recorded `record`."""
    run_dir = _make_run(tmp_path / "run", kind=record["kind"])
    (run_dir / "data" / "processed" / "source.json").write_text(json.dumps(record))
    merged = report.merge_notebooks(run_dir)
    return merged.cells[1].source, merged.cells[-1].source


# --- kind 2: a label taken from a folder's name --------------------------------------------------


@pytest.mark.parametrize("container", ["folder", "zip"])
def test_trust_kvasir_named_folder_with_few_images_is_not_kvasir_v1(isolated_dirs, jpeg, container):
    tree = _kvasir_named_tree(isolated_dirs / "src", jpeg)
    spec = tree.parent if container == "folder" else make_zip(isolated_dirs / "k.zip", tree.parent)
    source = kvasir.resolve_dataset(str(spec), progress=False)
    record = source.record()
    assert record["kind"] == "folder" and record["container"] == container
    assert record["verified"] == ""
    assert record["ignored"] == {HOLIDAY: 7}  # explicit, not silently dropped
    assert HOLIDAY not in source.class_dirs and HOLIDAY not in record["counts"]
    title, summary = _report_texts(isolated_dirs, record)
    caption = figure_1b_caption(source.kind)
    for text in (source.description, title, summary, caption):
        assert not _claims_kvasir_v1(text), text
    words = f"a {container} of Kvasir-style images (normal-cecum 4, normal-pylorus 5"
    ignored = f"ignored folder {HOLIDAY} (7 images), not a Kvasir class"
    for text in (title, summary):
        assert words in text and ignored in text
    assert ignored in source.description
    assert "not verified as Kvasir" in caption


def test_trust_nested_kvasir_zip_with_5_per_class_is_not_kvasir_v1(isolated_dirs, jpeg):
    make_tree(isolated_dirs / "src" / "outer" / "kvasir-dataset", jpeg, n=5, classes=ALL_CLASSES)
    archive = make_zip(isolated_dirs / "nested.zip", isolated_dirs / "src")
    source = kvasir.resolve_dataset(str(archive), progress=False)
    assert source.kind == "folder" and source.container == "zip"
    assert source.counts == {name: 5 for name in ALL_CLASSES}
    assert source.fingerprint == hashlib.sha256(archive.read_bytes()).hexdigest()
    text = describe_record(source.record())
    assert "a zip of Kvasir-style images (normal-cecum 5, normal-pylorus 5" in text
    assert f"sha256 {source.fingerprint[:16]}" in text
    for words in (text, source.description, figure_1b_caption(source.kind)):
        assert not _claims_kvasir_v1(words), words


def test_trust_kvasir_v1_counts_verify_the_label(isolated_dirs, jpeg):
    tree = make_tree(isolated_dirs / "copy", jpeg, n=500, classes=kvasir.KVASIR_CLASSES)
    source = kvasir.resolve_dataset(str(tree), progress=False)
    assert source.kind == "kvasir-v1" and source.container == "folder"
    assert "8 classes with 500 images each" in source.verified
    assert source.unused == ["dyed-lifted-polyps", "dyed-resection-margins", "esophagitis",
                             "ulcerative-colitis"]  # fmt: skip
    assert describe_record(source.record()).startswith("Kvasir v1 (verified: Kvasir's 8 classes")
    make_tree(tree, jpeg, n=2, classes=(HOLIDAY,))  # not Kvasir's classes any more
    assert kvasir.resolve_dataset(str(tree), progress=False).kind == "folder"


def test_trust_official_pin_verifies_a_zip_and_a_mirror_pin_does_not(isolated_dirs, jpeg):
    make_tree(isolated_dirs / "src" / "my-export", jpeg, n=3, classes=ALL_CLASSES)
    archive = make_zip(isolated_dirs / "export.zip", isolated_dirs / "src")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    official = kvasir.KVASIR_URLS["v1"]
    lock = isolated_dirs / "data" / "kvasir.lock.json"
    lock.parent.mkdir(parents=True)
    entry = {"url": "https://mirror.example/kvasir-dataset.zip", "sha256": digest}
    lock.write_text(json.dumps({"downloads": {official: entry}}))  # pinned from a mirror
    assert kvasir.resolve_dataset(str(archive), progress=False).kind == "folder"
    lock.write_text(json.dumps({"downloads": {official: {**entry, "url": official}}}))
    source = kvasir.resolve_dataset(str(archive), progress=False)
    assert source.kind == "kvasir-v1" and "from the official address" in source.verified
    assert describe_record(source.record()).startswith("Kvasir v1 (verified: the archive's sha256")


def test_trust_partial_real_sample_gets_the_honest_label():
    record = {"kind": "folder", "container": "folder", "fingerprint": "ab12" * 16,
              "counts": {"polyps": 40, "normal-cecum": 40}, "ignored": {}}  # fmt: skip
    text = describe_record(record)
    assert text.startswith(
        "a folder of Kvasir-style images (polyps 40, normal-cecum 40; content fingerprint ab12"
    )
    assert "not verified as Kvasir v1 or v2" in text


# --- kind 5: a report that is silently wrong ------------------------------------------------------


def test_trust_invalid_run_json_is_a_visible_warning(tmp_path, capsys):
    run_dir = _make_run(tmp_path / "run", kind="synthetic")
    (run_dir / "run.json").write_text('{"profile": "test", ')
    result = report.build_report(run_dir, pdf=False, publish=False)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 1 and "run.json is not valid JSON" in lines[0]
    assert result.warnings and "run.json" in result.warnings[0]
    merged = nbformat.read(result.notebook, as_version=4)
    title = merged.cells[1].source
    assert "| Profile | unknown (run.json is not valid JSON) |" in title
    assert "| Settings | unknown (run.json is not valid JSON) |" in title
    assert "not made by helpers.runner.run" not in title
    boxes = [c.source for c in merged.cells if c.cell_type == "raw" and "Warnings" in c.source]
    assert len(boxes) == 2 and all("run.json is not valid JSON" in b for b in boxes)  # HTML, LaTeX
    html = result.html.read_text(encoding="utf-8")
    assert "report-warnings" in html and "run.json is not valid JSON" in html
    summary = merged.cells[-1].source
    assert "How long training ran is unknown: run.json is not valid JSON" in summary


@pytest.mark.parametrize("damage", ["missing", "invalid"])
def test_trust_missing_results_06_is_a_warning_not_did_not_run(tmp_path, capsys, damage):
    run_dir = _make_run(tmp_path / "run", kind="synthetic")
    results = run_dir / "results" / "06.json"
    if damage == "missing":
        results.unlink()
    else:
        results.write_text("{")
    result = report.build_report(run_dir, pdf=False, publish=False)
    problem = "is missing" if damage == "missing" else "is not valid JSON"
    err = capsys.readouterr().err
    assert f"warning: results/06.json {problem}" in err and "06_metrics ran" in err
    summary = nbformat.read(result.notebook, as_version=4).cells[-1].source
    assert "did not run" not in summary
    assert f"results/06.json {problem}, so this summary quotes no PSNR/SSIM numbers" in summary
    assert f"results/06.json {problem}" in result.html.read_text(encoding="utf-8")
    (run_dir / "executed" / "06_metrics.ipynb").unlink()  # now notebook 06 really did not run
    results.unlink(missing_ok=True)
    merged = report.merge_notebooks(run_dir)
    assert "notebook 06 did not run" in merged.cells[-1].source
    assert merged.metadata["report_warnings"] == []


def test_trust_merge_gives_every_cell_a_unique_id(tmp_path):
    run_dir = _make_run(tmp_path / "run", kind="synthetic")
    write_results(run_dir, "01", {"counts": {"total": 2, "healthy": 1, "polyps": 1}})
    for name in ("01_pre", "06_metrics"):  # both stale: their inputs changed after they ran
        stamp = run_dir / "executed" / ".stamps" / f"{name}.json"
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"inputs": "digest of inputs that no longer exist"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        merged = report.merge_notebooks(run_dir)
        nbformat.validate(nbformat.reads(nbformat.writes(merged), as_version=4))
        report.build_report(run_dir, pdf=False, publish=False)
    duplicates = [str(w.message) for w in caught if issubclass(w.category, DuplicateCellId)]
    assert not duplicates
    assert len([c for c in merged.cells if "Stale results" in c.source]) == 2
    ids = [c.id for c in merged.cells]
    assert len(set(ids)) == len(ids)
