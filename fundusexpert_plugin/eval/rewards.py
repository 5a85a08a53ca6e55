"""Verifiable rewards for reinforcement fine-tuning (GRPO) on FundusGen rows; pure Python, no ms-swift.

Each function scores one completion against the ground truth in its own row and returns a float
in [0, 1], or ``None`` when the reward does not apply to the row's task (ms-swift's GRPO turns
``None`` into NaN and leaves it out of the weighted sum, so one reward list can serve a mix of
tasks). The ms-swift classes that call them are in :mod:`fundusexpert_plugin.swift_plugin.rewards`.

Row: the columns of one FundusGen row as ms-swift hands them to a reward (``swift rlhf`` keeps
every column): ``kind``, ``objects`` (``bbox`` xyxy in original-image pixels, ``bbox_type``
``'real'``), ``target``, ``positives``, ``negatives``, ``lang``, ``width``/``height`` (original
pixels), ``images``, ``messages`` (the prompt, then the completion as the last assistant turn) and,
for MCQ, ``answer_letter`` (``answer`` or ``solution`` are read too).

Formulas (``P``: boxes parsed from the completion, ``G``: reference boxes, both in original pixels):

* :func:`grounding_reward` (kinds ``region_detection``, ``grounded_report``):
  ``sum(IoU of one-to-one matched pairs) / max(|G|, |P|)``; 0 when nothing parses. A malformed
  box (see :func:`format_reward`) is in ``P`` but matches nothing, so one swapped-corner box scores 0. Matching is
  :func:`geometry.match_one_to_one` (greedy by IoU, pairs overlapping at least
  :data:`MIN_MATCH_IOU`), within a finding label when the reference boxes carry labels (an
  unlabelled predicted box may match any reference box left over); dividing by ``max`` makes every
  missed and every extra box cost its share. A known-absent target (no reference box, the target in
  ``negatives``): 1 when the completion has no box and states the target absent, else 0.
* :func:`format_reward`: ``form * well_formed * (refs_boxed + tags_closed) / 2`` for grounded
  answers, where ``refs_boxed`` is the share of ``<ref>`` tags followed directly by a box tag holding
  a box (1 without refs, except in reports), ``tags_closed`` is 1 when every ``<ref>``/``<box>`` (or
  Qwen ``<|object_ref_start|>``/``<|box_start|>``) tag is closed before the next opens,
  ``well_formed`` is the share of the completion's boxes that are not malformed
  (:func:`parse.box_fault`: corners inverted, ``x1 > x2`` or ``y1 > y2``, or a value outside its
  space, e.g. above 1000 on the 0-999 grid; 1 without boxes), and ``form`` is the share of the
  cognitive-chain steps found in order, one line each (grounded reports; the steps expected are
  those of the row's reference: the fine-grained-features step only when the reference boxes a
  lesion, as the chain writes it) or, for region detection, 1 for a parsable box or a stated
  absence of the target. MCQ: 1 when the completion starts with one of the prompt's option letters
  not followed by another letter.
  Example: ``<ref>haemorrhages</ref><box>[[380, 673, 299, 562]]</box>`` (corners swapped) scores
  0 (``well_formed`` 0) where ``[[299, 562, 380, 673]]`` scores 1; two boxes, one of them
  ``[[145, 327, 257, 1200]]``, score 0.5.
* :func:`consistency_reward` (kinds ``report``, ``grounded_report``, ``diagnosis``): the clinical
  consistency Score/Total of :mod:`.consistency` against the row's lesion positives and negatives
  (as ``fundusexpert eval``); 1 for a non-empty completion when Total is 0 (nothing to get wrong).
* :func:`mcq_reward`: 1 when the strict rule (:func:`mcq.strict_letter`, first character, no
  stripping) gives the answer letter, else 0.

Source: reward shapes ours (not in the FundusExpert paper, which stops at supervised fine-tuning);
consistency and the strict MCQ rule as in the paper's evaluation code.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from fundusexpert_plugin.core import geometry, vocab
from fundusexpert_plugin.core.judge import ConsistencyJudge
from fundusexpert_plugin.core.lexicon_judge import LexiconJudge
from fundusexpert_plugin.eval.consistency import evaluate_report, report_language
from fundusexpert_plugin.eval.mcq import answer_letter, parse_options, strict_letter
from fundusexpert_plugin.eval.parse import (LabeledBox, TextBox, box_faults, boxes_to_px, canonical_label,
                                            find_boxes, needs_resized_size)
from fundusexpert_plugin.eval.results import (FUNDUSGEN_KIND_TO_TASK, image_path, image_size, known_absent_target,
                                              meta_from_fundusgen_row, reference_boxes, user_prompt)

#: kinds whose answers are boxes scored by :func:`grounding_reward`
GROUNDING_KINDS = ('region_detection', 'grounded_report')
#: smallest IoU of a matched pair (pairs that do not overlap are never matched)
MIN_MATCH_IOU = 1e-6
#: ``(width, height) -> (resized_width, resized_height)`` of the Qwen-resized image, in pixels
ResizedSize = Callable[[int, int], Tuple[int, int]]

_LESIONS = frozenset(vocab.lesion_ids())
_TAG = re.compile(r'</?ref>|</?box>|<\|object_ref_(?:start|end)\|>|<\|box_(?:start|end)\|>')
_OPEN = {'<ref>': '</ref>', '<box>': '</box>', '<|object_ref_start|>': '<|object_ref_end|>',
         '<|box_start|>': '<|box_end|>'}
_BOX_AFTER_REF = re.compile(r'\s*(<box>.*?</box>|<\|box_start\|>.*?<\|box_end\|>)', re.S)
_MCQ_FORM = re.compile(r'([A-E])(?![A-Za-z])')
# any lesion name of the vocabulary (EN, ZH, aliases of 4+ letters), for the lesion-localisation step
_LESION_NAMES = '|'.join(sorted({re.escape(n.replace('_', ' ')) for f in _LESIONS for n in
                                 (vocab.FINDINGS[f].en, vocab.FINDINGS[f].zh, *vocab.FINDINGS[f].aliases)
                                 if len(n) >= 4 or not n.isascii()}, key=len, reverse=True))
# Cognitive-chain steps, one line each (wording of render.chain.PHRASES)
_CHAIN_CUES = {
    'en': {'global': r'fundus (?:photograph|image|photo)', 'anatomy': r'optic disc|fovea',
           'lesions': rf'{_LESION_NAMES}|no lesions', 'features': r'covers? about|% of the image',
           'conclusion': r'^\W*conclusion\s*:'},
    'zh': {'global': r'眼底(?:彩色)?(?:照片|图像)', 'anatomy': r'视盘|中心凹',
           'lesions': rf'{_LESION_NAMES}|未标注病灶', 'features': r'约占图像面积', 'conclusion': r'^\W*结论\s*[:：]'},
}


def _kind(row: Mapping) -> Optional[str]:
    return row.get('kind') or None


def row_size(row: Mapping) -> Tuple[int, int]:
    """Original image size ``(width, height)`` in pixels: the row's columns, else the image header.

    Raises:
        OSError: no size columns and the image file cannot be read.
    """
    if row.get('width') and row.get('height'):
        return int(row['width']), int(row['height'])
    return image_size(image_path(row))


def prompt_messages(row: Mapping, completion: str) -> List[dict]:
    """The row's messages without the completion (its last assistant turn, when present)."""
    messages = list(row.get('messages') or [])
    if messages and messages[-1].get('role') == 'assistant' and messages[-1].get('content') == completion:
        messages = messages[:-1]
    return messages


