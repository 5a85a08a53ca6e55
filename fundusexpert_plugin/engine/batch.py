"""Batch runs of Fundus-Engine over thousands of photographs: streamed, sharded, resumable.

Per shard ``i`` of ``n`` (``--shard i/n``, or torchrun's ``RANK``/``WORLD_SIZE``), in ``out_dir``:

* ``records-{i}-of-{n}.jsonl``: one FundusGen record per processed photograph, flushed and fsynced
  as it is written;
* ``skipped-{i}-of-{n}.jsonl``: ``{"image_key", "image", "reason", "category"}`` per attempt at a
  photograph that could not be used (readers take the latest line per ``image_key`` and drop keys
  that have a record: :func:`shard_state`);
* ``summary-{i}-of-{n}.json``: counts of the shard's files, plus what the last call did
  (:class:`RunSummary`);
* ``.running-{i}-of-{n}.json``: ``{"host", "pid"}`` of the call working on the shard, removed when
  the call has finished (:func:`shards_running`); one left behind marks a shard whose last call was
  killed or stopped by an error, so :func:`merge_shard_files` refuses to merge it as if complete;

and once per folder ``engine_options.json``: what the records depend on (:func:`run_options`: the
options that change records, and SHA-256 digests of the ``--images`` path, the image-labels table and the
DICOM salt), written by
the first run; a later run with any of it changed is refused (:func:`check_run_options`).

A photograph's shard is :func:`~fundusexpert_plugin.core.images.shard_of` of its key (path relative
to the image root without suffix, or the file stem for a list: :func:`image_key`), so it stays in
the same shard when photographs are added or removed; shards are roughly, not exactly, balanced. A
rerun of the same command skips every photograph that has a record, retries every one listed as
skipped, and drops a half-written last line left by a kill, so an interrupted-then-resumed run
writes the records an uninterrupted run writes. :func:`merge_shards` joins the shards into
``records.jsonl`` (sorted by record id, each id once) and ``skipped.jsonl``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from fundusexpert_plugin.core.atomic import remove_leftovers
from fundusexpert_plugin.core.dicom import dicom_record_id, is_dicom, read_dicom, record_id_from_uid
from fundusexpert_plugin.core.images import ImageSkip, load_image, shard, shard_of
from fundusexpert_plugin.core.jsonl import append_jsonl, read_jsonl, write_jsonl
from fundusexpert_plugin.core.record import FundusDataError, parse_record
from fundusexpert_plugin.core.recorded_options import check_recorded_options

logger = logging.getLogger(__name__)

#: the file of an output folder that records the options its records were made with
OPTIONS_FILE = 'engine_options.json'

#: :class:`.spec.EngineSpec` fields that change what a record holds -> their command-line option.
#: Not compared: device, MLLM endpoint URL, shard, progress, Ray sizes, --accept-burned-in and
#: --max-image-pixels (they only turn skips into records or records into skips, and skipped
#: photographs are retried anyway).
RECORD_OPTIONS = {
    'config': '--detector', 'checkpoint': '--checkpoint', 'score_threshold': '--score-threshold',
    'tile_size': '--tile-size', 'tile_overlap': '--tile-overlap', 'claim_absent': '--claim-absent',
    'languages': '--languages', 'source_dataset': '--source-dataset', 'licence': '--licence',
    'image_labels': '--image-labels', 'describer': '--describer', 'mllm_model': '--mllm-model',
}
#: What else a folder's records depend on, recorded beside :data:`RECORD_OPTIONS` -> how it is named.
JOB_OPTIONS = {'images_sha256': '--images (SHA-256 of its absolute path)',
               'image_labels_sha256': '--image-labels content (SHA-256 of its rows)',
               'dicom_salt_sha256': 'the DICOM salt (--salt / --salt-file; SHA-256 of the salt)'}


@dataclass
class RunSummary:
    """Counts of one shard: of its files (the same after an interrupted-then-resumed run as after an
    uninterrupted one), and of what the last call did.

    Attributes:
        shard: ``'i/n'``. images: photographs of the job in this shard.
        records: records in the shard's records file. skipped: reason -> photographs listed as
            skipped (latest attempt) that have no record. no_optic_disc: records without an optic
            disc. converted: records whose image was converted (mode, bit depth, EXIF rotation).
            findings: finding id -> boxes in the records.
        written: records written by this call. resumed: photographs that already had a record.
            retried: photographs listed as skipped that this call tried again.
    """

    shard: str
    images: int = 0
    records: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)
    no_optic_disc: int = 0
    converted: int = 0
    findings: Dict[str, int] = field(default_factory=dict)
    written: int = 0
    resumed: int = 0
    retried: int = 0

    def add_record(self, record: dict) -> None:
        """Count one record line (a FundusGen record as a JSON object)."""
        self.records += 1
        self.converted += bool(record.get('provenance', {}).get('stages', {}).get('image'))
        labels = [f['label'] for f in record.get('findings', [])]
        self.no_optic_disc += 'optic_disc' not in labels
        for label in labels:
            self.findings[label] = self.findings.get(label, 0) + 1


@dataclass
class Outcome:
    """What one photograph gave: the line for the shard's records or skipped file.

    Attributes:
        kind: ``'record'`` (``line`` is the FundusGen record) or ``'skipped'`` (``line`` is
            ``{"image_key", "image", "reason", "category"}``, category being the intake's counted
            reason: ``'image_unreadable'``, ``'dicom_burned_in'`` ...).
        line: the JSON object written as one line.
    """

    kind: str
    line: dict


def shard_from_env(spec: Optional[str] = None) -> Tuple[int, int]:
    """``'i/n'`` -> ``(i, n)``; without a spec, torchrun's ``RANK``/``WORLD_SIZE`` (default ``0/1``).

    Raises:
        ValueError: a malformed spec or ``i >= n`` (naming ``--shard`` or the environment variables).
    """
    if spec:
        try:
            index, count = (int(v) for v in spec.split('/'))
        except ValueError:
            raise ValueError(f'--shard {spec!r}: expected i/n, e.g. 0/4') from None
        if not 0 <= index < count:
            raise ValueError(f'--shard {spec}: need 0 <= i < n')
        return index, count
    rank, world = os.environ.get('RANK', '0'), os.environ.get('WORLD_SIZE', '1')
    try:
        index, count = int(rank), int(world)
    except ValueError:
        index = count = -1
    if not 0 <= index < count:
        raise ValueError(f'shard from the environment RANK={rank} WORLD_SIZE={world}: need integers with '
                         '0 <= RANK < WORLD_SIZE (or give --shard i/n)')
    return index, count


def image_key(path: Path, root: Optional[Path]) -> str:
    """Stable id of a photograph: its path relative to ``root`` without suffix (``'a/0001'``); the file
    stem when there is no root or the photograph lies outside it (a list file, a single photograph)."""
    rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else Path(path.name)
    return rel.with_suffix('').as_posix()


def photo_shard(path: Path | str, root: Optional[Path], count: int) -> int:
    """The shard of a photograph among ``count``: :func:`~fundusexpert_plugin.core.images.shard_of` of
    its :func:`image_key` (never its DICOM header, so listing stays cheap). :func:`run_engine` and
    :func:`.ray_runner.run_engine_ray` both shard by it."""
    return shard_of(image_key(Path(path), root), count)


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
                 if dupes[0].startswith('dcm-') else
                 'the same file listed twice; remove one line' if len(set(first)) < len(first) else
                 'the same path without suffix' if root is not None else 'the same file stem (a list names photos by stem)')
        raise FundusDataError(f'{first[0]} and {first[1]} share the record id {dupes[0]!r} ({cause})'
                              + (f'; {len(dupes) - 1} more ids repeat: {dupes[1:5]}' if len(dupes) > 1 else ''))
    return keys


def running_marker(out_dir: Path, index: int, count: int) -> Path:
    """``.running-{i}-of-{n}.json`` of shard ``index`` of ``count`` in ``out_dir``."""
    return out_dir / f'.running-{index}-of-{count}.json'


@contextlib.contextmanager
def shards_running(out_dir: Path, shards: Iterable[Tuple[int, int]]):
    """Mark ``shards`` (``(i, n)`` pairs) as being worked on while the block runs: each marker holds
    this machine's host name and process id. The markers are removed when the block ends normally and
    kept when it raises (or the process is killed): the shard's files are then incomplete."""
    markers = [running_marker(out_dir, i, n) for i, n in shards]
    for marker in markers:
        marker.write_text(json.dumps({'host': socket.gethostname(), 'pid': os.getpid()}) + '\n')
    yield
    for marker in markers:
        marker.unlink(missing_ok=True)


