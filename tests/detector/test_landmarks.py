"""The training-free optic-disc / fovea locator on real photographs of the bundled sample."""
import json
import warnings

import numpy as np
import pytest

from fundusexpert_plugin.core.geometry import box_center, laterality_from_disc
from fundusexpert_plugin.core.images import load_image
from fundusexpert_plugin.detector.landmarks import locate_landmarks
from fundusexpert_plugin.sample import ANNOTATIONS, SAMPLE_DIR

SAMPLE = {json.loads(line)['codras_id']: json.loads(line) for line in ANNOTATIONS.read_text().splitlines()}
#: Bounds in pixels of the 1072x712 sample (x4 at 4288x2848): disc centre against the CODRAS disc-box
#: centre, 12 px = 0.09 DD; fovea against the official IDRiD fovea centre (scaled), 10 px = 0.07 DD.
DISC_BOUND_PX, FOVEA_BOUND_PX = 12.0, 10.0


def _disc_box(row):
    return next(a['bbox_xyxy'] for a in row['annotations'] if a['label'] == 'optic_disc')


@pytest.mark.parametrize('codras_id', ['0001', '0004', '0015'])
def test_disc_and_fovea_within_bounds_on_real_photos(codras_id):
    row = SAMPLE[codras_id]
    marks = locate_landmarks(load_image(SAMPLE_DIR / row['image']).rgb)
    cx, cy = box_center(_disc_box(row))
    assert np.hypot(marks.disc_center_px[0] - cx, marks.disc_center_px[1] - cy) <= DISC_BOUND_PX
    fx, fy = row['fovea_xy']
    assert np.hypot(marks.fovea_px[0] - fx, marks.fovea_px[1] - fy) <= FOVEA_BOUND_PX
    assert marks.fovea_from_disc_px == marks.disc_center_px


def test_laterality_from_located_disc_agrees_with_annotated_disc_on_every_sample_photo():
    for row in SAMPLE.values():
        marks = locate_landmarks(load_image(SAMPLE_DIR / row['image']).rgb)
        located = laterality_from_disc(marks.disc_box_px, row['width'])
        assert located == laterality_from_disc(_disc_box(row), row['width']), row['codras_id']


def test_fovea_is_searched_from_a_given_disc_centre():
    row = SAMPLE['0015']
    rgb = load_image(SAMPLE_DIR / row['image']).rgb
    own = locate_landmarks(rgb)
    given = locate_landmarks(rgb, disc_center_px=box_center(_disc_box(row)))
    assert given.fovea_from_disc_px == pytest.approx(box_center(_disc_box(row)), abs=0.01)
    assert given.disc_center_px == own.disc_center_px          # the disc is still located on its own


def dithered(step: int = 3) -> np.ndarray:
    """A 1072x712 RGB photo whose field of view is only thin bright diagonal lines (1-bit dithering of a
    dark photograph): wide enough to look at, with no solid region."""
    yy, xx = np.mgrid[0:712, 0:1072]
    on = ((xx - 536) ** 2 + (yy - 356) ** 2 < 340 ** 2) & ((xx + yy) % step == 0)
    return np.repeat((on * 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize('rgb, message', [(np.zeros((712, 1072, 3), np.uint8), 'field of view 0 px'),
                                          (np.full((80, 100, 3), 120, np.uint8), 'below the 256 px'),
                                          (np.zeros((50, 50), np.uint8), 'expected an RGB image'),
                                          (dithered(), 'no solid field of view'),
                                          (np.zeros((712, 1072, 3), np.float32), 'expected an np.uint8 RGB array')])
def test_unusable_images_raise(rgb, message):
    with warnings.catch_warnings():
        warnings.simplefilter('error')                         # and no NumPy warning on the way
        with pytest.raises(ValueError, match=message):
            locate_landmarks(rgb)


@pytest.mark.parametrize('centre', [(99999, 99999), (float('nan'), 5), (-1, 10)])
def test_a_given_disc_centre_must_lie_in_the_image(centre):
    from fundusexpert_plugin.detector.landmarks import locate_landmarks
    with pytest.raises(ValueError, match=r'disc_center_px = .*: not a finite point inside the 1072x712 px image'):
        locate_landmarks(np.zeros((712, 1072, 3), np.uint8), disc_center_px=centre)
