"""Prose of the report's frame: the data source on the title page and the closing summary.

Every number comes from the run: the notebooks' `results/NN.json` and the resolved parameters
in `run.json`, handed in by helpers.runner.report; the original report's from helpers.core.reference.
"""

from __future__ import annotations

from typing import Any

from helpers.core.reference import ORIGINAL_EPOCHS, ORIGINAL_METRICS, PAPER_SYNTHETIC_AUC
from helpers.data.kvasir import ignored_text
from helpers.evaluate.qualitative import sample_label
from helpers.narrative.sharper import FULL_COMMAND
from helpers.study.sharper import Variant, synthetic_label

SUMMARY_HEADING = "## 13. Summary"
METRICS = (("psnr", "PSNR"), ("ssim", "SSIM"))


def describe_record(record: dict) -> str:
    """Words for the title page and the summary from what notebook 01 checked about its data.

    "Kvasir v1/v2" only when the record says what verified it (helpers.data.kvasir.verify_version);
    anything else is a folder (or zip) of Kvasir-style images, named by its counts and digest.
    """
    kind = str(record.get("kind", ""))
    digest = str(record.get("fingerprint", ""))[:16]
    if kind == "synthetic":
        version = record.get("generator_version", "?")
        return (
            f"the embedded Kvasir-like set (procedural frames, not real Kvasir images; generator "
            f"version {version}, content fingerprint {digest})"
        )
    container = record.get("container") or "folder"
    digest_words = f"{'content fingerprint' if container == 'folder' else 'sha256'} {digest}"
    check = record.get("check") or ""
    ignored = record.get("ignored")
    ignored = f"; {ignored_text(ignored)}" if isinstance(ignored, dict) and ignored else ""
    name = "Kvasir " + kind.split("-", 1)[1] if kind.startswith("kvasir-") else ""
    if name and record.get("verified"):
        checked = f"; archive check: {check}" if container == "zip" and check else ""
        return f"{name} (verified: {record['verified']}; {digest_words}{checked}){ignored}"
    if name:  # a record of an older notebook 01, which trusted folder names
        return (
            f"images recorded as {name} by an older notebook 01 without checking classes, counts "
            f"or the official digest (not verified; sha256 {digest}); run notebook 01 again"
        )
    counts = record.get("counts") or {}
    listed = ", ".join(f"{cls} {n}" for cls, n in counts.items())
    return (
        f"a {container} of Kvasir-style images ({listed + '; ' if listed else ''}{digest_words}; "
        f"not verified as Kvasir v1 or v2){ignored}"
    )


def format_metric(metric: str, mean: float, std: float) -> str:
    """How the report writes a metric: PSNR in dB with 2 decimals, SSIM with 3."""
    digits = 2 if metric.lower() == "psnr" else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_text(
    source: str,
    synthetic: bool,
    epochs: dict[str, int],
    results: dict[str, dict[str, Any]],
    ablation_params: dict[str, Any],
    unread: dict[str, str] | None = None,
) -> str:
    """The closing summary: data, training length, and each part's headline numbers.

    `unread`: what could not be read, by notebook number ("06") or "run.json", as
    "results/06.json is missing"; the summary says so instead of guessing why.
    """
    unread = unread or {}
    trained = ", ".join(f"{e} epoch{'s' * (e != 1)} in {n}" for n, e in epochs.items())
    if trained:
        training = f" Training ran for {trained}."
    elif "run.json" in unread:
        training = f" How long training ran is unknown: {unread['run.json']}."
    else:
        training = ""
    parts = [
        SUMMARY_HEADING,
        "",
        f"Data: {source}.{training} The original report trained for {ORIGINAL_EPOCHS} epochs "
        "on real Kvasir images.",
    ]
    if synthetic:
        parts.append(
            "\n**This run used the embedded Kvasir-like set, not Kvasir.** Its numbers show that "
            "the pipeline runs end to end; they say nothing about how EndoVAE does on real "
            "endoscopy images. Run the paper profile on Kvasir for comparable numbers."
        )
    parts += ["", *metrics_paragraph(results.get("06", {}).get("models", {}), unread.get("06"))]
    parts += ["", quality_sentence(results.get("05", {}).get("quality"), unread.get("05"))]
    found = {n: results.get(n, {}) for n in ("07", "08", "09", "10")}
    paragraphs = {
        "07": ("the classifier's numbers", classifier_paragraph(found["07"])),
        "08": ("the ablations", ablation_paragraph(found["08"], ablation_params)),
        "09": ("the synthetic-data results", synthetic_paragraph(found["09"])),
        "10": ("the sharper model", sharper_paragraph(found["10"])),
    }
    for number, (what, lines) in paragraphs.items():
        if number in unread:
            lines = [f"{unread[number]}, so this summary leaves out {what}."]
        parts += ["", *lines]
    return "\n".join(parts).strip() + "\n"


