"""Score a ``swift infer`` result file with every scorer that applies, and write the outputs.

Per row (:mod:`.results` says how the task kind is found):

* ``mcq`` rows -> :mod:`.mcq` (answer/category/options from ``--meta``, else ``labels``, the TSV
  and the prompt);
* rows with reference boxes (grounding, grounded reports) -> :mod:`.grounding`; a malformed predicted
  box (:func:`parse.box_fault`: inverted corners, a value outside its space) is a prediction that
  matches nothing, counted in ``grounding.malformed_boxes``, noted, and listed per row in
  ``samples.jsonl`` (``pred_faults``, one entry per ``pred`` box, ``''`` for a well-formed one);
* every grounding row scored is counted in ``grounding_responses``: ``n_rows``, ``n_rows_with_boxes``
  (at least one box read), ``n_empty_responses``, ``n_unparsed_box_tags`` (box tags holding no
  readable box, :func:`parse.unparsed_box_tags`, e.g. three numbers) and
  ``n_rows_with_unparsed_box_tags``; such rows are flagged in ``samples.jsonl`` (``empty_response``,
  ``unparsed_box_tags``) and noted;
* grounding rows without a reference box are kept out of acc50/AP (nothing to match) and counted:
  ``grounding_absent`` for a target stated absent (``target_absent`` in ``--meta``, set for FundusGen
  region detection rows whose target is in ``negatives``, or a reference answer that is the shipped
  "The image shows no ..." sentence), ``grounding_no_reference`` for rows with no reference at all; each
  ``{'n_rows', 'n_rows_with_boxes', 'n_boxes'}`` (parsable predicted boxes). On ``grounding_absent``
  every such box is a false alarm;
* rows with ``positives`` in ``--meta`` (reports) -> :mod:`.consistency` through a judge;
* before any row is scored, :func:`check_meta` refuses a meta MCQ answer that is not one of the
  row's options and a positives/negatives label a closed-vocabulary judge cannot read;
* closed-answer rows (grading, classification, region identification; task ``answer`` from a
  FundusGen ``--meta``) -> :mod:`.answers` (exact match; grades, accuracy and quadratic kappa).

Outputs in ``out_dir``: ``metrics.json`` (all metrics, notes, settings), ``samples.jsonl`` (one
scored record per row), ``mcq_per_category.png`` when there are MCQ items, and ``report.html``
(self-contained: see :mod:`.report_html`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from fundusexpert_plugin.eval import answers, consistency, grounding, mcq
from fundusexpert_plugin.eval.parse import (FAULTS, LabeledBox, canonical_label, find_boxes, needs_resized_size,
                                            unparsed_box_tags)
from fundusexpert_plugin.eval.results import (check_judge_labels, image_path, image_size, infer_task, predicted_boxes,
                                              reference_boxes, reference_row, stated_absent, user_prompt)
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.jsonl import write_jsonl


@dataclass
class EvalOptions:
    """Scoring settings.

    Attributes:
        spaces: per-convention box space override (:data:`parse.DEFAULT_SPACES`).
        min_pixels, max_pixels: Qwen resize budget used at inference (:func:`parse.qwen_resized_size`).
        ap_score_mode: ``'rank'`` or ``'constant'`` (:func:`grounding.coco_ap`).
        grid_decode: ``'centre'`` (default) or ``'edge'`` (InternVL's evaluation rule), how 0-999
            values become pixels (:func:`geometry.from_grid999`).
        categories: every MCQ category of the benchmark (e.g. the TSV's column), so categories
            without items are listed too (:func:`mcq.accuracy`).
        max_html_samples: rows shown in report.html.
    """

    spaces: Dict[str, str] = field(default_factory=dict)
    min_pixels: Optional[int] = None
    max_pixels: Optional[int] = None
    ap_score_mode: str = 'rank'
    grid_decode: str = 'centre'
    categories: Optional[List[str]] = None
    max_html_samples: int = 50


def _mcq_inputs(row: dict, meta: dict, tsv_match: Optional[Callable]) -> Tuple[str, dict, Optional[str]]:
    """``(answer, options, category)`` of an MCQ row: ``--meta`` first (its ``answer`` without outer
    whitespace, the letter :func:`check_meta` checks), then the TSV item, then the row."""
    prompt = user_prompt(row)
    item = tsv_match(prompt, image_path(row)) if tsv_match else None
    options = meta.get('options') or (item.options if item else None) or mcq.parse_options(prompt)
    answer = str(meta.get('answer') or '').strip() or (item.answer if item else None) or row.get('labels') or ''
    category = meta.get('category') or (item.category if item else None)
    return answer, options, category


def _mcq_record(row: dict, meta: dict, tsv_match: Optional[Callable]) -> mcq.McqResult:
    answer, options, category = _mcq_inputs(row, meta, tsv_match)
    return mcq.score_item(row.get('response'), answer, options, category)


def _check_options_match_prompt(options: dict, prompt: str, where: str, index: int) -> None:
    """An index meta record's ``options`` must be the options its result row's prompt lists (when the
    prompt lists any): a side file of another result would score every row against another question."""
    if not mcq.is_mcq_prompt(prompt):
        return
    offered = {k: v.strip() for k, v in mcq.parse_options(prompt).items()}
    listed = {str(k): str(v).strip().splitlines()[0].strip() if str(v).strip() else ''
              for k, v in options.items() if mcq._present(v)}
    if listed != offered:
        raise FundusDataError(f'{where}: options = {sorted(listed)} ({_short(listed)}) do not match the options of '
                              f'result row {index} ({_short(offered)}): is this the side file of another result?',
                              reason='bad_field')


def _short(options: Dict[str, str]) -> str:
    text = '; '.join(f'{k}. {v}' for k, v in sorted(options.items()))
    return text if len(text) <= 80 else text[:77] + '...'


def check_meta(rows: Sequence[dict], meta: Dict[int, dict], *, tsv_match: Optional[Callable] = None,
               judge: Optional[consistency.ConsistencyJudge] = None) -> None:
    """Stop before any scoring on a ``--meta`` record that would silently give or cost points.

    * an MCQ row's meta ``options`` (an ``index`` record, e.g. from ``eval mcq-rows``) must be the
      options its result row's prompt lists, when the prompt lists any (a side file of another
      result would score the row against another question);
    * an MCQ row's meta ``answer`` must be one of the options it is scored against (the meta's
      ``options``, else the TSV item's, else the prompt's): :func:`mcq.check_answer_letter`, the
      check ``mcq-rows`` applies to a TSV row (a FundusGen ``answer_letter`` is checked when the
      meta is loaded, :func:`results.load_meta`);
    * a report row's ``positives``/``negatives`` must be label ids the judge can read when its
      vocabulary is closed (:func:`results.check_judge_labels`; aliases are already resolved).

    Raises:
        FundusDataError: ``'<meta file>:<line>: <field> ...'`` (the record's ``source.where``, else
            ``'meta record <index>'``) for the first such record.
    """
    for index, row in enumerate(rows):
        m = meta.get(index)
        if not m:
            continue
        source = m.get('source') or {}
        where = source.get('where') or f'meta record {index}'
        task = infer_task(row, m)
        if task == 'mcq' and source.get('from') != 'fundusgen' and m.get('options'):
            _check_options_match_prompt(m['options'], user_prompt(row), where, index)
        if task == 'mcq' and m.get('answer') and source.get('from') != 'fundusgen':
            _, options, _ = _mcq_inputs(row, m, tsv_match)
            if options:
                mcq.check_answer_letter(m['answer'], options, where, 'answer')
        if task == 'report' and 'positives' in m:
            check_judge_labels(m, judge, where)


def evaluate_rows(rows: Sequence[dict], meta: Optional[Dict[int, dict]] = None, *,
                  tsv_match: Optional[Callable] = None, judge: Optional[consistency.ConsistencyJudge] = None,
                  options: Optional[EvalOptions] = None) -> Tuple[dict, List[dict]]:
    """Score all rows.

    Args:
        rows: result rows (:func:`results.read_jsonl`).
        meta: ``{row index: side record}`` (:func:`results.load_meta`), joined by row position:
            ``meta[i]`` describes ``rows[i]``. Records whose index is no row and rows without a record
            (when any meta is given) are counted in ``metrics['notes']``; records are checked first
            (:func:`check_meta`).
        tsv_match: from :func:`mcq_tsv.tsv_matcher`, for MCQ answers/categories without meta.
        judge: consistency judge; ``None`` skips consistency (noted in ``metrics['notes']``).
        options: :class:`EvalOptions`.

    Returns:
        ``(metrics, samples)``: the metrics dict written to metrics.json, and one record per row
        (task, image, boxes in pixels, response, per-row scores) for the HTML report. Notes are only
        returned (``metrics['notes']``), never logged: ``fundusexpert eval score`` prints each once.

    Raises:
        FundusDataError: a meta record :func:`check_meta` refuses (file:line and field named).
    """
    meta, options = meta or {}, options or EvalOptions()
    check_meta(rows, meta, tsv_match=tsv_match, judge=judge)
    parse_kwargs = {'spaces': options.spaces, 'min_pixels': options.min_pixels, 'max_pixels': options.max_pixels,
                    'grid_decode': options.grid_decode}
    notes, samples = [], []
    mcq_results, ground, reports, closed = [], [], [], []
    no_image, no_judge, full_gt_rows, tsv_unmatched = 0, 0, 0, 0
    malformed: Dict[str, int] = {fault: 0 for fault in FAULTS}   # predicted boxes, every grounding row
    parsing = dict.fromkeys(('n_rows', 'n_rows_with_boxes', 'n_empty_responses', 'n_unparsed_box_tags',
                             'n_rows_with_unparsed_box_tags'), 0)   # every grounding row scored
    absent: Dict[str, List[int]] = {'stated_absent': [], 'no_reference': []}   # predicted boxes per row
    default_budget = options.max_pixels is None and not os.environ.get('MAX_PIXELS')
    qwen_default = 0
    for index, row in enumerate(rows):
        m = meta.get(index, {})
        task = infer_task(row, m)
        rec = {'index': index, 'task': task, 'image': image_path(row), 'response': row.get('response'),
               'labels': row.get('labels')}
        if task == 'answer':
            res = answers.score_answer(row.get('response'), m.get('answer_text') or row.get('labels') or '',
                                       m.get('category') or 'answer', m.get('grade_scale'))
            closed.append(res)
            rec['answer'] = res.as_dict()
        elif task == 'mcq':
            res = _mcq_record(row, m, tsv_match)
            tsv_unmatched += bool(tsv_match and not str(m.get('answer') or '').strip()
                                  and tsv_match(user_prompt(row), image_path(row)) is None)
            mcq_results.append(res)
            rec['mcq'] = {'answer': res.answer, 'category': res.category, 'strict': res.strict,
                          'lenient': res.lenient, 'strict_hit': res.strict_hit, 'lenient_hit': res.lenient_hit}
        else:
            ref_row = reference_row(row, m)
            has_refs = (bool((ref_row.get('objects') or {}).get('bbox')) or task == 'grounding'
                        or bool(find_boxes(ref_row.get('labels'))))   # a report with literal reference boxes
            if has_refs:
                try:
                    width, height = image_size(rec['image']) if rec['image'] else (None, None)
                except OSError:
                    width = height = None
                if width is None:
                    no_image += 1
                else:
                    gt = full_reference_boxes(m)
                    full_gt_rows += gt is not None
                    gt = gt if gt is not None else reference_boxes(ref_row, width, height, **parse_kwargs)
                    qwen_default += default_budget and needs_resized_size(find_boxes(row.get('response')),
                                                                          options.spaces)
                    pred = predicted_boxes(row, width, height, **parse_kwargs)
                    # the rows of one photo and task (EN and ZH) share image and references: the prompt
                    # and the predictions complete the order, so that rows tie only when identical
                    sample = grounding.GroundingSample(
                        gt=gt, pred=pred, width=width, height=height,
                        key=json.dumps([rec['image'], [[b.label, list(b.box_px)] for b in gt], user_prompt(row),
                                        [[b.label, list(b.box_px)] for b in pred]], ensure_ascii=False))
                    if sample.gt:
                        ground.append(sample)
                    else:   # nothing to match: kept out of acc50/AP, its boxes counted as false alarms
                        kind = 'stated_absent' if m.get('target_absent') or stated_absent(ref_row.get('labels')) \
                            else 'no_reference'
                        absent[kind].append(len(sample.pred))
                        rec['absent'] = kind
                    rec.update(width=width, height=height, gt=[[b.label, list(b.box_px)] for b in sample.gt],
                               pred=[[b.label, list(b.box_px)] for b in sample.pred])
                    if any(b.malformed for b in sample.pred):
                        rec['pred_faults'] = [b.fault for b in sample.pred]
                        for b in sample.pred:
                            if b.malformed:
                                malformed[b.fault] += 1
                    response = row.get('response')
                    n_unparsed = unparsed_box_tags(response)
                    parsing['n_rows'] += 1
                    parsing['n_rows_with_boxes'] += bool(sample.pred)
                    if not isinstance(response, str) or not response.strip():
                        parsing['n_empty_responses'] += 1
                        rec['empty_response'] = True
                    if n_unparsed:
                        parsing['n_unparsed_box_tags'] += n_unparsed
                        parsing['n_rows_with_unparsed_box_tags'] += 1
                        rec['unparsed_box_tags'] = n_unparsed
            if task == 'report' and 'positives' in m:   # a FundusGen meta gives every row its positives
                if judge is None:
                    no_judge += 1
                else:
                    res = consistency.evaluate_report(judge, row.get('response'), m['positives'], m.get('negatives'))
                    reports.append(res)
                    rec['consistency'] = res.as_dict()
        samples.append(rec)
    orphans = sum(1 for i in meta if not 0 <= i < len(rows))
    if orphans:
        notes.append(f'{orphans} meta record(s) have no result row (the result has {len(rows)} rows; meta and '
                     'results are matched by row position) and are not scored')
    without_meta = sum(1 for i in range(len(rows)) if i not in meta) if meta else 0
    if without_meta:
        notes.append(f'{without_meta} result row(s) have no meta record: task, answer and labels come from the '
                     'row itself')
    if tsv_unmatched:
        notes.append(f'{tsv_unmatched} MCQ row(s) match no --tsv item (same prompt, and the same image where '
                     'prompts repeat): answer from the row itself, category Unknown')
    if no_image:
        notes.append(f'{no_image} grounding row(s) skipped: image file missing or unreadable (sizes are needed '
                     'to map boxes to pixels)')
    if qwen_default:
        notes.append(f'{qwen_default} row(s) hold Qwen boxes (pixels of the resized image) decoded with '
                     "qwen_vl_utils' default image budget: neither --max-pixels nor MAX_PIXELS is set; pass the "
                     'value used at inference, or these boxes land in the wrong place')
    if sum(malformed.values()):
        notes.append(f"{sum(malformed.values())} predicted box(es) are malformed ({malformed['inverted']} with inverted "
                     f"corners, x1 > x2 or y1 > y2; {malformed['out_of_range']} with a value outside its space, e.g. "
                     'above 1000 on the 0-999 grid): each counts as a prediction that matches nothing '
                     '(grounding.malformed_boxes)')
    if parsing['n_unparsed_box_tags']:
        notes.append(f"{parsing['n_unparsed_box_tags']} box tag(s) in {parsing['n_rows_with_unparsed_box_tags']} "
                     "grounding row(s) hold no readable box (not four numbers): no prediction is read from them "
                     "(grounding_responses.n_unparsed_box_tags; samples.jsonl unparsed_box_tags)")
    if parsing['n_empty_responses']:
        notes.append(f"{parsing['n_empty_responses']} grounding row(s) have an empty response "
                     "(grounding_responses.n_empty_responses)")
    if full_gt_rows:
        notes.append(f'{full_gt_rows} grounding row(s) show only part of their boxes in the answer (a box cap); '
                     'they are scored against the full ground truth from --meta (full_gt_boxes_px)')
    no_reference = len(absent['stated_absent']) + len(absent['no_reference'])
    if no_reference:
        stated = absent_counts(absent['stated_absent'])
        notes.append(f"{no_reference} grounding row(s) have no reference box (no objects bbox, no boxes in labels) "
                     f"and are not in acc50/AP: {stated['n_rows']} of a target stated absent, "
                     f"{stated['n_rows_with_boxes']} of them answered with boxes (false alarms; grounding_absent), "
                     f"{len(absent['no_reference'])} without any reference (grounding_no_reference)")
    anatomy = sorted({label for m in meta.values() for label in (m.get('source') or {}).get('anatomy_left_out', [])})
    if anatomy:
        notes.append(f'meta positives/negatives {anatomy} are anatomy, not findings: left out of clinical consistency '
                     '(as for FundusGen rows)')
    if no_judge:
        notes.append(f'{no_judge} row(s) with positives not judged: no judge given')
    if not any('positives' in m for m in meta.values()) and any(s['task'] == 'report' for s in samples):
        notes.append('clinical consistency skipped: no --meta records with positives/negatives')
    metrics = {
        'n_rows': len(rows),
        'tasks': {t: sum(s['task'] == t for s in samples) for t in ('grounding', 'mcq', 'report', 'answer')},
        'mcq': mcq.accuracy(mcq_results, categories=options.categories) if mcq_results else None,
        'grounding': grounding.grounding_metrics(ground, options.ap_score_mode) if ground else None,
        'grounding_absent': absent_counts(absent['stated_absent']) if absent['stated_absent'] else None,
        'grounding_no_reference': absent_counts(absent['no_reference']) if absent['no_reference'] else None,
        'grounding_responses': parsing if parsing['n_rows'] else None,
        'consistency': ({**consistency.aggregate(reports), 'judge': type(judge).__name__} if reports else None),
        'answers': answers.answer_metrics(closed) if closed else None,
        'notes': notes,
        'settings': {'spaces': options.spaces, **_pixel_budget(options), 'ap_score_mode': options.ap_score_mode,
                     'grid_decode': options.grid_decode},
    }
    if metrics['grounding'] is not None:
        metrics['grounding']['n_skipped_no_image'] = no_image
    return metrics, samples


def _pixel_budget(options: EvalOptions) -> dict:
    """``min_pixels``/``max_pixels`` as Qwen boxes were decoded (the option, else the ``MIN_PIXELS``/
    ``MAX_PIXELS`` environment variable as given, else ``None``: qwen_vl_utils' default) and where each
    came from (``'option'``, ``'environment'``, ``'default'``), for ``metrics['settings']``."""
    out = {}
    for key, value in (('min_pixels', options.min_pixels), ('max_pixels', options.max_pixels)):
        raw = os.environ.get(key.upper())
        if value is not None:
            out[key], out[f'{key}_from'] = value, 'option'
        elif raw:
            out[key], out[f'{key}_from'] = (int(raw) if raw.strip().isdigit() else raw), 'environment'
        else:
            out[key], out[f'{key}_from'] = None, 'default'
    return out


def absent_counts(n_pred_per_row: Sequence[int]) -> dict:
    """``{'n_rows', 'n_rows_with_boxes', 'n_boxes'}`` of grounding rows without a reference box, from the
    number of parsable predicted boxes of each row (a row with boxes is a false alarm when its target
    is stated absent)."""
    return {'n_rows': len(n_pred_per_row), 'n_rows_with_boxes': sum(1 for n in n_pred_per_row if n),
            'n_boxes': int(sum(n_pred_per_row))}


def full_reference_boxes(meta: dict) -> Optional[List[LabeledBox]]:
    """The full ground truth of a row whose answer shows only some boxes, from its meta record.

    FundusGen rows written under a box cap carry ``full_gt_boxes_px``: ``[[finding_id, [x1, y1, x2,
    y2]], ...]`` in original-image pixels (:mod:`tasks.render`); ``None`` when the meta has none.
    """
    boxes = meta.get('full_gt_boxes_px')
    if not boxes:
        return None
    return [LabeledBox(canonical_label(label), tuple(float(v) for v in box)) for label, box in boxes]


def write_outputs(out_dir: str, metrics: dict, samples: Sequence[dict], *,
                  max_html_samples: int = 50) -> Dict[str, str]:
    """Write metrics.json, samples.jsonl, the per-category PNG (MCQ only; an older one is removed
    when there are no MCQ items) and report.html.

    Returns:
        ``{name: path}`` of the files written.
    """
    from fundusexpert_plugin.eval.report_html import plot_mcq_categories, render_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {'metrics': str(out / 'metrics.json'), 'samples': str(out / 'samples.jsonl'),
             'html': str(out / 'report.html')}
    Path(paths['metrics']).write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding='utf-8')
    write_jsonl(paths['samples'], samples)
    png = None
    if metrics.get('mcq'):
        png = paths['mcq_png'] = str(out / 'mcq_per_category.png')
        plot_mcq_categories(metrics['mcq'], png)
    else:   # a chart of an earlier run into the same folder would describe another result
        (out / 'mcq_per_category.png').unlink(missing_ok=True)
    Path(paths['html']).write_text(render_html(metrics, samples, png, max_samples=max_html_samples), encoding='utf-8')
    return paths
