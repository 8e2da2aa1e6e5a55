"""Run the numbered notebooks of one profile with papermill, then build the report.

    python -m helpers.run [--profile quick|paper|FILE.yaml] [-p NAME VALUE ...] [--data PATH]
                          [--device DEV] [--run-dir DIR] [--only 03,04] [--force] [--no-report]
                          [--list]

Every `notebooks/NN_name.ipynb` runs in order, with cwd `notebooks/` and kernel `python3`, into
`<run_dir>/executed/NN_name.ipynb` (the sources are never written). Parameters come from the
profile (`helpers/profiles/<name>.yaml`: a flat `parameters:` map applied to every notebook that
declares the name, and optional `notebooks: {NN_name: {...}}` overrides), then `-p`, `--data`
and `--device`; `run_dir` is always passed. Everything is checked before the first notebook runs.

A notebook is skipped when its stamp (`executed/.stamps/NN_name.json`: hash of the notebook,
its parameters, the helpers source, its data folder or zip, and the current content of every file
the notebooks before it wrote) is unchanged since its last successful run and the files it wrote
itself are still there, unchanged; `--force` reruns it anyway. Timings go to `<run_dir>/timings.csv`.

Exit codes: 0 success, 1 a notebook or the report failed, 2 bad arguments or parameters.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from helpers import paths
from helpers.atomic import atomic_write_text
from helpers.kvasir import DATA_ALIASES, DATA_KEYWORDS
from helpers.lock import LockBusy, file_lock
from helpers.progress import PROGRESS_ENV, format_progress, read_progress
from helpers.stamps import (
    inputs_digest,
    outputs_intact,
    read_stamp,
    snapshot,
    stamp_path,
    written_files,
)

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
NOTEBOOK_RE = re.compile(r"^(\d{2})_\w+\.ipynb$")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# helpers files that do not change what a notebook computes (left out of the stamp hash).
STAMP_EXCLUDE = ("run.py", "report.py")
KERNEL = "python3"
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev")
FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
# Parameter names that count something (epochs, n_*, max_*, *_every): negative values are errors.
COUNT_NAME = re.compile(r"((^|_)(n|max|num)_|epochs$|_every$|_count$)")
# Keep the kernel's own start-up warnings (e.g. "running over TCP without encryption") quiet.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


class UsageError(Exception):
    """Bad command line, profile or parameter: reported in one line, exit code 2."""


@dataclass(frozen=True)
class Notebook:
    """One numbered source notebook and the parameters its `parameters` cell declares."""

    path: Path
    params: dict[str, dict] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """File stem, e.g. "03_train_mse"."""
        return self.path.stem

    @property
    def number(self) -> str:
        """Two-digit prefix, e.g. "03"."""
        return self.name[:2]


@dataclass
class Outcome:
    """What happened to one notebook in this run."""

    name: str
    seconds: float
    skipped: bool


# --- notebooks and their parameters -----------------------------------------------------------


def find_notebooks(folder: Path) -> list[Path]:
    """The numbered notebooks `NN_name.ipynb` in `folder`, in order."""
    if not folder.is_dir():
        raise UsageError(f"notebook folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if NOTEBOOK_RE.match(p.name))


def inspect_parameters(path: Path) -> dict[str, dict]:
    """Parameters of the notebook's `parameters` cell: name, inferred_type_name, default, help.

    papermill.inspect_notebook reads them, but it skips any line with a second "=" (a comment
    like `# 0 = all cores`); those are filled in from the cell's syntax tree.
    """
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:
        raise UsageError(f"{path}: not a readable notebook ({exc})") from exc
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    found = ast_parameters(cells[0].source, path)
    found.update(_papermill_parameters(path, nb))
    return found


def _papermill_parameters(path: Path, nb) -> dict[str, dict]:
    """papermill.inspect_notebook, quiet, with a python kernelspec when the notebook has none."""
    import papermill as pm

    with quiet_papermill():
        if nb.metadata.get("kernelspec", {}).get("name"):
            return pm.inspect_notebook(str(path))
        translator = pm.translators.papermill_translators.find_translator(KERNEL, "python")
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        return {p.name: p._asdict() for p in translator.inspect(cell)}


@contextlib.contextmanager
def quiet_papermill() -> Iterator[None]:
    """Silence papermill's "Unable to parse line" warnings (ast_parameters covers those lines)."""
    import logging

    logger = logging.getLogger("papermill.translators")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def ast_parameters(source: str, path: Path | None = None) -> dict[str, dict]:
    """`name: type = literal  # help` statements of a cell, in papermill's Parameter shape."""
    import io
    import tokenize

    try:
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, tokenize.TokenError) as exc:
        where = f"{path.name}: " if path else ""
        raise UsageError(f"{where}parameters cell is not valid python ({exc})") from exc
    comments = {
        t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT
    }
    found = {}
    for node in tree.body:
        annotation = None
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            name, annotation = node.target.id, ast.unparse(node.annotation)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            if not isinstance(node.targets[0], ast.Name):
                continue
            name = node.targets[0].id
        else:
            continue
        found[name] = {
            "name": name,
            "inferred_type_name": annotation or "None",
            "default": ast.get_source_segment(source, node.value),
            "help": comments.get(node.end_lineno, ""),
        }
    return found


