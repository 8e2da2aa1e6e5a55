"""Tests for the EndoVAE network, its layer table and architecture diagram."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from helpers.evaluate.diagram import draw_architecture, layer_table, trace_layers
from helpers.model.endovae import (
    HE_LOGVAR_BIAS,
    EndoVAE,
    EndoVAEConfig,
    count_parameters,
    init_weights,
)
from helpers.train import infer

# Parameter counts stated for the paper's network (encoder ~9.8 M, decoder ~1.3 M).
PAPER_ENCODER, PAPER_DECODER = 9_842_380, 1_282_467


def conv_params(c_in: int, c_out: int, k: int = 3) -> int:
    """Weights + biases of a k x k convolution."""
    return k * k * c_in * c_out + c_out


def dense_params(n_in: int, n_out: int) -> int:
    """Weights + biases of a dense layer."""
    return n_in * n_out + n_out


def test_parameter_counts_match_paper_and_hand_count():
    model = EndoVAE()
    enc_channels = [3, 16, 32, 32, 64, 128, 256]
    by_hand_enc = sum(conv_params(a, b) for a, b in itertools.pairwise(enc_channels))
    by_hand_enc += dense_params(256 * 12 * 12, 256) + 2 * dense_params(256, 6)
    dec_channels = [256, 256, 128, 64, 64, 32, 32, 3]
    by_hand_dec = dense_params(6, 256 * 12 * 12)
    by_hand_dec += sum(conv_params(a, b) for a, b in itertools.pairwise(dec_channels))
    assert count_parameters(model.encoder) == by_hand_enc == PAPER_ENCODER
    assert count_parameters(model.decoder) == by_hand_dec == PAPER_DECODER


def test_output_shapes():
    model = EndoVAE().eval()
    x = torch.rand(2, 3, 96, 96)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 6)
    logits, mu2, _ = model(x)
    assert logits.shape == (2, 3, 96, 96) and torch.equal(mu, mu2)
    recon = model.reconstruct(x)
    assert recon.shape == (2, 3, 96, 96) and 0 <= recon.min() and recon.max() <= 1
    samples = infer.decode_samples(model, 3, seed=0)
    assert samples.shape == (3, 3, 96, 96)


def test_other_config_shapes():
    cfg = EndoVAEConfig(latent_dim=16, in_size=64)
    model = EndoVAE(cfg)
    logits, mu, _ = model(torch.rand(1, 3, 64, 64))
    assert logits.shape == (1, 3, 64, 64) and mu.shape == (1, 16)
    with pytest.raises(ValueError, match="in_size=90"):
        EndoVAEConfig(in_size=90)
    with pytest.raises(ValueError, match="latent_dim=0"):
        EndoVAEConfig(latent_dim=0)


def test_reparameterisation_value_and_gradients():
    mu = torch.tensor([0.5, -1.0], requires_grad=True)
    logvar = torch.tensor([0.0, 2.0 * torch.log(torch.tensor(3.0)).item()], requires_grad=True)
    torch.manual_seed(0)
    eps = torch.randn(2)
    torch.manual_seed(0)
    z = EndoVAE.reparameterize(mu, logvar)
    assert torch.allclose(z, mu.detach() + torch.tensor([1.0, 3.0]) * eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(2))
    # dz/dlogvar = 0.5 * sigma * eps
    assert torch.allclose(logvar.grad, 0.5 * torch.tensor([1.0, 3.0]) * eps)


def test_layer_table_counts_and_shapes():
    model = EndoVAE()
    table = layer_table(model)
    totals = table.set_index("layer")["parameters"]
    assert totals["encoder total"] == count_parameters(model.encoder)
    assert totals["decoder total"] == count_parameters(model.decoder)
    assert totals["total"] == count_parameters(model)
    rows = table[~table["layer"].str.contains("total")]
    assert rows["parameters"].sum() == count_parameters(model)
    shapes = dict(zip(rows["layer"], rows["output shape"], strict=True))
    assert shapes["encoder.features.10"] == "256 x 12 x 12"
    assert shapes["encoder.mu"] == "6"
    assert shapes["decoder.net.12"] == "3 x 96 x 96"
    assert "ReLU" in rows.set_index("layer").loc["encoder.features.0", "type"]
    assert "ReLU" not in rows.set_index("layer").loc["decoder.net.12", "type"]


def test_trace_follows_the_config():
    cfg = EndoVAEConfig(latent_dim=3, in_size=48)
    layers = trace_layers(EndoVAE(cfg))
    convs = [la for la in layers if isinstance(la.module, nn.Conv2d)]
    assert convs[0].shape == (16, 48, 48) and convs[-1].shape == (3, 48, 48)
    assert [la.shape for la in layers if la.name.endswith("mu")] == [(3,)]


def test_draw_architecture_writes_png(tmp_path):
    path = tmp_path / "fig.png"
    fig = draw_architecture(path=path)
    assert path.stat().st_size > 10_000
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert f"{PAPER_ENCODER:,}" in texts and f"{PAPER_DECODER:,}" in texts
    assert "256 × 12 × 12" in texts
    plt.close(fig)


def test_he_init_keeps_the_shapes_and_narrows_the_posterior():
    torch.manual_seed(0)
    paper = EndoVAE()
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(paper.state_dict().values(),
               init_weights(EndoVAE(), "pytorch").state_dict().values(), strict=True))  # fmt: skip
    torch.manual_seed(0)
    he = init_weights(EndoVAE(), "he")
    assert count_parameters(he) == count_parameters(paper)
    assert torch.all(he.encoder.logvar.bias == HE_LOGVAR_BIAS)
    assert torch.equal(he.encoder.features[0].weight, paper.encoder.features[0].weight)
    conv = he.decoder.net[2]
    assert torch.all(conv.bias == 0)
    fan_in = conv.weight[0].numel()
    assert float(conv.weight.detach().std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.25)
    out = he.decoder.net[-1]  # unit gain: the loss's gradient reaches z from the first step
    assert float(out.weight.detach().std()) == pytest.approx(
        out.weight[0].numel() ** -0.5, rel=0.25
    )
    assert torch.all(out.bias == 0)
    with torch.no_grad():
        _, _, logvar = he(torch.rand(4, 3, 96, 96))
    assert float(logvar.mean()) < -4  # sigma about 0.05: z carries the code from the first step


def test_unknown_init_is_named():
    with pytest.raises(ValueError, match="init='xavier'"):
        init_weights(EndoVAE(), "xavier")
