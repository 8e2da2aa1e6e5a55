"""Tests of helpers.study.ablations (notebook 08's experiments) and a papermill run of notebook 08."""

from __future__ import annotations

import json
import re

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_notebook
from PIL import Image

from helpers.config import params
from helpers.core import paths, plots, stats
from helpers.core.classes import ALL_CLASSES
from helpers.core.results import read_results
from helpers.data import processed as proc
from helpers.data.images import FLIPS, apply_flip, crop_resize
from helpers.data.preprocess import preprocess
from helpers.data.processed import load_split
from helpers.evaluate import artifacts
from helpers.model.endovae import EndoVAE, EndoVAEConfig
from helpers.narrative import ablations as ablation_text
from helpers.study import ablation_run
from helpers.study import ablations as ab
from helpers.train.fit import TrainConfig, fit

GREEN = (20, 128, 106)  # the position box colour of Kvasir (and of the embedded generator)


def _write_frames(root, n=12):
    """Kvasir-like class folders of small smooth random RGB frames."""
    rng = np.random.default_rng(1)
    dirs = {}
    for k, name in enumerate(ALL_CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(n):
            base = rng.uniform(0, 255, (5, 6, 3)).astype(np.uint8)
            Image.fromarray(base).resize((130, 110), Image.BICUBIC).save(
                folder / f"f{k}_{i:02d}.png"
            )
        dirs[name] = folder
    return dirs


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """A processed folder (notebook 01's layout) made from small random frames."""
    base = tmp_path_factory.mktemp("abl")
    out = base / "run" / "data" / "processed"
    preprocess(
        _write_frames(base / "raw"), out, workers=1, progress=False, healthy_test_fraction=0.25
    )
    return out


def _manifest(n_sources: int, flips=FLIPS, group="normal") -> pd.DataFrame:
    """A manifest-like frame: n_sources sources with the given flips each."""
    rows = [
        {"file": f"{group}/s{i}_{f}.png", "group": group, "source_id": f"c/s{i}", "flip": f}
        for i in range(n_sources)
        for f in flips
    ]
    return pd.DataFrame(rows)


# --- parameters and arms ---------------------------------------------------------------------


def test_parse_list_reads_values_and_names_the_parameter_on_errors():
    assert params.parse_list(" 6, 32,128 ", "latent_dims", int) == [6, 32, 128]
    assert params.parse_list("0.1,1,4", "betas", float) == [0.1, 1.0, 4.0]
    for bad in ("", "6,,32", "6,x", "6,6", "1.5"):
        with pytest.raises(ValueError, match="latent_dims"):
            params.parse_list(bad, "latent_dims", int)
    with pytest.raises(ValueError, match="betas"):
        params.parse_list("0.1,inf", "betas", float)


def test_validate_params_names_the_bad_parameter():
    params.check_all(abl_epochs=1, polyp_train_share=0.5, abl_lr=1e-3, n_boot=100)
    for name, value in (
        ("abl_epochs", 0),
        ("abl_batch_size", 1.5),
        ("polyp_train_share", 1.0),
        ("abl_lr", -1.0),
        ("n_boot", 10),
    ):
        with pytest.raises(ValueError, match=name):
            params.check_all(**{name: value})


SETTINGS_08 = {
    "abl_epochs": 1, "abl_batch_size": 8, "abl_lr": 1e-3, "abl_max_train_images": 16,
    "abl_checkpoint_every": 0, "latent_dims": "6,32", "betas": "1,4", "polyp_train_share": 0.5,
    "abl_n_samples": 8, "n_boot": 100, "seed": 0,
}  # fmt: skip


def test_ablation_settings_check_every_parameter_by_its_notebook_name():
    settings = ablation_run.AblationSettings(**SETTINGS_08)
    assert [a.name for a in settings.arms()] == [
        "baseline",
        "latent32",
        "beta4",
        "masked",
        "polyps",
    ]
    for name, bad in (("abl_epochs", 0), ("abl_n_samples", 4), ("latent_dims", "6,x"),
                      ("betas", "1,-1"), ("polyp_train_share", 1.0)):  # fmt: skip
        with pytest.raises(ValueError, match=name):
            ablation_run.AblationSettings(**{**SETTINGS_08, name: bad})


def test_make_arms_shares_one_baseline_across_studies():
    arms = ab.make_arms([6, 32, 128], [0.1, 1, 4])
    names = [a.name for a in arms]
    assert names.count(ab.BASELINE) == 1 and len(set(names)) == len(names) == 7
    base = ab.arm_by_name(arms, ab.BASELINE)
    assert (base.latent_dim, base.beta, base.mask, base.polyps) == (6, 1.0, False, False)
    for study in ("latent", "beta", "artifacts", "polyps"):
        chosen = ab.study_arms(arms, study)
        assert chosen.count(base) == 1 and len(chosen) >= 2
    # every non-baseline arm differs from the baseline in exactly one setting
    for arm in arms:
        diffs = [
            arm.latent_dim != 6,
            arm.beta != 1.0,
            arm.mask,
            arm.polyps,
        ]
        assert sum(diffs) == (0 if arm.name == ab.BASELINE else 1), arm
    assert [a.latent_dim for a in ab.study_arms(arms, "latent")] == [6, 32, 128]
    with pytest.raises(ValueError, match="latent_dims"):
        ab.make_arms([0], [1.0])


# --- splits -------------------------------------------------------------------------------------


def test_assert_disjoint_sources_detects_a_shared_source():
    a, b = _manifest(3), _manifest(5).iloc[12:]
    proc.assert_disjoint_sources(a, b, "x")
    with pytest.raises(ValueError, match="1 source frame"):
        proc.assert_disjoint_sources(a, _manifest(5).iloc[8:], "x")


def test_held_out_split_of_a_fresh_manifest_is_disjoint_by_source(processed):
    _, train = load_split(processed, "normal", "train")
    _, test = load_split(processed, "normal", "test")
    assert len(test) > 0 and len(train) > 0
    proc.assert_disjoint_sources(train, test, "train vs test")
    # all four flips of a source land on the same side
    assert (train.groupby("source_id").size() == 4).all()
    assert (test.groupby("source_id").size() == 4).all()


@pytest.mark.slow
def test_held_out_split_of_tiny_run_is_disjoint_by_source(tiny_run):
    processed_dir = paths.RunPaths(tiny_run).processed
    _, train = load_split(processed_dir, "normal", "train")
    _, test = load_split(processed_dir, "normal", "test")
    assert len(test) > 0
    proc.assert_disjoint_sources(train, test, "tiny_run train vs test")
    data = ab.load_ablation_data(processed_dir, polyp_share=0.5, seed=0, max_train_images=0)
    proc.assert_disjoint_sources(data.polyp_pool_rows, data.polyp_eval_rows, "pool vs eval")


def test_polyp_pool_split_is_disjoint_seeded_and_sized():
    manifest = _manifest(20, flips=("none",), group="polyps")
    pool, held = proc.polyp_pool_split(manifest, 0.5, seed=3)
    assert len(pool) == 10 and len(held) == 10
    assert set(pool).isdisjoint(held) and set(pool) | set(held) == set(range(20))
    proc.assert_disjoint_sources(manifest.iloc[pool], manifest.iloc[held], "pool vs eval")
    again, _ = proc.polyp_pool_split(manifest, 0.5, seed=3)
    other, _ = proc.polyp_pool_split(manifest, 0.5, seed=4)
    assert np.array_equal(pool, again) and not np.array_equal(pool, other)
    # with several images per source, a source never straddles the split
    flipped = _manifest(8, group="polyps")
    pool, held = proc.polyp_pool_split(flipped, 0.25, seed=0)
    assert len(pool) == 8  # 2 of 8 sources x 4 flips
    proc.assert_disjoint_sources(flipped.iloc[pool], flipped.iloc[held], "pool vs eval")
    for share in (0.0, 1.0):
        with pytest.raises(ValueError, match="polyp_train_share"):
            proc.polyp_pool_split(manifest, share, seed=0)


def test_load_ablation_data_keeps_sets_apart_and_flips_the_pool(processed):
    data = ab.load_ablation_data(processed, polyp_share=0.5, seed=0, max_train_images=20)
    assert data.n_train == 20 and data.n_healthy_train_all > 20
    proc.assert_disjoint_sources(data.healthy_train_rows, data.healthy_test_rows, "healthy")
    proc.assert_disjoint_sources(data.polyp_pool_rows, data.polyp_eval_rows, "polyps")
    assert (data.polyp_pool_rows.groupby("source_id")["flip"].apply(set) == set(FLIPS)).all()
    # each pool image is the flip of its source's unflipped polyp image
    polyps, rows = load_split(processed, "polyps")
    by_source = dict(zip(rows["source_id"], polyps, strict=True))
    for img, r in zip(data.polyp_pool, data.polyp_pool_rows.itertuples(), strict=True):
        assert np.array_equal(img, apply_flip(by_source[r.source_id], r.flip))
    # the polyp arm keeps the budget: same number of images, some of them polyps
    arms = ab.make_arms([6], [1.0])
    base_imgs, _ = ab.training_set(ab.arm_by_name(arms, "baseline"), data, seed=0)
    mix_imgs, mix_rows = ab.training_set(ab.arm_by_name(arms, "polyps"), data, seed=0)
    assert len(base_imgs) == len(mix_imgs) == 20
    assert (mix_rows["group"] == "polyps").sum() > 0
    assert set(mix_rows["source_id"]).isdisjoint(data.polyp_eval_rows["source_id"])


# --- artifacts ------------------------------------------------------------------------------------


def test_mask_blacks_out_exactly_the_artifact_regions():
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, (1, 96, 96, 3), dtype=np.uint8)  # no zero pixels
    out = artifacts.mask_artifacts(img, "none")
    zero = (out[0] == 0).all(axis=-1)
    # text strip top-left, box bottom-left; tissue in the centre and on the right untouched
    assert zero[0, 0] and zero[40, 10] and zero[95, 0] and zero[95, 30]
    assert not zero[40, 30] and not zero[48, 48] and not zero[0, 95] and not zero[95, 95]
    assert np.array_equal(out[0][~zero], img[0][~zero])
    assert img.min() > 0  # the input is not modified
    assert 0.2 < zero.mean() < 0.3


