"""End-to-end: the workflow on a real single-node SLURM cluster through ``profiles/slurm``.

The cluster (``slurm_cluster.py``: MUNGE, MariaDB, slurmdbd, slurmctld, slurmd on localhost) is
started by this module and stopped at its end. The same small config runs once locally and once
through SLURM; every non-local job must be a SLURM job (``sacct``), and both runs must produce
the same metrics, predictions and booster bytes. Then a fold job is cancelled with ``scancel``
while it trains: the run fails without partial outputs, and a rerun resumes and finishes with
the same result.

Without the SLURM packages (or root) the module is skipped with the reason; with
``OMICS_ML_REQUIRE_SLURM=1`` (set by ``.ci/run``) it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from browser import artifact_dir
from slurm_cluster import SlurmCluster, slurm_cluster, slurm_unavailable_reason
from workflow_runner import (
    REPO,
    read_json,
    run_workflow,
    small_config,
    workflow_command,
    workflow_env,
)

pytestmark = pytest.mark.e2e

ACCOUNT, PARTITION = "omics", "main"
#: Rules the workflow runs on the submitting host (the Snakefile's ``localrules``), plus ``all``.
LOCAL_RULES = {"init_tracking", "split_cohort", "log_run", "report_html", "register_model", "all"}
#: Outputs that must be equal between the local and the SLURM run.
SAME_JSON = ("evaluate/cv_metrics.json", "evaluate/holdout_metrics.json", "split/splits.json")
SAME_TABLES = ("evaluate/oof_predictions.parquet", "final/holdout_predictions.parquet")
SAME_BYTES = ("final/model/booster.ubj", "final/model/state.json")
#: Result folders made from the outer folds on (removed to put a run back to its training stage).
TRAINING_STAGES = ("train", "evaluate", "final", "register", "report")
FOLD_OUTPUTS = (
    "model/state.json",
    "model/booster.ubj",
    "predictions.parquet",
    "missing_modality_predictions.parquet",
    "metrics.json",
)


@pytest.fixture(scope="module")
def cluster() -> SlurmCluster:
    reason = slurm_unavailable_reason()
    if reason:
        if os.environ.get("OMICS_ML_REQUIRE_SLURM") == "1":
            pytest.fail(f"{reason} (OMICS_ML_REQUIRE_SLURM=1)")
        pytest.skip(reason)
    with slurm_cluster(account=ACCOUNT, partition=PARTITION) as running:
        yield running


def slurm_command(workdir: Path, config: Path, *args: str) -> list[str]:
    """The README's cluster command, with status checks every second for short test jobs."""
    return workflow_command(
        workdir,
        config,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--default-resources",
        f"slurm_account={ACCOUNT}",
        f"slurm_partition={PARTITION}",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "5",
        *args,
        cores=None,
    )


def slurm_env(cluster: SlurmCluster) -> dict[str, str]:
    return {**workflow_env(), "SLURM_CONF": cluster.env["SLURM_CONF"]}


def run_id(output: str) -> str:
    """The executor's run id, which names every SLURM job of the run."""
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, output[-3000:]
    return match.group(1)


def job_stats(output: str) -> Counter[str]:
    """Snakemake's "Job stats" table: the jobs this invocation planned, by rule."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = Counter()
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def slurm_jobs(cluster: SlurmCluster, name: str) -> list[dict[str, str]]:
    """sacct records of one run, with the rule and wildcards read from the job comment."""
    records = cluster.sacct(
        "JobID", "State", "Comment", "Account", "Partition", "AllocCPUS", job_name=name
    )
    for record in records:
        match = re.fullmatch(r"rule_(\w+?)(?:_wildcards_(.*))?", record["Comment"])
        assert match, record
        record["rule"], record["wildcards"] = match.group(1), match.group(2) or ""
    return records


@pytest.fixture(scope="module")
def runs(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same config run locally and through SLURM, each timed."""
    root = tmp_path_factory.mktemp("slurm")
    local, remote = root / "local", root / "slurm"
    configs = {w: small_config(w) for w in (local, remote)}
    start = time.monotonic()
    run_workflow(local, configs[local])
    local_s = time.monotonic() - start
    start = time.monotonic()
    result = subprocess.run(
        slurm_command(remote, configs[remote]),
        cwd=remote,
        env=slurm_env(cluster),
        capture_output=True,
        text=True,
        check=False,
    )
    slurm_s = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:] + cluster.logs()
    # The timing and the sacct listing of the run, for the reader of the test artifacts.
    listing = cluster.run_listing(run_id(output))
    (artifact_dir() / "slurm_run.txt").write_text(
        f"local run {local_s:.0f} s, SLURM run {slurm_s:.0f} s\n\n{listing}"
    )
    return {
        "local": local,
        "slurm": remote,
        "config": configs[remote],
        "output": output,
        "run_id": run_id(output),
    }


