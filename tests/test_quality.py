"""Tests for helpers.evaluate.quality: FD, KID and precision/recall on hand cases, extractors, the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

from helpers.evaluate import quality


def _exact_gaussian(mean: list[float], cov: list[list[float]], n: int, seed: int) -> torch.Tensor:
    """n samples whose sample mean and covariance (ddof=1) are exactly `mean` and `cov`."""
    z = torch.randn(
        n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    z = z - z.mean(0)
    white = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T
    return white @ torch.linalg.cholesky(torch.tensor(cov, dtype=torch.float64)).T + torch.tensor(
        mean, dtype=torch.float64
    )


def _frames(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Simple synthetic 96x96 frames (smooth colour field + fine texture, half with a bright disc)."""
    gen = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(n, 3, 6, 6, generator=gen), size=96, mode="bilinear")
    texture = 0.15 * torch.rand(n, 1, 96, 96, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    centre = 20 + 56 * torch.rand(n, 2, generator=gen)
    dist = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
    labels = torch.arange(n) % 2
    disc = ((dist < 144) & (labels[:, None, None] == 1)).float().unsqueeze(1)
    images = (0.6 * base + texture + 0.4 * disc).clamp(0, 1)
    return images, labels


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """Point torch.hub's cache at an empty folder (so "" / "auto" finds no Inception weights)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A state dict with the FID Inception's exact shapes (random values, float16) on disk."""
    mp = pytest.MonkeyPatch()
    mp.setattr(tf_inception.torch, "load", lambda *args, **kwargs: {})
    mp.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    try:
        torch.manual_seed(0)
        module = quality.InceptionFeatures("unused-path")
    finally:
        mp.undo()
    path = tmp_path_factory.mktemp("inception") / quality.INCEPTION_FILES[0]
    torch.save({k: v.half() for k, v in module.inception.state_dict().items()}, path)
    return path


# --- statistics on hand cases -----------------------------------------------------------------
def test_frechet_distance_matches_the_closed_form_of_two_gaussians():
    f1 = _exact_gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 4.0]], 500, seed=0)
    f2 = _exact_gaussian([1.0, 2.0], [[4.0, 0.0], [0.0, 1.0]], 700, seed=1)
    # |mu1 - mu2|^2 = 5, Tr(S1 + S2) = 10, (S1 S2)^1/2 = diag(2, 2) -> FD = 5 + 10 - 8 = 7
    assert quality.frechet_distance(f1, f2) == pytest.approx(7.0, abs=1e-6)


def test_frechet_distance_of_non_commuting_covariances():
    s1, s2 = [[2.0, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 3.0]]
    f1 = _exact_gaussian([0.5, -1.0], s1, 400, seed=2)
    f2 = _exact_gaussian([0.0, 0.0], s2, 400, seed=3)
    root = scipy.linalg.sqrtm(np.array(s1) @ np.array(s2)).real
    expected = 1.25 + np.trace(np.array(s1) + np.array(s2) - 2 * root)
    assert quality.frechet_distance(f1, f2) == pytest.approx(expected, abs=1e-6)


def test_identical_sets_give_zero_distances_and_full_precision_recall():
    f = torch.randn(60, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(quality.frechet_distance(f, f.clone())) < 1e-6
    assert quality.precision_recall(f, f.clone(), k=3) == (1.0, 1.0)


def test_kid_matches_a_hand_computed_unbiased_polynomial_mmd():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen) + 0.5
    x, y = x.double(), y.double()

    def k(a, b):
        """The cubic kernel (a.b / d + 1)^3."""
        return (float(a @ b) / 3 + 1) ** 3

    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    mean, se = quality.kernel_distance(x, y, subsets=4, subset_size=m)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
    assert se == pytest.approx(0.0, abs=1e-9)  # every subset is the whole set


