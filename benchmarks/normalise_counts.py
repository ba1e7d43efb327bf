"""Benchmark: library-size normalisation of a large RNA-seq count matrix.

Normalises one seeded negative-binomial count matrix (default 2,000 samples x 20,000 genes,
int32) with omics-ml's TMM and median-of-ratios, and in the same run with the reference tools on
the same matrix: pydeseq2's ``deseq2_norm`` (median-of-ratios) and, where R with edgeR is
installed (Debian: ``apt-get install r-bioc-edger``), edgeR's ``calcNormFactors(method="TMM")``.
Prints seconds (best of ``--repeat``), peak memory and the agreement of the factors.

Peak memory of the Python methods is the peak of Python-tracked allocations (``tracemalloc``,
which numpy reports to) during the call, on top of the input matrix; it is compared with the size
of the matrix as float32. edgeR's time is measured inside R around ``calcNormFactors`` only.

Run: ``python benchmarks/normalise_counts.py [--samples 2000 --genes 20000 --repeat 3]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydeseq2.preprocessing import deseq2_norm

from omics_ml.transforms.counts import median_of_ratios_size_factors, tmm_norm_factors


def simulate_counts(n_samples: int, n_genes: int, seed: int) -> np.ndarray:
    """Seeded NB counts with 8-fold library-size spread and composition shifts."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(mean=3.0, sigma=2.0, size=n_genes)
    proportions = base / base.sum()
    library = rng.lognormal(np.log(2e7), 0.5, size=n_samples)
    shift = np.ones((n_samples, 1))
    shifted = rng.random(n_samples) < 1 / 3
    counts = np.empty((n_samples, n_genes), dtype=np.int32)
    top = np.argsort(-base)[:20]
    for start in range(0, n_samples, 250):  # chunks of samples keep the float64 means small
        stop = min(start + 250, n_samples)
        mean = library[start:stop, None] * proportions[None, :] * shift[start:stop]
        mean[np.ix_(shifted[start:stop], top)] *= 3.0
        size = 5.0
        counts[start:stop] = rng.negative_binomial(size, size / (size + mean))
    return counts


def measure(func: Callable[[], Any], repeat: int) -> tuple[float, int, Any]:
    """Best wall time over ``repeat`` calls, peak traced bytes of one call, the result."""
    tracemalloc.start()
    result = func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times), peak, result


def run_edger(counts: np.ndarray, repeat: int) -> tuple[float, np.ndarray] | None:
    """edgeR TMM factors and best time inside R, or None without Rscript/edgeR."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        matrix = Path(tmp) / "counts.bin"
        # C-order samples x genes is R's column-major genes x samples: no transpose needed
        np.ascontiguousarray(counts).astype("<i4").tofile(matrix)
        out = Path(tmp) / "factors.txt"
        script = f"""
suppressMessages(library(edgeR))
n <- {counts.shape[0]}; g <- {counts.shape[1]}
con <- file("{matrix}", "rb"); x <- readBin(con, "integer", n * g, size = 4); close(con)
dim(x) <- c(g, n)
best <- Inf
for (i in seq_len({repeat})) {{
  t <- system.time(f <- calcNormFactors(x, method = "TMM"))[["elapsed"]]
  best <- min(best, t)
}}
writeLines(c(format(best, digits = 10), format(f, digits = 17)), "{out}")
"""
        result = subprocess.run(
            ["Rscript", "-e", script], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            print(f"edgeR run failed: {result.stderr.strip()[:300]}")
            return None
        lines = out.read_text().split()
        return float(lines[0]), np.asarray(lines[1:], dtype=np.float64)


def main() -> None:
    """Run the benchmark and print a results table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    counts = simulate_counts(args.samples, args.genes, args.seed)
    float32_mb = counts.shape[0] * counts.shape[1] * 4 / 2**20
    print(
        f"matrix: {counts.shape[0]} samples x {counts.shape[1]} genes, int32 "
        f"({counts.nbytes / 2**20:.0f} MiB; as float32 {float32_mb:.0f} MiB)"
    )
    rows: list[tuple[str, float, float | None]] = []

    t_tmm, peak_tmm, tmm = measure(lambda: tmm_norm_factors(counts)[0], args.repeat)
    rows.append(("omics-ml TMM", t_tmm, peak_tmm / 2**20))
    t_mor, peak_mor, mor = measure(
        lambda: median_of_ratios_size_factors(counts, type="ratio")[0], args.repeat
    )
    rows.append(("omics-ml median-of-ratios", t_mor, peak_mor / 2**20))

    t_py, peak_py, (_, py_factors) = measure(lambda: deseq2_norm(counts), args.repeat)
    rows.append(("pydeseq2 deseq2_norm", t_py, peak_py / 2**20))

    edger = run_edger(counts, args.repeat)
    if edger is not None:
        rows.append(("edgeR calcNormFactors TMM (in R)", edger[0], None))

    print(f"\n{'method':36s} {'seconds':>9s} {'peak MiB':>9s} {'x float32':>9s}")
    for name, seconds, peak in rows:
        peak_txt = (
            f"{peak:9.0f} {peak / float32_mb:9.2f}" if peak is not None else f"{'-':>9s} {'-':>9s}"
        )
        print(f"{name:36s} {seconds:9.3f} {peak_txt}")

    print(
        f"\nmedian-of-ratios vs pydeseq2: {t_py / t_mor:.1f}x faster; max relative difference "
        f"of size factors {np.max(np.abs(mor / py_factors - 1)):.1e}"
    )
    if edger is not None:
        print(
            f"TMM vs edgeR: {edger[0] / t_tmm:.1f}x faster; max relative difference of factors "
            f"{np.max(np.abs(tmm / edger[1] - 1)):.1e}"
        )
    else:
        print("edgeR not run: install R and edgeR (Debian: apt-get install r-bioc-edger).")


if __name__ == "__main__":
    main()
