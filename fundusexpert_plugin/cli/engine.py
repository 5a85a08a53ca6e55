"""``fundusexpert engine run|ray|merge``: Fundus-Engine over a folder or list of photographs.

``run`` (one process; ``--shard i/n`` or torchrun's ``RANK``/``WORLD_SIZE`` split a job) and ``ray``
(a Ray Data actor pool) share every engine option (:func:`add_engine_options`) and turn them into
the same :class:`fundusexpert_plugin.engine.spec.EngineSpec`; both write the shard files of
:mod:`fundusexpert_plugin.engine.batch`, which ``merge`` joins.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from fundusexpert_plugin.cli.common import (add_command, add_languages, add_verbs, fraction, non_negative_float,
                                            positive_int, unit_interval)
from fundusexpert_plugin.core.errors import FundusDataError

logger = logging.getLogger(__name__)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``engine run`` and ``engine ray``: photographs, output, detector and describer."""
    parser.add_argument('--images', type=Path, required=True,
                        help='folder (recursive), one photograph, or a text file of paths (one a line)')
    parser.add_argument('--out', type=Path, required=True, help='output folder (on a cluster: shared by all nodes)')
    det = parser.add_argument_group('detector')
    det.add_argument('--detector', type=Path, default=None,
                     help='mmdet config (e.g. dumped by detector train); without --detector/--checkpoint the '
                          'training-free landmark locator gives the optic disc and fovea, and no lesion is reported')
    det.add_argument('--checkpoint', type=Path, default=None, help='detector weights (slim checkpoint)')
    det.add_argument('--device', default='cpu', help="'cpu', 'cuda', 'cuda:1' or 'auto' (cuda when available)")
    det.add_argument('--score-threshold', type=unit_interval, default=0.3, help='in [0, 1] (default 0.3)')
    det.add_argument('--tile-size', type=positive_int, default=None, help='tiled inference window (px); default off')
    det.add_argument('--tile-overlap', type=fraction, default=0.2, help='overlap of neighbouring windows, in [0, 1) '
                                                                      '(default 0.2)')
    det.add_argument('--claim-absent', action='store_true',
                     help="report the detector's classes with no detection as absent (off: a miss is not an absence)")
    rec = parser.add_argument_group('records')
    rec.add_argument('--image-labels', type=Path, default=None,
                     help='label table (CSV, xlsx or xls, as data convert csv reads) with an image column (the '
                          'path relative to --images, or absolute; for a list or one photograph the file name; '
                          "the suffix optional, but when given the photograph's; case-sensitive) and label "
                          'columns (dr_grade, dme_grade, image_quality, diagnosis); read and checked before '
                          'any photograph; rows that match no photograph are named in a warning')
    add_languages(rec)
    rec.add_argument('--source-dataset', default='unlabelled photographs')
    rec.add_argument('--licence', default="see the photographs' terms")
    rec.add_argument('--salt', default=None, help='DICOM inputs: secret of the salted-hash record ids '
                                                  '(default: recorded in --salt-file, else random)')
    rec.add_argument('--max-image-pixels', type=positive_int, default=None,
                     help="decompression-bomb limit in pixels (default: Pillow's, 89,478,485); a larger "
                          'photograph is skipped (image_too_large)')
    rec.add_argument('--accept-burned-in', action='store_true',
                     help='use DICOM files with BurnedInAnnotation = YES (default: skipped, counted in the summary)')
    rec.add_argument('--salt-file', type=Path, default=None,
                     help='DICOM inputs: where the salt is recorded and read back (default: <--out>/dicom_salt.txt)')
    desc = parser.add_argument_group('semantic expansion')
    desc.add_argument('--describer', choices=['rule', 'openai'], default=None,
                      help='rule text, or an OpenAI-compatible MLLM (default: openai when --mllm-base-url and '
                           '--mllm-model are both given, else rule)')
    desc.add_argument('--mllm-base-url', default=None, help='OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1')
    desc.add_argument('--mllm-model', default=None)


