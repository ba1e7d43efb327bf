"""Tests of omics_ml.transforms.counts: the vectorised order-statistic selection and trimming
the functions are built on, independence of input dtype and chunking, the frozen steps, row
independence and bad input.

The comparisons with edgeR 3.40.2, DESeq2 1.38.3 and pydeseq2 are in
``test_counts_reference.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omics_ml.transforms.base import step_from_json
from omics_ml.transforms.counts import (
    CountNormaliser,
    FilterByExpr,
    _select_order_stat,
    _trim_bounds,
    check_counts,
    filter_by_expr,
    median_of_ratios_size_factors,
    tmm_norm_factors,
    upper_quartile_norm_factors,
)

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference"
RTOL = 1e-6
ROW_TOL = 1e-12
N_FIT = 100


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "counts.csv.gz", index_col=0)


@pytest.fixture(scope="module")
def X(counts: pd.DataFrame) -> np.ndarray:  # noqa: N802 - scikit-learn's name for the data
    return counts.to_numpy()


# The comparisons with edgeR, DESeq2 and pydeseq2 are in test_counts_reference.py; this module
# tests the algorithms' internals, frozen state, row independence and errors.


# --------------------------------------------------------------------------- input types, chunks


def test_results_do_not_depend_on_dtype_or_chunks(X) -> None:
    """Integer, float32 and float64 input, by chunks of 7 rows or the default, agree."""
    expected = {
        "tmm": tmm_norm_factors(X)[0],
        "uq": upper_quartile_norm_factors(X)[0],
        "ratio": median_of_ratios_size_factors(X)[0],
        "poscounts": median_of_ratios_size_factors(X, type="poscounts")[0],
    }
    for dtype in (np.int32, np.float32, np.float64):
        for chunk_size in (None, 7):
            Y = X.astype(dtype)
            got = {
                "tmm": tmm_norm_factors(Y, chunk_size=chunk_size)[0],
                "uq": upper_quartile_norm_factors(Y, chunk_size=chunk_size)[0],
                "ratio": median_of_ratios_size_factors(Y, chunk_size=chunk_size)[0],
                "poscounts": median_of_ratios_size_factors(
                    Y, type="poscounts", chunk_size=chunk_size
                )[0],
            }
            for name, values in got.items():
                # sums over samples (geometric means) add up chunk by chunk: last-bit changes
                np.testing.assert_allclose(
                    values, expected[name], rtol=1e-13, atol=0, err_msg=f"{name} {dtype}"
                )


@settings(max_examples=30, deadline=None)
@given(
    values=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 9), st.integers(1, 1500)),
        elements=st.sampled_from([-2.0, -0.5, 0.0, 0.25, 1.0, 3.0, np.inf]) | st.floats(-5, 5),
    ),
    quantile=st.floats(0, 1),
)
def test_select_order_stat_equals_sorting(values: np.ndarray, quantile: float) -> None:
    """The sort-free selection gives exactly the order statistics of a full sort."""
    n_rows, n_cols = values.shape
    k = np.minimum((quantile * n_cols), n_cols - 1).astype(np.intp) * np.ones(n_rows, np.intp)
    k[::2] = n_cols - 1 - k[::2]  # different ranks in different rows
    ordered = np.sort(values, axis=1)
    sel = _select_order_stat(np.ascontiguousarray(values), k)
    np.testing.assert_array_equal(sel.value, ordered[np.arange(n_rows), k])


@pytest.mark.parametrize("mode", ["normal", "half tied", "mostly inf", "sorted", "rounded -inf"])
def test_select_order_stat_on_awkward_rows(mode: str) -> None:
    """Ties, infinities and sorted rows make the first bracket guess wrong: still exact."""
    rng = np.random.default_rng(sum(map(ord, mode)))  # a fixed seed per mode
    for _ in range(20):
        n_rows, n_cols = int(rng.integers(1, 8)), int(rng.integers(513, 4000))
        values = rng.standard_normal((n_rows, n_cols))
        if mode == "half tied":
            values[:, : n_cols // 2] = 0.0
        elif mode == "mostly inf":
            values[rng.random(values.shape) < 0.7] = np.inf
        elif mode == "sorted":
            values = np.sort(values, axis=1)
        elif mode == "rounded -inf":
            values[:, rng.integers(0, n_cols, n_cols // 3)] = -np.inf
            values = np.round(values, 1)
        k = rng.integers(0, n_cols, n_rows)
        sel = _select_order_stat(np.ascontiguousarray(values), k)
        expected = np.sort(values, axis=1)[np.arange(n_rows), k]
        np.testing.assert_array_equal(sel.value, expected)


@settings(max_examples=30, deadline=None)
@given(
    values=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 1200)),
        elements=st.integers(-6, 6).map(float),  # many ties
    ),
    invalid=st.floats(0, 0.6),
    trim=st.sampled_from([0.0, 0.05, 0.3, 0.45]),
    seed=st.integers(0, 2**16),
)
def test_trim_bounds_keep_what_average_ranks_keep(
    values: np.ndarray, invalid: float, trim: float, seed: int
) -> None:
    """The value interval equals edgeR's rule on rank(x, ties = "average")."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    values = values.copy()
    values[rng.random(values.shape) < invalid] = np.inf  # not usable in this row
    n_valid = np.isfinite(values).sum(axis=1)
    low, high = _trim_bounds(values, n_valid, trim)
    for i in range(values.shape[0]):  # the reference rule, row by row
        valid = values[i][np.isfinite(values[i])]
        n = valid.size
        lo = np.floor(n * trim) + 1
        ranks = rankdata(valid, method="average")
        expected = (ranks >= lo) & (ranks <= n + 1 - lo)
        np.testing.assert_array_equal((valid >= low[i]) & (valid <= high[i]), expected)


