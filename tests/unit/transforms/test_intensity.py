"""Tests of omics_ml.transforms.intensity: generic, proteomics and metabolomics steps."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable

import hypothesis.extra.numpy as hnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

from omics_ml.transforms.base import FrozenTransform, step_from_json
from omics_ml.transforms.intensity import (
    DetectionFilter,
    FeatureScaling,
    GeneralisedLog,
    LeftCensoredImputer,
    Log2,
    MedianScaling,
    MissingnessFilter,
    ProbabilisticQuotientNormalisation,
    QuantileNormalisation,
    VarianceFilter,
)

P = 8  # features of the shared training data


def _raw(seed: int = 0, n: int = 30, p: int = P, zeros: float = 0.15, nans: float = 0.1):
    """Raw intensities: lognormal, some below detection (0), some not measured (NaN)."""
    rng = np.random.default_rng(seed)
    X = rng.lognormal(mean=8.0, sigma=1.5, size=(n, p))
    X[rng.random(X.shape) < zeros] = 0.0
    X[rng.random(X.shape) < nans] = np.nan
    return X


def _positive(seed: int = 0, n: int = 30, p: int = P):
    return _raw(seed, n, p, zeros=0.0)


def _log(seed: int = 0, n: int = 30, p: int = P):
    rng = np.random.default_rng(seed)
    X = rng.normal(10.0, 1.0, size=(n, p)) * rng.uniform(0.5, 3.0, size=p)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


DATA: dict[str, Callable[..., np.ndarray]] = {"raw": _raw, "positive": _positive, "log": _log}
ELEMENTS = {
    "raw": st.one_of(st.just(np.nan), st.just(0.0), st.floats(1e-3, 1e7)),
    "positive": st.one_of(st.just(np.nan), st.floats(1e-3, 1e7)),
    "log": st.one_of(st.just(np.nan), st.floats(-30.0, 30.0)),
}

#: (id, unfitted step factory, kind of data it expects)
CASES: list[tuple[str, Callable[[], FrozenTransform], str]] = [
    ("Log2", lambda: Log2(pseudocount=0.5), "raw"),
    ("GeneralisedLog", lambda: GeneralisedLog(lam=0.5, base=10.0), "log"),
    ("MissingnessFilter", lambda: MissingnessFilter(max_missing_fraction=0.2), "raw"),
    ("VarianceFilter", lambda: VarianceFilter(min_variance=0.1, top_n=5), "log"),
    ("DetectionFilter", lambda: DetectionFilter(min_detection_rate=0.8), "raw"),
    ("MedianScaling", MedianScaling, "log"),
    ("QuantileNormalisation", QuantileNormalisation, "log"),
    ("FeatureScaling-pareto", lambda: FeatureScaling(method="pareto"), "log"),
    ("FeatureScaling-auto", lambda: FeatureScaling(method="auto"), "log"),
    ("FeatureScaling-none", lambda: FeatureScaling(method="none"), "log"),
    ("LeftCensored-half", lambda: LeftCensoredImputer(method="half_minimum"), "raw"),
    ("LeftCensored-normal", lambda: LeftCensoredImputer(method="downshifted_normal"), "raw"),
    ("PQN-integral", lambda: ProbabilisticQuotientNormalisation(integral_first=True), "positive"),
    ("PQN-plain", lambda: ProbabilisticQuotientNormalisation(integral_first=False), "positive"),
]
CASE_IDS = [case[0] for case in CASES]


def _fitted(factory: Callable[[], FrozenTransform], kind: str) -> FrozenTransform:
    return factory().fit(DATA[kind](seed=0))


# --- shared contract: JSON, row independence, edge cases ----------------------------------


@pytest.mark.parametrize(("name", "factory", "kind"), CASES, ids=CASE_IDS)
def test_json_round_trip_transforms_identically(name, factory, kind):
    step = _fitted(factory, kind)
    state = json.loads(json.dumps(step.to_json()))
    restored = step_from_json(state)
    assert type(restored) is type(step)
    assert restored.get_params() == step.get_params()
    assert set(state["state"]) == {"n_features_in_", *step.state_attributes}
    new = DATA[kind](seed=1, n=12)
    expected = step.transform(new)
    np.testing.assert_array_equal(restored.transform(new), expected)
    assert expected.dtype == np.float64
    assert not np.isnan(expected).all()


@pytest.mark.parametrize(("name", "factory", "kind"), CASES, ids=CASE_IDS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_row_independent(name, factory, kind, data):
    step = _fitted(factory, kind)
    batch = data.draw(
        hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.just(P)), elements=ELEMENTS[kind])
    )
    together = step.transform(batch)
    for i in range(batch.shape[0]):
        alone = step.transform(batch[i : i + 1])
        np.testing.assert_allclose(alone[0], together[i], rtol=1e-12, atol=1e-12, equal_nan=True)
    order = data.draw(st.permutations(range(batch.shape[0])))
    np.testing.assert_allclose(
        step.transform(batch[order]), together[order], rtol=1e-12, atol=1e-12, equal_nan=True
    )


@pytest.mark.parametrize(("name", "factory", "kind"), CASES, ids=CASE_IDS)
def test_all_missing_sample_stays_missing(name, factory, kind):
    step = _fitted(factory, kind)
    new = DATA[kind](seed=2, n=5)
    out = step.transform(np.vstack([new, np.full((1, P), np.nan)]))
    assert np.isnan(out[-1]).all()
    np.testing.assert_array_equal(out[:-1], step.transform(new))
    assert np.isfinite(out[:-1]).any()


@pytest.mark.parametrize(("name", "factory", "kind"), CASES, ids=CASE_IDS)
def test_all_missing_feature_in_fit_does_not_crash(name, factory, kind):
    train = DATA[kind](seed=3)
    train[:, 2] = np.nan
    train[4] = np.nan  # and a development sample with every value missing
    step = factory().fit(train)
    out = step.transform(DATA[kind](seed=4, n=6))
    names = step.get_feature_names_out([f"f{i}" for i in range(P)])
    assert out.shape == (6, len(names))
    if len(names) < P:  # a filter: the empty feature is dropped
        assert "f2" not in names
    else:
        assert np.isfinite(out[:, [0, 1, 3]]).any()


@pytest.mark.parametrize(("name", "factory", "kind"), CASES, ids=CASE_IDS)
def test_wrong_input_raises(name, factory, kind):
    step = _fitted(factory, kind)
    with pytest.raises(ValueError, match="fitted on 8 features but got 7"):
        step.transform(DATA[kind](seed=1, n=3)[:, :7])
    bad = DATA[kind](seed=1, n=3)
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        step.transform(bad)
    with pytest.raises(ValueError, match="2-D"):
        factory().fit(np.ones(5))


@pytest.mark.parametrize(
    ("step", "match"),
    [
        (Log2(pseudocount=-1.0), "pseudocount"),
        (GeneralisedLog(lam=0.0), "lam"),
        (GeneralisedLog(base=1.0), "base"),
        (MissingnessFilter(max_missing_fraction=1.5), "max_missing_fraction"),
        (VarianceFilter(min_variance=-1.0), "min_variance"),
        (VarianceFilter(top_n=0), "top_n"),
        (VarianceFilter(top_n=2.5), "top_n"),
        (DetectionFilter(min_detection_rate=2.0), "min_detection_rate"),
        (DetectionFilter(detection_limit=float("nan")), "detection_limit"),
        (LeftCensoredImputer(method="knn"), "method"),
        (LeftCensoredImputer(width=-0.1), "width"),
        (LeftCensoredImputer(detection_limit=-1.0), "detection_limit"),
        (FeatureScaling(method="unit"), "method"),
        (ProbabilisticQuotientNormalisation(integral_first="yes"), "integral_first"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, FrozenTransform) else value,
)
def test_bad_parameters_raise_at_fit(step, match):
    with pytest.raises(ValueError, match=match):
        step.fit(_raw())


@pytest.mark.parametrize(
    ("step", "X", "match"),
    [
        (MissingnessFilter(max_missing_fraction=0.0), _raw(nans=0.5), "max_missing_fraction"),
        (MissingnessFilter(), np.array([[1.0, np.nan], [np.nan, 2.0]]), "max_missing_fraction"),
        (VarianceFilter(min_variance=1e9), _log(), "min_variance"),
        (VarianceFilter(), np.ones((5, 3)), "min_variance"),
        (DetectionFilter(min_detection_rate=1.0), _raw(zeros=0.5), "min_detection_rate"),
    ],
    ids=["missing-fraction", "too-few-observed", "min-variance", "constant", "detection"],
)
def test_no_feature_passes_filter_names_the_setting(step, X, match):
    with pytest.raises(ValueError, match=f"no feature passes .*{match}"):
        step.fit(X)


@pytest.mark.parametrize(
    "step",
    [
        MedianScaling(),
        QuantileNormalisation(),
        ProbabilisticQuotientNormalisation(),
        LeftCensoredImputer(),
    ],
    ids=lambda s: type(s).__name__,
)
def test_all_missing_development_data_raises(step):
    with pytest.raises(ValueError, match=r"missing|nothing to impute"):
        step.fit(np.full((4, 3), np.nan))


# --- Log2 and GeneralisedLog --------------------------------------------------------------


def test_log2_values_and_errors():
    X = _raw()
    np.testing.assert_array_equal(Log2().fit(X).transform(X), np.log2(X + 1.0))
    np.testing.assert_array_equal(Log2(pseudocount=0.25).fit(X).transform(X), np.log2(X + 0.25))
    with pytest.raises(ValueError, match=r"already log-scaled.*remove the log2 step"):
        Log2().fit(_log() - 12.0)
    fitted = Log2().fit(X)
    with pytest.raises(ValueError, match="already log-scaled"):
        fitted.transform(np.array([[1.0, -0.5, 2, 3, 4, 5, 6, 7]]))
    with pytest.raises(ValueError, match="imputer"):
        Log2(pseudocount=0.0).fit(X)  # X holds zeros
    positive = _positive()
    np.testing.assert_array_equal(
        Log2(pseudocount=0.0).fit(positive).transform(positive), np.log2(positive)
    )


def test_generalised_log_matches_formula_and_handles_zero_and_negatives():
    x = np.array([[-1e8, -50.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 50.0, 1e6, np.nan]])
    lam = 2.0
    out = GeneralisedLog(lam=lam).fit(x).transform(x)
    moderate = np.abs(x) < 100
    expected = np.log2((x + np.sqrt(x**2 + lam)) / 2.0)
    np.testing.assert_allclose(out[moderate], expected[moderate], rtol=1e-12)
    assert out[0, 4] == pytest.approx(np.log2(np.sqrt(lam) / 2.0), rel=1e-14)
    assert np.isfinite(out[0, :-1]).all() and np.isnan(out[0, -1])
    assert np.all(np.diff(out[0, :-1]) > 0)  # monotone, no cancellation for large negatives
    assert out[0, 8] == pytest.approx(np.log2(1e6), abs=1e-9)  # ~ log2(x) for large x
    base10 = GeneralisedLog(lam=lam, base=10.0).fit(x).transform(x)
    np.testing.assert_allclose(base10[moderate], expected[moderate] / np.log2(10.0), rtol=1e-12)


# --- filters ------------------------------------------------------------------------------


def test_missingness_filter_keeps_expected_features():
    nan = np.nan
    X = np.array(
        [
            [1.0, 1.0, nan, 5.0, nan],
            [2.0, nan, nan, 6.0, nan],
            [3.0, nan, nan, nan, nan],
            [4.0, 4.0, 3.0, nan, nan],
        ]
    )
    step = MissingnessFilter(max_missing_fraction=0.5).fit(X)
    np.testing.assert_array_equal(step.keep_, [True, True, False, True, False])
    np.testing.assert_allclose(step.missing_fraction_, [0.0, 0.5, 0.75, 0.5, 1.0])
    np.testing.assert_array_equal(step.transform(X), X[:, [0, 1, 3]])
    np.testing.assert_array_equal(
        step.get_feature_names_out(["a", "b", "c", "d", "e"]), ["a", "b", "d"]
    )
    # a feature with one observed value is dropped even when any missingness is allowed
    loose = MissingnessFilter(max_missing_fraction=1.0).fit(X)
    np.testing.assert_array_equal(loose.keep_, [True, True, False, True, False])


def test_variance_filter_drops_constant_and_low_variance_and_ranks_stably():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20, 6))
    X[:, 1] = 0.1 + 0.2  # constant (rounding must not make it "variable")
    X[:, 2] *= 0.01  # low variance
    X[:, 4] = X[:, 3]  # tie with feature 3
    X[::3, 5] = np.nan
    expected_variance = pd.DataFrame(X).var(ddof=1).to_numpy()
    step = VarianceFilter(min_variance=0.01).fit(X)
    np.testing.assert_allclose(step.variance_[[0, 2, 3, 4, 5]], expected_variance[[0, 2, 3, 4, 5]])
    assert step.variance_[1] == 0.0
    np.testing.assert_array_equal(step.keep_, [True, False, False, True, True, True])
    order = np.argsort(-np.where(step.keep_, step.variance_, -np.inf), kind="stable")
    top = VarianceFilter(top_n=2).fit(X)
    assert top.keep_.sum() == 2
    np.testing.assert_array_equal(np.flatnonzero(top.keep_), np.sort(order[:2]))
    # of two tied features only the earlier one wins the last slot
    tied = np.column_stack([X[:, 3], X[:, 3], X[:, 2]])
    np.testing.assert_array_equal(VarianceFilter(top_n=1).fit(tied).keep_, [True, False, False])


def test_detection_filter_counts_only_measured_values():
    nan = np.nan
    X = np.array(
        [
            [5.0, 5.0, 5.0, 5.0, 0.4],
            [6.0, 0.0, nan, 0.0, 0.5],
            [0.0, 0.0, nan, 0.0, 2.0],
            [nan, 0.0, nan, 7.0, 3.0],
            [nan, nan, nan, 0.0, 4.0],
            [nan, nan, nan, 0.0, 5.0],
        ]
    )
    step = DetectionFilter(min_detection_rate=0.5).fit(X)
    # col 0: 2 of 3 measured; col 1: 1 of 4; col 2: 1 of 1 (needs 2 detections);
    # col 3: 2 of 6; col 4: 6 of 6
    np.testing.assert_allclose(step.detection_rate_, [2 / 3, 1 / 4, 1.0, 2 / 6, 1.0])
    np.testing.assert_array_equal(step.n_detected_, [2, 1, 1, 2, 6])
    np.testing.assert_array_equal(step.keep_, [True, False, False, False, True])
    np.testing.assert_array_equal(step.transform(X), X[:, [0, 4]])
    # values <= detection_limit are below detection
    limited = DetectionFilter(min_detection_rate=0.5, detection_limit=0.5).fit(X)
    np.testing.assert_allclose(limited.detection_rate_[4], 4 / 6)


# --- per-sample scaling -------------------------------------------------------------------


def test_median_scaling_aligns_sample_medians_to_reference():
    train, new = _log(seed=6), _log(seed=7, n=10)
    step = MedianScaling().fit(train)
    assert step.reference_median_ == np.nanmedian(np.nanmedian(train, axis=1))
    out = step.transform(new)
    np.testing.assert_allclose(np.nanmedian(out, axis=1), step.reference_median_, rtol=1e-12)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(new))


def test_quantile_normalisation_equals_classic_on_complete_data():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(12, 9)) * rng.uniform(0.5, 3.0, size=(12, 1)) + rng.normal(size=(12, 1))
    # classic quantile normalisation (Bolstad et al. 2003): sort each sample, average by rank
    mean_by_rank = np.sort(X, axis=1).mean(axis=0)
    ranks = np.argsort(np.argsort(X, axis=1), axis=1)
    classic = mean_by_rank[ranks]
    out = QuantileNormalisation().fit(X).transform(X)
    np.testing.assert_allclose(out, classic, rtol=1e-12, atol=1e-12)


def test_quantile_normalisation_ties_missing_and_single_values():
    train = _log(seed=9)
    step = QuantileNormalisation().fit(train)
    row = np.array([[1.0, 1.0, 2.0, np.nan, 3.0, 4.0, 5.0, 6.0]])
    out = step.transform(row)
    assert out[0, 0] == out[0, 1]  # ties share the averaged rank
    assert np.isnan(out[0, 3])
    observed = out[0, ~np.isnan(out[0])]
    assert np.all(np.diff(observed[1:]) > 0)
    assert out[0, 2] > out[0, 0]
    single = np.full((1, P), np.nan)
    single[0, 5] = 42.0
    middle = np.interp(0.5, np.linspace(0, 1, P), step.reference_quantiles_)
    assert step.transform(single)[0, 5] == middle


def test_feature_scaling_methods():
    train = _log(seed=10)
    train[:, 3] = 7.0  # zero standard deviation
    mean = np.nanmean(train, axis=0)
    sd = np.nanstd(train, axis=0, ddof=1)
    pareto = FeatureScaling(method="pareto").fit(train).transform(train)
    auto = FeatureScaling(method="auto").fit(train).transform(train)
    variable = np.arange(P) != 3
    np.testing.assert_allclose(np.nanmean(pareto, axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(
        np.nanstd(pareto, axis=0, ddof=1)[variable], np.sqrt(sd[variable]), rtol=1e-12
    )
    np.testing.assert_allclose(np.nanstd(auto, axis=0, ddof=1)[variable], 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        auto[:, variable], (train[:, variable] - mean[variable]) / sd[variable], rtol=1e-12
    )
    np.testing.assert_array_equal(pareto[:, 3], 0.0)  # centred, divided by 1
    np.testing.assert_array_equal(FeatureScaling(method="none").fit(train).transform(train), train)


# --- proteomics: left-censored imputation -------------------------------------------------


def test_half_minimum_fills_only_below_detection_values():
    nan = np.nan
    train = np.array(
        [
            [10.0, 0.0, nan, 100.0],
            [4.0, 8.0, 0.0, 0.0],
            [0.0, 6.0, nan, 50.0],
            [nan, 0.0, 0.0, 20.0],
        ]
    )
    step = LeftCensoredImputer().fit(train)
    # feature 2 was never detected: global half-minimum = 4 / 2
    np.testing.assert_array_equal(step.fill_value_, [2.0, 3.0, 2.0, 10.0])
    out = step.transform(train)
    expected = train.copy()
    expected[train == 0] = np.broadcast_to(step.fill_value_, train.shape)[train == 0]
    np.testing.assert_array_equal(out, expected)
    assert np.isnan(out[3, 0]) and np.isnan(out[0, 2])  # not measured stays missing
    limited = LeftCensoredImputer(detection_limit=5.0).fit(train)
    np.testing.assert_array_equal(limited.fill_value_, [5.0, 3.0, 3.0, 10.0])
    assert limited.transform(train)[1, 0] == 5.0  # 4 <= 5 is below detection


def test_downshifted_normal_matches_perseus_distribution():
    rng = np.random.default_rng(11)
    train = np.exp2(rng.normal(20.0, 2.0, size=(400, 3)))
    train[:5, 0] = 0.0
    step = LeftCensoredImputer(method="downshifted_normal", shift=1.8, width=0.3).fit(train)
    detected = np.log2(train[:, 0][train[:, 0] > 0])
    assert step.log2_mean_[0] == pytest.approx(detected.mean(), rel=1e-12)
    assert step.log2_sd_[0] == pytest.approx(detected.std(ddof=1), rel=1e-12)
    # many samples below detection in feature 0, differing elsewhere
    new = np.exp2(rng.normal(20.0, 2.0, size=(4000, 3)))
    new[:, 0] = 0.0
    new[:10, 1] = np.nan
    imputed = np.log2(step.transform(new)[:, 0])
    mean, sd = step.log2_mean_[0], step.log2_sd_[0]
    assert imputed.mean() == pytest.approx(mean - 1.8 * sd, abs=0.05 * sd)
    assert imputed.std() == pytest.approx(0.3 * sd, rel=0.05)
    assert np.unique(imputed).size == imputed.size
    np.testing.assert_array_equal(step.transform(new)[:, 1:], new[:, 1:])
    # deterministic; identical rows get identical values; another row content changes the draw
    again = step.transform(np.vstack([new[:3], new[:3]]))
    np.testing.assert_array_equal(again[:3], again[3:])
    np.testing.assert_array_equal(again[:3, 0], step.transform(new[:3])[:, 0])
    changed = new[:1].copy()
    changed[0, 2] *= 1.001
    assert step.transform(changed)[0, 0] != step.transform(new[:1])[0, 0]


def test_downshifted_normal_fallbacks():
    nan = np.nan
    train = np.array(
        [
            [100.0, 40.0, 0.0, 64.0],
            [200.0, 0.0, 0.0, 64.0],
            [400.0, nan, nan, 0.0],
        ]
    )
    step = LeftCensoredImputer(method="downshifted_normal").fit(train)
    pooled = np.std(np.log2([100.0, 200.0, 400.0]), ddof=1)
    # one detection (feature 1) or constant detections (feature 3): the pooled sd
    np.testing.assert_allclose(step.log2_sd_, [pooled, pooled, nan, pooled], rtol=1e-12)
    out = step.transform(np.array([[0.0, 0.0, 0.0, 0.0]]))
    assert out[0, 2] == step.fill_value_[2] == 20.0  # never detected: global half-minimum
    assert np.all(out[0, [0, 1, 3]] > 0)
    # no feature with two distinct detections: every feature falls back to the half-minimum
    flat = LeftCensoredImputer(method="downshifted_normal").fit(np.array([[8.0, 0.0], [8.0, 4.0]]))
    np.testing.assert_array_equal(flat.transform(np.zeros((2, 2))), [[4.0, 2.0], [4.0, 2.0]])


# --- metabolomics: probabilistic quotient normalisation -----------------------------------


def _pqn_by_hand(train: np.ndarray, test: np.ndarray, integral_first: bool) -> np.ndarray:
    """PQN written out as in Dieterle et al. (2006), with pandas."""
    train, test = pd.DataFrame(train), pd.DataFrame(test)
    if integral_first:
        train_totals = train.sum(axis=1)
        target = train_totals.median()
        train = train.mul(target / train_totals, axis=0)
        test = test.mul(target / test.sum(axis=1), axis=0)
    reference = train.median(axis=0)
    quotients = test.div(reference, axis=1)
    quotients = quotients.where((test > 0) & (reference > 0) & np.isfinite(quotients))
    dilution = quotients.median(axis=1)
    return test.div(dilution, axis=0).to_numpy()


@pytest.mark.parametrize("integral_first", [True, False])
def test_pqn_matches_reference_computation(integral_first):
    train, test = _positive(seed=12), _positive(seed=13, n=15)
    train[2, 3] = test[4, 1] = 0.0  # zeros are excluded from the quotients
    step = ProbabilisticQuotientNormalisation(integral_first=integral_first).fit(train)
    expected = _pqn_by_hand(train, test, integral_first)
    np.testing.assert_allclose(step.transform(test), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("integral_first", [True, False])
def test_pqn_undoes_a_known_dilution(integral_first):
    step = ProbabilisticQuotientNormalisation(integral_first=integral_first).fit(_positive(14))
    sample = _positive(seed=15, n=1)
    out = step.transform(np.vstack([sample, 3.0 * sample]))
    np.testing.assert_allclose(out[1], out[0], rtol=1e-12, equal_nan=True)
    assert np.isfinite(out).any()


def test_pqn_rejects_samples_it_cannot_normalise():
    step = ProbabilisticQuotientNormalisation(integral_first=False).fit(_positive(16))
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\].*dilution factor is undefined"):
        step.transform(np.vstack([_positive(17, n=1), np.zeros((1, P))]))
    with pytest.raises(ValueError, match="total intensity <= 0"):
        ProbabilisticQuotientNormalisation().fit(_positive(16)).transform(np.zeros((1, P)))
    with pytest.raises(ValueError, match="total intensity <= 0"):
        ProbabilisticQuotientNormalisation().fit(-_positive(16))


# --- same numbers as the monolithic ModalityNormaliser ------------------------------------
#
# ``_legacy_modality_normaliser`` is the numerical core of the monolithic ``ModalityNormaliser``
# of ``omics_ml/normalise.py`` before its refactor into a chain of steps (fit and transform copied
# verbatim, minus the scikit-learn plumbing). It is frozen here so that the chain of steps keeps
# its behaviour number for number, whatever ``normalise.py`` becomes.


def _legacy_modality_normaliser(
    train: np.ndarray,
    new: np.ndarray,
    *,
    log_transform: bool,
    pseudocount: float,
    scaling: str,
    max_missing_fraction: float,
    min_variance: float,
    top_variance: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, float32 transform of ``new``) of the legacy monolithic normaliser."""

    def log(X):
        return np.log2(X + pseudocount) if log_transform else X

    Z = log(train)
    n_observed = (~np.isnan(Z)).sum(axis=0)
    keep = (1.0 - n_observed / Z.shape[0]) <= max_missing_fraction
    keep &= n_observed >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        variance = np.nanvar(Z, axis=0, ddof=1)
        constant = np.nanmax(Z, axis=0) == np.nanmin(Z, axis=0)
    variance = np.where(np.isfinite(variance) & ~constant, variance, 0.0)
    keep &= variance > min_variance
    if top_variance is not None and keep.sum() > top_variance:
        ranked = np.argsort(-np.where(keep, variance, -np.inf), kind="stable")
        keep = np.zeros_like(keep)
        keep[ranked[:top_variance]] = True
    assert keep.any()
    Zk = Z[:, keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if scaling == "median":
            reference_median = float(np.nanmedian(np.nanmedian(Zk, axis=1)))
        else:
            probs = np.linspace(0.0, 1.0, Zk.shape[1])
            reference_quantiles = np.nanmean(np.nanquantile(Zk, probs, axis=1), axis=1)
        Nk = log(new)[:, keep]
        if scaling == "median":
            out = Nk - np.nanmedian(Nk, axis=1, keepdims=True) + reference_median
        else:
            ranks = rankdata(Nk, axis=1, nan_policy="omit")
            n_obs = np.sum(~np.isnan(Nk), axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                fraction = np.where(n_obs > 1, (ranks - 1.0) / (n_obs - 1.0), 0.5)
            grid = np.linspace(0.0, 1.0, reference_quantiles.size)
            mapped = np.interp(np.nan_to_num(fraction, nan=0.0), grid, reference_quantiles)
            out = np.where(np.isnan(Nk), np.nan, mapped)
    return keep, out.astype(np.float32)


def _monolith_data(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.lognormal(mean=2.0, sigma=1.0, size=(n, 12)) * rng.uniform(0.5, 2.0, size=(n, 1))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:, 4] = 3.0  # a constant feature
    X[: int(0.6 * n), 7] = np.nan  # a mostly missing feature
    X[5] = np.nan  # a sample with every value missing
    X[2, :3] = X[2, 3]  # ties within a sample
    return X


@pytest.mark.parametrize("scaling", ["median", "quantile"])
@pytest.mark.parametrize("log_transform", [False, True])
@pytest.mark.parametrize(
    ("max_missing_fraction", "min_variance", "top_variance"),
    [(0.5, 0.0, None), (0.3, 0.05, 6), (0.7, 0.0, 3)],
)
def test_chain_matches_legacy_modality_normaliser(
    scaling, log_transform, max_missing_fraction, min_variance, top_variance
):
    train, new = _monolith_data(20, 40), _monolith_data(21, 15)
    keep, expected = _legacy_modality_normaliser(
        train,
        new,
        log_transform=log_transform,
        pseudocount=0.5,
        scaling=scaling,
        max_missing_fraction=max_missing_fraction,
        min_variance=min_variance,
        top_variance=top_variance,
    )
    chain: list[FrozenTransform] = [Log2(pseudocount=0.5)] if log_transform else []
    chain += [
        MissingnessFilter(max_missing_fraction=max_missing_fraction),
        VarianceFilter(min_variance=min_variance, top_n=top_variance),
        MedianScaling() if scaling == "median" else QuantileNormalisation(),
    ]
    all_names = np.array([f"g{i}" for i in range(train.shape[1])], dtype=object)
    Z, names = train, all_names
    for step in chain:
        Z = step.fit(Z).transform(Z)
        names = step.get_feature_names_out(names)
    out = new
    for step in chain:
        out = step.transform(out)
    np.testing.assert_array_equal(names, all_names[keep])
    assert out.shape == (15, keep.sum())
    np.testing.assert_array_equal(out.astype(np.float32), expected)
    assert np.isnan(out[5]).all()
    assert np.isfinite(out[0]).any()
