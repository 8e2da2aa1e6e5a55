"""Report prose of Section 5 (notebooks 03 and 04): how each model was trained and where its
loss ended beside the original report's (helpers.core.reference)."""

from __future__ import annotations

import math

import pandas as pd

from helpers.core.reference import (
    ORIGINAL_BATCH,
    ORIGINAL_EPOCHS,
    ORIGINAL_LOSSES,
    ORIGINAL_TRAIN_IMAGES,
)
from helpers.model.endovae import HE_LOGVAR_BIAS
from helpers.train.fit import TrainConfig, TrainResult

PIXELS = 3 * 96 * 96  # values per image


def n_epochs(n: int) -> str:
    """'1 epoch', '8 epochs'."""
    return f"{n:,} epoch" + ("" if n == 1 else "s")


def _how(done: int, start: int) -> str:
    """Whether the model was trained from scratch, resumed or only loaded."""
    if start == 0:
        return f"The model was trained from scratch for {n_epochs(done)}"
    if done > start:
        return f"Training resumed from the checkpoint at epoch {start:,} and ran to epoch {done:,}"
    return f"The checkpoint had already reached epoch {start:,}, so it was loaded without training"


def init_text(init: str) -> str:
    """Which weight initialisation the model started from, and why."""
    if init == "pytorch":
        return "The weights started from PyTorch's default initialisation, as in the paper's code."
    return (
        "The weights started from He-normal initialisation of the decoder (unit gain for its "
        f"output convolution), with the log-variance head's bias at {HE_LOGVAR_BIAS:g} (posterior "
        f"standard deviation {math.exp(HE_LOGVAR_BIAS / 2):.2f}), instead of PyTorch's defaults "
        "used by the paper's code: the image's code and the loss's gradient then pass through "
        "the decoder from the first step, which shortens the posterior-collapse plateau of a "
        "short run (helpers/profiles/quick.yaml gives the measurements)."
    )


def schedule_text(config: TrainConfig) -> str:
    """The learning-rate schedule in one sentence ('' for the paper's constant rate)."""
    if config.lr_cooldown <= 0:
        return ""
    return (
        f"The learning rate stayed at the paper's {config.lr:g} for the first "
        f"{1 - config.lr_cooldown:.0%} of the optimiser steps and then fell linearly to 0 (the "
        "paper keeps it constant), so the model evaluated below is not the noisy last step of a "
        "constant-rate run; the loss is the paper's throughout. "
    )


def how_trained(result: TrainResult, n_images: int, config: TrainConfig, device: str) -> str:
    """How the model was trained: epochs, images, batches, init, time, speed and precision."""
    history, batch_size = result.history, config.batch_size
    done, speed = len(history), history["images_per_s"].median()
    steps = -(-n_images // batch_size)
    hours = ORIGINAL_EPOCHS * ORIGINAL_TRAIN_IMAGES / speed / 3600
    return (
        f"{_how(done, result.resumed_from_epoch)}, on {n_images:,} healthy training images in "
        f"batches of {batch_size} ({steps} steps per epoch), on {device} with {result.precision}. "
        f"{init_text(config.init)} {schedule_text(config)}"
        f"Its {n_epochs(done)} took {history['seconds'].sum():,.0f} s of training in all "
        f"({history['seconds'].median():.1f} s per epoch, {speed:,.0f} images per second, medians "
        f"over epochs). At that speed the original schedule, {ORIGINAL_EPOCHS:,} epochs of "
        f"{ORIGINAL_TRAIN_IMAGES:,} images, would take {hours:,.1f} hours on this device. "
        f"Precision: {result.precision_choice}."
    )


def _per_value_text(loss: str, recon_now: float, recon_orig: float, floor: float) -> str:
    """The final reconstruction term per pixel value, in the loss's own units."""
    if loss == "mse":
        return (
            f"a mean squared error of {recon_now:.4f} per pixel value, i.e. a typical error of "
            f"{255 * recon_now**0.5:.1f} of 255 grey levels (original: {recon_orig:.4f}, "
            f"{255 * recon_orig**0.5:.1f} levels)"
        )
    return (
        f"{recon_now:.4f} nats per pixel value (original: {recon_orig:.4f}). No model can go "
        f"below the entropy of the pixel values themselves, {floor:.4f} nats per value for these "
        f"images, so this run is {recon_now - floor:.4f} nats per value above its floor"
    )


def _trend_text(history: pd.DataFrame, name: str, batch_size: int) -> str:
    """How the loss terms moved over this run, and at epoch 50 beside the original."""
    first, last, text = history.iloc[0], history.iloc[-1], ""
    original = ORIGINAL_LOSSES[name.lower()]["epoch 50"]
    if len(history) > 1:
        kld_change = "rose" if last["kld"] > first["kld"] else "fell"
        text += (
            f" Over this run the reconstruction term fell by {1 - last['recon'] / first['recon']:.0%} "
            f"from epoch 1, while the KL divergence {kld_change} from {first['kld'] / batch_size:.2f} "
            f"to {last['kld'] / batch_size:.2f} per image."
        )
    if len(history) >= 50:
        at50 = history.set_index("epoch").loc[50]
        text += (
            f" At epoch 50 this run had {at50['recon'] / batch_size:,.1f} ({name}) and "
            f"{at50['kld'] / batch_size:.1f} (KLD) per image; the original report had "
            f"{original['recon'] / ORIGINAL_BATCH:,.1f} and {original['kld'] / ORIGINAL_BATCH:.1f}."
        )
    return text


def final_loss_text(history: pd.DataFrame, loss: str, batch_size: int, floor: float) -> str:
    """Where the losses ended, per image, beside the original report (`floor`: BCE entropy floor)."""
    last, name, final = history.iloc[-1], loss.upper(), ORIGINAL_LOSSES[loss]["final"]
    recon_now = last["recon"] / batch_size / PIXELS
    unit = _per_value_text(loss, recon_now, final["recon"] / ORIGINAL_BATCH / PIXELS, floor)
    text = (
        f"After {n_epochs(len(history))} the {name} term is {last['recon']:,.0f} per batch of "
        f"{batch_size} images, {last['recon'] / batch_size:,.1f} per image: {unit}. The original "
        f"report reached {final['recon']:,} per batch of {ORIGINAL_BATCH} after "
        f"{ORIGINAL_EPOCHS:,} epochs, {final['recon'] / ORIGINAL_BATCH:,.1f} per image; "
        "because the losses are sums over a batch, runs with different batch sizes compare per "
        f"image, not per batch. Its KL divergence ended at {last['kld'] / batch_size:.2f} per image "
        f"(original: {final['kld'] / ORIGINAL_BATCH:.2f})."
    )
    text += _trend_text(history, name, batch_size)
    if len(history) < ORIGINAL_EPOCHS:
        text += (
            f" This run trained for {len(history):,} of the original's {ORIGINAL_EPOCHS:,} epochs, so "
            "its losses are still far from converged and the comparison shows how far training went, "
            "not a difference between the methods."
        )
    return text
