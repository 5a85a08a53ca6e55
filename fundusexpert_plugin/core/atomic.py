"""Files that appear whole or not at all: :func:`replacing` writes to a temporary name in the target's
folder and renames it over the target (``os.replace``, atomic on one file system), so a reader never
sees, and a kill never leaves, a half-written file under the target's name."""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Tuple, Type


@contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to: ``.<name>.<random>.part`` in the same folder
    (created), hidden and without the target's suffix, so folder listings of images never pick it up.
    When the block ends without an error it is renamed over ``path``; on an error it is removed and
    ``path`` is left as it was. A kill leaves at most the hidden ``.part`` file.

    Example::

        with replacing(out / 'a.png') as tmp:
            tmp.write_bytes(data)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{secrets.token_hex(4)}.part')
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_leftovers(folder: Path | str) -> int:
    """Remove the hidden ``.<name>.<random>.part`` files that killed :func:`replacing` blocks left in
    ``folder`` (not recursive); returns how many. Call it only when no writer is active there (e.g.
    once every shard of a job has finished): a live writer's temporary file would be removed too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for leftover in folder.glob('.*.part'):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


class NewFiles(list):
    """Files a batch writes where none was before (:func:`removed_on_error`); :meth:`add` before writing."""

    def add(self, path: Path | str) -> None:
        """Note ``path`` as new when no file is there yet (call it before writing ``path``)."""
        if not Path(path).exists():
            self.append(Path(path))


@contextmanager
def removed_on_error(errors: Tuple[Type[BaseException], ...]) -> Iterator[NewFiles]:
    """A :class:`NewFiles` list for a batch that writes several files: when the block stops with one of
    ``errors`` (a strict run refusing a bad input), the files it wrote where there were none are
    removed, so a stopped run leaves no orphans; files of earlier runs it rewrote are kept. Works around
    a generator's ``yield`` too (a consumer that stops early is not an error).
    """
    new = NewFiles()
    try:
        yield new
    except errors:
        for path in new:
            path.unlink(missing_ok=True)
        raise