@pytest.mark.parametrize("flip", FLIPS)
def test_mask_follows_the_flip_of_each_image(flip):
    rng = np.random.default_rng(1)
    img = rng.integers(1, 256, (96, 96, 3), dtype=np.uint8)
    masked_then_flipped = apply_flip(artifacts.mask_artifacts(img[None], "none")[0], flip)
    flipped_then_masked = artifacts.mask_artifacts(apply_flip(img, flip)[None], [flip])[0]
    assert np.array_equal(masked_then_flipped, flipped_then_masked)
    # the float N x 3 x H x W path masks the same pixels
    x = torch.from_numpy(apply_flip(img, flip)).permute(2, 0, 1)[None].float() / 255
    y = artifacts.mask_artifacts(x, [flip])
    assert torch.equal((y[0] == 0).all(0), torch.from_numpy((flipped_then_masked == 0).all(-1)))


def _frame(colour=(200, 90, 70), size=96) -> np.ndarray:
    """A uniform tissue-coloured uint8 image."""
    return np.tile(np.array(colour, np.uint8), (size, size, 1))


def test_green_box_detector_on_constructed_images():
    tissue = _frame()
    box_bl = tissue.copy()
    box_bl[-30:, :30] = GREEN
    half = tissue.copy()
    half[-20:, :10] = 0  # black border in half of the corner square
    half[-20:, 10:20] = GREEN
    box_tr = apply_flip(box_bl, "hv")
    black = np.zeros_like(tissue)
    grey = _frame((128, 128, 128))
    images = np.stack([tissue, box_bl, half, box_tr, black, grey])
    assert artifacts.green_box_flags(images).tolist() == [False, True, True, True, False, False]
    only_bl = artifacts.green_box_flags(images, corners=("bl",))
    assert only_bl.tolist() == [False, True, True, False, False, False]
    assert artifacts.green_box_flags(images).mean() == pytest.approx(0.5)
    masked = artifacts.mask_artifacts(box_bl[None], "none")
    assert not artifacts.green_box_flags(masked)[0]
    with pytest.raises(ValueError, match="corners"):
        artifacts.green_box_flags(images, corners=("top",))


