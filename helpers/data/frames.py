"""Kvasir-like frames: a deterministic procedural renderer of one endoscopy frame per call.

Frames come at Kvasir's sizes (helpers.data.synthetic writes them as a Kvasir v1 folder tree). Each
frame has what real endoscopy frames have: pink-red mucosa with low-frequency shading, folds, vessel
texture, specular highlights, a dark lumen, the octagonal black border with burnt-in text on the
left margin and, on some lower-GI frames, the green endoscope-position box. Polyp frames add
raised, shaded, textured polyps (sessile or pedunculated).

Scenes are rendered at a reduced working resolution (smooth fields are cheap there), upsampled
to the frame size, and finished at full size with PIL drawing (border, text, inset).
The same ``(seed, class, index)`` always gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from helpers.core.classes import ALL_CLASSES, POLYP_CLASS
from helpers.data.overlays import draw_green_box, draw_text, octagon_mask

# Kvasir frame sizes (width, height) and how often each is drawn (~70 % are 720x576).
FRAME_SIZES = ((720, 576), (1280, 1024), (1350, 1080), (1920, 1072))
SIZE_WEIGHTS = (0.70, 0.12, 0.08, 0.10)
WORK_HEIGHT = 288  # rows of the working resolution the scene is rendered at
GREEN_BOX_P = 0.4  # share of cecum and polyp frames with the endoscope-position box
_LUT_BINS = 1024


# --- small random fields ------------------------------------------------------------------------
def _smooth(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth random field (about unit std) with `cells` features across the height."""
    cy = max(2, int(round(cells)))
    cx = max(2, int(round(cells * w / h)))
    grid = rng.standard_normal((cy, cx)).astype(np.float32)
    # fine fields look the same bilinear (and resize twice as fast); coarse ones need bicubic
    method = Image.Resampling.BILINEAR if cells > 24 else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(grid).resize((w, h), method))


def _angular_lut(rng: np.random.Generator, max_k: int, decay: float = 1.0) -> np.ndarray:
    """Random periodic function of angle in [-1, 1], tabulated over `_LUT_BINS` bins."""
    t = np.linspace(0, 2 * np.pi, _LUT_BINS, endpoint=False)
    k = np.arange(1, max_k + 1)[:, None]
    amp = rng.standard_normal((max_k, 1)) / k**decay
    phase = rng.uniform(0, 2 * np.pi, (max_k, 1))
    lut = (amp * np.cos(k * t + phase)).sum(0)
    return (lut / (np.abs(lut).max() + 1e-6)).astype(np.float32)


def _angle_index(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Bin index of the angle of (dx, dy) into a `_LUT_BINS` table."""
    theta = np.arctan2(dy, dx)
    return ((theta + np.pi) * (_LUT_BINS / (2 * np.pi))).astype(np.int32) % _LUT_BINS


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at `e0` to 1 at `e1`."""
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def _vessels(rng: np.random.Generator, h: int, w: int, trees: int) -> np.ndarray:
    """Branching vessel trees (random walks that fork and thin out), drawn with PIL, in [0, 1]."""
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    step = h / 30
    stack = [
        (rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 3.0))
        for _ in range(trees)
    ]
    segments = 0
    while stack and segments < 60 * trees:
        x, y, a, width = stack.pop()
        while width > 0.6 and 0 <= x < w and 0 <= y < h and segments < 60 * trees:
            a += rng.normal(0, 0.35)
            nx, ny = x + step * math.cos(a), y + step * math.sin(a)
            draw.line(
                (x, y, nx, ny), fill=int(min(255, 90 * width)), width=max(1, int(round(width)))
            )
            if rng.random() < 0.18:
                stack.append((nx, ny, a + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1), width * 0.7))
            x, y, width, segments = nx, ny, width * 0.96, segments + 1
    img = img.filter(ImageFilter.GaussianBlur(0.7))
    return np.asarray(img, dtype=np.float32) / 255


