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
