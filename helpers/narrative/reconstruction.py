"""Report prose of Sections 6 to 8 (notebooks 05 and 06): samples, reconstructions, metrics.

The sample-quality prose (FD, KID, precision/recall and their scale) is helpers.narrative.quality.

Every sentence is built from numbers the notebooks measured; the original report's numbers
come from helpers.core.reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from helpers.core import stats
from helpers.core.reference import ORIGINAL_EPOCHS, ORIGINAL_METRICS
from helpers.evaluate.metrics import (
    ALL_POLYPS,
    METRIC_LABELS,
    PLATEAU_BEAT_SHARE,
    PLATEAU_KL_PER_IMAGE,
    PLATEAU_PSNR_GAIN_DB,
    PLATEAU_SAMPLE_SPREAD,
    model_values,
    recon_stats,
    sample_stats,
)


def _fmt_ci(d: dict, digits: int) -> str:
    """'+0.12 (95 % CI -0.03 to +0.27)'."""
    return (
        f"{d['mean']:+.{digits}f} (95 % CI {d['ci_low']:+.{digits}f} to {d['ci_high']:+.{digits}f})"
    )


def _comparison_sentence(per_image: pd.DataFrame, images: str, n_boot: int, seed: int) -> str:
    """Which model is better on `images`, per metric, and whether the paired CI excludes 0."""
    parts = []
    for metric, unit, digits in (("psnr", " dB", 2), ("ssim", "", 3)):
        a = model_values(per_image, images, "MSE", metric)
        b = model_values(per_image, images, "BCE", metric)
        d = stats.paired_difference(a, b, n_boot=n_boot, seed=seed)
        if abs(d["mean"]) < 0.5 * 10**-digits:
            lead = "the two means are equal at this precision"
        else:
            better = "MSE" if d["mean"] > 0 else "BCE"
            lead = f"the {better} model is higher by {abs(d['mean']):.{digits}f}{unit}"
        verdict = (
            "the interval excludes 0, so the difference is systematic on these images"
            if d["ci_excludes_zero"]
            else "the interval includes 0, so these images cannot separate the two models"
        )
        parts.append(
            f"{METRIC_LABELS[metric]} {a.mean():.{digits}f}{unit} (MSE) vs "
            f"{b.mean():.{digits}f}{unit} (BCE): {lead}; the per-image difference MSE - BCE is "
            f"{_fmt_ci(d, digits)} and {verdict} (the MSE model scores higher on "
            f"{100 * d['share_a_better']:.0f} % of them)"
        )
    return ". ".join(parts) + "."


def discussion_text(
    per_image: pd.DataFrame,
    eval_set: str,
    healthy_sets: Sequence[str],
    epochs: dict[str, int],
    embedded: bool,
    n_boot: int = 2000,
    seed: int = 0,
) -> str:
    """Markdown for "8. Result analysis and discussion", built from this run's per-image values."""
    n_eval = int(((per_image["images"] == eval_set) & (per_image["model"] == "MSE")).sum())
    lines = [
        f"**MSE vs BCE.** On the {n_eval} evaluated polyp images: "
        + _comparison_sentence(per_image, eval_set, n_boot, seed)
    ]
    gaps, held_gaps = [], []
    polyps_all = per_image[per_image["images"] == ALL_POLYPS]
    for model in ("MSE", "BCE"):
        pol = polyps_all[polyps_all["model"] == model]
        if pol.empty:
            continue
        clauses = [
            f"all {len(pol)} polyps {pol['psnr'].mean():.2f} dB / SSIM {pol['ssim'].mean():.3f}"
        ]
        for name in healthy_sets:
            hea = per_image[(per_image["images"] == name) & (per_image["model"] == model)]
            if hea.empty:
                continue
            gap = hea["psnr"].mean() - pol["psnr"].mean()
            if "held-out" in name:
                held_gaps.append(gap)
            clauses.append(
                f"{name} (n={len(hea)}) {hea['psnr'].mean():.2f} dB / {hea['ssim'].mean():.3f}, "
                f"gap {gap:+.2f} dB / {hea['ssim'].mean() - pol['ssim'].mean():+.3f}"
            )
        if len(clauses) > 1:
            gaps.append(f"{model} model: " + "; ".join(clauses))
    if gaps:
        if held_gaps and min(held_gaps) > 0:
            verdict = "In this run both models reconstruct the unseen polyps worse than held-out healthy images."
        elif held_gaps and max(held_gaps) <= 0:
            verdict = (
                "In this run the polyps are not reconstructed worse than held-out healthy images."
            )
        else:
            verdict = ""
        lines.append(
            "**Healthy vs polyp images.** The models were trained on healthy images only; a "
            "positive gap (healthy minus polyps) means the polyps are reconstructed worse. "
            + ". ".join(gaps)
            + ". "
            + verdict
        )
    orig = []
    for model in ("MSE", "BCE"):
        rows = per_image[(per_image["images"] == eval_set) & (per_image["model"] == model)]
        ref = ORIGINAL_METRICS[model.lower()]
        orig.append(
            f"{model}: {rows['psnr'].mean():.2f} dB vs {ref['PSNR'][0]:.2f} dB "
            f"({rows['psnr'].mean() - ref['PSNR'][0]:+.2f} dB), SSIM {rows['ssim'].mean():.3f} vs "
            f"{ref['SSIM'][0]:.3f} ({rows['ssim'].mean() - ref['SSIM'][0]:+.3f})"
        )
    lines.append(
        "**Against the original report** (ours vs theirs, polyps): " + "; ".join(orig) + "."
    )
    caveats = []
    if embedded:
        caveats.append(
            "the images are the embedded Kvasir-like frames (procedurally generated), not Kvasir, "
            "so these numbers check the pipeline and are not comparable with the original's"
        )
    short = {m: e for m, e in epochs.items() if e < ORIGINAL_EPOCHS}
    if short:
        listed = ", ".join(f"{m}: {e}" for m, e in short.items())
        caveats.append(
            f"training was short ({listed} epochs against the original's {ORIGINAL_EPOCHS}), "
            "so both models are far from converged and their ranking may change with training"
        )
    if n_eval < 30:
        caveats.append(f"only {n_eval} polyp images were evaluated, so the intervals are wide")
    if caveats:
        lines.append("**Caveats.** " + " ".join(c[0].upper() + c[1:] + "." for c in caveats))
    return "\n\n".join(lines)


