"""Tests of omics_ml.twin_evaluation.evaluate_twin on simulated randomised trials.

The per-fold what-if tables that ``twin_fold`` writes are built here directly: a 1:1 randomised
trial with Weibull event times (proportional hazards, a known log hazard ratio per subject), or
a binary or continuous outcome, with the true outcome under each arm as a learner's prediction
(or noise, or a biased prediction). The trial contrast is checked against scikit-survival's
Kaplan-Meier estimator and plain proportions and means; the heterogeneity verdict, agreement with
the trial, the refit widening, the warnings and the policy propensity against what the simulation
makes true.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit
from sksurv.nonparametric import kaplan_meier_estimator

from omics_ml import twin_evaluation
from omics_ml.benefit import ObservedOutcome, policy_values
from omics_ml.tasks import ClassificationHead, RegressionHead, SurvivalHead, TaskHead
from omics_ml.twin import TWIN_FILE
from omics_ml.twin_evaluation import ASSUMPTIONS, TWIN_PLOTS, evaluate_twin

HORIZON = 12.0
N_FOLDS = 3
WEIBULL_SHAPE = 1.5
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SURVIVAL_HEAD = SurvivalHead(horizons=[6.0, HORIZON], grid=[0.0, 3.0, 6.0, 9.0, 12.0])
Z95 = float(stats.norm.ppf(0.975))

UNCONFOUNDED = "unmeasured confounder"
PREDICTABLE = "predictable from the baseline features"
POOR_OVERLAP = "Poor overlap"


# ----------------------------------------------------------------------------- simulated trials


def _config(**treatment: Any) -> dict[str, Any]:
    section = {"column": "clinical:arm", "arms": ["placebo", "drug"], "learners": ["t", "s"]}
    return {
        "treatment": {**section, **treatment},
        "modalities": {"clinical": {}},
        "evaluate": {"n_bootstrap": 50},
        "seed": 7,
    }


def _survival_trial(
    n: int, seed: int, *, log_hr: float, log_hr_sd: float = 0.0
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A 1:1 randomised trial with Weibull event times and uniform censoring past the horizon.

    The treated arm's hazard is the control's times ``exp(log_hr + log_hr_sd * m)`` with ``m`` a
    standard normal effect modifier. Returns the fold table without predictions and each
    subject's true risk by ``HORIZON`` under control and under treatment.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)  # prognostic
    m = rng.normal(size=n)  # effect modifier
    arm = (rng.random(n) < 0.5).astype(np.int64)
    scale0 = 0.012 * np.exp(0.5 * z)  # cumulative hazard scale0 * t**shape
    scale1 = scale0 * np.exp(log_hr + log_hr_sd * m)
    scale = np.where(arm == 1, scale1, scale0)
    event_time = (rng.exponential(size=n) / scale) ** (1.0 / WEIBULL_SHAPE)
    censor_time = rng.uniform(0.5 * HORIZON, 3.0 * HORIZON, size=n)
    time = np.minimum(event_time, censor_time)
    event = (event_time <= censor_time).astype(np.int8)
    risk0 = 1.0 - np.exp(-scale0 * HORIZON**WEIBULL_SHAPE)
    risk1 = 1.0 - np.exp(-scale1 * HORIZON**WEIBULL_SHAPE)
    table = pd.DataFrame(
        {
            "sample_id": [f"S{i:05d}" for i in range(n)],
            "subject_id": [f"P{i:05d}" for i in range(n)],
            "fold": np.arange(n) % N_FOLDS,
            "arm": arm,
            "label": np.where(event == 1, "event", "censored"),
            "time": time,
            "event": event,
            "propensity_estimated": 0.5 + rng.normal(0.0, 0.03, size=n),
        }
    )
    return table, risk0, risk1


def _predict(
    table: pd.DataFrame, learner: str, outcome_0: np.ndarray, outcome_1: np.ndarray
) -> pd.DataFrame:
    """``table`` with a learner's predicted outcome under each arm."""
    return table.assign(**{f"{learner}_outcome_0": outcome_0, f"{learner}_outcome_1": outcome_1})


