"""Tests for helpers.evaluate.metrics: PSNR/SSIM against analytic values and scikit-image, bootstrap CIs."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFilter

from helpers.core import stats
from helpers.evaluate import metrics
from helpers.evaluate.qualitative import plateau_display
from helpers.narrative import reconstruction as reconstruction_text


def _random_pair(n=6, size=(96, 96), noise=0.1, seed=0):
    """Random images and a noisy copy, both in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, *size, generator=g)
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def _real_pairs(folder, n=8):
    """Real Kvasir frames resized to 96x96, and a blurred + noisy version of each."""
    rng = np.random.default_rng(0)
    originals, degraded = [], []
    for path in sorted(folder.glob("*.jpg"))[:n]:
        img = Image.open(path).convert("RGB").resize((96, 96), Image.BILINEAR)
        blurred = np.asarray(img.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float64) / 255
        noisy = np.clip(blurred + rng.normal(0, 0.03, blurred.shape), 0, 1)
        originals.append(np.asarray(img, dtype=np.float64) / 255)
        degraded.append(noisy)
    to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float()  # noqa: E731
    return to_t(originals), to_t(degraded)


def test_psnr_identical_is_inf():
    x, _ = _random_pair()
    assert torch.isinf(metrics.psnr(x, x)).all()


@pytest.mark.parametrize("d", [0.01, 0.05, 0.2])
def test_psnr_constant_offset_matches_analytic(d):
    x = 0.25 + 0.5 * torch.rand(4, 3, 32, 32)
    got = metrics.psnr(x, x + d)
    assert torch.allclose(got, torch.full((4,), 10 * math.log10(1 / d**2)), atol=1e-3)
    got255 = metrics.psnr(255 * x, 255 * x + 255 * d, data_range=255.0)
    assert torch.allclose(got255, got, atol=1e-3)


def test_ssim_identical_is_one_and_falls_with_noise():
    x, _ = _random_pair()
    assert torch.allclose(metrics.ssim(x, x), torch.ones(len(x)), atol=1e-5)
    values = [float(metrics.ssim(*_random_pair(noise=s)).mean()) for s in (0.02, 0.1, 0.3)]
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("size", [(96, 96), (40, 57)])
def test_batched_metrics_agree_with_skimage_on_random_images(size):
    x, y = _random_pair(n=5, size=size, noise=0.15, seed=1)
    np.testing.assert_allclose(metrics.ssim(x, y).numpy(), metrics.ssim_skimage(x, y), atol=1e-4)
    np.testing.assert_allclose(metrics.psnr(x, y).numpy(), metrics.psnr_skimage(x, y), atol=1e-4)


def test_batched_metrics_agree_with_skimage_on_real_images(kvasir_sample):
    x, y = _real_pairs(kvasir_sample)
    ours, ref = metrics.ssim(x, y).numpy(), metrics.ssim_skimage(x, y)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert 0.2 < ref.min() and ref.max() < 0.99  # a realistic, non-trivial range
    np.testing.assert_allclose(metrics.psnr(x, y).numpy(), metrics.psnr_skimage(x, y), atol=1e-4)


def test_image_metrics_batches_match_one_call():
    x, y = _random_pair(n=7)
    table = metrics.image_metrics(x, y, batch_size=3)
    assert list(table.columns) == ["psnr", "ssim"] and len(table) == 7
    np.testing.assert_allclose(table["ssim"], metrics.ssim_skimage(x, y), atol=1e-4)


def test_metric_input_errors():
    x, _ = _random_pair(n=2)
    with pytest.raises(ValueError, match="same shape"):
        metrics.ssim(x, x[:1])
    with pytest.raises(ValueError, match="win_size=11"):
        metrics.ssim(x[..., :8, :8], x[..., :8, :8])
    with pytest.raises(ValueError, match="N x C x H x W"):
        metrics.psnr(x[0], x[0])


