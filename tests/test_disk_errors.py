"""A full disk (issue 19, kind 1) and a read-only folder (kind 4): every file the bundle writes
appears complete or not at all, no temp file stays, and the error is one line naming the file.

Faults are injected (a writer that stops half-way with ENOSPC/EROFS, numpy's short write) and,
when this process may make mount namespaces (root), also met for real on a small tmpfs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import numpy.lib._npyio_impl as npyio
import pandas as pd
import pytest
import torch
import yaml

from helpers.core import atomic
from helpers.core.paths import PROJECT_ROOT
from helpers.data import preprocess, processed
from helpers.model.endovae import EndoVAE
from helpers.runner import run
from helpers.study import generate
from helpers.train.checkpoint import save_checkpoint

NO_SPACE = "no space left on device"
READ_ONLY = "read-only file system"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _leftovers(folder: Path) -> list[str]:
    """Temp and partial files anywhere under `folder`."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob(".*")
        if p.is_file() and (p.name.endswith(".tmp") or ".partial" in p.name)
    )


def _stops_half_way(code: int, when=lambda path, data: True):
    """A Path.write_bytes that writes half the data, then fails with errno `code`."""
    real = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if not when(self, data):
            return real(self, data)
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(code, os.strerror(code))

    return write_bytes


# --- kind 1: a full disk, each writer ------------------------------------------------------------


def _write_text(path: Path) -> None:
    atomic.atomic_write_text(path, "new " * 1000)


def _write_png(path: Path) -> None:
    preprocess._write_png(path, b"\x89PNG" + bytes(4096))  # the PNGs of notebook 01


def _write_checkpoint(path: Path) -> None:
    save_checkpoint(path, EndoVAE(), epoch=1)


@pytest.mark.parametrize("writer", [_write_text, _write_png, _write_checkpoint])
@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, NO_SPACE), (errno.EROFS, READ_ONLY)])
def test_a_failed_write_keeps_the_old_file_and_names_it(tmp_path, monkeypatch, writer, code, words):
    target = tmp_path / "out" / "file.bin"
    target.parent.mkdir()
    target.write_bytes(b"old")
    monkeypatch.setattr(Path, "write_bytes", _stops_half_way(code))
    with pytest.raises(OSError) as caught:
        writer(target)
    assert caught.value.errno == code
    assert str(caught.value) == f"cannot write {target}: {words}"
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"], "no temp file left"


def test_a_short_numpy_write_is_a_full_disk_naming_the_cache(tmp_path, monkeypatch):
    """np.save reports a short write without errno ("N requested and M written")."""
    out = tmp_path / "processed"
    out.mkdir()
    (out / "normal.npy").write_bytes(b"old cache")
    images = np.zeros((4, 8, 8, 3), np.uint8)
    frame = pd.DataFrame({"group": ["normal"] * 4, "sha256": list("abcd")})

    def short_write(fh, array, **kwargs):
        fh.write(b"\x93NUMPY" + bytes(100))
        raise OSError("6635520 requested and 1990528 written")

    monkeypatch.setattr(npyio.format, "write_array", short_write)
    with pytest.raises(OSError) as caught:
        processed.write_cache(out, "normal", images, frame)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == f"cannot write {out / 'normal.npy'}: {NO_SPACE}"
    assert (out / "normal.npy").read_bytes() == b"old cache"
    assert sorted(p.name for p in out.iterdir()) == ["normal.npy"]


# --- kind 1: the runner ---------------------------------------------------------------------------


def _dummy_notebook(folder: Path, body: str) -> Path:
    """notebooks/01_dummy.ipynb: a parameters cell, then `body`."""
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    params = nbformat.v4.new_code_cell('run_dir: str = ""  # run folder\nseed: int = 0  # seed')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 dummy"),
        params,
        nbformat.v4.new_code_cell(body),
    ]
    path = folder / "01_dummy.ipynb"
    nbformat.write(nb, path)
    return path


# In the kernel: the figure's write stops half-way, as on a full disk.
KERNEL_FULL_DISK = """\
import errno, os
from pathlib import Path
from unittest import mock
from helpers.core import atomic
def full(self, data):
    with open(self, "wb") as fh:
        fh.write(data[: len(data) // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
with mock.patch.object(Path, "write_bytes", full):
    atomic.atomic_write_bytes(Path(run_dir) / "figures" / "fig01.png", bytes(4096))
"""
OLD_EXECUTED = nbformat.writes(nbformat.v4.new_notebook())


