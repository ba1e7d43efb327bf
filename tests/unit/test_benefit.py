"""Tests of omics_ml.benefit against independent references.

Kaplan-Meier risk and Greenwood variance against scikit-survival (estimate and log-log interval)
and a hand-written Greenwood sum; trial contrasts against arm-wise estimates and Welch's t; the
c-for-benefit against a brute-force O(n^2) count from van Klaveren et al. (2018); policy values
and calibration for benefit against hand computations on simulated randomised trials.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit
from sksurv.nonparametric import kaplan_meier_estimator

from omics_ml.benefit import (
    ObservedOutcome,
    benefit_calibration,
    bootstrapped,
    c_for_benefit,
    km_risk,
    matched_pairs,
    policy_values,
    trial_contrast,
)

Z95 = float(stats.norm.ppf(0.975))
HORIZON = 5.0


# ----------------------------------------------------------------------------- simulated data


def _survival_data(n: int, seed: int, *, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    """Exponential event times with uniform censoring; ``tied`` rounds times to integers."""
    rng = np.random.default_rng(seed)
    event_time = rng.exponential(8.0, size=n)
    censor_time = rng.uniform(0.5, 15.0, size=n)
    time = np.minimum(event_time, censor_time)
    if tied:
        time = np.maximum(np.ceil(time), 1.0)
    return time, (event_time <= censor_time).astype(np.float64)


def _trial(n: int, seed: int, kind: str) -> tuple[np.ndarray, ObservedOutcome, np.ndarray]:
    """A 1:1 randomised trial whose effect depends on a covariate ``m``.

    Returns the arm, the observed outcome and the true benefit of each subject (positive
    favours treatment): the fall in risk by ``HORIZON`` (survival), the fall in event
    probability (binary), or the rise in value (continuous, higher is better).
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)  # prognostic
    m = rng.normal(size=n)  # effect modifier
    arm = (rng.random(n) < 0.5).astype(np.int64)
    if kind == "binary":
        p0 = expit(-0.2 + 0.5 * z)
        p1 = expit(-0.2 + 0.5 * z - 1.5 * m)
        y = (rng.random(n) < np.where(arm == 1, p1, p0)).astype(np.float64)
        return arm, ObservedOutcome("binary", y), p0 - p1
    if kind == "continuous":
        effect = 1.5 * m
        y = z + arm * effect + rng.normal(size=n)
        return arm, ObservedOutcome("continuous", y, lower_is_better=False), effect
    rate0 = 0.1 * np.exp(0.5 * z)
    rate1 = rate0 * np.exp(-1.2 * m)
    event_time = rng.exponential(1.0 / np.where(arm == 1, rate1, rate0))
    censor_time = rng.uniform(1.0, 12.0, size=n)
    time = np.minimum(event_time, censor_time)
    event = (event_time <= censor_time).astype(np.float64)
    benefit = np.exp(-HORIZON * rate1) - np.exp(-HORIZON * rate0)
    return arm, ObservedOutcome("survival", time, event, HORIZON), benefit


# ----------------------------------------------------------------------------- references


