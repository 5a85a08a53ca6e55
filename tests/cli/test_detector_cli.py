"""Tests of fundusexpert_plugin/cli/detector.py: ``fundusexpert detector train`` (alias ``train-detector``)."""
import argparse

import pytest

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
