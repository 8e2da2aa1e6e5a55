"""A Kvasir-v1-shaped folder (500 frames in each of the classes the bundle reads) for timing runs.

    python benchmarks/kvasir_shaped.py --source ../shared/kvasir-sample --out /tmp/kvasir-shaped

Each frame is a jittered copy of a real frame from `--source` (random crop of 80-100 % of the
side, flips, brightness and contrast within 10 %), saved as JPEG at the source's resolution, so
the preprocessing, the training set size and the notebooks' work are those of Kvasir v1.
Healthy classes the source lacks (normal-pylorus, normal-z-line) are filled from its healthy
frames. Copies of a few frames are easier to reconstruct than 2,000 distinct ones: use the result
for time, not for quality.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

CLASSES = ("normal-cecum", "normal-pylorus", "normal-z-line", "polyps")


def jitter(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One random crop, flip and brightness/contrast change of `image`, at its own size."""
    w, h = image.size
    s = rng.uniform(0.8, 1.0)
    cw, ch = int(w * s), int(h * s)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.9, 1.1))
    return ImageEnhance.Contrast(out).enhance(rng.uniform(0.9, 1.1))


def sources(root: Path) -> dict[str, list[Path]]:
    """The source frames of each class: polyps from polyps/, healthy from any normal-* folder."""
    healthy = sorted(root.glob("normal-*/*.jpg"))
    polyps = sorted(root.glob("polyps/*.jpg"))
    if not healthy or not polyps:
        raise SystemExit(f"error: --source {root}: needs polyps/*.jpg and normal-*/*.jpg")
    return {c: polyps if c == "polyps" else healthy for c in CLASSES}


def main(argv: list[str] | None = None) -> None:
    """Write `--per-class` jittered frames into each class folder of `--out`."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"error: --out {args.out}: already exists (pick a new folder)")
    rng = np.random.default_rng(args.seed)
    for cls, files in sources(args.source).items():
        folder = args.out / cls
        folder.mkdir(parents=True)
        for i in range(args.per_class):
            with Image.open(files[i % len(files)]) as im:
                jitter(im.convert("RGB"), rng).save(folder / f"{cls}-{i:04d}.jpg", quality=90)
    print(f"{args.out}: {len(CLASSES)} classes x {args.per_class} frames")


if __name__ == "__main__":
    sys.exit(main())
