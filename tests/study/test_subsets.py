"""Nested, stratified, seeded subsets and the two arms; reserved swift flags; the scaling plot."""
import json
from pathlib import Path

import pytest

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.study.runs import RunSettings, heldout_loss, metric_values
from fundusexpert_plugin.study.subsets import CHAIN_TASKS, fraction_label, parse_fraction, write_subsets


@pytest.fixture(scope='module')
def fundusgen(tmp_path_factory):
    from fundusexpert_plugin.build import build_sample
    out = tmp_path_factory.mktemp('fg')
    build_sample(out, languages=['en'])
    return out / 'train'


def _rows(folder, task):
    path = folder / f'{task}.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_subsets_nested_stratified_seeded(fundusgen, tmp_path):
    fractions = [0.25, 0.5, 1.0]
    subsets = write_subsets(fundusgen, tmp_path / 'a', fractions, arms=('chain', 'plain'), seed=3)
    chain = [s for s in subsets if s.arm == 'chain']
    full = {p.stem: len(p.read_text().splitlines()) for p in fundusgen.glob('*.jsonl')}
    full = {t: n for t, n in full.items() if n}
    assert chain[-1].rows_per_task == full and chain[-1].n_rows == sum(full.values())
    for small, big in zip(chain, chain[1:]):
        for task in full:
            a = [json.dumps(r, sort_keys=True) for r in _rows(Path(small.path), task)]
            b = [json.dumps(r, sort_keys=True) for r in _rows(Path(big.path), task)]
            assert set(a) <= set(b)  # nested
    for s in chain:
        for task, n in full.items():  # every task keeps its share (rounded up)
            assert s.rows_per_task[task] == -(-int(s.fraction * 1e6) * n // int(1e6))
    again = write_subsets(fundusgen, tmp_path / 'b', fractions, arms=('chain',), seed=3)
    other = write_subsets(fundusgen, tmp_path / 'c', fractions, arms=('chain',), seed=4)
    t = 'region_detection'
    assert _rows(Path(again[0].path), t) == _rows(Path(chain[0].path), t)
    assert _rows(Path(other[0].path), t) != _rows(Path(chain[0].path), t)


def test_plain_arm_is_chain_without_cognitive_chain_tasks(fundusgen, tmp_path):

    subsets = write_subsets(fundusgen, tmp_path, [0.5], arms=('chain', 'plain'), seed=0)
    chain, plain = subsets
    assert set(chain.rows_per_task) - set(plain.rows_per_task) == {t for t in CHAIN_TASKS if t in chain.rows_per_task}
    assert plain.n_rows < chain.n_rows
    for task in plain.rows_per_task:
        assert _rows(Path(plain.path), task) == _rows(Path(chain.path), task)  # same rows, same images
    summary = json.loads((Path(plain.path) / 'build_summary.json').read_text())
    assert not set(summary['task_weights']) & set(CHAIN_TASKS)
    row = _rows(Path(plain.path), 'region_detection')[0]
    assert all(Path(p).is_absolute() and Path(p).exists() for p in row['images'])


def test_fractions_and_labels():
    assert parse_fraction('1/16') == 0.0625 and parse_fraction('0.5') == 0.5
    assert fraction_label(0.0625) == 'f1_16' and fraction_label(1.0) == 'f1'
    for bad in ('0', '3/2', 'x'):
        with pytest.raises(FundusDataError):
            parse_fraction(bad)


def test_reserved_swift_flags_refused():
    with pytest.raises(FundusDataError, match='--output_dir is set by the study'):
        RunSettings(swift_args=['--model', 'm', '--output_dir', 'x'], heldout_dir='h').check()
    with pytest.raises(FundusDataError, match='--dataset=a'):
        RunSettings(swift_args=['--dataset=a'], heldout_dir='h').check()


def test_heldout_loss_is_the_last_eval_loss(tmp_path):
    (tmp_path / 'trainer_state.json').write_text(json.dumps({'log_history': [
        {'step': 1, 'loss': 3.0}, {'step': 2, 'eval_loss': 2.5}, {'step': 4, 'eval_loss': 2.25}]}))
    assert heldout_loss(tmp_path) == 2.25
    (tmp_path / 'trainer_state.json').write_text(json.dumps({'log_history': [{'step': 1, 'loss': 3.0}]}))
    with pytest.raises(FundusDataError, match='no eval_loss'):
        heldout_loss(tmp_path)


def test_metric_values_pick_known_paths():
    got = metric_values({'grounding': {'acc50': 0.5, 'best_match_iou': 0.25}, 'mcq': {'strict': {'overall': 0.75}},
                         'consistency': None})
    assert got == {'grounding_acc50': 0.5, 'grounding_best_match_iou': 0.25, 'mcq_accuracy': 0.75}


def test_plot_written(tmp_path):
    from fundusexpert_plugin.study.fit import fit_power_law
    from fundusexpert_plugin.study.plot import plot_scaling
    n = [100, 200, 400]
    fits = {'chain': fit_power_law(n, [2.0, 1.7, 1.5], n_boot=50), 'plain': None}
    png = plot_scaling({'chain': (n, [2.0, 1.7, 1.5]), 'plain': (n, [2.1, 1.9, 1.8])}, fits, tmp_path / 's.png',
                       quantity='held-out loss')
    data = png.read_bytes()
    assert data[:4] == b'\x89PNG'
    assert not any(chunk in data for chunk in (b'tEXt', b'iTXt', b'zTXt')) and b'Matplotlib' not in data  # no text


def test_plot_leaves_out_non_positive_points(tmp_path):
    import warnings
    from fundusexpert_plugin.study.plot import plot_scaling
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        png = plot_scaling({'chain': ([10, 20, 40], [0.0, 0.0, 0.0])}, {'chain': None}, tmp_path / 'z.png',
                           quantity='Acc@0.5')
    assert png.stat().st_size > 0


def test_a_jsonl_the_build_summary_does_not_list_is_not_a_task(fundusgen, tmp_path):
    import shutil
    from fundusexpert_plugin.study.subsets import read_task_rows
    folder = tmp_path / 'fg'
    shutil.copytree(fundusgen, folder)
    shutil.copy(folder / 'report.jsonl', folder / 'stale_task.jsonl')
    tasks = read_task_rows(folder)
    listed = json.loads((folder / 'build_summary.json').read_text())['rows_per_task']
    assert 'stale_task' not in tasks and set(tasks) == {t for t, n in listed.items() if n}


def test_a_rerun_with_other_shared_settings_is_refused_once_a_point_has_trained(fundusgen, tmp_path):
    from fundusexpert_plugin.study.scaling import check_study_settings
    out = tmp_path / 'study'
    first = RunSettings(swift_args=['--model', 'a', '--max_steps', '2'], heldout_dir=str(tmp_path / 'heldout'))
    check_study_settings(out, fundusgen, first)
    recorded = json.loads((out / 'study_settings.json').read_text())
    assert (recorded['swift_args'], recorded['seed'], recorded['fundusgen_dir']) == (
        ['--model', 'a', '--max_steps', '2'], 0, str(fundusgen.resolve()))
    second = RunSettings(swift_args=['--model', 'b', '--max_steps', '2'], heldout_dir=str(tmp_path / 'heldout'))
    check_study_settings(out, fundusgen, second)          # nothing trained yet: the new settings are taken
    assert json.loads((out / 'study_settings.json').read_text())['swift_args'][1] == 'b'
    (out / 'runs' / 'chain' / 'f1').mkdir(parents=True)
    (out / 'runs' / 'chain' / 'f1' / 'sft.done').write_text('ckpt\n')
    check_study_settings(out, fundusgen, second)          # the same settings resume
    with pytest.raises(FundusDataError) as err:
        check_study_settings(out, fundusgen, RunSettings(swift_args=['--model', 'b', '--max_steps', '2'],
                                                         heldout_dir=str(tmp_path / 'heldout'), seed=1))
    assert str(err.value) == (f'{out / "study_settings.json"}: the runs in {out} were made with other options '
                              '(--seed 0 -> 1); give a new --out, or the recorded settings to resume')
