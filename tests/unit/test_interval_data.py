"""omics_ml.interval_data: counting-process tables split into samples, outcomes and visits."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from omics_ml.interval_data import IntervalCohort, split_interval_table, write_cohort
from omics_ml.io import InputError

SOURCE = "cohort.parquet"

# The first ten rows of SurvSet's `aids` export (JM package), verbatim: pid, event, time, time2,
# num_CD4, fac_drug, fac_gender, fac_prevOI, fac_AZT. pid and the fac_ columns are categorical.
AIDS_ROWS = [
    ("1", 0, 0, 6.0, 10.677078252, "ddC", "male", "AIDS", "intolerance"),
    ("1", 0, 6, 12.0, 8.4261497732, "ddC", "male", "AIDS", "intolerance"),
    ("1", 0, 12, 16.97, 9.4339811321, "ddC", "male", "AIDS", "intolerance"),
    ("2", 0, 0, 6.0, 6.3245553203, "ddI", "male", "noAIDS", "intolerance"),
    ("2", 0, 6, 12.0, 8.1240384046, "ddI", "male", "noAIDS", "intolerance"),
    ("2", 0, 12, 18.0, 4.582575695, "ddI", "male", "noAIDS", "intolerance"),
    ("2", 0, 18, 19.0, 5.0, "ddI", "male", "noAIDS", "intolerance"),
    ("3", 0, 0, 2.0, 3.4641016151, "ddI", "female", "AIDS", "intolerance"),
    ("3", 0, 2, 6.0, 3.6055512755, "ddI", "female", "AIDS", "intolerance"),
    ("3", 1, 6, 18.53, 6.164414003, "ddI", "female", "AIDS", "intolerance"),
]
AIDS_SCHEMA = {
    "pid": pl.Categorical,
    "event": pl.Int64,
    "time": pl.Int64,
    "time2": pl.Float64,
    "num_CD4": pl.Float64,
    "fac_drug": pl.Categorical,
    "fac_gender": pl.Categorical,
    "fac_prevOI": pl.Categorical,
    "fac_AZT": pl.Categorical,
}


def aids() -> pl.DataFrame:
    return pl.DataFrame(AIDS_ROWS, schema=AIDS_SCHEMA, orient="row")


def small() -> pl.DataFrame:
    """Hand-made: subject "b" first and its rows out of order, subject 'a' with an event."""
    return pl.DataFrame(
        {
            "pid": ["b", "b", "a", "b", "a"],
            "time": [2.5, 0.0, 0.0, 1.0, 3.0],
            "time2": [4.0, 1.0, 3.0, 2.5, 7.25],
            "event": [0, 0, 0, 0, 1],
            "num_x": [3.0, 1.0, 10.0, 2.0, 20.0],
            "fac_g": pl.Series(["u", "u", "v", "u", "v"], dtype=pl.Categorical),
        }
    )


def cross_sectional() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "pid": [11, 12, 13],
            "event": [1, 0, 1],
            "time": [20, 43, 5],
            "num_age": [50, 61, 70],
            "fac_grade": pl.Series(["1", "3", "missing"], dtype=pl.Categorical),
        }
    )


# --- results ---------------------------------------------------------------------------------


def test_small_table_samples_outcomes_and_visits() -> None:
    cohort = split_interval_table(small(), source=SOURCE)
    # subjects in order of first appearance, each subject's visits by start time
    assert cohort.samples.rows() == [
        ("b_t0", "b", 0.0),
        ("b_t1", "b", 1.0),
        ("b_t2.5", "b", 2.5),
        ("a_t0", "a", 0.0),
        ("a_t3", "a", 3.0),
    ]
    assert cohort.outcomes.rows() == [("b", 4.0, 0), ("a", 7.25, 1)]
    assert cohort.outcomes.schema == pl.Schema(
        {"subject_id": pl.String, "time": pl.Float64, "event": pl.Int8}
    )
    assert cohort.visits.columns == ["sample_id", "num_x", "fac_g"]
    assert cohort.visits.schema["fac_g"] == pl.String
    assert cohort.visits["sample_id"].to_list() == cohort.samples["sample_id"].to_list()
    assert cohort.visits["num_x"].to_list() == [1.0, 2.0, 3.0, 10.0, 20.0]


def test_real_aids_rows() -> None:
    cohort = split_interval_table(aids(), source=SOURCE)
    assert cohort.samples["sample_id"].to_list() == [
        "1_t0", "1_t6", "1_t12", "2_t0", "2_t6", "2_t12", "2_t18", "3_t0", "3_t2", "3_t6",
    ]  # fmt: skip
    assert cohort.samples["visit_time"].to_list() == [0, 6, 12, 0, 6, 12, 18, 0, 2, 6]
    # follow-up ends at the stop of the last interval; only patient 3 died
    assert cohort.outcomes.rows() == [("1", 16.97, 0), ("2", 19.0, 0), ("3", 18.53, 1)]
    assert cohort.visits.columns == [
        "sample_id", "num_CD4", "fac_drug", "fac_gender", "fac_prevOI", "fac_AZT",
    ]  # fmt: skip
    assert cohort.visits["num_CD4"].to_list() == [row[4] for row in AIDS_ROWS]
    assert all(cohort.visits.schema[c] == pl.String for c in cohort.visits.columns[2:])
    assert cohort.visits.filter(pl.col("sample_id") == "3_t6").row(0)[2:] == (
        "ddI", "female", "AIDS", "intolerance",
    )  # fmt: skip


def test_cross_sectional_table_has_one_sample_per_subject() -> None:
    cohort = split_interval_table(cross_sectional(), source=SOURCE)
    assert cohort.samples.rows() == [
        ("11_t0", "11", 0.0),
        ("12_t0", "12", 0.0),
        ("13_t0", "13", 0.0),
    ]
    assert cohort.outcomes.rows() == [("11", 20.0, 1), ("12", 43.0, 0), ("13", 5.0, 1)]
    assert cohort.visits.columns == ["sample_id", "num_age", "fac_grade"]
    assert cohort.visits["fac_grade"].to_list() == ["1", "3", "missing"]


def test_custom_column_names_and_boolean_events() -> None:
    frame = pl.DataFrame(
        {"id": ["p"], "t0": [0], "t1": [5], "dead": [True], "x": [1.0]},
    )
    cohort = split_interval_table(frame, subject="id", start="t0", stop="t1", event="dead")
    assert cohort.outcomes.rows() == [("p", 5.0, 1)]
    assert cohort.visits.columns == ["sample_id", "x"]


def test_sample_ids_keep_full_precision_and_stay_unique() -> None:
    frame = pl.DataFrame(
        {
            "pid": ["s"] * 3,
            "time": [1e-7, 1.0000001, 1.0000002],
            "time2": [1.0000001, 1.0000002, 2.0],
            "event": [0, 0, 0],
        }
    )
    ids = split_interval_table(frame).samples["sample_id"].to_list()
    assert ids == ["s_t1e-7", "s_t1.0000001", "s_t1.0000002"]


def test_gaps_between_intervals_are_allowed() -> None:
    frame = pl.DataFrame(
        {"pid": ["g", "g"], "time": [0.0, 5.0], "time2": [2.0, 9.0], "event": [0, 1]}
    )
    assert split_interval_table(frame).outcomes.rows() == [("g", 9.0, 1)]


def test_subset_keeps_or_drops_whole_subjects() -> None:
    cohort = split_interval_table(aids(), source=SOURCE)
    kept = cohort.subset(["3", "not-a-subject"])
    assert kept.samples["sample_id"].to_list() == ["3_t0", "3_t2", "3_t6"]
    assert kept.visits["sample_id"].to_list() == ["3_t0", "3_t2", "3_t6"]
    assert kept.outcomes["subject_id"].to_list() == ["3"]
    rest = cohort.subset(["3"], exclude=True)
    assert rest.outcomes["subject_id"].to_list() == ["1", "2"]
    assert rest.samples.height == rest.visits.height == 7


# --- validation ------------------------------------------------------------------------------


def _set(frame: pl.DataFrame, row: int, column: str, value: object) -> pl.DataFrame:
    """``frame`` with one cell replaced."""
    values = frame[column].to_list()
    values[row] = value
    dtype = pl.Float64 if isinstance(value, float) else frame.schema[column]
    return frame.with_columns(pl.Series(column, values, dtype=dtype, strict=False))


@pytest.mark.parametrize(
    ("frame", "subject", "fragment"),
    [
        (_set(aids(), 4, "time", -6), "2", "negative"),
        (_set(aids(), 9, "time2", -1.0), "3", "negative"),
        (_set(aids(), 0, "time", None), "1", "missing time"),
        (_set(aids(), 5, "time2", float("nan")), "2", "missing time"),
        (_set(aids(), 2, "event", 2), "1", "other than 0/1"),
        (_set(aids(), 8, "event", None), "3", "other than 0/1"),
        (_set(aids(), 7, "time2", 0.0), "3", "ending at or before it starts"),
        (_set(aids(), 1, "time2", 13.0), "1", "overlapping"),
        (_set(aids(), 5, "time", 6), "2", "overlapping"),
        (_set(aids(), 4, "event", 1), "2", "event before the last visit interval"),
        (_set(small(), 1, "event", 1), "b", "event before the last visit interval"),
        (_set(cross_sectional(), 2, "pid", 11), "11", "more than one row"),
        (_set(cross_sectional(), 1, "time", -3), "12", "negative"),
        (_set(cross_sectional(), 0, "event", 5), "11", "other than 0/1"),
    ],
    ids=[
        "negative-start",
        "negative-stop",
        "missing-start",
        "nan-stop",
        "event-2",
        "event-null",
        "stop-equals-start",
        "overlap",
        "duplicate-start",
        "event-early-aids",
        "event-early-unsorted",
        "cross-sectional-duplicate",
        "cross-sectional-negative",
        "cross-sectional-event",
    ],
)
def test_invalid_tables_name_source_subject_and_problem(
    frame: pl.DataFrame, subject: str, fragment: str
) -> None:
    with pytest.raises(InputError) as err:
        split_interval_table(frame, source=SOURCE)
    message = str(err.value)
    assert message.startswith(f"{SOURCE}: ")
    assert f"subject(s) '{subject}'" in message
    assert fragment in message


def test_many_offending_subjects_are_summarised() -> None:
    frame = pl.DataFrame(
        {"pid": list("abcdefg"), "time": [-1.0] * 7, "time2": [1.0] * 7, "event": [0] * 7}
    )
    with pytest.raises(InputError, match=r"'a', 'b', 'c', 'd', 'e' and 2 more"):
        split_interval_table(frame, source=SOURCE)


def test_missing_columns_and_subject_ids_are_reported() -> None:
    with pytest.raises(InputError, match=r"cohort.parquet: missing column\(s\) \['event'\]"):
        split_interval_table(aids().drop("event"), source=SOURCE)
    with pytest.raises(InputError, match=r"column 'pid' is empty at data row\(s\) \[3\]"):
        split_interval_table(_set(aids(), 2, "pid", None), source=SOURCE)
    with pytest.raises(InputError, match=r"not numbers"):
        split_interval_table(aids().with_columns(pl.col("time").cast(pl.String)), source=SOURCE)


# --- writing ---------------------------------------------------------------------------------


def test_write_cohort_round_trips(tmp_path: Path) -> None:
    cohort = split_interval_table(aids(), source=SOURCE)
    paths = write_cohort(
        cohort,
        tmp_path / "out",
        modalities={"cd4": ["num_CD4"], "baseline": ["fac_drug", "fac_gender"]},
        parquet=["baseline"],
    )
    assert paths == {
        "samples": tmp_path / "out" / "samples.csv",
        "outcomes": tmp_path / "out" / "outcomes.csv",
        "cd4": tmp_path / "out" / "cd4.csv",
        "baseline": tmp_path / "out" / "baseline.parquet",
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in paths.values()
    )  # no temporary files left behind
    samples = pl.read_csv(paths["samples"], schema_overrides={"subject_id": pl.String})
    assert samples.equals(cohort.samples)
    outcomes = pl.read_csv(paths["outcomes"], schema_overrides={"subject_id": pl.String})
    assert outcomes.rows() == cohort.outcomes.rows()
    cd4 = pl.read_csv(paths["cd4"])
    assert cd4.columns == ["sample_id", "num_CD4"]
    assert cd4["num_CD4"].to_list() == [row[4] for row in AIDS_ROWS]
    baseline = pl.read_parquet(paths["baseline"])
    assert baseline.equals(cohort.visits.select("sample_id", "fac_drug", "fac_gender"))


def test_write_cohort_outcome_file_name_or_none(tmp_path: Path) -> None:
    cohort = split_interval_table(small())
    paths = write_cohort(
        cohort, tmp_path / "a", modalities={"x": ["num_x"]}, outcomes_file="truth.csv"
    )
    assert paths["outcomes"].name == "truth.csv"
    paths = write_cohort(cohort, tmp_path / "b", modalities={"x": ["num_x"]}, outcomes_file=None)
    assert "outcomes" not in paths
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["samples.csv", "x.csv"]


def test_write_cohort_is_byte_identical_on_rewrite(tmp_path: Path) -> None:
    cohort = split_interval_table(aids())
    modalities = {"cd4": ["num_CD4"], "baseline": ["fac_drug"]}
    first = {
        k: p.read_bytes()
        for k, p in write_cohort(cohort, tmp_path, modalities=modalities, parquet=["cd4"]).items()
    }
    second = {
        k: p.read_bytes()
        for k, p in write_cohort(cohort, tmp_path, modalities=modalities, parquet=["cd4"]).items()
    }
    assert first == second


@pytest.mark.parametrize(
    ("modalities", "parquet", "fragment"),
    [
        ({"cd4": ["CD4"]}, (), "not visit columns"),
        ({"cd4": []}, (), "not visit columns"),
        ({"../evil": ["num_CD4"]}, (), "cannot be a file name"),
        ({"samples": ["num_CD4"]}, (), "cannot be a file name"),
        ({"outcomes": ["num_CD4"]}, (), "cannot be a file name"),
        ({"cd4": ["num_CD4"]}, ("rna",), "not in modalities"),
    ],
)
def test_write_cohort_rejects_bad_modalities(
    tmp_path: Path, modalities: dict[str, list[str]], parquet: tuple[str, ...], fragment: str
) -> None:
    cohort = split_interval_table(aids())
    with pytest.raises(InputError, match=fragment):
        write_cohort(cohort, tmp_path, modalities=modalities, parquet=parquet)
    assert not any(tmp_path.iterdir())  # nothing written


def test_cohort_is_immutable() -> None:
    cohort = split_interval_table(small())
    assert isinstance(cohort, IntervalCohort)
    with pytest.raises(AttributeError):
        cohort.samples = cohort.visits  # type: ignore[misc]
