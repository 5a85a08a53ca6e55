"""``fundusexpert data build``: FundusGen records (or the bundled sample) -> FundusGen task files."""
from __future__ import annotations

import argparse
from pathlib import Path

from fundusexpert_plugin.cli.common import add_languages


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


def run(args: argparse.Namespace) -> int:
    """Run ``fundusexpert data build``; prints rows per task and every skipped record; returns 0.

    Raises:
        FileNotFoundError: ``--records`` does not exist.
        FundusDataError: a bad record or task file (unless ``--lenient`` for records).
    """
    from fundusexpert_plugin.build import build_fundusgen, build_sample
    from fundusexpert_plugin.core.record import read_records
    languages = list(args.languages)
    if args.sample:
        summaries = build_sample(args.out, seed=args.seed, languages=languages, tasks_dir=args.tasks_dir)
    else:
        skipped = []
        records = list(read_records(args.records, lenient=args.lenient, skipped=skipped))
        summary = build_fundusgen(records, args.out, image_dir=args.records.parent, tasks_dir=args.tasks_dir,
                                  languages=languages, seed=args.seed, lenient=args.lenient, skipped=skipped)
        summaries = {'': summary}
    for split, summary in summaries.items():
        print(f'{summary.out_dir}: {summary.records_used} records, rows per task {summary.rows_per_task}, '
              f'skipped {len(summary.skipped)}')
        for licence, count in sorted(summary.licences.items()):
            print(f'  licence ({count} records): {licence}')
        for reason in summary.skipped:
            print(f'  skipped: {reason}')
    return 0