def test_bootstrap_ci_contains_mean_and_narrows_with_n():
    rng = np.random.default_rng(42)
    small, large = rng.normal(10, 2, 20), rng.normal(10, 2, 2000)
    for values in (small, large):
        low, high = stats.bootstrap_ci(values)
        assert low < values.mean() < high
    width = lambda v: np.subtract(*stats.bootstrap_ci(v)[::-1])  # noqa: E731
    assert width(large) < width(small) / 5
    normal_theory = 2 * 1.959964 * large.std(ddof=1) / math.sqrt(large.size)
    assert width(large) == pytest.approx(normal_theory, rel=0.15)
    assert stats.bootstrap_ci(small, seed=3) == stats.bootstrap_ci(small, seed=3)


def test_bootstrap_and_summary_errors():
    with pytest.raises(ValueError, match="at least one"):
        stats.bootstrap_ci([])
    with pytest.raises(ValueError, match="non-finite"):
        stats.summarize([1.0, float("inf")])
    with pytest.raises(ValueError, match="ci="):
        stats.bootstrap_ci([1.0, 2.0], ci=1.5)


def test_summarize_uses_sample_std():
    values = [16.1, 14.9, 19.3, 17.7, 12.2]
    s = stats.summarize(values)
    assert s["std"] == pytest.approx(statistics.stdev(values))
    assert s["mean"] == pytest.approx(statistics.fmean(values))
    assert s["n"] == 5 and s["ci_low"] < s["mean"] < s["ci_high"]


def test_paired_difference():
    rng = np.random.default_rng(0)
    b = rng.normal(16, 2, 50)
    a = b + 0.5 + rng.normal(0, 0.1, 50)
    out = stats.paired_difference(a, b)
    assert out["mean"] == pytest.approx(np.mean(a - b))
    assert out["ci_excludes_zero"] and out["share_a_better"] == 1.0
    same = stats.paired_difference(b + rng.normal(0, 0.1, 50), b)
    assert not same["ci_excludes_zero"]


def test_metrics_table_layout_and_values():
    rng = np.random.default_rng(1)
    per_image = pd.DataFrame({"psnr": rng.normal(17, 2, 50), "ssim": rng.uniform(0.3, 0.6, 50)})
    table = metrics.metrics_table(per_image)
    assert list(table.index) == ["PSNR", "SSIM"]
    assert list(table.columns) == ["Mean", "Standard Deviation"]
    assert table.loc["SSIM", "Standard Deviation"] == pytest.approx(
        statistics.stdev(per_image["ssim"])
    )
    ext = metrics.metrics_table(per_image, extended=True)
    assert {"95 % CI low", "95 % CI high", "n"} <= set(ext.columns)
    assert (ext["95 % CI low"] < ext["Mean"]).all() and (ext["Mean"] < ext["95 % CI high"]).all()
    with pytest.raises(ValueError, match="ssim"):
        metrics.metrics_table(per_image[["psnr"]])


def test_extended_table_groups():
    rng = np.random.default_rng(2)
    per_image = pd.DataFrame(
        {
            "model": ["MSE"] * 30 + ["BCE"] * 30,
            "images": (["polyps"] * 10 + ["healthy"] * 20) * 2,
            "psnr": rng.normal(17, 2, 60),
            "ssim": rng.uniform(0.3, 0.6, 60),
        }
    )
    table = metrics.extended_table(per_image)
    assert len(table) == 4
    row = table[(table["model"] == "BCE") & (table["images"] == "healthy")].iloc[0]
    assert row["n"] == 20
    assert row["PSNR mean"] == pytest.approx(per_image["psnr"].iloc[40:].mean())


