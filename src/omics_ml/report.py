"""The HTML report of a pipeline run: data summary, metrics with intervals, plots, model."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omics_ml.io import atomic_output, read_json

__all__ = ["render_report", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.plots img{max-width:48%;margin:0 1% 1rem 0;border:1px solid #ddd}code{background:#f5f5f5;padding:1px 4px}
.warn{background:#fff4e5;border-left:4px solid #f0a000;padding:0.5rem 1rem}
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _metric_rows(metrics: Mapping[str, Mapping[str, float]]) -> list[list[Any]]:
    return [
        [name, v["estimate"], f"[{v['lower']:.3f}, {v['upper']:.3f}]"]
        for name, v in metrics.items()
    ]


def _image(path: str | os.PathLike[str]) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _task_rows(state: Mapping[str, Any]) -> list[list[Any]]:
    """What the model predicts, in words."""
    head = state.get("head", {"task": state.get("task", "classification")})
    task = head["task"]
    rows: list[list[Any]] = [["task", task]]
    if task == "classification":
        rows.append(["classes", ", ".join(head.get("classes", state.get("classes", [])))])
    elif task == "survival":
        objective = head["objective"]
        if objective == "aft":
            objective = f"aft ({head['aft_distribution']}, scale {head['aft_scale']:g})"
        else:
            objective = "cox (Breslow baseline hazard from the development subjects)"
        rows += [
            ["survival model", objective],
            ["risk horizons", ", ".join(f"{h:g}" for h in head["horizons"])],
            ["survival curve grid", f"{len(head['grid'])} times from 0 to {head['grid'][-1]:g}"],
        ]
    else:
        rows.append(
            [
                "prediction interval",
                f"{100 * head['interval_level']:.0f}% split-conformal, calibrated on "
                f"{head.get('n_calibration')} held-back development rows",
            ]
        )
    landmarks = state.get("landmarks")
    if landmarks:
        rows.append(["landmarks", ", ".join(f"{s:g}" for s in landmarks["landmarks"])])
        if landmarks.get("target"):
            target = landmarks["target"]
            rows.append(
                [
                    "predicted value",
                    f"{target['feature']} at landmark + {target['horizon']:g} "
                    f"(visit within {target['window']:g})",
                ]
            )
    return rows


def _landmark_tables(title: str, evaluation: Mapping[str, Any]) -> list[str]:
    by_landmark = evaluation.get("by_landmark") or {}
    if not by_landmark:
        return []
    names = [k for k in next(iter(by_landmark.values())) if k != "n_rows"]
    rows = [
        [s, m["n_rows"], *[m.get(k, float("nan")) for k in names]] for s, m in by_landmark.items()
    ]
    return [
        f"<h3>{html.escape(title)} by landmark</h3>",
        _table(["landmark", "rows", *names], rows),
    ]


def _risk_group_notes(*evaluations: Mapping[str, Any]) -> list[str]:
    notes = []
    for evaluation in evaluations:
        km = evaluation.get("km_by_risk_group")
        if km:
            notes.append(
                f"<p>{html.escape(evaluation['title'])}: log-rank test across predicted-risk "
                f"groups, chi2 {km['log_rank_chi2']:.2f}, p = {km['log_rank_p']:.2g}.</p>"
            )
    return notes


def render_report(
    *,
    model_info: Mapping[str, Any],
    qc: Mapping[str, Any],
    cv: Mapping[str, Any],
    holdout: Mapping[str, Any],
    state: Mapping[str, Any],
    plots: Sequence[str | os.PathLike[str]],
) -> str:
    """Render the report as a self-contained HTML string (plots embedded)."""
    level = round(100 * cv.get("confidence_level", 0.95))
    modality_rows = []
    kept = {m["name"]: len(m["normaliser"]["feature_names_out"]) for m in state["modalities"]}
    steps = {
        m["name"]: " → ".join(step["step"] for step in m["normaliser"]["steps"])
        for m in state["modalities"]
    }
    for name, m in qc["modalities"].items():
        modality_rows.append(
            [
                name,
                m["n_samples"],
                m["n_sheet_samples_missing"],
                m["n_features"],
                kept.get(name, "-"),
                steps.get(name, "-"),
                m["missing_value_fraction"],
            ]
        )
    fold_rows = [
        [
            f["fold"],
            f["n_train_subjects"],
            f["n_test_subjects"],
            f["n_rounds"],
            *[f["metrics"][k] for k in f["metrics"]],
        ]
        for f in cv["per_fold"]
    ]
    metric_names = list(cv["metrics"])
    task = state.get("task", "classification")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>omics-ml report: {html.escape(model_info['model_name'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>omics-ml report: {html.escape(model_info['model_name'])} version {html.escape(str(model_info['model_version']))}</h1>",
        _table(
            ["item", "value"],
            [
                *_task_rows(state),
                ["MLflow run", model_info["run_id"]],
                ["model URI", model_info["model_uri"]],
                [
                    "champion alias",
                    "moved to this version" if model_info["promoted"] else "not moved",
                ],
                ["promotion reason", model_info["promotion_reason"]],
                ["tracking store", model_info["tracking_uri"]],
            ],
        ),
    ]
    if state.get("info", {}).get("negative_control"):
        parts.append("<p class='warn'>Negative control run: labels were permuted.</p>")
    parts += [
        "<h2>Data</h2>",
        _table(
            ["", "value"],
            [
                ["samples", qc["n_samples"]],
                ["subjects", qc["n_subjects"]],
                *[
                    [f"{'class' if task == 'classification' else 'stratum'} {k}", v]
                    for k, v in qc["class_counts"].items()
                ],
            ],
        ),
        _table(
            [
                "modality",
                "samples",
                "samples without it",
                "features",
                "model features (development fit)",
                "normalisation",
                "missing values",
            ],
            modality_rows,
        ),
        f"<h2>Cross-validation (out-of-fold, {cv['n_samples']} development samples)</h2>",
        f"<p>Pooled out-of-fold predictions of {len(cv['per_fold'])} subject-grouped outer folds; "
        f"{level}% percentile intervals from {cv['n_bootstrap']} subject bootstrap resamples. Every "
        "preprocessing step was refitted inside each fold on its training subjects.</p>",
        _table(["metric", "estimate", f"{level}% CI"], _metric_rows(cv["metrics"])),
        _table(
            ["fold", "train subjects", "test subjects", "boosting rounds", *metric_names], fold_rows
        ),
        *_landmark_tables("Out-of-fold", cv),
        f"<h2>Locked holdout ({holdout['n_samples']} samples, evaluated once)</h2>",
        _table(["metric", "estimate", f"{level}% CI"], _metric_rows(holdout["metrics"])),
        *_landmark_tables("Holdout", holdout),
        *_risk_group_notes(cv, holdout),
        "<div class='plots'>",
        *[_image(p) for p in plots],
        "</div>",
        "<h2>Use the model</h2>",
        f"<p><code>omics-ml predict --model {html.escape(model_info['champion_uri'])} "
        f"--tracking-uri {html.escape(model_info['tracking_uri'])} --input DIR "
        f"{'--samples SHEET ' if state.get('landmarks') else ''}--output predictions.csv "
        "--plot DIR</code></p>",
        f"<p><code>{html.escape(model_info['ui_command'])}</code>, then open "
        f"<code>{html.escape(model_info['ui_runs_page'])}</code></p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    *,
    model_info: str | os.PathLike[str],
    qc: str | os.PathLike[str],
    cv_metrics: str | os.PathLike[str],
    holdout_metrics: str | os.PathLike[str],
    model_state: str | os.PathLike[str],
    plots: Sequence[str | os.PathLike[str]],
    html_out: str | os.PathLike[str],
) -> None:
    """Write the HTML report of a run from its output files."""
    text = render_report(
        model_info=read_json(model_info),
        qc=read_json(qc),
        cv=read_json(cv_metrics),
        holdout=read_json(holdout_metrics),
        state=read_json(model_state),
        plots=plots,
    )
    with atomic_output(html_out) as tmp:
        tmp.write_text(text)
