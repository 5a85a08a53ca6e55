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
``{"index": row number (0-based), "task": ..., "answer", "category", "positives", "negatives",
"target_absent"}``, or a FundusGen task file, or several concatenated in ``--val_dataset`` order) or
are inferred from the content (:func:`infer_task`):

* lettered options (``A.``, ``B.`` lines) in the last user prompt -> ``mcq``, even when the row has
  ``objects`` (a FundusGen region question carries the region's box there);
* reference boxes (``objects`` boxes or boxes in ``labels``) and ``labels`` holding words beyond the
  boxes (:func:`has_text_beyond_boxes`: a grounded report) -> ``report``; boxes and nothing else
  (``<ref-object><bbox><bbox>``, the region detection answer) -> ``grounding``;
* no box, and ``labels`` is a shipped region detection "absent" answer (``answer_absent`` of
  ``templates/region_detection.yaml``: "The image shows no {target}.", or the earlier "There are no
  {target} in this image.") -> ``grounding``
  (a target stated absent, :func:`stated_absent`);
* everything else -> ``report``.

Closed-answer rows (``answer``: grading, classification, region identification) are known only from
``--meta`` (a FundusGen task file). A result row without ``objects`` boxes takes its reference boxes
from the FundusGen ``--meta`` row (:func:`reference_row`). Meta and results are joined by row
position; :func:`check_meta_alignment` stops at the first pair whose user prompt or image file name
differ (a wrong or reordered ``--meta``).
"""
from __future__ import annotations

import difflib
import logging
import os
import re
from functools import lru_cache
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.vocab import FINDINGS, GRADE_SCALES, canonical_finding, lesion_ids
from fundusexpert_plugin.eval.mcq import check_answer_letter, is_mcq_prompt, parse_options
from fundusexpert_plugin.eval.parse import LabeledBox, boxes_to_px, canonical_label, find_boxes, needs_resized_size, qwen_resized_size
from fundusexpert_plugin.core import jsonl as _jsonl

logger = logging.getLogger(__name__)

TASKS = ('grounding', 'mcq', 'report', 'answer')
_PLACEHOLDER = re.compile(r'<ref-object>|<bbox>')


def read_jsonl(path: str) -> List[dict]:
    """All objects of a jsonl file (blank lines skipped).

    Raises:
        ValueError: a line is not a JSON object (message: ``path:line: ...``).
    """
    return _jsonl.load_jsonl(path)


def _bad(where: str, field: str, value, expected: str) -> FundusDataError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + '...'
    return FundusDataError(f'{where}: {field} = {shown}: expected {expected}, got {type(value).__name__}',
                           reason='bad_field')


def check_box(box, where: str, field: str, *, lengths: Tuple[int, ...] = (4,)) -> None:
    """``box`` is a list of finite JSON numbers whose length is in ``lengths`` (xyxy: 4).

    Raises:
        FundusDataError: ``'<where>: <field> = <value>: expected ...'`` (e.g. ``objects.bbox[0]``).
    """
    if not isinstance(box, (list, tuple)) or len(box) not in lengths or not all(_jsonl.is_json_number(v) for v in box):
        sizes = ' or '.join(str(n) for n in lengths)
        raise _bad(where, field, box, f'a list of {sizes} numbers')


def check_swift_row(row: dict, where: str, *, require_response: bool = True) -> None:
    """Check the JSON types of the ms-swift row fields the scorers read (module docstring).

    ``messages``: a list of objects with a string ``role`` and a string, list or null ``content``;
    ``images``: a path, or a list of paths or ``{"path": ...}`` objects (ms-swift's preprocessor wraps a
    single path the same way); ``labels``: string or null;
    ``objects``: an object with a list ``ref``, a list ``bbox`` of number lists of even length
    (xyxy boxes have 4; 2-number points are ignored by the scorers, as swift normalises pairs),
    ``bbox_type`` ``'real'`` or ``'norm1'``; ``response`` (when ``require_response``): a string
    (``swift infer`` always writes one; ``''`` is an empty answer).

    Args:
        row: one JSON object of the file.
        where: ``'<file>:<line>'`` for messages.

    Raises:
        FundusDataError: ``'<where>: <field> = <value>: expected ..., got <type>'``, the field named
            with its position (``messages[1].role``, ``objects.bbox[0]``, ``images[0]``).
    """
    if require_response and 'response' not in row:
        raise FundusDataError(f'{where}: response: missing (swift infer writes the generated text there)',
                              reason='bad_field')
    if require_response and not isinstance(row['response'], str):
        raise _bad(where, 'response', row['response'], 'the generated text (a string)')
    for i, m in enumerate(_list_field(row, 'messages', where, 'a list of {role, content} objects')):
        if not isinstance(m, dict):
            raise _bad(where, f'messages[{i}]', m, 'an object {role, content}')
        if not isinstance(m.get('role'), str):
            raise _bad(where, f'messages[{i}].role', m.get('role'), 'a string')
        if m.get('content') is not None and not isinstance(m['content'], (str, list)):
            raise _bad(where, f'messages[{i}].content', m['content'], 'a string')
    if row.get('labels') is not None and not isinstance(row['labels'], str):
        raise _bad(where, 'labels', row['labels'], 'the reference text (a string)')
    images = row.get('images')
    for i, img in enumerate([images] if isinstance(images, str) else  # one path: swift wraps it too
                            _list_field(row, 'images', where, 'a path or a list of image paths')):
        path = img.get('path') if isinstance(img, dict) else img
        if not isinstance(img, (str, dict)) or (path is not None and not isinstance(path, str)):
            raise _bad(where, f'images[{i}]', img, 'a path or {"path": ...}')
    objects = row.get('objects')
    if objects is None:
        return
    if not isinstance(objects, dict):
        raise _bad(where, 'objects', objects, 'an object {ref, bbox, bbox_type}')
    _list_field(objects, 'ref', where, 'a list', prefix='objects.')
    for i, box in enumerate(_list_field(objects, 'bbox', where, 'a list', prefix='objects.')):
        check_box(box, where, f'objects.bbox[{i}]', lengths=(2, 4, 6, 8))
    if objects.get('bbox_type') not in (None, 'real', 'norm1'):
        raise _bad(where, 'objects.bbox_type', objects['bbox_type'], "'real' or 'norm1'")


def _list_field(obj: dict, key: str, where: str, expected: str, prefix: str = '') -> list:
    """``obj[key]`` when it is a list, ``[]`` when absent or null; else the named error."""
    value = obj.get(key)
    if value is not None and not isinstance(value, list):
        raise _bad(where, prefix + key, value, expected)
    return value or []


def read_results(path: str) -> List[dict]:
    """The rows of a ``swift infer`` result jsonl, each checked by :func:`check_swift_row`.

    Row ``i`` (0-based, blank lines not counted) is the row that ``--meta`` index ``i`` describes.

    Raises:
        FileNotFoundError: no such file.
        FundusDataError: a line is not a JSON object, or a field has the wrong type
            (``'<path>:<line>: <field> = ...'``), or the file holds no row.
    """
    rows = []
    for line_no, row in _jsonl.read_jsonl(path):
        check_swift_row(row, f'{path}:{line_no}')
        rows.append(row)
    if not rows:
        raise FundusDataError(f'{path}: no result row (the file is empty); expected the jsonl that swift infer '
                              'writes (--result_path)', reason='empty_file')
    return rows


#: FundusGen task kind -> scorer (a FundusGen task file can serve as ``--meta``)
FUNDUSGEN_KIND_TO_TASK = {'region_detection': 'grounding', 'grounded_report': 'report', 'report': 'report',
                          'diagnosis': 'report', 'mcq': 'mcq', 'grading': 'answer', 'classification': 'answer',
                          'region_identification': 'answer'}


_LESIONS = frozenset(lesion_ids())   # consistency is about lesions, not anatomy


def consistency_labels(labels: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Label ids of ``positives``/``negatives`` as clinical consistency reads them.

    Each label goes through the vocabulary's alias table (:func:`vocab.canonical_finding`, the
    function the builder reads labels with: ``'optic_disk'`` -> ``'optic_disc'``, ``'cws'`` ->
    ``'cotton_wool_spots'``); anatomy (optic disc, cup, macula, fovea) is left out, as it is not a
    finding to be consistent about; any other label (a diagnosis of the judge's lexicon such as
    ``'glaucoma'``, or an unknown one) is kept as written, for the judge check of
    :func:`check_judge_labels`. Repeats are dropped.

    Returns:
        ``(ids, anatomy_left_out)``, both in input order.
    """
    ids, left_out = [], []
    for label in labels:
        fid = canonical_finding(label)
        if fid is not None and fid not in _LESIONS:
            left_out.append(label)
        else:
            ids.append(fid or label)
    return list(dict.fromkeys(ids)), left_out


def _label_hint(label: str, known: Sequence[str]) -> str:
    names = {k.replace('_', ' '): k for k in known}
    names.update({n.lower().replace('_', ' '): f.id for f in FINDINGS.values() if f.id in known
                  for n in (f.id, f.en, *f.aliases)})
    close = difflib.get_close_matches(str(label).lower().replace('_', ' '), list(names), n=3)
    return f'; did you mean {", ".join(repr(c) for c in dict.fromkeys(names[c] for c in close))}?' if close else ''


def check_judge_labels(meta: Mapping, judge, where: str) -> None:
    """Every ``positives``/``negatives`` id of a meta record is one the judge can read.

    Only a judge with a closed vocabulary (``judge.closed_vocabulary``: the offline
    :class:`~fundusexpert_plugin.core.lexicon_judge.LexiconJudge`) is checked: it can never find
    a label outside ``judge.vocabulary``, so such a positive would always cost a point. An
    open-vocabulary judge (the LLM judge) is asked about any label by name and is not checked.

    Raises:
        FundusDataError: ``"<where>: positives: label 'cwss' is not in the LexiconJudge
            vocabulary ...; did you mean 'cotton_wool_spots'?"`` for the first such label.
    """
    if judge is None or not getattr(judge, 'closed_vocabulary', False):
        return
    known = list(judge.vocabulary)
    for key in ('positives', 'negatives'):
        for label in meta.get(key) or []:
            if label not in known:
                raise FundusDataError(
                    f'{where}: {key}: label {label!r} is not in the {type(judge).__name__} vocabulary (it could '
                    f'never be found, so it would always count as not mentioned){_label_hint(label, known)} Known: '
                    f'{sorted(known)}; aliases of the vocabulary are accepted; add a term to the lexicon JSON '
                    '(--lexicon) or use the LLM judge (--judge openai) for other labels', reason='unknown_label')


def known_absent_target(row: Mapping) -> Optional[str]:
    """The FundusGen row's ``target`` when the source marks it absent (no ``objects`` box, the target in
    ``negatives``: a region detection row answered "The image shows no ..."), else ``None``."""
    target = row.get('target')
    objects = row.get('objects') or {}
    return target if target and not objects.get('bbox') and target in (row.get('negatives') or []) else None


def fundusgen_category(row: Mapping) -> Optional[str]:
    """The scoring category of a FundusGen row: for an MCQ item the finding id it asks about
    (``target``: the correct option's class, so per-category accuracy says which classes are
    confused; ours), else the task name (``row['task']``); ``None`` when the row has neither."""
    if row.get('kind') == 'mcq' and isinstance(row.get('target'), str) and row['target']:
        return row['target']
    return row.get('task')


def meta_from_fundusgen_row(row: dict) -> dict:
    """Meta record of a FundusGen row (``kind``, ``task``, ``answer_letter``, ``positives``,
    ``negatives``, ``full_gt_boxes_px``, ``answer_text``, ``grade_scale``, ``reference``): scorer from
    :data:`FUNDUSGEN_KIND_TO_TASK`, category = the task name, positives and negatives read by
    :func:`consistency_labels` (aliases resolved, anatomy left out: it is not a finding to be consistent
    about); category :func:`fundusgen_category`. Closed-answer kinds (grading,
    classification, region identification; :mod:`.answers`) carry their reference answer text and grade
    scale. A grounding row of a target the source states absent (:func:`known_absent_target`) gets
    ``target_absent: True``. A row with ``objects`` boxes keeps them as ``reference`` (``{'messages': the context, 'labels':
    the reference answer, 'objects': ...}``, a row for :func:`reference_boxes`), used when the result row
    has no ``objects`` of its own (:func:`reference_row`). Kinds without a scorer here (vqa, data-only
    tasks) are left to content inference."""
    meta = {'category': fundusgen_category(row),
            'positives': consistency_labels(row.get('positives') or [])[0],
            'negatives': consistency_labels(row.get('negatives') or [])[0]}
    if row.get('full_gt_boxes_px'):  # the answer shows only part of the boxes: score against all of them
        meta['full_gt_boxes_px'] = row['full_gt_boxes_px']
    if _object_boxes(row):   # the reference boxes, for a result row that lost its objects
        messages = [m for m in row.get('messages') or [] if isinstance(m, dict)]
        last_is_answer = bool(messages) and messages[-1].get('role') == 'assistant'
        meta['reference'] = {'messages': messages[:-1] if last_is_answer else messages,
                             'labels': messages[-1].get('content') if last_is_answer else None,
                             'objects': row['objects']}
    task = FUNDUSGEN_KIND_TO_TASK.get(row.get('kind'))
    if task is not None:
        meta['task'] = task
    if task == 'grounding' and known_absent_target(row):
        meta['target_absent'] = True
    if row.get('answer_letter'):
        meta['answer'] = row['answer_letter']
    if task == 'answer':
        answers = [m.get('content') for m in row.get('messages') or [] if isinstance(m, dict)
                   and m.get('role') == 'assistant']
        if answers and isinstance(answers[-1], str):
            meta['answer_text'] = answers[-1]
        if row.get('grade_scale'):
            meta['grade_scale'] = row['grade_scale']
    return meta


def check_meta_record(rec: dict, where: str) -> None:
    """Check the fields of one ``--meta`` record that the scorers read.

    ``task``: one of :data:`TASKS` (or absent: inferred from the row); ``answer``: a string, the
    option letter (outer whitespace ignored; that it is one of the row's options is checked against
    the result row by :func:`report.check_meta`); ``options``: an object ``{letter: text}``;
    ``positives``/``negatives``: lists of label ids (vocabulary aliases accepted,
    :func:`consistency_labels`; the judge check is :func:`check_judge_labels`);
    ``target_absent``: a boolean (a grounding row whose target the source states absent);
    ``full_gt_boxes_px``: ``[[label, [x1, y1, x2, y2]], ...]`` in original-image pixels.

    Raises:
        FundusDataError: ``'<where>: <field> = <value>: ...'``.
    """
    task = rec.get('task')
    if task is not None and task not in TASKS:
        raise FundusDataError(f'{where}: task = {task!r}: is not one of {TASKS} (a FundusGen task file given as '
                              '--meta is recognised by its kind and messages fields)', reason='bad_field')
    if rec.get('answer') is not None and not isinstance(rec['answer'], str):
        raise _bad(where, 'answer', rec['answer'], 'an option letter (a string)')
    if rec.get('target_absent') is not None and not isinstance(rec['target_absent'], bool):
        raise _bad(where, 'target_absent', rec['target_absent'], 'true or false')
    for key in ('answer_text', 'grade_scale'):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise _bad(where, key, rec[key], 'a string')
    if rec.get('grade_scale') is not None and rec['grade_scale'] not in GRADE_SCALES:
        raise _bad(where, 'grade_scale', rec['grade_scale'], f'one of {sorted(GRADE_SCALES)}')
    if rec.get('options') is not None and not isinstance(rec['options'], dict):
        raise _bad(where, 'options', rec['options'], 'an object {letter: text}')
    for key in ('positives', 'negatives'):
        values = rec.get(key)
        if values is not None and (not isinstance(values, list) or not all(isinstance(v, str) for v in values)):
            raise _bad(where, key, values, 'a list of label ids')
    boxes = rec.get('full_gt_boxes_px')
    if boxes is not None:
        if not isinstance(boxes, list):
            raise _bad(where, 'full_gt_boxes_px', boxes, 'a list of [label, [x1, y1, x2, y2]]')
        for i, pair in enumerate(boxes):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], str):
                raise _bad(where, f'full_gt_boxes_px[{i}]', pair, '[label, [x1, y1, x2, y2]]')
            check_box(pair[1], where, f'full_gt_boxes_px[{i}][1]')


