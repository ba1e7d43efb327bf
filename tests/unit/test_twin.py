"""The digital twin (:mod:`omics_ml.twin`): the treatment spec, arm handling, the S- and
T-learners, what-if predictions with bootstrap bands, persistence and the pyfunc's what-if path.

Real inputs are built from the bundled examples as the workflow builds them (raw
``modality:feature`` columns plus ``sample_id``/``subject_id``/``visit_time``, per-row outcomes):
the AIDS trial (``config/longitudinal.yaml``, text arm ``baseline:drug`` ddC/ddI, landmark Cox
model) and the GSE1992 survival example (``config/survival.yaml``, cross-sectional) with a
synthetic randomised numeric arm 0/1 added to its clinical block.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from example_inputs import example_tables

import omics_ml.twin as twin_module
from omics_ml.io import read_json, write_json
from omics_ml.model import PIPELINE_ARTIFACT, TWIN_ARTIFACT, RawOmicsModel
from omics_ml.pipeline import OmicsPipeline, fit_pipeline
from omics_ml.tasks import ClassificationHead, RegressionHead, SurvivalHead
from omics_ml.twin import (
    TWIN_FILE,
    TreatmentSpec,
    TwinModel,
    arm_codes,
    bootstrap_members,
    counterfactual_frame,
    fit_learner,
    fit_twin,
    outcome_scale,
    subject_arms,
    treatment_feature_mask,
)

ROOT = Path(__file__).resolve().parents[2]
SMALL_MODEL = {"n_estimators": 40, "early_stopping_rounds": 10}
N_BOOTSTRAP = 5
ARM = "baseline:drug"


def _example(config_file: str) -> dict[str, Any]:
    """Config (small model), raw input frame, per-row outcomes and a subject-grouped split."""
    config = yaml.safe_load((ROOT / config_file).read_text())
    config["model"] = {**config["model"], **SMALL_MODEL}
    config["model"].pop("inner_cv_folds", None)
    if "treatment" in config:
        config["treatment"] = {**config["treatment"], "n_bootstrap": N_BOOTSTRAP}
    tables = example_tables(config)
    frame, outcomes, test = tables["frame"], tables["outcomes"], tables["test"]
    return {
        "config": config,
        "train": (
            frame[~test].reset_index(drop=True),
            outcomes[~test].reset_index(drop=True),
        ),
        "test": frame[test].reset_index(drop=True),
    }


def _fit_twin(example: dict[str, Any], spec: TreatmentSpec, **kwargs: Any) -> TwinModel:
    frame, outcomes = example["train"]
    return fit_twin(
        frame,
        outcomes,
        spec=spec,
        config=example["config"],
        classes=None,
        nthread=1,
        survival_times=None,
        **kwargs,
    )


def _flip(values: pd.Series, arms: tuple[str, str]) -> pd.Series:
    return values.map({arms[0]: arms[1], arms[1]: arms[0]})


# ====================================================================== fixtures (module scope)


@pytest.fixture(scope="module")
def aids() -> dict[str, Any]:
    example = _example("config/longitudinal.yaml")
    example["spec"] = TreatmentSpec.from_config(example["config"])
    return example


@pytest.fixture(scope="module")
def aids_twin(aids) -> TwinModel:
    """The served T-learner with its bootstrap ensemble."""
    assert aids["spec"].served == "t"
    return _fit_twin(aids, aids["spec"])


@pytest.fixture(scope="module")
def aids_pipeline(aids) -> OmicsPipeline:
    """The registered pipeline: the arm is one of its features (the S-learner)."""
    return fit_pipeline(*aids["train"], config=aids["config"])


@pytest.fixture(scope="module")
def aids_s_twin(aids, aids_pipeline) -> TwinModel:
    spec = dataclasses.replace(aids["spec"], learners=("s", "t"))
    return _fit_twin(aids, spec, s_pipeline=aids_pipeline)


@pytest.fixture(scope="module")
def aids_what_if(aids, aids_twin) -> pd.DataFrame:
    return aids_twin.predict_what_if(aids["test"])


@pytest.fixture(scope="module")
def numeric_arm() -> dict[str, Any]:
    """The cross-sectional survival example with a synthetic randomised numeric arm 0/1."""
    example = _example("config/survival.yaml")
    example["config"]["treatment"] = yaml.safe_load(
        "column: 'clinical:arm'\narms: [0, 1]\nlearners: [t, s]\nn_bootstrap: 3\n"
    )
    rng = np.random.default_rng(11)
    (frame, outcomes), test = example["train"], example["test"]
    frame["clinical:arm"] = rng.integers(0, 2, size=len(frame)).astype(np.float64)
    test["clinical:arm"] = rng.integers(0, 2, size=len(test)).astype(np.float64)
    example["spec"] = TreatmentSpec.from_config(example["config"])
    example["twin"] = _fit_twin(example, example["spec"])
    example["pipeline"] = fit_pipeline(frame, outcomes, config=example["config"])
    return example


# ============================================================================ TreatmentSpec


def _config(**treatment: Any) -> dict[str, Any]:
    section = {"column": ARM, "arms": ["ddC", "ddI"], **treatment}
    return {"modalities": {"cd4": {}, "baseline": {}}, "treatment": section}


def test_spec_defaults_and_no_section():
    spec = TreatmentSpec.from_config(_config())
    assert spec is not None
    assert spec.column == ARM
    assert spec.modality == "baseline"
    assert spec.arms == ("ddC", "ddI")
    assert spec.learners == ("t", "s")
    assert spec.served == "t"
    assert spec.randomised is True
    assert spec.propensity is None
    assert spec.horizon is None
    assert spec.event_class is None
    assert spec.lower_is_better is None
    assert spec.n_bootstrap == 50
    assert spec.n_groups == 4
    assert spec.interval_level == 0.95
    assert TreatmentSpec.from_config({"modalities": {"baseline": {}}}) is None
    assert TreatmentSpec.from_config({"modalities": {}, "treatment": {}}) is None
    assert TreatmentSpec.from_json(spec.to_json()) == spec


def test_spec_reads_yaml_numbers_and_case():
    config = yaml.safe_load(
        "modalities: {clinical: {}}\n"
        "treatment:\n"
        "  column: clinical:arm\n"
        "  arms: [0, 1]\n"
        "  learners: [S, T]\n"
        "  horizon: 12\n"
        "  event_class: 1\n"
        "  propensity: 0.5\n"
    )
    spec = TreatmentSpec.from_config(config)
    assert spec.arms == ("0", "1")
    assert spec.learners == ("s", "t")
    assert spec.served == "s"
    assert spec.horizon == 12.0 and isinstance(spec.horizon, float)
    assert spec.event_class == "1"
    assert spec.propensity == 0.5
    floats = TreatmentSpec.from_config(_config(arms=[0.0, 1.0]))
    assert floats.arms == ("0", "1")
    assert TreatmentSpec.from_config(_config(arms=[False, True])).arms == ("0", "1")
    assert TreatmentSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"column": "drug"}, ["treatment.column", "modality:feature"]),
        ({"column": "clinical:drug"}, ["treatment.column", "'clinical'", "not a modality"]),
        ({"arms": ["ddC"]}, ["treatment.arms"]),
        ({"arms": ["ddC", "ddC"]}, ["treatment.arms"]),
        ({"arms": [1, 1.0]}, ["treatment.arms"]),
        ({"arms": ["a", "b", "c"]}, ["treatment.arms"]),
        ({"learners": ["x"]}, ["treatment.learners", "'x'", "first learner serves"]),
        ({"learners": ["q"]}, ["treatment.learners", "'q'", "choose from"]),
        ({"learners": []}, ["treatment.learners"]),
        ({"arm_column": "baseline:drug"}, ["treatment", "unknown keys", "arm_column"]),
        ({"propensity": 0}, ["treatment.propensity"]),
        ({"propensity": 1}, ["treatment.propensity"]),
        ({"propensity": 1.5}, ["treatment.propensity"]),
    ],
)
def test_spec_errors_name_the_key(overrides, names):
    with pytest.raises(ValueError) as excinfo:
        TreatmentSpec.from_config(_config(**overrides))
    for name in names:
        assert name in str(excinfo.value)


# ================================================================= arms, frames, masks, scales

SPEC = TreatmentSpec(column=ARM, arms=("ddC", "ddI"))
NUMERIC_SPEC = TreatmentSpec(column="clinical:arm", arms=("0", "1"))


def test_arm_codes_text_numbers_missing_and_others():
    codes = arm_codes(["ddC", "ddI", None, np.nan, "other", "ddc", "ddI"], SPEC)
    assert codes.dtype == np.int64
    assert codes.tolist() == [0, 1, -1, -1, -1, -1, 1]
    numeric = pd.Series([0.0, 1.0, np.nan, 2.0, 1.0, 0.5, -1.0])
    assert arm_codes(numeric, NUMERIC_SPEC).tolist() == [0, 1, -1, -1, 1, -1, -1]
    as_float32 = numeric.astype(np.float32)
    assert arm_codes(as_float32, NUMERIC_SPEC).tolist() == [0, 1, -1, -1, 1, -1, -1]
    assert arm_codes(np.array([1, 0, 2]), NUMERIC_SPEC).tolist() == [1, 0, -1]
    assert arm_codes([True, False], NUMERIC_SPEC).tolist() == [1, 0]
    assert arm_codes(["1", "0"], NUMERIC_SPEC).tolist() == [1, 0]
    # a series with another index: codes follow its order
    shuffled = pd.Series(["ddI", "ddC"], index=[7, 3])
    assert arm_codes(shuffled, SPEC).tolist() == [1, 0]


def test_subject_arms_fill_visits_and_reject_switches():
    frame = pd.DataFrame(
        {
            "subject_id": ["a", "a", "b", "b", "c", "d"],
            ARM: ["ddC", "ddC", "ddI", None, None, "other"],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    codes = subject_arms(frame, SPEC)
    assert codes.index.tolist() == frame.index.tolist()
    # b's visit without an arm takes b's arm; c and d have none
    assert codes.tolist() == [0, 0, 1, 1, -1, -1]
    switched = frame.assign(**{ARM: ["ddC", "ddI", "ddI", "ddI", "ddC", "ddC"]})
    with pytest.raises(ValueError, match=r"baseline:drug.*\['a'\].*change arm"):
        subject_arms(switched, SPEC)
    with pytest.raises(ValueError, match="'baseline:drug' is not an input column"):
        subject_arms(frame.drop(columns=[ARM]), SPEC)
    per_row = subject_arms(switched.drop(columns=["subject_id"]), SPEC)
    assert per_row.tolist() == [0, 1, 1, 1, 0, 0]


def test_treatment_feature_mask():
    names = [
        "baseline:drug",
        "baseline:drug=ddI",
        "baseline:drug=ddC@last",
        "baseline:drug@last",
        "baseline:drugs",
        "baseline:drugs=x",
        "baseline:drug_dose",
        "other:drug=ddI",
        "cd4:CD4@slope",
        "baseline:gender=male@last",
    ]
    assert treatment_feature_mask(names, SPEC).tolist() == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
        False,
        False,
    ]
    assert treatment_feature_mask([], SPEC).shape == (0,)


def test_outcome_scale_survival():
    head = SurvivalHead(horizons=[6.0, 12.0, 0.5])
    scale = outcome_scale(head, SPEC)
    assert scale["column"] == "risk_at_0_5"  # the last of the model's horizons
    assert scale["kind"] == "survival"
    assert scale["lower_is_better"] is True
    scale = outcome_scale(head, dataclasses.replace(SPEC, horizon=12.0))
    assert (scale["column"], scale["horizon"]) == ("risk_at_12", 12.0)
    assert outcome_scale(head, dataclasses.replace(SPEC, horizon=0.5))["column"] == "risk_at_0_5"
    flipped = dataclasses.replace(SPEC, horizon=6.0, lower_is_better=False)
    assert outcome_scale(head, flipped)["lower_is_better"] is False
    with pytest.raises(ValueError, match=r"treatment.horizon 7 is not one of"):
        outcome_scale(head, dataclasses.replace(SPEC, horizon=7.0))


def test_outcome_scale_classification_and_regression():
    binary = outcome_scale(ClassificationHead(["no", "yes"]), SPEC)
    assert (binary["column"], binary["kind"], binary["event_class"]) == (
        "prob_yes",
        "binary",
        "yes",
    )
    assert binary["lower_is_better"] is True
    three = ClassificationHead(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"treatment\.event_class is needed with 3 classes"):
        outcome_scale(three, SPEC)
    assert outcome_scale(three, dataclasses.replace(SPEC, event_class="c"))["column"] == "prob_c"
    with pytest.raises(ValueError, match=r"treatment.event_class 'z' is not a class"):
        outcome_scale(three, dataclasses.replace(SPEC, event_class="z"))
    value = outcome_scale(RegressionHead(), SPEC)
    assert (value["column"], value["kind"], value["lower_is_better"]) == (
        "predicted",
        "continuous",
        False,
    )
    lower = dataclasses.replace(SPEC, lower_is_better=True)
    assert outcome_scale(RegressionHead(), lower)["lower_is_better"] is True


def test_counterfactual_frame_text_column(aids, aids_pipeline):
    frame = aids["test"]
    before = frame.copy(deep=True)
    assert ARM in aids_pipeline.text_columns
    for arm in SPEC.arms:
        out = counterfactual_frame(frame, aids_pipeline, SPEC, arm)
        assert (out[ARM] == arm).all()
        assert len(out) == len(frame)
        pd.testing.assert_frame_equal(out.drop(columns=[ARM]), frame.drop(columns=[ARM]))
    pd.testing.assert_frame_equal(frame, before)
    added = counterfactual_frame(frame.drop(columns=[ARM]), aids_pipeline, SPEC, "ddI")
    assert (added[ARM] == "ddI").all()


def test_counterfactual_frame_numeric_column(numeric_arm):
    pipeline, spec = numeric_arm["pipeline"], numeric_arm["spec"]
    frame = numeric_arm["test"]
    before = frame.copy(deep=True)
    assert spec.column in pipeline.input_columns
    assert spec.column not in pipeline.text_columns
    out = counterfactual_frame(frame, pipeline, spec, "1")
    assert pd.api.types.is_float_dtype(out[spec.column])
    assert (out[spec.column] == 1.0).all()
    assert (counterfactual_frame(frame, pipeline, spec, "0")[spec.column] == 0.0).all()
    pd.testing.assert_frame_equal(frame, before)
    words = TreatmentSpec(column=spec.column, arms=("control", "drug"))
    with pytest.raises(ValueError, match=r"'clinical:arm' is numeric.*'drug' is not a number"):
        counterfactual_frame(frame, pipeline, words, "drug")


# ===================================================================== learners and bootstrap


def _at_risk_subjects(aids, arm: str) -> set[str]:
    """Training subjects of ``arm`` at risk at the first landmark (time > 0)."""
    frame, outcomes = aids["train"]
    rows = (frame[ARM] == arm).to_numpy() & (outcomes["time"] > 0).to_numpy()
    return set(frame.loc[rows, "subject_id"].astype(str))


def test_t_learner_fits_each_arm_on_its_own_subjects(aids, aids_twin):
    assert aids_twin.learner == "t"
    assert list(aids_twin.models) == ["ddC", "ddI"]
    frame, _ = aids["train"]
    for arm, model in aids_twin.models.items():
        expected = _at_risk_subjects(aids, arm)
        assert model.info["n_training_subjects"] == len(expected)
        # the arm's design only knows its own level of the arm column
        drug = [n for n in model.feature_names if n.startswith(f"{ARM}=")]
        assert drug == [f"{ARM}={arm}@last"]
        assert treatment_feature_mask(model.feature_names, SPEC).sum() == 1
    by_arm = aids_twin.info["n_subjects_by_arm"]
    for arm in SPEC.arms:
        assert by_arm[arm] == frame.loc[frame[ARM] == arm, "subject_id"].nunique()
    assert by_arm["ddC"] + by_arm["ddI"] == frame["subject_id"].nunique()
    assert aids_twin.info["n_rounds"] == {
        k: m.info["n_rounds"] for k, m in aids_twin.models.items()
    }
    # the two arms' boosters are different models
    a, b = (m.booster.save_raw("json") for m in aids_twin.models.values())
    assert a != b


def test_t_learner_arms_share_survival_times(aids, aids_twin):
    """Without the split's survival times the arms still read their curves at the same times."""
    heads = [m.head for m in aids_twin.models.values()]
    np.testing.assert_array_equal(heads[0].grid, heads[1].grid)
    assert heads[0].horizons == heads[1].horizons == [6.0, 12.0]
    # and with default horizons (none configured), which each arm would set differently
    config = {**aids["config"], "survival": {"objective": "cox"}}
    models = fit_learner(
        "t",
        *aids["train"],
        spec=aids["spec"],
        config=config,
        classes=None,
        nthread=1,
        survival_times=None,
    )
    heads = [m.head for m in models.values()]
    np.testing.assert_array_equal(heads[0].grid, heads[1].grid)
    assert heads[0].horizons == heads[1].horizons
    spec = dataclasses.replace(aids["spec"], horizon=None, n_bootstrap=0)
    out = TwinModel(spec, "t", models).predict_what_if(aids["test"].head(30))
    risk = outcome_scale(heads[0], spec)["column"]
    assert out[risk].notna().all()
    assert out.filter(like="surv_").notna().all().all()


