"""Tests of engine/sources/ddr.py on fixtures laid out as the DDR repository."""
import pytest

from fundusexpert_plugin.sources.base import ConvertLog
from fundusexpert_plugin.sources.ddr import read_ddr_detection, read_ddr_grading, read_ddr_segmentation
from fundusexpert_plugin.core.record import FundusDataError


def test_grades_0_to_4_are_icdr_and_grade_5_is_left_out(tmp_path, make_image, make_text):
    grading = tmp_path / 'DR_grading'
    for name in ('007-0004-000', '007-0005-000', '20170323093305605'):
        make_image(grading / 'train' / f'{name}.jpg', 64, 48)
    # Layout of DDR's DR_grading/train.txt (github.com/nkicsl/DDR-dataset README): '<image> <grade>' per line
    txt = make_text(grading / 'train.txt', '007-0004-000.jpg 2\n007-0005-000.jpg 5\n20170323093305605.jpg 0\n')
    log = ConvertLog()
    recs = list(read_ddr_grading(grading / 'train', txt, log=log))
    assert [(r.record_id, r.image_labels) for r in recs] == [('007-0004-000', {'dr_grade': '2'}),
                                                            ('20170323093305605', {'dr_grade': '0'})]
    assert log.notes == {'DDR grade 5 (ungradable): no dr_grade slot; image left out': 1}
    assert 'Li T.' in recs[0].provenance.attribution and "see the dataset's terms" in recs[0].provenance.licence
    make_text(txt, '007-0004-000.jpg 6\n')
    with pytest.raises(FundusDataError, match=r"train\.txt:1: column 'grade' = '6': unknown grade"):
        list(read_ddr_grading(grading / 'train', txt))
    make_text(txt, '007-0004-000.jpg\n')
    with pytest.raises(FundusDataError, match=r'train\.txt:1: .*expected "<image file> <grade>"'):
        list(read_ddr_grading(grading / 'train', txt))


def test_segmentation_masks_per_lesion_folder(tmp_path, make_image, make_mask):
    seg = tmp_path / 'lesion_segmentation' / 'train'
    make_image(seg / 'image' / '007-1789-100.jpg', 300, 200)
    make_mask(seg / 'label' / 'EX' / '007-1789-100.tif', [(20, 30, 60, 50)], 300, 200)
    make_mask(seg / 'label' / 'HE' / '007-1789-100.tif', [], 300, 200)  # empty mask: no haemorrhage
    make_mask(seg / 'label' / 'SE' / '007-1789-100.tif', [(200, 150, 215, 165)], 300, 200)
    (seg / 'label' / 'MA').mkdir()  # no MA file for this image: unknown
    log = ConvertLog()
    (rec,) = read_ddr_segmentation(seg / 'image', seg / 'label', log=log)
    assert [(f.label, f.box_px) for f in rec.findings] == [('hard_exudates', (20.0, 30.0, 60.0, 50.0)),
                                                          ('cotton_wool_spots', (200.0, 150.0, 215.0, 165.0))]
    assert set(rec.provenance.annotated_labels) == {'hard_exudates', 'haemorrhages', 'cotton_wool_spots'}
    assert rec.absent_labels() == ['haemorrhages']
    assert log.notes == {'DDR: no MA mask for the image; microaneurysms unknown': 1}


# DDR lesion_detection/*.xml: Pascal VOC annotations (github.com/nkicsl/DDR-dataset README), 1-based inclusive boxes
VOC = """<annotation><folder>train</folder><filename>{name}</filename>
<size><width>300</width><height>200</height><depth>3</depth></size>
<object><name>EX</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>50</ymax></bndbox></object>
<object><name>MA</name><bndbox><xmin>0</xmin><ymin>1</ymin><xmax>3</xmax><ymax>3</ymax></bndbox></object>
{extra}</annotation>"""


