"""Closed-answer rows: grading, classification (laterality, image quality) and region identification.

A FundusGen row of these kinds has one reference answer, a phrase from the vocabulary (``"Left eye."``,
``"proliferative diabetic retinopathy (PDR)"``, ``"Fovea."``). Scoring (ours; the paper scores its
grading benchmarks as MCQ):

* **exact match**: the response equals the reference after normalisation (Unicode NFKC, case folded,
  whitespace collapsed, sentence-final ``. 。 ! ！`` and surrounding quotes dropped);
* **grades** (rows with ``grade_scale``): the response is read as a grade of that scale by
  :func:`parse_grade` and compared with the reference's grade: accuracy per scale, and the
  quadratic weighted Cohen's kappa over the scale's grades (scikit-learn ``cohen_kappa_score``), the
  usual agreement measure for ordinal DR grading (e.g. the Kaggle EyePACS and APTOS 2019 challenges).
  A response that names no grade, or two, counts as wrong and as unparsed.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from fundusexpert_plugin.core.vocab import GRADE_SCALES

_FINAL = '.。!！'
_QUOTES = '"\'“”‘’「」'


def normalise(text: Optional[str]) -> str:
    """Text compared by exact match: NFKC, case folded, whitespace collapsed, sentence-final
    punctuation and surrounding quotes removed (``' Left eye. '`` -> ``'left eye'``)."""
    text = unicodedata.normalize('NFKC', text or '').casefold()
    text = ' '.join(text.split())
    prev = None
    while prev != text:
        prev = text
        text = text.strip(_QUOTES + ' ').rstrip(_FINAL).strip()
    return text


#: spelling variants read as the vocabulary's spelling before grades are looked for (ours): US
#: spelling, "nonproliferative", the abbreviations DR / DME / DMO, and the Chinese 增生 / 增殖期 for 增殖性.
_SPELLINGS = (
    (r'(?<![\w-])edema(?![\w-])', 'oedema'),
    (r'(?<![\w-])non[\s-]?proliferative(?![\w-])', 'non-proliferative'),
    (r'(?<![\w-])dr(?![\w-])', 'diabetic retinopathy'),
    (r'(?<![\w-])(?:dme|dmo)(?![\w-])', 'diabetic macular oedema'),
    (r'增生', '增殖'), (r'增殖(?:期|型)', '增殖性'),
)

#: other names of grades in common use, normalised (ours): the Kaggle / APTOS grade names ("mild DR"
#: ... "severe DR"; their "severe" is severe NPDR) and the ICDR "no apparent retinopathy".
_EXTRA_NAMES = {
    'dr_grade': {'0': ('no apparent retinopathy', 'no retinopathy'), '1': ('mild diabetic retinopathy',),
                 '2': ('moderate diabetic retinopathy',), '3': ('severe diabetic retinopathy',)},
    'dme_grade': {'0': ('no macular oedema', 'no diabetic macular oedema', 'no risk of diabetic macular oedema',
                        '无糖尿病黄斑水肿', '无糖尿病黄斑水肿风险')},
}


def _canonical_spelling(norm: str) -> str:
    for pattern, repl in _SPELLINGS:
        norm = re.sub(pattern, repl, norm)
    return norm


def _grade_phrases(scale: str) -> List[Tuple[str, str]]:
    """``(normalised phrase, grade)`` for every name of every grade of ``scale``, both languages:
    the full name, the name without its parenthesis, the parenthesised short form
    (``'moderate npdr'``) and the names of :data:`_EXTRA_NAMES`."""
    phrases = [(name, grade) for grade, names in _EXTRA_NAMES.get(scale, {}).items() for name in names]
    for grade, names in GRADE_SCALES[scale].items():
        for name in names:
            forms = {normalise(name)}
            m = re.fullmatch(r'(.*?)\s*[(（](.+)[)）]\s*', name)
            if m:
                forms |= {normalise(m.group(1)), normalise(m.group(2))}
            phrases += [(form, grade) for form in forms if form]
    return phrases


def parse_grade(text: Optional[str], scale: str) -> Optional[str]:
    """The grade of ``scale`` (:data:`vocab.GRADE_SCALES`) that ``text`` names, or ``None``.

    Every known name of every grade is looked for in the normalised text, spelling variants read
    as the vocabulary writes them (:data:`_SPELLINGS`: ``"No DR"``, ``"macular edema"``,
    ``"nonproliferative"``, ``增生性``; names of :data:`_EXTRA_NAMES`: ``"moderate DR"``); the longest
    match wins, so ``"mild non-proliferative diabetic retinopathy"`` is grade 1 although it contains
    ``"proliferative diabetic retinopathy"`` (grade 4). Two different grades matched at the same
    longest length, or none, give ``None``. English short forms match as whole words only.

    Raises:
        KeyError: unknown ``scale``.
    """
    norm = _canonical_spelling(normalise(text))
    best: Dict[str, int] = {}
    for phrase, grade in _grade_phrases(scale):
        if phrase.isascii():
            found = re.search(r'(?<![\w-])' + re.escape(phrase) + r'(?![\w-])', norm) is not None
        else:
            found = phrase in norm
        if found:
            best[grade] = max(best.get(grade, 0), len(phrase))
    if not best:
        return None
    top = max(best.values())
    grades = [g for g, n in best.items() if n == top]
    return grades[0] if len(grades) == 1 else None


@dataclass
class AnswerResult:
    """One closed-answer row.

    Attributes:
        category: the task name (e.g. ``grading``, ``laterality``).
        correct: normalised exact match with the reference.
        scale: the grade scale (``dr_grade``, ``dme_grade``...) or ``None``.
        ref_grade, pred_grade: grades read by :func:`parse_grade` (``None``: not parsed).
    """

    category: str
    correct: bool
    scale: Optional[str] = None
    ref_grade: Optional[str] = None
    pred_grade: Optional[str] = None

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict (``samples.jsonl``'s ``answer``)."""
        return {'category': self.category, 'correct': self.correct, 'scale': self.scale,
                'ref_grade': self.ref_grade, 'pred_grade': self.pred_grade}


