"""Regression metrics, split-conformal prediction intervals, subject-bootstrap intervals, plot.

Split conformal: :func:`conformal_quantile` turns the absolute residuals of a calibration set
(subjects not used to fit the model, and never the test subjects) into a half-width ``q`` such
that ``predicted -/+ q`` (:func:`prediction_interval`) covers a new exchangeable observation with
probability at least ``1 - alpha``. :func:`regression_metrics` and
:func:`bootstrap_regression_metrics` score predictions and intervals, the latter with the
whole-subject bootstrap and the ``{metric: {"estimate", "lower", "upper"}}`` format of
:func:`omics_ml.evaluate.bootstrap_metrics`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from omics_ml.evaluate import subject_bootstrap
from omics_ml.io import save_figure

__all__ = [
    "REGRESSION_METRICS",
    "bootstrap_regression_metrics",
    "conformal_quantile",
    "plot_predicted_vs_observed",
    "prediction_interval",
    "regression_metrics",
]

#: Metric names, the same in every run; the value says whether higher is better.
REGRESSION_METRICS: dict[str, bool] = {
    "rmse": False,
    "mae": False,
    "r2": True,
    "interval_coverage": True,
    "mean_interval_width": False,
}

# Slack for floating-point error in (n + 1) * (1 - alpha) before taking the ceiling.
_RANK_TOLERANCE = 1e-9


def _vector(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """``values`` as a 1-D float array, or ValueError naming ``name``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        msg = f"{name} must be one-dimensional, got shape {arr.shape}."
        raise ValueError(msg)
    return arr


def conformal_quantile(residuals: ArrayLike, *, alpha: float) -> float:
    """Split-conformal quantile of the absolute calibration residuals.

    Parameters
    ----------
    residuals
        Residuals ``y - yhat`` (or their absolute values) of the ``n`` calibration samples.
    alpha
        Miscoverage level in ``(0, 1)``; intervals cover with probability at least ``1 - alpha``.

    Returns
    -------
    float
        The ``ceil((n + 1) * (1 - alpha))``-th smallest absolute residual, or ``inf`` when that
        rank exceeds ``n`` (too few calibration samples for the requested level).

    Raises
    ------
    ValueError
        If ``residuals`` is empty or holds NaN or infinite values, or ``alpha`` is not in
        ``(0, 1)``.
    """
    if not 0.0 < alpha < 1.0:
        msg = f"alpha must lie strictly between 0 and 1, got {alpha!r}."
        raise ValueError(msg)
    scores = np.abs(np.asarray(residuals, dtype=np.float64).reshape(-1))
    n = scores.size
    if n == 0:
        msg = "conformal_quantile needs at least one calibration residual, got none."
        raise ValueError(msg)
    if not np.all(np.isfinite(scores)):
        msg = f"calibration residuals hold {int(np.sum(~np.isfinite(scores)))} NaN or infinite value(s)."
        raise ValueError(msg)
    rank = math.ceil((n + 1) * (1.0 - alpha) - _RANK_TOLERANCE)
    if rank > n:
        return math.inf
    return float(np.partition(scores, rank - 1)[rank - 1])


