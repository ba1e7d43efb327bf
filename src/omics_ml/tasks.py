"""What each prediction task adds to the booster: objective, labels, fitted extras and outputs.

A task head turns outcome columns into XGBoost labels, fits what the task needs besides the
booster on training rows only (the Breslow baseline hazard and the time grid for survival, the
conformal quantile for regression), turns booster margins into per-patient predictions, and is
frozen as JSON with the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xgboost as xgb
from numpy.typing import NDArray

from omics_ml.calibration import ProbabilityCalibrator
from omics_ml.regression import conformal_quantile
from omics_ml.survival import (
    AFT_DISTRIBUTIONS,
    BreslowBaseline,
    aft_survival,
    default_horizons,
    time_grid,
)

__all__ = [
    "UNCALIBRATED_PREFIX",
    "ClassificationHead",
    "Outcome",
    "RegressionHead",
    "SurvivalHead",
    "TaskHead",
    "evaluation_times",
    "head_from_config",
    "head_from_json",
    "horizon_label",
]

#: Column prefix of a calibrated classifier's own (uncalibrated) probabilities in evaluation tables.
UNCALIBRATED_PREFIX = "uncalibrated_prob_"

#: Default holdout metric of the promotion rule, per task.
DEFAULT_PROMOTION_METRIC = {
    "classification": "balanced_accuracy",
    "survival": "c_index_harrell",
    "regression": "rmse",
}


def horizon_label(value: float) -> str:
    """A time as it appears in column names: ``12``, ``0_5`` (dot replaced)."""
    return f"{value:g}".replace(".", "_").replace("-", "m")


def evaluation_times(
    time: NDArray[np.float64],
    event: NDArray[np.int8],
    *,
    horizons: Sequence[float] | None = None,
    n_points: int = 50,
) -> tuple[list[float], list[float]]:
    """Time grid of the survival curves and the horizons, from survival data.

    The grid runs from 0 to the 90th percentile of the event times, rounded to at most four
    significant digits so that the curve's column names stay readable; the horizons are the
    configured ones or the quartiles of the event times.
    """
    grid = time_grid(time, event, n_points=n_points)
    grid = np.unique(np.round(grid, max(3 - int(np.floor(np.log10(grid.max()))), 0)))
    if horizons is None:
        horizons = default_horizons(time, event)
    return grid.tolist(), [float(h) for h in horizons]


@dataclass
class Outcome:
    """Outcome of each design-matrix row; the task reads the fields it needs.

    Attributes
    ----------
    label : ndarray of str
        Class (classification) or stratum (event/censored, target quintile) for splitting.
    time, event : ndarray or None
        Survival time from the row's time origin (baseline or landmark) and 0/1 event.
    target : ndarray or None
        Numeric outcome (regression).
    """

    label: NDArray[np.str_]
    time: NDArray[np.float64] | None = None
    event: NDArray[np.int8] | None = None
    target: NDArray[np.float64] | None = None

    def take(self, idx: NDArray[np.int64]) -> Outcome:
        """The outcome of rows ``idx``."""
        return Outcome(
            self.label[idx],
            *(None if a is None else a[idx] for a in (self.time, self.event, self.target)),
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Outcome:
        """Read ``label``, ``time``, ``event`` and ``target`` columns where present."""

        def column(name: str, dtype: Any) -> Any:
            return frame[name].to_numpy(dtype=dtype) if name in frame else None

        label = frame["label"].astype(str).to_numpy() if "label" in frame else None
        if label is None:
            label = np.full(len(frame), "all", dtype=object).astype(str)
        return cls(
            label,
            column("time", np.float64),
            column("event", np.int8),
            column("target", np.float64),
        )

    def columns(self) -> dict[str, NDArray[Any]]:
        """The present fields as named columns (for evaluation tables)."""
        out: dict[str, NDArray[Any]] = {"label": self.label}
        for name in ("time", "event", "target"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class TaskHead(ABC):
    """Task-specific part of a pipeline; see the module docstring."""

    task: ClassVar[str]

    @abstractmethod
    def xgb_params(self) -> dict[str, Any]:
        """Objective, evaluation metric and task parameters for ``xgboost.train``."""

    @abstractmethod
    def dmatrix_fields(self, outcome: Outcome) -> dict[str, NDArray[Any]]:
        """``label`` (or AFT bounds) and ``weight`` arguments of a DMatrix."""

    def strata(self, outcome: Outcome) -> NDArray[np.str_]:
        """Labels that inner splits stratify on."""
        return outcome.label

    def prepare(self, outcome: Outcome) -> None:  # noqa: B027 - optional hook
        """Fix data-derived settings (time grid, horizons) from the training rows."""

    def fit_extras(  # noqa: B027 - optional hook
        self, booster: xgb.Booster, features: NDArray[np.float32], outcome: Outcome
    ) -> None:
        """Fit what the task needs beyond the booster, on training rows."""

    @abstractmethod
    def predict(self, booster: xgb.Booster, features: NDArray[np.float32]) -> pd.DataFrame:
        """Per-row predictions (task columns only)."""

    @abstractmethod
    def output_columns(self) -> list[tuple[str, str]]:
        """Names and MLflow types of the prediction columns."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """Frozen state."""

    @staticmethod
    def margin(booster: xgb.Booster, features: NDArray[np.float32]) -> NDArray[np.float64]:
        """Raw booster output (log hazard, log time, logit or value) per row."""
        out = booster.inplace_predict(features, predict_type="margin", validate_features=False)
        return np.asarray(out, dtype=np.float64)


class ClassificationHead(TaskHead):
    """Binary or multiclass probabilities (``binary:logistic`` / ``multi:softprob``)."""

    task = "classification"

    def __init__(
        self,
        classes: Sequence[str],
        *,
        class_weight: str = "balanced",
        calibrator: ProbabilityCalibrator | None = None,
    ) -> None:
        self.classes = [str(c) for c in classes]
        self.class_weight = class_weight
        self.calibrator = calibrator

    def xgb_params(self) -> dict[str, Any]:
        if len(self.classes) == 2:
            return {"objective": "binary:logistic", "eval_metric": "logloss"}
        return {
            "objective": "multi:softprob",
            "eval_metric": "mlogloss",
            "num_class": len(self.classes),
        }

    def codes(self, outcome: Outcome) -> NDArray[np.int64]:
        """Class index of each row's label."""
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({str(v) for v in outcome.label} - set(index))
        if unknown:
            msg = f"labels {unknown} are not among the model's classes {self.classes}."
            raise ValueError(msg)
        return np.fromiter((index[v] for v in outcome.label), np.int64, len(outcome.label))

    def dmatrix_fields(self, outcome: Outcome) -> dict[str, NDArray[Any]]:
        y = self.codes(outcome)
        n = len(self.classes)
        if self.class_weight == "none":
            weight = np.ones(y.shape[0], dtype=np.float32)
        else:
            counts = np.bincount(y, minlength=n).astype(np.float64)
            weight = (y.shape[0] / (n * np.maximum(counts, 1.0)))[y].astype(np.float32)
        return {"label": y, "weight": weight}

    def predict_proba(self, booster: xgb.Booster, features: NDArray[np.float32]) -> NDArray:
        """Class probabilities of shape (n_rows, n_classes), calibrated if the head has a calibrator."""
        proba = self.uncalibrated_proba(booster, features)
        return proba if self.calibrator is None else self.calibrator.transform(proba)

    def uncalibrated_proba(self, booster: xgb.Booster, features: NDArray[np.float32]) -> NDArray:
        """The booster's own class probabilities, shape (n_rows, n_classes)."""
        raw = booster.inplace_predict(features, validate_features=False)
        raw = np.asarray(raw, dtype=np.float64)
        if len(self.classes) == 2:
            return np.column_stack([1.0 - raw, raw])
        proba = raw.reshape(features.shape[0], len(self.classes))
        return proba / proba.sum(axis=1, keepdims=True)  # exact sums after float32 -> float64

    def predict(self, booster: xgb.Booster, features: NDArray[np.float32]) -> pd.DataFrame:
        proba = self.predict_proba(booster, features)
        out = pd.DataFrame(
            {"predicted_class": np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]}
        )
        for k, label in enumerate(self.classes):
            out[f"prob_{label}"] = proba[:, k]
        return out

    def output_columns(self) -> list[tuple[str, str]]:
        return [("predicted_class", "string")] + [(f"prob_{c}", "double") for c in self.classes]

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "classes": self.classes,
            "class_weight": self.class_weight,
            "calibration": None if self.calibrator is None else self.calibrator.to_json(),
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> ClassificationHead:
        calibration = state.get("calibration")
        return cls(
            state["classes"],
            class_weight=state.get("class_weight", "balanced"),
            calibrator=None
            if calibration is None
            else ProbabilityCalibrator.from_json(calibration),
        )