def load_notebooks(folder: Path) -> list[Notebook]:
    """Every numbered notebook in `folder` with its declared parameters."""
    return [Notebook(p, inspect_parameters(p)) for p in find_notebooks(folder)]


def select_notebooks(notebooks: list[Notebook], only: str | None) -> list[Notebook]:
    """The notebooks named by `--only` ("03,04" or full names), all when `only` is empty."""
    if not only:
        return notebooks
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = []
    for token in wanted:
        match = [nb for nb in notebooks if token in (nb.number, nb.name)]
        if not match:
            names = ", ".join(nb.name for nb in notebooks) or "none"
            raise UsageError(f"--only {token}: no such notebook (have: {names})")
        chosen.extend(m for m in match if m not in chosen)
    return sorted(chosen, key=lambda nb: nb.name)


# --- profiles and parameter values ------------------------------------------------------------


def profile_path(profile: str) -> Path:
    """YAML file of a profile name (helpers/profiles/<name>.yaml) or of a path to one."""
    candidate = Path(profile).expanduser()
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise UsageError(f"--profile {profile}: file not found")
        return candidate.resolve()
    path = PROFILES_DIR / f"{profile}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise UsageError(f"--profile {profile}: unknown profile (have: {names})")
    return path


def profile_name(profile: str) -> str:
    """Short name of a profile argument ("quick", or a YAML file's stem)."""
    return Path(profile).stem


def load_profile(profile: str) -> dict[str, dict]:
    """Read a profile: {"parameters": {...}, "notebooks": {name: {...}}}."""
    import yaml

    path = profile_path(profile)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or set(data) - {"parameters", "notebooks", "description"}:
        raise UsageError(f"{path}: expected a map with keys parameters, notebooks, description")
    params, per_nb = data.get("parameters") or {}, data.get("notebooks") or {}
    if not isinstance(params, dict) or not isinstance(per_nb, dict):
        raise UsageError(f"{path}: parameters and notebooks must be maps")
    if not all(isinstance(v, dict) for v in per_nb.values()):
        raise UsageError(f"{path}: every notebooks.<name> entry must be a map")
    return {
        "parameters": {k: as_number(v) for k, v in params.items()},
        "notebooks": {str(k): {n: as_number(v) for n, v in d.items()} for k, d in per_nb.items()},
    }


def as_number(value: Any) -> Any:
    """ "1e-3" -> 0.001: YAML 1.1 reads exponents without a dot as strings; others unchanged."""
    if isinstance(value, str) and FLOAT_RE.fullmatch(value.strip()):
        return float(value)
    return value


