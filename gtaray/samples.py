"""A picture of what a trial learned, saved by each trial at its end:

    one row per image pair: source | G(source) | target | G(target) | prediction | ground truth

under a band naming the trial (experiment, variant, seed) and each column.
G's columns are grey for variants without G; predictions and labels are in the Cityscapes
palette. Written to `<results.dir>/<name>/samples/<run>.png` (`gtaray report --plots` copies
them). No Ray here.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from gtaray.config import Experiment
from gtaray.data.labels import colorize
from gtaray.data.splits import Splits
from gtaray.evaluate import resize_prediction
from gtaray.method import lsd
from gtaray.storage import Store

TITLES = ("source", "G(source)", "target", "G(target)", "prediction", "ground truth")


def _uint8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def sample_grid(
    nets: lsd.Nets, splits: Splits, exp: Experiment, device: torch.device, pairs: int = 2
) -> np.ndarray:
    """The grid as a uint8 HxWx3 array (validation images: never trained on)."""
    f, c = lsd.unwrap(nets.F), lsd.unwrap(nets.C)
    g = lsd.unwrap(nets.G) if nets.G is not None else None
    for _, net in nets.items():
        net.eval()
    k, rows = exp.data.num_classes, []
    for i in range(min(pairs, len(splits.source_val), len(splits.target_val))):
        src, tgt = splits.source_val[i], splits.target_val[i]
        x = torch.stack([src["image"], tgt["image"]]).to(device)
        features = f(x)
        size = x.shape[2:]
        pred = c(*features, size).argmax(1)[1]
        made = g(*features, size) if g is not None else torch.full((2, 3, *size), 0.5)
        label = resize_prediction(tgt["label"], tuple(size)).numpy()
        rows.append(
            np.concatenate(
                [
                    _uint8(src["rgb"]),
                    _uint8(made[0]),
                    _uint8(tgt["rgb"]),
                    _uint8(made[1]),
                    colorize(pred.cpu().numpy(), k),
                    colorize(label, k),
                ],
                axis=1,
            )
        )
    return np.concatenate(rows, axis=0)


def titled(grid: np.ndarray, caption: str) -> Image.Image:
    """The grid under a band that names the trial and each column, upscaled (nearest, by a
    whole factor) until every column title fits over its column."""
    font = ImageFont.load_default()
    column = grid.shape[1] // len(TITLES)
    scale = max(1, math.ceil((max(font.getlength(t) for t in TITLES) + 8) / column))
    image = Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST
    )
    line = font.getbbox("Ag")[3] + 4
    out = Image.new("RGB", (image.width, image.height + 2 * line), "white")
    draw = ImageDraw.Draw(out)
    draw.text((4, 2), caption, fill="black", font=font)
    for i, title in enumerate(TITLES):
        x = i * column * scale + (column * scale - font.getlength(title)) / 2
        draw.text((x, line + 2), title, fill="black", font=font)
    out.paste(image, (0, 2 * line))
    return out


def save_grid(
    nets: lsd.Nets, splits: Splits, exp: Experiment, device: torch.device, run: str
) -> str:
    """Write the trial's grid, titled, as a PNG into its experiment's samples/; return where."""
    buffer = io.BytesIO()
    caption = f"{exp.name}: {exp.method.variant}, seed {exp.train.seed}"
    titled(sample_grid(nets, splits, exp, device), caption).save(buffer, format="PNG")
    store = Store.at(exp.results.dir)
    key = f"{exp.name}/samples/{run}.png"
    store.write_atomic(key, buffer.getvalue())
    return store.uri(key)
