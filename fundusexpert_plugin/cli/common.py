"""How every command of the parser tree is built, and the option types shared by several commands.

Every command is an ``argparse`` sub-parser made by :func:`add_command`: its options come from an
``add_arguments(parser)`` function and it runs ``run(args) -> int`` through ``set_defaults(func=run)``.
A noun with several verbs (``data``, ``engine``, ``eval`` ...) gets its verbs from :func:`add_verbs`.
Kept free of heavy imports: building the whole tree must stay instant.
"""
from __future__ import annotations

import argparse
from typing import Callable, Optional, Tuple

from fundusexpert_plugin.core import vocab

AddArguments = Callable[[argparse.ArgumentParser], object]
Run = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose usage errors are one line on stderr, ``fundusexpert: error: ...``, exit 2."""

    def error(self, message: str):  # noqa: D102 (argparse API)
        self.exit(2, f'fundusexpert: error: {message} (see: {self.prog} --help)\n')


def add_verbs(parser: argparse.ArgumentParser, dest: str) -> argparse._SubParsersAction:
    """The (required) sub-command slot of ``parser``; ``dest`` names the chosen verb in the namespace."""
    return parser.add_subparsers(dest=dest, required=True, metavar='COMMAND', title='commands')


def add_command(verbs: argparse._SubParsersAction, name: str, summary: str, add_arguments: Optional[AddArguments],
                run: Optional[Run] = None) -> argparse.ArgumentParser:
    """One command: a sub-parser with a one-line ``summary``, options from ``add_arguments`` and
    ``func=run`` (``run=None`` for a noun whose verbs ``add_arguments`` adds)."""
    parser = verbs.add_parser(name, help=summary, description=summary)
    if add_arguments is not None:
        add_arguments(parser)
    if run is not None:
        parser.set_defaults(func=run)
    return parser


def languages(text: str) -> Tuple[str, ...]:
    """``--languages`` value: comma-separated language codes (``'en,zh'``, ``'zh'``), spaces ignored.

    Raises:
        argparse.ArgumentTypeError: empty, or a code outside ``vocab.LANGUAGES``.
    """
    codes = tuple(code.strip() for code in text.split(',') if code.strip())
    if not codes:
        raise argparse.ArgumentTypeError(f'expected a comma-separated subset of {",".join(vocab.LANGUAGES)}')
    try:
        return tuple(vocab.check_language(code) for code in codes)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_languages(parser: argparse.ArgumentParser) -> None:
    """The one ``--languages`` option (default: every language)."""
    parser.add_argument('--languages', type=languages, default=vocab.LANGUAGES, metavar='LANGS',
                        help=f'comma-separated subset of {",".join(vocab.LANGUAGES)} (default: all)')