def test_voc_boxes_are_one_based_inclusive(tmp_path, make_image, make_text):
    det = tmp_path / 'lesion_detection' / 'train'
    make_image(det / '007-3711-200.jpg', 300, 200)
    make_text(det / '007-3711-200.xml', VOC.format(name='007-3711-200.jpg', extra=''))
    (rec,) = read_ddr_detection(det, det)
    # EX 11..40 (1-based, inclusive) -> (10, 20, 40, 50); MA xmin 0 (0-based tool) -> -1 clipped to 0
    assert [(f.label, f.box_px) for f in rec.findings] == [('hard_exudates', (10.0, 20.0, 40.0, 50.0)),
                                                          ('microaneurysms', (0.0, 0.0, 3.0, 3.0))]
    assert set(rec.absent_labels()) == {'haemorrhages', 'cotton_wool_spots'}


def test_voc_unknown_class_or_wrong_size_is_an_error(tmp_path, make_image, make_text):
    det = tmp_path / 'det'
    make_image(det / 'a.jpg', 300, 200)
    extra = '<object><name>IRMA</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>'
    make_text(det / 'a.xml', VOC.format(name='a.jpg', extra=extra))
    with pytest.raises(FundusDataError, match=r"a\.xml: object\[2\]/name = 'IRMA': unknown DDR class"):
        list(read_ddr_detection(det, det))
    make_text(det / 'a.xml', VOC.format(name='a.jpg', extra='').replace('<width>300', '<width>301'))
    with pytest.raises(FundusDataError, match=r'a\.xml: size = 301x200 but image .* is 300x200 px'):
        list(read_ddr_detection(det, det))


def _voc(*objects):
    """A VOC file of the 300x200 photo ``a.jpg`` with ``(name, xmin, ymin, xmax, ymax)`` objects (text as written)."""
    body = ''.join(f'<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>'
                   f'<ymax>{d}</ymax></bndbox></object>' for n, a, b, c, d in objects)
    return ('<annotation><filename>a.jpg</filename><size><width>300</width><height>200</height></size>'
            f'{body}</annotation>')


def test_voc_bad_object_is_one_skipped_box_lenient_and_names_xml_and_object_strict(tmp_path, make_image, make_text):
    det = tmp_path / 'det'
    make_image(det / 'a.jpg', 300, 200)
    make_text(det / 'a.xml', _voc(('EX', 11, 21, 40, 50), ('HE', 1, 1, 'x9', 9)))
    with pytest.raises(FundusDataError, match=r"a\.xml: column 'object\[1\]/bndbox/xmax' = 'x9': expected a number"):
        list(read_ddr_detection(det, det))
    log = ConvertLog()
    (rec,) = read_ddr_detection(det, det, lenient=True, log=log)
    assert [(f.label, f.box_px) for f in rec.findings] == [('hard_exudates', (10.0, 20.0, 40.0, 50.0))]
    assert log.skipped_items == {'box_not_numbers': 1} and not log.skipped_records
    assert len(log.skipped) == 1 and "a.xml: column 'object[1]/bndbox/xmax' = 'x9'" in log.skipped[0]
    # HE had a box that could not be read: not claimed absent; the other three classes stay exhaustive
    assert set(rec.provenance.annotated_labels) == {'hard_exudates', 'microaneurysms', 'cotton_wool_spots'}
    assert rec.absent_labels() == ['microaneurysms', 'cotton_wool_spots']
    assert log.notes == {'haemorrhages left unannotated: a box of the image was skipped (absence not claimed)': 1}


def test_voc_exact_duplicate_object_is_one_region_counted_in_the_log(tmp_path, make_image, make_text):
    det = tmp_path / 'det'
    make_image(det / 'a.jpg', 300, 200)
    # the same EX object twice, an EX with other coordinates, an HE on the same coordinates as the first EX
    make_text(det / 'a.xml', _voc(('EX', 11, 21, 40, 50), ('ex', 11, 21, 40, 50), ('EX', 11, 21, 40, 51),
                                  ('HE', 11, 21, 40, 50)))
    log = ConvertLog()
    (rec,) = read_ddr_detection(det, det, log=log)
    assert [(f.label, f.box_px) for f in rec.findings] == [('hard_exudates', (10.0, 20.0, 40.0, 50.0)),
                                                          ('hard_exudates', (10.0, 20.0, 40.0, 51.0)),
                                                          ('haemorrhages', (10.0, 20.0, 40.0, 50.0))]
    assert log.notes == {'hard_exudates: exact duplicate box (same class, same xyxy)': 1} and not log.skipped
    assert 'hard_exudates' in rec.provenance.annotated_labels  # still exhaustive: nothing was lost


