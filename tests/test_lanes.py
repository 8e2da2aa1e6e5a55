"""Notebooks side by side (helpers.core.lanes and the runner's --jobs), with small dummy notebooks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
import torch

from helpers.core import lanes, paths, runtime
from helpers.runner import budget, run
from helpers.runner.budget import estimate_seconds

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
PARAMS = """\
run_dir: str = ""  # run folder
seed: int = 0  # random seed
fail: bool = False  # raise on purpose
"""
BODY = """\
import json, os, time
from pathlib import Path
from helpers.core.progress import report_progress
start = time.time()
if fail and "{name}" == "02_architecture":
    raise ValueError("boom in 02")
report_progress(task="dummy", epoch=1, epochs=2)
time.sleep(4)
marks = Path(run_dir) / "marks"
marks.mkdir(exist_ok=True)
(marks / "{name}.json").write_text(json.dumps({{
    "start": start, "end": time.time(), "threads": os.environ.get("OMP_NUM_THREADS"),
    "progress": os.environ.get("ENDOVAE_PROGRESS_FILE"),
}}))
"""


def _notebook(path: Path) -> None:
    """A dummy notebook that sleeps and records its time window and environment."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(BODY.format(name=path.stem))]
    nbformat.write(nb, path)


@pytest.fixture
def three(tmp_path):
    """01 and 02 read nothing (they may run together); 05 reads 01 (and 03/04, absent here)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("01_preprocessing", "02_architecture", "05_generation_reconstruction"):
        _notebook(folder / f"{name}.ipynb")
    run_dir, profile = tmp_path / "run", tmp_path / "test.yaml"
    profile.write_text("parameters: {}\n")
    args = ["--notebooks-dir", str(folder), "--profile", str(profile), "--run-dir", str(run_dir)]
    args.append("--no-report")
    return run_dir, args


def _window(run_dir: Path, name: str) -> dict:
    """What a dummy notebook recorded."""
    return json.loads((run_dir / "marks" / f"{name}.json").read_text())


def test_upstream_follows_reads_and_an_unknown_notebook_reads_every_earlier_one():
    names = sorted(lanes.READS)
    assert lanes.upstream("02_architecture", names) == []
    assert lanes.upstream("09_synthetic_data", names) == ["01_preprocessing", "03_train_mse"]
    assert lanes.upstream("06_metrics", ["01_preprocessing", "04_train_bce", "06_metrics"]) == [
        "01_preprocessing", "04_train_bce",
    ]  # fmt: skip
    assert lanes.upstream("11_extra", [*names, "11_extra"]) == names
    assert lanes.upstream("02_b", ["01_a", "02_b", "03_c"]) == ["01_a"]


def test_every_shipped_notebook_is_in_the_map_and_reads_only_earlier_ones():
    shipped = sorted(p.stem for p in paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    assert shipped == sorted(lanes.READS)
    for name, reads in lanes.READS.items():
        assert all(other < name for other in reads), name


def test_threads_are_shared_between_the_jobs():
    assert lanes.threads_per_job(2, cores=2) == 1 and lanes.threads_per_job(1, cores=2) == 2
    assert lanes.threads_per_job(3, cores=2) == 1 and lanes.threads_per_job(2, cores=16) == 8


def test_makespan_lays_notebooks_on_lanes_after_what_they_read():
    seconds = {"01_preprocessing": 10, "02_architecture": 5, "03_train_mse": 100,
               "04_train_bce": 100, "05_generation_reconstruction": 20}  # fmt: skip
    reads = lambda name: lanes.upstream(name, list(seconds))  # noqa: E731
    assert lanes.makespan(seconds, 1, reads) == 235
    assert lanes.makespan(seconds, 2, reads) == 10 + 100 + 20  # 03 and 04 together
    assert lanes.makespan({"03_train_mse": 7}, 2, reads) == 7


def test_estimate_lays_the_notebooks_on_the_lanes(tmp_path):
    chosen = {"01_preprocessing": {}, "03_train_mse": {"epochs": 3}, "04_train_bce": {"epochs": 3}}
    one, images = estimate_seconds(chosen, 20.0, tmp_path, report=False, jobs=1)
    two, same = estimate_seconds(chosen, 10.0, tmp_path, report=False, jobs=2)
    per_model = 3 * 3 * 60 * 4 * 0.9  # epochs x embedded healthy training images
    assert images == same == pytest.approx(2 * per_model, abs=1)
    other, slow = budget.OTHER_SECONDS, budget.LANE_SLOWDOWN
    assert one == pytest.approx(other["01"] + 2 * other["03"] + 2 * per_model / 20.0, abs=0.1)
    assert two == pytest.approx((other["01"] + other["03"]) * slow + per_model / 10.0, abs=0.1)


def test_estimate_counts_only_the_epochs_a_checkpoint_does_not_hold(tmp_path, monkeypatch):
    """After a code change every notebook reruns, but 03 resumes its finished checkpoint: the
    estimate counted all its epochs again (8.6 min expected for a 3-min rerun)."""
    from helpers.core.paths import RunPaths
    from helpers.model.endovae import EndoVAEConfig
    from helpers.train.fit import TrainConfig, fit

    small = EndoVAEConfig(in_size=16, enc_channels=(4, 8), enc_strides=(2, 2), hidden_dim=8,
                          dec_channels=(8, 4), dec_strides=(2, 2))  # fmt: skip
    images = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8).numpy()
    path = RunPaths(tmp_path).ensure().checkpoint("mse")
    fit(images, TrainConfig(epochs=2, batch_size=4, precision="fp32"), model_config=small,
        checkpoint_path=path, device="cpu", progress=False)  # fmt: skip
    mse = {"epochs": 5, "loss": "mse", "resume": True}
    chosen = {"03_train_mse": mse, "04_train_bce": {**mse, "loss": "bce"}}
    assert budget.resumed_epochs(chosen, tmp_path) == {"03_train_mse": 2, "04_train_bce": 0}
    assert budget.resumed_epochs({"03_train_mse": {**mse, "resume": False}}, tmp_path) == {}
    processed = RunPaths(tmp_path).processed
    _, fresh = estimate_seconds(chosen, 20.0, processed, report=False)
    _, resumed = estimate_seconds(chosen, 20.0, processed, False, done={"03_train_mse": 2})
    per_epoch = fresh // 10  # two notebooks of 5 epochs each
    assert resumed == fresh - 2 * per_epoch
    _, finished = estimate_seconds(chosen, 20.0, processed, False, done={"03_train_mse": 7})
    assert finished == fresh // 2  # a checkpoint past the plan costs nothing (fit says why)
    monkeypatch.setattr(budget, "current_speed", lambda *a: 20.0)
    line = budget.expected_time({"03_train_mse": {**mse, "device": "cpu", "precision": "fp32",
                                                  "batch_size": 4}}, tmp_path, False)  # fmt: skip
    assert "2 epoch(s) already in the checkpoints of 03/04" in line


def test_expected_time_times_a_cached_choice_again(tmp_path, monkeypatch):
    fp32 = runtime.fixed_precision(torch.device("cpu"), "fp32")
    cached = runtime.PrecisionChoice(fp32, {fp32.label: 500.0}, "fastest at batch 8, cached")
    fresh = runtime.PrecisionChoice(fp32, {fp32.label: 40.0}, "fastest at batch 8, measured", True)
    timed = []
    monkeypatch.setattr(budget, "measure_images_per_s", lambda *a: timed.append(a) or 5.0)
    chosen = {"03_train_mse": {"epochs": 1, "batch_size": 8, "precision": "auto", "device": "cpu"}}
    monkeypatch.setattr(budget, "training_precision", lambda *a: cached)
    assert "at 5.0 img/s" in budget.expected_time(chosen, tmp_path, report=False)
    assert len(timed) == 1  # the cache's 500 img/s may come from a faster hour
    monkeypatch.setattr(budget, "training_precision", lambda *a: fresh)
    assert "at 40.0 img/s" in budget.expected_time(chosen, tmp_path, report=False)
    assert len(timed) == 1  # timed just now: not timed twice


@pytest.mark.slow
def test_independent_notebooks_run_side_by_side_with_their_own_threads(three, capsys):
    run_dir, args = three
    assert run.main([*args, "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 notebooks side by side" in out
    first, second, third = (
        _window(run_dir, n)
        for n in ("01_preprocessing", "02_architecture", "05_generation_reconstruction")
    )
    assert second["start"] < first["end"] and first["start"] < second["end"], "01 and 02 overlap"
    assert third["start"] >= first["end"], "05 reads 01, so it starts after 01 ends"
    assert {w["threads"] for w in (first, second, third)} == {str(lanes.threads_per_job(2))}
    assert first["progress"] != second["progress"], "each kernel has its own progress file"
    for line in ("[1/3] 01_preprocessing ... started", "[2/3] 02_architecture ... done in"):
        assert line in out
    assert not list((run_dir / "executed").glob(".progress*")), "progress files are removed"

    assert run.main([*args, "--jobs", "2"]) == 0  # unchanged: all skipped
    assert capsys.readouterr().out.count("skipped (unchanged)") == 3
    timings = (run_dir / "timings.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in timings[1:]] == [
        "01_preprocessing", "02_architecture", "05_generation_reconstruction",
    ]  # fmt: skip


@pytest.mark.slow
def test_one_at_a_time_the_kernel_gets_the_progress_file_and_the_runner_env_stays(three):
    run_dir, args = three
    assert run.main([*args, "--only", "01"]) == 0
    progress = _window(run_dir, "01_preprocessing")["progress"]
    assert progress == str(run_dir / "executed" / ".progress.json")
    assert "ENDOVAE_PROGRESS_FILE" not in os.environ, "passed to the kernel, not set here"


@pytest.mark.slow
def test_a_failure_side_by_side_lets_the_other_finish_and_starts_nothing_new(three, capsys):
    run_dir, args = three
    assert run.main([*args, "--jobs", "2", "-p", "fail", "true"]) == run.EXIT_FAILED
    captured = capsys.readouterr()
    assert "[2/3] 02_architecture ... failed after" in captured.out
    assert "ValueError: boom in 02" in captured.err
    stamps = run_dir / "executed" / ".stamps"
    assert (stamps / "01_preprocessing.json").is_file(), "the notebook beside it finished"
    assert not (stamps / "02_architecture.json").exists()
    assert not (run_dir / "marks" / "05_generation_reconstruction.json").exists()


def test_jobs_below_one_is_a_usage_error(three, capsys):
    _, args = three
    assert run.main([*args, "--jobs", "0"]) == run.EXIT_USAGE
    assert capsys.readouterr().err.strip() == "error: --jobs 0: must be 1 or more"