def _two_model_table(shift=0.5, seed=3):
    """Per-image values of two models on the same polyp and healthy images (MSE shifted up)."""
    rng = np.random.default_rng(seed)
    frames = []
    for images, n, base in (("polyps (all)", 20, 15.0), ("healthy (held-out)", 10, 18.0)):
        psnr = rng.normal(base, 1.0, n)
        ssim = rng.uniform(0.3, 0.5, n)
        files = [f"{images[:3]}_{i}.png" for i in range(n)]
        for model, dp in (("MSE", shift), ("BCE", 0.0)):
            frames.append(
                pd.DataFrame(
                    {
                        "model": model,
                        "images": images,
                        "file": files,
                        "psnr": psnr + dp,
                        "ssim": ssim,
                    }
                )
            )
    per_image = pd.concat(frames, ignore_index=True)
    eval_rows = per_image[per_image["images"] == "polyps (all)"].head(40)
    return pd.concat([eval_rows.assign(images="polyps (20 random)"), per_image], ignore_index=True)


def test_discussion_text_reports_this_runs_numbers():
    per_image = _two_model_table()
    text = reconstruction_text.discussion_text(
        per_image, "polyps (20 random)", ["healthy (held-out)"], {"MSE": 5, "BCE": 5}, True
    )
    mse_mean = per_image[(per_image.model == "MSE") & (per_image.images == "polyps (20 random)")]
    assert f"{mse_mean['psnr'].mean():.2f} dB (MSE)" in text
    assert "the MSE model is higher by 0.50 dB" in text and "excludes 0" in text
    assert "equal at this precision" in text  # SSIM identical for both models
    assert "reconstruct the unseen polyps worse" in text  # healthy at 18 dB vs polyps at 15 dB
    assert "Kvasir-like" in text and "MSE: 5, BCE: 5 epochs" in text
    quiet = reconstruction_text.discussion_text(
        per_image, "polyps (20 random)", [], {"MSE": 3000, "BCE": 3000}, False
    )
    assert "Kvasir-like" not in quiet and "epochs" not in quiet and "Healthy vs" not in quiet


def test_paired_and_formatted_tables():
    per_image = _two_model_table(shift=1.0)
    paired = metrics.paired_table(per_image, n_boot=300)
    row = paired[(paired["images"] == "polyps (all)") & (paired["metric"] == "PSNR")].iloc[0]
    assert row["mean MSE - BCE"] == pytest.approx(1.0) and row["n"] == 20
    shown = metrics.format_paired(paired)
    assert shown.index.name == "Images" and shown["Mean MSE - BCE"].iloc[0] == "+1.00"
    ext = metrics.format_extended(metrics.extended_table(per_image, n_boot=300))
    assert ext.index.name == "Model"  # shown as the row label, not a 0..n index
    assert list(ext.columns) == [
        "Images", "n", "PSNR (dB)", "PSNR 95 % CI", "SSIM", "SSIM 95 % CI"
    ]  # fmt: skip
    assert " ± " in ext["PSNR (dB)"].iloc[0] and ext["SSIM 95 % CI"].iloc[0].startswith("[")


def test_with_original_and_embedded_detection(tmp_path):
    table = metrics.metrics_table(pd.DataFrame({"psnr": [15.0, 17.0], "ssim": [0.4, 0.5]}))
    out = metrics.with_original(table, "bce")
    assert out.loc["PSNR", "Original Mean"] == pytest.approx(16.584135)
    assert out.loc["SSIM", "Original Standard Deviation"] == pytest.approx(0.093633)
    with pytest.raises(ValueError, match="model='vgg'"):
        metrics.with_original(table, "vgg")
    kvasir = pd.DataFrame({"source_file": ["/data/kvasir-dataset/polyps/a.jpg"]})
    assert not metrics.data_is_embedded(kvasir)
    assert metrics.data_is_embedded(pd.DataFrame({"source_file": ["/d/kvasir-like/polyps/a.png"]}))
    stamped = tmp_path / "frames" / "polyps"
    stamped.mkdir(parents=True)
    (tmp_path / "frames" / "SYNTHETIC.json").write_text("{}")
    assert metrics.data_is_embedded(pd.DataFrame({"source_file": [str(stamped / "a.png")]}))


