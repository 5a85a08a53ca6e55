"""Exact rendered strings of both template families and the pixel -> text -> pixel round trip."""
import copy

import pytest

from fundusexpert_plugin.sample import SAMPLE_DIR
from fundusexpert_plugin.eval.parse import parse_boxes, qwen_resized_size
from fundusexpert_plugin.swift_plugin.system_prompt import SYSTEM_PROMPTS
from fundusexpert_plugin.swift_plugin.templates import merge_adjacent_boxes

IMAGE = str(SAMPLE_DIR / 'images' / '0003.jpg')  # 1072 x 712
ROW = {
    'messages': [{'role': 'user', 'content': '<image>Locate the hard exudates.'},
                 {'role': 'assistant', 'content': '<ref-object><bbox><bbox> and <ref-object><bbox>'}],
    'images': [IMAGE],
    'objects': {'ref': ['hard exudates', 'optic disc'],
                'bbox': [[166.25, 239.5, 316.0, 407.0], [0, 0, 1072, 712], [10, 20, 30, 40]], 'bbox_type': 'real'},
}


def _encode(model_dir, model_type, template_type, row=ROW):
    from swift import get_processor, get_template
    template = get_template(get_processor(str(model_dir), model_type=model_type, download_model=False),
                            template_type=template_type)
    template.set_mode('train')
    enc = template.encode(copy.deepcopy(row))
    return template, template.safe_decode(enc['input_ids']), template.safe_decode(enc['labels'])


def test_qwen_template_renders_resized_pixels(swift_registered, tiny_qwen_dir, monkeypatch):
    monkeypatch.setenv('MAX_PIXELS', '50176')
    _, text, labels = _encode(tiny_qwen_dir, 'qwen2_5_vl', 'fundusexpert_qwen2_5_vl')
    assert text.startswith(f'<|im_start|>system\n{SYSTEM_PROMPTS["en"]}<|im_end|>\n<|im_start|>user\n<|vision_start|>')
    # 1072x712 at MAX_PIXELS 50176 -> 252x168; 166.25*252/1072 = 39.08 -> 39, 239.5*168/712 = 56.51 -> 57,
    # 316*252/1072 = 74.28 -> 74, 407*168/712 = 96.03 -> 96; (10,20,30,40) -> (2.35, 4.72, 7.05, 9.44) -> (2,5,7,9)
    expected = ('<|object_ref_start|>hard exudates<|object_ref_end|><|box_start|>(39,57),(74,96)<|box_end|>'
                '<|box_start|>(0,0),(252,168)<|box_end|> and <|object_ref_start|>optic disc<|object_ref_end|>'
                '<|box_start|>(2,5),(7,9)<|box_end|><|im_end|>\n')
    assert text.endswith('<|im_start|>assistant\n' + expected)
    assert labels.endswith(expected) and labels.startswith('[-100 *')


def test_internvl_template_renders_paper_grid(swift_registered, tiny_internvl_dir):
    _, text, labels = _encode(tiny_internvl_dir, 'internvl', 'fundusexpert_internvl')
    assert text.startswith(f'<|im_start|>system\n{SYSTEM_PROMPTS["en"]}<|im_end|>\n<|im_start|>user\n<img>')
    # int(v / W * 1000) clipped to 999: 166.25/1072 -> 155, 239.5/712 -> 336, 316/1072 -> 294, 407/712 -> 571;
    # the full image (0, 0, 1072, 712) -> (0, 0, 999, 999); (10, 20, 30, 40) -> (9, 28, 27, 56).
    # Two boxes of one reference are merged into one <box> tag (paper form).
    expected = ('<ref>hard exudates</ref><box>[[155, 336, 294, 571], [0, 0, 999, 999]]</box> and '
                '<ref>optic disc</ref><box>[[9, 28, 27, 56]]</box><|im_end|>\n')
    assert text.endswith('<|im_start|>assistant\n' + expected)
    assert labels.endswith(expected)


def test_chinese_system_prompt_is_the_papers_string():
    assert SYSTEM_PROMPTS['zh'] == '你是FundusExpert，是一个有用无害的人工智能助手。'


def test_merge_adjacent_boxes_keeps_other_contexts_and_scales():
    ctx = ['<ref>a</ref>', '<box>[[1, 2, 3, 4]]</box>', '<box>[[5, 6, 7, 8]]</box>', ' x ', '<box>[[0, 0, 1, 1]]</box>']
    out, scales = merge_adjacent_boxes(ctx, [1, 2, 2, 1, 1])
    assert out == ['<ref>a</ref>', '<box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>', ' x ', '<box>[[0, 0, 1, 1]]</box>']
    assert scales == [1, 2, 1, 1]
    # different loss scales are not merged
    assert merge_adjacent_boxes(ctx[1:3], [1.0, 2.0])[0] == ctx[1:3]


