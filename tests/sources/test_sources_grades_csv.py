"""Tests of engine/sources/grades_csv.py: APTOS, EyePACS, Messidor, Messidor-2 tables."""
import pytest

from fundusexpert_plugin.sources.base import ConvertLog
from fundusexpert_plugin.sources.grades_csv import read_aptos, read_eyepacs, read_messidor, read_messidor2
from fundusexpert_plugin.core.record import FundusDataError


def test_aptos_diagnosis_is_the_icdr_grade(tmp_path, make_image, make_text):
    make_image(tmp_path / 'train_images' / '000c1434d8d7.png', 64, 48)
    make_image(tmp_path / 'train_images' / '001639a390f0.png', 64, 48)
    # Layout of APTOS 2019 train.csv (Kaggle competition data page): id_code,diagnosis
    csv = make_text(tmp_path / 'train.csv', 'id_code,diagnosis\n000c1434d8d7,2\n001639a390f0,4\n')
    recs = list(read_aptos(tmp_path / 'train_images', csv))
    assert [(r.record_id, r.image_labels) for r in recs] == [('000c1434d8d7', {'dr_grade': '2'}),
                                                            ('001639a390f0', {'dr_grade': '4'})]
    assert recs[0].laterality is None and 'Kaggle' in recs[0].provenance.licence
    make_text(csv, 'id_code,diagnosis\n000c1434d8d7,5\n')
    with pytest.raises(FundusDataError, match=r"train\.csv:2: column 'diagnosis' = '5': unknown grade"):
        list(read_aptos(tmp_path / 'train_images', csv))
    make_text(csv, 'id_code\n000c1434d8d7\n')  # the test.csv layout has no labels
    with pytest.raises(FundusDataError, match=r"train\.csv:1: missing column 'diagnosis'"):
        list(read_aptos(tmp_path / 'train_images', csv, lenient=True))


def test_eyepacs_level_and_laterality_from_the_name(tmp_path, make_image, make_text):
    for name in ('10_left', '10_right'):
        make_image(tmp_path / 'train' / f'{name}.jpeg', 64, 48)
    # Layout of EyePACS trainLabels.csv (Kaggle Diabetic Retinopathy Detection data page): image,level
    csv = make_text(tmp_path / 'trainLabels.csv', 'image,level\n10_left,0\n10_right,3\n')
    left, right = read_eyepacs(tmp_path / 'train', csv)
    assert (left.image_labels, left.laterality, left.laterality_source) == ({'dr_grade': '0'}, 'left', 'label')
    assert (right.image_labels, right.laterality) == ({'dr_grade': '3'}, 'right')


def test_messidor_grade_is_not_icdr_and_macular_edema_risk_is_the_idrid_scale(tmp_path, make_image, make_text):
    names = ['20051020_43808_0100_PP', '20051020_43832_0100_PP']
    for name in names:
        make_image(tmp_path / 'Base11' / f'{name}.tif', 64, 48)
    # CSV export of Messidor's Annotation_Base11.xls (ADCIS Messidor download page), header as published
    table = make_text(tmp_path / 'Annotation_Base11.csv',
                      'Image name,Ophthalmologic department,Retinopathy grade,Risk of macular edema \n'
                      f'{names[0]}.tif,Service Ophtalmologie Lariboisière,0,0\n'
                      f'{names[1]}.tif,Service Ophtalmologie Lariboisière,3,2\n')
    log = ConvertLog()
    r0, r3 = read_messidor(tmp_path / 'Base11', table, log=log)
    assert r0.image_labels == {'dme_grade': '0'}  # R0 is not ICDR 0: no DR label
    assert r3.image_labels == {'dme_grade': '2', 'diagnosis': 'diabetic_retinopathy'}  # R3 spans ICDR 1-4
    assert sum(log.notes.values()) == 1
    make_text(table, 'Image name,Ophthalmologic department,Retinopathy grade,Risk of macular edema \n'
                     f'{names[0]}.tif,x,4,0\n')
    with pytest.raises(FundusDataError, match=r"Annotation_Base11\.csv:2: column 'Retinopathy grade' = '4'.*\[0, 1, 2, 3\]"):
        list(read_messidor(tmp_path / 'Base11', table))


def test_messidor2_adjudicated_grades_and_ungradable(tmp_path, make_image, make_text):
    make_image(tmp_path / 'IMAGES' / 'IM002385.JPG', 64, 48)
    make_image(tmp_path / 'IMAGES' / '20051020_43808_0100_PP.png', 64, 48)
    # Layout of messidor_data.csv (Krause et al. 2018 adjudicated grades, Kaggle 'messidor2' data card)
    csv = make_text(tmp_path / 'messidor_data.csv',
                    'image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable\n'
                    'IM002385.JPG,1,0,1\nIM002386.JPG,,,0\n20051020_43808_0100_PP.png,4,1,1\n')
    log = ConvertLog()
    a, b = read_messidor2(tmp_path / 'IMAGES', csv, log=log)
    assert (a.record_id, a.image_labels) == ('IM002385', {'dr_grade': '1'})
    assert b.image_labels == {'dr_grade': '4', 'diagnosis': 'diabetic_macular_oedema'}
    assert log.notes['Messidor-2 adjudicated_gradable = 0 (ungradable): image left out'] == 1