def test_edge_energy_lower_for_blurred_images():
    x, _ = _random_pair(n=3)
    blurred = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2)
    assert (metrics.edge_energy(blurred) < metrics.edge_energy(x)).all()
    text = reconstruction_text.samples_text({"MSE": blurred}, x)
    assert "MSE model's 3 samples" in text


def test_one_bootstrap_is_seeded_and_shared_by_every_interval():
    values = np.random.default_rng(5).normal(10, 2, 40)
    low, high = stats.bootstrap_ci(values, n_boot=500, seed=7)
    assert (low, high) == stats.bootstrap_ci(values, n_boot=500, seed=7)
    assert low < values.mean() < high
    assert (low, high) != stats.bootstrap_ci(values, n_boot=500, seed=8)
    # paired and unpaired differences draw from the same resampler
    paired = stats.paired_difference(values, np.zeros_like(values), n_boot=500, seed=7)
    assert (paired["ci_low"], paired["ci_high"]) == (low, high)
    unpaired = stats.unpaired_difference(values, [0.0], n_boot=500, seed=7)
    assert (unpaired["ci_low"], unpaired["ci_high"]) == (low, high)
    assert unpaired["mean"] == pytest.approx(values.mean())


def test_sample_and_recon_stats_feed_the_text():
    x, y = _random_pair(n=4)
    stats_ = metrics.sample_stats({"MSE": y}, x)["MSE"]
    assert stats_["n"] == 4 and stats_["spread"] == pytest.approx(float(y.std(dim=0).mean()))
    text = reconstruction_text.samples_text({"MSE": y}, x)
    assert f"{stats_['spread']:.3f}" in text and f"{stats_['edge_share_pct']:.0f} %" in text
    recon = metrics.recon_stats(x, {"MSE": x, "BCE": y})
    assert recon["MSE"] == {"mae": 0.0, "edge_share_pct": pytest.approx(100.0)}
    text = reconstruction_text.recon_text({"polyp images": (x, {"MSE": x, "BCE": y})})
    assert "on the 4 polyp images shown, MSE model: mean absolute error 0.000, 100 %" in text
    assert reconstruction_text.healthy_source_text("training", 7) == (
        "The healthy images come from the training split (7 images)."
    )


def test_eval_pick_and_the_original_tables():
    from helpers.evaluate import evaluation

    pick = evaluation.eval_pick(30, 20, False, 0, "processed")
    assert len(pick) == 20 and (np.diff(pick) > 0).all()
    assert (pick == evaluation.eval_pick(30, 20, False, 0, "processed")).all()
    with pytest.raises(ValueError, match="n_eval_polyps=40: only 30 polyp images in processed"):
        evaluation.eval_pick(30, 40, False, 0, "processed")
    with pytest.warns(UserWarning, match="allow_fewer=True"):
        assert len(evaluation.eval_pick(30, 40, True, 0, "processed")) == 30
    assert evaluation.eval_set_name(20) == "polyps (20 random)"
    per_image = _two_model_table()
    tables = evaluation.original_tables(per_image, "polyps (20 random)")
    assert list(tables) == ["MSE", "BCE"]
    assert tables["BCE"].loc["PSNR", "Original Mean"] == pytest.approx(16.584135)


