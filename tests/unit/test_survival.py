"""Tests of omics_ml.survival: Breslow baseline, AFT survival, metrics, bootstrap and plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from omics_ml.survival import (
    AFT_DISTRIBUTIONS,
    SURVIVAL_METRICS,
    BreslowBaseline,
    aft_survival,
    bootstrap_survival_metrics,
    calibration_table,
    default_horizons,
    horizon_metric_name,
    plot_calibration,
    plot_km_by_risk_group,
    plot_survival_curves,
    survival_at,
    survival_metrics,
    time_grid,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHAPE, SCALE = 1.5, 10.0  # Weibull event times with a median of about 8 at eta = 0


def _cohort(n: int = 300, seed: int = 0, *, round_to: float | None = 0.5):
    """Cox-Weibull event times with uniform censoring; rounding creates tied times.

    Returns the true linear predictor, observed time, event indicator and true ``S(t | x)``.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    eta = 0.9 * x[:, 0] - 0.6 * x[:, 1]
    # S(t | x) = exp(-(t / SCALE) ** SHAPE * exp(eta))
    event_time = SCALE * (rng.exponential(size=n) * np.exp(-eta)) ** (1.0 / SHAPE)
    censor_time = rng.uniform(2.0, 30.0, size=n)
    time = np.minimum(event_time, censor_time)
    if round_to is not None:
        time = np.maximum(np.round(time / round_to) * round_to, round_to)
    event = event_time <= censor_time

    def true_survival(times):
        times = np.asarray(times, dtype=float)
        return np.exp(-np.outer(np.exp(eta), (times / SCALE) ** SHAPE))

    return eta, time, event, true_survival


def _sksurv_eval(step_functions, times):
    return np.vstack([fn(times) for fn in step_functions])


# --------------------------------------------------------------------------- Breslow


def test_breslow_matches_sksurv_with_ties():
    eta, time, event, _ = _cohort()
    assert np.unique(time[event]).size < event.sum()  # the data do have tied event times
    ours = BreslowBaseline.fit(eta, time, event)
    ref = BreslowEstimator().fit(eta, event, time)

    np.testing.assert_array_equal(ours.times, np.unique(time[event]))
    ref_x, ref_h = ref.cum_baseline_hazard_.x, ref.cum_baseline_hazard_.y
    got_h = ours.cumulative_hazard_at(ref_x) * math.exp(-ours.offset)
    np.testing.assert_allclose(got_h, ref_h, rtol=1e-10, atol=0)

    # survival on the training times, between them, and for new risk scores
    times = np.sort(np.r_[ref_x, (ref_x[:-1] + ref_x[1:]) / 2])
    new_eta = np.r_[eta[:20], -2.0, 0.0, 3.0]
    expected = _sksurv_eval(ref.get_survival_function(new_eta), times)
    got = ours.survival(new_eta, times)
    assert got.shape == (new_eta.size, times.size)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_breslow_step_function_edges_and_shift_invariance():
    eta, time, event, _ = _cohort(seed=1)
    base = BreslowBaseline.fit(eta, time, event)
    first, last = base.times[0], base.times[-1]
    h = base.cumulative_hazard_at([0.0, first - 1e-9, first, last, last + 100.0])
    assert h[0] == h[1] == 0.0
    assert h[2] == base.cumulative_hazard[0] > 0
    assert h[3] == h[4] == base.cumulative_hazard[-1]
    assert np.all(np.diff(base.cumulative_hazard) > 0)

    # a constant added to every risk score leaves the survival curves unchanged (and no overflow)
    shifted = BreslowBaseline.fit(eta + 800.0, time, event)
    grid = np.linspace(0, time.max(), 40)
    np.testing.assert_allclose(
        shifted.survival(eta + 800.0, grid), base.survival(eta, grid), rtol=1e-10
    )
    surv = base.survival(eta, grid)
    assert np.all(np.diff(surv, axis=1) <= 0)
    np.testing.assert_array_equal(surv[:, 0], 1.0)


