"""``fundusexpert make-tiny-model``: a tiny random Qwen2.5-VL or InternVL checkpoint, built offline
(:mod:`fundusexpert_plugin.testing.tiny_models`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert make-tiny-model``: ``--family``, ``--seed`` and the positional ``out_dir``."""
    from fundusexpert_plugin.testing.tiny_models import FAMILIES
    parser.add_argument('--family', required=True, choices=FAMILIES, help='which tiny model to build')
    parser.add_argument('--seed', type=int, default=0, help='torch seed for the random weights (default 0)')
    parser.add_argument('out_dir', help='directory to write the checkpoint into')


def run(args: argparse.Namespace) -> int:
    """Build ``args.family`` into ``args.out_dir`` and print the path; returns 0."""
    from fundusexpert_plugin.testing.tiny_models import make_tiny_model
    print(make_tiny_model(args.family, args.out_dir, seed=args.seed))
    return 0
