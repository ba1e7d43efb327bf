"""Tests of omics_ml.longitudinal: landmark features, risk sets and future targets."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omics_ml.longitudinal import (
    SUMMARIES,
    VISIT_FEATURES,
    VISIT_PREFIX,
    LandmarkDataset,
    LandmarkFeatures,
    at_risk,
    future_values,
    landmark_dataset,
    landmark_feature_names,
    landmark_features,
)

NAN = math.nan
FEATURES = ["rna:A", "rna:B", "prot:C"]

# Hand-built cohort, landmark s = 4. Row order is deliberately not sorted by subject or time.
#   p2: t=1 [1, -, 5], t=4 (at s, used) [2, 3, -], t=5 (after s) [9, 9, 9]
#   p1: t=0 [2, 1, -], t=2 [4, -, 3], t=3 [3, 2, -]
#   p3: only t=4.5 (after s): absent
#   p4: t=2 [0.5, -, -]
HAND_IDS = ["p2", "p1", "p1", "p2", "p1", "p3", "p2", "p4"]
HAND_TIMES = [1.0, 0.0, 2.0, 5.0, 3.0, 4.5, 4.0, 2.0]
HAND_VALUES = np.array(
    [
        [1.0, NAN, 5.0],
        [2.0, 1.0, NAN],
        [4.0, NAN, 3.0],
        [9.0, 9.0, 9.0],
        [3.0, 2.0, NAN],
        [1.0, 1.0, 1.0],
        [2.0, 3.0, NAN],
        [0.5, NAN, NAN],
    ]
)


def _column(result: LandmarkFeatures | LandmarkDataset, name: str) -> np.ndarray:
    return result.values[:, result.feature_names.index(name)]


def _bits(values: np.ndarray) -> bytes:
    """Exact bit pattern (NaNs included) of a float32 matrix."""
    return np.ascontiguousarray(values).view(np.uint32).tobytes()


# ---------------------------------------------------------------------------------------------
# names and the hand-computed example


def test_feature_names_and_layout() -> None:
    names = landmark_feature_names(["a", "b"], np.array([True, False]))
    assert names == [
        "a@baseline",
        "a@last",
        "a@slope",
        "a@change",
        "b@last",
        "visits:n_visits",
        "visits:time_since_baseline",
        "visits:time_since_last_visit",
        "visits:landmark",
    ]
    assert SUMMARIES == ("baseline", "last", "slope", "change")
    assert VISIT_FEATURES == (
        "n_visits",
        "time_since_baseline",
        "time_since_last_visit",
        "landmark",
    )
    assert VISIT_PREFIX == "visits"
    assert landmark_feature_names(["a"]) == [f"a@{s}" for s in SUMMARIES] + [
        f"visits:{v}" for v in VISIT_FEATURES
    ]


def test_hand_computed_example() -> None:
    result = landmark_features(
        HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, 4.0, summarise=np.array([True, True, False])
    )
    # p3 has no visit <= 4; order is first appearance among visits <= 4.
    assert result.subject_ids == ["p2", "p1", "p4"]
    assert result.landmark == 4.0
    assert result.values.dtype == np.float32
    assert result.feature_names == [
        *(f"rna:A@{s}" for s in SUMMARIES),
        *(f"rna:B@{s}" for s in SUMMARIES),
        "prot:C@last",
        *(f"visits:{v}" for v in VISIT_FEATURES),
    ]
    # Blocks: rna:A summaries, rna:B summaries, prot:C@last, visit features.
    expected = {
        # p2 uses t=1 and t=4 only; rna:B only at t=4; prot:C only at t=1.
        "p2": [[1, 2, 1 / 3, 1], [3, 3, NAN, 0], [5], [2, 3, 0, 4]],
        # p1 rna:A at t=0,2,3 = 2,4,3: slope = 2 / (14/3) = 3/7; rna:B at t=0,3 = 1,2.
        "p1": [[2, 3, 3 / 7, 1], [1, 2, 1 / 3, 1], [3], [3, 4, 1, 4]],
        # p4: one visit; rna:B never present -> all NaN; prot:C never present -> NaN.
        "p4": [[0.5, 0.5, NAN, 0], [NAN, NAN, NAN, NAN], [NAN], [1, 2, 2, 4]],
    }
    want = np.array([np.concatenate(expected[s]) for s in result.subject_ids], dtype=np.float32)
    np.testing.assert_allclose(result.values, want, rtol=1e-6, equal_nan=True)
    # NaN exactly where expected (assert_allclose with equal_nan already checks positions).
    assert np.array_equal(np.isnan(result.values), np.isnan(want))


def test_landmark_before_all_visits_and_summarise_default() -> None:
    empty = landmark_features(HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, -1.0)
    assert empty.subject_ids == []
    assert empty.values.shape == (0, 3 * len(SUMMARIES) + len(VISIT_FEATURES))
    assert empty.values.dtype == np.float32
    full = landmark_features(HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, 4.0)
    assert "prot:C@slope" in full.feature_names
    # p1 prot:C only at t=2 -> slope NaN, baseline = last = 3.
    row = full.subject_ids.index("p1")
    assert _column(full, "prot:C@baseline")[row] == 3.0
    assert math.isnan(_column(full, "prot:C@slope")[row])


def test_order_is_first_appearance_among_past_visits() -> None:
    ids = ["b", "a", "b", "c", "a"]
    times = [9.0, 1.0, 2.0, 0.5, 3.0]  # b's first row is a future visit
    values = np.arange(5, dtype=float)[:, None]
    result = landmark_features(ids, times, values, ["x"], 5.0)
    assert result.subject_ids == ["a", "b", "c"]
    again = landmark_features(np.array(ids, dtype=object), times, values, ["x"], 5.0)
    assert again.subject_ids == result.subject_ids
    assert _bits(again.values) == _bits(result.values)
    assert at_risk(ids, times, 5.0) == ["a", "b", "c"]


def test_unsorted_input_matches_sorted_input() -> None:
    rng = np.random.default_rng(3)
    ids, times, values = _random_cohort(rng, n_subjects=20, p=4)
    perm = rng.permutation(len(ids))
    a = landmark_features(ids, times, values, list("abcd"), 6.0)
    b = landmark_features(ids[perm], times[perm], values[perm], list("abcd"), 6.0)
    order = [b.subject_ids.index(s) for s in a.subject_ids]
    assert sorted(a.subject_ids) == sorted(b.subject_ids)
    np.testing.assert_allclose(b.values[order], a.values, rtol=1e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"visit_times": [0.0, NAN, 1.0]}, "visit_times contains NaN"),
        ({"visit_times": [0.0, 1.0]}, "visit_times must have shape"),
        ({"feature_names": ["x"]}, "feature_names has 1 names"),
        ({"feature_names": ["x", "x"]}, "unique"),
        ({"summarise": np.array([1, 0])}, "summarise must be a boolean mask"),
        ({"landmark": NAN}, "landmark must be finite"),
        ({"subject_ids": ["a", None, "b"]}, "subject_ids"),
    ],
)
def test_validation(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "subject_ids": ["a", "a", "b"],
        "visit_times": [0.0, 1.0, 0.0],
        "values": np.zeros((3, 2)),
        "feature_names": ["x", "y"],
        "landmark": 1.0,
    }
    args.update(kwargs)
    summarise = args.pop("summarise", None)
    with pytest.raises(ValueError, match=match):
        landmark_features(**args, summarise=summarise)


# ---------------------------------------------------------------------------------------------
# slope and summaries against a per-subject reference


def _random_cohort(
    rng: np.random.Generator, *, n_subjects: int, p: int, offset: float = 0.0, missing: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subjects with 1-7 visits at distinct times in [offset, offset + 10), rows shuffled."""
    ids, times = [], []
    for s in range(n_subjects):
        k = int(rng.integers(1, 8))
        ids += [f"s{s:02d}"] * k
        times += list(offset + np.sort(rng.choice(np.arange(0, 10, 0.25), k, replace=False)))
    values = rng.normal(size=(len(ids), p)) * 3 + rng.normal(size=p) * 10
    values[rng.random(values.shape) < missing] = NAN
    perm = rng.permutation(len(ids))
    return np.array(ids)[perm], np.array(times)[perm], values[perm]


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_summaries_match_per_subject_reference(offset: float) -> None:
    rng = np.random.default_rng(11)
    p = 5
    ids, times, values = _random_cohort(rng, n_subjects=40, p=p, offset=offset)
    landmark = offset + 6.0
    names = [f"f{j}" for j in range(p)]
    result = landmark_features(ids, times, values, names, landmark)
    n_slopes = 0
    for row, subject in enumerate(result.subject_ids):
        mine = (ids == subject) & (times <= landmark)
        t, x = times[mine], values[mine]
        for j, name in enumerate(names):
            ok = ~np.isnan(x[:, j])
            tj, xj = t[ok], x[ok, j]
            got = {s: float(_column(result, f"{name}@{s}")[row]) for s in SUMMARIES}
            if len(tj) == 0:
                assert all(math.isnan(v) for v in got.values())
                continue
            k = np.argsort(tj)
            assert got["baseline"] == np.float32(xj[k[0]])
            assert got["last"] == np.float32(xj[k[-1]])
            assert got["change"] == np.float32(xj[k[-1]] - xj[k[0]])
            if len(np.unique(tj)) < 2:
                assert math.isnan(got["slope"])
            else:
                want = np.polyfit(tj - offset, xj, 1)[0]
                assert got["slope"] == pytest.approx(want, rel=1e-5, abs=1e-5)
                n_slopes += 1
        assert _column(result, "visits:n_visits")[row] == mine.sum()
        assert _column(result, "visits:time_since_baseline")[row] == np.float32(landmark - t.min())
        assert _column(result, "visits:time_since_last_visit")[row] == np.float32(
            landmark - t.max()
        )
        assert _column(result, "visits:landmark")[row] == np.float32(landmark)
    assert n_slopes > 50  # the reference comparison actually exercised slopes
    assert set(result.subject_ids) == set(ids[times <= landmark])