def _marker_state(marker: Path) -> Tuple[str, str]:
    """``('running' | 'stopped' | 'elsewhere', description)`` of a running marker."""
    try:
        info = json.loads(marker.read_text())
        host, pid = str(info['host']), int(info['pid'])
    except (OSError, ValueError, KeyError, TypeError):
        return 'stopped', 'an unreadable marker'
    if host != socket.gethostname():
        return 'elsewhere', f'process {pid} on host {host}'
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return 'stopped', f'process {pid}, no longer running'
    except PermissionError:
        pass
    return 'running', f'process {pid} on this machine'


def shard_files(out_dir: Path, index: int, count: int) -> Tuple[Path, Path, Path]:
    """``(records, skipped, summary)`` file of shard ``index`` of ``count`` in ``out_dir``."""
    tag = f'{index}-of-{count}'
    return out_dir / f'records-{tag}.jsonl', out_dir / f'skipped-{tag}.jsonl', out_dir / f'summary-{tag}.json'


def shard_state(out_dir: Path, index: int, count: int) -> Tuple[Set[str], Dict[str, dict]]:
    """What shard ``index`` of ``count`` holds: ``(record ids of its records file, image key -> latest
    skipped line of the photographs without a record)``. An interrupted run's half-written last line
    is cut off each file first."""
    records, skipped, _ = shard_files(out_dir, index, count)
    done = {obj['record_id'] for obj in _read_lines(records)}
    return done, latest_skips(_read_lines(skipped), done)


