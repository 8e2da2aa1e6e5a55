"""Run the numbered notebooks of one profile with papermill, then build the report.

    python -m helpers.run [--profile quick|paper|FILE.yaml] [-p NAME VALUE ...] [--data PATH]
                          [--device DEV] [--run-dir DIR] [--only 03,04] [--force] [--no-report]
                          [--jobs N] [--list]

Every `notebooks/NN_name.ipynb` runs in order (cwd `notebooks/`, kernel `python3`) into
`<run_dir>/executed/` (sources are never written), with its defaults, then the profile's values
(helpers.config.profile), then `-p`, `--data`, `--device`; all are checked first (helpers.config.params) and
recorded in `<run_dir>/run.json` (read it with `helpers.core.paths.read_run_info`).

A notebook is skipped when its stamp (`executed/.stamps/NN_name.json`: digest of the notebook,
its parameters, the helpers source, its data and every file written by the notebooks it reads,
see helpers.runner.stamps and helpers.core.lanes) is unchanged and its own outputs are intact; `--force`
reruns it anyway. `--jobs N` runs up to N notebooks that do not read each other side by side.
Timings go to `<run_dir>/timings.csv`.

Exit codes: 0 success, 1 a notebook or the report failed, 2 bad arguments or parameters.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from helpers.config.profile import (
    UsageError,
    absolute_data_dir,
    cli_parameters,
    load_profile,
    profile_name,
)
from helpers.core import paths
from helpers.core.atomic import atomic_write_text, one_line
from helpers.core.lanes import threads_per_job, upstream
from helpers.core.lock import LockBusy, file_lock
from helpers.core.progress import PROGRESS_ENV
from helpers.core.runtime import describe_device, get_device
from helpers.runner import checks, report
from helpers.runner.budget import estimate
from helpers.runner.execution import (
    ProgressBoard,
    SharedKernel,
    execute,
    live_progress,
    print_failure,
    progress_file,
    shared_kernel,
)
from helpers.runner.plan import (
    Notebook,
    load_notebooks,
    override_parameters,
    resolve_parameters,
    run_dir_problem,
    select_notebooks,
    unknown_names,
    validate,
)
from helpers.runner.stamps import (
    helpers_hash,
    inputs_digest,
    outputs_intact,
    read_stamp,
    snapshot,
    stamp_key,
    stamp_path,
    written_files,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Outcome:
    """What happened to one notebook in this run."""

    name: str
    seconds: float
    skipped: bool


@dataclass
class Plan:
    """Everything a run needs, checked before the first notebook starts."""

    notebooks: list[Notebook]
    selected: list[Notebook]
    resolved: dict[str, dict[str, Any]]  # every value each notebook runs with
    overrides: dict[str, dict[str, Any]]  # the values the profile or command line set
    run_dir: Path
    errors: list[str]


# --- execution --------------------------------------------------------------------------------


def write_timings(run_dir: Path, outcomes: list[Outcome]) -> Path:
    """timings.csv: notebook, seconds, skipped."""
    lines = ["notebook,seconds,skipped"]
    lines += [f"{o.name},{o.seconds:.1f},{str(o.skipped).lower()}" for o in outcomes]
    return atomic_write_text(run_dir / "timings.csv", "\n".join(lines) + "\n")


def save_timings(run_dir: Path, outcomes: list[Outcome]) -> bool:
    """write_timings; when it cannot be written say so in one line and return False."""
    try:
        write_timings(run_dir, outcomes)
    except OSError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return False
    return True


def write_run_info(plan: Plan, profile: str, argv: list[str]) -> Path:
    """run.json: profile, command, start time, device, and every notebook's resolved values."""
    info = {
        "profile": profile,
        "command": "python -m helpers.run " + " ".join(argv),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_label(plan.resolved),
        "notebooks": [nb.name for nb in plan.selected],
        "parameters": plan.resolved,
        "overrides": plan.overrides,
    }
    text = json.dumps(info, indent=2, default=str) + "\n"
    return atomic_write_text(paths.RunPaths(plan.run_dir).run_info, text)


def device_label(resolved: dict[str, dict[str, Any]]) -> str:
    """The device the notebooks will use, in words (from their `device` parameter)."""
    requested = next((p["device"] for p in resolved.values() if "device" in p), "auto")
    try:
        return describe_device(get_device(requested))
    except (ValueError, RuntimeError):
        return str(requested)


