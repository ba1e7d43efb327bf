"""Supervised in-fold feature selection of wide modalities.

Wide modalities (thousands of genes, hundreds of miRNAs) swamp a booster trained on a few hundred
subjects. :class:`FeatureSelection` keeps, within each configured modality, the ``max_features``
design columns most associated with the outcome. It is fitted inside every outer fold on that
fold's training rows only, after normalisation, so the held-out rows' outcomes never choose the
features that score them. Two scores are available (:data:`SELECTION_METHODS`):

* ``univariate``: one association test per column (:func:`univariate_scores`): the ANOVA F for
  classification, the F of a simple linear fit for regression and the Cox partial-likelihood
  score test (:func:`cox_score_statistics`) for survival;
* ``gain``: the total gain of each column in one preliminary XGBoost fit on all design columns
  (:func:`gain_scores`), which also sees interactions and non-linear effects.

Design columns are named ``modality:feature``; the modality of a column is the text before its
first ``:``. Modalities without a selection spec, and the ``visits`` columns of longitudinal
models, keep all their columns. The fitted selection is frozen as JSON with the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from numpy.typing import ArrayLike, NDArray
from sklearn.feature_selection import f_classif, f_regression

from omics_ml.longitudinal import VISIT_PREFIX
from omics_ml.tasks import Outcome

__all__ = [
    "SELECTION_METHODS",
    "FeatureSelection",
    "cox_score_statistics",
    "gain_scores",
    "univariate_scores",
]

#: Scores a modality's ``selection.method`` may name.
SELECTION_METHODS = ("univariate", "gain")

_TASKS = ("classification", "survival", "regression")
_SPEC_KEYS = frozenset({"method", "max_features"})
# Information below this fraction of (number of events x largest squared centred value) is
# rounding noise of a column that is constant within every risk set: its statistic is 0.
_INFORMATION_TOLERANCE = 1e-12


def _matrix(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """``values`` as a 2-D float array, or ValueError naming ``name``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        msg = f"{name} must be a 2-D (rows x columns) array, got shape {arr.shape}."
        raise ValueError(msg)
    return arr


def _rows(values: ArrayLike | None, name: str, n_rows: int, dtype: Any) -> NDArray[Any]:
    """``values`` as a 1-D array of ``n_rows`` entries, or ValueError naming ``name``."""
    if values is None:
        msg = f"{name} is missing: the task needs it to score features."
        raise ValueError(msg)
    arr = np.asarray(values, dtype=dtype)
    if arr.shape != (n_rows,):
        msg = f"{name} must have one entry per row ({n_rows}), got shape {arr.shape}."
        raise ValueError(msg)
    return arr


