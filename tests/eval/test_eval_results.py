"""Result rows: task kind, reference boxes from objects placeholders, predicted boxes."""
import pytest

from fundusexpert_plugin.eval.mcq import build_prompt
from fundusexpert_plugin.eval.results import infer_task, load_meta, predicted_boxes, read_jsonl, reference_boxes


def _row(user, labels, response, objects=None):
    row = {'response': response, 'labels': labels,
           'messages': [{'role': 'user', 'content': user}, {'role': 'assistant', 'content': response}],
           'images': [{'bytes': None, 'path': '/x.png'}]}
    if objects is not None:
        row['objects'] = objects
    return row


def test_question_ref_is_consumed_before_the_answer():
    # swift fills <ref-object> in conversation order: the user turn takes ref[0], the answer ref[1]
    row = _row('<image>Where is the <ref-object>?', '<ref-object><bbox>', 'x',
               {'ref': ['optic disc', 'optic disc'], 'bbox': [[10, 20, 60, 80]]})
    assert [(b.label, b.box_px) for b in reference_boxes(row, 160, 120)] == [('optic_disc', (10, 20, 60, 80))]


def test_answer_without_ref_takes_the_question_ref_and_every_bbox():
    row = _row('<image>Locate the <ref-object>.', '<bbox><bbox>', 'x',
               {'ref': ['hard exudates'], 'bbox': [[1, 2, 3, 4], [5, 6, 7, 8]]})
    assert [b.label for b in reference_boxes(row, 100, 100)] == ['hard_exudates', 'hard_exudates']


def test_norm1_boxes_are_scaled_to_pixels():
    row = _row('<image>Find.', '<ref-object><bbox>', 'x',
               {'ref': ['drusen'], 'bbox': [[0.1, 0.2, 0.5, 0.6]], 'bbox_type': 'norm1'})
    assert reference_boxes(row, 200, 100)[0].box_px == pytest.approx((20, 20, 100, 60))


def test_literal_reference_text_is_parsed_like_a_prediction():
    row = _row('<image>Locate the optic disc.', '<ref>optic disc</ref><box>[[100, 100, 200, 200]]</box>', '')
    assert reference_boxes(row, 1000, 1000)[0].box_px == (100.5, 100.5, 200.5, 200.5)
    assert predicted_boxes(row, 1000, 1000) == []


def test_task_kind_from_meta_or_content():
    grounding = _row('<image>Find.', '<ref-object><bbox>', '', {'ref': ['cup'], 'bbox': [[1, 1, 2, 2]]})
    mcq = _row('<image>' + build_prompt('Q?', {'A': 'x', 'B': 'y'}), 'A', 'A')
    report = _row('<image>Describe the fundus.', 'Normal fundus.', 'Normal.')
    assert [infer_task(r) for r in (grounding, mcq, report)] == ['grounding', 'mcq', 'report']
    assert infer_task(report, {'task': 'mcq'}) == 'mcq'
    with pytest.raises(ValueError, match='not one of'):
        infer_task(report, {'task': 'vqa'})


def test_bad_jsonl_and_meta_name_the_line(tmp_path):
    bad = tmp_path / 'r.jsonl'
    bad.write_text('{"response": "x"}\n{oops\n')
    with pytest.raises(ValueError, match=r'r.jsonl:2: not valid JSON'):
        read_jsonl(str(bad))
    meta = tmp_path / 'm.jsonl'
    meta.write_text('{"index": "0"}\n')
    with pytest.raises(ValueError, match='0-based row number'):
        load_meta(str(meta))


@pytest.mark.parametrize('text, absent', [
    ('The image shows no optic disc.', True),                  # region_detection v4, one structure
    ('The image shows no hard exudates', True),                # ... many lesions; the full stop optional
    ('There are no haemorrhages in this image.', True),        # v1-v3 wording, still read
    ('该图像中没有出血。', True),
    ('The image shows no optic disc. <ref>optic disc</ref><box>[[1, 2, 3, 4]]</box>', False),   # two sentences
    ('The image shows the optic disc.', False),
    ('', False),
])
def test_stated_absent_reads_the_shipped_and_the_earlier_absent_answers(text, absent):
    from fundusexpert_plugin.eval.results import stated_absent
    assert stated_absent(text) is absent
