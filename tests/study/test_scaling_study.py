"""The whole scaling study with the tiny Qwen2.5-VL on the bundled sample: 3 points, 2 steps each."""
import argparse
import json

import pytest

from fundusexpert_plugin.cli import study as study_cli

pytestmark = pytest.mark.slow


def test_study_runs_fits_and_resumes(tiny_qwen_dir, tmp_path, monkeypatch):
    from fundusexpert_plugin.build import build_sample
    for key, value in {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
                       'MODELSCOPE_OFFLINE': '1', 'MAX_PIXELS': '50176', 'TOKENIZERS_PARALLELISM': 'false',
                       'FUNDUSEXPERT_CACHE': str(tmp_path / 'cache')}.items():
        monkeypatch.setenv(key, value)
    data = tmp_path / 'fundusgen'
    build_sample(data, languages=['en'])
    parser = argparse.ArgumentParser()
    study_cli.add_arguments(parser)
    swift = ['--model', str(tiny_qwen_dir), '--template', 'fundusexpert_qwen2_5_vl', '--tuner_type', 'full',
             '--torch_dtype', 'float32', '--max_steps', '2', '--save_steps', '2', '--num_train_epochs', '100',
             '--per_device_train_batch_size', '2', '--per_device_eval_batch_size', '2', '--learning_rate', '5e-3',
             '--max_length', '1024', '--logging_steps', '1', '--save_only_model', 'true',
             '--split_dataset_ratio', '0', '--dataloader_num_workers', '0', '--check_model', 'false',
             '--report_to', 'none', '--gradient_checkpointing', 'false', '--gradient_accumulation_steps', '1']
    argv = ['--fundusgen', str(data / 'train'), '--heldout', str(data / 'heldout'), '--out', str(tmp_path / 'study'),
            '--fractions', '1/4', '1/2', '1', '--val-dataset', 'fundusgen_heldout:region_detection#4',
            '--eval-tasks', 'region_detection', '--eval-limit', '3', '--max-new-tokens', '16', '--n-boot', '200',
            '--infer-args', '--torch_dtype float32 --max_batch_size 4', '--', *swift]
    assert study_cli.run(parser.parse_args(argv)) == 0

    result = json.loads((tmp_path / 'study' / 'scaling.json').read_text())
    points = result['points']
    assert [p['fraction'] for p in points] == [0.25, 0.5, 1.0]
    n_rows = [p['n_rows'] for p in points]
    assert n_rows[0] < n_rows[1] < n_rows[2]
    train_rows = sum(len((data / 'train' / f).read_text().splitlines())
                     for f in [p.name for p in (data / 'train').glob('*.jsonl')])
    assert n_rows[2] == train_rows
    for p in points:
        ckpt = p['checkpoint']
        state = json.loads(open(f'{ckpt}/trainer_state.json').read())
        evals = [e['eval_loss'] for e in state['log_history'] if 'eval_loss' in e]
        assert p['heldout_loss'] == evals[-1] > 0  # the value swift logged, not a placeholder
        assert state['global_step'] == 2
        assert set(p['metrics']['region_detection']) >= {'grounding_acc50', 'grounding_best_match_iou'}
        label = {0.25: 'f1_4', 0.5: 'f1_2', 1.0: 'f1'}[p['fraction']]
        metrics = json.loads((tmp_path / 'study' / 'runs' / 'chain' / label / 'eval' / 'region_detection'
                              / 'metrics.json').read_text())
        assert p['metrics']['region_detection']['grounding_acc50'] == metrics['grounding']['acc50']
    fit = result['fits']['heldout_loss']['chain']
    assert fit['n_points'] == 3 and fit['c'] is None
    import numpy as np
    slope, _ = np.polyfit(np.log(n_rows), np.log([p['heldout_loss'] for p in points]), 1)
    assert fit['k'] == pytest.approx(slope, abs=1e-6)  # 2-parameter log-space LSQ is the OLS line
    assert fit['exponent']['loss_form']['k'] == pytest.approx(-fit['k'])
    assert fit['k_ci'][0] <= fit['k'] <= fit['k_ci'][1]
    png = tmp_path / 'study' / 'scaling.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 5000

    # resume: finished points are read back, not re-run
    logs = sorted((tmp_path / 'study' / 'runs').glob('*/*/sft.log'))
    assert len(logs) == 3
    before = [log.stat().st_mtime_ns for log in logs]
    assert study_cli.run(parser.parse_args(argv)) == 0
    assert [log.stat().st_mtime_ns for log in logs] == before
    assert json.loads((tmp_path / 'study' / 'scaling.json').read_text())['points'] == points

    # other swift arguments: the finished points were trained otherwise, so they are not fitted with new ones
    other = argv[:-len(swift)] + [a if a != '2' else '3' for a in swift]
    from fundusexpert_plugin.core.errors import FundusDataError
    with pytest.raises(FundusDataError, match=r'study_settings.json: the runs in .* were made with other options '
                                              r'\(swift sft arguments \[.*"--max_steps", "2"'):
        study_cli.run(parser.parse_args(other))
    assert [log.stat().st_mtime_ns for log in logs] == before
