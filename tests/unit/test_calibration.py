"""Tests of probability calibration, calibration metrics and the reliability plot.

Probabilities come from a logistic regression cross-fitted on two halves of the TCGA breast
cancer example (mRNA -> subtype), so every row's probability is out of sample.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV, _sigmoid_calibration, calibration_curve
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from omics_ml.calibration import (
    CALIBRATION_METHODS,
    ProbabilityCalibrator,
    _platt_fit,
    brier_score,
    expected_calibration_error,
    plot_reliability,
    reliability_table,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "resources" / "example"
CLASSES = ["Basal", "Her2", "LumA"]
N_GENES = 20  # a weaker model than all 200 genes, so that probabilities are not all 0 or 1


class _FixedProba(ClassifierMixin, BaseEstimator):
    """Classifier whose ``predict_proba`` returns ``proba[row]`` for ``X = [[row], ...]``."""

    def __init__(self, proba: NDArray[np.float64] | None = None) -> None:
        self.proba = proba

    def fit(self, X: Any, y: Any) -> _FixedProba:
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        assert self.proba is not None
        return self.proba[np.asarray(X)[:, 0].astype(int)]

    def predict(self, X: Any) -> NDArray[np.int64]:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _out_of_sample_proba(X: NDArray[np.float64], y: NDArray[np.int64]) -> NDArray[np.float64]:
    """Fit on one half, predict the other half, and the other way round."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    return cross_val_predict(model, X, y, cv=cv, method="predict_proba")


