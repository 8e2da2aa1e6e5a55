"""Report prose and display tables of Section 10 (notebook 08): the ablations.

Sentences and the tables' display forms are built from the tables helpers.study.ablations computed;
the original report's budget comes from helpers.core.reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from helpers.core.reference import ORIGINAL_EPOCHS, ORIGINAL_TRAIN_IMAGES, PAPER_BUDGET
from helpers.evaluate.metrics import COLLAPSED_KL_PER_IMAGE, PLATEAU_KL_PER_IMAGE
from helpers.evaluate.quality import ROWS as QUALITY_SCALE_ROWS
from helpers.narrative.quality import quality_text as quality_text_of
from helpers.study.ablations import (
    ANOMALY_SCORES,
    BASELINE,
    HEALTHY_TEST,
    HEALTHY_TRAIN,
    MASKED_SCORING,
    POLYPS_EVAL,
    SCORE_LABELS,
    AblationData,
    Arm,
)

SHORT_SCORES = {"mse": "MSE", "kld": "KLD", "elbo": "MSE sum + KLD"}


SHORT_SETS = {HEALTHY_TEST: "healthy", HEALTHY_TRAIN: "healthy (train)", POLYPS_EVAL: "polyps"}


def data_text(data: AblationData, polyp_train_share: float, device: str) -> str:
    """The image sets every arm uses: training subset, held-out healthy, polyp pool and eval."""
    c = data.counts()
    return (
        f"Data: {data.n_train} healthy training images per arm (drawn with the seed from "
        f"{data.n_healthy_train_all} available); {c['healthy_test_images']} held-out healthy "
        f"images from {c['healthy_test_sources']} source frames. The {c['polyp_pool_sources'] + c['polyp_eval_sources']} "
        f"polyp frames are split by source: {c['polyp_pool_sources']} may enter training "
        f"(`polyp_train_share` = {polyp_train_share:g}, as {c['polyp_pool_images']} images with "
        f"their 4 flips) and {c['polyp_eval_sources']} frames ({c['polyp_eval_images']} images) "
        f"are kept for evaluation. Device: {device}."
    )


def _verdict(low: float, high: float, better: str, worse: str, digits: int = 2) -> str:
    """'better'/'worse' when the CI excludes 0, else a no-clear-difference phrase."""
    if round(low, digits) == 0 and round(high, digits) == 0:
        return "negligible: the whole interval rounds to 0"
    if low > 0:
        return better
    if high < 0:
        return worse
    return "no clear difference: the interval contains 0"


def _and_join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ci_text(mean: float, low: float, high: float, digits: int, signed: bool = False) -> str:
    """'mean [low, high]' with a fixed number of digits."""
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def _delta_cell(r: pd.Series, metric: str, digits: int, is_reference: bool) -> str:
    """Display text of a paired change: 'reference', '–' (not comparable) or 'mean [low, high]'."""
    if is_reference:
        return "reference"
    if not np.isfinite(r[f"d_{metric}_mean"]):
        return "–"
    return _ci_text(
        r[f"d_{metric}_mean"], r[f"d_{metric}_ci_low"], r[f"d_{metric}_ci_high"], digits, True
    )


def format_arms(arms_tab: pd.DataFrame) -> pd.DataFrame:
    """Display form of the arms table (Table 4); the last losses stay in the CSV."""
    return pd.DataFrame(
        {
            "Arm": arms_tab["label"],
            "latent": arms_tab["latent_dim"],
            "β": [f"{b:g}" for b in arms_tab["beta"]],
            "masked": ["yes" if m else "no" for m in arms_tab["mask"]],
            "images": arms_tab["train_images"],
            "polyps": arms_tab["train_polyp_images"],
            "seen": arms_tab["images_seen"],
            "time (s)": arms_tab["train_seconds"].round(1),
        }
    ).set_index("Arm")


def format_study(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Compact display of a study table: means and the paired change (95 % CI) vs the reference.

    The CIs of the means are in the CSV; the display keeps the page width for the changes.
    """
    out = []
    for _, r in table.iterrows():
        ref = r["entry"] == reference
        out.append(
            {
                "Arm": r["label"],
                "Images": SHORT_SETS.get(r["images"], r["images"]),
                "PSNR": f"{r['psnr_mean']:.2f}",
                "Δ PSNR [95 % CI]": _delta_cell(r, "psnr", 2, ref),
                "SSIM": f"{r['ssim_mean']:.3f}",
                "Δ SSIM [95 % CI]": _delta_cell(r, "ssim", 3, ref),
            }
        )
    return pd.DataFrame.from_records(out).set_index("Arm")


