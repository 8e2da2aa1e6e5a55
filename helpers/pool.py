"""The one process pool of the bundle: workers that exit when their parent process dies.

A worker blocked on the pool's task queue never notices that the parent is gone (other
workers keep the pipe open), so a killed run would leave sleeping workers behind forever.
Each worker therefore (a) asks Linux to SIGKILL it when the parent dies (prctl
PR_SET_PDEATHSIG) and (b) runs a daemon thread that polls os.getppid() (every platform).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 0.5


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
