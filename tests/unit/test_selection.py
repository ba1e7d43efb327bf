"""Tests of omics_ml.selection: Cox score test, univariate and gain scores, in-fold selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_selection import f_classif, f_regression
from sksurv.compare import compare_survival
from sksurv.util import Surv

from omics_ml.selection import (
    SELECTION_METHODS,
    FeatureSelection,
    cox_score_statistics,
    gain_scores,
    univariate_scores,
)
from omics_ml.tasks import Outcome

ROOT = Path(__file__).resolve().parents[2]
TCGA = ROOT / "resources" / "example"
GSE = ROOT / "resources" / "survival_example"
N_GSE_GENES = 300
# Strongest ANOVA-F subtype marker among the 200 TCGA genes (a luminal/ER-associated gene).
MARKER = "mrna:ZNF552"
XGB_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "seed": 0,
    "nthread": 1,
    "max_depth": 3,
    "eta": 0.3,
    "tree_method": "hist",
}


@pytest.fixture(scope="module")
def tcga() -> dict[str, Any]:
    """TCGA mRNA (150 x 200, log scale) with ``mrna:`` column names and subtype labels."""
    mrna = pd.read_csv(TCGA / "mrna.csv")
    outcomes = pd.read_csv(TCGA / "outcomes.csv")
    data = mrna.merge(outcomes, on="sample_id", validate="one_to_one")
    genes = [c for c in mrna.columns if c != "sample_id"]
    return {
        "x": data[genes].to_numpy(np.float64),
        "columns": [f"mrna:{g}" for g in genes],
        "label": data["subtype"].astype(str).to_numpy(),
    }


@pytest.fixture(scope="module")
def gse() -> dict[str, Any]:
    """GSE1992: the first 300 genes, time/event and the clinical table, joined by sample."""
    expression = pd.read_parquet(GSE / "expression.parquet")
    genes = [c for c in expression.columns if c != "sample_id"][:N_GSE_GENES]
    data = (
        expression[["sample_id", *genes]]
        .merge(pd.read_csv(GSE / "samples.csv"), on="sample_id", validate="one_to_one")
        .merge(pd.read_csv(GSE / "outcomes.csv"), on="subject_id", validate="one_to_one")
        .merge(pd.read_csv(GSE / "clinical.csv"), on="sample_id", validate="one_to_one")
    )
    return {
        "x": data[genes].to_numpy(np.float64),
        "columns": [f"expr:{g}" for g in genes],
        "time": data["time"].to_numpy(np.float64),
        "event": data["event"].to_numpy(np.int8),
        "clinical": data[["age", "size", "er_positive", "node_status", "grade"]],
    }


def _outcome(label: np.ndarray) -> Outcome:
    return Outcome(np.asarray(label, dtype=str))


def _breslow_reference(x: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Plain Cox score statistic at beta = 0 with Breslow ties, one event time at a time."""
    score = np.zeros(x.shape[1])
    information = np.zeros(x.shape[1])
    for t in np.unique(time[event == 1]):
        risk = x[time >= t]
        dead = (time == t) & (event == 1)
        d = dead.sum()
        score += x[dead].sum(axis=0) - d * risk.mean(axis=0)
        information += d * risk.var(axis=0)
    return score**2 / information


# --- Cox score statistic -----------------------------------------------------------------------


def test_cox_score_on_binary_columns_equals_logrank_without_ties(gse: dict[str, Any]) -> None:
    er = gse["clinical"]["er_positive"].to_numpy(np.float64)
    rows = np.flatnonzero(np.isfinite(er))
    rng = np.random.default_rng(0)
    # Distinct times: tiny jitter in a random order breaks every tie without reordering times.
    time = gse["time"][rows] + rng.permutation(rows.size) * 1e-6
    assert np.unique(time).size == rows.size
    event = gse["event"][rows]
    gene = gse["x"][rows, 0]
    binary = np.column_stack([er[rows], (gene > np.median(gene)).astype(np.float64)])
    got = cox_score_statistics(binary, time, event)
    y = Surv.from_arrays(event.astype(bool), time)
    expected = [compare_survival(y, binary[:, j])[0] for j in range(binary.shape[1])]
    np.testing.assert_allclose(got, expected, rtol=1e-8)
    assert got[0] > 1.0  # ER status is prognostic in this cohort