def cox_score_statistics(
    x: NDArray[np.floating],
    time: NDArray[np.float64],
    event: NDArray[np.integer],
) -> NDArray[np.float64]:
    """Cox partial-likelihood score test of every column at ``beta = 0`` (Breslow ties).

    For each distinct event time ``t_j`` with ``d_j`` events and risk set
    ``R_j = {i : time_i >= t_j}`` (tied event times share one risk set), the score is
    ``U = sum_events x_i - sum_j d_j mean_{R_j}(x)`` and the Breslow information is
    ``I = sum_j d_j var_{R_j}(x)`` (population variance). The statistic ``U^2 / I`` is
    chi-square with 1 degree of freedom under no association; for a binary column without tied
    event times it equals the log-rank statistic. Vectorised over columns: rows are sorted by
    time once and the risk-set sums of ``x`` and ``x^2`` are reverse cumulative sums read at the
    first row of each event time. Columns are centred first (the statistic does not depend on
    the location of ``x``), which keeps the risk-set variances accurate.

    Parameters
    ----------
    x : ndarray of shape (n, p)
        Feature values; no NaN (impute first).
    time : ndarray of shape (n,)
        Finite follow-up times.
    event : ndarray of shape (n,)
        1 for an event, 0 for censoring.

    Returns
    -------
    ndarray of shape (p,)
        The score statistic per column; 0 for a column that is constant (within every risk
        set) and for data without events.

    Raises
    ------
    ValueError
        If ``x`` is not 2-D or has NaN, if ``time`` or ``event`` do not have one entry per row,
        if ``time`` is not finite or if ``event`` holds values other than 0 and 1.
    """
    x = _matrix(x, "x")
    n, p = x.shape
    time = _rows(time, "time", n, np.float64)
    event_raw = _rows(event, "event", n, np.float64)
    if np.isnan(x).any():
        msg = "x has NaN values: impute them (e.g. by the column median) before the Cox score test."
        raise ValueError(msg)
    if not np.isfinite(time).all():
        msg = "time must be finite for every row."
        raise ValueError(msg)
    if not np.isin(event_raw, (0.0, 1.0)).all():
        msg = "event must be 0 (censored) or 1 (event) for every row."
        raise ValueError(msg)
    stat = np.zeros(p, dtype=np.float64)
    if n == 0 or p == 0 or not event_raw.any():
        return stat

    order = np.argsort(time, kind="stable")
    t = time[order]
    e = event_raw[order]
    xs = x[order]
    xs = xs - xs.mean(axis=0)
    # Risk-set sums: row k's risk set is rows k..n-1 of the time-sorted data.
    s1 = np.cumsum(xs[::-1], axis=0)[::-1]
    s2 = np.cumsum((xs * xs)[::-1], axis=0)[::-1]
    at_risk = np.arange(n, 0, -1, dtype=np.float64)

    _, first, inverse = np.unique(t, return_index=True, return_inverse=True)
    deaths = np.bincount(inverse, weights=e, minlength=first.size)
    has_event = deaths > 0
    start = first[has_event]
    d = deaths[has_event]
    n_r = at_risk[start][:, None]
    mean = s1[start] / n_r
    var = np.maximum(s2[start] / n_r - mean * mean, 0.0)

    score = e @ xs - d @ mean
    information = d @ var
    scale = d.sum() * np.max(np.abs(xs), axis=0) ** 2
    ok = (information > _INFORMATION_TOLERANCE * scale) & (np.ptp(x, axis=0) > 0)
    np.divide(score * score, information, out=stat, where=ok)
    return stat


def univariate_scores(
    features: NDArray[np.floating],
    outcome: Outcome,
    *,
    task: str,
) -> NDArray[np.float64]:
    """Univariate association score of every column with the outcome; higher is stronger.

    NaN values are imputed by their column's median over the given rows (a column with no value
    scores 0). Classification uses the ANOVA F (:func:`sklearn.feature_selection.f_classif`) of
    ``outcome.label``, regression the F of a simple linear fit
    (:func:`sklearn.feature_selection.f_regression`) on ``outcome.target`` and survival the Cox
    score statistic (:func:`cox_score_statistics`) of ``outcome.time`` and ``outcome.event``.
    Non-finite scores (constant columns) become 0.

    Parameters
    ----------
    features : ndarray of shape (n, p)
        Feature values of the rows the selection is fitted on; NaN allowed.
    outcome : Outcome
        Outcome of those rows.
    task : {"classification", "survival", "regression"}
        Which outcome fields are scored.

    Returns
    -------
    ndarray of shape (p,)
        Non-negative finite scores.

    Raises
    ------
    ValueError
        If ``task`` is unknown, if ``features`` is not 2-D, if the outcome fields the task
        needs are missing or do not have one entry per row, or if a classification outcome has
        fewer than two classes.
    """
    if task not in _TASKS:
        msg = f"task must be one of {_TASKS}, got {task!r}."
        raise ValueError(msg)
    x = np.array(_matrix(features, "features"), dtype=np.float64, copy=True)
    n = x.shape[0]
    missing = np.isnan(x)
    all_missing = missing.all(axis=0)
    if missing.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(x, axis=0)
        median[all_missing] = 0.0
        x = np.where(missing, median, x)

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        if task == "classification":
            label = _rows(outcome.label, "outcome.label", n, None)
            if np.unique(label).size < 2:
                msg = "outcome.label must hold at least two classes to score features."
                raise ValueError(msg)
            scores, _ = f_classif(x, label)
        elif task == "regression":
            target = _rows(outcome.target, "outcome.target", n, np.float64)
            if not np.isfinite(target).all():
                msg = "outcome.target must be finite for every row."
                raise ValueError(msg)
            scores, _ = f_regression(x, target)
        else:
            time = _rows(outcome.time, "outcome.time", n, np.float64)
            event = _rows(outcome.event, "outcome.event", n, np.float64)
            scores = cox_score_statistics(x, time, event)
    scores = np.asarray(scores, dtype=np.float64)
    scores[~np.isfinite(scores) | all_missing] = 0.0
    return scores


