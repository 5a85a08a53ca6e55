"""Tests of engine/sources/eophtha.py: lesion photos with masks, healthy photos known absent."""
import pytest

from fundusexpert_plugin.sources.base import ConvertLog
from fundusexpert_plugin.sources.eophtha import read_eophtha
from fundusexpert_plugin.core.record import FundusDataError


def test_exudate_masks_and_healthy_photos(tmp_path, make_image, make_mask):
    # Folder layout of the e-ophtha archive (Decencière et al., IRBM 2013; ADCIS e-ophtha page): EX/, Annotation_EX/
    root = tmp_path / 'e_optha_EX'
    make_image(root / 'EX' / 'E0000404' / 'DS000DGS.JPG', 300, 200)
    make_mask(root / 'Annotation_EX' / 'E0000404' / 'DS000DGS_EX.png', [(100, 40, 130, 70)], 300, 200)
    make_image(root / 'healthy' / 'E0000405' / 'DS000ABC.JPG', 300, 200)
    lesion, healthy = read_eophtha(root, 'EX')
    assert [(f.label, f.box_px) for f in lesion.findings] == [('hard_exudates', (100.0, 40.0, 130.0, 70.0))]
    assert lesion.provenance.annotated_labels == ['hard_exudates'] and lesion.record_id == 'DS000DGS'
    assert healthy.findings == [] and healthy.absent_labels() == ['hard_exudates']


def test_tiny_microaneurysms_are_filtered_and_then_not_claimed(tmp_path, make_image, make_mask):
    root = tmp_path / 'e_optha_MA'
    make_image(root / 'MA' / 'C0001' / 'C0001_a.jpg', 300, 200)
    make_mask(root / 'Annotation_MA' / 'C0001' / 'C0001_a.png', [(50, 50, 54, 54)], 300, 200)
    log = ConvertLog()
    assert list(read_eophtha(root, 'MA', log=log)) == []  # no box, class not claimed: nothing left
    assert any('microaneurysms: mask has foreground' in r for r in log.notes)


def test_lesion_photo_without_annotation_is_an_error(tmp_path, make_image):
    root = tmp_path / 'e_optha_EX'
    make_image(root / 'EX' / 'E1' / 'DS1.jpg', 30, 20)
    (root / 'Annotation_EX').mkdir()
    with pytest.raises(FundusDataError, match=r"DS1\.jpg: Annotation_EX = 'DS1': no file of that name"):
        list(read_eophtha(root, 'EX'))


def test_an_annotation_without_its_photo_is_an_error_or_one_counted_skip(tmp_path, make_image, make_mask):
    root = tmp_path / 'e_optha_EX'
    make_image(root / 'EX' / 'E1' / 'DS1.jpg', 300, 200)
    make_mask(root / 'Annotation_EX' / 'E1' / 'DS1_EX.png', [(100, 40, 130, 70)], 300, 200)
    make_mask(root / 'Annotation_EX' / 'E2' / 'DS2_EX.png', [(100, 40, 130, 70)], 300, 200)   # DS2 photo missing
    with pytest.raises(FundusDataError, match=r"DS2_EX\.png: Annotation_EX mask for no photo: no image named 'DS2_EX'"):
        list(read_eophtha(root, 'EX'))
    log = ConvertLog()
    (rec,) = read_eophtha(root, 'EX', lenient=True, log=log)
    assert rec.record_id == 'DS1' and log.skipped_records == {'annotation_without_image': 1}
