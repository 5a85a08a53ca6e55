"""Tests of fundusexpert_plugin.detector.train (config building; a tiny real training run)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fundusexpert_plugin.detector import train as td

REPO_SAMPLE = Path(td.__file__).resolve().parents[1] / 'sample' / 'annotations.jsonl'


@pytest.mark.mmdet
def test_build_config_sets_classes_scale_data_and_schedule_on_one_base_level(tmp_path):
    pytest.importorskip('mmdet')
    text = td.DEFAULT_CONFIG.read_text()
    assert re.findall(r'^_base_ = (.*)$', text, flags=re.M) == [
        "'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'"]
    cfg = td.build_config(td.DEFAULT_CONFIG, classes=('optic_disc', 'microaneurysms'),
                          train_json=tmp_path / 't.json', train_root=tmp_path / 'imgs',
                          val_json=tmp_path / 'v.json', val_root=tmp_path / 'vimgs',
                          work_dir=tmp_path / 'w', img_scale=(512, 384), batch_size=3,
                          max_iters=100, lr=0.01, seed=7)
    assert cfg.model.bbox_head.num_classes == 2 and cfg.model.backbone.init_cfg is None
    assert cfg.train_dataloader.dataset.metainfo == dict(classes=('optic_disc', 'microaneurysms'))
    assert cfg.train_dataloader.dataset.ann_file == str(tmp_path / 't.json')
    assert cfg.test_dataloader.dataset.data_prefix.img == str(tmp_path / 'vimgs') + '/'
    scales = [t.get('scale') or t.get('size') or t.get('crop_size')
              for t in cfg.test_dataloader.dataset.pipeline + cfg.train_dataloader.dataset.pipeline
              if t.type in ('Resize', 'RandomResize', 'Pad', 'RandomCrop')]
    assert scales and all(tuple(s) == (512, 384) for s in scales)
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=100, val_interval=100)
    assert cfg.param_scheduler[0].end == 20 and cfg.param_scheduler[1].end == 100
    assert cfg.optim_wrapper.optimizer.lr == 0.01 and cfg.randomness.seed == 7
    assert cfg.custom_hooks == [] and cfg.default_hooks.checkpoint is None


@pytest.mark.mmdet
@pytest.mark.parametrize('max_iters, expected', [
    (1, [('CosineAnnealingLR', 0, 1)]),                 # no warmup below 5 iterations: cosine over [0, 1)
    (4, [('CosineAnnealingLR', 0, 4)]),
    (5, [('LinearLR', 0, 1), ('CosineAnnealingLR', 1, 5)]),
    (1000, [('LinearLR', 0, 50), ('CosineAnnealingLR', 50, 1000)]),   # the packaged warmup_iters = 50
])
def test_build_config_schedule_for_short_and_long_runs(tmp_path, max_iters, expected):
    pytest.importorskip('mmdet')
    cfg = td.build_config(td.DEFAULT_CONFIG, classes=('optic_disc',), train_json=tmp_path / 't.json',
                          train_root=tmp_path, val_json=tmp_path / 'v.json', val_root=tmp_path,
                          work_dir=tmp_path / 'w', img_scale=(256, 256), batch_size=1,
                          max_iters=max_iters, lr=None, seed=0)
    assert [(s.type, s.begin, s.end) for s in cfg.param_scheduler] == expected
    assert cfg.param_scheduler[-1].T_max == max_iters - expected[-1][1]


def _downscaled_photos(tmp_path: Path, n: int = 4, width: int = 320) -> Path:
    """Copy ``n`` photos, downscaled to ``width`` px with Pillow, plus a CODRAS jsonl whose boxes are
    scaled by the same factor (the bundled sample stays untouched)."""
    from PIL import Image

    src = REPO_SAMPLE
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    # the first n images that have lesion boxes besides the optic disc
    rows = [r for r in rows if {a['label'] for a in r['annotations']} - {'optic_disc'}][:n]
    out = tmp_path / 'data'
    (out / 'images').mkdir(parents=True)
    lines = []
    for r in rows:
        with Image.open(src.parent / r['image']) as im:
            scale = width / im.width
            small = im.resize((width, round(im.height * scale)), Image.BILINEAR)
            small.save(out / 'images' / Path(r['image']).name, quality=92)
        anns = [dict(label=a['label'], bbox_xyxy=[min(v * scale, lim) for v, lim in
                                                  zip(a['bbox_xyxy'], [small.width, small.height] * 2)])
                for a in r['annotations']]
        lines.append(json.dumps(dict(image='images/' + Path(r['image']).name, width=small.width,
                                     height=small.height, annotations=anns)))
    (out / 'annotations.jsonl').write_text('\n'.join(lines) + '\n')
    return out


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    pytest.importorskip('mmdet')
    tmp = tmp_path_factory.mktemp('train_detector')
    data = _downscaled_photos(tmp)
    from fundusexpert_plugin.sources.codras import read_codras
    result = td.train_detector(list(read_codras(data / 'annotations.jsonl')), tmp / 'work',
                               val_split=0.25, max_iters=4, img_scale=(320, 320), batch_size=2,
                               seed=0, log_level='WARNING',
                               annotation_skips={'records': {}, 'boxes/items': {'box_outside_image': 1},
                                                 'messages': ['a.jsonl:2: box outside']})
    return result, data


@pytest.mark.slow
@pytest.mark.mmdet
def test_training_few_iterations_gives_metrics_and_a_weights_only_checkpoint(trained):
    import torch

    result, _ = trained
    assert (result.n_train_images, result.n_val_images) == (3, 1)
    assert result.classes == ('optic_disc', 'hard_exudates', 'haemorrhages')
    m = result.metrics
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75'):
        assert 0.0 <= m[key] <= 1.0
    assert set(m['AP50_per_class']) == set(result.classes) and m['n_gt_boxes'] > 0
    written = json.loads((result.checkpoint.parent / 'metrics.json').read_text())
    assert written['n_images'] == 1
    assert written['annotation_skips'] == m['annotation_skips'] == {
        'records': {}, 'boxes/items': {'box_outside_image': 1}, 'messages': ['a.jsonl:2: box outside']}
    ckpt = torch.load(result.checkpoint, weights_only=True)
    assert ckpt['meta']['dataset_meta']['classes'] == result.classes
    assert any(k.startswith('backbone.') for k in ckpt['state_dict'])
    text = result.config.read_text()
    assert '_base_' not in text and 'test_dataloader' in text and 'train_dataloader' in text
    # the Runner's dump of the resolved temporary config (0_<stem>.py, no test pipeline) is not left behind
    assert sorted(p.name for p in result.config.parent.glob('*.py')) == [result.config.name]


@pytest.mark.slow
@pytest.mark.mmdet
def test_unusable_detector_files_are_one_line_errors(trained, tmp_path):
    from fundusexpert_plugin.core.errors import FundusDataError
    from fundusexpert_plugin.detector.detect import Detector

    result, _ = trained
    garbage = tmp_path / 'g.pth'
    garbage.write_text('garbage\n')
    with pytest.raises(FundusDataError, match=rf'{garbage}: not a loadable checkpoint \(UnpicklingError: '):
        Detector(result.config, garbage)
    with pytest.raises(FundusDataError, match=rf'{result.checkpoint}: not an MMDetection config \(a binary file; '
                                              'is it the checkpoint'):
        Detector(result.checkpoint, result.checkpoint)
    no_test = tmp_path / '0_model.py'
    no_test.write_text(result.config.read_text() + '\ntest_dataloader = None\ntest_pipeline = None\n')
    with pytest.raises(FundusDataError, match=r'0_model\.py: no test_dataloader, so images'):
        Detector(no_test, result.checkpoint)
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(type=\n')
    with pytest.raises(FundusDataError, match=r'broken\.py: not a valid MMDetection config: SyntaxError'):
        Detector(broken, result.checkpoint)


@pytest.mark.slow
@pytest.mark.mmdet
def test_trained_detector_returns_boxes_in_original_pixels(trained):
    import cv2

    from fundusexpert_plugin.detector.detect import Detector

    result, data = trained
    det = Detector(result.config, result.checkpoint, score_threshold=0.0)
    assert det.classes == result.classes
    small = cv2.imread(str(next((data / 'images').iterdir())))  # 320 x 213: network scale 1.0
    big = cv2.resize(small, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    # 640 x 426 is resized by exactly 0.5 to the same network input, so its boxes must be 2x
    p_small, p_big = det.predict(small), det.predict(big)
    assert len(p_small) == len(p_big) > 0
    np.testing.assert_allclose([d.box_px for d in p_big], [np.multiply(d.box_px, 2) for d in p_small],
                               rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose([d.score for d in p_big], [d.score for d in p_small], rtol=1e-4)
    tiled = Detector(result.config, result.checkpoint, score_threshold=0.0, tile_size=320,
                     tile_overlap=0.25)
    boxes = np.array([d.box_px for d in tiled.predict(big)])
    assert len(boxes) and boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= 640
    assert boxes[:, 3].max() <= 426 and (boxes[:, 2:] > boxes[:, :2]).all()
    assert boxes[:, 0].max() > 320  # boxes of right-hand tiles were shifted back
