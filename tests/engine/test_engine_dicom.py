"""DICOM photographs through the engine: header laterality kept, checked against the disc the locator finds."""
import logging

import numpy as np
import pytest
from PIL import Image

from fundusexpert_plugin.core.dicom import read_dicom
from fundusexpert_plugin.core.record import FundusGenRecord
from fundusexpert_plugin.render.chain import cognitive_chain
from fundusexpert_plugin.engine import FundusEngine
from fundusexpert_plugin.engine.batch import process_photo
from fundusexpert_plugin.sample import SAMPLE_DIR
from fundusexpert_plugin.testing.fake_dicom import write_fake_dicom


@pytest.fixture(scope='module')
def photo_0003():
    """Sample 0003 (1072x712): CODRAS disc box x 166-316, on the image's left -> a left eye."""
    with Image.open(SAMPLE_DIR / 'images' / '0003.jpg') as im:
        return np.asarray(im.convert('RGB'))


@pytest.mark.parametrize('code,flagged', [('R', True), ('L', False)])
def test_dicom_laterality_is_kept_and_a_disagreement_with_the_disc_is_flagged(photo_0003, tmp_path, caplog,
                                                                            code, flagged):
    path = write_fake_dicom(tmp_path / 'x.dcm', photo_0003, image_laterality=code, pixel_spacing_mm=(0.012, 0.011))
    with caplog.at_level(logging.WARNING):
        outcome = process_photo(FundusEngine(None, detector_name='none'), path, 'dcm-0123456789abcdef',
                                tmp_path / 'out')
    rec = outcome.line
    disc = next(f['box_px'] for f in rec['findings'] if f['label'] == 'optic_disc')
    assert rec['provenance']['landmarks']['optic_disc'] == 'locator' and disc[2] < 1072 / 2  # the disc is on the left
    side = {'R': 'right', 'L': 'left'}[code]
    assert (rec['laterality'], rec['laterality_source']) == (side, 'dicom')  # never overwritten
    assert rec['pixel_spacing_mm'] == [0.012, 0.011]
    sentence = ("dcm-0123456789abcdef: DICOM laterality 'right' disagrees with the optic-disc position "
                "('left' by the macula-centred rule); keeping the DICOM value")
    assert rec['provenance']['flags'] == ([sentence] if flagged else [])
    assert (sentence in caplog.text) is flagged
    # the chain states this flag as what it is (not as a detector-locator disagreement), in both languages
    chains = {lang: cognitive_chain(FundusGenRecord.model_validate(rec), lang) for lang in ('en', 'zh')}
    en = ('Flagged for review: the DICOM header gives the right eye, but the position of the optic disc suggests '
          'the left eye; the header is followed.')
    zh = '待复核：DICOM头信息记录为右眼，但视盘位置提示为左眼；按头信息记录。'
    assert (en in chains['en'], zh in chains['zh']) == (flagged, flagged)
    assert 'disagree on the position' not in chains['en'] and '位置判断不一致' not in chains['zh']
    assert chains['en'].count('Flagged for review') == flagged
    # the record points to a fresh PNG copy of the pixels, never to the DICOM file
    assert rec['image'] == 'images/dcm-0123456789abcdef.png'
    with Image.open(tmp_path / 'out' / rec['image']) as im:
        assert not im.info and np.array_equal(np.asarray(im), read_dicom(path).image.rgb)


def test_the_python_api_never_names_a_dicom_record_after_its_file(photo_0003, tmp_path):
    """FundusEngine.process on a DICOM path: record_id is required; the header fields are read as the CLI does."""
    from fundusexpert_plugin.core.dicom import resolve_salt
    from fundusexpert_plugin.core.errors import FundusDataError
    from fundusexpert_plugin.engine.batch import record_ids

    path = write_fake_dicom(tmp_path / 'MUELLER_HANS_R.dcm', photo_0003, image_laterality='L',
                            pixel_spacing_mm=(0.012, 0.011))
    engine = FundusEngine(None, detector_name='none')
    with pytest.raises(FundusDataError, match='give record_id') as exc:
        engine.process(path, out_dir=tmp_path / 'out')
    assert 'MUELLER' not in str(exc.value)
    [rid] = record_ids([path], None, dicom_salt=resolve_salt(None, tmp_path / 'salt.txt'))
    rec = engine.process(path, out_dir=tmp_path / 'out', record_id=rid)
    assert rid.startswith('dcm-') and rec.record_id == rid and rec.image == f'images/{rid}.png'
    assert (rec.laterality, rec.laterality_source, rec.pixel_spacing_mm) == ('left', 'dicom', (0.012, 0.011))
    assert [p.name for p in (tmp_path / 'out').rglob('*')] == ['images', f'{rid}.png']


def test_a_monochrome_dicom_photograph_is_called_greyscale(photo_0003, tmp_path):
    grey = np.repeat(photo_0003.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    path = write_fake_dicom(tmp_path / 'g.dcm', grey, photometric='MONOCHROME2', image_laterality='L')
    rec = FundusGenRecord.model_validate(
        process_photo(FundusEngine(None, detector_name='none'), path, 'dcm-grey', tmp_path / 'out').line)
    assert rec.provenance.stages['image'] == 'DICOM MONOCHROME2->RGB'
    assert cognitive_chain(rec, 'en').startswith('This is a greyscale fundus photograph of the left eye.')
    assert cognitive_chain(rec, 'zh').startswith('这是一张左眼的灰度眼底照片。')
