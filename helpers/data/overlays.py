"""Kvasir's full-size overlays on a rendered frame: the burnt-in text of the left margin, the
green endoscope-position box, and the octagonal black corners of the field of view."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


def _font() -> ImageFont.ImageFont:
    """Pillow's built-in bitmap font (the same on every machine)."""
    loader = getattr(ImageFont, "load_default_imagefont", None)
    return loader() if loader else ImageFont.load_default()


def _overlay_lines(rng: np.random.Generator) -> list[str]:
    """Burnt-in text of the left margin: patient fields, date, times, counters ("#" = a box)."""
    day, month, year = rng.integers(1, 29), rng.integers(1, 13), rng.integers(2010, 2017)
    clock = f"{rng.integers(7, 19):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}"
    lines = [
        "ID:",
        "Name:",
        "",
        "Sex:   Age:",
        "D.O.B.:",
        f"{day:02d}/{month:02d}/{year}",
        clock,
        "",
    ]
    lines.append(f"00:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}")
    if rng.random() < 0.6:
        lines += [f"CVP:{rng.integers(1, 10)}", f"GN    bcA{rng.integers(1, 6)}"]
    return [*lines, "", "###/###", f"{rng.integers(1, 8)}/7"]


def _text_layer(lines: list[str], scale: int) -> Image.Image:
    """White-on-black mask of `lines` in the bitmap font, scaled up by `scale` (blocky, as real)."""
    step = 12
    layer = Image.new("L", (96, step * len(lines) + 4), 0)
    draw = ImageDraw.Draw(layer)
    font = _font()
    for i, line in enumerate(lines):
        x, y = 1, 2 + i * step
        for ch in line:
            if ch == "#":  # the counter boxes
                draw.rectangle((x, y + 1, x + 4, y + 6), fill=235)
            else:
                draw.text((x, y), ch, fill=235, font=font)
            x += 6
    layer = layer.resize((layer.width * scale, layer.height * scale), Image.Resampling.NEAREST)
    return layer.filter(ImageFilter.BoxBlur(0.4 * scale))


def draw_text(
    canvas: Image.Image, rng: np.random.Generator, box: tuple[int, int, int, int]
) -> None:
    """Burn the text into the left margin (over the scene's edge where the margin is narrow)."""
    layer = _text_layer(_overlay_lines(rng), max(1, round(canvas.height / 576)))
    if box[0] > layer.width + 20:
        x = box[0] - layer.width - 10
    else:
        x = box[0] + int(canvas.width * rng.uniform(0.02, 0.03))
    y = int(canvas.height * rng.uniform(0.12, 0.16))
    canvas.paste((232, 232, 232), (x, y), layer)


def draw_green_box(
    canvas: Image.Image, rng: np.random.Generator, box: tuple[int, int, int, int]
) -> None:
    """The endoscope-position inset: a green box in the bottom-left corner with the scope path."""
    x0, _, x1, y1 = box
    bw = int((x1 - x0) * rng.uniform(0.27, 0.32))
    bh = int(bw * rng.uniform(0.78, 0.84))
    left, bottom = x0 + int(0.01 * (x1 - x0)), y1 - int(0.04 * canvas.height)
    top = bottom - bh
    draw = ImageDraw.Draw(canvas)
    green = tuple(int(c) for c in np.clip(np.array([20, 128, 106]) + rng.normal(0, 4, 3), 0, 255))
    draw.rectangle((left, top, left + bw, bottom), fill=green)
    scale = max(1, round(canvas.height / 576))
    label = _text_layer([f"Fh:A{rng.integers(1, 4)} Cm:1"], scale)
    canvas.paste((235, 235, 235), (left + 12 * scale, top + 2 * scale), label)
    t = np.linspace(0, 1, 24)  # the scope: a curved path from the bottom edge into the box
    sx = left + bw * (0.45 + 0.15 * np.sin(t * rng.uniform(2, 6) + rng.uniform(0, 6)) * t)
    sy = bottom - bh * (0.05 + t * rng.uniform(0.3, 0.75))
    draw.line(
        [(float(a), float(b)) for a, b in zip(sx, sy, strict=True)],
        fill=(60, 60, 60),
        width=3 * scale,
    )
    mx, my = left + int(bw * 0.15), bottom - int(bh * 0.15)
    draw.rectangle((mx, my, mx + 6 * scale, my + 6 * scale), fill=(120, 200, 230))


def octagon_mask(canvas: Image.Image, box: tuple[int, int, int, int], cut: int) -> None:
    """Black out the four corners of the scene box (the octagonal field of view)."""
    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(canvas)
    for cx, cy, sx, sy in ((x0, y0, 1, 1), (x1, y0, -1, 1), (x0, y1, 1, -1), (x1, y1, -1, -1)):
        draw.polygon([(cx, cy), (cx + sx * cut, cy), (cx, cy + sy * cut)], fill=(0, 0, 0))
