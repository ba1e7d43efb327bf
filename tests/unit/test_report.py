"""The HTML report renders what the run produced."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from omics_ml.report import render_report


def _metrics(value: float) -> dict:
    return {"balanced_accuracy": {"estimate": value, "lower": value - 0.1, "upper": value + 0.05}}


def test_render_report_contains_metrics_plots_and_commands(tmp_path: Path) -> None:
    png = tmp_path / "plot.png"
    plt.plot([0, 1], [0, 1])
    plt.savefig(png)
    plt.close()
    html = render_report(
        model_info={
            "model_name": "demo",
            "model_version": "3",
            "run_id": "abc",
            "model_uri": "models:/demo/3",
            "champion_uri": "models:/demo@champion",
            "promoted": False,
            "promotion_reason": "worse",
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
    assert "demo version 3" in html
    assert "MissingnessFilter → MedianScaling" in html
    assert "0.877" in html and "0.543" in html and "90% CI" in html
    assert "data:image/png;base64," in html
    assert "not moved" in html
    assert "<td>3</td>" in html  # features kept
