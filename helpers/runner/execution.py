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
from jupyter_client.blocking import BlockingKernelClient
from jupyter_core.utils import run_sync
from nbclient.exceptions import DeadKernelError
from papermill.exceptions import PapermillExecutionError
from papermill.execute import raise_for_execution_errors
from papermill.iorw import papermill_io

from helpers.core.atomic import (
    WriteError,
    atomic_write_text,
    is_write_failure,
    one_line,
    write_error,
)
from helpers.core.progress import PROGRESS_ENV, format_progress, read_progress
from helpers.train.checkpoint import read_checkpoint

KERNEL = "python3"
# Keep the kernel's own start-up warnings (e.g. "running over TCP without encryption") quiet.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


@contextlib.contextmanager
def quiet_papermill() -> Iterator[None]:
    """Silence papermill's "Unable to parse line" warnings (helpers.config.params parses the cell)."""
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

        async def _async_interrupt_kernel(self) -> None:
            """Interrupt, except while shutting down: jupyter_client sends SIGINT before its
            shutdown request, and a SIGINT landing while the finished kernel still handles a
            message logs "KeyboardInterrupt caught in kernel." after a successful run. The
            shutdown request alone stops an idle kernel (and an unresponsive one is killed)."""
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return EnvKernelManager


# Run in the shared kernel between two notebooks: the next one starts from an empty namespace in
# the notebooks' folder, with the figures and (CUDA) memory of the last one released and its cells
# counted from 1 again; only the modules stay imported. Names are cleared by IPython's %reset,
# before and after (this code runs without entering the history or the count).
RESET_CODE = """\
get_ipython().run_line_magic("reset", "-f")
import gc, os, sys
os.chdir({cwd!r})
if "matplotlib.pyplot" in sys.modules:
    sys.modules["matplotlib.pyplot"].close("all")
gc.collect()
if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
    sys.modules["torch"].cuda.empty_cache()
get_ipython().run_line_magic("reset", "-f")
get_ipython().execution_count = 1
"""
RESET_TIMEOUT = 120  # seconds for the reset between two notebooks (a gc of a large namespace)


class SharedKernel:
    """One kernel for notebooks run one after another (the runner without --jobs): it starts with
    the first notebook and each later one finds it with an empty namespace (RESET_CODE), so a run
    pays a kernel start and the imports of torch and friends once instead of per notebook (~7 s
    a notebook on a 2-core CPU). A notebook still sees only what it defines and imports itself.
    """

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.km: AsyncKernelManager | None = None  # started for a notebook, so one ran in it

    def manager(self, cwd: Path) -> AsyncKernelManager:
        """The kernel manager for the next notebook, working in `cwd`: the kernel, reset after the
        notebook that ran in it, or a new one (at the start, or when it died)."""
        if self.km is not None and not run_sync(self.km.is_alive)():
            self.close()
        if self.km is None:
            self.km = kernel_manager(self.env)(kernel_name=KERNEL)
            run_sync(self.km.start_kernel)(extra_arguments=KERNEL_ARGS, cwd=str(cwd))
        else:
            self._reset(cwd)
        return self.km

    def _reset(self, cwd: Path) -> None:
        """Clear the kernel's namespace (RESET_CODE); an error there names the kernel."""
        client = BlockingKernelClient()
        client.load_connection_info(self.km.get_connection_info())
        client.start_channels()
        try:
            client.wait_for_ready(timeout=RESET_TIMEOUT)
            code = RESET_CODE.format(cwd=str(cwd))
            reply = client.execute_interactive(
                code, timeout=RESET_TIMEOUT, store_history=False, output_hook=lambda msg: None
            )
        finally:
            client.stop_channels()
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the shared kernel could not be reset: {reply['content']}")

    def close(self) -> None:
        """Shut the kernel down (a dead one is cleaned up)."""
        km, self.km = self.km, None
        if km is not None:
            with contextlib.suppress(Exception):  # already gone: nothing left to stop
                run_sync(km.shutdown_kernel)(now=False)


@contextlib.contextmanager
def shared_kernel(env: dict[str, str]) -> Iterator[SharedKernel]:
    """A SharedKernel, shut down when the block ends (a failure or Ctrl-C included)."""
    kernel = SharedKernel(env)
    try:
        yield kernel
    finally:
        kernel.close()


class _AtomicNotebookIO:
    """papermill I/O handler for one output path: every save of the executed notebook is an
    atomic write (complete or absent); the text of a save that failed is kept."""

    def __init__(self) -> None:
        self.unsaved: str | None = None

    def write(self, buf: str, path: str) -> None:
        """Write the notebook text atomically (a WriteError names `path`)."""
        try:
            atomic_write_text(path, buf)
        except WriteError:
            self.unsaved = buf
            raise
        self.unsaved = None

    def read(self, path: str) -> str:
        """Read the notebook text (papermill reads outputs only when asked to)."""
        return Path(path).read_text(encoding="utf-8")

    def listdir(self, path: str) -> list[str]:
        """The folder's entries."""
        return [os.path.join(path, name) for name in os.listdir(path)]

    def pretty_path(self, path: str) -> str:
        """The path as papermill logs it."""
        return path


_HANDLERS_LOCK = threading.Lock()


