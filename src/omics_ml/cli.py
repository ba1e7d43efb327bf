"""The ``omics-ml`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omics_ml import __version__
from omics_ml.io import InputError, read_json

__all__ = ["main", "run_summary"]


def run_summary(results_dir: str = "results") -> str:
    """Text printed at the end of a pipeline run: metrics, model URI, UI and predict commands."""
    results = Path(results_dir)
    info_path = results / "register" / "model.json"
    if not info_path.exists():
        return "omics-ml: no registered model yet."
    info = read_json(info_path)
    lines = ["", "omics-ml run finished."]
    for name, path in (
        ("Out-of-fold CV", "evaluate/cv_metrics.json"),
        ("Holdout", "evaluate/holdout_metrics.json"),
    ):
        if (results / path).exists():
            data = read_json(results / path)
            level = round(100 * data["confidence_level"])
            lines.append(f"{name} ({data['n_samples']} samples, {level}% CI):")
            lines += [
                f"  {m:<18} {v['estimate']:.3f}  [{v['lower']:.3f}, {v['upper']:.3f}]"
                for m, v in data["metrics"].items()
            ]
    twin_path = results / "evaluate" / "twin.json"
    if twin_path.exists():
        twin = read_json(twin_path)
        trial = twin["trial_contrast"]["benefit"]
        arms = twin["treatment"]["arms"]
        lines.append(
            f"What-if, {arms[1]} vs {arms[0]} (benefit on {twin['outcome_scale']['label']}; "
            f"trial contrast {trial['estimate']:+.3f} [{trial['lower']:+.3f}, {trial['upper']:+.3f}]):"
        )
        for learner, result in twin["learners"].items():
            average = result["metrics"]["average_benefit"]
            c = result["metrics"]["c_for_benefit"]
            lines.append(
                f"  {learner.upper()}-learner average {average['estimate']:+.3f} "
                f"[{average['lower']:+.3f}, {average['upper']:+.3f}], c-for-benefit "
                f"{c['estimate']:.3f} [{c['lower']:.3f}, {c['upper']:.3f}]"
            )
        lines.append(f"  {twin['heterogeneity_statement'].split(':')[0]}.")
        lines += [f"  warning: {w}" for w in twin["warnings"]]
    lines += [
        f"Registered {info['model_uri']} ({'champion' if info['promoted'] else 'not champion'}: {info['promotion_reason']})",
        f"Report:  {results / 'report' / 'report.html'}",
        f"MLflow:  {info['ui_command']}",
        f"         then open {info['ui_runs_page']}",
        f"Predict: omics-ml predict --model {info['champion_uri']} --tracking-uri {info['tracking_uri']} "
        f"{info.get('predict_arguments', '--input DIR')} --output predictions.csv --plot plots",
    ]
    if twin_path.exists():
        lines.append("What-if: the same command with --what-if (each arm, effects, bands, plots)")
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    from omics_ml.predict import load_model, model_metadata, read_model_inputs

    model = load_model(args.model, tracking_uri=args.tracking_uri)
    frame = read_model_inputs(model, args.input, samples=args.samples)
    if args.what_if:
        return _what_if(model, frame, args)
    predictions = model.predict(frame)
    if args.plot:
        from omics_ml.trajectory import plot_patient_trajectories

        written = plot_patient_trajectories(
            predictions, model_metadata(model), args.plot, frame=frame
        )
        print(f"{len(written)} per-patient plot(s) written to {args.plot}", file=sys.stderr)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        predictions.to_csv(out, index=False)
    shown = predictions.drop(columns=[c for c in predictions if c.startswith("surv_")])
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if shown.shape[1] < predictions.shape[1]:
        print(
            f"(survival curves on {predictions.shape[1] - shown.shape[1]} grid times: the "
            "surv_<time> columns of --output)",
            file=sys.stderr,
        )
    if args.output:
        print(f"\n{len(predictions)} predictions written to {args.output}", file=sys.stderr)
    if args.explain:
        _explain(model, frame, top=args.explain, output=args.output)
    return 0


def _what_if(model: Any, frame: Any, args: argparse.Namespace) -> int:
    """Print and write each patient's predictions under every treatment arm."""
    from omics_ml.predict import model_metadata

    metadata = model_metadata(model)
    if not metadata.get("treatment"):
        print(
            "omics-ml predict --what-if: this model was trained without a treatment section "
            "in its config, so it has no what-if predictions. Add treatment: {column, arms} "
            "and retrain.",
            file=sys.stderr,
        )
        return 2
    predictions = model.predict(frame, params={"what_if": True})
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        predictions.to_csv(out, index=False)
    if args.plot:
        from omics_ml.trajectory import plot_what_if

        written = plot_what_if(predictions, metadata, args.plot)
        print(f"{len(written)} per-patient what-if plot(s) written to {args.plot}", file=sys.stderr)
    ids = [c for c in ("sample_id", "subject_id", "landmark") if c in predictions]
    shown = predictions[
        [
            *ids,
            "arm",
            "outcome",
            "outcome_lower",
            "outcome_upper",
            "effect",
            "effect_lower",
            "effect_upper",
            "prob_benefit",
        ]
    ]
    treatment = metadata["treatment"]
    print(
        f"What-if under each arm of {treatment['column']} (effect: arm minus "
        f"{treatment['arms'][0]}; bands: {round(100 * treatment['interval_level'])}% of "
        f"{treatment['n_bootstrap']} bootstrap refits; prob_benefit: share of refits that "
        "predict a benefit):"
    )
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        "These are model predictions, causal only under the assumptions in the run's report "
        "(randomised arm or no unmeasured confounding, overlap).",
        file=sys.stderr,
    )
    if args.output:
        print(f"\n{len(predictions)} rows written to {args.output}", file=sys.stderr)
    return 0


