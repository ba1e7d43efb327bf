"""Training jobs: one outer fold, and the final model on all development subjects."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import polars as pl

from omics_ml.assess import evaluate_predictions, point_metrics
from omics_ml.baselines import fit_linear_baseline
from omics_ml.integrate import FEATURE_SEPARATOR, raw_input_frame, read_features
from omics_ml.io import atomic_output, read_json, write_json
from omics_ml.normalise import ModalityNormaliser
from omics_ml.pipeline import OmicsPipeline, fit_pipeline
from omics_ml.split import permute_outcomes_by_subject

__all__ = [
    "PERMUTED",
    "missing_modality_predictions",
    "outcome_frame",
    "predictions_table",
    "train_baseline",
    "train_final",
    "train_fold",
    "train_variant",
    "variant_config",
    "variant_names",
]

logger = logging.getLogger(__name__)

_OUTCOME_COLUMNS = ("subject_id", "label", "time", "event", "target")

#: Variant name of the permuted-outcome negative control.
PERMUTED = "permuted"
_ONLY, _WITHOUT = "only_", "without_"


def variant_names(config: Mapping[str, Any]) -> list[str]:
    """Cross-validation variants a config asks for, besides the pipeline itself.

    ``permuted`` (``evaluate.permuted_control``), then ``only_<m>`` and ``without_<m>`` for
    each modality ``m`` (``evaluate.modality_value``, with more than one modality). The
    linear baseline is not a variant: it reuses the pipeline's fold models.
    """
    evaluation = config.get("evaluate") or {}
    names = [PERMUTED] if evaluation.get("permuted_control", True) else []
    modalities = list(config["modalities"])
    if evaluation.get("modality_value", True) and len(modalities) > 1:
        names += [f"{_ONLY}{m}" for m in modalities] + [f"{_WITHOUT}{m}" for m in modalities]
    return names


def variant_config(config: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """The config a variant trains with.

    ``permuted`` keeps everything (tuning included: the control must run the same pipeline).
    ``only_<m>`` / ``without_<m>`` keep one modality / all but one, and tune only with
    ``evaluate.modality_value_tuning``.
    """
    out = dict(config)
    if variant == PERMUTED:
        return out
    modalities = dict(config["modalities"])
    if variant.startswith(_ONLY):
        keep = [variant.removeprefix(_ONLY)]
    elif variant.startswith(_WITHOUT):
        keep = [m for m in modalities if m != variant.removeprefix(_WITHOUT)]
    else:
        msg = f"unknown variant {variant!r}; use {PERMUTED!r}, '{_ONLY}<modality>' or '{_WITHOUT}<modality>'."
        raise ValueError(msg)
    unknown = set(keep) - set(modalities)
    if unknown or not keep:
        msg = f"variant {variant!r} names no modality of the config ({list(modalities)})."
        raise ValueError(msg)
    out["modalities"] = {m: modalities[m] for m in keep}
    if not (config.get("evaluate") or {}).get("modality_value_tuning", False):
        out["tuning"] = {**(config.get("tuning") or {}), "enabled": False}
    return out


def _permute_outcomes(adata: ad.AnnData, *, seed: int) -> ad.AnnData:
    """A copy whose outcome columns are permuted across subjects (one outcome per subject)."""
    columns = [c for c in ("label", "time", "event", "target") if c in adata.obs]
    cohort = pl.from_pandas(
        pd.DataFrame(
            {
                "sample_id": adata.obs_names.astype(str),
                "subject_id": adata.obs["subject_id"].astype(str).to_numpy(),
                **{
                    c: adata.obs[c].astype(str if c == "label" else float).to_numpy()
                    for c in columns
                },
            }
        )
    )
    permuted = permute_outcomes_by_subject(cohort, seed=seed).to_pandas().set_index("sample_id")
    out = adata.copy()
    for column in columns:
        values = permuted[column].reindex(out.obs_names).to_numpy()
        out.obs[column] = values if column != "event" else values.astype(np.int8)
    return out


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
    return pipeline.evaluation_frame(raw_input_frame(adata, dtype=np.float32), outcome_frame(adata))


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
        raw_input_frame(train, dtype=np.float32),
        outcome_frame(train),
        config=config,
        classes=classes,
        nthread=nthread,
        frozen_normalisers=frozen,
        survival_times=survival_times,
    )


def _fold_sets(
    adata: ad.AnnData, split: Mapping[str, Any], fold: int
) -> tuple[ad.AnnData, ad.AnnData]:
    spec = split["folds"][fold]
    train, test = _subset(adata, spec["train"]), _subset(adata, spec["test"])
    overlap = set(train.obs["subject_id"]) & set(test.obs["subject_id"])
    if overlap:
        msg = f"fold {fold}: subjects {sorted(overlap)[:5]} are on both sides of the split."
        raise ValueError(msg)
    return train, test


def _fold_record(
    fold: int,
    pipeline: OmicsPipeline,
    train: ad.AnnData,
    test: ad.AnnData,
    predicted: pd.DataFrame,
) -> dict[str, Any]:
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
    if "tuning" in pipeline.info:
        record["tuned_params"] = pipeline.info["tuning"]["params"]
        record["tuning_trials"] = pipeline.info["tuning"]["n_trials"]
    if "selection" in pipeline.info:
        record["selection"] = pipeline.info["selection"]
    return record


def missing_modality_predictions(pipeline: OmicsPipeline, adata: ad.AnnData) -> pd.DataFrame:
    """Predictions of ``adata``'s samples with each modality in turn absent at prediction time.

    The model is the same; only the inputs lose one modality (every column missing), as for a
    new patient who lacks that assay. One block per modality, marked by ``missing_modality``;
    empty for a single-modality model. The modality holding a future-value target is skipped:
    its visits define the outcome itself.
    """
    frame = raw_input_frame(adata, dtype=np.float32)
    outcomes = outcome_frame(adata)
    target = None
    if pipeline.landmarks is not None and pipeline.landmarks.target is not None:
        target = str(pipeline.landmarks.target["feature"]).partition(FEATURE_SEPARATOR)[0]
    blocks = []
    if len(pipeline.inputs) > 1:
        for modality in pipeline.inputs:
            if modality == target:
                continue
            own = frame.columns.astype(str).str.startswith(modality + FEATURE_SEPARATOR)
            reduced = frame.loc[:, ~own]
            predicted = pipeline.evaluation_frame(reduced, outcomes)
            predicted.insert(0, "missing_modality", modality)
            blocks.append(predicted)
    if not blocks:
        return pd.DataFrame({"missing_modality": pd.Series(dtype=object)})
    return pd.concat(blocks, ignore_index=True)


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
    missing_predictions_out: str | os.PathLike[str] | None = None,
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
    missing_predictions_out : path-like, optional
        Test-subject predictions with each modality missing at prediction time
        (:func:`missing_modality_predictions`, Parquet).

    Returns
    -------
    dict
        The fold's metrics record.
    """
    adata = read_features(features)
    split = read_json(splits)
    train, test = _fold_sets(adata, split, fold)
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
    if missing_predictions_out is not None:
        missing = missing_modality_predictions(pipeline, test)
        missing["fold"] = fold
        with atomic_output(missing_predictions_out) as tmp:
            missing.to_parquet(tmp, index=False)
    record = _fold_record(fold, pipeline, train, test, predicted)
    write_json(metrics_out, record)
    logger.info("fold %d: %s", fold, {k: round(v, 4) for k, v in record["metrics"].items()})
    return record


