"""Tests of omics_ml.validate on small files written to tmp_path and on the bundled example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml

from omics_ml.io import InputError, Matrix, read_json, read_matrix
from omics_ml.validate import (
    check_modality,
    check_modality_values,
    load_cohort,
    read_outcomes,
    read_sample_sheet,
    validate_inputs,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "resources/example"

# Six samples of five subjects (S1 has two visits), two classes with >= 2 subjects each.
SHEET = """sample_id,subject_id,visit_time,batch,site
s1,S1,0,b1,x
s2,S1,30,b1,x
s3,S2,0,b2,x
s4,S3,0,b2,y
s5,S4,,b1,y
s6,S5,0,b2,y
"""
OUTCOMES = """sample_id,status
s1,case
s2,case
s3,case
s4,control
s5,control
s6,control
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _message(excinfo: pytest.ExceptionInfo[InputError], *needles: str) -> str:
    """Return the error message after checking that it contains every needle."""
    message = str(excinfo.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


@pytest.fixture
def cohort_files(tmp_path: Path) -> dict[str, Any]:
    """A small valid cohort: sheet, outcomes and three modalities in the three file formats."""
    sheet = _write(tmp_path / "samples.csv", SHEET)
    outcomes = _write(tmp_path / "outcomes.csv", OUTCOMES)
    # samples in rows; s6 has no rna; feature g3 is entirely missing
    rna = _write(
        tmp_path / "rna.csv",
        "sample_id,g1,g2,g3\ns1,1.0,2.0,NA\ns2,3.0,,NA\ns3,5.0,6.0,\ns4,7,8,NA\ns5,9,10,NA\n",
    )
    # features in rows
    mir = _write(
        tmp_path / "mir.tsv",
        "feature_id\ts1\ts2\ts3\ts4\ts5\ts6\nm1\t1\t2\t3\t4\t5\t6\nm2\t0.5\t0.25\t0\t-1\t2\t3\n",
    )
    prot = tmp_path / "prot.parquet"
    pl.DataFrame(
        {"sample_id": ["s1", "s3", "s4", "s6"], "p1": [0.1, 0.2, 0.3, 0.4], "p2": [1.0, 2, 3, 4]}
    ).write_parquet(prot)
    config = {
        "cohort": {"samples": str(sheet), "outcomes": str(outcomes), "outcome_column": "status"},
        "modalities": {
            "rna": {"path": str(rna), "type": "transcriptomics"},
            "mir": {"path": str(mir), "orientation": "features_in_rows", "id_column": "feature_id"},
            "prot": {"path": str(prot), "orientation": "samples_in_rows"},
        },
    }
    return {"dir": tmp_path, "sheet": sheet, "outcomes": outcomes, "config": config}


@pytest.fixture
def example_samples() -> pl.DataFrame:
    return read_sample_sheet(EXAMPLE / "samples.csv")


# --------------------------------------------------------------------------- bundled example


def test_example_validates(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["cohort"]["samples"] = str(ROOT / config["cohort"]["samples"])
    config["cohort"]["outcomes"] = str(ROOT / config["cohort"]["outcomes"])
    for spec in config["modalities"].values():
        spec["path"] = str(ROOT / spec["path"])

    qc = validate_inputs(config, qc_out=tmp_path / "qc" / "inputs.json")

    assert qc["n_samples"] == 150
    assert qc["n_subjects"] == 150
    assert qc["max_samples_per_subject"] == 1
    assert qc["class_counts"] == {"Basal": 45, "Her2": 30, "LumA": 75}
    assert {name: m["n_features"] for name, m in qc["modalities"].items()} == {
        "mrna": 200,
        "mirna": 184,
        "protein": 142,
        "rnaseq": 505,
    }
    for modality in qc["modalities"].values():
        assert modality["n_samples"] == 150
        assert modality["n_sheet_samples_missing"] == 0
        assert modality["missing_value_fraction"] == 0.0
        assert len(modality["sha256"]) == 64
    assert qc["modalities"]["rnaseq"]["value_min"] == 0.0  # raw counts
    assert len(qc["files"]) == 6
    assert read_json(tmp_path / "qc" / "inputs.json") == qc


# --------------------------------------------------------------------------- sample sheet


def test_read_sample_sheet_types_and_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "sheet.csv", "sample_id,subject_id,visit_time,extra\n007,P1,1.5,z\n")
    sheet = read_sample_sheet(path)
    assert sheet.columns == ["sample_id", "subject_id", "visit_time"]
    assert sheet.schema["sample_id"] == pl.String
    assert sheet.schema["visit_time"] == pl.Float64
    assert sheet["sample_id"].to_list() == ["007"]  # ids are text, leading zeros kept


def test_sample_sheet_parquet(tmp_path: Path) -> None:
    path = tmp_path / "sheet.parquet"
    pl.DataFrame({"sample_id": [1, 2], "subject_id": ["A", "B"], "batch": [3, 3]}).write_parquet(
        path
    )
    sheet = read_sample_sheet(path)
    assert sheet.schema == pl.Schema(
        {"sample_id": pl.String, "subject_id": pl.String, "batch": pl.String}
    )


def test_sample_sheet_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "sheet.csv", "sample_id,patient\na,P1\n")
    with pytest.raises(InputError) as excinfo:
        read_sample_sheet(path)
    _message(excinfo, "sheet.csv", "subject_id", "patient")