def test_cox_score_with_tied_event_times_equals_breslow_reference(gse: dict[str, Any]) -> None:
    time, event = gse["time"], gse["event"]
    event_times = time[event == 1]
    assert np.unique(event_times).size < event_times.size  # the cohort has tied event times
    got = cox_score_statistics(gse["x"], time, event)
    np.testing.assert_allclose(got, _breslow_reference(gse["x"], time, event), rtol=1e-8)
    assert got.shape == (N_GSE_GENES,)
    assert (got > 0).all()


def test_cox_score_constant_column_scores_zero(gse: dict[str, Any]) -> None:
    x = np.column_stack(
        [np.full(gse["time"].size, 0.1), gse["x"][:, :3], np.zeros(gse["time"].size)]
    )
    got = cox_score_statistics(x, gse["time"], gse["event"])
    assert got[0] == 0.0
    assert got[-1] == 0.0
    assert (got[1:4] > 0).all()
    no_events = cox_score_statistics(gse["x"][:, :3], gse["time"], np.zeros_like(gse["event"]))
    np.testing.assert_array_equal(no_events, 0.0)


def test_cox_score_does_not_depend_on_row_order(gse: dict[str, Any]) -> None:
    order = np.random.default_rng(1).permutation(gse["time"].size)
    base = cox_score_statistics(gse["x"], gse["time"], gse["event"])
    permuted = cox_score_statistics(gse["x"][order], gse["time"][order], gse["event"][order])
    np.testing.assert_allclose(permuted, base, rtol=1e-12)
    shifted = cox_score_statistics(gse["x"] * 3.0 + 100.0, gse["time"], gse["event"])
    np.testing.assert_allclose(shifted, base, rtol=1e-8)


def test_cox_score_rejects_bad_input(gse: dict[str, Any]) -> None:
    x = gse["x"][:, :2].copy()
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="impute"):
        cox_score_statistics(x, gse["time"], gse["event"])
    with pytest.raises(ValueError, match="event"):
        cox_score_statistics(gse["x"][:, :2], gse["time"], gse["event"] * 2)
    with pytest.raises(ValueError, match="time"):
        cox_score_statistics(gse["x"][:, :2], gse["time"][:-1], gse["event"])


# --- univariate scores -------------------------------------------------------------------------


def test_univariate_classification_equals_f_classif(tcga: dict[str, Any]) -> None:
    got = univariate_scores(tcga["x"], _outcome(tcga["label"]), task="classification")
    np.testing.assert_allclose(got, f_classif(tcga["x"], tcga["label"])[0], rtol=1e-12)


def test_univariate_regression_equals_f_regression(gse: dict[str, Any]) -> None:
    size = gse["clinical"]["size"].to_numpy(np.float64)
    rows = np.flatnonzero(np.isfinite(size))
    outcome = Outcome(np.full(rows.size, "all"), target=size[rows])
    got = univariate_scores(gse["x"][rows], outcome, task="regression")
    np.testing.assert_allclose(got, f_regression(gse["x"][rows], size[rows])[0], rtol=1e-12)


def test_univariate_survival_is_the_cox_score(gse: dict[str, Any]) -> None:
    outcome = Outcome(np.full(gse["time"].size, "all"), time=gse["time"], event=gse["event"])
    got = univariate_scores(gse["x"], outcome, task="survival")
    expected = cox_score_statistics(gse["x"], gse["time"], gse["event"])
    np.testing.assert_array_equal(got, expected)


def test_univariate_imputes_by_median_of_the_given_rows(tcga: dict[str, Any]) -> None:
    rows = np.arange(0, 150, 2)
    x = tcga["x"][rows, :4].copy()
    x[::5, 1] = np.nan
    x[:, 2] = np.nan  # no value at all
    x[:, 3] = 7.0  # constant
    label = tcga["label"][rows]
    got = univariate_scores(x, _outcome(label), task="classification")
    imputed = np.where(np.isnan(x[:, 1]), np.nanmedian(x[:, 1]), x[:, 1])
    assert np.nanmedian(x[:, 1]) != np.nanmedian(tcga["x"][:, 1])  # a subset's own median
    expected = f_classif(np.column_stack([x[:, 0], imputed]), label)[0]
    np.testing.assert_allclose(got[:2], expected, rtol=1e-12)
    np.testing.assert_array_equal(got[2:], 0.0)


