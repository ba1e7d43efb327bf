"""Penalised linear baselines fitted on the same rows and features as the XGBoost pipeline.

In every outer fold the baseline sees exactly the design matrix the booster sees (the fold's
normalised features, NaN = missing) and the same training subjects, so the gap between the two
shows whether gradient boosting earns its place. Each baseline is one scikit-learn pipeline
fitted on the training rows only: it drops the columns that are all-missing or constant there,
imputes the median, standardises, and fits a penalised linear model whose penalty is chosen by
subject-grouped inner cross-validation:

- classification: L2 logistic regression, ``C`` minimising the inner log loss;
- survival: elastic-net Cox (scikit-survival's Coxnet), ``alpha`` from the model's own penalty
  path maximising the inner Harrell's C, with a Breslow baseline for the survival curves;
- regression: elastic net, ``alpha`` minimising the inner mean squared error, with a
  split-conformal interval from the inner out-of-fold residuals.

Its predictions carry exactly the columns of the pipeline's task head, so the evaluation code
scores both models alike.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from sksurv.exceptions import NoComparablePairException
from sksurv.linear_model import CoxnetSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from omics_ml.regression import conformal_quantile
from omics_ml.tasks import (
    ClassificationHead,
    Outcome,
    RegressionHead,
    SurvivalHead,
    TaskHead,
    horizon_label,
)
from omics_ml.tuning import grouped_folds

__all__ = [
    "BASELINE_NAMES",
    "CLASSIFICATION_C_GRID",
    "COXNET_ALPHA_MIN_RATIO",
    "COXNET_L1_RATIO",
    "COXNET_N_ALPHAS",
    "REGRESSION_ALPHA_GRID",
    "REGRESSION_L1_RATIO",
    "LinearBaseline",
    "fit_linear_baseline",
    "inner_group_folds",
]

#: Human-readable name of the baseline of each task.
BASELINE_NAMES: dict[str, str] = {
    "classification": "L2-penalised logistic regression",
    "survival": "Elastic-net Cox regression (Coxnet)",
    "regression": "Elastic-net linear regression",
}

#: Inverse L2 penalties of the logistic regression tried by the inner cross-validation.
CLASSIFICATION_C_GRID: NDArray[np.float64] = np.logspace(-4, 2, 13)
#: Iteration cap of the logistic regression solver (ample for standardised omics data).
CLASSIFICATION_MAX_ITER = 10_000

#: Elastic-net mixing of the Cox model (1 = lasso, 0 = ridge).
COXNET_L1_RATIO = 0.5
#: Length of the Cox model's own penalty path.
COXNET_N_ALPHAS = 30
#: Smallest penalty of the path as a fraction of the largest; larger ratios are tried in turn
#: when the path cannot be fitted at all (wide data can overflow near the unpenalised end).
COXNET_ALPHA_MIN_RATIO = 0.05
_COXNET_FALLBACK_RATIOS = (COXNET_ALPHA_MIN_RATIO, 0.1, 0.2, 0.5)
_COXNET_MAX_ITER = 100_000

#: Elastic-net mixing and penalties of the regression baseline.
REGRESSION_L1_RATIO = 0.5
REGRESSION_ALPHA_GRID: NDArray[np.float64] = np.logspace(-3, 3, 13)
_REGRESSION_MAX_ITER = 100_000

#: Errors by which a Cox fit signals a numerical failure at a penalty (overflowing weights,
#: non-finite coefficients, an inner-training fold without events).
_COX_FIT_ERRORS = (ArithmeticError, AssertionError, ValueError)


class _DropUninformative(TransformerMixin, BaseEstimator):
    """Drop the columns that are all-missing or constant on the rows the step is fitted on.

    Attributes
    ----------
    keep_ : ndarray of bool
        Which input columns are kept.
    dropped_ : ndarray of int
        Indices of the dropped input columns.
    n_features_in_ : int
        Number of input columns.
    """

    def fit(self, X: NDArray[np.floating], y: Any = None) -> _DropUninformative:
        """Record the columns with at least two distinct observed values.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_columns)
            Training features, NaN = missing.
        y : ignored

        Returns
        -------
        _DropUninformative
            The fitted step.

        Raises
        ------
        ValueError
            If no column varies on the training rows.
        """
        values = np.asarray(X, dtype=np.float64)
        # fmax/fmin ignore NaN and give NaN for an all-missing column (NaN > NaN is False)
        keep = np.fmax.reduce(values, axis=0) > np.fmin.reduce(values, axis=0)
        if not keep.any():
            msg = "features: every column is missing or constant on the training rows; a linear baseline needs at least one varying feature."
            raise ValueError(msg)
        self.keep_ = keep
        self.dropped_ = np.flatnonzero(~keep)
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, X: NDArray[np.floating]) -> NDArray[np.float64]:
        """The kept columns of ``X``.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_columns)
            Features with the training columns, NaN = missing.

        Returns
        -------
        ndarray of shape (n_rows, n_kept)

        Raises
        ------
        ValueError
            If ``X`` has a different number of columns than the training rows.
        """
        check_is_fitted(self, "keep_")
        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.n_features_in_:
            msg = f"features have shape {values.shape}; the baseline was fitted on {self.n_features_in_} columns."
            raise ValueError(msg)
        return values[:, self.keep_]


def _preprocessing() -> list[tuple[str, Any]]:
    """Fresh preprocessing steps: drop uninformative columns, impute the median, standardise."""
    return [
        ("drop", _DropUninformative()),
        ("impute", SimpleImputer(strategy="median")),
        ("scale", StandardScaler()),
    ]


def _pipeline(model: Any) -> Pipeline:
    """Preprocessing followed by ``model``, as one pipeline."""
    return Pipeline([*_preprocessing(), ("model", model)])


def inner_group_folds(
    strata: ArrayLike, groups: ArrayLike, n_folds: int, seed: int
) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Subject-grouped, stratified inner folds of the training rows.

    The rows of a subject always fall in the same fold. With fewer subjects than ``n_folds``
    there are as many folds as subjects. The folds themselves come from
    :func:`omics_ml.tuning.grouped_folds`, as for the booster's inner folds.

    Parameters
    ----------
    strata : array-like of shape (n_rows,)
        Labels to balance across folds (the head's :meth:`~omics_ml.tasks.TaskHead.strata`).
    groups : array-like of shape (n_rows,)
        Subject of each row.
    n_folds : int
        Requested number of folds (at least 2).
    seed : int
        Seed of the fold assignment.

    Returns
    -------
    list of (train_index, validation_index)
        Row indices of each fold; the validation parts partition the rows.

    Raises
    ------
    ValueError
        If the lengths differ, a group is missing, ``n_folds`` is below 2 or there are fewer
        than two subjects.
    """
    strata_arr = np.asarray(strata).astype(str).ravel()
    group_codes, group_labels = pd.factorize(pd.Series(np.asarray(groups, dtype=object).ravel()))
    if strata_arr.size != group_codes.size:
        msg = f"strata and groups have different lengths ({strata_arr.size} and {group_codes.size}); give one subject per row."
        raise ValueError(msg)
    if (group_codes < 0).any():
        msg = "groups contain missing values; give every row its subject."
        raise ValueError(msg)
    if int(n_folds) < 2:
        msg = f"n_folds is {n_folds}; use at least 2 inner folds."
        raise ValueError(msg)
    n_groups = len(group_labels)
    if n_groups < 2:
        msg = (
            f"groups hold {n_groups} subject(s); inner cross-validation needs at least 2 subjects."
        )
        raise ValueError(msg)
    return grouped_folds(strata_arr, group_codes, n_splits=min(int(n_folds), n_groups), seed=seed)


