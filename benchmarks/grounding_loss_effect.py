"""Benchmark: does ``fundus_grounding`` (loss + loss scale) localise better than plain CE at equal steps?

A fixed, seeded, CPU-sized experiment on the bundled real fundus photographs:

* data: the optic-disc rows of FundusGen ``region_detection`` built from the bundled sample
  (:func:`fundusexpert_plugin.build.build_sample`, English): 8 training images, 4 held-out images;
  question "Locate the optic disc ...", answer ``<ref>optic disc</ref><box>[[x1, y1, x2, y2]]</box>``
  on the 0-999 grid (``fundusexpert_internvl``);
* model: the tiny random HF InternVL of :mod:`fundusexpert_plugin.testing.tiny_models` (new weights per seed),
  full fine-tune (ViT and projector too), float32, one thread, batch 2, AdamW lr 5e-3 cosine,
  ``--steps`` steps;
* arms: ``ce`` (ms-swift's default token CE) and ``grounding`` (``--loss_type fundus_grounding
  --loss_scale fundus_grounding``, default weights), same seeds, data order and steps;
* evaluation: greedy ``swift infer`` on the held-out and the training images; the first box of each
  answer is scored against the reference box: IoU (0 when no box is parsed) and the mean absolute
  coordinate error on the 0-999 grid over x1, y1, x2, y2 (answers with a box only).

Prints one line per arm and seed, then the mean and standard deviation over seeds. The numbers are
what they are: 8 training images teach a tiny random model little more than where optic discs
usually are, so held-out scores mostly measure that prior.

Usage::

    python benchmarks/grounding_loss_effect.py [--work-dir /tmp/fx_effect] [--seeds 0 1 2] [--steps 150]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Dict, List

ARMS = {'ce': [], 'grounding': ['--loss_type', 'fundus_grounding', '--loss_scale', 'fundus_grounding']}
TEMPLATE = 'fundusexpert_internvl'
LEARNING_RATE = 5e-3


def optic_disc_rows(task_file: Path, out_file: Path) -> List[dict]:
    """Optic-disc rows of a FundusGen ``region_detection.jsonl``, image paths made absolute."""
    rows = []
    for line in task_file.read_text(encoding='utf-8').splitlines():
        row = json.loads(line)
        if row.get('target') != 'optic_disc':
            continue
        row['images'] = [str((task_file.parent / p).resolve()) for p in row['images']]
        rows.append({k: row[k] for k in ('messages', 'images', 'objects', 'width', 'height')})
    if not rows:
        raise ValueError(f'{task_file}: no optic_disc rows')
    out_file.write_text(''.join(json.dumps(r) + '\n' for r in rows), encoding='utf-8')
    return rows


def score(result_path: Path, references: Dict[str, dict], split: str) -> Dict[str, float]:
    """Mean IoU, share of answers with a box and mean coordinate error (grid) of one split's rows of a
    swift infer result (rows are matched to references by image path)."""
    from fundusexpert_plugin.core import geometry
    from fundusexpert_plugin.eval.parse import find_boxes
    ious, errors, with_box = [], [], 0
    for line in result_path.read_text(encoding='utf-8').splitlines():
        row = json.loads(line)
        image = row['images'][0]
        ref = references[str(Path(image['path'] if isinstance(image, dict) else image).resolve())]
        if ref['split'] != split:
            continue
        width, height = ref['width'], ref['height']
        gt_px = ref['objects']['bbox'][0]
        gt_grid = geometry.box_px_to_grid(gt_px, width, height)
        boxes = find_boxes(row.get('response') or '')
        if not boxes:
            ious.append(0.0)
            continue
        with_box += 1
        pred_grid = boxes[0].coords
        x1, y1, x2, y2 = geometry.box_grid_to_px(pred_grid, width, height)
        ious.append(geometry.iou((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), gt_px))
        errors.append(sum(abs(p - g) for p, g in zip(pred_grid, gt_grid)) / 4)
    return {'miou': statistics.mean(ious), 'with_box': with_box / len(ious),
            'coord_err': statistics.mean(errors) if errors else float('nan'), 'n': len(ious)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', type=Path, default=None, help='scratch folder (default: a temp dir)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--steps', type=int, default=150)
    args = parser.parse_args()

    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.cli.demo import infer_command, last_checkpoint, offline_env, run_logged, sft_command
    from fundusexpert_plugin.testing.tiny_models import make_tiny_model
    work = args.work_dir or Path(tempfile.mkdtemp(prefix='fx_effect_'))
    work.mkdir(parents=True, exist_ok=True)
    build_sample(work / 'fundusgen', languages=['en'])
    train_rows = optic_disc_rows(work / 'fundusgen' / 'train' / 'region_detection.jsonl', work / 'train_od.jsonl')
    heldout_rows = optic_disc_rows(work / 'fundusgen' / 'heldout' / 'region_detection.jsonl',
                                   work / 'heldout_od.jsonl')
    references = {str(Path(r['images'][0]).resolve()): {**r, 'split': split}
                  for split, rows in (('train', train_rows), ('heldout', heldout_rows)) for r in rows}
    # one thread per process: on a shared 2-core machine two spinning threads are several times slower
    env = offline_env(FUNDUSEXPERT_CACHE=str(work / 'cache'), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    print(f'optic disc rows: {len(train_rows)} train, {len(heldout_rows)} held-out; template {TEMPLATE}; '
          f'{args.steps} steps, batch 2; seeds {args.seeds}', flush=True)

    results: Dict[str, List[Dict[str, Dict[str, float]]]] = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        model_dir = work / f'model_seed{seed}'
        if not (model_dir / 'config.json').exists():
            make_tiny_model('internvl', model_dir, seed=seed)
        for arm, extra in ARMS.items():
            out = work / f'sft_{arm}_seed{seed}'
            shutil.rmtree(out, ignore_errors=True)
            cmd = sft_command(model_dir, out, template=TEMPLATE, dataset=[str(work / 'train_od.jsonl')],
                              steps=args.steps, seed=seed, learning_rate=LEARNING_RATE) + extra
            run_logged(cmd, work / f'sft_{arm}_seed{seed}.log', env)
            result = work / f'infer_{arm}_seed{seed}.jsonl'
            result.unlink(missing_ok=True)
            run_logged(infer_command(last_checkpoint(out), result, max_new_tokens=48,
                                     dataset=[str(work / 'heldout_od.jsonl'), str(work / 'train_od.jsonl')]),
                       work / f'infer_{arm}_seed{seed}.log', env)
            scores = {split: score(result, references, split) for split in ('heldout', 'train')}
            results[arm].append(scores)
            print(f'seed {seed} {arm:9s}: held-out mIoU {scores["heldout"]["miou"]:.3f} coord err '
                  f'{scores["heldout"]["coord_err"]:.1f} (box in {scores["heldout"]["with_box"]:.0%}) | '
                  f'train mIoU {scores["train"]["miou"]:.3f} coord err {scores["train"]["coord_err"]:.1f} '
                  f'(box in {scores["train"]["with_box"]:.0%})', flush=True)
            shutil.rmtree(out, ignore_errors=True)

    def mean_sd(values):
        values = [v for v in values if v == v]
        if not values:
            return 'n/a'
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f'{statistics.mean(values):.3f} +- {sd:.3f}'

    print(f'\nmean +- sd over seeds {args.seeds} ({args.steps} steps; coordinate error in 0-999 grid units):')
    for arm in ARMS:
        for split in ('heldout', 'train'):
            runs = [r[split] for r in results[arm]]
            print(f'  {arm:9s} {split:7s}: mIoU {mean_sd([r["miou"] for r in runs])}, '
                  f'coord err {mean_sd([r["coord_err"] for r in runs])}, '
                  f'answers with a box {mean_sd([r["with_box"] for r in runs])}')


if __name__ == '__main__':
    main()
