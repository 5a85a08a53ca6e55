"""Reader for e-ophtha (ADCIS / OPHDIAT): e_ophtha_EX (exudates) and e_ophtha_MA (microaneurysms).

Layout read (as distributed by ADCIS; Decencière et al., IRBM 34(2):196-203, 2013)::

    e_optha_EX/EX/<exam folder>/<name>.jpg                 47 photos with exudates
    e_optha_EX/Annotation_EX/<exam folder>/<name>_EX.png   exudate pixels non-zero
    e_optha_EX/healthy/<exam folder>/<name>.jpg            35 photos without lesion
    e_optha_MA/MA/..., e_optha_MA/Annotation_MA/..., e_optha_MA/healthy/...   (148 + 233)

Annotations are matched to photos by name (``<name>.png`` or ``<name>_<letters>.png``, any exam folder).

Mapping (``GRADES.md``): EX -> ``hard_exudates``, MA -> ``microaneurysms``, each annotated exhaustively
(the photo's only annotated class); ``healthy`` photos carry no box, i.e. known absent. The MA set's
description counts "microaneurysms or small haemorrhages", so some ``microaneurysms`` boxes may
enclose small haemorrhages. Note that microaneurysms are a few pixels wide: with the official
clustering defaults (area > 100 px^2) most are filtered out, and the class is then left unannotated
for that photo (counted); lower ``area_threshold_px2`` / ``min_samples`` to keep them.

Licence: not restated here; see the dataset's terms (ADCIS e-ophtha).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from fundusexpert_plugin.core.record import FundusGenRecord
from fundusexpert_plugin.sources.base import (SEE_TERMS, ConvertLog, FileIndex, check_annotations_matched, MaskBoxParams, RecordDraft, SourceInfo, attempt,
                   read_mask)

EOPHTHA = SourceInfo('e-ophtha', f'{SEE_TERMS} (ADCIS, www.adcis.net e-ophtha)',
                     'Decencière E. et al., "TeleOphta: Machine learning and image processing methods for '
                     'teleophthalmology", IRBM 34(2):196-203, 2013')
LESIONS = {'EX': 'hard_exudates', 'MA': 'microaneurysms'}


def read_eophtha(root: Path | str, lesion: str, *, params: MaskBoxParams = MaskBoxParams(),
                 lenient: bool = False, log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per photo of ``<root>/<lesion>`` (boxes) and ``<root>/healthy`` (known absent).

    Args:
        root: the ``e_optha_EX`` or ``e_optha_MA`` folder.
        lesion: ``'EX'`` or ``'MA'``.
        params: mask -> box clustering parameters.

    Raises:
        ValueError: unknown ``lesion``.
        FileNotFoundError: ``<root>/<lesion>`` or ``<root>/Annotation_<lesion>`` is missing.
        FundusDataError: a lesion photo without annotation, or an unreadable/missized annotation,
            or an unreadable photo (photo and mask file named), unless ``lenient``. Lenient: the
            record is skipped, as its one mask is all it has.
    """
    lesion = lesion.upper()
    if lesion not in LESIONS:
        raise ValueError(f'unknown e-ophtha lesion {lesion!r}; expected one of {sorted(LESIONS)}')
    log = log if log is not None else ConvertLog()
    root, label = Path(root), LESIONS[lesion]
    annotations = FileIndex(root / f'Annotation_{lesion}', exts=('.png', '.tif', '.bmp'), suffixed=True,
                              missing_reason='mask_missing')
    groups = [(p, True) for p in FileIndex(root / lesion).paths()]
    if (root / 'healthy').is_dir():
        groups += [(p, False) for p in FileIndex(root / 'healthy').paths()]
    for image, has_lesion in groups:
        def convert(image=image, has_lesion=has_lesion):
            draft = RecordDraft(image.stem, image, where=str(image), lenient=lenient, log=log)
            if has_lesion:
                path = annotations.find(image.stem, where=str(image), field_name=f'Annotation_{lesion}')
                mask = read_mask(path, (draft.height, draft.width), where=str(image), field_name=f'{lesion} mask')
                draft.add_mask(label, mask > 0, params, log)
            else:
                draft.annotate(label)
            return draft.build(EOPHTHA)
        record = attempt(convert, lenient=lenient, log=log, where=str(image))
        if record is not None:
            yield record
    check_annotations_matched(annotations, [p for p, _ in groups], f'Annotation_{lesion} mask', lenient=lenient,
                              log=log)
