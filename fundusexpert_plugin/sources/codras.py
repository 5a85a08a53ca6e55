"""Reader for CODRAS-style box annotations (``annotations.jsonl``) of IDRiD photographs.

Input layout (one JSON object per line): ``image`` (path relative to the jsonl's folder),
``width``, ``height``, optional ``split``, ``codras_id`` and ``source_dataset``, and
``annotations``: a list of ``{"label", "bbox_xyxy"}`` with boxes in pixels of that image (xyxy).
This is the layout of the bundled sample (``fundusexpert_plugin/sample/annotations.jsonl``).

Source: CODRAS (github.com/chrisvoncsefalvay/codras) labels optic disc, hard exudates and
haemorrhages (microaneurysms merged in) exhaustively, so those three are the record's
``annotated_labels``: a class with no box is known absent. Nothing else is said about other
classes. Laterality is inferred from the disc position (see :mod:`..position`).

Licence and attribution come from each line's own ``source_dataset`` (:func:`codras_provenance`):
CODRAS boxes cover photographs of IDRiD (CC BY 4.0) and DIARETDB1 (research use only), so one
licence for the whole file would be wrong. A line whose source is missing or not one of those gets
``licence: unknown``, never a guess.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord, parse_record
from fundusexpert_plugin.core.geometry import laterality_from_disc

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
    discs = [f['box_px'] for f in findings if f['label'] == 'optic_disc']
    laterality = laterality_from_disc(discs[0], int(row['width'])) if len(discs) == 1 else None
    source, licence, attribution = codras_provenance(row.get('source_dataset'))
    data = {
        'record_id': rid,
        'image': str((base_dir / row['image']).resolve()),
        'width': row.get('width'), 'height': row.get('height'),
        'laterality': laterality,
        'laterality_source': 'optic_disc_position' if laterality else None,
        'findings': findings,
        'provenance': {
            'source_dataset': source,
            'licence': licence,
            'attribution': attribution,
            'annotated_labels': CODRAS_LABELS,
        },
    }
    return parse_record(data, where=where)
