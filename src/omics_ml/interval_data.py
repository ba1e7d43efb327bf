"""Counting-process ("interval") survival tables turned into the pipeline's input files.

Survival collections such as SurvSet store longitudinal cohorts in the counting-process layout
of ``survival::Surv(start, stop, event)``: one row per subject and visit interval
``[start, stop)``, the covariates measured at ``start``, and the event (if any) at the ``stop`` of
the subject's last interval. Cross-sectional cohorts have no ``stop`` column: one row per subject
whose ``start`` column holds the follow-up time.

:func:`split_interval_table` checks such a table and splits it into the three tables of the
input contract (sample sheet, outcome table and per-visit covariates); :func:`write_cohort` writes
them as the files the pipeline reads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from omics_ml.io import InputError, atomic_output

__all__ = ["IntervalCohort", "split_interval_table", "write_cohort", "write_example"]

_SHOWN = 5  # subject ids quoted in an error message
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# private working columns; they cannot clash with user columns, which are checked for this prefix
_SUBJ, _START, _STOP, _EVENT, _FIRST = "__subject", "__start", "__stop", "__event", "__first_row"


@dataclass(frozen=True)
class IntervalCohort:
    """A cohort in the pipeline's layout, one sample per visit.

    Attributes
    ----------
    samples : polars.DataFrame
        Sample sheet: ``sample_id`` (String), ``subject_id`` (String) and ``visit_time``
        (Float64; 0 for a cross-sectional table), one row per visit, subjects in the order they
        first appear in the source table and each subject's visits by time.
    outcomes : polars.DataFrame
        One row per subject: ``subject_id`` (String), ``time`` (Float64, follow-up time to the
        event or censoring) and ``event`` (Int8, 1 = event, 0 = censored).
    visits : polars.DataFrame
        ``sample_id`` and every other column of the source table (all but the subject, start,
        stop and event columns) unchanged, except that categorical columns become String; rows
        in the order of :attr:`samples`.
    """

    samples: pl.DataFrame
    outcomes: pl.DataFrame
    visits: pl.DataFrame

    def subset(self, subject_ids: Iterable[str], *, exclude: bool = False) -> IntervalCohort:
        """Keep (or, with ``exclude=True``, drop) the given subjects and all their visits.

        Parameters
        ----------
        subject_ids : iterable of str
            Subject ids; ids not in the cohort are ignored.
        exclude : bool, default=False
            Drop the given subjects instead of keeping them.

        Returns
        -------
        IntervalCohort
            A new cohort; row order is preserved.
        """
        wanted = pl.Series(list(subject_ids), dtype=pl.String)
        chosen = pl.col("subject_id").is_in(wanted.implode())
        keep = chosen.not_() if exclude else chosen
        samples = self.samples.filter(keep)
        visits = self.visits.filter(pl.col("sample_id").is_in(samples["sample_id"].implode()))
        return IntervalCohort(samples=samples, outcomes=self.outcomes.filter(keep), visits=visits)


def _ids(frame: pl.DataFrame, mask: pl.Expr) -> list[str]:
    """Distinct subject ids of the rows where ``mask`` holds, in row order."""
    return frame.filter(mask)[_SUBJ].unique(maintain_order=True).to_list()


def _fail(source: str, problem: str, subjects: list[str], fix: str) -> InputError:
    shown = ", ".join(repr(s) for s in subjects[:_SHOWN])
    more = f" and {len(subjects) - _SHOWN} more" if len(subjects) > _SHOWN else ""
    return InputError(f"{source}: {problem} for subject(s) {shown}{more}. {fix}")


def _format_time(expr: pl.Expr) -> pl.Expr:
    """Shortest round-trip text of a time, without a trailing ``.0`` (``6``, ``16.97``, ``1e-7``).

    Like ``f"{t:g}"`` for ordinary visit times, but never rounds, so distinct times stay distinct.
    """
    # adding 0.0 turns -0.0 into 0.0
    return (expr + 0.0).cast(pl.String).str.replace(r"\.0$", "")


def _check_numeric(frame: pl.DataFrame, column: str, what: str, source: str) -> None:
    dtype = frame.schema[column]
    if not (dtype.is_numeric() or dtype == pl.Null or (what == "event" and dtype == pl.Boolean)):
        msg = (
            f"{source}: the {what} column {column!r} holds {dtype} values, not numbers. "
            f"Convert it to numbers ({'0/1' if what == 'event' else 'times >= 0'}) before splitting."
        )
        raise InputError(msg)


def split_interval_table(
    frame: pl.DataFrame,
    *,
    subject: str = "pid",
    start: str = "time",
    stop: str = "time2",
    event: str = "event",
    source: str = "<table>",
) -> IntervalCohort:
    """Split a counting-process (interval) survival table into samples, outcomes and visits.

    Parameters
    ----------
    frame : polars.DataFrame
        One row per subject and visit interval ``[start, stop)`` with the covariates measured at
        ``start`` and the event flagged on the subject's last interval (the layout of
        ``Surv(start, stop, event)``). Without a ``stop`` column the table is cross-sectional:
        one row per subject and ``start`` holds the follow-up time.
    subject : str, default="pid"
        Subject id column (any type; ids become text).
    start : str, default="time"
        Interval start (the visit time), or the follow-up time of a cross-sectional table.
    stop : str, default="time2"
        Interval end; its absence from ``frame`` makes the table cross-sectional.
    event : str, default="event"
        Event indicator, 0 or 1.
    source : str, default="<table>"
        Name of the table (a file path, say) used in error messages.

    Returns
    -------
    IntervalCohort
        ``samples`` (one per visit, ``sample_id`` = ``"<subject>_t<start>"`` such as ``"3_t6"``,
        or ``"<subject>_t0"`` for a cross-sectional table), ``outcomes`` (per subject: ``time`` =
        the ``stop`` of its last interval, ``event`` = the event of that interval) and
        ``visits`` (the covariates by ``sample_id``).

    Raises
    ------
    InputError
        Naming ``source``, the first offending subject ids and the fix, when a column is
        missing or not numeric, a subject id is missing, a time is missing, negative or not
        finite, an event is not 0/1, an interval has ``stop <= start``, two intervals of a
        subject overlap, an event is flagged before a subject's last interval, or a
        cross-sectional table has more than one row for a subject.

    Examples
    --------
    >>> table = pl.DataFrame(
    ...     {"pid": [1, 1, 2], "event": [0, 1, 0], "time": [0, 6, 0], "time2": [6.0, 9.5, 4.0],
    ...      "num_x": [1.0, 2.0, 3.0]}
    ... )
    >>> cohort = split_interval_table(table)
    >>> cohort.samples["sample_id"].to_list()
    ['1_t0', '1_t6', '2_t0']
    >>> cohort.outcomes.rows()
    [('1', 9.5, 1), ('2', 4.0, 0)]
    """
    interval = stop in frame.columns
    needed = [subject, start, event] + ([stop] if interval else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        msg = (
            f"{source}: missing column(s) {missing} (found {frame.columns[:8]}). Name the "
            "subject, start, stop and event columns with the subject=, start=, stop=, event= arguments."
        )
        raise InputError(msg)
    if len(set(needed)) != len(needed):
        msg = f"{source}: the subject, start, stop and event columns must differ (got {needed})."
        raise InputError(msg)
    clash = [
        c for c in frame.columns if c.startswith("__") or (c == "sample_id" and c not in needed)
    ]
    if clash:
        msg = f"{source}: column name(s) {clash} are reserved; rename them before splitting."
        raise InputError(msg)
    _check_numeric(frame, start, "start (time)", source)
    if interval:
        _check_numeric(frame, stop, "stop (time)", source)
    _check_numeric(frame, event, "event", source)
    if frame.height == 0:
        msg = f"{source}: the table has no rows. Export it again with one row per visit interval."
        raise InputError(msg)

    work = frame.with_row_index("__row").with_columns(
        pl.col(subject).cast(pl.String).alias(_SUBJ),
        pl.col(start).cast(pl.Float64).alias(_START),
        (pl.col(stop) if interval else pl.col(start)).cast(pl.Float64).alias(_STOP),
        pl.col(event).cast(pl.Float64).alias(_EVENT),
    )
    no_id = work.filter(pl.col(_SUBJ).is_null())["__row"]
    if no_id.len():
        msg = (
            f"{source}: column {subject!r} is empty at data row(s) {(no_id + 1).head(_SHOWN).to_list()}. "
            "Every row needs a subject id."
        )
        raise InputError(msg)

    time_cols = [(start, _START), (stop, _STOP)] if interval else [(start, _START)]
    for name, col in time_cols:
        bad = pl.col(col).is_null() | pl.col(col).is_nan()
        if subjects := _ids(work, bad):
            raise _fail(
                source,
                f"missing time in column {name!r}",
                subjects,
                "Fill in the time or drop the row; every row needs its times.",
            )
        bad = (pl.col(col) < 0) | pl.col(col).is_infinite()
        if subjects := _ids(work, bad):
            raise _fail(
                source,
                f"negative (or infinite) time in column {name!r}",
                subjects,
                "Times are durations since study entry and must be finite and >= 0; correct the entry.",
            )
    if subjects := _ids(work, pl.col(_EVENT).is_null() | ~pl.col(_EVENT).is_in([0.0, 1.0])):
        raise _fail(
            source,
            f"event values other than 0/1 in column {event!r}",
            subjects,
            "Code the event as 1 (event observed) or 0 (censored), with no missing values.",
        )

    if not interval:
        if subjects := _ids(work, pl.col(_SUBJ).is_duplicated()):
            raise _fail(
                source,
                f"more than one row (a cross-sectional table has no {stop!r} column)",
                subjects,
                f"Keep one row per subject, or add the interval end column {stop!r} for "
                "longitudinal data.",
            )
        ordered = work.with_columns(pl.lit(0.0).alias(_START))
    else:
        if subjects := _ids(work, pl.col(_STOP) <= pl.col(_START)):
            raise _fail(
                source,
                f"an interval ending at or before it starts ({stop!r} <= {start!r})",
                subjects,
                f"Each row is a visit interval [{start}, {stop}) with {stop} > {start}; correct "
                "or drop the row.",
            )
        ordered = work.with_columns(pl.col("__row").min().over(_SUBJ).alias(_FIRST)).sort(
            [_FIRST, _START]
        )
        previous_stop = pl.col(_STOP).shift(1).over(_SUBJ)
        if subjects := _ids(ordered, pl.col(_START) < previous_stop):
            raise _fail(
                source,
                "overlapping visit intervals (a row starts before the previous row stops)",
                subjects,
                "Each subject's intervals must not overlap; remove duplicated visits or correct the times.",
            )
        not_last = pl.int_range(pl.len()).over(_SUBJ) < pl.len().over(_SUBJ) - 1
        if subjects := _ids(ordered, not_last & (pl.col(_EVENT) == 1.0)):
            raise _fail(
                source,
                "event before the last visit interval",
                subjects,
                "Flag the event (1) only on the subject's last interval, whose stop is the event "
                "time; set the earlier rows to 0 or drop the visits after the event.",
            )

    ordered = ordered.with_columns(
        (pl.col(_SUBJ) + "_t" + _format_time(pl.col(_START))).alias("sample_id")
    )
    duplicated = ordered.filter(pl.col("sample_id").is_duplicated())["sample_id"]
    if duplicated.len():  # cannot happen after the checks above; kept as a guard
        msg = f"{source}: sample ids {duplicated.unique().head(_SHOWN).to_list()} are not unique."
        raise InputError(msg)

    samples = ordered.select(
        "sample_id", pl.col(_SUBJ).alias("subject_id"), pl.col(_START).alias("visit_time")
    )
    outcomes = ordered.group_by(_SUBJ, maintain_order=True).agg(
        pl.col(_STOP).last().alias("time"), pl.col(_EVENT).last().cast(pl.Int8).alias("event")
    )
    outcomes = outcomes.rename({_SUBJ: "subject_id"})
    covariates = [c for c in frame.columns if c not in needed]
    visits = ordered.select("sample_id", *covariates).with_columns(
        pl.col(pl.Categorical, pl.Enum).cast(pl.String)
    )
    return IntervalCohort(samples=samples, outcomes=outcomes, visits=visits)


def _write_table(frame: pl.DataFrame, path: Path) -> None:
    with atomic_output(path) as tmp:
        if path.suffix == ".parquet":
            frame.write_parquet(tmp)
        else:
            frame.write_csv(tmp)


def write_cohort(
    cohort: IntervalCohort,
    directory: str | os.PathLike[str],
    *,
    modalities: Mapping[str, list[str]],
    parquet: Collection[str] = (),
    outcomes_file: str | None = "outcomes.csv",
) -> dict[str, Path]:
    """Write a cohort as the pipeline's input files, each atomically.

    Parameters
    ----------
    cohort : IntervalCohort
        From :func:`split_interval_table` (possibly narrowed with :meth:`IntervalCohort.subset`,
        or with ``visit_time`` dropped from ``samples`` for a cross-sectional cohort).
    directory : path-like
        Output folder; created if needed.
    modalities : mapping of str to list of str
        Modality name -> columns of ``cohort.visits``; each becomes ``<name>.csv`` holding
        ``sample_id`` and those columns.
    parquet : collection of str, default=()
        Modalities written as ``<name>.parquet`` instead of CSV (large numeric matrices).
    outcomes_file : str or None, default="outcomes.csv"
        File name of the outcome table; ``None`` writes none (patients whose outcome must stay
        unseen), another name (``truth.csv``) keeps it apart from the training inputs.

    Returns
    -------
    dict of str to Path
        ``"samples"``, ``"outcomes"`` (unless ``outcomes_file`` is None) and each modality name,
        mapped to the file written.

    Raises
    ------
    InputError
        If a modality name is not a plain file name or is reserved, a column is not in
        ``cohort.visits``, or ``parquet`` names an unknown modality.
    """
    directory = Path(directory)
    reserved = {"samples", Path(outcomes_file).stem if outcomes_file else "samples"}
    for name, columns in modalities.items():
        if not _NAME.match(name) or name in reserved:
            msg = (
                f"modality name {name!r} cannot be a file name here: use letters, digits, '_', "
                f"'.' or '-', and none of {sorted(reserved)}."
            )
            raise InputError(msg)
        absent = [c for c in columns if c not in cohort.visits.columns or c == "sample_id"]
        if absent or not columns:
            msg = (
                f"modality {name!r}: column(s) {absent or '(none given)'} are not visit columns "
                f"(available: {cohort.visits.columns[1:9]}...). List columns of cohort.visits."
            )
            raise InputError(msg)
    unknown = sorted(set(parquet) - set(modalities))
    if unknown:
        msg = f"parquet names modalities {unknown} that are not in modalities {sorted(modalities)}."
        raise InputError(msg)

    written: dict[str, Path] = {"samples": directory / "samples.csv"}
    _write_table(cohort.samples, written["samples"])
    if outcomes_file is not None:
        written["outcomes"] = directory / outcomes_file
        _write_table(cohort.outcomes, written["outcomes"])
    for name, columns in modalities.items():
        path = directory / f"{name}.{'parquet' if name in parquet else 'csv'}"
        _write_table(cohort.visits.select("sample_id", *columns), path)
        written[name] = path
    return written


def write_example(
    cohort: IntervalCohort,
    directory: str | os.PathLike[str],
    *,
    candidates: Collection[str],
    n_new: int,
    seed: int,
    modalities: Mapping[str, list[str]],
) -> tuple[IntervalCohort, list[str]]:
    """Write a bundled example: training files, and seeded held-out new patients apart.

    ``n_new`` patients drawn without replacement (``numpy.random.default_rng(seed)``) among
    ``candidates`` are removed from the training files (:func:`write_cohort` into
    ``directory``) and written to ``directory/new_patients`` with their outcomes as
    ``truth.csv``.

    Returns
    -------
    training cohort, new patients
    """
    pool = np.array(list(candidates))
    rng = np.random.default_rng(seed)
    new = pool[np.sort(rng.choice(pool.size, size=n_new, replace=False))].tolist()
    train = cohort.subset(new, exclude=True)
    write_cohort(train, directory, modalities=modalities)
    write_cohort(
        cohort.subset(new),
        Path(directory) / "new_patients",
        modalities=modalities,
        outcomes_file="truth.csv",
    )
    return train, new
