"""Make the bundled survival example from the gse1992 breast cancer cohort (SurvSet export).

Reads ``gse1992.parquet`` (SurvSet's export of GEO GSE1992 as distributed by the R package
survJamda.data: 124 tumours, 15,528 genes, relapse-free survival in months) from ``--source`` and
writes, beside this script:

- ``samples.csv``, ``outcomes.csv``: sample sheet and relapse-free survival (``time`` in months,
  ``event`` 1 = relapse or death of disease);
- ``expression.parquet``: the 1,000 genes of largest variance across all 124 arrays (float32,
  named without SurvSet's ``num_HS_`` prefix). The choice is unsupervised: it never looks at the
  outcome;
- ``clinical.csv``: age, size class, ER status, node status and grade (text categories);
- ``new_patients/``: 8 patients drawn with a seeded generator (seed 7) and REMOVED from the files
  above (``expression.parquet``, ``clinical.csv``, ``samples.csv``, and ``truth.csv`` with their
  outcome, for documentation only), so that they stay unseen by training.

The output is deterministic: running the script again rewrites the same bytes.

Run from the repository root::

    python resources/survival_example/prepare_gse1992.py --source /path/to/survset
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from omics_ml.interval_data import IntervalCohort, split_interval_table, write_cohort

HERE = Path(__file__).resolve().parent
SEED = 7
N_GENES = 1000
N_NEW = 8
GENE_PREFIX = "num_HS_"
CLINICAL = {
    "num_age": "age",
    "num_size": "size",
    "fac_er_positive": "er_positive",
    "fac_node_status": "node_status",
    "fac_grade": "grade",
}
MISSING = "missing"  # SurvSet's level for a missing categorical value


def top_variance_genes(visits: pl.DataFrame, n: int) -> list[str]:
    """The ``n`` gene columns of largest sample variance, in their original column order.

    Ties are broken by column name, so the choice is deterministic. Only expression values are
    used, never the outcome.
    """
    genes = [c for c in visits.columns if c.startswith(GENE_PREFIX)]
    variance = (
        visits.select(pl.col(genes).cast(pl.Float64).var(ddof=1))
        .unpivot(variable_name="gene", value_name="variance")
        .sort(["variance", "gene"], descending=[True, False])
    )
    chosen = set(variance["gene"].head(n).to_list())
    return [g for g in genes if g in chosen]


def build(source: Path) -> IntervalCohort:
    """Read the SurvSet table and shape it into the bundled layout (all 124 subjects)."""
    path = source / "gse1992.parquet"
    frame = pl.read_parquet(path)
    cohort = split_interval_table(
        frame, subject="pid", start="time", event="event", source=str(path)
    )
    genes = top_variance_genes(cohort.visits, N_GENES)
    visits = cohort.visits.select(
        "sample_id",
        *(pl.col(g).cast(pl.Float32).alias(g.removeprefix(GENE_PREFIX)) for g in genes),
        *(
            pl.col(old).cast(pl.String).replace(MISSING, None).alias(new)
            if old.startswith("fac_")
            else pl.col(old).alias(new)
            for old, new in CLINICAL.items()
        ),
    )
    # cross-sectional: one sample per subject, so the sample sheet needs no visit_time
    samples = cohort.samples.select("sample_id", "subject_id")
    return IntervalCohort(samples=samples, outcomes=cohort.outcomes, visits=visits)


def main(argv: list[str] | None = None) -> None:
    """Write the example files and the held-out new patients."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="folder holding SurvSet's gse1992.parquet"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args(argv)

    cohort = build(args.source)
    subjects = cohort.outcomes["subject_id"].to_numpy()
    rng = np.random.default_rng(SEED)
    new = subjects[np.sort(rng.choice(subjects.size, size=N_NEW, replace=False))].tolist()
    modalities = {
        "expression": [c for c in cohort.visits.columns[1:] if c not in CLINICAL.values()],
        "clinical": list(CLINICAL.values()),
    }
    train = cohort.subset(new, exclude=True)
    write_cohort(train, args.out, modalities=modalities, parquet=["expression"])
    write_cohort(
        cohort.subset(new),
        args.out / "new_patients",
        modalities=modalities,
        parquet=["expression"],
        outcomes_file="truth.csv",
    )
    events = int(train.outcomes["event"].sum())
    print(
        f"gse1992: {train.outcomes.height} training subjects ({events} events), "
        f"{len(modalities['expression'])} genes; new patients: {new}"
    )


if __name__ == "__main__":
    main()
