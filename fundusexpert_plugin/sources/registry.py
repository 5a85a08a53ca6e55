"""The one registry of annotation formats: a decorator per reader, one call to read any of them.

Every reader registered here returns FundusGen records (:class:`~fundusexpert_plugin.core.record.
FundusGenRecord`) and shares the rules of :mod:`.base` (per-box lenient skips counted by reason,
the one image intake, paths kept inside the dataset folder). The detector's training, the
converters and ``data validate`` all read through :func:`read_annotations`.

A reader is registered with::

    @register('box-csv', help='...', sniff=lambda p: p.suffix == '.csv' and ...)
    def read_box_csv(path, images=None, *, lenient=False, log=None, **options): ...

``path`` is the annotation file (or the labels folder for YOLO); ``images`` the dataset folder the
image paths are relative to (default: the annotation file's folder).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.record import FundusGenRecord


@dataclass(frozen=True)
class Reader:
    """One registered format.

    Attributes:
        name: the format name (``yolo``, ``coco``, ``codras``, ``box-csv``, ``csv``, ``masks``, ``records``).
        read: ``read(path, images, *, lenient, log, **options) -> Iterator[FundusGenRecord]``.
        help: one line.
        sniff: ``sniff(path) -> bool``: does ``path`` look like this format (for ``data validate``).
    """

    name: str
    read: Callable[..., Iterator[FundusGenRecord]]
    help: str
    sniff: Callable[[Path], bool]


READERS: Dict[str, Reader] = {}

#: formats whose annotation files name each image by path; their readers take ``allow_outside_root``
#: (accept absolute paths and paths that leave the dataset folder). YOLO and masks pair files by name.
PATH_FORMATS = ('records', 'codras', 'coco', 'box-csv', 'csv')


def head_has(path: Path, suffixes: tuple, *needles: bytes, every: bool = False, size: int = 4096) -> bool:
    """Sniffer helper: ``path`` is a file with one of ``suffixes`` whose first ``size`` bytes hold
    any (or, with ``every``, all) of ``needles``."""
    if path.suffix.lower() not in suffixes or not path.is_file():
        return False
    with open(path, 'rb') as fh:
        head = fh.read(size)
    return (all if every else any)(n in head for n in needles)
_MODULES = ('fundusexpert_plugin.sources.codras', 'fundusexpert_plugin.sources.box_csv',
            'fundusexpert_plugin.sources.generic', 'fundusexpert_plugin.sources.records')


def register(name: str, *, help: str, sniff: Callable[[Path], bool] = lambda p: False,
             adapter: Optional[Callable] = None):
    """Decorator: register ``fn`` as the reader of ``name`` (``adapter(fn)`` maps the uniform call
    ``(path, images, **kw)`` onto a reader with another argument order)."""
    def wrap(fn):
        READERS[name] = Reader(name, adapter(fn) if adapter else fn, help, sniff)
        return fn
    return wrap


def formats() -> List[str]:
    """Names of every registered format."""
    for module in _MODULES:
        importlib.import_module(module)
    return sorted(READERS)


def detect_format(path: Path | str) -> str:
    """The first registered format whose sniffer accepts ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: no format recognises it (the formats are listed).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'annotations not found: {path}')
    names = formats()
    for name in ('records', 'codras', 'coco', 'box-csv', 'csv', 'yolo', 'masks'):
        if name in READERS and READERS[name].sniff(path):
            return name
    raise FundusDataError(f'{path}: not a recognised annotation layout; pass --format (one of {names})')


def read_annotations(path: Path | str, fmt: Optional[str] = None, images: Optional[Path | str] = None,
                     **options) -> Iterator[FundusGenRecord]:
    """Records of any registered format (``fmt`` ``None``: :func:`detect_format`).

    Each record's ``image`` is the photo's **absolute** path (``data convert`` makes it relative to
    its ``--out`` when it writes). To build from such records pass ``image_root=`` (the dataset
    folder) or ``allow_outside_root=True`` to :func:`fundusexpert_plugin.build.build_fundusgen`; a
    records file written from them reads back with ``read_records``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: unknown format, or what the reader raises.
    """
    names = formats()
    fmt = fmt or detect_format(path)
    if fmt not in READERS:
        raise FundusDataError(f'unknown annotation format {fmt!r}; expected one of {names}')
    return READERS[fmt].read(Path(path), images, **options)