def test_wide_matrix_completes() -> None:
    """Sanity check of the vectorised path at 20,000 visits x 500 features (no timing assert)."""
    rng = np.random.default_rng(5)
    n, p = 20_000, 500
    ids = np.array([f"s{i:04d}" for i in rng.integers(0, 2_000, n)])
    times = rng.uniform(0, 10, n)
    values = rng.normal(size=(n, p)).astype(np.float32)
    values[rng.random((n, p)) < 0.2] = np.nan
    result = landmark_features(ids, times, values, [f"g{j}" for j in range(p)], 5.0)
    assert result.values.dtype == np.float32
    assert result.values.shape == (len(np.unique(ids[times <= 5.0])), 4 * p + 4)
    assert np.isfinite(_column(result, "g0@last")).mean() > 0.5


# ---------------------------------------------------------------------------------------------
# no leakage from visits after the landmark


@st.composite
def _cohort_and_future(draw: st.DrawFn) -> dict[str, Any]:
    """A cohort, a landmark and an arbitrary rewrite of everything after the landmark."""
    landmark = draw(st.sampled_from([1.0, 2.5, 4.0]))
    time_st = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5])
    value_st = st.one_of(st.just(NAN), st.floats(-100, 100, allow_nan=False))
    p = draw(st.integers(1, 3))
    n_subjects = draw(st.integers(1, 5))
    rows: list[tuple[str, float, list[float]]] = []
    for s in range(n_subjects):
        for t in draw(st.lists(time_st, min_size=1, max_size=5, unique=True)):
            rows.append((f"s{s}", t, draw(st.lists(value_st, min_size=p, max_size=p))))
    rows = draw(st.permutations(rows))

    # Future rewrite: drop or modify visits after s, insert new ones (also new subjects).
    future: list[tuple[str, float, list[float]]] = []
    for subject, t, x in rows:
        if t <= landmark:
            future.append((subject, t, x))
        elif draw(st.booleans()):
            new_x = draw(st.lists(value_st, min_size=p, max_size=p))
            future.append((subject, t + draw(st.sampled_from([0.0, 0.25])), new_x))
    n_new = draw(st.integers(0, 4))
    for _ in range(n_new):
        subject = f"s{draw(st.integers(0, n_subjects + 1))}"
        t = landmark + draw(st.sampled_from([0.1, 0.7, 3.0]))
        position = draw(st.integers(0, len(future)))
        future.insert(position, (subject, t, draw(st.lists(value_st, min_size=p, max_size=p))))
    subjects = sorted({r[0] for r in rows + future})
    event_time = {s: landmark + draw(st.sampled_from([-0.5, 0.0, 0.5, 10.0])) for s in subjects}
    event = {s: draw(st.sampled_from([0, 1])) for s in subjects}
    return {
        "landmark": landmark,
        "p": p,
        "rows": rows,
        "future": future,
        "et": event_time,
        "ev": event,
    }


