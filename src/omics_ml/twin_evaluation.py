"""Out-of-fold evaluation of what-if predictions, and the final twin model.

:func:`twin_fold` fits each meta-learner on one outer fold's training subjects (the X-learner
on the T-learner's imputations) and predicts its test subjects under both arms, with an out-of-fold propensity (the arm predicted from the
baseline features, a randomisation and overlap check). :func:`evaluate_twin` pools the folds and
measures, per learner, the average effect next to the trial's own Kaplan-Meier (or mean)
contrast, calibration for benefit, the c-for-benefit and the value of treating by predicted
benefit, with subject-bootstrap intervals; it states the assumptions and warns when they do not
hold. :func:`train_twin` fits the serving learner and its bootstrap ensemble on all
development subjects.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xgboost as xgb
from numpy.typing import NDArray
from scipy import stats
from sklearn.metrics import roc_auc_score

from omics_ml.benefit import (
    ObservedOutcome,
    benefit_calibration,
    bootstrapped,
    c_for_benefit,
    policy_values,
    trial_contrast,
)
from omics_ml.integrate import raw_input_frame, read_features
from omics_ml.io import atomic_output, read_json, save_figure, write_json
from omics_ml.pipeline import OmicsPipeline
from omics_ml.tasks import Outcome, head_from_json
from omics_ml.train import _classes, _fold_sets, _subset, outcome_frame
from omics_ml.twin import (
    SERVING_LEARNERS,
    TWIN_FILE,
    TreatmentSpec,
    TwinModel,
    bootstrap_members,
    fit_learner,
    fit_twin,
    outcome_scale,
    subject_arms,
    treatment_feature_mask,
)
from omics_ml.x_learner import fit_x_learner, observed_on_scale

__all__ = [
    "ASSUMPTIONS",
    "TWIN_PLOTS",
    "evaluate_twin",
    "train_twin",
    "twin_fold",
]

logger = logging.getLogger(__name__)

#: Plots of :func:`evaluate_twin`, by name.
TWIN_PLOTS = ("twin_calibration", "twin_policy", "twin_overlap", "twin_effects")

#: What every what-if answer rests on; shown in the report and the README.
ASSUMPTIONS = (
    "Predicted differences between arms are causal effects only if (1) the arm was assigned "
    "at random, or every common cause of arm and outcome is among the model's inputs (no "
    "unmeasured confounding); (2) every kind of patient could have received either arm "
    "(overlap, positivity); (3) a patient's outcome depends only on their own arm (no "
    "interference) and the arm is the same treatment for everyone who received it "
    "(consistency); and (4) the new patient resembles the trial's population. The "
    "uncertainty bands cover refitting on other samples of the same subjects, not a "
    "different population."
)

#: Estimated propensities outside this range count as poor overlap.
OVERLAP_RANGE = (0.05, 0.95)
_PROPENSITY_PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "learning_rate": 0.05,
    "max_depth": 2,
    "min_child_weight": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "max_bin": 64,
}
_PROPENSITY_ROUNDS = 100


def _row_arms(meta: pd.DataFrame, frame: pd.DataFrame, spec: TreatmentSpec) -> NDArray[np.int64]:
    """The received arm of each design row (by subject for landmark rows, else by sample)."""
    codes = subject_arms(frame, spec)
    if "landmark" in meta:
        by = pd.Series(codes.to_numpy(), index=frame["subject_id"].astype(str).to_numpy())
        by = by[~by.index.duplicated()]
        return by.reindex(meta["subject_id"].astype(str).to_numpy()).to_numpy(np.int64)
    ids = frame["sample_id"].astype(str).to_numpy() if "sample_id" in frame else frame.index
    by = pd.Series(codes.to_numpy(), index=ids)
    return by.reindex(meta["sample_id"].astype(str).to_numpy()).to_numpy(np.int64)


class _Design(NamedTuple):
    """The S-learner's design rows of a frame: baseline features (the arm's columns left
    out), outcome and the received arm of each row."""

    meta: pd.DataFrame
    features: NDArray[np.float32]
    outcome: Outcome
    arms: NDArray[np.int64]


def _baseline_design(
    s_pipeline: OmicsPipeline, spec: TreatmentSpec, frame: pd.DataFrame, outcomes: pd.DataFrame
) -> _Design:
    meta, features, outcome = s_pipeline.design(frame, outcomes)
    assert outcome is not None
    keep = ~treatment_feature_mask(s_pipeline.feature_names, spec)
    return _Design(meta, features[:, keep], outcome, _row_arms(meta, frame, spec))


def _propensity(train: _Design, test: _Design, *, nthread: int, seed: int) -> NDArray[np.float64]:
    """P(treated | baseline features) of the test rows, fitted on the training rows."""
    rows = train.arms >= 0
    if not train.features.shape[1] or len(np.unique(train.arms[rows])) < 2:
        return np.full(len(test.meta), np.nan)
    data = xgb.DMatrix(train.features[rows], label=train.arms[rows])
    booster = xgb.train(
        {**_PROPENSITY_PARAMS, "nthread": nthread, "seed": seed},
        data,
        num_boost_round=_PROPENSITY_ROUNDS,
    )
    return booster.inplace_predict(test.features, validate_features=False).astype(np.float64)


def _x_learner_effects(
    t_models: Mapping[str, OmicsPipeline],
    *,
    spec: TreatmentSpec,
    scale: Mapping[str, Any],
    train: _Design,
    test: _Design,
    train_inputs: tuple[pd.DataFrame, pd.DataFrame],
    nthread: int,
    seed: int,
) -> NDArray[np.float64]:
    """X-learner effects of the test rows, fitted on the training rows.

    The features are the S-learner's baseline design columns; the imputations use the
    T-learner's per-arm predictions of the training rows (``train_inputs``; each arm's model
    predicts the other arm's subjects out of sample).
    """
    t_meta, predictions, _ = TwinModel(spec, "t", dict(t_models)).arm_predictions(*train_inputs)
    if not np.array_equal(t_meta["sample_id"], train.meta["sample_id"]):
        msg = "the X-learner's training rows differ between the S- and T-learner designs."
        raise RuntimeError(msg)
    mu = tuple(predictions[arm][scale["column"]].to_numpy(np.float64) for arm in spec.arms)
    observed, weight = observed_on_scale(train.outcome, scale)
    model = fit_x_learner(
        train.features, train.arms, observed, weight, (mu[0], mu[1]), seed=seed, nthread=nthread
    )
    return model.effect(test.features)


def twin_fold(
    features: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    fold: int,
    *,
    config: Mapping[str, Any],
    nthread: int,
    s_model_dir: str | os.PathLike[str],
    effects_out: str | os.PathLike[str],
) -> pd.DataFrame:
    """Predict one outer fold's test subjects under each arm with each meta-learner.

    The S-learner is the fold's pipeline (``s_model_dir``, fitted by ``train_fold`` with the
    arm among its features); the T-learner is fitted here on the fold's training subjects.

    Writes (Parquet) and returns one row per test row: ``sample_id``, ``subject_id`` (and
    ``landmark``), ``fold``, ``arm`` (received: 0 reference, 1 treated, -1 other), the outcome
    columns, ``propensity_estimated`` and ``<learner>_outcome_0``/``_1`` (the outcome-scale
    prediction under each arm).
    """
    spec = TreatmentSpec.from_config(config)
    if spec is None:
        msg = "the config has no treatment section; twin_fold needs treatment.column and treatment.arms."
        raise ValueError(msg)
    adata = read_features(features)
    split = read_json(splits)
    train_data, test_data = _fold_sets(adata, split, fold)
    train = (raw_input_frame(train_data, dtype=np.float32), outcome_frame(train_data))
    test = (raw_input_frame(test_data, dtype=np.float32), outcome_frame(test_data))
    s_pipeline = OmicsPipeline.load(s_model_dir)
    seed = int(config.get("seed", 42))
    train_design = _baseline_design(s_pipeline, spec, *train)
    test_design = _baseline_design(s_pipeline, spec, *test)
    meta = test_design.meta
    table = meta.copy()
    table["fold"] = fold
    table["arm"] = test_design.arms
    for name, values in test_design.outcome.columns().items():
        table[name] = values
    table["propensity_estimated"] = _propensity(
        train_design, test_design, nthread=nthread, seed=seed
    )
    scale = outcome_scale(s_pipeline.head, spec)
    column = scale["column"]
    learners = [x for x in spec.learners if x in SERVING_LEARNERS]
    if "x" in spec.learners and "t" not in learners:
        learners.append("t")  # the X-learner imputes effects with the T-learner's models
    t_models = None
    for learner in learners:
        models = fit_learner(
            learner,
            *train,
            spec=spec,
            config=config,
            classes=_classes(adata, config),
            nthread=nthread,
            survival_times=split.get("survival"),
            s_pipeline=s_pipeline,
        )
        learner_meta, predictions, _ = TwinModel(spec, learner, models).arm_predictions(*test)
        if not np.array_equal(learner_meta["sample_id"], meta["sample_id"]):
            msg = f"fold {fold}: learner {learner!r} predicted other rows than the pipeline."
            raise RuntimeError(msg)
        for k, arm in enumerate(spec.arms):
            table[f"{learner}_outcome_{k}"] = predictions[arm][column].to_numpy(np.float64)
        if learner == "t":
            t_models = models
    if "x" in spec.learners:
        assert t_models is not None
        effect = _x_learner_effects(
            t_models,
            spec=spec,
            scale=scale,
            train=train_design,
            test=test_design,
            train_inputs=train,
            nthread=nthread,
            seed=seed,
        )
        table["x_outcome_0"] = table["t_outcome_0"]
        table["x_outcome_1"] = table["t_outcome_0"] + effect
    if "t" not in spec.learners:
        table = table.drop(columns=["t_outcome_0", "t_outcome_1"])
    with atomic_output(effects_out) as tmp:
        table.to_parquet(tmp, index=False)
    logger.info("fold %d: what-if predictions of %d rows", fold, len(table))
    return table


def _first_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: its earliest landmark (or first sample)."""
    order = ["landmark"] if "landmark" in table else []
    if order:
        table = table.sort_values(["subject_id", *order], kind="stable")
    return table.drop_duplicates("subject_id", keep="first").reset_index(drop=True)


