"""The swift eval benchmarks' items and scoring, without evalscope (what the evalscope adapter calls)."""
import base64
import importlib.util
import io
import json
import urllib.request

import pytest
from PIL import Image

from fundusexpert_plugin.core import geometry
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.eval.mcq import build_prompt
from fundusexpert_plugin.swift_plugin import eval_benchmarks as eb
from fundusexpert_plugin.swift_plugin import evalscope_benchmarks
from fundusexpert_plugin.testing.openai_stub import OpenAIStub, image_digest, request_key


def _png_b64(size=(4, 3)):
    buf = io.BytesIO()
    Image.new('RGB', size, (10, 20, 30)).save(buf, format='PNG')
    return base64.b64encode(buf.getvalue()).decode('ascii')


@pytest.fixture
def tsv(tmp_path):
    image = tmp_path / 'a.jpg'
    Image.new('RGB', (8, 6)).save(image)
    rows = ['index\tquestion\tA\tB\tC\tanswer\tcategory\timage_path\timage',
            f'1\tWhich disease?\tnormal\tglaucoma\t\tB\tGlaucoma\t{image}\t',
            f'2\tWhich stage?\tmild\tsevere\tnone\tA\tDR\t\t{_png_b64()}',
            f'3\tWhich eye?\tleft\tright\t\tB\t\t{image}\t',
            f'4\tIs it glaucoma?\tno\tyes\t\tB\tGlaucoma\t{image}\t']
    path = tmp_path / 'b.tsv'
    path.write_text('\n'.join(rows) + '\n', encoding='utf-8')
    return path


def test_register_is_quiet_without_evalscope():
    if importlib.util.find_spec('evalscope') is not None:
        pytest.skip('evalscope is installed here')
    assert evalscope_benchmarks.register() is None
    with pytest.raises(ImportError):
        evalscope_benchmarks.adapter_class()


def test_mmbench_items_prompt_images_and_meta(tsv, tmp_path):
    items = eb.mmbench_items(str(tsv))
    assert [i.index for i in items] == [0, 1, 2, 3] and [i.target for i in items] == ['B', 'A', 'B', 'B']
    first, second = items[0], items[1]
    prompt = build_prompt('Which disease?', {'A': 'normal', 'B': 'glaucoma'})
    assert first.messages == [{'role': 'user', 'content': '<image>' + prompt}]
    assert eb.message_parts(first) == [('user', [('image', str(tmp_path / 'a.jpg')), ('text', prompt)])]
    # the paper's option format, and the base64 image sent as a data URI of its own format
    assert '\nA. normal\nB. glaucoma\n' in prompt
    assert second.images == ['data:image/png;base64,' + _png_b64()] and second.row['images'] == []
    assert first.meta == {'index': 0, 'task': 'mcq', 'answer': 'B', 'category': 'Glaucoma', 'tsv_index': '1',
                          'options': {'A': 'normal', 'B': 'glaucoma'}}
    assert eb.mmbench_categories(items) == ['Glaucoma', 'DR', 'Unknown']
    with pytest.raises(FileNotFoundError, match='local_path'):
        eb.mmbench_items(str(tmp_path / 'missing.tsv'))