def gain_scores(
    features: NDArray[np.floating],
    dmatrix_fields: Mapping[str, NDArray[Any]],
    *,
    params: Mapping[str, Any],
    n_rounds: int = 100,
) -> NDArray[np.float64]:
    """Total gain of every column in one XGBoost booster.

    Trains ``n_rounds`` rounds with ``params`` (the task's objective, evaluation metric, seed,
    threads and so on) on ``xgb.DMatrix(features, **dmatrix_fields)`` and reads
    ``booster.get_score(importance_type="total_gain")``.

    Parameters
    ----------
    features : ndarray of shape (n, p)
        Feature values; NaN is XGBoost's missing value.
    dmatrix_fields : mapping
        Keyword arguments of :class:`xgboost.DMatrix`: ``label`` and optionally ``weight``, or
        ``label_lower_bound`` and ``label_upper_bound`` for AFT.
    params : mapping
        Booster parameters.
    n_rounds : int, default 100
        Boosting rounds.

    Returns
    -------
    ndarray of shape (p,)
        Total gain per column; 0 for columns the booster never splits on.

    Raises
    ------
    ValueError
        If ``features`` is not 2-D or ``n_rounds`` is below 1.
    """
    x = _matrix(features, "features")
    if isinstance(n_rounds, bool) or not isinstance(n_rounds, int | np.integer) or n_rounds < 1:
        msg = f"n_rounds must be an integer >= 1, got {n_rounds!r}."
        raise ValueError(msg)
    dtrain = xgb.DMatrix(x, **dict(dmatrix_fields))
    booster = xgb.train(dict(params), dtrain, num_boost_round=int(n_rounds))
    names = booster.feature_names
    if names is None:
        names = np.char.add("f", np.arange(x.shape[1]).astype(str)).tolist()
    gain = pd.Series(booster.get_score(importance_type="total_gain"), dtype=np.float64)
    return gain.reindex(names, fill_value=0.0).to_numpy(dtype=np.float64)


def _modalities(columns: Sequence[str]) -> NDArray[np.str_]:
    """Modality of every design column: the text before its first ``:``."""
    return pd.Series(list(columns), dtype=object).astype(str).str.partition(":")[0].to_numpy(str)


def _parse_spec(modality: str, spec: Any) -> dict[str, Any]:
    """A checked ``{"method", "max_features"}`` selection spec of ``modality``."""
    key = f"modalities.{modality}.selection"
    if not isinstance(spec, Mapping):
        msg = f"{key} must be a mapping with method and max_features, got {spec!r}."
        raise ValueError(msg)
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        msg = f"{key} has unknown keys {unknown}: only method and max_features are allowed."
        raise ValueError(msg)
    method = spec.get("method")
    if method not in SELECTION_METHODS:
        msg = f"{key}.method must be one of {SELECTION_METHODS}, got {method!r}."
        raise ValueError(msg)
    max_features = spec.get("max_features")
    if (
        isinstance(max_features, bool)
        or not isinstance(max_features, int | np.integer)
        or max_features < 1
    ):
        msg = f"{key}.max_features must be an integer >= 1, got {max_features!r}."
        raise ValueError(msg)
    return {"method": str(method), "max_features": int(max_features)}


