"""A FundusGen task file serves as --meta for `fundusexpert eval` (same row order as swift infer)."""
import json

from fundusexpert_plugin.build import build_sample
from fundusexpert_plugin.cli.main import main


def _as_infer_result(rows, responses):
    out = []
    for row, response in zip(rows, responses):
        messages = row['messages'][:-1] + [{'role': 'assistant', 'content': response}]
        out.append({'response': response, 'labels': row['messages'][-1]['content'], 'messages': messages,
                    'images': [{'bytes': None, 'path': row['images'][0]}], 'objects': row.get('objects')})
    return out


def test_mcq_and_report_rows_scored_with_fundusgen_meta(tmp_path, monkeypatch):
    build_sample(tmp_path / 'fg', languages=['en'])
    heldout = tmp_path / 'fg' / 'heldout'
    monkeypatch.chdir(heldout)                         # row image paths are relative to the folder
    mcq = [json.loads(line) for line in (heldout / 'mcq.jsonl').read_text().splitlines()]
    # first row answered right, the rest answered with a letter that is never the answer ('E')
    responses = [mcq[0]['answer_letter']] + ['E'] * (len(mcq) - 1)
    result = tmp_path / 'mcq_result.jsonl'
    result.write_text(''.join(json.dumps(r) + '\n' for r in _as_infer_result(mcq, responses)))
    assert main(['eval', '--result', str(result), '--meta', str(heldout / 'mcq.jsonl'),
                 '--out', str(tmp_path / 'out_mcq')]) == 0
    metrics = json.loads((tmp_path / 'out_mcq' / 'metrics.json').read_text())
    # 8 held-out items (EN; one about the fovea of 0015), one right: strict = lenient = 1 / 8 = 0.125
    assert len(mcq) == 8 and metrics['mcq']['n'] == 8
    # categories are the items' target classes: optic disc x3 (0005, 0049, 0015; the right one is 0005's),
    # haemorrhages x2, hard exudates x2, fovea x1
    assert metrics['mcq']['strict'] == {'overall': 0.125, 'per_category': {
        'fovea': 0.0, 'haemorrhages': 0.0, 'hard_exudates': 0.0, 'optic_disc': 0.333}}
    assert metrics['mcq']['per_category_n'] == {'fovea': 1, 'haemorrhages': 2, 'hard_exudates': 2, 'optic_disc': 3}

    reports = [json.loads(line) for line in (heldout / 'report.jsonl').read_text().splitlines()]
    result = tmp_path / 'report_result.jsonl'
    # the reference report itself as the response: every finding stated as labelled
    result.write_text(''.join(json.dumps(r) + '\n' for r in
                              _as_infer_result(reports, [r['messages'][-1]['content'] for r in reports])))
    assert main(['eval', '--result', str(result), '--meta', str(heldout / 'report.jsonl'),
                 '--out', str(tmp_path / 'out_rep')]) == 0
    metrics = json.loads((tmp_path / 'out_rep' / 'metrics.json').read_text())
    assert (tmp_path / 'out_rep' / 'report.html').exists()
    # held-out 0005, 0014: EX+HE present (2/2 each); 0049: EX present, HE stated absent (2/2);
    # 0015: EX and HE both stated absent (2/2) -> 8/8
    assert metrics['consistency']['score_sum'] == 8 and metrics['consistency']['total_sum'] == 8
    assert metrics['consistency']['pooled'] == 1.0 and metrics['notes'] == []


