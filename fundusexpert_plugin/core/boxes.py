"""The one rule for an annotated box: what every reader accepts, clips or refuses.

Every annotation reader (``sources/``: VOC, COCO, YOLO, box CSV, CODRAS, masks) and the FundusGen
records reader (:func:`fundusexpert_plugin.core.record.read_records`) apply it, so a box means the
same wherever it was read. Coordinates are xyxy in original-image pixels.

* Values must be JSON numbers (``"100"`` is refused, never coerced), finite.
* A box that sticks out of the image by at most :data:`CLIP_TOLERANCE_PX` is clipped to it (label
  rounding: a corner written as 4288.5 on a 4288 px image); further out is refused.
* After clipping it must have ``x1 < x2`` and ``y1 < y2``.

Each refusal is a :class:`~fundusexpert_plugin.core.errors.FundusDataError` whose ``reason`` is
the key a lenient run counts: ``box_not_numbers``, ``box_not_finite``, ``box_outside_image``,
``box_empty_or_inverted`` (ours; the paper gives no rule for faulty labels).
"""
from __future__ import annotations

from typing import List

import numpy as np

from fundusexpert_plugin.core.errors import FundusDataError

#: A box may stick out of the image by this much (label rounding) and is clipped; more is an error.
CLIP_TOLERANCE_PX = 1.0


def is_number(value) -> bool:
    """A JSON number (int or float, numpy scalars too), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_numbers(values, n: int, *, where: str, field_name: str) -> List[float]:
    """``n`` finite JSON numbers (strings such as ``"100"`` are refused, never coerced).

    Raises:
        FundusDataError: reason ``box_not_numbers`` (wrong count or a non-number) or ``box_not_finite``.
    """
    if not isinstance(values, (list, tuple)) or len(values) != n or not all(is_number(v) for v in values):
        raise FundusDataError(f'{where}: {field_name} = {values!r}: expected {n} numbers (JSON numbers, '
                              'not strings)', reason='box_not_numbers')
    out = [float(v) for v in values]
    if not all(np.isfinite(out)):
        raise FundusDataError(f'{where}: {field_name} = {values!r}: NaN or infinite value', reason='box_not_finite')
    return out


def annotation_box(box_px, width: int, height: int, *, where: str, field_name: str) -> List[float]:
    """An annotated box checked and clipped by the module's rule.

    Args:
        box_px: ``[x1, y1, x2, y2]`` in original-image pixels, as read.
        width, height: image size in pixels.
        where, field_name: prefix of the message (``'a.jsonl:3: record 0003'``, ``'findings[2].box_px'``).

    Returns:
        ``[x1, y1, x2, y2]`` floats inside ``[0, width] x [0, height]``.

    Raises:
        FundusDataError: reasons ``box_not_numbers``, ``box_not_finite``, ``box_outside_image``,
            ``box_empty_or_inverted``.
    """
    x1, y1, x2, y2 = check_numbers(list(box_px) if isinstance(box_px, tuple) else box_px, 4,
                                   where=where, field_name=field_name)
    tol = CLIP_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise FundusDataError(f'{where}: {field_name} = {[x1, y1, x2, y2]}: outside the '
                              f'{width}x{height} px image by more than {tol} px (xyxy pixels)',
                              reason='box_outside_image')
    box = [max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)]
    if box[2] <= box[0] or box[3] <= box[1]:
        raise FundusDataError(f'{where}: {field_name} = {[x1, y1, x2, y2]}: inverted or zero-area box '
                              '(need x1 < x2 and y1 < y2, xyxy pixels)', reason='box_empty_or_inverted')
    return box