def latest_skips(lines: Iterable[dict], done: Set[str]) -> Dict[str, dict]:
    """Skipped-file lines -> image key -> its latest line, leaving out keys in ``done`` (photographs
    that have a record by now)."""
    latest = {}
    for line in lines:
        latest[line['image_key']] = line
    return {k: v for k, v in latest.items() if k not in done}


def skip_category(line: dict) -> str:
    """The counted reason of a skipped line (``category``; lines written before it was recorded: the
    reason's text up to its first parenthesis)."""
    return line.get('category') or line['reason'].split(' (')[0]


def shard_summary(out_dir: Path, index: int, count: int, *, images: int = 0, written: int = 0, resumed: int = 0,
                  retried: int = 0) -> RunSummary:
    """The :class:`RunSummary` of shard ``index`` of ``count`` from its files (counts sorted by key),
    with the given counts of the call."""
    records, skipped, _ = shard_files(out_dir, index, count)
    summary = RunSummary(shard=f'{index}/{count}', images=images, written=written, resumed=resumed, retried=retried)
    done = set()
    for obj in _read_lines(records):
        summary.add_record(obj)
        done.add(obj['record_id'])
    reasons = Counter(skip_category(line) for line in latest_skips(_read_lines(skipped), done).values())
    summary.skipped = dict(sorted(reasons.items()))
    summary.findings = dict(sorted(summary.findings.items()))
    return summary