def metrics_paragraph(
    models: dict[str, dict[str, dict[str, float]]], unread: str | None = None
) -> list[str]:
    """PSNR/SSIM per model as a table beside the original report's numbers, and a comparison.

    `unread` ("results/06.json is missing"): why no numbers could be read although
    notebook 06 ran; without it, no numbers mean that notebook 06 did not run.
    """
    if unread:
        return [f"{unread}, so this summary quotes no PSNR/SSIM numbers."]
    if not models:
        return ["No PSNR/SSIM results were found in this run (notebook 06 did not run)."]
    lines = [
        "Reconstruction quality on polyp images (mean ± standard deviation), this run next to "
        "the original report:",
        "",
        "| Model | PSNR (dB) | SSIM | PSNR, original | SSIM, original |",
        "|---|---|---|---|---|",
    ]
    for model, values in models.items():
        ours = [format_metric(m, values[m]["mean"], values[m]["std"]) for m, _ in METRICS]
        original = ORIGINAL_METRICS.get(model, {})
        orig = [
            format_metric(m, *original[label]) if label in original else "-" for m, label in METRICS
        ]
        lines.append(f"| {model.upper()} | {ours[0]} | {ours[1]} | {orig[0]} | {orig[1]} |")
    if {"mse", "bce"} <= set(models):
        lines += ["", comparison_sentence(models)]
    return lines


def quality_sentence(quality: dict[str, Any] | None, unread: str | None = None) -> str:
    """Sample quality of the prior samples (notebook 05's Table S11), or why it is not quoted."""
    if unread:
        return f"{unread}, so this summary quotes no sample-quality numbers."
    rows = (quality or {}).get("rows") or {}
    scale = list((quality or {}).get("scale_rows") or ())
    if len(scale) != 3 or not set(scale) <= set(rows) or set(rows) == set(scale):
        return (
            "Sample quality (Fréchet distance, KID and precision/recall of the generated frames) "
            "was not measured in this run: results/05.json holds no quality table."
        )
    label = quality.get("label") or "FD"
    models = "; ".join(
        f"{name} {r['fd']:.2f} (precision {r['precision']:.2f}, recall {r['recall']:.2f})"
        for name, r in rows.items()
        if name not in scale
    )
    floor, blurred, mean = (rows[name]["fd"] for name in scale)
    real = quality.get("real") or "held-out healthy frames"
    kind = (
        "the standard FID Inception features, at far fewer samples than papers use"
        if label == "FID"
        else "features of a small CNN trained in this run, so not comparable with published FID"
    )
    return (
        f"Sample quality of the prior samples against the {real} (Table S11, "
        f"{label}, lower is better): {models}; the floor (two halves of the real frames) is "
        f"{floor:.2f}, blurred real frames {blurred:.2f} and the mean image {mean:.2f}; {kind}."
    )


def comparison_sentence(models: dict[str, dict[str, dict[str, float]]]) -> str:
    """Which model scores higher on each metric, and by how much relative to the spread."""
    bits = []
    for metric, unit in (("psnr", " dB"), ("ssim", "")):
        mse, bce = models["mse"][metric], models["bce"][metric]
        better = "MSE" if mse["mean"] > bce["mean"] else "BCE"
        diff = abs(mse["mean"] - bce["mean"])
        spread = max(mse["std"], bce["std"])
        size = "smaller than" if diff < spread else "larger than"
        digits = 2 if metric == "psnr" else 3
        bits.append(
            f"{better} is higher on {metric.upper()} by {diff:.{digits}f}{unit}, "
            f"{size} one standard deviation across images ({spread:.{digits}f}{unit})"
        )
    return "In this run " + "; ".join(bits) + "."