def format_green(table: pd.DataFrame) -> pd.DataFrame:
    """Display form of the green-box table: percentages with CIs."""
    return pd.DataFrame(
        {
            "Images": table["images"],
            "n": table["n"].astype(int),
            "Green box (%)": [
                _ci_text(100 * r.rate, 100 * r.ci_low, 100 * r.ci_high, 1)
                for r in table.itertuples()
            ],
        }
    ).set_index("Images")


def format_anomaly(table: pd.DataFrame, labels: Mapping[str, str]) -> pd.DataFrame:
    """Display form of the anomaly table."""
    return pd.DataFrame(
        {
            "Model": [labels.get(a, a) for a in table["arm"]],
            "Score": [SHORT_SCORES[s] for s in table["score"]],
            "AUC [95 % CI]": [_ci_text(r.auc, r.ci_low, r.ci_high, 3) for r in table.itertuples()],
            "n (healthy / polyps)": [f"{r.n_healthy} / {r.n_polyps}" for r in table.itertuples()],
        }
    ).set_index("Model")


def format_gap(table: pd.DataFrame) -> pd.DataFrame:
    """Display form of the train-vs-test table."""
    out = []
    for r in table.itertuples():
        digits = 2 if r.metric == "psnr" else 3
        gap = r.images.startswith("gap")
        out.append(
            {
                "Metric": "PSNR (dB)" if r.metric == "psnr" else "SSIM",
                "Images": r.images,
                "n": "" if gap else str(int(r.n)),
                "Mean [95 % CI]": _ci_text(r.mean, r.ci_low, r.ci_high, digits, signed=gap),
            }
        )
    return pd.DataFrame.from_records(out).set_index("Metric")


def study_text(table: pd.DataFrame, reference: str) -> str:
    """Markdown sentences comparing each entry with the reference, from the study table."""
    parts = []
    for set_name, group in table.groupby("images", sort=False):
        ref = group[group["entry"] == reference].iloc[0]
        items = []
        for _, r in group[group["entry"] != reference].iterrows():
            if not np.isfinite(r["d_psnr_mean"]):
                continue
            psnr_v = _verdict(r["d_psnr_ci_low"], r["d_psnr_ci_high"], "higher", "lower", 2)
            ssim_v = _verdict(r["d_ssim_ci_low"], r["d_ssim_ci_high"], "higher", "lower", 3)
            items.append(
                f"{r['label']}: PSNR {r['d_psnr_mean']:+.2f} dB "
                f"[{r['d_psnr_ci_low']:+.2f}, {r['d_psnr_ci_high']:+.2f}] ({psnr_v}), "
                f"SSIM {r['d_ssim_mean']:+.3f} [{r['d_ssim_ci_low']:+.3f}, "
                f"{r['d_ssim_ci_high']:+.3f}] ({ssim_v})"
            )
        head = (
            f"On the {ref['n']} {set_name} images, {ref['label']} reaches PSNR "
            f"{ref['psnr_mean']:.2f} dB and SSIM {ref['ssim_mean']:.3f}"
        )
        tail = ". Paired change per image against it: " + "; ".join(items) + "." if items else "."
        parts.append(head + tail)
    return " ".join(parts)


