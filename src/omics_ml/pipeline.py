"""The deployable model: per-modality normalisers, landmark features, an XGBoost booster and
the task's head (classes, baseline hazard or conformal quantile), frozen as JSON + UBJ.

:class:`OmicsPipeline` is what cross-validation fits per fold, what ``train_final`` fits on the
development subjects, and what the registered MLflow model serves: one code path from raw
per-modality values (columns named ``modality:feature``; for longitudinal models one row per
visit with ``subject_id`` and ``visit_time``) to per-patient predictions.
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
import xgboost as xgb
from numpy.typing import NDArray

from omics_ml.calibration import ProbabilityCalibrator
from omics_ml.device import resolve_device
from omics_ml.explain import (
    modality_contributions,
    select_output,
    shap_contributions,
    top_contributions,
)
from omics_ml.integrate import FEATURE_SEPARATOR, qualified_names
from omics_ml.io import atomic_output, read_json, write_json
from omics_ml.longitudinal import future_values, landmark_features
from omics_ml.normalise import ModalityNormaliser, normaliser_from_spec
from omics_ml.selection import FeatureSelection
from omics_ml.split import grouped_stratified_split
from omics_ml.tasks import (
    UNCALIBRATED_PREFIX,
    ClassificationHead,
    Outcome,
    RegressionHead,
    SurvivalHead,
    TaskHead,
    head_from_config,
    head_from_json,
)
from omics_ml.tuning import grouped_folds, search_space, tune_xgboost

__all__ = [
    "BOOSTER_FILE",
    "STATE_FILE",
    "LandmarkSpec",
    "OmicsPipeline",
    "fit_pipeline",
    "xgboost_params",
]

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
BOOSTER_FILE = "booster.ubj"
FORMAT_VERSION = 3


def xgboost_params(
    model: Mapping[str, Any], *, head: TaskHead, seed: int, nthread: int
) -> dict[str, Any]:
    """XGBoost training parameters from the ``model`` config section and the task's head."""
    params: dict[str, Any] = {
        "tree_method": "hist",
        "learning_rate": model.get("learning_rate", 0.05),
        "max_depth": model.get("max_depth", 3),
        "min_child_weight": model.get("min_child_weight", 1.0),
        "subsample": model.get("subsample", 0.8),
        "colsample_bytree": model.get("colsample_bytree", 0.5),
        "reg_lambda": model.get("reg_lambda", 1.0),
        "max_bin": model.get("max_bin", 64),
        "device": resolve_device(model.get("device")),
        "seed": seed,
        "nthread": nthread,
    }
    params.update(head.xgb_params())
    return params