def test_result_rows_without_objects_take_reference_boxes_from_fundusgen_meta(tmp_path, monkeypatch):
    """A hand-made result file (response + image only) is scored against the meta rows' objects."""
    from fundusexpert_plugin.core.geometry import box_px_to_grid

    build_sample(tmp_path / 'fg', languages=['en'])
    heldout = tmp_path / 'fg' / 'heldout'
    monkeypatch.chdir(heldout)
    rows = [json.loads(line) for line in (heldout / 'region_detection.jsonl').read_text().splitlines()]
    result, n_boxes = [], 0
    for i, row in enumerate(rows):
        if 'objects' not in row:      # a class stated absent: nothing to locate
            result.append({'response': 'None.', 'images': row['images']})
            continue
        ref = row['objects']['ref'][0]
        boxes = [box_px_to_grid(b, row['width'], row['height']) for b in row['objects']['bbox']]
        if i == 0:        # the first row answers one box too far right: IoU 0 with its reference
            boxes = [[min(999, b[0] + 500), b[1], min(999, b[2] + 500), b[3]] for b in boxes]
        n_boxes += len(boxes)
        response = ''.join(f'<ref>{ref}</ref><box>[[{b[0]}, {b[1]}, {b[2]}, {b[3]}]]</box>' for b in boxes)
        result.append({'response': response, 'images': row['images']})     # no objects, no labels
    path = tmp_path / 'result.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in result))
    assert main(['eval', '--result', str(path), '--meta', str(heldout / 'region_detection.jsonl'),
                 '--out', str(tmp_path / 'out')]) == 0
    metrics = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    g = metrics['grounding']
    first = len(rows[0]['objects']['bbox'])
    assert g['n_gt'] == n_boxes and g['n_matched'] == n_boxes - first
    assert g['acc50'] == (n_boxes - first) / n_boxes
    absent = sum('objects' not in row for row in rows)
    assert 0 < absent < len(rows) and 'objects' in rows[0]
    assert f'{absent} grounding row(s) have no reference box' in ' '.join(metrics['notes'])


# --- task kinds by content, meta alignment, known-absent targets -------------------------------------------

def _heldout(tmp_path, monkeypatch, languages=('en', 'zh')):
    build_sample(tmp_path / 'fg', languages=list(languages))
    heldout = tmp_path / 'fg' / 'heldout'
    monkeypatch.chdir(heldout)                         # row image paths are relative to the folder
    return heldout


def _rows(heldout, task):
    return [json.loads(line) for line in (heldout / f'{task}.jsonl').read_text().splitlines()]


def _write(path, rows):
    path.write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows), encoding='utf-8')
    return path


def test_every_shipped_task_kind_gets_its_scorer_from_the_content_alone(tmp_path, monkeypatch):
    from fundusexpert_plugin.eval.results import infer_task, load_meta

    heldout = _heldout(tmp_path, monkeypatch)
    # kind -> scorer without --meta; closed answers (classification, region identification) are known
    # only from --meta and read as free text (report) without it
    expected = {'region_detection': 'grounding', 'grounded_report': 'report', 'report': 'report',
                'diagnosis': 'report', 'mcq': 'mcq', 'classification': 'report', 'region_identification': 'report'}
    seen = set()
    for path in sorted(heldout.glob('*.jsonl')):
        rows = _rows(heldout, path.stem)
        if not rows:
            continue
        results = _as_infer_result(rows, [r['messages'][-1]['content'] for r in rows])
        for row, result in zip(rows, results):
            seen.add(row['kind'])
            assert infer_task(result) == expected[row['kind']], (path.name, row['messages'][-1]['content'][:60])
        with_meta = {'classification': 'answer', 'region_identification': 'answer'}
        meta = load_meta(str(path))
        assert [infer_task(r, meta[i]) for i, r in enumerate(results)] == \
            [with_meta.get(r['kind'], expected[r['kind']]) for r in rows]
    assert seen == set(expected)
    # every MCQ row carries its region's box in objects; some detection rows are "absent" answers
    assert all(r.get('objects', {}).get('bbox') for r in _rows(heldout, 'mcq'))
    absent = [r for r in _rows(heldout, 'region_detection') if 'objects' not in r]
    assert {r['messages'][-1]['content'] for r in absent} >= {'The image shows no haemorrhages.',
                                                              '该图像中没有出血。'}


