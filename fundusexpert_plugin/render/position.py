"""Anatomical positioning: place every finding relative to the optic disc and the fovea.

All inputs and outputs are in original-image pixels (xyxy boxes, x right, y down) unless the name
says ``_dd`` (disc diameters). Quadrants and sides are anatomical (temporal/nasal) when the eye's
laterality is known and image-relative (left/right of the image) when it is not.

Sources:
    * Laterality from the disc: in a macula-centred colour fundus photograph the optic disc lies
      nasal to the fovea, i.e. on the image's right for a right eye and on its left for a left eye
      (standard fundus-photograph orientation, as seen by the examiner).
    * Fovea prior when no fovea is annotated: 15.5 deg temporal and 1.5 deg inferior to the disc
      centre (Rohrschneider, IOVS 45:3257, 2004), with a disc of about 6 deg: 2.5 DD temporal and
      0.25 DD inferior.
    * Macular involvement: within 1 DD of the macular centre, the threshold of the IDRiD risk of
      diabetic macular oedema grade 2 (Porwal et al., Data 2018).
    * Disc diameter: mean of the disc box width and height (ours: the paper does not say).
    * Clock hours: observer view, 12 o'clock superior, 3 o'clock at the image's right.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from fundusexpert_plugin.core.geometry import (FOVEA_INFERIOR_DD, FOVEA_TEMPORAL_DD, box_center, disc_diameter_px,
                                              distance_point_to_box)

MACULA_RADIUS_DD = 1.0


@dataclass(frozen=True)
class AnatomyFrame:
    """Reference frame of one image.

    Attributes:
        disc_box_px: optic disc box, xyxy pixels.
        disc_diameter_px: disc diameter (DD) in pixels.
        fovea_px: ``(x, y)`` fovea in pixels.
        fovea_source: where the fovea comes from: ``'annotation'``, ``'detector'``, ``'locator'``
            (the engine's landmark locator) or ``'estimated'`` (the 2.5-DD disc prior, module docstring).
        laterality: ``'left'``, ``'right'`` or ``None``.
    """

    disc_box_px: Tuple[float, float, float, float]
    disc_diameter_px: float
    fovea_px: Tuple[float, float]
    fovea_source: str
    laterality: Optional[str]


@dataclass(frozen=True)
class Position:
    """Where one box lies.

    Attributes:
        quadrant: ``'superotemporal'|'superonasal'|'inferotemporal'|'inferonasal'`` about the fovea,
            or ``'upper_left'|'upper_right'|'lower_left'|'lower_right'`` when laterality is unknown.
        clock_hour: 1-12, direction of the box centre seen from the fovea (observer view).
        distance_to_fovea_dd: distance from the fovea to the nearest point of the box, in DD.
        macular_involvement: ``distance_to_fovea_dd <= 1.0``.
        side_of_disc: ``'temporal'|'nasal'`` (or ``'left'|'right'`` of the image) of the disc centre.
    """

    quadrant: str
    clock_hour: int
    distance_to_fovea_dd: float
    macular_involvement: bool
    side_of_disc: str


def _temporal_sign(laterality: Optional[str], disc_x: float, width: int) -> float:
    """+1 if temporal points to the image's +x, -1 if to -x.

    For a right eye the disc is on the image's right, so temporal (towards the fovea) is -x.
    Without laterality, the fovea is assumed on the side of the image centre.
    """
    if laterality == 'right':
        return -1.0
    if laterality == 'left':
        return 1.0
    return 1.0 if disc_x < width / 2.0 else -1.0


def estimate_fovea(disc_box_px: Sequence[float], laterality: Optional[str], width: int) -> Tuple[float, float]:
    """Fovea ``(x, y)`` in pixels from the disc by the anatomical prior (module docstring)."""
    cx, cy = box_center(disc_box_px)
    dd = disc_diameter_px(disc_box_px)
    sign = _temporal_sign(laterality, cx, width)
    return (cx + sign * FOVEA_TEMPORAL_DD * dd, cy + FOVEA_INFERIOR_DD * dd)


def make_frame(disc_box_px: Sequence[float], width: int, *, laterality: Optional[str] = None,
               fovea_px: Optional[Sequence[float]] = None, fovea_source: str = 'annotation') -> AnatomyFrame:
    """Build the reference frame from the disc box and, when known, the fovea (``fovea_source``
    names where it comes from) and laterality; without a fovea the 2.5-DD prior is used."""
    disc = tuple(float(v) for v in disc_box_px)
    if fovea_px is not None:
        fovea, source = (float(fovea_px[0]), float(fovea_px[1])), fovea_source
    else:
        fovea, source = estimate_fovea(disc, laterality, width), 'estimated'
    return AnatomyFrame(disc, disc_diameter_px(disc), fovea, source, laterality)  # type: ignore[arg-type]


def clock_hour(dx: float, dy: float) -> int:
    """Clock hour (1-12) of a direction in image coordinates (x right, y down), observer view.

    ``clock_hour(0, -1) == 12`` (up), ``clock_hour(1, 0) == 3`` (right), ``clock_hour(0, 1) == 6``.
    """
    angle = math.degrees(math.atan2(dx, -dy)) % 360.0  # 0 at 12 o'clock, clockwise
    hour = int(round(angle / 30.0)) % 12
    return 12 if hour == 0 else hour


def _horizontal_word(dx: float, frame: AnatomyFrame, width: int) -> str:
    if frame.laterality is None:
        return 'right' if dx >= 0 else 'left'
    sign = _temporal_sign(frame.laterality, box_center(frame.disc_box_px)[0], width)
    return 'temporal' if dx * sign >= 0 else 'nasal'


def locate(box_px: Sequence[float], frame: AnatomyFrame, width: int) -> Position:
    """Position of one box in the frame.

    Args:
        box_px: xyxy pixels.
        frame: from :func:`make_frame`.
        width: image width in pixels (used only when laterality is unknown).
    """
    cx, cy = box_center(box_px)
    fx, fy = frame.fovea_px
    dx, dy = cx - fx, cy - fy
    vertical = 'superior' if dy < 0 else 'inferior'
    horizontal = _horizontal_word(dx, frame, width)
    if frame.laterality is None:
        quadrant = f'{"upper" if dy < 0 else "lower"}_{horizontal}'
    else:
        quadrant = ('supero' if vertical == 'superior' else 'infero') + horizontal
    distance_dd = distance_point_to_box(frame.fovea_px, box_px) / frame.disc_diameter_px
    disc_dx = cx - box_center(frame.disc_box_px)[0]
    return Position(quadrant=quadrant, clock_hour=clock_hour(dx, dy),
                    distance_to_fovea_dd=distance_dd,
                    macular_involvement=distance_dd <= MACULA_RADIUS_DD,
                    side_of_disc=_horizontal_word(disc_dx, frame, width))
