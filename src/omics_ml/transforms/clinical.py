"""Clinical step: unit-checked numeric passthrough and frozen one-hot encoding of categories.

Unlike the other steps, the input is a table of mixed types (a pandas DataFrame, or a 2-D object
array whose columns are those seen in ``fit``), not a float matrix.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.utils.validation import check_is_fitted

from omics_ml.transforms.base import FrozenTransform, register_step

__all__ = ["ClinicalEncoder"]

logger = logging.getLogger(__name__)

#: How many unseen category values a warning names.
_MAX_NAMED_UNSEEN = 5


def _row(index: pd.Index, position: int) -> str:
    """``row <position>``, plus the index label when it differs from the position."""
    label = index[position]
    if isinstance(label, int | np.integer) and int(label) == position:
        return f"row {position}"
    return f"row {position} (index {label!r})"


def _strings_and_missing(column: pd.Series) -> tuple[NDArray[np.object_], NDArray[np.bool_]]:
    """Each value as a category string, and the missing-value mask.

    Missing: None, NaN, pd.NA/NaT and empty or blank strings. Strings are stripped of surrounding
    blanks; other values are written with ``str``, integral floats without ``.0`` so that ``2`` and
    ``2.0`` (an integer column that holds NaN in another batch) are the same category.
    """
    values = column.astype(object).reset_index(drop=True)
    try:
        stripped = values.str.strip()  # NaN for non-string values
    except AttributeError:  # no string at all in the column
        stripped = pd.Series(np.nan, index=values.index, dtype=object)
    is_string = stripped.notna().to_numpy()
    missing = values.isna().to_numpy() | (is_string & (stripped == "").to_numpy())
    other = values.astype(str)
    is_number = pd.to_numeric(values.where(~is_string), errors="coerce").notna().to_numpy()
    integral = (~is_string & is_number & other.str.endswith(".0")).to_numpy()
    other = other.where(~integral, other.str.slice(stop=-2))
    strings = np.where(is_string, stripped.to_numpy(), other.to_numpy()).astype(object)
    strings[missing] = None
    return strings, missing


def _as_numbers(
    name: str, column: pd.Series, missing: NDArray[np.bool_], index: pd.Index, hint: str
) -> NDArray[np.float64]:
    """Column as float64 (NaN where missing); ``ValueError`` on text or infinite values."""
    values = column.astype(object).reset_index(drop=True).where(~missing)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~missing & ~np.isfinite(numbers)
    if bad.any():
        positions = np.flatnonzero(bad)
        first = int(positions[0])
        msg = (
            f"ClinicalEncoder: column {name!r} is numeric but {_row(index, first)} holds "
            f"{values.iloc[first]!r}, which is not a finite number ({positions.size} such value(s) "
            f"in total). {hint}"
        )
        raise ValueError(msg)
    return numbers


@register_step
class ClinicalEncoder(FrozenTransform):
    """Encode a clinical table: numeric columns pass through, categorical ones are one-hot encoded.

    Parameters
    ----------
    ranges : dict of str to [float, float], optional
        Plausible ``[min, max]`` of numeric columns, e.g. ``{"age_years": [0, 120], "bmi":
        [10, 80]}``. A value outside its range, in ``fit`` or ``transform``, raises
        ``ValueError`` (a unit mix-up such as months instead of years). Listed columns are numeric.
    categorical : list of str, optional
        Columns to one-hot encode. If None, every column whose non-missing values are not all
        numbers in the development samples (and that is not listed in ``ranges``) is categorical.
        If given, every other column must be numeric.
    max_categories : int, default=50
        Most distinct values a categorical column may have in the development samples.

    Attributes
    ----------
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        Column names seen in ``fit`` (``x0``, ``x1``, ... for an array without names).
    categorical_columns_ : list of str
        Columns that are one-hot encoded.
    categories_ : dict of str to list of str
        Sorted categories of each categorical column, frozen from the development samples.

    Notes
    -----
    The one-hot encoding follows scikit-learn's ``OneHotEncoder(handle_unknown="ignore")``: a
    category unseen in ``fit`` gives 0 in all of its column's outputs (with a warning naming it),
    so that a model trained on the development samples can still score the sample. Unlike
    ``OneHotEncoder``, a missing value gives NaN in all of its column's outputs (XGBoost learns a
    default direction for missing values), and the fitted state is plain JSON.

    Category values are compared as strings: strings stripped of surrounding blanks, other values
    via ``str`` with integral floats written as integers (``2.0`` -> ``"2"``).
    """

    reads_text: ClassVar[bool] = True
    state_attributes: ClassVar[tuple[str, ...]] = (
        "feature_names_in_",
        "categorical_columns_",
        "categories_",
    )

    def __init__(
        self,
        *,
        ranges: Mapping[str, Sequence[float]] | None = None,
        categorical: Sequence[str] | None = None,
        max_categories: int = 50,
    ) -> None:
        self.ranges = ranges
        self.categorical = categorical
        self.max_categories = max_categories

    # ------------------------------------------------------------------ validation helpers
    def _validated_ranges(self) -> dict[str, tuple[float, float]]:
        if self.ranges is None:
            return {}
        if not isinstance(self.ranges, Mapping):
            msg = f"ClinicalEncoder ranges must be a mapping {{column: [min, max]}}, got {type(self.ranges).__name__}."
            raise ValueError(msg)
        ranges: dict[str, tuple[float, float]] = {}
        for name, bounds in self.ranges.items():
            try:
                low, high = (float(b) for b in bounds)
            except (TypeError, ValueError):
                msg = (
                    f"ClinicalEncoder ranges[{name!r}] must be [min, max] numbers, got {bounds!r}."
                )
                raise ValueError(msg) from None
            if not (np.isfinite(low) and np.isfinite(high) and low <= high):
                msg = f"ClinicalEncoder ranges[{name!r}] must be finite [min, max] with min <= max, got {bounds!r}."
                raise ValueError(msg)
            ranges[str(name)] = (low, high)
        return ranges

    def _validate_params(self) -> None:
        if isinstance(self.categorical, str):
            msg = f"ClinicalEncoder categorical must be a list of column names, got the string {self.categorical!r}; write [{self.categorical!r}]."
            raise ValueError(msg)
        if isinstance(self.max_categories, bool) or not isinstance(
            self.max_categories, int | np.integer
        ):
            msg = f"ClinicalEncoder max_categories must be an integer >= 1, got {self.max_categories!r}."
            raise ValueError(msg)
        if self.max_categories < 1:
            msg = f"ClinicalEncoder max_categories must be an integer >= 1, got {self.max_categories!r}."
            raise ValueError(msg)

    def _frame(self, X: Any, *, reset: bool) -> pd.DataFrame:
        """Input as a DataFrame with string column names in fitted order (checked in transform)."""
        if isinstance(X, pd.DataFrame):
            frame = X.copy()
            frame.columns = [str(c) for c in X.columns]
            duplicated = frame.columns[frame.columns.duplicated()].unique().tolist()
            if duplicated:
                msg = f"ClinicalEncoder: the clinical table has duplicated column names {duplicated}; make them unique."
                raise ValueError(msg)
            if reset:
                return frame
            expected = [str(c) for c in self.feature_names_in_]
            missing = [c for c in expected if c not in frame.columns]
            extra = [c for c in frame.columns if c not in expected]
            if missing or extra:
                msg = (
                    f"ClinicalEncoder was fitted on columns {expected} but the table "
                    f"lacks {missing} and has unexpected {extra}; pass the same clinical columns "
                    f"as in training."
                )
                raise ValueError(msg)
            return frame[expected]
        array = np.asarray(X, dtype=object)
        if array.ndim != 2:
            msg = f"ClinicalEncoder input must be a DataFrame or a 2-D array (samples x columns), got shape {array.shape}."
            raise ValueError(msg)
        if reset:
            names = [f"x{i}" for i in range(array.shape[1])]
        else:
            names = [str(c) for c in self.feature_names_in_]
            if array.shape[1] != len(names):
                msg = f"ClinicalEncoder was fitted on {len(names)} columns {names} but got an array with {array.shape[1]}; pass a DataFrame or the columns in the fitted order."
                raise ValueError(msg)
        return pd.DataFrame(array, columns=names)

    def _check_range(
        self,
        name: str,
        numbers: NDArray[np.float64],
        bounds: tuple[float, float],
        index: pd.Index,
    ) -> None:
        low, high = bounds
        with np.errstate(invalid="ignore"):
            bad = (numbers < low) | (numbers > high)
        if bad.any():
            positions = np.flatnonzero(bad)
            first = int(positions[0])
            msg = (
                f"ClinicalEncoder: column {name!r}, {_row(index, first)}: value "
                f"{numbers[first]:g} is outside the plausible range [{low:g}, {high:g}] "
                f"({positions.size} value(s) outside in total). Check the units (e.g. months "
                f"instead of years, or grams instead of kilograms) or the range in the config."
            )
            raise ValueError(msg)

    # ------------------------------------------------------------------ fit / transform
    def fit(
        self, X: Any, y: ArrayLike | None = None, *, batch: ArrayLike | None = None
    ) -> ClinicalEncoder:
        """Decide which columns are categorical and freeze their categories.

        Parameters
        ----------
        X : pandas.DataFrame or 2-D array of shape (n_samples, n_columns)
            Clinical table of the development samples; None, NaN and empty strings are missing.
        y, batch : ignored

        Returns
        -------
        self : ClinicalEncoder
        """
        self._validate_params()
        ranges = self._validated_ranges()
        frame = self._frame(X, reset=True)
        if frame.shape[1] == 0:
            msg = "ClinicalEncoder: the clinical table has no columns."
            raise ValueError(msg)
        names = list(frame.columns)
        unknown = [c for c in ranges if c not in names]
        if unknown:
            msg = f"ClinicalEncoder ranges name columns {unknown} that are not in the clinical table (columns: {names}); fix the names in the config."
            raise ValueError(msg)
        requested = None if self.categorical is None else [str(c) for c in self.categorical]
        if requested is not None:
            unknown = [c for c in requested if c not in names]
            if unknown:
                msg = f"ClinicalEncoder categorical names columns {unknown} that are not in the clinical table (columns: {names}); fix the names in the config."
                raise ValueError(msg)
            both = [c for c in requested if c in ranges]
            if both:
                msg = f"ClinicalEncoder: columns {both} are listed both in categorical and in ranges; a column is either categorical or numeric."
                raise ValueError(msg)

        index = frame.index
        categorical: list[str] = []
        categories: dict[str, list[str]] = {}
        for name in names:
            strings, missing = _strings_and_missing(frame[name])
            if requested is None:
                parsed = pd.to_numeric(pd.Series(strings[~missing]), errors="coerce")
                is_categorical = name not in ranges and bool(parsed.isna().any())
            else:
                is_categorical = name in requested
            if not is_categorical:
                hint = (
                    "Fix the value (numbers only; leave missing values empty)."
                    if name in ranges or requested is None
                    else "Fix the value, or list the column under categorical."
                )
                numbers = _as_numbers(name, frame[name], missing, index, hint)
                if name in ranges:
                    self._check_range(name, numbers, ranges[name], index)
                continue
            levels = sorted(set(strings[~missing].tolist()))
            if not levels:
                msg = f"ClinicalEncoder: categorical column {name!r} has only missing values in the development samples; drop it from the clinical table."
                raise ValueError(msg)
            if len(levels) > self.max_categories:
                msg = (
                    f"ClinicalEncoder: column {name!r} has {len(levels)} distinct values in the "
                    f"development samples, more than max_categories={self.max_categories} (e.g. "
                    f"{levels[:5]}). Check that the column is really categorical (not an "
                    f"identifier, free text, or numbers with a few text entries such as '<5'); "
                    f"give numeric columns a range, or raise max_categories."
                )
                raise ValueError(msg)
            categorical.append(name)
            categories[name] = levels

        self.n_features_in_ = len(names)
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.categorical_columns_ = categorical
        self.categories_ = categories
        return self

    def transform(self, X: Any, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Encode a clinical table with the frozen categories.

        Parameters
        ----------
        X : pandas.DataFrame or 2-D array of shape (n_samples, n_columns)
            The columns seen in ``fit`` (selected by name from a DataFrame, by position from an
            array).
        batch : ignored

        Returns
        -------
        encoded : ndarray of shape (n_samples, n_features_out), float64
            Numeric columns as they are; one 0/1 column per frozen category of each categorical
            column (all NaN where the value is missing, all 0 for an unseen category). Column names
            are given by :meth:`get_feature_names_out`.
        """
        check_is_fitted(self, "n_features_in_")
        self._validate_params()
        ranges = self._validated_ranges()
        frame = self._frame(X, reset=False)
        index = frame.index
        categorical = set(self.categorical_columns_)
        blocks: list[NDArray[np.float64]] = []
        for name in frame.columns:
            strings, missing = _strings_and_missing(frame[name])
            if name not in categorical:
                hint = "Fix the value (numbers only; leave missing values empty)."
                numbers = _as_numbers(name, frame[name], missing, index, hint)
                if name in ranges:
                    self._check_range(name, numbers, ranges[name], index)
                blocks.append(numbers[:, None])
                continue
            levels = list(self.categories_[name])
            codes = pd.Categorical(strings, categories=levels).codes
            onehot = (codes[:, None] == np.arange(len(levels))[None, :]).astype(np.float64)
            onehot[missing] = np.nan
            unseen = (codes < 0) & ~missing
            if unseen.any():
                values = sorted(set(strings[unseen].tolist()))
                shown = ", ".join(repr(v) for v in values[:_MAX_NAMED_UNSEEN])
                more = (
                    f" and {len(values) - _MAX_NAMED_UNSEEN} more"
                    if len(values) > _MAX_NAMED_UNSEEN
                    else ""
                )
                msg = (
                    f"ClinicalEncoder: column {name!r} has {int(unseen.sum())} sample(s) with "
                    f"categories not seen in the development samples ({shown}{more}); they are "
                    f"encoded as 0 in every {name!r} one-hot column. Check the spelling/coding "
                    f"of these values (known: {levels[:10]})."
                )
                warnings.warn(msg, UserWarning, stacklevel=3)
                logger.warning(msg)
            blocks.append(onehot)
        return np.hstack(blocks).astype(np.float64, copy=False)

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """Output column names: numeric columns keep their name, categorical ones expand.

        Parameters
        ----------
        input_features : array-like of str, optional
            Names of the input columns (default: ``feature_names_in_``).

        Returns
        -------
        names : ndarray of str
            ``"<column>"`` for a numeric column, ``"<column>=<category>"`` for each frozen
            category of a categorical column, in input column order.
        """
        check_is_fitted(self, "n_features_in_")
        fitted = [str(c) for c in self.feature_names_in_]
        if input_features is None:
            given = fitted
        else:
            given = [str(c) for c in np.asarray(input_features, dtype=object).ravel()]
            if len(given) != len(fitted):
                msg = f"ClinicalEncoder: input_features has {len(given)} names but the encoder was fitted on {len(fitted)} columns {fitted}."
                raise ValueError(msg)
        categorical = set(self.categorical_columns_)
        names: list[str] = []
        for fitted_name, name in zip(fitted, given, strict=True):
            if fitted_name in categorical:
                names.extend(f"{name}={level}" for level in self.categories_[fitted_name])
            else:
                names.append(name)
        return np.asarray(names, dtype=object)
