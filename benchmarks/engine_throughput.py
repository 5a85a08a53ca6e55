"""Fundus-Engine throughput against bare ``inference_detector``, and peak memory for 100 vs 1000 images.

    python benchmarks/engine_throughput.py [--images 40] [--scale 320] [--memory-sizes 100 1000]

One run prints, side by side:
* images/s of mmdet's ``inference_detector`` alone on the bundled photographs (repeated), and of the
  whole engine (image intake, detection, record validation, fsynced jsonl writing) on the same
  photographs with the same detector; their ratio;
* peak resident memory (ru_maxrss) of an engine run over 100 and over 1000 photographs, each in a
  fresh process: streaming keeps it flat.
The detector is RTMDet-tiny with random weights (no download): speed does not depend on training.
Timings vary with the machine's load; nothing here is asserted by tests.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _detector(scale: int):
    from fundusexpert_plugin.detector.detect import Detector, load_config
    from fundusexpert_plugin.detector.train import DEFAULT_CONFIG, _set_img_scale
    cfg = load_config(DEFAULT_CONFIG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader):
            _set_img_scale(cfg[loader].dataset.pipeline, (scale, scale))
    return Detector(cfg, None, classes=['optic_disc', 'hard_exudates', 'haemorrhages'], score_threshold=0.3)


def _photos(n: int, folder: Path):
    from fundusexpert_plugin.sample import SAMPLE_DIR
    src = sorted((SAMPLE_DIR / 'images').glob('*.jpg'))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        link = folder / f'{i:05d}.jpg'
        if not link.exists():
            os.symlink(src[i % len(src)], link)
        out.append(link)
    return out


def child(n: int, scale: int) -> None:
    """Engine over ``n`` photographs in this process; prints peak RSS (MiB) as JSON."""
    from fundusexpert_plugin.engine import FundusEngine
    from fundusexpert_plugin.engine.batch import run_engine
    with tempfile.TemporaryDirectory() as tmp:
        photos = _photos(n, Path(tmp) / 'photos')
        start = time.perf_counter()
        run_engine(FundusEngine(_detector(scale)), photos, Path(tmp) / 'out', progress=False)
        seconds = time.perf_counter() - start
    print(json.dumps({'images': n, 'seconds': seconds,
                      'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=40, help='photographs for the throughput comparison')
    parser.add_argument('--scale', type=int, default=320, help='detector input size (px)')
    parser.add_argument('--memory-sizes', type=int, nargs='+', default=[100, 1000])
    parser.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.scale)

    import torch
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from fundusexpert_plugin.engine import FundusEngine
    from fundusexpert_plugin.engine.batch import run_engine
    detector = _detector(args.scale)          # installs the mmcv ops stand-in before mmdet.apis
    from mmdet.apis import inference_detector
    with tempfile.TemporaryDirectory() as tmp:
        photos = _photos(args.images, Path(tmp) / 'photos')
        inference_detector(detector.model, str(photos[0]))          # warm-up, not timed
        start = time.perf_counter()
        for p in photos:
            inference_detector(detector.model, str(p))
        bare = len(photos) / (time.perf_counter() - start)
        start = time.perf_counter()
        run_engine(FundusEngine(detector), photos, Path(tmp) / 'out', progress=False)
        engine = len(photos) / (time.perf_counter() - start)
    print(f'{args.images} photographs (bundled sample, 1072x712, repeated), RTMDet-tiny at {args.scale} px, '
          f'{torch.get_num_threads()} threads')
    print(f'  bare inference_detector : {bare:6.2f} images/s')
    print(f'  Fundus-Engine           : {engine:6.2f} images/s')
    print(f'  engine / bare           : {engine / bare:6.2f}')
    for n in args.memory_sizes:
        out = subprocess.run([sys.executable, __file__, '--child', str(n), '--scale', str(args.scale)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f'  engine over {n:5d} photographs: peak RSS {result["peak_rss_mib"]:7.1f} MiB, '
              f'{n / result["seconds"]:.2f} images/s')


if __name__ == '__main__':
    main()