def test_green_box_detector_agrees_with_the_frames_it_was_drawn_on():
    from helpers.data import synthetic

    truth, flags = [], []
    for cls in ("normal-cecum", "normal-pylorus"):
        for i in range(10):
            frame = synthetic.generate_frame(cls, i, seed=0)
            pixels = np.asarray(frame).astype(int)
            near = (np.abs(pixels - np.array(GREEN)).max(axis=-1) < 20).sum()
            truth.append(near > 0.01 * pixels.shape[0] * pixels.shape[1])
            flags.append(artifacts.green_box_flags(crop_resize(frame, 0.95, 96)[None])[0])
    assert any(truth), "no frame with a position box among the drawn ones"
    assert flags == truth


# --- anomaly scores ----------------------------------------------------------------------------


def test_anomaly_auc_on_constructed_scores():
    healthy, polyps = [0.0, 1.0, 2.0, 3.0], [2.5, 4.0, 5.0]
    assert stats.anomaly_auc(healthy, polyps) == pytest.approx(11 / 12)
    assert stats.anomaly_auc([1.0, 2.0], [1.0, 2.0]) == pytest.approx(0.5)  # ties count one half
    assert stats.anomaly_auc([3.0, 4.0], [1.0, 2.0]) == 0.0
    low, high = stats.auc_bootstrap_ci([0, 1, 2], [5, 6, 7], n_boot=200)
    assert low == high == 1.0
    rng = np.random.default_rng(0)
    h, p = rng.normal(0, 1, 200), rng.normal(1, 1, 200)
    auc = stats.anomaly_auc(h, p)
    low, high = stats.auc_bootstrap_ci(h, p, n_boot=300, seed=1)
    assert low < auc < high and 0.65 < auc < 0.85 and high - low < 0.2
    # clustering flipped copies (4 per source) widens the interval
    hg, pg = np.repeat(np.arange(50), 4), np.repeat(np.arange(50), 4)
    h4, p4 = np.repeat(h[:50], 4), np.repeat(p[:50], 4)
    naive = stats.auc_bootstrap_ci(h4, p4, n_boot=300, seed=1)
    grouped = stats.auc_bootstrap_ci(h4, p4, n_boot=300, seed=1, healthy_groups=hg, polyp_groups=pg)
    assert grouped[1] - grouped[0] > 1.4 * (naive[1] - naive[0])
    fpr, tpr = stats.roc_points(healthy, polyps)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    with pytest.raises(ValueError, match="polyp_scores"):
        stats.anomaly_auc([1.0], [])


