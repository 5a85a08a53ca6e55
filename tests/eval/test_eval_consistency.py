"""Clinical consistency: the paper's definition, the 7/8 example, both judges, aggregates."""
import pytest

from fundusexpert_plugin.eval.consistency import (ConsistencyResult, JudgeError, aggregate, consistency_score,
                                                  evaluate_report)
from fundusexpert_plugin.core.lexicon_judge import LexiconJudge
from fundusexpert_plugin.eval.llm_judge import OpenAIJudge, build_judge_prompt, parse_judge_reply

POSITIVES = ['microaneurysms', 'hard_exudates']
SIX = ['haemorrhages', 'cotton_wool_spots', 'drusen', 'neovascularisation', 'venous_beading', 'laser_scars']
REPORT_EN = ('Hard exudates are seen temporal to the macula. No haemorrhages, no cotton-wool spots, no drusen, '
             'no neovascularisation, no venous beading and no laser scars are seen.')
REPORT_ZH = '黄斑颞侧可见硬性渗出。未见出血、棉絮斑、玻璃膜疣、新生血管、静脉串珠及激光斑。'


def test_paper_example_from_statuses_is_seven_of_eight():
    statuses = {'hard_exudates': 'present', **{f: 'absent' for f in SIX}}   # MA not mentioned
    r = consistency_score(statuses, POSITIVES, SIX)
    # Score = 1 positive present + 6 negatives absent = 7; Total = 2 positives + 6 mentioned negatives = 8
    assert (r.score, r.total) == (7, 8) and r.ratio == 7 / 8


@pytest.mark.parametrize('report', [REPORT_EN, REPORT_ZH])
def test_paper_example_with_the_offline_judge(report):
    r = evaluate_report(LexiconJudge(), report, POSITIVES, SIX)
    assert (r.score, r.total) == (7, 8)
    assert r.statuses['microaneurysms'] == 'not_mentioned' and r.statuses['drusen'] == 'absent'


def test_closed_world_counts_every_mentioned_non_positive_as_negative():
    # negatives=None: the six absent findings are negatives of the judge's vocabulary -> 7/8 as well
    r = evaluate_report(LexiconJudge(), REPORT_EN, POSITIVES)
    assert (r.score, r.total) == (7, 8)


def test_false_positive_and_missed_positive_cost_total_only():
    # positives {HE}; report says HE and haemorrhages present: Score 1, Total 1 + 1 (mentioned negative) = 2
    r = evaluate_report(LexiconJudge(), 'Hard exudates and haemorrhages are present.', ['hard_exudates'],
                        ['haemorrhages', 'drusen'])
    assert (r.score, r.total) == (1, 2)
    # a positive reported absent: Score 0, Total 1; the unmentioned negative (drusen) is ignored
    r = evaluate_report(LexiconJudge(), 'No hard exudates.', ['hard_exudates'], ['drusen'])
    assert (r.score, r.total) == (0, 1)


def test_empty_report_misses_every_positive():
    r = evaluate_report(LexiconJudge(), '', POSITIVES, SIX)
    assert (r.score, r.total) == (0, 2)


def test_labels_must_not_contradict():
    with pytest.raises(ValueError, match='both positive and negative'):
        consistency_score({}, ['drusen'], ['drusen'])


def test_aggregates_are_labelled_mean_and_pooled():
    results = [ConsistencyResult(7, 8), ConsistencyResult(1, 2), ConsistencyResult(0, 0),
               ConsistencyResult(error='timeout')]
    agg = aggregate(results)
    # per-report mean over Total > 0: (7/8 + 1/2) / 2 = 0.6875; pooled (7 + 1) / (8 + 2) = 0.8
    assert agg['per_report_mean'] == pytest.approx(0.6875) and agg['pooled'] == pytest.approx(0.8)
    assert (agg['n_reports'], agg['n_scored'], agg['n_failed'], agg['n_zero_total']) == (4, 2, 1, 1)


