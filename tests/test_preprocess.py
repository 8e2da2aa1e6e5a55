"""Tests for helpers.data.preprocess: flips, crops, manifest, split, caches, reruns, bad input, SIGKILL."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFile
from test_data_trust import _alive, _children, _wait_for

from helpers.core.classes import ALL_CLASSES, GROUPS, HEALTHY_CLASSES
from helpers.data import preprocess as pp
from helpers.data import preprocess_figures, processed
from helpers.data.images import FLIPS

LANCZOS = Image.Resampling.LANCZOS


# --- test data -----------------------------------------------------------------------------------


def frame(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth, clearly asymmetric RGB frame (gradients + an off-centre blob)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = rng.uniform(0.15, 0.35) * width, rng.uniform(0.2, 0.4) * height
    blob = 120 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.02 * width * height))
    red = 40 + 150 * x / width + blob
    green = 30 + 120 * (y / height) ** 2 + 0.5 * blob
    blue = 60 + 80 * np.sin(3 * x / width + 2 * y / height + seed)
    return np.clip(np.stack([red, green, blue], -1), 0, 255).astype(np.uint8)


def make_tree(root: Path, n_healthy: int = 3, n_polyps: int = 2, size=(160, 128), ext="png"):
    """Class folders with small frames; returns {class: folder}."""
    dirs = {}
    for k, name in enumerate(ALL_CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_polyps if name == "polyps" else n_healthy):
            Image.fromarray(frame(*size, seed=100 * k + i)).save(folder / f"{i:04d}.{ext}")
        dirs[name] = folder
    return dirs


def read_png(path: Path) -> np.ndarray:
    """Decode a PNG into uint8 H x W x 3."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def variants(out: Path, manifest: pd.DataFrame, source_id: str) -> dict[str, np.ndarray]:
    """The processed images of one source, by flip."""
    rows = manifest[manifest["source_id"] == source_id]
    return {flip: read_png(out / f) for flip, f in zip(rows["flip"], rows["file"], strict=True)}


def run(dirs, out, **kwargs):
    """preprocess() with quiet, single-process defaults."""
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", False)
    return pp.preprocess(dirs, out, **kwargs)


@pytest.fixture
def tree(tmp_path) -> dict[str, Path]:
    """Three healthy frames per class and two polyp frames (PNG, 160x128)."""
    return make_tree(tmp_path / "raw")


# --- outputs -------------------------------------------------------------------------------------


