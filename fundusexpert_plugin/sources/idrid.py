"""Reader for the Indian Diabetic Retinopathy Image Dataset (IDRiD) as distributed on IEEE Dataport.

Layout read (Porwal et al., Data 3(3):25, 2018; folder and file names as in the archive)::

    B. Disease Grading/1. Original Images/a. Training Set/IDRiD_001.jpg ...   (413 + 103 test)
    B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv
        columns ``Image name`` (``IDRiD_001``), ``Retinopathy grade`` (0-4, ICDR),
        ``Risk of macular edema `` (0-2; the header ends with a space); trailing empty columns
    C. Localization/2. Groundtruths/1. Optic Disc Center Location/a. IDRiD_OD_Center_Training Set_Markups.csv
    C. Localization/2. Groundtruths/2. Fovea Center Location/a. IDRiD_Fovea_Center_Training Set_Markups.csv
        columns ``Image No``, ``X- Coordinate``, ``Y - Coordinate``: pixels of the 4288x2848 photo,
        origin top-left; the localization set uses the grading photographs and names
    A. Segmentation/1. Original Images/a. Training Set/IDRiD_01.jpg ...        (54 + 27 test)
    A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/1. Microaneurysms/IDRiD_01_MA.tif
        ``2. Haemorrhages/*_HE.tif``, ``3. Hard Exudates/*_EX.tif``, ``4. Soft Exudates/*_SE.tif``,
        ``5. Optic Disc/*_OD.tif``: lesion pixels non-zero (red), same size as the photo

Mapping (see ``GRADES.md``): ``Retinopathy grade`` -> ``dr_grade`` (ICDR, unchanged),
``Risk of macular edema`` -> ``dme_grade`` (IDRiD 0-2, unchanged); fovea centre -> a ``fovea`` box of
side 1 DD centred on it (:meth:`.base.RecordDraft.add_point`; DD = the disc-fovea distance / 2.51, the
prior's distance); optic-disc centre -> laterality and that DD only (the record's ``optic_disc`` is the
disc's extent, a centre point is not one; counted as left out).
Masks -> boxes with :func:`..masks.cluster_mask`; soft exudates are ``cotton_wool_spots``. IDRiD
provides a lesion mask only for images that show that lesion (e.g. 26 of 54 training images for
soft exudates), so a missing lesion mask means known absent; a missing optic-disc mask means unknown.

Licence: CC BY 4.0 (images and labels).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord
from fundusexpert_plugin.sources.base import (ConvertLog, FileIndex, MaskBoxParams, RecordDraft, SourceInfo, attempt, read_mask)
from fundusexpert_plugin.core.tables import parse_grade, parse_number, read_table

IDRID = SourceInfo(
    'IDRiD', 'CC BY 4.0 (Creative Commons Attribution 4.0 International)',
    'Porwal P. et al., "Indian Diabetic Retinopathy Image Dataset (IDRiD): A Database for Diabetic '
    'Retinopathy Screening Research", Data 3(3):25, 2018; IEEE Dataport, doi:10.21227/H25W98')
#: Mask file suffix -> finding id (IDRiD "HE" is haemorrhages, "SE" soft exudates = cotton-wool spots).
MASK_CLASSES = {'MA': 'microaneurysms', 'HE': 'haemorrhages', 'EX': 'hard_exudates',
                'SE': 'cotton_wool_spots', 'OD': 'optic_disc'}
MASK_EXTS = ('.tif', '.tiff', '.png', '.bmp')


def read_idrid_grading(images_dir: Path | str, *, grades_csv: Optional[Path | str] = None,
                       od_csv: Optional[Path | str] = None, fovea_csv: Optional[Path | str] = None,
                       lenient: bool = False, log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per image named in the grading and/or localization CSVs (merged by name).

    Args:
        images_dir: ``1. Original Images/a. Training Set`` (or the testing set).
        grades_csv: ``IDRiD_Disease Grading_*_Labels.csv`` -> ``dr_grade``, ``dme_grade``.
        od_csv: ``IDRiD_OD_Center_*_Markups.csv`` -> laterality.
        fovea_csv: ``IDRiD_Fovea_Center_*_Markups.csv`` -> ``fovea`` box (annotated).
        lenient: skip bad rows (messages in ``log.skipped``) instead of raising.
        log: receives skips and left-out labels.

    Raises:
        FileNotFoundError: a CSV or ``images_dir`` is missing.
        FundusDataError: a missing column or an image listed twice in one CSV (always); an unknown
            grade, non-numeric coordinate, point outside the image or missing image (file:line and
            column named), unless ``lenient``. Lenient: a bad grade cell or point is one skipped
            item and the image keeps its other labels; a missing or unreadable image skips the record.
        ValueError: no CSV given.
    """
    if not (grades_csv or od_csv or fovea_csv):
        raise ValueError('read_idrid_grading needs at least one of grades_csv, od_csv, fovea_csv')
    log = log if log is not None else ConvertLog()
    images = FileIndex(images_dir)
    per_image: Dict[str, Dict[str, Tuple[str, List[str], Tuple[str, ...]]]] = {}
    for kind, path, columns in (('grade', grades_csv, ('Image name', 'Retinopathy grade', 'Risk of macular edema')),
                                ('od', od_csv, ('Image No', 'X- Coordinate', 'Y - Coordinate')),
                                ('fovea', fovea_csv, ('Image No', 'X- Coordinate', 'Y - Coordinate'))):
        if not path:
            continue
        table = read_table(path)
        idx = [table.column(columns[0], 'Image name', 'Image No')] + [table.column(c) for c in columns[1:]]
        names = tuple(table.header[i] for i in idx)
        for n, cells in table.rows:
            entry = per_image.setdefault(cells[idx[0]], {})
            if kind in entry:
                raise FundusDataError(f'{table.where(n)}: image {cells[idx[0]]!r} listed twice '
                                      f'(also {entry[kind][0]})')
            entry[kind] = (table.where(n), [cells[i] for i in idx], names)
    for name, entry in per_image.items():
        where = next(iter(entry.values()))[0]
        record = attempt(lambda: _grading_record(name, entry, images, lenient, log), lenient=lenient, log=log,
                         where=where)
        if record is not None:
            yield record


