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


def _interval(value: Mapping[str, float]) -> str:
    return f"{value['estimate']:.3f} [{value['lower']:.3f}, {value['upper']:.3f}]"


def _comparison_section(
    comparison: Mapping[str, Any], images: Mapping[str, str | os.PathLike[str]]
) -> list[str]:
    metric = comparison["primary_metric"]
    chance = comparison.get("chance")
    rows = [[name, _interval(scores[metric])] for name, scores in comparison["models"].items()]
    if chance is not None:
        rows.append(["chance level", f"{chance:.3f}"])
    parts = [
        "<h2>Pipeline, linear baseline and negative control (same outer folds)</h2>",
        f"<p>Out-of-fold {html.escape(metric)} with subject-bootstrap intervals.</p>",
        _table(["model", metric], rows),
    ]
    difference = comparison.get("pipeline_minus_baseline")
    if difference is not None:
        baseline = comparison.get("baseline", {}).get("model", "linear baseline")
        parts.append(
            f"<p>Pipeline - {html.escape(str(baseline))}: {_interval(difference)} "
            "(paired subject bootstrap).</p>"
        )
    control = comparison.get("negative_control")
    if control is not None and control.get("contains_chance") is False:
        parts.append(
            "<p class='warn'>The permuted-outcome control scores away from chance: its interval "
            "excludes the chance level. Look for leakage before trusting these results.</p>"
        )
    elif control is not None:
        parts.append(
            "<p>The permuted-outcome control (outcomes shuffled across subjects, the whole "
            "pipeline rerun on the same folds) scores at chance.</p>"
        )
    rows = [[r["setting"], _interval(r["metrics"][metric])] for r in comparison["modality_value"]]
    parts += [
        "<h2>Modality value</h2>",
        "<p>Out-of-fold performance with each modality alone, all but one, and the full model "
        "with one modality missing at prediction time (the model still predicts).</p>",
        _table(["setting", metric], rows),
        "<div class='plots'>",
        *[_image(p) for p in images.values()],
        "</div>",
    ]
    return parts


