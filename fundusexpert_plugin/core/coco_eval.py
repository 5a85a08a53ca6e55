"""COCO box AP by pycocotools: the one scorer behind detector evaluation and text-box grounding AP.

Inputs are COCO dicts built in memory: ``gt`` with ``images``, ``annotations`` (``bbox`` xywh in
pixels, ``area``, ``iscrowd``) and ``categories``; ``detections`` as ``[{'image_id',
'category_id', 'bbox' (xywh px), 'score'}]``. Scoring is pycocotools' ``COCOeval(..., 'bbox')``
with its defaults: IoU thresholds 0.50:0.05:0.95, all areas, ``maxDets`` 100.
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Dict, Optional, Sequence

logger = logging.getLogger(__name__)


def coco_box_ap(gt: dict, detections: Sequence[dict]) -> dict:
    """AP, AP50, AP75 overall and AP/AP50 per category.

    Args:
        gt: COCO ground-truth dict (module docstring); category ids are any integers.
        detections: COCO result list (module docstring).

    Returns:
        ``{'ap', 'ap50', 'ap75', 'per_category': {category_id: {'ap', 'ap50'}}}``. Only categories
        with at least one reference box appear in ``per_category`` (COCO semantics: a category
        without references is not scored). With no reference box at all every value is ``None``;
        with references but no detection every value is 0.0 (pycocotools cannot load an empty
        result list, and no detection means zero precision at every recall).
    """
    annotated = sorted({a['category_id'] for a in gt.get('annotations', [])})
    if not annotated:
        return {'ap': None, 'ap50': None, 'ap75': None, 'per_category': {}}
    if not detections:
        return {'ap': 0.0, 'ap50': 0.0, 'ap75': 0.0, 'per_category': {c: {'ap': 0.0, 'ap50': 0.0} for c in annotated}}
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(list(detections)), 'bbox')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    logger.debug('pycocotools:\n%s', log.getvalue())
    stats = evaluator.stats
    precision = evaluator.eval['precision']  # [T iou, R recall, K category, A area, M maxDets]
    per_category: Dict[int, Dict[str, Optional[float]]] = {}
    for k, cid in enumerate(evaluator.params.catIds):
        all_t, t50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
        if cid not in annotated or not (all_t > -1).any():
            continue
        per_category[cid] = {'ap': _mean_valid(all_t), 'ap50': _mean_valid(t50)}
    return {'ap': float(stats[0]), 'ap50': float(stats[1]), 'ap75': float(stats[2]), 'per_category': per_category}


def _mean_valid(values) -> Optional[float]:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None
