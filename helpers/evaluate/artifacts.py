"""Kvasir's burned-in artifacts: the text strip and the endoscope-position box (a green box in
some frames). Masks that blank them out, mirrored with the image's flip, and a detector of the
green box by corner colour. Used by the artifact ablation of notebook 08.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from helpers.core.plots import to_chw_float
from helpers.data.images import FLIPS

# Artifact mask in the unflipped frame, as fractions of the image side (Kvasir's 720x576
# layout after the 90-100 % centre crop): the text strip on the left margin above the box
# row, and the endoscope-position box in the bottom-left corner.
MASK_SPLIT_ROW = 0.66  # rows [0, 0.66) carry text, rows [0.66, 1) the position box
MASK_TEXT_WIDTH = 0.22  # text strip: columns [0, 0.22)
MASK_BOX_WIDTH = 0.36  # position box: columns [0, 0.36)
GREEN_CORNER = 20  # side in pixels of the corner square the green-box detector looks at
GREEN_THRESHOLD = 0.025  # G must exceed R and B by this much (pixel values in [0, 1])
CORNERS = ("bl", "br", "tl", "tr")


def artifact_mask(flip: str = "none", size: int = 96) -> np.ndarray:
    """Boolean size x size mask of the text strip and position box, mirrored like the image."""
    if flip not in FLIPS:
        raise ValueError(f"flip={flip!r}: expected one of {', '.join(FLIPS)}")
    mask = np.zeros((size, size), dtype=bool)
    split = int(round(MASK_SPLIT_ROW * size))
    mask[:split, : int(round(MASK_TEXT_WIDTH * size))] = True
    mask[split:, : int(round(MASK_BOX_WIDTH * size))] = True
    if "h" in flip:
        mask = mask[:, ::-1]
    if "v" in flip:
        mask = mask[::-1]
    return np.ascontiguousarray(mask)


def flip_list(flips: str | Sequence[str], n: int) -> list[str]:
    """One flip code per image (a single code applies to all)."""
    if isinstance(flips, str):
        return [flips] * n
    flips = [str(f) for f in flips]
    if len(flips) != n:
        raise ValueError(f"flips: got {len(flips)} codes for {n} images")
    return flips


def mask_artifacts(images: np.ndarray | torch.Tensor, flips: str | Sequence[str] = "none"):
    """A copy of the images with the artifact regions set to 0 (uint8 NHWC or float NCHW)."""
    n = len(images)
    flips = flip_list(flips, n)
    is_tensor = isinstance(images, torch.Tensor)
    if images.ndim != 4:
        raise ValueError(f"images: expected 4 dimensions, got shape {tuple(images.shape)}")
    channels_first = is_tensor and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3)
    size = images.shape[-1] if channels_first else images.shape[2]
    if (images.shape[-2] if channels_first else images.shape[1]) != size:
        raise ValueError(f"images: expected square images, got shape {tuple(images.shape)}")
    masks = {f: artifact_mask(f, size) for f in set(flips)}
    stacked = np.stack([masks[f] for f in flips]) if n else np.zeros((0, size, size), bool)
    if is_tensor:
        keep = torch.from_numpy(~stacked).to(images.device)
        keep = keep[:, None] if channels_first else keep[..., None]
        return images * keep.to(images.dtype)
    out = np.array(images, copy=True)
    out[stacked] = 0
    return out


def _corner_means(x: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """Mean RGB (N x 3) of each corner square of float N x 3 x H x W images."""
    return {
        "bl": x[:, :, -size:, :size].mean(dim=(2, 3)),
        "br": x[:, :, -size:, -size:].mean(dim=(2, 3)),
        "tl": x[:, :, :size, :size].mean(dim=(2, 3)),
        "tr": x[:, :, :size, -size:].mean(dim=(2, 3)),
    }


def green_box_flags(
    images: np.ndarray | torch.Tensor, size: int = GREEN_CORNER,
    threshold: float = GREEN_THRESHOLD, corners: Sequence[str] = CORNERS,
) -> np.ndarray:  # fmt: skip
    """Per image: True when a corner square's mean colour is green-dominant (G > R, B + thr)."""
    bad = [c for c in corners if c not in CORNERS]
    if bad or not corners:
        raise ValueError(f"corners={corners!r}: expected a non-empty subset of {CORNERS}")
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch.from_numpy warns on read-only arrays
    x = to_chw_float(images)
    if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < size:
        raise ValueError(f"images: expected RGB images of at least {size} px, got {tuple(x.shape)}")
    flags = torch.zeros(len(x), dtype=torch.bool)
    for name, rgb in _corner_means(x, size).items():
        if name in corners:
            r, g, b = rgb.unbind(dim=1)
            flags |= (g > r + threshold) & (g > b + threshold)
    return flags.numpy()


def masked_preview(images: np.ndarray, rows: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n training images (those with a green box first) and the same images masked."""
    flags = green_box_flags(images)
    order = np.r_[np.flatnonzero(flags), np.flatnonzero(~flags)]
    pick = np.sort(order[: min(n, len(order))])
    chosen = images[pick]
    return chosen, mask_artifacts(chosen, rows["flip"].iloc[pick].tolist())