def test_evaluation_results_hold_the_tables_numbers():
    from helpers.evaluate import evaluation

    per_image = _two_model_table()
    tables = evaluation.original_tables(per_image, "polyps (20 random)")
    extended = metrics.extended_table(per_image, n_boot=200)
    paired = metrics.paired_table(per_image, n_boot=200)
    found = evaluation.results(tables, extended, paired)
    assert set(found["models"]) == {"mse", "bce"}
    for label, key in (("MSE", "mse"), ("BCE", "bce")):
        for metric, row in (("psnr", "PSNR"), ("ssim", "SSIM")):
            assert found["models"][key][metric] == {
                "mean": tables[label].loc[row, "Mean"],
                "std": tables[label].loc[row, "Standard Deviation"],
            }
    held = found["extended"]["bce"]["healthy (held-out)"]
    assert held["n"] == 10 and held["psnr"]["ci_low"] <= held["psnr"]["mean"]
    assert found["paired"]["polyps (all)"]["psnr"]["mean_mse_minus_bce"] == pytest.approx(0.5)


def _plateau_inputs(recon: torch.Tensor, n: int = 40):
    """History, samples and held-out images around `recon` for metrics.plateau_check."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 16, 16, generator=gen) * 0.6 + 0.2
    mean_image = x.mean(0, keepdim=True)
    history = pd.DataFrame({"kld": [400.0]})  # 50 nats per image at batch 8
    samples = torch.rand(9, 3, 16, 16, generator=gen)
    return history, samples, x, recon(x), mean_image


def test_a_one_colour_model_fails_the_plateau_check():
    """KL and sample spread pass, but it paints the mean colour for every input: the per-image
    share (and the PSNR gain) must fail it."""
    history, samples, x, recon, mean_image = _plateau_inputs(
        lambda x: x.mean((0, 2, 3), keepdim=True).expand_as(x)
    )
    check = metrics.plateau_check(history, 8, samples, x, recon, mean_image)
    assert check["KL per image (nats)"] >= metrics.PLATEAU_KL_PER_IMAGE
    assert check["sample spread"] >= metrics.PLATEAU_SAMPLE_SPREAD
    assert check["images beating the mean (%)"] < 90
    assert check["past the plateau"] == "no"


def test_a_model_that_beats_the_mean_on_most_images_only_on_average_fails():
    """Injected per-image values: near-perfect on half the images, worse than the mean on the
    rest; the mean PSNR gain is large but only 50 % of the images beat the mean image."""

    def recon(x):
        out = x.clone()
        out[1::2] = 1.0 - x[1::2]
        return out

    history, samples, x, recon_x, mean_image = _plateau_inputs(recon)
    check = metrics.plateau_check(history, 8, samples, x, recon_x, mean_image)
    assert check["PSNR gain (dB)"] >= metrics.PLATEAU_PSNR_GAIN_DB
    assert check["images beating the mean (%)"] == pytest.approx(50.0)
    assert check["past the plateau"] == "no"


def test_a_model_that_follows_its_inputs_passes_the_plateau_check():
    history, samples, x, recon, mean_image = _plateau_inputs(
        lambda x: x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    )
    check = metrics.plateau_check(history, 8, samples, x, recon, mean_image)
    assert check["images beating the mean (%)"] == 100.0
    assert check["PSNR gain (dB)"] >= metrics.PLATEAU_PSNR_GAIN_DB
    assert check["past the plateau"] == "yes"


def test_table_s10_shows_one_column_per_model_and_its_text_names_every_criterion():
    """The PDF's Table S10 is two columns of three-decimal numbers and the verdict; the paragraph
    under it gives each value with its threshold, the share beating the mean image too."""
    history, samples, x, recon, mean_image = _plateau_inputs(
        lambda x: x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    )
    check = metrics.plateau_check(history, 8, samples, x, recon, mean_image)
    checks = pd.DataFrame({"MSE": check, "BCE": check}).T
    shown = plateau_display(checks)
    assert list(shown.columns) == ["MSE", "BCE"] and shown.loc["past the plateau", "BCE"] == "yes"
    assert shown.loc["images beating the mean (%)", "MSE"] == "100.000"
    text = reconstruction_text.plateau_text(checks)
    assert "beats the mean image on 100 % of them one by one (at least 90 %)" in text
    assert f"(at least {metrics.PLATEAU_PSNR_GAIN_DB:g} dB above it)" in text
