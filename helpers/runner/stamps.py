"""Run-folder stamps: content digests of the files each notebook wrote, of its inputs (earlier
notebooks' files and the data folder or zip), recorded in `executed/.stamps/NN_name.json`.
The runner skips by them; the report flags by them. The digests come from helpers.core.fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers.config.params import DATA_ALIASES, DATA_KEYWORDS
from helpers.core import paths
from helpers.core.fingerprint import bytes_digest, file_digest, json_digest
from helpers.data import kvasir
from helpers.runner.plan import Notebook

# helpers files that do not change what a notebook computes (left out of the stamp hash).
# The runner's and the report's code: a change there does not change what a notebook computes.
STAMP_EXCLUDE = ("run.py", "report.py", "generate.py", "colab.py", "config/profile.py", "core/lanes.py", "narrative/summary.py")  # fmt: skip
STAMP_EXCLUDE_DIRS = ("runner/",)  # the runner, the report, stamps, budget, export, Colab cells


def helpers_hash(root: Path | None = None) -> str:
    """Digest of the helpers package source that notebooks call (not the runner or report)."""
    root = root or Path(__file__).resolve().parents[1]
    files = {
        rel: file_digest(root / rel)
        for rel in sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))
        if rel not in STAMP_EXCLUDE and not rel.startswith(STAMP_EXCLUDE_DIRS)
    }
    return json_digest(files)


def stamp_key(nb: Notebook, params: dict[str, Any], code_hash: str, inputs: str) -> str:
    """Digest of everything a notebook's result depends on (`inputs`: digest of what it reads);
    where the run folder and the bundle lie is not part of it (see portable_parameters)."""
    parts = {"notebook": file_digest(nb.path), "code": code_hash}
    parts["parameters"] = portable_parameters(params)
    return json_digest({**parts, "inputs": inputs})


def portable_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """`params` without the places of the run folder and the bundle: run_dir is left out (what
    the folder holds is in the inputs digest) and a path inside either becomes relative to it
    (a data_dir is keyed by its content there too), so a copied or moved folder keeps its stamps."""
    run_dir = str(params.get("run_dir", ""))
    bases = {"<run_dir>": Path(run_dir)} if run_dir else {}
    bases["<bundle>"] = paths.PROJECT_ROOT
    out = {}
    for name, value in params.items():
        if name != "run_dir":
            out[name] = _relative(value, bases) if isinstance(value, str) else value
    return out


def _relative(value: str, bases: dict[str, Path]) -> str:
    """`value` as "<run_dir>/rel" or "<bundle>/rel" when it is an absolute path inside one."""
    path = Path(value)
    if not value or not path.is_absolute():
        return value
    for label, base in bases.items():
        if path == base or base in path.parents:
            rel = path.relative_to(base).as_posix()
            return label if rel == "." else f"{label}/{rel}"
    return value


def rebased(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A stamp's parameters with paths inside its old run folder moved into `run_dir` (a copied
    run folder reads its own data, not the original's)."""
    old = Path(str(params.get("run_dir", "") or run_dir))
    out = dict(params)
    for name, value in params.items():
        if name != "run_dir" and isinstance(value, str) and value and Path(value).is_absolute():
            path = Path(value)
            if path == old or old in path.parents:
                out[name] = str(run_dir / path.relative_to(old))
    return out


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file in the run folder outside executed/ and report/."""
    found = {}
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir).as_posix()
        if rel.split("/")[0] in ("executed", "report") or not path.is_file():
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:  # a temporary file of a notebook running beside this one
            continue
        found[rel] = (stat.st_size, stat.st_mtime_ns)
    return found


def written_files(run_dir: Path, before: dict[str, tuple[int, int]]) -> dict[str, str]:
    """Files a notebook wrote (new or changed since `before`) -> their sha256."""
    after = snapshot(run_dir)
    changed = (rel for rel, sig in sorted(after.items()) if before.get(rel) != sig)
    digests = {rel: file_digest(run_dir / rel) for rel in changed}
    return {rel: digest for rel, digest in digests.items() if digest != "missing"}


def outputs_intact(run_dir: Path, outputs: dict[str, str]) -> bool:
    """True when every recorded output still exists with the same content."""
    return all(file_digest(run_dir / rel) == digest for rel, digest in outputs.items())


def data_fingerprint(params: dict[str, Any]) -> str:
    """Content digest of a `data_dir` outside the run folder (a folder or a zip); "" otherwise."""
    data = str(params.get("data_dir", "")).strip()
    if data.lower() in DATA_KEYWORDS or data.lower() in DATA_ALIASES:
        return ""
    path = Path(data)
    if path.is_file():
        return file_digest(path)
    try:
        return kvasir.fingerprint_folder(kvasir.find_class_dirs(path))
    except (OSError, ValueError):
        return "unreadable"


def inputs_digest(run_dir: Path, earlier: list[str], params: dict) -> str:
    """Digest of what a notebook reads: the current content of every file the `earlier`
    notebooks wrote, and its data folder; a changed mse.pt or data folder changes it."""
    parts = [data_fingerprint(params)]
    for name in sorted(earlier):
        outputs = read_stamp(run_dir, name).get("outputs", {"none": "missing"})
        parts += [f"{name}/{rel}={file_digest(run_dir / rel)}" for rel in sorted(outputs)]
    return bytes_digest("".join(parts).encode())


def stale_inputs(run_dir: Path, name: str) -> bool:
    """True when the files notebook `name` read changed after its last successful run."""
    stamp = read_stamp(run_dir, name)
    if "inputs" not in stamp:
        return False
    params = rebased(stamp.get("parameters", {}), run_dir)
    digest = inputs_digest(run_dir, stamp.get("inputs_from", []), params)
    return digest != stamp["inputs"]


def stamp_path(run_dir: Path, name: str) -> Path:
    """Stamp file of one notebook."""
    return run_dir / "executed" / ".stamps" / f"{name}.json"


def read_stamp(run_dir: Path, name: str) -> dict:
    """The stamp of a notebook's last successful run ({} when none)."""
    try:
        return json.loads(stamp_path(run_dir, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
