"""`fundusexpert eval` end to end on a crafted swift infer result file (no model, no network)."""
import argparse
import json
import logging

import pytest
from PIL import Image

from fundusexpert_plugin.cli import eval as cli
from fundusexpert_plugin.cli.main import main
from fundusexpert_plugin.eval.mcq import build_prompt


def _row(user, labels, response, image, objects=None):
    row = {'response': response, 'labels': labels, 'logprobs': None,
           'messages': [{'role': 'user', 'content': user}, {'role': 'assistant', 'content': response}],
           'images': [{'bytes': None, 'path': image}], 'dataset': 'x'}
    if objects:
        row['objects'] = objects
    return row


@pytest.fixture
def result_files(tmp_path):
    image = tmp_path / 'fundus.png'
    Image.new('RGB', (200, 100), (120, 40, 20)).save(image)
    img = str(image)
    mcq_user = '<image>' + build_prompt('Is there glaucoma?', {'A': 'non glaucoma', 'B': 'glaucoma'})
    rows = [
        # grounding, InternVL grid: disc at 20-60 px x, 10-50 px y -> grid [100, 100, 300, 500]
        _row('<image>Locate the <ref-object>.', '<ref-object><bbox>',
             '<ref>optic disc</ref><box>[[100, 100, 300, 500]]</box>', img,
             {'ref': ['optic disc', 'optic disc'], 'bbox': [[20, 10, 60, 50]]}),
        _row('<image>Locate the <ref-object>.', '<ref-object><bbox>', '', img,            # empty output: a miss
             {'ref': ['optic disc', 'optic disc'], 'bbox': [[20, 10, 60, 50]]}),
        _row('<image>Locate the <ref-object>.', '<ref-object><bbox>', '<box>[[garbage', str(tmp_path / 'gone.png'),
             {'ref': ['optic disc', 'optic disc'], 'bbox': [[20, 10, 60, 50]]}),          # image missing: noted
        _row(mcq_user, 'B', 'B', img),
        _row(mcq_user, 'B', ' B', img),
        _row(mcq_user, 'A', '', img),                                                   # empty response: a miss
        _row('<image>Describe the fundus.', 'ref report', 'Hard exudates are seen. No haemorrhages.', img),
        _row('<image>Describe the fundus.', 'ref report', '', img),
    ]
    result = tmp_path / 'infer.jsonl'
    result.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    meta = tmp_path / 'meta.jsonl'
    meta.write_text(''.join(json.dumps(m) + '\n' for m in [
        {'index': 3, 'category': 'glaucoma'}, {'index': 4, 'category': 'glaucoma'},
        {'index': 6, 'positives': ['hard_exudates', 'microaneurysms'], 'negatives': ['haemorrhages']},
        {'index': 7, 'positives': ['hard_exudates'], 'negatives': []}]))
    return result, meta


def _run(argv):
    return main(['eval', 'score', *argv])