def test_every_job_goes_through_slurm(cluster: SlurmCluster, runs: dict) -> None:
    planned = job_stats(runs["output"])
    remote = Counter({rule: n for rule, n in planned.items() if rule not in LOCAL_RULES})
    assert {"train_fold", "train_final", "normalise_modality"} <= set(remote)
    jobs = slurm_jobs(cluster, runs["run_id"])
    assert Counter(job["rule"] for job in jobs) == remote
    assert not {job["rule"] for job in jobs} & LOCAL_RULES
    for job in jobs:
        assert job["State"] == "COMPLETED", job
        assert (job["Account"], job["Partition"]) == (ACCOUNT, PARTITION), job
    # Each fold is its own job; XGBoost used exactly the threads SLURM allocated.
    folds = [job for job in jobs if job["rule"] == "train_fold"]
    assert sorted(job["wildcards"] for job in folds) == ["0", "1"]
    for job in folds:
        assert job["AllocCPUS"] == "2", job
        log = (runs["slurm"] / "logs" / "train_fold" / f"{job['wildcards']}.log").read_text()
        assert "nthread=2" in log and not re.search(r"nthread=(?!2\b)\d+", log)
    # The local rules ran on this host and registered the model.
    info = read_json(runs["slurm"] / "results/register/model.json")
    assert info["model_version"] == "1" and info["promoted"]


def test_slurm_run_equals_local_run(runs: dict) -> None:
    local, remote = runs["local"] / "results", runs["slurm"] / "results"
    for name in SAME_JSON:
        assert read_json(local / name) == read_json(remote / name), name
    for name in SAME_TABLES:
        pd.testing.assert_frame_equal(pd.read_parquet(local / name), pd.read_parquet(remote / name))
    for name in SAME_BYTES:
        assert (local / name).read_bytes() == (remote / name).read_bytes(), name


def _running_fold(cluster: SlurmCluster, workdir: Path, since: float) -> dict[str, str] | None:
    """A train_fold job whose script has started (its log was rewritten after ``since``)."""
    for job in cluster.squeue():
        match = re.fullmatch(r"rule_train_fold_wildcards_(\d+)", job["Comment"])
        if job["State"] != "RUNNING" or not match:
            continue
        log = workdir / "logs" / "train_fold" / f"{match.group(1)}.log"
        if log.exists() and log.stat().st_mtime > since and log.stat().st_size > 0:
            return {**job, "fold": match.group(1)}
    return None


def test_cancelled_fold_job_leaves_no_partial_output_and_rerun_resumes(
    cluster: SlurmCluster, runs: dict
) -> None:
    workdir, config = runs["slurm"], runs["config"]
    env = slurm_env(cluster)
    # A run that has prepared its features and is about to train: everything from the folds
    # on is still to be made (the prepared inputs and the MLflow store stay).
    for stage in TRAINING_STAGES:
        shutil.rmtree(workdir / "results" / stage)
    since = time.time()
    process = subprocess.Popen(
        slurm_command(workdir, config, "--retries", "0"),
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        victim = None
        while victim is None and process.poll() is None and time.monotonic() < deadline:
            victim = _running_fold(cluster, workdir, since)
            time.sleep(0.2)
        assert victim is not None, "no train_fold job was seen running"
        cluster.scancel(victim["JobID"])
        output = process.communicate(timeout=600)[0]
    finally:
        if process.poll() is None:
            process.kill()
    # The run stops with the cancelled job named, and no partial output of it anywhere.
    assert process.returncode != 0, output[-4000:]
    assert f"SLURM-job '{victim['JobID']}' failed, SLURM status is: 'CANCELLED'" in output
    fold_dir = workdir / "results" / "train" / f"fold_{victim['fold']}"
    assert not [name for name in FOLD_OUTPUTS if (fold_dir / name).exists()]
    leftovers = [p for p in (workdir / "results").rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
    assert not (workdir / "results" / "register" / "model.json").exists()
    done = {
        fold
        for fold in ("0", "1")
        if all((workdir / "results/train" / f"fold_{fold}" / n).exists() for n in FOLD_OUTPUTS)
    }
    assert victim["fold"] not in done

    # The rerun resumes: finished folds are not trained again, and the result is the same.
    result = subprocess.run(
        slurm_command(workdir, config),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    rerun = result.stdout + result.stderr
    assert result.returncode == 0, rerun[-6000:]
    jobs = slurm_jobs(cluster, run_id(rerun))
    retrained = {job["wildcards"] for job in jobs if job["rule"] == "train_fold"}
    assert retrained == {"0", "1"} - done
    assert not {job["rule"] for job in jobs} & {"validate_inputs", "normalise_modality"}
    local, remote = runs["local"] / "results", workdir / "results"
    for name in SAME_JSON:
        assert read_json(local / name) == read_json(remote / name), name
    for name in SAME_BYTES:
        assert (local / name).read_bytes() == (remote / name).read_bytes(), name
    assert read_json(remote / "register" / "model.json")["model_version"] == "2"
