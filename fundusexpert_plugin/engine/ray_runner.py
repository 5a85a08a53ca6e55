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
results back and appends them to the same shard files :func:`.batch.run_engine` writes: the
photograph at position ``k`` goes to shard ``k % num_shards`` (round-robin, as ``--shard i/n``), so
``records-{i}-of-{n}.jsonl`` / ``skipped-{i}-of-{n}.jsonl`` / ``summary-{i}-of-{n}.json`` and the
merged ``records.jsonl`` (:func:`.batch.merge_shards`: sorted by record id, duplicates dropped) are
byte-identical to a single-process run. A rerun of the same call skips every photograph already in
a shard file (a half-written last line from a kill is cut off first), so an interrupted job resumes.

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
from fundusexpert_plugin.engine.batch import (Outcome, RunSummary, done_keys, log_summary, merge_shards,
                                              process_photo, record_ids, shard_files, write_summary)

logger = logging.getLogger(__name__)

#: install hint used in the ImportError
INSTALL_HINT = "pip install 'fundusexpert-plugin[cluster]'  (or: pip install 'ray[data]')"

_COLUMNS = ('index', 'kind', 'line', 'category', 'converted', 'no_optic_disc', 'findings')


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
            One column per :class:`.batch.Outcome` field plus ``index``: ``line`` is the jsonl line
            exactly as :func:`.batch.run_engine` writes it, ``findings`` a JSON list of finding ids.

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
            out['category'].append(outcome.category)
            out['converted'].append(outcome.converted)
            out['no_optic_disc'].append(outcome.no_optic_disc)
            out['findings'].append(dumps(list(outcome.findings)))
        return out


def _outcome(batch: Dict[str, Sequence], j: int) -> Outcome:
    """Row ``j`` of an :class:`EngineActor` result batch back as an Outcome (``line`` left out)."""
    return Outcome(str(batch['kind'][j]), {}, category=str(batch['category'][j]),
                   converted=bool(batch['converted'][j]), no_optic_disc=bool(batch['no_optic_disc'][j]),
                   findings=tuple(json.loads(str(batch['findings'][j]))))


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
                   merge: bool = True, progress: bool = False,
                   dicom_salt: Optional[str] = None, accept_burned_in: bool = False) -> Dict[str, RunSummary]:
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

    Returns:
        ``{'i/n': RunSummary}`` per shard (also written to ``summary-{i}-of-{n}.json``).

    Raises:
        ImportError: Ray Data is not installed (the message gives the install command).
        ValueError: ``num_actors``, ``batch_size`` or ``num_shards`` below 1.
        FundusDataError: two photographs share a record id. An invalid record produced in an actor
            (:meth:`EngineActor.__call__`) fails the job with Ray Data's error wrapping the
            FundusDataError; the shard files keep what was written, so a rerun resumes.
    """
    for name, value in (('num_actors', num_actors), ('batch_size', batch_size), ('num_shards', num_shards or 1)):
        if int(value) < 1:
            raise ValueError(f'run_engine_ray: {name} = {value}; expected >= 1')
    ray = _import_ray()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = Path(image_root) if image_root is not None else None
    paths = [Path(p) for p in images]
    keys = record_ids(paths, root, dicom_salt=dicom_salt)  # ids exactly as run_engine computes them
    n = int(num_shards or num_actors)
    summaries = [RunSummary(shard=f'{i}/{n}') for i in range(n)]
    done = [done_keys(out, i, n) for i in range(n)]
    todo = []
    for index, (path, key) in enumerate(zip(paths, keys)):  # round-robin, as run_engine's shard()
        summaries[index % n].images += 1
        if key in done[index % n]:
            summaries[index % n].resumed += 1
        else:
            # workers may run in another folder: relative paths are made absolute (not resolved)
            todo.append({'index': index, 'path': str(path) if path.is_absolute() else os.path.abspath(path),
                         'shown': str(path), 'key': key})
    logger.info('Fundus-Engine on Ray: %d photographs, %d to do, %d actors, %d shards', len(paths), len(todo),
                num_actors, n)
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
        _write_results(results, out, summaries)
    for summary in summaries:
        write_summary(out, summary)
        log_summary(summary)
    if merge:
        merge_shards(out)
    return {s.shard: s for s in summaries}


def _write_results(results, out: Path, summaries: List[RunSummary]) -> None:
    """Stream the actors' batches into the shard files (one flush + fsync per batch, not per line)."""
    n = len(summaries)
    handles = {}
    try:
        for i in range(n):
            records, skipped, _ = shard_files(out, i, n)
            handles[i, 'record'] = records.open('a', encoding='utf-8')
            handles[i, 'skipped'] = skipped.open('a', encoding='utf-8')
        for batch in results.iter_batches(batch_size=None, batch_format='numpy'):
            touched = set()
            for j in range(len(batch['index'])):
                shard_index = int(batch['index'][j]) % n
                outcome = _outcome(batch, j)
                fh = handles[shard_index, outcome.kind]
                fh.write(str(batch['line'][j]) + '\n')
                touched.add(fh)
                summaries[shard_index].count(outcome)
            for fh in touched:
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        for fh in handles.values():
            fh.close()
