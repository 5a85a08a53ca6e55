"""Label tables: CSV/TXT, xlsx and legacy xls read into rows with their line numbers.

Every spreadsheet the library reads (the dataset readers of :mod:`fundusexpert_plugin.sources`,
``data convert csv``, ``engine run --image-labels``) goes through :func:`read_table`, so a bad cell is
always reported as ``<file>:<n>: column '<name>' = <value>: <rule>``, where ``n`` is the line of a
CSV file or the row of an xlsx sheet, counted from 1 as a spreadsheet shows it (the header is 1).

Column names are matched after :func:`normalise` (lower case, only letters and digits), so the
published headers ``'Risk of macular edema '`` (IDRiD, trailing space), ``'X- Coordinate'`` and
``'Fovea_X'`` match ``'risk of macular edema'``, ``'x coordinate'`` and ``'fovea x'``.

Spreadsheets: ``.xlsx`` through openpyxl, legacy ``.xls`` (BIFF, e.g. Messidor's
``Annotation_Base11.xls``, sheet ``Feuil1``) through xlrd; the first worksheet is read. Cells become
text as a spreadsheet shows them: integral numbers without a decimal point (``2``, not ``2.0``),
others as Python writes the float (``1182.5``), dates in ISO form, empty cells ``''``.

The header is row 1 unless ``header_contains`` names columns to look for: then it is the first row
with such a cell (Drishti-GS1's diagnosis sheet has title rows above its header).

Image-level label tables (``data convert csv``, ``engine run --image-labels``) are read by
:func:`read_label_table` (an image column, :data:`IMAGE_COLUMNS`, and label columns,
:data:`LABEL_COLUMNS`), and every label cell is checked by :func:`parse_label`, so both commands
accept the same files and refuse a bad cell with the same message.
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.jsonl import read_text


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
        header_row: line/row number of the header (1 unless found by content).
    """

    path: Path
    header: List[str]
    rows: List[Tuple[int, List[str]]] = field(default_factory=list)
    header_row: int = 1

    def column(self, *names: str, required: bool = True, prefix: bool = False,
               what: Optional[str] = None) -> Optional[int]:
        """Index of the first column whose normalised name equals one of ``names``.

        Args:
            names: accepted spellings, the expected one first, e.g. ``('image', 'Image name')``.
            required: raise when none is found (else return ``None``).
            prefix: also accept a column whose normalised name starts with one of ``names``
                (``'Label(Glaucoma=1)'`` for ``'label'``).
            what: what the column holds (``'image'``), for the message.

        Raises:
            FundusDataError: a required column is missing: ``'<file>:<row>: missing column 'x1'; columns
                found: [...]'``, or with ``what``: ``'<file>:<row>: no image column; expected 'image'
                (also accepted: [...]); columns found: [...]'``.
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
            others = [n for n in dict.fromkeys(names) if n != names[0]]
            if what:
                head = f'no {what} column; expected {names[0]!r}' + (f' (also accepted: {others})' if others else '')
            else:
                head = f'missing column {names[0]!r}' + (f' (also accepted: {others})' if others else '')
            raise FundusDataError(f'{self.path}:{self.header_row}: {head}; columns found: {self.header}')
        return None

    def where(self, n: int) -> str:
        """``'<file>:<n>'`` for messages."""
        return f'{self.path}:{n}'


def header_keys(path: Path) -> set:
    """:func:`normalise` d names of the first row of a label table: the first line of a ``.csv``/``.tsv``
    text file (``,``, ``;`` or tab separated) or the first row of the first sheet of an ``.xlsx``/``.xls``
    workbook, as :func:`read_table` reads them; empty set for another suffix or a missing file. For
    format sniffers (a text file: one line is read).

    Raises:
        FundusDataError: an unreadable workbook.
    """
    suffix = path.suffix.lower()
    if suffix not in ('.csv', '.tsv', '.xlsx', '.xls') or not path.is_file():
        return set()
    if suffix in ('.xlsx', '.xls'):
        with contextlib.closing(_xlsx_rows(path) if suffix == '.xlsx' else _xls_rows(path)) as rows:
            first = next(rows, (1, []))[1]
        return {normalise(c) for c in first if c}
    with open(path, 'rb') as fh:
        first = fh.readline().decode('utf-8', 'replace').lstrip('\ufeff')
    return {normalise(c) for c in first.replace(';', ',').replace('\t', ',').split(',')}


def read_table(path: Path | str, *, delimiter: Optional[str] = None, header: bool = True,
               header_contains: Sequence[str] = ()) -> Table:
    """Read a CSV/TSV/TXT, xlsx or xls file.

    Args:
        path: ``.csv``/``.tsv``/``.txt`` (text, UTF-8 with or without BOM), ``.xlsx`` or ``.xls``.
        delimiter: text files only; ``None`` sniffs ``,``, ``;`` and tab from the first line
            (whitespace-separated files such as DDR's ``train.txt`` use ``delimiter=' '``).
        header: the first row names the columns; if ``False`` the header is ``['0', '1', ...]``
            and every row is data.
        header_contains: find the header by content: the first row with a cell whose
            :func:`normalise` d text equals one of these names; rows above it are skipped. When no
            row has one, row 1 is the header (and :meth:`Table.column` names what is missing).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: an unreadable workbook or an empty file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'label table not found: {path}')
    suffix = path.suffix.lower()
    if suffix == '.xlsx':
        numbered = list(_xlsx_rows(path))
    elif suffix == '.xls':
        numbered = list(_xls_rows(path))
    else:
        numbered = list(_text_rows(path, delimiter))
    numbered = [(n, [c.strip() for c in cells]) for n, cells in numbered]
    if not numbered:
        raise FundusDataError(f'{path}: empty table')
    if header_contains:
        keys = {normalise(n) for n in header_contains}
        start = next((i for i, (_, cells) in enumerate(numbered) if keys & {normalise(c) for c in cells}), 0)
        numbered = numbered[start:]
    if header:
        head, data = numbered[0][1], numbered[1:]
    else:
        head, data = [str(i) for i in range(max(len(c) for _, c in numbered))], numbered
    width = len(head)
    rows = [(n, cells + [''] * (width - len(cells))) for n, cells in data if any(cells)]
    return Table(path, head, rows, header_row=numbered[0][0] if header else 1)


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


