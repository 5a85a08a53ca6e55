"""Semantic expansion: consistency checks, fallback to the rule text, and the chain using the result."""
import pytest

from fundusexpert_plugin.render.chain import cognitive_chain, feature_text
from fundusexpert_plugin.engine.expand import (MLLMDescriber, RuleDescriber, consistency_problems, expand_record,
                                               findings_payload)


@pytest.fixture
def rec(make_record):
    # haemorrhages are annotated (known absent); microaneurysms are not annotated (unknown)
    return make_record([('optic_disc', (100, 100, 200, 200)), ('hard_exudates', (500, 60, 540, 100))],
                       laterality='left')


def test_consistent_text_passes(rec):
    text = ('Yellow-white hard exudates cluster superotemporally <ref>hard exudates</ref><box>[[500, 75, 540, 125]]</box>; '
            'no haemorrhages are seen.')
    assert consistency_problems(text, rec, 'en') == []


@pytest.mark.parametrize('text,problem', [
    ('', 'empty output'),
    ('The fundus looks healthy.', 'hard_exudates not mentioned'),
    ('Hard exudates and scattered haemorrhages are present.', 'haemorrhages asserted present but not in the record'),
    ('Hard exudates with microaneurysms nearby.', 'microaneurysms asserted present but not in the record'),
    ('Hard exudates <box>[[540, 75, 500, 125]]</box>.', 'box 0 [540, 75, 500, 125] is not a 0-999 xyxy box'),
    ('Hard exudates <box>[[5, 7]]</box>.', 'box 0 does not parse'),
])
def test_inconsistent_text_is_named(rec, text, problem):
    assert any(p.startswith(problem) for p in consistency_problems(text, rec, 'en'))


def test_chinese_output_is_checked_too(rec):
    assert consistency_problems('可见硬性渗出，未见出血。', rec, 'zh') == []
    assert 'haemorrhages asserted present but not in the record' in consistency_problems('可见硬性渗出和出血。', rec, 'zh')


def test_payload_is_structured_on_the_grid(rec):
    payload = findings_payload(rec, 'en')
    # 1000 x 800 image: (500, 60, 540, 100) -> (500, 75, 540, 125)
    assert payload[1] == {'finding': 'hard exudates', 'count': 1, 'boxes_0_999': [[500, 75, 540, 125]],
                          'quadrants': ['superotemporal'], 'nearest_distance_to_fovea_dd': 1.25}
    assert payload[2] == {'finding': 'haemorrhages', 'count': 0, 'status': 'absent'}


def test_accepted_text_is_stored_and_used_by_the_chain(rec):
    good = 'Dense yellow-white hard exudates lie superotemporal to the fovea.'
    seen = []
    describer = MLLMDescriber(lambda messages: seen.append(messages) or good, name='fake')
    out = expand_record(rec, describer, None, ['en'])
    assert out.feature_text == {'en': good} and describer.accepted == 1
    assert seen[0][0]['content'][-1]['text'].startswith('You are an ophthalmologist.')
    assert cognitive_chain(out, 'en').splitlines()[3] == good


def test_rejected_or_failing_output_falls_back_to_rules(rec):
    bad = MLLMDescriber(lambda m: 'Haemorrhages everywhere.', name='fake')
    assert expand_record(rec, bad, None, ['en', 'zh']).feature_text == {}
    assert bad.rejected == 2 and bad.rejections[0][0] == 'r1'

    def down(messages):
        raise ConnectionError('endpoint down')
    broken = MLLMDescriber(down)
    assert expand_record(rec, broken, None, ['en']).feature_text == {}
    assert broken.rejections[0][2] == ['ConnectionError: endpoint down']
    assert cognitive_chain(rec, 'en').splitlines()[3] == feature_text(rec, 'en')


def test_rule_describer_stores_nothing(rec):
    assert expand_record(rec, RuleDescriber(), None).feature_text == {}
