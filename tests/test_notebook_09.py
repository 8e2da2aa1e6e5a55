"""Notebook 09 (synthetic training data): structure, a papermill smoke run, split and provenance."""

from __future__ import annotations

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import run_notebook
from PIL import Image
from test_notebooks_05_07 import _fake_run, _outputs_text, _sources, assert_in_order

from helpers.core import paths
from helpers.core.results import read_results

NAME = "09_synthetic_data"
TINY = {
    "gen_epochs": 1,
    "gen_batch_size": 16,
    "clf_epochs": 1,
    "clf_batch_size": 16,
    "weights": "none",
    "n_boot": 100,
    "precision": "fp32",
    "device": "cpu",
    "fid_weights": "none",
}


@pytest.fixture(scope="module")
def run09(tmp_path_factory):
    """A hand-built run folder (notebook 01's images, untrained 03/04 models) after notebook 09."""
    root = _fake_run(tmp_path_factory.mktemp("nb09"))
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")  # tiny tensors: a second thread only waits on busy cores
    try:
        out = run_notebook(NAME, root, **TINY)
    finally:
        mp.undo()
    return paths.RunPaths(root), out


def test_headings_and_captions_in_order():
    order = [
        "## 11. Synthetic training data",
        "**Figure 16:**",
        "**Table S13:**",
        "**Table 12:**",
        "**Figure 17:**",
        "**Table 13:**",
        "**Figure 18:**",
    ]
    assert_in_order(_sources(NAME), order)


def test_notebook_runs_and_writes_its_outputs(run09):
    run, executed = run09
    table = pd.read_csv(run.tables / "table12_synthetic.csv", index_col="Training data")
    assert list(table.index) == ["real only", "synthetic only", "real + synthetic"]
    for col in ("accuracy", "auc"):
        assert table[col].between(0, 1).all()
        assert (table[f"{col}_low"] <= table[col] + 1e-12).all()
        assert (table[col] <= table[f"{col}_high"] + 1e-12).all()
    assert (
        table.loc["real + synthetic", "training images"]
        == 2 * table.loc["real only", "training images"]
    )
    assert table.loc["synthetic only", "paper_auc"] == pytest.approx(0.819)
    for fig in ("fig16_synthetic_samples", "fig17_synthetic_roc", "fig18_latent_traversal"):
        with Image.open(run.figures / f"{fig}.png") as img:
            assert min(img.size) > 100
    text = _outputs_text(executed)
    assert "held-out real frames" in text and "81.9" in text
    quality = read_results(run.root, "09")["quality"]  # Table S13: one scale per class model
    assert sorted(quality) == ["healthy", "polyps"]
    for name, found in quality.items():
        assert list(found["rows"]) == [*found["scale_rows"], f"{name} model"]
        assert found["rows"]["real vs real (floor)"]["fd"] < found["rows"]["mean image"]["fd"]
    shown = pd.read_csv(run.tables / "synthetic_quality.csv", index_col=["model", "set"])
    assert shown.loc[("polyps", "polyps model"), "FD"] == pytest.approx(
        quality["polyps"]["rows"]["polyps model"]["fd"]
    )
    assert "Sample quality." in text and "polyps model's" in text
    rows = read_results(run.root, "09")["classifiers"]
    assert sorted(rows) == sorted(table.index)  # exactly Table 12's rows (JSON keys are sorted)
    for name, row in rows.items():
        for key in ("auc", "auc_low", "auc_high", "accuracy"):
            assert row[key] == pytest.approx(table.loc[name, key]), (name, key)


def test_split_is_disjoint_by_source_frame(run09):
    run, _ = run09
    split = pd.read_csv(run.tables / "synthetic_split.csv")
    for cls, rows in split.groupby("class"):
        train = set(rows.loc[rows["role"] == "train", "source_id"])
        test = set(rows.loc[rows["role"] == "test", "source_id"])
        assert train and test, cls
        assert not train & test, cls
    manifest = pd.read_csv(run.manifest)
    polyps = manifest[manifest["group"] == "polyps"]
    assert set(split.loc[split["class"] == "polyps", "source_id"]) <= set(polyps["source_id"])


