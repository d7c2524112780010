"""The sample grid's titles: the trial named, each column titled, the pixels kept."""

from __future__ import annotations

import numpy as np
from PIL import Image

from gtaray.samples import TITLES, titled


def test_the_titled_grid_keeps_the_pixels_and_titles_every_column():
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 256, (2 * 32, 6 * 64, 3), dtype=np.uint8)
    image = np.asarray(titled(grid, "smoke: full, seed 3"))
    scale = image.shape[1] // grid.shape[1]
    assert scale >= 1 and image.shape[1] == grid.shape[1] * scale
    band = image.shape[0] - grid.shape[0] * scale
    # The grid under the band, only enlarged (nearest): no pixel changed.
    expected = Image.fromarray(grid).resize((image.shape[1], grid.shape[0] * scale), 0)
    assert np.array_equal(image[band:], np.asarray(expected))
    # Ink in the caption line and over each of the six columns, white elsewhere in the band.
    column = image.shape[1] // len(TITLES)
    line = band // 2
    assert (image[:line, :column] < 128).any()  # the caption starts at the left
    for i in range(len(TITLES)):
        assert (image[line:band, i * column : (i + 1) * column] < 128).any(), TITLES[i]
    assert titled(grid[:, :192], "x").size[0] // 192 > scale  # narrower columns: enlarged more