def _write_pooled(
    frames: Sequence[pd.DataFrame],
    records: Sequence[Mapping[str, Any]],
    *,
    predictions_out: str | os.PathLike[str],
    metrics_out: str | os.PathLike[str],
    extra: Mapping[str, Any],
) -> None:
    pooled = pd.concat(frames, ignore_index=True).sort_values("sample_id", ignore_index=True)
    with atomic_output(predictions_out) as tmp:
        pooled.to_parquet(tmp, index=False)
    write_json(metrics_out, {**extra, "per_fold": list(records)})


def train_variant(
    features: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    variant: str,
    *,
    config: Mapping[str, Any],
    nthread: int,
    predictions_out: str | os.PathLike[str],
    metrics_out: str | os.PathLike[str],
) -> None:
    """Outer cross-validation of a variant of the pipeline on the same folds.

    ``permuted`` permutes the outcomes across development subjects (seeded), then runs the
    unchanged pipeline: any score above chance means something leaks. ``only_<m>`` and
    ``without_<m>`` train on one modality or all but one (:func:`variant_config`). Writes the
    pooled out-of-fold predictions and the per-fold records.
    """
    adata = read_features(features)
    split = read_json(splits)
    variant_cfg = variant_config(config, variant)
    if variant == PERMUTED:
        adata = _permute_outcomes(
            _subset(adata, split["development"]), seed=int(config.get("seed", 42)) + 1
        )
    frames, records = [], []
    for fold in range(len(split["folds"])):
        train, test = _fold_sets(adata, split, fold)
        pipeline = _fit(
            train,
            config=variant_cfg,
            classes=_classes(adata, config),
            nthread=nthread,
            survival_times=split.get("survival"),
        )
        predicted = predictions_table(pipeline, test)
        predicted["fold"] = fold
        frames.append(predicted)
        records.append(_fold_record(fold, pipeline, train, test, predicted))
    _write_pooled(
        frames,
        records,
        predictions_out=predictions_out,
        metrics_out=metrics_out,
        extra={"variant": variant, "modalities": list(variant_cfg["modalities"])},
    )
    logger.info("variant %s: %d folds", variant, len(frames))


