"""Subgroup performance on real predictions: labels, intervals, flags, table and forest plot.

Survival predictions come from GSE1992 (``resources/survival_example``, with clinical covariates
age, ER status and grade); classification predictions from the TCGA example
(``resources/example``), which has no clinical covariates, so its subgroup is a median split of
one gene's expression. Models are fitted on half of the subjects and predict the other half, the
way the pipeline builds a predictions table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from PIL import Image

from omics_ml.assess import metrics_with_intervals
from omics_ml.subgroups import (
    MISSING,
    plot_subgroups,
    subgroup_labels,
    subgroup_performance,
    subgroup_table,
)
from omics_ml.tasks import ClassificationHead, Outcome, SurvivalHead, TaskHead

ROOT = Path(__file__).resolve().parents[2]
SURVIVAL = ROOT / "resources" / "survival_example"
TCGA = ROOT / "resources" / "example"
N_BOOT = 30
LEVEL = 0.9
SEED = 11
SURVIVAL_METRICS = ["c_index_harrell", "integrated_brier_score"]
CLASS_METRICS = ["balanced_accuracy", "roc_auc_ovr", "log_loss"]


def _half_split(subjects: pd.Series) -> np.ndarray:
    """Training mask: a seeded half of the subjects."""
    unique = np.sort(subjects.unique())
    train = np.random.default_rng(0).permutation(unique)[: unique.size // 2]
    return subjects.isin(train).to_numpy()


def _fit_predict(
    head: TaskHead, train: pd.DataFrame, test: pd.DataFrame, genes: list[str], outcome: Outcome
) -> pd.DataFrame:
    """Fit a small booster the way the pipeline does and predict the test rows."""
    head.prepare(outcome)
    x_train = train[genes].to_numpy(np.float32)
    params = {
        **head.xgb_params(),
        "max_depth": 2,
        "eta": 0.1,
        "max_bin": 32,
        "nthread": 2,
        "seed": 0,
    }
    booster = xgb.train(
        params, xgb.DMatrix(x_train, **head.dmatrix_fields(outcome)), num_boost_round=40
    )
    head.fit_extras(booster, x_train, outcome)
    predictions = head.predict(booster, test[genes].to_numpy(np.float32))
    predictions.insert(0, "sample_id", test["sample_id"].to_numpy())
    predictions.insert(1, "subject_id", test["subject_id"].to_numpy())
    return predictions


def _top_genes(frame: pd.DataFrame, genes: pd.Index, n: int) -> list[str]:
    return frame[genes].var().sort_values(ascending=False, kind="stable").index[:n].tolist()


@pytest.fixture(scope="module")
def survival() -> dict[str, Any]:
    """GSE1992 holdout-style predictions (Cox booster) with the test subjects' clinical data."""
    expression = pd.read_parquet(SURVIVAL / "expression.parquet")
    data = (
        pd.read_csv(SURVIVAL / "samples.csv")
        .merge(pd.read_csv(SURVIVAL / "outcomes.csv"), on="subject_id")
        .merge(pd.read_csv(SURVIVAL / "clinical.csv"), on="sample_id")
        .merge(expression, on="sample_id")
        .sort_values("sample_id", ignore_index=True)
    )
    is_train = _half_split(data["subject_id"])
    train, test = data[is_train].reset_index(drop=True), data[~is_train].reset_index(drop=True)
    genes = _top_genes(train, expression.columns[1:], 200)
    outcome = Outcome(
        np.where(train["event"] == 1, "event", "censored"),
        train["time"].to_numpy(np.float64),
        train["event"].to_numpy(np.int8),
    )
    head = SurvivalHead()
    predictions = _fit_predict(head, train, test, genes, outcome)
    predictions["time"] = test["time"].to_numpy(np.float64)
    predictions["event"] = test["event"].to_numpy(np.int8)
    predictions["label"] = np.where(test["event"] == 1, "event", "censored")
    return {"predictions": predictions, "clinical": test, "head": head.to_json()}