def engine_spec(args: argparse.Namespace):
    """The :class:`.spec.EngineSpec` of parsed :func:`add_engine_options` (paths made absolute, so that
    Ray workers in another folder find them).

    Raises:
        ValueError: a bad combination (e.g. ``--describer openai`` without the endpoint options).
    """
    from fundusexpert_plugin.engine.spec import EngineSpec
    return EngineSpec(
        str(args.detector.resolve()) if args.detector else None,
        str(args.checkpoint.resolve()) if args.checkpoint else None, device=args.device,
        score_threshold=args.score_threshold, tile_size=args.tile_size, tile_overlap=args.tile_overlap,
        languages=tuple(args.languages), claim_absent=args.claim_absent, source_dataset=args.source_dataset,
        licence=args.licence, image_labels=str(args.image_labels.resolve()) if args.image_labels else None,
        describer=args.describer, mllm_base_url=args.mllm_base_url, mllm_model=args.mllm_model,
        max_image_pixels=args.max_image_pixels)


def job_images(source: Path, out: Path | None = None):
    """The job's photographs (:func:`.images.list_images`), listed before any model is loaded; files
    under ``out`` (the output folder, when it lies inside the image folder: its own converted copies)
    are not listed (an INFO note says so).

    Raises:
        FileNotFoundError: ``source`` is missing, or a folder without images.
        FundusDataError: a list file that names no photograph, or is not valid text.
    """
    from fundusexpert_plugin.core.images import list_images
    exclude = None
    if out is not None and source.is_dir() and out.resolve().is_relative_to(source.resolve()):
        exclude = out
        logger.info('--out %s lies inside --images %s: its files are not listed as photographs', out, source)
    images = list_images(source, exclude=exclude)
    if not images:
        raise FundusDataError(f'{source}: the list names no photograph')
    return images


def image_root(args: argparse.Namespace) -> Path | None:
    """The folder record ids are relative to: ``--images`` when it is a folder, else ``None`` (ids are
    file stems)."""
    return args.images if args.images.is_dir() else None


def check_labels(args: argparse.Namespace, images, salt: str | None) -> None:
    """Read and check the whole ``--image-labels`` table before any photograph is processed
    (:func:`.labels.read_image_labels`), and warn about its columns not read and its rows that match
    no photograph of the job (:func:`.labels.warn_labels`); nothing without ``--image-labels``.

    Raises:
        FundusDataError: a bad table (file and line named), two rows naming one photograph, or two
            photographs sharing a record id (:func:`.batch.record_ids`).
        FileNotFoundError: the table is missing.
    """
    if args.image_labels is None:
        return
    from fundusexpert_plugin.engine.batch import record_ids
    from fundusexpert_plugin.engine.labels import read_image_labels, warn_labels
    labels = read_image_labels(args.image_labels)
    warn_labels(labels, record_ids(images, image_root(args), dicom_salt=salt), images)


