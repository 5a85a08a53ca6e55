"""Reader for DDR (Nankai OIA-DDR, github.com/nkicsl/DDR-dataset): grades, lesion masks, lesion boxes.

Layout read (as distributed; Li T. et al., Information Sciences 501:511-522, 2019)::

    DR_grading/train/007-0004-000.jpg ...  and  DR_grading/train.txt (also valid, test)
        one line per image: ``<file name> <grade>``, grade 0-4 (ICDR) or 5 (ungradable)
    lesion_segmentation/train/image/<name>.jpg
    lesion_segmentation/train/label/{EX,HE,MA,SE}/<name>.tif   lesion pixels non-zero
    lesion_detection/train/<name>.jpg + <name>.xml             PASCAL VOC boxes, classes EX/HE/MA/SE

Mapping (see ``GRADES.md``): grade 0-4 -> ``dr_grade`` unchanged; grade 5 (ungradable) has no slot:
the image is left out and counted. EX -> ``hard_exudates``, HE -> ``haemorrhages``, MA ->
``microaneurysms``, SE (soft exudates) -> ``cotton_wool_spots``; all four are annotated
exhaustively in the segmentation and detection subsets. A missing mask file means unknown (counted).
VOC boxes are read as the VOC devkit defines them, 1-based inclusive pixel indices:
``box_px = (xmin - 1, ymin - 1, xmax, ymax)``; a 0 written by a 0-based tool is clipped to 0 (at most
1 px off either way).

Licence: not stated here with certainty; see the dataset's terms (github.com/nkicsl/DDR-dataset).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional
from xml.etree import ElementTree

from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord
from fundusexpert_plugin.sources.base import (SEE_TERMS, ConvertLog, FileIndex, check_annotations_matched, MaskBoxParams, NotRepresentable, RecordDraft,
                   SourceInfo, attempt, read_mask)
from fundusexpert_plugin.core.tables import parse_grade, parse_number, read_table

DDR = SourceInfo('DDR (Nankai OIA-DDR)', f'{SEE_TERMS} (github.com/nkicsl/DDR-dataset)',
                 'Li T., Gao Y., Wang K., Guo S., Liu H., Kang H., "Diagnostic assessment of deep learning '
                 'algorithms for diabetic retinopathy screening", Information Sciences 501:511-522, 2019')
LESIONS = {'EX': 'hard_exudates', 'HE': 'haemorrhages', 'MA': 'microaneurysms', 'SE': 'cotton_wool_spots'}
UNGRADABLE = 5


def read_ddr_grading(images_dir: Path | str, grades_txt: Path | str, *, lenient: bool = False,
                     log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per line of ``train.txt``/``valid.txt``/``test.txt`` with ``dr_grade``.

    Raises:
        FileNotFoundError: the txt file or ``images_dir`` is missing.
        FundusDataError: a line without two fields, a grade outside 0-5, or a missing image
            (file:line named), unless ``lenient``.
    """
    log = log if log is not None else ConvertLog()
    images = FileIndex(images_dir)
    table = read_table(grades_txt, delimiter=' ', header=False)
    for n, cells in table.rows:
        record = attempt(lambda: _grade_record(table.where(n), cells, images, lenient, log), lenient=lenient,
                         log=log, where=table.where(n))
        if record is not None:
            yield record


def _grade_record(where: str, cells: list, images: FileIndex, lenient: bool, log: ConvertLog) -> FundusGenRecord:
    fields = [c for c in cells if c]
    if len(fields) != 2:
        raise FundusDataError(f'{where}: {" ".join(fields)!r}: expected "<image file> <grade>"')
    grade = parse_grade(fields[1], range(6), where=where, column='grade')
    if grade == UNGRADABLE:
        raise NotRepresentable('DDR grade 5 (ungradable): no dr_grade slot; image left out')
    draft = RecordDraft(Path(fields[0]).stem, images.find(fields[0], where=where, field_name='image'),
                        where=where, lenient=lenient, log=log)
    draft.image_labels['dr_grade'] = str(grade)
    return draft.build(DDR)