def parse_value(text: str) -> Any:
    """A `-p` value parsed as a YAML scalar ("3" -> 3, "true" -> True, "abc" -> "abc")."""
    import yaml

    try:
        return as_number(yaml.safe_load(text)) if text.strip() else ""
    except yaml.YAMLError:
        return text


def resolve_parameters(
    notebooks: list[Notebook], profile: dict[str, dict], cli: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Parameters for each notebook: profile, then its per-notebook map, then the command line."""
    resolved = {}
    for nb in notebooks:
        values = {k: v for k, v in profile["parameters"].items() if k in nb.params}
        for key, extra in profile["notebooks"].items():
            if key in (nb.name, nb.number):
                values.update(extra)
        values.update({k: v for k, v in cli.items() if k in nb.params})
        resolved[nb.name] = values
    return resolved


def effective_parameters(nb: Notebook, values: dict[str, Any]) -> dict[str, Any]:
    """Every parameter the notebook will run with: its defaults, overridden by `values`."""
    defaults = {}
    for name, spec in nb.params.items():
        with contextlib.suppress(ValueError, SyntaxError):
            defaults[name] = ast.literal_eval(str(spec.get("default", "")))
    return {**defaults, **values}


# --- validation -------------------------------------------------------------------------------


def _declared_type(spec: dict) -> str | None:
    """The declared type of a parameter ("int", "float", ...) or one inferred from its default."""
    name = (spec.get("inferred_type_name") or "None").split("[")[0].strip()
    if name not in ("None", ""):
        return name
    try:
        value = ast.literal_eval(str(spec.get("default", "")))
    except (ValueError, SyntaxError):
        return None
    return type(value).__name__ if value is not None else None


def type_error(name: str, value: Any, declared: str | None) -> str | None:
    """Why `value` does not fit the declared type, or None when it does (or is unknown)."""
    checks = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "tuple": lambda v: isinstance(v, list | tuple),
        "dict": lambda v: isinstance(v, dict),
    }
    check = checks.get(declared or "")
    if check is None or check(value):
        return None
    return f"parameter {name}={value!r}: expected {declared}, got {type(value).__name__}"


def value_error(name: str, value: Any) -> str | None:
    """Why a well-typed value is still wrong (negative counts, unknown loss/device, no data)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (name in ("batch_size", "latent_dim") or name.endswith("_size")) and value < 1:
        return f"parameter {name}={value!r}: must be >= 1"
    if number and name in ("epochs", "abl_epochs") and value < 1:
        return f"parameter {name}={value!r}: must be >= 1 (a training notebook needs an epoch)"
    counts = name in ("epochs", "seed") or bool(COUNT_NAME.search(name))
    if number and counts and value < 0:
        return f"parameter {name}={value!r}: must be >= 0"
    if number and (name == "lr" or name.endswith("_lr")) and value <= 0:
        return f"parameter {name}={value!r}: must be > 0"
    if number and name.endswith(("fraction", "_share")) and not 0 <= value <= 1:
        return f"parameter {name}={value!r}: must be between 0 and 1"
    if name == "loss" or name.endswith("_loss") or name == "losses":
        return _loss_error(name, value)
    if name == "device" and isinstance(value, str):
        return device_error(value)
    if name == "data_dir" and isinstance(value, str) and value.strip().lower() not in DATA_KEYWORDS:
        if not Path(value).expanduser().exists():
            return f"parameter data_dir={value!r}: no such file or folder"
    return None


def _loss_error(name: str, value: Any) -> str | None:
    """Unknown reconstruction loss name(s)."""
    from helpers.losses import RECON_LOSSES

    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if not isinstance(v, str) or v.lower() not in RECON_LOSSES]
    if bad:
        return f"parameter {name}={value!r}: unknown loss (expected {', '.join(RECON_LOSSES)})"
    return None