def load_meta(path: Union[str, Sequence[str]], n_rows: Optional[int] = None) -> Dict[int, dict]:
    """``--meta`` side file(s) -> ``{row index: record}``.

    How meta and results are joined: by row position. Either every record has ``index`` (the
    0-based row number of the result file, blank lines not counted), or the file is a FundusGen
    task file (rows with ``kind`` and ``messages``, in the order ``swift infer`` read them; record
    ``i`` describes result row ``i``), converted with :func:`meta_from_fundusgen_row`. Several
    FundusGen task files are read as their concatenation in the order given (the rows of a
    ``swift infer --val_dataset a b`` run). Every record is checked with :func:`check_meta_record`
    (FundusGen rows also with :func:`check_swift_row`, and an MCQ row's ``answer_letter`` must be one of
    its prompt's options, :func:`mcq.check_answer_letter`). ``positives``/``negatives`` are read by
    :func:`consistency_labels` (aliases resolved, anatomy left out). Every record keeps ``source``:
    ``{'from': 'fundusgen'|'index', 'where': '<file>:<line>'}``, for a FundusGen record also
    ``'prompt'`` and ``'image'`` (:func:`check_meta_alignment`), for an index record the anatomy labels
    left out (``'anatomy_left_out'``, when any); a ``source`` field of an index record is replaced.

    Args:
        path: the side file, or a list of FundusGen task files (one file of ``index`` records
            cannot be concatenated with others: its indices already name result rows).
        n_rows: the number of result rows; when given, an ``index`` record must name one of them
            (``0 <= index < n_rows``). A FundusGen task file longer than the result is not an error
            (an interrupted or limited ``swift infer``): :func:`report.evaluate_rows` notes the count.

    Raises:
        FundusDataError: ``'<path>:<line>: <field> ...'``: a record without an integer ``index`` (and
            the file is not FundusGen rows), a repeated or out-of-range index, a bad field, a label both
            in positives and negatives, a FundusGen ``answer_letter`` that is not an option, or
            ``'<path>: ...'`` for a file of ``index`` records given with other meta files.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    files = [(p, list(_jsonl.read_jsonl(p))) for p in paths]
    fundusgen = [all('kind' in rec and 'messages' in rec for _, rec in recs) for _, recs in files]
    if len(files) == 1 and not (files[0][1] and fundusgen[0]):
        return _load_index_meta(*files[0], n_rows)
    for (p, _), is_fundusgen in zip(files, fundusgen):   # several files: FundusGen task files only
        if not is_fundusgen:
            raise FundusDataError(f'{p}: not a FundusGen task file (rows with kind and messages); only FundusGen '
                                  'task files can be given as several --meta (concatenated in order)',
                                  reason='bad_field')
    out = {}
    for p, records in files:
        for line_no, rec in records:
            where = f'{p}:{line_no}'
            check_swift_row(rec, where, require_response=False)
            check_meta_record({k: rec[k] for k in ('positives', 'negatives', 'full_gt_boxes_px') if k in rec}, where)
            if rec.get('answer_letter') is not None and not isinstance(rec['answer_letter'], str):
                raise _bad(where, 'answer_letter', rec['answer_letter'], 'an option letter (a string)')
            prompt = _prompt_key(rec)
            if rec.get('answer_letter') and is_mcq_prompt(prompt or ''):
                check_answer_letter(rec['answer_letter'], parse_options(prompt), where, 'answer_letter')
            meta = meta_from_fundusgen_row(rec)
            meta['source'] = {'from': 'fundusgen', 'where': where, 'prompt': prompt, 'image': _image_name(rec)}
            out[len(out)] = meta
    return out


def _load_index_meta(path: str, records: List[Tuple[int, dict]], n_rows: Optional[int]) -> Dict[int, dict]:
    out: Dict[int, dict] = {}
    first_line: Dict[int, int] = {}
    for line_no, rec in records:
        where = f'{path}:{line_no}'
        index = rec.get('index')
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise FundusDataError(f'{where}: index = {index!r}: must be the 0-based row number of the result '
                                  'file', reason='bad_field')
        if index in out:
            raise FundusDataError(f'{where}: index = {index}: appears twice (first on line {first_line[index]})',
                                  reason='duplicate_index')
        if n_rows is not None and index >= n_rows:
            raise FundusDataError(f'{where}: index = {index}: no such result row (the result file has {n_rows} '
                                  f'rows, numbered from 0)', reason='index_out_of_range')
        check_meta_record(rec, where)
        rec = dict(rec)
        left_out: List[str] = []
        for key in ('positives', 'negatives'):
            if rec.get(key) is not None:
                rec[key], anatomy = consistency_labels(rec[key])
                left_out += anatomy
        both = set(rec.get('positives') or []) & set(rec.get('negatives') or [])
        if both:
            raise FundusDataError(f'{where}: negatives: {sorted(both)} also in positives (after aliases are resolved); '
                                  'a finding is either present or absent', reason='bad_field')
        rec['source'] = {'from': 'index', 'where': where, **({'anatomy_left_out': left_out} if left_out else {})}
        out[index], first_line[index] = rec, line_no
    return out


_IMAGE_TAG = re.compile(r'<image>')


def _prompt_key(row: dict) -> Optional[str]:
    """The last user message's text without ``<image>`` tags and outer whitespace; ``None`` when the
    row has no user message with text (swift may put a system message first: it is not read)."""
    users = [m.get('content') for m in row.get('messages') or [] if isinstance(m, dict) and m.get('role') == 'user']
    return _IMAGE_TAG.sub('', users[-1]).strip() if users and isinstance(users[-1], str) else None


def _image_name(row: dict) -> Optional[str]:
    """File name of the row's first image (folders differ: swift makes FundusGen paths absolute)."""
    path = image_path(row)
    return os.path.basename(path.replace('\\', '/')) if isinstance(path, str) and path else None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 50 else text[:47] + '...')


