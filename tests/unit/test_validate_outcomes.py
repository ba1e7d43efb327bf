"""Tests of the survival and regression outcome checks of omics_ml.validate, on small files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from omics_ml.io import InputError
from omics_ml.validate import load_cohort, validate_inputs

# Four subjects with repeated visits; sample ids differ from subject ids so that messages
# can be checked for which of the two they name.
SHEET = """sample_id,subject_id,visit_time
v1,P01,0
v2,P01,6
v3,P02,0
v4,P02,3.5
v5,P03,0
v6,P04,0
v7,P04,12
"""
OUTCOMES = """subject_id,time,event
P01,10.5,1
P02,4,0
P03,7.25,1
P04,20,0
"""
MODALITY = "sample_id,x\nv1,1.0\nv2,2.0\nv3,3.0\nv4,4.0\nv5,5.0\nv6,6.0\nv7,7.0\n"


def _cohort(
    tmp_path: Path,
    *,
    sheet: str = SHEET,
    outcomes: str = OUTCOMES,
    landmarks: list[float] | None = None,
) -> dict[str, Any]:
    """Write the three files and return a survival config that reads them."""
    (tmp_path / "samples.csv").write_text(sheet)
    (tmp_path / "outcomes.csv").write_text(outcomes)
    (tmp_path / "lab.csv").write_text(MODALITY)
    config: dict[str, Any] = {
        "task": "survival",
        "cohort": {
            "samples": str(tmp_path / "samples.csv"),
            "outcomes": str(tmp_path / "outcomes.csv"),
            "outcome_id_column": "subject_id",
            "time_column": "time",
            "event_column": "event",
        },
        "modalities": {"lab": {"path": str(tmp_path / "lab.csv"), "type": "clinical"}},
    }
    if landmarks is not None:
        config["longitudinal"] = {"landmarks": landmarks}
    return config


def _outcomes_with(p02: str) -> str:
    """OUTCOMES with subject P02's row replaced by ``P02,<p02>``."""
    return OUTCOMES.replace("P02,4,0", f"P02,{p02}")


def _error(config: dict[str, Any]) -> str:
    with pytest.raises(InputError) as excinfo:
        load_cohort(config)
    return str(excinfo.value)


def _assert_names(message: str, *needles: str) -> None:
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


# --------------------------------------------------------------------------- valid tables


def test_valid_survival_cohort(tmp_path: Path):
    cohort = load_cohort(_cohort(tmp_path, landmarks=[0, 2, 6]))
    assert set(cohort.columns) == {
        "sample_id",
        "subject_id",
        "label",
        "time",
        "event",
        "visit_time",
    }
    assert cohort.columns[:2] == ["sample_id", "subject_id"]
    assert cohort.schema["time"] == pl.Float64
    assert cohort.schema["event"] == pl.Int8
    assert cohort.schema["visit_time"] == pl.Float64
    assert cohort["sample_id"].to_list() == ["v1", "v2", "v3", "v4", "v5", "v6", "v7"]
    assert cohort["subject_id"].to_list() == ["P01", "P01", "P02", "P02", "P03", "P04", "P04"]
    assert cohort["time"].to_list() == [10.5, 10.5, 4.0, 4.0, 7.25, 20.0, 20.0]
    assert cohort["event"].to_list() == [1, 1, 0, 0, 1, 0, 0]
    assert cohort["label"].to_list() == [
        "event",
        "event",
        "censored",
        "censored",
        "event",
        "censored",
        "censored",
    ]
    assert cohort["visit_time"].to_list() == [0.0, 6.0, 0.0, 3.5, 0.0, 0.0, 12.0]


def test_event_codes_written_as_floats_and_a_visit_at_the_event_time_are_valid(tmp_path: Path):
    outcomes = "subject_id,time,event\nP01,6,1.0\nP02,4,0.0\nP03,7.25,1\nP04,12,0\n"
    cohort = load_cohort(_cohort(tmp_path, outcomes=outcomes, landmarks=[0]))
    assert cohort["event"].to_list() == [1, 1, 0, 0, 1, 0, 0]
    assert cohort["time"].to_list() == [6.0, 6.0, 4.0, 4.0, 7.25, 12.0, 12.0]


