"""`fundusexpert eval score|mcq-rows|mcq-export` on malformed inputs: one line naming the file, the line
and the field, exit 2 (exit 1 when there is nothing to write), never a traceback; and the notes that
say how many meta records and result rows found no partner."""
import base64
import csv
import io
import json

import pytest
from PIL import Image

from fundusexpert_plugin.cli.main import main
from fundusexpert_plugin.eval.mcq import build_prompt

MCQ_USER = '<image>' + build_prompt('Is there glaucoma?', {'A': 'non glaucoma', 'B': 'glaucoma'})


@pytest.fixture
def image(tmp_path):
    path = tmp_path / 'fundus.png'
    Image.new('RGB', (200, 100), (120, 40, 20)).save(path)
    return str(path)


def _row(image, **fields):
    row = {'response': 'B', 'labels': 'B', 'images': [{'bytes': None, 'path': image}],
           'messages': [{'role': 'user', 'content': MCQ_USER}, {'role': 'assistant', 'content': 'B'}]}
    row.update(fields)
    return {k: v for k, v in row.items() if v is not ...}


def _jsonl(path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows), encoding='utf-8')
    return path


def _call(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert 'Traceback' not in out.out + out.err
    return rc, out.out, out.err


def _error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _score(tmp_path, rows, meta=None, capsys=None):
    result = _jsonl(tmp_path / 'r.jsonl', rows)
    argv = ['eval', 'score', '--result', result, '--out', tmp_path / 'out']
    if meta is not None:
        argv += ['--meta', _jsonl(tmp_path / 'm.jsonl', meta)]
    return _call(argv, capsys)


# 1. wrong JSON types in a result row
@pytest.mark.parametrize('field, value, expected', [
    ('objects', 'oops', "r.jsonl:3: objects = 'oops': expected an object {ref, bbox, bbox_type}, got str"),
    ('messages', 'hello', "r.jsonl:3: messages = 'hello': expected a list of {role, content} objects, got str"),
    ('images', 7, "r.jsonl:3: images = 7: expected a path or a list of image paths, got int"),
    ('labels', 7, 'r.jsonl:3: labels = 7: expected the reference text (a string), got int'),
])
def test_a_result_field_of_the_wrong_type_is_named_with_file_and_line(tmp_path, image, capsys, field, value, expected):
    rows = [_row(image), _row(image), _row(image, **{field: value})]
    rc, _, err = _score(tmp_path, rows, capsys=capsys)
    assert rc == 2
    assert _error_line(err) == f'fundusexpert: error: {tmp_path}/{expected}'


def test_a_single_image_path_string_is_one_image_as_in_swift(tmp_path, image):
    from fundusexpert_plugin.eval.results import check_swift_row, image_path
    row = _row(image, images=str(image))
    check_swift_row(row, 'r.jsonl:1')
    assert image_path(row) == str(image)


def test_a_message_that_is_not_an_object_is_named_by_position(tmp_path, image, capsys):
    rows = [_row(image, messages=[{'role': 'user', 'content': MCQ_USER}, 'B'])]
    rc, _, err = _score(tmp_path, rows, capsys=capsys)
    assert rc == 2 and "r.jsonl:1: messages[1] = 'B': expected an object {role, content}, got str" in err


# 2. a box of strings
def test_a_string_box_in_a_result_row_names_objects_bbox_index(tmp_path, image, capsys):
    rows = [_row(image), _row(image, objects={'ref': ['optic disc'], 'bbox': [[1, 2, 3, 4], ['a', 'b', 'c', 'd']]})]
    rc, _, err = _score(tmp_path, rows, capsys=capsys)
    assert rc == 2
    assert _error_line(err) == (f"fundusexpert: error: {tmp_path}/r.jsonl:2: objects.bbox[1] = ['a', 'b', 'c', 'd']: "
                                'expected a list of 2 or 4 or 6 or 8 numbers, got list')


def test_a_string_box_in_a_meta_record_is_named(tmp_path, image, capsys):
    meta = [{'index': 0, 'task': 'grounding', 'full_gt_boxes_px': [['optic disc', ['a', 'b', 'c', 'd']]]}]
    rc, _, err = _score(tmp_path, [_row(image)], meta, capsys=capsys)
    assert rc == 2
    assert f"{tmp_path}/m.jsonl:1: full_gt_boxes_px[0][1] = ['a', 'b', 'c', 'd']: expected a list of 4 numbers" in err


def test_a_string_box_in_a_fundusgen_meta_row_is_named(tmp_path, image, capsys):
    fundusgen = {'kind': 'region_detection', 'task': 'region_detection', 'messages': [{'role': 'user', 'content': 'x'}],
                 'objects': {'ref': ['optic disc'], 'bbox': [['a', 'b', 'c', 'd']]}}
    rc, _, err = _score(tmp_path, [_row(image), _row(image)], [{**fundusgen, 'objects': {}}, fundusgen],
                        capsys=capsys)
    assert rc == 2 and f"{tmp_path}/m.jsonl:2: objects.bbox[0] = ['a', 'b', 'c', 'd']" in err


# 3. a meta task outside the scorers
def test_an_unknown_meta_task_names_the_meta_file_and_line(tmp_path, image, capsys):
    rc, _, err = _score(tmp_path, [_row(image), _row(image)],
                        [{'index': 0, 'task': 'mcq'}, {'index': 1, 'task': 'detection'}], capsys=capsys)
    assert rc == 2
    assert _error_line(err).startswith(f"fundusexpert: error: {tmp_path}/m.jsonl:2: task = 'detection': is not one "
                                       "of ('grounding', 'mcq', 'report', 'answer')")


# 4. a response that is not text
@pytest.mark.parametrize('value, expected', [
    (..., 'r.jsonl:2: response: missing (swift infer writes the generated text there)'),
    (None, 'r.jsonl:2: response = None: expected the generated text (a string), got NoneType'),
    (123, 'r.jsonl:2: response = 123: expected the generated text (a string), got int'),
])
def test_a_response_that_is_not_text_is_refused(tmp_path, image, capsys, value, expected):
    rc, _, err = _score(tmp_path, [_row(image), _row(image, response=value)], capsys=capsys)
    assert rc == 2 and _error_line(err) == f'fundusexpert: error: {tmp_path}/{expected}'


def test_an_empty_response_is_an_empty_answer(tmp_path, image, capsys):
    rc, _, _ = _score(tmp_path, [_row(image, response='')], capsys=capsys)
    assert rc == 0
    assert json.loads((tmp_path / 'out' / 'metrics.json').read_text())['mcq']['strict']['overall'] == 0.0


# 5. meta and results are joined by row position
def test_a_meta_index_with_no_result_row_is_refused(tmp_path, image, capsys):
    rows = [_row(image)] * 5
    rc, _, err = _score(tmp_path, rows, [{'index': 0, 'task': 'mcq'}, {'index': 99, 'task': 'mcq'}], capsys=capsys)
    assert rc == 2
    assert _error_line(err) == (f'fundusexpert: error: {tmp_path}/m.jsonl:2: index = 99: no such result row (the '
                                'result file has 5 rows, numbered from 0)')


def test_a_repeated_meta_index_names_both_lines(tmp_path, image, capsys):
    rc, _, err = _score(tmp_path, [_row(image)] * 2, [{'index': 1}, {'index': 0}, {'index': 1}], capsys=capsys)
    assert rc == 2 and f'{tmp_path}/m.jsonl:3: index = 1: appears twice (first on line 1)' in err


def test_a_longer_fundusgen_meta_file_and_rows_without_meta_are_counted(tmp_path, image, capsys):
    fundusgen = {'kind': 'mcq', 'task': 'mcq', 'answer_letter': 'B',
                 'messages': [{'role': 'user', 'content': MCQ_USER}, {'role': 'assistant', 'content': 'B'}]}
    rc, out, _ = _score(tmp_path, [_row(image)] * 5, [fundusgen] * 200, capsys=capsys)
    assert rc == 0
    notes = json.loads((tmp_path / 'out' / 'metrics.json').read_text())['notes']
    expected = ('195 meta record(s) have no result row (the result has 5 rows; meta and results are matched by row '
                'position) and are not scored')
    assert expected in notes and f'note: {expected}' in out
    # an index meta file covering 2 of 3 rows: the third is counted
    rc, out, _ = _score(tmp_path, [_row(image)] * 3, [{'index': 0, 'task': 'mcq'}, {'index': 2, 'task': 'mcq'}],
                        capsys=capsys)
    assert rc == 0 and 'note: 1 result row(s) have no meta record' in out


# 5b. an MCQ answer in the meta that is not one of the row's options: the check mcq-rows applies to a TSV row
@pytest.mark.parametrize('record, expected', [
    # options from the prompt (A, B)
    ({'index': 1, 'task': 'mcq', 'answer': 'Z'}, "m.jsonl:2: answer = 'Z': is not one of the row's options ['A', 'B']"),
    # options from the meta record itself
    ({'index': 1, 'answer': 'C', 'options': {'A': 'non glaucoma', 'B': 'glaucoma'}},
     "m.jsonl:2: answer = 'C': is not one of the row's options ['A', 'B']"),
    # the side file of another result: its options are not the ones the row's prompt offered
    ({'index': 1, 'answer': 'C', 'options': {'A': 'no DR', 'B': 'mild NPDR', 'C': 'PDR'}},
     "m.jsonl:2: options = ['A', 'B', 'C'] (A. no DR; B. mild NPDR; C. PDR) do not match the options of result "
     "row 1 (A. non glaucoma; B. glaucoma): is this the side file of another result?"),
    ({'index': 1, 'answer': 'B', 'options': {'A': 'glaucoma', 'B': 'non glaucoma'}},
     "m.jsonl:2: options = ['A', 'B'] (A. glaucoma; B. non glaucoma) do not match the options of result "
     "row 1 (A. non glaucoma; B. glaucoma): is this the side file of another result?"),
])
def test_an_mcq_meta_answer_that_is_no_option_names_the_meta_line_and_field(tmp_path, image, capsys, record, expected):
    rc, _, err = _score(tmp_path, [_row(image), _row(image)], [{'index': 0, 'task': 'mcq', 'answer': 'B'}, record],
                        capsys=capsys)
    assert rc == 2 and _error_line(err) == f'fundusexpert: error: {tmp_path}/{expected}'
    assert not (tmp_path / 'out').exists()          # refused before anything is scored or written


def test_a_fundusgen_answer_letter_that_is_no_option_is_refused(tmp_path, image, capsys):
    fundusgen = {'kind': 'mcq', 'task': 'mcq', 'answer_letter': 'B',
                 'messages': [{'role': 'user', 'content': MCQ_USER}, {'role': 'assistant', 'content': 'B'}]}
    rc, _, err = _score(tmp_path, [_row(image)] * 2, [fundusgen, dict(fundusgen, answer_letter='Z')], capsys=capsys)
    assert rc == 2 and _error_line(err) == (f"fundusexpert: error: {tmp_path}/m.jsonl:2: answer_letter = 'Z': is not "
                                            "one of the row's options ['A', 'B']")
    # a well-formed answer is scored as before: strict 'B' == 'B' on both rows
    rc, _, _ = _score(tmp_path, [_row(image)] * 2, [{'index': 0, 'answer': ' B'}, {'index': 1, 'answer': 'B'}],
                      capsys=capsys)
    assert rc == 0 and json.loads((tmp_path / 'out' / 'metrics.json').read_text())['mcq']['strict']['overall'] == 1.0


# 5c. meta label ids: aliases as the builder reads them; an id the offline judge cannot read is an error
REPORT_USER = '<image>Describe the fundus.'


def _report(image, response):
    return _row(image, response=response, labels='ref report',
                messages=[{'role': 'user', 'content': REPORT_USER}, {'role': 'assistant', 'content': response}])


def test_meta_label_aliases_resolve_as_in_the_builder(tmp_path, image, capsys):
    # 'cws' -> cotton_wool_spots, 'hemorrhage' -> haemorrhages, 'optic_disk' -> optic_disc (anatomy: left out,
    # noted); the report states CWS present (+1) and haemorrhages absent (+1): Score 2 / Total 2
    rows = [_report(image, 'Cotton wool spots are seen. No haemorrhages are seen.')]
    meta = [{'index': 0, 'positives': ['optic_disk', 'cws'], 'negatives': ['hemorrhage']}]
    rc, out, _ = _score(tmp_path, rows, meta, capsys=capsys)
    assert rc == 0
    metrics = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    assert (metrics['consistency']['score_sum'], metrics['consistency']['total_sum']) == (2, 2)
    sample = json.loads((tmp_path / 'out' / 'samples.jsonl').read_text().splitlines()[0])
    assert sample['consistency']['statuses'] == {'cotton_wool_spots': 'present', 'haemorrhages': 'absent'}
    assert ("note: meta positives/negatives ['optic_disk'] are anatomy, not findings: left out of clinical "
            'consistency') in out


@pytest.mark.parametrize('record, expected', [
    ({'index': 0, 'positives': ['optic_disk', 'cwss']},
     "m.jsonl:1: positives: label 'cwss' is not in the LexiconJudge vocabulary (it could never be found, so it would "
     "always count as not mentioned); did you mean 'cotton_wool_spots'?"),
    ({'index': 0, 'positives': ['drusen'], 'negatives': ['papillary_pit']},
     "m.jsonl:1: negatives: label 'papillary_pit' is not in the LexiconJudge vocabulary"),
    ({'index': 0, 'positives': ['hemorrhages'], 'negatives': ['haemorrhage']},
     "m.jsonl:1: negatives: ['haemorrhages'] also in positives (after aliases are resolved)"),
])
def test_a_meta_label_the_offline_judge_cannot_read_is_an_error(tmp_path, image, capsys, record, expected):
    rc, _, err = _score(tmp_path, [_report(image, 'Drusen are seen.')], [record], capsys=capsys)
    assert rc == 2 and _error_line(err).startswith(f'fundusexpert: error: {tmp_path}/{expected}')


def test_an_open_vocabulary_judge_is_asked_about_any_label(tmp_path, image):
    from fundusexpert_plugin.eval.llm_judge import OpenAIJudge
    from fundusexpert_plugin.eval.report import evaluate_rows
    from fundusexpert_plugin.eval.results import load_meta, read_results

    class Judge(OpenAIJudge):
        def __init__(self):
            self.vocabulary, self.asked = ('drusen',), []

        def judge(self, report, findings, lang='en'):
            self.asked.append(list(findings))
            return {f: 'present' for f in findings}

    result = _jsonl(tmp_path / 'r.jsonl', [_report(image, 'Papillary pits and drusen.')])
    meta = load_meta(str(_jsonl(tmp_path / 'm.jsonl', [{'index': 0, 'positives': ['papillary_pit', 'druse']}])))
    judge = Judge()
    assert not judge.closed_vocabulary
    metrics, _ = evaluate_rows(read_results(str(result)), meta, judge=judge)
    # the unknown label is asked by name, the alias resolved: both present -> 2/2
    assert judge.asked == [['papillary_pit', 'drusen']] and metrics['consistency']['pooled'] == 1.0


# 6. mcq-rows on bad TSVs
def _png_b64():
    buf = io.BytesIO()
    Image.new('RGB', (8, 6), 'red').save(buf, format='PNG')
    return base64.b64encode(buf.getvalue()).decode('ascii')


def _tsv(tmp_path, rows, header=('index', 'question', 'A', 'B', 'C', 'answer', 'image_path', 'image')):
    path = tmp_path / 'bench.tsv'
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f, delimiter='\t', lineterminator='\n')
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _mcq_rows(tmp_path, rows, capsys):
    tsv = _tsv(tmp_path, rows)
    return _call(['eval', 'mcq-rows', '--tsv', tsv, '--out', tmp_path / 'rows' / 'bench.jsonl'], capsys)


