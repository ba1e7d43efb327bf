"""Tests of omics_ml.tasks: the task heads in isolation, on simulated data and tiny boosters."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from omics_ml.regression import conformal_quantile
from omics_ml.survival import BreslowBaseline, aft_survival, default_horizons, time_grid
from omics_ml.tasks import (
    ClassificationHead,
    Outcome,
    RegressionHead,
    SurvivalHead,
    evaluation_times,
    head_from_config,
    head_from_json,
    horizon_label,
)

N_ROUNDS = 40


def _weibull(n: int = 300, seed: int = 0) -> tuple[np.ndarray, Outcome]:
    """Features and right-censored Weibull outcomes whose hazard grows with feature 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    scale = 10.0 * np.exp(-0.8 * x[:, 0] + 0.4 * x[:, 1])
    event_time = scale * rng.weibull(1.5, size=n)
    censor_time = rng.uniform(2.0, 25.0, size=n)
    time = np.round(np.minimum(event_time, censor_time), 3) + 0.001
    event = (event_time <= censor_time).astype(np.int8)
    label = np.where(event == 1, "event", "censored")
    return x, Outcome(label, time=time, event=event)


def _train(head, x: np.ndarray, outcome: Outcome, seed: int = 0) -> xgb.Booster:
    params = {"max_depth": 2, "learning_rate": 0.1, "seed": seed, "nthread": 1}
    params.update(head.xgb_params())
    dtrain = xgb.DMatrix(x, **head.dmatrix_fields(outcome))
    return xgb.train(params, dtrain, num_boost_round=N_ROUNDS)


@pytest.fixture(scope="module")
def weibull() -> tuple[np.ndarray, Outcome]:
    return _weibull()


@pytest.fixture(scope="module")
def cox(weibull) -> tuple[SurvivalHead, xgb.Booster]:
    x, outcome = weibull
    head = SurvivalHead(objective="cox", horizons=[2.0, 5.0, 10.0], grid=np.arange(0.0, 16.0))
    booster = _train(head, x, outcome)
    head.fit_extras(booster, x, outcome)
    return head, booster


@pytest.fixture(scope="module")
def aft(weibull) -> tuple[SurvivalHead, xgb.Booster]:
    x, outcome = weibull
    head = SurvivalHead(
        objective="aft",
        aft_distribution="extreme",
        aft_scale=0.8,
        horizons=[2.0, 5.0, 10.0],
        grid=np.arange(0.0, 16.0),
    )
    booster = _train(head, x, outcome)
    head.fit_extras(booster, x, outcome)
    return head, booster


# --------------------------------------------------------------------------- survival labels


def test_cox_label_is_time_with_censored_rows_negative():
    head = SurvivalHead(objective="cox")
    outcome = Outcome(
        np.array(["event", "censored", "censored", "event"]),
        time=np.array([3.5, 2.0, 7.25, 0.5]),
        event=np.array([1, 0, 0, 1], dtype=np.int8),
    )
    fields = head.dmatrix_fields(outcome)
    assert list(fields) == ["label"]
    np.testing.assert_array_equal(fields["label"], [3.5, -2.0, -7.25, 0.5])
    assert head.xgb_params() == {"objective": "survival:cox", "eval_metric": "cox-nloglik"}
    np.testing.assert_array_equal(head.strata(outcome), ["event", "censored", "censored", "event"])


def test_aft_bounds_are_open_above_for_censored_rows():
    head = SurvivalHead(objective="aft", aft_distribution="logistic", aft_scale=1.5)
    outcome = Outcome(
        np.array(["a", "b", "c"]),
        time=np.array([3.5, 2.0, 7.25]),
        event=np.array([1, 0, 1], dtype=np.int8),
    )
    fields = head.dmatrix_fields(outcome)
    assert set(fields) == {"label_lower_bound", "label_upper_bound"}
    np.testing.assert_array_equal(fields["label_lower_bound"], [3.5, 2.0, 7.25])
    np.testing.assert_array_equal(fields["label_upper_bound"], [3.5, np.inf, 7.25])
    assert head.xgb_params() == {
        "objective": "survival:aft",
        "eval_metric": "aft-nloglik",
        "aft_loss_distribution": "logistic",
        "aft_loss_distribution_scale": 1.5,
    }


