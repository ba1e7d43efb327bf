"""What the pipeline is worth, side by side on the same outer folds.

Pools the out-of-fold predictions of the pipeline, its penalised linear baseline, the
permuted-outcome negative control and the modality-value variants (each modality alone, all
but one, and the full model with one modality missing at prediction time), scores each with
subject-bootstrap intervals and writes one JSON and two plots for the report:

* ``comparison``: pipeline vs baseline vs negative control, with the paired subject-bootstrap
  difference pipeline - baseline and the chance level;
* ``modality_value``: the primary metric of every modality setting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sksurv.metrics import concordance_index_censored

from omics_ml.assess import higher_is_better, metrics_with_intervals
from omics_ml.evaluate import classification_metrics, probability_matrix, subject_bootstrap
from omics_ml.io import read_json, save_figure, write_json
from omics_ml.regression import regression_metrics
from omics_ml.tasks import DEFAULT_PROMOTION_METRIC

__all__ = [
    "chance_level",
    "compare_variants",
    "paired_difference",
    "plot_comparison",
    "plot_modality_value",
]

logger = logging.getLogger(__name__)

#: Resamples of the modality-value intervals (many settings; a coarser interval suffices).
MODALITY_VALUE_BOOTSTRAP = 200


def chance_level(metric: str, head: Mapping[str, Any]) -> float | None:
    """The metric's value for a model that knows nothing about the outcome (None if undefined).

    Balanced accuracy 1/K; any AUC and C-index 0.5; R² 0.
    """
    if metric == "balanced_accuracy":
        return 1.0 / len(head["classes"])
    if metric in ("roc_auc_ovr", "c_index_harrell", "c_index_uno", "mean_auc"):
        return 0.5
    if metric.startswith("auc_at_"):
        return 0.5
    if metric == "r2":
        return 0.0
    return None


def _metric_function(head: Mapping[str, Any], metric: str) -> Callable[[pd.DataFrame], float]:
    """A fast function of a predictions table giving one metric (for paired resampling)."""
    task = head["task"]
    if task == "classification":
        classes = head["classes"]

        def classify(rows: pd.DataFrame) -> float:
            return classification_metrics(
                rows["label"].astype(str).to_numpy(), probability_matrix(rows, classes), classes
            )[metric]

        return classify
    if task == "survival":
        if metric != "c_index_harrell":
            msg = f"paired differences of survival models use c_index_harrell, not {metric!r}."
            raise ValueError(msg)

        def concordance(rows: pd.DataFrame) -> float:
            event = rows["event"].to_numpy().astype(bool)
            if not event.any():
                return float("nan")
            return float(
                concordance_index_censored(
                    event, rows["time"].to_numpy(np.float64), rows["risk_score"].to_numpy()
                )[0]
            )

        return concordance

    def regress(rows: pd.DataFrame) -> float:
        return regression_metrics(
            rows["target"].to_numpy(np.float64), rows["predicted"].to_numpy(np.float64)
        )[metric]

    return regress


def paired_difference(
    first: pd.DataFrame,
    second: pd.DataFrame,
    *,
    head: Mapping[str, Any],
    metric: str,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> dict[str, float]:
    """``metric(first) - metric(second)`` with a paired subject-bootstrap interval.

    Both tables predict the same rows (matched on ``sample_id``); each resample draws subjects
    and scores both models on the same rows, so the interval reflects the models' difference,
    not the cohort's sampling noise twice.
    """
    a = first.sort_values("sample_id", ignore_index=True)
    b = second.sort_values("sample_id", ignore_index=True)
    if not np.array_equal(a["sample_id"].to_numpy(), b["sample_id"].to_numpy()):
        msg = "paired comparison needs both models to predict the same rows (sample_id)."
        raise ValueError(msg)
    score = _metric_function(head, metric)

    def difference(idx: NDArray[np.int64]) -> dict[str, float]:
        return {metric: score(a.iloc[idx]) - score(b.iloc[idx])}

    return subject_bootstrap(
        difference,
        difference(np.arange(len(a))),
        a["subject_id"].astype(str).to_numpy(),
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        seed=seed,
    )[metric]


def _scored(
    predictions: pd.DataFrame,
    head: Mapping[str, Any],
    *,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    return metrics_with_intervals(
        predictions.reset_index(drop=True),
        head=head,
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        seed=seed,
    )


def _modality_rows(
    pipeline: pd.DataFrame,
    variants: Mapping[str, pd.DataFrame],
    missing: pd.DataFrame | None,
    head: Mapping[str, Any],
    *,
    confidence_level: float,
    seed: int,
) -> list[dict[str, Any]]:
    n_boot = MODALITY_VALUE_BOOTSTRAP
    rows: list[dict[str, Any]] = [
        {
            "setting": "all modalities",
            "kind": "all",
            "modality": None,
            "metrics": _scored(
                pipeline, head, n_bootstrap=n_boot, confidence_level=confidence_level, seed=seed
            ),
        }
    ]
    for kind, prefix, label in (
        ("only", "only_", "{} alone"),
        ("without", "without_", "all but {}"),
    ):
        for name, predictions in variants.items():
            if name.startswith(prefix):
                modality = name.removeprefix(prefix)
                rows.append(
                    {
                        "setting": label.format(modality),
                        "kind": kind,
                        "modality": modality,
                        "metrics": _scored(
                            predictions,
                            head,
                            n_bootstrap=n_boot,
                            confidence_level=confidence_level,
                            seed=seed,
                        ),
                    }
                )
    if missing is not None and len(missing):
        for modality, predictions in missing.groupby("missing_modality", sort=False):
            rows.append(
                {
                    "setting": f"{modality} missing at prediction",
                    "kind": "missing",
                    "modality": str(modality),
                    "metrics": _scored(
                        predictions.drop(columns="missing_modality"),
                        head,
                        n_bootstrap=n_boot,
                        confidence_level=confidence_level,
                        seed=seed,
                    ),
                }
            )
    return rows


def _plot_intervals(
    labels: Sequence[str],
    intervals: Sequence[Mapping[str, float]],
    colours: Sequence[str],
    path: str | os.PathLike[str],
    *,
    xlabel: str,
    chance: float | None,
    reference: tuple[float, str] | None,
    title: str,
) -> None:
    """One point and interval per row (first row at the top), with reference lines."""
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(labels) + 1.6))
    try:
        y = np.arange(len(labels))[::-1]
        est = np.array([v["estimate"] for v in intervals])
        lower = np.array([v["lower"] for v in intervals])
        upper = np.array([v["upper"] for v in intervals])
        err = np.vstack([np.nan_to_num(est - lower), np.nan_to_num(upper - est)])
        for i, colour in enumerate(colours):  # one interval per row
            ax.errorbar(est[i], y[i], xerr=err[:, i : i + 1], fmt="o", color=colour, capsize=3)
        if reference is not None:
            ax.axvline(reference[0], color="tab:blue", alpha=0.4, label=reference[1])
        if chance is not None:
            ax.axvline(chance, linestyle="--", color="tab:red", label=f"chance ({chance:.2f})")
        if reference is not None or chance is not None:
            ax.legend(loc="lower right", fontsize=8)
        ax.set_yticks(y, list(labels))
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def plot_comparison(
    models: Mapping[str, Mapping[str, Mapping[str, float]]],
    metric: str,
    path: str | os.PathLike[str],
    *,
    chance: float | None,
    title: str,
) -> None:
    """Point and interval of ``metric`` per model, with the chance level dashed."""
    _plot_intervals(
        list(models),
        [models[name][metric] for name in models],
        ["tab:blue" if name == "pipeline" else "tab:grey" for name in models],
        path,
        xlabel=f"out-of-fold {metric}",
        chance=chance,
        reference=None,
        title=title,
    )


#: Colour of each kind of modality setting.
_KIND_COLOURS = {
    "all": "tab:blue",
    "only": "tab:green",
    "without": "tab:orange",
    "missing": "tab:purple",
}


def plot_modality_value(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    path: str | os.PathLike[str],
    *,
    chance: float | None,
    title: str,
) -> None:
    """Point and interval of ``metric`` for every modality setting, grouped by kind."""
    _plot_intervals(
        [row["setting"] for row in rows],
        [row["metrics"][metric] for row in rows],
        [_KIND_COLOURS[row["kind"]] for row in rows],
        path,
        xlabel=f"out-of-fold {metric}",
        chance=chance,
        reference=(rows[0]["metrics"][metric]["estimate"], "all modalities"),
        title=title,
    )


def compare_variants(
    pipeline_predictions: str | os.PathLike[str],
    *,
    head: Mapping[str, Any],
    pipeline_metrics: str | os.PathLike[str] | None = None,
    baseline: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None,
    variants: Mapping[str, str | os.PathLike[str]],
    missing: Sequence[str | os.PathLike[str]],
    metrics_out: str | os.PathLike[str],
    plots: Mapping[str, str | os.PathLike[str]],
    primary_metric: str | None,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> dict[str, Any]:
    """Score the pipeline next to its baseline, negative control and modality variants.

    Parameters
    ----------
    pipeline_predictions : path-like
        Pooled out-of-fold predictions of the pipeline.
    head : mapping
        The frozen task head of the fold models.
    pipeline_metrics : path-like, optional
        ``cv_metrics.json`` of the same predictions: its intervals (same bootstrap settings)
        are reused instead of being computed again.
    baseline : (path, path) or None
        Pooled out-of-fold predictions of the linear baseline and its ``cv_metrics.json``
        (model and per-fold choices).
    variants : mapping
        Variant name (``permuted``, ``only_<m>``, ``without_<m>``) to pooled predictions.
    missing : sequence of path-like
        Per-fold predictions with each modality missing at prediction time.
    metrics_out : path-like
        JSON output.
    plots : mapping
        ``comparison`` and ``modality_value`` PNG paths.
    primary_metric : str or None
        The metric plotted and differenced; None takes the task's promotion default.
    n_bootstrap, confidence_level, seed
        Subject bootstrap of the intervals.

    Returns
    -------
    dict
        What was written.
    """
    task = head["task"]
    metric = primary_metric or DEFAULT_PROMOTION_METRIC[task]
    if task == "survival" and metric != "c_index_harrell":
        metric = "c_index_harrell"
    chance = chance_level(metric, head)
    pipeline = pd.read_parquet(pipeline_predictions)
    common = {"n_bootstrap": n_bootstrap, "confidence_level": confidence_level, "seed": seed}
    models: dict[str, dict[str, dict[str, float]]] = {
        "pipeline": read_json(pipeline_metrics)["metrics"]
        if pipeline_metrics is not None
        else _scored(pipeline, head, **common)
    }
    result: dict[str, Any] = {"task": task, "primary_metric": metric, "chance": chance}
    if baseline is not None:
        baseline_predictions = pd.read_parquet(baseline[0])
        models["linear baseline"] = _scored(baseline_predictions, head, **common)
        record = read_json(baseline[1])
        result["baseline"] = {"model": record["model"], "per_fold": record["per_fold"]}
        result["pipeline_minus_baseline"] = paired_difference(
            pipeline, baseline_predictions, head=head, metric=metric, **common
        )
    loaded = {name: pd.read_parquet(path) for name, path in variants.items()}
    if "permuted" in loaded:
        models["permuted outcome"] = _scored(loaded["permuted"], head, **common)
        control = models["permuted outcome"][metric]
        result["negative_control"] = {
            **control,
            "chance": chance,
            "contains_chance": None
            if chance is None
            else bool(control["lower"] <= chance <= control["upper"]),
        }
    result["models"] = models
    missing_frames = [pd.read_parquet(p) for p in missing]
    missing_frame = pd.concat(missing_frames, ignore_index=True) if missing_frames else None
    rows = _modality_rows(
        pipeline,
        {k: v for k, v in loaded.items() if k != "permuted"},
        missing_frame,
        head,
        confidence_level=confidence_level,
        seed=seed,
    )
    result["modality_value"] = rows
    result["higher_is_better"] = higher_is_better(metric)
    write_json(metrics_out, result)
    plot_comparison(
        models, metric, plots["comparison"], chance=chance, title="Pipeline, baseline and control"
    )
    plot_modality_value(
        rows, metric, plots["modality_value"], chance=chance, title="Modality value"
    )
    logger.info(
        "comparison: %s",
        {name: round(values[metric]["estimate"], 4) for name, values in models.items()},
    )
    return result