@pytest.mark.parametrize('bad, expected', [
    (['1', 'Q?', 'x', 'y', '', 'F', '', 'B64'], "bench.tsv:3: answer = 'F': is not one of the row's options ['A', 'B']"),
    (['1', 'Q?', 'x', 'y', '', 'C', '', 'B64'], "bench.tsv:3: answer = 'C': is not one of the row's options ['A', 'B']"),
    (['1', 'Q?', 'x', 'y', '', 'A', 'nope.png', ''], "bench.tsv:3: image_path = 'nope.png': image file not found"),
    (['0', 'Q?', 'x', 'y', '', 'A', '', 'B64'], "bench.tsv:3: index = '0': appears twice (first on line 2)"),
    (['1', 'Q?', 'x', 'y', '', 'A', '', 'not*base64'],
     "bench.tsv:3: image = 'not*base64': neither base64 image data nor the index of a row holding the image"),
    (['1', 'Q?', 'x', 'y', '', 'A', '', '%' * 100], 'bench.tsv:3: image = ' + repr('%' * 20) + '...: invalid base64'),
])
def test_mcq_rows_refuses_a_bad_tsv_row_by_line_and_column(tmp_path, capsys, bad, expected):
    good = ['0', 'Q?', 'x', 'y', 'z', 'C', '', _png_b64()]
    bad = [_png_b64() if cell == 'B64' else cell for cell in bad]
    rc, _, err = _mcq_rows(tmp_path, [good, bad], capsys)
    assert rc == 2 and _error_line(err).startswith(f'fundusexpert: error: {tmp_path}/{expected}')
    assert not (tmp_path / 'rows' / 'bench.meta.jsonl').exists()


