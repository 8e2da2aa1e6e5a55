"""The `cpu` profile (real Kvasir without a GPU) and the runner's expected time of every notebook."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers.config.profile import load_profile
from helpers.core import paths
from helpers.runner import budget, plan, run


def _resolved(profile: str, tmp_path, data_dir: str = "download") -> dict[str, dict]:
    """Every value each notebook of `profile` would run with (data_dir replaced)."""
    notebooks = plan.load_notebooks(paths.notebooks_dir())
    overrides = plan.override_parameters(notebooks, load_profile(profile), {"data_dir": data_dir})
    return plan.resolve_parameters(notebooks, overrides, tmp_path / "run")


def test_cpu_profile_passes_the_runners_checks(capsys):
    assert run.main(["--profile", "cpu", "--list"]) == 0, capsys.readouterr().err
    notebooks = plan.load_notebooks(paths.notebooks_dir())
    profile = load_profile("cpu")
    assert not plan.unknown_names(notebooks, profile, {})
    overrides = plan.override_parameters(notebooks, profile, {})
    resolved = plan.resolve_parameters(notebooks, overrides, paths.PROJECT_ROOT / "runs" / "cpu")
    assert not plan.validate(notebooks, resolved)
    assert resolved["01_preprocessing"]["data_dir"] == "download"  # real Kvasir, as the paper
    assert resolved["03_train_mse"]["device"] == "cpu"


@pytest.mark.parametrize("profile", ["paper", "cpu"])
def test_expected_time_counts_the_classifier_notebooks(profile, tmp_path):
    chosen = _resolved(profile, tmp_path)
    n_train, n_polyps = 5400, 500  # Kvasir v1: 1,500 healthy x 4 flips x 0.9; 500 polyps
    clf = 0
    for number in ("07", "09", "10"):
        name = next(n for n in chosen if n.startswith(number))
        images = budget.classifier_images(number, chosen[name], n_train, n_polyps)
        assert images > 0, name
        clf += images
    without, _ = budget.estimate_seconds(chosen, 100.0, tmp_path, report=False)
    with_clf, _ = budget.estimate_seconds(chosen, 100.0, tmp_path, False, classifier_per_s=100.0)
    assert with_clf - without == pytest.approx(clf / 100.0)


def test_estimate_before_notebook_01_counts_the_data_folder(tmp_path):
    """Before notebook 01 has run, a data folder's own images per class size the estimate (it
    used to assume Kvasir v1's 500 per class for any folder: 680 min for a 21-min run)."""
    root = tmp_path / "kvasir"
    for name, n in (
        ("normal-cecum", 5),
        ("normal-pylorus", 6),
        ("normal-z-line", 9),
        ("polyps", 7),
    ):
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{i}.jpg").write_bytes(b"")
    params = {"data_dir": str(root), "healthy_test_fraction": 0.25}
    empty = tmp_path / "run" / "data" / "processed"
    assert budget.healthy_train_images(params, empty) == int(20 * 4 * 0.75)
    assert budget.polyp_sources(params, empty) == 7
    unreadable = {"data_dir": str(tmp_path / "missing"), "healthy_test_fraction": 0.25}
    assert budget.polyp_sources(unreadable, empty) == budget.KVASIR_V1_PER_CLASS


def test_classifier_images_follow_epochs_and_sizes():
    base = {"clf_epochs": 10, "n_clf_train": 200, "polyp_train_share": 0.5}
    assert budget.classifier_images("07", base, 5400, 500) == 2 * 2 * 200 * 10
    assert budget.classifier_images("07", {**base, "clf_epochs": 20}, 5400, 500) == 2 * 2 * 200 * 20
    # 09: real only (2n), synthetic only (2n), real + synthetic (4n); n = 250 polyp train frames
    # in their 4 flips (the cpu-profile run on 2,000 frames trained its classifiers on that many)
    assert budget.classifier_images("09", base, 5400, 500) == 8 * 1000 * 10
    assert budget.training_images("09", {**base, "gen_epochs": 10}, 5400, 500) == 10 * 1000
    assert budget.classifier_images("05", base, 5400, 500) == 0


def test_cpu_profile_runs_01_to_06_on_real_frames(tmp_path, kvasir_sample, capsys):
    """Notebooks 01-06 of the cpu profile (tiny epochs) on the 40 real polyp + 40 real healthy
    frames of ../shared/kvasir-sample (normal-cecum only: the other healthy classes are absent)."""
    sample = kvasir_sample.parent
    if not any((sample / "normal-cecum").glob("*.jpg")):
        pytest.skip(f"no real healthy frames in {sample / 'normal-cecum'}")
    data = tmp_path / "kvasir"
    for name in ("polyps", "normal-cecum"):
        shutil.copytree(sample / name, data / name)
    run_dir = tmp_path / "run"
    code = run.main([
        "--profile", "cpu", "--data", str(data), "--run-dir", str(run_dir), "--only", "01,02,03,04,05,06",
        "-p", "epochs", "1", "-p", "max_train_images", "64", "-p", "n_eval_polyps", "20",
        "-p", "n_eval_train", "20", "-p", "n_boot", "200", "--no-report",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().out[-3000:]
    record = json.loads((paths.RunPaths(run_dir).processed / "source.json").read_text())
    assert record["kind"] == "folder" and record["counts"] == {"normal-cecum": 40, "polyps": 40}
    assert "healthy classes absent: normal-pylorus, normal-z-line" in record["description"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["profile"] == "cpu"
    for number in ("03", "04", "06"):
        assert (run_dir / "results" / f"{number}.json").is_file(), number
