"""Safe zip extraction: members checked before anything is written, a temp folder renamed
into place, a marker (archive name, sha256, counts) written last, one process at a time.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from tqdm.auto import tqdm

from helpers.core.atomic import WriteError, atomic_write_text, is_write_failure, write_error
from helpers.core.lock import LOCK_WAIT_S, file_lock

EXTRACT_MARKER = ".extraction-complete.json"
CHUNK_BYTES = 1 << 20


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is unsafe to extract (None when it is fine)."""
    name = info.filename
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in parts:
        return "path with '..'"
    if "\x00" in name:
        return "NUL byte in name"
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:
        if stat.S_ISLNK(mode):
            return "symbolic link"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            return "device/special file"
    return None


def check_zip_members(zf: zipfile.ZipFile, zip_path: Path) -> list[zipfile.ZipInfo]:
    """Return the members of `zf`, refusing (ValueError) any unsafe one before anything is written."""
    members = zf.infolist()
    for info in members:
        problem = _member_problem(info)
        if problem:
            raise ValueError(f"{zip_path}: refusing unsafe member {info.filename!r} ({problem})")
    return members


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, into: Path) -> int:
    """Write one (already checked) member under `into`; return its size in bytes."""
    target = (into / info.filename).resolve()
    if not target.is_relative_to(into.resolve()):
        raise ValueError(f"refusing member {info.filename!r}: it resolves outside {into}")
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK_BYTES)
    return info.file_size


def _remove_stale_partials(dest: Path) -> None:
    """Delete temp folders left beside `dest` by an extraction that was killed."""
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _check_free_space(members: list[zipfile.ZipInfo], dest: Path) -> None:
    """Raise WriteError (ENOSPC, naming `dest`) when its disk cannot take the unpacked archive."""
    needed = sum(info.file_size for info in members)
    free = shutil.disk_usage(dest.parent).free
    if needed > free:
        words = f"no space left on device (need {needed / 1e9:.2f} GB, free {free / 1e9:.2f} GB)"
        raise WriteError(errno.ENOSPC, words, str(dest))


def _unpack(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], tmp: Path, dest: Path, bar
) -> None:
    """Extract every member into `tmp`; a disk error is a WriteError naming the member under `dest`."""
    for info in members:
        try:
            bar.update(_extract_member(zf, info, tmp))
        except OSError as exc:
            if is_write_failure(exc):
                raise write_error(dest / info.filename, exc) from exc
            raise


def _rename_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished temp folder to `dest` (a disk error names `dest`)."""
    try:
        if dest.is_dir():
            dest.rmdir()
        os.rename(tmp, dest)
    except OSError as exc:
        raise write_error(dest, exc) from exc


def extraction_complete(dest: str | os.PathLike) -> bool:
    """True when `dest` holds a finished safe_extract (its marker file exists)."""
    return (Path(dest) / EXTRACT_MARKER).is_file()


def extraction_stamp(dest: str | os.PathLike) -> dict:
    """The marker of a finished extraction in `dest` (archive name, sha256, ...); {} if none."""
    try:
        data = json.loads((Path(dest) / EXTRACT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_stamp(dest: Path, sha256: str | None) -> Path:
    """Return `dest` when its extraction came from an archive with `sha256` (if given)."""
    found = extraction_stamp(dest).get("sha256")
    if sha256 and found != sha256:
        raise FileExistsError(
            f"{dest} holds an extraction of another archive (sha256 {found or 'not recorded'}, "
            f"expected {sha256}); move it away first"
        )
    return dest


def _require_empty(dest: Path) -> None:
    """Refuse to extract over a file or a non-empty folder that is no finished extraction."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(
            f"{dest} exists but holds no completed extraction; move it away first"
        )


def _open_zip(zip_path: Path) -> zipfile.ZipFile:
    """Open a zip archive; a missing or broken file is one clear error naming it."""
    if not zip_path.is_file():
        raise FileNotFoundError(f"zip archive not found: {zip_path}")
    try:
        return zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{zip_path} is not a valid zip archive ({err})") from err


def safe_extract(
    zip_path: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    progress: bool = True,
    sha256: str | None = None,
    lock_timeout: float | None = LOCK_WAIT_S,
) -> Path:
    """Unpack `zip_path` into `dest` via a temp folder renamed into place; skip if already done.

    One process at a time extracts into `dest` (a lock beside it; a second one waits up to
    `lock_timeout` s). `sha256`, when given, is the archive's digest: recorded in the marker,
    and an existing extraction must carry it.
    """
    zip_path, dest = Path(zip_path).expanduser(), Path(dest).expanduser()
    if extraction_complete(dest):
        return _check_stamp(dest, sha256)
    _require_empty(dest)
    with _open_zip(zip_path) as zf:  # refuse a bad archive before anything is written
        check_zip_members(zf, zip_path)
    lock = dest.parent / f".{dest.name}.lock"
    with file_lock(lock, timeout=lock_timeout, what=f"extraction into {dest}"):
        if extraction_complete(dest):  # another process finished it while we waited
            return _check_stamp(dest, sha256)
        return _extract_locked(zip_path, dest, progress, sha256)


def _extract_locked(zip_path: Path, dest: Path, progress: bool, sha256: str | None) -> Path:
    """safe_extract's work, run while holding the folder's lock."""
    _require_empty(dest)
    with _open_zip(zip_path) as zf:
        members = check_zip_members(zf, zip_path)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_partials(dest)
            _check_free_space(members, dest)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        except WriteError:
            raise
        except OSError as exc:  # a read-only folder, say: one line naming the destination
            raise write_error(dest, exc) from exc
        try:
            total = sum(info.file_size for info in members)
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"extract {zip_path.name}",
                disable=not progress,
            ) as bar:
                _unpack(zf, members, tmp, dest, bar)
            stamp = {
                "archive": zip_path.name,
                "archive_size": zip_path.stat().st_size,
                "sha256": sha256,
                "members": len(members),
                "bytes": total,
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            atomic_write_text(tmp / EXTRACT_MARKER, json.dumps(stamp, indent=2) + "\n")
            _rename_into_place(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest
