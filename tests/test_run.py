"""Tests for the papermill runner (helpers.runner.run), against small dummy notebooks in a tmp folder."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from helpers.config import params, profile
from helpers.core import paths
from helpers.runner import plan, run, stamps

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _cell(kind: str, source: str, *tags: str):
    """A markdown or code cell with tags."""
    cell = (
        nbformat.v4.new_code_cell(source)
        if kind == "code"
        else nbformat.v4.new_markdown_cell(source)
    )
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _write_notebook(path: Path, params: str, body: str) -> Path:
    """A dummy notebook in the bundle's shape: title, parameters cell, work, caption."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells = [
        _cell("markdown", f"# {path.stem}", "report-skip"),
        _cell("code", params, "parameters", "report-skip"),
        _cell("code", "from pathlib import Path\nmarks = Path(run_dir) / 'marks'"),
        _cell("code", body),
        _cell("markdown", "**Figure 1:** A dummy caption."),
    ]
    nbformat.write(nb, path)
    return path


FIRST_PARAMS = """\
run_dir: str = ""  # run folder
seed: int = 0  # random seed
data_dir: str = "synthetic"  # data source
n_per_class: int = 4  # images per class
"""
SECOND_PARAMS = """\
run_dir: str = ""  # run folder
seed: int = 0  # random seed
epochs: int = 1  # training epochs
loss: str = "mse"  # reconstruction loss
device: str = "auto"  # torch device
fail: bool = False  # raise on purpose
"""
SECOND_BODY = """\
marks.mkdir(exist_ok=True)
with open(marks / "02.txt", "a") as fh:
    fh.write(f"epochs={epochs} loss={loss}\\n")
if fail:
    raise ValueError("boom in second")
"""


