"""Every path of the bundle, anchored at the project root, with environment overrides.

Environment variables:
    ENDOVAE_RUNS_DIR   folder holding one run folder per profile (default: <root>/runs)
    ENDOVAE_RUN_DIR    the run folder itself (default: <runs>/quick)
    ENDOVAE_DATA_DIR   where raw data lives: downloads and the embedded Kvasir-like set
                       (default: <root>/data)
    ENDOVAE_SHARED_DIR the shared folder beside the project (default: <root>/../shared)
    ENDOVAE_REPORT_DIR where the merged report is written (default: <root>/report/build)
    ENDOVAE_INVOCATION_DIR  the folder the user ran the command from; relative paths (the
                       variables above, `run_dir`, `data_dir`) resolve against it, else
                       against the current working directory. The runner sets it, because
                       its notebook kernels run with notebooks/ as their working directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROFILE = "quick"
RUN_INFO = "run.json"  # the runner's record of a run (see read_run_info)


INVOCATION_ENV = "ENDOVAE_INVOCATION_DIR"


def invocation_dir() -> Path:
    """The folder the user ran the command from: $ENDOVAE_INVOCATION_DIR, else the cwd."""
    value = os.environ.get(INVOCATION_ENV, "").strip()
    base = Path(value).expanduser() if value else Path.cwd()
    if not base.is_absolute():
        raise ValueError(f"{INVOCATION_ENV}={value!r}: expected an absolute path")
    return base


def resolve_user_path(value: str | os.PathLike) -> Path:
    """An absolute path for a path the user typed (relative = against invocation_dir())."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else invocation_dir() / path).resolve()


def _env_path(name: str, default: Path) -> Path:
    """Return the path in environment variable `name` (resolved like user input), or `default`."""
    value = os.environ.get(name, "").strip()
    return resolve_user_path(value) if value else default


def runs_root() -> Path:
    """Folder that holds one run folder per profile."""
    return _env_path("ENDOVAE_RUNS_DIR", PROJECT_ROOT / "runs")


def data_root() -> Path:
    """Folder for raw data: Kvasir downloads and the embedded Kvasir-like set."""
    return _env_path("ENDOVAE_DATA_DIR", PROJECT_ROOT / "data")


def shared_dir() -> Path:
    """The shared folder beside the project (real Kvasir sample frames live there)."""
    return _env_path("ENDOVAE_SHARED_DIR", PROJECT_ROOT.parent / "shared")


def kvasir_sample_dir() -> Path:
    """The 40 real Kvasir polyp frames used by tests and notebook 01 (may be absent)."""
    return shared_dir() / "kvasir-sample"


def notebooks_dir() -> Path:
    """The source notebooks."""
    return PROJECT_ROOT / "notebooks"


def report_build_dir() -> Path:
    """Where the merged report (PDF, HTML) is written."""
    return _env_path("ENDOVAE_REPORT_DIR", PROJECT_ROOT / "report" / "build")


@dataclass(frozen=True)
class RunPaths:
    """The files notebooks use to talk to each other, all under one run folder."""

    root: Path

    @classmethod
    def from_param(cls, run_dir: str | os.PathLike | None = "") -> RunPaths:
        """Resolve a notebook's `run_dir` parameter ("" = env override or runs/quick)."""
        if run_dir:
            return cls(resolve_user_path(run_dir))
        return cls(_env_path("ENDOVAE_RUN_DIR", runs_root() / DEFAULT_PROFILE))

    @property
    def processed(self) -> Path:
        """Preprocessed 96x96 PNGs, manifest and uint8 caches."""
        return self.root / "data" / "processed"

    @property
    def manifest(self) -> Path:
        """CSV: one row per processed image (source, class, flip, crop scale, split, sha256)."""
        return self.processed / "manifest.csv"

    @property
    def checkpoints(self) -> Path:
        """Model checkpoints (config inside) and training histories."""
        return self.root / "checkpoints"

    @property
    def figures(self) -> Path:
        """PNG figures."""
        return self.root / "figures"

    @property
    def tables(self) -> Path:
        """CSV tables and metrics."""
        return self.root / "tables"

    @property
    def executed(self) -> Path:
        """Notebooks as executed by the runner."""
        return self.root / "executed"

    @property
    def run_info(self) -> Path:
        """run.json: the runner's record of this run (read it with read_run_info)."""
        return self.root / RUN_INFO

    def checkpoint(self, name: str) -> Path:
        """Checkpoint file of model `name` (e.g. "mse", "bce")."""
        return self.checkpoints / f"{name}.pt"

    def history(self, name: str) -> Path:
        """Training-history CSV of model `name`."""
        return self.checkpoints / f"{name}_history.csv"

    def ensure(self) -> RunPaths:
        """Create the run's folders and return self."""
        for folder in (self.processed, self.checkpoints, self.figures, self.tables, self.executed):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def display_path(path: str | os.PathLike) -> str:
    """A path as a report may show it: relative to the project or home (~), never the machine's
    absolute layout; elsewhere only the file or folder name."""
    path = Path(path).expanduser()
    for root, label in ((PROJECT_ROOT, "."), (Path.home(), "~")):
        with contextlib.suppress(ValueError):
            return f"{label}/{path.resolve().relative_to(root.resolve()).as_posix()}"
    return path.name


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """The runner's run.json of a run folder ({} when the run was made another way).

    Keys: profile, command, started, device, notebooks (the ones this command ran) and
    parameters ({notebook: every value it ran with: its defaults, then the profile, then the
    command line}), overrides ({notebook: the values the profile or command line set}).
    """
    try:
        info = json.loads((Path(run_dir) / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
