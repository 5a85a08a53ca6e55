"""Tests of fundusexpert_plugin/engine/labels.py: the --image-labels table, read by the converter's reader."""
import unicodedata
from pathlib import Path

import pytest

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.engine.labels import ImageLabels, read_image_labels, warn_labels


def _csv(tmp_path, text, name='labels.csv'):
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    return path


def test_every_cell_is_checked_when_the_table_is_read_naming_file_line_and_column(tmp_path):
    path = _csv(tmp_path, 'image,dr_grade\nIDRiD_001,2\nIDRiD_002,9\n')
    with pytest.raises(FundusDataError) as err:
        read_image_labels(path)
    assert str(err.value) == f"{path}:3: column 'dr_grade' = '9': unknown grade; expected one of [0, 1, 2, 3, 4]"
    assert err.value.reason == 'unknown_grade'
    path = _csv(tmp_path, 'Image name,DME Grade,Diagnosis\nIDRiD_001,2.0,glaucom\n')
    with pytest.raises(FundusDataError, match=r"labels.csv:2: column 'Diagnosis' = 'glaucom': unknown; expected"):
        read_image_labels(path)


def test_the_same_table_gives_the_same_message_in_data_convert_csv(tmp_path):
    from PIL import Image

    from fundusexpert_plugin.sources.generic import read_label_csv
    Image.new('RGB', (40, 30)).save(tmp_path / 'IDRiD_001.jpg')
    path = _csv(tmp_path, 'image,dr_grade\nIDRiD_001.jpg,9\n')
    with pytest.raises(FundusDataError) as engine_err:
        read_image_labels(path)
    with pytest.raises(FundusDataError) as convert_err:
        list(read_label_csv(path))
    assert str(engine_err.value) == str(convert_err.value)


def test_grades_and_diagnosis_names_are_canonical_and_empty_cells_are_unknown(tmp_path):
    labels = read_image_labels(_csv(tmp_path, 'filename,dr_grade,dme_grade,image_quality,diagnosis\n'
                                              'a.jpg,2.0,,1,Glaucoma\nb,,0,,\n'))
    assert labels.for_photo('a', tmp_path / 'a.jpg') == {'dr_grade': '2', 'image_quality': '1',
                                                         'diagnosis': 'glaucoma'}
    assert labels.for_photo('b', tmp_path / 'b.tif') == {'dme_grade': '0'}
    assert labels.for_photo('c', tmp_path / 'c.jpg') == {} and labels.ignored == []


def test_two_rows_for_one_photograph_are_refused_naming_both_lines(tmp_path):
    path = _csv(tmp_path, 'image,dr_grade\nIDRiD_001,2\nIDRiD_002,1\nIDRiD_001.jpg,3\n')
    with pytest.raises(FundusDataError) as err:
        read_image_labels(path)
    assert str(err.value) == (f"{path}:4: image 'IDRiD_001.jpg' gives the record id 'IDRiD_001' of {path}:2 "
                              "('IDRiD_001') again; one row per photograph")
    with pytest.raises(FundusDataError, match=r'labels.csv:3: .* of .*labels.csv:2'):   # backslash = slash
        read_image_labels(_csv(tmp_path, 'image,dr_grade\nsub/a.jpg,2\nsub\\a.png,3\n'))


def test_a_row_with_another_suffix_names_another_file_and_matching_is_case_sensitive(tmp_path):
    labels = read_image_labels(_csv(tmp_path, 'image,dr_grade\nIDRiD_009.png,2\nIDRiD_010,1\nidrid_011.jpg,0\n'
                                              'sub/IDRiD_012.jpg,4\n'))
    photos = [tmp_path / n for n in ('IDRiD_009.jpg', 'IDRiD_010.tif', 'IDRiD_011.jpg', 'sub/IDRiD_012.jpg')]
    ids = ['IDRiD_009', 'IDRiD_010', 'IDRiD_011', 'sub/IDRiD_012']
    assert [labels.for_photo(i, p) for i, p in zip(ids, photos)] == [{}, {'dr_grade': '1'}, {}, {'dr_grade': '4'}]
    assert [row.image for row in labels.check_job(ids, photos)] == ['IDRiD_009.png', 'idrid_011.jpg']
    assert labels.for_photo('IDRiD_012', tmp_path / 'IDRiD_012.jpg') == {}  # a list job: ids are file stems