def _twin_section(
    twin: Mapping[str, Any], images: Mapping[str, str | os.PathLike[str]]
) -> list[str]:
    """What-if predictions: assumptions, average effect against the trial, heterogeneity."""
    spec = twin["treatment"]
    reference, treated = spec["arms"]
    scale = twin["outcome_scale"]
    level = round(100 * twin["confidence_level"])
    trial = twin["trial_contrast"]
    direction = "fall" if scale["lower_is_better"] else "rise"
    where = "" if twin.get("landmark") is None else f" at landmark {twin['landmark']:g}"
    parts = [
        "<h2>Digital twin: what-if predictions under each treatment arm</h2>",
        f"<p>Arm column <code>{html.escape(spec['column'])}</code>: {html.escape(str(treated))} "
        f"against the reference {html.escape(str(reference))}; outcome scale: "
        f"{html.escape(scale['label'])}. <em>Benefit</em> is the {direction} in it under "
        f"{html.escape(str(treated))} (positive favours {html.escape(str(treated))}). "
        f"Out-of-fold predictions of {twin['n_subjects']} development subjects{where} "
        f"({', '.join(f'{html.escape(str(a))}: {n}' for a, n in twin['n_subjects_by_arm'].items())}); "
        f"{level}% intervals. The {twin['served_learner'].upper()}-learner serves "
        "<code>omics-ml predict --what-if</code>.</p>",
        f"<p class='warn'><strong>Assumptions.</strong> {html.escape(twin['assumptions'])}"
        + (
            ""
            if spec.get("randomised", True)
            else " This cohort is marked as <strong>not randomised</strong>."
        )
        + "</p>",
        *[f"<p class='warn'>{html.escape(w)}</p>" for w in twin["warnings"]],
        f"<p><strong>{html.escape(twin['heterogeneity_statement'])}</strong></p>",
    ]
    rows = [
        [
            f"trial contrast ({trial['method']})",
            _interval(trial["benefit"]),
            "-",
            "-",
            "-",
        ]
    ]
    for learner, result in twin["learners"].items():
        m = result["metrics"]
        rows.append(
            [
                f"{learner.upper()}-learner, average predicted benefit",
                _interval(m["average_benefit"]),
                "yes" if result["agrees_with_trial"] else "NO",
                _interval(m["c_for_benefit"]),
                _interval(m["policy_gain_vs_best_fixed"]),
            ]
        )
    parts += [
        _table(
            [
                "estimate",
                f"benefit ({level}% CI)",
                "agrees with trial",
                "c-for-benefit",
                "policy gain over best of treat-all/none",
            ],
            rows,
        ),
        "<p>The average predicted benefit's interval adds the spread over bootstrap refits of "
        "the model to the subject bootstrap (the X-learner's, which has no refits, is the "
        "subject bootstrap's alone and so narrower). The c-for-benefit (van Klaveren et al. 2018) pairs "
        "treated and control subjects by predicted benefit: 0.5 is chance. The policy 'treat if "
        "predicted benefit > 0' is valued by inverse-probability weighting "
        f"({html.escape(twin['policy_propensity'])}).</p>",
    ]
    first = next(iter(twin["learners"].values()))["metrics"]
    policy_rows = [
        [f"treat none ({reference})", _interval(first["policy_treat_none"])],
        [f"treat all ({treated})", _interval(first["policy_treat_all"])],
    ]
    for learner, result in twin["learners"].items():
        share = result["metrics"]["fraction_recommended_treated"]["estimate"]
        policy_rows.append(
            [
                f"{learner.upper()}-learner: treat if benefit > 0 ({100 * share:.0f}% treated)",
                _interval(result["metrics"]["policy_model"]),
            ]
        )
    parts.append(_table(["policy", scale["label"]], policy_rows))
    calibration_rows = [
        [
            learner.upper(),
            g["group"],
            g["n"],
            f"{g['predicted']:.3f}",
            f"{g['observed']:.3f} [{g['lower']:.3f}, {g['upper']:.3f}]",
        ]
        for learner, result in twin["learners"].items()
        for g in result["calibration"]["groups"]
    ]
    parts.append(
        _table(
            ["learner", "group", "subjects", "predicted benefit", "observed benefit"],
            calibration_rows,
        )
    )
    auc = twin["overlap"].get("auc")
    if auc:
        parts.append(
            f"<p>Overlap: the arm predicted from the baseline features (out of fold) has AUC "
            f"{_interval(auc)} (0.5 when randomised); "
            f"{100 * twin['overlap']['fraction_outside']:.1f}% of subjects have an estimated "
            "propensity outside [0.05, 0.95].</p>"
        )
    parts += ["<div class='plots'>", *[_image(p) for p in images.values()], "</div>"]
    return parts


def _tuning_section(cv: Mapping[str, Any], state: Mapping[str, Any]) -> list[str]:
    folds = [f for f in cv["per_fold"] if "tuned_params" in f]
    info = state.get("info", {})
    parts: list[str] = []
    if folds:
        names = list(folds[0]["tuned_params"])
        rows = [[f["fold"], f["n_rounds"], *[f["tuned_params"][n] for n in names]] for f in folds]
        final = info.get("tuning", {})
        if final:
            rows.append(["final", info["n_rounds"], *[final["params"][n] for n in names]])
        parts += [
            "<h2>Nested tuning</h2>",
            f"<p>Seeded Optuna TPE search ({final.get('n_trials', '?')} trials for the final "
            "model) inside each outer fold on its training subjects, each trial scored by "
            "subject-grouped inner cross-validation with early stopping.</p>",
            _table(["fold", "rounds", *names], rows),
        ]
    selected = [f for f in cv["per_fold"] if "selection" in f]
    if selected:
        modalities = list(selected[0]["selection"])
        rows = [
            [
                f["fold"],
                *[
                    f"{f['selection'][m]['n_kept']} of {f['selection'][m]['n_in']}"
                    for m in modalities
                ],
            ]
            for f in selected
        ]
        parts += [
            "<h2>In-fold feature selection</h2>",
            _table(["fold", *modalities], rows),
        ]
    return parts