def test_survival_rows_need_time_and_event():
    with pytest.raises(ValueError, match="time and event"):
        SurvivalHead().dmatrix_fields(Outcome(np.array(["a"]), time=np.array([1.0])))


# --------------------------------------------------------------------------- prepare


def test_prepare_fills_grid_and_horizons_from_the_data_when_unset(weibull):
    _, outcome = weibull
    head = SurvivalHead(time_grid_points=20)
    head.prepare(outcome)
    grid, horizons = evaluation_times(outcome.time, outcome.event, n_points=20)
    np.testing.assert_array_equal(head.grid, grid)
    assert head.horizons == horizons == default_horizons(outcome.time, outcome.event)
    assert len(head.grid) == 20
    assert head.grid[0] == 0.0
    assert head.grid[-1] == pytest.approx(np.percentile(outcome.time[outcome.event == 1], 90), 1e-3)


def test_prepare_keeps_configured_horizons_and_grid(weibull):
    _, outcome = weibull
    only_horizons = SurvivalHead(horizons=[1, 3], time_grid_points=10)
    only_horizons.prepare(outcome)
    assert only_horizons.horizons == [1.0, 3.0]
    np.testing.assert_array_equal(
        only_horizons.grid, evaluation_times(outcome.time, outcome.event, n_points=10)[0]
    )

    only_grid = SurvivalHead(grid=[0.0, 0.5, 1.0])
    only_grid.prepare(outcome)
    np.testing.assert_array_equal(only_grid.grid, [0.0, 0.5, 1.0])
    assert only_grid.horizons == default_horizons(outcome.time, outcome.event)

    # Both set: the data are not looked at (an outcome without any event would fail otherwise).
    fixed = SurvivalHead(horizons=[4.0], grid=[0.0, 2.0, 4.0])
    no_events = Outcome(np.array(["c", "c"]), time=np.array([1.0, 2.0]), event=np.zeros(2, "i1"))
    fixed.prepare(no_events)
    assert fixed.horizons == [4.0]
    np.testing.assert_array_equal(fixed.grid, [0.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="no events"):
        SurvivalHead(horizons=[4.0]).prepare(no_events)


# --------------------------------------------------------------------------- predictions


@pytest.mark.parametrize("kind", ["cox", "aft"])
def test_survival_predict_columns_and_curves(kind, request, weibull):
    head, booster = request.getfixturevalue(kind)
    x, _ = weibull
    out = head.predict(booster, x[:60])
    assert list(out.columns) == [name for name, _ in head.output_columns()]
    assert [t for _, t in head.output_columns()] == ["double"] * out.shape[1]
    assert list(out.columns[:4]) == ["risk_score", "risk_at_2", "risk_at_5", "risk_at_10"]
    assert list(out.columns[4:]) == [f"surv_{t}" for t in range(16)]
    assert len(out) == 60

    margin = np.asarray(booster.inplace_predict(x[:60], predict_type="margin"), np.float64)
    curve = out[[f"surv_{t}" for t in range(16)]].to_numpy()
    if kind == "cox":
        np.testing.assert_array_equal(out["risk_score"], margin)
        np.testing.assert_allclose(curve, head.baseline.survival(margin, np.arange(16.0)))
    else:
        np.testing.assert_array_equal(out["risk_score"], -margin)
        np.testing.assert_allclose(
            curve, aft_survival(margin, np.arange(16.0), distribution="extreme", scale=0.8)
        )
    # curves: probabilities, 1 at t = 0, non-increasing, not flat
    assert np.all((curve >= 0.0) & (curve <= 1.0))
    np.testing.assert_array_equal(curve[:, 0], 1.0)
    assert np.all(np.diff(curve, axis=1) <= 0.0)
    assert np.all(curve[:, -1] < 0.95)
    # risk at a horizon is 1 - S(h), the curve's value at the grid point h
    for h in (2, 5, 10):
        np.testing.assert_array_equal(out[f"risk_at_{h}"], 1.0 - out[f"surv_{h}"])
    # higher risk score, lower survival
    order = np.argsort(out["risk_score"].to_numpy())
    assert np.all(np.diff(out["risk_at_10"].to_numpy()[order]) >= -1e-12)


def test_cox_risk_score_learns_the_simulated_hazard(cox, weibull):
    head, booster = cox
    x, _ = weibull
    risk = head.predict(booster, x)["risk_score"].to_numpy()
    assert np.corrcoef(risk, x[:, 0])[0, 1] > 0.5  # hazard grows with feature 0


def test_cox_baseline_is_breslow_on_the_training_margins(cox, weibull):
    head, booster = cox
    x, outcome = weibull
    margin = np.asarray(booster.inplace_predict(x, predict_type="margin"), np.float64)
    expected = BreslowBaseline.fit(margin, outcome.time, outcome.event)
    assert head.baseline.to_json() == expected.to_json()
    np.testing.assert_array_equal(head.baseline.times, np.unique(outcome.time[outcome.event == 1]))


def test_cox_without_baseline_cannot_predict(weibull):
    x, outcome = weibull
    head = SurvivalHead(horizons=[2.0], grid=[0.0, 1.0])
    booster = _train(head, x, outcome)
    with pytest.raises(ValueError, match="baseline"):
        head.predict(booster, x)


@pytest.mark.parametrize("kind", ["cox", "aft"])
def test_survival_head_json_round_trip_predicts_identically(kind, request, weibull):
    head, booster = request.getfixturevalue(kind)
    x, _ = weibull
    state = json.loads(json.dumps(head.to_json()))
    assert state["task"] == "survival"
    assert state["objective"] == kind
    assert state["grid"] == list(range(16))
    assert (state["baseline"] is None) == (kind == "aft")
    restored = head_from_json(state)
    assert isinstance(restored, SurvivalHead)
    assert restored.to_json() == head.to_json()
    pd.testing.assert_frame_equal(restored.predict(booster, x), head.predict(booster, x))


# --------------------------------------------------------------------------- regression


def _regression_data(n: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = 2.0 * x[:, 0] - x[:, 1] + rng.normal(scale=0.5, size=n)
    return x, y


def test_regression_calibrate_uses_the_conformal_rank_rule():
    rng = np.random.default_rng(3)
    predicted = rng.normal(size=19)
    target = predicted + rng.normal(size=19)
    head = RegressionHead(interval_level=0.9)
    head.calibrate(predicted, target)
    residuals = np.abs(target - predicted)
    # rank ceil((19 + 1) * 0.9) = 18 of 19
    assert head.quantile == np.sort(residuals)[17]
    assert head.quantile == conformal_quantile(residuals, alpha=0.1)
    assert head.n_calibration == 19
    # too few calibration rows for the level: an infinite interval
    small = RegressionHead(interval_level=0.95)
    small.calibrate(predicted[:10], target[:10])
    assert small.quantile == np.inf


def test_regression_predict_is_margin_plus_minus_quantile():
    x, y = _regression_data()
    head = RegressionHead(interval_level=0.8)
    assert head.xgb_params() == {"objective": "reg:squarederror", "eval_metric": "rmse"}
    outcome = Outcome(np.full(y.size, "all"), target=y)
    np.testing.assert_array_equal(head.dmatrix_fields(outcome)["label"], y)
    booster = _train(head, x[:150], outcome.take(np.arange(150)))
    with pytest.raises(ValueError, match="calibrate it first"):
        head.predict(booster, x[150:])
    margin = np.asarray(booster.inplace_predict(x[150:], predict_type="margin"), np.float64)
    head.calibrate(margin, y[150:])
    out = head.predict(booster, x[150:])
    assert list(out.columns) == [name for name, _ in head.output_columns()]
    assert list(out.columns) == ["predicted", "lower", "upper"]
    np.testing.assert_array_equal(out["predicted"], margin)
    np.testing.assert_array_equal(out["lower"], margin - head.quantile)
    np.testing.assert_array_equal(out["upper"], margin + head.quantile)
    assert head.quantile > 0
    # the quantile covers at least the level's share of the calibration rows
    assert np.mean(np.abs(y[150:] - margin) <= head.quantile) >= 0.8
    restored = head_from_json(json.loads(json.dumps(head.to_json())))
    assert isinstance(restored, RegressionHead)
    assert (restored.quantile, restored.n_calibration) == (head.quantile, 50)
    pd.testing.assert_frame_equal(restored.predict(booster, x[150:]), out)


def test_regression_strata_are_target_quintiles():
    target = np.arange(10.0)
    head = RegressionHead()
    strata = head.strata(Outcome(np.full(10, "all"), target=target))
    assert strata.tolist() == ["q0", "q0", "q1", "q1", "q2", "q2", "q3", "q3", "q4", "q4"]
    with pytest.raises(ValueError, match="target"):
        head.dmatrix_fields(Outcome(np.full(10, "all")))


# --------------------------------------------------------------------------- classification


def test_classification_balanced_weights():
    head = ClassificationHead(["a", "b"])
    fields = head.dmatrix_fields(Outcome(np.array(["a", "a", "a", "b"])))
    np.testing.assert_array_equal(fields["label"], [0, 0, 0, 1])
    np.testing.assert_allclose(fields["weight"], [4 / 6, 4 / 6, 4 / 6, 2.0])
    assert fields["weight"].dtype == np.float32
    # every class carries the same total weight
    assert fields["weight"][:3].sum() == pytest.approx(fields["weight"][3:].sum())

    three = ClassificationHead(["x", "y", "z"])
    fields = three.dmatrix_fields(Outcome(np.array(["z", "x", "x", "z", "z", "z"])))
    np.testing.assert_array_equal(fields["label"], [2, 0, 0, 2, 2, 2])
    np.testing.assert_allclose(fields["weight"], [0.5, 1.0, 1.0, 0.5, 0.5, 0.5])
    assert three.xgb_params()["num_class"] == 3

    unweighted = ClassificationHead(["a", "b"], class_weight="none")
    np.testing.assert_array_equal(
        unweighted.dmatrix_fields(Outcome(np.array(["a", "a", "b"])))["weight"], 1.0
    )
    with pytest.raises(ValueError, match=r"are not among the model's classes \['a', 'b'\]") as err:
        head.dmatrix_fields(Outcome(np.array(["a", "c"])))
    assert "'c'" in str(err.value)


def test_classification_unknown_label_message_lists_plain_strings():
    head = ClassificationHead(["a", "b"])
    with pytest.raises(ValueError, match=r"^labels \['c'\] are not among"):
        head.dmatrix_fields(Outcome(np.array(["a", "c"])))


def test_classification_predict_and_round_trip():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    label = np.where(x[:, 0] > 0.3, "b", np.where(x[:, 0] < -0.3, "a", "c"))
    head = ClassificationHead(["a", "b", "c"])
    booster = _train(head, x, Outcome(label))
    out = head.predict(booster, x)
    assert list(out.columns) == [name for name, _ in head.output_columns()]
    proba = out[["prob_a", "prob_b", "prob_c"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert np.mean(out["predicted_class"].to_numpy() == label) > 0.9
    restored = head_from_json(json.loads(json.dumps(head.to_json())))
    pd.testing.assert_frame_equal(restored.predict(booster, x), out)


# --------------------------------------------------------------------------- configs


def test_head_from_config_builds_each_task():
    survival = head_from_config(
        {
            "task": "survival",
            "survival": {
                "objective": "aft",
                "aft_distribution": "logistic",
                "aft_scale": 2,
                "horizons": [12, 24],
                "time_grid_points": 7,
            },
        },
        classes=None,
    )
    assert isinstance(survival, SurvivalHead)
    assert survival.to_json() == {
        "task": "survival",
        "objective": "aft",
        "aft_distribution": "logistic",
        "aft_scale": 2.0,
        "horizons": [12.0, 24.0],
        "time_grid_points": 7,
        "grid": None,
        "baseline": None,
    }
    regression = head_from_config(
        {"task": "regression", "regression": {"interval_level": 0.8}}, classes=None
    )
    assert isinstance(regression, RegressionHead)
    assert (regression.interval_level, regression.calibration_fraction) == (0.8, 0.25)
    classifier = head_from_config({"model": {"class_weight": "none"}}, classes=["u", "v"])
    assert isinstance(classifier, ClassificationHead)
    assert classifier.to_json() == {
        "task": "classification",
        "classes": ["u", "v"],
        "class_weight": "none",
        "calibration": None,
    }


@pytest.mark.parametrize(
    ("config", "classes", "match"),
    [
        ({"task": "ranking"}, None, "task 'ranking' is not one of"),
        ({"task": "survival", "survival": {"objective": "weibull"}}, None, "'weibull'"),
        (
            {"task": "survival", "survival": {"objective": "aft", "aft_distribution": "gamma"}},
            None,
            "aft_distribution is 'gamma'",
        ),
        ({"task": "classification"}, None, "needs the cohort's classes"),
        ({"task": "classification"}, [], "needs the cohort's classes"),
    ],
)
def test_head_from_config_rejects_unknown_settings(config, classes, match):
    with pytest.raises(ValueError, match=match):
        head_from_config(config, classes=classes)


# --------------------------------------------------------------------------- evaluation times


@pytest.mark.parametrize(
    ("scale", "decimals"), [(0.01234, 5), (1.0, 4), (2.0, 3), (123.4, 1), (9876.5, 0), (5.0e5, 0)]
)
def test_evaluation_times_rounds_the_grid_to_readable_names(scale, decimals):
    rng = np.random.default_rng(7)
    time = scale * rng.uniform(0.05, 1.0, size=200)
    event = (rng.uniform(size=200) < 0.6).astype(np.int8)
    grid, horizons = evaluation_times(time, event, n_points=50)
    raw = time_grid(time, event, n_points=50)
    np.testing.assert_array_equal(grid, np.unique(np.round(raw, decimals)))
    assert grid[0] == 0.0
    assert np.all(np.diff(grid) > 0)
    assert len(grid) == 50
    names = [horizon_label(t) for t in grid]
    assert len(set(names)) == len(names)
    assert grid[-1] == pytest.approx(raw[-1], rel=1e-3)
    assert horizons == default_horizons(time, event)


def test_evaluation_times_merges_grid_points_that_round_together():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    event = np.ones(5, dtype=np.int8)
    grid, horizons = evaluation_times(time, event, horizons=[1, 2.5], n_points=20001)
    # 90th percentile 4.6: three decimals, so at most 4601 distinct points
    assert grid[0] == 0.0
    assert grid[-1] == 4.6
    assert len(grid) == 4601
    assert np.all(np.diff(grid) > 0)
    np.testing.assert_array_equal(grid, np.round(grid, 3))
    assert len({horizon_label(t) for t in grid}) == len(grid)
    assert horizons == [1.0, 2.5]


def test_horizon_label():
    assert [horizon_label(v) for v in (12.0, 0.5, 2.25, -1.5)] == ["12", "0_5", "2_25", "m1_5"]
