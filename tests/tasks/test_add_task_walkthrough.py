"""Follows README "Add a new ophthalmic task" step by step, with the YAML taken from the README."""
import json
import re
from pathlib import Path

import pytest

from fundusexpert_plugin.cli.main import main

README = Path(__file__).resolve().parents[2] / 'README.md'


def _readme_yaml() -> str:
    text = README.read_text(encoding='utf-8')
    block = text.split('<!-- task-yaml-start -->')[1].split('<!-- task-yaml-end -->')[0]
    body = re.search(r'```yaml\n(.*?)```', block, re.S).group(1)
    return '\n'.join(line[3:] if line.startswith('   ') else line for line in body.splitlines()) + '\n'


@pytest.fixture(scope='module')
def walked(tmp_path_factory):
    root = tmp_path_factory.mktemp('walk')
    (root / 'my_tasks').mkdir()
    (root / 'my_tasks' / 'lesion_list.yaml').write_text(_readme_yaml(), encoding='utf-8')   # step 1
    assert main(['data', 'build', '--sample', '--tasks-dir', str(root / 'my_tasks'),
                 '--out', str(root / 'my_fundusgen')]) == 0                                  # step 2
    return root


def test_step2_builds_the_new_task_file(walked):
    rows = [json.loads(line) for line in (walked / 'my_fundusgen' / 'train' / 'lesion_list.jsonl').read_text(
        encoding='utf-8').splitlines()]
    by_id = {(r['record_id'], r['lang']): r for r in rows}
    # sample 0003 has hard exudates and haemorrhages; 0006 has no lesion box -> no row
    assert by_id[('0003', 'en')]['messages'][1]['content'] == 'Hard exudates, haemorrhages.'
    assert by_id[('0003', 'zh')]['messages'][1]['content'] == '硬性渗出、出血。'
    assert ('0006', 'en') not in by_id
    assert len(rows) == 2 * 7   # 7 of the 8 train images have a lesion box, in two languages


@pytest.mark.slow
def test_step3_swift_sft_on_the_new_subset(walked, tiny_qwen_dir, tmp_path):
    from fundusexpert_plugin.cli.demo import last_checkpoint, offline_env, run_logged, sft_command
    env = offline_env(FUNDUSGEN_DIR=str(walked / 'my_fundusgen' / 'train'), FUNDUSEXPERT_CACHE=str(tmp_path / 'c'))
    run_logged(sft_command(tiny_qwen_dir, tmp_path / 'sft', template='fundusexpert_qwen2_5_vl',
                           dataset=['fundusgen:lesion_list'], steps=1, seed=0), tmp_path / 'sft.log', env)
    assert (last_checkpoint(tmp_path / 'sft') / 'args.json').exists()
    # swift logs the training set: the 14 lesion_list rows (7 photographs with a lesion, EN + ZH)
    assert re.search(r'train_dataset: Dataset\(\{\s*features: .*?num_rows: 14\s*\}\)',
                     (tmp_path / 'sft.log').read_text(), re.S)


def test_readme_targets_example_asks_only_about_the_fovea(tmp_path):
    text = README.read_text(encoding='utf-8')
    block = text.split('<!-- targets-yaml-start -->')[1].split('<!-- targets-yaml-end -->')[0]
    body = re.search(r'```yaml\n(.*?)```', block, re.S).group(1)
    (tmp_path / 'tasks').mkdir()
    (tmp_path / 'tasks' / 'fovea_position.yaml').write_text(
        '\n'.join(line[3:] for line in body.splitlines()) + '\n', encoding='utf-8')
    assert main(['data', 'build', '--sample', '--tasks-dir', str(tmp_path / 'tasks'), '--out', str(tmp_path / 'o'),
                 '--num-proc', '1']) == 0
    rows = [json.loads(line) for line in (tmp_path / 'o' / 'train' / 'fovea_position.jsonl').read_text(
        encoding='utf-8').splitlines()]
    # the 5 train photos with an IDRiD fovea centre (0001, 0004, 0006, 0008, 0013), EN + ZH; one box each
    assert sorted({r['record_id'] for r in rows}) == ['0001', '0004', '0006', '0008', '0013'] and len(rows) == 10
    assert {r['target'] for r in rows} == {'fovea'}
    assert all(r['objects']['ref'] in (['fovea'], ['黄斑中心凹']) and len(r['objects']['bbox']) == 1 for r in rows)
    # --tasks-dir replaces the shipped tasks: only this task's file is written
    assert sorted(p.name for p in (tmp_path / 'o' / 'train').glob('*.jsonl')) == ['fovea_position.jsonl']
