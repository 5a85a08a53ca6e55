"""The engine's landmarks (detector or locator), flagged disagreements and honest wording, on real photos."""
import json

import pytest

from fundusexpert_plugin.core.geometry import box_center, laterality_from_disc
from fundusexpert_plugin.detector.detect import Detection
from fundusexpert_plugin.engine import FundusEngine
from fundusexpert_plugin.render.chain import cognitive_chain
from fundusexpert_plugin.sample import ANNOTATIONS, SAMPLE_DIR
from fundusexpert_plugin.testing.fake_detector import BoxListDetector

SAMPLE = {json.loads(line)['codras_id']: json.loads(line) for line in ANNOTATIONS.read_text().splitlines()}


def _boxes(cid, label):
    return [tuple(a['bbox_xyxy']) for a in SAMPLE[cid]['annotations'] if a['label'] == label]


def _process(engine, cid, tmp_path):
    return engine.process(SAMPLE_DIR / SAMPLE[cid]['image'], out_dir=tmp_path)


def test_without_detector_the_locator_gives_disc_and_fovea(tmp_path):
    rec = _process(FundusEngine(None, detector_name='none'), '0015', tmp_path)
    assert rec.provenance.landmarks == {'optic_disc': 'locator', 'fovea': 'locator'}
    assert [(f.label, f.source, f.score) for f in rec.findings] == [('optic_disc', 'locator', None),
                                                                   ('fovea', 'locator', None)]
    assert rec.laterality == laterality_from_disc(_boxes('0015', 'optic_disc')[0], 1072) == 'right'
    fx, fy = box_center(rec.boxes('fovea')[0])
    tx, ty = SAMPLE['0015']['fovea_xy']
    assert abs(fx - tx) <= 10 and abs(fy - ty) <= 10          # test_landmarks bound on the same photo
    # the located fovea is a box 1 disc diameter (mean side of the located disc box) wide, not a point
    (dx1, dy1, dx2, dy2), (x1, y1, x2, y2) = rec.boxes('optic_disc')[0], rec.boxes('fovea')[0]
    assert x2 - x1 == pytest.approx(((dx2 - dx1) + (dy2 - dy1)) / 2) == pytest.approx(y2 - y1)
    assert 100 < x2 - x1 < 200                                 # the sample's 1072-px photos: discs of 97-159 px
    text = cognitive_chain(rec, 'en')
    assert 'located on the image by its brightness' in text and 'darkest macular region' in text
    assert 'not marked' not in text                             # the 2.5-DD prior is not used
    assert 'No lesion type was looked for in this image, so nothing is said about lesions.' in text
    assert '未在本图像中查找任何病灶类型，因此不对病灶作任何陈述。' in cognitive_chain(rec, 'zh')


def test_a_detector_without_disc_falls_back_to_the_locator(tmp_path):
    exudate = Detection('hard_exudates', (500.0, 300.0, 520.0, 320.0), 0.7)
    rec = _process(FundusEngine(BoxListDetector([exudate]), detector_name='fake'), '0015', tmp_path)
    assert rec.provenance.landmarks['optic_disc'] == 'locator' and rec.laterality == 'right'
    assert [f.source for f in rec.findings if f.label == 'hard_exudates'] == ['detector']


def test_disc_on_the_wrong_side_is_flagged_and_laterality_withheld(tmp_path):
    x1, y1, x2, y2 = _boxes('0015', 'optic_disc')[0]
    mirrored = Detection('optic_disc', (1072 - x2, y1, 1072 - x1, y2), 0.9)
    rec = _process(FundusEngine(BoxListDetector([mirrored]), detector_name='fake'), '0015', tmp_path)
    assert rec.provenance.landmarks['optic_disc'] == 'detector'
    assert rec.boxes('optic_disc') == [mirrored.box_px]        # kept, never silently replaced
    assert rec.laterality is None
    [flag] = rec.provenance.flags
    assert flag.startswith('optic disc: the detector') and 'different sides' in flag
    assert 'Flagged for review' in cognitive_chain(rec, 'en')


def test_detector_and_locator_that_agree_raise_no_flag(tmp_path):
    disc = Detection('optic_disc', _boxes('0015', 'optic_disc')[0], 0.9)
    rec = _process(FundusEngine(BoxListDetector([disc]), detector_name='fake'), '0015', tmp_path)
    assert rec.provenance.flags == [] and rec.laterality == 'right'
    assert rec.provenance.landmarks == {'optic_disc': 'detector', 'fovea': 'locator'}


