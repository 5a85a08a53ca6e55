"""Optic disc and fovea located on a colour fundus photograph without any training.

Method (classical, three steps; every length is a fraction of the field-of-view width, so the
same numbers hold at any resolution):

1. **Field of view (FOV).** Red channel > 20/255, largest connected region. The photograph is
   resized so that the FOV is :data:`WORK_FOV_WIDTH_PX` wide (4288x2848 IDRiD: factor 1/4).
2. **Optic disc, coarse.** At half that scale, the disc is the point maximising the z-scored sum of
   (a) brightness: the red channel after a morphological closing that removes the dark vessels
   (Walter et al., IEEE TMI 21(10):1236, 2002), smoothed with a Gaussian, and (b) vessel
   convergence: the density of *vertical* vessel edges (horizontal gradient of the green-channel
   black top-hat), since the main vessels leave the disc vertically (the feature of Mahfouz &
   Fahmy, IEEE TIP 19(12):3285, 2010; vessel convergence: Hoover & Goldbaum, IEEE TMI 22(8):951,
   2003).
3. **Optic disc, refined.** Around the coarse point, at full working scale: circular template
   matching on the vessel-free (closed) green+red image, score = mean inside a circle of radius R
   minus mean of the ring R..1.3R, plus the vessel density inside R/2 (the central vessel trunk),
   over 4 radii; the FOV outside is filled with the FOV mean so the black border never counts as
   contrast. The best circle gives the centre and radius.
4. **Fovea.** The darkest point of the vessel-free green channel, smoothed at 0.1 DD, within 1 DD of
   the anatomical prior (2.5 DD temporal and 0.25 DD inferior to the disc centre, Rohrschneider,
   IOVS 45:3257, 2004; see :mod:`fundusexpert_plugin.render.position`), with a quadratic penalty
   ``(distance / DD)**2`` (the macula is the darkest, avascular region temporal to the disc:
   Sinthanayothin et al., Br J Ophthalmol 83:902, 1999). DD here is :data:`DD_PER_FOV_WIDTH` of the
   FOV width.

The parameters (kernel sizes, weights, radii, 0.15 DD per FOV width; CODRAS IDRiD disc boxes give
0.163) were chosen on the 50 IDRiD photographs of ``benchmarks/landmarks.py``, so that benchmark
is not an independent test; it also reports the disc on the other IDRiD photographs of
``idrid_codras``. Laterality follows from the disc side (:func:`core.geometry.laterality_from_disc`).

Coordinates: points ``(x, y)`` and boxes ``box_px`` (xyxy) in pixels of the input image, x right,
y down. Input: ``np.ndarray[H, W, 3]`` uint8 **RGB**.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from fundusexpert_plugin.core.geometry import FOVEA_INFERIOR_DD, FOVEA_TEMPORAL_DD  # the prior (Rohrschneider 2004)

#: The photograph is resized so that its field of view is this wide before processing (pixels).
WORK_FOV_WIDTH_PX = 852.0
#: Disc diameter as a fraction of the FOV width, used for the fovea search (IDRiD, 50 deg camera).
DD_PER_FOV_WIDTH = 0.15
#: Photographs whose field of view is narrower than this are not located (too little detail; pixels).
MIN_FOV_WIDTH_PX = 256
#: Red level (0-255) above which a pixel belongs to the field of view.
FOV_RED_THRESHOLD = 20
_DISC_RADII = (40, 50, 60, 70)  # working-scale pixels (FOV 852 px wide)
_RING = 1.3
_SEARCH = 0.6  # refinement moves at most this many radii from the coarse point
_VESSEL_WEIGHT = 1.5
_FOVEA_WINDOW_DD, _FOVEA_SIGMA_DD, _FOVEA_PENALTY = 1.0, 0.1, 1.0

LOCATOR_NAME = 'landmark locator (brightness + vessel convergence disc, darkest-macula fovea)'


@dataclass(frozen=True)
class Landmarks:
    """Located optic disc and fovea of one photograph.

    Attributes:
        disc_center_px: ``(x, y)`` disc centre located on the image, input-image pixels.
        disc_radius_px: radius of the best matching circle, input-image pixels.
        fovea_px: ``(x, y)`` fovea centre, input-image pixels, searched from ``fovea_from_disc_px``.
        fov_width_px: width of the field of view, input-image pixels.
        fovea_from_disc_px: the disc centre the fovea search started from (the located one, or the
            one passed in).
    """

    disc_center_px: Tuple[float, float]
    disc_radius_px: float
    fovea_px: Tuple[float, float]
    fov_width_px: float
    fovea_from_disc_px: Tuple[float, float]

    @property
    def disc_box_px(self) -> Tuple[float, float, float, float]:
        """xyxy box of the disc circle (not clipped to the image)."""
        (x, y), r = self.disc_center_px, self.disc_radius_px
        return (x - r, y - r, x + r, y + r)

    @property
    def disc_diameter_px(self) -> float:
        """Disc diameter assumed for the fovea search: :data:`DD_PER_FOV_WIDTH` x FOV width."""
        return DD_PER_FOV_WIDTH * self.fov_width_px


def _kernel(side: int) -> np.ndarray:
    side = max(3, int(side) | 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def _disk(radius: int) -> np.ndarray:
    k = np.zeros((2 * radius + 1, 2 * radius + 1), np.float32)
    cv2.circle(k, (radius, radius), radius, 1.0, -1)
    return k / k.sum()


def _zscore(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``a`` standardised by its mean and spread inside ``mask`` (a non-empty boolean mask)."""
    v = a[mask]
    if not v.size:
        raise ValueError('no field-of-view pixel to standardise over')
    return (a - v.mean()) / (v.std() + 1e-6)


