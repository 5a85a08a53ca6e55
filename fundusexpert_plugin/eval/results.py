"""Rows of a ``swift infer`` result jsonl: task kind, image, reference and predicted boxes.

Row contract (ms-swift 4.6 ``swift/pipelines/infer/infer.py``), one JSON object a line:

* ``response``: generated text; ``labels``: the reference assistant text, with grounding
  placeholders ``<ref-object>``/``<bbox>`` **not** rendered;
* ``messages``: the conversation, whose last assistant turn is the response (``swift infer``) or
  absent (the trainer's ``predict.jsonl``);
* ``images``: ``[{"bytes": null, "path": ...}]`` or ``[path]``;
* ``objects``: ``{"ref": [...], "bbox": [[x1, y1, x2, y2], ...], "bbox_type": "real"|"norm1"}``,
  refs and bboxes filling the placeholders of the whole conversation in order (user turns first).

swift drops every other column, so a row's task and labels come from a side file (``--meta``:
``{"index": row number (0-based), "task": ..., "answer", "category", "positives", "negatives"}``)
or are inferred: grounding rows have ``objects`` boxes (or boxes in ``labels``), MCQ rows have
lettered options in the user prompt, everything else is a report.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

from fundusexpert_plugin.core.vocab import lesion_ids
from fundusexpert_plugin.eval.mcq import is_mcq_prompt
from fundusexpert_plugin.eval.parse import LabeledBox, boxes_to_px, canonical_label, find_boxes, needs_resized_size, qwen_resized_size
from fundusexpert_plugin.core import jsonl as _jsonl

logger = logging.getLogger(__name__)

TASKS = ('grounding', 'mcq', 'report')
_PLACEHOLDER = re.compile(r'<ref-object>|<bbox>')


def read_jsonl(path: str) -> List[dict]:
    """All objects of a jsonl file (blank lines skipped).

    Raises:
        ValueError: a line is not a JSON object (message: ``path:line: ...``).
    """
    return _jsonl.load_jsonl(path)


#: FundusGen task kind -> scorer (a FundusGen task file can serve as ``--meta``)
FUNDUSGEN_KIND_TO_TASK = {'region_detection': 'grounding', 'grounded_report': 'report', 'report': 'report',
                          'diagnosis': 'report', 'mcq': 'mcq'}


_LESIONS = frozenset(lesion_ids())   # consistency is about lesions, not anatomy


def meta_from_fundusgen_row(row: dict) -> dict:
    """Meta record of a FundusGen row (``kind``, ``task``, ``answer_letter``, ``positives``,
    ``negatives``, ``full_gt_boxes_px``): scorer from :data:`FUNDUSGEN_KIND_TO_TASK`, category = the task name, positives and
    negatives restricted to lesion classes (anatomy is not a finding to be consistent about). Kinds without a
    scorer here (region identification, grading, data-only tasks) are left to content inference."""
    meta = {'category': row.get('task'),
            'positives': [f for f in row.get('positives', []) if f in _LESIONS],
            'negatives': [f for f in row.get('negatives', []) if f in _LESIONS]}
    if row.get('full_gt_boxes_px'):  # the answer shows only part of the boxes: score against all of them
        meta['full_gt_boxes_px'] = row['full_gt_boxes_px']
    task = FUNDUSGEN_KIND_TO_TASK.get(row.get('kind'))
    if task is not None:
        meta['task'] = task
    if row.get('answer_letter'):
        meta['answer'] = row['answer_letter']
    return meta


def load_meta(path: str) -> Dict[int, dict]:
    """``--meta`` side file -> ``{row index: record}``.

    Either every record has ``index`` (the 0-based row number of the result file), or the file is a
    FundusGen task file (rows with ``kind``, in the order ``swift infer`` read them), converted with
    :func:`meta_from_fundusgen_row`.

    Raises:
        ValueError: a record has no integer ``index`` (and the file is not FundusGen rows) or repeats one.
    """
    records = read_jsonl(path)
    if records and all('kind' in rec and 'messages' in rec for rec in records):
        return {i: meta_from_fundusgen_row(rec) for i, rec in enumerate(records)}
    out: Dict[int, dict] = {}
    for number, rec in enumerate(records, start=1):
        index = rec.get('index')
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f'{path}: record {number}: `index` must be the 0-based row number, got {index!r}')
        if index in out:
            raise ValueError(f'{path}: record {number}: index {index} appears twice')
        out[index] = rec
    return out


def _final_is_response(row: dict) -> bool:
    messages = row.get('messages') or []
    return bool(messages) and messages[-1].get('role') == 'assistant' and \
        messages[-1].get('content') == row.get('response')


def context_messages(row: dict) -> List[dict]:
    """Messages before the reference answer (the response turn, if present, removed)."""
    messages = list(row.get('messages') or [])
    return messages[:-1] if _final_is_response(row) else messages


def user_prompt(row: dict) -> str:
    """Text of the last user message before the answer (``''`` if none)."""
    users = [m.get('content') for m in context_messages(row) if m.get('role') == 'user']
    return users[-1] if users and isinstance(users[-1], str) else ''


def image_path(row: dict) -> Optional[str]:
    """Path of the row's first image, or ``None``."""
    images = row.get('images') or []
    first = images[0] if images else None
    return first.get('path') if isinstance(first, dict) else first