def test_nested_exudates_and_the_disc_rim_are_not_counted(tmp_path):
    """Photo 0008 with its 19 CODRAS exudate boxes as detections (2 nested, see test_detect_rules) and an
    exudate box on the disc rim: 17 exudate regions are reported."""
    disc = _boxes('0008', 'optic_disc')[0]
    rim = (disc[0] + 5, disc[1] + 5, disc[0] + 40, disc[1] + 40)
    dets = [Detection('optic_disc', disc, 0.95), Detection('hard_exudates', rim, 0.99)]
    dets += [Detection('hard_exudates', b, 0.9 - i / 100) for i, b in enumerate(_boxes('0008', 'hard_exudates'))]
    rec = _process(FundusEngine(BoxListDetector(dets), detector_name='fake'), '0008', tmp_path)
    assert len(rec.boxes('hard_exudates')) == 17 and rim not in rec.boxes('hard_exudates')
    assert 'Hard exudates: 17 regions' in cognitive_chain(rec, 'en')


def test_detector_misses_are_not_detected_never_absent(tmp_path):
    disc = Detection('optic_disc', _boxes('0015', 'optic_disc')[0], 0.9)
    rec = _process(FundusEngine(BoxListDetector([disc], score_threshold=0.3), detector_name='rtmdet'), '0015', tmp_path)
    assert rec.not_detected_labels() == ['hard_exudates', 'haemorrhages'] and rec.absent_labels() == []
    en, zh = cognitive_chain(rec, 'en'), cognitive_chain(rec, 'zh')
    assert 'Hard exudates: not detected by the detector (rtmdet) at score \u2265 0.3.' in en
    assert 'Haemorrhages: not detected by the detector (rtmdet) at score \u2265 0.3.' in en
    assert 'microaneurysms' not in en and 'No lesions are annotated' not in en    # not trained: nothing said
    assert 'this does not show that they are absent' in en
    assert '硬性渗出：检测器（rtmdet）在分数\u22650.3时未检出。' in zh
    assert 'consistent with' not in en


@pytest.mark.parametrize('locator', [None])
def test_locator_off_keeps_detector_only_behaviour(tmp_path, locator):
    rec = _process(FundusEngine(BoxListDetector([]), locator=locator), '0015', tmp_path)
    assert rec.boxes('optic_disc') == [] and rec.laterality is None and rec.provenance.landmarks == {}


# --- plausibility of a detected optic disc -------------------------------------------------------------------

def test_disc_plausibility_on_real_disc_boxes_and_the_corner_box():
    from fundusexpert_plugin.engine.pipeline import disc_plausibility
    # every CODRAS disc box of the sample (0.091-0.148 of the 1072-px width, width/height 0.84-1.02) passes
    assert [disc_plausibility(box, SAMPLE[cid]['width']) for cid in SAMPLE for box in _boxes(cid, 'optic_disc')] \
        == [''] * 12
    # the untrained detector's corner "disc" on a 4288 x 2848 IDRiD photo: DD (1 + 0.6) / 2 = 0.8 px,
    # 0.8 / 4288 = 0.00019; width / height 1 / 0.6 = 1.67 (plausible)
    assert disc_plausibility((4180, 0, 4181, 0.6), 4288) == \
        'diameter 0.8 px = 0.0002 of the image width (plausible 0.04-0.30)'
    # band edges on a 1000-px image: DD 40 px = 0.04 passes, 39 px fails; 300 px passes, 301 fails
    assert disc_plausibility((0, 0, 40, 40), 1000) == '' and disc_plausibility((0, 0, 300, 300), 1000) == ''
    assert disc_plausibility((0, 0, 39, 39), 1000).startswith('diameter 39.0 px = 0.0390')
    assert disc_plausibility((0, 0, 301, 301), 1000).startswith('diameter 301.0 px = 0.3010')
    # a plausible diameter (DD (160 + 30) / 2 = 95 px = 0.089 of 1072) but a 160 x 30 bar: 5.33 wide per high
    assert disc_plausibility((650, 300, 810, 330), 1072) == 'width/height 5.33 (plausible 0.5-2)'
    assert disc_plausibility((700, 250, 750, 410), 1072) == 'width/height 0.31 (plausible 0.5-2)'


