"""benchmarks/gpu_check.sh: the ~1B config, and the whole check run with --tiny on a CPU."""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def gpu_check():
    spec = importlib.util.spec_from_file_location('gpu_check_under_test', REPO / 'benchmarks' / 'gpu_check.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_model_has_about_one_billion_parameters(gpu_check):
    config = gpu_check.one_b_config()
    assert 0.95e9 < gpu_check.count_parameters(config) < 1.15e9   # 1.05 B, counted on the meta device
    assert config.image_token_id == 151655 and config.text_config.vocab_size == 151680


def _positive(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_tiny_check_writes_the_result_json_with_positive_numbers(gpu_check, tmp_path):
    out = tmp_path / 'gpu_check_tiny.json'
    env = {**os.environ, 'PYTHON': sys.executable}
    proc = subprocess.run(['bash', str(REPO / 'benchmarks' / 'gpu_check.sh'), '--tiny', '--out', str(out),
                           '--work-dir', str(tmp_path / 'work')],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(gpu_check.RESULT_KEYS) <= set(result)
    assert result['mode'] == 'tiny' and result['schema'] == 'fundusexpert-gpu-check/1'
    assert _positive(result['model']['parameters']) and _positive(result['total_wall_s'])
    for arm in ('plugin', 'stock'):
        row = result['sft'][arm]
        assert set(gpu_check.SFT_KEYS) <= set(row), arm
        for key in ('tokens_per_s', 'samples_per_s', 'peak_memory_gib', 'final_loss', 'wall_s', 'measured_steps'):
            assert _positive(row[key]), (arm, key, row[key])
        assert row['steps'] == 3
    assert result['sft']['plugin']['loss_type'] == 'fundus_grounding'
    assert result['sft']['plugin']['template'] == 'fundusexpert_qwen2_5_vl'
    assert result['sft']['stock']['template'] == 'qwen2_5_vl' and result['sft']['stock']['loss_scale'] == 'default'
    assert all(_positive(v) for v in result['sft']['plugin_over_stock'].values())
    infer = result['infer']['transformers']
    assert set(gpu_check.INFER_KEYS) <= set(infer)
    for key in ('num_samples', 'num_generated_tokens', 'runtime_s', 'tokens_per_s', 'samples_per_s', 'wall_s'):
        assert _positive(infer[key]), (key, infer[key])
