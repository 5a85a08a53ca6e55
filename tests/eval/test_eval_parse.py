"""Box parsing: every convention, round trips pixels -> text -> pixels, malformed text."""
import random

import pytest

from fundusexpert_plugin.core import geometry
from fundusexpert_plugin.eval.parse import (LabeledBox, TextBox, box_fault, box_faults, boxes_to_px, canonical_label,
                                            find_boxes, parse_boxes, qwen_resized_size)

W, H = 4288, 2848            # IDRiD image size, pixels
RW, RH = 1288, 854           # an arbitrary Qwen-resized size (multiples of 28 are not needed here)


def _random_boxes(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x1, y1 = rng.uniform(0, W - 50), rng.uniform(0, H - 50)
        out.append((x1, y1, rng.uniform(x1 + 10, W), rng.uniform(y1 + 10, H)))
    return out


def _close(a, b, tol_x, tol_y):
    return all(abs(p - q) <= t for p, q, t in zip(a, b, (tol_x, tol_y, tol_x, tol_y)))


def test_internvl_round_trip_within_one_grid_unit():
    boxes = _random_boxes(20)
    # several boxes in one <box> tag, as the paper writes them
    grids = [geometry.box_px_to_grid(b, W, H) for b in boxes]
    text = '<ref>Optic disc</ref><box>[' + ', '.join(f'[{g[0]}, {g[1]}, {g[2]}, {g[3]}]' for g in grids) + ']</box>'
    parsed = parse_boxes(text, W, H)
    assert len(parsed) == 20 and {p.label for p in parsed} == {'optic_disc'}
    for box, p in zip(boxes, parsed):
        # one grid unit = W/1000 px in x, H/1000 px in y
        assert _close(box, p.box_px, W / 1000, H / 1000)


def test_qwen_round_trip_within_one_resized_pixel():
    boxes = _random_boxes(20, seed=1)
    text = ''.join('<|object_ref_start|>hard exudates<|object_ref_end|><|box_start|>({},{}),({},{})<|box_end|>'.format(
        *geometry.box_px_to_resized(b, W, H, RW, RH)) for b in boxes)
    parsed = parse_boxes(text, W, H, resized_size=(RW, RH))
    assert [p.label for p in parsed] == ['hard_exudates'] * 20
    for box, p in zip(boxes, parsed):
        # one resized pixel = W/RW original px in x (rounding error is at most half of it)
        assert _close(box, p.box_px, W / RW, H / RH)


def test_json_round_trip_in_fence_within_one_resized_pixel():
    boxes = _random_boxes(5, seed=2)
    items = ', '.join('{"bbox_2d": [%d, %d, %d, %d], "label": "microaneurysms"}' % geometry.box_px_to_resized(
        b, W, H, RW, RH) for b in boxes)
    text = f'Here they are:\n```json\n[{items}]\n```'
    parsed = parse_boxes(text, W, H, resized_size=(RW, RH))
    assert len(parsed) == 5
    for box, p in zip(boxes, parsed):
        assert p.label == 'microaneurysms' and _close(box, p.box_px, W / RW, H / RH)


def test_grid_value_maps_to_the_cell_centre():
    # grid 162 on a 1000-px axis is the cell [162, 163) px; its centre is 162.5
    assert parse_boxes('<ref>OD</ref><box>[[162, 388, 312, 545]]</box>', 1000, 1000) == [
        LabeledBox('optic_disc', (162.5, 388.5, 312.5, 545.5))]


def test_qwen_grid_space_override_for_qwen2_and_qwen3_templates():
    # (179,268),(536,714) on the 0-1000 grid of a 112x112 image -> about (20, 30, 60, 80) px
    text = '<|box_start|>(179,268),(536,714)<|box_end|>'
    (box,) = parse_boxes(text, 112, 112, spaces={'qwen': 'grid'})
    assert _close(box.box_px, (20, 30, 60, 80), 0.2, 0.2)


def test_labels_are_canonical_ids_and_unknown_labels_stay_raw():
    assert canonical_label('Retinal hard exudates') == 'hard_exudates'
    assert canonical_label('视盘') == 'optic_disc'
    assert canonical_label(' laser scar ') == 'laser scar'


def test_bare_demo_answer_is_read_on_the_grid_without_label():
    (box,) = find_boxes('[[162, 388, 312, 545]]')
    assert box.convention == 'bare' and box.raw_label == '' and box.coords == (162, 388, 312, 545)


def test_inverted_corners_are_kept_as_written_and_marked_malformed():
    (box,) = parse_boxes('<ref>cup</ref><box>[[500, 600, 100, 200]]</box>', 1000, 1000)
    assert box.box_px == (500.5, 600.5, 100.5, 200.5) and box.fault == 'inverted' and box.malformed
    # only y inverted is inverted too
    (box,) = parse_boxes('<ref>cup</ref><box>[[100, 600, 500, 200]]</box>', 1000, 1000)
    assert box.fault == 'inverted'


def test_grid_values_above_1000_or_below_0_are_out_of_range_and_not_clipped():
    # y2 = 1200 on the grid of a 4288 x 2848 image: (1200 + 0.5) * 2848 / 1000 = 3419.024 px, past the image
    (box,) = parse_boxes('<ref>视盘</ref><box>[[145, 327, 257, 1200]]</box>', W, H)
    assert box.fault == 'out_of_range' and box.box_px[3] == pytest.approx(3419.024)
    (box,) = parse_boxes('<ref>OD</ref><box>[[-3, 10, 20, 30]]</box>', W, H)
    assert box.fault == 'out_of_range'
    # 999 is the paper's largest value; 1000 (ms-swift norm1000 at the far edge) is accepted
    assert [b.fault for b in parse_boxes('<box>[[0, 0, 999, 999]]</box> <box>[[0, 0, 1000, 1000]]</box>', W, H)] == \
        ['', '']
    # an empty box (x1 == x2) is well formed
    assert parse_boxes('<box>[[10, 10, 10, 20]]</box>', W, H)[0].fault == ''


def test_resized_and_pixel_boxes_are_checked_against_their_own_extent():
    # Qwen: (0,0),(252,168) fills a 252 x 168 resized image; 253 is one pixel past it
    text = '<|box_start|>(0,0),(252,168)<|box_end|><|box_start|>(0,0),(253,168)<|box_end|>'
    assert [b.fault for b in parse_boxes(text, 1072, 712, resized_size=(252, 168))] == ['', 'out_of_range']
    # 'px' space: the original image size is the extent
    text = '[{"bbox_2d": [0, 0, 100, 100]}, {"bbox_2d": [0, 0, 101, 100]}]'
    assert [b.fault for b in parse_boxes(text, 100, 100, spaces={'json': 'px'})] == ['', 'out_of_range']
    # without an image size (answer-form checks) only inversion and negative values are seen in resized space
    assert box_faults(find_boxes(text)) == ['', '']
    assert box_faults(find_boxes(text), resized_size=(100, 100)) == ['', 'out_of_range']
    assert box_fault(TextBox('', (5, 0, 1, 1), 'json'), 'resized') == 'inverted'


@pytest.mark.parametrize('text', [None, '', '   ', 'no boxes here', '<ref>optic disc</ref><box>',
                                  '<ref>x</ref><box>[[1, 2, 3]]</box>', '<|box_start|>(1,2),(3', '```json\n[{"bbox_2d": ',
                                  '[{"bbox_2d": "abc"}]', '<box>[[nan, 1, 2, 3]]</box>', 12345])
def test_malformed_output_gives_empty_list(text):
    assert parse_boxes(text, 100, 100, resized_size=(100, 100)) == []


def test_truncated_output_keeps_complete_boxes():
    text = '<ref>hard exudates</ref><box>[[10, 10, 20, 20], [30, 30, 4'
    assert [b.coords for b in find_boxes(text)] == [(10, 10, 20, 20)]
    text = '[{"bbox_2d": [1, 2, 3, 4], "label": "drusen"}, {"bbox_2d": [5, 6'
    assert [(b.raw_label, b.coords) for b in find_boxes(text)] == [('drusen', (1, 2, 3, 4))]


def test_resized_space_without_resized_size_is_a_caller_error():
    with pytest.raises(ValueError, match='resized_size'):
        boxes_to_px(find_boxes('<|box_start|>(1,2),(3,4)<|box_end|>'), 100, 100)


def test_qwen_resized_size_matches_smart_resize_and_reads_max_pixels_env(monkeypatch):
    from qwen_vl_utils import smart_resize

    monkeypatch.delenv('MAX_PIXELS', raising=False)
    monkeypatch.delenv('MIN_PIXELS', raising=False)
    h, w = smart_resize(2848, 4288, factor=28)
    assert qwen_resized_size(4288, 2848) == (w, h)
    # MAX_PIXELS=1003520 is 1280 tokens of 28x28; swift passes 1280 * 784 to qwen_vl_utils
    monkeypatch.setenv('MAX_PIXELS', '1003520')
    rw, rh = qwen_resized_size(4288, 2848)
    assert rw * rh <= 1003520 and rw % 28 == 0 and rh % 28 == 0
    assert (rw, rh) == qwen_resized_size(4288, 2848, max_pixels=1280 * 784)


def test_grid_decode_edge_is_internvls_rule_and_centre_is_ours():
    # image 2000 x 1000; grid [[162, 388, 312, 545]]
    # centre: (v + 0.5) * W / 1000 -> x (162.5 * 2, 312.5 * 2) = (325, 625), y (388.5, 545.5)
    # edge:   v / 1000 * W          -> x (324, 624), y (388, 545)
    text = '<ref>OD</ref><box>[[162, 388, 312, 545]]</box>'
    assert parse_boxes(text, 2000, 1000)[0].box_px == (325.0, 388.5, 625.0, 545.5)
    assert parse_boxes(text, 2000, 1000, grid_decode='edge')[0].box_px == (324.0, 388.0, 624.0, 545.0)
    # the bare demo answer is on the grid too
    assert parse_boxes('[[0, 0, 999, 999]]', 1000, 1000, grid_decode='edge')[0].box_px == (0.0, 0.0, 999.0, 999.0)
    with pytest.raises(ValueError, match="grid decode rule 'middle'"):
        parse_boxes(text, 2000, 1000, grid_decode='middle')