class SurvivalHead(TaskHead):
    """Survival curves from ``survival:cox`` (+ Breslow baseline) or ``survival:aft``."""

    task = "survival"

    def __init__(
        self,
        *,
        objective: str = "cox",
        aft_distribution: str = "normal",
        aft_scale: float = 1.0,
        horizons: Sequence[float] | None = None,
        time_grid_points: int = 50,
        grid: Sequence[float] | None = None,
        baseline: BreslowBaseline | None = None,
    ) -> None:
        if objective not in ("cox", "aft"):
            msg = f"survival.objective is {objective!r}; use 'cox' or 'aft'."
            raise ValueError(msg)
        if aft_distribution not in AFT_DISTRIBUTIONS:
            msg = f"survival.aft_distribution is {aft_distribution!r}; use one of {AFT_DISTRIBUTIONS}."
            raise ValueError(msg)
        self.objective = objective
        self.aft_distribution = aft_distribution
        self.aft_scale = float(aft_scale)
        self.horizons = None if horizons is None else [float(h) for h in horizons]
        self.time_grid_points = int(time_grid_points)
        self.grid = None if grid is None else np.asarray(grid, dtype=np.float64)
        self.baseline = baseline

    def xgb_params(self) -> dict[str, Any]:
        if self.objective == "cox":
            return {"objective": "survival:cox", "eval_metric": "cox-nloglik"}
        return {
            "objective": "survival:aft",
            "eval_metric": "aft-nloglik",
            "aft_loss_distribution": self.aft_distribution,
            "aft_loss_distribution_scale": self.aft_scale,
        }

    def dmatrix_fields(self, outcome: Outcome) -> dict[str, NDArray[Any]]:
        time, event = outcome.time, outcome.event
        if time is None or event is None:
            msg = "survival rows need time and event."
            raise ValueError(msg)
        if self.objective == "cox":  # XGBoost's convention: negative time = censored
            return {"label": np.where(event == 1, time, -time)}
        upper = np.where(event == 1, time, np.inf)
        return {"label_lower_bound": time, "label_upper_bound": upper}

    def strata(self, outcome: Outcome) -> NDArray[np.str_]:
        return np.where(np.asarray(outcome.event) == 1, "event", "censored")

    def prepare(self, outcome: Outcome) -> None:
        if self.grid is None or self.horizons is None:
            grid, horizons = evaluation_times(
                np.asarray(outcome.time),
                np.asarray(outcome.event),
                horizons=self.horizons,
                n_points=self.time_grid_points,
            )
            self.grid = np.asarray(grid) if self.grid is None else self.grid
            self.horizons = horizons if self.horizons is None else self.horizons

    def fit_extras(
        self, booster: xgb.Booster, features: NDArray[np.float32], outcome: Outcome
    ) -> None:
        if self.objective == "cox":
            self.baseline = BreslowBaseline.fit(
                self.margin(booster, features), np.asarray(outcome.time), np.asarray(outcome.event)
            )

    def survival_function(
        self, margin: NDArray[np.float64], times: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """S(t | x) at ``times`` for rows with booster margin ``margin``."""
        if self.objective == "cox":
            if self.baseline is None:
                msg = "the Cox model has no baseline hazard; fit it first."
                raise ValueError(msg)
            return self.baseline.survival(margin, times)
        return aft_survival(margin, times, distribution=self.aft_distribution, scale=self.aft_scale)

    def risk_score(self, margin: NDArray[np.float64]) -> NDArray[np.float64]:
        """Higher means earlier event: the log hazard ratio (Cox) or minus the log time (AFT)."""
        return margin if self.objective == "cox" else -margin

    def predict(self, booster: xgb.Booster, features: NDArray[np.float32]) -> pd.DataFrame:
        margin = self.margin(booster, features)
        columns: dict[str, NDArray[np.float64]] = {"risk_score": self.risk_score(margin)}
        at_horizons = self.survival_function(margin, np.asarray(self.horizons, dtype=np.float64))
        for k, h in enumerate(self.horizons or []):
            columns[f"risk_at_{horizon_label(h)}"] = 1.0 - at_horizons[:, k]
        curve = self.survival_function(margin, np.asarray(self.grid))
        for k, t in enumerate(np.asarray(self.grid)):
            columns[f"surv_{horizon_label(t)}"] = curve[:, k]
        return pd.DataFrame(columns)

    def output_columns(self) -> list[tuple[str, str]]:
        return (
            [("risk_score", "double")]
            + [(f"risk_at_{horizon_label(h)}", "double") for h in self.horizons or []]
            + [(f"surv_{horizon_label(t)}", "double") for t in np.asarray(self.grid)]
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "objective": self.objective,
            "aft_distribution": self.aft_distribution,
            "aft_scale": self.aft_scale,
            "horizons": self.horizons,
            "time_grid_points": self.time_grid_points,
            "grid": None if self.grid is None else self.grid.tolist(),
            "baseline": None if self.baseline is None else self.baseline.to_json(),
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> SurvivalHead:
        baseline = state.get("baseline")
        return cls(
            objective=state["objective"],
            aft_distribution=state["aft_distribution"],
            aft_scale=state["aft_scale"],
            horizons=state["horizons"],
            time_grid_points=state["time_grid_points"],
            grid=state["grid"],
            baseline=None if baseline is None else BreslowBaseline.from_json(baseline),
        )


class RegressionHead(TaskHead):
    """A numeric value with a split-conformal prediction interval."""

    task = "regression"

    def __init__(
        self,
        *,
        interval_level: float = 0.9,
        calibration_fraction: float = 0.25,
        quantile: float | None = None,
        n_calibration: int | None = None,
    ) -> None:
        self.interval_level = float(interval_level)
        self.calibration_fraction = float(calibration_fraction)
        self.quantile = quantile
        self.n_calibration = n_calibration

    def xgb_params(self) -> dict[str, Any]:
        return {"objective": "reg:squarederror", "eval_metric": "rmse"}

    def dmatrix_fields(self, outcome: Outcome) -> dict[str, NDArray[Any]]:
        if outcome.target is None:
            msg = "regression rows need a target."
            raise ValueError(msg)
        return {"label": outcome.target}

    def strata(self, outcome: Outcome) -> NDArray[np.str_]:
        target = np.asarray(outcome.target, dtype=np.float64)
        edges = np.quantile(target, [0.2, 0.4, 0.6, 0.8])
        return np.char.add("q", np.searchsorted(edges, target).astype(str))

    def calibrate(self, predicted: NDArray[np.float64], target: NDArray[np.float64]) -> None:
        """Set the conformal quantile from calibration rows the booster did not train on."""
        self.quantile = float(
            conformal_quantile(np.abs(target - predicted), alpha=1.0 - self.interval_level)
        )
        self.n_calibration = int(target.size)

    def predict(self, booster: xgb.Booster, features: NDArray[np.float32]) -> pd.DataFrame:
        if self.quantile is None:
            msg = "the regression model has no conformal quantile; calibrate it first."
            raise ValueError(msg)
        predicted = self.margin(booster, features)
        return pd.DataFrame(
            {
                "predicted": predicted,
                "lower": predicted - self.quantile,
                "upper": predicted + self.quantile,
            }
        )

    def output_columns(self) -> list[tuple[str, str]]:
        return [("predicted", "double"), ("lower", "double"), ("upper", "double")]

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "interval_level": self.interval_level,
            "calibration_fraction": self.calibration_fraction,
            "quantile": self.quantile,
            "n_calibration": self.n_calibration,
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> RegressionHead:
        return cls(
            interval_level=state["interval_level"],
            calibration_fraction=state["calibration_fraction"],
            quantile=state["quantile"],
            n_calibration=state.get("n_calibration"),
        )


def head_from_config(config: Mapping[str, Any], *, classes: Sequence[str] | None) -> TaskHead:
    """A fresh head for the config's ``task`` (classes: every label of the cohort)."""
    task = config.get("task", "classification")
    if task == "classification":
        if not classes:
            msg = "classification needs the cohort's classes."
            raise ValueError(msg)
        model = config.get("model") or {}
        return ClassificationHead(classes, class_weight=str(model.get("class_weight", "balanced")))
    if task == "survival":
        spec = config.get("survival") or {}
        return SurvivalHead(
            objective=spec.get("objective", "cox"),
            aft_distribution=spec.get("aft_distribution", "normal"),
            aft_scale=float(spec.get("aft_scale", 1.0)),
            horizons=spec.get("horizons"),
            time_grid_points=int(spec.get("time_grid_points", 50)),
        )
    if task == "regression":
        spec = config.get("regression") or {}
        return RegressionHead(
            interval_level=float(spec.get("interval_level", 0.9)),
            calibration_fraction=float(spec.get("calibration_fraction", 0.25)),
        )
    msg = f"config: task {task!r} is not one of classification, regression, survival."
    raise ValueError(msg)


def head_from_json(state: Mapping[str, Any]) -> TaskHead:
    """Rebuild a head frozen by :meth:`TaskHead.to_json`."""
    heads: dict[str, Any] = {
        "classification": ClassificationHead,
        "survival": SurvivalHead,
        "regression": RegressionHead,
    }
    return heads[state["task"]].from_json(state)