def _evaluate(
    folder: Path,
    table: pd.DataFrame,
    head: TaskHead,
    config: Mapping[str, Any],
    *,
    twin_dir: Path | None = None,
) -> dict[str, Any]:
    """Write the folds' tables (each shuffled) and a state, then run :func:`evaluate_twin`."""
    folder.mkdir(parents=True, exist_ok=True)
    state = folder / "state.json"
    state.write_text(json.dumps({"head": head.to_json()}))
    files = []
    for fold, rows in table.groupby("fold"):
        path = folder / f"effects_fold{fold}.parquet"
        rows.sample(frac=1.0, random_state=int(fold)).to_parquet(path, index=False)
        files.append(path)
    return evaluate_twin(
        files,
        state=state,
        config=config,
        metrics_out=folder / "twin_evaluation.json",
        plots={name: folder / f"{name}.png" for name in TWIN_PLOTS},
        twin_dir=twin_dir,
    )


def _km_risk(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    """1 - S(horizon) from scikit-survival's Kaplan-Meier estimator."""
    times, survival = kaplan_meier_estimator(event.astype(bool), time)
    k = np.searchsorted(times, horizon, side="right") - 1
    return 1.0 - (float(survival[k]) if k >= 0 else 1.0)


def _km_contrast(table: pd.DataFrame) -> tuple[float, float, float]:
    """Control risk, treated risk and treated minus control, by scikit-survival."""
    risk = [
        _km_risk(
            table.loc[table["arm"] == k, "time"].to_numpy(),
            table.loc[table["arm"] == k, "event"].to_numpy(),
            HORIZON,
        )
        for k in (0, 1)
    ]
    return risk[0], risk[1], risk[1] - risk[0]


def _warned(result: Mapping[str, Any], text: str) -> list[str]:
    return [w for w in result["warnings"] if text in w]


def _flat(record: Any, prefix: str = "") -> dict[str, Any]:
    """A nested record as ``{"a.0.c": leaf}`` (pytest.approx compares flat mappings only)."""
    if isinstance(record, Mapping):
        items = record.items()
    elif isinstance(record, list):
        items = enumerate(record)
    else:
        return {prefix: record}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


@pytest.fixture
def skip_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave out the plots (most of the run time) where a test checks only the numbers."""
    monkeypatch.setattr(twin_evaluation, "_plot_all", lambda *args, **kwargs: None)


# ----------------------------------------------------------------------------- shared evaluations


@pytest.fixture(scope="module")
def heterogeneous(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[pd.DataFrame, dict[str, Any], Path]:
    """Strongly heterogeneous effect; T predicts the truth, S only the average effect.

    S's predicted benefit is one value up to rounding (~1e-17 apart), which the benefit
    histogram must draw without numpy's "Too many bins for data range".
    """
    table, risk0, risk1 = _survival_trial(2000, seed=11, log_hr=-0.4, log_hr_sd=1.2)
    table = _predict(table, "t", risk0, risk1)
    average = float(np.mean(risk1 - risk0))
    table = _predict(table, "s", risk0, risk0 + average)
    folder = tmp_path_factory.mktemp("heterogeneous")
    return table, _evaluate(folder, table, SURVIVAL_HEAD, _config()), folder


@pytest.fixture(scope="module")
def null_trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict[str, Any]]:
    """No effect for anyone; T predicts noise around it, S a benefit of +0.4 for everyone."""
    table, risk0, risk1 = _survival_trial(1500, seed=12, log_hr=0.0)
    noise = np.random.default_rng(3).normal(0.0, 0.08, size=len(table))
    table = _predict(table, "t", risk0, risk1 + noise)
    table = _predict(table, "s", risk0, risk0 - 0.4)
    folder = tmp_path_factory.mktemp("null")
    return table, _evaluate(folder, table, SURVIVAL_HEAD, _config())


@pytest.fixture(scope="module")
def small_trial() -> pd.DataFrame:
    """A modest heterogeneous trial with true predictions, for the warnings and policies."""
    table, risk0, risk1 = _survival_trial(800, seed=13, log_hr=-0.5, log_hr_sd=0.8)
    return _predict(_predict(table, "t", risk0, risk1), "s", risk0, risk1)


# ----------------------------------------------------------------------------- trial contrast


def test_trial_contrast_is_kaplan_meier_difference_at_horizon(
    heterogeneous: tuple[pd.DataFrame, dict[str, Any], Path],
) -> None:
    table, result, _ = heterogeneous
    control, treated, effect = _km_contrast(table)
    trial = result["trial_contrast"]
    assert trial["control"]["estimate"] == pytest.approx(control, abs=1e-12)
    assert trial["treated"]["estimate"] == pytest.approx(treated, abs=1e-12)
    assert trial["effect"]["estimate"] == pytest.approx(effect, abs=1e-12)
    # Risk is lower-is-better: the benefit is the fall in risk.
    assert trial["benefit"]["estimate"] == pytest.approx(-effect, abs=1e-12)
    assert trial["control"]["n"] == int((table["arm"] == 0).sum())
    assert trial["treated"]["n"] == int((table["arm"] == 1).sum())
    assert result["outcome_scale"]["kind"] == "survival"
    assert result["outcome_scale"]["horizon"] == HORIZON  # the last of the model's horizons
    assert result["n_subjects"] == len(table)
    assert result["n_subjects_by_arm"] == {
        "placebo": int((table["arm"] == 0).sum()),
        "drug": int((table["arm"] == 1).sum()),
    }
    assert result["n_subjects_excluded_other_arm"] == 0
    assert result["landmark"] is None


@pytest.mark.usefixtures("skip_plots")
def test_trial_contrast_uses_the_configured_horizon(
    tmp_path: Path, small_trial: pd.DataFrame
) -> None:
    result = _evaluate(tmp_path, small_trial, SURVIVAL_HEAD, _config(horizon=6))
    times, survival = kaplan_meier_estimator(
        small_trial["event"].astype(bool).to_numpy()[small_trial["arm"] == 0],
        small_trial["time"].to_numpy()[small_trial["arm"] == 0],
    )
    k = np.searchsorted(times, 6.0, side="right") - 1
    assert result["outcome_scale"]["horizon"] == 6.0
    assert result["trial_contrast"]["control"]["estimate"] == pytest.approx(1.0 - survival[k])


def test_metrics_file_is_the_returned_result(
    heterogeneous: tuple[pd.DataFrame, dict[str, Any], Path],
) -> None:
    _, result, folder = heterogeneous
    written = json.loads((folder / "twin_evaluation.json").read_text())
    assert _flat(written["trial_contrast"]) == pytest.approx(_flat(result["trial_contrast"]))
    assert _flat(written["learners"]) == pytest.approx(_flat(result["learners"]), nan_ok=True)
    assert written["assumptions"] == ASSUMPTIONS
    assert written["served_learner"] == "t"
    assert written["warnings"] == result["warnings"]


@pytest.mark.usefixtures("skip_plots")
def test_one_row_per_subject_at_earliest_landmark_and_other_arm_excluded(
    tmp_path: Path,
) -> None:
    base, risk0, risk1 = _survival_trial(600, seed=21, log_hr=-0.5)
    base = _predict(_predict(base, "t", risk0, risk1), "s", risk0, risk1)
    other = np.random.default_rng(5).random(len(base)) < 0.1
    base.loc[other, "arm"] = -1
    base["landmark"] = 0.0
    # A later landmark row for every subject still at risk at 6, with its own (shorter) time
    # and a garbled prediction: using it instead of the baseline row changes every number.
    later = base[base["time"] > 6.0].copy()
    later["landmark"] = 6.0
    later["sample_id"] = later["sample_id"] + "_lm6"
    later["time"] -= 6.0
    later["t_outcome_1"] = 0.99
    table = pd.concat([later, base], ignore_index=True)  # later landmarks first in each file

    result = _evaluate(tmp_path, table, SURVIVAL_HEAD, _config())

    kept = base[~other]
    assert result["n_subjects"] == len(kept)
    assert result["n_subjects_excluded_other_arm"] == int(other.sum())
    assert sum(result["n_subjects_by_arm"].values()) == len(kept)
    assert result["landmark"] == 0.0
    _, _, effect = _km_contrast(kept)
    assert result["trial_contrast"]["effect"]["estimate"] == pytest.approx(effect, abs=1e-12)
    average = float((kept["t_outcome_1"] - kept["t_outcome_0"]).mean())
    assert result["learners"]["t"]["metrics"]["average_effect"]["estimate"] == pytest.approx(
        average
    )


# ----------------------------------------------------------------------------- heterogeneity


def test_true_benefit_under_strong_heterogeneity_is_evidence(
    heterogeneous: tuple[pd.DataFrame, dict[str, Any], Path],
) -> None:
    _, result, _ = heterogeneous
    t = result["learners"]["t"]
    assert t["metrics"]["c_for_benefit"]["lower"] > 0.5
    assert t["heterogeneity_evidence"] is True
    assert t["heterogeneity_statement"].startswith("Evidence")
    # The served learner (first of treatment.learners) gives the top-level verdict.
    assert result["served_learner"] == "t"
    assert result["heterogeneity_evidence"] is True
    assert result["heterogeneity_statement"] == t["heterogeneity_statement"]
    # Observed benefit rises with predicted benefit across the calibration groups.
    assert t["calibration"]["top_minus_bottom"]["lower"] > 0
    # A constant predicted benefit ranks no one: no evidence.
    s = result["learners"]["s"]
    assert s["heterogeneity_evidence"] is False
    assert "weak" in s["heterogeneity_statement"]


def test_noise_around_a_homogeneous_effect_is_weak_evidence(
    null_trial: tuple[pd.DataFrame, dict[str, Any]],
) -> None:
    _, result = null_trial
    t = result["learners"]["t"]
    c = t["metrics"]["c_for_benefit"]
    assert c["lower"] <= 0.5 <= c["upper"]
    assert t["heterogeneity_evidence"] is False
    assert "weak" in t["heterogeneity_statement"]
    assert result["heterogeneity_evidence"] is False
    assert "weak" in result["heterogeneity_statement"]


# ----------------------------------------------------------------------------- average benefit


def test_unbiased_average_benefit_agrees_with_trial(
    heterogeneous: tuple[pd.DataFrame, dict[str, Any], Path],
) -> None:
    table, result, _ = heterogeneous
    trial = result["trial_contrast"]["benefit"]
    for learner in ("t", "s"):
        res = result["learners"][learner]
        effect = (table[f"{learner}_outcome_1"] - table[f"{learner}_outcome_0"]).mean()
        ate = res["metrics"]["average_benefit"]
        assert res["metrics"]["average_effect"]["estimate"] == pytest.approx(effect)
        assert ate["estimate"] == pytest.approx(-effect)
        assert ate["estimate"] == pytest.approx(trial["estimate"], abs=2 * trial["se"])
        assert res["agrees_with_trial"] is True
    assert result["warnings"] == []


def test_grossly_biased_average_benefit_disagrees_and_warns(
    null_trial: tuple[pd.DataFrame, dict[str, Any]],
) -> None:
    _, result = null_trial
    trial = result["trial_contrast"]["benefit"]
    assert trial["lower"] < 0 < trial["upper"]
    biased = result["learners"]["s"]
    assert biased["metrics"]["average_benefit"]["estimate"] == pytest.approx(0.4)
    assert biased["agrees_with_trial"] is False
    assert result["learners"]["t"]["agrees_with_trial"] is True
    disagreements = _warned(result, "disagrees with the trial")
    assert len(disagreements) == 1
    assert disagreements[0].startswith("S-learner")


@pytest.mark.usefixtures("skip_plots")
def test_refits_widen_the_average_effect_interval(
    heterogeneous: tuple[pd.DataFrame, dict[str, Any], Path], tmp_path: Path
) -> None:
    table, without, _ = heterogeneous
    twin_dir = tmp_path / "twin"
    twin_dir.mkdir()
    refits = np.random.default_rng(9).normal(-0.1, 0.03, size=20)
    (twin_dir / TWIN_FILE).write_text(
        json.dumps({"info": {"average_effect_refits": {"t": refits.tolist()}}})
    )
    result = _evaluate(tmp_path / "run", table, SURVIVAL_HEAD, _config(), twin_dir=twin_dir)

    refit_sd = float(np.std(refits, ddof=1))
    for name in ("average_effect", "average_benefit"):
        wide = result["learners"]["t"]["metrics"][name]
        narrow = without["learners"]["t"]["metrics"][name]
        assert wide["refit_sd"] == pytest.approx(refit_sd)
        assert wide["estimate"] == pytest.approx(narrow["estimate"])
        assert wide["lower"] < narrow["lower"]
        assert wide["upper"] > narrow["upper"]
        assert wide["sampling_lower"] == pytest.approx(narrow["lower"])
        assert wide["sampling_upper"] == pytest.approx(narrow["upper"])
        # The sampling and refit variances add.
        sampling_se = (narrow["upper"] - narrow["lower"]) / (2 * Z95)
        half = Z95 * np.hypot(sampling_se, refit_sd)
        assert wide["upper"] - wide["estimate"] == pytest.approx(half)
        assert wide["estimate"] - wide["lower"] == pytest.approx(half)
    # No refits for the S-learner: its interval is the subject bootstrap's alone.
    assert _flat(result["learners"]["s"]["metrics"]) == pytest.approx(
        _flat(without["learners"]["s"]["metrics"]), nan_ok=True
    )
    assert "refit_sd" not in result["learners"]["s"]["metrics"]["average_effect"]


# ----------------------------------------------------------------------------- warnings


@pytest.mark.usefixtures("skip_plots")
def test_not_randomised_warns_of_unmeasured_confounding(
    tmp_path: Path, small_trial: pd.DataFrame
) -> None:
    result = _evaluate(tmp_path, small_trial, SURVIVAL_HEAD, _config(randomised=False))
    assert len(_warned(result, UNCONFOUNDED)) == 1
    assert not _warned(result, PREDICTABLE)  # only a randomised trial should be unpredictable
    assert not _warned(result, POOR_OVERLAP)


@pytest.mark.usefixtures("skip_plots")
def test_predictable_arm_in_a_randomised_trial_warns(
    tmp_path: Path, small_trial: pd.DataFrame
) -> None:
    rng = np.random.default_rng(17)
    propensity = 0.5 + 0.2 * (small_trial["arm"] - 0.5) + rng.normal(0.0, 0.05, len(small_trial))
    table = small_trial.assign(propensity_estimated=propensity)
    result = _evaluate(tmp_path, table, SURVIVAL_HEAD, _config())
    assert result["overlap"]["auc"]["lower"] > 0.6
    assert result["overlap"]["fraction_outside"] == 0.0
    assert len(_warned(result, PREDICTABLE)) == 1
    assert not _warned(result, UNCONFOUNDED)
    assert not _warned(result, POOR_OVERLAP)


@pytest.mark.usefixtures("skip_plots")
def test_propensities_outside_the_overlap_range_warn(
    tmp_path: Path, small_trial: pd.DataFrame
) -> None:
    rng = np.random.default_rng(19)
    n = len(small_trial)
    extreme = rng.random(n) < 0.3
    propensity = np.where(extreme, rng.choice([0.02, 0.98], size=n), 0.5 + rng.normal(0.0, 0.03, n))
    table = small_trial.assign(propensity_estimated=propensity)
    result = _evaluate(tmp_path, table, SURVIVAL_HEAD, _config())
    outside = (propensity < 0.05) | (propensity > 0.95)
    assert result["overlap"]["fraction_outside"] == pytest.approx(outside.mean())
    assert result["overlap"]["range"] == [0.05, 0.95]
    warned = _warned(result, POOR_OVERLAP)
    assert len(warned) == 1
    assert f"{100 * outside.mean():.0f}%" in warned[0]
    assert not _warned(result, PREDICTABLE)  # the extremes are unrelated to the arm


@pytest.mark.usefixtures("skip_plots")
def test_well_randomised_trial_gives_no_design_warning(
    tmp_path: Path, small_trial: pd.DataFrame
) -> None:
    result = _evaluate(tmp_path, small_trial, SURVIVAL_HEAD, _config())
    assert result["overlap"]["auc"]["lower"] <= 0.6
    assert result["overlap"]["fraction_outside"] == 0.0
    assert set(result["overlap"]["quantiles_by_arm"]) == {"0", "1"}
    for text in (UNCONFOUNDED, PREDICTABLE, POOR_OVERLAP):
        assert not _warned(result, text)


def test_missing_propensity_skips_the_overlap_checks(
    tmp_path: Path, small_trial: pd.DataFrame
) -> None:
    table = small_trial.assign(propensity_estimated=np.nan)
    result = _evaluate(tmp_path, table, SURVIVAL_HEAD, _config())
    assert result["overlap"]["auc"] is None
    assert "not estimated" in result["overlap"]["note"]
    assert not _warned(result, PREDICTABLE)
    assert not _warned(result, POOR_OVERLAP)
    assert all((tmp_path / f"{name}.png").is_file() for name in TWIN_PLOTS)


# ----------------------------------------------------------------------------- policy propensity


def _design(table: pd.DataFrame) -> np.ndarray:
    return np.full(len(table), 0.3)


def _share(table: pd.DataFrame) -> np.ndarray:
    return np.full(len(table), float((table["arm"] == 1).mean()))


def _clipped(table: pd.DataFrame) -> np.ndarray:
    return np.clip(table["propensity_estimated"].to_numpy(), 0.05, 0.95)


DESIGN = ("treatment.propensity (trial design)", _design)


@pytest.mark.parametrize(
    ("treatment", "estimate", "expected"),
    [
        ({"propensity": 0.3}, "near 0.5", DESIGN),
        ({"propensity": 0.3, "randomised": False}, "uniform", DESIGN),
        ({}, "uniform", ("observed share of treated (randomised)", _share)),
        (
            {"randomised": False},
            "uniform",
            ("out-of-fold estimate, clipped to [0.05, 0.95]", _clipped),
        ),
        (
            {"randomised": False},
            "missing",
            ("observed share of treated (no features to estimate it)", _share),
        ),
    ],
    ids=["config", "config-over-estimate", "randomised-share", "estimate", "no-estimate"],
)
@pytest.mark.usefixtures("skip_plots")
def test_policy_propensity_source(
    tmp_path: Path,
    small_trial: pd.DataFrame,
    treatment: dict[str, Any],
    estimate: str,
    expected: tuple[str, Callable[[pd.DataFrame], np.ndarray]],
) -> None:
    """Config propensity first, else the observed share when randomised, else the estimate."""
    table = small_trial
    if estimate == "uniform":  # some beyond [0.05, 0.95], so clipping matters
        e = np.random.default_rng(23).uniform(0.0, 1.0, len(table))
        table = table.assign(propensity_estimated=e)
    elif estimate == "missing":
        table = table.assign(propensity_estimated=np.nan)
    result = _evaluate(tmp_path, table, SURVIVAL_HEAD, _config(**treatment))
    source, propensity = expected
    assert result["policy_propensity"] == source

    arm = table["arm"].to_numpy()
    observed = ObservedOutcome(
        "survival", table["time"].to_numpy(float), table["event"].to_numpy(float), HORIZON
    )
    benefit = -(table["t_outcome_1"] - table["t_outcome_0"]).to_numpy()
    reference = policy_values(arm, observed, benefit, propensity(table))
    metrics = result["learners"]["t"]["metrics"]
    for name in ("model", "treat_all", "treat_none"):
        assert metrics[f"policy_{name}"]["estimate"] == pytest.approx(reference[name])
    assert metrics["fraction_recommended_treated"]["estimate"] == pytest.approx(
        reference["fraction_treated"]
    )
    # The propensity matters: the raw estimate or another share would give another value.
    if estimate == "uniform":
        raw = policy_values(arm, observed, benefit, table["propensity_estimated"].to_numpy())
        assert raw["model"] != pytest.approx(reference["model"])


# ----------------------------------------------------------------------------- other tasks


@pytest.mark.usefixtures("skip_plots")
def test_classification_benefit_is_the_fall_in_event_probability(tmp_path: Path) -> None:
    rng = np.random.default_rng(31)
    n = 2000
    z = rng.normal(size=n)
    arm = (rng.random(n) < 0.5).astype(np.int64)
    p0 = expit(-0.3 + 0.8 * z)
    p1 = expit(-0.3 + 0.8 * z - 1.0)  # the drug lowers the probability of "yes"
    y = rng.random(n) < np.where(arm == 1, p1, p0)
    table = pd.DataFrame(
        {
            "sample_id": [f"S{i}" for i in range(n)],
            "subject_id": [f"P{i}" for i in range(n)],
            "fold": np.arange(n) % N_FOLDS,
            "arm": arm,
            "label": np.where(y, "yes", "no"),
            "propensity_estimated": 0.5 + rng.normal(0.0, 0.03, n),
        }
    )
    table = _predict(_predict(table, "t", p0, p1), "s", p0, p1)
    result = _evaluate(tmp_path, table, ClassificationHead(["no", "yes"]), _config())

    scale = result["outcome_scale"]
    assert (scale["kind"], scale["event_class"], scale["lower_is_better"]) == (
        "binary",
        "yes",
        True,
    )
    y1, y0 = y[arm == 1].astype(float), y[arm == 0].astype(float)
    trial = result["trial_contrast"]
    assert trial["control"]["estimate"] == pytest.approx(y0.mean())
    assert trial["treated"]["estimate"] == pytest.approx(y1.mean())
    assert trial["effect"]["estimate"] == pytest.approx(y1.mean() - y0.mean())
    se = np.sqrt(y1.var(ddof=1) / y1.size + y0.var(ddof=1) / y0.size)
    assert trial["benefit"]["se"] == pytest.approx(se)
    true_benefit = float(np.mean(p0 - p1))
    assert trial["benefit"]["estimate"] > 0
    assert trial["benefit"]["lower"] < true_benefit < trial["benefit"]["upper"]
    t = result["learners"]["t"]
    assert t["metrics"]["average_benefit"]["estimate"] == pytest.approx(true_benefit)
    assert t["agrees_with_trial"] is True
    assert result["warnings"] == []


@pytest.mark.parametrize("lower_is_better", [None, True])
def test_regression_benefit_follows_the_direction(
    tmp_path: Path, request: pytest.FixtureRequest, lower_is_better: bool | None
) -> None:
    rng = np.random.default_rng(41)
    n = 2000
    z = rng.normal(size=n)
    arm = (rng.random(n) < 0.5).astype(np.int64)
    target = 2.0 + z + 1.0 * arm + rng.normal(size=n)  # the drug raises the target by 1
    table = pd.DataFrame(
        {
            "sample_id": [f"S{i}" for i in range(n)],
            "subject_id": [f"P{i}" for i in range(n)],
            "fold": np.arange(n) % N_FOLDS,
            "arm": arm,
            "label": "all",
            "target": target,
            "propensity_estimated": 0.5 + rng.normal(0.0, 0.03, n),
        }
    )
    table = _predict(table, "t", 2.0 + z, 3.0 + z)
    treatment: dict[str, Any] = {"learners": ["t"]}
    if lower_is_better is not None:
        treatment["lower_is_better"] = lower_is_better
        request.getfixturevalue("skip_plots")  # the default direction draws them
    result = _evaluate(tmp_path, table, RegressionHead(), _config(**treatment))

    sign = -1.0 if lower_is_better else 1.0
    assert result["outcome_scale"]["kind"] == "continuous"
    assert result["outcome_scale"]["lower_is_better"] is bool(lower_is_better)
    trial = result["trial_contrast"]
    effect = target[arm == 1].mean() - target[arm == 0].mean()
    assert trial["effect"]["estimate"] == pytest.approx(effect)
    assert trial["benefit"]["estimate"] == pytest.approx(sign * effect)
    assert trial["benefit"]["estimate"] == pytest.approx(sign * 1.0, abs=0.2)
    assert trial["benefit"]["lower"] < sign * 1.0 < trial["benefit"]["upper"]
    t = result["learners"]["t"]
    assert t["metrics"]["average_effect"]["estimate"] == pytest.approx(1.0)
    assert t["metrics"]["average_benefit"]["estimate"] == pytest.approx(sign * 1.0)
    assert t["agrees_with_trial"] is True
    assert list(result["learners"]) == ["t"]
    assert result["served_learner"] == "t"
    if lower_is_better is None:  # one learner, and an effect constant up to rounding
        for name in TWIN_PLOTS:
            assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG_MAGIC)


# ----------------------------------------------------------------------------- plots


def test_all_plots_are_written_as_png(
    heterogeneous: tuple[pd.DataFrame, dict[str, Any], Path],
) -> None:
    _, _, folder = heterogeneous
    assert len(TWIN_PLOTS) == 4
    for name in TWIN_PLOTS:
        data = (folder / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 1000, name
    assert not list(folder.glob(".*tmp*"))  # atomic writes leave no temporary files
