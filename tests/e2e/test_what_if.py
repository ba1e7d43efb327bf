"""End-to-end: the digital twin on a real randomised trial and on simulated known effects.

The real workflow (up to the twin's evaluation and final model) on the bundled CSL1 trial
(prednisone vs placebo, death, prothrombin visits) and on simulated randomised cohorts whose
individual treatment effects are known. The AIDS trial's run, with registration and
``omics-ml predict --what-if``, is in ``test_trajectories.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from sksurv.nonparametric import kaplan_meier_estimator
from workflow_runner import REPO, read_json, run_workflow, save_config

from omics_ml.simulate import SimulationSpec, simulate_cohort, true_risk

pytestmark = pytest.mark.e2e

TWIN_TARGETS = ("results/evaluate/twin.json", "results/final/twin")
FAST = {"n_estimators": 200, "early_stopping_rounds": 20}
#: Spearman correlation the T- and X-learners' out-of-fold predicted benefit must reach with the
#: simulated true benefit (risk difference by the horizon) when the effect is heterogeneous.
MIN_BENEFIT_CORRELATION = 0.5


def _km_risk(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    x, survival = kaplan_meier_estimator(event.astype(bool), time)
    return 1.0 - float(survival[np.searchsorted(x, horizon, side="right") - 1])


@pytest.fixture(scope="module")
def csl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("csl")
    config = yaml.safe_load((REPO / "config/csl.yaml").read_text())
    for key in ("samples", "outcomes"):
        config["cohort"][key] = str(REPO / config["cohort"][key])
    for spec in config["modalities"].values():
        spec["path"] = str(REPO / spec["path"])
    config["model"].update(FAST)
    path = save_config(
        workdir,
        config,
        {
            "split": {"n_splits": 3},
            "evaluate": {"n_bootstrap": 100},
            "treatment": {"n_bootstrap": 20},
        },
    )
    run_workflow(workdir, path, *TWIN_TARGETS)
    return workdir


def test_csl_average_effect_agrees_with_the_kaplan_meier_contrast(csl_run: Path) -> None:
    twin = read_json(csl_run / "results/evaluate/twin.json")
    assert twin["treatment"]["arms"] == ["placebo", "prednisone"]
    assert twin["outcome_scale"]["column"] == "risk_at_3"
    # The trial contrast, recomputed here from the bundled files for the development subjects.
    split = read_json(csl_run / "results/split/splits.json")
    samples = pd.read_csv(REPO / "resources/csl_example/samples.csv", dtype=str)
    development = set(samples.set_index("sample_id").loc[split["development"], "subject_id"])
    outcomes = pd.read_csv(REPO / "resources/csl_example/outcomes.csv", dtype={"subject_id": str})
    baseline = pd.read_csv(REPO / "resources/csl_example/baseline.csv", dtype=str)
    arm = baseline.merge(samples, on="sample_id").drop_duplicates("subject_id")
    table = outcomes[outcomes["subject_id"].isin(development)].merge(
        arm[["subject_id", "treatment"]], on="subject_id"
    )
    risks = {
        name: _km_risk(rows["time"].to_numpy(), rows["event"].to_numpy(), 3.0)
        for name, rows in table.groupby("treatment")
    }
    trial = twin["trial_contrast"]
    assert trial["control"]["n"] + trial["treated"]["n"] == len(table)
    assert trial["benefit"]["estimate"] == pytest.approx(risks["placebo"] - risks["prednisone"])
    for learner in ("t", "s"):
        result = twin["learners"][learner]
        average = result["metrics"]["average_benefit"]
        assert average["lower"] <= trial["benefit"]["upper"]
        assert trial["benefit"]["lower"] <= average["upper"]
        assert result["agrees_with_trial"]
        policy = result["metrics"]
        assert policy["policy_treat_all"]["estimate"] == pytest.approx(trial["treated"]["estimate"])
        assert policy["policy_treat_none"]["estimate"] == pytest.approx(
            trial["control"]["estimate"]
        )
    # Randomised: the arm is not predictable from the baseline features.
    assert twin["overlap"]["auc"]["lower"] < 0.6  # below the warning's threshold
    assert twin["warnings"] == []
    # The final twin serves the T-learner with its bootstrap refits.
    state = json.loads((csl_run / "results/final/twin/twin.json").read_text())
    assert state["learner"] == "t"
    assert len(state["member_heads"]) == 20
    assert set(state["info"]["average_effect_refits"]) == {"t", "s"}


def _simulated_run(directory: Path, *, heterogeneity: float, effect: float, n: int) -> Path:
    spec = SimulationSpec(
        n_subjects=n,
        n_visits=1,
        features={"rnaseq": 200, "proteomics": 0, "metabolomics": 0, "genotype": 30},
        n_batches=1,
        heterogeneity=heterogeneity,
        treatment_effect=effect,
        task="survival",
        what_if=True,
        seed=2,
    )
    simulate_cohort(directory / "data", spec)
    config = yaml.safe_load((directory / "data/config.yaml").read_text())
    path = save_config(
        directory,
        config,
        {
            "treatment": {"n_bootstrap": 10, "learners": ["t", "s", "x"]},
            "survival": {"horizons": [24.0]},
            "split": {"n_splits": 3},
            "model": {
                "n_estimators": 300,
                "learning_rate": 0.05,
                "max_depth": 2,
                "early_stopping_rounds": 30,
            },
            "evaluate": {"n_bootstrap": 100},
        },
    )
    run_workflow(directory, path, *TWIN_TARGETS)
    return directory


def test_simulated_heterogeneous_effect_is_recovered(tmp_path: Path) -> None:
    workdir = _simulated_run(tmp_path, heterogeneity=1.5, effect=-0.3, n=1200)
    truth = pd.read_parquet(workdir / "data/truth.parquet")
    true_benefit = true_risk(truth, 24.0, treated=False) - true_risk(truth, 24.0, treated=True)
    effects = pd.concat(
        pd.read_parquet(p)
        for p in sorted((workdir / "results/twin").glob("fold_*/effects.parquet"))
    )
    table = effects.merge(truth.assign(true_benefit=true_benefit), on="subject_id")
    for learner in ("t", "x"):
        predicted = table[f"{learner}_outcome_0"] - table[f"{learner}_outcome_1"]
        rho = stats.spearmanr(predicted, table["true_benefit"])[0]
        assert rho >= MIN_BENEFIT_CORRELATION, (learner, rho)
    twin = read_json(workdir / "results/evaluate/twin.json")
    assert twin["heterogeneity_evidence"]
    assert twin["heterogeneity_statement"].startswith("Evidence")
    assert twin["learners"]["t"]["metrics"]["c_for_benefit"]["lower"] > 0.5
    assert twin["learners"]["t"]["agrees_with_trial"]


def test_simulated_homogeneous_null_effect_claims_no_heterogeneity(tmp_path: Path) -> None:
    workdir = _simulated_run(tmp_path, heterogeneity=0.0, effect=0.0, n=800)
    twin = read_json(workdir / "results/evaluate/twin.json")
    assert not twin["heterogeneity_evidence"]
    for result in twin["learners"].values():
        assert not result["heterogeneity_evidence"]
        assert "weak" in result["heterogeneity_statement"]
        assert result["agrees_with_trial"]
    trial = twin["trial_contrast"]["benefit"]
    assert trial["lower"] < 0 < trial["upper"]