def test_eval_cli_writes_metrics_png_and_html(result_files, tmp_path, capsys):
    result, meta = result_files
    out = tmp_path / 'out'
    assert _run(['--result', str(result), '--meta', str(meta), '--out', str(out)]) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['tasks'] == {'grounding': 3, 'mcq': 3, 'report': 2, 'answer': 0}
    g = metrics['grounding']
    # row 0: grid cell centres (100.5, 100.5, 300.5, 500.5) * (0.2, 0.1) px vs (20, 10, 60, 50): IoU ~0.99;
    # row 1: no prediction -> 0; row 2 skipped (no image) -> mean over 2 references, Acc@0.5 = 1/2
    assert g['n_gt'] == 2 and g['acc50'] == 0.5 and g['best_match_iou'] == pytest.approx(0.5, abs=0.01)
    assert g['n_skipped_no_image'] == 1 and g['coco']['ap50'] == pytest.approx(0.5, abs=0.01)
    # MCQ: strict 1/3 (' B' and '' miss), lenient 2/3; categories from --meta, row 5 'Unknown'
    assert metrics['mcq']['strict']['overall'] == 0.333 and metrics['mcq']['lenient']['overall'] == 0.667
    assert metrics['mcq']['strict']['per_category'] == {'Unknown': 0.0, 'glaucoma': 0.5}
    # consistency: row 6: HE present (+1), MA missed, haemorrhages absent (+1) -> 2/3; row 7 empty -> 0/1
    c = metrics['consistency']
    assert (c['score_sum'], c['total_sum']) == (2, 4) and c['pooled'] == 0.5
    assert c['per_report_mean'] == pytest.approx((2 / 3 + 0) / 2) and c['judge'] == 'LexiconJudge'
    assert (out / 'mcq_per_category.png').stat().st_size > 1000
    assert b'tEXt' not in (out / 'mcq_per_category.png').read_bytes()   # no matplotlib 'Software' chunk
    html = (out / 'report.html').read_text()
    assert html.count('data:image/jpeg;base64,') == 7 and 'per-report mean' in html and 'pooled' in html
    assert 'image file missing' in ' '.join(metrics['notes'])
    # the same folder reused for a result without MCQ rows: no chart of the earlier result is left in it
    args = _grounding_result(tmp_path, '<ref>haemorrhages</ref><box>[[100, 100, 200, 300]]</box>', [[20, 10, 40, 30]])
    assert _run(args[:args.index('--out')] + ['--out', str(out)]) == 0
    assert not (out / 'mcq_per_category.png').exists() and json.loads((out / 'metrics.json').read_text())['mcq'] is None


def test_eval_cli_without_meta_skips_consistency_with_a_note(result_files, tmp_path, capsys):
    result, _ = result_files
    assert _run(['--result', str(result), '--out', str(tmp_path / 'o2')]) == 0
    metrics = json.loads((tmp_path / 'o2' / 'metrics.json').read_text())
    assert metrics['consistency'] is None
    assert any('clinical consistency skipped' in n for n in metrics['notes'])
    assert 'clinical consistency skipped' in capsys.readouterr().out


def test_box_space_argument_is_validated():
    parser = cli.add_score_arguments(argparse.ArgumentParser())
    assert parser.parse_args(['--result', 'r', '--out', 'o', '--box-space', 'qwen=grid']).box_space == [('qwen', 'grid')]
    with pytest.raises(SystemExit):
        parser.parse_args(['--result', 'r', '--out', 'o', '--box-space', 'qwen=norm'])


def test_label_ids_the_offline_judge_cannot_read_are_refused(result_files, tmp_path, capsys):
    result, meta = result_files
    meta.write_text(json.dumps({'index': 6, 'positives': ['hard_exudates', 'papillary_pit'], 'negatives': []}) + '\n')
    assert _run(['--result', str(result), '--meta', str(meta), '--out', str(tmp_path / 'o3')]) == 2
    assert (f"{meta}:1: positives: label 'papillary_pit' is not in the LexiconJudge vocabulary"
            in capsys.readouterr().err)
    assert not (tmp_path / 'o3').exists()


def test_unreadable_input_is_an_error_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / 'r.jsonl'
    bad.write_text('not json\n')
    assert _run(['--result', str(bad), '--out', str(tmp_path / 'o')]) == 2
    assert 'r.jsonl:1: not valid JSON' in capsys.readouterr().err
    assert _run(['--result', str(tmp_path / 'missing.jsonl'), '--out', str(tmp_path / 'o')]) == 2


def _grounding_result(tmp_path, response, objects_bbox, meta_records=None):
    image = tmp_path / 'g.png'
    Image.new('RGB', (200, 100)).save(image)
    row = _row('<image>Detect all <ref-object>.', '<ref-object>' + '<bbox>' * len(objects_bbox), response,
               str(image), {'ref': ['haemorrhages', 'haemorrhages'], 'bbox': objects_bbox})
    result = tmp_path / 'g.jsonl'
    result.write_text(json.dumps(row) + '\n')
    args = ['--result', str(result), '--out', str(tmp_path / 'gout')]
    if meta_records is not None:
        meta = tmp_path / 'gmeta.jsonl'
        meta.write_text(''.join(json.dumps(m) + '\n' for m in meta_records))
        args += ['--meta', str(meta)]
    return args