def test_healthy_only_vae_flags_clearly_different_images():
    rng = np.random.default_rng(0)
    size = 32
    healthy = np.clip(
        np.array([180, 80, 60]) + rng.normal(0, 6, (64, size, size, 3)), 0, 255
    ).astype(np.uint8)
    polyps = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)  # noise, nothing like it
    cfg = EndoVAEConfig(
        latent_dim=4, in_size=size, enc_channels=(8,) * 6, hidden_dim=16, dec_channels=(8,) * 6
    )
    model = fit(
        healthy[:48], TrainConfig(epochs=15, batch_size=16, seed=0, precision="fp32"),
        model_config=cfg, device="cpu", progress=False,
    ).model  # fmt: skip
    h_scores = ab.score_images(model, healthy[48:], device="cpu")[list(ab.ANOMALY_SCORES)]
    p_scores = ab.score_images(model, polyps, device="cpu")[list(ab.ANOMALY_SCORES)]
    assert list(h_scores.columns) == ["mse", "kld", "elbo"]
    assert stats.anomaly_auc(h_scores["mse"], p_scores["mse"]) > 0.9
    assert stats.anomaly_auc(h_scores["elbo"], p_scores["elbo"]) > 0.9
    # the ELBO-like score is the squared-error sum plus the KLD
    expected = h_scores["mse"] * 3 * size * size + h_scores["kld"]
    assert np.allclose(h_scores["elbo"], expected, rtol=1e-5)