# --- geometry -----------------------------------------------------------------------------------
@dataclass
class _View:
    """Working-resolution coordinates of one frame, seen from an endoscope."""

    h: int
    w: int
    x: np.ndarray  # (1, w) normalised image coordinates (height spans [-1, 1])
    y: np.ndarray  # (h, 1)
    r: np.ndarray  # (h, w) distance from the lumen centre, after the camera tilt
    ux: np.ndarray  # (h, w) unit vector from the lumen centre, image x
    uy: np.ndarray  # (h, w) unit vector from the lumen centre, image y
    ang: np.ndarray  # (h, w) angle bin around the lumen centre
    cx: float
    cy: float


def _view(rng: np.random.Generator, h: int, w: int, lumen_spread: float) -> _View:
    """Random camera: lumen centre position and an oblique tilt (anisotropic distance)."""
    x = ((np.arange(w, dtype=np.float32) - (w - 1) / 2) / (h / 2))[None, :]
    y = ((np.arange(h, dtype=np.float32) - (h - 1) / 2) / (h / 2))[:, None]
    cx, cy = (float(c) for c in rng.normal(0, lumen_spread, 2).clip(-1.6, 1.6))
    dx, dy = x - cx, y - cy
    phi, squash = rng.uniform(0, np.pi), rng.uniform(0.65, 1.0)
    a = dx * math.cos(phi) + dy * math.sin(phi)
    b = -dx * math.sin(phi) + dy * math.cos(phi)
    r = np.sqrt(a * a + (b * squash) ** 2).astype(np.float32)
    norm = np.sqrt(dx * dx + dy * dy) + 1e-4
    return _View(h, w, x, y, r, dx / norm, dy / norm, _angle_index(dx, dy), float(cx), float(cy))


def _theta(v: _View) -> np.ndarray:
    """Angle around the lumen centre (float32 radians, from the angle bins)."""
    return v.ang.astype(np.float32) * np.float32(2 * np.pi / _LUT_BINS)


def _frame_size(rng: np.random.Generator) -> tuple[int, int]:
    """One of Kvasir's frame sizes, ~70 % 720x576."""
    return FRAME_SIZES[rng.choice(len(FRAME_SIZES), p=SIZE_WEIGHTS)]


