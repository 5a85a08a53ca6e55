"""FundusGen builder: FundusGen records -> one ms-swift jsonl per task.

Output folder layout (one folder per split)::

    <out>/<task>.jsonl          rows of that task (ms-swift schema + metadata keys)
    <out>/marked/*.jpg          copies with a red box, for region identification
    <out>/images/*.png          upright 8-bit RGB copies of photos the intake converted (EXIF-rotated,
                                16-bit, alpha, palette, greyscale); rows point to these
    <out>/build_summary.json    counts per task, skipped records with reasons, seed, task versions,
                                licences of the records built with their counts, languages a task
                                lacks with the records it wrote no rows for in them, the image
                                copies written; written last: the folder's tasks are the ones it lists

Every photo goes through the one image intake (:func:`fundusexpert_plugin.core.images.load_image`):
opened by content, fully decoded, turned upright, its ``sha256`` checked when the record has one, its
upright size compared with the record's. Its path must lie inside the image folder
(:mod:`fundusexpert_plugin.core.paths`). Every written image is a fresh metadata-free image.

Marked copies are drawn at most ``marked_max_side`` pixels on their long side (JPEGs decoded in
draft mode); such a row's ``width``/``height`` and ``marked_box_px`` are those of the copy.

Row image paths are relative to ``<out>``. The build is deterministic for a given seed, task set
and record order, whatever ``num_proc``. Files are written to a temporary name and renamed, so an
interrupted build never leaves a half-written task file.

A build into a folder that holds an earlier build replaces it: the task files, image copies and
marked copies (``marked/*.jpg``) its ``build_summary.json`` lists are removed first, so the folder
holds only what this build wrote. Nothing the builder did not write is removed or overwritten: another
``.jsonl`` file is left in place with a warning (the ``fundusgen`` dataset reads only the tasks that
``build_summary.json`` lists, :func:`built_tasks`), and a task file, marked copy or image copy with no
``build_summary.json`` listing it stops the build (:class:`FileExistsError`). A build that fails
removes what it had written, so the folder then holds no build.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.images import LoadedImage, load_image, save_image
from fundusexpert_plugin.core.jsonl import write_jsonl
from fundusexpert_plugin.core.paths import check_folder
from fundusexpert_plugin.core.record_image import check_record_image
from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord, flag_laterality
from fundusexpert_plugin.tasks.config import TaskConfig, load_tasks
from fundusexpert_plugin.tasks.render import RecordImage, RenderContext, file_key, render_rows

logger = logging.getLogger(__name__)

#: Longest side of the marked copies, pixels (above every recipe's model input).
MARKED_MAX_SIDE = 2048
#: The file that makes a folder a FundusGen build (:class:`BuildSummary`), written last.
SUMMARY_FILE = 'build_summary.json'
#: Smallest ``marked_max_side`` accepted, pixels: below it a 4288-px photograph shrinks more than 16 times,
#: small lesions (microaneurysms, 30-60 px) to a few pixels under the red outline.
MARKED_MIN_SIDE = 256


@dataclass
class BuildSummary:
    """What a build wrote and what it skipped.

    Attributes:
        out_dir: the dataset folder.
        rows_per_task: task name -> number of rows written.
        records_used: number of records rendered.
        skipped: one ``'<where>: <reason>'`` message per skipped record (lenient mode).
        skipped_by_reason: reason -> number of skipped records (``image_missing``, ``size_mismatch``, ...).
        warnings: accepted with a warning (multi-page files; a laterality that disagrees with the optic disc).
        skipped_boxes: one message per finding skipped upstream while its record was kept (lenient
            :func:`record.read_records`).
        skipped_boxes_by_reason: reason -> number of those (``box_outside_image``, ``box_not_numbers``,
            ``invalid_label`` ...: the annotation readers' names, :mod:`fundusexpert_plugin.core.boxes`).
        seed, languages, task_versions, task_weights: the build parameters (weights are read by
            the ``fundusgen`` dataset when it loads every task at once).
        licences: ``provenance.licence`` -> number of records built under it (every record used;
            ``'unknown'`` counted like any other), so the terms of a derived dataset are visible.
        task_languages_missing: task name -> {language built but not defined by the task -> number of
            records for which the task wrote no rows in that language} (tasks defining every built
            language are not listed).
        image_copies: the copies this build wrote under ``images/`` (paths relative to ``out_dir``); a
            later build into the folder removes them.
        marked_copies: the marked copies this build wrote under ``marked/`` (relative paths), likewise.
        flagged_records: ids of the records used that carry ``provenance.flags`` (sources that disagree,
            e.g. the engine's detector and landmark locator, or a laterality label or DICOM header and the
            optic disc's side, which the builder flags itself and lists in ``warnings``): their rows are
            written, and their chain says "Flagged for review"; check them, or leave them out of the
            records, before training.
    """

    out_dir: str
    rows_per_task: Dict[str, int] = field(default_factory=dict)
    records_used: int = 0
    skipped: List[str] = field(default_factory=list)
    skipped_by_reason: Dict[str, int] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    skipped_boxes: List[str] = field(default_factory=list)
    skipped_boxes_by_reason: Dict[str, int] = field(default_factory=dict)
    seed: int = 0
    languages: List[str] = field(default_factory=list)
    task_versions: Dict[str, int] = field(default_factory=dict)
    task_weights: Dict[str, float] = field(default_factory=dict)
    licences: Dict[str, int] = field(default_factory=dict)
    task_languages_missing: Dict[str, Dict[str, int]] = field(default_factory=dict)
    flagged_records: List[str] = field(default_factory=list)
    image_copies: List[str] = field(default_factory=list)
    marked_copies: List[str] = field(default_factory=list)


def read_build_summary(folder: Path | str) -> dict:
    """The ``build_summary.json`` of a FundusGen folder, as a dict (:class:`BuildSummary` fields).

    Raises:
        FileNotFoundError: the folder has no ``build_summary.json``.
        FundusDataError: the file is not a JSON object with a ``rows_per_task`` object.
    """
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found: {folder} is not a FundusGen folder (`fundusexpert data build`)')
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FundusDataError(f'{path}: not valid JSON ({exc}); not a build summary') from None
    if not isinstance(data, dict) or not isinstance(data.get('rows_per_task'), dict):
        raise FundusDataError(f'{path}: field rows_per_task: missing or not an object; not a build summary')
    return data


def built_tasks(folder: Path | str) -> List[str]:
    """The tasks of a FundusGen folder: the names its ``build_summary.json`` lists in ``rows_per_task``,
    in the order the build wrote them (``<folder>/<task>.jsonl`` each). Other ``.jsonl`` files in the
    folder are not tasks.

    Raises:
        FileNotFoundError, FundusDataError: as :func:`read_build_summary`.
    """
    return [name for name in read_build_summary(folder)['rows_per_task'] if _plain_name(name)]


def _plain_name(name: object) -> bool:
    """A file name without a folder part (a task name or copy name read from a summary)."""
    return isinstance(name, str) and bool(name) and name not in ('.', '..') and '/' not in name and '\\' not in name


@dataclass
class _Previous:
    """What an earlier build wrote into the folder (``summary`` None: no earlier build)."""

    summary: Optional[dict]
    tasks: List[Path]
    copies: List[Path]
    marked: List[Path]


def _previous_build(out: Path, tasks: Sequence[TaskConfig]) -> _Previous:
    """The earlier build's files in ``out``, after checking that this build overwrites none that the
    builder did not write (module docstring).

    The earlier build's marked copies are those its summary lists in ``marked_copies``; a summary
    written before that field existed lists none, and then every ``marked/*.jpg`` counts as its own.

    Raises:
        FileExistsError: a task file of ``tasks`` or a marked copy (``marked/*.jpg``) that no
            ``build_summary.json`` lists.
        FundusDataError: an unreadable ``build_summary.json``.
    """
    summary = read_build_summary(out) if (out / SUMMARY_FILE).exists() else None
    listed = [n for n in (summary or {}).get('rows_per_task', {}) if _plain_name(n)]
    copies = [c for c in (summary or {}).get('image_copies', [])
              if isinstance(c, str) and c.startswith('images/') and _plain_name(c[len('images/'):])]
    present = sorted((out / 'marked').glob('*.jpg')) if (out / 'marked').is_dir() else []
    if summary is not None and 'marked_copies' in summary:
        own = {out / c for c in summary['marked_copies']
               if isinstance(c, str) and c.startswith('marked/') and _plain_name(c[len('marked/'):])}
        marked = [p for p in present if p in own]
        foreign = [p for p in present if p not in own]
    else:
        marked, foreign = (present, []) if summary is not None else ([], present)
    why = f'{out / SUMMARY_FILE} does not list it' if summary is not None else f'{out} holds no {SUMMARY_FILE}'
    remedy = 'move it away or build into another folder'
    for task in tasks:
        path = out / f'{task.name}.jsonl'
        if path.exists() and task.name not in listed:
            raise FileExistsError(f'{path}: exists and was not written by the builder ({why}); refusing to '
                                  f'overwrite it: {remedy}')
    if foreign:
        raise FileExistsError(f'{foreign[0]}: exists and was not written by the builder ({why}; {len(foreign)} such '
                              f'.jpg file(s) in {out / "marked"}, or an earlier build stopped); the builder writes '
                              f'its marked copies there: {remedy}')
    names = set(listed) | {t.name for t in tasks}
    for other in sorted(out.glob('*.jsonl')):
        if other.stem not in names:
            logger.warning('%s: not written by the builder; left in place (the fundusgen dataset reads only the '
                           'tasks %s lists)', other, SUMMARY_FILE)
    return _Previous(summary, [out / f'{n}.jsonl' for n in listed], [out / c for c in copies], marked)


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def check_image(record: FundusGenRecord, image_dir: Path, *, max_side: Optional[int] = None,
                image_root: Optional[Path] = None, allow_outside_root: bool = False,
                location: Optional[str] = None) -> Tuple[Path, LoadedImage]:
    """Resolve, read and check the record's image through the intake
    (:func:`~fundusexpert_plugin.core.record_image.check_record_image`, full size by default).

    Returns:
        ``(path, image)``: the file, and its upright RGB pixels (at most ``max_side`` on the long side).

    Raises:
        FundusDataError: naming the records file line (``location``, when known), the record and the
            ``image``/``width``/``height``/``sha256`` field: path outside ``image_root`` (default
            ``image_dir``), missing, unreadable or truncated file, wrong digest, or a size other than the
            upright image's.
    """
    return check_record_image(record, image_dir, root=image_root, allow_outside_root=allow_outside_root,
                              max_side=max_side, location=location)


@dataclass
class _Job:
    tasks: List[TaskConfig]
    languages: List[str]
    out: Path
    image_dir: Path
    seed: int
    max_side: Optional[int]
    image_root: Optional[Path]
    allow_outside_root: bool
    copy_images: bool = False
    locations: Optional[Dict[str, str]] = None


_JOB: Optional[_Job] = None


def _init(job: _Job) -> None:
    global _JOB
    _JOB = job


def _copy_path(out: Path, record: FundusGenRecord) -> Path:
    """Where the builder writes the upright copy of a record's photograph."""
    return out / 'images' / f'{file_key(record.record_id)}.png'


def _render_one(record: FundusGenRecord) -> Tuple[Dict[str, List[dict]], Optional[Tuple[str, str]], List[str],
                                                   Optional[str]]:
    """Rows of every task for one record, or ``(msg, reason)`` when its image is unusable; its warnings;
    the copy written under ``images/`` (relative to the folder), if any.

    Raises:
        FileExistsError: the copy's path holds a file this build did not write (it is never overwritten).
    """
    job = _JOB
    copy = None
    try:
        path, image = check_image(record, job.image_dir, max_side=job.max_side, image_root=job.image_root,
                                  allow_outside_root=job.allow_outside_root,
                                  location=(job.locations or {}).get(record.record_id))
        row_image = path
        if image.conversion or job.copy_images:  # upright 8-bit RGB pixels the model sees, no metadata
            target = _copy_path(job.out, record)
            if target.exists():   # the earlier build's copies are gone: this one is not the builder's
                raise FileExistsError(f'{target}: exists and was not written by the builder (no {SUMMARY_FILE} '
                                      f'lists it); refusing to overwrite it with the copy of record '
                                      f'{record.record_id!r}: move it away or build into another folder')
            full = image if image.scale == (1.0, 1.0) else load_image(path)
            row_image = save_image(full.rgb, target)
            copy = target.relative_to(job.out).as_posix()
    except FundusDataError as exc:
        return {}, (str(exc), exc.reason or 'invalid_record'), [], None
    if image.conversion and 'image' not in record.provenance.stages:
        # records written without the intake's note (by hand, by another tool): the rows read it from here,
        # so a photograph converted from grey is called greyscale (render/chain.photo_was_greyscale)
        stages = {**record.provenance.stages, 'image': image.conversion}
        record = record.model_copy(update={'provenance': record.provenance.model_copy(update={'stages': stages})})
    ctx = RenderContext(job.out, job.image_dir, job.seed)
    source = RecordImage(row_image, image)
    rows = {t.name: [row for lang in job.languages if lang in t.languages
                     for row in render_rows(record, t, lang, ctx, image=source)]
            for t in job.tasks}
    return rows, None, [f'record {record.record_id!r}: {w}' for w in image.warnings], copy


def build_fundusgen(records: Iterable[FundusGenRecord], out_dir: Path | str, *,
                    image_dir: Path | str = '.', tasks: Optional[Sequence[TaskConfig]] = None,
                    tasks_dir: Optional[Path | str] = None, languages: Sequence[str] = vocab.LANGUAGES,
                    seed: int = 0, lenient: bool = False, skipped: Sequence[str] = (),
                    skipped_counts: Optional[Dict[str, int]] = None, skipped_boxes: Sequence[str] = (),
                    skipped_box_counts: Optional[Dict[str, int]] = None, num_proc: int = 1,
                    marked_max_side: Optional[int] = MARKED_MAX_SIDE, image_root: Optional[Path | str] = None,
                    allow_outside_root: bool = False, copy_images: bool = False,
                    locations: Optional[Dict[str, str]] = None) -> BuildSummary:
    """Render every task for every record and write the FundusGen folder.

    Args:
        records: validated records (see :func:`record.read_records`).
        out_dir: output folder (created).
        image_dir: folder that relative record ``image`` paths are resolved against (the records file's).
        image_root: the dataset folder every image must lie in (default ``image_dir``), unless
            ``allow_outside_root``.
        tasks: task configs; default: all YAMLs of ``tasks_dir`` (default: shipped ``templates/``).
        languages: subset of ``('en', 'zh')``; every task writes its rows in each of them it defines
            (a language a task lacks is logged once and counted in ``task_languages_missing``).
        seed: drives prompt-variant choice, sampled findings and MCQ distractors.
        lenient: skip records whose image is unusable (logged and counted by reason in the
            summary) instead of raising.
        skipped, skipped_counts: records already skipped upstream (e.g. by a lenient
            :func:`record.read_records`): messages listed first in the summary, counts by reason.
        skipped_boxes: messages of findings skipped upstream in records that were kept.
        skipped_box_counts: their counts by reason (``read_records(box_counts=...)``).
        num_proc: worker processes, ``>= 1`` (1: in this process). The rows do not depend on it.
        marked_max_side: longest side of the marked copies, pixels, ``>= MARKED_MIN_SIDE`` (``None``:
            full size).
        copy_images: write every photograph as a fresh, metadata-free PNG (upright 8-bit RGB, full
            size, lossless) under ``<out_dir>/images/`` and point the rows there, so that the folder
            can be shared without the originals and whatever EXIF, XMP or comments they carry.
            Without it, rows point at the original files in place (only converted images, such as
            EXIF-rotated or 16-bit ones, are copied).
        locations: ``record_id -> '<records file>:<line>'`` (:func:`record.read_records`), named in the
            messages about a record's image.

    Returns:
        The :class:`BuildSummary`, also written to ``<out_dir>/build_summary.json``. An earlier build in
        ``out_dir`` is replaced (module docstring); a failed build leaves none.

    Raises:
        FundusDataError: a bad record when not ``lenient``; no record, or every record skipped; an
            unreadable ``build_summary.json`` in ``out_dir``.
        FileNotFoundError: ``image_root`` is not an existing folder.
        FileExistsError: ``out_dir`` holds a task file, marked copy or image copy the builder did not
            write (no ``build_summary.json`` lists it); nothing is removed then.
        ValueError: ``num_proc < 1`` or ``marked_max_side < MARKED_MIN_SIDE``.
    """
    if not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f'num_proc = {num_proc!r}: expected a whole number >= 1')
    if marked_max_side is not None and marked_max_side < MARKED_MIN_SIDE:
        raise ValueError(f'marked_max_side = {marked_max_side!r}: expected None (full size) or a number of pixels '
                         f'>= {MARKED_MIN_SIDE}')
    if image_root is not None and not allow_outside_root:
        check_folder(image_root, what='image_root')
    tasks = list(tasks) if tasks is not None else load_tasks(tasks_dir)
    for lang in languages:
        vocab.check_language(lang)
    records = list(records)
    if not records:
        raise FundusDataError('no records to build from' + (f' ({len(skipped)} skipped upstream; first: {skipped[0]})'
                                                            if skipped else ''), reason='empty_input')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_build(out, tasks)
    _remove([out / SUMMARY_FILE] if previous.summary is not None else [])   # first: the folder is no build now
    _remove(previous.tasks + previous.copies + previous.marked)
    if previous.summary is not None:
        logger.info('%s: replaced the earlier build (%d task files, %d marked copies, %d image copies removed)',
                    out, len(previous.tasks), len(previous.marked), len(previous.copies))
    copies_before = {c for c in (_copy_path(out, r) for r in records) if c.exists()}   # never the builder's
    try:
        summary = BuildSummary(out_dir=str(out), skipped=list(skipped), skipped_boxes=list(skipped_boxes),
                               skipped_boxes_by_reason=dict(sorted((skipped_box_counts or {}).items())),
                               seed=seed, languages=list(languages),
                               task_versions={t.name: t.version for t in tasks},
                               task_weights={t.name: t.weight for t in tasks})
        reasons: Counter = Counter(skipped_counts or {})
        rows: Dict[str, List[dict]] = {t.name: [] for t in tasks}
        records = [_with_laterality_flag(r, summary, locations) for r in records]
        job = _Job(tasks, list(languages), out, Path(image_dir), seed, marked_max_side,
                   Path(image_root) if image_root is not None else None, allow_outside_root, copy_images, locations)
        if num_proc > 1 and len(records) > 1:
            with ProcessPoolExecutor(min(num_proc, len(records)), initializer=_init, initargs=(job,)) as pool:
                results = pool.map(_render_one, records, chunksize=max(1, min(16, len(records) // (4 * num_proc))))
                _collect(zip(records, results), rows, summary, reasons, lenient)
        else:
            _init(job)
            _collect(zip(records, map(_render_one, records)), rows, summary, reasons, lenient)
        if not summary.records_used:
            raise FundusDataError(f'all {len(records)} records were skipped; first reason: '
                                  f'{summary.skipped[len(skipped)]}', reason='empty_input')
        summary.skipped_by_reason = dict(sorted(reasons.items()))
        for task in tasks:
            _write_jsonl_atomic(rows[task.name], out / f'{task.name}.jsonl')
            summary.rows_per_task[task.name] = len(rows[task.name])
            missing = [lang for lang in languages if lang not in task.languages]
            if missing:
                summary.task_languages_missing[task.name] = {lang: summary.records_used for lang in missing}
                logger.warning('task %r (%s) defines no %s prompts: no %s rows of it for the %d records of %s',
                               task.name, task.path, '/'.join(missing), '/'.join(missing), summary.records_used, out)
        summary.warnings.extend(_many_box_warnings(rows))
        summary.image_copies.sort()
        summary.marked_copies = sorted({image for task_rows in rows.values() for row in task_rows
                                        for image in row.get('images', []) if image.startswith('marked/')})
        (out / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=2, ensure_ascii=False) + '\n')
        if summary.skipped:
            logger.warning('skipped %d of %d records (see %s/build_summary.json)', len(summary.skipped),
                           len(records) + len(skipped), out)
        return summary
    except BaseException:
        # leave no half build: the marked copies, image copies and task files this build wrote
        written = [c for c in (_copy_path(out, r) for r in records) if c not in copies_before and c.exists()]
        _remove(sorted((out / 'marked').glob('*.jpg')) + written + [out / f'{t.name}.jsonl' for t in tasks])
        raise


#: A row with more boxes than this gets a build warning: its answer is thousands of tokens long.
MANY_BOXES = 100


def _many_box_warnings(rows: Dict[str, List[dict]]) -> List[str]:
    """One warning per task with rows holding more than :data:`MANY_BOXES` boxes (ours): such an answer
    runs past a usual ``--max_length`` (each box is about 15 tokens), and ms-swift then drops or cuts
    the row. Typical causes: an uncapped region-detection task over a record with hundreds of detector
    boxes (a low ``--score-threshold``, tiling)."""
    out = []
    for name, task_rows in rows.items():
        counts = [(len((row.get('objects') or {}).get('bbox') or []), row.get('record_id')) for row in task_rows]
        many = [c for c in counts if c[0] > MANY_BOXES]
        if many:
            top = max(many, key=lambda c: c[0])
            out.append(f'task {name!r}: {len(many)} row(s) hold more than {MANY_BOXES} boxes (up to {top[0]}, record '
                       f'{top[1]!r}), past a usual --max_length; cap them with max_boxes and prompts_capped in the task, '
                       'or raise the detector\'s --score-threshold')
    return out


def _with_laterality_flag(record: FundusGenRecord, summary: BuildSummary,
                          locations: Optional[Dict[str, str]]) -> FundusGenRecord:
    """The record with its laterality flag (:func:`~fundusexpert_plugin.core.record.flag_laterality`: a
    label's or header's laterality that disagrees with the optic disc) added to ``provenance.flags``,
    so that it is listed in ``flagged_records`` and its chain says so; the flag is also a warning."""
    record, flag = flag_laterality(record)
    if flag is not None:
        where = (locations or {}).get(record.record_id)
        message = f'{where + ": " if where else ""}record {record.record_id!r}: {flag}'
        logger.debug('%s', message)   # listed in BuildSummary.warnings (the CLI prints it once)
        summary.warnings.append(message)
    return record


def _collect(results, rows, summary: BuildSummary, reasons: Counter, lenient: bool) -> None:
    """Fold ``(record, (rows, error, warnings, copy))`` pairs into ``rows`` and ``summary``, in record order."""
    for record, (record_rows, error, warnings, copy) in results:
        summary.warnings.extend(warnings)
        if copy is not None:
            summary.image_copies.append(copy)
        if error is not None:
            if not lenient:
                raise FundusDataError(error[0], reason=error[1])
            logger.debug('skipped: %s', error[0])   # listed in BuildSummary.skipped (the CLI prints it once)
            summary.skipped.append(error[0])
            reasons[error[1]] += 1
            continue
        for name, task_rows in record_rows.items():
            rows[name].extend(task_rows)
        summary.records_used += 1
        if record.provenance.flags:
            summary.flagged_records.append(record.record_id)
        licence = record.provenance.licence
        summary.licences[licence] = summary.licences.get(licence, 0) + 1


def _write_jsonl_atomic(rows: List[dict], path: Path) -> None:
    tmp = write_jsonl(path.with_suffix(path.suffix + '.tmp'), rows)
    os.replace(tmp, path)


def build_sample(out_dir: Path | str, *, seed: int = 0, languages: Sequence[str] = vocab.LANGUAGES,
                 tasks_dir: Optional[Path | str] = None, num_proc: int = 1,
                 marked_max_side: Optional[int] = MARKED_MAX_SIDE, copy_images: bool = False) -> Dict[str, BuildSummary]:
    """Build FundusGen from the bundled sample: ``<out_dir>/train`` and ``<out_dir>/heldout``
    (``copy_images`` as in :func:`build_fundusgen`).

    The sample images, their licence and the FundusGen rows derived from them are CC BY 4.0
    (images) and CC BY-SA 4.0 (boxes); see ``fundusexpert_plugin/sample/LICENSE.md``.
    """
    from fundusexpert_plugin.sample import SAMPLE_DIR, SPLITS, sample_records
    out = Path(out_dir)
    summaries = {}
    for split in SPLITS:
        summaries[split] = build_fundusgen(sample_records(split), out / split, image_dir=SAMPLE_DIR,
                                           seed=seed, languages=languages, tasks_dir=tasks_dir,
                                           num_proc=num_proc, marked_max_side=marked_max_side,
                                           copy_images=copy_images)
    (out / 'LICENSE.md').write_text((SAMPLE_DIR / 'LICENSE.md').read_text(encoding='utf-8'), encoding='utf-8')
    return summaries
