"""``fundusexpert detector train`` (alias ``train-detector``): annotations -> records (one reader
stack, :mod:`fundusexpert_plugin.sources`) -> :func:`fundusexpert_plugin.detector.train.train_detector`."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.detector.train import _json_safe, add_arguments, train_detector  # noqa: F401
from fundusexpert_plugin.sources.base import ConvertLog
from fundusexpert_plugin.sources.registry import read_annotations


def _read(path, images, fmt: str, lenient: bool, log: ConvertLog):
    return list(read_annotations(path, fmt, images, lenient=lenient, log=log))


def run(args: argparse.Namespace) -> int:
    """Read, train, print the result as JSON. Returns 0, or 2 on bad input (one line on stderr)."""
    log = ConvertLog()
    try:
        records = _read(args.annotations, args.images, args.fmt, args.lenient, log)
        val_records = None
        if args.val_annotations is not None:
            val_images = args.val_images if args.val_images is not None or args.fmt == 'codras' else args.images
            val_records = _read(args.val_annotations, val_images, args.fmt, args.lenient, log)
        if log.skipped:
            print(f'annotations: {log.summary(len(records))}', file=sys.stderr)
        result = train_detector(
            records, args.work_dir, val_split=0.2 if args.val_split is None else args.val_split,
            val_records=val_records, max_iters=args.max_iters, img_scale=args.img_scale,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, config=args.config, classes=args.classes)
    except (FundusDataError, ValueError, FileNotFoundError) as exc:
        print(f'error: train-detector: {exc}', file=sys.stderr)
        return 2
    out = asdict(result)
    out.update(checkpoint=str(result.checkpoint), config=str(result.config))
    print(json.dumps(_json_safe(out), indent=2))  # CLI output
    return 0
