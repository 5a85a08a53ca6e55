"""Tests of engine/sources/idrid.py on fixtures laid out as the IDRiD archive (small photos)."""
import pytest

from fundusexpert_plugin.sources.base import ConvertLog, MaskBoxParams
from fundusexpert_plugin.sources.idrid import read_idrid_grading, read_idrid_segmentation
from fundusexpert_plugin.core.record import FundusDataError

GRADES = 'Image name,Retinopathy grade,Risk of macular edema ,,,\nIDRiD_001,3,2,,,\nIDRiD_002,0,0,,,\n,,,,,\n'
OD = 'Image No,X- Coordinate,Y - Coordinate,,\nIDRiD_001,300,150,,\nIDRiD_002,80,140,,\n'
FOVEA = 'Image No,X- Coordinate,Y - Coordinate,,\nIDRiD_001,180,160,,\nIDRiD_002,250.5,150,,\n'
#: IDRiD_002's fovea box: side DD = hypot(170.5, 10) / hypot(2.5, 0.25) = 67.978 px around (250.5, 150)
R2_FOVEA = (250.5 - 33.989, 150 - 33.989, 250.5 + 33.989, 150 + 33.989)


@pytest.fixture
def grading(tmp_path, make_image, make_text):
    b, c = tmp_path / 'B. Disease Grading', tmp_path / 'C. Localization' / '2. Groundtruths'
    images = b / '1. Original Images' / 'a. Training Set'
    for name in ('IDRiD_001', 'IDRiD_002'):
        make_image(images / f'{name}.jpg')
    return {
        'images': images,
        # File names and columns as in the IDRiD archives (Porwal et al., Data 2018; idrid.grand-challenge.org)
        'grades': make_text(b / '2. Groundtruths' / 'a. IDRiD_Disease Grading_Training Labels.csv', GRADES),
        'od': make_text(c / '1. Optic Disc Center Location' / 'a. IDRiD_OD_Center_Training Set_Markups.csv', OD),
        'fovea': make_text(c / '2. Fovea Center Location' / 'a. IDRiD_Fovea_Center_Training Set_Markups.csv', FOVEA),
    }


def test_grades_fovea_and_laterality_are_merged_per_image(grading):
    log = ConvertLog()
    recs = list(read_idrid_grading(grading['images'], grades_csv=grading['grades'], od_csv=grading['od'],
                                   fovea_csv=grading['fovea'], log=log))
    assert [r.record_id for r in recs] == ['IDRiD_001', 'IDRiD_002']
    r1, r2 = recs
    assert r1.image_labels == {'dr_grade': '3', 'dme_grade': '2'} and (r1.width, r1.height) == (400, 300)
    # fovea (180, 160) -> a 1-DD box; DD from the disc centre (300, 150): distance hypot(120, 10) = 120.42 px
    # over the prior's hypot(2.5, 0.25) = 2.5125 DD -> 47.93 px. Disc x 300 > fovea x 180 -> right eye
    assert [f.label for f in r1.findings] == ['fovea']
    assert r1.findings[0].box_px == pytest.approx((180 - 23.964, 160 - 23.964, 180 + 23.964, 160 + 23.964), abs=1e-3)
    assert (r1.laterality, r1.laterality_source) == ('right', 'optic_disc_position')
    # IDRiD_002: disc (80, 140), fovea (250.5, 150): distance 170.79 px -> DD 67.98 px
    assert r2.laterality == 'left' and r2.findings[0].box_px == pytest.approx(R2_FOVEA, abs=1e-3)
    assert r1.provenance.annotated_labels == ['fovea'] and 'CC BY 4.0' in r1.provenance.licence
    assert 'Porwal' in r1.provenance.attribution and r1.provenance.source_dataset == 'IDRiD'
    assert log.notes == {'IDRiD optic-disc centre point: used for laterality and the fovea box size only '
                         '(no disc extent)': 2}


def test_unknown_grade_names_file_line_and_column(grading, make_text):
    make_text(grading['grades'], GRADES.replace('IDRiD_002,0,0', 'IDRiD_002,7,0'))
    with pytest.raises(FundusDataError,
                       match=r"Training Labels\.csv:3: column 'Retinopathy grade' = '7': unknown grade"):
        list(read_idrid_grading(grading['images'], grades_csv=grading['grades']))
    make_text(grading['grades'], GRADES.replace('IDRiD_002,0,0', 'IDRiD_002,1,3'))
    with pytest.raises(FundusDataError, match=r":3: column 'Risk of macular edema' = '3'"):
        list(read_idrid_grading(grading['images'], grades_csv=grading['grades']))


def test_missing_image_and_missing_column_are_errors_lenient_skips_the_row(grading, make_text):
    make_text(grading['grades'], GRADES + 'IDRiD_003,1,0,,,\n')
    with pytest.raises(FundusDataError, match=r":5: Image name = 'IDRiD_003': no file of that name"):
        list(read_idrid_grading(grading['images'], grades_csv=grading['grades']))
    log = ConvertLog()
    recs = list(read_idrid_grading(grading['images'], grades_csv=grading['grades'], lenient=True, log=log))
    assert len(recs) == 2 and len(log.skipped) == 1 and 'IDRiD_003' in log.skipped[0]
    make_text(grading['od'], 'Image No,X- Coordinate\nIDRiD_001,300\n')
    with pytest.raises(FundusDataError, match=r"Markups\.csv:1: missing column 'Y - Coordinate'"):
        list(read_idrid_grading(grading['images'], od_csv=grading['od'], lenient=True))


