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