def read_ddr_segmentation(images_dir: Path | str, labels_dir: Path | str, *,
                          params: MaskBoxParams = MaskBoxParams(), lenient: bool = False,
                          log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per image of ``lesion_segmentation/<split>/image`` with boxes from its masks.

    Args:
        images_dir: ``lesion_segmentation/train/image``.
        labels_dir: ``lesion_segmentation/train/label`` holding ``EX``, ``HE``, ``MA``, ``SE``.

    Raises:
        FileNotFoundError: a folder is missing.
        FundusDataError: an unreadable or wrongly sized mask (image and mask file named), or an
            unreadable image, unless ``lenient``. Lenient: a bad mask is one skipped item and its
            class is left unannotated for that image (the other masks' boxes are kept); an unusable
            image skips the record.
    """
    log = log if log is not None else ConvertLog()
    labels_dir = Path(labels_dir)
    indexes = {code: FileIndex(labels_dir / code, exts=('.tif', '.tiff', '.png', '.bmp'))
               for code in LESIONS if (labels_dir / code).is_dir()}
    if not indexes:
        raise FileNotFoundError(f'no lesion folder {sorted(LESIONS)} under {labels_dir}')
    photos = FileIndex(images_dir).paths()
    for image in photos:
        def convert(image=image):
            draft = RecordDraft(image.stem, image, where=str(image), lenient=lenient, log=log)
            for code, label in LESIONS.items():
                path = indexes[code].find(image.stem, where=str(image), field_name=f'{code} mask',
                                          required=False) if code in indexes else None
                if path is None:
                    log.note(f'DDR: no {code} mask for the image; {label} unknown', str(image))
                    continue
                draft.item(lambda code=code, label=label, path=path: draft.add_mask(
                    label, read_mask(path, (draft.height, draft.width), where=str(image),
                                     field_name=f'{code} mask') > 0, params, log))
            return draft.build(DDR)
        record = attempt(convert, lenient=lenient, log=log, where=str(image))
        if record is not None:
            yield record
    for code, index in indexes.items():
        check_annotations_matched(index, photos, f'DDR {code} mask', lenient=lenient, log=log)


def read_ddr_detection(images_dir: Path | str, xml_dir: Path | str, *, lenient: bool = False,
                       log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per VOC XML file of ``lesion_detection`` (image found by XML name or stem).

    Raises:
        FileNotFoundError: a folder is missing.
        FundusDataError: unparsable XML, an unknown class, a missing ``bndbox``, a non-numeric
            coordinate, a box outside the image, a size that differs from the image, or a missing
            image (XML file and ``object[i]`` named), unless ``lenient``. Lenient: a bad ``<object>``
            is one skipped box and the record keeps its other boxes; a known class with a skipped
            box is left unannotated for that image (its absence is not known); unparsable XML, a
            wrong size or an unusable image skips the record.
    """
    log = log if log is not None else ConvertLog()
    images = FileIndex(images_dir)
    for xml_path in FileIndex(xml_dir, exts=('.xml',)).paths():
        record = attempt(lambda: _voc_record(xml_path, images, lenient, log), lenient=lenient, log=log,
                         where=str(xml_path))
        if record is not None:
            yield record


def _voc_record(xml_path: Path, images: FileIndex, lenient: bool, log: ConvertLog) -> FundusGenRecord:
    where = str(xml_path)
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as exc:
        raise FundusDataError(f'{where}: not valid XML ({exc})') from None
    name = (root.findtext('filename') or '').strip()
    image = images.find(name, where=where, field_name='filename', required=False) if name else None
    image = image or images.find(xml_path.stem, where=where, field_name='image (XML stem)')
    draft = RecordDraft(xml_path.stem, image, where=where, lenient=lenient, log=log)
    size = root.find('size')
    if size is not None and size.findtext('width'):
        w = parse_number(size.findtext('width'), where=where, column='size/width')
        h = parse_number(size.findtext('height') or '', where=where, column='size/height')
        if (int(w), int(h)) != (draft.width, draft.height):
            raise FundusDataError(f'{where}: size = {int(w)}x{int(h)} but image {image} is '
                                  f'{draft.width}x{draft.height} px')
    for i, obj in enumerate(root.findall('object')):
        code = (obj.findtext('name') or '').strip().upper()
        # a skipped box leaves its class unannotated (RecordDraft.item): an unknown name that reads as
        # a finding ('hemorrhage') that class, any other unknown name every class (README, odd inputs)
        draft.item(lambda i=i, obj=obj: _voc_object(draft, where, i, obj), label=LESIONS.get(code, code))
    for label in LESIONS.values():
        draft.annotate(label)
    return draft.build(DDR)


def _voc_object(draft: RecordDraft, where: str, i: int, obj) -> str:
    """Add the box of ``<object>`` number ``i``; returns its finding id.

    Raises:
        FundusDataError: unknown class (reason ``unknown_label``), no ``bndbox``
            (``box_not_numbers``), a non-numeric coordinate (``box_not_numbers``) or a box that
            :meth:`RecordDraft.add_box` refuses.
    """
    field = f'object[{i}]'
    code = (obj.findtext('name') or '').strip()
    if code.upper() not in LESIONS:
        raise FundusDataError(f'{where}: {field}/name = {code!r}: unknown DDR class; expected one of '
                              f'{sorted(LESIONS)}', reason='unknown_label')
    box = obj.find('bndbox')
    if box is None:
        raise FundusDataError(f'{where}: {field}: no bndbox', reason='box_not_numbers')
    try:
        x1, y1, x2, y2 = [parse_number(box.findtext(k) or '', where=where, column=f'{field}/bndbox/{k}')
                          for k in ('xmin', 'ymin', 'xmax', 'ymax')]
    except FundusDataError as exc:
        raise FundusDataError(str(exc), reason='box_not_numbers') from None
    draft.add_box(LESIONS[code.upper()], (x1 - 1, y1 - 1, x2, y2), field_name=f'{field}/bndbox')
    return LESIONS[code.upper()]
