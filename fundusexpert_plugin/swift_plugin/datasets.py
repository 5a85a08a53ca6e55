"""FundusGen datasets for ms-swift: ``--dataset fundusgen:<task>`` and ``fundusgen_heldout:<task>``.

A FundusGen folder (written by ``fundusexpert data build``) holds one ``<task>.jsonl`` per task, with
image paths relative to the folder. The registered datasets read:

* ``fundusgen``: ``$FUNDUSGEN_DIR`` if set, else the bundled sample's ``train`` split;
* ``fundusgen_heldout``: ``$FUNDUSGEN_HELDOUT_DIR`` if set, else the sample's ``heldout`` split.

The sample is built on first use into ``$FUNDUSEXPERT_CACHE`` (default ``~/.cache/fundusexpert``).
Subsets are the task names (one per YAML in ``templates/``; in a folder, the tasks its
``build_summary.json`` lists); ``fundusgen`` alone or ``fundusgen:all`` loads every task.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import List

import numpy as np

from swift.dataset import DatasetLoader, DatasetMeta, MessagesPreprocessor, SubsetDataset, register_dataset

from fundusexpert_plugin import __version__
from fundusexpert_plugin.tasks.config import load_tasks

logger = logging.getLogger(__name__)

DATASETS = {'fundusgen': ('FUNDUSGEN_DIR', 'train'), 'fundusgen_heldout': ('FUNDUSGEN_HELDOUT_DIR', 'heldout')}


def _registered_folders() -> dict:
    """``{dataset name: folder from its environment variable}`` for the variables that are set."""
    return {name: os.path.abspath(os.environ[var]) for name, (var, _) in DATASETS.items() if os.environ.get(var)}


def cache_dir() -> Path:
    """Folder for the built sample (``$FUNDUSEXPERT_CACHE`` or ``~/.cache/fundusexpert``)."""
    return Path(os.environ.get('FUNDUSEXPERT_CACHE') or Path.home() / '.cache' / 'fundusexpert')


def sample_fundusgen_dir() -> Path:
    """The bundled sample built as FundusGen (``<cache>/sample-<version>``), built if missing.

    The build goes to a temporary folder that is renamed at the end, so concurrent processes
    (DDP ranks) never read a half-written folder.
    """
    from fundusexpert_plugin.build import build_sample
    target = cache_dir() / f'sample-{__version__}'
    if not (target / 'heldout' / 'build_summary.json').exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix='sample-', dir=target.parent))
        build_sample(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


class FundusGenPreprocessor(MessagesPreprocessor):
    """Standard messages rows; image paths relative to the FundusGen folder become absolute."""

    def __init__(self, root: Path | str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)

    def preprocess(self, row):
        row = super().preprocess(row)
        if row is not None and row.get('images'):
            row['images'] = [img if not isinstance(img, str) or os.path.isabs(img) else os.path.normpath(self.root / img)
                             for img in row['images']]
        return row


class FundusGenLoader(DatasetLoader):
    """Loads the task files of a FundusGen folder selected by subset (``fundusgen:region_detection``).

    The subsets are the tasks the folder's ``build_summary.json`` lists
    (:func:`fundusexpert_plugin.build.built_tasks`), so a task YAML added to ``templates/`` (or built with
    ``--tasks-dir``) is loadable without registering anything, and any other ``.jsonl`` file in the folder
    (a records file, notes) is never trained on (it is named in the log). Rows carry their own ``lang``;
    a task defined in fewer languages than the build simply has fewer rows. Without a subset (or with
    ``all``) every non-empty task file is loaded and each task is sampled to ``round(rows * weight)``
    rows (repeating rows when ``weight > 1``; seeded), with the weights of ``build_summary.json``.
    """

    def load(self, dataset_syntax=None, dataset_meta=None, *, use_hf=None):
        root = Path(dataset_syntax.dataset)
        env = next((DATASETS[n][0] for n, folder in _registered_folders().items() if folder == str(root)), None)
        for name, marker in _SAMPLE_MARKERS.items():
            if dataset_syntax.dataset == marker:
                root = sample_fundusgen_dir() / DATASETS[name][1]
                logger.warning('%s: $%s is not set, so the bundled 12-photograph sample is used (%s); set it to '
                               'the folder `fundusexpert data build` wrote to train on your data', name,
                               DATASETS[name][0], root)
        summary = root / 'build_summary.json'
        if not summary.exists():
            where = f' (${env})' if env else ''
            splits = [d.name for d in (root.iterdir() if root.is_dir() else ()) if (d / 'build_summary.json').exists()]
            hint = (f'it holds the split folder(s) {sorted(splits)}: point it at one of them, e.g. {root / sorted(splits)[0]}'
                    if splits else 'build one with `fundusexpert data build`')
            raise FileNotFoundError(f'{summary} not found: {root}{where} is not a FundusGen folder; {hint}')
        from fundusexpert_plugin.build import built_tasks, read_build_summary
        built = read_build_summary(root)
        weights = built.get('task_weights', {})
        lacking = built.get('task_languages_missing', {})
        known = sorted(built_tasks(root))
        ignored = sorted(p.name for p in root.glob('*.jsonl') if p.stem not in known)
        if ignored:
            logger.info('%s: %s not a task of its build_summary.json; not loaded', root,
                        ', '.join(ignored) + (' is' if len(ignored) == 1 else ' are'))
        requested = dataset_syntax.subsets or ['all']
        everything = requested in (['all'], ['default'])
        if everything:
            requested = known
        unknown = [s for s in requested if s not in known]
        if unknown:
            close = sorted({c for u in unknown for c in difflib.get_close_matches(u, known, n=1)})
            raise KeyError(f'unknown FundusGen subset(s) {unknown}; tasks in {root}: {known}'
                           + (f'; did you mean {", ".join(close)}?' if close else ''))
        parts = []
        for name in requested:
            path = root / f'{name}.jsonl'
            if not path.is_file():
                raise FileNotFoundError(f'{path}: task {name!r} is listed in {summary} but its file is missing; '
                                        'rebuild the folder with `fundusexpert data build`')
            if path.stat().st_size == 0:
                if everything:  # a task with no rows for these records (e.g. grading without grades)
                    continue
                if lacking.get(name):  # a task defined in fewer languages than the build's
                    raise ValueError(f'{path}: task {name!r} has no rows: it defines no '
                                     f'{"/".join(lacking[name])} prompts, the language(s) this folder was built in')
                raise ValueError(f'{path}: task {name!r} has no rows (e.g. grading needs records with a grade label)')
            meta = dataclasses.replace(dataset_meta, preprocess_func=FundusGenPreprocessor(root))
            part = self._load_dataset_path(str(path), meta)
            if everything and weights.get(name, 1.0) != 1.0:
                part = part.select(weighted_indices(len(part), weights[name], seed=0))
            parts.append(part)
        return self.concat_datasets(parts)


def weighted_indices(n_rows: int, weight: float, *, seed: int = 0) -> List[int]:
    """Row indices for a task sampled to ``round(n_rows * weight)`` rows: whole copies of every row
    for the integer part of the weight, then a seeded sample without repetition for the rest."""
    target = int(round(n_rows * weight))
    whole, rest = divmod(target, n_rows)
    order = np.random.RandomState(seed).permutation(n_rows).tolist()
    return sorted(list(range(n_rows)) * whole + order[:rest])


_SAMPLE_MARKERS = {'fundusgen': '<fundusexpert-sample:train>', 'fundusgen_heldout': '<fundusexpert-sample:heldout>'}


def task_names() -> List[str]:
    """Names of the shipped tasks (the subsets)."""
    return [t.name for t in load_tasks()]


def register(exist_ok: bool = False) -> None:
    """Register ``fundusgen`` and ``fundusgen_heldout`` with one subset per task.

    The folder is read from the environment at registration time; when unset, a marker makes the
    loader build and use the bundled sample on first load (nothing is built at import).

    Raises:
        ValueError: already registered and ``exist_ok`` is False.
    """
    subsets = [SubsetDataset(name=n, subset=n) for n in task_names()]
    for name, (env, _) in DATASETS.items():
        path = os.environ.get(env)
        register_dataset(DatasetMeta(
            dataset_name=name,
            dataset_path=os.path.abspath(path) if path else _SAMPLE_MARKERS[name],
            subsets=subsets,
            loader=FundusGenLoader,
            tags=['multi-modal', 'grounding', 'ophthalmology'],
            help='FundusGen (FundusExpert): fundus photographs rendered into grounded instruction tasks.'),
            exist_ok=exist_ok)
