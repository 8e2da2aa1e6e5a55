"""Tests for helpers.train.fit: config checks, learning, units, checkpoints, resume, NaN handling."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.model.endovae import EndoVAE, EndoVAEConfig
from helpers.model.losses import kld
from helpers.train import fit as train
from helpers.train import infer
from helpers.train.checkpoint import load_checkpoint
from helpers.train.fit import TrainConfig, fit

# A small network (16 x 16 images) so that many epochs take well under a second.
TINY = EndoVAEConfig(
    latent_dim=4,
    in_size=16,
    enc_channels=(4, 8, 8, 8, 8, 8),
    hidden_dim=16,
    dec_channels=(8, 8, 8, 8, 4, 4),
)


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 N x size x size x 3 images: reddish frames with random colour blobs."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-50, 50, (n, size // 4, size // 4, 3)) + np.array([200, 90, 70])
    return np.kron(coarse, np.ones((1, 4, 4, 1))).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("loss", "l1"),
        ("epochs", -1),
        ("epochs", 2.5),
        ("batch_size", 0),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("beta", -1.0),
        ("seed", -3),
        ("checkpoint_every", -1),
        ("precision", "fp8"),
        ("compile", "yes"),
    ],
)
def test_train_config_errors_name_the_parameter(field, value):
    with pytest.raises(ValueError, match=f"^{field}="):
        TrainConfig(**{field: value})


def test_train_config_round_trip():
    config = TrainConfig(loss="bce", epochs=3, batch_size=4)
    assert TrainConfig.from_dict({**config.to_dict(), "unknown": 1}) == config


def test_bad_images_are_rejected():
    with pytest.raises(ValueError, match="images: expected uint8"):
        fit(np.zeros((4, 16, 16, 3), np.float32), TrainConfig(epochs=1), model_config=TINY)
    with pytest.raises(ValueError, match="in_size"):
        fit(np.zeros((4, 32, 32, 3), np.uint8), TrainConfig(epochs=1), model_config=TINY)


def test_loss_decreases_in_a_few_steps():
    images = smooth_images(32, 16)
    config = TrainConfig(epochs=6, batch_size=8, lr=3e-3)
    result = fit(images, config, model_config=TINY, device="cpu", progress=False)
    recon, total = result.history["recon"], result.history["total"]
    assert len(recon) == 6 and recon.iloc[-1] < 0.5 * recon.iloc[0]
    assert total.iloc[-1] < total.iloc[0]
    assert not result.model.training
    assert result.history["images_per_s"].gt(0).all()


def test_logged_losses_are_per_batch_sums():
    # lr ~ 0 keeps the model at its initial weights, so each epoch sums the same per-image
    # losses; the logged value must scale with the batch size, also with a smaller last batch.
    images = smooth_images(24, 16)
    logged = {}
    for batch_size in (8, 16):
        config = TrainConfig(epochs=1, batch_size=batch_size, lr=1e-30, precision="fp32")
        result = fit(images, config, model_config=TINY, device="cpu", progress=False)
        logged[batch_size] = result.history.iloc[0]
    assert logged[16]["recon"] / logged[8]["recon"] == pytest.approx(2.0, rel=0.03)
    assert logged[16]["total"] == pytest.approx(logged[16]["recon"] + logged[16]["kld"], rel=1e-5)


def test_checkpoint_history_and_weights_only(tmp_path):
    ckpt, hist = tmp_path / "m.pt", tmp_path / "m_history.csv"
    config = TrainConfig(epochs=3, batch_size=8, checkpoint_every=2)
    result = fit(smooth_images(16, 16), config, model_config=TINY, checkpoint_path=ckpt,
                 history_path=hist, device="cpu", progress=False)  # fmt: skip
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["epoch"] == 3 and len(state["history"]) == 3
    assert state["train_config"] == config.to_dict()
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    assert isinstance(state["rng"]["shuffle"], torch.Tensor)
    csv = pd.read_csv(hist)
    assert list(csv.columns) == list(train.HISTORY_COLUMNS) and len(csv) == 3
    assert np.allclose(csv["recon"], result.history["recon"])
    model, _ = load_checkpoint(ckpt)
    for key, value in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value.cpu())


def test_resume_returns_finished_checkpoint_and_grows_epochs(tmp_path):
    ckpt = tmp_path / "m.pt"
    images = smooth_images(16, 16)
    kwargs = {"model_config": TINY, "checkpoint_path": ckpt, "device": "cpu", "progress": False}
    first = fit(images, TrainConfig(epochs=2, batch_size=8), **kwargs)
    again = fit(images, TrainConfig(epochs=2, batch_size=8), **kwargs)
    assert again.resumed_from_epoch == 2 and len(again.history) == 2
    for key, value in first.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value)
    more = fit(images, TrainConfig(epochs=3, batch_size=8), **kwargs)
    assert more.resumed_from_epoch == 2 and list(more.history["epoch"]) == [1, 2, 3]


def test_checkpoints_with_the_old_data_fingerprint_still_resume(tmp_path):
    ckpt = tmp_path / "m.pt"
    images = smooth_images(8, 16)
    kwargs = {"model_config": TINY, "checkpoint_path": ckpt, "device": "cpu", "progress": False}
    fit(images, TrainConfig(epochs=1, batch_size=8), **kwargs)
    state = torch.load(ckpt, weights_only=False)
    tensor = infer.images_to_tensor(images, TINY.in_channels, TINY.in_size)
    old = train._legacy_fingerprint(tensor)
    assert len(old) == train.LEGACY_DIGEST_CHARS != len(train.data_fingerprint(tensor))
    state["extra"]["data"]["fingerprint"] = old  # as written before the one digest scheme
    torch.save(state, ckpt)
    assert fit(images, TrainConfig(epochs=2, batch_size=8), **kwargs).resumed_from_epoch == 1
    state["extra"]["data"]["fingerprint"] = "0" * train.LEGACY_DIGEST_CHARS  # other images
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="training images"):
        fit(images, TrainConfig(epochs=3, batch_size=8), **kwargs)


def test_resume_with_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "m.pt"
    images = smooth_images(8, 16)
    kwargs = {"checkpoint_path": ckpt, "device": "cpu", "progress": False}
    fit(images, TrainConfig(epochs=1, batch_size=8), model_config=TINY, **kwargs)
    with pytest.raises(ValueError, match=r"lr: 0\.001 -> 0\.01.*resume=False"):
        fit(images, TrainConfig(epochs=2, batch_size=8, lr=1e-2), model_config=TINY, **kwargs)
    other = EndoVAEConfig(**{**TINY.to_dict(), "latent_dim": 5})
    with pytest.raises(ValueError, match="latent_dim.*Delete the file"):
        fit(images, TrainConfig(epochs=2, batch_size=8), model_config=other, **kwargs)
    with pytest.raises(ValueError, match="training images"):
        fit(images[::-1], TrainConfig(epochs=2, batch_size=8), model_config=TINY, **kwargs)
    fresh = fit(images, TrainConfig(epochs=1, batch_size=8, lr=1e-2), model_config=TINY,
                resume=False, **kwargs)  # fmt: skip
    assert fresh.resumed_from_epoch == 0


def test_init_is_a_setting_and_checkpoints_without_it_resume_as_pytorch(tmp_path):
    ckpt = tmp_path / "m.pt"
    images = smooth_images(8, 16)
    kwargs = {"model_config": TINY, "checkpoint_path": ckpt, "device": "cpu", "progress": False}
    he = fit(images, TrainConfig(epochs=1, batch_size=8, init="he"), resume=False, **kwargs)
    paper = fit(images, TrainConfig(epochs=1, batch_size=8), resume=False, **kwargs)
    assert not torch.equal(he.model.encoder.logvar.bias, paper.model.encoder.logvar.bias)
    state = torch.load(ckpt, weights_only=False)
    del state["train_config"]["init"]  # as written before `init` existed
    torch.save(state, ckpt)
    assert fit(images, TrainConfig(epochs=2, batch_size=8), **kwargs).resumed_from_epoch == 1
    with pytest.raises(ValueError, match="init: 'pytorch' -> 'he'"):
        fit(images, TrainConfig(epochs=3, batch_size=8, init="he"), **kwargs)
    with pytest.raises(ValueError, match="init='xavier'"):
        TrainConfig(init="xavier")


class NaNAfter(EndoVAE):
    """EndoVAE whose training forward returns NaN logits from call `after` + 1 on."""

    after = 2

    def forward(self, x):
        """Forward; poison the logits once `after` training calls have passed."""
        logits, mu, logvar = super().forward(x)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls > self.after:
            logits = logits * float("nan")
        return logits, mu, logvar


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    ckpt, hist = tmp_path / "m.pt", tmp_path / "m_history.csv"
    images = smooth_images(16, 16)  # batch 8: 2 steps per epoch, NaN from epoch 2 on
    config = TrainConfig(epochs=4, batch_size=8, checkpoint_every=1)
    kwargs = {"model_config": TINY, "checkpoint_path": ckpt, "history_path": hist,
              "device": "cpu", "progress": False}  # fmt: skip
    monkeypatch.setattr(train, "EndoVAE", NaNAfter)
    with pytest.raises(FloatingPointError, match=r"epoch 2 in recon"):
        fit(images, config, **kwargs)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert len(pd.read_csv(hist)) == 1
    monkeypatch.setattr(train, "EndoVAE", EndoVAE)
    resumed = fit(images, config, **kwargs)
    assert resumed.resumed_from_epoch == 1
    assert np.isfinite(resumed.history[["recon", "kld", "total"]].to_numpy()).all()


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np, torch
    from helpers.model.endovae import EndoVAE, EndoVAEConfig
    from helpers.train import fit as train

    mode, ckpt, out = sys.argv[1], sys.argv[2], sys.argv[3]  # mode: kill | resume
    cfg = EndoVAEConfig(latent_dim=4, in_size=16, enc_channels=(4, 8, 8, 8, 8, 8),
                        hidden_dim=16, dec_channels=(8, 8, 8, 8, 4, 4))
    rng = np.random.default_rng(0)
    images = np.kron(rng.uniform(0, 255, (32, 4, 4, 3)), np.ones((1, 4, 4, 1))).astype(np.uint8)
    config = train.TrainConfig(epochs=4, batch_size=8, checkpoint_every=1, precision="fp32",
                               lr_cooldown=0.5)  # the resumed epochs fall in the cooldown

    class KilledMidEpoch3(EndoVAE):
        def forward(self, x):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 11:  # epoch 3, step 3 of 4: after the epoch-2 checkpoint
                os.kill(os.getpid(), signal.SIGKILL)
            return super().forward(x)

    def summary(result):
        return {"model": result.model.state_dict(), "resumed": result.resumed_from_epoch,
                "history": result.history[["recon", "kld", "total"]].to_numpy()}

    if mode == "kill":
        train.EndoVAE = KilledMidEpoch3
    resumed = train.fit(images, config, model_config=cfg, checkpoint_path=ckpt,
                        device="cpu", progress=False)
    uninterrupted = train.fit(images, config, model_config=cfg, device="cpu", progress=False)
    torch.save({"resumed": summary(resumed), "full": summary(uninterrupted)}, out)
    """
)


