"""Probability calibration for the classification task, its metrics and the reliability plot.

Boosted trees often give probabilities that rank subjects well but are over- or under-confident.
The pipeline therefore fits a :class:`ProbabilityCalibrator` on the inner out-of-fold
probabilities of the training subjects (never on the outer fold's test subjects) and freezes it
as plain JSON inside the model, so serving applies it with numpy alone (no pickle).

The calibration maps follow scikit-learn's ``CalibratedClassifierCV`` exactly:

* ``sigmoid`` (Platt scaling): ``P(y = k) = 1 / (1 + exp(a * f + b))`` with ``f`` the predicted
  probability of class ``k``, fitted with Platt's target smoothing;
* ``isotonic``: a non-decreasing piecewise-linear map fitted by isotonic regression, stored as
  its breakpoints and applied with :func:`numpy.interp` (values outside the fitted range are
  clipped to the end values).

Binary problems (two probability columns) fit one map on the positive-class probability and
return ``[1 - q, q]``. Multiclass problems fit one one-vs-rest map per class and renormalise each
row to sum to 1; a row whose calibrated values are all 0 becomes uniform ``1 / K``.

The evaluation reports use :func:`brier_score`, :func:`expected_calibration_error`,
:func:`reliability_table` and :func:`plot_reliability`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss

from omics_ml.io import save_figure

try:  # the reference implementation of Platt scaling, private in scikit-learn
    from sklearn.calibration import _sigmoid_calibration as _sklearn_sigmoid_calibration
except ImportError:  # pragma: no cover - depends on the installed scikit-learn
    _sklearn_sigmoid_calibration = None

__all__ = [
    "CALIBRATION_METHODS",
    "ProbabilityCalibrator",
    "brier_score",
    "expected_calibration_error",
    "plot_reliability",
    "reliability_table",
]

CALIBRATION_METHODS: tuple[str, ...] = ("isotonic", "sigmoid")

_ROW_SUM_TOLERANCE = 1e-3
_STATE_VERSION = 1


# --------------------------------------------------------------------------- validation


def _check_proba(proba: Any, *, name: str = "proba") -> NDArray[np.float64]:
    """Return ``proba`` as a float64 ``(n, K)`` matrix of probabilities whose rows sum to 1."""
    arr = np.asarray(proba, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples, n_classes) with at least 2 columns; "
            f"got shape {arr.shape}. Pass one probability column per class."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no rows; pass at least one sample.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; pass finite probabilities.")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"{name} has values outside [0, 1]; pass probabilities, not scores.")
    sums = arr.sum(axis=1)
    if np.max(np.abs(sums - 1.0)) > _ROW_SUM_TOLERANCE:
        raise ValueError(
            f"{name} rows must sum to 1 (largest deviation {np.max(np.abs(sums - 1.0)):.3g}); "
            "pass the full class-probability matrix."
        )
    return arr


def _check_labels(y: Any, n_rows: int, n_classes: int, *, name: str = "y") -> NDArray[np.intp]:
    """Return ``y`` as integer class codes ``0..n_classes-1`` of length ``n_rows``."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(
            f"{name} must be a 1-D array with one class code per probability row "
            f"({n_rows}); got shape {arr.shape}."
        )
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(
                f"{name} must hold integer class codes 0..{n_classes - 1}; got dtype {arr.dtype}. "
                "Encode the class labels first."
            )
    codes = arr.astype(np.intp)
    if codes.size and (codes.min() < 0 or codes.max() >= n_classes):
        raise ValueError(
            f"{name} must hold class codes in 0..{n_classes - 1} (one per probability column); "
            f"got values in {codes.min()}..{codes.max()}."
        )
    return codes