def cell_text(value) -> str:
    """A spreadsheet cell as text: ``None`` -> ``''``, integral numbers without ``.0``, dates ISO."""
    if value is None:
        return ''
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def _xlsx_rows(path: Path) -> Iterator[Tuple[int, List[str]]]:
    """Rows of the first worksheet (openpyxl), numbered as the spreadsheet shows them."""
    import zipfile

    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=False, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise FundusDataError(f'{path}: not a readable xlsx workbook ({exc})') from None
    try:
        sheet = book.worksheets[0]
        for number, row in enumerate(sheet.iter_rows(min_row=1, values_only=True), 1):
            yield number, [cell_text(v) for v in row]
    finally:
        book.close()


def _xls_rows(path: Path) -> Iterator[Tuple[int, List[str]]]:
    """Rows of the first sheet of a legacy Excel file (xlrd), numbered from 1."""
    import xlrd

    try:
        book = xlrd.open_workbook(str(path))
    except (xlrd.XLRDError, OSError, ValueError, AssertionError) as exc:
        raise FundusDataError(f'{path}: not a readable xls workbook ({exc})') from None
    sheet = book.sheet_by_index(0)
    for r in range(sheet.nrows):
        cells = []
        for c in range(sheet.ncols):
            cell = sheet.cell(r, c)
            if cell.ctype == xlrd.XL_CELL_DATE:
                cells.append(xlrd.xldate_as_datetime(cell.value, book.datemode).isoformat())
            elif cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
                cells.append('')
            else:
                cells.append(cell_text(cell.value))
        yield r + 1, cells


def parse_number(value: str, *, where: str, column: str) -> float:
    """A finite number from a cell.

    Raises:
        FundusDataError: empty or not a number, naming ``where`` and ``column`` (reason ``not_a_number``).
    """
    try:
        number = float(value)
    except ValueError:
        number = float('nan')
    if not math.isfinite(number):
        raise FundusDataError(f'{where}: column {column!r} = {value!r}: expected a number', reason='not_a_number')
    return number


def parse_grade(value: str, allowed: Sequence[int], *, where: str, column: str, what: str = 'grade') -> int:
    """An integer grade from a cell (``'2'`` or ``'2.0'`` as spreadsheets write it).

    Raises:
        FundusDataError: empty, not an integer, or not in ``allowed`` (reason ``unknown_<what>``).
    """
    try:
        number = float(value)
    except ValueError:
        number = float('nan')
    if not math.isfinite(number) or number != int(number) or int(number) not in allowed:
        raise FundusDataError(f'{where}: column {column!r} = {value!r}: unknown {what}; expected one of '
                              f'{list(allowed)}', reason=f'unknown_{what}')
    return int(number)


#: Accepted spellings of the image column of per-image tables (iChallenge ``imgName``/``ImgName``,
#: IDRiD ``Image name``/``Image No``).
IMAGE_COLUMNS = ('imgName', 'Image name', 'Image No', 'image', 'image_id', 'filename', 'file name', 'name',
                 'Drishti-GS File')
#: quote characters some published sheets put around image names (Drishti-GS1: ``'drishtiGS_002'``)
_QUOTES = '\'"`\u2018\u2019\u201c\u201d'