@pytest.mark.parametrize('text, expected', [
    ('No haemorrhages, cotton-wool spots or drusen are seen.', {'haemorrhages': 'absent', 'drusen': 'absent'}),
    ('Microaneurysms, haemorrhages and exudates are not seen.', {'microaneurysms': 'absent', 'hard_exudates': 'absent'}),
    ('Hard exudates are present and haemorrhages are absent.', {'hard_exudates': 'present', 'haemorrhages': 'absent'}),
    ('There are scattered hard exudates but no haemorrhages.', {'hard_exudates': 'present', 'haemorrhages': 'absent'}),
    ('No haemorrhages are seen and exudates are present.', {'hard_exudates': 'present', 'haemorrhages': 'absent'}),
    ('No haemorrhages, the optic disc is normal, exudates are present.', {'hard_exudates': 'present'}),
    ('MA present. He saw no HE.', {'microaneurysms': 'present', 'haemorrhages': 'absent'}),
    ('Moderate non-proliferative diabetic retinopathy. No macular edema.',
     {'diabetic_retinopathy': 'present', 'macular_oedema': 'absent'}),
    ('可见硬性渗出，未见出血及微血管瘤。', {'hard_exudates': 'present', 'haemorrhages': 'absent', 'microaneurysms': 'absent'}),
    ('出血（-），硬性渗出（+）', {'haemorrhages': 'absent', 'hard_exudates': 'present'}),
    ('视盘边界清，可见棉絮斑，无新生血管。', {'cotton_wool_spots': 'present', 'neovascularisation': 'absent'}),
    # structured 'finding: none' reports, both languages
    ('Hard exudates: none. Haemorrhages: none.', {'hard_exudates': 'absent', 'haemorrhages': 'absent'}),
    ('Hard exudates: present. Haemorrhages: no.', {'hard_exudates': 'present', 'haemorrhages': 'absent'}),
    ('Haemorrhages - none; hard exudates: several.', {'hard_exudates': 'present', 'haemorrhages': 'absent'}),
    ('None of the haemorrhages or hard exudates are seen.', {'hard_exudates': 'absent', 'haemorrhages': 'absent'}),
    ('硬性渗出：无。出血：无。', {'hard_exudates': 'absent', 'haemorrhages': 'absent'}),
    ('出血：无，硬性渗出：有。', {'hard_exudates': 'present', 'haemorrhages': 'absent'}),
    ('不存在硬性渗出。存在出血。', {'hard_exudates': 'absent', 'haemorrhages': 'present'}),
    ('未见出血，硬性渗出可见。', {'hard_exudates': 'present', 'haemorrhages': 'absent'}),
    ('未见出血，微血管瘤及硬性渗出。', {'microaneurysms': 'absent', 'hard_exudates': 'absent', 'haemorrhages': 'absent'}),
    ('No other lesions apart from haemorrhages.', {'haemorrhages': 'present'}),
])
def test_offline_negation_scope(text, expected):
    statuses = LexiconJudge().judge(text, list(expected))
    assert statuses == expected


class _FakeCompletions:
    def __init__(self, reply=None, exc=None):
        self.reply, self.exc, self.prompts = reply, exc, []

    def create(self, model, messages, temperature):
        self.prompts.append(messages[0]['content'])
        if self.exc:
            raise self.exc
        msg = type('M', (), {'content': self.reply})
        return type('R', (), {'choices': [type('C', (), {'message': msg})]})


def _client(**kw):
    completions = _FakeCompletions(**kw)
    return type('Client', (), {'chat': type('Chat', (), {'completions': completions})})(), completions


def test_llm_judge_parses_json_and_we_compute_the_score():
    reply = '```json\n{"microaneurysms": "not_mentioned", "hard_exudates": "present", ' + \
            ', '.join(f'"{f}": "absent"' for f in SIX) + '}\n```'
    client, calls = _client(reply=reply)
    r = evaluate_report(OpenAIJudge(model='m', client=client), REPORT_EN, POSITIVES, SIX)
    assert (r.score, r.total) == (7, 8)
    assert 'hard_exudates: hard exudates' in calls.prompts[0] and REPORT_EN in calls.prompts[0]


def test_llm_judge_zh_prompt_and_lenient_reply_keys():
    assert '发现列表' in build_judge_prompt(REPORT_ZH, POSITIVES, 'zh')
    # names instead of ids, other status words, a missing finding -> not_mentioned
    assert parse_judge_reply('Result: {"Hard exudates": "yes", "MA": "未提及"}', POSITIVES + ['drusen']) == {
        'microaneurysms': 'not_mentioned', 'hard_exudates': 'present', 'drusen': 'not_mentioned'}
    with pytest.raises(JudgeError):
        parse_judge_reply('7/8', POSITIVES)


