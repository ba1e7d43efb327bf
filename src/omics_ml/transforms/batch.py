"""Batch-effect correction fitted on development samples: empirical-Bayes ComBat.

:class:`ComBat` re-implements ``sva::ComBat`` (Bioconductor sva 3.46, no covariates, ``mod=NULL``)
after Johnson, Li & Rabinovic (2007), "Adjusting batch effects in microarray expression data using
empirical Bayes methods", *Biostatistics* 8(1):118-127. The location/scale batch parameters are
estimated on the development samples, frozen as plain arrays, and then applied sample by sample,
so that a new sample measured in a batch seen during fitting is adjusted exactly as the development
samples of that batch were.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils.validation import check_is_fitted

from omics_ml.transforms.base import FrozenTransform, register_step

__all__ = ["ComBat"]

logger = logging.getLogger(__name__)

#: Convergence threshold of the parametric solver, as ``it.sol(conv=.0001)`` in sva.
_CONVERGENCE = 1e-4
#: Safety stop of the parametric solver (sva has none; it usually converges in < 50 iterations).
_MAX_ITERATIONS = 10_000
#: Largest genes x genes block held in memory at once by the non-parametric prior (float64 cells).
_NONPARAMETRIC_BLOCK_CELLS = 1 << 22
_UNSEEN_BATCH_OPTIONS = ("error", "reference")


def _is_missing(value: Any) -> bool:
    """True for None and for NaN-like scalars (float NaN, pandas.NA, NaT)."""
    if value is None:
        return True
    try:
        return bool(value != value)  # noqa: PLR0124 (NaN is the only value unequal to itself)
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        return True


def _label_to_str(value: Any) -> str | None:
    """One batch label as a string; None for a missing label (None, NaN, empty string).

    Integers and integral floats are written without a decimal point, so ``2``, ``2.0`` and
    ``"2"`` are the same batch.
    """
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        text = value
    elif _is_missing(value):
        text = ""
    elif isinstance(value, bool | np.bool_):
        text = str(bool(value))
    elif isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and float(value).is_integer()
    ):
        text = str(int(value))
    else:
        text = str(value)
    return text if text.strip() else None


_labels_to_str = np.frompyfunc(_label_to_str, 1, 1)


def _batch_labels(batch: ArrayLike | None, n_samples: int, *, where: str) -> NDArray[np.object_]:
    """Batch labels as an object array of str (None where missing), checked against ``n_samples``."""
    if batch is None:
        msg = (
            f"ComBat.{where} needs the batch label of every sample: call {where}(X, batch=labels) "
            "with one label (str or int) per row of X."
        )
        raise ValueError(msg)
    labels = np.asarray(batch, dtype=object)
    if labels.ndim == 0:
        msg = f"batch must be a sequence with one label per sample, got the scalar {batch!r}; pass e.g. [{batch!r}] * n_samples."
        raise ValueError(msg)
    if labels.ndim != 1:
        labels = labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels
    if labels.ndim != 1:
        msg = f"batch must be 1-D (one label per sample), got shape {labels.shape}."
        raise ValueError(msg)
    if labels.shape[0] != n_samples:
        msg = f"batch has {labels.shape[0]} labels but X has {n_samples} samples (rows); pass exactly one batch label per sample."
        raise ValueError(msg)
    return np.asarray(_labels_to_str(labels), dtype=object).reshape(n_samples)


def _aprior(delta_hat: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverse-gamma shape prior per batch by the method of moments (sva ``aprior``)."""
    m = delta_hat.mean(axis=1)
    s2 = delta_hat.var(axis=1, ddof=1)
    return (2 * s2 + m**2) / s2


