"""Record fields that data-only tasks (kinds ``classification``, ``vqa``, ``free_form``) can use.

A task YAML lists the fields it needs under ``requires:`` and uses them as ``{placeholders}`` in its
prompts and answers. A record lacking a required field gets no row for that task (it is counted as
not applicable, never filled with a guess). Each field returns display text in the row's language.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.record import FundusGenRecord


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def laterality(record: FundusGenRecord, lang: str) -> Optional[str]:
    """``'Left eye'`` / ``'左眼'``; from the label or, for macula-centred photos, the disc side."""
    return _capital(vocab.laterality_name(record.laterality, lang)) if record.laterality else None


def _label(key: str) -> Callable[[FundusGenRecord, str], Optional[str]]:
    def field(record: FundusGenRecord, lang: str) -> Optional[str]:
        if key not in record.image_labels:
            return None
        value = record.image_labels[key]
        text = vocab.diagnosis_name(value, lang) if key == 'diagnosis' else vocab.grade_name(key, value, lang)
        return _capital(text) if lang == 'en' else text
    field.__doc__ = f'The record\'s ``image_labels[{key!r}]`` as display text.'
    return field


def vertical_cup_to_disc_ratio(record: FundusGenRecord, lang: str) -> Optional[str]:
    """Vertical cup-to-disc ratio: optic-cup box height / optic-disc box height (largest boxes),
    one decimal (``'0.4'``). Needs both boxes.

    Source: the vertical CDR is the ratio of the vertical cup and disc diameters (clinical
    definition, e.g. REFUGE challenge, Orlando et al. 2020); boxes from disc/cup masks carry
    exactly those vertical extents.
    """
    discs, cups = record.boxes('optic_disc'), record.boxes('optic_cup')
    if not discs or not cups:
        return None
    ratio = (cups[0][3] - cups[0][1]) / (discs[0][3] - discs[0][1])
    return f'{ratio:.1f}'


def present_findings(record: FundusGenRecord, lang: str) -> Optional[str]:
    """Names of the located lesion classes, joined, the first capitalised in English as the other
    fields are (``'Hard exudates, haemorrhages'``; ``None`` when there is none)."""
    names = [vocab.finding_name(f, lang) for f in record.present_labels() if vocab.FINDINGS[f].kind == 'lesion']
    if not names:
        return None
    text = ('、' if lang == 'zh' else ', ').join(names)
    return _capital(text) if lang == 'en' else text


FIELDS: Dict[str, Callable[[FundusGenRecord, str], Optional[str]]] = {
    'laterality': laterality,
    'diagnosis': _label('diagnosis'),
    'dr_grade': _label('dr_grade'),
    'dme_grade': _label('dme_grade'),
    'image_quality': _label('image_quality'),
    'vertical_cup_to_disc_ratio': vertical_cup_to_disc_ratio,
    'present_findings': present_findings,
}


def field_values(record: FundusGenRecord, names, lang: str) -> Optional[Dict[str, str]]:
    """Values of the named fields, or ``None`` if any is unavailable for this record."""
    values = {}
    for name in names:
        value = FIELDS[name](record, lang)
        if value is None:
            return None
        values[name] = value
    return values
