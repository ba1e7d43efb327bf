"""Validation of the input contract: sample sheet, outcomes and omics matrices.

Every check raises :class:`omics_ml.io.InputError` with a message that names the file, the
column and the rows or ids at fault, and says how to fix the input. :func:`validate_inputs`
runs all checks for a config and returns (and optionally writes) a QC summary.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from omics_ml.arms import arm_codes_of, canonical_arm
from omics_ml.io import (
    InputError,
    Matrix,
    collect_table,
    file_digest,
    read_matrix,
    scan_table,
    write_json,
)
from omics_ml.normalise import DEFAULT_BATCH_COLUMN, batch_column_of, modality_frame, wants_text

__all__ = [
    "check_modality",
    "check_modality_values",
    "load_cohort",
    "read_outcomes",
    "read_sample_sheet",
    "validate_inputs",
]

logger = logging.getLogger(__name__)

_MAX_LISTED = 5
_ROW = "__row__"
_ORIENTATIONS = ("samples_in_rows", "features_in_rows")
_OUTCOME_ID_COLUMNS = ("sample_id", "subject_id")
_DUPLICATE_HEADER = r"^(.*)_duplicated_\d+$"


def _listed(values: pl.Series | list[Any]) -> str:
    """Format up to five values, with the total count when there are more."""
    series = values if isinstance(values, pl.Series) else pl.Series(values, dtype=pl.String)
    shown = series.head(_MAX_LISTED).to_list()
    more = series.len() - len(shown)
    return f"{shown}" + (f" and {more} more" if more > 0 else "")


def _read_text_table(
    path: Path, *, required: list[str], optional: tuple[str, ...] = (), fix: str
) -> pl.DataFrame:
    """Read the ``required`` and present ``optional`` columns of a table as text.

    A 1-based data-row number is added as column ``_ROW``. A missing required column raises
    :class:`InputError` listing the columns found, followed by ``fix``.
    """
    lazy = scan_table(path, all_strings=True)
    found = _header(path, lazy)
    missing = [c for c in required if c not in found]
    if missing:
        msg = f"{path}: missing column(s) {missing} (found {found}). {fix}"
        raise InputError(msg)
    columns = [*dict.fromkeys(required), *(c for c in optional if c in found)]
    frame = collect_table(lazy.select(pl.col(columns).cast(pl.String)), path)
    return frame.with_row_index(_ROW, offset=1)


def _check_no_null(frame: pl.DataFrame, path: Path, column: str, what: str) -> None:
    rows = frame.filter(pl.col(column).is_null())[_ROW]
    if rows.len():
        msg = (
            f"{path}: column {column!r} is empty at data row(s) {_listed(rows)}. "
            f"Every row needs a {what}; fill it in or delete the row."
        )
        raise InputError(msg)


def read_sample_sheet(
    path: str | os.PathLike[str], *, batch_columns: tuple[str, ...] = ("batch",)
) -> pl.DataFrame:
    """Read and check the sample sheet.

    Parameters
    ----------
    path : path-like
        CSV, TSV or Parquet file with columns ``sample_id`` and ``subject_id`` and optionally
        ``visit_time`` (numeric) and batch columns. Other columns are ignored.
    batch_columns : tuple of str, default=("batch",)
        Further columns to keep (as text) where present: batch labels and the sample-sheet
        columns that define evaluation subgroups.

    Returns
    -------
    polars.DataFrame
        Columns ``sample_id`` (String), ``subject_id`` (String), and ``visit_time`` (Float64) and
        the batch columns (String) where present, in the file's row order.

    Raises
    ------
    InputError
        If an id column is missing, an id is empty, a ``sample_id`` is repeated or a
        ``visit_time`` is not a finite number.
    """
    path = Path(path)
    frame = _read_text_table(
        path,
        required=["sample_id", "subject_id"],
        optional=("visit_time", *batch_columns),
        fix="The sample sheet needs one row per sample with its sample_id and subject_id; "
        "rename the columns accordingly.",
    )
    _check_no_null(frame, path, "sample_id", "sample_id")
    _check_no_null(frame, path, "subject_id", "subject_id")

    duplicated = frame.filter(pl.col("sample_id").is_duplicated())
    if duplicated.height:
        ids = duplicated["sample_id"].unique(maintain_order=True)
        msg = (
            f"{path}: duplicate sample_id value(s) {_listed(ids)} in column 'sample_id' "
            f"(data rows {_listed(duplicated[_ROW])}). Each sample must be listed once; "
            "give repeated measurements of a subject distinct sample ids and the same subject_id."
        )
        raise InputError(msg)

    columns: list[pl.Expr] = [pl.col("sample_id"), pl.col("subject_id")]
    if "visit_time" in frame.columns:
        parsed = pl.col("visit_time").cast(pl.Float64, strict=False)
        bad = frame.filter(
            pl.col("visit_time").is_not_null() & (parsed.is_null() | ~parsed.is_finite())
        )
        if bad.height:
            first = bad.row(0, named=True)
            row, value = first[_ROW], first["visit_time"]
            msg = (
                f"{path}: column 'visit_time', data row {row} holds {value!r}, which is not a "
                f"finite number ({bad.height} such row(s)). Write visit times as numbers (e.g. "
                "days since baseline) and leave unknown ones empty."
            )
            raise InputError(msg)
        columns.append(parsed.alias("visit_time"))
    columns.extend(pl.col(c) for c in dict.fromkeys(batch_columns) if c in frame.columns)
    return frame.select(columns)


def read_outcomes(
    path: str | os.PathLike[str],
    *,
    outcome_column: str,
    id_column: str = "sample_id",
    samples: pl.DataFrame,
) -> pl.DataFrame:
    """Read the outcome table and attach one label to every sample of the sample sheet.

    Parameters
    ----------
    path : path-like
        CSV, TSV or Parquet file with ``id_column`` and ``outcome_column``.
    outcome_column : str
        Column holding the label to predict; cast to text.
    id_column : {"sample_id", "subject_id"}, default="sample_id"
        Whether the outcome is given per sample or per subject.
    samples : polars.DataFrame
        The sample sheet (:func:`read_sample_sheet`), with ``sample_id`` and ``subject_id``.

    Returns
    -------
    polars.DataFrame
        Columns ``sample_id``, ``subject_id`` and ``label`` (String), one row per sample of
        ``samples`` in its order.

    Raises
    ------
    InputError
        If a column is missing, an id has conflicting outcomes, an id is not in the sample sheet,
        a sample has no outcome, or the samples of one subject have different outcomes.
    """
    path = Path(path)
    if id_column not in _OUTCOME_ID_COLUMNS:
        msg = (
            f"cohort.outcome_id_column is {id_column!r}; it must be 'sample_id' (outcome per "
            "sample) or 'subject_id' (outcome per subject)."
        )
        raise InputError(msg)
    if outcome_column == id_column:
        msg = f"{path}: cohort.outcome_column is the id column {id_column!r}; name the label."
        raise InputError(msg)
    frame = _read_text_table(
        path,
        required=[id_column, outcome_column],
        fix=f"Set cohort.outcome_column (and cohort.outcome_id_column, now {id_column!r}) in "
        "config.yaml to the outcome table's columns, or rename the columns.",
    )
    _check_no_null(frame, path, id_column, id_column)
    frame = frame.select(pl.col(id_column), pl.col(outcome_column).alias("label"), pl.col(_ROW))

    conflicting = (
        frame.filter(pl.col(id_column).is_duplicated())
        .group_by(id_column, maintain_order=True)
        .agg(
            pl.col("label").n_unique().alias("n"),
            pl.format("{} (row {})", pl.col("label").fill_null("<empty>"), pl.col(_ROW))
            .str.join(", ")
            .alias("values"),
        )
        .filter(pl.col("n") > 1)
    )
    if conflicting.height:
        details = (
            conflicting.head(_MAX_LISTED)
            .select(pl.format("{}: {}", pl.col(id_column), pl.col("values")).str.join("; "))
            .item()
        )
        msg = (
            f"{path}: {conflicting.height} {id_column} value(s) appear more than once in column "
            f"{id_column!r} with different {outcome_column!r} values: {details}. "
            "Keep one row per id with the correct outcome."
        )
        raise InputError(msg)
    frame = frame.unique(subset=id_column, keep="first", maintain_order=True)

    samples = samples.select(pl.col("sample_id", "subject_id").cast(pl.String))
    sheet_ids = samples[id_column].unique()
    unknown = frame.filter(~pl.col(id_column).is_in(sheet_ids.implode()))
    if unknown.height:
        msg = (
            f"{path}: {unknown.height} {id_column} value(s) in column {id_column!r} are not in "
            f"the sample sheet: {_listed(unknown[id_column])} (data rows "
            f"{_listed(unknown[_ROW])}). Add them to the sample sheet (cohort.samples) or remove "
            "them from the outcome table."
        )
        raise InputError(msg)

    joined = samples.join(frame, on=id_column, how="left", maintain_order="left")
    no_row = joined.filter(pl.col(_ROW).is_null())
    if no_row.height:
        msg = (
            f"{path}: {no_row.height} sample(s) of the sample sheet have no outcome row "
            f"(no matching {id_column!r}): sample_id {_listed(no_row['sample_id'])}. Add their "
            f"{outcome_column!r} to the outcome table or remove them from the sample sheet."
        )
        raise InputError(msg)
    empty = joined.filter(pl.col("label").is_null())
    if empty.height:
        msg = (
            f"{path}: column {outcome_column!r} is empty for {empty.height} sample(s) of "
            f"subject(s) {_listed(empty['subject_id'].unique(maintain_order=True))}: "
            f"sample_id {_listed(empty['sample_id'])} (data rows "
            f"{_listed(empty[_ROW].unique(maintain_order=True))}). Fill in the outcome or remove "
            "those samples from the sample sheet."
        )
        raise InputError(msg)

    subject_conflicts = (
        joined.group_by("subject_id", maintain_order=True)
        .agg(
            pl.col("label").n_unique().alias("n"),
            pl.format(
                "'{}' (sample {}, row {})",
                pl.col("label"),
                pl.col("sample_id"),
                pl.col(_ROW),
            )
            .str.join(", ")
            .alias("values"),
        )
        .filter(pl.col("n") > 1)
    )
    if subject_conflicts.height:
        details = (
            subject_conflicts.head(_MAX_LISTED)
            .select(pl.format("subject {}: {}", pl.col("subject_id"), pl.col("values")))
            .to_series()
            .str.join("; ")
            .item()
        )
        msg = (
            f"{path}: {subject_conflicts.height} subject(s) have conflicting {outcome_column!r} "
            f"values across their samples: {details}. The label is predicted per subject, so all "
            "samples of a subject need the same outcome; correct the outcome table, or give the "
            "samples distinct subject_id values in the sample sheet if they are different subjects."
        )
        raise InputError(msg)
    return joined.select("sample_id", "subject_id", "label")


def _config_value(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    node: Any = config
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node or node[key] is None:
            if default is not None and depth == len(keys) - 1:
                return default
            msg = f"config: {'.'.join(keys)} is not set. Add it to config.yaml."
            raise InputError(msg)
        node = node[key]
    return node


def _numeric_outcome(
    frame: pl.DataFrame, column: str, *, path: Any, config_key: str, what: str
) -> pl.Series:
    """Parse the per-sample text values of an outcome column as finite floats."""
    parsed = frame[column].cast(pl.Float64, strict=False)
    bad = frame.filter(parsed.is_null() | ~parsed.is_finite())
    if bad.height:
        msg = (
            f"{path}: column {config_key!r} holds non-numeric {what} "
            f"{_listed(bad[column].unique(maintain_order=True))} for subject(s) "
            f"{_listed(bad['subject_id'].unique(maintain_order=True))} (sample_id "
            f"{_listed(bad['sample_id'])}). Write {what}s as numbers."
        )
        raise InputError(msg)
    return parsed


def _check_visits(samples: pl.DataFrame, path: Any) -> None:
    """Every sample has a visit time and no subject has two visits at the same time."""
    if "visit_time" not in samples.columns:
        msg = (
            f"{path}: longitudinal.landmarks is set but the sample sheet has no 'visit_time' "
            "column. Add each sample's visit time (in the outcome's time unit, from baseline)."
        )
        raise InputError(msg)
    empty = samples.filter(pl.col("visit_time").is_null())
    if empty.height:
        msg = (
            f"{path}: column 'visit_time' is empty for sample_id {_listed(empty['sample_id'])}. "
            "Longitudinal models need the time of every visit; fill it in or drop the sample."
        )
        raise InputError(msg)
    overlap = samples.filter(pl.struct("subject_id", "visit_time").is_duplicated())
    if overlap.height:
        msg = (
            f"{path}: visits overlap: subject(s) {_listed(overlap['subject_id'].unique(maintain_order=True))} "
            f"have several samples at the same visit_time (sample_id {_listed(overlap['sample_id'])}). "
            "Each visit of a subject needs its own time; merge the duplicate visits or correct "
            "their times."
        )
        raise InputError(msg)


def _survival_outcome(
    config: dict[str, Any], samples: pl.DataFrame, *, id_column: str
) -> pl.DataFrame:
    """``sample_id``, ``subject_id``, ``time`` (Float64), ``event`` (Int8) and ``label``
    (``event``/``censored``), checked."""
    path = _config_value(config, "cohort", "outcomes")
    time_column = _config_value(config, "cohort", "time_column", default="time")
    event_column = _config_value(config, "cohort", "event_column", default="event")
    times = read_outcomes(path, outcome_column=time_column, id_column=id_column, samples=samples)
    events = read_outcomes(path, outcome_column=event_column, id_column=id_column, samples=samples)
    time = _numeric_outcome(times, "label", path=path, config_key=time_column, what="survival time")
    bad = times.filter(time <= 0)
    if bad.height:
        subjects = bad["subject_id"].unique(maintain_order=True)
        msg = (
            f"{path}: column {time_column!r} is zero or negative for subject(s) {_listed(subjects)} "
            f"(values {_listed(bad['label'].unique(maintain_order=True))}). Survival times are the "
            "positive time from baseline to the event or to the last follow-up; correct them, or "
            "drop subjects without follow-up."
        )
        raise InputError(msg)
    event = events["label"].str.strip_chars().replace({"0.0": "0", "1.0": "1"})
    bad = events.filter(~event.is_in(["0", "1"]))
    if bad.height:
        msg = (
            f"{path}: column {event_column!r} must be 0 (censored) or 1 (event); found "
            f"{_listed(bad['label'].unique(maintain_order=True))} for subject(s) "
            f"{_listed(bad['subject_id'].unique(maintain_order=True))}. Recode the event indicator."
        )
        raise InputError(msg)
    out = times.select("sample_id", "subject_id").with_columns(
        time.alias("time"),
        event.cast(pl.Int8).alias("event"),
        # The stratum the splits balance: whether the subject had the event.
        pl.Series("label", event.replace({"1": "event", "0": "censored"}), dtype=pl.String),
    )
    if "visit_time" in samples.columns:
        late = out.with_columns(samples["visit_time"]).filter(pl.col("visit_time") > pl.col("time"))
        if late.height:
            first = late.row(0, named=True)
            msg = (
                f"{path}: {late.height} visit(s) after the subject's event or end of follow-up, "
                f"e.g. subject {first['subject_id']!r}: sample {first['sample_id']!r} at "
                f"visit_time {first['visit_time']:g} but {time_column!r} is {first['time']:g} "
                f"(subjects {_listed(late['subject_id'].unique(maintain_order=True))}). A visit "
                "cannot follow the event or the last follow-up; correct the time or drop the visit."
            )
            raise InputError(msg)
    return out


def load_cohort(config: dict[str, Any]) -> pl.DataFrame:
    """Read the sample sheet and the outcomes named in a config.

    Parameters
    ----------
    config : dict
        Pipeline config; uses ``task``, ``cohort.samples``, ``cohort.outcomes``,
        ``cohort.outcome_column`` (classification; regression without a longitudinal target),
        ``cohort.time_column`` and ``cohort.event_column`` (survival; optional for longitudinal
        regression, where they define who is still at risk at a landmark),
        ``cohort.outcome_id_column`` (default ``"sample_id"``) and ``longitudinal``.

    Returns
    -------
    polars.DataFrame
        One row per sample in the sample sheet's order: ``sample_id``, ``subject_id``,
        ``label`` (the class; for survival ``event``/``censored``; for regression the
        stratum used to balance the splits), the task's outcome columns (``time`` and
        ``event`` for survival; ``target`` for regression of an outcome column) and, where the
        sample sheet has them, ``visit_time``, ``batch`` and every modality's ``batch_column``.

    Raises
    ------
    InputError
        From :func:`read_sample_sheet` or :func:`read_outcomes`; for survival times that are
        missing, zero or negative, event codes other than 0/1, visits after the event or the
        end of follow-up, or overlapping visits; or if a config key is missing.
    """
    batch_columns = tuple(
        dict.fromkeys(
            [
                DEFAULT_BATCH_COLUMN,
                *(
                    batch_column_of(spec)
                    for spec in (config.get("modalities") or {}).values()
                    if isinstance(spec, dict)
                ),
            ]
        )
    )
    # Subgroups named by a sample-sheet column (not modality:feature) travel with the cohort.
    subgroup_columns = tuple(
        str(spec["column"])
        for spec in (config.get("evaluate") or {}).get("subgroups") or []
        if ":" not in str(spec["column"])
    )
    sheet_columns = tuple(dict.fromkeys([*batch_columns, *subgroup_columns]))
    samples_path = _config_value(config, "cohort", "samples")
    samples = read_sample_sheet(samples_path, batch_columns=sheet_columns)
    _check_subgroup_columns(config, samples, samples_path)
    task = config.get("task", "classification")
    longitudinal = config.get("longitudinal") or {}
    if longitudinal.get("landmarks"):
        _check_visits(samples, samples_path)
    id_column = _config_value(config, "cohort", "outcome_id_column", default="sample_id")
    outcomes_path = _config_value(config, "cohort", "outcomes")
    cohort = config.get("cohort") or {}
    if task == "survival":
        outcomes = _survival_outcome(config, samples, id_column=id_column)
    elif task == "regression" and longitudinal.get("target"):
        if cohort.get("time_column") or cohort.get("event_column"):
            outcomes = _survival_outcome(config, samples, id_column=id_column)
        else:
            outcomes = samples.select("sample_id", "subject_id").with_columns(
                pl.lit("all").alias("label")
            )
    elif task == "regression":
        column = _config_value(config, "cohort", "outcome_column")
        read = read_outcomes(
            outcomes_path, outcome_column=column, id_column=id_column, samples=samples
        )
        target = _numeric_outcome(
            read, "label", path=outcomes_path, config_key=column, what="outcome value"
        )
        # Strata for the splits: quintiles of the outcome (bins closed on the right).
        values = target.to_numpy()
        edges = np.quantile(values, [0.2, 0.4, 0.6, 0.8])
        strata = np.char.add("q", (np.searchsorted(edges, values) + 1).astype(str))
        outcomes = read.select("sample_id", "subject_id").with_columns(
            target.alias("target"), pl.Series("label", strata, dtype=pl.String)
        )
    else:
        outcomes = read_outcomes(
            outcomes_path,
            outcome_column=_config_value(config, "cohort", "outcome_column"),
            id_column=id_column,
            samples=samples,
        )
    extra = [
        c
        for c in ("visit_time", *sheet_columns)
        if c in samples.columns and c not in outcomes.columns
    ]
    return pl.concat([outcomes, samples.select(extra)] if extra else [outcomes], how="horizontal")


def _check_subgroup_columns(
    config: Mapping[str, Any], samples: pl.DataFrame, samples_path: str | os.PathLike[str]
) -> None:
    """Each configured subgroup names a sample-sheet column or a configured modality's column."""
    modalities = set(config.get("modalities") or {})
    for i, spec in enumerate((config.get("evaluate") or {}).get("subgroups") or []):
        column = str(spec["column"])
        modality, separator, _ = column.partition(":")
        if separator and modality not in modalities:
            msg = f"evaluate.subgroups[{i}].column {column!r} names modality {modality!r}, which is not in modalities ({sorted(modalities)}); use modality:feature of a configured modality or a sample-sheet column."
            raise InputError(msg)
        if not separator and column not in samples.columns:
            msg = f"evaluate.subgroups[{i}].column {column!r} is not a column of the sample sheet {samples_path}; add it there or name an input column as modality:feature."
            raise InputError(msg)