@pytest.fixture(scope="module")
def classification() -> dict[str, Any]:
    """TCGA holdout-style predictions (3 subtypes) and a median split of one gene.

    The TCGA example has no clinical covariates, so the subgroup is built from expression.
    """
    mrna = pd.read_csv(TCGA / "mrna.csv")
    data = (
        pd.read_csv(TCGA / "samples.csv")
        .merge(pd.read_csv(TCGA / "outcomes.csv"), on="sample_id")
        .merge(mrna, on="sample_id")
        .sort_values("sample_id", ignore_index=True)
    )
    is_train = _half_split(data["subject_id"])
    train, test = data[is_train].reset_index(drop=True), data[~is_train].reset_index(drop=True)
    genes = mrna.columns[1:].tolist()
    head = ClassificationHead(["Basal", "Her2", "LumA"])
    outcome = Outcome(train["subtype"].astype(str).to_numpy())
    predictions = _fit_predict(head, train, test, genes, outcome)
    predictions["label"] = test["subtype"].astype(str).to_numpy()
    gene = genes[0]
    split = np.where(test[gene] >= test[gene].median(), f"{gene} high", f"{gene} low")
    return {
        "predictions": predictions,
        "head": head.to_json(),
        "split": pd.Series(split, index=predictions.index),
    }


def _survival_labels(survival: dict[str, Any]) -> dict[str, pd.Series]:
    clinical = survival["clinical"]
    return {
        "age band": subgroup_labels(
            clinical["age"], {"column": "clinical:age", "bins": [50, 65]}, where="s[0]"
        ),
        "ER status": subgroup_labels(
            clinical["er_positive"],
            {"column": "clinical:er_positive", "labels": {"0": "ER-negative", "1": "ER-positive"}},
            where="s[1]",
        ),
    }


@pytest.fixture(scope="module")
def survival_result(survival: dict[str, Any]) -> dict[str, Any]:
    return subgroup_performance(
        survival["predictions"],
        _survival_labels(survival),
        head=survival["head"],
        metrics=SURVIVAL_METRICS,
        n_bootstrap=N_BOOT,
        confidence_level=LEVEL,
        seed=SEED,
    )


# ------------------------------------------------------------------------------------ labels


def test_bins_label_left_closed_intervals_and_missing() -> None:
    values = pd.Series([20.0, 49.9, 50.0, 64.99, 65.0, 88.0, np.nan])
    labels = subgroup_labels(values, {"column": "age", "bins": [50, 65]}, where="evaluate.x")
    assert labels.astype(str).tolist() == [
        "<50",
        "<50",
        "50-65",
        "50-65",
        ">=65",
        ">=65",
        MISSING,
    ]
    assert list(labels.cat.categories) == ["<50", "50-65", ">=65", MISSING]
    decimal = subgroup_labels(pd.Series([0.1, 2.0]), {"bins": [0.5, 1.25]}, where="w")
    assert decimal.astype(str).tolist() == ["<0.5", ">=1.25"]


def test_bins_on_real_ages_keep_interval_order(survival: dict[str, Any]) -> None:
    age = survival["clinical"]["age"]
    labels = subgroup_labels(age, {"column": "clinical:age", "bins": [50, 65]}, where="w")
    assert list(labels.cat.categories) == ["<50", "50-65", ">=65"]
    assert (labels.astype(str)[age < 50] == "<50").all()
    assert (labels.astype(str)[age >= 65] == ">=65").all()
    assert labels.value_counts().sum() == len(age)


def test_labels_mapping_matches_whole_numbers_as_text(survival: dict[str, Any]) -> None:
    spec = {"column": "er", "labels": {"0": "ER-negative", "1": "ER-positive"}}
    mixed = pd.Series([1, 1.0, 0.0, 0, None, "1", 2.5], dtype=object)
    labels = subgroup_labels(mixed, spec, where="w").astype(str).tolist()
    assert labels == [
        "ER-positive",
        "ER-positive",
        "ER-negative",
        "ER-negative",
        MISSING,
        "ER-positive",
        "2.5",
    ]
    er = survival["clinical"]["er_positive"]  # float column with missing values
    assert er.dtype == np.float64 and er.isna().any()
    mapped = subgroup_labels(er, spec, where="w")
    assert set(mapped.astype(str)) == {"ER-negative", "ER-positive", MISSING}
    assert list(mapped.cat.categories)[-1] == MISSING
    assert (mapped.astype(str)[er == 1.0] == "ER-positive").all()