def test_kid_is_unbiased_near_zero_for_one_distribution_and_seeded():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 8, generator=gen), torch.randn(400, 8, generator=gen)
    same, same_se = quality.kernel_distance(a, b, subsets=50, seed=0)
    shifted, _ = quality.kernel_distance(a, b + 1.0, subsets=50, seed=0)
    assert abs(same) < 3 * same_se + 1e-3
    assert shifted > 20 * abs(same)
    assert quality.kernel_distance(a, b, subsets=50, seed=0) == (same, same_se)
    with pytest.raises(ValueError, match="subset_size=500"):
        quality.kernel_distance(a, b, subset_size=500)


def test_precision_recall_hand_case_and_disjoint_clusters():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    # real radii (k=1) are 1: 0.5 is inside, 10 is not -> precision 1/2; the fake radius is 9.5,
    # which covers every real point -> recall 1
    assert quality.precision_recall(real, fake, k=1) == (0.5, 1.0)
    gen = torch.Generator().manual_seed(0)
    cluster = torch.randn(50, 4, generator=gen)
    assert quality.precision_recall(cluster, cluster + 100, k=3) == (0.0, 0.0)
    with pytest.raises(ValueError, match="k=0"):
        quality.precision_recall(real, fake, k=0)


def test_gaussian_blur_keeps_constants_and_smooths():
    flat = torch.full((2, 3, 96, 96), 0.3)
    assert torch.allclose(quality.gaussian_blur(flat, 1.5), flat, atol=1e-6)
    noise = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    blurred = quality.gaussian_blur(noise, 1.5)
    assert blurred.shape == noise.shape and blurred.std() < noise.std() / 2
    with pytest.raises(ValueError, match="blur_sigma"):
        quality.gaussian_blur(noise, 0.0)


# --- feature extractors -----------------------------------------------------------------------
def test_given_inception_file_is_loaded_and_labelled_fid(inception_file):
    extractor = quality.feature_extractor(torch.rand(4, 3, 96, 96), fid_weights=str(inception_file))
    assert (extractor.label, extractor.kid_label) == ("FID", "KID")
    assert inception_file.name in extractor.note and "\n" not in extractor.note
    features = quality.extract(extractor.module, torch.rand(2, 3, 96, 96))
    assert features.shape == (2, 2048) and torch.isfinite(features).all()


def test_cached_inception_file_is_found(inception_file, tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / inception_file.name).symlink_to(inception_file)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    assert quality.inception_weights("") == hub / "checkpoints" / inception_file.name
    assert quality.inception_weights("none") is None


def test_missing_or_unfit_inception_file_gives_a_clear_error(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"fid_weights=.*nope\.pth.*nothing is downloaded"):
        quality.feature_extractor(torch.rand(4, 3, 96, 96), fid_weights=str(missing))
    stand_in = tmp_path / "tiny.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), stand_in)
    with pytest.raises(ValueError, match=r"fid_weights: cannot load .*tiny\.pth"):
        quality.load_inception(stand_in)


def test_without_weights_run_features_say_so_in_one_line(empty_hub):
    images, labels = _frames(16, seed=0)
    extractor = quality.feature_extractor(images, labels=labels, steps=2)
    assert (extractor.label, extractor.kid_label) == ("FD (run features)", "KID (run features)")
    assert extractor.note.startswith("No FID Inception weights at ") and "\n" not in extractor.note
    assert quality.RUN_FEATURES_NOTE in extractor.note
    off = quality.feature_extractor(images, fid_weights="none", labels=labels, steps=2)
    assert off.note == quality.RUN_FEATURES_NOTE


def test_run_features_are_deterministic_for_a_seed():
    images, labels = _frames(24, seed=0)
    probe = images[:6]
    one = quality.extract(quality.train_run_features(images, labels, steps=5, seed=3), probe)
    two = quality.extract(quality.train_run_features(images, labels, steps=5, seed=3), probe)
    other = quality.extract(quality.train_run_features(images, labels, steps=5, seed=4), probe)
    assert one.shape == (6, quality.RUN_FEATURES) and torch.equal(one, two)
    assert not torch.equal(one, other)
    unlabelled = quality.train_run_features(images, steps=2, seed=3)  # k-means pseudo-classes
    assert torch.equal(quality.extract(unlabelled, probe), quality.extract(unlabelled, probe))
    with pytest.raises(ValueError, match="labels"):
        quality.train_run_features(images, torch.zeros(24), steps=1)


