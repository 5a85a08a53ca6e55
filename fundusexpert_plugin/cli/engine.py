"""``fundusexpert engine run|merge``: Fundus-Engine over a folder or list of photographs."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert engine run|ray|merge``."""
    sub = parser.add_subparsers(dest='engine_command', required=True)
    run = sub.add_parser('run', help='detect, position and expand; write FundusGen records (resumable)')
    run.add_argument('--images', type=Path, required=True, help='folder (recursive) or a text file of paths')
    run.add_argument('--detector', type=Path, required=True, help='mmdet config (e.g. dumped by train-detector)')
    run.add_argument('--checkpoint', type=Path, required=True, help='detector weights (slim checkpoint)')
    run.add_argument('--out', type=Path, required=True)
    run.add_argument('--shard', default=None, help='i/n (default: torchrun RANK/WORLD_SIZE, else 0/1)')
    run.add_argument('--score-threshold', type=float, default=0.3)
    run.add_argument('--tile-size', type=int, default=None, help='tiled inference window (px); default off')
    run.add_argument('--tile-overlap', type=float, default=0.2)
    run.add_argument('--device', default='cpu')
    run.add_argument('--image-labels', type=Path, default=None,
                     help='CSV with an `image` column (path relative to --images, no suffix) and label columns '
                          '(diagnosis, dr_grade, dme_grade, image_quality)')
    run.add_argument('--claim-absent', action='store_true',
                     help="report the detector's classes with no detection as absent (off: a miss is not an absence)")
    run.add_argument('--describer', choices=['rule', 'openai'], default='rule')
    run.add_argument('--mllm-base-url', default=None, help='OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1')
    run.add_argument('--mllm-model', default=None)
    run.add_argument('--languages', default='en,zh')
    run.add_argument('--source-dataset', default='unlabelled photographs')
    run.add_argument('--licence', default="see the photographs' terms")
    run.add_argument('--no-progress', action='store_true')
    ray = sub.add_parser('ray', help='the same over a Ray cluster (optional `cluster` extra); '
                                     '`fundusexpert engine ray --help` lists its options', add_help=False)
    ray.add_argument('ray_args', nargs=argparse.REMAINDER)
    merge = sub.add_parser('merge', help='join the shard files of an output folder into records.jsonl')
    merge.add_argument('--out', type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    """Run ``fundusexpert engine``; prints the run summary as JSON and returns 0."""
    from fundusexpert_plugin.engine.batch import merge_shards, read_image_labels, run_engine, shard_from_env
    if args.engine_command == 'merge':
        print(merge_shards(args.out))
        return 0
    if args.engine_command == 'ray':
        from fundusexpert_plugin.engine.ray_runner import main as ray_main
        return ray_main(args.ray_args)
    from fundusexpert_plugin.detector.detect import Detector
    from fundusexpert_plugin.engine.expand import MLLMDescriber, RuleDescriber, openai_chat
    from fundusexpert_plugin.core.images import list_images
    from fundusexpert_plugin.engine.pipeline import FundusEngine
    images = list_images(args.images)
    describer = RuleDescriber()
    if args.describer == 'openai':
        if not (args.mllm_base_url and args.mllm_model):
            raise SystemExit('--describer openai needs --mllm-base-url and --mllm-model')
        describer = MLLMDescriber(openai_chat(args.mllm_base_url, args.mllm_model), name=f'openai:{args.mllm_model}')
    detector = Detector(args.detector, args.checkpoint, device=args.device, score_threshold=args.score_threshold,
                        tile_size=args.tile_size, tile_overlap=args.tile_overlap)
    engine = FundusEngine(detector, describer=describer, languages=args.languages.split(','),
                          detector_name=f'mmdet:{args.detector.name}@{args.checkpoint.name}',
                          claim_absent=args.claim_absent, source_dataset=args.source_dataset, licence=args.licence,
                          image_labels=read_image_labels(args.image_labels) if args.image_labels else None)
    root = args.images if args.images.is_dir() else None
    summary = run_engine(engine, images, args.out, shard_spec=shard_from_env(args.shard), image_root=root,
                         progress=not args.no_progress)
    print(json.dumps(summary.__dict__, indent=2))
    return 0
