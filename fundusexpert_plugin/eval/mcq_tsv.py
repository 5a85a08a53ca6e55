"""GMAI-MMBench / Fundus-MMBench TSV files <-> ms-swift rows, and FundusGen MCQ items -> TSV.

TSV schema (GMAI-MMBench, VLMEvalKit ``ImageMCQDataset``; Fundus-MMBench card): tab-separated, one
header line; required ``index``, ``question``, ``A``, ``B``, ``answer``; optional ``C``-``E``,
``category`` and any other column (``clinical VQA task``, ``department`` ... kept in
``TsvItem.extra``); the image is an ``image_path`` column (a file path) or an ``image`` column
(base64; VLMEvalKit also allows a short value naming the ``index`` of a row with the same image).

Swift rows (ms-swift standard keys; anything else would be dropped by swift, so task, answer and
category go to a side file that ``fundusexpert eval --meta`` reads)::

    {"messages": [{"role": "user", "content": "<image>" + prompt},
                  {"role": "assistant", "content": "B"}], "images": ["/abs/123.png"]}

Images the library writes are never the source bytes: an embedded ``image`` cell
(:func:`write_tsv`, ``mcq-export --embed-images``) is a fresh JPEG (quality
:data:`EMBED_JPEG_QUALITY`) of the upright pixels the one image intake reads
(:func:`core.images.load_image`, :func:`core.images.encode_jpeg`), and a decoded TSV image
(:func:`materialise_images`) is a fresh lossless PNG (:func:`core.images.save_image`): no EXIF
(capture time, GPS), XMP, ICC profile or comment of the original reaches the output.

FundusGen export (:func:`export_fundusgen_mcq`): image paths of a FundusGen folder are relative to
the rows file and are resolved against it; a missing image stops the export, naming the row and
the path. A region question's box (``objects.bbox``, pixels) is written into the question in the
convention the export states in its ``bbox_convention`` column: ``'grid'`` (default, as the paper's
benchmark): ``[x1, y1, x2, y2]`` integers on the 0-999 grid of the whole image
(:func:`geometry.box_px_to_grid`); ``'px'``: rounded original-image pixels. The instruction line
and the ``Question:``/``问题：`` prefix are stripped in both languages; the item's language goes to a
``lang`` column, and rows made from the TSV are asked in it (a TSV without the column: English).

VLMEvalKit note: a dataset whose name contains ``mmbench`` (e.g. ``Fundus_MMBench_custom``) is
scored by VLMEvalKit with *circular* evaluation (every rotation of the options must be answered
right), which is not the paper's single-pass accuracy; name the TSV without it, e.g.
``FundusGen_MCQ.tsv``.
"""
from __future__ import annotations

import base64
import binascii
import csv
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.geometry import box_px_to_grid
from fundusexpert_plugin.core.images import ImageSkip, encode_jpeg, load_image, save_image
from fundusexpert_plugin.eval.mcq import (INSTRUCTION, INSTRUCTION_ZH, LETTERS, build_prompt, check_answer_letter,
                                         is_mcq_prompt, parse_options)
from fundusexpert_plugin.core.jsonl import read_jsonl, write_jsonl
from fundusexpert_plugin.eval.results import check_swift_row, fundusgen_category

REQUIRED_COLUMNS = ('index', 'question', 'A', 'B', 'answer')
_KNOWN = set(REQUIRED_COLUMNS) | set(LETTERS) | {'category', 'image', 'image_path'}
_ANSWER_ONLY = re.compile(r'^\s*\(?([A-E])\)?(?:[.:)]\s*.*)?\s*$', re.S)
BOX_CONVENTIONS = {'grid': 'xyxy integers on the 0-999 grid of the whole image',
                   'px': 'xyxy integer pixels of the original image'}
#: JPEG quality of embedded images (:func:`embedded_image`): a fresh encode of the decoded pixels
EMBED_JPEG_QUALITY = 95