def _grading_record(name: str, entry: dict, images: FileIndex, lenient: bool, log: ConvertLog) -> FundusGenRecord:
    where = next(iter(entry.values()))[0]
    draft = RecordDraft(name, images.find(name, where=where, field_name='Image name'), where=where,
                        lenient=lenient, log=log)
    if 'grade' in entry:
        gwhere, cells, cols = entry['grade']
        for i, key, allowed in ((1, 'dr_grade', range(5)), (2, 'dme_grade', range(3))):
            grade = draft.item(lambda i=i, allowed=allowed: parse_grade(cells[i], allowed, where=gwhere,
                                                                        column=cols[i]), where=gwhere)
            if grade is not None:
                draft.image_labels[key] = str(grade)
    points = {}
    for kind in ('od', 'fovea'):
        if kind in entry:
            pwhere, cells, cols = entry[kind]
            point = draft.item(lambda cells=cells, pwhere=pwhere, cols=cols: (
                parse_number(cells[1], where=pwhere, column=cols[1]),
                parse_number(cells[2], where=pwhere, column=cols[2])), where=pwhere)
            if point is not None:
                points[kind] = (*point, pwhere, cols)
    if 'fovea' in points:
        x, y, pwhere, cols = points['fovea']

        def fovea():
            draft.add_point('fovea', x, y, field_name=f'{cols[1]}/{cols[2]}', where=pwhere)
            draft.annotate('fovea')
            return True
        if not draft.item(fovea, where=pwhere):
            del points['fovea']  # skipped: laterality falls back to the image centre
    if 'od' in points:
        x, y, pwhere, cols = points['od']

        def disc():
            if not (0 <= x <= draft.width and 0 <= y <= draft.height):
                raise FundusDataError(f'{pwhere}: {cols[1]}/{cols[2]} = ({x}, {y}): outside the '
                                      f'{draft.width}x{draft.height} px image', reason='point_outside_image')
            draft.infer_laterality(disc_x=x, fovea_x=points['fovea'][0] if 'fovea' in points else None)
            draft.disc_centre_px = (x, y)
            log.note('IDRiD optic-disc centre point: used for laterality and the fovea box size only '
                     '(no disc extent)', pwhere)
        draft.item(disc, where=pwhere)
    return draft.build(IDRID)


