"""``fundusexpert``: the command-line entry for everything the plugin adds.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so ``fundusexpert plugin-path`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from typing import List, Optional

#: subcommand -> (module, one-line help[, add_arguments name, run name])
SUBCOMMANDS = {
    'demo': ('fundusexpert_plugin.cli.demo', 'sample -> FundusGen -> swift sft -> swift infer -> scored summary'),
    'build': ('fundusexpert_plugin.cli.build', 'build FundusGen task files from records (or the bundled sample)'),
    'convert': ('fundusexpert_plugin.cli.convert', 'public dataset layouts -> FundusGen records jsonl'),
    'make-tiny-model': ('fundusexpert_plugin.testing.tiny_models', 'build a tiny random Qwen2.5-VL or InternVL offline'),
    'eval': ('fundusexpert_plugin.cli.eval', 'score a swift infer result jsonl (MCQ, grounding, consistency)'),
    'mcq-rows': ('fundusexpert_plugin.cli.eval', 'GMAI-MMBench / Fundus-MMBench TSV -> swift rows + meta',
                 'add_tsv_rows_arguments', 'run_tsv_rows'),
    'mcq-export': ('fundusexpert_plugin.cli.eval', 'FundusGen MCQ rows -> TSV for VLMEvalKit',
                   'add_export_arguments', 'run_export'),
    'train-detector': ('fundusexpert_plugin.detector.train', 'train an MMDetection fundus detector'),
    'engine': ('fundusexpert_plugin.cli.engine', 'run Fundus-Engine over a folder of photographs'),
    'plugin-path': ('fundusexpert_plugin.cli.main', 'print the file to pass to swift --external_plugins'),
    'system-prompt': ('fundusexpert_plugin.cli.main', 'print the FundusExpert system prompt'),
}


def _plugin_path_args(parser: argparse.ArgumentParser) -> None:
    pass


def _system_prompt_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--lang', choices=['en', 'zh'], default='en',
                        help="'zh' gives the paper's original Chinese string")


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands whose module is not installed are left out)."""
    parser = argparse.ArgumentParser(prog='fundusexpert', description=__doc__.splitlines()[0])
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    sub = parser.add_subparsers(dest='command', required=True)
    for name, (module, help_text, *names) in SUBCOMMANDS.items():
        if not _available(module):
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == 'plugin-path':
            _plugin_path_args(p)
        elif name == 'system-prompt':
            _system_prompt_args(p)
        else:
            getattr(importlib.import_module(module), names[0] if names else 'add_arguments')(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``fundusexpert`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ['engine', 'ray']:  # its own parser (python -m fundusexpert_plugin.engine.ray_runner)
        from fundusexpert_plugin.engine.ray_runner import main as ray_main
        return ray_main(argv[2:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(levelname)s %(name)s: %(message)s')
    if args.command == 'plugin-path':
        from fundusexpert_plugin.swift_plugin.registry import plugin_path
        print(plugin_path())
        return 0
    if args.command == 'system-prompt':
        from fundusexpert_plugin.swift_plugin.system_prompt import SYSTEM_PROMPTS
        print(SYSTEM_PROMPTS[args.lang])
        return 0
    module, _, *names = SUBCOMMANDS[args.command]
    return int(getattr(importlib.import_module(module), names[1] if names else 'run')(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
