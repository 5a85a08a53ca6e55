"""Readers for image-level DR grade tables: APTOS 2019, EyePACS (Kaggle 2015), Messidor, Messidor-2.

Layouts read (as distributed):

* APTOS 2019 Blindness Detection (Kaggle): ``train.csv`` with ``id_code,diagnosis`` (0-4, ICDR),
  images ``train_images/<id_code>.png``.
* EyePACS / Kaggle Diabetic Retinopathy Detection: ``trainLabels.csv`` with ``image,level`` (0-4,
  ICDR; ``retinopathy_solution.csv`` of the test set has the same columns plus ``Usage``), images
  ``train/<image>.jpeg``; names end in ``_left``/``_right``, which gives the laterality.
* Messidor (ADCIS): ``Annotation_Base11.xls`` ... one per base (legacy Excel, sheet ``Feuil1``,
  read as distributed through xlrd; CSV or xlsx exports work too), columns
  ``Image name`` (``20051020_43808_0100_PP.tif``), ``Ophthalmologic department``,
  ``Retinopathy grade`` (0-3, Messidor's own scale) and ``Risk of macular edema`` (0-2).
* Messidor-2 with the adjudicated grades of Krause et al. 2018: ``messidor_data.csv`` with
  ``image_id``, ``adjudicated_dr_grade`` (0-4, ICDR), ``adjudicated_dme`` (0/1),
  ``adjudicated_gradable`` (0/1) (Kaggle ``google-brain/messidor2-dr-grades``). The Kaggle
  redistribution with preprocessed images (``mariaherrerot/messidor2preprocess``, images under
  ``messidor-2/messidor-2/preprocess/``) names the first two columns ``id_code`` (the image file name,
  ``20051020_43808_0100_PP.png``) and ``diagnosis`` (the same adjudicated ICDR grade); both spellings
  are read, with the same meaning.

Mappings (tables and sources in ``GRADES.md``):

* ICDR 0-4 (APTOS, EyePACS, Messidor-2) -> ``dr_grade`` unchanged.
* Messidor ``Retinopathy grade`` is **not** ICDR: it counts only microaneurysms (MA), haemorrhages (H)
  and neovessels (R0: MA = 0 and H = 0; R1: 1-5 MA, H = 0; R2: 6-14 MA or 1-4 H, no NV; R3: >= 15 MA or
  >= 5 H or NV). R3 spans ICDR 1-4 and R0 ignores exudates, cotton-wool spots and IRMA, so no ICDR
  grade is written. R1-R3 -> ``diagnosis = 'diabetic_retinopathy'`` (MA or H present is DR on any
  scale); R0 is left out (counted).
* Messidor ``Risk of macular edema`` -> ``dme_grade`` unchanged: 0 no visible hard exudates,
  1 exudates further than one disc diameter from the macula, 2 within one disc diameter; IDRiD's
  0-2 scale (vocab) uses the same definition.
* Messidor-2 ``adjudicated_dme`` 1 (hard exudates within 1 DD of the fovea) -> ``diagnosis =
  'diabetic_macular_oedema'``; 0 has no slot (left out, counted). Ungradable images are left out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Optional

from fundusexpert_plugin.core.record import FundusGenRecord
from fundusexpert_plugin.sources.base import SEE_TERMS, ConvertLog, FileIndex, NotRepresentable, RecordDraft, SourceInfo, attempt
from fundusexpert_plugin.core.tables import Table, parse_grade, read_table

APTOS = SourceInfo('APTOS 2019 Blindness Detection',
                   f'{SEE_TERMS} (Kaggle "APTOS 2019 Blindness Detection" competition rules)',
                   'APTOS 2019 Blindness Detection, Asia Pacific Tele-Ophthalmology Society and Aravind Eye '
                   'Hospital, Kaggle, 2019')
EYEPACS = SourceInfo('EyePACS (Kaggle Diabetic Retinopathy Detection)',
                     f'{SEE_TERMS} (Kaggle "Diabetic Retinopathy Detection" competition rules)',
                     'Kaggle Diabetic Retinopathy Detection, 2015; images by EyePACS (Cuadros J., Bresnick G., '
                     'J Diabetes Sci Technol 3(3):509-516, 2009)')
MESSIDOR = SourceInfo('Messidor', f'{SEE_TERMS} (ADCIS Messidor licence)',
                      'Decencière E. et al., "Feedback on a publicly distributed image database: the Messidor '
                      'database", Image Analysis & Stereology 33(3):231-234, 2014')
MESSIDOR2 = SourceInfo('Messidor-2 (adjudicated grades)', f'{SEE_TERMS} (ADCIS Messidor-2 licence; Kaggle)',
                       'Abramoff M.D. et al., JAMA Ophthalmol 131(3):351-357, 2013; Decencière E. et al., Image '
                       'Anal Stereol 33(3):231-234, 2014; grades: Krause J. et al., Ophthalmology '
                       '125(8):1264-1272, 2018')


def _rows(table: Table, images: FileIndex, lenient: bool, log: ConvertLog,
          convert: Callable[[str, list], Optional[FundusGenRecord]]) -> Iterator[FundusGenRecord]:
    """One record per table row through ``convert(where, cells)``; a bad row is skipped when ``lenient``."""
    for n, cells in table.rows:
        record = attempt(lambda: convert(table.where(n), cells), lenient=lenient, log=log, where=table.where(n))
        if record is not None:
            yield record


def read_aptos(images_dir: Path | str, csv_path: Path | str, *, lenient: bool = False,
               log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """APTOS 2019 ``train.csv`` -> records with ``dr_grade``.

    Raises:
        FileNotFoundError: the CSV or ``images_dir`` is missing.
        FundusDataError: a missing column (always), or a grade outside 0-4 or a missing image
            (file:line and column named) unless ``lenient``.
    """
    log = log if log is not None else ConvertLog()
    table, images = read_table(csv_path), FileIndex(images_dir)
    name, grade = table.column('id_code'), table.column('diagnosis')

    def convert(where, cells):
        draft = RecordDraft(cells[name], images.find(cells[name], where=where, field_name='id_code'), where=where,
                            lenient=lenient, log=log)
        draft.image_labels['dr_grade'] = str(parse_grade(cells[grade], range(5), where=where, column='diagnosis'))
        return draft.build(APTOS)
    return _rows(table, images, lenient, log, convert)


def read_eyepacs(images_dir: Path | str, csv_path: Path | str, *, lenient: bool = False,
                 log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """EyePACS ``trainLabels.csv`` -> records with ``dr_grade`` and laterality from the name.

    Raises:
        FileNotFoundError: the CSV or ``images_dir`` is missing.
        FundusDataError: as :func:`read_aptos` (columns ``image``, ``level``).
    """
    log = log if log is not None else ConvertLog()
    table, images = read_table(csv_path), FileIndex(images_dir)
    name, grade = table.column('image'), table.column('level')

    def convert(where, cells):
        draft = RecordDraft(cells[name], images.find(cells[name], where=where, field_name='image'), where=where,
                            lenient=lenient, log=log)
        draft.image_labels['dr_grade'] = str(parse_grade(cells[grade], range(5), where=where, column='level'))
        for side in ('left', 'right'):
            if cells[name].lower().endswith(f'_{side}'):
                draft.laterality, draft.laterality_source = side, 'label'
        return draft.build(EYEPACS)
    return _rows(table, images, lenient, log, convert)


def read_messidor(images_dir: Path | str, table_path: Path | str, *, lenient: bool = False,
                  log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """Messidor ``Annotation_Base<NN>.xls`` (as distributed, or a CSV/xlsx export) -> ``diagnosis`` and ``dme_grade``.

    Raises:
        FileNotFoundError: the table or ``images_dir`` is missing.
        FundusDataError: a missing column (always); a retinopathy grade outside 0-3, a macular-edema
            risk outside 0-2 or a missing image (file:row and column named) unless ``lenient``.
            Lenient: a bad grade cell is one skipped item and the row keeps its other label; a
            missing image (or no usable label) skips the row.
    """
    log = log if log is not None else ConvertLog()
    table, images = read_table(table_path), FileIndex(images_dir)
    name, dr = table.column('Image name'), table.column('Retinopathy grade')
    dme = table.column('Risk of macular edema', 'Risk of macular oedema')

    def convert(where, cells):
        draft = RecordDraft(Path(cells[name]).stem, images.find(cells[name], where=where, field_name='Image name'),
                            where=where, lenient=lenient, log=log)
        grade = draft.item(lambda: parse_grade(cells[dr], range(4), where=where, column=table.header[dr]))
        risk = draft.item(lambda: parse_grade(cells[dme], range(3), where=where, column=table.header[dme]))
        if risk is not None:
            draft.image_labels['dme_grade'] = str(risk)
        if grade:
            draft.image_labels['diagnosis'] = 'diabetic_retinopathy'
        elif grade == 0:
            log.note('Messidor retinopathy grade 0 (no MA, no H) is not ICDR 0: no DR label written', where)
        return draft.build(MESSIDOR)
    return _rows(table, images, lenient, log, convert)


def read_messidor2(images_dir: Path | str, csv_path: Path | str, *, lenient: bool = False,
                   log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """Messidor-2 ``messidor_data.csv`` (Krause et al. adjudication) -> ``dr_grade`` (+ DME diagnosis).

    Columns: ``image_id`` or ``id_code`` (image file name), ``adjudicated_dr_grade`` or ``diagnosis``
    (ICDR 0-4), ``adjudicated_dme`` (0/1), ``adjudicated_gradable`` (0/1); the ``id_code``/``diagnosis``
    spelling is that of the Kaggle ``messidor2preprocess`` redistribution (module docstring).

    Raises:
        FileNotFoundError: the CSV or ``images_dir`` is missing.
        FundusDataError: a missing column (always); a grade outside 0-4, DME or gradability outside
            0/1, or a missing image, unless ``lenient``. Lenient: a bad grade or DME cell is one
            skipped item and the row keeps its other label; a bad gradability cell or a missing
            image skips the row.
    """
    log = log if log is not None else ConvertLog()
    table, images = read_table(csv_path), FileIndex(images_dir)
    name, dr = table.column('image_id', 'id_code'), table.column('adjudicated_dr_grade', 'diagnosis')
    dme, gradable = table.column('adjudicated_dme'), table.column('adjudicated_gradable')

    def convert(where, cells):
        if parse_grade(cells[gradable], (0, 1), where=where, column='adjudicated_gradable') == 0:
            raise NotRepresentable('Messidor-2 adjudicated_gradable = 0 (ungradable): image left out')
        draft = RecordDraft(Path(cells[name]).stem, images.find(cells[name], where=where,
                                                                field_name=table.header[name]),
                            where=where, lenient=lenient, log=log)
        grade = draft.item(lambda: parse_grade(cells[dr], range(5), where=where, column=table.header[dr]))
        if grade is not None:
            draft.image_labels['dr_grade'] = str(grade)
        has_dme = draft.item(lambda: parse_grade(cells[dme], (0, 1), where=where, column='adjudicated_dme'))
        if has_dme:
            draft.image_labels['diagnosis'] = 'diabetic_macular_oedema'
        elif has_dme == 0:
            log.note('Messidor-2 adjudicated_dme = 0 ("no DME within 1 DD") has no slot: left out', where)
        return draft.build(MESSIDOR2)
    return _rows(table, images, lenient, log, convert)