def read_idrid_segmentation(images_dir: Path | str, masks_dir: Path | str, *,
                            params: MaskBoxParams = MaskBoxParams(), lenient: bool = False,
                            log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per photograph of the segmentation set, boxes from its masks.

    Args:
        images_dir: ``A. Segmentation/1. Original Images/a. Training Set`` (or testing).
        masks_dir: ``2. All Segmentation Groundtruths/a. Training Set`` (searched recursively for
            ``<image>_<MA|HE|EX|SE|OD>.tif``).
        params: mask -> box clustering parameters.

    Raises:
        FileNotFoundError: a folder is missing.
        FundusDataError: an unreadable or wrongly sized mask, or two masks for one image and class
            (image and mask files named), or an unreadable image, unless ``lenient``. Lenient: a bad
            mask is one skipped item, its class is left unannotated for that image (neither present
            nor known absent) and the boxes of the image's other masks are kept; an unusable image
            skips the record.

    A lesion class without a mask for any image under ``masks_dir`` (its folder not downloaded, or
    ``masks_dir`` one class folder) is left unknown for every image, with one warning: only a class
    the set ships is known absent where its mask is missing.
    """
    log = log if log is not None else ConvertLog()
    masks: Dict[Tuple[str, str], List[Path]] = {}
    for path in FileIndex(masks_dir, exts=MASK_EXTS).paths():
        m = re.match(r'(.+)_(MA|HE|EX|SE|OD)$', path.stem)
        if not m:
            log.note('IDRiD mask folder: file not named <image>_<MA|HE|EX|SE|OD>; ignored', str(path))
            continue
        if (m.group(1), m.group(2)) in masks and not lenient:
            raise FundusDataError(f'{path}: second {m.group(2)} mask for {m.group(1)} '
                                  f'(also {masks[(m.group(1), m.group(2))][0]})')
        masks.setdefault((m.group(1), m.group(2)), []).append(path)
    shipped = {code for _, code in masks}  # classes with a mask for some image: the rest were not downloaded
    for code in sorted(set(MASK_CLASSES) - shipped - {'OD'}):
        log.warn(f'{masks_dir}: no {code} mask for any image; {MASK_CLASSES[code]} left unknown, not absent '
                 '(its folder is missing from the download?)')
    for image in FileIndex(images_dir).paths():
        record = attempt(lambda: _segmentation_record(image, masks, params, lenient, log, shipped), lenient=lenient,
                         log=log, where=str(image))
        if record is not None:
            yield record


def _segmentation_record(image: Path, masks: Dict[Tuple[str, str], List[Path]], params: MaskBoxParams,
                         lenient: bool, log: ConvertLog, shipped: Set[str]) -> FundusGenRecord:
    draft = RecordDraft(image.stem, image, where=str(image), lenient=lenient, log=log)
    for code, label in MASK_CLASSES.items():
        paths = masks.get((image.stem, code))
        if not paths:
            if code == 'OD':
                log.note('IDRiD: no optic-disc mask for the image; optic_disc unknown', str(image))
            elif code in shipped:
                draft.annotate(label)  # IDRiD gives a lesion mask only where the lesion is present
            continue

        def add(code=code, label=label, paths=paths):
            if len(paths) > 1:
                raise FundusDataError(f'{image}: {code} mask: {len(paths)} files for one class: '
                                      f'{[str(p) for p in paths]}', reason='mask_ambiguous')
            mask = read_mask(paths[0], (draft.height, draft.width), where=str(image), field_name=f'{code} mask')
            draft.add_mask(label, mask > 0, params, log, largest_only=code == 'OD')
        draft.item(add)
    draft.infer_laterality()
    return draft.build(IDRID)
