"""helpers.study.generate: deterministic, atomic, resumable generation; safetensors export; class models."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.core.fingerprint import file_digest
from helpers.core.paths import PROJECT_ROOT
from helpers.model.endovae import EndoVAE
from helpers.study import generate
from helpers.train.checkpoint import save_checkpoint

HISTORY = [
    {"epoch": 1, "recon": 900.0, "kld": 3.0, "total": 903.0, "seconds": 1.0, "images_per_s": 9.0},
    {"epoch": 2, "recon": 640.0, "kld": 8.0, "total": 648.0, "seconds": 1.0, "images_per_s": 9.0},
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An untrained (seeded) EndoVAE checkpoint with a small history."""
    path = tmp_path_factory.mktemp("ckpt") / "polyps.pt"
    torch.manual_seed(0)
    save_checkpoint(
        path, EndoVAE(), epoch=2, history=HISTORY, train_config={"loss": "mse", "batch_size": 8},
        extra={"data": {"n_images": 24, "fingerprint": "abc123"}},
    )  # fmt: skip
    return path


def _files(folder):
    """Names and bytes of every file in a folder."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _cli(*args, **kwargs):
    """Run `python -m helpers.generate ARGS` in a subprocess."""
    cmd = [sys.executable, "-m", "helpers.generate", *map(str, args)]
    return subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, **kwargs)


def test_generation_is_deterministic_for_a_seed(ckpt, tmp_path):
    a = generate.generate_images(ckpt, 6, tmp_path / "a", seed=5, batch_size=4, progress=False)
    generate.generate_images(ckpt, 6, tmp_path / "b", seed=5, batch_size=4, progress=False)
    generate.generate_images(ckpt, 6, tmp_path / "c", seed=6, batch_size=4, progress=False)
    pngs = {k: v for k, v in _files(tmp_path / "a").items() if k.endswith(".png")}
    assert pngs == {k: v for k, v in _files(tmp_path / "b").items() if k.endswith(".png")}
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (
        tmp_path / "b" / "manifest.csv"
    ).read_bytes()
    other = _files(tmp_path / "c")
    assert all(other[k] != v for k, v in pngs.items())
    model, _ = generate.load_model(ckpt)
    images, manifest = generate.load_generated(tmp_path / "a")
    assert np.array_equal(images, generate.synthesize(model, 6, seed=5, batch_size=4))
    assert manifest.equals(a)


def test_writes_exactly_n_files_and_a_complete_manifest(ckpt, tmp_path):
    out = tmp_path / "out"
    generate.generate_images(ckpt, 7, out, seed=1, batch_size=3, temperature=0.5, progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["generate.json", "manifest.csv"] + [f"polyps_{i:06d}.png" for i in range(7)]
    manifest = pd.read_csv(out / "manifest.csv", dtype={"z": str})
    assert list(manifest.columns) == list(generate.MANIFEST_COLUMNS)
    assert manifest["index"].tolist() == list(range(7))
    assert (manifest["file"] == [f"polyps_{i:06d}.png" for i in range(7)]).all()
    assert set(manifest["class"]) == {"polyps"} and set(manifest["seed"]) == {1}
    assert set(manifest["checkpoint_sha256"]) == {file_digest(ckpt)}
    assert set(manifest["temperature"]) == {0.5}
    z = np.array([[float(v) for v in s.split()] for s in manifest["z"]])
    assert np.allclose(z, generate.latents(range(7), 6, seed=1, temperature=0.5).numpy(), atol=1e-5)
    from PIL import Image

    with Image.open(out / "polyps_000003.png") as img:
        assert img.size == (96, 96) and img.mode == "RGB"


def test_resumes_after_sigkill_without_duplicates(ckpt, tmp_path):
    out, ref = tmp_path / "out", tmp_path / "ref"
    n, args = 60, ["--checkpoint", ckpt, "--n", 60, "--seed", 2, "--batch-size", 4, "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers.generate", *map(str, args), "--out", str(out)],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 9:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(pd.read_csv(out / "manifest.csv")) if (out / "manifest.csv").is_file() else 0
    assert 0 < len(list(out.glob("*.png"))) and done < n, "killed too late to test resuming"
    result = _cli(*args, "--out", out, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{n} frames" in result.stdout
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest["index"].tolist() == list(range(n)) and manifest["file"].is_unique
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert len(list(out.glob("*.png"))) == n
    generate.generate_images(ckpt, n, ref, seed=2, batch_size=4, progress=False)
    assert _files(out) == _files(ref)  # same bytes as an uninterrupted run


def test_refuses_a_foreign_folder_and_other_settings(ckpt, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        generate.main(["--checkpoint", str(ckpt), "--n", "3", "--out", str(foreign), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "out=" in err and "notes.txt" in err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    own = tmp_path / "own"
    assert generate.main(["--checkpoint", str(ckpt), "--n", "2", "--out", str(own), "--quiet"]) == 0
    with pytest.raises(SystemExit) as exc:
        generate.main(["--checkpoint", str(ckpt), "--n", "2", "--out", str(own), "--seed", "9"])
    assert exc.value.code == 2 and "seed: 0 -> 9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        generate.main(["--checkpoint", str(ckpt), "--n", "1", "--out", str(own), "--quiet"])
    assert "n=1" in capsys.readouterr().err
    generate.generate_images(ckpt, 2, own, seed=9, replace=True, progress=False)
    assert set(pd.read_csv(own / "manifest.csv")["seed"]) == {9}


@pytest.mark.parametrize(
    "extra, name",
    [
        (["--n", "0"], "n="),
        (["--n", "many"], "--n"),
        (["--n", "2", "--temperature", "nan"], "temperature="),
        (["--n", "2", "--temperature", "0"], "temperature="),
        (["--n", "2", "--batch-size", "0"], "batch_size="),
        (["--n", "2", "--seed", "-1"], "seed="),
        (["--n", "2", "--class", "a/b"], "class="),
        (["--n", "2", "--checkpoint", "missing.pt"], "checkpoint="),
    ],
)
def test_bad_parameters_give_one_line_naming_it(ckpt, tmp_path, capsys, extra, name):
    argv = ["--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), *extra]
    with pytest.raises(SystemExit) as exc:
        generate.main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and name in err, err
    assert not (tmp_path / "o").exists()


def test_safetensors_round_trip_gives_identical_outputs(ckpt, tmp_path):
    out = tmp_path / "export" / "polyps.safetensors"
    card_path = generate.export_safetensors(ckpt, out, metrics={"auc": 0.9})
    original, _ = generate.load_model(ckpt)
    loaded, meta = generate.load_model(out)
    z = generate.latents(range(5), 6, seed=3)
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(original.decode(z), loaded.decode(z))
        assert all(
            torch.equal(a, b) for a, b in zip(original.encode(x), loaded.encode(x), strict=True)
        )
    assert meta["extra"]["class"] == "polyps"
    card = json.loads(card_path.read_text())
    assert card_path.name == "polyps.card.json"
    assert card["training"]["epochs"] == 2
    assert card["training"]["data"] == {"n_images": 24, "fingerprint": "abc123"}
    assert card["training"]["final_losses_per_batch"]["recon"] == 640.0
    assert card["training"]["final_losses_per_image"]["kld"] == 1.0
    assert card["architecture"]["latent_dim"] == 6 and card["metrics"] == {"auc": 0.9}
    assert card["weights_sha256"] == file_digest(out)
    generate.generate_images(out, 3, tmp_path / "a", seed=1, progress=False)
    generate.generate_images(ckpt, 3, tmp_path / "b", seed=1, progress=False)
    pngs = [{k: v for k, v in _files(tmp_path / d).items() if k.endswith(".png")} for d in "ab"]
    assert pngs[0] == pngs[1]


def test_class_model_trains_on_its_images_only(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 96, 96, 3), dtype=np.uint8)
    path = tmp_path / "gen_polyps.pt"
    result = generate.train_class_model(
        images, "polyps", path, epochs=1, batch_size=8, precision="fp32", device="cpu",
        progress=False,
    )  # fmt: skip
    assert path.is_file() and (tmp_path / "gen_polyps_history.csv").is_file()
    assert len(result.history) == 1 and math.isfinite(result.history["total"].iloc[0])
    assert generate.trained_on(path, images)
    assert not generate.trained_on(path, images[:15])
    assert not generate.trained_on(tmp_path / "missing.pt", images)


def test_a_fine_tuned_model_whose_start_was_trained_over_is_trained_afresh(tmp_path):
    """09's polyp model (from 03's) and 10's (from the sharper one): when the model it started
    from has been trained again since, it is trained over instead of stopping on "cannot resume"
    (notebook 10 at the full budget failed so after a token run had retrained sharp.pt)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    kwargs = dict(epochs=1, batch_size=8, precision="fp32", device="cpu", progress=False)
    start = tmp_path / "healthy.pt"
    generate.train_class_model(images, "healthy", start, **kwargs)
    tuned = tmp_path / "gen_polyps.pt"
    generate.train_class_model(images, "polyps", tuned, init_from=start, **kwargs)
    assert generate.trained_on(tuned, images, init_from=start)
    generate.train_class_model(images, "healthy", start, **{**kwargs, "seed": 1})  # trained over
    assert not generate.trained_on(tuned, images, init_from=start)
    generate.train_class_model(images, "polyps", tuned, init_from=start, **kwargs)
    assert generate.trained_on(tuned, images, init_from=start)


