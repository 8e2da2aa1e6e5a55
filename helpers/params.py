"""Parameter rules: what each notebook parameter may hold, in one place.

A name means the same thing in every notebook that declares it, so its rule (type and range)
is defined once here. The notebooks' parameters cells hold the defaults (papermill reads them);
the runner checks names and types against those and calls `check` for ranges before it starts a
notebook; `TrainConfig` and each notebook's derived-values cell call the same `check`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from helpers.losses import RECON_LOSSES
from helpers.runtime import PRECISIONS


@dataclass(frozen=True)
class Rule:
    """A parameter's type and allowed values, with the words an error uses for them."""

    kind: type
    ok: Callable[[Any], bool]
    expect: str


def _number(value: Any, kind: type) -> bool:
    """True for an integer (kind int) or any finite real number (kind float); never a bool."""
    if isinstance(value, bool | np.bool_):
        return False
    if kind is int:
        return isinstance(value, int | np.integer)
    return isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value)


def at_least(kind: type, low: float) -> Rule:
    """A number >= low."""
    word = "an integer" if kind is int else "a finite number"
    return Rule(kind, lambda v: _number(v, kind) and v >= low, f"{word} >= {low:g}")


def above(low: float) -> Rule:
    """A finite number > low."""
    return Rule(float, lambda v: _number(v, float) and v > low, f"a finite number > {low:g}")


def one_of(choices: tuple[str, ...]) -> Rule:
    """One of some names."""
    return Rule(str, lambda v: isinstance(v, str) and v in choices, f"one of {', '.join(choices)}")


FLAG = Rule(bool, lambda v: isinstance(v, bool), "True or False")

RULES: dict[str, Rule] = {
    "loss": one_of(RECON_LOSSES),
    "epochs": at_least(int, 1),
    "batch_size": at_least(int, 1),
    "lr": above(0.0),
    "beta": at_least(float, 0.0),
    "seed": at_least(int, 0),
    "checkpoint_every": at_least(int, 0),
    "precision": one_of(PRECISIONS),
    "compile": FLAG,
    "resume": FLAG,
    "max_train_images": at_least(int, 0),
}


def check(name: str, value: Any) -> Any:
    """Return `value` when it fits the rule for `name`; else raise ValueError naming it."""
    rule = RULES.get(name)
    if rule is not None and not rule.ok(value):
        raise ValueError(f"{name}={value!r}: expected {rule.expect}")
    return value
