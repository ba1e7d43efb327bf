"""Make the SIMULATED RNA-seq count modality of the bundled example (``rnaseq.tsv``).

The TCGA breast subset ships no raw counts, so this script simulates them, seeded, from the real
mRNA values of the same patients: each of the 200 real genes gets a negative-binomial count whose
mean follows the patient's measured expression (``2 ** mrna``), joined by 300 uninformative
background genes (``BG0001``...), 10 of them very highly expressed, and 5 genes never detected.
Library sizes vary 8-fold between patients and a third of the patients carry a composition shift
(the ten highest background genes doubled), the situation TMM and median-of-ratios correct.
The counts are therefore realistic in shape, but they are not real measurements.

Run from the repository root: ``python resources/example/simulate_rnaseq_counts.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
SEED = 20261125
N_BACKGROUND = 300
N_HIGH = 10
N_UNDETECTED = 5
DISPERSION = 0.15


def simulate(mrna: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Counts (genes x samples) for the samples (rows) of ``mrna``."""
    n = len(mrna)
    genes = [*mrna.columns, *(f"BG{i:04d}" for i in range(1, N_BACKGROUND + N_UNDETECTED + 1))]
    background = rng.normal(5.0, 1.5, size=N_BACKGROUND)
    background[:N_HIGH] += 7.0
    base = np.column_stack(
        [
            mrna.to_numpy(),
            np.broadcast_to(background, (n, N_BACKGROUND)) + rng.normal(0, 0.3, (n, N_BACKGROUND)),
            np.full((n, N_UNDETECTED), -np.inf),
        ]
    )
    shifted = rng.random(n) < 1 / 3
    base[shifted, mrna.shape[1] : mrna.shape[1] + N_HIGH] += 1.0
    proportions = np.exp2(base)
    proportions /= proportions.sum(axis=1, keepdims=True)
    library = np.exp(rng.normal(np.log(4e6), 0.6, size=n))
    mean = proportions * library[:, None]
    size = 1.0 / DISPERSION
    counts = rng.negative_binomial(size, size / (size + mean))
    return pd.DataFrame(counts.T, index=pd.Index(genes, name="gene_id"), columns=mrna.index)


def main() -> None:
    """Write ``rnaseq.tsv`` for the training and the new patients."""
    rng = np.random.default_rng(SEED)
    for folder in (HERE, HERE / "new_patients"):
        mrna = pd.read_csv(folder / "mrna.csv", index_col="sample_id")
        simulate(mrna, rng).to_csv(folder / "rnaseq.tsv", sep="\t")


if __name__ == "__main__":
    main()
