"""The EndoVAE drawn by our own code (report Figure 2) and its layer table.

Both come from one forward trace of the model with hooks, so every shape and parameter count
shown is computed from the network, never typed in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.patches import FancyBboxPatch
from torch import nn

from helpers.core.plots import save_figure
from helpers.model.endovae import EndoVAE, EndoVAEConfig

TRACED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Flatten, nn.ReLU)
COLOURS = {
    "io": "#e6e6e6",
    "conv": "#cfe2f3",
    "tconv": "#fce5cd",
    "dense": "#d9ead3",
    "latent": "#e4d7f5",
    "noise": "#fff2cc",
}


@dataclass
class Layer:
    """One traced layer: module name, module, output shape (no batch), own parameters, ReLU after."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    params: int
    relu: bool = False

    @property
    def part(self) -> str:
        """'encoder' or 'decoder'."""
        return self.name.split(".")[0]

    @property
    def kind(self) -> str:
        """Layer type in words, e.g. 'Conv2d 3x3, stride 2 + ReLU'."""
        m = self.module
        text = type(m).__name__
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            text += f" {m.kernel_size[0]}x{m.kernel_size[1]}, stride {m.stride[0]}"
        return text + (" + ReLU" if self.relu else "")


def trace_layers(model: EndoVAE, input_size: int | None = None) -> list[Layer]:
    """Run one image through the model (mu as z) and record every layer in call order."""
    cfg = model.config
    size = input_size or cfg.in_size
    records: list[Layer] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module, _inputs, output):
        """Record a layer, folding a ReLU into the layer before it."""
        if isinstance(module, nn.ReLU) and records:
            records[-1].relu = True
            return
        own = sum(p.numel() for p in module.parameters(recurse=False))
        records.append(Layer(names[module], module, tuple(output.shape[1:]), own))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, TRACED)]
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            mu, _ = model.encoder(torch.zeros(1, cfg.in_channels, size, size, device=device))
            model.decoder(mu)
    finally:
        for h in handles:
            h.remove()
    return records


def _shape_text(shape: tuple[int, ...], times: str = "x") -> str:
    """(256, 12, 12) -> '256 x 12 x 12'; (36864,) -> '36,864'."""
    if len(shape) == 1:
        return f"{shape[0]:,}"
    return f" {times} ".join(str(s) for s in shape)


def layer_table(model: EndoVAE, input_size: int | None = None) -> pd.DataFrame:
    """Layer, type, output shape and parameters per layer, with encoder/decoder/total rows."""
    rows = [
        {"part": layer.part, "layer": layer.name, "type": layer.kind,
         "output shape": _shape_text(layer.shape), "parameters": layer.params}
        for layer in trace_layers(model, input_size)
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    totals = []
    for part in ("encoder", "decoder"):
        count = int(table.loc[table["part"] == part, "parameters"].sum())
        totals.append({"part": part, "layer": f"{part} total", "type": "", "output shape": "",
                       "parameters": count})  # fmt: skip
    totals.append({"part": "", "layer": "total", "type": "", "output shape": "",
                   "parameters": totals[0]["parameters"] + totals[1]["parameters"]})  # fmt: skip
    return pd.concat([table, pd.DataFrame(totals)], ignore_index=True)


# --- drawing ---------------------------------------------------------------------------------


def _box_text(layer: Layer) -> tuple[str, str, str]:
    """(title, shape line, colour key) for one traced layer."""
    m = layer.module
    relu = ", ReLU" if layer.relu else ""
    if isinstance(m, nn.ConvTranspose2d):
        title = (
            f"TConv {m.kernel_size[0]}×{m.kernel_size[1]}, {m.out_channels}, s{m.stride[0]}{relu}"
        )
        return title, _shape_text(layer.shape, "×"), "tconv"
    if isinstance(m, nn.Conv2d):
        title = (
            f"Conv {m.kernel_size[0]}×{m.kernel_size[1]}, {m.out_channels}, s{m.stride[0]}{relu}"
        )
        return title, _shape_text(layer.shape, "×"), "conv"
    if isinstance(m, nn.Flatten):
        return "Flatten", _shape_text(layer.shape, "×"), "dense"
    return f"Dense {m.out_features:,}{relu}", _shape_text(layer.shape, "×"), "dense"


def _draw_box(ax, x, y, w, h, title, sub, colour, params: int | None = None) -> None:
    """A rounded box centred at (x, y) with a bold title and a smaller second line."""
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.004,rounding_size=0.012",
            facecolor=COLOURS[colour], edgecolor="#555555", linewidth=0.8,
        )
    )  # fmt: skip
    ax.text(x, y + h * 0.17, title, ha="center", va="center", fontsize=8.5, weight="bold")
    line = sub + (f"   ({params:,} params)" if params else "")
    ax.text(x, y - h * 0.22, line, ha="center", va="center", fontsize=7.5, color="#333333")


