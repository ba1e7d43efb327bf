"""Review steps of a run: SHAP explanations of the final model and subgroup performance.

Thin workflow entry points that read the run's files and call :mod:`omics_ml.explain` and
:mod:`omics_ml.subgroups`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from omics_ml.explain import (
    feature_importance_table,
    global_importance,
    modality_importance,
    plot_modality_importance,
    plot_shap_summary,
)
from omics_ml.integrate import raw_input_frame, read_features
from omics_ml.io import atomic_output, read_json, write_json
from omics_ml.pipeline import OmicsPipeline
from omics_ml.subgroups import plot_subgroups, subgroup_labels, subgroup_performance
from omics_ml.tasks import DEFAULT_PROMOTION_METRIC

__all__ = ["SUBGROUP_METRICS", "evaluate_subgroups", "explain_final_model", "subgroup_values"]

logger = logging.getLogger(__name__)

#: Metrics reported per subgroup, besides the primary one.
SUBGROUP_METRICS = {
    "classification": ["balanced_accuracy", "roc_auc_ovr"],
    "survival": ["c_index_harrell", "integrated_brier_score"],
    "regression": ["rmse", "r2"],
}

#: What a SHAP value measures, per task and objective.
_MARGIN = {
    "classification": "log-odds of the explained class",
    "regression": "predicted value",
    "cox": "log hazard ratio",
    "aft": "log survival time",
}


def explain_final_model(
    features: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    *,
    importance_out: str | os.PathLike[str],
    summary_plot: str | os.PathLike[str],
    modality_plot: str | os.PathLike[str],
    holdout_out: str | os.PathLike[str],
    table_out: str | os.PathLike[str],
    top: int,
    nthread: int,
) -> dict[str, Any]:
    """SHAP values of the final model: global summary on development rows, top per holdout row.

    Contributions come from XGBoost's exact tree SHAP (``pred_contribs``) of the booster on the
    features it sees (after normalisation, landmark summaries and selection). For multiclass
    models each row is explained for its predicted class. ``table_out`` (CSV) lists every
    feature's mean absolute SHAP value and the booster's gain, split count and cover.

    Returns
    -------
    dict
        What ``importance_out`` holds: the margin's meaning, the ``top`` features and every
        modality by mean absolute SHAP value.
    """
    adata = read_features(features)
    split = read_json(splits)
    pipeline = OmicsPipeline.load(model_dir)
    _, values, _ = pipeline.design(raw_input_frame(adata[split["development"]]))
    contribs, rows, _ = pipeline.shap_values(values, nthread=nthread)
    names = pipeline.feature_names
    features_table = global_importance(contribs, names)
    with atomic_output(table_out) as tmp:
        feature_importance_table(pipeline.booster, contribs, names).to_csv(tmp, index=False)
    modalities_table = modality_importance(contribs, names)
    plot_shap_summary(
        rows,
        values,
        names,
        summary_plot,
        title="SHAP values of the final model (development rows)",
        top=top,
    )
    plot_modality_importance(
        modalities_table, modality_plot, title="Mean |SHAP| per modality (development rows)"
    )
    explained = pipeline.explain(raw_input_frame(adata[split["holdout"]]), top=10)
    with atomic_output(holdout_out) as tmp:
        explained.to_parquet(tmp, index=False)
    objective = getattr(pipeline.head, "objective", None)
    result = {
        "margin": _MARGIN[objective or pipeline.task],
        "n_rows": int(values.shape[0]),
        "n_features": len(names),
        "features": features_table.head(top).to_dict(orient="records"),
        "modalities": modalities_table.to_dict(orient="records"),
    }
    write_json(importance_out, result)
    logger.info("SHAP: top features %s", features_table["feature"].head(5).tolist())
    return result


def subgroup_values(adata: ad.AnnData, column: str) -> pd.Series:
    """One value per sample of a subgroup column: a sample-sheet column or ``modality:feature``."""
    index = adata.obs_names.astype(str)
    if column in adata.obs:  # sample-sheet columns and text covariates
        return pd.Series(adata.obs[column].to_numpy(), index=index)
    if column not in adata.var_names:
        msg = f"subgroup column {column!r} is neither in the sample sheet nor an input column of the integrated data; check evaluate.subgroups."
        raise ValueError(msg)
    # One raw column, not the whole input table.
    values = np.asarray(adata[:, [column]].X, dtype=np.float64).reshape(-1)
    return pd.Series(values, index=index)


def _row_values(per_sample: pd.Series, adata: ad.AnnData, predictions: pd.DataFrame) -> pd.Series:
    """Values of prediction rows: by sample, or (landmark rows) the subject's first visit."""
    direct = per_sample.reindex(predictions["sample_id"].astype(str).to_numpy())
    if direct.notna().all() or "subject_id" not in predictions:
        return direct.reset_index(drop=True)
    obs = adata.obs[["subject_id"]].copy()
    obs["value"] = per_sample.reindex(adata.obs_names.astype(str)).to_numpy()
    if "visit_time" in adata.obs:
        obs["visit_time"] = adata.obs["visit_time"].to_numpy()
        obs = obs.sort_values("visit_time", kind="stable")
    by_subject = obs.dropna(subset=["value"]).groupby("subject_id", observed=True)["value"].first()
    by_subject.index = by_subject.index.astype(str)
    fallback = by_subject.reindex(predictions["subject_id"].astype(str).to_numpy())
    return direct.fillna(pd.Series(fallback.to_numpy(), index=direct.index)).reset_index(drop=True)


