"""train_fold / train_final on the example, and the MLflow pyfunc model in a real local store."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from omics_ml.cli import main
from omics_ml.integrate import raw_input_frame
from omics_ml.model import (
    MODEL_CODE_PATH,
    PIPELINE_ARTIFACT,
    input_contract,
    input_example,
    model_signature,
)
from omics_ml.pipeline import OmicsPipeline
from omics_ml.predict import predict_files
from omics_ml.train import (
    train_baseline,
    train_final,
    train_fold,
    train_variant,
    variant_config,
    variant_names,
)
from omics_ml.validate import load_cohort

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, build_features) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("train")
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for key in ("samples", "outcomes"):
        config["cohort"][key] = str(ROOT / config["cohort"][key])
    for spec in config["modalities"].values():
        spec["path"] = str(ROOT / spec["path"])
    config["model"].update(n_estimators=60, early_stopping_rounds=10)
    config["evaluate"] = {"n_bootstrap": 20, "confidence_level": 0.9}
    build_features(tmp, load_cohort(config), config["modalities"], seed=7)
    return tmp, config


def test_train_fold_predicts_only_its_test_subjects(prepared) -> None:
    tmp, config = prepared
    record = train_fold(
        tmp / "features.h5ad",
        tmp / "splits.json",
        1,
        config=config,
        nthread=1,
        model_dir=tmp / "fold1",
        predictions_out=tmp / "fold1.parquet",
        metrics_out=tmp / "fold1.json",
    )
    fold = json.loads((tmp / "splits.json").read_text())["folds"][1]
    predicted = pd.read_parquet(tmp / "fold1.parquet")
    assert sorted(predicted["sample_id"]) == sorted(fold["test"])
    assert record["n_train_samples"] == len(fold["train"])
    assert 1 <= record["n_rounds"] <= 60
    assert record["metrics"]["balanced_accuracy"] > 0.6
    assert sorted(p.name for p in (tmp / "fold1").iterdir()) == ["booster.ubj", "state.json"]


def test_train_final_uses_frozen_development_normalisers(prepared) -> None:
    tmp, config = prepared
    params = {m: tmp / f"{m}.params.json" for m in config["modalities"]}
    result = train_final(
        tmp / "features.h5ad",
        tmp / "splits.json",
        params,
        config=config,
        nthread=1,
        model_dir=tmp / "final",
        predictions_out=tmp / "holdout.parquet",
        metrics_out=tmp / "holdout.json",
        plots={"confusion": tmp / "c.png", "roc": tmp / "r.png", "reliability": tmp / "l.png"},
    )
    state = json.loads((tmp / "final/state.json").read_text())
    assert [m["name"] for m in state["modalities"]] == ["mrna", "mirna", "protein", "rnaseq"]
    for modality in state["modalities"]:
        assert (
            modality["normaliser"] == json.loads(params[modality["name"]].read_text())["normaliser"]
        )
    holdout = json.loads((tmp / "splits.json").read_text())["holdout"]
    assert result["n_samples"] == len(holdout)
    assert result["metrics"]["balanced_accuracy"]["estimate"] > 0.6


def test_pyfunc_model_round_trip_through_a_real_store(prepared, tmp_path: Path) -> None:
    tmp, _config = prepared
    if not (tmp / "final/state.json").exists():
        test_train_final_uses_frozen_development_normalisers(prepared)
    pipeline = OmicsPipeline.load(tmp / "final")
    signature = model_signature(pipeline)
    assert all(not col.required for col in signature.inputs.inputs)
    assert [c.name for c in signature.inputs.inputs] == [
        "sample_id",
        "subject_id",
        "visit_time",
        *pipeline.input_columns,
    ]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment(
        "unit", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE_PATH),
            artifacts={PIPELINE_ARTIFACT: str(tmp / "final")},
            code_paths=[str(ROOT / "src/omics_ml")],
            signature=signature,
            pip_requirements=["xgboost"],
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    artifacts = Path(
        mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl"))
    )
    assert not list(artifacts.rglob("*.pkl")) and not list(artifacts.rglob("*.cloudpickle"))
    holdout = pd.read_parquet(tmp / "holdout.parquet")
    adata = ad.read_h5ad(tmp / "features.h5ad")[holdout["sample_id"].tolist()]
    frame = raw_input_frame(adata)
    assert frame["sample_id"].tolist() == holdout["sample_id"].tolist()
    served = loaded.predict(frame)
    np.testing.assert_allclose(
        served.filter(regex="^prob_").to_numpy(),
        holdout.filter(regex="^prob_").to_numpy(),
        atol=1e-9,
    )
    without_protein = loaded.predict(
        frame.drop(columns=[c for c in frame if c.startswith("protein:")])
    )
    assert (without_protein["missing_modalities"] == "protein").all()


# --- a clinical text modality and a batch-corrected modality, from training to `predict` -----


def _log_model(tmp_path: Path, model_dir: Path, config: dict) -> str:
    """Log the pipeline as the tracking step does, with its input contract; return its URI."""
    pipeline = OmicsPipeline.load(model_dir)
    contract = input_contract(pipeline, config["modalities"])
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment(
        "unit-text-batch", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE_PATH),
            artifacts={PIPELINE_ARTIFACT: str(model_dir)},
            code_paths=[str(ROOT / "src/omics_ml")],
            signature=model_signature(pipeline),
            pip_requirements=["xgboost"],
            metadata={"input_contract": contract},
        )
    return info.model_uri


@pytest.fixture(scope="module")
def text_and_batch(tmp_path_factory: pytest.TempPathFactory, build_features) -> dict:
    tmp = tmp_path_factory.mktemp("train_text_batch")
    sheet = pd.read_csv(ROOT / "resources/example/samples.csv", dtype=str)
    ids = sheet["sample_id"].tolist()
    labels = pd.read_csv(ROOT / "resources/example/outcomes.csv", dtype=str).set_index("sample_id")[
        "subtype"
    ]
    rng = np.random.default_rng(21)
    sheet["run"] = np.where(np.arange(len(ids)) % 3 == 0, "r2", "r1")
    sheet.to_csv(tmp / "samples.csv", index=False)
    mrna = pd.read_csv(ROOT / "resources/example/mrna.csv", dtype={"sample_id": str})
    genes = mrna.columns[1:]
    shifted = (sheet.set_index("sample_id").loc[mrna["sample_id"], "run"] == "r2").to_numpy()
    mrna.loc[shifted, genes] = mrna.loc[shifted, genes] * 1.2 + 1.0  # a batch effect
    mrna.to_csv(tmp / "mrna.csv", index=False)
    stage = labels.loc[ids].map({"Basal": "III", "Her2": "II", "LumA": "I"}).to_numpy(object)
    flip = rng.random(len(ids)) < 0.3
    stage[flip] = rng.choice(["I", "II", "III"], size=int(flip.sum()))
    pd.DataFrame(
        {"sample_id": ids, "age": rng.uniform(30, 80, len(ids)).round(1), "stage": stage}
    ).to_csv(tmp / "clinical.csv", index=False)
    config = {
        "seed": 3,
        "cohort": {
            "samples": str(tmp / "samples.csv"),
            "outcomes": str(ROOT / "resources/example/outcomes.csv"),
            "outcome_column": "subtype",
        },
        "modalities": {
            "mrna": {
                "path": str(tmp / "mrna.csv"),
                "type": "transcriptomics",
                "batch_column": "run",
                "normalisation": [
                    {"method": "variance_filter", "top_n": 60},
                    {"method": "combat"},
                ],
            },
            "clinical": {"path": str(tmp / "clinical.csv"), "type": "clinical"},
        },
        "model": {"n_estimators": 40, "early_stopping_rounds": 10},
        "evaluate": {"n_bootstrap": 10, "confidence_level": 0.9},
    }
    cohort = load_cohort(config)
    assert "run" in cohort.columns
    build_features(tmp, cohort, config["modalities"], seed=3)
    train_final(
        tmp / "features.h5ad",
        tmp / "splits.json",
        {m: tmp / f"{m}.params.json" for m in config["modalities"]},
        config=config,
        nthread=1,
        model_dir=tmp / "final",
        predictions_out=tmp / "holdout.parquet",
        metrics_out=tmp / "holdout.json",
        plots={"confusion": tmp / "c.png", "roc": tmp / "r.png", "reliability": tmp / "l.png"},
    )
    # the holdout patients as new raw files plus their sample sheet
    holdout = json.loads((tmp / "splits.json").read_text())["holdout"]
    new = tmp / "new"
    new.mkdir()
    mrna.set_index("sample_id").loc[holdout].reset_index().to_csv(new / "mrna.csv", index=False)
    clinical = pd.read_csv(tmp / "clinical.csv", dtype={"sample_id": str}).set_index("sample_id")
    clinical.loc[holdout].reset_index().to_csv(new / "clinical.csv", index=False)
    sheet.set_index("sample_id").loc[holdout].reset_index().to_csv(
        tmp / "new_samples.csv", index=False
    )
    return {"tmp": tmp, "config": config, "holdout": holdout}


def test_text_and_batch_model_state(text_and_batch) -> None:
    tmp = text_and_batch["tmp"]
    pipeline = OmicsPipeline.load(tmp / "final")
    assert pipeline.text_columns == ["clinical:stage"]
    assert pipeline.batch_columns == ["run"]
    features = pd.read_parquet(tmp / "holdout.parquet")
    assert sorted(features["sample_id"]) == sorted(text_and_batch["holdout"])
    adata = ad.read_h5ad(tmp / "features.h5ad")
    frame = raw_input_frame(adata[text_and_batch["holdout"]])
    assert frame.columns[-1] == "run"
    assert frame["clinical:stage"].dtype == object
    served = pipeline.predict_frame(frame)
    np.testing.assert_allclose(
        served.filter(regex="^prob_").to_numpy(),
        features.set_index("sample_id").loc[served["sample_id"]].filter(regex="^prob_").to_numpy(),
        atol=1e-12,
    )


def test_input_example_summarises_training_rows(text_and_batch) -> None:
    tmp = text_and_batch["tmp"]
    pipeline = OmicsPipeline.load(tmp / "final")
    development = json.loads((tmp / "splits.json").read_text())["development"]
    raw = raw_input_frame(ad.read_h5ad(tmp / "features.h5ad")[development])
    example = input_example(pipeline, raw)
    assert list(example.columns) == ["sample_id", "subject_id", *pipeline.input_columns, "run"]
    assert example.shape[0] == 1 and example.loc[0, "sample_id"] == "example"
    numeric = [c for c in pipeline.input_columns if c not in pipeline.text_columns]
    np.testing.assert_allclose(
        example.loc[0, numeric].to_numpy(np.float64),
        np.nanquantile(raw[numeric].to_numpy(np.float64), 0.5, axis=0, method="lower"),
    )
    # every value occurs in training (whole-number counts stay whole numbers)
    assert all(example.loc[0, c] in set(raw[c]) for c in numeric)
    assert example.loc[0, "clinical:stage"] == raw["clinical:stage"].mode().sort_values().iloc[0]
    # No training row is the example (it is a summary, not a patient), and it predicts.
    assert not (raw[numeric].to_numpy() == example[numeric].to_numpy()).all(axis=1).any()
    assert example.loc[0, "run"] == raw["run"].mode().sort_values().iloc[0]
    predicted = pipeline.predict_frame(example)
    assert predicted["sample_id"].tolist() == ["example"]
    np.testing.assert_allclose(predicted.filter(regex="^prob_").sum(axis=1), 1.0)


def test_predict_files_and_cli_with_samples_sheet(
    text_and_batch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = text_and_batch["tmp"]
    uri = _log_model(tmp_path, tmp / "final", text_and_batch["config"])
    loaded = mlflow.pyfunc.load_model(uri)
    contract = loaded.metadata.metadata["input_contract"]
    assert contract["clinical"]["text_features"] == ["stage"]
    assert contract["mrna"]["batch_column"] == "run"
    assert contract["clinical"]["batch_column"] is None

    expected = pd.read_parquet(tmp / "holdout.parquet").set_index("sample_id")
    inputs = [str(tmp / "new")]
    predicted = predict_files(loaded, inputs, samples=tmp / "new_samples.csv")
    assert sorted(predicted["sample_id"]) == sorted(text_and_batch["holdout"])
    np.testing.assert_allclose(
        predicted.filter(regex="^prob_").to_numpy(),
        expected.loc[predicted["sample_id"]].filter(regex="^prob_").to_numpy(),
        atol=1e-9,
    )
    # without the sheet, ComBat has no batch label: an error, not silently unadjusted values
    with pytest.raises(ValueError, match="not seen in fit"):
        predict_files(loaded, inputs)

    out = tmp_path / "predictions.csv"
    code = main(
        [
            "predict",
            "--model",
            uri,
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--input",
            *inputs,
            "--samples",
            str(tmp / "new_samples.csv"),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    from_cli = pd.read_csv(out, dtype={"sample_id": str})
    np.testing.assert_allclose(
        from_cli.filter(regex="^prob_").to_numpy(),
        expected.loc[from_cli["sample_id"]].filter(regex="^prob_").to_numpy(),
        atol=1e-9,
    )
    capsys.readouterr()
    assert main(["predict", "--model", uri, "--input", *inputs]) == 2
    assert "not seen in fit" in capsys.readouterr().err


def test_served_model_warns_on_unseen_category(text_and_batch, tmp_path: Path) -> None:
    tmp = text_and_batch["tmp"]
    uri = _log_model(tmp_path, tmp / "final", text_and_batch["config"])
    loaded = mlflow.pyfunc.load_model(uri)
    frame = raw_input_frame(ad.read_h5ad(tmp / "features.h5ad")[text_and_batch["holdout"][:4]])
    frame.loc[1, "clinical:stage"] = "IV"
    with pytest.warns(UserWarning, match="'IV'"):
        served = loaded.predict(frame)
    assert np.isfinite(served.filter(regex="^prob_").to_numpy()).all()
    assert served["missing_modalities"].tolist() == [""] * 4


@pytest.fixture(scope="module")
def fold_models(prepared) -> list[Path]:
    """Every outer fold trained as the workflow does, with missing-modality predictions."""
    tmp, config = prepared
    n_folds = len(json.loads((tmp / "splits.json").read_text())["folds"])
    for fold in range(n_folds):
        train_fold(
            tmp / "features.h5ad",
            tmp / "splits.json",
            fold,
            config=config,
            nthread=1,
            model_dir=tmp / f"folds/{fold}/model",
            predictions_out=tmp / f"folds/{fold}/predictions.parquet",
            metrics_out=tmp / f"folds/{fold}/metrics.json",
            missing_predictions_out=tmp / f"folds/{fold}/missing.parquet",
        )
    return [tmp / f"folds/{fold}/model" for fold in range(n_folds)]


def test_missing_modality_predictions_cover_every_modality(prepared, fold_models) -> None:
    tmp, config = prepared
    missing = pd.read_parquet(tmp / "folds/0/missing.parquet")
    full = pd.read_parquet(tmp / "folds/0/predictions.parquet")
    assert list(missing["missing_modality"].unique()) == list(config["modalities"])
    for _, block in missing.groupby("missing_modality"):
        assert sorted(block["sample_id"]) == sorted(full["sample_id"])
        assert np.allclose(block.filter(regex="^prob_").sum(axis=1), 1.0)
    # Losing protein changes the predictions: the model uses it.
    without_protein = missing[missing["missing_modality"] == "protein"].set_index("sample_id")
    assert not np.allclose(without_protein.loc[full["sample_id"], "prob_Basal"], full["prob_Basal"])


def test_variant_names_and_configs(prepared) -> None:
    _, config = prepared
    names = variant_names(config)
    assert names[0] == "permuted"
    assert "only_mrna" in names and "without_rnaseq" in names and len(names) == 9
    assert variant_config(config, "only_mirna")["modalities"].keys() == {"mirna"}
    assert "protein" not in variant_config(config, "without_protein")["modalities"]
    tuned = {**config, "tuning": {"enabled": True, "n_trials": 3}}
    assert variant_config(tuned, "permuted")["tuning"]["enabled"]
    assert not variant_config(tuned, "only_mrna")["tuning"]["enabled"]
    assert variant_names({**config, "evaluate": {"permuted_control": False}})[0] == "only_mrna"
    with pytest.raises(ValueError, match="names no modality"):
        variant_config(config, "only_methylation")


def test_workflow_variants_match_the_package() -> None:
    import re

    text = (ROOT / "workflow/rules/common.smk").read_text()
    block = re.search(r"^VARIANTS = .*?(?=^BASELINE)", text, re.S | re.M).group(0)
    for evaluate in (
        {"permuted_control": True, "modality_value": True},
        {"permuted_control": False, "modality_value": True},
        {"permuted_control": True, "modality_value": False},
    ):
        for modalities in (["a", "b"], ["a"]):
            namespace = {"EVALUATE": evaluate, "MODALITIES": modalities}
            exec(block, namespace)
            config = {"evaluate": evaluate, "modalities": {key: {} for key in modalities}}
            assert namespace["VARIANTS"] == variant_names(config)


@pytest.fixture(scope="module")
def permuted_run(prepared) -> Path:
    tmp, config = prepared
    train_variant(
        tmp / "features.h5ad",
        tmp / "splits.json",
        "permuted",
        config=config,
        nthread=1,
        predictions_out=tmp / "permuted.parquet",
        metrics_out=tmp / "permuted.json",
    )
    return tmp / "permuted.parquet"


def test_permuted_variant_shuffles_outcomes_by_subject(prepared, permuted_run) -> None:
    tmp, _ = prepared
    permuted = pd.read_parquet(tmp / "permuted.parquet")
    truth = ad.read_h5ad(tmp / "features.h5ad").obs["label"].astype(str)
    split = json.loads((tmp / "splits.json").read_text())
    assert sorted(permuted["sample_id"]) == sorted(split["development"])
    labels = permuted.set_index("sample_id")["label"]
    # Same class counts, different assignment.
    assert labels.value_counts().equals(truth.loc[labels.index].value_counts())
    assert (labels != truth.loc[labels.index]).mean() > 0.3
    record = json.loads((tmp / "permuted.json").read_text())
    assert record["variant"] == "permuted" and len(record["per_fold"]) == len(split["folds"])


def test_only_variant_uses_one_modality(prepared) -> None:
    tmp, config = prepared
    train_variant(
        tmp / "features.h5ad",
        tmp / "splits.json",
        "only_mirna",
        config=config,
        nthread=1,
        predictions_out=tmp / "only_mirna.parquet",
        metrics_out=tmp / "only_mirna.json",
    )
    record = json.loads((tmp / "only_mirna.json").read_text())
    assert record["modalities"] == ["mirna"]
    assert all(f["n_features_used"] < 200 for f in record["per_fold"])
    predicted = pd.read_parquet(tmp / "only_mirna.parquet")
    assert np.allclose(predicted.filter(regex="^prob_").sum(axis=1), 1.0)


@pytest.fixture(scope="module")
def baseline_run(prepared, fold_models) -> Path:
    tmp, config = prepared
    train_baseline(
        tmp / "features.h5ad",
        tmp / "splits.json",
        fold_models,
        config=config,
        predictions_out=tmp / "baseline.parquet",
        metrics_out=tmp / "baseline.json",
    )
    return tmp / "baseline.parquet"


def test_linear_baseline_on_the_fold_designs(prepared, fold_models, baseline_run) -> None:
    tmp, _ = prepared
    baseline = pd.read_parquet(tmp / "baseline.parquet")
    pipeline = pd.concat([pd.read_parquet(m.parent / "predictions.parquet") for m in fold_models])
    assert sorted(baseline["sample_id"]) == sorted(pipeline["sample_id"])
    assert list(baseline.columns[:2]) == ["sample_id", "subject_id"]
    assert {"predicted_class", "prob_Basal", "label", "fold"} <= set(baseline.columns)
    record = json.loads((tmp / "baseline.json").read_text())
    assert record["model"] == "L2-penalised logistic regression"
    # Subtype is linear in these omics: the baseline is far above chance in every fold.
    assert all(f["metrics"]["balanced_accuracy"] > 0.6 for f in record["per_fold"])


def test_comparison_of_pipeline_baseline_control_and_modalities(
    prepared, fold_models, baseline_run, permuted_run, tmp_path: Path
) -> None:
    from omics_ml.compare import compare_variants, paired_difference

    tmp, _ = prepared
    pipeline = pd.concat(
        [pd.read_parquet(m.parent / "predictions.parquet") for m in fold_models],
        ignore_index=True,
    )
    pipeline.to_parquet(tmp_path / "oof.parquet")
    head = json.loads((fold_models[0] / "state.json").read_text())["head"]
    result = compare_variants(
        tmp_path / "oof.parquet",
        head=head,
        baseline=(baseline_run, tmp / "baseline.json"),
        variants={"permuted": permuted_run},
        missing=[m.parent / "missing.parquet" for m in fold_models],
        metrics_out=tmp_path / "comparison.json",
        plots={"comparison": tmp_path / "c.png", "modality_value": tmp_path / "m.png"},
        primary_metric=None,
        n_bootstrap=30,
        confidence_level=0.9,
        seed=0,
    )
    assert result["primary_metric"] == "balanced_accuracy"
    assert result["chance"] == pytest.approx(1 / 3)
    models = result["models"]
    assert models["pipeline"]["balanced_accuracy"]["estimate"] > 0.8
    assert abs(models["permuted outcome"]["balanced_accuracy"]["estimate"] - 1 / 3) < 0.15
    # The paired difference is the difference of the two point estimates.
    difference = result["pipeline_minus_baseline"]
    assert difference["estimate"] == pytest.approx(
        models["pipeline"]["balanced_accuracy"]["estimate"]
        - models["linear baseline"]["balanced_accuracy"]["estimate"]
    )
    again = paired_difference(
        pipeline,
        pd.read_parquet(baseline_run),
        head=head,
        metric="balanced_accuracy",
        n_bootstrap=30,
        confidence_level=0.9,
        seed=0,
    )
    assert again == difference
    kinds = [row["kind"] for row in result["modality_value"]]
    assert kinds == ["all"] + ["missing"] * 4
    for png in ("c.png", "m.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="same rows"):
        paired_difference(
            pipeline.iloc[1:],
            pd.read_parquet(baseline_run),
            head=head,
            metric="balanced_accuracy",
            n_bootstrap=5,
            confidence_level=0.9,
            seed=0,
        )
