"""Built-in synthetic street scenes: one layout, rendered as a "source" or a "target" domain.

A scene is a street seen from a car, drawn by `gtaray.data.scenes` (label maps in Cityscapes
train ids); this module renders it. The layout comes from a numpy Generator seeded by (seed,
split, index) alone, so all styles share one label distribution; the style only decides the
pixels:
  source  game-like: flat per-class colours, small per-instance variation, hard edges
  target  the same world through another camera, a global and class-agnostic shift (the kind
          GTA5 -> Cityscapes has): the source's colours, then texture and lighting everywhere, a
          fixed hue rotation with desaturation (jittered per image), white balance, lower
          contrast, lens blur, sensor noise and a tone curve. A pixel's class does not change how
          it is transformed, so aligning the domains can undo the shift.
  hard    a conditional shift: another palette, partly permuted (road coloured like the source's
          sidewalk and sidewalk like its road, autumn trees, grey cars, blue signs), per-class
          texture, lane marks, windows, paving tiles, a cast shadow, blur, noise and a tone curve.
          Colour alone misleads here, and marginal alignment has no reason to fix that: UDA is
          not expected to help (`data.target_style: hard`).

Usage:
    from gtaray.data.synthetic import SyntheticScenes, render
    image, label = render(0, seed=1, style="target", width=256, height=128)  # uint8 HxWx3, HxW
    ds = SyntheticScenes("source", "train", length=1000, width=256, height=128, seed=1)
    sample = ds[0]  # {"image", "rgb", "label"} tensors, see gtaray.data.transforms
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from gtaray.data.labels import from_19
from gtaray.data.scenes import (
    BUILDING,
    CAR,
    CLASSES_PRESENT,
    FENCE,
    LIGHT,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    VEG,
    WALL,
    Layout,
    draw_layout,
)
from gtaray.data.transforms import to_compact, to_sample

__all__ = ["CLASSES_PRESENT", "SyntheticScenes", "example_batch", "render", "target_style"]

SPLITS = {"train": 0, "val": 1, "test": 2}
STYLES = {"source": 0, "hard": 1, "target": 2}


def _table(values: dict[int, Any], fill: Any = 0.0) -> np.ndarray:
    """Per-class lookup table indexed by train id (19 rows)."""
    first = np.asarray(next(iter(values.values())), np.float32)
    out = np.full((19, *first.shape), fill, np.float32)
    for k, v in values.items():
        out[k] = v
    return out


# Source: flat, saturated "game" colours.  Hard: many classes take colours the source gives to
# OTHER classes (road ~ source sidewalk, sidewalk ~ source road, terrain ~ source building, grey
# cars ~ source road/pole, yellow lights ~ source signs), so colour alone misleads.
SOURCE_PALETTE = _table({
    ROAD: (80, 80, 88), SIDEWALK: (175, 165, 150), BUILDING: (150, 110, 80),
    WALL: (125, 125, 150), FENCE: (160, 130, 95), POLE: (110, 110, 115), LIGHT: (35, 35, 35),
    SIGN: (225, 205, 25), VEG: (55, 125, 45), TERRAIN: (130, 170, 70), SKY: (105, 165, 235),
    PERSON: (205, 55, 65), CAR: (35, 50, 160),
})  # fmt: skip
TARGET_PALETTE = _table({
    ROAD: (168, 160, 150), SIDEWALK: (100, 78, 84), BUILDING: (135, 115, 100),
    WALL: (150, 150, 140), FENCE: (130, 100, 70), POLE: (90, 95, 100), LIGHT: (55, 55, 45),
    SIGN: (40, 80, 190), VEG: (195, 95, 40), TERRAIN: (140, 108, 70), SKY: (165, 185, 212),
    PERSON: (50, 52, 70), CAR: (120, 124, 122),
})  # fmt: skip
# Some hard-style instances drift towards a second colour: green-to-red autumn trees, a few cars
# and clothes with colour (so not every class is re-coloured; a realistic, partial shift).
TARGET_ALT = TARGET_PALETTE.copy()
TARGET_ALT[[VEG, CAR, PERSON]] = [(95, 125, 40), (45, 55, 125), (140, 50, 60)]
# Per-instance variation: colour jitter (std, 0-255) and brightness spread (+-fraction).
SOURCE_JITTER = _table({BUILDING: 14.0, CAR: 18.0, PERSON: 18.0, VEG: 6.0}, fill=5.0)
TARGET_JITTER = _table({BUILDING: 14.0, CAR: 10.0, PERSON: 14.0, VEG: 14.0}, fill=8.0)
TARGET_BRIGHT = _table({CAR: 0.55, BUILDING: 0.2, PERSON: 0.3}, fill=0.1)
# Hard-style texture amplitudes: per-pixel grain and blotchy (coarse) noise, as a fraction.
FINE_AMP = _table({ROAD: 0.10, SIDEWALK: 0.08, TERRAIN: 0.18, VEG: 0.22, SKY: 0.01}, fill=0.05)
COARSE_AMP = _table({ROAD: 0.08, TERRAIN: 0.2, VEG: 0.3, SKY: 0.06, BUILDING: 0.1}, fill=0.04)


def _upsample(small: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling as two small matrix products (much cheaper than ndimage.zoom)."""

    def hat(n_out: int, n_in: int) -> np.ndarray:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        return np.maximum(0, 1 - np.abs(pos[:, None] - np.arange(n_in))).astype(np.float32)

    return hat(h, small.shape[0]) @ small @ hat(w, small.shape[1]).T