def _arrays(rows: list[tuple[str, float, list[float]]], p: int):
    ids = np.array([r[0] for r in rows], dtype=str)
    times = np.array([r[1] for r in rows], dtype=float)
    values = np.array([r[2] for r in rows], dtype=float).reshape(len(rows), p)
    return ids, times, values


@settings(max_examples=120, deadline=None)
@given(_cohort_and_future())
def test_no_leakage_from_visits_after_landmark(case: dict[str, Any]) -> None:
    s, p = case["landmark"], case["p"]
    names = [f"f{j}" for j in range(p)]
    summarise = np.arange(p) % 2 == 0
    before = _arrays(case["rows"], p)
    after = _arrays(case["future"], p)

    a = landmark_features(*before, names, s, summarise=summarise)
    b = landmark_features(*after, names, s, summarise=summarise)
    assert a.subject_ids == b.subject_ids
    assert a.feature_names == b.feature_names
    assert _bits(a.values) == _bits(b.values)
    assert at_risk(before[0], before[1], s, event_time=case["et"]) == at_risk(
        after[0], after[1], s, event_time=case["et"]
    )

    # The stacked data set: features (and survival outcomes) bit-identical.
    grid = [s - 0.5, s]
    kw = {"summarise": summarise, "event_time": case["et"], "event": case["ev"]}
    da = landmark_dataset(*before, names, grid, **kw)
    db = landmark_dataset(*after, names, grid, **kw)
    assert da.row_ids == db.row_ids
    assert _bits(da.values) == _bits(db.values)
    assert np.array_equal(da.time, db.time)
    assert np.array_equal(da.event, db.event)

    # With targets the row set may change (targets look ahead), features of shared rows not.
    target_kw = {"horizon": 1.0, "window": 3.0}
    ta = landmark_dataset(*before, names, grid, target_values=before[2][:, 0], **target_kw)
    tb = landmark_dataset(*after, names, grid, target_values=after[2][:, 0], **target_kw)
    rows_a = {r: i for i, r in enumerate(ta.row_ids)}
    for j, row in enumerate(tb.row_ids):
        if row in rows_a:
            assert _bits(ta.values[rows_a[row]]) == _bits(tb.values[j])