@dataclass
class LandmarkSpec:
    """Landmark design of a longitudinal model (the ``longitudinal`` config section).

    Attributes
    ----------
    landmarks : list of float
        Landmark times s; a subject gets one row per landmark at which it is at risk
        (training, evaluation) or which its visits have reached (serving).
    summarise : list of str or None
        Modalities whose features get baseline, last, slope and change; None means all.
    target : dict or None
        ``feature`` (``modality:feature``), ``horizon`` and ``window`` of a future marker value
        (regression).
    """

    landmarks: list[float]
    summarise: list[str] | None = None
    target: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LandmarkSpec | None:
        """The spec of a config, or None for a cross-sectional model."""
        spec = config.get("longitudinal") or {}
        if not spec.get("landmarks"):
            return None
        target = spec.get("target")
        if target is not None:
            target = {
                "feature": str(target["feature"]),
                "horizon": float(target["horizon"]),
                "window": float(target.get("window", 0.0)),
            }
        summarise = spec.get("summarise")
        return cls(
            landmarks=sorted(float(s) for s in spec["landmarks"]),
            summarise=None if summarise is None else [str(m) for m in summarise],
            target=target,
        )

    def to_json(self) -> dict[str, Any]:
        """Frozen state."""
        return {"landmarks": self.landmarks, "summarise": self.summarise, "target": self.target}

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> LandmarkSpec:
        """Rebuild from :meth:`to_json`."""
        return cls(list(state["landmarks"]), state.get("summarise"), state.get("target"))

    def _summarise_mask(self, feature_names: Sequence[str]) -> NDArray[np.bool_]:
        if self.summarise is None:
            return np.ones(len(feature_names), dtype=bool)
        modality = np.asarray([n.partition(FEATURE_SEPARATOR)[0] for n in feature_names])
        return np.isin(modality, self.summarise)

    def design(
        self,
        features: NDArray[np.float32],
        feature_names: Sequence[str],
        frame: pd.DataFrame,
        outcomes: pd.DataFrame | None = None,
    ) -> tuple[pd.DataFrame, NDArray[np.float32], list[str], Outcome | None]:
        """Landmark rows from per-visit features.

        Parameters
        ----------
        features : ndarray of shape (n_visits, n_features)
            Normalised per-visit features, rows aligned with ``frame``.
        feature_names : sequence of str
            Their qualified names.
        frame : pandas.DataFrame
            The raw input table: ``subject_id``, ``visit_time`` and (for a future-value target)
            the target's raw column.
        outcomes : pandas.DataFrame, optional
            Per-visit outcome columns aligned with ``frame`` (``label`` and ``time``/``event``,
            constant within a subject). Given: rows of subjects at risk at each landmark
            (``time`` > s, and a target visit for regression), with the outcome counted from s.
            Not given (serving): rows for each landmark a subject's visits have reached.

        Returns
        -------
        meta : pandas.DataFrame
            ``sample_id`` (``subject@landmark``), ``subject_id`` and ``landmark`` per row.
        values : ndarray, float32
        names : list of str
        outcome : Outcome or None
        """
        for column in ("subject_id", "visit_time"):
            if column not in frame:
                msg = f"a longitudinal model needs a {column!r} column for every visit (give the sample sheet with --samples)."
                raise ValueError(msg)
        visit_times = pd.to_numeric(frame["visit_time"], errors="coerce").to_numpy(np.float64)
        if np.isnan(visit_times).any():
            msg = (
                "visit_time is missing or not a number for some visits; every visit needs its time."
            )
            raise ValueError(msg)
        subjects = frame["subject_id"].astype(str).to_numpy()
        mask = self._summarise_mask(feature_names)
        per_subject = pd.DataFrame({"subject_id": subjects, "visit_time": visit_times})
        if outcomes is not None:
            per_subject = pd.concat(
                [
                    per_subject,
                    outcomes.drop(columns=["subject_id"], errors="ignore").reset_index(drop=True),
                ],
                axis=1,
            )
        summary = per_subject.groupby("subject_id", sort=False).agg(
            last_visit=("visit_time", "max"),
            **{c: (c, "first") for c in ("label", "time", "event") if c in per_subject},
        )
        target_values = None
        if self.target is not None and outcomes is not None:
            if self.target["feature"] not in frame:
                msg = f"longitudinal.target.feature {self.target['feature']!r} is not an input column of the model."
                raise ValueError(msg)
            target_values = pd.to_numeric(frame[self.target["feature"]], errors="coerce")
            target_values = target_values.to_numpy(np.float64)
        metas, blocks, outcome_parts = [], [], []
        names: list[str] = []
        for s in self.landmarks:
            lf = landmark_features(
                subjects, visit_times, features, list(feature_names), s, summarise=mask
            )
            names = list(lf.feature_names)
            rows = summary.loc[list(lf.subject_ids)]
            if outcomes is None:
                keep = rows["last_visit"].to_numpy() >= s
            elif "time" in rows:
                keep = rows["time"].to_numpy(np.float64) > s
            else:
                keep = np.ones(len(rows), dtype=bool)
            target = None
            if target_values is not None:
                found = future_values(
                    subjects,
                    visit_times,
                    target_values,
                    s,
                    self.target["horizon"],
                    window=self.target["window"],
                )
                target = (
                    pd.Series(found["target"].to_numpy(), index=found["subject_id"].to_list())
                    .reindex(rows.index)
                    .to_numpy(np.float64)
                )
                keep &= np.isfinite(target)
            kept_rows = rows[keep]
            metas.append(
                pd.DataFrame(
                    {
                        "sample_id": (kept_rows.index.astype(str) + f"@{s:g}").to_numpy(object),
                        "subject_id": kept_rows.index.to_numpy(dtype=object),
                        "landmark": np.full(int(keep.sum()), s),
                    }
                )
            )
            blocks.append(np.asarray(lf.values)[keep])
            if outcomes is not None:
                part: dict[str, Any] = {"label": kept_rows["label"].astype(str).to_numpy()}
                if "time" in kept_rows:
                    part["time"] = kept_rows["time"].to_numpy(np.float64) - s
                    part["event"] = kept_rows["event"].to_numpy(np.int8)
                if target is not None:
                    part["target"] = target[keep]
                outcome_parts.append(pd.DataFrame(part))
        meta = pd.concat(metas, ignore_index=True)
        values = np.vstack(blocks).astype(np.float32, copy=False)
        outcome = None
        if outcomes is not None:
            outcome = Outcome.from_frame(pd.concat(outcome_parts, ignore_index=True))
        return meta, values, names, outcome