def write_summary(out_dir: Path, summary: RunSummary) -> Path:
    """Write ``summary-{i}-of-{n}.json`` (and create the shard's records/skipped files when empty)."""
    index, count = (int(v) for v in summary.shard.split('/'))
    records, skipped, path = shard_files(out_dir, index, count)
    records.touch()
    skipped.touch()
    path.write_text(json.dumps(asdict(summary), indent=2) + '\n')
    return path


def run_options(spec, images: Path | str | None = None, *, dicom_salt: Optional[str] = None) -> Dict[str, object]:
    """What the records of a job depend on, as JSON values: the options of an :class:`.spec.EngineSpec`
    that change records (:data:`RECORD_OPTIONS`; paths absolute as the spec holds them, the describer
    resolved), the digest of the image-labels table (:meth:`.labels.ImageLabels.digest`, ``None``
    without one) and (:data:`JOB_OPTIONS`) SHA-256 digests of the job's ``--images`` (folder, list
    file or photograph; absolute path), whose paths the record ids are made from, and of the DICOM
    salt the ids of DICOM files are made with (``None`` without DICOM files). Paths and salt are
    recorded as digests only: folder and file names of clinical exports often carry patient names,
    and the output folder is what gets shared.

    Raises:
        FileNotFoundError, FundusDataError: the image-labels table is missing or bad
            (:func:`.labels.read_image_labels`).
    """
    from fundusexpert_plugin.engine.labels import read_image_labels
    values = {name: getattr(spec, name) for name in RECORD_OPTIONS}
    values['describer'] = spec.describer_kind
    values['image_labels_sha256'] = read_image_labels(spec.image_labels).digest() if spec.image_labels else None
    if images is not None:
        values['images_sha256'] = _sha256(str(Path(images).resolve()))
    values['dicom_salt_sha256'] = _sha256(dicom_salt) if dicom_salt else None
    return json.loads(json.dumps(values))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def _upgrade(recorded: Dict[str, object], options: Dict[str, object]) -> Dict[str, object]:
    """A folder recorded by an earlier version: its plain ``images`` path becomes ``images_sha256``; a
    salt that was not recorded is taken to be the current one."""
    if 'images' in recorded:
        recorded['images_sha256'] = _sha256(str(recorded.pop('images')))
        recorded.setdefault('dicom_salt_sha256', options.get('dicom_salt_sha256'))
    return recorded


def check_run_options(out_dir: Path | str, options: Dict[str, object]) -> Path:
    """Record ``options`` (:func:`run_options`) in ``<out_dir>/engine_options.json`` on the first run, or
    check them against the recorded ones (:func:`~fundusexpert_plugin.core.recorded_options.check_recorded_options`:
    written atomically, so of several shards or an ``engine ray`` driver starting at once one writes it
    and every other compares with it; while the folder holds no record and no skip yet, other options
    replace the recorded ones).

    Raises:
        FundusDataError: an option differs from the recorded one (each named, old -> new): the
            folder's records were made with other options, and resuming would mix them.
    """
    out = Path(out_dir)
    started = any(f.stat().st_size for pattern in ('records-*-of-*.jsonl', 'skipped-*-of-*.jsonl')
                  for f in out.glob(pattern))
    return check_recorded_options(out / OPTIONS_FILE, options, names={**RECORD_OPTIONS, **JOB_OPTIONS},
                                  has_outputs=started, upgrade=lambda recorded: _upgrade(recorded, options),
                                  advice='give a new --out (or the recorded options to resume)')