def test_mcq_scores_per_item_and_entries_list_every_category(tsv):
    items = eb.mmbench_items(str(tsv))
    responses = ['B', ' A', 'The answer is B.', 'D']   # strict: hit, miss, miss, miss; lenient: hit, hit, hit, miss
    rows = [eb.result_row(i.row, r) for i, r in zip(items, responses)]
    assert rows[1]['messages'][-1] == {'role': 'assistant', 'content': ' A'} and rows[1]['response'] == ' A'
    per_item = []
    for item, row in zip(items, rows):
        metrics, samples = eb.score_rows([row], [item.meta])
        per_item.append(eb.sample_values(eb.MMBENCH, metrics, samples[0]))
    assert per_item == [{'strict_acc': 1.0, 'lenient_acc': 1.0}, {'strict_acc': 0.0, 'lenient_acc': 1.0},
                        {'strict_acc': 0.0, 'lenient_acc': 1.0}, {'strict_acc': 0.0, 'lenient_acc': 0.0}]
    # --eval_limit 3: the fourth item (Glaucoma) unscored; 'Cataract' is a category with no item at all
    metrics, _ = eb.score_rows(rows[:3], [i.meta for i in items[:3]])
    entries = {(e.metric, e.group): (e.score, e.num) for e in
               eb.report_entries(eb.MMBENCH, metrics, eb.mmbench_categories(items) + ['Cataract'])}
    assert entries == {
        ('strict_acc', 'all'): (0.333, 3), ('lenient_acc', 'all'): (1.0, 3),
        ('strict_acc_by_category', 'Glaucoma'): (1.0, 1), ('strict_acc_by_category', 'DR'): (0.0, 1),
        ('strict_acc_by_category', 'Unknown'): (0.0, 1), ('strict_acc_by_category', 'Cataract'): (0.0, 0),
        ('lenient_acc_by_category', 'Glaucoma'): (1.0, 1), ('lenient_acc_by_category', 'DR'): (1.0, 1),
        ('lenient_acc_by_category', 'Unknown'): (1.0, 1), ('lenient_acc_by_category', 'Cataract'): (0.0, 0)}


@pytest.fixture(scope='module')
def heldout(tmp_path_factory):
    from fundusexpert_plugin.build import build_sample
    out = tmp_path_factory.mktemp('fg')
    build_sample(out, languages=['en'])
    return out / 'heldout'


def test_fundusgen_items_and_grounding_scores(heldout):
    items = eb.benchmark_items(eb.GROUNDING, str(heldout), 'region_detection')
    # 4 held-out photos x 3 classes + the fovea of 0015 (an official IDRiD fovea centre)
    assert len(items) == 13 and all(i.images[0].startswith('/') for i in items)
    first = items[0]
    assert first.messages == [{'role': 'user', 'content': '<image>Locate the optic disc in this colour fundus photograph.'}]
    assert first.target == '<ref-object><bbox>' and first.row['objects']['bbox'] == [[167.75, 258.75, 298.25, 397.25]]
    reference = {'messages': first.messages, 'labels': '<ref-object><bbox>', 'objects': first.row['objects']}
    assert first.meta == {'category': 'region_detection', 'task': 'grounding',        # no findings for grounding
                          'reference': reference}
    assert 'positives' in eb.benchmark_items(eb.REPORT, str(heldout), 'grounded_report')[0].meta
    # the reference box on the 0-999 grid (InternVL): IoU 1 up to grid rounding; half-width shift: IoU 1/3
    grid = list(geometry.box_px_to_grid([167.75, 258.75, 298.25, 397.25], 1072, 712))
    metrics, samples = eb.score_rows([eb.result_row(first.row, f'<ref>optic disc</ref><box>[{grid}]</box>')], [first.meta])
    values = eb.sample_values(eb.GROUNDING, metrics, samples[0])
    assert values['best_match_iou'] > 0.98 and values['acc50'] == 1.0
    x1, y1, x2, y2 = 167.75, 258.75, 298.25, 397.25
    shifted = list(geometry.box_px_to_grid([x1 + (x2 - x1) / 2, y1, x2 + (x2 - x1) / 2, y2], 1072, 712))
    metrics, _ = eb.score_rows([eb.result_row(first.row, f'<ref>optic disc</ref><box>[{shifted}]</box>')], [first.meta])
    assert metrics['grounding']['best_match_iou'] == pytest.approx(1 / 3, abs=0.01)
    entries = {e.metric: e for e in eb.report_entries(eb.GROUNDING, metrics)}
    assert entries['acc50'].score == 0.0 and entries['acc50'].num == 1 and entries['coco_ap'].score == 0.0
    assert entries['precision50'].num == 1                      # weighted by predicted boxes
    assert 'n_gt' not in entries and 'coco_score_mode' not in entries


