"""DICOM photographs through the one image intake: photometrics, frames, burned-in refusal, fields, ids."""
import logging

import numpy as np
import pytest
from PIL import Image

from fundusexpert_plugin.core.dicom import (DicomRefused, check_laterality, is_dicom, read_dicom,
                                            record_id_from_uid)
from fundusexpert_plugin.core.images import load_image
from fundusexpert_plugin.sample import SAMPLE_DIR
from fundusexpert_plugin.testing.fake_dicom import write_fake_dicom


@pytest.fixture(scope='module')
def photo():
    """Sample photo 0003 at half size (536x356): RGB uint8."""
    with Image.open(SAMPLE_DIR / 'images' / '0003.jpg') as im:
        return np.asarray(im.convert('RGB').resize((536, 356)))


def _diff(a, b):
    return np.abs(a.astype(int) - b.astype(int))


def test_native_rgb_is_exact_and_fields_come_through(photo, tmp_path):
    path = write_fake_dicom(tmp_path / 'a', photo, image_laterality='R', pixel_spacing_mm=(0.012, 0.011))
    assert is_dicom(path) and not is_dicom(SAMPLE_DIR / 'images' / '0003.jpg')
    got = read_dicom(path)
    assert got.image.rgb.shape == (356, 536, 3)
    assert np.array_equal(got.image.rgb, photo)
    assert got.fields.laterality == 'right' and got.fields.pixel_spacing_mm == (0.012, 0.011)
    assert got.image.conversion == 'DICOM RGB'
    assert np.array_equal(load_image(path).rgb, photo)  # the one intake sniffs DICM, whatever the suffix


@pytest.mark.parametrize('kw,max_mean', [({'photometric': 'YBR_FULL_422'}, 1.0),
                                         ({'photometric': 'YBR_FULL_422', 'jpeg': True}, 2.0),
                                         ({'photometric': 'RGB', 'jpeg': True}, 1.5)])
def test_ybr_and_jpeg_baseline_decode_to_rgb(photo, tmp_path, kw, max_mean):
    got = load_image(write_fake_dicom(tmp_path / 'x.dcm', photo, **kw))
    # 4:2:2 chroma and JPEG quality 95 lose a little; a wrong colour space would be off by tens
    assert got.rgb.shape == photo.shape and _diff(got.rgb, photo).mean() < max_mean
    assert got.conversion == ('DICOM YBR_FULL_422->RGB' if kw['photometric'] != 'RGB' else 'DICOM RGB')


def test_monochrome2_becomes_grey_rgb(photo, tmp_path):
    got = load_image(write_fake_dicom(tmp_path / 'm.dcm', photo, photometric='MONOCHROME2'))
    grey = np.asarray(Image.fromarray(photo).convert('L'))
    assert np.array_equal(got.rgb[:, :, 0], grey) and np.array_equal(got.rgb[:, :, 2], grey)
    assert got.conversion == 'DICOM MONOCHROME2->RGB'


def test_multi_frame_warns_and_takes_frame_0_or_is_refused(photo, tmp_path, caplog):
    path = write_fake_dicom(tmp_path / 'mf.dcm', photo, frames=3)
    with caplog.at_level(logging.WARNING):
        got = read_dicom(path)
    assert np.array_equal(got.image.rgb, photo) and got.fields.n_frames == 3
    assert 'NumberOfFrames = 3: using frame 0 only' in caplog.text
    with pytest.raises(DicomRefused, match=r'NumberOfFrames \(0028,0008\) = 3'):
        read_dicom(path, multi_frame='refuse')


def test_burned_in_annotation_refused_unless_accepted(photo, tmp_path):
    path = write_fake_dicom(tmp_path / 'b.dcm', photo, burned_in=True)
    with pytest.raises(DicomRefused, match=r'BurnedInAnnotation \(0028,0301\) = YES'):
        load_image(path)
    assert load_image(path, accept_burned_in=True).rgb.shape == photo.shape


