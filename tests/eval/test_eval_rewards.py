"""GRPO reward math (fundusexpert_plugin.eval.rewards) on hand-worked completions.

Grid arithmetic used below (geometry.from_grid999, image 1000 x 1000 px): grid value g -> pixel g + 0.5, so
the reference box (100.5, 100.5, 200.5, 200.5) px is written [[100, 100, 200, 200]] exactly.
"""
import pytest

from fundusexpert_plugin.core.lexicon_judge import LexiconJudge
from fundusexpert_plugin.eval import rewards as R

JUDGE = LexiconJudge()
DISC = [100.5, 100.5, 200.5, 200.5]


def detection_row(**kw):
    row = {'kind': 'region_detection', 'task': 'region_detection', 'width': 1000, 'height': 1000, 'lang': 'en',
           'objects': {'ref': ['optic disc'], 'bbox': [DISC], 'bbox_type': 'real'}, 'target': 'optic_disc',
           'positives': ['optic_disc'], 'negatives': [],
           'messages': [{'role': 'user', 'content': '<image>Locate the optic disc in this colour fundus photograph.'}]}
    row.update(kw)
    return row


ABSENT_ROW = detection_row(objects=None, target='haemorrhages', positives=['optic_disc'], negatives=['haemorrhages'])


def grounding(completion, row=None, **kw):
    return R.grounding_reward(completion, row or detection_row(), judge=JUDGE, **kw)


def fmt(completion, row=None):
    return R.format_reward(completion, row or detection_row(), judge=JUDGE)


def test_exact_box_scores_one():
    assert grounding('<ref>optic disc</ref><box>[[100, 100, 200, 200]]</box>') == pytest.approx(1.0)


def test_box_shifted_by_half_its_width_scores_one_third():
    # (150.5..250.5) x (100.5..200.5): overlap 50 x 100 = 5000, union 10000 + 10000 - 5000 = 15000 -> 1/3
    assert grounding('<ref>optic disc</ref><box>[[150, 100, 250, 200]]</box>') == pytest.approx(1 / 3)


@pytest.mark.parametrize('text', ['', 'The optic disc is on the left.', '<ref>optic disc</ref><box>[[1, 2]]</box>',
                                  None])
def test_unparsable_output_scores_zero(text):
    assert grounding(text) == 0.0


def test_an_extra_box_costs_its_share():
    # one exact match (IoU 1) and one box elsewhere: 1 / max(1 reference, 2 predicted) = 0.5
    text = '<ref>optic disc</ref><box>[[100, 100, 200, 200], [600, 600, 700, 700]]</box>'
    assert grounding(text) == pytest.approx(0.5)


def test_a_missed_box_costs_its_share_and_matching_is_one_to_one():
    row = detection_row(objects={'ref': ['haemorrhages'], 'bbox': [DISC, [600.5, 600.5, 700.5, 700.5]]},
                        target='haemorrhages')
    # one prediction on the first box: 1 / max(2, 1); twice the same box still counts once: 1 / max(2, 2)
    assert grounding('<ref>haemorrhages</ref><box>[[100, 100, 200, 200]]</box>', row) == pytest.approx(0.5)
    twice = '<ref>haemorrhages</ref><box>[[100, 100, 200, 200], [100, 100, 200, 200]]</box>'
    assert grounding(twice, row) == pytest.approx(0.5)


def test_a_box_with_another_label_does_not_match_but_an_unlabelled_one_does():
    assert grounding('<ref>hard exudates</ref><box>[[100, 100, 200, 200]]</box>') == 0.0
    assert grounding('[[100, 100, 200, 200]]') == pytest.approx(1.0)  # FundusExpert's bare demo answer


def test_qwen_boxes_use_the_resized_size_given():
    # 1072 x 712 resized to 252 x 168 (MAX_PIXELS 50176, tests/swift_plugin/test_templates.py);
    # reference = the resized box (39, 57, 74, 96) mapped back: x * 1072 / 252, y * 712 / 168
    sx, sy = 1072 / 252, 712 / 168
    row = detection_row(width=1072, height=712,
                        objects={'ref': ['optic disc'], 'bbox': [[39 * sx, 57 * sy, 74 * sx, 96 * sy]]})
    text = '<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(39,57),(74,96)<|box_end|>'
    assert grounding(text, row, resized_size=lambda w, h: (252, 168)) == pytest.approx(1.0)
    # read against twice the resized size, a box at the origin comes out at half its size: IoU 1/4
    corner = detection_row(width=1072, height=712, objects={'ref': ['optic disc'], 'bbox': [[0, 0, 74 * sx, 96 * sy]]})
    text_corner = '<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(0,0),(74,96)<|box_end|>'
    assert grounding(text_corner, corner, resized_size=lambda w, h: (252, 168)) == pytest.approx(1.0)
    assert grounding(text_corner, corner, resized_size=lambda w, h: (504, 336)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match='resized'):
        grounding(text, row)


