"""Cohort-scale benchmark: seconds and peak memory per workflow stage, next to two references.

Sizes (``--size``):

- ``S``: 500 subjects x 3 visits, 5,000 genes + 500 proteins + 200 metabolites, classification
  at a landmark (the CI-sized check);
- ``M``: 5,000 samples x 20,000 genes + 3,000 proteins + 1,000 metabolites, classification;
- ``L``: 50,000 subjects x 3,000 proteins + 50 clinical covariates, survival (biobank
  proteomics).

One run simulates the cohort (``omics_ml.simulate``), runs the whole workflow on it with
``snakemake --cores 2`` and reads every job's seconds and peak RSS from the rules'
``benchmark:`` files. On the same data, in the same run, it then times:

- **pandas + scikit-learn**: a straightforward implementation of validate / normalise /
  integrate with the same steps (fitted on the same development samples), the code a user
  would otherwise write; printed as the ratio ours / reference;
- **XGBoost alone**: every booster the workflow trains (each fold's and the final model's
  early-stopping fit and refit), rebuilt with ``xgboost.train`` on the model's own design
  matrix with the same parameters and rounds; printed as the ratio of the whole workflow's
  time to this pure training time (the overhead the pipeline adds).

The evaluation extras that train further models (linear baseline, permuted-label control,
modality value) are switched off: they multiply training and have no counterpart in the
XGBoost reference.

    python benchmarks/cohort_scale.py --size S --workdir /tmp/scale_S
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]

SIZES: dict[str, dict[str, Any]] = {
    "S": {
        "n_subjects": 500,
        "n_visits": 3,
        "features": {"rnaseq": 5000, "proteomics": 500, "metabolomics": 200},
        "task": "classification",
    },
    "M": {
        "n_subjects": 5000,
        "n_visits": 1,
        "features": {"rnaseq": 20000, "proteomics": 3000, "metabolomics": 1000},
        "task": "classification",
    },
    "L": {
        "n_subjects": 50000,
        "n_visits": 1,
        "features": {"proteomics": 3000},
        "n_covariates": 46,  # + age, sex, BMI, arm = 50 clinical covariates
        "task": "survival",
    },
}

#: Evaluation extras off: each trains further models outside the XGBoost reference.
OVERRIDES: dict[str, Any] = {
    "evaluate": {"baseline": False, "permuted_control": False, "modality_value": False},
}

#: Workflow stages in the order of the table; each is a rule (or the rules of a pattern).
STAGES = [
    ("validate", "validate_inputs"),
    ("split", "split_cohort"),
    ("normalise", "normalise_modality"),
    ("integrate", "integrate_features"),
    ("one fold's training (slowest)", "train_fold"),
    ("aggregate", "aggregate_folds"),
    ("compare (each modality missing at prediction)", "compare_variants"),
    ("final model", "train_final"),
    ("explain", "explain_model"),
    ("track (log_run)", "log_run"),
    ("register", "register_model"),
    ("report", "report_html"),
]


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the run ----------------------------------------------------------------------------


def simulate(size: str, data: Path, seed: int) -> dict[str, Any]:
    from omics_ml.simulate import SimulationSpec, simulate_cohort

    spec = SimulationSpec(**SIZES[size], seed=seed)
    return simulate_cohort(data, spec)


def run_workflow(workdir: Path, configs: list[Path]) -> float:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    cmd += ["--directory", str(workdir), "--cores", "2", "--configfile", *map(str, configs)]
    start = time.monotonic()
    with open(workdir / "snakemake.log", "w") as log:
        code = subprocess.run(
            cmd, check=False, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    if code != 0:
        sys.exit(f"the workflow failed; see {workdir / 'snakemake.log'}")
    return time.monotonic() - start


def job_records(workdir: Path) -> pd.DataFrame:
    """One row per job: rule, job name, seconds and peak RSS (MiB) from the benchmark files."""
    rows = []
    root = workdir / "results" / "benchmarks"
    for tsv in sorted(root.rglob("*.tsv")):
        record = pd.read_csv(tsv, sep="\t").iloc[-1]
        rule = tsv.parent.name if tsv.parent != root else tsv.stem
        rows.append(
            {
                "rule": rule,
                "job": f"{rule}[{tsv.stem}]" if tsv.parent != root else rule,
                "seconds": float(record["s"]),
                "max_rss": float(record["max_rss"]),
            }
        )
    return pd.DataFrame(rows)


def matrix_sizes(workdir: Path, data: Path) -> dict[str, float]:
    """float32 MiB of each modality's raw matrix and of the integrated matrix."""
    import anndata as ad
    import pyarrow.parquet as pq

    config = yaml.safe_load((data / "config.yaml").read_text())
    sizes = {}
    for name, spec in config["modalities"].items():
        meta = pq.ParquetFile(spec["path"]).metadata
        sizes[name] = meta.num_rows * (meta.num_columns - 1) * 4 / 2**20
    features = ad.read_h5ad(workdir / "results" / "integrate" / "features.h5ad", backed="r")
    sizes["integrated"] = features.n_obs * features.n_vars * 4 / 2**20
    sizes["integrated_shape"] = (features.n_obs, features.n_vars)
    features.file.close()
    return sizes