# --- the table --------------------------------------------------------------------------------
def test_quality_table_floor_is_well_below_the_mean_image(empty_hub):
    train, labels = _frames(96, seed=0)
    real, _ = _frames(80, seed=1)
    extractor = quality.feature_extractor(train, labels=labels, steps=40, seed=0)
    fake, _ = _frames(60, seed=2)
    table = quality.quality_table(extractor, real, {"model": fake}, kid_subsets=20, seed=0)
    assert list(table.index) == [*quality.ROWS, "model"]
    assert list(table.columns) == list(quality.COLUMNS)
    assert (table["n"] == 40).all()
    floor, mean_image = table.loc["real vs real (floor)"], table.loc["mean image"]
    assert floor["FD"] < mean_image["FD"] / 5 and floor["KID mean"] < mean_image["KID mean"] / 5
    assert mean_image["recall"] == 0.0
    assert table.attrs["label"] == "FD (run features)"
    again = quality.quality_table(extractor, real, {"model": fake}, kid_subsets=20, seed=0)
    assert again.equals(table)


def test_quality_table_rejects_bad_candidates():
    net = quality.RunFeatureNet()
    real = torch.rand(20, 3, 96, 96)
    with pytest.raises(ValueError, match="taken by a scale row"):
        quality.quality_table(net, real, {"mean image": real})
    with pytest.raises(ValueError, match=r"candidates\['x'\]: pixel values"):
        quality.quality_table(net, real, {"x": real * 2})


# --- wiring: groups, results JSON, the parameter, threads, prose --------------------------------
def test_groups_keep_each_source_frame_in_one_half():
    groups = [f"frame{i // 4}" for i in range(4 * 7)]  # 7 source frames in 4 flips each
    a, b = quality._halves(len(groups), groups, seed=0)
    side_a, side_b = {groups[i] for i in a.tolist()}, {groups[i] for i in b.tolist()}
    assert len(a) == len(b) == 12 and not side_a & side_b
    assert torch.equal(quality._halves(len(groups), groups, seed=0)[0], a)  # seeded
    with pytest.raises(ValueError, match="groups: need at least two"):
        quality._halves(4, ["one"] * 4, seed=0)
    with pytest.raises(ValueError, match="groups: expected 5"):
        quality._halves(5, groups, seed=0)


def _small_table(label: str = "FD (run features)") -> pd.DataFrame:
    """A quality table as `quality_table` returns it (made-up numbers), with its attrs."""
    rows = {"real vs real (floor)": (2.0, 0.05, 0.02, 0.8, 0.8, 36),
            "blurred real": (3.0, 0.1, 0.03, 0.7, 0.6, 36),
            "mean image": (40.0, 2.5, 0.3, 1.0, 0.0, 36),
            "MSE model": (21.0, 1.2, 0.2, 0.1, 0.05, 36),
            "BCE model": (45.0, 3.0, 0.3, 1.0, 0.0, 36)}  # fmt: skip
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(quality.COLUMNS))
    table.index.name = "set"
    kid = "KID" + label.removeprefix("FID").removeprefix("FD")
    table.attrs.update(label=label, kid_label=kid, note="n", k=3, blur_sigma=1.5)
    return table


def test_quality_results_and_display_keep_labels_and_rows():
    found = quality.quality_results(_small_table())
    assert found["label"] == "FD (run features)" and found["scale_rows"] == list(quality.ROWS)
    assert list(found["rows"]) == [*quality.ROWS, "MSE model", "BCE model"]
    assert found["rows"]["MSE model"] == {"fd": 21.0, "kid_mean": 1.2, "kid_se": 0.2,
                                          "precision": 0.1, "recall": 0.05, "n": 36}  # fmt: skip
    shown = quality.format_quality(_small_table())
    assert list(shown.columns[:2]) == ["FD (run features)", "KID (run features)"]
    assert quality.frames_needed(72) == 36 and quality.frames_needed(4) == 4


