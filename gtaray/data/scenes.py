"""Street-scene layouts of the built-in data: label maps drawn in perspective (no pixels).

A scene is a street seen from a car: sky above a horizon, the road as a perspective trapezoid,
sidewalks and grass strips beside it, facades of random heights, a far skyline, trees, walls and
fences, poles carrying signs, lights or lamps, and cars and people scaled by their depth and drawn
far-to-near so that near things occlude far ones. Labels are Cityscapes train ids. The styles in
`gtaray.data.synthetic` turn a layout into an image.

    lay = draw_layout(np.random.default_rng(0), w=256, h=128)   # lay.label: HxW uint8
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEG, TERRAIN, SKY = range(11)
PERSON, CAR = 11, 13
CLASSES_PRESENT: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13)


@dataclass
class Layout:
    """A drawn scene: labels, instances (id -> class) and the ground coordinates of each pixel."""

    label: np.ndarray  # HxW uint8 train ids
    inst: np.ndarray  # HxW int32 instance ids
    inst_cls: np.ndarray  # class of each instance id
    gx: np.ndarray  # lateral ground coordinate (camera heights) of each pixel below the horizon
    gs: np.ndarray  # Hx1 depth scale s = y - horizon in pixels (1/distance); <= 0 above it
    horizon: float
    lane: float  # lateral position of the centre line


class _Canvas:
    """Label and instance maps that shapes paint over (painter's algorithm = occlusion)."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.label = np.full((h, w), SKY, np.uint8)
        self.inst = np.zeros((h, w), np.int32)
        self.cls = [SKY]
        self.xx = np.arange(w, dtype=np.float32) + 0.5  # pixel centres
        self.yy = (np.arange(h, dtype=np.float32) + 0.5)[:, None]

    def new(self, cls: int) -> int:
        self.cls.append(cls)
        return len(self.cls) - 1

    def mask(self, m: np.ndarray, cls: int | np.ndarray, inst: int | np.ndarray) -> None:
        np.copyto(self.label, cls, casting="unsafe", where=m)
        np.copyto(self.inst, inst, casting="unsafe", where=m)

    def _span(self, a: float, b: float, n: int) -> tuple[int, int]:
        if b - a < 1.0:  # keep thin things (poles, far legs) at least one pixel wide
            a, b = (a + b) / 2 - 0.5, (a + b) / 2 + 0.5
        return max(int(np.ceil(a - 0.5)), 0), min(int(np.ceil(b - 0.5)), n)

    def rect(self, x0: float, x1: float, y0: float, y1: float, inst: int) -> None:
        c0, c1 = self._span(x0, x1, self.w)
        r0, r1 = self._span(y0, y1, self.h)
        if c0 < c1 and r0 < r1:
            self.label[r0:r1, c0:c1] = self.cls[inst]
            self.inst[r0:r1, c0:c1] = inst

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, inst: int) -> None:
        rx, ry = max(rx, 0.5), max(ry, 0.5)
        c0, c1 = self._span(cx - rx, cx + rx, self.w)
        r0, r1 = self._span(cy - ry, cy + ry, self.h)
        if c0 >= c1 or r0 >= r1:
            return
        m = ((self.xx[c0:c1] - cx) / rx) ** 2 + ((self.yy[r0:r1] - cy) / ry) ** 2 <= 1.0
        self.label[r0:r1, c0:c1][m] = self.cls[inst]
        self.inst[r0:r1, c0:c1][m] = inst


