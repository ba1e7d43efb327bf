"""Raw input tables of a bundled example, built as the workflow's integrate step builds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omics_ml.io import read_matrix
from omics_ml.normalise import modality_frame

ROOT = Path(__file__).resolve().parents[2]


def example_tables(config: dict[str, Any]) -> dict[str, Any]:
    """The raw input frame and per-row outcomes of an example config's files.

    Returns
    -------
    dict
        ``frame``: ``sample_id``, ``subject_id`` (and ``visit_time``) and the
        ``modality:feature`` columns, one row per sample; ``outcomes``: per row ``subject_id``,
        ``label`` (event/censored), ``time`` and ``event`` as ``load_cohort`` gives them;
        ``sheet``: the sample sheet; ``subjects``: the outcome table; ``test``: per row,
        whether its subject is among a seeded quarter of the subjects held out for testing.
    """
    cohort = config["cohort"]
    sheet = pd.read_csv(ROOT / cohort["samples"], dtype=str)
    ids = sheet["sample_id"].tolist()
    blocks = []
    for name, spec in config["modalities"].items():
        matrix = read_matrix(
            ROOT / spec["path"],
            orientation=spec["orientation"],
            id_column=spec["id_column"],
            allow_text=spec.get("type") == "clinical",
        )
        block = modality_frame(matrix).reindex(ids)
        block.columns = [f"{name}:{f}" for f in block.columns]
        blocks.append(block)
    frame = pd.concat(blocks, axis=1).reset_index(drop=True)
    frame.insert(0, "sample_id", ids)
    frame.insert(1, "subject_id", sheet["subject_id"].to_numpy())
    if "visit_time" in sheet:
        frame.insert(2, "visit_time", sheet["visit_time"].astype(float).to_numpy())
    table = pd.read_csv(ROOT / cohort["outcomes"], dtype={"subject_id": str})
    per_row = table.set_index("subject_id").loc[sheet["subject_id"]]
    outcomes = pd.DataFrame(
        {
            "subject_id": sheet["subject_id"].to_numpy(),
            "label": np.where(per_row["event"].to_numpy() == 1, "event", "censored"),
            "time": per_row["time"].to_numpy(np.float64),
            "event": per_row["event"].to_numpy(np.int8),
        }
    )
    subjects = table["subject_id"].to_numpy()
    rng = np.random.default_rng(0)
    test_subjects = set(rng.choice(subjects, size=len(subjects) // 4, replace=False).tolist())
    test = sheet["subject_id"].isin(test_subjects).to_numpy()
    return {"frame": frame, "outcomes": outcomes, "sheet": sheet, "subjects": table, "test": test}
