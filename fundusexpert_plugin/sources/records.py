"""FundusGen records jsonl as a registered format: each record's image checked through the intake
(path inside the dataset folder, readable, ``sha256``, upright size), as the builder will check it; a
laterality that disagrees with the optic disc is a warning, as the builder flags it
(:func:`~fundusexpert_plugin.core.record.record_laterality_flag`)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator, Optional

from fundusexpert_plugin.core.record import FundusGenRecord, read_records, record_laterality_flag
from fundusexpert_plugin.core.record_image import check_record_image
from fundusexpert_plugin.sources.base import ConvertLog, attempt, require_records
from fundusexpert_plugin.sources.registry import head_has, register


def _sniff(path: Path) -> bool:
    return head_has(path, ('.jsonl',), b'"record_id"', b'"findings"', every=True)


@register('records', help='FundusGen records jsonl (what convert writes and build reads)', sniff=_sniff)
def read_record_file(path: Path | str, images: Optional[Path | str] = None, *, lenient: bool = False,
                     log: Optional[ConvertLog] = None, allow_outside_root: bool = False) -> Iterator[FundusGenRecord]:
    """Records of ``path`` whose image passes the intake (``images``: the dataset folder, default the file's).

    Raises:
        FundusDataError: a bad line or image, unless ``lenient``; no record kept (always).
    """
    path = Path(path)
    log = log if log is not None else ConvertLog()
    messages, counts, box_messages, box_counts, locations = [], Counter(), [], Counter(), {}
    records = list(read_records(path, lenient=lenient, skipped=messages, counts=counts, box_counts=box_counts,
                                box_skipped=box_messages, locations=locations))
    log.skipped.extend(messages + box_messages)
    log.skipped_records.update(counts)
    log.skipped_items.update(box_counts)
    log.lines_read += len(records) + len(messages)
    kept = 0
    for rec in records:
        def check(rec=rec):
            _, loaded = check_record_image(rec, path.parent, root=Path(images) if images is not None else None,
                                           allow_outside_root=allow_outside_root, location=locations[rec.record_id])
            flag = record_laterality_flag(rec)
            for message in loaded.warnings + ([flag] if flag else []):
                log.warn(f'{locations[rec.record_id]}: record {rec.record_id!r}: {message}')
            return rec
        if attempt(check, lenient=lenient, log=log, where=str(path)) is not None:
            kept += 1
            yield rec
    require_records(kept, path, log)