def test_breslow_rejects_bad_input():
    eta, time, event, _ = _cohort(n=50)
    with pytest.raises(ValueError, match="no events"):
        BreslowBaseline.fit(eta, time, np.zeros_like(event))
    with pytest.raises(ValueError, match="different lengths"):
        BreslowBaseline.fit(eta[:-1], time, event)
    with pytest.raises(ValueError, match="different lengths"):
        BreslowBaseline.fit(eta, time, event[:-1])
    with pytest.raises(ValueError, match="NaN"):
        BreslowBaseline.fit(np.r_[np.nan, eta[1:]], time, event)
    with pytest.raises(ValueError, match="NaN"):
        BreslowBaseline.fit(eta, np.r_[np.nan, time[1:]], event)
    with pytest.raises(ValueError, match="NaN"):
        BreslowBaseline.fit(eta, time, np.r_[np.nan, event[1:].astype(float)])


def test_breslow_json_round_trip():
    eta, time, event, _ = _cohort(n=120, seed=2)
    base = BreslowBaseline.fit(eta, time, event)
    payload = base.to_json()
    assert set(payload) == {"times", "cumulative_hazard", "offset"}
    assert isinstance(payload["times"], list)
    assert isinstance(payload["offset"], float)
    again = BreslowBaseline.from_json(json.loads(json.dumps(payload)))
    np.testing.assert_array_equal(again.times, base.times)
    np.testing.assert_array_equal(again.cumulative_hazard, base.cumulative_hazard)
    assert again.offset == base.offset
    grid = np.linspace(0, 20, 11)
    np.testing.assert_array_equal(again.survival(eta, grid), base.survival(eta, grid))
    with pytest.raises(ValueError, match="lacks"):
        BreslowBaseline.from_json({"times": [1.0]})


# --------------------------------------------------------------------------- AFT


@pytest.mark.parametrize("distribution", AFT_DISTRIBUTIONS)
def test_aft_survival_formula(distribution):
    mu = np.array([0.0, 1.0, 2.5])
    times = np.array([-1.0, 0.0, 0.5, 1.0, 3.0, 10.0, 50.0])
    scale = 0.7
    got = aft_survival(mu, times, distribution=distribution, scale=scale)
    assert got.shape == (3, times.size)
    np.testing.assert_array_equal(got[:, :2], 1.0)  # t <= 0
    z = (np.log(times[2:])[None, :] - mu[:, None]) / scale
    expected = {
        "normal": 1.0 - norm.cdf(z),
        "logistic": 1.0 / (1.0 + np.exp(z)),
        "extreme": np.exp(-np.exp(z)),
    }[distribution]
    np.testing.assert_allclose(got[:, 2:], expected, rtol=1e-12, atol=1e-15)
    assert np.all(np.diff(got, axis=1) <= 0)


def test_aft_survival_rejects_bad_arguments():
    with pytest.raises(ValueError, match="distribution"):
        aft_survival([0.0], [1.0], distribution="weibull", scale=1.0)
    with pytest.raises(ValueError, match="scale"):
        aft_survival([0.0], [1.0], distribution="normal", scale=0.0)


@pytest.mark.parametrize("distribution", AFT_DISTRIBUTIONS)
def test_xgboost_aft_margin_is_log_time(distribution):
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    _, time, event, _ = _cohort(n=200, seed=3)
    dtrain = xgb.DMatrix(x)
    dtrain.set_float_info("label_lower_bound", time)
    dtrain.set_float_info("label_upper_bound", np.where(event, time, np.inf))
    scale = 1.2
    params = {
        "objective": "survival:aft",
        "aft_loss_distribution": distribution,
        "aft_loss_distribution_scale": scale,
        "max_depth": 2,
        "eta": 0.3,
        "nthread": 1,
        "verbosity": 0,
    }
    booster = xgb.train(params, dtrain, num_boost_round=10)
    margin = booster.predict(dtrain, output_margin=True).astype(np.float64)
    np.testing.assert_allclose(booster.predict(dtrain), np.exp(margin), rtol=1e-5)

    grid = np.linspace(0, 30, 61)
    surv = aft_survival(margin, grid, distribution=distribution, scale=scale)
    assert np.all(np.diff(surv, axis=1) <= 0)
    assert np.all((surv >= 0) & (surv <= 1))
    # at t = exp(mu), z = 0: S = 1/2 for the symmetric distributions, exp(-1) for "extreme"
    at_median = np.diag(
        aft_survival(margin, np.exp(margin), distribution=distribution, scale=scale)
    )
    np.testing.assert_allclose(at_median, 0.5 if distribution != "extreme" else math.exp(-1))


