"""Label tables of the public datasets: CSV/TXT and xlsx read into rows with their line numbers.

Every reader in this package reads its spreadsheet through :func:`read_table`, so a bad cell is
always reported as ``<file>:<n>: column '<name>' = <value>: <rule>``, where ``n`` is the line of a
CSV file or the row of an xlsx sheet, counted from 1 as a spreadsheet shows it (the header is 1).

Column names are matched after :func:`normalise` (lower case, only letters and digits), so the
published headers ``'Risk of macular edema '`` (IDRiD, trailing space), ``'X- Coordinate'`` and
``'Fovea_X'`` match ``'risk of macular edema'``, ``'x coordinate'`` and ``'fovea x'``.

xlsx files are read with the standard library (zip + XML, first worksheet), because the plugin
does not depend on openpyxl. Legacy ``.xls`` (BIFF) files are not read: export them to CSV.
"""
from __future__ import annotations

import csv
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple
from xml.etree import ElementTree

from fundusexpert_plugin.core.jsonl import read_text
from fundusexpert_plugin.core.record import FundusDataError

_NS = {'m': 'http://schemas.openxmlformats.org/spreadsheetml/2006/main',
       'r': 'http://schemas.openxmlformats.org/officeDocument/2006/relationships',
       'pr': 'http://schemas.openxmlformats.org/package/2006/relationships'}


def normalise(name: str) -> str:
    """Column-name key: lower case, letters and digits only (``'X- Coordinate'`` -> ``'xcoordinate'``)."""
    return re.sub(r'[^0-9a-z]', '', str(name).lower())


@dataclass
class Table:
    """A spreadsheet: header and data rows, each with its line (CSV) or row (xlsx) number.

    Attributes:
        path: the file read.
        header: column names as written (stripped of surrounding spaces).
        rows: ``(n, cells)`` for every data row that has at least one non-empty cell; ``cells``
            are stripped strings, padded with ``''`` to the header length.
    """

    path: Path
    header: List[str]
    rows: List[Tuple[int, List[str]]] = field(default_factory=list)

    def column(self, *names: str, required: bool = True, prefix: bool = False) -> Optional[int]:
        """Index of the first column whose normalised name equals one of ``names``.

        Args:
            names: accepted spellings, e.g. ``('Image name', 'image')``.
            required: raise when none is found (else return ``None``).
            prefix: also accept a column whose normalised name starts with one of ``names``
                (``'Label(Glaucoma=1)'`` for ``'label'``).

        Raises:
            FundusDataError: a required column is missing; the message lists the columns found.
        """
        keys = [normalise(n) for n in names]
        found = [normalise(h) for h in self.header]
        for key in keys:
            if key in found:
                return found.index(key)
        if prefix:
            for key in keys:
                for i, col in enumerate(found):
                    if col.startswith(key):
                        return i
        if required:
            raise FundusDataError(f'{self.path}:1: missing column {names[0]!r} (accepted spellings: '
                                  f'{list(names)}); columns found: {self.header}')
        return None

    def where(self, n: int) -> str:
        """``'<file>:<n>'`` for messages."""
        return f'{self.path}:{n}'


def read_table(path: Path | str, *, delimiter: Optional[str] = None, header: bool = True) -> Table:
    """Read a CSV/TSV/TXT or xlsx file.

    Args:
        path: ``.csv``/``.tsv``/``.txt`` (text, UTF-8 with or without BOM) or ``.xlsx``.
        delimiter: text files only; ``None`` sniffs ``,``, ``;`` and tab from the first line
            (whitespace-separated files such as DDR's ``train.txt`` use ``delimiter=' '``).
        header: the first row names the columns; if ``False`` the header is ``['0', '1', ...]``
            and every row is data.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: ``.xls`` (export it to CSV), an unreadable xlsx, or an empty file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'label table not found: {path}')
    suffix = path.suffix.lower()
    if suffix == '.xls':
        raise FundusDataError(f'{path}: legacy Excel .xls is not read (no xlrd dependency); export the '
                              'sheet to CSV (e.g. `libreoffice --headless --convert-to csv`) and pass that')
    numbered = list(_xlsx_rows(path)) if suffix == '.xlsx' else list(_text_rows(path, delimiter))
    numbered = [(n, [c.strip() for c in cells]) for n, cells in numbered]
    if not numbered:
        raise FundusDataError(f'{path}: empty table')
    if header:
        head, data = numbered[0][1], numbered[1:]
    else:
        head, data = [str(i) for i in range(max(len(c) for _, c in numbered))], numbered
    width = len(head)
    rows = [(n, cells + [''] * (width - len(cells))) for n, cells in data if any(cells)]
    return Table(path, head, rows)


def _text_rows(path: Path, delimiter: Optional[str]) -> Iterator[Tuple[int, List[str]]]:
    text = read_text(path)  # BOM / UTF-16 aware; bad bytes named by line and offset
    if delimiter == ' ':
        for n, line in enumerate(text.splitlines(), 1):
            yield n, line.split()
        return
    if delimiter is None:
        first = text.splitlines()[0] if text else ''
        delimiter = max((',', ';', '\t'), key=first.count)
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    for cells in reader:
        yield reader.line_num, cells


def _col_index(ref: str) -> int:
    letters = re.match(r'[A-Z]+', ref).group(0)
    index = 0
    for ch in letters:
        index = index * 26 + (ord(ch) - 64)
    return index - 1


def _xlsx_rows(path: Path) -> Iterator[Tuple[int, List[str]]]:
    """Rows of the first worksheet: shared, inline and formula strings, numbers as written."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            shared: List[str] = []
            if 'xl/sharedStrings.xml' in names:
                root = ElementTree.fromstring(zf.read('xl/sharedStrings.xml'))
                shared = [''.join(t.text or '' for t in si.iter(f'{{{_NS["m"]}}}t'))
                          for si in root.findall('m:si', _NS)]
            sheet = _first_sheet(zf, names)
            root = ElementTree.fromstring(zf.read(sheet))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as exc:
        raise FundusDataError(f'{path}: not a readable xlsx workbook ({exc})') from None
    for number, row in enumerate(root.iter(f'{{{_NS["m"]}}}row'), 1):
        cells: List[str] = []
        for c in row.findall('m:c', _NS):
            kind, v = c.get('t'), c.find('m:v', _NS)
            if kind == 'inlineStr':
                value = ''.join(t.text or '' for t in c.iter(f'{{{_NS["m"]}}}t'))
            elif v is None:
                value = ''
            elif kind == 's':
                value = shared[int(v.text)]
            else:
                value = v.text or ''
            idx = _col_index(c.get('r')) if c.get('r') else len(cells)
            cells.extend([''] * (idx + 1 - len(cells)))
            cells[idx] = value
        yield int(row.get('r') or number), cells


