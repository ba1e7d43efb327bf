"""Reading raw files of new patients into the model's input table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from omics_ml.io import InputError
from omics_ml.predict import find_input_files, read_raw_inputs

EXAMPLE = Path(__file__).resolve().parents[2] / "resources" / "example"
CONTRACT = {
    "mrna": {"orientation": "samples_in_rows", "id_column": "sample_id"},
    "mirna": {"orientation": "features_in_rows", "id_column": "feature_id"},
    "protein": {"orientation": "samples_in_rows", "id_column": "sample_id"},
}


def test_find_files_in_directory_skips_missing_modality() -> None:
    files = find_input_files([str(EXAMPLE / "new_patients")], list(CONTRACT))
    assert set(files) == {"mrna", "mirna"}


def test_find_files_pairs_and_stems() -> None:
    files = find_input_files(
        [f"protein={EXAMPLE / 'protein.parquet'}", str(EXAMPLE / "mrna.csv")], list(CONTRACT)
    )
    assert files == {"protein": EXAMPLE / "protein.parquet", "mrna": EXAMPLE / "mrna.csv"}


def test_find_files_nothing_found(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no input file"):
        find_input_files([str(tmp_path)], list(CONTRACT))


def test_read_raw_inputs_aligns_modalities(tmp_path: Path) -> None:
    mrna = pl.read_csv(EXAMPLE / "mrna.csv").head(5)
    mrna.write_csv(tmp_path / "mrna.csv")
    protein = pl.read_parquet(EXAMPLE / "protein.parquet").slice(3, 4)  # overlaps mrna in 2 samples
    protein.write_parquet(tmp_path / "protein.parquet")
    frame = read_raw_inputs(
        {"mrna": tmp_path / "mrna.csv", "protein": tmp_path / "protein.parquet"}, CONTRACT
    )
    assert (
        frame["sample_id"].tolist()
        == mrna["sample_id"].to_list() + protein["sample_id"].to_list()[2:]
    )
    assert frame.shape[1] == 1 + 200 + 142
    first_gene = f"mrna:{mrna.columns[1]}"
    np.testing.assert_allclose(
        frame[first_gene].iloc[:5], mrna[mrna.columns[1]].to_numpy(), rtol=1e-6
    )
    assert frame[first_gene].iloc[5:].isna().all()
    first_protein = f"protein:{protein.columns[1]}"
    assert frame[first_protein].iloc[:3].isna().all()