def check_meta_alignment(rows: Sequence[dict], meta: Mapping[int, dict], result_path: str) -> None:
    """Check that each result row and the FundusGen ``--meta`` row joined to it are the same sample.

    For every meta record with a ``source`` (:func:`load_meta` of FundusGen task files): the last
    user prompt (``<image>`` tags and outer whitespace removed) and the first image's file name of
    result row ``i`` must equal those of meta row ``i``. A result row without a user prompt or an
    image (a hand-made file) is not checked on that field. Linear in the rows; no file is read
    unless a pair differs (then the result file is re-read for the line number).

    Raises:
        FundusDataError: ``'<result>:<line>: user prompt = ...: differs from <meta>:<line> ...'``
            (or ``image file name``) for the first pair that differs.
    """
    for i, row in enumerate(rows):
        source = (meta.get(i) or {}).get('source')
        if not source:
            continue
        mismatch = None
        prompt = _prompt_key(row)
        if prompt is not None and source.get('prompt') is not None and prompt != source['prompt']:
            mismatch = ('user prompt', prompt, source['prompt'])
        image = _image_name(row)
        if mismatch is None and image is not None and source.get('image') is not None and image != source['image']:
            mismatch = ('image file name', image, source['image'])
        if mismatch is not None:
            line = next((n for k, (n, _) in enumerate(_jsonl.read_jsonl(result_path)) if k == i), i + 1)
            field, got, expected = mismatch
            raise FundusDataError(
                f'{result_path}:{line}: {field} = {_shown(got)}: differs from {source["where"]} ({_shown(expected)}); '
                '--meta is joined to the result by row position: give the FundusGen task file(s) that swift infer '
                'read, in --val_dataset order', reason='meta_mismatch')


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
    images = [images] if isinstance(images, (str, dict)) else images   # one image, as swift accepts it
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


