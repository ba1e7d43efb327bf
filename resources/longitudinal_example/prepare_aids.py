"""Make the bundled longitudinal example from the aids (ddI vs ddC) trial (SurvSet export).

Reads ``aids.parquet`` (SurvSet's export of the ``aids`` data of the R package JM: 467 HIV
patients, CD4 measured at visits 0/2/6/12/18 months, death) from ``--source``. The table is in
the counting-process layout (one row per visit interval ``[time, time2)``, death flagged on the
last interval); it is split with :func:`omics_ml.interval_data.split_interval_table` into,
beside this script:

- ``samples.csv``: one sample per visit (``sample_id``, ``subject_id``, ``visit_time`` in months);
- ``outcomes.csv``: per patient, ``time`` to death or censoring (months) and ``event`` (1 = death);
- ``cd4.csv``: ``CD4`` at each visit (as distributed by JM: the square root of the CD4 count);
- ``baseline.csv``: ``drug``, ``gender``, ``prevOI``, ``AZT``, fixed at entry and repeated at
  every visit;
- ``new_patients/``: 6 patients, drawn with a seeded generator (seed 7) among those seen at
  months 6 and 12, REMOVED from the files above (``samples.csv``, ``cd4.csv``, ``baseline.csv``
  and ``truth.csv`` with their outcome, for documentation only), so that they stay unseen.

The output is deterministic: running the script again rewrites the same bytes.

Run from the repository root::

    python resources/longitudinal_example/prepare_aids.py --source /path/to/survset
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from omics_ml.interval_data import IntervalCohort, split_interval_table, write_example

HERE = Path(__file__).resolve().parent
SEED = 7
N_NEW = 6
REQUIRED_VISITS = (6.0, 12.0)  # months a held-out patient must have been seen at
RENAME = {
    "num_CD4": "CD4",
    "fac_drug": "drug",
    "fac_gender": "gender",
    "fac_prevOI": "prevOI",
    "fac_AZT": "AZT",
}
MODALITIES = {"cd4": ["CD4"], "baseline": ["drug", "gender", "prevOI", "AZT"]}


def build(source: Path) -> IntervalCohort:
    """Read the SurvSet table and split it into samples, outcomes and visit covariates."""
    path = source / "aids.parquet"
    frame = pl.read_parquet(path)
    cohort = split_interval_table(
        frame, subject="pid", start="time", stop="time2", event="event", source=str(path)
    )
    visits = cohort.visits.rename(RENAME)
    return IntervalCohort(samples=cohort.samples, outcomes=cohort.outcomes, visits=visits)


def eligible_subjects(samples: pl.DataFrame) -> list[str]:
    """Subjects with a visit at every month of :data:`REQUIRED_VISITS`, in cohort order."""
    seen = (
        samples.filter(pl.col("visit_time").is_in(list(REQUIRED_VISITS)))
        .group_by("subject_id", maintain_order=True)
        .agg(pl.col("visit_time").n_unique().alias("n"))
    )
    return seen.filter(pl.col("n") == len(REQUIRED_VISITS))["subject_id"].to_list()


def main(argv: list[str] | None = None) -> None:
    """Write the example files and the held-out new patients."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="folder holding SurvSet's aids.parquet"
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
        f"aids: {train.outcomes.height} training patients ({events} deaths), "
        f"{train.samples.height} visits; new patients: {new}"
    )


if __name__ == "__main__":
    main()
