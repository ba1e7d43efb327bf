"""MLflow tracking and registry: the one serial step that writes to the store.

Fold jobs and ``train_final`` write files; :func:`log_pipeline_run` turns them into one parent run
with a child run per outer fold, logs the deployable model, registers a version and moves the
``champion`` alias only by the configured, logged rule.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import anndata as ad
import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from omics_ml.assess import higher_is_better
from omics_ml.integrate import raw_input_frame
from omics_ml.io import read_json, write_json
from omics_ml.model import MODEL_CODE_PATH, PIPELINE_ARTIFACT, input_contract, model_signature
from omics_ml.pipeline import OmicsPipeline
from omics_ml.tasks import DEFAULT_PROMOTION_METRIC

__all__ = [
    "CHAMPION",
    "config_hash",
    "default_store",
    "flatten_config",
    "log_pipeline_run",
    "log_report",
    "promotion_decision",
    "pseudonymise",
]

logger = logging.getLogger(__name__)

CHAMPION = "champion"
_MODEL_REQUIREMENTS = (
    "mlflow",
    "xgboost",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "anndata",
    "polars",
    "pyarrow",
)


def default_store(results_dir: str | os.PathLike[str] = "results") -> tuple[str, str]:
    """Tracking URI and artifact root of the embedded SQLite store under ``results_dir``."""
    root = Path(results_dir).resolve() / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested config into ``a.b.c`` keys with string values (MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}."))
        else:
            flat[name] = json.dumps(value) if not isinstance(value, str) else value
    return flat


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the config in canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _pseudonym_key(env_var: str, results_dir: Path) -> bytes:
    if os.environ.get(env_var):
        return os.environ[env_var].encode()
    key_file = results_dir / "mlflow" / ".pseudonym_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return key_file.read_text().strip().encode()


def pseudonymise(ids: Sequence[str], key: bytes) -> list[str]:
    """Keyed hash (HMAC-SHA256, 16 hex characters) of each identifier."""
    return [hmac.new(key, str(i).encode(), hashlib.sha256).hexdigest()[:16] for i in ids]


def _git_commit(directory: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def promotion_decision(
    rule: str, metric: str, new_value: float, champion_value: float | None
) -> tuple[bool, str]:
    """Whether a new version takes the champion alias, and why.

    Parameters
    ----------
    rule : {"always", "if_better", "never"}
    metric : str
        Holdout metric compared (direction from :func:`omics_ml.assess.higher_is_better`).
    new_value : float
        The new version's holdout metric.
    champion_value : float or None
        The current champion's, or None when there is no champion.
    """
    if rule == "never":
        return False, "promotion_rule is 'never'"
    if rule == "always":
        return True, "promotion_rule is 'always'"
    if champion_value is None or not np.isfinite(champion_value):
        return True, "no current champion"
    better = (
        new_value >= champion_value if higher_is_better(metric) else new_value <= champion_value
    )
    relation = "at least as good as" if better else "worse than"
    return (
        better,
        f"holdout {metric} {new_value:.4f} is {relation} the champion's {champion_value:.4f}",
    )


def _log_metrics_with_ci(prefix: str, metrics: Mapping[str, Mapping[str, float]]) -> None:
    values = {}
    for name, value in metrics.items():
        if not np.isfinite(value["estimate"]):
            continue
        values[f"{prefix}{name}"] = value["estimate"]
        if np.isfinite(value["lower"]):
            values[f"{prefix}{name}_ci_lower"] = value["lower"]
            values[f"{prefix}{name}_ci_upper"] = value["upper"]
    mlflow.log_metrics(values)


def _log_comparison(comparison: Mapping[str, Any]) -> None:
    """Out-of-fold primary metric of the baseline, the control and each modality setting."""
    metric = comparison["primary_metric"]
    names = {"linear baseline": "baseline", "permuted outcome": "permuted_control"}
    values = {
        f"cv_{names[name]}_{metric}": scores[metric]["estimate"]
        for name, scores in comparison["models"].items()
        if name in names
    }
    if "pipeline_minus_baseline" in comparison:
        values[f"cv_pipeline_minus_baseline_{metric}"] = comparison["pipeline_minus_baseline"][
            "estimate"
        ]
    for row in comparison["modality_value"]:
        if row["modality"] is not None:
            values[f"cv_{row['kind']}_{row['modality']}_{metric}"] = row["metrics"][metric][
                "estimate"
            ]
    mlflow.log_metrics({k: float(v) for k, v in values.items() if np.isfinite(v)})


def _requirements() -> list[str]:
    reqs = []
    for name in _MODEL_REQUIREMENTS:
        try:
            reqs.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def _pseudonymised_csv(path: str | os.PathLike[str], key: bytes, out: Path) -> Path:
    frame = pd.read_parquet(path)
    frame["sample_id"] = pseudonymise(frame["sample_id"].astype(str), key)
    frame["subject_id"] = pseudonymise(frame["subject_id"].astype(str), key)
    frame.to_csv(out, index=False)
    return out


def _predict_arguments(config: Mapping[str, Any], pipeline: OmicsPipeline) -> str:
    """``--input``/``--samples`` of the new patients bundled next to the cohort, if any."""
    directory = Path(config["cohort"]["samples"]).parent / "new_patients"
    if not directory.is_dir():
        return "--input DIR" + (" --samples SHEET" if pipeline.landmarks else "")
    arguments = f"--input {directory}"
    if pipeline.landmarks is not None or pipeline.batch_columns:
        arguments += f" --samples {directory / 'samples.csv'}"
    return arguments


def log_pipeline_run(
    *,
    config: Mapping[str, Any],
    qc: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    features: str | os.PathLike[str],
    fold_metrics: Sequence[str | os.PathLike[str]],
    cv_metrics: str | os.PathLike[str],
    oof_predictions: str | os.PathLike[str],
    holdout_metrics: str | os.PathLike[str],
    holdout_predictions: str | os.PathLike[str],
    plots: Sequence[str | os.PathLike[str]],
    model_dir: str | os.PathLike[str],
    model_info_out: str | os.PathLike[str],
    results_dir: str | os.PathLike[str] = "results",
    source_dir: str | os.PathLike[str] = ".",
    comparison: str | os.PathLike[str] | None = None,
    review_files: Sequence[str | os.PathLike[str]] = (),
) -> dict[str, Any]:
    """Log one pipeline run to MLflow, register the model and apply the promotion rule.

    ``comparison`` (``comparison.json`` of :func:`omics_ml.compare.compare_variants`) adds the
    baseline, negative-control and modality-value metrics to the run; ``review_files`` (plots
    and JSON of the comparison, subgroups and explanations) are logged under ``evaluation``.

    Returns
    -------
    dict
        What was logged (also written to ``model_info_out``): tracking URI, experiment and run
        ids, model name, version and URI, promotion decision and the UI command.
    """
    tracking = dict(config.get("tracking", {}))
    results_dir = Path(results_dir)
    uri, artifact_root = default_store(results_dir)
    if tracking.get("tracking_uri"):
        uri, artifact_root = tracking["tracking_uri"], None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_name = tracking.get("experiment_name", "omics-ml")
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(experiment_name, artifact_location=artifact_root)
    )
    model_name = tracking.get("model_name", "omics-ml-model")
    task = config.get("task", "classification")
    metric = tracking.get("promotion_metric") or DEFAULT_PROMOTION_METRIC[task]
    rule = tracking.get("promotion_rule", "if_better")
    key = _pseudonym_key(tracking.get("pseudonym_key_env", "OMICS_ML_PSEUDONYM_KEY"), results_dir)
    qc_summary = read_json(qc)
    cv = read_json(cv_metrics)
    holdout = read_json(holdout_metrics)
    chash = config_hash(config)
    pipeline = OmicsPipeline.load(model_dir)
    tags = {
        "omics_ml.version": importlib_metadata.version("omics-ml"),
        "git_commit": _git_commit(Path(source_dir)),
        "config_hash": chash,
        "task": task,
        "negative_control.permute_labels": str(read_json(splits).get("permuted_labels", False)),
        **{f"data_digest.{Path(p).name}": d for p, d in qc_summary.get("files", {}).items()},
    }
    staging = results_dir / "register" / "staging"
    staging.mkdir(parents=True, exist_ok=True)

    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{model_name}-{chash[:8]}"
    ) as parent:
        mlflow.set_tags(tags)
        mlflow.log_params(flatten_config(config))
        for path in fold_metrics:
            record = read_json(path)
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=f"fold_{record['fold']}", nested=True
            ):
                mlflow.set_tags({"fold": str(record["fold"]), "config_hash": chash})
                mlflow.log_params(
                    {
                        k: record[k]
                        for k in (
                            "fold",
                            "n_train_samples",
                            "n_test_samples",
                            "n_train_subjects",
                            "n_test_subjects",
                            "n_features_used",
                            "n_rounds",
                        )
                    }
                )
                mlflow.log_metrics(
                    {
                        **{k: v for k, v in record["metrics"].items() if np.isfinite(v)},
                        "inner_validation_score": record["inner_validation_score"],
                    }
                )
                if "tuned_params" in record:
                    mlflow.log_params({f"tuned.{k}": v for k, v in record["tuned_params"].items()})
        _log_metrics_with_ci("cv_", cv["metrics"])
        mlflow.log_metrics(
            {f"cv_fold_sd_{k}": v for k, v in cv["fold_sd"].items() if np.isfinite(v)}
        )
        _log_metrics_with_ci("holdout_", holdout["metrics"])
        mlflow.log_metrics(
            {
                "n_development_samples": holdout["n_development_samples"],
                "n_holdout_samples": holdout["n_samples"],
                "final_n_rounds": holdout["n_rounds"],
            }
        )
        if comparison is not None:
            _log_comparison(read_json(comparison))
        for path in [*plots, qc, cv_metrics, holdout_metrics, *review_files]:
            mlflow.log_artifact(str(path), artifact_path="evaluation")
        mlflow.log_artifact(
            str(_pseudonymised_csv(oof_predictions, key, staging / "oof_predictions.csv")),
            "predictions",
        )
        mlflow.log_artifact(
            str(_pseudonymised_csv(holdout_predictions, key, staging / "holdout_predictions.csv")),
            "predictions",
        )

        contract = input_contract(pipeline, config["modalities"])
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE_PATH),
            artifacts={PIPELINE_ARTIFACT: str(Path(model_dir).resolve())},
            code_paths=[str(Path(__file__).resolve().parent)],
            signature=model_signature(pipeline),
            pip_requirements=_requirements(),
            metadata={
                "input_contract": contract,
                "classes": pipeline.classes,
                "task": pipeline.task,
                "longitudinal": None
                if pipeline.landmarks is None
                else pipeline.landmarks.to_json(),
                "head": {k: v for k, v in pipeline.head.to_json().items() if k != "baseline"},
                "config_hash": chash,
            },
            registered_model_name=model_name,
        )
        version = str(info.registered_model_version)
        version_uri = f"models:/{model_name}/{version}"

        # The registered artifact must reproduce train_final's holdout predictions exactly.
        served = mlflow.pyfunc.load_model(version_uri).predict(
            raw_input_frame(ad.read_h5ad(features)[read_json(splits)["holdout"]])
        )
        # Longitudinal models serve every landmark a subject's visits reached; the holdout
        # table has the rows at risk. Their common rows must agree.
        expected = pd.read_parquet(holdout_predictions).set_index("sample_id")
        served = served[served["sample_id"].isin(expected.index)]
        if served.empty:
            msg = f"the registered model {version_uri} returned none of the holdout rows; the champion alias was not moved."
            raise RuntimeError(msg)
        expected = expected.loc[served["sample_id"]]
        value_cols = [
            name
            for name, kind in pipeline.output_columns()
            if kind == "double" and name != "landmark"
        ]
        max_diff = float(
            np.max(np.abs(served[value_cols].to_numpy() - expected[value_cols].to_numpy()))
        )
        if max_diff > 1e-6:
            msg = f"the registered model {version_uri} predicts the holdout differently from train_final (max |diff| {max_diff:.2e}); the champion alias was not moved."
            raise RuntimeError(msg)

        if metric not in holdout["metrics"]:
            msg = f"tracking.promotion_metric {metric!r} is not a {task} metric; choose one of {sorted(holdout['metrics'])}."
            raise ValueError(msg)
        # Compared at the precision of the version tags, where the champion's value is read.
        new_value = float(f"{holdout['metrics'][metric]['estimate']:.6f}")
        try:
            champion = client.get_model_version_by_alias(model_name, CHAMPION)
            champion_value = float(champion.tags.get(f"holdout_{metric}", "nan"))
            champion_version = str(champion.version)
        except mlflow.exceptions.MlflowException:
            champion_value, champion_version = None, None
        promote, reason = promotion_decision(rule, metric, new_value, champion_value)
        for prefix, metrics in (("holdout", holdout["metrics"]), ("cv", cv["metrics"])):
            for name, value in metrics.items():
                client.set_model_version_tag(
                    model_name, version, f"{prefix}_{name}", f"{value['estimate']:.6f}"
                )
        client.set_model_version_tag(model_name, version, "config_hash", chash)
        client.set_model_version_tag(
            model_name,
            version,
            "promotion",
            f"{'promoted' if promote else 'not promoted'}: {reason}",
        )
        if promote:
            client.set_registered_model_alias(model_name, CHAMPION, version)
        mlflow.set_tags(
            {
                "registered_model": model_name,
                "registered_version": version,
                "promotion.decision": "promoted" if promote else "not promoted",
                "promotion.reason": reason,
                "promotion.rule": rule,
            }
        )
        logger.info(
            "registered %s version %s; %s (%s)",
            model_name,
            version,
            "champion" if promote else "not champion",
            reason,
        )
        run_id = parent.info.run_id

    backend = uri.removeprefix("sqlite:///")
    result = {
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "experiment_name": experiment_name,
        "run_id": run_id,
        "model_name": model_name,
        "model_version": version,
        "model_uri": version_uri,
        "champion_uri": f"models:/{model_name}@{CHAMPION}",
        "promoted": promote,
        "promotion_reason": reason,
        "previous_champion_version": champion_version,
        "serving_check_max_abs_diff": max_diff,
        "ui_command": f"mlflow ui --backend-store-uri {uri}"
        if uri.startswith("sqlite:")
        else f"open {uri}",
        "ui_runs_page": f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs",
        "backend_store": backend,
        "predict_arguments": _predict_arguments(config, pipeline),
    }
    write_json(model_info_out, result)
    return result


def log_report(model_info: str | os.PathLike[str], report: str | os.PathLike[str]) -> None:
    """Attach the HTML report to the parent run recorded in ``model_info``."""
    info = read_json(model_info)
    client = MlflowClient(tracking_uri=info["tracking_uri"], registry_uri=info["tracking_uri"])
    client.log_artifact(info["run_id"], str(report), artifact_path="report")