_BANK: list[np.ndarray] = []


def _grain(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Per-pixel N(0,1) noise (HxWx3): a random crop of a fixed bank, wrapped when the image is
    larger (drawing fresh normals every image would cost more than the rest of the rendering)."""
    if not _BANK:
        _BANK.append(np.random.default_rng(12345).standard_normal((257, 509, 3), np.float32))
    bank = _BANK[0]
    (bh, bw), (r0, c0) = bank.shape[:2], rng.integers(0, 509, 2)
    if h <= bh and w <= bw:  # the common case: a view, no copy
        r0, c0 = r0 % (bh - h + 1), c0 % (bw - w + 1)
        return bank[r0 : r0 + h, c0 : c0 + w]
    bank = np.take(bank, np.arange(r0, r0 + h), axis=0, mode="wrap")
    return np.take(bank, np.arange(c0, c0 + w), axis=1, mode="wrap")


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an HxWxC image; small sigmas as a separable 3-tap kernel (cheaper)."""
    if sigma > 0.7:
        return ndimage.gaussian_filter(img, (sigma, sigma, 0), truncate=2.5)
    a = np.float32(sigma * sigma / 2)  # [a, 1-2a, a] has variance 2a
    for axis in (0, 1):
        x = np.moveaxis(img, axis, 0)
        out = x * (1 - 2 * a)
        out[1:] += a * x[:-1]
        out[:-1] += a * x[1:]
        out[0] += a * x[0]  # replicate the border
        out[-1] += a * x[-1]
        img = np.moveaxis(out, 0, axis)
    return img


def _source(lay: Layout, rng: np.random.Generator) -> np.ndarray:
    c = lay.inst_cls
    col = SOURCE_PALETTE[c] + rng.standard_normal((len(c), 3)) * SOURCE_JITTER[c][:, None]
    return np.clip(col, 0, 255).astype(np.uint8)[lay.inst]  # flat colours, hard edges


# The target camera (global style): hue rotation about the grey axis (degrees), saturation,
# contrast and their per-image spread.
TARGET_HUE, HUE_SPREAD = 70.0, 12.0
TARGET_SATURATION, TARGET_CONTRAST = 0.65, 0.75
TARGET_GRAIN, TARGET_BLOTCH = 0.06, 0.12


def colour_matrix(hue_degrees: float, saturation: float) -> np.ndarray:
    """3x3 RGB transform: rotate hue about the grey axis, then scale saturation (grey is kept)."""
    t = np.deg2rad(hue_degrees)
    k = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.cos(t) * np.eye(3) + np.sin(t) * cross + (1 - np.cos(t)) * np.outer(k, k)
    desat = saturation * np.eye(3) + (1 - saturation) / 3
    return (desat @ rot).astype(np.float32)


def _camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lens blur, sensor noise, then a tone curve (gamma + S-curve) as a lookup table -> uint8."""
    h, w = img.shape[:2]
    img = _blur(img, rng.uniform(0.45, 0.7) * max(w / 256, 0.4))
    img += _grain(rng, h, w) * np.float32(rng.uniform(0.01, 0.03))
    t = np.linspace(0, 1, 1024) ** rng.uniform(0.8, 1.25)
    k = rng.uniform(0.2, 0.6)
    lut = (((1 - k) * t + k * t * t * (3 - 2 * t)) * 255 + 0.5).astype(np.uint8)
    img *= 1023
    return np.take(lut, np.clip(img, 0, 1023, out=img).astype(np.int32))


def _lighting(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth brightness gradient over the frame (HxW)."""
    xx = np.arange(w, dtype=np.float32)
    yy = np.arange(h, dtype=np.float32)[:, None]
    a, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.4)
    return (1 + amp * np.cos(a) * (xx / w - 0.5)) + amp * np.sin(a) * (yy / h - 0.5)


