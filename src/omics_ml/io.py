"""Reading inputs and writing outputs: tables, omics matrices, JSON state, logs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray

__all__ = [
    "InputError",
    "Matrix",
    "atomic_output",
    "collect_table",
    "file_digest",
    "log_to_file",
    "read_json",
    "read_matrix",
    "save_figure",
    "scan_table",
    "terminate_on_sigterm",
    "write_json",
]

Orientation = Literal["samples_in_rows", "features_in_rows"]
NULL_VALUES = ["", "NA", "NaN", "nan", "null", "NULL", "N/A"]
_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".parquet": None}


class InputError(ValueError):
    """An input file or config value is not what the input contract asks for."""


@dataclass(frozen=True)
class Matrix:
    """A numeric omics matrix with samples in rows.

    Attributes
    ----------
    sample_ids : list of str
        Row identifiers.
    feature_names : list of str
        Column identifiers.
    values : ndarray of shape (n_samples, n_features), float32
        Measurements; ``NaN`` marks a missing value (and fills text columns).
    text : dict of str to ndarray of object
        Text (categorical) columns by feature name, one string or ``None`` per sample; only
        filled by :func:`read_matrix` with ``allow_text=True``.
    """

    sample_ids: list[str]
    feature_names: list[str]
    values: NDArray[np.float32]
    text: dict[str, NDArray[np.object_]] = field(default_factory=dict)


def log_to_file(path: str | os.PathLike[str]) -> None:
    """Send log records of this process (level INFO and above) to ``path`` and to stderr."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(path, mode="w"), logging.StreamHandler()]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)

    def _log_uncaught(kind, value, tb):
        logging.getLogger("omics_ml").critical(
            "%s: %s", kind.__name__, value, exc_info=(kind, value, tb)
        )

    sys.excepthook = _log_uncaught


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` for the rest of this process.

    Cluster schedulers stop a job with SIGTERM (``scancel``, a time limit) before SIGKILL.
    Python would die at once; as ``SystemExit`` the job unwinds instead: an open
    :func:`atomic_output` removes its temporary file, so no partial output is left, and open
    MLflow runs end as FAILED.
    """

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _separator(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        msg = (
            f"{path}: unsupported file type {suffix!r}. Use .csv, .tsv (or .txt, tab-separated) "
            "or .parquet."
        )
        raise InputError(msg)
    return _SUFFIXES[suffix]


def scan_table(
    path: str | os.PathLike[str],
    *,
    all_strings: bool = False,
    text_columns: list[str] | None = None,
) -> pl.LazyFrame:
    """Scan a CSV, TSV or Parquet file lazily.

    Parameters
    ----------
    path : path-like
        The file; its suffix chooses the reader.
    all_strings : bool, default=False
        Read every CSV/TSV column as text (used when numeric parsing is checked separately).
    text_columns : list of str, optional
        Columns read as text whatever they look like (identifiers such as ``007``).

    Returns
    -------
    polars.LazyFrame

    Raises
    ------
    InputError
        If the file is missing, empty or of an unsupported type.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: file not found. Check the path in config.yaml (paths are relative to the working directory)."
        raise InputError(msg)
    separator = _separator(path)
    if path.stat().st_size == 0:
        msg = f"{path}: the file is empty. Export the table again with a header row and data rows."
        raise InputError(msg)
    if separator is None:
        return pl.scan_parquet(path)
    overrides = {c: pl.String for c in text_columns or []}
    return pl.scan_csv(
        path,
        separator=separator,
        null_values=NULL_VALUES,
        infer_schema=not all_strings,
        infer_schema_length=None,
        truncate_ragged_lines=False,
        schema_overrides=overrides or None,
    )


def collect_table(lazy: pl.LazyFrame, path: Path) -> pl.DataFrame:
    """Collect a scanned table, turning parse errors and empty tables into :class:`InputError`."""
    try:
        frame = lazy.collect()
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as err:
        msg = f"{path}: could not be parsed ({err}). Check the separator, quoting and that every row has the header's number of fields."
        raise InputError(msg) from err
    if frame.height == 0 or frame.width == 0:
        msg = f"{path}: the file has no data rows. Export the table again with a header row and data rows."
        raise InputError(msg)
    return frame


def _first_non_numeric(frame: pl.DataFrame, columns: list[str]) -> tuple[str, int, str] | None:
    """Return (column, 0-based row, value) of the first entry that is not a number."""
    schema = frame.schema  # built anew on every access: once, not once per column
    text_cols = [c for c in columns if schema[c] == pl.String]
    if not text_cols:
        return None
    bad = frame.select(
        [
            (pl.col(c).is_not_null() & pl.col(c).cast(pl.Float64, strict=False).is_null()).alias(c)
            for c in text_cols
        ]
    )
    for column in text_cols:
        rows = np.flatnonzero(bad[column].to_numpy())
        if rows.size:
            row = int(rows[0])
            return column, row, str(frame[column][row])
    return None


def read_matrix(
    path: str | os.PathLike[str],
    *,
    orientation: Orientation = "samples_in_rows",
    id_column: str = "sample_id",
    allow_text: bool = False,
) -> Matrix:
    """Read an omics matrix into float32 with samples in rows.

    Parameters
    ----------
    path : path-like
        CSV, TSV or Parquet file.
    orientation : {"samples_in_rows", "features_in_rows"}, default="samples_in_rows"
        ``samples_in_rows``: one row per sample, ``id_column`` holds sample ids, the other columns
        are features. ``features_in_rows``: one row per feature, ``id_column`` holds feature ids,
        the other columns are samples.
    id_column : str, default="sample_id"
        Column holding the row identifiers.
    allow_text : bool, default=False
        Keep columns that are not numeric as text (categorical covariates) in
        :attr:`Matrix.text` instead of raising; needs ``orientation="samples_in_rows"``.

    Returns
    -------
    Matrix

    Raises
    ------
    InputError
        Naming the file, and the column and row, of a missing id column, a duplicate id or a
        value that is not a number.
    """
    path = Path(path)
    lazy = scan_table(path, text_columns=[id_column])
    if id_column not in lazy.collect_schema().names():
        lazy = scan_table(path)
    frame = collect_table(lazy, path)
    # Parquet written from pandas may store text as categorical: read it as plain text.
    frame = frame.with_columns(pl.col(pl.Categorical, pl.Enum).cast(pl.String))
    if id_column not in frame.columns:
        msg = (
            f"{path}: no {id_column!r} column (found {frame.columns[:5]}...). Rename the id column "
            f"or set modalities.<name>.id_column in config.yaml (orientation is {orientation!r})."
        )
        raise InputError(msg)
    ids = frame[id_column].cast(pl.String)
    if ids.null_count():
        row = int(np.flatnonzero(ids.is_null().to_numpy())[0])
        msg = f"{path}: column {id_column!r} is empty at data row {row + 1}. Every row needs an id."
        raise InputError(msg)
    duplicated = ids.filter(ids.is_duplicated()).unique(maintain_order=True).to_list()
    if duplicated:
        what = "sample" if orientation == "samples_in_rows" else "feature"
        msg = (
            f"{path}: duplicate {what} id(s) in column {id_column!r}: {duplicated[:5]}. "
            f"Each {what} must appear once; merge or rename the duplicates."
        )
        raise InputError(msg)
    value_cols = [c for c in frame.columns if c != id_column]
    if not value_cols:
        msg = f"{path}: no value columns besides {id_column!r}."
        raise InputError(msg)
    text: dict[str, NDArray[np.object_]] = {}
    if allow_text:
        if orientation != "samples_in_rows":
            msg = f"{path}: text (categorical) columns need orientation samples_in_rows; transpose the table."
            raise InputError(msg)
        schema = frame.schema
        strings = [c for c in value_cols if schema[c] == pl.String]
        holds_text = frame.select(
            [
                (pl.col(c).is_not_null() & pl.col(c).cast(pl.Float64, strict=False).is_null())
                .any()
                .alias(c)
                for c in strings
            ]
        )
        text_cols = [c for c in strings if holds_text[c][0]]
        text = {c: frame[c].cast(pl.String).to_numpy().astype(object) for c in text_cols}
        frame = frame.with_columns([pl.lit(None, dtype=pl.Float32).alias(c) for c in text_cols])
    bad = _first_non_numeric(frame, value_cols)
    if bad is not None:
        column, row, value = bad
        msg = (
            f"{path}: column {column!r}, data row {row + 1} (id {ids[row]!r}) holds {value!r}, "
            "which is not a number. Omics values must be numeric; write missing values as NA or leave them empty."
        )
        raise InputError(msg)
    values = (
        frame.select(pl.col(value_cols).cast(pl.Float32)).to_numpy().astype(np.float32, copy=False)
    )
    row_ids = ids.to_list()
    if orientation == "samples_in_rows":
        return Matrix(
            sample_ids=row_ids,
            feature_names=value_cols,
            values=np.ascontiguousarray(values),
            text=text,
        )
    return Matrix(
        sample_ids=value_cols, feature_names=row_ids, values=np.ascontiguousarray(values.T)
    )


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    A failed write therefore leaves no partial file and keeps any earlier ``path`` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would, so
        # results stay readable by the group on a shared cluster file system.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(figure: Any, path: str | os.PathLike[str], **savefig: Any) -> None:
    """Save a matplotlib figure atomically (format from ``path``'s suffix; ``savefig`` options
    such as ``dpi`` go to :meth:`matplotlib.figure.Figure.savefig`)."""
    with atomic_output(path) as tmp:
        figure.savefig(tmp, **savefig)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (a failed write leaves no partial file)."""
    with atomic_output(path) as tmp, open(tmp, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=False, allow_nan=True)
        handle.write("\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path) as handle:
        return json.load(handle)
