"""Classification metrics with subject-bootstrap confidence intervals, and their plots.

:mod:`omics_ml.assess` applies them (and the other tasks' metrics) to predictions tables.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    roc_auc_score,
    roc_curve,
)

from omics_ml.calibration import brier_score, expected_calibration_error
from omics_ml.io import save_figure

__all__ = [
    "METRICS",
    "bootstrap_metrics",
    "classification_metrics",
    "plot_confusion",
    "plot_roc",
    "probability_matrix",
    "subject_bootstrap",
    "subject_resample",
]

logger = logging.getLogger(__name__)

#: Metric names, the same in every run; the value says whether higher is better.
METRICS: dict[str, bool] = {
    "balanced_accuracy": True,
    "macro_f1": True,
    "roc_auc_ovr": True,
    "log_loss": False,
    "brier_score": False,
    "ece": False,
}


def probability_matrix(predictions: pd.DataFrame, classes: Sequence[str]) -> NDArray[np.float64]:
    """The ``prob_<class>`` columns of a predictions table, in ``classes`` order."""
    return predictions[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)


def classification_metrics(
    y_true: Sequence[str], proba: NDArray[np.float64], classes: Sequence[str]
) -> dict[str, float]:
    """Balanced accuracy, macro F1, one-vs-rest ROC AUC (macro), log loss (scikit-learn), Brier
    score and top-label expected calibration error (10 bins; :mod:`omics_ml.calibration`).

    ROC AUC is NaN when ``y_true`` holds fewer than two classes.
    """
    classes = list(classes)
    y_idx = pd.Categorical(np.asarray(y_true, dtype=str), categories=classes).codes
    if np.any(y_idx < 0):
        msg = f"labels {sorted(set(np.asarray(y_true, dtype=str)) - set(classes))} are not among the model's classes {classes}."
        raise ValueError(msg)
    pred = proba.argmax(axis=1)
    present = np.unique(y_idx)
    out = {
        "balanced_accuracy": float(balanced_accuracy_score(y_idx, pred)),
        "macro_f1": float(f1_score(y_idx, pred, average="macro", labels=present)),
        "log_loss": float(log_loss(y_idx, proba, labels=np.arange(len(classes)))),
        "brier_score": brier_score(y_idx, proba),
        "ece": expected_calibration_error(y_idx, proba),
    }
    if present.size < 2:
        out["roc_auc_ovr"] = float("nan")
    elif len(classes) == 2:
        out["roc_auc_ovr"] = float(roc_auc_score(y_idx, proba[:, 1]))
    elif present.size == len(classes):
        out["roc_auc_ovr"] = float(roc_auc_score(y_idx, proba, multi_class="ovr", average="macro"))
    else:  # some class absent from this resample: average the one-vs-rest AUCs of the present ones
        out["roc_auc_ovr"] = float(
            np.mean([roc_auc_score(y_idx == k, proba[:, k]) for k in present])
        )
    return {name: out[name] for name in METRICS}


def subject_resample(groups: NDArray[np.object_], rng: np.random.Generator) -> NDArray[np.int64]:
    """Indices of one bootstrap resample that draws whole subjects with replacement."""
    order = np.argsort(groups, kind="stable")
    _, starts, counts = np.unique(groups[order], return_index=True, return_counts=True)
    drawn = rng.integers(0, starts.size, size=starts.size)
    n = counts[drawn]
    offsets = np.repeat(np.cumsum(n) - n, n)
    within = np.arange(n.sum()) - offsets
    return order[np.repeat(starts[drawn], n) + within]


def bootstrap_metrics(
    y_true: Sequence[str],
    proba: NDArray[np.float64],
    classes: Sequence[str],
    *,
    groups: Sequence[str],
    n_bootstrap: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Metrics with percentile confidence intervals from resampling subjects.

    Returns
    -------
    dict
        ``{metric: {"estimate", "lower", "upper"}}``; bounds are NaN when ``n_bootstrap`` is 0.
    """
    y = np.asarray(y_true, dtype=str)
    return subject_bootstrap(
        lambda idx: classification_metrics(y[idx], proba[idx], classes),
        classification_metrics(y, proba, classes),
        groups,
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        seed=seed,
    )


def subject_bootstrap(
    metrics_of: Callable[[NDArray[np.int64]], Mapping[str, float]],
    point: Mapping[str, float],
    groups: Sequence[str] | NDArray[Any],
    *,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Percentile intervals of metrics from resampling whole subjects, for every task.

    Parameters
    ----------
    metrics_of : callable
        Metrics of the rows at the given indices (a resample).
    point : mapping
        The metrics of all rows (the estimates), in output order.
    groups : sequence
        Subject of each row; a resample draws whole subjects with replacement
        (:func:`subject_resample`).
    n_bootstrap, confidence_level, seed
        Number of resamples, coverage of the interval, seed of the generator.

    Returns
    -------
    dict
        ``{metric: {"estimate", "lower", "upper"}}``. A resample in which a metric is undefined
        (NaN) does not count towards its interval; bounds are NaN when ``n_bootstrap`` is 0 or
        no resample defines the metric. Infinite draws (e.g. an unbounded interval width) keep
        an infinite bound.
    """
    groups_arr = np.asarray(groups, dtype=object).reshape(-1)
    names = list(point)
    rng = np.random.default_rng(seed)
    draws = np.full((n_bootstrap, len(names)), np.nan)
    with warnings.catch_warnings():  # a resample may lack a class or an event: NaN records it
        warnings.simplefilter("ignore")
        for b in range(n_bootstrap):
            values = metrics_of(subject_resample(groups_arr, rng))
            draws[b] = [values[m] for m in names]
    alpha = (1.0 - confidence_level) / 2.0
    result = {}
    for j, name in enumerate(names):
        column = draws[:, j][~np.isnan(draws[:, j])]
        lower = upper = np.nan
        if column.size:
            # Linear interpolation turns inf - inf into NaN; inverted_cdf keeps an infinite bound.
            method = "linear" if np.all(np.isfinite(column)) else "inverted_cdf"
            lower, upper = np.quantile(column, [alpha, 1.0 - alpha], method=method)
        result[name] = {"estimate": point[name], "lower": float(lower), "upper": float(upper)}
    return result


def plot_confusion(
    y_true: Sequence[str],
    predicted: Sequence[str],
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str,
) -> None:
    """Confusion-matrix PNG (counts, true classes in rows)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=110)
    ConfusionMatrixDisplay.from_predictions(
        np.asarray(y_true, dtype=str),
        np.asarray(predicted, dtype=str),
        labels=list(classes),
        ax=ax,
        colorbar=False,
        cmap="Blues",
    )
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_roc(
    y_true: Sequence[str],
    proba: NDArray[np.float64],
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str,
) -> None:
    """One-vs-rest ROC curves PNG, one curve per class."""
    y = np.asarray(y_true, dtype=str)
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=110)
    for k, label in enumerate(classes):
        positive = y == label
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, proba[:, k])
        auc = roc_auc_score(positive, proba[:, k])
        ax.plot(fpr, tpr, label=f"{label} vs rest (AUC {auc:.2f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
