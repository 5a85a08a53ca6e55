"""The ``fundusexpert`` command: one argparse tree, commands grouped by noun, one error policy.

Error policy (:func:`main`): bad input or usage (a :class:`~fundusexpert_plugin.core.errors.FundusDataError`
or other ``ValueError``, a missing or unreadable file, a missing optional dependency, an argparse usage
error) prints one line ``fundusexpert: error: <message>`` on stderr and exits 2; ``-v`` adds the
traceback and debug logging. Exit 1 means a command had nothing to write, or for ``data validate``
that something would be skipped (it says why). Ctrl-C prints one line and exits 130 (``-v``: the
traceback). Anything else is a bug and raises.

Building the tree imports no model code (no torch, ms-swift or mmdet): every command imports its
library code when it runs, so ``fundusexpert swift plugin-path`` is instant.
"""
from __future__ import annotations

import argparse
import logging
import warnings
import sys
import traceback
from typing import Iterator, List, Optional, Sequence, Tuple

from fundusexpert_plugin.cli import data, demo, detector, engine, study, swift, tiny_model
from fundusexpert_plugin.cli import eval as eval_cli
from fundusexpert_plugin.cli.common import Parser, add_command, add_verbs

DESCRIPTION = ('FundusExpert for ms-swift: public fundus datasets and photographs -> FundusGen records ->\n'
               'ms-swift task files; detector training; Fundus-Engine; evaluation.')

#: old spelling -> the command it stands for (every spelling of earlier releases keeps working)
ALIASES = {
    'build': ('data', 'build'),
    'convert': ('data', 'convert'),
    'train-detector': ('detector', 'train'),
    'mcq-rows': ('eval', 'mcq-rows'),
    'mcq-export': ('eval', 'mcq-export'),
    'plugin-path': ('swift', 'plugin-path'),
    'system-prompt': ('swift', 'system-prompt'),
}
#: ``eval`` followed by an option (``eval --result ...``) is ``eval score``
DEFAULT_VERBS = {'eval': 'score'}

