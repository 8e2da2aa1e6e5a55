"""Tests for helpers.evaluate.classifier: offline construction, source-disjoint split, training, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers.config import params
from helpers.evaluate import classifier
from helpers.narrative import classifier as classifier_text


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """Point torch.hub's cache at an empty folder (so "auto" finds no weights)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture
def fake_weights(tmp_path):
    """A ResNet18 state dict on disk (random values) standing in for the ImageNet file."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    path = tmp_path / "resnet18-local.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    return path


def _easy_pairs(n, seed=0):
    """'Real' textured bright images and 'reconstructed' smooth dark ones (easy to tell apart)."""
    g = torch.Generator().manual_seed(seed)
    real = (0.6 + 0.4 * torch.rand(n, 3, 96, 96, generator=g)).clamp(0, 1)
    recon = torch.full((n, 3, 96, 96), 0.25) + 0.02 * torch.rand(n, 3, 1, 1, generator=g)
    return real, recon


def test_build_classifier_none_works_offline(empty_hub):
    model, status = classifier.build_classifier("none")
    assert not model.frozen and "No ImageNet weights" in status and "from scratch" in status
    assert all(p.requires_grad for p in model.parameters())
    assert model(torch.rand(3, 3, 96, 96)).shape == (3, 2)
    head = [m for m in model.head if isinstance(m, nn.Linear | nn.Dropout)]
    assert [getattr(m, "out_features", None) for m in head] == [256, None, 2]
    assert head[1].p == 0.3


def test_build_classifier_auto_without_cache_falls_back(empty_hub):
    model, status = classifier.build_classifier("auto")
    assert not model.frozen and classifier.WEIGHTS_FILE in status
    assert str(empty_hub) not in status, "no absolute path of the machine in the report"
    assert model.input_size == classifier.SCRATCH_INPUT_SIZE


def test_build_classifier_auto_uses_cached_file(empty_hub, fake_weights):
    cache = empty_hub / "checkpoints" / classifier.WEIGHTS_FILE
    cache.parent.mkdir(parents=True)
    cache.write_bytes(fake_weights.read_bytes())
    model, status = classifier.build_classifier("auto")
    assert model.frozen and model.input_size == 224 and classifier.WEIGHTS_FILE in status
    assert str(cache) not in status


def test_build_classifier_explicit_file(fake_weights):
    model, status = classifier.build_classifier(str(fake_weights))
    assert model.frozen and "frozen" in status
    assert not any(p.requires_grad for p in model.backbone.parameters())
    reference = torch.load(fake_weights, weights_only=True)["conv1.weight"]
    assert torch.equal(model.backbone.conv1.weight, reference)
    with pytest.raises(FileNotFoundError, match="weights="):
        classifier.build_classifier(str(fake_weights) + ".missing")


def test_select_sources_and_split_are_disjoint_by_source():
    manifest = pd.DataFrame(
        {
            "source_id": np.repeat([f"s{i:02d}" for i in range(15)], 4),
            "flip": ["none", "h", "v", "hv"] * 15,
        }
    )
    rows = classifier.select_sources(manifest, 12, seed=1)
    chosen = manifest["source_id"].to_numpy()[rows]
    assert len(set(chosen)) == 12 and (manifest["flip"].to_numpy()[rows] == "none").all()
    train_idx, test_idx = classifier.split_pairs(12, 8, 4, seed=1)
    assert len(train_idx) == 8 and len(test_idx) == 4
    assert not set(chosen[train_idx]) & set(chosen[test_idx])
    real = torch.arange(12).float().view(12, 1, 1, 1).expand(12, 3, 2, 2)
    x_tr, y_tr = classifier.pair_set(real, real + 100, train_idx)
    x_te, _ = classifier.pair_set(real, real + 100, test_idx)
    sources = lambda x: set((x[:, 0, 0, 0] % 100).long().tolist())  # noqa: E731
    assert not sources(x_tr) & sources(x_te)
    assert y_tr.tolist() == [0] * 8 + [1] * 8
    with pytest.raises(ValueError, match="n_pairs=20"):
        classifier.select_sources(manifest, 20)
    with pytest.raises(ValueError, match="exceeds n_pairs=12"):
        classifier.split_pairs(12, 10, 4, seed=0)


def test_score_metrics_hand_made_predictions():
    y = np.array([0, 0, 0, 1, 1, 1])
    prob = np.array([0.1, 0.4, 0.7, 0.3, 0.8, 0.9])
    # AUC by hand: P(score_pos > score_neg) over 9 pairs: 0.3 beats 1, 0.8 beats 3, 0.9 beats 3.
    out = classifier.score_metrics(y, prob)
    assert out["auc"] == pytest.approx(7 / 9)
    assert out["accuracy"] == pytest.approx(4 / 6)  # predictions 0,0,1,0,1,1
    assert out["fpr"][-1] == 1.0 and out["tpr"][-1] == 1.0
    with pytest.raises(ValueError, match="both classes"):
        classifier.score_metrics(np.zeros(3), prob[:3])


class _LogitEcho(nn.Module):
    """Returns logits (0, x[:, 0, 0, 0]) so the softmax probability of label 1 is sigmoid(x)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.stack([torch.zeros(len(x)), x[:, 0, 0, 0]], dim=1)