def test_mixed_values_and_unmapped_text() -> None:
    mixed = pd.Series([1, 1.0, "1", "007", 2.5, None], dtype=object)
    labels = subgroup_labels(mixed, {"labels": {"1": "one"}}, where="w")
    assert labels.astype(str).tolist() == ["one", "one", "one", "007", "2.5", MISSING]
    sites = subgroup_labels(pd.Series(["10", "2", "b", "a"]), {}, where="w")
    assert list(sites.cat.categories) == ["2", "10", "a", "b"]


@pytest.mark.parametrize(
    ("bins", "values"),
    [
        ([65, 50], [1.0]),
        ([50, 50], [1.0]),
        ([], [1.0]),
        (["50"], [1.0]),
        ([50], ["old", "young"]),
    ],
)
def test_bad_bins_name_the_key(bins: list[Any], values: list[Any]) -> None:
    with pytest.raises(ValueError, match=r"evaluate\.subgroups\[2\]\.bins"):
        subgroup_labels(
            pd.Series(values), {"column": "c", "bins": bins}, where="evaluate.subgroups[2]"
        )


def test_bad_labels_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"evaluate\.subgroups\[0\]\.labels"):
        subgroup_labels(pd.Series([1]), {"labels": ["a"]}, where="evaluate.subgroups[0]")


# ------------------------------------------------------------------------------- performance


def test_levels_equal_metrics_on_their_own_rows(
    survival: dict[str, Any], survival_result: dict[str, Any]
) -> None:
    predictions, head = survival["predictions"], survival["head"]
    cohort = metrics_with_intervals(
        predictions, head=head, n_bootstrap=N_BOOT, confidence_level=LEVEL, seed=SEED
    )
    for metric in SURVIVAL_METRICS:
        assert survival_result["cohort"][metric] == pytest.approx(cohort[metric])
    labels = _survival_labels(survival)["age band"].astype(str)
    levels = survival_result["subgroups"]["age band"]
    assert list(levels) == ["<50", "50-65", ">=65"]
    for k, (level, entry) in enumerate(levels.items()):
        rows = predictions[(labels == level).to_numpy()].reset_index(drop=True)
        assert entry["n_rows"] == len(rows)
        assert entry["n_subjects"] == rows["subject_id"].nunique()
        assert entry["evaluable"], entry["reason"]
        direct = metrics_with_intervals(
            rows,
            head=head,
            reference=predictions,  # censoring from all rows, as the cohort's
            n_bootstrap=N_BOOT,
            confidence_level=LEVEL,
            seed=SEED + k,
        )
        for metric in SURVIVAL_METRICS:
            assert entry["metrics"][metric] == pytest.approx(direct[metric], nan_ok=True)
            assert entry["metrics"][metric]["lower"] <= entry["metrics"][metric]["upper"]


def test_levels_ordered_with_missing_last(survival_result: dict[str, Any]) -> None:
    er = survival_result["subgroups"]["ER status"]
    assert list(er) == ["ER-negative", "ER-positive", MISSING]
    assert not er[MISSING]["evaluable"]
    assert er[MISSING]["metrics"] == {}
    assert "min_subjects" in er[MISSING]["reason"]


def test_small_and_eventless_levels_are_not_evaluable(survival: dict[str, Any]) -> None:
    clinical = survival["clinical"]
    grade = subgroup_labels(clinical["grade"], {"column": "clinical:grade"}, where="w")
    eventless = clinical.groupby(grade.astype(str).to_numpy())["event"].sum()
    assert eventless["1"] == 0  # no grade-1 test subject has an event
    result = subgroup_performance(
        survival["predictions"],
        {"grade": grade},
        head=survival["head"],
        metrics=SURVIVAL_METRICS,
        n_bootstrap=5,
        confidence_level=LEVEL,
        seed=SEED,
        min_subjects={"grade": 3},
    )
    levels = result["subgroups"]["grade"]
    assert list(levels)[:3] == ["1", "2", "3"]
    assert not levels["1"]["evaluable"]
    assert "no event" in levels["1"]["reason"]
    assert levels["1"]["n_subjects"] == int((grade.astype(str) == "1").sum())
    assert levels["3"]["evaluable"] and levels["3"]["reason"] is None
    assert list(levels)[-1] == MISSING  # 2 test subjects without grade, below min_subjects
    assert not levels[MISSING]["evaluable"]
    larger = subgroup_performance(
        survival["predictions"],
        {"grade": grade},
        head=survival["head"],
        metrics=SURVIVAL_METRICS,
        n_bootstrap=0,
        confidence_level=LEVEL,
        seed=SEED,
        min_subjects=100,
    )
    assert not any(e["evaluable"] for e in larger["subgroups"]["grade"].values())
    assert all("fewer than" in e["reason"] for e in larger["subgroups"]["grade"].values())


