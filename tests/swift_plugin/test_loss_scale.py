"""``--loss_scale fundus_grounding``: pieces, weights, configuration, and the per-token weights of both templates."""
import copy
import json

import pytest

from fundusexpert_plugin.sample import SAMPLE_DIR
from fundusexpert_plugin.swift_plugin import loss_scale as loss_scale_mod
from fundusexpert_plugin.swift_plugin.loss_scale import FundusGroundingLossScale, load_weights, split_grounding

ENVS = ('FUNDUS_GROUNDING_LOSS_SCALE_CONFIG', 'FUNDUS_GROUNDING_BOX_SCALE', 'FUNDUS_GROUNDING_REF_SCALE')


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)


def test_placeholders_split_into_their_own_pieces():
    assert split_grounding('The disc <ref-object><bbox><bbox>.') == [
        ('The disc ', 'text'), ('<ref-object>', 'ref'), ('<bbox>', 'box'), ('<bbox>', 'box'), ('.', 'text')]


def test_literal_qwen_and_internvl_spans_are_recognised():
    qwen = ('A <|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(39,57),(74,96)<|box_end|> '
            'and grade 2.')
    assert split_grounding(qwen) == [
        ('A ', 'text'), ('<|object_ref_start|>optic disc<|object_ref_end|>', 'ref'),
        ('<|box_start|>(39,57),(74,96)<|box_end|>', 'box'), (' and grade 2.', 'text')]
    internvl = '<ref>hard exudates</ref><box>[[155, 336, 294, 571], [0, 0, 999, 999]]</box>'
    assert split_grounding(internvl) == [('<ref>hard exudates</ref>', 'ref'),
                                         ('<box>[[155, 336, 294, 571], [0, 0, 999, 999]]</box>', 'box')]


def test_unclosed_literal_and_plain_text_stay_text():
    assert split_grounding('<box>[[1, 2, 3, 4]] no close') == [('<box>[[1, 2, 3, 4]] no close', 'text')]
    assert split_grounding('') == []


def test_default_weights_from_the_shipped_json():
    scale = FundusGroundingLossScale('default')
    assert scale.weights == {'box': 2.0, 'ref': 1.5}
    assert scale.is_binary_loss_scale is False
    pieces, weights = scale.get_loss_scale('Disc: <ref-object><bbox> ok')
    assert pieces == ['Disc: ', '<ref-object>', '<bbox>', ' ok'] and weights == [1.0, 1.5, 2.0, 1.0]
    assert scale.get_loss_scale('') == ([''], [1.0])
    assert scale.get_loss_scale([151648, 15]) == ([[151648, 15]], [1.0])     # token-id contexts pass through


def test_environment_overrides_json(tmp_path, monkeypatch):
    config = tmp_path / 'weights.json'
    config.write_text(json.dumps({'box': 5.0}))
    monkeypatch.setenv('FUNDUS_GROUNDING_LOSS_SCALE_CONFIG', str(config))
    assert load_weights() == {'box': 5.0, 'ref': 1.5}
    monkeypatch.setenv('FUNDUS_GROUNDING_REF_SCALE', '0')
    monkeypatch.setenv('FUNDUS_GROUNDING_BOX_SCALE', '3.5')
    assert FundusGroundingLossScale().weights == {'box': 3.5, 'ref': 0.0}


@pytest.mark.parametrize('env, value, message', [
    ('FUNDUS_GROUNDING_BOX_SCALE', '-1', r"FUNDUS_GROUNDING_BOX_SCALE = '-1': expected a finite number >= 0"),
    ('FUNDUS_GROUNDING_REF_SCALE', 'heavy', r"FUNDUS_GROUNDING_REF_SCALE = 'heavy': expected a number >= 0"),
    ('FUNDUS_GROUNDING_BOX_SCALE', 'nan', r"FUNDUS_GROUNDING_BOX_SCALE = 'nan': expected a finite number >= 0"),
])
def test_bad_environment_values_raise(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError, match=message):
        FundusGroundingLossScale()
    from fundusexpert_plugin.swift_plugin.loss_scale import register
    with pytest.raises(ValueError, match=message):   # when the plugin is loaded, before any row is encoded
        register(exist_ok=True)


def test_bad_config_files_raise(tmp_path, monkeypatch):
    missing = tmp_path / 'nope.json'
    monkeypatch.setenv('FUNDUS_GROUNDING_LOSS_SCALE_CONFIG', str(missing))
    with pytest.raises(FileNotFoundError, match='FUNDUS_GROUNDING_LOSS_SCALE_CONFIG: no such file'):
        load_weights()
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'boxes': 2.0}))
    monkeypatch.setenv('FUNDUS_GROUNDING_LOSS_SCALE_CONFIG', str(bad))
    with pytest.raises(ValueError, match=r"bad\.json: unknown key\(s\) \['boxes'\]; known keys: \['box', 'ref'\]"):
        load_weights()
    bad.write_text('[1,2')
    with pytest.raises(ValueError, match=r'FUNDUS_GROUNDING_LOSS_SCALE_CONFIG .*bad\.json: not valid JSON \(Expecting'):
        load_weights()
    bad.write_text('[2.0]')
    with pytest.raises(ValueError, match=r'bad\.json: expected a JSON object'):
        load_weights()


