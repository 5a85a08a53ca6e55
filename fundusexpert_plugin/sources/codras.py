"""Reader for CODRAS-style box annotations (``annotations.jsonl``): our own annotation jsonl.

Input layout (one JSON object per line): ``image`` (path relative to the dataset folder, by default
the jsonl's folder), ``width``, ``height`` (JSON integers: the upright image size), optional
``split``, ``codras_id`` (the record id; default the ``image`` path as written, extension kept),
``source_dataset`` and ``sha256`` (checked against the file), and ``annotations``: a list of
``{"label", "class_id", "bbox_xyxy"}`` with boxes in pixels of that image (xyxy, JSON numbers).
Optional ``fovea_xy``: a fovea centre ``[x, y]`` in pixels of that image (e.g. the official IDRiD
fovea markup scaled with the image), which becomes a ``fovea`` box of side 1 disc diameter (the
record's optic-disc box) centred on it (:meth:`~fundusexpert_plugin.sources.base.RecordDraft.add_point`).
This is the layout of the bundled sample (``fundusexpert_plugin/sample/annotations.jsonl``).

Per line: a bad box, label or class id is one skipped box in lenient mode (the record keeps its
good boxes); a bad image, size, ``annotations`` field or duplicate id skips the record; strict mode
stops at the first problem. A ``class_id`` that contradicts ``label`` (:data:`CODRAS_CLASS_IDS`) is an
error in strict mode and a warning in lenient mode (the label wins).

Source: CODRAS (github.com/chrisvoncsefalvay/codras) labels optic disc, hard exudates and
haemorrhages (microaneurysms merged in) exhaustively, so those three are the record's
``annotated_labels``: a class with no box is known absent; a line with ``fovea_xy`` adds ``fovea``.
Nothing else is said about other classes. Laterality is inferred from the disc position
(:meth:`~fundusexpert_plugin.sources.base.RecordDraft.infer_laterality`).

Licence and attribution come from each line's own ``source_dataset`` (:func:`codras_provenance`):
CODRAS boxes cover photographs of IDRiD (CC BY 4.0) and DIARETDB1 (research use only), so one
licence for the whole file would be wrong. A line whose source is missing or not one of those gets
``licence: unknown``, never a guess.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.jsonl import read_jsonl
from fundusexpert_plugin.core.paths import resolve_image_path
from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord, check_pixel_size
from fundusexpert_plugin.sources.base import (ConvertLog, RecordDraft, SourceInfo, attempt, check_unique_id,
                                              path_record_id, require_records)
from fundusexpert_plugin.sources.registry import head_has, register

logger = logging.getLogger(__name__)

CODRAS_LABELS = ['optic_disc', 'hard_exudates', 'haemorrhages']
CODRAS_BOXES_LICENCE = 'boxes: CODRAS, (c) Chris von Csefalvay 2019, CC BY-SA 4.0'
CODRAS_BOXES_ATTRIBUTION = 'CODRAS boxes (von Csefalvay 2019)'
UNKNOWN_LICENCE = 'unknown'
#: image source -> (pattern matched in ``source_dataset``, images licence, images attribution)
CODRAS_SOURCES = {
    'IDRiD': (r'\bidrid\b', 'images: IDRiD, CC BY 4.0 (Porwal et al., Data 2018, doi:10.21227/H25W98)',
              'IDRiD (Porwal et al. 2018)'),
    'DIARETDB1': (r'\bdiaretdb1\b', 'images: DIARETDB1, research use only (Kauppi T. et al., "DIARETDB1 diabetic '
                  'retinopathy database and evaluation protocol", BMVC 2007; Lappeenranta University of Technology)',
                  'DIARETDB1 (Kauppi et al. 2007)'),
}


def codras_provenance(source_dataset: Optional[str]) -> Tuple[str, str, str]:
    """``(source_dataset, licence, attribution)`` of one CODRAS line, from its own source.

    Args:
        source_dataset: the line's ``source_dataset`` text (``'IDRiD (grading/localization set ...)'``,
            ``'DIARETDB1'``), or ``None``.

    Returns:
        For a line naming exactly one known source (:data:`CODRAS_SOURCES`, matched as a whole word,
        any case): that source's images licence plus the CODRAS boxes licence. Otherwise
        ``licence = 'unknown'`` and the attribution names the boxes only; ``source_dataset`` is kept
        as written (``'unknown (CODRAS boxes)'`` when missing).
    """
    text = str(source_dataset or '').strip()
    found = [k for k, (pattern, _, _) in CODRAS_SOURCES.items() if re.search(pattern, text, re.I)]
    if len(found) != 1:
        return text or 'unknown (CODRAS boxes)', UNKNOWN_LICENCE, f'{CODRAS_BOXES_ATTRIBUTION}; image source unknown'
    _, licence, attribution = CODRAS_SOURCES[found[0]]
    return text, f'{licence}; {CODRAS_BOXES_LICENCE}', f'{attribution}; {CODRAS_BOXES_ATTRIBUTION}'
#: CODRAS class index of each label (the ``class_id`` field).
CODRAS_CLASS_IDS = {0: 'optic_disc', 1: 'hard_exudates', 2: 'haemorrhages'}


def _source(row: dict) -> SourceInfo:
    return SourceInfo(*codras_provenance(row.get('source_dataset')))


def _sniff(path: Path) -> bool:
    return head_has(path, ('.jsonl',), b'"annotations"', b'"bbox_xyxy"')


@register('codras', help='our annotation jsonl (image, width, height, annotations[{label, class_id, bbox_xyxy}])',
          sniff=_sniff)
def read_codras(path: Path | str, images: Optional[Path | str] = None, *, split: Optional[str] = None,
                lenient: bool = False, log: Optional[ConvertLog] = None, allow_outside_root: bool = False,
                skipped: Optional[List[str]] = None) -> Iterator[FundusGenRecord]:
    """Yield one FundusGen record per line of a CODRAS-style ``annotations.jsonl`` (module docstring).

    Args:
        path: the jsonl file.
        images: the dataset folder ``image`` paths are relative to (default: the jsonl's folder);
            when ``image`` is not found there, ``images/<basename>`` is tried.
        split: keep only lines whose ``split`` equals this (``None``: all lines).
        lenient: skip bad boxes / records (counted in ``log``) instead of raising.
        allow_outside_root: accept absolute paths and paths leaving the dataset folder.
        skipped: receives one message per skip (as well as ``log.skipped``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: a bad line (file:line, record id and field named), unless ``lenient``;
            no record kept (always).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'annotation file not found: {path}')
    log = log if log is not None else ConvertLog()
    root = Path(images) if images is not None else path.parent
    seen: Dict[str, str] = {}
    kept = 0
    n_skipped = len(log.skipped)
    for line_no, row in read_jsonl(path, lenient=lenient, on_skip=lambda m, r: log.skip(m, r)):
        log.lines_read += 1
        if split is not None and row.get('split') != split:
            continue
        where = f'{path}:{line_no}'
        record = attempt(lambda: _to_record(row, root, where, seen, lenient, log, allow_outside_root),
                         lenient=lenient, log=log, where=where)
        if record is not None:
            kept += 1
            yield record
    if skipped is not None:
        skipped.extend(log.skipped[n_skipped:])
    require_records(kept, path, log)


def _to_record(row: dict, root: Path, where: str, seen: Dict[str, str], lenient: bool, log: ConvertLog,
               allow_outside_root: bool) -> FundusGenRecord:
    name = row.get('image')
    rid = row.get('codras_id') or (path_record_id(name, root) if isinstance(name, str) and name.strip() else None)
    where_rec = f'{where}: record {str(rid)!r}'
    image = resolve_image_path(name, root, where=where_rec, allow_outside_root=allow_outside_root)
    if not image.exists() and isinstance(name, str) and (root / os.path.basename(name.replace('\\', '/'))).is_file():
        image = root / os.path.basename(name.replace('\\', '/'))
    check_unique_id(seen, str(rid), where)
    anns = row.get('annotations')
    if not isinstance(anns, list):
        raise FundusDataError(f'{where_rec}: annotations = {anns!r}: expected a list of {{label, bbox_xyxy}} '
                              '(use [] for an image without boxes)', reason='missing_annotations')
    sha = row.get('sha256')
    draft = RecordDraft(str(rid), image, where=where_rec, lenient=lenient, log=log,
                        sha256=sha if isinstance(sha, str) else None)
    for key in ('width', 'height'):
        check_pixel_size(row.get(key), where=where_rec, field_name=key)
    if (row['width'], row['height']) != (draft.width, draft.height):
        raise FundusDataError(f'{where_rec}: width/height = {row["width"]}x{row["height"]} but {image} is '
                              f'{draft.width}x{draft.height} px (upright)', reason='size_mismatch')
    for k, ann in enumerate(anns):
        draft.item(lambda k=k, ann=ann: _add_annotation(draft, k, ann, where_rec, lenient, log),
                   label=ann.get('label') if isinstance(ann, dict) else None)
    draft.annotated = list(CODRAS_LABELS)
    if row.get('fovea_xy') is not None:
        draft.item(lambda: _add_fovea(draft, row['fovea_xy']), label='fovea')
    draft.infer_laterality()
    return draft.build(_source(row))


def _add_fovea(draft: RecordDraft, value) -> None:
    """``fovea_xy = [x, y]`` pixels -> a 1-DD ``fovea`` box (:meth:`RecordDraft.add_point`)."""
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise FundusDataError(f'{draft.where}: fovea_xy = {value!r}: expected [x, y], JSON numbers in pixels',
                              reason='point_not_numbers')
    draft.add_point('fovea', float(value[0]), float(value[1]), field_name='fovea_xy')
    draft.annotate('fovea')        # the image's fovea is marked (as the IDRiD fovea tables)


def _add_annotation(draft: RecordDraft, k: int, ann, where: str, lenient: bool, log: ConvertLog) -> None:
    field = f'annotations[{k}]'
    if not isinstance(ann, dict):
        raise FundusDataError(f'{where}: {field} = {ann!r}: expected an object {{label, bbox_xyxy}}',
                              reason='box_not_an_object')
    label = ann.get('label')
    draft.add_box(label, ann.get('bbox_xyxy'), field_name=f'{field}.bbox_xyxy', label_field=f'{field}.label')
    class_id = ann.get('class_id')
    if class_id is not None:
        expected = CODRAS_CLASS_IDS.get(class_id) if isinstance(class_id, int) else None
        if expected != vocab.canonical_finding(label):
            msg = (f'{where}: {field}.class_id = {class_id!r} contradicts label {label!r} '
                   f'(CODRAS class ids {CODRAS_CLASS_IDS})')
            if not lenient:
                draft.findings.pop()
                raise FundusDataError(msg, reason='class_id_contradicts_label')
            log.warn(msg + '; the label is kept')
