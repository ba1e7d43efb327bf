"""Per-modality normalisation fitted on training samples and frozen as JSON.

A :class:`ModalityNormaliser` applies, in order: an optional log2 transform, feature filters
(missingness, variance, top-variance) and a per-sample scaling to a reference (median or quantile).
Every learned quantity (kept features, reference median, reference quantiles) comes from the
samples passed to :meth:`ModalityNormaliser.fit`; :meth:`~ModalityNormaliser.transform` applies
the frozen state to any sample, one new patient included.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from omics_ml.io import InputError, atomic_output, read_json, read_matrix, write_json

__all__ = [
    "TYPE_DEFAULTS",
    "ModalityNormaliser",
    "normalise_modality_file",
    "normaliser_from_spec",
]

logger = logging.getLogger(__name__)

#: Default log transform and scaling for each modality type (used when the config leaves them null).
TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "rnaseq_counts": {"log_transform": True, "scaling": "median"},
    "proteomics": {"log_transform": True, "scaling": "median"},
    "metabolomics": {"log_transform": True, "scaling": "median"},
    "transcriptomics": {"log_transform": False, "scaling": "median"},
    "methylation": {"log_transform": False, "scaling": "none"},
    "genotype": {"log_transform": False, "scaling": "none"},
    "clinical": {"log_transform": False, "scaling": "none"},
    "other": {"log_transform": False, "scaling": "none"},
}
_SCALINGS = ("none", "median", "quantile")
_STATE_VERSION = 1


class ModalityNormaliser(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Log transform, filter features and scale samples to a frozen reference.

    Parameters
    ----------
    log_transform : bool, default=False
        Apply ``log2(x + pseudocount)`` first; negative values are then an error.
    pseudocount : float, default=1.0
        Added before the log transform.
    scaling : {"none", "median", "quantile"}, default="none"
        ``median`` shifts each sample so that its median over the kept features equals the
        reference median (the median of the training samples' medians). ``quantile`` maps each
        sample's ranks onto the reference distribution (the mean of the training samples'
        quantiles), ignoring missing values. Both act on the (log) scale after filtering.
    max_missing_fraction : float, default=0.5
        Drop features missing in more than this fraction of the training samples.
    min_variance : float, default=0.0
        Drop features whose variance over the training samples is not above this.
    top_variance : int or None, default=None
        Keep at most this many features, the most variable in training.

    Attributes
    ----------
    n_features_in_ : int
        Number of input features seen in ``fit``.
    keep_ : ndarray of shape (n_features_in_,), bool
        Features that pass the filters.
    reference_median_ : float
        Reference median (``scaling="median"``).
    reference_quantiles_ : ndarray of shape (n_kept,)
        Reference distribution at evenly spaced probabilities (``scaling="quantile"``).

    Notes
    -----
    The transform keeps only the kept features, so its output has ``keep_.sum()`` columns. A
    sample with every value missing stays missing (XGBoost treats NaN natively).
    """

    def __init__(
        self,
        *,
        log_transform: bool = False,
        pseudocount: float = 1.0,
        scaling: str = "none",
        max_missing_fraction: float = 0.5,
        min_variance: float = 0.0,
        top_variance: int | None = None,
    ) -> None:
        self.log_transform = log_transform
        self.pseudocount = pseudocount
        self.scaling = scaling
        self.max_missing_fraction = max_missing_fraction
        self.min_variance = min_variance
        self.top_variance = top_variance

    def _log(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        if not self.log_transform:
            return X
        if np.any(X < 0):
            msg = "log_transform=True needs non-negative values, but X holds negative values; set log_transform: false for data already on a log scale."
            raise ValueError(msg)
        return np.log2(X + self.pseudocount)

    def fit(self, X: ArrayLike, y: object = None) -> ModalityNormaliser:
        """Learn the feature filters and the scaling reference from ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Raw values of the training samples; NaN marks a missing value.
        y : ignored

        Returns
        -------
        self
        """
        if self.scaling not in _SCALINGS:
            msg = f"scaling must be one of {_SCALINGS}, got {self.scaling!r}."
            raise ValueError(msg)
        X = validate_data(
            self, X, dtype=np.float64, ensure_all_finite="allow-nan", ensure_min_samples=2
        )
        Z = self._log(X)
        observed = ~np.isnan(Z)
        n_observed = observed.sum(axis=0)
        keep = (1.0 - n_observed / Z.shape[0]) <= self.max_missing_fraction
        keep &= n_observed >= 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            variance = np.nanvar(Z, axis=0, ddof=1)
            # nanvar of a constant column can be ~1e-30 from rounding: call it exactly 0
            constant = np.nanmax(Z, axis=0) == np.nanmin(Z, axis=0)
        variance = np.where(np.isfinite(variance) & ~constant, variance, 0.0)
        keep &= variance > self.min_variance
        if self.top_variance is not None and keep.sum() > self.top_variance:
            ranked = np.argsort(-np.where(keep, variance, -np.inf), kind="stable")
            keep = np.zeros_like(keep)
            keep[ranked[: self.top_variance]] = True
        if not keep.any():
            msg = (
                f"no feature passes the filters (max_missing_fraction={self.max_missing_fraction}, "
                f"min_variance={self.min_variance}) on {Z.shape[0]} training samples; relax them."
            )
            raise ValueError(msg)
        self.keep_ = keep
        self.variance_ = variance
        Zk = Z[:, keep]
        self.reference_median_ = 0.0
        self.reference_quantiles_ = np.empty(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if self.scaling == "median":
                self.reference_median_ = float(np.nanmedian(np.nanmedian(Zk, axis=1)))
            elif self.scaling == "quantile":
                probs = np.linspace(0.0, 1.0, Zk.shape[1])
                per_sample = np.nanquantile(Zk, probs, axis=1)  # (n_kept, n_samples)
                self.reference_quantiles_ = np.nanmean(per_sample, axis=1)
        return self

    def transform(self, X: ArrayLike) -> NDArray[np.float32]:
        """Apply the frozen transform.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Raw values; NaN marks a missing value.

        Returns
        -------
        ndarray of shape (n_samples, n_kept), float32
        """
        check_is_fitted(self, "keep_")
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        Zk = self._log(X)[:, self.keep_]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if self.scaling == "median":
                Zk = Zk - np.nanmedian(Zk, axis=1, keepdims=True) + self.reference_median_
            elif self.scaling == "quantile":
                Zk = self._quantile_map(Zk)
        return Zk.astype(np.float32)

    def _quantile_map(self, Zk: NDArray[np.float64]) -> NDArray[np.float64]:
        ranks = rankdata(Zk, axis=1, nan_policy="omit")  # NaN stays NaN, ties averaged
        n_obs = np.sum(~np.isnan(Zk), axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(n_obs > 1, (ranks - 1.0) / (n_obs - 1.0), 0.5)
        grid = np.linspace(0.0, 1.0, self.reference_quantiles_.size)
        mapped = np.interp(np.nan_to_num(fraction, nan=0.0), grid, self.reference_quantiles_)
        return np.where(np.isnan(Zk), np.nan, mapped)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = []  # always returns float32
        return tags

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """Names of the kept features."""
        check_is_fitted(self, "keep_")
        names = super().get_feature_names_out(input_features)
        return names[self.keep_]

    def to_json(self) -> dict[str, Any]:
        """Fitted state as a JSON-serialisable dict (no pickle)."""
        check_is_fitted(self, "keep_")
        return {
            "state_version": _STATE_VERSION,
            "params": self.get_params(),
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": (
                [str(n) for n in self.feature_names_in_]
                if hasattr(self, "feature_names_in_")
                else None
            ),
            "keep": [bool(k) for k in self.keep_],
            "variance": [float(v) for v in self.variance_],
            "reference_median": float(self.reference_median_),
            "reference_quantiles": [float(q) for q in self.reference_quantiles_],
        }

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> ModalityNormaliser:
        """Rebuild a fitted normaliser from :meth:`to_json` output."""
        if state.get("state_version") != _STATE_VERSION:
            msg = f"unsupported normaliser state_version {state.get('state_version')!r}; expected {_STATE_VERSION}."
            raise ValueError(msg)
        obj = cls(**state["params"])
        obj.n_features_in_ = int(state["n_features_in"])
        if state.get("feature_names_in") is not None:
            obj.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        obj.keep_ = np.asarray(state["keep"], dtype=bool)
        obj.variance_ = np.asarray(state["variance"], dtype=np.float64)
        obj.reference_median_ = float(state["reference_median"])
        obj.reference_quantiles_ = np.asarray(state["reference_quantiles"], dtype=np.float64)
        return obj


def resolve_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """Normaliser keyword arguments for one modality's config entry, type defaults filled in."""
    kind = spec.get("type", "other")
    defaults = TYPE_DEFAULTS.get(kind, TYPE_DEFAULTS["other"])
    log_transform = spec.get("log_transform")
    scaling = spec.get("scaling")
    return {
        "log_transform": defaults["log_transform"]
        if log_transform is None
        else bool(log_transform),
        "pseudocount": float(spec.get("pseudocount", 1.0)),
        "scaling": defaults["scaling"] if scaling is None else str(scaling),
        "max_missing_fraction": float(spec.get("max_missing_fraction", 0.5)),
        "min_variance": float(spec.get("min_variance", 0.0)),
        "top_variance": spec.get("top_variance"),
    }


def normaliser_from_spec(spec: dict[str, Any]) -> ModalityNormaliser:
    """An unfitted :class:`ModalityNormaliser` configured from a modality's config entry."""
    return ModalityNormaliser(**resolve_settings(spec))


def normalise_modality_file(
    name: str,
    spec: dict[str, Any],
    *,
    splits: str | os.PathLike[str],
    h5ad_out: str | os.PathLike[str],
    params_out: str | os.PathLike[str],
) -> None:
    """Fit one modality's normaliser on development samples and write data and frozen state.

    Parameters
    ----------
    name : str
        Modality name (the config key).
    spec : dict
        The modality's config entry (``path``, ``orientation``, ``id_column``, normalisation keys).
    splits : path-like
        ``splits.json`` written by :func:`omics_ml.split.write_splits`; only its development
        samples are used to fit.
    h5ad_out : path-like
        AnnData with ``layers["raw"]`` (float32 raw values of every sample in the file), ``X`` the
        development-fitted normalisation (NaN for filtered-out features) and ``var["kept"]``.
    params_out : path-like
        JSON with the fitted state (:meth:`ModalityNormaliser.to_json`) and the settings.
    """
    matrix = read_matrix(
        spec["path"],
        orientation=spec.get("orientation", "samples_in_rows"),
        id_column=spec.get("id_column", "sample_id"),
    )
    split = read_json(splits)
    development = set(split["development"])
    is_dev = np.fromiter(
        (s in development for s in matrix.sample_ids), dtype=bool, count=len(matrix.sample_ids)
    )
    if not is_dev.any():
        msg = f"{spec['path']}: no development sample has modality {name!r}; it cannot be fitted."
        raise InputError(msg)
    frame = pd.DataFrame(matrix.values[is_dev], columns=matrix.feature_names)
    normaliser = normaliser_from_spec(spec).fit(frame)
    transformed = np.full(matrix.values.shape, np.nan, dtype=np.float32)
    transformed[:, normaliser.keep_] = normaliser.transform(
        pd.DataFrame(matrix.values, columns=matrix.feature_names)
    )
    adata = ad.AnnData(
        X=transformed,
        obs=pd.DataFrame(index=pd.Index(matrix.sample_ids, name="sample_id")),
        var=pd.DataFrame(
            {
                "modality": name,
                "kept": normaliser.keep_,
                "variance_development": normaliser.variance_,
            },
            index=pd.Index(matrix.feature_names, name="feature"),
        ),
        layers={"raw": matrix.values},
    )
    adata.obs["development"] = is_dev
    adata.uns["modality"] = name
    with atomic_output(h5ad_out) as tmp:
        adata.write_h5ad(tmp)
    write_json(
        params_out,
        {
            "modality": name,
            "n_development_samples": int(is_dev.sum()),
            "normaliser": normaliser.to_json(),
        },
    )
    logger.info(
        "%s: %d samples (%d development), %d of %d features kept, scaling=%s",
        name,
        len(matrix.sample_ids),
        int(is_dev.sum()),
        int(normaliser.keep_.sum()),
        len(matrix.feature_names),
        normaliser.scaling,
    )
