import pytest

from fundusexpert_plugin.render import position as pos


def test_fovea_prior_is_2_5_dd_temporal_and_0_25_dd_inferior():
    # disc centre (150, 150), DD = 100 px; left eye: temporal is +x
    assert pos.estimate_fovea((100, 100, 200, 200), 'left', 1000) == (400.0, 175.0)
    # right eye: temporal is -x
    assert pos.estimate_fovea((800, 100, 900, 200), 'right', 1000) == (600.0, 175.0)


@pytest.mark.parametrize('dx,dy,hour', [(0, -1, 12), (1, 0, 3), (0, 1, 6), (-1, 0, 9), (1, -1, 2), (-1, -1, 10)])
def test_clock_hours_observer_view(dx, dy, hour):
    # (1, -1) is 45 deg clockwise from 12 -> 1.5 h, rounds to 2; (-1, -1) is 315 deg -> 10.5 -> 10 (half to even)
    assert pos.clock_hour(dx, dy) == hour


def test_locate_superotemporal_lesion_left_eye():
    frame = pos.make_frame((100, 100, 200, 200), 1000, laterality='left')
    p = pos.locate((500, 60, 540, 100), frame, 1000)
    # centre (520, 80) vs fovea (400, 175): dx = +120 (temporal for a left eye), dy = -95 (superior)
    assert p.quadrant == 'superotemporal'
    # atan2(120, 95) = 51.6 deg -> 1.72 h -> 2 o'clock
    assert p.clock_hour == 2
    # nearest box point (500, 100): hypot(100, 75) = 125 px = 1.25 DD
    assert p.distance_to_fovea_dd == pytest.approx(1.25)
    assert p.macular_involvement is False
    assert p.side_of_disc == 'temporal'


def test_locate_lesion_over_fovea_right_eye():
    frame = pos.make_frame((800, 100, 900, 200), 1000, laterality='right')
    p = pos.locate((560, 160, 600, 200), frame, 1000)
    # centre (580, 180) vs fovea (600, 175): dx = -20 (temporal for a right eye), dy = +5 (inferior)
    assert p.quadrant == 'inferotemporal'
    assert p.distance_to_fovea_dd == 0.0 and p.macular_involvement is True
    assert p.clock_hour == 9  # atan2(-20, -5) = 256 deg -> 8.53 h -> 9


def test_unknown_laterality_uses_image_sides():
    frame = pos.make_frame((100, 100, 200, 200), 1000)
    assert frame.fovea_px == (400.0, 175.0)  # fovea assumed towards the image centre
    assert pos.locate((500, 60, 540, 100), frame, 1000).quadrant == 'upper_right'


def test_annotated_fovea_is_used():
    frame = pos.make_frame((100, 100, 200, 200), 1000, laterality='left', fovea_px=(420, 160))
    assert frame.fovea_source == 'annotation' and frame.fovea_px == (420.0, 160.0)
