"""The scaling study end to end: subsets -> one run per subset and arm -> power-law fits -> files.

Output folder::

    subsets/<arm>/<fraction>/   nested FundusGen subsets (:mod:`.subsets`)
    eval_rows/<task>.jsonl      held-out rows scored by ``swift infer`` (:func:`.runs.write_eval_rows`)
    runs/<arm>/<fraction>/      one ``swift sft`` + scoring each; ``point.json`` marks it finished
    study_settings.json         what every point shares (swift arguments, data, seed): a rerun with
                                other values is refused (:func:`check_study_settings`)
    scaling.json                settings, points, and one fit per arm and quantity
    scaling.png                 held-out loss against N, log-log, one line per arm
    scaling_<quantity>.png      the same for each task metric measured

Every quantity is fitted as ``L = a * N**k`` (``+ c`` with enough points); see :mod:`.fit` for
the two sign conventions reported.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fundusexpert_plugin.core.recorded_options import check_recorded_options
from fundusexpert_plugin.study.fit import PowerLawFit, fit_power_law
from fundusexpert_plugin.study.plot import plot_scaling
from fundusexpert_plugin.study.runs import METRICS, RunSettings, run_point, write_eval_rows
from fundusexpert_plugin.study.subsets import fraction_label, write_subsets

logger = logging.getLogger(__name__)

LOSS = 'heldout_loss'


def quantities(point: dict) -> Dict[str, float]:
    """``{quantity: value}`` of one point: ``heldout_loss`` and ``<task>/<metric>`` for each metric."""
    out = {LOSS: point['heldout_loss']}
    for task, values in point.get('metrics', {}).items():
        out.update({f'{task}/{name}': value for name, value in values.items()})
    return out


def fit_quantity(points: Sequence[dict], quantity: str, *, n_boot: int, seed: int,
                 with_offset: Optional[bool] = None) -> Optional[PowerLawFit]:
    """Fit one quantity over points; ``None`` with fewer than two distinct N or a value <= 0 (logged)."""
    pairs = [(p['n_rows'], quantities(p).get(quantity)) for p in points]
    pairs = [(n, v) for n, v in pairs if v is not None]
    if len({n for n, _ in pairs}) < 2 or any(v <= 0 for _, v in pairs):
        logger.warning('%s: not fitted (needs two distinct N with positive values; got %s)', quantity, pairs)
        return None
    return fit_power_law([n for n, _ in pairs], [v for _, v in pairs], with_offset=with_offset,
                         n_boot=n_boot, seed=seed)


#: :class:`.runs.RunSettings` fields every point must share -> how a refusal names them.
SHARED_SETTINGS = {'fundusgen_dir': '--fundusgen', 'heldout_dir': '--heldout', 'swift_args': 'swift sft arguments',
                   'val_dataset': '--val-dataset', 'eval_tasks': '--eval-tasks', 'eval_limit': '--eval-limit',
                   'infer_args': '--infer-args', 'max_new_tokens': '--max-new-tokens', 'seed': '--seed'}
#: the file of a study folder that records :data:`SHARED_SETTINGS`
SETTINGS_FILE = 'study_settings.json'


def check_study_settings(out: Path, fundusgen_dir: Path | str, settings: RunSettings) -> Path:
    """Record what every point of the study shares (:data:`SHARED_SETTINGS`) in ``<out>/study_settings.json``,
    or, on a rerun, check it: points trained with other swift arguments, data or seed are not fitted
    together with new ones. Fractions and arms may be added; a folder with no finished training yet
    takes the new settings (:func:`~fundusexpert_plugin.core.recorded_options.check_recorded_options`).

    Raises:
        FundusDataError: a shared setting differs from the recorded one (each named, old -> new).
    """
    values = {name: getattr(settings, name) for name in SHARED_SETTINGS if name != 'fundusgen_dir'}
    values['fundusgen_dir'] = str(Path(fundusgen_dir).resolve())
    values['heldout_dir'] = str(Path(settings.heldout_dir).resolve())
    started = any((out / 'runs').glob('*/*/sft.done'))
    return check_recorded_options(out / SETTINGS_FILE, values, names=SHARED_SETTINGS, has_outputs=started,
                                  what='runs', advice='give a new --out, or the recorded settings to resume')


def run_study(fundusgen_dir: Path | str, out_dir: Path | str, settings: RunSettings, *,
              fractions: Sequence[float], arms: Sequence[str] = ('chain',), n_boot: int = 2000,
              with_offset: Optional[bool] = None) -> dict:
    """Run (or resume) the whole study and write ``scaling.json`` and the plots.

    Args:
        fundusgen_dir: the training FundusGen folder.
        out_dir: study folder (see the module docstring); re-running resumes it.
        settings: the shared run settings (the user's swift flags, held-out data, seed).
        fractions: subset sizes as shares of the data, e.g. ``[1/16, 1/8, 1/4, 1/2, 1]``.
        arms: ``'chain'`` and/or ``'plain'`` (:mod:`.subsets`).
        n_boot: bootstrap refits per fit.
        with_offset: force or forbid the ``+ c`` term (default: by point count, :mod:`.fit`).

    Returns:
        The ``scaling.json`` dict.

    Raises:
        FundusDataError: bad data or flags, or a rerun into a folder whose points were made with
            other settings (:func:`check_study_settings`); RuntimeError: a swift command failed.
    """
    settings.check()
    out = Path(out_dir).resolve()
    check_study_settings(out, fundusgen_dir, settings)
    subsets = write_subsets(fundusgen_dir, out / 'subsets', fractions, arms=arms, seed=settings.seed)
    eval_rows = write_eval_rows(settings, out / 'eval_rows')
    points: List[dict] = []
    for subset in subsets:
        logger.info('point %s %s: %d rows', subset.arm, fraction_label(subset.fraction), subset.n_rows)
        points.append(run_point(subset, settings, out / 'runs' / subset.arm / fraction_label(subset.fraction),
                                eval_rows))
    names = sorted({q for p in points for q in quantities(p)}, key=lambda q: (q != LOSS, q))
    fits: Dict[str, Dict[str, Optional[PowerLawFit]]] = {}
    for quantity in names:
        fits[quantity] = {arm: fit_quantity([p for p in points if p['arm'] == arm], quantity, n_boot=n_boot,
                                            seed=settings.seed, with_offset=with_offset) for arm in arms}
    plots = {}
    for quantity, by_arm in fits.items():
        series = {arm: ([p['n_rows'] for p in points if p['arm'] == arm and quantity in quantities(p)],
                        [quantities(p)[quantity] for p in points if p['arm'] == arm and quantity in quantities(p)])
                  for arm in arms}
        name = 'scaling.png' if quantity == LOSS else f'scaling_{quantity.replace("/", "_")}.png'
        label = 'held-out loss (swift eval_loss, token CE)' if quantity == LOSS else quantity
        plots[quantity] = str(plot_scaling(series, by_arm, out / name, quantity=label))
    result = {
        'settings': {'fundusgen_dir': str(Path(fundusgen_dir).resolve()), 'heldout_dir': settings.heldout_dir,
                     'fractions': sorted(set(fractions)), 'arms': list(arms), 'seed': settings.seed,
                     'swift_args': settings.swift_args, 'val_dataset': settings.val_dataset,
                     'eval_tasks': settings.eval_tasks, 'eval_limit': settings.eval_limit, 'n_boot': n_boot},
        'N': 'training rows of the subset (all tasks of the arm, before task weights)',
        'quantities': {q: {'higher_is_better': q != LOSS and METRICS.get(q.split('/')[-1], (None, True))[1]}
                       for q in names},
        'points': points,
        'fits': {q: {arm: (fit.to_json() if fit else None) for arm, fit in by_arm.items()} for q, by_arm in fits.items()},
        'plots': plots,
    }
    (out / 'scaling.json').write_text(json.dumps(result, indent=2, ensure_ascii=False) + '\n')
    return result