def _read_lines(path: Path) -> List[dict]:
    """Objects of complete lines; a truncated last line (killed mid-write) is cut off the file."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end = raw.rfind(b'\n') + 1
    if good_end != len(raw):
        logger.warning('%s: dropping a half-written last line (%d bytes) from an interrupted run',
                       path, len(raw) - good_end)
        with path.open('r+b') as fh:
            fh.truncate(good_end)
    return [json.loads(line) for line in raw[:good_end].decode('utf-8').splitlines() if line.strip()]


def check_shard_complete(path: Path) -> None:
    """Refuse a shard file whose last line has no line end: the run writing it was interrupted in the
    middle of a write (the line :func:`_read_lines` drops when the run is resumed).

    Raises:
        FundusDataError: ``<file>:<line>: half-written last line ...``, saying to rerun ``engine run``
            (or ``engine ray``) with the same options and ``--out`` to complete the shard.
    """
    raw = path.read_bytes()
    if raw and not raw.endswith(b'\n'):
        line = raw.count(b'\n') + 1
        raise FundusDataError(f'{path}:{line}: half-written last line (the run writing this shard '
                              'was interrupted); rerun `fundusexpert engine run` (or `engine ray`) with the same '
                              'options and --out to complete the shard, then merge again')


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
        return Outcome('skipped', {'image_key': key, 'image': shown or str(path), 'reason': reason,
                                   'category': exc.reason or reason.split(' (')[0]})
    record = engine.process(Path(path), out_dir=out_dir, record_id=key, image=image, dicom=dicom)
    return Outcome('record', json.loads(record.model_dump_json()))


def log_summary(summary: RunSummary) -> None:
    """One INFO line with the shard's counts."""
    logger.info('shard %s: %d records (%d written, %d resumed, %d retried), %d skipped %s, %d without optic disc',
                summary.shard, summary.records, summary.written, summary.resumed, summary.retried,
                sum(summary.skipped.values()), summary.skipped, summary.no_optic_disc)


def run_engine(engine, images: Sequence[Path], out_dir: Path | str, *, shard_spec: Tuple[int, int] = (0, 1),
               image_root: Optional[Path] = None, progress: bool = True, dicom_salt: Optional[str] = None,
               accept_burned_in: bool = False, options: Optional[Dict[str, object]] = None) -> RunSummary:
    """Process this shard's photographs, appending to the shard files (resumes a previous call:
    photographs with a record are left alone, those listed as skipped are tried again).

    Args:
        engine: a :class:`.pipeline.FundusEngine`.
        images: every photograph of the job, in the job's order (the shard, :func:`photo_shard`, is
            taken here).
        out_dir: output folder (created).
        shard_spec: ``(i, n)``.
        image_root: folder the record ids are relative to (default: ids are file stems).
        progress: show a tqdm bar.
        dicom_salt: salt of the record ids of DICOM files (:func:`record_ids`).
        accept_burned_in: use DICOM files with burned-in annotation (:func:`process_photo`).
        options: the engine's record-changing options (:func:`run_options`), checked against the
            folder's (:func:`check_run_options`); ``None``: not checked.

    Returns:
        The :class:`RunSummary`, also written to ``summary-{i}-of-{n}.json``.

    Raises:
        FundusDataError: ``options`` differ from the folder's, two photographs of the shard share a
            record id, a DICOM file without ``dicom_salt``, or the detector produced a record that
            fails validation.
        TypeError: ``images`` is one path, not a sequence of paths.
    """
    from tqdm import tqdm
    if isinstance(images, (str, os.PathLike)):
        raise TypeError(f'images: a sequence of photograph paths, got one path {str(images)!r}; pass [path] for '
                        'one photograph, or core.images.list_images(folder) for a folder')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if options is not None:
        check_run_options(out, options)
    index, count = shard_spec
    mine = shard(list(images), index, count, key=lambda p: image_key(Path(p), image_root))
    keys = record_ids(mine, image_root, dicom_salt=dicom_salt)
    records_path, skipped_path, _ = shard_files(out, index, count)
    done, skips = shard_state(out, index, count)
    written = resumed = retried = 0
    with shards_running(out, [(index, count)]):
        with records_path.open('a', encoding='utf-8') as rec_fh, skipped_path.open('a', encoding='utf-8') as skip_fh:
            for path, key in tqdm(list(zip(mine, keys)), desc=f'Fundus-Engine shard {index}/{count}',
                                  disable=not progress):
                if key in done:
                    resumed += 1
                    continue
                retried += key in skips
                outcome = process_photo(engine, path, key, out, accept_burned_in=accept_burned_in)
                if outcome.kind == 'record':
                    append_jsonl(rec_fh, outcome.line, fsync=True)
                    written += 1
                elif outcome.line != skips.get(key):  # the same skip again is not repeated
                    append_jsonl(skip_fh, outcome.line, fsync=True)
        summary = shard_summary(out, index, count, images=len(mine), written=written, resumed=resumed,
                                retried=retried)
        write_summary(out, summary)
    log_summary(summary)
    return summary


