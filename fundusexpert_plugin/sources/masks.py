"""Masks -> boxes: one box per DBSCAN cluster of foreground pixels (Fundus-Engine Stage B).

Coordinate rules are those of :mod:`fundusexpert_plugin.core.geometry`: ``boxes_px`` are xyxy floats in
original-image pixels, x right, y down, x2/y2 exclusive (a cluster whose last pixel column is 9 has
``x2 = 10``). The official code writes the last pixel (``[[x_min, y_min], [x_max, y_max]]``); we add 1.

Source: FundusExpert official ``data_processing/pixel2bbox.py`` (github.com/MeteorElf/FundusExpert):
    1. take the foreground pixels' ``(x, y)`` coordinates;
    2. ``sklearn.cluster.DBSCAN(eps, min_samples)``, noise (label -1) dropped;
    3. per cluster the min/max of x and y (last-pixel coordinates);
    4. keep a box if ``(x_max - x_min) * (y_max - y_min) > area_threshold`` (that exact expression:
       a one-pixel-wide cluster has area 0);
    5. sort by that area, largest first (stable), keep the top ``max_boxes``.
    CLI defaults: eps 50, min_samples 10, area_threshold 100, max_boxes 10 (its README example uses
    eps 160; the function defaults are max_boxes 3). Ties in area keep the order in which each
    cluster's first pixel appears in row-major order (the official dict insertion order).

Two modes give the same boxes:
    * ``'paper'`` runs scikit-learn's DBSCAN exactly as the official code does. Its memory grows with
      the number of neighbour pairs, i.e. quadratically on solid regions (an optic disc of 200k px
      does not fit in memory), so it refuses masks above ``max_foreground_px`` or an estimated
      ``max_neighbour_pairs``.
    * ``'fast'`` (ours, not in the paper) computes the same DBSCAN partition without pair lists:
      core pixels from a per-pixel count of foreground pixels in the Euclidean eps-disk (row prefix
      sums), 8-connected components of the core mask (adjacent cores are within eps when
      eps >= sqrt(2)), components merged when their boundary pixels come within eps (exact k-d tree
      check; the nearest pixels of two components are always boundary pixels), and border pixels
      given to the first cluster, in scikit-learn's discovery order, that has a core within eps.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

logger = logging.getLogger(__name__)

MODES = ('paper', 'fast')
# Official pixel2bbox.py CLI defaults.
PAPER_EPS_PX = 50.0
PAPER_MIN_SAMPLES = 10
PAPER_AREA_THRESHOLD_PX2 = 100
PAPER_MAX_BOXES = 10
# Guards for mode='paper' (ours). scikit-learn keeps every neighbour index (~16 bytes per pair,
# measured: 25k px in one eps-disk -> 625M pairs -> 9.4 GB), so 100M pairs is about 1.6 GB.
DEFAULT_MAX_FOREGROUND_PX = 100_000
DEFAULT_MAX_NEIGHBOUR_PAIRS = 100_000_000


@dataclass(frozen=True)
class MaskBoxes:
    """Boxes of one mask and what each filter removed.

    Attributes:
        boxes_px: np.ndarray[N, 4] float32, xyxy original-image pixels, x2/y2 exclusive, sorted by
            ``areas_px2`` descending.
        areas_px2: np.ndarray[N] int64, the official area ``(x_max - x_min) * (y_max - y_min)`` over
            last-pixel coordinates (the quantity that was thresholded and sorted).
        n_foreground_px: foreground pixels in the mask.
        n_noise_px: foreground pixels DBSCAN labelled noise (not core, no core within eps).
        n_clusters: DBSCAN clusters before the area and top-k filters.
        n_dropped_small: clusters whose area was ``<= area_threshold_px2``.
        n_dropped_topk: clusters beyond ``max_boxes``.
    """

    boxes_px: np.ndarray
    areas_px2: np.ndarray
    n_foreground_px: int
    n_noise_px: int
    n_clusters: int
    n_dropped_small: int
    n_dropped_topk: int


def mask_to_boxes(mask: np.ndarray, *, mode: str = 'fast', eps_px: float = PAPER_EPS_PX,
                  min_samples: int = PAPER_MIN_SAMPLES,
                  area_threshold_px2: float = PAPER_AREA_THRESHOLD_PX2,
                  max_boxes: Optional[int] = PAPER_MAX_BOXES,
                  foreground_value: Optional[int] = None,
                  max_foreground_px: int = DEFAULT_MAX_FOREGROUND_PX,
                  max_neighbour_pairs: int = DEFAULT_MAX_NEIGHBOUR_PAIRS) -> np.ndarray:
    """Binary mask -> cluster boxes (the array only; see :func:`cluster_mask` for the counts).

    Returns:
        np.ndarray[N, 4] float32: xyxy original-image pixels, x2 exclusive, area descending.
    """
    return cluster_mask(mask, mode=mode, eps_px=eps_px, min_samples=min_samples,
                        area_threshold_px2=area_threshold_px2, max_boxes=max_boxes,
                        foreground_value=foreground_value, max_foreground_px=max_foreground_px,
                        max_neighbour_pairs=max_neighbour_pairs).boxes_px


def cluster_mask(mask: np.ndarray, *, mode: str = 'fast', eps_px: float = PAPER_EPS_PX,
                 min_samples: int = PAPER_MIN_SAMPLES,
                 area_threshold_px2: float = PAPER_AREA_THRESHOLD_PX2,
                 max_boxes: Optional[int] = PAPER_MAX_BOXES,
                 foreground_value: Optional[int] = None,
                 max_foreground_px: int = DEFAULT_MAX_FOREGROUND_PX,
                 max_neighbour_pairs: int = DEFAULT_MAX_NEIGHBOUR_PAIRS) -> MaskBoxes:
    """Binary mask -> one box per DBSCAN cluster, filtered by area and count (module docstring).

    Args:
        mask: np.ndarray[H, W], bool or integer, in original-image pixels.
        mode: ``'paper'`` (scikit-learn DBSCAN, as the official code) or ``'fast'`` (same partition,
            linear memory).
        eps_px: DBSCAN radius in original-image pixels, inclusive (official CLI default 50; its
            README uses 160). ``'fast'`` needs ``eps_px >= sqrt(2)``.
        min_samples: pixels (itself included) within ``eps_px`` that make a pixel a core pixel
            (official default 10).
        area_threshold_px2: keep a cluster only if its official area is ``>`` this, px^2 (default 100).
        max_boxes: keep the largest this many (official CLI default 10); ``None`` keeps all.
        foreground_value: pixel value that is foreground (the official ``pixel_intensity``, CLI
            default 255); ``None`` (default) means every non-zero pixel.
        max_foreground_px: ``'paper'`` refuses masks with more foreground pixels than this.
        max_neighbour_pairs: ``'paper'`` refuses masks whose eps-neighbour pairs (counted exactly
            before DBSCAN runs) exceed this; ~16 bytes of scikit-learn memory each.

    Returns:
        :class:`MaskBoxes`.

    Raises:
        ValueError: unknown ``mode``; ``mask`` not 2-D; ``eps_px``/``min_samples``/``max_boxes`` out
            of range; ``'paper'`` mode over a memory guard (the message suggests ``mode='fast'``).
    """
    if mode not in MODES:
        raise ValueError(f'`mode` must be one of {MODES}, got {mode!r}')
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f'`mask` must be a 2-D array [H, W], got shape {mask.shape}')
    if not (eps_px > 0 and math.isfinite(eps_px)):
        raise ValueError(f'`eps_px` must be a positive number of pixels, got {eps_px}')
    if mode == 'fast' and eps_px < math.sqrt(2):
        raise ValueError(f"`eps_px` = {eps_px} < sqrt(2) is not supported by mode='fast' "
                         "(8-connected core pixels would be linked); use mode='paper'")
    if int(min_samples) < 1:
        raise ValueError(f'`min_samples` must be >= 1, got {min_samples}')
    if max_boxes is not None and int(max_boxes) < 1:
        raise ValueError(f'`max_boxes` must be >= 1 or None, got {max_boxes}')
    fg = mask != 0 if foreground_value is None else mask == foreground_value
    ys, xs = np.nonzero(fg)  # row-major order, as the official np.where
    n_fg = int(ys.size)
    if n_fg == 0:
        return _finish(np.zeros((0, 5), np.int64), n_fg, 0, area_threshold_px2, max_boxes)
    if mode == 'paper':
        stats, n_noise = _clusters_paper(fg, ys, xs, eps_px, int(min_samples),
                                         max_foreground_px, max_neighbour_pairs)
    else:
        stats, n_noise = _clusters_fast(ys, xs, eps_px, int(min_samples))
    return _finish(stats, n_fg, n_noise, area_threshold_px2, max_boxes)


@functools.lru_cache(maxsize=8)
def _disk_half_widths(eps_px: float) -> np.ndarray:
    """Half-widths h(dy) = max{h : h^2 + dy^2 <= eps^2} for dy = -r..r, r = floor(eps)."""
    r = int(math.floor(eps_px))
    e2 = eps_px * eps_px
    half = []
    for dy in range(-r, r + 1):
        h = int(math.floor(math.sqrt(max(0.0, e2 - dy * dy))))
        while (h + 1) ** 2 + dy * dy <= e2:
            h += 1
        while h > 0 and h * h + dy * dy > e2:
            h -= 1
        half.append(h)
    return np.asarray(half, np.int64)


def neighbour_counts(fg: np.ndarray, ys: np.ndarray, xs: np.ndarray, eps_px: float) -> np.ndarray:
    """Foreground pixels within Euclidean distance ``<= eps_px`` of each given pixel (itself included).

    Args:
        fg: np.ndarray[H, W] bool foreground.
        ys, xs: np.ndarray[N] int pixel rows and columns (foreground pixels).
        eps_px: radius in pixels.

    Returns:
        np.ndarray[N] int64; the neighbourhood DBSCAN uses (scikit-learn radius queries are inclusive).
    """
    r = int(math.floor(eps_px))
    half = _disk_half_widths(eps_px)
    padded = np.pad(fg.astype(np.int32), r)
    prefix = np.zeros((padded.shape[0], padded.shape[1] + 1), np.int32)
    np.cumsum(padded, axis=1, out=prefix[:, 1:])
    py, px = ys + r, xs + r
    dys = np.arange(-r, r + 1)
    counts = np.empty(ys.size, np.int64)
    step = max(1, 1_000_000 // dys.size)  # points per chunk: bounded memory, vectorised over dy
    for a in range(0, ys.size, step):
        rows = py[a:a + step, None] + dys
        cols = px[a:a + step, None]
        counts[a:a + step] = (prefix[rows, cols + half + 1] - prefix[rows, cols - half]).sum(axis=1)
    return counts


def core_pixels(fg: np.ndarray, ys: np.ndarray, xs: np.ndarray, eps_px: float,
                min_samples: int) -> np.ndarray:
    """DBSCAN core test ``neighbour_counts(...) >= min_samples`` without counting every disk.

    A pixel whose inscribed square (half-side ``floor(eps / sqrt(2))``, 4 look-ups in a summed-area
    table) already holds ``min_samples`` pixels is core; only the others get the exact disk count.

    Returns:
        np.ndarray[N] bool.
    """
    a = int(math.floor(eps_px / math.sqrt(2)))
    while 2 * (a + 1) ** 2 <= eps_px * eps_px:
        a += 1
    while a > 0 and 2 * a * a > eps_px * eps_px:
        a -= 1
    sat = np.zeros((fg.shape[0] + 2 * a + 1, fg.shape[1] + 2 * a + 1), np.int32)
    sat[1:, 1:] = np.pad(fg, a)
    np.cumsum(sat, axis=0, out=sat)
    np.cumsum(sat, axis=1, out=sat)
    y1, x1, y2, x2 = ys, xs, ys + 2 * a + 1, xs + 2 * a + 1  # padded coords of the square
    square = sat[y2, x2] - sat[y1, x2] - sat[y2, x1] + sat[y1, x1]
    core = square >= min_samples
    rest = np.nonzero(~core)[0]
    if rest.size:
        core[rest] = neighbour_counts(fg, ys[rest], xs[rest], eps_px) >= min_samples
    return core


def _clusters_paper(fg, ys, xs, eps_px, min_samples, max_fg, max_pairs):
    n_fg = int(ys.size)
    if n_fg > max_fg:
        raise ValueError(
            f"mode='paper': mask has {n_fg} foreground pixels > max_foreground_px={max_fg}; "
            "scikit-learn DBSCAN memory grows quadratically on solid regions. Use mode='fast' "
            '(same boxes, linear memory) or raise max_foreground_px.')
    n_pairs = int(neighbour_counts(fg, ys, xs, eps_px).sum())
    if n_pairs > max_pairs:
        raise ValueError(
            f"mode='paper': {n_pairs} neighbour pairs within eps_px={eps_px} > max_neighbour_pairs="
            f'{max_pairs} (~{n_pairs * 16 / 2**30:.1f} GiB for scikit-learn DBSCAN). '
            "Use mode='fast' (same boxes, linear memory) or raise max_neighbour_pairs.")
    from sklearn.cluster import DBSCAN
    coords = np.column_stack((xs, ys))  # (x, y) as the official code
    labels = DBSCAN(eps=eps_px, min_samples=min_samples).fit(coords).labels_
    return _cluster_stats(labels, xs, ys), int((labels < 0).sum())


def _cluster_stats(labels: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Per cluster ``[x_min, y_min, x_max, y_max, first_index]`` (last-pixel coords), int64 [K, 5]."""
    keep = labels >= 0
    if not keep.any():
        return np.zeros((0, 5), np.int64)
    lab, idx = labels[keep], np.nonzero(keep)[0]
    uniq, inv = np.unique(lab, return_inverse=True)
    k = uniq.size
    out = np.empty((k, 5), np.int64)
    big = np.iinfo(np.int64).max
    out[:, 0], out[:, 1], out[:, 4] = big, big, big
    out[:, 2], out[:, 3] = -1, -1
    np.minimum.at(out[:, 0], inv, xs[keep])
    np.minimum.at(out[:, 1], inv, ys[keep])
    np.maximum.at(out[:, 2], inv, xs[keep])
    np.maximum.at(out[:, 3], inv, ys[keep])
    np.minimum.at(out[:, 4], inv, idx)
    return out