def test_grid_decode_edge_and_centre_on_hand_worked_boxes(tmp_path):
    # 200 x 100 image, reference (20, 10, 40, 30) px, prediction [[100, 100, 200, 300]]
    # edge:   (20, 10, 40, 30) exactly -> IoU 1
    # centre: (20.1, 10.05, 40.1, 30.05) -> inter 19.9 * 19.95 = 397.005, union 402.995 -> IoU 0.98514
    args = _grounding_result(tmp_path, '<ref>haemorrhages</ref><box>[[100, 100, 200, 300]]</box>', [[20, 10, 40, 30]])
    assert _run(args + ['--grid-decode', 'edge']) == 0
    metrics = json.loads((tmp_path / 'gout' / 'metrics.json').read_text())
    assert metrics['grounding']['best_match_iou'] == pytest.approx(1.0) and metrics['settings']['grid_decode'] == 'edge'
    assert _run(args) == 0
    metrics = json.loads((tmp_path / 'gout' / 'metrics.json').read_text())
    assert metrics['grounding']['best_match_iou'] == pytest.approx(397.005 / 402.995)
    assert metrics['settings']['grid_decode'] == 'centre'


def test_inverted_and_off_grid_boxes_are_counted_not_matched(tmp_path, capsys, caplog):
    # the hand-worked box above, corners swapped: as written it is inverted, so it matches nothing (it scored
    # IoU 0.985 when the corners were re-ordered); a second row writes y2 = 1200, past the 0-999 grid
    # ((1200 + 0.5) * 100 / 1000 = 120.05 px on a 100 px image): out of range, not clipped, not matched
    args = _grounding_result(tmp_path, '<ref>haemorrhages</ref><box>[[200, 300, 100, 100]]</box>', [[20, 10, 40, 30]])
    result = args[1]
    rows = [json.loads(line) for line in open(result)]
    off_grid = dict(rows[0], response='<ref>haemorrhages</ref><box>[[100, 100, 200, 1200]]</box>')
    with open(result, 'a') as f:
        f.write(json.dumps(off_grid) + '\n')
    caplog.set_level(logging.INFO)
    assert _run(args) == 0
    out_dir = tmp_path / 'gout'
    g = json.loads((out_dir / 'metrics.json').read_text())['grounding']
    assert (g['n_gt'], g['n_pred'], g['n_matched'], g['malformed_boxes']) == (2, 2, 0, 2)
    assert g['malformed_by_fault'] == {'inverted': 1, 'out_of_range': 1}
    assert (g['acc50'], g['precision50'], g['best_match_iou']) == (0.0, 0.0, 0.0)
    samples = [json.loads(line) for line in (out_dir / 'samples.jsonl').read_text().splitlines()]
    assert [s['pred_faults'] for s in samples] == [['inverted'], ['out_of_range']]
    assert samples[0]['pred'][0][1] == pytest.approx([40.1, 30.05, 20.1, 10.05])   # as written, not re-ordered
    assert samples[1]['pred'][0][1][3] == pytest.approx(120.05)                   # not clipped to the image
    note = '2 predicted box(es) are malformed (1 with inverted corners'
    # each note is printed once (stdout), not logged again
    assert capsys.readouterr().out.count(note) == 1 and note not in caplog.text
    html = (out_dir / 'report.html').read_text()
    assert '(1 malformed, not drawn: inverted)' in html and '(1 malformed, not drawn: out_of_range)' in html