def test_mcq_rows_names_the_line_of_base64_data_that_is_no_image_and_leaves_no_images(tmp_path, capsys):
    not_an_image = base64.b64encode(b'<html>not an image</html>' * 4).decode('ascii')
    rows = [['0', 'Q?', 'x', 'y', 'z', 'C', '', _png_b64()], ['1', 'Q?', 'x', 'y', '', 'A', '', not_an_image]]
    rc, _, err = _mcq_rows(tmp_path, rows, capsys)
    line = _error_line(err)
    assert rc == 2 and line.startswith(f'fundusexpert: error: {tmp_path}/bench.tsv:3: image: the base64 data is not a '
                                       'readable image (')
    assert '/tmp' not in line.split('image (', 1)[1]        # no temporary file name in the reason
    assert not (tmp_path / 'rows' / 'images').exists()       # the first row's decoded image is removed again
    assert not [p for p in (tmp_path / 'rows').rglob('*') if p.is_file()]


def test_mcq_rows_accepts_an_image_path_relative_to_the_tsv(tmp_path, capsys):
    Image.new('RGB', (8, 6)).save(tmp_path / 'a.png')
    rc, _, _ = _mcq_rows(tmp_path, [['0', 'Q?', 'x', 'y', '', 'B', 'a.png', '']], capsys)
    assert rc == 0
    (meta,) = [json.loads(line) for line in (tmp_path / 'rows' / 'bench.meta.jsonl').read_text().splitlines()]
    assert (meta['answer'], meta['options']) == ('B', {'A': 'x', 'B': 'y'})