def _target(lay: Layout, rng: np.random.Generator) -> np.ndarray:
    """The source's world under a global, class-agnostic appearance shift."""
    h, w = lay.label.shape
    img = _source(lay, rng).astype(np.float32) / 255
    field = 1 + TARGET_GRAIN * _grain(rng, h, w)[..., 0]
    field += TARGET_BLOTCH * _upsample(rng.standard_normal((6, 12)), h, w)
    img *= (field * _lighting(rng, h, w))[..., None]
    hue = TARGET_HUE + rng.uniform(-HUE_SPREAD, HUE_SPREAD)
    mix = colour_matrix(hue, TARGET_SATURATION * rng.uniform(0.85, 1.15))
    img = img @ (mix.T * rng.uniform(0.9, 1.1, 3).astype(np.float32))  # and white balance
    mean = img.mean((0, 1), keepdims=True)
    img = mean + np.float32(TARGET_CONTRAST * rng.uniform(0.9, 1.1)) * (img - mean)
    return _camera(img, rng)


def _hard(lay: Layout, rng: np.random.Generator) -> np.ndarray:
    c, lab = lay.inst_cls, lay.label
    h, w = lab.shape
    wb = rng.uniform(0.9, 1.1, 3)  # white balance, folded into the colours
    bright = 1 + TARGET_BRIGHT[c] * rng.uniform(-1, 1, len(c))
    jitter = rng.standard_normal((len(c), 3)) * TARGET_JITTER[c][:, None]
    base = TARGET_PALETTE[c] + rng.random((len(c), 1)) ** 2 * (TARGET_ALT[c] - TARGET_PALETTE[c])
    col = (base * bright[:, None] + jitter) * wb / 255
    img = np.take(col.astype(np.float32), lay.inst, axis=0)
    xx = np.arange(w, dtype=np.float32)
    yy = np.arange(h, dtype=np.float32)[:, None]
    z = h / np.maximum(lay.gs, 1e-3)  # distance along the street
    near = lay.gs > 0.04 * h
    dash = near & (lab == ROAD)  # a dashed centre line
    dash &= (np.abs(lay.gx - lay.lane) < 0.06) & ((z / 3) % 1 < 0.5)
    img[dash] = np.float32(0.9) * wb
    # One brightness field (HxW) gathers texture, structure, lighting and shadow, so that the
    # 3-channel image is touched once.  Texture: grain plus blotches, per-class strength.
    field = 1 + np.take(FINE_AMP, lab) * _grain(rng, h, w)[..., 0]
    field += np.take(COARSE_AMP, lab) * _upsample(rng.standard_normal((6, 12)), h, w)
    # Structure the source never shows: paving tiles, windows, fence slats.
    walk = np.nonzero(near & (lab == SIDEWALK))
    tiles = ((lay.gx[walk] * 2.5) % 1 < 0.12) | ((z[walk[0], 0] * 1.2) % 1 < 0.12)
    field[walk[0][tiles], walk[1][tiles]] *= 0.7
    pw, ph = max(3.0, w / rng.uniform(25, 50)), max(3.0, h / rng.uniform(10, 20))
    win = ((xx / pw + rng.random()) % 1 < 0.45) & ((yy / ph) % 1 < 0.5)
    field[win & (lab == BUILDING)] *= 0.5
    field[((xx / max(2.0, w / 90)) % 1 < 0.5) & (lab == FENCE)] *= 0.6
    sky = lab == SKY  # overcast: brighter towards the horizon
    field[sky] *= np.broadcast_to(0.8 + 0.3 * yy / lay.horizon, (h, w))[sky]
    # Lighting: a smooth gradient over the frame and a building shadow across part of the street.
    field *= _lighting(rng, h, w)
    lo, width, dark = rng.uniform(-4, 1), rng.uniform(1, 3), rng.uniform(0.5, 0.7)
    ground = (lab <= SIDEWALK) | (lab == TERRAIN)
    field[ground & (lay.gs > 0) & (lay.gx > lo) & (lay.gx < lo + width)] *= dark
    img *= field[..., None]
    veg = np.nonzero(lab == VEG)  # autumn leaves vary between red, orange and yellow
    img[veg[0], veg[1], 1] *= 1 + 0.35 * _upsample(rng.standard_normal((10, 20)), h, w)[veg]
    return _camera(img, rng)


