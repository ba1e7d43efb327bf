"""The X-learner: outcomes on the what-if scale with censoring weights, and effect recovery."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.nonparametric import kaplan_meier_estimator

from omics_ml.tasks import Outcome
from omics_ml.x_learner import fit_x_learner, observed_on_scale

SURVIVAL = {"kind": "survival", "horizon": 10.0, "lower_is_better": True}


def _trial(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, arm, a continuous outcome and its true effect (linear in the first feature)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    arm = rng.integers(0, 2, n)
    effect = 1.0 + 2.0 * x[:, 0]
    y = x[:, 1] + 0.5 * x[:, 2] ** 2 + arm * effect + rng.normal(0.0, 0.5, n)
    return x, arm, y, effect


def test_survival_outcome_is_the_event_by_the_horizon_weighted_by_censoring() -> None:
    time = np.array([2.0, 4.0, 6.0, 8.0, 12.0, 3.0, 15.0])
    event = np.array([1, 0, 1, 0, 0, 1, 1], dtype=np.int8)
    y, w = observed_on_scale(Outcome(np.array(["x"] * 7), time, event), SURVIVAL)
    np.testing.assert_array_equal(np.isnan(y), [False, True, False, True, False, False, False])
    np.testing.assert_array_equal(y[~np.isnan(y)], [1, 1, 0, 1, 0])
    assert (w[np.isnan(y)] == 0).all()
    # Known rows: 1 / G(t-) with G the Kaplan-Meier of the censoring times.
    times, g = kaplan_meier_estimator(event == 0, time)

    def g_before(t: float) -> float:
        before = times < t
        return float(g[before][-1]) if before.any() else 1.0

    for i in np.flatnonzero(~np.isnan(y)):
        assert w[i] == pytest.approx(1.0 / g_before(min(time[i], 10.0)))


def test_censoring_weights_restore_the_event_share_of_the_kaplan_meier_risk() -> None:
    rng = np.random.default_rng(4)
    n = 20000
    event_time = rng.exponential(12.0, n)
    censor = rng.uniform(0.0, 30.0, n)
    time = np.minimum(event_time, censor)
    event = (event_time <= censor).astype(np.int8)
    y, w = observed_on_scale(Outcome(np.array(["x"] * n), time, event), SURVIVAL)
    known = ~np.isnan(y)
    weighted = float(np.sum(w[known] * y[known]) / n)
    assert weighted == pytest.approx(1 - np.exp(-10.0 / 12.0), abs=0.015)


def test_binary_and_continuous_outcomes() -> None:
    label = np.array(["yes", "no", "yes"])
    y, w = observed_on_scale(
        Outcome(label), {"kind": "binary", "event_class": "yes", "lower_is_better": True}
    )
    np.testing.assert_array_equal(y, [1, 0, 1])
    np.testing.assert_array_equal(w, [1, 1, 1])
    target = np.array([1.5, np.nan, -2.0])
    y, w = observed_on_scale(
        Outcome(label, target=target), {"kind": "continuous", "lower_is_better": False}
    )
    np.testing.assert_array_equal(w, [1, 0, 1])


def test_x_learner_recovers_a_heterogeneous_effect() -> None:
    x, arm, y, effect = _trial(4000, seed=1)
    # Nuisance: the true arm means (the T-learner's job), here known exactly.
    mu0 = x[:, 1] + 0.5 * x[:, 2] ** 2
    mu1 = mu0 + effect
    model = fit_x_learner(x, arm, y, np.ones_like(y), (mu0, mu1), seed=0, nthread=1)
    x_new, _, _, effect_new = _trial(2000, seed=2)
    predicted = model.effect(x_new)
    assert np.corrcoef(predicted, effect_new)[0, 1] > 0.9
    assert predicted.mean() == pytest.approx(effect_new.mean(), abs=0.15)
    assert model.share_treated == pytest.approx(arm.mean())


def test_x_learner_blends_the_arms_by_the_share_treated() -> None:
    x, arm, y, _ = _trial(600, seed=3)
    mu0 = np.zeros_like(y)
    mu1 = np.zeros_like(y)
    model = fit_x_learner(x, arm, y, np.ones_like(y), (mu0, mu1), seed=0, nthread=1)
    tau_treated = model.treated_model.inplace_predict(x)
    tau_control = model.control_model.inplace_predict(x)
    e = model.share_treated
    np.testing.assert_allclose(model.effect(x), e * tau_control + (1 - e) * tau_treated, rtol=1e-6)


def test_x_learner_needs_outcomes_in_both_arms() -> None:
    x, arm, y, _ = _trial(50, seed=5)
    y = np.where(arm == 1, np.nan, y)
    with pytest.raises(ValueError, match="arm 1"):
        fit_x_learner(x, arm, y, np.ones_like(y), (y, y), seed=0, nthread=1)