# --- reference 1: pandas + scikit-learn validate / normalise / integrate ----------------


def _tmm_factors(counts: pd.DataFrame, dev: pd.Index) -> pd.Series:
    """edgeR's TMM (logratio trim 0.3, sum trim 0.05, weighted), reference from dev samples."""
    lib = counts.sum(axis=1)
    cpm = counts.div(lib, axis=0)
    upper = cpm.loc[dev].quantile(0.75, axis=1)
    ref_id = (upper - upper.mean()).abs().idxmin()
    ref, ref_lib = counts.loc[ref_id], lib[ref_id]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.log2(cpm)
        log_r = np.log2(ref / ref_lib)
        m = log_p - log_r
        a = 0.5 * (log_p + log_r)
        w = (1.0 / counts - 1.0 / lib.to_numpy()[:, None]) + (1.0 / ref - 1.0 / ref_lib)
    finite = np.isfinite(m) & np.isfinite(a) & (counts > 0) & (ref > 0)
    m, a, w = m.where(finite), a.where(finite), w.where(finite)
    n = finite.sum(axis=1)
    rank_m, rank_a = m.rank(axis=1), a.rank(axis=1)
    lo_m, hi_m = np.floor(n * 0.3) + 1, n + 1 - np.floor(n * 0.3)
    lo_a, hi_a = np.floor(n * 0.05) + 1, n + 1 - np.floor(n * 0.05)
    keep = (
        rank_m.ge(lo_m, axis=0)
        & rank_m.le(hi_m, axis=0)
        & rank_a.ge(lo_a, axis=0)
        & rank_a.le(hi_a, axis=0)
    )
    factors = 2 ** ((m / w).where(keep).sum(axis=1) / (1.0 / w).where(keep).sum(axis=1))
    return factors / np.exp(np.log(factors.loc[dev]).mean())


def _normalise_counts(counts: pd.DataFrame, dev: pd.Index) -> pd.DataFrame:
    lib = counts.loc[dev].sum(axis=1)
    cutoff = 10 / lib.median() * 1e6
    n_dev = len(dev)
    min_samples = n_dev if n_dev <= 10 else 10 + (n_dev - 10) * 0.7
    cpm = counts.loc[dev].div(lib, axis=0) * 1e6
    keep = ((cpm >= cutoff).sum() >= min_samples - 1e-14) & (counts.loc[dev].sum() >= 15)
    counts = counts.loc[:, keep]
    effective = counts.sum(axis=1) * _tmm_factors(counts, dev)
    prior = 2.0 * effective / effective.loc[dev].mean()
    return np.log2(counts.add(prior, axis=0).div(effective + 2 * prior, axis=0) * 1e6)


