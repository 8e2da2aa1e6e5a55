"""Tests for the embedded Kvasir-like frame generator (helpers.data.synthetic)."""

from __future__ import annotations

import io
import json
from itertools import combinations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from helpers.core.classes import ALL_CLASSES, HEALTHY_CLASSES, POLYP_CLASS
from helpers.data import frames, synthetic

KVASIR_W = (720, 1920)
KVASIR_H = (576, 1080)


def _pixels(img: Image.Image) -> np.ndarray:
    """H x W x 3 float array of an RGB image."""
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def _colour_features(img: Image.Image) -> np.ndarray:
    """Brightness, red and blue chromaticity and share of dark pixels of the frame's centre."""
    a = _pixels(img)
    h, w, _ = a.shape
    c = a[h // 5 : 4 * h // 5, w // 4 : 3 * w // 4].reshape(-1, 3)
    total = c.sum(axis=1) + 1
    return np.array(
        [
            c.mean() / 255,
            (c[:, 0] / total).mean(),
            (c[:, 2] / total).mean(),
            (c.mean(1) < 40).mean(),
        ]
    )


@pytest.fixture(scope="module")
def class_features() -> dict[str, np.ndarray]:
    """Colour features of 8 frames of every class (seed 0)."""
    return {
        cls: np.array([_colour_features(synthetic.generate_frame(cls, i)) for i in range(8)])
        for cls in ALL_CLASSES
    }


# --- frames -------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_or_index_differs():
    for cls in ALL_CLASSES:
        a = synthetic.generate_frame(cls, 3, seed=7)
        b = synthetic.generate_frame(cls, 3, seed=7)
        assert a.mode == "RGB"
        assert a.tobytes() == b.tobytes(), cls
        assert synthetic._jpeg_bytes(a) == synthetic._jpeg_bytes(b), cls
        assert synthetic.generate_frame(cls, 3, seed=8).tobytes() != a.tobytes(), cls
        assert synthetic.generate_frame(cls, 4, seed=7).tobytes() != a.tobytes(), cls


def test_frame_sizes_are_kvasir_sizes_mostly_720x576():
    sizes = [
        frames._frame_size(frames._class_rng(c, i, 0)) for c in ALL_CLASSES for i in range(200)
    ]
    for w, h in sizes:
        assert KVASIR_W[0] <= w <= KVASIR_W[1] and KVASIR_H[0] <= h <= KVASIR_H[1]
    share = np.mean([s == (720, 576) for s in sizes])
    assert 0.6 < share < 0.8
    assert len(set(sizes)) >= 3
    # generate_frame really uses these sizes
    for i in range(4):
        assert synthetic.generate_frame(POLYP_CLASS, i).size in frames.FRAME_SIZES


def test_octagonal_black_border_and_lit_centre():
    for cls in ALL_CLASSES:
        for i in range(3):
            a = _pixels(synthetic.generate_frame(cls, i)).max(axis=2)
            h, w = a.shape
            ch, cw = int(0.04 * h), int(0.03 * w)
            corners = [a[:ch, :cw], a[:ch, -cw:], a[-ch:, :cw], a[-ch:, -cw:]]
            assert max(c.max() for c in corners) < 30, (cls, i)  # JPEG ringing stays low
            assert a[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].mean() > 40, (cls, i)
            # corners of the field of view are cut: the top row is black near the scene's
            # left edge but lit at the middle
            cols = np.flatnonzero(a[h // 2] > 30)
            x0, x1 = cols.min(), cols.max()
            top = a[int(0.02 * h)]
            assert top[x0 + 2 : x0 + int(0.05 * (x1 - x0))].max() < 30, (cls, i)
            assert top[x1 - int(0.05 * (x1 - x0)) : x1 - 2].max() < 30, (cls, i)
            assert top[(x0 + x1) // 2 - 20 : (x0 + x1) // 2 + 20].mean() > 30, (cls, i)


def test_healthy_classes_differ_in_colour(class_features):
    """Every pair of healthy classes differs clearly in at least one colour statistic."""
    for a, b in combinations(HEALTHY_CLASSES, 2):
        fa, fb = class_features[a], class_features[b]
        pooled = np.sqrt((fa.var(axis=0) + fb.var(axis=0)) / 2) + 1e-9
        effect = np.abs(fa.mean(axis=0) - fb.mean(axis=0)) / pooled
        assert effect.max() > 1.5, (a, b, effect.round(2))


def test_polyps_resemble_real_kvasir_polyps(class_features, kvasir_sample):
    """Mean colour of our polyp frames is close to that of the real Kvasir sample."""
    real = np.array([_colour_features(Image.open(p)) for p in sorted(kvasir_sample.glob("*.jpg"))])
    ours = class_features[POLYP_CLASS]
    assert abs(ours[:, 0].mean() - real[:, 0].mean()) < 0.08  # brightness
    assert abs(ours[:, 1].mean() - real[:, 1].mean()) < 0.04  # red chromaticity
    assert abs(ours[:, 2].mean() - real[:, 2].mean()) < 0.04  # blue chromaticity


def test_polyps_are_visible_raised_regions_healthy_frames_have_none():
    ratios = []
    for i in range(8):
        img, mask = frames._render_frame(POLYP_CLASS, i)
        assert mask.shape == (img.height, img.width)
        assert 0.003 < mask.mean() < 0.4, i
        grey = ndimage.gaussian_filter(_pixels(img).mean(axis=2), 2)
        grad = np.hypot(*np.gradient(grey))
        edge = ndimage.binary_dilation(mask, iterations=4) & ~ndimage.binary_erosion(
            mask, iterations=4
        )
        h, w = mask.shape  # typical gradient of the scene, away from the text and the inset
        ratios.append(grad[edge].mean() / grad[h // 5 : 4 * h // 5, w // 4 : 3 * w // 4].mean())
    assert min(ratios) > 1.2 and np.median(ratios) > 2.5, np.round(ratios, 2)
    for cls in HEALTHY_CLASSES:
        assert not frames._render_frame(cls, 0)[1].any()


def test_green_box_only_on_lower_gi_frames():
    def has_green(img: Image.Image) -> bool:
        a = _pixels(img)
        green = (a[..., 1] > 100) & (a[..., 0] < 60) & (a[..., 2] > 70) & (a[..., 2] < 150)
        return green.mean() > 0.02

    lower = [
        has_green(synthetic.generate_frame(c, i))
        for c in ("normal-cecum", POLYP_CLASS)
        for i in range(10)
    ]
    assert 0.1 <= np.mean(lower) <= 0.8
    assert not any(has_green(synthetic.generate_frame("normal-z-line", i)) for i in range(5))


def test_bad_class_or_index_raises():
    with pytest.raises(ValueError, match="cls"):
        synthetic.generate_frame("normal-colon", 0)
    with pytest.raises(ValueError, match="index"):
        synthetic.generate_frame(POLYP_CLASS, -1)


# --- dataset ------------------------------------------------------------------------------------
def _tree(root) -> dict[str, int]:
    """Relative path -> mtime_ns of every file under root."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generate_dataset_layout_stamp_and_idempotent_rerun(tmp_path):
    out = synthetic.generate_dataset(
        tmp_path / "set", n_per_class=2, seed=1, workers=1, progress=False
    )
    jpgs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert jpgs == sorted(f"{c}/{c}_{i:04d}.jpg" for c in ALL_CLASSES for i in range(2))
    stamp = json.loads((out / synthetic.STAMP_NAME).read_text())
    assert stamp["generator_version"] == synthetic.GENERATOR_VERSION
    assert (stamp["n_per_class"], stamp["seed"]) == (2, 1)
    assert {f["path"]: f["bytes"] for f in stamp["files"]} == {
        p: (out / p).stat().st_size for p in jpgs
    }
    first = out / "polyps" / "polyps_0001.jpg"
    assert first.read_bytes() == synthetic._jpeg_bytes(
        synthetic.generate_frame(POLYP_CLASS, 1, seed=1)
    )
    assert Image.open(io.BytesIO(first.read_bytes())).format == "JPEG"
    assert not (out / synthetic.PARTIAL_NAME).exists()
    before = _tree(out)
    assert synthetic.generate_dataset(out, n_per_class=2, seed=1, workers=1, progress=False) == out
    assert _tree(out) == before


def test_tree_without_stamp_is_completed(tmp_path):
    out = synthetic.generate_dataset(tmp_path / "set", n_per_class=2, workers=1, progress=False)
    lost = out / "normal-pylorus" / "normal-pylorus_0001.jpg"
    original = lost.read_bytes()
    # what a run killed midway leaves: its marker, no stamp, a missing frame, a temp file
    (out / synthetic.STAMP_NAME).unlink()
    (out / synthetic.PARTIAL_NAME).write_text(json.dumps(synthetic._settings(2, 0)))
    lost.unlink()
    (out / "polyps" / ".polyps_0000.jpg.abc.tmp").write_bytes(b"half")
    before = _tree(out)
    synthetic.generate_dataset(out, n_per_class=2, workers=1, progress=False)
    after = _tree(out)
    assert lost.read_bytes() == original
    assert (out / synthetic.STAMP_NAME).is_file() and not (out / synthetic.PARTIAL_NAME).exists()
    assert not list(out.rglob("*.tmp"))
    kept = [p for p in before if p.endswith(".jpg")]
    assert all(after[p] == before[p] for p in kept)  # finished frames were reused


def test_other_settings_regenerate_and_prune(tmp_path):
    out = synthetic.generate_dataset(tmp_path / "set", n_per_class=3, workers=1, progress=False)
    old = (out / "polyps" / "polyps_0000.jpg").read_bytes()
    synthetic.generate_dataset(out, n_per_class=2, seed=5, workers=1, progress=False)
    assert not (out / "polyps" / "polyps_0002.jpg").exists()
    assert (out / "polyps" / "polyps_0000.jpg").read_bytes() != old
    assert json.loads((out / synthetic.STAMP_NAME).read_text())["seed"] == 5


def test_parallel_workers_give_the_same_bytes(tmp_path):
    one = synthetic.generate_dataset(tmp_path / "one", n_per_class=2, workers=1, progress=False)
    two = synthetic.generate_dataset(tmp_path / "two", n_per_class=2, workers=2, progress=False)
    for p in one.rglob("*.jpg"):
        assert (two / p.relative_to(one)).read_bytes() == p.read_bytes()


@pytest.mark.parametrize("bad", [0, -3, 1.5, "4", True, None])
def test_bad_n_per_class_raises(tmp_path, bad):
    with pytest.raises(ValueError, match="n_per_class"):
        synthetic.generate_dataset(tmp_path / "x", n_per_class=bad, progress=False)
    with pytest.raises(ValueError, match="n_per_class"):
        synthetic.ensure_synthetic(bad, progress=False)
    assert not (tmp_path / "x").exists()


def test_ensure_synthetic_uses_default_dir(isolated_dirs):
    target = synthetic.default_synthetic_dir(1, seed=2)
    assert target == isolated_dirs / "data" / "kvasir-like" / "n1-seed2"
    assert synthetic.ensure_synthetic(1, seed=2, progress=False) == target
    assert len(list(target.rglob("*.jpg"))) == len(ALL_CLASSES)
    assert (target / synthetic.STAMP_NAME).is_file()
