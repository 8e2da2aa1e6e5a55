"""Structural similarity (SSIM, Wang et al. 2004) of image batches in torch, differentiable.

The settings are the paper's and torchmetrics' defaults: an 11-tap Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, population covariances, the mean over the 'valid' region (no padding) and
then over the channels. helpers.evaluate.metrics reports it (checked against scikit-image there);
helpers.model.losses uses it as an optional term of the sharper model's loss.
"""

from __future__ import annotations

import torch


def as_float_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two image batches have the same N x C x H x W shape; return them as fp32."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be torch tensors (N x C x H x W, values in [0, 1])")
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.ndim != 4:
        raise ValueError(f"x and y must be N x C x H x W, got shape {tuple(x.shape)}")
    return x.float(), y.float()


def gaussian_window(win_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian window of `win_size` taps (odd) and standard deviation `sigma`."""
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size={win_size}: must be a positive odd integer")
    if sigma <= 0:
        raise ValueError(f"sigma={sigma}: must be positive")
    r = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    return (g / g.sum()).float()


def _band_matrix(size: int, window: torch.Tensor) -> torch.Tensor:
    """(size - k + 1) x size matrix whose rows are the window shifted by one: a 'valid' 1-D conv."""
    k = window.numel()
    out = torch.zeros(size - k + 1, size, dtype=window.dtype, device=window.device)
    for i in range(size - k + 1):
        out[i, i : i + k] = window
    return out


def _filter_valid(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable filtering of every channel, 'valid' region only (two banded matmuls)."""
    rows = _band_matrix(images.shape[-2], window)
    cols = _band_matrix(images.shape[-1], window)
    return rows @ images @ cols.T


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image (Gaussian window, fp32, mean over valid region and channels)."""
    x, y = as_float_pair(x, y)
    if min(x.shape[-2:]) < win_size:
        raise ValueError(
            f"images of size {tuple(x.shape[-2:])} are smaller than win_size={win_size}"
        )
    window = gaussian_window(win_size, sigma).to(x.device)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    n, c = x.shape[:2]
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    filtered = _filter_valid(stacked, window).reshape(n, 5, c, -1)
    mu_x, mu_y, xx, yy, xy = filtered.unbind(dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=-1).mean(dim=-1)
