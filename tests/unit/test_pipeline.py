"""Tests of omics_ml.pipeline: fitting, predicting and freezing the deployable model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from omics_ml.io import read_matrix
from omics_ml.model import model_signature
from omics_ml.normalise import modality_frame, normaliser_from_spec
from omics_ml.pipeline import BOOSTER_FILE, STATE_FILE, OmicsPipeline, fit_pipeline

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "resources/example"
MODEL = {"n_estimators": 50, "early_stopping_rounds": 10}
CLASSES = ["Basal", "Her2", "LumA"]
PROBS = ["prob_Basal", "prob_Her2", "prob_LumA"]


def _specs() -> dict:
    """The example's modalities without supervised selection (tested in test_model_quality)."""
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for spec in config["modalities"].values():
        spec.pop("selection", None)
    return config["modalities"]


def _read(spec: dict, ids: list[str]) -> pd.DataFrame:
    matrix = read_matrix(
        ROOT / spec["path"],
        orientation=spec["orientation"],
        id_column=spec["id_column"],
        allow_text=spec.get("type") == "clinical",
    )
    return modality_frame(matrix).reindex(ids)


def _build_example() -> dict:
    """The example as one raw table with ``modality:feature`` columns (samples.csv order)."""
    specs = _specs()
    sheet = pd.read_csv(EXAMPLE / "samples.csv", dtype=str)
    outcomes = pd.read_csv(EXAMPLE / "outcomes.csv", dtype=str).set_index("sample_id")
    ids = sheet["sample_id"].tolist()
    blocks = []
    for name, spec in specs.items():
        block = _read(spec, ids)
        block.columns = [f"{name}:{f}" for f in block.columns]
        blocks.append(block)
    frame = pd.concat(blocks, axis=1).reset_index(drop=True)
    return {
        "frame": frame,
        "columns": frame.columns.tolist(),
        "labels": outcomes.loc[ids, "subtype"].tolist(),
        "groups": sheet["subject_id"].tolist(),
        "sample_ids": ids,
        "specs": specs,
    }


@pytest.fixture(scope="module")
def example() -> dict:
    return _build_example()


def _fit(example: dict, rows=None, *, seed: int = 42, **kwargs) -> OmicsPipeline:
    rows = np.arange(len(example["labels"])) if rows is None else rows
    outcomes = pd.DataFrame(
        {
            "subject_id": [example["groups"][i] for i in rows],
            "label": [example["labels"][i] for i in rows],
        }
    )
    config = {
        "task": "classification",
        "modalities": kwargs.pop("specs", example["specs"]),
        "model": MODEL,
        "seed": seed,
    }
    return fit_pipeline(
        kwargs.pop("frame", example["frame"]).iloc[rows],
        outcomes,
        config=config,
        classes=kwargs.pop("classes", CLASSES),
        **kwargs,
    )


@pytest.fixture(scope="module")
def pipeline(example: dict) -> OmicsPipeline:
    return _fit(example)


def _without(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame if c.startswith(prefix)])