def run_script(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """Run KILL_SCRIPT in a fresh interpreter."""
    script = tmp_path / "kill_script.py"
    script.write_text(KILL_SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )


def test_sigkill_then_resume_gives_identical_weights(tmp_path):
    # fp32 on the CPU: bit-identical results need deterministic kernels and the same RNG draws.
    killed = run_script(tmp_path, "kill", str(tmp_path / "k.pt"), str(tmp_path / "k.out"))
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "k.out").exists()
    assert torch.load(tmp_path / "k.pt", weights_only=True)["epoch"] == 2
    resumed = run_script(tmp_path, "resume", str(tmp_path / "k.pt"), str(tmp_path / "k.out"))
    assert resumed.returncode == 0, resumed.stderr
    out = torch.load(tmp_path / "k.out", weights_only=False)
    a, b = out["full"], out["resumed"]
    assert b["resumed"] == 2
    assert np.array_equal(a["history"], b["history"])
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_reconstruct_and_decode_samples_shapes_and_determinism():
    torch.manual_seed(0)
    model = EndoVAE(TINY)
    images = smooth_images(5, 16)
    recon = infer.reconstruct(model, images, batch_size=2)
    assert recon.dtype == torch.uint8 and tuple(recon.shape) == (5, 16, 16, 3)
    floats = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    recon_f = infer.reconstruct(model, floats, batch_size=4)
    assert recon_f.dtype == torch.float32 and tuple(recon_f.shape) == (5, 3, 16, 16)
    assert torch.allclose(recon_f, model.eval().reconstruct(floats), atol=1e-6)
    assert torch.equal(recon, (recon_f * 255).round().to(torch.uint8).permute(0, 2, 3, 1))
    samples = infer.decode_samples(model, 7, seed=3, batch_size=3)
    assert tuple(samples.shape) == (7, 3, 16, 16)
    assert 0 <= samples.min() and samples.max() <= 1
    assert torch.equal(samples, infer.decode_samples(model, 7, seed=3, batch_size=3))
    assert torch.allclose(samples, infer.decode_samples(model, 7, seed=3), atol=1e-6)
    assert not torch.equal(samples, infer.decode_samples(model, 7, seed=4))