def test_an_implausible_detector_disc_gives_way_to_the_locator(tmp_path):
    """The trial's corner box scaled to the sample's 1072-px photo: (1045, 0, 1046, 0.6), DD 0.8 px."""
    corner = Detection('optic_disc', (1045.0, 0.0, 1046.0, 0.6), 0.31)
    rec = _process(FundusEngine(BoxListDetector([corner]), detector_name='fake'), '0015', tmp_path)
    assert rec.provenance.landmarks == {'optic_disc': 'locator', 'fovea': 'locator'}
    [disc] = rec.boxes('optic_disc')
    cx, cy = box_center(disc)
    tx, ty = box_center(_boxes('0015', 'optic_disc')[0])          # CODRAS disc centre (728.9, 330.5)
    assert abs(cx - tx) <= 12 and abs(cy - ty) <= 12              # bound of tests/detector/test_landmarks.py
    assert rec.laterality == 'right'
    assert rec.provenance.flags == [
        'implausible optic-disc box from the detector: (1045.0, 0.0, 1046.0, 0.6) score 0.31: diameter 0.8 px = '
        "0.0007 of the image width (plausible 0.04-0.30); not used, the landmark locator's optic disc is used"]
    en, zh = cognitive_chain(rec, 'en'), cognitive_chain(rec, 'zh')
    assert ('Flagged for review: an optic-disc box from the detector has an implausible size or shape and is '
            'not used.') in en
    assert '待复核：检测器给出的一个视盘框大小或形状不合理，未被采用。' in zh
    assert 'disagree' not in en and '不一致' not in zh and en.count('Flagged for review') == 1
    # the fovea is measured from the located disc (the trial's record said 1585.6 DD): the annotated centres
    # are 346.6 px = 2.24 CODRAS DD apart; the locator's disc box is a little smaller than CODRAS's (2.5 DD)
    dd = float(en.split('expected position, ')[1].split(' DD')[0])
    assert 1.8 <= dd <= 3.0


def test_an_implausible_top_disc_gives_way_to_the_next_detector_disc(tmp_path):
    bar = Detection('optic_disc', (650.0, 300.0, 810.0, 330.0), 0.9)       # 160 x 30 px: width/height 5.33
    real = Detection('optic_disc', _boxes('0015', 'optic_disc')[0], 0.5)
    rec = _process(FundusEngine(BoxListDetector([bar, real]), detector_name='fake'), '0015', tmp_path)
    assert rec.provenance.landmarks['optic_disc'] == 'detector' and rec.boxes('optic_disc') == [real.box_px]
    assert rec.provenance.flags == [
        'implausible optic-disc box from the detector: (650.0, 300.0, 810.0, 330.0) score 0.9: width/height 5.33 '
        "(plausible 0.5-2); not used, the detector's next optic disc is used"]


def test_implausible_disc_without_locator_leaves_no_disc(tmp_path):
    corner = Detection('optic_disc', (1045.0, 0.0, 1046.0, 0.6), 0.31)
    rec = _process(FundusEngine(BoxListDetector([corner]), locator=None), '0015', tmp_path)
    assert rec.boxes('optic_disc') == [] and rec.laterality is None
    assert rec.provenance.flags[0].endswith('; not used, no other optic disc is available')


# --- a detected fovea is a 1-DD box -----------------------------------------------------------------------------

def test_a_detected_fovea_is_the_one_dd_box_centred_on_the_detection(tmp_path):
    """0015: CODRAS disc (652.5, 252.5, 805.25, 408.5), DD (152.75 + 156) / 2 = 154.375 px; a 0.7-px fovea
    detection centred on the annotated fovea (386.75, 385.75) -> the 154.375-px box around that centre."""
    disc = Detection('optic_disc', _boxes('0015', 'optic_disc')[0], 0.9)
    dot = Detection('fovea', (386.4, 385.4, 387.1, 386.1), 0.6)
    detector = BoxListDetector([disc, dot], classes=('optic_disc', 'fovea', 'hard_exudates'))
    rec = _process(FundusEngine(detector, detector_name='fake'), '0015', tmp_path)
    [fovea] = [f for f in rec.findings if f.label == 'fovea']
    assert (fovea.source, fovea.score) == ('detector', 0.6) and rec.provenance.landmarks['fovea'] == 'detector'
    half = 154.375 / 2
    assert fovea.box_px == pytest.approx((386.75 - half, 385.75 - half, 386.75 + half, 385.75 + half))
    # centre distance hypot(728.875 - 386.75, 330.5 - 385.75) = 346.56 px = 2.24 DD
    assert 'The fovea, as detected, lies 2.2 DD from the optic disc.' in cognitive_chain(rec, 'en')