def _run_args(tmp_path: Path, body: str) -> tuple[list[str], Path]:
    """Arguments of helpers.runner.run for the dummy notebook, and its run folder (with an older
    executed notebook in it)."""
    folder = tmp_path / "notebooks"
    _dummy_notebook(folder, body)
    profile = tmp_path / "test.yaml"
    profile.write_text(yaml.safe_dump({"parameters": {"seed": 1}}))
    run_dir = tmp_path / "run"
    (run_dir / "executed").mkdir(parents=True)
    (run_dir / "executed" / "01_dummy.ipynb").write_text(OLD_EXECUTED)
    args = ["--notebooks-dir", str(folder), "--profile", str(profile), "--run-dir", str(run_dir)]
    return [*args, "--no-report"], run_dir


@pytest.mark.parametrize("runner_full", [False, True], ids=["kernel-full", "all-full"])
def test_a_full_disk_in_a_run_gives_one_line_per_file_and_keeps_old_outputs(
    tmp_path, monkeypatch, capsys, runner_full
):
    args, run_dir = _run_args(tmp_path, KERNEL_FULL_DISK)
    if runner_full:  # the disk is still full when the runner saves the notebook and timings
        failing = lambda path, data: (  # noqa: E731
            b'"output_type": "error"' in data or path.name.startswith(".timings.csv.")
        )
        monkeypatch.setattr(Path, "write_bytes", _stops_half_way(errno.ENOSPC, failing))
    rc = run.main(args)
    err = capsys.readouterr().err
    assert rc == run.EXIT_FAILED
    assert "Traceback" not in err
    figure, executed = run_dir / "figures" / "fig01.png", run_dir / "executed" / "01_dummy.ipynb"
    lines = err.strip().splitlines()
    assert lines[0].startswith("FAILED 01_dummy.ipynb, cell 2")
    assert f"  WriteError: cannot write {figure}: {NO_SPACE}" in lines
    assert not figure.exists() and _leftovers(run_dir) == []
    assert lines.count(f"  executed notebook: {executed}") == (not runner_full)
    if runner_full:
        assert (
            f"  executed notebook not saved (cannot write {executed}: {NO_SPACE}); "
            "the older one is left as it was"
        ) in lines
        assert lines[-1] == f"error: cannot write {run_dir / 'timings.csv'}: {NO_SPACE}"
        assert executed.read_text() == OLD_EXECUTED
        assert not (run_dir / "timings.csv").exists()
    else:
        saved = nbformat.read(executed, as_version=4)  # complete, with the kernel's error
        assert any(f"cannot write {figure}" in str(o) for o in saved.cells[-1].outputs)
        assert (run_dir / "timings.csv").read_text().splitlines()[1].startswith("01_dummy,")


def test_an_executed_notebook_that_cannot_be_saved_is_one_line(tmp_path, monkeypatch, capsys):
    """Every save of the executed notebook fails: one line naming it, the older one kept."""
    args, run_dir = _run_args(tmp_path, "print('hello')")
    executed = run_dir / "executed" / "01_dummy.ipynb"
    failing = lambda path, data: ".01_dummy.partial.ipynb." in path.name  # noqa: E731
    monkeypatch.setattr(Path, "write_bytes", _stops_half_way(errno.ENOSPC, failing))
    assert run.main(args) == run.EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"FAILED 01_dummy.ipynb: cannot write {executed}: {NO_SPACE}"]
    assert executed.read_text() == OLD_EXECUTED and _leftovers(run_dir) == []
    assert (run_dir / "timings.csv").read_text().splitlines()[1].startswith("01_dummy,")


def _namespace_tmpfs_works() -> bool:
    """True when `unshare -m` with a tmpfs mount is permitted here (root, no seccomp block)."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = f"mount -t tmpfs -o size=64k tmpfs {folder} && touch {folder}/x"
        done = subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True)
    return done.returncode == 0


needs_tmpfs = pytest.mark.skipif(
    not _namespace_tmpfs_works(), reason="unshare -m / mount tmpfs not permitted"
)


def _on_tmpfs(mount: Path, size: str, script: str, keep: Path, *, read_only: bool = False):
    """Run shell `script` with a fresh tmpfs of `size` at `mount` (in a private mount namespace),
    seeded from `mount`'s own contents; its files are copied to `keep` afterwards."""
    seed = mount.with_name(mount.name + "-seed")
    shutil.copytree(mount, seed)
    remount = f"mount -o remount,ro {mount}" if read_only else "true"
    full = (
        f"mount -t tmpfs -o size={size} tmpfs {mount} && cp -a {seed}/. {mount}/ && {remount}"
        f" && {{ {script}; }}; rc=$?; cp -a {mount}/. {keep}/; exit $rc"
    )
    keep.mkdir()
    cmd = ["unshare", "-m", "sh", "-c", full]
    return subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


