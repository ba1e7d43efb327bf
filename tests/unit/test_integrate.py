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
    qualified_names,
    raw_input_frame,
)
from omics_ml.io import read_matrix
from omics_ml.normalise import normalised_frame

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "resources/example"
DROPPED = ["A0FJ", "A13E", "A0G0", "A0SX"]  # samples without protein data in this test
N_FEATURES = {"mrna": 200, "mirna": 184, "protein": 142, "rnaseq": 505}


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
def integrated(tmp_path_factory: pytest.TempPathFactory, build_features):
    tmp = tmp_path_factory.mktemp("integrate")
    cohort = _example_cohort()
    protein = pl.read_parquet(EXAMPLE / "protein.parquet")
    reduced = protein.filter(~pl.col("sample_id").is_in(DROPPED))
    assert reduced.height == protein.height - len(DROPPED)
    reduced.write_parquet(tmp / "protein.parquet")

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    specs = {
        name: {
            **entry,
            "path": str(tmp / "protein.parquet")
            if name == "protein"
            else str(ROOT / entry["path"]),
        }
        for name, entry in config["modalities"].items()
    }
    split, adata = build_features(tmp, cohort, specs, seed=42)
    return {"adata": adata, "tmp": tmp, "cohort": cohort, "split": split, "config": config}


def test_integrated_shape_dtype_and_var(integrated):
    adata = integrated["adata"]
    assert list(integrated["config"]["modalities"]) == list(N_FEATURES)
    assert adata.shape == (150, sum(N_FEATURES.values()))
    assert adata.X.dtype == np.float32
    assert "normalised" not in adata.layers
    counts = adata.var["modality"].value_counts().to_dict()
    assert counts == N_FEATURES
    assert adata.var["modality"].tolist() == [m for m, n in N_FEATURES.items() for _ in range(n)]
    expected_names = [
        f"{m}:{f}" for m, f in zip(adata.var["modality"], adata.var["feature"], strict=True)
    ]
    assert adata.var_names.tolist() == expected_names
    assert adata.var["kept"].dtype == bool
    assert adata.var["text"].dtype == bool
    assert not adata.var["text"].any()
    assert adata.uns["modalities"] == list(N_FEATURES)
    assert list(adata.uns["text_features"]) == []
    assert list(adata.uns["batch_columns"]) == []


def test_integrated_normalised_obsm(integrated):
    adata, tmp = integrated["adata"], integrated["tmp"]
    normalised = normalised_frame(adata)
    assert isinstance(normalised, pd.DataFrame)
    assert normalised.index.tolist() == adata.obs_names.tolist()
    assert normalised.to_numpy().dtype == np.float32
    expected_columns = []
    for name in N_FEATURES:
        block = ad.read_h5ad(tmp / f"{name}.h5ad")
        columns = qualified_names(name, normalised_frame(block).columns.tolist())
        expected_columns += columns
        # each block's development-fitted output, aligned to the cohort's samples
        np.testing.assert_array_equal(
            normalised.loc[block.obs_names, columns].to_numpy(),
            normalised_frame(block).to_numpy(),
        )
        # kept: the inputs that reach the block's output
        kept = adata.var.loc[adata.var["modality"] == name, "kept"].to_numpy()
        np.testing.assert_array_equal(kept, block.var["kept"].to_numpy())
        outputs = normalised_frame(block).columns
        np.testing.assert_array_equal(kept, block.var_names.isin(outputs))
    assert normalised.columns.tolist() == expected_columns
    # numeric modalities: one output per kept input
    assert int(adata.var["kept"].sum()) == len(expected_columns)


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
    counts = read_matrix(
        EXAMPLE / "rnaseq.tsv", orientation="features_in_rows", id_column="gene_id"
    )
    block = adata[counts.sample_ids, [f"rnaseq:{f}" for f in counts.feature_names]].X
    np.testing.assert_array_equal(np.asarray(block), counts.values)


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
    normalised = normalised_frame(adata)
    protein_out = normalised.columns.str.startswith("protein:")
    assert protein_out.any()
    assert np.isnan(normalised.to_numpy()[np.ix_(dropped, protein_out)]).all()
    assert not np.isnan(normalised.to_numpy()[np.ix_(~dropped, protein_out)]).all(axis=1).any()
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
    on_disk = ad.read_h5ad(integrated["tmp"] / "features.h5ad")
    np.testing.assert_array_equal(np.asarray(on_disk.X), np.asarray(adata.X))
    assert on_disk.obs_names.tolist() == adata.obs_names.tolist()
    assert on_disk.var_names.tolist() == adata.var_names.tolist()
    np.testing.assert_array_equal(on_disk.obs["has_protein"], adata.obs["has_protein"])
    pd.testing.assert_frame_equal(normalised_frame(on_disk), normalised_frame(adata))


