"""Power-law fits recover known exponents; both sign conventions; the bootstrap band."""
import numpy as np
import pytest

from fundusexpert_plugin.study.fit import fit_power_law


def test_known_exponent_with_noise_is_recovered_within_its_ci():
    n = np.geomspace(200, 200_000, 8)
    covered, widths = 0, []
    for trial in range(30):  # 30 noisy data sets drawn from L = 4 * N^-0.25 with 3% multiplicative noise
        loss = 4.0 * n ** -0.25 * np.exp(np.random.RandomState(trial).normal(0, 0.03, n.size))
        fit = fit_power_law(n, loss, with_offset=False, n_boot=150, seed=trial)
        covered += fit.k_ci[0] <= -0.25 <= fit.k_ci[1]
        widths.append(fit.k_ci[1] - fit.k_ci[0])
    # a 95% interval: 28.5 of 30 expected; P(at most 24 of 30) < 1% for binomial(30, 0.95)
    assert covered >= 25
    assert np.median(widths) < 0.05  # informative, not a trivially wide interval
    loss = 4.0 * n ** -0.25 * np.exp(np.random.RandomState(0).normal(0, 0.03, n.size))
    fit = fit_power_law(n, loss, with_offset=False, n_boot=1000)
    assert fit.k_ci[0] <= -0.25 <= fit.k_ci[1]
    assert fit.a == pytest.approx(4.0, rel=0.3)
    out = fit.to_json()
    assert out['exponent']['arxiv_form']['k'] == fit.k < 0  # a falling loss has k < 0 in L ∝ N^k
    assert out['exponent']['loss_form']['k'] == -fit.k > 0  # and k > 0 in L ∝ N^-k
    assert out['exponent']['loss_form']['k_ci'] == [-fit.k_ci[1], -fit.k_ci[0]]


def test_two_parameter_fit_is_the_log_log_regression_line():
    n, y = [100, 400, 1600], [2.0, 1.5, 1.2]
    fit = fit_power_law(n, y, n_boot=50)
    slope, intercept = np.polyfit(np.log(n), np.log(y), 1)
    assert fit.c is None and fit.k == pytest.approx(slope, abs=1e-8)
    assert fit.a == pytest.approx(np.exp(intercept), rel=1e-6)


def test_irreducible_term_fitted_with_enough_points():
    rng = np.random.RandomState(3)
    n = np.geomspace(100, 1e6, 10)
    y = (3.0 * n ** -0.4 + 0.5) * np.exp(rng.normal(0, 0.005, n.size))
    fit = fit_power_law(n, y, n_boot=100)  # 10 distinct sizes: offset form by default
    assert fit.c == pytest.approx(0.5, abs=0.05)
    assert fit.k == pytest.approx(-0.4, abs=0.03)
    lo, hi = fit.band(n)
    assert np.all(lo <= fit.predict(n) + 1e-9) and np.all(fit.predict(n) <= hi + 1e-9)


def test_capability_growing_with_data_has_positive_arxiv_exponent():
    n = np.array([1e3, 1e4, 1e5])
    acc = 0.2 * n ** 0.068  # the arXiv abstract's exponent
    fit = fit_power_law(n, acc, n_boot=20)
    assert fit.k == pytest.approx(0.068, abs=1e-9)
    assert fit.to_json()['exponent']['loss_form']['k'] == pytest.approx(-0.068, abs=1e-9)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match='two distinct N'):
        fit_power_law([10, 10], [1.0, 2.0])
    with pytest.raises(ValueError, match='positive'):
        fit_power_law([10, 20], [1.0, 0.0])
