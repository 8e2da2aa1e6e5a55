"""Live progress for the runner: long loops in a notebook write their status to a small file.

The runner sets ENDOVAE_PROGRESS_FILE for each notebook it executes and shows the status on its
own terminal while the notebook runs; in Jupyter (variable unset) `report_progress` does nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from helpers.core.atomic import atomic_write_bytes

PROGRESS_ENV = "ENDOVAE_PROGRESS_FILE"
MIN_INTERVAL_S = 0.5  # write at most twice a second
_last_write = [0.0]


def report_progress(**status) -> None:
    """Write `status` to $ENDOVAE_PROGRESS_FILE (throttled, replaced atomically); no-op when unset."""
    target = os.environ.get(PROGRESS_ENV)
    now = time.monotonic()
    if not target or now - _last_write[0] < MIN_INTERVAL_S:
        return
    _last_write[0] = now
    try:  # replaced atomically; a failed write leaves no temp file (no fsync: it is transient)
        atomic_write_bytes(target, json.dumps(status, default=str).encode(), fsync=False)
    except OSError:
        pass  # progress is a courtesy: never fail the work for it


def read_progress(path: Path) -> dict:
    """The last status written to `path` (an empty dict when there is none)."""
    try:
        status = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def _clock(seconds: float) -> str:
    """Seconds as m:ss."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def format_progress(status: dict) -> str:
    """One line: task, epoch, losses of the last epoch, images/s and time left."""
    parts = [str(status.get("task") or "")]
    if status.get("epochs"):
        parts.append(f"epoch {status.get('epoch')}/{status['epochs']}")
    for key in ("recon", "kld"):
        if isinstance(status.get(key), int | float):
            parts.append(f"{key} {status[key]:,.4g}")
    if isinstance(status.get("images_per_s"), int | float):
        parts.append(f"{status['images_per_s']:.1f} img/s")
    if isinstance(status.get("seconds_left"), int | float):
        parts.append(f"{_clock(status['seconds_left'])} left")
    return " · ".join(p for p in parts if p)
