"""Benchmark: time of the GRPO rewards per 1,000 completions, beside the box parser alone.

A GRPO step samples ``num_generations`` completions per prompt and scores each with every reward; the
rewards must stay a small share of a rollout step (seconds per completion on a GPU). This measures, on
one CPU thread, the ms-swift reward classes called as ``swift rlhf`` calls them (a batch of completions
with the rows' columns as keyword arguments) against the parser ``fundusexpert eval`` runs on every
response (:func:`eval.parse.find_boxes` + :func:`eval.parse.boxes_to_px`), and prints the ratio.

Completions: the rows of the bundled sample built as FundusGen (region detection incl. known-absent
targets, grounded reports, reports, MCQ), each answered in several ways: the reference answer in the
InternVL grid form and in the Qwen resized-pixel form, boxes shifted by a quarter of their width, an
extra box, an unparsable string, an MCQ letter with a leading space. Cycled to ``--n`` completions.

Usage::

    python benchmarks/rewards_throughput.py [--n 1000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MAX_PIXELS', '50176')

TASKS = ('region_detection', 'grounded_report', 'report', 'mcq')


def answers(row: dict) -> List[str]:
    """Several completions for one row (module docstring), from its reference answer and boxes."""
    from fundusexpert_plugin.swift_plugin.rewards import template_resized_size
    from fundusexpert_plugin.testing.answers import reference_answer

    reference = row['messages'][-1]['content']
    if row['kind'] == 'mcq':
        return [reference, ' ' + reference, 'The answer is ' + reference]
    if '<bbox>' not in reference:
        return [reference, 'no idea', '<ref>haemorrhages</ref><box>[[10, 10, 40, 40]]</box>']
    internvl = reference_answer(row)
    return [internvl,
            reference_answer(row, 'qwen', resized_size=template_resized_size(row['width'], row['height'])),
            reference_answer(row, shift_frac=0.25),
            internvl + ' <ref>optic disc</ref><box>[[0, 0, 99, 99]]</box>',
            'The image shows a fundus ' * 8]


def completions_and_rows(n: int, work_dir: Path) -> Tuple[List[str], List[dict]]:
    """``n`` completions and their rows, as ms-swift hands them to rewards (completion last in messages)."""
    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.core.jsonl import load_jsonl

    build_sample(work_dir / 'fundusgen', languages=['en'])
    pairs = []
    for task in TASKS:
        for row in load_jsonl(work_dir / 'fundusgen' / 'train' / f'{task}.jsonl'):
            prompt = row['messages'][:-1]
            for text in answers(row):
                pairs.append((text, {**row, 'messages': prompt + [{'role': 'assistant', 'content': text}]}))
    pairs = [pairs[i % len(pairs)] for i in range(n)]
    return [c for c, _ in pairs], [r for _, r in pairs]


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Smallest wall time of ``repeats`` runs of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(n: int, repeats: int, work_dir: Path) -> Dict[str, float]:
    """Seconds per 1,000 completions: ``'parser'`` and each ``--reward_funcs`` name."""
    from swift.dataset import RowPreprocessor
    from swift.rewards import orms

    from fundusexpert_plugin.eval.parse import boxes_to_px, find_boxes
    from fundusexpert_plugin.swift_plugin.registry import register_all
    from fundusexpert_plugin.swift_plugin.rewards import REWARDS, template_resized_size

    register_all()
    completions, rows = completions_and_rows(n, work_dir)
    batched = RowPreprocessor.rows_to_batched(rows)

    def parser_only():
        for text, row in zip(completions, rows):
            w, h = row['width'], row['height']
            boxes_to_px(find_boxes(text), w, h, resized_size=template_resized_size(w, h))

    out = {'parser': best_of(parser_only, repeats) * 1000 / n}
    for name in REWARDS:
        reward = orms[name]()
        out[name] = best_of(lambda: reward(completions, trainer_state=None, **batched), repeats) * 1000 / n
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--n', type=int, default=1000, help='completions per timing (default 1000)')
    parser.add_argument('--repeats', type=int, default=3, help='timings per measure; the fastest is kept')
    parser.add_argument('--work-dir', type=Path, default=None, help='folder for the built sample (default: temp)')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='fx_rewards_') as tmp:
        result = measure(args.n, args.repeats, args.work_dir or Path(tmp))
    parse_s = result['parser']
    print(f'{"":22s} {"s / 1000 completions":>22s} {"x parser":>10s}')
    for name, seconds in result.items():
        print(f'{name:22s} {seconds:22.4f} {seconds / parse_s:10.2f}')
    total = sum(v for k, v in result.items() if k != 'parser')
    print(f'{"all four rewards":22s} {total:22.4f} {total / parse_s:10.2f}')
    print(f'ratio (all four rewards / parser alone): {total / parse_s:.2f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
