"""Intensity steps: generic, proteomics and metabolomics normalisation.

Each step is a :class:`~omics_ml.transforms.base.FrozenTransform`: it learns from development
samples in ``fit``, freezes that state as plain JSON and transforms every sample independently of
the others in the same call.

Generic steps
    :class:`Log2`, :class:`GeneralisedLog`, :class:`MissingnessFilter`, :class:`VarianceFilter`,
    :class:`MedianScaling`, :class:`QuantileNormalisation`, :class:`FeatureScaling`.
Proteomics steps
    :class:`DetectionFilter`, :class:`LeftCensoredImputer`.
Metabolomics steps
    :class:`ProbabilisticQuotientNormalisation` (with :class:`GeneralisedLog` and
    :class:`FeatureScaling`).

Missing-value convention (proteomics)
    A value ``<= detection_limit`` (not NaN) is *below detection*: the feature was looked for
    and not found (core facilities typically write 0). NaN is *not measured*: no observation at
    all. Detection filters count only measured values; the left-censored imputer fills only
    below-detection values and leaves NaN for XGBoost, which handles missing values natively.

:class:`MedianScaling` and :class:`QuantileNormalisation` reproduce, number for number, the
scaling of :class:`omics_ml.normalise.ModalityNormaliser`; :class:`MissingnessFilter` and
:class:`VarianceFilter` reproduce its filters.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtri
from scipy.stats import rankdata

from omics_ml.transforms.base import (
    ElementwiseTransform,
    FeatureFilter,
    FrozenTransform,
    register_step,
)

__all__ = [
    "DetectionFilter",
    "FeatureScaling",
    "GeneralisedLog",
    "LeftCensoredImputer",
    "Log2",
    "MedianScaling",
    "MissingnessFilter",
    "ProbabilisticQuotientNormalisation",
    "QuantileNormalisation",
    "VarianceFilter",
]


# --- helpers ------------------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings of NaN-aware reductions over all-NaN slices and of 0/0."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _finite_number(
    step: str,
    name: str,
    value: object,
    *,
    low: float | None = None,
    low_inclusive: bool = True,
    high: float | None = None,
    example: str,
) -> float:
    """``value`` as a float after checking it is finite and within the bounds."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    ok = bool(np.isfinite(number)) and not isinstance(value, bool)
    if ok and low is not None:
        ok = number >= low if low_inclusive else number > low
    if ok and high is not None:
        ok = number <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>=' if low_inclusive else '>'} {low:g}")
        if high is not None:
            bounds.append(f"<= {high:g}")
        where = f" {' and '.join(bounds)}" if bounds else ""
        msg = f"{step} {name} must be a finite number{where} (e.g. {example}), got {value!r}."
        raise ValueError(msg)
    return number


def _require_samples(step: str, X: NDArray[np.float64], minimum: int = 1) -> None:
    if X.shape[0] < minimum:
        msg = f"{step} needs at least {minimum} development sample(s) to fit, got {X.shape[0]}."
        raise ValueError(msg)


