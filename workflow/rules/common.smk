import hashlib
import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../../config/schema/config.schema.yaml")

REPO = Path(workflow.basedir)
# The workflow's own helpers come from the package, installed or not (as under --use-conda).
if str(REPO / "src") not in sys.path:
    sys.path.append(str(REPO / "src"))
from omics_ml.resources import MEMORY_PROFILES, memory_mb  # noqa: E402

# Conda environments per rule group (--software-deployment-method conda); each lists what its
# rules' scripts import, pinned like pyproject.toml (tests/unit/test_packaging.py checks both).
ENVS = {group: f"../../envs/{group}.yaml" for group in ("prepare", "model", "track")}
MODALITIES = list(config["modalities"])
FOLDS = list(range(config["split"]["n_splits"]))
# Any config change reruns validate_inputs, and through its output every later step, so a
# results directory never mixes steps run with different configs.
CONFIG_HASH = hashlib.sha256(
    json.dumps(config, sort_keys=True, default=str).encode()
).hexdigest()
TASK = config.get("task", "classification")
# GPUs per training job: one where XGBoost trains on CUDA (SLURM: --gpus=1), else none.
GPUS = 1 if str(config.get("model", {}).get("device", "cpu")).startswith("cuda") else 0
# The plots each evaluation writes, per task (omics_ml.assess.PLOTS; a test keeps them equal).
PLOTS = {
    "classification": ["confusion", "roc", "reliability"],
    "survival": ["calibration", "km"],
    "regression": ["observed"],
}[TASK]
EVALUATE = config["evaluate"]
# Cross-validation variants besides the pipeline (omics_ml.train.variant_names; a test keeps
# them equal): the permuted-outcome control, then each modality alone and all but one.
VARIANTS = (["permuted"] if EVALUATE["permuted_control"] else []) + (
    [f"{kind}_{m}" for kind in ("only", "without") for m in MODALITIES]
    if EVALUATE["modality_value"] and len(MODALITIES) > 1
    else []
)
BASELINE = EVALUATE["baseline"]
# What-if predictions under each treatment arm (omics_ml.twin); TWIN_PLOTS are
# omics_ml.twin_evaluation.TWIN_PLOTS (a test keeps them equal).
TREATMENT = bool(config.get("treatment"))
TWIN_PLOTS = ["twin_calibration", "twin_policy", "twin_overlap", "twin_effects"]
SUBGROUPS = bool(EVALUATE["subgroups"])

# XGBoost's OpenMP threads sleep instead of spinning while they wait: with spinning threads, a
# 2-thread fold job that shares its cores with any other process trained 100x slower (small
# survival folds: 25 s instead of 0.2 s for 200 rounds).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Jobs run through --use-conda or a cluster find the package without installing it.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p
    )
)


wildcard_constraints:
    modality="|".join(MODALITIES),
    fold=r"\d+",
    variant="|".join(VARIANTS) or "none",


def get_input_files(wildcards):
    """Every raw input file, so that editing one reruns what depends on it."""
    cohort = config["cohort"]
    return [cohort["samples"], cohort["outcomes"]] + [
        spec["path"] for spec in config["modalities"].values()
    ]


def get_cohort_files(wildcards):
    return [config["cohort"]["samples"], config["cohort"]["outcomes"]]


def get_modality_path(wildcards):
    return config["modalities"][wildcards.modality]["path"]


def get_modality_spec(wildcards):
    return config["modalities"][wildcards.modality]


def get_mem_mb(step):
    """A ``mem_mb`` resource function: memory from the job's input size and attempt number.

    ``step`` names a profile of omics_ml.resources.MEMORY_PROFILES (base + factor x input MB);
    a retried job (--retries) asks for attempt times as much.
    """
    profile = MEMORY_PROFILES[step]

    def mem_mb(wildcards, input, attempt):
        return memory_mb(input.size_mb, profile, attempt=attempt)

    return mem_mb


def print_run_summary():
    from omics_ml.cli import run_summary

    print(run_summary("results"))