_BOX_MARKUP = re.compile(
    r'<ref-object>|<bbox>|<ref>.*?</ref>|<box>.*?(?:</box>|$)|<\|object_ref_start\|>.*?<\|object_ref_end\|>'
    r'|<\|box_start\|>.*?(?:<\|box_end\|>|$)|\{[^{}]*\}|```(?:json)?', re.S | re.I)
_LETTER = re.compile(r'[^\W\d_]')   # a letter of any script (CJK included), not a digit or '_'


def has_text_beyond_boxes(text: Optional[str]) -> bool:
    """Whether ``text`` holds words besides its grounding markup: the placeholders ``<ref-object>``/
    ``<bbox>``, InternVL ``<ref>..</ref><box>..</box>``, Qwen ``<|object_ref_start|>..<|box_end|>``,
    JSON ``{"bbox_2d": ..., "label": ...}`` objects and bare number lists. ``<ref-object><bbox><bbox>``
    (a FundusGen region detection answer) has none; a grounded report has sentences. ``None`` or
    ``''``: ``False``."""
    return isinstance(text, str) and bool(_LETTER.search(_BOX_MARKUP.sub(' ', text)))


#: ``answer_absent`` texts of earlier versions of the shipped ``region_detection`` task (v1-v3), still
#: read as absent answers in results built with them
EARLIER_ABSENT_ANSWERS = ('There are no {target} in this image.',)