def score_answer(response: Optional[str], reference: str, category: str,
                 scale: Optional[str] = None) -> AnswerResult:
    """Score one response against its reference answer (module docstring).

    Raises:
        KeyError: unknown ``scale``.
    """
    result = AnswerResult(category or 'unknown', normalise(response) == normalise(reference), scale)
    if scale:
        result.ref_grade, result.pred_grade = parse_grade(reference, scale), parse_grade(response, scale)
    return result


def answer_metrics(results: Sequence[AnswerResult]) -> dict:
    """Aggregate closed-answer results.

    Returns:
        ``{'n', 'accuracy', 'per_category': {category: {'n', 'accuracy'}}, 'grades': {scale: {'n',
        'accuracy', 'quadratic_kappa', 'n_unparsed'}}}``. Accuracy is the exact-match share; a grade's
        accuracy and kappa count an unparsed response as wrong (it takes no grade: kappa is computed
        over the rows whose response names a grade, and is ``None`` when fewer than two grades occur).
    """
    from sklearn.metrics import cohen_kappa_score

    out: dict = {'n': len(results), 'accuracy': sum(r.correct for r in results) / len(results) if results else None,
                 'per_category': {}, 'grades': {}}
    for cat in sorted({r.category for r in results}):
        rows = [r for r in results if r.category == cat]
        out['per_category'][cat] = {'n': len(rows), 'accuracy': sum(r.correct for r in rows) / len(rows)}
    for scale in sorted({r.scale for r in results if r.scale}):
        rows = [r for r in results if r.scale == scale and r.ref_grade is not None]
        parsed = [r for r in rows if r.pred_grade is not None]
        kappa = None
        labels = sorted(GRADE_SCALES[scale], key=int)
        if len({r.ref_grade for r in parsed} | {r.pred_grade for r in parsed}) >= 2:
            kappa = float(cohen_kappa_score([r.ref_grade for r in parsed], [r.pred_grade for r in parsed],
                                            labels=labels, weights='quadratic'))
        out['grades'][scale] = {
            'n': len(rows),
            'accuracy': sum(r.pred_grade == r.ref_grade for r in rows) / len(rows) if rows else None,
            'quadratic_kappa': kappa, 'n_unparsed': len(rows) - len(parsed)}
    return out