def dicom_salt(args: argparse.Namespace, images) -> str | None:
    """The salt of DICOM record ids (:func:`fundusexpert_plugin.core.dicom.resolve_salt`, recorded in
    ``--salt-file``, default ``<--out>/dicom_salt.txt``), or ``None`` when no photograph is DICOM.

    Raises:
        FundusDataError: ``--salt`` differs from the recorded one, or an empty salt.
    """
    from fundusexpert_plugin.core.dicom import is_dicom, resolve_salt
    if not any(is_dicom(p) for p in images):
        return None
    return resolve_salt(args.salt, args.salt_file or args.out / 'dicom_salt.txt')


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert engine run``."""
    add_engine_options(parser)
    parser.add_argument('--shard', default=None, help='i/n (default: torchrun RANK/WORLD_SIZE, else 0/1)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run_local(args: argparse.Namespace) -> int:
    """Run ``fundusexpert engine run``; prints the shard's summary as JSON and returns 0."""
    from fundusexpert_plugin.engine.batch import check_run_options, run_engine, run_options, shard_from_env
    shard_spec = shard_from_env(args.shard)
    images = job_images(args.images, args.out)
    spec = engine_spec(args)
    salt = dicom_salt(args, images)
    check_labels(args, images, salt)  # the whole table, before any photograph
    options = run_options(spec, images=args.images, dicom_salt=salt)
    check_run_options(args.out, options)  # before the detector is loaded
    summary = run_engine(spec.build(), images, args.out, shard_spec=shard_spec, image_root=image_root(args),
                         progress=not args.no_progress, dicom_salt=salt, accept_burned_in=args.accept_burned_in,
                         options=options)
    print(json.dumps(asdict(summary), indent=2))
    return 0


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert engine ray``: those of ``engine run`` plus Ray's (device default auto)."""
    add_engine_options(parser)
    parser.set_defaults(device='auto')
    ray = parser.add_argument_group('Ray (optional cluster extra)')
    ray.add_argument('--num-actors', type=positive_int, default=2, help='actor pool size (one detector each)')
    ray.add_argument('--batch-size', type=positive_int, default=8, help='photographs per actor call')
    ray.add_argument('--num-shards', type=positive_int, default=None, help='shard files (default: --num-actors)')
    ray.add_argument('--num-cpus-per-actor', type=non_negative_float, default=1.0)
    ray.add_argument('--num-gpus-per-actor', type=non_negative_float, default=0.0,
                     help='e.g. 0.5: two detectors per GPU')
    ray.add_argument('--address', default=None, help="Ray address ('auto' joins a running cluster)")
    ray.add_argument('--progress', action='store_true', help="show Ray Data's progress bars")


def run_ray(args: argparse.Namespace) -> int:
    """Run ``fundusexpert engine ray``; prints the per-shard summaries as JSON and returns 0."""
    from fundusexpert_plugin.engine.batch import check_run_options, run_options
    from fundusexpert_plugin.engine.ray_runner import run_engine_ray
    images = job_images(args.images, args.out)
    spec = engine_spec(args)
    salt = dicom_salt(args, images)
    check_labels(args, images, salt)
    options = run_options(spec, images=args.images, dicom_salt=salt)
    check_run_options(args.out, options)
    summaries = run_engine_ray(
        spec, images, args.out, num_actors=args.num_actors, batch_size=args.batch_size,
        num_shards=args.num_shards, image_root=image_root(args),
        num_cpus_per_actor=args.num_cpus_per_actor, num_gpus_per_actor=args.num_gpus_per_actor,
        ray_address=args.address, progress=args.progress, dicom_salt=salt,
        accept_burned_in=args.accept_burned_in, options=options)
    print(json.dumps({k: asdict(v) for k, v in summaries.items()}, indent=2))
    return 0


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert engine merge``."""
    parser.add_argument('--out', type=Path, required=True, help='the output folder of engine run / engine ray')
    parser.add_argument('--partial', action='store_true',
                        help='merge an incomplete shard set (a shard missing, of another count, or whose last '
                             'run did not finish) with a warning, instead of refusing it')


def run_merge(args: argparse.Namespace) -> int:
    """Run ``fundusexpert engine merge``; prints the merged records' path, then the skipped list's path
    and one line of counts (records, skipped by reason), and returns 0."""
    from fundusexpert_plugin.engine.batch import merge_shard_files
    merged = merge_shard_files(args.out, partial=args.partial)
    print(merged.records_path)
    print(merged.skipped_path)
    print(merged.line())
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verbs of ``fundusexpert engine``."""
    verbs = add_verbs(parser, 'engine_command')
    add_command(verbs, 'run', 'detect, position and expand photographs; write FundusGen records (resumable, '
                              'sharded)', add_run_arguments, run_local)
    add_command(verbs, 'ray', 'the same over a Ray cluster (optional cluster extra)', add_ray_arguments, run_ray)
    add_command(verbs, 'merge', 'join the shard files of an output folder into records.jsonl',
                add_merge_arguments, run_merge)