# 1, 2 and 7 for mcq-export
def test_mcq_export_names_a_messages_field_of_the_wrong_type(tmp_path, capsys):
    rows = _jsonl(tmp_path / 'fg.jsonl', [{'kind': 'mcq', 'messages': 'x'}])
    rc, _, err = _call(['eval', 'mcq-export', '--rows', rows, '--out', tmp_path / 'o.tsv'], capsys)
    assert rc == 2
    assert _error_line(err) == (f"fundusexpert: error: {tmp_path}/fg.jsonl:1: messages = 'x': expected a list of "
                                '{role, content} objects, got str')


def test_mcq_export_names_a_string_box(tmp_path, image, capsys):
    user = ('<image>Question: Which of the following is located at <bbox> in this fundus image?\n'
            'A. drusen\nB. optic disc')
    row = {'kind': 'mcq', 'messages': [{'role': 'user', 'content': user}, {'role': 'assistant', 'content': 'B'}],
           'images': [image], 'objects': {'ref': [], 'bbox': [['1', '2', '3', '4']]}}
    rows = _jsonl(tmp_path / 'fg.jsonl', [{'kind': 'report', 'messages': []}, row])
    rc, _, err = _call(['eval', 'mcq-export', '--rows', rows, '--out', tmp_path / 'o.tsv'], capsys)
    assert rc == 2 and f"{tmp_path}/fg.jsonl:2: objects.bbox[0] = ['1', '2', '3', '4']: expected a list of" in err


def test_mcq_export_without_mcq_rows_writes_nothing_and_exits_1(tmp_path, image, capsys):
    report = {'kind': 'report', 'images': [image], 'messages': [
        {'role': 'user', 'content': '<image>Describe the fundus.'}, {'role': 'assistant', 'content': 'Normal.'}]}
    rows = _jsonl(tmp_path / 'fg.jsonl', [report, report])
    rc, out, err = _call(['eval', 'mcq-export', '--rows', rows, '--out', tmp_path / 'o.tsv'], capsys)
    assert rc == 1 and not (tmp_path / 'o.tsv').exists() and out == ''
    assert _error_line(err) == (f'fundusexpert: nothing to write: {tmp_path}/fg.jsonl has no MCQ item (2 rows, none '
                                f'with lettered options and a letter answer); {tmp_path}/o.tsv not written')
