"""Localisation scores for predicted boxes against reference boxes, per class and overall.

The official repository has no localisation metric (its README section on it is empty), so every
rule here is ours, chosen from common practice:

* **best-match IoU** (``mean_iou``): for each reference box, the highest IoU with any predicted box
  of the same class in the same sample (0 when there is none); averaged over reference boxes
  (micro) and over the per-class means (macro).
* **Acc@0.5** (``acc50``): share of reference boxes whose best-match IoU is >= 0.5.
* **precision / recall @0.5**: greedy one-to-one matching per sample and class, pairs taken in
  descending IoU while IoU >= 0.5; a predicted box of a class with no reference box is a false
  positive.
* **COCO AP** (``ap``, ``ap50``, ``ap75``): pycocotools ``COCOeval`` on boxes built in memory.
  Text predictions carry no confidence, so ``score_mode='rank'`` (default) scores the k-th box
  (0-based) a sample gives for a class ``1 / (1 + k)``: the model's first box ranks highest.
  ``score_mode='constant'`` gives 1.0 to every box. Ties are broken by pycocotools' stable sort,
  i.e. sample order then output order, so AP depends on that order when scores tie.

Boxes are :class:`parse.LabeledBox` (xyxy, original-image pixels). IoU is invariant to scaling
x and y independently, so the same functions also score boxes that are both on the 0-999 grid.
A predicted box with label ``''`` (no ``<ref>``) takes the class of the sample's references when
they are all of one class (the demo answers ``[[162, 388, 312, 545]]`` to "Locate the optic disc").
"""
from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from fundusexpert_plugin.core.geometry import box_area, iou
from fundusexpert_plugin.eval.parse import LabeledBox

IOU_THRESHOLD = 0.5


@dataclass
class GroundingSample:
    """References and predictions of one image (both :class:`LabeledBox`, original pixels).

    ``width``/``height`` (pixels) are only needed by COCO AP's image records.
    """

    gt: Sequence[LabeledBox]
    pred: Sequence[LabeledBox]
    width: float = 1.0
    height: float = 1.0


def fill_missing_labels(pred: Sequence[LabeledBox], gt: Sequence[LabeledBox]) -> List[LabeledBox]:
    """Give unlabelled predictions the class of ``gt`` when ``gt`` has exactly one class."""
    classes = {b.label for b in gt}
    if len(classes) != 1:
        return list(pred)
    only = next(iter(classes))
    return [LabeledBox(only, b.box_px) if not b.label else b for b in pred]


def _by_label(boxes: Sequence[LabeledBox]) -> Dict[str, List[LabeledBox]]:
    out: Dict[str, List[LabeledBox]] = defaultdict(list)
    for b in boxes:
        out[b.label].append(b)
    return out


def greedy_matches(gt: Sequence[LabeledBox], pred: Sequence[LabeledBox],
                   threshold: float = IOU_THRESHOLD) -> int:
    """Number of one-to-one same-class matches with IoU >= ``threshold`` (greedy, highest IoU first)."""
    tp = 0
    pred_by = _by_label(pred)
    for label, gts in _by_label(gt).items():
        preds = pred_by.get(label, [])
        pairs = sorted(((iou(g.box_px, p.box_px), i, j) for i, g in enumerate(gts)
                        for j, p in enumerate(preds)), key=lambda t: -t[0])
        used_g, used_p = set(), set()
        for value, i, j in pairs:
            if value < threshold:
                break
            if i not in used_g and j not in used_p:
                used_g.add(i)
                used_p.add(j)
                tp += 1
    return tp


def _ratio(num: float, den: float) -> Optional[float]:
    return num / den if den else None


def box_scores(samples: Sequence[GroundingSample], threshold: float = IOU_THRESHOLD) -> dict:
    """Best-match IoU, Acc@threshold and precision/recall@threshold, overall and per class.

    Args:
        samples: one entry per image; unlabelled predictions are filled by :func:`fill_missing_labels`.
        threshold: IoU threshold (0.5 by default).

    Returns:
        ``{'n_samples', 'n_gt', 'n_pred', 'mean_iou' (micro), 'mean_iou_macro', 'acc50',
        'precision50', 'recall50', 'per_class': {label: {'n_gt', 'n_pred', 'mean_iou', 'acc50',
        'precision50', 'recall50'}}}``; a ratio with an empty denominator is ``None``.
    """
    best: Dict[str, List[float]] = defaultdict(list)
    n_pred: Dict[str, int] = defaultdict(int)
    tp: Dict[str, int] = defaultdict(int)
    for s in samples:
        pred = fill_missing_labels(s.pred, s.gt)
        pred_by = _by_label(pred)
        for label, preds in pred_by.items():
            n_pred[label] += len(preds)
        for g in s.gt:
            best[g.label].append(max((iou(g.box_px, p.box_px) for p in pred_by.get(g.label, [])), default=0.0))
        for label in set(_by_label(s.gt)) | set(pred_by):
            tp[label] += greedy_matches([g for g in s.gt if g.label == label], pred_by.get(label, []), threshold)
    per_class = {}
    for label in sorted(set(best) | set(n_pred)):
        ious = best.get(label, [])
        per_class[label] = {
            'n_gt': len(ious), 'n_pred': n_pred.get(label, 0),
            'mean_iou': _ratio(sum(ious), len(ious)),
            'acc50': _ratio(sum(v >= threshold for v in ious), len(ious)),
            'precision50': _ratio(tp.get(label, 0), n_pred.get(label, 0)),
            'recall50': _ratio(tp.get(label, 0), len(ious)),
        }
    all_ious = [v for ious in best.values() for v in ious]
    class_means = [c['mean_iou'] for c in per_class.values() if c['mean_iou'] is not None]
    return {
        'n_samples': len(samples), 'n_gt': len(all_ious), 'n_pred': sum(n_pred.values()),
        'mean_iou': _ratio(sum(all_ious), len(all_ious)),
        'mean_iou_macro': _ratio(sum(class_means), len(class_means)),
        'acc50': _ratio(sum(v >= threshold for v in all_ious), len(all_ious)),
        'precision50': _ratio(sum(tp.values()), sum(n_pred.values())),
        'recall50': _ratio(sum(tp.values()), len(all_ious)),
        'per_class': per_class,
    }