def test_univariate_rejects_bad_task_and_outcome(tcga: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="task"):
        univariate_scores(tcga["x"], _outcome(tcga["label"]), task="ranking")
    with pytest.raises(ValueError, match=r"outcome\.time"):
        univariate_scores(tcga["x"], _outcome(tcga["label"]), task="survival")
    with pytest.raises(ValueError, match="two classes"):
        univariate_scores(tcga["x"], _outcome(np.full(150, "LumA")), task="classification")


# --- gain scores -------------------------------------------------------------------------------


def _gain_data(tcga: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """20 genes, a noisy copy of the Basal indicator and a constant column."""
    y = (tcga["label"] == "Basal").astype(np.float64)
    rng = np.random.default_rng(2)
    copy = y + rng.normal(scale=0.3, size=y.size)
    x = np.column_stack([tcga["x"][:, 20:40], copy, np.ones(y.size)])
    return x, y


def test_gain_noisy_copy_of_label_dominates(tcga: dict[str, Any]) -> None:
    x, y = _gain_data(tcga)
    gain = gain_scores(x, {"label": y}, params=XGB_PARAMS, n_rounds=30)
    assert gain.shape == (x.shape[1],)
    assert int(np.argmax(gain)) == 20
    assert gain[20] > 0.5 * gain.sum()
    assert gain[21] == 0.0  # never split on
    assert (gain >= 0).all()


def test_gain_is_deterministic(tcga: dict[str, Any]) -> None:
    x, y = _gain_data(tcga)
    first = gain_scores(x, {"label": y}, params=XGB_PARAMS, n_rounds=30)
    second = gain_scores(x.copy(), {"label": y.copy()}, params=dict(XGB_PARAMS), n_rounds=30)
    np.testing.assert_array_equal(first, second)
    with pytest.raises(ValueError, match="n_rounds"):
        gain_scores(x, {"label": y}, params=XGB_PARAMS, n_rounds=0)


# --- FeatureSelection --------------------------------------------------------------------------


def _design(tcga: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """TCGA mRNA plus an unconfigured modality (5 genes renamed) and two visit columns."""
    n = tcga["x"].shape[0]
    extra = tcga["x"][:, :5] + 1.0
    visits = np.column_stack([np.arange(n) % 4 + 1.0, np.zeros(n)])
    x = np.column_stack([extra, tcga["x"], visits])
    columns = [
        *(f"prot:p{i}" for i in range(5)),
        *tcga["columns"],
        "visits:n_visits",
        "visits:landmark",
    ]
    return x, columns


def test_selection_caps_modality_and_keeps_the_rest(tcga: dict[str, Any]) -> None:
    x, columns = _design(tcga)
    sel = FeatureSelection.fit(
        x,
        columns,
        _outcome(tcga["label"]),
        task="classification",
        specs={"mrna": {"method": "univariate", "max_features": 10}},
    )
    assert sel.summary() == {
        "prot": {"n_in": 5, "n_kept": 5},
        "mrna": {"n_in": 200, "n_kept": 10},
        "visits": {"n_in": 2, "n_kept": 2},
    }
    kept = sel.kept_columns
    assert [c for c in kept if not c.startswith("mrna:")] == [
        *(f"prot:p{i}" for i in range(5)),
        "visits:n_visits",
        "visits:landmark",
    ]
    assert kept == [c for c in columns if c in set(kept)]  # design order
    assert MARKER in kept
    top = np.argsort(-f_classif(tcga["x"], tcga["label"])[0], kind="stable")[:10]
    assert {c for c in kept if c.startswith("mrna:")} == {tcga["columns"][i] for i in top}
    np.testing.assert_array_equal(sel.transform(x), x[:, sel.keep])
    assert np.isnan(sel.scores[:5]).all() and np.isnan(sel.scores[-2:]).all()
    assert np.isfinite(sel.scores[5:-2]).all()
    assert sel.specs == {"mrna": {"method": "univariate", "max_features": 10}}


def test_selection_keeps_whole_modality_when_cap_exceeds_it(tcga: dict[str, Any]) -> None:
    x, columns = _design(tcga)
    sel = FeatureSelection.fit(
        x,
        columns,
        _outcome(tcga["label"]),
        task="classification",
        specs={"prot": {"method": "univariate", "max_features": 50}},
    )
    assert sel.keep.all()
    assert np.isfinite(sel.scores[:5]).all()


def test_selection_ties_keep_the_earlier_column(tcga: dict[str, Any]) -> None:
    n = tcga["x"].shape[0]
    gene = tcga["x"][:, tcga["columns"].index(MARKER)]
    x = np.column_stack([np.zeros(n), gene, gene, np.zeros(n), np.ones(n), np.ones(n)])
    columns = ["a:weak", "a:first", "a:second", "z:c0", "z:c1", "z:c2"]
    sel = FeatureSelection.fit(
        x,
        columns,
        _outcome(tcga["label"]),
        task="classification",
        specs={
            "a": {"method": "univariate", "max_features": 1},
            "z": {"method": "univariate", "max_features": 2},
        },
    )
    # Zero-score (constant) columns stay eligible: z keeps its first two.
    assert sel.kept_columns == ["a:first", "z:c0", "z:c1"]
    np.testing.assert_array_equal(sel.scores[3:], 0.0)


def test_selection_by_gain_reads_one_booster_on_all_columns(tcga: dict[str, Any]) -> None:
    x, columns = _design(tcga)
    y = (tcga["label"] == "Basal").astype(np.float64)
    specs = {
        "mrna": {"method": "gain", "max_features": 8},
        "prot": {"method": "univariate", "max_features": 2},
    }
    kwargs: dict[str, Any] = {
        "task": "classification",
        "specs": specs,
        "dmatrix_fields": {"label": y},
        "params": XGB_PARAMS,
        "gain_rounds": 20,
    }
    sel = FeatureSelection.fit(x, columns, _outcome(tcga["label"]), **kwargs)
    gain = gain_scores(x, {"label": y}, params=XGB_PARAMS, n_rounds=20)
    mrna = np.flatnonzero([c.startswith("mrna:") for c in columns])
    np.testing.assert_array_equal(sel.scores[mrna], gain[mrna])
    top = mrna[np.argsort(-gain[mrna], kind="stable")[:8]]
    assert set(np.flatnonzero(sel.keep)) & set(mrna.tolist()) == set(top.tolist())
    assert sel.summary()["prot"] == {"n_in": 5, "n_kept": 2}
    again = FeatureSelection.fit(x, columns, _outcome(tcga["label"]), **kwargs)
    np.testing.assert_array_equal(again.keep, sel.keep)
    np.testing.assert_array_equal(again.scores, sel.scores)


def test_selection_survival_univariate(gse: dict[str, Any]) -> None:
    outcome = Outcome(np.full(gse["time"].size, "all"), time=gse["time"], event=gse["event"])
    sel = FeatureSelection.fit(
        gse["x"],
        gse["columns"],
        outcome,
        task="survival",
        specs={"expr": {"method": "univariate", "max_features": 25}},
    )
    cox = cox_score_statistics(gse["x"], gse["time"], gse["event"])
    assert sel.keep.sum() == 25
    assert cox[sel.keep].min() >= cox[~sel.keep].max()


def test_selection_json_round_trip(tcga: dict[str, Any]) -> None:
    x, columns = _design(tcga)
    sel = FeatureSelection.fit(
        x,
        columns,
        _outcome(tcga["label"]),
        task="classification",
        specs={"mrna": {"method": "univariate", "max_features": 10}},
    )
    state = json.loads(json.dumps(sel.to_json(), allow_nan=False))
    assert state["scores"][0] is None
    back = FeatureSelection.from_json(state)
    np.testing.assert_array_equal(back.transform(x), sel.transform(x))
    np.testing.assert_array_equal(back.scores, sel.scores)
    assert back.kept_columns == sel.kept_columns
    assert back.specs == sel.specs
    with pytest.raises(ValueError, match="one entry per column"):
        FeatureSelection.from_json({**state, "keep": state["keep"][:-1]})


@pytest.mark.parametrize(
    ("specs", "extra", "pattern"),
    [
        (
            {"mrna": {"method": "lasso", "max_features": 5}},
            {},
            r"modalities\.mrna\.selection\.method",
        ),
        (
            {"mrna": {"method": "univariate", "max_features": 0}},
            {},
            r"modalities\.mrna\.selection\.max_features",
        ),
        (
            {"mrna": {"method": "univariate", "max_features": 2.5}},
            {},
            r"modalities\.mrna\.selection\.max_features",
        ),
        (
            {"mirna": {"method": "univariate", "max_features": 5}},
            {},
            r"modalities\.mirna\.selection",
        ),
        ({"mrna": {"method": "univariate", "max_feature": 5}}, {}, r"modalities\.mrna\.selection"),
        ({"visits": {"method": "univariate", "max_features": 1}}, {}, r"modalities\.visits"),
        ({"mrna": {"method": "gain", "max_features": 5}}, {}, "dmatrix_fields and params"),
        (
            {"mrna": {"method": "gain", "max_features": 5}},
            {"dmatrix_fields": {"label": np.zeros(150)}},
            "dmatrix_fields and params",
        ),
    ],
)
def test_selection_rejects_bad_specs(
    tcga: dict[str, Any], specs: dict[str, Any], extra: dict[str, Any], pattern: str
) -> None:
    x, columns = _design(tcga)
    with pytest.raises(ValueError, match=pattern):
        FeatureSelection.fit(
            x, columns, _outcome(tcga["label"]), task="classification", specs=specs, **extra
        )


def test_selection_rejects_mismatched_columns(tcga: dict[str, Any]) -> None:
    x, columns = _design(tcga)
    with pytest.raises(ValueError, match="columns"):
        FeatureSelection.fit(
            x, columns[:-1], _outcome(tcga["label"]), task="classification", specs={}
        )
    with pytest.raises(ValueError, match="duplicate"):
        FeatureSelection.fit(
            x[:, :3],
            ["a:x", "a:x", "a:y"],
            _outcome(tcga["label"]),
            task="classification",
            specs={},
        )
    sel = FeatureSelection.fit(x, columns, _outcome(tcga["label"]), task="classification", specs={})
    assert sel.keep.all()
    with pytest.raises(ValueError, match="features must have shape"):
        sel.transform(x[:, :-1])


def test_selection_fitted_on_training_rows_only_subsets_columns_of_others(
    tcga: dict[str, Any],
) -> None:
    x, columns = _design(tcga)
    outcome = _outcome(tcga["label"])
    rng = np.random.default_rng(3)
    order = rng.permutation(x.shape[0])
    train, test = np.sort(order[:100]), np.sort(order[100:])
    specs = {"mrna": {"method": "univariate", "max_features": 10}}
    sel = FeatureSelection.fit(
        x[train], columns, outcome.take(train), task="classification", specs=specs
    )
    # Other rows' outcomes play no part: scrambling them leaves the training fit unchanged.
    scrambled = outcome.take(np.concatenate([train, rng.permutation(test)]))
    refit = FeatureSelection.fit(
        x[train], columns, scrambled.take(np.arange(train.size)), task="classification", specs=specs
    )
    np.testing.assert_array_equal(refit.keep, sel.keep)
    np.testing.assert_array_equal(refit.scores, sel.scores)
    expected_scores = f_classif(tcga["x"][train], tcga["label"][train])[0]
    np.testing.assert_allclose(sel.scores[5:-2], expected_scores, rtol=1e-12)
    out = sel.transform(x[test])
    assert out.shape == (test.size, int(sel.keep.sum()))
    np.testing.assert_array_equal(out, x[test][:, sel.keep])
    # Transforming a single row gives that row of the batch result.
    np.testing.assert_array_equal(sel.transform(x[test[:1]]), out[:1])
    assert SELECTION_METHODS == ("univariate", "gain")
