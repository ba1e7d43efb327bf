"""Benchmark: out-of-fold survival and longitudinal predictions on four SurvSet cohorts.

Runs omics-ml's pipeline (:func:`omics_ml.pipeline.fit_pipeline`, the code the Snakemake
workflow runs per outer fold) and, in the same run, on the same subject-grouped outer folds, a
reference model from scikit-survival:

- ``gse1992`` (breast cancer, 124 arrays, 15,528 genes plus clinical covariates, relapse-free
  survival in months) and ``DLBCL`` (240 lymphomas, 7,399 genes): XGBoost ``survival:cox`` on
  the top-N variance genes (chosen inside each fold on its training subjects) next to an
  elastic-net Cox model (``CoxnetSurvivalAnalysis``, ``l1_ratio=0.5``) on the same fold's
  feature matrix, its penalty chosen by an inner subject-grouped 5-fold CV (Harrell's C) on the
  fold's training subjects only.
- ``aids`` (ddI/ddC trial, square-root CD4 at visits 0-18 months, death): landmark survival at
  6 months (horizons 6 and 12 months after it) next to a ridge-penalised Cox PH model on the same
  landmark features; and CD4 at 12 months from the visits up to 6 months (split-conformal 90%
  interval) next to the last observed CD4 carried forward.
- ``csl`` (prednisone in liver cirrhosis, prothrombin at visits, years): landmark survival at
  1 year (horizons 1 and 3 years after it) next to the same Cox PH reference.

Both sides are scored by the same code (:func:`omics_ml.survival.survival_metrics`, which
:func:`omics_ml.assess.point_metrics` calls): Harrell's and Uno's C-index and the integrated
Brier score of the pooled out-of-fold predictions, on one survival time grid per cohort. The
difference of Harrell's C (and of the RMSE) gets a paired subject-bootstrap interval, and the
per-fold C-indices are printed too. Prints Markdown tables and the machine description.

Run: ``python benchmarks/survival_cohorts.py --data-dir DIR`` with DIR holding the SurvSet
Parquet exports ``gse1992.parquet``, ``DLBCL.parquet``, ``aids.parquet`` and ``csl.parquet``.
"""

from __future__ import annotations

import os

# XGBoost's OpenMP threads sleep while they wait, as in the workflow (workflow/rules/common.smk):
# spinning threads slow training manyfold when another process shares the cores. Set before
# xgboost loads the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime
import platform
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import sklearn
import sksurv
import xgboost
from numpy.typing import NDArray
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from omics_ml.assess import point_metrics
from omics_ml.interval_data import split_interval_table
from omics_ml.pipeline import OmicsPipeline, fit_pipeline
from omics_ml.regression import regression_metrics
from omics_ml.split import survival_evaluation_times
from omics_ml.survival import BreslowBaseline, survival_at, survival_metrics
from omics_ml.tasks import horizon_label

#: XGBoost settings of the expression cohorts (those of ``config/survival.yaml``).
EXPRESSION_MODEL: dict[str, Any] = {
    "n_estimators": 500,
    "learning_rate": 0.02,
    "max_depth": 2,
    "min_child_weight": 2,
    "subsample": 0.8,
    "colsample_bytree": 0.3,
    "max_bin": 64,
    "inner_cv_folds": 5,
    "early_stopping_rounds": 50,
}
#: XGBoost settings of the longitudinal cohorts (those of ``config/longitudinal.yaml``).
LONGITUDINAL_MODEL: dict[str, Any] = {
    "n_estimators": 500,
    "learning_rate": 0.03,
    "max_depth": 2,
    "min_child_weight": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "max_bin": 64,
    "inner_cv_folds": 5,
    "early_stopping_rounds": 50,
}
COXNET_L1_RATIO = 0.5
COXNET_N_ALPHAS = 50
COXNET_ALPHA_MIN_RATIO = 0.01
COXPH_ALPHA = 0.1  # ridge penalty of the landmark Cox PH reference (standardised features)


@dataclass
class Cohort:
    """One benchmark problem: the pipeline's raw input and outcome tables and its config.

    Attributes
    ----------
    name : str
        Cohort name as printed.
    task : str
        Short task description as printed.
    frame : pandas.DataFrame
        Raw input table: ``sample_id``, ``subject_id`` (and ``visit_time``), then
        ``modality:feature`` columns; one row per sample (visit).
    outcomes : pandas.DataFrame
        Aligned with ``frame``: ``subject_id``, ``label`` (``event``/``censored``), ``time``
        and ``event`` of the sample's subject.
    config : dict
        Pipeline config (``task``, ``modalities``, ``model``, ``seed`` and task sections).
    reference : str
        Name of the reference model as printed.
    """

    name: str
    task: str
    frame: pd.DataFrame
    outcomes: pd.DataFrame
    config: dict[str, Any]
    reference: str


