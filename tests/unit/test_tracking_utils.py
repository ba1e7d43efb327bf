"""Tests of the pure helpers of provenance and promotion (no MLflow store is touched)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest

from omics_ml.provenance import (
    MAX_PARAM_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    PseudonymKey,
    config_hash,
    data_digests,
    flatten_config,
    git_state,
    package_versions,
    pseudonym_key,
    pseudonymise,
)
from omics_ml.registry import find_pickles, promotion_decision

# --- promotion_decision -------------------------------------------------------------------


@pytest.mark.parametrize("champion", [None, 0.9, 0.1, float("nan")])
@pytest.mark.parametrize("new", [0.5, 0.95])
def test_always_and_never_ignore_values(champion, new):
    decision = promotion_decision("always", "balanced_accuracy", new, champion)
    assert decision.promote is True
    assert "always" in decision.reason
    decision = promotion_decision("never", "balanced_accuracy", new, champion, margin=0.5)
    assert decision.promote is False
    assert "never" in decision.reason
    assert decision.tags()["promotion.decision"] == "not promoted"


@pytest.mark.parametrize("champion", [None, float("nan")])
def test_if_better_without_champion_promotes(champion):
    decision = promotion_decision("if_better", "log_loss", 9.9, champion, margin=0.1)
    assert decision.promote is True
    assert "no current champion" in decision.reason
    assert decision.tags()["promotion.champion_value"] == "none"


@pytest.mark.parametrize(
    ("metric", "new", "champion", "margin", "expected"),
    [
        ("balanced_accuracy", 0.80, 0.70, 0.0, True),
        ("balanced_accuracy", 0.60, 0.70, 0.0, False),
        ("balanced_accuracy", 0.70, 0.70, 0.0, False),  # a tie does not beat the champion
        ("balanced_accuracy", 0.72, 0.70, 0.05, False),  # better, but not by the margin
        ("balanced_accuracy", 0.75, 0.70, 0.05, True),  # exactly the margin
        ("balanced_accuracy", 0.76, 0.70, 0.05, True),
        ("macro_f1", 0.51, 0.50, 0.0, True),
        ("roc_auc_ovr", 0.49, 0.50, 0.0, False),
        ("log_loss", 0.30, 0.40, 0.0, True),  # lower is better
        ("log_loss", 0.30, 0.40, 0.2, False),
        ("log_loss", 0.50, 0.40, 0.0, False),
        ("log_loss", 0.40, 0.40, 0.0, False),
        ("rmse", 9.0, 10.0, 1.0, True),
    ],
)
def test_if_better_respects_direction_and_margin(metric, new, champion, margin, expected):
    decision = promotion_decision(
        "if_better", metric, new, champion, margin=margin, champion_version="4"
    )
    assert decision.promote is expected
    assert metric in decision.reason
    assert f"{new:.4f}" in decision.reason
    assert f"{champion:.4f}" in decision.reason
    assert ("does not beat" in decision.reason) is (not expected)
    tags = decision.tags()
    assert tags["promotion.decision"] == ("promoted" if expected else "not promoted")
    assert tags["promotion.new_value"] == f"{new:.6f}"
    assert tags["promotion.champion_value"] == f"{champion:.6f}"
    assert tags["promotion.champion_version"] == "4"
    assert float(tags["promotion.margin"]) == margin
    assert tags["promotion.metric"] == metric


def test_promotion_rejects_unknown_metric_rule_and_negative_margin():
    with pytest.raises(ValueError, match="accuracy_typo"):
        promotion_decision("if_better", "accuracy_typo", 0.5, 0.4)
    with pytest.raises(ValueError, match="promotion_rule 'sometimes'"):
        promotion_decision("sometimes", "rmse", 0.5, 0.4)
    with pytest.raises(ValueError, match="promotion_margin"):
        promotion_decision("if_better", "rmse", 0.5, 0.4, margin=-0.1)


# --- find_pickles -------------------------------------------------------------------------


def test_find_pickles_by_suffix_and_by_header(tmp_path):
    import pickle

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "state.json").write_text("{}")
    (tmp_path / "model" / "booster.ubj").write_bytes(b"{L\x00\x00")
    assert find_pickles(tmp_path) == []
    (tmp_path / "model" / "hidden.bin").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    (tmp_path / "python_model.pkl").write_bytes(b"anything")
    found = [p.relative_to(tmp_path).as_posix() for p in find_pickles(tmp_path)]
    assert found == ["model/hidden.bin", "python_model.pkl"]


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
            '[{"max_missing_fraction": 0.5, "method": "missingness_filter"}, '
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
    # the same steps with their keys in another order log the same value
    reordered = [{k: step[k] for k in reversed(step)} for step in steps]
    assert flatten_config({"n": reordered}) == {"n": flat["modalities.mrna.normalisation"]}


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


# --- parameter limits, digests, git, versions, keys -----------------------------------------


def test_flatten_config_respects_mlflow_limits():
    long_list = list(range(3000))
    long_key = "k" * 300
    flat = flatten_config({"a": {"long": long_list, long_key: 1, long_key + "x": 2}})
    value = flat["a.long"]
    assert len(value) == MAX_PARAM_VALUE_LENGTH
    assert value.endswith("[truncated: see config/config.json]")
    assert value.startswith("[0, 1, 2, ")
    long_keys = [k for k in flat if k != "a.long"]
    assert len(long_keys) == 2  # cut keys stay distinct
    assert all(len(k) <= MAX_PARAM_KEY_LENGTH for k in long_keys)
    assert flatten_config({"short": list(range(5))}) == {"short": "[0, 1, 2, 3, 4]"}


def test_data_digests_by_role():
    config = {
        "cohort": {"samples": "d/s.csv", "outcomes": "d/o.csv"},
        "modalities": {"mrna": {"path": "d/m.csv"}, "prot": {"path": "d/p.parquet"}},
    }
    files = {"d/s.csv": "aa", "d/o.csv": "bb", "d/m.csv": "cc"}
    assert data_digests(config, files) == {
        "cohort.samples": "aa",
        "cohort.outcomes": "bb",
        "modality.mrna": "cc",
        "modality.prot": "unknown",
    }


def test_git_state_commit_and_dirty_flag(tmp_path):
    import subprocess

    assert git_state(tmp_path) == {"commit": "unknown", "dirty": "unknown"}

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_state(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", clean["commit"])
    assert clean["dirty"] == "false"
    (tmp_path / "untracked.txt").write_text("ignored by the flag")
    assert git_state(tmp_path)["dirty"] == "false"
    (tmp_path / "a.txt").write_text("2")
    assert git_state(tmp_path) == {"commit": clean["commit"], "dirty": "true"}


def test_package_versions_names_the_stack():
    import xgboost

    versions = package_versions()
    assert versions["xgboost"] == xgboost.__version__
    assert {"python", "mlflow", "snakemake", "omics_ml"} <= set(versions)
    assert package_versions(["no-such-package-xyz"])["no_such_package_xyz"] == "not installed"


def test_pseudonym_key_from_environment_never_shows_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_PSEUDONYM_KEY", "s3cret-value")
    key = pseudonym_key("TEST_PSEUDONYM_KEY", tmp_path / "unused")
    assert key.source == "$TEST_PSEUDONYM_KEY"
    assert not (tmp_path / "unused").exists()
    assert re.fullmatch(r"[0-9a-f]{12}", key.key_id)
    assert "s3cret" not in repr(key) and "s3cret" not in key.key_id
    assert key.pseudonymise(["A"]) == pseudonymise(["A"], b"s3cret-value")
    other = PseudonymKey(b"another", "test")
    assert other.key_id != key.key_id
    with pytest.raises(ValueError, match="empty"):
        PseudonymKey(b"", "$EMPTY")


def test_pseudonym_key_file_created_once_private(monkeypatch, tmp_path):
    monkeypatch.delenv("TEST_PSEUDONYM_KEY", raising=False)
    path = tmp_path / "mlflow" / ".pseudonym_key"
    first = pseudonym_key("TEST_PSEUDONYM_KEY", path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_text()) == 64
    second = pseudonym_key("TEST_PSEUDONYM_KEY", path)
    assert first.key_id == second.key_id
    assert first.pseudonymise(["x"]) == second.pseudonymise(["x"])
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
