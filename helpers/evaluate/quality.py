"""Sample quality the field's way: Fréchet distance, KID and k-NN precision/recall, with a scale.

Features come from one of two extractors (`feature_extractor`):
- the standard FID Inception-v3 (torch-fidelity's `FeatureExtractorInceptionV3` through
  torchmetrics' `NoTrainInceptionV3`, 2048-d pool features) when its weights file is on disk:
  the numbers are labelled "FID" / "KID". Nothing is ever downloaded;
- otherwise a small CNN trained for a few seconds on the run's own real training frames, whose
  penultimate layer gives the features: "FD (run features)" / "KID (run features)".
The statistics are the kept libraries' own: torchmetrics' `FrechetInceptionDistance` and
`KernelInceptionDistance` (fed precomputed features through an identity module) and
torch-fidelity's k-NN precision/recall (Kynkäänniemi et al., 2019). `quality_table` compares
every set with the same held-out reference half of the real frames, at the same size n, and puts
the floor (the other real half), a blurred real set and the repeated mean image beside the models.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.cluster.vq import kmeans2
from torch import nn
from torch_fidelity.metric_prc import calculate_precision_recall_full
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from torchmetrics.image.kid import KernelInceptionDistance

from helpers.core.paths import display_path, resolve_user_path
from helpers.data.processed import to_tensor

INCEPTION_FILES = (
    "weights-inception-2015-12-05-6726825d.pth",  # torch-fidelity / torchmetrics' download name
    "pt_inception-2015-12-05-6726825d.pth",  # pytorch-fid's download name (same TF weights)
)
RUN_FEATURES_NOTE = (
    "FD and KID on run features use a small CNN trained in this run on its own real frames, so "
    "the feature space (and every number) depends on the data, the seed and that training: they "
    "rank models within this run and are not comparable with published FID/KID, which use the "
    "fixed ImageNet Inception-v3."
)
ROWS = ("real vs real (floor)", "blurred real", "mean image")
COLUMNS = ("FD", "KID mean", "KID s.e.", "precision", "recall", "n")
RESULT_KEYS = {"FD": "fd", "KID mean": "kid_mean", "KID s.e.": "kid_se", "precision": "precision",
               "recall": "recall", "n": "n"}  # fmt: skip
RUN_FEATURES = 64  # width of the run-feature CNN's penultimate layer
CPU_THREADS = 1  # torch threads of the quality work on the CPU (see cpu_threads)
MAX_FEATURE_TRAIN = 2048  # training frames the run-feature CNN draws from (memory, not time)


class FeatureExtractor(NamedTuple):
    """A module mapping float N x 3 x H x W images in [0, 1] to N x D features, and its labels."""

    module: nn.Module
    label: str  # "FID" (standard Inception) or "FD (run features)"
    note: str  # one line: which features, and why (not) comparable with papers

    @property
    def kid_label(self) -> str:
        """The KID label matching `label`: "KID" or "KID (run features)"."""
        return "KID" + self.label.removeprefix("FID").removeprefix("FD")


class _Identity(nn.Module):
    """Features in, features out: lets torchmetrics' statistics take precomputed features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The input unchanged."""
        return x


class InceptionFeatures(nn.Module):
    """The standard FID Inception-v3 (2048-d pool3) on float images in [0, 1]."""

    def __init__(self, weights_path: str | os.PathLike):
        super().__init__()
        self.inception = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(weights_path),
        )
        self.num_features = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 2048 features; pixels quantised to uint8 as torchmetrics' FID(normalize=True) does."""
        return self.inception((x * 255).byte()).reshape(len(x), -1)


