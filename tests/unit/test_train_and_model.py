"""train_fold / train_final on the example, and the MLflow pyfunc model in a real local store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from omics_ml.integrate import integrate_modalities
from omics_ml.model import MODEL_CODE_PATH, PIPELINE_ARTIFACT, model_signature
from omics_ml.normalise import normalise_modality_file
from omics_ml.pipeline import OmicsPipeline
from omics_ml.split import write_splits
from omics_ml.train import train_final, train_fold
from omics_ml.validate import load_cohort

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("train")
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for key in ("samples", "outcomes"):
        config["cohort"][key] = str(ROOT / config["cohort"][key])
    for spec in config["modalities"].values():
        spec["path"] = str(ROOT / spec["path"])
    config["model"].update(n_estimators=60, early_stopping_rounds=10)
    config["evaluate"] = {"n_bootstrap": 20, "confidence_level": 0.9}
    write_splits(
        load_cohort(config),
        splits_out=tmp / "splits.json",
        cohort_out=tmp / "cohort.parquet",
        holdout_fraction=0.2,
        n_splits=3,
        seed=7,
    )
    for name, spec in config["modalities"].items():
        normalise_modality_file(
            name,
            spec,
            splits=tmp / "splits.json",
            h5ad_out=tmp / f"{name}.h5ad",
            params_out=tmp / f"{name}.params.json",
        )
    integrate_modalities(
        tmp / "cohort.parquet",
        {m: tmp / f"{m}.h5ad" for m in config["modalities"]},
        h5ad_out=tmp / "features.h5ad",
    )
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
        confusion_png=tmp / "c.png",
        roc_png=tmp / "r.png",
    )
    state = json.loads((tmp / "final/state.json").read_text())
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
    import anndata as ad

    adata = ad.read_h5ad(tmp / "features.h5ad")[holdout["sample_id"].tolist()]
    frame = pd.DataFrame(np.asarray(adata.X, dtype=np.float64), columns=adata.var_names)
    frame.insert(0, "sample_id", adata.obs_names.to_numpy())
    served = loaded.predict(frame)
    np.testing.assert_allclose(
        served.filter(like="prob_").to_numpy(), holdout.filter(like="prob_").to_numpy(), atol=1e-9
    )
    without_protein = loaded.predict(
        frame.drop(columns=[c for c in frame if c.startswith("protein:")])
    )
    assert (without_protein["missing_modalities"] == "protein").all()
