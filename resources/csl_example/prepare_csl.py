"""Make the bundled CSL1 example from the liver cirrhosis trial (prednisone vs placebo; SurvSet export).

Reads ``csl.parquet`` (SurvSet's export of the ``csl`` data of the R package timereg: 446 patients
of the Copenhagen Study Group for Liver Diseases trial of prednisone against placebo, the
prothrombin index measured at repeated visits, death) from ``--source``. The table is in the
counting-process layout (one row per visit interval ``[time, time2)`` in years, death flagged
on the last interval); it is split with :func:`omics_ml.interval_data.split_interval_table` into,
beside this script:

- ``samples.csv``: one sample per visit (``sample_id`` = ``<patient>_t<visit time in years, at
  most 4 decimals>``, ``subject_id``, ``visit_time`` in years);
- ``outcomes.csv``: per patient, ``time`` to death or censoring (years) and ``event`` (1 = death);
- ``prothrombin.csv``: the prothrombin index measured AT each visit (see below);
- ``baseline.csv``: ``treatment`` (prednisone/placebo), ``sex`` (female/male) and ``age`` (years
  at entry), fixed at entry and repeated at every visit;
- ``new_patients/``: 6 patients, drawn with a seeded generator (seed 7) among those with at least
  4 visits in the first 2 years, one of them in the second year, REMOVED from the files above
  (``samples.csv``, ``prothrombin.csv``, ``baseline.csv`` and ``truth.csv`` with their outcome,
  for documentation only), so that they stay unseen.

Which prothrombin value belongs to which visit: in timereg's ``csl`` each row's ``prot`` is
measured at the row's END (its ``time`` column equals ``rt``), and ``prot.prev`` is the value
measured at the row's start (for the first row, ``prot.base``, the value at entry). SurvSet keeps
``lt``/``rt`` as ``time``/``time2`` but moves the last row's end to the death or censoring time
(and drops timereg's ``time``). So the value measured at a row's start ``time`` is
``num_prot_prev``, not ``num_prot``: ``num_prot`` of a row is the NEXT visit's value (and on a
patient's last row, a value taken at a time the export no longer holds, shortly before death or
censoring). Using ``num_prot`` at ``time`` would put a later measurement at an earlier visit and
leak the future into landmark features, so this script takes ``num_prot_prev`` and drops each
patient's final measurement (whose time is unknown). :func:`check_layout` verifies the chain
(``num_prot_prev`` of the first row = ``num_prot_base``, of every later row = the previous row's
``num_prot``; intervals contiguous) before anything is written.

The output is deterministic: running the script again rewrites the same bytes.

Run from the repository root::

    python resources/csl_example/prepare_csl.py --source path/to/survset
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from omics_ml.interval_data import IntervalCohort, split_interval_table, write_example

HERE = Path(__file__).resolve().parent
SEED = 7
N_NEW = 6
EARLY_YEARS = 2.0  # held-out patients: seen at least MIN_EARLY_VISITS times up to this time
MIN_EARLY_VISITS = 4  # entry and three follow-up visits
# timereg's help page for csl: treat 0 = active treatment of prednisone, 1 = placebo;
# sex 0 = female, 1 = male; age = age at inclusion minus 60.
TREATMENT = {0: "prednisone", 1: "placebo"}
SEX = {0: "female", 1: "male"}
AGE_OFFSET = 60.0
MODALITIES = {"prothrombin": ["prothrombin"], "baseline": ["treatment", "sex", "age"]}
ID_DECIMALS = 4  # visits are whole days (day / 365): 4 decimals keep distinct days distinct


def check_layout(frame: pl.DataFrame, source: str) -> None:
    """Check that ``num_prot_prev`` is the value at each row's start ``time`` (see module doc).

    Raises
    ------
    SystemExit
        Naming the first offending patients, if a patient's intervals are not contiguous from
        0, the first row's ``num_prot_prev`` is not ``num_prot_base``, a later row's is not the
        previous row's ``num_prot``, a per-patient covariate changes, or a code is not 0/1.
    """
    ordered = frame.with_row_index("row").sort(["pid", "time"])
    first = pl.int_range(pl.len()).over("pid") == 0
    previous = pl.col("num_prot").shift(1).over("pid")
    previous_stop = pl.col("time2").shift(1).over("pid")
    problems = {
        "first interval does not start at 0": first & (pl.col("time") != 0),
        "interval does not start where the previous one stopped": ~first
        & (pl.col("time") != previous_stop),
        "first num_prot_prev is not num_prot_base": first
        & (pl.col("num_prot_prev") != pl.col("num_prot_base")),
        "num_prot_prev is not the previous row's num_prot": ~first
        & (pl.col("num_prot_prev") != previous),
    }
    for column in ("num_age", "num_prot_base", "fac_sex", "fac_treat"):
        problems[f"{column} changes within a patient"] = pl.col(column).n_unique().over("pid") > 1
    for column in ("fac_sex", "fac_treat"):
        problems[f"{column} is not coded 0/1"] = ~pl.col(column).is_in([0, 1])
    for problem, mask in problems.items():
        bad = ordered.filter(mask)["pid"].unique(maintain_order=True).to_list()
        if bad:
            msg = f"{source}: {problem} for patient(s) {bad[:5]}; the layout is not timereg's csl."
            raise SystemExit(msg)


def _visit_label(time: float) -> str:
    """``0.243835616`` -> ``"0.2438"``, ``0.0`` -> ``"0"``, ``1.1`` -> ``"1.1"``."""
    return f"{time:.{ID_DECIMALS}f}".rstrip("0").rstrip(".")


def build(source: Path) -> IntervalCohort:
    """Read the SurvSet table and split it into samples, outcomes and visit covariates."""
    path = source / "csl.parquet"
    frame = pl.read_parquet(path)
    check_layout(frame, str(path))
    cohort = split_interval_table(
        frame, subject="pid", start="time", stop="time2", event="event", source=str(path)
    )
    # readable sample ids: <patient>_t<visit time in years, at most 4 decimals>
    samples = cohort.samples
    new_ids = [
        f"{subject}_t{_visit_label(time)}"
        for subject, time in zip(samples["subject_id"], samples["visit_time"], strict=True)
    ]
    if len(set(new_ids)) != len(new_ids):
        msg = f"{path}: visit times closer than 1e-{ID_DECIMALS} years within a patient."
        raise SystemExit(msg)
    renamed = dict(zip(samples["sample_id"], new_ids, strict=True))
    samples = samples.with_columns(pl.col("sample_id").replace_strict(renamed))
    visits = cohort.visits.select(
        pl.col("sample_id").replace_strict(renamed),
        pl.col("num_prot_prev").alias("prothrombin"),  # measured at the visit (module doc)
        pl.col("fac_treat").replace_strict(TREATMENT, return_dtype=pl.String).alias("treatment"),
        pl.col("fac_sex").replace_strict(SEX, return_dtype=pl.String).alias("sex"),
        (pl.col("num_age") + AGE_OFFSET).round(2).alias("age"),
    )
    return IntervalCohort(samples=samples, outcomes=cohort.outcomes, visits=visits)


def eligible_subjects(samples: pl.DataFrame) -> list[str]:
    """Subjects with >= MIN_EARLY_VISITS visits up to EARLY_YEARS, one after year 1; cohort order."""
    early = (
        samples.filter(pl.col("visit_time") <= EARLY_YEARS)
        .group_by("subject_id", maintain_order=True)
        .agg(
            pl.len().alias("n"),
            (pl.col("visit_time") > EARLY_YEARS - 1.0).any().alias("second_year"),
        )
    )
    keep = (pl.col("n") >= MIN_EARLY_VISITS) & pl.col("second_year")
    return early.filter(keep)["subject_id"].to_list()


def main(argv: list[str] | None = None) -> None:
    """Write the example files and the held-out new patients."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="folder holding SurvSet's csl.parquet"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args(argv)

    cohort = build(args.source)
    candidates = eligible_subjects(cohort.samples)
    train, new = write_example(
        cohort, args.out, candidates=candidates, n_new=N_NEW, seed=SEED, modalities=MODALITIES
    )
    events = int(train.outcomes["event"].sum())
    print(
        f"csl: {train.outcomes.height} training patients ({events} deaths), "
        f"{train.samples.height} visits; {len(candidates)} eligible, new patients: {new}"
    )


if __name__ == "__main__":
    main()