# --------------------------------------------------------------------------- frozen steps

STEP_PARAMS = [
    {"library_size": "tmm", "transformation": "log_cpm"},
    {"library_size": "tmm", "reference": 0, "transformation": "log2_normalised"},
    {"library_size": "median_of_ratios", "zeros": "ratio", "transformation": "log_cpm"},
    {"library_size": "median_of_ratios", "zeros": "poscounts", "transformation": "log2_normalised"},
    {"library_size": "upper_quartile", "transformation": "log_cpm"},
    {"library_size": "none", "transformation": "log_cpm", "prior_count": 0.5},
]
IDS = ["-".join(str(v) for v in p.values()) for p in STEP_PARAMS]


@pytest.fixture(scope="module")
def fitted(X) -> list[CountNormaliser]:
    return [CountNormaliser(**params).fit(X[:N_FIT]) for params in STEP_PARAMS]


@pytest.mark.parametrize("i", range(len(STEP_PARAMS)), ids=IDS)
def test_new_samples_alone_equal_their_batch(fitted, X, i: int) -> None:
    step = fitted[i]
    batch = step.transform(X[N_FIT:])
    assert batch.shape == (X.shape[0] - N_FIT, X.shape[1])
    assert np.isfinite(batch).all()
    alone = np.vstack([step.transform(X[j : j + 1]) for j in range(N_FIT, X.shape[0])])
    np.testing.assert_allclose(alone, batch, rtol=ROW_TOL, atol=ROW_TOL)
    # the fitting samples come out as in fit_transform
    np.testing.assert_array_equal(step.transform(X[:N_FIT]), clone_fit_transform(step, X))


def clone_fit_transform(step: CountNormaliser, X: np.ndarray) -> np.ndarray:
    return CountNormaliser(**step.get_params()).fit_transform(X[:N_FIT])