def train_baseline(
    features: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    fold_models: Sequence[str | os.PathLike[str]],
    *,
    config: Mapping[str, Any],
    predictions_out: str | os.PathLike[str],
    metrics_out: str | os.PathLike[str],
) -> None:
    """The penalised linear baseline on the pipeline's own folds and design matrices.

    Each outer fold's fitted pipeline (``fold_models``: its model directories) turns the raw
    values of the fold's training and test subjects into the design matrix before feature
    selection (normalised features; landmark summaries); the baseline
    (:func:`omics_ml.baselines.fit_linear_baseline`) is fitted on the training rows with its
    penalty chosen by grouped inner CV, and predicts the test rows.
    """
    adata = read_features(features)
    split = read_json(splits)
    seed = int(config.get("seed", 42))
    frames, records = [], []
    for fold, model_dir in enumerate(fold_models):
        pipeline = OmicsPipeline.load(model_dir)
        train, test = _fold_sets(adata, split, fold)
        meta, values, outcome = pipeline.design(
            raw_input_frame(train, dtype=np.float32), outcome_frame(train), select=False
        )
        assert outcome is not None
        baseline = fit_linear_baseline(
            values, outcome, meta["subject_id"].to_numpy(), head=pipeline.head, seed=seed
        )
        test_meta, test_values, test_outcome = pipeline.design(
            raw_input_frame(test, dtype=np.float32), outcome_frame(test), select=False
        )
        assert test_outcome is not None
        predicted = pd.concat(
            [
                test_meta,
                baseline.predict(test_values),
                pd.DataFrame(test_outcome.columns()),
            ],
            axis=1,
        )
        predicted["fold"] = fold
        frames.append(predicted)
        reference = None
        if pipeline.task == "survival":
            reference = pd.DataFrame(outcome.columns())
        records.append(
            {
                "fold": fold,
                "baseline": baseline.describe(),
                "n_features": int(values.shape[1]),
                "metrics": point_metrics(
                    predicted, head=pipeline.head.to_json(), reference=reference
                ),
            }
        )
    _write_pooled(
        frames,
        records,
        predictions_out=predictions_out,
        metrics_out=metrics_out,
        extra={
            "variant": "baseline",
            "model": records[0]["baseline"]["model"] if records else None,
        },
    )


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
    adata = read_features(features)
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
