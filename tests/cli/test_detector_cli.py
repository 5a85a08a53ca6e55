"""Tests of fundusexpert_plugin/cli/detector.py: ``fundusexpert detector train`` (alias ``train-detector``)."""
import argparse

import pytest

from fundusexpert_plugin.core.errors import FundusDataError

from fundusexpert_plugin.cli import detector as cli
from fundusexpert_plugin.cli.main import main


def test_cli_arguments_parse_scales_and_keep_val_options_exclusive():
    parser = cli.add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(['--annotations', 'a.jsonl', '--work-dir', 'w', '--img-scale', '512x384',
                              '--format', 'yolo', '--val-split', '0.3', '--seed', '5'])
    assert (args.img_scale, args.fmt, args.val_split, args.seed) == ((512, 384), 'yolo', 0.3, 5)
    assert parser.parse_args(['--annotations', 'a', '--work-dir', 'w',
                              '--img-scale', '320']).img_scale == (320, 320)
    with pytest.raises(SystemExit):
        parser.parse_args(['--annotations', 'a', '--work-dir', 'w', '--val-split', '0.2',
                           '--val-annotations', 'v.jsonl'])


def test_run_returns_2_and_names_the_missing_file(tmp_path, capsys):
    assert main(['detector', 'train', '--annotations', str(tmp_path / 'missing.jsonl'),
                 '--work-dir', str(tmp_path / 'w')]) == 2
    err = capsys.readouterr().err
    assert 'missing.jsonl' in err and err.startswith('fundusexpert: error: ') and 'Traceback' not in err


def _records_outside(tmp_path):
    """A records jsonl in ``work/`` naming a sample photo by absolute path (outside ``work/``): what
    ``data convert --absolute-paths`` writes."""
    from fundusexpert_plugin.core.record import write_records
    from fundusexpert_plugin.sample import sample_records
    (tmp_path / 'work').mkdir()
    return write_records(sample_records('train')[:1], tmp_path / 'work' / 'records.jsonl')


def test_records_outside_the_dataset_folder_are_refused_without_allow_outside_root(tmp_path, capsys):
    path = _records_outside(tmp_path)
    assert main(['detector', 'train', '--format', 'records', '--annotations', str(path),
                 '--work-dir', str(tmp_path / 'w')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and f"{path}:1: record '0003'" in err and 'image = ' in err
    assert 'outside the dataset folder' in err and '--allow-outside-root' in err


def test_allow_outside_root_and_images_root_reach_the_records_reader(tmp_path, monkeypatch, capsys):
    from fundusexpert_plugin.detector import train as train_module
    from fundusexpert_plugin.sample import SAMPLE_DIR
    seen = []
    monkeypatch.setattr(train_module, 'train_detector', lambda records, work_dir, **kw: seen.append(
        ([r.record_id for r in records], [r.record_id for r in kw['val_records'] or []])) or 1 / 0)
    path = _records_outside(tmp_path)
    def train(*extra):
        return cli.run_train(cli.add_train_arguments(argparse.ArgumentParser()).parse_args(
            ['--format', 'records', '--annotations', str(path), '--val-annotations', str(path),
             '--work-dir', str(tmp_path / 'w'), *extra]))
    for extra in (['--allow-outside-root'], ['--images', str(SAMPLE_DIR), '--val-images', str(SAMPLE_DIR)]):
        with pytest.raises(ZeroDivisionError):     # either makes the path acceptable: training is reached
            train(*extra)
    assert seen == [(['0003'], ['0003'])] * 2
    # --images is the training set's folder; the validation jsonl keeps its own folder unless --val-images
    with pytest.raises(FundusDataError, match="records.jsonl:1: record '0003': image = .*outside the dataset folder"):
        train('--images', str(SAMPLE_DIR))
    assert len(seen) == 2


def test_lenient_skips_reach_the_trainer_and_the_printed_result(tmp_path, monkeypatch, capsys):
    import json
    from types import SimpleNamespace

    from fundusexpert_plugin.detector import train as train_module
    from fundusexpert_plugin.sample import SAMPLE_DIR
    lines = (SAMPLE_DIR / 'annotations.jsonl').read_text().splitlines()[:2]
    bad = json.loads(lines[1])
    bad['annotations'][0]['bbox_xyxy'] = [10, 10, 5, 5]                 # inverted: one box skipped
    path = tmp_path / 'a.jsonl'
    path.write_text(lines[0] + '\n' + json.dumps(bad) + '\n')
    seen = {}

    def fake_train(records, work_dir, **kw):     # train_detector keeps them in metrics (and metrics.json)
        seen.update(kw)
        return SimpleNamespace(checkpoint=tmp_path / 'm.pth', config=tmp_path / 'm.py',
                               metrics={'annotation_skips': kw['annotation_skips']})
    monkeypatch.setattr(train_module, 'train_detector', fake_train)
    monkeypatch.setattr(cli, 'asdict', lambda result: {'metrics': result.metrics})
    assert main(['detector', 'train', '--annotations', str(path), '--images', str(SAMPLE_DIR),
                 '--work-dir', str(tmp_path / 'w'), '--lenient']) == 0
    skips = seen['annotation_skips']
    assert skips['records'] == {} and skips['boxes/items'] == {'box_empty_or_inverted': 1}
    assert len(skips['messages']) == 1 and 'inverted' in skips['messages'][0]
    assert json.loads(capsys.readouterr().out)['metrics']['annotation_skips'] == skips


def test_img_scale_below_32_px_is_a_usage_error_naming_the_option(capsys):
    with pytest.raises(argparse.ArgumentTypeError, match=r"--img-scale: '16': each side must be at least 32 px"):
        cli.img_scale('16')
    assert main(['detector', 'train', '--annotations', 'a', '--work-dir', 'w', '--img-scale', '64x16']) == 2
    assert "--img-scale: '64x16': each side must be at least 32 px" in capsys.readouterr().err
