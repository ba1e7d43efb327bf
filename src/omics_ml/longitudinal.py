"""Landmark features from repeated visits: per-subject summaries that never see the future.

A cohort has subjects with repeated visits; each visit has a row of already-normalised
features (NaN = missing), the subject id and the visit time. A landmark model at landmark
time ``s`` describes every subject still at risk at ``s`` by features that summarise that
subject's visits with ``visit_time <= s`` only:

* per feature, over the subject's visits ``<= s`` where the feature is present:
  ``baseline`` (value at the earliest such visit), ``last`` (value at the latest), ``slope``
  (ordinary least-squares slope of value on visit time) and ``change`` (``last - baseline``),
  named ``f"{feature}@{summary}"``;
* per subject, over all its visits ``<= s``: ``visits:n_visits``,
  ``visits:time_since_baseline``, ``visits:time_since_last_visit`` and ``visits:landmark``.

Visits after the landmark are dropped before anything else is computed, so no visit after
``s`` can influence a feature, whatever its values and however many there are; even the row
order of subjects is the order of first appearance among the visits ``<= s``.

The computation is vectorised: visits are sorted by subject then time into one contiguous
segment per subject; first/last present values come from :func:`numpy.ufunc.reduceat` on masked
row indices and segment sums from sparse indicator products, in blocks of features so that wide
matrices stay within bounded memory. Slopes use the two-pass (centred) least-squares formulas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

__all__ = [
    "SUMMARIES",
    "VISIT_FEATURES",
    "VISIT_PREFIX",
    "LandmarkDataset",
    "LandmarkFeatures",
    "at_risk",
    "future_values",
    "landmark_dataset",
    "landmark_feature_names",
    "landmark_features",
]

SUMMARIES = ("baseline", "last", "slope", "change")
VISIT_FEATURES = ("n_visits", "time_since_baseline", "time_since_last_visit", "landmark")
VISIT_PREFIX = "visits"

# Elements (visits x features) of one float64 block of the segment reductions: ~32 MiB.
_BLOCK_ELEMENTS = 1 << 22

# Per-subject outcome: a mapping subject id -> value, or a per-visit array constant within
# each subject.
_PerSubject = Mapping[str, float] | ArrayLike


@dataclass(frozen=True, eq=False)
class LandmarkFeatures:
    """Landmark features of the subjects with at least one visit at or before the landmark.

    Attributes
    ----------
    subject_ids : list of str
        One per row, in order of first appearance among the visits ``<= landmark``.
    landmark : float
        The landmark time ``s``.
    values : ndarray of float32, shape (n_subjects, p_out)
        Feature matrix; NaN where a summary is undefined.
    feature_names : list of str
        ``p_out`` column names (see :func:`landmark_feature_names`).
    """

    subject_ids: list[str]
    landmark: float
    values: NDArray[np.float32]
    feature_names: list[str]


@dataclass(frozen=True, eq=False)
class LandmarkDataset:
    """Stacked landmark rows: one per (landmark, subject at risk at that landmark).

    Attributes
    ----------
    subject_ids : list of str
        Subject of each row.
    landmarks : ndarray of float64, shape (n_rows,)
        Landmark time of each row.
    values : ndarray of float32, shape (n_rows, p_out)
        Landmark features (see :func:`landmark_features`).
    feature_names : list of str
        ``p_out`` column names.
    time : ndarray of float64 or None
        ``event_time - landmark`` (residual survival time), when event times were given.
    event : ndarray of int8 or None
        0/1 event indicator, when events were given.
    target : ndarray of float64 or None
        Future marker value (see :func:`future_values`), when target values were given.
    """

    subject_ids: list[str]
    landmarks: NDArray[np.float64]
    values: NDArray[np.float32]
    feature_names: list[str]
    time: NDArray[np.float64] | None = None
    event: NDArray[np.int8] | None = None
    target: NDArray[np.float64] | None = None

    @property
    def row_ids(self) -> list[str]:
        """Row identifiers ``f"{subject}@{landmark:g}"``."""
        if not self.subject_ids:
            return []
        unique, inverse = np.unique(self.landmarks, return_inverse=True)
        labels = np.array([f"@{value:g}" for value in unique])
        ids = np.asarray(self.subject_ids, dtype=str)
        return np.char.add(ids, labels[inverse]).tolist()


# ---------------------------------------------------------------------------------------------
# validation helpers


def _subject_array(subject_ids: ArrayLike) -> NDArray[np.str_]:
    """``subject_ids`` as a 1-D unicode array; ValueError for missing or non-string ids."""
    arr = np.asarray(subject_ids)
    if arr.ndim != 1:
        msg = f"subject_ids must be 1-D, got shape {arr.shape}."
        raise ValueError(msg)
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "O" or arr.size == 0:
        try:
            series = pl.Series("subject_id", arr.tolist(), dtype=pl.String, strict=True)
        except (TypeError, pl.exceptions.PolarsError) as exc:
            msg = "subject_ids must be strings."
            raise ValueError(msg) from exc
        if series.null_count():
            msg = "subject_ids must not contain missing values."
            raise ValueError(msg)
        return np.asarray(series.to_list(), dtype=str)
    msg = f"subject_ids must be strings, got dtype {arr.dtype}."
    raise ValueError(msg)


def _visit_times(visit_times: ArrayLike, n: int) -> NDArray[np.float64]:
    """``visit_times`` as float64 of length ``n``, finite."""
    times = np.asarray(visit_times, dtype=np.float64)
    if times.shape != (n,):
        msg = f"visit_times must have shape ({n},) like subject_ids, got {times.shape}."
        raise ValueError(msg)
    if np.isnan(times).any():
        msg = "visit_times contains NaN; every visit needs a time."
        raise ValueError(msg)
    if not np.isfinite(times).all():
        msg = "visit_times contains infinite values."
        raise ValueError(msg)
    return times


def _finite(value: float, name: str) -> float:
    out = float(value)
    if not np.isfinite(out):
        msg = f"{name} must be finite, got {value!r}."
        raise ValueError(msg)
    return out


def _value_matrix(values: ArrayLike, n: int) -> NDArray[Any]:
    """``values`` as a 2-D float array with ``n`` rows (not copied when already float)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        msg = f"values must be numeric, got dtype {arr.dtype}."
        raise ValueError(msg)
    if arr.ndim != 2 or arr.shape[0] != n:
        msg = f"values must have shape ({n}, p), got {arr.shape}."
        raise ValueError(msg)
    return arr


