"""Shared test helpers: the split -> normalise -> integrate steps run as the workflow runs them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import polars as pl
import pytest

from omics_ml.integrate import integrate_modalities
from omics_ml.normalise import normalise_modality_file
from omics_ml.split import write_splits


def _build_features(
    tmp: Path,
    cohort: pl.DataFrame,
    modalities: Mapping[str, Mapping[str, Any]],
    *,
    seed: int,
    n_splits: int = 3,
    holdout_fraction: float = 0.2,
) -> tuple[dict[str, Any], ad.AnnData]:
    """Write ``splits.json``, ``cohort.parquet``, ``<m>.h5ad``/``<m>.params.json`` and
    ``features.h5ad`` into ``tmp``; return the split and the integrated AnnData."""
    split = write_splits(
        cohort,
        splits_out=tmp / "splits.json",
        cohort_out=tmp / "cohort.parquet",
        holdout_fraction=holdout_fraction,
        n_splits=n_splits,
        seed=seed,
    )
    for name, spec in modalities.items():
        normalise_modality_file(
            name,
            dict(spec),
            splits=tmp / "splits.json",
            cohort=tmp / "cohort.parquet",
            h5ad_out=tmp / f"{name}.h5ad",
            params_out=tmp / f"{name}.params.json",
        )
    adata = integrate_modalities(
        tmp / "cohort.parquet",
        {m: tmp / f"{m}.h5ad" for m in modalities},
        h5ad_out=tmp / "features.h5ad",
    )
    return split, adata


@pytest.fixture(scope="session")
def build_features() -> Callable[..., tuple[dict[str, Any], ad.AnnData]]:
    """The workflow's split, normalise and integrate steps on a cohort, into a folder."""
    return _build_features
