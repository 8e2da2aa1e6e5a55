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

from helpers.kvasir import ALL_CLASSES

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
    """base/<class>/<i>.png, 40x32 px each."""
    for name in ALL_CLASSES:
        (base / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 32), (30 * i, 90, 80)).save(base / name / f"{i:02d}.png")
    return base


# --- 3. pool workers die with their parent ------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_data_trust_pool_workers_exit_when_parent_is_killed(tmp_path):
    src = _tiny_tree(tmp_path / "src")
    script = textwrap.dedent(
        f"""
        import time
        from helpers import preprocess as p
        real = p._process_task
        def slow(task):
            time.sleep(0.5)
            return real(task)
        p._process_task = slow
        dirs = {{c: {str(src)!r} + "/" + c for c in p.ALL_CLASSES}}
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