def test_voc_box_outside_image_and_unknown_class_are_skipped_items(tmp_path, make_image, make_text):
    det = tmp_path / 'det'
    make_image(det / 'a.jpg', 300, 200)
    make_text(det / 'a.xml', _voc(('IRMA', 1, 1, 9, 9), ('MA', 280, 10, 320, 30), ('SE', 101, 51, 120, 60)))
    with pytest.raises(FundusDataError, match=r"a\.xml: object\[0\]/name = 'IRMA': unknown DDR class"):
        list(read_ddr_detection(det, det))
    log = ConvertLog()
    (rec,) = read_ddr_detection(det, det, lenient=True, log=log)
    assert [(f.label, f.box_px) for f in rec.findings] == [('cotton_wool_spots', (100.0, 50.0, 120.0, 60.0))]
    assert log.skipped_items == {'unknown_label': 1, 'box_outside_image': 1}
    assert 'a.xml: object[1]/bndbox = [279.0, 9.0, 320.0, 30.0]: outside the 300x200 px image' in log.skipped[1]
    # an object of a class that is no finding we know could be any lesion: no absence is claimed
    assert rec.provenance.annotated_labels == [] and rec.absent_labels() == []


def test_voc_misnamed_class_leaves_that_class_unannotated(tmp_path, make_image, make_text):
    # 'hemorrhage' is not one of DDR's codes but reads as haemorrhages: that photo has a haemorrhage
    det = tmp_path / 'det'
    make_image(det / 'a.jpg', 300, 200)
    make_text(det / 'a.xml', _voc(('hemorrhage', 1, 1, 9, 9), ('EX', 11, 21, 40, 50)))
    log = ConvertLog()
    (rec,) = read_ddr_detection(det, det, lenient=True, log=log)
    assert [(f.label, f.box_px) for f in rec.findings] == [('hard_exudates', (10.0, 20.0, 40.0, 50.0))]
    assert log.skipped_items == {'unknown_label': 1}
    assert set(rec.provenance.annotated_labels) == {'hard_exudates', 'microaneurysms', 'cotton_wool_spots'}
    assert 'haemorrhages' not in rec.absent_labels()


def test_segmentation_missized_mask_is_one_skipped_item(tmp_path, make_image, make_mask):
    seg = tmp_path / 'lesion_segmentation' / 'train'
    make_image(seg / 'image' / 'a.jpg', 300, 200)
    make_mask(seg / 'label' / 'EX' / 'a.tif', [(20, 30, 60, 50)], 300, 200)
    make_mask(seg / 'label' / 'HE' / 'a.tif', [(100, 100, 120, 130)], 150, 100)  # half size
    with pytest.raises(FundusDataError, match=r"a\.jpg: HE mask: mask .*HE/a\.tif is 150x100 px but the image is 300x200"):
        list(read_ddr_segmentation(seg / 'image', seg / 'label'))
    log = ConvertLog()
    (rec,) = read_ddr_segmentation(seg / 'image', seg / 'label', lenient=True, log=log)
    assert [(f.label, f.box_px) for f in rec.findings] == [('hard_exudates', (20.0, 30.0, 60.0, 50.0))]
    assert rec.provenance.annotated_labels == ['hard_exudates'] and log.skipped_items == {'mask_size_mismatch': 1}


def test_segmentation_mask_without_its_photo_is_an_error_or_one_counted_skip(tmp_path, make_image, make_mask):
    seg = tmp_path / 'seg'
    make_image(seg / 'image' / 'a.jpg', 300, 200)
    make_mask(seg / 'label' / 'EX' / 'a.tif', [(20, 30, 60, 50)], 300, 200)
    make_mask(seg / 'label' / 'EX' / 'zzz.tif', [(20, 30, 60, 50)], 300, 200)
    with pytest.raises(FundusDataError, match=r"zzz\.tif: DDR EX mask for no photo"):
        list(read_ddr_segmentation(seg / 'image', seg / 'label'))
    log = ConvertLog()
    (rec,) = read_ddr_segmentation(seg / 'image', seg / 'label', lenient=True, log=log)
    assert rec.record_id == 'a' and log.skipped_records == {'annotation_without_image': 1}