@dataclass
class MergeSummary:
    """What :func:`merge_shard_files` wrote.

    Attributes:
        records_path, skipped_path: ``records.jsonl`` and ``skipped.jsonl`` of the folder.
        records: records written. skipped: reason -> photographs skipped (latest attempt) without a
            record in any shard. duplicates: record ids found in more than one line (one kept).
        differing: of those, ids whose lines differ. first_differing: the first such id.
    """

    records_path: Path
    skipped_path: Path
    records: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    differing: int = 0
    first_differing: Optional[str] = None

    def line(self) -> str:
        """One line for the console: ``13 records, 1 skipped (image_unreadable 1)``."""
        reasons = ', '.join(f'{k} {v}' for k, v in self.skipped.items())
        return (f'{self.records} records, {sum(self.skipped.values())} skipped' + (f' ({reasons})' if reasons else '')
                + (f', {self.duplicates} duplicate record ids dropped' if self.duplicates else ''))


def _shard_problems(out: Path, files: Sequence[Path]) -> Tuple[List[str], List[str], bool]:
    """``(running, incomplete, remote)``: shards being written on this machine now, reasons the folder's
    shard set is incomplete (mixed shard counts, a shard of the set with no files, a shard whose last
    call did not finish), one sentence each, and whether a shard has not finished on another machine."""
    present: Dict[int, Set[int]] = {}
    for f in files:
        index, count = (int(v) for v in f.name[len('records-'):-len('.jsonl')].split('-of-'))
        present.setdefault(count, set()).add(index)
    running, incomplete, remote = [], [], False
    if len(present) > 1:
        incomplete.append('shard files of different shard counts (' + ', '.join(
            f'{i}/{n}' for n, idx in sorted(present.items()) for i in sorted(idx))
            + '): photographs fall in other shards for each count, so the sets overlap and may each be partial')
    for count, indices in sorted(present.items()):
        missing = [i for i in range(count) if i not in indices]
        if missing:
            incomplete.append(f'no files of shard(s) {", ".join(f"{i}/{count}" for i in missing)}: run '
                              f'`fundusexpert engine run --shard {missing[0]}/{count}` with the same options first')
    for marker in sorted(out.glob('.running-*-of-*.json')):
        tag = marker.name[len('.running-'):-len('.json')].replace('-of-', '/')
        state, who = _marker_state(marker)
        if state == 'running':
            running.append(f'shard {tag} is being written now ({who})')
        elif state == 'elsewhere':
            remote = True
            incomplete.append(f'shard {tag} has not finished on the machine that runs it ({who}): wait for it, or, '
                              'if it was stopped, rerun it with the same options and --out')
        else:
            incomplete.append(f'shard {tag} did not finish (its last run, {who}, was interrupted or stopped by an '
                              'error): rerun it with the same options and --out to complete it')
    return running, incomplete, remote