def _summarise_mask(summarise: ArrayLike | None, p: int) -> NDArray[np.bool_]:
    if summarise is None:
        return np.ones(p, dtype=bool)
    mask = np.asarray(summarise)
    if mask.dtype != np.bool_ or mask.shape != (p,):
        msg = f"summarise must be a boolean mask of shape ({p},), got {mask.dtype} {mask.shape}."
        raise ValueError(msg)
    return mask


def _first_appearance(ids: NDArray[np.str_]) -> tuple[NDArray[np.str_], NDArray[np.int64]]:
    """Unique ids in order of first appearance and each element's code in that order."""
    unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(unique), dtype=np.int64)
    rank[by_first] = np.arange(len(unique))
    return unique[by_first], rank[inverse.reshape(-1)]


def _subjects_upto(
    ids: NDArray[np.str_], times: NDArray[np.float64], landmark: float
) -> NDArray[np.str_]:
    """Subjects with a visit ``<= landmark``, in order of first appearance among those visits."""
    subjects, _ = _first_appearance(ids[times <= landmark])
    return subjects


def _per_subject_frame(
    values: _PerSubject, ids: NDArray[np.str_], name: str, *, dtype: Any
) -> pl.DataFrame:
    """Frame (subject_id, name) from a mapping or a per-visit array constant within subjects."""
    if isinstance(values, Mapping):
        keys = _subject_array(np.asarray(list(values.keys()), dtype=object))
        column = np.asarray(list(values.values()), dtype=np.float64)
        frame = pl.DataFrame({"subject_id": keys, name: column})
    else:
        column = np.asarray(values, dtype=np.float64)
        if column.shape != ids.shape:
            msg = f"{name} must be a mapping subject -> value or have shape {ids.shape} like subject_ids, got {column.shape}."
            raise ValueError(msg)
        frame = pl.DataFrame({"subject_id": ids, name: column})
    if not np.isfinite(column).all():
        msg = f"{name} must be finite (no NaN or infinite values)."
        raise ValueError(msg)
    if dtype == np.int8 and not np.isin(column, (0.0, 1.0)).all():
        msg = f"{name} must be 0 or 1."
        raise ValueError(msg)
    spread = frame.group_by("subject_id", maintain_order=True).agg(
        pl.col(name).min().alias("lo"), pl.col(name).max().alias(name)
    )
    varying = spread.filter(pl.col("lo") != pl.col(name))["subject_id"]
    if len(varying):
        msg = (
            f"{name} must be constant within each subject; varies for {varying.head(5).to_list()}."
        )
        raise ValueError(msg)
    return spread.select("subject_id", name)


