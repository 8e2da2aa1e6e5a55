"""Running one notebook with papermill for the runner: quiet, atomic, with live progress and a
few-line description of a failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from jupyter_client import AsyncKernelManager

from helpers.progress import PROGRESS_ENV, format_progress, read_progress

KERNEL = "python3"
# Keep the kernel's own start-up warnings (e.g. "running over TCP without encryption") quiet.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


@contextlib.contextmanager
def quiet_papermill() -> Iterator[None]:
    """Silence papermill's "Unable to parse line" warnings (helpers.params parses the cell)."""
    logger = logging.getLogger("papermill.translators")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def kernel_manager(env: dict[str, str]) -> type[AsyncKernelManager]:
    """A kernel manager class whose kernels start with `env` on top of this process's environment
    (each notebook its own progress file and thread count, however many run at once)."""

    class EnvKernelManager(AsyncKernelManager):
        """Adds `env` to the kernel's environment."""

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            """Launch as usual, with `env` added (jupyter_client's documented override point)."""
            kw["env"] = {**kw.get("env", os.environ), **env}
            await super()._async_launch_kernel(kernel_cmd, **kw)

    return EnvKernelManager


def execute(
    source: Path, params: dict[str, Any], out: Path, env: dict[str, str] | None = None
) -> Path:
    """Run notebook `source` with papermill into `out` (atomic rename when done, even failed);
    `env` is added to the kernel's environment."""
    partial = out.with_name(f".{source.stem}.partial.ipynb")
    extra = {"kernel_manager_class": kernel_manager(env)} if env else {}
    try:
        with quiet_papermill():
            pm.execute_notebook(
                str(source),
                str(partial),
                parameters=params,
                cwd=str(source.parent),
                kernel_name=KERNEL,
                progress_bar=False,
                extra_arguments=KERNEL_ARGS,
                **extra,
            )
    finally:
        if partial.exists():
            with open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, out)
    return out


def print_failure(source: Path, exc: BaseException, executed: Path) -> None:
    """The few lines a failed notebook gets on stderr: what failed, and where its output is."""
    print(describe_failure(source, exc), file=sys.stderr)
    print(f"  executed notebook: {executed}", file=sys.stderr)


def describe_failure(source: Path, exc: BaseException) -> str:
    """A few lines naming the notebook, the failing cell and the error."""
    ename = getattr(exc, "ename", None)
    if ename is None:
        return f"FAILED {source.name}: {type(exc).__name__}: {exc}".rstrip()
    cell_source = getattr(exc, "source", "") or ""
    first = next((ln.strip() for ln in cell_source.splitlines() if ln.strip()), "(empty cell)")
    index = _source_cell_index(source, cell_source)
    where = f"cell {index}" if index is not None else f"executed cell {exc.cell_index}"
    evalue = (getattr(exc, "evalue", "") or "").strip().splitlines()
    lines = [
        f"FAILED {source.name}, {where} (0-based; execution count {exc.exec_count}):",
        f"    {first}",
        f"  {ename}: {evalue[0] if evalue else ''}".rstrip(),
    ]
    return "\n".join(lines)


def _source_cell_index(path: Path, source: str) -> int | None:
    """Index of the source notebook cell with this exact source, if there is one."""
    nb = nbformat.read(path, as_version=4)
    return next((i for i, c in enumerate(nb.cells) if c.source == source), None)


def _show_progress(path: Path, header: str, stop: threading.Event, printed: list[str]) -> None:
    """Poll the status file until `stop` is set: redraw on a terminal, a line per 30 s in a log."""
    tty, last_print = sys.stdout.isatty(), time.monotonic()
    while not stop.wait(1.0):
        line = format_progress(read_progress(path))
        if line and tty:
            print(f"\r{header} {line}"[:160].ljust(160), end="", flush=True)
        elif line and time.monotonic() - last_print >= 30:
            print(f"\n    {line}", end="", flush=True)
            last_print = time.monotonic()
            printed.append(line)


@contextlib.contextmanager
def live_progress(run_dir: Path, header: str) -> Iterator[dict[str, str]]:
    """While the block runs, show the notebook's live status (training: epoch, losses, speed);
    yields the environment entry that tells its kernel where to write that status.

    On a terminal the status line is redrawn in place every second; in a log (no terminal) a
    status line is printed every 30 s.
    """
    path = run_dir / "executed" / ".progress.json"
    path.unlink(missing_ok=True)
    stop, printed = threading.Event(), []
    thread = threading.Thread(
        target=_show_progress, args=(path, header, stop, printed), daemon=True
    )
    thread.start()
    try:
        yield {PROGRESS_ENV: str(path)}
    finally:
        stop.set()
        thread.join()
        path.unlink(missing_ok=True)
        if sys.stdout.isatty():
            print(f"\r{header}".ljust(160) + f"\r{header}", end="", flush=True)
        elif printed:  # the outcome goes on a line of its own after the status lines
            print(f"\n{header}", end="", flush=True)


class ProgressBoard:
    """Live status of notebooks running side by side: on a terminal one line, redrawn every
    second, with each notebook's status; in a log a line per notebook every 30 s."""

    def __init__(self, run_dir: Path):
        self.folder, self.running = run_dir / "executed", {}
        self.tty, self.lock, self.stop = sys.stdout.isatty(), threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ProgressBoard:
        """Start polling."""
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop polling and clear the status line."""
        self.stop.set()
        self.thread.join()
        self.say("")

    def path(self, name: str) -> Path:
        """Progress file of one notebook (its kernel gets it as ENDOVAE_PROGRESS_FILE)."""
        return self.folder / f".progress-{name}.json"

    def start(self, name: str, label: str) -> dict[str, str]:
        """Show notebook `name` as `label`; returns the environment entry for its kernel."""
        self.path(name).unlink(missing_ok=True)
        with self.lock:
            self.running[name] = [label, time.monotonic()]
        return {PROGRESS_ENV: str(self.path(name))}

    def finish(self, name: str) -> None:
        """Stop showing notebook `name`."""
        with self.lock:
            self.running.pop(name, None)
        self.path(name).unlink(missing_ok=True)

    def say(self, text: str) -> None:
        """Print a line of its own (above the status line on a terminal)."""
        with self.lock:
            if self.tty:
                print("\r" + " " * 160 + "\r", end="")
            if text:
                print(text, flush=True)

    def _poll(self) -> None:
        """Redraw (terminal) or print (log) the running notebooks' status until stopped."""
        while not self.stop.wait(1.0):
            with self.lock:
                status = {n: format_progress(read_progress(self.path(n))) for n in self.running}
                if self.tty:
                    line = " | ".join(f"{n[:2]}: {s}" for n, s in status.items() if s)
                    print(f"\r{line}"[:160].ljust(160), end="", flush=True)
                    continue
                for name, (label, last) in self.running.items():
                    if status[name] and time.monotonic() - last >= 30:
                        print(f"    {label}: {status[name]}", flush=True)
                        self.running[name][1] = time.monotonic()