def test_known_absent_target_rewards_the_no_sentence_and_penalises_any_box():
    assert grounding('There are no haemorrhages in this image.', ABSENT_ROW) == 1.0
    assert grounding('该图像中没有出血。', dict(ABSENT_ROW, lang='zh')) == 1.0
    assert grounding('<ref>haemorrhages</ref><box>[[10, 10, 20, 20]]</box>', ABSENT_ROW) == 0.0
    assert grounding('Haemorrhages are seen.', ABSENT_ROW) == 0.0
    assert grounding('There are no haemorrhages. [[10, 10, 20, 20]]', ABSENT_ROW) == 0.0
    assert grounding(None, ABSENT_ROW) == 0.0


def test_rewards_that_do_not_apply_return_none():
    mcq = {'kind': 'mcq', 'answer_letter': 'A', 'objects': {'ref': [], 'bbox': [DISC]}, 'width': 1000, 'height': 1000}
    assert grounding('A', mcq) is None
    assert R.consistency_reward('A', mcq, judge=JUDGE) is None
    assert R.mcq_reward('A', detection_row()) is None
    assert R.format_reward('Left eye.', {'kind': 'classification'}, judge=JUDGE) is None
    # a detection row without boxes and without a known-absent target has nothing to score
    assert grounding('x', detection_row(objects=None, negatives=[])) is None


def test_format_of_region_detection():
    assert fmt('<ref>optic disc</ref><box>[[100, 100, 200, 200]]</box>') == 1.0
    assert fmt('There are no haemorrhages in this image.', ABSENT_ROW) == 1.0
    assert fmt('The optic disc.') == 0.0                                  # no box, no stated absence
    # ref without a box: form 1 (the bare box parses), refs boxed 0/1, tags closed -> (0 + 1) / 2
    assert fmt('<ref>optic disc</ref> is at [[100, 100, 200, 200]]') == 0.5
    # unclosed box tag: the box still parses (form 1), but no complete box follows the ref and a tag is open
    assert fmt('<ref>optic disc</ref><box>[[100, 100, 200, 200]]') == 0.0
    assert fmt('<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>') == 1.0


def test_tags_closed_and_refs_boxed():
    assert R.tags_closed('<ref>a</ref><box>[[1, 2, 3, 4]]</box>') and R.tags_closed('no tags')
    assert not R.tags_closed('<ref>a<box>[[1, 2, 3, 4]]</box>')
    assert not R.tags_closed('</box>')
    assert R.refs_boxed('<ref>a</ref> <box>[[1, 2, 3, 4]]</box> <ref>b</ref>. <box>[[1, 2, 3, 4]]</box>') == (1, 2)


GROUNDED_REPORT = (
    'This is a colour fundus photograph of the left eye (judged from the position of the optic disc).\n'
    'The <ref>optic disc</ref><box>[[100, 100, 200, 200]]</box> lies on the left side of the image.\n'
    '<ref>Hard exudates</ref><box>[[600, 600, 700, 700]]</box>: one region, in the superotemporal quadrant '
    'around the fovea. No haemorrhages are seen.\n'
    'Hard exudates cover about 1.0% of the image.\n'
    'Conclusion: hard exudates are present, consistent with diabetic retinopathy.')
REPORT_ROW = {'kind': 'grounded_report', 'width': 1000, 'height': 1000, 'lang': 'en',
              'objects': {'ref': ['optic disc', 'Hard exudates'], 'bbox': [DISC, [600.5, 600.5, 700.5, 700.5]]},
              'positives': ['optic_disc', 'hard_exudates'], 'negatives': ['haemorrhages']}