def device_error(device: str) -> str | None:
    """Unknown device name, or an accelerator this machine does not have."""
    from helpers.runtime import DEVICE_CHOICES

    name = device.strip().lower()
    if not re.fullmatch(r"(auto|cpu|mps|cuda(:\d+)?)", name):
        return f"parameter device={device!r}: unknown device (expected {', '.join(DEVICE_CHOICES)})"
    if name in ("auto", "cpu"):
        return None
    from helpers.runtime import get_device

    try:
        get_device(name)
    except (ValueError, RuntimeError, AssertionError) as exc:
        return f"parameter device={device!r}: {exc} (use --device auto or cpu)"
    if name == "mps":
        import torch

        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return f"parameter device={device!r}: MPS is not available (use --device auto or cpu)"
    return None


def validate(
    all_notebooks: list[Notebook],
    selected: list[Notebook],
    profile: dict[str, dict],
    cli: dict[str, Any],
    resolved: dict[str, dict[str, Any]],
) -> list[str]:
    """Every problem with the parameters, one line each (empty: all good)."""
    declared = {name for nb in all_notebooks for name in nb.params}
    by_name = {nb.name: nb for nb in all_notebooks}
    by_number = {nb.number: nb for nb in all_notebooks}
    errors = []
    for source, names in (("profile", profile["parameters"]), ("command line", cli)):
        errors += [
            f"unknown parameter {n!r} ({source}): no notebook declares it (see --list)"
            for n in names
            if n not in declared
        ]
    for key, values in profile["notebooks"].items():
        nb = by_name.get(key) or by_number.get(key)
        if nb is None:
            errors.append(f"profile notebooks.{key}: no such notebook")
            continue
        errors += [
            f"unknown parameter {n!r} (profile notebooks.{key}): {nb.name} does not declare it"
            for n in values
            if n not in nb.params
        ]
    seen = set()
    for nb in selected:
        for name, value in resolved[nb.name].items():
            problem = type_error(name, value, _declared_type(nb.params.get(name, {})))
            problem = problem or value_error(name, value)
            if problem and problem not in seen:
                seen.add(problem)
                errors.append(f"{problem} (in {nb.name})")
    return errors


# --- stamps -----------------------------------------------------------------------------------