def _xywh(box_px) -> List[float]:
    x1, y1, x2, y2 = box_px
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def coco_inputs(samples: Sequence[GroundingSample], score_mode: str = 'rank'):
    """COCO ground-truth dict, detection list and category map for pycocotools.

    Image ids are 1-based sample positions; category ids are 1-based in sorted label order over
    references and predictions. Detections are ``{'image_id', 'category_id', 'bbox' (xywh px),
    'score'}``.

    Raises:
        ValueError: ``score_mode`` is not ``'rank'`` or ``'constant'``.
    """
    if score_mode not in ('rank', 'constant'):
        raise ValueError(f"score_mode must be 'rank' or 'constant', got {score_mode!r}")
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
            dets.append({'image_id': image_id, 'category_id': cat_ids[p.label], 'bbox': _xywh(p.box_px),
                         'score': score})
    return gt, dets, cat_ids


def coco_ap(samples: Sequence[GroundingSample], score_mode: str = 'rank') -> dict:
    """COCO box AP by pycocotools (all areas, maxDets 100).

    Returns:
        ``{'ap', 'ap50', 'ap75', 'per_class': {label: {'ap', 'ap50'}}, 'score_mode'}``. Values are
        ``None`` when there is no reference box, 0.0 when there are references but no predictions
        (pycocotools cannot load an empty result list). Categories with predictions but no
        reference are not scored (COCO semantics); precision50 counts them.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets, cat_ids = coco_inputs(samples, score_mode)
    result = {'ap': None, 'ap50': None, 'ap75': None, 'per_class': {}, 'score_mode': score_mode}
    if not gt['annotations']:
        return result
    gt_labels = sorted({cat for cat, cid in cat_ids.items() if any(a['category_id'] == cid for a in gt['annotations'])})
    if not dets:
        result.update(ap=0.0, ap50=0.0, ap75=0.0, per_class={c: {'ap': 0.0, 'ap50': 0.0} for c in gt_labels})
        return result
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(dets), 'bbox')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    result.update(ap=float(stats[0]), ap50=float(stats[1]), ap75=float(stats[2]))
    precision = evaluator.eval['precision']  # [T, R, K, A, M]; K follows params.catIds order
    for k, cid in enumerate(evaluator.params.catIds):
        label = next(n for n, i in cat_ids.items() if i == cid)
        all_t, t50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
        if not (all_t > -1).any():  # no reference box of this class
            continue
        result['per_class'][label] = {
            'ap': float(all_t[all_t > -1].mean()) if (all_t > -1).any() else None,
            'ap50': float(t50[t50 > -1].mean()) if (t50 > -1).any() else None,
        }
    return result


def grounding_metrics(samples: Sequence[GroundingSample], score_mode: str = 'rank') -> dict:
    """:func:`box_scores` plus ``'coco'``: :func:`coco_ap`."""
    return {**box_scores(samples), 'coco': coco_ap(samples, score_mode)}


def samples_from_texts(pred_texts: Sequence[str], label_texts: Sequence[str]) -> List[GroundingSample]:
    """Score rendered reference text against predicted text without image sizes.

    Both texts are read with :func:`parse.find_boxes` and compared in the space they are written
    in (0-999 grid, or Qwen resized pixels): IoU does not change when x and y are scaled, so this
    equals the pixel-space score as long as both come from the same template. Labels are
    canonicalised as in :func:`parse.boxes_to_px`.
    """
    from fundusexpert_plugin.eval.parse import CONVENTIONS, boxes_to_px, find_boxes

    as_written = {c: 'px' for c in CONVENTIONS}  # keep each text's own space

    def labeled(text):
        return boxes_to_px(find_boxes(text), 1, 1, spaces=as_written)

    return [GroundingSample(gt=labeled(label), pred=labeled(pred)) for pred, label in zip(pred_texts, label_texts)]