def test_a_malformed_box_beside_a_good_one_is_counted_and_the_good_one_scored(tmp_path):
    # one inverted box, then the hand-worked box of the edge test (IoU 1 under --grid-decode edge)
    args = _grounding_result(tmp_path, '<ref>haemorrhages</ref><box>[[200, 300, 100, 100], [100, 100, 200, 300]]'
                                       '</box>', [[20, 10, 40, 30]])
    assert _run(args + ['--grid-decode', 'edge']) == 0
    g = json.loads((tmp_path / 'gout' / 'metrics.json').read_text())['grounding']
    assert (g['n_pred'], g['n_matched'], g['malformed_boxes'], g['acc50'], g['precision50']) == (2, 1, 1, 1.0, 0.5)
    assert g['malformed_by_fault'] == {'inverted': 1, 'out_of_range': 0}
    (sample,) = [json.loads(line) for line in (tmp_path / 'gout' / 'samples.jsonl').read_text().splitlines()]
    assert sample['pred_faults'] == ['inverted', '']


def test_box_tags_without_a_readable_box_and_empty_responses_are_counted(tmp_path, capsys):
    args = _grounding_result(tmp_path, '<ref>haemorrhages</ref><box>[[100, 100, 200, 300]]</box>', [[20, 10, 40, 30]])
    result = args[1]
    (row,) = [json.loads(line) for line in open(result)]
    with open(result, 'a') as f:
        for response in ('<ref>haemorrhages</ref><box>[[100, 100, 200]]</box>',           # three numbers
                         '<ref>haemorrhages</ref><box>[[100, 100, 200, abc]]</box><box></box>',   # a word, empty
                         '   ', '<|object_ref_start|>haemorrhages<|object_ref_end|><|box_start|>(1,2)<|box_end|>'):
            f.write(json.dumps(dict(row, response=response)) + '\n')
    assert _run(args) == 0
    metrics = json.loads((tmp_path / 'gout' / 'metrics.json').read_text())
    assert metrics['grounding_responses'] == {'n_rows': 5, 'n_rows_with_boxes': 1, 'n_empty_responses': 1,
                                              'n_unparsed_box_tags': 4, 'n_rows_with_unparsed_box_tags': 3}
    assert metrics['grounding']['n_pred'] == 1 and metrics['grounding']['acc50'] == 0.2
    samples = [json.loads(line) for line in (tmp_path / 'gout' / 'samples.jsonl').read_text().splitlines()]
    assert [s.get('unparsed_box_tags', 0) for s in samples] == [0, 1, 2, 0, 1]
    assert [s.get('empty_response', False) for s in samples] == [False, False, False, True, False]
    out = capsys.readouterr().out
    assert 'note: 4 box tag(s) in 3 grounding row(s) hold no readable box' in out
    assert 'note: 1 grounding row(s) have an empty response' in out
    assert 'box tags holding no readable box</th><td>5 / 1 / 1 / 4' in (tmp_path / 'gout' / 'report.html').read_text()


def test_coco_ap_does_not_depend_on_the_order_of_the_result_rows(tmp_path):
    # a.png: a false box first (rank score 1.0), then the true one (0.5); b.png: the true one (1.0).
    # pycocotools breaks the tie at 1.0 by image id; images are ordered by path, so a.png comes first
    # whatever the file order: FP, TP, TP -> precision 1/2 at recall 1/2, 2/3 at recall 1; interpolated
    # 2/3 everywhere, AP = 2/3 (b.png first would give (51 * 1 + 50 * 2/3) / 101 = 0.835)
    rows = []
    for name, response in (('a.png', '[[500, 500, 700, 700], [100, 100, 200, 300]]'), ('b.png', '[[100, 100, 200, 300]]')):
        Image.new('RGB', (200, 100)).save(tmp_path / name)
        rows.append(_row('<image>Locate the <ref-object>.', '<ref-object><bbox>',
                         f'<ref>optic disc</ref><box>{response}</box>', str(tmp_path / name),
                         {'ref': ['optic disc', 'optic disc'], 'bbox': [[20, 10, 40, 30]]}))
    for order in (rows, rows[::-1]):
        result = tmp_path / 'r.jsonl'
        result.write_text(''.join(json.dumps(r) + '\n' for r in order))
        assert _run(['--result', str(result), '--out', str(tmp_path / 'o'), '--grid-decode', 'edge']) == 0
        coco = json.loads((tmp_path / 'o' / 'metrics.json').read_text())['grounding']['coco']
        assert coco['ap50'] == pytest.approx(2 / 3)