def _header(path: Path, lazy: pl.LazyFrame | None = None) -> list[str]:
    """Column names of a table, read as text (CSV/TSV headers are not type-inferred)."""
    if lazy is None:
        lazy = scan_table(path, all_strings=True)
    try:
        return lazy.collect_schema().names()
    except pl.exceptions.PolarsError as err:
        msg = f"{path}: the header could not be read ({err}). Check the separator and quoting."
        raise InputError(msg) from err


def _check_duplicate_header(path: Path, header: list[str], orientation: str) -> None:
    names = pl.Series(header, dtype=pl.String)
    base = names.str.extract(_DUPLICATE_HEADER, 1)
    repeated = base.filter(base.is_in(names.implode())).unique(maintain_order=True)
    if repeated.len():
        what = "sample id" if orientation == "features_in_rows" else "feature name"
        msg = (
            f"{path}: duplicate {what}(s) in the header row: {_listed(repeated)}. Each column "
            "must appear once; merge or rename the duplicated columns."
        )
        raise InputError(msg)


def _check_orientation(
    name: str,
    path: Path,
    *,
    header: list[str],
    orientation: str,
    id_column: str,
    sheet: pl.Series,
) -> None:
    """Raise if the header or the id column shows the file is laid out the other way round."""
    row_id_column = id_column if id_column in header else header[0]
    header_ids = pl.Series([c for c in header if c != row_id_column], dtype=pl.String)
    header_hits = int(header_ids.is_in(sheet.implode()).sum())
    row_ids = (
        collect_table(scan_table(path, all_strings=True).select(row_id_column), path)
        .to_series()
        .cast(pl.String)
    )
    row_hits = int(row_ids.is_in(sheet.implode()).sum())
    key = f"modalities.{name}"
    if orientation == "samples_in_rows" and header_hits > row_hits:
        msg = (
            f"{path}: the header holds {header_hits} sample ids of the sample sheet (e.g. "
            f"{_listed(header_ids.filter(header_ids.is_in(sheet.implode())))}) while column "
            f"{row_id_column!r} holds {row_hits}; the file has features in rows and samples in "
            f"columns. Set {key}.orientation: features_in_rows and {key}.id_column: "
            f"{header[0]!r} (the feature-id column) in config.yaml."
        )
        raise InputError(msg)
    if orientation == "features_in_rows" and row_hits > header_hits:
        msg = (
            f"{path}: column {row_id_column!r} holds {row_hits} sample ids of the sample sheet "
            f"(e.g. {_listed(row_ids.filter(row_ids.is_in(sheet.implode())))}) while the header "
            f"holds {header_hits}; the file has samples in rows. Set {key}.orientation: "
            f"samples_in_rows and {key}.id_column: {row_id_column!r} in config.yaml."
        )
        raise InputError(msg)


