"""A real `swift sft` (2 steps) and `swift infer` in subprocesses, with the plugin, on FundusGen."""
import json

import pytest

from fundusexpert_plugin.cli.demo import infer_command, last_checkpoint, offline_env, run_logged, sft_command

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def fundusgen_dir(tmp_path_factory):
    from fundusexpert_plugin.build import build_sample
    out = tmp_path_factory.mktemp('fundusgen')
    build_sample(out, languages=['en'])
    return out


@pytest.mark.parametrize('family,template', [('qwen2_5_vl', 'fundusexpert_qwen2_5_vl'),
                                             ('internvl', 'fundusexpert_internvl')])
def test_sft_two_steps_then_infer_reimports_plugin(family, template, fundusgen_dir, tmp_path, request):
    model_dir = request.getfixturevalue('tiny_qwen_dir' if family == 'qwen2_5_vl' else 'tiny_internvl_dir')
    env = offline_env(FUNDUSGEN_DIR=str(fundusgen_dir / 'train'), FUNDUSGEN_HELDOUT_DIR=str(fundusgen_dir / 'heldout'),
                      FUNDUSEXPERT_CACHE=str(tmp_path / 'cache'))
    run_logged(sft_command(model_dir, tmp_path / 'sft', template=template, steps=2, seed=0,
                           dataset=['fundusgen:region_detection', 'fundusgen:grounded_report#4']),
               tmp_path / 'sft.log', env)
    ckpt = last_checkpoint(tmp_path / 'sft')
    args = json.loads((ckpt / 'args.json').read_text())
    assert args['template'] == template
    assert any(p.endswith('fundusexpert_swift_plugin.py') for p in args['external_plugins'])
    sft_log = (tmp_path / 'sft.log').read_text()
    assert "'global_step/max_steps': '2/2'" in sft_log
    # infer gets no --external_plugins: swift re-imports the plugin from args.json
    result = tmp_path / 'result.jsonl'
    cmd = infer_command(ckpt, result, dataset=['fundusgen_heldout:region_detection#3'], max_new_tokens=8)
    assert '--external_plugins' not in cmd
    run_logged(cmd, tmp_path / 'infer.log', env)
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert isinstance(row['response'], str)
        assert row['objects']['bbox'] or row['labels']