def _arrow(ax, start, end, text: str = "") -> None:
    """An arrow between two points, with an optional label at its middle."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "-|>", "color": "#444444", "lw": 0.9,
                            "shrinkA": 0, "shrinkB": 0})  # fmt: skip
    if text:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        ax.text(mx, my, text, fontsize=7, ha="center", va="bottom", color="#444444")


def draw_architecture(
    config: EndoVAEConfig | None = None, path: str | os.PathLike | None = None
) -> plt.Figure:
    """Draw encoder (down the left), latent sampling (centre) and decoder (up the right)."""
    cfg = config or EndoVAEConfig()
    layers = trace_layers(EndoVAE(cfg))
    enc = [la for la in layers if la.part == "encoder" and not la.name.endswith(("mu", "logvar"))]
    heads = {la.name.split(".")[-1]: la for la in layers if la.name.endswith(("mu", "logvar"))}
    dec = [la for la in layers if la.part == "decoder"]

    n_rows = max(len(enc) + 1, len(dec) + 1)
    fig, ax = plt.subplots(figsize=(10, 0.62 * n_rows + 0.6))
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, n_rows - 0.4)
    ax.axis("off")
    w, h = 0.3, 0.72
    xe, xd, xc = 0.17, 0.83, 0.5

    def row_y(i: int) -> float:
        """y of row i counted from the top."""
        return n_rows - 1 - i

    size = _shape_text((cfg.in_channels, cfg.in_size, cfg.in_size), "×")
    for x, part, members in ((xe, "Encoder", enc + list(heads.values())), (xd, "Decoder", dec)):
        count = sum(la.params for la in members)
        ax.text(x, n_rows - 0.25, f"{part} ({count:,} parameters)", ha="center", fontsize=10,
                weight="bold")  # fmt: skip
    _draw_box(ax, xe, row_y(0), w, h, "Input image", size, "io")
    for i, layer in enumerate(enc, start=1):
        title, sub, colour = _box_text(layer)
        _draw_box(ax, xe, row_y(i), w, h, title, sub, colour, layer.params)
        _arrow(ax, (xe, row_y(i - 1) - h / 2), (xe, row_y(i) + h / 2))

    # latent: mu and log sigma^2 heads -> z = mu + sigma * eps
    bottom = row_y(len(enc))
    xh, xz, wh, wz = xc - 0.09, xc + 0.055, 0.1, 0.16
    y_z = bottom + 0.8
    for y, key, sym in ((bottom, "mu", r"$\mu$"), (bottom + 1.6, "logvar", r"$\log\sigma^2$")):
        _draw_box(ax, xh, y, wh, h, sym, f"Dense {heads[key].shape[0]}", "latent")
        _arrow(ax, (xe + w / 2, bottom), (xh - wh / 2, y))
        _arrow(ax, (xh + wh / 2, y), (xz - wz / 2, y_z))
    _draw_box(ax, xz, y_z, wz, h, r"$z = \mu + \sigma \odot \varepsilon$",
              "reparameterisation", "latent")  # fmt: skip
    _draw_box(ax, xz, y_z + 1.7, wz, h, r"$\varepsilon \sim \mathcal{N}(0, I)$",
              f"{cfg.latent_dim}-d noise", "noise")  # fmt: skip
    _arrow(ax, (xz, y_z + 1.7 - h / 2), (xz, y_z + h / 2))

    # decoder bottom-up, ending with the output image at the top right
    start = n_rows - len(dec) - 1
    for j, layer in enumerate(dec):
        i = n_rows - 1 - j
        title, sub, colour = _box_text(layer)
        if j == 0:
            side = cfg.feature_size
            sub += f" → {_shape_text((cfg.enc_channels[-1], side, side), '×')}"
        if j == len(dec) - 1:
            title += " (logits)"
        _draw_box(ax, xd, row_y(i), w, h, title, sub, colour, layer.params)
        if j:
            _arrow(ax, (xd, row_y(i + 1) + h / 2), (xd, row_y(i) - h / 2))
    _arrow(ax, (xz + wz / 2, y_z), (xd - w / 2, row_y(n_rows - 1)))
    _draw_box(ax, xd, row_y(start), w, h, "Reconstruction (sigmoid)", size, "io")
    _arrow(ax, (xd, row_y(start + 1) + h / 2), (xd, row_y(start) - h / 2))
    fig.tight_layout()
    save_figure(fig, path)
    return fig
