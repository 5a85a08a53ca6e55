"""Tests of engine/sources/odir.py: one record per eye from the diagnostic keywords."""
import re

import pytest

from fundusexpert_plugin.sources.base import ConvertLog
from fundusexpert_plugin.sources.odir import read_odir, split_keywords
from fundusexpert_plugin.core.record import FundusDataError

HEADER = ['ID', 'Patient Age', 'Patient Sex', 'Left-Fundus', 'Right-Fundus', 'Left-Diagnostic Keywords',
          'Right-Diagnostic Keywords', 'N', 'D', 'G', 'C', 'A', 'H', 'M', 'O']


@pytest.fixture
def odir(tmp_path, make_image, make_xlsx):
    # Layout of the ODIR-2019 challenge sheet (ODIR-5K/data.xlsx, odir2019.grand-challenge.org data page):
    # one row per patient, per-eye image and keyword columns, per-patient N..O flags.
    images = tmp_path / 'ODIR-5K' / 'Training Images'
    for pid in range(4):
        for side in ('left', 'right'):
            make_image(images / f'{pid}_{side}.jpg', 64, 48)
    rows = [HEADER,
            [0, 69, 'Female', '0_left.jpg', '0_right.jpg', 'cataract', 'normal fundus', 0, 0, 0, 1, 0, 0, 0, 0],
            [1, 57, 'Male', '1_left.jpg', '1_right.jpg', 'moderate non proliferative retinopathy，hypertensive retinopathy',
             'low image quality', 0, 1, 0, 0, 0, 1, 0, 0],
            [2, 42, 'Male', '2_left.jpg', '2_right.jpg', 'glaucoma，cataract', 'normal fundus，lens dust',
             0, 0, 1, 1, 0, 0, 0, 0],
            [3, 53, 'Male', '3_left.jpg', '3_right.jpg', 'drusen', 'mild nonproliferative retinopathy,diabetic retinopathy',
             0, 1, 0, 0, 0, 0, 0, 1]]
    return images, make_xlsx(tmp_path / 'ODIR-5K' / 'data.xlsx', rows)


def test_keywords_per_eye_map_to_one_diagnosis_and_the_dr_stage(odir):
    log = ConvertLog()
    recs = {r.record_id: r for r in read_odir(*odir, log=log)}
    assert {k: r.image_labels for k, r in recs.items()} == {
        '0_left': {'diagnosis': 'cataract'},
        '0_right': {'diagnosis': 'normal'},
        '1_left': {'dr_grade': '2', 'diagnosis': 'hypertensive_retinopathy'},
        '2_right': {'diagnosis': 'normal'},  # lens dust is an artefact
        '3_right': {'dr_grade': '1'},  # 'diabetic retinopathy' adds nothing to the stage
    }
    assert (recs['0_left'].laterality, recs['0_left'].laterality_source) == ('left', 'label')
    assert recs['0_right'].laterality == 'right'
    assert log.notes["ODIR keyword 'low image quality': unusable photo, left out"] == 1
    assert log.notes['ODIR: several diagnoses for one eye; the record has one diagnosis slot, all left out'] == 1
    assert log.notes["ODIR keyword 'drusen': no slot in the record; left out"] == 1
    assert log.notes['ODIR eye with no representable label: left out'] == 2  # 2_left, 3_left


def test_split_keywords_on_both_commas():
    assert split_keywords('cataract，lens  dust, Glaucoma') == ['cataract', 'lens dust', 'glaucoma']


def test_missing_image_names_row_and_column(odir, make_xlsx):
    images, table = odir
    (images / '0_right.jpg').unlink()
    with pytest.raises(FundusDataError, match=r"data\.xlsx:2: Right-Fundus = '0_right\.jpg': no file of that name"):
        list(read_odir(images, table))
    log = ConvertLog()
    assert len(list(read_odir(images, table, lenient=True, log=log))) == 4 and len(log.skipped) == 1
    assert log.counts()['records'] == {'image_missing': 1}     # the README's reason, not invalid_record


def test_kaggle_full_df_one_row_per_image_takes_the_eye_from_filename(tmp_path, make_image, make_text):
    # Layout of Kaggle's "Ocular Disease Recognition (ODIR-5K)" full_df.csv (its data card and public
    # notebooks that read it): the patient row repeated once per eye, differing only in labels, target
    # and filename; images in preprocessed_images/.
    images = tmp_path / 'preprocessed_images'
    make_image(images / '0_right.jpg', 64, 48)
    make_image(images / '0_left.jpg', 64, 48)
    header = ('ID,Patient Age,Patient Sex,Left-Fundus,Right-Fundus,Left-Diagnostic Keywords,Right-Diagnostic Keywords,'
              'N,D,G,C,A,H,M,O,labels,target,filename\n')
    patient = '0,69,Female,0_left.jpg,0_right.jpg,cataract,normal fundus,0,0,0,1,0,0,0,0'
    table = make_text(tmp_path / 'full_df.csv', header
                      + f'{patient},[\'N\'],"[1, 0, 0, 0, 0, 0, 0, 0]",0_right.jpg\n'
                      + f'{patient},[\'C\'],"[0, 0, 0, 1, 0, 0, 0, 0]",0_left.jpg\n')
    recs = list(read_odir(images, table))
    # row 2 names the right eye (normal fundus), row 3 the left eye (cataract); one record each, no duplicate
    assert [(r.record_id, r.laterality, r.image_labels) for r in recs] == [
        ('0_right', 'right', {'diagnosis': 'normal'}), ('0_left', 'left', {'diagnosis': 'cataract'})]


def test_kaggle_full_df_filename_without_an_eye_is_named(tmp_path, make_image, make_text):
    images = tmp_path / 'preprocessed_images'
    make_image(images / '0_right.jpg', 64, 48)
    table = make_text(tmp_path / 'full_df.csv',
                      'ID,Left-Fundus,Right-Fundus,Left-Diagnostic Keywords,Right-Diagnostic Keywords,filename\n'
                      '0,0_left.jpg,0_right.jpg,cataract,normal fundus,0.jpg\n')
    with pytest.raises(FundusDataError, match=r"full_df\.csv:2: filename = '0\.jpg': expected an ODIR image name"):
        list(read_odir(images, table))
    log = ConvertLog()
    assert list(read_odir(images, table, lenient=True, log=log)) == [] and len(log.skipped) == 1


def test_lenient_empty_keyword_cell_skips_that_eye_and_intake_warnings_reach_the_log(odir, make_xlsx):
    from PIL import Image
    images, table = odir
    pages = [Image.new('RGB', (64, 48), (120, 0, 0)) for _ in range(3)]
    pages[0].save(images / '0_left.jpg', format='TIFF', save_all=True, append_images=pages[1:])  # 3-page file
    rows = [HEADER, [0, 69, 'Female', '0_left.jpg', '0_right.jpg', 'cataract', '', 0, 0, 0, 1, 0, 0, 0, 0]]
    make_xlsx(table, rows)
    with pytest.raises(FundusDataError, match=r"data\.xlsx:2: Right-Diagnostic Keywords = '': empty"):
        list(read_odir(images, table))
    log = ConvertLog()
    (rec,) = read_odir(images, table, lenient=True, log=log)
    assert (rec.record_id, rec.image_labels, rec.laterality) == ('0_left', {'diagnosis': 'cataract'}, 'left')
    assert log.skipped_records == {'empty_keywords': 1} and not log.skipped_items
    assert len(log.warnings) == 1 and re.search(r"data\.xlsx:2: Left-Diagnostic Keywords: .*0_left\.jpg: has 3 pages/frames; only page 0 is used",
                  log.warnings[0])
