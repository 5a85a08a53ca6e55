"""``fundusexpert demo``: the main job on the bundled sample, end to end, on CPU.

bundled IDRiD sample -> FundusGen (train / held-out) -> ``swift sft`` with this plugin (tiny
Qwen2.5-VL built locally, full fine-tune) -> ``swift infer`` on the held-out region-detection
rows -> a summary: the training loss curve and the parsed boxes scored against the ground truth
(IoU). The numbers are whatever the tiny model reaches; nothing is tuned to look good.

Outputs in ``--work-dir``: ``fundusgen/``, ``model/``, ``sft/``, ``infer/result.jsonl``,
``loss_curve.png``, ``eval/`` (metrics.json, report.html), ``summary.json`` and ``summary.md``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List

from fundusexpert_plugin.swift_plugin.launch import last_checkpoint, log_history, run_logged, swift_executable  # noqa: F401

logger = logging.getLogger(__name__)

MAX_PIXELS = 50176  # 64 tokens of 28x28 px per image: fast on 2 CPU cores
TEMPLATES = {'qwen2_5_vl': 'fundusexpert_qwen2_5_vl', 'internvl': 'fundusexpert_internvl'}


def offline_env(**extra: str) -> Dict[str, str]:
    """The current environment plus the offline switches every swift call here needs."""
    env = dict(os.environ)
    env.update({'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
                'MODELSCOPE_OFFLINE': '1', 'MAX_PIXELS': str(MAX_PIXELS), 'TOKENIZERS_PARALLELISM': 'false'})
    env.update(extra)
    return env


def sft_command(model_dir: Path, out_dir: Path, *, template: str, dataset: List[str], steps: int, seed: int,
                batch_size: int = 2, learning_rate: float = 5e-3) -> List[str]:
    """The ``swift sft`` argument list of the demo (full fine-tune, CPU, float32)."""
    from fundusexpert_plugin.swift_plugin.registry import plugin_path
    return [swift_executable(), 'sft', '--model', str(model_dir), '--template', template,
            '--external_plugins', plugin_path(), '--dataset', *dataset,
            '--tuner_type', 'full', '--freeze_vit', 'false', '--freeze_aligner', 'false',
            '--gradient_checkpointing', 'false',
            '--torch_dtype', 'float32', '--max_steps', str(steps), '--num_train_epochs', '100',
            '--per_device_train_batch_size', str(batch_size), '--learning_rate', str(learning_rate),
            '--lr_scheduler_type', 'cosine', '--warmup_ratio', '0.05', '--max_length', '1024',
            '--logging_steps', '1', '--save_steps', str(steps), '--save_total_limit', '1', '--save_only_model', 'true',
            '--add_version', 'false',
            '--split_dataset_ratio', '0', '--eval_strategy', 'no', '--dataloader_num_workers', '0',
            '--check_model', 'false', '--report_to', 'none', '--seed', str(seed), '--data_seed', str(seed),
            '--output_dir', str(out_dir)]


def infer_command(checkpoint: Path, result_path: Path, *, dataset: List[str], max_new_tokens: int = 96) -> List[str]:
    """The ``swift infer`` argument list (greedy decoding; the plugin is re-imported from args.json)."""
    return [swift_executable(), 'infer', '--model', str(checkpoint), '--val_dataset', *dataset,
            '--infer_backend', 'transformers', '--torch_dtype', 'float32', '--max_new_tokens', str(max_new_tokens),
            '--temperature', '0', '--max_batch_size', '4', '--result_path', str(result_path)]


def loss_history(checkpoint: Path) -> List[Dict[str, float]]:
    """``[{'step', 'loss'}, ...]`` from the checkpoint's ``trainer_state.json`` (HF Trainer log)."""
    return [{'step': e['step'], 'loss': e['loss']} for e in log_history(checkpoint) if 'loss' in e]


