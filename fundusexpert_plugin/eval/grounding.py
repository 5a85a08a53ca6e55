"""Localisation scores for predicted boxes against reference boxes, per class and overall.

The official repository has no localisation metric (its README section on it is empty), so every
rule here is ours, chosen from common practice. Keys, as written to ``metrics.json``:

* ``acc50``: **Acc@0.5, one-to-one**: share of reference boxes matched to a predicted box of the
  same class in the same sample with IoU >= 0.5, where each predicted box matches at most one
  reference. Matching is greedy by IoU, highest first, ties in input order
  (:func:`geometry.match_one_to_one`; the rule of the grounding literature and of pycocotools'
  ``evaluateImg``). Two references and one right plus one wrong prediction give 0.5. By this
  definition ``acc50`` equals ``recall50``; both are kept under the names the two literatures use.
* ``precision50`` / ``recall50``: the same one-to-one matches over predicted / reference boxes; a
  predicted box of a class with no reference box is a false positive.
* ``best_match_iou`` (micro) / ``best_match_iou_macro`` (mean of per-class means): a diagnostic,
  **not** one-to-one: for each reference box, the highest IoU with any predicted box of the same
  class in the same sample (0 when there is none), so one prediction may serve several references.
* COCO AP (``coco.ap``, ``coco.ap50``, ``coco.ap75``): pycocotools ``COCOeval`` on boxes built in
  memory (:func:`core.coco_eval.coco_box_ap`). Text predictions carry no confidence, so
  ``score_mode='rank'`` (default) scores the k-th box (0-based) a sample gives for a class
  ``1 / (1 + k)``: the model's first box ranks highest. ``score_mode='constant'`` gives 1.0 to
  every box. Ties are broken by pycocotools' stable sort, i.e. sample order then output order, so
  AP depends on that order when scores tie.

Malformed predicted boxes (:func:`parse.box_fault`: corners inverted, or a value outside its space
such as ``1200`` on the 0-999 grid) are predictions that match nothing: they count in ``n_pred``
(false positives in ``precision50``), give IoU 0 to ``best_match_iou`` and enter COCO AP as
detections that overlap nothing; ``malformed_boxes`` counts them (overall and per class) and
``malformed_by_fault`` splits the count by :data:`parse.FAULTS`. A model that swaps its corners
is therefore never scored as a perfect match.

Boxes are :class:`parse.LabeledBox` (xyxy, original-image pixels). IoU is invariant to scaling
x and y independently, so the same functions also score boxes that are both on the 0-999 grid.
A predicted box with label ``''`` (no ``<ref>``) takes the class of the sample's references when
they are all of one class (the demo answers ``[[162, 388, 312, 545]]`` to "Locate the optic disc").
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence

from fundusexpert_plugin.core.coco_eval import coco_box_ap
from fundusexpert_plugin.core.geometry import box_area, iou, match_one_to_one
from fundusexpert_plugin.eval.parse import FAULTS, LabeledBox

IOU_THRESHOLD = 0.5


@dataclass
class GroundingSample:
    """References and predictions of one image (both :class:`LabeledBox`, original pixels).

    ``width``/``height`` (pixels) are only needed by COCO AP's image records. ``key`` (the image
    path, its reference boxes, the prompt and the predicted boxes, set by :func:`fundusexpert_plugin.eval.report.evaluate_rows`) orders
    the images for COCO AP (:func:`coco_inputs`), so that AP does not depend on the order of the result
    rows.
    """

    gt: Sequence[LabeledBox]
    pred: Sequence[LabeledBox]
    width: float = 1.0
    height: float = 1.0
    key: str = ''


def fill_missing_labels(pred: Sequence[LabeledBox], gt: Sequence[LabeledBox]) -> List[LabeledBox]:
    """Give unlabelled predictions the class of ``gt`` when ``gt`` has exactly one class (a
    malformed box keeps its ``fault``)."""
    classes = {b.label for b in gt}
    if len(classes) != 1:
        return list(pred)
    only = next(iter(classes))
    return [replace(b, label=only) if not b.label else b for b in pred]


def _by_label(boxes: Sequence[LabeledBox]) -> Dict[str, List[LabeledBox]]:
    out: Dict[str, List[LabeledBox]] = defaultdict(list)
    for b in boxes:
        out[b.label].append(b)
    return out


def greedy_matches(gt: Sequence[LabeledBox], pred: Sequence[LabeledBox],
                   threshold: float = IOU_THRESHOLD) -> int:
    """Number of one-to-one same-class matches with IoU >= ``threshold``
    (:func:`geometry.match_one_to_one` per class: greedy, highest IoU first, ties in input order);
    malformed predictions never match."""
    pred_by = _by_label([p for p in pred if not p.malformed])
    return sum(len(match_one_to_one([g.box_px for g in gts], [p.box_px for p in pred_by.get(label, [])], threshold))
               for label, gts in _by_label(gt).items())


def _ratio(num: float, den: float) -> Optional[float]:
    return num / den if den else None


def box_scores(samples: Sequence[GroundingSample], threshold: float = IOU_THRESHOLD) -> dict:
    """One-to-one Acc@threshold, precision/recall@threshold and best-match IoU, overall and per class.

    Args:
        samples: one entry per image; unlabelled predictions are filled by :func:`fill_missing_labels`.
        threshold: IoU threshold (0.5 by default; the keys keep the suffix ``50``).

    Returns:
        ``{'n_samples', 'n_gt', 'n_pred', 'n_matched', 'malformed_boxes', 'malformed_by_fault':
        {fault: count}, 'acc50', 'precision50', 'recall50', 'best_match_iou' (micro),
        'best_match_iou_macro', 'per_class': {label: {'n_gt', 'n_pred', 'n_matched',
        'malformed_boxes', 'acc50', 'precision50', 'recall50', 'best_match_iou'}}}`` (definitions in
        the module docstring; ``n_pred`` includes the malformed boxes); a ratio with an empty
        denominator is ``None``.
    """
    best: Dict[str, List[float]] = defaultdict(list)
    n_gt: Dict[str, int] = defaultdict(int)
    n_pred: Dict[str, int] = defaultdict(int)
    n_bad: Dict[str, int] = defaultdict(int)
    by_fault: Dict[str, int] = {fault: 0 for fault in FAULTS}
    tp: Dict[str, int] = defaultdict(int)
    for s in samples:
        filled = fill_missing_labels(s.pred, s.gt)
        pred_by = _by_label([p for p in filled if not p.malformed])
        gt_by = _by_label(s.gt)
        for p in filled:
            n_pred[p.label] += 1
            if p.malformed:
                n_bad[p.label] += 1
                by_fault[p.fault] = by_fault.get(p.fault, 0) + 1
        for label, gts in gt_by.items():
            n_gt[label] += len(gts)
            preds = pred_by.get(label, [])
            best[label] += [max((iou(g.box_px, p.box_px) for p in preds), default=0.0) for g in gts]
            tp[label] += len(match_one_to_one([g.box_px for g in gts], [p.box_px for p in preds], threshold))
    per_class = {}
    for label in sorted(set(n_gt) | set(n_pred)):
        ious, gts, preds = best.get(label, []), n_gt.get(label, 0), n_pred.get(label, 0)
        per_class[label] = {
            'n_gt': gts, 'n_pred': preds, 'n_matched': tp.get(label, 0), 'malformed_boxes': n_bad.get(label, 0),
            'acc50': _ratio(tp.get(label, 0), gts),
            'precision50': _ratio(tp.get(label, 0), preds),
            'recall50': _ratio(tp.get(label, 0), gts),
            'best_match_iou': _ratio(sum(ious), len(ious)),
        }
    all_ious = [v for ious in best.values() for v in ious]
    class_means = [c['best_match_iou'] for c in per_class.values() if c['best_match_iou'] is not None]
    total_gt, total_pred, total_tp = sum(n_gt.values()), sum(n_pred.values()), sum(tp.values())
    return {
        'n_samples': len(samples), 'n_gt': total_gt, 'n_pred': total_pred, 'n_matched': total_tp,
        'malformed_boxes': sum(n_bad.values()), 'malformed_by_fault': by_fault,
        'acc50': _ratio(total_tp, total_gt),
        'precision50': _ratio(total_tp, total_pred),
        'recall50': _ratio(total_tp, total_gt),
        'best_match_iou': _ratio(sum(all_ious), len(all_ious)),
        'best_match_iou_macro': _ratio(sum(class_means), len(class_means)),
        'per_class': per_class,
    }


def _xywh(box_px) -> List[float]:
    x1, y1, x2, y2 = box_px
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def coco_inputs(samples: Sequence[GroundingSample], score_mode: str = 'rank'):
    """COCO ground-truth dict, detection list and category map for pycocotools.

    Image ids are 1-based positions of the samples sorted by ``key`` (stable: samples of one key, or
    without keys, keep their order). pycocotools ranks tied scores by image id, and tied scores are the
    rule here (every image's first box of a class scores 1.0), so this order decides ties: by image
    path (then references, prompt, predictions), not by the order of the result file (ours; the paper gives no AP rule for unscored boxes).
    Category ids are 1-based in sorted label order over references and predictions. Detections are ``{'image_id', 'category_id', 'bbox' (xywh px),
    'score'}``; a malformed box is a detection with the empty box ``[0, 0, 0, 0]`` (it overlaps
    nothing, so it is a false positive at its rank).

    Raises:
        ValueError: ``score_mode`` is not ``'rank'`` or ``'constant'``.
    """
    if score_mode not in ('rank', 'constant'):
        raise ValueError(f"score_mode must be 'rank' or 'constant', got {score_mode!r}")
    samples = sorted(samples, key=lambda s: s.key)
    filled = [fill_missing_labels(s.pred, s.gt) for s in samples]
    labels = sorted({b.label for s in samples for b in s.gt} | {b.label for p in filled for b in p})
    cat_ids = {label: i + 1 for i, label in enumerate(labels)}
    gt = {'images': [], 'annotations': [], 'categories': [{'id': i, 'name': n} for n, i in cat_ids.items()]}
    dets = []
    for image_id, (s, pred) in enumerate(zip(samples, filled), start=1):
        gt['images'].append({'id': image_id, 'width': s.width, 'height': s.height})
        for g in s.gt:
            gt['annotations'].append({'id': len(gt['annotations']) + 1, 'image_id': image_id,
                                      'category_id': cat_ids[g.label], 'bbox': _xywh(g.box_px),
                                      'area': box_area(g.box_px), 'iscrowd': 0})
        rank: Dict[str, int] = defaultdict(int)
        for p in pred:
            score = 1.0 if score_mode == 'constant' else 1.0 / (1 + rank[p.label])
            rank[p.label] += 1
            dets.append({'image_id': image_id, 'category_id': cat_ids[p.label],
                         'bbox': [0.0, 0.0, 0.0, 0.0] if p.malformed else _xywh(p.box_px), 'score': score})
    return gt, dets, cat_ids


def coco_ap(samples: Sequence[GroundingSample], score_mode: str = 'rank') -> dict:
    """COCO box AP by pycocotools (all areas, maxDets 100) through :func:`core.coco_eval.coco_box_ap`.

    Returns:
        ``{'ap', 'ap50', 'ap75', 'per_class': {label: {'ap', 'ap50'}}, 'score_mode'}``. Values are
        ``None`` when there is no reference box, 0.0 when there are references but no predictions.
        Categories with predictions but no reference are not scored (COCO semantics); precision50
        counts them.
    """
    gt, dets, cat_ids = coco_inputs(samples, score_mode)
    scores = coco_box_ap(gt, dets)
    label_of = {cid: label for label, cid in cat_ids.items()}
    return {'ap': scores['ap'], 'ap50': scores['ap50'], 'ap75': scores['ap75'],
            'per_class': {label_of[cid]: v for cid, v in scores['per_category'].items()}, 'score_mode': score_mode}


def grounding_metrics(samples: Sequence[GroundingSample], score_mode: str = 'rank') -> dict:
    """:func:`box_scores` plus ``'coco'``: :func:`coco_ap`."""
    return {**box_scores(samples), 'coco': coco_ap(samples, score_mode)}


def samples_from_texts(pred_texts: Sequence[str], label_texts: Sequence[str]) -> List[GroundingSample]:
    """Score rendered reference text against predicted text without image sizes.

    Both texts are read with :func:`parse.find_boxes` and compared in the space they are written
    in (0-999 grid, or Qwen resized pixels): IoU does not change when x and y are scaled, so this
    equals the pixel-space score as long as both come from the same template. Labels are
    canonicalised as in :func:`parse.boxes_to_px`; malformed boxes are marked by
    :func:`parse.box_faults` in each convention's default space (grid values above 1000; resized
    pixels only below 0, the resized size being unknown here).
    """
    from fundusexpert_plugin.eval.parse import box_faults, canonical_label, find_boxes

    def labeled(text):
        boxes = find_boxes(text)
        return [LabeledBox(canonical_label(b.raw_label), tuple(float(v) for v in b.coords), fault)
                for b, fault in zip(boxes, box_faults(boxes))]

    return [GroundingSample(gt=labeled(label), pred=labeled(pred)) for pred, label in zip(pred_texts, label_texts)]