@pytest.fixture
def segmentation(tmp_path, make_image, make_mask):
    seg = tmp_path / 'A. Segmentation'
    images = seg / '1. Original Images' / 'a. Training Set'
    gt = seg / '2. All Segmentation Groundtruths' / 'a. Training Set'
    make_image(images / 'IDRiD_01.jpg')
    make_image(images / 'IDRiD_02.jpg')
    red = (255, 0, 0)
    # IDRiD_01: one 12x12 MA (official area 11*11 = 121 > 100), two exudate patches > 50 px apart, a disc.
    make_mask(gt / '1. Microaneurysms' / 'IDRiD_01_MA.tif', [(30, 20, 42, 32)], colour=red)
    make_mask(gt / '3. Hard Exudates' / 'IDRiD_01_EX.tif', [(200, 100, 230, 115), (50, 250, 70, 270)], colour=red)
    make_mask(gt / '5. Optic Disc' / 'IDRiD_01_OD.tif', [(320, 120, 380, 180)], colour=red)
    # IDRiD_02: a 3x3 MA only (filtered by the area threshold), no optic-disc mask.
    make_mask(gt / '1. Microaneurysms' / 'IDRiD_02_MA.tif', [(100, 100, 103, 103)], colour=red)
    # the set ships every class: HE and SE masks exist for another photograph (not converted here)
    make_mask(gt / '2. Haemorrhages' / 'IDRiD_09_HE.tif', [(10, 10, 30, 30)], colour=red)
    make_mask(gt / '4. Soft Exudates' / 'IDRiD_09_SE.tif', [(10, 10, 30, 30)], colour=red)
    return images, gt


def test_masks_become_boxes_and_missing_lesion_masks_mean_absent(segmentation):
    log = ConvertLog()
    r1, r2 = read_idrid_segmentation(*segmentation, log=log)
    assert log.warnings == []
    boxes = {(f.label, f.box_px) for f in r1.findings}
    # EX: x 200..229, y 100..114 -> (200, 100, 230, 115), area 29*14 = 406; x 50..69, y 250..269 -> 19*19 = 361
    assert boxes == {('microaneurysms', (30.0, 20.0, 42.0, 32.0)), ('hard_exudates', (200.0, 100.0, 230.0, 115.0)),
                     ('hard_exudates', (50.0, 250.0, 70.0, 270.0)), ('optic_disc', (320.0, 120.0, 380.0, 180.0))}
    assert r1.boxes('hard_exudates')[0] == (200.0, 100.0, 230.0, 115.0)
    assert set(r1.provenance.annotated_labels) == {'microaneurysms', 'haemorrhages', 'hard_exudates',
                                                   'cotton_wool_spots', 'optic_disc'}
    assert r1.absent_labels() == ['haemorrhages', 'cotton_wool_spots']  # no HE / SE mask: absent in IDRiD
    assert r1.laterality == 'right'  # disc centre x 350 > 200
    # IDRiD_02: MA foreground but no box -> MA not claimed; no OD mask -> optic disc unknown
    assert r2.findings == [] and set(r2.provenance.annotated_labels) == {'haemorrhages', 'hard_exudates',
                                                                         'cotton_wool_spots'}
    assert r2.laterality is None
    assert any('no optic-disc mask' in reason for reason in log.notes)
    assert any('microaneurysms: mask has foreground' in reason for reason in log.notes)


def test_smaller_clustering_parameters_keep_microaneurysms(segmentation):
    r2 = list(read_idrid_segmentation(*segmentation, params=MaskBoxParams(eps_px=5, min_samples=3,
                                                                           area_threshold_px2=0)))[1]
    assert [(f.label, f.box_px) for f in r2.findings] == [('microaneurysms', (100.0, 100.0, 103.0, 103.0))]


def test_unreadable_mask_names_the_image_and_class(segmentation):
    images, gt = segmentation
    (gt / '4. Soft Exudates').mkdir(exist_ok=True)
    (gt / '4. Soft Exudates' / 'IDRiD_02_SE.tif').write_bytes(b'broken')
    with pytest.raises(FundusDataError, match=r'IDRiD_02\.jpg: SE mask: unreadable mask'):
        list(read_idrid_segmentation(images, gt))
    log = ConvertLog()
    # lenient: the bad SE mask is one skipped item; IDRiD_02 is kept, SE neither present nor known absent
    r1, r2 = read_idrid_segmentation(images, gt, lenient=True, log=log)
    assert len(log.skipped) == 1 and log.skipped_items == {'mask_unreadable': 1} and not log.skipped_records
    assert r2.record_id == 'IDRiD_02' and r2.findings == []
    assert r2.provenance.annotated_labels == ['haemorrhages', 'hard_exudates']


