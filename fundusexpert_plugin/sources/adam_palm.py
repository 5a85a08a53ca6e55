"""Readers for the Baidu iChallenge sets ADAM (AMD) and PALM (pathological myopia).

Layouts read (as distributed by the challenges, amd.grand-challenge.org and palm.grand-challenge.org)::

    ADAM  Training400/{AMD,Non-AMD}/A0001.jpg, N0001.jpg       label by name prefix: A = AMD
          Training400/Fovea_location.xlsx                        ID, imgName, Fovea_X, Fovea_Y
          Disc_Masks/A0001.bmp                                   0 = optic disc, 255 = background
          Lesion_Masks/{drusen,exudate,hemorrhage,scar,others}/A0001.bmp   0 = lesion; a file only
                                                                 where the image shows that lesion
    PALM  PALM-Training400/{H,N,P}0001.jpg                      P = pathological myopia, H = high
                                                                 myopia, N = normal (both non-PM)
          Fovea_Location_train.xlsx (imgName, Fovea_X, Fovea_Y); Disc_Masks/P0001.bmp
          Lesion_Masks/{Atrophy,Detachment}/P0001.bmp
          PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx    imgName, Label, Fovea_X, Fovea_Y

    Fovea in pixels of the photograph (origin top-left); ``(0, 0)`` marks a fovea that is not visible.

Mapping (``GRADES.md``): ADAM ``A``/label 1 -> ``diagnosis = 'age_related_macular_degeneration'``;
PALM ``P``/label 1 -> ``diagnosis = 'pathological_myopia'``; non-AMD / non-PM (``N``, ``H``, label 0)
have no slot and are left out (counted). Disc mask -> ``optic_disc`` (largest cluster); fovea ->
``fovea`` box; lesion folders: ``drusen`` -> ``drusen``, ``hemorrhage`` -> ``haemorrhages``. ADAM
``exudate`` (type not stated), ``scar``, ``others`` and PALM ``Atrophy``, ``Detachment`` have no
vocabulary id and are left out unless a class map names one (``{'exudate': 'hard_exudates'}``).
A lesion mask that exists marks its class exhaustively; a missing one means unknown, not absent.
The mask polarity (0 = object) is checked: a mask more than half foreground is reported as an
error (inverted polarity; pass ``foreground='nonzero'``).

Licences: not restated here; see the datasets' terms (iChallenge ADAM and PALM).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord
from fundusexpert_plugin.sources.base import (SEE_TERMS, ConvertLog, FileIndex, check_annotations_matched, MaskBoxParams, RecordDraft, SourceInfo, attempt,
                   read_mask)
from fundusexpert_plugin.sources.refuge import add_fovea, check_rows_have_images, merge_tables

ADAM = SourceInfo('ADAM (iChallenge-AMD)', f'{SEE_TERMS} (amd.grand-challenge.org)',
                  'Fang H. et al., "ADAM Challenge: Detecting Age-Related Macular Degeneration From Fundus '
                  'Images", IEEE Transactions on Medical Imaging 41(10):2828-2847, 2022')
PALM = SourceInfo('PALM (iChallenge-PM)', f'{SEE_TERMS} (palm.grand-challenge.org)',
                  'Fang H. et al., "Open Fundus Photograph Dataset with Pathologic Myopia Recognition and '
                  'Anatomical Structure Annotation", Scientific Data 11:99, 2024')
#: dataset -> (source, diagnosis id, positive name prefixes, negative name prefixes, lesion folder map)
DATASETS = {
    'adam': (ADAM, 'age_related_macular_degeneration', ('A',), ('N',),
             {'drusen': 'drusen', 'hemorrhage': 'haemorrhages', 'exudate': None, 'scar': None, 'others': None}),
    'palm': (PALM, 'pathological_myopia', ('P',), ('H', 'N'), {'atrophy': None, 'detachment': None}),
}
MAX_FOREGROUND_SHARE = 0.5


def read_ichallenge(dataset: str, images_dir: Path | str, *, tables: Sequence[Path | str] = (),
                    disc_masks: Optional[Path | str] = None, lesion_masks: Optional[Path | str] = None,
                    class_map: Optional[Dict[str, Optional[str]]] = None, foreground: str = 'zero',
                    params: MaskBoxParams = MaskBoxParams(), lenient: bool = False,
                    log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per ADAM or PALM photograph under ``images_dir`` (recursive).

    Args:
        dataset: ``'adam'`` or ``'palm'``.
        images_dir: ``Training400`` / ``PALM-Training400`` / a validation folder.
        tables: fovea and label tables (CSV/xlsx; ``imgName``, ``Fovea_X``, ``Fovea_Y``, ``Label``).
        disc_masks: ``Disc_Masks`` folder.
        lesion_masks: ``Lesion_Masks`` folder (one sub-folder per lesion).
        class_map: lesion folder name (lower case) -> finding id or ``None``; overrides the defaults.
        foreground: ``'zero'`` (iChallenge: 0 = object) or ``'nonzero'``.
        params: mask -> box clustering parameters.

    Raises:
        ValueError: unknown ``dataset`` or ``foreground``.
        FileNotFoundError: a folder or table is missing.
        FundusDataError: a table names an image twice (always); a table row names no photograph
            (:func:`.refuge.check_rows_have_images`); unreadable/missized/inverted mask,
            unknown label, bad fovea cell or fovea outside the image (file, row/mask and column
            named), or an unreadable image, unless ``lenient``. Lenient: the bad mask, label or
            fovea is one skipped item (a skipped mask's class is left unannotated) and the image
            keeps its other labels and boxes; an unusable image skips the record.
    """
    if dataset not in DATASETS:
        raise ValueError(f'unknown iChallenge dataset {dataset!r}; expected one of {sorted(DATASETS)}')
    if foreground not in ('zero', 'nonzero'):
        raise ValueError(f"foreground must be 'zero' or 'nonzero', got {foreground!r}")
    source, diagnosis, positive, negative, lesion_map = DATASETS[dataset]
    lesion_map = {**lesion_map, **(class_map or {})}
    log = log if log is not None else ConvertLog()
    rows = merge_tables(tables, label_columns=('label',))
    discs = FileIndex(disc_masks, exts=('.bmp', '.png', '.tif')) if disc_masks else None
    if lesion_masks and not Path(lesion_masks).is_dir():
        raise FileNotFoundError(f'folder not found: {lesion_masks}')
    lesions = {d.name: FileIndex(d, exts=('.bmp', '.png', '.tif'))
               for d in sorted(Path(lesion_masks).iterdir()) if d.is_dir()} if lesion_masks else {}

    def mask_of(path: Path, image: Path, draft: RecordDraft, what: str):
        values = read_mask(path, (draft.height, draft.width), where=str(image), field_name=what)
        fg = values == 0 if foreground == 'zero' else values != 0
        if fg.mean() > MAX_FOREGROUND_SHARE:
            raise FundusDataError(f'{image}: {what} {path}: {fg.mean():.0%} of the pixels are foreground '
                                  f'(foreground={foreground!r}); polarity inverted? try the other foreground',
                                  reason='mask_polarity')
        return fg

    photos = FileIndex(images_dir)
    check_rows_have_images(rows, photos, lenient=lenient, log=log)
    for image in photos.paths():
        def convert(image=image):
            row = rows.get(image.stem)
            draft = RecordDraft(image.stem, image, where=row.where if row else str(image), lenient=lenient, log=log)

            def set_label():
                label = row.label if row is not None and row.label not in (None, '') else None
                if label is not None:
                    if label.strip() not in ('0', '1', '0.0', '1.0'):
                        raise FundusDataError(f'{row.where}: column {row.columns[0]!r} = {label!r}: expected 0 or 1',
                                              reason='unknown_label')
                    is_positive = label.strip().startswith('1')
                else:
                    is_positive = True if image.stem[:1] in positive else False if image.stem[:1] in negative else None
                if is_positive:
                    draft.image_labels['diagnosis'] = diagnosis
                elif is_positive is False:
                    log.note(f'{source.source_dataset}: negative label (non-{diagnosis}) has no slot; left out',
                             draft.where)
            draft.item(set_label)
            if discs is not None:
                path = discs.find(image.stem, where=str(image), field_name='disc mask', required=False)
                if path is None:
                    log.note(f'{source.source_dataset}: no disc mask; optic_disc unknown', str(image))
                else:
                    draft.item(lambda: draft.add_mask('optic_disc', mask_of(path, image, draft, 'disc mask'), params,
                                                      log, largest_only=True), where=str(image))
            for folder, index in lesions.items():
                path = index.find(image.stem, where=str(image), field_name=f'{folder} mask', required=False)
                key = folder.lower()
                target = lesion_map[key] if key in lesion_map else vocab.canonical_finding(key)
                if path is None:
                    continue
                if target is None:
                    log.note(f'{source.source_dataset} lesion {folder!r}: no vocabulary id; mask left out', str(image))
                    continue
                draft.item(lambda target=target, path=path, folder=folder: draft.add_mask(
                    target, mask_of(path, image, draft, f'{folder} mask'), params, log), where=str(image))
            read = draft.item(lambda: (add_fovea(draft, row),)) if row is not None else None  # None: skipped
            fovea = read[0] if read else None
            if read and fovea is None and row.fovea_x not in (None, ''):
                log.note(f'{source.source_dataset}: fovea (0, 0) = not visible; no fovea box', row.where)
            draft.infer_laterality(fovea_x=fovea[0] if fovea else None)
            return draft.build(source)
        record = attempt(convert, lenient=lenient, log=log, where=str(image))
        if record is not None:
            yield record
    for what, index in ([('disc mask', discs)] if discs is not None else []) + \
            [(f'{folder} mask', index) for folder, index in lesions.items()]:
        check_annotations_matched(index, photos.paths(), what, lenient=lenient, log=log)
