"""HTTP download with resume (Range + If-Range) and a sha256 pin.

No official checksum of the Kvasir archives is published, so the first complete download is
pinned in a lock file (JSON) and every later use is checked against it (or against a given
sha256). A part file remembers its URL and the server's validator, so a resume never mixes
two versions of a file.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm.auto import tqdm

from helpers.core import paths
from helpers.core.atomic import atomic_write_text, is_write_failure, write_error
from helpers.core.fingerprint import file_digest
from helpers.core.lock import LOCK_WAIT_S, file_lock

USER_AGENT = "endovae-bundle/0.1 (+urllib)"
CHUNK_BYTES = 1 << 20
RETRY_DELAY_S = 2.0
PART_META = ".meta.json"  # beside <file>.part: URL and validator (ETag/Last-Modified) of the part


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


def validate_sha256(sha256: str | None, name: str = "sha256") -> str | None:
    """Normalise a hex SHA-256 ('' or None = not given); bad value -> ValueError naming it."""
    if not sha256:
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{name}={sha256!r}: expected 64 hexadecimal characters")
    return value


def validate_url(url: str, name: str = "url") -> str:
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
        _receive(resp, part, start, total, progress)
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            _discard_part(part)
        raise ConnectionError(f"{url}: got {size} of {total} bytes")
    return total


def _receive(resp, part: Path, start: int, total: int | None, progress: bool) -> None:
    """Append the answer's body to `part` (synced); a disk error is a WriteError naming `part`
    (what arrived stays there, so a rerun with room resumes)."""
    try:
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
    except OSError as exc:
        if is_write_failure(exc):
            raise write_error(part, exc) from exc
        raise


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
class Check:
    """What a downloaded file is verified against: digest, where it comes from, what to do."""

    want: str | None
    source: str
    advice: str
    size: int | None
    label: str


def check_for(expected: str | None, lock_file: Path, key: str) -> Check:
    """The digest to check against: the given sha256, else the lock's pin, else none."""
    if expected:
        advice = "check the sha256 you gave (kvasir_sha256) or delete the moved file and rerun"
        return Check(expected, "given sha256", advice, None, "matches the given sha256")
    entry = _lock_entry(lock_file, key)
    advice = (
        f"if the server's file really changed, remove the entry {key!r} from {lock_file} "
        f"(or pass its new sha256) and rerun; otherwise delete the moved file and rerun"
    )
    label = f"matches the lock file {lock_file.name} (pinned {entry.get('date', '?')})"
    size = entry.get("size") if isinstance(entry.get("size"), int) else None
    return Check(entry.get("sha256"), f"lock file {lock_file}", advice, size, label)


def _unpinned(url: str, part: Path, lock_file: Path) -> ValueError:
    """The error for a download whose completeness nothing can confirm."""
    size = part.stat().st_size
    return ValueError(
        f"download of {url}: the server sent no file size (Content-Length), so the {size} bytes "
        f"received may be a truncated file; NOT pinned in {lock_file}. Kept in {part} (sha256 "
        f"{file_digest(part)}); if you know that is the complete file pass it as sha256 "
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
    url = validate_url(url)
    expected = validate_sha256(sha256)
    dest = Path(dest).expanduser()
    lock_file = Path(lock_file) if lock_file else default_lock_file()
    with file_lock(
        dest.parent / f".{dest.name}.lock", timeout=lock_timeout, what=f"download of {dest}"
    ):
        check = check_for(expected, lock_file, lock_key or url)
        return _fetch_locked(
            url, dest, lock_key or url, check, lock_file, progress, timeout, retries
        )


def _fetch_locked(
    url: str,
    dest: Path,
    key: str,
    check: Check,
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
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise write_error(dest, exc) from exc
    _part_meta(part).unlink(missing_ok=True)
    return result


def _part_is_wanted(part: Path, check: Check) -> bool:
    """True when a part file already is the wanted file (so no request is needed)."""
    if check.want is None or not part.is_file():
        return False
    if check.size is not None and part.stat().st_size != check.size:
        return False
    return file_digest(part) == check.want


def _verify_or_pin(
    file: Path, dest: Path, key: str, url: str, check: Check, lock_file: Path
) -> tuple[Path, str, str]:
    """Check `file` against the wanted digest; with none, pin it. Return (dest, digest, label)."""
    digest = file_digest(file)
    if check.want and digest != check.want:
        _reject(file, dest, digest, check.want, check.source, check.advice)
    if check.want is None:
        _record_lock(lock_file, key, url, file, dest.name, digest)
        return dest, digest, f"pinned now in {lock_file.name} (first use)"
    return dest, digest, check.label
