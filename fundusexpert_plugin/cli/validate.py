"""``fundusexpert data validate PATH`` (or ``--records FILE``): run the annotation readers and the image
intake on a dataset without writing anything; print what would be skipped, counted by reason, each
skipped item once (on stdout; the readers' own warnings are not echoed).

Exit status: 0 nothing would be skipped; 1 something would be skipped (listed); 2 the input cannot be
read at all (one line naming the file, line and field).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fundusexpert_plugin.cli.common import positive_int
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.images import set_max_pixels
from fundusexpert_plugin.core.paths import check_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``data validate``."""
    parser.add_argument('path', type=Path, nargs='?', default=None,
                        help='annotation file or folder (records / codras jsonl, COCO json, box CSV, label CSV/xlsx/xls, '
                             'YOLO labels folder, masks folder)')
    parser.add_argument('--records', type=Path, default=None,
                        help='FundusGen records jsonl, as data build --records reads it (the same as PATH with '
                             '--format records)')
    parser.add_argument('--format', default=None,
                        help='records, codras, coco, box-csv, csv (image-level labels, the data convert csv '
                             'layout), yolo or masks (default: recognised from the file)')
    parser.add_argument('--images', '--image-root', dest='images', type=Path, default=None,
                        help='dataset folder the image paths are relative to (yolo, masks: the images folder); '
                             'for records, the dataset folder every image must lie in, paths staying relative '
                             'to the records file: the same folder as data build --image-root. The two '
                             'spellings are one option')
    parser.add_argument('--class-map', action='append', default=[], metavar='NAME=ID',
                        help='map a source class to a finding id, or NAME=- to leave it out (repeatable)')
    parser.add_argument('--allow-outside-root', action='store_true',
                        help='accept image paths outside the dataset folder')
    parser.add_argument('--max-image-pixels', type=positive_int, default=None, help='decompression-bomb limit in pixels')


def run(args: argparse.Namespace) -> int:
    """Validate ``args.path`` (or ``args.records``); prints a summary. Returns 0 (clean) or 1 (something
    would be skipped).

    Raises:
        FundusDataError, FileNotFoundError, ValueError: the input cannot be read at all (or the
            ``--images`` folder does not exist), no PATH, or
            ``--records`` with PATH or with another ``--format`` (the command line prints one line and
            exits 2).
    """
    from fundusexpert_plugin.sources.base import ConvertLog
    from fundusexpert_plugin.sources.registry import PATH_FORMATS, detect_format, read_annotations

    if args.records is not None:
        if args.path is not None:
            raise FundusDataError(f'{args.path} and --records {args.records}: give the records file either as '
                                  'PATH or as --records, not both')
        if args.format not in (None, 'records'):
            raise FundusDataError(f'--records reads FundusGen records (--format records); got --format '
                                  f'{args.format} (give that file as PATH)')
        args.path, args.format = args.records, 'records'
    if args.path is None:
        raise FundusDataError('data validate: give the annotation PATH (or --records FILE)')
    if args.images is not None:
        check_folder(args.images, what='--images/--image-root')
    if args.max_image_pixels:
        set_max_pixels(args.max_image_pixels)
    log = ConvertLog(echo=False)  # every message is printed below, once
    try:
        fmt = args.format or detect_format(args.path)
        options = {'lenient': True, 'log': log}
        if fmt in PATH_FORMATS:
            options['allow_outside_root'] = args.allow_outside_root
        if args.class_map and fmt in ('coco', 'yolo', 'box-csv', 'masks'):  # formats with class names
            from fundusexpert_plugin.sources.generic import parse_class_map
            options['class_map'] = parse_class_map(args.class_map)
        records = list(read_annotations(args.path, fmt, args.images, **options))
    except (FundusDataError, FileNotFoundError, ValueError):
        for message in log.skipped:   # what was skipped before the input became unreadable
            print(f'  skipped: {message}')
        raise
    n_boxes = sum(len(r.findings) for r in records)
    print(f'{args.path} ({fmt}): {len(records)} records, {n_boxes} boxes would be written')
    for kind, counts in log.counts().items():
        for reason, n in sorted(counts.items()):
            print(f'  would skip {n} {kind}: {reason}')
    for message in log.skipped:
        print(f'  skipped: {message}')
    for message in log.warnings:
        print(f'  warning: {message}')
    for reason, n in sorted(log.notes.items()):
        print(f'  left out ({n}x): {reason}')
    return 1 if log.skipped else 0
