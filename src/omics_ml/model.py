"""The MLflow pyfunc model: raw per-modality values in, per-patient predictions out.

The model is logged "from code" (``mlflow_model_code.py``): its fitted state is the
:class:`~omics_ml.pipeline.OmicsPipeline` directory (JSON + XGBoost UBJ) given as an artifact, so
loading it unpickles nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from omics_ml.pipeline import OmicsPipeline

__all__ = ["MODEL_CODE_PATH", "PIPELINE_ARTIFACT", "RawOmicsModel", "model_signature"]

#: Key of the pipeline directory among the model's artifacts.
PIPELINE_ARTIFACT = "pipeline"
#: The file MLflow executes to build the model when it is loaded.
MODEL_CODE_PATH = Path(__file__).with_name("mlflow_model_code.py")


class RawOmicsModel(mlflow.pyfunc.PythonModel):
    """Apply the frozen preprocessing and booster to raw ``modality:feature`` columns."""

    def load_context(self, context: Any) -> None:
        """Load the pipeline from the model's artifacts."""
        self.pipeline = OmicsPipeline.load(context.artifacts[PIPELINE_ARTIFACT])

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None):
        """Predict one row per sample.

        Parameters
        ----------
        context : mlflow.pyfunc.PythonModelContext
        model_input : pandas.DataFrame
            ``sample_id`` and raw ``modality:feature`` columns; absent columns (a whole missing
            modality included) count as missing values.
        params : dict, optional
            Unused.

        Returns
        -------
        pandas.DataFrame
            ``sample_id``, ``predicted_class``, ``prob_<class>``, ``missing_modalities``.
        """
        return self.pipeline.predict_frame(pd.DataFrame(model_input))


def model_signature(pipeline: OmicsPipeline) -> ModelSignature:
    """Signature with every raw input column optional, so a missing modality is allowed.

    Numeric features are doubles; text (categorical) features and batch labels are strings.
    """
    text = set(pipeline.text_columns)
    inputs = Schema(
        [ColSpec("string", "sample_id", required=False)]
        + [
            ColSpec("string" if c in text else "double", c, required=False)
            for c in pipeline.input_columns
        ]
        + [ColSpec("string", c, required=False) for c in pipeline.batch_columns]
    )
    outputs = Schema(
        [ColSpec("string", "sample_id"), ColSpec("string", "predicted_class")]
        + [ColSpec("double", f"prob_{c}") for c in pipeline.classes]
        + [ColSpec("string", "missing_modalities")]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)
