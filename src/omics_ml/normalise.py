"""Per-modality normalisation: a chain of frozen steps chosen in the config, fitted on development samples.

Each modality's config entry names its steps under ``normalisation`` (a list of
``{method: <name>, <parameter>: <value>, ...}``); when it is left out, the defaults of the
modality's ``type`` apply (:data:`TYPE_DEFAULT_STEPS`). :class:`ModalityNormaliser` runs the steps
in order, fits every one on the development samples only, and freezes their state as JSON: the
training rules and the registered model apply the same chain to a new patient.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from omics_ml.io import InputError, atomic_output, read_json, read_matrix, write_json
from omics_ml.transforms import STEP_REGISTRY, FrozenTransform, step_from_json

__all__ = [
    "DEFAULT_BATCH_COLUMN",
    "METHODS",
    "NORMALISED_NAMES_KEY",
    "TYPE_DEFAULT_STEPS",
    "ModalityNormaliser",
    "batch_column_of",
    "build_step",
    "modality_frame",
    "normalise_modality_file",
    "normalised_frame",
    "normaliser_from_spec",
    "resolve_steps",
    "wants_text",
]

logger = logging.getLogger(__name__)

#: Config method name -> step class (in :mod:`omics_ml.transforms`).
METHODS: dict[str, str] = {
    # generic
    "log2": "Log2",
    "missingness_filter": "MissingnessFilter",
    "variance_filter": "VarianceFilter",
    "median_scaling": "MedianScaling",
    "quantile_normalisation": "QuantileNormalisation",
    "feature_scaling": "FeatureScaling",
    # RNA-seq counts
    "filter_by_expr": "FilterByExpr",
    "count_normalisation": "CountNormaliser",
    # proteomics
    "detection_filter": "DetectionFilter",
    "left_censored_imputation": "LeftCensoredImputer",
    # metabolomics
    "pqn": "ProbabilisticQuotientNormalisation",
    "glog": "GeneralisedLog",
    # methylation, genotype, clinical
    "beta_to_m": "BetaToM",
    "genotype_qc": "GenotypeQC",
    "clinical_encoding": "ClinicalEncoder",
    # batch correction
    "combat": "ComBat",
}

#: Steps used for a modality ``type`` when its config entry has no ``normalisation`` list.
TYPE_DEFAULT_STEPS: dict[str, list[dict[str, Any]]] = {
    "rnaseq_counts": [
        {"method": "filter_by_expr"},
        {"method": "count_normalisation", "library_size": "tmm", "transformation": "log_cpm"},
    ],
    "proteomics": [
        {"method": "detection_filter", "min_detection_rate": 0.5},
        {"method": "left_censored_imputation", "imputation": "half_minimum"},
        {"method": "log2", "pseudocount": 0.0},
        {"method": "median_scaling"},
    ],
    "metabolomics": [
        {"method": "missingness_filter", "max_missing_fraction": 0.5},
        {"method": "pqn"},
        {"method": "glog"},
    ],
    "transcriptomics": [
        {"method": "missingness_filter", "max_missing_fraction": 0.5},
        {"method": "variance_filter"},
        {"method": "median_scaling"},
    ],
    "methylation": [
        {"method": "missingness_filter", "max_missing_fraction": 0.5},
        {"method": "beta_to_m"},
        {"method": "variance_filter"},
    ],
    "genotype": [{"method": "genotype_qc"}],
    "clinical": [{"method": "clinical_encoding"}],
    "other": [
        {"method": "missingness_filter", "max_missing_fraction": 0.5},
        {"method": "variance_filter"},
    ],
}

#: Config keys renamed for a step because ``method`` names the step itself: ``imputation`` of
#: ``left_censored_imputation`` and ``scaling`` of ``feature_scaling`` are the steps' ``method``.
_RENAMED_PARAMS: dict[str, dict[str, str]] = {
    "left_censored_imputation": {"imputation": "method"},
    "feature_scaling": {"scaling": "method"},
}


#: ``uns`` key holding the names of the columns of ``obsm["normalised"]``.
NORMALISED_NAMES_KEY = "normalised_features"


def normalised_frame(adata: ad.AnnData) -> pd.DataFrame:
    """``obsm["normalised"]`` of a normalise or integrate output as a DataFrame.

    Indexed by sample, columns named by output feature (``uns["normalised_features"]``).
    """
    return pd.DataFrame(
        np.asarray(adata.obsm["normalised"]),
        index=adata.obs_names,
        columns=pd.Index(np.asarray(adata.uns[NORMALISED_NAMES_KEY]).astype(str)),
    )


#: Sample-sheet column read for batch labels when a modality sets no ``batch_column``.
DEFAULT_BATCH_COLUMN = "batch"


def batch_column_of(spec: Mapping[str, Any]) -> str:
    """The sample-sheet column holding a modality's batch labels."""
    return spec.get("batch_column") or DEFAULT_BATCH_COLUMN