@dataclass
class FeatureSelection:
    """Columns kept by supervised selection within each configured modality.

    Attributes
    ----------
    columns : list of str
        Design columns the selection was fitted on, in order.
    keep : ndarray of bool
        Whether each column is kept.
    scores : ndarray of float
        Score of each column; NaN for columns of modalities without selection.
    specs : dict
        ``{modality: {"method", "max_features"}}`` as used.
    """

    columns: list[str]
    keep: NDArray[np.bool_]
    scores: NDArray[np.float64]
    specs: dict[str, dict[str, Any]]

    @classmethod
    def fit(
        cls,
        features: NDArray[np.floating],
        columns: Sequence[str],
        outcome: Outcome,
        *,
        task: str,
        specs: Mapping[str, Mapping[str, Any]],
        dmatrix_fields: Mapping[str, NDArray[Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        gain_rounds: int = 100,
    ) -> FeatureSelection:
        """Keep the highest-scoring columns within each configured modality.

        Each modality in ``specs`` keeps its ``max_features`` highest-scoring columns (all of
        them if it has fewer), ties going to the earlier column; a score of 0 does not exclude a
        column. ``univariate`` scores the modality's columns with :func:`univariate_scores`;
        ``gain`` reads them from one booster trained on all design columns
        (:func:`gain_scores`). Other modalities and the ``visits`` columns keep everything.

        Parameters
        ----------
        features : ndarray of shape (n, p)
            Design matrix of the training rows, after normalisation.
        columns : sequence of str
            Names of the ``p`` design columns, ``modality:feature``.
        outcome : Outcome
            Outcome of the training rows.
        task : {"classification", "survival", "regression"}
            Prediction task.
        specs : mapping
            ``{modality: {"method": "univariate" | "gain", "max_features": int}}``.
        dmatrix_fields : mapping, optional
            :class:`xgboost.DMatrix` keyword arguments (labels, weights); needed by ``gain``.
        params : mapping, optional
            Booster parameters of the task; needed by ``gain``.
        gain_rounds : int, default 100
            Boosting rounds of the ``gain`` booster.

        Returns
        -------
        FeatureSelection
            The fitted selection.

        Raises
        ------
        ValueError
            If ``task`` is unknown, if ``features`` and ``columns`` disagree or ``columns`` has
            duplicates, if a spec has an unknown ``modalities.<m>.selection.method``, a
            ``modalities.<m>.selection.max_features`` below 1 or names a modality without
            columns (or ``visits``), or if ``gain`` lacks ``dmatrix_fields`` or ``params``.
        """
        if task not in _TASKS:
            msg = f"task must be one of {_TASKS}, got {task!r}."
            raise ValueError(msg)
        x = _matrix(features, "features")
        names = [str(c) for c in columns]
        if len(names) != x.shape[1]:
            msg = f"columns has {len(names)} names but features has {x.shape[1]} columns."
            raise ValueError(msg)
        if pd.Index(names).has_duplicates:
            msg = "columns has duplicate names: every design column must be named once."
            raise ValueError(msg)
        modality = _modalities(names)
        present = set(pd.unique(modality).tolist())
        used: dict[str, dict[str, Any]] = {}
        for name, spec in specs.items():
            key = f"modalities.{name}.selection"
            if name == VISIT_PREFIX:
                msg = f"{key}: the {VISIT_PREFIX} columns are always kept and cannot be selected; remove the spec."
                raise ValueError(msg)
            parsed = _parse_spec(name, spec)
            if name not in present:
                msg = f"{key} is set but no design column belongs to modality {name!r}; remove the spec or check the modality name."
                raise ValueError(msg)
            used[str(name)] = parsed
        if any(s["method"] == "gain" for s in used.values()) and (
            dmatrix_fields is None or params is None
        ):
            msg = "modalities.<m>.selection.method 'gain' needs dmatrix_fields and params (the task's labels and booster parameters)."
            raise ValueError(msg)

        scores = np.full(x.shape[1], np.nan, dtype=np.float64)
        by_method = {
            method: np.isin(modality, [m for m, s in used.items() if s["method"] == method])
            for method in SELECTION_METHODS
        }
        if by_method["univariate"].any():
            scores[by_method["univariate"]] = univariate_scores(
                x[:, by_method["univariate"]], outcome, task=task
            )
        if by_method["gain"].any():
            assert dmatrix_fields is not None and params is not None
            gain = gain_scores(x, dmatrix_fields, params=params, n_rounds=gain_rounds)
            scores[by_method["gain"]] = gain[by_method["gain"]]

        keep = np.ones(x.shape[1], dtype=bool)
        for name, spec in used.items():
            idx = np.flatnonzero(modality == name)
            ranked = idx[np.argsort(-scores[idx], kind="stable")]
            keep[ranked[spec["max_features"] :]] = False
        return cls(columns=names, keep=keep, scores=scores, specs=used)

    def transform(self, features: NDArray[Any]) -> NDArray[Any]:
        """The kept columns of ``features``.

        Parameters
        ----------
        features : ndarray of shape (n, len(columns))
            Design matrix with the columns the selection was fitted on.

        Returns
        -------
        ndarray of shape (n, keep.sum())
            ``features[:, keep]``.

        Raises
        ------
        ValueError
            If ``features`` is not 2-D or its column count differs from ``len(columns)``.
        """
        arr = np.asarray(features)
        if arr.ndim != 2 or arr.shape[1] != len(self.columns):
            msg = f"features must have shape (rows, {len(self.columns)}) like the design the selection was fitted on, got {arr.shape}."
            raise ValueError(msg)
        return arr[:, self.keep]

    @property
    def kept_columns(self) -> list[str]:
        """Names of the kept columns, in design order."""
        return np.asarray(self.columns, dtype=object)[self.keep].tolist()

    def summary(self) -> dict[str, dict[str, int]]:
        """Columns in and kept per modality.

        Returns
        -------
        dict
            ``{modality: {"n_in": int, "n_kept": int}}`` for every modality present, in order of
            first appearance.
        """
        frame = pd.DataFrame({"modality": _modalities(self.columns), "keep": self.keep})
        counts = frame.groupby("modality", sort=False)["keep"].agg(["size", "sum"])
        return {
            str(m): {"n_in": int(row["size"]), "n_kept": int(row["sum"])}
            for m, row in counts.iterrows()
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-safe state; NaN scores are written as None.

        Returns
        -------
        dict
            ``columns``, ``keep``, ``scores`` and ``specs`` as plain lists and dicts.
        """
        scores = self.scores.astype(object)
        scores[np.isnan(self.scores)] = None
        return {
            "columns": list(self.columns),
            "keep": self.keep.astype(bool).tolist(),
            "scores": scores.tolist(),
            "specs": {m: dict(s) for m, s in self.specs.items()},
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> FeatureSelection:
        """Rebuild a selection from :meth:`to_json`.

        Parameters
        ----------
        state : mapping
            Output of :meth:`to_json` (possibly through a JSON round trip).

        Returns
        -------
        FeatureSelection
            The same selection.

        Raises
        ------
        ValueError
            If a key is missing or ``keep`` or ``scores`` do not match ``columns``.
        """
        missing = sorted({"columns", "keep", "scores", "specs"} - set(state))
        if missing:
            msg = f"feature selection state lacks {missing}; save it with FeatureSelection.to_json."
            raise ValueError(msg)
        columns = [str(c) for c in state["columns"]]
        keep = np.asarray(state["keep"], dtype=bool)
        scores = np.asarray(state["scores"], dtype=np.float64)
        if keep.shape != (len(columns),) or scores.shape != (len(columns),):
            msg = f"feature selection state: keep and scores must have one entry per column ({len(columns)})."
            raise ValueError(msg)
        specs = {str(m): _parse_spec(str(m), s) for m, s in state["specs"].items()}
        return cls(columns=columns, keep=keep, scores=scores, specs=specs)