def test_mcq_and_grounded_report_mix_is_split_without_meta(tmp_path, monkeypatch, capsys):
    from fundusexpert_plugin.testing.answers import reference_answer

    heldout = _heldout(tmp_path, monkeypatch)
    mcq, reports = _rows(heldout, 'mcq'), _rows(heldout, 'grounded_report')
    results = (_as_infer_result(mcq, [r['answer_letter'] for r in mcq])
               + _as_infer_result(reports, [reference_answer(r) for r in reports]))
    path = _write(tmp_path / 'infer_mix.jsonl', results)
    assert main(['eval', 'score', '--result', str(path), '--out', str(tmp_path / 'mix')]) == 0
    metrics = json.loads((tmp_path / 'mix' / 'metrics.json').read_text())
    assert (len(mcq), len(reports)) == (16, 8)
    assert metrics['tasks'] == {'grounding': 0, 'mcq': 16, 'report': 8, 'answer': 0}
    assert metrics['mcq']['strict']['overall'] == 1.0 and metrics['mcq']['n'] == 16
    # the inferred reports' boxes are scored: every reference box of the 8 reports, each answered
    # with its own box on the 0-999 grid (IoU > 0.9 after the round trip)
    n_gt = sum(len(r['objects']['bbox']) for r in reports)
    g = metrics['grounding']
    assert g['n_gt'] == n_gt and g['n_matched'] == n_gt and g['acc50'] == 1.0
    assert "'mcq': 16, 'report': 8" in capsys.readouterr().out


def test_meta_given_twice_is_the_concatenated_task_files(tmp_path, monkeypatch):
    heldout = _heldout(tmp_path, monkeypatch)
    mcq, reports = _rows(heldout, 'mcq'), _rows(heldout, 'grounded_report')
    results = _as_infer_result(mcq + reports, [r['messages'][-1]['content'] for r in mcq + reports])
    path = _write(tmp_path / 'mix.jsonl', results)
    cat = tmp_path / 'meta.jsonl'
    cat.write_text((heldout / 'mcq.jsonl').read_text() + (heldout / 'grounded_report.jsonl').read_text())
    assert main(['eval', '--result', str(path), '--meta', str(heldout / 'mcq.jsonl'),
                 '--meta', str(heldout / 'grounded_report.jsonl'), '--out', str(tmp_path / 'two')]) == 0
    assert main(['eval', '--result', str(path), '--meta', str(cat), '--out', str(tmp_path / 'cat')]) == 0
    two, one = (json.loads((tmp_path / d / 'metrics.json').read_text()) for d in ('two', 'cat'))
    assert two == one
    assert two['tasks'] == {'grounding': 0, 'mcq': 16, 'report': 8, 'answer': 0}
    # every row has its meta record and every record its row; two reports are over the 5-box cap
    assert [n[:46] for n in two['notes']] == ['2 grounding row(s) show only part of their box']
    # the reference letters themselves: strict 16/16; reports judged against their positives (8 rows)
    assert two['mcq']['strict']['overall'] == 1.0 and two['consistency']['n_reports'] == 8
    # the other order is refused at the first row: an MCQ result row against a grounded-report meta row
    assert main(['eval', '--result', str(path), '--meta', str(heldout / 'grounded_report.jsonl'),
                 '--meta', str(heldout / 'mcq.jsonl'), '--out', str(tmp_path / 'bad')]) == 2


