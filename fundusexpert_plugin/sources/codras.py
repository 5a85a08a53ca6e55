"""Reader for CODRAS-style box annotations (``annotations.jsonl``) of IDRiD photographs.

Input layout (one JSON object per line): ``image`` (path relative to the jsonl's folder),
``width``, ``height``, optional ``split``, ``codras_id`` and ``source_dataset``, and
``annotations``: a list of ``{"label", "bbox_xyxy"}`` with boxes in pixels of that image (xyxy),
and optional ``fovea_xy`` (a fovea centre ``[x, y]`` in pixels of that image, e.g. the official IDRiD
fovea markup scaled with the image) which becomes a ``fovea`` box of side 2 px
(:func:`~fundusexpert_plugin.core.geometry.point_box`). This is the layout of the bundled sample
(``fundusexpert_plugin/sample/annotations.jsonl``).

Source: CODRAS (github.com/chrisvoncsefalvay/codras) labels optic disc, hard exudates and
haemorrhages (microaneurysms merged in) exhaustively, so those three are the record's
``annotated_labels``: a class with no box is known absent. Nothing else is said about other
classes. Laterality is inferred from the disc position (see :mod:`..position`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator, List, Optional

from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord, parse_record
from fundusexpert_plugin.core.geometry import laterality_from_disc, point_box

logger = logging.getLogger(__name__)

CODRAS_LABELS = ['optic_disc', 'hard_exudates', 'haemorrhages']
CODRAS_LICENCE = ('images: IDRiD, CC BY 4.0 (Porwal et al., Data 2018, doi:10.21227/H25W98); '
                  'boxes: CODRAS, (c) Chris von Csefalvay 2019, CC BY-SA 4.0')


def read_codras(path: Path | str, *, split: Optional[str] = None, lenient: bool = False,
                skipped: Optional[List[str]] = None) -> Iterator[FundusGenRecord]:
    """Yield one FundusGen record per line of a CODRAS-style ``annotations.jsonl``.

    Args:
        path: the jsonl file; ``image`` paths inside are relative to its folder.
        split: keep only lines whose ``split`` equals this (``None``: all lines).
        lenient: log and skip bad lines (reason appended to ``skipped``) instead of raising.
        skipped: receives one message per skipped line.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: a bad line (file:line, record id and field named), unless ``lenient``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'annotation file not found: {path}')
    for line_no, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
        if not line.strip():
            continue
        where = f'{path}:{line_no}'
        try:
            row = json.loads(line)
            if split is not None and row.get('split') != split:
                continue
            yield _to_record(row, path.parent, where)
        except (FundusDataError, json.JSONDecodeError, KeyError) as exc:
            msg = f'{where}: {exc}' if not isinstance(exc, FundusDataError) else str(exc)
            if not lenient:
                raise FundusDataError(msg) from None
            logger.warning('skipped: %s', msg)
            if skipped is not None:
                skipped.append(msg)


def _to_record(row: dict, base_dir: Path, where: str) -> FundusGenRecord:
    rid = str(row.get('codras_id') or Path(row['image']).stem)
    findings = [{'label': a.get('label'), 'box_px': a.get('bbox_xyxy'), 'source': 'annotation'}
                for a in row.get('annotations', [])]
    if row.get('fovea_xy') is not None:
        try:
            fx, fy = (float(v) for v in row['fovea_xy'])
        except (TypeError, ValueError):
            raise FundusDataError(f'{where}: record {rid!r}: fovea_xy = {row["fovea_xy"]!r}: expected [x, y] '
                                  'in pixels') from None
        findings.append({'label': 'fovea', 'source': 'annotation',
                         'box_px': list(point_box(fx, fy, int(row['width']), int(row['height'])))})
    discs = [f['box_px'] for f in findings if f['label'] == 'optic_disc']
    laterality = laterality_from_disc(discs[0], int(row['width'])) if len(discs) == 1 else None
    data = {
        'record_id': rid,
        'image': str((base_dir / row['image']).resolve()),
        'width': row.get('width'), 'height': row.get('height'),
        'laterality': laterality,
        'laterality_source': 'optic_disc_position' if laterality else None,
        'findings': findings,
        'provenance': {
            'source_dataset': row.get('source_dataset', 'IDRiD via CODRAS'),
            'licence': CODRAS_LICENCE,
            'attribution': 'IDRiD (Porwal et al. 2018); CODRAS boxes (von Csefalvay 2019)',
            'annotated_labels': CODRAS_LABELS,
        },
    }
    return parse_record(data, where=where)