def run_one(
    nb: Notebook, params: dict, run_dir: Path, key: str, inputs: dict, env: dict | None = None,
    kernel: SharedKernel | None = None,
) -> float:  # fmt: skip
    """Execute one notebook, then write its stamp; return its seconds (errors propagate).

    Its recorded outputs are the files that changed while it ran: with notebooks side by side
    that includes theirs, which only makes its skip check stricter.
    """
    stamp_path(run_dir, nb.name).unlink(missing_ok=True)
    before, start = snapshot(run_dir), time.perf_counter()
    try:
        execute(nb.path, params, run_dir / "executed" / nb.path.name, env, kernel)
    except Exception as exc:  # the files it wrote tell print_failure where a rerun resumes
        with contextlib.suppress(OSError):
            exc.written = sorted(written_files(run_dir, before))
        raise
    seconds = time.perf_counter() - start
    stamp = {"notebook": nb.name, "key": key, "seconds": round(seconds, 2), "parameters": params,
             **inputs, "outputs": written_files(run_dir, before)}  # fmt: skip
    atomic_write_text(stamp_path(run_dir, nb.name), json.dumps(stamp, indent=2, default=str))
    return seconds


def is_current(nb: Notebook, run_dir: Path, key: str) -> bool | None:
    """True: unchanged since its last run; None: outputs changed since; False: (re)run it."""
    stored = read_stamp(run_dir, nb.name)
    if not (run_dir / "executed" / nb.path.name).is_file() or stored.get("key") != key:
        return False
    return True if outputs_intact(run_dir, stored.get("outputs", {})) else None


def notebook_key(plan: Plan, nb: Notebook, code_hash: str) -> tuple[str, dict]:
    """Stamp key of a notebook now, and what its stamp records of its inputs."""
    params = plan.resolved[nb.name]
    earlier = upstream(nb.name, [n.name for n in plan.notebooks])
    inputs = inputs_digest(plan.run_dir, earlier, params)
    return stamp_key(nb, params, code_hash, inputs), {"inputs": inputs, "inputs_from": earlier}


def run_notebooks(plan: Plan, force: bool) -> tuple[list[Outcome], bool]:
    """Execute (or skip) the selected notebooks in order, in one kernel whose namespace is
    cleared between them (execution.SharedKernel); stop at the first failure."""
    env = {PROGRESS_ENV: str(progress_file(plan.run_dir))}
    with shared_kernel(env) as kernel:
        return _run_in_order(plan, force, kernel)


def _run_in_order(plan: Plan, force: bool, kernel: SharedKernel) -> tuple[list[Outcome], bool]:
    """run_notebooks' loop: each notebook in `kernel`."""
    code_hash, outcomes, run_dir = helpers_hash(), [], plan.run_dir
    for i, nb in enumerate(plan.selected, start=1):
        params = plan.resolved[nb.name]
        key, inputs = notebook_key(plan, nb, code_hash)
        header = f"[{i}/{len(plan.selected)}] {nb.name} ..."
        print(header, end="", flush=True)
        current = None if force else is_current(nb, run_dir, key)
        if current:
            print(" skipped (unchanged)", flush=True)
            outcomes.append(Outcome(nb.name, 0.0, True))
            continue
        if current is None and not force:
            print(" outputs changed since its last run; rerunning ...", end="", flush=True)
        start = time.perf_counter()
        try:
            with live_progress(run_dir, header):
                seconds = run_one(nb, params, run_dir, key, inputs, kernel=kernel)
        except Exception as exc:  # papermill/kernel errors: report in a few lines and stop
            outcomes.append(Outcome(nb.name, time.perf_counter() - start, False))
            print(f" failed after {outcomes[-1].seconds:.1f} s", flush=True)
            print_failure(nb.path, exc, run_dir / "executed" / nb.path.name)
            return outcomes, False
        outcomes.append(Outcome(nb.name, seconds, False))
        print(f" {seconds:.1f} s", flush=True)
    return outcomes, True


def run_side_by_side(plan: Plan, force: bool, jobs: int) -> tuple[list[Outcome], bool]:
    """Execute (or skip) the selected notebooks, up to `jobs` at once, each as soon as the ones it
    reads (helpers.core.lanes) have finished; after a failure none starts and the running ones finish."""
    code_hash, run_dir, names = helpers_hash(), plan.run_dir, [nb.name for nb in plan.selected]
    threads = {"OMP_NUM_THREADS": str(threads_per_job(jobs))}
    pending, running, done, ok = list(plan.selected), {}, {}, True
    label = {name: f"[{i}/{len(names)}] {name} ..." for i, name in enumerate(names, start=1)}

    def next_ready() -> Notebook | None:
        """The first pending notebook whose upstream notebooks have all finished."""
        return next((nb for nb in pending if set(upstream(nb.name, names)) <= set(done)), None)

    with ThreadPoolExecutor(jobs) as pool, ProgressBoard(run_dir) as board:
        while True:
            while ok and len(running) < jobs and (nb := next_ready()) is not None:
                pending.remove(nb)
                key, inputs = notebook_key(plan, nb, code_hash)
                current = None if force else is_current(nb, run_dir, key)
                if current:
                    board.say(f"{label[nb.name]} skipped (unchanged)")
                    done[nb.name] = Outcome(nb.name, 0.0, True)
                    continue
                changed = (
                    " (outputs changed since its last run)" if current is None and not force else ""
                )
                env = threads | board.start(nb.name, nb.name)
                future = pool.submit(run_one, nb, plan.resolved[nb.name], run_dir, key, inputs, env)
                running[future] = (nb, time.perf_counter())
                board.say(f"{label[nb.name]} started{changed}")
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                nb, start = running.pop(future)
                board.finish(nb.name)
                ok = _record(future, nb, start, done, board, label[nb.name], run_dir) and ok
    return [done[n] for n in names if n in done], ok and not pending