# --------------------------------------------------------------------------- time points


def test_time_grid_and_default_horizons():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 100.0, 200.0])
    event = np.r_[np.ones(10, dtype=bool), False, False]
    grid = time_grid(time, event, n_points=10)
    assert grid.dtype == np.float64
    assert grid.shape == (10,)
    assert grid[0] == 0.0
    assert grid[-1] == pytest.approx(np.percentile(np.arange(1.0, 11.0), 90))  # censored ignored
    np.testing.assert_allclose(np.diff(grid), grid[-1] / 9)
    assert time_grid(time, event).size == 50

    assert default_horizons(time, event) == [3.25, 5.5, 7.75]
    assert default_horizons(np.array([1234.56, 1500.0, 2000.0]), np.ones(3)) == [
        1370.0,
        1500.0,
        1750.0,
    ]
    # equal rounded quartiles collapse
    assert default_horizons(np.full(8, 12.0), np.ones(8)) == [12.0]
    with pytest.raises(ValueError, match="no events"):
        time_grid(time, np.zeros_like(event))
    with pytest.raises(ValueError, match="no events"):
        default_horizons(time, np.zeros_like(event))


def test_horizon_metric_name_and_step_rule():
    assert horizon_metric_name("auc", 12) == "auc_at_12"
    assert horizon_metric_name("brier", 12.0) == "brier_at_12"
    assert horizon_metric_name("brier", 2.5) == "brier_at_2_5"
    grid = np.array([0.0, 1.0, 2.0, 3.0])
    surv = np.array([[1.0, 0.9, 0.7, 0.4], [1.0, 0.8, 0.5, 0.1]])
    got = survival_at(grid, surv, [-1.0, 0.0, 0.5, 1.0, 2.99, 3.0, 9.0])
    np.testing.assert_array_equal(
        got, [[1.0, 1.0, 1.0, 0.9, 0.7, 0.4, 0.4], [1.0, 1.0, 1.0, 0.8, 0.5, 0.1, 0.1]]
    )


# --------------------------------------------------------------------------- metrics


def _train_test(seed: int = 4, n_train: int = 300, n_test: int = 200):
    eta, time, event, true_survival = _cohort(n=n_train + n_test, seed=seed, round_to=None)
    train, test = slice(0, n_train), slice(n_train, None)
    grid = time_grid(time[train], event[train], n_points=40)
    survival = true_survival(grid)[test]
    horizons = default_horizons(time[train], event[train])
    return {
        "time": time[test],
        "event": event[test],
        "risk_score": eta[test],
        "survival": survival,
        "grid": grid,
        "horizons": horizons,
        "train_time": time[train],
        "train_event": event[train],
    }


def test_survival_metrics_equal_direct_sksurv_calls():
    data = _train_test()
    got = survival_metrics(**data)
    horizons = data["horizons"]
    assert list(got) == [
        *SURVIVAL_METRICS,
        *(horizon_metric_name("auc", h) for h in horizons),
        *(horizon_metric_name("brier", h) for h in horizons),
    ]
    assert all(np.isfinite(v) for v in got.values())

    y_train = Surv.from_arrays(data["train_event"], data["train_time"])
    y_test = Surv.from_arrays(data["event"], data["time"])
    risk, grid = data["risk_score"], data["grid"]
    assert got["c_index_harrell"] == pytest.approx(
        concordance_index_censored(data["event"], data["time"], risk)[0], abs=1e-12
    )
    tau = max(h for h in horizons if h < data["time"].max())
    assert got["c_index_uno"] == pytest.approx(
        concordance_index_ipcw(y_train, y_test, risk, tau=tau)[0], abs=1e-12
    )
    aucs = []
    for h in horizons:
        s_h = data["survival"][:, np.searchsorted(grid, h, side="right") - 1]
        auc = cumulative_dynamic_auc(y_train, y_test, 1.0 - s_h, [h])[0][0]
        aucs.append(auc)
        assert got[horizon_metric_name("auc", h)] == pytest.approx(auc, abs=1e-12)
        brier = brier_score(y_train, y_test, s_h[:, None], [h])[1][0]
        assert got[horizon_metric_name("brier", h)] == pytest.approx(brier, abs=1e-12)
    assert got["mean_auc"] == pytest.approx(np.mean(aucs), abs=1e-12)
    inside = (
        (grid > data["time"].min())
        & (grid < data["time"].max())
        & (grid < data["train_time"].max())
    )
    assert got["integrated_brier_score"] == pytest.approx(
        integrated_brier_score(y_train, y_test, data["survival"][:, inside], grid[inside]),
        abs=1e-12,
    )
    # the true model discriminates well above chance
    assert 0.65 < got["c_index_harrell"] < 0.95
    assert 0.65 < got["mean_auc"] < 0.95


