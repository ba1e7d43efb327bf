"""Exact tree SHAP explanations of the pipeline's XGBoost booster, per feature and per modality.

XGBoost computes exact TreeSHAP values itself (``pred_contribs=True``), so no approximation or
background sample is needed: for every row the contributions of all features plus a bias term
add up to the booster's raw margin (log-odds per class for classification, log hazard for
``survival:cox``, log time for ``survival:aft``, the predicted value for regression). This module
turns those contributions into what the report and ``omics-ml predict --explain`` show: a global
ranking of features and of modalities by mean absolute contribution, per-row contributions summed
per modality, each row's top features, and two summary plots.

Feature names are qualified ``modality:feature`` (for example ``mrna:ESR1``, ``cd4:cd4@slope`` or
``visits:n_visits``); the modality of a name is the text before its first ``:``. Because SHAP
values are additive, summing a modality's feature contributions gives that modality's exact share
of the margin.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xgboost as xgb
from matplotlib.colors import Normalize
from numpy.typing import NDArray

from omics_ml.io import save_figure

__all__ = [
    "feature_importance_table",
    "global_importance",
    "modality_contributions",
    "modality_importance",
    "modality_of",
    "plot_modality_importance",
    "plot_shap_summary",
    "select_output",
    "shap_contributions",
    "top_contributions",
]

_BIAS = "bias"
_JITTER_SEED = 0
_CMAP = "coolwarm"
_MISSING_COLOUR = "#9e9e9e"


def shap_contributions(
    booster: xgb.Booster, features: NDArray[np.floating], *, nthread: int | None = None
) -> NDArray[np.float32]:
    """Exact tree SHAP contributions of every feature for every row, plus the bias.

    Parameters
    ----------
    booster : xgboost.Booster
        A trained booster. Its input columns must be in the order of ``features``.
    features : ndarray of shape (n_samples, n_features)
        The feature matrix as fed to the booster; ``NaN`` marks a missing value.
    nthread : int, optional
        Number of threads for the computation; the booster's own setting when ``None``. The
        booster passed in is not modified.

    Returns
    -------
    ndarray of float32
        Shape ``(n_samples, n_features + 1)``, or ``(n_samples, n_classes, n_features + 1)`` for
        multi-output (multiclass) models. The last column is the bias; each row (per class) sums to
        the booster's margin, ``booster.predict(dm, output_margin=True)``.

    Raises
    ------
    ValueError
        If ``features`` is not 2-D, its column count differs from the booster's, or ``nthread``
        is not a positive integer.
    """
    values = np.asarray(features, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(
            f"features must be a 2-D array (samples x features), got {values.ndim} dimension(s); "
            "reshape it to one row per sample."
        )
    n_expected = booster.num_features()
    if values.shape[1] != n_expected:
        raise ValueError(
            f"features has {values.shape[1]} columns but the booster was trained on {n_expected}; "
            "pass the same feature columns, in the same order, as in training."
        )
    if nthread is not None:
        if isinstance(nthread, bool) or not isinstance(nthread, int | np.integer) or nthread < 1:
            raise ValueError(f"nthread must be a positive integer or None, got {nthread!r}.")
        booster = booster.copy()
        booster.set_param({"nthread": int(nthread)})
    dmatrix = xgb.DMatrix(values, missing=np.nan, nthread=nthread)
    contribs = booster.predict(dmatrix, pred_contribs=True, validate_features=False)
    return np.asarray(contribs, dtype=np.float32)


def select_output(
    contribs: NDArray, output: NDArray[np.integer] | int | None
) -> NDArray[np.float32]:
    """Reduce contributions to one output (class) per row.

    Parameters
    ----------
    contribs : ndarray
        Contributions from :func:`shap_contributions`: ``(n, p + 1)`` or ``(n, K, p + 1)``.
    output : ndarray of int of shape (n,), int or None
        For 3-D input, the class to keep for each row (array) or for all rows (int). Ignored for
        2-D input.

    Returns
    -------
    ndarray of float32 of shape (n, p + 1)
        The 2-D input unchanged, or the selected class slice of each row.

    Raises
    ------
    ValueError
        If ``contribs`` is neither 2-D nor 3-D, or it is 3-D and ``output`` is missing, not
        integer, of the wrong length or out of range.
    """
    array = np.asarray(contribs, dtype=np.float32)
    if array.ndim == 2:
        return array
    if array.ndim != 3:
        raise ValueError(
            f"contribs must be 2-D (n, p + 1) or 3-D (n, K, p + 1), got {array.ndim} dimension(s)."
        )
    n_rows, n_outputs = array.shape[:2]
    if output is None:
        raise ValueError(
            f"output is required for multi-output contributions ({n_outputs} outputs); pass a "
            "class index (int) or one class index per row."
        )
    if isinstance(output, bool) or (
        np.ndim(output) == 0 and not isinstance(output, int | np.integer)
    ):
        raise ValueError(f"output must be an int or an integer array, got {output!r}.")
    if np.ndim(output) == 0:
        index = int(output)
        if not 0 <= index < n_outputs:
            raise ValueError(f"output must be in [0, {n_outputs}), got {index}.")
        return array[:, index, :]
    classes = np.asarray(output)
    if classes.shape != (n_rows,) or not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(
            f"output must be an integer array of shape ({n_rows},), one class per row, got dtype "
            f"{classes.dtype} and shape {classes.shape}."
        )
    if n_rows and (classes.min() < 0 or classes.max() >= n_outputs):
        raise ValueError(
            f"output holds class indices outside [0, {n_outputs}); "
            f"got values from {classes.min()} to {classes.max()}."
        )
    return array[np.arange(n_rows), classes, :]


def modality_of(feature_names: Sequence[str]) -> NDArray[np.str_]:
    """The modality of each qualified feature name: the text before the first ``:``.

    Parameters
    ----------
    feature_names : sequence of str
        Qualified names such as ``mrna:ESR1`` or ``cd4:cd4@slope``.

    Returns
    -------
    ndarray of str of shape (p,)
        The modality of each name.

    Raises
    ------
    ValueError
        If a name has no ``:`` or an empty modality part.
    """
    names = np.asarray(list(feature_names), dtype=np.str_)
    if names.size == 0:
        return names.astype(np.str_)
    colon = np.char.find(names, ":")
    bad = names[colon < 1]
    if bad.size:
        raise ValueError(
            f"feature_names must be qualified 'modality:feature'; {bad.size} name(s) are not, "
            f"e.g. {bad[:3].tolist()}. Prefix each feature with its modality."
        )
    return np.char.partition(names, ":")[:, 0]


def global_importance(contribs: NDArray, feature_names: Sequence[str]) -> pd.DataFrame:
    """Rank features by their mean absolute contribution.

    Parameters
    ----------
    contribs : ndarray
        Contributions ``(n, p + 1)`` or ``(n, K, p + 1)``; the bias column is excluded.
    feature_names : sequence of str
        The ``p`` qualified feature names.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature``, ``modality``, ``mean_abs_shap`` (mean over rows, and over classes for
        3-D input, of ``|contribution|``), sorted descending; ties keep feature order.

    Raises
    ------
    ValueError
        If the shapes do not match or the names are not qualified.
    """
    array = _check_contribs(contribs, feature_names, allow_3d=True)
    modalities = modality_of(feature_names)
    axes = tuple(range(array.ndim - 1))
    mean_abs = np.abs(array[..., :-1].astype(np.float64)).mean(axis=axes)
    order = np.argsort(-mean_abs, kind="stable")
    return pd.DataFrame(
        {
            "feature": np.asarray(list(feature_names), dtype=object)[order],
            "modality": modalities[order].astype(object),
            "mean_abs_shap": mean_abs[order],
        }
    )


def feature_importance_table(
    booster: xgb.Booster, contribs: NDArray, feature_names: Sequence[str]
) -> pd.DataFrame:
    """Every feature's mean absolute SHAP value next to XGBoost's split statistics.

    Parameters
    ----------
    booster : xgboost.Booster
        The fitted booster; its feature ``i`` is ``feature_names[i]``.
    contribs : ndarray
        Its SHAP contributions on the rows to summarise (see :func:`global_importance`).
    feature_names : sequence of str
        The ``p`` qualified feature names.

    Returns
    -------
    pandas.DataFrame
        Columns ``modality``, ``feature``, ``mean_abs_shap``, ``total_gain``, ``gain`` (mean
        gain per split), ``weight`` (number of splits) and ``total_cover``; features the trees
        never split on have 0. Sorted by ``mean_abs_shap`` descending.
    """
    table = global_importance(contribs, feature_names)
    names = list(feature_names)
    booster_names = booster.feature_names or [f"f{i}" for i in range(len(names))]
    rename = dict(zip(booster_names, names, strict=True))
    for column, kind in (
        ("total_gain", "total_gain"),
        ("weight", "weight"),
        ("total_cover", "total_cover"),
    ):
        scores = {rename[k]: v for k, v in booster.get_score(importance_type=kind).items()}
        table[column] = table["feature"].map(scores).fillna(0.0).astype(np.float64)
    table["gain"] = np.divide(
        table["total_gain"].to_numpy(),
        table["weight"].to_numpy(),
        out=np.zeros(len(table)),
        where=table["weight"].to_numpy() > 0,
    )
    return table[
        ["modality", "feature", "mean_abs_shap", "total_gain", "gain", "weight", "total_cover"]
    ]


def modality_contributions(contribs2d: NDArray, feature_names: Sequence[str]) -> pd.DataFrame:
    """Sum each row's contributions per modality.

    Parameters
    ----------
    contribs2d : ndarray of shape (n, p + 1)
        One output's contributions (see :func:`select_output`).
    feature_names : sequence of str
        The ``p`` qualified feature names.

    Returns
    -------
    pandas.DataFrame of shape (n, n_modalities + 1)
        One column per modality (in first-appearance order) holding the sum of its features'
        contributions, then a ``bias`` column; each row sums to the margin.

    Raises
    ------
    ValueError
        If ``contribs2d`` is not 2-D, the shapes do not match, the names are not qualified or a
        modality is named ``bias``.
    """
    array = _check_contribs(contribs2d, feature_names, allow_3d=False).astype(np.float64)
    sums, labels, _ = _modality_sums(array, feature_names)
    frame = pd.DataFrame(sums, columns=list(labels))
    frame[_BIAS] = array[:, -1]
    return frame


def modality_importance(contribs: NDArray, feature_names: Sequence[str]) -> pd.DataFrame:
    """Rank modalities by the mean absolute value of their summed contributions.

    Parameters
    ----------
    contribs : ndarray
        Contributions ``(n, p + 1)`` or ``(n, K, p + 1)``; the bias column is excluded.
    feature_names : sequence of str
        The ``p`` qualified feature names.

    Returns
    -------
    pandas.DataFrame
        Columns ``modality``, ``mean_abs_shap`` (mean over rows, and over classes for 3-D input, of
        ``|sum of the modality's contributions|``) and ``n_features``, sorted descending; ties keep
        first-appearance order.

    Raises
    ------
    ValueError
        If the shapes do not match, the names are not qualified or a modality is named ``bias``.
    """
    array = _check_contribs(contribs, feature_names, allow_3d=True).astype(np.float64)
    sums, labels, counts = _modality_sums(array, feature_names)
    mean_abs = np.abs(sums).mean(axis=tuple(range(sums.ndim - 1)))
    order = np.argsort(-mean_abs, kind="stable")
    return pd.DataFrame(
        {
            "modality": labels[order].astype(object),
            "mean_abs_shap": mean_abs[order],
            "n_features": counts[order].astype(np.int64),
        }
    )


def top_contributions(
    contribs2d: NDArray,
    values: NDArray[np.floating],
    feature_names: Sequence[str],
    row_ids: Sequence[str],
    *,
    top: int,
) -> pd.DataFrame:
    """Each row's features with the largest absolute contributions, as a long table.

    Parameters
    ----------
    contribs2d : ndarray of shape (n, p + 1)
        One output's contributions (see :func:`select_output`).
    values : ndarray of shape (n, p)
        The feature values fed to the booster (``NaN`` where missing).
    feature_names : sequence of str
        The ``p`` qualified feature names.
    row_ids : sequence of str
        The ``n`` row (sample) identifiers.
    top : int
        How many features per row; a value larger than ``p`` gives all features.

    Returns
    -------
    pandas.DataFrame
        One row per (input row, rank), rows in input order: ``sample_id``, ``rank`` (1 = largest
        ``|contribution|``; ties keep feature order), ``feature``, ``modality``, ``value`` and
        ``contribution``.

    Raises
    ------
    ValueError
        If the shapes do not match, the names are not qualified or ``top`` is not a positive
        integer.
    """
    array = _check_contribs(contribs2d, feature_names, allow_3d=False)
    n_rows, n_features = array.shape[0], array.shape[1] - 1
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}.")
    feature_values = np.asarray(values, dtype=np.float64)
    if feature_values.shape != (n_rows, n_features):
        raise ValueError(
            f"values must have shape ({n_rows}, {n_features}) to match contribs2d, got "
            f"{feature_values.shape}; pass the matrix that was fed to the booster."
        )
    ids = np.asarray(list(row_ids), dtype=object)
    if ids.shape != (n_rows,):
        raise ValueError(
            f"row_ids must hold one identifier per row ({n_rows}), got {ids.shape[0]}."
        )
    names = np.asarray(list(feature_names), dtype=object)
    modalities = modality_of(feature_names).astype(object)
    k = min(int(top), n_features)
    body = array[:, :-1].astype(np.float64)
    index = np.argsort(-np.abs(body), axis=1, kind="stable")[:, :k]
    return pd.DataFrame(
        {
            "sample_id": np.repeat(ids, k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), n_rows),
            "feature": names[index].ravel(),
            "modality": modalities[index].ravel(),
            "value": np.take_along_axis(feature_values, index, axis=1).ravel(),
            "contribution": np.take_along_axis(body, index, axis=1).ravel(),
        }
    )


def plot_shap_summary(
    contribs2d: NDArray,
    values: NDArray[np.floating],
    feature_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str,
    top: int = 20,
) -> None:
    """Beeswarm-style summary plot of the features with the largest mean ``|SHAP|``.

    One horizontal row per feature (largest at the top); each point is one sample's contribution,
    with a small seeded vertical jitter, coloured by the rank of the sample's feature value within
    that feature (low blue to high red; missing values grey).

    Parameters
    ----------
    contribs2d : ndarray of shape (n, p + 1)
        One output's contributions (see :func:`select_output`).
    values : ndarray of shape (n, p)
        The feature values fed to the booster (``NaN`` where missing).
    feature_names : sequence of str
        The ``p`` qualified feature names.
    path : str or path-like
        Where the PNG goes; written atomically.
    title : str
        Plot title.
    top : int, default 20
        How many features to show (all if fewer).

    Raises
    ------
    ValueError
        If there are no rows or features, the shapes do not match, the names are not qualified
        or ``top`` is not a positive integer.
    """
    array = _check_contribs(contribs2d, feature_names, allow_3d=False).astype(np.float64)
    n_rows, n_features = array.shape[0], array.shape[1] - 1
    if n_rows == 0 or n_features == 0:
        raise ValueError("contribs2d must hold at least one row and one feature to plot.")
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}.")
    feature_values = np.asarray(values, dtype=np.float64)
    if feature_values.shape != (n_rows, n_features):
        raise ValueError(
            f"values must have shape ({n_rows}, {n_features}) to match contribs2d, got "
            f"{feature_values.shape}; pass the matrix that was fed to the booster."
        )
    body = array[:, :-1]
    k = min(int(top), n_features)
    chosen = np.argsort(-np.abs(body).mean(axis=0), kind="stable")[:k]
    shap = body[:, chosen]  # (n, k)
    ranks = pd.DataFrame(feature_values[:, chosen]).rank(axis=0, method="average").to_numpy()
    counts = np.isfinite(feature_values[:, chosen]).sum(axis=0)
    scaled = (ranks - 1.0) / np.maximum(counts - 1, 1)  # 0 = lowest, 1 = highest, NaN = missing
    # Row i of the plot (y = k - 1 - i) shows the i-th most important feature, so it sits on top.
    jitter = np.random.default_rng(_JITTER_SEED).uniform(-0.2, 0.2, size=shap.shape)
    y = (k - 1 - np.arange(k))[np.newaxis, :] + jitter
    present = np.isfinite(scaled)
    norm = Normalize(vmin=0.0, vmax=1.0)

    fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.32 * k), dpi=110)
    try:
        ax.axvline(0.0, color="#444444", linewidth=0.8, zorder=0)
        points = ax.scatter(
            shap[present],
            y[present],
            s=9,
            c=scaled[present],
            cmap=_CMAP,
            norm=norm,
            alpha=0.85,
            linewidths=0,
        )
        # Missing values are drawn last so that no coloured point hides them.
        ax.scatter(shap[~present], y[~present], s=9, color=_MISSING_COLOUR, alpha=0.8, linewidths=0)
        ax.set_yticks(np.arange(k))
        ax.set_yticklabels(np.asarray(list(feature_names), dtype=object)[chosen][::-1])
        ax.set_ylim(-0.6, k - 0.4)
        ax.set_xlabel("SHAP value (contribution to the model margin)")
        ax.set_title(title)
        bar = fig.colorbar(points, ax=ax, pad=0.02, aspect=30)
        bar.set_label("feature value (rank)")
        bar.set_ticks([0.0, 1.0])
        bar.set_ticklabels(["low", "high"])
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_modality_importance(
    table: pd.DataFrame, path: str | os.PathLike[str], *, title: str
) -> None:
    """Horizontal bar chart of each modality's mean ``|SHAP|``.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`modality_importance` (columns ``modality`` and ``mean_abs_shap``; an
        ``n_features`` column, if present, is shown in the labels).
    path : str or path-like
        Where the PNG goes; written atomically.
    title : str
        Plot title.

    Raises
    ------
    ValueError
        If ``table`` is empty or lacks the required columns.
    """
    missing = {"modality", "mean_abs_shap"} - set(table.columns)
    if missing:
        raise ValueError(
            f"table lacks column(s) {sorted(missing)}; pass the output of modality_importance."
        )
    if table.empty:
        raise ValueError("table is empty; there is no modality to plot.")
    ordered = table.sort_values("mean_abs_shap", ascending=True, kind="stable")
    labels = ordered["modality"].astype(str)
    if "n_features" in ordered.columns:
        labels = labels + " (" + ordered["n_features"].astype(str) + ")"
    fig, ax = plt.subplots(figsize=(6.0, 1.2 + 0.4 * len(ordered)), dpi=110)
    try:
        ax.barh(np.arange(len(ordered)), ordered["mean_abs_shap"].to_numpy(), color="#4c72b0")
        ax.set_yticks(np.arange(len(ordered)))
        ax.set_yticklabels(labels.tolist())
        ax.set_xlabel("mean |SHAP| of the modality's summed contribution")
        ax.set_title(title)
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)


def _check_contribs(
    contribs: NDArray, feature_names: Sequence[str], *, allow_3d: bool
) -> NDArray[np.float32]:
    """Validate a contribution array against the feature names and return it as an array."""
    array = np.asarray(contribs)
    allowed = (2, 3) if allow_3d else (2,)
    if array.ndim not in allowed:
        shapes = (
            "(n, p + 1) or (n, K, p + 1)" if allow_3d else "(n, p + 1); use select_output first"
        )
        raise ValueError(f"contribs must have shape {shapes}, got {array.ndim} dimension(s).")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"contribs must be numeric, got dtype {array.dtype}.")
    n_names = len(feature_names)
    if array.shape[-1] != n_names + 1:
        raise ValueError(
            f"contribs has {array.shape[-1]} columns but feature_names has {n_names} names; "
            "expected one column per feature plus the bias column."
        )
    return array


def _modality_sums(
    array: NDArray[np.float64], feature_names: Sequence[str]
) -> tuple[NDArray[np.float64], NDArray[np.str_], NDArray[np.int64]]:
    """Sum the last axis (bias excluded) per modality, modalities in first-appearance order."""
    codes, labels = pd.factorize(modality_of(feature_names), sort=False)
    labels = np.asarray(labels, dtype=np.str_)
    if _BIAS in labels:
        raise ValueError(
            f"feature_names must not use the modality name '{_BIAS}', which is reserved for the "
            "bias column; rename that modality."
        )
    body = array[..., :-1]
    sums = np.empty((*body.shape[:-1], labels.size), dtype=np.float64)
    for j in range(labels.size):
        sums[..., j] = body[..., codes == j].sum(axis=-1)
    counts = np.bincount(codes, minlength=labels.size).astype(np.int64)
    return sums, labels, counts
