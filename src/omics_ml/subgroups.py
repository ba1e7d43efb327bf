"""Performance per clinical subgroup, with subject-bootstrap intervals and flags.

A model that scores well on the whole cohort may still do badly for some patients (one sex, an
age band, a receptor status, a recruiting site). ``evaluate.subgroups`` names the columns to
check; this module turns each column into labelled levels (:func:`subgroup_labels`), evaluates
every level of an out-of-fold or holdout predictions table with the task's own metrics and
subject-bootstrap intervals (:func:`subgroup_performance`, built on
:func:`omics_ml.assess.metrics_with_intervals`), flags the levels whose interval lies entirely
on the worse side of the cohort's estimate, and presents the result as a table
(:func:`subgroup_table`) and a forest plot (:func:`plot_subgroups`).

Levels too small, or whose metrics are undefined (a single class, no event), are listed as not
evaluable with the reason rather than stopping the evaluation.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from itertools import pairwise
from numbers import Real
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from omics_ml.assess import higher_is_better, metrics_with_intervals
from omics_ml.io import save_figure

__all__ = [
    "DEFAULT_MIN_SUBJECTS",
    "MISSING",
    "plot_subgroups",
    "subgroup_labels",
    "subgroup_performance",
    "subgroup_table",
]

logger = logging.getLogger(__name__)

#: Label of rows whose subgroup value is missing; always the last level.
MISSING = "missing"

#: Levels with fewer subjects are listed but not evaluated (``evaluate.subgroups[i].min_subjects``).
DEFAULT_MIN_SUBJECTS = 10

_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|-?inf"
_BIN_LABEL = re.compile(
    rf"^(?:<(?P<below>{_NUMBER})|(?P<low>{_NUMBER})-(?P<high>{_NUMBER})|>=(?P<above>{_NUMBER}))$"
)
_TABLE_COLUMNS = [
    "subgroup",
    "level",
    "n_subjects",
    "estimate",
    "lower",
    "upper",
    "flagged",
    "evaluable",
    "reason",
]


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def _validated_bins(bins: Any, where: str) -> NDArray[np.float64]:
    """The cut points of ``<where>.bins`` as floats, or a ValueError saying what is wrong."""
    if isinstance(bins, str | bytes) or not isinstance(bins, Sequence) or len(bins) == 0:
        msg = f"{where}.bins is {bins!r}; give a non-empty list of ascending cut points, e.g. [50, 65]."
        raise ValueError(msg)
    if not all(isinstance(b, Real) and not isinstance(b, bool) for b in bins):
        msg = f"{where}.bins is {list(bins)!r}; every cut point must be a number, e.g. [50, 65]."
        raise ValueError(msg)
    edges = np.asarray(bins, dtype=np.float64)
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        msg = f"{where}.bins is {list(bins)!r}; the cut points must be finite and strictly increasing, e.g. [50, 65]."
        raise ValueError(msg)
    return edges


def _bin_names(edges: NDArray[np.float64]) -> list[str]:
    """Labels of the intervals ``(-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    text = [f"{e:g}" for e in edges]
    inner = [f"{a}-{b}" for a, b in pairwise(text)]
    return [f"<{text[0]}", *inner, f">={text[-1]}"]


def _numeric_text(numbers: NDArray[np.float64]) -> NDArray[np.str_]:
    """Numbers as text, whole numbers without a decimal part (``1.0`` -> ``'1'``)."""
    whole = np.isfinite(numbers) & (numbers == np.trunc(numbers)) & (np.abs(numbers) < 2.0**53)
    as_int = np.where(whole, numbers, 0.0).astype(np.int64).astype(str)
    as_float = pd.Series(numbers, dtype=np.float64).astype(str).to_numpy(dtype=str)
    return np.where(whole, as_int, as_float)


def _value_text(values: pd.Series) -> pd.Series:
    """Each value as text (missing values stay missing); numbers normalised by :func:`_numeric_text`."""
    values = values.astype(object) if isinstance(values.dtype, pd.CategoricalDtype) else values
    missing = values.isna().to_numpy()
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if pd.api.types.is_bool_dtype(values.dtype) or kind == "boolean":
        # A boolean is the number 0/1, so that labels {"0": ..., "1": ...} match it.
        numbers = pd.to_numeric(values.where(~missing).astype("float64"), errors="coerce")
        text = _numeric_text(numbers.to_numpy(np.float64))
    elif kind in ("integer", "floating", "mixed-integer-float", "decimal", "integer-na"):
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        text = _numeric_text(numbers.to_numpy(np.float64))
    elif kind in ("mixed", "mixed-integer"):
        # Strings stay as written ('007'); the numbers among them are normalised.
        is_text = values.str.len().notna().to_numpy()
        numbers = pd.to_numeric(values.where(~is_text), errors="coerce").to_numpy(np.float64)
        text = np.where(
            is_text | np.isnan(numbers),
            values.astype(str).to_numpy(dtype=str),
            _numeric_text(numbers),
        )
    else:
        text = values.astype(str).to_numpy(dtype=str)
    out = pd.Series(text, index=values.index, dtype=object)
    out[missing] = None
    return out


def subgroup_labels(values: pd.Series, spec: Mapping[str, Any], *, where: str) -> pd.Series:
    """Subgroup label of each row, from the column's values and its ``evaluate.subgroups`` entry.

    With ``bins`` (ascending cut points) numbers fall into left-closed intervals labelled
    ``'<50'``, ``'50-65'``, ``'>=65'`` (cut points in the shortest ``%g`` form). Without bins the
    label is the value as text: numbers that are whole are written as integers, so that ``1``,
    ``1.0`` and ``True`` are all ``'1'``; the text is then mapped through the optional
    ``labels`` (keys compared as text; unmapped values keep their text). ``labels`` also
    renames interval labels when given with ``bins``. Missing values are labelled
    :data:`MISSING`.

    Parameters
    ----------
    values : pandas.Series
        The subgroup column, one value per predictions row.
    spec : mapping
        The config entry: ``column`` and optionally ``name``, ``bins``, ``labels``,
        ``min_subjects``.
    where : str
        Config path of the entry for messages, e.g. ``'evaluate.subgroups[0]'``.

    Returns
    -------
    pandas.Series
        Categorical of strings with ``values``' index; its categories are the observed levels in
        report order: intervals in ascending order (or other labels sorted, numbers by value),
        :data:`MISSING` last.

    Raises
    ------
    ValueError
        ``<where>.bins`` not a non-empty strictly increasing list of numbers, or non-numeric
        values with bins; ``<where>.labels`` not a mapping of text to text.
    """
    labels = spec.get("labels")
    if labels is not None and not isinstance(labels, Mapping):
        msg = f"{where}.labels is {labels!r}; give a mapping of values to display names, e.g. {{'0': 'ER-negative', '1': 'ER-positive'}}."
        raise ValueError(msg)
    rename = {str(k): str(v) for k, v in (labels or {}).items()}
    missing = values.isna().to_numpy()

    if spec.get("bins") is not None:
        edges = _validated_bins(spec["bins"], where)
        numbers = pd.to_numeric(values.where(~missing), errors="coerce").to_numpy(np.float64)
        bad = ~missing & np.isnan(numbers)
        if bad.any() or pd.api.types.is_bool_dtype(values.dtype):
            examples = sorted({str(v) for v in values[bad].iloc[:3]}) or ["True/False"]
            msg = f"{where}.bins needs a numeric column, but {spec.get('column', values.name)!r} holds values such as {examples}; remove bins or choose a numeric column."
            raise ValueError(msg)
        mapped = [rename.get(n, n) for n in _bin_names(edges)]
        order = list(dict.fromkeys(mapped))
        codes = np.searchsorted(edges, numbers, side="right")  # [a, b): a cut point goes up
        text = np.asarray(mapped, dtype=object)[codes]
    else:
        raw = _value_text(values)
        text = raw.map(rename).where(raw.isin(list(rename)), raw).to_numpy(dtype=object)
        order = []

    text[missing] = MISSING
    observed = set(pd.unique(text).tolist())
    if order:
        categories = [c for c in order if c in observed and c != MISSING]
    else:
        categories = sorted(observed - {MISSING}, key=_sort_key)
    if MISSING in observed:
        categories.append(MISSING)
    return pd.Series(
        pd.Categorical(text, categories=categories), index=values.index, name=values.name
    )


def _sort_key(level: str) -> tuple[int, float, str]:
    """Order of levels without a given order: intervals and numbers by value, then text."""
    match = _BIN_LABEL.match(level)
    if match is not None:
        if match["below"] is not None:
            return (0, -math.inf, level)
        return (0, float(match["low"] if match["low"] is not None else match["above"]), level)
    try:
        number = float(level)
    except ValueError:
        return (1, 0.0, level)
    return (0, number, level) if not math.isnan(number) else (1, 0.0, level)


def _label_text(labels: pd.Series) -> NDArray[np.str_]:
    """The labels as text, missing ones :data:`MISSING`."""
    return labels.astype(object).where(labels.notna(), MISSING).astype(str).to_numpy(dtype=str)


def _levels(labels: pd.Series, text: NDArray[np.str_]) -> list[str]:
    """Observed levels in report order: a categorical's order or sorted; :data:`MISSING` last."""
    observed = set(np.unique(text).tolist())
    if isinstance(labels.dtype, pd.CategoricalDtype):
        given = [str(c) for c in labels.cat.categories]
        levels = [c for c in given if c in observed]
        levels += sorted(observed - set(given), key=_sort_key)
    else:
        levels = sorted(observed, key=_sort_key)
    if MISSING in levels:
        levels.remove(MISSING)
        levels.append(MISSING)
    return levels


# --------------------------------------------------------------------------------------------
# Performance
# --------------------------------------------------------------------------------------------


def _interval(values: Mapping[str, Any]) -> dict[str, float]:
    return {key: float(values[key]) for key in ("estimate", "lower", "upper")}


def _is_flagged(metric: str, level: Mapping[str, float], cohort_estimate: float) -> bool:
    """The level's interval lies entirely on the worse side of the cohort's estimate."""
    if higher_is_better(metric):
        return bool(level["upper"] < cohort_estimate)
    return bool(level["lower"] > cohort_estimate)


def _min_subjects_of(min_subjects: Mapping[str, int] | int, name: str) -> int:
    value = (
        min_subjects.get(name, DEFAULT_MIN_SUBJECTS)
        if isinstance(min_subjects, Mapping)
        else min_subjects
    )
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        msg = f"min_subjects of subgroup {name!r} is {value!r}; set evaluate.subgroups[i].min_subjects to an integer of at least 1."
        raise ValueError(msg)
    return int(value)


def _evaluate_level(
    rows: pd.DataFrame,
    *,
    head: Mapping[str, Any],
    metrics: Sequence[str],
    reference: pd.DataFrame,
    min_subjects: int,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> tuple[dict[str, dict[str, float]], str | None]:
    """Metrics of one level's rows, or ``({}, reason)`` where it cannot be evaluated."""
    n_subjects = int(rows["subject_id"].nunique())
    if n_subjects < min_subjects:
        return {}, f"{n_subjects} subject(s), fewer than min_subjects ({min_subjects})"
    if head["task"] == "survival" and not (rows["event"].to_numpy() == 1).any():
        return {}, "no event among its subjects"
    try:
        with warnings.catch_warnings():  # one class or few events: NaN records it
            warnings.simplefilter("ignore")
            values = metrics_with_intervals(
                rows,
                head=head,
                reference=reference,
                n_bootstrap=n_bootstrap,
                confidence_level=confidence_level,
                seed=seed,
            )
    except ValueError as err:
        return {}, f"metrics could not be computed: {err}"
    out = {m: _interval(values[m]) for m in metrics if m in values}
    undefined = [m for m in metrics if not np.isfinite(out.get(m, {}).get("estimate", np.nan))]
    if len(undefined) == len(metrics):
        return {}, f"metrics undefined in this level ({', '.join(undefined)})"
    for m in undefined:
        out.setdefault(m, {"estimate": math.nan, "lower": math.nan, "upper": math.nan})
    reason = f"undefined in this level: {', '.join(undefined)}" if undefined else None
    return {m: out[m] for m in metrics}, reason


def subgroup_performance(
    predictions: pd.DataFrame,
    labels: Mapping[str, pd.Series],
    *,
    head: Mapping[str, Any],
    metrics: Sequence[str],
    reference: pd.DataFrame | None = None,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
    min_subjects: Mapping[str, int] | int = DEFAULT_MIN_SUBJECTS,
) -> dict[str, Any]:
    """Metrics with subject-bootstrap intervals per subgroup level, flagged against the cohort.

    The level at position ``k`` of a subgroup's ordered levels is bootstrapped with seed
    ``seed + k`` (the cohort with ``seed``), so its result depends only on its own rows and
    position, not on the other subgroups. Survival metrics of a level take their censoring
    distribution from ``reference``, or from all rows of ``predictions`` when it is None (as the
    cohort's do). A level is not evaluable when it has fewer than ``min_subjects`` subjects,
    has no event (survival), or its metrics raise or are all undefined; a level whose metrics
    are only partly defined stays evaluable, the undefined ones NaN and named in ``reason``. A
    metric of an evaluable level is flagged when its interval lies entirely on the worse side
    of the cohort's point estimate (higher is better: ``upper`` below it; lower is better:
    ``lower`` above it).

    Parameters
    ----------
    predictions : pandas.DataFrame
        Out-of-fold or holdout predictions: ``subject_id``, the head's prediction columns and
        the outcome columns.
    labels : mapping of str to pandas.Series
        Subgroup name to the label of each predictions row (:func:`subgroup_labels`), indexed
        like ``predictions``. Levels follow a categorical's category order, otherwise sorted;
        :data:`MISSING` last.
    head : mapping
        The model's frozen task head (``TaskHead.to_json()``).
    metrics : sequence of str
        Metrics reported (names of :func:`omics_ml.assess.metrics_with_intervals`).
    reference : pandas.DataFrame, optional
        Survival: rows whose ``time``/``event`` estimate the censoring distribution.
    n_bootstrap, confidence_level, seed
        Subject bootstrap of the intervals.
    min_subjects : int or mapping of str to int
        Smallest evaluable level, for all subgroups or per subgroup name (default
        :data:`DEFAULT_MIN_SUBJECTS` for names not given).

    Returns
    -------
    dict
        JSON-safe (plain floats and ints, NaN allowed): ``cohort`` (``{metric: {estimate,
        lower, upper}}``), ``subgroups`` (``{name: {level: {n_subjects, n_rows, metrics,
        evaluable, reason, flagged}}}``), ``flags`` (``[{subgroup, level, metric, estimate,
        lower, upper, cohort_estimate}]``), and ``n_subjects``, ``n_rows``, ``metrics``,
        ``n_bootstrap``, ``confidence_level`` of the cohort.

    Raises
    ------
    ValueError
        Unknown metric or one the task does not report, labels not aligned with the
        predictions, or a ``min_subjects`` below 1.
    """
    metrics = list(metrics)
    if not metrics:
        msg = "no metrics requested; name at least one metric of the task for the subgroups."
        raise ValueError(msg)
    for metric in metrics:
        higher_is_better(metric)  # raises on an unknown name
    limits = {name: _min_subjects_of(min_subjects, name) for name in labels}
    for name, series in labels.items():
        if len(series) != len(predictions) or not series.index.equals(predictions.index):
            msg = f"the labels of subgroup {name!r} ({len(series)} rows) are not aligned with the predictions ({len(predictions)} rows); give one label per predictions row with the same index."
            raise ValueError(msg)

    cohort_all = metrics_with_intervals(
        predictions,
        head=head,
        reference=reference,
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        seed=seed,
    )
    absent = [m for m in metrics if m not in cohort_all]
    if absent:
        msg = f"metrics {absent} are not reported for this {head['task']} model; choose among {list(cohort_all)}."
        raise ValueError(msg)
    cohort = {m: _interval(cohort_all[m]) for m in metrics}
    censoring = predictions if reference is None else reference

    subgroups: dict[str, dict[str, Any]] = {}
    flags: list[dict[str, Any]] = []
    subjects = predictions["subject_id"].astype(str)
    for name, series in labels.items():
        text = _label_text(series)
        levels: dict[str, Any] = {}
        for k, level in enumerate(_levels(series, text)):
            mask = text == level
            rows = predictions.loc[mask].reset_index(drop=True)
            values, reason = _evaluate_level(
                rows,
                head=head,
                metrics=metrics,
                reference=censoring,
                min_subjects=limits[name],
                n_bootstrap=n_bootstrap,
                confidence_level=confidence_level,
                seed=seed + k,
            )
            flagged = [
                m
                for m, v in values.items()
                if np.isfinite(v["estimate"]) and _is_flagged(m, v, cohort[m]["estimate"])
            ]
            levels[level] = {
                "n_subjects": int(subjects[mask].nunique()),
                "n_rows": int(mask.sum()),
                "metrics": values,
                "evaluable": bool(values),
                "reason": reason,
                "flagged": flagged,
            }
            if not values:
                logger.info("subgroup %s = %s not evaluable: %s", name, level, reason)
            for m in flagged:
                flags.append(
                    {
                        "subgroup": str(name),
                        "level": level,
                        "metric": m,
                        **values[m],
                        "cohort_estimate": cohort[m]["estimate"],
                    }
                )
                logger.warning(
                    "subgroup %s = %s: %s %.3f [%.3f, %.3f] is worse than the cohort's %.3f",
                    name,
                    level,
                    m,
                    values[m]["estimate"],
                    values[m]["lower"],
                    values[m]["upper"],
                    cohort[m]["estimate"],
                )
        subgroups[str(name)] = levels

    return {
        "n_subjects": int(subjects.nunique()),
        "n_rows": len(predictions),
        "metrics": metrics,
        "n_bootstrap": int(n_bootstrap),
        "confidence_level": float(confidence_level),
        "cohort": cohort,
        "subgroups": subgroups,
        "flags": flags,
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _check_metric(result: Mapping[str, Any], metric: str) -> None:
    if metric not in result["cohort"]:
        msg = f"metric {metric!r} was not evaluated for the subgroups; choose one of {list(result['cohort'])}."
        raise ValueError(msg)


def subgroup_table(result: Mapping[str, Any], metric: str) -> pd.DataFrame:
    """One metric of every subgroup level as a flat table for the report.

    Parameters
    ----------
    result : mapping
        Output of :func:`subgroup_performance`.
    metric : str
        One of the evaluated metrics.

    Returns
    -------
    pandas.DataFrame
        Columns ``subgroup``, ``level``, ``n_subjects``, ``estimate``, ``lower``, ``upper``,
        ``flagged``, ``evaluable``, ``reason``: first the cohort (``subgroup`` and ``level``
        ``'all'``), then one row per level in result order. A level is evaluable for the metric
        when it is evaluable and the metric's estimate is defined; its reason says otherwise.

    Raises
    ------
    ValueError
        ``metric`` was not evaluated.
    """
    _check_metric(result, metric)
    cohort = result["cohort"][metric]
    rows: list[dict[str, Any]] = [
        {
            "subgroup": "all",
            "level": "all",
            "n_subjects": int(result.get("n_subjects", -1)),
            **_interval(cohort),
            "flagged": False,
            "evaluable": bool(np.isfinite(cohort["estimate"])),
            "reason": None,
        }
    ]
    nan = {"estimate": math.nan, "lower": math.nan, "upper": math.nan}
    for name, levels in result["subgroups"].items():
        for level, entry in levels.items():
            values = entry["metrics"].get(metric, nan)
            defined = bool(entry["evaluable"]) and bool(np.isfinite(values["estimate"]))
            reason = entry["reason"]
            if entry["evaluable"] and not defined:
                reason = f"{metric} undefined in this level"
            elif defined and reason is not None and metric not in reason:
                reason = None  # the note concerns other metrics
            rows.append(
                {
                    "subgroup": str(name),
                    "level": str(level),
                    "n_subjects": int(entry["n_subjects"]),
                    **_interval(values),
                    "flagged": metric in entry["flagged"],
                    "evaluable": defined,
                    "reason": reason,
                }
            )
    table = pd.DataFrame(rows, columns=_TABLE_COLUMNS)
    return table.astype({"flagged": bool, "evaluable": bool, "n_subjects": np.int64})


def plot_subgroups(
    result: Mapping[str, Any], metric: str, path: str | os.PathLike[str], *, title: str
) -> None:
    """Forest plot of one metric across subgroup levels (PNG, written atomically).

    One row per subgroup level with its estimate and interval under the cohort's row; a vertical
    line marks the cohort's estimate with its interval shaded. Flagged levels are red; levels not
    evaluable for the metric are listed in grey without a point.

    Parameters
    ----------
    result : mapping
        Output of :func:`subgroup_performance`.
    metric : str
        One of the evaluated metrics.
    path : path-like
        PNG output; replaced only once the plot is complete.
    title : str
        Plot title.

    Raises
    ------
    ValueError
        ``metric`` was not evaluated.
    """
    table = subgroup_table(result, metric)
    n = len(table)
    y = np.arange(n)[::-1].astype(np.float64)
    cohort = table.iloc[0]
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.32 * n), dpi=110)
    try:
        if np.isfinite(cohort["lower"]) and np.isfinite(cohort["upper"]):
            ax.axvspan(cohort["lower"], cohort["upper"], color="tab:blue", alpha=0.12, linewidth=0)
        if np.isfinite(cohort["estimate"]):
            ax.axvline(cohort["estimate"], color="tab:blue", linewidth=1.0, linestyle="--")
        shown = table["evaluable"].to_numpy()
        flagged = table["flagged"].to_numpy()
        colours = np.where(flagged, "tab:red", "black").astype(object)
        colours[0] = "tab:blue"
        for colour in ("tab:blue", "black", "tab:red"):
            pick = shown & (colours == colour)
            if not pick.any():
                continue
            est = table.loc[pick, "estimate"].to_numpy(np.float64)
            low = table.loc[pick, "lower"].to_numpy(np.float64)
            high = table.loc[pick, "upper"].to_numpy(np.float64)
            err = np.vstack([est - low, high - est])
            ax.errorbar(
                est,
                y[pick],
                xerr=np.where(np.isfinite(err), err, 0.0),
                fmt="o",
                color=colour,
                ecolor=colour,
                markersize=4,
                capsize=2,
                linewidth=1.0,
            )
        names = [
            "All subjects" if s == "all" else f"{s}: {lv}"
            for s, lv in zip(table["subgroup"], table["level"], strict=True)
        ]
        ax.set_yticks(
            y, [f"{name} (n={k})" for name, k in zip(names, table["n_subjects"], strict=True)]
        )
        for tick, ok, bad in zip(ax.get_yticklabels(), shown, flagged, strict=True):
            tick.set_color("tab:red" if bad else ("black" if ok else "grey"))
        x_text = ax.get_xlim()[0]
        for yy, ok, reason in zip(y, shown, table["reason"], strict=True):
            if not ok:
                ax.text(
                    x_text, yy, f"  not evaluable: {reason}", color="grey", va="center", fontsize=7
                )
        ax.set_ylim(-0.7, n - 0.3)
        direction = "higher is better" if higher_is_better(metric) else "lower is better"
        ax.set_xlabel(f"{metric} ({direction})")
        ax.set_title(title)
        ax.grid(axis="x", linewidth=0.4, alpha=0.5)
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)
