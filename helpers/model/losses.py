"""VAE losses, summed over the batch (the unit of the original report's curves).

Each function returns one scalar: the sum over every image (and pixel, or latent unit) of the
batch. Reconstruction losses take the decoder's *logits* so BCE stays finite when the sigmoid
saturates; they are computed in fp32 whatever the autocast dtype. The optional SSIM term (not the
paper's; the sharper model of Section 12) is on the same summed scale: (1 - SSIM) per image times
its number of values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from helpers.core.similarity import ssim

RECON_LOSSES = ("mse", "bce", "sigma")
SIGMA_FLOOR = math.exp(-12.0)  # lowest sigma^2 of the sigma-VAE loss (log sigma >= -6, as Rybkin)


def kld(mu: torch.Tensor, logvar: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) in closed form, summed over batch and latent units
    (`dim=1`: summed over latent units only, one value per image)."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=dim)


def mse_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error between sigmoid(logits) and target, summed over the batch."""
    return F.mse_loss(torch.sigmoid(logits.float()), target.float(), reduction="sum")


def bce_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(logits) against target in [0, 1], summed (stable)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="sum")


def sigma_nll_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sigma-VAE (Rybkin et al., 2021): Gaussian NLL of target under N(sigmoid(logits), sigma^2),
    summed, with the one sigma^2 that fits this batch best (its mean squared error). The gradient
    is the summed MSE's divided by 2 sigma^2: the KL weighs less as the reconstructions improve."""
    sq = torch.sum((torch.sigmoid(logits.float()) - target.float()) ** 2)
    var = (sq / target.numel()).clamp_min(SIGMA_FLOOR)
    return 0.5 * target.numel() * torch.log(2 * math.pi * var) + sq / (2 * var)


def ssim_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) of sigmoid(logits) against target per image, times its C*H*W values, summed
    (the summed MSE's scale: 0 for a perfect image, at most 2 * C*H*W per image)."""
    images = torch.sigmoid(logits.float())
    return target[0].numel() * (1.0 - ssim(images, target.float())).sum()


def recon_loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Reconstruction loss by name: "mse", "bce" or "sigma" (sigma-VAE)."""
    if kind == "mse":
        return mse_sum(logits, target)
    if kind == "bce":
        return bce_sum(logits, target)
    if kind == "sigma":
        return sigma_nll_sum(logits, target)
    raise ValueError(f"loss={kind!r}: expected one of {', '.join(RECON_LOSSES)}")


def vae_loss(
    kind: str,
    logits: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = 1.0,
    ssim_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (total, recon, kld) with total = recon + beta * kld (beta=1: the paper's loss), plus
    ssim_weight * ssim_sum when ssim_weight > 0 (it is part of `recon` then)."""
    rec = recon_loss(kind, logits, target)
    if ssim_weight:
        rec = rec + ssim_weight * ssim_sum(logits, target)
    kl = kld(mu, logvar)
    return rec + beta * kl, rec, kl