def _facades(cv: _Canvas, rng: np.random.Generator, xv: float, yh: float, xb: float) -> None:
    """One side's row of facades standing on the line X = xb, cut into segments along depth.

    A column x sees the row at depth scale s = (x - xv) / xb; a thing of height k camera heights
    spans y in [yh - (k - 1) s, yh + s] there, so heights shrink towards the vanishing point.
    """
    cuts, kinds, heights, insts = [], [], [], []
    b = 4.0 * cv.h
    while b > 0.01 * cv.h:  # geometric cuts: near buildings are wide, far ones narrow
        b *= rng.uniform(0.45, 0.8)
        r = rng.random()
        cls = BUILDING if r < 0.68 else VEG if r < 0.82 else WALL if r < 0.89 else FENCE
        cls = cls if rng.random() > 0.12 else SKY  # an open gap: sky and grass show through
        k = {BUILDING: rng.uniform(2.0, 8.0), VEG: rng.uniform(1.8, 4.0), SKY: 0.0}
        cuts.append(b)
        kinds.append(cls)
        heights.append(k.get(cls, rng.uniform(0.4, 1.0)))
        insts.append(cv.new(cls))
    s = (cv.xx - xv) / xb
    seg = np.clip(np.searchsorted(-np.asarray(cuts), -s), 0, len(cuts) - 1)
    k = np.asarray(heights, np.float32)[seg]
    cls = np.asarray(kinds)[seg]
    if VEG in kinds:  # a bumpy tree line instead of a flat roof
        k = k + np.where(cls == VEG, 0.5 * np.abs(np.sin(cv.xx / cv.w * 60)), 0.0)
    m = (s > 0) & (cls != SKY) & (cv.yy >= yh - (k - 1) * s) & (cv.yy < yh + s)
    cv.mask(m, cls, np.asarray(insts)[seg])


