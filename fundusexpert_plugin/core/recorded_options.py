"""The options an output folder was made with, recorded once and compared on every rerun.

A resumable job (``engine run`` / ``engine ray`` shards, a ``study scaling`` folder) keeps what its
outputs depend on in one JSON file. The first run publishes it atomically (a hard link of a finished
draft, so of several processes starting at once one writes it and every other compares with it). A
later run with any value changed is refused, each change named (old -> new), unless the folder holds
no output yet (a first run that stopped early, e.g. on a mistyped path): then the new values replace
the recorded ones. Resuming with other options would mix outputs made two ways in one folder.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.jsonl import read_text


def check_recorded_options(path: Path | str, options: Mapping[str, object], *, names: Mapping[str, str],
                           has_outputs: bool, advice: str, what: str = 'records',
                           upgrade: Optional[Callable[[Dict[str, object]], Dict[str, object]]] = None) -> Path:
    """Record ``options`` in ``path`` on the first run, or check them against the recorded ones.

    Args:
        path: the JSON file (its folder is created).
        options: JSON-serialisable values; compared after a JSON round trip.
        names: key -> how the message names it (the command-line option); other keys by their key.
        has_outputs: the folder already holds outputs made with the recorded options.
        advice: the end of the refusal, e.g. ``'give a new --out (or the recorded options to resume)'``.
        what: what the folder holds, for the message (``'records'``, ``'runs'``).
        upgrade: rewrites a file of an earlier version in place before comparing (``None``: as read).

    Returns:
        ``path``.

    Raises:
        FundusDataError: ``<path>: the <what> in <folder> were made with other options (<name> <old>
            -> <new>; ...); <advice>``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = json.loads(json.dumps(dict(options)))
    if not path.exists():
        _publish(path, options, replace=False)
    recorded = json.loads(read_text(path))
    if upgrade is not None:
        upgraded = upgrade(dict(recorded))
        if upgraded != recorded:
            recorded = upgraded
            _publish(path, recorded, replace=True)
    differ = [k for k in sorted(set(recorded) | set(options)) if recorded.get(k) != options.get(k)]
    if differ and not has_outputs:
        _publish(path, options, replace=True)  # nothing was made with the recorded options
    elif differ:
        changes = '; '.join(f'{names.get(k, k)} {_shown(recorded, k)} -> {_shown(options, k)}' for k in differ)
        raise FundusDataError(f'{path}: the {what} in {path.parent} were made with other options ({changes}); '
                              f'{advice}')
    return path


def _shown(options: Mapping[str, object], key: str) -> str:
    """An option's value in the refusal message (``not recorded`` when the file lacks it)."""
    return json.dumps(options[key], ensure_ascii=False) if key in options else 'not recorded'


def _publish(path: Path, options: Mapping[str, object], *, replace: bool) -> None:
    """Write ``options`` to ``path`` atomically: a finished draft hard-linked (only if ``path`` is still
    absent; another writer's file wins) or, with ``replace``, renamed over it."""
    draft = path.with_name(f'.{path.name}.{secrets.token_hex(4)}')
    draft.write_text(json.dumps(options, indent=2, sort_keys=True) + '\n', encoding='utf-8')
    try:
        if replace:
            os.replace(draft, path)
        else:
            os.link(draft, path)
    except FileExistsError:  # another process was first: its file is compared
        pass
    finally:
        draft.unlink(missing_ok=True)
