"""Tests of omics_ml.integrate on the bundled example, one modality partly missing."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml

from omics_ml.integrate import (
    FEATURE_SEPARATOR,
    align_rows,
    integrate_modalities,
    qualified_names,
)
from omics_ml.io import read_matrix
from omics_ml.normalise import normalise_modality_file
from omics_ml.split import write_splits

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "resources/example"
DROPPED = ["A0FJ", "A13E", "A0G0", "A0SX"]  # samples without protein data in this test


def test_qualified_names():
    assert qualified_names("mrna", ["ESR1", "a:b"]) == ["mrna:ESR1", "mrna:a:b"]
    assert qualified_names("x", []) == []
    assert FEATURE_SEPARATOR == ":"


def test_align_rows_reorders_and_fills_missing():
    values = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    out = align_rows(values, ["a", "b", "c"], ["c", "z", "a"])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], [5.0, 6.0])
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(out[2], [1.0, 2.0])
    assert align_rows(values, ["a", "b", "c"], []).shape == (0, 2)


def _example_cohort() -> pl.DataFrame:
    samples = pl.read_csv(EXAMPLE / "samples.csv", schema_overrides={"sample_id": pl.String})
    outcomes = pl.read_csv(EXAMPLE / "outcomes.csv", schema_overrides={"sample_id": pl.String})
    cohort = samples.join(outcomes, on="sample_id", how="left", maintain_order="left")
    return cohort.rename({"subtype": "label"}).select("sample_id", "subject_id", "label")


@pytest.fixture(scope="module")
def integrated(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("integrate")
    cohort = _example_cohort()
    split = write_splits(
        cohort,
        splits_out=tmp / "splits.json",
        cohort_out=tmp / "cohort.parquet",
        holdout_fraction=0.2,
        n_splits=3,
        seed=42,
    )
    protein = pl.read_parquet(EXAMPLE / "protein.parquet")
    reduced = protein.filter(~pl.col("sample_id").is_in(DROPPED))
    assert reduced.height == protein.height - len(DROPPED)
    reduced.write_parquet(tmp / "protein.parquet")

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    h5ads = {}
    for name, entry in config["modalities"].items():
        spec = dict(entry)
        spec["path"] = (
            str(tmp / "protein.parquet") if name == "protein" else str(ROOT / spec["path"])
        )
        h5ads[name] = tmp / f"{name}.h5ad"
        normalise_modality_file(
            name,
            spec,
            splits=tmp / "splits.json",
            h5ad_out=h5ads[name],
            params_out=tmp / f"{name}.json",
        )
    adata = integrate_modalities(tmp / "cohort.parquet", h5ads, h5ad_out=tmp / "integrated.h5ad")
    return {"adata": adata, "tmp": tmp, "cohort": cohort, "split": split, "config": config}


def test_integrated_shape_dtype_and_var(integrated):
    adata = integrated["adata"]
    assert adata.shape == (150, 200 + 184 + 142)
    assert adata.X.dtype == np.float32
    assert adata.layers["normalised"].dtype == np.float32
    counts = adata.var["modality"].value_counts().to_dict()
    assert counts == {"mrna": 200, "mirna": 184, "protein": 142}
    assert adata.var["modality"].tolist() == ["mrna"] * 200 + ["mirna"] * 184 + ["protein"] * 142
    expected_names = [
        f"{m}:{f}" for m, f in zip(adata.var["modality"], adata.var["feature"], strict=True)
    ]
    assert adata.var_names.tolist() == expected_names
    assert adata.var["kept"].dtype == bool
    assert adata.uns["modalities"] == ["mrna", "mirna", "protein"]


def test_integrated_raw_values_match_files(integrated):
    adata = integrated["adata"]
    mrna = read_matrix(EXAMPLE / "mrna.csv")
    block = adata[mrna.sample_ids, [f"mrna:{f}" for f in mrna.feature_names]].X
    np.testing.assert_array_equal(np.asarray(block), mrna.values)
    mirna = read_matrix(
        EXAMPLE / "mirna.tsv", orientation="features_in_rows", id_column="feature_id"
    )
    block = adata[mirna.sample_ids, [f"mirna:{f}" for f in mirna.feature_names]].X
    np.testing.assert_array_equal(np.asarray(block), mirna.values)


def test_missing_protein_samples(integrated):
    adata = integrated["adata"]
    has_protein = adata.obs["has_protein"].to_numpy()
    assert has_protein.dtype == bool
    dropped = adata.obs_names.isin(DROPPED)
    np.testing.assert_array_equal(has_protein, ~dropped)
    assert adata.obs["has_mrna"].all()
    assert adata.obs["has_mirna"].all()
    protein = (adata.var["modality"] == "protein").to_numpy()
    X = np.asarray(adata.X)
    assert np.isnan(X[np.ix_(dropped, protein)]).all()
    assert np.isnan(np.asarray(adata.layers["normalised"])[np.ix_(dropped, protein)]).all()
    assert not np.isnan(X[np.ix_(~dropped, protein)]).all(axis=1).any()
    assert not np.isnan(X[np.ix_(dropped, ~protein)]).any()


def test_labels_partition_and_folds_preserved(integrated):
    adata, cohort, split = integrated["adata"], integrated["cohort"], integrated["split"]
    assert adata.obs_names.tolist() == cohort["sample_id"].to_list()
    assert adata.obs["label"].astype(str).tolist() == cohort["label"].to_list()
    assert isinstance(adata.obs["label"].dtype, pd.CategoricalDtype)
    assert set(adata.obs["label"].cat.categories) == {"Basal", "Her2", "LumA"}
    holdout = adata.obs_names[adata.obs["partition"] == "holdout"]
    assert sorted(holdout) == sorted(split["holdout"])
    for fold in split["folds"]:
        in_fold = adata.obs_names[(adata.obs["fold"] == fold["fold"]).fillna(False).to_numpy()]
        assert sorted(in_fold) == sorted(fold["test"])
    assert adata.obs.loc[holdout, "fold"].isna().all()


def test_written_file_matches_returned(integrated):
    adata = integrated["adata"]
    on_disk = ad.read_h5ad(integrated["tmp"] / "integrated.h5ad")
    np.testing.assert_array_equal(np.asarray(on_disk.X), np.asarray(adata.X))
    assert on_disk.obs_names.tolist() == adata.obs_names.tolist()
    assert on_disk.var_names.tolist() == adata.var_names.tolist()
    np.testing.assert_array_equal(on_disk.obs["has_protein"], adata.obs["has_protein"])