def _observed(table: pd.DataFrame, scale: Mapping[str, Any]) -> ObservedOutcome:
    lower = bool(scale["lower_is_better"])
    if scale["kind"] == "survival":
        return ObservedOutcome(
            "survival",
            table["time"].to_numpy(np.float64),
            table["event"].to_numpy(np.float64),
            float(scale["horizon"]),
            lower,
        )
    if scale["kind"] == "binary":
        y = (table["label"].astype(str) == str(scale["event_class"])).to_numpy(np.float64)
        return ObservedOutcome("binary", y, lower_is_better=lower)
    return ObservedOutcome(
        "continuous", table["target"].to_numpy(np.float64), lower_is_better=lower
    )


def _policy_propensity(table: pd.DataFrame, spec: TreatmentSpec) -> tuple[NDArray[np.float64], str]:
    arm = table["arm"].to_numpy()
    if spec.propensity is not None:
        return np.full(len(table), spec.propensity), "treatment.propensity (trial design)"
    if spec.randomised:
        return np.full(
            len(table), float((arm == 1).mean())
        ), "observed share of treated (randomised)"
    estimated = table["propensity_estimated"].to_numpy(np.float64)
    if not np.isfinite(estimated).all():
        return np.full(
            len(table), float((arm == 1).mean())
        ), "observed share of treated (no features to estimate it)"
    return np.clip(estimated, *OVERLAP_RANGE), "out-of-fold estimate, clipped to [0.05, 0.95]"


