"""End-to-end: MLflow tracking and registry with real stores, a real server and a real browser.

Small, fast configs of the bundled TCGA example (two modalities, two outer folds, a 2-trial
tuning budget) keep these runs short; the logging, registration and promotion code paths are
those of every run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import artifact_dir, chromium_unavailable_reason, headless_chromium, open_and_wait
from mlflow_server import start_mlflow_server
from workflow_runner import (
    BIN,
    read_json,
    run_workflow,
    small_config,
    workflow_command,
    workflow_env,
)

pytestmark = pytest.mark.e2e

#: Tags every pipeline run carries (besides one data digest per input file).
RUN_TAGS = {
    "git.commit",
    "git.dirty",
    "config_hash",
    "task",
    "version.omics_ml",
    "version.xgboost",
    "version.snakemake",
    "version.mlflow",
    "version.python",
    "cohort.n_subjects",
    "cohort.n_samples",
    "pseudonym_key_id",
    "promotion.decision",
    "registered_version",
}
VERSION_TAGS = {
    "lineage.run_id",
    "config_hash",
    "git.commit",
    "holdout_balanced_accuracy",
    "cv_balanced_accuracy",
    "promotion.decision",
    "promotion.metric",
    "promotion.margin",
    "promotion.new_value",
    "promotion.champion_value",
    "data_digest.modality.mrna",
}


def _snakemake(workdir: Path, config: Path) -> subprocess.Popen:
    """Start the workflow on one core without waiting for it."""
    return subprocess.Popen(
        workflow_command(workdir, config, cores=1),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=workflow_env(),
    )


def _children(client, run_id: str, experiment_id: str) -> dict[str, object]:
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    return {r.info.run_name: r for r in runs}


def _artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return out


@pytest.fixture(scope="module")
def concurrent_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two pipelines with the same config and seed, started together on one SQLite store."""
    root = tmp_path_factory.mktemp("concurrent")
    store = root / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    workdirs = [root / "a", root / "b"]
    configs = [small_config(w, tracking={"tracking_uri": uri}) for w in workdirs]
    processes = [_snakemake(w, c) for w, c in zip(workdirs, configs, strict=True)]
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-6000:]
    return {"uri": uri, "store": store, "workdirs": workdirs, "configs": configs}


def test_concurrent_runs_on_one_sqlite_store_both_complete(concurrent_runs: dict) -> None:
    from mlflow.tracking import MlflowClient

    infos = [read_json(w / "results/register/model.json") for w in concurrent_runs["workdirs"]]
    client = MlflowClient(concurrent_runs["uri"], concurrent_runs["uri"])
    assert {i["tracking_uri"] for i in infos} == {concurrent_runs["uri"]}
    assert sorted(i["model_version"] for i in infos) == ["1", "2"]
    assert len({i["run_id"] for i in infos}) == 2
    for info in infos:
        parent = client.get_run(info["run_id"])
        assert parent.info.status == "FINISHED"
        children = _children(client, info["run_id"], info["experiment_id"])
        assert sorted(children) == ["final_model", "fold_0", "fold_1"]
        assert all(c.info.status == "FINISHED" for c in children.values())
        assert "report/report.html" in _artifacts(client, info["run_id"], "report")
    # The first registered version was promoted; the second, with the same data, config and
    # seed, ties on the holdout metric, and a tie does not beat the champion.
    first, second = sorted(infos, key=lambda i: int(i["model_version"]))
    assert first["promoted"] and first["promotion_reason"] == "no current champion"
    assert not second["promoted"] and "does not beat" in second["promotion_reason"]
    aliases = client.get_registered_model("tcga_small").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "1", "challenger": "2"}
    # Artifacts of both runs sit beside the shared database.
    assert (concurrent_runs["store"] / "artifacts").is_dir()