def row_reference_boxes(row: Mapping, completion: str = '') -> List[LabeledBox]:
    """Reference boxes of the row in original pixels (:func:`results.reference_boxes` on its ``objects``).

    Boxes are labelled with the finding id when the row's refs can be paired with its boxes (one
    ref, or one ref per box); otherwise (grounded reports) labels are ``''``.
    """
    objects = row.get('objects') or {}
    if not objects.get('bbox'):
        return []
    width, height = row_size(row)
    return reference_boxes({'objects': objects, 'messages': prompt_messages(row, completion)}, width, height)


def completion_boxes(completion: str, width: int, height: int, *,
                     resized_size: Optional[ResizedSize] = None) -> List[LabeledBox]:
    """Boxes of a completion in original pixels, read like ``fundusexpert eval`` (:mod:`.parse`).

    Args:
        completion: generated text.
        width, height: original image size in pixels.
        resized_size: gives the Qwen-resized size of the image as the template computed it; called
            only when the completion has Qwen-convention boxes.

    Raises:
        ValueError: Qwen boxes and no ``resized_size`` (a caller setting, see :func:`parse.boxes_to_px`).
    """
    boxes = find_boxes(completion)
    resized = resized_size(width, height) if resized_size is not None and needs_resized_size(boxes) else None
    return boxes_to_px(boxes, width, height, resized_size=resized)


def _match_sum(gt: Sequence[geometry.BoxPx], pred: Sequence[geometry.BoxPx]) -> Tuple[float, set]:
    pairs = geometry.match_one_to_one(gt, pred, iou_threshold=MIN_MATCH_IOU)
    return sum(value for _, _, value in pairs), {g for g, _, _ in pairs}