def _overlap(table: pd.DataFrame, *, n_bootstrap: int, level: float, seed: int) -> dict[str, Any]:
    arm = table["arm"].to_numpy()
    e = table["propensity_estimated"].to_numpy(np.float64)
    if not np.isfinite(e).all():
        return {
            "auc": None,
            "note": "no baseline feature besides the arm: propensity not estimated",
        }

    def auc(idx: NDArray[np.int64]) -> dict[str, float]:
        a = arm[idx]
        if len(np.unique(a)) < 2:
            return {"auc": np.nan}
        return {"auc": float(roc_auc_score(a, e[idx]))}

    outside = (e < OVERLAP_RANGE[0]) | (e > OVERLAP_RANGE[1])
    return {
        "auc": bootstrapped(
            auc, len(arm), n_bootstrap=n_bootstrap, confidence_level=level, seed=seed
        )["auc"],
        "fraction_outside": float(outside.mean()),
        "range": list(OVERLAP_RANGE),
        "quantiles_by_arm": {
            str(k): np.quantile(e[arm == k], [0.0, 0.05, 0.5, 0.95, 1.0]).tolist()
            for k in (0, 1)
            if (arm == k).any()
        },
    }


def _learner_metrics(
    table: pd.DataFrame,
    learner: str,
    observed: ObservedOutcome,
    propensity: NDArray[np.float64],
    *,
    spec: TreatmentSpec,
    trial: Mapping[str, Any],
    n_bootstrap: int,
    level: float,
    seed: int,
    refit_effects: Sequence[float] | None = None,
) -> dict[str, Any]:
    arm = table["arm"].to_numpy()
    effect = (table[f"{learner}_outcome_1"] - table[f"{learner}_outcome_0"]).to_numpy(np.float64)
    benefit = observed.sign * effect

    def metrics(idx: NDArray[np.int64]) -> dict[str, float]:
        sub = observed.take(idx)
        c, _ = c_for_benefit(arm[idx], sub, benefit[idx])
        policy = policy_values(arm[idx], sub, benefit[idx], propensity[idx])
        return {
            "average_effect": float(effect[idx].mean()),
            "average_benefit": float(benefit[idx].mean()),
            "c_for_benefit": c,
            "policy_treat_all": policy["treat_all"],
            "policy_treat_none": policy["treat_none"],
            "policy_model": policy["model"],
            "policy_gain_vs_best_fixed": policy["gain_vs_best_fixed"],
            "policy_gain_vs_treat_all": policy["gain_vs_treat_all"],
            "policy_gain_vs_treat_none": policy["gain_vs_treat_none"],
            "fraction_recommended_treated": policy["fraction_treated"],
            "benefit_sd": float(benefit[idx].std()),
        }

    with_ci = bootstrapped(
        metrics, len(arm), n_bootstrap=n_bootstrap, confidence_level=level, seed=seed
    )
    _, n_pairs = c_for_benefit(arm, observed, benefit)
    calibration = benefit_calibration(
        arm, observed, benefit, n_groups=spec.n_groups, confidence_level=level
    )
    if refit_effects is not None and len(refit_effects) > 1:
        refit_sd = float(np.std(refit_effects, ddof=1))
        for name, sign in (("average_effect", 1.0), ("average_benefit", observed.sign)):
            with_ci[name] = _with_refit_spread(with_ci[name], refit_sd * abs(sign), level)
    model_ate = with_ci["average_benefit"]
    trial_benefit = trial["benefit"]
    agree = bool(
        model_ate["lower"] <= trial_benefit["upper"]
        and trial_benefit["lower"] <= model_ate["upper"]
    )
    c = with_ci["c_for_benefit"]
    spread = calibration["top_minus_bottom"]
    heterogeneity = bool(np.isfinite(c["lower"]) and c["lower"] > 0.5)
    return {
        "metrics": with_ci,
        "average_interval": "subject bootstrap and bootstrap refits"
        if refit_effects is not None and len(refit_effects) > 1
        else "subject bootstrap only (no refits)",
        "n_pairs": n_pairs,
        "calibration": calibration,
        "agrees_with_trial": agree,
        "heterogeneity_evidence": heterogeneity,
        "heterogeneity_statement": _heterogeneity_statement(heterogeneity, c, spread),
    }


