"""Tests of fundusexpert_plugin/cli/main.py: the command tree, the earlier spellings, the one error policy."""
import argparse
import json
import subprocess
import sys

import pytest

from fundusexpert_plugin.cli import build, convert, demo, detector, engine, swift, tiny_model
from fundusexpert_plugin.cli import eval as eval_cli
from fundusexpert_plugin.cli.common import languages
from fundusexpert_plugin.cli.main import build_parser, commands, main, parse_args

RECORD = {'record_id': 'r1', 'image': 'img.jpg', 'width': 1000, 'height': 800,
          'provenance': {'source_dataset': 'test', 'licence': 'CC0', 'annotated_labels': ['optic_disc']}}


def _one_line_error(capsys, *expected):
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('fundusexpert: error: '), err
    assert 'Traceback' not in err
    for text in expected:
        assert text in err, err
    return err


def test_build_of_a_missing_records_file_is_one_line_naming_it(tmp_path, capsys):
    assert main(['data', 'build', '--records', str(tmp_path / 'missing.jsonl'), '--out', str(tmp_path / 'X')]) == 2
    _one_line_error(capsys, 'missing.jsonl', 'not found')
    assert not (tmp_path / 'X').exists()


def test_build_of_a_record_with_a_box_outside_the_image_names_file_line_and_field(tmp_path, capsys):
    bad = dict(RECORD, findings=[{'label': 'optic_disc', 'box_px': [100, 100, 1200, 200]}])  # x2 1200 > width 1000
    (tmp_path / 'recs.jsonl').write_text(json.dumps(bad) + '\n')
    assert main(['data', 'build', '--records', str(tmp_path / 'recs.jsonl'), '--out', str(tmp_path / 'X')]) == 2
    _one_line_error(capsys, 'recs.jsonl:1', "record 'r1'", 'findings[0].box_px', 'outside the image')


def test_engine_run_on_an_empty_folder_names_the_folder_before_loading_a_detector(tmp_path, capsys):
    (tmp_path / 'photos').mkdir()
    argv = ['engine', 'run', '--images', str(tmp_path / 'photos'), '--detector', str(tmp_path / 'no.py'),
            '--checkpoint', str(tmp_path / 'no.pth'), '--out', str(tmp_path / 'out')]
    assert main(argv) == 2
    err = _one_line_error(capsys, str(tmp_path / 'photos'), 'no image files')
    assert 'no.py' not in err  # the (missing) detector was never opened
    (tmp_path / 'list.txt').write_text('# nothing listed\n\n')
    argv[3] = str(tmp_path / 'list.txt')
    assert main(argv) == 2
    _one_line_error(capsys, 'list.txt', 'names no photograph')


def test_eval_score_of_a_missing_result_file_names_it(tmp_path, capsys):
    missing = tmp_path / 'infer_result.jsonl'
    assert main(['eval', 'score', '--result', str(missing), '--out', str(tmp_path / 'ev')]) == 2
    _one_line_error(capsys, f'{missing}: No such file or directory')


def test_verbose_adds_the_traceback_before_the_same_line(tmp_path, capsys):
    for argv in (['-v', 'data', 'build'], ['data', 'build', '-v']):  # before or after the command
        assert main([*argv, '--records', str(tmp_path / 'missing.jsonl'), '--out', str(tmp_path / 'X')]) == 2
        err = capsys.readouterr().err
        assert err.startswith('Traceback (most recent call last):') and 'FileNotFoundError' in err
        assert err.splitlines()[-1].startswith('fundusexpert: error: ') and 'missing.jsonl' in err.splitlines()[-1]


def test_usage_errors_are_one_line_exit_2(capsys):
    assert main(['data', 'build', '--out', 'x']) == 2
    _one_line_error(capsys, 'one of the arguments --records --sample is required', 'fundusexpert data build --help')
    assert main(['no-such-command']) == 2
    _one_line_error(capsys, "invalid choice: 'no-such-command'")
    assert main(['data', 'build', '--sample', '--out', 'x', '--languages', 'en,fr']) == 2
    _one_line_error(capsys, "argument --languages: unknown language 'fr'")


def test_openai_judge_without_an_endpoint_is_a_usage_error_not_a_system_exit(tmp_path, capsys):
    rows = tmp_path / 'r.jsonl'
    rows.write_text(json.dumps({'response': 'x', 'labels': 'y', 'messages': []}) + '\n')
    meta = tmp_path / 'm.jsonl'
    meta.write_text(json.dumps({'index': 0, 'positives': ['hard_exudates'], 'negatives': []}) + '\n')
    assert main(['eval', 'score', '--result', str(rows), '--meta', str(meta), '--out', str(tmp_path / 'o'),
                 '--judge', 'openai']) == 2
    _one_line_error(capsys, '--judge openai needs --judge-base-url')


LEAVES = ['demo', 'data convert FORMAT', 'data build', 'data deidentify', 'data validate', 'engine run', 'engine ray', 'engine merge',
          'detector train', 'eval score', 'eval mcq-rows', 'eval mcq-export', 'swift plugin-path',
          'swift system-prompt', 'study scaling', 'make-tiny-model']


