"""DESeq2 VST trend fit and closed-form transform (omics_ml.transforms.vst).

The reference ``deseq2_vst_blind.csv.gz`` is reproduced by DESeq2 1.38.3
``varianceStabilizingTransformation(dds, blind=TRUE)`` with the *poscounts* size factors, to
5e-12. (Checked in R; DESeq2's ``vst()`` itself falls back to a local fit on these data and
differs from the file by up to 2 log2 units.) The R-derived constants below were computed with
DESeq2 1.38.3 (Debian r-bioc-deseq2) on ``counts.csv.gz`` and ``deseq2_size_factors.csv``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from omics_ml.transforms import vst as vst_module
from omics_ml.transforms.vst import DispersionTrendError, fit_vst_dispersion_trend, vst_transform

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference"

# DESeq2 1.38.3, estimateDispersionsFit on all non-zero genes, poscounts size factors.
R_PARAMETRIC_ALL = (0.248961616035017763, 0.050375011847496487)  # asymptDisp, extraPois
R_MEAN_ALL = 0.25677320486131799
# DESeq2 vst()'s gene subset (baseMean > 5, evenly spaced in baseMean order), fitType="mean".
R_MEAN_NSUB = {1000: 0.25531567071088901, 500: 0.256268892820047}
# Parametric trend fitted on the first 1500 genes only (columns 0:1500), poscounts size factors.
R_PARAMETRIC_BLOCK = (0.238631601294969, 0.0601471453379465)
# Gene-wise dispersions (dispGeneEst), poscounts size factors: one gene refitted on the grid
# (gene_0212), two that keep their start value (gene_0005, gene_0007), the rest line search.
R_DISP_GENE_EST = {
    "gene_0212": 0.0414076142314129,
    "gene_1148": 0.198703093875049,
    "gene_1158": 0.15027297852381,
    "gene_0278": 0.19429542638987,
    "gene_2943": 0.208689062455057,
    "gene_1791": 0.232451495198197,
    "gene_1708": 0.1974209831887,
    "gene_1004": 0.212736192435046,
    "gene_2804": 0.965330083454755,
    "gene_0005": 0.195691022373493,
    "gene_0007": 0.224470587910223,
}

# Tolerances measured against the reference (default parametric fit, poscounts size factors):
# max abs diff 2.5e-11, mean abs diff 6.6e-12, correlation 1 - 3e-16.
REFERENCE_MAX_ABS = 1e-8
REFERENCE_MEAN_ABS = 1e-9
# Against pydeseq2 0.5.4 vst(fit_type="mean"), ratio size factors, on the first 1000 genes (to
# keep the test fast): max abs diff 0.00028, mean 7.4e-5. (All 3000 genes: max 0.00126, mean 0.00033.)
PYDESEQ2_GENES = 1000
PYDESEQ2_MAX_ABS = 0.0005
PYDESEQ2_MEAN_ABS = 0.0001


@pytest.fixture(scope="module")
def reference() -> dict[str, object]:
    counts = pd.read_csv(REFERENCE / "counts.csv.gz", index_col=0)
    size_factors = pd.read_csv(REFERENCE / "deseq2_size_factors.csv", index_col=0).loc[counts.index]
    vst_ref = pd.read_csv(REFERENCE / "deseq2_vst_blind.csv.gz", index_col=0)
    assert list(vst_ref.columns) == list(counts.index)
    assert list(vst_ref.index) == list(counts.columns)
    return {
        "counts": counts,
        "poscounts": size_factors["poscounts"].to_numpy(),
        "ratio": size_factors["ratio"].to_numpy(),
        "vst": vst_ref.to_numpy().T,  # samples x genes, like counts
    }


@pytest.fixture(scope="module")
def default_trend(reference) -> dict[str, float]:
    return fit_vst_dispersion_trend(reference["counts"].to_numpy(), reference["poscounts"])


def test_reproduces_deseq2_reference_with_poscounts(reference, default_trend) -> None:
    out = vst_transform(reference["counts"].to_numpy(), reference["poscounts"], default_trend)
    diff = np.abs(out - reference["vst"])
    assert out.shape == reference["vst"].shape
    assert diff.max() < REFERENCE_MAX_ABS
    assert diff.mean() < REFERENCE_MEAN_ABS
    assert np.corrcoef(out.ravel(), reference["vst"].ravel())[0, 1] > 1 - 1e-12
    assert default_trend["asympt_disp"] == pytest.approx(R_PARAMETRIC_ALL[0], rel=1e-9)
    assert default_trend["extra_pois"] == pytest.approx(R_PARAMETRIC_ALL[1], rel=1e-9)


def test_reference_was_made_with_poscounts_not_ratio(reference) -> None:
    counts = reference["counts"].to_numpy()
    trend = fit_vst_dispersion_trend(counts, reference["ratio"])
    diff = np.abs(vst_transform(counts, reference["ratio"], trend) - reference["vst"])
    assert diff.max() > 0.1  # measured 0.145: the ratio size factors do not reproduce the file


def test_trend_coefficients_are_positive_plain_floats(default_trend) -> None:
    assert default_trend["fit_type"] == "parametric"
    assert default_trend["asympt_disp"] > 0
    assert default_trend["extra_pois"] > 0
    assert all(type(default_trend[key]) is float for key in ("asympt_disp", "extra_pois"))
    assert json.loads(json.dumps(default_trend)) == default_trend


def test_genewise_dispersions_match_deseq2(reference) -> None:
    counts = reference["counts"]
    names = list(R_DISP_GENE_EST)
    columns = counts[names].to_numpy(dtype=np.float64)
    disp = vst_module._genewise_dispersions(columns, reference["poscounts"], 1e-8)
    np.testing.assert_allclose(disp, list(R_DISP_GENE_EST.values()), rtol=1e-9)


def test_gene_chunking_does_not_change_the_fit(reference, default_trend, monkeypatch) -> None:
    monkeypatch.setattr(vst_module, "_CHUNK_ELEMENTS", 120 * 97)  # 97 genes per chunk
    trend = fit_vst_dispersion_trend(reference["counts"].to_numpy(), reference["poscounts"])
    assert trend["asympt_disp"] == pytest.approx(default_trend["asympt_disp"], rel=1e-12)
    assert trend["extra_pois"] == pytest.approx(default_trend["extra_pois"], rel=1e-12)


def test_parametric_fit_on_a_gene_block_matches_deseq2(reference) -> None:
    counts = reference["counts"].to_numpy()[:, :1500]
    trend = fit_vst_dispersion_trend(counts, reference["poscounts"])
    assert trend["asympt_disp"] == pytest.approx(R_PARAMETRIC_BLOCK[0], rel=1e-9)
    assert trend["extra_pois"] == pytest.approx(R_PARAMETRIC_BLOCK[1], rel=1e-9)


@pytest.mark.parametrize("max_genes", [1000, 500])
def test_max_genes_takes_deseq2_vst_subset(reference, max_genes: int) -> None:
    trend = fit_vst_dispersion_trend(
        reference["counts"].to_numpy(), reference["poscounts"], fit_type="mean", max_genes=max_genes
    )
    assert trend["asympt_disp"] == pytest.approx(R_MEAN_NSUB[max_genes], rel=1e-9)


def test_parametric_fit_on_vst_subset_fails_like_deseq2(reference) -> None:
    # On this subset DESeq2 finds no parametric trend either (it switches to a local fit).
    with pytest.raises(DispersionTrendError, match=r"non-positive coefficients.*fit_type='mean'"):
        fit_vst_dispersion_trend(
            reference["counts"].to_numpy(), reference["poscounts"], max_genes=1000
        )


def test_mean_fit_matches_deseq2(reference) -> None:
    counts = reference["counts"].to_numpy()
    trend = fit_vst_dispersion_trend(counts, reference["poscounts"], fit_type="mean")
    assert trend == {
        "fit_type": "mean",
        "asympt_disp": pytest.approx(R_MEAN_ALL, rel=1e-9),
        "extra_pois": 0.0,
    }
    alpha = trend["asympt_disp"]
    q = counts / reference["poscounts"][:, None]
    expected = (2 * np.arcsinh(np.sqrt(alpha * q)) - np.log(alpha) - np.log(4)) / np.log(2)
    out = vst_transform(counts, reference["poscounts"], trend)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    # The mean and parametric VSTs agree closely: the fitted trend is nearly flat.
    assert np.abs(out - reference["vst"]).max() < 0.12  # measured 0.115


def test_matches_pydeseq2(reference) -> None:
    pydeseq2_dds = pytest.importorskip("pydeseq2.dds")
    counts = reference["counts"].iloc[:, :PYDESEQ2_GENES]
    metadata = pd.DataFrame({"group": "a"}, index=counts.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds = pydeseq2_dds.DeseqDataSet(
            counts=counts,
            metadata=metadata,
            design="~1",
            size_factors_fit_type="ratio",
            quiet=True,
            n_cpus=1,
        )
        # pydeseq2's own parametric trend does not converge on these data and falls back to
        # the mean trend, so the mean trend is what is compared.
        dds.vst(use_design=False, fit_type="mean")
    size_factors = np.asarray(dds.obs["size_factors"])
    trend = fit_vst_dispersion_trend(counts.to_numpy(), size_factors, fit_type="mean")
    ours = vst_transform(counts.to_numpy(), size_factors, trend)
    diff = np.abs(ours - np.asarray(dds.layers["vst_counts"]))
    assert diff.max() < PYDESEQ2_MAX_ABS
    assert diff.mean() < PYDESEQ2_MEAN_ABS


def test_closed_form_limits() -> None:
    trend = {"fit_type": "parametric", "asympt_disp": 0.2, "extra_pois": 0.5}
    counts = np.array([[0, 1, 10, 100, 10_000, 10**8]])
    out = vst_transform(counts, np.array([2.0]), trend)[0]
    assert out[0] == pytest.approx(np.log2(1.5 / 0.8))  # log2((1 + extraPois) / (4 asymptDisp))
    assert np.all(np.diff(out) > 0)
    assert out[-1] == pytest.approx(np.log2(10**8 / 2.0), abs=1e-6)  # -> log2(normalised count)


vst_trends = st.one_of(
    st.builds(
        lambda a0, a1: {"fit_type": "parametric", "asympt_disp": a0, "extra_pois": a1},
        st.floats(1e-3, 5.0),
        st.floats(0.0, 10.0),
    ),
    st.builds(
        lambda a0: {"fit_type": "mean", "asympt_disp": a0, "extra_pois": 0.0}, st.floats(1e-3, 5.0)
    ),
)


@settings(max_examples=30, deadline=None)
@given(
    counts=arrays(
        np.int64, st.tuples(st.integers(1, 8), st.integers(1, 6)), elements=st.integers(0, 10**6)
    ),
    data=st.data(),
    trend=vst_trends,
)
def test_vst_transform_is_row_independent(
    counts: np.ndarray, data: st.DataObject, trend: dict
) -> None:
    n_samples = counts.shape[0]
    size_factors = data.draw(arrays(np.float64, n_samples, elements=st.floats(0.05, 20.0)))
    order = data.draw(st.permutations(range(n_samples)))
    full = vst_transform(counts, size_factors, trend)
    rows = np.vstack(
        [vst_transform(counts[i : i + 1], size_factors[i : i + 1], trend) for i in range(n_samples)]
    )
    permuted = vst_transform(counts[order], size_factors[order], trend)
    assert np.all(np.isfinite(full))
    # Equal up to rounding (SIMD code paths may differ in the last bit between batch sizes).
    np.testing.assert_allclose(rows, full, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(permuted, full[order], rtol=1e-13, atol=1e-13)


def test_missing_values_stay_missing() -> None:
    trend = {"fit_type": "parametric", "asympt_disp": 0.2, "extra_pois": 0.5}
    counts = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]])
    out = vst_transform(counts, np.array([1.0, 2.0]), trend)
    assert np.isnan(out[0, 1])
    assert np.isfinite(np.delete(out.ravel(), 1)).all()


def _negative_binomial(
    rng: np.random.Generator, mean: np.ndarray, disp: np.ndarray, n: int
) -> np.ndarray:
    return rng.negative_binomial(1 / disp, 1 / (1 + disp * mean), size=(n, mean.size))


def test_error_when_dispersion_grows_with_mean() -> None:
    rng = np.random.default_rng(7)
    mean = np.geomspace(10, 5000, 300)
    counts = _negative_binomial(rng, mean, 0.01 * np.sqrt(mean), 40)
    with pytest.raises(
        DispersionTrendError, match=r"non-positive coefficients.*use fit_type='mean'"
    ):
        fit_vst_dispersion_trend(counts, np.ones(40))
    assert fit_vst_dispersion_trend(counts, np.ones(40), fit_type="mean")["asympt_disp"] > 0


def test_error_when_trend_does_not_converge(reference, monkeypatch) -> None:
    monkeypatch.setattr(vst_module, "_TREND_MAX_ITER", 0)
    with pytest.raises(DispersionTrendError, match=r"did not converge.*use fit_type='mean'"):
        fit_vst_dispersion_trend(reference["counts"].to_numpy()[:, :800], reference["poscounts"])


def test_error_when_counts_have_no_overdispersion() -> None:
    counts = np.tile(np.arange(10, 210), (30, 1))  # every gene constant: dispersions go to min_disp
    with pytest.raises(DispersionTrendError, match=r"within 100x of min_disp.*use fit_type='mean'"):
        fit_vst_dispersion_trend(counts, np.ones(30))
    with pytest.raises(DispersionTrendError, match="within 10x of min_disp"):
        fit_vst_dispersion_trend(counts, np.ones(30), fit_type="mean")


def test_all_genes_used_when_max_genes_exceeds_candidates() -> None:
    rng = np.random.default_rng(11)
    counts = _negative_binomial(
        rng, np.geomspace(1, 2000, 400), np.full(400, 0.1) + 1 / np.geomspace(1, 2000, 400), 30
    )
    size_factors = np.ones(30)
    assert fit_vst_dispersion_trend(
        counts, size_factors, max_genes=10_000
    ) == fit_vst_dispersion_trend(
        counts, size_factors, max_genes=int((counts.mean(axis=0) > 5).sum())
    )


GOOD_COUNTS = np.arange(12).reshape(3, 4)
GOOD_SF = np.ones(3)
GOOD_TREND = {"fit_type": "parametric", "asympt_disp": 0.1, "extra_pois": 1.0}


@pytest.mark.parametrize("call", ["fit", "transform"])
@pytest.mark.parametrize(
    ("counts", "size_factors", "match"),
    [
        (
            np.array([[1, 2, -3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]),
            GOOD_SF,
            "non-negative integers; found -3 at sample 0, feature 2",
        ),
        (
            np.array([[1, 2, 3, 4], [1, 2.5, 3, 4], [1, 2, 3, 4]]),
            GOOD_SF,
            "non-negative integers; found 2.5 at sample 1, feature 1",
        ),
        (
            np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, np.inf]]),
            GOOD_SF,
            "finite; found inf at sample 2, feature 3",
        ),
        (np.arange(4), GOOD_SF[:1], "2-D"),
        (np.array([["a", "b"]]), GOOD_SF[:1], "numeric"),
        (GOOD_COUNTS, np.ones(4), "one value per sample \\(3\\)"),
        (GOOD_COUNTS, np.ones((3, 1)), "1-D"),
        (GOOD_COUNTS, np.array([1.0, 0.0, 1.0]), "> 0; found 0.0 at sample 1"),
        (GOOD_COUNTS, np.array([1.0, 1.0, -2.0]), "> 0; found -2.0 at sample 2"),
        (GOOD_COUNTS, np.array([1.0, np.nan, 1.0]), "> 0; found nan at sample 1"),
    ],
)
def test_bad_input_is_rejected(
    call: str, counts: np.ndarray, size_factors: np.ndarray, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        if call == "fit":
            fit_vst_dispersion_trend(counts, size_factors)
        else:
            vst_transform(counts, size_factors, GOOD_TREND)


def test_fit_rejects_missing_counts_and_bad_options() -> None:
    with pytest.raises(ValueError, match="finite; found nan at sample 1, feature 0"):
        fit_vst_dispersion_trend(np.array([[1.0, 2.0], [np.nan, 3.0]]), np.ones(2))
    with pytest.raises(ValueError, match="fit_type must be one of"):
        fit_vst_dispersion_trend(GOOD_COUNTS, GOOD_SF, fit_type="local")
    with pytest.raises(ValueError, match="max_genes must be None or an integer >= 2"):
        fit_vst_dispersion_trend(GOOD_COUNTS, GOOD_SF, max_genes=1)
    with pytest.raises(ValueError, match="min_disp must be a positive number"):
        fit_vst_dispersion_trend(GOOD_COUNTS, GOOD_SF, min_disp=0.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        fit_vst_dispersion_trend(GOOD_COUNTS[:1], GOOD_SF[:1])
    with pytest.raises(ValueError, match="every gene is zero in every sample"):
        fit_vst_dispersion_trend(np.zeros((3, 4)), GOOD_SF)
    with pytest.raises(
        ValueError, match=r"no gene has a mean normalised count above 5.*max_genes=None"
    ):
        fit_vst_dispersion_trend(GOOD_COUNTS % 3, GOOD_SF, max_genes=100)


@pytest.mark.parametrize(
    ("trend", "match"),
    [
        ({"fit_type": "parametric", "asympt_disp": 0.1}, "missing \\['extra_pois'\\]"),
        ({"fit_type": "local", "asympt_disp": 0.1, "extra_pois": 1.0}, "fit_type must be one of"),
        (
            {"fit_type": "parametric", "asympt_disp": 0.0, "extra_pois": 1.0},
            "asympt_disp must be finite and > 0",
        ),
        (
            {"fit_type": "parametric", "asympt_disp": 0.1, "extra_pois": -1.0},
            "extra_pois must be finite and >= 0",
        ),
    ],
)
def test_bad_trend_is_rejected(trend: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        vst_transform(GOOD_COUNTS, GOOD_SF, trend)


def test_fit_is_fast(reference) -> None:
    counts = reference["counts"].to_numpy()  # 120 samples x 3000 genes
    start = time.perf_counter()
    fit_vst_dispersion_trend(counts, reference["poscounts"])
    assert time.perf_counter() - start < 5.0