@pytest.mark.parametrize('family', ['qwen2_5_vl', 'internvl'])
def test_round_trip_pixels_text_pixels(swift_registered, tiny_qwen_dir, tiny_internvl_dir, family, monkeypatch):
    monkeypatch.setenv('MAX_PIXELS', '50176')
    boxes = [[166.25, 239.5, 316.0, 407.0], [3.3, 700.1, 1071.9, 712.0], [535.0, 355.5, 536.0, 356.5]]
    row = {'messages': [{'role': 'user', 'content': '<image>Find them.'},
                        {'role': 'assistant', 'content': '<ref-object><bbox><ref-object><bbox><ref-object><bbox>'}],
           'images': [IMAGE], 'objects': {'ref': ['optic disc', 'hard exudates', 'haemorrhages'], 'bbox': boxes}}
    if family == 'qwen2_5_vl':
        _, text, _ = _encode(tiny_qwen_dir, 'qwen2_5_vl', 'fundusexpert_qwen2_5_vl', row)
        resized = qwen_resized_size(1072, 712, max_pixels=50176)
        tol_x, tol_y = 1072 / resized[0], 712 / resized[1]        # one resized pixel
    else:
        _, text, _ = _encode(tiny_internvl_dir, 'internvl', 'fundusexpert_internvl', row)
        resized = None
        tol_x, tol_y = 1072 / 1000, 712 / 1000                    # one grid unit
    answer = text.split('<|im_start|>assistant\n')[-1]
    parsed = parse_boxes(answer, 1072, 712, resized_size=resized)
    assert [b.label for b in parsed] == ['optic_disc', 'hard_exudates', 'haemorrhages']
    for box, got in zip(boxes, parsed):
        for i, (v, w) in enumerate(zip(box, got.box_px)):
            assert abs(v - w) <= (tol_x if i % 2 == 0 else tol_y) + 1e-9, (box, got.box_px)


@pytest.mark.parametrize('name', ['fundusexpert_internvl', 'fundusexpert_internvl2_5'])
def test_both_internvl_templates_share_the_grid_rule(swift_registered, name):
    from types import SimpleNamespace

    from swift.template import TEMPLATE_MAPPING
    cls = TEMPLATE_MAPPING[name].template_cls
    inputs = SimpleNamespace(objects={'ref': ['optic disc'], 'bbox': [[166.25, 239.5, 316.0, 407.0], [1072, 712]],
                                      'bbox_type': 'real', 'width': [1072], 'height': [712]})
    cls.normalize_bbox(None, inputs)          # does not use the template's state
    assert inputs.objects['bbox'] == [[155, 336, 294, 571], [999, 999]]
    assert TEMPLATE_MAPPING[name].default_system == SYSTEM_PROMPTS['en']


def test_a_template_of_the_other_family_is_refused_when_it_meets_the_processor(swift_registered, tiny_qwen_dir,
                                                                              tiny_internvl_dir):
    from swift import get_processor, get_template
    with pytest.raises(ValueError, match=r"^--template fundusexpert_qwen2_5_vl needs a qwen2_5_vl model; the model is "
                                         r"'internvl': use --template fundusexpert_internvl$"):
        get_template(get_processor(str(tiny_internvl_dir), model_type='internvl', download_model=False),
                     template_type='fundusexpert_qwen2_5_vl')
    with pytest.raises(ValueError, match=r"^--template fundusexpert_internvl needs a internvl model; the model is "
                                         r"'qwen2_5_vl': use --template fundusexpert_qwen2_5_vl$"):
        get_template(get_processor(str(tiny_qwen_dir), model_type='qwen2_5_vl', download_model=False),
                     template_type='fundusexpert_internvl')


def test_qwen_max_pixels_argument_is_warned_about(swift_registered, tiny_qwen_dir, caplog):
    from swift import get_processor, get_template
    with caplog.at_level('WARNING'):
        get_template(get_processor(str(tiny_qwen_dir), model_type='qwen2_5_vl', download_model=False),
                     template_type='fundusexpert_qwen2_5_vl')
    assert '--max_pixels' not in caplog.text
    with caplog.at_level('WARNING'):
        get_template(get_processor(str(tiny_qwen_dir), model_type='qwen2_5_vl', download_model=False),
                     template_type='fundusexpert_qwen2_5_vl', max_pixels=50176)
    assert 'fundusexpert_qwen2_5_vl: --max_pixels 50176 rescales each image before' in caplog.text
