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

from helpers import paths
from helpers.atomic import atomic_write_text

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
USER_AGENT = "endovae-bundle/0.1 (+urllib)"
CHUNK_BYTES = 1 << 20
RETRY_DELAY_S = 2.0
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


def safe_extract(
    zip_path: str | os.PathLike, dest: str | os.PathLike, *, progress: bool = True
) -> Path:
    """Unpack `zip_path` into `dest` via a temp folder renamed into place; skip if already done."""
    from tqdm.auto import tqdm

    zip_path, dest = Path(zip_path).expanduser(), Path(dest).expanduser()
    if extraction_complete(dest):
        return dest
    if not zip_path.is_file():
        raise FileNotFoundError(f"zip archive not found: {zip_path}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(
            f"{dest} exists but holds no completed extraction; move it away first"
        )
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{zip_path} is not a valid zip archive ({err})") from err
    with zf:
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


def _record_lock(lock_file: Path, url: str, file: Path, name: str, digest: str) -> None:
    """Pin url -> {url, file name, sha256, size, date} in the lock file (atomic write)."""
    data = _read_lock(lock_file)
    data["downloads"][url] = {
        "url": url,
        "file": name,
        "sha256": digest,
        "size": file.stat().st_size,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(lock_file, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _reject(file: Path, dest: Path, digest: str, expected: str, source: str) -> None:
    """Move a file with the wrong checksum aside (never left as dest) and raise ValueError."""
    aside = dest.with_name(dest.name + ".rejected")
    os.replace(file, aside)
    raise ValueError(
        f"sha256 mismatch for {dest}: got {digest}, expected {expected} ({source}); "
        f"the file was moved to {aside} (delete it, or the lock entry if the source changed)"
    )


def _validate_sha256(sha256: str | None, name: str = "sha256") -> str | None:
    """Normalise a hex SHA-256 ('' or None = not given); bad value -> ValueError naming it."""
    if not sha256:
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{name}={sha256!r}: expected 64 hexadecimal characters")
    return value


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(start, total) from a Content-Range header ('bytes S-E/T' or 'bytes */T')."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header or "")
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _open(url: str, start: int, timeout: float):
    """Open `url` (asking for bytes from `start` when > 0); return (response | None, status)."""
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            _, total = _content_range(err.headers.get("Content-Range"))
            err.close()
            return None, (416, total)
        raise
    return resp, (resp.status, None)


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One GET into `part`, resuming with Range when it exists; raise when incomplete."""
    from tqdm.auto import tqdm

    start = part.stat().st_size if part.exists() else 0
    resp, (status, total416) = _open(url, start, timeout)
    if resp is None:  # 416: the part is already complete, or the server's file changed
        if total416 == start:
            return
        part.unlink()
        return _fetch_once(url, part, timeout, progress)
    with resp:
        length = resp.headers.get("Content-Length")
        if status == 206:
            first, total = _content_range(resp.headers.get("Content-Range"))
            if first != start:  # a resume we cannot trust: start over on the next attempt
                part.unlink()
                raise ConnectionError(f"{url}: server resumed at byte {first}, asked for {start}")
        else:  # 200 (Range ignored or not asked): start over
            start, total = 0, (int(length) if length else None)
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
            part.unlink()
        raise ConnectionError(f"{url}: got {size} of {total} bytes")


_TRANSIENT = (ConnectionError, TimeoutError, http.client.HTTPException, urllib.error.URLError)


def _fetch(url: str, part: Path, timeout: float, progress: bool, retries: int) -> None:
    """Fetch into `part`, resuming after transient network errors up to `retries` times."""
    for attempt in range(retries + 1):
        try:
            return _fetch_once(url, part, timeout, progress)
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


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    lock_file: str | os.PathLike | None = None,
    progress: bool = True,
    timeout: float = 60,
    *,
    retries: int = 3,
) -> Path:
    """Download `url` to `dest` (resumable .part), verified against `sha256` or the lock file."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url={url!r}: expected an http(s) URL")
    expected = _validate_sha256(sha256)
    dest = Path(dest).expanduser()
    lock_file = Path(lock_file) if lock_file else default_lock_file()
    pinned = None if expected else _read_lock(lock_file)["downloads"].get(url, {}).get("sha256")
    want, source = (expected, "given sha256") if expected else (pinned, f"lock file {lock_file}")
    if dest.is_file():
        return _verify_or_pin(dest, dest, url, want, source, lock_file)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    _fetch(url, part, timeout, progress, retries)
    _verify_or_pin(part, dest, url, want, source, lock_file)
    os.replace(part, dest)
    return dest


def _verify_or_pin(
    file: Path, dest: Path, url: str, want: str | None, source: str, lock_file: Path
) -> Path:
    """Check `file` against `want`; with nothing to check against, pin it in the lock file."""
    digest = sha256_file(file)
    if want and digest != want:
        _reject(file, dest, digest, want, source)
    if want is None:
        _record_lock(lock_file, url, file, dest.name, digest)
    return dest


# --- one entry point for the notebooks -------------------------------------------------------


@dataclass
class DatasetSource:
    """Where the raw frames come from, and how many there are per class."""

    kind: str
    class_dirs: dict[str, Path]
    root: Path
    description: str
    counts: dict[str, int] = field(default_factory=dict)

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


def _source_from_folder(root: Path, kind: str | None = None) -> DatasetSource:
    """Discover the classes under `root` and describe them."""
    class_dirs = find_class_dirs(root)
    version = detect_version(class_dirs)
    counts = _counts(class_dirs)
    base = next(iter(class_dirs.values())).parent
    kind = kind or (f"kvasir-{version}" if version in ("v1", "v2") else "folder")
    if kind == "folder" and (base / SYNTHETIC_STAMP).is_file():
        kind = "synthetic"
    label = {"kvasir-v1": "Kvasir v1", "kvasir-v2": "Kvasir v2", "synthetic": "Kvasir-like data"}
    text = f"{label.get(kind, 'image folder')} from {base.name}/: {_describe_counts(counts)}"
    return DatasetSource(kind, class_dirs, root, text, counts)


def _synthetic_source(n_per_class: int, seed: int, progress: bool) -> DatasetSource:
    """The embedded Kvasir-like set (generated on first use)."""
    from helpers.synthetic import ensure_synthetic

    root = Path(ensure_synthetic(n_per_class, seed, progress))
    source = _source_from_folder(root, kind="synthetic")
    source.description = (
        f"embedded Kvasir-like data (procedural, {n_per_class} per class, seed {seed})"
    )
    return source


def _download_source(version: str, sha256: str | None, progress: bool) -> DatasetSource:
    """Download (or reuse) the official Kvasir zip, extract it safely, discover the classes."""
    url = KVASIR_URLS[version]
    zip_path = paths.data_root() / "downloads" / url.rsplit("/", 1)[-1]
    extracted = paths.data_root() / "kvasir" / Path(zip_path.name).stem
    if zip_path.is_file() or not extraction_complete(extracted):
        download(url, zip_path, sha256=sha256, progress=progress)  # an existing zip: verified
        safe_extract(zip_path, extracted, progress=progress)
    return _source_from_folder(extracted, kind=f"kvasir-{version}")


def _zip_source(zip_path: Path, sha256: str | None, progress: bool) -> DatasetSource:
    """Extract a local Kvasir zip (checked against `sha256` when given) and discover it."""
    extracted = paths.data_root() / "kvasir" / zip_path.stem
    if sha256 and not extraction_complete(extracted):
        digest = sha256_file(zip_path)
        if digest != sha256:
            raise ValueError(f"sha256 mismatch for {zip_path}: got {digest}, expected {sha256}")
    return _source_from_folder(safe_extract(zip_path, extracted, progress=progress))


def resolve_dataset(
    data_dir: str = "",
    *,
    n_per_class: int = 60,
    seed: int = 0,
    sha256: str = "",
    progress: bool = True,
) -> DatasetSource:
    """Turn the notebooks' `data_dir` ("" | "download[:v1|:v2]" | folder | .zip) into frames."""
    spec = str(data_dir or "").strip()
    expected = _validate_sha256(sha256)
    if not spec:
        if not isinstance(n_per_class, int) or n_per_class < 1:
            raise ValueError(f"n_per_class={n_per_class!r}: expected a positive integer")
        return _synthetic_source(n_per_class, seed, progress)
    if spec.lower() in ("download", "download:v1", "download:v2"):
        return _download_source(spec.lower().partition(":")[2] or "v1", expected, progress)
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data_dir={data_dir!r}: {path} does not exist (expected '' for the embedded data, "
            f"'download', 'download:v2', a Kvasir folder or a .zip of one)"
        )
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise ValueError(f"data_dir={data_dir!r}: {path} is a file but not a .zip archive")
        return _zip_source(path, expected, progress)
    return _source_from_folder(path)