def prediction_interval(
    predicted: ArrayLike, quantile: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Symmetric interval ``(predicted - quantile, predicted + quantile)``.

    Parameters
    ----------
    predicted
        Point predictions.
    quantile
        Half-width, e.g. from :func:`conformal_quantile`; may be ``inf``.

    Returns
    -------
    tuple of numpy.ndarray
        Lower and upper bounds, the shape of ``predicted``.

    Raises
    ------
    ValueError
        If ``quantile`` is NaN or negative.
    """
    if not quantile >= 0.0:  # also catches NaN
        msg = f"quantile must be a non-negative number, got {quantile!r}."
        raise ValueError(msg)
    pred = np.asarray(predicted, dtype=np.float64)
    return pred - quantile, pred + quantile


def _checked(
    y_true: ArrayLike,
    predicted: ArrayLike,
    lower: ArrayLike | None,
    upper: ArrayLike | None,
) -> tuple[
    NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None, NDArray[np.float64] | None
]:
    """Validated float arrays of the inputs of :func:`regression_metrics`."""
    y = _vector(y_true, "y_true")
    pred = _vector(predicted, "predicted")
    if y.size != pred.size:
        msg = f"y_true has {y.size} values but predicted has {pred.size}."
        raise ValueError(msg)
    if y.size == 0:
        msg = "regression metrics need at least one sample, got none."
        raise ValueError(msg)
    for name, arr in (("y_true", y), ("predicted", pred)):
        if not np.all(np.isfinite(arr)):
            msg = f"{name} holds {int(np.sum(~np.isfinite(arr)))} NaN or infinite value(s)."
            raise ValueError(msg)
    if (lower is None) != (upper is None):
        msg = "give both lower and upper interval bounds, or neither."
        raise ValueError(msg)
    if lower is None or upper is None:
        return y, pred, None, None
    lo = _vector(lower, "lower")
    hi = _vector(upper, "upper")
    for name, arr in (("lower", lo), ("upper", hi)):
        if arr.size != y.size:
            msg = f"y_true has {y.size} values but {name} has {arr.size}."
            raise ValueError(msg)
        if np.any(np.isnan(arr)):
            msg = f"{name} holds {int(np.sum(np.isnan(arr)))} NaN value(s)."
            raise ValueError(msg)
    return y, pred, lo, hi


def _metrics(
    y: NDArray[np.float64],
    pred: NDArray[np.float64],
    lo: NDArray[np.float64] | None,
    hi: NDArray[np.float64] | None,
) -> dict[str, float]:
    """:func:`regression_metrics` without the input checks."""
    out = {
        "rmse": float(root_mean_squared_error(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)) if y.size >= 2 else math.nan,
        "interval_coverage": math.nan,
        "mean_interval_width": math.nan,
    }
    if lo is not None and hi is not None:
        out["interval_coverage"] = float(np.mean((lo <= y) & (y <= hi)))
        out["mean_interval_width"] = float(np.mean(hi - lo))
    return out


def regression_metrics(
    y_true: ArrayLike,
    predicted: ArrayLike,
    lower: ArrayLike | None = None,
    upper: ArrayLike | None = None,
) -> dict[str, float]:
    """RMSE, MAE, R² (scikit-learn) and the coverage and mean width of prediction intervals.

    Parameters
    ----------
    y_true, predicted
        Observed and predicted values, one per sample.
    lower, upper
        Interval bounds per sample (may be infinite), both or neither.

    Returns
    -------
    dict
        ``{metric: value}`` in :data:`REGRESSION_METRICS` order. R² is NaN with fewer than two
        samples; ``interval_coverage`` (fraction with ``lower <= y <= upper``) and
        ``mean_interval_width`` are NaN without an interval.

    Raises
    ------
    ValueError
        On lengths that differ, no samples, NaN or infinite ``y_true``/``predicted``, NaN
        bounds, or only one of ``lower``/``upper``.
    """
    return _metrics(*_checked(y_true, predicted, lower, upper))


def bootstrap_regression_metrics(
    y_true: ArrayLike,
    predicted: ArrayLike,
    lower: ArrayLike | None,
    upper: ArrayLike | None,
    *,
    groups: Sequence[str] | ArrayLike,
    n_bootstrap: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Regression metrics with percentile confidence intervals from resampling subjects.

    Parameters
    ----------
    y_true, predicted, lower, upper
        As in :func:`regression_metrics`; ``lower`` and ``upper`` may both be ``None``.
    groups
        Subject of each sample; a resample draws whole subjects with replacement
        (:func:`omics_ml.evaluate.subject_resample`).
    n_bootstrap
        Number of resamples.
    confidence_level
        Coverage of the percentile interval.
    seed
        Seed of the resampling generator.

    Returns
    -------
    dict
        ``{metric: {"estimate", "lower", "upper"}}`` in :data:`REGRESSION_METRICS` order; bounds
        are NaN when ``n_bootstrap`` is 0 or the metric is undefined in every resample.
    """
    y, pred, lo, hi = _checked(y_true, predicted, lower, upper)
    groups_arr = np.asarray(groups, dtype=object).reshape(-1)
    if groups_arr.size != y.size:
        msg = f"y_true has {y.size} values but groups has {groups_arr.size}."
        raise ValueError(msg)
    return subject_bootstrap(
        lambda idx: _metrics(
            y[idx], pred[idx], None if lo is None else lo[idx], None if hi is None else hi[idx]
        ),
        _metrics(y, pred, lo, hi),
        groups_arr,
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        seed=seed,
    )


def plot_predicted_vs_observed(
    y_true: ArrayLike,
    predicted: ArrayLike,
    lower: ArrayLike | None,
    upper: ArrayLike | None,
    path: str | os.PathLike[str],
    *,
    title: str,
    label: str = "value",
) -> None:
    """Predicted-versus-observed PNG with prediction-interval bars and the identity line.

    Parameters
    ----------
    y_true, predicted, lower, upper
        As in :func:`regression_metrics`; without bounds no bars are drawn. Bars with an
        infinite bound are left out.
    path
        Where the PNG is written.
    title
        Plot title; RMSE and interval coverage are added below it.
    label
        Name of the target, used in the axis labels.
    """
    y, pred, lo, hi = _checked(y_true, predicted, lower, upper)
    metrics = _metrics(y, pred, lo, hi)
    fig, ax = plt.subplots(figsize=(4.8, 4.6), dpi=110)
    if lo is not None and hi is not None:
        finite = np.isfinite(lo) & np.isfinite(hi)
        ax.vlines(y[finite], lo[finite], hi[finite], colors="tab:blue", linewidth=0.6, alpha=0.3)
    ax.scatter(y, pred, s=12, color="tab:blue", alpha=0.8, edgecolors="none")
    span = np.concatenate([y, pred])
    low, high = float(span.min()), float(span.max())
    pad = 0.05 * (high - low) if high > low else 0.5
    ax.plot(
        [low - pad, high + pad],
        [low - pad, high + pad],
        linestyle="--",
        color="grey",
        linewidth=0.8,
    )
    summary = f"RMSE {metrics['rmse']:.3g}"
    if not math.isnan(metrics["interval_coverage"]):
        summary += f", interval coverage {metrics['interval_coverage']:.1%}"
    ax.set(
        xlabel=f"Observed {label}",
        ylabel=f"Predicted {label}",
        title=f"{title}\n{summary}",
    )
    ax.title.set_fontsize(10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
