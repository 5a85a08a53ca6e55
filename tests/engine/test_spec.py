"""Tests of fundusexpert_plugin/engine/spec.py: options -> FundusEngine, written once for both runners."""
import pickle

import pytest

from fundusexpert_plugin.engine import FundusEngine
from fundusexpert_plugin.engine.expand import MLLMDescriber, RuleDescriber
from fundusexpert_plugin.engine.spec import EngineSpec


class _RecordingDetector:
    """Stands in for detect.Detector: keeps the arguments it was built with (no mmdet)."""

    classes = ('optic_disc', 'hard_exudates')

    def __init__(self, config, checkpoint=None, **kwargs):
        self.config, self.checkpoint, self.kwargs = config, checkpoint, kwargs


@pytest.fixture
def recording_detector(monkeypatch):
    import fundusexpert_plugin.detector.detect as detect
    monkeypatch.setattr(detect, 'Detector', _RecordingDetector)


def test_spec_builds_the_engine_with_every_option(recording_detector, tmp_path):
    labels = tmp_path / 'labels.csv'
    labels.write_text('image,dr_grade\nsub/0001.jpg,2\n')
    spec = EngineSpec(str(tmp_path / 'rtm.py'), str(tmp_path / 'rtm.pth'), device='cpu', score_threshold=0.4,
                      tile_size=1024, tile_overlap=0.25, languages=('zh',), claim_absent=True,
                      source_dataset='clinic A', licence='internal', image_labels=str(labels))
    engine = spec.build()
    assert isinstance(engine, FundusEngine) and isinstance(engine.describer, RuleDescriber)
    det = engine.detector
    assert (det.config, det.checkpoint) == (str(tmp_path / 'rtm.py'), str(tmp_path / 'rtm.pth'))
    assert det.kwargs == {'device': 'cpu', 'score_threshold': 0.4, 'tile_size': 1024, 'tile_overlap': 0.25}
    assert engine.languages == ('zh',) and engine.claim_absent is True
    assert (engine.source_dataset, engine.licence) == ('clinic A', 'internal')
    assert engine.detector_name == 'mmdet:rtm.py@rtm.pth'
    assert engine.image_labels.for_photo('sub/0001', tmp_path / 'sub' / '0001.jpg') == {'dr_grade': '2'}
    assert engine.image_labels.for_photo('sub/0001', tmp_path / 'sub' / '0001.png') == {}  # another file


def test_the_mllm_describer_is_chosen_by_the_endpoint_options(recording_detector):
    pytest.importorskip('openai')
    spec = EngineSpec('d.py', 'c.pth', mllm_base_url='http://127.0.0.1:8000/v1', mllm_model='qwen')
    assert spec.describer_kind == 'openai'
    engine = spec()  # the zero-argument factory the Ray actors call
    assert isinstance(engine.describer, MLLMDescriber) and engine.describer.name == 'openai:qwen'
    rule = EngineSpec('d.py', 'c.pth', describer='rule', mllm_base_url='http://x/v1', mllm_model='qwen')
    assert rule.describer_kind == 'rule' and EngineSpec('d.py', 'c.pth').describer_kind == 'rule'


@pytest.mark.parametrize('kwargs, message', [
    ({'describer': 'openai'}, 'needs both mllm_base_url and mllm_model'),
    ({'describer': 'openai', 'mllm_base_url': 'http://x/v1'}, 'needs both'),
    ({'describer': 'llava'}, "describer 'llava'"),
    ({'languages': ('en', 'fr')}, "unknown language 'fr'"),
    ({'score_threshold': 1.5}, 'score_threshold 1.5'),
    ({'tile_size': -5}, r'tile_size -5: expected a window of at least 1 pixel'),
    ({'tile_overlap': 1.0}, r'tile_overlap 1.0: expected a fraction in \[0, 1\)'),
    ({'max_image_pixels': 0}, 'max_image_pixels 0: expected at least 1 pixel'),
])
def test_bad_options_fail_at_construction_before_anything_loads(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EngineSpec('d.py', 'c.pth', **kwargs)


def test_spec_pickles_as_plain_values():
    spec = EngineSpec('/shared/d.py', '/shared/c.pth', device='auto', languages=['en'])
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and again.languages == ('en',)


def test_build_sets_the_pixel_limit_of_the_process_default_when_none(recording_detector, monkeypatch):
    import fundusexpert_plugin.core.images as images
    from PIL import Image
    monkeypatch.setattr(images, 'MAX_PIXELS', images.MAX_PIXELS)
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', Image.MAX_IMAGE_PIXELS)
    EngineSpec(max_image_pixels=5000).build()
    assert (images.MAX_PIXELS, Image.MAX_IMAGE_PIXELS) == (5000, images.DEFAULT_MAX_PIXELS)
    EngineSpec().build()
    assert images.MAX_PIXELS == images.DEFAULT_MAX_PIXELS == 89_478_485