def test_survival_metrics_perfect_and_reversed_order():
    data = _train_test(seed=5)
    perfect = survival_metrics(**{**data, "risk_score": -data["time"]})
    reversed_ = survival_metrics(**{**data, "risk_score": data["time"]})
    assert perfect["c_index_harrell"] == 1.0
    assert reversed_["c_index_harrell"] == 0.0
    assert perfect["c_index_uno"] == pytest.approx(1.0)
    assert reversed_["c_index_uno"] == pytest.approx(0.0)


def test_integrated_brier_of_kaplan_meier_beats_a_constant():
    data = _train_test(seed=6)
    x, prob = kaplan_meier_estimator(data["event"], data["time"])
    km_on_grid = survival_at(np.r_[0.0, x], np.r_[1.0, prob][None, :], data["grid"])
    n = data["time"].size
    km = survival_metrics(**{**data, "survival": np.repeat(km_on_grid, n, axis=0)})
    half = survival_metrics(**{**data, "survival": np.full((n, data["grid"].size), 0.5)})
    assert np.isfinite(km["integrated_brier_score"])
    assert km["integrated_brier_score"] < half["integrated_brier_score"]
    # a constant prediction has no discrimination at any horizon
    assert half["mean_auc"] == pytest.approx(0.5)


def test_survival_metrics_nan_outside_follow_up():
    data = _train_test(seed=7)
    horizons = [0.0001, data["horizons"][1], float(data["time"].max()) + 1.0]
    got = survival_metrics(**{**data, "horizons": horizons})
    assert math.isnan(got[horizon_metric_name("auc", horizons[0])])
    assert math.isnan(got[horizon_metric_name("brier", horizons[0])])
    assert math.isnan(got[horizon_metric_name("auc", horizons[2])])
    assert math.isnan(got[horizon_metric_name("brier", horizons[2])])
    middle = got[horizon_metric_name("auc", horizons[1])]
    assert np.isfinite(middle)
    assert got["mean_auc"] == middle
    # a grid with fewer than two points inside the follow-up gives no integrated Brier score
    short = survival_metrics(
        **{**data, "grid": data["grid"][:2], "survival": data["survival"][:, :2]}
    )
    assert math.isnan(short["integrated_brier_score"])


def test_bootstrap_intervals_contain_estimate_and_are_reproducible():
    data = _train_test(seed=8, n_test=160)
    groups = np.repeat([f"S{i:03d}" for i in range(80)], 2)  # two rows per subject
    first = bootstrap_survival_metrics(**data, groups=groups, n_bootstrap=40, seed=11)
    again = bootstrap_survival_metrics(**data, groups=groups, n_bootstrap=40, seed=11)
    other = bootstrap_survival_metrics(**data, groups=groups, n_bootstrap=40, seed=12)
    assert first == again
    assert first != other
    point = survival_metrics(**data)
    assert list(first) == list(point)
    for name, value in first.items():
        assert set(value) == {"estimate", "lower", "upper"}
        assert value["estimate"] == point[name]
        assert value["lower"] <= value["estimate"] <= value["upper"], name
        assert value["lower"] < value["upper"], name
    empty = bootstrap_survival_metrics(**data, groups=groups, n_bootstrap=0)
    assert all(math.isnan(v["lower"]) and math.isnan(v["upper"]) for v in empty.values())


