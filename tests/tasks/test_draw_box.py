"""Marked copies: the outline drawn in place equals PIL.ImageDraw's rectangle, and the photo is untouched."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fundusexpert_plugin.core.images import LoadedImage
from fundusexpert_plugin.tasks.render import draw_box


@pytest.mark.parametrize('size, box', [
    ((120, 90), (10.2, 20.7, 60.4, 70.1)),     # inside
    ((120, 90), (-4.0, -3.0, 30.0, 25.0)),      # over the top-left corner
    ((120, 90), (100.0, 70.0, 130.0, 95.0)),    # over the bottom-right corner
    ((640, 480), (0.0, 0.0, 640.0, 480.0)),     # the whole image, 2 px outline (480 / 200 rounds to 2)
])
def test_outline_equals_pil_rectangle_and_source_pixels_are_restored(tmp_path: Path, size, box):
    w, h = size
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    before = rgb.copy()
    out, scaled = draw_box(LoadedImage(tmp_path / 'p.png', rgb, '', (w, h), []), box, tmp_path / 'm.png')
    expected = Image.fromarray(before)
    ImageDraw.Draw(expected).rectangle([round(v) for v in box], outline=(255, 0, 0), width=max(2, round(min(w, h) / 200)))
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(expected))
    assert np.array_equal(rgb, before)
    assert scaled == list(box)


def test_a_box_thinner_than_the_outline_is_filled_and_nothing_outside_it_changes(tmp_path: Path):
    # 700 / 200 rounds to a 4 px outline; the box is 2 px wide (columns 300-301, rows 200-260 inclusive).
    rgb = np.zeros((700, 1000, 3), dtype=np.uint8)
    out, _ = draw_box(LoadedImage(tmp_path / 'p.png', rgb, '', (1000, 700), []), (300.0, 200.0, 301.0, 260.0),
                      tmp_path / 'm.png')
    red = np.asarray(Image.open(out))[:, :, 0] == 255
    assert red[200:261, 300:302].all()
    assert red.sum() == 61 * 2
