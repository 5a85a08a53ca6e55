"""``fundusexpert demo``: the main job on the bundled sample, end to end, on CPU.

1. Fundus-Engine over the held-out photographs with the training-free landmark locator (no
   detector): records, then positions and chain rows built from them (``engine/``,
   ``engine_fundusgen/``); the disc and fovea errors against the sample's annotations are printed.
2. FundusGen from the training annotations (train / held-out).
3. ``swift sft`` with this plugin (tiny Qwen2.5-VL built locally, full fine-tune; ``--freeze-embedding``
   keeps the tied embedding / LM head frozen, :data:`FROZEN`), its progress lines streamed to the terminal.
4. ``swift infer`` on the held-out rows of the trained task (optic-disc detection by default).
5. The eval report, and a summary: training loss, the share of responses that parse into boxes, and
   the trained model's optic-disc IoU beside two baselines on the same photos: a constant prior
   (the mean training disc box of the eye side, laterality taken from the annotation) and the
   landmark locator. The numbers are whatever the tiny model reaches; nothing is tuned to look good.

Outputs in ``--work-dir``: ``engine/``, ``engine_fundusgen/``, ``fundusgen/``, ``model/``, ``sft/``,
``infer/result.jsonl``, ``loss_curve.png``, ``eval/`` (metrics.json, report.html), ``summary.json``
and ``summary.md``; the full swift output in ``sft.log`` and ``infer.log``.
"""
from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fundusexpert_plugin.cli.common import positive_int
from fundusexpert_plugin.core.errors import FundusDataError

from fundusexpert_plugin.swift_plugin.launch import last_checkpoint, log_history, run_logged, swift_executable

logger = logging.getLogger(__name__)

#: Qwen image budget of the demo: 16 tokens of 28x28 px per image (a photo is resized to about
#: 140x92 px, so its boxes are 2-digit coordinates). Measured with the default 150 steps: 8 of 8
#: held-out optic-disc answers parse into a box, against 7 of 8 at 50,176 px (64 tokens), whose
#: 3-digit coordinates the tiny model sometimes garbles on unseen photos; and steps are cheaper.
MAX_PIXELS = 12544
TEMPLATES = {'qwen2_5_vl': 'fundusexpert_qwen2_5_vl', 'internvl': 'fundusexpert_internvl'}
#: Parameters ``--freeze-embedding`` keeps frozen: the tied embedding / LM head of the tiny models
#: (151,680 x 64). Freezing it cut one bare forward + backward on 2 x 295 tokens from 3.3 s to 0.5 s,
#: but inside ``swift sft`` (which already computes logits only from the first labelled position) a
#: step stayed at about 4.6 s on 2 idle cores, and the frozen random head (std 0.02) keeps the
#: loss near 11 for the first 60 steps; so the default trains it.
FROZEN = {'qwen2_5_vl': 'model.language_model.embed_tokens', 'internvl': 'model.language_model.embed_tokens'}
#: Lines of swift's output echoed to the terminal: its per-step log dicts and tqdm bars.


def offline_env(**extra: str) -> Dict[str, str]:
    """The current environment plus the offline switches every swift call here needs."""
    env = dict(os.environ)
    env.update({'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
                'MODELSCOPE_OFFLINE': '1', 'MAX_PIXELS': str(MAX_PIXELS), 'TOKENIZERS_PARALLELISM': 'false'})
    env.update(extra)
    return env