@dataclass
class OmicsPipeline:
    """Fitted preprocessing, booster and task head.

    Attributes
    ----------
    head : TaskHead
        Objective and fitted extras of the task (classes, baseline hazard, conformal quantile).
    inputs : dict of str to list of str
        Raw input features of each modality (unqualified names), in training order.
    normalisers : dict of str to ModalityNormaliser
        Fitted normaliser of each modality.
    booster : xgboost.Booster
        The fitted booster; its feature ``i`` is ``feature_names[i]``.
    landmarks : LandmarkSpec or None
        Landmark design of a longitudinal model.
    selection : FeatureSelection or None
        Supervised in-fold feature selection of the design columns (fitted on the training
        rows); None keeps every column.
    info : dict
        Training facts (rounds, early-stopping score, tuning, sample counts), stored with the
        state.
    """

    head: TaskHead
    inputs: dict[str, list[str]]
    normalisers: dict[str, ModalityNormaliser]
    booster: xgb.Booster
    landmarks: LandmarkSpec | None = None
    selection: FeatureSelection | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        """``classification``, ``regression`` or ``survival``."""
        return self.head.task

    @property
    def classes(self) -> list[str]:
        """Class labels of a classifier (empty for other tasks)."""
        return list(self.head.classes) if isinstance(self.head, ClassificationHead) else []

    @property
    def normalised_feature_names(self) -> list[str]:
        """Qualified names of the per-sample features the normalisers produce."""
        names: list[str] = []
        for modality, normaliser in self.normalisers.items():
            names.extend(qualified_names(modality, normaliser.get_feature_names_out().tolist()))
        return names

    @property
    def design_feature_names(self) -> list[str]:
        """Names of the design columns before selection (landmark summaries for longitudinal models)."""
        if self.landmarks is None:
            return self.normalised_feature_names
        return list(self.info.get("design_feature_names", []))

    @property
    def feature_names(self) -> list[str]:
        """Names of the features the booster sees: the design columns the selection kept."""
        if self.selection is None:
            return self.design_feature_names
        return self.selection.kept_columns

    @property
    def input_columns(self) -> list[str]:
        """Qualified names of every raw input column the pipeline reads."""
        return [c for m, feats in self.inputs.items() for c in qualified_names(m, feats)]

    @property
    def text_columns(self) -> list[str]:
        """Raw input columns that hold text (categorical covariates)."""
        return [
            c for m, n in self.normalisers.items() for c in qualified_names(m, n.text_features_)
        ]

    @property
    def batch_columns(self) -> list[str]:
        """Input columns with batch labels, read by modalities with batch correction."""
        return list(
            dict.fromkeys(str(n.batch_column) for n in self.normalisers.values() if n.uses_batch)
        )

    def _modality_block(self, frame: pd.DataFrame, modality: str) -> pd.DataFrame:
        """The raw columns of one modality, absent ones as missing, numbers parsed."""
        normaliser = self.normalisers[modality]
        wanted = qualified_names(modality, self.inputs[modality])
        present = frame.columns.intersection(wanted)
        if 0 < len(present) < len(wanted):
            logger.warning(
                "%s: %d of %d input features absent from the input; treated as missing",
                modality,
                len(wanted) - len(present),
                len(wanted),
            )
        block = frame.reindex(columns=wanted)
        block.columns = self.inputs[modality]
        if hasattr(normaliser, "text_features_"):
            is_text = block.columns.isin(normaliser.text_features_)
        else:  # not fitted yet: text columns are those the raw table holds as objects
            is_text = block.dtypes.to_numpy() == np.dtype(object)
        numeric = block.loc[:, ~is_text] if is_text.any() else block
        # Only columns that arrive as objects (e.g. numbers read as text) need parsing.
        parse = numeric.select_dtypes(exclude="number").columns
        if len(parse):
            numeric = numeric.copy()
            numeric[parse] = numeric[parse].apply(pd.to_numeric, errors="coerce")
        if not is_text.any():
            # Floats as they come (float32 from training tables): the normaliser converts
            # once to float64, exactly, into its own copy.
            return numeric
        numeric = numeric.astype(np.float64)  # one conversion of the whole block
        text = block.loc[:, is_text].astype(object)
        text = text.where(text.notna(), None)
        return pd.concat([numeric, text], axis=1)[block.columns]

    def transform(self, frame: pd.DataFrame) -> NDArray[np.float32]:
        """Normalise raw values with the frozen per-modality state (one row per input row).

        Parameters
        ----------
        frame : pandas.DataFrame
            One row per sample (visit); raw ``modality:feature`` columns and, for modalities
            with batch correction, the batch-label column. Columns the model does not know are
            ignored; known columns that are absent count as missing.

        Returns
        -------
        ndarray of shape (n_samples, n_normalised_features), float32
        """
        if not frame.columns.is_unique:
            dupes = frame.columns[frame.columns.duplicated()].unique().tolist()[:5]
            msg = f"duplicate input columns {dupes}; each modality:feature column must appear once."
            raise ValueError(msg)
        blocks = []
        for modality, normaliser in self.normalisers.items():
            batch = None
            if normaliser.uses_batch and normaliser.batch_column in frame.columns:
                batch = frame[normaliser.batch_column].to_numpy(dtype=object)
            block = self._modality_block(frame, modality)
            blocks.append(normaliser.transform(block, batch=batch))
        return np.hstack(blocks).astype(np.float32, copy=False)

    def rows(
        self,
        features: NDArray[np.float32],
        frame: pd.DataFrame,
        outcomes: pd.DataFrame | None = None,
    ) -> tuple[pd.DataFrame, NDArray[np.float32], list[str], Outcome | None]:
        """The booster's rows from normalised per-sample ``features`` of ``frame``.

        One row per sample, or one per subject and landmark. Returns the rows'
        ``sample_id``/``subject_id`` (and ``landmark``), their features and names and, when
        ``outcomes`` (per-row outcome columns aligned with ``frame``) is given, their outcome.
        """
        if self.landmarks is not None:
            return self.landmarks.design(features, self.normalised_feature_names, frame, outcomes)
        sample_ids = (
            frame["sample_id"].astype(str).to_numpy()
            if "sample_id" in frame
            else frame.index.astype(str).to_numpy()
        )
        meta = pd.DataFrame({"sample_id": sample_ids})
        if "subject_id" in frame:
            meta["subject_id"] = frame["subject_id"].astype(str).to_numpy()
        outcome = None if outcomes is None else Outcome.from_frame(outcomes.reset_index(drop=True))
        return meta, features, self.normalised_feature_names, outcome

    def design(
        self, frame: pd.DataFrame, outcomes: pd.DataFrame | None = None, *, select: bool = True
    ) -> tuple[pd.DataFrame, NDArray[np.float32], Outcome | None]:
        """Row metadata, features and (given ``outcomes``) outcome of a raw input table.

        With ``select`` (default) the features are the booster's (after feature selection);
        without, every design column (:attr:`design_feature_names`).
        """
        meta, values, _, outcome = self.rows(self.transform(frame), frame, outcomes)
        if select and self.selection is not None:
            values = self.selection.transform(values)
        return meta, values, outcome

    def explain(self, frame: pd.DataFrame, *, top: int = 10) -> pd.DataFrame:
        """Each row's largest SHAP contributions (XGBoost ``pred_contribs``) to its prediction.

        Contributions are in the booster's margin space: log-odds of the predicted class
        (classification), log hazard (Cox), log time (AFT) or the value (regression).

        Parameters
        ----------
        frame : pandas.DataFrame
            Raw input table, as for :meth:`predict_frame`.
        top : int
            Contributions per row, largest absolute value first.

        Returns
        -------
        pandas.DataFrame
            Long table: ``sample_id``, ``rank``, ``feature``, ``modality``, ``value`` (the
            normalised value the booster saw), ``contribution``; classification adds
            ``explained_class``.
        """
        meta, features, contribs, explained = self._contributions(frame)
        table = top_contributions(
            contribs, features, self.feature_names, meta["sample_id"].tolist(), top=top
        )
        if explained is not None:
            per_row = pd.Series(explained, index=meta["sample_id"].to_numpy())
            table.insert(1, "explained_class", per_row.reindex(table["sample_id"]).to_numpy())
        return table

    def explain_modalities(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each row's SHAP contribution summed per modality, plus the bias (sums to the margin).

        Returns
        -------
        pandas.DataFrame
            ``sample_id``, ``explained_class`` (classification), one column per modality and
            ``bias``.
        """
        meta, _, contribs, explained = self._contributions(frame)
        table = modality_contributions(contribs, self.feature_names)
        if explained is not None:
            table.insert(0, "explained_class", explained)
        table.insert(0, "sample_id", meta["sample_id"].to_numpy())
        return table

    def _contributions(
        self, frame: pd.DataFrame
    ) -> tuple[pd.DataFrame, NDArray[np.float32], NDArray[np.float32], NDArray[np.object_] | None]:
        """Rows, features, 2-D SHAP contributions and the explained class of each row."""
        meta, features, _ = self.design(frame)
        _, contribs, explained = self.shap_values(features)
        return meta, features, contribs, explained

    def shap_values(
        self, features: NDArray[np.float32], *, nthread: int | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.object_] | None]:
        """SHAP contributions of booster features: all outputs, each row's explained output.

        ``nthread`` limits XGBoost's threads (default: the booster's).

        Returns
        -------
        contribs : ndarray
            ``(n, p + 1)``, or ``(n, K, p + 1)`` for multiclass models.
        explained : ndarray of shape (n, p + 1)
            The contributions to each row's explained margin: its predicted class
            (multiclass), the second class's log-odds (binary), or the task's margin.
        classes : ndarray of str or None
            The explained class of each row (classification).
        """
        contribs = shap_contributions(self.booster, features, nthread=nthread)
        if not isinstance(self.head, ClassificationHead):
            return contribs, contribs, None
        if contribs.ndim == 3:  # multiclass: each row's predicted class
            index = self.head.predict_proba(self.booster, features).argmax(axis=1)
            explained = select_output(contribs, index)
        else:  # binary: the margin is the log-odds of the second class
            index = np.ones(features.shape[0], dtype=np.int64)
            explained = contribs
        return contribs, explained, np.asarray(self.classes, dtype=object)[index]

    def predict_proba(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        """Class probabilities of shape (n_rows, n_classes) (classification models)."""
        if not isinstance(self.head, ClassificationHead):
            msg = f"predict_proba needs a classification model; this one is {self.task}."
            raise TypeError(msg)
        _, features, _ = self.design(frame)
        return self.head.predict_proba(self.booster, features)

    def _missing_modalities(self, frame: pd.DataFrame) -> NDArray[np.object_]:
        missing = np.column_stack(
            [
                ~frame.reindex(columns=qualified_names(m, feats)).notna().to_numpy().any(axis=1)
                for m, feats in self.inputs.items()
            ]
        )
        names = np.asarray([f"{m};" for m in self.inputs], dtype=object)
        joined = np.where(missing, names, "").sum(axis=1)  # string concatenation per row
        return pd.Series(joined, dtype=object).str.rstrip(";").to_numpy()

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-patient predictions from a raw input table.

        Parameters
        ----------
        frame : pandas.DataFrame
            One row per sample (per visit for longitudinal models, with ``subject_id`` and
            ``visit_time``); a ``sample_id`` column (optional), raw ``modality:feature``
            columns and any batch-label columns.

        Returns
        -------
        pandas.DataFrame
            ``sample_id`` (``subject@landmark`` for longitudinal models, then ``subject_id``
            and ``landmark``), the task's columns (:meth:`output_columns`) and, for
            cross-sectional models, ``missing_modalities`` (semicolon-separated modalities with
            no value for the sample).
        """
        meta, features, _ = self.design(frame)
        out = pd.concat([meta, self.head.predict(self.booster, features)], axis=1)
        if self.landmarks is None:
            out = out.drop(columns=["subject_id"], errors="ignore")
            out["missing_modalities"] = self._missing_modalities(frame)
        return out

    def evaluation_frame(self, frame: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
        """Predictions of rows with known outcome, with ``subject_id`` and the outcome columns."""
        meta, features, outcome = self.design(frame, outcomes)
        assert outcome is not None
        parts = [meta, self.head.predict(self.booster, features)]
        if isinstance(self.head, ClassificationHead) and self.head.calibrator is not None:
            raw = self.head.uncalibrated_proba(self.booster, features)
            parts.append(
                pd.DataFrame(raw, columns=[f"{UNCALIBRATED_PREFIX}{c}" for c in self.classes])
            )
        out = pd.concat([*parts, pd.DataFrame(outcome.columns())], axis=1)
        if "subject_id" not in out:
            out.insert(1, "subject_id", outcomes["subject_id"].astype(str).to_numpy())
        return out

    def output_columns(self) -> list[tuple[str, str]]:
        """Names and MLflow types of the columns :meth:`predict_frame` returns."""
        if self.landmarks is None:
            meta = [("sample_id", "string")]
            tail = [("missing_modalities", "string")]
        else:
            meta = [("sample_id", "string"), ("subject_id", "string"), ("landmark", "double")]
            tail = []
        return meta + self.head.output_columns() + tail

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``state.json`` (preprocessing, head, training facts) and ``booster.ubj``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "head": self.head.to_json(),
            "classes": self.classes,
            "landmarks": None if self.landmarks is None else self.landmarks.to_json(),
            "selection": None if self.selection is None else self.selection.to_json(),
            "modalities": [
                {"name": m, "input_features": self.inputs[m], "normaliser": n.to_json()}
                for m, n in self.normalisers.items()
            ],
            "feature_names": self.feature_names,
            "info": self.info,
        }
        write_json(directory / STATE_FILE, state)
        with atomic_output(directory / BOOSTER_FILE) as tmp:
            self.booster.save_model(tmp)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> OmicsPipeline:
        """Load a pipeline written by :meth:`save` (JSON and XGBoost's own format; no pickle)."""
        directory = Path(directory)
        state = read_json(directory / STATE_FILE)
        if state.get("format_version") != FORMAT_VERSION:
            msg = f"{directory / STATE_FILE}: format_version {state.get('format_version')!r} is not {FORMAT_VERSION}; retrain or upgrade omics-ml."
            raise ValueError(msg)
        booster = xgb.Booster()
        booster.load_model(directory / BOOSTER_FILE)
        landmarks = state.get("landmarks")
        selection = state.get("selection")
        return cls(
            head=head_from_json(state["head"]),
            inputs={m["name"]: list(m["input_features"]) for m in state["modalities"]},
            normalisers={
                m["name"]: ModalityNormaliser.from_json(m["normaliser"])
                for m in state["modalities"]
            },
            booster=booster,
            landmarks=None if landmarks is None else LandmarkSpec.from_json(landmarks),
            selection=None if selection is None else FeatureSelection.from_json(selection),
            info=state.get("info", {}),
        )


