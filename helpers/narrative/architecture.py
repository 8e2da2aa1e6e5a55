"""Prose of notebook 02 (Sections 3 and 4): sentences about the network built in this run."""

from __future__ import annotations

import pandas as pd

from helpers.core.reference import PAPER_PARAMETER_COUNTS


def encoder_text(facts: dict) -> str:
    """Where the encoder's parameters sit."""
    n_enc, dense = facts["encoder"], facts["dense"]
    return (
        f"The encoder holds {n_enc:,} trainable parameters. {dense:,} of them "
        f"({dense / n_enc:.0%}) sit in the one dense layer that reads the {facts['flat_shape']} "
        "flattened features, so the convolutions that look at the image are a small part of its "
        "size."
    )


def decoder_text(facts: dict) -> str:
    """The decoder's size against the encoder's, and its largest layer."""
    return (
        f"The decoder holds {facts['decoder']:,} trainable parameters, "
        f"{facts['encoder'] / facts['decoder']:.1f} times fewer than the encoder; its largest "
        f"layer is `{facts['largest']}` ({facts['largest_type']}, "
        f"{facts['largest_parameters']:,} parameters)."
    )


def reparameterisation_text(seed: int, values: dict) -> str:
    """What the two-unit example of Table S5 shows."""
    eps, z, grad = values["eps"], values["z"], values["logvar_grad"]
    return (
        f"With seed {seed} the noise is $\\varepsilon$ = ({eps[0]:.3f}, {eps[1]:.3f}) and the "
        f"model's `reparameterize` returns $z$ = ({z[0]:.3f}, {z[1]:.3f}), exactly "
        "$\\mu + \\sigma\\varepsilon$. The gradient of $\\sum z$ reaches both encoder "
        "outputs: 1 for each $\\mu$, and $\\tfrac12\\sigma\\varepsilon$ for each "
        f"$\\log\\sigma^2$ ({grad[0]:.3f} and {grad[1]:.3f}). The noise is an input "
        "and gets no gradient, so backpropagation passes through the sampling step into the encoder."
    )


def assembly_text(facts: dict, x_shape: tuple, mu_shape: tuple, logits_shape: tuple) -> str:
    """Shapes through the assembled model and the counts checked against the paper."""
    n_enc, n_dec = facts["encoder"], facts["decoder"]
    paper = PAPER_PARAMETER_COUNTS
    return (
        f"Put together, a batch of {x_shape[0]} images of shape {tuple(x_shape[1:])} gives $\\mu$ "
        f"and $\\log\\sigma^2$ of shape {tuple(mu_shape)} and reconstruction logits of shape "
        f"{tuple(logits_shape)}. The network has {n_enc + n_dec:,} trainable parameters, "
        f"{n_enc:,} in the encoder and {n_dec:,} in the decoder: the same counts as the paper's "
        f"network ({paper['encoder']:,} and {paper['decoder']:,}), which this "
        "notebook checks every time it runs."
    )


def bce_stability_text(table: pd.DataFrame) -> str:
    """What Table S6's most saturated row shows."""
    worst = table.iloc[0]
    return (
        f"For a logit of {worst['logit']:.0f}, taking the log after the sigmoid gives "
        f"{worst['-log(sigmoid), fp32']}, PyTorch's `binary_cross_entropy` returns "
        f"{worst['F.binary_cross_entropy']:.0f} because it clamps the log at -100, and the "
        f"logit form gives {worst['from the logit (bce_sum)']:.0f}, the exact value "
        f"({worst['exact (float64)']:.0f}). Where nothing saturates the three agree."
    )