def test_leakage_check_can_fail() -> None:
    """Guard on the guard: a change at or before the landmark does change the features."""
    values = HAND_VALUES.copy()
    values[6, 0] = 7.0  # p2 at t=4 == landmark
    a = landmark_features(HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, 4.0)
    b = landmark_features(HAND_IDS, HAND_TIMES, values, FEATURES, 4.0)
    assert _bits(a.values) != _bits(b.values)


# ---------------------------------------------------------------------------------------------
# risk sets, future targets, stacked data set


def test_at_risk_with_event_times() -> None:
    ids = ["a", "a", "b", "c", "d"]
    times = [0.0, 2.0, 1.0, 3.0, 0.0]
    event_time = {"a": 2.0, "b": 2.5, "c": 9.0, "d": 1.9}
    # a: event at s -> not at risk; b: after s -> at risk; c: no visit <= s; d: before s.
    assert at_risk(ids, times, 2.0) == ["a", "b", "d"]
    assert at_risk(ids, times, 2.0, event_time=event_time) == ["b"]
    per_visit = np.array([event_time[s] for s in ids])
    assert at_risk(ids, times, 2.0, event_time=per_visit) == ["b"]
    assert at_risk(ids, times, 1.95, event_time=event_time) == ["a", "b"]
    with pytest.raises(ValueError, match="constant within each subject"):
        at_risk(ids, times, 2.0, event_time=[2.0, 3.0, 2.5, 9.0, 1.9])
    with pytest.raises(ValueError, match="missing for subjects"):
        at_risk(ids, times, 2.0, event_time={"a": 5.0})