def test_one_missized_mask_among_several_keeps_the_other_masks_boxes(segmentation, make_mask):
    images, gt = segmentation
    red = (255, 0, 0)
    make_mask(gt / '3. Hard Exudates' / 'IDRiD_01_EX.tif', [(20, 10, 40, 30)], 200, 150, colour=red)  # wrong size
    with pytest.raises(FundusDataError, match=r'IDRiD_01\.jpg: EX mask: mask .*IDRiD_01_EX\.tif is 200x150 px but '
                                              r'the image is 400x300 px'):
        list(read_idrid_segmentation(images, gt))
    log = ConvertLog()
    r1, r2 = read_idrid_segmentation(images, gt, lenient=True, log=log)
    assert [(f.label, f.box_px) for f in r1.findings] == [('microaneurysms', (30.0, 20.0, 42.0, 32.0)),
                                                          ('optic_disc', (320.0, 120.0, 380.0, 180.0))]
    # EX could not be read: neither present nor absent; the other classes as without the bad mask
    assert set(r1.provenance.annotated_labels) == {'microaneurysms', 'haemorrhages', 'cotton_wool_spots', 'optic_disc'}
    assert r1.laterality == 'right' and r2.record_id == 'IDRiD_02'
    assert log.skipped_items == {'mask_size_mismatch': 1} and not log.skipped_records
    assert 'IDRiD_01.jpg: EX mask: mask' in log.skipped[0] and 'is 200x150 px' in log.skipped[0]


def test_two_masks_for_one_class_stop_strict_and_skip_that_class_lenient(segmentation, make_mask):
    images, gt = segmentation
    make_mask(gt / 'extra' / 'IDRiD_01_MA.png', [(30, 20, 42, 32)], colour=(255, 0, 0))
    with pytest.raises(FundusDataError, match=r'second MA mask for IDRiD_01'):
        list(read_idrid_segmentation(images, gt))
    log = ConvertLog()
    r1, _ = read_idrid_segmentation(images, gt, lenient=True, log=log)
    assert {f.label for f in r1.findings} == {'hard_exudates', 'optic_disc'}
    assert 'microaneurysms' not in r1.provenance.annotated_labels
    assert log.skipped_items == {'mask_ambiguous': 1} and 'IDRiD_01.jpg: MA mask: 2 files for one class' in log.skipped[0]


def test_bad_grade_cell_or_fovea_keeps_the_image_s_other_labels_lenient(grading, make_text):
    make_text(grading['grades'], GRADES.replace('IDRiD_002,0,0', 'IDRiD_002,7,0'))
    make_text(grading['fovea'], FOVEA.replace('IDRiD_001,180,160', 'IDRiD_001,900,160'))
    kwargs = dict(grades_csv=grading['grades'], od_csv=grading['od'], fovea_csv=grading['fovea'])
    with pytest.raises(FundusDataError, match=r"Markups\.csv:2: X- Coordinate/Y - Coordinate = \(900\.0, 160\.0\): "
                                              r"outside the 400x300 px image"):
        list(read_idrid_grading(grading['images'], **kwargs))
    log = ConvertLog()
    r1, r2 = read_idrid_grading(grading['images'], lenient=True, log=log, **kwargs)
    # IDRiD_001: grades kept, fovea skipped; laterality from the disc x 300 against the image centre 200
    assert r1.image_labels == {'dr_grade': '3', 'dme_grade': '2'} and r1.findings == [] and r1.laterality == 'right'
    assert 'fovea' not in r1.provenance.annotated_labels
    # IDRiD_002: dr_grade 7 skipped, dme_grade and the fovea box kept
    assert r2.image_labels == {'dme_grade': '0'} and r2.findings[0].box_px == pytest.approx(R2_FOVEA, abs=1e-3)
    assert log.skipped_items == {'point_outside_image': 1, 'unknown_grade': 1} and not log.skipped_records
    assert any("Training Labels.csv:3: column 'Retinopathy grade' = '7': unknown grade" in m for m in log.skipped)


def test_a_lesion_class_the_download_lacks_is_unknown_not_absent(segmentation):
    images, gt = segmentation
    import shutil
    shutil.rmtree(gt / '2. Haemorrhages')          # MA, EX and OD folders only: no HE or SE mask anywhere
    shutil.rmtree(gt / '4. Soft Exudates')
    log = ConvertLog()
    r1, r2 = read_idrid_segmentation(images, gt, log=log)
    assert set(r1.provenance.annotated_labels) == {'microaneurysms', 'hard_exudates', 'optic_disc'}
    assert r1.absent_labels() == []                # haemorrhages, cotton-wool spots: not claimed absent
    assert set(r2.provenance.annotated_labels) == {'hard_exudates'}
    assert log.warnings == [f'{gt}: no HE mask for any image; haemorrhages left unknown, not absent (its folder '
                            'is missing from the download?)',
                            f'{gt}: no SE mask for any image; cotton_wool_spots left unknown, not absent (its '
                            'folder is missing from the download?)']
