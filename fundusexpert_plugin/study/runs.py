"""One point of the scaling study: ``swift sft`` on a subset, then a scoring pass on its checkpoint.

Training is the user's own ``swift sft`` command line with the study's data and bookkeeping flags
added (:data:`STUDY_FLAGS`): ``--dataset fundusgen`` with ``$FUNDUSGEN_DIR`` set to the subset,
``--val_dataset`` on the held-out FundusGen (``$FUNDUSGEN_HELDOUT_DIR``), the plugin, ``--seed``,
``--data_seed`` and ``--output_dir``. Everything else (steps or epochs, learning rate, tuner,
DeepSpeed ...) is the user's and the same for every point. The process environment is passed
through unchanged, so ``NPROC_PER_NODE``, ``CUDA_VISIBLE_DEVICES`` etc. act exactly as for
``swift sft``.

Scoring:

* **held-out loss**: the last ``eval_loss`` in the checkpoint's ``trainer_state.json``, i.e. swift's
  own evaluation on ``--val_dataset``. swift evaluates on the save schedule by default
  (``eval_strategy`` follows ``save_strategy``, ``eval_steps`` = ``save_steps``), so the final
  checkpoint carries it when a save falls on the last step;
* **task metrics**: ``swift infer`` of the checkpoint on held-out task rows (the first
  ``eval_limit`` rows of each task, written once by :func:`write_eval_rows`), scored with
  :func:`fundusexpert_plugin.eval.report.evaluate_rows` (grounding Acc@0.5 and mean IoU, MCQ
  strict accuracy, clinical consistency with the offline lexicon judge).

Resuming: a point folder with ``point.json`` is finished and is read back, never re-run; with
``sft.done`` only the scoring runs again; otherwise training restarts from scratch.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.study.subsets import Subset
from fundusexpert_plugin.swift_plugin.launch import last_checkpoint, log_history, run_logged, swift_executable

#: Flags the study sets itself; the user's ``swift sft`` arguments may not contain them.
STUDY_FLAGS = ('--dataset', '--val_dataset', '--output_dir', '--seed', '--data_seed', '--external_plugins',
               '--add_version')

#: Metric name -> (path in metrics.json, higher is better).
METRICS = {
    'grounding_acc50': (('grounding', 'acc50'), True),
    'grounding_best_match_iou': (('grounding', 'best_match_iou'), True),
    'mcq_accuracy': (('mcq', 'strict', 'overall'), True),
    'consistency': (('consistency', 'per_report_mean'), True),
}


@dataclass
class RunSettings:
    """What every point shares.

    Attributes:
        swift_args: the user's ``swift sft`` arguments (model, template, steps/epochs, ...).
        heldout_dir: held-out FundusGen folder (``$FUNDUSGEN_HELDOUT_DIR``).
        val_dataset: ``--val_dataset`` specs (default every held-out task).
        eval_tasks: held-out tasks run through ``swift infer`` and scored (empty: loss only).
        eval_limit: the first this many held-out rows of each eval task are scored; ``None``: all.
        infer_args: extra ``swift infer`` arguments (e.g. ``--torch_dtype float32``).
        seed: ``--seed`` and ``--data_seed`` of every run.
    """

    swift_args: List[str]
    heldout_dir: str
    val_dataset: List[str] = field(default_factory=lambda: ['fundusgen_heldout'])
    eval_tasks: List[str] = field(default_factory=lambda: ['region_detection'])
    eval_limit: Optional[int] = None
    infer_args: List[str] = field(default_factory=list)
    max_new_tokens: int = 256
    seed: int = 0

    def check(self) -> None:
        """Raises FundusDataError: a user argument that the study sets itself."""
        taken = [a for a in self.swift_args if a.split('=', 1)[0] in STUDY_FLAGS]
        if taken:
            raise FundusDataError(f'swift sft arguments: {", ".join(taken)} is set by the study for every point '
                                  f'(reserved: {", ".join(STUDY_FLAGS)})')


def sft_command(settings: RunSettings, out_dir: Path) -> List[str]:
    """``swift sft`` argument list of one point (user's flags first, then the study's)."""
    from fundusexpert_plugin.swift_plugin.registry import plugin_path
    seed = str(settings.seed)
    return [swift_executable(), 'sft', *settings.swift_args, '--external_plugins', plugin_path(),
            '--dataset', 'fundusgen', '--val_dataset', *settings.val_dataset,
            '--seed', seed, '--data_seed', seed, '--add_version', 'false', '--output_dir', str(out_dir)]


def write_eval_rows(settings: RunSettings, out_dir: Path) -> Dict[str, Path]:
    """``<out_dir>/<task>.jsonl``: the first ``eval_limit`` held-out rows of each eval task, image
    paths absolute; both the ``swift infer`` dataset and the scoring meta (same row order).

    Raises:
        FundusDataError: an eval task with no held-out rows.
    """
    from fundusexpert_plugin.core.jsonl import write_jsonl
    from fundusexpert_plugin.study.subsets import read_task_rows
    rows = read_task_rows(settings.heldout_dir)
    paths = {}
    for task in settings.eval_tasks:
        if task not in rows:
            raise FundusDataError(f'--eval-tasks: {task!r} has no rows in {settings.heldout_dir} '
                                  f'(tasks with rows: {", ".join(sorted(rows))})')
        paths[task] = write_jsonl(Path(out_dir) / f'{task}.jsonl', rows[task][:settings.eval_limit])
    return paths


def infer_command(settings: RunSettings, checkpoint: Path, rows: Path, result: Path) -> List[str]:
    """``swift infer`` argument list for one eval-rows file (greedy decoding)."""
    return [swift_executable(), 'infer', '--model', str(checkpoint), '--val_dataset', str(rows),
            '--infer_backend', 'transformers', '--temperature', '0', '--max_new_tokens', str(settings.max_new_tokens),
            *settings.infer_args, '--result_path', str(result)]


def heldout_loss(checkpoint: Path) -> float:
    """The last ``eval_loss`` logged before ``checkpoint`` was saved.

    Raises:
        FundusDataError: no evaluation ran (e.g. ``--eval_strategy no``, or no save on the last step).
    """
    losses = [e['eval_loss'] for e in log_history(checkpoint) if 'eval_loss' in e]
    if not losses:
        raise FundusDataError(f'{checkpoint}/trainer_state.json: no eval_loss: let swift evaluate when it saves '
                              '(do not pass --eval_strategy no; make --save_steps divide the step count)')
    return float(losses[-1])


def metric_values(metrics: dict) -> Dict[str, float]:
    """The :data:`METRICS` found in a metrics.json dict (missing or ``None`` ones left out)."""
    out = {}
    for name, (path, _) in METRICS.items():
        value = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            out[name] = float(value)
    return out


def score_task(result: Path, meta: Path, out_dir: Path) -> Dict[str, float]:
    """Score one ``swift infer`` result against its FundusGen task file; writes metrics.json etc."""
    from fundusexpert_plugin.core.lexicon_judge import LexiconJudge
    from fundusexpert_plugin.eval.report import EvalOptions, evaluate_rows, write_outputs
    from fundusexpert_plugin.eval.results import load_meta, read_results
    max_pixels = os.environ.get('MAX_PIXELS')
    rows = read_results(str(result))
    metrics, samples = evaluate_rows(rows, load_meta(str(meta), n_rows=len(rows)), judge=LexiconJudge(),
                                     options=EvalOptions(max_pixels=int(max_pixels) if max_pixels else None))
    write_outputs(str(out_dir), metrics, samples)
    return metric_values(metrics)


def run_point(subset: Subset, settings: RunSettings, point_dir: Path, eval_rows: Dict[str, Path]) -> dict:
    """Train and score one subset in ``point_dir`` (resumable; see the module docstring).

    Args:
        eval_rows: task -> rows file from :func:`write_eval_rows`.

    Returns:
        ``point.json``: arm, fraction, ``n_rows``, ``n_images``, ``rows_per_task``, checkpoint,
        ``heldout_loss``, ``train_loss_last``, ``metrics`` (``{task: {metric: value}}``).

    Raises:
        RuntimeError: a swift command failed (log tail included).
        FundusDataError: no held-out loss was logged.
    """
    point_dir.mkdir(parents=True, exist_ok=True)
    done = point_dir / 'point.json'
    if done.exists():
        return json.loads(done.read_text())
    env = dict(os.environ, FUNDUSGEN_DIR=subset.path, FUNDUSGEN_HELDOUT_DIR=str(Path(settings.heldout_dir).resolve()))
    sft_dir, sft_done = point_dir / 'sft', point_dir / 'sft.done'
    if not sft_done.exists():
        shutil.rmtree(sft_dir, ignore_errors=True)
        run_logged(sft_command(settings, sft_dir), point_dir / 'sft.log', env)
        sft_done.write_text(str(last_checkpoint(sft_dir)) + '\n')
    checkpoint = Path(sft_done.read_text().strip())
    history = log_history(checkpoint)
    train_losses = [e['loss'] for e in history if 'loss' in e]
    point = {'arm': subset.arm, 'fraction': subset.fraction, 'n_rows': subset.n_rows, 'n_images': subset.n_images,
             'rows_per_task': subset.rows_per_task, 'checkpoint': str(checkpoint),
             'heldout_loss': heldout_loss(checkpoint),
             'train_loss_last': float(train_losses[-1]) if train_losses else None, 'metrics': {}}
    for task, rows in eval_rows.items():
        result = point_dir / 'infer' / f'{task}.jsonl'
        result.parent.mkdir(exist_ok=True)
        result.unlink(missing_ok=True)
        run_logged(infer_command(settings, checkpoint, rows, result), point_dir / f'infer_{task}.log', env)
        point['metrics'][task] = score_task(result, rows, point_dir / 'eval' / task)
    tmp = done.with_suffix('.tmp')
    tmp.write_text(json.dumps(point, indent=2) + '\n')
    os.replace(tmp, done)
    return point


def completed(points: Sequence[dict]) -> List[dict]:
    """Points that carry a held-out loss (all finished points do)."""
    return [p for p in points if p.get('heldout_loss') is not None]