def _bprior(delta_hat: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverse-gamma scale prior per batch by the method of moments (sva ``bprior``)."""
    m = delta_hat.mean(axis=1)
    s2 = delta_hat.var(axis=1, ddof=1)
    return (m * s2 + m**3) / s2


def _postmean(
    g_hat: NDArray[np.float64],
    g_bar: float,
    n: float,
    d_star: NDArray[np.float64] | float,
    t2: float,
) -> NDArray[np.float64]:
    """Posterior mean of the additive batch effect (sva ``postmean``)."""
    return (t2 * n * g_hat + d_star * g_bar) / (t2 * n + d_star)


def _it_sol(
    sdat: NDArray[np.float64],
    g_hat: NDArray[np.float64],
    d_hat: NDArray[np.float64],
    *,
    g_bar: float,
    t2: float,
    a: float,
    b: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], int]:
    """Parametric empirical-Bayes fixed point of one batch (sva ``it.sol``), vectorised over genes.

    ``sdat`` is the standardised data of the batch (samples x genes). Iterates until the largest
    relative change ``max((g_new - g_old) / g_old, (d_new - d_old) / d_old)`` (signed denominator,
    exactly as sva computes it) is at most 1e-4. Returns ``gamma_star``, ``delta_star`` and the
    number of iterations.
    """
    n = sdat.shape[0]
    g_old = g_hat
    d_old = d_hat
    for count in range(1, _MAX_ITERATIONS + 1):
        g_new = _postmean(g_hat, g_bar, n, d_old, t2)
        sum2 = ((sdat - g_new) ** 2).sum(axis=0)
        d_new = (0.5 * sum2 + b) / (n / 2 + a - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.concatenate([np.abs(g_new - g_old) / g_old, np.abs(d_new - d_old) / d_old])
        change = float(np.max(np.nan_to_num(ratios, nan=0.0, posinf=np.inf, neginf=-np.inf)))
        g_old, d_old = g_new, d_new
        if change <= _CONVERGENCE:
            return g_new, d_new, count
    logger.warning(
        "ComBat: the parametric empirical-Bayes solver did not converge in %d iterations; "
        "using the last estimates (try parametric=False or check the batch for outliers).",
        _MAX_ITERATIONS,
    )
    return g_old, d_old, _MAX_ITERATIONS


def _int_eprior(
    sdat: NDArray[np.float64], g_hat: NDArray[np.float64], d_hat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Non-parametric empirical-Bayes estimates of one batch (sva ``int.eprior``), vectorised.

    For gene ``i`` every other gene ``k`` is a draw from the prior, weighted by the normal
    likelihood of gene ``i``'s standardised values under ``(g_hat[k], d_hat[k])``:
    ``log L[i, k] = -(n/2) log(2 pi d_k) - (n (mean_i - g_k)^2 + SS_i) / (2 d_k)``, where ``SS_i``
    is the sum of squares of gene ``i`` about its batch mean (the same sum as sva's, expanded). The
    weights are normalised in log space (sva multiplies raw likelihoods, which can underflow to 0/0).
    """
    n, n_genes = sdat.shape
    xbar = sdat.mean(axis=0)
    ss = ((sdat - xbar) ** 2).sum(axis=0)
    log_norm = -(n / 2) * np.log(2 * np.pi * d_hat)
    g_star = np.empty(n_genes)
    d_star = np.empty(n_genes)
    block = max(1, _NONPARAMETRIC_BLOCK_CELLS // max(n_genes, 1))
    for start in range(0, n_genes, block):  # blocks of genes only to bound memory
        rows = np.arange(start, min(start + block, n_genes))
        sum2 = n * (xbar[rows, None] - g_hat[None, :]) ** 2 + ss[rows, None]
        log_lh = log_norm[None, :] - sum2 / (2 * d_hat[None, :])
        log_lh[np.arange(rows.size), rows] = -np.inf  # leave gene i out of its own prior
        weights = np.exp(log_lh - log_lh.max(axis=1, keepdims=True))
        total = weights.sum(axis=1)
        g_star[rows] = weights @ g_hat / total
        d_star[rows] = weights @ d_hat / total
    return g_star, d_star


@register_step
class ComBat(FrozenTransform):
    """Empirical-Bayes location/scale batch correction (ComBat), fitted on development samples.

    A re-implementation of ``sva::ComBat`` (sva 3.46) without covariates (``mod=NULL``) after
    Johnson, Li & Rabinovic (2007). ``fit`` learns, from the development samples and their batch
    labels, a per-feature grand mean and pooled standard deviation and, for every batch, the
    empirical-Bayes additive (``gamma_star``) and multiplicative (``delta_star``) batch effects.
    ``transform`` standardises each sample with the frozen grand mean and standard deviation,
    removes the frozen effect of the sample's own batch and scales back:
    ``x_adj = (((x - mean) / sd - gamma_star[b]) / sqrt(delta_star[b])) * sd + mean``.
    A sample is adjusted alike alone or among others; applied to the development samples this
    reproduces ``sva::ComBat(dat, batch, ...)`` (to ~1e-14 relative on the bladderbatch data).

    Parameters
    ----------
    parametric : bool, default=True
        True: parametric priors (normal for ``gamma``, inverse gamma for ``delta``) solved by sva's
        iterative ``it.sol`` (stops when the largest relative change is <= 1e-4, as sva does).
        False: sva's non-parametric ``int.eprior`` (every other feature of the batch is a prior
        draw, weighted by its likelihood); O(features^2) time and memory per batch.
    reference_batch : str or int, optional
        A batch label (compared as a string, so ``2`` and ``"2"`` are the same batch). As sva's
        ``ref.batch``: the grand mean and pooled variance come from this batch alone, its
        ``gamma``/``delta`` are 0/1 and its samples are returned unchanged; every other batch is
        moved onto it. Needs at least 2 samples in the reference batch.
    mean_only : bool, default=False
        As sva's ``mean.only``: adjust only the batch means (``delta`` fixed to 1). Also the way to
        fit batches that have a single development sample.
    unseen_batch : {"error", "reference"}, default="error"
        What ``transform`` does with a sample whose batch label was not seen in ``fit`` (or is
        missing: None, NaN or empty). See Notes.

    Attributes
    ----------
    batch_levels_ : ndarray of str, shape (n_batches,)
        The batch labels seen in ``fit``, as strings, sorted.
    batch_counts_ : ndarray of int, shape (n_batches,)
        Development samples per batch.
    grand_mean_ : ndarray of shape (n_features,)
        Per-feature grand mean (sva ``stand.mean`` without batch terms; the reference batch mean
        when ``reference_batch`` is set). 0 for unadjusted features.
    pooled_sd_ : ndarray of shape (n_features,)
        Per-feature pooled standard deviation (``sqrt(var.pooled)``; from the reference batch when
        it is set). 1 for unadjusted features.
    gamma_star_ : ndarray of shape (n_batches, n_features)
        Empirical-Bayes additive batch effects on the standardised scale (0 for the reference batch
        and for unadjusted features).
    delta_star_ : ndarray of shape (n_batches, n_features)
        Empirical-Bayes multiplicative batch effects (variances) on the standardised scale (1 for
        the reference batch and for unadjusted features).
    unadjusted_ : ndarray of bool, shape (n_features,)
        Features passed through unchanged: constant within a batch, or with a missing value among
        the development samples.
    n_iter_ : ndarray of int, shape (n_batches,)
        Iterations of the parametric solver per batch (0 where it was not run).

    Notes
    -----
    *Batches seen in fit.* The parameters are those of ``sva::ComBat`` with ``mod=NULL``: the
    grand mean and pooled variance come from the least-squares fit of the data on batch
    indicators (``B.hat``; the pooled variance divides by the number of samples, as sva does),
    ``gamma.hat``/``delta.hat`` are the batch means/variances of the standardised data, the priors
    ``gamma.bar``, ``t2`` and the inverse-gamma ``a.prior``, ``b.prior`` are found by the method of
    moments per batch, and ``it.sol`` (or ``int.eprior``) gives ``gamma.star``/``delta.star``.
    Every batch needs at least 2 development samples for its variance; a batch with a single
    sample is an error unless ``mean_only=True`` (sva silently switches to mean-only instead).
    At least 2 batches and 2 adjustable features are needed. The reference batch is not passed
    through the solver (sva solves it and then overwrites it with 0/1; the result is the same).
    The non-parametric weights are normalised in log space, which equals sva's ratio of raw
    likelihoods wherever those do not underflow (where they do, sva returns NaN).

    *Features left unadjusted.* As sva, features with zero variance within any batch (of >= 2
    samples) are removed before fitting and returned unchanged; features with any missing value
    (NaN) among the development samples are also left unchanged (sva would fit them with
    per-feature regressions; here they are logged and passed through). NaN in ``transform``
    stays NaN.

    *Unseen batches.* ComBat can only remove a batch effect it has estimated. A sample whose
    batch label was not seen in ``fit`` (or whose label is missing: None, NaN or an empty string)
    is handled by ``unseen_batch``: with ``"error"`` (the default) ``transform`` raises a
    ``ValueError`` naming the unseen labels and the seen ones. With ``"reference"`` the sample is
    treated as if it had been measured in the reference batch: when ``reference_batch`` is set it
    is returned unchanged, exactly as the reference batch's own samples; without a reference
    batch it is standardised and scaled back with no batch shift (``gamma`` 0, ``delta`` 1), which
    also leaves it unchanged. Either way a ``logging`` WARNING names the unseen labels and how many
    samples carry them, because such samples keep whatever batch effect they have.

    References
    ----------
    Johnson WE, Li C, Rabinovic A (2007). Adjusting batch effects in microarray expression data
    using empirical Bayes methods. Biostatistics 8(1):118-127.
    Leek JT, Johnson WE, Parker HS, et al. sva: Surrogate Variable Analysis, R/Bioconductor
    package, version 3.46 (function ``ComBat``).
    """

    uses_batch: ClassVar[bool] = True
    state_attributes: ClassVar[tuple[str, ...]] = (
        "batch_levels_",
        "batch_counts_",
        "grand_mean_",
        "pooled_sd_",
        "gamma_star_",
        "delta_star_",
        "unadjusted_",
        "n_iter_",
    )

    def __init__(
        self,
        *,
        parametric: bool = True,
        reference_batch: str | int | None = None,
        mean_only: bool = False,
        unseen_batch: str = "error",
    ) -> None:
        self.parametric = parametric
        self.reference_batch = reference_batch
        self.mean_only = mean_only
        self.unseen_batch = unseen_batch

    # ------------------------------------------------------------------ validation helpers
    def _check_params(self) -> None:
        for name in ("parametric", "mean_only"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                msg = f"ComBat({name}=...) must be True or False, got {getattr(self, name)!r}."
                raise ValueError(msg)
        if self.unseen_batch not in _UNSEEN_BATCH_OPTIONS:
            msg = f"ComBat(unseen_batch=...) must be one of {list(_UNSEEN_BATCH_OPTIONS)}, got {self.unseen_batch!r}."
            raise ValueError(msg)

    def _reference_label(self) -> str | None:
        if self.reference_batch is None:
            return None
        label = _label_to_str(self.reference_batch)
        if label is None:
            msg = f"ComBat(reference_batch=...) must be a batch label (str or int) or None, got {self.reference_batch!r}."
            raise ValueError(msg)
        return label

    # ------------------------------------------------------------------ fit
    def fit(self, X: ArrayLike, y: Any = None, *, batch: ArrayLike | None = None) -> ComBat:
        """Estimate the ComBat batch parameters from development samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Development samples (rows) x features, already normalised (e.g. log expression);
            NaN marks a missing value.
        y : ignored
        batch : array-like of shape (n_samples,)
            Batch label (str or int) of every sample; compared as strings.

        Returns
        -------
        ComBat
            The fitted step.
        """
        self._check_params()
        data = self._check_input(X, reset=True)
        n_samples, n_features = data.shape
        labels = _batch_labels(batch, n_samples, where="fit")
        missing = np.equal(labels, None)
        if missing.any():
            msg = (
                f"{int(missing.sum())} development sample(s) have no batch label (None, NaN or empty; "
                f"first at row {int(np.flatnonzero(missing)[0])}); give every sample a batch or drop them before fit."
            )
            raise ValueError(msg)
        levels, codes, counts = np.unique(
            labels.astype(str), return_inverse=True, return_counts=True
        )
        n_batch = levels.size
        if n_batch < 2:
            msg = (
                f"ComBat needs development samples from at least 2 batches, got only batch {levels[0]!r}; "
                "there is no batch effect to estimate (drop the ComBat step)."
            )
            raise ValueError(msg)
        reference = self._reference_label()
        ref = None
        if reference is not None:
            if reference not in levels:
                msg = f"ComBat(reference_batch={self.reference_batch!r}) is not one of the batches seen in fit: {levels.tolist()}; choose one of them or None."
                raise ValueError(msg)
            ref = int(np.flatnonzero(levels == reference)[0])
            if counts[ref] < 2:
                msg = f"the reference batch {reference!r} has a single development sample; ComBat needs >= 2 reference samples to estimate the pooled variance. Choose another reference batch or None."
                raise ValueError(msg)
        singles = levels[counts < 2]
        if singles.size and not self.mean_only:
            msg = (
                f"batch(es) {singles.tolist()} have a single development sample; ComBat (as sva) needs >= 2 samples "
                "per batch to estimate a batch variance. Merge them into a similar batch, drop them, or use "
                "ComBat(mean_only=True)."
            )
            raise ValueError(msg)

        if not (counts >= 2).any():
            msg = "every batch has a single development sample; ComBat needs at least one batch with >= 2 samples to estimate the pooled variance. Merge batches or add samples."
            raise ValueError(msg)

        onehot = np.zeros((n_batch, n_samples), dtype=bool)
        onehot[codes, np.arange(n_samples)] = True

        # Features left unadjusted: any NaN, or constant within a batch of >= 2 samples (as sva).
        has_nan = np.isnan(data).any(axis=0)
        constant = np.zeros(n_features, dtype=bool)
        for i in np.flatnonzero(counts >= 2):
            rows = data[onehot[i]]
            constant |= rows.max(axis=0) == rows.min(axis=0)
        constant &= ~has_nan
        unadjusted = has_nan | constant
        if has_nan.any():
            logger.warning(
                "ComBat: %d of %d features have missing values among the development samples and are left unadjusted.",
                int(has_nan.sum()),
                n_features,
            )
        if constant.any():
            logger.info(
                "ComBat: %d of %d features are constant within a batch and are left unadjusted (as sva does).",
                int(constant.sum()),
                n_features,
            )
        keep = ~unadjusted
        if keep.sum() < 2:
            msg = (
                f"only {int(keep.sum())} of {n_features} features can be adjusted (the others have missing values or "
                "are constant within a batch); ComBat's empirical-Bayes priors pool >= 2 features. "
                "Impute or filter features before ComBat."
            )
            raise ValueError(msg)
        dat = data[:, keep]

        # Standardise (B.hat, grand.mean, var.pooled) as sva, without covariates.
        batch_means = (onehot.astype(np.float64) @ dat) / counts[:, None]
        if ref is None:
            grand_mean = (counts / n_samples) @ batch_means
            resid = dat - batch_means[codes]
            var_pooled = (resid**2).mean(axis=0)
        else:
            grand_mean = batch_means[ref]
            resid = dat[onehot[ref]] - batch_means[ref]
            var_pooled = (resid**2).mean(axis=0)
        sd = np.sqrt(var_pooled)
        s_data = (dat - grand_mean) / sd

        # Batch effects on the standardised scale: least squares on the batch design.
        gamma_hat = (onehot.astype(np.float64) @ s_data) / counts[:, None]
        if ref is not None:  # design with the reference column as intercept
            others = np.arange(n_batch) != ref
            gamma_hat[others] -= gamma_hat[ref]
        n_kept = dat.shape[1]
        if self.mean_only:
            delta_hat = np.ones((n_batch, n_kept))
        else:
            delta_hat = np.vstack([s_data[onehot[i]].var(axis=0, ddof=1) for i in range(n_batch)])
        gamma_bar = gamma_hat.mean(axis=1)
        t2 = gamma_hat.var(axis=1, ddof=1)
        if not self.mean_only:
            a_prior = _aprior(delta_hat)
            b_prior = _bprior(delta_hat)

        gamma_star = np.zeros((n_batch, n_kept))
        delta_star = np.ones((n_batch, n_kept))
        n_iter = np.zeros(n_batch, dtype=np.int64)
        for i in range(n_batch):
            if i == ref:  # overwritten with 0 / 1 by sva; no need to solve
                continue
            if self.parametric:
                if self.mean_only:
                    gamma_star[i] = _postmean(gamma_hat[i], gamma_bar[i], 1, 1, t2[i])
                else:
                    gamma_star[i], delta_star[i], n_iter[i] = _it_sol(
                        s_data[onehot[i]],
                        gamma_hat[i],
                        delta_hat[i],
                        g_bar=gamma_bar[i],
                        t2=t2[i],
                        a=a_prior[i],
                        b=b_prior[i],
                    )
            else:
                gamma_star[i], delta_star[i] = _int_eprior(
                    s_data[onehot[i]], gamma_hat[i], delta_hat[i]
                )
        if self.mean_only:
            delta_star[:] = 1.0

        self.batch_levels_ = np.asarray(levels.tolist(), dtype=object)
        self.batch_counts_ = counts.astype(np.int64)
        self.grand_mean_ = np.zeros(n_features)
        self.grand_mean_[keep] = grand_mean
        self.pooled_sd_ = np.ones(n_features)
        self.pooled_sd_[keep] = sd
        self.gamma_star_ = np.zeros((n_batch, n_features))
        self.gamma_star_[:, keep] = gamma_star
        self.delta_star_ = np.ones((n_batch, n_features))
        self.delta_star_[:, keep] = delta_star
        self.unadjusted_ = unadjusted
        self.n_iter_ = n_iter
        return self

    # ------------------------------------------------------------------ transform
    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Remove the frozen batch effect of each sample's own batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples x features on the scale used in ``fit``; NaN stays NaN.
        batch : array-like of shape (n_samples,)
            Batch label of every sample (str or int, compared as strings).

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64
            Batch-adjusted data. Samples of the reference batch, samples handled as "reference"
            (see ``unseen_batch``) and unadjusted features are returned unchanged.
        """
        check_is_fitted(self, "gamma_star_")
        self._check_params()
        data = self._check_input(X, reset=False)
        n_samples = data.shape[0]
        labels = _batch_labels(batch, n_samples, where="transform")
        levels = np.asarray(self.batch_levels_, dtype=object).astype(str)
        known = np.isin(labels.astype(str), levels) & ~np.equal(labels, None)
        index = np.searchsorted(levels, labels.astype(str), sorter=np.argsort(levels))
        index = np.argsort(levels)[np.clip(index, 0, levels.size - 1)]
        passthrough = ~known
        if passthrough.any():
            unseen = np.unique(labels[passthrough].astype(str)).tolist()
            if self.unseen_batch == "error":
                msg = (
                    f"batch label(s) {unseen} were not seen in fit (seen: {levels.tolist()}); ComBat cannot remove a batch "
                    "effect it has not estimated. Refit with development samples from these batches, relabel them to a seen "
                    'batch, or use ComBat(unseen_batch="reference") to leave such samples unadjusted.'
                )
                raise ValueError(msg)
            how = (
                f"as the reference batch {self._reference_label()!r} (unadjusted)"
                if self.reference_batch is not None
                else "without batch shift (gamma 0, delta 1: unadjusted)"
            )
            logger.warning(
                "ComBat: %d sample(s) with batch label(s) %s not seen in fit (seen: %s) are treated %s.",
                int(passthrough.sum()),
                unseen,
                levels.tolist(),
                how,
            )
        reference = self._reference_label()
        if reference is not None:
            passthrough |= known & (labels.astype(str) == reference)

        mean = self.grand_mean_
        sd = self.pooled_sd_
        gamma = self.gamma_star_[index]
        delta = self.delta_star_[index]
        adjusted = ((data - mean) / sd - gamma) / np.sqrt(delta) * sd + mean
        keep_input = passthrough[:, None] | np.asarray(self.unadjusted_, dtype=bool)[None, :]
        return np.where(keep_input, data, adjusted)

    def fit_transform(
        self, X: ArrayLike, y: Any = None, *, batch: ArrayLike | None = None
    ) -> NDArray[np.float64]:
        """Fit on ``X`` and return it batch-adjusted (as ``sva::ComBat`` returns its input).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        batch : array-like of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64
        """
        return self.fit(X, y, batch=batch).transform(X, batch=batch)
