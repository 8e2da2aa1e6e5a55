"""Preprocessing throughput: preprocess() over the full-size embedded Kvasir-like set, cold.

Generates (or reuses) n_per_class full-size Kvasir-like frames per class under the data root
(500 per class = 2,000 frames, the size of the Kvasir v1 classes we use), then times
`helpers.data.preprocess.preprocess` into a fresh temporary folder (no earlier outputs to reuse)
with all cores, and optionally with one worker for the parallel speedup. Target: <= 30 s for
2,000 frames on 2 cores.

    python benchmarks/preprocess_throughput.py                    # 2,000 frames, all cores
    python benchmarks/preprocess_throughput.py --n-per-class 100 --compare-single
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from helpers.core.atomic import one_line
from helpers.core.classes import ALL_CLASSES
from helpers.data.kvasir import list_images
from helpers.data.preprocess import preprocess
from helpers.data.synthetic import ensure_synthetic

TARGET_S = 30.0


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-class", type=int, default=500, help="frames per class (500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Kvasir-like set")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: all cores)")
    parser.add_argument(
        "--compare-single", action="store_true", help="also time one worker and print the speedup"
    )
    return parser.parse_args()


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (user + system)."""
    try:
        import resource
    except ImportError:  # not POSIX: this process only
        return time.process_time()
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_once(class_dirs: dict, workers: int | None) -> tuple[float, float, int]:
    """Wall and CPU seconds of one cold preprocess() run, and the number of images written."""
    with tempfile.TemporaryDirectory(prefix="preprocess-bench-") as tmp:
        cpu, start = cpu_seconds(), time.perf_counter()
        report = preprocess(class_dirs, tmp, workers=workers, progress=False)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return seconds, cpu, sum(report.counts["images"].values())


def main() -> None:
    """Generate or reuse the frames, time preprocessing, print the figures."""
    args = parse_args()
    root = ensure_synthetic(args.n_per_class, args.seed, progress=True)
    class_dirs = {name: root / name for name in ALL_CLASSES}
    n_frames = sum(len(list_images(folder)) for folder in class_dirs.values())
    workers = args.workers or os.cpu_count() or 1
    seconds, cpu, n_images = time_once(class_dirs, workers)
    print(f"frames: {n_frames} full-size JPEGs from {root}")
    print(
        f"workers={workers}: {seconds:.1f} s wall, {cpu:.1f} s CPU, {n_frames / seconds:.0f} frames/s, "
        f"{n_images / seconds:.0f} images/s ({n_images} written)"
    )
    if args.compare_single and workers > 1:
        single, single_cpu, _ = time_once(class_dirs, 1)
        print(
            f"workers=1: {single:.1f} s wall, {single_cpu:.1f} s CPU, {n_frames / single:.0f} frames/s"
        )
        print(f"parallel speedup {single / seconds:.2f}x")
    scale = 2000 / max(n_frames, 1)
    verdict = "meets" if seconds * scale <= TARGET_S else "misses"
    print(
        f"time for 2,000 frames: {seconds * scale:.1f} s wall ({verdict} the <= {TARGET_S:.0f} s "
        f"target); CPU-bound estimate on {workers} idle cores: {cpu * scale / workers:.1f} s"
    )


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, MemoryError) as exc:  # expected: one line, exit 2
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
