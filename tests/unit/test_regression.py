"""Tests of omics_ml.regression: conformal quantile, coverage, metrics, subject bootstrap, plot."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from omics_ml.regression import (
    REGRESSION_METRICS,
    bootstrap_regression_metrics,
    conformal_quantile,
    plot_predicted_vs_observed,
    prediction_interval,
    regression_metrics,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _subjects(n_subjects: int = 30, per_subject: int = 3, seed: int = 0):
    """Observed values with a subject effect, noisy predictions, intervals and subject ids."""
    rng = np.random.default_rng(seed)
    effect = np.repeat(rng.normal(scale=2.0, size=n_subjects), per_subject)
    y = effect + rng.normal(size=effect.size)
    pred = effect + rng.normal(scale=0.8, size=effect.size)
    lower, upper = prediction_interval(pred, 1.5)
    groups = np.repeat([f"S{i:02d}" for i in range(n_subjects)], per_subject)
    return y, pred, lower, upper, groups


# --- conformal quantile ------------------------------------------------------------------------


def test_conformal_quantile_rank_rule_by_hand():
    residuals = np.array([0.3, -0.9, 0.1, 0.5, -0.2, 0.8, -0.4, 0.6, 0.7])  # n = 9
    # ceil(10 * 0.9) = 9 -> the 9th smallest |residual|, i.e. the largest.
    assert conformal_quantile(residuals, alpha=0.1) == 0.9
    # ceil(10 * 0.5) = 5 -> 5th smallest of |r| = 0.1 0.2 0.3 0.4 0.5 ...
    assert conformal_quantile(residuals, alpha=0.5) == 0.5
    # n = 4: ceil(5 * 0.9) = 5 > 4 -> no finite quantile.
    assert conformal_quantile([1.0, 2.0, 3.0, 4.0], alpha=0.1) == math.inf
    # n = 5, alpha = 0.2: ceil(6 * 0.8) = 5 (not ceil(5 * 0.8) = 4).
    assert conformal_quantile([5.0, -1.0, 4.0, 2.0, -3.0], alpha=0.2) == 5.0
    # n = 10, alpha = 0.2: ceil(11 * 0.8) = 9 -> 9th smallest.
    assert conformal_quantile(-np.arange(10.0, 0.0, -1.0), alpha=0.2) == 9.0


@pytest.mark.parametrize(
    ("residuals", "alpha"),
    [([], 0.1), ([1.0, np.nan], 0.1), ([1.0, 2.0], 0.0), ([1.0, 2.0], 1.0), ([1.0], -0.5)],
)
def test_conformal_quantile_rejects_bad_input(residuals, alpha):
    with pytest.raises(ValueError, match=r"calibration|alpha|NaN"):
        conformal_quantile(residuals, alpha=alpha)


def test_prediction_interval_is_symmetric():
    lower, upper = prediction_interval([1.0, -2.0], 0.5)
    np.testing.assert_array_equal(lower, [0.5, -2.5])
    np.testing.assert_array_equal(upper, [1.5, -1.5])
    lower, upper = prediction_interval([1.0], math.inf)
    assert lower[0] == -math.inf
    assert upper[0] == math.inf
    with pytest.raises(ValueError, match="quantile"):
        prediction_interval([1.0], float("nan"))


def test_split_conformal_coverage_with_a_fitted_model():
    """Fit on one part, calibrate on a second, test on many: marginal coverage ~ 1 - alpha."""
    alpha, coverages = 0.1, []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n_fit, n_cal, n_test = 200, 2000, 5000
        X = rng.normal(size=(n_fit + n_cal + n_test, 4))
        # Misspecified (quadratic term) with heavy-tailed noise: the guarantee is model-free.
        y = X @ [1.0, -2.0, 0.5, 0.0] + 0.5 * X[:, 0] ** 2 + rng.standard_t(3, size=X.shape[0])
        fit, cal, test = np.split(np.arange(X.shape[0]), [n_fit, n_fit + n_cal])
        model = LinearRegression().fit(X[fit], y[fit])
        q = conformal_quantile(y[cal] - model.predict(X[cal]), alpha=alpha)
        lower, upper = prediction_interval(model.predict(X[test]), q)
        coverages.append(
            regression_metrics(y[test], model.predict(X[test]), lower, upper)["interval_coverage"]
        )
    assert 0.88 <= np.mean(coverages) <= 0.95


def test_split_conformal_coverage_is_exact_for_small_calibration_sets():
    """With n = 19 and alpha = 0.1 the expected coverage is 18/20 = 0.9 exactly; an
    interpolated 0.9 quantile or a rank of ceil(n(1 - alpha)) falls short of it."""
    rng = np.random.default_rng(1)
    n_trials, n_cal, n_test = 2000, 19, 200
    cal = rng.exponential(size=(n_trials, n_cal))
    test = rng.exponential(size=(n_trials, n_test))
    q = np.array([conformal_quantile(r, alpha=0.1) for r in cal])
    coverage = np.mean(test <= q[:, None])
    assert coverage == pytest.approx(0.9, abs=0.01)


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_equal_sklearn():
    y, pred, lower, upper, _ = _subjects()
    got = regression_metrics(y, pred, lower, upper)
    assert list(got) == list(REGRESSION_METRICS)
    assert got["rmse"] == pytest.approx(root_mean_squared_error(y, pred))
    assert got["mae"] == pytest.approx(mean_absolute_error(y, pred))
    assert got["r2"] == pytest.approx(r2_score(y, pred))
    assert got["interval_coverage"] == pytest.approx(np.mean(np.abs(y - pred) <= 1.5))
    assert got["mean_interval_width"] == pytest.approx(3.0)


def test_metrics_by_hand_and_without_interval():
    got = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0], [0.0, 2.0, 3.5], [2.0, 2.5, 4.0])
    assert got["rmse"] == pytest.approx(math.sqrt(4.0 / 3.0))
    assert got["mae"] == pytest.approx(2.0 / 3.0)
    assert got["interval_coverage"] == pytest.approx(2.0 / 3.0)  # y = 2 on a bound is covered
    assert got["mean_interval_width"] == pytest.approx((2.0 + 0.5 + 0.5) / 3.0)
    plain = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert math.isnan(plain["interval_coverage"])
    assert math.isnan(plain["mean_interval_width"])
    with warnings.catch_warnings():  # NaN by rule, not via scikit-learn's undefined-metric warning
        warnings.simplefilter("error")
        single = regression_metrics([1.0], [2.0])
    assert math.isnan(single["r2"])
    assert single["rmse"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1.0, np.nan], [1.0, 2.0]), "y_true"),
        (([1.0, 2.0], [np.nan, 2.0]), "predicted"),
        (([1.0, 2.0], [1.0]), "values"),
        (([], []), "at least one"),
        (([1.0, 2.0], [1.0, 2.0], [0.0, 1.0], None), "both"),
        (([1.0, 2.0], [1.0, 2.0], [0.0, np.nan], [2.0, 3.0]), "lower"),
        (([1.0, 2.0], [1.0, 2.0], [0.0, 1.0], [2.0]), "upper"),
    ],
)
def test_metrics_reject_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        regression_metrics(*args)


# --- subject bootstrap -------------------------------------------------------------------------


def test_bootstrap_reproducible_and_contains_estimate():
    y, pred, lower, upper, groups = _subjects()
    first = bootstrap_regression_metrics(
        y, pred, lower, upper, groups=groups, n_bootstrap=300, seed=3
    )
    again = bootstrap_regression_metrics(
        y, pred, lower, upper, groups=groups, n_bootstrap=300, seed=3
    )
    other = bootstrap_regression_metrics(
        y, pred, lower, upper, groups=groups, n_bootstrap=300, seed=4
    )
    assert first == again
    assert first != other
    assert list(first) == list(REGRESSION_METRICS)
    point = regression_metrics(y, pred, lower, upper)
    for name, entry in first.items():
        assert set(entry) == {"estimate", "lower", "upper"}
        assert entry["estimate"] == pytest.approx(point[name])
        assert entry["lower"] <= entry["estimate"] <= entry["upper"]
    assert first["rmse"]["lower"] < first["rmse"]["upper"]
    assert first["mean_interval_width"]["lower"] == pytest.approx(3.0)  # constant width


def test_bootstrap_without_draws_or_interval_gives_nan():
    y, pred, _, _, groups = _subjects()
    none = bootstrap_regression_metrics(y, pred, None, None, groups=groups, n_bootstrap=0)
    assert all(math.isnan(e["lower"]) and math.isnan(e["upper"]) for e in none.values())
    no_interval = bootstrap_regression_metrics(y, pred, None, None, groups=groups, n_bootstrap=50)
    assert math.isnan(no_interval["interval_coverage"]["estimate"])
    assert math.isnan(no_interval["interval_coverage"]["lower"])
    assert not math.isnan(no_interval["rmse"]["lower"])


def test_bootstrap_infinite_interval_keeps_infinite_width():
    y, pred, _, _, groups = _subjects()
    lower, upper = prediction_interval(pred, math.inf)
    got = bootstrap_regression_metrics(y, pred, lower, upper, groups=groups, n_bootstrap=20)
    assert got["interval_coverage"] == {"estimate": 1.0, "lower": 1.0, "upper": 1.0}
    assert got["mean_interval_width"]["upper"] == math.inf


def test_bootstrap_resamples_whole_subjects():
    """Duplicating every row within its subject and shuffling the rows leaves the subject
    bootstrap unchanged (the same subjects are drawn); a row bootstrap would change."""
    y, pred, lower, upper, groups = _subjects(n_subjects=25, per_subject=2, seed=5)
    base = bootstrap_regression_metrics(
        y, pred, lower, upper, groups=groups, n_bootstrap=200, seed=7
    )
    idx = np.random.default_rng(0).permutation(np.repeat(np.arange(y.size), 2))
    doubled = bootstrap_regression_metrics(
        y[idx], pred[idx], lower[idx], upper[idx], groups=groups[idx], n_bootstrap=200, seed=7
    )
    for name in REGRESSION_METRICS:
        for key in ("estimate", "lower", "upper"):
            assert doubled[name][key] == pytest.approx(base[name][key]), (name, key)


def test_bootstrap_rejects_mismatched_groups():
    y, pred, lower, upper, groups = _subjects()
    with pytest.raises(ValueError, match="groups"):
        bootstrap_regression_metrics(y, pred, lower, upper, groups=groups[:-1], n_bootstrap=5)


# --- plot --------------------------------------------------------------------------------------


def test_plot_writes_png(tmp_path: Path):
    y, pred, lower, upper, _ = _subjects()
    out = tmp_path / "pred_vs_obs.png"
    plot_predicted_vs_observed(y, pred, lower, upper, out, title="Holdout", label="age")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert out.stat().st_size > 1000
    infinite = tmp_path / "infinite.png"
    plot_predicted_vs_observed(y, pred, *prediction_interval(pred, math.inf), infinite, title="t")
    assert infinite.read_bytes()[:8] == PNG_MAGIC
    bare = tmp_path / "bare.png"
    plot_predicted_vs_observed(y, pred, None, None, bare, title="t")
    assert bare.read_bytes()[:8] == PNG_MAGIC


def test_plot_rejects_nan(tmp_path: Path):
    with pytest.raises(ValueError, match="predicted"):
        plot_predicted_vs_observed(
            [1.0, 2.0], [1.0, np.nan], None, None, tmp_path / "x.png", title="t"
        )
