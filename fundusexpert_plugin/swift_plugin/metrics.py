"""``--eval_metric fundus_grounding``: grounding mIoU and Acc@0.5 during ``swift sft`` evaluation.

Use with ``--predict_with_generate true --metric_for_best_model grounding_miou`` (without the last
flag ms-swift looks for its default ``rouge-l`` and stops). ms-swift 4.6 then hands ``compute_metrics`` the decoded
response strings and the reference assistant texts, each pickled into a uint8 tensor
(``Serializer.to_tensor``, ``swift/trainers/seq2seq_trainer.py::prediction_step``; decoded as in
``swift/metrics/nlg.py``).

Two kinds of reference text:

* literal boxes (``<ref>..</ref><box>[[..]]</box>`` written in the data): predictions and
  references are compared in the space they are written in (:func:`eval.grounding.samples_from_texts`);
* ms-swift ``objects`` placeholders (``<ref-object><bbox>``, which the trainer passes un-rendered):
  the boxes are in ``objects`` only, so the rows are read back from the trainer's own
  ``predict.jsonl`` (its last N lines are this evaluation's rows, N = number of predictions; each is
  checked against the prediction text) and scored in original-image pixels like
  ``fundusexpert eval``. Rows that cannot be matched are counted in ``grounding_unmatched``.

Logged keys (HF prefixes ``eval_``): ``grounding_miou`` (mean best-match IoU over reference boxes),
``grounding_acc50``, ``grounding_n_gt``, ``grounding_unmatched``. Call :func:`register` from the
plugin file; importing this module registers nothing.
"""
from __future__ import annotations

import json
import os
from collections import deque
from typing import Dict, List, Optional

from swift.metrics.base import EvalMetrics

from fundusexpert_plugin.eval.grounding import GroundingSample, box_scores, samples_from_texts
from fundusexpert_plugin.eval.results import image_path, image_size, predicted_boxes, reference_boxes

METRIC_NAME = 'fundus_grounding'


def _last_lines(path: str, n: int) -> List[dict]:
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in deque((ln for ln in f if ln.strip()), maxlen=n)]


class FundusGroundingMetrics(EvalMetrics):
    """Grounding scores of generated text (see the module docstring)."""

    def _predict_rows(self, n: int) -> Optional[List[dict]]:
        writer = getattr(self.trainer, 'jsonl_writer', None)
        path = getattr(writer, 'fpath', None)
        if not path or not os.path.exists(path):
            return None
        rows = _last_lines(path, n)
        return rows if len(rows) == n else None

    def _pixel_sample(self, row: dict, pred: str) -> Optional[GroundingSample]:
        path = image_path(row)
        if row.get('response') != pred or not path:
            return None
        try:
            width, height = image_size(path)
        except OSError:
            return None
        return GroundingSample(gt=reference_boxes(row, width, height),
                               pred=predicted_boxes({'response': pred}, width, height), width=width, height=height)

    def compute_metrics(self, eval_prediction) -> Dict[str, float]:
        from swift.utils import Serializer

        preds = [Serializer.from_tensor(p) for p in eval_prediction.predictions]
        labels = [Serializer.from_tensor(lab) for lab in eval_prediction.label_ids]
        samples, unmatched = [], 0
        rows = None
        if any('<bbox>' in (lab or '') for lab in labels):
            rows = self._predict_rows(len(preds))
        for i, (pred, label) in enumerate(zip(preds, labels)):
            if '<bbox>' in (label or ''):
                sample = self._pixel_sample(rows[i], pred) if rows else None
                unmatched += sample is None
                if sample is not None:
                    samples.append(sample)
            else:
                samples += [s for s in samples_from_texts([pred], [label]) if s.gt]
        scores = box_scores(samples)
        return {'grounding_miou': float(scores['mean_iou'] or 0.0), 'grounding_acc50': float(scores['acc50'] or 0.0),
                'grounding_n_gt': float(scores['n_gt']), 'grounding_unmatched': float(unmatched)}


def register(exist_ok: bool = False) -> None:
    """Add the metric to ms-swift's ``eval_metrics_map``: ``--eval_metric fundus_grounding``.

    Raises:
        ValueError: the name is already registered and ``exist_ok`` is False.
    """
    from swift.metrics import eval_metrics_map

    from fundusexpert_plugin.swift_plugin.registry import add_to_map
    add_to_map(eval_metrics_map, METRIC_NAME, FundusGroundingMetrics, exist_ok=exist_ok, flag='--eval_metric')
