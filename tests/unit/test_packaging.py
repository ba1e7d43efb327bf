"""The project's own conventions: envs in step with pyproject, package free of snakemake."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# conda-forge names of PyPI packages where they differ
CONDA_NAMES = {"matplotlib": "matplotlib-base", "snakemake": "snakemake-minimal"}


def _pyproject_requirements() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    parsed = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(>=.*)", d).groups() for d in deps)
    return {CONDA_NAMES.get(name, name): spec.replace(" ", "") for name, spec in parsed.items()}


def _conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((REPO / "envs" / "omics_ml.yaml").read_text())
    out = {}
    for dep in env["dependencies"]:
        name, _, spec = dep.partition(" ")
        out[name] = spec.replace(" ", "")
    return out


def test_conda_env_matches_pyproject() -> None:
    conda = _conda_requirements()
    assert conda.pop("python") == ">=3.11"
    assert conda == _pyproject_requirements()


def test_package_never_imports_snakemake() -> None:
    for path in (REPO / "src" / "omics_ml").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+snakemake\b", text, re.M), path
        assert not re.search(r"^\s*(import|from)\s+(pickle|joblib|cloudpickle)\b", text, re.M), path


def test_every_rule_script_is_thin() -> None:
    for script in (REPO / "workflow" / "scripts").glob("*.py"):
        code = [
            line
            for line in script.read_text().splitlines()
            if line.strip() and not line.startswith(("#", '"""'))
        ]
        assert len(code) <= 25, f"{script.name} holds logic; move it into omics_ml"
        assert "log_to_file(snakemake.log[0])" in script.read_text()


def test_workflow_plot_names_match_the_evaluation() -> None:
    from omics_ml.assess import PLOTS

    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    block = re.search(r"^PLOTS = (\{.*?\})\[TASK\]", text, re.S | re.M).group(1)
    declared = yaml.safe_load(block)
    assert {task: tuple(names) for task, names in declared.items()} == PLOTS


def test_example_configs_are_valid() -> None:
    import jsonschema

    schema = yaml.safe_load((REPO / "config" / "schema" / "config.schema.yaml").read_text())
    for name in ("config.yaml", "survival.yaml", "longitudinal.yaml", "regression.yaml"):
        config = yaml.safe_load((REPO / "config" / name).read_text())
        jsonschema.validate(config, schema)
        for spec in config["modalities"].values():
            assert (REPO / spec["path"]).is_file(), (name, spec["path"])