def _clusters_fast(ys, xs, eps_px, min_samples):
    """Split the pixels into groups that cannot interact, then run :func:`_dbscan_group` on each.

    Cells of side ``ceil(eps)``: pixels within eps of each other lie in the same or 8-adjacent
    occupied cells, so 8-connected groups of occupied cells are independent DBSCAN problems and
    no full-image array is built.
    """
    from scipy import ndimage

    side = int(math.ceil(eps_px))
    cy, cx = ys // side, xs // side
    cells = np.zeros((int(cy.max()) + 1, int(cx.max()) + 1), bool)
    cells[cy, cx] = True
    groups, n_groups = ndimage.label(cells, structure=np.ones((3, 3), bool))
    gid = groups[cy, cx] - 1
    order = np.argsort(gid, kind='stable')  # row-major order kept inside each group
    bounds = np.searchsorted(gid[order], np.arange(n_groups + 1))
    labels = np.full(ys.size, -1, np.int64)
    next_label = 0
    for g in range(n_groups):
        idx = order[bounds[g]:bounds[g + 1]]
        if idx.size < min_samples:  # a core needs min_samples pixels within eps, all in its group
            continue
        local = _dbscan_group(ys[idx], xs[idx], eps_px, min_samples)
        hit = local >= 0
        labels[idx[hit]] = local[hit] + next_label
        next_label += int(local.max()) + 1 if hit.any() else 0
    return _cluster_stats(labels, xs, ys), int((labels < 0).sum())


