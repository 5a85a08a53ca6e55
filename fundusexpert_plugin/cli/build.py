"""``fundusexpert data build``: FundusGen records (or the bundled sample) -> FundusGen task files."""
from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from fundusexpert_plugin.cli.common import add_languages, positive_int


def marked_side(text: str) -> int:
    """argparse type of ``--marked-max-side``: ``0`` (full size) or at least
    :data:`fundusexpert_plugin.build.MARKED_MIN_SIDE` pixels.

    Raises:
        argparse.ArgumentTypeError: not an integer, negative, or between 1 and the minimum.
    """
    from fundusexpert_plugin.build import MARKED_MIN_SIDE
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or (value != 0 and value < MARKED_MIN_SIDE):
        raise argparse.ArgumentTypeError(f'expected 0 (full size) or a number of pixels >= {MARKED_MIN_SIDE}, '
                                         f'got {text!r}')
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert data build``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--records', type=Path, help='FundusGen records jsonl (image paths relative to its folder)')
    src.add_argument('--sample', action='store_true', help='the bundled IDRiD sample: writes OUT/train and OUT/heldout')
    parser.add_argument('--out', type=Path, required=True, help='output folder')
    parser.add_argument('--tasks-dir', type=Path, default=None, help='folder of task YAMLs (default: templates/)')
    add_languages(parser)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--lenient', action='store_true',
                        help='log and skip bad records (counted in build_summary.json) instead of stopping')
    parser.add_argument('--image-root', type=Path, default=None,
                        help='dataset folder every image must lie in (default: the records file folder; '
                             'image paths stay relative to the records file)')
    parser.add_argument('--allow-outside-root', action='store_true',
                        help='accept image paths outside the dataset folder (trusted records only)')
    parser.add_argument('--copy-images', action='store_true',
                        help='write every photograph as a fresh metadata-free PNG under OUT/images and point '
                             'the rows there (a folder to share without the originals and their EXIF/XMP); '
                             'default: rows point at the originals in place')
    parser.add_argument('--num-proc', type=positive_int, default=os.cpu_count() or 1,
                        help='worker processes, at least 1 (default: the machine\'s cores, %(default)s)')
    parser.add_argument('--marked-max-side', type=marked_side, default=None,
                        help='longest side of the marked copies in pixels, at least 256 (default: the builder\'s '
                             'MARKED_MAX_SIDE, 2048; 0: full size)')
    parser.add_argument('--max-image-pixels', type=positive_int, default=None,
                        help="decompression-bomb limit in pixels (default: Pillow's, 89,478,485)")


def run(args: argparse.Namespace) -> int:
    """Run ``fundusexpert data build``; prints rows per task, licences and every skip counted by reason; returns 0.

    Raises:
        FileNotFoundError: ``--records`` or the ``--image-root`` folder does not exist.
        FundusDataError: a bad record, image or task file (unless ``--lenient`` for records and images);
            an empty or all-invalid records file even with ``--lenient``.
    """
    from fundusexpert_plugin.build import MARKED_MAX_SIDE, build_fundusgen, build_sample
    from fundusexpert_plugin.core.images import set_max_pixels
    from fundusexpert_plugin.core.paths import check_folder
    from fundusexpert_plugin.core.record import read_records
    if args.image_root is not None:
        check_folder(args.image_root, what='--image-root')
    languages = list(args.languages)
    if args.max_image_pixels:
        set_max_pixels(args.max_image_pixels)
    num_proc = args.num_proc
    max_side = MARKED_MAX_SIDE if args.marked_max_side is None else (args.marked_max_side or None)
    if args.sample:
        summaries = build_sample(args.out, seed=args.seed, languages=languages, tasks_dir=args.tasks_dir,
                                 num_proc=num_proc, marked_max_side=max_side, copy_images=args.copy_images)
    else:
        skipped, counts, box_skipped, box_counts, locations = [], Counter(), [], Counter(), {}
        records = list(read_records(args.records, lenient=args.lenient, skipped=skipped, counts=counts,
                                    box_counts=box_counts, box_skipped=box_skipped, locations=locations))
        summary = build_fundusgen(records, args.out, image_dir=args.records.parent, tasks_dir=args.tasks_dir,
                                  languages=languages, seed=args.seed, lenient=args.lenient, skipped=skipped,
                                  skipped_counts=counts, skipped_boxes=box_skipped, skipped_box_counts=box_counts,
                                  num_proc=num_proc,
                                  marked_max_side=max_side, image_root=args.image_root,
                                  allow_outside_root=args.allow_outside_root, copy_images=args.copy_images,
                                  locations=locations)
        summaries = {'': summary}
    for split, summary in summaries.items():
        print(f'{summary.out_dir}: {summary.records_used} records, rows per task {summary.rows_per_task}, '
              f'skipped {len(summary.skipped)}' + (f' by reason {summary.skipped_by_reason}' if summary.skipped else '')
              + (f', boxes/items skipped {len(summary.skipped_boxes)} by reason {summary.skipped_boxes_by_reason}'
                 if summary.skipped_boxes else ''))
        for licence, count in sorted(summary.licences.items()):
            print(f'  licence ({count} records): {licence}')
        for reason in summary.skipped:
            print(f'  skipped: {reason}')
        for reason in summary.skipped_boxes:
            print(f'  skipped box/item: {reason}')
        for warning in summary.warnings:
            print(f'  warning: {warning}')
        if summary.flagged_records:
            shown = ', '.join(summary.flagged_records[:5]) + (' ...' if len(summary.flagged_records) > 5 else '')
            print(f'  {len(summary.flagged_records)} record(s) carry review flags (provenance.flags; their chain says '
                  f'"Flagged for review"): {shown}')
    return 0