def test_explorer_is_off_outside_a_live_kernel_and_wired_inside():
    from helpers.study import synthetic_eval as se

    torch.manual_seed(0)
    models = {"healthy": EndoVAE(), "polyps": EndoVAE()}
    assert not se.live_frontend()
    assert se.latent_explorer(models, enabled=True) is None
    png = se.explorer_png(models["healthy"], [0.0] * 6)
    assert png.startswith(b"\x89PNG")

    class Widget(SimpleNamespace):
        """Minimal stand-in for an ipywidgets control."""

        def observe(self, fn, names):
            self.callback = fn

    fake = SimpleNamespace(
        Dropdown=lambda **k: Widget(value=k["options"][0], **k),
        FloatSlider=lambda **k: Widget(**k),
        Image=lambda **k: Widget(value=b"", **k),
        VBox=lambda children: Widget(children=children),
        HBox=lambda children: Widget(children=children),
    )
    panel = se.build_explorer(fake, models)
    controls, image = panel.children
    menu, *sliders = controls.children
    assert len(sliders) == 6 and image.value == png
    sliders[2].value = 3.0
    sliders[2].callback()
    assert image.value != png


def test_default_class_comes_from_the_checkpoint_name():
    from helpers.study.generate import default_class

    assert default_class("runs/x/gen_polyps.pt") == "polyps"
    assert default_class("my_model.v2.pt") == "my-model-v2"
