"""How long a run will take, estimated before it starts from the measured training speed.

EndoVAE training dominates every profile, so the estimate is (training images of each notebook) /
(images/s measured for the chosen precision) plus a fixed allowance for the rest of each notebook.
With notebooks side by side (helpers.core.lanes) the speed is measured at one lane's thread count and
the notebooks are laid out on the lanes in the order the runner starts them.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import torch

from helpers.config.params import DATA_ALIASES, DATA_KEYWORDS
from helpers.core import paths
from helpers.core.classes import HEALTHY_CLASSES, POLYP_CLASS
from helpers.core.lanes import makespan, threads_per_job, upstream
from helpers.core.paths import RunPaths
from helpers.core.runtime import PrecisionChoice, get_device
from helpers.data import kvasir
from helpers.evaluate import classifier
from helpers.study.sharper import TOKEN_EPOCHS
from helpers.train.checkpoint import read_checkpoint
from helpers.train.fit import measure_images_per_s, training_precision

# Seconds each notebook spends besides EndoVAE and classifier training (both timed at the start):
# the quick profile on 2 cores, from empty run folders, in one shared kernel (execution.
# SharedKernel: the first notebook pays its start and the imports), as (AVX2 kernels,
# AVX512-BF16) measured: 01 5.0/10.4, 02 3.5/3.8, 03-04 ~2/~2, 05 7.9/7.7, 06 8.8/8.9, 07 6.3/2.2,
# 08 22.7/18.8, 09 5.0/5.4, 10 (token) 16.5/16.8, report 18.3/17.1 (benchmarks/avx2_quick.sh;
# make report from a fresh clone).
OTHER_SECONDS = {
    "01": 8,
    "02": 4,
    "03": 3,
    "04": 3,
    "05": 8,
    "06": 9,
    "07": 4,
    "08": 21,
    "09": 5,
    "10": 17,
}
DEFAULT_OTHER_SECONDS = 20
REPORT_SECONDS = 18  # merging the executed notebooks and two xelatex passes
# The rest of a notebook on a lane with fewer threads (imports and plots use one core anyway).
LANE_SLOWDOWN = 1.3
KVASIR_V1_PER_CLASS = 500
DOWNLOAD_PER_CLASS = {"v1": KVASIR_V1_PER_CLASS, "v2": 1000}  # the pinned official archives
FLIPS = 4


def _manifest(processed: Path) -> pd.DataFrame | None:
    """Notebook 01's manifest (group, split, source_id) when it exists."""
    manifest = processed / "manifest.csv"
    if not manifest.is_file():
        return None
    return pd.read_csv(manifest, usecols=["group", "split", "source_id"])


def zip_class_counts(zip_path: Path) -> dict[str, int]:
    """Images per class folder of a Kvasir-style zip, found as kvasir.find_class_dirs finds them
    in its extraction, read from the archive's directory (nothing is extracted)."""
    with zipfile.ZipFile(zip_path) as zf:
        names = [PurePosixPath(n) for n in zf.namelist() if not n.endswith("/")]
    images: dict[PurePosixPath, int] = {}
    for name in names:
        if name.suffix.lower() in kvasir.IMAGE_SUFFIXES and not name.name.startswith("."):
            images[name.parent] = images.get(name.parent, 0) + 1
    folders = {p for n in names for p in n.parents}
    top = sorted(p for p in folders if len(p.parts) == 1 and not p.name.startswith("."))
    top = [p for p in top if p.name not in ("__MACOSX",)]
    root = PurePosixPath(".")
    named = [root / v for v in kvasir.VERSION_FOLDERS if root / v in folders]
    others = [p for p in top if p not in named]
    nested = [p / v for p in others for v in kvasir.VERSION_FOLDERS if p / v in folders]
    candidates = [root, *named, *others, *nested]
    score = [sum((c / k) in folders for k in kvasir.ALL_CLASSES) for c in candidates]
    best = candidates[score.index(max(score))] if candidates and max(score) else None
    if best is None:
        return {}
    return {k: images.get(best / k, 0) for k in kvasir.ALL_CLASSES if (best / k) in folders}