def test_frozen_tmm_uses_the_training_reference(fitted, X) -> None:
    step = fitted[0]
    factors, ref = tmm_norm_factors(X[:N_FIT])
    assert step.reference_index_ == ref.index
    np.testing.assert_array_equal(step.reference_counts_, X[ref.index])
    lib = X.sum(axis=1)
    np.testing.assert_allclose(
        step.effective_lib_size(X[:N_FIT]), lib[:N_FIT] * factors, rtol=1e-14
    )
    # a new sample: its raw TMM factor against the frozen profile, over the training normaliser
    new_factors, _ = tmm_norm_factors(X[N_FIT:], reference=ref)
    np.testing.assert_allclose(
        step.effective_lib_size(X[N_FIT:]), lib[N_FIT:] * new_factors, rtol=1e-14
    )
    # the reference sample itself, seen again as a new sample, gets 1 / training normaliser
    one, _ = tmm_norm_factors(X[ref.index : ref.index + 1], reference=ref)
    assert one[0] == pytest.approx(np.exp(-ref.log_scale), rel=1e-14)


def test_median_of_ratios_effective_library_size(fitted, X) -> None:
    step = fitted[2]  # zeros="ratio"
    sf, _ = median_of_ratios_size_factors(X[:N_FIT])
    np.testing.assert_allclose(step.size_factors(X[:N_FIT]), sf, rtol=1e-14)
    geo_lib = np.exp(np.mean(np.log(X[:N_FIT].sum(axis=1))))
    np.testing.assert_allclose(step.effective_lib_size(X[:N_FIT]), sf * geo_lib, rtol=1e-14)


@pytest.mark.parametrize("i", range(len(STEP_PARAMS)), ids=IDS)
def test_count_normaliser_json_round_trip(fitted, X, i: int) -> None:
    step = fitted[i]
    state = json.loads(json.dumps(step.to_json()))
    loaded = step_from_json(state)
    assert type(loaded) is CountNormaliser
    assert loaded.get_params() == step.get_params()
    np.testing.assert_array_equal(loaded.transform(X[N_FIT:]), step.transform(X[N_FIT:]))


def test_filter_by_expr_json_round_trip(X) -> None:
    step = FilterByExpr(min_count=5, min_total_count=20).fit(X[:N_FIT])
    loaded = step_from_json(json.loads(json.dumps(step.to_json())))
    assert type(loaded) is FilterByExpr
    np.testing.assert_array_equal(loaded.keep_, step.keep_)
    np.testing.assert_array_equal(loaded.transform(X[N_FIT:]), step.transform(X[N_FIT:]))
    assert loaded.cpm_cutoff_ == step.cpm_cutoff_ == 5 / np.median(X[:N_FIT].sum(axis=1)) * 1e6


