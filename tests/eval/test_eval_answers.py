"""Closed-answer scoring (eval/answers.py): grading, laterality, region identification."""
import pytest

from fundusexpert_plugin.eval.answers import AnswerResult, answer_metrics, normalise, parse_grade, score_answer
from fundusexpert_plugin.eval.report import evaluate_rows
from fundusexpert_plugin.eval.results import load_meta


@pytest.mark.parametrize('text, grade', [
    ('proliferative diabetic retinopathy (PDR)', '4'),
    ('Mild non-proliferative diabetic retinopathy.', '1'),     # longest match: not the grade-4 phrase inside it
    ('moderate NPDR', '2'), ('PDR', '4'), ('severe NPDR', '3'), ('no diabetic retinopathy', '0'),
    ('中度非增殖性糖尿病视网膜病变', '2'), ('增殖性糖尿病视网膜病变', '4'),
    ('grade 2', None), ('', None), (None, None),
    ('NPDRX', None),                                           # English short forms are whole words
])
def test_parse_grade_reads_every_name_of_the_icdr_scale(text, grade):
    assert parse_grade(text, 'dr_grade') == grade


def test_parse_grade_dme_tie_is_unparsed():
    assert parse_grade('无糖尿病黄斑水肿', 'dme_grade') == '0'
    assert parse_grade('No risk of diabetic macular oedema: no apparent hard exudates.', 'dme_grade') == '0'
    assert parse_grade('无糖尿病黄斑水肿风险：未见硬性渗出', 'dme_grade') == '0'
    assert parse_grade('no diabetic macular edema', 'dme_grade') == '0'       # the earlier wording still reads
    # "糖尿病黄斑水肿" alone is the short form of grades 1 and 2 alike: no grade
    assert parse_grade('糖尿病黄斑水肿', 'dme_grade') is None
    assert parse_grade('risk of diabetic macular oedema: hard exudates within one disc diameter of the macular '
                       'centre', 'dme_grade') == '2'
    assert parse_grade('Risk of diabetic macular oedema.', 'dme_grade') is None      # grade 1 or 2: not said


def test_normalise_and_exact_match():
    assert normalise(' "Left  eye." ') == 'left eye' and normalise('左眼。') == '左眼'
    assert score_answer('left eye', 'Left eye.', 'laterality').correct
    assert not score_answer('Right eye.', 'Left eye.', 'laterality').correct


def test_metrics_accuracy_and_quadratic_kappa_by_hand():
    # reference grades 0, 1, 2, 4; predictions 0, 2, 2, unparsed
    pairs = [('no diabetic retinopathy', 'no diabetic retinopathy'),
             ('mild NPDR', 'moderate non-proliferative diabetic retinopathy (moderate NPDR)'),
             ('moderate non-proliferative diabetic retinopathy (moderate NPDR)',
              'Moderate non-proliferative diabetic retinopathy (moderate NPDR).'),
             ('proliferative diabetic retinopathy (PDR)', 'it is hard to say')]
    results = [score_answer(pred, ref, 'grading', 'dr_grade') for ref, pred in pairs]
    assert [(r.ref_grade, r.pred_grade, r.correct) for r in results] == [
        ('0', '0', True), ('1', '2', False), ('2', '2', True), ('4', None, False)]
    m = answer_metrics(results)
    assert (m['n'], m['accuracy']) == (4, 0.5) and m['per_category'] == {'grading': {'n': 4, 'accuracy': 0.5}}
    g = m['grades']['dr_grade']
    assert (g['n'], g['accuracy'], g['n_unparsed']) == (4, 0.5, 1)
    # kappa over the 3 parsed rows, ref (0, 1, 2) vs pred (0, 2, 2), labels 0-4, weights w_ij = (i - j)^2 / 16:
    # observed: one disagreement (1 vs 2) -> (1/16) / 3; expected: the outer product of the marginals
    # ref (1/3, 1/3, 1/3, 0, 0) and pred (1/3, 0, 2/3, 0, 0): (8 + 1 + 2 + 4) / 144 = 15/144;
    # kappa = 1 - (3/144) / (15/144) = 0.8
    r, p = [1 / 3, 1 / 3, 1 / 3, 0, 0], [1 / 3, 0, 2 / 3, 0, 0]
    e_w = sum(r[i] * p[j] * (i - j) ** 2 / 16 for i in range(5) for j in range(5))
    assert e_w == pytest.approx(15 / 144)
    assert g['quadratic_kappa'] == pytest.approx(0.8)
    assert answer_metrics([AnswerResult('grading', True, 'dr_grade', '1', '1')])['grades']['dr_grade'][
        'quadratic_kappa'] is None                                            # one grade only: undefined


