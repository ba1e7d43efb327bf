"""Model code that MLflow runs when it loads an omics-ml model (MLflow "models from code")."""

from mlflow.models import set_model

from omics_ml.model import RawOmicsModel

set_model(RawOmicsModel())
