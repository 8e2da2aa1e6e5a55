"""Issue 10, data layer: orphaned pool workers, data-folder locks, invocation-relative paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from helpers.core import lock, paths
from helpers.core.classes import ALL_CLASSES, POLYP_CLASS
from helpers.data import extract, kvasir

DEADLINE_S = 10.0


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            state_ppid = _state_ppid(int(entry.name))
            if state_ppid and state_ppid[1] == pid and state_ppid[0] != "Z":
                found.append(int(entry.name))
    return found


def _state_ppid(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc/<pid>/stat, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    info = _state_ppid(pid)
    return info is not None and info[0] != "Z"


def _wait_for(predicate, timeout: float = DEADLINE_S, step: float = 0.05):
    """Poll `predicate` until it returns something truthy or `timeout` s pass; return it."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(step)


def _tiny_tree(base: Path, n: int = 6) -> Path:
    """base/<class>/<i>.png, 120x100 px each."""
    for name in ALL_CLASSES:
        (base / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (120, 100), (30 * i, 90, 80)).save(base / name / f"{i:02d}.png")
    return base


# --- 3. pool workers die with their parent ------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_data_trust_pool_workers_exit_when_parent_is_killed(tmp_path):
    src = _tiny_tree(tmp_path / "src")
    script = textwrap.dedent(
        f"""
        import time
        from helpers.data import preprocess as p
        from helpers.core.classes import ALL_CLASSES
        real = p._process_task
        def slow(task):
            time.sleep(0.5)
            return real(task)
        p._process_task = slow
        dirs = {{c: {str(src)!r} + "/" + c for c in ALL_CLASSES}}
        p.preprocess(dirs, {str(tmp_path / "out")!r}, workers=2, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        workers = _wait_for(lambda: len(_children(proc.pid)) >= 2 and _children(proc.pid))
        assert workers, "the preprocessing pool never started"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    started = time.monotonic()
    survivors = _wait_for(lambda: not any(_alive(w) for w in workers), timeout=5.0)
    for pid in workers:  # never leave them behind, even when the test fails
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert survivors, f"workers {workers} outlived their killed parent by 5 s"
    assert time.monotonic() - started < 5.0


# --- 4. figures open only what preprocessing accepted ----------------------------------------


def test_data_trust_figures_skip_an_unreadable_polyp_file(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.data import preprocess, preprocess_figures

    src = _tiny_tree(tmp_path / "src", n=2)
    bad = src / POLYP_CLASS / "01.png"  # second of two: the figure's linspace picks it
    bad.write_bytes(b"not an image at all")
    dirs = {name: src / name for name in ALL_CLASSES}
    report = preprocess.preprocess(dirs, tmp_path / "out", workers=1, progress=False)
    assert [Path(f).name for f, _ in report.skipped] == ["01.png"]
    real_open, opened = Image.open, []

    def spy(fp, *args, **kwargs):
        opened.append(Path(fp).resolve())
        return real_open(fp, *args, **kwargs)

    fig = preprocess_figures.plot_sources_vs_real(
        src / POLYP_CLASS, None, n=6, path=tmp_path / "f.png"
    )
    assert sum(bool(ax.images) for ax in fig.axes) == 1  # as notebook 01 calls it: no crash
    plt.close(fig)
    monkeypatch.setattr(preprocess_figures.Image, "open", spy)
    fig = preprocess_figures.plot_before_after(tmp_path / "out", path=tmp_path / "f1.png")
    plt.close(fig)
    out = tmp_path / "out"
    fig = preprocess_figures.plot_sources_vs_real(src / POLYP_CLASS, None, n=6, out_dir=out)
    assert sum(bool(ax.images) for ax in fig.axes) == 1
    plt.close(fig)
    assert bad.resolve() not in opened  # with out_dir: never opened what preprocessing refused


# --- 5. one process at a time in a data folder --------------------------------------------------


def _holder(script: str) -> subprocess.Popen:
    """Start `script` in a child Python; wait until it prints its first line."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_data_trust_lock_names_its_holder_and_dies_with_it(tmp_path):
    path = tmp_path / "run" / ".endovae.lock"
    script = (
        "import time\n"
        "from helpers.core.lock import file_lock\n"
        f"with file_lock({str(path)!r}):\n"
        "    print('ready', flush=True); time.sleep(30)\n"
    )
    proc = _holder(script)
    try:
        started = time.monotonic()
        with pytest.raises(
            lock.LockBusy, match=f"PID {proc.pid} \\(python.* -c import time"
        ) as err:
            with lock.file_lock(path, timeout=0.3, what="run folder x"):
                pass
        assert 0.3 <= time.monotonic() - started < 3
        assert "\n" not in str(err.value) and str(err.value).startswith("run folder x")
        assert lock.lock_holder(path)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)
    with lock.file_lock(path, timeout=0) as held:  # the kernel dropped the dead holder's lock
        assert lock.lock_holder(held)["pid"] == os.getpid()
    assert not path.exists()