def draw_layout(rng: np.random.Generator, w: int, h: int) -> Layout:
    """Draw a scene's label map; every draw is relative to the image size (same scene any size)."""
    cv = _Canvas(h, w)
    yh, xv = h * rng.uniform(0.36, 0.5), w * rng.uniform(0.35, 0.65)
    gs = cv.yy - yh
    gx = (cv.xx - xv) / np.maximum(gs, 1e-3)  # x - xv = X * s on the ground plane
    below = gs > 0
    xl, xr = -rng.uniform(1.0, 2.6), rng.uniform(1.0, 2.6)  # road edges
    swl, swr = rng.uniform(0.4, 1.6, 2)  # sidewalk widths
    strip = [rng.uniform(0.3, 2.0) if rng.random() < 0.5 else 0.0 for _ in range(2)]
    strip_cls = [TERRAIN if rng.random() < 0.7 else SIDEWALK for _ in range(2)]
    xbl, xbr = xl - swl - strip[0] - 0.01, xr + swr + strip[1] + 0.01  # facade lines

    cv.mask(below, TERRAIN, cv.new(TERRAIN))  # beyond the facades (seen through gaps)
    cv.mask(below & (gx > xbl) & (gx < xl - swl), strip_cls[0], cv.new(strip_cls[0]))
    cv.mask(below & (gx < xbr) & (gx > xr + swr), strip_cls[1], cv.new(strip_cls[1]))
    cv.mask(below & (gx >= xl - swl) & (gx < xl), SIDEWALK, cv.new(SIDEWALK))
    cv.mask(below & (gx <= xr + swr) & (gx > xr), SIDEWALK, cv.new(SIDEWALK))
    cv.mask(below & (gx >= xl) & (gx <= xr), ROAD, cv.new(ROAD))

    # Far skyline at the end of the street: blocks of random height sitting on the horizon.
    n = rng.integers(3, 12)
    cuts = np.sort(rng.uniform(0, w, n))
    tall = np.where(rng.random(n + 1) < 0.3, 0.0, rng.uniform(0.01, 0.1, n + 1)) * h
    sky_cls = np.where(rng.random(n + 1) < 0.25, VEG, BUILDING)
    seg = np.searchsorted(cuts, cv.xx)
    ids = np.array([cv.new(int(c)) for c in sky_cls])
    cv.mask((cv.yy >= yh - tall[seg]) & (cv.yy < yh + 0.01 * h), sky_cls[seg], ids[seg])
    _facades(cv, rng, xv, yh, xbl)
    _facades(cv, rng, xv, yh, xbr)

    # Things on the street, as (depth scale s, kind, lateral X); sorted far-to-near below.
    smax = h - yh
    things: list[tuple[float, str, float]] = []

    def depth(near: float = 1.1) -> float:  # biased to far; cars stay a few metres ahead
        return smax * rng.uniform(0.12, near) ** 1.4

    def side() -> tuple[float, float, float, float]:  # sign, sidewalk edge and widths
        if rng.random() < 0.5:
            return -1.0, xl - swl, swl, strip[0]
        return 1.0, xr + swr, swr, strip[1]

    for _ in range(rng.integers(0, 7)):
        lanes = (xl + 0.7, xr - 0.7)
        x = rng.uniform(*lanes) if rng.random() < 0.7 else lanes[int(rng.integers(2))]
        things.append((depth(0.75), "car", x))
    for _ in range(rng.integers(0, 9)):  # on a sidewalk, or now and then crossing the road
        sg, edge, sw, _ = side()
        x = edge - sg * sw * rng.uniform(0.1, 0.9) if rng.random() < 0.9 else rng.uniform(xl, xr)
        things.append((depth(), "person", x))
    for _ in range(rng.integers(0, 7)):  # at the kerb
        things.append((depth(), "pole", xl - 0.15 if rng.random() < 0.5 else xr + 0.15))
    for _ in range(rng.integers(0, 6)):  # on the grass strip, or the sidewalk's outer part
        sg, edge, _, st = side()
        things.append((depth(), "tree", edge + sg * rng.uniform(-0.3, max(st - 0.1, -0.1))))
    for _ in range(rng.integers(0, 4)):
        sg, edge, _, st = side()
        if st > 0.3:
            things.append((depth(), "bush", edge + sg * rng.uniform(0.2, st - 0.1)))

    for s, kind, x in sorted(things):
        cx, yb = xv + x * s, yh + s
        if kind == "car":
            i, cw, ch = cv.new(CAR), 1.25 * s * rng.uniform(0.9, 1.1), s * rng.uniform(0.9, 1.1)
            cv.rect(cx - cw / 2, cx + cw / 2, yb - 0.62 * ch, yb - 0.1 * ch, i)  # body
            cv.rect(cx - 0.38 * cw, cx + 0.38 * cw, yb - ch, yb - 0.6 * ch, i)  # cabin
            for dx in (-0.5, 0.32):  # wheels
                cv.rect(cx + dx * cw, cx + (dx + 0.18) * cw, yb - 0.15 * ch, yb, i)
        elif kind == "person":
            i, hp = cv.new(PERSON), 1.15 * s * rng.uniform(0.85, 1.1)
            cv.ellipse(cx, yb - 0.9 * hp, 0.08 * hp, 0.1 * hp, i)
            cv.rect(cx - 0.13 * hp, cx + 0.13 * hp, yb - 0.81 * hp, yb - 0.45 * hp, i)
            cv.rect(cx - 0.11 * hp, cx - 0.01 * hp, yb - 0.46 * hp, yb, i)
            cv.rect(cx + 0.01 * hp, cx + 0.11 * hp, yb - 0.46 * hp, yb, i)
        elif kind == "pole":
            hp, r = s * rng.uniform(2.5, 4.0), rng.random()
            cv.rect(cx - 0.04 * s, cx + 0.04 * s, yb - hp, yb, cv.new(POLE))
            top = yb - hp
            if r < 0.45:
                i, a = cv.new(SIGN), 0.25 * s
                if rng.random() < 0.5:
                    cv.rect(cx - a, cx + a, top, top + 2 * a, i)
                else:
                    cv.ellipse(cx, top + a, a, a, i)
            elif r < 0.75:
                cv.rect(cx - 0.14 * s, cx + 0.14 * s, top, top + 0.65 * s, cv.new(LIGHT))
            else:  # a lamp arm reaching over the road
                d = 0.7 * s * (1 if x < 0 else -1)
                cv.rect(min(cx, cx + d), max(cx, cx + d), top, top + 0.06 * s, cv.new(POLE))
        elif kind == "tree":
            i, ht = cv.new(VEG), s * rng.uniform(1.2, 2.2)
            cv.rect(cx - 0.06 * s, cx + 0.06 * s, yb - ht, yb, i)  # trunk (vegetation too)
            for _ in range(rng.integers(2, 5)):
                r = s * rng.uniform(0.45, 1.0)
                dx, dy = rng.uniform(-0.6, 0.6, 2) * s
                cv.ellipse(cx + dx, yb - ht - 0.3 * r + dy, r, 0.85 * r, i)
        else:  # bush
            cv.ellipse(cx, yb - 0.25 * s, 0.6 * s, 0.35 * s, cv.new(VEG))
    return Layout(cv.label, cv.inst, np.asarray(cv.cls), gx, gs, yh, (xl + xr) / 2)
