"""Readers for glaucoma sets with optic disc/cup masks: REFUGE (2018) and Drishti-GS1.

REFUGE layout read (refuge.grand-challenge.org archives; Orlando et al., MedIA 59:101570, 2020)::

    REFUGE-Training400/Training400/{Glaucoma,Non-Glaucoma}/g0001.jpg, n0001.jpg
    Annotation-Training400/Disc_Cup_Masks/{Glaucoma,Non-Glaucoma}/g0001.bmp
    Annotation-Training400/Fovea_location.xlsx          ID, ImgName, Fovea_X, Fovea_Y
    REFUGE-Validation400/V0001.jpg ; REFUGE-Validation400-GT/Disc_Cup_Masks/V0001.bmp,
        REFUGE-Validation400-GT/Fovea_locations.xlsx
    REFUGE-Test400/T0001.jpg ; REFUGE-Test-GT/Disc_Cup_Masks/{G,N}/T0001.bmp,
        REFUGE-Test-GT/Glaucoma_label_and_Fovea_location.xlsx   ImgName, Fovea_X, Fovea_Y, Label(Glaucoma=1)

    Masks: 255 background, 128 disc rim, 0 cup (the disc includes the cup). Disc = value <= 150,
    cup = value <= 100 (thresholds of the Idiap bob.ip.binseg REFUGE loader, robust to resampling).
    Fovea in pixels of the photograph, origin top-left.

Drishti-GS1 layout read (Sivaswamy et al., ISBI 2014 and JSM Biomed Imaging Data Pap 2(1):1004, 2015)::

    Drishti-GS1_files/Training/Images/drishtiGS_002.png
    Drishti-GS1_files/Training/GT/drishtiGS_002/SoftMap/drishtiGS_002_ODsegSoftmap.png
                                                       .../drishtiGS_002_cupsegSoftmap.png
    Drishti-GS1_files/Test/Images/... and Test/Test_GT/<name>/SoftMap/...

    Soft maps hold the share of the four experts who marked a pixel (0-255); foreground is
    ``>= softmap_min`` (default 127: at least two of four experts, whichever way 2/4 * 255 was rounded).

    Drishti-GS1_files/Drishti-GS1_diagnosis.xlsx: title rows above the header (found by its
    ``Drishti-GS File`` column), a sub-header row without image names (skipped), image names in
    quote characters (``'drishtiGS_002'``, stripped) and the experts' decision in ``Total``
    (``Glaucomatous`` / ``Normal``), as public code that reads the sheet does.

Mapping (``GRADES.md``): glaucoma (REFUGE label 1, folder ``Glaucoma``/``G``, name prefix ``g``;
Drishti-GS ``Glaucomatous``) -> ``diagnosis = 'glaucoma'``; non-glaucoma has no slot (no "not
glaucoma" label; "normal" would claim more) and is left out, counted. Disc/cup -> ``optic_disc``/
``optic_cup`` boxes (largest cluster, both annotated exhaustively); fovea -> ``fovea`` box.
REFUGE photos are macula-centred: laterality from the disc against the fovea. Drishti-GS photos are
disc-centred, so no laterality is inferred.

Licences: not restated here; see the datasets' terms (REFUGE challenge; IIIT Hyderabad Drishti-GS).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple

from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord
from fundusexpert_plugin.sources.base import (SEE_TERMS, ConvertLog, FileIndex, check_annotations_matched, MaskBoxParams, RecordDraft, SourceInfo, attempt,
                   read_mask)
from fundusexpert_plugin.sources.tables import ImageRow, read_image_table

REFUGE = SourceInfo('REFUGE (Retinal Fundus Glaucoma Challenge, 2018)', f'{SEE_TERMS} (refuge.grand-challenge.org)',
                    'Orlando J.I. et al., "REFUGE Challenge: A unified framework for evaluating automated methods '
                    'for glaucoma assessment from fundus photographs", Medical Image Analysis 59:101570, 2020')
DRISHTI = SourceInfo('Drishti-GS1', f'{SEE_TERMS} (IIIT Hyderabad, cvit.iiit.ac.in)',
                     'Sivaswamy J. et al., "Drishti-GS: Retinal image dataset for optic nerve head (ONH) '
                     'segmentation", IEEE ISBI 2014, 53-56; Sivaswamy J. et al., JSM Biomedical Imaging Data '
                     'Papers 2(1):1004, 2015')
REFUGE_DISC_MAX, REFUGE_CUP_MAX = 150, 100
GLAUCOMA_VALUES = {'1': True, '1.0': True, 'glaucoma': True, 'glaucomatous': True,
                   '0': False, '0.0': False, 'normal': False, 'nonglaucoma': False, 'non-glaucoma': False}
GLAUCOMA_FOLDERS = {'glaucoma': True, 'g': True, 'non-glaucoma': False, 'nonglaucoma': False, 'n': False}


def merge_tables(paths: Sequence[Path | str], *, label_columns: Sequence[str]) -> Dict[str, ImageRow]:
    """Per-image rows of several tables (label from one, fovea from another), keyed by stem.

    Raises:
        FundusDataError: two tables give the same image a label, or a fovea (both rows named).
    """
    merged: Dict[str, ImageRow] = {}
    for path in paths:
        for key, row in read_image_table(path, label_columns=label_columns).items():
            if key not in merged:
                merged[key] = row
                continue
            old = merged[key]
            for attr in ('label', 'fovea_x'):
                if getattr(row, attr) not in (None, '') and getattr(old, attr) not in (None, ''):
                    raise FundusDataError(f'{row.where}: {attr} of {row.name!r} given twice (also {old.where})')
            if row.label not in (None, ''):
                old.label, old.columns = row.label, (row.columns[0],) + old.columns[1:]
            if row.fovea_x not in (None, ''):
                old.fovea_x, old.fovea_y, old.where = row.fovea_x, row.fovea_y, row.where
                old.columns = (old.columns[0],) + row.columns[1:]
    return merged


def check_rows_have_images(rows: Dict[str, ImageRow], images: FileIndex, *, lenient: bool, log: ConvertLog) -> None:
    """Every table row must name a photograph of ``images`` (matched by stem, case-sensitively, as
    the records are): a row that names none would lose its label or fovea without a word.

    Raises:
        FundusDataError: ``<table>:<row>: <image column> = 'v0001.jpg': no photograph of that name
            under <folder>`` (with the photograph whose name differs only in case, when there is one;
            reason ``image_missing``), unless ``lenient``: then each such row is a skipped record, counted.
    """
    stems = {p.stem for p in images.paths()}
    by_case = {}
    for stem in stems:
        by_case.setdefault(stem.lower(), []).append(stem)
    for key, row in rows.items():
        if key in stems:
            continue
        near = by_case.get(key.lower(), [])
        hint = f" (a photograph differs only in case: {near[0]!r})" if len(near) == 1 else ''
        message = (f'{row.where}: {row.image_column} = {row.name!r}: no photograph of that name under '
                   f'{images.folder}{hint}')
        if not lenient:
            raise FundusDataError(message, reason='image_missing')
        log.skip(message, 'image_missing')


def _glaucoma(row: Optional[ImageRow], paths: Sequence[Path], where: str) -> Optional[bool]:
    if row is not None and row.label not in (None, ''):
        value = GLAUCOMA_VALUES.get(row.label.strip().lower())
        if value is None:
            raise FundusDataError(f'{row.where}: column {row.columns[0]!r} = {row.label!r}: unknown glaucoma '
                                  f'label; expected one of {sorted(GLAUCOMA_VALUES)}', reason='unknown_label')
        return value
    for path in paths:
        if path.parent.name.lower() in GLAUCOMA_FOLDERS:
            return GLAUCOMA_FOLDERS[path.parent.name.lower()]
    stem = paths[0].stem
    if stem[:1] in ('g', 'n') and stem[1:].isdigit():
        return stem[0] == 'g'
    return None


def _set_glaucoma(draft: RecordDraft, value: Optional[bool], log: ConvertLog, dataset: str) -> None:
    if value:
        draft.image_labels['diagnosis'] = 'glaucoma'
    elif value is False:
        log.note(f'{dataset} non-glaucoma label: no "not glaucoma" slot; label left out', draft.where)


def add_fovea(draft: RecordDraft, row: ImageRow) -> Optional[Tuple[float, float]]:
    """The fovea of a per-image table row as an annotated ``fovea`` box; returns ``(x, y)`` pixels.

    Returns:
        ``None`` when the row gives no fovea (empty cells, or iChallenge's ``(0, 0)``).

    Raises:
        FundusDataError: a non-numeric cell or a point outside the image (row and columns named).
    """
    fovea = row.fovea()
    if fovea:
        draft.add_point('fovea', *fovea, field_name=f'{row.columns[1]}/{row.columns[2]}', where=row.where)
        draft.annotate('fovea')
    return fovea


def read_refuge(images_dir: Path | str, masks_dir: Optional[Path | str] = None, *,
                tables: Sequence[Path | str] = (), params: MaskBoxParams = MaskBoxParams(),
                lenient: bool = False, log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per REFUGE photograph under ``images_dir`` (recursive).

    Args:
        images_dir: ``Training400``, ``REFUGE-Validation400`` or ``REFUGE-Test400``.
        masks_dir: ``Disc_Cup_Masks`` (searched recursively for ``<image stem>.bmp``).
        tables: ``Fovea_location.xlsx``, ``Glaucoma_label_and_Fovea_location.xlsx`` ... (CSV or xlsx).
        params: mask -> box clustering parameters.

    Raises:
        FileNotFoundError: a folder or table is missing.
        FundusDataError: a table names an image twice (always); a table row names no photograph
            (:func:`check_rows_have_images`), unreadable/missized mask, unknown
            label, bad fovea cell or fovea outside the image (file, row and column named), or an
            unreadable image, unless ``lenient``. Lenient: the bad mask, label or fovea is one
            skipped item and the image keeps its other labels and boxes (a skipped mask leaves
            optic disc and cup unannotated); an unusable image skips the record.
    """
    log = log if log is not None else ConvertLog()
    rows = merge_tables(tables, label_columns=('Glaucoma Label', 'label'))
    masks = FileIndex(masks_dir, exts=('.bmp', '.png', '.tif')) if masks_dir else None
    photos = FileIndex(images_dir)
    check_rows_have_images(rows, photos, lenient=lenient, log=log)
    for image in photos.paths():
        def convert(image=image):
            row = rows.get(image.stem)
            draft = RecordDraft(image.stem, image, where=row.where if row else str(image), lenient=lenient, log=log)
            mask_path = masks.find(image.stem, where=str(image), field_name='disc/cup mask',
                                   required=False) if masks else None
            draft.item(lambda: _set_glaucoma(draft, _glaucoma(row, [p for p in (image, mask_path) if p], draft.where),
                                             log, 'REFUGE'))
            if mask_path is not None:
                def disc_cup():
                    mask = read_mask(mask_path, (draft.height, draft.width), where=str(image),
                                     field_name='disc/cup mask')
                    draft.add_mask('optic_disc', mask <= REFUGE_DISC_MAX, params, log, largest_only=True)
                    draft.add_mask('optic_cup', mask <= REFUGE_CUP_MAX, params, log, largest_only=True)
                draft.item(disc_cup, where=str(image))
            elif masks is not None:
                log.note('REFUGE: no disc/cup mask for the image; optic_disc/optic_cup unknown', str(image))
            fovea = draft.item(lambda: add_fovea(draft, row)) if row else None
            draft.infer_laterality(fovea_x=fovea[0] if fovea else None)
            return draft.build(REFUGE)
        record = attempt(convert, lenient=lenient, log=log, where=str(image))
        if record is not None:
            yield record
    if masks is not None:
        check_annotations_matched(masks, photos.paths(), 'disc/cup mask', lenient=lenient, log=log)


def read_drishti(images_dir: Path | str, gt_dir: Optional[Path | str] = None, *,
                 labels_table: Optional[Path | str] = None, softmap_min: int = 127,
                 params: MaskBoxParams = MaskBoxParams(), lenient: bool = False,
                 log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per Drishti-GS1 photograph (``Training/Images`` or ``Test/Images``).

    Args:
        images_dir: ``Drishti-GS1_files/Training/Images``.
        gt_dir: ``Training/GT`` or ``Test/Test_GT`` (searched for ``<name>_ODsegSoftmap.png`` and
            ``<name>_cupsegSoftmap.png``).
        labels_table: optional CSV/xlsx with an image column and a ``Total``/``Glaucoma``/``Label``/
            ``Diagnosis`` column holding ``Glaucomatous``/``Normal`` (or 1/0): the published
            ``Drishti-GS1_diagnosis.xlsx`` (module docstring) or a table of one's own.
        softmap_min: soft-map grey value (0-255) at or above which a pixel is disc/cup.

    Raises:
        FileNotFoundError: a folder or the table is missing.
        FundusDataError: unreadable/missized soft map or unknown label (file named), or an
            unreadable image, unless ``lenient``. Lenient: the bad soft map or label is one skipped
            item (its class left unannotated) and the image keeps the rest; an unusable image skips
            the record.
    """
    log = log if log is not None else ConvertLog()
    rows = read_image_table(labels_table, label_columns=('Total', 'Glaucoma', 'Label', 'Diagnosis', 'Class'),
                            x_columns=(), y_columns=(), skip_rows_without_image=True) if labels_table else {}
    maps = FileIndex(gt_dir, exts=('.png', '.bmp', '.tif')) if gt_dir else None
    for image in FileIndex(images_dir).paths():
        def convert(image=image):
            row = rows.get(image.stem)
            draft = RecordDraft(image.stem, image, where=row.where if row else str(image), lenient=lenient, log=log)
            if row is not None:
                draft.item(lambda: _set_glaucoma(draft, _glaucoma(row, [image], draft.where), log, 'Drishti-GS'))
            for label, suffix in (('optic_disc', 'ODsegSoftmap'), ('optic_cup', 'cupsegSoftmap')):
                path = maps.find(f'{image.stem}_{suffix}', where=str(image), field_name=f'{suffix} soft map',
                                 required=False) if maps else None
                if path is None:
                    if maps is not None:
                        log.note(f'Drishti-GS: no {suffix} soft map; {label} unknown', str(image))
                    continue
                draft.item(lambda label=label, suffix=suffix, path=path: draft.add_mask(
                    label, read_mask(path, (draft.height, draft.width), where=str(image),
                                     field_name=f'{suffix} soft map') >= softmap_min,
                    params, log, largest_only=True), where=str(image))
            return draft.build(DRISHTI)
        record = attempt(convert, lenient=lenient, log=log, where=str(image))
        if record is not None:
            yield record