def test_fundusgen_bad_rows_named_by_file_and_line(tmp_path):
    (tmp_path / 'region_identification.jsonl').write_text(json.dumps(
        {'messages': [{'role': 'user', 'content': '<image>What is in <bbox>?'}, {'role': 'assistant', 'content': 'x'}],
         'images': ['a.jpg']}) + '\n')
    with pytest.raises(FundusDataError, match=r'region_identification\.jsonl:1: field messages: .*placeholders'):
        eb.fundusgen_items(str(tmp_path), 'region_identification')
    with pytest.raises(FileNotFoundError, match=r"no such task file; tasks in .*\['region_identification'\]"):
        eb.fundusgen_items(str(tmp_path), 'report')
    with pytest.raises(KeyError):
        eb.benchmark_items(eb.GROUNDING, str(tmp_path), 'report')


def test_report_consistency_and_judge_asked_once(heldout):
    items = eb.benchmark_items(eb.REPORT, str(heldout), 'report')
    judge = eb.make_judge()
    calls = []
    ask = judge.judge_with_contradictions
    judge.judge_with_contradictions = lambda *a: calls.append(a) or ask(*a)
    eb.memoize_judge(judge)
    rows = [eb.result_row(i.row, i.target) for i in items]   # the reference reports: every finding as labelled
    per_item = [eb.sample_values(eb.REPORT, *(lambda m, s: (m, s[0]))(*eb.score_rows([r], [i.meta], judge=judge)))
                for r, i in zip(rows, items)]
    assert per_item == [{'consistency': 1.0, 'consistency_score': 2.0, 'consistency_total': 2.0}] * 4
    metrics, _ = eb.score_rows(rows, [i.meta for i in items], judge=judge)
    assert len(calls) == 4                                     # the subset pass reused the answers
    entries = {e.metric: (e.score, e.num) for e in eb.report_entries(eb.REPORT, metrics)}
    # 4 reports, Total 2 each; no report states a finding both present and absent
    assert entries == {'per_report_mean': (1.0, 4), 'pooled': (1.0, 8), 'contradictions': (0.0, 4)}
    assert type(judge).__name__ == 'LexiconJudge'              # the name metrics.json reports


def test_split_images_order_and_errors():
    assert eb.split_images('<image>a<image> b ', ['x', 'y']) == [('image', 'x'), ('text', 'a'), ('image', 'y'),
                                                                 ('text', ' b ')]
    with pytest.raises(ValueError, match='more <image> tags'):
        eb.split_images('<image><image>', ['x'])


def test_openai_stub_answers_by_image_and_text(tmp_path):
    data = base64.b64decode(_png_b64())
    uri = 'data:image/png;base64,' + _png_b64()
    messages = [{'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': uri}},
                                             {'type': 'text', 'text': ' Which eye? '}]}]
    assert request_key(messages) == (image_digest(data), 'Which eye?')
    with OpenAIStub({(image_digest(data), 'Which eye?'): 'left'}, default='?') as stub:
        def ask(msgs):
            req = urllib.request.Request(stub.base_url + '/chat/completions', json.dumps({'messages': msgs}).encode(),
                                         {'Content-Type': 'application/json'})
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.load(resp)['choices'][0]['message']['content']
        assert ask(messages) == 'left'
        assert ask([{'role': 'user', 'content': 'other'}]) == '?'
        assert len(stub.requests) == 2


def test_fundusgen_items_read_only_the_tasks_the_build_summary_lists(tmp_path):
    row = {'messages': [{'role': 'user', 'content': '<image>Describe.'}, {'role': 'assistant', 'content': 'x'}],
           'images': ['a.jpg']}
    for name in ('report', 'notes'):
        (tmp_path / f'{name}.jsonl').write_text(json.dumps(row) + '\n')
    (tmp_path / 'build_summary.json').write_text(json.dumps({'rows_per_task': {'report': 1}}))
    assert len(eb.fundusgen_items(str(tmp_path), 'report')) == 1
    with pytest.raises(FileNotFoundError, match=r"notes\.jsonl: no such task file; tasks in .*: \['report'\]$"):
        eb.fundusgen_items(str(tmp_path), 'notes')
