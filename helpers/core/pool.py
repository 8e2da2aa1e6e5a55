"""The one process pool of the bundle: workers that exit when their parent process dies.

A worker blocked on the pool's task queue never notices that the parent is gone (other
workers keep the pipe open), so a killed run would leave sleeping workers behind forever.
Each worker therefore (a) asks Linux to SIGKILL it when the parent dies (prctl
PR_SET_PDEATHSIG) and (b) runs a daemon thread that polls os.getppid() (every platform).

`run_tasks` is the one way the bundle spreads work over it (preprocessing, the embedded frames):
results in input order, one progress bar, and the rest done here if the pool breaks.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm.auto import tqdm

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 0.5
_TODO = object()  # a result not computed yet


def pool_context() -> multiprocessing.context.BaseContext:
    """fork on Linux (works from scripts, -c and notebooks without a main guard), else spawn."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _set_parent_death_signal() -> None:
    """Linux only: have the kernel SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the polling thread below still covers it


def _poll_parent(parent_pid: int) -> None:
    """Exit this process as soon as its parent is no longer `parent_pid`."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(PARENT_POLL_S)


def watch_parent(parent_pid: int) -> None:
    """Worker initializer: exit when the process `parent_pid` dies (signal + polling thread)."""
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_poll_parent, args=(parent_pid,), daemon=True).start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor of `workers` processes that die with this process."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=pool_context(),
        initializer=watch_parent,
        initargs=(os.getpid(),),
    )


def _run_chunk(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """Worker entry point: fn over a slice of items, in order."""
    return [fn(item) for item in items]


def _chunks(n: int, workers: int, max_chunk: int) -> list[range]:
    """Index ranges of consecutive slices: about 8 per worker, at most `max_chunk` items each."""
    size = max(1, min(max_chunk, math.ceil(n / (workers * 8))))
    return [range(start, min(n, start + size)) for start in range(0, n, size)]


def _run_pooled(fn, items, workers: int, max_chunk: int, bar, out: list) -> None:
    """Fill `out` from a pool; a broken pool (e.g. a worker killed) leaves the rest _TODO."""
    pieces = _chunks(len(items), workers, max_chunk)
    try:
        with process_pool(workers) as pool:
            futures = {pool.submit(_run_chunk, fn, [items[i] for i in r]): r for r in pieces}
            for future in as_completed(futures):
                for i, result in zip(futures[future], future.result(), strict=True):
                    out[i] = result
                bar.update(len(futures[future]))
    except BrokenProcessPool as err:
        warnings.warn(f"worker pool failed ({err}); doing the rest in this process", stacklevel=4)


def run_tasks(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    workers: int,
    *,
    desc: str,
    unit: str = "frame",
    progress: bool = True,
    max_chunk: int = 32,
    min_per_worker: int = 4,
) -> list[Any]:
    """fn(item) for every item, in item order, over `workers` processes when worthwhile.

    Runs here when workers <= 1 or there are fewer than `min_per_worker` items per worker.
    `fn` must be a module-level function (it is sent to the workers).
    """
    out: list[Any] = [_TODO] * len(items)
    with tqdm(total=len(items), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1 and len(items) >= min_per_worker * workers:
            _run_pooled(fn, items, workers, max_chunk, bar, out)
        for i, item in enumerate(items):
            if out[i] is _TODO:
                out[i] = fn(item)
                bar.update(1)
    return out