def test_masked_scoring_ignores_the_masked_pixels():
    torch.manual_seed(0)
    model = EndoVAE(EndoVAEConfig(enc_channels=(4,) * 6, hidden_dim=8, dec_channels=(4,) * 6))
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    changed = img.copy()
    changed[:, :10, :10] = 255 - changed[:, :10, :10]  # only inside the text strip
    kw = {"mask_input": True, "mask_score": True, "device": "cpu"}
    a = ab.score_images(model, img, "none", **kw)
    b = ab.score_images(model, changed, "none", **kw)
    pd.testing.assert_frame_equal(a, b)
    plain = ab.score_images(model, changed, "none", device="cpu")
    assert not np.allclose(plain["mse"], b["mse"])


def test_study_table_pairs_by_image_and_reports_the_change():
    files = [f"f{i}" for i in range(30)]
    rng = np.random.default_rng(0)
    base = rng.normal(20, 2, 30)
    rows = []
    for entry, shift in (("baseline", 0.0), ("better", 0.5)):
        for f, v in zip(files, base + shift, strict=True):
            rows.append(
                {"entry": entry, "images": ab.HEALTHY_TEST, "file": f, "psnr": v, "ssim": v / 40}
            )
    per_image = pd.DataFrame(rows)
    table = ab.study_table(
        per_image,
        {"baseline": "base", "better": "better"},
        "baseline",
        200,
        0,
        images=[ab.HEALTHY_TEST],
    )
    better = table.set_index("entry").loc["better"]
    assert better["d_psnr_mean"] == pytest.approx(0.5)
    assert better["d_psnr_ci_low"] == pytest.approx(0.5) == better["d_psnr_ci_high"]
    assert better["psnr_ci_low"] < 20.5 < better["psnr_ci_high"]
    assert "higher" in ablation_text.study_text(table, "baseline")
    shown = ablation_text.format_study(table, "baseline")
    assert shown.loc["base", "Δ PSNR [95 % CI]"] == "reference"


def test_results_of_the_tables_are_plain_numbers_by_entry_and_image_set():
    study = pd.DataFrame(
        {"entry": ["baseline", "latent32"], "label": ["base", "latent 32"],
         "images": [ab.HEALTHY_TEST, ab.HEALTHY_TEST], "psnr_mean": [20.0, 21.0],
         "ssim_mean": [0.5, 0.6], "d_psnr_mean": [0.0, 1.0], "d_psnr_ci_low": [0.0, 0.5],
         "d_psnr_ci_high": [0.0, 1.5], "d_ssim_mean": [0.0, 0.1], "d_ssim_ci_low": [0.0, 0.05],
         "d_ssim_ci_high": [0.0, 0.15]}
    )  # fmt: skip
    out = ablation_run.study_results(study)
    assert out["latent32"]["healthy"] == {
        "psnr": 21.0, "ssim": 0.6, "d_psnr": 1.0, "d_psnr_ci_low": 0.5, "d_psnr_ci_high": 1.5,
        "d_ssim": 0.1, "d_ssim_ci_low": 0.05, "d_ssim_ci_high": 0.15,
    }  # fmt: skip
    auc = pd.DataFrame({"arm": ["baseline"], "score": ["mse"], "auc": [0.8], "ci_low": [0.7],
                        "ci_high": [0.9]})  # fmt: skip
    assert ablation_run.anomaly_results(auc) == {
        "baseline": {"mse": {"auc": 0.8, "ci_low": 0.7, "ci_high": 0.9}}
    }
    gap = pd.DataFrame(
        {"metric": ["psnr"] * 3, "images": [ab.HEALTHY_TRAIN, ab.HEALTHY_TEST, "gap"],
         "mean": [21.0, 20.0, 1.0], "ci_low": [20.5, 19.5, 0.2], "ci_high": [21.5, 20.5, 1.8]}
    )  # fmt: skip
    assert ablation_run.gap_results(gap) == {
        "psnr": {"training": 21.0, "held_out": 20.0, "gap": 1.0, "gap_ci_low": 0.2,
                 "gap_ci_high": 1.8}
    }  # fmt: skip
    assert ablation_run.anomaly_results(None) == {} == ablation_run.gap_results(None)


