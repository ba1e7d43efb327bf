"""The MLflow pyfunc model: raw per-modality values in, per-patient predictions out.

The model is logged "from code" (``mlflow_model_code.py``): its fitted state is the
:class:`~omics_ml.pipeline.OmicsPipeline` directory (JSON + XGBoost UBJ) given as an artifact, so
loading it unpickles nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from omics_ml.pipeline import OmicsPipeline
from omics_ml.twin import TwinModel

__all__ = [
    "MODEL_CODE_PATH",
    "PIPELINE_ARTIFACT",
    "TWIN_ARTIFACT",
    "RawOmicsModel",
    "input_contract",
    "input_example",
    "model_signature",
]

#: Key of the pipeline directory among the model's artifacts.
PIPELINE_ARTIFACT = "pipeline"
#: Key of the what-if model's directory (models trained with a ``treatment`` section).
TWIN_ARTIFACT = "twin"
#: The file MLflow executes to build the model when it is loaded.
MODEL_CODE_PATH = Path(__file__).with_name("mlflow_model_code.py")


class RawOmicsModel(mlflow.pyfunc.PythonModel):
    """Apply the frozen preprocessing and booster to raw ``modality:feature`` columns."""

    def load_context(self, context: Any) -> None:
        """Load the pipeline from the model's artifacts."""
        self.pipeline = OmicsPipeline.load(context.artifacts[PIPELINE_ARTIFACT])
        twin = context.artifacts.get(TWIN_ARTIFACT)
        self.twin = None if twin is None else TwinModel.load(twin)

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None):
        """Predict one row per sample.

        Parameters
        ----------
        context : mlflow.pyfunc.PythonModelContext
        model_input : pandas.DataFrame
            ``sample_id`` and raw ``modality:feature`` columns; absent columns (a whole missing
            modality included) count as missing values.
        params : dict, optional
            ``{"what_if": True}`` returns each patient's predictions under every treatment
            arm and the difference between arms (:meth:`TwinModel.predict_what_if`); only for
            models trained with a ``treatment`` section.

        Returns
        -------
        pandas.DataFrame
            One row per sample (per subject and landmark reached, for longitudinal models)
            with the task's columns; see :meth:`OmicsPipeline.predict_frame`. With
            ``what_if``, one row per sample and arm.
        """
        frame = pd.DataFrame(model_input)
        if params and params.get("what_if"):
            if self.twin is None:
                msg = "this model was trained without a treatment section: it has no what-if predictions."
                raise ValueError(msg)
            return self.twin.predict_what_if(frame)
        return self.pipeline.predict_frame(frame)


def input_contract(
    pipeline: OmicsPipeline, modality_specs: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """How ``omics-ml predict`` reads each modality's raw file, stored in the model's metadata.

    Parameters
    ----------
    pipeline : OmicsPipeline
        The fitted pipeline.
    modality_specs : mapping
        The ``modalities`` config section it was trained with.

    Returns
    -------
    dict
        Per modality: ``orientation``, ``id_column``, ``type``, ``text_features`` (read as
        text) and ``batch_column`` (None unless the modality corrects batch effects).
    """
    return {
        m: {
            "orientation": s.get("orientation", "samples_in_rows"),
            "id_column": s.get("id_column", "sample_id"),
            "type": s.get("type", "other"),
            "text_features": list(pipeline.normalisers[m].text_features_),
            "batch_column": (
                pipeline.normalisers[m].batch_column if pipeline.normalisers[m].uses_batch else None
            ),
        }
        for m, s in modality_specs.items()
    }


def model_signature(pipeline: OmicsPipeline) -> ModelSignature:
    """Signature with every raw input column optional, so a missing modality is allowed.

    Numeric features are doubles; text (categorical) features and batch labels are strings;
    ``subject_id`` and ``visit_time`` identify the visits of longitudinal models. The outputs
    are the task's columns (:meth:`OmicsPipeline.output_columns`).
    """
    text = set(pipeline.text_columns)
    inputs = Schema(
        [
            ColSpec("string", "sample_id", required=False),
            ColSpec("string", "subject_id", required=False),
            ColSpec("double", "visit_time", required=False),
        ]
        + [
            ColSpec("string" if c in text else "double", c, required=False)
            for c in pipeline.input_columns
        ]
        + [ColSpec("string", c, required=False) for c in pipeline.batch_columns]
    )
    outputs = Schema([ColSpec(kind, name) for name, kind in pipeline.output_columns()])
    params = ParamSchema([ParamSpec("what_if", "boolean", False)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(pipeline: OmicsPipeline, raw: pd.DataFrame) -> pd.DataFrame:
    """A one-row input example that is no patient: each raw feature's median (or mode).

    MLflow stores the example with the model and shows it to whoever serves it. Real rows
    would put a patient's raw omics into the artifact, so the example summarises the training
    rows instead: the lower median of every numeric feature (a value that occurs in training,
    so counts stay whole numbers and dosages stay 0, 1 or 2) and the most frequent value of
    every text feature and batch label. A longitudinal model gets one visit at time 0 of an example
    subject.

    Parameters
    ----------
    pipeline : OmicsPipeline
        The fitted pipeline (its raw input columns).
    raw : pandas.DataFrame
        Raw input rows of the training samples (:func:`omics_ml.integrate.raw_input_frame`).

    Returns
    -------
    pandas.DataFrame
        One row with ``sample_id``, ``subject_id``, ``visit_time`` (longitudinal models),
        every raw input column and the batch-label columns.
    """
    text = set(pipeline.text_columns)
    numeric = [c for c in pipeline.input_columns if c not in text]
    row: dict[str, object] = {"sample_id": "example", "subject_id": "example"}
    if pipeline.landmarks is not None:
        row["visit_time"] = 0.0
    medians = raw[numeric].quantile(0.5, interpolation="lower").to_numpy(dtype=np.float64)
    row.update(zip(numeric, medians.tolist(), strict=True))
    for column in [*pipeline.input_columns, *pipeline.batch_columns]:
        if column in text or column in pipeline.batch_columns:
            # ties go to the first value in sorted order, so the example is deterministic
            counts = raw[column].dropna().astype(str).value_counts().sort_index()
            row[column] = str(counts.idxmax()) if len(counts) else None
    ids = [c for c in ("sample_id", "subject_id", "visit_time") if c in row]
    return pd.DataFrame([row])[[*ids, *pipeline.input_columns, *pipeline.batch_columns]]
