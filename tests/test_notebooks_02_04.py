"""Notebooks 02 (architecture, losses), 03 and 04 (training): structure and papermill runs."""

from __future__ import annotations

import shutil

import nbformat
import pandas as pd
import pytest
import torch
from conftest import TINY_PARAMS, run_notebook

from helpers.core import paths
from helpers.core.paths import RunPaths
from helpers.model.endovae import EndoVAE, count_parameters

TRAIN = {"03_train_mse": "mse", "04_train_bce": "bce"}
HEADINGS = {
    "02_architecture": [
        "## 3. EndoVAE architecture",
        "### 3.1 Encoder",
        "### 3.2 Decoder",
        "### 3.3 Model assembly",
        "## 4. Loss functions",
    ],
    "03_train_mse": ["## 5. Model training", "### 5.1 Model trained with MSE"],
    "04_train_bce": ["### 5.2 Model trained with BCE"],
}
CAPTIONS = {
    "02_architecture": "**Figure 2:** Architecture of the VAE model from Figure 1 of the paper",
    "03_train_mse": "**Figure 3:** Changes in the loss of the model trained with MSE "
    "reconstruction loss",
    "04_train_bce": "**Figure 4:** Changes in the loss of the model trained with BCE "
    "reconstruction loss",
}


def output_texts(nb) -> str:
    """The markdown and plain-text outputs of a notebook, joined."""
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            texts.append(str(data.get("text/markdown", "")) + str(output.get("text", "")))
    return "\n".join(texts)


def source(name: str):
    """A source notebook."""
    return nbformat.read(paths.notebooks_dir() / f"{name}.ipynb", as_version=4)


def parameters_cell(nb):
    """The cell tagged `parameters`."""
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def assert_caption_follows_image(nb, caption: str) -> None:
    """The markdown cell starting with `caption` comes right after a cell showing a PNG."""
    index = next(i for i, c in enumerate(nb.cells) if c.source.startswith(caption))
    before = nb.cells[index - 1]
    assert before.cell_type == "code"
    assert any("image/png" in o.get("data", {}) for o in before.outputs), caption


@pytest.mark.parametrize("name", ["02_architecture", *TRAIN])
def test_shape_headings_and_captions(name):
    nb = source(name)
    tags = [c.metadata.get("tags", []) for c in nb.cells[:5]]
    assert all("report-skip" in t for t in tags) and "parameters" in tags[3]
    assert nb.cells[0].source.startswith(f"# {name[:2]} · ")
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in HEADINGS[name]:
        assert f"\n{heading}\n" in f"\n{text}\n", heading
    assert CAPTIONS[name] in text


def test_training_notebooks_share_their_code():
    mse, bce = source("03_train_mse"), source("04_train_bce")
    for name in TRAIN:
        declared = parameters_cell(source(name)).source
        for param in (*TINY_PARAMS[name], "run_dir", "loss", "lr", "seed", "device", "resume",
                      "compile", "precision", "max_train_images", "checkpoint_every"):  # fmt: skip
            assert f"\n{param}: " in f"\n{declared}", (name, param)
    assert 'loss: str = "mse"' in parameters_cell(mse).source
    assert 'loss: str = "bce"' in parameters_cell(bce).source
    code_mse = {c.id: c.source for c in mse.cells if c.cell_type == "code"}
    code_bce = {c.id: c.source for c in bce.cells if c.cell_type == "code"}
    assert set(code_bce) <= set(code_mse)
    assert set(code_mse) - set(code_bce) == {"settings-table"}
    for cell_id, text in code_bce.items():
        if cell_id != "parameters":
            assert text == code_mse[cell_id], cell_id
    swapped = parameters_cell(mse).source.replace('loss: str = "mse"', 'loss: str = "bce"')
    assert swapped == parameters_cell(bce).source


def test_notebook_02_runs(tmp_path):
    run_dir = tmp_path / "run"
    out = nbformat.read(run_notebook("02_architecture", run_dir), as_version=4)
    text = output_texts(out)
    model = EndoVAE()
    n_enc, n_dec = count_parameters(model.encoder), count_parameters(model.decoder)
    assert f"{n_enc:,} in the encoder and {n_dec:,} in the decoder" in text
    assert_caption_follows_image(out, CAPTIONS["02_architecture"])
    rp = RunPaths(run_dir)
    assert (rp.figures / "fig02_architecture.png").stat().st_size > 10_000
    layers = pd.read_csv(rp.tables / "layers.csv")
    assert int(layers.set_index("layer").loc["total", "parameters"]) == n_enc + n_dec
    assert "the logit form gives 200" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAIN))
def test_training_notebook_outputs(tiny_run, name):
    loss, rp = TRAIN[name], RunPaths(tiny_run)
    epochs = TINY_PARAMS[name]["epochs"]
    state = torch.load(rp.checkpoint(loss), map_location="cpu", weights_only=True)
    assert state["epoch"] == epochs and state["train_config"]["loss"] == loss
    assert state["train_config"]["batch_size"] == TINY_PARAMS[name]["batch_size"]
    history = pd.read_csv(rp.history(loss))
    assert list(history["epoch"]) == list(range(1, epochs + 1))
    assert history[["recon", "kld", "total"]].notna().all().all()
    figure = rp.figures / ("fig03_loss_mse.png" if loss == "mse" else "fig04_loss_bce.png")
    assert figure.stat().st_size > 5_000
    final = pd.read_csv(rp.tables / f"final_loss_{loss}.csv", index_col=0)
    assert final.iloc[0, 0] == pytest.approx(history["recon"].iloc[-1], rel=1e-6)
    out = nbformat.read(rp.executed / f"{name}.ipynb", as_version=4)
    assert_caption_follows_image(out, CAPTIONS[name])
    text = output_texts(out)
    assert "trained from scratch" in text and "images per second" in text
    assert f"{history['recon'].iloc[-1]:,.0f} per batch of" in text


@pytest.mark.slow
def test_training_notebook_rerun_resumes(tiny_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run, run_dir)
    before = RunPaths(run_dir).checkpoint("mse").read_bytes()
    out = nbformat.read(
        run_notebook("03_train_mse", run_dir, **TINY_PARAMS["03_train_mse"]), as_version=4
    )
    assert "loaded without training" in output_texts(out)
    assert RunPaths(run_dir).checkpoint("mse").read_bytes() == before