def test_corrupted_level_is_flagged_and_untouched_level_is_not(
    survival: dict[str, Any],
) -> None:
    predictions = survival["predictions"].copy()
    labels = _survival_labels(survival)
    negative = (labels["ER status"].astype(str) == "ER-negative").to_numpy()
    # Risk rising with survival time: the ranking inside ER-negative is reversed.
    predictions.loc[negative, "risk_score"] = predictions.loc[negative, "time"]
    result = subgroup_performance(
        predictions,
        {"ER status": labels["ER status"]},
        head=survival["head"],
        metrics=["c_index_harrell"],
        n_bootstrap=N_BOOT,
        confidence_level=LEVEL,
        seed=SEED,
    )
    er = result["subgroups"]["ER status"]
    cohort = result["cohort"]["c_index_harrell"]["estimate"]
    assert er["ER-negative"]["flagged"] == ["c_index_harrell"]
    assert er["ER-negative"]["metrics"]["c_index_harrell"]["upper"] < cohort
    assert er["ER-positive"]["flagged"] == []
    assert result["flags"] == [
        {
            "subgroup": "ER status",
            "level": "ER-negative",
            "metric": "c_index_harrell",
            **er["ER-negative"]["metrics"]["c_index_harrell"],
            "cohort_estimate": cohort,
        }
    ]


def test_lower_is_better_metric_flags_on_lower_bound(classification: dict[str, Any]) -> None:
    predictions = classification["predictions"].copy()
    split = classification["split"]
    low = (split.str.endswith("low")).to_numpy()
    probs = ["prob_Basal", "prob_Her2", "prob_LumA"]
    # Low-expression rows predict a wrong class with confidence: log loss rises in that level.
    predictions.loc[low, probs] = predictions.loc[low, probs].to_numpy()[:, [1, 2, 0]]
    result = subgroup_performance(
        predictions,
        {"split": split},
        head=classification["head"],
        metrics=["log_loss"],
        n_bootstrap=N_BOOT,
        confidence_level=LEVEL,
        seed=SEED,
    )
    levels = result["subgroups"]["split"]
    (low_level,) = [name for name in levels if name.endswith("low")]
    (high_level,) = [name for name in levels if name.endswith("high")]
    cohort = result["cohort"]["log_loss"]["estimate"]
    assert levels[low_level]["metrics"]["log_loss"]["lower"] > cohort
    assert levels[low_level]["flagged"] == ["log_loss"]
    assert levels[high_level]["flagged"] == []


def test_classification_single_class_levels_are_partly_evaluable(
    classification: dict[str, Any],
) -> None:
    predictions = classification["predictions"]
    by_class = pd.Series(predictions["label"].to_numpy(), index=predictions.index)
    tiny = pd.Series(np.where(np.arange(len(predictions)) < 4, "tiny", "rest"))
    result = subgroup_performance(
        predictions,
        {"true subtype": by_class, "tiny": tiny},
        head=classification["head"],
        metrics=CLASS_METRICS,
        n_bootstrap=5,
        confidence_level=LEVEL,
        seed=SEED,
        min_subjects=5,
    )
    subtypes = result["subgroups"]["true subtype"]
    assert list(subtypes) == ["Basal", "Her2", "LumA"]
    for entry in subtypes.values():  # one class: ROC AUC undefined, the others defined
        assert entry["evaluable"]
        assert np.isnan(entry["metrics"]["roc_auc_ovr"]["estimate"])
        assert np.isfinite(entry["metrics"]["log_loss"]["estimate"])
        assert "roc_auc_ovr" in entry["reason"]
        assert "roc_auc_ovr" not in entry["flagged"]
    assert not result["subgroups"]["tiny"]["tiny"]["evaluable"]
    assert result["subgroups"]["tiny"]["rest"]["evaluable"]
    table = subgroup_table(result, "roc_auc_ovr")
    assert not table.loc[table["subgroup"] == "true subtype", "evaluable"].any()
    table = subgroup_table(result, "log_loss")
    assert table.loc[table["subgroup"] == "true subtype", "evaluable"].all()
    assert table.loc[table["subgroup"] == "true subtype", "reason"].isna().all()