@dataclass
class TsvItem:
    """One benchmark item.

    Attributes:
        index: the ``index`` cell (kept as text).
        question: question text without options.
        options: ``{letter: text}`` for the non-empty options A-E.
        answer: reference letter.
        category: ``category`` cell (``''`` when absent).
        image_path: image file path (absolute when it could be resolved), or ``None``.
        image_b64: base64 image bytes from the ``image`` column, or ``None``.
        extra: every other column, in file order.
        where: ``'<file>:<line>'`` of the item's row in the file it was read from (``''`` if none),
            for messages.
    """

    index: str
    question: str
    options: Dict[str, str]
    answer: str
    category: str = ''
    image_path: Optional[str] = None
    image_b64: Optional[str] = None
    extra: Dict[str, str] = field(default_factory=dict)
    where: str = field(default='', compare=False)

    @property
    def lang(self) -> str:
        """Prompt language: the ``lang`` column (``'zh'`` or ``'en'``; FundusGen exports write it), else ``'en'``."""
        return self.extra.get('lang') or 'en'


def _b64_image(value: str, where: str) -> str:
    """A base64 ``image`` cell, checked to decode (whitespace ignored)."""
    try:
        base64.b64decode(''.join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise FundusDataError(f'{where}: image = {value[:20]!r}...: invalid base64 ({len(value)} characters)',
                              reason='bad_field') from None
    return value


def read_tsv(path: str, *, require_image_files: bool = False) -> List[TsvItem]:
    """Read a benchmark TSV (module docstring), checking every row.

    Rows are named by their line in the file (1-based, the header is line 1; a quoted cell with
    line breaks makes a row span several lines and the row is named by its first).

    Args:
        path: the TSV.
        require_image_files: every row without a base64 ``image`` must have an ``image_path``
            that exists (relative paths are resolved against the TSV's folder); for converting the
            TSV to rows a model reads. Scoring against the TSV needs only the text.

    Raises:
        FundusDataError: ``'<path>:<line>: <column> = <value>: ...'``: a required column is missing;
            ``index`` is empty or repeats an earlier row's; ``answer`` is not the letter of one of the
            row's non-empty options; ``image`` is neither valid base64 nor (a short value) the index of
            a row holding the image; a row has neither ``image`` nor ``image_path``; or (with
            ``require_image_files``) ``image_path`` does not exist.
    """
    csv.field_size_limit(sys.maxsize)  # base64 images exceed csv's 128 kB default
    base = Path(path).resolve().parent
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f, delimiter='\t')
        header = list(reader.fieldnames or [])
        rows, start = [], reader.line_num + 1
        for r in reader:
            rows.append((start, r))
            start = reader.line_num + 1
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise FundusDataError(f'{path}: missing TSV column(s) {missing}; the GMAI-MMBench schema needs '
                              f'{list(REQUIRED_COLUMNS)} plus image or image_path, found {header}')
    b64_by_index = {r['index']: (line, r['image']) for line, r in rows if len(r.get('image') or '') > 64}
    items, seen = [], {}
    for line, r in rows:
        where = f'{path}:{line}'
        index = r['index'] or ''
        if not index.strip():
            raise FundusDataError(f'{where}: index is empty', reason='bad_field')
        if index in seen:
            raise FundusDataError(f'{where}: index = {index!r}: appears twice (first on line {seen[index]})',
                                  reason='duplicate_index')
        seen[index] = line
        options = {k: r[k] for k in LETTERS if r.get(k) not in (None, '')}
        answer = check_answer_letter(r.get('answer') or '', options, where)
        image_b64 = r.get('image') or None
        if image_b64 and len(image_b64) <= 64:  # VLMEvalKit: a short value points at another row
            if image_b64 not in b64_by_index:
                raise FundusDataError(f'{where}: image = {image_b64!r}: neither base64 image data nor the index of '
                                      'a row holding the image', reason='bad_field')
            image_b64 = b64_by_index[image_b64][1]
        elif image_b64:
            _b64_image(image_b64, where)
        image_path = r.get('image_path') or None
        if image_path and not os.path.isabs(image_path) and (base / image_path).exists():
            image_path = str(base / image_path)
        if not image_b64 and not image_path:
            raise FundusDataError(f'{where}: no image (empty image and image_path columns)', reason='bad_field')
        if require_image_files and not image_b64 and not os.path.isfile(image_path):
            raise FundusDataError(f'{where}: image_path = {r["image_path"]!r}: image file not found (relative paths '
                                  f'are resolved against {base})', reason='image_missing')
        items.append(TsvItem(
            index=index, question=r['question'], options=options,
            answer=answer, category=r.get('category') or '',
            image_path=image_path, image_b64=image_b64,
            extra={k: v for k, v in r.items() if k not in _KNOWN and k is not None}, where=where))
    return items


