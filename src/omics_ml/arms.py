"""Treatment arms as text, and each sample's arm code (no model imports: validation uses it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = ["arm_codes_of", "canonical_arm"]


def canonical_arm(value: Any) -> str | None:
    """An arm value as text: 1.0, 1 and True read as "1"; missing as None."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def arm_codes_of(values: pd.Series | Sequence[Any], arms: Sequence[str]) -> NDArray[np.int64]:
    """Position of each value among ``arms`` (canonical text), -1 for missing or another value."""
    text = pd.Series(values, dtype=object).map(canonical_arm)
    codes = np.full(len(text), -1, dtype=np.int64)
    for k, arm in enumerate(arms):
        codes[(text == arm).to_numpy()] = k
    return codes