def _first_bad(path: Path, matrix: Matrix, bad: NDArray[np.bool_], problem: str, fix: str) -> None:
    """Raise naming the first flagged entry (sample, feature, value) and the number flagged."""
    if not bad.any():
        return
    row, col = np.argwhere(bad)[0]
    value = matrix.values[row, col]
    msg = (
        f"{path}: {problem} at sample {matrix.sample_ids[row]!r}, feature "
        f"{matrix.feature_names[col]!r} (value {value:g}; {int(bad.sum())} such value(s)). {fix}"
    )
    raise InputError(msg)


def check_modality_values(name: str, spec: dict[str, Any], matrix: Matrix) -> None:
    """Check a modality's values against what its ``type`` requires.

    Parameters
    ----------
    name : str
        The modality's key in ``config["modalities"]``.
    spec : dict
        The modality's config entry (``path``, ``type``).
    matrix : Matrix
        The values read from ``spec["path"]``.

    Raises
    ------
    InputError
        Naming the file, sample, feature and the fix, for: a modality with no value at all;
        ``rnaseq_counts`` with negative or non-integer counts or a sample whose counts are all
        zero (zero library size); ``methylation`` beta values outside [0, 1]; ``genotype``
        dosages outside [0, 2].
    """
    path = Path(spec["path"])
    kind = spec.get("type") or "other"
    values = matrix.values
    observed = ~np.isnan(values)
    if not observed.any() and not matrix.text:
        msg = f"{path}: modality {name!r} holds no value at all (every entry is missing). Check the file, or remove the modality from config.yaml."
        raise InputError(msg)
    if kind == "rnaseq_counts":
        _first_bad(
            path,
            matrix,
            observed & (values < 0),
            "negative count",
            "Counts must be raw, non-negative read counts; pass the counts matrix, not normalised or log values.",
        )
        _first_bad(
            path,
            matrix,
            observed & (values != np.round(values)),
            "non-integer count",
            f"Counts must be whole read counts; for normalised or estimated (e.g. TPM, RSEM) values set modalities.{name}.type to transcriptomics.",
        )
        library = np.where(observed, values, 0.0).sum(axis=1)
        empty = (library <= 0) & observed.any(axis=1)
        if empty.any():
            ids = np.asarray(matrix.sample_ids, dtype=object)[empty]
            msg = f"{path}: sample(s) {_listed(list(ids))} have a library size of zero (every count is 0); no normalisation is possible. Remove these samples from the file (they failed sequencing)."
            raise InputError(msg)
    elif kind == "methylation":
        _first_bad(
            path,
            matrix,
            observed & ((values < -1e-6) | (values > 1 + 1e-6)),
            "beta value outside [0, 1]",
            "Methylation values must be beta values in [0, 1]; pass beta values, not M-values or intensities.",
        )
    elif kind == "genotype":
        _first_bad(
            path,
            matrix,
            observed & ((values < 0) | (values > 2)),
            "dosage outside [0, 2]",
            "Genotypes must be dosages of 0-2 copies of the counted allele.",
        )


