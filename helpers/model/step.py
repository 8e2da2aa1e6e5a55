"""One EndoVAE training step: forward pass, the paper's loss, backward pass, Adam update."""

from __future__ import annotations

import torch

from helpers.core.runtime import autocast
from helpers.model.losses import vae_loss


def forward_loss(
    model, x: torch.Tensor, target: torch.Tensor, kind: str, beta: float, amp_dtype,
    ssim_weight: float = 0.0,
):  # fmt: skip
    """Forward pass under autocast and the VAE loss in fp32: (total, recon, kld)."""
    with autocast(x.device, amp_dtype):
        logits, mu, logvar = model(x)
    return vae_loss(kind, logits, target, mu, logvar, beta, ssim_weight)


def optimise(total: torch.Tensor, optimizer: torch.optim.Optimizer, scaler) -> None:
    """Backward pass of the summed loss and one optimiser update (through the gradient scaler)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.step(optimizer)
    scaler.update()
