"""Per-patient plots of predicted trajectories (``omics-ml predict --plot DIR``).

:func:`plot_what_if` draws a patient's predictions under each treatment arm
(``omics-ml predict --what-if --plot DIR``). Survival models draw the patient's predicted survival curve from each landmark reached, on the
time axis since baseline, so the course is seen to change as visits accrue; regression models
draw the observed marker values and each predicted future value with its interval;
classifiers draw the class probabilities (per landmark for longitudinal models).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from omics_ml.io import save_figure
from omics_ml.tasks import horizon_label

__all__ = ["patient_file_name", "plot_patient_trajectories", "plot_what_if"]


def patient_file_name(patient: str) -> str:
    """A safe PNG file name for a patient id."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(patient)) + ".png"


def _patient_column(predictions: pd.DataFrame) -> str:
    return "subject_id" if "subject_id" in predictions else "sample_id"


def _landmarks(rows: pd.DataFrame) -> np.ndarray:
    if "landmark" in rows:
        return rows["landmark"].to_numpy(np.float64)
    return np.zeros(len(rows))


def _survival(ax: Any, rows: pd.DataFrame, head: Mapping[str, Any]) -> None:
    grid = np.asarray(head["grid"], dtype=np.float64)
    curves = rows[[f"surv_{horizon_label(t)}" for t in grid]].to_numpy(np.float64)
    for start, curve, (_, row) in zip(_landmarks(rows), curves, rows.iterrows(), strict=True):
        risks = ", ".join(
            f"{row[f'risk_at_{horizon_label(h)}']:.2f} by +{h:g}" for h in head["horizons"]
        )
        ax.step(start + grid, curve, where="post", label=f"from {start:g}: risk {risks}")
    ax.set(xlabel="time since baseline", ylabel="predicted survival", ylim=(0, 1.02))


def _regression(
    ax: Any,
    rows: pd.DataFrame,
    visits: pd.DataFrame | None,
    target: Mapping[str, Any] | None,
) -> None:
    if visits is not None and target is not None and target["feature"] in visits:
        observed = visits.sort_values("visit_time")
        ax.plot(
            observed["visit_time"],
            pd.to_numeric(observed[target["feature"]], errors="coerce"),
            "o-",
            color="grey",
            label=f"observed {target['feature']}",
        )
    horizon = 0.0 if target is None else float(target["horizon"])
    at = _landmarks(rows) + horizon
    predicted = rows["predicted"].to_numpy(np.float64)
    ax.errorbar(
        at,
        predicted,
        yerr=[predicted - rows["lower"].to_numpy(), rows["upper"].to_numpy() - predicted],
        fmt="s",
        color="tab:blue",
        capsize=4,
        label="predicted (interval)",
    )
    ax.set(xlabel="time since baseline", ylabel="value")


def _classification(ax: Any, rows: pd.DataFrame) -> None:
    classes = [c.removeprefix("prob_") for c in rows if c.startswith("prob_")]
    width = 0.8 / max(len(rows), 1)
    for k, (start, (_, row)) in enumerate(zip(_landmarks(rows), rows.iterrows(), strict=True)):
        ax.bar(
            np.arange(len(classes)) + k * width,
            [row[f"prob_{c}"] for c in classes],
            width=width,
            label=f"landmark {start:g}" if "landmark" in rows else None,
        )
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes)
    ax.set(ylabel="probability", ylim=(0, 1))


def plot_patient_trajectories(
    predictions: pd.DataFrame,
    metadata: Mapping[str, Any],
    directory: str | os.PathLike[str],
    *,
    frame: pd.DataFrame | None = None,
) -> list[Path]:
    """Write one PNG per patient of a predictions table.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Output of the model (one row per sample, or per subject and landmark).
    metadata : mapping
        The model's metadata: ``task``, ``head`` (grid and horizons of survival models) and
        ``longitudinal`` (landmarks and the regression target).
    directory : path-like
        Output directory (created).
    frame : pandas.DataFrame, optional
        The raw input table, whose visits the regression plots show.

    Returns
    -------
    list of Path
        The files written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    task = metadata.get("task", "classification")
    head = metadata.get("head") or {}
    target = (metadata.get("longitudinal") or {}).get("target")
    column = _patient_column(predictions)
    written = []
    for patient, rows in predictions.groupby(column, sort=False):
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        if task == "survival":
            _survival(ax, rows, head)
        elif task == "regression":
            visits = None
            if frame is not None and "subject_id" in frame:
                visits = frame[frame["subject_id"].astype(str) == str(patient)]
            _regression(ax, rows, visits, target)
        else:
            _classification(ax, rows)
        ax.set_title(f"Patient {patient}: predicted {task} trajectory")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = directory / patient_file_name(str(patient))
        save_figure(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def _latest(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the patient's latest landmark (the most recent information)."""
    if "landmark" not in rows:
        return rows
    return rows[rows["landmark"] == rows["landmark"].max()]


