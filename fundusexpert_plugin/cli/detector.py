"""``fundusexpert detector train`` (alias ``train-detector``): annotations -> records (the one reader
stack, :mod:`fundusexpert_plugin.sources`) -> :func:`fundusexpert_plugin.detector.train.train_detector`."""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from typing import Tuple

from fundusexpert_plugin.cli.common import add_command, add_verbs, open_fraction, positive_float, positive_int


def img_scale(text: str) -> Tuple[int, int]:
    """``--img-scale`` value: ``N`` (square) or ``WxH`` / ``W,H`` pixels -> ``(width, height)``.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    parts = re.split(r'[x,]', text.strip())
    try:
        values = [int(p) for p in parts if p]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f'--img-scale: expected N or WxH pixels, got {text!r}')
    if min(values) < 32:
        raise argparse.ArgumentTypeError(f'--img-scale: {text!r}: each side must be at least 32 px')
    return values[0], values[1]


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``fundusexpert detector train``."""
    from fundusexpert_plugin.detector.train import DEFAULT_CONFIG
    parser.add_argument('--annotations', required=True,
                        help='YOLO labels folder (with classes.names or an Ultralytics data.yaml), COCO json, CODRAS jsonl, box CSV, masks '
                             'folder or FundusGen records jsonl (see --format)')
    parser.add_argument('--images', default=None,
                        help='images folder (yolo, coco, box-csv, masks); for codras and records the dataset '
                             'folder the jsonl "image" paths lie in (default: the jsonl folder)')
    parser.add_argument('--format', dest='fmt', default='codras',
                        help='annotation format: codras (default), records (FundusGen records jsonl, as written by '
                             'data convert), yolo, coco, box-csv, masks')
    parser.add_argument('--allow-outside-root', action='store_true',
                        help='accept image paths outside the dataset folder (trusted files; codras, records, '
                             'coco, box-csv)')
    parser.add_argument('--work-dir', required=True, help='output folder')
    parser.add_argument('--max-iters', type=positive_int, default=300)
    parser.add_argument('--img-scale', type=img_scale, default=(640, 640),
                        help='model input size, N or WxH pixels (default 640)')
    val = parser.add_mutually_exclusive_group()
    val.add_argument('--val-split', type=open_fraction, default=None,
                     help='held-out fraction of images (default 0.2)')
    val.add_argument('--val-annotations', default=None, help='separate validation annotations')
    parser.add_argument('--val-images', default=None, help='images of --val-annotations')
    parser.add_argument('--batch-size', type=positive_int, default=4)
    parser.add_argument('--lr', type=positive_float, default=None, help="default: the config's base_lr")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--config', default=str(DEFAULT_CONFIG), help='mmdet config file')
    parser.add_argument('--classes', nargs='+', default=None, help='fixed class order')
    parser.add_argument('--lenient', action='store_true', help='skip bad boxes / images (counted) instead of stopping')
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Read the annotations, train, print the result as JSON; returns 0.

    Raises:
        FundusDataError, FileNotFoundError, ValueError: bad inputs, named by file, line and field
            (the command line prints one line and exits 2).
    """
    from fundusexpert_plugin.detector.train import json_safe, train_detector
    from fundusexpert_plugin.sources.base import ConvertLog
    from fundusexpert_plugin.sources.registry import PATH_FORMATS, read_annotations
    log = ConvertLog()
    options = {'lenient': args.lenient, 'log': log}
    if args.fmt in PATH_FORMATS:
        options['allow_outside_root'] = args.allow_outside_root
    records = list(read_annotations(args.annotations, args.fmt, args.images, **options))
    val_records = None
    if args.val_annotations is not None:
        # jsonl formats default to the validation file's own folder; the others share --images
        own_folder = args.fmt in ('codras', 'records')
        val_images = args.val_images if args.val_images is not None or own_folder else args.images
        val_records = list(read_annotations(args.val_annotations, args.fmt, val_images, **options))
    if log.skipped:
        print(f'annotations: {log.summary(len(records))}', file=sys.stderr)
    result = train_detector(
        records, args.work_dir, val_split=0.2 if args.val_split is None else args.val_split,
        val_records=val_records, max_iters=args.max_iters, img_scale=args.img_scale,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, config=args.config, classes=args.classes,
        annotation_skips={**log.counts(), 'messages': list(log.skipped)})   # what --lenient left out
    out = asdict(result)
    out.update(checkpoint=str(result.checkpoint), config=str(result.config))
    print(json.dumps(json_safe(out), indent=2))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verbs of ``fundusexpert detector``."""
    verbs = add_verbs(parser, 'detector_command')
    add_command(verbs, 'train', 'train an MMDetection fundus detector (YOLO, COCO, CODRAS, box-CSV, masks or FundusGen records)',
                add_train_arguments, run_train)
