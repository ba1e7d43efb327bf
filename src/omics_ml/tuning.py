"""Nested hyperparameter tuning of XGBoost inside one outer cross-validation fold.

The outer fold's training subjects are split again into subject-grouped inner folds
(:func:`grouped_folds`); a seeded Optuna TPE search (:func:`tune_xgboost`) scores every trial by
the mean inner-validation loss of an early-stopped ``xgboost.cv`` over those folds. The outer
fold's validation rows never reach the search, so the tuned model's outer metrics stay unbiased.
The first trial is always the configured parameters (when they lie inside the space), so tuning
cannot choose something worse, on the inner folds, than the defaults. With ``n_trials`` alone the
search is deterministic: the same data, folds and seed give the same :class:`TuningResult`.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import xgboost as xgb
from numpy.typing import ArrayLike, NDArray
from sklearn.model_selection import StratifiedGroupKFold

__all__ = [
    "DEFAULT_SEARCH_SPACE",
    "TuningResult",
    "grouped_folds",
    "search_space",
    "tune_xgboost",
]

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "max_depth": {"low": 2, "high": 6, "type": "int"},
    "min_child_weight": {"low": 0.5, "high": 10.0, "log": True},
    "subsample": {"low": 0.5, "high": 1.0},
    "colsample_bynode": {"low": 0.1, "high": 1.0},
    "reg_alpha": {"low": 1e-3, "high": 10.0, "log": True},
    "reg_lambda": {"low": 1e-2, "high": 10.0, "log": True},
    "max_bin": {"choices": [32, 64, 128]},
}
"""Ranges searched by default; ``tuning.search_space`` in the config overrides them."""

_EXTRA_KEYS: tuple[str, ...] = ("gamma", "colsample_bytree")
_ALLOWED_KEYS: frozenset[str] = frozenset(DEFAULT_SEARCH_SPACE) | frozenset(_EXTRA_KEYS)
_RANGE_FIELDS: frozenset[str] = frozenset({"low", "high", "log", "type"})


def _is_number(value: Any) -> bool:
    """True for a real, finite, non-boolean number."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(float(value))
    )


def _python_scalar(value: Any) -> Any:
    """Plain Python ``int``/``float``/``str``/``bool``/``None`` for a (numpy) scalar."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _resolve_spec(key: str, spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check one parameter's range and return it normalised (ints as int, floats as float).

    Raises
    ------
    ValueError
        If the key is not tunable or the range is malformed; the message names ``where.key``.
    """
    name = f"{where}.{key}"
    if key not in _ALLOWED_KEYS:
        raise ValueError(
            f"{name}: unknown parameter; tunable parameters are {sorted(_ALLOWED_KEYS)} "
            "(map a key to null to stop searching it)."
        )
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"{name}: expected a mapping with low/high (optional log, type) or with choices, "
            f"or null to remove it from the search; got {spec!r}."
        )
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise ValueError(
                f"{name}: 'choices' cannot be combined with {sorted(set(spec) - {'choices'})}; "
                "give either choices or low/high."
            )
        choices = spec["choices"]
        if isinstance(choices, str | bytes) or not isinstance(choices, Sequence) or not choices:
            raise ValueError(f"{name}.choices: give a non-empty list of values; got {choices!r}.")
        return {"choices": [_python_scalar(c) for c in choices]}
    unknown = set(spec) - _RANGE_FIELDS
    if unknown:
        raise ValueError(
            f"{name}: unknown fields {sorted(unknown)}; a range has low, high, optional log "
            "(true/false) and type ('int' or 'float'), or give choices."
        )
    if "low" not in spec or "high" not in spec:
        raise ValueError(f"{name}: a range needs both 'low' and 'high' (or give 'choices').")
    kind = spec.get("type", "float")
    if kind not in ("int", "float"):
        raise ValueError(f"{name}.type: must be 'int' or 'float'; got {kind!r}.")
    log = spec.get("log", False)
    if not isinstance(log, bool | np.bool_):
        raise ValueError(f"{name}.log: must be true or false; got {log!r}.")
    low, high = spec["low"], spec["high"]
    if not (_is_number(low) and _is_number(high)):
        raise ValueError(f"{name}: low and high must be finite numbers; got {low!r}, {high!r}.")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ValueError(f"{name}: type 'int' needs integer low and high; got {low!r}, {high!r}.")
    if low >= high:
        raise ValueError(f"{name}: low ({low}) must be smaller than high ({high}).")
    if log and low <= 0:
        raise ValueError(f"{name}: a log-scaled range needs low > 0; got low={low}.")
    cast = int if kind == "int" else float
    return {"low": cast(low), "high": cast(high), "log": bool(log), "type": kind}


