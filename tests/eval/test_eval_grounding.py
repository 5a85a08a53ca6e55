"""Grounding scores: hand-worked IoU / Acc@0.5 / P-R, and COCO AP against a direct pycocotools call."""
import contextlib
import io

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fundusexpert_plugin.eval.grounding import GroundingSample, box_scores, coco_ap, greedy_matches, samples_from_texts
from fundusexpert_plugin.eval.parse import LabeledBox as B

GT = [B('optic_disc', (0, 0, 10, 10)), B('hard_exudates', (20, 20, 30, 30)), B('hard_exudates', (50, 50, 60, 60))]
PRED = [B('optic_disc', (0, 0, 10, 4)),          # IoU 40/100 = 0.4 with the disc
        B('hard_exudates', (20, 20, 30, 30)),    # IoU 1.0
        B('hard_exudates', (52, 50, 62, 60)),    # inter 8*10 = 80, union 100 + 100 - 80 = 120 -> 2/3
        B('haemorrhages', (0, 0, 5, 5))]         # class with no reference: false positive


def test_hand_worked_best_match_iou_acc_and_precision_recall():
    s = box_scores([GroundingSample(GT, PRED)])
    # best-match IoUs: 0.4, 1.0, 2/3 -> micro mean (0.4 + 1 + 2/3) / 3 = 0.68889
    assert s['best_match_iou'] == pytest.approx((0.4 + 1 + 2 / 3) / 3)
    # per class: disc 0.4, exudates (1 + 2/3) / 2 = 0.83333 -> macro (0.4 + 0.83333) / 2 = 0.61667
    assert s['per_class']['hard_exudates']['best_match_iou'] == pytest.approx(5 / 6)
    assert s['best_match_iou_macro'] == pytest.approx((0.4 + 5 / 6) / 2)
    # one-to-one matches at 0.5: exudates (IoU 1 and 2/3) -> 2 of 3 references: Acc@0.5 = recall = 2/3
    assert s['acc50'] == pytest.approx(2 / 3) and s['n_matched'] == 2
    # 4 predictions -> P = 0.5; 3 references -> R = 2/3
    assert (s['precision50'], s['recall50']) == (pytest.approx(0.5), pytest.approx(2 / 3))
    assert s['per_class']['haemorrhages'] == {'n_gt': 0, 'n_pred': 1, 'n_matched': 0, 'malformed_boxes': 0,
                                              'acc50': None, 'precision50': 0.0, 'recall50': None,
                                              'best_match_iou': None}
    assert s['malformed_boxes'] == 0 and s['malformed_by_fault'] == {'inverted': 0, 'out_of_range': 0}


def test_greedy_matching_is_one_to_one_while_best_match_is_not():
    gt = [B('drusen', (0, 0, 10, 10)), B('drusen', (0, 0, 10, 10))]
    pred = [B('drusen', (0, 0, 10, 10))]
    assert greedy_matches(gt, pred) == 1                 # one prediction matches one reference
    s = box_scores([GroundingSample(gt, pred)])
    # both references see IoU 1 (best match), but one prediction satisfies only one of them
    assert s['best_match_iou'] == 1.0 and s['acc50'] == 0.5 and s['recall50'] == 0.5


def test_acc50_two_references_one_right_one_wrong_prediction_is_one_half():
    # The definition's case: references R1 = R2 = (0, 0, 10, 10); P1 = (0, 0, 10, 10) is right (IoU 1 with
    # both), P2 = (50, 50, 60, 60) is wrong (IoU 0). One-to-one: P1 takes R1 (tie -> first reference), R2 is
    # left with P2 at IoU 0 -> 1 of 2 = 0.5 (the best-match rule would give 1.0).
    gt = [B('haemorrhages', (0, 0, 10, 10)), B('haemorrhages', (0, 0, 10, 10))]
    pred = [B('haemorrhages', (0, 0, 10, 10)), B('haemorrhages', (50, 50, 60, 60))]
    s = box_scores([GroundingSample(gt, pred)])
    assert s['acc50'] == 0.5 and s['precision50'] == 0.5 and s['best_match_iou'] == 1.0


def test_one_to_one_takes_the_highest_iou_pair_first():
    # R1 = (0, 0, 10, 10), R2 = (5, 0, 15, 10); P = (4, 0, 14, 10) and Q = (0, 0, 10, 10)
    # IoU(R1, P) = 60 / 140 = 0.4286, IoU(R2, P) = 90 / 110 = 0.8182, IoU(R1, Q) = 1, IoU(R2, Q) = 50 / 150 = 1/3
    # greedy: (R1, Q) 1.0 first, then (R2, P) 0.8182 -> both matched
    gt = [B('drusen', (0, 0, 10, 10)), B('drusen', (5, 0, 15, 10))]
    pred = [B('drusen', (4, 0, 14, 10)), B('drusen', (0, 0, 10, 10))]
    assert box_scores([GroundingSample(gt, pred)])['acc50'] == 1.0


def test_unlabelled_prediction_takes_the_single_reference_class():
    s = box_scores([GroundingSample([B('optic_disc', (0, 0, 10, 10))], [B('', (0, 0, 10, 10))])])
    assert s['best_match_iou'] == 1.0 and s['precision50'] == 1.0


def test_empty_and_missing_predictions_score_as_misses():
    s = box_scores([GroundingSample(GT, [])])
    assert (s['best_match_iou'], s['acc50'], s['recall50'], s['precision50']) == (0.0, 0.0, 0.0, None)
    assert coco_ap([GroundingSample(GT, [])])['ap'] == 0.0
    assert coco_ap([GroundingSample([], PRED)])['ap'] is None