def _fov_mask(red: np.ndarray) -> np.ndarray:
    fov = (red > FOV_RED_THRESHOLD).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fov, connectivity=8)
    if n <= 1:
        return np.zeros_like(fov, dtype=bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


class _Work:
    """The photograph at working scale (FOV :data:`WORK_FOV_WIDTH_PX` wide), float32 channels."""

    def __init__(self, rgb: np.ndarray):
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f'expected an RGB image np.ndarray[H, W, 3], got shape {rgb.shape}')
        h, w = rgb.shape[:2]
        thumb_scale = min(1.0, 1072.0 / w)
        thumb = cv2.resize(rgb, (max(1, round(w * thumb_scale)), max(1, round(h * thumb_scale))),
                           interpolation=cv2.INTER_AREA)
        cols = np.where(_fov_mask(thumb[..., 0]).any(0))[0]
        self.fov_width_px = (cols[-1] - cols[0] + 1) / thumb_scale if cols.size else 0.0
        if self.fov_width_px < MIN_FOV_WIDTH_PX:
            raise ValueError(f'field of view {self.fov_width_px:.0f} px wide (red channel above '
                             f'{FOV_RED_THRESHOLD}/255), below the {MIN_FOV_WIDTH_PX} px the locator needs')
        self.scale = WORK_FOV_WIDTH_PX / self.fov_width_px  # input px -> working px
        size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
        img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        self.red, self.green = img[..., 0], img[..., 1]
        self.fov = cv2.erode(_fov_mask(img[..., 0]).astype(np.uint8), _kernel(9)) > 0
        if not self.fov.any():  # no solid region: e.g. a dithered 1-bit photograph, bright dots on black
            raise ValueError(f'no solid field of view: the pixels with red above {FOV_RED_THRESHOLD}/255 form '
                             'no region that survives a 9-px erosion (a dithered or 1-bit image?)')
        self.closing = _kernel(17)
        self.green_closed = cv2.morphologyEx(self.green, cv2.MORPH_CLOSE, self.closing)

    def to_input(self, x: float, y: float) -> Tuple[float, float]:
        return (float(x) / self.scale, float(y) / self.scale)

    def to_work(self, x: float, y: float) -> Tuple[float, float]:
        return (float(x) * self.scale, float(y) * self.scale)


