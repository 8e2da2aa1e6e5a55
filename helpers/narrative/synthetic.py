"""Report prose of Section 11 (notebook 09): the generative models and the classifiers
trained on real, synthetic and both kinds of frames (Table 12, rows "real only",
"synthetic only" and "real + synthetic"); the paper's numbers come from helpers.core.reference.
"""

from __future__ import annotations

import pandas as pd

from helpers.core.reference import PAPER_SYNTHETIC_AUC
from helpers.evaluate.metrics import COLLAPSED_KL_PER_IMAGE
from helpers.evaluate.quality import ROWS as QUALITY_SCALE_ROWS
from helpers.narrative.quality import quality_label_text, quality_place


def _overlap(a: pd.Series, b: pd.Series) -> bool:
    """True when two rows' 95 % CIs of the AUC overlap."""
    return not (a["auc_high"] < b["auc_low"] or b["auc_high"] < a["auc_low"])


def discussion_text(table: pd.DataFrame, embedded: bool) -> str:
    """Markdown on Table 12 from this run's numbers, with the paper's ratio beside."""
    real, fake, both = (table.loc[r] for r in ("real only", "synthetic only", "real + synthetic"))
    paper = PAPER_SYNTHETIC_AUC["synthetic only"][0] / PAPER_SYNTHETIC_AUC["real only"][0]
    n_test = int(real["test images"])
    text = (
        f"Tested on the same {n_test} held-out real frames, the classifier trained on synthetic "
        f"frames only reaches ROC AUC {fake['auc']:.3f} (95 % CI {fake['auc_low']:.3f} to "
        f"{fake['auc_high']:.3f}) against {real['auc']:.3f} ({real['auc_low']:.3f} to "
        f"{real['auc_high']:.3f}) for real frames only, {fake['auc'] / real['auc']:.0%} of it "
        f"(the paper on KID: {100 * PAPER_SYNTHETIC_AUC['synthetic only'][0]:.1f} % against "
        f"{100 * PAPER_SYNTHETIC_AUC['real only'][0]:.1f} %, {paper:.0%}). "
    )
    sign = "raises" if both["auc"] > real["auc"] else "lowers"
    verdict = (
        "the intervals overlap, so this run cannot tell the two apart"
        if _overlap(both, real)
        else "the intervals do not overlap"
    )
    text += (
        f"Adding the synthetic frames to the real ones {sign} the AUC to {both['auc']:.3f} "
        f"({both['auc_low']:.3f} to {both['auc_high']:.3f}); {verdict}. Accuracy (threshold 0.5): "
        f"{real['accuracy']:.1%} real only, {fake['accuracy']:.1%} synthetic only, "
        f"{both['accuracy']:.1%} both."
    )
    if embedded:
        text += (
            " These frames are the embedded Kvasir-like set, whose polyps are drawn shapes: "
            "the numbers show that the pipeline works, not how EndoVAE frames help on Kvasir."
        )
    return text


def models_text(facts: list[dict], n_per_class: int) -> str:
    """Markdown: where each EndoVAE came from, how varied its frames are, and collapse warnings."""
    parts, collapsed = [], []
    for f in facts:
        parts.append(
            f"the {f['class']} model is {f['how']} on {f['training images']} images from "
            f"{f['training sources']} source frames ({f['test sources seen']} of them test "
            f"frames), ending at a KL divergence of {f['kld']:.2f} nats per image; its frames vary "
            f"by {f['spread']:.3f} per pixel (its {f['real images']} real frames: "
            f"{f['real spread']:.3f}); it generated {f['generated']} frames"
        )
        if f["kld"] < COLLAPSED_KL_PER_IMAGE:
            collapsed.append(f["class"])
    text = (
        f"In this run {'; '.join(parts)}. The synthetic set holds {n_per_class} frames per "
        "class, as many as the real training set (variation: standard deviation across frames, "
        "averaged over pixels, for pixel values in [0, 1])."
    )
    if collapsed:
        text += (
            f" The {' and '.join(collapsed)} model{'s are' if len(collapsed) > 1 else ' is'} "
            "still on the posterior-collapse plateau (KL divergence below "
            f"{COLLAPSED_KL_PER_IMAGE} nats per image): {'their' if len(collapsed) > 1 else 'its'} frames "
            "are close to one average image, so "
            "the synthetic-only classifier below learns little; longer training fixes this."
        )
    return text


def quality_text(table: pd.DataFrame) -> str:
    """Table S13 per model: its synthetic frames' FD/KID/P-R against its own class's scale."""
    label = table.attrs.get("label") or "FD"
    parts = []
    for name in table.index.unique("model"):
        part = table.xs(name, level="model")
        scale = {row: float(part.loc[row, "FD"]) for row in QUALITY_SCALE_ROWS}
        r = part.drop(index=list(QUALITY_SCALE_ROWS)).iloc[0]
        floor, blurred, mean = scale.values()
        parts.append(
            f"the {name} model's {int(r['n'])} synthetic frames reach {r['FD']:.2f} (KID "
            f"{r['KID mean']:.3f} ± {r['KID s.e.']:.3f}, precision {r['precision']:.2f}, recall "
            f"{r['recall']:.2f}) against a floor of {floor:.2f}, {blurred:.2f} for the blurred "
            f"real frames and {mean:.2f} for their mean image: {quality_place(r['FD'], scale)}"
        )
    return (
        f"**Sample quality.** Each class model's synthetic frames are compared with the held-out "
        f"real frames of its class ({table.attrs.get('real', '')}), half of them, beside that "
        f"class's own scale rows. In {label}, "
        + "; ".join(parts)
        + ". "
        + quality_label_text(label, int(table["n"].min()))
    )
