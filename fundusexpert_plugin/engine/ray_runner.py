"""Fundus-Engine over a Ray cluster: detector and expansion as Ray Data batch actors.

Optional: needs the ``cluster`` extra (``pip install 'fundusexpert-plugin[cluster]'``, i.e.
``ray[data]``); ray is imported only inside :func:`run_engine_ray`. For the GPUs or processes of one
machine the plain ``fundusexpert engine run --shard i/n`` (or torchrun's ``RANK``/``WORLD_SIZE``,
:mod:`.batch`) is enough; use this module when the photographs should spread over several nodes::

    from fundusexpert_plugin.engine.ray_runner import DetectorEngineFactory, run_engine_ray
    from fundusexpert_plugin.core.images import list_images
    images = list_images('/shared/photos')
    run_engine_ray(DetectorEngineFactory('det/rtmdet.py', 'det/rtmdet.pth'), images, '/shared/engine_out',
                   num_actors=16, num_gpus_per_actor=0.5, image_root='/shared/photos')

or ``python -m fundusexpert_plugin.engine.ray_runner --images ... --detector ... --checkpoint ... --out ...``.

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

import argparse
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from fundusexpert_plugin.core.record import FundusDataError
from fundusexpert_plugin.engine.batch import RunSummary, _read_done, image_key, merge_shards

logger = logging.getLogger(__name__)

#: install hint used in the ImportError
INSTALL_HINT = "pip install 'fundusexpert-plugin[cluster]'  (or: pip install 'ray[data]')"


@dataclass(frozen=True)
class DetectorEngineFactory:
    """Picklable ``make_engine`` for :func:`run_engine_ray`: builds the MMDetection engine in an actor.

    Holds only paths and numbers, so Ray ships it to every actor cheaply; the detector weights are
    loaded in the actor (``__call__``), never pickled.

    Attributes:
        config: mmdet config file (as ``fundusexpert engine run --detector``).
        checkpoint: detector weights (``--checkpoint``).
        device: ``'auto'`` (``cuda`` when the actor was given a GPU share, else ``cpu``) or a torch
            device string.
        score_threshold, tile_size, tile_overlap: as :class:`.detect.Detector`.
        languages: languages the describer writes.
        claim_absent, source_dataset, licence: as :class:`.pipeline.FundusEngine`.
        image_labels_csv: optional CSV of image-level labels (``fundusexpert engine run --image-labels``).
        mllm_base_url, mllm_model: when both are set, semantic expansion goes to this
            OpenAI-compatible endpoint (:class:`.expand.MLLMDescriber`); otherwise the rule describer.
    """

    config: str
    checkpoint: str
    device: str = 'auto'
    score_threshold: float = 0.3
    tile_size: Optional[int] = None
    tile_overlap: float = 0.2
    languages: Tuple[str, ...] = ('en', 'zh')
    claim_absent: bool = False
    source_dataset: str = 'unlabelled photographs'
    licence: str = "see the photographs' terms"
    image_labels_csv: Optional[str] = None
    mllm_base_url: Optional[str] = None
    mllm_model: Optional[str] = None

    def __call__(self):
        """Build the :class:`.pipeline.FundusEngine` (runs inside each Ray actor)."""
        from fundusexpert_plugin.engine.batch import read_image_labels
        from fundusexpert_plugin.detector.detect import Detector
        from fundusexpert_plugin.engine.expand import MLLMDescriber, RuleDescriber, openai_chat
        from fundusexpert_plugin.engine.pipeline import FundusEngine
        device = self.device
        if device == 'auto':
            import torch
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        describer = RuleDescriber()
        if self.mllm_base_url and self.mllm_model:
            describer = MLLMDescriber(openai_chat(self.mllm_base_url, self.mllm_model),
                                      name=f'openai:{self.mllm_model}')
        detector = Detector(self.config, self.checkpoint, device=device, score_threshold=self.score_threshold,
                            tile_size=self.tile_size, tile_overlap=self.tile_overlap)
        return FundusEngine(
            detector, describer=describer, languages=self.languages,
            detector_name=f'mmdet:{Path(self.config).name}@{Path(self.checkpoint).name}',
            claim_absent=self.claim_absent, source_dataset=self.source_dataset, licence=self.licence,
            image_labels=read_image_labels(Path(self.image_labels_csv)) if self.image_labels_csv else None)


class EngineActor:
    """Ray Data callable class: one engine per actor, one call per batch of photographs.

    Args:
        make_engine: picklable zero-argument factory returning a :class:`.pipeline.FundusEngine`.
        out_dir: the job's output folder (records' ``image`` paths are relative to it).
    """

    def __init__(self, make_engine: Callable[[], object], out_dir: str) -> None:
        self.engine = make_engine()
        self.out_dir = Path(out_dir)

    def __call__(self, batch: Dict[str, Sequence]) -> Dict[str, List]:
        """Process a batch.

        Args:
            batch: columns ``index`` (position in the job), ``path`` (absolute, to read), ``shown``
                (the path as the caller gave it, for the skipped file) and ``key`` (record id).

        Returns:
            Columns ``index``, ``kind`` (``'record'`` or ``'skipped'``), ``line`` (the jsonl line,
            exactly as :func:`.batch.run_engine` writes it), ``skip_category``, ``converted``,
            ``no_optic_disc`` and ``findings`` (JSON list of the record's finding ids).

        Raises:
            FundusDataError: the detector produced a record that fails validation (fails the job,
                as in :func:`.batch.run_engine`).
        """
        from fundusexpert_plugin.core.images import ImageSkip, load_image
        from fundusexpert_plugin.core.jsonl import dumps
        out = {'index': [], 'kind': [], 'line': [], 'skip_category': [], 'converted': [], 'no_optic_disc': [],
               'findings': []}
        for index, path, shown, key in zip(batch['index'], batch['path'], batch['shown'], batch['key']):
            index, path, shown, key = int(index), str(path), str(shown), str(key)
            try:
                image = load_image(path)
            except ImageSkip as exc:
                reason = str(exc).split(': ', 1)[-1]
                out['kind'].append('skipped')
                out['line'].append(dumps({'image_key': key, 'image': shown, 'reason': reason}))
                out['skip_category'].append(reason.split(' (')[0])
                out['converted'].append(False)
                out['no_optic_disc'].append(False)
                out['findings'].append('[]')
            else:
                record = self.engine.process(Path(path), out_dir=self.out_dir, record_id=key, image=image)
                out['kind'].append('record')
                out['line'].append(dumps(record.model_dump(mode='json')))
                out['skip_category'].append('')
                out['converted'].append(bool(image.conversion))
                out['no_optic_disc'].append(not record.boxes('optic_disc'))
                out['findings'].append(json.dumps([f.label for f in record.findings]))
            out['index'].append(index)
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
                   merge: bool = True, progress: bool = False) -> Dict[str, RunSummary]:
    """Run Fundus-Engine over ``images`` on Ray and write the shard files of :mod:`.batch`.

    Args:
        make_engine: picklable zero-argument factory called once per actor, returning a
            :class:`.pipeline.FundusEngine` (e.g. :class:`DetectorEngineFactory`, or
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
    keys = [image_key(p, root) for p in paths]  # ids exactly as run_engine computes them
    if len(set(keys)) != len(keys):
        dupes = sorted(k for k, count in Counter(keys).items() if count > 1)[:5]
        raise FundusDataError(f'two photographs share a record id (path without suffix): {dupes}')
    n = int(num_shards or num_actors)
    tags = [f'{i}-of-{n}' for i in range(n)]
    summaries = {i: RunSummary(shard=f'{i}/{n}') for i in range(n)}
    done = [set(_read_done(out / f'records-{t}.jsonl', 'record_id'))
            | set(_read_done(out / f'skipped-{t}.jsonl', 'image_key')) for t in tags]
    todo = []
    for index, (path, key) in enumerate(zip(paths, keys)):
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
            EngineActor, fn_constructor_kwargs={'make_engine': make_engine, 'out_dir': str(out)},
            batch_size=int(batch_size), batch_format='numpy',
            compute=ray.data.ActorPoolStrategy(size=int(num_actors)),
            num_cpus=num_cpus_per_actor, num_gpus=num_gpus_per_actor or None)
        handles = {}
        try:
            for i, t in enumerate(tags):
                handles[i, 'record'] = (out / f'records-{t}.jsonl').open('a', encoding='utf-8')
                handles[i, 'skipped'] = (out / f'skipped-{t}.jsonl').open('a', encoding='utf-8')
            for batch in results.iter_batches(batch_size=None, batch_format='numpy'):
                touched = set()
                for j in range(len(batch['index'])):
                    shard_index, kind = int(batch['index'][j]) % n, str(batch['kind'][j])
                    fh = handles[shard_index, kind]
                    fh.write(str(batch['line'][j]) + '\n')
                    touched.add(fh)
                    _count(summaries[shard_index], batch, j)
                for fh in touched:  # one flush + fsync per batch, not per line
                    fh.flush()
                    os.fsync(fh.fileno())
        finally:
            for fh in handles.values():
                fh.close()
    for i, t in enumerate(tags):
        (out / f'summary-{t}.json').write_text(json.dumps(asdict(summaries[i]), indent=2) + '\n')
        for kind in ('records', 'skipped'):  # same files as run_engine, even when empty
            (out / f'{kind}-{t}.jsonl').touch()
    total = {k: sum(getattr(s, k) for s in summaries.values()) for k in ('images', 'written', 'resumed')}
    logger.info('Fundus-Engine on Ray: %(written)d written, %(resumed)d resumed of %(images)d photographs', total)
    if merge:
        merge_shards(out)
    return {s.shard: s for s in summaries.values()}


def _count(summary: RunSummary, batch: Dict[str, Sequence], j: int) -> None:
    if str(batch['kind'][j]) == 'skipped':
        category = str(batch['skip_category'][j])
        summary.skipped[category] = summary.skipped.get(category, 0) + 1
        return
    summary.written += 1
    summary.converted += bool(batch['converted'][j])
    summary.no_optic_disc += bool(batch['no_optic_disc'][j])
    for label in json.loads(str(batch['findings'][j])):
        summary.findings[label] = summary.findings.get(label, 0) + 1


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m fundusexpert_plugin.engine.ray_runner`` (those of ``engine run`` plus Ray's)."""
    parser = argparse.ArgumentParser(
        prog='python -m fundusexpert_plugin.engine.ray_runner',
        description='Fundus-Engine over a Ray cluster (detector + expansion as Ray Data actors); writes the '
                    'shard files of `fundusexpert engine run` and the merged records.jsonl')
    parser.add_argument('--images', type=Path, required=True, help='folder (recursive) or a text file of paths')
    parser.add_argument('--detector', type=Path, required=True, help='mmdet config')
    parser.add_argument('--checkpoint', type=Path, required=True, help='detector weights')
    parser.add_argument('--out', type=Path, required=True, help='output folder (shared by all nodes)')
    parser.add_argument('--num-actors', type=int, default=2, help='actor pool size (one detector each)')
    parser.add_argument('--batch-size', type=int, default=8, help='photographs per actor call')
    parser.add_argument('--num-shards', type=int, default=None, help='shard files (default: --num-actors)')
    parser.add_argument('--num-cpus-per-actor', type=float, default=1.0)
    parser.add_argument('--num-gpus-per-actor', type=float, default=0.0, help='e.g. 0.5: two detectors per GPU')
    parser.add_argument('--address', default=None, help="Ray address ('auto' joins a running cluster)")
    parser.add_argument('--device', default='auto', help="'auto' (cuda when the actor has a GPU), 'cpu', 'cuda'")
    parser.add_argument('--score-threshold', type=float, default=0.3)
    parser.add_argument('--tile-size', type=int, default=None)
    parser.add_argument('--tile-overlap', type=float, default=0.2)
    parser.add_argument('--image-labels', type=Path, default=None, help='CSV of image-level labels')
    parser.add_argument('--claim-absent', action='store_true')
    parser.add_argument('--mllm-base-url', default=None)
    parser.add_argument('--mllm-model', default=None)
    parser.add_argument('--languages', default='en,zh')
    parser.add_argument('--source-dataset', default='unlabelled photographs')
    parser.add_argument('--licence', default="see the photographs' terms")
    parser.add_argument('--progress', action='store_true', help="show Ray Data's progress bars")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry; prints the per-shard summaries as JSON and returns 0."""
    from fundusexpert_plugin.core.images import list_images
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    factory = DetectorEngineFactory(
        str(args.detector.resolve()), str(args.checkpoint.resolve()), device=args.device,
        score_threshold=args.score_threshold, tile_size=args.tile_size, tile_overlap=args.tile_overlap,
        languages=tuple(args.languages.split(',')), claim_absent=args.claim_absent,
        source_dataset=args.source_dataset, licence=args.licence,
        image_labels_csv=str(args.image_labels.resolve()) if args.image_labels else None,
        mllm_base_url=args.mllm_base_url, mllm_model=args.mllm_model)
    summaries = run_engine_ray(
        factory, list_images(args.images), args.out, num_actors=args.num_actors, batch_size=args.batch_size,
        num_shards=args.num_shards, image_root=args.images if args.images.is_dir() else None,
        num_cpus_per_actor=args.num_cpus_per_actor, num_gpus_per_actor=args.num_gpus_per_actor,
        ray_address=args.address, progress=args.progress)
    print(json.dumps({k: asdict(v) for k, v in summaries.items()}, indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
