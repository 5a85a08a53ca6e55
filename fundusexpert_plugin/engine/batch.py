"""Batch runs of Fundus-Engine over thousands of photographs: streamed, sharded, resumable.

Per shard ``i`` of ``n`` (``--shard i/n``, or torchrun's ``RANK``/``WORLD_SIZE``), in ``out_dir``:

* ``records-{i}-of-{n}.jsonl``: one FundusGen record per processed photograph, flushed and fsynced
  as it is written;
* ``skipped-{i}-of-{n}.jsonl``: ``{"image", "reason"}`` per photograph that could not be used;
* ``summary-{i}-of-{n}.json``: counts (written at the end of the run).

Photographs are listed in a fixed order (sorted relative paths) and split round-robin, so each shard
always gets the same images. A rerun of the same command skips every photograph already present in
either file and drops a half-written last line left by a kill, so an interrupted-then-resumed run
writes exactly what an uninterrupted run writes. :func:`merge_shards` joins the shards into
``records.jsonl`` (sorted by record id, each id once).
"""
from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.dicom import dicom_record_id, is_dicom, read_dicom, record_id_from_uid
from fundusexpert_plugin.core.images import ImageSkip, load_image, shard
from fundusexpert_plugin.core.jsonl import append_jsonl, read_jsonl, write_jsonl
from fundusexpert_plugin.core.record import FundusDataError, parse_record

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """Counts of one shard's run.

    Attributes:
        shard: ``'i/n'``. images: photographs in this shard. written: records written by this call.
        resumed: photographs found done from an earlier call. skipped: reason -> count (this call).
        no_optic_disc: records written without an optic disc. converted: records whose image was
            converted (mode, bit depth, EXIF rotation). findings: finding id -> boxes written.
    """

    shard: str
    images: int = 0
    written: int = 0
    resumed: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)
    no_optic_disc: int = 0
    converted: int = 0
    findings: Dict[str, int] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> None:
        """Add one processed photograph (a written record or a skip) to the counts."""
        if outcome.kind == 'skipped':
            self.skipped[outcome.category] = self.skipped.get(outcome.category, 0) + 1
            return
        self.written += 1
        self.converted += bool(outcome.converted)
        self.no_optic_disc += bool(outcome.no_optic_disc)
        for label in outcome.findings:
            self.findings[label] = self.findings.get(label, 0) + 1


@dataclass
class Outcome:
    """What one photograph gave: the line for the shard's records or skipped file, and its counts.

    Attributes:
        kind: ``'record'`` (``line`` is the FundusGen record) or ``'skipped'`` (``line`` is
            ``{"image_key", "image", "reason"}``).
        line: the JSON object written as one line.
        category: the intake's skip reason (``'image_unreadable'``, ``'dicom_burned_in'`` ...), for
            :attr:`RunSummary.skipped`.
        converted, no_optic_disc: the record's image was converted / the record has no optic disc.
        findings: finding id of every finding of the record, in record order.
    """

    kind: str
    line: dict
    category: str = ''
    converted: bool = False
    no_optic_disc: bool = False
    findings: Tuple[str, ...] = ()


def shard_from_env(spec: Optional[str] = None) -> Tuple[int, int]:
    """``'i/n'`` -> ``(i, n)``; without a spec, torchrun's ``RANK``/``WORLD_SIZE`` (default ``0/1``).

    Raises:
        ValueError: a malformed spec or ``i >= n``.
    """
    if spec:
        try:
            index, count = (int(v) for v in spec.split('/'))
        except ValueError:
            raise ValueError(f'--shard {spec!r}: expected i/n, e.g. 0/4') from None
    else:
        index, count = int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1))
    if not 0 <= index < count:
        raise ValueError(f'shard {index}/{count}: need 0 <= i < n')
    return index, count


def image_key(path: Path, root: Optional[Path]) -> str:
    """Stable id of a photograph: its path relative to ``root`` without suffix (``'a/0001'``)."""
    rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else Path(path.name)
    return rel.with_suffix('').as_posix()


