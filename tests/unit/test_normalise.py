"""Tests of omics_ml.normalise: the frozen per-modality normaliser and the normalise step."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
from sklearn.utils.estimator_checks import parametrize_with_checks

from omics_ml.io import read_json
from omics_ml.normalise import (
    TYPE_DEFAULTS,
    ModalityNormaliser,
    normalise_modality_file,
    normaliser_from_spec,
    resolve_settings,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "resources/example"
SCALINGS = ["none", "median", "quantile"]

MIRNA_SPEC = {
    "type": "transcriptomics",
    "orientation": "features_in_rows",
    "id_column": "feature_id",
    "log_transform": False,
    "scaling": "quantile",
}


@parametrize_with_checks(
    [
        ModalityNormaliser(),
        ModalityNormaliser(scaling="median"),
        ModalityNormaliser(scaling="quantile"),
    ],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_tags_do_not_claim_float64_is_preserved():
    from sklearn.utils import get_tags

    estimator = ModalityNormaliser()
    X = np.random.default_rng(0).normal(size=(10, 3))
    out = estimator.fit_transform(X)
    assert out.dtype == np.float32
    assert "float64" not in get_tags(estimator).transformer_tags.preserves_dtype


def _data_with_nan(seed: int = 0, n: int = 40, p: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.lognormal(mean=2.0, sigma=1.0, size=(n, p)) * rng.uniform(0.5, 2.0, size=(n, 1))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[5] = np.nan  # a sample with every value missing
    return X


# --- settings -----------------------------------------------------------------------------


def test_resolve_settings_fills_type_defaults():
    settings = resolve_settings({"type": "proteomics", "log_transform": None, "scaling": None})
    assert settings["log_transform"] is TYPE_DEFAULTS["proteomics"]["log_transform"] is True
    assert settings["scaling"] == TYPE_DEFAULTS["proteomics"]["scaling"] == "median"
    assert settings["pseudocount"] == 1.0
    assert settings["max_missing_fraction"] == 0.5
    assert settings["min_variance"] == 0.0
    assert settings["top_variance"] is None


def test_resolve_settings_explicit_values_override_defaults():
    settings = resolve_settings(
        {
            "type": "rnaseq_counts",
            "log_transform": False,
            "scaling": "quantile",
            "pseudocount": 0.5,
            "max_missing_fraction": 0.1,
            "min_variance": 0.25,
            "top_variance": 7,
        }
    )
    assert settings == {
        "log_transform": False,
        "pseudocount": 0.5,
        "scaling": "quantile",
        "max_missing_fraction": 0.1,
        "min_variance": 0.25,
        "top_variance": 7,
    }


def test_resolve_settings_unknown_or_absent_type_uses_other():
    for spec in ({}, {"type": "not-a-type"}):
        settings = resolve_settings(spec)
        assert settings["log_transform"] is TYPE_DEFAULTS["other"]["log_transform"]
        assert settings["scaling"] == TYPE_DEFAULTS["other"]["scaling"]


def test_normaliser_from_spec_is_unfitted_and_configured():
    normaliser = normaliser_from_spec({"type": "methylation", "top_variance": 3})
    assert isinstance(normaliser, ModalityNormaliser)
    assert not hasattr(normaliser, "keep_")
    assert normaliser.get_params() == {
        "log_transform": False,
        "pseudocount": 1.0,
        "scaling": "none",
        "max_missing_fraction": 0.5,
        "min_variance": 0.0,
        "top_variance": 3,
    }


def test_unknown_scaling_raises():
    with pytest.raises(ValueError, match="scaling"):
        ModalityNormaliser(scaling="zscore").fit(np.ones((4, 2)) + np.arange(8).reshape(4, 2))


# --- JSON state ---------------------------------------------------------------------------


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("log_transform", [False, True])
def test_json_round_trip_transforms_identically(scaling: str, log_transform: bool):
    X = _data_with_nan()
    fitted = ModalityNormaliser(scaling=scaling, log_transform=log_transform, top_variance=9).fit(
        pd.DataFrame(X, columns=[f"g{i}" for i in range(X.shape[1])])
    )
    state = json.loads(json.dumps(fitted.to_json()))
    restored = ModalityNormaliser.from_json(state)
    new = pd.DataFrame(_data_with_nan(seed=1, n=15), columns=fitted.feature_names_in_)
    expected = fitted.transform(new)
    got = restored.transform(new)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert restored.to_json() == fitted.to_json()
    np.testing.assert_array_equal(restored.get_feature_names_out(), fitted.get_feature_names_out())


def test_json_round_trip_without_feature_names():
    X = _data_with_nan()
    fitted = ModalityNormaliser(scaling="quantile").fit(X)
    state = json.loads(json.dumps(fitted.to_json()))
    assert state["feature_names_in"] is None
    restored = ModalityNormaliser.from_json(state)
    np.testing.assert_array_equal(restored.transform(X), fitted.transform(X))


def test_from_json_rejects_other_state_version():
    state = ModalityNormaliser().fit(_data_with_nan()).to_json()
    state["state_version"] = 999
    with pytest.raises(ValueError, match="state_version"):
        ModalityNormaliser.from_json(state)


# --- scaling ------------------------------------------------------------------------------


def test_median_scaling_sets_every_sample_median_to_reference():
    X = _data_with_nan()
    normaliser = ModalityNormaliser(scaling="median", log_transform=True).fit(X[:30])
    Z = np.log2(X[:30] + 1.0)[:, normaliser.keep_]
    Z = Z[~np.all(np.isnan(Z), axis=1)]
    assert normaliser.reference_median_ == pytest.approx(np.median(np.nanmedian(Z, axis=1)))
    # new samples (not in fit) too: scaling is per sample against the frozen reference
    for rows in (X[:30], X[30:]):
        out = normaliser.transform(rows)
        observed = ~np.all(np.isnan(out), axis=1)
        medians = np.nanmedian(out[observed], axis=1)
        np.testing.assert_allclose(medians, normaliser.reference_median_, rtol=1e-5, atol=1e-5)


def test_median_scaling_only_shifts_each_sample():
    X = _data_with_nan()
    normaliser = ModalityNormaliser(scaling="median").fit(X)
    out = normaliser.transform(X).astype(np.float64)
    diff = out - X[:, normaliser.keep_]
    for row in diff:
        finite = row[np.isfinite(row)]
        if finite.size:
            np.testing.assert_allclose(finite, finite[0], atol=1e-4)


def test_quantile_maps_training_sample_onto_reference():
    rng = np.random.default_rng(3)
    X = rng.normal(loc=rng.uniform(0, 10, size=10), scale=2.0, size=(25, 10))
    normaliser = ModalityNormaliser(scaling="quantile").fit(X)
    assert normaliser.keep_.all()
    ref = normaliser.reference_quantiles_
    assert ref.shape == (10,)
    assert np.all(np.diff(ref) > 0)
    expected_ref = np.mean(np.quantile(X, np.linspace(0, 1, 10), axis=1), axis=1)
    np.testing.assert_allclose(ref, expected_ref)
    out = normaliser.transform(X)
    for raw, mapped in zip(X, out, strict=True):
        # each value lands on the reference quantile of its rank
        np.testing.assert_allclose(np.sort(mapped), ref.astype(np.float32), rtol=1e-6)
        np.testing.assert_array_equal(np.argsort(mapped), np.argsort(raw))


def _reference_quantile_map(Z: np.ndarray, reference: np.ndarray) -> np.ndarray:
    grid = np.linspace(0.0, 1.0, reference.size)
    out = np.full(Z.shape, np.nan)
    for i, row in enumerate(Z):
        observed = ~np.isnan(row)
        n = int(observed.sum())
        if n == 0:
            continue
        # one observed value sits at the reference median; otherwise rank / (n - 1)
        fraction = np.array([0.5]) if n == 1 else (rankdata(row[observed]) - 1.0) / (n - 1.0)
        out[i, observed] = np.interp(fraction, grid, reference)
    return out


def test_quantile_matches_per_row_reference_with_nan():
    X = _data_with_nan(seed=4, n=50, p=15)
    X[7, 1:] = np.nan  # one observed value only
    X[8, :4] = 7.5  # ties
    normaliser = ModalityNormaliser(scaling="quantile", log_transform=True).fit(X[:35])
    for rows in (X[:35], X[35:], X[[7, 8, 5]]):
        Z = np.log2(rows + 1.0)[:, normaliser.keep_]
        expected = _reference_quantile_map(Z, normaliser.reference_quantiles_)
        got = normaliser.transform(rows)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(Z))
        np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6)


# --- filters ------------------------------------------------------------------------------


def _base(n: int = 20, p: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(10.0, 1.0, size=(n, p))


def test_max_missing_fraction_drops_feature_with_too_many_missing():
    X = _base()
    X[:11, 1] = np.nan  # 55 % missing
    X[:10, 2] = np.nan  # exactly 50 %: kept at the default 0.5
    normaliser = ModalityNormaliser().fit(X)
    np.testing.assert_array_equal(normaliser.keep_, [True, False, True, True, True])
    assert normaliser.transform(X).shape == (20, 4)
    stricter = ModalityNormaliser(max_missing_fraction=0.2).fit(X)
    np.testing.assert_array_equal(stricter.keep_, [True, False, False, True, True])


def test_min_variance_drops_constant_feature():
    X = _base()
    X[:, 3] = 1.0  # a constant whose mean is exact in floating point
    normaliser = ModalityNormaliser().fit(X)
    np.testing.assert_array_equal(normaliser.keep_, [True, True, True, False, True])
    assert normaliser.variance_[3] == 0.0


@pytest.mark.parametrize(("constant", "log_transform"), [(4.2, False), (1000.0, True)])
def test_min_variance_drops_any_constant_feature(constant: float, log_transform: bool):
    X = np.abs(_base())
    X[:, 3] = constant
    normaliser = ModalityNormaliser(log_transform=log_transform).fit(X)
    np.testing.assert_array_equal(normaliser.keep_, [True, True, True, False, True])
    assert normaliser.variance_[3] == 0.0


def test_min_variance_threshold():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3)) * np.array([0.1, 1.0, 3.0])
    normaliser = ModalityNormaliser(min_variance=0.5).fit(X)
    np.testing.assert_array_equal(normaliser.keep_, [False, True, True])


def test_top_variance_keeps_most_variable():
    rng = np.random.default_rng(2)
    scales = np.array([1.0, 5.0, 0.5, 3.0, 2.0, 4.0])
    X = rng.normal(size=(300, 6)) * scales
    normaliser = ModalityNormaliser(top_variance=3).fit(X)
    np.testing.assert_array_equal(np.flatnonzero(normaliser.keep_), [1, 3, 5])
    assert normaliser.transform(X).shape == (300, 3)
    names = [f"f{i}" for i in range(6)]
    fitted = ModalityNormaliser(top_variance=3).fit(pd.DataFrame(X, columns=names))
    assert fitted.get_feature_names_out().tolist() == ["f1", "f3", "f5"]


def test_top_variance_never_keeps_filtered_feature():
    X = _base(p=4)
    X[:, 0] = 1.0  # constant: filtered
    X[:15, 1] = np.nan  # too many missing, would otherwise be the most variable
    X[15:, 1] = [100.0, -100.0, 50.0, -50.0, 0.0]
    normaliser = ModalityNormaliser(top_variance=3).fit(X)
    np.testing.assert_array_equal(normaliser.keep_, [False, False, True, True])


def test_log_transform_with_negative_values_raises():
    X = _base()
    X[2, 2] = -0.5
    with pytest.raises(ValueError, match="negative"):
        ModalityNormaliser(log_transform=True).fit(X)
    fitted = ModalityNormaliser(log_transform=True).fit(np.abs(_base()))
    with pytest.raises(ValueError, match="negative"):
        fitted.transform(X)
    # without the log transform negative values are fine
    ModalityNormaliser(log_transform=False).fit(X)


def test_log_transform_uses_pseudocount():
    X = np.abs(_base())
    out = ModalityNormaliser(log_transform=True, pseudocount=0.5).fit(X).transform(X)
    np.testing.assert_allclose(out, np.log2(X + 0.5), rtol=1e-6)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_all_missing_row_stays_missing(scaling: str):
    X = _data_with_nan()
    normaliser = ModalityNormaliser(scaling=scaling).fit(X)
    new = np.full((2, X.shape[1]), np.nan)
    new[1] = X[0]
    out = normaliser.transform(new)
    assert np.isnan(out[0]).all()
    assert np.isnan(normaliser.transform(X)[5]).all()
    np.testing.assert_array_equal(out[1], normaliser.transform(X[:1])[0])


def test_no_feature_passing_filters_raises():
    with pytest.raises(ValueError, match="no feature passes"):
        ModalityNormaliser().fit(np.ones((5, 3)))


# --- fitted on training rows only ---------------------------------------------------------


@pytest.mark.parametrize("scaling", SCALINGS)
def test_state_depends_only_on_fitted_rows(scaling: str):
    X = _data_with_nan(n=40)
    train, other = np.arange(0, 40, 2), np.arange(1, 40, 2)
    before = ModalityNormaliser(scaling=scaling, top_variance=8).fit(X[train]).to_json()
    changed = X.copy()
    changed[other] = changed[other] * 10.0 + 3.0
    changed[other[:3]] = np.nan
    after = ModalityNormaliser(scaling=scaling, top_variance=8).fit(changed[train]).to_json()
    assert json.dumps(after) == json.dumps(before)
    # and the rows do matter when they are part of the fit
    pooled = ModalityNormaliser(scaling=scaling, top_variance=8).fit(changed).to_json()
    assert json.dumps(pooled) != json.dumps(before)


# --- the normalise step on the example miRNA file -----------------------------------------


def _write_splits(path: Path, sample_ids: list[str], n_dev: int = 120) -> tuple[list, list]:
    development, holdout = sample_ids[:n_dev], sample_ids[n_dev:]
    path.write_text(json.dumps({"development": development, "holdout": holdout, "folds": []}))
    return development, holdout


def _example_sample_ids() -> list[str]:
    return pd.read_csv(EXAMPLE / "samples.csv", dtype=str)["sample_id"].tolist()


def _run(tmp: Path, data: Path, splits: Path) -> tuple[ad.AnnData, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    h5ad_out, params_out = tmp / "mirna.h5ad", tmp / "mirna.params.json"
    spec = {**MIRNA_SPEC, "path": str(data)}
    normalise_modality_file("mirna", spec, splits=splits, h5ad_out=h5ad_out, params_out=params_out)
    return ad.read_h5ad(h5ad_out), params_out


def test_normalise_modality_file_on_example_mirna(tmp_path: Path):
    sample_ids = _example_sample_ids()
    development, _ = _write_splits(tmp_path / "splits.json", sample_ids)
    adata, params_out = _run(tmp_path / "out", EXAMPLE / "mirna.tsv", tmp_path / "splits.json")

    table = pd.read_csv(EXAMPLE / "mirna.tsv", sep="\t").set_index("feature_id")
    assert adata.var_names.tolist() == table.index.tolist()
    assert adata.obs_names.tolist() == table.columns.tolist()
    assert adata.shape == (150, 184)
    raw = np.asarray(adata.layers["raw"])
    assert raw.dtype == np.float32
    np.testing.assert_array_equal(raw, table.T.to_numpy(dtype=np.float32))

    is_dev = adata.obs_names.isin(development)
    np.testing.assert_array_equal(adata.obs["development"].to_numpy(), is_dev)
    assert (adata.var["modality"] == "mirna").all()
    kept = adata.var["kept"].to_numpy()
    assert kept.dtype == bool
    assert 0 < kept.sum() <= 184

    params = read_json(params_out)
    assert params["modality"] == "mirna"
    assert params["n_development_samples"] == 120
    state = params["normaliser"]
    assert state["params"]["scaling"] == "quantile"
    assert state["feature_names_in"] == table.index.tolist()
    np.testing.assert_array_equal(state["keep"], kept)

    # X: the development-fitted normaliser applied to every sample, NaN for dropped features
    normaliser = ModalityNormaliser.from_json(state)
    expected = normaliser.transform(pd.DataFrame(raw.astype(np.float64), columns=table.index))
    X = np.asarray(adata.X)
    np.testing.assert_array_equal(X[:, kept], expected)
    assert np.isnan(X[:, ~kept]).all()
    # the fit used the development samples only
    refit = ModalityNormaliser(scaling="quantile").fit(
        pd.DataFrame(raw[is_dev].astype(np.float64), columns=table.index)
    )
    assert json.dumps(refit.to_json()) == json.dumps(state)


def test_normalise_modality_file_ignores_holdout_values(tmp_path: Path):
    sample_ids = _example_sample_ids()
    _, holdout = _write_splits(tmp_path / "splits.json", sample_ids)
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

    original, params_a = _run(tmp_path / "a", EXAMPLE / "mirna.tsv", tmp_path / "splits.json")
    altered, params_b = _run(tmp_path / "b", modified, tmp_path / "splits.json")
    assert params_a.read_bytes() == params_b.read_bytes()
    # the holdout raw values did change, so the check above is not vacuous
    hold = original.obs_names.isin(holdout)
    np.testing.assert_allclose(
        np.asarray(altered.layers["raw"])[hold],
        np.asarray(original.layers["raw"])[hold] * 10,
        rtol=1e-6,
    )
    np.testing.assert_array_equal(np.asarray(altered.X)[~hold], np.asarray(original.X)[~hold])


def test_normalise_modality_file_without_development_samples_raises(tmp_path: Path):
    from omics_ml.io import InputError

    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"development": ["nobody"], "holdout": [], "folds": []}))
    with pytest.raises(InputError, match="no development sample"):
        _run(tmp_path / "out", EXAMPLE / "mirna.tsv", splits)