def check_modality(name: str, spec: dict[str, Any], *, samples: pl.DataFrame) -> dict[str, Any]:
    """Check one modality's matrix against the sample sheet and summarise it.

    Parameters
    ----------
    name : str
        The modality's key in ``config["modalities"]`` (used in messages).
    spec : dict
        The modality's config: ``path``, ``orientation`` (default ``"samples_in_rows"``) and
        ``id_column`` (default ``"sample_id"``); other keys are ignored.
    samples : polars.DataFrame
        The sample sheet, with column ``sample_id``.

    Returns
    -------
    dict
        QC: ``path``, ``orientation``, ``n_samples``, ``n_features``,
        ``n_sheet_samples_missing`` (samples of the sheet without this modality),
        ``missing_value_fraction``, ``n_all_missing_features``, ``n_all_missing_samples``,
        ``value_min``, ``value_median``, ``value_max`` (over finite values; ``None`` if there are
        none) and ``sha256`` (the file's digest).

    Raises
    ------
    InputError
        If the file cannot be read, is laid out the other way round from ``orientation``, has
        duplicate ids or non-numeric values, holds samples that are not in the sample sheet,
        holds none of the sheet's samples, or holds values its ``type`` does not allow (see
        :func:`check_modality_values`).
    """
    return _check_modality(name, spec, samples=samples)[0]