def green_text(table: pd.DataFrame) -> str:
    """Sentences on the green-box rates: real images first (detector check), then samples."""
    real = table[table["images"].str.startswith("real: ")]
    fake = table[table["images"].str.startswith("samples: ")]
    real_part = _and_join(
        [
            f"{100 * r.rate:.1f} % of the {r.images.removeprefix('real: ')}"
            for r in real.itertuples()
        ]
    )
    fake_part = ", ".join(
        f"{r.images.removeprefix('samples: ')} {100 * r.rate:.1f} %" for r in fake.itertuples()
    )
    text = f"The green-box detector flags {real_part}."
    if len(real) and real["rate"].max() == 0:
        text += " It finds no box in real images, so its sample rates below cannot be trusted."
    return text + f" Among the images decoded from noise: {fake_part} (intervals in Table 8)."


def artifacts_text(art_tab: pd.DataFrame, green_tab: pd.DataFrame) -> str:
    """Section 10.4's discussion: the masked arm against masked scoring, then the green boxes."""
    return study_text(art_tab, MASKED_SCORING) + " " + green_text(green_tab)


def anomaly_text(table: pd.DataFrame, labels: Mapping[str, str]) -> str:
    """Sentences on the AUCs, naming the best score of the healthy-only model."""
    base = table[table["arm"] == BASELINE]
    best = base.loc[base["auc"].idxmax()]
    level = (
        "separates them well" if best["ci_low"] > 0.8
        else "separates them better than chance" if best["ci_low"] > 0.5
        else "does not separate them reliably (the interval reaches 0.5)"
    )  # fmt: skip
    text = (
        f"Scored without any label, the healthy-only model {level}: its best score is the "
        f"{SCORE_LABELS[best['score']]} with AUC {best['auc']:.3f} [{best['ci_low']:.3f}, {best['ci_high']:.3f}] "
        f"({int(best['n_healthy'])} held-out healthy vs {int(best['n_polyps'])} unseen polyp images; "
        "the interval resamples source frames, so the flips of one frame move together)."
    )
    others = table[table["arm"] != BASELINE]
    for arm, group in others.groupby("arm", sort=False):
        g = group.set_index("score")
        b = base.set_index("score")
        changes = ", ".join(
            f"{SCORE_LABELS[s]} {g.loc[s, 'auc']:.3f} (baseline {b.loc[s, 'auc']:.3f})"
            for s in ANOMALY_SCORES
        )
        text += f" The arm trained on {labels.get(arm, arm)} reaches: {changes}."
    b = base.set_index("score")["auc"]
    if abs(b["elbo"] - b["mse"]) < 0.005:
        text += (
            " The ELBO-like score ranks the images almost exactly like the MSE (its curve lies on "
            "the MSE curve): the KLD is small next to the squared-error sum over all pixels and channels."
        )
    return text


def gap_text(table: pd.DataFrame) -> str:
    """Sentence on the baseline's train-vs-held-out gap."""
    parts = []
    for metric, label, unit, digits in (("psnr", "PSNR", " dB", 2), ("ssim", "SSIM", "", 3)):
        r = table[(table["metric"] == metric) & table["images"].str.startswith("gap")].iloc[0]
        verdict = _verdict(
            r["ci_low"],
            r["ci_high"],
            "better on the training images",
            "better on the held-out images",
            digits,
        )
        parts.append(
            f"{label} gap {r['mean']:+.{digits}f}{unit} [{r['ci_low']:+.{digits}f}, {r['ci_high']:+.{digits}f}] ({verdict})"
        )
    return (
        "Baseline, training images minus held-out images: "
        + "; ".join(parts)
        + ". A clear positive "
        "gap would mean the model memorises its training frames; healthy numbers elsewhere in this "
        "section always use the held-out images."
    )


def budget_text(arms_tab: pd.DataFrame, batch_size: int) -> str:
    """The budget every arm got, compared with the original report's, with the caveat it implies."""
    seen = int(arms_tab["images_seen"].iloc[0])
    epochs = int(arms_tab["epochs"].iloc[0])
    n = int(arms_tab["train_images"].iloc[0])
    steps = epochs * math.ceil(n / batch_size)
    share = 100 * seen / PAPER_BUDGET
    share_text = "less than 0.01 %" if share < 0.01 else f"{share:.2g} %"
    minutes = arms_tab["train_seconds"].sum() / 60
    text = (
        f"Every arm trained for {epochs} epoch(s) on {n} images ({seen:,} images seen, {steps} "
        f"optimiser steps of batch {batch_size}), {minutes:.1f} min of training for all "
        f"{len(arms_tab)} arms together. That is {share_text} of the original report's budget "
        f"({ORIGINAL_EPOCHS} epochs over {ORIGINAL_TRAIN_IMAGES:,} healthy images)."
    )
    if share < 10:
        text += (
            " At this budget the models are far from converged, so differences between arms say "
            "how fast each setting learns rather than where it ends; read the intervals, and rerun "
            "with more epochs (or the paper profile on a GPU) before drawing conclusions."
        )
    return text + " " + plateau_sentence(arms_tab, batch_size)