def helpers_hash(root: Path | None = None) -> str:
    """Hash of the helpers package source that notebooks call (not the runner or report)."""
    digest = hashlib.sha256()
    root = root or Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        if path.name in STAMP_EXCLUDE and path.parent == root:
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stamp_key(nb: Notebook, params: dict[str, Any], code_hash: str, inputs: str) -> str:
    """Hash of everything a notebook's result depends on (`inputs`: digest of what it reads)."""
    digest = hashlib.sha256()
    digest.update(nb.path.read_bytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(code_hash.encode())
    digest.update(inputs.encode())
    return digest.hexdigest()


# --- execution --------------------------------------------------------------------------------


def describe_failure(nb: Notebook, exc: BaseException) -> str:
    """A few lines naming the notebook, the failing cell and the error."""
    out = nb.path.name
    ename = getattr(exc, "ename", None)
    if ename is None:
        return f"FAILED {out}: {type(exc).__name__}: {exc}".rstrip()
    source = getattr(exc, "source", "") or ""
    first = next((ln.strip() for ln in source.splitlines() if ln.strip()), "(empty cell)")
    index = _source_cell_index(nb.path, source)
    where = f"cell {index}" if index is not None else f"executed cell {exc.cell_index}"
    evalue = (getattr(exc, "evalue", "") or "").strip().splitlines()
    lines = [
        f"FAILED {out}, {where} (0-based; execution count {exc.exec_count}):",
        f"    {first}",
        f"  {ename}: {evalue[0] if evalue else ''}".rstrip(),
    ]
    return "\n".join(lines)


def _source_cell_index(path: Path, source: str) -> int | None:
    """Index of the source notebook cell with this exact source, if there is one."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return next((i for i, c in enumerate(nb.cells) if c.source == source), None)


@contextlib.contextmanager
def live_progress(run_dir: Path, header: str) -> Iterator[None]:
    """While the block runs, show the notebook's live status (training: epoch, losses, speed).

    On a terminal the status line is redrawn in place every second; in a log (no terminal) a
    status line is printed every 30 s.
    """
    path = run_dir / "executed" / ".progress.json"
    path.unlink(missing_ok=True)
    os.environ[PROGRESS_ENV] = str(path)
    stop, tty, printed = threading.Event(), sys.stdout.isatty(), []

    def show() -> None:
        """Poll the status file until the notebook ends."""
        last_print = time.monotonic()
        while not stop.wait(1.0):
            line = format_progress(read_progress(path))
            if line and tty:
                print(f"\r{header} {line}"[:160].ljust(160), end="", flush=True)
            elif line and time.monotonic() - last_print >= 30:
                print(f"\n    {line}", end="", flush=True)
                last_print = time.monotonic()
                printed.append(line)

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        os.environ.pop(PROGRESS_ENV, None)
        path.unlink(missing_ok=True)
        if tty:
            print(f"\r{header}".ljust(160) + f"\r{header}", end="", flush=True)
        elif printed:  # the outcome goes on a line of its own after the status lines
            print(f"\n{header}", end="", flush=True)


def execute(nb: Notebook, params: dict[str, Any], run_dir: Path) -> Path:
    """Run one notebook with papermill into <run_dir>/executed (atomic rename when done)."""
    import papermill as pm

    out = run_dir / "executed" / nb.path.name
    partial = out.with_name(f".{nb.name}.partial.ipynb")
    try:
        with quiet_papermill():
            pm.execute_notebook(
                str(nb.path),
                str(partial),
                parameters=params,
                cwd=str(nb.path.parent),
                kernel_name=KERNEL,
                progress_bar=False,
                extra_arguments=KERNEL_ARGS,
            )
    finally:
        if partial.exists():
            with open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, out)
    return out


def write_timings(run_dir: Path, outcomes: list[Outcome]) -> Path:
    """timings.csv: notebook, seconds, skipped."""
    lines = ["notebook,seconds,skipped"]
    lines += [f"{o.name},{o.seconds:.1f},{str(o.skipped).lower()}" for o in outcomes]
    return atomic_write_text(run_dir / "timings.csv", "\n".join(lines) + "\n")


def write_run_info(run_dir: Path, profile: str, args: argparse.Namespace, resolved: dict) -> Path:
    """run.json: profile, command, device, start time and every notebook's parameters."""
    info = {
        "profile": profile,
        "command": "python -m helpers.run " + " ".join(args.argv),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": _device_label(resolved),
        "parameters": resolved,
    }
    return atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2, default=str) + "\n")


def _device_label(resolved: dict[str, dict[str, Any]]) -> str:
    """The device the notebooks will use, in words (from their `device` parameter)."""
    from helpers.runtime import describe_device, get_device

    requested = next((p["device"] for p in resolved.values() if "device" in p), "auto")
    try:
        return describe_device(get_device(requested))
    except (ValueError, RuntimeError):
        return str(requested)


