"""Tests of omics_ml.normalise: the chain of frozen steps and the normalise step."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from omics_ml.io import InputError, read_json, read_matrix
from omics_ml.normalise import (
    METHODS,
    TYPE_DEFAULT_STEPS,
    ModalityNormaliser,
    build_step,
    modality_frame,
    normalise_modality_file,
    normalised_frame,
    normaliser_from_spec,
    resolve_steps,
)
from omics_ml.transforms import STEP_REGISTRY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "resources/example"
CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())
N_DEV = 120


def _example_sample_ids() -> list[str]:
    return pd.read_csv(EXAMPLE / "samples.csv", dtype=str)["sample_id"].tolist()


def _step_names(normaliser: ModalityNormaliser) -> list[str]:
    return [type(step).__name__ for step in normaliser.steps]


# --- example-derived raw tables, one per modality type ------------------------------------


def _mrna() -> pd.DataFrame:
    """Example mRNA (log scale), samples x genes."""
    return pd.read_csv(EXAMPLE / "mrna.csv", dtype={"sample_id": str}).set_index("sample_id")


def _protein_intensities() -> pd.DataFrame:
    """Raw-scale intensities from the example RPPA values, with zeros (undetected) and NaN."""
    protein = pd.read_parquet(EXAMPLE / "protein.parquet").set_index("sample_id").iloc[:, :40]
    rng = np.random.default_rng(11)
    raw = np.exp2(protein.to_numpy() + 16.0)
    raw[rng.random(raw.shape) < 0.12] = 0.0  # below detection
    raw[rng.random(raw.shape) < 0.08] = np.nan  # not measured
    raw[:, 3] = 0.0  # never detected: dropped by the detection filter
    raw[rng.random(raw.shape[0]) < 0.5, 5] = 0.0  # detected in about half the samples
    return pd.DataFrame(raw, index=protein.index, columns=protein.columns)


def _metabolites() -> pd.DataFrame:
    """Positive concentrations (2**mRNA, sample dilution factors), with missing values."""
    rng = np.random.default_rng(12)
    mrna = _mrna().iloc[:, :50]
    values = np.exp2(mrna.to_numpy()) * rng.uniform(0.5, 2.0, size=(len(mrna), 1))
    values[rng.random(values.shape) < 0.1] = np.nan
    return pd.DataFrame(values, index=mrna.index, columns=[f"m{i}" for i in range(50)])


def _betas() -> pd.DataFrame:
    """Methylation beta values in [0, 1] (a logistic map of standardised mRNA), 0 and 1 included."""
    rng = np.random.default_rng(13)
    mrna = _mrna().iloc[:, 50:90]
    z = (mrna - mrna.mean()) / mrna.std()
    beta = 1.0 / (1.0 + np.exp(-1.5 * z.to_numpy()))
    beta[rng.random(beta.shape) < 0.05] = np.nan
    beta[0, 0], beta[1, 1] = 0.0, 1.0
    return pd.DataFrame(beta, index=mrna.index, columns=[f"cg{i:05d}" for i in range(40)])


def _clinical() -> pd.DataFrame:
    """Numeric age and a categorical stage (text), some of both missing."""
    ids = _example_sample_ids()
    rng = np.random.default_rng(14)
    age = rng.uniform(28, 85, size=len(ids)).round(1)
    age[[4, 9]] = np.nan
    stage = rng.choice(["I", "II", "III"], size=len(ids)).astype(object)
    stage[[2, 7]] = None
    return pd.DataFrame({"age": age, "stage": pd.Series(stage, index=ids, dtype=object)}, index=ids)


# --- steps from the config ----------------------------------------------------------------

EXPECTED_DEFAULTS = {
    "rnaseq_counts": ["FilterByExpr", "CountNormaliser"],
    "proteomics": ["DetectionFilter", "LeftCensoredImputer", "Log2", "MedianScaling"],
    "metabolomics": [
        "MissingnessFilter",
        "ProbabilisticQuotientNormalisation",
        "GeneralisedLog",
    ],
    "transcriptomics": ["MissingnessFilter", "VarianceFilter", "MedianScaling"],
    "methylation": ["MissingnessFilter", "BetaToM", "VarianceFilter"],
    "genotype": ["GenotypeQC"],
    "clinical": ["ClinicalEncoder"],
    "other": ["MissingnessFilter", "VarianceFilter"],
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_DEFAULTS))
def test_default_steps_per_type(kind: str):
    normaliser = normaliser_from_spec({"type": kind})
    assert _step_names(normaliser) == EXPECTED_DEFAULTS[kind]
    assert normaliser.batch_column == "batch"
    assert not normaliser.uses_batch
    assert not hasattr(normaliser, "feature_names_out_")  # unfitted


def test_default_step_parameters():
    counts = normaliser_from_spec({"type": "rnaseq_counts"}).steps[1].get_params()
    assert (counts["library_size"], counts["transformation"]) == ("tmm", "log_cpm")
    proteomics = normaliser_from_spec({"type": "proteomics"}).steps
    assert proteomics[0].get_params()["min_detection_rate"] == 0.5
    assert proteomics[1].get_params()["method"] == "half_minimum"
    assert proteomics[2].get_params()["pseudocount"] == 0.0
    for kind in ("metabolomics", "transcriptomics", "methylation", "other"):
        assert normaliser_from_spec({"type": kind}).steps[0].max_missing_fraction == 0.5


@pytest.mark.parametrize("spec", [{}, {"type": None}, {"type": "not-a-type"}])
def test_absent_or_unknown_type_uses_other(spec: dict):
    assert _step_names(normaliser_from_spec(spec)) == EXPECTED_DEFAULTS["other"]


def test_explicit_normalisation_list_overrides_type_defaults():
    spec = {
        "type": "proteomics",
        "batch_column": "run",
        "normalisation": [
            {"method": "log2", "pseudocount": 0.5},
            {"method": "variance_filter", "top_n": 7},
            {"method": "combat", "mean_only": True},
        ],
    }
    normaliser = normaliser_from_spec(spec, name="prot")
    assert _step_names(normaliser) == ["Log2", "VarianceFilter", "ComBat"]
    assert normaliser.steps[0].pseudocount == 0.5
    assert normaliser.steps[1].top_n == 7
    assert normaliser.steps[2].mean_only is True
    assert normaliser.batch_column == "run"
    assert normaliser.uses_batch


def test_resolve_steps_returns_copies():
    steps = resolve_steps({"type": "proteomics"})
    steps[0]["min_detection_rate"] = 0.99
    steps.append({"method": "combat"})
    assert TYPE_DEFAULT_STEPS["proteomics"][0]["min_detection_rate"] == 0.5
    assert len(resolve_steps({"type": "proteomics"})) == 4
    explicit = [{"method": "log2"}]
    resolved = resolve_steps({"normalisation": explicit})
    resolved[0]["pseudocount"] = 3.0
    assert explicit == [{"method": "log2"}]


def test_every_method_names_a_registered_step():
    for method, step in METHODS.items():
        assert step in STEP_REGISTRY, method
        assert type(build_step({"method": method})).__name__ == step


@pytest.mark.parametrize("entry", [{"method": "zscore"}, {"pseudocount": 1.0}, {"method": None}])
def test_build_step_unknown_method(entry: dict):
    with pytest.raises(InputError) as excinfo:
        build_step(entry, where="modalities.x.normalisation[2]")
    message = str(excinfo.value)
    assert "modalities.x.normalisation[2]" in message
    assert "unknown method" in message
    assert repr(entry.get("method")) in message
    assert "quantile_normalisation" in message  # the known methods are listed


def test_build_step_unknown_parameter_names_key_and_allowed():
    with pytest.raises(InputError) as excinfo:
        build_step({"method": "log2", "pseudo_count": 1.0}, where="modalities.m.normalisation[0]")
    message = str(excinfo.value)
    assert "modalities.m.normalisation[0]" in message
    assert "'log2'" in message
    assert "pseudo_count" in message
    assert "['pseudocount']" in message


def test_normaliser_from_spec_error_names_the_config_key():
    spec = {"normalisation": [{"method": "log2"}, {"method": "median_scaling", "center": 1}]}
    with pytest.raises(InputError, match=r"modalities\.prot\.normalisation\[1\]"):
        normaliser_from_spec(spec, name="prot")
    spec = {"normalisation": [{"method": "log2"}, {"method": "tmm"}]}
    with pytest.raises(InputError, match=r"modalities\.prot\.normalisation\[1\].*'tmm'"):
        normaliser_from_spec(spec, name="prot")


@pytest.mark.parametrize(
    ("method", "key", "value", "attribute"),
    [
        ("left_censored_imputation", "imputation", "downshifted_normal", "method"),
        ("feature_scaling", "scaling", "auto", "method"),
    ],
)
def test_renamed_config_keys(method: str, key: str, value: str, attribute: str):
    step = build_step({"method": method, key: value})
    assert getattr(step, attribute) == value
    # the step's own parameter name is not a config key: "method" names the step
    with pytest.raises(InputError) as excinfo:
        build_step({"method": method, key: value, "extra": 1}, where="w")
    message = str(excinfo.value)
    assert "extra" in message
    assert repr(key) in message  # the allowed list shows the config key ...
    assert "'method'" not in message.split("parameters are")[1]  # ... not the step's name
    # a renamed key is not accepted by other steps
    with pytest.raises(InputError, match=key):
        build_step({"method": "log2", key: value})


def test_renamed_key_value_is_validated_at_fit():
    step = build_step({"method": "feature_scaling", "scaling": "zscore"})
    with pytest.raises(ValueError, match="zscore"):
        step.fit(np.random.default_rng(0).normal(size=(5, 3)))


# --- the chain ----------------------------------------------------------------------------


def _proteomics_chain() -> ModalityNormaliser:
    return normaliser_from_spec(
        {
            "type": "proteomics",
            "normalisation": [
                *TYPE_DEFAULT_STEPS["proteomics"],
                {"method": "variance_filter", "top_n": 20},
                {"method": "feature_scaling", "scaling": "auto"},
            ],
        }
    )


def test_chain_output_dtype_names_and_kept_inputs():
    data = _protein_intensities()
    normaliser = _proteomics_chain().fit(data.iloc[:N_DEV])
    out = normaliser.transform(data)
    assert out.dtype == np.float32
    names = normaliser.get_feature_names_out()
    assert out.shape == (len(data), 20) == (len(data), len(names))
    assert normaliser.feature_names_in_.tolist() == data.columns.tolist()
    assert normaliser.text_features_ == []
    assert data.columns[3] not in names  # never detected
    assert set(names) <= set(data.columns)
    kept = normaliser.kept_inputs()
    assert kept.dtype == bool
    np.testing.assert_array_equal(kept, data.columns.isin(names))
    # each step saw the previous step's output: the chain equals the steps run by hand
    step_data = data.iloc[:N_DEV].to_numpy()
    for step in normaliser.steps:
        step_data = step.transform(step_data)
    np.testing.assert_array_equal(out[:N_DEV], step_data.astype(np.float32))


def test_chain_json_round_trip_transforms_identically():
    data = _protein_intensities()
    fitted = _proteomics_chain().fit(data.iloc[:N_DEV])
    state = json.loads(json.dumps(fitted.to_json()))
    assert state["state_version"] == 2
    assert [s["step"] for s in state["steps"]] == _step_names(fitted)
    assert state["feature_names_in"] == data.columns.tolist()
    restored = ModalityNormaliser.from_json(state)
    assert _step_names(restored) == _step_names(fitted)
    new = data.iloc[N_DEV:]
    got = restored.transform(new)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, fitted.transform(new))
    assert restored.to_json() == fitted.to_json()
    np.testing.assert_array_equal(restored.get_feature_names_out(), fitted.get_feature_names_out())
    np.testing.assert_array_equal(restored.kept_inputs(), fitted.kept_inputs())
    assert restored.describe() == fitted.describe()


def test_from_json_rejects_other_state_version():
    state = normaliser_from_spec({"type": "transcriptomics"}).fit(_mrna()).to_json()
    state["state_version"] = 1
    with pytest.raises(ValueError, match="state_version"):
        ModalityNormaliser.from_json(state)


def test_describe_lists_steps_with_parameters():
    described = normaliser_from_spec(
        {"normalisation": [{"method": "log2", "pseudocount": 0.25}, {"method": "median_scaling"}]}
    ).describe()
    assert described == ["Log2({'pseudocount': 0.25})", "MedianScaling({})"]


def test_transform_requires_the_fitted_columns_in_order():
    data = _mrna().iloc[:, :30]
    normaliser = normaliser_from_spec({"type": "transcriptomics"}).fit(data)
    with pytest.raises(ValueError, match="same order"):
        normaliser.transform(data[data.columns[::-1]])
    with pytest.raises(ValueError, match="same order"):
        normaliser.transform(data.iloc[:, :-1])


#: A modality type whose default chain is tested, and a table of that type.
DEFAULT_CHAINS = [
    ("transcriptomics", _mrna),
    ("proteomics", _protein_intensities),
    ("metabolomics", _metabolites),
    ("methylation", _betas),
    ("clinical", _clinical),
]


@pytest.mark.parametrize(("kind", "table"), DEFAULT_CHAINS)
def test_rows_without_the_modality_are_all_nan_and_not_fitted_on(kind: str, table):
    data = table().iloc[:N_DEV]
    absent = pd.DataFrame(
        {c: pd.Series([None] * 3, dtype=data[c].dtype) for c in data.columns},
        index=["absent1", "absent2", "absent3"],
    )
    # the absent rows interleaved with present ones
    padded = pd.concat([data.iloc[:10], absent.iloc[:2], data.iloc[10:], absent.iloc[2:]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        plain = normaliser_from_spec({"type": kind}).fit(data)
        with_absent = normaliser_from_spec({"type": kind}).fit(padded)
        assert json.dumps(with_absent.to_json()) == json.dumps(plain.to_json())
        out = with_absent.transform(padded)
    missing = padded.index.str.startswith("absent")
    assert np.isnan(out[missing]).all()
    np.testing.assert_array_equal(out[~missing], plain.transform(data))
    assert not np.isnan(out[~missing]).all(axis=1).any()


def test_imputing_chain_leaves_rows_without_the_modality_missing():
    rng = np.random.default_rng(15)
    dosages = rng.binomial(2, rng.uniform(0.1, 0.5, size=30), size=(60, 30)).astype(float)
    dosages[rng.random(dosages.shape) < 0.01] = np.nan
    dosages[7] = np.nan  # not genotyped
    frame = pd.DataFrame(dosages, columns=[f"rs{i}" for i in range(30)])
    spec = {"type": "genotype", "normalisation": [{"method": "genotype_qc", "impute": "mean"}]}
    normaliser = normaliser_from_spec(spec).fit(frame)
    out = normaliser.transform(frame)
    assert np.isnan(out[7]).all()
    others = np.delete(out, 7, axis=0)
    assert np.isfinite(others).all()  # partly missing genotypes are imputed
    assert np.isnan(np.delete(dosages, 7, axis=0)).any()


def test_fit_needs_two_samples_holding_the_modality():
    data = _mrna().iloc[:5, :20].copy()
    data.iloc[1:] = np.nan
    with pytest.raises(ValueError, match="only 1 development sample"):
        normaliser_from_spec({"type": "transcriptomics"}).fit(data)


@pytest.mark.parametrize(("kind", "table"), DEFAULT_CHAINS)
def test_patient_alone_equals_patient_in_batch(kind: str, table):
    data = table()
    if kind == "clinical":  # categories never seen in the development samples
        data.loc[data.index[-2], "stage"] = "IV"
        data.loc[data.index[-1], "stage"] = "unknown"
    normaliser = normaliser_from_spec({"type": kind}).fit(data.iloc[:N_DEV])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        together = normaliser.transform(data)
        reversed_ = normaliser.transform(data.iloc[::-1])[::-1]
        alone = np.vstack([normaliser.transform(data.iloc[[i]]) for i in range(len(data))])
    assert together.shape[1] > 0
    np.testing.assert_array_equal(alone, together)
    np.testing.assert_array_equal(reversed_, together)
    assert np.isfinite(together).any(axis=1).all()


def test_proteomics_defaults_on_raw_intensities():
    data = _protein_intensities()
    normaliser = normaliser_from_spec({"type": "proteomics"}).fit(data.iloc[:N_DEV])
    out = normaliser.transform(data)
    names = normaliser.get_feature_names_out().tolist()
    assert data.columns[3] not in names
    kept = data[names].to_numpy()
    # below-detection zeros are imputed (finite, on the log scale); not measured stays NaN
    np.testing.assert_array_equal(np.isnan(out), np.isnan(kept))
    assert np.isfinite(out[kept == 0.0]).all()
    # per-sample median scaling: every sample's median is the frozen reference
    medians = np.nanmedian(out, axis=1)
    np.testing.assert_allclose(medians, medians[0], atol=1e-4)


def test_clinical_text_column_is_one_hot_encoded():
    data = _clinical()
    normaliser = normaliser_from_spec({"type": "clinical"}).fit(data.iloc[:N_DEV])
    assert normaliser.text_features_ == ["stage"]
    assert normaliser.get_feature_names_out().tolist() == [
        "age",
        "stage=I",
        "stage=II",
        "stage=III",
    ]
    np.testing.assert_array_equal(normaliser.kept_inputs(), [True, True])
    new = pd.DataFrame(
        {"age": [61.0, np.nan, 40.0], "stage": pd.Series(["II", "IV", None], dtype=object)}
    )
    with pytest.warns(UserWarning, match=r"'IV'"):
        out = normaliser.transform(new)
    expected = np.array([[61, 0, 1, 0], [np.nan, 0, 0, 0], [40, np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(out, expected.astype(np.float32))
    state = json.loads(json.dumps(normaliser.to_json()))
    assert state["text_features"] == ["stage"]
    restored = ModalityNormaliser.from_json(state)
    assert restored.text_features_ == ["stage"]
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(restored.transform(new), out)


def test_clinical_table_without_text_uses_configured_columns():
    """``categorical`` and ``ranges`` name columns, also when every column is numeric."""
    data = _clinical()[["age"]].copy()
    data["stage"] = np.tile([1.0, 2.0, 3.0], 50)
    data.iloc[5, 1] = np.nan
    spec = {
        "type": "clinical",
        "normalisation": [
            {
                "method": "clinical_encoding",
                "categorical": ["stage"],
                "ranges": {"age": [0, 120]},
            }
        ],
    }
    normaliser = normaliser_from_spec(spec).fit(data.iloc[:N_DEV])
    assert normaliser.text_features_ == []
    assert normaliser.get_feature_names_out().tolist() == ["age", "stage=1", "stage=2", "stage=3"]
    np.testing.assert_array_equal(normaliser.kept_inputs(), [True, True])
    out = normaliser.transform(data.iloc[:6])
    np.testing.assert_array_equal(out[:3, 1:], np.eye(3, dtype=np.float32))
    assert np.isnan(out[5, 1:]).all()
    implausible = data.iloc[:2].copy()
    implausible.iloc[1, 0] = 150.0  # months, not years
    with pytest.raises(ValueError, match=r"'age'.*outside the plausible range \[0, 120\]"):
        normaliser.transform(implausible)


# --- batch correction ---------------------------------------------------------------------

COMBAT_SPEC = {
    "type": "transcriptomics",
    "batch_column": "run",
    "normalisation": [{"method": "missingness_filter"}, {"method": "combat"}],
}


def _batched_mrna() -> tuple[pd.DataFrame, np.ndarray]:
    """Example mRNA with a synthetic additive and multiplicative effect on batch "b2"."""
    data = _mrna().iloc[:, :40].copy()
    batch = np.where(np.arange(len(data)) % 3 == 0, "b2", "b1").astype(object)
    b2 = batch == "b2"
    data.loc[b2] = data.loc[b2] * 1.3 + 1.5
    return data, batch


def test_combat_chain_removes_batch_effect_for_new_samples():
    data, batch = _batched_mrna()
    normaliser = normaliser_from_spec(COMBAT_SPEC)
    assert normaliser.uses_batch and normaliser.batch_column == "run"
    normaliser.fit(data.iloc[:N_DEV], batch=batch[:N_DEV])
    new, new_batch = data.iloc[N_DEV:], batch[N_DEV:]
    assert set(new_batch) == {"b1", "b2"}
    out = normaliser.transform(new, batch=new_batch)
    raw = new.to_numpy()
    b2 = new_batch == "b2"

    def gap(values):
        return np.abs(values[b2].mean(axis=0) - values[~b2].mean(axis=0)).mean()

    assert gap(raw) > 1.0
    assert gap(out) < 0.3 * gap(raw)
    # a new sample is corrected alike alone or with others
    alone = np.vstack(
        [normaliser.transform(new.iloc[[i]], batch=[new_batch[i]]) for i in range(len(new))]
    )
    np.testing.assert_array_equal(alone, out)
    # the batch label matters
    swapped = normaliser.transform(new, batch=np.where(b2, "b1", "b2"))
    assert not np.allclose(swapped, out)
    # and survives the JSON round trip
    restored = ModalityNormaliser.from_json(json.loads(json.dumps(normaliser.to_json())))
    assert restored.batch_column == "run" and restored.uses_batch
    np.testing.assert_array_equal(restored.transform(new, batch=new_batch), out)


def test_combat_chain_unseen_or_missing_batch_raises():
    data, batch = _batched_mrna()
    normaliser = normaliser_from_spec(COMBAT_SPEC).fit(data.iloc[:N_DEV], batch=batch[:N_DEV])
    new = data.iloc[N_DEV : N_DEV + 3]
    with pytest.raises(ValueError, match=r"'b3'.*not seen"):
        normaliser.transform(new, batch=["b1", "b3", "b2"])
    with pytest.raises(ValueError, match="not seen"):
        normaliser.transform(new)
    # rows without the modality need no batch label
    absent = pd.DataFrame(np.nan, index=["x"], columns=data.columns)
    assert np.isnan(normaliser.transform(absent, batch=[None])).all()


def test_combat_chain_fit_needs_batch_labels():
    data, _ = _batched_mrna()
    with pytest.raises(ValueError, match="batch"):
        normaliser_from_spec(COMBAT_SPEC).fit(data.iloc[:N_DEV])


# --- the normalise step on the example files ----------------------------------------------


def _write_splits(path: Path, sample_ids: list[str], n_dev: int = N_DEV) -> tuple[list, list]:
    development, holdout = sample_ids[:n_dev], sample_ids[n_dev:]
    path.write_text(json.dumps({"development": development, "holdout": holdout, "folds": []}))
    return development, holdout


def _spec(name: str, path: Path | None = None) -> dict:
    spec = dict(CONFIG["modalities"][name])
    spec["path"] = str(path if path is not None else ROOT / spec["path"])
    return spec


def _run(
    tmp: Path, name: str, spec: dict, splits: Path, cohort: Path | None = None
) -> tuple[ad.AnnData, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    h5ad_out, params_out = tmp / f"{name}.h5ad", tmp / f"{name}.params.json"
    normalise_modality_file(
        name, spec, splits=splits, cohort=cohort, h5ad_out=h5ad_out, params_out=params_out
    )
    return ad.read_h5ad(h5ad_out), params_out


def test_normalise_modality_file_on_example_mirna(tmp_path: Path):
    development, _ = _write_splits(tmp_path / "splits.json", _example_sample_ids())
    spec = _spec("mirna")
    adata, params_out = _run(tmp_path / "out", "mirna", spec, tmp_path / "splits.json")

    table = pd.read_csv(EXAMPLE / "mirna.tsv", sep="\t").set_index("feature_id")
    assert adata.var_names.tolist() == table.index.tolist()
    assert adata.obs_names.tolist() == table.columns.tolist()
    assert adata.shape == (150, 184)
    raw = np.asarray(adata.X)
    assert raw.dtype == np.float32
    np.testing.assert_array_equal(raw, table.T.to_numpy(dtype=np.float32))

    is_dev = adata.obs_names.isin(development)
    np.testing.assert_array_equal(adata.obs["development"].to_numpy(), is_dev)
    assert (adata.var["modality"] == "mirna").all()
    assert not adata.var["text"].any()
    assert "batch_column" not in adata.uns
    kept = adata.var["kept"].to_numpy()
    assert kept.dtype == bool
    assert 0 < kept.sum() <= 184

    params = read_json(params_out)
    assert params["modality"] == "mirna"
    assert params["n_development_samples"] == N_DEV
    state = params["normaliser"]
    assert [s["step"] for s in state["steps"]] == [
        "MissingnessFilter",
        "VarianceFilter",
        "QuantileNormalisation",
    ]
    assert state["steps"][0]["params"]["max_missing_fraction"] == 0.5
    assert state["feature_names_in"] == table.index.tolist()
    normaliser = ModalityNormaliser.from_json(state)
    assert params["steps"] == normaliser.describe()
    np.testing.assert_array_equal(normaliser.kept_inputs(), kept)

    # obsm: the development-fitted chain applied to every sample, named by output feature
    normalised = normalised_frame(adata)
    assert isinstance(normalised, pd.DataFrame)
    assert normalised.index.tolist() == adata.obs_names.tolist()
    assert normalised.columns.tolist() == state["feature_names_out"]
    assert normalised.columns.tolist() == table.index[kept].tolist()
    expected = normaliser.transform(pd.DataFrame(raw.astype(np.float64), columns=table.index))
    np.testing.assert_array_equal(normalised.to_numpy(), expected)
    # the fit used the development samples only
    refit = normaliser_from_spec(spec, name="mirna").fit(
        pd.DataFrame(raw[is_dev].astype(np.float64), columns=table.index)
    )
    assert json.dumps(refit.to_json()) == json.dumps(state)
    pooled = normaliser_from_spec(spec, name="mirna").fit(
        pd.DataFrame(raw.astype(np.float64), columns=table.index)
    )
    assert json.dumps(pooled.to_json()) != json.dumps(state)


def test_normalise_modality_file_ignores_holdout_values(tmp_path: Path):
    _, holdout = _write_splits(tmp_path / "splits.json", _example_sample_ids())
    holdout_set = set(holdout)

    lines = (EXAMPLE / "mirna.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    columns = [j for j, name in enumerate(header) if name in holdout_set]
    assert len(columns) == 30
    changed = [lines[0]]
    for line in lines[1:]:
        fields = line.split("\t")
        for j in columns:
            if fields[j] not in ("", "NA"):
                fields[j] = repr(float(fields[j]) * 10.0)
        changed.append("\t".join(fields))
    modified = tmp_path / "mirna_modified.tsv"
    modified.write_text("\n".join(changed) + "\n")

    splits = tmp_path / "splits.json"
    original, params_a = _run(tmp_path / "a", "mirna", _spec("mirna"), splits)
    altered, params_b = _run(tmp_path / "b", "mirna", _spec("mirna", modified), splits)
    assert params_a.read_bytes() == params_b.read_bytes()
    # the holdout raw values did change, so the check above is not vacuous
    hold = original.obs_names.isin(holdout)
    np.testing.assert_allclose(
        np.asarray(altered.X)[hold], np.asarray(original.X)[hold] * 10, rtol=1e-6
    )
    np.testing.assert_array_equal(
        normalised_frame(altered).to_numpy()[~hold], normalised_frame(original).to_numpy()[~hold]
    )
    # quantile normalisation only uses ranks within a sample: scaled holdout samples map alike
    np.testing.assert_array_equal(
        normalised_frame(altered).to_numpy()[hold], normalised_frame(original).to_numpy()[hold]
    )


def test_normalise_modality_file_without_development_samples_raises(tmp_path: Path):
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"development": ["nobody"], "holdout": [], "folds": []}))
    with pytest.raises(InputError, match="no development sample"):
        _run(tmp_path / "out", "mirna", _spec("mirna"), splits)


def test_normalise_modality_file_on_example_rnaseq_counts(tmp_path: Path):
    development, _ = _write_splits(tmp_path / "splits.json", _example_sample_ids())
    spec = _spec("rnaseq")
    assert spec["type"] == "rnaseq_counts" and "normalisation" not in spec
    adata, params_out = _run(tmp_path / "out", "rnaseq", spec, tmp_path / "splits.json")

    table = pd.read_csv(EXAMPLE / "rnaseq.tsv", sep="\t").set_index("gene_id")
    assert adata.shape == (150, 505)
    assert adata.var_names.tolist() == table.index.tolist()
    raw = np.asarray(adata.X)
    np.testing.assert_array_equal(raw, table.T.to_numpy(dtype=np.float32))

    state = read_json(params_out)["normaliser"]
    assert [s["step"] for s in state["steps"]] == ["FilterByExpr", "CountNormaliser"]
    normaliser = ModalityNormaliser.from_json(state)
    kept = adata.var["kept"].to_numpy()
    np.testing.assert_array_equal(kept, normaliser.kept_inputs())
    assert 0 < kept.sum() < 505  # filterByExpr drops lowly expressed genes
    normalised = normalised_frame(adata)
    assert normalised.columns.tolist() == table.index[kept].tolist()
    frame = pd.DataFrame(raw.astype(np.float64), columns=table.index)
    out = normalised.to_numpy()
    np.testing.assert_array_equal(out, normaliser.transform(frame))
    assert np.isfinite(out).all()
    # fitted on the development samples only
    is_dev = adata.obs_names.isin(development)
    refit = normaliser_from_spec(spec, name="rnaseq").fit(frame[is_dev])
    assert json.dumps(refit.to_json()) == json.dumps(state)
    # log-CPM is monotone in the counts within a sample
    counts = raw[:, kept]
    for i in range(0, 150, 15):
        order = np.argsort(counts[i], kind="stable")
        assert np.all(np.diff(out[i, order]) >= 0)
    # library-size normalisation: a sample sequenced twice as deep gives about the same log-CPM
    deeper = normaliser.transform(frame.iloc[N_DEV:] * 2.0)
    np.testing.assert_allclose(deeper, out[N_DEV:], atol=0.05)
    shallow_raw = out[N_DEV:] - np.log2(np.nansum(counts[N_DEV:], axis=1, keepdims=True))
    assert not np.allclose(shallow_raw, out[N_DEV:], atol=0.05)


def test_normalise_modality_file_with_batch_labels_from_the_cohort(tmp_path: Path):
    ids = _example_sample_ids()
    _write_splits(tmp_path / "splits.json", ids)
    data, batch = _batched_mrna()
    data = data.reindex(ids)
    batch = pd.Series(batch, index=_mrna().index).reindex(ids).to_numpy()
    data.reset_index(names="sample_id").to_csv(tmp_path / "mrna.csv", index=False)
    cohort = tmp_path / "cohort.parquet"
    pd.DataFrame({"sample_id": ids, "subject_id": ids, "run": batch}).to_parquet(cohort)
    spec = {**COMBAT_SPEC, "path": str(tmp_path / "mrna.csv")}

    adata, params_out = _run(tmp_path / "out", "mrna", spec, tmp_path / "splits.json", cohort)
    assert adata.uns["batch_column"] == "run"
    normaliser = ModalityNormaliser.from_json(read_json(params_out)["normaliser"])
    assert normaliser.batch_column == "run"
    raw = pd.DataFrame(np.asarray(adata.X, dtype=np.float64), columns=adata.var_names)
    expected = normaliser.transform(raw, batch=batch)
    np.testing.assert_array_equal(normalised_frame(adata).to_numpy(), expected)
    dev = slice(0, N_DEV)
    refit = normaliser_from_spec(spec).fit(raw.iloc[dev], batch=batch[dev])
    assert json.dumps(refit.to_json()) == json.dumps(normaliser.to_json())

    with pytest.raises(InputError, match=r"modalities\.mrna\.batch_column"):
        _run(tmp_path / "no_cohort", "mrna", spec, tmp_path / "splits.json")
    other = tmp_path / "other.parquet"
    pd.DataFrame({"sample_id": ids, "subject_id": ids, "batch": batch}).to_parquet(other)
    with pytest.raises(InputError, match="no column 'run'"):
        _run(tmp_path / "no_column", "mrna", spec, tmp_path / "splits.json", other)


def test_normalise_modality_file_with_clinical_text_column(tmp_path: Path):
    ids = _example_sample_ids()
    development, _ = _write_splits(tmp_path / "splits.json", ids)
    clinical = _clinical()
    clinical.loc[ids[-1], "stage"] = "IV"  # a holdout-only category
    path = tmp_path / "clinical.csv"
    clinical.reset_index(names="sample_id").to_csv(path, index=False)
    spec = {"path": str(path), "type": "clinical"}

    with pytest.warns(UserWarning, match="'IV'"):  # the holdout category, when transformed
        adata, params_out = _run(tmp_path / "out", "clinical", spec, tmp_path / "splits.json")
    assert adata.var_names.tolist() == ["age", "stage"]
    np.testing.assert_array_equal(adata.var["text"].to_numpy(), [False, True])
    np.testing.assert_array_equal(adata.var["kept"].to_numpy(), [True, True])
    raw = np.asarray(adata.X)
    np.testing.assert_array_equal(raw[:, 0], clinical["age"].to_numpy(dtype=np.float32))
    assert np.isnan(raw[:, 1]).all()  # text lives in obs, not in X
    stage = adata.obs["text:stage"]
    expected = clinical["stage"].reindex(adata.obs_names)
    assert stage.isna().tolist() == expected.isna().tolist()
    assert stage.dropna().astype(str).tolist() == expected.dropna().tolist()

    state = read_json(params_out)["normaliser"]
    assert state["text_features"] == ["stage"]
    normalised = normalised_frame(adata)
    # categories come from the development samples only: "IV" has no output column
    assert normalised.columns.tolist() == ["age", "stage=I", "stage=II", "stage=III"]
    assert sorted(set(clinical.loc[development, "stage"].dropna())) == ["I", "II", "III"]
    row = normalised.loc[ids[-1]]
    assert row[["stage=I", "stage=II", "stage=III"]].tolist() == [0.0, 0.0, 0.0]
    for category in ("I", "II", "III"):
        np.testing.assert_array_equal(
            normalised[f"stage={category}"].fillna(-1).to_numpy(),
            np.where(expected.isna(), -1, (expected == category).astype(float)),
        )
    # the same table through modality_frame and the frozen state
    matrix = read_matrix(path, allow_text=True)
    frame = modality_frame(matrix)
    assert frame["stage"].dtype == object
    with pytest.warns(UserWarning, match="IV"):
        again = ModalityNormaliser.from_json(state).transform(frame)
    np.testing.assert_array_equal(again, normalised.to_numpy())


def test_modality_frame_keeps_text_as_objects(tmp_path: Path):
    path = tmp_path / "clin.csv"
    path.write_text("sample_id,age,stage,grade\ns1,50,I,1\ns2,,II,\ns3,61.5,,3\n")
    frame = modality_frame(read_matrix(path, allow_text=True))
    assert frame.index.tolist() == ["s1", "s2", "s3"]
    assert frame.columns.tolist() == ["age", "stage", "grade"]
    assert frame["age"].dtype == np.float64 and frame["grade"].dtype == np.float64
    assert frame["stage"].dtype == object
    assert frame["stage"].tolist() == ["I", "II", None]
    np.testing.assert_array_equal(frame["grade"].to_numpy(), [1.0, np.nan, 3.0])


def test_normalise_modality_file_writes_thousands_of_features(tmp_path: Path):
    # A DataFrame in obsm stores its column list as one HDF5 attribute, which overflows at a
    # few thousand names; the output must hold any width.
    rng = np.random.default_rng(4)
    names = [f"ENSG00000{j:06d}.long_feature_name" for j in range(6000)]
    ids = [f"s{i:03d}" for i in range(40)]
    table = pd.DataFrame(rng.normal(8.0, 1.0, (40, 6000)).astype(np.float32), columns=names)
    table.insert(0, "sample_id", ids)
    table.to_parquet(tmp_path / "wide.parquet", index=False)
    _write_splits(tmp_path / "splits.json", ids, n_dev=30)
    spec = {
        "path": str(tmp_path / "wide.parquet"),
        "type": "other",
        "orientation": "samples_in_rows",
        "normalisation": [{"method": "median_scaling"}],
    }
    adata, _ = _run(tmp_path / "out", "wide", spec, tmp_path / "splits.json")
    normalised = normalised_frame(adata)
    assert normalised.shape == (40, 6000)
    assert normalised.columns.tolist() == names
    assert normalised.to_numpy().dtype == np.float32