def source_class_counts(params: dict[str, Any]) -> tuple[dict[str, int], str] | None:
    """Images per class of notebook 01's data source and its name; None when unreadable (notebook
    01 then says why) or unknown."""
    spec = str(params.get("data_dir", "")).strip()
    word = spec.lower()
    if word in DATA_ALIASES or not spec:
        n = params.get("n_per_class", 60)
        return {k: int(n) for k in kvasir.ALL_CLASSES}, f"the embedded data (n_per_class={n})"
    if word in DATA_KEYWORDS:
        version = word.partition(":")[2] or "v1"
        n = DOWNLOAD_PER_CLASS.get(version, KVASIR_V1_PER_CLASS)
        return {k: n for k in kvasir.ALL_CLASSES}, f"Kvasir {version} ({n} per class)"
    path = paths.resolve_user_path(spec)
    try:
        if path.is_file():
            counts = zip_class_counts(path)
        else:
            counts = {
                k: len(kvasir.list_images(d)) for k, d in kvasir.find_class_dirs(path).items()
            }
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    if POLYP_CLASS not in counts:
        return None
    return counts, f"data_dir {paths.display_path(path)}"


def healthy_split(counts: dict[str, int], share: float) -> tuple[int, int]:
    """(training, held-out) healthy images notebook 01 writes from `counts` source frames per
    class: each class rounds its share of held-out sources as preprocess does, all in 4 flips."""
    test = {k: int(math.floor(share * counts[k] + 0.5)) for k in HEALTHY_CLASSES if k in counts}
    return FLIPS * sum(counts[k] - test[k] for k in test), FLIPS * sum(test.values())


def _class_counts(params: dict[str, Any]) -> dict[str, int]:
    """Raw frames per class of notebook 01's source (Kvasir v1's 500 each when it is unreadable)."""
    found = source_class_counts(params)
    return found[0] if found else dict.fromkeys(kvasir.ALL_CLASSES, KVASIR_V1_PER_CLASS)


def healthy_train_images(params: dict[str, Any], processed: Path) -> int:
    """Healthy training images: from notebook 01's manifest when it exists, else estimated."""
    frame = _manifest(processed)
    if frame is not None:
        return int(((frame["group"] == "normal") & (frame["split"] == "train")).sum())
    return healthy_split(_class_counts(params), float(params.get("healthy_test_fraction", 0.1)))[0]


def polyp_sources(params: dict[str, Any], processed: Path) -> int:
    """Polyp source frames: from notebook 01's manifest when it exists, else estimated."""
    frame = _manifest(processed)
    if frame is not None:
        return int(frame.loc[frame["group"] == "polyps", "source_id"].nunique())
    return _class_counts(params).get(POLYP_CLASS, 0)


def ablation_arms(params: dict[str, Any]) -> int:
    """Number of ablation arms notebook 08 trains (baseline, latent sizes, betas, mask, polyps)."""
    latents = [v for v in str(params.get("latent_dims", "")).split(",") if v.strip()]
    betas = [v for v in str(params.get("betas", "")).split(",") if v.strip()]
    others = sum(int(v) != 6 for v in latents) + sum(float(v) != 1.0 for v in betas)
    return 1 + others + 2


def _polyp_train(params: dict[str, Any], n_polyps: int) -> int:
    """Polyp training images of notebooks 09 and 10: their share of the source frames, each in its
    4 flips (synthetic_eval.load_splits flips them in memory, as the healthy training images)."""
    return int(n_polyps * float(params.get("polyp_train_share", 0.5))) * FLIPS


def training_images(
    number: str, params: dict[str, Any], n_train: int, n_polyps: int = 0, faithful_epochs: int = 0,
    done: int = 0,
) -> int:  # fmt: skip
    """EndoVAE training images (epochs x images) a notebook processes (`faithful_epochs`: notebook
    03's, which notebook 10's sharper model repeats unless sharp_epochs says otherwise; `done`:
    the epochs 03's or 04's checkpoint already holds, which it resumes from)."""
    if number == "10" and params.get("sharp_budget") == "token":  # a preview, no polyp model
        return TOKEN_EPOCHS * n_train
    if number == "10":  # the sharper healthy model, then its polyp model with 09's settings
        epochs = int(params.get("sharp_epochs") or faithful_epochs)
        return epochs * n_train + int(params.get("gen_epochs", 0)) * _polyp_train(params, n_polyps)
    if "abl_epochs" in params:
        per_arm = min(int(params.get("abl_max_train_images") or n_train), n_train)
        return ablation_arms(params) * int(params["abl_epochs"]) * per_arm
    if "gen_epochs" in params:  # 09: the polyp EndoVAE (and one per healthy class if asked)
        images = _polyp_train(params, n_polyps) + (
            n_train if params.get("per_healthy_class") else 0
        )
        return int(params["gen_epochs"]) * images
    if number in ("03", "04") and "epochs" in params:
        cap = int(params.get("max_train_images") or n_train)
        return max(0, int(params["epochs"]) - done) * min(cap, n_train)
    return 0


