"""Nested tuning, in-fold selection, calibration and explanations of the fitted pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from omics_ml.integrate import raw_input_frame
from omics_ml.pipeline import OmicsPipeline, fit_pipeline
from omics_ml.tasks import UNCALIBRATED_PREFIX
from omics_ml.train import outcome_frame
from omics_ml.validate import load_cohort

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["Basal", "Her2", "LumA"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, build_features) -> dict:
    """The TCGA example integrated as the workflow does; training and held-out subjects."""
    tmp = tmp_path_factory.mktemp("quality")
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for key in ("samples", "outcomes"):
        config["cohort"][key] = str(ROOT / config["cohort"][key])
    for spec in config["modalities"].values():
        spec["path"] = str(ROOT / spec["path"])
        spec.pop("selection", None)
    config["model"].update(n_estimators=60, early_stopping_rounds=10)
    config["tuning"] = {"enabled": False}
    config["calibration"] = {"method": "none"}
    split, adata = build_features(tmp, load_cohort(config), config["modalities"], seed=3)
    train = adata[split["folds"][0]["train"]]
    test = adata[split["folds"][0]["test"]]
    return {"config": config, "train": train, "test": test}


def _fit(cohort: dict, **sections) -> OmicsPipeline:
    config = {**cohort["config"], **sections}
    train = cohort["train"]
    return fit_pipeline(
        raw_input_frame(train), outcome_frame(train), config=config, classes=CLASSES, nthread=1
    )


def _with_selection(cohort: dict) -> dict:
    modalities = json.loads(json.dumps(cohort["config"]["modalities"]))
    modalities["mrna"]["selection"] = {"method": "univariate", "max_features": 20}
    modalities["rnaseq"]["selection"] = {"method": "gain", "max_features": 15}
    return modalities


@pytest.fixture(scope="module")
def selected(cohort: dict) -> OmicsPipeline:
    return _fit(cohort, modalities=_with_selection(cohort))


def test_selection_caps_each_configured_modality(selected: OmicsPipeline) -> None:
    names = selected.feature_names
    modality = pd.Series([n.split(":")[0] for n in names]).value_counts()
    assert modality["mrna"] == 20 and modality["rnaseq"] == 15
    # Unconfigured modalities keep every normalised feature.
    n_mirna = sum(n.startswith("mirna:") for n in selected.design_feature_names)
    assert modality["mirna"] == n_mirna
    assert selected.booster.num_features() == len(names)
    assert selected.info["selection"]["mrna"] == {"n_in": 200, "n_kept": 20}


def test_selection_is_frozen_and_served(selected: OmicsPipeline, cohort: dict, tmp_path) -> None:
    selected.save(tmp_path)
    loaded = OmicsPipeline.load(tmp_path)
    frame = raw_input_frame(cohort["test"])
    pd.testing.assert_frame_equal(loaded.predict_frame(frame), selected.predict_frame(frame))
    assert loaded.feature_names == selected.feature_names


def test_selection_follows_the_training_outcome(cohort: dict, selected: OmicsPipeline) -> None:
    """Supervised selection is fitted on the training rows' outcome: shuffling it changes the
    kept features (a filter that ignored the outcome would not change)."""
    train = cohort["train"]
    outcomes = outcome_frame(train)
    shuffled = outcomes.assign(label=np.random.default_rng(0).permutation(outcomes["label"]))
    config = {**cohort["config"], "modalities": _with_selection(cohort)}
    other = fit_pipeline(raw_input_frame(train), shuffled, config=config, classes=CLASSES)
    assert other.feature_names != selected.feature_names


@pytest.fixture(scope="module")
def tuned(cohort: dict) -> OmicsPipeline:
    return _fit(cohort, tuning={"enabled": True, "n_trials": 3, "inner_cv_folds": 3})


def test_tuning_records_trials_and_trains_with_the_choice(tuned: OmicsPipeline) -> None:
    tuning = tuned.info["tuning"]
    assert tuning["n_trials"] == 3 and len(tuning["trials"]) == 3
    used = tuned.info["xgboost_params"]
    for name, value in tuning["params"].items():
        assert used[name] == value
    assert tuned.info["n_rounds"] == tuning["n_rounds"]
    assert tuned.info["inner_cv_folds"] == 3


def test_tuning_is_deterministic(tuned: OmicsPipeline, cohort: dict) -> None:
    again = _fit(cohort, tuning={"enabled": True, "n_trials": 3, "inner_cv_folds": 3})
    assert again.info["tuning"] == tuned.info["tuning"]
    assert "elapsed_s" not in tuned.info["tuning"]  # the state holds no wall time
    frame = raw_input_frame(cohort["test"])
    pd.testing.assert_frame_equal(again.predict_frame(frame), tuned.predict_frame(frame))


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrated_classifier(cohort: dict, method: str, tmp_path) -> None:
    calibrated = _fit(cohort, calibration={"method": method, "inner_cv_folds": 3})
    plain = _fit(cohort)
    assert calibrated.info["calibration"]["method"] == method
    test = cohort["test"]
    frame = raw_input_frame(test)
    evaluation = calibrated.evaluation_frame(frame, outcome_frame(test))
    probs = evaluation[[f"prob_{c}" for c in CLASSES]].to_numpy()
    raw = evaluation[[f"{UNCALIBRATED_PREFIX}{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0) and np.allclose(raw.sum(axis=1), 1.0)
    # The booster is the same; only the served probabilities are mapped.
    reference = plain.evaluation_frame(frame, outcome_frame(test))
    assert np.allclose(raw, reference[[f"prob_{c}" for c in CLASSES]].to_numpy(), atol=1e-6)
    assert not np.allclose(probs, raw)
    # Serving output stays the head's columns; the state round-trips without pickle.
    served = calibrated.predict_frame(frame)
    assert not any(c.startswith(UNCALIBRATED_PREFIX) for c in served)
    calibrated.save(tmp_path)
    pd.testing.assert_frame_equal(OmicsPipeline.load(tmp_path).predict_frame(frame), served)


def test_explanations_add_up_to_the_margin(selected: OmicsPipeline, cohort: dict) -> None:
    frame = raw_input_frame(cohort["test"])
    top = selected.explain(frame, top=5)
    n = cohort["test"].n_obs
    assert len(top) == 5 * n
    assert list(top.columns) == [
        "sample_id",
        "explained_class",
        "rank",
        "feature",
        "modality",
        "value",
        "contribution",
    ]
    by_row = top.groupby("sample_id")["contribution"]
    assert (by_row.apply(lambda c: np.all(np.diff(np.abs(c.to_numpy())) <= 1e-7))).all()
    modalities = selected.explain_modalities(frame)
    predicted = selected.predict_frame(frame)
    assert (modalities["explained_class"] == predicted["predicted_class"]).all()
    _, features, _ = selected.design(frame)
    margins = selected.booster.predict(
        __import__("xgboost").DMatrix(features), output_margin=True
    ).reshape(n, len(CLASSES))
    index = pd.Index(CLASSES).get_indexer(modalities["explained_class"])
    totals = modalities.drop(columns=["sample_id", "explained_class"]).sum(axis=1).to_numpy()
    assert np.allclose(totals, margins[np.arange(n), index], atol=1e-4)


def test_unknown_subgroup_column_is_named(cohort: dict) -> None:
    from omics_ml.io import InputError

    config = {**cohort["config"], "evaluate": {"subgroups": [{"column": "sex"}]}}
    with pytest.raises(InputError, match=r"evaluate.subgroups\[0\].column 'sex'"):
        load_cohort(config)
    config["evaluate"]["subgroups"] = [{"column": "clinical:age"}]
    with pytest.raises(InputError, match="names modality 'clinical'"):
        load_cohort(config)


def test_subgroups_from_input_columns(cohort: dict, tmp_path) -> None:
    """A subgroup defined by an input value (a median split of a gene here: TCGA has no
    clinical covariates) is read from the integrated data for each prediction row."""
    from omics_ml.review import evaluate_subgroups

    train, test = cohort["train"], cohort["test"]
    pipeline = _fit(cohort)
    predicted = pipeline.evaluation_frame(raw_input_frame(test), outcome_frame(test))
    predicted.to_parquet(tmp_path / "predictions.parquet")
    features = tmp_path / "features.h5ad"
    ad.concat([train, test]).write_h5ad(features)
    gene = raw_input_frame(test)["mrna:ZNF552"]
    result = evaluate_subgroups(
        features,
        {"cv": tmp_path / "predictions.parquet"},
        head=pipeline.head.to_json(),
        specs=[
            {
                "column": "mrna:ZNF552",
                "name": "ZNF552",
                "bins": [float(gene.median())],
                "min_subjects": 5,
            }
        ],
        primary_metric=None,
        metrics_out=tmp_path / "subgroups.json",
        plots={"cv": tmp_path / "subgroups.png"},
        n_bootstrap=20,
        confidence_level=0.9,
        seed=1,
    )
    levels = result["cv"]["subgroups"]["ZNF552"]
    assert sum(v["n_subjects"] for v in levels.values()) == test.n_obs
    assert (tmp_path / "subgroups.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "subgroups.json").read_text())["primary_metric"] == (
        "balanced_accuracy"
    )