def plateau_sentence(arms_tab: pd.DataFrame, batch_size: int) -> str:
    """Which arms are still on the posterior-collapse plateau (final KL below the threshold)."""
    kl = arms_tab["final_kld"] / batch_size
    stuck = list(arms_tab.loc[kl < PLATEAU_KL_PER_IMAGE, "label"])
    if not stuck:
        return (
            f"Every arm left the posterior-collapse plateau (final KL divergence at least "
            f"{PLATEAU_KL_PER_IMAGE:g} nats per image)."
        )
    who = (
        "Every arm is"
        if len(stuck) == len(arms_tab)
        else f"{len(stuck)} arms ({', '.join(stuck)}) are"
    )
    return (
        f"{who} not trained past the posterior-collapse plateau (final KL divergence below "
        f"{PLATEAU_KL_PER_IMAGE:g} nats per image): such a model ignores its latent code and "
        "returns nearly one mean image, so comparisons involving it describe the plateau, not the "
        "setting. The paper profile trains every arm past it."
    )


def _best_delta(table: pd.DataFrame, reference: str, images: str) -> pd.Series | None:
    """The row of `images` with the largest PSNR change against the reference (None if none)."""
    rows = table[(table["images"] == images) & (table["entry"] != reference)]
    return None if rows.empty else rows.loc[rows["d_psnr_mean"].idxmax()]


def _delta_phrase(row: pd.Series | None, what: str) -> str:
    """'<label> changed held-out PSNR by x dB [ci] (verdict)' or a no-arm phrase."""
    if row is None:
        return f"no {what} arm was trained"
    verdict = _verdict(row["d_psnr_ci_low"], row["d_psnr_ci_high"], "a clear gain", "a clear loss")
    return (
        f"{row['label']} changed held-out PSNR by {row['d_psnr_mean']:+.2f} dB "
        f"[{row['d_psnr_ci_low']:+.2f}, {row['d_psnr_ci_high']:+.2f}]; {verdict}"
    )


def collapse_text(kld_means: Mapping[str, float], labels: Mapping[str, str]) -> str:
    """A note naming the arms whose posterior collapsed (KLD near 0 nats), or ''."""
    flat = [
        f"{labels.get(k, k)} {v:.2f}" for k, v in kld_means.items() if v < COLLAPSED_KL_PER_IMAGE
    ]
    if not flat:
        return ""
    return (
        f"In {len(flat)} of {len(kld_means)} arms the encoder's posterior has collapsed onto the "
        f"prior: the mean KL divergence per held-out image is below {COLLAPSED_KL_PER_IMAGE:g} nat "
        f"({'; '.join(flat)}), so the latent vector carries almost no information about the "
        "image, the decoder outputs nearly the same average image whatever the input, and "
        "reconstruction errors mostly measure how far an image is from that average."
    )


