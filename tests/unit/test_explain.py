"""Tests of exact tree SHAP explanations on real boosters trained on the example cohorts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from omics_ml.explain import (
    feature_importance_table,
    global_importance,
    modality_contributions,
    modality_importance,
    modality_of,
    plot_modality_importance,
    plot_shap_summary,
    select_output,
    shap_contributions,
    top_contributions,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "resources" / "example"
SURVIVAL = ROOT / "resources" / "survival_example"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BASE_PARAMS = {"max_depth": 3, "eta": 0.3, "seed": 0, "nthread": 2}


@dataclass(frozen=True)
class Fitted:
    """A trained booster with the matrix it explains."""

    booster: xgb.Booster
    features: np.ndarray
    names: list[str]
    row_ids: list[str]


def _train(
    params: dict, features: np.ndarray, names: list[str], rounds: int, **labels
) -> xgb.Booster:
    dmatrix = xgb.DMatrix(features, feature_names=names, **labels)
    return xgb.train({**BASE_PARAMS, **params}, dmatrix, num_boost_round=rounds)


def _margin(fitted: Fitted, features: np.ndarray | None = None) -> np.ndarray:
    values = fitted.features if features is None else features
    dmatrix = xgb.DMatrix(values, feature_names=fitted.names)
    return fitted.booster.predict(dmatrix, output_margin=True)


@pytest.fixture(scope="module")
def tcga() -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """TCGA mRNA + miRNA joined by sample id: matrix, qualified names, sample ids, subtype codes."""
    mrna = pd.read_csv(EXAMPLE / "mrna.csv").set_index("sample_id").add_prefix("mrna:")
    mirna = (
        pd.read_csv(EXAMPLE / "mirna.tsv", sep="\t").set_index("feature_id").T.add_prefix("mirna:")
    )
    outcomes = pd.read_csv(EXAMPLE / "outcomes.csv").set_index("sample_id")
    joined = mrna.join(mirna, how="inner").loc[outcomes.index]
    classes = pd.Categorical(outcomes["subtype"], categories=["Basal", "Her2", "LumA"]).codes
    values = joined.to_numpy(dtype=np.float32)
    return values, list(joined.columns), list(joined.index), np.asarray(classes, dtype=np.int64)


@pytest.fixture(scope="module")
def gse() -> tuple[np.ndarray, list[str], list[str], np.ndarray, np.ndarray]:
    """GSE1992: first 200 genes, sample ids, survival time and event."""
    expression = pd.read_parquet(SURVIVAL / "expression.parquet").set_index("sample_id")
    samples = pd.read_csv(SURVIVAL / "samples.csv").set_index("sample_id")
    outcomes = pd.read_csv(SURVIVAL / "outcomes.csv").set_index("subject_id")
    expression = expression.iloc[:, :200].add_prefix("mrna:")
    merged = outcomes.loc[samples.loc[expression.index, "subject_id"]]
    return (
        expression.to_numpy(dtype=np.float32),
        list(expression.columns),
        list(expression.index),
        merged["time"].to_numpy(dtype=np.float64),
        merged["event"].to_numpy(dtype=bool),
    )


@pytest.fixture(scope="module")
def models(tcga, gse) -> dict[str, Fitted]:
    """One trained booster per objective the pipeline uses."""
    x, names, ids, classes = tcga
    gx, gnames, gids, time, event = gse
    multiclass = _train(
        {"objective": "multi:softprob", "num_class": 3}, x, names, 40, label=classes
    )
    binary = _train(
        {"objective": "binary:logistic"}, x, names, 30, label=(classes == 0).astype(np.float32)
    )
    cox = _train({"objective": "survival:cox"}, gx, gnames, 30, label=np.where(event, time, -time))
    upper = np.where(event, time, np.inf)
    aft = _train(
        {"objective": "survival:aft", "aft_loss_distribution": "normal"},
        gx,
        gnames,
        30,
        label_lower_bound=time,
        label_upper_bound=upper,
    )
    regression = _train({"objective": "reg:squarederror"}, gx, gnames, 30, label=np.log(time))
    return {
        "multiclass": Fitted(multiclass, x, names, ids),
        "binary": Fitted(binary, x, names, ids),
        "cox": Fitted(cox, gx, gnames, gids),
        "aft": Fitted(aft, gx, gnames, gids),
        "regression": Fitted(regression, gx, gnames, gids),
    }


@pytest.fixture(scope="module")
def contribs(models) -> dict[str, np.ndarray]:
    """SHAP contributions of each booster on its training matrix."""
    return {key: shap_contributions(m.booster, m.features, nthread=2) for key, m in models.items()}


def test_contribution_shapes(models, contribs) -> None:
    n_tcga, p_tcga = models["multiclass"].features.shape
    n_gse, p_gse = models["cox"].features.shape
    assert contribs["multiclass"].shape == (n_tcga, 3, p_tcga + 1)
    assert contribs["binary"].shape == (n_tcga, p_tcga + 1)
    for key in ("cox", "aft", "regression"):
        assert contribs[key].shape == (n_gse, p_gse + 1)
    assert all(c.dtype == np.float32 for c in contribs.values())


@pytest.mark.parametrize("key", ["multiclass", "binary", "cox", "aft", "regression"])
def test_rows_sum_to_margin(models, contribs, key) -> None:
    margin = _margin(models[key])
    total = contribs[key].astype(np.float64).sum(axis=-1)
    assert total.shape == margin.shape
    np.testing.assert_allclose(total, margin, rtol=0, atol=1e-4)
    # The bias is the same for every row (per class), and contributions are not all zero.
    assert (np.ptp(contribs[key][..., -1], axis=0) == 0).all()
    assert np.abs(contribs[key][..., :-1]).max() > 0


def test_nthread_leaves_booster_unchanged(models) -> None:
    booster = models["binary"].booster
    before = json.loads(booster.save_config())["learner"]["generic_param"]["nthread"]
    shap_contributions(booster, models["binary"].features[:5], nthread=1)
    after = json.loads(booster.save_config())["learner"]["generic_param"]["nthread"]
    assert before == after == "2"


def test_select_output_per_row_and_int(contribs) -> None:
    c = contribs["multiclass"]
    rng = np.random.default_rng(0)
    chosen = rng.integers(0, 3, size=c.shape[0])
    picked = select_output(c, chosen)
    assert picked.shape == (c.shape[0], c.shape[2])
    expected = np.stack([c[i, k] for i, k in enumerate(chosen)])
    np.testing.assert_array_equal(picked, expected)
    np.testing.assert_array_equal(select_output(c, 2), c[:, 2, :])
    np.testing.assert_array_equal(select_output(contribs["binary"], None), contribs["binary"])


def test_select_output_rejects_bad_output(contribs) -> None:
    c = contribs["multiclass"]
    with pytest.raises(ValueError, match="output is required"):
        select_output(c, None)
    with pytest.raises(ValueError, match="output must be in"):
        select_output(c, 3)
    with pytest.raises(ValueError, match="outside"):
        select_output(c, np.full(c.shape[0], -1))
    with pytest.raises(ValueError, match="shape"):
        select_output(c, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="2-D"):
        select_output(c[0, 0], 0)


def test_modality_of() -> None:
    names = ["mrna:ESR1", "cd4:cd4@slope", "visits:n_visits", "mirna:hsa-let-7a:x"]
    assert modality_of(names).tolist() == ["mrna", "cd4", "visits", "mirna"]
    with pytest.raises(ValueError, match="feature_names"):
        modality_of(["mrna:ESR1", "ESR1"])
    with pytest.raises(ValueError, match="feature_names"):
        modality_of([":ESR1"])


def test_global_importance_matches_numpy(models, contribs) -> None:
    fitted = models["multiclass"]
    table = global_importance(contribs["multiclass"], fitted.names)
    assert list(table.columns) == ["feature", "modality", "mean_abs_shap"]
    assert len(table) == len(fitted.names)
    expected = np.abs(contribs["multiclass"][:, :, :-1].astype(np.float64)).mean(axis=(0, 1))
    direct = pd.Series(expected, index=fitted.names)
    np.testing.assert_allclose(table["mean_abs_shap"], direct[table["feature"]].to_numpy())
    assert table["mean_abs_shap"].is_monotonic_decreasing
    assert table["modality"].tolist() == [f.split(":", 1)[0] for f in table["feature"]]
    assert table["feature"].iloc[0] in fitted.booster.get_score(importance_type="weight")
    # Features never split on contribute nothing and keep feature order among themselves.
    zero = table[table["mean_abs_shap"] == 0]["feature"].tolist()
    assert zero == [f for f in fitted.names if f in set(zero)]


def test_global_importance_two_dimensional(models, contribs) -> None:
    fitted = models["cox"]
    table = global_importance(contribs["cox"], fitted.names)
    expected = np.abs(contribs["cox"][:, :-1].astype(np.float64)).mean(axis=0)
    order = np.argsort(-expected, kind="stable")
    assert table["feature"].tolist() == [fitted.names[i] for i in order]
    assert table["feature"].iloc[0] in fitted.booster.get_score()


@pytest.mark.parametrize("key", ["multiclass", "cox"])
def test_feature_importance_table_joins_shap_and_xgboost_scores(models, contribs, key) -> None:
    fitted = models[key]
    table = feature_importance_table(fitted.booster, contribs[key], fitted.names)
    assert list(table.columns) == [
        "modality",
        "feature",
        "mean_abs_shap",
        "total_gain",
        "gain",
        "weight",
        "total_cover",
    ]
    assert sorted(table["feature"]) == sorted(fitted.names)
    pd.testing.assert_frame_equal(
        table[["feature", "modality", "mean_abs_shap"]].reset_index(drop=True),
        global_importance(contribs[key], fitted.names)[["feature", "modality", "mean_abs_shap"]],
    )
    by_name = table.set_index("feature")
    for name, value in fitted.booster.get_score(importance_type="total_gain").items():
        assert by_name.loc[name, "total_gain"] == pytest.approx(value)
    for name, value in fitted.booster.get_score(importance_type="gain").items():
        assert by_name.loc[name, "gain"] == pytest.approx(value, rel=1e-5)
    unused = set(fitted.names) - set(fitted.booster.get_score(importance_type="weight"))
    assert unused, "some features are never split on"
    assert (by_name.loc[sorted(unused), ["total_gain", "gain", "weight"]] == 0).all().all()
    # A feature the trees never split on has no SHAP value either.
    assert (by_name.loc[sorted(unused), "mean_abs_shap"] == 0).all()


def test_modality_contributions_sum_to_margin(models, contribs) -> None:
    fitted = models["multiclass"]
    classes = np.argmax(_margin(fitted), axis=1)
    c2 = select_output(contribs["multiclass"], classes)
    table = modality_contributions(c2, fitted.names)
    assert list(table.columns) == ["mrna", "mirna", "bias"]
    assert len(table) == c2.shape[0]
    margin = _margin(fitted)[np.arange(len(classes)), classes]
    np.testing.assert_allclose(table.sum(axis=1).to_numpy(), margin, atol=1e-4)
    is_mrna = np.array([n.startswith("mrna:") for n in fitted.names])
    np.testing.assert_allclose(
        table["mrna"], c2[:, :-1][:, is_mrna].astype(np.float64).sum(axis=1), atol=1e-9
    )
    np.testing.assert_array_equal(table["bias"], c2[:, -1].astype(np.float64))


def test_modality_importance(models, contribs) -> None:
    fitted = models["multiclass"]
    table = modality_importance(contribs["multiclass"], fitted.names)
    assert list(table.columns) == ["modality", "mean_abs_shap", "n_features"]
    assert set(table["modality"]) == {"mrna", "mirna"}
    assert dict(zip(table["modality"], table["n_features"], strict=True)) == {
        "mrna": 200,
        "mirna": 184,
    }
    assert table["mean_abs_shap"].is_monotonic_decreasing
    body = contribs["multiclass"][:, :, :-1].astype(np.float64)
    is_mrna = np.array([n.startswith("mrna:") for n in fitted.names])
    expected_mrna = np.abs(body[:, :, is_mrna].sum(axis=2)).mean()
    got = dict(zip(table["modality"], table["mean_abs_shap"], strict=True))
    np.testing.assert_allclose(got["mrna"], expected_mrna, rtol=1e-10)
    # Summing within a modality before the absolute value can only lower the importance.
    per_feature = global_importance(contribs["multiclass"], fitted.names)
    assert got["mrna"] <= per_feature.loc[per_feature["modality"] == "mrna", "mean_abs_shap"].sum()
    binary = modality_importance(contribs["binary"], fitted.names)
    assert binary["n_features"].sum() == 384


def test_modality_contributions_rejects_reserved_and_3d(models, contribs) -> None:
    with pytest.raises(ValueError, match="select_output"):
        modality_contributions(contribs["multiclass"], models["multiclass"].names)
    renamed = ["bias:" + n.split(":", 1)[1] for n in models["cox"].names]
    with pytest.raises(ValueError, match="bias"):
        modality_contributions(contribs["cox"], renamed)
    with pytest.raises(ValueError, match="feature_names"):
        global_importance(contribs["cox"], models["cox"].names[:-1])


def test_top_contributions(models, contribs) -> None:
    fitted = models["binary"]
    c2 = contribs["binary"]
    table = top_contributions(c2, fitted.features, fitted.names, fitted.row_ids, top=5)
    n = len(fitted.row_ids)
    assert list(table.columns) == [
        "sample_id",
        "rank",
        "feature",
        "modality",
        "value",
        "contribution",
    ]
    assert len(table) == 5 * n
    assert table.groupby("sample_id", sort=False).size().eq(5).all()
    assert table["sample_id"].iloc[::5].tolist() == fitted.row_ids
    assert table["rank"].tolist() == [1, 2, 3, 4, 5] * n
    magnitude = table["contribution"].abs().to_numpy().reshape(n, 5)
    assert (np.diff(magnitude, axis=1) <= 0).all()
    # The fifth largest is at least every contribution left out.
    assert (magnitude[:, -1] >= np.sort(np.abs(c2[:, :-1]), axis=1)[:, -6]).all()
    column = {name: j for j, name in enumerate(fitted.names)}
    cols = table["feature"].map(column).to_numpy()
    rows = np.repeat(np.arange(n), 5)
    np.testing.assert_array_equal(table["value"], fitted.features[rows, cols].astype(np.float64))
    np.testing.assert_array_equal(table["contribution"], c2[rows, cols].astype(np.float64))
    assert table["modality"].tolist() == [f.split(":", 1)[0] for f in table["feature"]]


def test_top_contributions_all_features_and_ties(models, contribs) -> None:
    fitted = models["cox"]
    c2 = contribs["cox"][:3]
    table = top_contributions(c2, fitted.features[:3], fitted.names, fitted.row_ids[:3], top=10_000)
    p = len(fitted.names)
    assert len(table) == 3 * p
    first = table[table["sample_id"] == fitted.row_ids[0]]
    assert sorted(first["feature"]) == sorted(fitted.names)
    zero = first[first["contribution"] == 0]["feature"].tolist()
    assert len(zero) > 0
    assert zero == [f for f in fitted.names if f in set(zero)]
    with pytest.raises(ValueError, match="top"):
        top_contributions(c2, fitted.features[:3], fitted.names, fitted.row_ids[:3], top=0)
    with pytest.raises(ValueError, match="values"):
        top_contributions(c2, fitted.features[:2], fitted.names, fitted.row_ids[:3], top=3)
    with pytest.raises(ValueError, match="row_ids"):
        top_contributions(c2, fitted.features[:3], fitted.names, fitted.row_ids[:2], top=3)


def test_missing_values(models) -> None:
    fitted = models["multiclass"]
    features = fitted.features.copy()
    top_features = global_importance(shap_contributions(fitted.booster, features), fitted.names)[
        "feature"
    ].head(3)
    columns = [fitted.names.index(f) for f in top_features]
    features[:20, columns] = np.nan
    c = shap_contributions(fitted.booster, features)
    np.testing.assert_allclose(
        c.astype(np.float64).sum(axis=-1), _margin(fitted, features), atol=1e-4
    )
    c2 = select_output(c, 0)
    table = top_contributions(c2, features, fitted.names, fitted.row_ids, top=len(fitted.names))
    missing = table[
        table["sample_id"].isin(fitted.row_ids[:20]) & table["feature"].isin(top_features)
    ]
    assert len(missing) == 20 * 3
    assert missing["value"].isna().all()
    others = table[~table["sample_id"].isin(fitted.row_ids[:20])]
    assert others["value"].notna().all()
    # Missing values route rows down the default branch, which changes their contributions.
    assert not np.array_equal(c[:20], shap_contributions(fitted.booster, fitted.features[:20]))


def test_shap_contributions_rejects_bad_input(models) -> None:
    fitted = models["binary"]
    with pytest.raises(ValueError, match="columns"):
        shap_contributions(fitted.booster, fitted.features[:, :-1])
    with pytest.raises(ValueError, match="2-D"):
        shap_contributions(fitted.booster, fitted.features[0])
    with pytest.raises(ValueError, match="nthread"):
        shap_contributions(fitted.booster, fitted.features, nthread=0)


def test_plots_write_png(tmp_path, models, contribs) -> None:
    fitted = models["multiclass"]
    features = fitted.features.copy()
    features[:10, :50] = np.nan
    c2 = select_output(contribs["multiclass"], 0)
    summary = tmp_path / "out" / "shap_summary.png"
    plot_shap_summary(c2, features, fitted.names, summary, title="Basal", top=15)
    table = modality_importance(contribs["multiclass"], fitted.names)
    bars = tmp_path / "out" / "modality_importance.png"
    plot_modality_importance(table, bars, title="Modality importance")
    for path in (summary, bars):
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5_000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "modality_importance.png",
        "shap_summary.png",
    ]
    with pytest.raises(ValueError, match="table"):
        plot_modality_importance(table.drop(columns="mean_abs_shap"), bars, title="x")


def test_deterministic(tmp_path, models) -> None:
    fitted = models["multiclass"]
    first = shap_contributions(fitted.booster, fitted.features, nthread=1)
    second = shap_contributions(fitted.booster, fitted.features, nthread=2)
    np.testing.assert_array_equal(first, second)
    pd.testing.assert_frame_equal(
        global_importance(first, fitted.names), global_importance(second, fitted.names)
    )
    c2 = select_output(first, 1)
    pd.testing.assert_frame_equal(
        top_contributions(c2, fitted.features, fitted.names, fitted.row_ids, top=4),
        top_contributions(c2, fitted.features, fitted.names, fitted.row_ids, top=4),
    )
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plot_shap_summary(c2, fitted.features, fitted.names, a, title="Her2")
    plot_shap_summary(c2, fitted.features, fitted.names, b, title="Her2")
    assert a.read_bytes() == b.read_bytes()
