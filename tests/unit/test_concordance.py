"""The O(n log^2 n) concordance indices equal scikit-survival's, counts included."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import concordance_index_censored
from sksurv.metrics import concordance_index_ipcw as sksurv_ipcw
from sksurv.util import Surv

from omics_ml.concordance import concordance_index, concordance_index_ipcw


def _data(n: int, seed: int, *, tied: bool) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    time = rng.exponential(10 * np.exp(-0.5 * risk))
    event = rng.random(n) < 0.6
    if tied:  # discrete times and scores: ties in both, events and censorings at one time
        time = np.ceil(time)
        risk = np.round(risk, 1)
    return event, time, risk


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize(("n", "seed"), [(2, 0), (2, 7), (3, 1), (17, 2), (200, 3), (1001, 4)])
def test_harrell_equals_scikit_survival(n: int, seed: int, tied: bool) -> None:
    event, time, risk = _data(n, seed, tied=tied)
    event[0] = True
    try:
        expected = concordance_index_censored(event, time, risk)
    except NoComparablePairException:
        with pytest.raises(NoComparablePairException):
            concordance_index(event, time, risk)
        return
    got = concordance_index(event, time, risk)
    assert got.cindex == pytest.approx(expected[0], rel=1e-12, nan_ok=True)
    assert tuple(got)[1:] == tuple(int(v) for v in expected[1:])


@pytest.mark.parametrize("tau", [None, 8.0])
@pytest.mark.parametrize("tied", [False, True])
def test_uno_equals_scikit_survival(tied: bool, tau: float | None) -> None:
    event, time, risk = _data(600, 5, tied=tied)
    train_event, train_time, _ = _data(800, 6, tied=tied)
    keep = time < train_time.max()  # scikit-survival needs test times within training follow-up
    y_train = Surv.from_arrays(train_event, train_time)
    y_test = Surv.from_arrays(event[keep], time[keep])
    expected = sksurv_ipcw(y_train, y_test, risk[keep], tau=tau)
    got = concordance_index_ipcw(y_train, y_test, risk[keep], tau=tau)
    assert got.cindex == pytest.approx(expected[0], rel=1e-12)
    assert tuple(got)[1:] == tuple(int(v) for v in expected[1:])


def test_perfect_and_reversed_risks_and_no_events() -> None:
    time = np.arange(1.0, 11.0)
    event = np.ones(10, bool)
    assert concordance_index(event, time, -time).cindex == 1.0
    assert concordance_index(event, time, time).cindex == 0.0
    assert concordance_index(event, time, np.zeros(10)).cindex == 0.5
    with pytest.raises(NoComparablePairException):
        concordance_index(np.zeros(10, bool), time, time)
    with pytest.raises(NoComparablePairException):
        concordance_index([True], [1.0], [0.5])
    with pytest.raises(ValueError, match="differ in length"):
        concordance_index(event, time, time[:5])
