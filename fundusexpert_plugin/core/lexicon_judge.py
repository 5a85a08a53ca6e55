"""Deterministic offline consistency judge: finding lexicon + clause-scoped negation (EN and ZH).

Ours, in the spirit of NegEx (Chapman et al., J Biomed Inform 2001): cue phrases with a scope.
Data: ``consistency_lexicon.json`` beside this file (finding wordings, cue regexes).

Lexicon: for every lesion of :data:`vocab.FINDINGS` its id, EN and ZH names and aliases (aliases
of at most 4 letters, e.g. ``MA``, ``HE``, ``CWS``, match only in capitals), the diagnoses of
:data:`vocab.DIAGNOSES` (``include_diagnoses``), plus the JSON's synonyms and extra findings.
English phrases match case-insensitively, with spaces/hyphens interchangeable and an optional
plural ``s``/``es``; the longest phrase wins where phrases overlap (``soft exudates`` is not
``exudates``).

Scope (what a cue negates), inside one sentence; sentences end at ``. ; ! ? 。 ； \\n`` and at
contrast words (``but``, ``however``, ``但``); segments inside a sentence are separated by
``, : ， 、``:

* a pre-negation cue (``no``, ``without``, ``未见``, ``无``) negates the findings after it until an
  affirmation word (``seen``, ``present``, ``可见``) that follows a negated finding, or the
  sentence end. It carries into the next segment only when that segment starts with a finding
  (at most 2 other words before it): ``No haemorrhages, cotton-wool spots or drusen are seen``;
  not when the cue negated nothing in its own segment (``出血：无，硬性渗出：有``) or the next
  segment affirms with a Chinese cue (``未见出血，硬性渗出可见`` is two clauses).
* a post-negation cue (``absent``, ``not seen``, ``none``, ``: no``, ``阴性``, ``未见``, ``：无``)
  negates the findings before it back to an affirmation or pre-negation cue, and carries into
  earlier segments that hold only findings (at most 2 other words): ``Microaneurysms,
  haemorrhages and exudates are not seen``; the structured form ``Hard exudates: none.``,
  ``出血：无。``.
* ``apart from``, ``other than``, ``besides`` end a negation's scope like ``but``: ``No other
  lesions apart from haemorrhages`` affirms haemorrhages.

A finding mentioned several times is ``present`` if any mention is affirmative, else ``absent``;
one with both an affirmative and a negated mention is also reported as a contradiction
(:meth:`LexiconJudge.judge_with_contradictions`), which the consistency score never credits.
Known limit: ``No haemorrhages, hard exudates are present`` reads hard exudates as negated (the
comma splice is ambiguous); write findings of opposite polarity in separate sentences.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.judge import ConsistencyJudge

LEXICON_PATH = Path(__file__).with_name('consistency_lexicon.json')
_MAX_EXTRA_TOKENS = 2
_TOKEN = re.compile(r'[A-Za-z0-9]+|[\u4e00-\u9fff]')
_SEPARATOR = r'[\s\-]+'  # between the words of an English phrase


@dataclass(frozen=True)
class Mention:
    """One finding mention: id, character span ``[start, end)`` in the report, negation."""

    finding: str
    start: int
    end: int
    negated: bool


def _is_cjk(text: str) -> bool:
    return bool(re.search(r'[\u4e00-\u9fff]', text))


def _phrase_pattern(phrase: str) -> str:
    if _is_cjk(phrase):
        return re.escape(phrase)
    words = [re.escape(w) for w in re.split(r'[\s_\-]+', phrase.strip()) if w]
    if len(words) == 1 and len(phrase) <= 4 and phrase.isalpha():  # abbreviation: capitals only
        return rf'(?<![A-Za-z]){re.escape(phrase.upper())}(?![A-Za-z])'
    body = _SEPARATOR.join(words)
    return rf'(?i:(?<![A-Za-z]){body}(?:e?s)?(?![A-Za-z]))'


def load_lexicon(path: Optional[str] = None) -> dict:
    """Read the lexicon JSON (default: the packaged ``consistency_lexicon.json``)."""
    with open(path or LEXICON_PATH, encoding='utf-8') as f:
        return json.load(f)


def lexicon_terms(data: dict) -> Dict[str, List[str]]:
    """``{finding_id: [phrases]}``: vocab lesions (+ diagnoses) + JSON synonyms and extra findings."""
    terms: Dict[str, List[str]] = {}
    for term in vocab.FINDINGS.values():
        if term.kind == 'lesion':
            terms[term.id] = [term.id.replace('_', ' '), term.en, term.zh, *term.aliases]
    if data.get('include_diagnoses', True):
        for dx_id, (en, zh) in vocab.DIAGNOSES.items():
            if dx_id != 'normal':
                terms[dx_id] = [dx_id.replace('_', ' '), en, zh]
    for group in ('synonyms', 'extra_findings'):
        for finding, by_lang in data.get(group, {}).items():
            terms.setdefault(finding, []).extend(p for phrases in by_lang.values() for p in phrases)
    return {k: list(dict.fromkeys(p.replace('_', ' ') for p in v)) for k, v in terms.items()}


def _cue_regex(data: dict, kind: str) -> re.Pattern:
    patterns = [p for lang in ('en', 'zh') for p in data['cues'][lang][kind]]
    flags = [f'(?i:{p})' if not _is_cjk(p) else p for p in patterns]
    return re.compile('|'.join(flags))


def _spans(regex: re.Pattern, text: str) -> List[Tuple[int, int]]:
    return [(m.start(), m.end()) for m in regex.finditer(text) if m.end() > m.start()]


def _overlaps(span, spans) -> bool:
    return any(span[0] < e and s < span[1] for s, e in spans)


class LexiconJudge(ConsistencyJudge):
    """Offline judge; see the module docstring for the rules.

    Args:
        lexicon: parsed lexicon JSON (default: the packaged one).
    """

    closed_vocabulary = True

    def __init__(self, lexicon: Optional[dict] = None):
        data = lexicon or load_lexicon()
        self.terms = lexicon_terms(data)
        self.vocabulary = tuple(self.terms)
        alternatives = sorted(((p, f) for f, ps in self.terms.items() for p in ps), key=lambda t: -len(t[0]))
        self._ids = [f for _, f in alternatives]
        self._findings = re.compile('|'.join(f'({_phrase_pattern(p)})' for p, _ in alternatives))
        self._cues = {k: _cue_regex(data, k) for k in
                      ('pre_negation', 'post_negation', 'affirmation', 'contrast', 'sentence_end', 'list_separator')}

    def mentions(self, text: str) -> List[Mention]:
        """All finding mentions in ``text`` with their negation, in order."""
        found = [(m.start(), m.end(), self._ids[m.lastindex - 1]) for m in self._findings.finditer(text)]
        post = _spans(self._cues['post_negation'], text)
        # a pre cue inside a longer post cue ('not' in 'not seen') is part of it; the same span in
        # both lists ('未见') is both
        pre = [s for s in _spans(self._cues['pre_negation'], text) if s in post or not _overlaps(s, post)]
        aff = [s for s in _spans(self._cues['affirmation'], text)
               if not _overlaps(s, post + pre) and not _overlaps(s, [(a, b) for a, b, _ in found])]
        events = sorted([(s, 'm', i) for i, (s, _, _) in enumerate(found)] + [(s, 'pre', -1) for s, _ in pre]
                        + [(s, 'post', -1) for s, _ in post]
                        + [(s, 'aff_zh' if _is_cjk(text[s:e]) else 'aff', -1) for s, e in aff])
        cuts = sorted({e for _, e in _spans(self._cues['sentence_end'], text)}
                      | {s for s, _ in _spans(self._cues['contrast'], text)})
        bounds = sorted(set(cuts) | {e for _, e in _spans(self._cues['list_separator'], text)})
        negated = [False] * len(found)
        by_sentence: Dict[int, Dict[int, List[tuple]]] = {}
        for ev in events:
            sentence, segment = sum(c <= ev[0] for c in cuts), sum(b <= ev[0] for b in bounds)
            by_sentence.setdefault(sentence, {}).setdefault(segment, []).append(ev)
        for segs in by_sentence.values():
            segments = []
            for k in range(min(segs), max(segs) + 1):  # empty segments too: they stop a carry
                lo = bounds[k - 1] if k else 0
                hi = bounds[k] if k < len(bounds) else len(text)
                evs = segs.get(k, [])
                finding_tokens = sum(len(_TOKEN.findall(text[found[i][0]:found[i][1]])) for _, kind, i in evs
                                     if kind == 'm')
                extra = len(_TOKEN.findall(text[lo:hi])) - finding_tokens
                segments.append((len(_TOKEN.findall(text[lo:evs[0][0] if evs else hi])), extra, evs))
            self._forward(segments, negated)
            self._backward(segments, negated)
        return [Mention(f, s, e, n) for (s, e, f), n in zip(found, negated)]

    @staticmethod
    def _forward(segments, negated) -> None:
        """Pre-negation cues, left to right; carry into a segment that starts with a finding, unless
        the cue negated nothing in its own segment (``出血：无，硬性渗出：有``) or the segment affirms
        with a Chinese cue (``未见出血，硬性渗出可见``: a new clause, unlike ``..., drusen are seen``)."""
        active, n_since = False, 0
        for k, (lead_tokens, _, evs) in enumerate(segments):
            if k and active and (not evs or evs[0][1] != 'm' or lead_tokens > _MAX_EXTRA_TOKENS or not n_since
                                 or any(kind == 'aff_zh' for _, kind, _ in evs)):
                active = False
            for _, kind, i in evs:
                if kind == 'pre':
                    active, n_since = True, 0
                elif kind == 'm' and active:
                    negated[i] = True
                    n_since += 1
                elif kind in ('aff', 'aff_zh') and active and n_since:
                    active = False

    @staticmethod
    def _backward(segments, negated) -> None:
        """Post-negation cues, right to left; carry into earlier segments that hold only findings."""
        active = False
        for k in range(len(segments) - 1, -1, -1):
            _, extra_tokens, evs = segments[k]
            if active and (not evs or any(kind != 'm' for _, kind, _ in evs) or extra_tokens > _MAX_EXTRA_TOKENS):
                active = False
            for _, kind, i in reversed(evs):
                if kind == 'post':
                    active = True
                elif kind == 'm' and active:
                    negated[i] = True
                elif kind in ('aff', 'aff_zh', 'pre'):
                    active = False

    def judge(self, report: str, findings: Sequence[str], lang: str = 'en') -> Dict[str, str]:
        """Statuses of ``findings`` in ``report`` (``lang`` is not needed: both cue sets apply)."""
        return self.judge_with_contradictions(report, findings, lang)[0]

    def judge_with_contradictions(self, report: str, findings: Sequence[str],
                                  lang: str = 'en') -> Tuple[Dict[str, str], List[str]]:
        """Statuses (``present`` wins over ``absent``) and the findings mentioned both affirmed and negated.

        Example: ``'Haemorrhages are seen. No haemorrhages.'`` gives
        ``({'haemorrhages': 'present'}, ['haemorrhages'])``.
        """
        polarities: Dict[str, set] = {}
        for m in self.mentions(report or ''):
            if m.finding in findings:
                polarities.setdefault(m.finding, set()).add(m.negated)
        status = {f: ('present' if False in polarities[f] else 'absent') if f in polarities else 'not_mentioned'
                  for f in findings}
        return status, [f for f in findings if polarities.get(f) == {True, False}]