def _dbscan_group(ys, xs, eps_px, min_samples) -> np.ndarray:
    """DBSCAN labels (-1 noise, else 0..) of pixels given in row-major order, without pair lists."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    y0, x0 = int(ys.min()), int(xs.min())
    ly, lx = ys - y0, xs - x0
    sub = np.zeros((int(ly.max()) + 1, int(lx.max()) + 1), bool)
    sub[ly, lx] = True
    core = core_pixels(sub, ly, lx, eps_px, min_samples)
    labels = np.full(ys.size, -1, np.int64)
    if not core.any():
        return labels
    core_img = np.zeros(sub.shape, bool)
    core_img[ly[core], lx[core]] = True
    comp, n_comp = ndimage.label(core_img, structure=np.ones((3, 3), bool))
    # Boundary core pixels: a 4-neighbour is not core (or outside the crop).
    padded = np.pad(core_img, 1)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    by, bx = np.nonzero(core_img & ~interior)
    bcomp = comp[by, bx] - 1
    order = np.argsort(bcomp, kind='stable')
    starts = np.searchsorted(bcomp[order], np.arange(n_comp + 1))
    pts = np.column_stack((bx, by)).astype(np.float64)[order]
    trees: Dict[int, cKDTree] = {}

    def within(c: int, q: np.ndarray) -> np.ndarray:
        if c not in trees:
            trees[c] = cKDTree(pts[starts[c]:starts[c + 1]])
        d, _ = trees[c].query(q, k=1, distance_upper_bound=eps_px * (1 + 1e-9) + 1e-9)
        return np.isfinite(d) & (np.square(d) <= eps_px * eps_px + 1e-6)

    boxes = np.array([[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1]
                      for s in ndimage.find_objects(comp)], np.int64)
    parent = list(range(n_comp))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i in range(n_comp):  # link components whose boxes come within eps, then check exactly
        gx = np.maximum(0, np.maximum(boxes[i + 1:, 0] - boxes[i, 2], boxes[i, 0] - boxes[i + 1:, 2]))
        gy = np.maximum(0, np.maximum(boxes[i + 1:, 1] - boxes[i, 3], boxes[i, 1] - boxes[i + 1:, 3]))
        for j in (np.nonzero(gx * gx + gy * gy <= eps_px * eps_px)[0] + i + 1).tolist():
            if find(i) != find(j) and within(i, pts[starts[j]:starts[j + 1]]).any():
                parent[find(j)] = find(i)
    roots = np.array([find(c) for c in range(n_comp)], np.int64)
    _, dense = np.unique(roots, return_inverse=True)  # cluster ids 0..K-1
    labels[core] = dense[comp[ly[core], lx[core]] - 1]
    # Border pixels: first cluster in scikit-learn's discovery order (lowest core index) within eps.
    members: Dict[int, List[int]] = {}
    for c in range(n_comp):
        members.setdefault(int(dense[c]), []).append(c)
    core_idx = np.nonzero(core)[0]
    seed = np.full(len(members), np.iinfo(np.int64).max)
    np.minimum.at(seed, labels[core_idx], core_idx)
    border = np.nonzero(~core)[0]
    for cluster in np.argsort(seed).tolist():
        if border.size == 0:
            break
        cb = boxes[members[cluster]]
        lo_x, lo_y = cb[:, 0].min() - eps_px, cb[:, 1].min() - eps_px
        hi_x, hi_y = cb[:, 2].max() + eps_px, cb[:, 3].max() + eps_px
        near = border[(lx[border] >= lo_x) & (lx[border] <= hi_x)
                      & (ly[border] >= lo_y) & (ly[border] <= hi_y)]
        if near.size == 0:
            continue
        q = np.column_stack((lx[near], ly[near])).astype(np.float64)
        hit = np.zeros(near.size, bool)
        for c in members[cluster]:
            hit |= within(c, q)
        labels[near[hit]] = cluster
        border = border[labels[border] < 0]
    return labels


def _finish(stats: np.ndarray, n_fg: int, n_noise: int, area_threshold_px2: float,
            max_boxes: Optional[int]) -> MaskBoxes:
    """Area filter, stable sort by area (ties: first pixel in row-major order), top-k, log counts."""
    areas = (stats[:, 2] - stats[:, 0]) * (stats[:, 3] - stats[:, 1])
    big = areas > area_threshold_px2
    kept, kept_areas = stats[big], areas[big]
    order = np.lexsort((kept[:, 4], -kept_areas))
    n_small = int((~big).sum())
    n_topk = max(0, order.size - max_boxes) if max_boxes is not None else 0
    order = order[:order.size - n_topk]
    boxes_px = kept[order, :4].astype(np.float32)
    boxes_px[:, 2:] += 1.0  # last pixel -> exclusive edge (geometry.py)
    logger.debug('mask_to_boxes: %d foreground px, %d noise px; %d clusters -> %d boxes '
                 '(dropped %d with area <= %s px^2, %d beyond max_boxes)', n_fg, n_noise,
                 stats.shape[0], order.size, n_small, area_threshold_px2, n_topk)
    return MaskBoxes(boxes_px=boxes_px.reshape(-1, 4), areas_px2=kept_areas[order].astype(np.int64),
                     n_foreground_px=n_fg, n_noise_px=n_noise, n_clusters=int(stats.shape[0]),
                     n_dropped_small=n_small, n_dropped_topk=int(n_topk))
