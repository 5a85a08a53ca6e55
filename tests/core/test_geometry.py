import pytest

from fundusexpert_plugin.core import geometry as g


def test_grid999_is_floor_of_thousandths():
    # 62.9 / 160 * 1000 = 393.1 -> 393 (floor, not round)
    assert g.to_grid999(62.9, 160) == 393
    assert g.to_grid999(0, 160) == 0


def test_grid999_clips_right_edge_to_999():
    # x == W would be 1000 on swift's norm1000 grid; the paper's grid stops at 999
    assert g.to_grid999(160, 160) == 999


def test_box_px_to_grid_matches_hand_values():
    # 1072 x 712 image, optic disc of sample 0003: (166.25, 239.5, 316.0, 407.0)
    # 166.25/1072*1000 = 155.08 -> 155; 239.5/712*1000 = 336.37 -> 336
    # 316/1072*1000 = 294.78 -> 294;   407/712*1000 = 571.62 -> 571
    assert g.box_px_to_grid((166.25, 239.5, 316.0, 407.0), 1072, 712) == (155, 336, 294, 571)


@pytest.mark.parametrize('width,height', [(1072, 712), (4288, 2848), (160, 120)])
def test_grid_round_trip_within_one_grid_unit(width, height):
    box = (0.0, 1.5, width * 0.37, height)
    back = g.box_grid_to_px(g.box_px_to_grid(box, width, height), width, height)
    for v, b, size in zip(box, back, (width, height, width, height)):
        assert abs(v - b) <= size / 1000


def test_resized_round_trip_within_one_resized_pixel():
    box = (166.25, 239.5, 316.0, 407.0)
    resized = g.box_px_to_resized(box, 1072, 712, 280, 196)
    # 166.25*280/1072 = 43.42 -> 43; 239.5*196/712 = 65.93 -> 66; 316*280/1072 = 82.54 -> 83; 407*196/712=112.04->112
    assert resized == (43, 66, 83, 112)
    back = g.box_resized_to_px(resized, 1072, 712, 280, 196)
    assert abs(back[0] - box[0]) <= 1072 / 280 and abs(back[3] - box[3]) <= 712 / 196


def test_iou_hand_computed():
    # intersection 5x5 = 25; union 100 + 100 - 25 = 175
    assert g.iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert g.iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert g.iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_distance_point_to_box():
    assert g.distance_point_to_box((5, 5), (0, 0, 10, 10)) == 0.0
    assert g.distance_point_to_box((13, 14), (0, 0, 10, 10)) == pytest.approx(5.0)  # 3-4-5


@pytest.mark.parametrize('box,message', [
    ((10, 10, 5, 20), 'inverted or zero-area'),
    ((10, 10, 10, 20), 'inverted or zero-area'),
    ((-1, 0, 5, 5), 'outside the image'),
    ((0, 0, 101, 5), 'outside the image'),
    (('a', 0, 1, 1), 'expected 4'),
    ((0, 0, 1), 'expected 4'),
])
def test_check_box_px_rejects_bad_boxes(box, message):
    with pytest.raises(ValueError, match=message):
        g.check_box_px(box, 100, 50, where='f.jsonl:3: findings[0].box_px')


def test_laterality_from_disc_side():
    assert g.laterality_from_disc((100, 100, 200, 200), 1000) == 'left'   # disc on the image's left
    assert g.laterality_from_disc((800, 100, 900, 200), 1000) == 'right'


def test_one_to_one_matching_lets_one_prediction_satisfy_one_ground_truth_box():
    gt = [(0, 0, 10, 10), (1, 0, 11, 10)]            # two overlapping ground-truth boxes
    right, wrong = (0, 0, 10, 10), (50, 50, 60, 60)
    # IoU(right, gt0) = 1.0; IoU(right, gt1) = 90 / 110 = 0.818...; the prediction goes to gt0 only
    assert g.match_one_to_one(gt, [right, wrong]) == [(0, 0, 1.0)]
    # two predictions: gt1 takes the second one (IoU 1.0), gt0 the first (1.0), in input order on ties
    assert g.match_one_to_one(gt, [(1, 0, 11, 10), (0, 0, 10, 10)]) == [(0, 1, 1.0), (1, 0, 1.0)]
    # the threshold is inclusive: IoU of (0,0,10,10) and (0,0,10,20) is exactly 0.5
    assert g.match_one_to_one([(0, 0, 10, 10)], [(0, 0, 10, 20)]) == [(0, 0, 0.5)]
    assert g.match_one_to_one([(0, 0, 10, 10)], [(0, 0, 10, 20)], iou_threshold=0.51) == []


def test_fovea_box_dd_from_the_disc_fovea_distance_on_the_bundled_real_photos():
    """The sample's photos with an official IDRiD fovea point and a CODRAS disc box: the DD that the
    disc-fovea distance gives (what an IDRiD disc-centre point allows) is within 0.75-1.35 of the box's."""
    import json

    from fundusexpert_plugin.core.geometry import disc_diameter_px, fovea_box, fovea_dd_px
    from fundusexpert_plugin.sample import ANNOTATIONS
    rows = [json.loads(line) for line in ANNOTATIONS.read_text().splitlines() if 'fovea_xy' in line]
    assert len(rows) == 6
    for row in rows:
        disc = next(a['bbox_xyxy'] for a in row['annotations'] if a['label'] == 'optic_disc')
        centre = ((disc[0] + disc[2]) / 2, (disc[1] + disc[3]) / 2)
        from_box = fovea_dd_px(row['width'], disc_box_px=disc)
        from_points = fovea_dd_px(row['width'], disc_centre_px=centre, fovea_px=row['fovea_xy'])
        assert from_box == disc_diameter_px(disc) and 0.75 <= from_points / from_box <= 1.35, row['codras_id']
        x1, y1, x2, y2 = fovea_box(*row['fovea_xy'], row['width'], row['height'], from_box)
        assert (x2 - x1, y2 - y1) == pytest.approx((from_box, from_box))     # 1 DD, far from the edges
    assert fovea_dd_px(1000) == 130.0                                        # nothing known: 0.13 x width


def test_grid_value_1000_decodes_to_the_far_edge_by_both_rules():
    from fundusexpert_plugin.core.geometry import box_grid_to_px, from_grid999
    assert from_grid999(1000, 1072, 'centre') == 1072.0 == from_grid999(1000, 1072, 'edge')
    assert from_grid999(999, 1072, 'centre') == pytest.approx(999.5 * 1072 / 1000)   # 1071.464, inside
    assert box_grid_to_px([0, 0, 1000, 1000], 1072, 712) == pytest.approx((0.536, 0.356, 1072.0, 712.0))
