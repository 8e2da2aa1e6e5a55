"""One advisory file lock (fcntl.flock) for folders that one process at a time may change.

The lock file holds the holder's PID, command line and start time, so a second process can
say who is in the way. The kernel drops the lock when the holder dies (even by SIGKILL), so a
stale lock file never blocks anyone. Where fcntl is missing (Windows) the lock does nothing.

    with file_lock(run_dir / ".endovae.lock", timeout=0, what="run folder"):
        ...  # a second process raises LockBusy at once, naming the holder
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; file_lock is a no-op there
    fcntl = None

POLL_S = 0.1
LOCK_WAIT_S = 1800.0  # how long a second writer of a data folder waits for the first
COMMAND_CHARS = 300


class LockBusy(RuntimeError):
    """Another live process holds the lock (the message names it)."""


def _command() -> str:
    """This process's command line (from /proc where there is one), on one shortened line."""
    try:
        args = Path("/proc/self/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        args = [sys.executable, *sys.argv]
    args[0] = Path(args[0]).name
    return " ".join(" ".join(args).split())[:COMMAND_CHARS]


def lock_holder(path: str | os.PathLike) -> dict | None:
    """What the lock file at `path` says about its holder ({pid, command, since}), or None."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _busy_message(path: Path, what: str, waited: float | None) -> str:
    """One line naming the lock holder and what to do."""
    holder = lock_holder(path) or {}
    who = f"PID {holder['pid']}" if holder.get("pid") else "another process"
    if holder.get("command"):
        who += f" ({holder['command']})"
    since = f" since {holder['since']}" if holder.get("since") else ""
    waited_text = f" after waiting {waited:.1f} s" if waited else ""
    return (
        f"{what or path.parent} is in use by {who}{since} (lock file {path}){waited_text}; "
        f"wait for it to finish or stop that process"
    )


def _try_lock(path: Path) -> int | None:
    """Open and lock `path` without blocking; return the fd, or None when someone holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:  # the holder before us may have removed the file: then lock the new one instead
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return _try_lock(path)
    return fd


def _write_holder(fd: int) -> None:
    """Record this process (pid, command, start time) in the locked file."""
    info = {
        "pid": os.getpid(),
        "command": _command(),
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike, *, timeout: float | None = 0, what: str = ""
) -> Iterator[Path]:
    """Hold an exclusive lock on `path` for the block; wait up to `timeout` s (None = forever).

    Raises LockBusy (one line: holder PID, command, what to do) when the wait runs out.
    """
    path = Path(path)
    if fcntl is None:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    while (fd := _try_lock(path)) is None:
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise LockBusy(_busy_message(path, what, waited))
        time.sleep(POLL_S)
    try:
        with contextlib.suppress(OSError):  # who holds it is a courtesy (a full disk: unknown)
            _write_holder(fd)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before unlocking, so a waiter re-opens a fresh file
        os.close(fd)
