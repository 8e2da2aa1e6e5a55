"""Report prose of sample quality (Sections 6, 10, 11 and 12): FD, KID, precision/recall, and
where each set sits on the scale of the real frames (floor, blurred real, mean image).

Apart from the reconstruction prose so that notebook 06, which has no samples, does not import the
feature statistics (torchmetrics) they come from.
"""

from __future__ import annotations

import pandas as pd

from helpers.evaluate.quality import ROWS as QUALITY_SCALE_ROWS


def quality_label_text(label: str, n: int) -> str:
    """What the distance's label means: standard FID, or run features not comparable with papers."""
    if label == "FID":
        return (
            "These are FID and KID on the standard FID Inception-v3 features, the published "
            f"metric's; with {n} frames per set FID is biased upward against papers' 10,000 to "
            "50,000 samples, so compare the rows of this table rather than published values."
        )
    return (
        f'The distances are labelled "{label}": their features come from a small CNN trained in '
        "this run on its own real training frames, so they rank the sets within this run but are "
        "not comparable with published FID values, which use the fixed ImageNet Inception-v3 "
        "(`fid_weights` names those weights when they are on disk)."
    )


def quality_place(fd: float, scale: dict[str, float]) -> str:
    """Where a Fréchet distance sits on the table's scale (floor, blurred real, mean image)."""
    floor, blurred, mean = (scale[name] for name in QUALITY_SCALE_ROWS)
    near = max(floor, blurred)
    if fd <= near:
        return "no farther from the real frames than the blurred real frames"
    if fd >= 0.9 * mean or mean <= near:
        return "about as far from the real frames as the mean image repeated, or farther"
    share = 100 * (fd - near) / (mean - near)
    return f"{share:.0f} % of the way from the blurred real frames to the mean image"


def quality_text(table: pd.DataFrame, what: str = "prior samples", real: str = "") -> str:
    """The scale rows, each candidate's FD/KID/precision/recall and place on it, and the label."""
    label = table.attrs.get("label") or "FD"
    scale = {name: float(table.loc[name, "FD"]) for name in QUALITY_SCALE_ROWS}
    n = int(table["n"].min())
    parts = [
        f"{name} {r['FD']:.2f} (KID {r['KID mean']:.3f} ± {r['KID s.e.']:.3f}, "
        f"precision {r['precision']:.2f}, recall {r['recall']:.2f}), "
        f"{quality_place(float(r['FD']), scale)}"
        for name, r in table.iterrows()
        if name not in QUALITY_SCALE_ROWS
    ]
    floor, blurred, mean = (scale[name] for name in QUALITY_SCALE_ROWS)
    k, sigma = table.attrs.get("k", 3), table.attrs.get("blur_sigma", 1.5)
    source = f" ({real})" if real else ""
    return (
        f"**Sample quality.** Every row sets {n} frames against the same {n} real frames{source}, "
        "half of them; the other half, with no source frame in common, is the floor: what two "
        "samples of the real distribution differ by at this size. FD and KID are 0 for identical "
        "distributions (lower is better); precision is the share of a set's frames inside the "
        f"real frames' {k}-nearest-neighbour manifold (realism), recall the share of real frames "
        f"inside the set's (coverage). In this run {label} is {floor:.2f} at the floor, "
        f"{blurred:.2f} for the real frames blurred (Gaussian, σ = {sigma:g} px) and {mean:.2f} "
        f"for the mean image repeated. The {what} reach: "
        + "; ".join(parts)
        + ". "
        + quality_label_text(label, n)
    )