def _first_sheet(zf: zipfile.ZipFile, names: Sequence[str]) -> str:
    if 'xl/workbook.xml' in names and 'xl/_rels/workbook.xml.rels' in names:
        book = ElementTree.fromstring(zf.read('xl/workbook.xml'))
        first = book.find('m:sheets/m:sheet', _NS)
        rels = ElementTree.fromstring(zf.read('xl/_rels/workbook.xml.rels'))
        if first is not None:
            rid = first.get(f'{{{_NS["r"]}}}id')
            for rel in rels.findall('pr:Relationship', _NS):
                if rel.get('Id') == rid:
                    target = rel.get('Target').lstrip('/')
                    return target if target.startswith('xl/') else f'xl/{target}'
    return 'xl/worksheets/sheet1.xml'


def parse_number(value: str, *, where: str, column: str) -> float:
    """A finite number from a cell.

    Raises:
        FundusDataError: empty or not a number, naming ``where`` and ``column``.
    """
    try:
        number = float(value)
    except ValueError:
        number = float('nan')
    if not math.isfinite(number):
        raise FundusDataError(f'{where}: column {column!r} = {value!r}: expected a number')
    return number


def parse_grade(value: str, allowed: Sequence[int], *, where: str, column: str, what: str = 'grade') -> int:
    """An integer grade from a cell (``'2'`` or ``'2.0'`` as spreadsheets write it).

    Raises:
        FundusDataError: empty, not an integer, or not in ``allowed``.
    """
    try:
        number = float(value)
    except ValueError:
        number = float('nan')
    if not math.isfinite(number) or number != int(number) or int(number) not in allowed:
        raise FundusDataError(f'{where}: column {column!r} = {value!r}: unknown {what}; expected one of '
                              f'{list(allowed)}')
    return int(number)


#: Accepted spellings of the image column of per-image tables (iChallenge ``imgName``/``ImgName``,
#: IDRiD ``Image name``/``Image No``).
IMAGE_COLUMNS = ('imgName', 'Image name', 'Image No', 'image', 'image_id', 'filename', 'file name', 'name')


@dataclass
class ImageRow:
    """One row of a per-image table (raw cells; parsed when the image's record is built).

    Attributes:
        where: ``'<file>:<n>'``.
        name: the image name as written (with or without extension).
        label: the label cell, ``None`` when the table has no label column.
        fovea_x, fovea_y: fovea cells (pixels, origin top-left), ``None`` without such columns.
        columns: ``(label, x, y)`` column names as written, for messages.
    """

    where: str
    name: str
    label: Optional[str] = None
    fovea_x: Optional[str] = None
    fovea_y: Optional[str] = None
    columns: Tuple[str, str, str] = ('', '', '')

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
                     y_columns: Sequence[str] = ('Fovea_Y', 'Y', 'Y - Coordinate')) -> Dict[str, ImageRow]:
    """A per-image table (image name, optional label, optional fovea point), keyed by image stem.

    Args:
        path: CSV or xlsx with an image column (:data:`IMAGE_COLUMNS`).
        label_columns: label column names, also matched as prefixes (``'Label(Glaucoma=1)'``).
        x_columns, y_columns: fovea coordinate column names.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: no image column, or an image listed twice (both lines named).
    """
    table = read_table(path)
    img = table.column(*IMAGE_COLUMNS)
    lab = table.column(*label_columns, required=False, prefix=True) if label_columns else None
    cx, cy = table.column(*x_columns, required=False), table.column(*y_columns, required=False)
    if (cx is None) != (cy is None):
        raise FundusDataError(f'{table.path}:1: found only one of the fovea columns {x_columns[0]!r}/'
                              f'{y_columns[0]!r}; columns found: {table.header}')
    names = (table.header[lab] if lab is not None else '', table.header[cx] if cx is not None else '',
             table.header[cy] if cy is not None else '')
    out: Dict[str, ImageRow] = {}
    for n, cells in table.rows:
        name = cells[img]
        if not name:
            raise FundusDataError(f'{table.where(n)}: column {table.header[img]!r} is empty; expected an image name')
        key = Path(name).stem
        if key in out:
            raise FundusDataError(f'{table.where(n)}: image {name!r} listed twice (also {out[key].where})')
        out[key] = ImageRow(table.where(n), name, cells[lab] if lab is not None else None,
                            cells[cx] if cx is not None else None, cells[cy] if cy is not None else None, names)
    return out
