"""Image paths written in annotation and record files -> files on disk, inside the dataset folder.

Rules (one place for the builder, the converters and ``data validate``):

* Backslashes are path separators (``images\\0001.jpg`` as written on Windows).
* URLs (``scheme://...``) are refused: nothing is downloaded.
* A relative path is resolved against the dataset folder (``root``); the file must lie inside it
  after ``..`` and symbolic links are resolved. An absolute path is refused unless it lies inside
  the folder. ``allow_outside_root`` (``--allow-outside-root``) lifts both rules for trusted files.
* A name that is not on disk as written is matched in its other Unicode normal form (NFC/NFD:
  macOS writes ``é`` as ``e`` + combining accent), component by component.
"""
from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Optional

from fundusexpert_plugin.core.errors import FundusDataError

_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def _normal_match(path: Path) -> Path:
    """``path``, or the on-disk file whose components equal it under NFC (first match)."""
    if path.exists():
        return path
    parts = path.parts
    current = Path(parts[0])
    for part in parts[1:]:
        candidate = current / part
        if not candidate.exists() and current.is_dir():
            want = unicodedata.normalize('NFC', part)
            hit = next((e for e in os.listdir(current) if unicodedata.normalize('NFC', e) == want), None)
            candidate = current / hit if hit is not None else candidate
        current = candidate
    return current


def check_folder(folder: Path | str, *, what: str = 'dataset folder') -> Path:
    """``folder`` when it is an existing folder.

    Raises:
        FileNotFoundError: ``'<what>: folder not found: <folder>'`` (or ``'... is a file, not a folder'``).
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f'{what}: ' + (f'{path} is a file, not a folder' if path.exists()
                                                else f'folder not found: {path}'))
    return path


def resolve_image_path(name: object, base: Path | str, *, where: str, field_name: str = 'image',
                       root: Optional[Path | str] = None, allow_outside_root: bool = False,
                       remedy: str = 'give a path inside it') -> Path:
    """The file that ``name`` (as written in an annotation) refers to; see the module rules.

    Args:
        name: the path as written (str).
        base: the folder relative paths are resolved against (the annotation file's folder).
        root: the dataset folder the file must lie in (default ``base``).
        where: ``'<file>:<line>'`` for the message.
        remedy: what the refusal suggests besides ``--allow-outside-root`` (records: ``--image-root``).

    Returns:
        An absolute path (not checked for existence; the image intake reports a missing file).

    Raises:
        FundusDataError: not a non-empty string, a URL, or a path (relative or absolute) that
            lies outside ``root`` (unless ``allow_outside_root``); reason ``'image_path_refused'``.
        FileNotFoundError: ``root`` is not an existing folder (:func:`check_folder`; unless
            ``allow_outside_root``): no path could lie inside it.
    """
    if not isinstance(name, str) or not name.strip():
        raise FundusDataError(f'{where}: {field_name} = {name!r}: expected a non-empty path string',
                              reason='image_path_refused')
    text = name.strip().replace('\\', '/')
    if _URL.match(text):
        raise FundusDataError(f'{where}: {field_name} = {name!r}: URLs are not fetched; download the image '
                              'into the dataset folder and give its relative path', reason='image_path_refused')
    base = Path(os.path.abspath(base))
    root = Path(os.path.abspath(root)) if root is not None else base
    given = Path(text)
    if re.match(r'^[A-Za-z]:/', text) and not allow_outside_root:
        raise FundusDataError(f'{where}: {field_name} = {name!r}: a Windows drive path; give the path relative '
                              f'to {root}', reason='image_path_refused')
    path = _normal_match(given if given.is_absolute() else base / given)
    if not allow_outside_root:
        check_folder(root)
        real_root = Path(os.path.realpath(root))
        real = Path(os.path.realpath(path))
        if real != real_root and real_root not in real.parents:
            kind = 'absolute path' if given.is_absolute() else 'path'
            raise FundusDataError(f'{where}: {field_name} = {name!r}: {kind} outside the dataset folder {root}; '
                                  f'refused ({remedy}, or pass --allow-outside-root for a trusted file)',
                                  reason='image_path_refused')
    return Path(os.path.abspath(path))