def image_name(cell: str) -> str:
    """An image name cell without surrounding spaces and quote characters."""
    return cell.strip().strip(_QUOTES).strip()



#: The label columns of an image-level label table besides the image: the grade scales of
#: ``vocab.GRADE_SCALES`` (``dr_grade`` ICDR 0-4, ``dme_grade`` IDRiD 0-2, ``image_quality`` 0-2),
#: ``diagnosis`` and ``laterality``.
LABEL_COLUMNS = (*vocab.GRADE_SCALES, 'diagnosis', 'laterality')
#: Accepted spellings of a laterality cell (case-insensitive) -> ``'left'``/``'right'``.
LATERALITY_WORDS = {'left': 'left', 'l': 'left', 'os': 'left', 'right': 'right', 'r': 'right', 'od': 'right'}


def parse_label(column: str, cell: str, *, where: str, header: Optional[str] = None) -> str:
    """The record value of one label cell of an image-level label table (:data:`LABEL_COLUMNS`).

    Args:
        column: the label: a grade scale of ``vocab.GRADE_SCALES``, ``'diagnosis'`` or ``'laterality'``.
        cell: the cell text (non-empty).
        where: ``'<file>:<n>'`` for the message.
        header: the column's name as written in the file (default ``column``), for the message.

    Returns:
        A grade as text (``'2'`` for ``'2'`` or ``'2.0'``), a diagnosis id of ``vocab.DIAGNOSES`` (an
        id or its English or Chinese name, :func:`vocab.resolve_diagnosis`), or ``'left'``/``'right'``.

    Raises:
        FundusDataError: ``<where>: column '<header>' = '<cell>': ...`` with reason ``unknown_grade``,
            ``unknown_diagnosis`` or ``unknown_laterality``.
        ValueError: ``column`` is not a label column.
    """
    name = header or column
    if column in vocab.GRADE_SCALES:
        grades = sorted(int(g) for g in vocab.GRADE_SCALES[column])
        return str(parse_grade(cell, grades, where=where, column=name))
    if column == 'diagnosis':
        diagnosis = vocab.resolve_diagnosis(cell)
        if diagnosis is None:
            raise FundusDataError(f'{where}: column {name!r} = {cell!r}: unknown; expected one of '
                                  f'{sorted(vocab.DIAGNOSES)}', reason='unknown_diagnosis')
        return diagnosis
    if column == 'laterality':
        side = LATERALITY_WORDS.get(cell.strip().lower())
        if side is None:
            raise FundusDataError(f'{where}: column {name!r} = {cell!r}: expected one of {sorted(LATERALITY_WORDS)}',
                                  reason='unknown_laterality')
        return side
    raise ValueError(f'{column!r} is not a label column; expected one of {LABEL_COLUMNS}')


@dataclass
class LabelTable:
    """An image-level label table: an image column and label (or other per-image) columns.

    Attributes:
        table: the :class:`Table` read.
        image: index of the image column (:data:`IMAGE_COLUMNS` spellings).
        columns: field -> column index, for the asked fields the table has (e.g. ``'dr_grade'``).
    """

    table: Table
    image: int
    columns: Dict[str, int]

    @property
    def path(self) -> Path:
        """The file read."""
        return self.table.path

    def ignored(self) -> List[str]:
        """Names (as written) of the columns that are neither the image nor an asked field."""
        used = {self.image, *self.columns.values()}
        return [name for i, name in enumerate(self.table.header) if i not in used]

    def header(self, field_name: str) -> str:
        """The name of ``field_name``'s column as written in the file."""
        return self.table.header[self.columns[field_name]]

    def rows(self) -> Iterator[Tuple[str, str, Dict[str, str]]]:
        """``(where, image cell, {field: cell})`` per data row, ``where`` being ``'<file>:<n>'``; only
        non-empty cells are given (an empty cell is unknown)."""
        for n, cells in self.table.rows:
            yield (self.table.where(n), cells[self.image],
                   {name: cells[i] for name, i in self.columns.items() if cells[i]})


def read_label_table(path: Path | str, fields: Sequence[str] = LABEL_COLUMNS) -> LabelTable:
    """Read an image-level label table (``data convert csv``, ``engine run --image-labels``) through
    :func:`read_table`: CSV/TSV/TXT (UTF-8 with or without BOM, UTF-16 with BOM), xlsx or xls.

    Args:
        path: the table.
        fields: the columns to find besides the image (matched by :func:`normalise` d name);
            absent ones are left out of :attr:`LabelTable.columns`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: no image column (the columns found named), an unreadable workbook, bytes
            that are not UTF-8 (file, line and byte offset named), or an empty file.
    """
    table = read_table(path)
    image = table.column('image', *IMAGE_COLUMNS, what='image')
    columns = {name: i for name in fields if (i := table.column(name, required=False)) is not None and i != image}
    return LabelTable(table, image, columns)
