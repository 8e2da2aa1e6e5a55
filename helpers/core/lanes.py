"""Which notebook reads which, and how many run side by side.

`READS` is the one map of the notebooks' inputs: a notebook is rerun when a file that one of its
upstream notebooks wrote changes, and it may start as soon as those have finished. A notebook the
map does not know reads every earlier one (and so runs after all of them).

`python -m helpers.run --jobs 2` runs notebooks that do not read each other side by side, each
kernel with its share of the CPU threads. It pays where one notebook cannot keep every core busy
(many cores for small batches, or a loaded machine); where two threads already scale it does not:
on a 2-core AVX2 machine the quick profile took 451 s with --jobs 2 and 458 s in a row (EndoVAE
training at batch 8: 12-13 img/s in each of two 1-thread kernels, 24 img/s in one 2-thread kernel).
So the runner's default is one notebook at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

PREPROCESSING = "01_preprocessing"
TRAINED = ("03_train_mse", "04_train_bce")
READS: dict[str, tuple[str, ...]] = {
    PREPROCESSING: (),
    "02_architecture": (),
    "03_train_mse": (PREPROCESSING,),
    "04_train_bce": (PREPROCESSING,),
    "05_generation_reconstruction": (PREPROCESSING, *TRAINED),
    "06_metrics": (PREPROCESSING, *TRAINED),
    "07_classifier_bonus": (PREPROCESSING, *TRAINED),
    "08_ablations": (PREPROCESSING,),
    "09_synthetic_data": (PREPROCESSING, "03_train_mse"),  # the healthy model is notebook 03's
    "10_sharper_vae": (
        PREPROCESSING,
        "03_train_mse",
        "09_synthetic_data",
    ),  # 03's model, 09's polyp one
}


def upstream(name: str, names: Sequence[str]) -> list[str]:
    """Every notebook among `names` whose outputs `name` reads, directly or through another."""
    found: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        direct = READS.get(current)
        if direct is None:  # not in the map: it may read anything written before it
            direct = tuple(n for n in names if n < current)
        for other in direct:
            if other in names and other not in found:
                found.add(other)
                todo.append(other)
    return sorted(found)


def cpu_cores() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """CPU threads of each notebook's kernel when `jobs` run side by side."""
    cores = cpu_cores() if cores is None else cores
    return max(1, cores // max(1, jobs))


def makespan(seconds: dict[str, float], jobs: int, reads: Callable[[str], list[str]]) -> float:
    """Wall time of running notebooks {name: seconds} in name order on `jobs` lanes, each starting
    when the notebooks it reads have finished."""
    finished: dict[str, float] = {}
    lanes = [0.0] * max(1, jobs)
    for name in sorted(seconds):
        ready = max((finished[n] for n in reads(name) if n in finished), default=0.0)
        lane = min(range(len(lanes)), key=lambda i: lanes[i])
        start = max(lanes[lane], ready)
        finished[name] = lanes[lane] = start + seconds[name]
    return max(finished.values(), default=0.0)
