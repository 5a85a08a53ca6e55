"""The ``records`` format of train-detector: FundusGen records jsonl -> detection samples."""
from fundusexpert_plugin.core.record import write_records
from fundusexpert_plugin.detector.coco import samples_from_records
from fundusexpert_plugin.sample import SAMPLE_DIR, sample_records
from fundusexpert_plugin.sources.registry import read_annotations


def _samples(path, classes=None):
    # the records point at the sample's photographs by absolute path: that folder is the dataset folder
    return samples_from_records(list(read_annotations(path, 'records', SAMPLE_DIR)), classes)


def test_records_jsonl_reads_annotation_boxes(tmp_path):
    records = sample_records('heldout')              # 0005, 0014, 0049, 0015; absolute image paths
    path = write_records(records, tmp_path / 'records.jsonl')
    data = _samples(path)
    assert [s.file_name.rsplit('/', 1)[-1] for s in data.samples] == ['0005.jpg', '0014.jpg', '0049.jpg', '0015.jpg']
    # 0005: disc, haemorrhage, exudate, in annotations.jsonl order; 0015: disc + the IDRiD fovea point
    assert data.samples[0].labels == ('optic_disc', 'haemorrhages', 'hard_exudates')
    assert data.samples[3].labels == ('optic_disc', 'fovea')
    assert data.classes == ('optic_disc', 'fovea', 'hard_exudates', 'haemorrhages')
    lesions = _samples(path, classes=['hard_exudates', 'haemorrhages'])
    assert lesions.dropped == {'class optic_disc not requested': 4, 'class fovea not requested': 1}


def test_gpu_lesion_recipe_resolves_over_the_packaged_config():
    """examples/recipes/detector_rtmdet-s_ddr-lesions.py: local base -> packaged config -> mmdet:: base."""
    from pathlib import Path

    from fundusexpert_plugin.detector.detect import load_config
    recipe = Path(__file__).resolve().parents[2] / 'examples' / 'recipes' / 'detector_rtmdet-s_ddr-lesions.py'
    cfg = load_config(recipe)
    assert (cfg.model.backbone.deepen_factor, cfg.model.backbone.widen_factor) == (0.33, 0.5)   # RTMDet-s
    assert cfg.model.backbone.init_cfg is None                      # nothing downloaded (packaged config)
    assert cfg.model.bbox_head.num_classes == 4 and cfg.train_cfg.max_iters == 12000
    assert [t['type'] for t in cfg.train_pipeline][:3] == ['LoadImageFromFile', 'LoadAnnotations', 'RandomResize']


def test_gpu_lesion_recipe_schedule_survives_train_detector(tmp_path):
    """train-detector rebuilds the schedule from max_iters and the config's warmup_iters: the recipe's 500."""
    from pathlib import Path

    from fundusexpert_plugin.detector.train import build_config
    recipe = Path(__file__).resolve().parents[2] / 'examples' / 'recipes' / 'detector_rtmdet-s_ddr-lesions.py'
    kw = dict(classes=('hard_exudates', 'haemorrhages', 'microaneurysms', 'cotton_wool_spots'),
              train_json=tmp_path / 't.json', train_root=tmp_path, val_json=tmp_path / 'v.json', val_root=tmp_path,
              work_dir=tmp_path / 'w', img_scale=(1536, 1536), batch_size=8, lr=None, seed=0)
    cfg = build_config(recipe, max_iters=12000, **kw)
    warm, cos = cfg.param_scheduler
    assert (warm.begin, warm.end, cos.begin, cos.end, cos.T_max) == (0, 500, 500, 12000, 11500)
    assert cfg.optim_wrapper.optimizer.lr == 0.004 and cos.eta_min == 0.004 * 0.05
    # a short smoke run (1000 iterations) keeps a fifth of itself as warmup: 200
    assert build_config(recipe, max_iters=1000, **kw).param_scheduler[0].end == 200
