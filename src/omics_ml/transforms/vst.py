"""DESeq2 variance-stabilising transformation (VST) of RNA-seq counts, fitted once and then frozen.

Two plain functions; a normalisation step wraps them.

- :func:`fit_vst_dispersion_trend` learns the dispersion-mean trend of the development samples,
  the way DESeq2's ``varianceStabilizingTransformation(dds, blind=TRUE)`` does (with
  ``max_genes``: ``vst(dds, blind=TRUE, nsub=max_genes)``). It returns three numbers that can
  be stored as JSON.
- :func:`vst_transform` applies DESeq2's closed-form VST for that trend to counts divided by
  their size factors. Each sample (row) is transformed on its own.

References
----------
Anders S, Huber W (2010). Differential expression analysis for sequence count data.
Genome Biology 11:R106. (The dispersion trend and its closed-form VST.)

Love MI, Huber W, Anders S (2014). Moderated estimation of fold change and dispersion for
RNA-seq data with DESeq2. Genome Biology 15:550. (Gene-wise Cox-Reid dispersion estimates.)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, gammaln

__all__ = ["DispersionTrendError", "fit_vst_dispersion_trend", "vst_transform"]

#: With ``max_genes``, genes whose mean normalised count is at most this are left out (DESeq2 ``vst``).
MIN_BASE_MEAN = 5.0
#: The gene-wise fit handles at most this many counts (genes x samples) at a time, to bound memory.
_CHUNK_ELEMENTS = 1_000_000

# DESeq2 estimateDispersionsGeneEst defaults: fitDisp's Armijo line search on log(alpha).
_MIN_MU = 0.5  # fitted means are floored at minmu
_KAPPA_0 = 1.0  # initial step size
_DISP_TOL = 1e-6  # stop once the log posterior rises by less than this
_LINE_SEARCH_MAXIT = 100
_ARMIJO_EPSILON = 1e-4
_LOG_ALPHA_BOUNDS = (-30.0, 10.0)  # fitDisp keeps log(alpha) inside these
_GRID_POINTS = 20  # fitDispGrid: coarse grid, then a fine grid of the same size

# DESeq2 parametricDispersionFit and R's glm.fit defaults.
_TREND_START = (0.1, 1.0)
_TREND_MAX_ITER = 10  # R stops once the outer loop has run more than 10 times
_TREND_TOL = 1e-6
_RESIDUAL_RANGE = (1e-4, 15.0)
_GLM_MAXIT = 25
_GLM_EPSILON = 1e-8
_MEAN_TRIM = 0.001

_FIT_TYPES = ("parametric", "mean")


class DispersionTrendError(RuntimeError):
    """The parametric dispersion trend could not be fitted; ``fit_type="mean"`` is the fallback."""


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_counts(counts: ArrayLike, *, allow_nan: bool = False) -> NDArray[np.float64]:
    array = np.asarray(counts)
    if array.dtype.kind not in "biuf":
        msg = f"counts must be a numeric array of raw counts, got dtype {array.dtype}: pass an integer count matrix (samples x genes)."
        raise ValueError(msg)
    array = array.astype(np.float64, copy=False)
    if array.ndim != 2:
        msg = f"counts must be 2-D (samples x genes), got shape {array.shape}: pass one row per sample."
        raise ValueError(msg)
    bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        msg = f"counts must be finite; found {array[row, col]} at sample {row}, feature {col}: pass raw counts without missing or infinite values."
        raise ValueError(msg)
    with np.errstate(invalid="ignore"):
        negative = array < 0
        fractional = array != np.round(array)
    if negative.any():
        row, col = np.argwhere(negative)[0]
        msg = f"counts must be non-negative integers; found {array[row, col]:g} at sample {row}, feature {col}: pass raw counts, not normalised or log values."
        raise ValueError(msg)
    if (fractional & ~np.isnan(array)).any():
        row, col = np.argwhere(fractional & ~np.isnan(array))[0]
        msg = f"counts must be non-negative integers; found {array[row, col]:g} at sample {row}, feature {col}: pass raw counts, not normalised values (round estimated counts first)."
        raise ValueError(msg)
    return array


def _check_size_factors(size_factors: ArrayLike, n_samples: int) -> NDArray[np.float64]:
    sf = np.asarray(size_factors, dtype=np.float64)
    if sf.ndim != 1 or sf.shape[0] != n_samples:
        msg = f"size_factors must be 1-D with one value per sample ({n_samples}), got shape {sf.shape}: pass the size factors of the same samples, in the same order, as the rows of counts."
        raise ValueError(msg)
    bad = ~np.isfinite(sf) | (sf <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        msg = f"size_factors must be finite and > 0; found {sf[i]} at sample {i}: recompute the size factors (a sample with no reads cannot be normalised)."
        raise ValueError(msg)
    return sf


def _check_trend(trend: dict[str, float]) -> tuple[str, float, float]:
    missing = {"fit_type", "asympt_disp", "extra_pois"} - set(trend)
    if missing:
        msg = f"trend is missing {sorted(missing)}: pass the dict returned by fit_vst_dispersion_trend."
        raise ValueError(msg)
    fit_type = trend["fit_type"]
    if fit_type not in _FIT_TYPES:
        msg = f"trend fit_type must be one of {_FIT_TYPES}, got {fit_type!r}: pass the dict returned by fit_vst_dispersion_trend."
        raise ValueError(msg)
    asympt_disp = float(trend["asympt_disp"])
    extra_pois = float(trend["extra_pois"])
    if not (np.isfinite(asympt_disp) and asympt_disp > 0):
        msg = f"trend asympt_disp must be finite and > 0, got {asympt_disp}: refit the trend with fit_vst_dispersion_trend."
        raise ValueError(msg)
    if not (np.isfinite(extra_pois) and extra_pois >= 0):
        msg = f"trend extra_pois must be finite and >= 0, got {extra_pois}: refit the trend with fit_vst_dispersion_trend."
        raise ValueError(msg)
    return fit_type, asympt_disp, extra_pois


# --------------------------------------------------------------------------------------------
# Gene-wise dispersions (DESeq2 estimateDispersionsGeneEst, intercept-only design)
# Arrays here are genes x samples (C order) so that sums over samples run along contiguous rows.
# --------------------------------------------------------------------------------------------


def _log_posterior(
    log_alpha: NDArray[np.float64], y: NDArray[np.float64], mu: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Cox-Reid adjusted NB log-likelihood of each gene (DESeq2 ``log_posterior``, no prior)."""
    alpha = np.exp(log_alpha)[:, None]
    inv = 1.0 / alpha
    ll = (gammaln(y + inv) - y * np.log(mu + inv) - inv * np.log(1.0 + mu * alpha)).sum(axis=1)
    ll -= y.shape[1] * gammaln(inv[:, 0])
    # Cox-Reid: -1/2 log det(X' W X); for an intercept X' W X = sum(w), w = 1/(1/mu + alpha).
    cr = -0.5 * np.log((1.0 / (1.0 / mu + alpha)).sum(axis=1))
    return ll + cr