def _fundusgen_row(kind, task, answer, **extra):
    return {'messages': [{'role': 'user', 'content': '<image>q'}, {'role': 'assistant', 'content': answer}],
            'images': ['x.jpg'], 'task': task, 'kind': kind, 'lang': 'en', 'positives': [], 'negatives': [], **extra}


def test_fundusgen_meta_routes_grading_and_laterality_to_the_answer_scorer(tmp_path):
    from fundusexpert_plugin.core.jsonl import write_jsonl
    meta_rows = [_fundusgen_row('grading', 'grading', 'severe non-proliferative diabetic retinopathy (severe NPDR)',
                                grade_scale='dr_grade'),
                 _fundusgen_row('grading', 'grading', 'no diabetic macular oedema', grade_scale='dme_grade'),
                 _fundusgen_row('classification', 'laterality', 'Left eye.'),
                 _fundusgen_row('region_identification', 'region_identification', 'Fovea.')]
    meta_path = write_jsonl(tmp_path / 'meta.jsonl', meta_rows)
    responses = ['severe NPDR', 'no diabetic macular oedema', 'Right eye.', 'fovea']
    rows = [{'messages': r['messages'][:1], 'images': ['x.jpg'], 'response': resp, 'labels': r['messages'][1]['content']}
            for r, resp in zip(meta_rows, responses)]
    metrics, samples = evaluate_rows(rows, load_meta(str(meta_path), n_rows=len(rows)))
    assert metrics['tasks'] == {'grounding': 0, 'mcq': 0, 'report': 0, 'answer': 4}
    a = metrics['answers']
    # exact match: 'severe NPDR' is the right grade but not the reference text; laterality wrong
    assert a['per_category'] == {'grading': {'n': 2, 'accuracy': 0.5}, 'laterality': {'n': 1, 'accuracy': 0.0},
                                 'region_identification': {'n': 1, 'accuracy': 1.0}}
    assert a['grades']['dr_grade'] == {'n': 1, 'accuracy': 1.0, 'quadratic_kappa': None, 'n_unparsed': 0}
    assert a['grades']['dme_grade']['accuracy'] == 1.0
    assert samples[2]['answer'] == {'category': 'laterality', 'correct': False, 'scale': None,
                                    'ref_grade': None, 'pred_grade': None}


def test_qwen_boxes_without_a_pixel_budget_are_noted(tmp_path, monkeypatch):
    """Qwen boxes are pixels of the resized image: scoring them without the inference budget is noted."""
    from PIL import Image

    from fundusexpert_plugin.eval.report import EvalOptions
    Image.new('RGB', (1000, 800)).save(tmp_path / 'a.png')
    row = {'images': [str(tmp_path / 'a.png')], 'messages': [{'role': 'user', 'content': '<image>Where is the disc?'}],
           'response': '<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(10,10),(30,30)<|box_end|>',
           'labels': '<ref-object><bbox>', 'objects': {'ref': ['optic disc'], 'bbox': [[100, 100, 300, 300]]}}
    monkeypatch.delenv('MAX_PIXELS', raising=False)
    notes = evaluate_rows([row])[0]['notes']
    assert any(n.startswith("1 row(s) hold Qwen boxes (pixels of the resized image) decoded with qwen_vl_utils' "
                            'default image budget') for n in notes)
    assert not any('Qwen boxes' in n for n in evaluate_rows([row], options=EvalOptions(max_pixels=12544))[0]['notes'])
    monkeypatch.setenv('MAX_PIXELS', '12544')
    assert not any('Qwen boxes' in n for n in evaluate_rows([row])[0]['notes'])


@pytest.mark.parametrize('text,scale,grade', [
    ('No DR', 'dr_grade', '0'), ('no apparent retinopathy', 'dr_grade', '0'),
    ('Proliferative DR.', 'dr_grade', '4'), ('moderate DR', 'dr_grade', '2'), ('Severe DR', 'dr_grade', '3'),
    ('mild nonproliferative diabetic retinopathy', 'dr_grade', '1'),
    ('增生性糖尿病视网膜病变', 'dr_grade', '4'), ('轻度非增殖期糖尿病视网膜病变', 'dr_grade', '1'),
    ('no DME', 'dme_grade', '0'), ('No macular edema.', 'dme_grade', '0'),
    ('macular edema', 'dme_grade', None),          # grade 1 or 2: the distance of the exudates is not said
    ('NPDR', 'dr_grade', None),                    # mild, moderate or severe: not said
])
def test_common_spellings_of_a_grade_are_read(text, scale, grade):
    assert parse_grade(text, scale) == grade