def test_coco_ap_does_not_depend_on_the_order_of_two_prompts_on_one_photo(tmp_path):
    # the EN and ZH rows of one photo share image and references; the same tie as above, decided by
    # the prompt ('Locate' sorts before the CJK prompt): the EN row's FP first -> AP50 = 2/3 either way
    Image.new('RGB', (200, 100)).save(tmp_path / 'a.png')
    rows = [_row(prompt, '<ref-object><bbox>', f'<ref>optic disc</ref><box>{response}</box>', str(tmp_path / 'a.png'),
                 {'ref': ['optic disc', 'optic disc'], 'bbox': [[20, 10, 40, 30]]})
            for prompt, response in (('<image>Locate the <ref-object>.', '[[500, 500, 700, 700], [100, 100, 200, 300]]'),
                                     ('<image>请定位<ref-object>。', '[[100, 100, 200, 300]]'))]
    for order in (rows, rows[::-1]):
        result = tmp_path / 'r.jsonl'
        result.write_text(''.join(json.dumps(r) + '\n' for r in order))
        assert _run(['--result', str(result), '--out', str(tmp_path / 'o'), '--grid-decode', 'edge']) == 0
        coco = json.loads((tmp_path / 'o' / 'metrics.json').read_text())['grounding']['coco']
        assert coco['ap50'] == pytest.approx(2 / 3)


def test_settings_record_the_pixel_budget_and_where_it_came_from(tmp_path, monkeypatch):
    args = _grounding_result(tmp_path, '<ref>haemorrhages</ref><box>[[100, 100, 200, 300]]</box>', [[20, 10, 40, 30]])
    monkeypatch.setenv('MAX_PIXELS', '12544')
    monkeypatch.delenv('MIN_PIXELS', raising=False)
    assert _run(args) == 0
    settings = json.loads((tmp_path / 'gout' / 'metrics.json').read_text())['settings']
    assert (settings['max_pixels'], settings['max_pixels_from']) == (12544, 'environment')
    assert (settings['min_pixels'], settings['min_pixels_from']) == (None, 'default')
    assert _run(args + ['--max-pixels', '50176']) == 0
    settings = json.loads((tmp_path / 'gout' / 'metrics.json').read_text())['settings']
    assert (settings['max_pixels'], settings['max_pixels_from']) == (50176, 'option')


def test_a_capped_row_is_scored_against_the_full_ground_truth(tmp_path):
    # the answer shows 1 of 2 boxes; the meta's full_gt_boxes_px holds both. The model finds both (edge rule,
    # exact): against objects it would be 1 of 1 matched with 1 false positive (precision 0.5); against the
    # full ground truth both are matched: acc50 = recall50 = precision50 = 1.0, n_gt = 2
    response = '<ref>haemorrhages</ref><box>[[100, 100, 200, 300], [500, 500, 600, 700]]</box>'
    full = [['haemorrhages', [20, 10, 40, 30]], ['haemorrhages', [100, 50, 120, 70]]]
    args = _grounding_result(tmp_path, response, [[20, 10, 40, 30]], [{'index': 0, 'task': 'grounding',
                                                                       'full_gt_boxes_px': full}])
    assert _run(args + ['--grid-decode', 'edge']) == 0
    g = json.loads((tmp_path / 'gout' / 'metrics.json').read_text())['grounding']
    assert (g['n_gt'], g['acc50'], g['precision50'], g['recall50']) == (2, 1.0, 1.0, 1.0)
    args = _grounding_result(tmp_path, response, [[20, 10, 40, 30]])
    assert _run(args + ['--grid-decode', 'edge']) == 0
    g = json.loads((tmp_path / 'gout' / 'metrics.json').read_text())['grounding']
    assert (g['n_gt'], g['acc50'], g['precision50']) == (1, 1.0, 0.5)


