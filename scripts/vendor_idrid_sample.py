"""Recreate the bundled sample (fundusexpert_plugin/sample/) from the idrid_codras folder.

Usage: python scripts/vendor_idrid_sample.py /path/to/idrid_codras [/path/to/idrid_localisation]

Copies 12 IDRiD photographs downscaled by 4 (4288x2848 -> 1072x712, Lanczos, JPEG q90, EXIF
dropped), their CODRAS YOLO labels unchanged (normalised coordinates do not change with scale),
and an annotations.jsonl with the pixel boxes multiplied by 0.25. The split (8 train, 4 held-out)
mixes left and right eyes and every composition group (exudates+haemorrhages, exudates only,
haemorrhages only, optic disc only). With the idrid_localisation folder, photographs listed in its
``also_in_idrid_codras`` column get ``idrid_image`` and ``fovea_xy`` (official fovea centre x 0.25).
"""
import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path

from PIL import Image

SPLITS = {
    'train': ['0003', '0008', '0013', '0004', '0022', '0001', '0007', '0006'],
    'heldout': ['0005', '0014', '0049', '0015'],
}
SCALE = 4


def main(src: str, localisation: str = '') -> None:
    src_dir = Path(src)
    fovea = {}
    if localisation:
        with (Path(localisation) / 'landmarks.csv').open() as fh:
            fovea = {r['also_in_idrid_codras']: r for r in csv.DictReader(fh) if r['also_in_idrid_codras']}
    dst = Path(__file__).resolve().parents[1] / 'fundusexpert_plugin' / 'sample'
    (dst / 'images').mkdir(parents=True, exist_ok=True)
    (dst / 'labels_yolo').mkdir(parents=True, exist_ok=True)
    upstream = {}
    for line in (src_dir / 'annotations.jsonl').read_text().splitlines():
        rec = json.loads(line)
        upstream[rec['codras_id']] = rec
    rows = []
    for split, ids in SPLITS.items():
        for cid in ids:
            rec = upstream[cid]
            with Image.open(src_dir / rec['image']) as im:
                small = im.convert('RGB').resize((rec['width'] // SCALE, rec['height'] // SCALE), Image.LANCZOS)
            out = dst / 'images' / f'{cid}.jpg'
            small.save(out, quality=90)
            shutil.copy(src_dir / 'labels_yolo' / f'{cid}.txt', dst / 'labels_yolo' / f'{cid}.txt')
            rows.append({
                'image': f'images/{cid}.jpg', 'codras_id': cid, 'split': split,
                'source_dataset': rec['source_dataset'],
                'width': small.width, 'height': small.height,
                'upstream_sha256': rec['sha256'],
                'sha256': hashlib.sha256(out.read_bytes()).hexdigest(),
                'annotations': [{'label': a['label'], 'class_id': a['class_id'],
                                 'bbox_xyxy': [round(v / SCALE, 2) for v in a['bbox_xyxy']]}
                                for a in rec['annotations']],
            })
            loc = fovea.get(Path(rec['image']).name)
            if loc and loc['sha256'] == rec['sha256']:
                rows[-1]['idrid_image'] = loc['image']
                rows[-1]['fovea_xy'] = [float(loc['fovea_x']) / SCALE, float(loc['fovea_y']) / SCALE]
    shutil.copy(src_dir / 'labels_yolo' / 'classes.names', dst / 'labels_yolo' / 'classes.names')
    with (dst / 'annotations.jsonl').open('w') as fh:
        for row in rows:
            fh.write(json.dumps(row) + '\n')
    print(f'wrote {len(rows)} images to {dst}')


if __name__ == '__main__':
    main(*sys.argv[1:3])
