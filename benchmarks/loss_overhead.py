"""Benchmark: ``swift sft`` step time, plugin template + ``fundus_grounding`` loss against stock template + CE.

Two arms on identical data, model, seed and system prompt (so the token sequences are identical):

* ``stock``:  ``--template qwen2_5_vl`` and ms-swift's default loss (the model's own token CE);
* ``plugin``: ``--template fundusexpert_qwen2_5_vl --loss_type fundus_grounding
  --loss_scale fundus_grounding`` (box/ref weights, digit term, two extra logged metrics).

Model: the tiny random Qwen2.5-VL of :mod:`fundusexpert_plugin.testing.tiny_models` (hidden 64, real
151,680-token vocabulary, so the loss is a large share of a step: a worst case for overhead), full
fine-tune, float32 on CPU, one thread (``OMP_NUM_THREADS=1``). Data: ``fundusgen:region_detection``
of the bundled sample (every response is boxes, up to 10 per row), batch 2, ``--steps`` steps.

The machine is shared, so wall-clock step times swing with other people's jobs. The primary
measure is therefore **CPU time per optimizer step** of the training process: a small callback
(written into the work folder, loaded with a second ``--external_plugins`` file and enabled with
``--callbacks fx_cpu_step_timer``) records ``time.process_time()`` at every step end. The batches
are identical step by step in both arms (same seed and data order), so steps are compared in
pairs: the printed ratio is the median over steps of plugin CPU time / stock CPU time (first
``--warmup`` steps dropped; all runs of an arm averaged per step). Runs go in the order stock,
plugin, plugin, stock per round (ABBA), one ``swift sft`` at a time. Wall-clock medians
(``train_speed(s/it)`` * step in ``logging.jsonl``) are printed too, for what they are worth.

A second, in-process measurement times the loss alone (forward + backward on logits of the shape
of a long step, ``[2, 160, 151680]``, one thread): what ms-swift does with ``--loss_scale`` and
its default loss (per-token CE * loss_scale, summed, / N) against the same plus this loss.

Usage::

    python benchmarks/loss_overhead.py [--work-dir /tmp/fx_loss_overhead] [--steps 12] [--rounds 1]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import types
from pathlib import Path
from typing import Dict, List, Tuple

#: arm -> (template, extra swift sft flags)
ARMS = {
    'stock': ('qwen2_5_vl', []),
    'plugin': ('fundusexpert_qwen2_5_vl', ['--loss_type', 'fundus_grounding', '--loss_scale', 'fundus_grounding']),
}


def step_times(logging_jsonl: Path) -> List[float]:
    """Seconds per optimizer step from ms-swift's ``logging.jsonl`` (``--logging_steps 1``)."""
    elapsed = [0.0]
    for line in logging_jsonl.read_text().splitlines():
        entry = json.loads(line)
        if 'loss' in entry and 'train_speed(s/it)' in entry:
            step = int(entry['global_step/max_steps'].split('/')[0])
            elapsed.append(step * entry['train_speed(s/it)'])
    return [b - a for a, b in zip(elapsed, elapsed[1:])]


CPU_TIMER_PLUGIN = '''"""Benchmark helper: CPU seconds of the training process at each optimizer step end."""
import json
import os
import time

from swift.callbacks import TrainerCallback, callbacks_map


class CpuStepTimer(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        self.marks = [time.process_time()]

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(time.process_time())

    def on_train_end(self, args, state, control, **kwargs):
        with open(os.path.join(args.output_dir, 'cpu_step_times.json'), 'w') as f:
            json.dump([b - a for a, b in zip(self.marks, self.marks[1:])], f)


callbacks_map['fx_cpu_step_timer'] = CpuStepTimer
'''


def run_arm(arm: str, work: Path, model_dir: Path, steps: int, env: Dict[str, str], tag: str
            ) -> Tuple[List[float], List[float]]:
    """One ``swift sft`` run: (CPU seconds per step, wall-clock seconds per step)."""
    from fundusexpert_plugin.cli.demo import run_logged, sft_command
    from fundusexpert_plugin.swift_plugin.system_prompt import DEFAULT_SYSTEM
    timer = work / 'fx_cpu_step_timer.py'
    timer.write_text(CPU_TIMER_PLUGIN)
    out = work / f'sft_{tag}'
    shutil.rmtree(out, ignore_errors=True)
    template, extra = ARMS[arm]
    cmd = sft_command(model_dir, out, template=template, dataset=['fundusgen:region_detection'], steps=steps, seed=0)
    cmd.insert(cmd.index('--external_plugins') + 2, str(timer))
    cmd += extra + ['--system', DEFAULT_SYSTEM, '--save_strategy', 'no', '--callbacks', 'fx_cpu_step_timer']
    run_logged(cmd, work / f'sft_{tag}.log', env)
    cpu = json.loads((out / 'cpu_step_times.json').read_text())
    wall = step_times(out / 'logging.jsonl')
    shutil.rmtree(out, ignore_errors=True)
    return cpu, wall


