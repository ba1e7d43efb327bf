"""Task-aware evaluation of predictions tables: metrics with subject-bootstrap intervals, plots.

One entry point per use: :func:`point_metrics` for a fold, :func:`evaluate_predictions` for
pooled out-of-fold or holdout predictions (JSON + the task's plots, :data:`PLOTS`), and
:func:`aggregate_folds`. Metrics come from scikit-learn (classification, regression) and
scikit-survival (survival); for longitudinal models they are also reported per landmark.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from omics_ml.calibration import (
    brier_score,
    expected_calibration_error,
    plot_reliability,
    reliability_table,
)
from omics_ml.evaluate import (
    METRICS as CLASSIFICATION_METRICS,
)
from omics_ml.evaluate import (
    bootstrap_metrics,
    plot_confusion,
    plot_roc,
    probability_matrix,
)
from omics_ml.io import atomic_output, read_json, write_json
from omics_ml.regression import (
    REGRESSION_METRICS,
    bootstrap_regression_metrics,
    plot_predicted_vs_observed,
)
from omics_ml.survival import (
    SURVIVAL_METRICS,
    bootstrap_survival_metrics,
    calibration_table,
    plot_calibration,
    plot_km_by_risk_group,
)
from omics_ml.tasks import UNCALIBRATED_PREFIX, horizon_label

__all__ = [
    "PLOTS",
    "aggregate_folds",
    "evaluate_predictions",
    "higher_is_better",
    "metrics_with_intervals",
    "point_metrics",
]

logger = logging.getLogger(__name__)

#: Plots written for each task, by name.
PLOTS: dict[str, tuple[str, ...]] = {
    "classification": ("confusion", "roc", "reliability"),
    "survival": ("calibration", "km"),
    "regression": ("observed",),
}


def higher_is_better(metric: str) -> bool:
    """Direction of a metric name of any task (``auc_at_<h>`` and ``brier_at_<h>`` included)."""
    known = {**CLASSIFICATION_METRICS, **SURVIVAL_METRICS, **REGRESSION_METRICS}
    if metric in known:
        return known[metric]
    if metric.startswith("auc_at_"):
        return True
    if metric.startswith("brier_at_"):
        return False
    msg = f"unknown metric {metric!r}; choose one of {sorted(known)}."
    raise ValueError(msg)


def _survival_inputs(
    predictions: pd.DataFrame, head: Mapping[str, Any]
) -> dict[str, NDArray[np.float64]]:
    grid = np.asarray(head["grid"], dtype=np.float64)
    columns = [f"surv_{horizon_label(t)}" for t in grid]
    return {
        "time": predictions["time"].to_numpy(np.float64),
        "event": predictions["event"].to_numpy(np.int8),
        "risk_score": predictions["risk_score"].to_numpy(np.float64),
        "survival": predictions[columns].to_numpy(np.float64),
        "grid": grid,
        "horizons": np.asarray(head["horizons"], dtype=np.float64),
    }


def _reference(reference: pd.DataFrame | None, predictions: pd.DataFrame) -> dict[str, Any]:
    """Survival data that estimate the censoring distribution (IPCW metrics)."""
    source = predictions if reference is None else reference
    return {
        "train_time": source["time"].to_numpy(np.float64),
        "train_event": source["event"].to_numpy(np.int8),
    }


def _interval_columns(predictions: pd.DataFrame) -> tuple[Any, Any]:
    if "lower" in predictions and "upper" in predictions:
        return predictions["lower"].to_numpy(np.float64), predictions["upper"].to_numpy(np.float64)
    return None, None


def point_metrics(
    predictions: pd.DataFrame,
    *,
    head: Mapping[str, Any],
    reference: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Metrics of one predictions table without intervals (e.g. one outer fold).

    Parameters
    ----------
    predictions : pandas.DataFrame
        Output of :func:`omics_ml.train.predictions_table`.
    head : mapping
        The model's frozen task head (``TaskHead.to_json()``).
    reference : pandas.DataFrame, optional
        Survival: training rows (``time``, ``event``) for the censoring distribution; the
        predictions themselves when not given.
    """
    metrics = metrics_with_intervals(
        predictions, head=head, reference=reference, n_bootstrap=0, confidence_level=0.95, seed=0
    )
    return {name: value["estimate"] for name, value in metrics.items()}