@dataclass
class LinearBaseline:
    """A fitted penalised linear baseline that predicts the task head's columns.

    Attributes
    ----------
    task : str
        ``classification``, ``survival`` or ``regression``.
    model : sklearn.pipeline.Pipeline
        Column filter, median imputer, scaler and fitted linear model.
    columns : list of (str, str)
        Output columns (name, type), copied from the task head.
    head_state : dict
        What prediction needs from the head: ``classes``; ``grid`` and ``horizons``; or
        ``interval_half_width``.
    chosen : dict
        The chosen penalty, its inner cross-validation score and the dropped columns
        (JSON-safe).
    """

    task: str
    model: Any
    columns: list[tuple[str, str]]
    head_state: dict[str, Any]
    chosen: dict[str, Any]

    def predict(self, features: NDArray[np.floating]) -> pd.DataFrame:
        """Per-row predictions with exactly the head's output columns, in the same order.

        Parameters
        ----------
        features : ndarray of shape (n_rows, n_columns)
            Features with the training columns, NaN = missing.

        Returns
        -------
        pandas.DataFrame
            Classification: ``predicted_class`` and ``prob_<class>``; survival: ``risk_score``,
            ``risk_at_<h>`` and ``surv_<t>``; regression: ``predicted``, ``lower``, ``upper``.

        Raises
        ------
        ValueError
            If ``features`` is not a 2-D array with the training number of columns, or holds
            infinite values.
        """
        X = _as_features(features)
        expected = self.model[0].n_features_in_
        if X.shape[1] != expected:
            msg = f"features have {X.shape[1]} columns; the baseline was fitted on {expected}."
            raise ValueError(msg)
        if self.task == "classification":
            out = self._predict_classes(X)
        elif self.task == "survival":
            out = self._predict_survival(X)
        else:
            predicted = np.asarray(self.model.predict(X), dtype=np.float64)
            half_width = float(self.head_state["interval_half_width"])
            out = pd.DataFrame(
                {
                    "predicted": predicted,
                    "lower": predicted - half_width,
                    "upper": predicted + half_width,
                }
            )
        return out[[name for name, _ in self.columns]]

    def _predict_classes(self, X: NDArray[np.float64]) -> pd.DataFrame:
        """Class probabilities in the head's class order; absent training classes get 0."""
        classes: list[str] = self.head_state["classes"]
        proba = _class_probabilities(self.model.predict_proba(X), self.model[-1].classes_, classes)
        out = pd.DataFrame(
            {"predicted_class": np.asarray(classes, dtype=object)[proba.argmax(axis=1)]}
        )
        for k, label in enumerate(classes):
            out[f"prob_{label}"] = proba[:, k]
        return out

    def _predict_survival(self, X: NDArray[np.float64]) -> pd.DataFrame:
        """Linear predictor, risk at the horizons and the survival curve on the grid."""
        transformed = self.model[:-1].transform(X)
        cox: CoxnetSurvivalAnalysis = self.model[-1]
        columns: dict[str, NDArray[np.float64]] = {
            "risk_score": np.asarray(cox.predict(transformed), dtype=np.float64)
        }
        horizons = np.asarray(self.head_state["horizons"], dtype=np.float64)
        grid = np.asarray(self.head_state["grid"], dtype=np.float64)
        functions = cox.predict_survival_function(transformed, return_array=False)
        at_horizons = _evaluate_step_functions(functions, horizons)
        for k, h in enumerate(horizons):
            columns[f"risk_at_{horizon_label(h)}"] = 1.0 - at_horizons[:, k]
        curve = _evaluate_step_functions(functions, grid)
        for k, t in enumerate(grid):
            columns[f"surv_{horizon_label(t)}"] = curve[:, k]
        return pd.DataFrame(columns)

    def describe(self) -> dict[str, Any]:
        """The model's name and the chosen settings, for reports and run logs.

        Returns
        -------
        dict
            ``{"model": BASELINE_NAMES[task], **chosen}``.
        """
        return {"model": BASELINE_NAMES[self.task], **self.chosen}


