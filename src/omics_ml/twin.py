"""A patient's digital twin: predicted trajectories under each treatment arm.

The ``treatment`` config section names the raw input column that holds the arm
(``modality:feature``, e.g. ``clinical:arm``) and the arms, the first being the reference
(control). Two XGBoost meta-learners predict each arm's trajectory:

- **S-learner** (``s``): the pipeline itself, trained with the arm as one of its features; a
  patient's what-if prediction sets the arm column to each arm in turn;
- **T-learner** (``t``): one pipeline per arm, each fitted on that arm's training subjects only,
  its own preprocessing included; arm ``a``'s prediction comes from arm ``a``'s pipeline.

A third, the X-learner (``x``, :mod:`omics_ml.x_learner`), gives effects but no per-arm
trajectories: it is evaluated out of fold, never served.

:class:`TwinModel` holds the learner that serves what-if predictions (the first of
``treatment.learners``) plus an ensemble of boosters refitted on bootstrap resamples of the
training subjects (the preprocessing and rounds frozen), whose spread gives each prediction
and each effect its uncertainty band. Everything is fitted on training subjects only; nothing
is pickled (JSON + XGBoost UBJ).

Effects are read on one outcome scale (:func:`outcome_scale`): the risk of the event by a
horizon (survival), the probability of an event class (classification) or the predicted value
(regression). ``effect`` is treated minus control; ``benefit`` is the effect signed so that a
positive value favours the treated arm.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import xgboost as xgb
from numpy.typing import NDArray

from omics_ml.arms import arm_codes_of, canonical_arm
from omics_ml.evaluate import subject_resample
from omics_ml.io import atomic_output, read_json, write_json
from omics_ml.pipeline import OmicsPipeline, fit_pipeline
from omics_ml.split import survival_evaluation_times
from omics_ml.tasks import (
    ClassificationHead,
    Outcome,
    RegressionHead,
    SurvivalHead,
    TaskHead,
    head_from_json,
    horizon_label,
)

__all__ = [
    "LEARNERS",
    "SERVING_LEARNERS",
    "TWIN_FILE",
    "TreatmentSpec",
    "TwinModel",
    "arm_codes",
    "counterfactual_frame",
    "fit_learner",
    "fit_twin",
    "outcome_scale",
    "subject_arms",
    "treatment_feature_mask",
]

logger = logging.getLogger(__name__)

#: Meta-learners: S (one model, arm as a feature), T (one model per arm) and X (effects
#: learned from the T-learner's cross-arm imputations; evaluated only, see omics_ml.x_learner).
LEARNERS = ("t", "s", "x")
#: Learners that predict whole trajectories per arm, and so can serve what-if predictions.
SERVING_LEARNERS = ("t", "s")
TWIN_FILE = "twin.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class TreatmentSpec:
    """The ``treatment`` config section.

    Attributes
    ----------
    column : str
        Raw input column holding each sample's arm, ``modality:feature``.
    arms : tuple of str
        The two arms; the first is the reference (control), the second the treated arm.
    learners : tuple of str
        Meta-learners evaluated out of fold; the first also serves what-if predictions.
    randomised : bool
        Whether the arm was assigned at random (a trial). False makes every effect rest on
        "no unmeasured confounding", which the report says.
    propensity : float or None
        The trial's probability of the treated arm; None takes the observed fraction
        (randomised) or an out-of-fold estimate (not randomised) for policy values.
    horizon : float or None
        Survival: the horizon of the risk benefit is measured on (default: the last of the
        model's horizons).
    event_class : str or None
        Classification: the class whose probability is the outcome (default: the second of
        two classes).
    lower_is_better : bool or None
        Direction of the outcome (default: True for risk and event probability, False for a
        regression value).
    n_bootstrap : int
        Bootstrap refits behind each what-if uncertainty band.
    n_groups : int
        Groups of predicted benefit for calibration for benefit.
    interval_level : float
        Coverage of the what-if bands.
    """

    column: str
    arms: tuple[str, str]
    learners: tuple[str, ...] = SERVING_LEARNERS
    randomised: bool = True
    propensity: float | None = None
    horizon: float | None = None
    event_class: str | None = None
    lower_is_better: bool | None = None
    n_bootstrap: int = 50
    n_groups: int = 4
    interval_level: float = 0.95

    def __post_init__(self) -> None:
        if ":" not in self.column:
            msg = f"treatment.column {self.column!r} must name a raw input column as modality:feature (e.g. clinical:arm)."
            raise ValueError(msg)
        if len(self.arms) != 2 or self.arms[0] == self.arms[1]:
            msg = f"treatment.arms must be two different arms (reference first), got {list(self.arms)}."
            raise ValueError(msg)
        unknown = [x for x in self.learners if x not in LEARNERS]
        if unknown or not self.learners:
            msg = f"treatment.learners {list(self.learners)}: choose from {list(LEARNERS)}."
            raise ValueError(msg)
        if self.learners[0] not in SERVING_LEARNERS:
            msg = f"treatment.learners {list(self.learners)}: the first learner serves what-if predictions and must be one of {list(SERVING_LEARNERS)} (the X-learner gives effects, not trajectories); list x after it."
            raise ValueError(msg)
        if self.propensity is not None and not 0 < self.propensity < 1:
            msg = f"treatment.propensity must be in (0, 1), got {self.propensity}."
            raise ValueError(msg)

    @property
    def served(self) -> str:
        """The learner behind what-if predictions."""
        return self.learners[0]

    @property
    def modality(self) -> str:
        return self.column.partition(":")[0]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TreatmentSpec | None:
        """The spec of a config's ``treatment`` section (None without one)."""
        section = config.get("treatment")
        if not section:
            return None
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(section) - known)
        if unknown:
            msg = f"treatment: unknown keys {unknown}; known keys are {sorted(known)}."
            raise ValueError(msg)
        kwargs = dict(section)
        kwargs["arms"] = tuple(canonical_arm(a) for a in section.get("arms", ()))
        if "learners" in kwargs:
            kwargs["learners"] = tuple(str(x).lower() for x in kwargs["learners"])
        for name in ("propensity", "horizon", "interval_level"):
            if kwargs.get(name) is not None:
                kwargs[name] = float(kwargs[name])
        if kwargs.get("event_class") is not None:
            kwargs["event_class"] = str(kwargs["event_class"])
        spec = cls(**kwargs)
        if spec.modality not in config.get("modalities", {}):
            msg = f"treatment.column {spec.column!r}: {spec.modality!r} is not a modality of the config; use modality:feature of a configured modality."
            raise ValueError(msg)
        return spec

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in self.__dataclass_fields__},
            "arms": list(self.arms),
            "learners": list(self.learners),
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> TreatmentSpec:
        return cls(
            **{
                **dict(state),
                "arms": tuple(state["arms"]),
                "learners": tuple(state["learners"]),
            }
        )