def _sksurv_risk(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    times, survival = kaplan_meier_estimator(event.astype(bool), time)
    k = np.searchsorted(times, horizon, side="right") - 1
    return 1.0 - (survival[k] if k >= 0 else 1.0)


def _greenwood(time: np.ndarray, event: np.ndarray, horizon: float) -> tuple[float, float]:
    """Kaplan-Meier survival at the horizon and Greenwood's variance, one event time at a time."""
    survival, total = 1.0, 0.0
    for s in np.unique(time[(event == 1) & (time <= horizon)]):
        at_risk = np.sum(time >= s)
        deaths = np.sum((time == s) & (event == 1))
        survival *= 1.0 - deaths / at_risk
        if at_risk > deaths:
            total += deaths / (at_risk * (at_risk - deaths))
    return survival, survival**2 * total


def _match_by_formula(arm: np.ndarray, predicted: np.ndarray) -> tuple[list[int], list[int]]:
    """The documented matching, one pair at a time: relative rank within each sorted arm."""
    treated = sorted(np.flatnonzero(arm == 1), key=lambda i: (predicted[i], i))
    control = sorted(np.flatnonzero(arm == 0), key=lambda i: (predicted[i], i))
    small, large = (treated, control) if len(treated) <= len(control) else (control, treated)
    n = len(small)
    picked = [large[round(k * (len(large) - 1) / (n - 1))] if n > 1 else large[0] for k in range(n)]
    return (small, picked) if small is treated else (picked, small)


def _brute_force_c(
    arm: np.ndarray, outcome: ObservedOutcome, predicted: np.ndarray
) -> tuple[float, int]:
    """c-for-benefit from the paper's definition, over every two matched pairs."""
    if outcome.kind == "survival":
        t, e, h = outcome.value, outcome.event, outcome.horizon
        value = ((e == 1) & (t <= h)).astype(float)
        known = ((e == 1) & (t <= h)) | (t > h)  # censored by the horizon: status unknown
    else:
        value, known = outcome.value, np.ones(len(outcome), bool)
    idx = np.flatnonzero(known)
    treated, control = _match_by_formula(arm[idx], predicted[idx])
    treated, control = idx[treated], idx[control]
    observed = outcome.sign * (value[treated] - value[control])
    mean_predicted = (predicted[treated] + predicted[control]) / 2
    score = comparable = 0.0
    for i in range(observed.size):
        for j in range(i + 1, observed.size):
            if observed[i] == observed[j]:
                continue
            more, less = (i, j) if observed[i] > observed[j] else (j, i)
            comparable += 1
            if mean_predicted[more] > mean_predicted[less]:
                score += 1.0
            elif mean_predicted[more] == mean_predicted[less]:
                score += 0.5
    return score / comparable, int(observed.size)


# ----------------------------------------------------------------------------- km_risk


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_km_risk_equals_scikit_survival_and_greenwood(tied: bool, seed: int) -> None:
    time, event = _survival_data(250, seed, tied=tied)
    for horizon in (0.2, 2.0, 3.0, 5.5, 10.0):
        risk, variance = km_risk(time, event, horizon)
        assert risk == pytest.approx(_sksurv_risk(time, event, horizon), abs=1e-12)
        survival, greenwood = _greenwood(time, event, horizon)
        assert risk == pytest.approx(1.0 - survival, abs=1e-12)
        assert variance == pytest.approx(greenwood, rel=1e-10, abs=1e-15)


@pytest.mark.parametrize("tied", [False, True])
def test_km_variance_matches_scikit_survival_log_log_interval(tied: bool) -> None:
    """scikit-survival's log-log interval is S^exp(+-z sqrt(sum)/log S) with Greenwood's sum."""
    time, event = _survival_data(300, 3, tied=tied)
    times, survival, (lower, upper) = kaplan_meier_estimator(
        event.astype(bool), time, conf_type="log-log", conf_level=0.95
    )
    checked = 0
    for k in np.flatnonzero((survival < 1) & (survival > 0.05)):
        theta = np.log(np.log(upper[k]) / np.log(survival[k])) / Z95  # sqrt(sum) / |log S|
        greenwood = survival[k] ** 2 * (theta * np.log(survival[k])) ** 2
        assert np.log(np.log(lower[k]) / np.log(survival[k])) == pytest.approx(-theta * Z95)
        risk, variance = km_risk(time, event, times[k])
        assert risk == pytest.approx(1.0 - survival[k], abs=1e-12)
        assert variance == pytest.approx(greenwood, rel=1e-6)
        checked += 1
    assert checked >= 10


def test_km_integer_weights_equal_replicated_rows_and_zero_weights_drop() -> None:
    time, event = _survival_data(120, 4, tied=True)
    weights = np.random.default_rng(5).integers(0, 4, size=time.size)
    replicated = np.repeat(np.arange(time.size), weights)
    for horizon in (2.0, 4.0, 7.0):
        weighted = km_risk(time, event, horizon, weights)
        repeated = km_risk(time[replicated], event[replicated], horizon)
        assert weighted == pytest.approx(repeated, rel=1e-12)
        kept = weights > 0
        dropped = km_risk(time[kept], event[kept], horizon, weights[kept])
        assert weighted == pytest.approx(dropped, rel=1e-12)
    # Zero weight removes a subject; doubling every weight changes nothing but the variance.
    base = km_risk(time, event, 5.0)
    halved = km_risk(time, event, 5.0, np.full(time.size, 2.0))
    assert halved[0] == pytest.approx(base[0], rel=1e-12)
    assert halved[1] < base[1]
    mask = np.ones(time.size)
    mask[:10] = 0.0
    assert km_risk(time, event, 5.0, mask) == pytest.approx(
        km_risk(time[10:], event[10:], 5.0), rel=1e-12
    )


def test_km_edge_cases() -> None:
    time = np.array([1.0, 2.0, 3.0, 4.0])
    # Follow-up ends before the horizon with survival above zero: undefined.
    risk, variance = km_risk(time, [1, 0, 1, 0], 4.5)
    assert np.isnan(risk) and np.isnan(variance)
    # ... unless the last subject has the event: everyone has had it.
    assert km_risk(time, [0, 0, 1, 1], 10.0) == (1.0, 0.0)
    # Horizon before the first event: no risk, no variance.
    assert km_risk(time, [0, 1, 1, 1], 1.5) == (0.0, 0.0)
    # Horizon at the last time: defined; at 4 the risk is 1 - (2/3)(1/2)(0/1) = 1.
    assert km_risk(time, [0, 1, 1, 1], 4.0)[0] == pytest.approx(1.0)
    # No subjects, or all weights zero.
    assert np.isnan(km_risk([], [], 1.0)[0])
    assert np.isnan(km_risk(time, [1, 1, 1, 1], 2.0, np.zeros(4))[0])
    # Without censoring the risk is the fraction with the event by the horizon, variance
    # the binomial p(1 - p) / n.
    t = np.arange(1.0, 21.0)
    risk, variance = km_risk(t, np.ones(20), 7.0)
    assert risk == pytest.approx(7 / 20)
    assert variance == pytest.approx(0.35 * 0.65 / 20)


def test_km_weighted_risk_is_one_when_the_last_at_risk_have_the_event() -> None:
    """Inverse-probability weights are not integers: the weight at risk at the last time must
    still equal the weight of its events, or survival is a rounding error instead of zero
    (which read as "follow-up ended with survival above zero": NaN)."""
    rng = np.random.default_rng(6)
    for _ in range(200):
        n = int(rng.integers(2, 30))
        time = np.ceil(rng.uniform(0.0, 10.0, size=n))
        event = rng.integers(0, 2, size=n).astype(np.float64)
        event[time == time.max()] = 1.0
        weights = rng.choice([1 / 0.3, 1 / 0.7, 2.5, 1 / 0.6], size=n)
        assert km_risk(time, event, 20.0, weights) == (1.0, 0.0)
        assert km_risk(time, event, time.max(), weights) == (1.0, 0.0)


# ----------------------------------------------------------------------------- ObservedOutcome


def test_observed_outcome_validation_and_by_horizon() -> None:
    with pytest.raises(ValueError, match="not survival, binary or continuous"):
        ObservedOutcome("ordinal", np.zeros(3))
    with pytest.raises(ValueError, match="needs event and horizon"):
        ObservedOutcome("survival", np.ones(3), np.ones(3))
    outcome = ObservedOutcome(
        "survival", np.array([1.0, 2.0, 5.0, 6.0, 7.0]), np.array([1.0, 0.0, 1.0, 1.0, 0.0]), 5.0
    )
    value, known = outcome.by_horizon()
    np.testing.assert_array_equal(value, [1.0, 0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(known, [True, False, True, True, True])
    assert outcome.sign == -1.0
    assert ObservedOutcome("continuous", np.ones(2), lower_is_better=False).sign == 1.0
    taken = outcome.take(np.array([4, 0]))
    np.testing.assert_array_equal(taken.value, [7.0, 1.0])
    np.testing.assert_array_equal(taken.event, [0.0, 1.0])
    assert taken.horizon == 5.0 and len(taken) == 2


# ----------------------------------------------------------------------------- trial_contrast


def test_trial_contrast_survival_is_difference_of_arm_km_risks() -> None:
    arm, outcome, _ = _trial(600, 10, "survival")
    result = trial_contrast(arm, outcome)
    per_arm = {}
    for name, a in (("control", 0), ("treated", 1)):
        mask = arm == a
        risk, variance = _greenwood(outcome.value[mask], outcome.event[mask], HORIZON)
        per_arm[name] = (1.0 - risk, variance)
        assert result[name]["estimate"] == pytest.approx(1.0 - risk, abs=1e-12)
        assert result[name]["se"] == pytest.approx(np.sqrt(variance), rel=1e-10)
        assert result[name]["n"] == int(mask.sum())
        assert result[name]["estimate"] == pytest.approx(
            _sksurv_risk(outcome.value[mask], outcome.event[mask], HORIZON), abs=1e-12
        )
    effect = per_arm["treated"][0] - per_arm["control"][0]
    se = np.sqrt(per_arm["treated"][1] + per_arm["control"][1])
    assert result["effect"]["estimate"] == pytest.approx(effect, abs=1e-12)
    assert result["effect"]["se"] == pytest.approx(se, rel=1e-10)
    assert result["effect"]["lower"] == pytest.approx(effect - Z95 * se, abs=1e-12)
    assert result["effect"]["upper"] == pytest.approx(effect + Z95 * se, abs=1e-12)
    # Lower risk is better: benefit is the fall in risk, the interval mirrored.
    assert result["benefit"]["estimate"] == pytest.approx(-effect, abs=1e-12)
    assert result["benefit"]["lower"] == pytest.approx(-result["effect"]["upper"], abs=1e-12)
    assert result["benefit"]["upper"] == pytest.approx(-result["effect"]["lower"], abs=1e-12)


def test_trial_contrast_continuous_is_welch() -> None:
    arm, outcome, _ = _trial(301, 11, "continuous")
    y1, y0 = outcome.value[arm == 1], outcome.value[arm == 0]
    result = trial_contrast(arm, outcome, confidence_level=0.9)
    effect = y1.mean() - y0.mean()
    se = np.sqrt(y1.var(ddof=1) / y1.size + y0.var(ddof=1) / y0.size)
    welch = stats.ttest_ind(y1, y0, equal_var=False).statistic
    assert result["effect"]["estimate"] == pytest.approx(effect, abs=1e-12)
    assert result["effect"]["se"] == pytest.approx(se, rel=1e-10)
    assert result["effect"]["estimate"] / result["effect"]["se"] == pytest.approx(welch, rel=1e-10)
    z90 = stats.norm.ppf(0.95)
    assert result["effect"]["upper"] - result["effect"]["lower"] == pytest.approx(2 * z90 * se)
    assert result["treated"]["n"] + result["control"]["n"] == 301
    # Higher is better here: benefit is the effect itself; flipping the direction flips it.
    assert result["benefit"]["estimate"] == pytest.approx(effect, abs=1e-12)
    lower_better = ObservedOutcome("continuous", outcome.value, lower_is_better=True)
    flipped = trial_contrast(arm, lower_better, confidence_level=0.9)
    assert flipped["benefit"]["estimate"] == pytest.approx(-effect, abs=1e-12)
    assert flipped["effect"] == result["effect"]


def test_trial_contrast_binary_is_difference_of_proportions() -> None:
    arm, outcome, _ = _trial(400, 12, "binary")
    y1, y0 = outcome.value[arm == 1], outcome.value[arm == 0]
    result = trial_contrast(arm, outcome)
    assert result["treated"]["estimate"] == pytest.approx(y1.mean())
    assert result["control"]["estimate"] == pytest.approx(y0.mean())
    assert result["benefit"]["estimate"] == pytest.approx(y0.mean() - y1.mean())
    se = np.sqrt(y1.var(ddof=1) / y1.size + y0.var(ddof=1) / y0.size)
    assert result["benefit"]["se"] == pytest.approx(se, rel=1e-10)


# ----------------------------------------------------------------------------- matched_pairs


@pytest.mark.parametrize(("n_treated", "n_control"), [(1, 1), (1, 5), (7, 3), (50, 50), (40, 97)])
@pytest.mark.parametrize("tied", [False, True])
def test_matched_pairs_structure(n_treated: int, n_control: int, tied: bool) -> None:
    rng = np.random.default_rng(n_treated * 100 + n_control)
    arm = rng.permutation(np.r_[np.ones(n_treated), np.zeros(n_control)]).astype(np.int64)
    predicted = rng.normal(size=arm.size)
    if tied:
        predicted = np.round(predicted)
    treated, control = matched_pairs(arm, predicted)
    n = min(n_treated, n_control)
    assert treated.size == control.size == n
    assert np.all(arm[treated] == 1) and np.all(arm[control] == 0)
    assert np.unique(treated).size == n and np.unique(control).size == n
    # Pairs are in order of predicted benefit in both arms and span both arms' ranges.
    assert np.all(np.diff(predicted[treated]) >= 0) and np.all(np.diff(predicted[control]) >= 0)
    assert predicted[treated][-1] == predicted[arm == 1].max()
    assert predicted[control][0] == predicted[arm == 0].min()
    again = matched_pairs(arm, predicted)
    np.testing.assert_array_equal(again[0], treated)
    np.testing.assert_array_equal(again[1], control)
    expected = _match_by_formula(arm, predicted)
    np.testing.assert_array_equal(treated, expected[0])
    np.testing.assert_array_equal(control, expected[1])


def test_matched_pairs_rank_for_rank_and_order_free() -> None:
    rng = np.random.default_rng(20)
    arm = rng.permutation(np.repeat([0, 1], 30)).astype(np.int64)
    predicted = rng.normal(size=60)
    treated, control = matched_pairs(arm, predicted)
    np.testing.assert_array_equal(predicted[treated], np.sort(predicted[arm == 1]))
    np.testing.assert_array_equal(predicted[control], np.sort(predicted[arm == 0]))
    # Without ties the pairs do not depend on the order of the subjects.
    perm = rng.permutation(60)
    t2, c2 = matched_pairs(arm[perm], predicted[perm])
    np.testing.assert_array_equal(perm[t2], treated)
    np.testing.assert_array_equal(perm[c2], control)
    # An empty arm gives no pairs.
    none = matched_pairs(np.ones(5, np.int64), predicted[:5])
    assert none[0].size == none[1].size == 0


# ----------------------------------------------------------------------------- c_for_benefit


@pytest.mark.parametrize("kind", ["binary", "continuous", "survival"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_c_for_benefit_equals_brute_force(kind: str, tied: bool, seed: int) -> None:
    arm, outcome, benefit = _trial(301, 30 + seed, kind)
    noise = np.random.default_rng(seed).normal(scale=0.1, size=benefit.size)
    predicted = benefit + noise
    if tied:  # a coarse grid of exactly representable values: tied predictions and pair means
        predicted = np.round(predicted * 8) / 8
    if kind == "survival" and tied:  # tied times, some censored exactly at the horizon
        outcome = ObservedOutcome("survival", np.ceil(outcome.value), outcome.event, HORIZON)
    c, n_pairs = c_for_benefit(arm, outcome, predicted)
    expected_c, expected_pairs = _brute_force_c(arm, outcome, predicted)
    assert n_pairs == expected_pairs
    assert c == pytest.approx(expected_c, rel=1e-12)
    if kind == "survival":  # subjects censored before the horizon are left out
        _, known = outcome.by_horizon()
        assert not known.all()
        assert n_pairs == min(np.sum(known & (arm == 1)), np.sum(known & (arm == 0)))
    else:
        assert n_pairs == min(np.sum(arm == 1), np.sum(arm == 0))


@pytest.mark.parametrize("kind", ["binary", "continuous", "survival"])
def test_c_for_benefit_true_benefit_beats_chance(kind: str) -> None:
    arm, outcome, benefit = _trial(6000, 40, kind)
    c_true, n_pairs = c_for_benefit(arm, outcome, benefit)
    assert n_pairs > 1000
    random_predictor = np.random.default_rng(41).normal(size=benefit.size)
    c_random, _ = c_for_benefit(arm, outcome, random_predictor)
    # With these seeds: binary 0.68, continuous 0.71, survival 0.69 (0.68-0.72 over 20 other
    # seeds); the random predictor within 0.01 of one half (standard error about 0.01).
    assert c_true > 0.62
    assert abs(c_random - 0.5) < 0.035
    # Predicting harm where there is benefit ranks pairs the wrong way round.
    assert c_for_benefit(arm, outcome, -benefit)[0] < 0.38


def test_c_for_benefit_perfect_reversed_and_undefined() -> None:
    """Noise-free outcome equal to minus the benefit under treatment: pairs rank perfectly."""
    rng = np.random.default_rng(50)
    arm = rng.permutation(np.repeat([0, 1], 40)).astype(np.int64)
    benefit = rng.normal(size=80)
    outcome = ObservedOutcome("continuous", -arm * benefit)  # lower is better
    assert c_for_benefit(arm, outcome, benefit) == (1.0, 40)
    assert c_for_benefit(arm, outcome, -benefit) == (0.0, 40)
    assert c_for_benefit(arm, outcome, np.zeros(80)) == (0.5, 40)
    # Every pair with the same observed benefit, or fewer than two pairs: undefined.
    c, n = c_for_benefit(arm, ObservedOutcome("binary", np.zeros(80)), benefit)
    assert np.isnan(c) and n == 40
    one_treated = np.r_[1, np.zeros(9)].astype(np.int64)
    c, n = c_for_benefit(
        one_treated, ObservedOutcome("continuous", rng.normal(size=10)), benefit[:10]
    )
    assert np.isnan(c) and n == 1


# ----------------------------------------------------------------------------- policy_values


def test_policy_values_survival_against_km() -> None:
    arm, outcome, benefit = _trial(800, 60, "survival")
    predicted = benefit + np.random.default_rng(61).normal(scale=0.05, size=benefit.size)
    result = policy_values(arm, outcome, predicted, np.full(arm.size, 0.5))
    t, e = outcome.value, outcome.event
    assert result["treat_all"] == pytest.approx(_sksurv_risk(t[arm == 1], e[arm == 1], HORIZON))
    assert result["treat_none"] == pytest.approx(_sksurv_risk(t[arm == 0], e[arm == 0], HORIZON))
    agree = arm == (predicted > 0)
    assert result["model"] == pytest.approx(_sksurv_risk(t[agree], e[agree], HORIZON))
    assert result["fraction_treated"] == pytest.approx(np.mean(predicted > 0))
    # Propensity 1/3: weights 3 (treated) and 1.5 (control), the same Kaplan-Meier estimate as
    # treated rows written twice and control rows once.
    result = policy_values(arm, outcome, predicted, np.full(arm.size, 1 / 3))
    rows = np.flatnonzero(agree)
    replicated = np.repeat(rows, np.where(arm[rows] == 1, 2, 1))
    assert result["model"] == pytest.approx(
        _sksurv_risk(t[replicated], e[replicated], HORIZON), rel=1e-12
    )
    assert result["treat_all"] == pytest.approx(_sksurv_risk(t[arm == 1], e[arm == 1], HORIZON))


def test_policy_values_binary_hand_computation_and_gain_signs() -> None:
    arm, outcome, benefit = _trial(6000, 70, "binary")
    p = 0.4
    propensity = np.full(arm.size, p)
    y = outcome.value
    result = policy_values(arm, outcome, benefit, propensity)
    assert result["treat_all"] == pytest.approx(y[arm == 1].mean())
    assert result["treat_none"] == pytest.approx(y[arm == 0].mean())
    treat = benefit > 0
    followed_t, followed_c = (arm == 1) & treat, (arm == 0) & ~treat
    hand = (y[followed_t].sum() / p + y[followed_c].sum() / (1 - p)) / (
        followed_t.sum() / p + followed_c.sum() / (1 - p)
    )
    assert result["model"] == pytest.approx(hand, rel=1e-12)
    best = min(result["treat_all"], result["treat_none"])
    assert result["gain_vs_best_fixed"] == pytest.approx(best - result["model"])
    assert result["gain_vs_treat_all"] == pytest.approx(result["treat_all"] - result["model"])
    assert result["gain_vs_treat_none"] == pytest.approx(result["treat_none"] - result["model"])
    # Treating by the true benefit lowers the risk against both fixed policies (by 0.11 and
    # 0.14 with this seed); treating by its opposite raises it (by 0.14).
    assert result["gain_vs_best_fixed"] > 0.05
    assert result["gain_vs_treat_all"] > 0.05 and result["gain_vs_treat_none"] > 0.05
    assert policy_values(arm, outcome, -benefit, propensity)["gain_vs_best_fixed"] < -0.05


def test_policy_values_higher_is_better_and_varying_propensity() -> None:
    arm, outcome, benefit = _trial(3000, 80, "continuous")
    y = outcome.value
    propensity = np.where(np.arange(arm.size) % 2 == 0, 0.3, 0.6)
    result = policy_values(arm, outcome, benefit, propensity)
    w = np.where(arm == 1, 1 / propensity, 1 / (1 - propensity))
    assert result["treat_all"] == pytest.approx(np.average(y[arm == 1], weights=w[arm == 1]))
    assert result["treat_none"] == pytest.approx(np.average(y[arm == 0], weights=w[arm == 0]))
    follow = arm == (benefit > 0)
    assert result["model"] == pytest.approx(np.average(y[follow], weights=w[follow]))
    best = max(result["treat_all"], result["treat_none"])
    assert result["gain_vs_best_fixed"] == pytest.approx(result["model"] - best)
    # E[max(1.5 m, 0)] - max(E[1.5 m], 0) = 1.5 / sqrt(2 pi) = 0.6; 0.72 with this seed.
    assert result["gain_vs_best_fixed"] == pytest.approx(0.6, abs=0.2)


# ----------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("kind", ["binary", "survival"])
def test_benefit_calibration_groups_are_trial_contrasts(kind: str) -> None:
    arm, outcome, benefit = _trial(800, 90, kind)
    predicted = benefit + np.random.default_rng(91).normal(scale=0.05, size=benefit.size)
    result = benefit_calibration(arm, outcome, predicted, n_groups=4)
    members = np.argsort(predicted).reshape(4, -1)  # distinct predictions, 200 per group
    assert [r["group"] for r in result["groups"]] == [1, 2, 3, 4]
    for row, m in zip(result["groups"], members, strict=True):
        assert row["n"] == 200
        assert row["predicted"] == pytest.approx(predicted[m].mean(), rel=1e-12)
        assert (row["predicted_min"], row["predicted_max"]) == (
            predicted[m].min(),
            predicted[m].max(),
        )
        contrast = trial_contrast(arm[m], outcome.take(m))
        assert row["observed"] == pytest.approx(contrast["benefit"]["estimate"], abs=1e-12)
        assert row["se"] == pytest.approx(contrast["benefit"]["se"], rel=1e-12)
        assert (row["n_treated"], row["n_control"]) == (
            int(arm[m].sum()),
            int((arm[m] == 0).sum()),
        )
        assert row["lower"] < row["observed"] < row["upper"]
    x = np.array([r["predicted"] for r in result["groups"]])
    y = np.array([r["observed"] for r in result["groups"]])
    se = np.array([r["se"] for r in result["groups"]])
    slope, intercept = np.polyfit(x, y, 1, w=1 / se)  # polyfit weights are 1 / sigma
    assert result["slope"] == pytest.approx(slope, rel=1e-9)
    assert result["intercept"] == pytest.approx(intercept, rel=1e-9, abs=1e-12)
    spread = result["top_minus_bottom"]
    assert spread["estimate"] == pytest.approx(y[-1] - y[0], abs=1e-12)
    assert spread["se"] == pytest.approx(np.hypot(se[-1], se[0]), rel=1e-12)
    assert result["predicted_top_minus_bottom"] == pytest.approx(x[-1] - x[0])


def test_benefit_calibration_group_sizes_uneven() -> None:
    arm, outcome, benefit = _trial(103, 92, "binary")
    predicted = np.round(benefit, 1)  # ties in predicted benefit
    result = benefit_calibration(arm, outcome, predicted, n_groups=5)
    sizes = [r["n"] for r in result["groups"]]
    assert sum(sizes) == 103 and max(sizes) - min(sizes) <= 1
    rows = result["groups"]
    for low, high in itertools.pairwise(rows):
        assert low["predicted_max"] <= high["predicted_min"]
        assert low["predicted"] <= high["predicted"]


def test_benefit_calibration_slope_near_one_for_true_benefit() -> None:
    arm, outcome, benefit = _trial(20000, 93, "binary")
    result = benefit_calibration(arm, outcome, benefit, n_groups=5)
    # With this seed: slope 1.01, intercept -0.004 (slope 0.96-1.02 over 10 other seeds).
    assert result["slope"] == pytest.approx(1.0, abs=0.1)
    assert result["intercept"] == pytest.approx(0.0, abs=0.03)
    observed = [r["observed"] for r in result["groups"]]
    predicted = [r["predicted"] for r in result["groups"]]
    assert np.all(np.diff(observed) > 0)
    np.testing.assert_allclose(observed, predicted, atol=0.05)
    spread = result["top_minus_bottom"]
    assert spread["lower"] > 0  # benefit clearly differs between patients
    assert spread["estimate"] == pytest.approx(result["predicted_top_minus_bottom"], abs=0.07)
    # A predictor unrelated to the benefit: the groups show no trend.
    noise = np.random.default_rng(94).normal(size=benefit.size)
    flat = benefit_calibration(arm, outcome, noise, n_groups=5)
    assert flat["top_minus_bottom"]["lower"] < 0 < flat["top_minus_bottom"]["upper"]


# ----------------------------------------------------------------------------- bootstrapped


def test_bootstrapped_intervals_contain_estimate_and_are_reproducible() -> None:
    arm, outcome, benefit = _trial(500, 100, "binary")
    predicted = benefit + np.random.default_rng(101).normal(scale=0.1, size=benefit.size)

    def metrics_of(idx: np.ndarray) -> dict[str, float]:
        sub = outcome.take(idx)
        return {
            "c_for_benefit": c_for_benefit(arm[idx], sub, predicted[idx])[0],
            "benefit": trial_contrast(arm[idx], sub)["benefit"]["estimate"],
        }

    kwargs = {"n_bootstrap": 200, "confidence_level": 0.9}
    result = bootstrapped(metrics_of, arm.size, seed=3, **kwargs)
    point = metrics_of(np.arange(arm.size))
    assert set(result) == {"c_for_benefit", "benefit"}
    for name, interval in result.items():
        assert interval["estimate"] == point[name]
        assert interval["lower"] < interval["estimate"] < interval["upper"]
    assert bootstrapped(metrics_of, arm.size, seed=3, **kwargs) == result
    other = bootstrapped(metrics_of, arm.size, seed=4, **kwargs)
    assert other["benefit"]["lower"] != result["benefit"]["lower"]
    # The bootstrap interval of the benefit is close to the normal one of trial_contrast.
    normal = trial_contrast(arm, outcome, confidence_level=0.9)["benefit"]
    width = normal["upper"] - normal["lower"]
    assert result["benefit"]["upper"] - result["benefit"]["lower"] == pytest.approx(width, rel=0.2)
