"""End-to-end: the real Snakemake workflow on the bundled TCGA breast cohort, a real MLflow store."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml
from workflow_runner import BIN, REPO, read_json, run_workflow, save_config

EXAMPLE = REPO / "resources" / "example"

pytestmark = pytest.mark.e2e


def write_config(directory: Path, *, data: Path = EXAMPLE, **overrides: dict) -> Path:
    """The example config with absolute paths into ``data``, and section overrides."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for key in ("samples", "outcomes"):
        config["cohort"][key] = str(data / Path(config["cohort"][key]).name)
    for spec in config["modalities"].values():
        spec["path"] = str(data / Path(spec["path"]).name)
    # A tiny tuning budget keeps the tests fast; the search itself is the same.
    config["tuning"]["n_trials"] = 3
    return save_config(directory, config, overrides)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("example_run")
    # The modality-value runs (8 more cross-validations) are covered by the survival example.
    run_workflow(workdir, write_config(workdir, evaluate={"modality_value": False}))
    return workdir


def test_workflow_outputs_and_metrics(example_run: Path) -> None:
    results = example_run / "results"
    cv = read_json(results / "evaluate/cv_metrics.json")
    holdout = read_json(results / "evaluate/holdout_metrics.json")
    # Subtype is strongly encoded in these omics: a working pipeline is far above chance (1/3).
    assert cv["metrics"]["balanced_accuracy"]["estimate"] > 0.8
    assert holdout["metrics"]["balanced_accuracy"]["estimate"] > 0.7
    for metrics in (cv["metrics"], holdout["metrics"]):
        for value in metrics.values():
            assert value["lower"] <= value["estimate"] <= value["upper"]
    assert cv["n_samples"] + holdout["n_samples"] == 150
    assert len(cv["per_fold"]) == 5
    oof = pd.read_parquet(results / "evaluate/oof_predictions.parquet")
    splits = read_json(results / "split/splits.json")
    assert sorted(oof["sample_id"]) == sorted(splits["development"])
    assert not set(oof["sample_id"]) & set(splits["holdout"])
    for png in ("cv_confusion", "cv_roc", "cv_reliability", "holdout_confusion", "holdout_roc"):
        assert (results / f"evaluate/{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (results / "report/report.html").read_text()
    assert "Locked holdout" in report and "data:image/png;base64," in report
    state = read_json(results / "final/model/state.json")
    params = {
        m: read_json(results / f"normalise/{m}.params.json")["normaliser"]
        for m in ("mrna", "mirna", "protein", "rnaseq")
    }
    # The registered model carries exactly the development-fitted normalisation.
    assert {m["name"]: m["normaliser"] for m in state["modalities"]} == params
    assert not list((results / "final/model").glob("*.pkl"))


def test_tuned_calibrated_pipeline_next_to_baseline_and_control(example_run: Path) -> None:
    results = example_run / "results"
    cv = read_json(results / "evaluate/cv_metrics.json")
    for record in cv["per_fold"]:
        assert set(record["tuned_params"]) >= {"learning_rate", "max_depth", "colsample_bynode"}
        assert record["selection"]["rnaseq"]["n_kept"] == 100
    assert cv["probability_calibration"]["method"] == "sigmoid"
    comparison = read_json(results / "evaluate/comparison.json")
    models = comparison["models"]
    # Tuning, selection and calibration run inside the permuted control too: it stays at chance.
    control = models["permuted outcome"]
    assert abs(control["balanced_accuracy"]["estimate"] - 1 / 3) < 0.15
    assert control["roc_auc_ovr"]["estimate"] < 0.65
    assert comparison["negative_control"]["chance"] == pytest.approx(1 / 3)
    assert models["pipeline"]["balanced_accuracy"]["estimate"] > 0.8
    assert models["linear baseline"]["balanced_accuracy"]["estimate"] > 0.8
    difference = comparison["pipeline_minus_baseline"]
    assert difference["lower"] <= difference["estimate"] <= difference["upper"]
    rows = comparison["modality_value"]
    assert len(rows) == 1 + 4
    assert {r["kind"] for r in rows} == {"all", "missing"}
    # The model still predicts without a modality; losing protein costs accuracy.
    missing_protein = next(r for r in rows if r["setting"] == "protein missing at prediction")
    assert (
        missing_protein["metrics"]["roc_auc_ovr"]["estimate"]
        < rows[0]["metrics"]["roc_auc_ovr"]["estimate"]
    )
    shap = read_json(results / "evaluate/shap_importance.json")
    assert next(m["modality"] for m in shap["modalities"]) in {"mrna", "protein"}
    explained = pd.read_parquet(results / "evaluate/holdout_explanations.parquet")
    holdout = read_json(results / "split/splits.json")["holdout"]
    assert explained.groupby("sample_id").size().eq(10).all()
    assert set(explained["sample_id"]) == set(holdout)
    report = (results / "report/report.html").read_text()
    for section in (
        "Nested tuning",
        "In-fold feature selection",
        "Probability calibration",
        "Pipeline, linear baseline and negative control",
        "Modality value",
        "Explanations (SHAP)",
    ):
        assert section in report


def test_predict_explains_each_patient(example_run: Path, tmp_path: Path) -> None:
    info = read_json(example_run / "results/register/model.json")
    out = tmp_path / "predictions.csv"
    result = subprocess.run(
        [
            str(BIN / "omics-ml"),
            "predict",
            "--model",
            info["model_uri"],
            "--tracking-uri",
            info["tracking_uri"],
            "--input",
            str(EXAMPLE / "new_patients"),
            "--output",
            str(out),
            "--explain",
            "3",
        ],
        cwd=example_run,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    predictions = pd.read_csv(out)
    top = pd.read_csv(tmp_path / "predictions_explanations.csv")
    assert top.groupby("sample_id").size().eq(3).all()
    assert set(top["sample_id"]) == set(predictions["sample_id"])
    per_modality = pd.read_csv(tmp_path / "predictions_modality_contributions.csv")
    columns = list(per_modality.columns)
    assert columns[:2] == ["sample_id", "explained_class"] and columns[-1] == "bias"
    assert sorted(columns[2:-1]) == ["mirna", "mrna", "protein", "rnaseq"]
    merged = per_modality.merge(predictions, on="sample_id")
    assert (merged["explained_class"] == merged["predicted_class"]).all()
    assert "Top 3 SHAP contributions" in result.stdout


def test_mlflow_store_runs_and_registry(example_run: Path) -> None:
    from mlflow.tracking import MlflowClient

    info = read_json(example_run / "results/register/model.json")
    client = MlflowClient(tracking_uri=info["tracking_uri"], registry_uri=info["tracking_uri"])
    parent = client.get_run(info["run_id"])
    assert parent.data.metrics["holdout_balanced_accuracy"] > 0.7
    assert "cv_balanced_accuracy_ci_low" in parent.data.metrics
    assert "holdout_balanced_accuracy_ci_high" in parent.data.metrics
    assert parent.data.params["split.n_splits"] == "5"
    assert len(parent.data.tags["git.commit"]) == 40 or parent.data.tags["git.commit"] == "unknown"
    children = client.search_runs(
        [info["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{info['run_id']}'"
    )
    assert sorted(r.info.run_name for r in children) == [
        "final_model",
        *[f"fold_{k}" for k in range(5)],
    ]
    folds = [r for r in children if r.info.run_name.startswith("fold_")]
    assert all("fold_balanced_accuracy" in r.data.metrics for r in folds)
    assert all("tuned.max_depth" in r.data.params for r in folds)
    champion = client.get_model_version_by_alias(info["model_name"], "champion")
    assert str(champion.version) == info["model_version"] == "1"
    assert champion.run_id == info["final_run_id"]
    assert champion.tags["lineage.run_id"] == info["run_id"]
    artifacts = {a.path for a in client.list_artifacts(info["run_id"], "report")}
    assert "report/report.html" in artifacts
    oof = client.download_artifacts(
        info["run_id"], "predictions/oof_predictions.csv", str(example_run)
    )
    logged = pd.read_csv(oof)
    raw_ids = set(
        pd.read_parquet(example_run / "results/evaluate/oof_predictions.parquet")["sample_id"]
    )
    assert not set(logged["sample_id"]) & raw_ids  # pseudonymised before reaching MLflow


def _holdout_files(example_run: Path, directory: Path) -> list[str]:
    """Raw files (in the example's own formats) of the locked-holdout patients, all modalities."""
    holdout = read_json(example_run / "results/split/splits.json")["holdout"]
    directory.mkdir(parents=True, exist_ok=True)
    pl.read_csv(EXAMPLE / "mrna.csv").filter(pl.col("sample_id").is_in(holdout)).write_csv(
        directory / "mrna.csv"
    )
    pl.read_parquet(EXAMPLE / "protein.parquet").filter(
        pl.col("sample_id").is_in(holdout)
    ).write_parquet(directory / "protein.parquet")
    mirna = pl.read_csv(EXAMPLE / "mirna.tsv", separator="\t")
    mirna.select(["feature_id", *holdout]).write_csv(directory / "mirna.tsv", separator="\t")
    counts = pl.read_csv(EXAMPLE / "rnaseq.tsv", separator="\t")
    counts.select(["gene_id", *holdout]).write_csv(directory / "rnaseq.tsv", separator="\t")
    return holdout


def _run_predict(
    run_dir: Path, inputs: list[str], output: Path, *extra: str
) -> subprocess.CompletedProcess:
    """`omics-ml predict` with the champion of ``run_dir`` in a fresh process."""
    info = read_json(run_dir / "results/register/model.json")
    cmd = [
        str(BIN / "omics-ml"),
        "predict",
        "--model",
        info["champion_uri"],
        "--tracking-uri",
        info["tracking_uri"],
        "--input",
        *inputs,
        "--output",
        str(output),
        *extra,
    ]
    return subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, check=False)


def _predict_cli(example_run: Path, inputs: list[str], output: Path, *extra: str) -> pd.DataFrame:
    result = _run_predict(example_run, inputs, output, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return pd.read_csv(output)


def test_predict_fresh_process_matches_training_on_holdout(
    example_run: Path, tmp_path: Path
) -> None:
    holdout = _holdout_files(example_run, tmp_path / "holdout")
    predicted = _predict_cli(example_run, [str(tmp_path / "holdout")], tmp_path / "holdout.csv")
    assert sorted(predicted["sample_id"]) == sorted(holdout)
    assert predicted["missing_modalities"].isna().all()
    expected = pd.read_parquet(example_run / "results/final/holdout_predictions.parquet").set_index(
        "sample_id"
    )
    expected = expected.loc[predicted["sample_id"]]
    prob_cols = [c for c in predicted.columns if c.startswith("prob_")]
    assert prob_cols == ["prob_Basal", "prob_Her2", "prob_LumA"]
    np.testing.assert_allclose(
        predicted[prob_cols].to_numpy(), expected[prob_cols].to_numpy(), rtol=0, atol=1e-6
    )
    assert (predicted["predicted_class"].to_numpy() == expected["predicted_class"].to_numpy()).all()


def test_predict_new_patients_without_protein(example_run: Path, tmp_path: Path) -> None:
    predicted = _predict_cli(example_run, [str(EXAMPLE / "new_patients")], tmp_path / "new.csv")
    truth = pd.read_csv(EXAMPLE / "new_patients/outcomes.csv")
    assert len(predicted) == len(truth) == 70
    assert (predicted["missing_modalities"] == "protein").all()
    np.testing.assert_allclose(predicted.filter(like="prob_").sum(axis=1), 1.0, atol=1e-9)
    merged = predicted.merge(truth, on="sample_id", validate="1:1")
    from sklearn.metrics import balanced_accuracy_score

    # Never-seen patients lacking a whole modality are still classified well above chance.
    assert balanced_accuracy_score(merged["subtype"], merged["predicted_class"]) > 0.7


def test_rerun_registers_new_version_by_rule(example_run: Path) -> None:
    run_workflow(example_run, example_run / "config.yaml", "--forcerun", "log_run")
    info = read_json(example_run / "results/register/model.json")
    assert info["model_version"] == "2"
    # Same data, config and seed: the holdout metric ties, and a tie does not beat the champion.
    assert not info["promoted"] and "does not beat" in info["promotion_reason"]
    assert info["previous_champion_version"] == "1"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=info["tracking_uri"], registry_uri=info["tracking_uri"])
    aliases = client.get_registered_model(info["model_name"]).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "1", "challenger": "2"}
    version = client.get_model_version(info["model_name"], "2")
    assert version.tags["promotion.decision"] == "not promoted"
    assert version.tags["promotion.new_value"] == version.tags["promotion.champion_value"]


def test_changing_holdout_values_changes_no_fitted_parameter(
    example_run: Path, tmp_path: Path
) -> None:
    holdout = read_json(example_run / "results/split/splits.json")["holdout"]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("samples.csv", "outcomes.csv"):
        (data / name).write_bytes((EXAMPLE / name).read_bytes())
    is_holdout = pl.col("sample_id").is_in(holdout)
    mrna = pl.read_csv(EXAMPLE / "mrna.csv")
    mrna.with_columns(
        pl.when(is_holdout).then(pl.exclude("sample_id") * 3 + 5).otherwise(pl.exclude("sample_id"))
    ).write_csv(data / "mrna.csv")
    protein = pl.read_parquet(EXAMPLE / "protein.parquet")
    protein.with_columns(
        pl.when(is_holdout).then(pl.exclude("sample_id") - 2).otherwise(pl.exclude("sample_id"))
    ).write_parquet(data / "protein.parquet")
    mirna = pl.read_csv(EXAMPLE / "mirna.tsv", separator="\t")
    mirna.with_columns([pl.col(s) * 0.5 for s in holdout]).write_csv(
        data / "mirna.tsv", separator="\t"
    )
    counts = pl.read_csv(EXAMPLE / "rnaseq.tsv", separator="\t")
    counts.with_columns([pl.col(s) * 3 + 1 for s in holdout]).write_csv(
        data / "rnaseq.tsv", separator="\t"
    )
    workdir = tmp_path / "run"
    targets = ["results/final/model/state.json"]
    run_workflow(workdir, write_config(workdir, data=data), *targets)
    for modality in ("mrna", "mirna", "protein", "rnaseq"):
        name = f"normalise/{modality}.params.json"
        assert read_json(workdir / "results" / name) == read_json(example_run / "results" / name)
    for name in ("final/model/state.json", "final/model/booster.ubj"):
        assert (workdir / "results" / name).read_bytes() == (
            example_run / "results" / name
        ).read_bytes()
    # ...while the holdout predictions do see the changed values.
    assert (workdir / "results/final/holdout_predictions.parquet").read_bytes() != (
        example_run / "results/final/holdout_predictions.parquet"
    ).read_bytes()


def test_whole_run_negative_control_permutes_before_splitting(tmp_path: Path) -> None:
    """negative_control.permute_labels shuffles outcomes across subjects before any split.

    That the shuffled pipeline scores at chance is checked on the permuted-outcome variant of
    every run (test_tuned_calibrated_pipeline_next_to_baseline_and_control).
    """
    config = write_config(tmp_path, negative_control={"permute_labels": True})
    run_workflow(tmp_path, config, "results/split/splits.json")
    assert read_json(tmp_path / "results/split/splits.json")["permuted_labels"] is True
    cohort = pl.read_parquet(tmp_path / "results/split/cohort.parquet")
    truth = pl.read_csv(EXAMPLE / "outcomes.csv").rename({"subtype": "truth"})
    joined = cohort.join(truth, on="sample_id")
    assert joined.height == 150
    assert (joined["label"] != joined["truth"]).mean() > 0.3
    assert sorted(joined["label"].to_list()) == sorted(joined["truth"].to_list())


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("split", {"n_split": 3}, "'n_split' was unexpected"),
        ("split", {"n_splits": "five"}, "'five' is not of type 'integer'"),
        ("model", {"max_depth": 0}, "0 is less than the minimum of 1"),
    ],
)
def test_bad_config_names_the_key(
    tmp_path: Path, section: str, values: dict, expected: str
) -> None:
    result = run_workflow(tmp_path, write_config(tmp_path, **{section: values}), "-n", check=False)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


