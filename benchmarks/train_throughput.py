"""Training throughput: a loop written like the original report's vs `helpers.train.fit.fit`.

In one process, trains the same EndoVAE for the same number of timed steps with
  (a) reference: a Dataset reading the processed PNGs with PIL, DataLoader(num_workers=2),
      fp32, `.to(device)` and `loss.item()` every step;
  (b) ours: `fit()` (uint8 data resident on the device, in the precision `auto` measured fastest
      here, or --precision; no per-step host sync; optional torch.compile).
It first prints the images/s of every precision candidate `auto` timed and the one it chose.
Warm-up steps are excluded from both timings: (a) skips its first --warmup steps; (b) runs one
untimed epoch first (its images/s is the second epoch's). On a shared machine the load changes
from minute to minute, so the two loops alternate for --rounds rounds and each side keeps its best
round. The last line is `speedup <b/a>`.

    python benchmarks/train_throughput.py --steps 8                 # synthetic PNGs in a tmp dir
    python benchmarks/train_throughput.py --data runs/quick/data/processed --compile
    python benchmarks/train_throughput.py --threads 1   # a CPU shared with other jobs

On a CPU that other processes also load, two OpenMP threads stall each other at every barrier;
there one thread for our trainer was ~3x faster than two (measured on the shared 2-core box).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from helpers.core.atomic import one_line
from helpers.core.runtime import describe_device, get_device, seed_everything
from helpers.model.endovae import EndoVAE
from helpers.model.losses import vae_loss
from helpers.train.fit import TrainConfig, fit, training_gflop_per_image, training_precision

PAPER_IMAGES = 2 * 3000 * 6000  # two models x 3,000 epochs x 6,000 healthy images
NOMINAL_GFLOP = 7.2  # per training image, transposed convs counted at their output size


class PngDataset(Dataset):
    """The original report's data path: open each PNG with PIL on every access."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        """Number of images."""
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        """Float 3 x H x W tensor in [0, 1]."""
        with Image.open(self.files[i]) as im:
            array = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def write_synthetic_pngs(folder: Path, n: int, size: int = 96, seed: int = 0) -> list[Path]:
    """Write n smooth random RGB PNGs (low-frequency colour fields plus noise)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        coarse = rng.uniform(0, 255, (size // 8, size // 8, 3))
        image = np.kron(coarse, np.ones((8, 8, 1))) + rng.normal(0, 12, (size, size, 3))
        path = folder / f"synthetic_{i:05d}.png"
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path)
        files.append(path)
    return files


def find_pngs(data: Path, n: int) -> list[Path]:
    """The first n healthy PNGs of a processed folder (normal/ inside it, or the folder itself)."""
    folder = data / "normal" if (data / "normal").is_dir() else data
    files = sorted(folder.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"--data {data}: no PNG files in {folder}")
    return [files[i % len(files)] for i in range(n)]


def reference_loop(files: list[Path], steps: int, warmup: int, batch_size: int, device) -> float:
    """Images/s of the original-style loop over `steps` timed steps after `warmup` steps."""
    seed_everything(0)
    model = EndoVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PngDataset(files), batch_size=batch_size, shuffle=True, num_workers=2)
    batches, losses, t0 = iter(loader), [], 0.0
    for step in range(warmup + steps):
        if step == warmup:
            t0 = time.perf_counter()
        try:
            x = next(batches)
        except StopIteration:
            batches = iter(loader)
            x = next(batches)
        x = x.to(device)
        logits, mu, logvar = model(x)
        loss, _, _ = vae_loss("mse", logits, x, mu, logvar)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return steps * batch_size / (time.perf_counter() - t0)


def load_uint8(files: list[Path]) -> np.ndarray:
    """Decode the PNGs once into a uint8 N x H x W x 3 array (what preprocess caches)."""
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


def ours(images: np.ndarray, batch_size: int, device, compile_: bool, threads: int, precision: str):
    """Images/s of `fit` over its second epoch (the first is the warm-up), and its precision."""
    config = TrainConfig(
        epochs=2, batch_size=batch_size, checkpoint_every=0, compile=compile_, precision=precision
    )
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        result = fit(images, config, device=device, progress=False)
    finally:
        torch.set_num_threads(previous)
    return float(result.history["images_per_s"].iloc[-1]), result.precision


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per loop")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of the reference")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", default="", help="processed folder; default: synthetic PNGs")
    parser.add_argument("--compile", action="store_true", help="torch.compile in our trainer")
    parser.add_argument("--precision", default="auto", help="auto (default), fp32, bf16, fp16")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="CPU threads for our trainer (0: torch's default); 1 wins on an oversubscribed CPU",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.steps, args.rounds, args.batch_size) < 1 or min(args.warmup, args.threads) < 0:
        parser.error("--steps, --rounds, --batch-size must be >= 1; --warmup, --threads >= 0")
    return args


def main(argv=None) -> float:
    """Run both loops and print images/s and the speedup (last line)."""
    args = parse_args(argv)
    device = get_device(args.device)
    n_ref = (args.steps + args.warmup) * args.batch_size
    with tempfile.TemporaryDirectory(prefix="endovae_bench_") as tmp:
        if args.data:
            files = find_pngs(Path(args.data), n_ref)
        else:
            files = write_synthetic_pngs(Path(tmp) / "normal", n_ref)
        images = load_uint8(files[: args.steps * args.batch_size])
        print(f"device {describe_device(device)}; torch {torch.__version__}; "
              f"{torch.get_num_threads()} threads; batch {args.batch_size}; "
              f"{args.steps} timed steps x {args.rounds} rounds; data {args.data or 'synthetic PNGs'}")  # fmt: skip
        choice = training_precision(device, args.precision, args.batch_size)
        print(f"precision: {choice.describe()}", flush=True)
        refs, fasts = [], []
        for r in range(1, args.rounds + 1):
            refs.append(reference_loop(files, args.steps, args.warmup, args.batch_size, device))
            fast, label = ours(
                images, args.batch_size, device, args.compile, args.threads, args.precision
            )
            fasts.append(fast)
            print(f"round {r}: (a) {refs[-1]:.1f} img/s, (b) {fast:.1f} img/s")
    ref, fast = max(refs), max(fasts)
    print(f"(a) reference (PIL Dataset, DataLoader x2 workers, fp32, .item() per step): "
          f"{ref:.1f} img/s")  # fmt: skip
    extras = (", compiled" if args.compile else "") + (
        f", {args.threads} thread{'s' if args.threads > 1 else ''}" if args.threads else ""
    )
    print(f"(b) helpers.train.fit.fit ({label}{extras}): {fast:.1f} img/s")
    if device.type == "cuda":
        counted = training_gflop_per_image()
        print(f"achieved {fast * counted / 1e3:.1f} TFLOP/s ({counted:.2f} GFLOP/image counted; "
              f"{fast * NOMINAL_GFLOP / 1e3:.1f} at the nominal {NOMINAL_GFLOP} GFLOP/image)")  # fmt: skip
        print(f"projected paper profile (2 x 3,000 epochs x 6,000 images): "
              f"{PAPER_IMAGES / fast / 3600:.2f} h (reference loop: {PAPER_IMAGES / ref / 3600:.1f} h)")  # fmt: skip
    speedup = fast / ref
    print(f"speedup {speedup:.2f}")
    return speedup


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, torch.OutOfMemoryError) as exc:  # expected: one line, exit 2
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
