"""Running the real Snakemake workflow from the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLE = REPO / "resources" / "example"


def workflow_command(workdir: Path, config: Path, *args: str, cores: int | None = 2) -> list[str]:
    """The ``snakemake`` command line that runs the workflow in ``workdir``.

    ``cores=None`` leaves the cores to a profile given in ``args``.
    """
    return [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        *([] if cores is None else ["--cores", str(cores)]),
        "--show-failed-logs",
        *args,
    ]


def workflow_env() -> dict[str, str]:
    """The environment of a workflow run: this virtual environment's tools first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def run_workflow(
    workdir: Path, config: Path, *targets: str, check: bool = True, cores: int = 2
) -> subprocess.CompletedProcess:
    cmd = workflow_command(workdir, config, *targets, cores=cores)
    result = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, env=workflow_env(), check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def save_config(directory: Path, config: dict, overrides: dict[str, dict]) -> Path:
    """Update config sections with ``overrides`` and write it to ``directory/config.yaml``."""
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def small_config(directory: Path, **overrides: dict) -> Path:
    """The example config cut down to mRNA and protein, 2 outer folds and a tiny tuning budget."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for key in ("samples", "outcomes"):
        config["cohort"][key] = str(EXAMPLE / Path(config["cohort"][key]).name)
    config["modalities"] = {m: config["modalities"][m] for m in ("mrna", "protein")}
    for spec in config["modalities"].values():
        spec["path"] = str(EXAMPLE / Path(spec["path"]).name)
    config["split"]["n_splits"] = 2
    config["model"]["n_estimators"] = 150
    config["tuning"].update(n_trials=2, inner_cv_folds=2)
    config["evaluate"] = {
        "baseline": False,
        "permuted_control": False,
        "modality_value": False,
        "n_bootstrap": 200,
    }
    config["tracking"]["model_name"] = "tcga_small"
    return save_config(directory, config, overrides)