#: what the error policy treats as bad input or usage (FundusDataError is a ValueError)
USER_ERRORS = (ValueError, OSError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; every leaf has ``func`` (its ``run(args) -> int``)."""
    parser = Parser(prog='fundusexpert', description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging; tracebacks for errors')
    nouns = add_verbs(parser, 'command')
    add_command(nouns, 'demo', 'sample -> FundusGen -> swift sft -> swift infer -> scored summary, on CPU',
                demo.add_arguments, demo.run)
    add_command(nouns, 'data', 'convert datasets to FundusGen records; build task files', data.add_arguments)
    add_command(nouns, 'engine', 'Fundus-Engine: photographs -> FundusGen records (local, sharded or Ray)',
                engine.add_arguments)
    add_command(nouns, 'detector', 'train an MMDetection fundus detector', detector.add_arguments)
    add_command(nouns, 'eval', 'score swift infer results; MCQ benchmark TSV in and out', eval_cli.add_arguments)
    add_command(nouns, 'swift', 'what to pass to ms-swift: plugin file, system prompt', swift.add_arguments)
    add_command(nouns, 'study', 'studies over many swift sft runs: the data scaling law', _study_verbs)
    add_command(nouns, 'make-tiny-model', 'build a tiny random Qwen2.5-VL or InternVL offline (tests, demo)',
                tiny_model.add_arguments, tiny_model.run)
    _add_verbose(parser)
    parser.epilog = _epilog(parser)
    return parser


def _study_verbs(parser: argparse.ArgumentParser) -> None:
    verbs = add_verbs(parser, 'study_command')
    add_command(verbs, 'scaling', 'nested FundusGen subsets -> one swift sft each -> power-law fit and plot',
                study.add_arguments, study.run)


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _choice_metavar(parser: argparse.ArgumentParser) -> Optional[str]:
    """``'FORMAT'`` for a command whose sub-parsers are choices of an argument, not commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and action.metavar != 'COMMAND':
            return action.metavar
    return None


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v`` also after a command name (``fundusexpert data build ... -v``)."""
    for _, sub in _subcommands(parser):
        sub.add_argument('-v', '--verbose', action='store_true', default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        _add_verbose(sub)


def commands(parser: argparse.ArgumentParser, prefix: Tuple[str, ...] = ()) -> List[Tuple[str, str]]:
    """``[(full command, one-line summary)]`` of every leaf command of the tree, in registration order."""
    out = []
    for name, sub in _subcommands(parser):
        metavar = _choice_metavar(sub)
        below = [] if metavar else commands(sub, prefix + (name,))
        out += below or [(' '.join(prefix + (name,) + ((metavar,) if metavar else ())), sub.description or '')]
    return out


def _epilog(parser: argparse.ArgumentParser) -> str:
    listing = commands(parser)
    width = max(len(name) for name, _ in listing) + 2
    lines = ['every command (fundusexpert COMMAND --help for its options):']
    lines += [f'  {name.ljust(width)}{summary}' for name, summary in listing]
    lines += ['', 'earlier spellings, still accepted:']
    aliases = [(old, ' '.join(new)) for old, new in ALIASES.items()]
    aliases += [(f'{noun} --OPTION ...', f'{noun} {verb} --OPTION ...') for noun, verb in DEFAULT_VERBS.items()]
    width = max(len(old) for old, _ in aliases) + 2
    lines += [f'  {old.ljust(width)}= {new}' for old, new in aliases]
    lines += ['', 'exit status: 0 done, 1 nothing to write (data validate: something would be skipped), '
              '2 bad input or usage (one line on stderr; -v for the traceback)']
    return '\n'.join(lines)


def expand_aliases(argv: Sequence[str]) -> List[str]:
    """``argv`` with an earlier spelling (:data:`ALIASES`, :data:`DEFAULT_VERBS`) replaced by its command."""
    argv = list(argv)
    i = next((k for k, token in enumerate(argv) if not token.startswith('-')), len(argv))
    if i == len(argv):
        return argv
    word = argv[i]
    if word in ALIASES:
        return argv[:i] + list(ALIASES[word]) + argv[i + 1:]
    nxt = next((token for token in argv[i + 1:] if token not in ('-v', '--verbose')), '')
    if word in DEFAULT_VERBS and nxt.startswith('-') and nxt not in ('-h', '--help'):
        return argv[:i + 1] + [DEFAULT_VERBS[word]] + argv[i + 1:]
    return argv


def parse_args(argv: Sequence[str], parser: Optional[argparse.ArgumentParser] = None) -> argparse.Namespace:
    """Parse a command line (earlier spellings included).

    Raises:
        SystemExit: 0 after ``--help``; 2 on a usage error (one line already printed).
    """
    return (parser or build_parser()).parse_args(expand_aliases(argv))


def error_message(exc: BaseException) -> str:
    """One line for the error policy: an OS error as ``<file>: <reason>``, newlines folded."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f'{exc.filename}: {exc.strerror}'
    else:
        text = str(exc) or type(exc).__name__
    return ' | '.join(line.strip() for line in text.splitlines() if line.strip())


def _quiet_pydicom(record: logging.LogRecord) -> bool:
    """Handler filter without ``-v``: drop pydicom's log records below CRITICAL (e.g. the traceback it logs
    for undecodable pixel data, which the intake reports as one line naming the file and attribute)."""
    return record.levelno >= logging.CRITICAL or not (record.name == 'pydicom' or record.name.startswith('pydicom.'))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``fundusexpert`` console script; returns the exit status (see the module doc)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(levelname)s %(name)s: %(message)s')
    if not args.verbose:  # pydicom logs a traceback for undecodable pixel data that the intake names in one line
        for handler in logging.getLogger().handlers:  # a handler filter also sees pydicom's child loggers
            if _quiet_pydicom not in handler.filters:
                handler.addFilter(_quiet_pydicom)
        warnings.filterwarnings('ignore', module=r'pydicom(\.|$)')
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.verbose:
            traceback.print_exc()
        print('fundusexpert: interrupted; what was written so far is kept (engine run and engine ray resume '
              'when the same command is run again)', file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if args.verbose:
            traceback.print_exc()
        print(f'fundusexpert: error: {error_message(exc)}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
