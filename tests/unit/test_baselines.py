"""Penalised linear baselines on real cohorts: output columns, penalties, folds and intervals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxnetSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from omics_ml.baselines import (
    BASELINE_NAMES,
    CLASSIFICATION_C_GRID,
    LinearBaseline,
    fit_linear_baseline,
    inner_group_folds,
)
from omics_ml.tasks import ClassificationHead, Outcome, RegressionHead, SurvivalHead

SEED = 7
CLASSES = ["Basal", "Her2", "LumA"]


def _names(head: Any) -> list[str]:
    return [name for name, _ in head.output_columns()]


def _split(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


@pytest.fixture(scope="module")
def tcga() -> dict[str, Any]:
    mrna = pd.read_csv("resources/example/mrna.csv")
    outcomes = pd.read_csv("resources/example/outcomes.csv")
    frame = mrna.merge(outcomes, on="sample_id")
    train, test = _split(len(frame), 40, SEED)
    return {
        "X": frame.drop(columns=["sample_id", "subtype"]).to_numpy(dtype=np.float64),
        "y": frame["subtype"].to_numpy().astype(str),
        "subject": frame["sample_id"].to_numpy().astype(str),
        "train": train,
        "test": test,
    }


@pytest.fixture(scope="module")
def classification(tcga: dict[str, Any]) -> tuple[ClassificationHead, LinearBaseline]:
    head = ClassificationHead(CLASSES)
    tr = tcga["train"]
    baseline = fit_linear_baseline(
        tcga["X"][tr], Outcome(label=tcga["y"][tr]), tcga["subject"][tr], head=head, seed=SEED
    )
    return head, baseline


@pytest.fixture(scope="module")
def gse() -> dict[str, Any]:
    root = "resources/survival_example"
    expression = pd.read_parquet(f"{root}/expression.parquet")
    frame = (
        expression.merge(pd.read_csv(f"{root}/samples.csv"), on="sample_id")
        .merge(pd.read_csv(f"{root}/outcomes.csv"), on="subject_id")
        .merge(pd.read_csv(f"{root}/clinical.csv"), on="sample_id")
    )
    genes = [c for c in expression.columns if c != "sample_id"]
    train, test = _split(len(frame), 30, SEED)
    event = frame["event"].to_numpy().astype(np.int8)
    return {
        "genes": frame[genes].to_numpy(dtype=np.float64),
        "time": frame["time"].to_numpy(dtype=np.float64),
        "event": event,
        "age": frame["age"].to_numpy(dtype=np.float64),
        "subject": frame["subject_id"].to_numpy().astype(str),
        "train": train,
        "test": test,
    }


@pytest.fixture(scope="module")
def survival(gse: dict[str, Any]) -> tuple[SurvivalHead, LinearBaseline, Outcome]:
    event = gse["event"]
    outcome = Outcome(
        label=np.where(event == 1, "event", "censored"), time=gse["time"], event=event
    )
    tr = gse["train"]
    head = SurvivalHead()
    head.prepare(outcome.take(tr))
    baseline = fit_linear_baseline(
        gse["genes"][tr, :300], outcome.take(tr), gse["subject"][tr], head=head, seed=SEED
    )
    return head, baseline, outcome


@pytest.fixture(scope="module")
def regression(gse: dict[str, Any]) -> tuple[RegressionHead, LinearBaseline, Outcome]:
    outcome = Outcome(label=np.full(gse["age"].size, "all"), target=gse["age"])
    tr = gse["train"]
    head = RegressionHead(interval_level=0.9)
    baseline = fit_linear_baseline(
        gse["genes"][tr], outcome.take(tr), gse["subject"][tr], head=head, seed=SEED
    )
    return head, baseline, outcome


# --- classification ----------------------------------------------------------------------


def test_classification_columns_and_probabilities(tcga, classification) -> None:
    head, baseline = classification
    pred = baseline.predict(tcga["X"][tcga["test"]])
    assert pred.columns.tolist() == _names(head)
    assert baseline.columns == head.output_columns()
    proba = pred[[f"prob_{c}" for c in CLASSES]].to_numpy()
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert (pred["predicted_class"].to_numpy() == np.asarray(CLASSES)[proba.argmax(1)]).all()


def test_classification_beats_chance_and_describes_its_penalty(tcga, classification) -> None:
    _, baseline = classification
    pred = baseline.predict(tcga["X"][tcga["test"]])
    assert balanced_accuracy_score(tcga["y"][tcga["test"]], pred["predicted_class"]) > 0.6
    assert baseline.chosen["C"] in CLASSIFICATION_C_GRID.tolist()
    described = baseline.describe()
    assert described["model"] == BASELINE_NAMES["classification"]
    assert described["C"] == baseline.chosen["C"]
    assert math.isfinite(described["inner_log_loss"])


def test_classification_is_deterministic(tcga, classification) -> None:
    head, first = classification
    tr = tcga["train"]
    second = fit_linear_baseline(
        tcga["X"][tr], Outcome(label=tcga["y"][tr]), tcga["subject"][tr], head=head, seed=SEED
    )
    assert second.chosen == first.chosen
    X_test = tcga["X"][tcga["test"]]
    pd.testing.assert_frame_equal(first.predict(X_test), second.predict(X_test), check_exact=True)


def test_classification_handles_missing_and_uninformative_columns(tcga) -> None:
    rng = np.random.default_rng(SEED)
    X = tcga["X"].copy()
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:, 0] = np.nan  # all missing
    X[:, 1] = 3.0  # constant
    tr, te = tcga["train"], tcga["test"]
    head = ClassificationHead(CLASSES)
    baseline = fit_linear_baseline(
        X[tr], Outcome(label=tcga["y"][tr]), tcga["subject"][tr], head=head, seed=SEED
    )
    assert baseline.chosen["dropped_columns"] == [0, 1]
    pred = baseline.predict(X[te])
    assert pred.columns.tolist() == _names(head)
    assert np.isfinite(pred[[f"prob_{c}" for c in CLASSES]].to_numpy()).all()
    assert balanced_accuracy_score(tcga["y"][te], pred["predicted_class"]) > 0.6


def test_classification_class_absent_from_training_gets_zero_probability(tcga) -> None:
    tr = tcga["train"][tcga["y"][tcga["train"]] != "Her2"]
    head = ClassificationHead(CLASSES, class_weight="none")
    baseline = fit_linear_baseline(
        tcga["X"][tr], Outcome(label=tcga["y"][tr]), tcga["subject"][tr], head=head, seed=SEED
    )
    pred = baseline.predict(tcga["X"][tcga["test"]])
    assert pred.columns.tolist() == _names(head)
    assert (pred["prob_Her2"] == 0.0).all()
    assert (pred["predicted_class"] != "Her2").all()
    np.testing.assert_allclose(pred[[f"prob_{c}" for c in CLASSES]].sum(axis=1), 1.0)


# --- inner folds -------------------------------------------------------------------------


def test_inner_folds_never_split_a_subject(tcga) -> None:
    # two rows per subject: the cohort and a copy of it
    labels = np.concatenate([tcga["y"], tcga["y"]])
    groups = np.concatenate([tcga["subject"], tcga["subject"]])
    folds = inner_group_folds(labels, groups, 5, SEED)
    assert len(folds) == 5
    validation = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(validation), np.arange(groups.size))  # a partition
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])
    assert [v.tolist() for _, v in folds] == [
        v.tolist() for _, v in inner_group_folds(labels, groups, 5, SEED)
    ]


def test_inner_folds_shrink_to_the_number_of_subjects() -> None:
    groups = np.array(["a", "a", "b", "b", "c"])
    folds = inner_group_folds(np.array(["x", "y", "x", "y", "x"]), groups, 5, SEED)
    assert len(folds) == 3
    with pytest.raises(ValueError, match="at least 2 subjects"):
        inner_group_folds(np.array(["x", "y"]), np.array(["a", "a"]), 5, SEED)
    with pytest.raises(ValueError, match="n_folds"):
        inner_group_folds(np.array(["x", "y"]), np.array(["a", "b"]), 1, SEED)


def test_bad_input_raises(tcga, classification) -> None:
    _, baseline = classification
    tr = tcga["train"]
    with pytest.raises(ValueError, match="groups"):
        fit_linear_baseline(
            tcga["X"][tr],
            Outcome(label=tcga["y"][tr]),
            tcga["subject"][tr][:-1],
            head=ClassificationHead(CLASSES),
            seed=SEED,
        )
    with pytest.raises(ValueError, match="columns"):
        baseline.predict(tcga["X"][:5, :-1])
    with pytest.raises(ValueError, match="prepare"):
        fit_linear_baseline(
            tcga["X"][:20],
            Outcome(label=np.array(["event"] * 20), time=np.arange(1.0, 21), event=np.ones(20)),
            tcga["subject"][:20],
            head=SurvivalHead(),
            seed=SEED,
        )


# --- survival ----------------------------------------------------------------------------


def test_survival_columns_curves_and_risks(gse, survival) -> None:
    head, baseline, _ = survival
    X_test = gse["genes"][gse["test"], :300]
    pred = baseline.predict(X_test)
    assert pred.columns.tolist() == _names(head)
    curve = pred[[n for n in _names(head) if n.startswith("surv_")]].to_numpy()
    assert ((curve >= 0) & (curve <= 1)).all()
    assert (np.diff(curve, axis=1) <= 0).all()
    # risk at each horizon is 1 - S(h) of scikit-survival's own step functions
    cox = baseline.model[-1]
    functions = cox.predict_survival_function(baseline.model[:-1].transform(X_test))
    for h, name in zip(head.horizons, _names(head)[1 : 1 + len(head.horizons)], strict=True):
        expected = np.array([1.0 - fn(min(h, fn.x[-1])) for fn in functions])
        np.testing.assert_allclose(pred[name].to_numpy(), expected, rtol=0, atol=1e-12)
    c_index = concordance_index_censored(
        gse["event"][gse["test"]] == 1, gse["time"][gse["test"]], pred["risk_score"].to_numpy()
    )[0]
    assert math.isfinite(c_index)
    assert math.isfinite(baseline.chosen["inner_c_index"])


def test_survival_refit_matches_a_direct_fit_at_the_chosen_alpha(gse, survival) -> None:
    _, baseline, _ = survival
    tr, te = gse["train"], gse["test"]
    alpha = baseline.chosen["alpha"]
    assert alpha in baseline.chosen["alpha_path"]
    assert baseline.describe()["model"] == BASELINE_NAMES["survival"]
    prep = baseline.model[:-1]
    y = Surv.from_arrays(event=gse["event"][tr] == 1, time=gse["time"][tr])
    direct = CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=[alpha], max_iter=100_000).fit(
        prep.transform(gse["genes"][tr, :300]), y
    )
    expected = direct.predict(prep.transform(gse["genes"][te, :300]))
    np.testing.assert_allclose(
        baseline.predict(gse["genes"][te, :300])["risk_score"], expected, rtol=0, atol=1e-6
    )


# --- regression --------------------------------------------------------------------------


def test_regression_interval_is_the_conformal_quantile_of_inner_residuals(gse, regression) -> None:
    head, baseline, outcome = regression
    tr, te = gse["train"], gse["test"]
    pred = baseline.predict(gse["genes"][te])
    assert pred.columns.tolist() == _names(head)
    assert ((pred["lower"] < pred["predicted"]) & (pred["predicted"] < pred["upper"])).all()
    half_width = baseline.chosen["interval_half_width"]
    np.testing.assert_allclose(pred["upper"] - pred["predicted"], half_width, rtol=1e-12)

    # recompute the out-of-fold residuals of the chosen penalty from scratch (cold fits)
    X, target = gse["genes"][tr], gse["age"][tr]
    residuals = np.empty(tr.size)
    folds = inner_group_folds(head.strata(outcome.take(tr)), gse["subject"][tr], 5, SEED)
    for train, val in folds:
        model = make_pipeline(
            SimpleImputer(strategy="median"),
            StandardScaler(),
            ElasticNet(alpha=baseline.chosen["alpha"], l1_ratio=0.5, max_iter=100_000, tol=1e-8),
        ).fit(X[train], target[train])
        residuals[val] = np.abs(target[val] - model.predict(X[val]))
    n = residuals.size  # split-conformal: the ceil((n + 1) * level)-th smallest residual
    expected = np.sort(residuals)[math.ceil((n + 1) * 0.9) - 1]
    assert baseline.chosen["n_residuals"] == n
    np.testing.assert_allclose(half_width, expected, rtol=1e-3)
    assert baseline.describe()["model"] == BASELINE_NAMES["regression"]