def classifier_images(number: str, params: dict[str, Any], n_train: int, n_polyps: int) -> int:
    """Classifier training images (epochs x images) of notebook 07 (a real-vs-reconstructed
    classifier per EndoVAE, on 2 x n_clf_train images) or 09 (three healthy-vs-polyp
    classifiers on 2n, 2n and 4n images, n the smaller real class) or 10 (two on 2n)."""
    epochs = int(params.get("clf_epochs", 0))
    if number == "07":
        pairs = min(int(params.get("n_clf_train", 0)), n_polyps)
        return 2 * 2 * pairs * epochs
    if number == "09":
        return 8 * min(n_train, _polyp_train(params, n_polyps)) * epochs
    if number == "10":  # synthetic-only classifiers on 2n images each (none at a token budget)
        pairs = 0 if params.get("sharp_budget") == "token" else 2
        return pairs * 2 * min(n_train, _polyp_train(params, n_polyps)) * epochs
    return 0


# The batch-size parameters of the notebooks that train an EndoVAE (03/04, 08, 09 and 10).
BATCH_KEYS = ("batch_size", "abl_batch_size", "gen_batch_size")


def trains_endovae(params: dict[str, Any]) -> bool:
    """Whether a notebook with these parameters trains an EndoVAE (03/04, 08, 09, 10)."""
    epochs = ("epochs", "abl_epochs", "gen_epochs", "sharp_epochs")
    return "precision" in params and any(key in params for key in epochs)


