"""Multiple-choice prompt and scoring for Fundus-MMBench and the GMAI-MMBench fundus subset.

Sources:
    * Prompt: official ``src/eval_api/call_api.py::prepare_prompt``: the fixed
      instruction line, ``Question: ...``, then one ``X. option`` line per non-empty option A-E,
      each line ending in a newline.
    * Strict rule: official ``src/eval/eval_api/get_acc.py``: ``re.search(r'^[A-E]', response)``
      on the response **as is** (no stripping) must equal the first character of ``answer``.
      We do not strip leading whitespace either, so our strict numbers are the paper's numbers; a
      model that answers ``" B"`` or ``"\\nB"`` is a miss there and a hit in the lenient rule.
    * Lenient rule (ours, for diagnosis; closer in spirit to VLMEvalKit's option matching, without
      an LLM): see :func:`lenient_letter`.
    * Accuracy: overall and per ``category`` (missing, empty or NaN category -> ``'Unknown'``, as
      get_acc.py, on every path: :func:`category_name`), rounded to 3 decimals (official
      get_acc.py). Every category of the benchmark is listed, those without items too (accuracy
      0.0, n = 0), as the official script does: pass the benchmark's categories to
      :func:`accuracy` (``fundusexpert eval --tsv`` reads them from the TSV).

Public API reused by other scorers: :func:`build_prompt`, :func:`strict_letter`,
:func:`lenient_letter`, :func:`score_item`, :func:`category_name`, :func:`accuracy`,
:func:`check_answer_letter` (the reference letter must be one of the options, for TSV rows and
``--meta`` records alike).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, Mapping, Optional, Sequence

from fundusexpert_plugin.core.errors import FundusDataError

LETTERS = 'ABCDE'
UNKNOWN_CATEGORY = 'Unknown'
INSTRUCTION = "Answer with the option's letter from the given choices directly.\n"
#: the Chinese instruction line of FundusGen's MCQ rows (templates/mcq.yaml)
INSTRUCTION_ZH = '请直接回答选项字母。\n'

_LEAD_LETTER = re.compile(r'([A-E])(?:[.:)）．、：,，]|\s)')
_OPTION_LINE = re.compile(r'^\s*([A-E])\.\s?(.*?)\s*$', re.M)
_STRICT = re.compile(r'^[A-E]')
_LEAD = re.compile(r'^[\s*_`"\'(\[]*([A-E])(?:$|[\s.:)\]*_`"\',;])')
_PHRASE = re.compile(r'(?i:answer|option|choice|选项|答案)[^A-Za-z0-9\n]{0,12}?(?-i:([A-E]))(?![A-Za-z])')
_TOKEN = re.compile(r'(?<![A-Za-z])([A-E])(?![A-Za-z])')
# "A fundus ..." is the article, but "A or B" / "A and B" names two options
_ARTICLE_A = re.compile(r'(?<![A-Za-z])A\s+(?!(?:or|and)\s+[A-E](?![A-Za-z]))[a-z]')


def build_prompt(question: str, options: Mapping[str, object], lang: str = 'en') -> str:
    """The paper's MCQ prompt (official ``prepare_prompt``); options that are empty or NaN are left out.

    ``lang='zh'``: the same layout with FundusGen's Chinese instruction and ``问题：`` prefix
    (templates/mcq.yaml); any other value gives the English prompt.
    """
    prompt = INSTRUCTION_ZH + f'问题：{question}\n' if lang == 'zh' else INSTRUCTION + f'Question: {question}\n'
    for letter in LETTERS:
        text = options.get(letter)
        if _present(text):
            prompt += f'{letter}. {text}\n'
    return prompt


def _present(value) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and value != value:  # NaN from pandas
        return False
    return str(value) != ''


def parse_options(prompt: str) -> Dict[str, str]:
    """Lettered options ``{'A': 'text', ...}`` from lines ``A. text`` of a prompt (A-E)."""
    return {m.group(1): m.group(2) for m in _OPTION_LINE.finditer(prompt or '')}


def is_mcq_prompt(prompt: str) -> bool:
    """Whether a user prompt lists lettered options: at least ``A.`` and ``B.`` lines."""
    options = parse_options(prompt)
    return 'A' in options and 'B' in options


def check_answer_letter(answer: str, options: Mapping[str, object], where: str, field: str = 'answer') -> str:
    """The reference letter of an MCQ item, checked to be one of its options.

    The one check of a benchmark TSV row (:func:`mcq_tsv.read_tsv`) and of a ``--meta`` record
    (``fundusexpert eval score``): an answer that is no option would make every response wrong (or
    score a letter the model was never offered).

    Args:
        answer: the reference as written; outer whitespace is ignored (``' B'`` is ``'B'``), and a
            letter followed by its option's text is read as the letter (``'C. moderate NPDR'`` is
            ``'C'``, as ``get_acc.py``'s ``answer.str[0]``; ``'Cataract'`` is no letter).
        options: ``{letter: text}`` of the item's non-empty options.
        where: ``'<file>:<line>'`` of the record, for the message.
        field: the field the answer came from (``'answer'``, ``'answer_letter'``).

    Returns:
        The letter.

    Raises:
        FundusDataError: ``"<where>: <field> = 'F': is not one of the row's options ['A', 'B', 'C']"``.
    """
    letter = str(answer).strip()
    lead = _LEAD_LETTER.match(letter)
    letter = lead.group(1) if lead and lead.group(1) in options else letter
    if letter not in options:
        raise FundusDataError(f"{where}: {field} = {letter!r}: is not one of the row's options {sorted(options)}",
                              reason='bad_field')
    return letter


def answer_letter(answer: Optional[str]) -> str:
    """First character of a reference answer when it is A-E (``get_acc.py``: ``answer.str[0]``), else ''."""
    text = str(answer or '')
    return text[0] if text[:1] in LETTERS and text[:1] else ''


def strict_letter(response: Optional[str]) -> str:
    """The paper's extraction: the response's first character if it is A-E, else ``''`` (no stripping)."""
    match = _STRICT.search(response) if isinstance(response, str) else None
    return match.group() if match else ''


def _norm(text: str) -> str:
    return re.sub(r'[\s\-_]+', ' ', str(text).lower()).strip(' .')


def named_letters(response: str, options: Mapping[str, str]) -> set:
    """Distinct valid option letters a response names as standalone capitals.

    The English article in ``'A fundus ...'`` is not a letter (but ``'A or B'``, ``'A and B'`` name
    two), and letters inside an option text the response repeats (``'Type A lesion'``) do not count.
    """
    valid = {k for k, v in options.items() if _present(v)} or set(LETTERS)
    masked = response
    for text in sorted((str(v) for v in options.values() if _present(v)), key=len, reverse=True):
        masked = re.sub(re.escape(text), ' ', masked, flags=re.I) if len(text) > 1 else masked
    masked = _ARTICLE_A.sub(' ', masked)
    return {m.group(1) for m in _TOKEN.finditer(masked)} & valid


def lenient_letter(response: Optional[str], options: Mapping[str, str]) -> str:
    """Our lenient extraction, tried in this order (first that gives one valid letter wins).

    0. A response that names two or more different option letters (:func:`named_letters`:
       ``'A or B'``, ``'A and B'``, ``'A, B'``, ``'B, not A'``) gets no letter: a hedge is not an answer.
    1. After stripping whitespace and markdown, a leading letter followed by end, punctuation or a
       space (``' B'``, ``'(B)'``, ``'**B.** glaucoma'``); ``'A fundus ...'`` is an article, not A.
    2. A letter after ``answer``/``option``/``choice``/``答案``/``选项`` (``'The answer is B'``).
    3. A standalone capital letter anywhere, when exactly one distinct valid letter appears.
    4. The option text itself, when exactly one option's text occurs in the response (an option
       whose text is part of another matching option's text is dropped: ``'non glaucoma'`` beats
       ``'glaucoma'``).

    Args:
        response: model output.
        options: ``{letter: option text}`` of the item; only these letters count.

    Returns:
        The letter, or ``''`` when none or several candidates remain.
    """
    if not isinstance(response, str) or not response.strip():
        return ''
    valid = {k for k, v in options.items() if _present(v)} or set(LETTERS)
    text = response.strip()
    named = named_letters(text, options)
    if len(named) > 1:
        return ''
    lead = _LEAD.match(text)
    if lead and lead.group(1) in valid and not _ARTICLE_A.match(text):
        return lead.group(1)
    phrase = [m.group(1) for m in _PHRASE.finditer(text) if m.group(1) in valid]
    if len(set(phrase)) == 1:
        return phrase[0]
    if len(named) == 1:
        return named.pop()
    norm = _norm(text)
    texts = {k: _norm(str(options.get(k) or '')) for k in valid}      # no options known: letters only
    hits = {k: t for k, t in texts.items() if t and t in norm}
    hits = {k: v for k, v in hits.items() if not any(v != w and v in w for w in hits.values())}
    return next(iter(hits)) if len(hits) == 1 else ''


@dataclass
class McqResult:
    """One scored item: reference letter, category, both extractions and hits."""

    answer: str
    category: str
    response: str
    options: Dict[str, str] = field(default_factory=dict)
    strict: str = ''
    lenient: str = ''

    @property
    def strict_hit(self) -> bool:
        return bool(self.answer) and self.strict == self.answer

    @property
    def lenient_hit(self) -> bool:
        return bool(self.answer) and self.lenient == self.answer


def category_name(category) -> str:
    """The category an item is counted under: ``'Unknown'`` for ``None``, ``''``, NaN (pandas) or the
    text ``'nan'`` (official get_acc.py fills missing categories with ``'Unknown'``), else ``str(category)``."""
    if not _present(category) or str(category).strip().lower() in ('', 'nan'):
        return UNKNOWN_CATEGORY
    return str(category)


def score_item(response: Optional[str], answer: str, options: Mapping[str, str],
               category: Optional[str] = None) -> McqResult:
    """Score one response with both rules.

    Args:
        response: model output (non-strings score as empty).
        answer: reference, reduced by :func:`answer_letter`.
        options: ``{letter: option text}``.
        category: item category, normalised by :func:`category_name` (NaN -> ``'Unknown'``).
    """
    return McqResult(answer=answer_letter(answer), category=category_name(category),
                     response=response if isinstance(response, str) else '', options=dict(options),
                     strict=strict_letter(response), lenient=lenient_letter(response, options))


def accuracy(results: Iterable[McqResult], ndigits: int = 3, categories: Optional[Sequence] = None) -> dict:
    """Overall and per-category accuracy under both rules.

    Args:
        results: scored items.
        ndigits: rounding of every accuracy (official get_acc.py: 3).
        categories: every category of the benchmark (e.g. the TSV's ``category`` column, repeats
            allowed, normalised by :func:`category_name`); those without items are listed with
            accuracy 0.0 and n = 0. ``None``: only the categories of ``results``.

    Returns:
        ``{'n', 'strict': {'overall', 'per_category'}, 'lenient': {...}, 'per_category_n'}`` with
        accuracies rounded to ``ndigits``, categories sorted; ``overall`` is ``None`` when there is
        no item.
    """
    results = list(results)
    counts: Dict[str, int] = {category_name(c): 0 for c in (categories or ())}
    hits = {'strict': defaultdict(int), 'lenient': defaultdict(int)}
    for r in results:
        category = category_name(r.category)
        counts[category] = counts.get(category, 0) + 1
        hits['strict'][category] += r.strict_hit
        hits['lenient'][category] += r.lenient_hit
    out = {'n': len(results), 'per_category_n': dict(sorted(counts.items()))}
    for rule, per in hits.items():
        out[rule] = {
            'overall': round(sum(per.values()) / len(results), ndigits) if results else None,
            'per_category': {c: round(per[c] / n, ndigits) if n else 0.0 for c, n in sorted(counts.items())},
        }
    return out