def _align(frame: pl.DataFrame, subjects: NDArray[np.str_], name: str) -> NDArray[np.float64]:
    """Column ``name`` of ``frame`` aligned to ``subjects``; ValueError for absent subjects."""
    joined = pl.DataFrame({"subject_id": pl.Series(subjects, dtype=pl.String)}).join(
        frame, on="subject_id", how="left", maintain_order="left"
    )
    absent = joined.filter(pl.col(name).is_null())["subject_id"]
    if len(absent):
        msg = f"{name} is missing for subjects {absent.head(5).to_list()}."
        raise ValueError(msg)
    return joined[name].to_numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------------
# landmark features


def landmark_feature_names(
    feature_names: Sequence[str], summarise: ArrayLike | None = None
) -> list[str]:
    """Output column names of :func:`landmark_features`.

    Parameters
    ----------
    feature_names : sequence of str
        Input feature names, ``p`` of them.
    summarise : array-like of bool, shape (p,), optional
        Features to summarise by all of :data:`SUMMARIES`; the others give only ``last``.
        Default: all.

    Returns
    -------
    list of str
        For each input feature in input order ``f"{feature}@{summary}"`` for its summaries,
        then ``f"visits:{name}"`` for each of :data:`VISIT_FEATURES`.
    """
    names = [str(name) for name in feature_names]
    mask = _summarise_mask(summarise, len(names))
    out: list[str] = []
    for name, full in zip(names, mask.tolist(), strict=True):
        out.extend(f"{name}@{summary}" for summary in (SUMMARIES if full else ("last",)))
    out.extend(f"{VISIT_PREFIX}:{name}" for name in VISIT_FEATURES)
    return out


@dataclass(frozen=True)
class _Segments:
    """Visits sorted by subject then time, as contiguous segments (one per subject)."""

    codes: NDArray[np.int64]  # segment of each sorted visit
    starts: NDArray[np.intp]  # first sorted visit of each segment
    times: NDArray[np.float64]  # visit times centred on the subject's mean visit time
    indicator: sparse.csr_array  # (n_segments, n_visits) 0/1: segment sums as a product
    indicator_t: sparse.csr_array  # the same with the centred times as entries


def _segments(codes: NDArray[np.int64], times: NDArray[np.float64], n: int) -> _Segments:
    """Segments of visits sorted by ``codes`` (0..n-1, all present) then by ``times``."""
    m = len(codes)
    starts = np.searchsorted(codes, np.arange(n))
    lengths = np.diff(np.append(starts, m))
    centred = times - (np.bincount(codes, weights=times, minlength=n) / lengths)[codes]
    indptr = np.append(starts, m)
    columns = np.arange(m)
    indicator = sparse.csr_array((np.ones(m), columns, indptr), shape=(n, m))
    indicator_t = sparse.csr_array((centred, columns, indptr), shape=(n, m))
    return _Segments(codes, starts, centred, indicator, indicator_t)