def search_space(
    overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """The search space: :data:`DEFAULT_SEARCH_SPACE` updated by the config's ``tuning.search_space``.

    Parameters
    ----------
    overrides
        Parameter name to its new range. A mapping replaces the default range entirely: either
        ``{"low", "high"}`` with optional ``"log"`` (bool) and ``"type"`` (``"int"`` or
        ``"float"``, the default), or ``{"choices": [...]}``. ``None`` removes the parameter
        from the search, so it keeps its configured value. Allowed keys are those of
        :data:`DEFAULT_SEARCH_SPACE` plus ``"gamma"`` and ``"colsample_bytree"``.

    Returns
    -------
    dict
        A new, normalised space (every range has ``low``, ``high``, ``log`` and ``type``;
        categorical parameters have ``choices``), safe to mutate.

    Raises
    ------
    ValueError
        For an unknown key, ``low >= high``, a log range with ``low <= 0``, empty ``choices``,
        a ``type`` other than ``'int'``/``'float'`` or any other malformed range; the message
        names ``tuning.search_space.<key>``.
    """
    merged: dict[str, Any] = copy.deepcopy(DEFAULT_SEARCH_SPACE)
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise ValueError(
                "tuning.search_space: expected a mapping of parameter name to range (or null); "
                f"got {type(overrides).__name__}."
            )
        for key, spec in overrides.items():
            if key not in _ALLOWED_KEYS:
                raise ValueError(
                    f"tuning.search_space.{key}: unknown parameter; tunable parameters are "
                    f"{sorted(_ALLOWED_KEYS)}."
                )
            if spec is None:
                merged.pop(key, None)
            else:
                merged[key] = spec
    return {k: _resolve_spec(k, v, "tuning.search_space") for k, v in merged.items()}


def grouped_folds(
    strata: ArrayLike,
    groups: ArrayLike,
    *,
    n_splits: int,
    seed: int,
) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Subject-grouped inner folds, stratified as far as the subjects allow.

    Uses scikit-learn's ``StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)``;
    its warnings about imperfect stratification (few subjects per class) are silenced because
    stratification here is best effort, while the grouping is strict: every subject's rows lie
    on one side of each split.

    Parameters
    ----------
    strata
        One label per row to stratify on (class, event indicator, or binned outcome).
    groups
        One subject identifier per row.
    n_splits
        Number of inner folds (``tuning.inner_cv_folds`` / ``model.inner_cv_folds``).
    seed
        Random state of the shuffle.

    Returns
    -------
    list of (train_idx, valid_idx)
        Row positions as ``int64`` arrays, one pair per fold, as ``xgboost.cv(folds=...)`` takes.

    Raises
    ------
    ValueError
        If ``n_splits < 2``, the inputs are not 1-D of equal length, there are fewer distinct
        subjects than ``n_splits``, or a fold comes out empty.
    """
    strata_arr = np.asarray(strata)
    groups_arr = np.asarray(groups)
    if isinstance(n_splits, bool) or not isinstance(n_splits, numbers.Integral) or n_splits < 2:
        raise ValueError(
            f"tuning.inner_cv_folds / model.inner_cv_folds: need an integer >= 2; got {n_splits!r}."
        )
    if strata_arr.ndim != 1 or groups_arr.ndim != 1 or strata_arr.shape != groups_arr.shape:
        raise ValueError(
            "grouped_folds: strata and groups must be 1-D with one entry per row; got shapes "
            f"{strata_arr.shape} and {groups_arr.shape}."
        )
    n_groups = np.unique(groups_arr).size
    if n_groups < n_splits:
        raise ValueError(
            f"tuning.inner_cv_folds / model.inner_cv_folds: {n_splits} inner folds need at least "
            f"{n_splits} distinct subjects, but the training rows hold {n_groups}; lower the "
            "number of inner folds or train on more subjects."
        )
    splitter = StratifiedGroupKFold(n_splits=int(n_splits), shuffle=True, random_state=int(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        folds = [
            (train.astype(np.int64), valid.astype(np.int64))
            for train, valid in splitter.split(np.zeros(strata_arr.size), strata_arr, groups_arr)
        ]
    if any(train.size == 0 or valid.size == 0 for train, valid in folds):
        raise ValueError(
            "tuning.inner_cv_folds / model.inner_cv_folds: an inner fold came out empty; "
            "lower the number of inner folds."
        )
    return folds


@dataclass
class TuningResult:
    """Outcome of one :func:`tune_xgboost` search.

    Parameters
    ----------
    params
        The chosen value of every searched parameter (integer parameters as ``int``); merge it
        over the configured parameters to train the final model.
    n_rounds
        Boosting rounds of the best trial (length of its early-stopped ``xgboost.cv`` history).
    score
        Mean inner-validation loss of the best trial.
    metric
        The loss, ``params["eval_metric"]``.
    n_trials
        Number of trials that completed.
    elapsed_s
        Wall-clock seconds the search took.
    trials
        One record per trial: ``number``, ``params``, ``score`` and ``n_rounds`` (``None``
        when the trial did not complete) and ``state`` (``"COMPLETE"``, ``"PRUNED"``, ...).
    """

    params: dict[str, Any]
    n_rounds: int
    score: float
    metric: str
    n_trials: int
    elapsed_s: float
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """All fields as JSON-safe values (dicts, lists, floats, ints, strings, ``None``).

        Returns
        -------
        dict
            A mapping that ``json.dumps`` accepts and :meth:`from_json` reads back.
        """
        return {
            "params": {k: _python_scalar(v) for k, v in self.params.items()},
            "n_rounds": int(self.n_rounds),
            "score": float(self.score),
            "metric": str(self.metric),
            "n_trials": int(self.n_trials),
            "elapsed_s": float(self.elapsed_s),
            "trials": [
                {
                    "number": int(t["number"]),
                    "params": {k: _python_scalar(v) for k, v in t["params"].items()},
                    "score": None if t["score"] is None else float(t["score"]),
                    "n_rounds": None if t["n_rounds"] is None else int(t["n_rounds"]),
                    "state": str(t["state"]),
                }
                for t in self.trials
            ],
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> TuningResult:
        """Rebuild a result from :meth:`to_json` output.

        Parameters
        ----------
        state
            The mapping written by :meth:`to_json` (for instance after a JSON round trip).

        Returns
        -------
        TuningResult
            A result equal to the one that was serialised.

        Raises
        ------
        ValueError
            If a field is missing.
        """
        required = ("params", "n_rounds", "score", "metric", "n_trials", "elapsed_s", "trials")
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(
                f"TuningResult.from_json: state lacks {missing}; pass the output of to_json()."
            )
        return cls(
            params=dict(state["params"]),
            n_rounds=int(state["n_rounds"]),
            score=float(state["score"]),
            metric=str(state["metric"]),
            n_trials=int(state["n_trials"]),
            elapsed_s=float(state["elapsed_s"]),
            trials=[
                {
                    "number": int(t["number"]),
                    "params": dict(t["params"]),
                    "score": None if t["score"] is None else float(t["score"]),
                    "n_rounds": None if t["n_rounds"] is None else int(t["n_rounds"]),
                    "state": str(t["state"]),
                }
                for t in state["trials"]
            ],
        )


def _suggest(trial: optuna.Trial, name: str, spec: Mapping[str, Any]) -> Any:
    """Sample one parameter of the (resolved) space."""
    if "choices" in spec:
        return trial.suggest_categorical(name, list(spec["choices"]))
    if spec["type"] == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], log=spec["log"])
    return trial.suggest_float(name, spec["low"], spec["high"], log=spec["log"])


def _inside(value: Any, spec: Mapping[str, Any]) -> bool:
    """Whether a configured value is a legal point of one parameter's range."""
    value = _python_scalar(value)
    if "choices" in spec:
        return any(type(value) is type(c) and value == c for c in spec["choices"]) or (
            _is_number(value) and any(_is_number(c) and value == c for c in spec["choices"])
        )
    if not _is_number(value) or not spec["low"] <= value <= spec["high"]:
        return False
    return spec["type"] != "int" or float(value).is_integer()


def _configured_point(
    params: Mapping[str, Any], space: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The caller's values of the searched parameters that lie inside the space."""
    point: dict[str, Any] = {}
    for name, spec in space.items():
        if name in params and _inside(params[name], spec):
            value = _python_scalar(params[name])
            if "choices" in spec:
                value = next(c for c in spec["choices"] if c == value)
            elif spec["type"] == "int":
                value = int(value)
            else:
                value = float(value)
            point[name] = value
    return point


def tune_xgboost(
    dtrain: xgb.DMatrix,
    folds: Sequence[tuple[NDArray[np.int64], NDArray[np.int64]]],
    *,
    params: Mapping[str, Any],
    n_estimators: int,
    early_stopping_rounds: int,
    n_trials: int,
    timeout_s: float | None = None,
    space: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
) -> TuningResult:
    """Search XGBoost hyperparameters by a seeded TPE over grouped inner cross-validation.

    Each trial samples every parameter of ``space``, merges it over ``params`` and runs
    ``xgboost.cv`` on ``folds`` with early stopping; its score is the mean inner-validation
    ``params["eval_metric"]`` at the best round and its rounds are the length of the
    early-stopped history. The first trial is the caller's current values of the searched
    parameters (those inside the space), so the search cannot end worse, on these folds, than
    the configuration. A trial whose score is not finite is pruned and never chosen. Trials run
    one after another, so the result is deterministic given ``n_trials``; when ``timeout_s``
    also stops the search, the number of trials (hence the result) may depend on machine speed.
    An empty ``space`` runs the configured parameters once.

    Parameters
    ----------
    dtrain
        The outer fold's training rows only, as a plain ``xgboost.DMatrix`` (not a
        ``QuantileDMatrix``, whose bins are fixed at construction: ``max_bin`` may vary per
        trial).
    folds
        Inner ``(train_idx, valid_idx)`` row positions into ``dtrain``, e.g. from
        :func:`grouped_folds`.
    params
        Full XGBoost parameters, including ``objective``, ``eval_metric`` (one metric name),
        ``seed``, ``nthread`` and ``tree_method``; the sampled values override them.
    n_estimators
        Maximum boosting rounds per trial.
    early_stopping_rounds
        Rounds without improvement of the mean inner-validation loss before a trial stops.
    n_trials
        Number of trials (``tuning.n_trials``).
    timeout_s
        Optional safety cap on the search's wall-clock seconds; ``None`` means no limit.
    space
        A resolved space from :func:`search_space`; ``None`` uses :data:`DEFAULT_SEARCH_SPACE`.
    seed
        Seed of the TPE sampler and of ``xgboost.cv``.

    Returns
    -------
    TuningResult
        The best trial's parameters, rounds and score, and every trial's record.

    Raises
    ------
    ValueError
        If ``n_trials``, ``n_estimators`` or ``early_stopping_rounds`` is below 1, ``timeout_s``
        is not positive, ``folds`` is empty, ``params`` lacks a single ``eval_metric``, the space
        is malformed, or no trial completed.
    """
    for name, value in (
        ("n_trials", n_trials),
        ("n_estimators", n_estimators),
        ("early_stopping_rounds", early_stopping_rounds),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"tune_xgboost: {name} must be an integer >= 1; got {value!r}.")
    if timeout_s is not None and not (_is_number(timeout_s) and timeout_s > 0):
        raise ValueError(
            f"tune_xgboost: timeout_s must be a positive number of seconds or None; got {timeout_s!r}."
        )
    if not folds:
        raise ValueError("tune_xgboost: folds is empty; pass inner folds from grouped_folds().")
    metric = params.get("eval_metric")
    if not isinstance(metric, str):
        raise ValueError(
            "tune_xgboost: params['eval_metric'] must be one metric name (e.g. 'mlogloss', "
            f"'cox-nloglik'); got {metric!r}."
        )
    resolved = {
        k: _resolve_spec(k, v, "space")
        for k, v in (DEFAULT_SEARCH_SPACE if space is None else space).items()
    }
    fold_list = [(np.asarray(tr), np.asarray(va)) for tr, va in folds]
    column = f"test-{metric}-mean"

    def objective(trial: optuna.Trial) -> float:
        sampled = {name: _suggest(trial, name, spec) for name, spec in resolved.items()}
        history = xgb.cv(
            {**params, **sampled},
            dtrain,
            num_boost_round=int(n_estimators),
            folds=fold_list,
            early_stopping_rounds=int(early_stopping_rounds),
            seed=int(seed),
            verbose_eval=False,
        )
        score = float(history[column].iloc[-1])
        trial.set_user_attr("n_rounds", len(history))
        if not math.isfinite(score):
            raise optuna.TrialPruned(f"non-finite inner-validation {metric}: {score}")
        return score

    n_run = int(n_trials) if resolved else 1
    sampler = optuna.samplers.TPESampler(
        seed=int(seed), n_startup_trials=min(10, max(3, n_run // 3))
    )
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    try:
        study = optuna.create_study(direction="minimize", sampler=sampler)
        point = _configured_point(params, resolved)
        if point:
            study.enqueue_trial(point)
        study.optimize(objective, n_trials=n_run, timeout=timeout_s, n_jobs=1)
    finally:
        optuna.logging.set_verbosity(verbosity)
    elapsed = time.perf_counter() - start

    records = [
        {
            "number": int(t.number),
            "params": {k: _python_scalar(v) for k, v in t.params.items()},
            "score": float(t.value)
            if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
            else None,
            "n_rounds": int(t.user_attrs["n_rounds"]) if "n_rounds" in t.user_attrs else None,
            "state": t.state.name,
        }
        for t in study.trials
    ]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(
            f"tune_xgboost: none of {len(study.trials)} trials completed (inner-validation "
            f"{metric} was not finite); check the outcome labels and params, narrow "
            "tuning.search_space, or raise tuning.timeout_s / tuning.n_trials."
        )
    best = study.best_trial
    result = TuningResult(
        params={k: _python_scalar(v) for k, v in best.params.items()},
        n_rounds=int(best.user_attrs["n_rounds"]),
        score=float(best.value),
        metric=metric,
        n_trials=len(complete),
        elapsed_s=float(elapsed),
        trials=records,
    )
    logger.info(
        "Tuned XGBoost: best inner-CV %s %.5g at %d rounds (trial %d; %d of %d trials "
        "completed) in %.1f s",
        metric,
        result.score,
        result.n_rounds,
        best.number,
        len(complete),
        len(study.trials),
        elapsed,
    )
    return result