def arm_codes(values: pd.Series | Sequence[Any], spec: TreatmentSpec) -> NDArray[np.int64]:
    """0 for the reference arm, 1 for the treated arm, -1 for missing or another value."""
    return arm_codes_of(values, spec.arms)


def _arm_value(pipeline: OmicsPipeline, spec: TreatmentSpec, arm: str) -> Any:
    """The raw value of ``arm`` as the pipeline reads the column (text or number)."""
    if spec.column in pipeline.text_columns:
        return arm
    try:
        return float(arm)
    except ValueError:
        msg = f"treatment.column {spec.column!r} is numeric in the model, but arm {arm!r} is not a number."
        raise ValueError(msg) from None


def counterfactual_frame(
    frame: pd.DataFrame, pipeline: OmicsPipeline, spec: TreatmentSpec, arm: str
) -> pd.DataFrame:
    """``frame`` with every sample's treatment column set to ``arm``."""
    out = frame.copy(deep=False)
    out[spec.column] = _arm_value(pipeline, spec, arm)
    return out


def treatment_feature_mask(names: Sequence[str], spec: TreatmentSpec) -> NDArray[np.bool_]:
    """Design columns derived from the treatment column (one-hot levels, landmark summaries)."""
    column = spec.column
    return np.array(
        [n == column or n.startswith((f"{column}=", f"{column}@")) for n in names], dtype=bool
    )