def test_given_survival_times_are_used_by_every_arm(aids):
    times = {"grid": [0.0, 3.0, 6.0, 9.0, 12.0], "horizons": [6.0, 12.0]}
    models = fit_learner(
        "t",
        *aids["train"],
        spec=aids["spec"],
        config=aids["config"],
        classes=None,
        nthread=1,
        survival_times=times,
    )
    for model in models.values():
        assert model.head.grid.tolist() == times["grid"]
        assert model.head.horizons == times["horizons"]


def test_s_learner_reuses_the_given_pipeline(aids, aids_pipeline, aids_s_twin):
    models = fit_learner(
        "s",
        *aids["train"],
        spec=aids["spec"],
        config=aids["config"],
        classes=None,
        nthread=1,
        survival_times=None,
        s_pipeline=aids_pipeline,
    )
    assert list(models) == ["s"]
    assert models["s"] is aids_pipeline
    assert aids_s_twin.learner == "s"
    assert aids_s_twin.models["s"] is aids_pipeline
    assert treatment_feature_mask(aids_pipeline.feature_names, SPEC).sum() == 2


def test_fit_learner_needs_both_arms(aids):
    frame, outcomes = aids["train"]
    only_ddc = (frame[ARM] == "ddC").to_numpy()
    with pytest.raises(ValueError, match=r"treatment arm 'ddI' has no training subject"):
        fit_learner(
            "t",
            frame[only_ddc].reset_index(drop=True),
            outcomes[only_ddc].reset_index(drop=True),
            spec=aids["spec"],
            config=aids["config"],
            classes=None,
            nthread=1,
            survival_times=None,
        )


