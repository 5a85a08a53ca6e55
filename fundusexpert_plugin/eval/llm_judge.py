"""LLM consistency judge through any OpenAI-compatible endpoint (``/v1/chat/completions``).

The paper used GPT-4o with a prompt that returns ``"Score/Total"`` (official
``prompt_ref.txt``). Our rubric (ours, EN and ZH) asks instead for the status of each labelled
finding as JSON, and :mod:`.consistency` computes Score/Total, so the judge cannot get the
arithmetic wrong and its answers can be audited per finding.

Requests use temperature 0; every call is bounded by ``timeout`` seconds and ``max_retries``
retries of the openai client (worst case ``timeout * (max_retries + 1)`` per report), and any
failure becomes :class:`JudgeError` for that report only.
"""
from __future__ import annotations

import json
import re
from typing import Dict, Optional, Sequence

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.openai_client import chat_text, make_client
from fundusexpert_plugin.core.judge import STATUSES, ConsistencyJudge, JudgeError
from fundusexpert_plugin.core.lexicon_judge import lexicon_terms, load_lexicon
from fundusexpert_plugin.eval.parse import canonical_label

RUBRIC = {
    'en': (
        'You are a clinical report evaluation assistant. Read the fundus examination report below and '
        'decide, for each finding in the list, how the report states it:\n'
        '- "present": the report says the finding is present (any severity or location);\n'
        '- "absent": the report explicitly says the finding is absent (e.g. "no haemorrhages");\n'
        '- "not_mentioned": the report does not mention the finding.\n'
        'Judge only what the report states, not the image and not your own medical opinion.\n\n'
        'Findings (id: name):\n{findings}\n\nReport:\n"""\n{report}\n"""\n\n'
        'Return only a JSON object that maps every finding id to "present", "absent" or '
        '"not_mentioned", for example {example}.'),
    'zh': (
        '你是一名临床报告评估助手。请阅读下面的眼底检查报告，并对列表中的每一项发现判断报告是如何描述它的：\n'
        '- "present"：报告指出该发现存在（不论程度或位置）；\n'
        '- "absent"：报告明确指出该发现不存在（例如“未见出血”）；\n'
        '- "not_mentioned"：报告没有提及该发现。\n'
        '只依据报告的文字判断，不要依据图像或你自己的医学判断。\n\n'
        '发现列表（id: 名称）：\n{findings}\n\n报告：\n"""\n{report}\n"""\n\n'
        '只返回一个 JSON 对象，把每个发现 id 映射为 "present"、"absent" 或 "not_mentioned"，例如 {example}。'),
}

_STATUS_WORDS = {
    'present': 'present', 'yes': 'present', 'positive': 'present', 'true': 'present', '存在': 'present',
    '有': 'present', '阳性': 'present',
    'absent': 'absent', 'no': 'absent', 'negative': 'absent', 'false': 'absent', '不存在': 'absent',
    '无': 'absent', '阴性': 'absent',
    'not_mentioned': 'not_mentioned', 'not mentioned': 'not_mentioned', 'unknown': 'not_mentioned',
    'none': 'not_mentioned', '未提及': 'not_mentioned',
}


def display_name(finding_id: str, lang: str, lexicon: Optional[dict] = None) -> str:
    """Display name of a finding or diagnosis id: vocab first, then the lexicon, else the id."""
    if finding_id in vocab.FINDINGS:
        return vocab.finding_name(finding_id, lang)
    if finding_id in vocab.DIAGNOSES:
        return vocab.diagnosis_name(finding_id, lang)
    extra = (lexicon or {}).get('extra_findings', {}).get(finding_id, {})
    names = extra.get(lang) or extra.get('en')
    return names[0] if names else finding_id.replace('_', ' ')


def build_judge_prompt(report: str, findings: Sequence[str], lang: str = 'en',
                       lexicon: Optional[dict] = None) -> str:
    """The rubric prompt in ``lang`` (``'en'`` or ``'zh'``) for ``findings`` (ids)."""
    vocab.check_language(lang)
    lines = '\n'.join(f'- {f}: {display_name(f, lang, lexicon)}' for f in findings)
    example = json.dumps({f: STATUSES[i % 3] for i, f in enumerate(findings[:2])}, ensure_ascii=False)
    return RUBRIC[lang].format(findings=lines, report=report, example=example)


def parse_judge_reply(text: Optional[str], findings: Sequence[str]) -> Dict[str, str]:
    """Per-finding statuses from a judge reply (JSON object, possibly fenced or inside prose).

    Keys may be ids or names (canonicalised); status words are normalised (``yes`` -> present,
    ``未提及`` -> not_mentioned); a finding missing from the reply, or with an unreadable status,
    is ``not_mentioned``.

    Raises:
        JudgeError: the reply holds no JSON object.
    """
    data = None
    candidates = [m.group(0) for pattern in (r'\{.*\}', r'\{[^{}]*\}') for m in re.finditer(pattern, text or '', re.S)]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
            break
        except ValueError:
            continue
    if not isinstance(data, dict):
        raise JudgeError(f'judge reply has no JSON object: {str(text)[:200]!r}')
    wanted = set(findings)
    out = {}
    for key, value in data.items():
        fid = key if key in wanted else canonical_label(key)
        if fid in wanted:
            out[fid] = _STATUS_WORDS.get(str(value).strip().lower().replace('-', '_'), 'not_mentioned')
    return {f: out.get(f, 'not_mentioned') for f in findings}


class OpenAIJudge(ConsistencyJudge):
    """Judge through an OpenAI-compatible chat endpoint (GPT-4o, a local ``swift deploy``, vLLM ...).

    Args:
        base_url: e.g. ``'http://127.0.0.1:8000/v1'``.
        model: model name at that endpoint.
        api_key: key (default ``$OPENAI_API_KEY``, else ``'EMPTY'`` for local servers).
        timeout: seconds per request. max_retries: client retries per report.
        vocabulary: closed-world finding ids (default: the offline lexicon's vocabulary).
        client: an object with ``chat.completions.create`` (tests inject a fake; default openai.OpenAI).
    """

    def __init__(self, base_url: Optional[str] = None, model: str = 'gpt-4o', api_key: Optional[str] = None, *,
                 timeout: float = 60.0, max_retries: int = 2, vocabulary: Optional[Sequence[str]] = None,
                 client=None):
        self.lexicon = load_lexicon()
        self.vocabulary = tuple(vocabulary or lexicon_terms(self.lexicon))
        self.model = model
        self.client = client or make_client(base_url, api_key, timeout=timeout, max_retries=max_retries)

    def judge(self, report: str, findings: Sequence[str], lang: str = 'en') -> Dict[str, str]:
        prompt = build_judge_prompt(report, findings, lang, self.lexicon)
        try:
            text = chat_text(self.client, self.model, [{'role': 'user', 'content': prompt}])
        except Exception as exc:  # network, timeout, HTTP status: this report fails, the run goes on
            raise JudgeError(f'{type(exc).__name__}: {exc}') from exc
        return parse_judge_reply(text, findings)
