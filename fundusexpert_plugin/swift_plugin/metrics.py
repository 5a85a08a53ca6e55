"""``--eval_metric fundus_grounding``: grounding Acc@0.5 and best-match IoU during ``swift sft`` evaluation.

Use with ``--predict_with_generate true --metric_for_best_model grounding_acc50`` (without the last
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

Logged keys (HF prefixes ``eval_``), named as in ``metrics.json`` of ``fundusexpert eval``
(:func:`eval.grounding.box_scores`): ``grounding_acc50`` (one-to-one Acc@0.5: share of reference
boxes matched one-to-one at IoU >= 0.5), ``grounding_best_match_iou`` (mean over reference boxes of
the best IoU with any prediction; a diagnostic, not one-to-one), ``grounding_precision50``,
``grounding_n_gt``, ``grounding_unmatched``.

Grid decoding: ``fundus_grounding`` reads a predicted 0-999 value as the centre of its cell
(``(v + 0.5) * W / 1000``); ``--eval_metric fundus_grounding_edge`` uses ``v / 1000 * W``, InternVL's
own evaluation rule (:func:`geometry.from_grid999`). The rule matters only on the pixel path
(``objects`` rows); literal-box references are compared with predictions on the grid itself.

Call :func:`register` from the plugin file; importing this module registers nothing.
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
METRIC_NAME_EDGE = 'fundus_grounding_edge'


def _last_lines(path: str, n: int) -> List[dict]:
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in deque((ln for ln in f if ln.strip()), maxlen=n)]


class FundusGroundingMetrics(EvalMetrics):
    """Grounding scores of generated text (see the module docstring); grid values read as cell centres."""

    grid_decode = 'centre'

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
                               pred=predicted_boxes({'response': pred}, width, height, grid_decode=self.grid_decode),
                               width=width, height=height)

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
        return {'grounding_acc50': float(scores['acc50'] or 0.0),
                'grounding_best_match_iou': float(scores['best_match_iou'] or 0.0),
                'grounding_precision50': float(scores['precision50'] or 0.0),
                'grounding_n_gt': float(scores['n_gt']), 'grounding_unmatched': float(unmatched)}


class FundusGroundingEdgeMetrics(FundusGroundingMetrics):
    """As :class:`FundusGroundingMetrics`, grid values read by InternVL's rule ``v / 1000 * W``."""

    grid_decode = 'edge'


def register(exist_ok: bool = False) -> None:
    """Add the metrics to ms-swift's ``eval_metrics_map``: ``--eval_metric fundus_grounding`` (cell
    centres) and ``fundus_grounding_edge`` (InternVL's edge rule).

    Raises:
        ValueError: the name is already registered and ``exist_ok`` is False.
    """
    from swift.metrics import eval_metrics_map

    from fundusexpert_plugin.swift_plugin.registry import add_to_map
    add_to_map(eval_metrics_map, METRIC_NAME, FundusGroundingMetrics, exist_ok=exist_ok, flag='--eval_metric')
    add_to_map(eval_metrics_map, METRIC_NAME_EDGE, FundusGroundingEdgeMetrics, exist_ok=exist_ok, flag='--eval_metric')