def _first_position(mask: NDArray[np.bool_]) -> tuple[int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows[0]), int(cols[0]), int(rows.size)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_FEATURE_SALT = np.uint64(0xD1B54A32D192ED03)


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Vectorised splitmix64 finaliser (Steele, Lea & Flood 2014): a counter-based hash.

    Integer overflow wraps modulo 2**64, as the algorithm requires.
    """
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def _row_uniforms(X: NDArray[np.float64]) -> NDArray[np.float64]:
    """Uniforms in (0, 1), one per cell, hashed from the cell's own row and column index.

    Row ``i`` of the result depends only on row ``i`` of ``X`` (its exact bits, NaN and -0.0
    canonicalised), so a sample gets the same numbers alone or in any batch.
    """
    n_features = X.shape[1]
    canonical = np.where(np.isnan(X), np.nan, X + 0.0)  # -0.0 + 0.0 == +0.0; one NaN pattern
    bits = np.ascontiguousarray(canonical, dtype=np.float64).view(np.uint64)
    index = np.arange(n_features, dtype=np.uint64)
    column_keys = _splitmix64(index)
    with np.errstate(over="ignore"):
        row_hash = _splitmix64(_splitmix64(bits ^ column_keys).sum(axis=1, dtype=np.uint64))
    feature_keys = _splitmix64(index ^ _FEATURE_SALT)
    cell = _splitmix64(row_hash[:, None] ^ feature_keys[None, :])
    return ((cell >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


# --- generic: log transforms --------------------------------------------------------------


@register_step
class Log2(ElementwiseTransform):
    """``log2(x + pseudocount)`` of raw, non-negative intensities or counts.

    Parameters
    ----------
    pseudocount : float, default=1.0
        Added before the logarithm (>= 0). With ``pseudocount=0`` every value must be positive:
        impute zeros first (e.g. with :class:`LeftCensoredImputer`).

    Notes
    -----
    Element-wise and stateless: ``fit`` only checks the input. NaN stays NaN. Negative values
    raise ``ValueError``: data with negative values are most likely already on a log scale, and
    the log step should be dropped for that modality.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, pseudocount: float = 1.0) -> None:
        self.pseudocount = pseudocount

    def _apply(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        pseudocount = _finite_number(
            "Log2", "pseudocount", self.pseudocount, low=0.0, example="1.0"
        )
        with np.errstate(invalid="ignore"):
            negative = X < 0
        if negative.any():
            row, col, count = _first_position(negative)
            msg = (
                f"Log2 got negative values ({count} in total, first {float(X[row, col]):g} at sample {row}, "
                f"feature {col}): the data look already log-scaled; remove the log2 step from this "
                f"modality's normalisation list."
            )
            raise ValueError(msg)
        if pseudocount == 0:
            with np.errstate(invalid="ignore"):
                zero = X <= 0
            if zero.any():
                row, col, count = _first_position(zero)
                msg = (
                    f"Log2 with pseudocount=0 got values <= 0 ({count} in total, first at sample "
                    f"{row}, feature {col}) whose logarithm is undefined: put an imputer (e.g. "
                    f"LeftCensoredImputer) before Log2, or use a pseudocount > 0."
                )
                raise ValueError(msg)
        return np.log2(X + pseudocount)


@register_step
class GeneralisedLog(ElementwiseTransform):
    """Generalised logarithm ``glog(x) = log_base((x + sqrt(x**2 + lam)) / 2)``.

    Parameters
    ----------
    lam : float, default=1.0
        Transformation parameter (> 0): below about ``sqrt(lam)`` the transform is nearly
        linear, above it it approaches ``log_base(x)``.
    base : float, default=2.0
        Base of the logarithm (> 0, != 1).

    Notes
    -----
    Durbin BP, Hardin JS, Hawkins DM, Rocke DM. "A variance-stabilizing transformation for
    gene-expression microarray data." *Bioinformatics* 18, S105-S110 (2002); used for NMR and MS
    metabolomics by Parsons et al. (2007). Unlike ``log``, it is defined for zero and small
    negative values (baseline-corrected intensities). Stateless and element-wise; NaN stays NaN.
    The negative branch is computed as ``lam / (sqrt(x**2 + lam) - x)`` to avoid cancellation.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, lam: float = 1.0, base: float = 2.0) -> None:
        self.lam = lam
        self.base = base

    def _apply(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        lam = _finite_number(
            "GeneralisedLog", "lam", self.lam, low=0.0, low_inclusive=False, example="1.0"
        )
        base = _finite_number(
            "GeneralisedLog", "base", self.base, low=0.0, low_inclusive=False, example="2.0"
        )
        if base == 1.0:
            msg = "GeneralisedLog base must not be 1 (the logarithm is undefined); use e.g. 2.0."
            raise ValueError(msg)
        root = np.hypot(X, np.sqrt(lam))  # sqrt(x**2 + lam) without overflow
        with np.errstate(divide="ignore", invalid="ignore"):
            inner = np.where(X >= 0, X + root, lam / (root - X)) / 2.0
            if base == 2.0:
                return np.log2(inner)
            return np.log(inner) / np.log(base)


# --- generic: feature filters -------------------------------------------------------------


@register_step
class MissingnessFilter(FeatureFilter):
    """Drop features missing (NaN) in too many development samples.

    Parameters
    ----------
    max_missing_fraction : float, default=0.5
        Drop features missing in more than this fraction of the development samples (in [0, 1]).
        Features with fewer than 2 observed development values are always dropped.

    Attributes
    ----------
    keep_ : ndarray of shape (n_features_in_,), bool
        Features kept.
    missing_fraction_ : ndarray of shape (n_features_in_,)
        Fraction of development samples in which each feature is missing.

    Notes
    -----
    Same rule as the missingness filter of :class:`omics_ml.normalise.ModalityNormaliser`.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("keep_", "missing_fraction_")

    def __init__(self, *, max_missing_fraction: float = 0.5) -> None:
        self.max_missing_fraction = max_missing_fraction

    def fit(
        self, X: ArrayLike, y: object = None, *, batch: ArrayLike | None = None
    ) -> MissingnessFilter:
        """Learn which features are observed often enough.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Development samples; NaN marks a missing value.
        y, batch : ignored

        Returns
        -------
        self
        """
        limit = _finite_number(
            "MissingnessFilter",
            "max_missing_fraction",
            self.max_missing_fraction,
            low=0.0,
            high=1.0,
            example="0.5",
        )
        X = self._check_input(X, reset=True)
        _require_samples("MissingnessFilter", X)
        n_observed = (~np.isnan(X)).sum(axis=0)
        missing_fraction = 1.0 - n_observed / X.shape[0]
        keep = (missing_fraction <= limit) & (n_observed >= 2)
        if not keep.any():
            msg = (
                f"no feature passes MissingnessFilter (max_missing_fraction={self.max_missing_fraction}, "
                f"and at least 2 observed values) on {X.shape[0]} development samples: raise "
                f"max_missing_fraction or check that the modality's values were read correctly."
            )
            raise ValueError(msg)
        self.keep_ = keep
        self.missing_fraction_ = missing_fraction
        return self


@register_step
class VarianceFilter(FeatureFilter):
    """Drop constant and low-variance features; optionally keep only the most variable.

    Parameters
    ----------
    min_variance : float, default=0.0
        Drop features whose development variance (``ddof=1``, NaN ignored) is ``<=`` this
        (>= 0). Constant features (maximum equal to minimum) and features with fewer than two
        observed values count as variance 0 and are always dropped.
    top_n : int or None, default=None
        Keep at most this many features, the most variable in development (ties keep the
        earlier feature).

    Attributes
    ----------
    keep_ : ndarray of shape (n_features_in_,), bool
        Features kept.
    variance_ : ndarray of shape (n_features_in_,)
        Development variance of every input feature (0 for constant or undefined).

    Notes
    -----
    Same rule as the variance and top-variance filters of
    :class:`omics_ml.normalise.ModalityNormaliser`.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("keep_", "variance_")

    def __init__(self, *, min_variance: float = 0.0, top_n: int | None = None) -> None:
        self.min_variance = min_variance
        self.top_n = top_n

    def fit(
        self, X: ArrayLike, y: object = None, *, batch: ArrayLike | None = None
    ) -> VarianceFilter:
        """Learn the development variances and the kept features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Development samples; NaN marks a missing value.
        y, batch : ignored

        Returns
        -------
        self
        """
        min_variance = _finite_number(
            "VarianceFilter", "min_variance", self.min_variance, low=0.0, example="0.0"
        )
        top_n = self.top_n
        if top_n is not None and (
            isinstance(top_n, bool) or not isinstance(top_n, int | np.integer) or top_n < 1
        ):
            msg = f"VarianceFilter top_n must be a positive integer or None (keep all), got {top_n!r}."
            raise ValueError(msg)
        X = self._check_input(X, reset=True)
        _require_samples("VarianceFilter", X)
        with _quiet():
            variance = np.nanvar(X, axis=0, ddof=1)
            # nanvar of a constant column can be ~1e-30 from rounding: call it exactly 0
            constant = np.nanmax(X, axis=0) == np.nanmin(X, axis=0)
        variance = np.where(np.isfinite(variance) & ~constant, variance, 0.0)
        keep = variance > min_variance
        if not keep.any():
            msg = (
                f"no feature passes VarianceFilter (min_variance={self.min_variance}; constant "
                f"features are always dropped) on {X.shape[0]} development samples: lower "
                f"min_variance (it must stay >= 0) or check that the features vary."
            )
            raise ValueError(msg)
        if top_n is not None and keep.sum() > top_n:
            ranked = np.argsort(-np.where(keep, variance, -np.inf), kind="stable")
            keep = np.zeros_like(keep)
            keep[ranked[: int(top_n)]] = True
        self.keep_ = keep
        self.variance_ = variance
        return self


@register_step
class DetectionFilter(FeatureFilter):
    """Proteomics: drop features detected in too few of the development samples that measured them.

    Parameters
    ----------
    min_detection_rate : float, default=0.5
        Keep a feature when it is detected in at least this fraction (in [0, 1]) of the
        development samples that measured it, and in at least 2 samples.
    detection_limit : float, default=0.0
        Values ``<= detection_limit`` are below detection.

    Attributes
    ----------
    keep_ : ndarray of shape (n_features_in_,), bool
        Features kept.
    detection_rate_ : ndarray of shape (n_features_in_,)
        Detected / measured development samples per feature (0 where never measured).
    n_detected_ : ndarray of shape (n_features_in_,), int
        Development samples in which each feature was detected.

    Notes
    -----
    Convention: a value ``> detection_limit`` is *detected*; a value ``<= detection_limit``
    (not NaN) is *below detection* (core facilities typically write 0 for undetected); NaN is
    *not measured* and is no observation, so it counts neither for nor against detection. This
    is the "valid values" filter common in label-free proteomics (e.g. Perseus; Tyanova et al.
    2016, *Nature Methods* 13, 731-740).
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("keep_", "detection_rate_", "n_detected_")

    def __init__(self, *, min_detection_rate: float = 0.5, detection_limit: float = 0.0) -> None:
        self.min_detection_rate = min_detection_rate
        self.detection_limit = detection_limit

    def fit(
        self, X: ArrayLike, y: object = None, *, batch: ArrayLike | None = None
    ) -> DetectionFilter:
        """Learn which features are detected often enough.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Development samples, raw intensities.
        y, batch : ignored

        Returns
        -------
        self
        """
        rate = _finite_number(
            "DetectionFilter",
            "min_detection_rate",
            self.min_detection_rate,
            low=0.0,
            high=1.0,
            example="0.5",
        )
        limit = _finite_number(
            "DetectionFilter", "detection_limit", self.detection_limit, example="0.0"
        )
        X = self._check_input(X, reset=True)
        _require_samples("DetectionFilter", X)
        measured = (~np.isnan(X)).sum(axis=0)
        with np.errstate(invalid="ignore"):
            detected = np.greater(X, limit).sum(axis=0)
        detection_rate = np.where(measured > 0, detected / np.maximum(measured, 1), 0.0)
        keep = (detection_rate >= rate) & (detected >= 2)
        if not keep.any():
            msg = (
                f"no feature passes DetectionFilter (min_detection_rate={self.min_detection_rate}, "
                f"detection_limit={self.detection_limit}, and at least 2 detections) on "
                f"{X.shape[0]} development samples: lower min_detection_rate or detection_limit."
            )
            raise ValueError(msg)
        self.keep_ = keep
        self.detection_rate_ = detection_rate
        self.n_detected_ = detected.astype(np.int64)
        return self


# --- generic: per-sample scaling ----------------------------------------------------------


@register_step
class MedianScaling(FrozenTransform):
    """Shift each sample so that its median equals a frozen reference median.

    Attributes
    ----------
    reference_median_ : float
        Median of the development samples' medians (over observed values).

    Notes
    -----
    Median centring of log-scale intensities, the usual global normalisation of proteomics
    and metabolomics (e.g. Välikangas T, Suomi T, Elo LL. *Briefings in Bioinformatics* 19,
    1-11 (2018)). Apply it on a log scale. A sample's median is taken over its observed
    (non-NaN) values; NaN stays NaN, and a sample with every value missing stays all-NaN.
    Identical to ``scaling="median"`` of :class:`omics_ml.normalise.ModalityNormaliser`.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("reference_median_",)

    def fit(
        self, X: ArrayLike, y: object = None, *, batch: ArrayLike | None = None
    ) -> MedianScaling:
        """Learn the reference median.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Development samples (log scale); NaN marks a missing value.
        y, batch : ignored

        Returns
        -------
        self
        """
        X = self._check_input(X, reset=True)
        _require_samples("MedianScaling", X)
        with _quiet():
            reference = float(np.nanmedian(np.nanmedian(X, axis=1)))
        if not np.isfinite(reference):
            msg = "MedianScaling: every development value is missing, so there is no reference median; check the input or filter first."
            raise ValueError(msg)
        self.reference_median_ = reference
        return self

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Shift each sample to the reference median.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
        batch : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float64
        """
        X = self._check_input(X, reset=False)
        with _quiet():
            return X - np.nanmedian(X, axis=1, keepdims=True) + self.reference_median_


@register_step
class QuantileNormalisation(FrozenTransform):
    """Map each sample's ranks onto a frozen reference distribution.

    Attributes
    ----------
    reference_quantiles_ : ndarray of shape (n_features_in_,)
        Mean over development samples of their quantiles at ``n_features_in_`` evenly spaced
        probabilities in [0, 1] (NaN ignored).

    Notes
    -----
    Quantile normalisation (Bolstad BM, Irizarry RA, Astrand M, Speed TP. *Bioinformatics* 19,
    185-193 (2003)) with a frozen reference so that new samples are mapped alone. A sample's
    value of rank ``r`` among its ``n`` observed values (ties averaged) is mapped to the
    reference at probability ``(r - 1) / (n - 1)`` (0.5 for ``n == 1``) by linear
    interpolation. NaN stays NaN. On complete data without ties, fitting and transforming the
    same samples gives classic quantile normalisation. Identical to ``scaling="quantile"`` of
    :class:`omics_ml.normalise.ModalityNormaliser`.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("reference_quantiles_",)

    def fit(
        self, X: ArrayLike, y: object = None, *, batch: ArrayLike | None = None
    ) -> QuantileNormalisation:
        """Learn the reference distribution.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Development samples; NaN marks a missing value.
        y, batch : ignored

        Returns
        -------
        self
        """
        X = self._check_input(X, reset=True)
        _require_samples("QuantileNormalisation", X)
        if X.shape[1] == 0:
            msg = "QuantileNormalisation needs at least one feature."
            raise ValueError(msg)
        with _quiet():
            probs = np.linspace(0.0, 1.0, X.shape[1])
            per_sample = np.nanquantile(X, probs, axis=1)  # (n_features, n_samples)
            reference = np.nanmean(per_sample, axis=1)
        if not np.isfinite(reference).all():
            msg = "QuantileNormalisation: every development value is missing, so there is no reference distribution; check the input or filter first."
            raise ValueError(msg)
        self.reference_quantiles_ = reference
        return self

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Map each sample onto the reference distribution.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
        batch : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float64
        """
        X = self._check_input(X, reset=False)
        reference = np.asarray(self.reference_quantiles_, dtype=np.float64)
        if X.size == 0:
            return X.copy()
        ranks = rankdata(X, axis=1, nan_policy="omit")  # NaN stays NaN, ties averaged
        n_obs = np.sum(~np.isnan(X), axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(n_obs > 1, (ranks - 1.0) / (n_obs - 1.0), 0.5)
        grid = np.linspace(0.0, 1.0, reference.size)
        mapped = np.interp(np.nan_to_num(fraction, nan=0.0), grid, reference)
        return np.where(np.isnan(X), np.nan, mapped)


@register_step
class FeatureScaling(FrozenTransform):
    """Centre each feature and divide by a frozen scale (pareto or unit-variance scaling).

    Parameters
    ----------
    method : {"pareto", "auto", "none"}, default="pareto"
        ``pareto`` divides by the square root of the development standard deviation, ``auto``
        by the standard deviation (unit variance); ``none`` passes the data through.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features_in_,)
        Development mean of each feature (0 where undefined, and for ``none``).
    scale_ : ndarray of shape (n_features_in_,)
        Divisor of each feature (1 where the standard deviation is 0 or undefined, and for
        ``none``).

    Notes
    -----
    van den Berg RA, Hoefsloot HCJ, Westerhuis JA, Smilde AK, van der Werf MJ. "Centering,
    scaling, and transformations: improving the biological information content of metabolomics
    data." *BMC Genomics* 7, 142 (2006). Standard deviations use ``ddof=1`` and ignore NaN; a
    feature with no observed development value is passed through unchanged.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("mean_", "scale_")
    _METHODS: ClassVar[tuple[str, ...]] = ("pareto", "auto", "none")

    def __init__(self, *, method: str = "pareto") -> None:
        self.method = method

    def fit(
        self, X: ArrayLike, y: object = None, *, batch: ArrayLike | None = None
    ) -> FeatureScaling:
        """Learn the feature means and scales.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Development samples; NaN marks a missing value.
        y, batch : ignored

        Returns
        -------
        self
        """
        if self.method not in self._METHODS:
            msg = f"FeatureScaling method must be one of {self._METHODS}, got {self.method!r}."
            raise ValueError(msg)
        X = self._check_input(X, reset=True)
        n_features = X.shape[1]
        if self.method == "none":
            self.mean_ = np.zeros(n_features)
            self.scale_ = np.ones(n_features)
            return self
        _require_samples("FeatureScaling", X)
        with _quiet():
            mean = np.nanmean(X, axis=0)
            sd = np.nanstd(X, axis=0, ddof=1)
        scale = np.sqrt(sd) if self.method == "pareto" else sd
        self.mean_ = np.where(np.isfinite(mean), mean, 0.0)
        self.scale_ = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return self

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Centre and scale each feature.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
        batch : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float64
        """
        X = self._check_input(X, reset=False)
        return (X - np.asarray(self.mean_, dtype=np.float64)) / np.asarray(
            self.scale_, dtype=np.float64
        )


# --- proteomics: left-censored imputation -------------------------------------------------


@register_step
class LeftCensoredImputer(FrozenTransform):
    """Proteomics: replace below-detection values by small values fitted on development samples.

    Apply it to raw intensities, before :class:`Log2`.

    Parameters
    ----------
    method : {"half_minimum", "downshifted_normal"}, default="half_minimum"
        ``half_minimum`` fills a feature's below-detection values with half the minimum detected
        development value of that feature. ``downshifted_normal`` (Perseus-style) draws, on the
        log2 scale, from ``N(mean - shift * sd, (width * sd)**2)`` with the feature's
        development mean and standard deviation of detected log2 values, and returns
        ``2**draw`` (raw scale).
    detection_limit : float, default=0.0
        Values ``<= detection_limit`` (not NaN) are below detection (>= 0).
    shift : float, default=1.8
        Downshift of the imputation distribution, in standard deviations.
    width : float, default=0.3
        Width of the imputation distribution, as a fraction of the standard deviation (>= 0).

    Attributes
    ----------
    fill_value_ : ndarray of shape (n_features_in_,)
        Half-minimum fill value of each feature; features without any detected development
        value get the global half-minimum (half the smallest detected development value).
    log2_mean_ : ndarray of shape (n_features_in_,)
        Mean of each feature's detected development log2 values (NaN if none).
    log2_sd_ : ndarray of shape (n_features_in_,)
        Standard deviation (``ddof=1``) of each feature's detected development log2 values; a
        feature with fewer than two distinct detected values gets the median of the other
        features' standard deviations. NaN where no estimate exists: ``downshifted_normal``
        then falls back to ``fill_value_``.

    Notes
    -----
    Missing-value convention: a value ``<= detection_limit`` (not NaN) is *below detection*
    (the protein was looked for and not found; core facilities typically write 0) and is
    imputed; NaN means *not measured* (no observation) and stays NaN, which XGBoost handles
    natively.

    ``downshifted_normal`` follows the default imputation of Perseus (Tyanova S, Temu T,
    Sinitcyn P, et al. "The Perseus computational platform for comprehensive analysis of
    (prote)omics data." *Nature Methods* 13, 731-740 (2016)), per feature on development
    samples. The draws are deterministic and row-independent: the uniform of each cell is a
    splitmix64 hash of the sample's own row (its exact values) and the feature index, mapped to
    a standard normal with ``scipy.special.ndtri``. The same row gets the same imputed values
    alone or in any batch; two identical rows get identical values.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("fill_value_", "log2_mean_", "log2_sd_")
    _METHODS: ClassVar[tuple[str, ...]] = ("half_minimum", "downshifted_normal")

    def __init__(
        self,
        *,
        method: str = "half_minimum",
        detection_limit: float = 0.0,
        shift: float = 1.8,
        width: float = 0.3,
    ) -> None:
        self.method = method
        self.detection_limit = detection_limit
        self.shift = shift
        self.width = width

    def _validate_params(self) -> tuple[float, float, float]:
        if self.method not in self._METHODS:
            msg = f"LeftCensoredImputer method must be one of {self._METHODS}, got {self.method!r}."
            raise ValueError(msg)
        limit = _finite_number(
            "LeftCensoredImputer", "detection_limit", self.detection_limit, low=0.0, example="0.0"
        )
        shift = _finite_number("LeftCensoredImputer", "shift", self.shift, example="1.8")
        width = _finite_number("LeftCensoredImputer", "width", self.width, low=0.0, example="0.3")
        return limit, shift, width

    def fit(
        self, X: ArrayLike, y: object = None, *, batch: ArrayLike | None = None
    ) -> LeftCensoredImputer:
        """Learn the per-feature fill values and log2 distributions of detected values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Development samples, raw intensities (not log-scaled).
        y, batch : ignored

        Returns
        -------
        self
        """
        limit, _, _ = self._validate_params()
        X = self._check_input(X, reset=True)
        _require_samples("LeftCensoredImputer", X)
        with np.errstate(invalid="ignore"):
            detected = np.where(np.greater(X, limit), X, np.nan)
        if np.isnan(detected).all():
            msg = (
                f"LeftCensoredImputer: no development value is above detection_limit="
                f"{self.detection_limit}, so there is nothing to impute from: lower detection_limit "
                f"or check that the input holds raw (not log-scaled) intensities."
            )
            raise ValueError(msg)
        with _quiet():
            global_half_minimum = float(np.nanmin(detected)) / 2.0
            half_minimum = np.nanmin(detected, axis=0) / 2.0
            log_detected = np.log2(detected)
            log2_mean = np.nanmean(log_detected, axis=0)
            log2_sd = np.nanstd(log_detected, axis=0, ddof=1)
        usable = np.isfinite(log2_sd) & (log2_sd > 0)
        if usable.any():
            pooled = float(np.median(log2_sd[usable]))
            log2_sd = np.where(usable, log2_sd, np.where(np.isfinite(log2_mean), pooled, np.nan))
        else:
            log2_sd = np.full_like(log2_sd, np.nan)
        self.fill_value_ = np.where(np.isfinite(half_minimum), half_minimum, global_half_minimum)
        self.log2_mean_ = log2_mean
        self.log2_sd_ = log2_sd
        return self

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Fill below-detection values; NaN (not measured) stays NaN.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Raw intensities.
        batch : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float64
        """
        limit, shift, width = self._validate_params()
        X = self._check_input(X, reset=False)
        with np.errstate(invalid="ignore"):
            below = np.less_equal(X, limit)  # False for NaN
        fill = np.asarray(self.fill_value_, dtype=np.float64)
        if self.method == "half_minimum" or not below.any():
            return np.where(below, fill, X)
        mean = np.asarray(self.log2_mean_, dtype=np.float64)
        sd = np.asarray(self.log2_sd_, dtype=np.float64)
        normal = ndtri(_row_uniforms(X))
        with np.errstate(invalid="ignore", over="ignore"):
            drawn = np.exp2((mean - shift * sd) + (width * sd) * normal)
        drawn = np.where(np.isfinite(drawn), drawn, fill)
        return np.where(below, drawn, X)


# --- metabolomics: probabilistic quotient normalisation -----------------------------------


@register_step
class ProbabilisticQuotientNormalisation(FrozenTransform):
    """Metabolomics: divide each sample by its most probable dilution factor (PQN).

    Parameters
    ----------
    integral_first : bool, default=True
        First scale each sample to the frozen median total intensity (sum of its observed
        values) of the development samples (integral normalisation).

    Attributes
    ----------
    reference_total_ : float
        Median development total intensity (1.0, unused, when ``integral_first`` is False).
    reference_spectrum_ : ndarray of shape (n_features_in_,)
        Per-feature median of the (integral-normalised) development samples.

    Notes
    -----
    Dieterle F, Ross A, Schlotterbeck G, Senn H. "Probabilistic quotient normalization as
    robust method to account for dilution of complex biological mixtures. Application in 1H NMR
    metabonomics." *Analytical Chemistry* 78, 4281-4290 (2006). For each sample: the quotients
    sample / reference over the features where both are finite and > 0; the dilution factor is
    their median; the sample is divided by it. Apply to raw (not log-scaled) intensities. A
    sample with every value missing stays all-NaN; a sample with observed values but no usable
    total or quotient raises ``ValueError``.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("reference_total_", "reference_spectrum_")

    def __init__(self, *, integral_first: bool = True) -> None:
        self.integral_first = integral_first

    def _integral(
        self, X: NDArray[np.float64], reference_total: float, *, context: str
    ) -> NDArray[np.float64]:
        """Scale each sample to ``reference_total``; all-NaN samples stay all-NaN."""
        observed = ~np.isnan(X).all(axis=1)
        totals = np.nansum(X, axis=1)
        bad = observed & ~(totals > 0)
        if bad.any():
            rows = np.flatnonzero(bad)
            msg = (
                f"ProbabilisticQuotientNormalisation: {context} sample(s) {rows[:10].tolist()} have "
                f"a total intensity <= 0, so integral normalisation is undefined: PQN needs raw, "
                f"non-negative intensities (not log-scaled); or set integral_first=False."
            )
            raise ValueError(msg)
        with _quiet():
            factor = np.where(observed, reference_total / np.where(observed, totals, 1.0), np.nan)
        return X * factor[:, None]

    def fit(
        self, X: ArrayLike, y: object = None, *, batch: ArrayLike | None = None
    ) -> ProbabilisticQuotientNormalisation:
        """Learn the reference total and the reference spectrum.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Development samples, raw intensities; NaN marks a missing value.
        y, batch : ignored

        Returns
        -------
        self
        """
        if not isinstance(self.integral_first, bool | np.bool_):
            msg = f"ProbabilisticQuotientNormalisation integral_first must be True or False, got {self.integral_first!r}."
            raise ValueError(msg)
        X = self._check_input(X, reset=True)
        _require_samples("ProbabilisticQuotientNormalisation", X)
        observed = ~np.isnan(X).all(axis=1)
        if not observed.any():
            msg = "ProbabilisticQuotientNormalisation: every development value is missing; check the input."
            raise ValueError(msg)
        reference_total = 1.0
        if self.integral_first:
            reference_total = float(np.median(np.nansum(X[observed], axis=1)))
            X = self._integral(X, reference_total, context="development")
        with _quiet():
            spectrum = np.nanmedian(X, axis=0)
        if not (np.isfinite(spectrum) & (spectrum > 0)).any():
            msg = "ProbabilisticQuotientNormalisation: no feature has a positive median over the development samples, so there is no reference spectrum; PQN needs raw, non-negative intensities."
            raise ValueError(msg)
        self.reference_total_ = reference_total
        self.reference_spectrum_ = spectrum
        return self

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Divide each sample by its dilution factor (after integral normalisation if set).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Raw intensities.
        batch : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float64
        """
        X = self._check_input(X, reset=False)
        if self.integral_first:
            X = self._integral(X, float(self.reference_total_), context="input")
        reference = np.asarray(self.reference_spectrum_, dtype=np.float64)
        with _quiet():
            quotients = X / reference
            usable = np.isfinite(quotients) & (X > 0) & (reference > 0)
            dilution = np.nanmedian(np.where(usable, quotients, np.nan), axis=1)
        observed = ~np.isnan(X).all(axis=1)
        bad = observed & ~np.isfinite(dilution)
        if bad.any():
            rows = np.flatnonzero(bad)
            msg = (
                f"ProbabilisticQuotientNormalisation: sample(s) {rows[:10].tolist()} share no "
                f"feature with a positive value in both the sample and the reference spectrum, so "
                f"their dilution factor is undefined: check these samples (all zero or negative?)."
            )
            raise ValueError(msg)
        return X / dilution[:, None]