def test_outputs_counts_manifest_and_cache(tree, tmp_path):
    out = tmp_path / "out"
    report = run(tree, out)
    manifest = processed.load_manifest(out)
    assert list(manifest.columns) == list(processed.MANIFEST_COLUMNS)
    normal, polyps = processed.load_images(out, "normal"), processed.load_images(out, "polyps")
    assert normal.shape == (3 * 3 * 4, 96, 96, 3) and normal.dtype == np.uint8
    assert polyps.shape == (2, 96, 96, 3) and polyps.dtype == np.uint8
    assert report.rebuilt and report.counts["images"] == {
        "normal-cecum": 12,
        "normal-pylorus": 12,
        "normal-z-line": 12,
        "polyps": 2,
    }
    per_source = manifest.groupby("source_id")["flip"].apply(set)
    for source_id, flips in per_source.items():
        expected = {"none"} if source_id.startswith("polyps/") else set(FLIPS)
        assert flips == expected, source_id
    assert manifest["crop_scale"].between(0.9, 1.0).all()
    assert manifest["crop_scale"].nunique() == len(manifest)  # one draw per output
    for i, row in enumerate(manifest[manifest["group"] == "normal"].itertuples()):
        data = (out / row.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        assert np.array_equal(read_png(out / row.file), normal[i])
        assert Path(row.source_file).is_absolute() and Path(row.source_file).is_file()
    assert all(f.startswith("normal/") for f in manifest.loc[manifest.group == "normal", "file"])
    assert all(f.startswith("polyps/") for f in manifest.loc[manifest.group == "polyps", "file"])
    assert "normal/normal-cecum_0001_h.png" in set(manifest["file"])


def test_polyp_flips_option_gives_four_variants(tree, tmp_path):
    run(tree, tmp_path / "out", polyp_flips=True)
    manifest = processed.load_manifest(tmp_path / "out")
    polyps = manifest[manifest["group"] == "polyps"]
    assert len(polyps) == 8 and set(polyps["flip"]) == set(FLIPS)


def test_flips_are_exact_numpy_flips(tree, tmp_path):
    out = tmp_path / "out"
    run(tree, out, crop_min=1.0, crop_max=1.0)
    manifest = processed.load_manifest(out)
    for source_id in ("normal-cecum/0000", "normal-z-line/0002"):
        v = variants(out, manifest, source_id)
        assert not np.array_equal(v["none"], v["h"])  # the frame is asymmetric
        assert not np.array_equal(v["none"], v["v"])
        assert np.array_equal(v["h"], v["none"][:, ::-1])
        assert np.array_equal(v["v"], v["none"][::-1])
        assert np.array_equal(v["hv"], v["none"][::-1, ::-1])


def test_each_variant_matches_pil_crop_with_recorded_scale(tree, tmp_path):
    out = tmp_path / "out"
    run(tree, out)
    manifest = processed.load_manifest(out)
    for row in manifest[manifest["source_id"] == "normal-pylorus/0001"].itertuples():
        with Image.open(row.source_file) as src:
            w, h = src.size
            s = row.crop_scale
            box = ((w - w * s) / 2, (h - h * s) / 2, (w + w * s) / 2, (h + h * s) / 2)
            ref = np.asarray(src.convert("RGB").resize((96, 96), LANCZOS, box=box))
        flips = {"none": ref, "h": ref[:, ::-1], "v": ref[::-1], "hv": ref[::-1, ::-1]}
        assert np.array_equal(read_png(out / row.file), flips[row.flip]), row.file


def test_scale_one_equals_plain_resize(tree, tmp_path):
    out = tmp_path / "out"
    run(tree, out, crop_min=1.0, crop_max=1.0)
    manifest = processed.load_manifest(out)
    row = manifest[(manifest["source_id"] == "polyps/0001")].iloc[0]
    assert row["crop_scale"] == 1.0
    with Image.open(row["source_file"]) as src:
        plain = np.asarray(src.convert("RGB").resize((96, 96), LANCZOS))
    assert np.array_equal(read_png(out / row["file"]), plain)


def test_crop_is_centred_and_keeps_recorded_fraction(tmp_path):
    # Red encodes x and green encodes y, so an output's edge values tell where the crop fell.
    side = 240
    y, x = np.mgrid[0:side, 0:side]
    coords = np.stack([x, y, np.full_like(x, 128)], -1).astype(np.uint8)
    dirs = make_tree(tmp_path / "raw", n_healthy=1, n_polyps=1)
    for folder in dirs.values():
        for f in folder.iterdir():
            Image.fromarray(coords).save(f)
    out = tmp_path / "out"
    run(dirs, out, crop_min=0.9, crop_max=1.0)
    manifest = processed.load_manifest(out)
    rows = manifest[manifest["flip"] == "none"]
    assert rows["crop_scale"].min() < 0.99  # the scales really vary
    for row in rows.itertuples():
        img = read_png(out / row.file).astype(float)
        low, high = side * (1 - row.crop_scale) / 2, side * (1 + row.crop_scale) / 2
        step = (high - low) / 96
        assert img[48, 0, 0] == pytest.approx(low + step / 2 - 0.5, abs=1.5)
        assert img[48, -1, 0] == pytest.approx(high - step / 2 - 0.5, abs=1.5)
        assert img[0, 48, 1] == pytest.approx(low + step / 2 - 0.5, abs=1.5)
        assert img[-1, 48, 1] == pytest.approx(high - step / 2 - 0.5, abs=1.5)


def test_large_jpeg_is_decoded_reduced_but_close_to_full_decode(tmp_path):
    dirs = make_tree(tmp_path / "raw", n_healthy=1, n_polyps=1, size=(720, 576), ext="jpg")
    out = tmp_path / "out"
    run(dirs, out, crop_min=1.0, crop_max=1.0)
    manifest = processed.load_manifest(out)
    row = manifest[manifest["flip"] == "none"].iloc[0]
    with Image.open(row["source_file"]) as src:
        full = np.asarray(src.convert("RGB").resize((96, 96), LANCZOS)).astype(int)
    diff = np.abs(read_png(out / row["file"]).astype(int) - full)
    assert diff.mean() < 1.5 and diff.max() <= 12


# --- split ---------------------------------------------------------------------------------------


def test_split_by_source_seeded_and_disjoint(tmp_path):
    dirs = make_tree(tmp_path / "raw", n_healthy=10, n_polyps=2, size=(100, 100))
    a = run(dirs, tmp_path / "a", healthy_test_fraction=0.3)
    run(dirs, tmp_path / "b", healthy_test_fraction=0.3, seed=1)
    ma, mb = processed.load_manifest(tmp_path / "a"), processed.load_manifest(tmp_path / "b")
    healthy = ma[ma["group"] == "normal"]
    train = set(healthy.loc[healthy.split == "train", "source_id"])
    test = set(healthy.loc[healthy.split == "test", "source_id"])
    assert train and test and not train & test
    assert healthy.groupby("source_id")["split"].nunique().max() == 1  # flips stay together
    for name in HEALTHY_CLASSES:
        assert sum(s.startswith(name + "/") for s in test) == 3
    assert (ma.loc[ma.group == "polyps", "split"] == "test").all()
    assert a.counts["splits"] == {"normal/train": 84, "normal/test": 36, "polyps/test": 2}
    test_b = set(mb.loc[(mb.group == "normal") & (mb.split == "test"), "source_id"])
    assert test_b != test  # the seed decides the held-out sources
    images, rows = processed.load_split(tmp_path / "a", "normal", "test")
    assert len(images) == len(rows) == 36 and set(rows["split"]) == {"test"}
    assert np.array_equal(images[0], read_png(tmp_path / "a" / rows["file"][0]))


def test_zero_test_fraction_keeps_all_healthy_for_training(tree, tmp_path):
    run(tree, tmp_path / "out", healthy_test_fraction=0.0)
    assert len(processed.load_images(tmp_path / "out", "normal", "test")) == 0
    assert len(processed.load_images(tmp_path / "out", "normal", "train")) == 36


def test_same_result_with_one_or_two_workers(tmp_path):
    dirs = make_tree(tmp_path / "raw", n_healthy=4, n_polyps=4, size=(120, 110))
    run(dirs, tmp_path / "one", workers=1)
    run(dirs, tmp_path / "two", workers=2)
    pd.testing.assert_frame_equal(
        processed.load_manifest(tmp_path / "one"), processed.load_manifest(tmp_path / "two")
    )
    for group in GROUPS:
        assert np.array_equal(
            processed.load_images(tmp_path / "one", group),
            processed.load_images(tmp_path / "two", group),
        )


# --- reruns and caches ---------------------------------------------------------------------------


def test_rerun_does_nothing_and_changes_rebuild(tree, tmp_path):
    out = tmp_path / "out"
    first = run(tree, out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = run(tree, out)
    assert first.rebuilt and not again.rebuilt
    assert again.seconds < 2.0
    assert again.counts == first.counts
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes
    # a changed input frame rebuilds, and its outputs change
    target = tree["normal-cecum"] / "0000.png"
    old = variants(out, processed.load_manifest(out), "normal-cecum/0000")["none"]
    Image.fromarray(frame(160, 128, seed=999)).save(target)
    changed = run(tree, out)
    assert changed.rebuilt
    assert not np.array_equal(
        old, variants(out, processed.load_manifest(out), "normal-cecum/0000")["none"]
    )
    # changed parameters rebuild too
    assert run(tree, out, seed=5).rebuilt
    assert not run(tree, out, seed=5).rebuilt
    # a removed input drops its PNGs
    target.unlink()
    assert run(tree, out, seed=5).rebuilt
    assert not list((out / "normal").glob("normal-cecum_0000_*.png"))
    assert len(processed.load_images(out, "normal")) == 32


def test_missing_png_triggers_rebuild(tree, tmp_path):
    out = tmp_path / "out"
    run(tree, out)
    (out / "normal" / "normal-cecum_0001_v.png").unlink()
    assert run(tree, out).rebuilt
    assert (out / "normal" / "normal-cecum_0001_v.png").is_file()


def test_stale_cache_is_rebuilt_from_pngs(tree, tmp_path):
    out = tmp_path / "out"
    run(tree, out)
    good = processed.load_images(out, "normal").copy()
    np.save(out / "normal.npy", np.zeros_like(good))  # same shape, wrong content
    assert np.array_equal(processed.load_images(out, "normal"), good)
    assert np.array_equal(np.load(out / "normal.npy"), good)  # the cache was rewritten
    (out / "polyps.npy").unlink()
    assert processed.load_images(out, "polyps").shape == (2, 96, 96, 3)
    np.save(out / "normal.npy", good[:-1])  # wrong count
    assert len(processed.load_images(out, "normal")) == 36


def test_loaders_name_the_notebook_when_data_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebooks/01_preprocessing.ipynb first"):
        processed.load_images(tmp_path / "nothing", "normal")
    with pytest.raises(ValueError, match="group='healthy'"):
        processed.load_images(tmp_path, "healthy")
    with pytest.raises(ValueError, match="split='val'"):
        processed.load_split(tmp_path, "normal", "val")


def test_manifest_without_stamp_is_not_trusted(tree, tmp_path):
    out = tmp_path / "out"
    run(tree, out)
    (out / processed.STAMP_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="01_preprocessing"):
        processed.load_manifest(out)
    assert run(tree, out).rebuilt


def test_to_tensor():
    images = np.zeros((2, 4, 5, 3), np.uint8)
    images[1, 2, 3] = (255, 51, 0)
    t = processed.to_tensor(images)
    assert t.dtype == torch.float32 and t.shape == (2, 3, 4, 5) and t.is_contiguous()
    assert t[1, :, 2, 3].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert t.sum().item() == pytest.approx(1.2)
    with pytest.raises(ValueError, match="images_uint8"):
        processed.to_tensor(images.astype(np.float32))
    with pytest.raises(ValueError, match="images_uint8"):
        processed.to_tensor(images[0])


# --- parameters and folders ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"crop_min": 0.0}, "crop_min"),
        ({"crop_max": 1.1}, "crop_max"),
        ({"crop_min": 0.95, "crop_max": 0.9}, "crop_min"),
        ({"size": 4}, "size"),
        ({"healthy_test_fraction": 1.0}, "healthy_test_fraction"),
        ({"healthy_test_fraction": -0.1}, "healthy_test_fraction"),
        ({"seed": -1}, "seed"),
        ({"workers": -2}, "workers"),
        ({"polyp_flips": "yes"}, "polyp_flips"),
    ],
)
def test_bad_parameters_are_named(tree, tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        run(tree, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_class_dirs_must_hold_the_four_classes(tree, tmp_path):
    partial = {k: v for k, v in tree.items() if k != "polyps"}
    with pytest.raises(ValueError, match="polyps"):
        run(partial, tmp_path / "out")
    with pytest.raises(ValueError, match="esophagitis"):
        run({**tree, "esophagitis": tree["polyps"]}, tmp_path / "out")


def test_missing_or_empty_class_folder_is_named(tree, tmp_path):
    missing = tmp_path / "nowhere" / "polyps"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        run({**tree, "polyps": missing}, tmp_path / "out")
    empty = tmp_path / "empty" / "normal-pylorus"
    empty.mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=str(empty)):
        run({**tree, "normal-pylorus": empty}, tmp_path / "out")


# --- bad input files -----------------------------------------------------------------------------


def write_bad_files(folder: Path) -> dict[str, str]:
    """Unusable files in `folder`; returns {file name: expected words in the reason}."""
    good = folder / "0000.png"
    jpeg = folder / "full.jpeg"
    Image.open(good).convert("RGB").save(jpeg, quality=90)
    data = jpeg.read_bytes()
    jpeg.unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "corrupt.jpg").write_bytes(data[:200] + bytes(range(256)) * 8)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image\n" * 20)
    Image.fromarray(frame(90, 200, seed=7)).save(folder / "small.png")
    return {
        "truncated.jpg": "truncated",
        "corrupt.jpg": "",
        "zero.jpg": "not an image",
        "text.jpg": "not an image",
        "small.png": "too small",
    }