def outcome_scale(head: TaskHead, spec: TreatmentSpec) -> dict[str, Any]:
    """The prediction column effects are measured on, its meaning and direction.

    Returns
    -------
    dict
        ``column`` (of :meth:`OmicsPipeline.predict_frame`), ``kind`` (``survival``, ``binary``,
        ``continuous``), ``lower_is_better``, ``horizon`` (survival), ``event_class``
        (classification) and ``label`` (a readable name).
    """
    if isinstance(head, SurvivalHead):
        horizons = [float(h) for h in head.horizons or []]
        horizon = horizons[-1] if spec.horizon is None else spec.horizon
        if not any(np.isclose(horizon, h) for h in horizons):
            msg = f"treatment.horizon {horizon:g} is not one of the model's survival horizons {horizons}; add it to survival.horizons."
            raise ValueError(msg)
        lower = True if spec.lower_is_better is None else spec.lower_is_better
        return {
            "column": f"risk_at_{horizon_label(horizon)}",
            "kind": "survival",
            "horizon": horizon,
            "lower_is_better": lower,
            "label": f"risk of the event by {horizon:g}",
        }
    if isinstance(head, ClassificationHead):
        classes = list(head.classes)
        if spec.event_class is None and len(classes) != 2:
            msg = f"treatment.event_class is needed with {len(classes)} classes: name the class whose probability the treatment should change."
            raise ValueError(msg)
        event = classes[1] if spec.event_class is None else spec.event_class
        if event not in classes:
            msg = f"treatment.event_class {event!r} is not a class of the model ({classes})."
            raise ValueError(msg)
        lower = True if spec.lower_is_better is None else spec.lower_is_better
        return {
            "column": f"prob_{event}",
            "kind": "binary",
            "event_class": event,
            "lower_is_better": lower,
            "label": f"probability of {event}",
        }
    assert isinstance(head, RegressionHead)
    lower = False if spec.lower_is_better is None else spec.lower_is_better
    return {
        "column": "predicted",
        "kind": "continuous",
        "lower_is_better": lower,
        "label": "predicted value",
    }


def subject_arms(frame: pd.DataFrame, spec: TreatmentSpec) -> pd.Series:
    """Each sample's arm code (:func:`arm_codes`), the same for every visit of a subject.

    Raises ``ValueError`` when the column is absent or a subject changes arm between visits.
    """
    if spec.column not in frame:
        msg = f"treatment.column {spec.column!r} is not an input column (known columns of modality {spec.modality!r} are the feature names of its file)."
        raise ValueError(msg)
    codes = pd.Series(arm_codes(frame[spec.column], spec), index=frame.index)
    if "subject_id" in frame:
        subjects = frame["subject_id"].astype(str)
        per = pd.DataFrame({"s": subjects.to_numpy(), "c": codes.to_numpy()})
        per = per[per["c"] >= 0]
        n_arms = per.groupby("s")["c"].nunique()
        switched = n_arms.index[n_arms.to_numpy() > 1]
        if len(switched):
            msg = f"treatment.column {spec.column!r}: subjects {switched[:5].tolist()} change arm between visits; a what-if model needs one arm per subject."
            raise ValueError(msg)
        first = per.groupby("s")["c"].first()
        codes = pd.Series(
            first.reindex(subjects.to_numpy()).fillna(-1).to_numpy(np.int64), index=frame.index
        )
    return codes


