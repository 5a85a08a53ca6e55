"""Reader for ODIR-2019 (Peking University Ocular Disease Intelligent Recognition): one record per eye.

Layout read (as distributed)::

    ODIR-5K/Training Images/0_left.jpg, 0_right.jpg ...
    ODIR-5K/data.xlsx (also ``ODIR-5K_Training_Annotations(Updated)_V2.xlsx``; CSV exports work)
        ID, Patient Age, Patient Sex, Left-Fundus, Right-Fundus, Left-Diagnostic Keywords,
        Right-Diagnostic Keywords, N, D, G, C, A, H, M, O

Kaggle's redistribution (``ocular-disease-recognition-odir5k``: ``full_df.csv`` beside
``preprocessed_images/``) has one row per *image*: the patient row repeated once per eye, with
``filepath``, ``labels``, ``target`` and ``filename`` (``0_right.jpg``) added. That layout is
recognised by its ``filename`` column; each row gives the one eye its ``filename`` names (side from
the ``_left``/``_right`` suffix), so a patient's two rows give two records, as the per-patient
sheet does.

The ``N``...``O`` columns (and Kaggle's ``labels``/``target``) are per patient (both eyes), so only
the per-eye keyword columns are used.
Keywords are separated by ``，`` (full-width comma) or ``,``. The laterality of each record is that
of its column (``laterality_source = 'label'``).

Mapping (``GRADES.md``): ``normal fundus`` -> ``diagnosis = 'normal'``; ``mild nonproliferative
retinopathy`` / ``moderate non proliferative retinopathy`` / ``severe nonproliferative retinopathy`` /
``(severe) proliferative diabetic retinopathy`` -> ``dr_grade`` 1 / 2 / 3 / 4 (ICDR stage names);
``diabetic retinopathy`` (no stage) -> ``diagnosis = 'diabetic_retinopathy'``; ``glaucoma``,
``cataract``, ``(dry|wet) age-related macular degeneration``, ``hypertensive retinopathy``,
``pathological myopia`` -> the matching ``diagnosis``. The record has one ``diagnosis`` slot: an eye
with two different diagnoses keeps none of them (counted), an eye whose keywords add a pathology we
cannot represent loses ``normal``. ``suspected ...``, lesion words (``drusen``, ``laser spot``) and
all other keywords have no slot and are left out, counted per keyword. Photos flagged ``low image
quality``, ``no fundus image``, ``image offset``, ``anterior segment image`` or ``optic disk
photographically invisible`` are left out. ``lens dust`` is an artefact and is ignored.

Licence: not restated here; see the dataset's terms (ODIR-2019, Peking University / Shanggong
Medical Technology).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord
from fundusexpert_plugin.sources.base import SEE_TERMS, ConvertLog, FileIndex, NotRepresentable, RecordDraft, SourceInfo, attempt
from fundusexpert_plugin.core.tables import read_table

ODIR = SourceInfo('ODIR-2019 (Ocular Disease Intelligent Recognition)',
                  f'{SEE_TERMS} (ODIR-2019, Peking University / Shanggong Medical Technology)',
                  'Peking University International Competition on Ocular Disease Intelligent Recognition '
                  '(ODIR-2019), odir2019.grand-challenge.org')
DR_GRADES = {'mild nonproliferative retinopathy': '1', 'moderate non proliferative retinopathy': '2',
             'severe nonproliferative retinopathy': '3', 'proliferative diabetic retinopathy': '4',
             'severe proliferative diabetic retinopathy': '4'}
DIAGNOSES = {'normal fundus': 'normal', 'diabetic retinopathy': 'diabetic_retinopathy', 'glaucoma': 'glaucoma',
             'cataract': 'cataract', 'age-related macular degeneration': 'age_related_macular_degeneration',
             'dry age-related macular degeneration': 'age_related_macular_degeneration',
             'wet age-related macular degeneration': 'age_related_macular_degeneration',
             'hypertensive retinopathy': 'hypertensive_retinopathy', 'pathological myopia': 'pathological_myopia'}
UNUSABLE = {'low image quality', 'no fundus image', 'image offset', 'anterior segment image',
            'optic disk photographically invisible'}
ARTEFACTS = {'lens dust'}


def split_keywords(cell: str) -> List[str]:
    """``'cataract，lens dust'`` -> ``['cataract', 'lens dust']`` (lower case, spaces collapsed)."""
    return [re.sub(r'\s+', ' ', k).strip().lower() for k in re.split('[，,]', cell or '') if k.strip()]


def eye_of_filename(name: str) -> Optional[str]:
    """``'left'``/``'right'`` from an ODIR image name (``'0_right.jpg'``), else ``None``."""
    match = re.search(r'_(left|right)$', Path(name.strip()).stem, re.I)
    return match.group(1).lower() if match else None


def read_odir(images_dir: Path | str, table_path: Path | str, *, lenient: bool = False,
              log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """Records per eye, labels from the diagnostic keywords (module docstring).

    Per-patient sheet (``data.xlsx``): two records per row (left, right eye). Kaggle
    ``full_df.csv`` (a ``filename`` column): one record per row, the eye its ``filename`` names.

    Raises:
        FileNotFoundError: the table or ``images_dir`` is missing.
        FundusDataError: a missing column (always); an empty keyword cell, a missing image or (Kaggle
            layout) a ``filename`` without ``_left``/``_right`` (file:row and column named), unless
            ``lenient``. Lenient: that eye is skipped (its keywords are all the record would hold)
            and the row's other eye is kept. Keywords without a slot are never errors: left out and
            counted per keyword.
    """
    log = log if log is not None else ConvertLog()
    table, images = read_table(table_path), FileIndex(images_dir)
    columns = {side: (table.column(f'{side}-Fundus'), table.column(f'{side}-Diagnostic Keywords'))
               for side in ('Left', 'Right')}
    per_image = table.column('filename', required=False)
    for n, cells in table.rows:
        if per_image is not None:
            side = attempt(lambda: _side_of_image_row(table, n, cells, per_image), lenient=lenient, log=log,
                           where=table.where(n))
            sides = [side] if side else []
        else:
            sides = list(columns)
        for side in sides:
            img_col, kw_col = columns[side]
            where = f'{table.where(n)}: {table.header[kw_col]}'
            image_at = (table.where(n), table.header[img_col])  # a missing image names its own column
            record = attempt(lambda: _eye_record(cells[img_col], cells[kw_col], side.lower(), where, images,
                                                 lenient, log, image_at), lenient=lenient, log=log, where=where)
            if record is not None:
                yield record


def _side_of_image_row(table, n: int, cells, column: int) -> str:
    """The side (``'Left'``/``'Right'``) a Kaggle ``full_df.csv`` row stands for.

    Raises:
        FundusDataError: ``filename`` does not end in ``_left``/``_right``.
    """
    eye = eye_of_filename(cells[column])
    if eye is None:
        raise FundusDataError(f'{table.where(n)}: {table.header[column]} = {cells[column]!r}: expected an ODIR '
                              'image name ending in _left or _right')
    return eye.capitalize()


def _eye_record(image_name: str, cell: str, side: str, where: str, images: FileIndex, lenient: bool,
                log: ConvertLog, image_at: Tuple[str, str]) -> FundusGenRecord:
    keywords = split_keywords(cell)
    if not keywords:
        raise FundusDataError(f'{where} = {cell!r}: empty; expected diagnostic keywords', reason='empty_keywords')
    unusable = [k for k in keywords if k in UNUSABLE]
    if unusable:
        raise NotRepresentable(f'ODIR keyword {unusable[0]!r}: unusable photo, left out')
    grades = {DR_GRADES[k] for k in keywords if k in DR_GRADES}
    diagnoses = {DIAGNOSES[k] for k in keywords if k in DIAGNOSES}
    other = [k for k in keywords if k not in DR_GRADES and k not in DIAGNOSES and k not in ARTEFACTS]
    for keyword in other:
        log.note(f'ODIR keyword {keyword!r}: no slot in the record; left out', where)
    draft = RecordDraft(Path(image_name).stem, images.find(image_name, where=image_at[0], field_name=image_at[1]), where=where,
                        lenient=lenient, log=log)
    draft.laterality, draft.laterality_source = side, 'label'
    if len(grades) > 1:
        log.note('ODIR: two DR stages for one eye; dr_grade left out', where)
    elif grades:
        draft.image_labels['dr_grade'] = grades.pop()
        diagnoses.discard('diabetic_retinopathy')  # the grade already says it
    if 'normal' in diagnoses and (len(diagnoses) > 1 or other or 'dr_grade' in draft.image_labels):
        diagnoses.discard('normal')
        log.note('ODIR: "normal fundus" with a pathology keyword; normal left out', where)
    if len(diagnoses) > 1:
        log.note('ODIR: several diagnoses for one eye; the record has one diagnosis slot, all left out', where)
    elif diagnoses:
        draft.image_labels['diagnosis'] = diagnoses.pop()
    if not draft.image_labels:
        raise NotRepresentable('ODIR eye with no representable label: left out')
    return draft.build(ODIR)