@st.composite
def count_matrices(draw: st.DrawFn) -> np.ndarray:
    """Negative-binomial-like counts, every sample with a positive library size."""
    n_samples = draw(st.integers(2, 12))
    n_genes = draw(st.sampled_from([3, 40, 700]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mu = np.exp(rng.normal(2.0, 1.5, n_genes)) * np.exp(rng.normal(0, 0.4, (n_samples, 1)))
    counts = rng.poisson(mu * rng.gamma(2.0, 0.5, mu.shape)).astype(np.int64)
    empty = counts.sum(axis=1) == 0
    counts[empty, 0] = 1
    return counts


@settings(max_examples=30, deadline=None)
@given(train=count_matrices(), params=st.sampled_from(STEP_PARAMS), data=st.data())
def test_count_normaliser_rows_are_independent(
    train: np.ndarray, params: dict, data: st.DataObject
) -> None:
    if params.get("zeros") == "ratio" and not (train > 0).all(axis=0).any():
        return  # DESeq2 "ratio" needs a gene without zeros
    step = CountNormaliser(**params).fit(train)
    new = data.draw(
        hnp.arrays(np.int64, (4, train.shape[1]), elements=st.integers(0, 500)), label="new"
    )
    new[:, 0] += 1  # a positive library size
    batch = np.vstack([new, train])
    try:
        out = step.transform(batch)
    except ValueError as error:  # a new sample that this method cannot scale
        assert "median of ratios is undefined" in str(error) or "upper quartile of 0" in str(error)
        return
    for i in range(new.shape[0]):
        np.testing.assert_allclose(
            step.transform(new[i : i + 1])[0], out[i], rtol=ROW_TOL, atol=ROW_TOL
        )


@settings(max_examples=30, deadline=None)
@given(train=count_matrices(), data=st.data())
def test_filter_by_expr_rows_are_independent(train: np.ndarray, data: st.DataObject) -> None:
    if not filter_by_expr(train, min_count=1, min_total_count=1).any():
        with pytest.raises(ValueError, match="kept none of the"):
            FilterByExpr(min_count=1, min_total_count=1).fit(train)
        return
    step = FilterByExpr(min_count=1, min_total_count=1).fit(train)
    row = data.draw(st.integers(0, train.shape[0] - 1))
    np.testing.assert_array_equal(
        step.transform(train[row : row + 1])[0], step.transform(train)[row]
    )
    np.testing.assert_array_equal(step.transform(train), train[:, step.keep_])


# --------------------------------------------------------------------------- bad input


def _good() -> np.ndarray:
    return np.arange(1, 41, dtype=np.float64).reshape(5, 8)


BAD = {
    "negative": ((2, 3, -3.0), r"non-negative integers; found -3 at sample 2, feature 3"),
    "non-integer": ((1, 6, 2.5), r"non-negative integers; found 2\.5 at sample 1, feature 6"),
    "nan": ((4, 0, np.nan), r"missing value \(NaN\) at sample 4, feature 0"),
}


def _step(name: str) -> CountNormaliser | FilterByExpr:
    return FilterByExpr(min_count=1) if name == "filter" else CountNormaliser(library_size=name)


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("name", ["filter", "tmm", "median_of_ratios", "upper_quartile", "none"])
def test_bad_counts_are_rejected_in_fit_and_transform(kind: str, name: str) -> None:
    (row, col, value), match = BAD[kind]
    bad = _good()
    bad[row, col] = value
    with pytest.raises(ValueError, match=match):
        _step(name).fit(bad)
    step = _step(name).fit(_good())
    with pytest.raises(ValueError, match=match):
        step.transform(bad)


def test_zero_library_sample_is_rejected() -> None:
    bad = _good()
    bad[3] = 0
    match = r"sample 3 has library size 0 .*drop that sample"
    with pytest.raises(ValueError, match=match):
        CountNormaliser().fit(bad)
    step = CountNormaliser(library_size="median_of_ratios").fit(_good())
    with pytest.raises(ValueError, match=match):
        step.transform(bad)
    with pytest.raises(ValueError, match=match):
        check_counts(bad)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"library_size": "rle"}, "library_size must be one of"),
        ({"zeros": "iterate"}, "zeros must be one of"),
        ({"transformation": "log10"}, "transformation must be one of"),
        ({"reference": 99}, r"reference must be 'auto' or a row index in \[0, 5\)"),
        ({"prior_count": 0}, "prior_count must be a positive number"),
        ({"logratio_trim": 0.5}, r"logratio_trim must be in \[0, 0\.5\)"),
    ],
)
def test_bad_parameters_are_rejected(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CountNormaliser(**params).fit(_good())


def test_ratio_without_zero_free_gene_is_rejected() -> None:
    counts = _good()
    counts[np.arange(5), np.arange(5)] = 0
    counts[0, 5:] = 0
    with pytest.raises(ValueError, match=r"every gene contains at least one zero.*poscounts"):
        median_of_ratios_size_factors(counts, type="ratio")
    factors, _ = median_of_ratios_size_factors(counts, type="poscounts")
    assert np.isfinite(factors).all()


def test_functions_reject_negative_and_nan_counts() -> None:
    bad = _good()
    bad[1, 2] = -1
    for function in (tmm_norm_factors, median_of_ratios_size_factors, filter_by_expr):
        with pytest.raises(ValueError, match="found -1 at sample 1, feature 2"):
            function(bad)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN\) at sample 1, feature 2"):
        tmm_norm_factors(bad)
