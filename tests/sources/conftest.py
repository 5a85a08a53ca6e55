"""File writers for the dataset-reader tests: tiny photos, masks, xlsx (openpyxl) and xls (xlwt) sheets.

The fixtures reproduce each dataset's published names, columns and value ranges at a small size
(photos of a few hundred pixels instead of 4288x2848).
"""
from pathlib import Path

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


def _xlsx(path, rows, sheet='Sheet1'):
    """Excel 2007+ workbook (one sheet) written by openpyxl: numbers as numbers, None empty."""
    import openpyxl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = sheet
    for r, row in enumerate(rows, 1):
        for c, value in enumerate(row, 1):
            if value is not None:
                ws.cell(row=r, column=c, value=value)
    book.save(path)
    return path


def _xls(path, rows, sheet='Feuil1'):
    """Legacy Excel (BIFF8) workbook written by xlwt (tests only): numbers as numbers, None empty."""
    import xlwt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = xlwt.Workbook()
    ws = book.add_sheet(sheet)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                ws.write(r, c, value)
    book.save(str(path))
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
def make_xls():
    return _xls


@pytest.fixture
def make_text():
    return _text
