"""Atomic file writes: write to a temporary name in the same folder, fsync, then rename.

A crash (even SIGKILL) leaves either the old file or the new one, never a half-written file.
A write that fails (a full disk, a read-only file system, ...) removes its temporary file,
keeps the old file and raises `WriteError`: an OSError (errno kept) whose message is one line
naming the file, e.g. `cannot write runs/quick/timings.csv: no space left on device`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# errno values that mean "this file cannot be written here" (the disk, not the program).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EIO})
# numpy's tofile (np.save to a file) reports a short write without an errno: the disk is full.
SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


class WriteError(OSError):
    """A file could not be written; str() is one line: `cannot write PATH: <reason>`."""

    def __str__(self) -> str:
        """`cannot write PATH: no space left on device` (the reason in lower case)."""
        return f"cannot write {self.filename}: {self.strerror}"


def reason(code: int | None, fallback: str = "") -> str:
    """The C library's words for an errno in lower case, e.g. "no space left on device"."""
    text = os.strerror(code) if code else fallback or "write failed"
    return text[:1].lower() + text[1:]


def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    """`exc` as a WriteError naming `path` (a short write without errno counts as ENOSPC)."""
    if isinstance(exc, WriteError) and exc.filename == str(path):
        return exc
    code = exc.errno
    if code is None and SHORT_WRITE.search(str(exc)):
        code = errno.ENOSPC
    return WriteError(code, reason(code, exc.strerror or str(exc)), str(path))


def is_write_failure(exc: BaseException) -> bool:
    """True for OSErrors that say the disk refused the data (full, read-only, short write)."""
    if not isinstance(exc, OSError):
        return False
    if isinstance(exc, WriteError) or exc.errno in WRITE_ERRNOS:
        return True
    return exc.errno is None and bool(SHORT_WRITE.search(str(exc)))


def one_line(exc: BaseException) -> str:
    """An error as one line; an OSError names its file (`cannot write PATH: reason` when the
    disk refused the data)."""
    if isinstance(exc, WriteError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        if is_write_failure(exc):
            return str(write_error(exc.filename, exc))
        return f"{exc.filename}: {reason(exc.errno, exc.strerror or '')}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success (fsync and) rename it over `path`.

    On failure the temporary file is removed and `path` is left as it was; a disk error
    (while creating, writing, syncing or renaming) is raised as a WriteError naming `path`.
    `fsync=False` leaves flushing to the caller (e.g. one os.sync after many small files).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from exc
    tmp_path = Path(tmp)
    try:
        try:
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual permissions
            yield tmp_path
        except WriteError:
            raise  # names the file that failed
        except OSError as exc:
            if is_write_failure(exc):
                raise write_error(path, exc) from exc
            raise
        try:
            if fsync:
                with open(tmp_path, "rb") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise write_error(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    """The process umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save `obj` to `path` atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def atomic_write_csv(path: str | os.PathLike, frame: Any, **kwargs: Any) -> Path:
    """Write a pandas DataFrame to CSV atomically (index off unless given)."""
    kwargs.setdefault("index", False)
    return atomic_write_text(path, frame.to_csv(**kwargs))
