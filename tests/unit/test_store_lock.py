"""Writers to one SQLite MLflow store, in separate processes, as parallel pipelines are."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from omics_ml.tracking import resolve_store, store_lock

WRITER = textwrap.dedent(
    """
    import sys, time
    from mlflow.tracking import MlflowClient
    from omics_ml.tracking import experiment_id, store_lock

    uri, start = sys.argv[1], float(sys.argv[2])
    while time.time() < start:  # all writers start together
        time.sleep(0.005)
    with store_lock(uri):
        client = MlflowClient(uri)
        run = client.create_run(experiment_id(client, "shared", None))
        for step in range(10):
            client.log_metric(run.info.run_id, "m", step, step=step)
        client.set_terminated(run.info.run_id)
    print("done", run.info.run_id)
    """
)


def test_writers_started_together_on_a_new_store_all_succeed(tmp_path: Path) -> None:
    """Without the lock, MLflow's schema migrations race and some writers fail."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start = time.time() + 6
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=180)[0] for w in writers]
    for writer, output in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, output[-3000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("shared")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(len(client.get_metric_history(r.info.run_id, "m")) == 10 for r in runs)


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    from filelock import Timeout

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = (
        "import sys; from omics_ml.tracking import store_lock\n"
        "with store_lock(sys.argv[1], timeout_s=0.5): pass\n"
    )
    with store_lock(uri):
        held = subprocess.run(
            [sys.executable, "-c", code, uri], capture_output=True, text=True, check=False
        )
    assert held.returncode != 0 and "Timeout" in held.stderr
    free = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, check=False)
    assert free.returncode == 0
    with pytest.raises(Timeout), store_lock(uri), store_lock(uri, timeout_s=0.1):
        pass  # a second lock object in the same process is not re-entrant either


def test_server_uris_need_no_lock(tmp_path: Path) -> None:
    with store_lock("http://127.0.0.1:1"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_resolve_store_defaults(tmp_path: Path) -> None:
    uri, location = resolve_store({}, tmp_path / "results")
    assert uri == f"sqlite:///{tmp_path / 'results/mlflow/mlflow.db'}"
    assert location == (tmp_path / "results/mlflow/artifacts").as_uri()
    shared = tmp_path / "shared" / "store.db"
    uri, location = resolve_store({"tracking_uri": f"sqlite:///{shared}"})
    assert uri == f"sqlite:///{shared}" and location == (shared.parent / "artifacts").as_uri()
    uri, location = resolve_store(
        {"tracking_uri": f"sqlite:///{shared}", "artifact_location": "s3://bucket/omics"}
    )
    assert location == "s3://bucket/omics"
    assert resolve_store({"tracking_uri": "http://host:5000"}) == ("http://host:5000", None)


SIGTERMED = textwrap.dedent(
    """
    import sys, time
    import mlflow
    from omics_ml.io import terminate_on_sigterm

    terminate_on_sigterm()
    mlflow.set_tracking_uri(sys.argv[1])
    with mlflow.start_run() as run:
        with mlflow.start_run(nested=True):
            print(run.info.run_id, flush=True)
            time.sleep(120)
    """
)


def test_cancelled_step_ends_its_runs_as_failed(tmp_path: Path) -> None:
    """A job cancelled with SIGTERM (as Snakemake and SLURM do) leaves no run RUNNING."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = subprocess.Popen(
        [sys.executable, "-c", SIGTERMED, uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    run_id = process.stdout.readline().strip()
    assert run_id, process.stderr.read()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_run(run_id).info.experiment_id])
    assert len(runs) == 2
    assert {r.info.status for r in runs} == {"FAILED"}


def test_init_tracking_creates_store_experiment_and_model_once(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from omics_ml.io import read_json
    from omics_ml.tracking import init_tracking

    config = {
        "task": "survival",
        "tracking": {"experiment_name": "cohort", "model_name": "risk"},
    }
    first = init_tracking(config, info_out=tmp_path / "a.json", results_dir=tmp_path / "res")
    again = init_tracking(config, info_out=tmp_path / "b.json", results_dir=tmp_path / "res")
    assert first == again == read_json(tmp_path / "a.json")
    assert first["tracking_uri"] == f"sqlite:///{tmp_path / 'res' / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(first["tracking_uri"], first["tracking_uri"])
    assert client.get_experiment_by_name("cohort").experiment_id == first["experiment_id"]
    model = client.get_registered_model("risk")
    assert model.tags["task"] == "survival"
    assert client.search_model_versions("name = 'risk'") == []


def test_init_tracking_fails_fast_on_an_unreachable_server(tmp_path: Path) -> None:
    import socket

    from omics_ml.tracking import init_tracking

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = {"tracking": {"tracking_uri": f"http://127.0.0.1:{port}"}}
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"tracking\.tracking_uri .*does not answer"):
        init_tracking(config, info_out=tmp_path / "info.json")
    assert time.monotonic() - start < 30
    assert not (tmp_path / "info.json").exists()