def _split_columns(columns: Sequence[str]) -> dict[str, list[str]]:
    """Unqualified feature names of each modality, in column order."""
    by_modality: dict[str, list[str]] = {}
    for column in columns:
        modality, _, feature = str(column).partition(FEATURE_SEPARATOR)
        by_modality.setdefault(modality, []).append(feature)
    return by_modality


def _rounds_by_split(
    features: NDArray[np.float32],
    outcome: Outcome,
    groups: NDArray[Any],
    *,
    head: TaskHead,
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    seed: int,
) -> tuple[int, float, dict[str, Any]]:
    """Rounds, validation score and facts of early stopping on one grouped inner split."""
    max_bin = int(params["max_bin"])
    fit_idx, val_idx = grouped_stratified_split(
        head.strata(outcome),
        groups,
        fraction=float(model.get("inner_validation_fraction", 0.2)),
        seed=seed,
    )
    dtrain = xgb.QuantileDMatrix(
        features[fit_idx], **head.dmatrix_fields(outcome.take(fit_idx)), max_bin=max_bin
    )
    dval = xgb.QuantileDMatrix(
        features[val_idx], **head.dmatrix_fields(outcome.take(val_idx)), ref=dtrain, max_bin=max_bin
    )
    stopper = xgb.train(
        dict(params),
        dtrain,
        num_boost_round=int(model.get("n_estimators", 500)),
        evals=[(dval, "inner_validation")],
        early_stopping_rounds=int(model.get("early_stopping_rounds", 30)),
        verbose_eval=False,
    )
    facts = {"n_inner_fit_rows": int(fit_idx.size), "n_inner_validation_rows": int(val_idx.size)}
    return int(stopper.best_iteration) + 1, float(stopper.best_score), facts