def test_fit_twin_fails_early_on_a_horizon_the_model_lacks(aids, aids_pipeline):
    spec = dataclasses.replace(aids["spec"], learners=("s",), horizon=7.0, n_bootstrap=0)
    with pytest.raises(ValueError, match=r"treatment\.horizon 7 is not one of"):
        _fit_twin(aids, spec, s_pipeline=aids_pipeline)


def test_bootstrap_members_keep_rounds_and_resample_own_subjects(aids, aids_twin, monkeypatch):
    frame, outcomes = aids["train"]
    seen: list[tuple[set[str], np.ndarray]] = []
    resample = twin_module._resample_rows

    def recording(groups, rng):
        idx = resample(groups, rng)
        seen.append((set(groups.tolist()), np.asarray(groups)[idx]))
        return idx

    monkeypatch.setattr(twin_module, "_resample_rows", recording)
    members = bootstrap_members(
        aids_twin.models, frame, outcomes, spec=aids["spec"], n_members=3, seed=5, nthread=1
    )
    assert len(members) == 3
    assert len(seen) == 3 * 2
    for b, member in enumerate(members):
        assert list(member) == ["ddC", "ddI"]
        for k, (key, (booster, head)) in enumerate(member.items()):
            model = aids_twin.models[key]
            assert booster.num_boosted_rounds() == model.info["n_rounds"]
            pool, drawn = seen[2 * b + k]
            assert pool == _at_risk_subjects(aids, key)
            assert set(drawn.tolist()) <= pool
            assert len(set(drawn.tolist())) < len(pool)  # with replacement: some left out
            assert head is not model.head
            np.testing.assert_array_equal(head.grid, model.head.grid)
            assert head.horizons == model.head.horizons
            # the Breslow baseline is refitted on the resample
            assert head.baseline.to_json() != model.head.baseline.to_json()
    # the fitted twin's members keep each model's rounds too
    assert len(aids_twin.members) == N_BOOTSTRAP
    for member in aids_twin.members:
        for key, (booster, _) in member.items():
            assert booster.num_boosted_rounds() == aids_twin.models[key].info["n_rounds"]


