"""Tests of core/tables.py and sources/tables.py: CSV and xlsx label tables with line/row numbers."""
import pytest

from fundusexpert_plugin.core.tables import normalise, parse_grade, read_table
from fundusexpert_plugin.sources.tables import read_image_table
from fundusexpert_plugin.core.record import FundusDataError


def test_idrid_header_with_trailing_space_and_empty_columns_is_matched(tmp_path, make_text):
    # The published IDRiD grading CSV: trailing space in the last header, empty trailing columns
    # and an empty line at the end.
    # IDRiD 'a. IDRiD_Disease Grading_Training Labels.csv' as published: trailing space, empty columns
    path = make_text(tmp_path / 'labels.csv', 'Image name,Retinopathy grade,Risk of macular edema ,,\n'
                                              'IDRiD_001,3,2,,\nIDRiD_002,0,0,,\n,,,,\n')
    table = read_table(path)
    assert table.column('Risk of macular edema') == 2
    assert table.rows == [(2, ['IDRiD_001', '3', '2', '', '']), (3, ['IDRiD_002', '0', '0', '', ''])]
    assert normalise('X- Coordinate') == 'xcoordinate' == normalise('x coordinate')


def test_missing_column_names_the_file_and_the_columns_found(tmp_path, make_text):
    path = make_text(tmp_path / 'trainLabels.csv', 'image,grade\n10_left,0\n')
    with pytest.raises(FundusDataError, match=r"trainLabels\.csv:1: missing column 'level'.*\['image', 'grade'\]"):
        read_table(path).column('level')


def test_xlsx_shared_strings_numbers_and_row_numbers(tmp_path, make_xlsx):
    path = make_xlsx(tmp_path / 'Fovea_location.xlsx',
                     [['ID', 'imgName', 'Fovea_X', 'Fovea_Y'], [1, 'A0001.jpg', 1182.5, 1017.25],
                      [None, None, None, None], [2, 'N0001.jpg', 0, 0]])
    table = read_table(path)
    assert table.header == ['ID', 'imgName', 'Fovea_X', 'Fovea_Y']
    assert table.rows == [(2, ['1', 'A0001.jpg', '1182.5', '1017.25']), (4, ['2', 'N0001.jpg', '0', '0'])]
    rows = read_image_table(path)
    assert rows['A0001'].fovea() == (1182.5, 1017.25)
    assert rows['N0001'].fovea() is None  # (0, 0): fovea not visible (iChallenge convention)
    assert rows['A0001'].where.endswith('Fovea_location.xlsx:2')


def test_a_file_that_is_not_an_xls_workbook_is_named(tmp_path, make_text):
    path = make_text(tmp_path / 'Annotation_Base11.xls', 'binary')
    with pytest.raises(FundusDataError, match=r'Annotation_Base11\.xls: not a readable xls workbook'):
        read_table(path)


def test_whitespace_separated_txt_without_header(tmp_path, make_text):
    path = make_text(tmp_path / 'train.txt', '007-0004-000.jpg 2\n\n007-0005-000.jpg  5\n')
    assert read_table(path, delimiter=' ', header=False).rows == [(1, ['007-0004-000.jpg', '2']),
                                                                   (3, ['007-0005-000.jpg', '5'])]


def test_parse_grade_accepts_spreadsheet_floats_and_names_bad_values():
    assert parse_grade('2.0', range(5), where='f.csv:3', column='level') == 2
    with pytest.raises(FundusDataError, match=r"f\.csv:3: column 'level' = '2\.5': unknown grade"):
        parse_grade('2.5', range(5), where='f.csv:3', column='level')
    with pytest.raises(FundusDataError, match=r"'7': unknown grade; expected one of \[0, 1, 2, 3, 4\]"):
        parse_grade('7', range(5), where='f.csv:3', column='level')
    with pytest.raises(FundusDataError, match="''"):
        parse_grade('', range(5), where='f.csv:3', column='level')


def test_image_listed_twice_names_both_lines(tmp_path, make_text):
    path = make_text(tmp_path / 't.csv', 'imgName,Label\nV0001.jpg,1\nV0001.jpg,0\n')
    with pytest.raises(FundusDataError, match=r"t\.csv:3: image 'V0001\.jpg' listed twice \(also .*t\.csv:2\)"):
        read_image_table(path)


def test_a_label_table_and_its_cells_follow_one_rule_for_every_reader(tmp_path, make_text):
    from fundusexpert_plugin.core.tables import parse_label, read_label_table
    path = make_text(tmp_path / 'labels.csv', 'File name,DR_Grade,Laterality,site\na.jpg,2.0,OS,x\nb.jpg,,,\n')
    table = read_label_table(path)
    assert (table.image, table.columns, table.ignored()) == (0, {'dr_grade': 1, 'laterality': 2}, ['site'])
    assert list(table.rows()) == [(f'{path}:2', 'a.jpg', {'dr_grade': '2.0', 'laterality': 'OS'}),
                                  (f'{path}:3', 'b.jpg', {})]
    assert [parse_label('dr_grade', '2.0', where='w'), parse_label('laterality', 'OS', where='w'),
            parse_label('diagnosis', '青光眼', where='w'), parse_label('image_quality', '1', where='w')] == [
        '2', 'left', 'glaucoma', '1']
    with pytest.raises(FundusDataError, match=r"^w: column 'Lat' = 'up': expected one of \['l', 'left'"):
        parse_label('laterality', 'up', where='w', header='Lat')
    with pytest.raises(ValueError, match="'site' is not a label column"):
        parse_label('site', 'x', where='w')
