"""Coordinate conventions: the one home of every box rule in this library.

Spaces (every name in the library says which one it uses):
    * ``box_px``: ``(x1, y1, x2, y2)`` floats in pixels of the **original** image; x points right,
      y points down; ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``. Edges are continuous
      coordinates, so the width is ``x2 - x1`` (x2 is exclusive, unlike torchvision's
      ``masks_to_boxes`` where x2 is the last pixel).
    * ``box_grid``: ``(x1, y1, x2, y2)`` integers on the 0-999 grid of the **whole** original image
      (never a tile), ``int(v / W * 1000)`` clipped to 999. Source: FundusExpert / InternVL
      grounding prompts ("normalised to an integer 0-999"; official quick_start.py). Note that
      ms-swift's own ``norm1000`` rounds half-to-even and can give 1000; our InternVL template
      renders with this function instead.
    * ``box_resized``: integer pixels of the image after the Qwen2.5-VL processor resized it
      (ms-swift ``norm_bbox='none'``), ``round(v * W_resized / W)``.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

BoxPx = Tuple[float, float, float, float]
BoxGrid = Tuple[int, int, int, int]

GRID = 1000  # number of cells per axis; valid grid values are 0..GRID-1

#: Rules for reading a 0-999 grid value back as a pixel coordinate (:func:`from_grid999`).
GRID_DECODE_RULES = ('centre', 'edge')


def to_grid999(value_px: float, size_px: float) -> int:
    """One pixel coordinate -> 0-999 grid integer.

    Args:
        value_px: coordinate in original-image pixels, ``0 <= value_px <= size_px``.
        size_px: image width (for x) or height (for y) in pixels, ``> 0``.

    Returns:
        ``min(int(value_px / size_px * 1000), 999)``, clipped below at 0.

    Raises:
        ValueError: ``size_px <= 0``.
    """
    if size_px <= 0:
        raise ValueError(f'image size must be > 0 pixels, got {size_px}')
    return max(0, min(int(value_px / size_px * GRID), GRID - 1))


def from_grid999(value_grid: float, size_px: float, rule: str = 'centre') -> float:
    """One 0-999 grid value -> pixel coordinate.

    Args:
        value_grid: grid value (0-999; 1000 from ms-swift's ``norm1000`` is read as the far edge,
            ``size_px``, by both rules; values above 1000 are decoded as they are, past the image).
        size_px: image width (for x) or height (for y) in pixels.
        rule: ``'centre'`` (default, ours): the centre of the grid cell, ``(v + 0.5) * size / 1000``,
            the inverse of :func:`to_grid999` up to half a grid unit; ``'edge'``: the cell's lower
            edge, ``v / 1000 * size``, the rule of InternVL's own grounding evaluation
            (``internvl_chat/eval/refcoco/evaluate_grounding.py``), for numbers comparable with
            published InternVL results.

    Raises:
        ValueError: unknown ``rule``.
    """
    if rule == 'centre':
        px = (float(value_grid) + 0.5) * size_px / GRID
        # 1000 (norm1000's far edge) would be half a cell past the image; values above 1000 stay as they are
        return min(px, float(size_px)) if float(value_grid) <= GRID else px
    if rule == 'edge':
        return float(value_grid) / GRID * size_px
    raise ValueError(f'unknown grid decode rule {rule!r}; expected one of {GRID_DECODE_RULES}')


def box_px_to_grid(box_px: Sequence[float], width: float, height: float) -> BoxGrid:
    """``box_px`` (xyxy original pixels) -> ``box_grid`` (xyxy 0-999 integers)."""
    x1, y1, x2, y2 = box_px
    return (to_grid999(x1, width), to_grid999(y1, height),
            to_grid999(x2, width), to_grid999(y2, height))


def box_grid_to_px(box_grid: Sequence[float], width: float, height: float, rule: str = 'centre') -> BoxPx:
    """``box_grid`` (0-999) -> ``box_px`` (xyxy original pixels) by ``rule`` (:func:`from_grid999`)."""
    x1, y1, x2, y2 = box_grid
    return (from_grid999(x1, width, rule), from_grid999(y1, height, rule),
            from_grid999(x2, width, rule), from_grid999(y2, height, rule))


def box_px_to_resized(box_px: Sequence[float], width: float, height: float,
                      resized_width: float, resized_height: float) -> Tuple[int, int, int, int]:
    """``box_px`` -> integer pixels of the resized image (Qwen2.5-VL, ms-swift ``norm_bbox='none'``).

    Uses ``round(v * resized / original)``, the rule of ms-swift 4.6 ``Template.normalize_bbox``.
    """
    sx, sy = resized_width / width, resized_height / height
    x1, y1, x2, y2 = box_px
    return (round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy))


def box_resized_to_px(box_resized: Sequence[float], width: float, height: float,
                      resized_width: float, resized_height: float) -> BoxPx:
    """Resized-image pixels (Qwen2.5-VL) -> ``box_px`` of the original image."""
    sx, sy = width / resized_width, height / resized_height
    x1, y1, x2, y2 = box_resized
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def box_area(box: Sequence[float]) -> float:
    """Area of an xyxy box in squared units of its space (0 for a degenerate box)."""
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def box_center(box: Sequence[float]) -> Tuple[float, float]:
    """Centre ``(cx, cy)`` of an xyxy box."""
    x1, y1, x2, y2 = box
    return ((x1 + x2) / 2.0, (y1 + y2) / 2.0)


def iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes in the same space (0.0 when both are empty)."""
    ix1, iy1 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    ix2, iy2 = min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    inter = box_area((ix1, iy1, ix2, iy2))
    union = box_area(box_a) + box_area(box_b) - inter
    return inter / union if union > 0 else 0.0


