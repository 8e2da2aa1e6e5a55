"""What notebook 02 shows about the network: layer tables per part, the parameter counts checked
against the paper's, the reparameterisation trick on two units and the BCE-from-logits example.
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from helpers.core.reference import PAPER_PARAMETER_COUNTS
from helpers.model.endovae import EndoVAE, count_parameters
from helpers.model.losses import bce_sum

DEMO_LOGITS = (-200.0, -50.0, -5.0, 0.0, 5.0, 50.0)  # Table S6: from saturated to confident


def part_table(table: pd.DataFrame, part: str) -> pd.DataFrame:
    """The layer-table rows of one part ("encoder"/"decoder"), parameters with separators."""
    rows = table[table["part"] == part].drop(columns="part").set_index("layer")
    return rows.assign(parameters=rows["parameters"].map("{:,}".format))


def layer_facts(model: EndoVAE, table: pd.DataFrame) -> dict:
    """Counts per part, the encoder's dense layer and the decoder's largest layer."""
    layers = table[~table["layer"].str.contains("total")].set_index("layer")
    decoder = layers[layers.index.str.startswith("decoder")]
    largest = decoder["parameters"].astype(int).idxmax()
    return {
        "encoder": count_parameters(model.encoder),
        "decoder": count_parameters(model.decoder),
        "flat_shape": layers.loc["encoder.dense.0", "output shape"],
        "dense": int(layers.loc["encoder.dense.1", "parameters"]),
        "largest": largest,
        "largest_type": decoder.loc[largest, "type"],
        "largest_parameters": int(decoder.loc[largest, "parameters"]),
    }


def check_parameter_counts(facts: dict) -> None:
    """Raise AssertionError unless encoder and decoder match the paper's counts exactly."""
    counts = {part: facts[part] for part in PAPER_PARAMETER_COUNTS}
    assert counts == PAPER_PARAMETER_COUNTS, f"{counts} != the paper's {PAPER_PARAMETER_COUNTS}"


def reparameterisation_example(seed: int) -> tuple[pd.DataFrame, dict]:
    """Table S5: the model's `reparameterize` on two units, its sample and its gradients."""
    mu = torch.tensor([0.5, -1.0], requires_grad=True)
    logvar = torch.tensor([0.0, 1.0], requires_grad=True)
    torch.manual_seed(seed)
    eps = torch.randn(2)  # the noise that reparameterize draws after the same seed
    torch.manual_seed(seed)
    z = EndoVAE.reparameterize(mu, logvar)
    z.sum().backward()
    sigma = torch.exp(0.5 * logvar.detach())
    assert torch.allclose(z.detach(), mu.detach() + sigma * eps)
    assert torch.allclose(mu.grad, torch.ones(2))
    assert torch.allclose(logvar.grad, 0.5 * sigma * eps)
    table = pd.DataFrame(
        {
            "μ": mu.detach(),
            "log σ²": logvar.detach(),
            "σ": sigma,
            "ε": eps,
            "z = μ + σε": z.detach(),
            "∂z/∂μ": mu.grad,
            "∂z/∂log σ²": logvar.grad,
            "σε/2": 0.5 * sigma * eps,
        },
        index=["unit 1", "unit 2"],
    ).round(4)
    values = {"eps": eps.tolist(), "z": z.detach().tolist(), "logvar_grad": logvar.grad.tolist()}
    return table, values


def bce_stability_table() -> pd.DataFrame:
    """Table S6: BCE of a pixel with target 1, after the sigmoid in fp32, clamped, from logits."""
    logits = torch.tensor(DEMO_LOGITS)
    ones = torch.ones_like(logits)
    table = pd.DataFrame(
        {
            "logit": logits,
            "-log(sigmoid), fp32": -torch.log(torch.sigmoid(logits)),
            "F.binary_cross_entropy": F.binary_cross_entropy(
                torch.sigmoid(logits), ones, reduction="none"
            ),
            "from the logit (bce_sum)": [
                bce_sum(v.view(1), t.view(1)).item() for v, t in zip(logits, ones, strict=True)
            ],
            "exact (float64)": F.softplus(-logits.double()),
        }
    )
    return table.round(4) + 0.0  # + 0.0 turns -0.0 into 0.0