def _with_refit_spread(
    interval: Mapping[str, float], refit_sd: float, level: float
) -> dict[str, float]:
    """A normal interval whose variance adds the refits' to the subject bootstrap's."""
    z = float(stats.norm.ppf(0.5 + level / 2))
    sampling_se = (interval["upper"] - interval["lower"]) / (2 * z)
    se = float(np.hypot(sampling_se, refit_sd))
    return {
        "estimate": interval["estimate"],
        "lower": interval["estimate"] - z * se,
        "upper": interval["estimate"] + z * se,
        "sampling_lower": interval["lower"],
        "sampling_upper": interval["upper"],
        "refit_sd": refit_sd,
    }


def _heterogeneity_statement(
    evidence: bool, c: Mapping[str, float], spread: Mapping[str, float]
) -> str:
    c_text = f"c-for-benefit {c['estimate']:.3f} [{c['lower']:.3f}, {c['upper']:.3f}]"
    spread_text = (
        f"observed benefit in the highest minus the lowest group of predicted benefit "
        f"{spread['estimate']:+.3f} [{spread['lower']:+.3f}, {spread['upper']:+.3f}]"
    )
    if evidence:
        return (
            f"Evidence that treatment benefit differs between patients: {c_text} is above 0.5; "
            f"{spread_text}."
        )
    return (
        f"The evidence for heterogeneity of treatment benefit is weak: {c_text} includes 0.5 "
        f"(chance); {spread_text}. Individual predicted differences should not be used to "
        "choose a patient's treatment; the average effect is the better guide."
    )