# In the kernel: a ballast file fills the disk, then the figure's write fails for real.
KERNEL_FILLS_DISK = """\
from pathlib import Path
from helpers.core import atomic
ballast = Path(run_dir) / "ballast.bin"
try:
    with open(ballast, "wb") as fh:
        while True:
            fh.write(bytes(4096))
            fh.flush()
except OSError:
    pass
atomic.atomic_write_bytes(Path(run_dir) / "figures" / "fig01.png", bytes(65536))
"""


@needs_tmpfs
def test_a_run_on_a_really_full_tmpfs(tmp_path):
    """The reviewer's example on a real 1 MB tmpfs: the kernel's figure and the executed notebook
    meet ENOSPC."""
    args, run_dir = _run_args(tmp_path, KERNEL_FILLS_DISK)
    command = " ".join([sys.executable, "-m", "helpers.run", *args])
    done = _on_tmpfs(run_dir, "1m", command, tmp_path / "after")
    after = tmp_path / "after"
    assert done.returncode == run.EXIT_FAILED, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert f"  WriteError: cannot write {run_dir / 'figures' / 'fig01.png'}: {NO_SPACE}" in lines
    assert f"cannot write {run_dir / 'executed' / '01_dummy.ipynb'}: {NO_SPACE}" in lines[-1]
    assert (after / "executed" / "01_dummy.ipynb").read_text() == OLD_EXECUTED
    # the unsaved partial notebook's page freed room for timings.csv: it is written, whole
    assert (after / "timings.csv").read_text().splitlines()[1].startswith("01_dummy,")
    assert not (after / "figures" / "fig01.png").exists()
    assert _leftovers(after) == []


# --- kind 4: helpers.study.generate into a read-only folder ----------------------------------------------


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """An untrained EndoVAE checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "polyps.pt"
    torch.manual_seed(0)
    save_checkpoint(path, EndoVAE(), epoch=1)
    return path


def test_generate_into_a_read_only_folder_is_one_line_exit_2(ckpt, tmp_path, monkeypatch, capsys):
    read_only = tmp_path / "ro"
    (read_only / "existing").mkdir(parents=True)
    real_mkdir, real_mkstemp = Path.mkdir, tempfile.mkstemp

    def mkdir(self: Path, *args, **kwargs):
        if read_only in self.parents and not self.exists():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name
        if dir is not None and read_only in (Path(dir), *Path(dir).parents):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    for out, named in (("DIR", "DIR"), ("existing", "existing/generate.json")):
        argv = ["--checkpoint", str(ckpt), "--n", "3", "--out", str(read_only / out), "--quiet"]
        with pytest.raises(SystemExit) as caught:
            generate.main(argv)
        assert caught.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"generate: error: cannot write {read_only / named}: {READ_ONLY}"]
    assert not (read_only / "DIR").exists() and list((read_only / "existing").iterdir()) == []


@needs_tmpfs
def test_generate_into_a_real_read_only_mount(ckpt, tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = " ".join(
        [sys.executable, "-m", "helpers.generate", "--checkpoint", str(ckpt), "--n", "3", "--out",
         str(mount / "DIR"), "--quiet"]
    )  # fmt: skip
    done = _on_tmpfs(mount, "1m", script, tmp_path / "after", read_only=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"generate: error: cannot write {mount / 'DIR'}: {READ_ONLY}"
    ]
    assert list((tmp_path / "after").iterdir()) == []


def test_generate_into_a_full_folder_keeps_whole_frames_only(ckpt, tmp_path, monkeypatch, capsys):
    """Frames written before the disk filled stay (with their manifest); no half PNG, no temp."""
    out = tmp_path / "frames"
    real_save = generate.Image.Image.save

    def save(self, fp, *args, **kwargs):
        if len(list(out.glob("*.png"))) >= 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(generate.Image.Image, "save", save)
    argv = ["--checkpoint", str(ckpt), "--n", "8", "--out", str(out), "--batch-size", "2"]
    with pytest.raises(SystemExit) as caught:
        generate.main([*argv, "--quiet"])
    assert caught.value.code == 2
    frame = out / generate.frame_name("polyps", 4)
    assert capsys.readouterr().err.strip().splitlines() == [
        f"generate: error: cannot write {frame}: {NO_SPACE}"
    ]
    manifest = pd.read_csv(out / generate.MANIFEST_NAME)
    assert list(manifest["file"]) == [generate.frame_name("polyps", i) for i in range(4)]
    assert _leftovers(out) == []
    assert json.loads((out / generate.STAMP_NAME).read_text())["class"] == "polyps"