def _rounds_by_cv(
    features: NDArray[np.float32],
    outcome: Outcome,
    groups: NDArray[Any],
    *,
    head: TaskHead,
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    seed: int,
) -> tuple[int, float, dict[str, Any]]:
    """Rounds, mean validation score and facts of a grouped inner k-fold ``xgboost.cv``."""
    folds = grouped_folds(
        head.strata(outcome), groups, n_splits=int(model["inner_cv_folds"]), seed=seed
    )
    history = xgb.cv(
        dict(params),
        xgb.DMatrix(features, **head.dmatrix_fields(outcome)),
        num_boost_round=int(model.get("n_estimators", 500)),
        folds=folds,
        early_stopping_rounds=int(model.get("early_stopping_rounds", 30)),
        seed=seed,
        verbose_eval=False,
    )
    score = float(history[f"test-{params['eval_metric']}-mean"].iloc[-1])
    facts = {
        "inner_cv_folds": len(folds),
        "n_inner_fit_rows": len(groups),
        "n_inner_validation_rows": 0,
    }
    return len(history), score, facts


def _rounds_by_tuning(
    features: NDArray[np.float32],
    outcome: Outcome,
    groups: NDArray[Any],
    *,
    head: TaskHead,
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    tuning: Mapping[str, Any],
    seed: int,
) -> tuple[dict[str, Any], int, float, dict[str, Any]]:
    """Tuned parameters, rounds, inner score and facts of a seeded search (:mod:`omics_ml.tuning`)."""
    folds = grouped_folds(
        head.strata(outcome), groups, n_splits=int(tuning.get("inner_cv_folds", 3)), seed=seed
    )
    result = tune_xgboost(
        xgb.DMatrix(features, **head.dmatrix_fields(outcome)),
        folds,
        params=params,
        n_estimators=int(model.get("n_estimators", 500)),
        early_stopping_rounds=int(model.get("early_stopping_rounds", 30)),
        n_trials=int(tuning.get("n_trials", 20)),
        timeout_s=tuning.get("timeout_s"),
        space=search_space(tuning.get("search_space")),
        seed=seed,
    )
    facts = {
        "inner_cv_folds": len(folds),
        "n_inner_fit_rows": len(groups),
        "n_inner_validation_rows": 0,
        # Without the wall time: the same data, config and seed give the same model bytes.
        "tuning": {k: v for k, v in result.to_json().items() if k != "elapsed_s"},
    }
    return {**params, **result.params}, result.n_rounds, result.score, facts


