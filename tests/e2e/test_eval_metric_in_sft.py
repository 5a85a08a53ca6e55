"""`--eval_metric fundus_grounding --predict_with_generate true` inside a real `swift sft` evaluation."""
import json

import pytest

from fundusexpert_plugin.cli.demo import offline_env, run_logged, sft_command

pytestmark = pytest.mark.slow


def test_grounding_metric_is_logged_during_training(tmp_path, tiny_qwen_dir):
    from fundusexpert_plugin.build import build_sample
    build_sample(tmp_path / 'fg', languages=['en'])
    env = offline_env(FUNDUSGEN_DIR=str(tmp_path / 'fg' / 'train'), FUNDUSGEN_HELDOUT_DIR=str(tmp_path / 'fg' / 'heldout'),
                      FUNDUSEXPERT_CACHE=str(tmp_path / 'cache'))
    cmd = sft_command(tiny_qwen_dir, tmp_path / 'sft', template='fundusexpert_qwen2_5_vl',
                      dataset=['fundusgen:region_detection#4'], steps=2, seed=0)
    cmd[cmd.index('--eval_strategy') + 1] = 'steps'
    cmd += ['--val_dataset', 'fundusgen_heldout:region_detection#2', '--eval_steps', '2',
            '--eval_metric', 'fundus_grounding', '--predict_with_generate', 'true', '--max_new_tokens', '8',
            # with --predict_with_generate swift's default best-model metric is rouge-l, which this metric does not log
            '--metric_for_best_model', 'grounding_acc50']
    run_logged(cmd, tmp_path / 'sft.log', env)
    logs = [json.loads(line) for line in next((tmp_path / 'sft').glob('**/logging.jsonl')).read_text().splitlines()]
    evals = [entry for entry in logs if 'eval_grounding_acc50' in entry]
    assert evals, logs
    # the two sampled held-out rows hold at least one reference box each; the 2-step model writes no box
    assert evals[-1]['eval_grounding_n_gt'] >= 2 and evals[-1]['eval_grounding_acc50'] == 0.0
