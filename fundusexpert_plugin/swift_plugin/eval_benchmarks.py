"""FundusExpert benchmarks for ``swift eval`` (evalscope Native backend), without evalscope itself.

Everything a benchmark needs apart from evalscope's classes lives here, as plain functions on
plain data, so the same code is tested where evalscope is not installed:

* items: a benchmark file -> :class:`EvalItem` (the prompt messages sent to the model, and the
  ``swift infer``-style result row and ``--meta`` record that ``fundusexpert eval`` would read);
* scoring: :func:`score_rows` is :func:`fundusexpert_plugin.eval.report.evaluate_rows`, the
  scorer of ``fundusexpert eval``, on result rows built by :func:`result_row`;
* report: :func:`report_entries` turns its metrics dict into ``(metric, group, score, num)``
  entries for evalscope's report.

Benchmarks (:data:`BENCHMARKS`):

* ``fundus_mmbench``: a GMAI-MMBench-schema TSV (:mod:`eval.mcq_tsv`), the paper's prompt
  (``mcq.build_prompt``), strict (paper) and lenient accuracy, overall and per category. The
  categories listed are every category of the file, with ``num`` 0 for one that has no scored
  item (e.g. under ``--eval_limit``).
* ``fundusgen_grounding``: the ``region_detection`` and ``grounded_report`` rows of a FundusGen
  folder, scored by :mod:`eval.grounding` (boxes mapped to original pixels by
  :mod:`eval.results`; Qwen boxes through the resized size that ``$MAX_PIXELS``/``$MIN_PIXELS``
  of the run give, as ms-swift resizes them).
* ``fundusgen_report``: the ``report`` and ``grounded_report`` rows, scored by clinical
  consistency (:mod:`eval.consistency`) with a judge from :func:`make_judge`.
"""
from __future__ import annotations

import base64
import io
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.jsonl import is_json_number, read_jsonl
from fundusexpert_plugin.eval import mcq
from fundusexpert_plugin.eval.mcq_tsv import item_meta, item_to_row, read_tsv
from fundusexpert_plugin.eval.report import EvalOptions, evaluate_rows
from fundusexpert_plugin.eval.results import meta_from_fundusgen_row

MMBENCH, GROUNDING, REPORT = 'fundus_mmbench', 'fundusgen_grounding', 'fundusgen_report'
#: benchmark name -> its subsets (FundusGen task files; the TSV is one subset)
BENCHMARKS: Dict[str, Tuple[str, ...]] = {
    MMBENCH: ('default',),
    GROUNDING: ('region_detection', 'grounded_report'),
    REPORT: ('report', 'grounded_report'),
}
IMAGE_TAG = '<image>'
_PLACEHOLDER = re.compile(r'<ref-object>|<bbox>')


@dataclass
class EvalItem:
    """One benchmark item.

    Attributes:
        index: 0-based row number in its file (the order ``swift infer`` would read the rows in;
            COCO AP breaks score ties by it).
        messages: the conversation sent to the model, ms-swift style (``{'role', 'content'}``,
            each ``<image>`` tag marking where an image goes), ending with the user turn.
        images: one per ``<image>`` tag, in order: an absolute path or a ``data:`` URI.
        target: reference answer text (a letter, or the assistant turn with ``<ref-object>``/
            ``<bbox>`` placeholders not rendered).
        row: the ``swift infer`` result row without ``response`` (``messages``, ``labels``,
            ``images``, ``objects``), see :mod:`eval.results`.
        meta: the ``fundusexpert eval --meta`` record of the row.
    """

    index: int
    messages: List[dict]
    images: List[str]
    target: str
    row: dict
    meta: dict = field(default_factory=dict)


def _data_uri(b64: str) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
        fmt = (img.format or 'png').lower()
    return f'data:image/{fmt};base64,{b64}'


