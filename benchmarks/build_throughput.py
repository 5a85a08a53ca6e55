"""Builder throughput (photos/s) in 1 and N processes beside the bare decode of the same photos.

    python benchmarks/build_throughput.py [--photos 16] [--width 4288] [--num-proc N]

The bundled photos are upscaled to full IDRiD resolution (4288x2848 JPEGs, boxes scaled), then:
* bare decode: ``PIL.Image.open(path).load()`` of every photo, in 1 and in N processes;
* build: ``build_fundusgen`` (every shipped task, both languages, marked copies at the default max
  side) over the same photos, in 1 and in N processes.
It prints photos/s of each and the build/decode ratio (goal: >= 0.7). OpenCV (resizing, JPEG
writing) is held to one thread per process, as in the builder's workers, so both sides use the same
cores. Timings vary with the machine's load; nothing here is asserted by tests.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _decode(path: str) -> int:
    from PIL import Image
    with Image.open(path) as im:
        im.load()
        return im.size[0]


def _photos(n: int, width: int, folder: Path):
    from PIL import Image

    from fundusexpert_plugin.sample import sample_records
    base = sample_records('train') + sample_records('heldout')
    records = []
    for i in range(n):
        rec = base[i % len(base)]
        scale = width / rec.width
        height = round(rec.height * scale)
        path = folder / f'p{i:04d}.jpg'
        with Image.open(rec.image) as im:
            im.convert('RGB').resize((width, height), Image.Resampling.BILINEAR).save(path, quality=90)
        findings = [f.model_copy(update={'box_px': tuple(min(v * scale, lim) for v, lim in
                                                          zip(f.box_px, (width, height) * 2))})
                    for f in rec.findings]
        records.append(rec.model_copy(update={'record_id': f'p{i:04d}', 'image': path.name, 'width': width,
                                              'height': height, 'findings': findings, 'sha256': None}))
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--photos', type=int, default=16)
    parser.add_argument('--width', type=int, default=4288)
    parser.add_argument('--num-proc', type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    import cv2

    from fundusexpert_plugin.build import build_fundusgen
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        records = _photos(args.photos, args.width, tmp)
        paths = [str(tmp / r.image) for r in records]
        for n in sorted({1, args.num_proc}):
            start = time.perf_counter()
            if n == 1:
                list(map(_decode, paths))
            else:
                with ProcessPoolExecutor(n) as pool:
                    list(pool.map(_decode, paths))
            decode = len(paths) / (time.perf_counter() - start)
            start = time.perf_counter()
            build_fundusgen(records, tmp / f'out{n}', image_dir=tmp, num_proc=n)
            build = len(paths) / (time.perf_counter() - start)
            print(f'{n} process(es): bare decode {decode:.2f} photos/s, build {build:.2f} photos/s '
                  f'({build / decode:.2f}x)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
