"""Tests for helpers.data.kvasir: discovery, loopback download with resume + lock, safe extraction."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from helpers.core.classes import ALL_CLASSES, HEALTHY_CLASSES, POLYP_CLASS
from helpers.data import download, extract, kvasir

EXTRA_CLASS = "esophagitis"


# --- small Kvasir-like trees and zips --------------------------------------------------------


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    """Bytes of one tiny JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 90, 80)).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_tree(base: Path, jpeg: bytes, n: int = 3, classes=(*ALL_CLASSES, EXTRA_CLASS)) -> Path:
    """Write base/<class>/<class>_<i>.jpg for each class; return base."""
    for name in classes:
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (folder / f"{name}_{i:04d}.jpg").write_bytes(jpeg)
    return base


def make_zip(zip_path: Path, tree_parent: Path) -> Path:
    """Zip every file under tree_parent (names relative to it, with directory entries)."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(tree_parent.rglob("*")):
            zf.write(path, path.relative_to(tree_parent).as_posix())
    return zip_path


@pytest.fixture
def v1_zip(tmp_path, jpeg) -> Path:
    """A zip laid out like kvasir-dataset.zip (kvasir-dataset/<class>/*.jpg)."""
    make_tree(tmp_path / "src" / "kvasir-dataset", jpeg)
    return make_zip(tmp_path / "kvasir-dataset.zip", tmp_path / "src")


# --- loopback HTTP server supporting Range ----------------------------------------------------


class ServerState:
    """What the loopback server serves, and what it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.if_ranges: list[str | None] = []
        self.honour_range = True
        self.send_length = True
        self.cut_next_at: int | None = None
        self.base = ""

    def etag(self, name: str) -> str:
        """The strong ETag of a served file (changes with its content)."""
        return '"' + hashlib.sha256(self.files[name]).hexdigest()[:16] + '"'

    def url(self, name: str) -> str:
        """Full URL of a served file."""
        return f"{self.base}/{name}"

    def ranges(self) -> list[str | None]:
        """The Range header of each request so far."""
        return [r for _, r in self.requests]


def make_handler(state: ServerState):
    """A request handler class bound to `state`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def do_GET(self):
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            state.requests.append((self.path, rng))
            state.if_ranges.append(if_range)
            name = self.path.lstrip("/")
            body = state.files.get(name)
            if body is None:
                self.send_error(404)
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", rng or "")
            current = if_range in (None, state.etag(name))
            if match and state.honour_range and current:
                start = int(match[1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("ETag", state.etag(name))
            if state.send_length:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if state.cut_next_at is not None:  # simulate a dropped connection
                payload, state.cut_next_at = payload[: state.cut_next_at], None
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def server(monkeypatch):
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) in a thread; shut down after the test."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def payload() -> bytes:
    """Random bytes to serve (a few chunks long)."""
    return os.urandom(download.CHUNK_BYTES * 2 + 12345)


# --- list_images / find_class_dirs / detect_version -------------------------------------------


def test_list_images_filters_and_sorts(tmp_path, jpeg):
    for name in ("b.JPG", "a.png", "c.jpeg", "d.Tif", "e.bmp", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(jpeg)
    (tmp_path / "sub.jpg").mkdir()
    assert [p.name for p in kvasir.list_images(tmp_path)] == [
        "a.png",
        "b.JPG",
        "c.jpeg",
        "d.Tif",
        "e.bmp",
    ]


@pytest.mark.parametrize(
    "layout",
    ["plain", "kvasir-dataset", "kvasir-dataset-v2", "wrapper", "wrapper/kvasir-dataset-v2"],
)
def test_find_class_dirs_layouts(tmp_path, jpeg, layout):
    base = tmp_path if layout == "plain" else tmp_path / layout
    make_tree(base, jpeg)
    found = kvasir.find_class_dirs(tmp_path)
    assert list(found) == list(ALL_CLASSES)
    assert all(found[name] == base / name for name in ALL_CLASSES)
    assert EXTRA_CLASS not in found


def test_find_class_dirs_missing_class_names_folder(tmp_path, jpeg):
    make_tree(tmp_path / "kvasir-dataset", jpeg, classes=(*HEALTHY_CLASSES, EXTRA_CLASS))
    with pytest.raises(
        FileNotFoundError, match=re.escape(str(tmp_path / "kvasir-dataset" / POLYP_CLASS))
    ):
        kvasir.find_class_dirs(tmp_path)


def test_a_folder_with_polyps_and_one_healthy_class_is_usable(tmp_path, jpeg):
    make_tree(tmp_path / "k", jpeg, classes=("normal-cecum", POLYP_CLASS))
    assert set(kvasir.find_class_dirs(tmp_path / "k")) == {"normal-cecum", POLYP_CLASS}
    record = kvasir.resolve_dataset(str(tmp_path / "k")).record()
    assert record["kind"] == "folder"
    assert "healthy classes absent: normal-pylorus, normal-z-line" in record["description"]


def test_a_folder_without_a_healthy_class_names_one(tmp_path, jpeg):
    make_tree(tmp_path / "k", jpeg, classes=(POLYP_CLASS,))
    with pytest.raises(FileNotFoundError, match="normal-cecum or normal-pylorus"):
        kvasir.find_class_dirs(tmp_path / "k")


def test_find_class_dirs_nothing_there(tmp_path):
    (tmp_path / "unrelated").mkdir()
    with pytest.raises(FileNotFoundError, match="normal-cecum"):
        kvasir.find_class_dirs(tmp_path)
    with pytest.raises(FileNotFoundError, match="not-here"):
        kvasir.find_class_dirs(tmp_path / "not-here")


def test_find_class_dirs_empty_class(tmp_path, jpeg):
    make_tree(tmp_path, jpeg)
    empty = tmp_path / "normal-pylorus"
    for path in empty.iterdir():
        path.unlink()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match=re.escape(str(empty))):
        kvasir.find_class_dirs(tmp_path)


def test_detect_version_by_counts_not_names(tmp_path, jpeg, monkeypatch):
    for name in ("kvasir-dataset", "kvasir-dataset-v2"):  # a folder's name proves nothing
        tree = make_tree(tmp_path / "a" / name, jpeg)
        assert kvasir.detect_version(kvasir.find_class_dirs(tree)) == "folder"
    assert (
        kvasir.detect_version(kvasir.find_class_dirs(make_tree(tmp_path / "c", jpeg))) == "folder"
    )
    monkeypatch.setattr(kvasir, "VERSION_COUNTS", {3: "v1", 6: "v2"})  # 500 / 1000, scaled down
    by_count = make_tree(tmp_path / "d" / "my-copy", jpeg, n=3, classes=kvasir.KVASIR_CLASSES)
    assert kvasir.detect_version(kvasir.find_class_dirs(by_count)) == "v1"
    v2 = make_tree(tmp_path / "e" / "copy", jpeg, n=6, classes=kvasir.KVASIR_CLASSES)
    assert kvasir.detect_version(kvasir.find_class_dirs(v2)) == "v2"
    (by_count / POLYP_CLASS / f"{POLYP_CLASS}_0000.jpg").unlink()
    assert kvasir.detect_version(kvasir.find_class_dirs(by_count)) == "folder"
    four = make_tree(tmp_path / "f" / "kvasir-dataset", jpeg, n=3, classes=ALL_CLASSES)
    assert kvasir.detect_version(kvasir.find_class_dirs(four)) == "folder"  # 4 of the 8 classes


# --- download ---------------------------------------------------------------------------------


def test_download_full_and_lock_created(tmp_path, server, payload):
    server.files["data.zip"] = payload
    lock = tmp_path / "lock.json"
    dest = download.download(
        server.url("data.zip"), tmp_path / "dl" / "data.zip", lock_file=lock, progress=False
    )
    assert dest.read_bytes() == payload
    assert not dest.with_name("data.zip.part").exists()
    assert server.ranges() == [None]
    entry = json.loads(lock.read_text())["downloads"][server.url("data.zip")]
    assert entry["sha256"] == hashlib.sha256(payload).hexdigest()
    assert entry["size"] == len(payload)
    assert entry["url"] == server.url("data.zip") and entry["date"]


def write_part(dest: Path, data: bytes, url: str | None = None, etag: str | None = None) -> None:
    """Leave a .part (and, with `url`, its metadata) as an interrupted download would."""
    dest.with_name(dest.name + ".part").write_bytes(data)
    if url:
        meta = {"url": url, "validator": etag, "total": None}
        dest.with_name(dest.name + ".part.meta.json").write_text(json.dumps(meta))


def test_download_resumes_partial_part(tmp_path, server, payload):
    server.files["data.zip"] = payload
    dest, url = tmp_path / "data.zip", server.url("data.zip")
    k = len(payload) // 3
    write_part(dest, payload[:k], url, server.etag("data.zip"))
    download.download(url, dest, lock_file=tmp_path / "lock.json", progress=False)
    assert server.ranges() == [f"bytes={k}-"]
    assert server.if_ranges == [server.etag("data.zip")]
    assert dest.read_bytes() == payload
    assert not dest.with_name("data.zip.part.meta.json").exists()


def test_download_part_without_validator_resumes_only_when_verified(tmp_path, server, payload):
    server.files["data.zip"] = payload
    dest, url, k = tmp_path / "data.zip", server.url("data.zip"), len(payload) // 3
    write_part(dest, payload[:k])  # nothing says which version of the file it holds
    download.download(url, dest, lock_file=tmp_path / "lock.json", progress=False)
    assert server.ranges() == [None]  # started over
    dest.unlink()
    write_part(dest, payload[:k])
    good = hashlib.sha256(payload).hexdigest()
    download.download(url, dest, sha256=good, lock_file=tmp_path / "l2.json", progress=False)
    assert server.ranges()[-1] == f"bytes={k}-"  # the digest will catch a mixed file
    assert dest.read_bytes() == payload


def test_download_restarts_when_range_ignored(tmp_path, server, payload):
    server.files["data.zip"] = payload
    server.honour_range = False
    dest, url = tmp_path / "data.zip", server.url("data.zip")
    write_part(dest, b"garbage that must not survive", url, server.etag("data.zip"))
    download.download(url, dest, lock_file=tmp_path / "lock.json", progress=False)
    assert server.ranges() == ["bytes=29-"]
    assert dest.read_bytes() == payload


def test_download_resumes_after_dropped_connection(tmp_path, server, payload):
    server.files["data.zip"] = payload
    server.cut_next_at = 100_000
    dest = download.download(
        server.url("data.zip"),
        tmp_path / "data.zip",
        lock_file=tmp_path / "lock.json",
        progress=False,
    )
    assert server.ranges() == [None, "bytes=100000-"]
    assert server.if_ranges == [None, server.etag("data.zip")]
    assert dest.read_bytes() == payload


def test_download_part_already_complete(tmp_path, server, payload):
    server.files["data.zip"] = payload
    dest, url = tmp_path / "data.zip", server.url("data.zip")
    write_part(dest, payload, url, server.etag("data.zip"))
    download.download(url, dest, lock_file=tmp_path / "lock.json", progress=False)
    assert server.ranges() == [f"bytes={len(payload)}-"]
    assert dest.read_bytes() == payload


def test_download_given_sha256_mismatch(tmp_path, server, payload):
    server.files["data.zip"] = payload
    dest = tmp_path / "data.zip"
    lock = tmp_path / "lock.json"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ValueError, match="sha256 mismatch"):
        download.download(
            server.url("data.zip"), dest, sha256=wrong, lock_file=lock, progress=False
        )
    assert not dest.exists()
    assert not dest.with_name("data.zip.part").exists()
    assert not lock.exists()


def test_download_given_sha256_match(tmp_path, server, payload):
    server.files["data.zip"] = payload
    lock = tmp_path / "lock.json"
    good = hashlib.sha256(payload).hexdigest().upper()
    dest = download.download(
        server.url("data.zip"), tmp_path / "data.zip", sha256=good, lock_file=lock, progress=False
    )
    assert dest.read_bytes() == payload
    assert not lock.exists()
    with pytest.raises(ValueError, match="sha256="):
        download.download(server.url("data.zip"), tmp_path / "x.zip", sha256="abc", progress=False)


def test_lock_verifies_later_uses(tmp_path, server, payload):
    server.files["data.zip"] = payload
    url, dest, lock = server.url("data.zip"), tmp_path / "data.zip", tmp_path / "lock.json"
    download.download(url, dest, lock_file=lock, progress=False)
    pinned = lock.read_text()
    assert download.download(url, dest, lock_file=lock, progress=False) == dest
    assert len(server.requests) == 1  # existing, verified file: no second request
    tampered = bytearray(payload)
    tampered[1000] ^= 0xFF
    dest.write_bytes(bytes(tampered))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        download.download(url, dest, lock_file=lock, progress=False)
    assert not dest.exists()
    assert lock.read_text() == pinned


def test_lock_rejects_changed_server_file(tmp_path, server, payload):
    server.files["data.zip"] = payload
    url, dest, lock = server.url("data.zip"), tmp_path / "data.zip", tmp_path / "lock.json"
    download.download(url, dest, lock_file=lock, progress=False)
    dest.unlink()
    server.files["data.zip"] = payload[::-1]
    with pytest.raises(ValueError, match=re.escape(str(lock))):
        download.download(url, dest, lock_file=lock, progress=False)
    assert not dest.exists()


def test_lock_default_location_and_existing_file_pinned(isolated_dirs, server, payload):
    server.files["data.zip"] = payload
    dest = isolated_dirs / "placed.zip"
    dest.write_bytes(payload)
    download.download(server.url("data.zip"), dest, progress=False)
    assert server.requests == []
    lock = isolated_dirs / "data" / "kvasir.lock.json"
    entry = json.loads(lock.read_text())["downloads"][server.url("data.zip")]
    assert entry["sha256"] == hashlib.sha256(payload).hexdigest()


def test_download_http_error_names_url(tmp_path, server):
    with pytest.raises(OSError, match="missing.zip.*404"):
        download.download(
            server.url("missing.zip"),
            tmp_path / "m.zip",
            lock_file=tmp_path / "l.json",
            progress=False,
        )
    assert not (tmp_path / "m.zip").exists()


# --- safe_extract ------------------------------------------------------------------------------


def test_safe_extract_and_skip_when_done(tmp_path, v1_zip, monkeypatch):
    dest = extract.safe_extract(v1_zip, tmp_path / "out", progress=False)
    assert (dest / "kvasir-dataset" / POLYP_CLASS / f"{POLYP_CLASS}_0002.jpg").is_file()
    assert extract.extraction_complete(dest)
    assert not list(tmp_path.glob(".out.partial-*"))

    def boom(*args, **kwargs):
        raise AssertionError("archive reopened although the extraction is complete")

    monkeypatch.setattr(zipfile, "ZipFile", boom)
    assert extract.safe_extract(v1_zip, dest, progress=False) == dest


def _evil_zip(path: Path, kind: str) -> Path:
    """A zip with one good member and one unsafe member of the given kind."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("kvasir-dataset/polyps/ok.jpg", b"fine")
        if kind == "zip-slip":
            zf.writestr(zipfile.ZipInfo("../evil.txt"), b"escaped")
        elif kind == "absolute":
            zf.writestr(zipfile.ZipInfo(str(path.parent / "abs-evil.txt")), b"escaped")
        else:
            info = zipfile.ZipInfo("kvasir-dataset/link")
            info.create_system = 3
            mode = stat.S_IFLNK | 0o777 if kind == "symlink" else stat.S_IFCHR | 0o644
            info.external_attr = mode << 16
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("kind", ["zip-slip", "absolute", "symlink", "device"])
def test_safe_extract_refuses_unsafe_members(tmp_path, kind):
    archive = _evil_zip(tmp_path / "evil.zip", kind)
    member = {"zip-slip": "../evil.txt", "absolute": str(tmp_path / "abs-evil.txt")}.get(
        kind, "kvasir-dataset/link"
    )
    before = sorted(tmp_path.parent.rglob("*"))
    with pytest.raises(ValueError, match=re.escape(repr(member))):
        extract.safe_extract(archive, tmp_path / "box" / "out", progress=False)
    assert sorted(tmp_path.parent.rglob("*")) == before  # nothing written anywhere


def test_interrupted_extraction_leaves_no_marker(tmp_path, v1_zip, monkeypatch):
    real = extract._extract_member
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk went away")
        return real(*args)

    monkeypatch.setattr(extract, "_extract_member", flaky)
    dest = tmp_path / "out"
    with pytest.raises(OSError, match="disk went away"):
        extract.safe_extract(v1_zip, dest, progress=False)
    assert not dest.exists() and not extract.extraction_complete(dest)
    assert not list(tmp_path.glob(".out.partial-*"))
    monkeypatch.setattr(extract, "_extract_member", real)
    assert extract.extraction_complete(extract.safe_extract(v1_zip, dest, progress=False))


def test_killed_extraction_leaves_no_tree_then_recovers(tmp_path, v1_zip):
    area = tmp_path / "area"
    dest = area / "out"
    script = (
        "import sys, time\n"
        "from helpers.data import extract\n"
        "real = extract._extract_member\n"
        "def slow(zf, info, into):\n"
        "    n = real(zf, info, into)\n"
        "    if info.filename.endswith('polyps_0000.jpg'):\n"
        "        print('member', flush=True); time.sleep(30)\n"
        "    return n\n"
        "extract._extract_member = slow\n"
        f"extract.safe_extract({str(v1_zip)!r}, {str(dest)!r}, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "member"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    partials = list(area.glob(".out.partial-*"))
    assert len(partials) == 1 and not dest.exists()
    assert kvasir.find_class_dirs(partials[0])  # the half tree would pass for a dataset...
    assert not extract.extraction_complete(partials[0])  # ...but it carries no marker
    with pytest.raises(FileNotFoundError):
        kvasir.find_class_dirs(area)  # the half tree is hidden from discovery
    extract.safe_extract(v1_zip, dest, progress=False)
    assert extract.extraction_complete(dest) and not partials[0].exists()


def test_safe_extract_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.zip"):
        extract.safe_extract(tmp_path / "nope.zip", tmp_path / "out", progress=False)
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="fake.zip"):
        extract.safe_extract(fake, tmp_path / "out", progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="busy"):
        extract.safe_extract(fake, tmp_path / "busy", progress=False)


# --- resolve_dataset ----------------------------------------------------------------------------


def test_resolve_folder(isolated_dirs, jpeg):
    make_tree(isolated_dirs / "raw" / "kvasir-dataset", jpeg, n=4)
    source = kvasir.resolve_dataset(str(isolated_dirs / "raw"), progress=False)
    assert source.kind == "folder"  # named like Kvasir v1, but 4 per class: not verified
    assert source.counts == {name: 4 for name in ALL_CLASSES}
    assert source.n_healthy == 12 and source.n_polyps == 4
    assert source.class_dirs[POLYP_CLASS] == isolated_dirs / "raw" / "kvasir-dataset" / POLYP_CLASS
    assert "12 healthy" in source.description and "4 polyps" in source.description


def test_resolve_plain_folder_is_folder_kind(isolated_dirs, jpeg):
    make_tree(isolated_dirs / "mine", jpeg, n=2, classes=ALL_CLASSES)
    assert kvasir.resolve_dataset(str(isolated_dirs / "mine")).kind == "folder"


def test_resolve_zip(isolated_dirs, jpeg):
    make_tree(isolated_dirs / "src" / "kvasir-dataset-v2", jpeg, n=2)
    archive = make_zip(isolated_dirs / "kvasir-dataset-v2.zip", isolated_dirs / "src")
    source = kvasir.resolve_dataset(str(archive), progress=False)
    assert source.kind == "folder" and source.container == "zip"  # 2 per class: not verified
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert source.root == isolated_dirs / "data" / "kvasir" / f"kvasir-dataset-v2-{digest[:16]}"
    assert source.fingerprint == digest
    assert source.counts[POLYP_CLASS] == 2
    other = archive.with_name("other.zip")
    other.write_bytes(archive.read_bytes())
    with pytest.raises(ValueError, match="sha256 mismatch.*other.zip"):
        kvasir.resolve_dataset(str(other), sha256="0" * 64, progress=False)
    assert not (isolated_dirs / "data" / "kvasir" / "other").exists()
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert kvasir.resolve_dataset(str(other), sha256=good, progress=False).kind == "folder"


def test_resolve_download_v2(isolated_dirs, server, jpeg, monkeypatch):
    make_tree(isolated_dirs / "src" / "kvasir-dataset-v2", jpeg, n=2)
    archive = make_zip(isolated_dirs / "served.zip", isolated_dirs / "src")
    server.files["kvasir-dataset-v2.zip"] = archive.read_bytes()
    urls = {"v1": server.url("kvasir-dataset.zip"), "v2": server.url("kvasir-dataset-v2.zip")}
    monkeypatch.setattr(kvasir, "KVASIR_URLS", urls)
    source = kvasir.resolve_dataset("download:v2", progress=False)
    again = kvasir.resolve_dataset("Download:V2", progress=False)
    assert source.kind == again.kind == "kvasir-v2"
    assert source.counts == {name: 2 for name in ALL_CLASSES}
    downloaded = isolated_dirs / "data" / "downloads" / "kvasir-dataset-v2.zip"
    assert downloaded.read_bytes() == archive.read_bytes()
    assert len(server.requests) == 1  # the second call verified the kept zip, no request
    assert (isolated_dirs / "data" / "kvasir.lock.json").is_file()
    downloaded.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        kvasir.resolve_dataset("download:v2", progress=False)
    assert not downloaded.exists()  # moved aside; the verified extraction is still used
    assert kvasir.resolve_dataset("download:v2", progress=False).counts == source.counts
    assert len(server.requests) == 1


def test_resolve_synthetic_uses_ensure_synthetic(isolated_dirs, jpeg, monkeypatch):
    calls = []

    def fake_ensure(n_per_class, seed=0, progress=True):
        calls.append((n_per_class, seed, progress))
        root = make_tree(
            isolated_dirs / "data" / "kvasir-like" / "fake",
            jpeg,
            n=n_per_class,
            classes=ALL_CLASSES,
        )
        (root / "SYNTHETIC.json").write_text("{}")
        return root

    monkeypatch.setattr(kvasir, "ensure_synthetic", fake_ensure)
    source = kvasir.resolve_dataset("", n_per_class=3, seed=7, progress=False)
    assert calls == [(3, 7, False)]
    assert source.kind == "synthetic"
    assert source.counts == {name: 3 for name in ALL_CLASSES}
    assert "3 per class" in source.description and "seed 7" in source.description
    with pytest.raises(ValueError, match="n_per_class"):
        kvasir.resolve_dataset("", n_per_class=0)


def test_resolve_synthetic_real_module(isolated_dirs):
    pytest.importorskip("helpers.data.synthetic")
    source = kvasir.resolve_dataset("", n_per_class=1, seed=0, progress=False)
    assert source.kind == "synthetic"
    assert source.counts == {name: 1 for name in ALL_CLASSES}
    assert source.root.is_relative_to(isolated_dirs / "data")


def test_resolve_bad_paths(isolated_dirs):
    missing = isolated_dirs / "no-such-folder"
    with pytest.raises(FileNotFoundError, match=r"data_dir=.*no-such-folder"):
        kvasir.resolve_dataset(str(missing))
    text = isolated_dirs / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="data_dir="):
        kvasir.resolve_dataset(str(text))
    with pytest.raises(ValueError, match="sha256="):
        kvasir.resolve_dataset(str(isolated_dirs), sha256="xyz")


def test_import_changes_no_state():
    code = "import os, sys; before = dict(os.environ); import helpers.data.kvasir; print(dict(os.environ) == before)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


# --- issue 10: trust only what was checked ------------------------------------------------------


def test_trust_same_named_zips_get_their_own_trees(isolated_dirs, jpeg):
    archives = {}
    for folder, n in (("a", 3), ("b", 5)):
        make_tree(isolated_dirs / folder / "src" / "kvasir-dataset", jpeg, n=n, classes=ALL_CLASSES)
        archives[n] = make_zip(
            isolated_dirs / folder / "kvasir-dataset.zip", isolated_dirs / folder / "src"
        )
    first = kvasir.resolve_dataset(str(archives[3]), progress=False)
    second = kvasir.resolve_dataset(str(archives[5]), progress=False)
    assert first.counts[POLYP_CLASS] == 3 and second.counts[POLYP_CLASS] == 5
    assert first.root != second.root
    digest = hashlib.sha256(archives[5].read_bytes()).hexdigest()
    assert second.fingerprint == digest
    wrong = hashlib.sha256(archives[3].read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=f"got {digest}, expected {wrong}") as err:
        kvasir.resolve_dataset(str(archives[5]), sha256=wrong, progress=False)
    assert "kvasir_sha256" in str(err.value)  # says which parameter to fix
    right = kvasir.resolve_dataset(str(archives[5]), sha256=digest, progress=False)
    assert right.counts[POLYP_CLASS] == 5 and "matches the given sha256" in right.description


def test_trust_download_never_reuses_an_unverified_tree(isolated_dirs, server, jpeg, monkeypatch):
    make_tree(isolated_dirs / "src" / "kvasir-dataset", jpeg, n=2, classes=ALL_CLASSES)
    local = make_zip(isolated_dirs / "kvasir-dataset.zip", isolated_dirs / "src")
    kvasir.resolve_dataset(str(local), progress=False)  # a local zip of the same name
    urls = {"v1": server.url("kvasir-dataset.zip"), "v2": server.url("kvasir-dataset-v2.zip")}
    monkeypatch.setattr(kvasir, "KVASIR_URLS", urls)
    with pytest.raises(OSError, match="404"):  # no download possible: no silent "Kvasir v1"
        kvasir.resolve_dataset("download", progress=False)
    server.files["kvasir-dataset.zip"] = local.read_bytes()
    source = kvasir.resolve_dataset("download", progress=False)
    assert "pinned now" in source.check
    zip_path = isolated_dirs / "data" / "downloads" / "kvasir-dataset.zip"
    zip_path.unlink()
    del server.files["kvasir-dataset.zip"]  # offline from here on
    again = kvasir.resolve_dataset("download", progress=False)  # verified tree of the pin
    assert again.root == source.root and "lock file" in again.check
    lock = isolated_dirs / "data" / "kvasir.lock.json"
    data = json.loads(lock.read_text())
    data["downloads"][urls["v1"]]["sha256"] = "0" * 64
    lock.write_text(json.dumps(data))
    with pytest.raises(OSError, match="404"):  # the pin names another archive: not reused
        kvasir.resolve_dataset("download", progress=False)


def test_trust_truncated_download_without_length_is_not_pinned(tmp_path, server, payload):
    server.files["data.zip"] = payload
    server.send_length = False
    server.cut_next_at = len(payload) // 2
    url, dest, lock = server.url("data.zip"), tmp_path / "data.zip", tmp_path / "lock.json"
    with pytest.raises(ValueError, match="NOT pinned") as err:
        download.download(url, dest, lock_file=lock, progress=False)
    assert "Content-Length" in str(err.value) and "sha256" in str(err.value)
    assert not lock.exists() and not dest.exists()
    server.send_length = True  # the server now says how big the file is: resume and pin
    download.download(url, dest, lock_file=lock, progress=False)
    assert dest.read_bytes() == payload
    entry = json.loads(lock.read_text())["downloads"][url]
    assert entry["sha256"] == hashlib.sha256(payload).hexdigest()


def test_trust_resume_restarts_when_the_server_file_changed(tmp_path, server, payload):
    old, new = payload, payload[::-1]
    server.files["data.zip"] = old
    url, dest = server.url("data.zip"), tmp_path / "data.zip"
    k = len(old) // 3
    write_part(dest, old[:k], url, server.etag("data.zip"))
    old_etag = server.etag("data.zip")
    server.files["data.zip"] = new
    download.download(url, dest, lock_file=tmp_path / "lock.json", progress=False)
    assert server.ranges() == [f"bytes={k}-"] and server.if_ranges == [old_etag]
    assert dest.read_bytes() == new  # not old[:k] + new[k:]


def test_trust_mirror_is_held_to_the_official_pin(isolated_dirs, server, jpeg, monkeypatch):
    make_tree(isolated_dirs / "src" / "kvasir-dataset", jpeg, n=2, classes=ALL_CLASSES)
    archive = make_zip(isolated_dirs / "served.zip", isolated_dirs / "src").read_bytes()
    official = server.url("kvasir-dataset.zip")
    monkeypatch.setattr(kvasir, "KVASIR_URLS", {"v1": official, "v2": official + "2"})
    server.files["kvasir-dataset.zip"] = archive
    first = kvasir.resolve_dataset("download", progress=False)
    data = isolated_dirs / "data"
    (data / "downloads" / "kvasir-dataset.zip").unlink()
    shutil.rmtree(first.root)
    mirror = server.url("mirror/kvasir-dataset.zip")
    server.files["mirror/kvasir-dataset.zip"] = archive[:-10] + b"0123456789"
    with pytest.raises(ValueError, match="sha256 mismatch.*lock file"):
        kvasir.resolve_dataset("download", url=mirror, progress=False)
    server.files["mirror/kvasir-dataset.zip"] = archive
    (data / "downloads" / "kvasir-dataset.zip.rejected").unlink()
    source = kvasir.resolve_dataset("download", url=mirror, progress=False)
    assert server.requests[-1][0] == "/mirror/kvasir-dataset.zip"
    assert "mirror" in source.check and source.counts == first.counts
    with pytest.raises(ValueError, match="url="):
        kvasir.resolve_dataset("download", url="ftp://x", progress=False)
    with pytest.raises(ValueError, match="url="):
        kvasir.resolve_dataset("", url=mirror, progress=False)