def sft_command(model_dir: Path, out_dir: Path, *, template: str, dataset: List[str], steps: int, seed: int,
                batch_size: int = 2, learning_rate: float = 5e-3, freeze: Optional[str] = None) -> List[str]:
    """The ``swift sft`` argument list of the demo (full fine-tune, CPU, float32; ``freeze``: a
    parameter prefix kept frozen, ``--freeze_parameters``)."""
    from fundusexpert_plugin.swift_plugin.registry import plugin_path
    return [swift_executable(), 'sft', '--model', str(model_dir), '--template', template,
            '--external_plugins', plugin_path(), '--dataset', *dataset,
            '--tuner_type', 'full', '--freeze_vit', 'false', '--freeze_aligner', 'false',
            *(['--freeze_parameters', freeze] if freeze else []),
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
    from fundusexpert_plugin.core.images import save_figure
    save_figure(fig, out_png, dpi=100)
    plt.close(fig)
    return out_png


def score_heldout(result_path: Path, meta_path: Path, out_dir: Path) -> dict:
    """Score a ``swift infer`` result with the evaluation suite (:mod:`.eval`), the FundusGen task
    file as meta; writes ``metrics.json``, ``samples.jsonl`` and ``report.html`` to ``out_dir``.

    Returns:
        ``{'rows', 'rows_with_boxes', 'metrics', 'disc_iou'}``: ``metrics`` is the grounding block of
        metrics.json (per-class and overall best-match IoU, Acc@0.5, P/R@0.5, COCO AP);
        ``disc_iou`` maps each image file stem to the best-match IoUs of its optic-disc rows.
    """
    from fundusexpert_plugin.core.geometry import iou
    from fundusexpert_plugin.eval.report import EvalOptions, evaluate_rows, write_outputs
    from fundusexpert_plugin.eval.results import load_meta, read_results
    rows = read_results(str(result_path))
    metrics, samples = evaluate_rows(rows, load_meta(str(meta_path), n_rows=len(rows)),
                                     options=EvalOptions(max_pixels=MAX_PIXELS))
    write_outputs(str(out_dir), metrics, samples)
    with_boxes = (metrics['grounding_responses'] or {}).get('n_rows_with_boxes', 0)   # eval's own count
    disc_iou: Dict[str, List[float]] = {}
    for s in samples:
        gt = s.get('gt') or []
        if gt and all(label == 'optic_disc' for label, _ in gt):
            best = max((iou(box, gt[0][1]) for _, box in s.get('pred') or []), default=0.0)
            disc_iou.setdefault(Path(str(s['image'])).stem, []).append(best)
    return {'rows': len(rows), 'rows_with_boxes': with_boxes, 'metrics': metrics['grounding'] or {},
            'report_html': str(out_dir / 'report.html'), 'disc_iou': disc_iou}


def engine_stage(work_dir: Path, *, seed: int = 0, echo=print) -> dict:
    """Stage 1: the Fundus-Engine with the landmark locator (no detector) over the held-out sample
    photographs, FundusGen rows built from its records, and its errors against the annotations.

    Returns:
        ``{'records', 'per_image': {id: {'disc_error_px', 'disc_iou', 'fovea_error_px'|None,
        'laterality_agrees'}}, 'rows_per_task', 'chain_example'}``; pixels of the 1072x712 sample
        (x4 for 4288x2848). Disc error: centre to the CODRAS disc-box centre; fovea error: to the
        official IDRiD fovea centre, where the sample has one.
    """
    from fundusexpert_plugin.build import build_fundusgen
    from fundusexpert_plugin.core.geometry import box_center, iou
    from fundusexpert_plugin.core.record import read_records
    from fundusexpert_plugin.engine import FundusEngine
    from fundusexpert_plugin.engine.batch import merge_shards, run_engine
    from fundusexpert_plugin.render.chain import cognitive_chain
    from fundusexpert_plugin.sample import SAMPLE_DIR, sample_records
    from fundusexpert_plugin.sources.codras import CODRAS_SOURCES
    truth = {r.record_id: r for r in sample_records('heldout')}
    out = work_dir / 'engine'
    shutil.rmtree(out, ignore_errors=True)
    engine = FundusEngine(None, detector_name='none (landmark locator only)', languages=['en'],
                          source_dataset='IDRiD (bundled sample), Fundus-Engine',
                          licence=CODRAS_SOURCES['IDRiD'][1])  # the photographs' licence; no box is reused
    run_engine(engine, [Path(r.image) for r in truth.values()], out, image_root=SAMPLE_DIR / 'images')
    records = list(read_records(merge_shards(out)))
    per_image = {}
    for rec in records:
        ann = truth[rec.record_id]
        disc, true_disc = rec.boxes('optic_disc'), ann.boxes('optic_disc')[0]
        row = {'disc_error_px': None, 'disc_iou': 0.0, 'fovea_error_px': None,
               'laterality_agrees': rec.laterality == ann.laterality}
        if disc:
            (x, y), (tx, ty) = box_center(disc[0]), box_center(true_disc)
            row.update(disc_error_px=round(float(((x - tx) ** 2 + (y - ty) ** 2) ** 0.5), 1),
                       disc_iou=round(iou(disc[0], true_disc), 3))
        if rec.boxes('fovea') and ann.boxes('fovea'):
            (x, y), (tx, ty) = box_center(rec.boxes('fovea')[0]), box_center(ann.boxes('fovea')[0])
            row['fovea_error_px'] = round(float(((x - tx) ** 2 + (y - ty) ** 2) ** 0.5), 1)
        per_image[rec.record_id] = row
        echo(f"[1/5 engine] {rec.record_id}: disc {row['disc_error_px']} px from the annotation (IoU "
             f"{row['disc_iou']}), fovea " + (f"{row['fovea_error_px']} px" if row['fovea_error_px'] is not None
                                              else 'not annotated' if not ann.boxes('fovea') else 'not located')
             + ", laterality "
             f"{'agrees' if row['laterality_agrees'] else 'DISAGREES'}")
    # the engine's records point at the photographs (outside its output folder) and at its own converted copies
    built = build_fundusgen(records, work_dir / 'engine_fundusgen', image_dir=out, seed=seed, languages=['en'],
                            allow_outside_root=True)
    return {'records': len(records), 'per_image': per_image, 'rows_per_task': built.rows_per_task,
            'chain_example': cognitive_chain(records[0], 'en') if records else ''}


def disc_baselines(train_records, heldout_records) -> Dict[str, float]:
    """The constant prior: per held-out photo, IoU of the mean training optic-disc box of the same
    eye side (box in image-size fractions, laterality from the annotation) with its disc box."""
    from fundusexpert_plugin.core.geometry import iou
    sums: Dict[str, List[List[float]]] = {}
    for rec in train_records:
        for box in rec.boxes('optic_disc')[:1]:
            sums.setdefault(rec.laterality, []).append(
                [box[0] / rec.width, box[1] / rec.height, box[2] / rec.width, box[3] / rec.height])
    means = {side: [sum(v) / len(v) for v in zip(*boxes)] for side, boxes in sums.items()}
    out = {}
    for rec in heldout_records:
        mean = means.get(rec.laterality)
        if mean and rec.boxes('optic_disc'):
            box = (mean[0] * rec.width, mean[1] * rec.height, mean[2] * rec.width, mean[3] * rec.height)
            out[rec.record_id] = round(iou(box, rec.boxes('optic_disc')[0]), 3)
    return out


#: The demo's training task: the shipped ``region_detection`` task restricted to the optic disc (one short
#: grounded answer per photograph and language), so that the tiny model learns the box format in CPU minutes.
DEMO_TASK = 'optic_disc_detection'
DEFAULT_DATASETS = (f'fundusgen:{DEMO_TASK}',)


def write_demo_tasks(folder: Path) -> Path:
    """The shipped task YAMLs plus :data:`DEMO_TASK` (``region_detection`` with ``targets: [optic_disc]``)
    in ``folder``; returns it (pass it as ``tasks_dir``)."""
    import yaml

    from fundusexpert_plugin.tasks.config import default_tasks_dir, task_files
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for src in task_files(default_tasks_dir()):
        shutil.copyfile(src, folder / src.name)
    task = yaml.safe_load((default_tasks_dir() / 'region_detection.yaml').read_text(encoding='utf-8'))
    task.update(name=DEMO_TASK, targets=['optic_disc'],
                description='Region detection of the optic disc only: the demo task (one short grounded answer).')
    (folder / f'{DEMO_TASK}.yaml').write_text(yaml.safe_dump(task, allow_unicode=True, sort_keys=False),
                                             encoding='utf-8')
    return folder
DEFAULT_STEPS = 150


def check_datasets(datasets: Sequence[str], rows_per_task: Dict[str, int]) -> None:
    """Refuse ``--dataset`` entries the demo cannot train on, before the model is built: each must be
    ``fundusgen`` or ``fundusgen:<task>`` (``#N`` allowed) with a task that has training rows.

    Raises:
        FundusDataError: naming the entry, the tasks with rows, and a close match when there is one.
    """
    have = sorted(t for t, n in rows_per_task.items() if n)
    for entry in datasets:
        name, _, subset = entry.partition(':')
        task = subset.split('#', 1)[0]
        if name != 'fundusgen' or (subset and task not in have and task != 'all'):
            close = difflib.get_close_matches(task or name, have, n=1)
            raise FundusDataError(f'--dataset {entry}: the demo trains on fundusgen:<task> with a task that has rows; '
                                  f'tasks with rows: {have}' + (f'; did you mean fundusgen:{close[0]}?' if close else ''))


def run_demo(work_dir: Path, *, family: str = 'qwen2_5_vl', steps: int = DEFAULT_STEPS, seed: int = 0,
             datasets=DEFAULT_DATASETS, freeze_embedding: bool = False, echo=print) -> dict:
    """Run the whole main job (module docstring); returns the summary dict (also ``summary.json``).

    Args:
        work_dir: output folder.
        family: tiny model family (``'qwen2_5_vl'`` or ``'internvl'``).
        steps: ``swift sft`` optimizer steps (batch 2).
        seed: build and training seed.
        freeze_embedding: keep the tied embedding / LM head frozen (:data:`FROZEN`).
        datasets: FundusGen subsets to train on; the default, :data:`DEMO_TASK`, is optic-disc detection
            only, so that a 10M-parameter model learns to write boxes within CPU minutes (e.g.
            ``fundusgen:region_detection`` trains every class). The held-out rows of the first one are scored.
        echo: where progress lines go (default ``print``).
    """
    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.sample import sample_records
    from fundusexpert_plugin.testing.tiny_models import make_tiny_model
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.time()
    engine = engine_stage(work_dir, seed=seed, echo=echo)
    timings['engine_s'] = time.time() - t0
    t0 = time.time()
    summaries = build_sample(work_dir / 'fundusgen', seed=seed, tasks_dir=write_demo_tasks(work_dir / 'tasks'))
    timings['build_s'] = time.time() - t0
    echo(f"[2/5 FundusGen] train rows per task: {summaries['train'].rows_per_task}")
    check_datasets(datasets, summaries['train'].rows_per_task)
    model_dir = work_dir / f'model-{family}'
    if not (model_dir / 'config.json').exists():
        make_tiny_model(family, model_dir, seed=seed)
    env = offline_env(FUNDUSGEN_DIR=str(work_dir / 'fundusgen' / 'train'),
                      FUNDUSGEN_HELDOUT_DIR=str(work_dir / 'fundusgen' / 'heldout'),
                      FUNDUSEXPERT_CACHE=str(work_dir / 'cache'))
    sft_dir = work_dir / 'sft'
    shutil.rmtree(sft_dir, ignore_errors=True)
    t0 = time.time()
    echo(f'[3/5 swift sft] {steps} steps; full log: {work_dir / "sft.log"}')
    run_logged(sft_command(model_dir, sft_dir, template=TEMPLATES[family], dataset=list(datasets),
                           steps=steps, seed=seed, freeze=FROZEN[family] if freeze_embedding else None),
               work_dir / 'sft.log', env, label='[3/5 swift sft] ', echo=echo)
    timings['sft_s'] = time.time() - t0
    checkpoint = last_checkpoint(sft_dir)
    result = work_dir / 'infer' / 'result.jsonl'
    result.parent.mkdir(exist_ok=True)
    result.unlink(missing_ok=True)
    t0 = time.time()
    eval_task = datasets[0].split(':', 1)[1] if ':' in datasets[0] else DEMO_TASK   # what was trained
    echo(f'[4/5 swift infer] held-out {eval_task}; full log: {work_dir / "infer.log"}')
    run_logged(infer_command(checkpoint, result, dataset=[f'fundusgen_heldout:{eval_task}']),
               work_dir / 'infer.log', env, label='[4/5 swift infer] ', echo=echo)
    timings['infer_s'] = time.time() - t0
    history = loss_history(checkpoint)
    plot_loss(history, work_dir / 'loss_curve.png')
    echo('[5/5 eval] scoring the held-out responses')
    scores = score_heldout(result, work_dir / 'fundusgen' / 'heldout' / f'{eval_task}.jsonl', work_dir / 'eval')
    prior = disc_baselines(sample_records('train'), sample_records('heldout'))
    ids = sorted(scores['disc_iou'])
    disc_table = {i: {'trained_model': round(sum(scores['disc_iou'][i]) / len(scores['disc_iou'][i]), 3),
                      'constant_prior': prior.get(i), 'landmark_locator': engine['per_image'].get(i, {}).get('disc_iou')}
                  for i in ids}
    summary = {
        'family': family, 'steps': steps, 'seed': seed, 'datasets': list(datasets), 'checkpoint': str(checkpoint),
        'frozen': FROZEN[family] if freeze_embedding else None, 'engine': engine,
        'fundusgen_rows': {split: s.rows_per_task for split, s in summaries.items()},
        'loss_first': history[0]['loss'] if history else None, 'loss_last': history[-1]['loss'] if history else None,
        'loss_history': history, 'heldout_detection': scores, 'disc_iou': disc_table,
        'timings_s': timings, 'result_path': str(result),
    }
    (work_dir / 'summary.json').write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    (work_dir / 'summary.md').write_text(format_summary(summary))
    return summary


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 3) if values else None


