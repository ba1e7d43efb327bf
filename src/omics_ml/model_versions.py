"""Registered model versions as a table: aliases, promotion decision and key metrics.

Reads what the pipeline writes on every model version (``holdout_<metric>``, ``cv_<metric>``,
``promotion.*``, ``config_hash``, ``lineage.run_id`` and ``task`` tags) and the registered
models' aliases. Versions registered by something else appear with empty fields.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd
from mlflow.tracking import MlflowClient

__all__ = ["COLUMNS", "format_versions", "versions_table"]

#: Columns of :func:`versions_table`, in order.
COLUMNS = (
    "model",
    "version",
    "aliases",
    "created",
    "status",
    "task",
    "metric",
    "holdout",
    "cv",
    "decision",
    "config",
    "run",
)
_NUMERIC = frozenset({"version", "holdout", "cv"})
_PAGE_SIZE = 1000


def versions_table(
    tracking_uri: str, name: str | None = None, *, page_size: int = _PAGE_SIZE
) -> pd.DataFrame:
    """One row per registered model version with its aliases, decision and key metrics.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI, also used as the registry URI.
    name : str, optional
        A registered model; all registered models when None.
    page_size : int, default=1000
        Results asked per page of the MLflow searches (every page is read).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, sorted by model then version (newest first). ``holdout`` and
        ``cv`` are the tagged values of the version's promotion metric (NaN when untagged);
        ``config`` and ``run`` are the first 8 characters of the config hash and of the
        pipeline's parent run id (else the version's own run id).

    Raises
    ------
    ValueError
        If ``tracking_uri`` is a SQLite URI whose database file does not exist, or ``name`` is
        not a registered model.
    """
    _check_sqlite_exists(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    models = {
        m.name: m
        for m in _paged(client.search_registered_models, filter_string=None, page_size=page_size)
    }
    if name is not None and name not in models:
        known = ", ".join(sorted(models)) or "none"
        msg = f"no registered model {name!r} in {tracking_uri} (registered models: {known})."
        raise ValueError(msg)
    versions = list(
        _paged(client.search_model_versions, filter_string=_name_filter(name), page_size=page_size)
    )
    if name is not None:  # the filter is exact, but a name with both quote kinds is not filtered
        versions = [v for v in versions if v.name == name]
    rows = [_row(v, models.get(v.name)) for v in versions]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["version"] = table["version"].astype(int)
    for column in ("holdout", "cv"):
        table[column] = table[column].astype(float)
    return table.sort_values(["model", "version"], ascending=[True, False], ignore_index=True)


def format_versions(table: pd.DataFrame, *, tracking_uri: str = "the tracking store") -> str:
    """A fixed-width text table of :func:`versions_table`.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`versions_table`.
    tracking_uri : str, optional
        Where the versions were read, named when there are none.

    Returns
    -------
    str
        A header line and one line per version; floats with 3 decimals, missing values as
        ``-``. For an empty table, one line saying there are no versions in ``tracking_uri``.
    """
    if table.empty:
        return f"no registered model versions in {tracking_uri}"
    columns = list(table.columns)
    cells = [[_cell(value) for value in row] for row in table.itertuples(index=False)]
    widths = [
        max(len(str(column)), *(len(row[i]) for row in cells)) for i, column in enumerate(columns)
    ]
    right = [column in _NUMERIC for column in columns]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ).rstrip()

    return "\n".join([line([str(c) for c in columns]), *(line(row) for row in cells)])


def _row(version: Any, model: Any) -> dict[str, Any]:
    """One table row from a ``ModelVersion`` and its ``RegisteredModel`` (for the aliases)."""
    tags: Mapping[str, str] = version.tags or {}
    aliases = set(getattr(version, "aliases", None) or [])
    if model is not None:
        aliases |= {a for a, v in (model.aliases or {}).items() if str(v) == str(version.version)}
    metric = tags.get("promotion.metric", "")
    created = version.creation_timestamp
    return {
        "model": version.name,
        "version": int(version.version),
        "aliases": ",".join(sorted(aliases)),
        "created": ""
        if created is None
        else datetime.fromtimestamp(created / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M"),
        "status": str(version.status or ""),
        "task": tags.get("task", ""),
        "metric": metric,
        "holdout": _float_tag(tags, f"holdout_{metric}") if metric else math.nan,
        "cv": _float_tag(tags, f"cv_{metric}") if metric else math.nan,
        "decision": tags.get("promotion.decision", ""),
        "config": tags.get("config_hash", "")[:8],
        "run": (tags.get("lineage.run_id") or version.run_id or "")[:8],
    }


def _float_tag(tags: Mapping[str, str], key: str) -> float:
    """A tag as a float; NaN when absent or not a number."""
    try:
        return float(tags[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _cell(value: Any) -> str:
    """A table cell: floats with 3 decimals, missing values as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value) or "-"


def _name_filter(name: str | None) -> str | None:
    """A ``search_model_versions`` filter for one model name (None: every model)."""
    if name is None:
        return None
    for quote in ("'", '"'):
        if quote not in name:
            return f"name = {quote}{name}{quote}"
    return None


def _paged(search: Any, *, filter_string: str | None, page_size: int) -> Iterator[Any]:
    """Every result of an MLflow search, following the page tokens."""
    token = None
    while True:
        page = search(filter_string=filter_string, max_results=page_size, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _check_sqlite_exists(tracking_uri: str) -> None:
    """Refuse a SQLite URI whose file is missing (MLflow would create an empty store there)."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = unquote(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])
    if path and path != ":memory:" and not Path(path).exists():
        msg = (
            f"no MLflow store at {tracking_uri}: run the pipeline first, or give --tracking-uri "
            "(or set MLFLOW_TRACKING_URI)."
        )
        raise ValueError(msg)
