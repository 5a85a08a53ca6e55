"""Nested, seeded, task-stratified subsets of a FundusGen folder, in one or two arms.

For each task file ``<task>.jsonl`` the rows are put in one seeded random order (numpy
``RandomState(seed)`` permutation, the same for every fraction and arm); the subset of fraction
``f`` keeps the first ``ceil(f * n_task)`` rows of every task. Hence:

* subsets are **nested**: each contains every smaller one (same order, longer prefix);
* each keeps the **task mix** of the full folder (up to rounding up, so no task vanishes);
* the arms share rows: ``plain`` is ``chain`` minus the cognitive-chain tasks
  (:data:`CHAIN_TASKS`), i.e. the same images with and without the chain.

A subset is itself a FundusGen folder (task files, ``build_summary.json`` with the arm's task
weights, ``subset.json``), with image paths made absolute so it can live anywhere. ``N`` of a
point is its number of rows (what ``swift sft`` trains on, before task weights).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from fundusexpert_plugin.build import built_tasks
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.jsonl import load_jsonl, write_jsonl

#: Tasks that carry the cognitive chain (positions -> findings -> diagnosis).
CHAIN_TASKS = ('grounded_report', 'report')
ARMS = ('chain', 'plain')


def parse_fraction(text: str) -> float:
    """``'1/16'``, ``'0.25'`` or ``'1'`` -> a fraction in ``(0, 1]``.

    Raises:
        FundusDataError: not a number in ``(0, 1]``.
    """
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise FundusDataError(f'--fractions: {text!r} is not a fraction such as 1/8 or 0.25') from None
    if not 0 < value <= 1:
        raise FundusDataError(f'--fractions: {text!r} is not in (0, 1]')
    return value


def fraction_label(value: float) -> str:
    """Folder-safe name of a fraction: ``0.0625`` -> ``'f1_16'``, ``1.0`` -> ``'f1'``."""
    frac = Fraction(value).limit_denominator(1024)
    return f'f{frac.numerator}' if frac.denominator == 1 else f'f{frac.numerator}_{frac.denominator}'


@dataclass
class Subset:
    """One written subset.

    Attributes:
        arm: ``'chain'`` or ``'plain'``.
        fraction: share of every task's rows, ``(0, 1]``.
        path: the subset's FundusGen folder.
        n_rows: rows over all tasks (the ``N`` of the scaling fit).
        n_images: distinct images over all rows.
        rows_per_task: task name -> rows.
    """

    arm: str
    fraction: float
    path: str
    n_rows: int
    n_images: int
    rows_per_task: Dict[str, int] = field(default_factory=dict)


def _absolute_images(row: dict, root: Path) -> dict:
    images = row.get('images')
    if images:
        row = dict(row, images=[img if not isinstance(img, str) or os.path.isabs(img) else os.path.normpath(root / img)
                                for img in images])
    return row


def read_task_rows(fundusgen_dir: Path | str) -> Dict[str, List[dict]]:
    """``{task: rows}`` of a FundusGen folder, for the tasks its ``build_summary.json`` lists
    (:func:`fundusexpert_plugin.build.built_tasks`; other ``.jsonl`` files are not tasks), image paths
    made absolute.

    Raises:
        FundusDataError: no ``build_summary.json`` (not a FundusGen folder) or no task rows.
        FileNotFoundError: a listed task file is missing.
    """
    root = Path(fundusgen_dir).resolve()
    if not (root / 'build_summary.json').exists():
        raise FundusDataError(f'{root}: no build_summary.json; not a FundusGen folder (`fundusexpert data build`)')
    tasks = {name: [_absolute_images(r, root) for r in load_jsonl(root / f'{name}.jsonl')]
             for name in sorted(built_tasks(root))}
    tasks = {name: rows for name, rows in tasks.items() if rows}
    if not tasks:
        raise FundusDataError(f'{root}: every task file is empty')
    return tasks


def arm_tasks(arm: str, tasks: Sequence[str]) -> List[str]:
    """The tasks an arm trains on: ``chain`` all, ``plain`` all but :data:`CHAIN_TASKS`.

    Raises:
        FundusDataError: unknown arm, or no task left.
    """
    if arm not in ARMS:
        raise FundusDataError(f'--arms: unknown arm {arm!r}; expected {" or ".join(ARMS)}')
    chosen = [t for t in tasks if arm == 'chain' or t not in CHAIN_TASKS]
    if not chosen:
        raise FundusDataError(f'arm {arm!r}: no task left among {list(tasks)}')
    return chosen


def write_subsets(fundusgen_dir: Path | str, out_dir: Path | str, fractions: Sequence[float], *,
                  arms: Sequence[str] = ('chain',), seed: int = 0) -> List[Subset]:
    """Write ``<out_dir>/<arm>/<fraction label>/`` for every arm and fraction (see module docstring).

    Returns:
        The subsets, arms in the given order, fractions ascending.

    Raises:
        FundusDataError: as :func:`read_task_rows` and :func:`arm_tasks`.
    """
    src = Path(fundusgen_dir).resolve()
    task_rows = read_task_rows(src)
    summary = json.loads((src / 'build_summary.json').read_text(encoding='utf-8'))
    order = {t: np.random.RandomState(seed).permutation(len(rows)) for t, rows in task_rows.items()}
    written = []
    for arm in arms:
        names = arm_tasks(arm, list(task_rows))
        for fraction in sorted(set(fractions)):
            folder = Path(out_dir) / arm / fraction_label(fraction)
            folder.mkdir(parents=True, exist_ok=True)
            rows_per_task, images = {}, set()
            for name in names:
                keep = sorted(order[name][:math.ceil(fraction * len(task_rows[name]))].tolist())
                rows = [task_rows[name][i] for i in keep]
                write_jsonl(folder / f'{name}.jsonl', rows)
                rows_per_task[name] = len(rows)
                images.update(img for r in rows for img in (r.get('images') or []) if isinstance(img, str))
            subset = Subset(arm, fraction, str(folder.resolve()), sum(rows_per_task.values()), len(images),
                            rows_per_task)
            weights = summary.get('task_weights', {})
            (folder / 'build_summary.json').write_text(json.dumps({
                'out_dir': str(folder), 'rows_per_task': rows_per_task, 'seed': summary.get('seed', 0),
                'languages': summary.get('languages', []),
                'task_versions': {t: v for t, v in summary.get('task_versions', {}).items() if t in names},
                'task_weights': {t: w for t, w in weights.items() if t in names},
                'subset_of': str(src), 'subset_seed': seed}, indent=2) + '\n')
            (folder / 'subset.json').write_text(json.dumps(asdict(subset), indent=2) + '\n')
            written.append(subset)
    return written