def _check(style: str, split: str) -> None:
    if style not in STYLES or split not in SPLITS:
        raise ValueError(f"style must be in {list(STYLES)}, split in {list(SPLITS)}")


def render(
    index: int, seed: int, style: str, width: int, height: int, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Scene `index` of `split`: (uint8 HxWx3 image, uint8 HxW train-id label map).

    The layout depends on (seed, split, index) only; the style adds its own randomness.
    """
    _check(style, split)
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8x8, got {width}x{height}")
    key = [int(seed), SPLITS[split], int(index)]  # a split is its own stream: no shared scenes
    lay = draw_layout(np.random.default_rng(key), int(width), int(height))
    style_rng = np.random.default_rng([*key, 1 + STYLES[style]])
    image = {"source": _source, "target": _target, "hard": _hard}[style](lay, style_rng)
    return image, lay.label


class SyntheticScenes(Dataset):
    """`length` scenes of one split in one style, as {"image", "rgb", "label"} samples, labelled
    in `num_classes` (19, or the SYNTHIA protocols' 16 / 13: their dropped classes are 255)."""

    def __init__(
        self,
        style: str,
        split: str,
        length: int,
        width: int,
        height: int,
        seed: int = 0,
        num_classes: int = 19,
        input_format: str = "rgb_imagenet",  # F's input (gtaray.data.transforms)
    ) -> None:
        _check(style, split)
        self.style, self.split, self.length = style, split, int(length)
        self.width, self.height, self.seed = int(width), int(height), int(seed)
        self.labels = from_19(num_classes)
        self.input_format = input_format

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return to_sample(*self._arrays(index), self.input_format)

    def compact(self, index: int, epoch: int = 0) -> dict[str, torch.Tensor]:
        """Sample `index` as uint8 rgb8 and label8 (the same in every epoch)."""
        return to_compact(*self._arrays(index))

    def _arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        image, label = render(index, self.seed, self.style, self.width, self.height, self.split)
        return image, self.labels[label]


def target_style(exp: Any) -> str:
    """The target domain's style for an experiment (`data.target_style`: global or hard)."""
    return "hard" if getattr(exp.data, "target_style", "global") == "hard" else "target"


def example_batch(exp: Any) -> dict[str, torch.Tensor]:
    """One training batch at the experiment's size: src_/tgt_ image, rgb and label.

    Source and target scenes are different layouts (unpaired, like GTA5 vs Cityscapes): the
    target half takes the indices after the source half.
    """
    w, h, b, seed = exp.data.width, exp.data.height, exp.train.batch_size, exp.train.seed
    labels = from_19(getattr(exp.data, "num_classes", 19))
    fmt = getattr(getattr(exp, "model", None), "input_format", "rgb_imagenet")
    out: dict[str, torch.Tensor] = {}
    for prefix, style, start in (("src", "source", 0), ("tgt", target_style(exp), b)):
        rendered = [render(start + i, seed, style, w, h) for i in range(b)]
        samples = [to_sample(image, labels[label], fmt) for image, label in rendered]
        for key in ("image", "rgb", "label"):
            out[f"{prefix}_{key}"] = torch.stack([s[key] for s in samples])
    return out
