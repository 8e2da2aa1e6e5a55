"""Parameter rules: what each notebook parameter may hold, in one place.

A name means the same thing in every notebook that declares it, so its rule (type and range)
is defined once here, and SCHEMAS says which names each notebook declares. The notebooks'
parameters cells hold the defaults (the quick profile's values); `declared_parameters` is the
one parser of those cells. The runner checks names and types against them and calls `check`
for ranges before it starts a notebook; `TrainConfig` and each notebook's derived-values cell
call the same `check`.
"""

from __future__ import annotations

import ast
import io
import json
import math
import os
import re
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.core import paths
from helpers.core.runtime import DEVICE_CHOICES, PRECISIONS
from helpers.model.endovae import INIT_SCHEMES, NORMS, PRIORS
from helpers.model.losses import RECON_LOSSES

# data_dir values that name a data source instead of a path; "synthetic" / "embedded" are the
# runner's words for "" (the embedded Kvasir-like set).
DATA_KEYWORDS = ("", "download", "download:v1", "download:v2")
DATA_ALIASES = {"synthetic": "", "embedded": ""}
# fid_weights values that are not a path: look in torch hub's cache ("" = "auto") or never
FID_KEYWORDS = ("", "auto", "none")
# notebook 10's training budget: "full" is notebook 03's images and epochs (the comparison its
# goals need), "token" a one-epoch preview (helpers.study.sharper.TOKEN_EPOCHS)
SHARP_BUDGETS = ("full", "token")


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


