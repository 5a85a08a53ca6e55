"""A FundusGen row's reference answer written out as a model would answer, for reward tests and benchmarks.

The rows keep ms-swift placeholders (``<ref-object>``, ``<bbox>``) that the template fills from
``objects`` at encode time; these functions fill them in order without a template: InternVL form on the
0-999 grid (:func:`geometry.box_px_to_grid`), or Qwen form in resized-image pixels
(:func:`geometry.box_px_to_resized`). Boxes of one reference stay in separate box tags. Only the
answer's placeholders are filled, from the first ref and box on: the prompts of FundusGen's grounded
tasks have none (an MCQ prompt's ``<bbox>`` belongs to the question, its answer is a letter).
"""
from __future__ import annotations

import re
from typing import Iterator, Optional, Sequence, Tuple

from fundusexpert_plugin.core import geometry

_PLACEHOLDER = re.compile(r'<ref-object>|<bbox>')


def fill_placeholders(text: str, refs: Sequence[str], boxes: Sequence[str], ref_format: str) -> str:
    """Replace ``<ref-object>``/``<bbox>`` in order by ``ref_format.format(ref)`` and the rendered ``boxes``."""
    ref_iter: Iterator[str] = iter(refs)
    box_iter: Iterator[str] = iter(boxes)
    return _PLACEHOLDER.sub(lambda m: ref_format.format(next(ref_iter, '')) if m.group() == '<ref-object>'
                            else next(box_iter, ''), text)


def reference_answer(row: dict, family: str = 'internvl', *, resized_size: Optional[Tuple[int, int]] = None,
                     shift_frac: float = 0.0) -> str:
    """The row's assistant answer with its boxes written in ``family``'s convention.

    Args:
        row: a FundusGen row (``messages`` ending with the reference answer, ``objects`` in pixels,
            ``width``/``height``).
        family: ``'internvl'`` (``<ref>..</ref><box>[[x1, y1, x2, y2]]</box>``, 0-999 grid) or
            ``'qwen'`` (``<|object_ref_start|>..<|box_start|>(x1,y1),(x2,y2)<|box_end|>``).
        resized_size: ``(resized_width, resized_height)``, needed for ``'qwen'``.
        shift_frac: move every box right by this share of its width (clipped to the image).

    Raises:
        ValueError: unknown family, or ``'qwen'`` without ``resized_size``.
    """
    if family not in ('internvl', 'qwen'):
        raise ValueError(f"family must be 'internvl' or 'qwen', got {family!r}")
    if family == 'qwen' and resized_size is None:
        raise ValueError('qwen answers are in resized-image pixels: pass resized_size')
    width, height = row['width'], row['height']
    objects = row.get('objects') or {}
    boxes = []
    for x1, y1, x2, y2 in objects.get('bbox') or []:
        dx = (x2 - x1) * shift_frac
        box = (min(x1 + dx, width), y1, min(x2 + dx, width), y2)
        if family == 'internvl':
            boxes.append('<box>[[%d, %d, %d, %d]]</box>' % geometry.box_px_to_grid(box, width, height))
        else:
            boxes.append('<|box_start|>(%d,%d),(%d,%d)<|box_end|>'
                         % geometry.box_px_to_resized(box, width, height, *resized_size))
    ref_format = '<ref>{}</ref>' if family == 'internvl' else '<|object_ref_start|>{}<|object_ref_end|>'
    return fill_placeholders(row['messages'][-1]['content'], list(objects.get('ref') or []), boxes, ref_format)