def _as_features(features: NDArray[np.floating]) -> NDArray[np.float64]:
    """``features`` as a 2-D float64 array without infinite values."""
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        msg = f"features must be a non-empty 2-D array (rows x columns), got shape {X.shape}."
        raise ValueError(msg)
    if np.isinf(X).any():
        msg = "features hold infinite values; use NaN for missing values."
        raise ValueError(msg)
    return X


def _class_probabilities(
    proba: NDArray[np.float64], model_classes: ArrayLike, classes: list[str]
) -> NDArray[np.float64]:
    """``proba`` (columns ``model_classes``) spread over ``classes``; 0 for unseen classes."""
    out = np.zeros((proba.shape[0], len(classes)))
    position = {c: k for k, c in enumerate(classes)}
    out[:, [position[str(c)] for c in np.asarray(model_classes)]] = proba
    return out


def _evaluate_step_functions(
    functions: NDArray[Any], times: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Survival step functions of all rows at ``times`` (rows x times).

    The rows' functions share their knots (the training times), so their values are stacked
    and evaluated with one right-continuous step lookup. Times after the last knot take its
    value; times before the first knot take 1 (nothing has happened yet).
    """
    knots = np.asarray(functions[0].x, dtype=np.float64)
    values = np.vstack([fn.a * np.asarray(fn.y, dtype=np.float64) + fn.b for fn in functions])
    index = np.searchsorted(knots, np.minimum(times, knots[-1]), side="right") - 1
    return np.where(index >= 0, values[:, np.maximum(index, 0)], 1.0)


def fit_linear_baseline(
    features: NDArray[np.floating],
    outcome: Outcome,
    groups: ArrayLike,
    *,
    head: TaskHead,
    seed: int,
    inner_folds: int = 5,
) -> LinearBaseline:
    """Fit the task's penalised linear baseline on the training rows of an outer fold.

    Parameters
    ----------
    features : ndarray of shape (n_rows, n_columns)
        The fold's normalised training features (the booster's design matrix), NaN = missing.
    outcome : Outcome
        Outcome of each row: labels (classification), time and event (survival) or target
        (regression).
    groups : array-like of shape (n_rows,)
        Subject of each row; inner folds never split a subject.
    head : TaskHead
        The pipeline's prepared task head (classes; survival grid and horizons; interval level).
    seed : int
        Seed of the inner folds.
    inner_folds : int, default 5
        Number of inner folds (fewer when there are fewer subjects).

    Returns
    -------
    LinearBaseline

    Raises
    ------
    ValueError
        If the shapes disagree, the outcome lacks the task's fields, the head is not prepared,
        there are fewer than two subjects, or no penalty can be fitted.
    """
    X = _as_features(features)
    n_rows = X.shape[0]
    if np.asarray(outcome.label).shape[0] != n_rows:
        msg = f"outcome has {np.asarray(outcome.label).shape[0]} rows but features have {n_rows}; give one outcome per row."
        raise ValueError(msg)
    group_arr = np.asarray(groups, dtype=object).ravel()
    if group_arr.size != n_rows:
        msg = f"groups has {group_arr.size} entries but features have {n_rows} rows; give one subject per row."
        raise ValueError(msg)
    if isinstance(head, ClassificationHead):
        folds = inner_group_folds(head.strata(outcome), group_arr, inner_folds, seed)
        return _fit_classification(X, outcome, folds, head)
    if isinstance(head, SurvivalHead):
        _check_survival(outcome, head)
        folds = inner_group_folds(head.strata(outcome), group_arr, inner_folds, seed)
        return _fit_survival(X, outcome, folds, head)
    if isinstance(head, RegressionHead):
        target = outcome.target
        if target is None or not np.isfinite(np.asarray(target, dtype=np.float64)).all():
            msg = "outcome.target is missing or holds NaN/infinite values; give a finite target for every regression row."
            raise ValueError(msg)
        folds = inner_group_folds(head.strata(outcome), group_arr, inner_folds, seed)
        return _fit_regression(X, np.asarray(target, dtype=np.float64), folds, head)
    msg = f"head is a {type(head).__name__}; use a ClassificationHead, SurvivalHead or RegressionHead."
    raise ValueError(msg)


def _dropped(model: Pipeline) -> list[int]:
    """Indices of the input columns the fitted pipeline drops."""
    return [int(i) for i in model[0].dropped_]


def _fit_classification(
    X: NDArray[np.float64],
    outcome: Outcome,
    folds: list[tuple[NDArray[np.int64], NDArray[np.int64]]],
    head: ClassificationHead,
) -> LinearBaseline:
    """L2 logistic regression with ``C`` chosen by the inner log loss."""
    labels = np.asarray(outcome.label).astype(str)
    present = np.unique(labels)  # sorted: the column order log_loss expects
    unknown = sorted(set(present) - set(head.classes))
    if unknown:
        msg = (
            f"outcome.label holds {unknown}, which are not among the head's classes {head.classes}."
        )
        raise ValueError(msg)
    if present.size < 2:
        msg = f"outcome.label holds only {present.tolist()}; classification needs at least two classes in the training rows."
        raise ValueError(msg)
    class_weight = "balanced" if head.class_weight == "balanced" else None
    losses = np.full((len(folds), CLASSIFICATION_C_GRID.size), np.nan)
    for i, (train, val) in enumerate(folds):
        if np.unique(labels[train]).size < 2:
            continue  # a one-class inner training set cannot fit a classifier
        prep = Pipeline(_preprocessing()).fit(X[train])
        X_train, X_val = prep.transform(X[train]), prep.transform(X[val])
        # along increasing C, each fit starts from the previous solution (same optimum, faster)
        model = LogisticRegression(
            class_weight=class_weight, max_iter=CLASSIFICATION_MAX_ITER, warm_start=True
        )
        for j, c in enumerate(CLASSIFICATION_C_GRID):
            model.set_params(C=float(c)).fit(X_train, labels[train])
            proba = _class_probabilities(
                model.predict_proba(X_val), model.classes_, present.tolist()
            )
            losses[i, j] = log_loss(labels[val], proba, labels=present)
    scored = ~np.isnan(losses).all(axis=1)
    if not scored.any():
        msg = (
            "outcome.label: no inner training fold holds two classes; give more subjects per class."
        )
        raise ValueError(msg)
    mean_loss = losses[scored].mean(axis=0)
    best = int(np.argmin(mean_loss))  # ties: the smaller C (stronger penalty)
    c_best = float(CLASSIFICATION_C_GRID[best])
    model = _pipeline(
        LogisticRegression(C=c_best, class_weight=class_weight, max_iter=CLASSIFICATION_MAX_ITER)
    ).fit(X, labels)
    return LinearBaseline(
        task="classification",
        model=model,
        columns=list(head.output_columns()),
        head_state={"classes": list(head.classes)},
        chosen={
            "C": c_best,
            "penalty": "l2",
            "class_weight": head.class_weight,
            "inner_log_loss": float(mean_loss[best]),
            "inner_folds": len(folds),
            "dropped_columns": _dropped(model),
        },
    )


def _check_survival(outcome: Outcome, head: SurvivalHead) -> None:
    """Raise ValueError unless the outcome has usable times/events and the head is prepared."""
    if outcome.time is None or outcome.event is None:
        msg = "outcome.time and outcome.event are required for the survival baseline."
        raise ValueError(msg)
    time = np.asarray(outcome.time, dtype=np.float64)
    event = np.asarray(outcome.event, dtype=np.float64)
    if not np.isfinite(time).all() or not np.isin(event, (0.0, 1.0)).all():
        msg = "outcome.time must be finite and outcome.event 0/1 on every row."
        raise ValueError(msg)
    if not event.any():
        msg = "outcome.event has no events; the Cox baseline needs at least one observed event."
        raise ValueError(msg)
    if head.grid is None or head.horizons is None:
        msg = "head has no time grid or horizons; call head.prepare(outcome) on the training rows first."
        raise ValueError(msg)


def _coxnet(
    alphas: NDArray[np.float64] | None, *, baseline: bool = False, ratio: float = 0.0
) -> CoxnetSurvivalAnalysis:
    """An unfitted elastic-net Cox model on ``alphas`` (or on its own path when None)."""
    if alphas is None:
        return CoxnetSurvivalAnalysis(
            l1_ratio=COXNET_L1_RATIO,
            n_alphas=COXNET_N_ALPHAS,
            alpha_min_ratio=ratio,
            max_iter=_COXNET_MAX_ITER,
            fit_baseline_model=baseline,
        )
    return CoxnetSurvivalAnalysis(
        l1_ratio=COXNET_L1_RATIO,
        alphas=[float(a) for a in alphas],
        max_iter=_COXNET_MAX_ITER,
        fit_baseline_model=baseline,
    )


def _try_fit(estimator: Any, X: NDArray[np.float64], y: NDArray[Any]) -> Any | None:
    """``estimator`` fitted on (X, y), or None when the fit fails numerically."""
    with warnings.catch_warnings(), np.errstate(over="raise"):
        warnings.filterwarnings("ignore", message="all coefficients are zero")
        try:
            fitted = estimator.fit(X, y)
        except _COX_FIT_ERRORS:
            return None
    cox = fitted[-1] if isinstance(fitted, Pipeline) else fitted
    return fitted if np.isfinite(cox.coef_).all() else None


def _inner_linear_predictors(
    X_train: NDArray[np.float64],
    y_train: NDArray[Any],
    X_val: NDArray[np.float64],
    alphas: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Validation linear predictors at every penalty (rows x alphas; NaN where a fit failed)."""
    model = _try_fit(_coxnet(alphas), X_train, y_train)
    if model is not None:
        return X_val @ model.coef_ - model.offset_
    out = np.full((X_val.shape[0], alphas.size), np.nan)
    for j in range(alphas.size):  # the path failed: fit each penalty alone, skip failures
        single = _try_fit(_coxnet(alphas[j : j + 1]), X_train, y_train)
        if single is not None:
            out[:, j] = X_val @ single.coef_[:, 0] - single.offset_[0]
    return out


