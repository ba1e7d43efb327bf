"""Tests of omics_ml.split: subject-grouped, stratified holdout and outer folds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from omics_ml.io import read_json
from omics_ml.split import (
    grouped_stratified_split,
    make_splits,
    permute_labels_by_subject,
    write_splits,
)

CLASSES = ("case", "control", "other")


def _cohort(n_subjects: int = 60, seed: int = 0) -> pl.DataFrame:
    """Subjects with 1-4 samples each; classes in proportions 1/2, 1/3, 1/6 of subjects."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        label = CLASSES[0] if s % 6 < 3 else CLASSES[1] if s % 6 < 5 else CLASSES[2]
        for v in range(int(rng.integers(1, 5))):
            rows.append((f"smp{s:03d}_{v}", f"subj{s:03d}", label))
    return pl.DataFrame(rows, schema=["sample_id", "subject_id", "label"], orient="row")


def _subjects(cohort: pl.DataFrame, samples: list[str]) -> set[str]:
    return set(cohort.filter(pl.col("sample_id").is_in(samples))["subject_id"].to_list())


def _class_share(cohort: pl.DataFrame, samples: list[str]) -> dict[str, float]:
    labels = cohort.filter(pl.col("sample_id").is_in(samples))["label"].to_list()
    counts = Counter(labels)
    return {c: counts[c] / len(labels) for c in CLASSES}


@pytest.fixture(scope="module")
def cohort() -> pl.DataFrame:
    return _cohort()


@pytest.fixture(scope="module")
def splits(cohort: pl.DataFrame):
    return make_splits(cohort, holdout_fraction=0.2, n_splits=4, seed=7)


def test_holdout_and_development_partition_samples_by_subject(cohort, splits):
    split, _ = splits
    development, holdout = split["development"], split["holdout"]
    assert set(development).isdisjoint(holdout)
    assert sorted(development + holdout) == sorted(cohort["sample_id"].to_list())
    assert _subjects(cohort, development).isdisjoint(_subjects(cohort, holdout))
    n_holdout_subjects = len(_subjects(cohort, holdout))
    assert 0.1 <= n_holdout_subjects / cohort["subject_id"].n_unique() <= 0.3


def test_folds_are_grouped_and_partition_development(cohort, splits):
    split, _ = splits
    development = set(split["development"])
    folds = split["folds"]
    assert [f["fold"] for f in folds] == [0, 1, 2, 3]
    tests = [s for f in folds for s in f["test"]]
    assert len(tests) == len(set(tests))
    assert set(tests) == development
    for fold in folds:
        train, test = set(fold["train"]), set(fold["test"])
        assert train.isdisjoint(test)
        assert train | test == development
        assert _subjects(cohort, fold["train"]).isdisjoint(_subjects(cohort, fold["test"]))
        assert not set(fold["train"]) & set(split["holdout"])


def test_class_proportions_roughly_stratified(cohort, splits):
    split, _ = splits
    overall = _class_share(cohort, cohort["sample_id"].to_list())
    parts = [split["development"], split["holdout"]] + [f["test"] for f in split["folds"]]
    for part in parts:
        share = _class_share(cohort, part)
        for label in CLASSES:
            assert share[label] > 0, f"class {label} missing from a partition"
            assert abs(share[label] - overall[label]) < 0.2


def test_assignment_table_matches_splits(cohort, splits):
    split, assignment = splits
    assert assignment.columns == ["sample_id", "subject_id", "label", "partition", "fold"]
    assert assignment["sample_id"].to_list() == cohort["sample_id"].to_list()
    holdout = assignment.filter(pl.col("partition") == "holdout")
    assert sorted(holdout["sample_id"].to_list()) == sorted(split["holdout"])
    assert holdout["fold"].null_count() == holdout.height
    development = assignment.filter(pl.col("partition") == "development")
    assert development["fold"].null_count() == 0
    for fold in split["folds"]:
        in_fold = development.filter(pl.col("fold") == fold["fold"])["sample_id"].to_list()
        assert sorted(in_fold) == sorted(fold["test"])