def evaluate_subgroups(
    features: str | os.PathLike[str],
    predictions: Mapping[str, str | os.PathLike[str]],
    *,
    head: Mapping[str, Any],
    specs: Sequence[Mapping[str, Any]],
    primary_metric: str | None,
    metrics_out: str | os.PathLike[str],
    plots: Mapping[str, str | os.PathLike[str]],
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> dict[str, Any]:
    """Metrics per configured subgroup of each predictions table (out-of-fold, holdout).

    Parameters
    ----------
    features : path-like
        Integrated ``.h5ad`` (sample-sheet columns in ``obs``, raw inputs in ``X``).
    predictions : mapping
        Name (``cv``, ``holdout``) to predictions Parquet.
    head : mapping
        The model's frozen task head.
    specs : sequence of mapping
        ``evaluate.subgroups``.
    primary_metric : str or None
        Plotted and flagged first; None takes the task's default.
    metrics_out : path-like
        JSON output.
    plots : mapping
        Name to forest-plot PNG, one per predictions table.
    n_bootstrap, confidence_level, seed
        Subject bootstrap of the intervals.
    """
    task = head["task"]
    metric = primary_metric or DEFAULT_PROMOTION_METRIC[task]
    metrics = list(dict.fromkeys([metric, *SUBGROUP_METRICS[task]]))
    adata = read_features(features)
    names = [str(spec.get("name") or spec["column"]) for spec in specs]
    per_sample = {
        name: subgroup_values(adata, str(spec["column"]))
        for name, spec in zip(names, specs, strict=True)
    }
    result: dict[str, Any] = {
        "primary_metric": metric,
        "metrics": metrics,
        "subgroups": [dict(spec) for spec in specs],
    }
    for split, path in predictions.items():
        table = pd.read_parquet(path)
        labels = {
            name: subgroup_labels(
                _row_values(per_sample[name], adata, table), spec, where=f"evaluate.subgroups[{i}]"
            )
            for i, (name, spec) in enumerate(zip(names, specs, strict=True))
        }
        result[split] = subgroup_performance(
            table,
            labels,
            head=head,
            metrics=metrics,
            n_bootstrap=n_bootstrap,
            confidence_level=confidence_level,
            seed=seed,
            min_subjects={
                name: int(spec.get("min_subjects", 10))
                for name, spec in zip(names, specs, strict=True)
            },
        )
        title = "Out-of-fold" if split == "cv" else "Locked holdout"
        plot_subgroups(result[split], metric, plots[split], title=f"{title}: {metric} by subgroup")
        flagged = result[split]["flags"]
        if flagged:
            logger.warning("%s: subgroups worse than the cohort: %s", split, flagged)
    write_json(metrics_out, result)
    return result