def test_bootstrap_members_of_the_s_learner_resample_both_arms(aids, aids_s_twin, monkeypatch):
    frame, outcomes = aids["train"]
    pools: list[set[str]] = []
    resample = twin_module._resample_rows

    def recording(groups, rng):
        pools.append(set(groups.tolist()))
        return resample(groups, rng)

    monkeypatch.setattr(twin_module, "_resample_rows", recording)
    members = bootstrap_members(
        aids_s_twin.models, frame, outcomes, spec=aids["spec"], n_members=1, seed=5, nthread=1
    )
    assert list(members[0]) == ["s"]
    assert pools == [_at_risk_subjects(aids, "ddC") | _at_risk_subjects(aids, "ddI")]
    booster, _ = members[0]["s"]
    assert booster.num_boosted_rounds() == aids_s_twin.models["s"].info["n_rounds"]


# ============================================================================ what-if predictions


def test_what_if_rows_effects_and_bands(aids, aids_twin, aids_what_if):
    out = aids_what_if
    meta, _, _ = aids_twin.reference.design(aids["test"].assign(**{ARM: "ddC"}))
    n = len(meta)
    assert len(out) == 2 * n
    assert out["arm"].tolist() == ["ddC", "ddI"] * n
    for column in ("sample_id", "subject_id", "landmark"):
        assert out[column].iloc[::2].tolist() == meta[column].tolist()
        assert out[column].iloc[1::2].tolist() == meta[column].tolist()
    assert not out.duplicated(["subject_id", "landmark", "arm"]).any()
    assert sorted(out["landmark"].unique()) == [0.0, 2.0, 6.0]
    reference = out[out["arm"] == "ddC"].reset_index(drop=True)
    treated = out[out["arm"] == "ddI"].reset_index(drop=True)
    np.testing.assert_array_equal(reference["outcome"], reference["risk_at_12"])
    np.testing.assert_array_equal(treated["outcome"], treated["risk_at_12"])
    # the reference arm: no effect, no bands
    assert (reference["effect"] == 0).all() and (reference["benefit"] == 0).all()
    assert reference[["effect_lower", "effect_upper", "prob_benefit"]].isna().all().all()
    # the treated arm, row by row against its own reference row
    np.testing.assert_allclose(
        treated["effect"], treated["outcome"] - reference["outcome"], rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(treated["benefit"], -treated["effect"])  # lower risk is better
    assert treated["effect"].abs().gt(0).any()
    assert treated["prob_benefit"].between(0, 1).all()
    np.testing.assert_allclose(  # a share of the five bootstrap refits
        treated["prob_benefit"] * N_BOOTSTRAP, np.round(treated["prob_benefit"] * N_BOOTSTRAP)
    )
    assert treated[["effect_lower", "effect_upper"]].notna().all().all()
    assert (treated["effect_lower"] <= treated["effect_upper"]).all()
    assert (out["outcome_lower"] <= out["outcome_upper"]).all()
    bands = out[["outcome_lower", "outcome_upper"]].to_numpy()
    assert ((bands >= 0) & (bands <= 1)).all()
    assert (treated["effect_lower"] < treated["effect_upper"]).any()
    # the curves of both arms on one grid: no column is missing for either arm
    assert out.filter(like="surv_").notna().all().all()


def test_what_if_bands_come_from_the_bootstrap_members(aids, aids_twin, aids_what_if):
    meta, predictions, members = aids_twin.arm_predictions(aids["test"])
    assert members["ddC"].shape == members["ddI"].shape == (len(meta), N_BOOTSTRAP)
    # members differ from each other and from the point model
    assert np.ptp(members["ddI"], axis=1).max() > 0
    assert not np.allclose(members["ddI"].mean(axis=1), predictions["ddI"]["risk_at_12"])
    diff = members["ddI"] - members["ddC"]
    treated = aids_what_if[aids_what_if["arm"] == "ddI"].reset_index(drop=True)
    # benefit is a lower risk under ddI: the share of refits whose risk difference is negative
    np.testing.assert_allclose(treated["prob_benefit"], (diff < 0).mean(axis=1))
    assert 0 < treated["prob_benefit"].mean() < 1
    low, high = np.percentile(diff, [2.5, 97.5], axis=1)
    np.testing.assert_allclose(treated["effect_lower"], low)
    np.testing.assert_allclose(treated["effect_upper"], high)
    low, high = np.percentile(members["ddI"], [2.5, 97.5], axis=1)
    np.testing.assert_allclose(treated["outcome_lower"], low)
    np.testing.assert_allclose(treated["outcome_upper"], high)


def test_what_if_survival_curves_have_bootstrap_bands(aids, aids_twin, aids_what_if):
    curve = [
        c for c in aids_what_if if c.startswith("surv_") and not c.endswith(("_lower", "_upper"))
    ]
    assert len(curve) > 10
    for column in curve:
        low, high = aids_what_if[f"{column}_lower"], aids_what_if[f"{column}_upper"]
        assert (low <= high).all()
        assert ((low >= 0) & (high <= 1)).all()
    # Each member's curve falls over time, so each percentile of them does too.
    lows = aids_what_if[[f"{c}_lower" for c in curve]].to_numpy()
    assert (np.diff(lows, axis=1) <= 1e-12).all()


def test_what_if_arms_come_from_their_own_models(aids, aids_twin, aids_what_if):
    for arm, model in aids_twin.models.items():
        own = model.predict_frame(counterfactual_frame(aids["test"], model, SPEC, arm))
        rows = aids_what_if[aids_what_if["arm"] == arm].reset_index(drop=True)
        assert rows["sample_id"].tolist() == own["sample_id"].tolist()
        pd.testing.assert_frame_equal(rows[own.columns], own)


def test_what_if_ignores_the_observed_arm(aids, aids_twin, aids_what_if):
    test = aids["test"]
    without = aids_twin.predict_what_if(test.drop(columns=[ARM]))
    pd.testing.assert_frame_equal(without, aids_what_if)
    flipped = test.assign(**{ARM: _flip(test[ARM], SPEC.arms)})
    assert (flipped[ARM] != test[ARM]).all()
    pd.testing.assert_frame_equal(aids_twin.predict_what_if(flipped), aids_what_if)
    all_ddi = test.assign(**{ARM: "ddI"})
    pd.testing.assert_frame_equal(aids_twin.predict_what_if(all_ddi), aids_what_if)


def test_s_learner_what_if_is_the_pipeline_with_the_arm_set(aids, aids_pipeline, aids_s_twin):
    test = aids["test"]
    out = aids_s_twin.predict_what_if(test)
    for arm in SPEC.arms:
        own = aids_pipeline.predict_frame(test.assign(**{ARM: arm}))
        rows = out[out["arm"] == arm].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows[own.columns], own)
    flipped = test.assign(**{ARM: _flip(test[ARM], SPEC.arms)})
    pd.testing.assert_frame_equal(aids_s_twin.predict_what_if(flipped), out)
    pd.testing.assert_frame_equal(aids_s_twin.predict_what_if(test.drop(columns=[ARM])), out)
    treated = out[out["arm"] == "ddI"]
    assert treated["prob_benefit"].between(0, 1).all()
    assert (treated["effect_lower"] <= treated["effect_upper"]).all()


