"""Boxes out of model text, in every convention a swift-served model writes, mapped to pixels.

Conventions (``TextBox.convention``) and the space their numbers are in by default:

* ``'internvl'``: ``<ref>label</ref><box>[[x1, y1, x2, y2], [...]]</box>``; several boxes per box
  tag; every box tag belongs to the latest ``<ref>`` before it. Space ``'grid'`` (0-999 of the
  whole original image; official quick_start.py). ms-swift's own ``norm1000`` (0-1000, rounded) is
  read the same way; the difference is below one grid unit.
* ``'qwen'``: ``<|object_ref_start|>label<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``
  (ms-swift 4.6 legacy Qwen rendering). Space ``'resized'``: integer pixels of the image after the
  Qwen2.5-VL processor resized it (ms-swift ``norm_bbox='none'``); see :func:`qwen_resized_size`.
  Qwen2-VL/Qwen3-VL templates render the same text on the 0-1000 grid: pass
  ``spaces={'qwen': 'grid'}``.
* ``'json'``: ``[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}]``, optionally inside a ```json
  fence (Qwen2.5-VL cookbook). Space ``'resized'`` (Qwen3-VL writes 0-1000: ``{'json': 'grid'}``).
* ``'bare'``: no tags at all, e.g. FundusExpert's demo answer ``[[162, 388, 312, 545]]`` or
  ``(x1,y1),(x2,y2)`` with the special tokens skipped. Read only when nothing tagged was found;
  label ``''``. Space ``'grid'``.

Spaces: ``'grid'`` (0-999 integers, :func:`geometry.box_grid_to_px`; ``grid_decode='centre'``
reads a value as the centre of its cell, ``'edge'`` as InternVL's evaluation does), ``'resized'``
(:func:`geometry.box_resized_to_px`) and ``'px'`` (already original pixels). Output boxes are
``box_px``: xyxy floats in original-image pixels, as written (never re-ordered or clipped).

Malformed boxes (:func:`box_fault`, ours; the one rule of ``fundusexpert eval`` and the GRPO
rewards): a box is ``'inverted'`` when ``x1 > x2`` or ``y1 > y2`` (corners are never re-ordered:
``[[380, 673, 299, 562]]`` is not ``[[299, 562, 380, 673]]``), and ``'out_of_range'`` when a value is
below 0 or beyond its space: above 1000 on the grid (999 is the paper's largest value; 1000, which
ms-swift's ``norm1000`` rounding writes at the far edge, is accepted), beyond the resized size
(``'resized'``) or the image size (``'px'``). Such a box is kept (``LabeledBox.fault`` says why) so
that scorers can count it, but it is never matched to a reference: InternVL's own grounding
evaluation likewise neither re-orders nor clips (``box_iou`` of an inverted box is 0, a box past the
image edge keeps its full size). ``x1 == x2`` (an empty box) is well formed and overlaps nothing.

Labels are canonicalised to finding ids (:func:`vocab.canonical_finding`, plus the Chinese display
names of :data:`vocab.FINDINGS`); an unknown label is kept as its stripped raw text.

Rule: model output never raises. Empty, truncated or malformed text gives fewer boxes or ``[]``.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from fundusexpert_plugin.core import geometry, vocab

CONVENTIONS = ('internvl', 'qwen', 'json', 'bare')
SPACES = ('grid', 'resized', 'px')
DEFAULT_SPACES: Dict[str, str] = {'internvl': 'grid', 'qwen': 'resized', 'json': 'resized', 'bare': 'grid'}

_NUM = r'-?\d+(?:\.\d+)?'
_LIST4 = re.compile(rf'\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]')
_PAIR2 = re.compile(rf'\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)')
_INTERNVL_TAG = re.compile(r'<ref>(.*?)</ref>|<box>(.*?)(?:</box>|(?=<ref>|<box>)|$)', re.S)
_QWEN_TAG = re.compile(
    r'<\|object_ref_start\|>(.*?)<\|object_ref_end\|>|<\|box_start\|>(.*?)(?:<\|box_end\|>|(?=<\|)|$)', re.S)
_FENCE = re.compile(r'```(?:json)?\s*(.*?)(?:```|$)', re.S | re.I)
_FLAT_OBJECT = re.compile(r'\{[^{}]*\}', re.S)
_JSON_BOX_KEYS = ('bbox_2d', 'bbox', 'box', 'box_2d')
_JSON_LABEL_KEYS = ('label', 'ref', 'name', 'category', 'class')


@dataclass(frozen=True)
class TextBox:
    """One box as written in the text, before any change of space.

    Attributes:
        raw_label: label text as written (``''`` when the box had none).
        coords: ``(x1, y1, x2, y2)`` in the convention's own space, as written.
        convention: one of :data:`CONVENTIONS`.
    """

    raw_label: str
    coords: Tuple[float, float, float, float]
    convention: str


@dataclass(frozen=True)
class LabeledBox:
    """A labelled box in original-image pixels (predictions and references alike).

    Attributes:
        label: finding id when known (``'optic_disc'``), else the stripped raw label, ``''`` if none.
        box_px: xyxy floats in original-image pixels, as written (a malformed box is not re-ordered).
        fault: ``''`` for a well-formed box, else why it is malformed (:data:`FAULTS`, :func:`box_fault`).
    """

    label: str
    box_px: geometry.BoxPx
    fault: str = ''

    @property
    def malformed(self) -> bool:
        """Whether the box is malformed (inverted or out of range): it never matches a reference."""
        return bool(self.fault)


#: why a box is malformed (:func:`box_fault`)
FAULTS = ('inverted', 'out_of_range')


def box_fault(box: TextBox, space: str, extent: Optional[Tuple[float, float]] = None) -> str:
    """Why a box as written is malformed (module docstring), or ``''`` when it is well formed.

    Args:
        box: from :func:`find_boxes`, in its own space.
        space: the space its numbers are in (:data:`SPACES`).
        extent: ``(width, height)`` of that space for ``'resized'`` (the resized image) and ``'px'``
            (the original image), in its units; ``None``: only values below 0 are out of range
            there. The grid's extent is always ``GRID`` (1000).

    Returns:
        ``'inverted'`` when ``x1 > x2`` or ``y1 > y2`` (checked first), ``'out_of_range'`` when a
        value is below 0 or above the extent, else ``''``.
    """
    x1, y1, x2, y2 = box.coords
    if x1 > x2 or y1 > y2:
        return 'inverted'
    limit = (geometry.GRID, geometry.GRID) if space == 'grid' else extent
    if min(x1, y1) < 0 or (limit is not None and (x2 > limit[0] or y2 > limit[1])):
        return 'out_of_range'
    return ''


def box_faults(boxes: Sequence[TextBox], spaces: Optional[Mapping[str, str]] = None, *,
               resized_size: Optional[Tuple[int, int]] = None) -> List[str]:
    """:func:`box_fault` of each box in the space of its convention (:data:`DEFAULT_SPACES` updated by
    ``spaces``), without the original image size: ``'resized'`` boxes are checked against
    ``resized_size`` when given, ``'px'`` boxes only for values below 0. For answer-form checks that
    do not map boxes to pixels (:func:`eval.rewards.format_reward`)."""
    spaces = {**DEFAULT_SPACES, **(spaces or {})}
    return [box_fault(b, spaces[b.convention], resized_size if spaces[b.convention] == 'resized' else None)
            for b in boxes]


def canonical_label(raw: str) -> str:
    """Finding id for a label as written (EN name, alias, id or ZH name), else the stripped text."""
    text = str(raw or '').strip().strip('"\'').strip()
    return vocab.canonical_finding(text) or text


def _floats(groups: Sequence[str]) -> Optional[Tuple[float, float, float, float]]:
    try:
        vals = tuple(float(g) for g in groups)
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == 4 and all(math.isfinite(v) for v in vals) else None  # type: ignore


def _boxes_in(chunk: str) -> List[Tuple[float, float, float, float]]:
    """All ``[x1, y1, x2, y2]`` lists in ``chunk``, else all ``(x1,y1),(x2,y2)`` pairs."""
    found = [b for b in (_floats(m.groups()) for m in _LIST4.finditer(chunk)) if b]
    return found or [b for b in (_floats(m.groups()) for m in _PAIR2.finditer(chunk)) if b]


def _tagged(text: str, pattern: re.Pattern, convention: str) -> List[TextBox]:
    out, label = [], ''
    for match in pattern.finditer(text):
        if match.group(1) is not None:
            label = match.group(1).strip()
        else:
            out += [TextBox(label, b, convention) for b in _boxes_in(match.group(2) or '')]
    return out


def _json_items(text: str) -> List[dict]:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        start = min([i for i in (cand.find('['), cand.find('{')) if i >= 0], default=-1)
        if start < 0:
            continue
        try:
            data, _ = json.JSONDecoder().raw_decode(cand[start:])
        except ValueError:
            continue
        items = data if isinstance(data, list) else [data]
        if any(isinstance(i, dict) for i in items):
            return [i for i in items if isinstance(i, dict)]
    items = []  # truncated or broken JSON: read each flat {...} object on its own
    for match in _FLAT_OBJECT.finditer(text):
        try:
            obj = json.loads(match.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict):
            items.append(obj)
    return items


def _json_boxes(text: str) -> List[TextBox]:
    out = []
    for item in _json_items(text):
        coords = next((item[k] for k in _JSON_BOX_KEYS if k in item), None)
        if not isinstance(coords, (list, tuple)) or len(coords) != 4:
            continue
        box = _floats([str(v) for v in coords]) if all(isinstance(v, (int, float)) for v in coords) else None
        if box:
            label = next((item[k] for k in _JSON_LABEL_KEYS if isinstance(item.get(k), str)), '')
            out.append(TextBox(label.strip(), box, 'json'))
    return out


def find_boxes(text: Optional[str]) -> List[TextBox]:
    """Every box in ``text``, in reading order, as written (no change of space).

    Tagged conventions are read first (InternVL, then Qwen, then JSON); ``'bare'`` lists are read
    only when none of them gave a box. Never raises: ``None``, empty or malformed text gives ``[]``.
    """
    if not isinstance(text, str) or not text.strip():
        return []
    boxes = _tagged(text, _INTERNVL_TAG, 'internvl') if '<box>' in text else []
    if '<|box_start|>' in text:
        boxes += _tagged(text, _QWEN_TAG, 'qwen')
    if not boxes and ('bbox' in text or 'box_2d' in text):
        boxes = _json_boxes(text)
    if not boxes:
        boxes = [TextBox('', b, 'bare') for b in _boxes_in(text)]
    return boxes


def unparsed_box_tags(text: Optional[str]) -> int:
    """Box tags of ``text`` (InternVL ``<box>``, Qwen ``<|box_start|>``) from which no box could be
    read: a tag holding three numbers, a word for a number, an empty tag. :func:`find_boxes` gives
    no box for them; the evaluation counts them (``grounding_responses.n_unparsed_box_tags``)."""
    if not isinstance(text, str):
        return 0
    n = 0
    for marker, pattern in (('<box>', _INTERNVL_TAG), ('<|box_start|>', _QWEN_TAG)):
        if marker in text:
            n += sum(1 for m in pattern.finditer(text) if m.group(1) is None and not _boxes_in(m.group(2) or ''))
    return n


def needs_resized_size(boxes: Sequence[TextBox], spaces: Optional[Mapping[str, str]] = None) -> bool:
    """Whether converting ``boxes`` to pixels needs the Qwen resized image size."""
    spaces = {**DEFAULT_SPACES, **(spaces or {})}
    return any(spaces[b.convention] == 'resized' for b in boxes)


def boxes_to_px(boxes: Sequence[TextBox], width: float, height: float, *,
                resized_size: Optional[Tuple[int, int]] = None,
                spaces: Optional[Mapping[str, str]] = None, grid_decode: str = 'centre') -> List[LabeledBox]:
    """Map text boxes to original-image pixels and canonicalise their labels.

    Args:
        boxes: from :func:`find_boxes`.
        width, height: original image size in pixels.
        resized_size: ``(resized_width, resized_height)`` of the Qwen-resized image in pixels;
            needed only for boxes whose space is ``'resized'``.
        spaces: per-convention override of :data:`DEFAULT_SPACES`, e.g. ``{'qwen': 'grid'}``.
        grid_decode: ``'centre'`` (default) or ``'edge'``, how a grid value becomes a pixel
            (:func:`geometry.from_grid999`).

    Returns:
        One :class:`LabeledBox` per input box (xyxy original pixels, corners as written), its
        ``fault`` set by :func:`box_fault` (extent: the grid, ``resized_size``, or ``width`` x
        ``height`` for ``'px'``).

    Raises:
        ValueError: a box is in ``'resized'`` space and ``resized_size`` is ``None`` (a caller
            setting, not model output: compute it with :func:`qwen_resized_size`), or an unknown
            space name, or an unknown ``grid_decode`` rule.
    """
    if grid_decode not in geometry.GRID_DECODE_RULES:
        raise ValueError(f'unknown grid decode rule {grid_decode!r}; expected one of {geometry.GRID_DECODE_RULES}')
    spaces = {**DEFAULT_SPACES, **(spaces or {})}
    bad = {k: v for k, v in spaces.items() if v not in SPACES}
    if bad:
        raise ValueError(f'unknown box space(s) {bad}; expected one of {SPACES}')
    out = []
    for b in boxes:
        space = spaces[b.convention]
        if space == 'grid':
            px = geometry.box_grid_to_px(b.coords, width, height, grid_decode)
        elif space == 'resized':
            if resized_size is None:
                raise ValueError(f'{b.convention} boxes are in resized-image pixels; pass resized_size='
                                 'qwen_resized_size(width, height, max_pixels=...) with the max_pixels '
                                 'used at inference, or spaces={...: "grid"} for 0-1000 models')
            px = geometry.box_resized_to_px(b.coords, width, height, *resized_size)
        else:
            px = tuple(float(v) for v in b.coords)
        extent = resized_size if space == 'resized' else (width, height)
        out.append(LabeledBox(canonical_label(b.raw_label), px, box_fault(b, space, extent)))
    return out


def parse_boxes(text: Optional[str], width: float, height: float, *,
                resized_size: Optional[Tuple[int, int]] = None,
                spaces: Optional[Mapping[str, str]] = None, grid_decode: str = 'centre') -> List[LabeledBox]:
    """:func:`find_boxes` then :func:`boxes_to_px`; see both (same arguments and errors)."""
    return boxes_to_px(find_boxes(text), width, height, resized_size=resized_size, spaces=spaces,
                       grid_decode=grid_decode)


def _env_pixels(name: str, factor: int) -> Optional[int]:
    value = os.environ.get(name)
    return (int(value) // factor**2) * factor**2 if value else None


def qwen_resized_size(width: int, height: int, *, min_pixels: Optional[int] = None,
                      max_pixels: Optional[int] = None, factor: int = 28) -> Tuple[int, int]:
    """Size of an image after the Qwen2.5-VL processor resized it, via ``qwen_vl_utils.smart_resize``.

    ms-swift maps the ``MAX_PIXELS``/``MIN_PIXELS`` environment variables to token counts
    (``value // factor**2``, ``swift/model/models/qwen.py::compat_qwen_vl_utils``); ``None`` here
    reads them the same way and otherwise uses qwen_vl_utils' defaults (4 to 16384 tokens of
    28x28 px). Pass the values used at inference, else Qwen boxes land in the wrong place.

    Args:
        width, height: original image size in pixels.
        min_pixels, max_pixels: pixel budget of the resized image (``None``: environment/default).
        factor: patch size x spatial merge (28 for Qwen2/2.5-VL).

    Returns:
        ``(resized_width, resized_height)`` in pixels, both multiples of ``factor``.

    Raises:
        ImportError: qwen_vl_utils is not installed.
        ValueError: aspect ratio above 200 (qwen_vl_utils' rule).
    """
    from qwen_vl_utils import smart_resize  # lazy: it imports torch and torchvision

    min_pixels = min_pixels if min_pixels is not None else _env_pixels('MIN_PIXELS', factor)
    max_pixels = max_pixels if max_pixels is not None else _env_pixels('MAX_PIXELS', factor)
    resized_height, resized_width = smart_resize(int(height), int(width), factor=factor,
                                                 min_pixels=min_pixels, max_pixels=max_pixels)
    return resized_width, resized_height
