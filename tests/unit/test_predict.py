"""Reading raw files of new patients into the model's input table."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
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


def test_read_raw_inputs_reads_text_features_as_strings(tmp_path: Path) -> None:
    (tmp_path / "clinical.csv").write_text(
        "sample_id,age,stage\nA0FJ,50,I\nA13E,,III\nA0G0,61.5,\nNEW1,70,IV\n"
    )
    contract = {
        "mrna": CONTRACT["mrna"],
        "clinical": {
            "orientation": "samples_in_rows",
            "id_column": "sample_id",
            "text_features": ["stage"],
        },
    }
    frame = read_raw_inputs(
        {"mrna": EXAMPLE / "mrna.csv", "clinical": tmp_path / "clinical.csv"}, contract
    )
    assert frame.shape == (151, 1 + 200 + 2)  # NEW1 has no mRNA
    assert frame.columns[-2:].tolist() == ["clinical:age", "clinical:stage"]
    rows = frame.set_index("sample_id")
    assert rows["clinical:stage"].dtype == object
    assert rows.loc[["A0FJ", "A13E", "NEW1"], "clinical:stage"].tolist() == ["I", "III", "IV"]
    assert rows.loc["A0G0", "clinical:stage"] is None
    assert pd.isna(rows.loc["A0SX", "clinical:stage"])  # not in the clinical file
    assert rows["clinical:age"].dtype == np.float64
    assert rows.loc["A0G0", "clinical:age"] == 61.5
    assert np.isnan(rows.loc["A13E", "clinical:age"])
    assert rows.loc["NEW1", [c for c in frame if c.startswith("mrna:")]].isna().all()
    # without text_features in the contract the text column is an error
    with pytest.raises(InputError, match="not a number"):
        read_raw_inputs({"clinical": tmp_path / "clinical.csv"}, {"clinical": CONTRACT["mrna"]})


BATCH_CONTRACT = {
    "mrna": {"orientation": "samples_in_rows", "id_column": "sample_id", "batch_column": "run"},
    "mirna": {"orientation": "features_in_rows", "id_column": "feature_id", "batch_column": None},
}


def test_read_raw_inputs_takes_batch_labels_from_the_sample_sheet(tmp_path: Path) -> None:
    mrna = pl.read_csv(EXAMPLE / "mrna.csv").head(4)
    mrna.write_csv(tmp_path / "mrna.csv")
    ids = mrna["sample_id"].to_list()
    # the sheet lists the samples in another order, one sample without a label, one extra
    (tmp_path / "samples.csv").write_text(
        "sample_id,subject_id,run,batch\n"
        f"{ids[2]},P3,r2,x\n{ids[0]},P1,r1,x\n{ids[1]},P2,,x\nOTHER,P9,r3,x\n{ids[3]},P4,7,x\n"
    )
    frame = read_raw_inputs(
        {"mrna": tmp_path / "mrna.csv"}, BATCH_CONTRACT, samples=tmp_path / "samples.csv"
    )
    assert frame["sample_id"].tolist() == ids
    assert frame.columns[-1] == "run"
    assert "batch" not in frame  # only the columns the contract names
    assert frame["run"].iloc[[0, 2, 3]].tolist() == ["r1", "r2", "7"]  # labels are text
    assert pd.isna(frame["run"].iloc[1])
    np.testing.assert_allclose(
        frame[f"mrna:{mrna.columns[1]}"], mrna[mrna.columns[1]].to_numpy(), rtol=1e-6
    )


def test_read_raw_inputs_batch_labels_without_or_with_incomplete_sheet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = {"mrna": EXAMPLE / "mrna.csv"}
    with caplog.at_level(logging.WARNING, logger="omics_ml.predict"):
        frame = read_raw_inputs(files, BATCH_CONTRACT)
    assert "run" not in frame
    assert "no --samples sheet" in caplog.text and "'run'" in caplog.text
    (tmp_path / "samples.csv").write_text("sample_id,subject_id,batch\nA0FJ,A0FJ,b1\n")
    with pytest.raises(InputError, match=r"samples\.csv: no batch column 'run'"):
        read_raw_inputs(files, BATCH_CONTRACT, samples=tmp_path / "samples.csv")
    # a contract without batch correction ignores the sheet
    plain = read_raw_inputs(files, CONTRACT, samples=tmp_path / "samples.csv")
    assert plain.columns[-1].startswith("mrna:")