@dataclass
class FoldRun:
    """Out-of-fold predictions of one model on one cohort.

    Attributes
    ----------
    pooled : pandas.DataFrame
        Test-row predictions of every outer fold, with ``sample_id``, ``subject_id``, ``fold``
        and the outcome columns.
    per_fold : list of dict
        Metrics of each outer fold.
    seconds : float
        Wall time of fitting and predicting, all folds.
    extra : dict
        Model facts (boosting rounds, chosen penalty).
    """

    pooled: pd.DataFrame
    per_fold: list[dict[str, float]]
    seconds: float
    extra: dict[str, list[Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Data


def _label(event: NDArray[Any]) -> NDArray[np.str_]:
    return np.where(np.asarray(event) == 1, "event", "censored")


def _categorical(series: pl.Series) -> list[str | None]:
    """SurvSet factor values as text, its ``missing`` level as a missing value."""
    values = series.cast(pl.String).to_list()
    return [None if v is None or v == "missing" else v for v in values]


def load_expression(
    path: Path,
    *,
    gene_prefix: str,
    clinical_numeric: Sequence[str] = (),
    clinical_factors: Sequence[str] = (),
    top_n: int,
    horizons: list[float] | None,
    seed: int,
    name: str,
) -> Cohort:
    """A cross-sectional SurvSet cohort: one array per subject, genes and clinical covariates.

    Parameters
    ----------
    path : Path
        SurvSet Parquet export (``pid``, ``event``, ``time``, ``num_*``, ``fac_*``).
    gene_prefix : str
        Prefix of the gene columns (``num_HS_``, ``num_gene_``).
    clinical_numeric, clinical_factors : sequence of str
        SurvSet columns of the clinical modality (numbers; categories).
    top_n : int
        Genes kept by the in-fold variance filter.
    horizons : list of float or None
        Survival horizons; None takes the quartiles of the event times.
    seed : int
        Seed of the model.
    name : str
        Cohort name.

    Returns
    -------
    Cohort
    """
    schema = pl.read_parquet_schema(path)
    genes = [c for c in schema if c.startswith(gene_prefix)]
    table = pl.read_parquet(
        path, columns=["pid", "event", "time", *clinical_numeric, *clinical_factors, *genes]
    )
    subjects = table["pid"].cast(pl.String).to_numpy().astype(object)
    matrix = table.select(pl.col(genes).cast(pl.Float32)).to_numpy()
    columns = [f"expression:{g.removeprefix('num_')}" for g in genes]
    frame = pd.concat(
        [
            pd.DataFrame({"sample_id": [f"{s}_t0" for s in subjects], "subject_id": subjects}),
            pd.DataFrame(matrix.astype(np.float64), columns=columns),
        ],
        axis=1,
    )
    modalities: dict[str, Any] = {
        "expression": {
            "type": "transcriptomics",
            "normalisation": [
                {"method": "variance_filter", "top_n": top_n},
                {"method": "median_scaling"},
            ],
        }
    }
    if clinical_numeric or clinical_factors:
        for column in clinical_numeric:
            frame[f"clinical:{column.removeprefix('num_')}"] = table[column].cast(pl.Float64)
        for column in clinical_factors:
            values = _categorical(table[column])
            frame[f"clinical:{column.removeprefix('fac_')}"] = pd.Series(values, dtype=object)
        modalities["clinical"] = {"type": "clinical"}
    event = table["event"].to_numpy()
    outcomes = pd.DataFrame(
        {
            "subject_id": subjects,
            "label": _label(event),
            "time": table["time"].cast(pl.Float64).to_numpy(),
            "event": event.astype(np.int8),
        }
    )
    config = {
        "task": "survival",
        "seed": seed,
        "modalities": modalities,
        "model": dict(EXPRESSION_MODEL),
        "survival": {"objective": "cox", "horizons": horizons},
    }
    n_clinical = len(clinical_numeric) + len(clinical_factors)
    task = f"survival; {len(genes):,} genes" + (f" + {n_clinical} clinical" if n_clinical else "")
    return Cohort(
        name, task, frame, outcomes, config, f"Coxnet (l1_ratio {COXNET_L1_RATIO}, tuned alpha)"
    )


def load_longitudinal(
    path: Path,
    *,
    modalities: Mapping[str, Mapping[str, str]],
    summarise: list[str],
    landmark: float,
    seed: int,
    name: str,
    task: str,
    horizons: list[float] | None = None,
    target: dict[str, Any] | None = None,
) -> Cohort:
    """A SurvSet counting-process cohort as one row per visit, for a landmark model.

    Parameters
    ----------
    path : Path
        SurvSet Parquet export (``pid``, ``event``, ``time``, ``time2``, covariates at ``time``).
    modalities : mapping
        Modality name -> {SurvSet column: feature name}.
    summarise : list of str
        Modalities summarised by baseline, last, slope and change.
    landmark : float
        Landmark time.
    seed : int
        Seed of the model.
    name, task : str
        Cohort name and task description.
    horizons : list of float, optional
        Survival horizons after the landmark (survival task).
    target : dict, optional
        ``feature``, ``horizon`` and ``window`` of a future marker value (regression task).

    Returns
    -------
    Cohort
    """
    table = pl.read_parquet(path)
    cohort = split_interval_table(
        table, subject="pid", start="time", stop="time2", event="event", source=str(path)
    )
    samples = cohort.samples.join(cohort.outcomes, on="subject_id", how="left")
    frame = pd.DataFrame(
        {
            "sample_id": cohort.samples["sample_id"].to_list(),
            "subject_id": cohort.samples["subject_id"].to_list(),
            "visit_time": cohort.samples["visit_time"].to_numpy(),
        }
    )
    config_modalities: dict[str, Any] = {}
    for modality, columns in modalities.items():
        for column, feature in columns.items():
            values = cohort.visits[column]
            if values.dtype == pl.String:
                frame[f"{modality}:{feature}"] = pd.Series(_categorical(values), dtype=object)
            else:
                frame[f"{modality}:{feature}"] = values.cast(pl.Float64).to_numpy()
        config_modalities[modality] = {"type": "clinical"}
    event = samples["event"].to_numpy()
    outcomes = pd.DataFrame(
        {
            "subject_id": samples["subject_id"].to_list(),
            "label": _label(event),
            "time": samples["time"].to_numpy(),
            "event": event.astype(np.int8),
        }
    )
    config: dict[str, Any] = {
        "seed": seed,
        "modalities": config_modalities,
        "model": dict(LONGITUDINAL_MODEL),
        "longitudinal": {"landmarks": [landmark], "summarise": summarise},
    }
    if target is None:
        config["task"] = "survival"
        config["survival"] = {"objective": "cox", "horizons": horizons}
        reference = f"Cox PH (ridge alpha {COXPH_ALPHA}), same landmark features"
    else:
        config["task"] = "regression"
        config["longitudinal"]["target"] = target
        config["regression"] = {"interval_level": 0.9, "calibration_fraction": 0.25}
        reference = "last observed value carried forward"
    return Cohort(name, task, frame, outcomes, config, reference)


def outer_folds(
    cohort: Cohort, *, n_splits: int, seed: int
) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Subject-grouped outer folds stratified by event, as :func:`omics_ml.split.make_splits`.

    Every subject is in the test fold of exactly one split (no locked holdout is set aside).

    Parameters
    ----------
    cohort : Cohort
        The cohort; its ``outcomes`` give the event label and subject of each row.
    n_splits : int
        Number of outer folds.
    seed : int
        Shuffling seed.

    Returns
    -------
    list of (train, test)
        Row indices of ``cohort.frame``; all rows of a subject fall in one test fold.
    """
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    labels = cohort.outcomes["label"].to_numpy()
    groups = cohort.outcomes["subject_id"].astype(str).to_numpy()
    return [
        (np.sort(train), np.sort(test))
        for train, test in splitter.split(np.zeros(len(labels)), labels, groups)
    ]


def evaluation_times(cohort: Cohort) -> dict[str, list[float]] | None:
    """Grid and horizons of the survival curves from all subjects, as the split step sets them."""
    if cohort.config["task"] != "survival":
        return None
    table = pl.DataFrame(
        {
            "sample_id": cohort.frame["sample_id"].astype(str).to_numpy(),
            "subject_id": cohort.outcomes["subject_id"].astype(str).to_numpy(),
            "time": cohort.outcomes["time"].to_numpy(np.float64),
            "event": cohort.outcomes["event"].to_numpy(np.int64),
        }
    )
    return survival_evaluation_times(
        table,
        table["sample_id"].to_list(),
        landmarks=(cohort.config.get("longitudinal") or {}).get("landmarks"),
        horizons=cohort.config["survival"].get("horizons"),
    )


# --------------------------------------------------------------------------------------------
# Models


def run_ours(
    cohort: Cohort,
    folds: Sequence[tuple[NDArray[np.int64], NDArray[np.int64]]],
    times: Mapping[str, Sequence[float]] | None,
    *,
    nthread: int,
) -> tuple[FoldRun, list[OmicsPipeline]]:
    """Fit the omics-ml pipeline per outer fold on its training subjects; predict its test rows.

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    folds : sequence of (train, test)
        Outer folds (row indices).
    times : mapping or None
        Survival ``grid`` and ``horizons`` shared by every fold (survival tasks).
    nthread : int
        XGBoost threads.

    Returns
    -------
    run : FoldRun
        Pooled out-of-fold predictions, per-fold metrics (as ``train_fold`` computes them) and
        the wall time.
    pipelines : list of OmicsPipeline
        The fitted pipeline of each fold.
    """
    frames, per_fold, pipelines, rounds = [], [], [], []
    seconds = 0.0
    for k, (train, test) in enumerate(folds):
        start = time.perf_counter()
        pipeline = fit_pipeline(
            cohort.frame.iloc[train].reset_index(drop=True),
            cohort.outcomes.iloc[train].reset_index(drop=True),
            config=cohort.config,
            nthread=nthread,
            survival_times=times,
        )
        predicted = pipeline.evaluation_frame(
            cohort.frame.iloc[test].reset_index(drop=True),
            cohort.outcomes.iloc[test].reset_index(drop=True),
        )
        seconds += time.perf_counter() - start
        reference = None
        if pipeline.task == "survival":
            reference = pipeline.evaluation_frame(
                cohort.frame.iloc[train].reset_index(drop=True),
                cohort.outcomes.iloc[train].reset_index(drop=True),
            )
        predicted["fold"] = k
        per_fold.append(point_metrics(predicted, head=pipeline.head.to_json(), reference=reference))
        frames.append(predicted)
        pipelines.append(pipeline)
        rounds.append(int(pipeline.info["n_rounds"]))
    pooled = pd.concat(frames, ignore_index=True)
    if pooled["sample_id"].duplicated().any():
        msg = f"{cohort.name}: a row is predicted by more than one outer fold."
        raise RuntimeError(msg)
    return FoldRun(pooled, per_fold, seconds, {"n_rounds": rounds}), pipelines


def _design(
    pipeline: OmicsPipeline, cohort: Cohort, rows: NDArray[np.int64]
) -> tuple[pd.DataFrame, NDArray[np.float32], NDArray[np.void]]:
    """The booster's input rows of ``rows`` (fold-fitted preprocessing) and their outcome."""
    meta, features, outcome = pipeline.design(
        cohort.frame.iloc[rows].reset_index(drop=True),
        cohort.outcomes.iloc[rows].reset_index(drop=True),
    )
    assert outcome is not None
    y = Surv.from_arrays(event=np.asarray(outcome.event) == 1, time=np.asarray(outcome.time))
    return meta, features, y


def _scaler() -> Pipeline:
    """Median imputation and standardisation, fitted on the rows it is fitted on only."""
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler())


def _curves(
    functions: Sequence[Any],
    grid: NDArray[np.float64],
    *,
    train_risk: NDArray[np.float64],
    y_train: NDArray[np.void],
    test_risk: NDArray[np.float64],
) -> tuple[NDArray[np.float64], bool]:
    """Survival curves of a scikit-survival Cox model on ``grid``, checked.

    The model's step functions are read on ``grid`` by the step rule. When they are not
    probabilities (scikit-survival's Breslow estimator forms each risk-set sum by subtracting
    from the total, which cancels catastrophically when the linear predictors span dozens of
    units, and then returns "survival" far above 1), the curves are recomputed from the same
    linear predictors with a Breslow baseline that sums the risk sets directly
    (:class:`omics_ml.survival.BreslowBaseline`).

    Returns
    -------
    survival : ndarray of shape (n_test, len(grid))
    recomputed : bool
        Whether the fallback was used.
    """
    knots = np.asarray(functions[0].x, dtype=np.float64)
    values = np.vstack([np.asarray(f.y, dtype=np.float64) for f in functions])
    survival = survival_at(knots, values, grid)
    if np.isfinite(survival).all() and survival.min() >= 0.0 and survival.max() <= 1.0 + 1e-9:
        return survival, False
    baseline = BreslowBaseline.fit(train_risk, y_train["time"], y_train["event"])
    return baseline.survival(test_risk, grid), True


def tuned_coxnet(
    X: NDArray[np.float32], y: NDArray[np.void], groups: NDArray[Any], *, seed: int
) -> tuple[Pipeline, CoxnetSurvivalAnalysis, float]:
    """Elastic-net Cox with its penalty chosen by inner subject-grouped 5-fold CV (Harrell's C).

    The penalty path comes from a first fit on all rows given (the outer fold's training
    subjects); each inner fit runs that same path on its inner-training rows (imputer and
    scaler refitted there) and scores every penalty on its inner-validation rows. The penalty
    with the best mean C-index is refitted on all rows given, with the Breslow baseline.

    Returns
    -------
    scaler : Pipeline
        Imputer and scaler fitted on all rows given.
    model : CoxnetSurvivalAnalysis
        Fitted along the path, with baseline models.
    alpha : float
        The chosen penalty.
    """
    scaler = _scaler().fit(X)
    Xs = scaler.transform(X)
    path = CoxnetSurvivalAnalysis(
        l1_ratio=COXNET_L1_RATIO,
        n_alphas=COXNET_N_ALPHAS,
        alpha_min_ratio=COXNET_ALPHA_MIN_RATIO,
        max_iter=100_000,
    ).fit(Xs, y)
    alphas = np.asarray(path.alphas_, dtype=np.float64)
    inner = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = np.full((5, alphas.size), np.nan)
    for i, (fit_idx, val_idx) in enumerate(inner.split(X, y["event"], groups)):
        inner_scaler = _scaler().fit(X[fit_idx])
        model = CoxnetSurvivalAnalysis(
            l1_ratio=COXNET_L1_RATIO, alphas=alphas, max_iter=100_000
        ).fit(inner_scaler.transform(X[fit_idx]), y[fit_idx])
        Xv = inner_scaler.transform(X[val_idx])
        if not y["event"][val_idx].any():
            continue
        for j, alpha in enumerate(model.alphas_):
            risk = model.predict(Xv, alpha=alpha)
            scores[i, j] = concordance_index_censored(
                y["event"][val_idx], y["time"][val_idx], risk
            )[0]
    mean = np.nanmean(scores, axis=0)
    best = float(alphas[int(np.nanargmax(mean))])  # ties: the larger penalty (path descends)
    model = CoxnetSurvivalAnalysis(
        l1_ratio=COXNET_L1_RATIO, alphas=alphas, max_iter=100_000, fit_baseline_model=True
    ).fit(Xs, y)
    return scaler, model, best


def run_reference_survival(
    cohort: Cohort,
    folds: Sequence[tuple[NDArray[np.int64], NDArray[np.int64]]],
    pipelines: Sequence[OmicsPipeline],
    *,
    seed: int,
) -> FoldRun:
    """Fit the reference Cox model per outer fold on the same rows and features as ours.

    The input matrix of each fold is the one its omics-ml booster sees (preprocessing fitted on
    the fold's training subjects). Expression cohorts get :func:`tuned_coxnet`; landmark cohorts
    a Cox PH model with a small ridge penalty after median imputation and standardisation.

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    folds : sequence of (train, test)
        The outer folds of :func:`run_ours`.
    pipelines : sequence of OmicsPipeline
        The fold pipelines of :func:`run_ours`; their fitted preprocessing builds the input
        matrix, their heads give the survival grid and horizons.
    seed : int
        Seed of the inner folds.

    Returns
    -------
    FoldRun
        Its seconds cover fitting and predicting, not building the input matrix.
    """
    frames, per_fold, alphas, fallback = [], [], [], []
    seconds = 0.0
    for k, ((train, test), pipeline) in enumerate(zip(folds, pipelines, strict=True)):
        head = pipeline.head.to_json()
        grid = np.asarray(head["grid"], dtype=np.float64)
        train_meta, X_train, y_train = _design(pipeline, cohort, train)
        test_meta, X_test, y_test = _design(pipeline, cohort, test)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence and overflow; the curves are checked
            if pipeline.landmarks is None:
                groups = train_meta["subject_id"].astype(str).to_numpy()
                scaler, model, alpha = tuned_coxnet(X_train, y_train, groups, seed=seed)
                options: dict[str, Any] = {"alpha": alpha}
                alphas.append(alpha)
            else:
                scaler = _scaler().fit(X_train)
                model = CoxPHSurvivalAnalysis(alpha=COXPH_ALPHA, ties="breslow").fit(
                    scaler.transform(X_train), y_train
                )
                options = {}
            Xt = scaler.transform(X_test)
            risk = model.predict(Xt, **options)
            survival, recomputed = _curves(
                model.predict_survival_function(Xt, **options),
                grid,
                train_risk=model.predict(scaler.transform(X_train), **options),
                y_train=y_train,
                test_risk=risk,
            )
        seconds += time.perf_counter() - start
        if recomputed:
            fallback.append(k + 1)
        per_fold.append(
            reference_metrics(
                y_test["time"],
                y_test["event"],
                risk,
                survival,
                head=head,
                train_time=y_train["time"],
                train_event=y_train["event"],
            )
        )
        part = pd.DataFrame(
            {
                "sample_id": test_meta["sample_id"].to_numpy(),
                "time": y_test["time"],
                "event": y_test["event"].astype(np.int8),
                "risk_score": risk,
                "fold": k,
            }
        )
        curve = pd.DataFrame(survival, columns=[f"surv_{horizon_label(t)}" for t in grid])
        frames.append(pd.concat([part, curve], axis=1))
    extra: dict[str, list[Any]] = {"recomputed_curves": fallback}
    if alphas:
        extra["alpha"] = alphas
    return FoldRun(pd.concat(frames, ignore_index=True), per_fold, seconds, extra)


def reference_metrics(
    time_: NDArray[np.float64],
    event: NDArray[Any],
    risk: NDArray[np.float64],
    survival: NDArray[np.float64],
    *,
    head: Mapping[str, Any],
    train_time: NDArray[np.float64],
    train_event: NDArray[Any],
) -> dict[str, float]:
    """:func:`omics_ml.survival.survival_metrics` on the head's grid and horizons."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return survival_metrics(
            time_,
            np.asarray(event).astype(np.int8),
            risk,
            survival,
            np.asarray(head["grid"], dtype=np.float64),
            list(head["horizons"]),
            train_time=train_time,
            train_event=np.asarray(train_event).astype(np.int8),
        )


def last_value_carried_forward(cohort: Cohort, pooled: pd.DataFrame) -> NDArray[np.float64]:
    """Each predicted subject's last observed target marker at or before the landmark."""
    spec = cohort.config["longitudinal"]
    feature = spec["target"]["feature"]
    landmark = float(spec["landmarks"][0])
    visits = pd.DataFrame(
        {
            "subject_id": cohort.frame["subject_id"].astype(str),
            "visit_time": cohort.frame["visit_time"].astype(float),
            "value": pd.to_numeric(cohort.frame[feature], errors="coerce"),
        }
    )
    seen = visits[(visits["visit_time"] <= landmark) & visits["value"].notna()]
    last = seen.sort_values(["subject_id", "visit_time"]).groupby("subject_id")["value"].last()
    return last.reindex(pooled["subject_id"].astype(str)).to_numpy(np.float64)


# --------------------------------------------------------------------------------------------
# Statistics and output


def paired_bootstrap(
    statistic: Callable[[NDArray[np.int64]], tuple[float, float]],
    n: int,
    *,
    n_bootstrap: int,
    seed: int,
) -> tuple[float, float]:
    """95% percentile interval of ``ours - reference`` over subject resamples.

    ``statistic(idx)`` returns (ours, reference) on the resampled rows ``idx``; every row is a
    distinct subject here (cross-sectional cohorts, or one landmark).
    """
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        ours, reference = statistic(rng.integers(0, n, n))
        diffs[b] = ours - reference
    lower, upper = np.nanpercentile(diffs, [2.5, 97.5])
    return float(lower), float(upper)


def c_index_difference(
    ours: pd.DataFrame, reference: pd.DataFrame, *, n_bootstrap: int, seed: int
) -> tuple[float, float]:
    """Paired bootstrap interval of the difference in Harrell's C of aligned predictions."""
    event = ours["event"].to_numpy() == 1
    time_ = ours["time"].to_numpy(np.float64)
    a = ours["risk_score"].to_numpy(np.float64)
    b = reference["risk_score"].to_numpy(np.float64)

    def statistic(idx: NDArray[np.int64]) -> tuple[float, float]:
        if not event[idx].any():
            return np.nan, np.nan
        return (
            concordance_index_censored(event[idx], time_[idx], a[idx])[0],
            concordance_index_censored(event[idx], time_[idx], b[idx])[0],
        )

    return paired_bootstrap(statistic, len(ours), n_bootstrap=n_bootstrap, seed=seed)


def machine() -> str:
    """One line describing the machine and the library versions."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        memory_text = f"{memory:.0f} GB"
    except (ValueError, OSError, AttributeError):
        memory_text = "unknown memory"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {platform.machine()} {platform.system()}, {cores} cores, {memory_text}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, xgboost "
        f"{xgboost.__version__}, scikit-survival {sksurv.__version__}, scikit-learn "
        f"{sklearn.__version__}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        f"{datetime.date.today().isoformat()}"
    )


def _f(value: float, digits: int = 3) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def survival_rows(
    cohort: Cohort,
    ours: FoldRun,
    reference: FoldRun,
    head: Mapping[str, Any],
    *,
    n_bootstrap: int,
    seed: int,
) -> list[list[str]]:
    """Table rows (Harrell C, Uno C, IBS) of one survival cohort."""
    ours_pooled = ours.pooled.sort_values("sample_id", ignore_index=True)
    ref_pooled = reference.pooled.sort_values("sample_id", ignore_index=True)
    if not ours_pooled["sample_id"].equals(ref_pooled["sample_id"]):
        msg = f"{cohort.name}: ours and the reference predicted different rows."
        raise RuntimeError(msg)
    m_ours = point_metrics(ours_pooled, head=head, reference=None)
    grid = np.asarray(head["grid"], dtype=np.float64)
    curve = ref_pooled[[f"surv_{horizon_label(t)}" for t in grid]].to_numpy(np.float64)
    m_ref = reference_metrics(
        ref_pooled["time"].to_numpy(np.float64),
        ref_pooled["event"].to_numpy(),
        ref_pooled["risk_score"].to_numpy(np.float64),
        curve,
        head=head,
        train_time=ref_pooled["time"].to_numpy(np.float64),
        train_event=ref_pooled["event"].to_numpy(),
    )
    lower, upper = c_index_difference(ours_pooled, ref_pooled, n_bootstrap=n_bootstrap, seed=seed)
    n_rows = len(ours_pooled)
    n_events = int(ours_pooled["event"].sum())
    landmarks = (cohort.config.get("longitudinal") or {}).get("landmarks")
    n_subjects = cohort.outcomes["subject_id"].nunique()
    counts = (
        f"{n_subjects} ({n_events})"
        if not landmarks
        else f"{n_subjects}; {n_rows} at risk at {landmarks[0]:g} ({n_events})"
    )
    seconds = f"{ours.seconds:.1f} / {reference.seconds:.1f}"
    rows = []
    for metric, key in (
        ("Harrell C", "c_index_harrell"),
        ("Uno C", "c_index_uno"),
        ("IBS", "integrated_brier_score"),
    ):
        diff = m_ours[key] - m_ref[key]
        text = f"{diff:+.3f}"
        if key == "c_index_harrell":
            text += f" [{lower:+.3f}, {upper:+.3f}]"
        rows.append(
            [
                cohort.name,
                cohort.task,
                counts,
                metric,
                _f(m_ours[key]),
                cohort.reference,
                _f(m_ref[key]),
                text,
                seconds,
            ]
        )
    return rows


def regression_rows(
    cohort: Cohort, ours: FoldRun, head: Mapping[str, Any], *, n_bootstrap: int, seed: int
) -> tuple[list[list[str]], float]:
    """Table rows (RMSE, R2, coverage) of the regression cohort, and the reference seconds."""
    pooled = ours.pooled.sort_values("sample_id", ignore_index=True)
    m_ours = point_metrics(pooled, head=head, reference=None)
    start = time.perf_counter()
    locf = last_value_carried_forward(cohort, pooled)
    seconds_ref = time.perf_counter() - start
    target = pooled["target"].to_numpy(np.float64)
    predicted = pooled["predicted"].to_numpy(np.float64)
    m_ref = regression_metrics(target, locf, None, None)

    def statistic(idx: NDArray[np.int64]) -> tuple[float, float]:
        return (
            float(np.sqrt(np.mean((target[idx] - predicted[idx]) ** 2))),
            float(np.sqrt(np.mean((target[idx] - locf[idx]) ** 2))),
        )

    lower, upper = paired_bootstrap(statistic, len(pooled), n_bootstrap=n_bootstrap, seed=seed)
    counts = f"{cohort.outcomes['subject_id'].nunique()}; {len(pooled)} with a target"
    seconds = f"{ours.seconds:.1f} / {seconds_ref:.3f}"
    level = float(head["interval_level"])
    base = [cohort.name, cohort.task, counts]
    rows = [
        [
            *base,
            "RMSE",
            _f(m_ours["rmse"]),
            cohort.reference,
            _f(m_ref["rmse"]),
            f"{m_ours['rmse'] - m_ref['rmse']:+.3f} [{lower:+.3f}, {upper:+.3f}]",
            seconds,
        ],
        [
            *base,
            "R2",
            _f(m_ours["r2"]),
            cohort.reference,
            _f(m_ref["r2"]),
            f"{m_ours['r2'] - m_ref['r2']:+.3f}",
            seconds,
        ],
        [
            *base,
            f"{level:.0%} interval coverage (mean width)",
            f"{m_ours['interval_coverage']:.3f} ({m_ours['mean_interval_width']:.2f})",
            "-",
            "-",
            f"{m_ours['interval_coverage'] - level:+.3f} vs nominal",
            seconds,
        ],
    ]
    return rows, seconds_ref


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], right: int) -> str:
    """A Markdown table; columns from ``right`` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fold_row(name: str, model: str, values: Sequence[float]) -> list[str]:
    """Per-fold Harrell C-indices with their mean and standard deviation."""
    arr = np.asarray(values, dtype=np.float64)
    return [
        name,
        model,
        *(_f(v) for v in arr),
        f"{np.nanmean(arr):.3f} ± {np.nanstd(arr, ddof=1):.3f}",
    ]


def cohorts(data_dir: Path, *, top_n: int, seed: int) -> list[Cohort]:
    """The benchmark's cohorts, read from the SurvSet Parquet exports in ``data_dir``."""
    aids_modalities = {
        "cd4": {"num_CD4": "CD4"},
        "baseline": {
            "fac_drug": "drug",
            "fac_gender": "gender",
            "fac_prevOI": "prevOI",
            "fac_AZT": "AZT",
        },
    }
    return [
        load_expression(
            data_dir / "gse1992.parquet",
            gene_prefix="num_HS_",
            clinical_numeric=["num_age", "num_size"],
            clinical_factors=["fac_er_positive", "fac_node_status", "fac_grade"],
            top_n=top_n,
            horizons=[12.0, 24.0, 48.0],
            seed=seed,
            name="gse1992",
        ),
        load_expression(
            data_dir / "DLBCL.parquet",
            gene_prefix="num_gene_",
            top_n=top_n,
            horizons=None,
            seed=seed,
            name="DLBCL",
        ),
        load_longitudinal(
            data_dir / "aids.parquet",
            modalities=aids_modalities,
            summarise=["cd4"],
            landmark=6.0,
            horizons=[6.0, 12.0],
            seed=seed,
            name="aids",
            task="landmark survival at 6 months",
        ),
        load_longitudinal(
            data_dir / "aids.parquet",
            modalities=aids_modalities,
            summarise=["cd4"],
            landmark=6.0,
            target={"feature": "cd4:CD4", "horizon": 6.0, "window": 1.0},
            seed=seed,
            name="aids",
            task="CD4 at 12 months from visits to 6",
        ),
        load_longitudinal(
            data_dir / "csl.parquet",
            modalities={
                "prot": {"num_prot": "prothrombin"},
                "baseline": {"num_age": "age", "fac_sex": "sex", "fac_treat": "treat"},
            },
            summarise=["prot"],
            landmark=1.0,
            horizons=[1.0, 3.0],
            seed=seed,
            name="csl",
            task="landmark survival at 1 year",
        ),
    ]


def main() -> None:
    """Run every cohort and print the results tables and the machine line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="folder with the SurvSet Parquet exports (gse1992, DLBCL, aids, csl)",
    )
    parser.add_argument("--top-n", type=int, default=1000, help="genes kept by variance")
    parser.add_argument("--folds", type=int, default=5, help="outer folds")
    parser.add_argument("--seed", type=int, default=42, help="seed of folds and models")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples")
    parser.add_argument("--threads", type=int, default=2, help="XGBoost threads")
    parser.add_argument("--only", nargs="*", help="cohort names to run (default: all)")
    parser.add_argument(
        "--tune",
        type=int,
        default=0,
        metavar="TRIALS",
        help="nested tuning of omics-ml with this many trials per fold (0: configured parameters)",
    )
    args = parser.parse_args()

    rows: list[list[str]] = []
    fold_rows: list[list[str]] = []
    facts: list[str] = []
    total = time.perf_counter()
    for cohort in cohorts(args.data_dir, top_n=args.top_n, seed=args.seed):
        if args.only and cohort.name not in args.only:
            continue
        print(f"running {cohort.name}: {cohort.task}", file=sys.stderr, flush=True)
        if args.tune:
            cohort.config["tuning"] = {"enabled": True, "n_trials": args.tune, "inner_cv_folds": 3}
        folds = outer_folds(cohort, n_splits=args.folds, seed=args.seed)
        times = evaluation_times(cohort)
        ours, pipelines = run_ours(cohort, folds, times, nthread=args.threads)
        head = pipelines[0].head.to_json()
        facts.append(
            f"{cohort.name} ({cohort.task}): boosting rounds per fold {ours.extra['n_rounds']}"
        )
        if cohort.config["task"] == "survival":
            reference = run_reference_survival(cohort, folds, pipelines, seed=args.seed)
            rows += survival_rows(
                cohort, ours, reference, head, n_bootstrap=args.bootstrap, seed=args.seed
            )
            fold_rows.append(
                fold_row(cohort.name, "omics-ml", [m["c_index_harrell"] for m in ours.per_fold])
            )
            fold_rows.append(
                fold_row(
                    cohort.name,
                    cohort.reference,
                    [m["c_index_harrell"] for m in reference.per_fold],
                )
            )
            if reference.extra["recomputed_curves"]:
                facts.append(
                    f"{cohort.name}: scikit-survival's Breslow curves of the reference were not "
                    f"probabilities in fold(s) {reference.extra['recomputed_curves']}; recomputed "
                    "there from its linear predictors with omics_ml.survival.BreslowBaseline"
                )
            if "alpha" in reference.extra:
                chosen = ", ".join(f"{a:.3g}" for a in reference.extra["alpha"])
                facts.append(f"{cohort.name}: Coxnet alpha per fold {chosen}")
            facts.append(
                f"{cohort.name}: grid 0-{head['grid'][-1]:g} ({len(head['grid'])} points), "
                f"horizons {head['horizons']}"
            )
        else:
            more, _ = regression_rows(
                cohort, ours, head, n_bootstrap=args.bootstrap, seed=args.seed
            )
            rows += more
        print(f"  done in {time.perf_counter() - total:.0f} s", file=sys.stderr, flush=True)

    print(
        markdown(
            [
                "cohort",
                "task",
                "subjects (events)",
                "metric",
                "omics-ml",
                "reference",
                "reference value",
                "omics-ml - reference [95% CI]",
                "seconds (ours / ref)",
            ],
            rows,
            right=4,
        )
    )
    print()
    header = ["cohort", "model", *(f"fold {k + 1}" for k in range(args.folds)), "mean ± sd"]
    print(markdown(header, fold_rows, right=2))
    print()
    for fact in facts:
        print(f"- {fact}")
    print()
    print(machine())
    print(f"total {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
