"""Report prose of Section 9 (notebook 07): the real-vs-reconstructed classifiers."""

from __future__ import annotations

from helpers.core.reference import ORIGINAL_TABLE3


def discussion_text(results: dict[str, dict]) -> str:
    """Markdown on the classifiers' test results, with the original's numbers and caveats."""
    parts = []
    for name, res in results.items():
        errors = round((1 - res["accuracy"]) * res["n_test"])
        orig = ORIGINAL_TABLE3["Accuracy"].get(name), ORIGINAL_TABLE3["AUC"].get(name)
        parts.append(
            f"the classifier for the {name} VAE reaches accuracy {res['accuracy']:.3f} on the "
            f"{res['n_test']} test images ({errors} errors) and ROC AUC {res['auc']:.3f} "
            f"(original: accuracy {orig[0]}, AUC {orig[1]})"
        )
    text = "In this run, " + "; ".join(parts) + "."
    n_test = min(res["n_test"] for res in results.values())
    text += (
        f" With {n_test} test images one error moves the accuracy by {100 / n_test:.1f} points,"
        " so small differences between the two VAEs are not meaningful."
    )
    aucs = [res["auc"] for res in results.values()]
    if min(aucs) >= 0.9:
        text += (
            " Both AUCs are at least 0.9: the classifiers' scores rank reconstructions above real"
            " images, so the reconstructions carry a clear signature."
        )
    elif max(aucs) <= 0.6:
        text += " Both AUCs are close to 0.5: in this run the classifiers cannot separate the two."
    lagging = [n for n, r in results.items() if r["auc"] - r["accuracy"] >= 0.2]
    if lagging:
        text += (
            f" For the {' and '.join(lagging)} VAE the accuracy lags far behind the AUC: the"
            " scores rank the classes apart, but the fixed 0.5 probability threshold does not"
            " split them there (the probabilities are poorly calibrated)."
        )
    if not all(res["pretrained"] for res in results.values()):
        text += (
            " The backbone was trained from scratch (no ImageNet weights available), unlike the"
            " original's frozen pretrained ResNet18, so the numbers are not directly comparable."
        )
    return text


def setup_text(results: dict[str, dict], n_clf_train: int, n_clf_test: int, epochs: int) -> str:
    """Markdown on this run's classifier setup: weights status, training and test set sizes."""
    first = next(iter(results.values()))
    return (
        f"**Classifier setup in this run.** {first['status']} Each classifier is trained on "
        f"{first['n_train']} images ({n_clf_train} real + {n_clf_train} reconstructed) for "
        f"{epochs} epochs and tested on {first['n_test']} images "
        f"({n_clf_test} + {n_clf_test}) whose sources it never saw."
    )