def mmbench_items(tsv_path: str) -> List[EvalItem]:
    """Items of a GMAI-MMBench / Fundus-MMBench TSV (``image_path`` or base64 ``image`` column).

    The prompt and meta record are those of ``fundusexpert eval mcq-rows`` (:func:`mcq_tsv.item_to_row`,
    :func:`mcq_tsv.item_meta`). A base64 image is sent as a ``data:`` URI and left out of ``row``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a required column or an image is missing (:func:`mcq_tsv.read_tsv`).
    """
    if not os.path.isfile(tsv_path):
        raise FileNotFoundError(f'{tsv_path}: no such TSV file (fundus_mmbench needs --eval_dataset_args '
                                '\'{"fundus_mmbench": {"local_path": "<file.tsv>"}}\')')
    items = []
    for i, item in enumerate(read_tsv(tsv_path)):
        prompt_row = item_to_row(item, with_answer=False)
        path = item.image_path if item.image_path and os.path.exists(item.image_path) else None
        image = path or _data_uri(item.image_b64 or '')
        row = {'messages': prompt_row['messages'], 'labels': item.answer, 'images': [path] if path else []}
        items.append(EvalItem(index=i, messages=prompt_row['messages'], images=[image], target=item.answer,
                              row=row, meta=item_meta(item, i)))
    return items


def mmbench_categories(items: Sequence[EvalItem]) -> List[str]:
    """Every category of the items (a TSV's), in file order, labelled as the MCQ scorer labels them
    (``mcq.score_item``)."""
    labels = (mcq.score_item(None, it.meta.get('answer', ''), it.meta.get('options') or {}, it.meta.get('category')).category
              for it in items)
    return list(dict.fromkeys(labels))


def fundusgen_items(folder: str, task: str, *, findings: bool = True) -> List[EvalItem]:
    """Items of one task file ``<folder>/<task>.jsonl`` of a FundusGen folder (``fundusexpert data build``).

    Image paths are resolved against the folder (as the ``fundusgen`` dataset does); the meta
    record is :func:`results.meta_from_fundusgen_row` (what ``--meta <task>.jsonl`` gives), without
    positives/negatives when ``findings`` is False.

    Raises:
        FileNotFoundError: no such task file (or, in a folder with a ``build_summary.json``, a task that
            it does not list: :func:`fundusexpert_plugin.build.built_tasks`).
        FundusDataError: a row (named by file and line) whose last message is not the reference
            assistant turn, whose ``<image>`` tags and ``images`` disagree, or whose prompt holds
            ``<ref-object>``/``<bbox>`` placeholders (an OpenAI request cannot carry ``objects``).
    """
    from fundusexpert_plugin.build import SUMMARY_FILE, built_tasks
    root = Path(folder).resolve()
    path = root / f'{task}.jsonl'
    known = sorted(built_tasks(root)) if (root / SUMMARY_FILE).is_file() else None
    if not path.is_file() or (known is not None and task not in known):
        known = known if known is not None else sorted(p.stem for p in root.glob('*.jsonl'))
        raise FileNotFoundError(f'{path}: no such task file; tasks in {root}: {known}')
    items = []
    for index, (line_no, rec) in enumerate(read_jsonl(path)):
        where = f'{path}:{line_no}'
        messages = rec.get('messages') or []
        if not messages or messages[-1].get('role') != 'assistant':
            raise FundusDataError(f'{where}: field messages: the last message must be the reference assistant turn')
        context, labels = messages[:-1], str(messages[-1].get('content') or '')
        texts = [str(m.get('content') or '') for m in context]
        images = [img if os.path.isabs(img) else os.path.normpath(root / img) for img in rec.get('images') or []]
        if sum(t.count(IMAGE_TAG) for t in texts) != len(images):
            raise FundusDataError(f'{where}: field images: {len(images)} image(s) for '
                                  f'{sum(t.count(IMAGE_TAG) for t in texts)} <image> tag(s)')
        if any(_PLACEHOLDER.search(t) for t in texts):
            raise FundusDataError(f'{where}: field messages: the prompt holds <ref-object>/<bbox> placeholders, '
                                  'which an OpenAI-style request cannot fill')
        meta = meta_from_fundusgen_row(rec)
        if not findings:
            meta.pop('positives', None)
            meta.pop('negatives', None)
        row = {'messages': context, 'labels': labels, 'images': images, 'objects': rec.get('objects')}
        items.append(EvalItem(index=index, messages=context, images=images, target=labels, row=row, meta=meta))
    return items