def samples_text(samples: dict[str, torch.Tensor], real: torch.Tensor) -> str:
    """Sentence on generated samples: their spread and their edge energy relative to real images."""
    parts = [
        f"the {label} model's {s['n']} samples differ from one another by a mean "
        f"per-pixel standard deviation of {s['spread']:.3f} and carry {s['edge_share_pct']:.0f} % "
        "of the edge energy of real healthy images"
        for label, s in sample_stats(samples, real).items()
    ]
    return (
        "In this run, "
        + "; ".join(parts)
        + ". Edge energy is the mean absolute difference between neighbouring pixels: a share "
        "well below 100 % means blurrier images than the real frames, and a spread near 0 would "
        "mean the decoder ignores its latent input."
    )


def healthy_source_text(split: str, n_images: int) -> str:
    """Which split the healthy images of Figure 7 come from."""
    return f"The healthy images come from the {split} split ({n_images} images)."


def recon_text(shown: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> str:
    """Sentence per image group shown: mean absolute pixel error and edge-energy share per model."""
    parts = []
    for group, (x, recons) in shown.items():
        per_model = [
            f"{label} model: mean absolute error {s['mae']:.3f}, "
            f"{s['edge_share_pct']:.0f} % of the inputs' edge energy"
            for label, s in recon_stats(x, recons).items()
        ]
        parts.append(f"on the {len(x)} {group} shown, " + "; ".join(per_model))
    return "For the images above (pixel values in [0, 1]): " + ". And ".join(parts) + "."


def plateau_text(checks: pd.DataFrame) -> str:
    """One paragraph on whether each model left the collapse plateau, from `plateau_check` rows."""
    lines = []
    for model, row in checks.iterrows():
        verdict = (
            "left the posterior-collapse plateau"
            if row["past the plateau"] == "yes"
            else "is still on the posterior-collapse plateau (its samples are close to one "
            "mean image), so train it longer before reading its figures"
        )
        lines.append(
            f"The {model} model {verdict}: its KL divergence is {row['KL per image (nats)']:.1f} "
            f"nats per image (collapsed models sit near 0; the check asks for at least "
            f"{PLATEAU_KL_PER_IMAGE:g}), its nine samples differ by {row['sample spread']:.3f} per "
            f"pixel (at least {PLATEAU_SAMPLE_SPREAD:g}), it reconstructs held-out healthy "
            f"images at {row['PSNR, held-out healthy (dB)']:.2f} dB against "
            f"{row['PSNR of the mean training image (dB)']:.2f} dB for the mean training image "
            f"(at least {PLATEAU_PSNR_GAIN_DB:g} dB above it), and it beats the mean image on "
            f"{row['images beating the mean (%)']:.0f} % of them one by one (at least "
            f"{100 * PLATEAU_BEAT_SHARE:.0f} %)."
        )
    return " ".join(lines)