def test_grounded_report_format_counts_the_chain_steps_in_order():
    assert fmt(GROUNDED_REPORT, REPORT_ROW) == 1.0
    lines = GROUNDED_REPORT.split('\n')
    # features line missing while a lesion is boxed: 4 of 5 steps -> 0.8 x (1 + 1) / 2
    assert fmt('\n'.join(lines[:3] + lines[4:]), REPORT_ROW) == pytest.approx(0.8)
    # conclusion first: global, anatomy, lesions, features are then found after it, the conclusion is not
    assert fmt('\n'.join(lines[4:] + lines[:4]), REPORT_ROW) == pytest.approx(0.8)
    # no lesion boxed in the reference: the features step is not expected (4 steps), all found
    no_lesion = '\n'.join([lines[0], lines[1], 'No lesions are annotated for this image.',
                           'Conclusion: no diagnosis can be drawn from the available labels.'])
    disc_only = dict(REPORT_ROW, objects={'ref': ['optic disc'], 'bbox': [DISC]}, positives=['optic_disc'])
    assert fmt(no_lesion, disc_only) == 1.0
    # the same completion for a reference that boxes hard exudates: 5 steps expected, features missing -> 0.8
    assert fmt(no_lesion, REPORT_ROW) == pytest.approx(0.8)
    # a report without any box: refs boxed 0 (a grounded report must ground), tags closed 1
    assert fmt(GROUNDED_REPORT.replace('<ref>', '').replace('</ref>', ''), REPORT_ROW) == pytest.approx(0.5)


def test_expected_chain_steps_come_from_the_reference_not_the_completion():
    # the lesion line (with the only lesion box) deleted: the features line still names the lesion and
    # is read as the lesion step, but the reference boxes a lesion, so 5 steps are expected and the
    # features step is missing: 4 / 5 = 0.8 (read from the completion alone it scored 4 / 4 = 1.0)
    lines = GROUNDED_REPORT.split('\n')
    assert fmt('\n'.join(lines[:2] + lines[3:]), REPORT_ROW) == pytest.approx(0.8)
    assert R.reference_boxes_lesion(REPORT_ROW)
    assert not R.reference_boxes_lesion(dict(REPORT_ROW, objects={'ref': ['optic disc'], 'bbox': [DISC]}))
    assert not R.reference_boxes_lesion(dict(REPORT_ROW, objects=None))


def test_malformed_boxes_get_no_grounding_credit_and_less_format_credit():
    # corners swapped ([[200, 200, 100, 100]] for the disc [[100, 100, 200, 200]]): not re-ordered, matches nothing
    swapped = '<ref>optic disc</ref><box>[[200, 200, 100, 100]]</box>'
    assert grounding(swapped) == 0.0 and fmt(swapped) == 0.0
    # a grid value past 999/1000: y2 = 1200 -> out of range, no credit
    off_grid = '<ref>optic disc</ref><box>[[100, 100, 200, 1200]]</box>'
    assert grounding(off_grid) == 0.0 and fmt(off_grid) == 0.0
    # one good box and one malformed box: grounding 1 / max(1, 2) = 0.5; format 1 x 1/2 well formed x (1 + 1) / 2
    mixed = '<ref>optic disc</ref><box>[[100, 100, 200, 200], [700, 700, 600, 600]]</box>'
    assert grounding(mixed) == pytest.approx(0.5) and fmt(mixed) == pytest.approx(0.5)
    # the grounded report with its lesion box swapped: 1 of 2 boxes well formed -> format 0.5,
    # grounding: the disc matches (IoU 1), the swapped box matches nothing: 1 / max(2, 2) = 0.5
    report = GROUNDED_REPORT.replace('[[600, 600, 700, 700]]', '[[700, 700, 600, 600]]')
    assert fmt(report, REPORT_ROW) == pytest.approx(0.5) and grounding(report, REPORT_ROW) == pytest.approx(0.5)


def test_format_checks_qwen_boxes_against_the_resized_size_when_given():
    row = detection_row(width=1072, height=712)
    inside = '<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(39,57),(252,168)<|box_end|>'
    past = '<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(39,57),(253,168)<|box_end|>'
    resized = lambda w, h: (252, 168)   # noqa: E731
    assert R.format_reward(inside, row, judge=JUDGE, resized_size=resized) == 1.0
    assert R.format_reward(past, row, judge=JUDGE, resized_size=resized) == 0.0
    assert R.format_reward(past, row, judge=JUDGE) == 1.0   # no extent known: only inversion is seen


def test_grounded_report_boxes_are_matched_class_agnostic():
    # the row's three refs cannot be paired with its boxes (no answer text in GRPO rows): labels ignored
    assert grounding(GROUNDED_REPORT, REPORT_ROW) == pytest.approx(1.0)


