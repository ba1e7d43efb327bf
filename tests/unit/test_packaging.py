"""The project's own conventions: envs in step with pyproject, package free of snakemake."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
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


def _conda_requirements(env: Path) -> dict[str, str]:
    out = {}
    for dep in yaml.safe_load(env.read_text())["dependencies"]:
        name, _, spec = dep.partition(" ")
        out[name] = spec.replace(" ", "")
    return out


def _rule_envs_and_scripts() -> dict[str, tuple[str, str]]:
    """Rule name to (conda env group, script file name), read from the rule files."""
    rules = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"(?m)^(?=rule )", smk.read_text()):
            name = re.match(r"rule (\w+):", block)
            if name is None:
                continue
            env = re.search(r'conda:\s+ENVS\["(\w+)"\]', block)
            script = re.search(r'script:\s+"\.\./scripts/(\w+\.py)"', block)
            assert env and script, f"rule {name.group(1)} in {smk.name} needs conda: and script:"
            rules[name.group(1)] = (env.group(1), script.group(1))
    return rules


def _distributions_imported_by(scripts: list[str]) -> set[str]:
    """Project dependencies (conda names) that importing these scripts' modules loads."""
    modules = sorted(
        {
            node.module
            for script in scripts
            for node in ast.walk(ast.parse((REPO / "workflow" / "scripts" / script).read_text()))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("omics_ml")
        }
    )
    code = (
        "import importlib, json, sys\n"
        "from importlib.metadata import packages_distributions\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "dists = packages_distributions()\n"
        "print(json.dumps(sorted({d for n in list(sys.modules) "
        "for d in dists.get(n.split('.')[0], [])})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {re.sub(r"[-_.]+", "-", d).lower() for d in json.loads(out.stdout)}
    return {CONDA_NAMES.get(d, d) for d in loaded if CONDA_NAMES.get(d, d) in PROJECT_DEPS}


PROJECT_DEPS = set(_pyproject_requirements())


def test_every_conda_env_pins_pyproject_minimums() -> None:
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert {e.stem for e in envs} == {"prepare", "model", "track"}
    pyproject = _pyproject_requirements()
    for env in envs:
        conda = _conda_requirements(env)
        assert conda.pop("python") == ">=3.11", env.name
        assert conda, env.name
        for name, spec in conda.items():
            assert pyproject.get(name) == spec, f"{env.name}: {name} {spec} vs pyproject"


def test_every_rule_env_holds_what_its_script_imports() -> None:
    rules = _rule_envs_and_scripts()
    assert {"init_tracking", "train_fold", "normalise_modality"} <= set(rules)
    for group in sorted({env for env, _ in rules.values()}):
        scripts = [script for env, script in rules.values() if env == group]
        needed = _distributions_imported_by(scripts) | {"snakemake-minimal"}
        held = set(_conda_requirements(REPO / "envs" / f"{group}.yaml"))
        assert needed <= held, f"envs/{group}.yaml lacks {sorted(needed - held)} ({scripts})"


def test_every_pyproject_dependency_is_in_some_env() -> None:
    held = set().union(*(_conda_requirements(e) for e in (REPO / "envs").glob("*.yaml")))
    assert set(_pyproject_requirements()) - held <= {"jsonschema"}


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


def test_workflow_twin_plot_names_match_the_twin_evaluation() -> None:
    from omics_ml.twin_evaluation import TWIN_PLOTS

    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    block = re.search(r"^TWIN_PLOTS = (\[.*?\])$", text, re.M).group(1)
    assert tuple(yaml.safe_load(block)) == TWIN_PLOTS


def test_example_configs_are_valid() -> None:
    import jsonschema

    schema = yaml.safe_load((REPO / "config" / "schema" / "config.schema.yaml").read_text())
    for name in ("config.yaml", "survival.yaml", "longitudinal.yaml", "regression.yaml"):
        config = yaml.safe_load((REPO / "config" / name).read_text())
        jsonschema.validate(config, schema)
        for spec in config["modalities"].values():
            assert (REPO / spec["path"]).is_file(), (name, spec["path"])


def test_test_modules_have_unique_names() -> None:
    # Test folders are not packages: pytest imports each module by its base name, so two
    # test files with one name stop the whole run with "import file mismatch".
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