def _warnings(
    spec: TreatmentSpec, overlap: Mapping[str, Any], learners: Mapping[str, Any]
) -> list[str]:
    out = []
    auc = overlap.get("auc")
    if not spec.randomised:
        out.append(
            "treatment.randomised is false: the predicted effects are causal only if no "
            "unmeasured confounder drives both the arm and the outcome."
        )
    if auc:
        if spec.randomised and auc["lower"] > 0.6:
            out.append(
                f"The arm is predictable from the baseline features (out-of-fold AUC "
                f"{auc['estimate']:.2f} [{auc['lower']:.2f}, {auc['upper']:.2f}]), which "
                "randomisation should prevent: check treatment.randomised and the treatment column."
            )
        if overlap["fraction_outside"] > 0.1:
            out.append(
                f"Poor overlap: {100 * overlap['fraction_outside']:.0f}% of subjects have an "
                f"estimated propensity outside [{OVERLAP_RANGE[0]}, {OVERLAP_RANGE[1]}]; the "
                "model extrapolates their effect under the arm they could hardly have received."
            )
    for learner, result in learners.items():
        if not result["agrees_with_trial"]:
            out.append(
                f"{learner.upper()}-learner: the average predicted benefit disagrees with the "
                "trial's own contrast beyond their confidence intervals."
            )
    return out


