"""Clinical consistency of a generated report against finding labels (official src/eval/eval_open/generation/prompt_ref.txt).

Definition (official ``src/eval/eval_open/generation/prompt_ref.txt``, EN and ZH):

* Score = positive findings the report states as present + negative findings it states as absent;
* Total = all positive findings of the labels + every finding the report mentions that is
  negative in the labels.

So a missed positive and a false positive both cost Total only, and a negative finding the report
does not mention is ignored. Worked example (official prompt_ref.txt): positives {MA, hard exudates}; the
report names hard exudates and six absent findings, all negative, and never mentions MA:
Score = 1 + 6 = 7, Total = 2 + 6 = 8 -> 7/8.

The official judge (GPT-4o) returned ``"Score/Total"`` directly. Ours asks a judge only for the
status of each finding (``present`` / ``absent`` / ``not_mentioned``) and does the arithmetic
here, so the two judges (:class:`~fundusexpert_plugin.core.lexicon_judge.LexiconJudge`, :class:`llm_judge.OpenAIJudge`)
share the rule.

Negatives: an explicit list makes only those findings negative (mentions of unlabelled findings are
ignored); ``negatives=None`` is the closed world of the judge's vocabulary: every finding the judge
knows that is not positive counts as negative (ours).

Contradictions (ours): a report that states one finding both as present and as absent (a judge
that can see it, :meth:`ConsistencyJudge.judge_with_contradictions`) is counted per report
(``contradictions``). Such a finding never earns a point and always counts in Total: a positive
one costs its point, a negative one counts as mentioned but not as stated absent. Example:
positives {haemorrhages}, negatives {drusen}, report "Haemorrhages are seen. No haemorrhages. No
drusen." -> Score = 0 + 1 = 1, Total = 1 + 1 = 2, contradictions ['haemorrhages'].

Aggregation is not published; :func:`aggregate` reports both the per-report mean of
Score/Total and the pooled sum(Score)/sum(Total), labelled, and the total of contradictions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from fundusexpert_plugin.core.judge import STATUSES, ConsistencyJudge, JudgeError  # noqa: F401 (re-exported for scorers)

@dataclass
class ConsistencyResult:
    """Score/Total of one report.

    Attributes:
        score: numerator. total: denominator.
        statuses: the judge's status per finding asked.
        contradictions: finding ids the report states both as present and as absent (not credited).
        error: why the report could not be scored (then score/total are 0 and ``ratio`` is None).
    """

    score: int = 0
    total: int = 0
    statuses: Dict[str, str] = field(default_factory=dict)
    error: Optional[str] = None
    contradictions: List[str] = field(default_factory=list)

    @property
    def ratio(self) -> Optional[float]:
        return self.score / self.total if self.total and self.error is None else None

    def as_dict(self) -> dict:
        return {'score': self.score, 'total': self.total, 'ratio': self.ratio, 'statuses': self.statuses,
                'contradictions': list(self.contradictions), 'error': self.error}


def consistency_score(statuses: Mapping[str, str], positives: Iterable[str],
                      negatives: Optional[Iterable[str]] = None,
                      contradictions: Iterable[str] = ()) -> ConsistencyResult:
    """Score/Total from per-finding statuses (the official definition, module docstring).

    Args:
        statuses: ``{finding_id: 'present'|'absent'|'not_mentioned'}``; a missing id is not mentioned.
        positives: finding ids positive in the labels.
        negatives: finding ids negative in the labels; ``None`` treats every other id in
            ``statuses`` as negative (closed world).
        contradictions: finding ids stated both present and absent: never scored, always in Total
            (a contradicted negative counts as mentioned).

    Raises:
        ValueError: a finding is both positive and negative, or a status is unknown.
    """
    positives = set(positives)
    negatives = set(statuses) - positives if negatives is None else set(negatives)
    both = positives & negatives
    if both:
        raise ValueError(f'finding(s) {sorted(both)} are both positive and negative in the labels')
    bad = {k: v for k, v in statuses.items() if v not in STATUSES}
    if bad:
        raise ValueError(f'unknown status(es) {bad}; expected one of {STATUSES}')
    contradicted = list(dict.fromkeys(contradictions))
    score = sum(statuses.get(f) == 'present' and f not in contradicted for f in positives)
    mentioned_negatives = [f for f in negatives
                           if statuses.get(f, 'not_mentioned') != 'not_mentioned' or f in contradicted]
    score += sum(statuses.get(f) == 'absent' and f not in contradicted for f in mentioned_negatives)
    return ConsistencyResult(score=score, total=len(positives) + len(mentioned_negatives), statuses=dict(statuses),
                             contradictions=contradicted)


def report_language(report: str) -> str:
    """``'zh'`` when the report contains CJK characters, else ``'en'``."""
    return 'zh' if re.search(r'[\u4e00-\u9fff]', report or '') else 'en'


def evaluate_report(judge: ConsistencyJudge, report: Optional[str], positives: Sequence[str],
                    negatives: Optional[Sequence[str]] = None) -> ConsistencyResult:
    """Ask ``judge`` about the labelled findings of one report and score it.

    The judge is asked about positives + negatives, or positives + its whole vocabulary when
    ``negatives`` is ``None``. An empty report scores 0/len(positives) (every positive missed) without
    calling the judge. A :class:`JudgeError` becomes ``ConsistencyResult(error=...)``.

    Labels are read as ``fundusexpert eval --meta`` reads them
    (:func:`~fundusexpert_plugin.eval.results.consistency_labels`): aliases resolved (``hemorrhage``
    -> ``haemorrhages``), anatomy left out, other labels passed to the judge by name.

    Raises:
        FundusDataError: a label a closed-vocabulary judge (the offline lexicon judge) cannot read: it
            would always count as not mentioned (:func:`~fundusexpert_plugin.eval.results.check_judge_labels`).
    """
    from fundusexpert_plugin.eval.results import check_judge_labels, consistency_labels

    positives = consistency_labels(positives)[0]
    negatives = None if negatives is None else consistency_labels(negatives)[0]
    check_judge_labels({'positives': positives, 'negatives': negatives or []}, judge, 'evaluate_report')
    findings = list(dict.fromkeys([*positives, *(judge.vocabulary if negatives is None else negatives)]))
    if not isinstance(report, str) or not report.strip():
        return consistency_score({f: 'not_mentioned' for f in findings}, positives, negatives)
    try:
        statuses, contradictions = judge.judge_with_contradictions(report, findings, report_language(report))
    except JudgeError as exc:
        return ConsistencyResult(statuses={}, error=str(exc))
    statuses = {f: statuses.get(f, 'not_mentioned') for f in findings}
    return consistency_score(statuses, positives, negatives, [f for f in contradictions if f in statuses])


def aggregate(results: Sequence[ConsistencyResult]) -> dict:
    """Aggregate report scores.

    Returns:
        ``{'per_report_mean': mean of Score/Total over reports with Total > 0,
        'pooled': sum(Score) / sum(Total), 'score_sum', 'total_sum', 'n_reports', 'n_scored',
        'n_failed' (judge errors, excluded everywhere), 'n_zero_total' (Total == 0: no positives
        and no negative mentioned; excluded from the mean), 'contradictions' (contradicted findings
        summed over reports), 'n_reports_with_contradictions'}``; ratios are ``None`` when undefined.
    """
    ok = [r for r in results if r.error is None]
    scored = [r for r in ok if r.total > 0]
    score_sum, total_sum = sum(r.score for r in ok), sum(r.total for r in ok)
    return {
        'per_report_mean': sum(r.ratio for r in scored) / len(scored) if scored else None,
        'pooled': score_sum / total_sum if total_sum else None,
        'score_sum': score_sum, 'total_sum': total_sum,
        'n_reports': len(results), 'n_scored': len(scored),
        'n_failed': len(results) - len(ok), 'n_zero_total': len(ok) - len(scored),
        'contradictions': sum(len(r.contradictions) for r in ok),
        'n_reports_with_contradictions': sum(bool(r.contradictions) for r in ok),
    }