def matched_iou(pred: Sequence[LabeledBox], gt: Sequence[LabeledBox]) -> float:
    """``sum(IoU of one-to-one matched pairs) / max(|G|, |P|)`` (module docstring); 0 if either is empty.

    Labelled reference boxes match predictions of the same label first; unlabelled predictions
    then match the reference boxes still free. Unlabelled references match any prediction. A
    malformed prediction (:func:`parse.box_fault`: inverted corners, a value off its grid) matches
    nothing and still counts in ``|P|``.
    """
    if not gt or not pred:
        return 0.0
    labels = sorted({g.label for g in gt} - {''})
    usable = [p for p in pred if not p.malformed]   # a malformed box matches nothing but counts in |P|
    total, free = 0.0, list(range(len(gt)))
    for label in labels:
        gi = [i for i, g in enumerate(gt) if g.label == label]
        value, used = _match_sum([gt[i].box_px for i in gi], [p.box_px for p in usable if p.label == label])
        total += value
        free = [i for i in free if i not in {gi[k] for k in used}]
    rest = [p.box_px for p in usable if p.label == '' or not labels]
    total += _match_sum([gt[i].box_px for i in free], rest)[0]
    return total / max(len(gt), len(pred))


def _states_absent(judge: LexiconJudge, completion: str, finding: str, row: Mapping) -> bool:
    lang = row.get('lang') or report_language(completion)
    return judge.judge(completion, [finding], lang).get(finding) == 'absent'


def grounding_reward(completion: str, row: Mapping, *, judge: LexiconJudge,
                     resized_size: Optional[ResizedSize] = None) -> Optional[float]:
    """Box reward of one completion (module docstring); ``None`` outside :data:`GROUNDING_KINDS`.

    Args:
        completion: generated text. row: the row's columns (module docstring).
        judge: reads whether a known-absent target is stated absent (the offline lexicon judge).
        resized_size: see :func:`completion_boxes`.
    """
    if _kind(row) not in GROUNDING_KINDS and _kind(row) is not None:
        return None
    completion = completion or ''
    absent = known_absent_target(row)
    gt = row_reference_boxes(row, completion)
    if not gt and absent is None:
        return None
    width, height = row_size(row)
    pred = completion_boxes(completion, width, height, resized_size=resized_size)
    if absent is not None:
        return float(not pred and _states_absent(judge, completion, absent, row))
    return matched_iou(pred, gt)


def tags_closed(completion: str) -> bool:
    """Every ref/box tag (InternVL or Qwen) is closed by its own closing tag before another tag opens."""
    expected = None
    for tag in _TAG.findall(completion or ''):
        if tag in _OPEN and expected is None:
            expected = _OPEN[tag]
        elif tag == expected:
            expected = None
        else:
            return False
    return expected is None


def refs_boxed(completion: str) -> Tuple[int, int]:
    """``(refs followed directly by a box tag holding a box, all refs)`` of a completion."""
    text = completion or ''
    ends = [m.end() for m in re.finditer(r'</ref>|<\|object_ref_end\|>', text)]
    boxed = 0
    for end in ends:
        match = _BOX_AFTER_REF.match(text, end)
        boxed += bool(match and find_boxes(match.group(1)))
    return boxed, len(ends)


def chain_steps(completion: str, lang: str, *, features_expected: bool) -> Tuple[int, int]:
    """``(steps found in order, steps expected)`` of the cognitive chain, one non-empty line each.

    Steps: global view, anatomical positioning, lesion localisation, fine-grained features (only
    when ``features_expected``), conclusion (render.chain). Each step is looked for in the lines
    after the previous step's line; a step not found is skipped.
    """
    cues = _CHAIN_CUES['zh' if lang == 'zh' else 'en']
    steps = ['global', 'anatomy', 'lesions'] + (['features'] if features_expected else []) + ['conclusion']
    lines = [line for line in (completion or '').splitlines() if line.strip()]
    found, start = 0, 0
    for step in steps:
        for i in range(start, len(lines)):
            if re.search(cues[step], lines[i], re.I):
                found, start = found + 1, i + 1
                break
    return found, len(steps)


def reference_boxes_lesion(row: Mapping) -> bool:
    """Whether the row's reference answer boxes a lesion: its ``objects`` hold a box and a ``ref``
    that is a lesion id (:func:`parse.canonical_label`). The chain (:mod:`render.chain`) writes the
    fine-grained-features step exactly for such records, so this is what a grounded report is
    expected to contain, whatever the completion says."""
    objects = row.get('objects') or {}
    return bool(objects.get('bbox')) and any(canonical_label(str(r)) in _LESIONS for r in objects.get('ref') or [])