def intersection_over_smaller(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """Intersection area of two xyxy boxes over the area of the smaller one (0.0 if either is empty).

    1.0 when one box lies wholly inside the other; the measure of nested-box suppression.
    """
    ix1, iy1 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    ix2, iy2 = min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    smaller = min(box_area(box_a), box_area(box_b))
    return box_area((ix1, iy1, ix2, iy2)) / smaller if smaller > 0 else 0.0


def fraction_inside(box: Sequence[float], container: Sequence[float]) -> float:
    """Share of ``box``'s area that lies inside ``container`` (both xyxy, same space; 0.0 if empty)."""
    ix1, iy1 = max(box[0], container[0]), max(box[1], container[1])
    ix2, iy2 = min(box[2], container[2]), min(box[3], container[3])
    area = box_area(box)
    return box_area((ix1, iy1, ix2, iy2)) / area if area > 0 else 0.0


def match_one_to_one(ground_truth: Sequence[Sequence[float]], predictions: Sequence[Sequence[float]],
                     iou_threshold: float = 0.5) -> List[Tuple[int, int, float]]:
    """Greedy one-to-one matching of predicted to ground-truth boxes by IoU, highest first.

    All (gt, prediction) pairs with IoU >= ``iou_threshold`` are taken in descending IoU; a pair is kept
    when neither box is matched yet. Ties keep input order (ground truth first, then prediction), so the
    result is deterministic. This is the matching of the grounding literature and of pycocotools'
    evaluateImg (one prediction satisfies at most one ground-truth box).

    Args:
        ground_truth, predictions: xyxy boxes, any one space shared by both (pixels for the library).
        iou_threshold: minimum IoU of a match, inclusive.

    Returns:
        ``[(gt_index, prediction_index, iou), ...]`` in the order matched (descending IoU).
    """
    pairs = [(iou(g, p), gi, pi) for gi, g in enumerate(ground_truth) for pi, p in enumerate(predictions)]
    pairs = sorted((t for t in pairs if t[0] >= iou_threshold), key=lambda t: (-t[0], t[1], t[2]))
    used_g, used_p, out = set(), set(), []
    for value, gi, pi in pairs:
        if gi not in used_g and pi not in used_p:
            used_g.add(gi)
            used_p.add(pi)
            out.append((gi, pi, value))
    return out


def distance_point_to_box(point: Sequence[float], box: Sequence[float]) -> float:
    """Euclidean distance from a point to the nearest point of an xyxy box (0 inside it)."""
    px, py = point
    dx = max(box[0] - px, 0.0, px - box[2])
    dy = max(box[1] - py, 0.0, py - box[3])
    return math.hypot(dx, dy)


def check_box_px(box_px: Sequence[float], width: int, height: int, *, where: str) -> BoxPx:
    """Validate a pixel box against its image.

    Args:
        box_px: xyxy in original-image pixels.
        width, height: image size in pixels.
        where: location for the message, e.g. ``'sample.jsonl:4: record 0003: findings[2].box_px'``.

    Returns:
        The box as a tuple of 4 floats.

    Raises:
        ValueError: not 4 finite numbers, inverted or zero-area (``x2 <= x1`` or ``y2 <= y1``),
            or outside ``[0, W] x [0, H]``.
    """
    try:
        vals = tuple(float(v) for v in box_px)
    except (TypeError, ValueError):
        raise ValueError(f'{where} = {box_px!r}: expected 4 numbers (x1, y1, x2, y2) in pixels')
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ValueError(f'{where} = {box_px!r}: expected 4 finite numbers (x1, y1, x2, y2) in pixels')
    x1, y1, x2, y2 = vals
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f'{where} = {list(vals)}: inverted or zero-area box (need x1 < x2 and y1 < y2; '
                         'expected xyxy pixels)')
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise ValueError(f'{where} = {list(vals)}: outside the image; expected 0 <= x1 < x2 <= {width} '
                         f'and 0 <= y1 < y2 <= {height} (xyxy pixels)')
    return vals  # type: ignore[return-value]