def test_missing_visit_time_is_allowed_without_landmarks(tmp_path: Path):
    sheet = SHEET.replace("v4,P02,3.5", "v4,P02,")
    cohort = load_cohort(_cohort(tmp_path, sheet=sheet))
    assert cohort["visit_time"].to_list() == [0.0, 6.0, 0.0, None, 0.0, 0.0, 12.0]


# --------------------------------------------------------------------------- bad outcomes


@pytest.mark.parametrize(
    ("p02", "needles"),
    [
        pytest.param(
            "-4,0",
            ["'time' is zero or negative", "subject(s) ['P02']", "['-4']", "positive time"],
            id="negative-time",
        ),
        pytest.param(
            "0,0",
            ["'time' is zero or negative", "subject(s) ['P02']", "['0']", "positive time"],
            id="zero-time",
        ),
        pytest.param(
            ",0",
            ["'time' is empty", "sample_id ['v3', 'v4']", "data rows [2]", "Fill in the outcome"],
            id="missing-time",
        ),
        pytest.param(
            "abc,0",
            ["'time' holds non-numeric survival time", "['v3', 'v4']", "Write survival times"],
            id="non-numeric-time",
        ),
        pytest.param(
            "4,2",
            ["'event' must be 0 (censored) or 1 (event)", "['2']", "['P02']", "Recode"],
            id="event-2",
        ),
        pytest.param(
            "4,yes",
            ["'event' must be 0 (censored) or 1 (event)", "['yes']", "['P02']", "Recode"],
            id="event-yes",
        ),
        pytest.param(
            "3,0",
            [
                "1 visit(s) after the subject's event or end of follow-up",
                "subject 'P02'",
                "sample 'v4' at visit_time 3.5",
                "'time' is 3",
                "correct the time or drop the visit",
            ],
            id="visit-after-event",
        ),
    ],
)
def test_bad_survival_outcome_names_file_ids_and_fix(tmp_path: Path, p02: str, needles: list):
    config = _cohort(tmp_path, outcomes=_outcomes_with(p02), landmarks=[0, 2])
    message = _error(config)
    _assert_names(message, str(tmp_path / "outcomes.csv"), *needles)
    for other in ("P01", "P03", "P04"):
        assert other not in message


@pytest.mark.parametrize("p02", [",0", "abc,0"], ids=["missing-time", "non-numeric-time"])
def test_bad_survival_time_names_the_subject(tmp_path: Path, p02: str):
    message = _error(_cohort(tmp_path, outcomes=_outcomes_with(p02)))
    assert "P02" in message


def test_event_time_before_a_visit_is_found_without_landmarks(tmp_path: Path):
    message = _error(_cohort(tmp_path, outcomes=OUTCOMES.replace("P04,20,0", "P04,11.5,0")))
    _assert_names(
        message,
        str(tmp_path / "outcomes.csv"),
        "subject 'P04'",
        "sample 'v7' at visit_time 12",
        "'time' is 11.5",
        "(subjects ['P04'])",
    )


# --------------------------------------------------------------------------- bad visits


def test_two_visits_at_the_same_time_overlap(tmp_path: Path):
    sheet = SHEET.replace("v4,P02,3.5", "v4,P02,0")
    message = _error(_cohort(tmp_path, sheet=sheet, landmarks=[0, 2]))
    _assert_names(
        message,
        str(tmp_path / "samples.csv"),
        "visits overlap",
        "subject(s) ['P02']",
        "sample_id ['v3', 'v4']",
        "merge the duplicate visits or correct their times",
    )
    assert "P01" not in message


def test_same_visit_time_of_different_subjects_is_no_overlap(tmp_path: Path):
    cohort = load_cohort(_cohort(tmp_path, landmarks=[0]))  # four subjects visit at 0
    assert cohort.height == 7


def test_missing_visit_time_with_landmarks(tmp_path: Path):
    sheet = SHEET.replace("v4,P02,3.5", "v4,P02,")
    message = _error(_cohort(tmp_path, sheet=sheet, landmarks=[0, 2]))
    _assert_names(
        message,
        str(tmp_path / "samples.csv"),
        "'visit_time' is empty",
        "sample_id ['v4']",
        "fill it in or drop the sample",
    )