def test_fid_weights_rule_is_checked_once_in_params(tmp_path):
    from helpers.config.params import SCHEMAS, check

    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"x")
    for value in ("", "auto", "none", "None", str(weights)):
        assert check("fid_weights", value) == value
    with pytest.raises(ValueError, match=r"fid_weights='.*missing\.pth': expected"):
        check("fid_weights", str(tmp_path / "missing.pth"))
    for name in ("05_generation_reconstruction", "08_ablations", "09_synthetic_data"):
        assert "fid_weights" in SCHEMAS[name]


def test_cpu_threads_restores_the_thread_count():
    before = torch.get_num_threads()
    with quality.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_extractor_for_caps_the_training_frames_and_uses_the_classes(empty_hub):
    images, labels = _frames(12, seed=0)
    frames = (images.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    classes = ["a" if y == 0 else "b" for y in labels.tolist()]
    extractor = quality.extractor_for(frames, classes, "none", seed=0, max_images=8)
    assert extractor.label == "FD (run features)" and not extractor.module.training
    assert quality.class_labels(["x", "x"]) is None  # one class: k-means pseudo-classes instead
    with pytest.raises(ValueError, match="classes: expected 12"):
        quality.extractor_for(frames, classes[:3], "none")


def test_quality_text_explains_the_label_and_places_each_model():
    from helpers.narrative.quality import quality_text

    text = quality_text(_small_table(), real="72 held-out healthy frames")
    assert "not comparable with published FID" in text and '"FD (run features)"' in text
    assert "2.00 at the floor" in text and "40.00 for the mean image" in text
    assert "The prior samples reach: MSE model 21.00 (KID 1.200 ± 0.200" in text
    assert "recall 0.05), 49 % of the way" in text
    assert "BCE model 45.00" in text and "mean image repeated, or farther" in text
    fid = quality_text(_small_table("FID"))
    assert "standard FID Inception-v3" in fid and "not comparable" not in fid


def test_summary_quotes_the_sample_quality_or_says_it_was_not_measured():
    from helpers.evaluate.qualitative import quality_values
    from helpers.narrative.summary import summary_text

    table = _small_table()
    table.attrs["real"] = "72 held-out healthy frames"
    results = {"05": {"quality": quality_values(table)}}
    text = summary_text("data", False, {}, results, {})
    assert "Sample quality of the prior samples against the 72 held-out healthy frames" in text
    assert "MSE model 21.00 (precision 0.10, recall 0.05)" in text and "floor" in text
    assert "2.00" in text and "40.00" in text and "not comparable with published FID" in text
    missing = summary_text("data", False, {}, {}, {})
    assert "Sample quality" in missing and "was not measured in this run" in missing
    unread = summary_text(
        "data", False, {}, {}, {}, unread={"05": "results/05.json is not valid JSON"}
    )
    assert "results/05.json is not valid JSON, so this summary quotes no sample-quality" in unread


def test_the_report_hands_notebook_05s_quality_table_to_the_summary(tmp_path):
    """results/05.json is read for the summary (it was left out once, and every report said the
    quality was not measured); a 05.json without its table is a warning, not silence."""
    from helpers.core.results import write_results
    from helpers.evaluate.qualitative import quality_values
    from helpers.runner.report import read_run

    write_results(tmp_path, "05", {"quality": quality_values(_small_table())})
    records = read_run(tmp_path, ["05_generation_reconstruction"])
    assert records.results["05"]["quality"]["rows"], records.warnings
    write_results(tmp_path, "05", {"plateau": {}})
    records = read_run(tmp_path, ["05_generation_reconstruction"])
    assert "05" not in records.results
    assert any("results/05.json has no 'quality' entry" in w for w in records.warnings)