def _coarse_disc(work: _Work) -> Tuple[int, int]:
    """Step 2 of the module docstring at half the working scale; returns working-scale pixels."""
    size = (max(1, work.red.shape[1] // 2), max(1, work.red.shape[0] // 2))
    red = cv2.resize(work.red, size, interpolation=cv2.INTER_AREA)
    green = cv2.resize(work.green, size, interpolation=cv2.INTER_AREA)
    fov = cv2.erode(cv2.resize(work.fov.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST),
                    np.ones((15, 15), np.uint8)) > 0
    if not fov.any():
        fov = cv2.resize(work.fov.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    if not fov.any():
        raise ValueError('field of view too thin to search for the optic disc at half the working scale')
    k = _kernel(9)
    brightness = cv2.GaussianBlur(cv2.morphologyEx(red, cv2.MORPH_CLOSE, k), (0, 0), 14)
    vessels = cv2.morphologyEx(green, cv2.MORPH_BLACKHAT, k)
    vertical = cv2.GaussianBlur(np.abs(cv2.Sobel(vessels, cv2.CV_32F, 1, 0, ksize=3)), (0, 0), 20)
    score = _zscore(brightness, fov) + 0.5 * _zscore(vertical, fov)
    score[~fov] = -np.inf
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)
    return 2 * int(x), 2 * int(y)


def _refine_disc(work: _Work, x: int, y: int) -> Tuple[float, float, float]:
    """Step 3: circular template matching near ``(x, y)``; returns working-scale ``(x, y, radius)``."""
    image = cv2.morphologyEx((work.green + work.red) / 2, cv2.MORPH_CLOSE, work.closing)
    vessels = cv2.morphologyEx(work.green, cv2.MORPH_BLACKHAT, work.closing)
    h, w = image.shape
    pad = int(max(_DISC_RADII) * (_RING + _SEARCH)) + 2
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(w, x + pad + 1), min(h, y + pad + 1)
    crop, fov, vcrop = image[y0:y1, x0:x1].copy(), work.fov[y0:y1, x0:x1], vessels[y0:y1, x0:x1]
    if fov.any():
        crop[~fov] = crop[fov].mean()
    yy, xx = np.mgrid[y0:y1, x0:x1]
    best = (-np.inf, float(x), float(y), float(_DISC_RADII[len(_DISC_RADII) // 2]))
    for radius in _DISC_RADII:
        outer_r = int(radius * _RING)
        inner = cv2.filter2D(crop, -1, _disk(radius), borderType=cv2.BORDER_REFLECT)
        outer = cv2.filter2D(crop, -1, _disk(outer_r), borderType=cv2.BORDER_REFLECT)
        a_in, a_out = radius ** 2, outer_r ** 2
        score = inner - (outer * a_out - inner * a_in) / (a_out - a_in)
        score = score + _VESSEL_WEIGHT * cv2.filter2D(vcrop, -1, _disk(radius // 2), borderType=cv2.BORDER_REFLECT)
        allowed = (np.hypot(xx - x, yy - y) <= _SEARCH * radius) & fov
        if not allowed.any():
            continue
        score = np.where(allowed, score, -np.inf)
        j = int(np.argmax(score))
        if score.flat[j] > best[0]:
            best = (float(score.flat[j]), float(xx.flat[j]), float(yy.flat[j]), float(radius))
    return best[1], best[2], best[3]


def _fovea(work: _Work, disc_x: float, disc_y: float) -> Tuple[float, float]:
    """Step 4 in working-scale pixels, from a working-scale disc centre."""
    dd = DD_PER_FOV_WIDTH * WORK_FOV_WIDTH_PX
    sign = 1.0 if disc_x < work.red.shape[1] / 2.0 else -1.0  # fovea towards the image centre
    ex, ey = disc_x + sign * FOVEA_TEMPORAL_DD * dd, disc_y + FOVEA_INFERIOR_DD * dd
    smooth = cv2.GaussianBlur(work.green_closed, (0, 0), _FOVEA_SIGMA_DD * dd)
    yy, xx = np.mgrid[0:smooth.shape[0], 0:smooth.shape[1]]
    dist = np.hypot(xx - ex, yy - ey) / dd
    allowed = (dist <= _FOVEA_WINDOW_DD) & work.fov
    if not allowed.any():  # prior outside the photograph: keep the prior itself
        return ex, ey
    score = np.where(allowed, _zscore(smooth, work.fov) + _FOVEA_PENALTY * dist ** 2, np.inf)
    j = int(np.argmin(score))
    return float(xx.flat[j]), float(yy.flat[j])


def locate_landmarks(rgb: np.ndarray, *, disc_center_px: Optional[Sequence[float]] = None) -> Landmarks:
    """Locate the optic disc and the fovea (module docstring).

    Args:
        rgb: np.ndarray[H, W, 3] uint8, RGB.
        disc_center_px: a disc centre known from elsewhere (e.g. a detector), input pixels: the
            fovea is then searched from it; the disc is still located on its own, so the two
            discs can be compared.

    Returns:
        :class:`Landmarks` in input-image pixels.

    Raises:
        ValueError: not an ``uint8`` RGB array, a ``disc_center_px`` that is not a finite point inside
            the image, a field of view narrower than :data:`MIN_FOV_WIDTH_PX` (an
            all-dark or a thumbnail image), or no solid field of view (a dithered 1-bit image: bright
            dots with no connected region). The engine then reports no landmark: the record has no
            optic disc, no fovea and no laterality, and the run counts it under ``no_optic_disc``.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError(f'expected an np.uint8 RGB array (0-255), got dtype {rgb.dtype}')
    if disc_center_px is not None:
        cx, cy = (float(v) for v in disc_center_px)
        if not (np.isfinite(cx) and np.isfinite(cy) and 0 <= cx <= rgb.shape[1] and 0 <= cy <= rgb.shape[0]):
            raise ValueError(f'disc_center_px = ({cx}, {cy}): not a finite point inside the '
                             f'{rgb.shape[1] if rgb.ndim > 1 else "?"}x{rgb.shape[0]} px image')
    work = _Work(rgb)
    x, y, radius = _refine_disc(work, *_coarse_disc(work))
    start = (x, y) if disc_center_px is None else work.to_work(*disc_center_px)
    fx, fy = _fovea(work, *start)
    return Landmarks(disc_center_px=work.to_input(x, y), disc_radius_px=radius / work.scale,
                     fovea_px=work.to_input(fx, fy), fov_width_px=work.fov_width_px,
                     fovea_from_disc_px=work.to_input(*start))
