"""Optic-disc and fovea localisation on real IDRiD photographs, against the official centres.

    python benchmarks/landmarks.py [--data ../shared/data/idrid_localisation]
        [--codras ../shared/data/idrid_codras] [--detector-config C --detector-checkpoint P
        [--score-threshold 0.05]] [--json out.json]

For each of the 50 photographs of ``idrid_localisation`` (official IDRiD optic-disc and fovea
centre markups, 4288x2848) it prints the Euclidean error in pixels at 4288x2848 (median, mean,
max, share within one disc radius) of:

* the landmark locator's disc (:mod:`fundusexpert_plugin.detector.landmarks`);
* a trained detector's top-scoring optic-disc box centre at ``--score-threshold`` (default 0.05),
  when ``--detector-*`` are given (a photo with no disc box counts as a miss: outside one radius,
  left out of median and mean), in two rows: the photographs that are not in ``idrid_codras`` and
  the 17 that are (``also_in_idrid_codras``). A detector trained on ``idrid_codras`` has seen the
  latter in training: only the first row measures it on unseen photographs;
* the locator's fovea;
* the 2.5-DD fovea prior (:func:`fundusexpert_plugin.render.position.estimate_fovea`) from the
  true disc centre and from the located disc (disc box of side ``DD_PER_FOV_WIDTH`` x FOV width,
  the locator's disc size).

One disc radius is 278 px: half the median CODRAS optic-disc box (556 px) of the 17 photographs
that are also in ``idrid_codras``; the smallest of those discs has a radius of 195 px, so the max
column says whether a stricter radius would change the share. Laterality from the located disc is
compared with the side of the true disc on every photograph. The disc is also scored against the
CODRAS disc-box centres of the ``idrid_codras`` photographs that are not in the localisation set
(photographs not used to choose the locator's parameters).

Photographs are decoded at half size (cv2 ``IMREAD_REDUCED_COLOR_2``) to save time; the locator
works at a quarter anyway. Points are scaled back to 4288x2848.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent.parent / 'shared' / 'data' if (ROOT.parent.parent / 'shared').is_dir() else ROOT.parent / 'shared' / 'data'
DISC_RADIUS_PX = 278.0
DECODE_FACTOR = 2


def _read(path: Path):
    import cv2
    bgr = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_2)
    if bgr is None:
        raise FileNotFoundError(f'{path}: cannot be decoded')
    return np.ascontiguousarray(bgr[:, :, ::-1])


def stats(errors: List[Optional[float]], radius: float = DISC_RADIUS_PX) -> Dict[str, float]:
    """Median, mean and max of the found errors, and the share of all photos within ``radius``."""
    found = np.array([e for e in errors if e is not None], dtype=float)
    return {'n': len(errors), 'found': int(found.size),
            'median_px': float(np.median(found)) if found.size else float('nan'),
            'mean_px': float(found.mean()) if found.size else float('nan'),
            'max_px': float(found.max()) if found.size else float('nan'),
            'within_radius': float((found <= radius).sum() / max(1, len(errors)))}


def run(data: Path, codras: Optional[Path], detector=None) -> dict:
    from fundusexpert_plugin.core.geometry import laterality_from_disc
    from fundusexpert_plugin.detector.landmarks import DD_PER_FOV_WIDTH, locate_landmarks
    from fundusexpert_plugin.render.position import estimate_fovea

    rows = list(csv.DictReader((data / 'landmarks.csv').open()))
    err = {k: [] for k in ('disc', 'fovea', 'prior_true_disc', 'prior_located_disc', 'detector_disc_unseen',
                           'detector_disc_codras')}
    lat_ok, per_photo, t0 = 0, [], time.time()
    for row in rows:
        rgb = _read(data / 'images' / row['image'])
        width = rgb.shape[1] * DECODE_FACTOR
        lm = locate_landmarks(rgb)
        dx, dy = (v * DECODE_FACTOR for v in lm.disc_center_px)
        fx, fy = (v * DECODE_FACTOR for v in lm.fovea_px)
        od = (float(row['od_x']), float(row['od_y']))
        fov = (float(row['fovea_x']), float(row['fovea_y']))
        dd = DD_PER_FOV_WIDTH * lm.fov_width_px * DECODE_FACTOR
        e_disc = float(np.hypot(dx - od[0], dy - od[1]))
        e_fov = float(np.hypot(fx - fov[0], fy - fov[1]))
        err['disc'].append(e_disc)
        err['fovea'].append(e_fov)
        for key, (cx, cy) in (('prior_true_disc', od), ('prior_located_disc', (dx, dy))):
            box = (cx - dd / 2, cy - dd / 2, cx + dd / 2, cy + dd / 2)
            px, py = estimate_fovea(box, laterality_from_disc(box, width), width)
            err[key].append(float(np.hypot(px - fov[0], py - fov[1])))
        true_side = laterality_from_disc((od[0], od[1], od[0] + 1, od[1] + 1), width)
        lat_ok += laterality_from_disc((dx, dy, dx + 1, dy + 1), width) == true_side
        if detector is not None:
            discs = [d for d in detector.predict(np.ascontiguousarray(rgb[:, :, ::-1]))
                     if d.label_id == 'optic_disc']
            key = 'detector_disc_codras' if row['also_in_idrid_codras'] else 'detector_disc_unseen'
            if discs:
                b = max(discs, key=lambda d: d.score).box_px
                cx, cy = ((b[0] + b[2]) / 2 * DECODE_FACTOR, (b[1] + b[3]) / 2 * DECODE_FACTOR)
                err[key].append(float(np.hypot(cx - od[0], cy - od[1])))
            else:
                err[key].append(None)
        per_photo.append({'image': row['image'], 'disc_px': round(e_disc, 1), 'fovea_px': round(e_fov, 1)})
    result = {'photos': len(rows), 'seconds_per_photo': (time.time() - t0) / max(1, len(rows)),
              'laterality_agrees': lat_ok,
              'detector_score_threshold': None if detector is None else detector.score_threshold,
              'errors': {k: stats(v) for k, v in err.items() if v}, 'per_photo': per_photo}
    if codras is not None and (codras / 'annotations.jsonl').is_file():
        in_loc = {r['also_in_idrid_codras'] for r in rows if r['also_in_idrid_codras']}
        errs = []
        for line in (codras / 'annotations.jsonl').read_text().splitlines():
            rec = json.loads(line)
            if Path(rec['image']).name in in_loc:
                continue
            b = next(a['bbox_xyxy'] for a in rec['annotations'] if a['label'] == 'optic_disc')
            lm = locate_landmarks(_read(codras / rec['image']))
            dx, dy = (v * DECODE_FACTOR for v in lm.disc_center_px)
            errs.append(float(np.hypot(dx - (b[0] + b[2]) / 2, dy - (b[1] + b[3]) / 2)))
        result['codras_other_disc'] = stats(errs)
    return result


def format_table(result: dict) -> str:
    """The printed table (Markdown)."""
    t = result.get('detector_score_threshold')
    names = {'disc': 'optic disc, landmark locator',
             'detector_disc_unseen': f'optic disc, trained detector at score >= {t}, photos not in idrid_codras',
             'detector_disc_codras': f'optic disc, trained detector at score >= {t}, photos also in idrid_codras '
                                     '(its training photos if trained there)',
             'fovea': 'fovea, landmark locator', 'prior_true_disc': 'fovea, 2.5-DD prior from the true disc',
             'prior_located_disc': 'fovea, 2.5-DD prior from the located disc'}
    lines = [f"IDRiD localisation, {result['photos']} photographs, error in px at 4288x2848 "
             f"(one disc radius = {DISC_RADIUS_PX:.0f} px)", '',
             '| landmark, method | median | mean | max | within 1 radius |', '|---|---|---|---|---|']
    rows = [(names[k], s) for k, s in result['errors'].items()]
    if 'codras_other_disc' in result:
        s = result['codras_other_disc']
        rows.append((f"optic disc, locator, vs CODRAS box centre ({s['n']} other IDRiD photos)", s))
    for name, s in rows:
        miss = f" ({s['n'] - s['found']} not found)" if s['found'] < s['n'] else ''
        if not s['found']:
            lines.append(f"| {name} | - | - | - | 0% ({s['n']} not found) |")
            continue
        lines.append(f"| {name} | {s['median_px']:.0f} | {s['mean_px']:.0f} | {s['max_px']:.0f} | "
                     f"{s['within_radius']:.0%}{miss} |")
    lines += ['', f"laterality from the located disc agrees with the true disc side on "
              f"{result['laterality_agrees']}/{result['photos']} photographs; "
              f"{result['seconds_per_photo']:.2f} s per photograph"]
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', type=Path, default=SHARED / 'idrid_localisation',
                        help='folder with landmarks.csv (official IDRiD disc and fovea centres) and images/')
    parser.add_argument('--codras', type=Path, default=SHARED / 'idrid_codras',
                        help='folder with annotations.jsonl (CODRAS boxes) and images/: the disc is also '
                             'scored on its photographs that are not in --data')
    parser.add_argument('--detector-config', type=Path, help='mmdet config of a trained detector')
    parser.add_argument('--detector-checkpoint', type=Path, help='its checkpoint')
    parser.add_argument('--score-threshold', type=float, default=0.05,
                        help="the detector's score threshold (default 0.05)")
    parser.add_argument('--json', type=Path, help='also write the result here')
    args = parser.parse_args(argv)
    detector = None
    if args.detector_config:
        from fundusexpert_plugin.detector.detect import Detector
        detector = Detector(args.detector_config, args.detector_checkpoint, score_threshold=args.score_threshold)
    result = run(args.data, args.codras, detector)
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