def fit_learner(
    learner: str,
    frame: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    spec: TreatmentSpec,
    config: Mapping[str, Any],
    classes: Sequence[str] | None,
    nthread: int,
    survival_times: Mapping[str, Sequence[float]] | None,
    s_pipeline: OmicsPipeline | None = None,
) -> dict[str, OmicsPipeline]:
    """The pipelines of one meta-learner, fitted on the training rows given.

    Returns ``{"s": pipeline}`` (``s_pipeline`` if given, else fitted with the arm as a
    feature) or ``{arm: pipeline}`` for each arm (T-learner, each on its own arm's subjects).
    """
    if learner not in SERVING_LEARNERS:
        msg = f"learner {learner!r} has no per-arm pipelines; fit_learner fits {list(SERVING_LEARNERS)}."
        raise ValueError(msg)
    codes = subject_arms(frame, spec).to_numpy()
    for k, arm in enumerate(spec.arms):
        if not (codes == k).any():
            msg = f"treatment arm {arm!r} has no training subject in column {spec.column!r}; check treatment.arms against the data."
            raise ValueError(msg)
    common = {
        "config": config,
        "classes": classes,
        "nthread": nthread,
        "survival_times": survival_times,
    }
    if learner == "s":
        if s_pipeline is not None:
            return {"s": s_pipeline}
        keep = codes >= 0
        return {"s": fit_pipeline(frame[keep], outcomes[keep], **common)}
    if survival_times is None and config.get("task") == "survival":
        # Without them each arm's pipeline would set its own grid (and default horizons) from
        # its own subjects, and the arms' curves and risks would not be read at the same times.
        common["survival_times"] = _shared_survival_times(
            frame[codes >= 0], outcomes[codes >= 0], config
        )
    models = {}
    for k, arm in enumerate(spec.arms):
        rows = codes == k
        logger.info("T-learner: fitting arm %s on %d samples", arm, int(rows.sum()))
        models[arm] = fit_pipeline(
            frame[rows].reset_index(drop=True), outcomes[rows].reset_index(drop=True), **common
        )
    return models


def _shared_survival_times(
    frame: pd.DataFrame, outcomes: pd.DataFrame, config: Mapping[str, Any]
) -> dict[str, list[float]]:
    """Grid and horizons of the survival curves from the training rows of both arms
    (:func:`omics_ml.split.survival_evaluation_times`, as the split step fixes them)."""
    cohort = pl.DataFrame(
        {
            "sample_id": frame["sample_id"].astype(str).to_numpy(),
            "subject_id": outcomes["subject_id"].astype(str).to_numpy(),
            "time": outcomes["time"].to_numpy(np.float64),
            "event": outcomes["event"].to_numpy(np.int8),
        }
    )
    survival = config.get("survival") or {}
    return survival_evaluation_times(
        cohort,
        cohort["sample_id"].to_list(),
        landmarks=(config.get("longitudinal") or {}).get("landmarks"),
        horizons=survival.get("horizons"),
        n_points=int(survival.get("time_grid_points", 50)),
    )


