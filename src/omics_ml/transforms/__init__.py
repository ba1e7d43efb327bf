"""Normalisation steps: scikit-learn transformers fitted on development samples, frozen as JSON.

Importing this package registers every step class, so :func:`step_from_json` can rebuild any of
them from a saved model.
"""

from omics_ml.transforms import (  # noqa: F401  (imported to register the steps)
    batch,
    clinical,
    counts,
    genotype,
    intensity,
    methylation,
)
from omics_ml.transforms.base import (
    STEP_REGISTRY,
    FrozenTransform,
    as_float_matrix,
    register_step,
    step_from_json,
)

__all__ = ["STEP_REGISTRY", "FrozenTransform", "as_float_matrix", "register_step", "step_from_json"]