def test_sample_sheet_null_id(tmp_path: Path) -> None:
    path = _write(tmp_path / "sheet.csv", "sample_id,subject_id\na,P1\n,P2\n")
    with pytest.raises(InputError) as excinfo:
        read_sample_sheet(path)
    _message(excinfo, "sheet.csv", "'sample_id'", "data row(s) [2]")


def test_sample_sheet_duplicate_sample_id(tmp_path: Path) -> None:
    path = _write(tmp_path / "sheet.csv", "sample_id,subject_id\na,P1\nb,P2\na,P3\n")
    with pytest.raises(InputError, match="duplicate sample_id") as excinfo:
        read_sample_sheet(path)
    _message(excinfo, "sheet.csv", "['a']", "[1, 3]")


def test_sample_sheet_non_numeric_visit_time(tmp_path: Path) -> None:
    path = _write(tmp_path / "sheet.csv", "sample_id,subject_id,visit_time\na,P1,0\nb,P1,week 2\n")
    with pytest.raises(InputError) as excinfo:
        read_sample_sheet(path)
    _message(excinfo, "sheet.csv", "'visit_time'", "data row 2", "'week 2'")


def test_sample_sheet_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "sheet.csv", "")
    with pytest.raises(InputError, match=r"sheet\.csv: the file is empty"):
        read_sample_sheet(path)


def test_sample_sheet_header_only(tmp_path: Path) -> None:
    path = _write(tmp_path / "sheet.csv", "sample_id,subject_id\n")
    with pytest.raises(InputError, match=r"sheet\.csv: the file has no data rows"):
        read_sample_sheet(path)


def test_sample_sheet_unsupported_suffix(tmp_path: Path) -> None:
    path = _write(tmp_path / "sheet.xlsx", "sample_id,subject_id\na,P1\n")
    with pytest.raises(InputError) as excinfo:
        read_sample_sheet(path)
    _message(excinfo, "sheet.xlsx", "unsupported file type '.xlsx'")


# --------------------------------------------------------------------------- outcomes


