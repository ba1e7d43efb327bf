"""The deployable model: per-modality normalisers plus an XGBoost booster, frozen as JSON + UBJ.

:class:`OmicsPipeline` is what cross-validation fits per fold, what ``train_final`` fits on the
development subjects, and what the registered MLflow model serves: one code path from raw
per-modality values (columns named ``modality:feature``) to class probabilities.
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

from omics_ml.integrate import FEATURE_SEPARATOR, qualified_names
from omics_ml.io import atomic_output, read_json, write_json
from omics_ml.normalise import ModalityNormaliser, normaliser_from_spec
from omics_ml.split import grouped_stratified_split

__all__ = ["BOOSTER_FILE", "STATE_FILE", "OmicsPipeline", "fit_pipeline", "xgboost_params"]

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
BOOSTER_FILE = "booster.ubj"
FORMAT_VERSION = 1


def xgboost_params(
    model: Mapping[str, Any], *, n_classes: int, seed: int, nthread: int
) -> dict[str, Any]:
    """XGBoost training parameters for a classification task from the ``model`` config section."""
    params: dict[str, Any] = {
        "tree_method": "hist",
        "learning_rate": model.get("learning_rate", 0.05),
        "max_depth": model.get("max_depth", 3),
        "min_child_weight": model.get("min_child_weight", 1.0),
        "subsample": model.get("subsample", 0.8),
        "colsample_bytree": model.get("colsample_bytree", 0.5),
        "reg_lambda": model.get("reg_lambda", 1.0),
        "max_bin": model.get("max_bin", 64),
        "device": model.get("device", "cpu"),
        "seed": seed,
        "nthread": nthread,
    }
    if n_classes == 2:
        params.update(objective="binary:logistic", eval_metric="logloss")
    else:
        params.update(objective="multi:softprob", eval_metric="mlogloss", num_class=n_classes)
    return params


def _class_weights(y: NDArray[np.int64], n_classes: int, mode: str) -> NDArray[np.float32]:
    if mode == "none":
        return np.ones(y.shape[0], dtype=np.float32)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = y.shape[0] / (n_classes * np.maximum(counts, 1.0))
    return weights[y].astype(np.float32)


@dataclass
class OmicsPipeline:
    """Fitted preprocessing and booster.

    Attributes
    ----------
    classes : list of str
        Class labels in the order of the probability columns.
    inputs : dict of str to list of str
        Raw input features of each modality (unqualified names), in training order.
    normalisers : dict of str to ModalityNormaliser
        Fitted normaliser of each modality.
    booster : xgboost.Booster
        The fitted booster; its feature ``i`` is ``feature_names[i]``.
    info : dict
        Training facts (rounds, early-stopping score, sample counts), stored with the state.
    """

    classes: list[str]
    inputs: dict[str, list[str]]
    normalisers: dict[str, ModalityNormaliser]
    booster: xgb.Booster
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """Qualified names of the features the booster sees."""
        names: list[str] = []
        for modality, normaliser in self.normalisers.items():
            names.extend(qualified_names(modality, normaliser.get_feature_names_out().tolist()))
        return names

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
            text = set(normaliser.text_features_)
        else:  # not fitted yet: text columns are those the raw table holds as objects
            text = {c for c in block.columns if block[c].dtype == object}
        numeric = [c for c in block.columns if c not in text]
        # Only columns that arrive as objects (e.g. numbers read as text) need parsing.
        parse = block[numeric].select_dtypes(exclude="number").columns
        if len(parse):
            block[parse] = block[parse].apply(pd.to_numeric, errors="coerce")
        block[numeric] = block[numeric].astype(np.float64)
        for column in text:
            values = block[column].astype(object)
            block[column] = values.where(values.notna(), None)
        return block

    def transform(self, frame: pd.DataFrame) -> NDArray[np.float32]:
        """Normalise raw values with the frozen per-modality state.

        Parameters
        ----------
        frame : pandas.DataFrame
            One row per sample; raw ``modality:feature`` columns and, for modalities with batch
            correction, the batch-label column. Columns the model does not know are ignored;
            known columns that are absent count as missing.

        Returns
        -------
        ndarray of shape (n_samples, n_model_features), float32
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

    def predict_proba(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        """Class probabilities of shape (n_samples, n_classes) from a raw input table."""
        features = self.transform(frame)
        raw = self.booster.inplace_predict(features, validate_features=False)
        raw = np.asarray(raw, dtype=np.float64)
        if len(self.classes) == 2:
            return np.column_stack([1.0 - raw, raw])
        proba = raw.reshape(features.shape[0], len(self.classes))
        return proba / proba.sum(axis=1, keepdims=True)  # exact sums after float32 -> float64

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-sample predictions from a raw input table.

        Parameters
        ----------
        frame : pandas.DataFrame
            One row per sample; a ``sample_id`` column (optional), raw ``modality:feature``
            columns and any batch-label columns.

        Returns
        -------
        pandas.DataFrame
            ``sample_id``, ``predicted_class``, ``prob_<class>`` per class and
            ``missing_modalities`` (semicolon-separated modalities with no value for the sample).
        """
        proba = self.predict_proba(frame)
        sample_ids = (
            frame["sample_id"].astype(str).to_numpy()
            if "sample_id" in frame
            else frame.index.astype(str)
        )
        out = pd.DataFrame({"sample_id": sample_ids})
        out["predicted_class"] = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        for k, label in enumerate(self.classes):
            out[f"prob_{label}"] = proba[:, k]
        missing = np.column_stack(
            [
                ~frame.reindex(columns=qualified_names(m, feats)).notna().to_numpy().any(axis=1)
                for m, feats in self.inputs.items()
            ]
        )
        names = np.asarray([f"{m};" for m in self.inputs], dtype=object)
        joined = np.where(missing, names, "").sum(axis=1)  # string concatenation per row
        out["missing_modalities"] = pd.Series(joined, dtype=object).str.rstrip(";").to_numpy()
        return out

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``state.json`` (preprocessing, classes, training facts) and ``booster.ubj``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "format_version": FORMAT_VERSION,
            "task": "classification",
            "classes": self.classes,
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
        return cls(
            classes=list(state["classes"]),
            inputs={m["name"]: list(m["input_features"]) for m in state["modalities"]},
            normalisers={
                m["name"]: ModalityNormaliser.from_json(m["normaliser"])
                for m in state["modalities"]
            },
            booster=booster,
            info=state.get("info", {}),
        )


def _split_columns(columns: Sequence[str]) -> dict[str, list[str]]:
    """Unqualified feature names of each modality, in column order."""
    by_modality: dict[str, list[str]] = {}
    for column in columns:
        modality, _, feature = str(column).partition(FEATURE_SEPARATOR)
        by_modality.setdefault(modality, []).append(feature)
    return by_modality


def fit_pipeline(
    frame: pd.DataFrame,
    labels: Sequence[str],
    groups: Sequence[str],
    *,
    modality_specs: Mapping[str, Mapping[str, Any]],
    model: Mapping[str, Any],
    classes: Sequence[str],
    seed: int,
    nthread: int = 1,
    frozen_normalisers: Mapping[str, ModalityNormaliser] | None = None,
) -> OmicsPipeline:
    """Fit normalisers and XGBoost on training samples only.

    The normalisers are fitted on the rows of ``frame`` (unless ``frozen_normalisers`` gives them,
    already fitted on exactly these samples); the number of boosting rounds is chosen by early
    stopping on a grouped, stratified inner validation split of these samples; the booster is then
    refitted on all of them with that number of rounds.

    Parameters
    ----------
    frame : pandas.DataFrame
        Raw input table of the training samples (:func:`omics_ml.integrate.raw_input_frame`):
        ``modality:feature`` columns (NaN = missing; text features as strings) and the batch
        columns that batch-corrected modalities read.
    labels, groups : sequence of str
        Class label and subject id of each sample.
    modality_specs : mapping
        Config entry of each modality (normalisation settings).
    model : mapping
        The ``model`` config section.
    classes : sequence of str
        All class labels, in output order.
    seed, nthread : int
        XGBoost seed and threads.
    frozen_normalisers : mapping, optional
        Pre-fitted normalisers to use instead of fitting.

    Returns
    -------
    OmicsPipeline
    """
    classes = [str(c) for c in classes]
    class_index = {c: i for i, c in enumerate(classes)}
    y = np.fromiter((class_index[str(v)] for v in labels), dtype=np.int64, count=len(labels))
    groups_arr = np.asarray(groups)
    positions = _split_columns([c for c in frame.columns if FEATURE_SEPARATOR in str(c)])
    inputs: dict[str, list[str]] = {}
    normalisers: dict[str, ModalityNormaliser] = {}
    for modality, spec in modality_specs.items():
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
        classes=classes, inputs=inputs, normalisers=normalisers, booster=xgb.Booster()
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
    features = np.hstack(blocks).astype(np.float32, copy=False)
    weights = _class_weights(y, len(classes), str(model.get("class_weight", "balanced")))
    params = xgboost_params(model, n_classes=len(classes), seed=seed, nthread=nthread)
    max_bin = int(params["max_bin"])

    fit_idx, val_idx = grouped_stratified_split(
        y, groups_arr, fraction=float(model.get("inner_validation_fraction", 0.2)), seed=seed
    )
    dtrain = xgb.QuantileDMatrix(
        features[fit_idx], label=y[fit_idx], weight=weights[fit_idx], max_bin=max_bin
    )
    dval = xgb.QuantileDMatrix(
        features[val_idx], label=y[val_idx], weight=weights[val_idx], ref=dtrain, max_bin=max_bin
    )
    stopper = xgb.train(
        params,
        dtrain,
        num_boost_round=int(model.get("n_estimators", 500)),
        evals=[(dval, "inner_validation")],
        early_stopping_rounds=int(model.get("early_stopping_rounds", 30)),
        verbose_eval=False,
    )
    n_rounds = int(stopper.best_iteration) + 1
    dall = xgb.QuantileDMatrix(features, label=y, weight=weights, max_bin=max_bin)
    booster = xgb.train(params, dall, num_boost_round=n_rounds, verbose_eval=False)
    info = {
        "n_rounds": n_rounds,
        "inner_validation_score": float(stopper.best_score),
        "inner_validation_metric": params["eval_metric"],
        "n_training_samples": len(labels),
        "n_training_subjects": len(np.unique(groups_arr)),
        "n_inner_fit_samples": int(fit_idx.size),
        "n_inner_validation_samples": int(val_idx.size),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "xgboost_params": {k: v for k, v in params.items() if k != "nthread"},
    }
    logger.info(
        "fitted %d features, %d rounds (inner %s %.4f)",
        features.shape[1],
        n_rounds,
        params["eval_metric"],
        stopper.best_score,
    )
    pipeline.booster = booster
    pipeline.info = info
    return pipeline