def _dlog_posterior(
    log_alpha: NDArray[np.float64], y: NDArray[np.float64], mu: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Derivative of :func:`_log_posterior` with respect to log(alpha)."""
    alpha_1d = np.exp(log_alpha)
    alpha = alpha_1d[:, None]
    inv = 1.0 / alpha
    mu_alpha = mu * alpha
    terms = np.log(1.0 + mu_alpha) - mu_alpha / (1.0 + mu_alpha) - digamma(y + inv) + y / (mu + inv)
    ll = (terms.sum(axis=1) + y.shape[1] * digamma(inv[:, 0])) / alpha_1d**2
    w = 1.0 / (1.0 / mu + alpha)
    cr = 0.5 * (w**2).sum(axis=1) / w.sum(axis=1)
    return (ll + cr) * alpha_1d


def _line_search(
    y: NDArray[np.float64],
    mu: NDArray[np.float64],
    log_alpha: NDArray[np.float64],
    min_log_alpha: float,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """DESeq2's ``fitDisp`` Armijo line search, run for all genes at once.

    Every gene follows exactly the step rule of the C++ code; the Python loop runs over the
    iterations (at most 100), each one vectorised over the genes still moving.

    Returns the final log(alpha), the number of iterations, and the initial and final log posterior.
    """
    a = log_alpha.copy()
    lp = _log_posterior(a, y, mu)
    dlp = _dlog_posterior(a, y, mu)
    initial_lp = lp.copy()
    kappa = np.full_like(a, _KAPPA_0)
    n_iter = np.zeros(a.shape, dtype=np.int64)
    n_accept = np.zeros(a.shape, dtype=np.int64)
    active = np.arange(a.shape[0])
    low, high = _LOG_ALPHA_BOUNDS
    for _ in range(_LINE_SEARCH_MAXIT):
        if active.size == 0:
            break
        a_i, lp_i, dlp_i, k_i = a[active], lp[active], dlp[active], kappa[active]
        n_iter[active] += 1
        propose = a_i + k_i * dlp_i
        with np.errstate(divide="ignore", invalid="ignore"):
            k_i = np.where(propose < low, (low - a_i) / dlp_i, k_i)
            k_i = np.where(propose > high, (high - a_i) / dlp_i, k_i)
        a_new = a_i + k_i * dlp_i
        lp_new = _log_posterior(a_new, y[active], mu[active])
        accept = -lp_new <= -lp_i - k_i * _ARMIJO_EPSILON * dlp_i**2
        change = lp_new - lp_i
        finished = accept & (change < _DISP_TOL)  # lp is updated, then stop
        escaping = accept & ~finished & (a_new < min_log_alpha)  # stop, lp not updated
        moving = accept & ~finished & ~escaping
        a_i = np.where(accept, a_new, a_i)
        lp_i = np.where(finished | moving, lp_new, lp_i)
        n_accept[active] += accept
        k_i = np.where(accept, np.minimum(k_i * 1.1, _KAPPA_0), k_i / 2.0)
        k_i = np.where(accept & (n_accept[active] % 5 == 0), k_i / 2.0, k_i)
        if moving.any():
            dlp_i[moving] = _dlog_posterior(a_i[moving], y[active[moving]], mu[active[moving]])
        a[active], lp[active], dlp[active], kappa[active] = a_i, lp_i, dlp_i, k_i
        active = active[~(finished | escaping)]
    return a, n_iter, initial_lp, lp


def _grid_search(
    y: NDArray[np.float64], mu: NDArray[np.float64], max_disp: float
) -> NDArray[np.float64]:
    """DESeq2's ``fitDispGrid``: best of a 20-point log(alpha) grid, then of a finer grid around it."""
    grid = np.linspace(np.log(1e-8), np.log(max_disp), _GRID_POINTS)
    delta = grid[1] - grid[0]
    ones = np.ones(y.shape[0])
    coarse = np.stack([_log_posterior(ones * g, y, mu) for g in grid])
    best = grid[np.argmax(coarse, axis=0)]
    offsets = np.linspace(-delta, delta, _GRID_POINTS)
    fine_grid = best[None, :] + offsets[:, None]
    fine = np.stack([_log_posterior(fine_grid[t], y, mu) for t in range(_GRID_POINTS)])
    return fine_grid[np.argmax(fine, axis=0), np.arange(y.shape[0])]


def _genewise_dispersions_chunk(
    y: NDArray[np.float64], size_factors: NDArray[np.float64], min_disp: float
) -> NDArray[np.float64]:
    """Gene-wise dispersion estimates of DESeq2 for the design ``~ 1``; ``y`` is genes x samples."""
    n_samples = y.shape[1]
    normed = y / size_factors[None, :]
    base_mean = normed.mean(axis=1)
    base_var = normed.var(axis=1, ddof=1)
    max_disp = max(10.0, float(n_samples))

    # Starting values: the smaller of the rough (linear model) and moments estimates.
    rough_mu = np.maximum(base_mean, 1.0)[:, None]
    rough = np.maximum(
        (((normed - rough_mu) ** 2 - rough_mu) / rough_mu**2).sum(axis=1) / (n_samples - 1), 0.0
    )
    moments = (base_var - np.mean(1.0 / size_factors) * base_mean) / base_mean**2
    alpha_init = np.clip(np.minimum(rough, moments), min_disp, max_disp)

    # For an intercept-only design the fitted means are the linear-model shortcut.
    mu = np.maximum(base_mean[:, None] * size_factors[None, :], _MIN_MU)
    log_alpha, n_iter, initial_lp, last_lp = _line_search(
        y, mu, np.log(alpha_init), np.log(min_disp / 10)
    )
    disp = np.minimum(np.exp(log_alpha), max_disp)
    # Moves that did not raise the log posterior by a millionth fall back to the start.
    no_increase = last_lp < initial_lp + np.abs(initial_lp) / 1e6
    disp = np.where(no_increase, alpha_init, disp)
    # Line searches that hit maxit or stopped at once are redone on a grid.
    converged = (n_iter < _LINE_SEARCH_MAXIT) & (n_iter != 1)
    refit = ~converged & (disp > 10 * min_disp)
    if refit.any():
        disp[refit] = np.exp(_grid_search(y[refit], mu[refit], max_disp))
    return np.clip(disp, min_disp, max_disp)


def _genewise_dispersions(
    counts: NDArray[np.float64], size_factors: NDArray[np.float64], min_disp: float
) -> NDArray[np.float64]:
    """Gene-wise dispersions of ``counts`` (samples x genes, no all-zero gene), in chunks of genes."""
    n_samples, n_genes = counts.shape
    chunk = max(1, _CHUNK_ELEMENTS // n_samples)
    parts = [
        _genewise_dispersions_chunk(
            np.ascontiguousarray(counts[:, start : start + chunk].T), size_factors, min_disp
        )
        for start in range(0, n_genes, chunk)
    ]
    return np.concatenate(parts)


# --------------------------------------------------------------------------------------------
# Trend (DESeq2 estimateDispersionsFit)
# --------------------------------------------------------------------------------------------


def _gamma_deviance(y: NDArray[np.float64], mu: NDArray[np.float64]) -> float:
    return float(-2.0 * np.sum(np.log(y / mu) - (y - mu) / mu))


def _gamma_identity_glm(
    y: NDArray[np.float64], x: NDArray[np.float64], start: NDArray[np.float64]
) -> tuple[NDArray[np.float64], bool]:
    """``glm(y ~ x, family=Gamma(link="identity"), start=start)`` by R's IRLS (glm.fit)."""
    design = np.column_stack([np.ones_like(x), x])
    coef_old = start.copy()
    mu = design @ coef_old
    if not np.all(mu > 0):
        msg = "the gamma GLM of the dispersion trend has no valid starting values (a fitted dispersion <= 0)."
        raise DispersionTrendError(msg)
    dev_old = _gamma_deviance(y, mu)
    for _ in range(_GLM_MAXIT):
        # Identity link: working response is y, working weights are 1/mu^2.
        sqrt_w = 1.0 / mu
        coef = np.linalg.lstsq(design * sqrt_w[:, None], y * sqrt_w, rcond=None)[0]
        mu = design @ coef
        # Step halving towards the previous coefficients while a fitted value is <= 0, as
        # glm.fit does for invalid fitted values.
        for _halving in range(_GLM_MAXIT + 1):
            if np.all(mu > 0) and np.isfinite(dev := _gamma_deviance(y, mu)):
                break
            coef = (coef + coef_old) / 2.0
            mu = design @ coef
        else:
            msg = "the gamma GLM of the dispersion trend could not find valid fitted values: use fit_type='mean'."
            raise DispersionTrendError(msg)
        if abs(dev - dev_old) / (abs(dev) + 0.1) < _GLM_EPSILON:
            return coef, True
        dev_old, coef_old = dev, coef
    return coef_old, False


def _parametric_trend(
    means: NDArray[np.float64], disps: NDArray[np.float64]
) -> tuple[float, float]:
    """DESeq2 ``parametricDispersionFit``: robust gamma GLM ``disp ~ asymptDisp + extraPois / mean``."""
    coefs = np.asarray(_TREND_START, dtype=np.float64)
    n_iter = 0
    while True:
        residuals = disps / (coefs[0] + coefs[1] / means)
        good = (residuals > _RESIDUAL_RANGE[0]) & (residuals < _RESIDUAL_RANGE[1])
        if good.sum() < 3:
            msg = f"only {int(good.sum())} genes lie near the parametric dispersion trend, too few to fit it: use fit_type='mean'."
            raise DispersionTrendError(msg)
        old = coefs
        coefs, glm_converged = _gamma_identity_glm(disps[good], 1.0 / means[good], old)
        if not np.all(coefs > 0):
            msg = f"the parametric dispersion trend asymptDisp + extraPois/mean got non-positive coefficients (asymptDisp={coefs[0]:.4g}, extraPois={coefs[1]:.4g}): the dispersions do not fall with the mean as the model assumes; use fit_type='mean'."
            raise DispersionTrendError(msg)
        if np.sum(np.log(coefs / old) ** 2) < _TREND_TOL and glm_converged:
            return float(coefs[0]), float(coefs[1])
        n_iter += 1
        if n_iter > _TREND_MAX_ITER:
            msg = f"the parametric dispersion trend did not converge in {_TREND_MAX_ITER} iterations (last coefficients asymptDisp={coefs[0]:.4g}, extraPois={coefs[1]:.4g}): use fit_type='mean'."
            raise DispersionTrendError(msg)


def _trimmed_mean(values: NDArray[np.float64], trim: float) -> float:
    """R's ``mean(x, trim=trim)``: drop ``floor(n * trim)`` values at each end."""
    ordered = np.sort(values)
    cut = int(np.floor(ordered.size * trim))
    return float(ordered[cut : ordered.size - cut].mean())


def _trend_genes(base_mean: NDArray[np.float64], max_genes: int | None) -> NDArray[np.intp]:
    """Indices of the genes the trend is fitted on.

    ``max_genes=None``: every gene that is not all zero, as DESeq2
    ``varianceStabilizingTransformation``. Otherwise the genes DESeq2 ``vst(nsub=max_genes)``
    takes: those with baseMean > 5, then ``max_genes`` of them evenly spaced in baseMean order.
    """
    if max_genes is None:
        return np.flatnonzero(base_mean > 0)
    candidates = np.flatnonzero(base_mean > MIN_BASE_MEAN)
    if max_genes >= candidates.size:
        return candidates
    order = candidates[np.argsort(base_mean[candidates], kind="stable")]
    # R: o[round(seq(from = 1, to = n, length = nsub))], 1-based, round half to even.
    n = candidates.size
    step = (n - 1) / (max_genes - 1)
    positions = np.concatenate([[1.0], 1.0 + np.arange(1, max_genes - 1) * step, [float(n)]])
    return np.sort(order[np.rint(positions).astype(np.intp) - 1])


def fit_vst_dispersion_trend(
    counts: NDArray,
    size_factors: NDArray,
    *,
    fit_type: str = "parametric",
    min_disp: float = 1e-8,
    max_genes: int | None = None,
) -> dict[str, float]:
    """Fit DESeq2's dispersion-mean trend for the variance-stabilising transformation.

    Reproduces DESeq2 (1.38) ``varianceStabilizingTransformation(dds, blind=TRUE,
    fitType=...)``, or, with ``max_genes``, ``vst(dds, blind=TRUE, nsub=max_genes)``:

    1. Genes: all genes that are not all zero, or with ``max_genes`` DESeq2 ``vst``'s subset
       (see ``max_genes``).
    2. Gene-wise dispersions for the design ``~ 1`` (``estimateDispersionsGeneEst``): start
       from the smaller of the rough and moments estimates, set ``mu = sf * baseMean``
       (the linear-model shortcut, floored at 0.5), and maximise the Cox-Reid adjusted
       negative binomial log-likelihood over log(alpha) with DESeq2's Armijo line search.
       The search runs for all genes at once, one vectorised step per iteration. DESeq2's
       fallbacks are kept: a move that gains less than a millionth of the log-likelihood
       goes back to the start, and a search that did not converge is refitted on DESeq2's
       log-alpha grid. Estimates are clipped to ``[min_disp, max(10, n_samples)]``.
    3. The trend (``estimateDispersionsFit``):

       - ``"parametric"``: the gamma-family GLM ``disp ~ asymptDisp + extraPois / mean`` is
         fitted to genes with dispersion > ``100 * min_disp`` (R's ``glm.fit`` IRLS). Genes
         with ``disp / fitted`` outside (1e-4, 15) are dropped, and the fit is repeated until
         ``sum(log(coefs / oldcoefs)^2) < 1e-6`` (at most 11 fits, as in DESeq2).
       - ``"mean"``: ``mean(disp[disp > 10 * min_disp], trim=0.001)``.

    Parameters
    ----------
    counts : ndarray of shape (n_samples, n_genes)
        Raw, non-negative integer counts of the development samples.
    size_factors : ndarray of shape (n_samples,)
        Size factors of those samples (e.g. DESeq2 median-of-ratios), all > 0.
    fit_type : {"parametric", "mean"}
        Form of the trend. Use ``"mean"`` if the parametric fit fails.
    min_disp : float
        DESeq2's ``minDisp``: the smallest dispersion estimate allowed.
    max_genes : int or None
        None (default): fit on every gene that is not all zero, as DESeq2
        ``varianceStabilizingTransformation`` does. An int (at least 2): fit on the genes
        DESeq2 ``vst(nsub=max_genes)`` takes: genes with baseMean > 5, then ``max_genes`` of
        them evenly spaced in baseMean order (``o[round(seq(1, n, length=max_genes))]``).
        Fewer genes make the fit faster. If fewer than ``max_genes`` genes have
        baseMean > 5, all of them are used (DESeq2 stops with an error instead).

    Returns
    -------
    dict
        ``{"fit_type": str, "asympt_disp": float, "extra_pois": float}``. For the mean fit,
        ``asympt_disp`` is the mean dispersion and ``extra_pois`` is 0. Pass it to
        :func:`vst_transform`.

    Raises
    ------
    ValueError
        Bad input: counts that are not non-negative integers, wrong shapes, size factors
        <= 0, fewer than two samples, no usable gene, or an unknown ``fit_type``.
    DispersionTrendError
        The parametric fit got non-positive coefficients or did not converge. Use
        ``fit_type="mean"`` instead. (DESeq2 switches to a local regression here, which this
        module does not provide.)

    Notes
    -----
    Both gene choices are deterministic. DESeq2's ``vst`` subset is not random: it is
    evenly spaced in baseMean order, and ``max_genes=1000`` takes the same genes. The
    default uses every gene instead. Fitting is then slower, but the result does not depend
    on the subset, and it matches ``varianceStabilizingTransformation``, which the reference
    data of this project were made with. Low-count genes can change the trend a lot. On the
    reference data, fits restricted to genes with baseMean > 5 give a negative
    ``extraPois``: there R's ``vst`` itself switches to a local fit, and this function
    raises :class:`DispersionTrendError`.

    Gene-wise estimates above ``100 * min_disp`` match DESeq2 1.38.3 to a relative 1e-7.
    Estimates of Poisson-like genes (near ``min_disp``) can differ: the likelihood is flat
    there, so rounding decides where the search stops. The parametric fit leaves those genes
    out, but the mean fit counts the ones above ``10 * min_disp``; on the reference data this
    moved one mean fit by a relative 4e-4. The gene-wise fit runs over the genes in chunks
    to bound memory.

    The dispersion trend and VST are from Anders & Huber (2010). The gene-wise Cox-Reid
    estimates are from Love, Huber & Anders (2014).
    """
    if fit_type not in _FIT_TYPES:
        msg = f"fit_type must be one of {_FIT_TYPES}, got {fit_type!r}."
        raise ValueError(msg)
    if not (np.isfinite(min_disp) and min_disp > 0):
        msg = f"min_disp must be a positive number, got {min_disp!r} (DESeq2's default is 1e-8)."
        raise ValueError(msg)
    if max_genes is not None and (
        isinstance(max_genes, bool) or int(max_genes) != max_genes or max_genes < 2
    ):
        msg = (
            f"max_genes must be None or an integer >= 2, got {max_genes!r} (DESeq2 vst uses 1000)."
        )
        raise ValueError(msg)
    y = _check_counts(counts)
    sf = _check_size_factors(size_factors, y.shape[0])
    if y.shape[0] < 2:
        msg = f"at least 2 samples are needed to estimate dispersions, got {y.shape[0]}: fit on more development samples."
        raise ValueError(msg)

    base_mean = (y / sf[:, None]).mean(axis=0)
    genes = _trend_genes(base_mean, None if max_genes is None else int(max_genes))
    if genes.size == 0:
        if max_genes is None:
            msg = "every gene is zero in every sample, so the dispersion trend cannot be fitted: pass raw counts of the development samples."
        else:
            msg = f"no gene has a mean normalised count above {MIN_BASE_MEAN:g}, so the dispersion trend cannot be fitted on a max_genes subset: pass max_genes=None to use every gene."
        raise ValueError(msg)
    disps = _genewise_dispersions(y[:, genes], sf, min_disp)

    if fit_type == "mean":
        use = disps > 10 * min_disp
        if not use.any():
            msg = f"every gene-wise dispersion is within 10x of min_disp={min_disp:g}: the counts look Poisson, and no dispersion trend can be fitted."
            raise DispersionTrendError(msg)
        return {
            "fit_type": "mean",
            "asympt_disp": _trimmed_mean(disps[use], _MEAN_TRIM),
            "extra_pois": 0.0,
        }

    use = disps > 100 * min_disp
    if not use.any():
        msg = f"every gene-wise dispersion is within 100x of min_disp={min_disp:g}, so the parametric trend cannot be fitted: use fit_type='mean'."
        raise DispersionTrendError(msg)
    asympt_disp, extra_pois = _parametric_trend(base_mean[genes][use], disps[use])
    return {"fit_type": "parametric", "asympt_disp": asympt_disp, "extra_pois": extra_pois}


def vst_transform(
    counts: NDArray, size_factors: NDArray, trend: dict[str, float]
) -> NDArray[np.float64]:
    """Variance-stabilise counts with a fitted trend (DESeq2 ``getVarianceStabilizedData``).

    With ``q = counts / size_factors[:, None]`` (normalised counts), ``a0 = asympt_disp`` and
    ``a1 = extra_pois``:

    - parametric trend: ``log2((1 + a1 + 2 a0 q + 2 sqrt(a0 q (1 + a1 + a0 q))) / (4 a0))``
    - mean trend (fixed dispersion ``a0``): ``(2 asinh(sqrt(a0 q)) - log(a0) - log(4)) / log(2)``

    Both become ``log2(q)`` as q grows.

    Parameters
    ----------
    counts : ndarray of shape (n_samples, n_genes)
        Raw, non-negative integer counts. NaN (missing) is allowed and stays NaN.
    size_factors : ndarray of shape (n_samples,)
        Size factor of each sample, > 0. Compute them against the frozen development
        reference, so that a sample's factor depends only on that sample.
    trend : dict
        Output of :func:`fit_vst_dispersion_trend` (``fit_type``, ``asympt_disp``,
        ``extra_pois``).

    Returns
    -------
    ndarray of shape (n_samples, n_genes), float64
        VST values on a log2-like scale.

    Raises
    ------
    ValueError
        Bad counts, size factors or trend.

    Notes
    -----
    Row ``i`` of the output depends only on ``counts[i]``, ``size_factors[i]`` and the
    trend, so a sample is transformed the same way alone or in any batch. The parametric
    form depends on the trend only through ``(1 + extra_pois) / asympt_disp``: trends that
    differ in their coefficients but share this ratio give the same values. The closed form
    is from Anders & Huber (2010), as implemented in DESeq2 (Love, Huber & Anders 2014).
    """
    q = _check_counts(counts, allow_nan=True)
    sf = _check_size_factors(size_factors, q.shape[0])
    fit_type, a0, a1 = _check_trend(trend)
    q = q / sf[:, None]
    if fit_type == "parametric":
        out = np.log(
            (1.0 + a1 + 2.0 * a0 * q + 2.0 * np.sqrt(a0 * q * (1.0 + a1 + a0 * q))) / (4.0 * a0)
        )
    else:
        out = 2.0 * np.arcsinh(np.sqrt(a0 * q)) - np.log(a0) - np.log(4.0)
    return out / np.log(2.0)
