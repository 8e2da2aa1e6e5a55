"""Notebook 10 (a sharper EndoVAE): structure, a papermill smoke run, what it writes."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import run_notebook
from test_notebooks_05_07 import _fake_run, _outputs_text, _sources, assert_in_order

from helpers.core import paths
from helpers.core.fingerprint import file_digest
from helpers.core.results import read_results
from helpers.data.processed import load_split
from helpers.model.endovae import EndoVAEConfig
from helpers.study.generate import load_model
from helpers.study.sharper import SHARP_CHECKPOINT, SHARP_POLYPS
from helpers.train.fit import TrainConfig, fit
from helpers.train.prior import load as load_prior

NAME = "10_sharper_vae"
TINY = {
    "sharp_latent": 8,
    "gen_epochs": 1,
    "gen_batch_size": 16,
    "clf_epochs": 1,
    "clf_batch_size": 16,
    "weights": "none",
    "n_boot": 100,
    "precision": "fp32",
    "device": "cpu",
    "fid_weights": "none",
    "n_show": 2,
}


def _faithful(run: paths.RunPaths) -> None:
    """Notebook 03's MSE model as 03 writes it: one epoch on the healthy training images."""
    images, _ = load_split(run.processed, "normal", "train")
    config = TrainConfig(epochs=1, batch_size=16, precision="fp32", init="he")
    fit(images, config, checkpoint_path=run.checkpoint("mse"), history_path=run.history("mse"),
        device="cpu", resume=False, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def run10(tmp_path_factory):
    """A hand-built run folder (01's images, a one-epoch 03 model) after notebook 10."""
    root = _fake_run(tmp_path_factory.mktemp("nb10"))
    run = paths.RunPaths(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")  # tiny tensors: a second thread only waits on busy cores
    try:
        _faithful(run)
        out = run_notebook(NAME, root, **TINY)
    finally:
        mp.undo()
    return run, out


def test_headings_and_captions_in_order():
    order = ["## 12. Beyond the report: a sharper EndoVAE", "**Table 14:**", "**Figure 19:**",
             "**Figure 20:**", "**Table 15:**", "**Table 16:**", "**Table S14:**",
             "**Table 17:**", "**Table 18:**", "**Table 19:**"]  # fmt: skip
    assert_in_order(_sources(NAME), order)


def test_sharper_checkpoint_exports_like_any(run10):
    run, _ = run10
    model, meta = load_model(run.checkpoint(SHARP_CHECKPOINT))
    assert model.config == EndoVAEConfig(latent_dim=8, norm="both")
    saved = meta["train_config"]
    assert (saved["loss"], saved["beta"], saved["ssim_weight"]) == ("mse", 0.3, 0.03)
    faithful = TrainConfig.from_dict(load_model(run.checkpoint("mse"))[1]["train_config"])
    sharp = TrainConfig.from_dict(meta["train_config"])
    same = ("epochs", "batch_size", "lr", "lr_cooldown", "init", "seed")
    assert {k: getattr(sharp, k) for k in same} == {k: getattr(faithful, k) for k in same}
    polyp_model, _ = load_model(run.checkpoint(SHARP_POLYPS))
    assert polyp_model.config == model.config


def test_tables_and_results(run10):
    run, out = run10
    found = read_results(run.root, "10")
    assert found["variant"] == {
        "latent_dim": 8, "norm": "both", "loss": "mse", "beta": 0.3, "ssim_weight": 0.03,
        "prior": "fitted", "budget": "full",
    }  # fmt: skip
    assert found["time_ratio"] > 0
    assert set(found["anomaly_auc"]) == {"faithful", "sharper"}
    assert set(found["synthetic_auc"]) == {
        "faithful synthetic", "sharper synthetic", "faithful synthetic, fitted prior",
        "sharper synthetic, fitted prior",
    }  # fmt: skip
    assert {"faithful model, fitted prior", "sharper model, fitted prior"} <= set(found["fd"])
    for name in ("mse", SHARP_CHECKPOINT, "gen_polyps", SHARP_POLYPS):  # each model's own prior
        prior = load_prior(run.checkpoint(name).with_suffix(".prior.json"))
        assert prior.checkpoint_sha256 == file_digest(run.checkpoint(name))
    goals = pd.read_csv(run.tables / "table19_sharper_goals.csv", index_col=0)
    assert len(goals) == 5 and set(goals["met"]) <= {"yes", "no"}
    metrics = pd.read_csv(run.tables / "table15_sharper_metrics.csv", index_col=0)
    assert set(metrics["model"]) == {"faithful", "sharper"}
    for fig in ("fig19_sharper_samples.png", "fig20_sharper_recon.png"):
        assert (run.figures / fig).is_file()
    text = _outputs_text(out)
    assert "goals" in text and "reconstruction-error AUC" in text
    assert "fitted to each model's training latents" in text


def test_refuses_a_faithful_model_on_other_images(tmp_path):
    """03 trained on a subset: the section stops before training, naming the file and the fix."""
    from papermill.exceptions import PapermillExecutionError

    root = _fake_run(tmp_path)
    run = paths.RunPaths(root)
    images, _ = load_split(run.processed, "normal", "train")
    fit(images[:8], TrainConfig(epochs=1, batch_size=8, precision="fp32"),
        checkpoint_path=run.checkpoint("mse"), device="cpu", resume=False, progress=False)  # fmt: skip
    with pytest.raises(PapermillExecutionError, match="max_train_images"):
        run_notebook(NAME, root, **TINY)
    assert not run.checkpoint(SHARP_CHECKPOINT).exists()