def _fit_survival(
    X: NDArray[np.float64],
    outcome: Outcome,
    folds: list[tuple[NDArray[np.int64], NDArray[np.int64]]],
    head: SurvivalHead,
) -> LinearBaseline:
    """Elastic-net Cox with ``alpha`` chosen on its path by the inner Harrell's C."""
    time = np.asarray(outcome.time, dtype=np.float64)
    event = np.asarray(outcome.event).astype(np.float64) == 1.0
    y = Surv.from_arrays(event=event, time=time)
    prepared = Pipeline(_preprocessing()).fit_transform(X)
    alphas: NDArray[np.float64] | None = None
    for ratio in _COXNET_FALLBACK_RATIOS:
        path = _try_fit(_coxnet(None, ratio=ratio), prepared, y)
        if path is not None:
            alphas = np.asarray(path.alphas_, dtype=np.float64)
            break
    if alphas is None:
        msg = "features: the elastic-net Cox path could not be fitted at any penalty (numerical overflow); check the features' scale."
        raise ValueError(msg)

    scores = np.full((len(folds), alphas.size), np.nan)
    for i, (train, val) in enumerate(folds):
        if not event[val].any():
            continue  # Harrell's C needs an event among the held-out rows
        prep = Pipeline(_preprocessing()).fit(X[train])
        risk = _inner_linear_predictors(
            prep.transform(X[train]), y[train], prep.transform(X[val]), alphas
        )
        for j in range(alphas.size):
            if np.isfinite(risk[:, j]).all():
                try:
                    scores[i, j] = concordance_index_censored(event[val], time[val], risk[:, j])[0]
                except NoComparablePairException:
                    continue
    n_scored = (~np.isnan(scores)).sum(axis=0)
    mean_c = np.where(n_scored > 0, np.nansum(scores, axis=0) / np.maximum(n_scored, 1), np.nan)
    # best first; ties keep path order, i.e. the larger penalty first
    order = np.argsort(-np.nan_to_num(mean_c, nan=-np.inf), kind="stable")
    model: Pipeline | None = None
    best = -1
    for j in order[np.isfinite(mean_c[order])]:  # refit at the best penalty that fits
        model = _try_fit(_pipeline(_coxnet(alphas[j : j + 1], baseline=True)), X, y)
        if model is not None:
            best = int(j)
            break
    if model is None:
        msg = "outcome: no penalty of the elastic-net Cox path could be scored and refitted; give more subjects with events."
        raise ValueError(msg)
    cox = model[-1]
    return LinearBaseline(
        task="survival",
        model=model,
        columns=list(head.output_columns()),
        head_state={
            "grid": np.asarray(head.grid, dtype=np.float64).tolist(),
            "horizons": [float(h) for h in head.horizons or []],
        },
        chosen={
            "alpha": float(alphas[best]),
            "l1_ratio": COXNET_L1_RATIO,
            "inner_c_index": float(mean_c[best]),
            "alpha_path": alphas.tolist(),
            "n_nonzero_coefficients": int(np.count_nonzero(cox.coef_[:, 0])),
            "inner_folds": len(folds),
            "dropped_columns": _dropped(model),
        },
    )


