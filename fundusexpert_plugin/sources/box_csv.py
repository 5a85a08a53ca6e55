"""Reader for a box CSV, the commonest hand-made layout: one row per box.

Columns (header names matched case- and punctuation-insensitively): ``image`` (path relative to the
dataset folder, default the CSV's folder), ``label`` (finding id or alias, or a class-map name),
``x1, y1, x2, y2`` (xyxy pixels of the upright image); optional ``record_id``. Rows of the same
``image`` form one record (id: ``record_id``, else the image path as written, extension kept). A row
whose label and four coordinates are all empty lists an image without boxes.

A bad row (unknown label, a coordinate that is not a number, a box outside the image) is one
skipped box in lenient mode, named ``<file>:<line>``; an unusable image skips the record.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from fundusexpert_plugin.core.paths import resolve_image_path
from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord
from fundusexpert_plugin.sources.base import (ConvertLog, RecordDraft, SourceInfo, attempt, check_unique_id, path_record_id,
                                             require_records)
from fundusexpert_plugin.sources.generic import GENERIC, _annotated, resolve_class
from fundusexpert_plugin.sources.registry import register
from fundusexpert_plugin.core.tables import header_keys, parse_number, read_table

COLUMNS = ('x1', 'y1', 'x2', 'y2')


def _sniff(path: Path) -> bool:
    return {'x1', 'y1', 'x2', 'y2', 'label'} <= header_keys(path)


@register('box-csv', help='CSV with one box per row: image,label,x1,y1,x2,y2', sniff=_sniff)
def read_box_csv(path: Path | str, images: Optional[Path | str] = None, *,
                 class_map: Optional[Dict[str, Optional[str]]] = None, annotated: Sequence[str] | str = (),
                 source: SourceInfo = GENERIC, infer_laterality: bool = False, lenient: bool = False,
                 log: Optional[ConvertLog] = None, allow_outside_root: bool = False) -> Iterator[FundusGenRecord]:
    """One record per distinct ``image`` of the CSV (module docstring).

    Raises:
        FileNotFoundError: the CSV is missing.
        FundusDataError: a missing column or no record kept (always); a bad row or image, unless ``lenient``.
    """
    log = log if log is not None else ConvertLog()
    table = read_table(path)
    root = Path(images) if images is not None else table.path.parent
    img = table.column('image', 'file_name', 'filename', 'path')
    lab = table.column('label', 'class', 'category')
    coords = [table.column(c) for c in COLUMNS]
    rid_col = table.column('record_id', required=False)
    groups: Dict[str, List[Tuple[int, List[str]]]] = {}
    for n, cells in table.rows:
        log.lines_read += 1
        groups.setdefault(path_record_id(cells[img], root), []).append((n, cells))
    labels_seen: List[Optional[str]] = []
    kept, seen_ids = 0, {}
    for name, rows in groups.items():
        first = table.where(rows[0][0])

        def convert(name=name, rows=rows, first=first):
            image = resolve_image_path(rows[0][1][img], root, where=first, allow_outside_root=allow_outside_root)
            rid = (rows[0][1][rid_col] if rid_col is not None else '') or name
            check_unique_id(seen_ids, rid, first)       # two images given one record_id
            draft = RecordDraft(rid, image, where=first, lenient=lenient, log=log)
            for n, cells in rows:
                draft.item(lambda n=n, cells=cells: _row(draft, table.where(n), cells, lab, coords,
                                                         class_map or {}, log, labels_seen),
                           label=(class_map or {}).get(cells[lab], cells[lab]))
            for label in _annotated(annotated, labels_seen):
                draft.annotate(label)
            if infer_laterality:
                draft.infer_laterality()
            return draft.build(source)
        record = attempt(convert, lenient=lenient, log=log, where=first)
        if record is not None:
            kept += 1
            yield record
    require_records(kept, table.path, log)


def _row(draft: RecordDraft, where: str, cells: List[str], lab: int, coords: List[int],
         class_map: Dict[str, Optional[str]], log: ConvertLog, labels_seen: List[Optional[str]]) -> None:
    values = [cells[i] for i in coords]
    if not cells[lab] and not any(values):
        return  # an image listed without boxes
    try:
        label = resolve_class(cells[lab], class_map, where=f"{where}: column 'label'")
    except FundusDataError as exc:
        raise FundusDataError(str(exc), reason='unknown_label' if cells[lab] else 'missing_label') from None
    if label is None:
        log.note(f'class {cells[lab]!r} left out by the class map', where)
        return
    labels_seen.append(label)
    try:
        box = [parse_number(v, where=where, column=c) for v, c in zip(values, COLUMNS)]
    except FundusDataError as exc:
        raise FundusDataError(str(exc), reason='box_not_numbers') from None
    draft.add_box(label, box, field_name="columns 'x1,y1,x2,y2'", where=where)