def merge_shard_files(out_dir: Path | str, *, partial: bool = False) -> MergeSummary:
    """Join ``records-*-of-*.jsonl`` into ``records.jsonl`` (sorted by record id, each id once: the
    first shard file in name order wins a duplicate) and ``skipped-*-of-*.jsonl`` into
    ``skipped.jsonl`` (sorted by image key; the latest line per photograph, none for a photograph
    that has a record). Duplicate ids are logged; one line warns when their contents differ (count
    and first id).

    A shard file whose last line is half-written (its run was killed mid-write) is refused, not
    merged: the run that writes it drops that line and processes the photograph again when it is
    rerun, so merging first would leave the photograph out (:func:`check_shard_complete`). The
    shard files are only read; the hidden ``.part`` files a killed run left in ``<out_dir>/images``
    (:func:`~fundusexpert_plugin.core.atomic.remove_leftovers`) are removed.

    The shard set must be complete (ours): one shard count, every shard ``0..n-1`` present, and no
    shard whose last call did not finish (a ``.running-*`` marker, :func:`shards_running`). Else the
    merge is refused, naming each problem; ``partial=True`` merges what is there with one warning.
    A shard being written on this machine now is always refused: merging removes the ``.part`` files
    its images are being written to.

    Raises:
        FileNotFoundError: no shard file in ``out_dir``.
        FundusDataError: a shard is running, the shard set is incomplete (without ``partial``), a
            half-written last line (rerun ``engine run`` with the same options to complete the
            shard), or a shard line that is not a valid record (file and line named).
    """
    out = Path(out_dir)
    files = sorted(out.glob('records-*-of-*.jsonl'))
    if not files:
        raise FileNotFoundError(f'{out}: no records-*-of-*.jsonl shard files')
    running, incomplete, remote = _shard_problems(out, files)
    if running:
        raise FundusDataError(f'{out}: ' + '; '.join(running) + '; merge when it has finished')
    if incomplete and not partial:
        raise FundusDataError(f'{out}: the shards are incomplete: ' + '; '.join(incomplete)
                              + ' (engine merge --partial merges what is there)')
    if incomplete:
        logger.warning('merge --partial: %s', '; '.join(incomplete))
    for f in files + sorted(out.glob('skipped-*-of-*.jsonl')):
        check_shard_complete(f)
    # no shard is running here (checked above); one on another machine may be (--partial): keep them
    leftovers = 0 if remote else remove_leftovers(out / 'images')
    if leftovers:
        logger.info('merge: removed %d partly written image file(s) of killed runs from %s', leftovers, out / 'images')
    by_id: Dict[str, dict] = {}
    where: Dict[str, str] = {}
    summary = MergeSummary(out / 'records.jsonl', out / 'skipped.jsonl')
    differing: Set[str] = set()
    for f in files:
        for line_no, obj in read_jsonl(f):
            rid = parse_record(obj, where=f'{f}:{line_no}').record_id
            if rid in by_id:
                summary.duplicates += 1
                if obj != by_id[rid] and rid not in differing:
                    if not differing:
                        summary.first_differing, first_where = rid, (where[rid], f'{f.name}:{line_no}')
                    differing.add(rid)
                continue
            by_id[rid] = obj
            where[rid] = f'{f.name}:{line_no}'
    summary.differing = len(differing)
    if summary.differing:
        logger.warning('merge: %d record id(s) appear in several lines with different contents (first: %r, kept %s, '
                       'dropped %s); were the shards run with other options or shard counts?', summary.differing,
                       summary.first_differing, *first_where)
    elif summary.duplicates:
        logger.info('merge: %d duplicate record ids (identical lines) dropped', summary.duplicates)
    skip_lines = [line for f in sorted(out.glob('skipped-*-of-*.jsonl')) for line in _read_lines(f)]
    skips = latest_skips(skip_lines, set(by_id))
    summary.skipped = dict(sorted(Counter(skip_category(line) for line in skips.values()).items()))
    summary.records = len(by_id)
    write_jsonl(summary.records_path, (by_id[k] for k in sorted(by_id)))
    write_jsonl(summary.skipped_path, (skips[k] for k in sorted(skips)))
    return summary


def merge_shards(out_dir: Path | str, *, partial: bool = False) -> Path:
    """:func:`merge_shard_files`; returns the path of ``records.jsonl``.

    Raises:
        FileNotFoundError: no shard file in ``out_dir``.
        FundusDataError: as :func:`merge_shard_files`.
    """
    return merge_shard_files(out_dir, partial=partial).records_path
