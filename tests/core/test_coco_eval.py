"""The one COCO box scorer: hand-worked AP on tiny cases and its empty-input rules."""
import pytest

from fundusexpert_plugin.core.coco_eval import coco_box_ap


def _gt(annotations, cats=(1, 2)):
    return {'images': [{'id': 1, 'width': 100, 'height': 100}], 'categories': [{'id': c} for c in cats],
            'annotations': [{'id': i + 1, 'image_id': 1, 'category_id': c, 'bbox': list(b), 'area': b[2] * b[3],
                             'iscrowd': 0} for i, (c, b) in enumerate(annotations)]}


def test_one_exact_detection_per_reference_gives_ap_one():
    gt = _gt([(1, (0, 0, 10, 10)), (2, (50, 50, 20, 20))])
    dets = [{'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 10, 10], 'score': 0.9},
            {'image_id': 1, 'category_id': 2, 'bbox': [50, 50, 20, 20], 'score': 0.8}]
    out = coco_box_ap(gt, dets)
    assert (out['ap'], out['ap50'], out['ap75']) == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))
    assert out['per_category'] == {1: {'ap': pytest.approx(1.0), 'ap50': pytest.approx(1.0)},
                                   2: {'ap': pytest.approx(1.0), 'ap50': pytest.approx(1.0)}}


def test_half_recall_at_every_threshold():
    # two references of category 1, one exact detection: recall 0.5 at precision 1 -> the 101-point
    # interpolated PR curve is 1 for recall 0..0.5 (51 points) and 0 above -> AP = 51/101 at every IoU
    gt = _gt([(1, (0, 0, 10, 10)), (1, (50, 50, 10, 10))], cats=(1,))
    out = coco_box_ap(gt, [{'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 10, 10], 'score': 1.0}])
    assert out['ap'] == pytest.approx(51 / 101) and out['ap50'] == pytest.approx(51 / 101)
    assert out['per_category'][1]['ap50'] == pytest.approx(51 / 101)


def test_empty_inputs():
    assert coco_box_ap(_gt([]), [{'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 1, 1], 'score': 1}]) == {
        'ap': None, 'ap50': None, 'ap75': None, 'per_category': {}}
    out = coco_box_ap(_gt([(2, (0, 0, 10, 10))]), [])
    assert out == {'ap': 0.0, 'ap50': 0.0, 'ap75': 0.0, 'per_category': {2: {'ap': 0.0, 'ap50': 0.0}}}