def _check_modality(
    name: str, spec: dict[str, Any], *, samples: pl.DataFrame
) -> tuple[dict[str, Any], pl.Series, Matrix]:
    """Do the work of :func:`check_modality`; also return the matrix's sample ids and the
    matrix."""
    key = f"modalities.{name}"
    if not isinstance(spec, dict) or not spec.get("path"):
        msg = f"config: {key}.path is not set. Add the path of the modality's matrix."
        raise InputError(msg)
    path = Path(spec["path"])
    orientation = spec.get("orientation") or "samples_in_rows"
    id_column = spec.get("id_column") or "sample_id"
    if orientation not in _ORIENTATIONS:
        msg = (
            f"config: {key}.orientation is {orientation!r}; "
            "use samples_in_rows or features_in_rows."
        )
        raise InputError(msg)

    sheet = samples["sample_id"].cast(pl.String)
    header = _header(path)
    _check_duplicate_header(path, header, orientation)
    _check_orientation(
        name, path, header=header, orientation=orientation, id_column=id_column, sheet=sheet
    )

    matrix = read_matrix(
        path,
        orientation=orientation,
        id_column=id_column,
        allow_text=wants_text(spec),
    )
    check_modality_values(name, spec, matrix)
    ids = pl.Series(matrix.sample_ids, dtype=pl.String)
    unknown = ids.filter(~ids.is_in(sheet.implode()))
    if unknown.len():
        where = f"column {id_column!r}" if orientation == "samples_in_rows" else "the header row"
        msg = (
            f"{path}: {unknown.len()} sample id(s) in {where} are not in the sample sheet: "
            f"{_listed(unknown)}. Add them to the sample sheet (cohort.samples) or remove them "
            f"from the file (and check {key}.orientation and {key}.id_column)."
        )
        raise InputError(msg)
    n_present = int(sheet.is_in(ids.implode()).sum())
    if n_present == 0:
        msg = (
            f"{path}: none of the {sheet.len()} samples of the sample sheet is in the file. "
            f"Check the sample ids and {key}.orientation / {key}.id_column."
        )
        raise InputError(msg)

    values = matrix.values
    missing = np.isnan(values)
    finite = values[np.isfinite(values)]
    has_finite = finite.size > 0
    qc = {
        "path": str(spec["path"]),
        "orientation": orientation,
        "n_samples": len(matrix.sample_ids),
        "n_features": len(matrix.feature_names),
        "n_sheet_samples_missing": sheet.len() - n_present,
        "missing_value_fraction": float(missing.mean()),
        "n_all_missing_features": int(missing.all(axis=0).sum()),
        "n_all_missing_samples": int(missing.all(axis=1).sum()),
        "value_min": float(finite.min()) if has_finite else None,
        "value_median": float(np.median(finite)) if has_finite else None,
        "value_max": float(finite.max()) if has_finite else None,
        "sha256": file_digest(path),
    }
    return qc, ids, matrix


