"""A record's image through the one image intake: path rule, decode, digest and size check.

Every reader of FundusGen records (``data build``, ``data validate``, the dataset readers' drafts)
goes through these two functions, so a missing, unreadable or missized image reads the same
everywhere: ``'<where>: image: <what>'``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.images import ImageSkip, LoadedImage, load_image
from fundusexpert_plugin.core.paths import resolve_image_path


def load_checked(path: Path, *, where: str, field_name: str = 'image', sha256: Optional[str] = None,
                 max_side: Optional[int] = 256) -> LoadedImage:
    """:func:`~fundusexpert_plugin.core.images.load_image` (upright RGB, at most ``max_side`` pixels on
    the long side; ``None``: full size) with the message prefixed by ``where`` and ``field_name``.

    Raises:
        FundusDataError: ``'<where>: <field_name>: image not found: <path>'``, ``'... unreadable image
            ...'``, a wrong ``sha256`` or a too large image (the intake's ``reason`` kept).
    """
    try:
        return load_image(path, max_side=max_side, sha256=sha256)
    except ImageSkip as exc:
        text = str(exc)
        if exc.reason == 'image_missing':
            text = f'image not found: {path}'
        elif exc.reason == 'image_unreadable':
            text = f'unreadable image {text}'
        raise FundusDataError(f'{where}: {field_name}: {text}', reason=exc.reason) from None


def check_record_image(record, image_dir: Path, *, root: Optional[Path] = None, allow_outside_root: bool = False,
                       max_side: Optional[int] = 256, location: Optional[str] = None) -> Tuple[Path, LoadedImage]:
    """Resolve, read and check a record's image.

    Args:
        record: a :class:`~fundusexpert_plugin.core.record.FundusGenRecord` (``image``, ``width``,
            ``height``, ``sha256``, ``record_id`` are read).
        image_dir: folder relative ``image`` paths are resolved against (the records file's).
        root: the dataset folder the image must lie in (default ``image_dir``), unless
            ``allow_outside_root`` (:func:`~fundusexpert_plugin.core.paths.resolve_image_path`).
        max_side: decode size, as in :func:`load_checked`.
        location: ``'<records file>:<line>'``, prefixed to every message when known.

    Returns:
        ``(path, image)``: the file and its upright pixels.

    Raises:
        FundusDataError: naming the record and its ``image`` / ``width/height`` field: a path outside
            the dataset folder, a missing, unreadable or truncated file, a wrong digest, or a size other
            than the upright image's (reason ``size_mismatch``).
    """
    where = f'{location}: record {record.record_id!r}' if location else f'record {record.record_id!r}'
    path = resolve_image_path(record.image, image_dir, where=where, root=root, allow_outside_root=allow_outside_root,
                              remedy='give the folder that holds the images as --image-root')
    image = load_checked(path, where=where, sha256=record.sha256, max_side=max_side)
    if image.original_size != (record.width, record.height):
        raise FundusDataError(f'{where}: width/height = {record.width}x{record.height} but {path} is '
                              f'{image.original_size[0]}x{image.original_size[1]} (upright)', reason='size_mismatch')
    return path, image