def _boost(
    features: NDArray[np.float32],
    outcome: Outcome,
    groups: NDArray[Any],
    *,
    head: TaskHead,
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    tuning: Mapping[str, Any] | None,
    seed: int,
) -> tuple[xgb.Booster, dict[str, Any], dict[str, Any]]:
    """Choose parameters and rounds on the training rows, then refit on all of them.

    With ``tuning.enabled`` a seeded search scores each candidate by subject-grouped inner
    k-fold CV with early stopping; otherwise the configured parameters are used and the rounds
    come from early stopping on one grouped inner split or, with ``model.inner_cv_folds`` = k,
    from a grouped inner k-fold ``xgboost.cv`` (less noisy with few subjects or events).

    Returns
    -------
    booster, info, params
        The refitted booster, training facts and the parameters it was trained with.
    """
    if tuning and tuning.get("enabled"):
        params, n_rounds, score, facts = _rounds_by_tuning(
            features,
            outcome,
            groups,
            head=head,
            params=params,
            model=model,
            tuning=tuning,
            seed=seed,
        )
    else:
        choose = _rounds_by_cv if model.get("inner_cv_folds") else _rounds_by_split
        n_rounds, score, facts = choose(
            features, outcome, groups, head=head, params=params, model=model, seed=seed
        )
    booster = _train(features, outcome, head=head, params=params, n_rounds=n_rounds)
    info = {
        "n_rounds": n_rounds,
        "inner_validation_score": score,
        "inner_validation_metric": params["eval_metric"],
        **facts,
    }
    return booster, info, dict(params)


