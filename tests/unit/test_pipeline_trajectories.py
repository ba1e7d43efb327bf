"""Survival, landmark and longitudinal-regression pipelines on the bundled example data.

The raw input tables are built from the example files as the workflow's integrate step builds
them (``modality:feature`` columns, plus ``sample_id``, ``subject_id`` and ``visit_time``), and
the per-row outcome table as ``load_cohort`` gives it (``label`` event/censored, ``time``,
``event``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from example_inputs import example_tables

from omics_ml.pipeline import OmicsPipeline, fit_pipeline
from omics_ml.regression import conformal_quantile
from omics_ml.split import grouped_stratified_split
from omics_ml.survival import BreslowBaseline
from omics_ml.tasks import RegressionHead, SurvivalHead, TaskHead, evaluation_times

ROOT = Path(__file__).resolve().parents[2]
SMALL_MODEL = {"n_estimators": 40, "early_stopping_rounds": 10}
LANDMARKS = [0.0, 2.0, 6.0]


def _example(config_file: str) -> dict[str, Any]:
    """Config, raw input frame and per-row outcomes of an example config."""
    config = yaml.safe_load((ROOT / config_file).read_text())
    config["model"] = {**config["model"], **SMALL_MODEL}
    tables = example_tables(config)
    frame, outcomes, table, test = (
        tables["frame"],
        tables["outcomes"],
        tables["subjects"],
        tables["test"],
    )
    return {
        "config": config,
        "frame": frame,
        "outcomes": outcomes,
        "subjects": table.set_index("subject_id"),
        "train": np.flatnonzero(~test),
        "test": np.flatnonzero(test),
    }


def _rows(example: dict[str, Any], part: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    idx = example[part]
    return (
        example["frame"].iloc[idx].reset_index(drop=True),
        example["outcomes"].iloc[idx].reset_index(drop=True),
    )


def _fit(example: dict[str, Any], idx: np.ndarray | None = None) -> OmicsPipeline:
    idx = example["train"] if idx is None else idx
    return fit_pipeline(
        example["frame"].iloc[idx].reset_index(drop=True),
        example["outcomes"].iloc[idx].reset_index(drop=True),
        config=example["config"],
    )


def _surv_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("surv_")]


# =========================================================================== survival (GSE1992)


@pytest.fixture(scope="module")
def survival() -> dict[str, Any]:
    return _example("config/survival.yaml")


@pytest.fixture(scope="module")
def survival_pipeline(survival: dict[str, Any]) -> OmicsPipeline:
    return _fit(survival)


def test_survival_predict_frame_rows_columns_and_curves(survival, survival_pipeline):
    frame, _ = _rows(survival, "test")
    pipeline = survival_pipeline
    assert pipeline.task == "survival"
    assert isinstance(pipeline.head, SurvivalHead)
    out = pipeline.predict_frame(frame)
    assert len(out) == len(frame) == 29
    assert out["sample_id"].tolist() == frame["sample_id"].tolist()
    assert list(out.columns) == [name for name, _ in pipeline.output_columns()]
    assert list(out.columns[:5]) == [
        "sample_id",
        "risk_score",
        "risk_at_12",
        "risk_at_24",
        "risk_at_48",
    ]
    assert out.columns[-1] == "missing_modalities"
    assert (out["missing_modalities"] == "").all()
    surv = out[_surv_columns(out)].to_numpy()
    assert surv.shape[1] == len(pipeline.head.grid) >= 40
    assert _surv_columns(out)[0] == "surv_0"
    assert np.all((surv >= 0) & (surv <= 1))
    np.testing.assert_array_equal(surv[:, 0], 1.0)
    assert np.all(np.diff(surv, axis=1) <= 0)
    assert surv[:, -1].max() < 1.0
    risk = out[["risk_at_12", "risk_at_24", "risk_at_48"]].to_numpy()
    assert np.all((risk >= 0) & (risk <= 1))
    assert np.all(np.diff(risk, axis=1) >= 0)
    assert np.all(risk[:, 2] > risk[:, 0])
    # risk at h is 1 - S(h) of the Breslow model of the row's risk score
    expected = 1.0 - pipeline.head.baseline.survival(out["risk_score"], [12.0, 24.0, 48.0])
    np.testing.assert_allclose(risk, expected, rtol=1e-12)
    # a higher risk score gives a lower curve everywhere
    order = np.argsort(out["risk_score"].to_numpy())
    assert np.all(np.diff(surv[order], axis=0) <= 1e-12)


def test_survival_grid_and_horizons_come_from_config_and_training_rows(survival, survival_pipeline):
    _, outcomes = _rows(survival, "train")
    head = survival_pipeline.head
    assert head.horizons == [12.0, 24.0, 48.0]
    grid, _ = evaluation_times(
        outcomes["time"].to_numpy(), outcomes["event"].to_numpy(), n_points=50
    )
    np.testing.assert_array_equal(head.grid, grid)


def test_survival_save_load_round_trip(survival, survival_pipeline, tmp_path: Path):
    frame, outcomes = _rows(survival, "test")
    survival_pipeline.save(tmp_path / "model")
    loaded = OmicsPipeline.load(tmp_path / "model")
    assert isinstance(loaded.head, SurvivalHead)
    assert loaded.head.to_json() == survival_pipeline.head.to_json()
    assert loaded.output_columns() == survival_pipeline.output_columns()
    pd.testing.assert_frame_equal(
        loaded.predict_frame(frame), survival_pipeline.predict_frame(frame)
    )
    pd.testing.assert_frame_equal(
        loaded.evaluation_frame(frame, outcomes),
        survival_pipeline.evaluation_frame(frame, outcomes),
    )


def test_breslow_baseline_is_fitted_on_the_training_rows_only(survival, survival_pipeline):
    frame, outcomes = _rows(survival, "train")
    pipeline = survival_pipeline
    _, features, outcome = pipeline.design(frame, outcomes)
    expected = BreslowBaseline.fit(
        TaskHead.margin(pipeline.booster, features), outcome.time, outcome.event
    )
    baseline = pipeline.head.baseline
    train_event_times = np.unique(outcomes.loc[outcomes["event"] == 1, "time"])
    np.testing.assert_array_equal(baseline.times, train_event_times)
    np.testing.assert_array_equal(baseline.times, expected.times)
    np.testing.assert_allclose(baseline.cumulative_hazard, expected.cumulative_hazard, rtol=1e-9)
    assert baseline.offset == pytest.approx(expected.offset, rel=1e-9)
    # no event time of a test subject that no training subject shares
    test_outcomes = _rows(survival, "test")[1]
    test_only = set(test_outcomes.loc[test_outcomes["event"] == 1, "time"]) - set(train_event_times)
    assert test_only
    assert test_only.isdisjoint(baseline.times)


def test_survival_fit_is_deterministic_and_depends_on_the_training_rows(
    survival, survival_pipeline
):
    frame, _ = _rows(survival, "test")
    again = _fit(survival)
    assert again.head.to_json() == survival_pipeline.head.to_json()
    pd.testing.assert_frame_equal(
        again.predict_frame(frame), survival_pipeline.predict_frame(frame)
    )

    # Adding test subjects (with events) to training changes the baseline hazard.
    test_outcomes = survival["outcomes"].iloc[survival["test"]]
    added = survival["test"][test_outcomes["event"].to_numpy() == 1][:5]
    more = _fit(survival, np.sort(np.concatenate([survival["train"], added])))
    times = survival["outcomes"]["time"].to_numpy()
    assert set(times[added]) <= set(more.head.baseline.times)
    assert len(more.head.baseline.times) > len(survival_pipeline.head.baseline.times)
    assert more.head.baseline.to_json() != survival_pipeline.head.baseline.to_json()


def test_survival_evaluation_frame_carries_the_outcomes(survival, survival_pipeline):
    frame, outcomes = _rows(survival, "test")
    out = survival_pipeline.evaluation_frame(frame, outcomes)
    predicted = survival_pipeline.predict_frame(frame)
    assert out.columns[:2].tolist() == ["sample_id", "subject_id"]
    assert out.columns[-3:].tolist() == ["label", "time", "event"]
    assert out["subject_id"].tolist() == outcomes["subject_id"].tolist()
    np.testing.assert_array_equal(out["time"], outcomes["time"])
    np.testing.assert_array_equal(out["event"], outcomes["event"])
    assert out["label"].tolist() == outcomes["label"].tolist()
    shared = [c for c in predicted.columns if c != "missing_modalities"]
    pd.testing.assert_frame_equal(out[shared], predicted[shared])


# =========================================================================== landmark survival


@pytest.fixture(scope="module")
def landmark() -> dict[str, Any]:
    example = _example("config/longitudinal.yaml")
    assert example["config"]["longitudinal"]["landmarks"] == [0, 2, 6]
    return example


@pytest.fixture(scope="module")
def landmark_pipeline(landmark: dict[str, Any]) -> OmicsPipeline:
    return _fit(landmark)


def _last_visit(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("subject_id", sort=False)["visit_time"].max()


def test_landmark_raw_frame_has_one_row_per_visit(landmark):
    frame = landmark["frame"]
    assert len(frame) == 1381
    assert frame["subject_id"].nunique() == 461
    assert not frame.duplicated(["subject_id", "visit_time"]).any()
    assert frame.columns[:3].tolist() == ["sample_id", "subject_id", "visit_time"]
    assert sorted(frame["visit_time"].unique()) == [0.0, 2.0, 6.0, 12.0, 18.0]


def test_landmark_serving_rows_are_the_landmarks_the_visits_reached(landmark, landmark_pipeline):
    frame, _ = _rows(landmark, "test")
    pipeline = landmark_pipeline
    assert pipeline.landmarks is not None
    assert pipeline.landmarks.landmarks == LANDMARKS
    out = pipeline.predict_frame(frame)
    last = _last_visit(frame)
    expected = [(subject, s) for s in LANDMARKS for subject in last.index if last[subject] >= s]
    assert out["sample_id"].tolist() == [f"{sub}@{s:g}" for sub, s in expected]
    assert out["subject_id"].tolist() == [sub for sub, _ in expected]
    assert out["landmark"].tolist() == [s for _, s in expected]
    assert list(out.columns) == [name for name, _ in pipeline.output_columns()]
    assert out.columns[:6].tolist() == [
        "sample_id",
        "subject_id",
        "landmark",
        "risk_score",
        "risk_at_6",
        "risk_at_12",
    ]
    # some subjects stop before 6: fewer rows at later landmarks
    counts = out["landmark"].value_counts()
    assert counts[0.0] == frame["subject_id"].nunique() > counts[2.0] > counts[6.0] > 0
    surv = out[_surv_columns(out)].to_numpy()
    assert np.all((surv >= 0) & (surv <= 1))
    assert np.all(np.diff(surv, axis=1) <= 0)
    assert np.all(out["risk_at_12"] >= out["risk_at_6"])


def test_landmark_evaluation_rows_are_the_subjects_at_risk(landmark, landmark_pipeline):
    frame, outcomes = _rows(landmark, "test")
    out = landmark_pipeline.evaluation_frame(frame, outcomes)
    subjects = landmark["subjects"]
    order = frame["subject_id"].drop_duplicates().tolist()
    expected = [(sub, s) for s in LANDMARKS for sub in order if subjects.loc[sub, "time"] > s]
    assert out["sample_id"].tolist() == [f"{sub}@{s:g}" for sub, s in expected]
    assert out["landmark"].tolist() == [s for _, s in expected]
    expected_time = [subjects.loc[sub, "time"] - s for sub, s in expected]
    np.testing.assert_allclose(out["time"], expected_time, rtol=0, atol=1e-12)
    assert (out["time"] > 0).all()
    assert out["event"].tolist() == [subjects.loc[sub, "event"] for sub, _ in expected]
    assert out["label"].tolist() == [
        "event" if subjects.loc[sub, "event"] == 1 else "censored" for sub, _ in expected
    ]
    # a subject that died before 6 months has no row at landmark 6, though it was followed
    dead = [sub for sub in order if subjects.loc[sub, "time"] <= 6]
    assert dead
    assert not set(out.loc[out["landmark"] == 6, "subject_id"]) & set(dead)
    # the predictions are those of serving mode wherever both have the row
    served = landmark_pipeline.predict_frame(frame).set_index("sample_id")
    common = out["sample_id"][out["sample_id"].isin(served.index)]
    assert len(common) > 0.8 * len(out)
    columns = ["risk_score", *_surv_columns(out)]
    pd.testing.assert_frame_equal(
        out.set_index("sample_id").loc[common, columns], served.loc[common, columns]
    )


def _at(frame: pd.DataFrame, s: float) -> pd.DataFrame:
    return frame[frame["landmark"] == s].set_index("sample_id")


@pytest.mark.parametrize("s", LANDMARKS)
def test_landmark_rows_never_see_visits_after_the_landmark(landmark, landmark_pipeline, s):
    """Leakage proof: changing or deleting later visits leaves the row at s bit-identical."""
    frame, outcomes = _rows(landmark, "test")
    pipeline = landmark_pipeline
    base = pipeline.predict_frame(frame)
    later = frame["visit_time"].to_numpy() > s
    assert later.any()

    changed = frame.copy()
    changed.loc[later, "cd4:CD4"] = changed.loc[later, "cd4:CD4"] * 3.0 + 7.0
    changed.loc[later, "baseline:drug"] = np.where(
        changed.loc[later, "baseline:drug"] == "ddI", "ddC", "ddI"
    )
    after_change = pipeline.predict_frame(changed)
    pd.testing.assert_frame_equal(_at(after_change, s), _at(base, s), check_exact=True)
    if s < LANDMARKS[-1]:  # the change is material: it moves the later landmarks' rows
        later_rows = base["landmark"] > s
        assert not np.array_equal(
            after_change.loc[later_rows, "risk_score"], base.loc[later_rows, "risk_score"]
        )

    kept = ~later
    truncated = frame[kept].reset_index(drop=True)
    after_drop = pipeline.predict_frame(truncated)
    assert (after_drop["landmark"] <= s).all()
    at_s = _at(after_drop, s)
    # serving rows at s: the subjects with a visit exactly at s
    visited = truncated.loc[truncated["visit_time"] == s, "subject_id"]
    assert len(visited) > 0
    assert at_s.index.tolist() == [f"{sub}@{s:g}" for sub in visited]
    pd.testing.assert_frame_equal(at_s, _at(base, s).loc[at_s.index], check_exact=True)

    # evaluation mode: the same rows at s (at risk by the outcome, not by the visits), unchanged
    full = pipeline.evaluation_frame(frame, outcomes)
    dropped = pipeline.evaluation_frame(truncated, outcomes[kept].reset_index(drop=True))
    pd.testing.assert_frame_equal(_at(dropped, s), _at(full, s), check_exact=True)


def test_landmark_rows_do_not_depend_on_the_order_of_the_visits(landmark, landmark_pipeline):
    frame, outcomes = _rows(landmark, "test")
    order = np.random.default_rng(1).permutation(len(frame))
    shuffled = frame.iloc[order].reset_index(drop=True)
    shuffled_outcomes = outcomes.iloc[order].reset_index(drop=True)
    pipeline = landmark_pipeline
    for before, after in (
        (pipeline.predict_frame(frame), pipeline.predict_frame(shuffled)),
        (
            pipeline.evaluation_frame(frame, outcomes),
            pipeline.evaluation_frame(shuffled, shuffled_outcomes),
        ),
    ):
        assert not before["sample_id"].equals(after["sample_id"])
        pd.testing.assert_frame_equal(
            after.set_index("sample_id").loc[before["sample_id"]], before.set_index("sample_id")
        )


def test_landmark_save_load_round_trip(landmark, landmark_pipeline, tmp_path: Path):
    frame, outcomes = _rows(landmark, "test")
    landmark_pipeline.save(tmp_path)
    loaded = OmicsPipeline.load(tmp_path)
    assert loaded.landmarks.to_json() == landmark_pipeline.landmarks.to_json()
    assert loaded.feature_names == landmark_pipeline.feature_names
    pd.testing.assert_frame_equal(
        loaded.predict_frame(frame), landmark_pipeline.predict_frame(frame)
    )
    pd.testing.assert_frame_equal(
        loaded.evaluation_frame(frame, outcomes),
        landmark_pipeline.evaluation_frame(frame, outcomes),
    )


# =========================================================================== regression (CD4)


@pytest.fixture(scope="module")
def regression() -> dict[str, Any]:
    example = _example("config/regression.yaml")
    assert example["config"]["longitudinal"]["target"] == {
        "feature": "cd4:CD4",
        "horizon": 6,
        "window": 1,
    }
    return example


@pytest.fixture(scope="module")
def regression_pipeline(regression: dict[str, Any]) -> OmicsPipeline:
    return _fit(regression)


def _expected_targets(frame: pd.DataFrame, subjects: pd.DataFrame) -> pd.Series:
    """Raw CD4 at the visit within [11, 13] months, of subjects alive at 6 months."""
    cd4 = pd.read_csv(ROOT / "resources/longitudinal_example/cd4.csv").set_index("sample_id")
    visits = frame[["sample_id", "subject_id", "visit_time"]].copy()
    visits["cd4"] = cd4.loc[visits["sample_id"], "CD4"].to_numpy()
    visits["distance"] = (visits["visit_time"] - 12.0).abs()
    alive = subjects.loc[visits["subject_id"], "time"].to_numpy() > 6
    window = (visits["visit_time"] > 6) & (visits["distance"] <= 1) & visits["cd4"].notna()
    chosen = visits[alive & window].sort_values(["distance", "visit_time"], kind="stable")
    chosen = chosen.drop_duplicates("subject_id")
    order = frame["subject_id"].drop_duplicates()
    return chosen.set_index("subject_id")["cd4"].reindex(order).dropna()


def test_regression_rows_targets_and_intervals(regression, regression_pipeline):
    frame, outcomes = _rows(regression, "test")
    pipeline = regression_pipeline
    assert isinstance(pipeline.head, RegressionHead)
    out = pipeline.evaluation_frame(frame, outcomes)
    expected = _expected_targets(frame, regression["subjects"])
    assert len(expected) > 30
    assert out["subject_id"].tolist() == expected.index.tolist()
    assert out["sample_id"].tolist() == [f"{sub}@6" for sub in expected.index]
    assert (out["landmark"] == 6.0).all()
    # the raw (not normalised) CD4 of the target visit, as read into the input table (float32)
    np.testing.assert_allclose(out["target"], expected.to_numpy(), rtol=1e-6)
    target_rows = frame.set_index(["subject_id", "visit_time"])["cd4:CD4"]
    np.testing.assert_array_equal(
        out["target"], target_rows.loc[[(sub, 12.0) for sub in expected.index]].to_numpy()
    )
    q = pipeline.head.quantile
    assert 0 < q < np.inf
    np.testing.assert_allclose(out["upper"] - out["lower"], 2 * q, rtol=1e-12)
    np.testing.assert_allclose(out["predicted"] - out["lower"], q, rtol=1e-12)
    assert out.columns.tolist() == [
        "sample_id",
        "subject_id",
        "landmark",
        "predicted",
        "lower",
        "upper",
        "label",
        "time",
        "event",
        "target",
    ]
    np.testing.assert_allclose(
        out["time"], regression["subjects"].loc[expected.index, "time"].to_numpy() - 6.0
    )
    # conformal coverage on held-out subjects (nominal 0.9), loosely
    covered = (out["lower"] <= out["target"]) & (out["target"] <= out["upper"])
    assert covered.mean() >= 0.75


def test_regression_serving_rows(regression, regression_pipeline):
    frame, _ = _rows(regression, "test")
    out = regression_pipeline.predict_frame(frame)
    last = _last_visit(frame)
    assert out["sample_id"].tolist() == [f"{sub}@6" for sub in last.index if last[sub] >= 6]
    assert list(out.columns) == [name for name, _ in regression_pipeline.output_columns()]
    assert out.columns.tolist() == [
        "sample_id",
        "subject_id",
        "landmark",
        "predicted",
        "lower",
        "upper",
    ]
    evaluated = regression_pipeline.evaluation_frame(frame, _rows(regression, "test")[1])
    served = out.set_index("sample_id").loc[evaluated["sample_id"]]
    np.testing.assert_array_equal(served["predicted"], evaluated["predicted"])


def test_regression_calibration_subjects_are_held_out_of_the_booster(
    regression, regression_pipeline
):
    frame, outcomes = _rows(regression, "train")
    pipeline = regression_pipeline
    info = pipeline.info
    n_cal = info["n_calibration_rows"]
    assert n_cal > 0
    n_booster = info["n_inner_fit_rows"] + info["n_inner_validation_rows"]
    assert n_booster + n_cal == info["n_training_rows"]
    assert pipeline.head.n_calibration == n_cal
    meta, features, outcome = pipeline.design(frame, outcomes)
    assert len(meta) == info["n_training_rows"] == info["n_training_subjects"]
    # the quantile is the conformal quantile of the residuals of a subject-grouped
    # calibration split (fraction 0.25) of the training rows
    fraction = regression["config"]["regression"]["calibration_fraction"]
    _, calibration = grouped_stratified_split(
        pipeline.head.strata(outcome),
        meta["subject_id"].to_numpy(),
        fraction=fraction,
        seed=regression["config"]["seed"] + 1,
    )
    assert calibration.size == n_cal
    residuals = outcome.target[calibration] - TaskHead.margin(
        pipeline.booster, features[calibration]
    )
    assert pipeline.head.quantile == conformal_quantile(residuals, alpha=0.1)


def test_inner_cross_validation_picks_the_rounds(survival):
    assert survival["config"]["model"]["inner_cv_folds"] == 5
    first, second = _fit(survival), _fit(survival)
    assert first.info["inner_cv_folds"] == 5
    assert 1 <= first.info["n_rounds"] <= SMALL_MODEL["n_estimators"]
    assert first.booster.save_raw() == second.booster.save_raw()  # seeded folds: deterministic
    single = dict(survival, config={**survival["config"]})
    single["config"]["model"] = {**survival["config"]["model"], "inner_cv_folds": None}
    one_split = _fit(single)
    assert "inner_cv_folds" not in one_split.info
    assert one_split.info["n_inner_validation_rows"] > 0