def test_what_if_without_members_has_no_bands(aids, aids_twin):
    bare = TwinModel(aids_twin.spec, "t", aids_twin.models)
    test = aids["test"].head(20)
    out = bare.predict_what_if(test)
    full = aids_twin.predict_what_if(test)
    columns = ["sample_id", "arm", "outcome", "effect", "benefit"]
    pd.testing.assert_frame_equal(out[columns], full[columns])
    assert (
        out[["outcome_lower", "outcome_upper", "effect_lower", "effect_upper"]].isna().all().all()
    )
    assert out["prob_benefit"].isna().all()


def test_cross_sectional_numeric_arm_what_if(numeric_arm):
    twin, spec, test = numeric_arm["twin"], numeric_arm["spec"], numeric_arm["test"]
    assert list(twin.models) == ["0", "1"]
    assert twin.scale()["column"] == "risk_at_48"
    out = twin.predict_what_if(test)
    assert len(out) == 2 * len(test)
    assert out["arm"].tolist() == ["0", "1"] * len(test)
    assert out["sample_id"].iloc[::2].tolist() == test["sample_id"].tolist()
    assert out["sample_id"].iloc[1::2].tolist() == test["sample_id"].tolist()
    reference = out[out["arm"] == "0"].reset_index(drop=True)
    treated = out[out["arm"] == "1"].reset_index(drop=True)
    np.testing.assert_allclose(treated["effect"], treated["outcome"] - reference["outcome"])
    assert (reference["effect"] == 0).all()
    for arm, model in twin.models.items():
        own = model.predict_frame(test.assign(**{spec.column: float(arm)}))
        rows = out[out["arm"] == arm].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            rows[["sample_id", "risk_at_48"]], own[["sample_id", "risk_at_48"]]
        )
    flipped = test.assign(**{spec.column: 1.0 - test[spec.column]})
    pd.testing.assert_frame_equal(twin.predict_what_if(flipped), out)
    s_twin = TwinModel(spec, "s", {"s": numeric_arm["pipeline"]})
    s_out = s_twin.predict_what_if(test)
    for arm in spec.arms:
        own = numeric_arm["pipeline"].predict_frame(test.assign(**{spec.column: float(arm)}))
        rows = s_out[s_out["arm"] == arm].reset_index(drop=True)
        np.testing.assert_array_equal(rows["risk_at_48"], own["risk_at_48"])


