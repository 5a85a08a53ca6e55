"""The GRPO rewards as ms-swift sees them: registered in `orms`, called with swift's batched row columns,
Qwen boxes read at the size the template resized the image to, and FundusGen rows ready for `swift rlhf`."""
import copy

import pytest

from fundusexpert_plugin.sample import SAMPLE_DIR

IMAGE = str(SAMPLE_DIR / 'images' / '0003.jpg')  # 1072 x 712
DISC_PX = [166.25, 239.5, 316.0, 407.0]          # record 0003's optic disc
NAMES = {'fundus_grounding': 'FundusGrounding', 'fundus_format': 'FundusFormat',
         'fundus_consistency': 'FundusConsistency', 'fundus_mcq': 'FundusMCQ'}


def _detection_row(completion):
    """One region-detection row as ms-swift hands it to rewards: the prompt, then the completion."""
    return {'messages': [{'role': 'user', 'content': '<image>Locate the optic disc in this colour fundus photograph.'},
                         {'role': 'assistant', 'content': completion}],
            'images': [{'bytes': None, 'path': IMAGE}],
            'objects': {'ref': ['optic disc'], 'bbox': [DISC_PX], 'bbox_type': 'real'},
            'kind': 'region_detection', 'task': 'region_detection', 'target': 'optic_disc', 'lang': 'en',
            'width': 1072, 'height': 712, 'positives': ['optic_disc'], 'negatives': []}


def _call(name, completions, rows):
    from swift.dataset import RowPreprocessor
    from swift.rewards import orms
    reward = orms[name]()
    return reward(completions, trainer_state=None, **RowPreprocessor.rows_to_batched(rows))


def test_every_reward_is_registered_under_its_flag_and_logs_under_its_class_name(swift_registered):
    from swift.rewards import ORM, orms
    for name, cls in NAMES.items():
        assert orms[name].__name__ == cls and issubclass(orms[name], ORM)


def test_second_registration_raises_without_exist_ok(swift_registered):
    from fundusexpert_plugin.swift_plugin import rewards
    with pytest.raises(ValueError, match='fundus_grounding.*already been registered for --reward_funcs'):
        rewards.register(exist_ok=False)


def test_template_resized_size_is_the_templates(swift_registered):
    from fundusexpert_plugin.swift_plugin.rewards import template_resized_size
    # MAX_PIXELS 50176 = 64 tokens of 28 x 28: 1072 x 712 -> 252 x 168 (tests/swift_plugin/test_templates.py)
    assert template_resized_size(1072, 712) == (252, 168)
    # a row's own chat_template_kwargs win, as in the template's fetch_image: 763264 px > 200704, beta =
    # sqrt(763264 / 200704) = 1.950; floor(712 / 1.950 / 28) * 28 = 364, floor(1072 / 1.950 / 28) * 28 = 532
    assert template_resized_size(1072, 712, {'max_pixels': 200704}) == (532, 364)


def test_template_rendered_answer_scores_its_rounding_iou(swift_registered, tiny_qwen_dir):
    """Render the reference answer with the real fundusexpert_qwen2_5_vl template, score it as a completion."""
    from swift import get_processor, get_template
    template = get_template(get_processor(str(tiny_qwen_dir), model_type='qwen2_5_vl', download_model=False),
                            template_type='fundusexpert_qwen2_5_vl')
    template.set_mode('train')
    row = _detection_row('<ref-object><bbox>')
    row['images'] = [IMAGE]
    labels = template.safe_decode(template.encode(copy.deepcopy(row))['labels'])
    answer = labels.split(']', 1)[1].removesuffix('<|im_end|>\n') if labels.startswith('[-100') else labels
    assert answer == '<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(39,57),(74,96)<|box_end|>'
    # back to pixels at 252 x 168: (39 * 1072/252, 57 * 712/168, 74 * 1072/252, 96 * 712/168)
    # = (165.905, 241.571, 314.794, 406.857); intersection with the disc 148.544 x 165.286 = 24552.4,
    # union 25083.1 + 24609.3 - 24552.4 = 25140.0 -> IoU 0.97663
    grounding, fmt = (_call(n, [answer], [_detection_row(answer)])[0] for n in ('fundus_grounding', 'fundus_format'))
    assert grounding == pytest.approx(0.97663, abs=5e-5)
    assert fmt == 1.0


def test_batched_call_gives_one_value_per_completion_and_none_where_a_reward_does_not_apply(swift_registered):
    mcq = {'messages': [{'role': 'user', 'content': "<image>Answer with the option's letter from the given choices "
                                                    'directly.\nQuestion: Which?\nA. optic disc\nB. haemorrhages'},
                        {'role': 'assistant', 'content': 'B'}],
           'images': [{'bytes': None, 'path': IMAGE}], 'objects': {'ref': [], 'bbox': [[660.25, 67.25, 708.75, 151.0]],
                                                                   'bbox_type': 'real'},
           'kind': 'mcq', 'task': 'mcq', 'lang': 'en', 'width': 1072, 'height': 712, 'answer_letter': 'B',
           'positives': ['optic_disc', 'haemorrhages'], 'negatives': []}
    wrong_mcq = copy.deepcopy(mcq)
    wrong_mcq['messages'][-1]['content'] = ' B'
    exact = '<ref>optic disc</ref><box>[[155, 336, 294, 571]]</box>'   # the InternVL grid answer of the disc
    rows = [_detection_row(exact), mcq, wrong_mcq]
    completions = [exact, 'B', ' B']
    assert _call('fundus_mcq', completions, rows) == [None, 1.0, 0.0]
    assert _call('fundus_format', completions, rows) == [1.0, 1.0, 0.0]
    assert _call('fundus_consistency', completions, rows) == [None, None, None]
    grounding = _call('fundus_grounding', completions, rows)
    assert grounding[1:] == [None, None] and grounding[0] > 0.98   # grid cell centres: within one cell


