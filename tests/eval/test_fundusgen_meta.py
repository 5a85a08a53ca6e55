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
    assert metrics['mcq']['strict'] == {'overall': 0.125, 'per_category': {'mcq': 0.125}}

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