# ========================================================== persistence, determinism, pyfunc


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


@pytest.mark.parametrize("which", ["aids_twin", "aids_s_twin"])
def test_save_load_round_trip_without_pickle(aids, which, request, tmp_path):
    twin: TwinModel = request.getfixturevalue(which)
    twin.save(tmp_path / "twin")
    files = _files(tmp_path / "twin")
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle", ".joblib"))]
    assert TWIN_FILE in files
    n_models = len(twin.models)
    assert sum(f.startswith("member_") and f.endswith(".ubj") for f in files) == (
        N_BOOTSTRAP * n_models
    )
    assert {f.split("/")[0] for f in files if f.startswith("model_")} == {
        f"model_{i}" for i in range(n_models)
    }
    loaded = TwinModel.load(tmp_path / "twin")
    assert loaded.spec == twin.spec
    assert loaded.learner == twin.learner
    assert list(loaded.models) == list(twin.models)
    assert loaded.info == twin.info
    assert len(loaded.members) == len(twin.members)
    pd.testing.assert_frame_equal(
        loaded.predict_what_if(aids["test"]), twin.predict_what_if(aids["test"])
    )
    state = read_json(tmp_path / "twin" / TWIN_FILE)
    write_json(tmp_path / "twin" / TWIN_FILE, {**state, "format_version": 999})
    with pytest.raises(ValueError, match="format_version 999"):
        TwinModel.load(tmp_path / "twin")


