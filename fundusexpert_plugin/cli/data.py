"""``fundusexpert data convert|build|validate|deidentify``: datasets -> FundusGen records -> task files."""
from __future__ import annotations

import argparse
import importlib
import importlib.util

from fundusexpert_plugin.cli import build, convert, deidentify
from fundusexpert_plugin.cli.common import add_command, add_verbs

#: the optional ``data validate`` module (registered when it is installed)
VALIDATE_MODULE = 'fundusexpert_plugin.cli.validate'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verbs of ``fundusexpert data``."""
    verbs = add_verbs(parser, 'data_command')
    add_command(verbs, 'convert', 'a public dataset layout, YOLO, COCO, masks or CSV -> FundusGen records jsonl',
                convert.add_arguments, convert.run)
    add_command(verbs, 'build', 'FundusGen records (or the bundled sample) -> FundusGen task files',
                build.add_arguments, build.run)
    add_command(verbs, 'deidentify', 'DICOM photographs -> de-identified DICOM copies (dicognito + free-text removal)',
                deidentify.add_arguments, deidentify.run)
    if importlib.util.find_spec(VALIDATE_MODULE) is not None:
        validate = importlib.import_module(VALIDATE_MODULE)
        add_command(verbs, 'validate', 'check a records file and report every bad record and box',
                    validate.add_arguments, validate.run)
