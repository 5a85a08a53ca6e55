"""Recreate the bundled sample (fundusexpert_plugin/sample/) from the idrid_codras folder.

Usage: python scripts/vendor_idrid_sample.py /path/to/idrid_codras

Copies 12 IDRiD photographs downscaled by 4 (4288x2848 -> 1072x712, Lanczos, JPEG q90, EXIF
dropped), their CODRAS YOLO labels unchanged (normalised coordinates do not change with scale),
and an annotations.jsonl with the pixel boxes multiplied by 0.25. The split (8 train, 4 held-out)
mixes left and right eyes and every composition group (exudates+haemorrhages, exudates only,
haemorrhages only, optic disc only).
"""
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


def main(src: str) -> None:
    src_dir = Path(src)
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
    shutil.copy(src_dir / 'labels_yolo' / 'classes.names', dst / 'labels_yolo' / 'classes.names')
    with (dst / 'annotations.jsonl').open('w') as fh:
        for row in rows:
            fh.write(json.dumps(row) + '\n')
    print(f'wrote {len(rows)} images to {dst}')


if __name__ == '__main__':
    main(sys.argv[1])
