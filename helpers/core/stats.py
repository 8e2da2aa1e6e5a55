"""Statistics of the report: one percentile bootstrap, summaries, paired/unpaired differences, AUC.

Every interval is a 95 % (by default) percentile bootstrap drawn by `resample_means` from
numpy's generator seeded with `seed`; the AUC interval resamples whole groups (source frames)
of each class with `auc_bootstrap_ci`. Standard deviations use ddof=1 (sample standard
deviation) everywhere. scipy.stats.bootstrap is not used: its default (BCa) and its batching
give other intervals than the report's, and it refuses single values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

DDOF = 1
_DRAWS_PER_CHUNK = 2_000_000  # resampled values held in memory at once


def finite_values(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    """Values as a 1-D float array; error when empty or not finite."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name}: need at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains non-finite values (e.g. PSNR of identical images)")
    return arr


def resample_means(arr: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n_boot resamples (with replacement, same size) of `arr`: the one resampler."""
    means = np.empty(n_boot)
    chunk = max(1, _DRAWS_PER_CHUNK // arr.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = arr[rng.integers(0, arr.size, (stop - start, arr.size))].mean(axis=1)
    return means


def percentile_interval(draws: np.ndarray, ci: float) -> tuple[float, float]:
    """The central `ci` share of bootstrap draws: (low, high) percentiles."""
    alpha = (1 - ci) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


def _check_boot(n_boot: int, ci: float) -> None:
    """Error unless 0 < ci < 1 and n_boot >= 1."""
    if not 0 < ci < 1:
        raise ValueError(f"ci={ci}: must be between 0 and 1")
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot}: must be >= 1")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values`."""
    arr = finite_values(values)
    _check_boot(n_boot, ci)
    return percentile_interval(resample_means(arr, n_boot, np.random.default_rng(seed)), ci)


def summarize(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> dict:
    """Mean, standard deviation (ddof=1), bootstrap CI of the mean and count."""
    arr = finite_values(values)
    low, high = bootstrap_ci(arr, n_boot=n_boot, ci=ci, seed=seed)
    std = float(arr.std(ddof=DDOF)) if arr.size > 1 else float("nan")
    return {"mean": float(arr.mean()), "std": std, "ci_low": low, "ci_high": high,
            "n": int(arr.size)}  # fmt: skip


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict:
    """Mean of a - b over paired values with its bootstrap CI, and the share of pairs with a > b."""
    a, b = finite_values(a, "a"), finite_values(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same length, got {a.size} and {b.size}")
    out = summarize(a - b, n_boot=n_boot, ci=ci, seed=seed)
    out["share_a_better"] = float(np.mean(a > b))
    out["ci_excludes_zero"] = bool(out["ci_low"] > 0 or out["ci_high"] < 0)
    return out


def unpaired_difference(
    a: Sequence[float], b: Sequence[float], n_boot: int, seed: int, ci: float = 0.95
) -> dict:
    """Difference of means a - b of two independent samples with a percentile bootstrap CI."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("unpaired_difference: both samples need at least one value")
    rng = np.random.default_rng(seed)
    diffs = resample_means(a, n_boot, rng) - resample_means(b, n_boot, rng)
    low, high = percentile_interval(diffs, ci)
    return {"mean": float(a.mean() - b.mean()), "ci_low": low, "ci_high": high}


# --- ROC AUC of a score (healthy negative, polyps positive) ------------------------------------


def score_arrays(
    healthy: Sequence[float], polyps: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Both score sets as finite 1-D float arrays (each non-empty)."""
    out = []
    for name, values in (("healthy_scores", healthy), ("polyp_scores", polyps)):
        arr = np.asarray(values, dtype=np.float64).ravel()
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: need at least one value, all finite")
        out.append(arr)
    return out[0], out[1]


def anomaly_auc(healthy_scores: Sequence[float], polyp_scores: Sequence[float]) -> float:
    """ROC AUC of a score that should be higher for polyps (positives) than for healthy images."""
    h, p = score_arrays(healthy_scores, polyp_scores)
    return float(roc_auc_score(np.r_[np.zeros(len(h)), np.ones(len(p))], np.r_[h, p]))


def roc_points(
    healthy_scores: Sequence[float], polyp_scores: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates of the ROC curve (polyps positive)."""
    h, p = score_arrays(healthy_scores, polyp_scores)
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(h)), np.ones(len(p))], np.r_[h, p])
    return fpr, tpr


def _group_index(values: np.ndarray, groups: Sequence[Any] | None) -> list[np.ndarray]:
    """Positions of each group (one group per value when groups is None)."""
    if groups is None:
        return [np.array([i]) for i in range(len(values))]
    codes = pd.factorize(pd.Series(list(groups)))[0]
    if len(codes) != len(values):
        raise ValueError(f"groups: got {len(codes)} labels for {len(values)} scores")
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]


def _fast_auc(healthy: np.ndarray, polyps: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted as one half."""
    ranks = rankdata(np.r_[healthy, polyps])
    n_h, n_p = len(healthy), len(polyps)
    return float((ranks[n_h:].sum() - n_p * (n_p + 1) / 2) / (n_h * n_p))


def _resample_groups(groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Positions of one resample of whole groups (with replacement, as many groups)."""
    return np.concatenate([groups[j] for j in rng.integers(0, len(groups), len(groups))])


def auc_bootstrap_ci(
    healthy_scores: Sequence[float],
    polyp_scores: Sequence[float],
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    healthy_groups: Sequence[Any] | None = None,
    polyp_groups: Sequence[Any] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC, resampling each class (by group, e.g. source frame)."""
    h, p = score_arrays(healthy_scores, polyp_scores)
    rng = np.random.default_rng(seed)
    h_groups, p_groups = _group_index(h, healthy_groups), _group_index(p, polyp_groups)
    aucs = np.empty(n_boot)
    for i in range(n_boot):
        hs = h[_resample_groups(h_groups, rng)]
        aucs[i] = _fast_auc(hs, p[_resample_groups(p_groups, rng)])
    return percentile_interval(aucs, ci)
