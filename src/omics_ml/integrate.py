"""Join the modalities and the labelled cohort into one AnnData."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import polars as pl
from anndata.io import read_elem

from omics_ml.io import atomic_output
from omics_ml.normalise import NORMALISED_NAMES_KEY

__all__ = [
    "FEATURE_SEPARATOR",
    "align_rows",
    "integrate_modalities",
    "qualified_names",
    "raw_input_frame",
    "read_features",
]

logger = logging.getLogger(__name__)

#: Separates modality and feature in a qualified feature name, e.g. ``mrna:ESR1``.
FEATURE_SEPARATOR = ":"


def read_features(path: str | os.PathLike[str]) -> ad.AnnData:
    """The integrated data without ``obsm["normalised"]``, which only exploration needs.

    Training and evaluation read ``X``, ``obs``, ``var`` and ``uns``; skipping the
    development-fitted copy halves what each of their jobs reads and holds.
    """
    with h5py.File(path, "r") as store:
        return ad.AnnData(
            X=read_elem(store["X"]),
            obs=read_elem(store["obs"]),
            var=read_elem(store["var"]),
            uns=read_elem(store["uns"]),
        )


def qualified_names(modality: str, features: Sequence[str]) -> list[str]:
    """Feature names qualified by their modality (``modality:feature``)."""
    return [f"{modality}{FEATURE_SEPARATOR}{f}" for f in features]


def align_rows(values: np.ndarray, row_ids: Sequence[str], target_ids: Sequence[str]) -> np.ndarray:
    """Reorder rows of ``values`` to ``target_ids``; ids absent from ``row_ids`` get NaN rows."""
    index = pd.Index(row_ids).get_indexer(pd.Index(target_ids))
    out = np.full((len(target_ids), values.shape[1]), np.nan, dtype=np.float32)
    present = index >= 0
    out[present] = values[index[present]]
    return out


def raw_input_frame(adata: ad.AnnData, *, dtype: type[np.floating] = np.float64) -> pd.DataFrame:
    """The model's raw input table of integrated samples.

    Columns: ``sample_id``, ``subject_id`` and (where the sample sheet has it) ``visit_time``,
    then ``modality:feature`` (floats of ``dtype``; text features as strings, from ``obs``),
    then the batch-label columns named in ``uns["batch_columns"]``. The stored values are
    float32, so ``dtype=np.float32`` gives the same numbers in half the memory (training);
    float64 is what a served model's signature expects.
    """
    frame = pd.DataFrame(np.asarray(adata.X, dtype=dtype), columns=adata.var_names)
    for name in adata.uns.get("text_features", []):
        frame[name] = adata.obs[name].astype(object).where(adata.obs[name].notna(), None).to_numpy()
    for column in adata.uns.get("batch_columns", []):
        if column in adata.obs:
            frame[column] = adata.obs[column].astype(object).to_numpy()
    frame.insert(0, "sample_id", adata.obs_names.to_numpy())
    frame.insert(1, "subject_id", adata.obs["subject_id"].astype(str).to_numpy())
    if "visit_time" in adata.obs:
        frame.insert(2, "visit_time", adata.obs["visit_time"].to_numpy(dtype=np.float64))
    return frame


def integrate_modalities(
    cohort: str | os.PathLike[str],
    modalities: Mapping[str, str | os.PathLike[str]],
    *,
    h5ad_out: str | os.PathLike[str],
) -> ad.AnnData:
    """Build the integrated AnnData of all samples of the cohort.

    Parameters
    ----------
    cohort : path-like
        Parquet table from the split step (``sample_id``, ``subject_id``, ``label``,
        ``partition``, ``fold``).
    modalities : mapping of str to path-like
        Modality name to the ``.h5ad`` written by the normalise step.
    h5ad_out : path-like
        Output file.

    Returns
    -------
    anndata.AnnData
        ``X``: raw float32 values (NaN where a sample lacks a modality, and in text columns),
        the input of every model; ``obs``: the cohort (batch columns included; those a modality's batch correction reads are listed in ``uns["batch_columns"]``) plus
        ``has_<modality>`` and the text features' strings (``modality:feature``, listed in
        ``uns["text_features"]``); ``obsm["normalised"]``: the development-fitted normalisation
        (float32, for exploration; its ``modality:feature`` names in
        ``uns["normalised_features"]``, see :func:`omics_ml.normalise.normalised_frame`); ``var``: ``modality``,
        ``feature``, ``kept`` (reaches the development-fitted output) and ``text``.
    """
    obs = pl.read_parquet(cohort).to_pandas().set_index("sample_id")
    sample_ids = obs.index.tolist()
    raw_blocks, norm_blocks, var_blocks = [], [], []
    norm_names: list[str] = []
    text_features: list[str] = []
    batch_columns: list[str] = []
    for name, path in modalities.items():
        block = ad.read_h5ad(path)
        raw_blocks.append(align_rows(np.asarray(block.X), block.obs_names, sample_ids))
        norm_blocks.append(
            align_rows(np.asarray(block.obsm["normalised"]), block.obs_names, sample_ids)
        )
        norm_names += qualified_names(name, np.asarray(block.uns[NORMALISED_NAMES_KEY]).tolist())
        obs[f"has_{name}"] = pd.Index(sample_ids).isin(block.obs_names)
        if "batch_column" in block.uns:
            batch_columns.append(str(block.uns["batch_column"]))
        for feature in block.var_names[block.var["text"].to_numpy(dtype=bool)]:
            qualified = qualified_names(name, [feature])[0]
            obs[qualified] = block.obs[f"text:{feature}"].reindex(obs.index)
            text_features.append(qualified)
        var_blocks.append(
            pd.DataFrame(
                {
                    "modality": name,
                    "feature": block.var_names,
                    "kept": block.var["kept"].to_numpy(),
                    "text": block.var["text"].to_numpy(),
                },
                index=qualified_names(name, block.var_names.tolist()),
            )
        )
    var = pd.concat(var_blocks)
    obs["label"] = obs["label"].astype("category")
    obs["partition"] = obs["partition"].astype("category")
    obs["fold"] = obs["fold"].astype("Int64")
    adata = ad.AnnData(
        X=np.hstack(raw_blocks),
        obs=obs,
        var=var,
        obsm={"normalised": np.hstack(norm_blocks).astype(np.float32, copy=False)},
    )
    adata.uns[NORMALISED_NAMES_KEY] = np.asarray(norm_names, dtype=str)
    adata.uns["text_features"] = text_features
    adata.uns["batch_columns"] = list(dict.fromkeys(batch_columns))
    adata.uns["modalities"] = list(modalities)
    with atomic_output(h5ad_out) as tmp:
        adata.write_h5ad(tmp)
    logger.info(
        "integrated %d samples x %d features from %s", adata.n_obs, adata.n_vars, list(modalities)
    )
    return adata