@pytest.fixture(scope="module")
def tcga() -> dict[str, Any]:
    """Out-of-sample 3-class and binary (Basal vs rest) probabilities on the TCGA example."""
    mrna = pd.read_csv(EXAMPLE / "mrna.csv")
    outcomes = pd.read_csv(EXAMPLE / "outcomes.csv")
    data = mrna.merge(outcomes, on="sample_id", validate="one_to_one")
    X = data.drop(columns=["sample_id", "subtype"]).to_numpy(dtype=np.float64)[:, :N_GENES]
    y3 = data["subtype"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype=np.int64)
    y2 = (y3 == 0).astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y3))
    return {
        "multi": (_out_of_sample_proba(X, y3), y3),
        "binary": (_out_of_sample_proba(X, y2), y2),
        "fit_rows": np.sort(order[: len(order) // 2]),
        "new_rows": np.sort(order[len(order) // 2 :]),
    }


def _sklearn_calibrated(
    proba: NDArray[np.float64], y: NDArray[np.int64], fit_rows: Any, new_rows: Any, method: str
) -> NDArray[np.float64]:
    """``CalibratedClassifierCV`` on exactly the same probabilities."""
    index = np.arange(len(y)).reshape(-1, 1)
    frozen = FrozenEstimator(_FixedProba(proba).fit(index, y))
    calibrated = CalibratedClassifierCV(frozen, method=method).fit(index[fit_rows], y[fit_rows])
    return calibrated.predict_proba(index[new_rows])


@pytest.mark.parametrize("task", ["binary", "multi"])
@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_matches_sklearn_calibrated_classifier(
    tcga: dict[str, Any], task: str, method: str
) -> None:
    proba, y = tcga[task]
    fit_rows, new_rows = tcga["fit_rows"], tcga["new_rows"]
    ours = ProbabilityCalibrator(method).fit(proba[fit_rows], y[fit_rows])
    got = ours.transform(proba[new_rows])
    expected = _sklearn_calibrated(proba, y, fit_rows, new_rows, method)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got.shape == (len(new_rows), proba.shape[1])
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert got.min() >= 0.0
    assert got.max() <= 1.0
    # the calibration changes something: it is not the identity on real probabilities
    assert np.max(np.abs(got - proba[new_rows])) > 1e-3


@pytest.mark.parametrize("task", ["binary", "multi"])
@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_json_round_trip_is_exact_and_fit_is_deterministic(
    tcga: dict[str, Any], task: str, method: str
) -> None:
    proba, y = tcga[task]
    fit_rows, new_rows = tcga["fit_rows"], tcga["new_rows"]
    fitted = ProbabilityCalibrator(method).fit(proba[fit_rows], y[fit_rows])
    state = json.loads(json.dumps(fitted.to_json()))
    assert state["method"] == method
    assert state["n_classes"] == proba.shape[1]
    assert len(state["maps"]) == (1 if task == "binary" else proba.shape[1])
    restored = ProbabilityCalibrator.from_json(state)
    assert np.array_equal(restored.transform(proba[new_rows]), fitted.transform(proba[new_rows]))
    again = ProbabilityCalibrator(method).fit(proba[fit_rows], y[fit_rows])
    assert json.dumps(again.to_json()) == json.dumps(fitted.to_json())


def test_binary_isotonic_is_monotone_and_bounded(tcga: dict[str, Any]) -> None:
    proba, y = tcga["binary"]
    fit_rows = tcga["fit_rows"]
    calibrator = ProbabilityCalibrator("isotonic").fit(proba[fit_rows], y[fit_rows])
    grid = np.linspace(0.0, 1.0, 501)
    out = calibrator.transform(np.column_stack([1.0 - grid, grid]))
    assert np.all(np.diff(out[:, 1]) >= 0.0)
    assert out.min() >= 0.0
    assert out.max() <= 1.0
    np.testing.assert_allclose(out[:, 0], 1.0 - out[:, 1], rtol=0, atol=0)
    assert out[-1, 1] > out[0, 1]


def test_platt_fit_matches_sklearn_sigmoid_calibration(tcga: dict[str, Any]) -> None:
    proba, y = tcga["multi"]
    for k in range(proba.shape[1]):
        target = (y == k).astype(np.float64)
        a_ref, b_ref = _sigmoid_calibration(proba[:, k], target)
        a, b = _platt_fit(proba[:, k], target)
        np.testing.assert_allclose([a, b], [a_ref, b_ref], rtol=0, atol=1e-6)
        assert a < 0  # a higher probability maps to a higher calibrated probability
    # scores beyond the rescaling threshold take the same path as in scikit-learn
    scores = 40.0 * (proba[:, 0] - 0.5)
    target = (y == 0).astype(np.float64)
    np.testing.assert_allclose(
        _platt_fit(scores, target), _sigmoid_calibration(scores, target), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_class_without_positives_keeps_identity_map(tcga: dict[str, Any], method: str) -> None:
    proba, y = tcga["multi"]
    rows = np.flatnonzero(y != 1)  # no Her2 example among the fitting rows
    calibrator = ProbabilityCalibrator(method).fit(proba[rows], y[rows])
    kinds = [state["kind"] for state in calibrator.to_json()["maps"]]
    assert kinds == [method, "identity", method]
    out = calibrator.transform(proba)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.all((out >= 0.0) & (out <= 1.0))


def test_row_with_all_zero_calibrated_values_becomes_uniform() -> None:
    step = {"kind": "isotonic", "x": [0.5, 1.0], "y": [0.0, 1.0]}  # 0 below 0.5
    state = {"method": "isotonic", "n_classes": 3, "maps": [step, step, step]}
    calibrator = ProbabilityCalibrator.from_json(state)
    out = calibrator.transform(np.array([[0.34, 0.33, 0.33], [0.75, 0.25, 0.0]]))
    np.testing.assert_array_equal(out[0], np.full(3, 1.0 / 3.0))
    np.testing.assert_allclose(out[1], [1.0, 0.0, 0.0], rtol=0, atol=0)


def test_calibration_improves_miscalibrated_probabilities(tcga: dict[str, Any]) -> None:
    proba, y = tcga["multi"]
    fit_rows, new_rows = tcga["fit_rows"], tcga["new_rows"]
    overconfident = proba**4
    overconfident /= overconfident.sum(axis=1, keepdims=True)
    before_brier = brier_score(y[new_rows], overconfident[new_rows])
    before_ece = expected_calibration_error(y[new_rows], overconfident[new_rows])
    for method in CALIBRATION_METHODS:
        calibrator = ProbabilityCalibrator(method).fit(overconfident[fit_rows], y[fit_rows])
        after = calibrator.transform(overconfident[new_rows])
        assert brier_score(y[new_rows], after) < before_brier
        assert expected_calibration_error(y[new_rows], after) < 0.75 * before_ece


def test_brier_score_binary_equals_sklearn(tcga: dict[str, Any]) -> None:
    proba, y = tcga["binary"]
    assert brier_score(y, proba) == pytest.approx(brier_score_loss(y, proba[:, 1]), abs=1e-15)


def test_brier_score_multiclass_equals_hand_computation(tcga: dict[str, Any]) -> None:
    proba, y = tcga["multi"]
    onehot = np.eye(proba.shape[1])[y]
    expected = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)) / 2.0)
    assert brier_score(y, proba) == pytest.approx(expected, abs=1e-15)
    assert brier_score(y, onehot) == 0.0
    assert brier_score((y + 1) % 3, onehot) == pytest.approx(1.0)


def _ece_loop(y: NDArray[np.int64], proba: NDArray[np.float64], n_bins: int) -> float:
    """Reference ECE with one explicit loop over bins ``(lo, hi]`` (bin 0 includes 0)."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        lower = confidence > edges[b] if b > 0 else confidence >= 0.0
        in_bin = lower & (confidence <= edges[b + 1])
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            total += in_bin.sum() / len(y) * gap
    return total


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_ece_matches_loop_reference(tcga: dict[str, Any], n_bins: int) -> None:
    for task in ("binary", "multi"):
        proba, y = tcga[task]
        got = expected_calibration_error(y, proba, n_bins=n_bins)
        assert got == pytest.approx(_ece_loop(y, proba, n_bins), abs=1e-12)
        assert 0.0 < got < 1.0


def test_ece_is_zero_when_perfectly_calibrated() -> None:
    # bins at confidence 0.5, 0.7, 0.9 and 1.0; exactly that fraction of each is correct
    confidence = np.repeat([0.5, 0.7, 0.9, 1.0], 10)
    rest = (1.0 - confidence) / 2.0
    proba = np.column_stack([confidence, rest, rest])
    n_correct = np.round(confidence * 10).astype(int)
    position = np.tile(np.arange(10), 4)
    y = np.where(position < n_correct, 0, 1)
    assert expected_calibration_error(y, proba) == pytest.approx(0.0, abs=1e-12)
    flipped = np.where(y == 0, 1, 0)
    assert expected_calibration_error(flipped, proba) > 0.3


@pytest.mark.parametrize("n_bins", [5, 10])
def test_reliability_table_matches_calibration_curve(tcga: dict[str, Any], n_bins: int) -> None:
    proba, y = tcga["multi"]
    table = reliability_table(y, proba, CLASSES, n_bins=n_bins)
    assert list(table.columns) == ["class", "bin", "mean_predicted", "observed_fraction", "n"]
    for k, name in enumerate(CLASSES):
        rows = table[table["class"] == name]
        observed, predicted = calibration_curve(
            y == k, proba[:, k], n_bins=n_bins, strategy="uniform"
        )
        np.testing.assert_allclose(rows["observed_fraction"], observed, rtol=0, atol=1e-12)
        np.testing.assert_allclose(rows["mean_predicted"], predicted, rtol=0, atol=1e-12)
        assert rows["n"].sum() == len(y)
        assert (rows["n"] > 0).all()
        assert rows["bin"].between(0, n_bins - 1).all()
        assert rows["bin"].is_monotonic_increasing


def test_plot_reliability_writes_png(tcga: dict[str, Any], tmp_path: Path) -> None:
    proba, y = tcga["multi"]
    fit_rows, new_rows = tcga["fit_rows"], tcga["new_rows"]
    calibrated = ProbabilityCalibrator("sigmoid").fit(proba[fit_rows], y[fit_rows])
    after = reliability_table(y[new_rows], calibrated.transform(proba[new_rows]), CLASSES)
    before = reliability_table(y[new_rows], proba[new_rows], CLASSES)
    out = tmp_path / "plots" / "reliability.png"
    plot_reliability(after, out, title="Reliability (sigmoid)", uncalibrated=before)
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5000
    assert sorted(p.name for p in out.parent.iterdir()) == ["reliability.png"]
    with pytest.raises(ValueError, match="reliability_table"):
        plot_reliability(pd.DataFrame({"x": [1]}), tmp_path / "bad.png", title="bad")
    assert not (tmp_path / "bad.png").exists()


def test_unknown_method_names_config_key() -> None:
    with pytest.raises(ValueError, match=r"calibration\.method"):
        ProbabilityCalibrator("beta")
    with pytest.raises(ValueError, match=r"calibration\.method"):
        ProbabilityCalibrator.from_json({"method": "temperature", "n_classes": 2, "maps": []})


def test_bad_inputs_raise_value_error(tcga: dict[str, Any]) -> None:
    proba, y = tcga["multi"]
    calibrator = ProbabilityCalibrator("sigmoid")
    with pytest.raises(ValueError, match="not fitted"):
        calibrator.transform(proba)
    with pytest.raises(ValueError, match=r"class codes in 0\.\.2"):
        calibrator.fit(proba, y + 1)
    with pytest.raises(ValueError, match="one class code per probability row"):
        calibrator.fit(proba, y[:-1])
    with pytest.raises(ValueError, match="rows must sum to 1"):
        calibrator.fit(proba * 0.5, y)
    with pytest.raises(ValueError, match="at least 2 columns"):
        calibrator.fit(proba[:, 0], y)
    calibrator.fit(proba, y)
    with pytest.raises(ValueError, match="fitted on 3 classes"):
        calibrator.transform(np.column_stack([proba[:, 0], 1.0 - proba[:, 0]]))
    state = calibrator.to_json()
    state["maps"][0] = {"kind": "isotonic", "x": [0.0], "y": [0.0]}
    with pytest.raises(ValueError, match="does not fit method"):
        ProbabilityCalibrator.from_json(state)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(y, proba, n_bins=0)
    with pytest.raises(ValueError, match="classes must name"):
        reliability_table(y, proba, CLASSES[:2])
