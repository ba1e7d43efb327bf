"""End-to-end: survival, landmark survival and future-value regression on real cohorts.

The real Snakemake workflow on the bundled GSE1992 (relapse-free survival from expression) and
AIDS trial (CD4 visits, death) subsets, a real MLflow store, and ``omics-ml predict`` on the
held-back new patients in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_runner import BIN, REPO, read_json, run_workflow, save_config

pytestmark = pytest.mark.e2e

FAST = {"n_estimators": 200, "early_stopping_rounds": 20}


def _config(directory: Path, name: str, **overrides: dict) -> Path:
    """A bundled example config with absolute paths, faster settings and section overrides."""
    config = yaml.safe_load((REPO / "config" / name).read_text())
    for key in ("samples", "outcomes"):
        config["cohort"][key] = str(REPO / config["cohort"][key])
    for spec in config["modalities"].values():
        spec["path"] = str(REPO / spec["path"])
    config["model"].update(FAST)
    config.setdefault("evaluate", {})["n_bootstrap"] = 20
    return save_config(directory, config, overrides)


def _predict(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    info = json.loads((workdir / "results/register/model.json").read_text())
    cmd = [
        str(BIN / "omics-ml"),
        "predict",
        "--model",
        info["model_uri"],
        "--tracking-uri",
        info["tracking_uri"],
        *args,
    ]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)


def _surv_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame if c.startswith("surv_")]


@pytest.fixture(scope="module")
def survival_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("survival")
    run_workflow(workdir, _config(workdir, "survival.yaml"))
    return workdir


@pytest.fixture(scope="module")
def landmark_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("landmark")
    # The linear baseline on landmark rows; the control and modality-value runs are covered by
    # the survival and classification runs.
    config = _config(
        workdir,
        "longitudinal.yaml",
        evaluate={"modality_value": False, "permuted_control": False},
        treatment={"n_bootstrap": 20},
    )
    run_workflow(workdir, config)
    return workdir


def test_survival_metrics_plots_and_registry(survival_run: Path) -> None:
    results = survival_run / "results"
    for name in ("cv", "holdout"):
        evaluation = read_json(results / f"evaluate/{name}_metrics.json")
        metrics = evaluation["metrics"]
        assert evaluation["task"] == "survival"
        for metric in ("c_index_harrell", "c_index_uno", "integrated_brier_score", "mean_auc"):
            assert 0.0 <= metrics[metric]["estimate"] <= 1.0
        assert {"auc_at_12", "auc_at_24", "brier_at_12", "brier_at_48"} <= set(metrics)
        # Better than the uninformative S(t) = 0.5 curve, whose Brier score is 0.25.
        assert metrics["integrated_brier_score"]["estimate"] < 0.25
        assert len(evaluation["calibration"]) >= 3 * 3  # groups x horizons
        assert 0.0 <= evaluation["km_by_risk_group"]["log_rank_p"] <= 1.0
        for plot in ("calibration", "km"):
            assert (results / f"evaluate/{name}_{plot}.png").stat().st_size > 1000
    info = read_json(results / "register/model.json")
    assert info["serving_check_max_abs_diff"] <= 1e-6
    state = read_json(results / "final/model/state.json")
    assert state["head"]["objective"] == "cox"
    assert state["head"]["horizons"] == [12, 24, 48]
    assert len(state["head"]["baseline"]["times"]) > 10


def test_survival_baseline_control_modality_value_and_subgroups(survival_run: Path) -> None:
    results = survival_run / "results"
    comparison = read_json(results / "evaluate/comparison.json")
    assert comparison["primary_metric"] == "c_index_harrell"
    models = comparison["models"]
    assert set(models) == {"pipeline", "linear baseline", "permuted outcome"}
    assert comparison["baseline"]["model"].startswith("Elastic-net Cox")
    # Shuffled survival outcomes carry no signal: the control's C-index is near 0.5.
    assert abs(models["permuted outcome"]["c_index_harrell"]["estimate"] - 0.5) < 0.15
    settings = [row["setting"] for row in comparison["modality_value"]]
    assert settings[0] == "all modalities"
    assert set(settings[1:]) == {
        "expression alone",
        "clinical alone",
        "all but expression",
        "all but clinical",
        "expression missing at prediction",
        "clinical missing at prediction",
    }
    subgroups = read_json(results / "evaluate/subgroups.json")
    levels = subgroups["cv"]["subgroups"]
    assert set(levels["ER status"]) == {"ER-negative", "ER-positive"}
    assert set(levels["age"]) <= {"<50", ">=50", "missing"}
    n_subjects = read_json(results / "evaluate/cv_metrics.json")["n_subjects"]
    assert sum(v["n_subjects"] for v in levels["ER status"].values()) == n_subjects
    shap = read_json(results / "evaluate/shap_importance.json")
    assert shap["margin"] == "log hazard ratio"
    assert {m["modality"] for m in shap["modalities"]} == {"expression", "clinical"}
    report = (results / "report/report.html").read_text()
    for section in ("Modality value", "Subgroup performance", "Explanations (SHAP)"):
        assert section in report


def test_survival_predict_new_patients_with_plots(survival_run: Path, tmp_path: Path) -> None:
    new = REPO / "resources/survival_example/new_patients"
    out = tmp_path / "predictions.csv"
    result = _predict(
        survival_run, "--input", str(new), "--output", str(out), "--plot", str(tmp_path / "plots")
    )
    assert result.returncode == 0, result.stderr
    predictions = pd.read_csv(out)
    truth = pd.read_csv(new / "samples.csv")
    assert sorted(predictions["sample_id"]) == sorted(truth["sample_id"])
    curves = predictions[_surv_columns(predictions)].to_numpy()
    assert curves.shape[1] > 10
    assert np.all((curves >= 0) & (curves <= 1))
    assert np.all(np.diff(curves, axis=1) <= 1e-12)  # survival never increases
    risks = predictions[["risk_at_12", "risk_at_24", "risk_at_48"]].to_numpy()
    assert np.all(np.diff(risks, axis=1) >= -1e-12)  # risk grows with the horizon
    assert len(list((tmp_path / "plots").glob("*.png"))) == len(truth)
    # A model trained without a treatment section has no what-if predictions.
    no_twin = _predict(survival_run, "--input", str(new), "--what-if")
    assert no_twin.returncode == 2
    assert "without a treatment section" in no_twin.stderr


def test_landmark_model_metrics_per_landmark(landmark_run: Path) -> None:
    results = landmark_run / "results"
    cv = read_json(results / "evaluate/cv_metrics.json")
    assert set(cv["by_landmark"]) == {"0", "2", "6"}
    # Landmark 6 has fewer subjects at risk than landmark 0.
    assert cv["by_landmark"]["6"]["n_rows"] < cv["by_landmark"]["0"]["n_rows"]
    # CD4 decline and prior AIDS carry real prognostic signal in this trial.
    assert cv["metrics"]["c_index_harrell"]["estimate"] > 0.6
    oof = pd.read_parquet(results / "evaluate/oof_predictions.parquet")
    assert set(oof["landmark"]) == {0.0, 2.0, 6.0}
    assert (oof["time"] > 0).all()
    assert not oof.duplicated(["subject_id", "landmark"]).any()
    assert read_json(results / "register/model.json")["serving_check_max_abs_diff"] <= 1e-6


def test_landmark_predict_one_row_per_landmark_reached(landmark_run: Path, tmp_path: Path) -> None:
    new = REPO / "resources/longitudinal_example/new_patients"
    out = tmp_path / "predictions.csv"
    result = _predict(
        landmark_run,
        "--input",
        str(new),
        "--samples",
        str(new / "samples.csv"),
        "--output",
        str(out),
        "--plot",
        str(tmp_path / "plots"),
    )
    assert result.returncode == 0, result.stderr
    predictions = pd.read_csv(out, dtype={"subject_id": str})
    visits = pd.read_csv(new / "samples.csv", dtype={"subject_id": str})
    reached = visits.groupby("subject_id")["visit_time"].max()
    expected = sum(int((reached >= s).sum()) for s in (0, 2, 6))
    assert len(predictions) == expected
    assert predictions["sample_id"].tolist()[0].endswith("@0")
    assert len(list((tmp_path / "plots").glob("*.png"))) == reached.size
    missing = _predict(landmark_run, "--input", str(new))
    assert missing.returncode == 2
    assert "--samples" in missing.stderr


def test_future_value_regression_with_conformal_intervals(tmp_path: Path) -> None:
    workdir = tmp_path / "regression"
    run_workflow(
        workdir,
        _config(
            workdir,
            "regression.yaml",
            evaluate={"modality_value": False, "permuted_control": False},
            # What-if future CD4 under each drug (higher is better).
            treatment={"column": "baseline:drug", "arms": ["ddC", "ddI"], "n_bootstrap": 10},
        ),
    )
    results = workdir / "results"
    for name in ("cv", "holdout"):
        metrics = read_json(results / f"evaluate/{name}_metrics.json")["metrics"]
        assert metrics["r2"]["estimate"] > 0.4  # CD4 at 6 months predicts CD4 at 12 months
        assert 0.75 <= metrics["interval_coverage"]["estimate"] <= 1.0
    oof = pd.read_parquet(results / "evaluate/oof_predictions.parquet")
    assert np.all(oof["lower"] <= oof["predicted"])
    assert np.all(oof["predicted"] <= oof["upper"])
    new = REPO / "resources/longitudinal_example/new_patients"
    out = tmp_path / "predictions.csv"
    plots = tmp_path / "plots"
    result = _predict(
        workdir,
        "--input",
        str(new),
        "--samples",
        str(new / "samples.csv"),
        "--output",
        str(out),
        "--plot",
        str(plots),
    )
    assert result.returncode == 0, result.stderr
    predictions = pd.read_csv(out)
    assert set(predictions["landmark"]) == {6.0}
    assert {"predicted", "lower", "upper"} <= set(predictions)
    assert len(list(plots.glob("*.png"))) == predictions["subject_id"].nunique()
    twin = read_json(results / "evaluate/twin.json")
    assert twin["outcome_scale"] == {
        "column": "predicted",
        "kind": "continuous",
        "lower_is_better": False,
        "label": "predicted value",
    }
    assert twin["landmark"] == 6.0
    for result in twin["learners"].values():
        assert result["agrees_with_trial"]
    what_if = tmp_path / "what_if.csv"
    result = _predict(
        workdir,
        "--input",
        str(new),
        "--samples",
        str(new / "samples.csv"),
        "--what-if",
        "--output",
        str(what_if),
    )
    assert result.returncode == 0, result.stderr
    arms = pd.read_csv(what_if)
    assert len(arms) == 2 * len(predictions)
    treated = arms[arms["arm"] == "ddI"]
    np.testing.assert_allclose(treated["benefit"], treated["effect"])  # higher is better
    assert {"predicted", "lower", "upper"} <= set(arms)


def test_landmark_what_if_agrees_with_the_trial_and_is_served(
    landmark_run: Path, tmp_path: Path
) -> None:
    """The AIDS trial (randomised ddI vs ddC): the digital twin's acceptance on real data."""
    results = landmark_run / "results"
    twin = read_json(results / "evaluate/twin.json")
    assert twin["treatment"]["arms"] == ["ddC", "ddI"]
    assert twin["landmark"] == 0.0
    trial = twin["trial_contrast"]["benefit"]
    for learner in ("t", "s"):
        result = twin["learners"][learner]
        average = result["metrics"]["average_benefit"]
        # The average predicted benefit and the trial's Kaplan-Meier contrast agree within
        # their confidence intervals.
        assert average["lower"] <= trial["upper"] and trial["lower"] <= average["upper"]
        assert result["agrees_with_trial"]
        assert average["refit_sd"] > 0  # the interval includes the refits' spread
        assert 0.0 <= result["metrics"]["c_for_benefit"]["estimate"] <= 1.0
    assert twin["overlap"]["auc"]["lower"] < 0.6  # below the warning's threshold
    assert not any("predictable" in w for w in twin["warnings"])
    assert twin["heterogeneity_statement"]
    report = (results / "report/report.html").read_text()
    assert "Digital twin" in report and "Assumptions." in report
    assert twin["heterogeneity_statement"].split(":")[0] in report
    new = REPO / "resources/longitudinal_example/new_patients"
    out = tmp_path / "what_if.csv"
    result = _predict(
        landmark_run,
        "--input",
        str(new),
        "--samples",
        str(new / "samples.csv"),
        "--what-if",
        "--output",
        str(out),
        "--plot",
        str(tmp_path / "plots"),
    )
    assert result.returncode == 0, result.stderr
    what_if = pd.read_csv(out, dtype={"subject_id": str})
    plain = pd.read_csv(new / "samples.csv", dtype={"subject_id": str})
    assert set(what_if["arm"]) == {"ddC", "ddI"}
    assert len(what_if) == 2 * what_if[["subject_id", "landmark"]].drop_duplicates().shape[0]
    treated = what_if[what_if["arm"] == "ddI"]
    reference = what_if[what_if["arm"] == "ddC"]
    np.testing.assert_allclose(
        treated["effect"].to_numpy(),
        treated["outcome"].to_numpy() - reference["outcome"].to_numpy(),
        atol=1e-9,
    )
    assert (treated["effect_lower"] <= treated["effect_upper"]).all()
    assert (reference["effect"] == 0).all()
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*_what_if.png"))
    assert len(plots) == plain["subject_id"].nunique()