def classifier_paragraph(found: dict[str, Any]) -> list[str]:
    """Classifier accuracy/AUC per VAE and whether ImageNet weights were used."""
    models = found.get("models", {})
    if not models:
        return []
    scores = "; ".join(
        f"{m.upper()} VAE: accuracy {v['accuracy']:.3f}, AUC {v['auc']:.3f}"
        for m, v in models.items()
    )
    lines = [f"Real-versus-reconstructed classifier (Section 9): {scores}."]
    if found.get("pretrained") is False:
        lines.append(
            "The classifier had no ImageNet weights in this run (ResNet18 trained from scratch), "
            "unlike the original report's pretrained ResNet18."
        )
    elif found.get("pretrained"):
        lines.append("The classifier started from ImageNet-pretrained ResNet18 weights.")
    return lines


def ablation_paragraph(found: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """What Section 10 varied (notebook 08's parameters) and the tables it wrote."""
    tables = found.get("tables", [])
    if not tables:
        return []
    varied = [
        f"{label} {params[key]}"
        for key, label in (("latent_dims", "latent sizes"), ("betas", "β values"))
        if key in params
    ]
    n = params.get("abl_epochs")
    epochs = f" for {n} epoch{'s' * (n != 1)} per arm" if n is not None else ""
    what = f" ({'; '.join(varied)})" if varied else ""
    return [
        f"Section 10 trained its ablation arms{epochs}{what} and wrote "
        f"{len(tables)} tables ({', '.join(tables)}); its closing subsection states what they show."
    ]


def synthetic_paragraph(found: dict[str, Any]) -> list[str]:
    """Train-on-synthetic results of Section 11 (notebook 09's Table 12), when it ran."""
    rows = found.get("classifiers", {})
    if not rows:
        return []
    listed = "; ".join(
        f"{name}: AUC {row['auc']:.3f} (95 % CI {row['auc_low']:.3f} to {row['auc_high']:.3f})"
        for name, row in rows.items()
    )
    real, synthetic = PAPER_SYNTHETIC_AUC["real only"][0], PAPER_SYNTHETIC_AUC["synthetic only"][0]
    return [
        "Healthy-versus-polyp classifiers tested on held-out real frames (Section 11), by "
        f"training data: {listed}. The paper reports AUC {100 * real:.1f} % (real) and "
        f"{100 * synthetic:.1f} % (synthetic only) on KID."
    ]


def sharper_paragraph(found: dict[str, Any]) -> list[str]:
    """Section 12's headline: the sharper model against the faithful one, when notebook 10 ran."""
    paired = {(row["images"], row["metric"]): row for row in found.get("paired", [])}
    healthy = {m: paired.get(("healthy (held-out)", m)) for m in ("PSNR", "SSIM")}
    if not all(healthy.values()):
        return []
    variant = Variant(**found["variant"]) if found.get("variant") else None
    if variant and variant.budget == "token":
        return [
            "The sharper EndoVAE of Section 12 trained at the quick profile's token budget, so "
            f"its goals were not assessed; {FULL_COMMAND} trains it at notebook 03's budget."
        ]
    gain = {m: row["mean sharper - faithful"] for m, row in healthy.items()}
    fd, auc = found.get("fd", {}), found.get("synthetic_auc", {})
    prior = variant.prior if variant else "standard"
    through = " (sampled through its fitted latent prior)" if prior == "fitted" else ""
    nan = float("nan")
    return [
        f"The sharper EndoVAE of Section 12 ({variant.words() if variant else 'opt-in'}) against "
        "the faithful model on held-out healthy "
        f"frames: PSNR {gain['PSNR']:+.2f} dB, SSIM {gain['SSIM']:+.3f}, at "
        f"{found.get('time_ratio', nan):.2f}x the training time; sample FD{through} "
        f"{fd.get(sample_label('sharper', prior), nan):.2f} against "
        f"{fd.get(sample_label('faithful', 'standard'), nan):.2f}; train-on-synthetic AUC "
        f"{auc.get(synthetic_label('sharper', prior), nan):.3f} against "
        f"{auc.get(synthetic_label('faithful', 'standard'), nan):.3f}."
    ]


def stale_text(name: str) -> str:
    """The warning for a notebook whose inputs changed after it ran."""
    return (
        f"> **Stale results ({name}).** Files this notebook read (an earlier notebook's model, "
        "images or tables, or the data folder) changed after it ran, so its figures and numbers "
        "describe the earlier inputs. Run `python -m helpers.run` again to bring them up to date."
    )
