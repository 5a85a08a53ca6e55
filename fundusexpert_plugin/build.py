"""FundusGen builder: FundusGen records -> one ms-swift jsonl per task.

Output folder layout (one folder per split)::

    <out>/<task>.jsonl          rows of that task (ms-swift schema + metadata keys)
    <out>/marked/*.jpg          copies with a red box, for region identification
    <out>/build_summary.json    counts per task, skipped records with reasons, seed, task versions,
                                licences of the records built with their counts

Row image paths are relative to ``<out>``. The build is deterministic for a given seed, task set
and record order. Files are written to a temporary name and renamed, so an interrupted build never
leaves a half-written task file.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from PIL import Image, UnidentifiedImageError

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord
from fundusexpert_plugin.tasks.config import TaskConfig, load_tasks
from fundusexpert_plugin.tasks.render import RenderContext, render_rows

logger = logging.getLogger(__name__)


@dataclass
class BuildSummary:
    """What a build wrote and what it skipped.

    Attributes:
        out_dir: the dataset folder.
        rows_per_task: task name -> number of rows written.
        records_used: number of records rendered.
        skipped: one ``'<where>: <reason>'`` message per skipped record (lenient mode).
        seed, languages, task_versions, task_weights: the build parameters (weights are read by
            the ``fundusgen`` dataset when it loads every task at once).
        licences: ``provenance.licence`` -> number of records built under it (every record used;
            ``'unknown'`` counted like any other), so the terms of a derived dataset are visible.
    """

    out_dir: str
    rows_per_task: Dict[str, int] = field(default_factory=dict)
    records_used: int = 0
    skipped: List[str] = field(default_factory=list)
    seed: int = 0
    languages: List[str] = field(default_factory=list)
    task_versions: Dict[str, int] = field(default_factory=dict)
    task_weights: Dict[str, float] = field(default_factory=dict)
    licences: Dict[str, int] = field(default_factory=dict)


def check_image(record: FundusGenRecord, image_dir: Path) -> None:
    """The record's image exists, is readable and has the recorded size.

    Raises:
        FundusDataError: naming the record, the ``image``/``width``/``height`` field and the file.
    """
    path = record.image_path(image_dir)
    where = f'record {record.record_id!r}: image'
    if not path.exists():
        raise FundusDataError(f'{where}: file not found: {path}')
    try:
        with Image.open(path) as im:
            size = im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise FundusDataError(f'{where}: unreadable image {path}: {exc}') from None
    if size != (record.width, record.height):
        raise FundusDataError(f'record {record.record_id!r}: width/height = {record.width}x{record.height} but '
                              f'{path} is {size[0]}x{size[1]}')


def _write_jsonl_atomic(rows: List[dict], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + '.tmp')
    with tmp.open('w', encoding='utf-8') as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + '\n')
    os.replace(tmp, path)


def build_fundusgen(records: Iterable[FundusGenRecord], out_dir: Path | str, *,
                    image_dir: Path | str = '.', tasks: Optional[Sequence[TaskConfig]] = None,
                    tasks_dir: Optional[Path | str] = None, languages: Sequence[str] = vocab.LANGUAGES,
                    seed: int = 0, lenient: bool = False, skipped: Sequence[str] = ()) -> BuildSummary:
    """Render every task for every record and write the FundusGen folder.

    Args:
        records: validated records (see :func:`record.read_records`).
        out_dir: output folder (created).
        image_dir: folder that relative record ``image`` paths are resolved against.
        tasks: task configs; default: all YAMLs of ``tasks_dir`` (default: shipped ``templates/``).
        languages: subset of ``('en', 'zh')``; every row is written in each language.
        seed: drives prompt-variant choice, sampled findings and MCQ distractors.
        lenient: skip records with a missing/unreadable image or a size mismatch (logged and
            counted in the summary) instead of raising.
        skipped: records already skipped upstream (e.g. by a lenient :func:`record.read_records`),
            listed first in the summary's ``skipped``.

    Returns:
        The :class:`BuildSummary`, also written to ``<out_dir>/build_summary.json``.

    Raises:
        FundusDataError: a bad record when not ``lenient``; every record skipped.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(tasks) if tasks is not None else load_tasks(tasks_dir)
    for lang in languages:
        vocab.check_language(lang)
    ctx = RenderContext(out, image_dir, seed)
    summary = BuildSummary(out_dir=str(out), skipped=list(skipped), seed=seed, languages=list(languages),
                           task_versions={t.name: t.version for t in tasks},
                           task_weights={t.name: t.weight for t in tasks})
    rows: Dict[str, List[dict]] = {t.name: [] for t in tasks}
    seen = 0
    for record in records:
        seen += 1
        try:
            check_image(record, Path(image_dir))
        except FundusDataError as exc:
            if not lenient:
                raise
            logger.warning('skipped: %s', exc)
            summary.skipped.append(str(exc))
            continue
        for task in tasks:
            for lang in languages:
                rows[task.name].extend(render_rows(record, task, lang, ctx))
        summary.records_used += 1
        licence = record.provenance.licence
        summary.licences[licence] = summary.licences.get(licence, 0) + 1
    if seen and not summary.records_used:
        raise FundusDataError(f'all {seen} records were skipped; first reason: {summary.skipped[len(skipped)]}')
    for task in tasks:
        _write_jsonl_atomic(rows[task.name], out / f'{task.name}.jsonl')
        summary.rows_per_task[task.name] = len(rows[task.name])
    (out / 'build_summary.json').write_text(json.dumps(asdict(summary), indent=2, ensure_ascii=False) + '\n')
    if summary.skipped:
        logger.warning('skipped %d of %d records (see %s/build_summary.json)', len(summary.skipped), seen, out)
    return summary


def build_sample(out_dir: Path | str, *, seed: int = 0, languages: Sequence[str] = vocab.LANGUAGES,
                 tasks_dir: Optional[Path | str] = None) -> Dict[str, BuildSummary]:
    """Build FundusGen from the bundled sample: ``<out_dir>/train`` and ``<out_dir>/heldout``.

    The sample images, their licence and the FundusGen rows derived from them are CC BY 4.0
    (images) and CC BY-SA 4.0 (boxes); see ``fundusexpert_plugin/sample/LICENSE.md``.
    """
    from fundusexpert_plugin.sample import SAMPLE_DIR, SPLITS, sample_records
    out = Path(out_dir)
    summaries = {}
    for split in SPLITS:
        summaries[split] = build_fundusgen(sample_records(split), out / split, image_dir=SAMPLE_DIR,
                                           seed=seed, languages=languages, tasks_dir=tasks_dir)
    (out / 'LICENSE.md').write_text((SAMPLE_DIR / 'LICENSE.md').read_text(encoding='utf-8'), encoding='utf-8')
    return summaries