def summary_text(
    arms_tab: pd.DataFrame,
    latent_tab: pd.DataFrame,
    beta_tab: pd.DataFrame,
    art_tab: pd.DataFrame,
    green_tab: pd.DataFrame,
    polyp_tab: pd.DataFrame,
    auc_tab: pd.DataFrame,
    gap_tab: pd.DataFrame,
    batch_size: int,
    collapse: str = "",
    quality: pd.DataFrame | None = None,
) -> str:
    """The closing paragraph of Section 10, built from this run's tables (+ a collapse note)."""
    masked_ref = MASKED_SCORING
    polyp_row = _best_delta(polyp_tab, BASELINE, POLYPS_EVAL)
    polyp_part = (
        "no polyp arm was trained"
        if polyp_row is None
        else f"adding polyps to training changed PSNR on unseen polyps by "
        f"{polyp_row['d_psnr_mean']:+.2f} dB [{polyp_row['d_psnr_ci_low']:+.2f}, "
        f"{polyp_row['d_psnr_ci_high']:+.2f}]"
    )
    rates = green_tab.set_index("images")["rate"]
    real = rates.get("real: healthy training images", float("nan"))
    base_s = rates.get(f"samples: {Arm(BASELINE, 'baseline').label}", float("nan"))
    masked_s = rates.get("samples: artifacts masked", float("nan"))
    base_auc = auc_tab[auc_tab["arm"] == BASELINE]
    best = base_auc.loc[base_auc["auc"].idxmax()]
    gap = gap_tab[(gap_tab["metric"] == "psnr") & gap_tab["images"].str.startswith("gap")].iloc[0]
    lines = [
        "- Latent size (the arm with the largest PSNR change): "
        f"{_delta_phrase(_best_delta(latent_tab, BASELINE, HEALTHY_TEST), 'latent')}.",
        "- β-VAE (the arm with the largest PSNR change): "
        f"{_delta_phrase(_best_delta(beta_tab, BASELINE, HEALTHY_TEST), 'β')}.",
        f"- Artifacts: {_delta_phrase(_best_delta(art_tab, masked_ref, HEALTHY_TEST), 'masked')} "
        f"under the same mask; green boxes appear in {100 * real:.0f} % of the real training "
        f"images, {100 * base_s:.0f} % of the baseline's samples and {100 * masked_s:.0f} % of "
        "the masked arm's samples.",
        f"- Polyps in training: {polyp_part}.",
        f"- Detection without labels: best AUC {best['auc']:.3f} [{best['ci_low']:.3f}, "
        f"{best['ci_high']:.3f}] with the {SCORE_LABELS[best['score']]}.",
        f"- Training vs held-out healthy images (baseline): PSNR gap {gap['mean']:+.2f} dB "
        f"[{gap['ci_low']:+.2f}, {gap['ci_high']:+.2f}].",
    ]
    if quality is not None:
        lines.append(f"- Sample quality: {quality_bullet(quality)}.")
    closing = budget_text(arms_tab, batch_size) + (" " + collapse if collapse else "")
    return "In this run:\n\n" + "\n".join(lines) + "\n\n" + closing


def closing_text(
    tables: Mapping[str, pd.DataFrame], kld_means: Mapping[str, float], labels: Mapping[str, str],
    batch_size: int,
) -> str:  # fmt: skip
    """Section 10.9 from the run's tables by name (arms, latent, beta, ...) and the arms' KLD."""
    names = ("arms", "latent", "beta", "artifacts", "green_box", "polyps", "anomaly", "split")
    collapse = collapse_text(kld_means, labels)
    return summary_text(
        *(tables[n] for n in names), batch_size, collapse=collapse, quality=tables.get("quality")
    )


def quality_text(table: pd.DataFrame, masked: Sequence[str] = ()) -> str:
    """Section 10.8: Table S12's scale, each arm's place on it, and what the label means."""
    text = quality_text_of(table, what="samples", real=table.attrs.get("real", ""))
    if masked:
        text += (
            f" The {_and_join(list(masked))} arm draws its masked regions black, as it was "
            "trained, and is compared with unmasked real images, so those regions count against "
            "it."
        )
    return text


def quality_bullet(table: pd.DataFrame) -> str:
    """One line: the arm with the lowest Fréchet distance, against the floor and the mean image."""
    label = table.attrs.get("label") or "FD"
    arms = table.drop(index=list(QUALITY_SCALE_ROWS))
    best = arms["FD"].idxmin()
    floor, _, mean = (float(table.loc[name, "FD"]) for name in QUALITY_SCALE_ROWS)
    return (
        f"the lowest {label} of the arms' samples is {arms.loc[best, 'FD']:.2f} ({best}; floor "
        f"{floor:.2f}, mean image {mean:.2f}; Table S12)"
    )
