"""How every command of the parser tree is built, and the option types shared by several commands.

Numeric options take their ``type=`` from here (:func:`number_type`: :data:`positive_int`,
:data:`fraction` ...), so an out-of-range value is a one-line usage error (exit 2) before anything runs.

Every command is an ``argparse`` sub-parser made by :func:`add_command`: its options come from an
``add_arguments(parser)`` function and it runs ``run(args) -> int`` through ``set_defaults(func=run)``.
A noun with several verbs (``data``, ``engine``, ``eval`` ...) gets its verbs from :func:`add_verbs`.
Kept free of heavy imports: building the whole tree must stay instant.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Optional, Tuple, Type

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


def number_type(kind: Type[int] | Type[float], *, minimum: Optional[float] = None, maximum: Optional[float] = None,
                above: bool = False, below: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` for a bounded number: ``kind`` (``int`` or ``float``; finite), at least
    ``minimum`` (greater with ``above``) and at most ``maximum`` (less with ``below``).

    The returned function raises ``argparse.ArgumentTypeError('<text>: expected <what>')`` (e.g.
    ``'-5: expected an integer >= 1'``), which the parser prints as one usage line (exit 2).
    """
    noun = 'an integer' if kind is int else 'a number'
    if minimum is not None and maximum is not None:
        what = f'{noun} in {"(" if above else "["}{minimum:g}, {maximum:g}{")" if below else "]"}'
    elif minimum is not None:
        what = f'{noun} {">" if above else ">="} {minimum:g}'
    else:
        what = f'{noun} {"<" if below else "<="} {maximum:g}'

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r}: expected {what}') from None
        low_ok = minimum is None or (value > minimum if above else value >= minimum)
        high_ok = maximum is None or (value < maximum if below else value <= maximum)
        if not (math.isfinite(value) and low_ok and high_ok):
            raise argparse.ArgumentTypeError(f'{text}: expected {what}')
        return value
    parse.__name__ = what
    return parse


#: ``type=`` of counts and sizes (pixels, iterations, actors): an integer >= 1.
positive_int = number_type(int, minimum=1)
#: ``type=`` of retries and other counts that may be 0.
non_negative_int = number_type(int, minimum=0)
#: ``type=`` of durations, radii and rates: a finite number > 0.
positive_float = number_type(float, minimum=0, above=True)
#: ``type=`` of resources and areas that may be 0.
non_negative_float = number_type(float, minimum=0)
#: ``type=`` of scores and thresholds: a number in [0, 1].
unit_interval = number_type(float, minimum=0, maximum=1)
#: ``type=`` of overlaps: a fraction in [0, 1).
fraction = number_type(float, minimum=0, maximum=1, below=True)
#: ``type=`` of split fractions: a number in (0, 1).
open_fraction = number_type(float, minimum=0, maximum=1, above=True, below=True)
