"""Power-law fits ``L = a * N**k`` (and ``L = a * N**k + c``) with a bootstrap interval for ``k``.

Least squares in log space with :func:`scipy.optimize.least_squares`: the residuals are
``log(L_i) - log(a * N_i**k [+ c])``, i.e. relative errors, so every order of magnitude of ``N``
weighs the same. The irreducible term ``c`` (``0 <= c < min(L)``: the loss no amount of data
removes) is fitted only with at least :data:`MIN_POINTS_WITH_OFFSET` distinct ``N``, since three
parameters through fewer points leave no residual to judge the fit by.

Confidence interval: residual bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*,
1993, ch. 9): the log-space residuals of the fit, centred and inflated by ``sqrt(n / (n - p))`` for
the ``p`` fitted parameters (Davison & Hinkley, *Bootstrap Methods and their Application*, 1997,
sec. 6.2.3, with equal leverages), are resampled with replacement onto the fitted values, the model
refitted ``n_boot`` times, and the percentile interval of ``k`` reported. Unlike resampling the
points, this works with as few as three points.

Sign conventions (the paper writes ``L ∝ N^0.068`` in the arXiv abstract without defining L):

* ``exponent`` is ``k`` exactly as fitted in ``L = a * N**k``: the **arXiv form**, where a
  capability that grows with data has ``k > 0`` (a loss that falls has ``k < 0``);
* ``loss_form_exponent`` is ``-k``, the exponent of the **loss form** ``L = a * N**-k``, where a
  loss that falls with data has a positive exponent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import least_squares

#: Fewest distinct N for which the three-parameter form (with ``c``) is fitted.
MIN_POINTS_WITH_OFFSET = 5


@dataclass
class PowerLawFit:
    """A fitted power law.

    Attributes:
        a, k: ``L = a * N**k (+ c)``; ``N`` in rows, ``L`` in the quantity's own unit.
        c: the irreducible term, ``None`` for the two-parameter form.
        k_ci: ``(low, high)`` percentile bootstrap interval of ``k`` at ``ci_level``.
        ci_level, n_boot: interval settings.
        n_points: points fitted.
        rmse_log: root mean square of the log-space residuals.
        boot_params: ``[(a, k, c), ...]`` of the bootstrap refits (for the plot's band).
    """

    a: float
    k: float
    c: Optional[float]
    k_ci: Tuple[float, float]
    ci_level: float
    n_boot: int
    n_points: int
    rmse_log: float
    boot_params: List[Tuple[float, float, float]] = field(default_factory=list, repr=False)

    def predict(self, n) -> np.ndarray:
        """``a * N**k + c`` at ``n`` (array-like of row counts)."""
        return self.a * np.asarray(n, dtype=float) ** self.k + (self.c or 0.0)

    def band(self, n, level: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap curves at ``n`` (default level ``ci_level``)."""
        level = self.ci_level if level is None else level
        n = np.asarray(n, dtype=float)
        curves = np.array([a * n ** k + c for a, k, c in self.boot_params]) if self.boot_params else self.predict(n)[None]
        lo, hi = np.percentile(curves, [50 * (1 - level), 50 * (1 + level)], axis=0)
        return lo, hi

    def to_json(self) -> dict:
        """The fit with both sign conventions spelled out (see the module docstring)."""
        form = 'L = a * N^k + c' if self.c is not None else 'L = a * N^k'
        return {
            'form': form, 'a': self.a, 'k': self.k, 'c': self.c, 'n_points': self.n_points, 'rmse_log': self.rmse_log,
            'k_ci': list(self.k_ci), 'ci_level': self.ci_level, 'n_boot': self.n_boot,
            'ci_method': 'residual bootstrap in log space, percentile interval',
            'exponent': {'arxiv_form': {'formula': 'L ∝ N^k', 'k': self.k, 'k_ci': list(self.k_ci),
                                        'reads': 'k > 0: L grows with data (capability); k < 0: L falls'},
                         'loss_form': {'formula': 'L ∝ N^-k', 'k': -self.k,
                                       'k_ci': [-self.k_ci[1], -self.k_ci[0]],
                                       'reads': 'k > 0: L falls with data (loss); k < 0: L grows'}},
        }


def _fit_once(log_n: np.ndarray, log_y: np.ndarray, with_offset: bool, y_min: float) -> np.ndarray:
    slope, intercept = np.polyfit(log_n, log_y, 1)
    if not with_offset:
        res = least_squares(lambda p: p[0] + p[1] * log_n - log_y, x0=[intercept, slope])
        return np.array([res.x[0], res.x[1], 0.0])
    n = np.exp(log_n)

    def resid(p):
        return np.log(np.exp(p[0]) * n ** p[1] + p[2]) - log_y
    res = least_squares(resid, x0=[intercept, slope, 0.1 * y_min],
                        bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, 0.999 * y_min]))
    return res.x


def fit_power_law(n: Sequence[float], y: Sequence[float], *, with_offset: Optional[bool] = None,
                  n_boot: int = 2000, ci_level: float = 0.95, seed: int = 0) -> PowerLawFit:
    """Fit ``y = a * n**k (+ c)`` (see the module docstring).

    Args:
        n: training-set sizes (rows), positive.
        y: the measured quantity at each size, positive.
        with_offset: fit ``c``; default when there are at least :data:`MIN_POINTS_WITH_OFFSET`
            distinct sizes.
        n_boot: bootstrap refits; ci_level: interval level; seed: bootstrap seed.

    Raises:
        ValueError: fewer than two distinct sizes, unequal lengths, or a non-positive value.
    """
    n_arr, y_arr = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    if n_arr.shape != y_arr.shape or len(np.unique(n_arr)) < 2:
        raise ValueError(f'a power law needs at least two distinct N with one value each; got N={list(n)}, L={list(y)}')
    if (n_arr <= 0).any() or (y_arr <= 0).any():
        raise ValueError(f'a log-space fit needs positive N and L; got N={list(n)}, L={list(y)}')
    distinct = len(np.unique(n_arr))
    with_offset = distinct >= MIN_POINTS_WITH_OFFSET if with_offset is None else with_offset
    if with_offset and distinct < 3:
        raise ValueError('L = a * N^k + c needs at least three distinct N')
    log_n, log_y = np.log(n_arr), np.log(y_arr)
    params = _fit_once(log_n, log_y, with_offset, float(y_arr.min()))

    def log_pred(p):
        return np.log(np.exp(p[0]) * n_arr ** p[1] + p[2])
    fitted = log_pred(params)
    resid = log_y - fitted
    n_params = 3 if with_offset else 2
    modified = (resid - resid.mean()) * np.sqrt(len(resid) / max(len(resid) - n_params, 1))
    rng = np.random.RandomState(seed)
    boot = []
    for _ in range(n_boot):
        log_y_star = fitted + rng.choice(modified, size=len(resid), replace=True)
        p = _fit_once(log_n, log_y_star, with_offset, float(np.exp(log_y_star).min()))
        boot.append((float(np.exp(p[0])), float(p[1]), float(p[2])))
    ks = np.array([b[1] for b in boot])
    lo, hi = np.percentile(ks, [50 * (1 - ci_level), 50 * (1 + ci_level)])
    return PowerLawFit(a=float(np.exp(params[0])), k=float(params[1]), c=float(params[2]) if with_offset else None,
                       k_ci=(float(lo), float(hi)), ci_level=ci_level, n_boot=n_boot, n_points=len(n_arr),
                       rmse_log=float(np.sqrt(np.mean(resid ** 2))), boot_params=boot)