def test_llm_judge_failures_are_counted_not_raised():
    client, _ = _client(exc=TimeoutError('read timed out'))
    r = evaluate_report(OpenAIJudge(model='m', client=client), REPORT_EN, POSITIVES, SIX)
    assert r.error == 'TimeoutError: read timed out' and r.ratio is None
    client, _ = _client(reply='I cannot help with that.')
    assert evaluate_report(OpenAIJudge(model='m', client=client), REPORT_EN, POSITIVES).error


def test_llm_judge_unreachable_endpoint_fails_fast():
    # real openai client against a closed loopback port: refused at once, no retry, no hang
    judge = OpenAIJudge('http://127.0.0.1:9/v1', 'm', 'k', timeout=2.0, max_retries=0)
    r = evaluate_report(judge, REPORT_EN, POSITIVES, SIX)
    assert r.error and 'Connection' in r.error


def test_a_contradiction_is_counted_and_never_credited():
    # positives {haemorrhages}, negatives {drusen}; the report states haemorrhages present and absent.
    # Score: haemorrhages contradicted -> 0; drusen stated absent -> 1. Total: 1 positive + 1 mentioned negative = 2
    report = 'Haemorrhages are seen. No haemorrhages. No drusen.'
    r = evaluate_report(LexiconJudge(), report, ['haemorrhages'], ['drusen'])
    assert (r.score, r.total, r.contradictions) == (1, 2, ['haemorrhages'])
    assert r.statuses['haemorrhages'] == 'present'          # the status itself is unchanged (present wins)
    assert r.as_dict()['contradictions'] == ['haemorrhages']


def test_a_contradicted_negative_counts_in_total_only():
    # negatives {drusen}; "Drusen are present. No drusen." -> mentioned (Total 1), not absent (Score 0)
    r = evaluate_report(LexiconJudge(), 'Drusen are present. No drusen.', [], ['drusen'])
    assert (r.score, r.total, r.contradictions) == (0, 1, ['drusen'])
    # the same from statuses: a negative stated 'present' would also score 0 / 1; 'absent' + contradiction too
    r = consistency_score({'drusen': 'absent'}, [], ['drusen'], contradictions=['drusen'])
    assert (r.score, r.total) == (0, 1)


def test_contradictions_total_in_the_aggregate():
    results = [ConsistencyResult(1, 2, contradictions=['haemorrhages', 'drusen']),
               ConsistencyResult(3, 3), ConsistencyResult(0, 1, contradictions=['drusen']),
               ConsistencyResult(error='timeout', contradictions=['x'])]   # failed: excluded everywhere
    agg = aggregate(results)
    assert agg['contradictions'] == 3 and agg['n_reports_with_contradictions'] == 2
    assert agg['score_sum'] == 4 and agg['total_sum'] == 6


def test_the_llm_judge_reports_no_contradictions_by_default():
    class Fixed(OpenAIJudge):
        def judge(self, report, findings, lang='en'):
            return {f: 'present' for f in findings}
    statuses, contradictions = Fixed('http://127.0.0.1:9/v1').judge_with_contradictions('x', ['drusen'])
    assert statuses == {'drusen': 'present'} and contradictions == []


def test_evaluate_report_resolves_aliases_and_refuses_labels_the_lexicon_cannot_read():
    from fundusexpert_plugin.core.errors import FundusDataError
    from fundusexpert_plugin.eval.consistency import evaluate_report
    report = 'Haemorrhages are seen in the inferior temporal quadrant. No hard exudates.'
    canonical = evaluate_report(LexiconJudge(), report, ['haemorrhages'], ['hard_exudates'])
    aliases = evaluate_report(LexiconJudge(), report, ['hemorrhage'], ['hard_exudate'])
    assert (canonical.score, canonical.total) == (aliases.score, aliases.total) == (2, 2)
    with pytest.raises(FundusDataError, match=r"evaluate_report: positives: label 'haemorrhage_typo' is not in the "
                                              r"LexiconJudge vocabulary"):
        evaluate_report(LexiconJudge(), report, ['haemorrhage_typo'], [])