def test_a_detected_fovea_without_disc_is_sized_by_the_width_prior(tmp_path):
    dot = Detection('fovea', (386.4, 385.4, 387.1, 386.1), 0.6)
    rec = _process(FundusEngine(BoxListDetector([dot], classes=('fovea',)), locator=None), '0015', tmp_path)
    x1, y1, x2, y2 = rec.boxes('fovea')[0]
    assert x2 - x1 == pytest.approx(0.13 * 1072) == pytest.approx(y2 - y1)   # DD_PER_IMAGE_WIDTH * width


# --- the chain's words about the detector and the photograph -----------------------------------------------------

def test_the_chain_names_the_detector_by_its_config_stem_never_its_files(tmp_path):
    from fundusexpert_plugin.engine.spec import EngineSpec
    name = EngineSpec(config='work/rtmdet-tiny_idrid-lesions.py', checkpoint='work/rtmdet-tiny_idrid-lesions.pth',
                      ).detector_name
    disc = Detection('optic_disc', _boxes('0015', 'optic_disc')[0], 0.9)
    rec = _process(FundusEngine(BoxListDetector([disc]), detector_name=name), '0015', tmp_path)
    assert rec.provenance.stages['localization'] == \
        'mmdet:rtmdet-tiny_idrid-lesions.py@rtmdet-tiny_idrid-lesions.pth'        # exact identity kept
    en, zh = cognitive_chain(rec, 'en'), cognitive_chain(rec, 'zh')
    assert 'Hard exudates: not detected by the detector (rtmdet-tiny_idrid-lesions) at score \u2265 0.3.' in en
    assert '硬性渗出：检测器（rtmdet-tiny_idrid-lesions）在分数\u22650.3时未检出。' in zh
    assert 'by the detector (rtmdet-tiny_idrid-lesions) at score' in en.splitlines()[-1]   # the conclusion too
    for text in (en, zh):
        assert '.pth' not in text and '.py' not in text and 'mmdet:' not in text and '@' not in text


def test_a_greyscale_photograph_is_not_called_colour(tmp_path):
    from PIL import Image
    grey = tmp_path / '0015_grey.png'
    with Image.open(SAMPLE_DIR / SAMPLE['0015']['image']) as im:
        im.convert('L').save(grey)
    rec = FundusEngine(None).process(grey, out_dir=tmp_path / 'out')
    assert rec.provenance.stages['image'] == 'L->RGB'
    en, zh = cognitive_chain(rec, 'en'), cognitive_chain(rec, 'zh')
    assert en.splitlines()[0].startswith('This is a greyscale fundus photograph') and 'colour' not in en
    assert zh.splitlines()[0].startswith('这是一张') and '灰度眼底照片' in zh and '彩色' not in zh
    colour = _process(FundusEngine(None), '0015', tmp_path)
    assert cognitive_chain(colour, 'en').startswith('This is a colour fundus photograph of the right eye')
    assert cognitive_chain(colour, 'zh').startswith('这是一张右眼的彩色眼底照片')


def test_a_1bit_photo_without_a_solid_field_of_view_has_no_landmarks_and_no_numpy_warning(tmp_path):
    import warnings

    import numpy as np
    from PIL import Image
    yy, xx = np.mgrid[0:712, 0:1072]                            # bright dots on thin diagonals, as 1-bit
    on = ((xx - 536) ** 2 + (yy - 356) ** 2 < 340 ** 2) & ((xx + yy) % 3 == 0)   # dithering of a dark photo
    Image.fromarray(on).save(tmp_path / 'bw1.png')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        rec = FundusEngine(None, detector_name='none').process(tmp_path / 'bw1.png', out_dir=tmp_path / 'out')
    assert rec.provenance.stages['image'] == '1->RGB' and 'landmarks' not in rec.provenance.stages
    assert (rec.findings, rec.laterality, rec.provenance.landmarks) == ([], None, {})