class RunFeatureNet(nn.Module):
    """Four stride-2 conv blocks and a global average pool: 96x96 images -> 64-d features."""

    def __init__(self, width: int = 16, num_features: int = RUN_FEATURES):
        super().__init__()
        chans = (3, width, 2 * width, num_features, num_features)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]  # fmt: skip
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x num_features features of images in [0, 1]."""
        return self.body(x * 2 - 1)


@contextmanager
def cpu_threads(n: int = CPU_THREADS) -> Iterator[None]:
    """A block run with at most n torch CPU threads, restored after it.

    The quality work is small tensors (batches of 16, 64-d features): a second thread gains
    little on an idle CPU and, measured on a 2-core CPU shared with training jobs, made it six
    times slower (62 s against 11 s for notebook 05's table), its threads waiting on busy cores.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_images(images: torch.Tensor, name: str, min_count: int = 2) -> torch.Tensor:
    """`images` as float N x 3 x H x W in [0, 1] (CPU); error naming `name` otherwise."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"{name}: expected a float tensor N x 3 x H x W in [0, 1]")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: expected N x 3 x H x W, got shape {tuple(images.shape)}")
    if len(images) < min_count:
        raise ValueError(f"{name}: need at least {min_count} images, got {len(images)}")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"{name}: pixel values must lie in [0, 1]")
    return images.detach().float().cpu()


def _device(module: nn.Module) -> torch.device:
    """Device of the module's parameters (CPU when it has none)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.inference_mode()
def extract(module: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Features of `images` (float64 CPU N x D), in eval mode and batches."""
    module.eval()
    dev = _device(module)
    parts = [module(b.to(dev)).double().cpu() for b in images.split(batch_size)]
    return torch.cat(parts).reshape(len(images), -1)


def _check_features(f_real: torch.Tensor, f_fake: torch.Tensor) -> None:
    """Error unless both are N x D feature matrices of the same width."""
    for name, f in (("f_real", f_real), ("f_fake", f_fake)):
        if not isinstance(f, torch.Tensor) or f.ndim != 2 or len(f) < 2:
            raise ValueError(f"{name}: expected an N x D feature tensor with N >= 2")
    if f_real.shape[1] != f_fake.shape[1]:
        raise ValueError(f"f_fake: width {f_fake.shape[1]} differs from f_real's {f_real.shape[1]}")


def frechet_distance(f_real: torch.Tensor, f_fake: torch.Tensor) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets (torchmetrics' FID statistic)."""
    _check_features(f_real, f_fake)
    metric = FrechetInceptionDistance(feature=_Identity(f_real.shape[1])).double()
    metric.update(f_real.double(), real=True)
    metric.update(f_fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(
    f_real: torch.Tensor, f_fake: torch.Tensor, subsets: int = 100, subset_size: int = 0,
    seed: int = 0,
) -> tuple[float, float]:  # fmt: skip
    """KID (unbiased cubic-kernel MMD^2, torchmetrics): mean and s.d. over random subsets.

    subset_size 0 = half the smaller set; the s.d. over subsets is the standard error of one
    subset's estimate (as torchmetrics and torch-fidelity report it).
    """
    _check_features(f_real, f_fake)
    smaller = min(len(f_real), len(f_fake))
    size = subset_size or max(2, smaller // 2)
    if not 2 <= size <= smaller:
        raise ValueError(f"subset_size={subset_size}: must be between 2 and {smaller} (0 = auto)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=_Identity(f_real.shape[1]), subsets=subsets, subset_size=size
        )
    metric.update(f_real.double(), real=True)
    metric.update(f_fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def precision_recall(f_real: torch.Tensor, f_fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """k-NN manifold precision and recall (Kynkäänniemi et al., 2019; torch-fidelity's)."""
    _check_features(f_real, f_fake)
    if not isinstance(k, int) or not 1 <= k < min(len(f_real), len(f_fake)):
        raise ValueError(f"k={k!r}: must be an integer from 1 to the smaller set's size - 1")
    precision, recall = calculate_precision_recall_full(f_fake.float(), f_real.float(), k)
    return float(precision), float(recall)


def scores(
    f_real: torch.Tensor, f_fake: torch.Tensor, k: int = 3, kid_subsets: int = 100,
    kid_subset_size: int = 0, seed: int = 0,
) -> dict:  # fmt: skip
    """One table row: FD, KID mean and s.e., precision, recall and n (the fake set's size)."""
    kid_mean, kid_se = kernel_distance(f_real, f_fake, kid_subsets, kid_subset_size, seed)
    precision, recall = precision_recall(f_real, f_fake, k)
    return {"FD": frechet_distance(f_real, f_fake), "KID mean": kid_mean, "KID s.e.": kid_se,
            "precision": precision, "recall": recall, "n": len(f_fake)}  # fmt: skip


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Images blurred with a Gaussian of `sigma` pixels (separable, reflected borders)."""
    if not sigma > 0:
        raise ValueError(f"blur_sigma={sigma!r}: must be > 0")
    radius = max(1, math.ceil(3 * sigma))
    if radius >= min(images.shape[-2:]):
        raise ValueError(f"blur_sigma={sigma!r}: too wide for {tuple(images.shape[-2:])} images")
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(images.shape[1], 1, 1, 1)
    out = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(-1, 1, 1, 2 * radius + 1), groups=images.shape[1])
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(-1, 1, 2 * radius + 1, 1), groups=images.shape[1])


def inception_weights(fid_weights: str | os.PathLike = "") -> Path | None:
    """Resolve `fid_weights`: "" or "auto" (torch hub cache, if present), "none", or a file."""
    text = str(fid_weights).strip()
    if text.lower() == "none":
        return None
    if text.lower() in ("", "auto"):
        found = [p for p in cached_inception_paths() if p.is_file()]
        return found[0] if found else None
    path = resolve_user_path(text)
    if not path.is_file():
        raise FileNotFoundError(
            f"fid_weights={text!r}: file not found (the FID Inception weights, e.g. "
            f"{INCEPTION_FILES[0]}; nothing is downloaded; '' = look in the cache, 'none' = off)"
        )
    return path


def cached_inception_paths() -> list[Path]:
    """Where torch-fidelity / torchmetrics and pytorch-fid cache the FID Inception weights."""
    return [Path(torch.hub.get_dir()) / "checkpoints" / name for name in INCEPTION_FILES]


def load_inception(path: str | os.PathLike) -> InceptionFeatures:
    """The FID Inception-v3 from a state-dict file; error naming the file when it does not fit."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)  # refuses pickled code
        return InceptionFeatures(path)
    except Exception as exc:
        raise ValueError(f"fid_weights: cannot load {path} as the FID Inception-v3: {exc}") from exc


def pseudo_labels(images: torch.Tensor, clusters: int = 8, seed: int = 0) -> torch.Tensor:
    """k-means (scipy) cluster of each image's 8x8 colour layout: classes when none are given."""
    layout = F.adaptive_avg_pool2d(images, 8).flatten(1).double().numpy()
    _, labels = kmeans2(layout, min(clusters, len(images)), seed=seed, minit="++")
    return torch.from_numpy(labels).long()


def _batch(
    images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomly flipped images, half of them turned 90 degrees; class and 'turned' targets."""
    x = images[idx]
    flip_h, flip_v, turned = torch.rand(3, len(x), generator=gen) < 0.5
    x = torch.where(flip_h.view(-1, 1, 1, 1), x.flip(-1), x)
    x = torch.where(flip_v.view(-1, 1, 1, 1), x.flip(-2), x)
    x = torch.where(turned.view(-1, 1, 1, 1), x.transpose(-1, -2), x)
    return x, labels[idx], turned.long()


def _check_labels(labels: torch.Tensor, count: int) -> torch.Tensor:
    """`labels` as a long vector of `count` class indices >= 0 with two classes or more."""
    labels = torch.as_tensor(labels).long().cpu().reshape(-1)
    if len(labels) != count or labels.min() < 0 or labels.max() < 1:
        raise ValueError(f"labels: expected {count} class indices >= 0, two classes or more")
    return labels


def train_run_features(
    images: torch.Tensor, labels: torch.Tensor | None = None, steps: int = 60,
    batch_size: int = 16, seed: int = 0,
) -> RunFeatureNet:  # fmt: skip
    """RunFeatureNet trained (Adam) on two heads: the class and whether the frame was turned.

    The class is `labels` (e.g. healthy vs polyp) or, without labels, k-means pseudo-classes of
    the colour layout; the 'turned 90 degrees' head (a rotation pretext, Gidaris et al., 2018)
    makes the features see texture and sharpness, which colour classes alone miss. Batches of
    16 in channels_last: on a 2-core CPU that is about 3x faster per image seen than 32.
    """
    images = check_images(images, "real_train_images", min_count=4)
    if labels is None:
        labels = pseudo_labels(images, seed=seed)
    labels = _check_labels(labels, len(images))
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: must be an integer >= 1")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = RunFeatureNet().to(memory_format=torch.channels_last)
        heads = nn.Linear(net.num_features, int(labels.max()) + 1 + 2)
    opt = torch.optim.Adam([*net.parameters(), *heads.parameters()], lr=3e-3)
    net.train()
    with cpu_threads():
        _train_steps(net, heads, opt, images, labels, steps, batch_size, gen)
    return net.eval().requires_grad_(False)


def _train_steps(
    net: RunFeatureNet, heads: nn.Linear, opt: torch.optim.Optimizer, images: torch.Tensor,
    labels: torch.Tensor, steps: int, batch_size: int, gen: torch.Generator,
) -> None:  # fmt: skip
    """The Adam steps of `train_run_features`: class head and 'turned' head, summed losses."""
    split = heads.out_features - 2
    for _ in range(steps):
        idx = torch.randint(0, len(images), (min(batch_size, len(images)),), generator=gen)
        x, y_class, y_turned = _batch(images, labels, idx, gen)
        logits = heads(net(x.contiguous(memory_format=torch.channels_last)))
        loss = F.cross_entropy(logits[:, :split], y_class)
        loss = loss + F.cross_entropy(logits[:, split:], y_turned)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def feature_extractor(
    real_train_images: torch.Tensor, fid_weights: str | os.PathLike = "", seed: int = 0,
    labels: torch.Tensor | None = None, steps: int = 60,
) -> FeatureExtractor:  # fmt: skip
    """The FID Inception when its weights are on disk, else run features trained on real frames.

    fid_weights: "" (or "auto") = torch hub's cache if a file is there; a path = that file
    (error when missing); "none" = always run features. Pass training frames, not the held-out
    frames that `quality_table` compares.
    """
    path = inception_weights(fid_weights)
    if path is not None:
        note = (f"FID/KID: standard FID Inception-v3 weights from {display_path(path)} (96x96 frames "
                "resized to 299x299 inside); small n biases FID upward against papers' 10k-50k "
                "samples.")  # fmt: skip
        return FeatureExtractor(load_inception(path), "FID", note)
    net = train_run_features(real_train_images, labels, steps=steps, seed=seed)
    looked = "" if str(fid_weights).strip().lower() == "none" else (
        f"No FID Inception weights at {display_path(cached_inception_paths()[0])} (nothing is "
        "downloaded). ")  # fmt: skip
    return FeatureExtractor(net, "FD (run features)", looked + RUN_FEATURES_NOTE)


def extractor_for(
    train_images: np.ndarray, classes: Sequence[str], fid_weights: str | os.PathLike = "",
    seed: int = 0, device: str | torch.device = "cpu", max_images: int = MAX_FEATURE_TRAIN,
) -> FeatureExtractor:  # fmt: skip
    """One notebook's extractor from its uint8 training frames and their class names, on `device`.

    Run features learn the classes (e.g. manifest `source_class`) and the rotation pretext on at
    most `max_images` seeded frames; the FID Inception ignores both.
    """
    if len(train_images) != len(classes):
        raise ValueError(f"classes: expected {len(train_images)} names, got {len(classes)}")
    pick = np.arange(len(train_images))
    if len(pick) > max_images:
        pick = np.sort(np.random.default_rng(seed).choice(len(pick), max_images, replace=False))
    labels = class_labels([classes[i] for i in pick])
    extractor = feature_extractor(to_tensor(train_images[pick]), fid_weights, seed, labels)
    extractor.module.to(device)
    return extractor


def frames_needed(n_real: int, k: int = 3) -> int:
    """Frames a candidate needs in `quality_table` for `n_real` real frames: the reference half."""
    return max(n_real // 2, k + 1)


def _subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` of `images` drawn without replacement (seeded); all of them when n >= len."""
    if n >= len(images):
        return images
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def _halves(count: int, groups: Sequence | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint seeded halves of range(count), of equal size; whole groups when given.

    With `groups` (e.g. source frame ids, so the flips of one frame stay together) the groups
    are split in two and the larger half is trimmed to the smaller one's size.
    """
    gen = torch.Generator().manual_seed(seed)
    if groups is None:
        perm, m = torch.randperm(count, generator=gen), count // 2
        return perm[:m], perm[m : 2 * m]
    codes = torch.as_tensor(pd.factorize(pd.Series(list(groups)))[0])
    if len(codes) != count:
        raise ValueError(f"groups: expected {count} ids (one per real image), got {len(codes)}")
    order = torch.randperm(int(codes.max()) + 1, generator=gen)
    if len(order) < 2:
        raise ValueError("groups: need at least two distinct ids to split the real images")
    first = torch.isin(codes, order[: len(order) // 2])
    half_a, half_b = torch.nonzero(first).flatten(), torch.nonzero(~first).flatten()
    m = min(len(half_a), len(half_b))
    return half_a[torch.randperm(len(half_a), generator=gen)[:m]], half_b[
        torch.randperm(len(half_b), generator=gen)[:m]
    ]


def reference_sets(
    real: torch.Tensor, blur_sigma: float = 1.5, seed: int = 0, groups: Sequence | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The reference real half, and the scale rows: other real half, it blurred, its mean image.

    `groups`: one id per real image (its source frame); images of one id stay in one half, so
    flips of a frame never sit on both sides of the floor.
    """
    real = check_images(real, "real", min_count=4)
    idx_a, idx_b = _halves(len(real), groups, seed)
    if len(idx_a) < 2:
        raise ValueError(f"real: {len(real)} images give halves of {len(idx_a)}; need 2 or more")
    half_a, half_b = real[idx_a], real[idx_b]
    mean = half_a.mean(dim=0, keepdim=True).expand_as(half_a).contiguous()
    return half_b, dict(zip(ROWS, (half_a, gaussian_blur(half_a, blur_sigma), mean), strict=True))


def quality_table(
    extractor: FeatureExtractor | nn.Module, real: torch.Tensor,
    candidates: dict[str, torch.Tensor], k: int = 3, kid_subsets: int = 100,
    kid_subset_size: int = 0, blur_sigma: float = 1.5, seed: int = 0,
    groups: Sequence | None = None,
) -> pd.DataFrame:  # fmt: skip
    """FD, KID, precision/recall of each set against half of `real`, beside the scale rows.

    Rows: the floor (the other real half), "blurred real", "mean image", then each candidate
    (a seeded subset of at most len(real) // 2 frames). attrs hold the labels and the note.
    `groups` (one source id per real image) keeps a frame's flips in one half.
    """
    module = extractor.module if isinstance(extractor, FeatureExtractor) else extractor
    reference, sets = reference_sets(real, blur_sigma, seed, groups)
    for name, images in candidates.items():
        if name in sets:
            raise ValueError(f"candidates: name {name!r} is taken by a scale row")
        images = check_images(images, f"candidates[{name!r}]", min_count=k + 1)
        sets[name] = _subset(images, len(reference), seed)
    big = isinstance(module, InceptionFeatures)  # large convolutions: every thread helps
    with cpu_threads(torch.get_num_threads() if big else CPU_THREADS):
        f_ref = extract(module, reference)
        rows = {name: scores(f_ref, extract(module, images), k, kid_subsets, kid_subset_size,
                             seed) for name, images in sets.items()}  # fmt: skip
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS))
    table.index.name = "set"
    table.attrs.update(k=k, blur_sigma=blur_sigma)
    if isinstance(extractor, FeatureExtractor):
        table.attrs.update(
            label=extractor.label, kid_label=extractor.kid_label, note=extractor.note
        )
    return table


def class_labels(classes: Sequence[str]) -> torch.Tensor | None:
    """Class indices of `classes` (e.g. manifest `source_class`); None when fewer than two."""
    codes, names = pd.factorize(pd.Series(list(classes), dtype=str), sort=True)
    return torch.as_tensor(codes).long() if len(names) >= 2 else None


def quality_results(table: pd.DataFrame) -> dict[str, Any]:
    """A quality table as results/NN.json holds it: labels, note and each row's numbers."""
    rows = {
        name: {RESULT_KEYS[c]: (int(r[c]) if c == "n" else float(r[c])) for c in COLUMNS}
        for name, r in table.iterrows()
    }
    attrs = {k: table.attrs.get(k, "") for k in ("label", "kid_label", "note")}
    return {**attrs, "scale_rows": list(ROWS), "rows": rows}


def format_quality(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the report shows it: FD and KID (with its s.e.) under their labels, rounded."""
    label, kid = table.attrs.get("label") or "FD", table.attrs.get("kid_label") or "KID"
    out = pd.DataFrame(index=table.index)
    out[label] = table["FD"].round(2)
    out[kid], out["KID s.e."] = table["KID mean"].round(4), table["KID s.e."].round(4)
    out["precision"], out["recall"] = table["precision"].round(3), table["recall"].round(3)
    out["n"] = table["n"].astype(int)
    return out
