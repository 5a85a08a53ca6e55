"""Per-image tables of the public datasets (image name, label, fovea point), read through the one
table reader :func:`fundusexpert_plugin.core.tables.read_table`, so a bad cell is reported as
``<file>:<n>: column '<name>' = <value>: <rule>``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from fundusexpert_plugin.core.record import FundusDataError
from fundusexpert_plugin.core.tables import IMAGE_COLUMNS, image_name, parse_number, read_table

@dataclass
class ImageRow:
    """One row of a per-image table (raw cells; parsed when the image's record is built).

    Attributes:
        where: ``'<file>:<n>'``.
        name: the image name as written (with or without extension).
        label: the label cell, ``None`` when the table has no label column.
        fovea_x, fovea_y: fovea cells (pixels, origin top-left), ``None`` without such columns.
        columns: ``(label, x, y)`` column names as written, for messages.
        image_column: the image column's name as written, for messages.
    """

    where: str
    name: str
    label: Optional[str] = None
    fovea_x: Optional[str] = None
    fovea_y: Optional[str] = None
    columns: Tuple[str, str, str] = ('', '', '')
    image_column: str = 'image'

    def fovea(self) -> Optional[Tuple[float, float]]:
        """``(x, y)`` pixels; ``None`` when absent, empty, or ``(0, 0)`` (iChallenge: not visible).

        Raises:
            FundusDataError: a non-numeric coordinate.
        """
        if self.fovea_x is None or (self.fovea_x == '' and self.fovea_y == ''):
            return None
        x = parse_number(self.fovea_x, where=self.where, column=self.columns[1])
        y = parse_number(self.fovea_y or '', where=self.where, column=self.columns[2])
        return None if x == 0 and y == 0 else (x, y)


def read_image_table(path: Path | str, *, label_columns: Sequence[str] = ('label',),
                     x_columns: Sequence[str] = ('Fovea_X', 'X', 'X- Coordinate'),
                     y_columns: Sequence[str] = ('Fovea_Y', 'Y', 'Y - Coordinate'),
                     skip_rows_without_image: bool = False) -> Dict[str, ImageRow]:
    """A per-image table (image name, optional label, optional fovea point), keyed by image stem.

    The header is the first row holding an image column (:data:`IMAGE_COLUMNS`), so title rows
    above it are skipped; image names lose surrounding quote characters (:func:`image_name`).

    Args:
        path: CSV, xlsx or xls with an image column.
        label_columns: label column names, also matched as prefixes (``'Label(Glaucoma=1)'``).
        x_columns, y_columns: fovea coordinate column names.
        skip_rows_without_image: rows with an empty image cell are sub-headers or notes (Drishti-GS1)
            and are skipped; otherwise they are an error.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: no image column, an empty image cell (unless skipped), or an image listed
            twice (both lines named).
    """
    table = read_table(path, header_contains=IMAGE_COLUMNS)
    img = table.column(*IMAGE_COLUMNS, what='image')
    lab = table.column(*label_columns, required=False, prefix=True) if label_columns else None
    cx, cy = table.column(*x_columns, required=False), table.column(*y_columns, required=False)
    if (cx is None) != (cy is None):
        raise FundusDataError(f'{table.path}:1: found only one of the fovea columns {x_columns[0]!r}/'
                              f'{y_columns[0]!r}; columns found: {table.header}')
    names = (table.header[lab] if lab is not None else '', table.header[cx] if cx is not None else '',
             table.header[cy] if cy is not None else '')
    out: Dict[str, ImageRow] = {}
    for n, cells in table.rows:
        name = image_name(cells[img])
        if not name:
            if skip_rows_without_image:
                continue
            raise FundusDataError(f'{table.where(n)}: column {table.header[img]!r} is empty; expected an image name')
        key = Path(name).stem
        if key in out:
            raise FundusDataError(f'{table.where(n)}: image {name!r} listed twice (also {out[key].where})')
        out[key] = ImageRow(table.where(n), name, cells[lab] if lab is not None else None,
                            cells[cx] if cx is not None else None, cells[cy] if cy is not None else None, names,
                            table.header[img])
    return out