def test_help_is_plain_text_listing_every_command_and_earlier_spelling(capsys):
    assert main(['--help']) == 0
    out = capsys.readouterr().out
    assert [name for name, _ in commands(build_parser())] == LEAVES
    for name in LEAVES:
        line = next(ln for ln in out.splitlines() if ln.startswith(f'  {name}  '))
        assert len(line.split(None, len(name.split()))[-1]) > 10  # a one-line summary follows the name
    for old in ('build', 'convert', 'train-detector', 'mcq-rows', 'mcq-export', 'plugin-path', 'system-prompt'):
        assert any(ln.split() and ln.split()[0] == old and '=' in ln for ln in out.splitlines()), old
    assert '`' not in out and ':mod:' not in out and ':func:' not in out


def test_every_command_help_is_plain_text(capsys):
    for name in LEAVES:
        argv = [w for w in name.split() if w != 'FORMAT'] + (['yolo'] if 'FORMAT' in name else [])
        assert main([*argv, '--help']) == 0
        out = capsys.readouterr().out
        assert out.startswith('usage: fundusexpert ') and '`' not in out and ':mod:' not in out, name


OLD_AND_NEW = [
    (['build', '--sample', '--out', 'o'], ['data', 'build', '--sample', '--out', 'o'], build.run),
    (['convert', 'csv', '--csv', 'a.csv', '--source-dataset', 's', '--out', 'o.jsonl'],
     ['data', 'convert', 'csv', '--csv', 'a.csv', '--source-dataset', 's', '--out', 'o.jsonl'], convert.run),
    (['eval', '--result', 'r.jsonl', '--out', 'o'], ['eval', 'score', '--result', 'r.jsonl', '--out', 'o'],
     eval_cli.run_score),
    (['mcq-rows', '--tsv', 't.tsv', '--out', 'o.jsonl'], ['eval', 'mcq-rows', '--tsv', 't.tsv', '--out', 'o.jsonl'],
     eval_cli.run_tsv_rows),
    (['mcq-export', '--rows', 'r.jsonl', '--out', 'o.tsv'], ['eval', 'mcq-export', '--rows', 'r.jsonl', '--out',
                                                             'o.tsv'], eval_cli.run_export),
    (['train-detector', '--annotations', 'a.jsonl', '--work-dir', 'w'],
     ['detector', 'train', '--annotations', 'a.jsonl', '--work-dir', 'w'], detector.run_train),
    (['plugin-path'], ['swift', 'plugin-path'], swift.run_plugin_path),
    (['system-prompt', '--lang', 'zh'], ['swift', 'system-prompt', '--lang', 'zh'], swift.run_system_prompt),
    (['-v', 'build', '--sample', '--out', 'o'], ['-v', 'data', 'build', '--sample', '--out', 'o'], build.run),
    (['eval', '-v', '--result', 'r.jsonl', '--out', 'o'], ['eval', 'score', '-v', '--result', 'r.jsonl', '--out', 'o'],
     eval_cli.run_score),
]


@pytest.mark.parametrize('old, new, func', OLD_AND_NEW, ids=[' '.join(o[:2]) for o, _, _ in OLD_AND_NEW])
def test_every_earlier_spelling_parses_to_the_same_command(old, new, func):
    old_args, new_args = parse_args(old), parse_args(new)
    assert old_args.func is new_args.func is func
    assert vars(old_args) == vars(new_args)


def test_names_that_did_not_change_reach_their_commands():
    engine_opts = ['--images', 'p', '--detector', 'd.py', '--checkpoint', 'c.pth', '--out', 'o']
    assert parse_args(['engine', 'run', *engine_opts]).func is engine.run_local
    assert parse_args(['engine', 'ray', *engine_opts]).func is engine.run_ray
    assert parse_args(['engine', 'merge', '--out', 'o']).func is engine.run_merge
    assert parse_args(['make-tiny-model', '--family', 'qwen2_5_vl', 'out']).func is tiny_model.run
    assert parse_args(['demo']).func is demo.run


def test_engine_run_and_ray_share_the_engine_options_and_languages_parse_one_way():
    common = ['--images', 'p', '--detector', 'd.py', '--checkpoint', 'c.pth', '--out', 'o', '--languages', ' zh ',
              '--score-threshold', '0.5', '--tile-size', '1024', '--claim-absent']
    run, ray = parse_args(['engine', 'run', *common]), parse_args(['engine', 'ray', *common, '--num-actors', '3'])
    shared = ('languages', 'score_threshold', 'tile_size', 'claim_absent', 'describer', 'licence', 'source_dataset')
    assert [getattr(run, k) for k in shared] == [getattr(ray, k) for k in shared]
    assert run.languages == ('zh',) and (run.device, ray.device) == ('cpu', 'auto') and ray.num_actors == 3
    assert parse_args(['data', 'build', '--sample', '--out', 'o', '--languages', 'zh']).languages == ('zh',)
    assert parse_args(['data', 'build', '--sample', '--out', 'o']).languages == ('en', 'zh')
    assert languages('en, zh') == ('en', 'zh')
    for bad in ('', ' , ', 'en,fr'):
        with pytest.raises(argparse.ArgumentTypeError):
            languages(bad)


