"""MLflow tracking: the serial steps that write a pipeline run to the store.

Fold jobs and ``train_final`` only write files. :func:`log_pipeline_run` (rule ``log_run``)
turns them into one parent run with a child run per outer fold and one for the final model,
logs the deployable model and checks it (it must reproduce the holdout predictions and hold no
pickle); :func:`register_logged_model` (rule ``register_model``, the last step) attaches the
report, registers the checked model as a new version and applies the promotion rule
(:mod:`omics_ml.registry`).

Two pipelines may log to one SQLite store at the same time: every step that writes holds a file
lock next to the database (:func:`store_lock`). A tracking server serialises writes itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import anndata as ad
import mlflow
import numpy as np
import pandas as pd
from filelock import FileLock
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient

from omics_ml.integrate import raw_input_frame
from omics_ml.io import read_json, write_json
from omics_ml.model import (
    MODEL_CODE_PATH,
    PIPELINE_ARTIFACT,
    TWIN_ARTIFACT,
    input_contract,
    input_example,
    model_signature,
)
from omics_ml.pipeline import OmicsPipeline
from omics_ml.provenance import (
    config_hash,
    data_digests,
    flatten_config,
    git_state,
    package_versions,
    pseudonym_key,
)
from omics_ml.registry import CHAMPION, find_pickles, register_version
from omics_ml.tasks import DEFAULT_PROMOTION_METRIC
from omics_ml.twin import TWIN_FILE

__all__ = [
    "default_store",
    "experiment_id",
    "init_tracking",
    "log_pipeline_run",
    "register_logged_model",
    "resolve_store",
    "store_lock",
]

logger = logging.getLogger(__name__)

#: Experiment and registered-model names when the config's ``tracking`` section gives none.
DEFAULT_EXPERIMENT = "omics-ml"
DEFAULT_MODEL_NAME = "omics-ml-model"

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
#: The fold record's counts, logged as parameters of the fold's child run.
_FOLD_PARAMS = (
    "fold",
    "n_train_samples",
    "n_test_samples",
    "n_train_subjects",
    "n_test_subjects",
    "n_features_used",
    "n_rounds",
)


def default_store(results_dir: str | os.PathLike[str] = "results") -> tuple[str, str]:
    """Tracking URI and artifact root of the embedded SQLite store under ``results_dir``."""
    root = Path(results_dir).resolve() / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None


def resolve_store(
    tracking: Mapping[str, Any], results_dir: str | os.PathLike[str] = "results"
) -> tuple[str, str | None]:
    """Tracking URI and artifact location of a run, from the ``tracking`` config section.

    No ``tracking_uri``: the embedded store of :func:`default_store`. A ``sqlite:///`` URI
    keeps its artifacts in ``artifacts/`` beside the database unless ``artifact_location`` says
    otherwise; a server (``http(s)://``) stores them where it was told to (None here).
    """
    uri = tracking.get("tracking_uri")
    if not uri:
        return default_store(results_dir)
    location = tracking.get("artifact_location")
    database = _sqlite_path(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{database}"
        if location is None:
            location = (database.parent / "artifacts").as_uri()
    return uri, location


@contextlib.contextmanager
def store_lock(uri: str, timeout_s: float = 3600.0) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite store while a step writes to it.

    SQLite allows one writer at a time, and MLflow creates the schema on first use; two
    pipelines started together would otherwise fail with "database is locked" or a half-made
    schema. The lock is a file beside the database (POSIX file locks work on local disks; on a
    shared cluster file system, use a tracking server). Other URIs need no lock.
    """
    database = _sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{database}.lock", timeout=timeout_s)
    if lock.is_locked:
        logger.info("waiting for another run to finish writing to %s", database)
    with lock:
        yield


def experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it if needed (safe when another run creates it too)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id


def _check_server(uri: str, timeout_s: float = 15.0) -> None:
    """Fail at once, with the fix, if a tracking server does not answer ``GET /health``.

    MLflow's own client retries with back-off for minutes before it gives up.
    """
    url = f"{uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (OSError, ValueError) as error:  # URLError and timeouts are OSErrors
        problem = str(getattr(error, "reason", error))
    msg = (
        f"tracking.tracking_uri {uri!r}: the MLflow server does not answer {url} ({problem}). "
        "Start it (mlflow server --host ... --port ...), check that this host can reach it, "
        "or remove tracking.tracking_uri to use the embedded store under results/mlflow."
    )
    raise RuntimeError(msg)


def init_tracking(
    config: Mapping[str, Any],
    *,
    info_out: str | os.PathLike[str],
    results_dir: str | os.PathLike[str] = "results",
) -> dict[str, Any]:
    """Create the store's schema, the experiment and the registered model, once, up front.

    The workflow runs this as a local rule before anything fans out, so parallel (cluster) jobs
    never race to create them, and a wrong or unreachable ``tracking.tracking_uri`` fails the
    run in seconds rather than after training.

    Parameters
    ----------
    config : mapping
        The validated workflow config (its ``tracking`` and ``task`` keys are used).
    info_out : path
        JSON written on success: tracking URI, experiment id and name, model name.
    results_dir : path, default="results"
        Where the embedded store lives when no ``tracking_uri`` is set.

    Returns
    -------
    dict
        What was written to ``info_out``.

    Raises
    ------
    RuntimeError
        If the store cannot be reached or written; the message names ``tracking.tracking_uri``.
    """
    tracking = dict(config.get("tracking", {}))
    uri, artifact_location = resolve_store(tracking, results_dir)
    experiment_name = tracking.get("experiment_name", DEFAULT_EXPERIMENT)
    model_name = tracking.get("model_name", DEFAULT_MODEL_NAME)
    task = config.get("task", "classification")
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    try:
        with store_lock(uri, tracking.get("lock_timeout_s", 3600.0)):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            exp_id = experiment_id(client, experiment_name, artifact_location)
            try:
                client.create_registered_model(
                    model_name,
                    tags={"task": task},
                    description=f"omics-ml {task} models: raw per-modality inputs in, "
                    "predicted trajectories out. Versions carry their lineage and the "
                    "promotion decision as tags.",
                )
            except MlflowException as error:
                if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                    raise
    except MlflowException as error:
        msg = (
            f"tracking.tracking_uri {uri!r}: the MLflow store could not be set up ({error}). "
            "Check that the server is running and reachable from this host, or remove "
            "tracking.tracking_uri to use the embedded store under results/mlflow."
        )
        raise RuntimeError(msg) from error
    info = {
        "tracking_uri": uri,
        "experiment_id": exp_id,
        "experiment_name": experiment_name,
        "model_name": model_name,
    }
    write_json(info_out, info)
    logger.info("tracking store %s ready: experiment %s, model %s", uri, exp_id, model_name)
    return info


def _metrics_with_ci(prefix: str, metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``<prefix><metric>`` and its interval as ``..._ci_low`` and ``..._ci_high``."""
    values = {}
    for name, value in metrics.items():
        if not np.isfinite(value["estimate"]):
            continue
        values[f"{prefix}{name}"] = float(value["estimate"])
        if np.isfinite(value["lower"]) and np.isfinite(value["upper"]):
            values[f"{prefix}{name}_ci_low"] = float(value["lower"])
            values[f"{prefix}{name}_ci_high"] = float(value["upper"])
    return values


def _comparison_metrics(comparison: Mapping[str, Any]) -> dict[str, float]:
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
    return {k: float(v) for k, v in values.items() if np.isfinite(v)}


def _twin_metrics(twin: Mapping[str, Any]) -> dict[str, float]:
    """Out-of-fold what-if metrics of each meta-learner, and the trial's own contrast."""
    values = {
        "twin_trial_benefit": twin["trial_contrast"]["benefit"]["estimate"],
        "twin_trial_benefit_lower": twin["trial_contrast"]["benefit"]["lower"],
        "twin_trial_benefit_upper": twin["trial_contrast"]["benefit"]["upper"],
    }
    auc = twin["overlap"].get("auc")
    if auc:
        values["twin_propensity_auc"] = auc["estimate"]
    for learner, result in twin["learners"].items():
        for name in (
            "average_benefit",
            "c_for_benefit",
            "policy_gain_vs_best_fixed",
            "policy_model",
        ):
            m = result["metrics"][name]
            values[f"twin_{learner}_{name}"] = m["estimate"]
            values[f"twin_{learner}_{name}_lower"] = m["lower"]
            values[f"twin_{learner}_{name}_upper"] = m["upper"]
    return {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}


def _requirements() -> list[str]:
    reqs = []
    for name in _MODEL_REQUIREMENTS:
        try:
            reqs.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def _pseudonymised_csv(path: str | os.PathLike[str], key: Any, out: Path) -> Path:
    frame = pd.read_parquet(path)
    for column in ("sample_id", "subject_id"):
        frame[column] = key.pseudonymise(frame[column].astype(str))
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


def _preprocessing_files(model_dir: Path, out: Path) -> list[Path]:
    """The fitted preprocessing of the final model, one JSON per modality, plus its record."""
    state = read_json(model_dir / "state.json")
    selected = (state.get("selection") or {}).get("columns")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for entry in state["modalities"]:
        name = entry["name"]
        record = {
            "modality": name,
            "n_raw_features": len(entry["input_features"]),
            "normaliser": entry["normaliser"],
            "selected_features": None
            if selected is None
            else [c for c in selected if c.startswith(f"{name}:")],
        }
        write_json(out / f"{name}.json", record)
        files.append(out / f"{name}.json")
    record = {k: state[k] for k in ("format_version", "task", "head", "landmarks", "info")}
    write_json(out / "model.json", record)
    files.append(out / "model.json")
    return files


def _importance_files(table: str | os.PathLike[str], out: Path) -> list[Path]:
    """The feature-importance table (SHAP and gain) split into one CSV per modality."""
    frame = pd.read_csv(table)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for modality, rows in frame.groupby("modality", sort=True):
        path = out / f"{modality}.csv"
        rows.to_csv(path, index=False)
        files.append(path)
    return files


def _log_datasets(config: Mapping[str, Any], digests: Mapping[str, str]) -> None:
    """Each input file as an MLflow dataset (name, path and digest; never its content)."""
    paths = {f"cohort.{k}": config["cohort"][k] for k in ("samples", "outcomes")}
    paths.update({f"modality.{m}": s["path"] for m, s in config["modalities"].items()})
    for role, path in paths.items():
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local file
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(Path(path).resolve()))
        mlflow.log_input(
            MetaDataset(source, name=role, digest=digests[role][:16]), context="training"
        )


def _run_note(
    task: str, cv: Mapping[str, Any], holdout: Mapping[str, Any], chash: str, n: Mapping
) -> str:
    """Markdown shown as the parent run's description in the MLflow UI."""
    lines = [
        f"**omics-ml {task}** run, config `{chash[:12]}`: {n['subjects']} subjects "
        f"({n['development']} development, {n['holdout']} locked holdout).",
        "",
        "| metric | out-of-fold CV | holdout |",
        "|---|---|---|",
    ]
    for name, value in cv["metrics"].items():
        other = holdout["metrics"].get(name, {"estimate": float("nan")})
        lines.append(f"| {name} | {value['estimate']:.3f} | {other['estimate']:.3f} |")
    lines += ["", "Children: one run per outer fold and `final_model` (the logged model)."]
    return "\n".join(lines)


def _serving_check(
    model_uri: str,
    local_dir: Path,
    *,
    pipeline: OmicsPipeline,
    features: ad.AnnData,
    holdout_ids: Sequence[str],
    holdout_predictions: str | os.PathLike[str],
    example: pd.DataFrame,
) -> float:
    """Download the logged model, refuse pickles, and compare its holdout predictions.

    The model must also predict its own input example (what a user of the artifact tries
    first); a failure there fails the step.

    Returns
    -------
    float
        Largest absolute difference to train_final's holdout predictions (at most 1e-6).
    """
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(local_dir)))
    pickles = find_pickles(local)
    if pickles:
        names = [str(p.relative_to(local)) for p in pickles]
        msg = f"the logged model {model_uri} contains pickle files {names}; it was not registered."
        raise RuntimeError(msg)
    model = mlflow.pyfunc.load_model(str(local))
    try:
        model.predict(example)
    except Exception as error:
        msg = f"the logged model {model_uri} cannot predict its own input example ({error}); it was not registered."
        raise RuntimeError(msg) from error
    served = model.predict(raw_input_frame(features[list(holdout_ids)]))
    # Longitudinal models serve every landmark a subject's visits reached; the holdout table
    # has the rows at risk. Their common rows must agree.
    expected = pd.read_parquet(holdout_predictions).set_index("sample_id")
    served = served[served["sample_id"].isin(expected.index)]
    if served.empty:
        msg = f"the logged model {model_uri} returned none of the holdout rows; it was not registered."
        raise RuntimeError(msg)
    expected = expected.loc[served["sample_id"]]
    columns = [n for n, kind in pipeline.output_columns() if kind == "double" and n != "landmark"]
    max_diff = float(np.max(np.abs(served[columns].to_numpy() - expected[columns].to_numpy())))
    if max_diff > 1e-6:
        msg = (
            f"the logged model {model_uri} predicts the holdout differently from train_final "
            f"(max |diff| {max_diff:.2e}); it was not registered."
        )
        raise RuntimeError(msg)
    return max_diff


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
    run_info_out: str | os.PathLike[str],
    results_dir: str | os.PathLike[str] = "results",
    source_dir: str | os.PathLike[str] = ".",
    comparison: str | os.PathLike[str] | None = None,
    review_files: Sequence[str | os.PathLike[str]] = (),
    importance: str | os.PathLike[str] | None = None,
    twin_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Log one pipeline run to MLflow and log (not yet register) its checked model.

    The parent run holds the flattened config (params), provenance tags, the CV and holdout
    metrics with their intervals, and the artifacts; a child run per outer fold holds that
    fold's metrics and tuned parameters; the ``final_model`` child holds the holdout metrics
    and the model. The model must reproduce train_final's holdout predictions and contain no
    pickle, or the step fails and nothing can be registered.

    ``comparison`` (``comparison.json`` of :func:`omics_ml.compare.compare_variants`) adds the
    baseline, negative-control and modality-value metrics; ``review_files`` (plots and JSON of
    the comparison, subgroups and explanations) are logged under ``evaluation``;
    ``importance`` (the feature-importance CSV of the explain step) under ``importance``, one
    file per modality. ``twin_dir`` (the what-if model of ``train_twin``) travels inside the
    logged model, which then answers ``params={"what_if": True}``; the twin's out-of-fold
    metrics (``twin.json`` among ``review_files``) are logged as ``twin_*`` metrics.

    Returns
    -------
    dict
        What was logged (also written to ``run_info_out``): tracking URI, experiment, run ids,
        the logged model's URI, the version tags for registration and the UI links.
    """
    tracking = dict(config.get("tracking", {}))
    results_dir = Path(results_dir)
    uri, artifact_location = resolve_store(tracking, results_dir)
    model_dir = Path(model_dir)
    task = config.get("task", "classification")
    model_name = tracking.get("model_name", DEFAULT_MODEL_NAME)
    experiment_name = tracking.get("experiment_name", DEFAULT_EXPERIMENT)
    key = pseudonym_key(
        tracking.get("pseudonym_key_env", "OMICS_ML_PSEUDONYM_KEY"),
        results_dir / "mlflow" / ".pseudonym_key",
    )
    qc_summary = read_json(qc)
    split = read_json(splits)
    cv = read_json(cv_metrics)
    holdout = read_json(holdout_metrics)
    chash = config_hash(config)
    pipeline = OmicsPipeline.load(model_dir)
    git = git_state(source_dir)
    digests = data_digests(config, qc_summary.get("files", {}))
    n = {
        "subjects": qc_summary["n_subjects"],
        "samples": qc_summary["n_samples"],
        "development": cv["n_subjects"],
        "holdout": holdout["n_subjects"],
    }
    lineage = {
        "config_hash": chash,
        "git.commit": git["commit"],
        "git.dirty": git["dirty"],
        "task": task,
        **{f"data_digest.{role}": digest for role, digest in digests.items()},
        **{f"holdout_{k}": f"{v['estimate']:.6f}" for k, v in holdout["metrics"].items()},
        **{f"cv_{k}": f"{v['estimate']:.6f}" for k, v in cv["metrics"].items()},
    }
    tags = {
        "omics_ml.run_kind": "pipeline",
        "mlflow.source.git.commit": git["commit"],
        "mlflow.source.name": str(Path(source_dir).resolve() / "Snakefile"),
        **{k: v for k, v in lineage.items() if not k.startswith(("holdout_", "cv_"))},
        **{f"version.{k}": v for k, v in package_versions().items()},
        "cohort.n_subjects": str(n["subjects"]),
        "cohort.n_samples": str(n["samples"]),
        "cohort.n_development_subjects": str(n["development"]),
        "cohort.n_holdout_subjects": str(n["holdout"]),
        "pseudonym_key_id": key.key_id,
        "pseudonym_key_source": key.source,
        "negative_control.permute_labels": str(split.get("permuted_labels", False)).lower(),
        "mlflow.note.content": _run_note(task, cv, holdout, chash, n),
    }

    with (
        store_lock(uri, tracking.get("lock_timeout_s", 3600.0)),
        tempfile.TemporaryDirectory(prefix="omics_ml_log_") as staging_dir,
    ):
        staging = Path(staging_dir)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp_id = experiment_id(client, experiment_name, artifact_location)
        with mlflow.start_run(
            experiment_id=exp_id, run_name=f"{model_name}-{chash[:8]}", tags=tags
        ) as parent:
            mlflow.log_params(flatten_config(config))
            mlflow.log_dict(dict(config), "config/config.json")
            _log_datasets(config, digests)
            for path in fold_metrics:
                _log_fold(read_json(path), exp_id, chash)
            final_run_id, model_uri, max_diff = _log_final_model(
                config=config,
                exp_id=exp_id,
                chash=chash,
                pipeline=pipeline,
                model_dir=model_dir,
                holdout=holdout,
                features=ad.read_h5ad(features),  # read once: the example and the check
                split=split,
                holdout_predictions=holdout_predictions,
                staging=staging,
                twin_dir=None if twin_dir is None else Path(twin_dir),
            )
            metrics = {
                **_metrics_with_ci("cv_", cv["metrics"]),
                **{f"cv_fold_sd_{k}": v for k, v in cv["fold_sd"].items() if np.isfinite(v)},
                **_metrics_with_ci("holdout_", holdout["metrics"]),
                "n_development_samples": holdout["n_development_samples"],
                "n_holdout_samples": holdout["n_samples"],
                "final_n_rounds": holdout["n_rounds"],
            }
            if comparison is not None:
                metrics.update(_comparison_metrics(read_json(comparison)))
            twin_json = [p for p in review_files if Path(p).name == "twin.json"]
            if twin_json:
                metrics.update(_twin_metrics(read_json(twin_json[0])))
            mlflow.log_metrics(metrics)
            mlflow.log_artifact(str(qc), "qc")
            for path in [*plots, cv_metrics, holdout_metrics, *review_files]:
                mlflow.log_artifact(str(path), "evaluation")
            for name, path in (("oof", oof_predictions), ("holdout", holdout_predictions)):
                out = staging / f"{name}_predictions.csv"
                mlflow.log_artifact(str(_pseudonymised_csv(path, key, out)), "predictions")
            for path in _preprocessing_files(model_dir, staging / "preprocessing"):
                mlflow.log_artifact(str(path), "preprocessing")
            if importance is not None:
                for path in _importance_files(importance, staging / "importance"):
                    mlflow.log_artifact(str(path), "importance")
            run_id = parent.info.run_id

    result = {
        "tracking_uri": uri,
        "experiment_id": exp_id,
        "experiment_name": experiment_name,
        "run_id": run_id,
        "final_run_id": final_run_id,
        "logged_model_uri": model_uri,
        "model_name": model_name,
        "champion_uri": f"models:/{model_name}@{CHAMPION}",
        "promotion_rule": tracking.get("promotion_rule", "if_better"),
        "promotion_metric": tracking.get("promotion_metric") or DEFAULT_PROMOTION_METRIC[task],
        "promotion_margin": float(tracking.get("promotion_margin", 0.0)),
        "holdout_estimates": {k: v["estimate"] for k, v in holdout["metrics"].items()},
        "version_tags": lineage,
        "serving_check_max_abs_diff": max_diff,
        "ui_command": f"mlflow ui --backend-store-uri {uri}"
        if uri.startswith("sqlite:")
        else f"open {uri}",
        "ui_runs_page": (
            f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs"
            if uri.startswith("http")
            else f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs"
        ),
        "predict_arguments": _predict_arguments(config, pipeline),
    }
    write_json(run_info_out, result)
    logger.info("logged run %s (final model %s) to %s", run_id, model_uri, uri)
    return result


def _log_fold(record: Mapping[str, Any], exp_id: str, chash: str) -> None:
    """One outer fold as a child run: its counts, tuned parameters and test-fold metrics."""
    with mlflow.start_run(
        experiment_id=exp_id,
        run_name=f"fold_{record['fold']}",
        nested=True,
        tags={"omics_ml.run_kind": "fold", "fold": str(record["fold"]), "config_hash": chash},
    ):
        params = {k: record[k] for k in _FOLD_PARAMS}
        params.update({f"tuned.{k}": v for k, v in record.get("tuned_params", {}).items()})
        mlflow.log_params(params)
        metrics = {f"fold_{k}": v for k, v in record["metrics"].items() if np.isfinite(v)}
        metrics["inner_validation_score"] = record["inner_validation_score"]
        mlflow.log_metrics(metrics)


def _log_final_model(
    *,
    config: Mapping[str, Any],
    exp_id: str,
    chash: str,
    pipeline: OmicsPipeline,
    model_dir: Path,
    holdout: Mapping[str, Any],
    features: ad.AnnData,
    split: Mapping[str, Any],
    holdout_predictions: str | os.PathLike[str],
    staging: Path,
    twin_dir: Path | None = None,
) -> tuple[str, str, float]:
    """The final-model child run: log the model, its holdout metrics, and check it."""
    info = pipeline.info
    with mlflow.start_run(
        experiment_id=exp_id,
        run_name="final_model",
        nested=True,
        tags={"omics_ml.run_kind": "final_model", "config_hash": chash},
    ) as run:
        params = {
            "n_development_samples": holdout["n_development_samples"],
            "n_rounds": holdout["n_rounds"],
            "n_features_used": holdout["n_features_used"],
        }
        params.update(
            {f"tuned.{k}": v for k, v in (info.get("tuning") or {}).get("params", {}).items()}
        )
        mlflow.log_params(params)
        raw = raw_input_frame(features[list(split["development"])])
        example = input_example(pipeline, raw)
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE_PATH),
            artifacts={
                PIPELINE_ARTIFACT: str(model_dir.resolve()),
                **({TWIN_ARTIFACT: str(twin_dir.resolve())} if twin_dir is not None else {}),
            },
            code_paths=[str(Path(__file__).resolve().parent)],
            signature=model_signature(pipeline),
            input_example=example,
            pip_requirements=_requirements(),
            metadata={
                "input_contract": input_contract(pipeline, config["modalities"]),
                "classes": pipeline.classes,
                "task": pipeline.task,
                "longitudinal": None
                if pipeline.landmarks is None
                else pipeline.landmarks.to_json(),
                "head": {k: v for k, v in pipeline.head.to_json().items() if k != "baseline"},
                "config_hash": chash,
                "treatment": None if twin_dir is None else read_json(twin_dir / TWIN_FILE)["spec"],
            },
        )
        mlflow.log_metrics(
            _metrics_with_ci("holdout_", holdout["metrics"]), model_id=logged.model_id
        )
        max_diff = _serving_check(
            logged.model_uri,
            staging / "served_model",
            pipeline=pipeline,
            features=features,
            holdout_ids=split["holdout"],
            holdout_predictions=holdout_predictions,
            example=example,
        )
        mlflow.set_tag("serving_check_max_abs_diff", f"{max_diff:.3g}")
        return run.info.run_id, logged.model_uri, max_diff


def register_logged_model(
    run_info: str | os.PathLike[str],
    *,
    report: str | os.PathLike[str] | None,
    model_info_out: str | os.PathLike[str],
    lock_timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Attach the report, register the logged model and apply the promotion rule.

    The pipeline's last step. Until it runs, no version exists; if it fails, the parent run is
    marked FAILED with the error as a tag, and no alias moves.

    Returns
    -------
    dict
        ``run_info`` plus the version, its URI and the promotion decision (also written to
        ``model_info_out``).
    """
    info = read_json(run_info)
    uri = info["tracking_uri"]
    with store_lock(uri, lock_timeout_s):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            if report is not None:
                client.log_artifact(info["run_id"], str(report), artifact_path="report")
            version, decision = register_version(
                client,
                model_uri=info["logged_model_uri"],
                model_name=info["model_name"],
                run_id=info["run_id"],
                holdout=info["holdout_estimates"],
                rule=info["promotion_rule"],
                metric=info["promotion_metric"],
                margin=info["promotion_margin"],
                tags=info["version_tags"],
            )
            for key, value in {
                "registered_model": info["model_name"],
                "registered_version": str(version.version),
                **decision.tags(),
            }.items():
                client.set_tag(info["run_id"], key, value)
        except BaseException as error:
            client.set_tag(
                info["run_id"], "registration.error", f"{type(error).__name__}: {error}"[:5000]
            )
            client.set_terminated(info["run_id"], status="FAILED")
            raise
    result = {
        **{k: v for k, v in info.items() if k not in ("version_tags", "holdout_estimates")},
        "model_version": str(version.version),
        "model_uri": f"models:/{info['model_name']}/{version.version}",
        "promoted": decision.promote,
        "promotion_reason": decision.reason,
        "promotion": decision.tags(),
        "previous_champion_version": decision.champion_version,
    }
    write_json(model_info_out, result)
    return result