def test_same_data_config_and_seed_give_the_same_metrics_and_model(concurrent_runs: dict) -> None:
    a, b = (w / "results" for w in concurrent_runs["workdirs"])
    for name in ("evaluate/cv_metrics.json", "evaluate/holdout_metrics.json", "split/splits.json"):
        assert read_json(a / name) == read_json(b / name)
    for name in ("evaluate/oof_predictions.parquet", "final/holdout_predictions.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name))
    for name in ("final/model/booster.ubj", "final/model/state.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_failed_run_registers_nothing_and_moves_no_alias(concurrent_runs: dict) -> None:
    """A model that does not reproduce its holdout predictions is never registered."""
    from mlflow.tracking import MlflowClient

    workdir = concurrent_runs["workdirs"][0]
    client = MlflowClient(concurrent_runs["uri"], concurrent_runs["uri"])
    before = {str(v.version) for v in client.search_model_versions("name = 'tcga_small'")}
    aliases_before = client.get_registered_model("tcga_small").aliases
    path = workdir / "results/final/holdout_predictions.parquet"
    original = path.read_bytes()
    frame = pd.read_parquet(path)
    frame[[c for c in frame if c.startswith("prob_")]] = 1 / 3
    frame.to_parquet(path, index=False)
    try:
        result = run_workflow(
            workdir,
            concurrent_runs["configs"][0],
            "--forcerun",
            "log_run",
            cores=1,
            check=False,
        )
    finally:
        path.write_bytes(original)
    assert result.returncode != 0
    assert "predicts the holdout differently" in result.stdout + result.stderr
    after = {str(v.version) for v in client.search_model_versions("name = 'tcga_small'")}
    assert after == before
    assert client.get_registered_model("tcga_small").aliases == aliases_before
    failed = client.search_runs(
        [read_json(workdir / "results/register/model.json")["experiment_id"]],
        "attributes.status = 'FAILED'",
    )
    assert {r.info.run_name for r in failed} >= {"final_model"}
    assert not (workdir / "results/register/run.json").exists()


@pytest.fixture(scope="module")
def server_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real `mlflow server` and two pipeline runs with different configs logged to it."""
    root = tmp_path_factory.mktemp("server")
    with start_mlflow_server(root / "server") as server:
        tracking = {
            "tracking_uri": server.uri,
            "experiment_name": "omics-ml-review",
            "promotion_margin": 0.02,
        }
        runs = []
        for name, model in (("shallow", {"max_depth": 2}), ("deeper", {"max_depth": 4})):
            workdir = root / name
            # Without tuning, max_depth is what the booster uses: the two runs really differ.
            config = small_config(
                workdir, model=model, tracking=tracking, tuning={"enabled": False}
            )
            run_workflow(workdir, config)
            runs.append(read_json(workdir / "results/register/model.json"))
        yield {"server": server, "runs": runs, "root": root}


def test_server_runs_are_complete_and_comparable(server_runs: dict) -> None:
    from mlflow.tracking import MlflowClient

    uri = server_runs["server"].uri
    client = MlflowClient(uri, uri)
    first, second = server_runs["runs"]
    assert first["tracking_uri"] == second["tracking_uri"] == uri
    parents = [client.get_run(r["run_id"]) for r in (first, second)]
    # The same metric names in both runs, with intervals as separate metrics.
    names = [set(p.data.metrics) for p in parents]
    assert names[0] == names[1]
    for metric in ("balanced_accuracy", "roc_auc_ovr", "brier_score"):
        for scope in ("cv", "holdout"):
            assert {
                f"{scope}_{metric}",
                f"{scope}_{metric}_ci_low",
                f"{scope}_{metric}_ci_high",
            } <= (names[0])
    assert [p.data.params["model.max_depth"] for p in parents] == ["2", "4"]
    assert parents[0].data.tags["config_hash"] != parents[1].data.tags["config_hash"]
    for parent in parents:
        tags = parent.data.tags
        assert set(tags) >= RUN_TAGS, RUN_TAGS - set(tags)
        assert {"data_digest.modality.mrna", "data_digest.cohort.outcomes"} <= set(tags)
        assert (
            tags["data_digest.modality.mrna"] == parents[0].data.tags["data_digest.modality.mrna"]
        )
        children = _children(client, parent.info.run_id, parent.info.experiment_id)
        assert sorted(children) == ["final_model", "fold_0", "fold_1"]
        assert "fold_balanced_accuracy" in children["fold_0"].data.metrics
        assert "holdout_balanced_accuracy_ci_low" in children["final_model"].data.metrics
        artifacts = _artifacts(client, parent.info.run_id)
        for expected in (
            "report/report.html",
            "qc/qc.json",
            "config/config.json",
            "evaluation/cv_roc.png",
            "evaluation/holdout_confusion.png",
            "evaluation/shap_summary.png",
            "evaluation/shap_importance.json",
            "preprocessing/mrna.json",
            "preprocessing/protein.json",
            "importance/mrna.csv",
            "importance/protein.csv",
            "predictions/oof_predictions.csv",
            "predictions/holdout_predictions.csv",
        ):
            assert expected in artifacts, expected
        # No raw omics and no raw ids leave the machine.
        assert not [a for a in artifacts if a.endswith((".h5ad", ".parquet"))]
        oof = pd.read_csv(
            client.download_artifacts(parent.info.run_id, "predictions/oof_predictions.csv")
        )
        assert oof["subject_id"].str.fullmatch(r"[0-9a-f]{16}").all()


def test_server_registry_versions_lineage_and_promotion(server_runs: dict, tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from omics_ml.registry import find_pickles

    uri = server_runs["server"].uri
    client = MlflowClient(uri, uri)
    first, second = server_runs["runs"]
    versions = {str(v.version): v for v in client.search_model_versions("name = 'tcga_small'")}
    assert sorted(versions) == ["1", "2"]
    for info in (first, second):
        version = versions[info["model_version"]]
        assert set(version.tags) >= VERSION_TAGS, VERSION_TAGS - set(version.tags)
        assert version.tags["lineage.run_id"] == info["run_id"]
        assert version.run_id == info["final_run_id"]
    # The second version's decision follows the rule from the numbers tagged on it.
    tags = versions["2"].tags
    improvement = float(tags["promotion.new_value"]) - float(tags["promotion.champion_value"])
    expected = improvement >= 0.02 - 1e-9 and improvement > 0
    assert tags["promotion.decision"] == ("promoted" if expected else "not promoted")
    assert tags["promotion.margin"] == "0.02"
    aliases = {k: str(v) for k, v in client.get_registered_model("tcga_small").aliases.items()}
    assert aliases == ({"champion": "2"} if expected else {"champion": "1", "challenger": "2"})
    # The artifact holds no pickle, carries its input example, and serves through the server.
    # Both URIs: an earlier test in this process may have pointed the registry elsewhere.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    local = Path(
        mlflow.artifacts.download_artifacts("models:/tcga_small/2", dst_path=str(tmp_path))
    )
    assert find_pickles(local) == []
    assert not list(local.rglob("*.pkl"))
    assert (local / "MLmodel").exists() and (local / "input_example.json").exists()
    assert "booster.ubj" in {p.name for p in local.rglob("*")}
    example = pd.read_json(local / "input_example.json", orient="split")
    served = mlflow.pyfunc.load_model("models:/tcga_small@champion").predict(example)
    np.testing.assert_allclose(served.filter(like="prob_").sum(axis=1), 1.0)
    # `omics-ml models` lists both versions with aliases and metrics.
    listing = subprocess.run(
        [str(BIN / "omics-ml"), "models", "--tracking-uri", uri],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "tcga_small" in listing and "champion" in listing
    assert tags["promotion.decision"] in listing


def test_mlflow_ui_shows_runs_metrics_and_model_versions(server_runs: dict, tmp_path: Path) -> None:
    reason = chromium_unavailable_reason()
    if reason:
        pytest.skip(reason)
    uri = server_runs["server"].uri
    first, second = server_runs["runs"]
    experiment = first["experiment_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, uri)
    run_names = [client.get_run(r["run_id"]).info.run_name for r in (first, second)]
    shots = artifact_dir()
    with headless_chromium(tmp_path / "profile") as driver:
        open_and_wait(
            driver,
            f"{uri}/#/experiments/{experiment}/runs",
            run_names,
            screenshot=shots / "mlflow_runs.png",
        )
        open_and_wait(
            driver,
            f"{uri}/#/experiments/{experiment}/runs/{second['run_id']}",
            ["holdout_balanced_accuracy", "cv_balanced_accuracy_ci_low"],
            screenshot=shots / "mlflow_run.png",
        )
        compare = (
            f"{uri}/#/compare-runs?runs=[%22{first['run_id']}%22,%22{second['run_id']}%22]"
            f"&experiments=[%22{experiment}%22]"
        )
        open_and_wait(
            driver,
            compare,
            # The metrics table is virtualised: the first names in sorted order are rendered.
            ["cv_balanced_accuracy_ci_low", "model.max_depth", *run_names],
            screenshot=shots / "mlflow_compare.png",
        )
        open_and_wait(
            driver,
            f"{uri}/#/models/tcga_small",
            ["Version 2", "champion"],
            screenshot=shots / "mlflow_registered_model.png",
        )