def _check_n_bins(n_bins: int) -> int:
    """Return ``n_bins`` if it is a positive integer."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}.")
    return int(n_bins)


# --------------------------------------------------------------------------- sigmoid fit


def _platt_fit(f: NDArray[np.float64], target: NDArray[np.float64]) -> tuple[float, float]:
    """Fit Platt's sigmoid ``P(y = 1 | f) = 1 / (1 + exp(a * f + b))`` (Platt, 1999).

    Minimises the log loss against Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and
    ``1 / (N- + 2)`` with L-BFGS-B from Platt's starting point ``(0, log((N- + 1) / (N+ + 1)))``,
    the same problem and optimiser settings as scikit-learn's sigmoid calibration.

    Parameters
    ----------
    f : ndarray of shape (n,)
        Predicted probability (or score) of the positive class.
    target : ndarray of shape (n,)
        1 for positive rows, 0 for negative rows.

    Returns
    -------
    tuple of float
        The slope ``a`` and the intercept ``b``.
    """
    scale = 1.0
    largest = float(np.max(np.abs(f)))
    if largest >= 30.0:  # large scores: fit on a rescaled copy, undo on the slope
        scale = largest
        f = f / scale
    positive = target > 0
    prior1 = float(np.sum(positive))
    prior0 = float(target.shape[0]) - prior1
    smoothed = np.where(positive, (prior1 + 1.0) / (prior1 + 2.0), 1.0 / (prior0 + 2.0))

    def loss_grad(ab: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        raw = -(ab[0] * f + ab[1])  # logit of P(y = 1)
        loss = float(np.sum(np.logaddexp(0.0, raw) - smoothed * raw))
        residual = expit(raw) - smoothed
        return loss, np.array([-residual @ f, -residual.sum()], dtype=np.float64)

    start = np.array([0.0, math.log((prior0 + 1.0) / (prior1 + 1.0))])
    result = minimize(
        loss_grad,
        start,
        method="L-BFGS-B",
        jac=True,
        options={"gtol": 1e-6, "ftol": 64 * np.finfo(float).eps},
    )
    return float(result.x[0] / scale), float(result.x[1])


def _fit_sigmoid(f: NDArray[np.float64], target: NDArray[np.float64]) -> tuple[float, float]:
    """Fit the sigmoid map with scikit-learn's implementation when available, else Platt's."""
    if _sklearn_sigmoid_calibration is not None:
        a, b = _sklearn_sigmoid_calibration(f, target)
        return float(a), float(b)
    return _platt_fit(f, target)  # pragma: no cover - depends on the installed scikit-learn


# --------------------------------------------------------------------------- calibrator


def _check_method(method: Any) -> str:
    """Return ``method`` if it is a known calibration method."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(
            f"calibration.method must be one of {list(CALIBRATION_METHODS)}; got {method!r}. "
            "Set calibration.method to 'sigmoid' (Platt scaling) or 'isotonic'."
        )
    return str(method)


