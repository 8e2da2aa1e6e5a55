"""GPU check: speed of every precision path, compile, and a 20-epoch run on 6,000 frames.

One command, at most ~8 minutes on one GPU (`bash benchmarks/gpu_check.sh`); it prints one summary
table at the end (markdown), ready for the README and a closing note:

  - images/s of one training step for bf16, fp16 (+ gradient scaler) and fp32, channels_last,
    batch 128; achieved TFLOP/s (FLOPs counted by torch.utils.flop_counter); the projected wall time
    of the paper profile (2 models x 3,000 epochs x 6,000 images) at that speed;
  - `fit()` with torch.compile for 20 epochs on 6,000 embedded Kvasir-like frames (the paper
    profile's data size), in the precision `auto` picks; its first-epoch (compile) time;
  - `fit()` for 2 epochs in fp16 with the scaler and in bf16: both must end with finite losses.

`--tiny` runs the same code on a few images and steps (CPU allowed), so tests can exercise it.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from helpers.core.atomic import one_line
from helpers.core.runtime import describe_device, fixed_precision, get_device
from helpers.data import kvasir, preprocess, processed
from helpers.train.fit import (
    TrainConfig,
    fit,
    measure_images_per_s,
    training_gflop_per_image,
    training_precision,
)

PAPER_IMAGES = 2 * 3000 * 6000


def embedded_frames(folder: Path, per_class: int, workers: int) -> object:
    """Generate and preprocess the embedded set; return the healthy training images (uint8)."""
    source = kvasir.resolve_dataset("", n_per_class=per_class, seed=0, progress=False)
    preprocess.preprocess(source.class_dirs, folder, seed=0, workers=workers, progress=False,
                          healthy_test_fraction=0.0)  # fmt: skip
    return processed.load_images(folder, "normal", split="train")


def speed_rows(device, batch: int, gflop: float, tiny: bool) -> list[dict]:
    """Images/s, TFLOP/s and projected paper-profile hours per precision."""
    names = ["fp32"] + (["bf16", "fp16"] if device.type == "cuda" else [])
    rows = []
    for name in names:
        prec = fixed_precision(device, name)
        ips = measure_images_per_s(prec, device, batch, min_steps=2 if tiny else 10,
                                   min_seconds=0.0 if tiny else 3.0)  # fmt: skip
        rows.append({"check": f"step speed, {prec.label}", "images/s": ips,
                     "TFLOP/s": ips * gflop / 1e3, "paper profile": PAPER_IMAGES / ips / 60})  # fmt: skip
    return rows


def fit_row(label: str, images, config: TrainConfig, device) -> dict:
    """Train with `fit` and summarise: images/s after the first epoch, first-epoch seconds."""
    t0 = time.perf_counter()
    result = fit(images, config, device=device, resume=False, progress=False)
    hist = result.history
    finite = all(math.isfinite(v) for v in hist[["recon", "kld"]].to_numpy().ravel())
    steady = (
        hist["images_per_s"].iloc[1:].median() if len(hist) > 1 else hist["images_per_s"].iloc[0]
    )
    return {"check": f"{label} ({result.precision})", "images/s": float(steady),
            "first epoch s": float(hist["seconds"].iloc[0]), "wall s": time.perf_counter() - t0,
            "KL per image": float(hist["kld"].iloc[-1]) / config.batch_size,
            "finite": "yes" if finite else "NO"}  # fmt: skip


def print_table(rows: list[dict]) -> None:
    """One markdown table of every row."""
    columns = ["check", "images/s", "TFLOP/s", "paper profile", "first epoch s", "wall s",
               "KL per image", "finite"]  # fmt: skip
    print("| " + " | ".join(c + (" (min)" if c == "paper profile" else "") for c in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            cells.append(f"{v:,.1f}" if isinstance(v, float) else str(v))
        print("| " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    """Run every check and print the summary table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a few images and steps (tests)")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here (this check needs one; --device cpu --tiny for a dry run)",
              file=sys.stderr)  # fmt: skip
        return 2
    device = get_device(args.device)
    batch, per_class = (4, 2) if args.tiny else (128, 500)
    epochs = 2 if args.tiny else args.epochs
    print(f"device {describe_device(device)}; torch {torch.__version__}", flush=True)
    gflop = training_gflop_per_image()
    rows = speed_rows(device, batch, gflop, args.tiny)
    print(f"auto picks: {training_precision(device, 'auto', batch).describe()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="endovae-gpu-check-") as tmp:
        images = embedded_frames(Path(tmp) / "processed", per_class, workers=0)
        print(f"{len(images):,} embedded healthy images", flush=True)
        compiled = TrainConfig(epochs=epochs, batch_size=batch, checkpoint_every=0,
                               compile=device.type == "cuda")  # fmt: skip
        rows.append(fit_row(f"fit {epochs} epochs, {len(images):,} images, compile", images,
                            compiled, device))  # fmt: skip
        for name in ("fp16", "bf16") if device.type == "cuda" else ("fp32",):
            config = TrainConfig(epochs=2, batch_size=batch, checkpoint_every=0, precision=name)
            rows.append(fit_row(f"fit 2 epochs, {name}", images, config, device))
    print(f"\n{gflop:.2f} GFLOP per training image (counted)")
    print_table(rows)
    return 0 if all(r.get("finite", "yes") == "yes" for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, torch.OutOfMemoryError) as exc:  # expected: one line, exit 2
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
