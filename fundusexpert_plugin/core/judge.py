"""The judge interface: how a report states each finding (present, absent, not mentioned).

Shared by the engine's check of MLLM descriptions and by clinical-consistency scoring
(:mod:`fundusexpert_plugin.eval.consistency`). Implementations: the offline
:class:`~fundusexpert_plugin.core.lexicon_judge.LexiconJudge` and the LLM judge
:class:`~fundusexpert_plugin.eval.llm_judge.OpenAIJudge`.
"""
from __future__ import annotations

import abc
from typing import Dict, List, Sequence, Tuple

STATUSES = ('present', 'absent', 'not_mentioned')


class ConsistencyJudge(abc.ABC):
    """Reads a report and says, for each finding id asked about, how the report states it."""

    #: finding ids this judge can recognise unasked (the closed-world vocabulary).
    vocabulary: Sequence[str] = ()
    #: True when the judge can only ever recognise ``vocabulary`` (other ids stay not_mentioned).
    closed_vocabulary: bool = False

    @abc.abstractmethod
    def judge(self, report: str, findings: Sequence[str], lang: str = 'en') -> Dict[str, str]:
        """Status of each finding in ``report``.

        Args:
            report: generated report text.
            findings: finding ids to decide on.
            lang: ``'en'`` or ``'zh'``, the report's language.

        Returns:
            ``{finding_id: status}`` with a status from :data:`STATUSES` for every id in ``findings``.

        Raises:
            JudgeError: the judge could not produce an answer (network, timeout, unreadable reply).
        """

    def judge_with_contradictions(self, report: str, findings: Sequence[str],
                                  lang: str = 'en') -> Tuple[Dict[str, str], List[str]]:
        """:meth:`judge` plus the findings the report states both as present and as absent.

        The default (a judge that returns one status per finding and cannot see a contradiction,
        such as the LLM judge) reports none. Same arguments and errors as :meth:`judge`.

        Returns:
            ``(statuses, contradictions)``: ``contradictions`` lists finding ids of ``findings``,
            in the order of ``findings``.
        """
        return self.judge(report, findings, lang), []


class JudgeError(RuntimeError):
    """A judge failed on one report; the report is counted as failed, never scored."""