def loss_only(repeat: int = 7) -> Dict[str, float]:
    """Median seconds of forward + backward of the loss alone, one CPU thread."""
    import torch

    from fundusexpert_plugin.swift_plugin.loss import FundusGroundingLoss, GroundingTokenIds
    torch.set_num_threads(1)
    batch, length, vocab = 2, 160, 151680
    ids = GroundingTokenIds((151648,), (151649,), tuple(range(15, 25)))
    box = []
    for _ in range(10):     # <|box_start|>(39,57),(74,96)<|box_end|>: 8 digits per box
        box += [151648, 7, 18, 24, 11, 20, 22, 701, 22, 19, 11, 24, 21, 8, 151649]
    labels = torch.full((batch, length), -100)
    labels[:, 2:2 + len(box)] = torch.tensor(box)
    scale = torch.ones(batch * length)
    logits = torch.randn(batch, length, vocab, requires_grad=True)
    ours = FundusGroundingLoss(None, None, token_ids=ids)

    def stock():     # ms-swift with --loss_scale: per_token_loss_func * loss_scale, sum / N
        from swift.trainers import per_token_loss_func
        token = per_token_loss_func(types.SimpleNamespace(logits=logits), labels) * scale
        (token.sum() / (labels != -100).sum()).backward()

    def plugin():
        from swift.trainers import per_token_loss_func
        token = per_token_loss_func(types.SimpleNamespace(logits=logits), labels) * scale
        ours(types.SimpleNamespace(logits=logits, loss=token), labels, loss_scale=scale).backward()

    results = {name: [] for name in ('stock_ce_with_loss_scale', 'plugin')}
    for _ in range(repeat):
        for name, fn in (('stock_ce_with_loss_scale', stock), ('plugin', plugin)):
            logits.grad = None
            start = time.perf_counter()
            fn()
            results[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', type=Path, default=None, help='scratch folder (default: a temp dir)')
    parser.add_argument('--steps', type=int, default=12, help='optimizer steps per swift sft run')
    parser.add_argument('--warmup', type=int, default=2, help='first steps of each run left out')
    parser.add_argument('--rounds', type=int, default=1, help='ABBA rounds (each runs both arms twice)')
    args = parser.parse_args()

    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.cli.demo import offline_env
    from fundusexpert_plugin.testing.tiny_models import make_tiny_model
    work = args.work_dir or Path(tempfile.mkdtemp(prefix='fx_loss_overhead_'))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / 'model'
    if not (model_dir / 'config.json').exists():
        make_tiny_model('qwen2_5_vl', model_dir)
    build_sample(work / 'fundusgen', languages=['en'])
    env = offline_env(FUNDUSGEN_DIR=str(work / 'fundusgen' / 'train'), FUNDUSEXPERT_CACHE=str(work / 'cache'),
                      OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')

    cpu: Dict[str, List[List[float]]] = {arm: [] for arm in ARMS}
    wall: Dict[str, List[float]] = {arm: [] for arm in ARMS}
    for r in range(args.rounds):
        for i, arm in enumerate(['stock', 'plugin', 'plugin', 'stock']):
            cpu_steps, wall_steps = run_arm(arm, work, model_dir, args.steps, env, f'{r}_{i}_{arm}')
            cpu[arm].append(cpu_steps[args.warmup:])
            wall[arm] += wall_steps[args.warmup:]
            print(f'round {r} run {i} {arm:6s}: CPU s/step {", ".join(f"{x:.2f}" for x in cpu_steps)}', flush=True)

    per_step = {arm: [statistics.mean(col) for col in zip(*runs)] for arm, runs in cpu.items()}
    ratios = [p / s for p, s in zip(per_step['plugin'], per_step['stock'])]
    stock, plugin = statistics.mean(per_step['stock']), statistics.mean(per_step['plugin'])
    print(f'\nswift sft, tiny Qwen2.5-VL on CPU (1 thread), fundusgen:region_detection, batch 2, '
          f'{args.rounds} ABBA round(s), steps {args.warmup + 1}-{args.steps}:')
    print(f'  mean CPU time per step: stock (qwen2_5_vl + model CE) {stock:.3f} s, '
          f'plugin (fundusexpert template + fundus_grounding loss + loss scale) {plugin:.3f} s')
    print(f'  ratio plugin / stock: median over paired steps {statistics.median(ratios):.3f} '
          f'({(statistics.median(ratios) - 1) * 100:+.1f} %), of the means {plugin / stock:.3f}; '
          f'per step {", ".join(f"{x:.3f}" for x in ratios)}')
    ws, wp = statistics.median(wall['stock']), statistics.median(wall['plugin'])
    print(f'  wall-clock median step (shared machine, noisy): stock {ws:.3f} s, plugin {wp:.3f} s, '
          f'ratio {wp / ws:.3f}')
    loss = loss_only()
    print('\nloss alone, forward + backward, logits [2, 160, 151680] float32, 1 thread (median of 7):')
    for name, seconds in loss.items():
        print(f'  {name:26s} {seconds * 1000:7.1f} ms')
    print(f'  plugin / stock_ce_with_loss_scale = {loss["plugin"] / loss["stock_ce_with_loss_scale"]:.3f}')


if __name__ == '__main__':
    main()