def _scene_box(size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) of the octagonal image area inside the black frame."""
    width, height = size
    top = int(round(height * rng.uniform(0.0, 0.02)))
    bottom = height - int(round(height * rng.uniform(0.0, 0.015)))
    scene_w = min(int(round((bottom - top) * rng.uniform(1.12, 1.2))), width - width // 20)
    right = width - int(round(width * rng.uniform(0.03, 0.045)))
    return right - scene_w, top, right, bottom


# --- scenes -------------------------------------------------------------------------------------
@dataclass
class _Scene:
    """Working-resolution fields a scene is made of."""

    albedo: np.ndarray  # (h, w, 3) mucosa colour in [0, 1]
    light: np.ndarray  # (h, w) illumination: dark lumen, lit walls, fold shadows
    relief: np.ndarray  # (h, w) surface height (bumps, rims, polyps) used for shading
    gloss: np.ndarray  # (h, w) extra propensity for specular highlights (crests, polyps)
    polyp: np.ndarray | None = None  # (h, w) polyp mask in [0, 1]


def _colour(
    rng: np.random.Generator, base: tuple[float, float, float], jitter: float
) -> np.ndarray:
    """A colour near `base` (0-255 RGB) as floats in [0, 1]."""
    rgb = np.asarray(base, dtype=np.float32) * (1 + rng.normal(0, jitter, 3))
    return (rgb / 255).clip(0, 1).astype(np.float32)


def _tube_light(rng: np.random.Generator, v: _View, dark: float) -> np.ndarray:
    """Light of a tube seen along its axis: a dark lumen of radius ~`dark`, lit walls around."""
    t = (v.r / (dark * rng.uniform(0.9, 1.2))) ** rng.uniform(1.6, 2.4)
    light = rng.uniform(0.9, 1.05) * (1 - np.exp(-t)) * (0.85 + 0.15 * v.r.clip(0, 1.5))
    return (light * (1 + 0.2 * _smooth(rng, v.h, v.w, 3))).astype(np.float32)


def _glare(rng: np.random.Generator, v: _View, light: np.ndarray) -> np.ndarray:
    """Sometimes a wall very close to the scope: an over-exposed patch near the frame edge."""
    if rng.random() > 0.3:
        return light
    a = rng.uniform(0, 2 * np.pi)
    gx, gy = 1.3 * math.cos(a) * v.w / v.h, 1.1 * math.sin(a)
    d2 = (v.x - gx) ** 2 + (v.y - gy) ** 2
    return light + rng.uniform(0.3, 0.8) * np.exp(-d2 / rng.uniform(0.1, 0.35))


def _mucosa(rng: np.random.Generator, v: _View, base: np.ndarray, vessel: float) -> np.ndarray:
    """Mucosa colour: low-frequency tint, fine grain and a patchy vessel network."""
    tint = 1 + 0.06 * _smooth(rng, v.h, v.w, 4)
    grain = 1 + 0.035 * _smooth(rng, v.h, v.w, v.h / 14) + 0.018 * _smooth(rng, v.h, v.w, v.h / 3)
    albedo = base[None, None, :] * (tint * grain)[..., None]
    if vessel > 0:
        patch = _smoothstep(-0.8, 0.9, _smooth(rng, v.h, v.w, 3))
        lines = _vessels(rng, v.h, v.w, int(rng.integers(4, 12)))
        amount = (vessel * patch * lines).clip(0, 1)[..., None]
        albedo = albedo * (1 - amount * np.float32([0.2, 0.5, 0.45]))
    return albedo


def _wall_relief(rng: np.random.Generator, v: _View, amp: float) -> np.ndarray:
    """Gentle bumps of the mucosa at two scales."""
    return (amp * (_smooth(rng, v.h, v.w, 4) + 0.3 * _smooth(rng, v.h, v.w, 12))).astype(np.float32)


def _haustra(rng: np.random.Generator, v: _View, amp: float) -> tuple[np.ndarray, np.ndarray]:
    """Haustral folds around the lumen, spaced by perspective depth: (light factor, crest gloss).

    Going deeper, each fold's face towards the scope brightens up to its crest; the wall just
    behind the crest is hidden and in shadow.
    """
    depth = 1 / (v.r + 0.05)
    wobble = 0.12 * _smooth(rng, v.h, v.w, 2.5) + 0.12 * _angular_lut(rng, 5)[v.ang]
    frac = (depth * rng.uniform(0.8, 1.5) + wobble) % 1.0
    coverage = _smoothstep(-0.4, 0.5, _angular_lut(rng, 4)[v.ang] + 0.5 * _smooth(rng, v.h, v.w, 2))
    weight = amp * coverage * _smoothstep(0.1, 0.4, v.r)
    crest = np.exp(-(((1 - frac) / 0.25) ** 2))
    shadow = np.exp(-frac / rng.uniform(0.12, 0.25)) * _smoothstep(0.0, 0.04, frac)
    factor = 1 + weight * (0.45 * crest - 0.75 * shadow)
    return factor.astype(np.float32), (weight * crest).astype(np.float32)


def _bump(
    dx: np.ndarray, dy: np.ndarray, rx: float, ry: float, tilt: float, power: float
) -> np.ndarray:
    """Smooth elliptical bump of radii (rx, ry) rotated by `tilt`: (1 - d^2)^power inside."""
    a = (dx * math.cos(tilt) + dy * math.sin(tilt)) / rx
    b = (-dx * math.sin(tilt) + dy * math.cos(tilt)) / ry
    return np.clip(1 - a * a - b * b, 0, 1) ** power


def _colon_base(rng: np.random.Generator) -> np.ndarray:
    """Orange-pink colonic mucosa colour."""
    return _colour(rng, (rng.uniform(220, 245), rng.uniform(112, 138), rng.uniform(78, 100)), 0.04)


def _scene_colon(rng: np.random.Generator, v: _View) -> _Scene:
    """Colon wall: orange-pink mucosa, haustral folds, vessels, a dark lumen."""
    albedo = _mucosa(rng, v, _colon_base(rng), vessel=rng.uniform(0.2, 0.8))
    folds, crest = _haustra(rng, v, amp=rng.uniform(0.5, 0.9))
    light = _glare(rng, v, folds * _tube_light(rng, v, dark=rng.uniform(0.3, 0.6)))
    return _Scene(albedo, light, _wall_relief(rng, v, rng.uniform(0.01, 0.03)), crest)


def _scene_cecum(rng: np.random.Generator, v: _View) -> _Scene:
    """Cecum: a shallow blind pouch with converging folds, the appendiceal orifice and a valve lip."""
    base = _colon_base(rng) * np.float32([1.0, rng.uniform(0.98, 1.04), 1.0])
    albedo = _mucosa(rng, v, base, vessel=rng.uniform(0.5, 1.0))
    folds, crest = _haustra(rng, v, amp=rng.uniform(0.05, 0.25))
    relief = _wall_relief(rng, v, rng.uniform(0.01, 0.03))
    dx, dy = v.x - v.cx, v.y - v.cy
    bend = _smooth(rng, v.h, v.w, 2)
    start = rng.uniform(0, 2 * np.pi)
    for k in range(3):  # triradiate folds meeting at the appendiceal orifice
        a = start + k * 2 * np.pi / 3 + float(rng.normal(0, 0.25))
        along = dx * math.cos(a) + dy * math.sin(a)
        across = -dx * math.sin(a) + dy * math.cos(a) + 0.04 * bend
        width = rng.uniform(0.07, 0.12) * (1 + 0.6 * along.clip(0, None))
        fold = np.exp(-((across / width) ** 2)) * _smoothstep(0.04, 0.3, along)
        relief += rng.uniform(0.03, 0.06) * fold * (0.5 + along.clip(0, 1))
        crest = np.maximum(crest, 0.6 * fold**3)
    tilt = rng.uniform(0, np.pi)  # appendiceal orifice: a dark crescent slit with a raised rim
    ox, oy = dx - float(rng.normal(0, 0.06)), dy - float(rng.normal(0, 0.06))
    bend = 0.25 * (ox * math.sin(tilt) - oy * math.cos(tilt)) ** 2 / 0.01
    slit = _bump(ox, oy + bend * 0.01, rng.uniform(0.06, 0.12), rng.uniform(0.012, 0.03), tilt, 0.7)
    albedo = albedo * (1 - 0.85 * slit)[..., None]
    relief += 0.03 * _bump(ox, oy, 0.2, 0.09, tilt, 2.0)
    a, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 0.85)  # ileocecal valve lip
    lx, ly = dx - dist * math.cos(a), dy - dist * math.sin(a)
    lip = _bump(lx, ly, rng.uniform(0.4, 0.6), rng.uniform(0.18, 0.26), a + np.pi / 2, 1.2)
    relief += rng.uniform(0.06, 0.1) * lip
    albedo = albedo * (1 + lip[..., None] * np.float32([0.03, 0.08, 0.05]))
    floor = rng.uniform(0.35, 0.55)  # a blind end: the centre is near, so not dark
    light = floor + (1 - floor) * _tube_light(rng, v, dark=rng.uniform(0.25, 0.45))
    under = _bump(lx + 0.12 * math.cos(a), ly + 0.12 * math.sin(a), 0.5, 0.14, a + np.pi / 2, 1.0)
    light = light * (1 - 0.3 * under * (1 - lip)) * (1 + 0.25 * lip)
    return _Scene(albedo, _glare(rng, v, folds * light), relief, crest)


def _scene_pylorus(rng: np.random.Generator, v: _View) -> _Scene:
    """Gastric antrum facing the pylorus: paler pink, smooth rugae, a round sphincter opening."""
    base = _colour(rng, (rng.uniform(225, 245), rng.uniform(130, 152), rng.uniform(112, 135)), 0.04)
    albedo = _mucosa(rng, v, base, vessel=rng.uniform(0.0, 0.15))
    hole_r = rng.uniform(0.07, 0.18)
    rr = v.r / (1 + 0.25 * _angular_lut(rng, 4)[v.ang])
    ring_r = hole_r * rng.uniform(1.5, 2.0)
    ring = np.exp(-(((rr - ring_r) / (ring_r * 0.45)) ** 2))  # the raised sphincter rim
    theta = _theta(v)
    creases = np.cos(int(rng.integers(5, 10)) * theta + 1.2 * _smooth(rng, v.h, v.w, 3))
    creases = creases * np.exp(-np.abs(rr - ring_r) / ring_r)
    relief = rng.uniform(0.05, 0.09) * ring + _wall_relief(rng, v, rng.uniform(0.01, 0.025))
    rugae = np.cos(int(rng.integers(3, 6)) * theta + 1.2 * _smooth(rng, v.h, v.w, 2.5))
    rugae = rugae * _smoothstep(ring_r, 3 * ring_r, rr)
    light = rng.uniform(0.85, 1.05) * (0.55 + 0.45 * (1 - np.exp(-((v.r / 0.6) ** 2))))
    tilt = rng.uniform(0, 2 * np.pi)
    light = light * (
        1 + 0.2 * (v.x * math.cos(tilt) + v.y * math.sin(tilt)) + 0.1 * _smooth(rng, v.h, v.w, 2.5)
    )
    light = light * (1 + 0.25 * ring + 0.2 * creases + rng.uniform(0.06, 0.15) * rugae)
    hole = _smoothstep(hole_r * 1.05, hole_r * 0.7, rr)
    light = light * (1 - 0.93 * hole)
    albedo = albedo * (1 - 0.4 * hole[..., None] * np.float32([0.0, 1.0, 1.0]))
    if rng.random() < 0.2:  # a bile-stained patch
        bile = 0.5 * _smoothstep(0.8, 1.6, _smooth(rng, v.h, v.w, 3))[..., None]
        albedo = albedo * (1 - bile) + bile * _colour(rng, (220, 180, 95), 0.05)
    light = _glare(rng, v, light.astype(np.float32))
    return _Scene(albedo, light, relief.astype(np.float32), (0.5 * ring**2).astype(np.float32))


def _scene_z_line(rng: np.random.Generator, v: _View) -> _Scene:
    """Distal oesophagus: pale squamous mucosa meets red columnar mucosa along a ragged line."""
    pale = _colour(rng, (rng.uniform(215, 235), rng.uniform(140, 160), rng.uniform(128, 148)), 0.03)
    red = _colour(rng, (rng.uniform(200, 225), rng.uniform(78, 100), rng.uniform(58, 80)), 0.05)
    tongues = _angular_lut(rng, 14, decay=0.6).clip(0, None) ** 1.5
    edge_r = rng.uniform(0.4, 0.75) * (
        1
        + 0.15 * _angular_lut(rng, 6)[v.ang]
        + 0.3 * tongues[v.ang]
        + 0.05 * _smooth(rng, v.h, v.w, 8)
    )
    columnar = _smoothstep(1.06, 0.95, v.r / edge_r)
    squamous = _mucosa(rng, v, pale, vessel=rng.uniform(0.1, 0.3))
    gastric = (
        _mucosa(rng, v, red, vessel=0.0) * (1 + 0.05 * _smooth(rng, v.h, v.w, v.h / 6))[..., None]
    )
    albedo = squamous * (1 - columnar[..., None]) + gastric * columnar[..., None]
    theta = _theta(v)
    folds = np.cos(int(rng.integers(5, 10)) * theta + 1.2 * _smooth(rng, v.h, v.w, 2.5))
    folds = 1 + rng.uniform(0.06, 0.16) * folds * _smoothstep(0.1, 0.5, v.r)
    relief = _wall_relief(rng, v, rng.uniform(0.01, 0.025))
    light = folds * _tube_light(rng, v, dark=rng.uniform(0.2, 0.32)) * rng.uniform(0.75, 0.9)
    gloss = 0.15 * (1 - columnar)  # the squamous lining is wetter-looking
    return _Scene(albedo, _glare(rng, v, light), relief, gloss.astype(np.float32))


def _polyp_head(
    rng: np.random.Generator, v: _View, px: float, py: float, size: float
) -> np.ndarray:
    """Normalised height (0..1) of a polyp: one dome or merged lobes, sometimes on a stalk."""
    lobes = 1 if rng.random() < 0.6 else int(rng.integers(2, 5))
    power = rng.uniform(0.5, 1.0)
    flat = np.ones((v.h, v.w), np.float32)
    for _ in range(lobes):
        lx = px + float(rng.normal(0, 0.35 * size)) * (lobes > 1)
        ly = py + float(rng.normal(0, 0.35 * size)) * (lobes > 1)
        rad = size * (rng.uniform(0.55, 0.8) if lobes > 1 else 1.0)
        dx, dy = v.x - lx, v.y - ly
        wobble = 1 + 0.08 * _angular_lut(rng, 5)[_angle_index(dx, dy)]
        dome = _bump(
            dx * wobble,
            dy * wobble,
            rad,
            rad * rng.uniform(0.75, 1.0),
            rng.uniform(0, np.pi),
            power,
        )
        flat *= 1 - dome
    head = 1 - flat  # lobes merge smoothly
    if rng.random() < 0.2:  # pedunculated: the head sits on a stalk down to the wall
        ang = rng.uniform(0, 2 * np.pi)
        bx, by = px + 1.25 * size * math.cos(ang), py + 1.25 * size * math.sin(ang)
        sx, sy = px - bx, py - by
        t = (((v.x - bx) * sx + (v.y - by) * sy) / (sx * sx + sy * sy)).clip(0, 1)
        dist2 = (v.x - bx - t * sx) ** 2 + (v.y - by - t * sy) ** 2
        stalk = np.clip(1 - dist2 / (0.4 * size) ** 2, 0, 1) ** 0.5 * (0.25 + 0.35 * t)
        head = np.maximum(0.3 * _smoothstep(0.0, 0.25, head) + 0.7 * head, stalk)
    return head.astype(np.float32)


def _add_polyps(rng: np.random.Generator, v: _View, scene: _Scene) -> None:
    """Raise one or two shaded, textured polyps (sessile or pedunculated) on the wall."""
    heads, places = [], []
    for n in range(1 if rng.random() < 0.8 else 2):  # a second polyp is smaller
        size = rng.uniform(0.22, 0.55) * (0.6 if n else 1.0)
        px = float(rng.uniform(-0.65, 0.65) * v.w / v.h)
        py = float(rng.uniform(-0.55, 0.55))
        heads.append(size * rng.uniform(0.7, 1.0) * _polyp_head(rng, v, px, py, size))
        places.append((px, py, size))
    relief = np.max(heads, axis=0) if len(heads) > 1 else heads[0]
    mask = _smoothstep(0.0, 0.012, relief)
    # contact shadow around the base, stronger on the far (lumen) side of the main polyp
    px, py, size = places[0]
    dx, dy = v.cx - px, v.cy - py
    shift = 0.15 * size * v.h / 2 / (np.hypot(dx, dy) + 1e-6)
    soft = Image.fromarray((mask * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.12 * size * v.h)
    )
    soft = np.asarray(soft, dtype=np.float32) / 255
    rolled = np.roll(soft, (int(round(shift * dy)), int(round(shift * dx))), axis=(0, 1))
    shadow = (0.5 * soft + rolled).clip(0, 1) * (1 - mask)
    own = float((scene.light * mask).sum() / (mask.sum() + 1e-6))  # the polyp is nearer: lit evenly
    polyp_light = (0.45 * own + rng.uniform(0.45, 0.6)) * (1 + 0.08 * _smooth(rng, v.h, v.w, 3))
    scene.light = scene.light * (1 - 0.55 * shadow) * (1 - mask) + polyp_light * mask
    scene.relief = scene.relief * (1 - mask) + relief
    tone = [(1.0, 0.82, 0.82), (1.02, 1.1, 1.12), (1.0, 0.96, 0.92), (0.95, 0.72, 0.75)][
        rng.integers(0, 4)
    ]
    colour = (
        scene.albedo.mean(axis=(0, 1))
        * np.float32(tone)
        * (1 + rng.normal(0, 0.03, 3)).astype(np.float32)
    )
    cells = (1 - np.abs(_smooth(rng, v.h, v.w, v.h / 3))).clip(0, 1)
    spots = _smoothstep(0.6, 1.6, _smooth(rng, v.h, v.w, v.h / 10))
    tex = colour[None, None, :] * (1 - rng.uniform(0.05, 0.14) * cells**3)[..., None]
    tex = tex * (1 - 0.3 * spots[..., None] * np.float32([0.05, 0.6, 0.5]))
    m = mask[..., None]
    scene.albedo = scene.albedo * (1 - m) + tex * m
    dome_top = np.tanh(_convexity(relief, v.h / 2, step=3) / 8)
    scene.gloss = scene.gloss * (1 - mask) + (0.2 + 0.5 * dome_top) * mask
    scene.polyp = mask


# --- rendering ----------------------------------------------------------------------------------
def _shade(v: _View, relief: np.ndarray, strength: float, tilt: float) -> np.ndarray:
    """Shading from the relief: faces turned away from the lumen bright, steep flanks dark."""
    gy, gx = np.gradient(relief)
    scale = v.h / 2
    gx, gy = gx * scale, gy * scale
    lx = 0.7 * v.ux + 0.3 * math.cos(tilt)
    ly = 0.7 * v.uy + 0.3 * math.sin(tilt)
    towards = np.tanh(-(gx * lx + gy * ly))
    facing = (1 + gx * gx + gy * gy) ** -0.75  # 1 where the surface faces the scope
    return ((1 + strength * towards) * (0.3 + 0.7 * facing)).astype(np.float32)


def _convexity(relief: np.ndarray, scale: float, step: int = 2) -> np.ndarray:
    """Positive where the relief is a crest (minus the Laplacian over `step` pixels), normalised."""
    s = step
    lap = np.zeros_like(relief)
    lap[s:-s, s:-s] = (
        relief[: -2 * s, s:-s]
        + relief[2 * s :, s:-s]
        + relief[s:-s, : -2 * s]
        + relief[s:-s, 2 * s :]
    ) - 4 * relief[s:-s, s:-s]
    return (-lap * (scale / s) ** 2).clip(0, None)


def _highlights(rng: np.random.Generator, v: _View, scene: _Scene, light: np.ndarray) -> np.ndarray:
    """Specular highlights: small specks, clustered on lit, wet crests and polyps."""
    fine = _smooth(rng, v.h, v.w, v.h / rng.uniform(3, 5))
    wet = _smoothstep(-0.3, 1.0, _smooth(rng, v.h, v.w, 2.5))
    score = (0.8 * fine + 0.6 * scene.gloss + 0.5 * light.clip(0, 1.3)) * (0.4 + 0.6 * wet)
    thr = np.quantile(score[::4, ::4], 1 - rng.uniform(0.003, 0.012))
    return _smoothstep(thr, thr + 0.08, score)


def _soft_clip(x: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Identity below `knee`, then a smooth roll-off to 1 (a camera's highlight shoulder)."""
    top = knee + (1 - knee) * np.tanh((x - knee) / (1 - knee))
    return np.where(x < knee, x, top)


