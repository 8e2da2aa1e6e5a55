"""Kvasir data: class names, v1/v2 folder discovery, download and safe extraction.

Kvasir v1 (`kvasir-dataset.zip`, 8 classes x 500 frames) and v2 (`kvasir-dataset-v2.zip`,
8 x 1000) unpack to `kvasir-dataset[-v2]/<class>/*.jpg`. We use the three normal classes as
the healthy set and `polyps` as the test set. No official checksum is published, so the first
complete download is pinned in a lock file (JSON) and every later use is checked against it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from helpers import paths
from helpers.atomic import atomic_write_text
from helpers.lock import file_lock

HEALTHY_CLASSES = ("normal-cecum", "normal-pylorus", "normal-z-line")
POLYP_CLASS = "polyps"
ALL_CLASSES = (*HEALTHY_CLASSES, POLYP_CLASS)

KVASIR_URLS = {
    "v1": "https://datasets.simula.no/downloads/kvasir/kvasir-dataset.zip",
    "v2": "https://datasets.simula.no/downloads/kvasir/kvasir-dataset-v2.zip",
}
VERSION_FOLDERS = {"kvasir-dataset": "v1", "kvasir-dataset-v2": "v2"}
VERSION_COUNTS = {500: "v1", 1000: "v2"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
EXTRACT_MARKER = ".extraction-complete.json"
SYNTHETIC_STAMP = "SYNTHETIC.json"
# data_dir values that name a data source instead of a path; "synthetic" / "embedded" are the
# runner's words for "" (the embedded Kvasir-like set).
DATA_KEYWORDS = ("", "download", "download:v1", "download:v2")
DATA_ALIASES = {"synthetic": "", "embedded": ""}
SOURCE_RECORD = "source.json"  # what notebook 01 checked about its data, in data/processed/
USER_AGENT = "endovae-bundle/0.1 (+urllib)"
CHUNK_BYTES = 1 << 20
RETRY_DELAY_S = 2.0
LOCK_WAIT_S = 1800.0  # how long a second extraction into the same folder waits for the first
DIGEST_CHARS = 16  # hex digits of the archive's sha256 in its extraction folder's name
PART_META = ".meta.json"  # beside <file>.part: URL and validator (ETag/Last-Modified) of the part
SOURCE_KINDS = ("synthetic", "kvasir-v1", "kvasir-v2", "folder")
_SKIP_DIRS = ("__MACOSX",)


# --- discovery -------------------------------------------------------------------------------


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in `folder` (sorted; jpg/jpeg/png/bmp/tif, any case; no hidden)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of `folder`, sorted by name (macOS resource folders skipped)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in _SKIP_DIRS
    )


def _candidate_roots(root: Path) -> list[Path]:
    """Folders that may hold the class folders: root, its Kvasir folders, one level of nesting."""
    named = [root / name for name in VERSION_FOLDERS if (root / name).is_dir()]
    others = [p for p in _subdirs(root) if p not in named]
    nested = [p / name for p in others for name in VERSION_FOLDERS if (p / name).is_dir()]
    return [root, *named, *others, *nested]


def find_class_dirs(root: str | os.PathLike) -> dict[str, Path]:
    """Locate the folders of ALL_CLASSES under `root` (plain, kvasir-dataset[-v2]/ or nested)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Kvasir folder not found: {root}")
    scored = [(sum((c / name).is_dir() for name in ALL_CLASSES), c) for c in _candidate_roots(root)]
    best_score = max(score for score, _ in scored)
    if best_score == 0:
        raise FileNotFoundError(
            f"no Kvasir class folders under {root}: expected {root / ALL_CLASSES[0]} "
            f"(or inside kvasir-dataset/ or kvasir-dataset-v2/); classes needed: "
            f"{', '.join(ALL_CLASSES)}"
        )
    base = next(c for score, c in scored if score == best_score)
    class_dirs = {name: base / name for name in ALL_CLASSES}
    for folder in class_dirs.values():
        if not folder.is_dir():
            raise FileNotFoundError(f"Kvasir class folder missing: expected {folder}")
        if not list_images(folder):
            raise ValueError(
                f"Kvasir class folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
    return class_dirs


def detect_version(class_dirs: dict[str, Path]) -> str:
    """Say "v1", "v2" or "folder" from the parent folder's name, else the per-class counts."""
    parents = {Path(p).parent for p in class_dirs.values()}
    if len(parents) != 1:
        return "folder"
    parent = parents.pop()
    if (parent / SYNTHETIC_STAMP).is_file():
        return "folder"
    if parent.name in VERSION_FOLDERS:
        return VERSION_FOLDERS[parent.name]
    counts = {len(list_images(p)) for p in class_dirs.values()}
    if len(counts) == 1 and set(class_dirs) >= set(ALL_CLASSES):
        return VERSION_COUNTS.get(counts.pop(), "folder")
    return "folder"


# --- safe extraction -------------------------------------------------------------------------


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
    """Raise OSError when the disk holding `dest` cannot take the unpacked archive."""
    needed = sum(info.file_size for info in members)
    free = shutil.disk_usage(dest.parent).free
    if needed > free:
        raise OSError(
            f"not enough disk space for {dest}: need {needed / 1e9:.2f} GB, free {free / 1e9:.2f} GB"
        )


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
    from tqdm.auto import tqdm

    _require_empty(dest)
    with _open_zip(zip_path) as zf:
        members = check_zip_members(zf, zip_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(dest)
        _check_free_space(members, dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        try:
            total = sum(info.file_size for info in members)
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"extract {zip_path.name}",
                disable=not progress,
            ) as bar:
                for info in members:
                    bar.update(_extract_member(zf, info, tmp))
            stamp = {
                "archive": zip_path.name,
                "archive_size": zip_path.stat().st_size,
                "sha256": sha256,
                "members": len(members),
                "bytes": total,
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            atomic_write_text(tmp / EXTRACT_MARKER, json.dumps(stamp, indent=2) + "\n")
            if dest.is_dir():
                dest.rmdir()
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


# --- download with resume and checksum lock --------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_lock_file() -> Path:
    """Where the sha256 of first downloads is pinned: data_root()/kvasir.lock.json."""
    return paths.data_root() / "kvasir.lock.json"


def _read_lock(lock_file: Path) -> dict:
    """The lock file's content ({"downloads": {url: entry}}), empty when absent."""
    if not lock_file.is_file():
        return {"downloads": {}}
    try:
        data = json.loads(lock_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"lock file {lock_file} is not valid JSON ({err}); fix or delete it"
        ) from err
    if not isinstance(data, dict) or not isinstance(data.get("downloads"), dict):
        raise ValueError(f"lock file {lock_file} lacks a 'downloads' mapping; fix or delete it")
    return data


def _lock_entry(lock_file: Path, key: str) -> dict:
    """The lock file's entry for `key` ({} when none)."""
    entry = _read_lock(lock_file)["downloads"].get(key, {})
    return entry if isinstance(entry, dict) else {}


def _record_lock(lock_file: Path, key: str, url: str, file: Path, name: str, digest: str) -> None:
    """Pin key -> {url, file name, sha256, size, date} in the lock file (atomic write)."""
    data = _read_lock(lock_file)
    data["downloads"][key] = {
        "url": url,
        "file": name,
        "sha256": digest,
        "size": file.stat().st_size,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(lock_file, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _reject(file: Path, dest: Path, digest: str, expected: str, source: str, advice: str) -> None:
    """Move a file with the wrong checksum aside (never left as dest) and raise ValueError."""
    aside = dest.with_name(dest.name + ".rejected")
    os.replace(file, aside)
    _part_meta(file).unlink(missing_ok=True)
    raise ValueError(
        f"sha256 mismatch for {dest}: got {digest}, expected {expected} ({source}); "
        f"the file was moved to {aside}; {advice}"
    )


def _validate_sha256(sha256: str | None, name: str = "sha256") -> str | None:
    """Normalise a hex SHA-256 ('' or None = not given); bad value -> ValueError naming it."""
    if not sha256:
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{name}={sha256!r}: expected 64 hexadecimal characters")
    return value


def _validate_url(url: str, name: str = "url") -> str:
    """An http(s) URL, else ValueError naming the parameter."""
    if not isinstance(url, str) or not url.strip().startswith(("http://", "https://")):
        raise ValueError(f"{name}={url!r}: expected an http(s) URL")
    return url.strip()


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(start, total) from a Content-Range header ('bytes S-E/T' or 'bytes */T')."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header or "")
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _part_meta(part: Path) -> Path:
    """The file beside a .part that records its URL and the server's validator."""
    return part.with_name(part.name + PART_META)


def _read_part_meta(part: Path) -> dict:
    """{url, validator, total} of the response that started `part` ({} when unknown)."""
    try:
        data = json.loads(_part_meta(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _discard_part(part: Path) -> None:
    """Delete a part file and its metadata."""
    part.unlink(missing_ok=True)
    _part_meta(part).unlink(missing_ok=True)


def _validator(headers) -> str | None:
    """What If-Range can send back: a strong ETag, else Last-Modified (None when neither)."""
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        return etag
    return (headers.get("Last-Modified") or "").strip() or None


def _open(url: str, start: int, timeout: float, validator: str | None):
    """Open `url` (bytes from `start` when > 0, If-Range `validator`); return (resp | None, status)."""
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
        if validator:
            headers["If-Range"] = validator
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            _, total = _content_range(err.headers.get("Content-Range"))
            err.close()
            return None, (416, total)
        raise
    return resp, (resp.status, None)


def _fetch_once(
    url: str, part: Path, timeout: float, progress: bool, size_hint: int | None
) -> int | None:
    """One GET into `part` (resumed with Range + If-Range); return the file's full size if known.

    A 200 answer (server ignored Range, or its file changed since the part began) restarts
    from zero. The size comes from Content-Length / Content-Range, else `size_hint` (the lock).
    """
    from tqdm.auto import tqdm

    meta = _read_part_meta(part)
    start = part.stat().st_size if part.exists() else 0
    validator = meta.get("validator") if meta.get("url") == url else None
    resp, (status, total416) = _open(url, start, timeout, validator)
    if resp is None:  # 416: the part is already complete, or the server's file changed
        if total416 == start:
            return total416
        _discard_part(part)
        return _fetch_once(url, part, timeout, progress, size_hint)
    with resp:
        length = resp.headers.get("Content-Length")
        if status == 206:
            first, total = _content_range(resp.headers.get("Content-Range"))
            if first != start:  # a resume we cannot trust: start over on the next attempt
                _discard_part(part)
                raise ConnectionError(f"{url}: server resumed at byte {first}, asked for {start}")
            total = total or meta.get("total") or size_hint
        else:  # 200 (Range ignored, not asked, or If-Range says the file changed): start over
            start, total = 0, (int(length) if length else None)
            meta = {"url": url, "validator": _validator(resp.headers), "total": total}
            atomic_write_text(_part_meta(part), json.dumps(meta) + "\n")
            total = total or size_hint
        with (
            open(part, "ab" if start else "wb") as fh,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=f"download {part.stem}",
                disable=not progress,
            ) as bar,
        ):
            for chunk in iter(lambda: resp.read(CHUNK_BYTES), b""):
                fh.write(chunk)
                bar.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            _discard_part(part)
        raise ConnectionError(f"{url}: got {size} of {total} bytes")
    return total


_TRANSIENT = (ConnectionError, TimeoutError, http.client.HTTPException, urllib.error.URLError)


def _fetch(
    url: str, part: Path, timeout: float, progress: bool, retries: int, size_hint: int | None
) -> int | None:
    """Fetch into `part`, resuming after transient network errors; return the size if known."""
    for attempt in range(retries + 1):
        try:
            return _fetch_once(url, part, timeout, progress, size_hint)
        except urllib.error.HTTPError as err:
            raise OSError(f"download of {url} failed: HTTP {err.code} {err.reason}") from err
        except _TRANSIENT as err:
            if attempt == retries:
                have = part.stat().st_size if part.exists() else 0
                raise ConnectionError(
                    f"download of {url} failed after {retries + 1} attempts ({err}); "
                    f"{have} bytes kept in {part}, rerun to resume"
                ) from err
            time.sleep(RETRY_DELAY_S * (attempt + 1))
    return None


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    lock_file: str | os.PathLike | None = None,
    progress: bool = True,
    timeout: float = 60,
    *,
    retries: int = 3,
    lock_key: str | None = None,
    lock_timeout: float | None = LOCK_WAIT_S,
) -> Path:
    """Download `url` to `dest` (resumable .part), verified against `sha256` or the lock file.

    `lock_key` (default: `url`) names the lock entry, so a mirror can be checked against the
    digest pinned for the official address.
    """
    return fetch_verified(
        url,
        dest,
        sha256,
        lock_file,
        progress,
        timeout,
        retries=retries,
        lock_key=lock_key,
        lock_timeout=lock_timeout,
    )[0]


@dataclass(frozen=True)
class _Check:
    """What a downloaded file is verified against: digest, where it comes from, what to do."""

    want: str | None
    source: str
    advice: str
    size: int | None
    label: str


def _check_for(expected: str | None, lock_file: Path, key: str) -> _Check:
    """The digest to check against: the given sha256, else the lock's pin, else none."""
    if expected:
        advice = "check the sha256 you gave (kvasir_sha256) or delete the moved file and rerun"
        return _Check(expected, "given sha256", advice, None, "matches the given sha256")
    entry = _lock_entry(lock_file, key)
    advice = (
        f"if the server's file really changed, remove the entry {key!r} from {lock_file} "
        f"(or pass its new sha256) and rerun; otherwise delete the moved file and rerun"
    )
    label = f"matches the lock file {lock_file.name} (pinned {entry.get('date', '?')})"
    size = entry.get("size") if isinstance(entry.get("size"), int) else None
    return _Check(entry.get("sha256"), f"lock file {lock_file}", advice, size, label)


def _unpinned(url: str, part: Path, lock_file: Path) -> ValueError:
    """The error for a download whose completeness nothing can confirm."""
    size = part.stat().st_size
    return ValueError(
        f"download of {url}: the server sent no file size (Content-Length), so the {size} bytes "
        f"received may be a truncated file; NOT pinned in {lock_file}. Kept in {part} (sha256 "
        f"{sha256_file(part)}); if you know that is the complete file pass it as sha256 "
        f"(notebooks: kvasir_sha256), else use a server or mirror that sends the size"
    )


def fetch_verified(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    lock_file: str | os.PathLike | None = None,
    progress: bool = True,
    timeout: float = 60,
    *,
    retries: int = 3,
    lock_key: str | None = None,
    lock_timeout: float | None = LOCK_WAIT_S,
) -> tuple[Path, str, str]:
    """download(), returning (path, sha256 of the file, how it was verified).

    One process at a time works on `dest` (a second one waits up to `lock_timeout` s).
    """
    url = _validate_url(url)
    expected = _validate_sha256(sha256)
    dest = Path(dest).expanduser()
    lock_file = Path(lock_file) if lock_file else default_lock_file()
    with file_lock(
        dest.parent / f".{dest.name}.lock", timeout=lock_timeout, what=f"download of {dest}"
    ):
        check = _check_for(expected, lock_file, lock_key or url)
        return _fetch_locked(
            url, dest, lock_key or url, check, lock_file, progress, timeout, retries
        )


def _fetch_locked(
    url: str,
    dest: Path,
    key: str,
    check: _Check,
    lock_file: Path,
    progress: bool,
    timeout: float,
    retries: int,
) -> tuple[Path, str, str]:
    """fetch_verified's work, run while holding the lock on `dest`."""
    if dest.is_file():
        return _verify_or_pin(dest, dest, key, url, check, lock_file)
    part = dest.with_suffix(dest.suffix + ".part")
    if not _part_is_wanted(part, check):
        meta = _read_part_meta(part)
        if check.want is None and not (meta.get("url") == url and meta.get("validator")):
            _discard_part(part)  # nothing could tell a mixed or foreign part: start over
        total = _fetch(url, part, timeout, progress, retries, check.size)
        if check.want is None and total is None:
            raise _unpinned(url, part, lock_file)
    result = _verify_or_pin(part, dest, key, url, check, lock_file)
    os.replace(part, dest)
    _part_meta(part).unlink(missing_ok=True)
    return result


def _part_is_wanted(part: Path, check: _Check) -> bool:
    """True when a part file already is the wanted file (so no request is needed)."""
    if check.want is None or not part.is_file():
        return False
    if check.size is not None and part.stat().st_size != check.size:
        return False
    return sha256_file(part) == check.want


def _verify_or_pin(
    file: Path, dest: Path, key: str, url: str, check: _Check, lock_file: Path
) -> tuple[Path, str, str]:
    """Check `file` against the wanted digest; with none, pin it. Return (dest, digest, label)."""
    digest = sha256_file(file)
    if check.want and digest != check.want:
        _reject(file, dest, digest, check.want, check.source, check.advice)
    if check.want is None:
        _record_lock(lock_file, key, url, file, dest.name, digest)
        return dest, digest, f"pinned now in {lock_file.name} (first use)"
    return dest, digest, check.label


# --- one entry point for the notebooks -------------------------------------------------------


@dataclass
class DatasetSource:
    """Where the raw frames come from, how many there are per class, and what was checked.

    `fingerprint` is the archive's sha256 (zip, download) or a content digest of the class
    folders (folder, embedded set); `check` says how the data was verified.
    """

    kind: str
    class_dirs: dict[str, Path]
    root: Path
    description: str
    counts: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    check: str = ""

    def record(self) -> dict[str, Any]:
        """What the report says about the data: kind, description, digest and how it was checked."""
        from helpers.synthetic import GENERATOR_VERSION

        record = {"kind": self.kind, "description": self.description, "counts": self.counts,
                  "fingerprint": self.fingerprint, "check": self.check}  # fmt: skip
        if self.kind == "synthetic":
            record["generator_version"] = GENERATOR_VERSION
        return record

    @property
    def n_healthy(self) -> int:
        """Number of raw healthy frames (the three normal classes)."""
        return sum(self.counts.get(name, 0) for name in HEALTHY_CLASSES)

    @property
    def n_polyps(self) -> int:
        """Number of raw polyp frames."""
        return self.counts.get(POLYP_CLASS, 0)


def _counts(class_dirs: dict[str, Path]) -> dict[str, int]:
    """Image count per class folder."""
    return {name: len(list_images(folder)) for name, folder in class_dirs.items()}


def _describe_counts(counts: dict[str, int]) -> str:
    """'1500 healthy (normal-cecum 500, ...), 500 polyps'."""
    healthy = ", ".join(f"{name} {counts[name]}" for name in HEALTHY_CLASSES)
    n_healthy = sum(counts[name] for name in HEALTHY_CLASSES)
    return f"{n_healthy} healthy ({healthy}), {counts[POLYP_CLASS]} polyps"


def fingerprint_folder(class_dirs: dict[str, str | os.PathLike]) -> str:
    """Content digest (sha256) of the image files of each class folder: names, sizes, bytes."""
    digest = hashlib.sha256()
    for name in sorted(class_dirs):
        for path in list_images(class_dirs[name]):
            size = path.stat().st_size
            digest.update(f"{name}/{path.name}\0{size}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _source_from_folder(
    root: Path, kind: str | None = None, fingerprint: str | None = None
) -> DatasetSource:
    """Discover the classes under `root` and describe them (content fingerprint unless given)."""
    class_dirs = find_class_dirs(root)
    version = detect_version(class_dirs)
    counts = _counts(class_dirs)
    base = next(iter(class_dirs.values())).parent
    kind = kind or (f"kvasir-{version}" if version in ("v1", "v2") else "folder")
    if kind == "folder" and (base / SYNTHETIC_STAMP).is_file():
        kind = "synthetic"
    label = {"kvasir-v1": "Kvasir v1", "kvasir-v2": "Kvasir v2", "synthetic": "Kvasir-like data"}
    text = f"{label.get(kind, 'image folder')} from {base.name}/: {_describe_counts(counts)}"
    if fingerprint is None:
        fingerprint = fingerprint_folder(class_dirs)
        check = f"not verified (a folder; content fingerprint {fingerprint[:DIGEST_CHARS]})"
        text += f"; content fingerprint {fingerprint[:DIGEST_CHARS]}"
    else:
        check = ""
    return DatasetSource(kind, class_dirs, root, text, counts, fingerprint, check)


def _synthetic_source(n_per_class: int, seed: int, progress: bool) -> DatasetSource:
    """The embedded Kvasir-like set (generated on first use)."""
    from helpers.synthetic import ensure_synthetic

    root = Path(ensure_synthetic(n_per_class, seed, progress))
    source = _source_from_folder(root, kind="synthetic")
    source.description = (
        f"embedded Kvasir-like data (procedural, {n_per_class} per class, seed {seed})"
    )
    source.check = f"generated here (content fingerprint {source.fingerprint[:DIGEST_CHARS]})"
    return source


def extraction_dir(archive_name: str, digest: str) -> Path:
    """Where an archive is unpacked: data_root()/kvasir/<stem>-<first 16 hex of its sha256>."""
    return paths.data_root() / "kvasir" / f"{Path(archive_name).stem}-{digest[:DIGEST_CHARS]}"


def _tree_source(tree: Path, digest: str, check: str, kind: str | None) -> DatasetSource:
    """Describe an extracted archive: classes, counts, the archive's digest and its check."""
    source = _source_from_folder(tree, kind=kind, fingerprint=digest)
    source.check = check
    source.description += f"; archive sha256 {digest[:DIGEST_CHARS]} ({check})"
    return source


def _archive_source(
    zip_path: Path,
    digest: str,
    check: str,
    kind: str | None,
    progress: bool,
    lock_timeout: float | None,
) -> DatasetSource:
    """Extract a verified archive into the folder keyed by its digest and describe it."""
    tree = safe_extract(
        zip_path,
        extraction_dir(zip_path.name, digest),
        progress=progress,
        sha256=digest,
        lock_timeout=lock_timeout,
    )
    return _tree_source(tree, digest, check, kind)


def _kept_extraction(name: str, check: _Check, kind: str) -> DatasetSource | None:
    """The finished extraction of the given or pinned archive, when its zip is gone."""
    if check.want is None:
        return None
    tree = extraction_dir(name, check.want)
    if not extraction_complete(tree) or extraction_stamp(tree).get("sha256") != check.want:
        return None
    return _tree_source(tree, check.want, f"{check.label}; zip deleted, extraction kept", kind)


def _download_source(
    version: str, sha256: str | None, url: str, progress: bool, lock_timeout: float | None
) -> DatasetSource:
    """Download (or reuse) the Kvasir zip from `url`, verify it, extract it, discover the classes.

    The lock entry is the official address's, so a mirror is held to the same digest.
    """
    official = KVASIR_URLS[version]
    name = official.rsplit("/", 1)[-1]
    zip_path = paths.data_root() / "downloads" / name
    kind = f"kvasir-{version}"
    if not zip_path.is_file():
        kept = _kept_extraction(name, _check_for(sha256, default_lock_file(), official), kind)
        if kept is not None:
            return kept
    path, digest, check = fetch_verified(
        url or official,
        zip_path,
        sha256,
        progress=progress,
        lock_key=official,
        lock_timeout=lock_timeout,
    )
    if url and url != official:
        check += f"; downloaded from the mirror {url}"
    return _archive_source(path, digest, check, kind, progress, lock_timeout)


def _zip_source(
    zip_path: Path, sha256: str | None, progress: bool, lock_timeout: float | None
) -> DatasetSource:
    """Extract a local Kvasir zip (checked against `sha256` when given) and discover it."""
    digest = sha256_file(zip_path)
    if sha256 and digest != sha256:
        raise ValueError(
            f"sha256 mismatch for {zip_path}: got {digest}, expected {sha256} (kvasir_sha256); "
            f"pass the archive's real digest, or '' to use it unchecked"
        )
    check = "matches the given sha256" if sha256 else "not verified (no sha256 given)"
    return _archive_source(zip_path, digest, check, None, progress, lock_timeout)


def resolve_dataset(
    data_dir: str = "",
    *,
    n_per_class: int = 60,
    seed: int = 0,
    sha256: str = "",
    url: str = "",
    progress: bool = True,
    lock_timeout: float | None = LOCK_WAIT_S,
) -> DatasetSource:
    """Turn the notebooks' `data_dir` ("" | "download[:v1|:v2]" | folder | .zip) into frames.

    `sha256` (notebooks: kvasir_sha256) is always checked against the zip; `url` (kvasir_url)
    is a mirror for "download" ("" = the official address), verified like the official one.
    Relative paths resolve against the folder the user ran the command from.
    """
    spec = str(data_dir or "").strip()
    expected = _validate_sha256(sha256)
    mirror = _validate_url(url) if url else ""
    is_download = spec.lower() in DATA_KEYWORDS[1:]
    if mirror and not is_download:
        raise ValueError(f"url={url!r}: a mirror is only used with data_dir='download'")
    if expected and (not spec or Path(spec).suffix.lower() != ".zip") and not is_download:
        raise ValueError(
            f"sha256={sha256!r}: only a .zip or a download can be checked, not "
            f"data_dir={data_dir!r}; give '' or point data_dir at the .zip"
        )
    if not spec:
        if not isinstance(n_per_class, int) or n_per_class < 1:
            raise ValueError(f"n_per_class={n_per_class!r}: expected a positive integer")
        return _synthetic_source(n_per_class, seed, progress)
    if is_download:
        version = spec.lower().partition(":")[2] or "v1"
        return _download_source(version, expected, mirror, progress, lock_timeout)
    path = paths.resolve_user_path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"data_dir={data_dir!r}: {path} does not exist (expected '' for the embedded data, "
            f"'download', 'download:v2', a Kvasir folder or a .zip of one)"
        )
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise ValueError(f"data_dir={data_dir!r}: {path} is a file but not a .zip archive")
        return _zip_source(path, expected, progress, lock_timeout)
    return _source_from_folder(path)


def write_source_record(source: DatasetSource, processed: str | os.PathLike) -> Path:
    """Record what was checked about the data (`DatasetSource.record`) beside the processed set."""
    path = Path(processed) / SOURCE_RECORD
    return atomic_write_text(path, json.dumps(source.record(), indent=1))


def read_source_record(processed: str | os.PathLike) -> dict | None:
    """The record `write_source_record` left in `processed` (None when missing or unreadable)."""
    try:
        record = json.loads((Path(processed) / SOURCE_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "kind" in record else None