@pytest.fixture
def dummy(tmp_path):
    """Two dummy notebooks, a test profile and a run folder; returns a dict of their paths."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    first_body = (
        "marks.mkdir(parents=True, exist_ok=True)\n"
        "with open(marks / '01.txt', 'a') as fh:\n    fh.write(f'{n_per_class}\\n')"
    )
    _write_notebook(folder / "01_first.ipynb", FIRST_PARAMS, first_body)
    _write_notebook(folder / "02_second.ipynb", SECOND_PARAMS, SECOND_BODY)
    (folder / "README.ipynb").write_text("not a numbered notebook")
    profile = tmp_path / "test.yaml"
    profile.write_text(yaml.safe_dump({"parameters": {"seed": 1, "device": "cpu"}}))
    run_dir = tmp_path / "run"
    base = ["--notebooks-dir", str(folder), "--profile", str(profile), "--run-dir", str(run_dir)]
    return {"folder": folder, "profile": profile, "run_dir": run_dir, "args": base}


def _marks(run_dir: Path, name: str) -> list[str]:
    """Lines the dummy notebook `name` appended (one per execution)."""
    path = run_dir / "marks" / f"{name}.txt"
    return path.read_text().splitlines() if path.exists() else []


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file in a folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["-p", "nope", "1"], "unknown parameter 'nope'"),
        (["-p", "epochs", "abc"], "epochs='abc': expected int"),
        (["-p", "epochs", "-3"], "epochs=-3: expected an integer >= 1"),
        (["-p", "epochs", "0"], "epochs=0: expected an integer >= 1"),
        (["-p", "n_per_class", "-1"], "n_per_class=-1: expected an integer >= 1"),
        (["-p", "loss", "huber"], "loss='huber': expected one of mse, bce"),
        (["--device", "tpu"], "device='tpu': expected one of auto, cuda, mps, cpu"),
        (["--data", "/no/such/kvasir.zip"], "data_dir='/no/such/kvasir.zip': expected"),
        (["--only", "09"], "--only 09: no such notebook"),
        (["--profile", "no-such-profile"], "unknown profile"),
    ],
)
def test_bad_parameters_exit_2_with_one_line(dummy, capsys, extra, expected):
    rc = run.main([*dummy["args"], *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == run.EXIT_USAGE
    assert len(err) == 1, err
    assert expected in err[0]
    assert not (dummy["run_dir"] / "executed").exists()
    assert not (dummy["run_dir"] / "marks").exists()


def test_profile_with_unknown_name_or_notebook_is_rejected(dummy, capsys):
    dummy["profile"].write_text(
        yaml.safe_dump({"parameters": {"epochz": 3}, "notebooks": {"05_missing": {"epochs": 1}}})
    )
    assert run.main(dummy["args"]) == run.EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown parameter 'epochz' (profile)" in err
    assert "notebooks.05_missing: no such notebook" in err


def test_profile_values_exponents_are_numbers(dummy):
    dummy["profile"].write_text("parameters:\n  lr: 1e-3\n  seed: 2\n")
    assert run.load_profile(str(dummy["profile"]))["parameters"] == {"lr": 0.001, "seed": 2}
    dummy["profile"].write_text("- just a list\n")
    with pytest.raises(run.UsageError, match="expected a map"):
        run.load_profile(str(dummy["profile"]))


def test_resolve_order_profile_then_notebook_then_cli(dummy):
    notebooks = run.load_notebooks(dummy["folder"])
    profile = {
        "parameters": {"epochs": 5, "n_per_class": 2, "seed": 3},
        "notebooks": {"02_second": {"epochs": 6, "loss": "bce"}},
    }
    overrides = run.override_parameters(notebooks, profile, {"loss": "mse", "seed": 9})
    assert overrides["01_first"] == {"n_per_class": 2, "seed": 9}
    assert overrides["02_second"] == {"epochs": 6, "loss": "mse", "seed": 9}
    resolved = run.resolve_parameters(notebooks, overrides, Path("/runs/x"))
    assert resolved["01_first"] == {"run_dir": "/runs/x", "seed": 9, "data_dir": "synthetic",
                                    "n_per_class": 2}  # fmt: skip
    assert resolved["02_second"] == {"run_dir": "/runs/x", "seed": 9, "epochs": 6, "loss": "mse",
                                     "device": "auto", "fail": False}  # fmt: skip


def test_parse_value_is_yaml_scalar():
    assert profile.parse_value("3") == 3
    assert profile.parse_value("1e-3") == pytest.approx(1e-3)  # YAML 1.1 alone gives a string
    assert profile.parse_value("0.001") == pytest.approx(0.001)
    assert profile.parse_value("true") is True
    assert profile.parse_value("abc") == "abc"


def test_data_option_keywords_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kvasir").mkdir()
    args = run.build_parser().parse_args(["--data", "synthetic"])
    assert run.cli_parameters(args)["data_dir"] == ""
    args = run.build_parser().parse_args(["--data", "download:v2"])
    assert run.cli_parameters(args)["data_dir"] == "download:v2"
    args = run.build_parser().parse_args(["--data", "kvasir"])
    assert run.cli_parameters(args)["data_dir"] == str(tmp_path / "kvasir")


def test_list_shows_parameters_and_profile_values(dummy, capsys):
    assert run.main([*dummy["args"], "--list", "-p", "epochs", "4"]) == 0
    out = capsys.readouterr().out
    assert "02_second" in out and "epochs: int = 1  -> 4" in out
    assert not (dummy["run_dir"] / "executed").exists()


def test_run_skip_when_unchanged_and_force(dummy, capsys):
    before = _digest(dummy["folder"])
    args = [*dummy["args"], "--no-report"]
    assert run.main(args) == 0
    out = capsys.readouterr().out
    assert "[1/2] 01_first ..." in out and "[2/2] 02_second ..." in out
    executed = dummy["run_dir"] / "executed"
    assert (executed / "01_first.ipynb").is_file() and (executed / "02_second.ipynb").is_file()
    assert _marks(dummy["run_dir"], "01") == ["4"]
    assert _digest(dummy["folder"]) == before, "source notebooks must never be written"
    stamp = json.loads((executed / ".stamps" / "02_second.json").read_text())
    assert stamp["parameters"]["run_dir"] == str(dummy["run_dir"])

    assert run.main(args) == 0  # unchanged: both skipped
    assert capsys.readouterr().out.count("skipped (unchanged)") == 2
    assert len(_marks(dummy["run_dir"], "01")) == 1
    with open(dummy["run_dir"] / "timings.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["notebook"] for r in rows] == ["01_first", "02_second"]
    assert all(r["skipped"] == "true" for r in rows)

    assert run.main([*args, "-p", "epochs", "2"]) == 0  # only 02 declares epochs
    assert len(_marks(dummy["run_dir"], "01")) == 1
    assert _marks(dummy["run_dir"], "02")[-1] == "epochs=2 loss=mse"

    assert run.main([*args, "-p", "epochs", "2", "--force"]) == 0
    assert len(_marks(dummy["run_dir"], "01")) == 2
    assert len(_marks(dummy["run_dir"], "02")) == 3
    assert _digest(dummy["folder"]) == before


def test_expected_time_leaves_out_the_notebooks_that_will_be_skipped(dummy, capsys):
    """A rerun's expected time counts only what runs: an unchanged notebook is skipped unless an
    earlier one it reads runs again first, or --force reruns everything."""
    args = [*dummy["args"], "--no-report"]
    assert run.main(args) == 0
    assert "skipped)" not in capsys.readouterr().out  # a first run skips nothing
    assert run.main(args) == 0
    assert "; 2 unchanged notebook(s) skipped)" in capsys.readouterr().out
    assert run.main([*args, "-p", "epochs", "2"]) == 0  # only 02 declares epochs
    assert "; 1 unchanged notebook(s) skipped)" in capsys.readouterr().out
    assert run.main([*args, "-p", "epochs", "2", "-p", "n_per_class", "7"]) == 0  # 02 reads 01
    assert "unchanged notebook" not in capsys.readouterr().out
    assert run.main([*args, "-p", "epochs", "2", "-p", "n_per_class", "7", "--force"]) == 0
    assert "unchanged notebook" not in capsys.readouterr().out


def test_changed_earlier_notebook_reruns_later_ones(dummy, capsys):
    args = [*dummy["args"], "--no-report"]
    assert run.main([*args, "--only", "01"]) == 0
    assert run.main([*args, "--only", "02"]) == 0
    assert run.main([*args, "-p", "n_per_class", "7", "--only", "01"]) == 0
    assert _marks(dummy["run_dir"], "01") == ["4", "7"]
    capsys.readouterr()
    assert run.main([*args, "-p", "n_per_class", "7", "--only", "02"]) == 0
    assert "skipped" not in capsys.readouterr().out  # 01's stamp changed, so 02 is stale
    assert len(_marks(dummy["run_dir"], "02")) == 2


def test_failing_notebook_names_notebook_cell_and_error(dummy, capsys):
    rc = run.main([*dummy["args"], "--no-report", "-p", "fail", "true"])
    captured = capsys.readouterr()
    assert rc == run.EXIT_FAILED
    source = nbformat.read(dummy["folder"] / "02_second.ipynb", as_version=4)
    index = next(i for i, c in enumerate(source.cells) if "boom" in c.source)
    assert f"FAILED 02_second.ipynb, cell {index}" in captured.err
    assert SECOND_BODY.splitlines()[0] in captured.err
    assert "ValueError: boom in second" in captured.err
    assert len(captured.err.strip().splitlines()) <= 6
    stamps = dummy["run_dir"] / "executed" / ".stamps"
    assert (stamps / "01_first.json").is_file() and not (stamps / "02_second.json").exists()
    assert (dummy["run_dir"] / "executed" / "02_second.ipynb").is_file()  # kept for debugging


def test_notebook_without_kernelspec_is_still_inspected(tmp_path):
    path = _write_notebook(tmp_path / "01_x.ipynb", FIRST_PARAMS, "pass")
    nb = nbformat.read(path, as_version=4)
    del nb.metadata["kernelspec"]
    nbformat.write(nb, path)
    declared = params.notebook_parameters(path)
    assert declared["n_per_class"].kind == "int" and declared["n_per_class"].default == 4


def test_helpers_hash_follows_code_but_not_runner_or_report(tmp_path):
    for name in ("model/endovae.py", "run.py", "runner/report.py", "runner/stamps.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n")
    first = run.helpers_hash(tmp_path)
    for name in ("runner/report.py", "runner/stamps.py", "run.py"):
        (tmp_path / name).write_text("# changed\n")
    assert run.helpers_hash(tmp_path) == first
    (tmp_path / "model/endovae.py").write_text("# changed\n")
    assert run.helpers_hash(tmp_path) != first


def test_shipped_profiles_name_only_declared_parameters():
    notebooks = run.load_notebooks(paths.notebooks_dir())
    if not notebooks:
        pytest.skip("no notebooks yet")
    declared = {name for nb in notebooks for name in nb.params}
    names = {nb.name for nb in notebooks} | {nb.number for nb in notebooks}
    for shipped in ("quick", "paper"):
        data = run.load_profile(shipped)
        assert set(data["parameters"]) <= declared, shipped
        assert set(data["notebooks"]) <= names, shipped


def test_paper_profile_validates_with_cpu_override(capsys):
    if not plan.find_notebooks(paths.notebooks_dir()):
        pytest.skip("no notebooks yet")
    assert run.main(["--profile", "paper", "--device", "cpu", "--list"]) == 0, (
        capsys.readouterr().err
    )


def test_parameters_with_equals_in_comments_are_found(tmp_path):
    cell = 'run_dir: str = ""  # "" = runs/quick\nworkers: int = 0  # 0 = all cores\nlr = 1e-3\n'
    path = _write_notebook(tmp_path / "01_x.ipynb", cell, "pass")
    found = params.notebook_parameters(path)
    assert list(found) == ["run_dir", "workers", "lr"]
    assert found["workers"].kind == "int"
    assert found["workers"].help == "0 = all cores"
    assert found["lr"].kind == "float" and found["lr"].default == 1e-3


def test_changed_output_of_an_earlier_notebook_reruns_the_later_one(dummy, capsys):
    """As when `--only 03 -p epochs 25` rewrites mse.pt: notebook 05 must not be skipped."""
    args = [*dummy["args"], "--no-report"]
    assert run.main(args) == 0
    (dummy["run_dir"] / "marks" / "01.txt").write_text("changed by hand\n")
    capsys.readouterr()
    assert run.main([*args, "--only", "02"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert len(_marks(dummy["run_dir"], "02")) == 2


def test_damaged_output_is_detected_and_rerun(dummy, capsys):
    """As with a truncated mse.pt: the notebook that wrote it runs again."""
    args = [*dummy["args"], "--no-report"]
    assert run.main(args) == 0
    (dummy["run_dir"] / "marks" / "02.txt").write_text("")
    capsys.readouterr()
    assert run.main([*args, "--only", "02"]) == 0
    assert "outputs changed since its last run" in capsys.readouterr().out
    assert len(_marks(dummy["run_dir"], "02")) == 1


def test_changed_data_reruns_preprocessing(dummy, tmp_path, capsys):
    data = tmp_path / "kvasir.zip"
    data.write_bytes(b"first version")
    args = [*dummy["args"], "--no-report", "--only", "01", "--data", str(data)]
    assert run.main(args) == 0
    assert run.main(args) == 0 and len(_marks(dummy["run_dir"], "01")) == 1  # unchanged: skipped
    data.write_bytes(b"second version")
    assert run.main(args) == 0
    assert len(_marks(dummy["run_dir"], "01")) == 2


def test_a_second_runner_on_the_same_run_folder_stops_with_one_line(dummy, capsys):
    from helpers.core.lock import file_lock

    dummy["run_dir"].mkdir(parents=True)
    with file_lock(dummy["run_dir"] / ".run.lock", what="run folder"):
        rc = run.main([*dummy["args"], "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == run.EXIT_USAGE and len(err) == 1
    assert f"PID {os.getpid()}" in err[0]
    assert not _marks(dummy["run_dir"], "01"), "nothing ran"


@pytest.mark.parametrize("kind", ["file", "proc", "read-only"])
def test_bad_run_folder_is_one_line_and_exit_2(dummy, tmp_path, capsys, kind):
    if kind == "file":
        target = tmp_path / "a-file"
        target.write_text("x")
    elif kind == "proc":
        target = Path("/proc/endovae-run")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o500)
        target = parent / "run"
    args = [a if a != str(dummy["run_dir"]) else str(target) for a in dummy["args"]]
    rc = run.main([*args, "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == run.EXIT_USAGE and len(err) == 1 and "--run-dir" in err[0], err


def test_run_dir_from_the_environment_is_used(dummy, tmp_path, monkeypatch):
    target = tmp_path / "from-env"
    monkeypatch.setenv("ENDOVAE_RUN_DIR", str(target))
    args = [a for a in dummy["args"]]
    i = args.index("--run-dir")
    del args[i : i + 2]
    assert run.main([*args, "--no-report"]) == 0
    assert _marks(target, "01") == ["4"]


def test_report_marks_a_notebook_whose_inputs_changed_after_it_ran(dummy):
    from helpers.runner import report

    assert run.main([*dummy["args"], "--no-report"]) == 0
    cells = report.merge_notebooks(dummy["run_dir"]).cells
    assert not [c for c in cells if "Stale results" in c.source]
    (dummy["run_dir"] / "marks" / "01.txt").write_text("changed after 02 ran\n")
    stale = [
        c.source for c in report.merge_notebooks(dummy["run_dir"]).cells if "Stale" in c.source
    ]
    assert len(stale) == 1 and "02_second" in stale[0]


def test_run_json_records_every_resolved_value(dummy):
    assert run.main([*dummy["args"], "--no-report", "-p", "epochs", "2"]) == 0
    info = paths.read_run_info(dummy["run_dir"])
    assert {"profile", "command", "started", "device", "parameters"} <= set(info)
    assert info["profile"] == "test" and "-p epochs 2" in info["command"]
    run_dir = str(dummy["run_dir"])
    assert info["parameters"]["01_first"] == {"run_dir": run_dir, "seed": 1,
                                              "data_dir": "synthetic", "n_per_class": 4}  # fmt: skip
    assert info["parameters"]["02_second"] == {"run_dir": run_dir, "seed": 1, "epochs": 2,
                                               "loss": "mse", "device": "cpu", "fail": False}  # fmt: skip
    assert info["overrides"]["02_second"] == {"seed": 1, "device": "cpu", "epochs": 2}
    assert paths.read_run_info(dummy["run_dir"] / "nowhere") == {}


def test_every_notebook_declares_exactly_its_schema_with_valid_defaults():
    notebooks = run.load_notebooks(paths.notebooks_dir())
    assert {nb.name for nb in notebooks} == set(params.SCHEMAS)
    for nb in notebooks:
        assert tuple(nb.params) == params.SCHEMAS[nb.name], nb.name
        for name, declared in nb.params.items():
            rule = params.RULES[name]  # every declared name has a rule
            assert declared.kind == rule.kind.__name__, (nb.name, name)
            assert declared.has_default, (nb.name, name)
            assert params.problem(name, declared.default) is None, (nb.name, name)


def test_rules_reject_out_of_range_values_naming_the_parameter():
    for name, bad in (("epochs", 0), ("lr", 0.0), ("healthy_test_fraction", 1.0),
                      ("polyp_train_share", 1.5), ("loss", "huber"), ("device", "tpu"),
                      ("latent_dims", "6,x"), ("betas", "-1"), ("batch_size", True),
                      ("kvasir_sha256", "abc"), ("data_dir", "/no/such/folder")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^{name}="):
            params.check(name, bad)
    assert params.check("latent_dims", "6,32,128") == "6,32,128"
    assert params.check("data_dir", "download:v2") == "download:v2"


def test_quick_profile_repeats_no_notebook_default():
    notebooks = {nb.name: nb.defaults() for nb in run.load_notebooks(paths.notebooks_dir())}
    quick = run.load_profile("quick")
    for name, value in quick["parameters"].items():
        assert all(d.get(name, object()) != value for d in notebooks.values()), name
    for nb, values in quick["notebooks"].items():
        assert all(notebooks[nb].get(k) != v for k, v in values.items()), nb


def test_nested_run_folders_are_refused(tmp_path):
    """A run folder inside another run folder, or holding one, gets one line naming the other."""
    outer = tmp_path / "outer"
    inner = outer / "a" / "inner"
    inner.mkdir(parents=True)
    assert run.run_dir_problem(inner) is None and run.run_dir_problem(outer) is None
    (outer / paths.RUN_INFO).write_text("{}")
    problem = run.run_dir_problem(inner)
    assert problem and "inside another run folder" in problem and str(outer) in problem
    (outer / paths.RUN_INFO).unlink()
    (inner / ".run.lock").write_text("")
    problem = run.run_dir_problem(outer)
    assert problem and "holds another run folder" in problem and str(inner) in problem
    assert "\n" not in problem


def test_a_copied_run_folder_keeps_its_stamps(dummy, tmp_path, capsys):
    """Issue 19 kind 6: the run folder's place is not in the stamp key, so a copy skips."""
    assert run.main([*dummy["args"], "--no-report"]) == 0
    copy = tmp_path / "elsewhere" / "run-copy"
    shutil.copytree(dummy["run_dir"], copy)
    capsys.readouterr()
    args = [*dummy["args"][:-1], str(copy), "--no-report"]
    assert run.main(args) == 0
    assert capsys.readouterr().out.count("skipped (unchanged)") == 2
    assert _marks(copy, "01") == ["4"] and len(_marks(copy, "02")) == 1


def test_portable_parameters_drop_the_run_folders_place():
    """Paths inside the run folder or the bundle are keyed relative to it; others stay."""
    a = {"run_dir": "/a/run", "data_dir": "/a/run/data/raw", "seed": 1, "x": "/other/z"}
    b = {"run_dir": "/b/c/run", "data_dir": "/b/c/run/data/raw", "seed": 1, "x": "/other/z"}
    assert stamps.portable_parameters(a) == stamps.portable_parameters(b)
    kept = stamps.portable_parameters(a)
    assert kept == {"data_dir": "<run_dir>/data/raw", "seed": 1, "x": "/other/z"}
    inside = str(paths.PROJECT_ROOT / "notebooks")
    assert stamps.portable_parameters({"nb": inside}) == {"nb": "<bundle>/notebooks"}


def _kernel_probe_notebooks(tmp_path: Path, second_body: str) -> dict:
    """Two notebooks: the first leaves a name and a figure behind and records its kernel; the
    second runs `second_body`."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    first = (
        "import os, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "leftover = plt.figure()\nmarks.mkdir(parents=True, exist_ok=True)\n"
        "(marks / 'pid01.txt').write_text(str(os.getpid()))"
    )
    _write_notebook(folder / "01_first.ipynb", FIRST_PARAMS, first)
    _write_notebook(folder / "02_second.ipynb", SECOND_PARAMS, second_body)
    profile = tmp_path / "test.yaml"
    profile.write_text(yaml.safe_dump({"parameters": {"device": "cpu"}}))
    run_dir = tmp_path / "run"
    args = ["--notebooks-dir", str(folder), "--profile", str(profile), "--run-dir", str(run_dir)]
    return {"run_dir": run_dir, "args": [*args, "--no-report"]}


def test_notebooks_in_order_share_a_kernel_but_not_their_names(tmp_path):
    """One kernel for the run (the second notebook runs in the first one's process, with its
    modules imported), yet the second sees none of the first's names or figures and counts its
    cells from 1, as in a kernel of its own."""
    second = (
        "import os, sys\nimport matplotlib.pyplot as plt\n"
        "assert 'leftover' not in globals() and 'first' not in globals()\n"
        "assert not plt.get_fignums(), plt.get_fignums()\n"
        "(marks / 'pid02.txt').write_text(str(os.getpid()))"
    )
    probe = _kernel_probe_notebooks(tmp_path, second)
    assert run.main(probe["args"]) == run.EXIT_OK
    marks = probe["run_dir"] / "marks"
    assert (marks / "pid01.txt").read_text() == (marks / "pid02.txt").read_text()
    executed = nbformat.read(probe["run_dir"] / "executed" / "02_second.ipynb", as_version=4)
    counts = [c.execution_count for c in executed.cells if c.cell_type == "code"]
    assert counts[0] == 1 and counts == sorted(counts), counts


def test_a_kernel_that_dies_stops_the_run_with_its_note_and_a_rerun_starts_a_new_one(
    tmp_path, capsys
):
    """The shared kernel is gone after a notebook kills it: the run stops naming the notebook,
    and the next run starts a fresh kernel for it."""
    probe = _kernel_probe_notebooks(tmp_path, "import os\nif fail:\n    os._exit(1)\nprint('ok')")
    assert run.main([*probe["args"], "-p", "fail", "true"]) == run.EXIT_FAILED
    err = capsys.readouterr().err
    assert "FAILED 02_second.ipynb" in err and "the kernel died" in err
    assert run.main(probe["args"]) == run.EXIT_OK