def between(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Rule:
    """A finite number in [low, high]; open_low / open_high leave out that end."""

    def ok(v: Any) -> bool:
        """Inside the interval."""
        above_low = v > low if open_low else v >= low
        return _number(v, float) and above_low and (v < high if open_high else v <= high)

    ends = ("(" if open_low else "[", ")" if open_high else "]")
    return Rule(float, ok, f"a number in {ends[0]}{low:g}, {high:g}{ends[1]}")


def one_of(choices: tuple[str, ...]) -> Rule:
    """One of some names."""
    return Rule(str, lambda v: isinstance(v, str) and v in choices, f"one of {', '.join(choices)}")


def text(ok: Callable[[str], bool], expect: str) -> Rule:
    """A string that `ok` accepts."""
    return Rule(str, lambda v: isinstance(v, str) and ok(v), expect)


def _csv_of(kind: type, low: float) -> Callable[[str], bool]:
    """True for what `parse_list` accepts with items of `kind`, each >= low."""

    def ok(value: str) -> bool:
        """Parse with the notebooks' own parser."""
        try:
            return all(v >= low for v in parse_list(value, "value", kind))
        except ValueError:
            return False

    return ok


def _data_source(value: str) -> bool:
    """A data keyword ("", "download[:v1|:v2]", "synthetic") or an existing folder or file."""
    word = value.strip().lower()
    return word in DATA_KEYWORDS or word in DATA_ALIASES or paths.resolve_user_path(value).exists()


def _fid_weights(value: str) -> bool:
    """'' or 'auto' (torch hub's cache, if a file is there), 'none', or an existing file."""
    word = value.strip().lower()
    return word in FID_KEYWORDS or paths.resolve_user_path(value.strip()).is_file()


FLAG = Rule(bool, lambda v: isinstance(v, bool), "True or False")
ANY_TEXT = text(lambda v: True, "a string")
COUNT = at_least(int, 1)  # something to do at least once: epochs, images, resamples
DEVICE = text(
    lambda v: re.fullmatch(r"(auto|cpu|mps|cuda(:\d+)?)", v.strip().lower()) is not None,
    f"one of {', '.join(DEVICE_CHOICES)} (or cuda:N)",
)
SHARE = between(0.0, 1.0)

RULES: dict[str, Rule] = {
    # every notebook
    "run_dir": ANY_TEXT,
    "seed": at_least(int, 0),
    "device": DEVICE,
    "precision": one_of(PRECISIONS),
    "compile": FLAG,
    # 01 preprocessing
    "data_dir": text(
        _data_source, "'', 'download', 'download:v2', 'synthetic' or an existing path"
    ),
    "n_per_class": COUNT,
    "kvasir_sha256": text(
        lambda v: re.fullmatch(r"|[0-9a-fA-F]{64}", v.strip()) is not None,
        "'' or 64 hexadecimal characters",
    ),  # fmt: skip
    "kvasir_url": text(
        lambda v: v == "" or v.strip().startswith(("http://", "https://")), "'' or an http(s) URL"
    ),  # fmt: skip
    "real_sample_dir": ANY_TEXT,
    "healthy_test_fraction": between(0.0, 1.0, open_high=True),
    "polyp_flips": FLAG,
    "crop_min": between(0.0, 1.0, open_low=True),
    "crop_max": between(0.0, 1.0, open_low=True),
    "workers": at_least(int, 0),
    # 03, 04 training (TrainConfig's fields too)
    "loss": one_of(RECON_LOSSES),
    "epochs": COUNT,
    "batch_size": COUNT,
    "lr": above(0.0),
    "lr_cooldown": between(0.0, 1.0),
    "beta": at_least(float, 0.0),
    "ssim_weight": at_least(float, 0.0),
    "checkpoint_every": at_least(int, 0),
    "resume": FLAG,
    "max_train_images": at_least(int, 0),
    "init": one_of(INIT_SCHEMES),
    # 05 generation and reconstruction
    "n_show": COUNT,
    "sample_seed": at_least(int, 0),
    # 05, 08, 09 sample quality (helpers.evaluate.quality)
    "fid_weights": text(_fid_weights, "'', 'auto' (torch hub cache), 'none' or an existing file"),
    # 06 metrics
    "n_eval_polyps": COUNT,
    "n_eval_train": at_least(int, 0),
    "allow_fewer": FLAG,
    "n_boot": at_least(int, 100),  # fewer resamples give unstable 95 % intervals
    # 07 classifier (and 09's classifiers)
    "n_pairs": at_least(int, 2),  # a train and a test pair at least
    "n_clf_train": COUNT,
    "n_clf_test": COUNT,
    "clf_epochs": COUNT,
    "clf_lr": above(0.0),
    "clf_batch_size": at_least(int, 2),  # batch norm needs two images per batch
    "weights": ANY_TEXT,
    "clf_input_size": at_least(int, 0),
    # 08 ablations
    "abl_epochs": COUNT,
    "abl_batch_size": COUNT,
    "abl_lr": above(0.0),
    "abl_max_train_images": at_least(int, 0),
    "abl_checkpoint_every": at_least(int, 0),
    "latent_dims": text(_csv_of(int, 1), "distinct comma-separated integers >= 1"),
    "betas": text(_csv_of(float, 0.0), "distinct comma-separated numbers >= 0"),
    "polyp_train_share": between(0.0, 1.0, open_low=True, open_high=True),
    "abl_n_samples": at_least(int, 8),  # 8 of them are shown
    # 09 synthetic data
    "per_healthy_class": FLAG,
    "polyp_init": one_of(("healthy", "scratch")),
    "gen_epochs": COUNT,
    "gen_batch_size": COUNT,
    "gen_lr": above(0.0),
    "temperature": above(0.0),
    "interactive": FLAG,
    # 10 the sharper EndoVAE
    "sharp_latent": COUNT,
    "sharp_norm": one_of(NORMS),
    "sharp_loss": one_of(RECON_LOSSES),
    "sharp_epochs": at_least(int, 0),
    "sharp_beta": at_least(float, 0.0),
    "sharp_ssim": at_least(float, 0.0),
    "sharp_prior": one_of(PRIORS),
    "sharp_budget": one_of(SHARP_BUDGETS),
}

_COMMON = ("run_dir", "seed", "device")
_TRAINING = (
    "run_dir", "loss", "epochs", "batch_size", "lr", "lr_cooldown", "seed", "device",
    "checkpoint_every", "resume", "compile", "precision", "max_train_images", "init",
)  # fmt: skip
SCHEMAS: dict[str, tuple[str, ...]] = {
    "01_preprocessing": (
        "run_dir", "data_dir", "n_per_class", "kvasir_sha256", "kvasir_url", "real_sample_dir",
        "seed", "healthy_test_fraction", "polyp_flips", "crop_min", "crop_max", "workers",
    ),
    "02_architecture": _COMMON,
    "03_train_mse": _TRAINING,
    "04_train_bce": _TRAINING,
    "05_generation_reconstruction": (*_COMMON, "n_show", "sample_seed", "fid_weights"),
    "06_metrics": (
        *_COMMON, "n_eval_polyps", "n_eval_train", "allow_fewer", "n_boot", "batch_size",
    ),
    "07_classifier_bonus": (
        *_COMMON, "n_pairs", "n_clf_train", "n_clf_test", "clf_epochs", "clf_lr",
        "clf_batch_size", "weights", "clf_input_size", "allow_fewer", "precision", "compile",
    ),
    "08_ablations": (
        *_COMMON, "abl_epochs", "abl_batch_size", "abl_lr", "abl_max_train_images",
        "abl_checkpoint_every", "latent_dims", "betas", "polyp_train_share", "abl_n_samples",
        "n_boot", "precision", "compile", "init", "fid_weights",
    ),
    "09_synthetic_data": (
        *_COMMON, "precision", "polyp_train_share", "per_healthy_class", "polyp_init",
        "gen_epochs", "gen_batch_size", "gen_lr", "temperature", "clf_epochs", "clf_lr",
        "clf_batch_size", "weights", "clf_input_size", "n_boot", "interactive", "fid_weights",
    ),
    "10_sharper_vae": (
        *_COMMON, "precision", "compile", "sharp_latent", "sharp_norm", "sharp_loss",
        "sharp_beta", "sharp_ssim", "sharp_prior", "sharp_epochs", "sharp_budget", "n_show", "polyp_train_share", "polyp_init",
        "gen_epochs", "gen_batch_size", "gen_lr", "clf_epochs", "clf_lr", "clf_batch_size",
        "weights", "clf_input_size", "n_boot", "fid_weights",
    ),
}  # fmt: skip


def problem(name: str, value: Any) -> str | None:
    """Why `value` breaks the rule for `name` ("name=value: expected ..."), or None."""
    rule = RULES.get(name)
    if rule is None or rule.ok(value):
        return None
    return f"{name}={value!r}: expected {rule.expect}"


def check(name: str, value: Any) -> Any:
    """Return `value` when it fits the rule for `name`; else raise ValueError naming it."""
    message = problem(name, value)
    if message:
        raise ValueError(message)
    return value


# --- the notebooks' parameters cells ----------------------------------------------------------

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "tuple": lambda v: isinstance(v, list | tuple),
    "dict": lambda v: isinstance(v, dict),
}
_NO_LITERAL = object()