def _b64_pixels(item: TsvItem) -> np.ndarray:
    """Upright RGB pixels ``(H, W, 3)`` uint8 of an item's base64 ``image``, read by the one image intake
    (:func:`core.images.load_image`, from a temporary file: EXIF orientation applied, any mode to RGB).

    Raises:
        FundusDataError: the data is not an image the intake can read (the TSV ``index`` named).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'image'
        path.write_bytes(base64.b64decode(item.image_b64))
        try:
            return load_image(path).rgb
        except ImageSkip as exc:
            why = str(exc).replace(f'{path}: ', '').replace(f"'{path}'", 'the data').replace(str(path), 'the data')
            where = item.where or f'index {item.index}'   # the temporary file's name says nothing
            raise FundusDataError(f'{where}: image: the base64 data is not a readable image ({why})',
                                  reason='image_unreadable') from None


def materialise_images(items: Iterable[TsvItem], image_dir: str) -> List[TsvItem]:
    """Write base64 images to ``image_dir/<index>.png`` and set ``image_path`` (absolute).

    Each file is a fresh metadata-free PNG of the decoded, upright pixels (:func:`core.images.save_image`):
    no EXIF, GPS, XMP, ICC profile or comment of the embedded file reaches the disk, and the pixels are
    those of the embedded image, losslessly. Items that already have an existing ``image_path`` are left
    as they are.

    Raises:
        FundusDataError: the base64 data of an item is not an image (its TSV file and line named, else its
            ``index``); the images this call wrote before it are removed (and ``image_dir``, if it made it).
    """
    out_dir = Path(image_dir).resolve()
    made_dir = not out_dir.exists()
    out, written = [], []
    try:
        for item in items:
            if item.image_b64 and not (item.image_path and os.path.exists(item.image_path)):
                pixels = _b64_pixels(item)
                target = out_dir / f'{re.sub(r"[^A-Za-z0-9_.-]", "_", item.index)}.png'
                existed = target.exists()
                save_image(pixels, target)
                written += [] if existed else [target]
                item = TsvItem(**{**item.__dict__, 'image_path': str(target)})
            out.append(item)
    except FundusDataError:
        for path in written:
            path.unlink(missing_ok=True)
        if made_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    return out


def embedded_image(item: TsvItem) -> str:
    """The base64 ``image`` cell :func:`write_tsv` writes for an item: a fresh metadata-free JPEG
    (:func:`core.images.encode_jpeg`, quality :data:`EMBED_JPEG_QUALITY`) of the upright pixels
    :func:`core.images.load_image` reads from ``image_path``, or of the item's own base64 image.

    Never the file's own bytes: EXIF (capture time, GPS, camera serial), XMP, ICC and JPEG comments
    are not carried over. The pixels are the source's re-encoded as JPEG (an EXIF-rotated photo
    comes out upright, as every box of FundusGen refers to the upright image); ``''`` when the item
    has no image.

    Raises:
        FundusDataError: the image cannot be read (:class:`core.images.ImageSkip`, the TSV ``index``
            named).
    """
    if item.image_b64:
        pixels = _b64_pixels(item)
    elif item.image_path:
        try:
            pixels = load_image(item.image_path).rgb
        except ImageSkip as exc:
            raise FundusDataError(f'index {item.index}: image_path: {exc}', reason=exc.reason) from None
    else:
        return ''
    return base64.b64encode(encode_jpeg(pixels, quality=EMBED_JPEG_QUALITY)).decode('ascii')


def item_to_row(item: TsvItem, *, system: Optional[str] = None, with_answer: bool = True) -> dict:
    """One swift row (see module docstring); ``system`` adds a system message."""
    messages = [{'role': 'system', 'content': system}] if system else []
    messages.append({'role': 'user', 'content': '<image>' + build_prompt(item.question, item.options, item.lang)})
    if with_answer:
        messages.append({'role': 'assistant', 'content': item.answer})
    return {'messages': messages, 'images': [item.image_path]}


def item_meta(item: TsvItem, row_index: int) -> dict:
    """Side-file record for ``fundusexpert eval --meta``: task, answer, category, every other column."""
    return {'index': row_index, 'task': 'mcq', 'answer': item.answer, 'category': item.category,
            'tsv_index': item.index, 'options': item.options, **item.extra}


def tsv_to_swift_rows(tsv_path: str, out_jsonl: str, *, image_dir: Optional[str] = None,
                      system: Optional[str] = None, with_answer: bool = True) -> Tuple[str, str]:
    """Convert a benchmark TSV to swift rows for ``swift infer --val_dataset``.

    Args:
        tsv_path: GMAI-MMBench-schema TSV.
        out_jsonl: rows are written here; the side file goes to ``<out_jsonl stem>.meta.jsonl``.
        image_dir: where base64 images are decoded (default ``<out_jsonl dir>/images``).
        system: optional system message (the official API eval used "You are a professional
            fundus imaging expert."; leave ``None`` to keep the model's own system prompt).
        with_answer: add the reference letter as the assistant turn (swift infer reports it as
            ``labels``).

    Returns:
        ``(rows_path, meta_path)``.

    Raises:
        FundusDataError: a bad TSV row (:func:`read_tsv` with ``require_image_files``: file, line and
            column named).
    """
    out = Path(out_jsonl)
    items = materialise_images(read_tsv(tsv_path, require_image_files=True), image_dir or str(out.parent / 'images'))
    out.parent.mkdir(parents=True, exist_ok=True)
    meta_path = out.with_name(out.stem + '.meta.jsonl')
    write_jsonl(out, (item_to_row(item, system=system, with_answer=with_answer) for item in items))
    write_jsonl(meta_path, (item_meta(item, i) for i, item in enumerate(items)))
    return str(out), str(meta_path)


def write_tsv(items: Iterable[TsvItem], path: str, *, embed_images: bool = False) -> int:
    """Write items in the GMAI-MMBench schema (VLMEvalKit custom MCQ); returns the row count.

    ``embed_images`` adds a base64 ``image`` column: a fresh metadata-free JPEG of each item's pixels
    (:func:`embedded_image`; never the source file's bytes) in place of the ``image_path`` column: local
    file names can identify patients, and VLMEvalKit reads the embedded image. Without it the TSV has
    ``image_path`` (the file each item names) and no ``image``.

    Raises:
        FundusDataError: with ``embed_images``, an item's image cannot be read (its ``index`` named).
    """
    items = list(items)
    extra_cols: List[str] = []
    for item in items:
        extra_cols += [k for k in item.extra if k not in extra_cols]
    cols = ['index', 'question', *LETTERS, 'answer', 'category', *extra_cols, 'image' if embed_images else 'image_path']
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f, delimiter='\t', lineterminator='\n')
        writer.writerow(cols)
        for item in items:
            row = {'index': item.index, 'question': item.question, 'answer': item.answer,
                   'category': item.category, 'image_path': item.image_path or '', **item.options, **item.extra}
            if embed_images:
                row['image'] = embedded_image(item)
            writer.writerow([row.get(c, '') for c in cols])
    return len(items)


def _question_text(prompt: str) -> str:
    text = prompt.replace('<image>', '')
    for instruction in (INSTRUCTION, INSTRUCTION_ZH):
        text = text.replace(instruction.strip(), '')
    text = re.sub(r'^\s*[A-E]\.\s?.*$', '', text, flags=re.M)
    text = re.sub(r'^\s*(?:Question:|问题：)\s*', '', text.strip())
    return re.sub(r'\n{2,}', '\n', text).strip()


def render_box(box, width: float, height: float, convention: str = 'grid', bbox_type: str = 'real') -> str:
    """One box as question text: ``'[x1, y1, x2, y2]'``.

    Args:
        box: xyxy in original-image pixels (``bbox_type='real'``) or 0-1 (``'norm1'``).
        width, height: image size in pixels.
        convention: ``'grid'`` (0-999 integers, :func:`geometry.box_px_to_grid`) or ``'px'`` (pixels,
            rounded to integers).

    Raises:
        ValueError: unknown ``convention``.
    """
    if convention not in BOX_CONVENTIONS:
        raise ValueError(f'unknown box convention {convention!r}; expected one of {sorted(BOX_CONVENTIONS)}')
    px = [float(v) * (width if i % 2 == 0 else height) for i, v in enumerate(box)] if bbox_type == 'norm1' \
        else [float(v) for v in box]
    values = box_px_to_grid(px, width, height) if convention == 'grid' else [round(v) for v in px]
    return '[' + ', '.join(str(int(v)) for v in values) + ']'


def _fill_placeholders(text: str, row: dict, size, convention: str) -> str:
    """Replace ``<ref-object>``/``<bbox>`` of a user turn with the row's objects, in order (as swift does)."""
    objects = row.get('objects') or {}
    refs, boxes = iter(objects.get('ref') or []), iter(objects.get('bbox') or [])

    def fill(match):
        if match.group(0) == '<ref-object>':
            return str(next(refs, match.group(0)))
        box = next(boxes, None)
        return match.group(0) if box is None else render_box(box, *size(), convention, objects.get('bbox_type', 'real'))

    return re.sub(r'<ref-object>|<bbox>', fill, text)


def row_to_item(row: dict, index: int, *, base_dir: Optional[Path] = None, where: str = '',
                box_convention: str = 'grid') -> Optional[TsvItem]:
    """A FundusGen swift row -> :class:`TsvItem`, or ``None`` when it is not an MCQ item.

    An MCQ item has a user prompt with lettered options (at least ``A.`` and ``B.`` lines) and an
    assistant answer that is one of those letters (``'B'``, ``'(B)'``, ``'B. glaucoma'``).
    ``category`` comes from the row's ``category`` field, else :func:`results.fundusgen_category` (the
    MCQ item's ``target`` finding id, or ``task``), else ``'fundusgen'``. A ``<bbox>`` in the question is written as the row's box in ``box_convention``
    (module docstring); the item then carries ``bbox_convention`` in ``extra``. ``extra['lang']`` is the
    row's ``lang`` (``'en'``/``'zh'``), else ``'zh'`` when the prompt has the Chinese instruction, so
    the TSV's rows are asked again in their own language (:func:`item_to_row`).

    Args:
        base_dir: folder relative image paths are resolved against (the rows file's folder);
            ``None``: the current directory.
        where: ``'<file>:<line>'`` for messages.

    Raises:
        FundusDataError: a field has the wrong JSON type (:func:`results.check_swift_row`; ``width``
            and ``height`` must be numbers), or the image file does not exist (row and path named).
    """
    where = where or f'row {index}'
    check_swift_row(row, where, require_response=False)
    for key in ('width', 'height'):
        if row.get(key) is not None and (isinstance(row[key], bool) or not isinstance(row[key], (int, float))):
            raise FundusDataError(f'{where}: {key} = {row[key]!r}: expected the image {key} in pixels (a number)',
                                  reason='bad_field')
    messages = row.get('messages') or []
    user = next((m['content'] for m in reversed(messages) if m.get('role') == 'user'), None)
    reply = messages[-1].get('content') if messages and messages[-1].get('role') == 'assistant' else None
    if not isinstance(user, str) or not isinstance(reply, str) or not is_mcq_prompt(user):
        return None
    options = parse_options(user)
    match = _ANSWER_ONLY.match(reply)
    if not match or match.group(1) not in options:
        return None
    images = row.get('images') or []
    image = images[0] if images else None
    image = image.get('path') if isinstance(image, dict) else image
    path = None
    if image:
        path = Path(image) if os.path.isabs(image) else Path(base_dir or '.') / image
        if not path.is_file():
            raise FundusDataError(f'{where}: images[0] = {image!r}: image file not found '
                                  f'({path.resolve()}); paths are relative to the rows file')
        path = path.resolve()

    def size():
        if row.get('width') and row.get('height'):
            return float(row['width']), float(row['height'])
        from PIL import Image
        with Image.open(path) as im:
            return im.size

    question = _question_text(user)
    lang = row.get('lang') if row.get('lang') in ('en', 'zh') else ('zh' if INSTRUCTION_ZH.strip() in user else 'en')
    extra = {'lang': lang}
    if '<bbox>' in question:
        question = _fill_placeholders(question, row, size, box_convention)
        extra['bbox_convention'] = BOX_CONVENTIONS[box_convention]
    return TsvItem(index=str(index), question=question, options=options, answer=match.group(1),
                   category=str(row.get('category') or fundusgen_category(row) or 'fundusgen'),
                   image_path=str(path) if path else None, extra=extra)


def export_fundusgen_mcq(rows_jsonl: str, tsv_out: str, *, embed_images: bool = False,
                         box_convention: str = 'grid') -> Tuple[int, int]:
    """Export the MCQ items of a FundusGen swift-row jsonl as a VLMEvalKit custom MCQ TSV.

    Image paths are resolved against the rows file's folder (FundusGen writes them relative to it).
    Name the TSV without ``mmbench`` unless circular evaluation is wanted (module docstring).

    Args:
        rows_jsonl: FundusGen rows (``mcq.jsonl``).
        tsv_out: TSV to write.
        embed_images: add a base64 ``image`` column: fresh metadata-free JPEGs of the pixels
            (:func:`embedded_image`), never the source files' bytes.
        box_convention: ``'grid'`` (0-999, default) or ``'px'`` for boxes written into questions.

    Returns:
        ``(n_exported, n_skipped)``; skipped rows are not MCQ items (see :func:`row_to_item`). With no
        MCQ item nothing is written (``(0, n_skipped)``; the command exits 1).

    Raises:
        FundusDataError: a row is not JSON, a field has the wrong type, or an MCQ row's image is missing
            (file:line and field or path named).
    """
    base = Path(rows_jsonl).resolve().parent
    items, skipped = [], 0
    for number, row in read_jsonl(rows_jsonl):
        where = f'{rows_jsonl}:{number}'
        item = row_to_item(row, len(items), base_dir=base, where=where, box_convention=box_convention)
        if item is None:
            skipped += 1
        else:
            items.append(item)
    if not items:
        return 0, skipped
    write_tsv(items, tsv_out, embed_images=embed_images)
    return len(items), skipped


def tsv_matcher(items: Iterable[TsvItem]):
    """A function ``(prompt, image_path) -> TsvItem | None`` that finds a result row's TSV item.

    Matching (for result rows written without a ``--meta`` side file): the user prompt must equal
    the item's :func:`mcq.build_prompt` (``<image>`` removed, outer whitespace ignored); when
    several items share the prompt (Fundus-MMBench repeats questions), the image decides: same
    resolved path, or file stem equal to the item's ``index`` (how :func:`materialise_images`
    names decoded images). Ambiguous or unknown rows give ``None``.
    """
    by_prompt: Dict[str, List[TsvItem]] = {}
    for item in items:
        by_prompt.setdefault(build_prompt(item.question, item.options, item.lang).strip(), []).append(item)

    def match(prompt: str, image: Optional[str]) -> Optional[TsvItem]:
        found = by_prompt.get((prompt or '').replace('<image>', '').strip(), [])
        if len(found) <= 1:
            return found[0] if found else None
        if image:
            same = [i for i in found if i.image_path and Path(i.image_path).resolve() == Path(image).resolve()]
            same = same or [i for i in found if Path(image).stem == i.index]
            if len(same) == 1:
                return same[0]
        return None

    return match


def write_general_vmcq(items: Iterable[TsvItem], out_dir: str, subset: str = 'fundus_mmbench') -> str:
    """Write items for evalscope's ``general_vmcq`` benchmark (``swift eval``, Native backend).

    One line per item in ``<out_dir>/<subset>_val.jsonl``: ``{"question": "<image 1>" + question,
    "options": [texts], "image_1": path, "answer": letter}`` (evalscope 1.10
    ``benchmarks/general_vmcq``). Items need an ``image_path`` (see :func:`materialise_images`).
    evalscope writes its own prompt (options as ``A) text``) and extracts ``ANSWER: X`` or else the
    last capital letter, so its accuracy is not the paper's; see SWIFT_EVAL.md.

    Raises:
        ValueError: an item has no image path or its options are not A, B, ... without gaps.
    """
    path = Path(out_dir) / f'{subset}_val.jsonl'
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in items:
        letters = list(item.options)
        if not item.image_path or letters != list(LETTERS[:len(letters)]):
            raise ValueError(f'index {item.index}: general_vmcq needs an image path and options A, B, ... '
                             f'without gaps; got image_path={item.image_path!r}, options {letters}')
        rows.append({'question': '<image 1>' + item.question, 'options': list(item.options.values()),
                     'image_1': item.image_path, 'answer': item.answer})
    write_jsonl(path, rows)
    return str(path)