def default_fundusgen_dir() -> str:
    """``$FUNDUSGEN_HELDOUT_DIR`` if set, else the bundled sample's held-out split (built on first use)."""
    folder = os.environ.get('FUNDUSGEN_HELDOUT_DIR')
    if folder:
        return os.path.abspath(folder)
    from fundusexpert_plugin.swift_plugin.datasets import sample_fundusgen_dir  # imports swift

    return str(sample_fundusgen_dir() / 'heldout')


def benchmark_items(benchmark: str, path: str, subset: str) -> List[EvalItem]:
    """Items of one subset of a benchmark; ``path`` is the TSV or the FundusGen folder.

    Raises:
        KeyError: unknown benchmark or subset.
    """
    if benchmark not in BENCHMARKS or subset not in BENCHMARKS[benchmark]:
        raise KeyError(f'unknown benchmark/subset {benchmark}/{subset}; known: {BENCHMARKS}')
    if benchmark == MMBENCH:
        return mmbench_items(path)
    return fundusgen_items(path, subset, findings=benchmark == REPORT)


def split_images(content: str, images: Sequence[str]) -> List[Tuple[str, str]]:
    """``[('text', str) | ('image', path_or_uri)]`` of one message, each ``<image>`` tag taking the
    next image of ``images`` (those left are for later messages); blank text parts are dropped."""
    parts, pending = [], list(images)
    for i, text in enumerate(content.split(IMAGE_TAG)):
        if i > 0:
            if not pending:
                raise ValueError(f'more <image> tags than images in {content[:80]!r}')
            parts.append(('image', pending.pop(0)))
        if text.strip():
            parts.append(('text', text))
    return parts


def message_parts(item: EvalItem) -> List[Tuple[str, List[Tuple[str, str]]]]:
    """``[(role, parts)]`` of an item's messages (:func:`split_images` over the whole conversation)."""
    out, images = [], list(item.images)
    for message in item.messages:
        content = str(message.get('content') or '')
        n = content.count(IMAGE_TAG)
        out.append((message['role'], split_images(content, images[:n])))
        images = images[n:]
    return out


def result_row(item_row: dict, response: Optional[str]) -> dict:
    """The ``swift infer`` result row of an item answered with ``response``: ``response`` set and
    appended to ``messages`` as the assistant turn."""
    response = response if isinstance(response, str) else ''
    return {**item_row, 'response': response,
            'messages': [*item_row.get('messages', []), {'role': 'assistant', 'content': response}]}


_SCORE_LOCK = threading.Lock()  # pycocotools' stdout redirect is process-wide: one scoring at a time


def score_rows(rows: Sequence[dict], metas: Sequence[dict], *, judge=None,
               options: Optional[EvalOptions] = None) -> Tuple[dict, List[dict]]:
    """:func:`eval.report.evaluate_rows` (``fundusexpert eval``) on result rows and their meta
    records (``metas[i]`` belongs to ``rows[i]``); serialised, so threads may call it."""
    with _SCORE_LOCK:
        return evaluate_rows(list(rows), dict(enumerate(metas)), judge=judge, options=options)


def sample_values(benchmark: str, metrics: dict, sample: dict) -> Dict[str, float]:
    """Per-item scores for evalscope's review file, from :func:`score_rows` on that item alone.

    ``fundus_mmbench``: ``strict_acc``/``lenient_acc`` 1.0 or 0.0; ``fundusgen_grounding``: the
    numeric grounding metrics of the item; ``fundusgen_report``: ``consistency`` (Score/Total,
    when defined), ``consistency_score``, ``consistency_total``.
    """
    if benchmark == MMBENCH:
        return {'strict_acc': float(sample['mcq']['strict_hit']), 'lenient_acc': float(sample['mcq']['lenient_hit'])}
    if benchmark == GROUNDING:
        return {k: float(v) for k, v in (metrics.get('grounding') or {}).items() if is_json_number(v) and not k.startswith('n_')}
    result = sample.get('consistency') or {}
    values = {'consistency_score': float(result.get('score', 0)), 'consistency_total': float(result.get('total', 0))}
    if is_json_number(result.get('ratio')):
        values = {'consistency': float(result['ratio']), **values}
    return values


@dataclass(frozen=True)
class ReportEntry:
    """One number of the evalscope report: ``metric`` over ``group`` (``'all'``, or an MCQ
    category) and its weight ``num`` (see :func:`report_entries`)."""

    metric: str
    group: str
    score: float
    num: int


