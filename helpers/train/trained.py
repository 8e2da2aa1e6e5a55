"""The two trained EndoVAEs that notebooks 05 to 07 evaluate: MSE (notebook 03) and BCE (04)."""

from __future__ import annotations

import torch

from helpers.core.paths import RunPaths
from helpers.model.endovae import EndoVAE
from helpers.train.checkpoint import load_checkpoint

MODELS = {"MSE": ("mse", "03_train_mse"), "BCE": ("bce", "04_train_bce")}  # label: (file, producer)


def load_trained(
    paths: RunPaths, device: str | torch.device
) -> tuple[dict[str, EndoVAE], dict[str, dict]]:
    """Both models (eval mode, on `device`) and their checkpoint dicts by label ("MSE", "BCE")."""
    loaded = {
        label: load_checkpoint(paths.checkpoint(name), device, producer=producer)
        for label, (name, producer) in MODELS.items()
    }
    models = {label: model for label, (model, _) in loaded.items()}
    states = {label: state for label, (_, state) in loaded.items()}
    return models, states


def trained_epochs(states: dict[str, dict]) -> dict[str, int]:
    """Epochs each model was trained for, by label."""
    return {label: int(state["epoch"]) for label, state in states.items()}


def result_key(label: str) -> str:
    """The key of a model in results/NN.json: "mse" for the label "MSE"."""
    return label.lower()
