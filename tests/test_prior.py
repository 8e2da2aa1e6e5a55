"""helpers.train.prior: a Gaussian fitted to the training latents, and generation through it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.core.fingerprint import file_digest
from helpers.model.endovae import EndoVAE, EndoVAEConfig
from helpers.study import generate
from helpers.study import synthetic_eval as se
from helpers.train import prior as lp
from helpers.train.checkpoint import save_checkpoint

CONFIG = EndoVAEConfig(latent_dim=3)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A seeded, untrained 3-latent EndoVAE checkpoint."""
    path = tmp_path_factory.mktemp("prior") / "healthy.pt"
    torch.manual_seed(0)
    save_checkpoint(path, EndoVAE(CONFIG), epoch=1, history=[], train_config={"loss": "mse"})
    return path


def _images(n: int, seed: int = 0) -> np.ndarray:
    """n random uint8 96 x 96 RGB frames."""
    return np.random.default_rng(seed).integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)


def test_fit_has_the_aggregate_posteriors_moments(ckpt):
    model = generate.load_model(ckpt)[0]
    images = _images(20)
    fitted = lp.fit_latent_prior(model, images, batch_size=7)  # batches must not matter
    with torch.no_grad():
        mu, logvar = model.encode(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    mu, var = mu.double().numpy(), logvar.double().exp().numpy()
    cov = np.cov(mu.T) + np.diag(var.mean(0))  # by hand: covariance of the mu + mean sigma^2
    np.testing.assert_allclose(fitted.mean, mu.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.covariance(), cov, rtol=1e-4, atol=1e-5)
    assert fitted.images == 20 and fitted.images_digest == lp.images_digest(images)


def test_transform_draws_from_the_fitted_gaussian():
    chol = ((2.0, 0.0), (1.5, 0.5))
    prior = lp.LatentPrior((1.0, -3.0), chol)
    z = prior.transform(torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0)))
    np.testing.assert_allclose(z.mean(0).numpy(), [1.0, -3.0], atol=0.02)
    np.testing.assert_allclose(np.cov(z.numpy().T), prior.covariance(), rtol=0.02, atol=0.02)


def test_save_load_round_trip_and_bad_files_name_the_file(tmp_path):
    prior = lp.LatentPrior((0.5,), ((2.0,),), "ab" * 32, 4, "cd" * 32)
    assert lp.load(prior.save(tmp_path / "p.json")) == prior
    (tmp_path / "bad.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(ValueError, match="bad.json: not a latent prior file"):
        lp.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="lower-triangular"):
        lp.LatentPrior((0.0, 0.0), ((1.0, 1.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="2 x 2"):
        lp.LatentPrior((0.0, 0.0), ((1.0,),))


def test_generation_through_a_prior_records_it_and_refuses_a_mix(ckpt, tmp_path):
    model = generate.load_model(ckpt)[0]
    fitted = lp.fit_latent_prior(model, _images(12), file_digest(ckpt))
    path = fitted.save(tmp_path / "healthy.prior.json")
    out = tmp_path / "frames"
    manifest = generate.generate_images(ckpt, 5, out, seed=3, batch_size=2, progress=False,
                                        prior=path)  # fmt: skip
    z = np.array([[float(v) for v in s.split()] for s in manifest["z"]])
    expected = fitted.transform(generate.latents(range(5), 3, 3)).numpy()
    np.testing.assert_allclose(z, expected, atol=1e-5)  # the manifest holds the z decoded
    stamp = json.loads((out / generate.STAMP_NAME).read_text())
    assert stamp["prior"] == f"fitted {fitted.digest()}"
    pixels = generate.synthesize(model, 5, seed=3, prior=fitted)
    np.testing.assert_array_equal(pixels, generate.load_generated(out)[0])
    with pytest.raises(generate.UsageError, match="prior"):  # same folder, N(0, I) now
        generate.generate_images(ckpt, 5, out, seed=3, batch_size=2, progress=False)


def test_a_prior_of_another_checkpoint_is_refused(ckpt, tmp_path):
    other = lp.LatentPrior((0.0, 0.0, 0.0), tuple(tuple(r) for r in np.eye(3)), "0" * 64)
    path = other.save(tmp_path / "other.json")
    with pytest.raises(generate.UsageError, match="other.json.*another checkpoint"):
        generate.generate_images(ckpt, 2, tmp_path / "f", progress=False, prior=path)
    wrong_dim = lp.LatentPrior((0.0,), ((1.0,),)).save(tmp_path / "dim.json")
    with pytest.raises(generate.UsageError, match="1 latent values, the model has 3"):
        generate.generate_images(ckpt, 2, tmp_path / "g", progress=False, prior=wrong_dim)


def test_a_folder_stamped_before_priors_existed_still_resumes(ckpt, tmp_path):
    out = tmp_path / "old"
    generate.generate_images(ckpt, 4, out, batch_size=2, progress=False)
    stamp = json.loads((out / generate.STAMP_NAME).read_text())
    del stamp["prior"]  # what a stamp of an earlier version holds
    (out / generate.STAMP_NAME).write_text(json.dumps(stamp))
    (out / generate.frame_name("healthy", 3)).unlink()  # a crash before the last frame
    manifest = generate.generate_images(ckpt, 4, out, batch_size=2, progress=False)
    assert len(manifest) == 4 and (out / generate.frame_name("healthy", 3)).is_file()


def test_fitted_prior_file_is_reused_only_for_its_checkpoint_and_images(ckpt, tmp_path):
    local = tmp_path / ckpt.name
    local.write_bytes(ckpt.read_bytes())
    path = se.fitted_prior(local, _images(6), "cpu")
    assert path == local.with_suffix(".prior.json")
    before = path.stat().st_mtime_ns
    assert se.fitted_prior(local, _images(6), "cpu") == path
    assert path.stat().st_mtime_ns == before  # same checkpoint and frames: not refitted
    se.fitted_prior(local, _images(6, seed=1), "cpu")
    assert lp.load(path).images_digest == lp.images_digest(_images(6, seed=1))


def test_cli_prior_option_and_a_bad_file(ckpt, tmp_path, capsys):
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(SystemExit) as stop:
        generate.main(["--checkpoint", str(ckpt), "--n", "2", "--out", str(tmp_path / "o"),
                       "--prior", str(tmp_path / "junk.json"), "--quiet"])  # fmt: skip
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "junk.json" in err


def test_a_safetensors_export_takes_the_prior_along(ckpt, tmp_path):
    local = tmp_path / ckpt.name
    local.write_bytes(ckpt.read_bytes())
    se.fitted_prior(local, _images(6), "cpu")
    generate.export_safetensors(local, tmp_path / "export.safetensors")
    prior = tmp_path / "export.prior.json"
    assert lp.load(prior).checkpoint_sha256 == file_digest(tmp_path / "export.safetensors")
    a = generate.generate_images(local, 3, tmp_path / "a", progress=False,
                                 prior=local.with_suffix(".prior.json"))  # fmt: skip
    b = generate.generate_images(tmp_path / "export.safetensors", 3, tmp_path / "b",
                                 progress=False, prior=prior)  # fmt: skip
    assert a["z"].tolist() == b["z"].tolist()
    pngs = sorted((tmp_path / "a").glob("*.png"))
    assert [p.read_bytes() for p in pngs] == [(tmp_path / "b" / p.name).read_bytes() for p in pngs]