def _train(
    features: NDArray[np.float32],
    outcome: Outcome,
    *,
    head: TaskHead,
    params: Mapping[str, Any],
    n_rounds: int,
) -> xgb.Booster:
    dall = xgb.QuantileDMatrix(
        features, **head.dmatrix_fields(outcome), max_bin=int(params["max_bin"])
    )
    return xgb.train(dict(params), dall, num_boost_round=n_rounds, verbose_eval=False)


def _fit_calibration(
    features: NDArray[np.float32],
    outcome: Outcome,
    groups: NDArray[Any],
    *,
    head: ClassificationHead,
    params: Mapping[str, Any],
    n_rounds: int,
    method: str,
    n_folds: int,
    seed: int,
) -> tuple[ProbabilityCalibrator, dict[str, Any]]:
    """Calibration map fitted on inner out-of-fold probabilities of the training rows.

    Each grouped inner fold trains a booster with the chosen parameters and rounds on the
    other folds' subjects and predicts its own; the map is fitted on those held-out
    probabilities only, so no row calibrates a model that trained on it.
    """
    folds = grouped_folds(head.strata(outcome), groups, n_splits=n_folds, seed=seed + 2)
    held_out = np.zeros((len(groups), len(head.classes)), dtype=np.float64)
    for fit_idx, val_idx in folds:
        booster = _train(
            features[fit_idx], outcome.take(fit_idx), head=head, params=params, n_rounds=n_rounds
        )
        held_out[val_idx] = head.uncalibrated_proba(booster, features[val_idx])
    calibrator = ProbabilityCalibrator(method).fit(held_out, head.codes(outcome))
    return calibrator, {"method": method, "inner_cv_folds": len(folds), "n_rows": len(groups)}


def _selection_specs(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        m: dict(spec["selection"])
        for m, spec in config["modalities"].items()
        if isinstance(spec, Mapping) and spec.get("selection")
    }