def format_summary(summary: dict) -> str:
    """Human-readable summary (Markdown)."""
    det = summary['heldout_detection']
    m = det['metrics']
    overall = {k: m.get(k) for k in ('n_gt', 'n_pred', 'acc50', 'precision50', 'recall50', 'best_match_iou')}
    overall['coco_ap'] = (m.get('coco') or {}).get('ap')
    eng = summary['engine']['per_image']
    share = det['rows_with_boxes'] / det['rows'] if det['rows'] else 0.0
    lines = [
        f"# FundusExpert demo ({summary['family']}, {summary['steps']} steps, seed {summary['seed']})",
        '',
        '## 1. Fundus-Engine (landmark locator, no detector) on the held-out photos (px at 1072x712)',
        '| photo | disc error | disc IoU | fovea error | laterality |', '|---|---|---|---|---|',
    ]
    for rid, row in sorted(eng.items()):
        lines.append(f"| {rid} | {row['disc_error_px']} | {row['disc_iou']} | "
                     f"{'-' if row['fovea_error_px'] is None else row['fovea_error_px']} | "
                     f"{'agrees' if row['laterality_agrees'] else 'disagrees'} |")
    lines += [f"FundusGen rows from the engine's records: {summary['engine']['rows_per_task']}", '',
              '## 2-4. FundusGen, swift sft, swift infer',
              f"FundusGen rows (train): {summary['fundusgen_rows'].get('train')}",
              f"Trained on: {', '.join(summary['datasets'])} (frozen: {summary.get('frozen')})",
              f"Training loss: first {summary['loss_first']:.3f} -> last {summary['loss_last']:.3f} "
              '(curve: loss_curve.png)',
              f"Held-out detection ({summary['datasets'][0]}): {det['rows']} rows, {det['rows_with_boxes']} responses with a parsable "
              f"box ({share:.0%})",
              f"  overall: {json.dumps(overall)}",
              f"  report with images and boxes: {det['report_html']}"]
    for label, cm in sorted(det['metrics'].get('per_class', {}).items()):
        lines.append(f'  {label}: {json.dumps(cm)}')
    table = summary['disc_iou']
    lines += ['', '## 5. Optic-disc IoU on the held-out photos (mean of the EN and ZH rows for the model)',
              '| photo | trained model | constant prior (mean training box per eye side) | landmark locator |',
              '|---|---|---|---|']
    for rid, row in table.items():
        lines.append(f"| {rid} | {row['trained_model']} | {row['constant_prior']} | {row['landmark_locator']} |")
    lines.append(f"| mean | {_mean(r['trained_model'] for r in table.values())} | "
                 f"{_mean(r['constant_prior'] for r in table.values())} | "
                 f"{_mean(r['landmark_locator'] for r in table.values())} |")
    lines += ['', 'Timings (s): ' + ', '.join(f'{k} {v:.0f}' for k, v in summary['timings_s'].items()),
              f"swift infer results: {summary['result_path']}", '']
    return '\n'.join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert demo``."""
    parser.add_argument('--work-dir', type=Path, default=Path('fundusexpert_demo'), help='output folder')
    parser.add_argument('--family', choices=sorted(TEMPLATES), default='qwen2_5_vl')
    parser.add_argument('--steps', type=positive_int, default=DEFAULT_STEPS, help='swift sft optimizer steps')
    parser.add_argument('--dataset', nargs='+', default=list(DEFAULT_DATASETS),
                        help='FundusGen subsets to train on (default: region detection)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--freeze-embedding', action='store_true',
                        help='keep the tiny model\'s tied embedding / LM head frozen during swift sft')


def run(args: argparse.Namespace) -> int:
    """Run ``fundusexpert demo``; prints the summary and returns 0.

    Raises:
        FundusDataError: a bad ``--dataset`` (before training), or a failed swift step (its command, exit
            code, log path and the log's last line; the CLI prints one line and exits 2).
    """
    try:
        summary = run_demo(args.work_dir, family=args.family, steps=args.steps, seed=args.seed, datasets=args.dataset,
                           freeze_embedding=args.freeze_embedding)
    except RuntimeError as exc:      # a swift step failed: its first line and the log's last line, not a traceback
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise FundusDataError(lines[0] + (f'; last log line: {lines[-1].strip()}' if len(lines) > 1 else '')) from exc
    print(format_summary(summary))
    return 0