def check_treatment(
    config: dict[str, Any], cohort: pl.DataFrame, *, matrix: Matrix | None = None
) -> dict[str, Any] | None:
    """Check the ``treatment`` section against its modality file; count subjects per arm.

    The arm column must be a feature of its modality's file, each arm must occur in at least
    two subjects, and no subject may change arm between visits. ``matrix`` is the arm's
    modality as already read (read from its file when not given).

    Returns
    -------
    dict or None
        ``column``, ``subjects_by_arm`` and ``n_subjects_other_or_missing`` (None without a
        ``treatment`` section).

    Raises
    ------
    InputError
        Naming ``treatment.column`` or ``treatment.arms``, the file and what to change.
    """
    section = config.get("treatment")
    if not section:
        return None
    column = str(section["column"])
    modality, _, feature = column.partition(":")
    spec = (config.get("modalities") or {}).get(modality)
    if not spec:
        msg = f"config: treatment.column {column!r} names modality {modality!r}, which is not in modalities ({sorted(config.get('modalities') or {})}); use modality:feature of a configured modality."
        raise InputError(msg)
    path = Path(spec["path"])
    if matrix is None:
        matrix = read_matrix(
            path,
            orientation=spec.get("orientation") or "samples_in_rows",
            id_column=spec.get("id_column") or "sample_id",
            allow_text=wants_text(spec),
        )
    table = modality_frame(matrix)
    if feature not in table.columns:
        msg = f"config: treatment.column {column!r}: {path} has no feature {feature!r} (it has {_listed(list(table.columns))}). Name the column that holds each sample's arm."
        raise InputError(msg)
    arms = [canonical_arm(a) for a in section["arms"]]
    values = table[feature].reindex(cohort["sample_id"].to_list())
    codes = arm_codes_of(values.to_numpy(dtype=object), arms)
    per = pl.DataFrame({"subject_id": cohort["subject_id"], "code": codes}).filter(
        pl.col("code") >= 0
    )
    switched = per.group_by("subject_id").agg(pl.col("code").n_unique()).filter(pl.col("code") > 1)
    if switched.height:
        msg = f"{path}: column {feature!r} (treatment.column) changes arm between the visits of subjects {_listed(switched['subject_id'].sort())}; a what-if model needs one arm per subject. Fix the arm or leave the subjects out."
        raise InputError(msg)
    subjects = per.unique("subject_id")
    counts = {arm: int((subjects["code"] == k).sum()) for k, arm in enumerate(arms)}
    scarce = [arm for arm, n in counts.items() if n < 2]
    if scarce:
        found = sorted({v for v in values.map(canonical_arm).dropna()})[:10]
        msg = f"config: treatment.arms {arms}: arm(s) {scarce} have fewer than 2 subjects in column {feature!r} of {path} (values found: {found}). List the arms as they appear in the file."
        raise InputError(msg)
    n_subjects = cohort["subject_id"].n_unique()
    return {
        "column": column,
        "subjects_by_arm": counts,
        "n_subjects_other_or_missing": n_subjects - subjects.height,
    }