def metrics_with_intervals(
    predictions: pd.DataFrame,
    *,
    head: Mapping[str, Any],
    reference: pd.DataFrame | None = None,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    """The task's metrics of a predictions table with subject-bootstrap percentile intervals.

    Parameters
    ----------
    predictions : pandas.DataFrame
        ``subject_id``, the task's prediction columns and outcome columns.
    head : mapping
        The model's frozen task head (``TaskHead.to_json()``).
    reference : pandas.DataFrame, optional
        Survival: rows whose ``time``/``event`` estimate the censoring distribution.
    n_bootstrap, confidence_level, seed
        Subject bootstrap (``n_bootstrap`` 0: no intervals, bounds NaN).

    Returns
    -------
    dict
        ``{metric: {"estimate", "lower", "upper"}}``.
    """
    groups = predictions["subject_id"].astype(str).to_numpy()
    common = {
        "groups": groups,
        "n_bootstrap": n_bootstrap,
        "confidence_level": confidence_level,
        "seed": seed,
    }
    task = head["task"]
    if task == "classification":
        classes = head["classes"]
        return bootstrap_metrics(
            predictions["label"].astype(str).to_numpy(),
            probability_matrix(predictions, classes),
            classes,
            **common,
        )
    if task == "survival":
        data = _survival_inputs(predictions, head)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bootstrap_survival_metrics(
                **data, **_reference(reference, predictions), **common
            )
    lower, upper = _interval_columns(predictions)
    return bootstrap_regression_metrics(
        predictions["target"].to_numpy(np.float64),
        predictions["predicted"].to_numpy(np.float64),
        lower,
        upper,
        **common,
    )


def _plot(
    predictions: pd.DataFrame,
    head: Mapping[str, Any],
    plots: Mapping[str, str | os.PathLike[str]],
    *,
    title: str,
) -> dict[str, Any]:
    """Write the task's plots; return what they show in numbers (for the JSON)."""
    task = head["task"]
    shown: dict[str, Any] = {}
    if task == "classification":
        classes = head["classes"]
        plot_confusion(
            predictions["label"],
            predictions["predicted_class"],
            classes,
            plots["confusion"],
            title=title,
        )
        proba = probability_matrix(predictions, classes)
        plot_roc(predictions["label"], proba, classes, plots["roc"], title=title)
        codes = pd.Categorical(predictions["label"].astype(str), categories=classes).codes
        table = reliability_table(codes, proba, classes)
        uncalibrated = None
        if _has_uncalibrated(predictions, classes):
            uncalibrated = reliability_table(codes, _uncalibrated(predictions, classes), classes)
        plot_reliability(
            table, plots["reliability"], title=f"{title}: reliability", uncalibrated=uncalibrated
        )
        shown["reliability"] = table.to_dict(orient="records")
    elif task == "survival":
        data = _survival_inputs(predictions, head)
        horizons = data["horizons"]
        at_horizons = 1.0 - predictions[[f"risk_at_{horizon_label(h)}" for h in horizons]]
        table = calibration_table(
            data["time"], data["event"], at_horizons.to_numpy(np.float64), horizons
        )
        plot_calibration(table, plots["calibration"], title=f"{title}: calibration")
        shown["calibration"] = table
        shown["km_by_risk_group"] = plot_km_by_risk_group(
            data["time"],
            data["event"],
            data["risk_score"],
            plots["km"],
            title=f"{title}: Kaplan-Meier by predicted risk",
        )
    else:
        lower, upper = _interval_columns(predictions)
        plot_predicted_vs_observed(
            predictions["target"].to_numpy(np.float64),
            predictions["predicted"].to_numpy(np.float64),
            lower,
            upper,
            plots["observed"],
            title=title,
        )
    return shown


def _has_uncalibrated(predictions: pd.DataFrame, classes: Sequence[str]) -> bool:
    return all(f"{UNCALIBRATED_PREFIX}{c}" in predictions for c in classes)


def _uncalibrated(predictions: pd.DataFrame, classes: Sequence[str]) -> NDArray[np.float64]:
    return predictions[[f"{UNCALIBRATED_PREFIX}{c}" for c in classes]].to_numpy(np.float64)


def _calibration_effect(predictions: pd.DataFrame, head: Mapping[str, Any]) -> dict[str, Any]:
    """Brier score and ECE before and after the frozen calibration map (classification)."""
    classes = head.get("classes", [])
    if head["task"] != "classification" or not _has_uncalibrated(predictions, classes):
        return {}
    codes = pd.Categorical(predictions["label"].astype(str), categories=classes).codes
    before, after = _uncalibrated(predictions, classes), probability_matrix(predictions, classes)
    return {
        "probability_calibration": {
            "method": (head.get("calibration") or {}).get("method"),
            "brier_score_uncalibrated": brier_score(codes, before),
            "brier_score_calibrated": brier_score(codes, after),
            "ece_uncalibrated": expected_calibration_error(codes, before),
            "ece_calibrated": expected_calibration_error(codes, after),
        }
    }


def _by_landmark(
    predictions: pd.DataFrame, head: Mapping[str, Any], reference: pd.DataFrame | None
) -> dict[str, dict[str, float]]:
    if "landmark" not in predictions:
        return {}
    out = {}
    for landmark, rows in predictions.groupby("landmark", sort=True):
        ref = None
        if reference is not None and "landmark" in reference:
            ref = reference[reference["landmark"] == landmark]
        try:
            out[f"{landmark:g}"] = {
                "n_rows": len(rows),
                **point_metrics(rows.reset_index(drop=True), head=head, reference=ref),
            }
        except ValueError as err:  # e.g. no event among this landmark's rows
            logger.warning("landmark %g: metrics not computed (%s)", landmark, err)
    return out


def _outcome_summary(predictions: pd.DataFrame, head: Mapping[str, Any]) -> dict[str, Any]:
    task = head["task"]
    if task == "classification":
        return {
            "classes": list(head["classes"]),
            "class_counts": predictions["label"]
            .astype(str)
            .value_counts()
            .reindex(head["classes"], fill_value=0)
            .astype(int)
            .to_dict(),
        }
    if task == "survival":
        return {
            "n_events": int(predictions["event"].sum()),
            "horizons": list(head["horizons"]),
            "median_follow_up": float(np.median(predictions["time"])),
        }
    return {
        "interval_level": head.get("interval_level"),
        "target_mean": float(predictions["target"].mean()),
        "target_sd": float(predictions["target"].std(ddof=1)),
    }


def evaluate_predictions(
    predictions: pd.DataFrame,
    *,
    head: Mapping[str, Any],
    reference: pd.DataFrame | None,
    metrics_out: str | os.PathLike[str],
    plots: Mapping[str, str | os.PathLike[str]],
    title: str,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics with intervals (JSON) and the task's plots of a predictions table.

    Parameters
    ----------
    predictions : pandas.DataFrame
        ``sample_id``, ``subject_id``, the task's prediction and outcome columns, and
        ``landmark`` for longitudinal models.
    head : mapping
        The model's frozen task head.
    reference : pandas.DataFrame or None
        Survival: rows whose ``time``/``event`` estimate the censoring distribution.
    metrics_out : path-like
        JSON output.
    plots : mapping
        Plot name (:data:`PLOTS` of the task) to PNG path.
    title : str
        Title of the evaluation (plots and JSON).
    n_bootstrap, confidence_level, seed
        Subject bootstrap of the intervals.
    extra : mapping, optional
        Added to the JSON.

    Returns
    -------
    dict
        What was written: ``metrics`` (``{name: {estimate, lower, upper}}``),
        ``by_landmark`` (point metrics per landmark), counts and the plots' numbers.
    """
    metrics = metrics_with_intervals(
        predictions,
        head=head,
        reference=reference,
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        seed=seed,
    )
    result: dict[str, Any] = {
        "title": title,
        "task": head["task"],
        "n_samples": len(predictions),
        "n_subjects": int(predictions["subject_id"].nunique()),
        **_outcome_summary(predictions, head),
        "confidence_level": confidence_level,
        "n_bootstrap": n_bootstrap,
        "metrics": metrics,
        "by_landmark": _by_landmark(predictions, head, reference),
        **_calibration_effect(predictions, head),
        **_plot(predictions, head, plots, title=title),
        **(extra or {}),
    }
    write_json(metrics_out, result)
    summary = ", ".join(
        f"{m} {v['estimate']:.3f} [{v['lower']:.3f}, {v['upper']:.3f}]" for m, v in metrics.items()
    )
    logger.info("%s: %s", title, summary)
    return result


def aggregate_folds(
    fold_predictions: Sequence[str | os.PathLike[str]],
    fold_metrics: Sequence[str | os.PathLike[str]],
    fold_states: Sequence[str | os.PathLike[str]],
    *,
    predictions_out: str | os.PathLike[str],
    metrics_out: str | os.PathLike[str],
    plots: Mapping[str, str | os.PathLike[str]],
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> dict[str, Any]:
    """Pool out-of-fold predictions of all outer folds and evaluate them.

    Writes the pooled predictions (Parquet) and ``cv_metrics.json`` holding the pooled metrics with
    bootstrap intervals, the per-fold metrics and their mean and standard deviation. The task
    head (classes, survival grid and horizons) is read from the first fold's model state; every
    fold shares it.
    """
    frames = [pd.read_parquet(p) for p in fold_predictions]
    predictions = pd.concat(frames, ignore_index=True)
    if predictions["sample_id"].duplicated().any():
        msg = "a sample is predicted by more than one outer fold; the folds overlap."
        raise ValueError(msg)
    per_fold = [read_json(p) for p in fold_metrics]
    head = read_json(fold_states[0])["head"]
    fold_values = pd.DataFrame([f["metrics"] for f in per_fold])
    extra = {
        "per_fold": per_fold,
        "fold_mean": fold_values.mean().to_dict(),
        "fold_sd": fold_values.std(ddof=1).to_dict(),
    }
    predictions = predictions.sort_values("sample_id", ignore_index=True)
    with atomic_output(predictions_out) as tmp:
        predictions.to_parquet(tmp, index=False)
    return evaluate_predictions(
        predictions,
        head=head,
        reference=None,
        metrics_out=metrics_out,
        plots=plots,
        title="Out-of-fold (cross-validation)",
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        seed=seed,
        extra=extra,
    )
