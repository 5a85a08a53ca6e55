"""``fundusexpert swift plugin-path|system-prompt``: what to hand to ms-swift (both instant, no ms-swift import)."""
from __future__ import annotations

import argparse

from fundusexpert_plugin.cli.common import add_command, add_verbs


def run_plugin_path(args: argparse.Namespace) -> int:
    """Print the plugin file to pass to ``swift sft/infer --external_plugins``; returns 0."""
    from fundusexpert_plugin.swift_plugin.registry import plugin_path
    print(plugin_path())
    return 0


def add_system_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert swift system-prompt``."""
    parser.add_argument('--lang', choices=['en', 'zh'], default='en',
                        help="'zh' gives the paper's original Chinese string")


def run_system_prompt(args: argparse.Namespace) -> int:
    """Print the FundusExpert system prompt in ``args.lang``; returns 0."""
    from fundusexpert_plugin.swift_plugin.system_prompt import SYSTEM_PROMPTS
    print(SYSTEM_PROMPTS[args.lang])
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verbs of ``fundusexpert swift``."""
    verbs = add_verbs(parser, 'swift_command')
    add_command(verbs, 'plugin-path', 'print the file to pass to swift --external_plugins', None, run_plugin_path)
    add_command(verbs, 'system-prompt', 'print the FundusExpert system prompt', add_system_prompt_arguments,
                run_system_prompt)