def test_run_arm_resumes_only_on_the_same_data_and_settings(tmp_path):
    arm = ab.Arm("baseline", "baseline")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    kw = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "seed": 0, "checkpoint_dir": tmp_path}
    first = ab.run_arm(arm, images, device="cpu", progress=False, **kw)
    assert first.resumed_from_epoch == 0 and (tmp_path / "baseline.pt").is_file()
    again = ab.run_arm(arm, images, device="cpu", progress=False, **kw)
    assert again.resumed_from_epoch == 1  # nothing left to train
    other = ab.run_arm(arm, images[::-1].copy(), device="cpu", progress=False, **kw)
    assert other.resumed_from_epoch == 0  # other data: trained again from scratch
    stamp = json.loads((tmp_path / "baseline.json").read_text())
    assert stamp["n_images"] == 8 and stamp["train"]["beta"] == 1.0


# --- notebook 08 -----------------------------------------------------------------------------------

NB = paths.notebooks_dir() / "08_ablations.ipynb"
TINY_08 = {
    "abl_epochs": 1,
    "abl_batch_size": 8,
    "abl_max_train_images": 16,
    "abl_n_samples": 8,
    "n_boot": 100,
    "device": "cpu",
    "fid_weights": "none",
}


def test_notebook_08_source_shape():
    nb = nbformat.read(NB, as_version=4)
    nbformat.validate(nb)
    assert all(c.get("id") for c in nb.cells)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "report-skip" in params[0].metadata["tags"]
    src = params[0].source
    for line in (
        'run_dir: str = ""',
        "seed: int = 0",
        'device: str = "auto"',
        'latent_dims: str = "6,32"',  # quick; the paper profile sets 6,32,128
        'betas: str = "1,4"',  # quick; the paper profile sets 0.1,1,4
        "polyp_train_share: float = 0.5",
        "n_boot: int = 1000",
    ):
        assert line in src
    for name in TINY_08:
        assert re.search(rf"^{name}: \w+ = .+  # ", src, re.M), name
    assert all(c.metadata.get("tags") == ["report-skip"] for c in nb.cells[:3])
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"]
    assert "## 10. Beyond the original: ablations" in headings


