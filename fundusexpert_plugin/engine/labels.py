"""Image-level labels of an engine job (``engine run --image-labels``): a label table -> each photograph's
``image_labels``.

The table is read by the reader ``data convert csv`` uses
(:func:`fundusexpert_plugin.core.tables.read_label_table`: CSV, xlsx or xls; the image column under any
of its spellings, ``image``, ``filename``, ``Image name`` ...) and every label cell is checked by
:func:`~fundusexpert_plugin.core.tables.parse_label` when the table is read, before any photograph is
processed, so a bad cell stops the job as ``<file>:<n>: column '<name>' = <value>: <rule>``.

Columns read: the grade scales (``dr_grade``, ``dme_grade``, ``image_quality``) and ``diagnosis``
(:data:`ENGINE_LABEL_COLUMNS`); any other column (``laterality``, ``record_id``, ``sha256`` of the
converter's layout, or an unknown name) is named in a warning and ignored: the engine takes
laterality from the optic disc or the DICOM header and record ids from the photographs' paths.

Matching: a row names a photograph by its record id (its path relative to ``--images`` without
suffix; for a list or one photograph, its file stem: :func:`.batch.image_key`), with or without the
photograph's suffix, or by the photograph's absolute path. Backslashes are separators, ``./`` and
``..`` are resolved lexically, and names are compared in Unicode NFC, so a name written in NFD
(macOS) matches the NFC file and the other way round. A row with another image suffix than the
photograph's (``IDRiD_009.png`` for ``IDRiD_009.jpg``) does not match it, as ``data convert csv``,
which opens the file the row names, would not. Matching is case-sensitive. Two rows naming one
photograph (``IDRiD_001`` and ``IDRiD_001.jpg``) are refused, both lines named. DICOM photographs,
whose record ids are salted hashes, are matched by their absolute path only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.images import DICOM_SUFFIXES, IMAGE_SUFFIXES
from fundusexpert_plugin.core.tables import parse_label, read_label_table

logger = logging.getLogger(__name__)

#: The label columns the engine reads (image-level labels of the record; not ``laterality``).
ENGINE_LABEL_COLUMNS = (*vocab.GRADE_SCALES, 'diagnosis')


def _nfc(text: str) -> str:
    return unicodedata.normalize('NFC', text)


def _split_suffix(name: str) -> Tuple[str, Optional[str]]:
    """``'a/b.jpg'`` -> ``('a/b', '.jpg')``; a name without an image suffix -> ``(name, None)``."""
    suffix = PurePosixPath(name).suffix
    if suffix and suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES:
        return name[:-len(suffix)], suffix
    return name, None


def row_key(cell: str) -> Tuple[str, Optional[str]]:
    """``(key, suffix)`` of an image cell: NFC, ``/``-separated, lexically normalised, without its image
    suffix (``'sub\\\\0001.JPG'`` -> ``('sub/0001', '.JPG')``; absolute paths stay absolute)."""
    text = _nfc(cell.strip().replace('\\', '/'))
    return _split_suffix(PurePosixPath(os.path.normpath(text)).as_posix())


@dataclass(frozen=True)
class LabelRow:
    """One row of an image-labels table.

    Attributes:
        where: ``'<file>:<n>'``.
        image: the image cell as written.
        key: :func:`row_key` of the cell (NFC path without suffix). suffix: its image suffix or ``None``.
        labels: the record's ``image_labels`` (``{'dr_grade': '2', 'diagnosis': 'glaucoma'}``).
    """

    where: str
    image: str
    key: str
    suffix: Optional[str]
    labels: Dict[str, str] = field(default_factory=dict)

    def fits(self, path: Path | str) -> bool:
        """Whether the row's suffix (if any) is the photograph's."""
        return self.suffix is None or self.suffix == Path(path).suffix


class ImageLabels:
    """The rows of an image-labels table, looked up per photograph (module docstring for the rules).

    Args:
        rows: the table's rows (keys unique).
        path: the table (``None`` for labels given in code).
        ignored: names of the table's columns that are not read.
    """

    def __init__(self, rows: Sequence[LabelRow] = (), *, path: Optional[Path] = None, ignored: Sequence[str] = ()):
        self.path, self.ignored = path, list(ignored)
        self.rows: Dict[str, LabelRow] = {row.key: row for row in rows}

    @classmethod
    def from_ids(cls, labels: Mapping[str, Mapping[str, str]]) -> 'ImageLabels':
        """Labels given in code: record id -> ``image_labels`` (any suffix of the photograph matches)."""
        return cls([LabelRow(f'record {rid!r}', rid, _nfc(rid), None, dict(value)) for rid, value in labels.items()])

    def __len__(self) -> int:
        return len(self.rows)

    def digest(self) -> str:
        """Hex SHA-256 of what the table gives the records (every row's name and labels, in table
        order): an edited label changes it; a column that is not read, or a re-saved file, does not."""
        rows = [[row.key, row.suffix, sorted(row.labels.items())] for row in self.rows.values()]
        return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode('utf-8')).hexdigest()

    def matches(self, record_id: str, path: Path | str) -> List[LabelRow]:
        """The rows that name the photograph ``path`` whose record id is ``record_id`` (by its id or by
        its absolute path; at most one in a consistent table)."""
        absolute = _split_suffix(PurePosixPath(_nfc(os.path.abspath(path))).as_posix())[0]
        found = [self.rows.get(key) for key in dict.fromkeys((_nfc(record_id), absolute))]
        return [row for row in found if row is not None and row.fits(path)]

    def for_photo(self, record_id: str, path: Path | str) -> Dict[str, str]:
        """The ``image_labels`` of one photograph (``{}`` when no row names it)."""
        found = self.matches(record_id, path)
        return dict(found[0].labels) if found else {}

    def check_job(self, record_ids: Sequence[str], paths: Sequence[Path | str]) -> List[LabelRow]:
        """Match the rows against a job's photographs.

        Returns:
            The rows that name no photograph of the job, in table order.

        Raises:
            FundusDataError: two rows name one photograph (both lines named).
        """
        used = set()
        for rid, path in zip(record_ids, paths):
            found = self.matches(rid, path)
            if len(found) > 1:
                a, b = found
                raise FundusDataError(f'{b.where}: image {b.image!r} names the photograph {str(path)!r} that '
                                      f'{a.where} ({a.image!r}) names already; one row per photograph')
            used.update(row.key for row in found)
        return [row for row in self.rows.values() if row.key not in used]


def read_image_labels(path: Path | str) -> ImageLabels:
    """Read and check a whole image-labels table (module docstring).

    Args:
        path: CSV/TSV/TXT (UTF-8 with or without BOM, UTF-16 with BOM), xlsx or xls.

    Returns:
        The :class:`ImageLabels`; columns not read are in ``ignored``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: no image column, undecodable bytes, an unreadable workbook, an empty image
            cell, a bad label cell (``<file>:<n>: column '<name>' = <value>: ...``), or two rows
            naming one record id (both lines named).
    """
    table = read_label_table(path, ENGINE_LABEL_COLUMNS)
    header = table.table.header[table.image]
    rows: Dict[str, LabelRow] = {}
    for where, image, cells in table.rows():
        if not image.strip():
            raise FundusDataError(f'{where}: column {header!r} is empty; expected the photograph\'s path',
                                  reason='image_path_refused')
        labels = {name: parse_label(name, cells[name], where=where, header=table.header(name))
                  for name in ENGINE_LABEL_COLUMNS if name in cells}
        key, suffix = row_key(image)
        if key in rows:
            first = rows[key]
            raise FundusDataError(f'{where}: image {image!r} gives the record id {key!r} of {first.where} '
                                  f'({first.image!r}) again; one row per photograph', reason='duplicate_id')
        rows[key] = LabelRow(where, image, key, suffix, labels)
    return ImageLabels(list(rows.values()), path=table.path, ignored=table.ignored())


def warn_labels(labels: ImageLabels, record_ids: Sequence[str], paths: Sequence[Path | str]) -> List[str]:
    """Check ``labels`` against a job (:meth:`ImageLabels.check_job`) and log one warning naming the
    columns not read, and one naming the rows that match no photograph (count and the first five).

    Returns:
        The image cells of the unmatched rows, in table order.

    Raises:
        FundusDataError: two rows name one photograph.
    """
    source = labels.path
    if labels.ignored:
        logger.warning('%s: column(s) %s not read by the engine (it reads the image and %s; laterality comes '
                       'from the optic disc or the DICOM header, record ids from the paths); ignored', source,
                       labels.ignored, ', '.join(ENGINE_LABEL_COLUMNS))
    unmatched = [row.image for row in labels.check_job(record_ids, paths)]
    if unmatched:
        logger.warning('%s: %d image-label row(s) match no photograph of the job (ids are case-sensitive paths '
                       'relative to --images, file names for a list; a suffix must be the photograph\'s): %s%s',
                       source, len(unmatched), ', '.join(unmatched[:5]), ' ...' if len(unmatched) > 5 else '')
    return unmatched
