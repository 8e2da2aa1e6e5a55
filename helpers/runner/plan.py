"""What a run will do, checked before it starts: the numbered notebooks and their declared
parameters, the values each runs with (defaults, profile, command line), one line per bad
value, and whether the run folder can be used (not inside or holding another run folder)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from helpers.config.params import Declared, notebook_parameters, problem, type_problem
from helpers.config.profile import UsageError
from helpers.core import paths
from helpers.core.runtime import get_device

NOTEBOOK_RE = re.compile(r"^(\d{2})_\w+\.ipynb$")
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev")
RUN_MARKERS = (paths.RUN_INFO, ".run.lock")  # files that make a folder a run folder
NESTED_SCAN_DEPTH = 3  # levels below a run folder searched for another run folder


@dataclass(frozen=True)
class Notebook:
    """One numbered source notebook and the parameters its `parameters` cell declares."""

    path: Path
    params: dict[str, Declared] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """File stem, e.g. "03_train_mse"."""
        return self.path.stem

    @property
    def number(self) -> str:
        """Two-digit prefix, e.g. "03"."""
        return self.name[:2]

    def defaults(self) -> dict[str, Any]:
        """The literal defaults of its parameters cell."""
        return {n: p.default for n, p in self.params.items() if p.has_default}


# --- notebooks and their parameters -----------------------------------------------------------


def find_notebooks(folder: Path) -> list[Path]:
    """The numbered notebooks `NN_name.ipynb` in `folder`, in order."""
    if not folder.is_dir():
        raise UsageError(f"notebook folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if NOTEBOOK_RE.match(p.name))


def load_notebooks(folder: Path) -> list[Notebook]:
    """Every numbered notebook in `folder` with its declared parameters."""
    try:
        return [Notebook(p, notebook_parameters(p)) for p in find_notebooks(folder)]
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


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


def override_parameters(
    notebooks: list[Notebook], profile: dict[str, dict], cli: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Values set for each notebook: profile, then its per-notebook map, then the command line."""
    overrides = {}
    for nb in notebooks:
        values = {k: v for k, v in profile["parameters"].items() if k in nb.params}
        for key, extra in profile["notebooks"].items():
            if key in (nb.name, nb.number):
                values.update(extra)
        values.update({k: v for k, v in cli.items() if k in nb.params})
        overrides[nb.name] = values
    return overrides


def resolve_parameters(
    notebooks: list[Notebook], overrides: dict[str, dict[str, Any]], run_dir: Path
) -> dict[str, dict[str, Any]]:
    """Every value each notebook runs with: its defaults, then `overrides`, then run_dir."""
    return {
        nb.name: {**nb.defaults(), **overrides[nb.name], "run_dir": str(run_dir)}
        for nb in notebooks
    }


# --- validation -------------------------------------------------------------------------------


def device_problem(device: str) -> str | None:
    """Why a well-formed device name cannot be used here (an accelerator this machine lacks)."""
    name = device.strip().lower()
    if name in ("auto", "cpu"):
        return None
    try:
        get_device(name)
    except (ValueError, RuntimeError, AssertionError) as exc:
        return f"device={device!r}: {exc} (use --device auto or cpu)"
    mps = getattr(torch.backends, "mps", None)
    if name == "mps" and (mps is None or not mps.is_available()):
        return f"device={device!r}: MPS is not available (use --device auto or cpu)"
    return None


def value_problem(nb: Notebook, name: str, value: Any) -> str | None:
    """Why a value cannot go to a notebook: its declared type, the rule of its name, the machine."""
    declared = nb.params.get(name)
    found = type_problem(name, value, declared.kind if declared else None) or problem(name, value)
    if found is None and name == "device" and isinstance(value, str):
        found = device_problem(value)
    return found


def unknown_names(notebooks: list[Notebook], profile: dict, cli: dict[str, Any]) -> list[str]:
    """Names set by the profile or command line that no (or not that) notebook declares."""
    declared = {name for nb in notebooks for name in nb.params}
    by_key = {key: nb for nb in notebooks for key in (nb.name, nb.number)}
    errors = []
    for source, names in (("profile", profile["parameters"]), ("command line", cli)):
        errors += [
            f"unknown parameter {n!r} ({source}): no notebook declares it (see --list)"
            for n in names
            if n not in declared
        ]
    for key, values in profile["notebooks"].items():
        nb = by_key.get(key)
        if nb is None:
            errors.append(f"profile notebooks.{key}: no such notebook")
            continue
        errors += [
            f"unknown parameter {n!r} (profile notebooks.{key}): {nb.name} does not declare it"
            for n in values
            if n not in nb.params
        ]
    return errors


def validate(selected: list[Notebook], resolved: dict[str, dict[str, Any]]) -> list[str]:
    """Every problem with the values the selected notebooks would run with, one line each."""
    errors, seen = [], set()
    for nb in selected:
        for name, value in resolved[nb.name].items():
            found = value_problem(nb, name, value)
            if found and found not in seen:
                seen.add(found)
                errors.append(f"parameter {found} (in {nb.name})")
    return errors


def _is_run_folder(folder: Path) -> bool:
    """True when `folder` holds a runner's run.json or run lock."""
    return any((folder / name).is_file() for name in RUN_MARKERS)


def nested_run_folder(run_dir: Path) -> Path | None:
    """A run folder above `run_dir` or up to NESTED_SCAN_DEPTH levels below it (None if none)."""
    for parent in run_dir.parents:
        if _is_run_folder(parent):
            return parent
    if not run_dir.is_dir():
        return None
    level = [run_dir]
    for _ in range(NESTED_SCAN_DEPTH):
        level = [c for f in level for c in f.iterdir() if c.is_dir() and not c.is_symlink()]
        found = next((c for c in level if _is_run_folder(c)), None)
        if found is not None:
            return found
    return None


def run_dir_problem(run_dir: Path) -> str | None:
    """Why the run folder cannot be used (None when it can): not a folder, pseudo FS, read-only,
    inside another run folder or holding one."""
    if any(run_dir == Path(p) or Path(p) in run_dir.parents for p in PSEUDO_FILE_SYSTEMS):
        return f"--run-dir {run_dir}: on a pseudo file system; choose a folder on a disk"
    if run_dir.exists() and not run_dir.is_dir():
        return f"--run-dir {run_dir}: exists and is not a folder"
    other = nested_run_folder(run_dir)
    if other is not None:
        where = "inside" if other in run_dir.parents else "holds"
        return (
            f"--run-dir {run_dir}: {where} another run folder ({other}); one run folder "
            "may not contain another (their outputs would mix); choose a separate folder"
        )
    probe = run_dir / "executed" / f".write-test-{os.getpid()}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"--run-dir {run_dir}: cannot write there ({exc.strerror or exc})"
    return None
