"""Training jobs: one outer fold, and the final model on all development subjects."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import pandas as pd

from omics_ml.assess import evaluate_predictions, point_metrics
from omics_ml.integrate import raw_input_frame
from omics_ml.io import atomic_output, read_json, write_json
from omics_ml.normalise import ModalityNormaliser
from omics_ml.pipeline import OmicsPipeline, fit_pipeline

__all__ = ["outcome_frame", "predictions_table", "train_final", "train_fold"]

logger = logging.getLogger(__name__)

_OUTCOME_COLUMNS = ("subject_id", "label", "time", "event", "target")


def _subset(adata: ad.AnnData, sample_ids: Sequence[str]) -> ad.AnnData:
    missing = pd.Index(sample_ids).difference(adata.obs_names)
    if len(missing):
        msg = f"samples {missing[:5].tolist()} of splits.json are not in the integrated data; rerun the split step."
        raise ValueError(msg)
    return adata[list(sample_ids)]


def _classes(adata: ad.AnnData, config: Mapping[str, Any]) -> list[str] | None:
    if config.get("task", "classification") != "classification":
        return None
    return sorted(adata.obs["label"].astype(str).unique().tolist())


def outcome_frame(adata: ad.AnnData) -> pd.DataFrame:
    """Per-sample outcome columns of integrated samples (``subject_id``, ``label``, ...)."""
    frame = adata.obs[[c for c in _OUTCOME_COLUMNS if c in adata.obs]].reset_index(drop=True)
    frame["subject_id"] = frame["subject_id"].astype(str)
    frame["label"] = frame["label"].astype(str)
    return frame


def predictions_table(pipeline: OmicsPipeline, adata: ad.AnnData) -> pd.DataFrame:
    """Predict samples of the integrated data through the raw-input path of the pipeline.

    One row per sample (per subject and landmark for longitudinal models) with
    ``sample_id``, ``subject_id``, the task's prediction columns and the outcome columns.
    """
    return pipeline.evaluation_frame(raw_input_frame(adata), outcome_frame(adata))


def _fit(
    train: ad.AnnData,
    *,
    config: Mapping[str, Any],
    classes: list[str] | None,
    nthread: int,
    survival_times: Mapping[str, Sequence[float]] | None,
    frozen: Mapping[str, ModalityNormaliser] | None = None,
) -> OmicsPipeline:
    return fit_pipeline(
        raw_input_frame(train),
        outcome_frame(train),
        config=config,
        classes=classes,
        nthread=nthread,
        frozen_normalisers=frozen,
        survival_times=survival_times,
    )


def train_fold(
    features: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    fold: int,
    *,
    config: Mapping[str, Any],
    nthread: int,
    model_dir: str | os.PathLike[str],
    predictions_out: str | os.PathLike[str],
    metrics_out: str | os.PathLike[str],
) -> dict[str, Any]:
    """Fit preprocessing and XGBoost on one outer fold's training subjects; predict its test subjects.

    Parameters
    ----------
    features : path-like
        Integrated ``.h5ad`` (raw values in ``X``).
    splits : path-like
        ``splits.json``.
    fold : int
        Outer fold number.
    config : mapping
        The validated pipeline config.
    nthread : int
        XGBoost threads.
    model_dir, predictions_out, metrics_out : path-like
        Outputs: fitted pipeline, test-subject predictions (Parquet), fold metrics (JSON).

    Returns
    -------
    dict
        The fold's metrics record.
    """
    adata = ad.read_h5ad(features)
    split = read_json(splits)
    spec = split["folds"][fold]
    train, test = _subset(adata, spec["train"]), _subset(adata, spec["test"])
    overlap = set(train.obs["subject_id"]) & set(test.obs["subject_id"])
    if overlap:
        msg = f"fold {fold}: subjects {sorted(overlap)[:5]} are on both sides of the split."
        raise ValueError(msg)
    pipeline = _fit(
        train,
        config=config,
        classes=_classes(adata, config),
        nthread=nthread,
        survival_times=split.get("survival"),
    )
    pipeline.save(model_dir)
    predicted = predictions_table(pipeline, test)
    predicted["fold"] = fold
    with atomic_output(predictions_out) as tmp:
        predicted.to_parquet(tmp, index=False)
    reference = predictions_table(pipeline, train) if pipeline.task == "survival" else None
    metrics = point_metrics(predicted, head=pipeline.head.to_json(), reference=reference)
    record = {
        "fold": fold,
        "task": pipeline.task,
        "classes": pipeline.classes,
        "n_train_samples": train.n_obs,
        "n_test_samples": test.n_obs,
        "n_train_rows": pipeline.info["n_training_rows"],
        "n_test_rows": len(predicted),
        "n_train_subjects": int(train.obs["subject_id"].nunique()),
        "n_test_subjects": int(test.obs["subject_id"].nunique()),
        "n_features_used": len(pipeline.feature_names),
        "n_rounds": pipeline.info["n_rounds"],
        "inner_validation_score": pipeline.info["inner_validation_score"],
        "metrics": metrics,
    }
    write_json(metrics_out, record)
    logger.info("fold %d: %s", fold, {k: round(v, 4) for k, v in metrics.items()})
    return record


def train_final(
    features: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    normaliser_params: Mapping[str, str | os.PathLike[str]],
    *,
    config: Mapping[str, Any],
    nthread: int,
    model_dir: str | os.PathLike[str],
    predictions_out: str | os.PathLike[str],
    metrics_out: str | os.PathLike[str],
    plots: Mapping[str, str | os.PathLike[str]],
) -> dict[str, Any]:
    """Fit the deployable pipeline on all development subjects; evaluate it once on the holdout.

    The per-modality normalisers are the ones the normalise step fitted on the development
    subjects (``normaliser_params``), loaded from their JSON, so the registered model carries
    exactly those parameters. ``plots`` maps the task's plot names
    (:data:`omics_ml.assess.PLOTS`) to output files.
    """
    adata = ad.read_h5ad(features)
    split = read_json(splits)
    development, holdout = _subset(adata, split["development"]), _subset(adata, split["holdout"])
    frozen = {
        m: ModalityNormaliser.from_json(read_json(p)["normaliser"])
        for m, p in normaliser_params.items()
    }
    pipeline = _fit(
        development,
        config=config,
        classes=_classes(adata, config),
        nthread=nthread,
        survival_times=split.get("survival"),
        frozen=frozen,
    )
    pipeline.save(model_dir)
    predicted = predictions_table(pipeline, holdout)
    with atomic_output(predictions_out) as tmp:
        predicted.to_parquet(tmp, index=False)
    evaluation = config.get("evaluate", {})
    reference = predictions_table(pipeline, development) if pipeline.task == "survival" else None
    return evaluate_predictions(
        predicted,
        head=pipeline.head.to_json(),
        reference=reference,
        metrics_out=metrics_out,
        plots=plots,
        title="Locked holdout",
        n_bootstrap=int(evaluation.get("n_bootstrap", 1000)),
        confidence_level=float(evaluation.get("confidence_level", 0.95)),
        seed=int(config.get("seed", 42)),
        extra={
            "n_rounds": pipeline.info["n_rounds"],
            "n_features_used": len(pipeline.feature_names),
            "n_development_samples": development.n_obs,
            "n_development_rows": pipeline.info["n_training_rows"],
        },
    )