def test_messidor2_kaggle_preprocess_columns_id_code_and_diagnosis(tmp_path, make_image, make_text):
    pre = tmp_path / 'messidor-2' / 'messidor-2' / 'preprocess'
    make_image(pre / '20051020_43808_0100_PP.png', 64, 48)
    make_image(pre / '20051020_43832_0100_PP.png', 64, 48)
    # Layout of messidor_data.csv in the Kaggle redistribution mariaherrerot/messidor2preprocess
    csv = make_text(tmp_path / 'messidor_data.csv',
                    'id_code,diagnosis,adjudicated_dme,adjudicated_gradable\n'
                    '20051020_43808_0100_PP.png,0,0,1\n20051020_43832_0100_PP.png,3,1,1\n'
                    '20051020_43882_0100_PP.png,,,0\n')
    log = ConvertLog()
    a, b = read_messidor2(pre, csv, log=log)
    assert (a.record_id, a.image_labels) == ('20051020_43808_0100_PP', {'dr_grade': '0'})
    assert b.image_labels == {'dr_grade': '3', 'diagnosis': 'diabetic_macular_oedema'}
    assert log.notes['Messidor-2 adjudicated_gradable = 0 (ungradable): image left out'] == 1
    make_text(csv, 'id_code,diagnosis,adjudicated_dme,adjudicated_gradable\n20051020_43808_0100_PP.png,7,0,1\n')
    with pytest.raises(FundusDataError, match=r"messidor_data\.csv:2: column 'diagnosis' = '7': unknown grade"):
        list(read_messidor2(pre, csv))
    make_text(csv, 'id_code,grade,adjudicated_dme,adjudicated_gradable\n20051020_43808_0100_PP.png,1,0,1\n')
    with pytest.raises(FundusDataError, match=r"missing column 'adjudicated_dr_grade' \(also accepted: \['diagnosis'\]\)"):
        list(read_messidor2(pre, csv))


def test_messidor_legacy_xls_as_distributed(tmp_path, make_image, make_xls):
    # Layout of Messidor's Annotation_Base11.xls (ADCIS Messidor download page; Decencière et al. 2014):
    # legacy Excel, sheet Feuil1, header 'Image name', 'Ophthalmologic department', 'Retinopathy grade',
    # 'Risk of macular edema ' (trailing space); grades stored as numbers.
    names = ['20051020_43808_0100_PP', '20051020_43832_0100_PP']
    for name in names:
        make_image(tmp_path / 'Base11' / f'{name}.tif', 64, 48)
    table = make_xls(tmp_path / 'Annotation_Base11.xls', [
        ['Image name', 'Ophthalmologic department', 'Retinopathy grade', 'Risk of macular edema '],
        [f'{names[0]}.tif', 'Service Ophtalmologie Lariboisière', 0, 0],
        [f'{names[1]}.tif', 'Service Ophtalmologie Lariboisière', 3, 2]], sheet='Feuil1')
    r0, r3 = read_messidor(tmp_path / 'Base11', table)
    assert (r0.record_id, r0.image_labels) == (names[0], {'dme_grade': '0'})
    assert r3.image_labels == {'dme_grade': '2', 'diagnosis': 'diabetic_retinopathy'}
    make_xls(table, [['Image name', 'Ophthalmologic department', 'Retinopathy grade', 'Risk of macular edema '],
                     [f'{names[0]}.tif', 'x', 4, 0]])
    # the row number is the sheet's (header row 1, first data row 2)
    with pytest.raises(FundusDataError, match=r"Annotation_Base11\.xls:2: column 'Retinopathy grade' = '4'"):
        list(read_messidor(tmp_path / 'Base11', table))


def test_messidor_bad_risk_cell_keeps_the_retinopathy_label_lenient(tmp_path, make_image, make_text):
    make_image(tmp_path / 'Base11' / 'a.tif', 64, 48)
    table = make_text(tmp_path / 'Annotation_Base11.csv',
                      'Image name,Ophthalmologic department,Retinopathy grade,Risk of macular edema \na.tif,x,2,5\n')
    with pytest.raises(FundusDataError, match=r"Annotation_Base11\.csv:2: column 'Risk of macular edema' = '5'"):
        list(read_messidor(tmp_path / 'Base11', table))
    log = ConvertLog()
    (rec,) = read_messidor(tmp_path / 'Base11', table, lenient=True, log=log)
    assert rec.image_labels == {'diagnosis': 'diabetic_retinopathy'}
    assert log.skipped_items == {'unknown_grade': 1} and not log.skipped_records
