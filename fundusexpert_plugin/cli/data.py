"""``fundusexpert data convert|build|validate|deidentify``: datasets -> FundusGen records -> task files."""
from __future__ import annotations

import argparse

from fundusexpert_plugin.cli import build, convert, deidentify, validate
from fundusexpert_plugin.cli.common import add_command, add_verbs

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verbs of ``fundusexpert data``."""
    verbs = add_verbs(parser, 'data_command')
    add_command(verbs, 'convert', 'a public dataset layout, YOLO, COCO, masks or CSV -> FundusGen records jsonl',
                convert.add_arguments, convert.run)
    add_command(verbs, 'build', 'FundusGen records (or the bundled sample) -> FundusGen task files',
                build.add_arguments, build.run)
    add_command(verbs, 'deidentify', 'DICOM photographs -> de-identified DICOM copies (dicognito + free-text removal)',
                deidentify.add_arguments, deidentify.run)
    add_command(verbs, 'validate', 'run the readers and the image intake on a dataset without writing; '
                'count what would be skipped', validate.add_arguments, validate.run)