def _explain(model: Any, frame: Any, *, top: int, output: str | None) -> None:
    """Print (and next to --output, write) each patient's top SHAP contributions."""
    pipeline = model.unwrap_python_model().pipeline
    contributions = pipeline.explain(frame, top=top)
    modalities = pipeline.explain_modalities(frame)
    print(
        f"\nTop {top} SHAP contributions per patient (units: the model's margin, e.g. "
        "log-odds or log hazard):"
    )
    print(contributions.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nContribution per modality:")
    print(modalities.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if output:
        out = Path(output)
        for name, table in (
            ("explanations", contributions),
            ("modality_contributions", modalities),
        ):
            path = out.with_name(f"{out.stem}_{name}.csv")
            table.to_csv(path, index=False)
            print(f"{name.replace('_', ' ')} written to {path}", file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    import yaml

    from omics_ml.validate import validate_inputs

    config = yaml.safe_load(Path(args.config).read_text())
    qc = validate_inputs(config, qc_out=args.qc_out)
    print(
        f"{args.config}: {qc['n_samples']} samples, {qc['n_subjects']} subjects, "
        f"modalities {', '.join(qc['modalities'])}: inputs are valid."
    )
    return 0


def _models(args: argparse.Namespace) -> int:
    import mlflow

    from omics_ml.model_versions import format_versions, versions_table

    # main() has set the results/mlflow store when neither --tracking-uri nor
    # $MLFLOW_TRACKING_URI is given; otherwise MLflow resolves it, as for `predict`.
    uri = args.tracking_uri or mlflow.get_tracking_uri()
    print(format_versions(versions_table(uri, args.name), tracking_uri=uri))
    return 0


def _summary(args: argparse.Namespace) -> int:
    print(run_summary(args.results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``omics-ml``."""
    parser = argparse.ArgumentParser(
        prog="omics-ml",
        description="Multi-omics XGBoost models with leakage-proof evaluation, tracked in MLflow. "
        "Train with `snakemake --profile profiles/local`; these commands use the results.",
    )
    parser.add_argument("--version", action="version", version=f"omics-ml {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "predict", help="predict new patients from raw per-modality files with a registered model"
    )
    p.add_argument(
        "--model",
        required=True,
        help="models:/NAME@champion, models:/NAME/VERSION or a model directory",
    )
    p.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="a directory of <modality>.csv|tsv|parquet files, modality=path pairs, or files named after modalities",
    )
    p.add_argument("--output", help="CSV file for the predictions (also printed)")
    p.add_argument(
        "--plot",
        metavar="DIR",
        help="write one PNG per patient with its predicted trajectory (survival curves from "
        "each landmark reached, future values with intervals, or class probabilities)",
    )
    p.add_argument(
        "--explain",
        type=int,
        metavar="K",
        default=None,
        help="also give each patient's K largest SHAP contributions (features) and the "
        "contribution of every modality (written next to --output as *_explanations.csv and "
        "*_modality_contributions.csv)",
    )
    p.add_argument(
        "--what-if",
        action="store_true",
        help="predict each patient under every treatment arm of the model (models trained "
        "with a treatment section): the outcome per arm with its bootstrap band, the effect "
        "against the reference arm and the share of refits that predict a benefit; with "
        "--plot, one PNG per patient comparing the arms",
    )
    p.add_argument(
        "--samples",
        help="sample sheet of the new samples: subject_id and visit_time (needed by "
        "longitudinal models) and batch labels (needed when the model corrects batch effects)",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow/mlflow.db if present)",
    )
    p.set_defaults(func=_predict)

    v = sub.add_parser("validate", help="check a config's input files against the input contract")
    v.add_argument("--config", default="config/config.yaml")
    v.add_argument("--qc-out", default=None, help="write the QC summary JSON here")
    v.set_defaults(func=_validate)

    m = sub.add_parser(
        "models",
        help="list registered model versions with their aliases, promotion decision and metrics",
    )
    m.add_argument("--name", default=None, help="one registered model (default: all)")
    m.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow/mlflow.db if present)",
    )
    m.set_defaults(func=_models)

    g = sub.add_parser(
        "simulate",
        help="write a seeded multi-omics cohort with a known truth, and a config that runs it",
    )
    g.add_argument("--output", required=True, help="folder for the cohort, config.yaml and truth")
    g.add_argument("--subjects", type=int, default=500)
    g.add_argument("--visits", type=int, default=3, help="visits per subject, 6 months apart")
    g.add_argument(
        "--features",
        nargs="+",
        default=["rnaseq=5000", "proteomics=500", "metabolomics=200"],
        metavar="MODALITY=N",
        help="features per modality: rnaseq, proteomics, metabolomics, methylation, genotype",
    )
    g.add_argument("--informative", type=int, default=10, help="informative features per modality")
    g.add_argument(
        "--signal", type=float, default=1.0, help="effect of the latent score (0: no signal)"
    )
    g.add_argument(
        "--heterogeneity",
        type=float,
        default=0.4,
        help="change of the treatment's log hazard ratio per modifier allele (0: none)",
    )
    g.add_argument(
        "--treatment-effect",
        type=float,
        default=-0.3,
        help="log hazard ratio of the treated arm (for a subject with the mean modifier)",
    )
    g.add_argument(
        "--what-if",
        action="store_true",
        help="write a treatment section (clinical:arm) into config.yaml: the run then "
        "evaluates what-if predictions under each arm",
    )
    g.add_argument("--batches", type=int, default=3)
    g.add_argument(
        "--covariates",
        type=int,
        default=0,
        help="extra numeric clinical covariates (lab001, ...) besides age, sex, BMI and arm",
    )
    g.add_argument(
        "--task", choices=("classification", "survival", "regression"), default="classification"
    )
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=_simulate)

    s = sub.add_parser("summary", help="print the metrics, model and commands of a finished run")
    s.add_argument("--results", default="results")
    s.set_defaults(func=_summary)
    return parser


def _simulate(args: argparse.Namespace) -> int:
    from omics_ml.simulate import SimulationSpec, simulate_cohort

    features = {}
    for item in args.features:
        name, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            msg = f"--features: expected MODALITY=N (e.g. proteomics=3000), got {item!r}."
            raise ValueError(msg)
        features[name] = int(count)
    spec = SimulationSpec(
        n_subjects=args.subjects,
        n_visits=args.visits,
        features=features,
        n_informative=args.informative,
        signal=args.signal,
        heterogeneity=args.heterogeneity,
        treatment_effect=args.treatment_effect,
        what_if=args.what_if,
        n_batches=args.batches,
        n_covariates=args.covariates,
        task=args.task,
        seed=args.seed,
    )
    record = simulate_cohort(args.output, spec)  # checks the spec first
    sizes = ", ".join(f"{m} {n}" for m, n in features.items() if n)
    print(
        f"Simulated {args.subjects} subjects, {record['n_samples']} samples ({sizes} features) "
        f"in {args.output}.\nRun it: snakemake --profile profiles/local --configfile "
        f"{Path(args.output) / 'config.yaml'}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``omics-ml``."""
    import os

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "tracking_uri", "unset") is None and not os.environ.get("MLFLOW_TRACKING_URI"):
        default_db = Path("results/mlflow/mlflow.db")
        if default_db.exists():
            args.tracking_uri = f"sqlite:///{default_db.resolve()}"
    try:
        return args.func(args)
    except (InputError, ValueError) as err:  # bad input: a message, not a traceback
        print(f"omics-ml: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