def test_no_synthetic_frame_from_a_model_that_saw_a_test_frame(run09):
    """Each synthetic frame names its checkpoint; that model's training data digest equals the
    digest of exactly the training sources of the split (so it saw no test frame)."""
    from helpers.core.fingerprint import file_digest
    from helpers.data.processed import load_split
    from helpers.study.ablations import flipped_variants
    from helpers.train.checkpoint import read_checkpoint
    from helpers.train.fit import data_fingerprint
    from helpers.train.infer import images_to_tensor

    run, _ = run09
    split = pd.read_csv(run.tables / "synthetic_split.csv")
    prov = pd.read_csv(run.tables / "synthetic_provenance.csv").set_index("class")
    assert (prov["test sources seen"] == 0).all()
    healthy, _ = load_split(run.processed, "normal", "train")
    polyps, rows = load_split(run.processed, "polyps")
    train_ids = set(
        split.loc[(split["class"] == "polyps") & (split["role"] == "train"), "source_id"]
    )
    keep = rows["source_id"].isin(train_ids).to_numpy()
    polyp_train, _ = flipped_variants(polyps[keep], rows[keep])
    expected = {"healthy": healthy, "polyps": polyp_train}
    for cls in ("healthy", "polyps"):
        ckpt = run.checkpoints / prov.loc[cls, "checkpoint"]
        manifest = pd.read_csv(run.root / "synthetic" / cls / "manifest.csv")
        assert set(manifest["checkpoint_sha256"]) == {file_digest(ckpt)}
        assert manifest["index"].tolist() == list(range(len(manifest)))
        data = read_checkpoint(ckpt)["extra"]["data"]
        assert data["fingerprint"] == data_fingerprint(images_to_tensor(expected[cls])), cls
    table = pd.read_csv(run.tables / "table12_synthetic.csv", index_col="Training data")
    n_per_class = table.loc["real only", "training images"] // 2
    assert table.loc["synthetic only", "training images"] == 2 * n_per_class
    assert len(manifest) == n_per_class  # as many synthetic frames per class as real ones


def test_widget_cell_does_nothing_under_papermill(run09):
    _, executed = run09
    nb = nbformat.read(executed, as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "latent-explorer")
    assert cell.outputs == []
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "interactive: bool = True" in params.source  # the default was left on


def test_bad_parameter_is_named(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="gen_epochs=0"):
        run_notebook(NAME, tmp_path / "run", gen_epochs=0)


def test_missing_input_names_notebook_01(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="notebook"):
        run_notebook(NAME, tmp_path / "empty", **TINY)


def test_traversal_changes_one_dimension_per_row():
    import torch

    from helpers.model.endovae import EndoVAE
    from helpers.study.synthetic_eval import traversal

    torch.manual_seed(0)
    grid = traversal(EndoVAE(), limit=3.0, steps=7).numpy()
    assert grid.shape == (6 * 7, 96, 96, 3) and grid.dtype == np.uint8
    centres = grid[3::7]  # value 0 in every row: all latents 0
    assert all(np.array_equal(centres[0], c) for c in centres)
    assert not np.array_equal(grid[0], grid[6])


def test_per_healthy_class_models_share_the_synthetic_set(tmp_path):
    """The per-class option: one EndoVAE per healthy class, each on its own sources only."""
    from types import SimpleNamespace

    import torch

    from helpers.study import synthetic_eval as se

    run = paths.RunPaths(_fake_run(tmp_path))
    splits = se.load_splits(run.processed, 0.5, 0)
    ckpts = SimpleNamespace(checkpoint=lambda name: tmp_path / f"{name}.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits on busy cores
    try:
        models = se.class_models(
            ckpts, splits, epochs=1, batch_size=16, device="cpu", precision="fp32",
            per_healthy_class=True, progress=False,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert set(models) == {"normal-cecum", "normal-pylorus", "normal-z-line", "polyps"}
    prov = se.provenance(models, splits).set_index("class")
    assert (prov["test sources seen"] == 0).all()
    assert prov.drop(index="polyps")["training images"].sum() == len(splits.healthy_train)
    counts = splits.model_counts(list(models))
    assert sum(v for k, v in counts.items() if k != "polyps") == splits.n_per_class
    synthetic = se.generate_sets(models, splits, tmp_path / "synthetic", progress=False)
    assert {k: len(v) for k, v in synthetic.items()} == counts
    sets = se.training_sets(splits, synthetic, seed=0)
    x, y = sets["synthetic only"]
    assert len(x) == 2 * splits.n_per_class and y.sum() == splits.n_per_class