@dataclass
class TwinModel:
    """What-if predictions of one meta-learner, with bootstrap uncertainty.

    Attributes
    ----------
    spec : TreatmentSpec
    learner : str
        ``s`` or ``t``.
    models : dict of str to OmicsPipeline
        ``{"s": pipeline}`` or ``{arm: pipeline}``.
    members : list of dict
        Bootstrap refits: per member, per model key, a ``(booster, head)`` pair that replaces
        the model's own.
    info : dict
        Fitting facts.
    """

    spec: TreatmentSpec
    learner: str
    models: dict[str, OmicsPipeline]
    members: list[dict[str, tuple[xgb.Booster, TaskHead]]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> OmicsPipeline:
        """A pipeline of the learner (its head and input contract are the twin's)."""
        return next(iter(self.models.values()))

    def _key(self, arm: str) -> str:
        return "s" if self.learner == "s" else arm

    def scale(self) -> dict[str, Any]:
        return outcome_scale(self.reference.head, self.spec)

    def arm_predictions(
        self, frame: pd.DataFrame, outcomes: pd.DataFrame | None = None
    ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict[str, NDArray[np.float64]]]:
        """Per arm: the point predictions and every bootstrap member's outcome-scale value.

        Returns
        -------
        meta : pandas.DataFrame
            The rows (``sample_id``; ``subject_id``, ``landmark`` for longitudinal models).
        predictions : dict of arm to DataFrame
            The task's prediction columns under each arm.
        members : dict of arm to ndarray of shape (n_rows, n_members)
            The outcome-scale value of each bootstrap member.
        """
        meta, predictions, members = self._arm_outputs(frame, outcomes, [self.scale()["column"]])
        return meta, predictions, {arm: values[:, 0, :] for arm, values in members.items()}

    def _arm_outputs(
        self, frame: pd.DataFrame, outcomes: pd.DataFrame | None, columns: Sequence[str]
    ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict[str, NDArray[np.float64]]]:
        """As :meth:`arm_predictions`, with the members' values of several prediction
        ``columns``: per arm an array of shape (n_rows, len(columns), n_members)."""
        meta = None
        predictions: dict[str, pd.DataFrame] = {}
        members: dict[str, NDArray[np.float64]] = {}
        for arm in self.spec.arms:
            key = self._key(arm)
            model = self.models[key]
            arm_meta, features, _ = model.design(
                counterfactual_frame(frame, model, self.spec, arm), outcomes
            )
            if meta is None:
                meta = arm_meta
            elif not np.array_equal(meta["sample_id"].to_numpy(), arm_meta["sample_id"].to_numpy()):
                msg = "the arms' models produced different rows for the same input."
                raise RuntimeError(msg)
            predictions[arm] = model.head.predict(model.booster, features)
            values = [
                head.predict(booster, features)[list(columns)].to_numpy(np.float64)
                for booster, head in (member[key] for member in self.members)
            ]
            members[arm] = (
                np.stack(values, axis=2) if values else np.zeros((len(arm_meta), len(columns), 0))
            )
        assert meta is not None
        return meta, predictions, members

    def predict_what_if(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each patient's prediction under each arm, and the difference from the reference arm.

        Parameters
        ----------
        frame : pandas.DataFrame
            Raw input table, as for :meth:`OmicsPipeline.predict_frame` (the treatment column
            may be absent: it is set to each arm).

        Returns
        -------
        pandas.DataFrame
            One row per patient (per landmark reached) and arm: ``sample_id`` (and
            ``subject_id``, ``landmark``), ``arm``, the task's prediction columns, ``outcome``
            (the outcome-scale value) with ``outcome_lower``/``outcome_upper``, and relative
            to the reference arm ``effect`` (this arm minus reference) with
            ``effect_lower``/``effect_upper``, ``benefit`` (positive favours this arm) and
            ``prob_benefit`` (share of bootstrap refits that predict a benefit); those are 0
            and NaN on the reference arm's rows. Survival models add the band of every point
            of the curve, ``surv_<t>_lower``/``surv_<t>_upper``. The bands are percentile
            intervals of the bootstrap refits.
        """
        scale = self.scale()
        sign = -1.0 if scale["lower_is_better"] else 1.0
        # Survival: every point of each arm's curve gets its band too.
        curve = [c for c in self.reference.head.output_columns() if c[0].startswith("surv_")]
        columns = [scale["column"], *(name for name, _ in curve)]
        meta, predictions, outputs = self._arm_outputs(frame, None, columns)
        members = {arm: values[:, 0, :] for arm, values in outputs.items()}
        level = self.spec.interval_level
        q = [50 * (1 - level), 50 * (1 + level)]
        reference = self.spec.arms[0]
        base = predictions[reference][scale["column"]].to_numpy(np.float64)
        blocks = []
        for arm in self.spec.arms:
            point = predictions[arm][scale["column"]].to_numpy(np.float64)
            block = pd.concat([meta, predictions[arm]], axis=1)
            block.insert(len(meta.columns), "arm", arm)
            block["outcome"] = point
            block["outcome_lower"], block["outcome_upper"] = _percentiles(members[arm], q)
            if len(columns) > 1 and outputs[arm].shape[2]:
                low, high = np.percentile(outputs[arm][:, 1:, :], q, axis=2)
                bands = {
                    **{f"{c}_lower": low[:, j] for j, c in enumerate(columns[1:])},
                    **{f"{c}_upper": high[:, j] for j, c in enumerate(columns[1:])},
                }
                block = pd.concat([block, pd.DataFrame(bands, index=block.index)], axis=1)
            diff = members[arm] - members[reference]
            block["effect"] = point - base
            block["effect_lower"], block["effect_upper"] = _percentiles(diff, q)
            block["benefit"] = sign * (point - base)
            with np.errstate(invalid="ignore"):
                block["prob_benefit"] = (sign * diff > 0).mean(axis=1) if diff.shape[1] else np.nan
            if arm == reference:
                block[["effect_lower", "effect_upper", "prob_benefit"]] = np.nan
            blocks.append(block)
        out = pd.concat(blocks, ignore_index=True)
        order = np.argsort(np.tile(np.arange(len(meta)), len(blocks)), kind="stable")
        return out.iloc[order].reset_index(drop=True)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``twin.json``, each model's pipeline directory and the members' boosters."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        keys = list(self.models)
        for i, key in enumerate(keys):
            self.models[key].save(directory / f"model_{i}")
        heads = []
        for b, member in enumerate(self.members):
            heads.append({})
            for i, key in enumerate(keys):
                booster, head = member[key]
                with atomic_output(directory / f"member_{b}_{i}.ubj") as tmp:
                    booster.save_model(tmp)
                heads[-1][key] = head.to_json()
        write_json(
            directory / TWIN_FILE,
            {
                "format_version": _FORMAT_VERSION,
                "spec": self.spec.to_json(),
                "learner": self.learner,
                "model_keys": keys,
                "member_heads": heads,
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TwinModel:
        """Load a twin written by :meth:`save`."""
        directory = Path(directory)
        state = read_json(directory / TWIN_FILE)
        if state.get("format_version") != _FORMAT_VERSION:
            msg = f"{directory / TWIN_FILE}: format_version {state.get('format_version')!r} is not {_FORMAT_VERSION}; retrain."
            raise ValueError(msg)
        keys = list(state["model_keys"])
        models = {key: OmicsPipeline.load(directory / f"model_{i}") for i, key in enumerate(keys)}
        members = []
        for b, heads in enumerate(state["member_heads"]):
            member = {}
            for i, key in enumerate(keys):
                booster = xgb.Booster()
                booster.load_model(directory / f"member_{b}_{i}.ubj")
                member[key] = (booster, head_from_json(heads[key]))
            members.append(member)
        return cls(
            spec=TreatmentSpec.from_json(state["spec"]),
            learner=state["learner"],
            models=models,
            members=members,
            info=state.get("info", {}),
        )


def _percentiles(values: NDArray[np.float64], q: list[float]) -> tuple[Any, Any]:
    if values.shape[1] == 0:
        return np.nan, np.nan
    low, high = np.percentile(values, q, axis=1)
    return low, high


def bootstrap_members(
    models: Mapping[str, OmicsPipeline],
    frame: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    spec: TreatmentSpec,
    n_members: int,
    seed: int,
    nthread: int,
) -> list[dict[str, tuple[xgb.Booster, TaskHead]]]:
    """Boosters (and Cox baselines) refitted on bootstrap resamples of training subjects.

    Each model keeps its fitted preprocessing, selection, parameters and number of rounds;
    only the booster, and for Cox models the Breslow baseline, is refitted on a resample of
    its own training subjects (whole subjects drawn with replacement). Classification and
    regression heads keep their calibration.
    """
    codes = subject_arms(frame, spec).to_numpy()
    prepared = {}
    for key, model in models.items():
        rows = codes >= 0 if key == "s" else codes == spec.arms.index(key)
        sub_frame = frame[rows].reset_index(drop=True)
        sub_outcomes = outcomes[rows].reset_index(drop=True)
        meta, features, outcome = model.design(sub_frame, sub_outcomes)
        assert outcome is not None
        groups = (
            meta["subject_id"].astype(str).to_numpy()
            if "subject_id" in meta
            else (sub_outcomes["subject_id"].astype(str).to_numpy())
        )
        params = {**model.info["xgboost_params"], "nthread": nthread}
        prepared[key] = (features, outcome, groups, params, int(model.info["n_rounds"]))
    rng = np.random.default_rng([seed, 7])
    members = []
    for b in range(n_members):
        member = {}
        for key, (features, outcome, groups, params, n_rounds) in prepared.items():
            idx = _resample_rows(groups, rng)
            head = head_from_json(models[key].head.to_json())
            booster = _fit_booster(
                features[idx],
                outcome.take(idx),
                head=head,
                params=params,
                n_rounds=n_rounds,
                seed=seed + b,
            )
            if isinstance(head, SurvivalHead):
                head.fit_extras(booster, features[idx], outcome.take(idx))
            member[key] = (booster, head)
        members.append(member)
    return members


def _resample_rows(groups: NDArray[Any], rng: np.random.Generator) -> NDArray[np.int64]:
    return subject_resample(groups, rng)


def _fit_booster(
    features: NDArray[np.float32],
    outcome: Outcome,
    *,
    head: TaskHead,
    params: Mapping[str, Any],
    n_rounds: int,
    seed: int,
) -> xgb.Booster:
    data = xgb.QuantileDMatrix(
        features, **head.dmatrix_fields(outcome), max_bin=int(params["max_bin"])
    )
    return xgb.train({**params, "seed": seed}, data, num_boost_round=n_rounds, verbose_eval=False)


def fit_twin(
    frame: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    spec: TreatmentSpec,
    config: Mapping[str, Any],
    classes: Sequence[str] | None,
    nthread: int,
    survival_times: Mapping[str, Sequence[float]] | None,
    s_pipeline: OmicsPipeline | None = None,
) -> TwinModel:
    """Fit the serving learner and its bootstrap ensemble on the training rows given.

    ``s_pipeline`` is the already fitted pipeline with the arm as a feature (the registered
    model), reused as the S-learner.
    """
    learner = spec.served
    models = fit_learner(
        learner,
        frame,
        outcomes,
        spec=spec,
        config=config,
        classes=classes,
        nthread=nthread,
        survival_times=survival_times,
        s_pipeline=s_pipeline,
    )
    seed = int(config.get("seed", 42))
    members = bootstrap_members(
        models,
        frame,
        outcomes,
        spec=spec,
        n_members=spec.n_bootstrap,
        seed=seed,
        nthread=nthread,
    )
    twin = TwinModel(spec=spec, learner=learner, models=models, members=members)
    outcome_scale(twin.reference.head, spec)  # fails early on a horizon or class that is not there
    codes = subject_arms(frame, spec).to_numpy()
    subjects = (
        outcomes["subject_id"].astype(str).to_numpy()
        if "subject_id" in outcomes
        else np.arange(len(frame)).astype(str)
    )
    twin.info = {
        "learner": learner,
        "n_bootstrap": spec.n_bootstrap,
        "n_subjects_by_arm": {
            arm: int(pd.unique(subjects[codes == k]).size) for k, arm in enumerate(spec.arms)
        },
        "n_rounds": {key: int(m.info["n_rounds"]) for key, m in models.items()},
    }
    return twin
