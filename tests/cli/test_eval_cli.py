"""`fundusexpert eval` end to end on a crafted swift infer result file (no model, no network)."""
import argparse
import json

import pytest
from PIL import Image

from fundusexpert_plugin.cli import eval as cli
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
        _row(mcq_user, 'A', None, img),
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
    parser = cli.add_arguments(argparse.ArgumentParser())
    return cli.run(parser.parse_args(argv))


def test_eval_cli_writes_metrics_png_and_html(result_files, tmp_path, capsys):
    result, meta = result_files
    out = tmp_path / 'out'
    assert _run(['--result', str(result), '--meta', str(meta), '--out', str(out)]) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['tasks'] == {'grounding': 3, 'mcq': 3, 'report': 2}
    g = metrics['grounding']
    # row 0: grid cell centres (100.5, 100.5, 300.5, 500.5) * (0.2, 0.1) px vs (20, 10, 60, 50): IoU ~0.99;
    # row 1: no prediction -> 0; row 2 skipped (no image) -> mean over 2 references, Acc@0.5 = 1/2
    assert g['n_gt'] == 2 and g['acc50'] == 0.5 and g['best_match_iou'] == pytest.approx(0.5, abs=0.01)
    assert g['n_skipped_no_image'] == 1 and g['coco']['ap50'] == pytest.approx(0.5, abs=0.01)
    # MCQ: strict 1/3 (' B' and None miss), lenient 2/3; categories from --meta, row 5 'Unknown'
    assert metrics['mcq']['strict']['overall'] == 0.333 and metrics['mcq']['lenient']['overall'] == 0.667
    assert metrics['mcq']['strict']['per_category'] == {'Unknown': 0.0, 'glaucoma': 0.5}
    # consistency: row 6: HE present (+1), MA missed, haemorrhages absent (+1) -> 2/3; row 7 empty -> 0/1
    c = metrics['consistency']
    assert (c['score_sum'], c['total_sum']) == (2, 4) and c['pooled'] == 0.5
    assert c['per_report_mean'] == pytest.approx((2 / 3 + 0) / 2) and c['judge'] == 'LexiconJudge'
    assert (out / 'mcq_per_category.png').stat().st_size > 1000
    html = (out / 'report.html').read_text()
    assert html.count('data:image/jpeg;base64,') == 7 and 'per-report mean' in html and 'pooled' in html
    assert 'image file missing' in ' '.join(metrics['notes'])


def test_eval_cli_without_meta_skips_consistency_with_a_note(result_files, tmp_path, capsys):
    result, _ = result_files
    assert _run(['--result', str(result), '--out', str(tmp_path / 'o2')]) == 0
    metrics = json.loads((tmp_path / 'o2' / 'metrics.json').read_text())
    assert metrics['consistency'] is None
    assert any('clinical consistency skipped' in n for n in metrics['notes'])
    assert 'clinical consistency skipped' in capsys.readouterr().out


def test_box_space_argument_is_validated():
    parser = cli.add_arguments(argparse.ArgumentParser())
    assert parser.parse_args(['--result', 'r', '--out', 'o', '--box-space', 'qwen=grid']).box_space == [('qwen', 'grid')]
    with pytest.raises(SystemExit):
        parser.parse_args(['--result', 'r', '--out', 'o', '--box-space', 'qwen=norm'])


def test_label_ids_the_offline_judge_cannot_read_are_noted(result_files, tmp_path):
    result, meta = result_files
    meta.write_text(json.dumps({'index': 6, 'positives': ['hard_exudates', 'papillary_pit'], 'negatives': []}) + '\n')
    assert _run(['--result', str(result), '--meta', str(meta), '--out', str(tmp_path / 'o3')]) == 0
    metrics = json.loads((tmp_path / 'o3' / 'metrics.json').read_text())
    assert any("['papillary_pit'] are outside the LexiconJudge vocabulary" in n for n in metrics['notes'])
    # HE present (+1), the unknown positive is missed: 1/2
    assert (metrics['consistency']['score_sum'], metrics['consistency']['total_sum']) == (1, 2)


def test_unreadable_input_is_an_error_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / 'r.jsonl'
    bad.write_text('not json\n')
    assert _run(['--result', str(bad), '--out', str(tmp_path / 'o')]) == 2
    assert 'r.jsonl:1: not valid JSON' in capsys.readouterr().err
    assert _run(['--result', str(tmp_path / 'missing.jsonl'), '--out', str(tmp_path / 'o')]) == 2