def test_read_outcomes_per_sample_in_sheet_order(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    shuffled = _write(
        cohort_files["dir"] / "shuffled.csv",
        "status,sample_id\ncontrol,s6\ncase,s1\ncase,s1\ncase,s2\ncase,s3\ncontrol,s4\ncontrol,s5\n",
    )
    outcomes = read_outcomes(shuffled, outcome_column="status", samples=sheet)
    assert outcomes.columns == ["sample_id", "subject_id", "label"]
    assert outcomes["sample_id"].to_list() == sheet["sample_id"].to_list()
    assert outcomes["label"].to_list() == ["case"] * 3 + ["control"] * 3


def test_read_outcomes_per_subject_numeric_label(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "subj.csv", "subject_id,y\nS1,1\nS2,1\nS3,0\nS4,0\nS5,0\n")
    outcomes = read_outcomes(path, outcome_column="y", id_column="subject_id", samples=sheet)
    assert outcomes.schema["label"] == pl.String
    assert outcomes["label"].to_list() == ["1", "1", "1", "0", "0", "0"]


def test_outcomes_subject_conflict(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "outcomes.csv", OUTCOMES.replace("s2,case", "s2,control"))
    with pytest.raises(InputError, match="conflicting 'status'") as excinfo:
        read_outcomes(path, outcome_column="status", samples=sheet)
    _message(excinfo, "outcomes.csv", "subject S1", "'case' (sample s1, row 1)", "'control'", "s2")


def test_outcomes_duplicate_id_with_different_values(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "outcomes.csv", OUTCOMES + "s4,case\n")
    with pytest.raises(InputError, match="more than once") as excinfo:
        read_outcomes(path, outcome_column="status", samples=sheet)
    _message(excinfo, "outcomes.csv", "s4", "control (row 4)", "case (row 7)")


def test_outcomes_unknown_id(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "outcomes.csv", OUTCOMES + "s99,case\n")
    with pytest.raises(InputError, match="not in the sample sheet") as excinfo:
        read_outcomes(path, outcome_column="status", samples=sheet)
    _message(excinfo, "outcomes.csv", "['s99']", "Add them to the sample sheet")


def test_outcomes_sample_without_outcome(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "outcomes.csv", OUTCOMES.replace("s5,control\n", ""))
    with pytest.raises(InputError, match="no outcome row") as excinfo:
        read_outcomes(path, outcome_column="status", samples=sheet)
    _message(excinfo, "outcomes.csv", "['s5']")


def test_outcomes_null_outcome(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "outcomes.csv", OUTCOMES.replace("s5,control", "s5,NA"))
    with pytest.raises(InputError) as excinfo:
        read_outcomes(path, outcome_column="status", samples=sheet)
    _message(excinfo, "outcomes.csv", "'status' is empty", "['s5']", "[5]")


def test_outcomes_missing_outcome_column(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    with pytest.raises(InputError) as excinfo:
        read_outcomes(cohort_files["outcomes"], outcome_column="subtype", samples=sheet)
    _message(excinfo, "outcomes.csv", "['subtype']", "found ['sample_id', 'status']")


def test_outcomes_bad_id_column(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    with pytest.raises(InputError, match="outcome_id_column is 'patient'"):
        read_outcomes(
            cohort_files["outcomes"], outcome_column="status", id_column="patient", samples=sheet
        )


def test_load_cohort_keeps_visit_time_and_batch(cohort_files: dict[str, Any]) -> None:
    cohort = load_cohort(cohort_files["config"])
    assert cohort.columns == ["sample_id", "subject_id", "label", "visit_time", "batch"]
    assert cohort["visit_time"].to_list() == [0.0, 30.0, 0.0, 0.0, None, 0.0]


def test_load_cohort_keeps_every_modality_batch_column(cohort_files: dict[str, Any]) -> None:
    config = cohort_files["config"]
    config["modalities"]["rna"]["batch_column"] = "site"
    cohort = load_cohort(config)
    assert cohort.columns == ["sample_id", "subject_id", "label", "visit_time", "batch", "site"]
    assert cohort.schema["site"] == pl.String
    assert cohort["site"].to_list() == ["x", "x", "x", "y", "y", "y"]
    assert cohort["batch"].to_list() == ["b1", "b1", "b2", "b2", "b1", "b2"]
    # without a modality naming it, the column is not kept
    del config["modalities"]["rna"]["batch_column"]
    assert "site" not in load_cohort(config).columns


def test_load_cohort_batch_column_absent_from_sheet_is_skipped(
    cohort_files: dict[str, Any],
) -> None:
    config = cohort_files["config"]
    config["modalities"]["mir"]["batch_column"] = "plate"
    assert load_cohort(config).columns == [
        "sample_id",
        "subject_id",
        "label",
        "visit_time",
        "batch",
    ]


def test_read_sample_sheet_keeps_requested_batch_columns(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"], batch_columns=("site", "plate"))
    assert sheet.columns == ["sample_id", "subject_id", "visit_time", "site"]
    assert sheet.schema["site"] == pl.String
    default = read_sample_sheet(cohort_files["sheet"])
    assert default.columns == ["sample_id", "subject_id", "visit_time", "batch"]


def test_load_cohort_missing_config_key(cohort_files: dict[str, Any]) -> None:
    config = cohort_files["config"]
    del config["cohort"]["outcome_column"]
    with pytest.raises(InputError, match=r"cohort\.outcome_column is not set"):
        load_cohort(config)


# --------------------------------------------------------------------------- modalities


def test_check_modality_qc(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    spec = cohort_files["config"]["modalities"]["rna"]
    qc = check_modality("rna", spec, samples=sheet)
    assert qc["n_samples"] == 5
    assert qc["n_features"] == 3
    assert qc["n_sheet_samples_missing"] == 1
    assert qc["n_all_missing_features"] == 1
    assert qc["missing_value_fraction"] == pytest.approx(6 / 15)
    assert (qc["value_min"], qc["value_median"], qc["value_max"]) == (1.0, 6.0, 10.0)
    assert len(qc["sha256"]) == 64

    mir = check_modality("mir", cohort_files["config"]["modalities"]["mir"], samples=sheet)
    assert (mir["n_samples"], mir["n_features"], mir["n_sheet_samples_missing"]) == (6, 2, 0)
    prot = check_modality("prot", cohort_files["config"]["modalities"]["prot"], samples=sheet)
    assert (prot["n_samples"], prot["n_features"], prot["n_sheet_samples_missing"]) == (4, 2, 2)


def test_matrix_duplicate_sample_in_rows(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "dup.csv", "sample_id,g1\ns1,1\ns2,2\ns1,3\n")
    with pytest.raises(InputError, match="duplicate sample id") as excinfo:
        check_modality("rna", {"path": str(path)}, samples=sheet)
    _message(excinfo, "dup.csv", "'sample_id'", "['s1']")


def test_matrix_duplicate_sample_in_header(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "dup.tsv", "feature_id\ts1\ts2\ts1\nm1\t1\t2\t3\n")
    spec = {"path": str(path), "orientation": "features_in_rows", "id_column": "feature_id"}
    with pytest.raises(InputError, match="duplicate sample id") as excinfo:
        check_modality("mir", spec, samples=sheet)
    _message(excinfo, "dup.tsv", "header", "['s1']")


def test_matrix_unknown_sample(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "rna.csv", "sample_id,g1\ns1,1\ns2,2\nx9,3\n")
    with pytest.raises(InputError, match="not in the sample sheet") as excinfo:
        check_modality("rna", {"path": str(path)}, samples=sheet)
    _message(excinfo, "rna.csv", "'sample_id'", "['x9']", "Add them to the sample sheet")


def test_matrix_unknown_sample_in_header(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "mir.tsv", "feature_id\ts1\ts2\tx9\nm1\t1\t2\t3\n")
    spec = {"path": str(path), "orientation": "features_in_rows", "id_column": "feature_id"}
    with pytest.raises(InputError, match="not in the sample sheet") as excinfo:
        check_modality("mir", spec, samples=sheet)
    _message(excinfo, "mir.tsv", "header", "['x9']")


def test_matrix_numeric_looking_sample_ids_kept_as_text(tmp_path: Path) -> None:
    sheet = read_sample_sheet(_write(tmp_path / "sheet.csv", "sample_id,subject_id\n001,A\n"))
    path = _write(tmp_path / "rna.csv", "sample_id,g1\n001,1.5\n")
    assert check_modality("rna", {"path": str(path)}, samples=sheet)["n_samples"] == 1


def test_matrix_non_numeric_value(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "rna.csv", "sample_id,g1,g2\ns1,1,2\ns2,3,high\n")
    with pytest.raises(InputError, match="not a number") as excinfo:
        check_modality("rna", {"path": str(path)}, samples=sheet)
    _message(excinfo, "rna.csv", "column 'g2'", "data row 2", "'s2'", "'high'")


def test_matrix_empty_file(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "rna.csv", "")
    with pytest.raises(InputError, match=r"rna\.csv: the file is empty"):
        check_modality("rna", {"path": str(path)}, samples=sheet)


def test_matrix_missing_file(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        check_modality("rna", {"path": str(cohort_files["dir"] / "nope.csv")}, samples=sheet)


def test_matrix_unsupported_suffix(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "rna.xls", "sample_id,g1\ns1,1\n")
    with pytest.raises(InputError) as excinfo:
        check_modality("rna", {"path": str(path)}, samples=sheet)
    _message(excinfo, "rna.xls", "unsupported file type '.xls'")


def test_matrix_bad_orientation_value(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    spec = {**cohort_files["config"]["modalities"]["rna"], "orientation": "rows"}
    with pytest.raises(InputError, match=r"modalities\.rna\.orientation is 'rows'"):
        check_modality("rna", spec, samples=sheet)


@pytest.mark.parametrize("id_column", ["sample_id", "feature_id"])
def test_samples_in_rows_file_configured_as_features_in_rows(
    example_samples: pl.DataFrame, id_column: str
) -> None:
    spec = {
        "path": str(EXAMPLE / "mrna.csv"),
        "orientation": "features_in_rows",
        "id_column": id_column,
    }
    with pytest.raises(InputError) as excinfo:
        check_modality("mrna", spec, samples=example_samples)
    _message(
        excinfo,
        "mrna.csv",
        "column 'sample_id' holds 150 sample ids",
        "Set modalities.mrna.orientation: samples_in_rows",
    )


@pytest.mark.parametrize("id_column", [None, "feature_id"])
def test_features_in_rows_file_configured_as_samples_in_rows(
    example_samples: pl.DataFrame, id_column: str | None
) -> None:
    spec = {"path": str(EXAMPLE / "mirna.tsv"), "orientation": "samples_in_rows"}
    if id_column is not None:
        spec["id_column"] = id_column
    with pytest.raises(InputError) as excinfo:
        check_modality("mirna", spec, samples=example_samples)
    _message(
        excinfo,
        "mirna.tsv",
        "the header holds 150 sample ids",
        "Set modalities.mirna.orientation: features_in_rows",
        "modalities.mirna.id_column: 'feature_id'",
    )


def test_transposed_small_file_detected(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    spec = {"path": cohort_files["config"]["modalities"]["mir"]["path"], "id_column": "feature_id"}
    with pytest.raises(InputError, match="orientation: features_in_rows") as excinfo:
        check_modality("mir", spec, samples=sheet)
    _message(excinfo, "mir.tsv", "['s1', 's2', 's3', 's4', 's5'] and 1 more")


def test_parquet_matrix_transposed_detected(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = cohort_files["dir"] / "t.parquet"
    pl.DataFrame({"gene": ["g1", "g2"], "s1": [1.0, 2.0], "s2": [3.0, np.nan]}).write_parquet(path)
    with pytest.raises(InputError, match="orientation: features_in_rows") as excinfo:
        check_modality("prot", {"path": str(path)}, samples=sheet)
    _message(excinfo, "t.parquet", "id_column: 'gene'")


# --------------------------------------------------------------------------- validate_inputs


def test_validate_inputs_small_cohort(cohort_files: dict[str, Any], tmp_path: Path) -> None:
    qc = validate_inputs(cohort_files["config"], qc_out=tmp_path / "qc.json")
    assert qc["n_samples"] == 6
    assert qc["n_subjects"] == 5
    assert qc["max_samples_per_subject"] == 2
    assert qc["class_counts"] == {"case": 3, "control": 3}
    assert qc["class_subject_counts"] == {"case": 2, "control": 3}
    assert qc["n_samples_without_data"] == 0
    assert set(qc["modalities"]) == {"rna", "mir", "prot"}
    assert set(qc["files"]) == {
        str(cohort_files["sheet"]),
        str(cohort_files["outcomes"]),
        *(m["path"] for m in cohort_files["config"]["modalities"].values()),
    }
    assert read_json(tmp_path / "qc.json") == qc


def test_validate_inputs_single_class(cohort_files: dict[str, Any]) -> None:
    _write(cohort_files["outcomes"], OUTCOMES.replace("control", "case"))
    with pytest.raises(InputError) as excinfo:
        validate_inputs(cohort_files["config"])
    _message(excinfo, "outcomes.csv", "'status'", "single class ['case']")


def test_validate_inputs_class_with_one_subject(cohort_files: dict[str, Any]) -> None:
    _write(cohort_files["outcomes"], OUTCOMES.replace("s6,control", "s6,rare"))
    with pytest.raises(InputError, match="fewer than 2 subjects") as excinfo:
        validate_inputs(cohort_files["config"])
    message = _message(excinfo, "outcomes.csv", "'status'", "'rare' (1 subject(s))")
    assert "'control'" not in message


def test_validate_inputs_no_modalities(cohort_files: dict[str, Any]) -> None:
    cohort_files["config"]["modalities"] = {}
    with pytest.raises(InputError, match="modalities is empty"):
        validate_inputs(cohort_files["config"])


def test_validate_inputs_reports_bad_modality(cohort_files: dict[str, Any]) -> None:
    rna = Path(cohort_files["config"]["modalities"]["rna"]["path"])
    _write(rna, "sample_id,g1\ns1,1\nzz,2\n")
    with pytest.raises(InputError) as excinfo:
        validate_inputs(cohort_files["config"])
    _message(excinfo, "rna.csv", "['zz']")


# --------------------------------------------------------------------------- values by type


def _check_values(path: Path, spec: dict[str, Any], name: str = "m") -> None:
    spec = {"path": str(path), **spec}
    matrix = read_matrix(
        path,
        orientation=spec.get("orientation", "samples_in_rows"),
        id_column=spec.get("id_column", "sample_id"),
    )
    check_modality_values(name, spec, matrix)


COUNTS = "gene_id\ts1\ts2\ts3\nG1\t10\t0\t5\nG2\t3\t7\t0\nG3\t0\t12\t9\n"
COUNTS_SPEC = {"type": "rnaseq_counts", "orientation": "features_in_rows", "id_column": "gene_id"}


def test_valid_counts_pass(tmp_path: Path) -> None:
    _check_values(_write(tmp_path / "counts.tsv", COUNTS), COUNTS_SPEC)
    # NaN (not measured) is not a count error
    _check_values(_write(tmp_path / "c2.tsv", COUNTS.replace("\t12\t", "\tNA\t")), COUNTS_SPEC)


@pytest.mark.parametrize(
    "case",
    [
        ("G2\t3\t7", "G2\t3\t-7", "negative count", "s2", "G2", "raw, non-negative"),
        ("G3\t0\t12\t9", "G3\t0\t12\t9.5", "non-integer count", "s3", "G3", "transcriptomics"),
    ],
)
def test_bad_counts_name_file_sample_feature_and_fix(tmp_path: Path, case: tuple) -> None:
    old, new, problem, sample, feature, fix = case
    assert old in COUNTS
    path = _write(tmp_path / "counts.tsv", COUNTS.replace(old, new))
    with pytest.raises(InputError, match=problem) as excinfo:
        _check_values(path, COUNTS_SPEC, name="rna")
    _message(excinfo, "counts.tsv", f"sample '{sample}'", f"feature '{feature}'", fix)


def test_counts_sample_with_zero_library_size(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "counts.tsv",
        "gene_id\ts1\ts2\ts3\nG1\t10\t0\t5\nG2\t3\t0\t0\nG3\t0\tNA\t9\n",
    )
    with pytest.raises(InputError, match="library size of zero") as excinfo:
        _check_values(path, COUNTS_SPEC)
    message = _message(excinfo, "counts.tsv", "'s2'", "Remove these samples")
    assert "'s1'" not in message and "'s3'" not in message
    # a sample that lacks the modality entirely (all NaN) is not an empty library
    _check_values(
        _write(
            tmp_path / "absent.tsv",
            "gene_id\ts1\ts2\ts3\nG1\t10\tNA\t5\nG2\t3\tNA\t1\n",
        ),
        COUNTS_SPEC,
    )


def test_methylation_beta_outside_unit_interval(tmp_path: Path) -> None:
    spec = {"type": "methylation"}
    ok = "sample_id,cg1,cg2\ns1,0.0,1.0\ns2,0.5,1.0000005\ns3,-0.0000005,NA\n"
    _check_values(_write(tmp_path / "ok.csv", ok), spec)  # within the 1e-6 tolerance
    path = _write(tmp_path / "beta.csv", "sample_id,cg1,cg2\ns1,0.2,0.3\ns2,0.5,1.5\n")
    with pytest.raises(InputError, match=r"beta value outside \[0, 1\]") as excinfo:
        _check_values(path, spec)
    _message(excinfo, "beta.csv", "sample 's2'", "feature 'cg2'", "1.5", "not M-values")
    path = _write(tmp_path / "low.csv", "sample_id,cg1\ns1,-0.01\ns2,0.5\n")
    with pytest.raises(InputError, match="sample 's1', feature 'cg1'"):
        _check_values(path, spec)


def test_genotype_dosage_outside_zero_two(tmp_path: Path) -> None:
    spec = {"type": "genotype", "orientation": "features_in_rows", "id_column": "snp"}
    ok = "snp\ts1\ts2\nrs1\t0\t2\nrs2\t1.5\tNA\n"
    _check_values(_write(tmp_path / "ok.tsv", ok), spec)
    path = _write(tmp_path / "geno.tsv", "snp\ts1\ts2\nrs1\t0\t2\nrs2\t1\t3\n")
    with pytest.raises(InputError, match=r"dosage outside \[0, 2\]") as excinfo:
        _check_values(path, spec)
    _message(excinfo, "geno.tsv", "sample 's2'", "feature 'rs2'", "value 3", "0-2 copies")


def test_types_without_value_rules_accept_any_number(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.csv", "sample_id,f1,f2\ns1,-3.5,250\ns2,0.25,7\n")
    for kind in ("transcriptomics", "proteomics", "metabolomics", "other", None):
        _check_values(path, {"type": kind})
    with pytest.raises(InputError):
        _check_values(path, {"type": "methylation"})


def test_modality_without_any_value(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.csv", "sample_id,g1,g2\ns1,NA,\ns2,,NA\n")
    for kind in ("transcriptomics", "rnaseq_counts", None):
        with pytest.raises(InputError, match="no value at all") as excinfo:
            _check_values(path, {"type": kind}, name="rna")
        _message(excinfo, "empty.csv", "'rna'", "remove the modality")
    # a text-only modality (clinical) is not empty
    text = Matrix(
        sample_ids=["s1"],
        feature_names=["stage"],
        values=np.full((1, 1), np.nan, dtype=np.float32),
        text={"stage": np.array(["I"], dtype=object)},
    )
    check_modality_values("clin", {"path": "clin.csv", "type": "clinical"}, text)


def test_check_modality_runs_the_value_checks(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "counts.csv", "sample_id,G1,G2\ns1,4,2\ns3,1,-2\n")
    with pytest.raises(InputError, match="negative count") as excinfo:
        check_modality("rna", {"path": str(path), "type": "rnaseq_counts"}, samples=sheet)
    _message(excinfo, "counts.csv", "'s3'", "'G2'")
    qc = check_modality("rna", {"path": str(path), "type": "transcriptomics"}, samples=sheet)
    assert qc["n_samples"] == 2


def test_check_modality_reads_clinical_text(cohort_files: dict[str, Any]) -> None:
    sheet = read_sample_sheet(cohort_files["sheet"])
    path = _write(cohort_files["dir"] / "clin.csv", "sample_id,age,stage\ns1,50,I\ns2,61,II\n")
    qc = check_modality("clin", {"path": str(path), "type": "clinical"}, samples=sheet)
    assert (qc["n_samples"], qc["n_features"]) == (2, 2)
    # a modality whose steps do not encode text refuses it
    with pytest.raises(InputError, match="not a number"):
        check_modality("clin", {"path": str(path), "type": "transcriptomics"}, samples=sheet)


def _trial_config(tmp_path: Path, baseline: pd.DataFrame | None = None, **treatment: Any) -> dict:
    """The AIDS trial config with absolute paths, optionally another baseline table."""
    config = yaml.safe_load((ROOT / "config/longitudinal.yaml").read_text())
    for key in ("samples", "outcomes"):
        config["cohort"][key] = str(ROOT / config["cohort"][key])
    for spec in config["modalities"].values():
        spec["path"] = str(ROOT / spec["path"])
    if baseline is not None:
        path = tmp_path / "baseline.csv"
        baseline.to_csv(path, index=False)
        config["modalities"]["baseline"]["path"] = str(path)
    config["treatment"].update(treatment)
    return config


def test_treatment_arms_are_counted_per_subject(tmp_path: Path) -> None:
    qc = validate_inputs(_trial_config(tmp_path))
    assert qc["treatment"] == {
        "column": "baseline:drug",
        "subjects_by_arm": {"ddC": 235, "ddI": 226},
        "n_subjects_other_or_missing": 0,
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"column": "baseline:arm"}, "has no feature 'arm'"),
        ({"column": "cd5:drug"}, "not in modalities"),
        ({"arms": ["ddc", "ddI"]}, "arm(s) ['ddc'] have fewer than 2 subjects"),
    ],
)
def test_treatment_errors_name_the_key_and_the_fix(
    tmp_path: Path, change: dict, expected: str
) -> None:
    with pytest.raises(InputError, match="treatment") as error:
        validate_inputs(_trial_config(tmp_path, **change))
    assert expected in str(error.value)


def test_treatment_that_changes_between_visits_is_rejected(tmp_path: Path) -> None:
    baseline = pd.read_csv(ROOT / "resources/longitudinal_example/baseline.csv")
    second_visit = baseline.index[baseline["sample_id"] == "1_t6"]
    baseline.loc[second_visit, "drug"] = "ddI"  # subject 1 is on ddC at entry
    with pytest.raises(InputError, match=r"changes arm between the visits of subjects \['1'\]"):
        validate_inputs(_trial_config(tmp_path, baseline))