@lru_cache(maxsize=4096)
def image_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` in pixels, from the file header.

    Raises:
        OSError: the file is missing or not an image.
    """
    from PIL import Image

    with Image.open(path) as img:
        return img.size


def _object_boxes(row: dict) -> list:
    return [b for b in ((row.get('objects') or {}).get('bbox') or []) if isinstance(b, (list, tuple)) and len(b) == 4]


def infer_task(row: dict, meta: Optional[dict] = None) -> str:
    """``meta['task']`` if given, else grounding / mcq / report from the content (module docstring).

    Raises:
        ValueError: ``meta['task']`` is not one of :data:`TASKS`.
    """
    task = (meta or {}).get('task')
    if task is not None:
        if task not in TASKS:
            raise ValueError(f'meta task {task!r} is not one of {TASKS}')
        return task
    if _object_boxes(row) or find_boxes(row.get('labels')):
        return 'grounding'
    if is_mcq_prompt(user_prompt(row)):
        return 'mcq'
    return 'report'


def reference_boxes(row: dict, width: float, height: float, **parse_kwargs) -> List[LabeledBox]:
    """Reference boxes of a row in original-image pixels.

    From ``objects``: the ``<ref-object>``/``<bbox>`` placeholders of the context messages consume
    refs and bboxes first (swift fills them in conversation order); then each ``<bbox>`` of
    ``labels`` takes the next bbox and the latest ref (possibly one from the question). Without
    placeholders in ``labels``, refs and bboxes are zipped (one ref: it labels every box).
    ``bbox_type='norm1'`` boxes are scaled by the image size; 2-number points are skipped.
    Without ``objects`` boxes, literal boxes in ``labels`` are parsed like predictions
    (``parse_kwargs`` as in :func:`predicted_boxes`).
    """
    objects = row.get('objects') or {}
    bboxes = _object_boxes(row)
    if not bboxes:
        return predicted_boxes({'response': row.get('labels')}, width, height, **parse_kwargs)
    sx, sy = (width, height) if objects.get('bbox_type') == 'norm1' else (1.0, 1.0)
    refs = [str(r) for r in objects.get('ref') or []]
    raw_bboxes = objects.get('bbox') or []
    context = ''.join(str(m.get('content') or '') for m in context_messages(row))
    ref_i, box_i = context.count('<ref-object>'), context.count('<bbox>')
    label = refs[ref_i - 1] if 0 < ref_i <= len(refs) else ''
    pairs = []
    tokens = _PLACEHOLDER.findall(row.get('labels') or '')
    if tokens:
        for token in tokens:
            if token == '<ref-object>':
                label = refs[ref_i] if ref_i < len(refs) else label
                ref_i += 1
            else:
                if box_i < len(raw_bboxes):
                    pairs.append((label, raw_bboxes[box_i]))
                box_i += 1
    else:
        pairs = [(refs[i] if len(refs) == len(raw_bboxes) else (refs[0] if len(refs) == 1 else ''), b)
                 for i, b in enumerate(raw_bboxes)]
    out = []
    for lab, b in pairs:
        if isinstance(b, (list, tuple)) and len(b) == 4:
            x1, y1, x2, y2 = (float(v) for v in b)
            out.append(LabeledBox(canonical_label(lab), (min(x1, x2) * sx, min(y1, y2) * sy,
                                                         max(x1, x2) * sx, max(y1, y2) * sy)))
    return out


def predicted_boxes(row: dict, width: float, height: float, *, spaces: Optional[dict] = None,
                    min_pixels: Optional[int] = None, max_pixels: Optional[int] = None,
                    grid_decode: str = 'centre') -> List[LabeledBox]:
    """Boxes of ``row['response']`` in original-image pixels (never raises on model text).

    The Qwen resized size is computed (:func:`parse.qwen_resized_size` with ``min_pixels``/
    ``max_pixels``) only when a box needs it. ``grid_decode`` (``'centre'``/``'edge'``) reads
    0-999 values as :func:`geometry.from_grid999` says.
    """
    boxes = find_boxes(row.get('response'))
    resized = qwen_resized_size(int(width), int(height), min_pixels=min_pixels, max_pixels=max_pixels) \
        if needs_resized_size(boxes, spaces) else None
    return boxes_to_px(boxes, width, height, resized_size=resized, spaces=spaces, grid_decode=grid_decode)
