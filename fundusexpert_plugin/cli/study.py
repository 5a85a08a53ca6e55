"""``fundusexpert study scaling``: the data scaling-law study on your own FundusGen.

Example (everything after ``--`` is passed to every ``swift sft`` unchanged)::

    NPROC_PER_NODE=4 fundusexpert study scaling --fundusgen fundusgen/train --heldout fundusgen/heldout \\
        --out study --fractions 1/16 1/8 1/4 1/2 1 --arms chain plain --eval-tasks region_detection mcq \\
        -- --model Qwen/Qwen2.5-VL-7B-Instruct --template fundusexpert_qwen2_5_vl --tuner_type lora \\
           --max_steps 2000 --save_steps 2000 --learning_rate 1e-4

Writes ``<out>/scaling.json`` and ``<out>/scaling.png`` (see
:mod:`fundusexpert_plugin.study.scaling`); re-running the same command resumes.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from fundusexpert_plugin.cli.common import positive_int

DEFAULT_FRACTIONS = ('1/16', '1/8', '1/4', '1/2', '1')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert study scaling``."""
    parser.add_argument('--fundusgen', type=Path, required=True, help='training FundusGen folder')
    parser.add_argument('--heldout', type=Path, required=True, help='held-out FundusGen folder (loss and metrics)')
    parser.add_argument('--out', type=Path, required=True, help='study folder (re-run to resume)')
    parser.add_argument('--fractions', nargs='+', default=list(DEFAULT_FRACTIONS),
                        help='subset sizes as shares of every task, e.g. 1/16 0.25 1 (default: %(default)s)')
    parser.add_argument('--arms', nargs='+', choices=('chain', 'plain'), default=['chain'],
                        help='chain: all tasks; plain: without grounded_report/report (same images)')
    parser.add_argument('--seed', type=int, default=0, help='subset order and swift --seed/--data_seed')
    parser.add_argument('--val-dataset', nargs='+', default=['fundusgen_heldout'],
                        help='swift --val_dataset for the held-out loss (default: every held-out task)')
    parser.add_argument('--eval-tasks', nargs='*', default=['region_detection'],
                        help='held-out tasks scored via swift infer + fundusexpert eval (none: loss only)')
    parser.add_argument('--eval-limit', type=positive_int, default=None, help='score the first N rows of each eval task')
    parser.add_argument('--max-new-tokens', type=positive_int, default=256)
    parser.add_argument('--infer-args', default='', help='extra swift infer arguments, one quoted string')
    parser.add_argument('--n-boot', type=positive_int, default=2000, help='bootstrap refits per fit')
    parser.add_argument('--offset', choices=('auto', 'yes', 'no'), default='auto',
                        help='fit L = a*N^k + c (auto: with at least 5 sizes)')
    parser.add_argument('swift_args', nargs=argparse.REMAINDER,
                        help='-- then the swift sft arguments shared by every point (model, template, steps ...)')


def run(args: argparse.Namespace) -> int:
    """Run or resume the study; prints the held-out-loss fits. Returns 0.

    Raises:
        FundusDataError: bad fractions, data or reserved swift flags.
        RuntimeError: a swift command failed.
    """
    from fundusexpert_plugin.study.runs import RunSettings
    from fundusexpert_plugin.study.scaling import LOSS, run_study
    from fundusexpert_plugin.study.subsets import parse_fraction
    swift_args = list(args.swift_args)
    if swift_args[:1] == ['--']:
        swift_args = swift_args[1:]
    settings = RunSettings(swift_args=swift_args, heldout_dir=str(args.heldout.resolve()), val_dataset=args.val_dataset,
                           eval_tasks=[t for t in args.eval_tasks if t != 'none'], eval_limit=args.eval_limit,
                           infer_args=shlex.split(args.infer_args), max_new_tokens=args.max_new_tokens, seed=args.seed)
    result = run_study(args.fundusgen, args.out, settings, fractions=[parse_fraction(f) for f in args.fractions],
                       arms=args.arms, n_boot=args.n_boot,
                       with_offset={'auto': None, 'yes': True, 'no': False}[args.offset])
    for arm, fit in result['fits'][LOSS].items():
        print(f'{arm}: ' + (json.dumps({k: fit[k] for k in ('form', 'a', 'k', 'c', 'k_ci')}) if fit else 'not fitted'))
    print(f'{args.out}/scaling.json, {args.out}/scaling.png')
    return 0