def test_evaluate_uses_softmax_of_reconstructed():
    p = torch.tensor([0.2, 0.6, 0.55, 0.9])
    x = torch.logit(p).view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    out = classifier.evaluate(_LogitEcho(), x, torch.tensor([0, 0, 1, 1]), batch_size=3)
    assert out["auc"] == pytest.approx(3 / 4)  # 0.55 loses to 0.6, the other 3 pairs win
    assert out["accuracy"] == pytest.approx(3 / 4)


def test_train_from_scratch_learns_easy_task(empty_hub):
    torch.manual_seed(0)
    model, _ = classifier.build_classifier("none")
    real, recon = _easy_pairs(12)
    train_idx, test_idx = classifier.split_pairs(12, 8, 4, seed=0)
    x, y = classifier.pair_set(real, recon, train_idx)
    hist = classifier.train_classifier(model, x, y, epochs=6, batch_size=8, seed=0)
    assert list(hist["epoch"]) == list(range(1, 7))
    assert hist["loss"].iloc[-1] < hist["loss"].iloc[0]
    out = classifier.evaluate(model, *classifier.pair_set(real, recon, test_idx))
    assert out["accuracy"] >= 0.75 and out["auc"] >= 0.9


def test_train_frozen_trains_only_head(fake_weights):
    model, _ = classifier.build_classifier(str(fake_weights), input_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    real, recon = _easy_pairs(8, seed=1)
    x, y = classifier.pair_set(real, recon, np.arange(8))
    hist = classifier.train_classifier(model, x, y, epochs=15, lr=3e-3, batch_size=4, seed=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    assert not torch.equal(before["head.0.weight"], after["head.0.weight"])
    assert hist["loss"].iloc[-3:].mean() < hist["loss"].iloc[:3].mean()
    assert not model.training


def test_train_rejects_bad_parameters(empty_hub):
    model, _ = classifier.build_classifier("none")
    x, y = torch.rand(4, 3, 96, 96), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="clf_epochs"):
        classifier.train_classifier(model, x, y, epochs=0)
    with pytest.raises(ValueError, match="x_train has 4"):
        classifier.train_classifier(model, x, y[:3])


def test_table3_and_discussion_text():
    results = {
        "MSE": {"accuracy": 0.95, "auc": 0.99, "n_test": 40, "pretrained": False},
        "BCE": {"accuracy": 0.5, "auc": 0.97, "n_test": 40, "pretrained": False},
    }
    table = classifier.table3(results)
    assert list(table.index) == ["Accuracy", "AUC"]
    assert list(table.columns[:2]) == ["Classifier for MSE VAE", "Classifier for BCE VAE"]
    assert table.loc["Accuracy", "Original: MSE VAE"] == 0.995
    assert table.loc["AUC", "Classifier for BCE VAE"] == 0.97
    text = classifier_text.discussion_text(results)
    assert "accuracy 0.950 on the 40 test images (2 errors)" in text
    assert "one error moves the accuracy by 2.5 points" in text
    assert "For the BCE VAE the accuracy lags" in text and "MSE VAE the accuracy lags" not in text
    assert "trained from scratch" in text
    results["MSE"]["pretrained"] = results["BCE"]["pretrained"] = True
    assert "from scratch" not in classifier_text.discussion_text(results)


def test_pair_counts_and_their_errors():
    classifier.check_sizes(10, 6, 4)
    with pytest.raises(ValueError, match="n_pairs=1: expected an integer >= 2"):
        params.check("n_pairs", 1)
    with pytest.raises(ValueError, match="clf_batch_size=1"):
        params.check("clf_batch_size", 1)
    with pytest.raises(ValueError, match="exceeds n_pairs=10"):
        classifier.check_sizes(10, 8, 4)
    manifest = pd.DataFrame({"source_id": [0, 0, 1, 2, 3, 4]})  # 5 distinct sources
    assert classifier.fit_pairs(manifest, 4, 2, 2, False, "p") == (4, 2, 2)
    with pytest.raises(ValueError, match="n_pairs=10: only 5 distinct polyp source images in p"):
        classifier.fit_pairs(manifest, 10, 6, 4, False, "p")
    with pytest.warns(UserWarning, match="allow_fewer=True"):
        assert classifier.fit_pairs(manifest, 10, 6, 4, True, "p") == (5, 3, 2)


def test_results_summary_curves_and_history():
    history = pd.DataFrame({"epoch": [1, 2], "loss": [0.7, 0.5]})
    results = {
        label: {"accuracy": acc, "auc": 0.9, "n_train": 8, "n_test": 4, "input_size": 40,
                "pretrained": False, "fpr": np.array([0, 1]), "tpr": np.array([0, 1]),
                "history": history}
        for label, acc in (("MSE", 0.75), ("BCE", 1.0))
    }  # fmt: skip
    found = classifier.results_summary(results)
    assert found["pretrained"] is False
    assert found["models"]["bce"]["accuracy"] == 1.0 and found["models"]["mse"]["auc"] == 0.9
    table = classifier.table3(results)
    assert table.loc["Accuracy", "Classifier for MSE VAE"] == found["models"]["mse"]["accuracy"]
    assert list(classifier.roc_curves(results)) == ["MSE VAE", "BCE VAE"]
    both = classifier.history_table(results)
    assert len(both) == 4 and set(both["model"]) == {"MSE", "BCE"}
    results["MSE"]["status"] = "No ImageNet weights."
    text = classifier_text.setup_text(results, 4, 2, 3)
    assert text.startswith("**Classifier setup in this run.** No ImageNet weights. Each")
    assert "trained on 8 images (4 real + 4 reconstructed) for 3 epochs" in text