@pytest.mark.parametrize('written, on_disk', [('NFC', 'NFD'), ('NFD', 'NFC')])
def test_nfc_and_nfd_names_match(tmp_path, written, on_disk):
    name = 'sub dir/café é'
    labels = read_image_labels(_csv(tmp_path, f'image,dr_grade\n{unicodedata.normalize(written, name)}.jpg,3\n'))
    rid = unicodedata.normalize(on_disk, name)
    assert labels.for_photo(rid, tmp_path / f'{rid}.jpg') == {'dr_grade': '3'}
    assert labels.check_job([rid], [tmp_path / f'{rid}.jpg']) == []


def test_an_absolute_path_names_the_photograph_and_a_second_spelling_of_it_is_refused(tmp_path):
    photo = tmp_path / 'photos' / 'IDRiD_001.jpg'
    labels = read_image_labels(_csv(tmp_path, f'image,dr_grade\n{photo},2\n'))
    assert labels.for_photo('IDRiD_001', photo) == {'dr_grade': '2'}
    assert labels.for_photo('dcm-1f2e', tmp_path / 'photos' / 'IDRiD_001.dcm') == {}
    path = _csv(tmp_path, f'image,dr_grade\nIDRiD_001,2\n{photo},3\n')
    labels = read_image_labels(path)
    with pytest.raises(FundusDataError) as err:
        labels.check_job(['IDRiD_001'], [photo])
    assert str(err.value) == (f"{path}:3: image {str(photo)!r} names the photograph {str(photo)!r} that {path}:2 "
                              "('IDRiD_001') names already; one row per photograph")


def test_an_xlsx_table_is_read_and_columns_not_read_are_named(tmp_path, caplog):
    openpyxl = pytest.importorskip('openpyxl')
    book = openpyxl.Workbook()
    sheet = book.active
    for row in (('Image', 'DR_grade', 'laterality', 'notes'), ('IDRiD_001.jpg', 2, 'OD', 'x'), ('IDRiD_002', 0.0)):
        sheet.append(row)
    book.save(tmp_path / 'labels.xlsx')
    labels = read_image_labels(tmp_path / 'labels.xlsx')
    assert labels.ignored == ['laterality', 'notes']
    photos = [tmp_path / 'IDRiD_001.jpg', tmp_path / 'IDRiD_002.png']
    assert [labels.for_photo(p.stem, p) for p in photos] == [{'dr_grade': '2'}, {'dr_grade': '0'}]
    assert warn_labels(labels, [p.stem for p in photos], photos) == []
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{tmp_path / 'labels.xlsx'}: column(s) ['laterality', 'notes'] not read by the engine")


def test_bytes_that_are_not_utf8_and_a_missing_image_column_name_the_file(tmp_path):
    path = tmp_path / 'latin1.csv'
    path.write_bytes('image,dr_grade\ncafé.jpg,2\n'.encode('latin-1'))
    with pytest.raises(FundusDataError) as err:
        read_image_labels(path)
    assert str(err.value) == f'{path}:2: byte offset 18 is not UTF-8'
    with pytest.raises(FundusDataError,
                       match=r"labels.csv:1: no image column; expected 'image' \(also accepted: \['imgName', "):
        read_image_labels(_csv(tmp_path, 'photo,dr_grade\na.jpg,2\n'))
    with pytest.raises(FundusDataError, match=r"labels.csv:3: column 'image' is empty"):
        read_image_labels(_csv(tmp_path, 'image,dr_grade\na.jpg,2\n,3\n'))


def test_labels_given_in_code_are_keyed_by_record_id():
    labels = ImageLabels.from_ids({'sub/0001': {'dr_grade': '2'}})
    assert labels.for_photo('sub/0001', Path('x/sub/0001.png')) == {'dr_grade': '2'} and len(labels) == 1
