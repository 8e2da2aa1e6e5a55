"""Kvasir data: v1/v2 folder discovery and the one entry point of the notebooks (`resolve_dataset`).

Kvasir v1 (`kvasir-dataset.zip`, 8 classes x 500 frames) and v2 (`kvasir-dataset-v2.zip`,
8 x 1000) unpack to `kvasir-dataset[-v2]/<class>/*.jpg`. We use the three normal classes as
the healthy set and `polyps` as the test set (names: helpers.core.classes). Archives are fetched by
helpers.data.download (resume, sha256 pin) and unpacked by helpers.data.extract.

A source is called Kvasir v1/v2 only when that was verified: it was downloaded from the
official address, its archive's sha256 matches the digest pinned in the lock file from the
official address, or its folder holds exactly Kvasir's 8 classes with 500 (v1) / 1000 (v2)
images each. A folder's name proves nothing; anything else is a folder (or zip) of images,
named by its counts and content fingerprint. Folders beside the class folders that are not
Kvasir classes are ignored and listed in the record.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.config.params import DATA_KEYWORDS
from helpers.core import paths
from helpers.core.atomic import atomic_write_text
from helpers.core.classes import ALL_CLASSES, HEALTHY_CLASSES, POLYP_CLASS
from helpers.core.fingerprint import bytes_digest, file_digest
from helpers.core.lock import LOCK_WAIT_S
from helpers.data.download import (
    Check,
    check_for,
    default_lock_file,
    fetch_verified,
    validate_sha256,
    validate_url,
)
from helpers.data.extract import extraction_complete, extraction_stamp, safe_extract
from helpers.data.synthetic import GENERATOR_VERSION, ensure_synthetic
from helpers.data.synthetic import STAMP_NAME as SYNTHETIC_STAMP

KVASIR_URLS = {
    "v1": "https://datasets.simula.no/downloads/kvasir/kvasir-dataset.zip",
    "v2": "https://datasets.simula.no/downloads/kvasir/kvasir-dataset-v2.zip",
}
VERSION_FOLDERS = {"kvasir-dataset": "v1", "kvasir-dataset-v2": "v2"}  # where to look, not proof
VERSION_COUNTS = {500: "v1", 1000: "v2"}  # images in each of the 8 classes
KVASIR_CLASSES = (
    "dyed-lifted-polyps",
    "dyed-resection-margins",
    "esophagitis",
    "normal-cecum",
    "normal-pylorus",
    "normal-z-line",
    "polyps",
    "ulcerative-colitis",
)  # the 8 classes of Kvasir v1 and v2 (we use ALL_CLASSES of them)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
SOURCE_RECORD = "source.json"  # what notebook 01 checked about its data, in data/processed/
DIGEST_CHARS = 16  # hex digits of the archive's sha256 in its extraction folder's name
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
    """Locate the folders of ALL_CLASSES under `root` (plain, kvasir-dataset[-v2]/ or nested).

    The polyp class and at least one healthy class are needed; an absent healthy class is left
    out of the result (the data-source record names it)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Kvasir folder not found: {root}")
    scored = [(sum((c / name).is_dir() for name in ALL_CLASSES), c) for c in _candidate_roots(root)]
    best_score = max(score for score, _ in scored)
    if best_score == 0:
        raise FileNotFoundError(
            f"no Kvasir class folders under {root}: expected {root / ALL_CLASSES[0]} "
            f"(or inside kvasir-dataset/ or kvasir-dataset-v2/); classes needed: "
            f"{POLYP_CLASS} and at least one of {', '.join(HEALTHY_CLASSES)}"
        )
    base = next(c for score, c in scored if score == best_score)
    class_dirs = {name: base / name for name in ALL_CLASSES if (base / name).is_dir()}
    if POLYP_CLASS not in class_dirs or len(class_dirs) < 2:
        needed = POLYP_CLASS if POLYP_CLASS not in class_dirs else " or ".join(HEALTHY_CLASSES)
        raise FileNotFoundError(f"Kvasir class folder missing: expected {base / needed}")
    for folder in class_dirs.values():
        if not list_images(folder):
            raise ValueError(
                f"Kvasir class folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
    return class_dirs


def folder_counts(base: str | os.PathLike) -> dict[str, int]:
    """Image count of each visible sub-folder of `base` that holds images (sorted by name)."""
    counts = {p.name: len(list_images(p)) for p in _subdirs(Path(base))}
    return {name: n for name, n in counts.items() if n}


def version_by_counts(folders: dict[str, int]) -> str:
    """The version ("v1"/"v2") when `folders` are exactly Kvasir's 8 classes at its count, else ""."""
    if set(folders) != set(KVASIR_CLASSES) or len(set(folders.values())) != 1:
        return ""
    return VERSION_COUNTS.get(next(iter(folders.values())), "")


def detect_version(class_dirs: dict[str, Path]) -> str:
    """Say "v1" or "v2" when the class folders' parent has Kvasir's classes and counts, else "folder".

    The parent folder's name (kvasir-dataset[-v2]) is not evidence: anyone can name a folder so.
    """
    parents = {Path(p).parent for p in class_dirs.values()}
    if len(parents) != 1:
        return "folder"
    parent = parents.pop()
    if (parent / SYNTHETIC_STAMP).is_file():
        return "folder"
    return version_by_counts(folder_counts(parent)) or "folder"


def official_pins(lock_file: str | os.PathLike | None = None) -> dict[str, str]:
    """sha256 -> "v1"/"v2" of the archives the lock file pinned from the official addresses.

    A pin made from a mirror (its entry's url is not the official one) does not count.
    """
    try:
        data = json.loads(Path(lock_file or default_lock_file()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    downloads = data.get("downloads") if isinstance(data, dict) else None
    pins = {}
    for version, url in KVASIR_URLS.items():
        entry = downloads.get(url) if isinstance(downloads, dict) else None
        if isinstance(entry, dict) and entry.get("url") == url and entry.get("sha256"):
            pins[str(entry["sha256"])] = version
    return pins


def _count_range(counts: dict[str, int]) -> str:
    """'4 to 7 images' / '5 images' per folder."""
    low, high = min(counts.values(), default=0), max(counts.values(), default=0)
    return f"{low} images" if low == high else f"{low} to {high} images"


def verify_version(
    folders: dict[str, int], digest: str = "", official: str = ""
) -> tuple[str, str]:
    """("v1"/"v2" or "", what says so or why not): official download, pinned digest, counts.

    `folders`: folder_counts of the folder holding the class folders; `digest`: the archive's
    sha256 (zips); `official`: the version when the archive came from the official address.
    """
    if official:
        return official, f"downloaded from the official address {KVASIR_URLS[official]}"
    pinned = official_pins().get(digest) if digest else None
    if pinned:
        return pinned, (
            f"the archive's sha256 matches Kvasir {pinned}'s, pinned in "
            f"{default_lock_file().name} from the official address"
        )
    version = version_by_counts(folders)
    if version:
        n = next(iter(folders.values()))
        return version, f"Kvasir's 8 classes with {n} images each, as in Kvasir {version}"
    named = {name: n for name, n in folders.items() if name in KVASIR_CLASSES}
    return "", (
        f"not verified as Kvasir: {len(named)} of Kvasir's 8 classes, {_count_range(named)} "
        f"each; Kvasir v1 has 500 per class, v2 1000"
    )


# --- one entry point for the notebooks -------------------------------------------------------


@dataclass
class DatasetSource:
    """Where the raw frames come from, how many there are per class, and what was checked.

    `fingerprint` is the archive's sha256 (zip, download) or a content digest of the class
    folders (folder, embedded set); `check` says how the files were checked (digest, pin),
    `verified` what says they are Kvasir v1/v2 ("" for kind "folder"); `container` is
    "folder", "zip" or "generated"; `ignored` the folders beside the class folders that are
    not Kvasir classes (name: images), `unused` the other Kvasir classes there (not read).
    """

    kind: str
    class_dirs: dict[str, Path]
    root: Path
    description: str
    counts: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    check: str = ""
    verified: str = ""
    container: str = "folder"
    ignored: dict[str, int] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What the report says about the data: kind, description, digest and how it was checked."""
        record = {"kind": self.kind, "description": self.description, "counts": self.counts,
                  "fingerprint": self.fingerprint, "check": self.check,
                  "verified": self.verified, "container": self.container,
                  "ignored": self.ignored, "unused": self.unused}  # fmt: skip
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
    """'1500 healthy (normal-cecum 500, ...), 500 polyps' (only the classes present)."""
    healthy = ", ".join(f"{name} {counts[name]}" for name in HEALTHY_CLASSES if name in counts)
    n_healthy = sum(counts.get(name, 0) for name in HEALTHY_CLASSES)
    return f"{n_healthy} healthy ({healthy}), {counts.get(POLYP_CLASS, 0)} polyps"


def ignored_text(ignored: dict[str, int]) -> str:
    """'ignored folder my-holiday-photos (7 images)' ('' when nothing was ignored)."""
    if not ignored:
        return ""
    listed = ", ".join(f"{name} ({n} image{'s' * (n != 1)})" for name, n in ignored.items())
    what = "not a Kvasir class" if len(ignored) == 1 else "not Kvasir classes"
    return f"ignored folder{'s' * (len(ignored) != 1)} {listed}, {what}"


def fingerprint_folder(class_dirs: dict[str, str | os.PathLike]) -> str:
    """Content digest (sha256) of the image files of each class folder: names, sizes, bytes."""
    lines = [
        f"{name}/{path.name}\0{path.stat().st_size}\0{file_digest(path)}\n"
        for name in sorted(class_dirs)
        for path in list_images(class_dirs[name])
    ]
    return bytes_digest("".join(lines).encode())


def _source_from_folder(
    root: Path,
    fingerprint: str | None = None,
    check: str = "",
    official: str = "",
    synthetic: bool = False,
) -> DatasetSource:
    """Discover the classes under `root`, say what they verifiably are, and describe them.

    `fingerprint`, `check`: the archive's sha256 and how it was checked (a zip; else the
    folder's content digest is taken); `official`: the version when the archive was
    downloaded from the official address.
    """
    class_dirs = find_class_dirs(root)
    counts = _counts(class_dirs)
    base = next(iter(class_dirs.values())).parent
    folders = folder_counts(base)
    synthetic = synthetic or (base / SYNTHETIC_STAMP).is_file()
    container = "generated" if synthetic else ("zip" if fingerprint else "folder")
    version, verified = ("", "")
    if not synthetic:
        version, verified = verify_version(folders, fingerprint or "", official)
    kind = "synthetic" if synthetic else (f"kvasir-{version}" if version else "folder")
    label = f"Kvasir {version}" if version else f"a {container} of Kvasir-style images"
    text = f"{label} from {base.name}/: {_describe_counts(counts)}"
    if not synthetic:
        text += f" ({'verified: ' if version else ''}{verified})"
    if fingerprint is None:
        fingerprint = fingerprint_folder(class_dirs)
        check = f"not verified (a folder; content fingerprint {fingerprint[:DIGEST_CHARS]})"
        text += f"; content fingerprint {fingerprint[:DIGEST_CHARS]}"
    else:
        text += f"; archive sha256 {fingerprint[:DIGEST_CHARS]} ({check})"
    ignored = {name: n for name, n in folders.items() if name not in KVASIR_CLASSES}
    unused = [name for name in folders if name in KVASIR_CLASSES and name not in counts]
    if ignored:
        text += f"; {ignored_text(ignored)}"
    if unused:
        text += f"; Kvasir classes this study does not use: {', '.join(unused)}"
    absent = [name for name in HEALTHY_CLASSES if name not in counts]
    if absent:
        text += f"; healthy classes absent: {', '.join(absent)}"
    return DatasetSource(
        kind, class_dirs, root, text, counts, fingerprint, check, verified if version else "",
        container, ignored, unused,
    )  # fmt: skip


def _synthetic_source(n_per_class: int, seed: int, progress: bool) -> DatasetSource:
    """The embedded Kvasir-like set (generated on first use)."""
    root = Path(ensure_synthetic(n_per_class, seed, progress))
    source = _source_from_folder(root, synthetic=True)
    source.description = (
        f"embedded Kvasir-like data (procedural, {n_per_class} per class, seed {seed})"
    )
    source.check = f"generated here (content fingerprint {source.fingerprint[:DIGEST_CHARS]})"
    return source


def extraction_dir(archive_name: str, digest: str) -> Path:
    """Where an archive is unpacked: data_root()/kvasir/<stem>-<first 16 hex of its sha256>."""
    return paths.data_root() / "kvasir" / f"{Path(archive_name).stem}-{digest[:DIGEST_CHARS]}"


def _tree_source(tree: Path, digest: str, check: str, official: str = "") -> DatasetSource:
    """Describe an extracted archive: classes, counts, the archive's digest and its check."""
    return _source_from_folder(tree, fingerprint=digest, check=check, official=official)


def _archive_source(
    zip_path: Path,
    digest: str,
    check: str,
    official: str,
    progress: bool,
    lock_timeout: float | None,
) -> DatasetSource:
    """Extract a checked archive into the folder keyed by its digest and describe it.

    `official`: the Kvasir version when the archive was downloaded from the official address.
    """
    tree = safe_extract(
        zip_path,
        extraction_dir(zip_path.name, digest),
        progress=progress,
        sha256=digest,
        lock_timeout=lock_timeout,
    )
    return _tree_source(tree, digest, check, official)


def _kept_extraction(name: str, check: Check) -> DatasetSource | None:
    """The finished extraction of the given or pinned archive, when its zip is gone.

    Where it was downloaded from is no longer known: it is Kvasir when its digest is the
    official pin or its classes and counts say so.
    """
    if check.want is None:
        return None
    tree = extraction_dir(name, check.want)
    if not extraction_complete(tree) or extraction_stamp(tree).get("sha256") != check.want:
        return None
    return _tree_source(tree, check.want, f"{check.label}; zip deleted, extraction kept")


def _download_source(
    version: str, sha256: str | None, url: str, progress: bool, lock_timeout: float | None
) -> DatasetSource:
    """Download (or reuse) the Kvasir zip from `url`, verify it, extract it, discover the classes.

    The lock entry is the official address's, so a mirror is held to the same digest.
    """
    official = KVASIR_URLS[version]
    name = official.rsplit("/", 1)[-1]
    zip_path = paths.data_root() / "downloads" / name
    if not zip_path.is_file():
        kept = _kept_extraction(name, check_for(sha256, default_lock_file(), official))
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
    from_official = not url or url == official
    if not from_official:
        check += f"; downloaded from the mirror {url}"
    vouched = version if from_official else ""
    return _archive_source(path, digest, check, vouched, progress, lock_timeout)


def _zip_source(
    zip_path: Path, sha256: str | None, progress: bool, lock_timeout: float | None
) -> DatasetSource:
    """Extract a local Kvasir zip (checked against `sha256` when given) and discover it."""
    digest = file_digest(zip_path)
    if sha256 and digest != sha256:
        raise ValueError(
            f"sha256 mismatch for {zip_path}: got {digest}, expected {sha256} (kvasir_sha256); "
            f"pass the archive's real digest, or '' to use it unchecked"
        )
    check = "matches the given sha256" if sha256 else "not verified (no sha256 given)"
    return _archive_source(zip_path, digest, check, "", progress, lock_timeout)


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
    expected = validate_sha256(sha256)
    mirror = validate_url(url) if url else ""
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