def test_same_seed_same_splits_other_seed_different(cohort):
    a, assign_a = make_splits(cohort, holdout_fraction=0.2, n_splits=4, seed=11)
    b, assign_b = make_splits(cohort, holdout_fraction=0.2, n_splits=4, seed=11)
    c, _ = make_splits(cohort, holdout_fraction=0.2, n_splits=4, seed=12)
    assert a == b
    assert assign_a.equals(assign_b)
    assert a["holdout"] != c["holdout"] or a["folds"] != c["folds"]
    assert c["seed"] == 12


def test_n_splits_larger_than_subjects_raises():
    small = _cohort(n_subjects=12)
    with pytest.raises(ValueError, match="n_splits"):
        make_splits(small, holdout_fraction=0.2, n_splits=11, seed=0)


def test_grouped_stratified_split_keeps_groups_together():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 3)
    labels = np.repeat(rng.integers(0, 2, size=50), 3)
    kept, held = grouped_stratified_split(labels, groups, fraction=0.25, seed=3)
    assert np.all(np.diff(kept) > 0)
    assert np.all(np.diff(held) > 0)
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(150))
    assert not set(groups[kept]) & set(groups[held])
    assert 0.15 <= held.size / 150 <= 0.35


def test_permute_labels_keeps_one_label_per_subject_and_multiset(cohort):
    permuted = permute_labels_by_subject(cohort, seed=5)
    assert permuted.height == cohort.height
    assert sorted(permuted["sample_id"].to_list()) == sorted(cohort["sample_id"].to_list())
    per_subject = permuted.group_by("subject_id").agg(pl.col("label").n_unique().alias("n"))
    assert (per_subject["n"] == 1).all()

    def subject_labels(frame: pl.DataFrame) -> dict[str, str]:
        return dict(frame.select("subject_id", "label").unique().iter_rows())

    before, after = subject_labels(cohort), subject_labels(permuted)
    assert before.keys() == after.keys()
    assert Counter(before.values()) == Counter(after.values())
    assert before != after  # it does permute
    # each sample keeps its subject
    joined = cohort.join(permuted, on="sample_id", suffix="_p")
    assert (joined["subject_id"] == joined["subject_id_p"]).all()
    # deterministic in the seed
    again = permute_labels_by_subject(cohort, seed=5)
    assert subject_labels(again) == after
    assert subject_labels(permute_labels_by_subject(cohort, seed=6)) != after


def test_write_splits_writes_json_and_cohort(tmp_path: Path, cohort):
    split = write_splits(
        cohort,
        splits_out=tmp_path / "splits.json",
        cohort_out=tmp_path / "cohort.parquet",
        holdout_fraction=0.2,
        n_splits=3,
        seed=1,
    )
    on_disk = read_json(tmp_path / "splits.json")
    assert on_disk == split
    assert on_disk["permuted_labels"] is False
    table = pl.read_parquet(tmp_path / "cohort.parquet")
    assert table["label"].to_list() == cohort["label"].to_list()
    assert set(table.filter(pl.col("partition") == "holdout")["sample_id"]) == set(split["holdout"])


def test_write_splits_with_permuted_labels(tmp_path: Path, cohort):
    split = write_splits(
        cohort,
        splits_out=tmp_path / "splits.json",
        cohort_out=tmp_path / "cohort.parquet",
        holdout_fraction=0.2,
        n_splits=3,
        seed=1,
        permute_labels=True,
    )
    assert split["permuted_labels"] is True
    table = pl.read_parquet(tmp_path / "cohort.parquet")
    original = dict(cohort.select("sample_id", "label").iter_rows())
    written = dict(table.select("sample_id", "label").iter_rows())
    assert original.keys() == written.keys()
    assert original != written
    for subject in table.partition_by("subject_id"):
        assert subject["label"].n_unique() == 1