def test_no_visit_time_column_with_landmarks(tmp_path: Path):
    sheet = "sample_id,subject_id\nv1,P01\nv2,P01\nv3,P02\nv4,P02\nv5,P03\nv6,P04\nv7,P04\n"
    message = _error(_cohort(tmp_path, sheet=sheet, landmarks=[0]))
    _assert_names(
        message,
        str(tmp_path / "samples.csv"),
        "longitudinal.landmarks is set",
        "no 'visit_time' column",
    )


# --------------------------------------------------------------------------- regression


def _regression(tmp_path: Path, values: list[str]) -> dict[str, Any]:
    n = len(values)
    sheet = "sample_id,subject_id\n" + "".join(f"s{i},S{i}\n" for i in range(n))
    sheet += "s0b,S0\n"  # a second sample of subject S0
    outcomes = "subject_id,y\n" + "".join(f"S{i},{v}\n" for i, v in enumerate(values))
    (tmp_path / "samples.csv").write_text(sheet)
    (tmp_path / "outcomes.csv").write_text(outcomes)
    return {
        "task": "regression",
        "cohort": {
            "samples": str(tmp_path / "samples.csv"),
            "outcomes": str(tmp_path / "outcomes.csv"),
            "outcome_id_column": "subject_id",
            "outcome_column": "y",
        },
        "modalities": {},
    }


def test_regression_target_and_quintile_strata(tmp_path: Path):
    values = [str(v) for v in (3.5, 0.25, 9, 1e3, -2, 7.75, 4, 6, 5, 8)]
    cohort = load_cohort(_regression(tmp_path, values))
    assert cohort.columns == ["sample_id", "subject_id", "target", "label"]
    assert cohort.schema["target"] == pl.Float64
    assert cohort["target"].to_list() == [
        3.5,
        0.25,
        9.0,
        1000.0,
        -2.0,
        7.75,
        4.0,
        6.0,
        5.0,
        8.0,
        3.5,
    ]
    # quintiles of the 11 sample values (S0 counts twice), bins closed on the right
    by_sample = dict(zip(cohort["sample_id"], cohort["label"], strict=True))
    assert by_sample == {
        "s4": "q1",
        "s1": "q1",
        "s0": "q1",
        "s0b": "q1",
        "s6": "q2",
        "s8": "q3",
        "s7": "q3",
        "s5": "q4",
        "s9": "q4",
        "s2": "q5",
        "s3": "q5",
    }
    target = cohort["target"].to_numpy()
    edges = np.quantile(target, [0.2, 0.4, 0.6, 0.8])
    expected = [f"q{k + 1}" for k in np.searchsorted(edges, target, side="left")]
    assert cohort["label"].to_list() == expected


def test_regression_non_numeric_outcome(tmp_path: Path):
    config = _regression(tmp_path, ["1.5", "2", "n/a?", "4"])
    message = _error(config)
    _assert_names(
        message,
        str(tmp_path / "outcomes.csv"),
        "column 'y' holds non-numeric outcome value ['n/a?']",
        "sample_id ['s2']",
        "Write outcome values as numbers",
    )


# --------------------------------------------------------------------------- validate_inputs


def test_validate_inputs_survival_needs_two_events(tmp_path: Path):
    one_event = "subject_id,time,event\nP01,10.5,1\nP02,4,0\nP03,7.25,0\nP04,20,0\n"
    config = _cohort(tmp_path, outcomes=one_event, landmarks=[0])
    with pytest.raises(InputError) as excinfo:
        validate_inputs(config)
    _assert_names(
        str(excinfo.value),
        str(tmp_path / "outcomes.csv"),
        "only 1 subject(s) with an event over 4 subjects",
        "Check the event column",
    )


def test_validate_inputs_survival_summary(tmp_path: Path):
    qc = validate_inputs(_cohort(tmp_path, landmarks=[0, 2]), qc_out=tmp_path / "qc.json")
    assert qc["task"] == "survival"
    assert (qc["n_samples"], qc["n_subjects"], qc["max_samples_per_subject"]) == (7, 4, 2)
    assert qc["class_counts"] == {"censored": 4, "event": 3}
    assert qc["class_subject_counts"] == {"censored": 2, "event": 2}
    assert qc["modalities"]["lab"]["n_samples"] == 7
    assert (tmp_path / "qc.json").is_file()
