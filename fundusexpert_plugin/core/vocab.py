"""The clinical vocabulary: finding ids, English/Chinese display names, aliases and grade scales.

This module is the only home of clinical strings. Every other module refers to findings by their
snake_case id (``optic_disc``, ``hard_exudates`` ...) and asks this module for display text.

Sources:
    * Finding terms follow the FundusExpert class vocabulary and the Fundus-MMBench category names
      (official code and Fundus-MMBench card): optic disc, optic cup, microaneurysms, hard exudates, cotton-wool
      spots, haemorrhages, plus the macula/fovea and drusen.
    * ICDR diabetic retinopathy severity scale (Wilkinson et al., Ophthalmology 2003): grades 0-4.
    * IDRiD risk of diabetic macular oedema (Porwal et al., Data 2018): grades 0-2.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

LANGUAGES = ('en', 'zh')


@dataclass(frozen=True)
class FindingTerm:
    """One finding class.

    Attributes:
        id: snake_case identifier used everywhere in data (``hard_exudates``).
        kind: ``'anatomy'`` or ``'lesion'``.
        en: English display name, lower case (``'hard exudates'``).
        zh: Chinese display name (``'硬性渗出'``).
        aliases: other spellings accepted on input (``'hemorrhage'``, ``'soft_exudates'``).
        suggests: diagnosis ids this finding is a recognised sign of (used only to phrase a
            conclusion as "consistent with", never to invent a grade).
    """

    id: str
    kind: str
    en: str
    zh: str
    aliases: Tuple[str, ...] = ()
    suggests: Tuple[str, ...] = ()

    def name(self, lang: str) -> str:
        """Display name in ``lang`` (``'en'`` or ``'zh'``)."""
        check_language(lang)
        return self.en if lang == 'en' else self.zh


FINDINGS: Dict[str, FindingTerm] = {t.id: t for t in [
    FindingTerm('optic_disc', 'anatomy', 'optic disc', '视盘', ('od', 'disc', 'optic_disk')),
    FindingTerm('optic_cup', 'anatomy', 'optic cup', '视杯', ('oc', 'cup')),
    FindingTerm('macula', 'anatomy', 'macula', '黄斑', ()),
    FindingTerm('fovea', 'anatomy', 'fovea', '黄斑中心凹', ()),
    FindingTerm('hard_exudates', 'lesion', 'hard exudates', '硬性渗出',
                ('hard_exudate', 'ex', 'he_exudates', 'exudates', 'retinal_hard_exudates'),
                ('diabetic_retinopathy',)),
    FindingTerm('haemorrhages', 'lesion', 'haemorrhages', '出血',
                ('haemorrhage', 'hemorrhage', 'hemorrhages', 'retinal_haemorrhages', 'he', 'hem'),
                ('diabetic_retinopathy',)),
    FindingTerm('microaneurysms', 'lesion', 'microaneurysms', '微血管瘤',
                ('microaneurysm', 'ma'), ('diabetic_retinopathy',)),
    FindingTerm('cotton_wool_spots', 'lesion', 'cotton-wool spots', '棉絮斑',
                ('cotton_wool_spot', 'soft_exudates', 'soft_exudate', 'se', 'cws'),
                ('diabetic_retinopathy',)),
    FindingTerm('drusen', 'lesion', 'drusen', '玻璃膜疣', ('druse',),
                ('age_related_macular_degeneration',)),
    FindingTerm('neovascularisation', 'lesion', 'neovascularisation', '新生血管',
                ('neovascularization', 'nv', 'nvd', 'nve'), ('diabetic_retinopathy',)),
]}

DIAGNOSES: Dict[str, Tuple[str, str]] = {
    'normal': ('no apparent retinal disease', '未见明显视网膜病变'),
    'diabetic_retinopathy': ('diabetic retinopathy', '糖尿病视网膜病变'),
    'diabetic_macular_oedema': ('diabetic macular oedema', '糖尿病黄斑水肿'),
    'glaucoma': ('glaucoma', '青光眼'),
    'age_related_macular_degeneration': ('age-related macular degeneration', '年龄相关性黄斑变性'),
    'pathological_myopia': ('pathological myopia', '病理性近视'),
    'hypertensive_retinopathy': ('hypertensive retinopathy', '高血压视网膜病变'),
    'cataract': ('cataract', '白内障'),
}

#: Grade scales: label key -> {grade value (str) -> (en, zh)}.
GRADE_SCALES: Dict[str, Dict[str, Tuple[str, str]]] = {
    # ICDR (Wilkinson 2003), as used by IDRiD, DDR, APTOS, EyePACS.
    'dr_grade': {
        '0': ('no diabetic retinopathy', '无糖尿病视网膜病变'),
        '1': ('mild non-proliferative diabetic retinopathy (mild NPDR)', '轻度非增殖性糖尿病视网膜病变'),
        '2': ('moderate non-proliferative diabetic retinopathy (moderate NPDR)', '中度非增殖性糖尿病视网膜病变'),
        '3': ('severe non-proliferative diabetic retinopathy (severe NPDR)', '重度非增殖性糖尿病视网膜病变'),
        '4': ('proliferative diabetic retinopathy (PDR)', '增殖性糖尿病视网膜病变'),
    },
    # IDRiD "risk of macular edema" (Porwal 2018, the Messidor definition): 0 = no apparent hard
    # exudates, 1 = hard exudates beyond 1 DD of the macula centre, 2 = within 1 DD. A grade states a
    # risk read from exudates, so its name says "risk", not a diagnosis (or exclusion) of oedema.
    'dme_grade': {
        '0': ('no risk of diabetic macular oedema: no apparent hard exudates', '无糖尿病黄斑水肿风险：未见硬性渗出'),
        '1': ('risk of diabetic macular oedema: hard exudates more than one disc diameter from the macular centre',
              '糖尿病黄斑水肿风险：硬性渗出距黄斑中心一个视盘直径以外'),
        '2': ('risk of diabetic macular oedema: hard exudates within one disc diameter of the macular centre',
              '糖尿病黄斑水肿风险：硬性渗出距黄斑中心一个视盘直径以内'),
    },
    # EyeQ image-quality grades (Fu et al., MICCAI 2019): gradable or not.
    'image_quality': {
        '0': ('good quality', '图像质量好'),
        '1': ('usable quality', '图像质量可用'),
        '2': ('reject: ungradable', '不可用：无法分级'),
    },
}

#: grade scales that describe disease (used in diagnostic conclusions); the others describe the image.
DISEASE_SCALES = ('dr_grade', 'dme_grade')

LATERALITY = {'right': ('right eye', '右眼'), 'left': ('left eye', '左眼')}


def check_language(lang: str) -> str:
    """Return ``lang`` if it is a supported language code.

    Raises:
        ValueError: ``lang`` is not ``'en'`` or ``'zh'``.
    """
    if lang not in LANGUAGES:
        raise ValueError(f'unknown language {lang!r}; expected one of {LANGUAGES}')
    return lang


def _alias_index() -> Dict[str, str]:
    index = {}
    for term in FINDINGS.values():
        for key in (term.id, term.en, term.zh, *term.aliases):
            index[key.lower().replace('-', '_').replace(' ', '_')] = term.id
    return index


_ALIASES = _alias_index()


def canonical_finding(name: str) -> Optional[str]:
    """Map a finding name or alias (any case, spaces or hyphens) to its id, or ``None``."""
    return _ALIASES.get(str(name).strip().lower().replace('-', '_').replace(' ', '_'))


def resolve_finding(name: str, *, where: str = '') -> str:
    """Map a finding name or alias to its id.

    Args:
        name: e.g. ``'Hard exudates'``, ``'hemorrhage'``, ``'soft_exudates'``.
        where: location prefix for the error message (``'file.jsonl:3: findings[1].label'``).

    Raises:
        ValueError: unknown label, with close matches and the known ids.
    """
    found = canonical_finding(name)
    if found is None:
        close = difflib.get_close_matches(str(name).lower(), list(_ALIASES), n=3)
        hint = f'; did you mean {", ".join(repr(c) for c in dict.fromkeys(_ALIASES[c] for c in close))}?' if close else ''
        prefix = f'{where}: ' if where else ''
        raise ValueError(f'{prefix}unknown finding label {name!r}{hint} Known: {sorted(FINDINGS)}')
    return found


def finding_name(finding_id: str, lang: str = 'en') -> str:
    """Display name of a finding id in ``lang``."""
    return FINDINGS[finding_id].name(lang)


def ref_name(finding_id: str, lang: str = 'en') -> str:
    """Text of a ``<ref>`` (grounding reference) for a finding id: the one casing rule for references.

    Always the display name exactly as in :data:`FINDINGS` (English lower case, ``'hard exudates'``;
    Chinese as written, ``'硬性渗出'``), never capitalised at a sentence start, so every reference
    to a class reads the same in every row and task, in both languages.
    """
    return finding_name(finding_id, lang)


def lesion_ids() -> List[str]:
    """Ids of all lesion classes, in vocabulary order."""
    return [t.id for t in FINDINGS.values() if t.kind == 'lesion']


def _diagnosis_key(text: str) -> str:
    return ' '.join(str(text).strip().lower().replace('_', ' ').replace('-', ' ').split())


#: every id and display name of :data:`DIAGNOSES` (EN and ZH, case, ``_``/``-``/space folded) -> id
_DIAGNOSIS_NAMES = {_diagnosis_key(name): did for did, names in DIAGNOSES.items() for name in (did, *names)}


def resolve_diagnosis(text: str) -> Optional[str]:
    """The diagnosis id a table cell names: an id (``'diabetic_retinopathy'``, ``'Diabetic-Retinopathy'``)
    or a display name in English or Chinese (``'age-related macular degeneration'``, ``'糖尿病视网膜病变'``);
    ``None`` when it names none."""
    return _DIAGNOSIS_NAMES.get(_diagnosis_key(text))


def diagnosis_name(diagnosis_id: str, lang: str = 'en') -> str:
    """Display name of a diagnosis id (``'glaucoma'``) in ``lang``.

    Raises:
        KeyError: unknown diagnosis id, listing the known ones.
    """
    check_language(lang)
    if diagnosis_id not in DIAGNOSES:
        raise KeyError(f'unknown diagnosis {diagnosis_id!r}; known: {sorted(DIAGNOSES)}')
    return DIAGNOSES[diagnosis_id][LANGUAGES.index(lang)]


def grade_name(scale: str, value: str, lang: str = 'en') -> str:
    """Display name of a grade value on a scale (``grade_name('dr_grade', '2')``).

    Raises:
        KeyError: unknown scale or value.
    """
    check_language(lang)
    if scale not in GRADE_SCALES or str(value) not in GRADE_SCALES[scale]:
        raise KeyError(f'unknown grade {scale}={value!r}; known scales: '
                       f'{ {k: sorted(v) for k, v in GRADE_SCALES.items()} }')
    return GRADE_SCALES[scale][str(value)][LANGUAGES.index(lang)]

#: Quadrants about the fovea (anatomical when laterality is known, image-relative otherwise).
QUADRANTS: Dict[str, Tuple[str, str]] = {
    'superotemporal': ('superotemporal', '颞上'),
    'superonasal': ('superonasal', '鼻上'),
    'inferotemporal': ('inferotemporal', '颞下'),
    'inferonasal': ('inferonasal', '鼻下'),
    'upper_left': ('upper-left', '左上'),
    'upper_right': ('upper-right', '右上'),
    'lower_left': ('lower-left', '左下'),
    'lower_right': ('lower-right', '右下'),
}

#: Sides relative to the optic disc.
SIDES: Dict[str, Tuple[str, str]] = {
    'temporal': ('temporal', '颞侧'), 'nasal': ('nasal', '鼻侧'),
    'left': ('left', '左侧'), 'right': ('right', '右侧'),
}


def quadrant_name(quadrant: str, lang: str = 'en') -> str:
    """Display name of a quadrant id from :mod:`.engine.position`."""
    check_language(lang)
    return QUADRANTS[quadrant][LANGUAGES.index(lang)]


def side_name(side: str, lang: str = 'en') -> str:
    """Display name of a side id (``'temporal'``, ``'nasal'``, ``'left'``, ``'right'``)."""
    check_language(lang)
    return SIDES[side][LANGUAGES.index(lang)]


def laterality_name(laterality: str, lang: str = 'en') -> str:
    """``'right'`` -> ``'right eye'`` / ``'右眼'``."""
    check_language(lang)
    return LATERALITY[laterality][LANGUAGES.index(lang)]