def test_raw_input_frame_of_numeric_modalities(integrated):
    adata = integrated["adata"]
    frame = raw_input_frame(adata)
    assert frame.columns.tolist() == ["sample_id", "subject_id", *adata.var_names]
    assert frame["sample_id"].tolist() == adata.obs_names.tolist()
    values = frame.drop(columns=["sample_id", "subject_id"])
    assert (values.dtypes == np.float64).all()
    np.testing.assert_array_equal(values.to_numpy(), np.asarray(adata.X, dtype=np.float64))


# --- a clinical modality with text and a batch-corrected modality ---------------------------


@pytest.fixture(scope="module")
def with_text_and_batch(tmp_path_factory: pytest.TempPathFactory, build_features):
    tmp = tmp_path_factory.mktemp("integrate_text_batch")
    ids = _example_cohort()["sample_id"].to_list()
    run = np.where(np.arange(len(ids)) % 3 == 0, "r2", "r1")
    cohort = _example_cohort().with_columns(pl.Series("run", run))
    rng = np.random.default_rng(5)
    stage = rng.choice(["I", "II", "III"], size=len(ids)).astype(object)
    stage[[3, 8]] = None
    clinical = pd.DataFrame(
        {"sample_id": ids, "age": rng.uniform(30, 80, len(ids)).round(1), "stage": stage}
    ).iloc[5:]  # the first five samples have no clinical data
    clinical.to_csv(tmp / "clinical.csv", index=False)
    specs = {
        "clinical": {"path": str(tmp / "clinical.csv"), "type": "clinical"},
        "mrna": {
            "path": str(EXAMPLE / "mrna.csv"),
            "type": "transcriptomics",
            "batch_column": "run",
            "normalisation": [{"method": "variance_filter", "top_n": 30}, {"method": "combat"}],
        },
    }
    _, adata = build_features(tmp, cohort, specs, seed=1)
    return {"adata": adata, "clinical": clinical.set_index("sample_id"), "run": run, "tmp": tmp}


def test_integrated_text_features(with_text_and_batch):
    adata, clinical = with_text_and_batch["adata"], with_text_and_batch["clinical"]
    assert list(adata.uns["text_features"]) == ["clinical:stage"]
    np.testing.assert_array_equal(adata.var["text"].to_numpy(), adata.var_names == "clinical:stage")
    assert np.isnan(np.asarray(adata[:, "clinical:stage"].X)).all()
    stage = adata.obs["clinical:stage"]
    expected = clinical["stage"].reindex(adata.obs_names)
    assert stage.isna().tolist() == expected.isna().tolist()
    assert stage.dropna().astype(str).tolist() == expected.dropna().tolist()
    assert adata.obs["has_clinical"].sum() == len(adata) - 5
    assert normalised_frame(adata).columns[:4].tolist() == [
        "clinical:age",
        "clinical:stage=I",
        "clinical:stage=II",
        "clinical:stage=III",
    ]


def test_integrated_batch_columns(with_text_and_batch):
    adata = with_text_and_batch["adata"]
    assert list(adata.uns["batch_columns"]) == ["run"]
    assert adata.obs["run"].astype(str).tolist() == with_text_and_batch["run"].tolist()
    # the batch-corrected output is what the frozen state gives with the cohort's labels
    from omics_ml.io import read_json
    from omics_ml.normalise import ModalityNormaliser

    state = read_json(with_text_and_batch["tmp"] / "mrna.params.json")["normaliser"]
    normaliser = ModalityNormaliser.from_json(state)
    mrna = adata.var_names[adata.var["modality"] == "mrna"]
    raw = pd.DataFrame(
        np.asarray(adata[:, mrna].X, dtype=np.float64), columns=state["feature_names_in"]
    )
    expected = normaliser.transform(raw, batch=with_text_and_batch["run"])
    columns = qualified_names("mrna", state["feature_names_out"])
    np.testing.assert_array_equal(normalised_frame(adata)[columns].to_numpy(), expected)
    uncorrected = normaliser.transform(
        raw, batch=np.where(with_text_and_batch["run"] == "r1", "r2", "r1")
    )
    assert not np.allclose(uncorrected, expected)


def test_raw_input_frame_with_text_and_batch(with_text_and_batch):
    adata, clinical = with_text_and_batch["adata"], with_text_and_batch["clinical"]
    frame = raw_input_frame(adata)
    assert frame.columns.tolist() == ["sample_id", "subject_id", *adata.var_names, "run"]
    assert frame["run"].tolist() == with_text_and_batch["run"].tolist()
    stage = frame["clinical:stage"]
    assert stage.dtype == object
    expected = clinical["stage"].reindex(adata.obs_names)
    assert [v if isinstance(v, str) else None for v in stage] == [
        v if isinstance(v, str) else None for v in expected
    ]
    assert all(v is None or isinstance(v, str) for v in stage)
    age = frame["clinical:age"]
    assert age.dtype == np.float64
    np.testing.assert_allclose(
        age.to_numpy(), clinical["age"].reindex(adata.obs_names).to_numpy(), rtol=1e-6
    )
    numeric = [c for c in adata.var_names if c != "clinical:stage"]
    np.testing.assert_array_equal(
        frame[numeric].to_numpy(), np.asarray(adata[:, numeric].X, dtype=np.float64)
    )