def _nan(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    out = frame.copy()
    out[[c for c in frame if c.startswith(prefix)]] = np.nan
    return out


def test_fitted_pipeline_structure(pipeline: OmicsPipeline, example: dict):
    assert pipeline.classes == CLASSES
    assert list(pipeline.inputs) == ["mrna", "mirna", "protein", "rnaseq"]
    assert pipeline.input_columns == example["columns"]
    steps = {m: [type(s).__name__ for s in n.steps] for m, n in pipeline.normalisers.items()}
    assert steps == {
        "mrna": ["MissingnessFilter", "VarianceFilter", "MedianScaling"],
        "mirna": ["MissingnessFilter", "VarianceFilter", "QuantileNormalisation"],
        "protein": ["MissingnessFilter", "VarianceFilter", "MedianScaling"],
        "rnaseq": ["FilterByExpr", "CountNormaliser"],
    }
    assert pipeline.text_columns == []
    assert pipeline.batch_columns == []
    expected = [
        f"{m}:{f}" for m, n in pipeline.normalisers.items() for f in n.get_feature_names_out()
    ]
    assert pipeline.feature_names == expected
    assert len(pipeline.feature_names) == pipeline.booster.num_features()
    assert len(pipeline.feature_names) < len(example["columns"])  # filterByExpr drops genes
    info = pipeline.info
    assert 1 <= info["n_rounds"] <= MODEL["n_estimators"]
    assert info["n_training_samples"] == 150
    assert info["n_inner_fit_rows"] + info["n_inner_validation_rows"] == 150
    assert info["strata_counts"] == dict(pd.Series(example["labels"]).value_counts()[CLASSES])
    assert info["inner_validation_metric"] == "mlogloss"


def test_normalisers_are_fitted_on_the_training_rows(pipeline: OmicsPipeline, example: dict):
    for name, normaliser in pipeline.normalisers.items():
        block = example["frame"][[f"{name}:{f}" for f in pipeline.inputs[name]]]
        block.columns = pipeline.inputs[name]
        refit = normaliser_from_spec(example["specs"][name]).fit(block)
        assert json.dumps(refit.to_json()) == json.dumps(normaliser.to_json()), name


def test_transform_applies_each_modality_chain(pipeline: OmicsPipeline, example: dict):
    features = pipeline.transform(example["frame"])
    assert features.dtype == np.float32
    assert features.shape == (150, len(pipeline.feature_names))
    start = 0
    for name, normaliser in pipeline.normalisers.items():
        block = example["frame"][[f"{name}:{f}" for f in pipeline.inputs[name]]]
        block.columns = pipeline.inputs[name]
        expected = normaliser.transform(block)
        np.testing.assert_array_equal(features[:, start : start + expected.shape[1]], expected)
        start += expected.shape[1]
    assert start == features.shape[1]


def test_predict_proba_rows_sum_to_one_and_fit_training_data(pipeline, example):
    proba = pipeline.predict_proba(example["frame"])
    assert proba.shape == (150, 3)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    predicted = np.asarray(CLASSES)[proba.argmax(axis=1)]
    assert np.mean(predicted == np.asarray(example["labels"])) > 0.8


def test_column_order_does_not_matter(pipeline, example):
    order = np.random.default_rng(0).permutation(len(example["columns"]))
    shuffled = example["frame"].iloc[:, order]
    assert shuffled.columns.tolist() != example["columns"]
    np.testing.assert_array_equal(
        pipeline.predict_proba(shuffled), pipeline.predict_proba(example["frame"])
    )


def test_numbers_given_as_text_are_parsed(pipeline, example):
    frame = example["frame"].iloc[:5]
    as_text = frame.astype(str).replace("nan", "")
    assert all(pd.api.types.is_object_dtype(d) for d in as_text.dtypes)
    np.testing.assert_allclose(
        pipeline.predict_proba(as_text), pipeline.predict_proba(frame), atol=1e-6
    )


def test_save_load_round_trip(pipeline, example, tmp_path: Path):
    pipeline.save(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == sorted([STATE_FILE, BOOSTER_FILE])
    assert not any(p.suffix in {".pkl", ".pickle", ".joblib"} for p in tmp_path.rglob("*"))
    state = json.loads((tmp_path / "model" / STATE_FILE).read_text())
    assert state["classes"] == CLASSES
    assert state["feature_names"] == pipeline.feature_names
    assert all(m["normaliser"]["state_version"] == 2 for m in state["modalities"])
    loaded = OmicsPipeline.load(tmp_path / "model")
    assert loaded.classes == pipeline.classes
    assert loaded.inputs == pipeline.inputs
    assert loaded.feature_names == pipeline.feature_names
    np.testing.assert_array_equal(
        loaded.predict_proba(example["frame"]), pipeline.predict_proba(example["frame"])
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
    frame = _without(example["frame"], "protein:")
    frame.insert(0, "sample_id", example["sample_ids"])
    out = pipeline.predict_frame(frame)
    assert out.columns.tolist() == [
        "sample_id",
        "predicted_class",
        *PROBS,
        "missing_modalities",
    ]
    assert out["sample_id"].tolist() == example["sample_ids"]
    assert (out["missing_modalities"] == "protein").all()
    proba = out[PROBS].to_numpy()
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert set(out["predicted_class"]) <= set(CLASSES)
    assert out["predicted_class"].tolist() == np.asarray(CLASSES)[proba.argmax(axis=1)].tolist()
    # the same as an explicit NaN protein block
    np.testing.assert_array_equal(proba, pipeline.predict_proba(_nan(example["frame"], "protein:")))
    # and different from the full input: protein does reach the model
    full = pipeline.predict_proba(example["frame"])
    assert not np.array_equal(proba, full)


def test_predict_frame_reports_per_sample_missing_modalities(pipeline, example):
    frame = example["frame"].iloc[:3].copy()
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
    proba = out[PROBS].to_numpy()
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert (out["missing_modalities"] == "mrna;mirna;protein;rnaseq").all()
    # all inputs missing: every sample gets the same prediction
    np.testing.assert_array_equal(proba, np.repeat(proba[:1], 4, axis=0))


def test_partially_missing_features_are_treated_as_missing(pipeline, example, caplog):
    columns = example["columns"]
    drop = [c for c in columns if c.startswith("mrna:")][:10]
    with caplog.at_level("WARNING", logger="omics_ml.pipeline"):
        reduced = pipeline.predict_proba(example["frame"].drop(columns=drop))
    assert "mrna: 10 of 200 input features absent" in caplog.text
    X_nan = example["frame"].copy()
    X_nan[drop] = np.nan
    np.testing.assert_array_equal(reduced, pipeline.predict_proba(X_nan))


def test_duplicate_input_columns_raise(pipeline, example):
    frame = example["frame"].iloc[:3]
    duplicated = pd.concat([frame, frame.iloc[:, :2]], axis=1)
    with pytest.raises(ValueError, match="duplicate"):
        pipeline.predict_proba(duplicated)


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
    # frozen state fitted on other rows is not refitted on the training rows
    half = np.arange(0, 150, 2)
    other = _fit(example, half)
    kept = _fit(example, frozen_normalisers=other.normalisers)
    for name, normaliser in kept.normalisers.items():
        assert normaliser.to_json() == other.normalisers[name].to_json()
    assert kept.normalisers["mirna"].to_json() != pipeline.normalisers["mirna"].to_json()


def test_frozen_normalisers_on_other_features_raise(example, pipeline):
    specs = example["specs"]
    wrong = dict(pipeline.normalisers)
    feats = pipeline.inputs["protein"][:-1]  # fitted without its last feature
    block = example["frame"][[f"protein:{f}" for f in feats]]
    block.columns = feats
    wrong["protein"] = normaliser_from_spec(specs["protein"]).fit(block)
    with pytest.raises(ValueError, match="frozen normaliser of 'protein'"):
        _fit(example, frozen_normalisers=wrong)


def test_frozen_normalisers_without_feature_names_raise_value_error(example, pipeline):
    unfitted = {name: normaliser_from_spec(spec) for name, spec in example["specs"].items()}
    with pytest.raises(ValueError, match="other features"):
        _fit(example, frozen_normalisers=unfitted)
    # fitted on a table without the feature names (positional columns)
    wrong = dict(pipeline.normalisers)
    block = example["frame"][[c for c in example["columns"] if c.startswith("mrna:")]]
    wrong["mrna"] = normaliser_from_spec(example["specs"]["mrna"]).fit(
        pd.DataFrame(block.to_numpy())
    )
    with pytest.raises(ValueError, match="other features"):
        _fit(example, frozen_normalisers=wrong)


def test_modality_without_columns_raises(example):
    with pytest.raises(ValueError, match="mirna"):
        _fit(example, frame=_without(example["frame"], "mirna:"))


def test_binary_classification(example, tmp_path: Path):
    labels = np.asarray(example["labels"])
    rows = np.flatnonzero(labels != "Her2")
    binary = _fit(example, rows, classes=["Basal", "LumA"])
    assert binary.info["inner_validation_metric"] == "logloss"
    frame = example["frame"].iloc[rows]
    proba = binary.predict_proba(frame)
    assert proba.shape == (rows.size, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    predicted = np.asarray(["Basal", "LumA"])[proba.argmax(axis=1)]
    assert np.mean(predicted == labels[rows]) > 0.9
    binary.save(tmp_path)
    loaded = OmicsPipeline.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(frame), proba)
    out = loaded.predict_frame(frame.iloc[:5])
    assert out.columns.tolist()[2:4] == ["prob_Basal", "prob_LumA"]


def test_pipeline_does_not_modify_its_input(example):
    frame = example["frame"].iloc[:60].copy()
    before = frame.copy()
    rows = np.arange(60)
    fitted = _fit(example, rows, frame=frame)
    fitted.predict_frame(frame)
    pd.testing.assert_frame_equal(frame, before)
    pd.testing.assert_frame_equal(example["frame"], _build_example()["frame"])


def test_model_signature_of_numeric_pipeline(pipeline):
    inputs = model_signature(pipeline).inputs.inputs
    assert [c.name for c in inputs] == [
        "sample_id",
        "subject_id",
        "visit_time",
        *pipeline.input_columns,
    ]
    assert all(not c.required for c in inputs)
    assert [c.type.name for c in inputs[:3]] == ["string", "string", "double"]
    assert {c.type.name for c in inputs[3:]} == {"double"}


# --- a clinical modality with text ----------------------------------------------------------


@pytest.fixture(scope="module")
def clinical(example: dict) -> dict:
    """Example mRNA plus a clinical table: age and a text stage that carries signal."""
    rng = np.random.default_rng(3)
    labels = np.asarray(example["labels"])
    stage = np.where(labels == "Basal", "III", np.where(labels == "Her2", "II", "I")).astype(object)
    flip = rng.random(stage.size) < 0.3
    stage[flip] = rng.choice(["I", "II", "III"], size=int(flip.sum()))
    stage[[4, 17]] = None
    frame = example["frame"][[c for c in example["columns"] if c.startswith("mrna:")]].copy()
    frame["clinical:age"] = rng.uniform(30, 80, size=len(frame)).round(1)
    frame["clinical:stage"] = pd.Series(stage, index=frame.index, dtype=object)
    specs = {"mrna": example["specs"]["mrna"], "clinical": {"type": "clinical"}}
    fitted = _fit(example, frame=frame, specs=specs)
    return {"frame": frame, "pipeline": fitted}


def test_clinical_text_modality_pipeline(clinical):
    pipeline = clinical["pipeline"]
    assert pipeline.text_columns == ["clinical:stage"]
    assert pipeline.inputs["clinical"] == ["age", "stage"]
    assert pipeline.feature_names[-4:] == [
        "clinical:age",
        "clinical:stage=I",
        "clinical:stage=II",
        "clinical:stage=III",
    ]
    features = pipeline.transform(clinical["frame"])
    stage = clinical["frame"]["clinical:stage"]
    np.testing.assert_array_equal(features[:, -3][stage.notna()], (stage == "I")[stage.notna()])
    assert np.isnan(features[np.flatnonzero(stage.isna()), -3:]).all()


def test_clinical_unseen_category_warns_and_predicts(clinical, tmp_path: Path):
    pipeline = clinical["pipeline"]
    frame = clinical["frame"].iloc[:6].copy()
    frame.insert(0, "sample_id", [f"p{i}" for i in range(6)])
    frame.loc[frame.index[1], "clinical:stage"] = "IV"
    frame.loc[frame.index[2], "clinical:stage"] = " stage 4 "
    with pytest.warns(UserWarning, match=r"not seen in the development samples.*'IV'"):
        out = pipeline.predict_frame(frame)
    proba = out[PROBS].to_numpy()
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert out["missing_modalities"].tolist() == [""] * 6
    with pytest.warns(UserWarning):
        features = pipeline.transform(frame)
    np.testing.assert_array_equal(features[1:3, -3:], 0.0)  # unseen: no category column set
    # the frozen pipeline does the same after a save / load
    pipeline.save(tmp_path)
    with pytest.warns(UserWarning, match="'IV'"):
        again = OmicsPipeline.load(tmp_path).predict_frame(frame)
    pd.testing.assert_frame_equal(again, out)
    # without any clinical column the modality is missing, and nothing warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = pipeline.predict_frame(_without(frame, "clinical:"))
    assert out["missing_modalities"].tolist() == ["clinical"] * 6


def test_model_signature_with_text_and_batch_columns(clinical, batch_pipeline):
    inputs = {c.name: c for c in model_signature(clinical["pipeline"]).inputs.inputs}
    assert inputs["clinical:stage"].type.name == "string"
    assert inputs["clinical:age"].type.name == "double"
    assert inputs["sample_id"].type.name == "string"
    assert all(not c.required for c in inputs.values())
    assert sum(c.type.name == "string" for c in inputs.values()) == 3  # ids and the stage
    signature = model_signature(batch_pipeline["pipeline"]).inputs.inputs
    names = [c.name for c in signature]
    assert names[-1] == "run"
    assert signature[-1].type.name == "string"
    assert not signature[-1].required
    assert names.count("run") == 1


# --- a batch-corrected modality ---------------------------------------------------------------

BATCH_SPEC = {
    "type": "transcriptomics",
    "batch_column": "run",
    "normalisation": [{"method": "variance_filter", "top_n": 60}, {"method": "combat"}],
}


@pytest.fixture(scope="module")
def batch_pipeline(example: dict) -> dict:
    """Example mRNA with a synthetic effect on batch "r2"; the labels in column "run"."""
    mrna = [c for c in example["columns"] if c.startswith("mrna:")]
    frame = example["frame"][mrna].copy()
    run = np.where(np.arange(len(frame)) % 3 == 0, "r2", "r1").astype(object)
    frame.loc[run == "r2", mrna] = frame.loc[run == "r2", mrna] * 1.2 + 1.0
    frame["run"] = run
    fitted = _fit(example, frame=frame, specs={"mrna": BATCH_SPEC})
    return {"frame": frame, "pipeline": fitted}


def test_combat_pipeline_reads_the_batch_column(batch_pipeline):
    pipeline, frame = batch_pipeline["pipeline"], batch_pipeline["frame"]
    assert pipeline.batch_columns == ["run"]
    assert pipeline.input_columns == [c for c in frame if c != "run"]
    normaliser = pipeline.normalisers["mrna"]
    assert normaliser.uses_batch
    block = frame.drop(columns="run")
    block.columns = pipeline.inputs["mrna"]
    expected = normaliser.transform(block, batch=frame["run"].to_numpy())
    np.testing.assert_array_equal(pipeline.transform(frame), expected)
    # the fit used the labels of the frame
    refit = normaliser_from_spec(BATCH_SPEC).fit(block, batch=frame["run"].to_numpy())
    assert refit.to_json() == normaliser.to_json()
    # the labels are read from the column: swapping them changes the features
    swapped = frame.assign(run=np.where(frame["run"] == "r1", "r2", "r1"))
    assert not np.allclose(pipeline.transform(swapped), pipeline.transform(frame))
    # and a patient is scored alike alone or in a batch
    together = pipeline.predict_proba(frame.iloc[:10])
    alone = np.vstack([pipeline.predict_proba(frame.iloc[[i]]) for i in range(10)])
    np.testing.assert_array_equal(alone, together)


def test_combat_pipeline_without_or_with_unseen_batch_labels(batch_pipeline, example):
    pipeline, frame = batch_pipeline["pipeline"], batch_pipeline["frame"]
    with pytest.raises(ValueError, match="not seen in fit"):
        pipeline.predict_proba(frame.drop(columns="run"))
    with pytest.raises(ValueError, match=r"'r9'"):
        pipeline.predict_proba(frame.assign(run="r9").iloc[:2])
    # training needs the labels
    with pytest.raises(ValueError, match=r"'run'"):
        _fit(example, frame=frame.drop(columns="run"), specs={"mrna": BATCH_SPEC})
    # unseen_batch="reference" scores unlabelled samples, leaving them unadjusted
    spec = {
        **BATCH_SPEC,
        "normalisation": [
            BATCH_SPEC["normalisation"][0],
            {"method": "combat", "unseen_batch": "reference"},
        ],
    }
    lenient = _fit(example, frame=frame, specs={"mrna": spec})
    unlabelled = frame.drop(columns="run").iloc[:5]
    out = lenient.predict_frame(unlabelled)
    assert np.isfinite(out[PROBS].to_numpy()).all()
    block = unlabelled.copy()
    block.columns = lenient.inputs["mrna"]
    filtered = lenient.normalisers["mrna"].steps[0].transform(block.to_numpy())
    np.testing.assert_allclose(lenient.transform(unlabelled), filtered, rtol=1e-6)
