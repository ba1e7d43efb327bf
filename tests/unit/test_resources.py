"""Job memory from input sizes (omics_ml.resources) and the workflow's use of it."""

from __future__ import annotations

import math

import pytest

from omics_ml.resources import MEMORY_PROFILES, MemoryProfile, memory_mb


def test_memory_grows_with_input_size_and_attempt() -> None:
    profile = MemoryProfile(base_mb=1000, per_input_mb=6.0)
    assert memory_mb(0.0, profile) == 1000
    assert memory_mb(250.0, profile) == 2500
    assert memory_mb(250.0, profile, attempt=2) == 5000
    # rounded up to a multiple of 100 MB, never down
    assert memory_mb(0.01, profile) == 1100


def test_a_biobank_proteomics_matrix_gets_memory_for_its_float32_copies() -> None:
    # 50,000 subjects x 3,000 proteins as float32 is 600 MB; the training step holds the raw
    # matrix, a transformed copy and XGBoost's quantised matrix.
    float32_mb = 50_000 * 3_000 * 4 / 1e6
    need = memory_mb(float32_mb, MEMORY_PROFILES["train"])
    assert need >= 3 * float32_mb
    assert need <= 12 * float32_mb


@pytest.mark.parametrize("step", sorted(MEMORY_PROFILES))
def test_every_step_profile_is_positive(step: str) -> None:
    profile = MEMORY_PROFILES[step]
    assert memory_mb(0.0, profile) >= 1000
    assert memory_mb(100.0, profile) > memory_mb(0.0, profile)


@pytest.mark.parametrize(
    ("input_mb", "attempt"), [(-1.0, 1), (math.nan, 1), (math.inf, 1), (1.0, 0)]
)
def test_bad_sizes_and_attempts_are_rejected(input_mb: float, attempt: int) -> None:
    with pytest.raises(ValueError, match=r"input_mb|attempt"):
        memory_mb(input_mb, MEMORY_PROFILES["train"], attempt=attempt)


def test_profiles_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="base_mb"):
        MemoryProfile(base_mb=0, per_input_mb=1.0)
    with pytest.raises(ValueError, match="per_input_mb"):
        MemoryProfile(base_mb=100, per_input_mb=-1.0)


def _dry_run(tmp_path, **model) -> tuple[str, float]:
    """Dry run of the example config (``model`` keys overridden): its output and input MB."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    for key in ("samples", "outcomes"):
        config["cohort"][key] = str(repo / config["cohort"][key])
    for spec in config["modalities"].values():
        spec["path"] = str(repo / spec["path"])
    config.setdefault("model", {}).update(model)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    inputs = [config["cohort"]["samples"], config["cohort"]["outcomes"]]
    inputs += [spec["path"] for spec in config["modalities"].values()]
    size_mb = sum(Path(p).stat().st_size for p in inputs) / 1024 / 1024
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile")]
    cmd += ["--configfile", str(tmp_path / "config.yaml"), "--dry-run", "--cores", "2"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    return out, size_mb


def _job_block(out: str, rule: str) -> str:
    """The first job of ``rule`` in a dry run's listing, up to the next job's timestamp."""
    import re

    return re.split(r"\n\[|\n\n", out.split(f"rule {rule}:", 1)[1], maxsplit=1)[0]


def test_workflow_requests_memory_scaled_from_the_inputs(tmp_path) -> None:
    """The dry run's mem_mb of validate_inputs is the profile applied to its input files."""
    import re

    out, size_mb = _dry_run(tmp_path)
    requested = int(re.search(r"mem_mb=(\d+)", _job_block(out, "validate_inputs")).group(1))
    assert requested == memory_mb(size_mb, MEMORY_PROFILES["validate"])
    assert requested > MEMORY_PROFILES["validate"].base_mb
    assert "gpu=0" in _job_block(out, "train_final")


def test_training_jobs_request_a_gpu_when_xgboost_trains_on_cuda(tmp_path) -> None:
    out, _ = _dry_run(tmp_path, device="cuda")
    for rule in ("train_fold", "train_final", "train_variant"):
        assert "gpu=1" in _job_block(out, rule), rule
    for rule in ("validate_inputs", "normalise_modality", "train_baseline", "explain_model"):
        assert "gpu=" not in _job_block(out, rule), rule
