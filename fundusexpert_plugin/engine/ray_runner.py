"""Fundus-Engine over a Ray cluster: detector and expansion as Ray Data batch actors.

Optional: needs the ``cluster`` extra (``pip install 'fundusexpert-plugin[cluster]'``, i.e.
``ray[data]``); ray is imported only inside :func:`run_engine_ray`. For the GPUs or processes of one
machine the plain ``fundusexpert engine run --shard i/n`` (or torchrun's ``RANK``/``WORLD_SIZE``,
:mod:`.batch`) is enough; use this module when the photographs should spread over several nodes::

    from fundusexpert_plugin.core.images import list_images
    from fundusexpert_plugin.engine.ray_runner import run_engine_ray
    from fundusexpert_plugin.engine.spec import EngineSpec
    images = list_images('/shared/photos')
    run_engine_ray(EngineSpec('det/rtmdet.py', 'det/rtmdet.pth', device='auto'), images, '/shared/engine_out',
                   num_actors=16, num_gpus_per_actor=0.5, image_root='/shared/photos')

or ``fundusexpert engine ray --images ... --detector ... --checkpoint ... --out ...``.

Data flow: the driver lists the photographs (in the job's order) and hands ``(index, path, record
id)`` rows to a Ray Data ``map_batches`` over a pool of ``num_actors`` actors. Each actor calls
``make_engine()`` once (so the detector is loaded once per actor, on the GPU share Ray gives it) and
runs :meth:`.pipeline.FundusEngine.process` on every photograph of a batch. The driver streams the
results back and appends them to the same shard files :func:`.batch.run_engine` writes: each
photograph goes to shard :func:`.batch.photo_shard` (the stable hash of its key that ``--shard i/n``
uses), so ``records-{i}-of-{n}.jsonl`` / ``skipped-{i}-of-{n}.jsonl`` / ``summary-{i}-of-{n}.json``
hold the photographs of a single-process run's shards, and the merged ``records.jsonl``
(:func:`.batch.merge_shards`: sorted by record id, duplicates dropped) is byte-identical to it. A
rerun of the same call skips every photograph that has a record and retries those listed as
skipped (a half-written last line from a kill is cut off first), so an interrupted job resumes; the
folder's ``engine_options.json`` refuses a rerun with other record-changing options
(:func:`.batch.check_run_options`).

Shared storage: the workers read the photographs and, for converted images (greyscale, 16-bit,
EXIF-rotated), write an upright copy under ``<out_dir>/images/``; the driver writes the shard files.
On a multi-node cluster ``images`` and ``out_dir`` must therefore be the same paths on every node
(NFS, Lustre, a mounted bucket). Records keep ``image`` relative to ``out_dir``, as in a local run.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from fundusexpert_plugin.core.jsonl import dumps
from fundusexpert_plugin.engine.batch import (RunSummary, check_run_options, log_summary, merge_shards, photo_shard,
                                              process_photo, record_ids, run_options, shard_files, shard_state,
                                              shard_summary, shards_running, write_summary)
from fundusexpert_plugin.engine.spec import EngineSpec

logger = logging.getLogger(__name__)

#: install hint used in the ImportError
INSTALL_HINT = "pip install 'fundusexpert-plugin[cluster]'  (or: pip install 'ray[data]')"

_COLUMNS = ('index', 'kind', 'line')


class EngineActor:
    """Ray Data callable class: one engine per actor, one call per batch of photographs.

    Args:
        make_engine: picklable zero-argument factory returning a :class:`.pipeline.FundusEngine`
            (e.g. an :class:`.spec.EngineSpec`).
        out_dir: the job's output folder (records' ``image`` paths are relative to it).
        accept_burned_in: use DICOM files with burned-in annotation (:func:`.batch.process_photo`).
    """

    def __init__(self, make_engine: Callable[[], object], out_dir: str, accept_burned_in: bool = False) -> None:
        self.engine = make_engine()
        self.out_dir = Path(out_dir)
        self.accept_burned_in = accept_burned_in

    def __call__(self, batch: Dict[str, Sequence]) -> Dict[str, List]:
        """Process a batch with :func:`.batch.process_photo`.

        Args:
            batch: columns ``index`` (position in the job), ``path`` (absolute, to read), ``shown``
                (the path as the caller gave it, for the skipped file) and ``key`` (record id).

        Returns:
            Columns ``index``, ``kind`` (``'record'`` or ``'skipped'``) and ``line``: the jsonl line
            exactly as :func:`.batch.run_engine` writes it.

        Raises:
            FundusDataError: the detector produced a record that fails validation (fails the job,
                as in :func:`.batch.run_engine`).
        """
        out = {name: [] for name in _COLUMNS}
        for index, path, shown, key in zip(batch['index'], batch['path'], batch['shown'], batch['key']):
            outcome = process_photo(self.engine, str(path), str(key), self.out_dir, shown=str(shown),
                                    accept_burned_in=self.accept_burned_in)
            out['index'].append(int(index))
            out['kind'].append(outcome.kind)
            out['line'].append(dumps(outcome.line))
        return out


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the `data` extra)
    except ImportError as exc:
        raise ImportError(f'run_engine_ray needs Ray Data ({exc}); install it with: {INSTALL_HINT}') from None
    return ray


def run_engine_ray(make_engine: Callable[[], object], images: Sequence[Path | str], out_dir: Path | str, *,
                   num_actors: int = 2, batch_size: int = 8, num_shards: Optional[int] = None,
                   image_root: Optional[Path | str] = None, num_cpus_per_actor: float = 1.0,
                   num_gpus_per_actor: float = 0.0, ray_address: Optional[str] = None,
                   merge: bool = True, progress: bool = False, dicom_salt: Optional[str] = None,
                   accept_burned_in: bool = False, options: Optional[Dict[str, object]] = None) -> Dict[str, RunSummary]:
    """Run Fundus-Engine over ``images`` on Ray and write the shard files of :mod:`.batch`.

    Args:
        make_engine: picklable zero-argument factory called once per actor, returning a
            :class:`.pipeline.FundusEngine` (e.g. an :class:`.spec.EngineSpec`, or
            ``functools.partial(FundusEngine, detector)`` for a light detector).
        images: every photograph of the job, in the job's order (e.g. :func:`.images.list_images`).
        out_dir: output folder (created); on a multi-node cluster a path shared by all nodes.
        num_actors: size of the actor pool (one engine each).
        batch_size: photographs per actor call.
        num_shards: number of shard files; default ``num_actors``. Any value gives the same merged
            ``records.jsonl``; keep it fixed across reruns of a job so that resuming finds its files.
        image_root: folder the record ids are relative to (default: ids are file stems), as in
            :func:`.batch.run_engine`.
        num_cpus_per_actor, num_gpus_per_actor: Ray resources per actor (``0.5`` GPUs puts two
            detectors on one GPU).
        ray_address: ``ray.init(address=...)`` when Ray is not initialised yet (``'auto'`` joins a
            running cluster; ``None`` uses ``$RAY_ADDRESS`` or starts a local instance). An
            already initialised Ray is used as is.
        merge: also write the merged ``records.jsonl`` (:func:`.batch.merge_shards`).
        progress: show Ray Data's progress bars.
        dicom_salt: salt of the record ids of DICOM files, as in :func:`.batch.run_engine`.
        accept_burned_in: use DICOM files with burned-in annotation, as in :func:`.batch.run_engine`.
        options: record-changing options checked against the folder's, as in :func:`.batch.run_engine`;
            default: :func:`.batch.run_options` of ``make_engine`` (and ``image_root``) when it is an
            :class:`.spec.EngineSpec`, else not checked.

    Returns:
        ``{'i/n': RunSummary}`` per shard (also written to ``summary-{i}-of-{n}.json``).

    Raises:
        ImportError: Ray Data is not installed (the message gives the install command).
        ValueError: ``num_actors``, ``batch_size`` or ``num_shards`` below 1.
        FundusDataError: ``options`` differ from the folder's, or two photographs share a record id. An invalid record produced in an actor
            (:meth:`EngineActor.__call__`) fails the job with Ray Data's error wrapping the
            FundusDataError; the shard files keep what was written, so a rerun resumes.
    """
    for name, value in (('num_actors', num_actors), ('batch_size', batch_size), ('num_shards', num_shards or 1)):
        if int(value) < 1:
            raise ValueError(f'run_engine_ray: {name} = {value}; expected >= 1')
    ray = _import_ray()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if options is None and isinstance(make_engine, EngineSpec):
        options = run_options(make_engine, images=image_root, dicom_salt=dicom_salt)
    if options is not None:
        check_run_options(out, options)
    root = Path(image_root) if image_root is not None else None
    paths = [Path(p) for p in images]
    keys = record_ids(paths, root, dicom_salt=dicom_salt)  # ids exactly as run_engine computes them
    n = int(num_shards or num_actors)
    states = [shard_state(out, i, n) for i in range(n)]
    counts = [{'images': 0, 'written': 0, 'resumed': 0, 'retried': 0} for _ in range(n)]
    todo, where = [], {}
    for index, (path, key) in enumerate(zip(paths, keys)):
        shard_index = photo_shard(path, root, n)  # as run_engine's shard
        done, skips = states[shard_index]
        counts[shard_index]['images'] += 1
        if key in done:
            counts[shard_index]['resumed'] += 1
            continue
        counts[shard_index]['retried'] += key in skips
        where[index] = (shard_index, skips.get(key))
        # workers may run in another folder: relative paths are made absolute (not resolved)
        todo.append({'index': index, 'path': str(path) if path.is_absolute() else os.path.abspath(path),
                     'shown': str(path), 'key': key})
    logger.info('Fundus-Engine on Ray: %d photographs, %d to do, %d actors, %d shards', len(paths), len(todo),
                num_actors, n)
    with shards_running(out, [(i, n) for i in range(n)]):  # a killed run's markers are replaced, then removed
        if todo:
            if not ray.is_initialized():
                ray.init(address=ray_address, include_dashboard=False)
            ray.data.DataContext.get_current().enable_progress_bars = progress
            dataset = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo), 4 * int(num_actors))))
            results = dataset.map_batches(
                EngineActor, fn_constructor_kwargs={'make_engine': make_engine, 'out_dir': str(out),
                                                    'accept_burned_in': accept_burned_in},
                batch_size=int(batch_size), batch_format='numpy',
                compute=ray.data.ActorPoolStrategy(size=int(num_actors)),
                num_cpus=num_cpus_per_actor, num_gpus=num_gpus_per_actor or None)
            _write_results(results, out, n, where, counts)
        summaries = [shard_summary(out, i, n, **counts[i]) for i in range(n)]
        for summary in summaries:
            write_summary(out, summary)
            log_summary(summary)
    if merge:
        merge_shards(out)
    return {s.shard: s for s in summaries}


def _write_results(results, out: Path, n: int, where: Dict[int, tuple], counts: List[Dict[str, int]]) -> None:
    """Stream the actors' batches into the shard files (one flush + fsync per batch, not per line).

    ``where``: job index -> (shard, the photograph's latest skipped line or ``None``): a skip equal to
    it is not written again. ``counts[shard]['written']`` counts the records written.
    """
    handles = {}
    try:
        for i in range(n):
            records, skipped, _ = shard_files(out, i, n)
            handles[i, 'record'] = records.open('a', encoding='utf-8')
            handles[i, 'skipped'] = skipped.open('a', encoding='utf-8')
        for batch in results.iter_batches(batch_size=None, batch_format='numpy'):
            touched = set()
            for j in range(len(batch['index'])):
                shard_index, old_skip = where[int(batch['index'][j])]
                kind, line = str(batch['kind'][j]), str(batch['line'][j])
                if kind == 'record':
                    counts[shard_index]['written'] += 1
                elif old_skip is not None and json.loads(line) == old_skip:
                    continue  # the same skip again is not repeated
                fh = handles[shard_index, kind]
                fh.write(line + '\n')
                touched.add(fh)
            for fh in touched:
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        for fh in handles.values():
            fh.close()