def test_fitting_twice_gives_identical_predictions(aids, aids_twin, aids_what_if):
    again = _fit_twin(aids, aids["spec"])
    pd.testing.assert_frame_equal(again.predict_what_if(aids["test"]), aids_what_if)
    for key, model in aids_twin.models.items():
        assert again.models[key].booster.save_raw("json") == model.booster.save_raw("json")
    other_seed = _fit_twin(
        {**aids, "config": {**aids["config"], "seed": 7}},
        dataclasses.replace(aids["spec"], n_bootstrap=2),
    )
    assert not other_seed.predict_what_if(aids["test"])["outcome"].equals(aids_what_if["outcome"])


def test_pyfunc_model_serves_the_twin_on_what_if(aids, aids_pipeline, aids_twin, tmp_path):
    test = aids["test"]
    aids_pipeline.save(tmp_path / "pipeline")
    aids_twin.save(tmp_path / "twin")
    model = RawOmicsModel()
    model.load_context(
        SimpleNamespace(
            artifacts={
                PIPELINE_ARTIFACT: str(tmp_path / "pipeline"),
                TWIN_ARTIFACT: str(tmp_path / "twin"),
            }
        )
    )
    assert isinstance(model.twin, TwinModel)
    what_if = model.predict(None, test, params={"what_if": True})
    pd.testing.assert_frame_equal(what_if, aids_twin.predict_what_if(test))
    pd.testing.assert_frame_equal(model.predict(None, test), aids_pipeline.predict_frame(test))
    pd.testing.assert_frame_equal(
        model.predict(None, test, params={"what_if": False}), aids_pipeline.predict_frame(test)
    )
    without = RawOmicsModel()
    without.load_context(SimpleNamespace(artifacts={PIPELINE_ARTIFACT: str(tmp_path / "pipeline")}))
    assert without.twin is None
    pd.testing.assert_frame_equal(without.predict(None, test), aids_pipeline.predict_frame(test))
    with pytest.raises(ValueError, match="without a treatment section"):
        without.predict(None, test, params={"what_if": True})