def test_wrong_or_misaligned_meta_is_refused_with_both_lines(tmp_path, monkeypatch, capsys):
    heldout = _heldout(tmp_path, monkeypatch, languages=('en',))
    rows = _rows(heldout, 'region_detection')
    results = _as_infer_result(rows, [r['messages'][-1]['content'] for r in rows])
    path = tmp_path / 'det.jsonl'
    path.write_text('\n' + ''.join(json.dumps(r) + '\n' for r in results))     # a blank first line
    capsys.readouterr()
    # region_detection results scored against region_identification rows
    assert main(['eval', '--result', str(path), '--meta', str(heldout / 'region_identification.jsonl'),
                 '--out', str(tmp_path / 'o1')]) == 2
    err = capsys.readouterr().err.strip()
    assert '\n' not in err and 'Traceback' not in err
    assert f'{path}:2: user prompt = ' in err and 'region_identification.jsonl:1' in err
    # rows 0 and 1 swapped (one result file, one image, two prompts)
    assert rows[0]['images'] == rows[1]['images'] and rows[0]['messages'][0] != rows[1]['messages'][0]
    _write(path, [results[1], results[0]] + results[2:])
    assert main(['eval', '--result', str(path), '--meta', str(heldout / 'region_detection.jsonl'),
                 '--out', str(tmp_path / 'o2')]) == 2
    err = capsys.readouterr().err
    assert f'{path}:1: user prompt = ' in err and 'region_detection.jsonl:1 (' in err
    # same prompt, another photograph: the image file name differs
    i, j = next((i, j) for i in range(len(rows)) for j in range(len(rows)) if
                rows[i]['messages'][0] == rows[j]['messages'][0] and rows[i]['images'] != rows[j]['images'])
    swapped = [dict(r) for r in results]
    swapped[i]['images'] = results[j]['images']
    _write(path, swapped)
    assert main(['eval', '--result', str(path), '--meta', str(heldout / 'region_detection.jsonl'),
                 '--out', str(tmp_path / 'o3')]) == 2
    err = capsys.readouterr().err
    name = rows[j]['images'][0].rsplit('/', 1)[-1]
    assert f'{path}:{i + 1}: image file name = {name!r}' in err and f'region_detection.jsonl:{i + 1} (' in err


def test_swift_system_message_and_absolute_image_paths_pass_the_alignment_check(tmp_path, monkeypatch):
    import os

    heldout = _heldout(tmp_path, monkeypatch, languages=('en',))
    rows = _rows(heldout, 'region_detection')
    results = _as_infer_result(rows, [r['messages'][-1]['content'] for r in rows])
    for r in results:    # swift infer: a system turn first, absolute image paths, the image tag at the end
        r['messages'] = [{'role': 'system', 'content': 'You are FundusExpert.'}] + r['messages']
        user = r['messages'][1]
        user['content'] = '  ' + user['content'].replace('<image>', '') + '<image>\n'
        r['images'] = [{'bytes': None, 'path': os.path.abspath(r['images'][0]['path'])}]
    path = _write(tmp_path / 'det.jsonl', results)
    assert main(['eval', '--result', str(path), '--meta', str(heldout / 'region_detection.jsonl'),
                 '--out', str(tmp_path / 'out')]) == 0
    assert json.loads((tmp_path / 'out' / 'metrics.json').read_text())['tasks']['grounding'] == len(rows)


def test_boxes_on_a_target_stated_absent_are_counted_as_false_alarms(tmp_path, monkeypatch):
    from fundusexpert_plugin.testing.answers import reference_answer

    heldout = _heldout(tmp_path, monkeypatch)
    rows = _rows(heldout, 'region_detection')
    absent = [i for i, r in enumerate(rows) if 'objects' not in r]
    assert len(absent) == 6 and all(rows[i]['target'] in rows[i]['negatives'] for i in absent)
    responses = [reference_answer(r) for r in rows]
    # two absent rows answered with boxes (one box, then three), the others with the reference sentence
    responses[absent[0]] = '<ref>haemorrhages</ref><box>[[100, 100, 200, 200]]</box>'
    responses[absent[1]] = '<ref>hard exudates</ref><box>[[1, 1, 50, 50]]</box><box>[[60, 60, 90, 90]]</box>' \
                           '<box>[[500, 500, 520, 520]]</box>'
    results = _as_infer_result(rows, responses)
    path = _write(tmp_path / 'det.jsonl', results)
    expected = {'n_rows': 6, 'n_rows_with_boxes': 2, 'n_boxes': 4}
    for meta in (['--meta', str(heldout / 'region_detection.jsonl')], []):     # FundusGen meta, or none
        out = tmp_path / f'out{len(meta)}'
        assert main(['eval', '--result', str(path), *meta, '--out', str(out)]) == 0
        metrics = json.loads((out / 'metrics.json').read_text())
        assert metrics['tasks']['grounding'] == len(rows)
        assert metrics['grounding_absent'] == expected and metrics['grounding_no_reference'] is None
        # acc50/AP only over the rows with reference boxes: all answered with their own boxes
        n_gt = sum(len(r['objects']['bbox']) for r in rows if 'objects' in r)
        assert metrics['grounding']['n_gt'] == n_gt and metrics['grounding']['acc50'] == 1.0
        assert metrics['grounding']['n_pred'] == n_gt
        assert '2 of them answered with boxes (false alarms' in ' '.join(metrics['notes'])
        html = (out / 'report.html').read_text()
        assert 'target stated absent, boxes are false alarms' in html and '<td>6 / 2 / 4</td>' in html
        samples = [json.loads(line) for line in (out / 'samples.jsonl').read_text().splitlines()]
        assert [s['index'] for s in samples if s.get('absent') == 'stated_absent'] == absent


