"""Memory each workflow job asks for (``mem_mb``) against what it used (peak RSS).

Cluster jobs request memory up front from ``omics_ml.resources`` (a base plus a factor per MB of
input, per step). This benchmark generates a seeded cohort of the given size (one
samples-in-rows Parquet matrix of log-expression values and a binary outcome driven by ten
features), runs the whole workflow on it locally, then asks Snakemake for every job's ``mem_mb``
on the finished inputs (a forced dry run) and prints it next to the job's peak resident memory
from the rule's ``benchmark:`` file. A ratio above 1 means the request was too small.

    python benchmarks/job_memory.py --samples 2000 --features 20000 --workdir /tmp/job_memory
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def make_cohort(directory: Path, n_samples: int, n_features: int, seed: int) -> dict:
    """Write samples, outcomes and one expression matrix; return the config's cohort part."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    ids = [f"S{i:06d}" for i in range(n_samples)]
    values = rng.normal(8.0, 2.0, size=(n_samples, n_features)).astype(np.float32)
    signal = values[:, :10].mean(axis=1) - 8.0
    label = np.where(signal + rng.normal(0, 0.3, n_samples) > 0, "case", "control")
    matrix = pd.DataFrame(values, columns=[f"g{j:05d}" for j in range(n_features)])
    matrix.insert(0, "sample_id", ids)
    matrix.to_parquet(directory / "expression.parquet", index=False)
    pd.DataFrame({"sample_id": ids, "subject_id": ids}).to_csv(
        directory / "samples.csv", index=False
    )
    pd.DataFrame({"sample_id": ids, "label": label}).to_csv(directory / "outcomes.csv", index=False)
    return {
        "samples": str(directory / "samples.csv"),
        "outcomes": str(directory / "outcomes.csv"),
        "outcome_column": "label",
    }


def write_config(workdir: Path, cohort: dict) -> Path:
    config = {
        "seed": 7,
        "task": "classification",
        "cohort": cohort,
        "modalities": {
            "expr": {
                "path": str(Path(cohort["samples"]).parent / "expression.parquet"),
                "type": "transcriptomics",
                "orientation": "samples_in_rows",
                "id_column": "sample_id",
            }
        },
        "split": {"holdout_fraction": 0.2, "n_splits": 3},
        "model": {"n_estimators": 100},
        "tuning": {"enabled": False},
        "evaluate": {"baseline": False, "permuted_control": False, "modality_value": False},
        "tracking": {"model_name": "job_memory", "experiment_name": "job-memory"},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, config: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    cmd += ["--configfile", str(config), "--directory", str(workdir), "--cores", "2", *args]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def requested_memory(dry_run: str) -> dict[str, int]:
    """``rule[wildcards]`` to mem_mb, from a dry run's job listing."""
    out = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        head = re.match(r"(?:local)?rule (\w+):", block)
        mem = re.search(r"mem_mb=(\d+)", block)
        if not head or not mem:
            continue
        wildcards = re.search(r"wildcards: (\S+)", block)
        value = wildcards.group(1).split("=", 1)[1] if wildcards else ""
        out[f"{head.group(1)}[{value}]" if value else head.group(1)] = int(mem.group(1))
    return out


def measured_memory(benchmarks: Path) -> dict[str, float]:
    """``rule[wildcards]`` to peak RSS in MB, from the rules' benchmark files."""
    out = {}
    for tsv in benchmarks.rglob("*.tsv"):
        rss = pd.read_csv(tsv, sep="\t")["max_rss"].iloc[-1]
        rule = tsv.parent.name if tsv.parent != benchmarks else tsv.stem
        out[f"{rule}[{tsv.stem}]" if tsv.parent != benchmarks else rule] = float(rss)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--features", type=int, default=20000)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    cohort = make_cohort(workdir / "data", args.samples, args.features, args.seed)
    config = write_config(workdir, cohort)
    float32_mb = args.samples * args.features * 4 / 2**20
    start = time.monotonic()
    snakemake(workdir, config)
    seconds = time.monotonic() - start
    requested = requested_memory(snakemake(workdir, config, "--dry-run", "--forceall"))
    measured = measured_memory(workdir / "results" / "benchmarks")
    print(
        f"{args.samples} samples x {args.features} features "
        f"(float32 matrix {float32_mb:.0f} MiB), workflow {seconds:.0f} s\n"
    )
    print("| job | requested mem_mb | peak RSS MB | peak / requested |")
    print("|---|---:|---:|---:|")
    for job in sorted(measured):
        if job in requested:
            ratio = measured[job] / requested[job]
            print(f"| {job} | {requested[job]} | {measured[job]:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