@lru_cache(maxsize=1)
def _absent_answer_patterns() -> Tuple[re.Pattern, ...]:
    """``answer_absent`` texts of the shipped region detection tasks (and :data:`EARLIER_ABSENT_ANSWERS`)
    as patterns, ``{target}`` any text."""
    from fundusexpert_plugin.tasks.config import load_tasks

    try:
        tasks = load_tasks()
    except (FileNotFoundError, FundusDataError) as exc:   # an installation without templates/
        logger.debug('no shipped templates for absent answers: %s', exc)
        return ()
    texts = [text for task in tasks if task.kind == 'region_detection'
             for text in (task.answer_absent or {}).values()]
    patterns = []
    for text in dict.fromkeys(texts + list(EARLIER_ABSENT_ANSWERS)):
        parts = re.split(r'\{(?:target|grounded_target)\}', ' '.join(text.split()).rstrip('.。'))
        patterns.append(re.compile('[^.。!?！？]+?'.join(re.escape(p) for p in parts) + '[.。]?', re.I))
    return tuple(patterns)


def stated_absent(text: Optional[str]) -> bool:
    """Whether ``text`` is a region detection "absent" answer of a shipped task (``answer_absent`` of
    ``templates/region_detection.yaml`` or :data:`EARLIER_ABSENT_ANSWERS`, EN or ZH, ``{target}`` any
    text within one sentence; whitespace runs count as one space, case and the final full stop ignored)."""
    if not isinstance(text, str) or not text.strip():
        return False
    text = ' '.join(text.split())
    return any(p.fullmatch(text) for p in _absent_answer_patterns())