def _compose(rng: np.random.Generator, v: _View, scene: _Scene) -> np.ndarray:
    """Light, shade and gloss a scene into a float RGB image in [0, 1]."""
    shade = _shade(v, scene.relief, rng.uniform(0.3, 0.7), rng.uniform(0, 2 * np.pi))
    # the scope's light is a spot: it falls off away from a point near the frame centre
    sx, sy = (float(c) for c in rng.normal(0, 0.3, 2))
    spot = np.exp(-((v.x - sx) ** 2 + (v.y - sy) ** 2) / rng.uniform(1.0, 3.0))
    exposure = rng.uniform(0.95, 1.25) * (rng.uniform(0.55, 0.8) + rng.uniform(0.2, 0.45) * spot)
    light = (scene.light * shade * (1 + 0.25 * scene.gloss) * exposure).clip(0, 3)
    # darker regions go redder: green and blue fall off faster than red
    gamma = np.float32([1.0, rng.uniform(1.12, 1.3), rng.uniform(1.25, 1.45)])
    rgb = _soft_clip(scene.albedo * (light[..., None] ** gamma))
    spec = _highlights(rng, v, scene, light)[..., None]
    rgb = rgb * (1 - spec) + spec * np.float32([1.0, 0.98, 0.97])
    return rgb.clip(0, 1)


