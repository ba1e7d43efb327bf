"""Methylation step: beta values to M-values (Du et al. 2010).

Beta values (methylated / total signal, in [0, 1]) are heteroscedastic near 0 and 1; their logit,
the M-value, is approximately homoscedastic and better suited to models that assume comparable
variance across the range.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from omics_ml.transforms.base import ElementwiseTransform, register_step

__all__ = ["BetaToM"]


def _number(value: object) -> float:
    """``value`` as a float, NaN when it is not a number (so that parameter checks fail)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


@register_step
class BetaToM(ElementwiseTransform):
    """Convert methylation beta values to M-values.

    Parameters
    ----------
    offset : float, default=1e-6
        Small positive constant added to numerator and denominator so that beta = 0 and
        beta = 1 give finite M-values (about -19.9 and +19.9 with the default).
    tolerance : float, default=1e-6
        Beta values at most this far below 0 or above 1 (float rounding by array software) are
        clipped to [0, 1]; values further outside raise ``ValueError``.

    Notes
    -----
    ``M = log2((beta + offset) / (1 - beta + offset))``, the M-value of Du P, Zhang X, Huang C-C,
    et al. "Comparison of Beta-value and M-value methods for quantifying methylation levels by
    microarray analysis." *BMC Bioinformatics* 11, 587 (2010). The transform is element-wise and
    stateless: ``fit`` only checks the input and records the number of features. NaN (a missing
    beta value) stays NaN.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, offset: float = 1e-6, tolerance: float = 1e-6) -> None:
        self.offset = offset
        self.tolerance = tolerance

    def _validate_params(self) -> None:
        offset = _number(self.offset)
        if not np.isfinite(offset) or offset <= 0:
            msg = (
                f"BetaToM offset must be a positive finite number (e.g. 1e-6), got {self.offset!r}."
            )
            raise ValueError(msg)
        tolerance = _number(self.tolerance)
        if not np.isfinite(tolerance) or tolerance < 0:
            msg = f"BetaToM tolerance must be a finite number >= 0 (e.g. 1e-6), got {self.tolerance!r}."
            raise ValueError(msg)

    def _checked_beta(self, beta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Beta values clipped to [0, 1] after checking they lie within ``tolerance`` of it."""
        lowest = -float(self.tolerance)
        highest = 1.0 + float(self.tolerance)
        with np.errstate(invalid="ignore"):
            bad = (beta < lowest) | (beta > highest)
        if bad.any():
            rows, cols = np.nonzero(bad)
            value = float(beta[rows[0], cols[0]])
            msg = (
                f"BetaToM: value {value!r} at sample (row) {rows[0]}, feature (column) {cols[0]} "
                f"is outside [0, 1] ({rows.size} such value(s) in total): beta values must be in "
                f"[0, 1]; pass beta values, not M-values or intensities."
            )
            raise ValueError(msg)
        return np.clip(beta, 0.0, 1.0)

    def _apply(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """M-values ``log2((beta + offset) / (1 - beta + offset))`` of the beta values ``X``."""
        self._validate_params()
        beta = self._checked_beta(X)
        offset = float(self.offset)
        return np.log2((beta + offset) / (1.0 - beta + offset))