def test_grounding_rows_without_any_reference_are_unknown_not_absent(tmp_path, monkeypatch):
    heldout = _heldout(tmp_path, monkeypatch, languages=('en',))
    rows = _rows(heldout, 'region_detection')
    image = rows[0]['images'][0]
    # hand-made rows with an index meta saying "grounding" and no reference: nothing says the target is absent
    result = _write(tmp_path / 'r.jsonl', [{'response': '<ref>drusen</ref><box>[[10, 10, 90, 90]]</box>',
                                            'images': [image]},
                                           {'response': 'None.', 'images': [image]}])
    meta = _write(tmp_path / 'm.jsonl', [{'index': 0, 'task': 'grounding'},
                                         {'index': 1, 'task': 'grounding', 'target_absent': True}])
    assert main(['eval', '--result', str(result), '--meta', str(meta), '--out', str(tmp_path / 'o')]) == 0
    metrics = json.loads((tmp_path / 'o' / 'metrics.json').read_text())
    assert metrics['grounding'] is None
    assert metrics['grounding_no_reference'] == {'n_rows': 1, 'n_rows_with_boxes': 1, 'n_boxes': 1}
    assert metrics['grounding_absent'] == {'n_rows': 1, 'n_rows_with_boxes': 0, 'n_boxes': 0}
    _write(meta, [{'index': 0, 'task': 'grounding', 'target_absent': 'yes'}])
    assert main(['eval', '--result', str(result), '--meta', str(meta), '--out', str(tmp_path / 'o')]) == 2


def test_clinical_consistency_judges_report_rows_only(tmp_path, monkeypatch):
    """A FundusGen meta gives every row its positives; only report rows are judged for consistency
    (a correct optic-disc box 'mentions' no exudate and must not score 0 for it)."""
    heldout = _heldout(tmp_path, monkeypatch, languages=('en',))
    detection, reports = _rows(heldout, 'region_detection'), _rows(heldout, 'report')
    rows = detection + reports
    path = _write(tmp_path / 'mix.jsonl', _as_infer_result(rows, [r['messages'][-1]['content'] for r in rows]))
    assert main(['eval', '--result', str(path), '--meta', str(heldout / 'region_detection.jsonl'),
                 '--meta', str(heldout / 'report.jsonl'), '--out', str(tmp_path / 'out')]) == 0
    metrics = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    # 4 held-out EN reports, each the reference itself: 8/8 (as in the report-only run above)
    assert metrics['tasks']['report'] == len(reports) == 4 and metrics['consistency']['n_reports'] == 4
    assert metrics['consistency']['pooled'] == 1.0


def test_an_empty_result_file_is_an_error(tmp_path, capsys):
    (tmp_path / 'empty.jsonl').write_text('')
    assert main(['eval', '--result', str(tmp_path / 'empty.jsonl'), '--out', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith('empty.jsonl: no result row (the file is empty); expected the jsonl that swift infer writes '
                        '(--result_path)') and len(err.splitlines()) == 1
    assert not (tmp_path / 'out' / 'metrics.json').exists()