def _checkpoint_epochs(run_dir: Path, loss: str, planned: bool = False) -> int:
    """The epochs in the run's `loss` checkpoint (those it was planned for when `planned`), 0
    without a readable one (the notebook that reads it will say why)."""
    path = RunPaths(run_dir).checkpoint(loss)
    try:
        state = read_checkpoint(path) if path.is_file() else None
        if state is None:
            return 0
        return int(state["train_config"]["epochs"] if planned else state["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def faithful_epochs(run_dir: Path) -> int:
    """The epochs of notebook 03's model in its checkpoint (which notebook 10's sharper model
    repeats), 0 without a readable one."""
    return _checkpoint_epochs(run_dir, "mse", planned=True)


def resumed_epochs(notebooks: dict[str, dict[str, Any]], run_dir: Path) -> dict[str, int]:
    """The epochs notebooks 03 and 04 will resume from: those their checkpoints hold (none with
    `resume` off; fit stops with a clear error when a checkpoint does not match its settings)."""
    return {
        name: _checkpoint_epochs(run_dir, str(params["loss"]))
        for name, params in notebooks.items()
        if "epochs" in params and "loss" in params and params.get("resume", True)
    }


def estimate_seconds(
    notebooks: dict[str, dict[str, Any]],
    images_per_s: float,
    processed: Path,
    report: bool,
    jobs: int = 1,
    classifier_per_s: float | None = None,
    skip: frozenset[str] = frozenset(),
    done: dict[str, int] | None = None,
    faithful: int | None = None,
) -> tuple[float, int]:
    """(expected seconds, EndoVAE training images) for notebooks {name: parameters} on `jobs`
    lanes; classifier training at `classifier_per_s` (left out when None); the notebooks in
    `skip` (unchanged since their last run) cost nothing but still lend their parameters; `done`
    maps 03 and 04 to the epochs their checkpoints hold (see resumed_epochs); `faithful`: notebook
    03's epochs when it is not among `notebooks` (notebook 10 repeats them)."""
    first = next(iter(notebooks.values()), {})
    data = first | notebooks.get("01_preprocessing", {})
    n_train, n_polyps = healthy_train_images(data, processed), polyp_sources(data, processed)
    slowdown = LANE_SLOWDOWN if jobs > 1 else 1.0
    faithful = int(notebooks.get("03_train_mse", {}).get("epochs", 0) or faithful or 0)
    images, seconds = {}, {}
    for name, params in notebooks.items():
        if name in skip:
            images[name] = seconds[name] = 0
            continue
        held = (done or {}).get(name, 0)
        images[name] = training_images(name[:2], params, n_train, n_polyps, faithful, held)
        other = OTHER_SECONDS.get(name[:2], DEFAULT_OTHER_SECONDS) * slowdown
        clf = classifier_images(name[:2], params, n_train, n_polyps)
        seconds[name] = images[name] / images_per_s + other
        seconds[name] += clf / classifier_per_s if classifier_per_s else 0.0
    wall = makespan(seconds, jobs, lambda name: upstream(name, list(notebooks)))
    return wall + (REPORT_SECONDS if report else 0), sum(images.values())


def classifier_speed(chosen: dict[str, dict[str, Any]], device: torch.device) -> float | None:
    """Classifier training images/s of the first classifier notebook in the plan (timed once per
    machine, then cached; a frozen ImageNet backbone counts its feature extraction)."""
    params = next((p for n, p in chosen.items() if n[:2] in ("07", "09", "10")), None)
    if params is None:
        return None
    speed, frozen = classifier.training_speed(
        str(params.get("weights", "auto")), int(params.get("clf_input_size", 0)),
        int(params.get("clf_batch_size", 32)), device, str(params.get("precision", "auto")),
    )  # fmt: skip
    return speed * int(params.get("clf_epochs", 1)) if frozen else speed


def current_speed(choice: PrecisionChoice, device: torch.device, batch: int) -> float:
    """Images/s of the chosen path now: a cached figure may come from a faster hour of a shared
    machine (this one's speed drifted by a third within a day), so it is timed again (~2 s)."""
    if choice.fresh and choice.label in choice.speeds:
        return choice.speeds[choice.label]
    return measure_images_per_s(choice.precision, device, batch)


def estimate(
    chosen: dict[str, dict[str, Any]], run_dir: Path, report: bool, jobs: int = 1,
    skip: frozenset[str] = frozenset(),
) -> tuple[float, str]:  # fmt: skip
    """(seconds, one line) the run is expected to take, from the training speeds measured on this
    machine (with `jobs` notebooks side by side: at one lane's thread count, which they reuse).

    `chosen` maps each selected notebook to every parameter it will run with; those in `skip`
    are unchanged since their last run and will not run.
    """
    processed = RunPaths(run_dir).processed
    to_run = {n: p for n, p in chosen.items() if n not in skip}
    trainer = next((p for p in to_run.values() if trains_endovae(p)), None)
    first = next(iter(chosen.values()), {})
    skipped = f"; {len(skip)} unchanged notebook(s) skipped" if skip else ""
    device = get_device(str((trainer or first).get("device", "auto")))
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(threads_per_job(jobs))
    try:
        clf_speed = classifier_speed(to_run, device)
        if trainer is None:
            seconds, _ = estimate_seconds(chosen, 1.0, processed, report, jobs, clf_speed, skip)
            line = f"expected time: about {seconds / 60:.1f} min (no EndoVAE training{skipped})"
            return seconds, line
        data = first | chosen.get("01_preprocessing", {})
        asked = next((trainer[k] for k in BATCH_KEYS if k in trainer), 128)
        batch = max(1, min(int(asked), healthy_train_images(data, processed)))
        choice = training_precision(device, str(trainer.get("precision", "auto")), batch)
        speed = current_speed(choice, device, batch)
    finally:
        torch.set_num_threads(threads)
    done = resumed_epochs(to_run, run_dir)
    faithful = None if "03_train_mse" in chosen else faithful_epochs(run_dir)
    seconds, images = estimate_seconds(
        chosen, speed, processed, report, jobs, clf_speed, skip, done, faithful
    )
    held = sum(done.values())
    if held:
        skipped += f"; {held} epoch(s) already in the checkpoints of 03/04"
    lanes = f"{jobs} notebooks side by side, " if jobs > 1 else ""
    clf = f", classifiers at {clf_speed:,.1f} img/s" if clf_speed else ""
    return seconds, (
        f"expected time: about {seconds / 60:.1f} min ({lanes}{images:,} EndoVAE training images "
        f"at {speed:,.1f} img/s timed now, {choice.describe()}{clf}; plus the rest of each "
        f"notebook{skipped})"
    )


def expected_time(
    chosen: dict[str, dict[str, Any]], run_dir: Path, report: bool, jobs: int = 1
) -> str:
    """One line: the run's expected time (see `estimate`)."""
    return estimate(chosen, run_dir, report, jobs)[1]
