"""The one jsonl helper: read and write JSON Lines with named errors.

Reading rules (every reader of the package goes through :func:`read_jsonl`):

* UTF-8 with or without a byte-order mark; UTF-16 with a BOM is decoded (its BOM names it);
  any other undecodable byte is a :class:`FundusDataError` ``file:line: byte offset N is not UTF-8``.
* CRLF line ends and blank lines are fine; line numbers count every physical line from 1.
* A file that is one JSON array (``[`` first) is refused by name: it is JSON, not JSON Lines.
* Every line must be a JSON object; a bad line raises ``file:line: ...`` unless ``lenient``, when it is
  skipped, logged and reported through ``on_skip``.

Writing: UTF-8, ``ensure_ascii=False``, one object per line, ``\\n`` line ends.
"""
from __future__ import annotations

import codecs
import errno
import json
import logging
import math
import os
from pathlib import Path
from typing import Callable, IO, Iterable, Iterator, List, Optional, Tuple

from fundusexpert_plugin.core.errors import FundusDataError

logger = logging.getLogger(__name__)


def is_json_number(value) -> bool:
    """A finite JSON number as :mod:`json` reads it: ``int`` or ``float``, not ``bool`` (a Python
    subclass of int), not NaN or infinite (which ``json`` accepts as an extension). Strings such as
    ``"100"`` are not numbers."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

SkipFn = Callable[[str, str], None]  # (message, reason)


def decode_text(raw: bytes, path: os.PathLike | str) -> str:
    """Bytes of a text file -> str by the rules above (BOM-aware UTF-8 / UTF-16).

    Raises:
        FundusDataError: ``path:line: byte offset N is not UTF-8`` (N counted from the file start).
    """
    if raw.startswith(codecs.BOM_UTF16_LE) or raw.startswith(codecs.BOM_UTF16_BE):
        try:
            return raw.decode('utf-16')
        except UnicodeDecodeError as exc:
            raise FundusDataError(f'{path}: not valid UTF-16 at byte offset {exc.start}') from None
    try:
        return raw.decode('utf-8-sig')
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if raw.startswith(codecs.BOM_UTF8) else 0)
        line = raw[:offset].count(b'\n') + 1
        raise FundusDataError(f'{path}:{line}: byte offset {offset} is not UTF-8') from None


def read_text(path: os.PathLike | str) -> str:
    """A whole text file by the rules of :func:`decode_text`.

    Raises:
        FileNotFoundError: no such file.
        FundusDataError: undecodable bytes, or ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise FundusDataError(f'{path}: is a folder, expected a file')
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    return decode_text(path.read_bytes(), path)


def read_jsonl(path: os.PathLike | str, *, lenient: bool = False,
               on_skip: Optional[SkipFn] = None) -> Iterator[Tuple[int, dict]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSON Lines file.

    Args:
        path: the file.
        lenient: skip a line that is not a JSON object instead of raising: reported to ``on_skip``,
            or logged as a warning when there is none (each skip is reported once).
        on_skip: ``on_skip(message, reason)`` for each skipped line; reason is ``'invalid_json'`` or
            ``'not_an_object'``.

    Raises:
        FileNotFoundError: no such file.
        FundusDataError: undecodable bytes or a JSON array (always), or a bad line (unless ``lenient``).
    """
    text = read_text(path)
    if text.lstrip().startswith('['):
        raise FundusDataError(f'{path}:1: is a JSON array; expected JSON Lines (one object per line)')
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f'{path}:{line_no}'
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            msg, reason = f'{where}: not valid JSON ({exc.msg.removesuffix(" at")} at column {exc.colno})', 'invalid_json'
        else:
            if isinstance(obj, dict):
                yield line_no, obj
                continue
            msg, reason = f'{where}: expected a JSON object, got {type(obj).__name__}', 'not_an_object'
        if not lenient:
            raise FundusDataError(msg)
        if on_skip is None:
            logger.warning('skipped: %s', msg)
        else:
            on_skip(msg, reason)


def load_jsonl(path: os.PathLike | str) -> List[dict]:
    """Every object of a JSON Lines file (strict :func:`read_jsonl` without line numbers)."""
    return [obj for _, obj in read_jsonl(path)]


def dumps(obj) -> str:
    """One JSON line (no trailing newline), UTF-8 text kept as is."""
    return json.dumps(obj, ensure_ascii=False)


def append_jsonl(fh: IO[str], obj, *, fsync: bool = False) -> None:
    """Write one object as a line to an open text file; ``fsync`` makes it durable (resumable runs)."""
    fh.write(dumps(obj) + '\n')
    if fsync:
        fh.flush()
        os.fsync(fh.fileno())


def write_jsonl(path: os.PathLike | str, rows: Iterable) -> Path:
    """Write ``rows`` (JSON-serialisable objects) to ``path``, creating its folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open('w', encoding='utf-8', newline='\n') as fh:
        for row in rows:
            append_jsonl(fh, row)
    return path