def _mcq_entries(m: dict, categories: Sequence[str]) -> List[ReportEntry]:
    out = [ReportEntry(f'{rule}_acc', 'all', m[rule]['overall'], m['n'])
           for rule in ('strict', 'lenient') if is_json_number(m[rule]['overall'])]
    per_n = m.get('per_category_n') or {}
    groups = list(dict.fromkeys([*categories, *per_n]))
    for rule in ('strict', 'lenient'):
        per = m[rule].get('per_category') or {}
        for group in groups:
            value = per.get(group)
            out.append(ReportEntry(f'{rule}_acc_by_category', group, float(value) if is_json_number(value) else 0.0,
                                   int(per_n.get(group, 0) if is_json_number(value) else 0)))
    return out


def report_entries(benchmark: str, metrics: dict, categories: Sequence[str] = ()) -> List[ReportEntry]:
    """Report entries of one subset from :func:`score_rows`'s metrics.

    ``fundus_mmbench``: ``strict_acc``, ``lenient_acc`` (overall, as ``mcq.accuracy`` rounds them)
    and ``strict_acc_by_category``/``lenient_acc_by_category`` for every category in
    ``categories`` (those of the file) and in the metrics; a category without a scored item has
    score 0.0 and num 0. ``fundusgen_grounding``: every numeric grounding metric, COCO's as
    ``coco_<key>``, num = reference boxes (predicted boxes for precision). ``fundusgen_report``:
    every numeric consistency ratio, ``per_report_mean`` with num = reports scored, ``pooled`` with
    num = Total summed. So evalscope's num-weighted mean over subsets is the pooled value for the
    box means and the consistency ratios. Undefined (``None``) values are left out.
    """
    if benchmark == MMBENCH:
        return _mcq_entries(metrics['mcq'], categories) if metrics.get('mcq') else []
    if benchmark == GROUNDING:
        g = metrics.get('grounding')
        if not g:
            return []
        n_gt, n_pred = int(g.get('n_gt', 0)), int(g.get('n_pred', 0))
        out = [ReportEntry(k, 'all', float(v), n_pred if k.startswith('precision') else n_gt) for k, v in g.items()
               if is_json_number(v) and not k.startswith('n_')]
        out += [ReportEntry(f'coco_{k}', 'all', float(v), n_gt) for k, v in (g.get('coco') or {}).items() if is_json_number(v)]
        return out
    c = metrics.get('consistency')
    if not c:
        return []
    return [ReportEntry(k, 'all', float(v), int(c.get('total_sum', 0) if k == 'pooled' else c.get('n_scored', 0)))
            for k, v in c.items() if is_json_number(v) and not k.startswith('n_') and not k.endswith('_sum')]


def make_judge(base_url: Optional[str] = None, model: str = 'gpt-4o', api_key: Optional[str] = None, *,
               timeout: float = 60.0, max_retries: int = 2, lexicon: Optional[str] = None):
    """The consistency judge ``fundusexpert eval`` would use: the offline lexicon judge (``lexicon``
    JSON or the packaged one), or :class:`eval.llm_judge.OpenAIJudge` when ``base_url`` is given."""
    if base_url:
        from fundusexpert_plugin.eval.llm_judge import OpenAIJudge

        return OpenAIJudge(base_url, model, api_key, timeout=timeout, max_retries=max_retries)
    from fundusexpert_plugin.core.lexicon_judge import LexiconJudge, load_lexicon

    return LexiconJudge(load_lexicon(lexicon) if lexicon else None)


def memoize_judge(judge):
    """Make ``judge.judge_with_contradictions`` (what the consistency scorer asks) remember its answers per
    (report, findings, language), so that scoring each item and then the whole subset asks the judge once per
    report. Returns the same object."""
    cache: Dict[tuple, tuple] = {}
    ask = judge.judge_with_contradictions

    def judge_once(report, findings, lang='en'):
        key = (report, tuple(findings), lang)
        if key not in cache:
            cache[key] = ask(report, findings, lang)
        statuses, contradictions = cache[key]
        return dict(statuses), list(contradictions)

    judge.judge_with_contradictions = judge_once
    return judge
