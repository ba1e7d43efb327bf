"""Tests of omics_ml.transforms.genotype: call-rate/MAF filters and frozen allele orientation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omics_ml.transforms.base import step_from_json
from omics_ml.transforms.genotype import GenotypeQC

nan = np.nan

# 10 samples x 6 variants whose summaries are known by hand:
# v0: two heterozygotes          -> p = 2/20 = 0.10, MAF 0.10, kept, not flipped
# v1: one heterozygote, rest 2   -> p = 19/20 = 0.95, MAF 0.05, kept, flipped
# v2: all 0 (monomorphic)        -> p = 0, MAF 0, dropped even with min_maf = 0
# v3: 2 missing calls            -> call rate 0.8, p = 3/16, dropped by call rate 0.95
# v4: all 2 (monomorphic)        -> p = 1, MAF 0, dropped
# v5: all heterozygous           -> p = 0.5, MAF 0.5, kept, not flipped (p > 0.5 flips)
DOSAGES = np.array(
    [
        [0, 2, 0, 1, 2, 1],
        [0, 2, 0, nan, 2, 1],
        [0, 2, 0, nan, 2, 1],
        [0, 2, 0, 2, 2, 1],
        [0, 2, 0, 0, 2, 1],
        [0, 2, 0, 0, 2, 1],
        [0, 2, 0, 0, 2, 1],
        [0, 2, 0, 0, 2, 1],
        [1, 1, 0, 0, 2, 1],
        [1, 2, 0, 0, 2, 1],
    ],
    dtype=np.float64,
)


def test_call_rate_maf_and_flip_by_hand():
    step = GenotypeQC().fit(DOSAGES)
    np.testing.assert_allclose(step.call_rate_, [1, 1, 1, 0.8, 1, 1])
    np.testing.assert_allclose(step.maf_, [0.1, 0.05, 0.0, 3 / 16, 0.0, 0.5])
    np.testing.assert_array_equal(step.flip_, [False, True, False, False, True, False])
    np.testing.assert_array_equal(step.keep_, [True, True, False, False, False, True])
    np.testing.assert_allclose(step.allele_freq_, [0.1, 0.05, 0.0, 3 / 16, 0.0, 0.5])
    out = step.transform(DOSAGES)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[:, 0], DOSAGES[:, 0])
    np.testing.assert_array_equal(out[:, 1], 2 - DOSAGES[:, 1])
    np.testing.assert_array_equal(out[:, 2], DOSAGES[:, 5])
    np.testing.assert_array_equal(step.get_feature_names_out(list("abcdef")), ["a", "b", "f"])


def test_min_maf_zero_still_drops_monomorphic_and_thresholds_apply():
    step = GenotypeQC(min_call_rate=0.8, min_maf=0.0).fit(DOSAGES)
    np.testing.assert_array_equal(step.keep_, [True, True, False, True, False, True])
    step = GenotypeQC(min_maf=0.06).fit(DOSAGES)
    np.testing.assert_array_equal(step.keep_, [True, False, False, False, False, True])


def test_orientation_is_frozen_for_new_samples():
    step = GenotypeQC().fit(DOSAGES)
    # New samples where the counted allele of v1 is rare and that of v0 is common:
    new = np.array([[2, 0, 0, 0, 2, 1], [2, 0, 0, 0, 2, 0], [1.5, 0.25, 0, 0, 2, 1]])
    out = step.transform(new)
    np.testing.assert_array_equal(out[:, 0], new[:, 0])  # not flipped, whatever new frequency
    np.testing.assert_array_equal(out[:, 1], [2, 2, 1.75])  # flipped as in training


def test_no_orientation():
    step = GenotypeQC(orient_to_minor=False).fit(DOSAGES)
    assert not step.flip_.any()
    np.testing.assert_allclose(step.allele_freq_[:2], [0.1, 0.95])
    np.testing.assert_array_equal(step.transform(DOSAGES)[:, 1], DOSAGES[:, 1])


def test_mean_imputation_uses_frozen_oriented_frequency():
    step = GenotypeQC(min_call_rate=0.8, impute="mean").fit(DOSAGES)
    new = np.array([[nan, nan, 0, nan, 2, nan]])
    # kept: v0, v1 (flipped), v3, v5; fill = 2 * frequency of the counted (minor) allele
    np.testing.assert_allclose(step.transform(new), [[0.2, 0.1, 3 / 8, 1.0]])
    out = step.transform(DOSAGES)
    assert out[1, 2] == pytest.approx(3 / 8)
    assert not np.isnan(out).any()


def test_no_imputation_keeps_nan():
    step = GenotypeQC(min_call_rate=0.8).fit(DOSAGES)
    out = step.transform(DOSAGES)
    assert np.isnan(out[1, 2]) and np.isnan(out[2, 2])
    assert np.isnan(out).sum() == 2


def test_out_of_range_dosage_in_fit_and_transform():
    X = DOSAGES.copy()
    X[4, 3] = 3.0
    with pytest.raises(ValueError, match=r"row\) 4, variant \(column\) 3") as info:
        GenotypeQC().fit(X)
    assert "dosages must be 0-2 copies of the counted allele" in str(info.value)
    step = GenotypeQC().fit(DOSAGES)
    X = DOSAGES.copy()
    X[7, 0] = -9
    with pytest.raises(ValueError, match=r"-9\.0 at sample \(row\) 7, variant \(column\) 0"):
        step.transform(X)


def test_no_variant_passes():
    with pytest.raises(ValueError, match=r"no variant passes.*min_call_rate=0\.95, min_maf=0\.2"):
        GenotypeQC(min_maf=0.2, min_call_rate=0.95).fit(DOSAGES[:, :5])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"min_call_rate": 1.5}, "min_call_rate must be in"),
        ({"min_maf": 0.7}, "min_maf must be in"),
        ({"impute": "median"}, r"impute must be one of \['none', 'mean'\]"),
        ({"orient_to_minor": "yes"}, "orient_to_minor must be true or false"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        GenotypeQC(**params).fit(DOSAGES)


def test_wrong_number_of_variants():
    step = GenotypeQC().fit(DOSAGES)
    with pytest.raises(ValueError, match="fitted on 6 features but got 5"):
        step.transform(DOSAGES[:, :5])


@pytest.mark.parametrize("impute", ["none", "mean"])
def test_json_round_trip(impute):
    step = GenotypeQC(min_call_rate=0.8, impute=impute).fit(DOSAGES)
    restored = step_from_json(json.loads(json.dumps(step.to_json())))
    assert isinstance(restored, GenotypeQC)
    assert restored.get_params() == step.get_params()
    for name in GenotypeQC.state_attributes:
        np.testing.assert_array_equal(getattr(restored, name), getattr(step, name))
    new = DOSAGES[::-1].copy()
    new[0, 0] = nan
    np.testing.assert_array_equal(restored.transform(new), step.transform(new))


_DOSAGE = st.one_of(st.sampled_from([0.0, 1.0, 2.0, np.nan]), st.floats(0.0, 2.0, allow_nan=False))


@settings(max_examples=30, deadline=None)
@given(
    X=hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.just(6)), elements=_DOSAGE),
    row=st.integers(0, 100),
    impute=st.sampled_from(["none", "mean"]),
)
def test_row_independent(X, row, impute):
    step = GenotypeQC(min_call_rate=0.8, impute=impute).fit(DOSAGES)
    i = row % X.shape[0]
    np.testing.assert_array_equal(step.transform(X[i : i + 1]), step.transform(X)[i : i + 1])