def record_ids(paths: Sequence[Path], root: Optional[Path], *, dicom_salt: Optional[str] = None) -> List[str]:
    """Record id of every photograph of a job, in order: :func:`image_key`, except for DICOM files
    (``DICM`` at byte 128), whose id is :func:`~fundusexpert_plugin.core.dicom.dicom_record_id` of
    their SOP Instance UID with ``dicom_salt`` (file names may identify the patient). A DICOM file
    whose header cannot be read gets the salted hash of its path, so that its skip is recorded.

    Raises:
        FundusDataError: two photographs share a record id (the first five named), or a DICOM
            file and no ``dicom_salt``.
    """
    keys = []
    for p in paths:
        if not is_dicom(p):
            keys.append(image_key(Path(p), root))
            continue
        if not dicom_salt:
            raise FundusDataError(f'{p}: DICOM file: its record id is a salted hash of its SOP Instance UID; '
                                  'give a salt (--salt / --salt-file)')
        try:
            keys.append(dicom_record_id(p, dicom_salt))
        except ImageSkip:
            keys.append(record_id_from_uid(f'path:{Path(p).resolve()}', dicom_salt))
    dupes = sorted(k for k, n in Counter(keys).items() if n > 1)
    if dupes:
        first = [str(p) for p, k in zip(paths, keys) if k == dupes[0]]
        cause = ('the same SOP Instance UID (0008,0018): one DICOM instance given twice; remove the copy'
                 if dupes[0].startswith('dcm-') else 'the same path without suffix')
        raise FundusDataError(f'{first[0]} and {first[1]} share the record id {dupes[0]!r} ({cause})'
                              + (f'; {len(dupes) - 1} more ids repeat: {dupes[1:5]}' if len(dupes) > 1 else ''))
    return keys


def shard_files(out_dir: Path, index: int, count: int) -> Tuple[Path, Path, Path]:
    """``(records, skipped, summary)`` file of shard ``index`` of ``count`` in ``out_dir``."""
    tag = f'{index}-of-{count}'
    return out_dir / f'records-{tag}.jsonl', out_dir / f'skipped-{tag}.jsonl', out_dir / f'summary-{tag}.json'


def done_keys(out_dir: Path, index: int, count: int) -> Set[str]:
    """Record ids already in shard ``index``'s records or skipped file (an interrupted run's
    half-written last line is cut off first)."""
    records, skipped, _ = shard_files(out_dir, index, count)
    return set(_read_done(records, 'record_id')) | set(_read_done(skipped, 'image_key'))


def write_summary(out_dir: Path, summary: RunSummary) -> Path:
    """Write ``summary-{i}-of-{n}.json`` (and create the shard's records/skipped files when empty)."""
    index, count = (int(v) for v in summary.shard.split('/'))
    records, skipped, path = shard_files(out_dir, index, count)
    records.touch()
    skipped.touch()
    path.write_text(json.dumps(asdict(summary), indent=2) + '\n')
    return path


