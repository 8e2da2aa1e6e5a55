"""Each notebook's results: the numbers the report quotes, in `results/NN.json` of the run folder.

A notebook calls `write_results(paths.root, "06", {...})` once with plain JSON values (numbers,
strings, lists, dicts); the report reads them with `read_results`, never CSV names or output text.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from helpers.core.atomic import atomic_write_text

RESULTS_DIR = "results"


def results_path(run_dir: str | os.PathLike, notebook: str) -> Path:
    """`results/NN.json` of a notebook ("06" or "06_metrics": the number is what counts)."""
    number = str(notebook).split("_")[0]
    if not (len(number) == 2 and number.isdigit()):
        raise ValueError(f"notebook={notebook!r}: expected a two-digit number such as '06'")
    return Path(run_dir) / RESULTS_DIR / f"{number}.json"


def _plain(value: Any) -> Any:
    """A JSON-able copy: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"result value {value!r}: expected numbers, strings, lists or dicts")


def write_results(run_dir: str | os.PathLike, notebook: str, values: dict[str, Any]) -> Path:
    """Write (replace) one notebook's results atomically and return the file."""
    path = results_path(run_dir, notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(_plain(values), indent=1) + "\n")
    return path


def read_results(run_dir: str | os.PathLike, notebook: str) -> dict[str, Any]:
    """One notebook's results ({} when it has not written any)."""
    try:
        return json.loads(results_path(run_dir, notebook).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
