"""Bundled real photographs: detector trained briefly on CPU -> engine over the held-out images ->
records -> FundusGen -> `swift sft` 2 steps on the result."""
import json

import pytest

from fundusexpert_plugin.sample import SAMPLE_DIR

pytestmark = [pytest.mark.slow, pytest.mark.mmdet]


def test_detector_engine_fundusgen_sft(tmp_path, tiny_qwen_dir):
    pytest.importorskip('mmdet')
    from fundusexpert_plugin.build import build_fundusgen
    from fundusexpert_plugin.cli.demo import last_checkpoint, offline_env, run_logged, sft_command
    from fundusexpert_plugin.engine import FundusEngine
    from fundusexpert_plugin.engine.batch import merge_shards, run_engine
    from fundusexpert_plugin.detector.detect import Detector
    from fundusexpert_plugin.detector.train import train_detector
    from fundusexpert_plugin.core.record import read_records

    rows = [json.loads(line) for line in (SAMPLE_DIR / 'annotations.jsonl').read_text().splitlines()]
    train = tmp_path / 'train.jsonl'
    train.write_text(''.join(json.dumps(r) + '\n' for r in rows if r['split'] == 'train'))
    from fundusexpert_plugin.sources.codras import read_codras
    # the sample's 2-px fovea points are landmarks, not detector targets: train on the three CODRAS classes
    result = train_detector(list(read_codras(train, SAMPLE_DIR)), tmp_path / 'det', val_split=0.25, max_iters=4,
                            img_scale=(320, 320), batch_size=2, seed=0, log_level='WARNING',
                            classes=('optic_disc', 'hard_exudates', 'haemorrhages'))
    assert result.classes == ('optic_disc', 'hard_exudates', 'haemorrhages')

    detector = Detector(result.config, result.checkpoint, score_threshold=0.01)
    heldout = [SAMPLE_DIR / r['image'] for r in rows if r['split'] == 'heldout']
    summary = run_engine(FundusEngine(detector, detector_name='rtmdet-tiny (4 iterations)'), heldout,
                         tmp_path / 'engine', image_root=SAMPLE_DIR / 'images', progress=False)
    assert summary.written == 4 and summary.skipped == {}
    records = list(read_records(merge_shards(tmp_path / 'engine')))
    assert [r.record_id for r in records] == ['0005', '0014', '0015', '0049']
    for rec in records:
        assert (rec.width, rec.height) == (1072, 712)
        assert all(0.01 <= f.score <= 1 for f in rec.findings if f.source == 'detector')
        # the landmark locator adds the fovea (and the disc where the 4-iteration detector finds none)
        assert all(f.label in ('optic_disc', 'fovea') and f.score is None for f in rec.findings if f.source == 'locator')
        assert rec.provenance.landmarks['fovea'] == 'locator'
        assert rec.provenance.stages['localization'] == 'rtmdet-tiny (4 iterations)'

    built = build_fundusgen(records, tmp_path / 'fundusgen', image_dir=tmp_path / 'engine', image_root=SAMPLE_DIR,
                            languages=['en'])
    assert built.rows_per_task['grounded_report'] == 4
    env = offline_env(FUNDUSGEN_DIR=str(tmp_path / 'fundusgen'), FUNDUSEXPERT_CACHE=str(tmp_path / 'cache'))
    run_logged(sft_command(tiny_qwen_dir, tmp_path / 'sft', template='fundusexpert_qwen2_5_vl',
                           dataset=['fundusgen:grounded_report'], steps=2, seed=0), tmp_path / 'sft.log', env)
    assert "'global_step/max_steps': '2/2'" in (tmp_path / 'sft.log').read_text()
    assert (last_checkpoint(tmp_path / 'sft') / 'args.json').exists()