def test_bad_input_fails_in_validate_with_the_file_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in (
        "samples.csv",
        "outcomes.csv",
        "mirna.tsv",
        "protein.parquet",
        "rnaseq.tsv",
    ):
        (data / name).write_bytes((EXAMPLE / name).read_bytes())
    text = (EXAMPLE / "mrna.csv").read_text().splitlines()
    fields = text[5].split(",")
    fields[3] = "high"
    text[5] = ",".join(fields)
    (data / "mrna.csv").write_text("\n".join(text) + "\n")
    workdir = tmp_path / "run"
    result = run_workflow(workdir, write_config(workdir, data=data), check=False)
    assert result.returncode != 0
    log = (workdir / "logs/validate_inputs.log").read_text()
    assert "mrna.csv" in log and "'high'" in log and "data row 5" in log
    assert not (workdir / "results/validate/qc.json").exists()


def test_bad_counts_fail_in_validate_naming_sample_and_gene(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("samples.csv", "outcomes.csv", "mrna.csv", "mirna.tsv", "protein.parquet"):
        (data / name).write_bytes((EXAMPLE / name).read_bytes())
    counts = pl.read_csv(EXAMPLE / "rnaseq.tsv", separator="\t")
    sample = counts.columns[3]
    counts.with_columns(
        pl.when(pl.col("gene_id") == "NDRG2").then(-4).otherwise(pl.col(sample)).alias(sample)
    ).write_csv(data / "rnaseq.tsv", separator="\t")
    workdir = tmp_path / "run"
    result = run_workflow(workdir, write_config(workdir, data=data), check=False)
    assert result.returncode != 0
    log = (workdir / "logs/validate_inputs.log").read_text()
    assert "rnaseq.tsv" in log and "negative count" in log
    assert f"sample {sample!r}" in log and "feature 'NDRG2'" in log
    assert not (workdir / "results/validate/qc.json").exists()


def test_batch_corrected_modality_end_to_end(tmp_path: Path) -> None:
    """ComBat on the count modality: batch labels flow from the sample sheet to the model.

    The example has no real batches, so each patient is assigned to one of three plates
    (round-robin in sample-sheet order); plate "P1" is the reference batch.
    """
    data = tmp_path / "data"
    data.mkdir()
    for name in ("outcomes.csv", "mrna.csv", "mirna.tsv", "protein.parquet", "rnaseq.tsv"):
        (data / name).write_bytes((EXAMPLE / name).read_bytes())
    sheet = pl.read_csv(EXAMPLE / "samples.csv")
    sheet = sheet.with_columns(
        ("P" + (pl.int_range(pl.len()) % 3 + 1).cast(pl.String)).alias("plate")
    )
    sheet.write_csv(data / "samples.csv")
    workdir = tmp_path / "run"
    config = yaml.safe_load(write_config(workdir, data=data).read_text())
    config["modalities"]["rnaseq"]["batch_column"] = "plate"
    config["modalities"]["rnaseq"]["normalisation"] = [
        {"method": "filter_by_expr"},
        {"method": "count_normalisation", "library_size": "tmm", "transformation": "log_cpm"},
        {"method": "combat", "reference_batch": "P1"},
    ]
    config["model"]["n_estimators"] = 60
    config["split"]["n_splits"] = 3
    config["tuning"]["enabled"] = False
    # Every review run switched off: the registry and report work without them.
    config.setdefault("evaluate", {}).update(
        baseline=False, permuted_control=False, modality_value=False
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    run_workflow(workdir, workdir / "config.yaml", "results/register/model.json")
    assert list(read_json(workdir / "results/evaluate/comparison.json")["models"]) == ["pipeline"]

    params = read_json(workdir / "results/normalise/rnaseq.params.json")["normaliser"]
    combat = params["steps"][-1]
    assert combat["step"] == "ComBat"
    assert combat["state"]["batch_levels_"]["__ndarray__"] == ["P1", "P2", "P3"]
    assert params["batch_column"] == "plate"

    # The registered model reads the plate from a sample sheet and reproduces train_final.
    holdout = _holdout_files(workdir, tmp_path / "holdout")
    sheet.filter(pl.col("sample_id").is_in(holdout)).write_csv(tmp_path / "holdout_sheet.csv")
    inputs, output = [str(tmp_path / "holdout")], tmp_path / "pred.csv"
    predicted = _predict_cli(
        workdir, inputs, output, "--samples", str(tmp_path / "holdout_sheet.csv")
    ).set_index("sample_id")
    expected = pd.read_parquet(workdir / "results/final/holdout_predictions.parquet")
    expected = expected.set_index("sample_id").loc[predicted.index]
    prob_cols = [c for c in predicted.columns if c.startswith("prob_")]
    np.testing.assert_allclose(
        predicted[prob_cols].to_numpy(), expected[prob_cols].to_numpy(), rtol=0, atol=1e-6
    )
    # Without the batch labels every sample is an unseen batch: a clear error, no output.
    output.unlink()
    result = _run_predict(workdir, inputs, output)
    assert result.returncode != 0
    assert "batch" in result.stderr and "P1" in result.stderr
    assert not output.exists()