def _direct_coco(gt_by_image, dt):
    """An independent pycocotools run: gt_by_image = [[(cat, x, y, w, h)]], dt = [(image, cat, x, y, w, h, score)]."""
    cats = sorted({g[0] for gts in gt_by_image for g in gts})
    dataset = {'images': [{'id': i + 1} for i in range(len(gt_by_image))],
               'categories': [{'id': c} for c in cats], 'annotations': []}
    for i, gts in enumerate(gt_by_image):
        for cat, x, y, w, h in gts:
            dataset['annotations'].append({'id': len(dataset['annotations']) + 1, 'image_id': i + 1, 'category_id': cat,
                                           'bbox': [x, y, w, h], 'area': w * h, 'iscrowd': 0})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        res = gt.loadRes([{'image_id': d[0], 'category_id': d[1], 'bbox': list(d[2:6]), 'score': d[6]} for d in dt])
        ev = COCOeval(gt, res, 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_coco_ap_equals_a_direct_pycocotools_call():
    samples = [GroundingSample(GT, PRED, 100, 100),
               GroundingSample([B('optic_disc', (10, 10, 40, 40))],
                               [B('optic_disc', (12, 10, 40, 42)), B('optic_disc', (60, 60, 70, 70))], 100, 100)]
    # category ids: sorted labels haemorrhages=1, hard_exudates=2, optic_disc=3; rank scores 1, 1/2
    gt = [[(3, 0, 0, 10, 10), (2, 20, 20, 10, 10), (2, 50, 50, 10, 10)], [(3, 10, 10, 30, 30)]]
    dt = [(1, 3, 0, 0, 10, 4, 1.0), (1, 2, 20, 20, 10, 10, 1.0), (1, 2, 52, 50, 10, 10, 0.5), (1, 1, 0, 0, 5, 5, 1.0),
          (2, 3, 12, 10, 28, 32, 1.0), (2, 3, 60, 60, 10, 10, 0.5)]
    stats = _direct_coco(gt, dt)
    ours = coco_ap(samples)
    assert ours['ap'] == pytest.approx(stats[0]) and ours['ap50'] == pytest.approx(stats[1])
    assert ours['ap75'] == pytest.approx(stats[2])
    assert 'haemorrhages' not in ours['per_class']   # no reference: COCO does not score the class


def test_perfect_predictions_give_ap_one():
    assert coco_ap([GroundingSample(GT, GT, 100, 100)])['ap'] == pytest.approx(1.0)


def test_text_pairs_are_scored_in_their_own_space():
    # same box on the grid in both texts -> IoU 1; a second reference box is missed -> mean 0.5
    pred = '<ref>optic disc</ref><box>[[100, 100, 300, 300]]</box>'
    label = '<ref>Optic disc</ref><box>[[100, 100, 300, 300]]</box><ref>optic cup</ref><box>[[150, 150, 200, 200]]</box>'
    s = box_scores(samples_from_texts([pred, 'garbage'], [label, 'no boxes']))
    assert s['n_gt'] == 2 and s['best_match_iou'] == 0.5 and s['acc50'] == 0.5


def test_malformed_predictions_count_as_predictions_that_match_nothing():
    gt = [B('optic_disc', (0, 0, 10, 10)), B('drusen', (20, 20, 30, 30))]
    # the disc with its corners swapped (would be IoU 1 if re-ordered), the drusen box exact, and a drusen box
    # past the grid (a value above 1000): 3 predictions, 1 match
    pred = [B('optic_disc', (10, 10, 0, 0), 'inverted'), B('drusen', (20, 20, 30, 30)),
            B('drusen', (20, 20, 30, 3419), 'out_of_range')]
    s = box_scores([GroundingSample(gt, pred)])
    assert (s['n_pred'], s['n_matched'], s['malformed_boxes']) == (3, 1, 2)
    assert s['malformed_by_fault'] == {'inverted': 1, 'out_of_range': 1}
    # acc50 = recall = 1/2; precision = 1/3; best-match IoUs: disc 0 (its only box is malformed), drusen 1 -> 0.5
    assert (s['acc50'], s['precision50'], s['best_match_iou']) == (0.5, pytest.approx(1 / 3), 0.5)
    assert s['per_class']['optic_disc']['malformed_boxes'] == 1 and s['per_class']['optic_disc']['n_pred'] == 1
    # COCO: the malformed boxes are detections of the empty box [0, 0, 0, 0] (false positives at their rank)
    stats = _direct_coco([[(2, 0, 0, 10, 10), (1, 20, 20, 10, 10)]],
                         [(1, 2, 0, 0, 0, 0, 1.0), (1, 1, 20, 20, 10, 10, 1.0), (1, 1, 0, 0, 0, 0, 0.5)])
    ours = coco_ap([GroundingSample(gt, pred, 100, 100)])
    assert ours['ap'] == pytest.approx(stats[0]) and ours['per_class']['optic_disc']['ap'] == 0.0


def test_unlabelled_malformed_prediction_keeps_its_fault_when_it_takes_the_reference_class():
    s = box_scores([GroundingSample([B('optic_disc', (0, 0, 10, 10))], [B('', (10, 10, 0, 0), 'inverted')])])
    assert s['per_class']['optic_disc']['malformed_boxes'] == 1 and s['n_matched'] == 0


def test_text_pairs_mark_off_grid_predictions():
    pred = '<ref>optic disc</ref><box>[[100, 100, 300, 1300]]</box>'
    label = '<ref>optic disc</ref><box>[[100, 100, 300, 300]]</box>'
    (sample,) = samples_from_texts([pred], [label])
    assert sample.pred[0].fault == 'out_of_range' and box_scores([sample])['n_matched'] == 0