class ProbabilityCalibrator:
    """Post-hoc probability calibration by Platt scaling (``'sigmoid'``) or isotonic regression.

    Binary input (2 columns): one map is fitted on the positive-class probability and the output
    is ``[1 - q, q]``. Multiclass input (``K > 2``): one one-vs-rest map per class, then each row
    is renormalised to sum to 1 (the scheme of ``sklearn.calibration.CalibratedClassifierCV``);
    a row whose calibrated values are all 0 becomes uniform ``1 / K``.

    A class with no positive or no negative example among the fitting rows cannot be calibrated;
    it keeps the identity map (its probabilities pass through unchanged before renormalising).

    The fitted state is plain numbers (:meth:`to_json` / :meth:`from_json`), so a frozen model
    applies it with numpy alone.

    Parameters
    ----------
    method : str
        ``'sigmoid'`` or ``'isotonic'`` (the config key ``calibration.method``).

    Raises
    ------
    ValueError
        If ``method`` is not one of :data:`CALIBRATION_METHODS`.

    Attributes
    ----------
    method : str
        The calibration method.
    n_classes : int or None
        Number of probability columns, set by :meth:`fit`.
    maps : list of dict
        One map per calibrated column (one for binary, ``K`` for multiclass); each is
        ``{"kind": "identity"}``, ``{"kind": "sigmoid", "a": float, "b": float}`` or
        ``{"kind": "isotonic", "x": [float, ...], "y": [float, ...]}``.
    """

    def __init__(self, method: str) -> None:
        self.method: str = _check_method(method)
        self.n_classes: int | None = None
        self.maps: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"ProbabilityCalibrator(method={self.method!r}, n_classes={self.n_classes})"

    def _fit_map(self, f: NDArray[np.float64], target: NDArray[np.float64]) -> dict[str, Any]:
        """Fit one map from the class probability ``f`` to the 0/1 ``target``."""
        n_positive = int(np.sum(target))
        if n_positive == 0 or n_positive == target.shape[0]:
            return {"kind": "identity"}
        if self.method == "sigmoid":
            a, b = _fit_sigmoid(f, target)
            return {"kind": "sigmoid", "a": a, "b": b}
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(f, target)
        return {
            "kind": "isotonic",
            "x": [float(v) for v in iso.X_thresholds_],
            "y": [float(v) for v in iso.y_thresholds_],
        }

    @staticmethod
    def _apply_map(state: Mapping[str, Any], f: NDArray[np.float64]) -> NDArray[np.float64]:
        """Apply one fitted map to the class probability ``f``."""
        kind = state["kind"]
        if kind == "identity":
            return f.copy()
        if kind == "sigmoid":
            return expit(-(float(state["a"]) * f + float(state["b"])))
        x = np.asarray(state["x"], dtype=np.float64)
        y = np.asarray(state["y"], dtype=np.float64)
        return np.interp(f, x, y)

    def fit(self, proba: NDArray[np.floating], y: NDArray[np.integer]) -> ProbabilityCalibrator:
        """Fit the calibration map(s) on out-of-fold probabilities of training subjects.

        Sigmoid fits ``P(y = k) = 1 / (1 + exp(a * f + b))`` with ``f`` the class probability,
        as scikit-learn's sigmoid calibration does (Platt's target smoothing, L-BFGS-B).
        Isotonic fits ``IsotonicRegression(out_of_bounds='clip', y_min=0, y_max=1)`` on ``f``
        and keeps only its breakpoints. A class with no positive or no negative row keeps the
        identity map.

        Parameters
        ----------
        proba : ndarray of shape (n, K)
            Uncalibrated probabilities, rows summing to 1, ``K >= 2``.
        y : ndarray of shape (n,)
            True class codes ``0..K-1``.

        Returns
        -------
        ProbabilityCalibrator
            ``self``, fitted.

        Raises
        ------
        ValueError
            If ``proba`` is not a probability matrix or ``y`` does not hold one class code per
            row.
        """
        p = _check_proba(proba)
        n_classes = p.shape[1]
        codes = _check_labels(y, p.shape[0], n_classes)
        columns = [1] if n_classes == 2 else list(range(n_classes))
        self.maps = [self._fit_map(p[:, k], (codes == k).astype(np.float64)) for k in columns]
        self.n_classes = n_classes
        return self

    def transform(self, proba: NDArray[np.floating]) -> NDArray[np.float64]:
        """Calibrate probabilities.

        Parameters
        ----------
        proba : ndarray of shape (n, K)
            Uncalibrated probabilities with the same ``K`` as at fitting.

        Returns
        -------
        ndarray of shape (n, K)
            Calibrated probabilities in [0, 1], rows summing to 1.

        Raises
        ------
        ValueError
            If the calibrator is not fitted or ``proba`` has the wrong shape.
        """
        if self.n_classes is None:
            raise ValueError("ProbabilityCalibrator is not fitted; call fit(proba, y) first.")
        p = _check_proba(proba)
        if p.shape[1] != self.n_classes:
            raise ValueError(
                f"proba has {p.shape[1]} columns but the calibrator was fitted on "
                f"{self.n_classes} classes; pass the same class columns as at fitting."
            )
        if self.n_classes == 2:
            q = np.clip(self._apply_map(self.maps[0], p[:, 1]), 0.0, 1.0)
            return np.column_stack([1.0 - q, q])
        calibrated = np.column_stack(
            [self._apply_map(state, p[:, k]) for k, state in enumerate(self.maps)]
        )
        total = calibrated.sum(axis=1, keepdims=True)
        out = np.full_like(calibrated, 1.0 / self.n_classes)
        np.divide(calibrated, total, out=out, where=total != 0)
        return np.clip(out, 0.0, 1.0)

    def to_json(self) -> dict[str, Any]:
        """Return the fitted state as JSON-serialisable plain Python values.

        Returns
        -------
        dict
            ``{"version", "method", "n_classes", "maps"}`` where ``maps`` holds one entry per
            calibrated column (see the class attributes).

        Raises
        ------
        ValueError
            If the calibrator is not fitted.
        """
        if self.n_classes is None:
            raise ValueError("ProbabilityCalibrator is not fitted; call fit(proba, y) first.")
        return {
            "version": _STATE_VERSION,
            "method": self.method,
            "n_classes": int(self.n_classes),
            "maps": [dict(state) for state in self.maps],
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> ProbabilityCalibrator:
        """Rebuild a fitted calibrator from :meth:`to_json` output.

        Parameters
        ----------
        state : mapping
            The frozen state (for instance read back with ``json.loads``).

        Returns
        -------
        ProbabilityCalibrator
            A fitted calibrator whose :meth:`transform` equals the original's.

        Raises
        ------
        ValueError
            If ``state`` is not a valid calibrator state.
        """
        if not isinstance(state, Mapping) or "method" not in state:
            raise ValueError(
                "calibrator state must be a mapping with 'method', 'n_classes', 'maps'."
            )
        calibrator = cls(state["method"])
        n_classes = state.get("n_classes")
        maps = state.get("maps")
        if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
            raise ValueError(
                f"calibrator state 'n_classes' must be an integer >= 2; got {n_classes!r}."
            )
        expected = 1 if n_classes == 2 else n_classes
        if not isinstance(maps, Sequence) or len(maps) != expected:
            raise ValueError(
                f"calibrator state 'maps' must be a list of {expected} maps for {n_classes} classes."
            )
        checked: list[dict[str, Any]] = []
        for entry in maps:
            kind = entry.get("kind") if isinstance(entry, Mapping) else None
            if kind == "identity":
                checked.append({"kind": "identity"})
            elif kind == "sigmoid" and calibrator.method == "sigmoid":
                checked.append({"kind": "sigmoid", "a": float(entry["a"]), "b": float(entry["b"])})
            elif kind == "isotonic" and calibrator.method == "isotonic":
                x = [float(v) for v in entry["x"]]
                y = [float(v) for v in entry["y"]]
                if not x or len(x) != len(y) or np.any(np.diff(x) < 0):
                    raise ValueError(
                        "calibrator state isotonic map needs non-empty, equal-length 'x' "
                        "(non-decreasing) and 'y' lists."
                    )
                checked.append({"kind": "isotonic", "x": x, "y": y})
            else:
                raise ValueError(
                    f"calibrator state map kind {kind!r} does not fit method "
                    f"{calibrator.method!r}; expected 'identity' or '{calibrator.method}'."
                )
        calibrator.n_classes = n_classes
        calibrator.maps = checked
        return calibrator


# --------------------------------------------------------------------------- metrics


def brier_score(y: NDArray[np.integer], proba: NDArray[np.floating]) -> float:
    """Multiclass Brier score, halved so that it lies in [0, 1].

    Defined as ``mean_i sum_k (p_ik - 1[y_i = k])^2 / 2``. In the binary case this equals the
    usual Brier score of the positive-class probability (``sklearn.metrics.brier_score_loss``);
    for any ``K`` it is ``brier_score_loss(..., scale_by_half=True)``, which computes it here.

    Parameters
    ----------
    y : ndarray of shape (n,)
        True class codes ``0..K-1``.
    proba : ndarray of shape (n, K)
        Predicted probabilities, rows summing to 1.

    Returns
    -------
    float
        The Brier score (0 is perfect).

    Raises
    ------
    ValueError
        If the inputs are not a probability matrix with one class code per row.
    """
    p = _check_proba(proba)
    codes = _check_labels(y, p.shape[0], p.shape[1])
    return float(brier_score_loss(codes, p, labels=np.arange(p.shape[1]), scale_by_half=True))


def _uniform_bin(values: NDArray[np.float64], n_bins: int) -> NDArray[np.intp]:
    """Equal-width bin index in ``0..n_bins-1`` on [0, 1], bins closed on the right.

    A value on an inner edge falls in the lower bin and 0 falls in bin 0, as in
    ``sklearn.calibration.calibration_curve(strategy='uniform')``.
    """
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.digitize(values, inner, right=True)


def expected_calibration_error(
    y: NDArray[np.integer], proba: NDArray[np.floating], *, n_bins: int = 10
) -> float:
    """Top-label expected calibration error.

    The confidence of a row is its highest predicted probability and it is correct when that
    class (the first on ties) is the true one. Rows are put into ``n_bins`` equal-width bins of
    confidence (closed on the right, as in :func:`reliability_table`) and the error is
    ``sum_b (n_b / n) * |accuracy_b - mean confidence_b|``.

    Parameters
    ----------
    y : ndarray of shape (n,)
        True class codes ``0..K-1``.
    proba : ndarray of shape (n, K)
        Predicted probabilities, rows summing to 1.
    n_bins : int, default 10
        Number of equal-width confidence bins on [0, 1].

    Returns
    -------
    float
        The ECE in [0, 1] (0 is perfectly calibrated).

    Raises
    ------
    ValueError
        If the inputs are invalid or ``n_bins`` is not a positive integer.
    """
    n_bins = _check_n_bins(n_bins)
    p = _check_proba(proba)
    codes = _check_labels(y, p.shape[0], p.shape[1])
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == codes).astype(np.float64)
    bins = _uniform_bin(confidence, n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    # sum_b (n_b / n) |acc_b - conf_b| = sum_b |correct_sum_b - conf_sum_b| / n
    return float(np.sum(np.abs(correct_sum - conf_sum)) / p.shape[0])


def reliability_table(
    y: NDArray[np.integer],
    proba: NDArray[np.floating],
    classes: Sequence[str],
    *,
    n_bins: int = 10,
) -> pd.DataFrame:
    """One-vs-rest reliability of each class's predicted probability.

    For each class the rows are put into ``n_bins`` equal-width bins of that class's probability
    (closed on the right); each non-empty bin reports the mean predicted probability and the
    observed fraction of the class. The numbers equal
    ``sklearn.calibration.calibration_curve(y == k, proba[:, k], strategy='uniform')``.

    Parameters
    ----------
    y : ndarray of shape (n,)
        True class codes ``0..K-1``.
    proba : ndarray of shape (n, K)
        Predicted probabilities, rows summing to 1.
    classes : sequence of str
        Class names, one per probability column.
    n_bins : int, default 10
        Number of equal-width bins on [0, 1].

    Returns
    -------
    pandas.DataFrame
        Columns ``class``, ``bin`` (0..n_bins-1), ``mean_predicted``, ``observed_fraction``,
        ``n`` (rows in the bin); empty bins are omitted. Ordered by class then bin.

    Raises
    ------
    ValueError
        If the inputs are invalid, ``classes`` does not name every column or ``n_bins`` is not
        a positive integer.
    """
    n_bins = _check_n_bins(n_bins)
    p = _check_proba(proba)
    codes = _check_labels(y, p.shape[0], p.shape[1])
    names = [str(c) for c in classes]
    if len(names) != p.shape[1]:
        raise ValueError(
            f"classes must name each of the {p.shape[1]} probability columns; got {len(names)}."
        )
    frames = []
    for k, name in enumerate(names):
        bins = _uniform_bin(p[:, k], n_bins)
        count = np.bincount(bins, minlength=n_bins)
        predicted = np.bincount(bins, weights=p[:, k], minlength=n_bins)
        observed = np.bincount(bins, weights=(codes == k), minlength=n_bins)
        nonzero = count != 0
        frames.append(
            pd.DataFrame(
                {
                    "class": name,
                    "bin": np.flatnonzero(nonzero).astype(np.int64),
                    "mean_predicted": predicted[nonzero] / count[nonzero],
                    "observed_fraction": observed[nonzero] / count[nonzero],
                    "n": count[nonzero].astype(np.int64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


_TABLE_COLUMNS = ("class", "bin", "mean_predicted", "observed_fraction", "n")


def _check_table(table: Any, name: str) -> pd.DataFrame:
    """Return ``table`` if it has the :func:`reliability_table` columns."""
    if not isinstance(table, pd.DataFrame) or not set(_TABLE_COLUMNS) <= set(table.columns):
        raise ValueError(
            f"{name} must be a DataFrame from reliability_table with columns "
            f"{list(_TABLE_COLUMNS)}."
        )
    return table


def plot_reliability(
    table: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    title: str,
    uncalibrated: pd.DataFrame | None = None,
) -> None:
    """Draw a reliability diagram and write it as a PNG.

    One panel with one line per class: mean predicted probability on x, observed fraction on y,
    marker area proportional to the rows in the bin, and the diagonal of perfect calibration.
    An optional ``uncalibrated`` table is drawn dashed in the same class colours for comparison.
    The figure is built without pyplot (no global backend change) and written atomically.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`reliability_table` (usually of calibrated probabilities).
    path : str or os.PathLike
        Destination PNG file.
    title : str
        Figure title.
    uncalibrated : pandas.DataFrame, optional
        Output of :func:`reliability_table` for the uncalibrated probabilities.

    Raises
    ------
    ValueError
        If a table lacks the :func:`reliability_table` columns.
    """
    table = _check_table(table, "table")
    if uncalibrated is not None:
        uncalibrated = _check_table(uncalibrated, "uncalibrated")
    class_names = list(dict.fromkeys(table["class"].astype(str)))
    if uncalibrated is not None:
        class_names += [
            c for c in dict.fromkeys(uncalibrated["class"].astype(str)) if c not in class_names
        ]
    frames = [table] if uncalibrated is None else [table, uncalibrated]
    n_max = max([1.0] + [float(frame["n"].max()) for frame in frames if len(frame)])

    fig = Figure(figsize=(5.5, 5.0), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0.0, 1.0], [0.0, 1.0], color="0.6", linestyle=":", linewidth=1, label="ideal")
    for index, name in enumerate(class_names):
        color = f"C{index % 10}"
        for frame, style, suffix in (
            (uncalibrated, "--", " (uncalibrated)"),
            (table, "-", ""),
        ):
            if frame is None:
                continue
            rows = frame[frame["class"].astype(str) == name].sort_values("mean_predicted")
            if rows.empty:
                continue
            x = rows["mean_predicted"].to_numpy(dtype=np.float64)
            y = rows["observed_fraction"].to_numpy(dtype=np.float64)
            sizes = 12.0 + 120.0 * rows["n"].to_numpy(dtype=np.float64) / n_max
            alpha = 0.5 if suffix else 1.0
            ax.plot(x, y, linestyle=style, color=color, alpha=alpha, label=f"{name}{suffix}")
            ax.scatter(x, y, s=sizes, color=color, alpha=alpha, edgecolors="none")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    ax.set_xlabel("Mean predicted probability")
    ax.set_ylabel("Observed fraction")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
