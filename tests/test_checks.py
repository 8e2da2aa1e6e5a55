"""Checks before the work (issue 19, kind 3): data-dependent parameters against the data's counts,
batch sizes against memory, an absurd expected time; each one line, exit 2, nothing started."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from helpers.runner import budget, checks, run

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
NOTEBOOKS = {
    "01_prep": 'data_dir: str = ""  # data\nn_per_class: int = 4  # per class\n'
    "polyp_flips: bool = False  # flips\nhealthy_test_fraction: float = 0.25  # held out",
    "03_train": "epochs: int = 1  # epochs\nbatch_size: int = 8  # batch\n"
    'max_train_images: int = 0  # cap\ndevice: str = "cpu"  # device\n'
    'precision: str = "fp32"  # precision',
    "06_metrics": "n_eval_polyps: int = 2  # polyps\nallow_fewer: bool = False  # fewer",
    "07_pairs": "n_pairs: int = 3  # pairs\nn_clf_train: int = 2  # train\n"
    "n_clf_test: int = 1  # test\nallow_fewer: bool = False  # fewer",
}


def _notebook(path: Path, params: str) -> None:
    """A dummy notebook: parameters cell (with run_dir and seed), then one line of work."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    cell = nbformat.v4.new_code_cell(
        f'run_dir: str = ""  # run folder\nseed: int = 0  # s\n{params}'
    )
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, path)


@pytest.fixture
def plan_args(tmp_path, monkeypatch):
    """Dummy notebooks 01/03/06/07, a profile and a run folder; training runs at 100 images/s."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, params in NOTEBOOKS.items():
        _notebook(folder / f"{name}.ipynb", params)
    profile = tmp_path / "test.yaml"
    profile.write_text(yaml.safe_dump({"parameters": {"seed": 1}}))
    monkeypatch.setattr(budget, "current_speed", lambda choice, device, batch: 100.0)
    run_dir = tmp_path / "run"
    args = ["--notebooks-dir", str(folder), "--profile", str(profile), "--run-dir", str(run_dir)]
    return [*args, "--no-report"], run_dir


def _refused(args: list[str], capsys) -> list[str]:
    """Run the runner; assert exit 2 and that nothing ran; return its stderr lines."""
    assert run.main(args) == run.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error: ") for line in err) and "Traceback" not in "".join(err)
    return err


def _kvasir_tree(root: Path, per_class: dict[str, int]) -> Path:
    """A Kvasir-like folder (empty .jpg files are enough to be counted)."""
    for name, n in per_class.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{i:03d}.jpg").write_bytes(b"")
    return root


CLASSES = {"normal-cecum": 6, "normal-pylorus": 6, "normal-z-line": 6, "polyps": 5}


def test_data_dependent_parameters_are_checked_before_notebook_01(plan_args, tmp_path, capsys):
    args, run_dir = plan_args
    err = _refused([*args, "-p", "n_eval_polyps", "100000", "-p", "n_pairs", "100000"], capsys)
    assert err == [
        "error: parameter n_eval_polyps=100000: the embedded data (n_per_class=4) has 4 polyp "
        "images (notebook 06 needs at most that, or set allow_fewer True)",
        "error: parameter n_pairs=100000: the embedded data (n_per_class=4) has 4 polyp source "
        "images (notebook 07 needs at most that, or set allow_fewer True)",
    ]
    assert not (run_dir / "run.json").exists() and not (run_dir / "executed").exists()
    # a folder, and a zip of it nested one level down, counted without extracting
    tree = _kvasir_tree(tmp_path / "data" / "kvasir-dataset", CLASSES)
    archive = tmp_path / "outer.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(tree.rglob("*.jpg")):
            zf.write(path, f"outer/{path.relative_to(tree.parent)}")
    for data in (tmp_path / "data", archive):
        err = _refused([*args, "--data", str(data), "-p", "n_pairs", "6"], capsys)
        assert len(err) == 1 and "n_pairs=6: data_dir" in err[0]
        assert "has 5 polyp source images (notebook 07 needs" in err[0]
    assert not (tmp_path / "outer").exists()
    err = _refused([*args, "-p", "n_clf_train", "3"], capsys)  # 3 + 1 pairs out of 3
    assert err == [
        "error: parameters n_clf_train=3 + n_clf_test=1 = 4 exceed n_pairs=3 (notebook 07 "
        "splits the pairs into those two sets)"
    ]


def test_data_dependent_parameters_use_the_manifest_when_01_is_not_run(plan_args, capsys):
    args, run_dir = plan_args
    processed = run_dir / "data" / "processed"
    processed.mkdir(parents=True)
    rows = [("polyps", "test", f"polyps/{i}") for i in range(3)]
    rows += [("normal", "train", f"normal-cecum/{i}") for i in range(8)]
    frame = pd.DataFrame(rows, columns=["group", "split", "source_id"])
    frame.to_csv(processed / "manifest.csv", index=False)
    err = _refused([*args, "--only", "06", "-p", "n_eval_polyps", "4"], capsys)
    assert len(err) == 1 and "n_eval_polyps=4: the processed set of notebook 01" in err[0]
    assert "has 3 polyp images" in err[0]
    assert (
        run.main([*args, "--only", "06", "-p", "n_eval_polyps", "4", "-p", "allow_fewer", "true"])
        == 0
    )


def test_a_batch_beyond_memory_is_refused_and_a_capped_one_is_timed_small(
    plan_args, monkeypatch, capsys
):
    args, run_dir = plan_args
    monkeypatch.setattr(checks, "available_bytes", lambda device: 2**30)
    err = _refused([*args, "--only", "03", "-p", "n_per_class", "500", "-p", "batch_size", "100000"], capsys)  # fmt: skip
    assert len(err) == 1 and err[0].startswith(
        "error: parameter batch_size=100000: a training batch of 4,500 images needs about"
    )
    assert "the cpu has 1.0 GiB free (use batch_size <= " in err[0] and err[0].endswith(
        "notebook 03)"
    )
    capped = ["--only", "03", "-p", "batch_size", "100000", "-p", "max_train_images", "16"]
    plan = run.prepare(run.build_parser().parse_args([*args, *capped]))
    assert checks.memory_problems(run.chosen(plan), run_dir, plan.resolved) == []
    timed = checks.timing_parameters(run.chosen(plan), run_dir, plan.resolved)
    assert timed["03_train"]["batch_size"] == 16  # what the expected-time step times

    def cannot_allocate(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 58982400000")

    monkeypatch.setattr(run, "estimate", cannot_allocate)
    seconds, line = run.expected(plan, False, 1, False)
    assert seconds is None and line.startswith("expected time: unknown (timing a training step")


def test_an_absurd_expected_time_is_refused_unless_forced(plan_args, capsys):
    args, run_dir = plan_args
    err = _refused([*args, "--only", "03", "-p", "epochs", "1000000000"], capsys)
    assert len(err) == 1 and err[0].startswith("error: expected time: about ")
    assert "days on this device (more than 7 days): lower epochs" in err[0]
    assert err[0].endswith("or add --force to start it anyway")
    assert not (run_dir / "run.json").exists()
    assert not (run_dir / "run.json").exists()
    forced = [*args, "--only", "03", "-p", "epochs", "1000000000", "--force"]
    assert run.main(forced) == 0 and (run_dir / "executed" / "03_train.ipynb").is_file()
    assert "expected time: about " in capsys.readouterr().out