def run_notebooks(
    notebooks: list[Notebook],
    selected: list[Notebook],
    resolved: dict[str, dict[str, Any]],
    run_dir: Path,
    force: bool,
) -> tuple[list[Outcome], bool]:
    """Execute (or skip) the selected notebooks in order; stop at the first failure."""
    code_hash, outcomes = helpers_hash(), []
    for i, nb in enumerate(selected, start=1):
        params = resolved[nb.name]
        earlier = [n.name for n in notebooks if n.name < nb.name]
        inputs = inputs_digest(run_dir, earlier, params)
        key = stamp_key(nb, params, code_hash, inputs)
        header = f"[{i}/{len(selected)}] {nb.name} ..."
        print(header, end="", flush=True)
        done = (run_dir / "executed" / nb.path.name).is_file()
        stored = read_stamp(run_dir, nb.name)
        if not force and done and stored.get("key") == key:
            if outputs_intact(run_dir, stored.get("outputs", {})):
                print(" skipped (unchanged)", flush=True)
                outcomes.append(Outcome(nb.name, 0.0, True))
                continue
            print(" outputs changed since its last run; rerunning ...", end="", flush=True)
        stamp_path(run_dir, nb.name).unlink(missing_ok=True)
        before = snapshot(run_dir)
        start = time.perf_counter()
        try:
            with live_progress(run_dir, header):
                execute(nb, params, run_dir)
        except Exception as exc:  # papermill/kernel errors: report in a few lines and stop
            outcomes.append(Outcome(nb.name, time.perf_counter() - start, False))
            print(f" failed after {outcomes[-1].seconds:.1f} s", flush=True)
            print(describe_failure(nb, exc), file=sys.stderr)
            print(f"  executed notebook: {run_dir / 'executed' / nb.path.name}", file=sys.stderr)
            return outcomes, False
        seconds = time.perf_counter() - start
        outcomes.append(Outcome(nb.name, seconds, False))
        stamp = {
            "notebook": nb.name,
            "key": key,
            "seconds": round(seconds, 2),
            "parameters": params,
            "inputs": inputs,
            "inputs_from": earlier,
            "outputs": written_files(run_dir, before),
        }
        atomic_write_text(stamp_path(run_dir, nb.name), json.dumps(stamp, indent=2, default=str))
        print(f" {seconds:.1f} s", flush=True)
    return outcomes, True


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


def list_notebooks(notebooks: list[Notebook], resolved: dict[str, dict[str, Any]]) -> None:
    """Print each notebook's parameters: type, default and the value this profile gives."""
    for nb in notebooks:
        print(nb.name)
        for name, spec in nb.params.items():
            kind = _declared_type(spec) or "?"
            line = f"  {name}: {kind} = {spec.get('default')}"
            if name in resolved[nb.name]:
                line += f"  -> {resolved[nb.name][name]!r}"
            help_text = (spec.get("help") or "").strip()
            print(f"{line}  # {help_text}" if help_text else line)


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
    parser.add_argument("--no-report", action="store_true", help="do not build the PDF/HTML")
    parser.add_argument("--list", action="store_true", help="list notebooks and parameters")
    parser.add_argument("--notebooks-dir", help=argparse.SUPPRESS)  # tests use dummy notebooks
    return parser


def cli_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters given on the command line (-p, --data, --device); paths made absolute."""
    values = {name: parse_value(text) for name, text in args.p}
    if args.data is not None:
        values["data_dir"] = args.data
    if args.device is not None:
        values["device"] = args.device
    return absolute_data_dir(values, paths.invocation_dir())


def absolute_data_dir(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make a `data_dir` path absolute (relative to `base`); keywords stay as they are."""
    data = values.get("data_dir")
    if isinstance(data, str) and data.strip().lower() in DATA_ALIASES:
        values["data_dir"] = DATA_ALIASES[data.strip().lower()]
    elif isinstance(data, str) and data.strip().lower() not in DATA_KEYWORDS:
        path = Path(data.strip()).expanduser()
        values["data_dir"] = str(path if path.is_absolute() else (base / path).resolve())
    return values


def default_run_dir(profile: str) -> Path:
    """runs/<profile> under helpers.paths.runs_root()."""
    return paths.runs_root() / profile_name(profile)