def test_bad_inputs_raise(survival: dict[str, Any]) -> None:
    predictions, head = survival["predictions"], survival["head"]
    labels = _survival_labels(survival)
    common = {"head": head, "n_bootstrap": 0, "confidence_level": LEVEL, "seed": SEED}
    with pytest.raises(ValueError, match="unknown metric"):
        subgroup_performance(predictions, labels, metrics=["accuracy"], **common)
    with pytest.raises(ValueError, match="not reported"):
        subgroup_performance(predictions, labels, metrics=["balanced_accuracy"], **common)
    shifted = {"age band": labels["age band"].iloc[1:]}
    with pytest.raises(ValueError, match="not aligned"):
        subgroup_performance(predictions, shifted, metrics=SURVIVAL_METRICS, **common)
    with pytest.raises(ValueError, match=r"min_subjects"):
        subgroup_performance(
            predictions, labels, metrics=SURVIVAL_METRICS, min_subjects=0, **common
        )


def test_result_is_json_safe_and_deterministic(
    survival: dict[str, Any], survival_result: dict[str, Any]
) -> None:
    text = json.dumps(survival_result, allow_nan=True)
    assert json.loads(text)["subgroups"].keys() == survival_result["subgroups"].keys()
    again = subgroup_performance(
        survival["predictions"],
        _survival_labels(survival),
        head=survival["head"],
        metrics=SURVIVAL_METRICS,
        n_bootstrap=N_BOOT,
        confidence_level=LEVEL,
        seed=SEED,
    )
    assert json.dumps(again, allow_nan=True) == text
    # A subgroup's result does not depend on the other subgroups evaluated with it.
    alone = subgroup_performance(
        survival["predictions"],
        {"ER status": _survival_labels(survival)["ER status"]},
        head=survival["head"],
        metrics=SURVIVAL_METRICS,
        n_bootstrap=N_BOOT,
        confidence_level=LEVEL,
        seed=SEED,
    )
    assert alone["subgroups"]["ER status"] == survival_result["subgroups"]["ER status"]


# ----------------------------------------------------------------------------- table and plot


def test_table_has_cohort_row_then_levels(survival_result: dict[str, Any]) -> None:
    table = subgroup_table(survival_result, "c_index_harrell")
    assert list(table.columns) == [
        "subgroup",
        "level",
        "n_subjects",
        "estimate",
        "lower",
        "upper",
        "flagged",
        "evaluable",
        "reason",
    ]
    assert table.iloc[0][["subgroup", "level"]].tolist() == ["all", "all"]
    assert table.iloc[0]["estimate"] == survival_result["cohort"]["c_index_harrell"]["estimate"]
    assert table.iloc[0]["n_subjects"] == survival_result["n_subjects"]
    n_levels = sum(len(levels) for levels in survival_result["subgroups"].values())
    assert len(table) == 1 + n_levels
    assert table["level"].tolist()[1:4] == ["<50", "50-65", ">=65"]
    missing = table[table["level"] == MISSING].iloc[0]
    assert not missing["evaluable"] and np.isnan(missing["estimate"])
    assert table["flagged"].dtype == bool
    with pytest.raises(ValueError, match="was not evaluated"):
        subgroup_table(survival_result, "mean_auc")


def test_forest_plot_written(
    survival: dict[str, Any], survival_result: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "plots" / "subgroups_c_index.png"
    plot_subgroups(survival_result, "c_index_harrell", out, title="Holdout by subgroup")
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 300 and height > 200
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind
    with pytest.raises(ValueError, match="was not evaluated"):
        plot_subgroups(survival_result, "mean_auc", tmp_path / "x.png", title="x")
    assert not (tmp_path / "x.png").exists()
