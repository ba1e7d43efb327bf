"""omics_ml.io: matrices in both orientations, atomic JSON, digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from omics_ml.io import InputError, file_digest, read_json, read_matrix, write_json

EXAMPLE = Path(__file__).resolve().parents[2] / "resources" / "example"


def test_orientations_agree_on_the_same_values(tmp_path: Path) -> None:
    frame = pl.read_csv(EXAMPLE / "mrna.csv").head(6).select(pl.all().head(6))
    frame.write_csv(tmp_path / "rows.csv")
    ids = frame["sample_id"].to_list()
    frame.drop("sample_id").transpose(
        include_header=True, header_name="gene", column_names=ids
    ).write_csv(tmp_path / "cols.tsv", separator="\t")
    by_rows = read_matrix(tmp_path / "rows.csv")
    by_cols = read_matrix(tmp_path / "cols.tsv", orientation="features_in_rows", id_column="gene")
    assert by_rows.sample_ids == by_cols.sample_ids == ids
    assert by_rows.feature_names == by_cols.feature_names
    assert by_rows.values.dtype == np.float32
    np.testing.assert_array_equal(by_rows.values, by_cols.values)


def test_missing_values_become_nan(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("sample_id,a,b\ns1,1.5,NA\ns2,,2\n")
    matrix = read_matrix(tmp_path / "m.csv")
    assert np.isnan(matrix.values[0, 1]) and np.isnan(matrix.values[1, 0])


def test_duplicate_feature_ids_are_named(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_text("feature_id\ts1\ts2\ng1\t1\t2\ng1\t3\t4\n")
    with pytest.raises(InputError, match=r"m\.tsv.*duplicate feature id.*'g1'"):
        read_matrix(tmp_path / "m.tsv", orientation="features_in_rows", id_column="feature_id")


def test_write_json_is_atomic_and_round_trips(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.json"
    write_json(target, {"a": [1, 2.5], "b": None})
    assert read_json(target) == {"a": [1, 2.5], "b": None}
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})
    assert read_json(target) == {"a": [1, 2.5], "b": None}  # the earlier file is intact
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]  # no temporary left behind
    json.loads(target.read_text())


def test_file_digest_is_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"omics" * 1000)
    assert file_digest(path) == hashlib.sha256(b"omics" * 1000).hexdigest()


def test_read_matrix_allow_text_keeps_text_columns(tmp_path: Path) -> None:
    (tmp_path / "clin.csv").write_text(
        "sample_id,age,stage,grade\ns1,50,I,1\ns2,NA,II,\ns3,61.5,,3\ns4,70,III ,2\n"
    )
    matrix = read_matrix(tmp_path / "clin.csv", allow_text=True)
    assert matrix.sample_ids == ["s1", "s2", "s3", "s4"]
    assert matrix.feature_names == ["age", "stage", "grade"]
    assert matrix.values.dtype == np.float32
    np.testing.assert_array_equal(matrix.values[:, 0], [50.0, np.nan, 61.5, 70.0])
    np.testing.assert_array_equal(matrix.values[:, 2], [1.0, np.nan, 3.0, 2.0])
    assert np.isnan(matrix.values[:, 1]).all()  # text columns are NaN in values
    assert list(matrix.text) == ["stage"]
    stage = matrix.text["stage"]
    assert stage.dtype == object
    assert stage.tolist() == ["I", "II", None, "III "]  # missing is None, text kept as written
    # without allow_text the same file is an error naming the text value
    with pytest.raises(InputError, match=r"column 'stage'.*'I'.*not a number"):
        read_matrix(tmp_path / "clin.csv")


def test_read_matrix_allow_text_parquet_and_numeric_only(tmp_path: Path) -> None:
    pl.DataFrame({"sample_id": ["a", "b"], "sex": ["F", None], "bmi": [22.5, 30.1]}).write_parquet(
        tmp_path / "clin.parquet"
    )
    matrix = read_matrix(tmp_path / "clin.parquet", allow_text=True)
    assert matrix.text["sex"].tolist() == ["F", None]
    np.testing.assert_array_equal(matrix.values[:, 1], np.array([22.5, 30.1], dtype=np.float32))
    # a purely numeric file has no text columns, allowed or not
    numeric = read_matrix(EXAMPLE / "mrna.csv", allow_text=True)
    assert numeric.text == {}
    np.testing.assert_array_equal(numeric.values, read_matrix(EXAMPLE / "mrna.csv").values)


def test_read_matrix_allow_text_needs_samples_in_rows(tmp_path: Path) -> None:
    (tmp_path / "t.tsv").write_text("feature_id\ts1\ts2\nstage\tI\tII\nage\t50\t60\n")
    with pytest.raises(InputError, match=r"t\.tsv.*samples_in_rows"):
        read_matrix(
            tmp_path / "t.tsv",
            orientation="features_in_rows",
            id_column="feature_id",
            allow_text=True,
        )
    # numeric features-in-rows files are refused too: the option itself needs samples in rows
    with pytest.raises(InputError, match="samples_in_rows"):
        read_matrix(
            EXAMPLE / "mirna.tsv",
            orientation="features_in_rows",
            id_column="feature_id",
            allow_text=True,
        )


def test_atomic_output_gives_files_the_umask_mode_not_private(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o027)
    try:
        write_json(tmp_path / "shared.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o640


def test_sigterm_removes_the_partial_output_of_an_atomic_write(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "out.bin"
    code = (
        "import sys, time\n"
        "from omics_ml.io import atomic_output, terminate_on_sigterm\n"
        "terminate_on_sigterm()\n"
        f"with atomic_output({str(target)!r}) as tmp:\n"
        "    tmp.write_bytes(b'partial')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