def infer_task(row: dict, meta: Optional[dict] = None) -> str:
    """``meta['task']`` if given, else mcq / report / grounding from the content (module docstring).

    Raises:
        ValueError: ``meta['task']`` is not one of :data:`TASKS`.
    """
    task = (meta or {}).get('task')
    if task is not None:
        if task not in TASKS:
            raise ValueError(f'meta task {task!r} is not one of {TASKS}')
        return task
    if is_mcq_prompt(user_prompt(row)):
        return 'mcq'
    labels = row.get('labels')
    if _object_boxes(row) or find_boxes(labels):
        return 'report' if has_text_beyond_boxes(labels) else 'grounding'
    return 'grounding' if stated_absent(labels) else 'report'


def reference_row(row: dict, meta: Optional[dict] = None) -> dict:
    """The row whose ``objects`` hold the reference boxes of result row ``row``.

    ``row`` itself when it has ``objects`` boxes (``swift infer`` copies them from the dataset row);
    otherwise the meta record's ``reference`` (the FundusGen row's context, answer and ``objects``,
    :func:`meta_from_fundusgen_row`) when there is one; otherwise ``row`` (its ``labels`` are parsed).
    """
    reference = (meta or {}).get('reference')
    return row if _object_boxes(row) or not reference else reference


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