def test_report_stating_one_positive_absent_scores_half():
    row = {'kind': 'report', 'positives': ['optic_disc', 'hard_exudates', 'haemorrhages'], 'negatives': []}
    # anatomy is not a finding to be consistent about (as fundusexpert eval): positives = HE, H.
    # HE present (+1), haemorrhages said absent (0): Score 1 / Total 2
    text = 'Hard exudates are seen near the fovea. No haemorrhages are seen.'
    assert R.consistency_reward(text, row, judge=JUDGE) == pytest.approx(0.5)
    # a negative stated absent adds 1 to both: 2 / 3
    row_neg = dict(row, negatives=['microaneurysms'])
    assert R.consistency_reward(text + ' There are no microaneurysms.', row_neg, judge=JUDGE) == pytest.approx(2 / 3)
    assert R.consistency_reward('', row, judge=JUDGE) == 0.0
    healthy = {'kind': 'report', 'positives': ['optic_disc'], 'negatives': []}
    assert R.consistency_reward('A healthy fundus.', healthy, judge=JUDGE) == 1.0   # Total 0: nothing wrong


MCQ_ROW = {'kind': 'mcq', 'answer_letter': 'B', 'messages': [
    {'role': 'user', 'content': "<image>Answer with the option's letter from the given choices directly.\n"
                                'Question: Which of the following is located at <bbox> in this fundus image?\n'
                                'A. hard exudates\nB. haemorrhages\nC. optic disc'}]}


@pytest.mark.parametrize('text, expected', [('B', 1.0), ('B. haemorrhages', 1.0), (' B', 0.0), ('\nB', 0.0),
                                            ('A', 0.0), ('The answer is B', 0.0), ('', 0.0)])
def test_mcq_is_strict_first_character(text, expected):
    assert R.mcq_reward(text, MCQ_ROW) == expected


def test_mcq_answer_from_answer_or_solution_columns():
    assert R.mcq_reward('C', {'kind': 'mcq', 'solution': 'C'}) == 1.0
    assert R.mcq_reward('C', {'answer': 'C. optic disc'}) == 1.0
    assert R.mcq_reward('C', {'kind': 'mcq'}) is None


@pytest.mark.parametrize('text, expected', [('B', 1.0), ('B.', 1.0), (' B', 0.0), ('Because', 0.0), ('D', 0.0)])
def test_mcq_format_is_one_option_letter_first(text, expected):
    assert fmt(text, MCQ_ROW) == expected   # D is not an option of this prompt


def test_rows_from_batch_splits_swift_keyword_arguments():
    rows = R.rows_from_batch(['a', 'b'], {'kind': ['mcq', 'report'], 'trainer_state': object(), 'width': [1, 2]})
    assert rows == [{'kind': 'mcq', 'width': 1}, {'kind': 'report', 'width': 2}]


@pytest.fixture(scope='module')
def sample_rows(tmp_path_factory):
    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.core.jsonl import load_jsonl
    out = tmp_path_factory.mktemp('fundusgen')
    build_sample(out)
    return lambda task: load_jsonl(out / 'train' / f'{task}.jsonl')


def _as_completion(row, text):
    return dict(row, messages=row['messages'][:-1] + [{'role': 'assistant', 'content': text}])


def test_every_sample_reference_answer_scores_full_format_and_consistency(sample_rows):
    """The sample's own grounded reports (EN and ZH) and detection answers, written in InternVL form."""
    from fundusexpert_plugin.testing.answers import reference_answer
    reports = sample_rows('grounded_report')
    assert {r['lang'] for r in reports} == {'en', 'zh'}
    for row in reports + sample_rows('region_detection'):
        text = reference_answer(row)
        done = _as_completion(row, text)
        assert fmt(text, done) == 1.0, text
        # 0-999 grid cells read back at their centres: every box within one cell of the reference, the
        # fovea boxes too (1 DD wide: about 150 px of the 1072-px sample photos, 140 cells)
        assert grounding(text, done) > 0.95, text
        if row['kind'] == 'grounded_report':
            assert R.consistency_reward(text, done, judge=JUDGE) == 1.0


def test_boxes_shifted_by_a_quarter_width_score_their_iou(sample_rows):
    from fundusexpert_plugin.testing.answers import reference_answer
    row = next(r for r in sample_rows('region_detection') if r['target'] == 'optic_disc' and r['lang'] == 'en')
    text = reference_answer(row, shift_frac=0.25)
    # overlap 3/4 of the width, union 5/4: IoU 0.6 up to the grid cells
    assert grounding(text, _as_completion(row, text)) == pytest.approx(0.6, abs=0.01)
