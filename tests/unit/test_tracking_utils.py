"""Tests of the pure helpers of omics_ml.tracking (no MLflow store is touched)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest

from omics_ml.tracking import config_hash, flatten_config, promotion_decision, pseudonymise

# --- promotion_decision -------------------------------------------------------------------


@pytest.mark.parametrize("champion", [None, 0.9, 0.1, float("nan")])
@pytest.mark.parametrize("new", [0.5, 0.95])
def test_always_and_never_ignore_values(champion, new):
    promote, reason = promotion_decision("always", "balanced_accuracy", new, champion)
    assert promote is True
    assert "always" in reason
    promote, reason = promotion_decision("never", "balanced_accuracy", new, champion)
    assert promote is False
    assert "never" in reason


@pytest.mark.parametrize("champion", [None, float("nan")])
def test_if_better_without_champion_promotes(champion):
    promote, reason = promotion_decision("if_better", "log_loss", 9.9, champion)
    assert promote is True
    assert "no current champion" in reason


@pytest.mark.parametrize(
    ("metric", "new", "champion", "expected"),
    [
        ("balanced_accuracy", 0.80, 0.70, True),
        ("balanced_accuracy", 0.60, 0.70, False),
        ("balanced_accuracy", 0.70, 0.70, True),  # ties keep the newest
        ("macro_f1", 0.51, 0.50, True),
        ("roc_auc_ovr", 0.49, 0.50, False),
        ("log_loss", 0.30, 0.40, True),  # lower is better
        ("log_loss", 0.50, 0.40, False),
        ("log_loss", 0.40, 0.40, True),
    ],
)
def test_if_better_respects_metric_direction(metric, new, champion, expected):
    promote, reason = promotion_decision("if_better", metric, new, champion)
    assert promote is expected
    assert metric in reason
    assert f"{new:.4f}" in reason
    assert f"{champion:.4f}" in reason
    assert ("worse than" in reason) is (not expected)


def test_if_better_unknown_metric_raises():
    with pytest.raises(ValueError, match="accuracy_typo"):
        promotion_decision("if_better", "accuracy_typo", 0.5, 0.4)


# --- flatten_config -----------------------------------------------------------------------


def test_flatten_config_nested_and_values_as_strings():
    config = {
        "seed": 42,
        "task": "classification",
        "split": {"holdout_fraction": 0.2, "n_splits": 5},
        "modalities": {
            "mrna": {
                "path": "a.csv",
                "batch_column": None,
                "normalisation": [
                    {"method": "missingness_filter", "max_missing_fraction": 0.5},
                    {"method": "feature_scaling", "scaling": "auto"},
                ],
            },
            "prot": {"path": "p.parquet", "type": "proteomics", "impute": False},
        },
        "model": {"grid": [1, 2]},
    }
    flat = flatten_config(config)
    assert flat == {
        "seed": "42",
        "task": "classification",
        "split.holdout_fraction": "0.2",
        "split.n_splits": "5",
        "modalities.mrna.path": "a.csv",
        "modalities.mrna.batch_column": "null",
        "modalities.mrna.normalisation": (
            '[{"method": "missingness_filter", "max_missing_fraction": 0.5}, '
            '{"method": "feature_scaling", "scaling": "auto"}]'
        ),
        "modalities.prot.path": "p.parquet",
        "modalities.prot.type": "proteomics",
        "modalities.prot.impute": "false",
        "model.grid": "[1, 2]",
    }
    # the step list round-trips: the logged parameter records the whole chain
    steps = config["modalities"]["mrna"]["normalisation"]
    assert json.loads(flat["modalities.mrna.normalisation"]) == steps
    assert all(isinstance(v, str) for v in flat.values())
    assert flatten_config({}) == {}
    assert flatten_config({"a": {}}) == {}
    assert flatten_config({"a": 1}, prefix="cfg.") == {"cfg.a": "1"}


# --- config_hash --------------------------------------------------------------------------


def test_config_hash_stable_under_key_order():
    a = {"seed": 1, "model": {"max_depth": 3, "learning_rate": 0.05}, "task": "classification"}
    b = {"task": "classification", "model": {"learning_rate": 0.05, "max_depth": 3}, "seed": 1}
    assert list(a) != list(b)
    assert config_hash(a) == config_hash(b)
    digest = config_hash(a)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    expected = hashlib.sha256(json.dumps(a, sort_keys=True).encode()).hexdigest()
    assert digest == expected


def test_config_hash_changes_with_values():
    base = {"seed": 1, "model": {"max_depth": 3}}
    assert config_hash(base) != config_hash({"seed": 2, "model": {"max_depth": 3}})
    assert config_hash(base) != config_hash({"seed": 1, "model": {"max_depth": 4}})
    assert config_hash(base) != config_hash({"seed": 1, "model": {"max_depth": "3"}})


def test_config_hash_changes_with_normalisation_steps():
    def config(steps):
        return {"modalities": {"m": {"path": "m.csv", "normalisation": steps}}}

    base = config([{"method": "log2", "pseudocount": 1.0}, {"method": "median_scaling"}])
    assert config_hash(base) == config_hash(
        config([{"pseudocount": 1.0, "method": "log2"}, {"method": "median_scaling"}])
    )
    # a parameter, the order of the steps, or an added step changes the hash
    assert config_hash(base) != config_hash(
        config([{"method": "log2", "pseudocount": 0.5}, {"method": "median_scaling"}])
    )
    assert config_hash(base) != config_hash(
        config([{"method": "median_scaling"}, {"method": "log2", "pseudocount": 1.0}])
    )
    assert config_hash(base) != config_hash(
        config(
            [
                {"method": "log2", "pseudocount": 1.0},
                {"method": "median_scaling"},
                {"method": "combat"},
            ]
        )
    )


# --- pseudonymise -------------------------------------------------------------------------


def test_pseudonymise_keyed_deterministic_hex16():
    ids = ["A0FJ", "A13E", "patient-007"]
    key = b"secret-key-1"
    first = pseudonymise(ids, key)
    assert first == pseudonymise(ids, key)
    assert len(first) == 3
    assert len(set(first)) == 3
    for pseudonym, original in zip(first, ids, strict=True):
        assert re.fullmatch(r"[0-9a-f]{16}", pseudonym)
        assert original not in pseudonym
    other = pseudonymise(ids, b"secret-key-2")
    assert all(a != b for a, b in zip(first, other, strict=True))
    expected = hmac.new(key, b"A0FJ", hashlib.sha256).hexdigest()[:16]
    assert first[0] == expected
    # the keyed hash is not the plain hash of the id
    assert first[0] != hashlib.sha256(b"A0FJ").hexdigest()[:16]


def test_pseudonymise_order_and_non_string_ids():
    key = b"k"
    assert pseudonymise(["b", "a"], key) == pseudonymise(["a", "b"], key)[::-1]
    assert pseudonymise([7], key) == pseudonymise(["7"], key)
    assert pseudonymise([], key) == []
