"""Tests of omics_ml.transforms.methylation: beta values to M-values (Du et al. 2010)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omics_ml.transforms.base import step_from_json
from omics_ml.transforms.methylation import BetaToM


def _betas(seed: int = 0, n: int = 20, p: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.beta(0.5, 0.5, size=(n, p))
    X[0, 0] = 0.0
    X[1, 1] = 1.0
    X[2, 2] = np.nan
    return X


def test_matches_du_formula():
    X = _betas()
    offset = 1e-6
    out = BetaToM().fit_transform(X)
    expected = np.log2((X + offset) / (1 - X + offset))
    np.testing.assert_allclose(out, expected, rtol=1e-12, equal_nan=True)
    assert out.dtype == np.float64
    assert np.isnan(out[2, 2])
    assert out[0, 0] == pytest.approx(np.log2(offset / (1 + offset)))
    assert out[1, 1] == pytest.approx(-out[0, 0])


def test_known_values_and_custom_offset():
    out = BetaToM(offset=0.01).fit_transform(np.array([[0.5, 0.8, 0.2]]))
    np.testing.assert_allclose(out, [[0.0, np.log2(0.81 / 0.21), np.log2(0.21 / 0.81)]])


def test_values_within_tolerance_are_clipped():
    X = np.array([[-5e-7, 1 + 5e-7], [0.0, 1.0]])
    out = BetaToM().fit(X).transform(X)
    np.testing.assert_array_equal(out[0], out[1])


def test_transform_rejects_m_values():
    step = BetaToM().fit(_betas())
    X = _betas(seed=1)
    X[3, 4] = 2.5
    with pytest.raises(ValueError, match=r"row\) 3, feature \(column\) 4") as info:
        step.transform(X)
    assert "2.5" in str(info.value)
    assert "beta values must be in [0, 1]; pass beta values, not M-values or intensities" in str(
        info.value
    )


def test_fit_rejects_values_just_beyond_tolerance():
    X = _betas()
    X[5, 0] = -1e-5
    with pytest.raises(ValueError, match=r"beta values must be in \[0, 1\]"):
        BetaToM().fit(X)
    BetaToM(tolerance=1e-4).fit(X)  # a wider tolerance accepts it


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"offset": 0.0}, "offset must be a positive"),
        ({"offset": "a"}, "offset must be a positive"),
        ({"tolerance": -1.0}, "tolerance must be a finite number >= 0"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        BetaToM(**params).fit(_betas())


def test_bad_shapes_and_inf():
    step = BetaToM().fit(_betas())
    with pytest.raises(ValueError, match="fitted on 6 features but got 5"):
        step.transform(_betas(p=5))
    with pytest.raises(ValueError, match="must be 2-D"):
        step.transform(np.array([0.1, 0.2]))
    X = _betas()
    X[0, 3] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        step.transform(X)


def test_json_round_trip():
    step = BetaToM(offset=1e-3, tolerance=1e-5).fit(_betas())
    restored = step_from_json(json.loads(json.dumps(step.to_json())))
    assert isinstance(restored, BetaToM)
    assert restored.get_params() == step.get_params()
    X = _betas(seed=3)
    np.testing.assert_array_equal(restored.transform(X), step.transform(X))


_BETA = st.one_of(st.floats(0.0, 1.0, allow_nan=False), st.just(np.nan))


@settings(max_examples=30, deadline=None)
@given(
    X=hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.just(4)), elements=_BETA),
    row=st.integers(0, 100),
)
def test_row_independent(X, row):
    step = BetaToM().fit(_betas(p=4))
    i = row % X.shape[0]
    np.testing.assert_array_equal(step.transform(X[i : i + 1]), step.transform(X)[i : i + 1])