def _normalise_proteomics(values: pd.DataFrame, dev: pd.Index) -> pd.DataFrame:
    values = values.loc[:, values.loc[dev].notna().mean() >= 0.5]
    values = values.fillna(values.loc[dev].min() / 2)
    logged = np.log2(values)
    return logged.sub(logged.median(axis=1), axis=0)


def _normalise_metabolomics(values: pd.DataFrame, dev: pd.Index) -> pd.DataFrame:
    values = values.loc[:, values.loc[dev].isna().mean() <= 0.5]
    reference = values.loc[dev].median()
    dilution = values.div(reference, axis=1).median(axis=1)
    values = values.div(dilution, axis=0)
    lam = float(np.nanmin(values.loc[dev].to_numpy()) ** 2)
    return np.log2((values + np.sqrt(values**2 + lam)) / 2)


def _normalise_clinical(values: pd.DataFrame, dev: pd.Index) -> pd.DataFrame:
    from sklearn.impute import SimpleImputer

    encoded = pd.get_dummies(values, dtype=np.float32)
    imputer = SimpleImputer(strategy="median").fit(encoded.loc[dev])
    return pd.DataFrame(imputer.transform(encoded), index=encoded.index, columns=encoded.columns)


NORMALISERS = {
    "rnaseq_counts": _normalise_counts,
    "proteomics": _normalise_proteomics,
    "metabolomics": _normalise_metabolomics,
    "clinical": _normalise_clinical,
}


def reference_pipeline(data: Path, splits: Path, out: Path) -> dict[str, Any]:
    """Validate, normalise (fit on development samples) and integrate with pandas + sklearn."""
    config = yaml.safe_load((data / "config.yaml").read_text())
    timings: dict[str, float] = {}
    start = time.monotonic()
    samples = pd.read_csv(config["cohort"]["samples"]).set_index("sample_id")
    outcomes = pd.read_csv(config["cohort"]["outcomes"])
    if samples.index.duplicated().any() or outcomes["subject_id"].duplicated().any():
        raise ValueError("duplicate ids")
    frames = {}
    for name, spec in config["modalities"].items():
        frame = pd.read_parquet(spec["path"]).set_index(spec["id_column"])
        if frame.index.duplicated().any() or not frame.index.isin(samples.index).all():
            raise ValueError(f"{name}: duplicate or unknown sample ids")
        numeric = frame.select_dtypes("number")
        if np.isinf(numeric.to_numpy()).any():
            raise ValueError(f"{name}: infinite values")
        if spec["type"] == "rnaseq_counts" and (numeric < 0).to_numpy().any():
            raise ValueError(f"{name}: negative counts")
        frames[name] = frame
    timings["validate"] = time.monotonic() - start

    start = time.monotonic()
    development = pd.Index(json.loads(splits.read_text())["development"])
    normalised = []
    for name, frame in frames.items():
        kind = config["modalities"][name]["type"]
        dev = frame.index.intersection(development)
        values = frame if kind == "clinical" else frame.astype(np.float64)
        block = NORMALISERS[kind](values, dev).astype(np.float32)
        normalised.append(block.add_prefix(f"{name}:"))
    timings["normalise"] = time.monotonic() - start

    start = time.monotonic()
    integrated = samples.join(pd.concat(normalised, axis=1), how="left")
    integrated.to_parquet(out)
    timings["integrate"] = time.monotonic() - start
    return {"seconds": timings, "shape": list(integrated.shape), "peak_rss_mb": peak_rss_mb()}


# --- reference 2: XGBoost alone -----------------------------------------------------------


