"""Benchmark: masks -> boxes, ``mode='paper'`` (scikit-learn DBSCAN) against ``mode='fast'``.

Builds a seeded synthetic 4288x2848 mask (IDRiD resolution) of small lesion blobs grouped in
exudate-like patches, runs both modes of :func:`fundusexpert_plugin.sources.masks.cluster_mask` with
the official pixel2bbox defaults (eps 50, min_samples 10, area 100) and prints, side by side, the
time of each, the ratio and the box agreement (mean IoU of boxes matched one-to-one by IoU).

Usage::

    python benchmarks/masks_to_boxes.py [--seed 0] [--patches 60] [--eps 50] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from fundusexpert_plugin.sources.masks import cluster_mask

WIDTH, HEIGHT = 4288, 2848


def synthetic_lesion_mask(seed: int, patches: int, width: int = WIDTH, height: int = HEIGHT
                          ) -> np.ndarray:
    """np.ndarray[H, W] bool: ``patches`` groups of 1-8 discs of radius 1-6 px within ~80 px, plus
    200 isolated single pixels (noise for DBSCAN)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), bool)
    yy, xx = np.mgrid[-6:7, -6:7]
    for _ in range(patches):
        cx, cy = rng.integers(200, width - 200), rng.integers(200, height - 200)
        for _ in range(rng.integers(1, 9)):
            x, y = cx + rng.integers(-40, 41), cy + rng.integers(-40, 41)
            r = rng.integers(1, 7)
            disc = xx ** 2 + yy ** 2 <= r * r
            mask[y - 6:y + 7, x - 6:x + 7] |= disc
    mask[rng.integers(0, height, 200), rng.integers(0, width, 200)] = True
    return mask


def matched_iou(a: np.ndarray, b: np.ndarray) -> tuple:
    """Mean IoU over a one-to-one IoU-maximising matching of xyxy boxes; also unmatched count."""
    if len(a) == 0 or len(b) == 0:
        return (1.0 if len(a) == len(b) else 0.0), abs(len(a) - len(b))
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    ious = inter / (area(a)[:, None] + area(b)[None, :] - inter)
    rows, cols = linear_sum_assignment(-ious)
    return float(ious[rows, cols].mean()), abs(len(a) - len(b))


def timed(fn, repeat: int):
    best, out = float('inf'), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--patches', type=int, default=60)
    ap.add_argument('--eps', type=float, default=50.0)
    ap.add_argument('--min-samples', type=int, default=10)
    ap.add_argument('--repeat', type=int, default=3)
    args = ap.parse_args()
    mask = synthetic_lesion_mask(args.seed, args.patches)
    print(f'mask {WIDTH}x{HEIGHT}, seed {args.seed}, {args.patches} patches, '
          f'{int(mask.sum())} foreground px; eps {args.eps}, min_samples {args.min_samples}, '
          f'area_threshold 100; best of {args.repeat}')
    print(f'{"max_boxes":>10} {"paper s":>9} {"fast s":>9} {"paper/fast":>11} {"boxes p/f":>10} '
          f'{"mean IoU":>9} {"identical":>9}')
    for max_boxes in (10, None):
        kw = dict(eps_px=args.eps, min_samples=args.min_samples, max_boxes=max_boxes)
        tp, p = timed(lambda: cluster_mask(mask, mode='paper', **kw), args.repeat)
        tf, f = timed(lambda: cluster_mask(mask, mode='fast', **kw), args.repeat)
        miou, _ = matched_iou(p.boxes_px, f.boxes_px)
        same = np.array_equal(p.boxes_px, f.boxes_px)
        print(f'{str(max_boxes):>10} {tp:9.3f} {tf:9.3f} {tp / tf:11.1f} '
              f'{len(p.boxes_px):>4}/{len(f.boxes_px):<5} {miou:9.4f} {str(same):>9}')
    print(f'clusters {p.n_clusters}, noise px paper/fast {p.n_noise_px}/{f.n_noise_px}')
    # Solid regions: scikit-learn's memory grows with the square of the pixels within eps.
    yy, xx = np.ogrid[:HEIGHT, :WIDTH]
    for radius in (40, 260):  # a small solid blob; an optic disc at IDRiD resolution
        disc = (xx - 900) ** 2 + (yy - 1300) ** 2 <= radius ** 2
        tf, f = timed(lambda: cluster_mask(disc, mode='fast', eps_px=args.eps), 1)
        try:
            tp, p = timed(lambda: cluster_mask(disc, mode='paper', eps_px=args.eps), 1)
            paper = f'paper {tp:.3f} s, same boxes: {np.array_equal(p.boxes_px, f.boxes_px)}'
        except ValueError as exc:
            paper = f'paper refused: {str(exc).split(";")[0]}'
        print(f'solid disc r={radius} px ({int(disc.sum())} px): fast {tf:.3f} s -> '
              f'{f.boxes_px.tolist()}; {paper}')

if __name__ == '__main__':
    main()
