"""Papermill smoke tests of notebooks 05-07 with tiny parameters, and their structure."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import run_notebook
from PIL import Image

from helpers.core import paths
from helpers.core.results import read_results

NOTEBOOKS = ("05_generation_reconstruction", "06_metrics", "07_classifier_bonus")
UPSTREAM = ("01_preprocessing", "03_train_mse", "04_train_bce")
TINY = {
    "05_generation_reconstruction": {"n_show": 4, "fid_weights": "none"},
    "06_metrics": {"n_eval_polyps": 8, "n_boot": 200},
    "07_classifier_bonus": {
        "n_pairs": 10,
        "n_clf_train": 6,
        "n_clf_test": 4,
        "clf_epochs": 2,
        "weights": "none",
    },
}


def _write_fake_frames(root, n=12):
    """Kvasir-like class folders of small random smooth RGB frames (healthy classes + polyps)."""
    from helpers.core.classes import ALL_CLASSES

    rng = np.random.default_rng(0)
    dirs = {}
    for k, name in enumerate(ALL_CLASSES):
        folder = root / "kvasir-like" / name
        folder.mkdir(parents=True)
        for i in range(n):
            base = rng.uniform(0, 255, (6, 7, 3)).astype(np.uint8)
            img = Image.fromarray(base).resize((140, 120), Image.BICUBIC)
            img.save(folder / f"{name}_{k}_{i:02d}.png")
        dirs[name] = folder
    return dirs


def _fake_run(base):
    """A run folder as notebooks 01, 03 and 04 leave it (untrained models, random frames)."""
    import torch

    from helpers.data.preprocess import preprocess
    from helpers.model.endovae import EndoVAE
    from helpers.train.checkpoint import save_checkpoint

    run = paths.RunPaths(base / "run").ensure()
    dirs = _write_fake_frames(base / "data")
    preprocess(dirs, run.processed, workers=1, progress=False, healthy_test_fraction=0.25)
    for i, name in enumerate(("mse", "bce")):
        torch.manual_seed(i)
        save_checkpoint(run.checkpoint(name), EndoVAE(), epoch=1, train_config={"loss": name})
    return run.root


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A hand-built run folder (seconds to make; untrained models)."""
    return _fake_run(tmp_path_factory.mktemp("fake_run"))


@pytest.fixture(scope="module")
def eval_run(request, fake_run):
    """tiny_run when notebooks 01, 03 and 04 exist, else the hand-built run folder."""
    if all((paths.notebooks_dir() / f"{n}.ipynb").is_file() for n in UPSTREAM):
        return request.getfixturevalue("tiny_run")
    return fake_run


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_parameters(name):
    """Notebooks 05-07 take a device (generic shape: test_notebooks_clean.py)."""
    params = nbformat.read(paths.notebooks_dir() / f"{name}.ipynb", as_version=4).cells[3].source
    assert "device: str = " in params


