"""Job resources of the workflow's rules: memory scaled from the size of a job's inputs.

A cluster job asks the scheduler for memory up front; too little and SLURM kills it
(``OUT_OF_MEMORY``), too much and it waits longer in the queue and wastes the allocation. The
rules' ``mem_mb`` therefore grows with the bytes the job reads, times a factor measured for that
step (a float32 matrix in memory is about as large as its Parquet/h5ad file, and a step holds a
few copies of it while it transforms), plus a base for the Python process and its libraries. A
retried job (``--retries``) asks for more each attempt, so one that ran out of memory can
succeed on its second try.
"""

from __future__ import annotations

import math

__all__ = ["MEMORY_PROFILES", "MemoryProfile", "memory_mb"]


class MemoryProfile:
    """How a step's peak memory grows with its input size.

    Parameters
    ----------
    base_mb : int
        Memory of the process before it reads data (interpreter, numpy, polars, XGBoost...).
    per_input_mb : float
        Peak megabytes per megabyte of input files.
    """

    def __init__(self, base_mb: int, per_input_mb: float) -> None:
        if base_mb <= 0 or per_input_mb < 0:
            msg = f"base_mb must be > 0 and per_input_mb >= 0, got {base_mb} and {per_input_mb}."
            raise ValueError(msg)
        self.base_mb = base_mb
        self.per_input_mb = per_input_mb

    def __repr__(self) -> str:
        return f"MemoryProfile(base_mb={self.base_mb}, per_input_mb={self.per_input_mb})"


#: Per step: base and growth factor. Text inputs (CSV/TSV) are read into float32 arrays about
#: half their size; the training steps hold the raw matrix, each fold's transformed copy and
#: XGBoost's quantised matrix.
MEMORY_PROFILES: dict[str, MemoryProfile] = {
    "validate": MemoryProfile(base_mb=1000, per_input_mb=3.0),
    "normalise": MemoryProfile(base_mb=1000, per_input_mb=6.0),
    "integrate": MemoryProfile(base_mb=1000, per_input_mb=4.0),
    "train": MemoryProfile(base_mb=1500, per_input_mb=8.0),
    "evaluate": MemoryProfile(base_mb=1500, per_input_mb=4.0),
    "track": MemoryProfile(base_mb=2000, per_input_mb=4.0),
}


def memory_mb(input_mb: float, profile: MemoryProfile, *, attempt: int = 1) -> int:
    """Memory to request for a job, in MB, rounded up to a multiple of 100.

    Parameters
    ----------
    input_mb : float
        Total size of the job's input files in megabytes (Snakemake's ``input.size_mb``).
    profile : MemoryProfile
        The step's base and growth factor (:data:`MEMORY_PROFILES`).
    attempt : int, default=1
        Snakemake's attempt number: attempt ``k`` asks for ``k`` times the first request.

    Returns
    -------
    int
        Megabytes for the job's ``mem_mb`` resource.

    Raises
    ------
    ValueError
        If ``input_mb`` is negative or not finite, or ``attempt`` is below 1.
    """
    if not math.isfinite(input_mb) or input_mb < 0:
        msg = f"input_mb must be a finite size >= 0, got {input_mb!r}."
        raise ValueError(msg)
    if attempt < 1:
        msg = f"attempt must be >= 1, got {attempt!r}."
        raise ValueError(msg)
    need = (profile.base_mb + profile.per_input_mb * input_mb) * attempt
    return int(math.ceil(need / 100.0) * 100)