def xgboost_reference(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Time every booster fit the workflow performs with ``xgboost.train`` alone."""
    import anndata as ad
    import xgboost as xgb

    from omics_ml.integrate import raw_input_frame
    from omics_ml.io import read_json
    from omics_ml.pipeline import OmicsPipeline
    from omics_ml.split import grouped_stratified_split
    from omics_ml.train import outcome_frame

    model = config.get("model") or {}
    n_estimators = int(model.get("n_estimators", 500))
    patience = int(model.get("early_stopping_rounds", 30))
    fraction = float(model.get("inner_validation_fraction", 0.2))
    seed = int(config.get("seed", 42))
    results = workdir / "results"
    adata = ad.read_h5ad(results / "integrate" / "features.h5ad")
    split = read_json(results / "split" / "splits.json")
    fits = [
        (f"fold_{k}", results / "train" / f"fold_{k}" / "model", fold["train"])
        for k, fold in enumerate(split["folds"])
    ]
    fits.append(("final", results / "final" / "model", split["development"]))
    records = []
    for name, directory, sample_ids in fits:
        pipeline = OmicsPipeline.load(directory)
        subset = adata[adata.obs_names.isin(sample_ids)]
        meta, features, outcome = pipeline.design(raw_input_frame(subset), outcome_frame(subset))
        head = pipeline.head
        groups = (
            meta["subject_id"].astype(str).to_numpy()
            if "subject_id" in meta
            else subset.obs["subject_id"].astype(str).to_numpy()
        )
        params = {**pipeline.info["xgboost_params"], "nthread": 2}
        n_rounds = int(pipeline.info["n_rounds"])
        max_bin = int(params["max_bin"])
        fit_idx, val_idx = grouped_stratified_split(
            head.strata(outcome), groups, fraction=fraction, seed=seed
        )
        start = time.monotonic()
        dtrain = xgb.QuantileDMatrix(
            features[fit_idx], **head.dmatrix_fields(outcome.take(fit_idx)), max_bin=max_bin
        )
        dval = xgb.QuantileDMatrix(
            features[val_idx],
            **head.dmatrix_fields(outcome.take(val_idx)),
            ref=dtrain,
            max_bin=max_bin,
        )
        xgb.train(
            params,
            dtrain,
            num_boost_round=min(n_estimators, n_rounds + patience),
            evals=[(dval, "inner_validation")],
            verbose_eval=False,
        )
        stop_s = time.monotonic() - start
        start = time.monotonic()
        dall = xgb.QuantileDMatrix(features, **head.dmatrix_fields(outcome), max_bin=max_bin)
        xgb.train(params, dall, num_boost_round=n_rounds, verbose_eval=False)
        refit_s = time.monotonic() - start
        records.append(
            {
                "fit": name,
                "rows": int(features.shape[0]),
                "features": int(features.shape[1]),
                "rounds": n_rounds,
                "early_stopping_s": stop_s,
                "refit_s": refit_s,
            }
        )
    return {"fits": records, "seconds": sum(r["early_stopping_s"] + r["refit_s"] for r in records)}


def _log_time(line: str) -> float:
    """Seconds of a log line's ``YYYY-mm-dd HH:MM:SS,mmm`` timestamp."""
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def xgboost_in_jobs(workdir: Path) -> float:
    """Seconds the training jobs spent fitting XGBoost, from their logs.

    Each fit logs a line when it starts (``XGBoost <objective> on ...``) and one when the
    refitted booster is done (``fitted ...``); the span covers the quantile matrices, the
    early-stopping fit and the refit, as the XGBoost-alone reference does.
    """
    total = 0.0
    logs = [
        *sorted((workdir / "logs" / "train_fold").glob("*.log")),
        workdir / "logs" / "train_final.log",
    ]
    for log in logs:
        start = None
        for line in log.read_text().splitlines():
            if " omics_ml.pipeline: XGBoost " in line:
                start = _log_time(line)
            elif " omics_ml.pipeline: fitted " in line and start is not None:
                total += _log_time(line) - start
                start = None
    return total


# --- the report ---------------------------------------------------------------------------


def _child(mode: str, workdir: Path, *, reuse: bool = False) -> dict[str, Any]:
    """Run one reference in a fresh process (its own peak RSS) and return its JSON.

    With ``reuse``, a reference that already ran in ``workdir`` is read instead.
    """
    out = workdir / f"{mode}.json"
    if reuse and out.exists():
        return json.loads(out.read_text())
    cmd = [sys.executable, __file__, "--child", mode, "--workdir", str(workdir)]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def stage_table(jobs: pd.DataFrame, sizes: dict[str, Any]) -> list[dict[str, Any]]:
    """Seconds and peak RSS per stage, with the float32 size of the matrix it handles."""
    rows = []
    largest_raw = max(v for k, v in sizes.items() if k not in ("integrated", "integrated_shape"))
    for label, rule in STAGES:
        mine = jobs[jobs["rule"] == rule]
        if mine.empty:
            continue
        if rule == "normalise_modality":
            for _, job in mine.sort_values("seconds", ascending=False).iterrows():
                modality = job["job"].split("[", 1)[1][:-1]
                rows.append(
                    {
                        "stage": f"normalise {modality}",
                        "seconds": job["seconds"],
                        "peak_rss_mb": job["max_rss"],
                        "matrix_mb": sizes[modality],
                    }
                )
            continue
        top = mine.loc[mine["seconds"].idxmax()]
        handles = rule not in (
            "split_cohort",
            "aggregate_folds",
            "compare_variants",
            "report_html",
            "register_model",
        )
        matrix = largest_raw if rule == "validate_inputs" else sizes["integrated"]
        rows.append(
            {
                "stage": label,
                "seconds": top["seconds"],
                "peak_rss_mb": mine["max_rss"].max(),
                "matrix_mb": matrix if handles else None,
            }
        )
    return rows


def report(summary: dict[str, Any]) -> str:
    sizes = summary["sizes"]
    n, p = sizes["integrated_shape"]
    min_rss = min(j["max_rss"] for j in summary["jobs"] if j["rule"] != "report_html")
    lines = [
        f"### {summary['size']}: {summary['description']}",
        "",
        f"Integrated matrix {n:,} samples x {p:,} features ({sizes['integrated']:.0f} MiB as "
        f"float32). Simulation {summary['simulate_s']:.0f} s (not counted). Whole workflow "
        f"{summary['workflow_s']:.0f} s (wall, 2 cores). The smallest job's peak, about what a "
        f"job's Python and libraries hold before any data: {min_rss:.0f} MiB.",
        "",
        "| stage | seconds | peak RSS MiB | float32 matrix MiB | peak / matrix |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in summary["stages"]:
        matrix = "-" if row["matrix_mb"] is None else f"{row['matrix_mb']:.1f}"
        ratio = "-"
        if row["matrix_mb"] is not None:
            ratio = f"{row['peak_rss_mb'] / row['matrix_mb']:.1f}"
        lines.append(
            f"| {row['stage']} | {row['seconds']:.1f} | {row['peak_rss_mb']:.0f} | {matrix} "
            f"| {ratio} |"
        )
    ours, ref = summary["ours_prepare_s"], summary["pandas"]["seconds"]
    ref_total = sum(ref.values())
    in_jobs = summary["xgboost_in_jobs_s"]
    lines += [
        "",
        "| comparison | omics-ml | reference | ratio |",
        "|---|---:|---:|---:|",
        f"| validate + normalise + integrate (s; ours = sum of the jobs) vs pandas + sklearn "
        f"| {ours:.1f} | {ref_total:.1f} | {ours / ref_total:.2f} |",
        f"| normalise + integrate (s) vs pandas + sklearn "
        f"| {summary['ours_norm_integrate_s']:.1f} | {ref['normalise'] + ref['integrate']:.1f} "
        f"| {summary['ours_norm_integrate_s'] / (ref['normalise'] + ref['integrate']):.2f} |",
        f"| peak RSS of validate..integrate (MiB) vs pandas + sklearn "
        f"| {summary['ours_prepare_rss']:.0f} | {summary['pandas']['peak_rss_mb']:.0f} "
        f"| {summary['ours_prepare_rss'] / summary['pandas']['peak_rss_mb']:.2f} |",
        f"| whole workflow (s) vs XGBoost's fits inside the training jobs (from their logs) "
        f"| {summary['workflow_s']:.0f} | {in_jobs:.0f} | {summary['workflow_s'] / in_jobs:.2f} |",
    ]
    if summary["xgboost"] is not None:
        xgb_s = summary["xgboost"]["seconds"]
        lines.append(
            f"| whole workflow (s) vs XGBoost alone ({len(summary['xgboost']['fits'])} boosters, "
            f"early stopping + refit) | {summary['workflow_s']:.0f} | {xgb_s:.0f} "
            f"| {summary['workflow_s'] / xgb_s:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="S")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bootstrap",
        type=int,
        help="subject-bootstrap resamples of the confidence intervals (default: the config's 1000)",
    )
    parser.add_argument(
        "--skip-xgboost",
        action="store_true",
        help="leave out the XGBoost-alone rerun (as long as the training); the XGBoost time "
        "logged inside the training jobs is still reported",
    )
    parser.add_argument("--folds", type=int, help="outer folds (default: the config's 5)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the simulated cohort and finished workflow in --workdir; rerun the references",
    )
    parser.add_argument("--child", choices=("pandas", "xgboost"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    data = workdir / "data"
    if args.child == "pandas":
        result = reference_pipeline(
            data, workdir / "results" / "split" / "splits.json", workdir / "reference.parquet"
        )
        (workdir / "pandas.json").write_text(json.dumps(result))
        return
    if args.child == "xgboost":
        config = yaml.safe_load((data / "config.yaml").read_text())
        result = xgboost_reference(workdir, config)
        (workdir / "xgboost.json").write_text(json.dumps(result))
        return

    timings_file = workdir / "timings.json"
    if args.resume and timings_file.exists():
        timings = json.loads(timings_file.read_text())
    else:
        if workdir.exists() and any(workdir.iterdir()):
            sys.exit(f"{workdir} is not empty; give a new --workdir (or --resume a finished run)")
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        simulate(args.size, data, args.seed)
        timings = {"simulate_s": time.monotonic() - start}
        overrides = workdir / "benchmark.yaml"
        settings = json.loads(json.dumps(OVERRIDES))
        if args.bootstrap is not None:
            settings["evaluate"]["n_bootstrap"] = args.bootstrap
        if args.folds is not None:
            settings["split"] = {"n_splits": args.folds}
        overrides.write_text(yaml.safe_dump(settings))
        timings["workflow_s"] = run_workflow(workdir, [data / "config.yaml", overrides])
        timings_file.write_text(json.dumps(timings))
    simulate_s, workflow_s = timings["simulate_s"], timings["workflow_s"]
    jobs = job_records(workdir)
    sizes = matrix_sizes(workdir, data)
    prepare = jobs[
        jobs["rule"].isin(["validate_inputs", "normalise_modality", "integrate_features"])
    ]
    summary = {
        "size": args.size,
        "description": json.dumps(SIZES[args.size]),
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "simulate_s": simulate_s,
        "workflow_s": workflow_s,
        "sizes": sizes,
        "jobs": jobs.to_dict(orient="records"),
        "stages": stage_table(jobs, sizes),
        "ours_prepare_s": float(prepare["seconds"].sum()),
        "ours_norm_integrate_s": float(
            prepare.loc[prepare["rule"] != "validate_inputs", "seconds"].sum()
        ),
        "ours_prepare_rss": float(prepare["max_rss"].max()),
        "pandas": _child("pandas", workdir, reuse=args.resume),
        "xgboost_in_jobs_s": xgboost_in_jobs(workdir),
    }
    summary["xgboost"] = (
        None if args.skip_xgboost else _child("xgboost", workdir, reuse=args.resume)
    )
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(report(summary))


if __name__ == "__main__":
    main()
