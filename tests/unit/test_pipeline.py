"""Tests of omics_ml.pipeline: fitting, predicting and freezing the deployable model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from omics_ml.io import read_matrix
from omics_ml.normalise import ModalityNormaliser
from omics_ml.pipeline import BOOSTER_FILE, STATE_FILE, OmicsPipeline, fit_pipeline

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "resources/example"
MODEL = {"n_estimators": 50, "early_stopping_rounds": 10}
CLASSES = ["Basal", "Her2", "LumA"]


def _specs() -> dict:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    return config["modalities"]


@pytest.fixture(scope="module")
def example() -> dict:
    """The example as one raw matrix with ``modality:feature`` columns (samples.csv order)."""
    specs = _specs()
    sheet = pd.read_csv(EXAMPLE / "samples.csv", dtype=str)
    outcomes = pd.read_csv(EXAMPLE / "outcomes.csv", dtype=str).set_index("sample_id")
    ids = sheet["sample_id"].tolist()
    blocks, columns = [], []
    for name, spec in specs.items():
        matrix = read_matrix(
            ROOT / spec["path"], orientation=spec["orientation"], id_column=spec["id_column"]
        )
        frame = pd.DataFrame(matrix.values, index=matrix.sample_ids).reindex(ids)
        blocks.append(frame.to_numpy(dtype=np.float64))
        columns += [f"{name}:{f}" for f in matrix.feature_names]
    X = np.hstack(blocks)
    X.flags.writeable = False  # shared by the tests: any accidental write fails loudly
    return {
        "X": X,
        "columns": columns,
        "labels": outcomes.loc[ids, "subtype"].tolist(),
        "groups": sheet["subject_id"].tolist(),
        "sample_ids": ids,
        "specs": specs,
    }


def _fit(example: dict, rows=None, *, seed: int = 42, **kwargs) -> OmicsPipeline:
    rows = np.arange(len(example["labels"])) if rows is None else rows
    return fit_pipeline(
        example["X"][rows],
        example["columns"],
        [example["labels"][i] for i in rows],
        [example["groups"][i] for i in rows],
        modality_specs=example["specs"],
        model=MODEL,
        classes=kwargs.pop("classes", CLASSES),
        seed=seed,
        **kwargs,
    )


@pytest.fixture(scope="module")
def pipeline(example: dict) -> OmicsPipeline:
    return _fit(example)


def test_fitted_pipeline_structure(pipeline: OmicsPipeline, example: dict):
    assert pipeline.classes == CLASSES
    assert list(pipeline.inputs) == ["mrna", "mirna", "protein"]
    assert pipeline.input_columns == example["columns"]
    assert pipeline.normalisers["mirna"].scaling == "quantile"
    assert pipeline.normalisers["mrna"].scaling == "median"
    n_kept = sum(int(n.keep_.sum()) for n in pipeline.normalisers.values())
    assert len(pipeline.feature_names) == n_kept == pipeline.booster.num_features()
    info = pipeline.info
    assert 1 <= info["n_rounds"] <= MODEL["n_estimators"]
    assert info["n_training_samples"] == 150
    assert info["n_inner_fit_samples"] + info["n_inner_validation_samples"] == 150
    assert info["class_counts"] == dict(pd.Series(example["labels"]).value_counts()[CLASSES])
    assert info["inner_validation_metric"] == "mlogloss"


def test_predict_proba_rows_sum_to_one_and_fit_training_data(pipeline, example):
    proba = pipeline.predict_proba(example["X"], example["columns"])
    assert proba.shape == (150, 3)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    predicted = np.asarray(CLASSES)[proba.argmax(axis=1)]
    assert np.mean(predicted == np.asarray(example["labels"])) > 0.8


def test_column_order_does_not_matter(pipeline, example):
    order = np.random.default_rng(0).permutation(len(example["columns"]))
    shuffled = pipeline.predict_proba(
        example["X"][:, order], [example["columns"][i] for i in order]
    )
    np.testing.assert_array_equal(
        shuffled, pipeline.predict_proba(example["X"], example["columns"])
    )


def test_save_load_round_trip(pipeline, example, tmp_path: Path):
    pipeline.save(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == sorted([STATE_FILE, BOOSTER_FILE])
    assert not any(p.suffix in {".pkl", ".pickle", ".joblib"} for p in tmp_path.rglob("*"))
    state = json.loads((tmp_path / "model" / STATE_FILE).read_text())
    assert state["classes"] == CLASSES
    assert state["feature_names"] == pipeline.feature_names
    loaded = OmicsPipeline.load(tmp_path / "model")
    assert loaded.classes == pipeline.classes
    assert loaded.inputs == pipeline.inputs
    assert loaded.feature_names == pipeline.feature_names
    np.testing.assert_array_equal(
        loaded.predict_proba(example["X"], example["columns"]),
        pipeline.predict_proba(example["X"], example["columns"]),
    )
    assert loaded.booster.save_raw("ubj") == pipeline.booster.save_raw("ubj")


def test_load_rejects_other_format_version(pipeline, tmp_path: Path):
    pipeline.save(tmp_path)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    state["format_version"] = 0
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ValueError, match="format_version"):
        OmicsPipeline.load(tmp_path)


def test_predict_frame_without_protein(pipeline, example):
    keep = [i for i, c in enumerate(example["columns"]) if not c.startswith("protein:")]
    frame = pd.DataFrame(example["X"][:, keep], columns=[example["columns"][i] for i in keep])
    frame.insert(0, "sample_id", example["sample_ids"])
    out = pipeline.predict_frame(frame)
    assert out.columns.tolist() == [
        "sample_id",
        "predicted_class",
        "prob_Basal",
        "prob_Her2",
        "prob_LumA",
        "missing_modalities",
    ]
    assert out["sample_id"].tolist() == example["sample_ids"]
    assert (out["missing_modalities"] == "protein").all()
    proba = out[["prob_Basal", "prob_Her2", "prob_LumA"]].to_numpy()
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert set(out["predicted_class"]) <= set(CLASSES)
    assert out["predicted_class"].tolist() == np.asarray(CLASSES)[proba.argmax(axis=1)].tolist()
    # the same as an explicit NaN protein block
    X_nan = example["X"].copy()
    X_nan[:, [c.startswith("protein:") for c in example["columns"]]] = np.nan
    np.testing.assert_array_equal(proba, pipeline.predict_proba(X_nan, example["columns"]))
    # and different from the full input: protein does reach the model
    full = pipeline.predict_proba(example["X"], example["columns"])
    assert not np.array_equal(proba, full)


def test_predict_frame_reports_per_sample_missing_modalities(pipeline, example):
    frame = pd.DataFrame(example["X"][:3].copy(), columns=example["columns"])
    protein = [c for c in example["columns"] if c.startswith("protein:")]
    mirna = [c for c in example["columns"] if c.startswith("mirna:")]
    frame.loc[0, protein] = np.nan
    frame.loc[2, protein + mirna] = np.nan
    out = pipeline.predict_frame(frame)
    assert out["missing_modalities"].tolist() == ["protein", "", "mirna;protein"]
    assert out["sample_id"].tolist() == ["0", "1", "2"]


def test_unknown_columns_give_nan_handled_predictions(pipeline, example):
    frame = pd.DataFrame(
        np.random.default_rng(0).normal(size=(4, 3)), columns=["foo:a", "bar:b", "mrna:NOT_A_GENE"]
    )
    out = pipeline.predict_frame(frame)
    proba = out[["prob_Basal", "prob_Her2", "prob_LumA"]].to_numpy()
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert (out["missing_modalities"] == "mrna;mirna;protein").all()
    # all inputs missing: every sample gets the same prediction
    np.testing.assert_array_equal(proba, np.repeat(proba[:1], 4, axis=0))


def test_partially_missing_features_are_treated_as_missing(pipeline, example):
    columns = example["columns"]
    drop = set([c for c in columns if c.startswith("mrna:")][:10])
    keep = [i for i, c in enumerate(columns) if c not in drop]
    reduced = pipeline.predict_proba(example["X"][:, keep], [columns[i] for i in keep])
    X_nan = example["X"].copy()
    X_nan[:, [c in drop for c in columns]] = np.nan
    np.testing.assert_array_equal(reduced, pipeline.predict_proba(X_nan, columns))


def test_duplicate_input_columns_raise(pipeline, example):
    columns = list(example["columns"])
    columns[1] = columns[0]
    with pytest.raises(ValueError, match="duplicate"):
        pipeline.predict_proba(example["X"], columns)


def test_same_seed_identical_booster_other_seed_differs(example, pipeline):
    again = _fit(example, seed=42)
    assert again.booster.save_raw("ubj") == pipeline.booster.save_raw("ubj")
    other = _fit(example, seed=7)
    assert other.booster.save_raw("ubj") != pipeline.booster.save_raw("ubj")


def test_frozen_normalisers_are_used(example, pipeline):
    frozen = pipeline.normalisers
    refit = _fit(example, frozen_normalisers=frozen)
    for name, normaliser in refit.normalisers.items():
        assert normaliser is frozen[name]
    assert refit.booster.save_raw("ubj") == pipeline.booster.save_raw("ubj")


def test_frozen_normalisers_on_other_features_raise(example):
    specs = example["specs"]
    wrong = {}
    for name in specs:
        feats = [c.partition(":")[2] for c in example["columns"] if c.startswith(f"{name}:")]
        X = example["X"][:, [c.startswith(f"{name}:") for c in example["columns"]]]
        if name == "protein":  # fitted without its last feature
            feats, X = feats[:-1], X[:, :-1]
        wrong[name] = ModalityNormaliser(scaling="median").fit(pd.DataFrame(X, columns=feats))
    with pytest.raises(ValueError, match="protein"):
        _fit(example, frozen_normalisers=wrong)


def test_frozen_normalisers_without_feature_names_raise_value_error(example):
    wrong = {
        name: ModalityNormaliser().fit(np.random.default_rng(0).normal(size=(20, 5)))
        for name in example["specs"]
    }
    with pytest.raises(ValueError, match="other features"):
        _fit(example, frozen_normalisers=wrong)


def test_modality_without_columns_raises(example):
    keep = [i for i, c in enumerate(example["columns"]) if not c.startswith("mirna:")]
    with pytest.raises(ValueError, match="mirna"):
        fit_pipeline(
            example["X"][:, keep],
            [example["columns"][i] for i in keep],
            example["labels"],
            example["groups"],
            modality_specs=example["specs"],
            model=MODEL,
            classes=CLASSES,
            seed=0,
        )


def test_binary_classification(example, tmp_path: Path):
    labels = np.asarray(example["labels"])
    rows = np.flatnonzero(labels != "Her2")
    binary = _fit(example, rows, classes=["Basal", "LumA"])
    assert binary.info["inner_validation_metric"] == "logloss"
    proba = binary.predict_proba(example["X"][rows], example["columns"])
    assert proba.shape == (rows.size, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    predicted = np.asarray(["Basal", "LumA"])[proba.argmax(axis=1)]
    assert np.mean(predicted == labels[rows]) > 0.9
    binary.save(tmp_path)
    loaded = OmicsPipeline.load(tmp_path)
    np.testing.assert_array_equal(
        loaded.predict_proba(example["X"][rows], example["columns"]), proba
    )
    out = loaded.predict_frame(pd.DataFrame(example["X"][rows[:5]], columns=example["columns"]))
    assert out.columns.tolist()[2:4] == ["prob_Basal", "prob_LumA"]