# --------------------------------------------------------------------------- calibration, plots


def test_calibration_table_shape_and_exact_kaplan_meier_model():
    rng = np.random.default_rng(9)
    n_strata, per = 5, 150
    stratum = np.repeat(np.arange(n_strata), per)
    event_time = rng.weibull(SHAPE, size=stratum.size) * SCALE * np.exp(-0.4 * stratum)
    censor_time = rng.uniform(1.0, 25.0, size=stratum.size)
    time = np.minimum(event_time, censor_time)
    event = event_time <= censor_time
    horizons = [2.0, 5.0]
    # each subject is predicted its own stratum's Kaplan-Meier survival: perfectly calibrated
    predicted = np.empty((stratum.size, len(horizons)))
    for k in range(n_strata):
        members = stratum == k
        x, prob = kaplan_meier_estimator(event[members], time[members])
        predicted[members] = survival_at(np.r_[0.0, x], np.r_[1.0, prob][None, :], horizons)
    table = calibration_table(time, event, predicted, horizons, n_groups=n_strata)
    assert len(table) == len(horizons) * n_strata
    assert set(table[0]) == {
        "horizon",
        "group",
        "n",
        "predicted_risk",
        "observed_risk",
        "observed_lower",
        "observed_upper",
    }
    assert [row["group"] for row in table] == [1, 2, 3, 4, 5] * 2
    assert all(row["n"] == per for row in table)
    pred = np.array([row["predicted_risk"] for row in table])
    obs = np.array([row["observed_risk"] for row in table])
    np.testing.assert_allclose(obs, pred, atol=1e-12)
    assert all(r["observed_lower"] <= r["observed_risk"] <= r["observed_upper"] for r in table)
    for j in range(len(horizons)):  # groups are ordered by predicted risk
        assert np.all(np.diff(pred[j * n_strata : (j + 1) * n_strata]) >= 0)


def test_calibration_table_true_model_near_diagonal_and_nan_beyond_follow_up():
    _, time, event, true_survival = _cohort(n=1500, seed=10, round_to=None)
    horizons = [4.0, 8.0]
    table = calibration_table(time, event, true_survival(horizons), horizons, n_groups=4)
    pred = np.array([row["predicted_risk"] for row in table])
    obs = np.array([row["observed_risk"] for row in table])
    assert np.max(np.abs(obs - pred)) < 0.08
    late = calibration_table(time, event, true_survival([100.0]), [100.0], n_groups=2)
    assert all(math.isnan(row["observed_risk"]) for row in late)
    assert all(np.isfinite(row["predicted_risk"]) for row in late)


def test_plots_write_png(tmp_path: Path):
    data = _train_test(seed=12)
    surv_h = survival_at(data["grid"], data["survival"], data["horizons"])
    table = calibration_table(data["time"], data["event"], surv_h, data["horizons"])
    calibration_png = tmp_path / "calibration.png"
    plot_calibration(table, calibration_png, title="Calibration")

    km_png = tmp_path / "km.png"
    stats = plot_km_by_risk_group(
        data["time"], data["event"], data["risk_score"], km_png, title="Risk groups"
    )
    assert set(stats) == {"log_rank_chi2", "log_rank_p"}
    assert stats["log_rank_chi2"] > 10
    assert 0 <= stats["log_rank_p"] < 1e-3

    curves_png = tmp_path / "curves.png"
    plot_survival_curves(
        data["grid"],
        data["survival"][:3],
        ["a", "b", "c"],
        curves_png,
        title="Curves",
        horizons=data["horizons"],
    )
    for png in (calibration_png, km_png, curves_png):
        content = png.read_bytes()
        assert content.startswith(PNG_MAGIC)
        assert len(content) > 1000
    with pytest.raises(ValueError, match="labels"):
        plot_km_by_risk_group(
            data["time"], data["event"], data["risk_score"], km_png, n_groups=2, title="x"
        )