def plot_what_if(
    predictions: pd.DataFrame,
    metadata: Mapping[str, Any],
    directory: str | os.PathLike[str],
) -> list[Path]:
    """Write one PNG per patient of a what-if table: the prediction under each arm.

    Survival models draw each arm's survival curve from the patient's latest landmark with its
    bootstrap band (shaded) and, at the horizon effects are measured on, the band of the
    survival there; other tasks
    draw the outcome under each arm with its band. The title gives the effect of the treated
    arm against the reference with its band and the share of refits that predict a benefit.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Output of :meth:`omics_ml.twin.TwinModel.predict_what_if`.
    metadata : mapping
        The model's metadata: ``task``, ``head`` and ``treatment``.
    directory : path-like
        Output directory (created).

    Returns
    -------
    list of Path
        The files written (``<patient>_what_if.png``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    task = metadata.get("task", "classification")
    head = metadata.get("head") or {}
    arms = [str(a) for a in (metadata.get("treatment") or {}).get("arms", [])]
    column = _patient_column(predictions)
    treatment = metadata.get("treatment") or {}
    if task == "survival":
        horizon = float(treatment.get("horizon") or head["horizons"][-1])
        measure = f"difference in risk by +{horizon:g}"
    else:
        measure = "difference"
    written = []
    for patient, all_rows in predictions.groupby(column, sort=False):
        rows = _latest(all_rows)
        start = float(rows["landmark"].iloc[0]) if "landmark" in rows else 0.0
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        order = arms or rows["arm"].astype(str).unique().tolist()
        for k, arm in enumerate(order):
            row = rows[rows["arm"].astype(str) == arm].iloc[0]
            color = f"C{k}"
            if task == "survival":
                grid = np.asarray(head["grid"], dtype=np.float64)
                curve = row[[f"surv_{horizon_label(t)}" for t in grid]].to_numpy(np.float64)
                ax.step(start + grid, curve, where="post", color=color, label=f"{arm}")
                bands = [f"surv_{horizon_label(t)}_lower" for t in grid]
                if bands[0] in row.index and np.isfinite(row[bands].to_numpy(np.float64)).all():
                    ax.fill_between(
                        start + grid,
                        row[bands].to_numpy(np.float64),
                        row[[f"surv_{horizon_label(t)}_upper" for t in grid]].to_numpy(np.float64),
                        step="post",
                        color=color,
                        alpha=0.15,
                        lw=0,
                    )
                survival = 1.0 - row["outcome"]
                ax.errorbar(
                    start + horizon + 0.01 * k * grid.max(),
                    survival,
                    yerr=[
                        [row["outcome_upper"] - row["outcome"]],
                        [row["outcome"] - row["outcome_lower"]],
                    ],
                    fmt="o",
                    color=color,
                    capsize=4,
                )
            else:
                ax.errorbar(
                    k,
                    row["outcome"],
                    yerr=[
                        [row["outcome"] - row["outcome_lower"]],
                        [row["outcome_upper"] - row["outcome"]],
                    ],
                    fmt="s",
                    color=color,
                    capsize=6,
                    label=arm,
                )
        if task == "survival":
            ax.set(xlabel="time since baseline", ylabel="predicted survival", ylim=(0, 1.02))
        else:
            ax.set_xticks(range(len(order)), order)
            ax.set(xlim=(-0.6, len(order) - 0.4), ylabel="predicted outcome")
        treated = rows[rows["arm"].astype(str) == order[-1]].iloc[0]
        ax.set_title(
            f"Patient {patient}{'' if 'landmark' not in rows else f' at landmark {start:g}'}: "
            f"{order[-1]} vs {order[0]}\n{measure} {treated['effect']:+.3f} "
            f"[{treated['effect_lower']:+.3f}, {treated['effect_upper']:+.3f}], "
            f"P(benefit) {treated['prob_benefit']:.2f}",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = directory / patient_file_name(f"{patient}_what_if")
        save_figure(fig, path)
        plt.close(fig)
        written.append(path)
    return written
