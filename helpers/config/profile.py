"""Runner profiles: `helpers/profiles/<name>.yaml`, maps of parameter values.

A profile has `parameters:` (applied to every notebook that declares the name) and optional
`notebooks: {NN_name: {...}}` overrides. The notebooks' parameters cells are the defaults (the
quick profile's values), so a profile lists only what differs from them.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

from helpers.config.params import DATA_ALIASES, DATA_KEYWORDS
from helpers.core import paths

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
PROFILE_KEYS = {"parameters", "notebooks", "description"}
FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class UsageError(Exception):
    """Bad command line, profile or parameter: reported in one line, exit code 2."""


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
    path = profile_path(profile)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or set(data) - PROFILE_KEYS:
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
    try:
        return as_number(yaml.safe_load(text)) if text.strip() else ""
    except yaml.YAMLError:
        return text


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
