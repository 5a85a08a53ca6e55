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
    assert 'No lesion type is looked for on this image' in text


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
    assert 'Hard exudates: not detected by rtmdet at score \u2265 0.3.' in en
    assert 'Haemorrhages: not detected by rtmdet at score \u2265 0.3.' in en
    assert 'microaneurysms' not in en and 'No lesions are annotated' not in en    # not trained: nothing said
    assert 'this does not show that they are absent' in en
    assert '硬性渗出：rtmdet在分数\u22650.3时未检出。' in zh
    assert 'consistent with' not in en


@pytest.mark.parametrize('locator', [None])
def test_locator_off_keeps_detector_only_behaviour(tmp_path, locator):
    rec = _process(FundusEngine(BoxListDetector([]), locator=locator), '0015', tmp_path)
    assert rec.boxes('optic_disc') == [] and rec.laterality is None and rec.provenance.landmarks == {}
