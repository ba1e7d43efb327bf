"""Subject-grouped, outcome-stratified partitions: a locked holdout and K outer folds."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold

from omics_ml.io import atomic_output, write_json
from omics_ml.tasks import evaluation_times

__all__ = [
    "grouped_stratified_split",
    "make_splits",
    "permute_labels_by_subject",
    "permute_outcomes_by_subject",
    "survival_evaluation_times",
    "write_splits",
]

logger = logging.getLogger(__name__)


def grouped_stratified_split(
    labels: np.ndarray, groups: np.ndarray, *, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held out) with about ``fraction`` of the groups held out.

    All samples of a group land on the same side; classes are stratified as far as the
    grouping allows (:class:`sklearn.model_selection.StratifiedGroupKFold`).

    Parameters
    ----------
    labels, groups : ndarray of shape (n_samples,)
        Stratification labels and group (subject) ids.
    fraction : float
        Fraction to hold out, in (0, 0.5].
    seed : int
        Shuffling seed.

    Returns
    -------
    kept, held_out : ndarray of int
        Sorted sample indices.
    """
    n_splits = max(2, round(1.0 / fraction))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    kept, held_out = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return np.sort(kept), np.sort(held_out)


def permute_labels_by_subject(cohort: pl.DataFrame, *, seed: int) -> pl.DataFrame:
    """Permute labels across subjects (negative control); a subject's samples keep one label."""
    subjects = cohort.select("subject_id", "label").unique(
        "subject_id", keep="first", maintain_order=True
    )
    rng = np.random.default_rng(seed)
    shuffled = subjects.with_columns(
        pl.Series("label", rng.permutation(subjects["label"].to_numpy()))
    )
    return cohort.drop("label").join(shuffled, on="subject_id", how="left", validate="m:1")


def make_splits(
    cohort: pl.DataFrame,
    *,
    holdout_fraction: float,
    n_splits: int,
    seed: int,
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Partition a cohort into development and locked holdout, then K outer folds.

    Parameters
    ----------
    cohort : polars.DataFrame
        Columns ``sample_id``, ``subject_id``, ``label``.
    holdout_fraction : float
        Fraction of subjects in the locked holdout.
    n_splits : int
        Outer folds over the development subjects.
    seed : int
        Seed of every shuffle.

    Returns
    -------
    splits : dict
        ``development``/``holdout`` sample ids and ``folds`` (``train``/``test`` sample ids).
    assignment : polars.DataFrame
        The cohort with ``partition`` (development/holdout) and ``fold`` (outer test fold of a
        development sample, null for the holdout).
    """
    labels = cohort["label"].to_numpy()
    groups = cohort["subject_id"].to_numpy()
    samples = np.asarray(cohort["sample_id"].to_list(), dtype=object)
    dev_idx, hold_idx = grouped_stratified_split(
        labels, groups, fraction=holdout_fraction, seed=seed
    )
    n_dev_subjects = len(np.unique(groups[dev_idx]))
    if n_dev_subjects < n_splits:
        msg = f"split.n_splits={n_splits} exceeds the {n_dev_subjects} development subjects; lower split.n_splits."
        raise ValueError(msg)
    fold_of = np.full(len(samples), -1, dtype=np.int64)
    outer = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = []
    for k, (train, test) in enumerate(
        outer.split(np.zeros(dev_idx.size), labels[dev_idx], groups[dev_idx])
    ):
        fold_of[dev_idx[test]] = k
        folds.append(
            {
                "fold": k,
                "train": samples[dev_idx[np.sort(train)]].tolist(),
                "test": samples[dev_idx[np.sort(test)]].tolist(),
            }
        )
    splits = {
        "seed": seed,
        "holdout_fraction": holdout_fraction,
        "n_splits": n_splits,
        "development": samples[dev_idx].tolist(),
        "holdout": samples[hold_idx].tolist(),
        "folds": folds,
    }
    partition = np.where(np.isin(np.arange(len(samples)), hold_idx), "holdout", "development")
    assignment = cohort.with_columns(
        pl.Series("partition", partition),
        pl.Series("fold", fold_of).replace(-1, None),
    )
    return splits, assignment


def survival_evaluation_times(
    cohort: pl.DataFrame,
    sample_ids: list[str],
    *,
    landmarks: list[float] | None = None,
    horizons: list[float] | None = None,
    n_points: int = 50,
) -> dict[str, list[float]]:
    """Time grid and horizons of the survival curves, from the development subjects.

    They fix where every model of the run (each fold's and the final one) evaluates its
    survival curve, so that out-of-fold curves can be pooled; they never enter the booster or
    the baseline hazard. With landmarks, times count from each landmark that a subject outlives.
    """
    subjects = (
        cohort.filter(pl.col("sample_id").is_in(sample_ids))
        .unique("subject_id", keep="first", maintain_order=True)
        .select("time", "event")
    )
    if landmarks:
        subjects = pl.concat(
            [
                subjects.filter(pl.col("time") > s).with_columns(pl.col("time") - s)
                for s in landmarks
            ]
        )
    grid, chosen = evaluation_times(
        subjects["time"].to_numpy(),
        subjects["event"].to_numpy(),
        horizons=horizons,
        n_points=n_points,
    )
    return {"grid": grid, "horizons": chosen}


def permute_outcomes_by_subject(cohort: pl.DataFrame, *, seed: int) -> pl.DataFrame:
    """Permute every outcome column (label, time/event, target) across subjects together."""
    columns = [c for c in ("label", "time", "event", "target") if c in cohort.columns]
    subjects = cohort.select("subject_id", *columns).unique(
        "subject_id", keep="first", maintain_order=True
    )
    order = np.random.default_rng(seed).permutation(subjects.height)
    shuffled = subjects.select("subject_id").with_columns(subjects.drop("subject_id")[order])
    return cohort.drop(columns).join(shuffled, on="subject_id", how="left", validate="m:1")


def write_splits(
    cohort: pl.DataFrame,
    *,
    splits_out: str | os.PathLike[str],
    cohort_out: str | os.PathLike[str],
    holdout_fraction: float,
    n_splits: int,
    seed: int,
    permute_labels: bool = False,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Make the splits and write ``splits.json`` and the labelled cohort table (Parquet).

    The cohort table is the single source of the outcomes downstream, so the negative control
    (``permute_labels``) is applied here, before any split. For survival tasks (``config``),
    ``splits.json`` also holds the time grid and horizons from the development subjects
    (:func:`survival_evaluation_times`).
    """
    config = config or {}
    if permute_labels:
        logger.warning("negative control: outcomes permuted across subjects (seed %d)", seed)
        cohort = permute_outcomes_by_subject(cohort, seed=seed)
    splits, assignment = make_splits(
        cohort, holdout_fraction=holdout_fraction, n_splits=n_splits, seed=seed
    )
    splits["permuted_labels"] = permute_labels
    if config.get("task") == "survival":
        survival = config.get("survival") or {}
        splits["survival"] = survival_evaluation_times(
            cohort,
            splits["development"],
            landmarks=(config.get("longitudinal") or {}).get("landmarks"),
            horizons=survival.get("horizons"),
            n_points=int(survival.get("time_grid_points", 50)),
        )
    write_json(splits_out, splits)
    with atomic_output(cohort_out) as tmp:
        assignment.write_parquet(tmp)
    logger.info(
        "%d development and %d holdout samples; %d outer folds",
        len(splits["development"]),
        len(splits["holdout"]),
        n_splits,
    )
    return splits