def _read_done(path: Path, key: str) -> List[str]:
    """Keys of complete lines; a truncated last line (killed mid-write) is cut off the file."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end = raw.rfind(b'\n') + 1
    if good_end != len(raw):
        logger.warning('%s: dropping a half-written last line (%d bytes) from an interrupted run',
                       path, len(raw) - good_end)
        with path.open('r+b') as fh:
            fh.truncate(good_end)
    return [json.loads(line)[key] for line in raw[:good_end].decode('utf-8').splitlines() if line.strip()]


def process_photo(engine, path: Path | str, key: str, out_dir: Path, *, shown: Optional[str] = None,
                  accept_burned_in: bool = False) -> Outcome:
    """Load one photograph and run the engine on it; an unusable image becomes a ``'skipped'`` outcome.

    A DICOM file (``DICM`` at byte 128) is read with :func:`~fundusexpert_plugin.core.dicom.read_dicom`
    and its allowed fields (laterality, pixel spacing) go to the engine; nothing else of the header
    does (refused files are skipped with the reason; burned-in ones too, unless ``accept_burned_in``).

    Args:
        engine: a :class:`.pipeline.FundusEngine`.
        path: the file to read.
        key: its record id (:func:`record_ids`).
        out_dir: the job's output folder (records' ``image`` paths are relative to it).
        shown: the path written to the skipped file (default ``str(path)``; for a DICOM file only its
            record id is written, its name goes to the log on stderr).
        accept_burned_in: use DICOM files with ``BurnedInAnnotation = YES`` (their pixels may show
            text such as the patient's name; :func:`~fundusexpert_plugin.core.dicom.read_dicom`).

    Raises:
        FundusDataError: the detector produced a record that fails validation.
    """
    dicom = None
    if is_dicom(path):  # clinical file names often carry the patient's name: never written to the output
        shown = f'DICOM file, name withheld (record id {key})'
    try:
        if is_dicom(path):  # pixels plus the allowed header fields (laterality, pixel spacing)
            photo = read_dicom(path, accept_burned_in=accept_burned_in)
            image, dicom = photo.image, photo.fields
        else:
            image = load_image(path)
    except ImageSkip as exc:
        reason = str(exc).split(': ', 1)[-1]
        logger.warning('skipped %s: %s', path, reason)
        return Outcome('skipped', {'image_key': key, 'image': shown or str(path), 'reason': reason},
                       category=exc.reason or reason.split(' (')[0])
    record = engine.process(Path(path), out_dir=out_dir, record_id=key, image=image, dicom=dicom)
    return Outcome('record', json.loads(record.model_dump_json()), converted=bool(image.conversion),
                   no_optic_disc=not record.boxes('optic_disc'), findings=tuple(f.label for f in record.findings))


def log_summary(summary: RunSummary) -> None:
    """One INFO line with the shard's counts."""
    logger.info('shard %s: %d written, %d resumed, %d skipped %s, %d without optic disc', summary.shard,
                summary.written, summary.resumed, sum(summary.skipped.values()), summary.skipped,
                summary.no_optic_disc)


def run_engine(engine, images: Sequence[Path], out_dir: Path | str, *, shard_spec: Tuple[int, int] = (0, 1),
               image_root: Optional[Path] = None, progress: bool = True,
               dicom_salt: Optional[str] = None, accept_burned_in: bool = False) -> RunSummary:
    """Process this shard's photographs, appending to the shard files (resumes a previous call).

    Args:
        engine: a :class:`.pipeline.FundusEngine`.
        images: every photograph of the job, in the job's order (the shard is taken here).
        out_dir: output folder (created).
        shard_spec: ``(i, n)``.
        image_root: folder the record ids are relative to (default: ids are file stems).
        progress: show a tqdm bar.
        dicom_salt: salt of the record ids of DICOM files (:func:`record_ids`).
        accept_burned_in: use DICOM files with burned-in annotation (:func:`process_photo`).

    Returns:
        The :class:`RunSummary`, also written to ``summary-{i}-of-{n}.json``.

    Raises:
        FundusDataError: two photographs of the shard share a record id, a DICOM file without
            ``dicom_salt``, or the detector produced a record that fails validation.
    """
    from tqdm import tqdm
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index, count = shard_spec
    mine = shard(list(images), index, count)
    keys = record_ids(mine, image_root, dicom_salt=dicom_salt)
    records_path, skipped_path, _ = shard_files(out, index, count)
    done = done_keys(out, index, count)
    summary = RunSummary(shard=f'{index}/{count}', images=len(mine))
    with records_path.open('a', encoding='utf-8') as rec_fh, skipped_path.open('a', encoding='utf-8') as skip_fh:
        for path, key in tqdm(list(zip(mine, keys)), desc=f'Fundus-Engine shard {summary.shard}', disable=not progress):
            if key in done:
                summary.resumed += 1
                continue
            outcome = process_photo(engine, path, key, out, accept_burned_in=accept_burned_in)
            append_jsonl(rec_fh if outcome.kind == 'record' else skip_fh, outcome.line, fsync=True)
            summary.count(outcome)
    write_summary(out, summary)
    log_summary(summary)
    return summary


def merge_shards(out_dir: Path | str) -> Path:
    """Join ``records-*-of-*.jsonl`` into ``records.jsonl``: sorted by record id, each id once
    (the first shard file in name order wins a duplicate, which the log reports).

    Raises:
        FileNotFoundError: no shard file in ``out_dir``.
    """
    out = Path(out_dir)
    files = sorted(out.glob('records-*-of-*.jsonl'))
    if not files:
        raise FileNotFoundError(f'{out}: no records-*-of-*.jsonl shard files')
    by_id: Dict[str, str] = {}
    duplicates = 0
    for f in files:
        for line_no, obj in read_jsonl(f):
            rid = parse_record(obj, where=f'{f}:{line_no}').record_id
            if rid in by_id:
                duplicates += 1
                continue
            by_id[rid] = obj
    if duplicates:
        logger.warning('merge: %d duplicate record ids dropped', duplicates)
    return write_jsonl(out / 'records.jsonl', (by_id[k] for k in sorted(by_id)))


def read_image_labels(path: Path) -> Dict[str, Dict[str, str]]:
    """``image`` column -> other non-empty columns, validated against the vocabulary.

    Raises:
        ValueError: no ``image`` column, or an unknown label column (file and row named).
    """
    allowed = {'diagnosis', *vocab.GRADE_SCALES}
    out = {}
    with path.open(newline='', encoding='utf-8') as fh:
        reader = csv.DictReader(fh)
        if 'image' not in (reader.fieldnames or []):
            raise ValueError(f'{path}: needs an `image` column; got {reader.fieldnames}')
        unknown = [c for c in reader.fieldnames if c != 'image' and c not in allowed]
        if unknown:
            raise ValueError(f'{path}: unknown label column(s) {unknown}; allowed: {sorted(allowed)}')
        for row in reader:
            out[Path(row['image']).with_suffix('').as_posix()] = {k: v for k, v in row.items() if k != 'image' and v}
    return out