def test_future_values_window_and_ties() -> None:
    ids = ["a", "a", "a", "a", "b", "b", "c", "d", "d", "e", "e"]
    times = [2.0, 3.5, 4.5, 5.0, 2.0, 6.0, 2.0, 4.25, 3.5, 4.0, 3.6]
    values = [9.0, 1.0, 2.0, 3.0, 9.0, 4.0, 5.0, NAN, 6.0, NAN, 7.0]
    # s = 2, horizon 2 -> target time 4; window 2.
    found = future_values(ids, times, values, 2.0, 2.0, window=2.0)
    got = {r["subject_id"]: (r["target"], r["target_time"]) for r in found.iter_rows(named=True)}
    assert list(found.columns) == ["subject_id", "target", "target_time"]
    assert found["subject_id"].to_list() == ["a", "b", "d", "e"]  # first appearance
    assert got["a"] == (1.0, 3.5)  # 3.5 and 4.5 tie at distance 0.5 -> the earlier
    assert got["b"] == (4.0, 6.0)  # distance 2 == window: inside
    assert "c" not in got  # only a visit at s (not after it)
    assert got["d"] == (6.0, 3.5)  # nearest (4.25) is missing -> next nearest present
    assert got["e"] == (7.0, 3.6)  # exact hit at 4.0 is missing
    narrow = future_values(ids, times, values, 2.0, 2.0, window=0.45)
    assert narrow["subject_id"].to_list() == ["e"]
    with pytest.raises(ValueError, match="window must be non-negative"):
        future_values(ids, times, values, 2.0, 2.0, window=-1.0)


def test_landmark_dataset_survival() -> None:
    event_time = {"p1": 5.0, "p2": 4.0, "p3": 8.0, "p4": 3.0}
    event = {"p1": 1, "p2": 0, "p3": 1, "p4": 1}
    data = landmark_dataset(
        HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, [2.0, 4.0], event_time=event_time, event=event
    )
    # s=2: p2 (t=1), p1 (t=0, 2), p4 (t=2); s=4: p2 event at 4 and p4 at 3 are out.
    assert data.row_ids == ["p2@2", "p1@2", "p4@2", "p1@4"]
    assert data.subject_ids == ["p2", "p1", "p4", "p1"]
    assert data.landmarks.dtype == np.float64
    np.testing.assert_array_equal(data.landmarks, [2.0, 2.0, 2.0, 4.0])
    np.testing.assert_array_equal(data.time, [2.0, 3.0, 1.0, 1.0])
    np.testing.assert_array_equal(data.event, [0, 1, 1, 1])
    assert data.event is not None and data.event.dtype == np.int8
    assert data.target is None
    assert data.values.dtype == np.float32
    single = landmark_features(HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, 4.0)
    assert data.feature_names == single.feature_names
    assert _bits(data.values[3]) == _bits(single.values[single.subject_ids.index("p1")])
    # Per-visit arrays give the same as mappings.
    per_visit = landmark_dataset(
        HAND_IDS,
        HAND_TIMES,
        HAND_VALUES,
        FEATURES,
        [2.0, 4.0],
        event_time=[event_time[s] for s in HAND_IDS],
        event=[event[s] for s in HAND_IDS],
    )
    assert per_visit.row_ids == data.row_ids
    np.testing.assert_array_equal(per_visit.time, data.time)


def test_landmark_dataset_targets_drop_rows_without_target() -> None:
    target = np.array([1.0, 2.0, 3.0, 4.0, NAN, 6.0, 7.0, 8.0])
    data = landmark_dataset(
        HAND_IDS,
        HAND_TIMES,
        HAND_VALUES,
        FEATURES,
        [1.0, 2.5],
        target_values=target,
        horizon=1.0,
        window=0.6,
    )
    # s=1 (target time 2, window 0.6): p2's later visits (t=4, 5) are too far: dropped;
    # p1 -> t=2, value 3; p4 has no visit <= 1.
    # s=2.5 (target time 3.5): p2 -> t=4 (distance 0.5), value 7; p1's t=3 target is NaN:
    # dropped; p4 has no later visit: dropped.
    assert data.row_ids == ["p1@1", "p2@2.5"]
    np.testing.assert_array_equal(data.target, [3.0, 7.0])
    assert data.time is None and data.event is None
    assert data.values.shape == (2, 3 * 4 + 4)


def test_landmark_dataset_validation() -> None:
    with pytest.raises(ValueError, match="event needs event_time"):
        landmark_dataset(HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, [2.0], event=[1] * 8)
    with pytest.raises(ValueError, match="all three or none"):
        landmark_dataset(HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, [2.0], horizon=1.0)
    with pytest.raises(ValueError, match="distinct"):
        landmark_dataset(HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, [2.0, 2.0])
    with pytest.raises(ValueError, match="0 or 1"):
        landmark_dataset(
            HAND_IDS, HAND_TIMES, HAND_VALUES, FEATURES, [2.0], event_time=[9.0] * 8, event=[2] * 8
        )