@contextlib.contextmanager
def _atomic_output(path: Path) -> Iterator[_AtomicNotebookIO]:
    """While the block runs, papermill writes `path` through an _AtomicNotebookIO (papermill
    picks the first handler whose prefix starts the path: `path` itself, so nothing else
    changes). The handler list is replaced, never changed in place: notebooks running side by
    side may be looking through it."""
    handler = _AtomicNotebookIO()
    entry = (str(path), handler)
    with _HANDLERS_LOCK:
        papermill_io._handlers = [entry, *papermill_io._handlers]  # as papermill_io.register
    try:
        yield handler
    finally:
        with _HANDLERS_LOCK:
            papermill_io._handlers = [h for h in papermill_io._handlers if h is not entry]


def execute(
    source: Path,
    params: dict[str, Any],
    out: Path,
    env: dict[str, str] | None = None,
    kernel: SharedKernel | None = None,
) -> Path:
    """Run notebook `source` with papermill into `out` (atomic rename when done, even failed);
    `env` is added to the kernel's environment, or the notebook runs in `kernel`'s.

    Every save papermill makes goes to a partial file beside `out`, written atomically; `out`
    is replaced only by a complete notebook. When the last save fails (a full disk), `out`
    keeps its older contents and a WriteError naming `out` is raised: the kernel's own error,
    if the unsaved notebook holds one, is raised instead with that WriteError as `not_saved`.
    """
    out = Path(os.path.abspath(out))
    partial = out.with_name(f".{source.stem}.partial.ipynb")
    extra: dict[str, Any] = {"kernel_manager_class": kernel_manager(env or {})}
    if kernel is not None:
        extra["km"] = kernel.manager(source.parent)
    try:
        with quiet_papermill(), _atomic_output(partial) as handler:
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
    except WriteError as exc:
        partial.unlink(missing_ok=True)
        raise _not_saved(out, exc, handler.unsaved) from exc
    except BaseException:
        _publish(partial, out)  # a failed run's executed notebook, for its error output
        raise
    _publish(partial, out)
    return out


def _publish(partial: Path, out: Path) -> None:
    """Rename the complete partial notebook over `out` (it was synced when written)."""
    if not partial.exists():
        return
    try:
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise write_error(out, exc) from exc


def _not_saved(out: Path, exc: WriteError, unsaved: str | None) -> BaseException:
    """The error to raise when the executed notebook could not be saved: the kernel's own error
    when the unsaved notebook shows one (with `not_saved` set), else a WriteError naming `out`."""
    error = WriteError(exc.errno, exc.strerror, str(out))
    try:
        nb = nbformat.reads(unsaved, as_version=4) if unsaved else None
    except Exception:  # unreadable text: the write error says it all
        nb = None
    if nb is not None:
        try:
            raise_for_execution_errors(nb, None)  # finds the failed cell; writes nothing
        except PapermillExecutionError as kernel_error:
            kernel_error.not_saved = error
            return kernel_error
    return error


def print_failure(source: Path, exc: BaseException, executed: Path) -> None:
    """The few lines a failed notebook gets on stderr: what failed, and where its output is
    (a file that could not be written: one line naming it)."""
    print(describe_failure(source, exc), file=sys.stderr)
    if isinstance(exc, OSError) and is_write_failure(exc):
        return
    if isinstance(exc, DeadKernelError):
        print(
            f"  {resume_note(executed.parent.parent, getattr(exc, 'written', []))}", file=sys.stderr
        )
    not_saved = getattr(exc, "not_saved", None)
    if not_saved is not None:
        kept = "; the older one is left as it was" if executed.is_file() else ""
        print(f"  executed notebook not saved ({not_saved}){kept}", file=sys.stderr)
    else:
        print(f"  executed notebook: {executed}", file=sys.stderr)


def resume_note(run_dir: Path, written: list[str]) -> str:
    """What a rerun of a notebook whose kernel died starts from: its newest checkpoint among the
    files it wrote (`written`, relative to `run_dir`), with that checkpoint's epoch."""
    saved = [rel for rel in written if rel.endswith(".pt") and (run_dir / rel).is_file()]
    why = "the kernel died (out of memory, or killed)"
    if not saved:
        return f"{why} before it saved a checkpoint: a rerun starts this notebook's work again"
    rel = max(saved, key=lambda r: (run_dir / r).stat().st_mtime_ns)
    try:
        state = read_checkpoint(run_dir / rel)
    except (OSError, ValueError) as exc:
        return f"{why}; its last checkpoint {rel} is unreadable ({one_line(exc)})"
    epochs = state.get("train_config", {}).get("epochs")
    of = f" of {epochs}" if isinstance(epochs, int) else ""
    return (
        f"{why}; a rerun resumes from the last checkpoint, {rel} "
        f"(epoch {int(state.get('epoch', 0))}{of})"
    )


def describe_failure(source: Path, exc: BaseException) -> str:
    """A few lines naming the notebook, the failing cell and the error."""
    ename = getattr(exc, "ename", None)
    if isinstance(exc, OSError) and is_write_failure(exc):
        return f"FAILED {source.name}: {one_line(exc)}"
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


def progress_file(run_dir: Path) -> Path:
    """Where a notebook run one at a time writes its live status (helpers.core.progress)."""
    return run_dir / "executed" / ".progress.json"


@contextlib.contextmanager
def live_progress(run_dir: Path, header: str) -> Iterator[dict[str, str]]:
    """While the block runs, show the notebook's live status (training: epoch, losses, speed);
    yields the environment entry that tells its kernel where to write that status.

    On a terminal the status line is redrawn in place every second; in a log (no terminal) a
    status line is printed every 30 s.
    """
    path = progress_file(run_dir)
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
