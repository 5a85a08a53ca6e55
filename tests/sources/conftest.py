"""File writers for the dataset-reader tests: tiny photos, masks and xlsx sheets in tmp_path.

The fixtures reproduce each dataset's published names, columns and value ranges at a small size
(photos of a few hundred pixels instead of 4288x2848).
"""
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from PIL import Image


def _image(path, width=400, height=300):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = 120
    Image.fromarray(rgb).save(path)
    return path


def _mask(path, rects, width=400, height=300, value=255, background=0, colour=None):
    """Mask with ``value`` inside each ``(x1, y1, x2, y2)`` rect (x2/y2 exclusive); ``colour``: RGB."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((height, width), background, np.uint8)
    for rect in rects:
        x1, y1, x2, y2 = rect[:4]
        arr[y1:y2, x1:x2] = rect[4] if len(rect) > 4 else value
    if colour is not None:  # e.g. IDRiD: lesions drawn in red
        rgb = np.zeros((height, width, 3), np.uint8)
        for c, v in enumerate(colour):
            rgb[..., c] = np.where(arr > 0, v, 0)
        Image.fromarray(rgb).save(path)
    else:
        Image.fromarray(arr).save(path)
    return path


def _col(i):
    name = ''
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


def _xlsx(path, rows):
    """Minimal Excel 2007+ workbook (one sheet): strings shared, numbers as numbers, None empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    strings, xml_rows = [], []
    for r, row in enumerate(rows, 1):
        cells = []
        for c, value in enumerate(row):
            ref = f'{_col(c)}{r}'
            if value is None:
                continue
            if isinstance(value, (int, float)):
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
            else:
                strings.append(str(value))
                cells.append(f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    main = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main'
    rel = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships'
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('[Content_Types].xml', '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                    'package/2006/content-types"/>')
        zf.writestr('xl/workbook.xml', f'<?xml version="1.0"?><workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
                    '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
        zf.writestr('xl/_rels/workbook.xml.rels', '<?xml version="1.0"?><Relationships xmlns="http://schemas.'
                    'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="'
                    f'{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
        zf.writestr('xl/sharedStrings.xml', f'<?xml version="1.0"?><sst xmlns="{main}">'
                    + ''.join(f'<si><t>{escape(s)}</t></si>' for s in strings) + '</sst>')
        zf.writestr('xl/worksheets/sheet1.xml', f'<?xml version="1.0"?><worksheet xmlns="{main}"><sheetData>'
                    + ''.join(xml_rows) + '</sheetData></worksheet>')
    return path


def _text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding='utf-8')
    return path


@pytest.fixture
def make_image():
    return _image


@pytest.fixture
def make_mask():
    return _mask


@pytest.fixture
def make_xlsx():
    return _xlsx


@pytest.fixture
def make_text():
    return _text