def _render_scene(
    cls: str, rng: np.random.Generator, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """Working-resolution uint8 RGB scene of class `cls` and its polyp mask."""
    if cls == "normal-cecum":
        scene = _scene_cecum(rng, v := _view(rng, h, w, lumen_spread=0.3))
    elif cls == "normal-pylorus":
        scene = _scene_pylorus(rng, v := _view(rng, h, w, lumen_spread=0.25))
    elif cls == "normal-z-line":
        scene = _scene_z_line(rng, v := _view(rng, h, w, lumen_spread=0.25))
    else:
        scene = _scene_colon(rng, v := _view(rng, h, w, lumen_spread=0.7))
        _add_polyps(rng, v, scene)
    rgb = _compose(rng, v, scene)
    mask = scene.polyp if scene.polyp is not None else np.zeros((h, w), np.float32)
    return (rgb * 255 + 0.5).astype(np.uint8), mask


# --- frames -------------------------------------------------------------------------------------
def _class_rng(cls: str, index: int, seed: int) -> np.random.Generator:
    """The random generator of one frame, derived from (seed, class, index)."""
    if cls not in ALL_CLASSES:
        raise ValueError(f"cls must be one of {ALL_CLASSES}, got {cls!r}")
    if int(index) < 0:
        raise ValueError(f"index must be >= 0, got {index!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed!r}")
    return np.random.default_rng([int(seed), ALL_CLASSES.index(cls), int(index)])


def _render_frame(cls: str, index: int, seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """Frame of class `cls` and its polyp mask at frame size (bool; empty for healthy frames)."""
    rng = _class_rng(cls, index, seed)
    size = _frame_size(rng)
    box = _scene_box(size, rng)
    bw, bh = box[2] - box[0], box[3] - box[1]
    work_w = max(16, round(WORK_HEIGHT * bw / bh))
    scene, mask = _render_scene(cls, rng, WORK_HEIGHT, work_w)
    img = Image.fromarray(scene)
    if rng.random() < 0.4:  # some frames are out of focus or moving
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.3)))
    canvas = Image.new("RGB", size, (0, 0, 0))
    canvas.paste(img.resize((bw, bh), Image.Resampling.BICUBIC), box[:2])
    octagon_mask(canvas, box, int(bh * rng.uniform(0.14, 0.19)))
    draw_text(canvas, rng, box)
    if cls in ("normal-cecum", POLYP_CLASS) and rng.random() < GREEN_BOX_P:
        draw_green_box(canvas, rng, box)
    full_mask = np.zeros(size[::-1], bool)
    if mask.any():
        small = Image.fromarray((mask * 255).astype(np.uint8)).resize(
            (bw, bh), Image.Resampling.BILINEAR
        )
        full_mask[box[1] : box[3], box[0] : box[2]] = np.asarray(small) > 127
    return canvas, full_mask


def generate_frame(cls: str, index: int, seed: int = 0) -> Image.Image:
    """One deterministic Kvasir-like RGB frame of class `cls` (a name from ALL_CLASSES)."""
    return _render_frame(cls, index, seed)[0]