def test_tsv_categories_are_all_listed(tmp_path):
    from fundusexpert_plugin.eval.mcq_tsv import TsvItem, write_tsv
    image = tmp_path / 'm.png'
    Image.new('RGB', (8, 8)).save(image)
    items = [TsvItem('0', 'Is there glaucoma?', {'A': 'non glaucoma', 'B': 'glaucoma'}, 'B', 'glaucoma',
                     str(image)),
             TsvItem('1', 'Which lesion?', {'A': 'drusen', 'B': 'haemorrhages'}, 'A', 'lesion', str(image))]
    tsv = tmp_path / 'bench.tsv'
    write_tsv(items, str(tsv))
    prompt = '<image>' + build_prompt(items[0].question, items[0].options)
    result = tmp_path / 'r.jsonl'
    result.write_text(json.dumps(_row(prompt, 'B', 'B', str(image))) + '\n')
    assert _run(['--result', str(result), '--tsv', str(tsv), '--out', str(tmp_path / 'mout')]) == 0
    m = json.loads((tmp_path / 'mout' / 'metrics.json').read_text())['mcq']
    # only the glaucoma item was answered (right); 'lesion' has no result row: 0.0 with n = 0
    assert m['strict']['per_category'] == {'glaucoma': 1.0, 'lesion': 0.0}
    assert m['per_category_n'] == {'glaucoma': 1, 'lesion': 0}
    assert json.loads((tmp_path / 'mout' / 'metrics.json').read_text())['notes'] == []


def test_rows_that_match_no_tsv_item_are_noted(tmp_path, capsys):
    from fundusexpert_plugin.eval.mcq_tsv import TsvItem, write_tsv
    image = tmp_path / 'm.png'
    Image.new('RGB', (8, 8)).save(image)
    tsv = tmp_path / 'bench.tsv'
    write_tsv([TsvItem('0', 'Is there glaucoma?', {'A': 'non glaucoma', 'B': 'glaucoma'}, 'B', 'glaucoma',
                       str(image))], str(tsv))
    other = '<image>' + build_prompt('Which lesion?', {'A': 'drusen', 'B': 'haemorrhages'})
    result = tmp_path / 'r.jsonl'
    result.write_text(json.dumps(_row(other, 'A', 'A', str(image))) + '\n')
    assert _run(['--result', str(result), '--tsv', str(tsv), '--out', str(tmp_path / 'mout')]) == 0
    metrics = json.loads((tmp_path / 'mout' / 'metrics.json').read_text())
    assert metrics['mcq']['per_category_n'] == {'Unknown': 1, 'glaucoma': 0}
    assert metrics['notes'] == ['1 MCQ row(s) match no --tsv item (same prompt, and the same image where prompts '
                                'repeat): answer from the row itself, category Unknown']
    assert 'note: 1 MCQ row(s) match no --tsv item' in capsys.readouterr().out


def test_contradictions_in_samples_and_metrics(tmp_path):
    image = tmp_path / 'r.png'
    Image.new('RGB', (8, 8)).save(image)
    result = tmp_path / 'r.jsonl'
    result.write_text(json.dumps(_row('<image>Describe the fundus.', 'ref', 'Haemorrhages are seen. No haemorrhages.',
                                      str(image))) + '\n')
    meta = tmp_path / 'm.jsonl'
    meta.write_text(json.dumps({'index': 0, 'positives': ['haemorrhages'], 'negatives': ['drusen']}) + '\n')
    assert _run(['--result', str(result), '--meta', str(meta), '--out', str(tmp_path / 'cout')]) == 0
    (sample,) = [json.loads(line) for line in (tmp_path / 'cout' / 'samples.jsonl').read_text().splitlines()]
    # haemorrhages stated present and absent: contradiction, not credited -> Score 0 / Total 1 (drusen unmentioned)
    assert sample['consistency']['contradictions'] == ['haemorrhages']
    assert (sample['consistency']['score'], sample['consistency']['total']) == (0, 1)
    c = json.loads((tmp_path / 'cout' / 'metrics.json').read_text())['consistency']
    assert c['contradictions'] == 1 and c['n_reports_with_contradictions'] == 1 and c['pooled'] == 0.0
    assert 'contradictions (not credited): haemorrhages' in (tmp_path / 'cout' / 'report.html').read_text()