def test_registered_and_reachable_through_swift_factory(swift_registered):
    from swift.loss_scale import get_loss_scale, loss_scale_map
    assert loss_scale_map['fundus_grounding'] is FundusGroundingLossScale
    chained = get_loss_scale('last_round+fundus_grounding')
    assert isinstance(chained, FundusGroundingLossScale) and chained.base_strategy == 'last_round'
    with pytest.raises(ValueError, match='already been registered'):
        loss_scale_mod.register(exist_ok=False)


ROW = {
    'messages': [{'role': 'user', 'content': '<image>Locate the hard exudates.'},
                 {'role': 'assistant', 'content': 'Found <ref-object><bbox><bbox> and <ref-object><bbox>'}],
    'images': [str(SAMPLE_DIR / 'images' / '0003.jpg')],
    'objects': {'ref': ['hard exudates', 'optic disc'],
                'bbox': [[166.25, 239.5, 316.0, 407.0], [0, 0, 1072, 712], [10, 20, 30, 40]], 'bbox_type': 'real'},
}


def _weighted_response(model_dir, model_type, template_type):
    from swift import get_processor, get_template
    template = get_template(get_processor(str(model_dir), model_type=model_type, download_model=False),
                            template_type=template_type, loss_scale='fundus_grounding')
    template.set_mode('train')
    enc = template.encode(copy.deepcopy(ROW))
    start = next(i for i, w in enumerate(enc['loss_scale']) if w > 0)
    assert all(w == 0 for w in enc['loss_scale'][:start])                   # system, user and image: 0
    text = [template.tokenizer.decode([t]) for t in enc['input_ids'][start:]]
    return list(zip(text, enc['loss_scale'][start:]))


def _spans(tokens):
    """Group consecutive tokens of equal weight: [(text, weight), ...]."""
    spans = []
    for text, weight in tokens:
        if spans and spans[-1][1] == weight:
            spans[-1] = (spans[-1][0] + text, weight)
        else:
            spans.append((text, weight))
    return spans


def test_qwen_rendered_boxes_inherit_the_box_weight(swift_registered, tiny_qwen_dir, monkeypatch):
    monkeypatch.setenv('MAX_PIXELS', '50176')
    spans = _spans(_weighted_response(tiny_qwen_dir, 'qwen2_5_vl', 'fundusexpert_qwen2_5_vl'))
    assert spans == [
        ('Found ', 1.0),
        ('<|object_ref_start|>hard exudates<|object_ref_end|>', 1.5),
        ('<|box_start|>(39,57),(74,96)<|box_end|><|box_start|>(0,0),(252,168)<|box_end|>', 2.0),
        (' and ', 1.0),
        ('<|object_ref_start|>optic disc<|object_ref_end|>', 1.5),
        ('<|box_start|>(2,5),(7,9)<|box_end|>', 2.0),
        ('<|im_end|>\n', 1.0)]


def test_internvl_boxes_are_weighted_and_still_merged(swift_registered, tiny_internvl_dir):
    spans = _spans(_weighted_response(tiny_internvl_dir, 'internvl', 'fundusexpert_internvl'))
    assert spans == [
        ('Found ', 1.0),
        ('<ref>hard exudates</ref>', 1.5),
        ('<box>[[155, 336, 294, 571], [0, 0, 999, 999]]</box>', 2.0),      # one tag: merge_adjacent_boxes
        (' and ', 1.0),
        ('<ref>optic disc</ref>', 1.5),
        ('<box>[[9, 28, 27, 56]]</box>', 2.0),
        ('<|im_end|>\n', 1.0)]


def test_literal_box_text_in_the_data_is_weighted(swift_registered, tiny_internvl_dir):
    from swift import get_processor, get_template
    template = get_template(get_processor(str(tiny_internvl_dir), model_type='internvl', download_model=False),
                            template_type='fundusexpert_internvl', loss_scale='fundus_grounding')
    template.set_mode('train')
    row = {'messages': [{'role': 'user', 'content': 'Where?'},
                        {'role': 'assistant', 'content': '<ref>optic disc</ref><box>[[1, 2, 3, 4]]</box>'}]}
    enc = template.encode(row)
    start = next(i for i, w in enumerate(enc['loss_scale']) if w > 0)
    tokens = [(template.tokenizer.decode([t]), w) for t, w in zip(enc['input_ids'][start:], enc['loss_scale'][start:])]
    assert _spans(tokens) == [('<ref>optic disc</ref>', 1.5), ('<box>[[1, 2, 3, 4]]</box>', 2.0),
                              ('<|im_end|>\n', 1.0)]