@pytest.mark.slow
def test_notebook_08_runs_with_tiny_parameters(processed):
    run_dir = processed.parents[1]
    out = run_notebook("08_ablations", run_dir, **TINY_08)
    nb = nbformat.read(out, as_version=4)
    tables, figures = run_dir / "tables", run_dir / "figures"
    arms = pd.read_csv(tables / "ablation_arms.csv")
    default_arms = ab.make_arms([6, 32], [1.0, 4.0])  # the notebook's latent_dims and betas
    assert len(arms) == len(default_arms) == 5
    assert arms["images_seen"].nunique() == 1  # same budget for every arm
    assert (arms["train_polyp_images"] > 0).tolist() == (arms["arm"] == "polyps").tolist()
    per_image = pd.read_csv(tables / "ablation_per_image.csv")
    _, test_rows = load_split(processed, "normal", "test")
    healthy = per_image[per_image["images"] == ab.HEALTHY_TEST]
    assert set(healthy["file"]) == set(test_rows["file"])
    for name in ("latent", "beta", "artifacts", "polyps", "anomaly", "split", "green_box"):
        frame = pd.read_csv(tables / f"ablation_{name}.csv")
        assert len(frame) > 0 and frame.select_dtypes("number").notna().any().all(), name
    auc = pd.read_csv(tables / "ablation_anomaly.csv")
    assert auc["auc"].between(0, 1).all() and (auc["ci_low"] <= auc["ci_high"]).all()
    for stem in ("fig10_latent_samples", "fig11_beta_loss", "fig12_beta_samples",
                 "fig13_artifacts", "fig14_polyp_recon", "fig15_anomaly_roc"):  # fmt: skip
        with Image.open(figures / f"{stem}.png") as img:
            assert img.width > 300 and img.height > 150
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert [int(n) for n in re.findall(r"\*\*Figure (\d+):", text)] == list(range(10, 16))
    assert [int(n) for n in re.findall(r"\*\*Table (\d+):", text)] == list(range(4, 12))
    outputs = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "Error" not in outputs and "In this run" in outputs
    results = read_results(run_dir, "08")
    assert results["tables"] == sorted(p.name for p in tables.glob("ablation_*.csv"))
    latent = pd.read_csv(tables / "ablation_latent.csv").set_index(["entry", "images"])
    got = results["studies"]["latent"]["latent32"]["polyps"]["psnr"]
    assert got == pytest.approx(latent.loc[("latent32", ab.POLYPS_EVAL), "psnr_mean"])
    base_mse = auc.set_index(["arm", "score"]).loc[("baseline", "mse"), "auc"]
    assert results["anomaly_auc"]["baseline"]["mse"]["auc"] == pytest.approx(base_mse)
    quality = results["quality"]  # Table S12: every arm against the held-out healthy images
    arm_labels = [a.label for a in default_arms]
    assert list(quality["rows"]) == [*quality["scale_rows"], *arm_labels]
    assert quality["rows"]["real vs real (floor)"]["fd"] < quality["rows"]["mean image"]["fd"]
    assert "**Table S12:**" in text and "Sample quality." in outputs


def test_collapse_note_names_only_the_collapsed_arms():
    per_image = pd.DataFrame(
        {
            "entry": ["baseline", "baseline", "latent32", "baseline (masked scoring)"],
            "arm": ["baseline", "baseline", "latent32", "baseline"],
            "images": [ab.HEALTHY_TEST, ab.HEALTHY_TEST, ab.HEALTHY_TEST, ab.HEALTHY_TEST],
            "kld": [0.1, 0.3, 12.0, 99.0],
        }
    )
    means = ab.mean_kld(per_image)
    assert means == pytest.approx({"baseline": 0.2, "latent32": 12.0})
    note = ablation_text.collapse_text(means, {"baseline": "base", "latent32": "latent 32"})
    assert "1 of 2 arms" in note and "base 0.20" in note and "latent 32" not in note
    assert ablation_text.collapse_text({"latent32": 12.0}, {}) == ""


def test_loss_curves_switch_to_log_scale_for_wide_ranges(tmp_path):
    import matplotlib.pyplot as plt

    hist = {
        "a": pd.DataFrame(
            {"epoch": [1, 2], "recon": [5.0, 4.0], "kld": [8e4, 2.0], "total": [9.0, 6.0]}
        ),
        "b": pd.DataFrame(
            {"epoch": [1, 2], "recon": [6.0, 5.0], "kld": [3.0, 1.0], "total": [9.0, 6.0]}
        ),
    }
    fig = plots.plot_histories(hist, path=tmp_path / "curves.png")
    scales = [ax.get_yscale() for ax in fig.axes]
    plt.close(fig)
    assert scales == ["linear", "log", "linear"] and (tmp_path / "curves.png").is_file()