def _sources(name):
    """All cell sources of a notebook, joined."""
    nb = nbformat.read(paths.notebooks_dir() / f"{name}.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells)


def assert_in_order(text: str, items: list[str]) -> None:
    """Every item occurs in text, in the given order."""
    positions = [text.index(s) for s in items]
    assert positions == sorted(positions), items


def test_headings_and_captions_in_order():
    text = _sources("05_generation_reconstruction")
    order = [
        "## 6. Qualitative generation and reconstruction",
        "### 6.1 Generation",
        "**Figure 5:** Samples generated from noise by the MSE model.",
        "**Figure 6:** Samples generated from noise by the BCE model.",
        "**Table S10:**",
        "### 6.1.1 Sample quality",
        "**Table S11:** Sample quality",
        "### 6.2 Reconstruction",
        "**Figure 7:** A few samples of healthy images along with their reconstruction by the two models.",
        "**Figure 8:** A few samples of polyp images along with their reconstruction by the two models.",
    ]
    assert_in_order(text, order)
    text = _sources("06_metrics")
    order = [
        "## 7. Quantitative evaluation",
        "**Table 1:** Evaluation metrics of the VAE model trained with MSE loss.",
        "**Table 2:** Evaluation metrics of the VAE model trained with BCE loss.",
        "**Table 2b:**",
        "## 8. Result analysis and discussion",
    ]
    assert_in_order(text, order)
    text = _sources("07_classifier_bonus")
    assert text.index("## 9. Bonus: classifier training") < text.index("**Table 3:** Evaluation")
    assert "**Figure 9:** ROC curves of the real-vs-reconstructed classifiers." in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_last_cell_writes_the_results_once(name):
    """The report-skip artifacts cell, and only it, writes results/NN.json."""
    cells = nbformat.read(paths.notebooks_dir() / f"{name}.ipynb", as_version=4).cells
    writers = [i for i, c in enumerate(cells) if "write_results(" in c.source]
    assert writers == [len(cells) - 1], f"{name}: cells {writers} call write_results"
    assert "report-skip" in cells[-1].metadata.get("tags", [])
    assert f'write_results(paths.root, "{name[:2]}"' in cells[-1].source


def _outputs_text(executed):
    """All text/markdown outputs of an executed notebook."""
    nb = nbformat.read(executed, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            parts.append(
                out.get("text", "") + data.get("text/markdown", "") + data.get("text/plain", "")
            )
    return "\n".join(parts)


@pytest.mark.slow
def test_notebooks_05_07_run(eval_run):
    import torch

    from helpers.data.processed import load_split, to_tensor
    from helpers.evaluate.metrics import psnr_skimage, ssim_skimage
    from helpers.train.checkpoint import load_checkpoint

    run = paths.RunPaths(eval_run)
    for name in NOTEBOOKS:
        run_notebook(name, eval_run, **TINY[name])
    for fig in (
        "fig05_samples_mse",
        "fig06_samples_bce",
        "fig07_recon_healthy",
        "fig08_recon_polyps",
        "fig09_roc",
    ):
        with Image.open(run.figures / f"{fig}.png") as img:
            assert min(img.size) > 100
    # Table 1 is the mean/std of the per-image values, and those match skimage recomputed here.
    per_image = pd.read_csv(run.tables / "metrics_per_image.csv")
    table1 = pd.read_csv(run.tables / "table1_mse.csv", index_col="Metric")
    eval_set = "polyps (8 random)"
    mse_eval = per_image[(per_image["model"] == "MSE") & (per_image["images"] == eval_set)]
    assert len(mse_eval) == 8 and mse_eval["file"].is_unique
    assert table1.loc["PSNR", "Mean"] == pytest.approx(mse_eval["psnr"].mean())
    assert table1.loc["SSIM", "Standard Deviation"] == pytest.approx(mse_eval["ssim"].std(ddof=1))
    assert table1.loc["PSNR", "Original Mean"] == pytest.approx(16.952047)
    bce_eval = per_image[(per_image["model"] == "BCE") & (per_image["images"] == eval_set)]
    assert set(bce_eval["file"]) == set(mse_eval["file"])
    polyps, rows = load_split(run.processed, "polyps")
    pos = rows.index[rows["file"] == mse_eval["file"].iloc[0]][0]
    model, _ = load_checkpoint(run.checkpoint("mse"), "cpu")
    x = to_tensor(polyps[pos : pos + 1])
    with torch.no_grad():
        recon = model.decode(model.encode(x)[0])
    assert mse_eval["psnr"].iloc[0] == pytest.approx(psnr_skimage(x, recon)[0], abs=1e-3)
    assert mse_eval["ssim"].iloc[0] == pytest.approx(ssim_skimage(x, recon)[0], abs=1e-3)
    extended = pd.read_csv(run.tables / "table2b_extended.csv")
    assert {"polyps (all)", "healthy (train)"} <= set(extended["images"])
    paired = pd.read_csv(run.tables / "paired_mse_vs_bce.csv")
    assert (paired["CI low"] <= paired["CI high"]).all()
    table3 = pd.read_csv(run.tables / "table3_classifier.csv", index_col="Metric")
    assert list(table3.columns[:2]) == ["Classifier for MSE VAE", "Classifier for BCE VAE"]
    assert table3.loc["Accuracy"].iloc[:2].between(0, 1).all()
    found = read_results(eval_run, "06")["models"]
    for key, table in (
        ("mse", table1),
        ("bce", pd.read_csv(run.tables / "table2_bce.csv", index_col=0)),
    ):
        for metric in ("psnr", "ssim"):
            row = table.loc[metric.upper()]
            assert found[key][metric] == pytest.approx(
                {"mean": row["Mean"], "std": row["Standard Deviation"]}
            )
    found = read_results(eval_run, "07")
    assert found["pretrained"] is False
    for key, column in (("mse", "Classifier for MSE VAE"), ("bce", "Classifier for BCE VAE")):
        assert found["models"][key]["accuracy"] == pytest.approx(table3.loc["Accuracy", column])
        assert found["models"][key]["auc"] == pytest.approx(table3.loc["AUC", column])
    plateau = pd.read_csv(run.tables / "plateau_check.csv", index_col=0)
    found = read_results(eval_run, "05")["plateau"]
    assert set(found) == {"mse", "bce"}
    assert found["bce"]["kl_per_image"] == pytest.approx(plateau.loc["BCE", "KL per image (nats)"])
    assert found["mse"]["past_plateau"] == (plateau.loc["MSE", "past the plateau"] == "yes")
    quality = read_results(eval_run, "05")["quality"]  # Table S11
    rows = quality["rows"]
    assert list(rows) == [*quality["scale_rows"], "MSE model", "BCE model"]
    assert quality["label"] == "FD (run features)" and "held-out healthy" in quality["real"]
    # At this tiny size (a few frames per set) the scale's order is noise; the end-to-end test
    # checks it on the quick run's 72 held-out frames.
    assert all(r["fd"] >= 0 and r["kid_se"] >= 0 for r in rows.values())
    assert len({r["n"] for r in rows.values()}) == 1  # every set at the same size
    table = pd.read_csv(run.tables / "sample_quality.csv", index_col="set")
    assert table.loc["BCE model", "FD"] == pytest.approx(rows["BCE model"]["fd"])
    text = _outputs_text(run.executed / "05_generation_reconstruction.ipynb")
    assert "Sample quality." in text and "not comparable with published FID" in text
    text = _outputs_text(run.executed / "07_classifier_bonus.ipynb")
    assert "No ImageNet weights" in text and "from scratch" in text
    text = _outputs_text(run.executed / "06_metrics.ipynb")
    assert "MSE vs BCE" in text and "Kvasir-like" in text


def test_notebook_errors_name_parameter_and_producer(fake_run, tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="n_eval_polyps=100000"):
        run_notebook("06_metrics", fake_run, n_eval_polyps=100000)
    with pytest.raises(pm.PapermillExecutionError, match="03_train_mse"):
        run_notebook("05_generation_reconstruction", tmp_path / "empty")
    meta = json.loads((paths.notebooks_dir() / "07_classifier_bonus.ipynb").read_text())["metadata"]
    assert meta["kernelspec"]["name"] == "python3"