def fit_pipeline(
    frame: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    config: Mapping[str, Any],
    classes: Sequence[str] | None = None,
    nthread: int = 1,
    frozen_normalisers: Mapping[str, ModalityNormaliser] | None = None,
    survival_times: Mapping[str, Sequence[float]] | None = None,
) -> OmicsPipeline:
    """Fit normalisers, landmark design, XGBoost and the task's head on training subjects only.

    The normalisers are fitted on the rows of ``frame`` (unless ``frozen_normalisers`` gives
    them, already fitted on exactly these samples). The number of boosting rounds is chosen by
    early stopping on a grouped, stratified inner validation split of the training rows; the
    booster is then refitted on all of them with that number of rounds (regression: on all but
    a subject-grouped calibration set, whose residuals set the conformal quantile). Survival
    heads fit their time grid, default horizons and Breslow baseline hazard on the training
    rows.

    Parameters
    ----------
    frame : pandas.DataFrame
        Raw input table of the training samples (:func:`omics_ml.integrate.raw_input_frame`):
        ``modality:feature`` columns (NaN = missing; text features as strings), the batch
        columns that batch-corrected modalities read, and for longitudinal models
        ``subject_id`` and ``visit_time``.
    outcomes : pandas.DataFrame
        Aligned with ``frame``: ``subject_id``, ``label`` and the task's outcome columns
        (``time``/``event``; ``target``).
    config : mapping
        The validated pipeline config (``task``, ``modalities``, ``model``, ``seed`` and the
        task's section).
    classes : sequence of str, optional
        All class labels, in output order (classification).
    nthread : int
        XGBoost threads.
    frozen_normalisers : mapping, optional
        Pre-fitted normalisers to use instead of fitting.
    survival_times : mapping, optional
        ``grid`` and ``horizons`` of the survival curves (fixed for a run by the split step);
        without them the training rows set them.

    Returns
    -------
    OmicsPipeline
    """
    model = config.get("model") or {}
    seed = int(config.get("seed", 42))
    head = head_from_config(config, classes=classes)
    if isinstance(head, SurvivalHead) and survival_times:
        head.grid = np.asarray(survival_times["grid"], dtype=np.float64)
        head.horizons = [float(h) for h in survival_times["horizons"]]
    landmarks = LandmarkSpec.from_config(config)
    positions = _split_columns([c for c in frame.columns if FEATURE_SEPARATOR in str(c)])
    inputs: dict[str, list[str]] = {}
    normalisers: dict[str, ModalityNormaliser] = {}
    for modality, spec in config["modalities"].items():
        feats = positions.get(modality)
        if not feats:
            msg = f"modality {modality!r} has no columns in the training matrix."
            raise ValueError(msg)
        inputs[modality] = feats
        if frozen_normalisers is not None:
            normaliser = frozen_normalisers[modality]
            if list(getattr(normaliser, "feature_names_in_", [])) != feats:
                msg = f"frozen normaliser of {modality!r} was fitted on other features than the training matrix holds."
                raise ValueError(msg)
        else:
            normaliser = normaliser_from_spec(dict(spec), name=modality)
        normalisers[modality] = normaliser
    pipeline = OmicsPipeline(
        head=head,
        inputs=inputs,
        normalisers=normalisers,
        booster=xgb.Booster(),
        landmarks=landmarks,
    )
    blocks = []
    for modality, normaliser in normalisers.items():
        block = pipeline._modality_block(frame, modality)
        batch = None
        if normaliser.uses_batch:
            if normaliser.batch_column not in frame.columns:
                msg = f"modality {modality!r} needs batch labels in column {normaliser.batch_column!r}, which the training table lacks."
                raise ValueError(msg)
            batch = frame[normaliser.batch_column].to_numpy(dtype=object)
        if frozen_normalisers is None:
            # Samples lacking the whole modality do not take part in fitting its normaliser,
            # exactly as in the normalise step (they are not in the modality's file).
            blocks.append(normaliser.fit_transform(block, batch=batch))
        else:
            blocks.append(normaliser.transform(block, batch=batch))
    normalised = np.hstack(blocks).astype(np.float32, copy=False)
    meta, features, feature_names, outcome = pipeline.rows(
        normalised, frame, outcomes.reset_index(drop=True)
    )
    assert outcome is not None
    if features.shape[0] < 4:
        msg = f"only {features.shape[0]} training rows (subjects at risk at the landmarks with an outcome); too few to fit a model."
        raise ValueError(msg)
    groups = (
        meta["subject_id"].astype(str).to_numpy()
        if "subject_id" in meta
        else (outcomes["subject_id"].astype(str).to_numpy())
    )
    head.prepare(outcome)
    params = xgboost_params(model, head=head, seed=seed, nthread=nthread)
    logger.info(
        "XGBoost %s on %d rows x %d features with nthread=%d",
        params.get("objective"),
        features.shape[0],
        features.shape[1],
        nthread,
    )
    tuning = config.get("tuning") or {}
    calibration = (config.get("calibration") or {}).get("method", "none")
    specs = _selection_specs(config)
    design_names = list(feature_names)
    fit_rows = np.arange(features.shape[0])
    calibration_rows = None
    if isinstance(head, RegressionHead):
        # Split conformal: neither selection, tuning nor the served booster sees the
        # calibration subjects.
        fit_rows, calibration_rows = grouped_stratified_split(
            head.strata(outcome), groups, fraction=head.calibration_fraction, seed=seed + 1
        )
    fit_outcome = outcome.take(fit_rows)
    selection = None
    if specs:
        selection = FeatureSelection.fit(
            features[fit_rows],
            design_names,
            fit_outcome,
            task=head.task,
            specs=specs,
            dmatrix_fields=head.dmatrix_fields(fit_outcome),
            params=params,
        )
        features = selection.transform(features)
    booster, info, params = _boost(
        features[fit_rows],
        fit_outcome,
        groups[fit_rows],
        head=head,
        params=params,
        model=model,
        tuning=tuning,
        seed=seed,
    )
    if calibration_rows is not None:
        assert isinstance(head, RegressionHead)
        head.calibrate(
            TaskHead.margin(booster, features[calibration_rows]),
            np.asarray(outcome.target)[calibration_rows],
        )
        info["n_calibration_rows"] = int(calibration_rows.size)
    else:
        head.fit_extras(booster, features, outcome)
    if isinstance(head, ClassificationHead) and calibration != "none":
        head.calibrator, info["calibration"] = _fit_calibration(
            features,
            outcome,
            groups,
            head=head,
            params=params,
            n_rounds=info["n_rounds"],
            method=calibration,
            n_folds=int((config.get("calibration") or {}).get("inner_cv_folds", 5)),
            seed=seed,
        )
    if selection is not None:
        info["selection"] = selection.summary()
    info.update(
        {
            "n_training_rows": int(features.shape[0]),
            "n_training_samples": len(frame),
            "n_training_subjects": len(np.unique(groups)),
            "strata_counts": pd.Series(head.strata(outcome)).value_counts().sort_index().to_dict(),
            "xgboost_params": {k: v for k, v in params.items() if k != "nthread"},
        }
    )
    if landmarks is not None:
        info["design_feature_names"] = design_names
    logger.info(
        "fitted %s on %d rows x %d features, %d rounds (inner %s %.4f)",
        head.task,
        features.shape[0],
        features.shape[1],
        info["n_rounds"],
        params["eval_metric"],
        info["inner_validation_score"],
    )
    pipeline.booster = booster
    pipeline.selection = selection
    pipeline.info = info
    return pipeline
