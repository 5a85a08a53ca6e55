"""Render one FundusGen record into ms-swift rows for one task and one language.

A row follows ms-swift's standard schema (``messages``, ``images``, ``objects``) plus metadata
keys that ms-swift ignores and our evaluation reads (``task``, ``kind``, ``task_version``,
``record_id``, ``lang``, ``width``, ``height``, ``positives``, ``negatives``). Boxes travel in
``objects`` as original-image pixels (``bbox_type='real'``); each template family renders its own
coordinate convention.

Grounded rows (region detection, grounded report) also record the box cap: ``box_cap`` (the task's
``max_boxes``, ``None`` = every box), ``n_boxes`` (``{finding_id: boxes the record has}``) and
``n_boxes_shown`` (``{finding_id: boxes in the answer}``) for every grounded class; when the answer
shows fewer boxes than the record has, ``full_gt_boxes_px`` (``[[finding_id, [x1, y1, x2, y2]], ...]``,
pixels, every box of those classes) is the reference ``fundusexpert eval --meta`` scores against.

A prompt that names a "colour fundus photograph" (``彩色眼底照片``) reads "greyscale fundus photograph"
(``灰度眼底照片``) for a photograph the intake converted from grey (:func:`photo_prompt`), as the
chain's global view does.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
from pathlib import Path
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple


from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.images import LoadedImage, load_image, save_image
from fundusexpert_plugin.render.chain import (cognitive_chain, diagnosis_answer, draws_conclusion, draws_diagnosis,
                                              photo_was_greyscale)
from fundusexpert_plugin.core.geometry import iou
from fundusexpert_plugin.core.record import FundusGenRecord
from fundusexpert_plugin.tasks.config import FIELD_KINDS, SCALE_NAMES, TaskConfig
from fundusexpert_plugin.tasks.fields import field_values
from fundusexpert_plugin.render.grounded_text import GroundedText

LETTERS = 'ABCDE'
MCQ_OPTIONS = 4

#: language -> (the prompt phrase for a colour photograph, its greyscale counterpart)
GREYSCALE_PHOTO = {'en': ('colour fundus photograph', 'greyscale fundus photograph'),
                   'zh': ('彩色眼底照片', '灰度眼底照片')}


def photo_prompt(text: str, record: FundusGenRecord, lang: str) -> str:
    """``text`` as asked about ``record``'s photograph: "colour fundus photograph" (zh ``彩色眼底照片``)
    becomes "greyscale fundus photograph" (``灰度眼底照片``) when the intake converted the photograph
    from grey (:func:`~fundusexpert_plugin.render.chain.photo_was_greyscale`); otherwise unchanged."""
    if lang not in GREYSCALE_PHOTO or not photo_was_greyscale(record):
        return text
    colour, grey = GREYSCALE_PHOTO[lang]
    return text.replace(colour, grey)


class RenderContext:
    """Where rows point to and where drawn images go.

    Args:
        out_dir: the dataset folder; row image paths are written relative to it.
        image_dir: folder of the records' images, for records with relative ``image`` paths.
        seed: base seed; each (record, task, language) gets its own ``random.Random``.
    """

    def __init__(self, out_dir: Path | str, image_dir: Path | str, seed: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.image_dir = Path(image_dir)
        self.seed = seed

    def rng(self, record: FundusGenRecord, task: TaskConfig, lang: str) -> random.Random:
        return random.Random(f'{self.seed}|{record.record_id}|{task.name}|{lang}')

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.out_dir).replace(os.sep, '/')


@dataclass
class RecordImage:
    """The photo of the record being rendered.

    Attributes:
        path: the file the rows point to (the source, or the builder's upright copy).
        pixels: upright RGB pixels from the intake, possibly smaller than the record (``pixels.scale``);
            marked copies are drawn on them.
    """

    path: Path
    pixels: LoadedImage


def _row(record: FundusGenRecord, task: TaskConfig, lang: str, prompt: str, answer: str, image_rel: str,
         grounded: Optional[GroundedText] = None, **extra) -> dict:
    row = {
        'messages': [{'role': 'user', 'content': '<image>' + prompt},
                     {'role': 'assistant', 'content': answer}],
        'images': [image_rel],
    }
    objects = grounded.objects() if grounded is not None else None
    if objects:
        row['objects'] = objects
    row.update({
        'task': task.name, 'kind': task.kind, 'task_version': task.version, 'record_id': record.record_id,
        'lang': lang, 'width': record.width, 'height': record.height,
        'positives': record.present_labels(), 'negatives': record.absent_labels(),
    })
    row.update(extra)
    return row


def box_cap_metadata(record: FundusGenRecord, grounded: GroundedText, cap: Optional[int]) -> dict:
    """``box_cap``, ``n_boxes``, ``n_boxes_shown`` and, when boxes were left out, ``full_gt_boxes_px``
    for the classes ``grounded`` wrote (module docstring). Boxes are rounded to 0.01 px as in ``objects``."""
    shown = Counter(vocab.canonical_finding(name) for name in grounded.box_refs if name is not None)
    total = {label: len(record.boxes(label)) for label in shown}
    meta = {'box_cap': cap, 'n_boxes': total, 'n_boxes_shown': dict(shown)}
    if any(shown[label] < total[label] for label in shown):
        meta['full_gt_boxes_px'] = [[label, [round(float(v), 2) for v in box]]
                                    for label in shown for box in record.boxes(label)]
    return meta


def render_rows(record: FundusGenRecord, task: TaskConfig, lang: str, ctx: RenderContext,
                image: Optional[RecordImage] = None) -> List[dict]:
    """All rows of one task for one record in one language (possibly none, e.g. grading without a grade).

    Args:
        image: the record's photo as the builder read it; default: ``record.image`` under
            ``ctx.image_dir``, read through the intake only when a marked copy is drawn.

    Raises:
        ImageSkip: a region-identification image cannot be read.
        ValueError: ``lang`` is not one of ``task.languages`` (the builder leaves such languages out
            and counts them).
    """
    if lang not in task.languages:
        raise ValueError(f'{task.path or task.name}: task {task.name!r} defines no {lang!r} prompts '
                         f'(its languages: {list(task.languages)})')
    rng = ctx.rng(record, task, lang)
    image_path = image.path if image is not None else record.image_path(ctx.image_dir)
    image_rel = ctx.rel(image_path)

    def prompt(**kw) -> str:
        return photo_prompt(rng.choice(task.prompts[lang]).format(**kw), record, lang)

    def answer(template: Dict[str, str], **kw) -> str:
        return template[lang].format(**kw)

    kind = task.kind
    if kind == 'diagnosis':
        if not draws_diagnosis(record):   # nothing to conclude from (or only "not detected"): no non-answer row
            return []
        return [_row(record, task, lang, prompt(), answer(task.answer, diagnosis=diagnosis_answer(record, lang)),
                     image_rel)]
    if kind == 'grading':
        rows = []
        for scale in vocab.DISEASE_SCALES:
            if scale in record.image_labels:
                scale_name = SCALE_NAMES[scale][vocab.LANGUAGES.index(lang)]
                grade = vocab.grade_name(scale, record.image_labels[scale], lang)
                rows.append(_row(record, task, lang, prompt(scale=scale_name),
                                 answer(task.answer, grade=grade, scale=scale_name), image_rel, grade_scale=scale))
        return rows
    if kind in ('report', 'grounded_report'):
        if not record.findings if kind == 'grounded_report' else not (record.findings or draws_conclusion(record)):
            return []   # nothing to ground / nothing to report: the row would carry no information
        grounded = GroundedText() if kind == 'grounded_report' else None
        chain = cognitive_chain(record, lang, grounded=grounded, max_boxes=task.max_boxes)
        extra = box_cap_metadata(record, grounded, task.max_boxes) if grounded is not None else {}
        return [_row(record, task, lang, prompt(), answer(task.answer, chain=chain), image_rel, grounded, **extra)]
    if kind == 'region_detection':
        return _region_detection(record, task, lang, rng, image_rel, prompt, answer)
    if kind == 'region_identification':
        return _region_identification(record, task, lang, ctx, rng, image, prompt, answer)
    if kind == 'mcq':
        return _mcq(record, task, lang, rng, image_rel, prompt, answer)
    if kind in FIELD_KINDS:
        values = field_values(record, task.requires, lang)
        if values is None:  # a required field is missing: the task does not apply to this record
            return []
        return [_row(record, task, lang, prompt(**values), answer(task.answer, **values), image_rel)]
    raise ValueError(f'{task.path}: kind {kind!r} has no renderer')


def _targets(record: FundusGenRecord, task: TaskConfig) -> List[str]:
    wanted = task.targets or list(vocab.FINDINGS)
    return [t for t in wanted if t in record.present_labels() or t in record.absent_labels()]


def _region_detection(record, task, lang, rng, image_rel, prompt, answer) -> List[dict]:
    rows = []
    for target in _targets(record, task):
        name = vocab.ref_name(target, lang)
        boxes = record.boxes(target)
        if boxes:
            # an "all" prompt is answered with every region; over the task's cap, or when the source kept
            # only its largest regions (provenance.region_counts), the prompt says "the N largest"
            shown = len(boxes) if task.max_boxes is None else min(len(boxes), task.max_boxes)
            capped = shown < record.region_count(target)
            if capped and task.prompts_capped is None:
                continue  # no prompt can say "the N largest": no row rather than "all" answered with some
            capped_prompt = rng.choice(task.prompts_capped[lang]) if capped else None
            question = (photo_prompt(capped_prompt.format(target=name, max_boxes=shown), record, lang)
                        if capped else prompt(target=name))
            grounded = GroundedText()
            text = answer(task.answer, grounded_target=grounded.ref(name, boxes[:shown]), target=name)
            rows.append(_row(record, task, lang, question, text, image_rel, grounded, target=target,
                             **box_cap_metadata(record, grounded, task.max_boxes)))
        elif task.answer_absent is not None:
            rows.append(_row(record, task, lang, prompt(target=name), answer(task.answer_absent, target=name,
                                                                             grounded_target=''),
                             image_rel, target=target))
    return rows


def _pick_findings(record: FundusGenRecord, task: TaskConfig, rng: random.Random):
    wanted = set(task.targets or vocab.FINDINGS)
    candidates = [(i, f) for i, f in enumerate(record.findings) if f.label in wanted]
    return sorted(rng.sample(candidates, min(task.max_items_per_image, len(candidates))), key=lambda c: c[0])


def draw_box(image: LoadedImage, box_px, out_path: Path) -> Tuple[Path, List[float]]:
    """Write a copy of the photo with a red rectangle around ``box_px`` (xyxy original-image pixels).

    The copy has the size of ``image.rgb`` (the box is scaled by ``image.scale``); the outline is
    ``max(2, round(min(w, h) / 200))`` px wide, drawn outside-in from the box edge. The copy is a fresh
    image: no metadata of the source is written.

    Returns:
        ``(out_path, box)``: the file and the box in the copy's pixels.
    """
    sx, sy = image.scale
    box = [box_px[0] * sx, box_px[1] * sy, box_px[2] * sx, box_px[3] * sy]
    rgb = image.rgb if image.rgb.flags.writeable else image.rgb.copy()
    h, w = rgb.shape[:2]
    width = max(2, round(min(w, h) / 200))
    x1, y1, x2, y2 = (round(v) for v in box)
    # The outline's four strips, inside [x1, x2] x [y1, y2] (inclusive) and `width` px thick inwards, as
    # PIL.ImageDraw.rectangle draws them (a box thinner than the outline is filled, never overdrawn), are
    # painted on the shared pixels and restored after encoding: no copy of the photo per marked box.
    top, bottom = max(0, y1), max(0, y2 + 1)
    left, right = max(0, x1), max(0, x2 + 1)
    strips = [(slice(top, max(top, min(y1 + width, y2 + 1))), slice(left, right)),
              (slice(max(top, y2 - width + 1), bottom), slice(left, right)),
              (slice(top, bottom), slice(left, max(left, min(x1 + width, x2 + 1)))),
              (slice(top, bottom), slice(max(left, x2 - width + 1), right))]
    saved = [rgb[s].copy() for s in strips]
    try:
        for s in strips:
            rgb[s] = (255, 0, 0)
        save_image(rgb, out_path, quality=92)
    finally:
        for s, pixels in zip(reversed(strips), reversed(saved)):
            rgb[s] = pixels
    return out_path, box


def _region_identification(record, task, lang, ctx, rng, image: Optional[RecordImage], prompt, answer) -> List[dict]:
    rows = []
    for index, finding in _pick_findings(record, task, rng):
        out = ctx.out_dir / 'marked' / f'{file_key(record.record_id)}_{index:03d}.jpg'
        if image is None:
            image = RecordImage(record.image_path(ctx.image_dir), load_image(record.image_path(ctx.image_dir)))
        pixels = image.pixels
        sx, sy = pixels.scale
        box = [finding.box_px[0] * sx, finding.box_px[1] * sy, finding.box_px[2] * sx, finding.box_px[3] * sy]
        if not out.exists():
            draw_box(pixels, finding.box_px, out)
        name = vocab.finding_name(finding.label, lang)
        text = answer(task.answer, target=name, Target=name[:1].upper() + name[1:])
        rows.append(_row(record, task, lang, prompt(), text, ctx.rel(out), target=finding.label,
                         marked_box_px=box, width=pixels.width, height=pixels.height))
    return rows


def file_key(record_id: str) -> str:
    """A file-name-safe form of a record id (ids may be relative paths such as ``a/b.tif``)."""
    safe = re.sub(r'[^A-Za-z0-9._-]', '_', record_id)
    return safe if safe == record_id else f'{safe}-{hashlib.sha1(record_id.encode()).hexdigest()[:8]}'


def _mcq(record, task, lang, rng, image_rel, prompt, answer) -> List[dict]:
    rows = []
    # Distractors come only from the classes the source annotates exhaustively (a class it does not
    # annotate could lie in the region) and never from a class with a box on that region (IoU > 0).
    vocabulary = [fid for fid in (task.targets or vocab.FINDINGS) if fid in record.provenance.annotated_labels]
    for _, finding in _pick_findings(record, task, rng):
        overlapping = {f.label for f in record.findings if iou(f.box_px, finding.box_px) > 0}
        pool = [fid for fid in vocabulary if fid != finding.label and fid not in overlapping]
        if not pool:
            continue
        options = rng.sample(pool, min(MCQ_OPTIONS - 1, len(pool))) + [finding.label]
        rng.shuffle(options)
        letter = LETTERS[options.index(finding.label)]
        lines = '\n'.join(f'{LETTERS[i]}. {vocab.finding_name(o, lang)}' for i, o in enumerate(options))
        grounded = GroundedText()
        text = prompt(region=grounded.box(finding.box_px), options=lines)
        rows.append(_row(record, task, lang, text, answer(task.answer, letter=letter,
                                                          option=vocab.finding_name(finding.label, lang)),
                         image_rel, grounded, target=finding.label, answer_letter=letter,
                         options=[vocab.finding_name(o, lang) for o in options]))
    return rows