@dataclass(frozen=True)
class Declared:
    """One `name: type = literal  # help` line of a parameters cell."""

    name: str
    annotation: str | None  # as written ("int"), None when the line has none
    source: str  # the default as written
    default: Any  # the default's value (_NO_LITERAL when it is not a literal)
    help: str

    @property
    def kind(self) -> str | None:
        """The declared type ("int", "float", ...), else the type of the literal default."""
        if self.annotation:
            return self.annotation.split("[")[0].strip()
        if self.default is _NO_LITERAL or self.default is None:
            return None
        return type(self.default).__name__

    @property
    def has_default(self) -> bool:
        """True when the default is a Python literal."""
        return self.default is not _NO_LITERAL


def _literal(node: ast.expr) -> Any:
    """The value of a literal expression, or _NO_LITERAL."""
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _NO_LITERAL


def declared_parameters(source: str, where: str = "parameters cell") -> dict[str, Declared]:
    """The assignments of a parameters cell, in order (a comment may hold "=", unlike papermill)."""
    try:
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, tokenize.TokenError) as exc:
        raise ValueError(f"{where}: not valid python ({exc})") from exc
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
        text_ = ast.get_source_segment(source, node.value) or ""
        help_ = comments.get(node.end_lineno, "")
        found[name] = Declared(name, annotation, text_, _literal(node.value), help_)
    return found


def notebook_parameters(path: str | os.PathLike) -> dict[str, Declared]:
    """The parameters a notebook's `parameters` cell declares ({} when it has none)."""
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable notebook ({exc})") from exc
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            return declared_parameters(source, f"{Path(path).name}: parameters cell")
    return {}


def type_problem(name: str, value: Any, kind: str | None) -> str | None:
    """Why `value` does not have the declared type `kind`, or None when it does (or is unknown)."""
    fits = _TYPE_CHECKS.get(kind or "")
    if fits is None or fits(value):
        return None
    return f"{name}={value!r}: expected {kind}, got {type(value).__name__}"


def parse_list(text: str, name: str, kind: type = float) -> list:
    """Parse a comma-separated parameter such as "6,32,128"; errors name the parameter."""
    example = "6,32,128" if kind is int else "0.1,1,4"
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}={text!r}: expected comma-separated numbers, e.g. {example!r}")
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = kind(part)
        except ValueError:
            raise ValueError(
                f"{name}={text!r}: {part!r} is not {'an integer' if kind is int else 'a number'}"
                f" (expected e.g. {example!r})"
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"{name}={text!r}: {part!r} is not finite")
        values.append(value)
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={text!r}: values repeat")
    return values


def check_all(**values: Any) -> None:
    """`check` several parameters by name; unknown names are an error too."""
    for name, value in values.items():
        if name not in RULES:
            raise ValueError(f"unknown parameter {name!r}")
        check(name, value)
