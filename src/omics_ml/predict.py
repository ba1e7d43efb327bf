"""Predict new patients from raw per-modality files with a registered model."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from omics_ml.integrate import qualified_names
from omics_ml.io import InputError, read_matrix
from omics_ml.normalise import modality_frame
from omics_ml.validate import read_sample_sheet

__all__ = [
    "find_input_files",
    "load_model",
    "model_metadata",
    "predict_files",
    "read_model_inputs",
    "read_raw_inputs",
]

logger = logging.getLogger(__name__)

_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")


def find_input_files(inputs: Sequence[str], modalities: Sequence[str]) -> dict[str, Path]:
    """Map modality names to files from ``--input`` arguments.

    Each argument is a directory (files named ``<modality>.csv|tsv|txt|parquet``), a
    ``modality=path`` pair, or a file whose stem is a modality name.
    """
    found: dict[str, Path] = {}
    for item in inputs:
        name, sep, value = item.partition("=")
        if sep:
            if name not in modalities:
                msg = f"--input {item}: the model has no modality {name!r} (it has {list(modalities)})."
                raise InputError(msg)
            found[name] = Path(value)
            continue
        path = Path(item)
        if path.is_dir():
            for modality in modalities:
                matches = [
                    path / f"{modality}{s}"
                    for s in _SUFFIXES
                    if (path / f"{modality}{s}").is_file()
                ]
                if len(matches) > 1:
                    msg = f"{path}: several files for modality {modality!r}: {[m.name for m in matches]}; keep one."
                    raise InputError(msg)
                if matches:
                    found.setdefault(modality, matches[0])
        elif path.is_file() and path.stem in modalities:
            found[path.stem] = path
        else:
            msg = (
                f"--input {item}: not a directory, a modality=path pair, or a file named after one of "
                f"the model's modalities {list(modalities)}."
            )
            raise InputError(msg)
    if not found:
        msg = f"no input file found for any of the model's modalities {list(modalities)} in {list(inputs)}."
        raise InputError(msg)
    return found


def read_raw_inputs(
    files: Mapping[str, str | os.PathLike[str]],
    contract: Mapping[str, Mapping[str, Any]],
    *,
    samples: str | os.PathLike[str] | None = None,
    longitudinal: bool = False,
) -> pd.DataFrame:
    """Read raw per-modality files into the model's input table.

    Parameters
    ----------
    files : mapping of str to path-like
        Modality name to file.
    contract : mapping
        Per modality, ``orientation``, ``id_column``, ``text_features`` and ``batch_column`` as
        in training.
    samples : path-like, optional
        Sample sheet of the new samples: ``sample_id``, ``subject_id``, ``visit_time`` (needed
        by longitudinal models) and the batch columns that batch-corrected modalities read.
        Without it, such modalities see every sample as an unseen batch.
    longitudinal : bool, default=False
        Whether the model is a landmark model (it then needs ``samples`` with visit times).

    Returns
    -------
    pandas.DataFrame
        ``sample_id`` (and, from the sheet, ``subject_id`` and ``visit_time``), then
        ``modality:feature`` columns (text features as strings) and the batch columns; a sample
        absent from a modality's file has NaN there.
    """
    matrices = {}
    for modality, path in files.items():
        spec = contract[modality]
        matrices[modality] = read_matrix(
            path,
            orientation=spec.get("orientation", "samples_in_rows"),
            id_column=spec.get("id_column", "sample_id"),
            allow_text=bool(spec.get("text_features")),
        )
    sample_ids = list(dict.fromkeys(s for m in matrices.values() for s in m.sample_ids))
    blocks = []
    for modality, matrix in matrices.items():
        block = modality_frame(matrix).reindex(sample_ids)
        block.columns = qualified_names(modality, block.columns.tolist())
        blocks.append(block)
    frame = pd.concat(blocks, axis=1)
    batch_columns = list(
        dict.fromkeys(s["batch_column"] for s in contract.values() if s.get("batch_column"))
    )
    if longitudinal and samples is None:
        msg = "this is a longitudinal (landmark) model: give the new patients' sample sheet with --samples (columns sample_id, subject_id, visit_time)."
        raise InputError(msg)
    if batch_columns and samples is None:
        logger.warning(
            "modalities %s correct batch effects but no --samples sheet gives the batch "
            "labels (columns %s); every sample counts as an unseen batch",
            [m for m, s in contract.items() if s.get("batch_column")],
            batch_columns,
        )
    if samples is not None and (longitudinal or batch_columns):
        sheet = read_sample_sheet(samples, batch_columns=tuple(batch_columns)).to_pandas()
        sheet = sheet.set_index("sample_id")
        if longitudinal:
            if "visit_time" not in sheet:
                msg = f"{samples}: no 'visit_time' column; a longitudinal model needs the time of every visit."
                raise InputError(msg)
            unknown = pd.Index(sample_ids).difference(sheet.index)
            if len(unknown):
                msg = f"{samples}: sample(s) {unknown[:5].tolist()} of the input files are not in the sample sheet; add them with their subject_id and visit_time."
                raise InputError(msg)
        sheet = sheet.reindex(sample_ids)
        if longitudinal:
            frame.insert(0, "visit_time", sheet["visit_time"].to_numpy())
            frame.insert(0, "subject_id", sheet["subject_id"].to_numpy())
        for column in batch_columns:
            if column not in sheet:
                msg = f"{samples}: no batch column {column!r}; add each sample's batch label (the model corrects batch effects)."
                raise InputError(msg)
            frame[column] = sheet[column].to_numpy(dtype=object)
    frame.insert(0, "sample_id", sample_ids)
    return frame.reset_index(drop=True)


def load_model(model_uri: str, *, tracking_uri: str | None = None) -> Any:
    """Load a registered model (``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a path)."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri)


def model_metadata(model: Any) -> dict[str, Any]:
    """The omics-ml metadata of a loaded pyfunc model (task, input contract, head)."""
    return dict(model.metadata.metadata or {})


def read_model_inputs(
    model: Any, inputs: Sequence[str], *, samples: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """The raw input table of the new patients in ``inputs``, read as the model was trained."""
    metadata = model_metadata(model)
    contract = metadata.get("input_contract")
    if not contract:
        msg = "the model has no input_contract in its metadata; it was not logged by omics-ml."
        raise InputError(msg)
    files = find_input_files(inputs, list(contract))
    absent = [m for m in contract if m not in files]
    if absent:
        logger.warning("no file for modality %s: predicting without it", ", ".join(absent))
    return read_raw_inputs(
        files, contract, samples=samples, longitudinal=bool(metadata.get("longitudinal"))
    )


def predict_files(
    model: Any, inputs: Sequence[str], *, samples: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """Predict every patient found in the raw ``inputs`` with a loaded pyfunc model.

    ``samples`` is the new samples' sheet: batch labels of batch-corrected modalities, and
    subject ids and visit times for longitudinal models. Survival models return each
    patient's risk at the horizons and survival curve; regression models the value with its
    interval; longitudinal models one row per landmark the patient's visits reached.
    """
    return model.predict(read_model_inputs(model, inputs, samples=samples))