def _enet_path_predictions(
    X_train: NDArray[np.float64],
    y_train: NDArray[np.float64],
    X_val: NDArray[np.float64],
    alphas_desc: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Validation predictions of the elastic net along decreasing penalties (rows x alphas).

    Each fit starts from the previous penalty's solution (warm start), as scikit-learn's own
    path does, which keeps the small penalties fast on wide data.
    """
    model = ElasticNet(l1_ratio=REGRESSION_L1_RATIO, max_iter=_REGRESSION_MAX_ITER, warm_start=True)
    out = np.empty((X_val.shape[0], alphas_desc.size))
    for j, alpha in enumerate(alphas_desc):
        model.set_params(alpha=float(alpha)).fit(X_train, y_train)
        out[:, j] = model.predict(X_val)
    return out


def _fit_regression(
    X: NDArray[np.float64],
    target: NDArray[np.float64],
    folds: list[tuple[NDArray[np.int64], NDArray[np.int64]]],
    head: RegressionHead,
) -> LinearBaseline:
    """Elastic net with ``alpha`` chosen by the inner MSE and a conformal interval."""
    alphas_desc = REGRESSION_ALPHA_GRID[::-1]
    oof = np.full((target.size, alphas_desc.size), np.nan)
    mse = np.empty((len(folds), alphas_desc.size))
    for i, (train, val) in enumerate(folds):
        prep = Pipeline(_preprocessing()).fit(X[train])
        oof[val] = _enet_path_predictions(
            prep.transform(X[train]), target[train], prep.transform(X[val]), alphas_desc
        )
        mse[i] = ((oof[val] - target[val, None]) ** 2).mean(axis=0)
    mean_mse = mse.mean(axis=0)
    best = int(np.argmin(mean_mse))  # ties: the larger penalty (grid descends)
    alpha = float(alphas_desc[best])
    residuals = np.abs(target - oof[:, best])
    half_width = float(conformal_quantile(residuals, alpha=1.0 - head.interval_level))

    model = _pipeline(
        ElasticNet(
            alpha=float(alphas_desc[0]),
            l1_ratio=REGRESSION_L1_RATIO,
            max_iter=_REGRESSION_MAX_ITER,
            warm_start=True,
        )
    ).fit(X, target)
    transformed = model[:-1].transform(X)
    for a in alphas_desc[1 : best + 1]:  # the same warm-started path as the inner fits
        model[-1].set_params(alpha=float(a)).fit(transformed, target)
    model[-1].set_params(warm_start=False)
    return LinearBaseline(
        task="regression",
        model=model,
        columns=list(head.output_columns()),
        head_state={"interval_half_width": half_width},
        chosen={
            "alpha": alpha,
            "l1_ratio": REGRESSION_L1_RATIO,
            "inner_rmse": float(np.sqrt(mean_mse[best])),
            "interval_level": float(head.interval_level),
            "interval_half_width": half_width,
            "n_residuals": int(residuals.size),
            "inner_folds": len(folds),
            "dropped_columns": _dropped(model),
        },
    )