def prepare(args: argparse.Namespace) -> tuple[list[Notebook], list[Notebook], dict, Path, list]:
    """Load notebooks and profile, resolve every parameter; return them and the problems found."""
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
    if args.run_dir:
        run_dir = paths.resolve_user_path(args.run_dir)
    elif os.environ.get("ENDOVAE_RUN_DIR", "").strip():
        run_dir = paths.RunPaths.from_param("").root
    else:
        run_dir = default_run_dir(args.profile)
    if "run_dir" in cli or "run_dir" in profile["parameters"]:
        raise UsageError("set the run folder with --run-dir, not as a parameter")
    resolved = resolve_parameters(notebooks, profile, cli)
    for name in resolved:
        resolved[name]["run_dir"] = str(run_dir)
    errors = validate(notebooks, selected, profile, cli, resolved)
    return notebooks, selected, resolved, run_dir, errors


def run_dir_problem(run_dir: Path) -> str | None:
    """Why the run folder cannot be used (None when it can): not a folder, pseudo FS, read-only."""
    if any(run_dir == Path(p) or Path(p) in run_dir.parents for p in PSEUDO_FILE_SYSTEMS):
        return f"--run-dir {run_dir}: on a pseudo file system; choose a folder on a disk"
    if run_dir.exists() and not run_dir.is_dir():
        return f"--run-dir {run_dir}: exists and is not a folder"
    probe = run_dir / "executed" / f".write-test-{os.getpid()}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"--run-dir {run_dir}: cannot write there ({exc.strerror or exc})"
    return None


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
        notebooks, selected, resolved, run_dir, errors = prepare(args)
    except UsageError as exc:
        errors, notebooks = [str(exc)], []
    if args.list and notebooks:
        list_notebooks(notebooks, resolved)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    if args.list:
        return EXIT_OK
    problem = run_dir_problem(run_dir)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with file_lock(run_dir / ".run.lock", timeout=0, what=f"run folder {run_dir}"):
            return run_locked(args, notebooks, selected, resolved, run_dir)
    except LockBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def expected_time(selected: list[Notebook], resolved: dict, run_dir: Path, report: bool) -> str:
    """One line: the run's expected time, from the training speed measured on this machine."""
    from helpers.budget import estimate_seconds
    from helpers.runtime import get_device
    from helpers.train import measure_images_per_s, training_precision

    chosen = {nb.name: effective_parameters(nb, resolved[nb.name]) for nb in selected}
    trainer = next((p for p in chosen.values() if "precision" in p and "epochs" in p), None)
    if trainer is None:
        seconds, _ = estimate_seconds(chosen, 1.0, paths.RunPaths(run_dir).processed, report)
        return f"expected time: about {seconds / 60:.1f} min (no EndoVAE training)"
    device = get_device(str(trainer.get("device", "auto")))
    batch = int(trainer.get("batch_size", 128))
    choice = training_precision(device, str(trainer.get("precision", "auto")), batch)
    speed = choice.speeds.get(choice.label) or measure_images_per_s(choice.precision, device, batch)
    seconds, images = estimate_seconds(chosen, speed, paths.RunPaths(run_dir).processed, report)
    return (
        f"expected time: about {seconds / 60:.1f} min ({images:,} EndoVAE training images at "
        f"{speed:,.1f} img/s, {choice.describe()}; plus the rest of each notebook)"
    )


def run_locked(args, notebooks, selected, resolved, run_dir: Path) -> int:
    """Run the notebooks and build the report while holding the run folder's lock."""
    print(f"profile {profile_name(args.profile)} -> {run_dir}", flush=True)
    write_run_info(run_dir, profile_name(args.profile), args, resolved)
    print(expected_time(selected, resolved, run_dir, not args.no_report), flush=True)
    started = time.perf_counter()
    outcomes, ok = run_notebooks(notebooks, selected, resolved, run_dir, args.force)
    write_timings(run_dir, outcomes)
    print_summary(outcomes)
    if not ok:
        return EXIT_FAILED
    if not args.no_report:
        from helpers import report

        result = report.build_report(run_dir)
        if not result.ok:
            return EXIT_FAILED
    print(f"done in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