def plot_loss(history: List[Dict[str, float]], out_png: Path) -> Path:
    """Training loss against step, as a PNG (matplotlib, Agg backend)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h['step'] for h in history], [h['loss'] for h in history], marker='.')
    ax.set_xlabel('optimizer step')
    ax.set_ylabel('training loss (token CE)')
    ax.set_title('swift sft on FundusGen (bundled sample)')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def score_heldout(result_path: Path, meta_path: Path, out_dir: Path) -> dict:
    """Score a ``swift infer`` result with the evaluation suite (:mod:`.eval`), the FundusGen task
    file as meta; writes ``metrics.json``, ``samples.jsonl`` and ``report.html`` to ``out_dir``.

    Returns:
        ``{'rows', 'rows_with_boxes', 'metrics'}``: ``metrics`` is the grounding block of metrics.json
        (per-class and overall best-match IoU, Acc@0.5, P/R@0.5, COCO AP).
    """
    from fundusexpert_plugin.eval.report import EvalOptions, evaluate_rows, write_outputs
    from fundusexpert_plugin.eval.results import load_meta, read_jsonl
    rows = read_jsonl(str(result_path))
    metrics, samples = evaluate_rows(rows, load_meta(str(meta_path)), options=EvalOptions(max_pixels=MAX_PIXELS))
    write_outputs(str(out_dir), metrics, samples)
    with_boxes = sum(1 for s in samples if s.get('pred'))
    return {'rows': len(rows), 'rows_with_boxes': with_boxes, 'metrics': metrics['grounding'] or {},
            'report_html': str(out_dir / 'report.html')}


DEFAULT_DATASETS = ('fundusgen:region_detection',)


def run_demo(work_dir: Path, *, family: str = 'qwen2_5_vl', steps: int = 80, seed: int = 0,
             datasets=DEFAULT_DATASETS) -> dict:
    """Run the whole main job; returns the summary dict (also written to ``summary.json``).

    Args:
        work_dir: output folder.
        family: tiny model family (``'qwen2_5_vl'`` or ``'internvl'``).
        steps: ``swift sft`` optimizer steps (batch 2).
        seed: build and training seed.
        datasets: FundusGen subsets to train on; the default trains region detection only, so that a
            10M-parameter model learns to write boxes within CPU minutes (add e.g.
            ``fundusgen:grounded_report`` to train the cognitive chain too).
    """
    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.testing.tiny_models import make_tiny_model
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.time()
    summaries = build_sample(work_dir / 'fundusgen', seed=seed)
    timings['build_s'] = time.time() - t0
    model_dir = work_dir / f'model-{family}'
    if not (model_dir / 'config.json').exists():
        make_tiny_model(family, model_dir, seed=seed)
    env = offline_env(FUNDUSGEN_DIR=str(work_dir / 'fundusgen' / 'train'),
                      FUNDUSGEN_HELDOUT_DIR=str(work_dir / 'fundusgen' / 'heldout'),
                      FUNDUSEXPERT_CACHE=str(work_dir / 'cache'))
    sft_dir = work_dir / 'sft'
    shutil.rmtree(sft_dir, ignore_errors=True)
    t0 = time.time()
    run_logged(sft_command(model_dir, sft_dir, template=TEMPLATES[family],
                           dataset=list(datasets),
                           steps=steps, seed=seed), work_dir / 'sft.log', env)
    timings['sft_s'] = time.time() - t0
    checkpoint = last_checkpoint(sft_dir)
    result = work_dir / 'infer' / 'result.jsonl'
    result.parent.mkdir(exist_ok=True)
    result.unlink(missing_ok=True)
    t0 = time.time()
    run_logged(infer_command(checkpoint, result, dataset=['fundusgen_heldout:region_detection']),
               work_dir / 'infer.log', env)
    timings['infer_s'] = time.time() - t0
    history = loss_history(checkpoint)
    plot_loss(history, work_dir / 'loss_curve.png')
    scores = score_heldout(result, work_dir / 'fundusgen' / 'heldout' / 'region_detection.jsonl', work_dir / 'eval')
    summary = {
        'family': family, 'steps': steps, 'seed': seed, 'datasets': list(datasets), 'checkpoint': str(checkpoint),
        'fundusgen_rows': {split: s.rows_per_task for split, s in summaries.items()},
        'loss_first': history[0]['loss'] if history else None, 'loss_last': history[-1]['loss'] if history else None,
        'loss_history': history, 'heldout_detection': scores, 'timings_s': timings, 'result_path': str(result),
    }
    (work_dir / 'summary.json').write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    (work_dir / 'summary.md').write_text(format_summary(summary))
    return summary


def format_summary(summary: dict) -> str:
    """Human-readable summary (Markdown)."""
    det = summary['heldout_detection']
    m = det['metrics']
    overall = {k: m.get(k) for k in ('n_gt', 'n_pred', 'acc50', 'precision50', 'recall50', 'best_match_iou')}
    overall['coco_ap'] = (m.get('coco') or {}).get('ap')
    lines = [
        f"# FundusExpert demo ({summary['family']}, {summary['steps']} steps, seed {summary['seed']})",
        '',
        f"FundusGen rows (train): {summary['fundusgen_rows'].get('train')}",
        f"Trained on: {', '.join(summary['datasets'])}",
        f"Training loss: first {summary['loss_first']:.3f} -> last {summary['loss_last']:.3f} (curve: loss_curve.png)",
        f"Held-out region detection: {det['rows']} rows, {det['rows_with_boxes']} responses with a parsable box",
        f"  overall: {json.dumps(overall)}",
        f"  report with images and boxes: {det['report_html']}",
    ]
    for label, m in sorted(det['metrics'].get('per_class', {}).items()):
        lines.append(f'  {label}: {json.dumps(m)}')
    lines += ['', 'Timings (s): ' + ', '.join(f'{k} {v:.0f}' for k, v in summary['timings_s'].items()),
              f"swift infer results: {summary['result_path']}", '']
    return '\n'.join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert demo``."""
    parser.add_argument('--work-dir', type=Path, default=Path('fundusexpert_demo'), help='output folder')
    parser.add_argument('--family', choices=sorted(TEMPLATES), default='qwen2_5_vl')
    parser.add_argument('--steps', type=int, default=80, help='swift sft optimizer steps')
    parser.add_argument('--dataset', nargs='+', default=list(DEFAULT_DATASETS),
                        help='FundusGen subsets to train on (default: region detection)')
    parser.add_argument('--seed', type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Run ``fundusexpert demo``; prints the summary and returns 0 (raises on a failed swift step)."""
    summary = run_demo(args.work_dir, family=args.family, steps=args.steps, seed=args.seed, datasets=args.dataset)
    print(format_summary(summary))
    return 0
