"""Log-log scaling plot: measured points, the fitted power law and its bootstrap band, one line per arm."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from fundusexpert_plugin.study.fit import PowerLawFit


def plot_scaling(series: Dict[str, Tuple[Sequence[float], Sequence[float]]], fits: Dict[str, Optional[PowerLawFit]],
                 out_png: Path | str, *, quantity: str, title: str = '') -> Path:
    """Write a log-log PNG (matplotlib, Agg).

    Args:
        series: arm -> ``(N, L)``: rows trained on and the measured quantity.
        fits: arm -> fit (``None``: points only, e.g. fewer than two sizes).
        out_png: output file.
        quantity: y-axis label (e.g. ``'held-out loss (token CE)'``).

    Points with ``L <= 0`` cannot sit on a log axis: they are left out and counted in the legend.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    any_positive = False
    for i, (arm, (n, y)) in enumerate(sorted(series.items())):
        color = f'C{i}'
        kept = [(a, b) for a, b in zip(n, y) if b > 0]  # a log axis cannot show L <= 0 (e.g. Acc@0.5 = 0)
        dropped = len(n) - len(kept)
        n, y = [a for a, _ in kept], [b for _, b in kept]
        any_positive |= bool(kept)
        ax.scatter(n, y, color=color, zorder=3,
                   label=f'{arm}: measured' + (f' ({dropped} point(s) <= 0 not shown)' if dropped else ''))
        fit = fits.get(arm)
        if fit is None:
            continue
        grid = np.geomspace(min(n), max(n), 100)
        lo, hi = fit.band(grid)
        ax.fill_between(grid, lo, hi, color=color, alpha=0.2, linewidth=0,
                        label=f'{arm}: {int(round(fit.ci_level * 100))}% band')
        offset = f' + {fit.c:.3g}' if fit.c is not None else ''
        ax.plot(grid, fit.predict(grid), color=color,
                label=f'{arm}: L = {fit.a:.3g}·N^{fit.k:+.3f}{offset} (k CI {fit.k_ci[0]:+.3f}..{fit.k_ci[1]:+.3f})')
    ax.set_xscale('log')
    if any_positive:
        ax.set_yscale('log')
    ax.set_xlabel('N: training rows (log)')
    ax.set_ylabel(f'{quantity}' + (' (log)' if any_positive else ''))
    ax.set_title(title or f'Data scaling: {quantity}')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=7)
    fig.tight_layout()
    from fundusexpert_plugin.core.images import save_figure
    save_figure(fig, out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
