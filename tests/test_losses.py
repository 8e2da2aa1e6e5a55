"""Tests for the VAE losses: hand-computed values, torch references, stability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from helpers.core.similarity import ssim
from helpers.model.losses import bce_sum, kld, mse_sum, recon_loss, ssim_sum, vae_loss


def test_kld_hand_computed():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # unit 1: mu=1, var=1 -> 0.5 * 1; unit 2: mu=0, var=2 -> 0.5 * (2 - 1 - ln 2)
    expected = 0.5 + 0.5 * (1.0 - math.log(2.0))
    assert kld(mu, logvar).item() == pytest.approx(expected, rel=1e-6)
    assert kld(torch.zeros(4, 6), torch.zeros(4, 6)).item() == 0.0


def test_kld_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(8, 6, generator=gen), torch.randn(8, 6, generator=gen)
    reference = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum()
    assert kld(mu, logvar).item() == pytest.approx(reference.item(), rel=1e-5)


def test_mse_hand_computed_and_reference():
    logits = torch.zeros(2, 3, 4, 4)  # sigmoid -> 0.5 everywhere
    target = torch.ones(2, 3, 4, 4)
    assert mse_sum(logits, target).item() == pytest.approx(0.25 * logits.numel())
    gen = torch.Generator().manual_seed(1)
    logits, target = torch.randn(4, 3, 8, 8, generator=gen), torch.rand(4, 3, 8, 8, generator=gen)
    reference = ((torch.sigmoid(logits) - target) ** 2).sum()
    assert mse_sum(logits, target).item() == pytest.approx(reference.item(), rel=1e-5)


def test_bce_hand_computed_and_reference():
    logits, target = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.3)
    assert bce_sum(logits, target).item() == pytest.approx(12 * math.log(2.0), rel=1e-6)
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3, 8, 8, generator=gen) * 3
    target = torch.rand(4, 3, 8, 8, generator=gen)
    reference = F.binary_cross_entropy(torch.sigmoid(logits), target, reduction="sum")
    assert bce_sum(logits, target).item() == pytest.approx(reference.item(), rel=1e-4)


def test_bce_is_finite_and_exact_for_saturated_logits():
    logits = torch.tensor([1e4, -1e4, 1e4, -1e4], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss = bce_sum(logits, target)
    # right answers cost 0, wrong ones cost |logit| (log(1 + e^x) ~ x)
    assert loss.item() == pytest.approx(2e4, rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.tolist() == pytest.approx([0.0, 0.0, 1.0, -1.0])


def test_losses_are_sums_over_the_batch_in_fp32():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 3, 8, 8, generator=gen).bfloat16()
    target = torch.rand(3, 3, 8, 8, generator=gen)
    for kind in ("mse", "bce"):
        one = recon_loss(kind, logits, target)
        two = recon_loss(kind, torch.cat([logits, logits]), torch.cat([target, target]))
        assert one.dtype == torch.float32
        assert two.item() == pytest.approx(2 * one.item(), rel=1e-5)


def test_vae_loss_combines_terms_and_rejects_unknown_kind():
    gen = torch.Generator().manual_seed(4)
    logits, target = torch.randn(2, 3, 4, 4, generator=gen), torch.rand(2, 3, 4, 4, generator=gen)
    mu, logvar = torch.randn(2, 6, generator=gen), torch.randn(2, 6, generator=gen)
    total, rec, kl = vae_loss("bce", logits, target, mu, logvar, beta=0.5)
    assert rec.item() == pytest.approx(bce_sum(logits, target).item())
    assert total.item() == pytest.approx(rec.item() + 0.5 * kl.item(), rel=1e-6)
    with pytest.raises(ValueError, match="loss='l1'"):
        vae_loss("l1", logits, target, mu, logvar)


def test_ssim_term_is_zero_for_a_perfect_image_and_on_the_summed_scale():
    """ssim_sum: 0 where sigmoid(logits) is the target, else (1 - SSIM) x values, summed."""
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 32, 32, generator=gen) * 0.9 + 0.05
    assert float(ssim_sum(torch.logit(target), target)) == pytest.approx(0.0, abs=1e-2)
    logits = torch.randn(3, 3, 32, 32, generator=gen)
    per_image = 1.0 - ssim(torch.sigmoid(logits), target)
    assert float(ssim_sum(logits, target)) == pytest.approx(3 * 32 * 32 * float(per_image.sum()))
    assert float(ssim_sum(logits, target)) > 0


def test_vae_loss_adds_the_weighted_ssim_term_with_a_finite_gradient():
    """ssim_weight w: total and recon grow by exactly w * ssim_sum; 0 leaves the paper's loss."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 24, 24, generator=gen, requires_grad=True)
    target = torch.rand(2, 3, 24, 24, generator=gen)
    mu, logvar = torch.randn(2, 6, generator=gen), torch.randn(2, 6, generator=gen)
    total0, rec0, kl0 = vae_loss("mse", logits, target, mu, logvar, beta=0.3)
    total, rec, kl = vae_loss("mse", logits, target, mu, logvar, beta=0.3, ssim_weight=0.5)
    extra = 0.5 * ssim_sum(logits, target).item()
    assert rec.item() == pytest.approx(rec0.item() + extra, rel=1e-6)
    assert total.item() == pytest.approx(total0.item() + extra, rel=1e-6)
    assert kl.item() == kl0.item()
    total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