def test_series_laterality_used_when_image_laterality_absent(photo, tmp_path):
    path = write_fake_dicom(tmp_path / 's.dcm', photo, image_laterality=None, series_laterality='L',
                            pixel_spacing_mm=None)
    fields = read_dicom(path).fields
    assert fields.laterality == 'left' and fields.pixel_spacing_mm is None
    both = write_fake_dicom(tmp_path / 'u.dcm', photo, image_laterality='U', series_laterality=None)
    assert read_dicom(both).fields.laterality is None


def test_record_id_is_salted_hmac_of_the_uid():
    import hashlib
    import hmac
    uid = '1.2.826.0.1.3680043.8.498.1'
    expected = 'dcm-' + hmac.new(b'pepper', uid.encode(), hashlib.sha256).hexdigest()[:16]
    assert record_id_from_uid(uid, 'pepper') == expected
    assert record_id_from_uid(uid, 'salt2') != expected
    with pytest.raises(ValueError):
        record_id_from_uid(uid, '')


def test_laterality_checked_against_disc_position(caplog):
    # sample 0003: disc box x 166-316 of 1072 px -> left of centre -> 'left' by the macula-centred rule
    disc = (166.25, 239.5, 316.0, 407.0)
    assert check_laterality('left', disc, 1072, where='r1') is None
    assert check_laterality('right', None, 1072, where='r1') is None
    with caplog.at_level(logging.WARNING):
        message = check_laterality('right', disc, 1072, where='r1')
    assert message == ("r1: DICOM laterality 'right' disagrees with the optic-disc position ('left' by the "
                       "macula-centred rule); keeping the DICOM value") and message in caplog.text


def _cut(path, n):
    data = path.read_bytes()
    path.write_bytes(data[:n])
    return len(data)


def test_a_file_cut_in_its_header_is_unreadable_not_a_non_image(photo, tmp_path):
    from fundusexpert_plugin.core.images import ImageSkip
    for n in (140, 300, 900):        # before the UID, and after the UID but before PixelData
        path = write_fake_dicom(tmp_path / f'cut{n}.dcm', photo)
        _cut(path, n)
        with pytest.raises(ImageSkip) as err:
            read_dicom(path)
        assert err.value.reason == 'image_unreadable'
        assert str(err.value) == f'{path}: DICOM file ends before its PixelData (7FE0,0010): cut short or damaged'
    path = write_fake_dicom(tmp_path / 'half.dcm', photo)
    total = _cut(path, 300_000)      # inside the pixel data: 536 x 356 x 3 = 572,448 bytes expected
    assert total > 572_448
    with pytest.raises(ImageSkip, match=r'half.dcm: PixelData \(7FE0,0010\) not decodable .*vs 572448 bytes') as err:
        read_dicom(path)
    assert err.value.reason == 'image_unreadable'


def test_the_pixel_limit_applies_to_dicom_before_decoding(photo, tmp_path):
    from fundusexpert_plugin.core import images
    from fundusexpert_plugin.core.images import ImageSkip
    path = write_fake_dicom(tmp_path / 'a.dcm', photo)
    with pytest.raises(ImageSkip, match=r'a.dcm: Rows \(0028,0010\) x Columns \(0028,0011\) = 536x356 = 190816 '
                                        r'pixels is above the limit of 190815 pixels') as err:
        load_image(path, max_pixels=190_815)
    assert err.value.reason == 'image_too_large'
    assert load_image(path, max_pixels=190_816).rgb.shape == (356, 536, 3)
    old = images.MAX_PIXELS
    try:
        images.set_max_pixels(1000)  # --max-image-pixels: the intake's limit, read at call time
        with pytest.raises(ImageSkip, match='above the limit of 1000 pixels'):
            read_dicom(path)
    finally:
        images.set_max_pixels(old)


def test_max_side_scales_a_dicom_photo_like_any_other(photo, tmp_path):
    path = write_fake_dicom(tmp_path / 'a.dcm', photo)
    got = load_image(path, max_side=268)
    assert got.rgb.shape == (178, 268, 3) and got.original_size == (536, 356) and got.scale == (0.5, 0.5)
    assert _diff(got.rgb, photo[::2, ::2]).mean() < 12