def _record(
    future: Future, nb: Notebook, start: float, done: dict, board, label: str, run_dir: Path
) -> bool:
    """Note a finished notebook's outcome and print it; False when it failed."""
    try:
        seconds = future.result()
    except Exception as exc:  # papermill/kernel errors: report in a few lines
        done[nb.name] = Outcome(nb.name, time.perf_counter() - start, False)
        board.say(f"{label} failed after {done[nb.name].seconds:.1f} s")
        print_failure(nb.path, exc, run_dir / "executed" / nb.path.name)
        return False
    done[nb.name] = Outcome(nb.name, seconds, False)
    board.say(f"{label} done in {seconds:.1f} s")
    return True


def print_summary(outcomes: list[Outcome]) -> None:
    """Timing table at the end of a run."""
    if not outcomes:
        return
    width = max(len(o.name) for o in outcomes)
    print("\ntimings:")
    for o in outcomes:
        note = "skipped" if o.skipped else f"{o.seconds:8.1f} s"
        print(f"  {o.name:<{width}}  {note}")
    print(f"  {'total':<{width}}  {sum(o.seconds for o in outcomes):8.1f} s")


def list_notebooks(notebooks: list[Notebook], overrides: dict[str, dict[str, Any]]) -> None:
    """Print each notebook's parameters: type, default and the value this profile gives."""
    for nb in notebooks:
        print(nb.name)
        for name, spec in nb.params.items():
            line = f"  {name}: {spec.kind or '?'} = {spec.source}"
            if name in overrides[nb.name]:
                line += f"  -> {overrides[nb.name][name]!r}"
            print(f"{line}  # {spec.help}" if spec.help else line)


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.run",
        description="Run the numbered notebooks with papermill, then build the PDF report.",
    )
    parser.add_argument("--profile", default=paths.DEFAULT_PROFILE, help="quick, paper, or a YAML")
    parser.add_argument(
        "-p",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a parameter in every notebook that declares it (value parsed as YAML)",
    )
    parser.add_argument(
        "--data", help="data_dir: a Kvasir folder or .zip, 'download' (Kvasir v1) or 'synthetic'"
    )
    parser.add_argument("--device", help="device: auto, cpu, cuda, mps")
    parser.add_argument("--run-dir", help="run folder (default: runs/<profile>)")
    parser.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 03,04")
    parser.add_argument("--force", action="store_true", help="rerun notebooks even if unchanged")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="notebooks that do not read each other run side by side, up to this many (default 1)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not build the PDF/HTML")
    parser.add_argument("--list", action="store_true", help="list notebooks and parameters")
    parser.add_argument("--notebooks-dir", help=argparse.SUPPRESS)  # tests use dummy notebooks
    return parser


def choose_run_dir(args: argparse.Namespace) -> Path:
    """--run-dir, else $ENDOVAE_RUN_DIR, else runs/<profile>."""
    if args.run_dir:
        return paths.resolve_user_path(args.run_dir)
    if os.environ.get("ENDOVAE_RUN_DIR", "").strip():
        return paths.RunPaths.from_param("").root
    return paths.runs_root() / profile_name(args.profile)