def validate_inputs(
    config: dict[str, Any], *, qc_out: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Check every input of a config and summarise the cohort and the modalities.

    Parameters
    ----------
    config : dict
        Pipeline config with ``cohort`` and ``modalities``.
    qc_out : path-like, optional
        Where to write the QC summary as JSON.

    Returns
    -------
    dict
        ``n_samples``, ``n_subjects``, ``max_samples_per_subject``, ``class_counts``
        (samples per label), ``class_subject_counts`` (subjects per label),
        ``n_samples_without_data`` (samples in no modality), ``modalities`` (name to
        :func:`check_modality` QC) and ``files`` (path to SHA-256 digest).

    Raises
    ------
    InputError
        From the individual checks, or if there is a single class or a class with fewer than
        two subjects.
    """
    cohort = load_cohort(config)
    modalities = _config_value(config, "modalities")
    if not isinstance(modalities, dict) or not modalities:
        msg = "config: modalities is empty. Add at least one modality with its path."
        raise InputError(msg)

    outcomes_path = _config_value(config, "cohort", "outcomes")
    task = config.get("task", "classification")
    outcome_column = (config.get("cohort") or {}).get("outcome_column", task)
    per_class = (
        cohort.group_by("label")
        .agg(pl.len().alias("n_samples"), pl.col("subject_id").n_unique().alias("n_subjects"))
        .sort("label")
    )
    if task == "survival":
        n_events = cohort.unique("subject_id")["event"].sum()
        if n_events < 2:
            msg = (
                f"{outcomes_path}: only {n_events} subject(s) with an event over "
                f"{cohort['subject_id'].n_unique()} subjects; survival models need events to "
                "learn from. Check the event column (1 = event, 0 = censored)."
            )
            raise InputError(msg)
    elif task == "classification" and per_class.height < 2:
        msg = (
            f"{outcomes_path}: column {outcome_column!r} has a single class "
            f"{per_class['label'].to_list()} over {cohort.height} samples. Classification needs "
            "at least two classes."
        )
        raise InputError(msg)
    rare = per_class.filter(pl.col("n_subjects") < 2)
    if task == "classification" and rare.height:
        details = rare.select(
            pl.format("'{}' ({} subject(s))", pl.col("label"), pl.col("n_subjects")).str.join(", ")
        ).item()
        msg = (
            f"{outcomes_path}: class(es) of column {outcome_column!r} with fewer than 2 "
            f"subjects: {details}. Subject-grouped "
            "splits need at least 2 subjects per class; add subjects or merge or drop the class."
        )
        raise InputError(msg)

    modality_qc: dict[str, dict[str, Any]] = {}
    covered: list[pl.Series] = []
    arm_modality = str((config.get("treatment") or {}).get("column", "")).partition(":")[0]
    arm_matrix = None  # the arm's modality, kept to check the treatment without a second read
    for name, spec in modalities.items():
        modality_qc[name], ids, matrix = _check_modality(name, spec, samples=cohort)
        covered.append(ids)
        if name == arm_modality:
            arm_matrix = matrix
    without = cohort["sample_id"].filter(~cohort["sample_id"].is_in(pl.concat(covered).implode()))
    if without.len():
        logger.warning(
            "%d sample(s) of the sample sheet are in no modality: %s",
            without.len(),
            _listed(without),
        )

    treatment = check_treatment(config, cohort, matrix=arm_matrix)
    if treatment is not None and treatment["n_subjects_other_or_missing"]:
        logger.warning(
            "%d subject(s) have no arm of treatment.arms in %s; the what-if evaluation leaves them out",
            treatment["n_subjects_other_or_missing"],
            treatment["column"],
        )

    files = {
        str(_config_value(config, "cohort", "samples")): file_digest(
            _config_value(config, "cohort", "samples")
        ),
        str(outcomes_path): file_digest(outcomes_path),
    }
    files.update({qc["path"]: qc["sha256"] for qc in modality_qc.values()})
    qc = {
        "n_samples": cohort.height,
        "n_subjects": cohort["subject_id"].n_unique(),
        "max_samples_per_subject": int(cohort["subject_id"].value_counts()["count"].max()),
        "task": task,
        "class_counts": dict(zip(per_class["label"], per_class["n_samples"], strict=True)),
        "class_subject_counts": dict(zip(per_class["label"], per_class["n_subjects"], strict=True)),
        "n_samples_without_data": without.len(),
        "modalities": modality_qc,
        "files": files,
    }
    if treatment is not None:
        qc["treatment"] = treatment
    if qc_out is not None:
        write_json(qc_out, qc)
    logger.info(
        "inputs valid: %d samples, %d subjects, classes %s; %s",
        qc["n_samples"],
        qc["n_subjects"],
        qc["class_counts"],
        ", ".join(f"{name} {m['n_samples']}x{m['n_features']}" for name, m in modality_qc.items()),
    )
    return qc