def test_consistency_judge_is_offline_unless_an_endpoint_is_set(swift_registered, monkeypatch):
    from fundusexpert_plugin.core.lexicon_judge import LexiconJudge
    from fundusexpert_plugin.eval.llm_judge import OpenAIJudge
    from fundusexpert_plugin.swift_plugin.rewards import consistency_judge
    monkeypatch.delenv('FUNDUS_REWARD_JUDGE_BASE_URL', raising=False)
    assert isinstance(consistency_judge(), LexiconJudge)
    pytest.importorskip('openai')
    monkeypatch.setenv('FUNDUS_REWARD_JUDGE_BASE_URL', 'http://127.0.0.1:9/v1')
    monkeypatch.setenv('FUNDUS_REWARD_JUDGE_MODEL', 'judge-7b')
    judge = consistency_judge()
    assert isinstance(judge, OpenAIJudge) and judge.model == 'judge-7b'


def test_fundusgen_rows_keep_their_ground_truth_columns_for_grpo(swift_registered):
    """`swift rlhf` loads with remove_unused_columns=False (swift/arguments/rlhf_args.py): the columns the
    rewards read survive preprocessing, and a known-absent row keeps its target and negatives."""
    from swift import load_dataset
    train, _ = load_dataset(['fundusgen:region_detection'], remove_unused_columns=False)
    row = train[0]
    assert {'messages', 'images', 'objects', 'kind', 'target', 'positives', 'negatives', 'width', 'height',
            'lang'} <= set(row)
    assert row['objects']['bbox'] == [DISC_PX] and row['objects']['bbox_type'] == 'real'
    absent = [r for r in train if not r['objects']]
    assert absent and all(r['target'] in r['negatives'] for r in absent)


def test_a_batch_of_known_absent_rows_without_an_objects_column(swift_registered):
    """ms-swift batches only the columns its rows have: known-absent rows alone carry no `objects`."""
    row = _detection_row('There are no haemorrhages in this image.')
    del row['objects']
    row.update(target='haemorrhages', negatives=['haemorrhages'])
    completions = ['There are no haemorrhages in this image.', '<ref>haemorrhages</ref><box>[[1, 2, 3, 4]]</box>']
    second = dict(row, messages=row['messages'][:1] + [{'role': 'assistant', 'content': completions[1]}])
    assert _call('fundus_grounding', completions, [row, second]) == [1.0, 0.0]
    assert _call('fundus_format', completions, [row, second]) == [1.0, 1.0]


def test_registered_rewards_give_swapped_and_off_grid_boxes_no_full_credit(swift_registered):
    """The exact disc box scores about 1; the same box with its corners swapped, or with y2 = 1200 on the
    0-999 grid, matches nothing (grounding 0) and is not a well-formed answer (format 0)."""
    exact = '<ref>optic disc</ref><box>[[155, 336, 294, 571]]</box>'
    swapped = '<ref>optic disc</ref><box>[[294, 571, 155, 336]]</box>'
    off_grid = '<ref>optic disc</ref><box>[[155, 336, 294, 1200]]</box>'
    completions = [exact, swapped, off_grid]
    rows = [_detection_row(c) for c in completions]
    grounding = _call('fundus_grounding', completions, rows)
    assert grounding[0] > 0.98 and grounding[1:] == [0.0, 0.0]
    assert _call('fundus_format', completions, rows) == [1.0, 0.0, 0.0]
    # Qwen boxes are checked against the template's resized size (252 x 168 for 1072 x 712):
    # x2 = 253 lies one pixel past the resized image
    qwen = ['<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(39,57),(74,96)<|box_end|>',
            '<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(39,57),(253,96)<|box_end|>']
    assert _call('fundus_format', qwen, [_detection_row(c) for c in qwen]) == [1.0, 0.0]


def test_registered_format_reward_expects_the_chain_steps_of_the_reference(swift_registered):
    """A grounded report whose reference boxes a lesion, with its lesion-localisation line deleted: the
    features line ("The boxed regions of haemorrhages cover ...") is read as the lesion step, and the
    features step the reference has is missing: 4 of 5 steps -> 0.8 (not 1.0)."""
    report = ('This is a colour fundus photograph of the left eye.\n'
              'The <ref>optic disc</ref><box>[[155, 336, 294, 571]]</box> lies on the left side of the image.\n'
              '<ref>haemorrhages</ref><box>[[615, 94, 661, 212]]</box>: one region, in the upper right part of the '
              'image.\n'
              'The boxed regions of haemorrhages cover about 0.8% of the image.\n'
              'Conclusion: haemorrhages are present.')
    lines = report.split('\n')
    cut = '\n'.join(lines[:2] + lines[3:])
    row = dict(_detection_row(report), kind='grounded_report', task='grounded_report',
               objects={'ref': ['optic disc', 'haemorrhages'], 'bbox': [DISC_PX, [660.25, 67.25, 708.75, 151.0]],
                        'bbox_type': 'real'}, positives=['optic_disc', 'haemorrhages'])
    rows = [row, dict(row, messages=row['messages'][:1] + [{'role': 'assistant', 'content': cut}])]
    assert _call('fundus_format', [report, cut], rows) == [1.0, pytest.approx(0.8)]