def test_engine_options_become_one_engine_spec(tmp_path):
    args = parse_args(['engine', 'ray', '--images', 'p', '--detector', str(tmp_path / 'd.py'), '--checkpoint',
                       str(tmp_path / 'c.pth'), '--out', 'o', '--languages', 'en', '--mllm-base-url',
                       'http://127.0.0.1:8000/v1', '--mllm-model', 'qwen', '--image-labels', str(tmp_path / 'l.csv')])
    spec = engine.engine_spec(args)
    assert (spec.config, spec.checkpoint, spec.image_labels) == (str(tmp_path / 'd.py'), str(tmp_path / 'c.pth'),
                                                                 str(tmp_path / 'l.csv'))
    assert spec.languages == ('en',) and spec.device == 'auto' and spec.describer_kind == 'openai'
    assert spec.detector_name == 'mmdet:d.py@c.pth'


def test_plugin_path_imports_neither_torch_nor_swift():
    code = ("import sys; from fundusexpert_plugin.cli.main import main; main(['plugin-path']); "
            "print('torch' in sys.modules, 'swift' in sys.modules, 'mmdet' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].endswith('fundusexpert_swift_plugin.py') and out[1] == 'False False False'


def test_python_dash_m_runs_the_same_command():
    from fundusexpert_plugin.swift_plugin.system_prompt import SYSTEM_PROMPTS
    proc = subprocess.run([sys.executable, '-m', 'fundusexpert_plugin.cli', 'swift', 'system-prompt', '--lang', 'zh'],
                          capture_output=True, text=True, check=True)
    assert proc.stdout == SYSTEM_PROMPTS['zh'] + '\n'


def test_console_script_points_at_main():
    import tomllib
    from pathlib import Path
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / 'pyproject.toml').read_text())
    assert pyproject['project']['scripts']['fundusexpert'] == 'fundusexpert_plugin.cli.main:main'


@pytest.mark.parametrize('argv, expected', [
    (['data', 'convert', 'csv', '--csv', 'l.csv', '--out', 'o', '--source-dataset', 's', '--max-image-pixels', '-1'],
     'argument --max-image-pixels: -1: expected an integer >= 1'),
    (['data', 'convert', 'masks', '--images', 'i', '--masks', 'm', '--out', 'o', '--source-dataset', 's',
      '--eps-px', '0'], 'argument --eps-px: 0: expected a number > 0'),
    (['data', 'validate', 'x.jsonl', '--max-image-pixels', '0'], 'argument --max-image-pixels: 0: expected an integer >= 1'),
    (['engine', 'ray', '--images', 'p', '--out', 'o', '--num-actors', '0'], 'argument --num-actors: 0: expected an integer >= 1'),
    (['engine', 'ray', '--images', 'p', '--out', 'o', '--num-gpus-per-actor', '-0.5'],
     'argument --num-gpus-per-actor: -0.5: expected a number >= 0'),
    (['detector', 'train', '--annotations', 'a', '--work-dir', 'w', '--val-split', '1'],
     'argument --val-split: 1: expected a number in (0, 1)'),
    (['detector', 'train', '--annotations', 'a', '--work-dir', 'w', '--max-iters', 'ten'],
     "argument --max-iters: 'ten': expected an integer >= 1"),
    (['eval', 'score', '--result', 'r', '--out', 'o', '--judge-max-retries', '-1'],
     'argument --judge-max-retries: -1: expected an integer >= 0'),
    (['eval', 'score', '--result', 'r', '--out', 'o', '--judge-timeout', 'nan'],
     'argument --judge-timeout: nan: expected a number > 0'),
    (['study', 'scaling', '--fundusgen', 'f', '--heldout', 'h', '--out', 'o', '--n-boot', '0'],
     'argument --n-boot: 0: expected an integer >= 1'),
    (['demo', '--steps', '0'], 'argument --steps: 0: expected an integer >= 1'),
])
def test_out_of_range_numbers_are_one_line_usage_errors_in_every_command(capsys, argv, expected):
    assert main(argv) == 2
    _one_line_error(capsys, expected)


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    import argparse as _argparse

    from fundusexpert_plugin.cli import main as main_module

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(main_module, 'parse_args', lambda argv: _argparse.Namespace(verbose=False, func=interrupted))
    assert main_module.main(['engine', 'run']) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == ['fundusexpert: interrupted; what was written so far is kept (engine run and engine ray '
                                'resume when the same command is run again)']
    monkeypatch.setattr(main_module, 'parse_args', lambda argv: _argparse.Namespace(verbose=True, func=interrupted))
    assert main_module.main(['-v', 'engine', 'run']) == 130
    assert 'Traceback' in capsys.readouterr().err
