"""Survival predictions from XGBoost models, their metrics with subject-bootstrap intervals, and plots.

XGBoost's ``survival:cox`` objective outputs a log partial hazard (risk score); its survival
function needs a baseline cumulative hazard, estimated here by Breslow's method
(:class:`BreslowBaseline`). The ``survival:aft`` objective outputs the location ``mu`` of
``log T``; :func:`aft_survival` turns it into a survival function. Metrics come from
scikit-survival, except the two concordance indices, which :mod:`omics_ml.concordance` computes
equally in O(n log^2 n) instead of O(n^2) (biobank-sized bootstraps); their bootstrap reuses :func:`omics_ml.evaluate.subject_bootstrap` and returns the
same ``{metric: {"estimate", "lower", "upper"}}`` format as
:func:`omics_ml.evaluate.bootstrap_metrics`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from scipy.stats import norm
from sksurv.compare import compare_survival
from sksurv.metrics import brier_score, cumulative_dynamic_auc, integrated_brier_score
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from omics_ml.concordance import concordance_index, concordance_index_ipcw
from omics_ml.evaluate import subject_bootstrap
from omics_ml.io import save_figure

__all__ = [
    "AFT_DISTRIBUTIONS",
    "SURVIVAL_METRICS",
    "BreslowBaseline",
    "aft_survival",
    "bootstrap_survival_metrics",
    "calibration_table",
    "default_horizons",
    "horizon_metric_name",
    "plot_calibration",
    "plot_km_by_risk_group",
    "plot_survival_curves",
    "survival_at",
    "survival_metrics",
    "time_grid",
]

logger = logging.getLogger(__name__)

#: Distributions of ``log T`` that XGBoost's ``survival:aft`` objective supports.
AFT_DISTRIBUTIONS: tuple[str, ...] = ("normal", "logistic", "extreme")

#: Summary metric names, the same in every run; the value says whether higher is better.
#: Horizon-specific metrics (:func:`horizon_metric_name`) follow them in metric dictionaries.
SURVIVAL_METRICS: dict[str, bool] = {
    "c_index_harrell": True,
    "c_index_uno": True,
    "integrated_brier_score": False,
    "mean_auc": True,
}


def _survival_arrays(
    time: ArrayLike, event: ArrayLike, *, name: str = "time"
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """``time`` as float64 and ``event`` as bool, checked for equal length and missing values."""
    t = np.asarray(time, dtype=np.float64).ravel()
    e_raw = np.asarray(event).ravel()
    if t.size != e_raw.size:
        msg = f"{name} and event have different lengths ({t.size} and {e_raw.size})."
        raise ValueError(msg)
    if np.isnan(t).any():
        msg = f"{name} contains NaN."
        raise ValueError(msg)
    if e_raw.dtype != np.bool_:
        e_float = e_raw.astype(np.float64)
        if np.isnan(e_float).any() or not np.isin(e_float, (0.0, 1.0)).all():
            msg = "event must hold only 0/1 or False/True (NaN is not allowed)."
            raise ValueError(msg)
        e_raw = e_float == 1.0
    return t, e_raw.astype(bool)


def _event_times(time: ArrayLike, event: ArrayLike) -> NDArray[np.float64]:
    """Observed times of the subjects with an event; ValueError if there are none."""
    t, e = _survival_arrays(time, event)
    if not e.any():
        msg = "there are no events: survival time points need at least one observed event."
        raise ValueError(msg)
    return t[e]


def _step_index(knots: NDArray[np.float64], times: NDArray[np.float64]) -> NDArray[np.int64]:
    """Index of the largest knot <= each time (right-continuous step rule); -1 before the first."""
    return np.searchsorted(knots, times, side="right") - 1


@dataclass(frozen=True, eq=False)
class BreslowBaseline:
    """Breslow estimate of the baseline cumulative hazard of a Cox model.

    The model's linear predictor (log partial hazard, "risk score" ``eta``) is the output margin
    of an XGBoost ``survival:cox`` booster. The baseline is stored relative to
    ``exp(eta - offset)`` so that large risk scores do not overflow.

    Attributes
    ----------
    times : ndarray of float64
        Distinct event times, ascending.
    cumulative_hazard : ndarray of float64
        Baseline cumulative hazard ``H0`` at ``times`` (relative to ``exp(eta - offset)``).
    offset : float
        Centring constant of the risk score (the largest training risk score).
    """

    times: NDArray[np.float64]
    cumulative_hazard: NDArray[np.float64]
    offset: float

    def __post_init__(self) -> None:
        times = np.asarray(self.times, dtype=np.float64).ravel()
        hazard = np.asarray(self.cumulative_hazard, dtype=np.float64).ravel()
        if times.size != hazard.size or times.size == 0:
            msg = f"times and cumulative_hazard must be non-empty and of equal length ({times.size} and {hazard.size})."
            raise ValueError(msg)
        if not (np.isfinite(times).all() and np.all(np.diff(times) > 0)):
            msg = "times must be finite and strictly increasing."
            raise ValueError(msg)
        if not (np.all(hazard >= 0) and np.all(np.diff(hazard) >= 0)):
            msg = "cumulative_hazard must be non-negative and non-decreasing."
            raise ValueError(msg)
        if not np.isfinite(self.offset):
            msg = f"offset must be finite, got {self.offset}."
            raise ValueError(msg)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "cumulative_hazard", hazard)
        object.__setattr__(self, "offset", float(self.offset))

    @classmethod
    def fit(cls, risk_score: ArrayLike, time: ArrayLike, event: ArrayLike) -> BreslowBaseline:
        """Estimate the baseline cumulative hazard from training risk scores and outcomes.

        ``H0(t_j) = sum_{k: t_k <= t_j} d_k / sum_{i: T_i >= t_k} exp(eta_i - offset)`` over the
        distinct event times ``t_k`` with ``d_k`` events each (Breslow's handling of ties).

        Parameters
        ----------
        risk_score : array-like of shape (n,)
            Log partial hazard ``eta`` (XGBoost ``output_margin=True``); higher means higher risk.
        time : array-like of shape (n,)
            Event or censoring times.
        event : array-like of shape (n,)
            True (1) where the event was observed, False (0) where censored.

        Returns
        -------
        BreslowBaseline

        Raises
        ------
        ValueError
            If the arrays differ in length, contain NaN (or an infinite risk score), or hold no
            event.
        """
        t, e = _survival_arrays(time, event)
        eta = np.asarray(risk_score, dtype=np.float64).ravel()
        if eta.size != t.size:
            msg = f"risk_score and time have different lengths ({eta.size} and {t.size})."
            raise ValueError(msg)
        if not np.isfinite(eta).all():
            msg = "risk_score contains NaN or infinite values."
            raise ValueError(msg)
        if not e.any():
            msg = "there are no events: the Breslow baseline hazard needs at least one event."
            raise ValueError(msg)
        offset = float(eta.max())
        order = np.argsort(t, kind="stable")
        t_sorted = t[order]
        weight = np.exp(eta[order] - offset)
        unique_times, starts = np.unique(t_sorted, return_index=True)
        # risk set of a distinct time: every subject whose time is >= it (suffix sums)
        at_risk = np.cumsum(weight[::-1])[::-1][starts]
        n_events = np.add.reduceat(e[order].astype(np.float64), starts)
        has_event = n_events > 0
        hazard = np.cumsum(n_events[has_event] / at_risk[has_event])
        return cls(times=unique_times[has_event], cumulative_hazard=hazard, offset=offset)

    def cumulative_hazard_at(self, times: ArrayLike) -> NDArray[np.float64]:
        """Baseline cumulative hazard at ``times`` (right-continuous step function, 0 before the first event time)."""
        t = np.asarray(times, dtype=np.float64)
        idx = _step_index(self.times, t)
        return np.where(idx >= 0, self.cumulative_hazard[np.maximum(idx, 0)], 0.0)

    def survival(self, risk_score: ArrayLike, times: ArrayLike) -> NDArray[np.float64]:
        """Survival probabilities ``S(t | x) = exp(-H0(t) exp(eta - offset))``.

        Parameters
        ----------
        risk_score : array-like of shape (n,)
            Log partial hazards ``eta`` of the subjects.
        times : array-like of shape (m,)
            Time points.

        Returns
        -------
        ndarray of shape (n, m)
        """
        eta = np.asarray(risk_score, dtype=np.float64).ravel()
        hazard = self.cumulative_hazard_at(np.asarray(times, dtype=np.float64).ravel())
        return np.exp(-np.outer(np.exp(eta - self.offset), hazard))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (lists and floats)."""
        return {
            "times": self.times.tolist(),
            "cumulative_hazard": self.cumulative_hazard.tolist(),
            "offset": self.offset,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BreslowBaseline:
        """Rebuild from :meth:`to_json` output."""
        missing = {"times", "cumulative_hazard", "offset"} - set(data)
        if missing:
            msg = f"Breslow baseline JSON lacks {sorted(missing)}."
            raise ValueError(msg)
        return cls(
            times=np.asarray(data["times"], dtype=np.float64),
            cumulative_hazard=np.asarray(data["cumulative_hazard"], dtype=np.float64),
            offset=float(data["offset"]),
        )


def aft_survival(
    mu: ArrayLike, times: ArrayLike, *, distribution: str, scale: float
) -> NDArray[np.float64]:
    """Survival function of an XGBoost ``survival:aft`` model.

    The model is ``log T = mu + scale * Z``; ``mu`` is the booster's output margin
    (``booster.predict(..., output_margin=True)``; ``predict`` without it returns ``exp(mu)``).

    Parameters
    ----------
    mu : array-like of shape (n,)
        Output margins (log predicted times).
    times : array-like of shape (m,)
        Time points; ``S = 1`` at times <= 0.
    distribution : {"normal", "logistic", "extreme"}
        ``aft_loss_distribution`` of the model.
    scale : float
        ``aft_loss_distribution_scale`` of the model (> 0).

    Returns
    -------
    ndarray of shape (n, m)
        ``S(t) = P(Z > (log t - mu) / scale)``.
    """
    if distribution not in AFT_DISTRIBUTIONS:
        msg = f"distribution must be one of {AFT_DISTRIBUTIONS}, got {distribution!r}."
        raise ValueError(msg)
    if not (np.isfinite(scale) and scale > 0):
        msg = f"scale must be positive and finite, got {scale}."
        raise ValueError(msg)
    m = np.asarray(mu, dtype=np.float64).ravel()
    t = np.asarray(times, dtype=np.float64).ravel()
    positive = t > 0
    log_t = np.log(np.where(positive, t, 1.0))
    z = (log_t[None, :] - m[:, None]) / scale
    if distribution == "normal":
        surv = norm.sf(z)
    elif distribution == "logistic":
        surv = expit(-z)
    else:
        surv = np.exp(-np.exp(z))
    return np.where(positive[None, :], surv, 1.0)


def time_grid(time: ArrayLike, event: ArrayLike, n_points: int = 50) -> NDArray[np.float64]:
    """Evenly spaced time points from 0 to the 90th percentile of the event times.

    Raises
    ------
    ValueError
        If there is no event or ``n_points`` < 2.
    """
    if n_points < 2:
        msg = f"n_points must be at least 2, got {n_points}."
        raise ValueError(msg)
    end = float(np.percentile(_event_times(time, event), 90))
    return np.linspace(0.0, end, n_points, dtype=np.float64)


def default_horizons(time: ArrayLike, event: ArrayLike) -> list[float]:
    """Quartiles (25th, 50th, 75th percentiles) of the event times, to 3 significant digits.

    Returns
    -------
    list of float
        Distinct, ascending.

    Raises
    ------
    ValueError
        If there is no event.
    """
    quartiles = np.percentile(_event_times(time, event), [25, 50, 75])
    return sorted({float(f"{q:.3g}") for q in quartiles})


def horizon_metric_name(kind: str, horizon: float) -> str:
    """Name of a metric at a horizon, e.g. ``auc_at_12`` or ``brier_at_2_5``."""
    return f"{kind}_at_{f'{horizon:g}'.replace('.', '_')}"


def survival_at(grid: ArrayLike, survival: ArrayLike, times: ArrayLike) -> NDArray[np.float64]:
    """Predicted survival at ``times`` from predictions on ``grid``, by the step rule.

    Each time takes the value at the largest grid point <= it (1 before the first grid point).

    Parameters
    ----------
    grid : array-like of shape (g,)
        Ascending time points of the predictions.
    survival : array-like of shape (n, g)
        Predicted survival probabilities on ``grid``.
    times : array-like of shape (m,)
        Time points to read.

    Returns
    -------
    ndarray of shape (n, m)
    """
    g = np.asarray(grid, dtype=np.float64).ravel()
    s = np.atleast_2d(np.asarray(survival, dtype=np.float64))
    if s.shape[1] != g.size:
        msg = f"survival has {s.shape[1]} columns but grid has {g.size} points."
        raise ValueError(msg)
    idx = _step_index(g, np.asarray(times, dtype=np.float64).ravel())
    return np.where(idx[None, :] >= 0, s[:, np.maximum(idx, 0)], 1.0)


def _metric_names(horizons: Sequence[float]) -> list[str]:
    return [
        *SURVIVAL_METRICS,
        *(horizon_metric_name("auc", h) for h in horizons),
        *(horizon_metric_name("brier", h) for h in horizons),
    ]


def _or_none(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)``, or None where scikit-survival finds it undefined."""
    try:
        return func(*args, **kwargs)
    except ValueError:
        return None


class _Prepared(NamedTuple):
    """Checked inputs of the survival metrics, one row per test subject."""

    y_test: NDArray[np.void]
    y_train: NDArray[np.void]
    risk_score: NDArray[np.float64]
    survival: NDArray[np.float64]
    grid: NDArray[np.float64]
    horizons: NDArray[np.float64]
    survival_at_horizons: NDArray[np.float64]
    max_train_time: float

    def take(self, idx: NDArray[np.int64]) -> _Prepared:
        """The rows ``idx`` of the test data (training outcomes unchanged)."""
        return self._replace(
            y_test=self.y_test[idx],
            risk_score=self.risk_score[idx],
            survival=self.survival[idx],
            survival_at_horizons=self.survival_at_horizons[idx],
        )


def _prepare(
    *,
    time: ArrayLike,
    event: ArrayLike,
    risk_score: ArrayLike,
    survival: ArrayLike,
    grid: ArrayLike,
    horizons: Sequence[float],
    train_time: ArrayLike,
    train_event: ArrayLike,
) -> _Prepared:
    t, e = _survival_arrays(time, event)
    tt, te = _survival_arrays(train_time, train_event, name="train_time")
    risk = np.asarray(risk_score, dtype=np.float64).ravel()
    g = np.asarray(grid, dtype=np.float64).ravel()
    surv = np.atleast_2d(np.asarray(survival, dtype=np.float64))
    h = np.asarray(horizons, dtype=np.float64).ravel()
    if t.size == 0 or tt.size == 0:
        msg = "survival metrics need at least one test and one training subject."
        raise ValueError(msg)
    if risk.size != t.size or surv.shape[0] != t.size:
        msg = f"risk_score ({risk.size}) and survival ({surv.shape[0]} rows) must have one value per subject ({t.size})."
        raise ValueError(msg)
    if surv.shape[1] != g.size:
        msg = f"survival has {surv.shape[1]} columns but grid has {g.size} points."
        raise ValueError(msg)
    if np.any(np.diff(g) <= 0):
        msg = "grid must be strictly increasing."
        raise ValueError(msg)
    return _Prepared(
        y_test=Surv.from_arrays(event=e, time=t),
        y_train=Surv.from_arrays(event=te, time=tt),
        risk_score=risk,
        survival=surv,
        grid=g,
        horizons=h,
        survival_at_horizons=survival_at(g, surv, h),
        max_train_time=float(tt.max()),
    )


def _metrics(p: _Prepared) -> dict[str, float]:
    """Metrics of one (possibly resampled) test set; see :func:`survival_metrics`."""
    event, time = p.y_test["event"], p.y_test["time"]
    t_min, t_max = float(time.min()), float(time.max())
    out: dict[str, float] = dict.fromkeys(_metric_names(p.horizons.tolist()), np.nan)

    harrell = _or_none(concordance_index, event, time, p.risk_score)
    out["c_index_harrell"] = np.nan if harrell is None else float(harrell[0])
    below = p.horizons[p.horizons < t_max]
    tau = float(below.max()) if below.size else None
    uno = _or_none(concordance_index_ipcw, p.y_train, p.y_test, p.risk_score, tau=tau)
    out["c_index_uno"] = np.nan if uno is None else float(uno[0])

    in_range = (p.horizons >= t_min) & (p.horizons < t_max)
    for j in np.flatnonzero(in_range):
        h = float(p.horizons[j])
        s_h = p.survival_at_horizons[:, j]
        auc = _or_none(cumulative_dynamic_auc, p.y_train, p.y_test, 1.0 - s_h, [h])
        if auc is not None:
            out[horizon_metric_name("auc", h)] = float(auc[0][0])
        brier = _or_none(brier_score, p.y_train, p.y_test, s_h[:, None], [h])
        if brier is not None:
            out[horizon_metric_name("brier", h)] = float(brier[1][0])
    aucs = np.array([out[horizon_metric_name("auc", h)] for h in p.horizons.tolist()])
    finite = aucs[np.isfinite(aucs)]
    out["mean_auc"] = float(finite.mean()) if finite.size else np.nan

    inside = (p.grid > t_min) & (p.grid < t_max) & (p.grid < p.max_train_time)
    if inside.sum() >= 2:
        ibs = _or_none(
            integrated_brier_score, p.y_train, p.y_test, p.survival[:, inside], p.grid[inside]
        )
        out["integrated_brier_score"] = np.nan if ibs is None else float(ibs)
    return out


def survival_metrics(  # noqa: PLR0917 - outcomes and predictions, in the usual order
    time: ArrayLike,
    event: ArrayLike,
    risk_score: ArrayLike,
    survival: ArrayLike,
    grid: ArrayLike,
    horizons: Sequence[float],
    *,
    train_time: ArrayLike,
    train_event: ArrayLike,
) -> dict[str, float]:
    """Discrimination and calibration metrics of survival predictions (scikit-survival).

    Parameters
    ----------
    time, event : array-like of shape (n,)
        Test outcomes.
    risk_score : array-like of shape (n,)
        Predicted risk; higher means earlier events.
    survival : array-like of shape (n, len(grid))
        Predicted survival probabilities on ``grid``.
    grid : array-like of shape (g,)
        Ascending time points of ``survival``.
    horizons : sequence of float
        Time points of the horizon-specific AUC and Brier score; predicted survival at a
        horizon is read from ``grid`` by the step rule (:func:`survival_at`).
    train_time, train_event : array-like
        Training outcomes; their censoring distribution gives the IPC weights.

    Returns
    -------
    dict
        ``c_index_harrell``, ``c_index_uno`` (truncated at the largest horizon below the last
        test time), ``integrated_brier_score`` (over the grid points inside the test follow-up
        and below the last training time), ``mean_auc`` (mean of the finite horizon AUCs), then
        ``auc_at_<h>`` and ``brier_at_<h>`` per horizon. A metric is NaN where it is undefined:
        a horizon outside ``[min test time, max test time)``, fewer than two grid points for
        the integrated Brier score, or a ValueError from scikit-survival (e.g. no comparable
        pairs, or censoring survival zero).
    """
    return _metrics(
        _prepare(
            time=time,
            event=event,
            risk_score=risk_score,
            survival=survival,
            grid=grid,
            horizons=horizons,
            train_time=train_time,
            train_event=train_event,
        )
    )


def bootstrap_survival_metrics(  # noqa: PLR0917 - as survival_metrics
    time: ArrayLike,
    event: ArrayLike,
    risk_score: ArrayLike,
    survival: ArrayLike,
    grid: ArrayLike,
    horizons: Sequence[float],
    *,
    groups: Sequence[str],
    train_time: ArrayLike,
    train_event: ArrayLike,
    n_bootstrap: int = 200,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """:func:`survival_metrics` with percentile confidence intervals from resampling subjects.

    Whole subjects (``groups``) are drawn with replacement; the training outcomes stay fixed.
    A resample where a metric is undefined contributes nothing to its interval.

    Returns
    -------
    dict
        ``{metric: {"estimate", "lower", "upper"}}`` in :func:`survival_metrics` order; bounds
        are NaN when ``n_bootstrap`` is 0 or no resample defines the metric.
    """
    prepared = _prepare(
        time=time,
        event=event,
        risk_score=risk_score,
        survival=survival,
        grid=grid,
        horizons=horizons,
        train_time=train_time,
        train_event=train_event,
    )
    groups_arr = np.asarray(groups, dtype=object)
    if groups_arr.size != prepared.y_test.size:
        msg = f"groups has {groups_arr.size} entries for {prepared.y_test.size} rows."
        raise ValueError(msg)
    return subject_bootstrap(
        lambda idx: _metrics(prepared.take(idx)),
        _metrics(prepared),
        groups_arr,
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        seed=seed,
    )


def _quantile_groups(values: NDArray[np.float64], n_groups: int) -> NDArray[np.int64]:
    """Group 0 .. n_groups-1 of each value by rank (near-equal sizes, ascending values)."""
    ranks = np.empty(values.size, dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(values.size)
    return ranks * n_groups // max(values.size, 1)


def _km_at(
    time: NDArray[np.float64], event: NDArray[np.bool_], horizon: float
) -> tuple[float, float, float]:
    """Kaplan-Meier survival at ``horizon`` and its log-log 95% interval.

    NaN when follow-up ends before ``horizon`` with the estimate still above zero.
    """
    if time.size == 0:
        return np.nan, np.nan, np.nan
    x, prob, conf = kaplan_meier_estimator(event, time, conf_type="log-log")
    if horizon > x[-1] and prob[-1] > 0:
        return np.nan, np.nan, np.nan
    k = int(_step_index(x, np.array([horizon]))[0])
    if k < 0:
        return 1.0, 1.0, 1.0
    return float(prob[k]), float(conf[0, k]), float(conf[1, k])


def calibration_table(
    time: ArrayLike,
    event: ArrayLike,
    survival_at_horizons: ArrayLike,
    horizons: Sequence[float],
    n_groups: int = 5,
) -> list[dict[str, float]]:
    """Predicted against Kaplan-Meier observed risk in quantile groups of predicted risk.

    Parameters
    ----------
    time, event : array-like of shape (n,)
        Outcomes.
    survival_at_horizons : array-like of shape (n, len(horizons))
        Predicted survival ``S(h)`` per horizon (e.g. from :func:`survival_at`).
    horizons : sequence of float
        The horizons.
    n_groups : int
        Number of groups of near-equal size, by rank of predicted risk ``1 - S(h)``.

    Returns
    -------
    list of dict
        One row per horizon and group (group 1 = lowest predicted risk) with ``horizon``,
        ``group``, ``n``, ``predicted_risk`` (mean), ``observed_risk`` (1 - Kaplan-Meier
        ``S(h)``) and its log-log 95% interval ``observed_lower``/``observed_upper``; observed
        values are NaN for a group whose follow-up ends before ``h`` with Kaplan-Meier survival
        still above zero.
    """
    t, e = _survival_arrays(time, event)
    surv = np.asarray(survival_at_horizons, dtype=np.float64).reshape(t.size, -1)
    h = np.asarray(horizons, dtype=np.float64).ravel()
    if surv.shape[1] != h.size:
        msg = f"survival_at_horizons has {surv.shape[1]} columns for {h.size} horizons."
        raise ValueError(msg)
    if n_groups < 1:
        msg = f"n_groups must be at least 1, got {n_groups}."
        raise ValueError(msg)
    rows: list[dict[str, float]] = []
    for j, horizon in enumerate(h.tolist()):
        risk = 1.0 - surv[:, j]
        group = _quantile_groups(risk, n_groups)
        for k in range(n_groups):
            members = group == k
            if not members.any():
                continue
            s, s_low, s_high = _km_at(t[members], e[members], horizon)
            rows.append(
                {
                    "horizon": horizon,
                    "group": k + 1,
                    "n": int(members.sum()),
                    "predicted_risk": float(risk[members].mean()),
                    "observed_risk": 1.0 - s,
                    "observed_lower": 1.0 - s_high,
                    "observed_upper": 1.0 - s_low,
                }
            )
    return rows


def plot_calibration(
    table: Sequence[dict[str, float]], path: str | os.PathLike[str], *, title: str
) -> None:
    """Calibration PNG: predicted against observed risk per horizon, with the diagonal."""
    horizons = sorted({row["horizon"] for row in table})
    n_panels = max(len(horizons), 1)
    fig, axes = plt.subplots(
        1, n_panels, figsize=(3.6 * n_panels, 3.8), dpi=110, squeeze=False, sharey=True
    )
    for ax, horizon in zip(axes[0], horizons, strict=False):
        rows = [row for row in table if row["horizon"] == horizon]
        pred = np.array([row["predicted_risk"] for row in rows])
        obs = np.array([row["observed_risk"] for row in rows])
        low = np.array([row["observed_lower"] for row in rows])
        high = np.array([row["observed_upper"] for row in rows])
        yerr = np.clip(np.vstack([obs - low, high - obs]), 0.0, None)
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        ax.errorbar(pred, obs, yerr=np.nan_to_num(yerr), fmt="o", capsize=3)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="Predicted risk",
            title=f"t = {horizon:g}",
        )
    axes[0, 0].set_ylabel("Observed risk (Kaplan-Meier)")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_km_by_risk_group(
    time: ArrayLike,
    event: ArrayLike,
    risk_score: ArrayLike,
    path: str | os.PathLike[str],
    *,
    n_groups: int = 3,
    title: str,
    labels: Sequence[str] = ("low", "medium", "high"),
) -> dict[str, float]:
    """Kaplan-Meier curves PNG of quantile groups of the risk score, with a log-rank test.

    Returns
    -------
    dict
        ``log_rank_chi2`` and ``log_rank_p`` of :func:`sksurv.compare.compare_survival` across
        the groups (NaN if it cannot be computed).
    """
    t, e = _survival_arrays(time, event)
    risk = np.asarray(risk_score, dtype=np.float64).ravel()
    if risk.size != t.size:
        msg = f"risk_score and time have different lengths ({risk.size} and {t.size})."
        raise ValueError(msg)
    if len(labels) != n_groups:
        msg = f"labels must name the {n_groups} groups, got {list(labels)}."
        raise ValueError(msg)
    group = _quantile_groups(risk, n_groups)
    stats = {"log_rank_chi2": np.nan, "log_rank_p": np.nan}
    tested = _or_none(compare_survival, Surv.from_arrays(event=e, time=t), group)
    if tested is not None:
        stats = {"log_rank_chi2": float(tested[0]), "log_rank_p": float(tested[1])}

    fig, ax = plt.subplots(figsize=(5.4, 4.2), dpi=110)
    for k, label in enumerate(labels):
        members = group == k
        if not members.any():
            continue
        x, prob, conf = kaplan_meier_estimator(e[members], t[members], conf_type="log-log")
        x, prob = np.r_[0.0, x], np.r_[1.0, prob]
        conf = np.hstack([np.ones((2, 1)), conf])
        (line,) = ax.step(x, prob, where="post", label=f"{label} risk (n={members.sum()})")
        ax.fill_between(x, conf[0], conf[1], step="post", alpha=0.2, color=line.get_color())
    ax.set(
        xlabel="Time",
        ylabel="Survival probability",
        ylim=(0, 1.02),
        title=f"{title}\nlog-rank χ² = {stats['log_rank_chi2']:.2f}, p = {stats['log_rank_p']:.3g}",
    )
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return stats


def plot_survival_curves(
    grid: ArrayLike,
    survival: ArrayLike,
    labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str,
    horizons: Sequence[float] = (),
) -> None:
    """Predicted survival curves PNG: one step curve per row of ``survival``.

    Parameters
    ----------
    grid : array-like of shape (g,)
        Time points.
    survival : array-like of shape (k, g)
        Survival probabilities, one curve per row (e.g. one subject at several landmarks).
    labels : sequence of str
        One legend label per row.
    path : path-like
        PNG to write.
    title : str
        Plot title.
    horizons : sequence of float
        Times marked by vertical dotted lines.
    """
    g = np.asarray(grid, dtype=np.float64).ravel()
    s = np.atleast_2d(np.asarray(survival, dtype=np.float64))
    if s.shape[1] != g.size or len(labels) != s.shape[0]:
        msg = f"survival of shape {s.shape} needs {g.size} grid points and {s.shape[0]} labels (got {g.size} and {len(labels)})."
        raise ValueError(msg)
    fig, ax = plt.subplots(figsize=(5.4, 4.2), dpi=110)
    for curve, label in zip(s, labels, strict=True):
        ax.step(g, curve, where="post", label=str(label))
    for horizon in horizons:
        ax.axvline(horizon, linestyle=":", color="grey", linewidth=0.9)
    ax.set(xlabel="Time", ylabel="Predicted survival probability", ylim=(0, 1.02), title=title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
