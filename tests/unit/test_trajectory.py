"""Per-patient trajectory plots of omics_ml.trajectory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from omics_ml.tasks import horizon_label
from omics_ml.trajectory import patient_file_name, plot_patient_trajectories

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pngs(directory: Path) -> list[Path]:
    files = sorted(directory.glob("*.png"))
    assert all(f.read_bytes()[:8] == PNG_MAGIC for f in files)
    return files


def test_patient_file_name_is_safe() -> None:
    assert patient_file_name("BR00/05 x@6") == "BR00_05_x_6.png"
    assert patient_file_name("257") == "257.png"


def test_survival_plot_one_file_per_subject_over_landmarks(tmp_path: Path) -> None:
    grid = [0.0, 2.5, 5.0, 7.5]
    head = {"grid": grid, "horizons": [6.0]}
    rows = []
    for subject in ("a", "b/c"):
        for landmark in (0.0, 2.0, 6.0):
            row = {"sample_id": f"{subject}@{landmark:g}", "subject_id": subject}
            row["landmark"] = landmark
            row["risk_at_6"] = 0.2
            row.update({f"surv_{horizon_label(t)}": np.exp(-0.05 * t) for t in grid})
            rows.append(row)
    written = plot_patient_trajectories(
        pd.DataFrame(rows), {"task": "survival", "head": head}, tmp_path / "plots"
    )
    assert [p.name for p in written] == ["a.png", "b_c.png"]
    assert len(_pngs(tmp_path / "plots")) == 2


def test_regression_plot_shows_visits_and_intervals(tmp_path: Path) -> None:
    predictions = pd.DataFrame(
        {
            "sample_id": ["p1@6", "p2@6"],
            "subject_id": ["p1", "p2"],
            "landmark": [6.0, 6.0],
            "predicted": [8.0, 10.0],
            "lower": [5.0, 7.0],
            "upper": [11.0, 13.0],
        }
    )
    frame = pd.DataFrame(
        {
            "subject_id": ["p1", "p1", "p2"],
            "visit_time": [0.0, 6.0, 0.0],
            "cd4:CD4": [9.0, 8.5, 11.0],
        }
    )
    metadata = {
        "task": "regression",
        "longitudinal": {"target": {"feature": "cd4:CD4", "horizon": 6.0, "window": 1.0}},
    }
    written = plot_patient_trajectories(predictions, metadata, tmp_path, frame=frame)
    assert len(written) == 2
    assert len(_pngs(tmp_path)) == 2


def test_classification_plot_per_sample(tmp_path: Path) -> None:
    predictions = pd.DataFrame(
        {
            "sample_id": ["s1", "s2", "s3"],
            "predicted_class": ["A", "B", "A"],
            "prob_A": [0.7, 0.2, 0.9],
            "prob_B": [0.3, 0.8, 0.1],
        }
    )
    written = plot_patient_trajectories(predictions, {"task": "classification"}, tmp_path)
    assert [p.stem for p in written] == ["s1", "s2", "s3"]