def well_formed_share(boxes: Sequence[TextBox], *, resized_size: Optional[Tuple[int, int]] = None) -> float:
    """Share of a completion's boxes that are well formed (:func:`parse.box_faults`: not inverted,
    every value inside its space, e.g. 0-1000 on the grid); 1.0 when it has no box.

    Args:
        boxes: the completion's boxes as :func:`parse.find_boxes` finds them (numbers in their own space).
        resized_size: ``(resized_width, resized_height)`` in pixels, the extent of Qwen boxes in
            resized-image pixels; ``None``: those are checked for inversion and negative values only.
    """
    faults = box_faults(boxes, resized_size=resized_size)
    return 1.0 - sum(bool(f) for f in faults) / len(faults) if faults else 1.0


def format_reward(completion: str, row: Mapping, *, judge: LexiconJudge,
                  resized_size: Optional[ResizedSize] = None) -> Optional[float]:
    """Answer-form reward (module docstring) for region detection, grounded reports and MCQ, else ``None``.

    Boxes are only found and their labels read (:func:`parse.find_boxes`), never mapped to pixels;
    :func:`well_formed_share` scales the grounded forms (a malformed box is not a box). The chain
    steps a grounded report must show come from the row's reference (:func:`reference_boxes_lesion`),
    not from the completion.

    Args:
        completion: generated text. row: the row's columns (module docstring).
        judge: reads whether a known-absent target is stated absent.
        resized_size: see :func:`completion_boxes`; gives the extent of Qwen resized-pixel boxes
            (called only when the completion has such boxes and the row gives an image size).
    """
    kind = _kind(row)
    completion = completion or ''
    if kind == 'mcq':
        options = parse_options(user_prompt({'messages': prompt_messages(row, completion)}))
        match = _MCQ_FORM.match(completion)
        return float(bool(match) and (not options or match.group(1) in options))
    if kind not in GROUNDING_KINDS:
        return None
    pred = find_boxes(completion)
    boxed, refs = refs_boxed(completion)
    resized = None
    if resized_size is not None and needs_resized_size(pred):
        try:
            resized = resized_size(*row_size(row))
        except OSError:   # no size columns and no readable image: Qwen boxes checked without extent
            resized = None
    well_formed = well_formed_share(pred, resized_size=resized)
    if kind == 'grounded_report':
        lang = row.get('lang') or report_language(completion)
        found, expected = chain_steps(completion, lang, features_expected=reference_boxes_lesion(row))
        form, ref_share = found / expected, boxed / refs if refs else 0.0
    else:
        target = row.get('target')
        form = float(bool(pred) or bool(target and _states_absent(judge, completion, target, row)))
        ref_share = boxed / refs if refs else 1.0
    return form * well_formed * (ref_share + float(tags_closed(completion))) / 2


def consistency_reward(completion: str, row: Mapping, *, judge: ConsistencyJudge) -> Optional[float]:
    """Clinical consistency Score/Total (module docstring) for report kinds, else ``None``.

    Positives and negatives are the row's lesion ids (:func:`results.meta_from_fundusgen_row`, as
    ``fundusexpert eval``). A judge failure (:class:`JudgeError`) gives ``None`` (not scored).
    """
    if FUNDUSGEN_KIND_TO_TASK.get(_kind(row)) != 'report':
        return None
    meta = meta_from_fundusgen_row(dict(row))
    result = evaluate_report(judge, completion, meta['positives'], meta['negatives'])
    if result.error is not None:
        return None
    if result.total == 0:
        return float(bool((completion or '').strip()))
    return result.score / result.total


def mcq_answer(row: Mapping) -> str:
    """The row's answer letter from ``answer_letter``, ``answer`` or ``solution`` (``''`` if none)."""
    for key in ('answer_letter', 'answer', 'solution'):
        letter = answer_letter(row.get(key))
        if letter:
            return letter
    return ''


def mcq_reward(completion: str, row: Mapping) -> Optional[float]:
    """1.0 when :func:`mcq.strict_letter` of the completion is the answer letter, else 0.0; ``None``
    for rows of another kind or without an answer."""
    answer = mcq_answer(row)
    if (_kind(row) not in ('mcq', None)) or not answer:
        return None
    return float(strict_letter(completion) == answer)


def rows_from_batch(completions: Sequence[str], columns: Mapping[str, object]) -> List[Dict[str, object]]:
    """Per-completion rows from ms-swift's batched reward keyword arguments (lists of one value per
    completion); other arguments (``trainer_state``) are left out."""
    n = len(completions)
    keys = [k for k, v in columns.items() if isinstance(v, (list, tuple)) and len(v) == n]
    return [{k: columns[k][i] for k in keys} for i in range(n)]
