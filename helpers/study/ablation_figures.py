"""Figures 10-15 of notebook 08 (Section 10), each built from an `AblationRun` and saved as PNG."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import torch

from helpers.core.plots import plot_histories, plot_roc, sample_rows, show_grid, to_chw_float
from helpers.core.stats import anomaly_auc, roc_points
from helpers.evaluate.artifacts import masked_preview
from helpers.study import ablations as ab
from helpers.study.ablation_run import AblationRun
from helpers.train.infer import reconstruct

N_SHOW = 8  # samples (and images) shown per arm in the figures


def samples_figure(run: AblationRun, study: str, path: str | os.PathLike) -> plt.Figure:
    """Figures 10 and 12: images decoded from noise, one row per arm of the study."""
    arms = ab.study_arms(run.arms, study)
    grid, rows = sample_rows({a.label_in(study): run.samples[a.name] for a in arms}, N_SHOW)
    return show_grid(grid, N_SHOW, path=path, row_labels=rows)


def loss_figure(run: AblationRun, study: str, path: str | os.PathLike) -> plt.Figure:
    """Figure 11: loss per epoch of the arms of one study."""
    arms = ab.study_arms(run.arms, study)
    return plot_histories({a.label_in(study): run.trained[a.name].history for a in arms}, path=path)


def artifacts_figure(run: AblationRun, path: str | os.PathLike) -> plt.Figure:
    """Figure 13: training images, the same masked, and samples of the baseline and masked arm."""
    real, masked_real = masked_preview(*run.baseline_training_set(), N_SHOW)
    grid = torch.cat(
        [
            to_chw_float(real),
            to_chw_float(masked_real),
            run.samples[ab.BASELINE][:N_SHOW],
            run.samples["masked"][:N_SHOW],
        ]
    )
    row_labels = ["training images", "same, masked", "baseline samples", "masked-arm samples"]
    return show_grid(grid, N_SHOW, path=path, row_labels=row_labels)


def polyp_recon_figure(run: AblationRun, path: str | os.PathLike) -> plt.Figure:
    """Figure 14: unseen polyps and their reconstructions by the arms of the polyp study."""
    arms = ab.study_arms(run.arms, "polyps")
    x = run.data.polyp_eval[:N_SHOW]
    recons = [
        to_chw_float(reconstruct(run.trained[a.name].model, x, device=run.device)) for a in arms
    ]
    grid = torch.cat([to_chw_float(x), *recons])
    row_labels = ["unseen polyps"] + [a.label_in("polyps") for a in arms]
    return show_grid(grid, len(x), path=path, row_labels=row_labels)


def anomaly_roc_figure(run: AblationRun, path: str | os.PathLike) -> plt.Figure:
    """Figure 15: ROC curves of the baseline's anomaly scores, held-out healthy vs unseen polyps."""
    scores = run.per_image[run.per_image["entry"] == ab.BASELINE]
    healthy = scores[scores["images"] == ab.HEALTHY_TEST]
    polyps = scores[scores["images"] == ab.POLYPS_EVAL]
    curves = {}
    for score in ab.ANOMALY_SCORES:
        fpr, tpr = roc_points(healthy[score], polyps[score])
        curves[ab.SCORE_LABELS[score]] = (fpr, tpr, anomaly_auc(healthy[score], polyps[score]))
    return plot_roc(curves, path=path)