def evaluate_twin(
    effect_files: Sequence[str | os.PathLike[str]],
    *,
    state: str | os.PathLike[str],
    config: Mapping[str, Any],
    metrics_out: str | os.PathLike[str],
    plots: Mapping[str, str | os.PathLike[str]],
    twin_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Pool the folds' what-if predictions and evaluate them against the randomised arms.

    One row per subject is used (its earliest landmark). ``state`` is a fold pipeline's
    ``state.json`` (its head sets the outcome scale). ``twin_dir`` (the final twin of
    :func:`train_twin`) supplies each learner's spread of the average effect over bootstrap
    refits, which widens the average effect's interval: the subject bootstrap of out-of-fold
    predictions alone covers the sampling of the evaluated subjects, not the refitting of the
    model. Writes ``metrics_out`` (JSON) and the :data:`TWIN_PLOTS`.
    """
    spec = TreatmentSpec.from_config(config)
    assert spec is not None
    head = head_from_json(read_json(state)["head"])
    scale = outcome_scale(head, spec)
    evaluation = config.get("evaluate", {})
    n_bootstrap = int(evaluation.get("n_bootstrap", 1000))
    level = float(evaluation.get("confidence_level", 0.95))
    seed = int(config.get("seed", 42))
    table = pd.concat([pd.read_parquet(p) for p in effect_files], ignore_index=True)
    table = _first_rows(table)
    excluded = int((table["arm"] < 0).sum())
    table = table[table["arm"] >= 0].reset_index(drop=True)
    observed = _observed(table, scale)
    arm = table["arm"].to_numpy()
    trial = trial_contrast(arm, observed, confidence_level=level)
    propensity, propensity_source = _policy_propensity(table, spec)
    overlap = _overlap(table, n_bootstrap=n_bootstrap, level=level, seed=seed)
    refits = {}
    if twin_dir is not None:
        refits = read_json(Path(twin_dir) / TWIN_FILE)["info"].get("average_effect_refits", {})
    learners = {
        learner: _learner_metrics(
            table,
            learner,
            observed,
            propensity,
            spec=spec,
            trial=trial,
            n_bootstrap=n_bootstrap,
            level=level,
            seed=seed,
            refit_effects=refits.get(learner),
        )
        for learner in spec.learners
    }
    served = learners[spec.served]
    result = {
        "treatment": spec.to_json(),
        "outcome_scale": scale,
        "landmark": float(table["landmark"].min()) if "landmark" in table else None,
        "n_subjects": len(table),
        "n_subjects_by_arm": {a: int((arm == k).sum()) for k, a in enumerate(spec.arms)},
        "n_subjects_excluded_other_arm": excluded,
        "confidence_level": level,
        "n_bootstrap": n_bootstrap,
        "trial_contrast": trial,
        "policy_propensity": propensity_source,
        "overlap": overlap,
        "learners": learners,
        "served_learner": spec.served,
        "heterogeneity_evidence": served["heterogeneity_evidence"],
        "heterogeneity_statement": served["heterogeneity_statement"],
        "assumptions": ASSUMPTIONS,
        "warnings": _warnings(spec, overlap, learners),
    }
    write_json(metrics_out, result)
    _plot_all(table, result, observed, plots)
    for learner, res in learners.items():
        m = res["metrics"]
        logger.info(
            "%s-learner: average benefit %.4f [%.4f, %.4f] (trial %.4f [%.4f, %.4f]); c-for-benefit %.3f [%.3f, %.3f]",
            learner,
            m["average_benefit"]["estimate"],
            m["average_benefit"]["lower"],
            m["average_benefit"]["upper"],
            trial["benefit"]["estimate"],
            trial["benefit"]["lower"],
            trial["benefit"]["upper"],
            m["c_for_benefit"]["estimate"],
            m["c_for_benefit"]["lower"],
            m["c_for_benefit"]["upper"],
        )
    return result


def _plot_all(
    table: pd.DataFrame,
    result: Mapping[str, Any],
    observed: ObservedOutcome,
    plots: Mapping[str, str | os.PathLike[str]],
) -> None:
    import matplotlib  # noqa: PLC0415 - plotting only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    learners = result["learners"]
    arms = result["treatment"]["arms"]
    label = result["outcome_scale"]["label"]
    trial = result["trial_contrast"]["benefit"]

    # Calibration for benefit, one panel per learner.
    fig, axes = plt.subplots(1, len(learners), figsize=(4.6 * len(learners), 4.2), squeeze=False)
    for ax, (learner, res) in zip(axes[0], learners.items(), strict=True):
        groups = res["calibration"]["groups"]
        x = np.array([g["predicted"] for g in groups])
        y = np.array([g["observed"] for g in groups])
        err = np.array(
            [
                [g["observed"] - g["lower"] for g in groups],
                [g["upper"] - g["observed"] for g in groups],
            ]
        )
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, color="C0", label="groups (95% CI)")
        lims = (
            np.nanmin(np.concatenate([x, y - err[0]])),
            np.nanmax(np.concatenate([x, y + err[1]])),
        )
        ax.plot(lims, lims, "--", color="grey", lw=1, label="ideal")
        ax.axhline(0, color="black", lw=0.6)
        c = res["metrics"]["c_for_benefit"]
        ax.set_title(
            f"{learner.upper()}-learner: c-for-benefit {c['estimate']:.2f} [{c['lower']:.2f}, {c['upper']:.2f}]",
            fontsize=9,
        )
        ax.set_xlabel("predicted benefit (group mean)")
        ax.set_ylabel(f"observed benefit ({arms[1]} vs {arms[0]})")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Calibration for benefit: fall in {label}"
        if observed.lower_is_better
        else f"Calibration for benefit: rise in {label}",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, plots["twin_calibration"])
    plt.close(fig)

    # Policy values.
    fig, ax = plt.subplots(figsize=(5.5 + 1.2 * len(learners), 4))
    names, values, lows, highs = [], [], [], []
    first = next(iter(learners.values()))["metrics"]
    for name, key in (
        (f"treat none ({arms[0]})", "policy_treat_none"),
        (f"treat all ({arms[1]})", "policy_treat_all"),
    ):
        names.append(name)
        values.append(first[key]["estimate"])
        lows.append(first[key]["lower"])
        highs.append(first[key]["upper"])
    for learner, res in learners.items():
        m = res["metrics"]["policy_model"]
        share = res["metrics"]["fraction_recommended_treated"]["estimate"]
        names.append(f"{learner.upper()}: treat if benefit > 0\n({100 * share:.0f}% treated)")
        values.append(m["estimate"])
        lows.append(m["lower"])
        highs.append(m["upper"])
    v = np.array(values)
    ax.bar(range(len(v)), v, color=["grey", "grey"] + [f"C{i}" for i in range(len(learners))])
    ax.errorbar(
        range(len(v)),
        v,
        yerr=[v - np.array(lows), np.array(highs) - v],
        fmt="none",
        color="black",
        capsize=4,
    )
    ax.set_xticks(range(len(v)), names, fontsize=8)
    ax.set_ylabel(label)
    ax.set_title("Policy value (inverse-probability weighted, 95% CI)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, plots["twin_policy"])
    plt.close(fig)

    # Overlap.
    fig, ax = plt.subplots(figsize=(5.5, 4))
    e = table["propensity_estimated"].to_numpy(np.float64)
    if np.isfinite(e).all():
        bins = np.linspace(0, 1, 31)
        for k, arm_name in enumerate(arms):
            ax.hist(e[table["arm"].to_numpy() == k], bins=bins, alpha=0.55, label=arm_name)
        auc = result["overlap"]["auc"]
        ax.set_title(
            f"Estimated propensity by arm (out-of-fold AUC {auc['estimate']:.2f})", fontsize=10
        )
        for edge in OVERLAP_RANGE:
            ax.axvline(edge, ls="--", color="grey", lw=1)
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5,
            0.5,
            "propensity not estimated\n(no baseline feature besides the arm)",
            ha="center",
            va="center",
        )
    ax.set_xlabel(f"P({arms[1]} | baseline features)")
    ax.set_ylabel("subjects")
    fig.tight_layout()
    save_figure(fig, plots["twin_overlap"])
    plt.close(fig)

    # Distribution of predicted individual benefit, with the average and the trial contrast.
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (learner, res) in enumerate(learners.items()):
        benefit = (
            observed.sign
            * (table[f"{learner}_outcome_1"] - table[f"{learner}_outcome_0"]).to_numpy()
        )
        if np.ptp(benefit) <= 1e-9 * max(1.0, float(np.abs(benefit).max())):
            # One benefit for all up to rounding: 30 bins over a ~1e-16 range raise in numpy.
            benefit = np.full_like(benefit, benefit.mean())
        ax.hist(
            benefit,
            bins=30,
            alpha=0.45,
            color=f"C{i}",
            label=f"{learner.upper()}-learner, individual",
        )
        ate = res["metrics"]["average_benefit"]
        ax.axvline(ate["estimate"], color=f"C{i}", lw=2)
        ax.axvspan(ate["lower"], ate["upper"], color=f"C{i}", alpha=0.12)
    ax.axvline(
        trial["estimate"],
        color="black",
        lw=2,
        label="trial (Kaplan-Meier)" if observed.kind == "survival" else "trial contrast",
    )
    ax.axvspan(trial["lower"], trial["upper"], color="black", alpha=0.1)
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"predicted benefit of {arms[1]} over {arms[0]} ({label})")
    ax.set_ylabel("subjects")
    ax.set_title("Predicted benefit (out-of-fold); lines: averages with 95% CI", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, plots["twin_effects"])
    plt.close(fig)


def _refit_average_effects(
    twin: TwinModel, frame: pd.DataFrame, outcomes: pd.DataFrame
) -> list[float]:
    """Each bootstrap refit's average effect over the subjects (earliest landmark row each)."""
    meta, _, members = twin.arm_predictions(frame, outcomes)
    first = _first_rows(meta.assign(row=np.arange(len(meta))))["row"].to_numpy()
    reference, treated = twin.spec.arms
    effects = members[treated][first] - members[reference][first]
    return effects.mean(axis=0).tolist()


def train_twin(
    features: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    *,
    config: Mapping[str, Any],
    nthread: int,
    model_dir: str | os.PathLike[str],
    twin_dir: str | os.PathLike[str],
) -> TwinModel:
    """Fit the serving learner and its bootstrap ensemble on all development subjects.

    ``model_dir`` is the final pipeline (the S-learner); the twin is written to ``twin_dir``
    whole or not at all.
    """
    spec = TreatmentSpec.from_config(config)
    assert spec is not None
    adata = read_features(features)
    split = read_json(splits)
    development = _subset(adata, split["development"])
    frame, outcomes = raw_input_frame(development, dtype=np.float32), outcome_frame(development)
    common = {
        "spec": spec,
        "config": config,
        "classes": _classes(adata, config),
        "nthread": nthread,
        "survival_times": split.get("survival"),
        "s_pipeline": OmicsPipeline.load(model_dir),
    }
    twin = fit_twin(frame, outcomes, **common)
    refits = {spec.served: _refit_average_effects(twin, frame, outcomes)}
    for learner in spec.learners[1:]:
        if learner not in SERVING_LEARNERS:
            continue  # the X-learner has no bootstrap refits: its interval is the subject bootstrap's
        models = fit_learner(learner, frame, outcomes, **common)
        members = bootstrap_members(
            models,
            frame,
            outcomes,
            spec=spec,
            n_members=spec.n_bootstrap,
            seed=int(config.get("seed", 42)),
            nthread=nthread,
        )
        other = TwinModel(spec, learner, models, members)
        refits[learner] = _refit_average_effects(other, frame, outcomes)
    twin.info["average_effect_refits"] = refits
    target = Path(twin_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".twin-", dir=target.parent))
    try:
        twin.save(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return twin
