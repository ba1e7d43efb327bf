"""The HTML report renders what the run produced."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from omics_ml.report import render_report


def _metrics(value: float) -> dict:
    return {"balanced_accuracy": {"estimate": value, "lower": value - 0.1, "upper": value + 0.05}}


def _png(tmp_path: Path) -> Path:
    png = tmp_path / "plot.png"
    plt.plot([0, 1], [0, 1])
    plt.savefig(png)
    plt.close()
    return png


def _run(png: Path) -> dict:
    """The outputs of a small classification run."""
    return dict(
        run_info={
            "model_name": "demo",
            "run_id": "abc12345ffff",
            "final_run_id": "def",
            "logged_model_uri": "models:/m-123",
            "champion_uri": "models:/demo@champion",
            "promotion_rule": "if_better",
            "promotion_metric": "balanced_accuracy",
            "promotion_margin": 0.01,
            "holdout_estimates": {"balanced_accuracy": 0.75},
            "tracking_uri": "sqlite:///x.db",
            "ui_command": "mlflow ui --backend-store-uri sqlite:///x.db",
            "ui_runs_page": "http://127.0.0.1:5000/#/experiments/1/runs",
        },
        qc={
            "n_samples": 10,
            "n_subjects": 9,
            "class_counts": {"a": 5, "b": 5},
            "modalities": {
                "mrna": {
                    "n_samples": 10,
                    "n_sheet_samples_missing": 0,
                    "n_features": 4,
                    "missing_value_fraction": 0.0,
                }
            },
        },
        cv={
            "confidence_level": 0.9,
            "n_samples": 8,
            "n_bootstrap": 50,
            "metrics": _metrics(0.8766),
            "per_fold": [
                {
                    "fold": 0,
                    "n_train_subjects": 4,
                    "n_test_subjects": 4,
                    "n_rounds": 7,
                    "metrics": {"balanced_accuracy": 0.75},
                }
            ],
        },
        holdout={"n_samples": 2, "metrics": _metrics(0.5432)},
        state={
            "classes": ["a", "b"],
            "modalities": [
                {
                    "name": "mrna",
                    "normaliser": {
                        "feature_names_out": ["g1", "g3", "g4"],
                        "steps": [{"step": "MissingnessFilter"}, {"step": "MedianScaling"}],
                    },
                }
            ],
        },
        plots=[png],
    )


def test_render_report_contains_metrics_plots_and_commands(tmp_path: Path) -> None:
    html = render_report(**_run(_png(tmp_path)))
    assert "demo, run abc12345" in html
    assert "holdout balanced_accuracy (margin 0.01; this run: 0.7500)" in html
    assert "MissingnessFilter → MedianScaling" in html
    assert "0.877" in html and "0.543" in html and "90% CI" in html
    assert "data:image/png;base64," in html
    assert "if_better" in html and "models:/m-123" in html
    assert "<td>3</td>" in html  # features kept


def _interval(value: float) -> dict:
    return {"estimate": value, "lower": value - 0.05, "upper": value + 0.05}


def _comparison(control: float) -> dict:
    return {
        "primary_metric": "balanced_accuracy",
        "chance": 0.5,
        "models": {
            "pipeline": {"balanced_accuracy": _interval(0.9)},
            "linear baseline": {"balanced_accuracy": _interval(0.85)},
            "permuted outcome": {"balanced_accuracy": _interval(control)},
        },
        "baseline": {"model": "L2-penalised logistic regression"},
        "pipeline_minus_baseline": _interval(0.05),
        "negative_control": {
            **_interval(control),
            "chance": 0.5,
            "contains_chance": abs(control - 0.5) <= 0.05,
        },
        "modality_value": [
            {
                "setting": "all modalities",
                "kind": "all",
                "modality": None,
                "metrics": {"balanced_accuracy": _interval(0.9)},
            },
            {
                "setting": "mrna alone",
                "kind": "only",
                "modality": "mrna",
                "metrics": {"balanced_accuracy": _interval(0.8123)},
            },
        ],
    }


def test_review_sections_and_leakage_warning(tmp_path: Path) -> None:
    png = _png(tmp_path)
    run = _run(png)
    run["cv"]["per_fold"][0]["tuned_params"] = {"learning_rate": 0.0712, "max_depth": 3}
    run["cv"]["per_fold"][0]["selection"] = {"mrna": {"n_in": 4, "n_kept": 2}}
    run["cv"]["title"] = "Out-of-fold"
    run["cv"]["probability_calibration"] = {
        "method": "sigmoid",
        "brier_score_uncalibrated": 0.2,
        "brier_score_calibrated": 0.1,
        "ece_uncalibrated": 0.3,
        "ece_calibrated": 0.05,
    }
    subgroups = {
        "primary_metric": "balanced_accuracy",
        "cv": {
            "cohort": {"balanced_accuracy": _interval(0.9)},
            "subgroups": {
                "sex": {
                    "female": {
                        "n_subjects": 12,
                        "evaluable": True,
                        "reason": None,
                        "metrics": {"balanced_accuracy": _interval(0.6)},
                        "flagged": ["balanced_accuracy"],
                    },
                    "male": {
                        "n_subjects": 3,
                        "evaluable": False,
                        "reason": "3 subjects",
                        "metrics": {},
                        "flagged": [],
                    },
                }
            },
            "flags": [
                {
                    "subgroup": "sex",
                    "level": "female",
                    "metric": "balanced_accuracy",
                    "estimate": 0.6,
                    "lower": 0.55,
                    "upper": 0.65,
                    "cohort_estimate": 0.9,
                }
            ],
        },
    }
    shap = {
        "margin": "log-odds of the explained class",
        "n_rows": 8,
        "modalities": [{"modality": "mrna", "mean_abs_shap": 0.4, "n_features": 3}],
        "features": [{"feature": "mrna:ESR1", "mean_abs_shap": 0.3}],
    }
    html = render_report(
        **run,
        comparison=_comparison(0.5),
        subgroups=subgroups,
        shap=shap,
        review_plots={"comparison": png, "shap_summary": png},
    )
    for text in (
        "Nested tuning",
        "0.071",
        "2 of 4",
        "Probability calibration",
        "L2-penalised logistic regression",
        "scores at chance",
        "0.812",
        "worse than the whole cohort",
        "not evaluated (3 subjects)",
        "mrna:ESR1",
    ):
        assert text in html, text
    assert "Look for leakage" not in html
    leaky = render_report(**_run(png), comparison=_comparison(0.8))
    assert "Look for leakage" in leaky
