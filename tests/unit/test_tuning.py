"""Tests of nested XGBoost tuning on real cohorts (TCGA subtypes, GSE1992 survival)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import xgboost as xgb
from numpy.typing import NDArray

from omics_ml.tuning import (
    DEFAULT_SEARCH_SPACE,
    TuningResult,
    grouped_folds,
    search_space,
    tune_xgboost,
)

ROOT = Path(__file__).resolve().parents[2]
N_ESTIMATORS = 80
EARLY_STOPPING = 10
N_TRIALS = 5
# One thread: on a busy 2-core machine, two OpenMP threads per fit contend and run many times
# slower.
NTHREAD = 1

# Every searched parameter set inside the default space, so the first trial is exactly these.
CONFIGURED: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_depth": 3,
    "min_child_weight": 1.0,
    "subsample": 0.8,
    "colsample_bynode": 0.5,
    "reg_alpha": 0.01,
    "reg_lambda": 1.0,
    "max_bin": 64,
}


@dataclass
class Cohort:
    """A design matrix with its inner folds and base parameters."""

    dtrain: xgb.DMatrix
    folds: list[tuple[NDArray[np.int64], NDArray[np.int64]]]
    params: dict[str, Any]


@pytest.fixture(scope="module")
def tcga() -> Cohort:
    """TCGA mRNA (200 genes) with the 3-class subtype, grouped 3-fold inner CV."""
    mrna = pd.read_csv(ROOT / "resources/example/mrna.csv")
    outcomes = pd.read_csv(ROOT / "resources/example/outcomes.csv")
    samples = pd.read_csv(ROOT / "resources/example/samples.csv")
    frame = mrna.merge(outcomes, on="sample_id").merge(samples, on="sample_id")
    label = frame["subtype"].map({"Basal": 0, "Her2": 1, "LumA": 2}).to_numpy()
    genes = frame.drop(columns=["sample_id", "subject_id", "subtype"]).to_numpy(np.float32)
    folds = grouped_folds(label, frame["subject_id"], n_splits=3, seed=0)
    params = {
        "objective": "multi:softprob",
        "num_class": 3,
        "eval_metric": "mlogloss",
        "tree_method": "hist",
        "seed": 0,
        "nthread": NTHREAD,
        **CONFIGURED,
    }
    return Cohort(xgb.DMatrix(genes, label=label), folds, params)


@pytest.fixture(scope="module")
def gse1992() -> pd.DataFrame:
    """GSE1992 expression (first 200 genes) joined to subject, time and event."""
    base = ROOT / "resources/survival_example"
    expression = pd.read_parquet(base / "expression.parquet")
    expression = expression[["sample_id", *expression.columns.drop("sample_id")[:200]]]
    samples = pd.read_csv(base / "samples.csv")
    outcomes = pd.read_csv(base / "outcomes.csv")
    return expression.merge(samples, on="sample_id").merge(outcomes, on="subject_id")


def _tune(cohort: Cohort, **kwargs: Any) -> TuningResult:
    options: dict[str, Any] = {
        "params": cohort.params,
        "n_estimators": N_ESTIMATORS,
        "early_stopping_rounds": EARLY_STOPPING,
        "n_trials": N_TRIALS,
        "seed": 0,
    }
    options.update(kwargs)
    return tune_xgboost(cohort.dtrain, cohort.folds, **options)


def _direct_cv(cohort: Cohort, params: dict[str, Any], seed: int = 0) -> pd.DataFrame:
    return xgb.cv(
        params,
        cohort.dtrain,
        num_boost_round=N_ESTIMATORS,
        folds=list(cohort.folds),
        early_stopping_rounds=EARLY_STOPPING,
        seed=seed,
        verbose_eval=False,
    )


@pytest.fixture(scope="module")
def result(tcga: Cohort) -> TuningResult:
    return _tune(tcga)


def _comparable(res: TuningResult) -> tuple[Any, ...]:
    return res.params, res.score, res.n_rounds, res.n_trials, res.metric, res.trials


def test_same_seed_gives_identical_result(tcga: Cohort, result: TuningResult) -> None:
    again = _tune(tcga)
    assert _comparable(again) == _comparable(result)


def test_different_seed_samples_different_trials(tcga: Cohort, result: TuningResult) -> None:
    other = _tune(tcga, seed=1)
    # the enqueued configured trial is the same, the sampled ones differ
    assert other.trials[0]["params"] == result.trials[0]["params"]
    for mine, theirs in zip(result.trials[1:], other.trials[1:], strict=True):
        assert mine["params"]["learning_rate"] != theirs["params"]["learning_rate"]
        assert mine["params"]["subsample"] != theirs["params"]["subsample"]


def test_every_value_lies_inside_its_range(result: TuningResult) -> None:
    space = search_space()
    assert len(result.trials) == N_TRIALS
    for values in [result.params, *(t["params"] for t in result.trials)]:
        assert set(values) == set(DEFAULT_SEARCH_SPACE)
        for name, value in values.items():
            spec = space[name]
            if "choices" in spec:
                assert value in spec["choices"]
                assert type(value) is int
            else:
                assert spec["low"] <= value <= spec["high"]
                assert type(value) is (int if spec["type"] == "int" else float)


def test_best_trial_is_the_minimum_of_completed_trials(result: TuningResult) -> None:
    complete = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert result.n_trials == len(complete) == N_TRIALS
    best = min(complete, key=lambda t: t["score"])
    assert result.score == best["score"]
    assert result.n_rounds == best["n_rounds"]
    assert result.params == best["params"]
    assert result.metric == "mlogloss"
    assert all(1 <= t["n_rounds"] <= N_ESTIMATORS for t in complete)
    assert np.isfinite(result.score)
    assert result.elapsed_s > 0


def test_first_trial_is_the_configured_parameters(tcga: Cohort, result: TuningResult) -> None:
    first = result.trials[0]
    assert first["number"] == 0
    assert first["params"] == CONFIGURED
    history = _direct_cv(tcga, dict(tcga.params))
    assert first["score"] == float(history["test-mlogloss-mean"].iloc[-1])
    assert first["n_rounds"] == len(history)
    # the search can never end worse than the configuration on the inner folds
    assert result.score <= first["score"]


def test_configured_value_outside_space_is_not_enqueued(tcga: Cohort) -> None:
    params = {**tcga.params, "max_depth": 9, "max_bin": 256}
    res = _tune(tcga, params=params, n_trials=1)
    first = res.trials[0]["params"]
    assert 2 <= first["max_depth"] <= 6
    assert first["max_bin"] in (32, 64, 128)
    assert first["learning_rate"] == CONFIGURED["learning_rate"]
    assert first["reg_lambda"] == CONFIGURED["reg_lambda"]


def test_search_space_overrides_replace_and_remove() -> None:
    space = search_space(
        {
            "learning_rate": {"low": 0.05, "high": 0.2},
            "max_depth": None,
            "gamma": {"low": 1e-3, "high": 1.0, "log": True},
            "colsample_bytree": {"low": 0.5, "high": 1.0},
        }
    )
    assert space["learning_rate"] == {"low": 0.05, "high": 0.2, "log": False, "type": "float"}
    assert "max_depth" not in space
    assert space["gamma"]["log"] is True
    assert space["colsample_bytree"]["high"] == 1.0
    assert space["max_bin"] == {"choices": [32, 64, 128]}
    space["max_bin"]["choices"].append(512)
    assert DEFAULT_SEARCH_SPACE["max_bin"]["choices"] == [32, 64, 128]
    assert search_space() == search_space(None)
    assert set(search_space()) == set(DEFAULT_SEARCH_SPACE)


def test_removed_parameter_keeps_its_configured_value(tcga: Cohort) -> None:
    space = search_space({"max_depth": None, "learning_rate": {"low": 0.05, "high": 0.2}})
    params = {**tcga.params, "max_depth": 2}
    res = _tune(tcga, params=params, n_trials=2, space=space)
    assert all("max_depth" not in t["params"] for t in res.trials)
    assert "max_depth" not in res.params
    assert all(0.05 <= t["params"]["learning_rate"] <= 0.2 for t in res.trials)
    # the first trial ran with max_depth=2 from params, not a sampled or default depth
    assert res.trials[0]["score"] == float(_direct_cv(tcga, params)["test-mlogloss-mean"].iloc[-1])
    deeper = {**params, "max_depth": 5}
    assert res.trials[0]["score"] != float(_direct_cv(tcga, deeper)["test-mlogloss-mean"].iloc[-1])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"eta": {"low": 0.1, "high": 0.2}}, "eta"),
        ({"subsample": {"low": 0.9, "high": 0.9}}, "subsample"),
        ({"subsample": {"low": 0.9, "high": 0.5}}, "subsample"),
        ({"reg_alpha": {"low": 0.0, "high": 1.0, "log": True}}, "reg_alpha"),
        ({"max_bin": {"choices": []}}, "max_bin"),
        ({"max_depth": {"low": 2, "high": 6, "type": "str"}}, "max_depth"),
        ({"max_depth": {"low": 2.5, "high": 6, "type": "int"}}, "max_depth"),
        ({"gamma": {"low": 0.0}}, "gamma"),
        ({"gamma": {"low": 0.0, "high": 1.0, "step": 0.1}}, "gamma"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_bad_override_names_the_key(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=rf"tuning\.search_space\.{key}\b"):
        search_space(overrides)


def test_grouped_folds_keep_subjects_together() -> None:
    outcomes = pd.read_csv(ROOT / "resources/example/outcomes.csv")
    # two rows per subject, e.g. two time points
    groups = np.repeat(outcomes["sample_id"].to_numpy(), 2)
    strata = np.repeat(outcomes["subtype"].to_numpy(), 2)
    folds = grouped_folds(strata, groups, n_splits=4, seed=3)
    assert len(folds) == 4
    valid_all = np.concatenate([valid for _, valid in folds])
    assert np.array_equal(np.sort(valid_all), np.arange(groups.size))
    for train, valid in folds:
        assert train.dtype == np.int64 and valid.dtype == np.int64
        assert not set(groups[train]) & set(groups[valid])
        assert np.array_equal(np.sort(np.concatenate([train, valid])), np.arange(groups.size))
    again = grouped_folds(strata, groups, n_splits=4, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = grouped_folds(strata, groups, n_splits=4, seed=4)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


def test_grouped_folds_rejects_too_few_subjects() -> None:
    groups = np.repeat(["s1", "s2", "s3"], 2)
    with pytest.raises(ValueError, match="inner_cv_folds"):
        grouped_folds(np.zeros(6), groups, n_splits=4, seed=0)
    with pytest.raises(ValueError, match="inner_cv_folds"):
        grouped_folds(np.zeros(6), groups, n_splits=1, seed=0)


def test_json_round_trip(result: TuningResult) -> None:
    text = json.dumps(result.to_json(), allow_nan=False)
    back = TuningResult.from_json(json.loads(text))
    assert back == result
    with pytest.raises(ValueError, match="to_json"):
        TuningResult.from_json({"params": {}})


def _survival_cohort(frame: pd.DataFrame, label: NDArray[np.float64]) -> Cohort:
    genes = frame.drop(columns=["sample_id", "subject_id", "time", "event"]).to_numpy(np.float32)
    folds = grouped_folds(frame["event"], frame["subject_id"], n_splits=3, seed=0)
    params = {
        "objective": "survival:cox",
        "eval_metric": "cox-nloglik",
        "tree_method": "hist",
        "seed": 0,
        "nthread": NTHREAD,
        **CONFIGURED,
    }
    return Cohort(xgb.DMatrix(genes, label=label), folds, params)


def test_survival_run_completes(gse1992: pd.DataFrame) -> None:
    time = gse1992["time"].to_numpy(float)
    label = np.where(gse1992["event"].to_numpy() == 1, time, -time)
    cohort = _survival_cohort(gse1992, label)
    res = _tune(cohort, n_trials=4)
    assert res.metric == "cox-nloglik"
    assert np.isfinite(res.score)
    assert res.n_trials == 4
    assert 1 <= res.n_rounds <= N_ESTIMATORS


def test_no_completed_trial_raises(gse1992: pd.DataFrame) -> None:
    # every subject censored: the Cox loss is undefined, so every trial is pruned
    cohort = _survival_cohort(gse1992, -gse1992["time"].to_numpy(float))
    with pytest.raises(ValueError, match="none of 2 trials completed"):
        _tune(cohort, n_trials=2, n_estimators=5)


def test_optuna_logging_is_restored_and_search_logged(
    tcga: Cohort, caplog: pytest.LogCaptureFixture
) -> None:
    before = optuna.logging.get_verbosity()
    with caplog.at_level(logging.INFO, logger="omics_ml.tuning"):
        _tune(tcga, n_trials=1, n_estimators=10)
    assert optuna.logging.get_verbosity() == before
    lines = [r.getMessage() for r in caplog.records if r.name == "omics_ml.tuning"]
    assert len(lines) == 1 and "best inner-CV mlogloss" in lines[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_trials": 0}, "n_trials"),
        ({"n_estimators": 0}, "n_estimators"),
        ({"timeout_s": 0.0}, "timeout_s"),
        ({"space": {"subsample": {"low": 1.0, "high": 0.5}}}, r"space\.subsample"),
    ],
)
def test_bad_arguments_raise(tcga: Cohort, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _tune(tcga, **kwargs)


def test_missing_eval_metric_raises(tcga: Cohort) -> None:
    params = {k: v for k, v in tcga.params.items() if k != "eval_metric"}
    with pytest.raises(ValueError, match="eval_metric"):
        _tune(tcga, params=params)
