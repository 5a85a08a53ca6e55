"""Shared fixtures: offline environment, the bundled sample, small records."""
import os

import pytest

# Tests never reach a hub: fail fast instead of retrying the network.
for _key in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_DATASETS_OFFLINE', 'MODELSCOPE_OFFLINE'):
    os.environ.setdefault(_key, '1')
# Qwen2.5-VL's pixel budget is read when qwen_vl_utils is first imported: fix it before any test imports it
os.environ.setdefault('MAX_PIXELS', '50176')


@pytest.fixture(scope='session')
def sample_train():
    from fundusexpert_plugin.sample import sample_records
    return {r.record_id: r for r in sample_records('train')}


@pytest.fixture
def make_record():
    """Factory for a small valid record (image-less unless ``image`` is given)."""
    from fundusexpert_plugin.core.record import FundusGenRecord

    def make(findings=(), width=1000, height=800, **kw):
        data = {
            'record_id': kw.pop('record_id', 'r1'), 'image': kw.pop('image', 'img.jpg'),
            'width': width, 'height': height,
            'findings': [{'label': lab, 'box_px': box} for lab, box in findings],
            'provenance': kw.pop('provenance', {'source_dataset': 'test', 'licence': 'CC0',
                                                'annotated_labels': ['optic_disc', 'hard_exudates',
                                                                     'haemorrhages']}),
        }
        data.update(kw)
        return FundusGenRecord.model_validate(data)
    return make


@pytest.fixture(scope='session')
def tiny_qwen_dir(tmp_path_factory):
    from fundusexpert_plugin.testing.tiny_models import make_tiny_model
    return make_tiny_model('qwen2_5_vl', tmp_path_factory.mktemp('tiny_qwen'))


@pytest.fixture(scope='session')
def tiny_internvl_dir(tmp_path_factory):
    from fundusexpert_plugin.testing.tiny_models import make_tiny_model
    return make_tiny_model('internvl', tmp_path_factory.mktemp('tiny_internvl'))


@pytest.fixture(scope='session')
def swift_registered(tmp_path_factory):
    """ms-swift with this plugin registered; the sample FundusGen cache in a temp folder."""
    os.environ['FUNDUSEXPERT_CACHE'] = str(tmp_path_factory.mktemp('fx_cache'))
    os.environ.setdefault('MAX_PIXELS', '50176')
    from fundusexpert_plugin.swift_plugin.registry import register_all
    register_all()
    return True


def _codras_image(path, width=100, height=80):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (width, height)).save(path)


@pytest.fixture
def codras_dir(tmp_path):
    """Two 100x80 photos and a CODRAS-style annotations.jsonl (2 boxes on 0001, none on 0002)."""
    import json
    _codras_image(tmp_path / 'images' / '0001.jpg')
    _codras_image(tmp_path / 'images' / '0002.jpg')
    rows = [
        dict(image='images/0001.jpg', codras_id='0001', width=100, height=80, annotations=[
            dict(label='haemorrhage', class_id=2, bbox_xyxy=[10, 20, 30, 40]),
            dict(label='optic_disc', class_id=0, bbox_xyxy=[50, 10, 90, 60])]),
        dict(image='images/0002.jpg', codras_id='0002', width=100, height=80, annotations=[]),
    ]
    (tmp_path / 'annotations.jsonl').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    return tmp_path