@pytest.mark.slow
def test_compiled_training_runs(tmp_path):
    config = TrainConfig(epochs=2, batch_size=8, compile=True)
    result = fit(smooth_images(16, 16), config, model_config=TINY, device="cpu", progress=False)
    assert np.isfinite(result.history["total"]).all() and len(result.history) == 2


def test_fewer_epochs_than_the_checkpoint_stop_with_a_clear_message(tmp_path):
    """Never return a longer-trained model than asked for, never shorten the history file."""
    images = np.random.default_rng(0).integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    kwargs = {"checkpoint_path": tmp_path / "m.pt", "history_path": tmp_path / "m.csv",
              "device": "cpu", "progress": False}  # fmt: skip
    fit(images, TrainConfig(epochs=2, batch_size=8, precision="fp32"), **kwargs)
    history = (tmp_path / "m.csv").read_bytes()
    with pytest.raises(ValueError, match=r"epochs=1: m\.pt already holds 2 epochs"):
        fit(images, TrainConfig(epochs=1, batch_size=8, precision="fp32"), **kwargs)
    assert (tmp_path / "m.csv").read_bytes() == history
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_infer_reconstruct_matches_the_model_and_kld_per_image_sums_to_the_loss():
    torch.manual_seed(0)
    model = EndoVAE(TINY).eval()
    x = torch.from_numpy(smooth_images(5, 16)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        mu, logvar = model.encode(x)
        expected = model.decode(mu)
    recon, per_image = infer.reconstruct_with_kld(model, x, batch_size=2)
    assert torch.allclose(recon, expected, atol=1e-6)
    assert torch.allclose(infer.reconstruct(model, x, batch_size=2), expected, atol=1e-6)
    assert per_image.shape == (5,) and (per_image >= 0).all()
    assert torch.allclose(per_image.sum(), kld(mu, logvar), rtol=1e-5)
    assert infer.model_device(model) == torch.device("cpu")


def test_inference_runs_a_channels_last_copy_and_leaves_the_callers_model_as_it_was():
    """NCHW in, NCHW out, the caller's weights untouched (still trainable, same layout), the
    values those of the NCHW model; a model fit left in channels_last is used as it is."""
    torch.manual_seed(0)
    model = EndoVAE(TINY)
    fast, layout = infer.fast_model(model, torch.device("cpu"))
    assert fast is not model and layout == torch.channels_last
    assert fast.decoder.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model.decoder.net[0].weight.is_contiguous()
    x = torch.from_numpy(smooth_images(5, 16)).permute(0, 3, 1, 2).float() / 255
    recon = infer.reconstruct(model, x, batch_size=2)
    assert recon.is_contiguous() and model.decoder.net[0].weight.is_contiguous()
    with torch.no_grad():
        assert torch.allclose(recon, model.reconstruct(x), atol=1e-6)
    assert infer.decode_samples(model, 3).is_contiguous()
    model.train()
    model(x)[0].sum().backward()  # no inference tensors were put into it
    assert model.decoder.net[0].weight.grad is not None
    model.to(memory_format=torch.channels_last)
    assert infer.fast_model(model, torch.device("cpu"))[0] is model


def test_cooldown_lr_is_constant_then_falls_linearly_to_zero():
    """lr_cooldown 0.25 of 100 steps: the paper's lr for steps 0-75, then lr * (100 - step) / 25."""
    lrs = [train.cooldown_lr(1e-3, 0.25, step, 100) for step in range(100)]
    assert lrs[:76] == [1e-3] * 76
    assert lrs[80] == pytest.approx(1e-3 * 20 / 25) and lrs[99] == pytest.approx(1e-3 / 25)
    assert all(a > b for a, b in zip(lrs[75:], lrs[76:], strict=False))
    assert {train.cooldown_lr(1e-3, 0.0, step, 100) for step in range(100)} == {1e-3}


def test_fit_follows_the_cooldown_and_checkpoints_without_it_resume_as_constant(tmp_path):
    """The optimiser's last step ran at the schedule's last lr; a cooldown is a setting, and a
    checkpoint written before the setting existed resumes as lr_cooldown 0 (constant)."""
    images = smooth_images(32, 16)
    kwargs = dict(model_config=TINY, device="cpu", progress=False)
    cooled = fit(images, TrainConfig(epochs=2, batch_size=8, lr_cooldown=0.5), **kwargs)
    plain = fit(images, TrainConfig(epochs=2, batch_size=8), **kwargs)
    assert not torch.equal(cooled.model.decoder.net[-1].weight, plain.model.decoder.net[-1].weight)
    path = tmp_path / "old.pt"
    fit(images, TrainConfig(epochs=1, batch_size=8), checkpoint_path=path, **kwargs)
    state = torch.load(path, weights_only=False)
    del state["train_config"]["lr_cooldown"]
    torch.save(state, path)
    again = fit(images, TrainConfig(epochs=2, batch_size=8), checkpoint_path=path, **kwargs)
    assert again.resumed_from_epoch == 1
    with pytest.raises(ValueError, match="lr_cooldown: 0.0 -> 0.5"):
        fit(images, TrainConfig(epochs=3, batch_size=8, lr_cooldown=0.5), checkpoint_path=path,
            **kwargs)  # fmt: skip


def test_a_batch_size_above_the_images_times_one_batch_of_them(monkeypatch):
    """Issue 19 kind 3: batch_size 100000 on 16 images trains in one batch of 16 and times the
    precision at 16 (timing 100,000 images asked for 59 GB and died in notebook 03)."""
    seen = []
    real = train.training_precision

    def spy(device, precision, batch, loss="mse"):
        seen.append(batch)
        return real(device, precision, batch, loss)

    monkeypatch.setattr(train, "training_precision", spy)
    images = smooth_images(16, 16)
    result = fit(images, TrainConfig(epochs=1, batch_size=100000), model_config=TINY,
                 device="cpu", progress=False)  # fmt: skip
    assert seen == [16] and len(result.history) == 1