def _calibration_rows(*evaluations: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            e["title"],
            e["probability_calibration"]["method"],
            e["probability_calibration"]["brier_score_uncalibrated"],
            e["probability_calibration"]["brier_score_calibrated"],
            e["probability_calibration"]["ece_uncalibrated"],
            e["probability_calibration"]["ece_calibrated"],
        ]
        for e in evaluations
        if e.get("probability_calibration")
    ]
    if not rows:
        return []
    return [
        "<h2>Probability calibration</h2>",
        "<p>Calibration maps fitted on inner out-of-fold probabilities of each fold's training "
        "subjects, never on its test subjects.</p>",
        _table(
            ["evaluation", "method", "Brier before", "Brier after", "ECE before", "ECE after"],
            rows,
        ),
    ]


def _subgroup_section(
    subgroups: Mapping[str, Any], images: Mapping[str, str | os.PathLike[str]]
) -> list[str]:
    metric = subgroups["primary_metric"]
    parts = ["<h2>Subgroup performance</h2>"]
    for split, title in (("cv", "Out-of-fold"), ("holdout", "Locked holdout")):
        result = subgroups.get(split)
        if not result:
            continue
        rows = [["all", "all", "", _interval(result["cohort"][metric]), ""]]
        for name, levels in result["subgroups"].items():
            for level, value in levels.items():
                shown = (
                    _interval(value["metrics"][metric])
                    if value["evaluable"]
                    else f"not evaluated ({value['reason']})"
                )
                flag = "worse than cohort" if metric in value["flagged"] else ""
                rows.append([name, level, value["n_subjects"], shown, flag])
        parts += [
            f"<h3>{title}</h3>",
            _table(["subgroup", "level", "subjects", metric, "flag"], rows),
        ]
        for flag in result["flags"]:
            parts.append(
                f"<p class='warn'>{html.escape(title)}: {html.escape(str(flag['subgroup']))} = "
                f"{html.escape(str(flag['level']))} has {html.escape(flag['metric'])} "
                f"{flag['estimate']:.3f} [{flag['lower']:.3f}, {flag['upper']:.3f}], worse than "
                f"the whole cohort's {flag['cohort_estimate']:.3f} beyond its interval.</p>"
            )
    parts += ["<div class='plots'>", *[_image(p) for p in images.values()], "</div>"]
    return parts


def _explanation_section(
    shap: Mapping[str, Any], images: Mapping[str, str | os.PathLike[str]]
) -> list[str]:
    return [
        "<h2>Explanations (SHAP)</h2>",
        f"<p>Exact tree SHAP values of the final model on {shap['n_rows']} development rows, in "
        f"units of the {html.escape(shap['margin'])}. Per-patient top contributions: "
        "<code>omics-ml predict --explain K</code>.</p>",
        _table(
            ["modality", "mean |SHAP|", "features"],
            [[m["modality"], m["mean_abs_shap"], m["n_features"]] for m in shap["modalities"]],
        ),
        _table(
            ["feature", "mean |SHAP|"],
            [[f["feature"], f["mean_abs_shap"]] for f in shap["features"][:10]],
        ),
        "<div class='plots'>",
        *[_image(p) for p in images.values()],
        "</div>",
    ]