#: Fovea centre relative to the optic-disc centre, in disc diameters (DD): 2.5 DD temporal and 0.25 DD
#: inferior (Rohrschneider, IOVS 45:3257, 2004: 15.5 deg temporal, 1.5 deg inferior, disc about 6 deg).
FOVEA_TEMPORAL_DD = 2.5
FOVEA_INFERIOR_DD = 0.25
#: Side of the box that stands for a fovea centre point, in DD (ours): the fovea, the central pit of the
#: macula, is about 1.5 mm across, about one optic-disc diameter (disc about 1.5-1.8 mm). A point itself
#: has no extent; a box of 1 DD is what a model can learn to draw and an IoU can score.
FOVEA_BOX_DD = 1.0
#: Disc diameter per image width when nothing in the record gives the disc size (ours): the median of
#: the 36 CODRAS disc boxes of IDRiD photos (0.09-0.16 of the 4288-px width, median 0.130).
DD_PER_IMAGE_WIDTH = 0.13


def disc_diameter_px(disc_box_px: Sequence[float]) -> float:
    """Disc diameter (DD) in pixels from an xyxy pixel disc box: the mean of its width and height."""
    x1, y1, x2, y2 = disc_box_px
    return ((x2 - x1) + (y2 - y1)) / 2.0


def point_box(x: float, y: float, width: int, height: int, half_side_px: float) -> BoxPx:
    """A ``2 * half_side_px`` xyxy pixel box centred on the point ``(x, y)``, clipped to the image."""
    return (max(0.0, x - half_side_px), max(0.0, y - half_side_px),
            min(float(width), x + half_side_px), min(float(height), y + half_side_px))


def fovea_dd_px(width: int, *, disc_box_px: Optional[Sequence[float]] = None,
                disc_centre_px: Optional[Sequence[float]] = None,
                fovea_px: Optional[Sequence[float]] = None) -> float:
    """Disc diameter in pixels for sizing a fovea box, from the best evidence the record holds.

    In order: the optic-disc box (:func:`disc_diameter_px`); else the disc-centre to fovea distance
    divided by the prior's 2.51 DD (``hypot(FOVEA_TEMPORAL_DD, FOVEA_INFERIOR_DD)``; IDRiD gives both
    centres as points; on the 17 IDRiD photos that also have a CODRAS disc box this gives 0.81-1.30
    times the box's DD, median 0.93); else ``DD_PER_IMAGE_WIDTH * width``. All in pixels of the
    original image.
    """
    if disc_box_px is not None:
        return disc_diameter_px(disc_box_px)
    if disc_centre_px is not None and fovea_px is not None:
        distance = math.hypot(fovea_px[0] - disc_centre_px[0], fovea_px[1] - disc_centre_px[1])
        if distance > 0:
            return distance / math.hypot(FOVEA_TEMPORAL_DD, FOVEA_INFERIOR_DD)
    return DD_PER_IMAGE_WIDTH * width


def fovea_box(x: float, y: float, width: int, height: int, dd_px: float) -> BoxPx:
    """The xyxy pixel box that stands for a fovea centre ``(x, y)``: side ``FOVEA_BOX_DD * dd_px``,
    centred on the point, clipped to the ``width`` x ``height`` image (so its centre can move by up
    to half a side at an image edge)."""
    return point_box(x, y, width, height, FOVEA_BOX_DD * dd_px / 2.0)


def clip_box(box: Sequence[float], width: int, height: int) -> BoxPx:
    """An xyxy pixel box clipped to ``[0, width] x [0, height]`` (may become empty)."""
    x1, y1, x2, y2 = (min(max(float(v), 0.0), float(lim)) for v, lim in zip(box, (width, height) * 2))
    return (x1, y1, x2, y2)


def laterality_from_disc(disc_box_px: Sequence[float], width: int) -> str:
    """Eye side of a macula-centred photo from the disc position (the disc lies nasal to the fovea).

    Args:
        disc_box_px: optic-disc box, xyxy pixels.
        width: image width, pixels.

    Returns:
        ``'right'`` when the disc centre is right of the image centre, else ``'left'``.
    """
    return 'right' if box_center(disc_box_px)[0] > width / 2.0 else 'left'


def laterality_disagreement(laterality: Optional[str], disc_box_px: Optional[Sequence[float]], width: int, *,
                            fovea_x: Optional[float] = None) -> Optional[str]:
    """The eye side the optic disc gives, when it disagrees with ``laterality``.

    The disc lies nasal to the fovea: right of it in a right eye. With ``fovea_x`` (pixels) the disc
    centre is compared with the fovea, else with the image centre (:func:`laterality_from_disc`, the
    macula-centred photograph rule).

    Args:
        laterality: ``'left'``/``'right'`` from a label or a header, or ``None``.
        disc_box_px: the optic-disc box, xyxy pixels, or ``None``.
        width: image width, pixels.
        fovea_x: x of the fovea centre, pixels, when it is marked.

    Returns:
        ``'left'``/``'right'`` by the disc when both are known and it is not ``laterality``, else ``None``.
    """
    if laterality is None or disc_box_px is None:
        return None
    disc_x = box_center(disc_box_px)[0]
    if fovea_x is not None and fovea_x != disc_x:
        from_disc = 'right' if disc_x > fovea_x else 'left'
    else:
        from_disc = laterality_from_disc(disc_box_px, width)
    return None if from_disc == laterality else from_disc
