"""A real `swift rlhf --rlhf_type grpo` (2 steps, transformers rollout) with the plugin's rewards on FundusGen."""
import textwrap

import pytest

from fundusexpert_plugin.cli.demo import last_checkpoint, offline_env, run_logged, swift_executable

pytestmark = pytest.mark.slow

# A second plugin file, as a user would add their own reward: its values differ within a group (so the
# advantages, the loss and the gradient are not zero with an untrained model whose boxes never parse),
# and it records the row columns ms-swift hands to rewards.
SPREAD_PLUGIN = '''
import json, os
from swift.rewards import ORM, orms


class CompletionLengthSpread(ORM):
    def __call__(self, completions, **kwargs):
        with open(os.environ['FX_REWARD_KWARGS'], 'a') as f:
            for i, _ in enumerate(completions):
                # a batch of known-absent rows only has no `objects` column at all
                f.write(json.dumps({k: (kwargs.get(k) or [None] * len(completions))[i]
                                    for k in ('objects', 'kind', 'target', 'width')}) + '\\n')
        return [(len(c) % 7) / 6 for c in completions]


orms['completion_length_spread'] = CompletionLengthSpread
'''


def test_grpo_two_steps_logs_our_rewards_and_writes_a_checkpoint(tiny_qwen_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.core.jsonl import load_jsonl
    from fundusexpert_plugin.swift_plugin.registry import plugin_path

    fundusgen = tmp_path / 'fundusgen'
    build_sample(fundusgen, languages=['en'])
    spread = tmp_path / 'spread_reward.py'
    spread.write_text(textwrap.dedent(SPREAD_PLUGIN))
    kwargs_log = tmp_path / 'reward_kwargs.jsonl'
    out = tmp_path / 'grpo'
    env = offline_env(FUNDUSGEN_DIR=str(fundusgen / 'train'), FUNDUSEXPERT_CACHE=str(tmp_path / 'cache'),
                      FX_REWARD_KWARGS=str(kwargs_log))
    cmd = [swift_executable(), 'rlhf', '--rlhf_type', 'grpo', '--model', str(tiny_qwen_dir),
           '--template', 'fundusexpert_qwen2_5_vl', '--external_plugins', plugin_path(), str(spread),
           '--dataset', 'fundusgen:region_detection',
           '--reward_funcs', 'fundus_grounding', 'fundus_format', 'completion_length_spread',
           '--use_vllm', 'false', '--num_generations', '2', '--per_device_train_batch_size', '2',
           '--max_completion_length', '24', '--temperature', '1.0', '--max_steps', '2', '--learning_rate', '1e-3',
           '--tuner_type', 'full', '--torch_dtype', 'float32', '--gradient_checkpointing', 'false',
           '--check_model', 'false', '--report_to', 'none', '--logging_steps', '1', '--save_steps', '2',
           '--save_only_model', 'true', '--add_version', 'false', '--split_dataset_ratio', '0',
           '--dataloader_num_workers', '0', '--seed', '0', '--output_dir', str(out)]
    run_logged(cmd, tmp_path / 'grpo.log', env)

    logs = [e for e in load_jsonl(str(out / 'logging.jsonl')) if 'reward' in e]
    assert len(logs) == 2
    for entry in logs:
        for name in ('FundusGrounding', 'FundusFormat'):   # logged under the class names
            assert 0.0 <= entry[f'rewards/{name}/mean'] <= 1.0
    assert any(e['rewards/CompletionLengthSpread/std'] > 0 for e in logs)   # a group with differing rewards

    ckpt = last_checkpoint(out)
    assert ckpt.name == 'checkpoint-2'
    before, after = load_file(str(tiny_qwen_dir / 'model.safetensors')), load_file(str(ckpt / 'model.safetensors'))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)          # the weights moved

    # the rewards saw the rows' own ground truth: objects in original pixels, as in the FundusGen file
    rows = {(r['record_id'], r['target']): r for r in load_jsonl(str(fundusgen / 'train' / 'region_detection.jsonl'))}
    seen = load_jsonl(str(kwargs_log))
    assert len(seen) == 2 * 2 and all(s['kind'] == 'region_detection' and s['width'] == 1072 for s in seen)
    by_target = {}
    for r in rows.values():
        by_target.setdefault(r['target'], []).append((r.get('objects') or {}).get('bbox'))
    for s in seen:
        assert (s['objects'] or {}).get('bbox') in by_target[s['target']]
    assert all((s['objects'] or {}).get('bbox_type', 'real') == 'real' for s in seen)