def render_report(
    *,
    run_info: Mapping[str, Any],
    qc: Mapping[str, Any],
    cv: Mapping[str, Any],
    holdout: Mapping[str, Any],
    state: Mapping[str, Any],
    plots: Sequence[str | os.PathLike[str]],
    comparison: Mapping[str, Any] | None = None,
    subgroups: Mapping[str, Any] | None = None,
    shap: Mapping[str, Any] | None = None,
    review_plots: Mapping[str, str | os.PathLike[str]] | None = None,
    twin: Mapping[str, Any] | None = None,
) -> str:
    """Render the report as a self-contained HTML string (plots embedded).

    ``comparison``, ``subgroups`` and ``shap`` are the JSON outputs of the review steps;
    ``review_plots`` maps their plot names (``comparison``, ``modality_value``,
    ``shap_summary``, ``shap_modalities``, ``subgroups_cv``, ``subgroups_holdout``, and
    the ``twin_*`` plots) to PNGs; ``twin`` is the what-if evaluation (``twin.json``).
    """
    review_plots = dict(review_plots or {})

    def images(*names: str) -> dict[str, str | os.PathLike[str]]:
        return {n: review_plots[n] for n in names if n in review_plots}

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
        f"<title>omics-ml report: {html.escape(run_info['model_name'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>omics-ml report: {html.escape(run_info['model_name'])}, run {html.escape(run_info['run_id'][:8])}</h1>",
        _table(
            ["item", "value"],
            [
                *_task_rows(state),
                ["MLflow run (parent)", run_info["run_id"]],
                ["final-model run", run_info["final_run_id"]],
                ["logged model", run_info["logged_model_uri"]],
                ["tracking store", run_info["tracking_uri"]],
                [
                    "registration",
                    f"the last step registers this model as a new version of "
                    f"{run_info['model_name']} (alias challenger); it takes the champion alias "
                    f"by the rule '{run_info['promotion_rule']}' on holdout "
                    f"{run_info['promotion_metric']} (margin {run_info['promotion_margin']:g}; "
                    f"this run: {run_info['holdout_estimates'][run_info['promotion_metric']]:.4f}). "
                    "`omics-ml models` lists the versions and the decisions.",
                ],
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
        *_calibration_rows(cv, holdout),
        *_tuning_section(cv, state),
        *(
            _comparison_section(comparison, images("comparison", "modality_value"))
            if comparison
            else []
        ),
        *(
            _subgroup_section(subgroups, images("subgroups_cv", "subgroups_holdout"))
            if subgroups
            else []
        ),
        *(_explanation_section(shap, images("shap_summary", "shap_modalities")) if shap else []),
        *(
            _twin_section(
                twin,
                images("twin_effects", "twin_calibration", "twin_policy", "twin_overlap"),
            )
            if twin
            else []
        ),
        "<h2>Use the model</h2>",
        f"<p><code>omics-ml predict --model {html.escape(run_info['champion_uri'])} "
        f"--tracking-uri {html.escape(run_info['tracking_uri'])} --input DIR "
        f"{'--samples SHEET ' if state.get('landmarks') else ''}--output predictions.csv "
        "--plot DIR</code></p>",
        *(
            [
                "<p>What-if under each arm: add <code>--what-if</code> (per-patient plots of "
                "the arms with <code>--plot DIR</code>).</p>"
            ]
            if twin
            else []
        ),
        f"<p><code>{html.escape(run_info['ui_command'])}</code>, then open "
        f"<code>{html.escape(run_info['ui_runs_page'])}</code></p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    *,
    run_info: str | os.PathLike[str],
    qc: str | os.PathLike[str],
    cv_metrics: str | os.PathLike[str],
    holdout_metrics: str | os.PathLike[str],
    model_state: str | os.PathLike[str],
    plots: Sequence[str | os.PathLike[str]],
    html_out: str | os.PathLike[str],
    reviews: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Write the HTML report of a run from its output files.

    ``reviews`` are the review steps' outputs: ``comparison.json``, ``subgroups.json``,
    ``shap_importance.json``, ``twin.json`` and their PNGs, recognised by file name.
    """
    files = {Path(p).name: p for p in reviews}

    def optional_json(name: str) -> Mapping[str, Any] | None:
        return read_json(files[name]) if name in files else None

    text = render_report(
        run_info=read_json(run_info),
        qc=read_json(qc),
        cv=read_json(cv_metrics),
        holdout=read_json(holdout_metrics),
        state=read_json(model_state),
        plots=plots,
        comparison=optional_json("comparison.json"),
        subgroups=optional_json("subgroups.json"),
        shap=optional_json("shap_importance.json"),
        twin=optional_json("twin.json"),
        review_plots={Path(n).stem: p for n, p in files.items() if n.endswith(".png")},
    )
    with atomic_output(html_out) as tmp:
        tmp.write_text(text)