def wants_text(spec: Mapping[str, Any]) -> bool:
    """Whether a modality's first step reads text columns (categorical covariates)."""
    steps = resolve_steps(spec)
    return bool(steps) and getattr(
        STEP_REGISTRY.get(METHODS.get(steps[0].get("method"), "")), "reads_text", False
    )


def resolve_steps(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The step entries of one modality: its ``normalisation`` list or its type's defaults."""
    steps = spec.get("normalisation")
    if steps is None:
        kind = spec.get("type") or "other"
        steps = TYPE_DEFAULT_STEPS.get(kind, TYPE_DEFAULT_STEPS["other"])
    return [dict(step) for step in steps]


def build_step(entry: Mapping[str, Any], *, where: str = "normalisation") -> FrozenTransform:
    """An unfitted step from one config entry ``{method: name, **parameters}``.

    Raises
    ------
    InputError
        Naming the config key, for an unknown method or parameter.
    """
    entry = dict(entry)
    method = entry.pop("method", None)
    if method not in METHODS:
        msg = f"config: {where}: unknown method {method!r}; use one of {sorted(METHODS)}."
        raise InputError(msg)
    renamed = _RENAMED_PARAMS.get(method, {})
    params = {renamed.get(k, k): v for k, v in entry.items()}
    cls = STEP_REGISTRY[METHODS[method]]
    try:
        return cls(**params)
    except TypeError as err:
        back = {v: k for k, v in renamed.items()}
        allowed = sorted(back.get(a, a) for a in cls().get_params())
        msg = f"config: {where}: method {method!r} got an unknown parameter ({err}); its parameters are {allowed}."
        raise InputError(msg) from err


def normaliser_from_spec(spec: Mapping[str, Any], *, name: str = "modality") -> ModalityNormaliser:
    """An unfitted :class:`ModalityNormaliser` configured from a modality's config entry."""
    steps = [
        build_step(entry, where=f"modalities.{name}.normalisation[{i}]")
        for i, entry in enumerate(resolve_steps(spec))
    ]
    return ModalityNormaliser(steps, batch_column=batch_column_of(spec))


def _as_float(data: pd.DataFrame | NDArray[Any]) -> NDArray[np.float64]:
    if isinstance(data, pd.DataFrame):
        # Always a copy: steps may work in place on what they receive.
        return data.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(data, dtype=np.float64)


def _rows(frame: pd.DataFrame, keep: NDArray[np.bool_]) -> pd.DataFrame:
    """``frame.loc[keep]`` without copying when every row is kept."""
    return frame if keep.all() else frame.loc[keep]


def _present_rows(frame: pd.DataFrame) -> NDArray[np.bool_]:
    """Samples with at least one value of the modality (others lack the modality entirely)."""
    return frame.notna().to_numpy().any(axis=1)


class ModalityNormaliser:
    """An ordered chain of fitted steps that turns one modality's raw values into features.

    Parameters
    ----------
    steps : sequence of FrozenTransform
        Steps applied in order; the first receives the raw table (a DataFrame, which the clinical
        encoder needs for text columns), the others the previous step's float64 output.
    batch_column : str or None, default="batch"
        Sample-sheet column (and model input column) holding each sample's batch label; read
        only when a step needs batches (``combat``).

    Attributes
    ----------
    feature_names_in_ : ndarray of str
        Raw input features seen in :meth:`fit`, in order.
    text_features_ : list of str
        Input features that hold text (categorical covariates).
    feature_names_out_ : ndarray of str
        Output feature names.

    Notes
    -----
    Samples without any value of the modality are not fitted on and come out all-NaN, which
    XGBoost treats as missing: one patient lacking a modality is still scored.
    """

    def __init__(
        self,
        steps: Sequence[FrozenTransform],
        *,
        batch_column: str | None = DEFAULT_BATCH_COLUMN,
    ):
        self.steps = list(steps)
        self.batch_column = batch_column

    @property
    def uses_batch(self) -> bool:
        """Whether a step needs batch labels."""
        return any(step.uses_batch for step in self.steps)

    def _run(
        self, frame: pd.DataFrame, batch: ArrayLike | None, *, fit: bool
    ) -> NDArray[np.float64]:
        first_reads_text = bool(self.steps) and self.steps[0].reads_text
        data = frame if first_reads_text else _as_float(frame)
        for step in self.steps:
            kwargs = {"batch": batch} if step.uses_batch else {}
            if fit:
                step.fit(data, **kwargs)
            data = step.transform(data, **kwargs)
        return _as_float(data)

    def _batch_labels(self, batch: ArrayLike | None, n: int) -> NDArray[np.object_] | None:
        if not self.uses_batch:
            return None
        if batch is None:
            return np.full(n, None, dtype=object)
        labels = np.asarray(batch, dtype=object)
        return np.where(pd.isna(labels), None, labels.astype(str)).astype(object)

    def fit(self, X: pd.DataFrame, *, batch: ArrayLike | None = None) -> ModalityNormaliser:
        """Fit every step in order on the samples of ``X`` that hold the modality.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_samples, n_features)
            Raw values, one column per feature; NaN (or None in text columns) marks missing.
        batch : array-like of shape (n_samples,), optional
            Batch label of each sample (needed by ``combat``).

        Returns
        -------
        self
        """
        self.fit_transform(X, batch=batch)
        return self

    def fit_transform(
        self, X: pd.DataFrame, *, batch: ArrayLike | None = None
    ) -> NDArray[np.float32]:
        """Fit on ``X`` (as :meth:`fit`) and return its transform, running the chain once.

        Returns
        -------
        ndarray of shape (n_samples, n_features_out), float32
            Equal to ``fit(X).transform(X)``.
        """
        frame = pd.DataFrame(X)
        self.feature_names_in_ = np.asarray(frame.columns.astype(str), dtype=object)
        text = frame.select_dtypes(exclude=["number", "bool"])  # as is_numeric_dtype
        self.text_features_ = [str(c) for c in text.columns[text.notna().any().to_numpy()]]
        if self.text_features_ and not (self.steps and self.steps[0].reads_text):
            msg = f"columns {self.text_features_[:5]} hold text; text (categorical) covariates need `clinical_encoding` as the first normalisation step (type: clinical), or fix the values if they should be numbers."
            raise ValueError(msg)
        present = _present_rows(frame)
        if present.sum() < 2:
            msg = f"only {int(present.sum())} development sample(s) hold any value of this modality; at least 2 are needed to fit its normalisation."
            raise ValueError(msg)
        labels = self._batch_labels(batch, len(frame))
        labels = labels[present] if labels is not None else None
        fitted = self._run(_rows(frame, present), labels, fit=True)
        names: NDArray[np.object_] = self.feature_names_in_
        for step in self.steps:
            names = np.asarray(step.get_feature_names_out(names), dtype=object)
        self.feature_names_out_ = names
        out = np.full((len(frame), len(names)), np.nan, dtype=np.float32)
        out[present] = fitted
        return out

    def transform(self, X: pd.DataFrame, *, batch: ArrayLike | None = None) -> NDArray[np.float32]:
        """Apply the frozen chain; rows without any value of the modality come out all-NaN.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_samples, n_features_in)
            Raw values with the columns of :attr:`feature_names_in_`, in that order.
        batch : array-like of shape (n_samples,), optional
            Batch labels (for ``combat``); a missing label counts as an unseen batch.

        Returns
        -------
        ndarray of shape (n_samples, n_features_out), float32
        """
        frame = pd.DataFrame(X)
        if list(frame.columns.astype(str)) != list(self.feature_names_in_):
            msg = "input columns differ from the features the normaliser was fitted on; pass them in the same order."
            raise ValueError(msg)
        out = np.full((len(frame), len(self.feature_names_out_)), np.nan, dtype=np.float32)
        present = _present_rows(frame)
        if present.any():
            labels = self._batch_labels(batch, len(frame))
            labels = labels[present] if labels is not None else None
            out[present] = self._run(_rows(frame, present), labels, fit=False)
        return out

    def get_feature_names_out(self) -> NDArray[np.object_]:
        """Names of the output features."""
        return self.feature_names_out_

    def kept_inputs(self) -> NDArray[np.bool_]:
        """Which input features reach the output (directly, or one-hot expanded)."""
        out = pd.Index(self.feature_names_out_.astype(str))
        # pandas' hash lookups: numpy's isin compares string arrays pairwise (quadratic).
        names = pd.Index(self.feature_names_in_.astype(str))
        kept = names.isin(out)
        if any("=" in name for name in out):
            stems = {name.split("=", 1)[0] for name in out}
            kept |= names.isin(list(stems))
        return kept

    def describe(self) -> list[str]:
        """Step class names with their parameters, for logs and reports."""
        return [f"{type(s).__name__}({s.get_params()})" for s in self.steps]

    def to_json(self) -> dict[str, Any]:
        """Fitted state of the whole chain as a JSON-serialisable dict (no pickle)."""
        return {
            "state_version": 2,
            "batch_column": self.batch_column,
            "feature_names_in": [str(n) for n in self.feature_names_in_],
            "text_features": list(self.text_features_),
            "feature_names_out": [str(n) for n in self.feature_names_out_],
            "steps": [step.to_json() for step in self.steps],
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> ModalityNormaliser:
        """Rebuild a fitted chain from :meth:`to_json` output."""
        if state.get("state_version") != 2:
            msg = f"unsupported normaliser state_version {state.get('state_version')!r}; retrain the model with this omics-ml version."
            raise ValueError(msg)
        obj = cls([step_from_json(s) for s in state["steps"]], batch_column=state["batch_column"])
        obj.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        obj.text_features_ = list(state["text_features"])
        obj.feature_names_out_ = np.asarray(state["feature_names_out"], dtype=object)
        return obj


def modality_frame(matrix: Any, *, dtype: type[np.floating] = np.float64) -> pd.DataFrame:
    """Raw table of a :class:`~omics_ml.io.Matrix`: float columns, text columns as objects.

    ``dtype=np.float32`` keeps the stored float32 values without a float64 copy (the
    normaliser converts once, exactly, into its own copy).
    """
    frame = pd.DataFrame(
        matrix.values.astype(dtype, copy=False),
        columns=matrix.feature_names,
        index=matrix.sample_ids,
    )
    for name, values in matrix.text.items():
        frame[name] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def normalise_modality_file(
    name: str,
    spec: dict[str, Any],
    *,
    splits: str | os.PathLike[str],
    cohort: str | os.PathLike[str] | None = None,
    h5ad_out: str | os.PathLike[str],
    params_out: str | os.PathLike[str],
) -> None:
    """Fit one modality's normaliser on development samples and write data and frozen state.

    Parameters
    ----------
    name : str
        Modality name (the config key).
    spec : dict
        The modality's config entry (``path``, ``orientation``, ``id_column``, ``normalisation``,
        ``batch_column``).
    splits : path-like
        ``splits.json`` written by :func:`omics_ml.split.write_splits`; only its development
        samples are used to fit.
    cohort : path-like, optional
        ``cohort.parquet`` of the split step; needed when a step uses batch labels.
    h5ad_out : path-like
        AnnData: ``X`` the raw float32 values of every sample in the file (NaN in text columns,
        whose strings are in ``obs["text:<feature>"]``), ``obsm["normalised"]`` the
        development-fitted output (float32; its feature names in ``uns["normalised_features"]``,
        see :func:`normalised_frame`), ``var["kept"]``.
    params_out : path-like
        JSON with the fitted state (:meth:`ModalityNormaliser.to_json`).
    """
    matrix = read_matrix(
        spec["path"],
        orientation=spec.get("orientation", "samples_in_rows"),
        id_column=spec.get("id_column", "sample_id"),
        allow_text=wants_text(spec),
    )
    split = read_json(splits)
    development = set(split["development"])
    is_dev = pd.Index(matrix.sample_ids).isin(list(development))
    if not is_dev.any():
        msg = f"{spec['path']}: no development sample has modality {name!r}; it cannot be fitted."
        raise InputError(msg)
    frame = modality_frame(matrix, dtype=np.float32)
    normaliser = normaliser_from_spec(spec, name=name)
    batch = None
    if normaliser.uses_batch:
        batch = _batch_of(matrix.sample_ids, cohort, normaliser.batch_column, name)
    dev_batch = None if batch is None else batch[is_dev]
    other_batch = None if batch is None else batch[~is_dev]
    try:
        # Each row is transformed on its own, so the development rows keep their fit-time
        # output and only the other rows are transformed.
        dev_out = normaliser.fit_transform(frame.loc[is_dev], batch=dev_batch)
        transformed = np.empty((len(frame), dev_out.shape[1]), dtype=np.float32)
        transformed[is_dev] = dev_out
        if not is_dev.all():
            transformed[~is_dev] = normaliser.transform(frame.loc[~is_dev], batch=other_batch)
    except ValueError as err:
        msg = f"{spec['path']}: modality {name!r}: {err}"
        raise InputError(msg) from err
    obs = pd.DataFrame(index=pd.Index(matrix.sample_ids, name="sample_id"))
    obs["development"] = is_dev
    for feature, values in matrix.text.items():
        obs[f"text:{feature}"] = pd.Categorical(values)
    adata = ad.AnnData(
        X=matrix.values,
        obs=obs,
        var=pd.DataFrame(
            {
                "modality": name,
                "kept": normaliser.kept_inputs(),
                "text": pd.Index(matrix.feature_names).isin(normaliser.text_features_),
            },
            index=pd.Index(matrix.feature_names, name="feature"),
        ),
        # An array plus its names in ``uns``: a DataFrame's column list is stored as one HDF5
        # attribute, which overflows (64 KiB) at a few thousand features.
        obsm={"normalised": transformed},
    )
    adata.uns[NORMALISED_NAMES_KEY] = normaliser.get_feature_names_out().astype(str)
    adata.uns["modality"] = name
    if normaliser.uses_batch:
        adata.uns["batch_column"] = normaliser.batch_column
    with atomic_output(h5ad_out) as tmp:
        adata.write_h5ad(tmp)
    write_json(
        params_out,
        {
            "modality": name,
            "n_development_samples": int(is_dev.sum()),
            "steps": normaliser.describe(),
            "normaliser": normaliser.to_json(),
        },
    )
    logger.info(
        "%s: %d samples (%d development), %d input features -> %d output features; steps: %s",
        name,
        len(matrix.sample_ids),
        int(is_dev.sum()),
        len(matrix.feature_names),
        len(normaliser.get_feature_names_out()),
        "; ".join(normaliser.describe()),
    )


def _batch_of(
    sample_ids: Sequence[str],
    cohort: str | os.PathLike[str] | None,
    column: str | None,
    name: str,
) -> NDArray[np.object_]:
    """Batch label of each sample from the cohort table (written by the split step)."""
    if cohort is None or column is None:
        msg = f"modality {name!r}: batch correction needs batch labels; set modalities.{name}.batch_column to a sample-sheet column."
        raise InputError(msg)
    table = pd.read_parquet(cohort).set_index("sample_id")
    if column not in table.columns:
        msg = f"modality {name!r}: the sample sheet has no column {column!r} (modalities.{name}.batch_column); add each sample's batch there."
        raise InputError(msg)
    return table[column].reindex(list(sample_ids)).astype(object).to_numpy()