def prepare(args: argparse.Namespace) -> Plan:
    """Load notebooks and profile, resolve and check every parameter."""
    folder = Path(args.notebooks_dir).resolve() if args.notebooks_dir else paths.notebooks_dir()
    notebooks = load_notebooks(folder)
    if not notebooks:
        raise UsageError(f"no numbered notebooks (NN_name.ipynb) in {folder}")
    selected = select_notebooks(notebooks, args.only)
    profile = load_profile(args.profile)
    absolute_data_dir(profile["parameters"], paths.PROJECT_ROOT)
    for extra in profile["notebooks"].values():
        absolute_data_dir(extra, paths.PROJECT_ROOT)
    cli = cli_parameters(args)
    if "run_dir" in cli or "run_dir" in profile["parameters"]:
        raise UsageError("set the run folder with --run-dir, not as a parameter")
    run_dir = choose_run_dir(args)
    overrides = override_parameters(notebooks, profile, cli)
    resolved = resolve_parameters(notebooks, overrides, run_dir)
    errors = unknown_names(notebooks, profile, cli) + validate(selected, resolved)
    if not errors:  # the values are well formed: now what the data can give them
        errors = checks.data_problems([nb.name for nb in selected], resolved, run_dir)
    return Plan(notebooks, selected, resolved, overrides, run_dir, errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code. Relative paths resolve against the current folder."""
    if paths.INVOCATION_ENV in os.environ:
        return run_command(argv)
    os.environ[paths.INVOCATION_ENV] = str(Path.cwd())  # the kernels inherit it
    try:
        return run_command(argv)
    finally:
        os.environ.pop(paths.INVOCATION_ENV, None)


def run_command(argv: Sequence[str] | None = None) -> int:
    """Parse, check and run the command line (see `main`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        plan = prepare(args)
    except UsageError as exc:
        plan = Plan([], [], {}, {}, Path(), [str(exc)])
    if args.jobs < 1:
        plan.errors.append(f"--jobs {args.jobs}: must be 1 or more")
    if args.list and plan.notebooks:
        list_notebooks(plan.notebooks, plan.overrides)
    for line in plan.errors:
        print(f"error: {line}", file=sys.stderr)
    if plan.errors:
        return EXIT_USAGE
    if args.list:
        return EXIT_OK
    trouble = run_dir_problem(plan.run_dir)
    if trouble:
        print(f"error: {trouble}", file=sys.stderr)
        return EXIT_USAGE
    memory = checks.memory_problems(chosen(plan), plan.run_dir, plan.resolved)
    for line in memory:  # a batch its device cannot hold: before anything is written
        print(f"error: {line}", file=sys.stderr)
    if memory:
        return EXIT_USAGE
    run_dir = plan.run_dir
    try:
        with file_lock(run_dir / ".run.lock", timeout=0, what=f"run folder {run_dir}"):
            return run_locked(args, plan)
    except LockBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # run.json or the report: a full disk, a read-only folder
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def chosen(plan: Plan) -> dict[str, dict[str, Any]]:
    """Every parameter of each notebook this run executes."""
    return {nb.name: plan.resolved[nb.name] for nb in plan.selected}


def unchanged(plan: Plan, force: bool) -> frozenset[str]:
    """The selected notebooks this run will skip: unchanged since their last run, and no earlier
    notebook they read runs again first (none with --force)."""
    if force:
        return frozenset()
    code_hash, names, rerun, skip = helpers_hash(), [n.name for n in plan.notebooks], set(), set()
    for nb in plan.selected:  # a notebook downstream of a rerun reruns: its key is not needed
        after_rerun = rerun.intersection(upstream(nb.name, names))
        if not after_rerun and is_current(nb, plan.run_dir, notebook_key(plan, nb, code_hash)[0]):
            skip.add(nb.name)
        else:
            rerun.add(nb.name)
    return frozenset(skip)


def expected(plan: Plan, report_too: bool, jobs: int, force: bool) -> tuple[float | None, str]:
    """(seconds or None, the expected-time line) of the notebooks that will run, each batch timed
    at the images it is drawn from; a failure to time it is a line too, not a traceback."""
    timed = checks.timing_parameters(chosen(plan), plan.run_dir, plan.resolved)
    try:
        return estimate(timed, plan.run_dir, report_too, jobs, unchanged(plan, force))
    except (RuntimeError, MemoryError, ValueError) as exc:  # e.g. the device ran out of memory
        return None, f"expected time: unknown (timing a training step failed: {one_line(exc)})"


def run_locked(args: argparse.Namespace, plan: Plan) -> int:
    """Run the notebooks and build the report while holding the run folder's lock."""
    print(f"profile {profile_name(args.profile)} -> {plan.run_dir}", flush=True)
    jobs = args.jobs
    seconds, line = expected(plan, not args.no_report, jobs, args.force)
    absurd = None if args.force or seconds is None else checks.time_problem(seconds)
    if absurd:  # more than a week: refused before run.json or any notebook
        print(f"error: {absurd}", file=sys.stderr)
        return EXIT_USAGE
    write_run_info(plan, profile_name(args.profile), args.argv)
    print(line, flush=True)
    started = time.perf_counter()
    if jobs > 1:
        print(
            f"{jobs} notebooks side by side, {threads_per_job(jobs)} CPU thread(s) each", flush=True
        )
        outcomes, ok = run_side_by_side(plan, args.force, jobs)
    else:
        outcomes, ok = run_notebooks(plan, args.force)
    ok = save_timings(plan.run_dir, outcomes) and ok
    print_summary(outcomes)
    if not ok:
        return EXIT_FAILED
    if not args.no_report and not report.build_report(plan.run_dir).ok:
        return EXIT_FAILED
    print(f"done in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