def _segment_summaries(
    x: NDArray[np.float64], seg: _Segments, *, slope: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
    """Baseline, last and OLS slope per (segment, column) of ``x`` over its non-NaN entries.

    ``x`` (m, b) holds the visits sorted by segment then time. Segment sums are sparse
    indicator products; the slope is the two-pass (centred) least-squares estimate.
    """
    m, b = x.shape
    valid = ~np.isnan(x)
    index_type = np.int32 if m < np.iinfo(np.int32).max else np.int64
    rows = np.arange(m, dtype=index_type)[:, None]
    # Per segment and column: latest present row + 1 and m - earliest present row (0: none).
    last = np.maximum.reduceat(valid * (rows + 1), seg.starts, axis=0)
    first = np.maximum.reduceat(valid * (m - rows), seg.starts, axis=0)
    present = last > 0
    last = np.maximum(last - 1, 0)
    first = np.minimum(m - first, m - 1)
    flat = x.ravel()
    cols = np.arange(b)
    baseline = np.where(present, flat[first.astype(np.intp) * b + cols], np.nan)
    final = np.where(present, flat[last.astype(np.intp) * b + cols], np.nan)
    if not slope:
        return baseline, final, None

    weight = valid.astype(np.float64)
    x0 = np.where(valid, x, 0.0)
    divisor = np.maximum(seg.indicator @ weight, 1.0)
    t_mean = (seg.indicator_t @ weight) / divisor
    x_mean = (seg.indicator @ x0) / divisor
    dt = seg.times[:, None] - t_mean[seg.codes]
    dt *= weight
    dx = x0 - x_mean[seg.codes]
    dx *= weight
    sxx = seg.indicator @ (dt * dt)
    sxy = seg.indicator @ (dt * dx)
    # Sorted by time within a segment: two distinct times <=> first and last times differ.
    distinct = present & (seg.times[first] != seg.times[last]) & (sxx > 0)
    out = np.divide(sxy, sxx, out=np.full(sxx.shape, np.nan), where=distinct)
    return baseline, final, out


def landmark_features(
    subject_ids: ArrayLike,
    visit_times: ArrayLike,
    values: ArrayLike,
    feature_names: Sequence[str],
    landmark: float,
    *,
    summarise: ArrayLike | None = None,
) -> LandmarkFeatures:
    """Summarise each subject's visits at or before ``landmark`` into one feature row.

    Only visits with ``visit_time <= landmark`` are used; they are selected before anything
    else is computed, so visits after the landmark cannot influence any output (values, row
    set or row order).

    Parameters
    ----------
    subject_ids : array-like of str, shape (n_visits,)
        Subject of each visit.
    visit_times : array-like of float, shape (n_visits,)
        Time of each visit; finite (ValueError otherwise).
    values : array-like of float, shape (n_visits, p)
        Normalised features per visit; NaN = missing.
    feature_names : sequence of str, length p
        Unique feature names.
    landmark : float
        Landmark time ``s``.
    summarise : array-like of bool, shape (p,), optional
        True: the feature gives ``baseline``, ``last``, ``slope`` and ``change``; False: only
        ``last``. Default: all True.

    Returns
    -------
    LandmarkFeatures
        One row per subject with at least one visit ``<= landmark``, in order of first
        appearance in ``subject_ids`` among those visits. Per feature, over the subject's
        visits ``<= landmark`` where it is present: ``baseline`` (earliest value), ``last``
        (latest value), ``slope`` (OLS slope on time; NaN with fewer than two distinct times)
        and ``change`` (last - baseline), all NaN when the feature is never present. Then
        ``visits:n_visits``, ``visits:time_since_baseline`` (landmark - first visit time),
        ``visits:time_since_last_visit`` (landmark - last visit time) and ``visits:landmark``
        over all visits ``<= landmark``. Ties in time within a subject are broken by input
        order.
    """
    ids = _subject_array(subject_ids)
    n = len(ids)
    times = _visit_times(visit_times, n)
    matrix = _value_matrix(values, n)
    s = _finite(landmark, "landmark")
    names = [str(name) for name in feature_names]
    p = matrix.shape[1]
    if len(names) != p:
        msg = f"feature_names has {len(names)} names for {p} value columns."
        raise ValueError(msg)
    if len(set(names)) != p:
        msg = "feature_names must be unique."
        raise ValueError(msg)
    mask = _summarise_mask(summarise, p)
    out_names = landmark_feature_names(names, mask)

    # Visits <= s, sorted by subject (first appearance) then time then input position.
    kept = np.flatnonzero(times <= s)
    subjects, codes = _first_appearance(ids[kept])
    order = np.lexsort((kept, times[kept], codes))
    rows = kept[order]
    codes = codes[order]
    n_subjects = len(subjects)
    out = np.empty((n_subjects, len(out_names)), dtype=np.float32)  # every column is set
    if n_subjects == 0:
        return LandmarkFeatures([], s, out, out_names)
    t_sorted = times[rows]
    seg = _segments(codes, t_sorted, n_subjects)
    starts = seg.starts
    lengths = np.diff(np.append(starts, len(rows)))

    widths = np.where(mask, len(SUMMARIES), 1)
    offsets = np.concatenate(([0], np.cumsum(widths)[:-1]))
    block = max(1, _BLOCK_ELEMENTS // len(rows))
    for j0 in range(0, p, block):
        j1 = min(p, j0 + block)
        full = mask[j0:j1]
        x = np.asarray(matrix[rows, j0:j1], dtype=np.float64)
        baseline, final, slope = _segment_summaries(x, seg, slope=bool(full.any()))
        base_col = offsets[j0:j1]
        out[:, base_col + full] = final  # "last" is column 1 of a summarised feature
        if slope is not None:
            at = base_col[full]
            out[:, at] = baseline[:, full]
            out[:, at + 2] = slope[:, full]
            out[:, at + 3] = final[:, full] - baseline[:, full]

    visit_col = int(offsets[-1] + widths[-1]) if p else 0
    out[:, visit_col] = lengths
    out[:, visit_col + 1] = s - t_sorted[starts]
    out[:, visit_col + 2] = s - t_sorted[starts + lengths - 1]
    out[:, visit_col + 3] = s
    return LandmarkFeatures(subjects.tolist(), s, out, out_names)


# ---------------------------------------------------------------------------------------------
# risk sets and outcomes


def at_risk(
    subject_ids: ArrayLike,
    visit_times: ArrayLike,
    landmark: float,
    *,
    event_time: _PerSubject | None = None,
) -> list[str]:
    """Subjects at risk at ``landmark``.

    Parameters
    ----------
    subject_ids : array-like of str, shape (n_visits,)
        Subject of each visit.
    visit_times : array-like of float, shape (n_visits,)
        Time of each visit.
    landmark : float
        Landmark time ``s``.
    event_time : mapping str -> float, or array-like of float, shape (n_visits,), optional
        Each subject's event or censoring time: a mapping subject id -> time, or a per-visit
        array that must be constant within each subject. Every subject with a visit
        ``<= landmark`` needs one (ValueError otherwise).

    Returns
    -------
    list of str
        Subjects with at least one visit ``<= landmark`` and, when ``event_time`` is given,
        ``event_time > landmark`` (a subject whose event or censoring is at the landmark is
        not at risk). Same order as the rows of :func:`landmark_features` at ``landmark``,
        restricted to these subjects.
    """
    ids = _subject_array(subject_ids)
    times = _visit_times(visit_times, len(ids))
    s = _finite(landmark, "landmark")
    subjects = _subjects_upto(ids, times, s)
    if event_time is None:
        return subjects.tolist()
    frame = _per_subject_frame(event_time, ids, "event_time", dtype=np.float64)
    return subjects[_align(frame, subjects, "event_time") > s].tolist()


def future_values(
    subject_ids: ArrayLike,
    visit_times: ArrayLike,
    values: ArrayLike,
    landmark: float,
    horizon: float,
    *,
    window: float,
) -> pl.DataFrame:
    """Each subject's marker value nearest to ``landmark + horizon``, after the landmark.

    Parameters
    ----------
    subject_ids : array-like of str, shape (n_visits,)
        Subject of each visit.
    visit_times : array-like of float, shape (n_visits,)
        Time of each visit.
    values : array-like of float, shape (n_visits,)
        One marker value per visit; NaN = missing.
    landmark : float
        Landmark time ``s``.
    horizon : float
        Prediction horizon ``h``; the target time is ``s + h``.
    window : float
        Largest accepted distance ``|visit_time - (s + h)|``; non-negative.

    Returns
    -------
    polars.DataFrame
        Columns ``subject_id`` (str), ``target`` (float64) and ``target_time`` (float64): for
        each subject, the non-missing value at the visit with ``s < visit_time`` and
        ``|visit_time - (s + h)| <= window`` closest to ``s + h`` (ties: the earlier visit,
        then input order). Subjects without such a visit are absent. Rows in order of first
        appearance in ``subject_ids``.
    """
    ids = _subject_array(subject_ids)
    n = len(ids)
    times = _visit_times(visit_times, n)
    marker = np.asarray(values, dtype=np.float64)
    if marker.shape != (n,):
        msg = f"values must have shape ({n},) (one marker per visit), got {marker.shape}."
        raise ValueError(msg)
    s = _finite(landmark, "landmark")
    h = _finite(horizon, "horizon")
    w = _finite(window, "window")
    if w < 0:
        msg = f"window must be non-negative, got {w}."
        raise ValueError(msg)
    target_time = s + h
    return (
        pl.DataFrame(
            {"subject_id": pl.Series(ids, dtype=pl.String), "time": times, "value": marker}
        )
        .with_row_index("row")
        .with_columns(pl.col("row").min().over("subject_id").alias("first_row"))
        .with_columns((pl.col("time") - target_time).abs().alias("distance"))
        .filter(
            (pl.col("time") > s)
            & pl.col("value").is_not_nan()
            & pl.col("value").is_not_null()
            & (pl.col("distance") <= w)
        )
        .sort(["first_row", "distance", "time", "row"])
        .unique("subject_id", keep="first", maintain_order=True)
        .select("subject_id", pl.col("value").alias("target"), pl.col("time").alias("target_time"))
    )


def landmark_dataset(
    subject_ids: ArrayLike,
    visit_times: ArrayLike,
    values: ArrayLike,
    feature_names: Sequence[str],
    landmarks: ArrayLike,
    *,
    summarise: ArrayLike | None = None,
    event_time: _PerSubject | None = None,
    event: _PerSubject | None = None,
    target_values: ArrayLike | None = None,
    horizon: float | None = None,
    window: float | None = None,
) -> LandmarkDataset:
    """Stack landmark rows over several landmarks: the landmark ("super model") data set.

    For each landmark ``s`` in ``landmarks`` (in the given order), the subjects at risk at
    ``s`` (see :func:`at_risk`) contribute one row with their :func:`landmark_features`.

    Parameters
    ----------
    subject_ids, visit_times, values, feature_names, summarise
        As for :func:`landmark_features`.
    landmarks : array-like of float
        Landmark times; finite, non-empty, distinct (also in their ``:g`` row-id labels).
    event_time : mapping str -> float, or array-like of float, shape (n_visits,), optional
        Each subject's event or censoring time, as a mapping subject id -> time or as a
        per-visit array constant within each subject. When given, only subjects with
        ``event_time > s`` are at risk at ``s`` and ``time = event_time - s``.
    event : mapping str -> {0, 1}, or array-like of {0, 1}, shape (n_visits,), optional
        Event indicator in the same form; needs ``event_time``.
    target_values : array-like of float, shape (n_visits,), optional
        One marker value per visit (NaN = missing). With ``horizon`` and ``window`` (all three
        or none), ``target`` is :func:`future_values` at each landmark and rows without a
        target are dropped.
    horizon, window : float, optional
        See :func:`future_values`.

    Returns
    -------
    LandmarkDataset
        Rows grouped by landmark, within a landmark in :func:`landmark_features` order. Features
        use only visits ``<= s``; only the outcomes (``time``, ``event``, ``target``) look past
        the landmark.
    """
    ids = _subject_array(subject_ids)
    times = _visit_times(visit_times, len(ids))
    matrix = _value_matrix(values, len(ids))
    grid = np.asarray(landmarks, dtype=np.float64).reshape(-1)
    if grid.size == 0:
        msg = "landmarks must not be empty."
        raise ValueError(msg)
    if not np.isfinite(grid).all():
        msg = "landmarks must be finite."
        raise ValueError(msg)
    labels = [f"{value:g}" for value in grid.tolist()]
    if len(set(labels)) != len(labels):
        msg = f"landmarks must be distinct (also as row-id labels), got {labels}."
        raise ValueError(msg)
    if event is not None and event_time is None:
        msg = "event needs event_time."
        raise ValueError(msg)
    wants_target = [target_values is not None, horizon is not None, window is not None]
    if any(wants_target) and not all(wants_target):
        msg = "target_values, horizon and window go together: give all three or none."
        raise ValueError(msg)

    time_frame = (
        None
        if event_time is None
        else _per_subject_frame(event_time, ids, "event_time", dtype=np.float64)
    )
    event_frame = None if event is None else _per_subject_frame(event, ids, "event", dtype=np.int8)

    pieces: dict[str, list[NDArray[Any]]] = {
        key: [] for key in ("subject", "landmark", "values", "time", "event", "target")
    }
    p_out = 0
    out_names: list[str] = []
    for s in grid.tolist():
        features = landmark_features(ids, times, matrix, feature_names, s, summarise=summarise)
        out_names, p_out = features.feature_names, len(features.feature_names)
        subjects = np.asarray(features.subject_ids, dtype=str)
        keep = np.ones(len(subjects), dtype=bool)
        residual = target = status = None
        if time_frame is not None:
            residual = _align(time_frame, subjects, "event_time") - s
            keep &= residual > 0
        if event_frame is not None:
            status = _align(event_frame, subjects, "event").astype(np.int8)
        if target_values is not None:
            found = future_values(
                ids, times, target_values, s, float(horizon), window=float(window)
            )
            target = (
                pl.DataFrame({"subject_id": pl.Series(subjects, dtype=pl.String)})
                .join(found, on="subject_id", how="left", maintain_order="left")["target"]
                .fill_null(np.nan)
                .to_numpy()
                .astype(np.float64)
            )
            keep &= ~np.isnan(target)
        pieces["subject"].append(subjects[keep])
        pieces["landmark"].append(np.full(int(keep.sum()), s, dtype=np.float64))
        pieces["values"].append(features.values[keep])
        for key, column in (("time", residual), ("event", status), ("target", target)):
            if column is not None:
                pieces[key].append(column[keep])

    def stacked(key: str) -> NDArray[Any] | None:
        return np.concatenate(pieces[key]) if pieces[key] else None

    values_out = np.concatenate(pieces["values"]).astype(np.float32, copy=False)
    return LandmarkDataset(
        subject_ids=np.concatenate(pieces["subject"]).tolist(),
        landmarks=np.concatenate(pieces["landmark"]),
        values=values_out.reshape(-1, p_out),
        feature_names=out_names,
        time=stacked("time"),
        event=stacked("event"),
        target=stacked("target"),
    )