def test_data_trust_second_extraction_waits_for_the_first(tmp_path):
    import zipfile

    archive = tmp_path / "k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ALL_CLASSES:
            for i in range(3):
                zf.writestr(f"kvasir-dataset/{name}/{i}.jpg", b"x" * 100)
    dest = tmp_path / "data" / "kvasir" / "k"
    script = (
        "import time\n"
        "from helpers.data import extract\n"
        "real = extract._extract_member\n"
        "def slow(zf, info, into):\n"
        "    if info.filename.endswith('polyps/0.jpg'):\n"
        "        print('ready', flush=True); time.sleep(1.5)\n"
        "    return real(zf, info, into)\n"
        "extract._extract_member = slow\n"
        f"extract.safe_extract({str(archive)!r}, {str(dest)!r}, progress=False)\n"
        "print('done', flush=True)\n"
    )
    proc = _holder(script)
    try:
        with pytest.raises(lock.LockBusy, match=f"extraction into .*PID {proc.pid}"):
            extract.safe_extract(archive, dest, progress=False, lock_timeout=0.2)
        assert extract.safe_extract(archive, dest, progress=False, lock_timeout=20) == dest
        assert proc.stdout.readline().strip() == "done"  # the first one was not disturbed
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert extract.extraction_complete(dest) and len(list((dest / "kvasir-dataset").iterdir())) == 4


# --- 6. relative paths mean the user's folder -------------------------------------------------


def test_data_trust_relative_paths_resolve_against_the_invocation_dir(tmp_path, monkeypatch):
    user, kernel = tmp_path / "user", tmp_path / "notebooks"
    user.mkdir()
    kernel.mkdir()
    monkeypatch.chdir(kernel)  # papermill runs kernels in notebooks/
    monkeypatch.setenv("ENDOVAE_INVOCATION_DIR", str(user))
    monkeypatch.setenv("ENDOVAE_DATA_DIR", "my-data")
    monkeypatch.setenv("ENDOVAE_RUN_DIR", "runs/mine")
    assert paths.data_root() == user / "my-data"
    assert paths.RunPaths.from_param("").root == user / "runs" / "mine"
    assert paths.RunPaths.from_param("elsewhere").root == user / "elsewhere"
    _tiny_tree(user / "frames", n=1)
    source = kvasir.resolve_dataset("frames", progress=False)
    assert source.class_dirs[POLYP_CLASS] == user / "frames" / POLYP_CLASS
    monkeypatch.delenv("ENDOVAE_INVOCATION_DIR")
    assert paths.data_root() == kernel / "my-data"  # no runner: the current folder
    monkeypatch.setenv("ENDOVAE_INVOCATION_DIR", "relative/again")
    with pytest.raises(ValueError, match="ENDOVAE_INVOCATION_DIR"):
        paths.data_root()


def test_data_trust_embedded_set_is_written_by_one_process_at_a_time(tmp_path):
    from helpers.data import synthetic

    out = tmp_path / "kvasir-like" / "n1-seed0"
    with lock.file_lock(out.parent / f".{out.name}.lock", what="test holder"):
        with pytest.raises(lock.LockBusy, match=f"generation of .*PID {os.getpid()}"):
            synthetic.generate_dataset(out, n_per_class=1, progress=False, lock_timeout=0.1)
    assert not out.exists()  # nothing written while someone else held the tree