def write_convertible_files(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Flat frames in other modes; returns {stem: the RGB every output pixel should have}."""
    size = (150, 120)
    Image.new("L", size, 100).save(folder / "grey.png")
    Image.new("RGBA", size, (200, 100, 50, 255)).save(folder / "rgba.png")
    Image.new("RGBA", size, (200, 100, 50, 0)).save(folder / "clear.png")
    Image.new("CMYK", size, (0, 255, 0, 0)).save(folder / "cmyk.jpg", quality=100)
    palette = Image.new("P", size, 3)
    palette.putpalette([0, 0, 0] * 3 + [10, 220, 130] + [0, 0, 0] * 252)
    palette.save(folder / "palette.png")
    Image.fromarray(np.full(size[::-1], 60000, np.uint16)).save(folder / "deep16.png")
    Image.new("1", size, 1).save(folder / "bilevel.png")
    return {
        "grey": (100, 100, 100),
        "rgba": (200, 100, 50),
        "clear": (0, 0, 0),
        "cmyk": (255, 0, 255),
        "palette": (10, 220, 130),
        "deep16": (233, 233, 233),  # 60000 / 257
        "bilevel": (255, 255, 255),
    }


def test_bad_files_are_skipped_and_other_modes_converted(tree, tmp_path):
    folder = tree["normal-z-line"]
    bad = write_bad_files(folder)
    colours = write_convertible_files(folder)
    assert Image.open(folder / "deep16.png").mode.startswith("I")
    assert Image.open(folder / "cmyk.jpg").mode == "CMYK"
    out = tmp_path / "out"
    report = run(tree, out)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    reasons = {Path(f).name: r for f, r in report.skipped}
    assert set(reasons) == set(bad)
    for name, words in bad.items():
        assert words in reasons[name].lower(), (name, reasons[name])
    on_disk = pd.read_csv(out / "skipped.csv")
    assert sorted(Path(f).name for f in on_disk["file"]) == sorted(bad)
    assert all(Path(f).is_absolute() for f in on_disk["file"])
    manifest = processed.load_manifest(out)
    for stem, rgb in colours.items():
        v = variants(out, manifest, f"normal-z-line/{stem}")
        assert set(v) == set(FLIPS), stem
        for image in v.values():
            assert image.shape == (96, 96, 3)
            assert np.abs(image.astype(int) - rgb).max() == 0, (stem, image[40, 40])
    assert report.counts["raw"]["normal-z-line"] == 3 + len(bad) + len(colours)
    assert report.counts["sources"]["normal-z-line"] == 3 + len(colours)
    assert "skipped" in report.summary()


def test_duplicate_stems_are_skipped(tree, tmp_path):
    Image.fromarray(frame(160, 128, seed=3)).save(tree["polyps"] / "0000.jpg")
    report = run(tree, tmp_path / "out")
    assert [Path(f).name for f, _ in report.skipped] == ["0000.png"]  # the later name
    assert "stem" in report.skipped[0][1]
    assert report.counts["sources"]["polyps"] == 2


def test_class_with_no_usable_frame_is_an_error(tree, tmp_path):
    for f in tree["polyps"].iterdir():
        f.write_bytes(b"")
    with pytest.raises(ValueError, match="no usable image"):
        run(tree, tmp_path / "out")


def test_raw_files_are_not_modified(tree, tmp_path):
    before = {p: p.read_bytes() for d in tree.values() for p in d.iterdir()}
    run(tree, tmp_path / "out", workers=2)
    assert {p: p.read_bytes() for d in tree.values() for p in d.iterdir()} == before


# --- crash safety --------------------------------------------------------------------------------


def test_sigkill_mid_run_then_rerun_equals_clean_run(tmp_path):
    dirs = make_tree(tmp_path / "raw", n_healthy=40, n_polyps=20, size=(256, 224), ext="jpg")
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    script = textwrap.dedent(
        f"""
        from helpers.data.preprocess import preprocess
        dirs = {{k: v for k, v in {{{", ".join(f"{k!r}: {str(v)!r}" for k, v in dirs.items())}}}.items()}}
        preprocess(dirs, {str(killed)!r}, workers=2, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (killed / "normal").is_dir() and len(os.listdir(killed / "normal")) >= 40:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "preprocessing finished before it could be killed"
    workers = _children(proc.pid) if sys.platform.startswith("linux") else []
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / processed.STAMP_NAME).exists() and not (killed / "manifest.csv").exists()
    with pytest.raises(FileNotFoundError):
        processed.load_images(killed, "normal")
    assert _wait_for(lambda: not any(_alive(w) for w in workers), timeout=5.0), (
        f"pool workers {workers} outlived their killed parent"
    )
    rerun = run(dirs, killed, workers=2)
    run(dirs, clean, workers=2)
    assert rerun.rebuilt
    pd.testing.assert_frame_equal(processed.load_manifest(killed), processed.load_manifest(clean))
    for group in GROUPS:
        assert np.array_equal(
            processed.load_images(killed, group), processed.load_images(clean, group)
        )
        assert sorted(os.listdir(killed / group)) == sorted(os.listdir(clean / group))
    assert (killed / "skipped.csv").read_bytes() == (clean / "skipped.csv").read_bytes()
    assert len(processed.load_manifest(clean)) == 3 * 40 * 4 + 20


# --- real Kvasir frames --------------------------------------------------------------------------


def test_real_kvasir_polyps_through_the_pipeline(kvasir_sample, tmp_path):
    raw = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in kvasir_sample.glob("*.jpg")}
    dirs = make_tree(tmp_path / "raw", n_healthy=2, n_polyps=0)
    dirs["polyps"] = kvasir_sample
    out = tmp_path / "out"
    report = run(dirs, out, workers=2)
    polyps, rows = processed.load_split(out, "polyps")
    assert report.skipped == []
    assert polyps.shape == (len(raw), 96, 96, 3) and polyps.dtype == np.uint8
    assert set(rows["flip"]) == {"none"} and set(rows["split"]) == {"test"}
    assert set(rows["source_file"]) == {str(p.resolve()) for p in raw}
    assert 40 < polyps.mean() < 200 and polyps.std() > 20  # real content, not blank frames
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in raw} == raw


# --- figures -------------------------------------------------------------------------------------


def test_figures_are_written(tree, tmp_path):
    import matplotlib.pyplot as plt

    out = tmp_path / "out"
    run(tree, out)
    fig = preprocess_figures.plot_before_after(out, path=tmp_path / "fig1.png")
    assert len(fig.axes) == 3 * 5  # one row per healthy class: raw frame + 4 variants
    assert [ax.get_ylabel() for ax in fig.axes[::5]] == list(HEALTHY_CLASSES)
    with Image.open(tmp_path / "fig1.png") as image:
        assert image.format == "PNG" and image.width > 1000
    plt.close(fig)
    fig = preprocess_figures.plot_sources_vs_real(
        tree["polyps"], tmp_path / "absent", n=4, path=tmp_path / "b.png"
    )
    assert sum(bool(ax.images) for ax in fig.axes) == 2  # the two polyp frames, no real ones
    assert any("no real Kvasir frames given" in t.get_text() for t in fig.texts)
    plt.close(fig)
