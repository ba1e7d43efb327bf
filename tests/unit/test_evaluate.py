"""Tests of omics_ml.evaluate: metrics, subject bootstrap, plots and fold aggregation."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss, roc_auc_score

from omics_ml.assess import aggregate_folds, evaluate_predictions
from omics_ml.evaluate import (
    METRICS,
    bootstrap_metrics,
    classification_metrics,
    subject_resample,
)
from omics_ml.io import read_json, write_json

CLASSES = ["a", "b", "c"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _noisy(n_subjects: int = 40, per_subject: int = 3, seed: int = 0, n_classes: int = 3):
    """Labels, informative but imperfect probabilities and subject ids."""
    classes = CLASSES[:n_classes]
    rng = np.random.default_rng(seed)
    subject_label = rng.integers(0, n_classes, size=n_subjects)
    y_idx = np.repeat(subject_label, per_subject)
    logits = rng.normal(size=(y_idx.size, n_classes))
    logits[np.arange(y_idx.size), y_idx] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    groups = np.repeat([f"S{i:02d}" for i in range(n_subjects)], per_subject)
    return np.asarray(classes)[y_idx], proba, groups, classes


def test_metrics_equal_sklearn_multiclass():
    y, proba, _, classes = _noisy()
    got = classification_metrics(y, proba, classes)
    assert list(got) == list(METRICS)
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert got["log_loss"] == pytest.approx(log_loss(y, proba, labels=classes))
    assert got["roc_auc_ovr"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
    )
    assert 0.4 < got["balanced_accuracy"] < 1.0


def test_metrics_equal_sklearn_binary():
    y, proba, _, classes = _noisy(n_classes=2, seed=1)
    got = classification_metrics(y, proba, classes)
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert got["log_loss"] == pytest.approx(log_loss(y, proba, labels=classes))
    assert got["roc_auc_ovr"] == pytest.approx(roc_auc_score(y == classes[1], proba[:, 1]))


def test_small_hand_computed_example():
    y = ["a", "a", "b", "b"]
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    got = classification_metrics(y, proba, ["a", "b"])
    assert got["balanced_accuracy"] == pytest.approx(0.75)  # recall a = 1/2, recall b = 1
    assert got["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert got["roc_auc_ovr"] == pytest.approx(1.0)  # every b scores above every a
    expected = -np.mean(np.log([0.9, 0.4, 0.8, 0.7]))
    assert got["log_loss"] == pytest.approx(expected)


def test_perfect_predictions():
    y = np.array(["a", "b", "c", "a", "b", "c"])
    proba = np.eye(3)[[0, 1, 2, 0, 1, 2]] * 0.97 + 0.01
    got = classification_metrics(y, proba, CLASSES)
    assert got["balanced_accuracy"] == 1.0
    assert got["macro_f1"] == 1.0
    assert got["roc_auc_ovr"] == 1.0
    assert got["log_loss"] == pytest.approx(-np.log(0.98))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_absent_class_and_single_class():
    y, proba, _, classes = _noisy()
    present = y != "c"
    got = classification_metrics(y[present], proba[present], classes)
    expected_auc = np.mean(
        [roc_auc_score(y[present] == k, proba[present, j]) for j, k in enumerate("ab")]
    )
    assert got["roc_auc_ovr"] == pytest.approx(expected_auc)
    only_a = y == "a"
    assert math.isnan(classification_metrics(y[only_a], proba[only_a], classes)["roc_auc_ovr"])


def test_unknown_label_raises():
    with pytest.raises(ValueError, match="not among"):
        classification_metrics(["a", "z"], np.full((2, 3), 1 / 3), CLASSES)


def test_bootstrap_interval_contains_estimate():
    y, proba, groups, classes = _noisy()
    result = bootstrap_metrics(y, proba, classes, groups=groups, n_bootstrap=120, seed=3)
    point = classification_metrics(y, proba, classes)
    assert list(result) == list(METRICS)
    for name, value in result.items():
        assert value["estimate"] == point[name]
        assert value["lower"] <= value["estimate"] <= value["upper"]
        assert value["lower"] < value["upper"]
    narrow = bootstrap_metrics(
        y, proba, classes, groups=groups, n_bootstrap=120, seed=3, confidence_level=0.5
    )
    for name in METRICS:
        assert narrow[name]["lower"] >= result[name]["lower"]
        assert narrow[name]["upper"] <= result[name]["upper"]


def test_bootstrap_without_draws_gives_nan_bounds():
    y, proba, groups, classes = _noisy()
    result = bootstrap_metrics(y, proba, classes, groups=groups, n_bootstrap=0)
    for value in result.values():
        assert math.isfinite(value["estimate"])
        assert math.isnan(value["lower"])
        assert math.isnan(value["upper"])


def test_bootstrap_deterministic_given_seed():
    y, proba, groups, classes = _noisy()
    a = bootstrap_metrics(y, proba, classes, groups=groups, n_bootstrap=20, seed=9)
    b = bootstrap_metrics(y, proba, classes, groups=groups, n_bootstrap=20, seed=9)
    c = bootstrap_metrics(y, proba, classes, groups=groups, n_bootstrap=20, seed=10)
    assert a == b
    assert a != c


def testsubject_resample_keeps_subjects_together():
    rng = np.random.default_rng(0)
    n_subjects = 25
    groups = np.repeat([f"S{i}" for i in range(n_subjects)], 3)
    order = rng.permutation(groups.size)  # a subject's samples not adjacent
    groups = groups[order].astype(object)
    draws = np.random.default_rng(1)
    for _ in range(20):
        idx = subject_resample(groups, draws)
        assert idx.size == groups.size
        per_subject = Counter(groups[idx])
        assert all(count % 3 == 0 for count in per_subject.values())
        assert len(per_subject) < n_subjects  # with replacement: some subject left out
        # every sample of a drawn subject appears equally often
        per_index = Counter(idx.tolist())
        for subject in per_subject:
            members = np.flatnonzero(groups == subject)
            assert {per_index[i] for i in members} == {per_subject[subject] // 3}


def testsubject_resample_unequal_subject_sizes():
    groups = np.array(["x", "y", "y", "z", "z", "z", "y"], dtype=object)
    sizes = Counter(groups)
    idx = subject_resample(groups, np.random.default_rng(4))
    counts = Counter(groups[idx])
    for subject, count in counts.items():
        assert count % sizes[subject] == 0


def _predictions(y, proba, groups, classes, prefix: str = "s") -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "sample_id": [f"{prefix}{i:03d}" for i in range(len(y))],
            "subject_id": groups,
            "label": y,
            "predicted_class": np.asarray(classes)[proba.argmax(axis=1)],
        }
    )
    for k, label in enumerate(classes):
        frame[f"prob_{label}"] = proba[:, k]
    return frame


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_write_evaluation_writes_plots_and_json(tmp_path: Path):
    y, proba, groups, classes = _noisy()
    predictions = _predictions(y, proba, groups, classes)
    result = evaluate_predictions(
        predictions,
        head={"task": "classification", "classes": classes},
        reference=None,
        metrics_out=tmp_path / "metrics.json",
        plots={
            "confusion": tmp_path / "confusion.png",
            "roc": tmp_path / "roc.png",
            "reliability": tmp_path / "rel.png",
        },
        title="test",
        n_bootstrap=30,
        confidence_level=0.9,
        seed=0,
        extra={"note": "x"},
    )
    assert _is_png(tmp_path / "confusion.png")
    assert _is_png(tmp_path / "roc.png")
    on_disk = read_json(tmp_path / "metrics.json")
    assert on_disk == result
    assert on_disk["n_samples"] == 120
    assert on_disk["n_subjects"] == 40
    assert on_disk["classes"] == classes
    assert on_disk["class_counts"] == {c: int((y == c).sum()) for c in classes}
    assert on_disk["note"] == "x"
    expected = bootstrap_metrics(
        y, proba, classes, groups=groups, n_bootstrap=30, confidence_level=0.9, seed=0
    )
    assert on_disk["metrics"] == expected


def _write_fold(tmp_path: Path, k: int, frame: pd.DataFrame, classes) -> tuple[Path, Path]:
    pred_path, metrics_path = tmp_path / f"fold{k}.parquet", tmp_path / f"fold{k}.json"
    frame.assign(fold=k).to_parquet(pred_path, index=False)
    proba = frame[[f"prob_{c}" for c in classes]].to_numpy()
    metrics = classification_metrics(frame["label"], proba, classes)
    write_json(metrics_path, {"fold": k, "classes": classes, "metrics": metrics})
    write_json(
        tmp_path / f"state{k}.json", {"head": {"task": "classification", "classes": classes}}
    )
    return pred_path, metrics_path


def _aggregate(tmp_path: Path, preds, metrics):
    return aggregate_folds(
        preds,
        metrics,
        [tmp_path / "state0.json"],
        predictions_out=tmp_path / "out" / "oof.parquet",
        metrics_out=tmp_path / "out" / "cv_metrics.json",
        plots={
            "confusion": tmp_path / "cv_confusion.png",
            "roc": tmp_path / "cv_roc.png",
            "reliability": tmp_path / "cv_rel.png",
        },
        n_bootstrap=20,
        confidence_level=0.95,
        seed=0,
    )


def test_aggregate_folds_pools_predictions(tmp_path: Path):
    y, proba, groups, classes = _noisy()
    frame = _predictions(y, proba, groups, classes)
    first, second = frame.iloc[:60], frame.iloc[60:]
    p0, m0 = _write_fold(tmp_path, 0, second, classes)  # written out of order on purpose
    p1, m1 = _write_fold(tmp_path, 1, first, classes)
    result = _aggregate(tmp_path, [p0, p1], [m0, m1])
    pooled = pd.read_parquet(tmp_path / "out" / "oof.parquet")
    assert pooled["sample_id"].tolist() == sorted(frame["sample_id"])
    assert len(pooled) == 120
    assert _is_png(tmp_path / "cv_confusion.png")
    assert _is_png(tmp_path / "cv_roc.png")
    point = classification_metrics(y, proba, classes)
    for name in METRICS:
        assert result["metrics"][name]["estimate"] == pytest.approx(point[name])
    fold_values = [read_json(m)["metrics"] for m in (m0, m1)]
    for name in METRICS:
        values = [f[name] for f in fold_values]
        assert result["fold_mean"][name] == pytest.approx(np.mean(values))
        assert result["fold_sd"][name] == pytest.approx(np.std(values, ddof=1))
    assert [f["fold"] for f in result["per_fold"]] == [0, 1]
    assert read_json(tmp_path / "out" / "cv_metrics.json")["n_samples"] == 120


def test_aggregate_folds_rejects_overlapping_folds(tmp_path: Path):
    y, proba, groups, classes = _noisy()
    frame = _predictions(y, proba, groups, classes)
    p0, m0 = _write_fold(tmp_path, 0, frame.iloc[:70], classes)
    p1, m1 = _write_fold(tmp_path, 1, frame.iloc[60:], classes)
    with pytest.raises(ValueError, match="overlap"):
        _aggregate(tmp_path, [p0, p1], [m0, m1])
    assert not (tmp_path / "out" / "oof.parquet").exists()
    assert not (tmp_path / "out" / "cv_metrics.json").exists()
