"""Stages of ``fundusexpert demo`` that need no swift run: progress echo, engine stage, baselines."""
import sys

import pytest

from fundusexpert_plugin.cli import demo
from fundusexpert_plugin.core.record import parse_record


def _record(rid, size, disc, laterality):
    return parse_record({'record_id': rid, 'image': f'/x/{rid}.jpg', 'width': size, 'height': size,
                         'laterality': laterality, 'findings': [{'label': 'optic_disc', 'box_px': disc}],
                         'provenance': {'source_dataset': 't', 'licence': 't'}}, where='test')


def test_constant_prior_is_the_mean_training_box_of_the_eye_side():
    train = [_record('a', 100, [10, 10, 30, 30], 'left'), _record('b', 100, [20, 20, 40, 40], 'left'),
             _record('c', 100, [70, 10, 90, 30], 'right')]
    # left mean (0.15, 0.15, 0.35, 0.35) -> (30, 30, 70, 70) at 200 px: IoU 1 with itself; with
    # (40, 30, 80, 70): intersection 30 x 40 = 1200, union 1600 + 1600 - 1200 = 2000 -> 0.6
    heldout = [_record('h1', 200, [30, 30, 70, 70], 'left'), _record('h2', 200, [40, 30, 80, 70], 'left'),
               _record('h3', 100, [70, 10, 90, 30], 'right')]
    assert demo.disc_baselines(train, heldout) == {'h1': 1.0, 'h2': 0.6, 'h3': 1.0}


def test_progress_lines_of_a_subprocess_are_echoed_and_logged(tmp_path):
    script = ("import sys\n"
              "print('loading')\n"
              "sys.stdout.write('Train:  50%|#    | 1/2 [00:01<00:01]\\r'); sys.stdout.flush()\n"
              "print(\"{'loss': '1.5', 'token_acc': '0.4', 'global_step/max_steps': '2/2', 'remaining_time': '0s'}\")\n")
    seen = []
    demo.run_logged([sys.executable, '-c', script], tmp_path / 'log.txt', {}, label='[sft] ', every_s=0,
                    echo=seen.append)
    assert seen == ['[sft] Train:  50%|#    | 1/2 [00:01<00:01]', '[sft] step 2/2, loss 1.5, token_acc 0.4, remaining_time 0s']
    assert 'loading' in (tmp_path / 'log.txt').read_text()


def test_engine_stage_locates_the_held_out_landmarks(tmp_path):
    seen = []
    result = demo.engine_stage(tmp_path, echo=seen.append)
    assert result['records'] == 4 and len(seen) == 4
    rows = result['per_image']
    assert all(r['laterality_agrees'] for r in rows.values())
    # bounds of tests/detector/test_landmarks.py: 0015 disc within 12 px, fovea within 10 px (1072 x 712)
    assert rows['0015']['disc_error_px'] <= 12 and rows['0015']['fovea_error_px'] <= 10
    assert all(r['disc_iou'] >= 0.5 for r in rows.values())
    assert [r['fovea_error_px'] is None for r in rows.values()].count(False) == 1    # only 0015 has a fovea
    assert sum(line.endswith('fovea not annotated, laterality agrees') or 'fovea not annotated,' in line
               for line in seen) == 3 and not any('None' in line for line in seen)
    assert result['rows_per_task']['region_detection'] > 0
    assert 'landmark locator' not in result['chain_example'] and 'located on the image' in result['chain_example']


def test_demo_task_is_region_detection_of_the_optic_disc_only(tmp_path):
    import json

    from fundusexpert_plugin.build import build_sample
    tasks = demo.write_demo_tasks(tmp_path / 'tasks')
    shipped = sorted(p.name for p in (demo.Path(__file__).resolve().parents[2] / 'templates').glob('*.yaml'))
    assert sorted(p.name for p in tasks.glob('*.yaml')) == sorted(shipped + [f'{demo.DEMO_TASK}.yaml'])
    built = build_sample(tmp_path / 'fg', tasks_dir=tasks, languages=['en'])
    # one optic disc per photograph: 8 training and 4 held-out photographs, one English row each
    assert (built['train'].rows_per_task[demo.DEMO_TASK], built['heldout'].rows_per_task[demo.DEMO_TASK]) == (8, 4)
    rows = [json.loads(line) for line in (tmp_path / 'fg' / 'train' / f'{demo.DEMO_TASK}.jsonl').read_text().splitlines()]
    assert {tuple(r['objects']['ref']) for r in rows} == {('optic disc',)}
    assert rows[0]['objects']['bbox'] == [[166.25, 239.5, 316.0, 407.0]]          # sample 0003's disc
    assert demo.DEFAULT_DATASETS == (f'fundusgen:{demo.DEMO_TASK}',)


def test_a_mistyped_demo_dataset_stops_before_training_with_a_suggestion():
    from fundusexpert_plugin.cli.demo import check_datasets
    from fundusexpert_plugin.core.errors import FundusDataError
    rows = {'optic_disc_detection': 16, 'region_detection': 58, 'grading': 0}
    check_datasets(['fundusgen:region_detection#8', 'fundusgen:optic_disc_detection'], rows)    # fine
    with pytest.raises(FundusDataError, match=r"^--dataset fundusgen:region_detecton: .*tasks with rows: "
                                              r"\['optic_disc_detection', 'region_detection'\]; "
                                              r"did you mean fundusgen:region_detection\?$"):
        check_datasets(['fundusgen:region_detecton'], rows)
    with pytest.raises(FundusDataError, match=r"^--dataset fundusgen:grading: "):   # no rows in the sample
        check_datasets(['fundusgen:grading'], rows)


def test_a_failed_swift_step_is_one_line(monkeypatch, capsys, tmp_path):
    from fundusexpert_plugin.cli import demo
    from fundusexpert_plugin.cli.main import main

    def failing(*a, **k):
        raise RuntimeError('/x/swift sft failed (exit 1); log: /w/sft.log\nTraceback ...\nKeyError: boom')
    monkeypatch.setattr(demo, 'run_demo', failing)
    assert main(['demo', '--work-dir', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'fundusexpert: error: /x/swift sft failed (exit 1); log: /w/sft.log; last log line: KeyError: boom'


def test_score_heldout_counts_the_responses_that_hold_a_box(tmp_path):
    import json

    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.core.geometry import to_grid999
    build_sample(tmp_path / 'fg', languages=['en'])
    meta = tmp_path / 'fg' / 'heldout' / 'region_detection.jsonl'
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    rows = [r for r in rows if (r.get('objects') or {}).get('bbox')][:3]
    meta = tmp_path / 'meta.jsonl'
    meta.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    x1, y1, x2, y2 = rows[0]['objects']['bbox'][0]
    w, h = rows[0]['width'], rows[0]['height']
    grid = [to_grid999(x1, w), to_grid999(y1, h), to_grid999(x2, w), to_grid999(y2, h)]
    responses = [f'<ref>x</ref><box>[{grid}]</box>', '<|box_start|>(1,2)<|box_end|>', '']   # a box, a point, nothing
    result = tmp_path / 'result.jsonl'
    heldout = tmp_path / 'fg' / 'heldout'       # swift infer writes absolute image paths
    result.write_text(''.join(json.dumps({**r, 'response': t, 'labels': r['messages'][1]['content'],
                                          'images': [str((heldout / p).resolve()) for p in r['images']]}) + '\n'
                              for r, t in zip(rows, responses)))
    scored = demo.score_heldout(result, meta, tmp_path / 'eval')
    assert (scored['rows'], scored['rows_with_boxes']) == (3, 1)
    assert (tmp_path / 'eval' / 'report.html').is_file()
