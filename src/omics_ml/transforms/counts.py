"""RNA-seq count normalisation: edgeR TMM, upper-quartile and filterByExpr, DESeq2 median of ratios.

Plain numpy functions that reproduce the R implementations, and two frozen steps built on them.

Functions (counts are ``(n_samples, n_genes)`` arrays of raw counts, samples in rows):

- :func:`tmm_norm_factors`: edgeR ``calcNormFactors(method="TMM")`` (Robinson & Oshlack 2010).
- :func:`upper_quartile_norm_factors`: edgeR ``calcNormFactors(method="upperquartile")``
  (Bullard et al. 2010).
- :func:`filter_by_expr`: edgeR ``filterByExpr`` (Chen, Lun & Smyth 2016).
- :func:`log_cpm`: edgeR ``cpm(log=TRUE, prior.count=2)``.
- :func:`median_of_ratios_size_factors`: DESeq2 ``estimateSizeFactors`` with ``type="ratio"``
  or ``"poscounts"`` (Anders & Huber 2010; Love, Huber & Anders 2014).

Every function that learns from several samples also returns what it learned (the TMM
reference sample's counts, DESeq2's log geometric means, the geometric-mean normalisers), and
accepts it back: a new sample then gets the factor it would have had in the fitting data,
computed from that sample alone.

The functions work on chunks of rows and accept integer, float32 or float64 input without
converting the whole matrix to float64; each chunk is converted on its own. They check that
counts are non-negative and not NaN; the steps (:class:`FilterByExpr`, :class:`CountNormaliser`)
also check that they are integers.

References
----------
Robinson MD, Oshlack A (2010). A scaling normalization method for differential expression
analysis of RNA-seq data. Genome Biology 11:R25.

Bullard JH, Purdom E, Hansen KD, Dudoit S (2010). Evaluation of statistical methods for
normalization and differential expression in mRNA-Seq experiments. BMC Bioinformatics 11:94.

Anders S, Huber W (2010). Differential expression analysis for sequence count data.
Genome Biology 11:R106.

Love MI, Huber W, Anders S (2014). Moderated estimation of fold change and dispersion for
RNA-seq data with DESeq2. Genome Biology 15:550.

Chen Y, Lun ATL, Smyth GK (2016). From reads to genes to pathways: differential expression
analysis of RNA-Seq experiments using Rsubread and the edgeR quasi-likelihood pipeline.
F1000Research 5:1438.

Law CW, Chen Y, Shi W, Smyth GK (2014). voom: precision weights unlock linear model analysis
tools for RNA-seq read counts. Genome Biology 15:R29.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from omics_ml.transforms.base import FrozenTransform, register_step

__all__ = [
    "CountNormaliser",
    "FilterByExpr",
    "SizeFactorReference",
    "TmmReference",
    "UpperQuartileReference",
    "check_counts",
    "choose_tmm_reference",
    "filter_by_expr",
    "log_cpm",
    "median_of_ratios_size_factors",
    "tmm_norm_factors",
    "upper_quartile_norm_factors",
]

#: Values per chunk when ``chunk_size`` is None: 2**19 float64 values = 4 MiB per temporary.
_CHUNK_VALUES = 1 << 19
#: Sample columns that bracket an order statistic in :func:`_select_order_stat`.
_SAMPLE = 256
#: Mask columns summed as 255 uint64 words at once in :class:`_RowCounter`.
_LANE_BLOCK = 8 * 255
#: edgeR's tolerance in filterByExpr comparisons.
_FILTER_TOL = 1e-14

LIBRARY_SIZES = ("tmm", "median_of_ratios", "upper_quartile", "none")
ZEROS = ("ratio", "poscounts")
TRANSFORMS = ("log_cpm", "vst", "log2_normalised")


# --------------------------------------------------------------------------- helpers


def _as_counts_array(counts: ArrayLike) -> NDArray[Any]:
    """``counts`` as a 2-D numeric ndarray, without copying or converting an ndarray."""
    array = counts if isinstance(counts, np.ndarray) else np.asarray(counts)
    if array.dtype.kind not in "biuf":
        array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        msg = f"counts must be a 2-D array (samples x genes), got shape {array.shape}."
        raise ValueError(msg)
    return array


def _chunks(n_rows: int, n_cols: int, chunk_size: int | None) -> Iterator[slice]:
    """Row slices of at most ``chunk_size`` rows (default: about 2**19 values per chunk)."""
    if chunk_size is None:
        rows = max(1, _CHUNK_VALUES // max(n_cols, 1))
    else:
        if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
            msg = f"chunk_size must be a positive integer or None, got {chunk_size!r}."
            raise ValueError(msg)
        rows = int(chunk_size)
    for start in range(0, n_rows, rows):
        yield slice(start, min(start + rows, n_rows))


def _blocks(
    counts: NDArray[Any], cols: NDArray[np.intp] | None = None, chunk_size: int | None = None
) -> Iterator[tuple[slice, NDArray[np.float64]]]:
    """Chunks of rows (and the ``cols`` columns) of ``counts`` as C-contiguous float64 blocks.

    One buffer is reused for every chunk (allocating a fresh one per chunk costs more than the
    arithmetic), so a block is valid only until the next one is produced; it may be
    modified in place.
    """
    n_rows, n_all = counts.shape
    if cols is not None and cols.size == n_all:
        cols = None  # every column, in order (callers pass sorted unique indices)
    n_cols = n_all if cols is None else cols.size
    out64: NDArray[np.float64] | None = None
    raw: NDArray[Any] | None = None
    for rows in _chunks(n_rows, n_cols, chunk_size):
        size = rows.stop - rows.start
        if out64 is None:
            out64 = np.empty((size, n_cols))
            if cols is not None and counts.dtype != np.float64:
                raw = np.empty((size, n_cols), dtype=counts.dtype)
        block = out64[:size]
        if cols is None:
            np.copyto(block, counts[rows], casting="unsafe")
        elif raw is None:
            np.take(counts[rows], cols, axis=1, out=block, mode="clip")
        else:
            np.take(counts[rows], cols, axis=1, out=raw[:size], mode="clip")
            np.copyto(block, raw[:size], casting="unsafe")
        yield rows, block


def _row_sums(counts: NDArray[Any], chunk_size: int | None = None) -> NDArray[np.float64]:
    """Library sizes (row sums) in float64; exact for integer counts."""
    if counts.dtype.kind in "biu":
        return counts.sum(axis=1, dtype=np.int64).astype(np.float64)
    out = np.empty(counts.shape[0])
    for rows, block in _blocks(counts, None, chunk_size):
        out[rows] = block.sum(axis=1)
    return out


def _column_stats(
    counts: NDArray[Any], chunk_size: int | None = None, *, need_max: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Per-gene minimum (and maximum), raising on NaN or negative counts."""
    col_min = counts.min(axis=0).astype(np.float64)
    col_max = counts.max(axis=0).astype(np.float64) if need_max else None
    if counts.dtype.kind == "f" and np.isnan(col_min).any():
        _raise_bad_count(counts, chunk_size)
    if (col_min < 0).any():
        _raise_bad_count(counts, chunk_size)
    return col_min, col_max


def _raise_bad_count(
    counts: NDArray[Any], chunk_size: int | None, *, integers: bool = False
) -> None:
    """Raise a ValueError naming the first NaN, negative (or non-integer) count, if any."""
    for rows in _chunks(*counts.shape, chunk_size):
        block = counts[rows]
        if block.dtype.kind == "f":
            bad = np.isnan(block)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                msg = f"counts hold a missing value (NaN) at sample {rows.start + r}, feature {c}: RNA-seq count normalisation needs complete raw counts; drop the feature or the sample, or impute the count first."
                raise ValueError(msg)
        bad = block < 0
        if integers and block.dtype.kind == "f":
            bad |= block != np.floor(block)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            value = block[r, c]
            msg = f"counts must be non-negative integers; found {value:g} at sample {rows.start + r}, feature {c}: pass raw counts, not normalised or log-transformed values."
            raise ValueError(msg)


def check_counts(counts: ArrayLike, *, chunk_size: int | None = None) -> None:
    """Check that ``counts`` are raw counts: finite, non-negative integers, no sample empty.

    Parameters
    ----------
    counts : array-like of shape (n_samples, n_genes)
        Raw read counts, samples in rows.
    chunk_size : int or None
        Rows checked at a time (None: about 2**19 values per chunk).

    Raises
    ------
    ValueError
        Naming the first NaN, infinite, negative or non-integer count (sample and feature
        index), or the first sample whose library size (row sum) is not positive.
    """
    array = _as_counts_array(counts)
    if array.dtype.kind == "f" and np.isinf(array).any():
        r, c = np.argwhere(np.isinf(array))[0]
        msg = f"counts hold an infinite value at sample {r}, feature {c}: pass raw counts."
        raise ValueError(msg)
    _raise_bad_count(array, chunk_size, integers=True)
    lib = _row_sums(array, chunk_size)
    empty = np.flatnonzero(~(lib > 0))
    if empty.size:
        msg = f"sample {empty[0]} has library size 0 (no counts in any feature){f' and so do {empty.size - 1} more samples' if empty.size > 1 else ''}: count normalisation cannot scale an empty library; drop that sample."
        raise ValueError(msg)


class _RowCounter:
    """Per-row counts of entries below per-row thresholds, with one reusable mask buffer.

    The boolean mask is padded to a multiple of 8 * 255 columns and summed as uint64 words,
    255 words at a time, so that each byte lane holds at most 255 and no carry occurs: about
    five times faster than ``np.count_nonzero(mask, axis=1)``.
    """

    def __init__(self, values: NDArray[np.float64]) -> None:
        n_rows, n_cols = values.shape
        width = -(-n_cols // _LANE_BLOCK) * _LANE_BLOCK
        self.values = values
        self.buffer = np.zeros((n_rows, width), dtype=bool)
        self.mask = self.buffer[:, :n_cols]

    def count_mask(self) -> NDArray[np.intp]:
        n_rows = self.buffer.shape[0]
        words = self.buffer.view(np.uint64).reshape(n_rows, -1, 255)
        lanes = words.sum(axis=2, dtype=np.uint64)
        return lanes.view(np.uint8).reshape(n_rows, -1).sum(axis=1, dtype=np.intp)

    def count_below(self, thresholds: NDArray[np.float64]) -> NDArray[np.intp]:
        np.less(self.values, thresholds[:, None], out=self.mask)
        return self.count_mask()


@dataclass
class _Selection:
    """Result of :func:`_select_order_stat` for one chunk of rows.

    ``band`` holds, sorted per row and padded with +inf, every entry in
    ``[band_low, band_high)``; ``below`` entries of the row are smaller than ``band_low`` and
    the smallest entry not smaller than ``band_high`` is ``band_high`` itself (an entry of
    the row, or +inf when there is none). ``value = band[row, position]`` is the order
    statistic; ``n_band`` counts the real (unpadded) entries of each band row.
    """

    value: NDArray[np.float64]
    position: NDArray[np.intp]
    below: NDArray[np.intp]
    band: NDArray[np.float64]
    n_band: NDArray[np.intp]
    band_low: NDArray[np.float64]
    band_high: NDArray[np.float64]


def _narrow(
    values: NDArray[np.float64],
    sample: NDArray[np.float64],
    k: NDArray[np.intp],
    *,
    lo: NDArray[np.intp],
    hi: NDArray[np.intp],
    below: NDArray[np.intp],
    lo_known: NDArray[np.bool_],
    hi_known: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Bisect each row's bracket of sample indices down to two adjacent ones.

    ``sample[:, i + 1]`` is the value of sample index ``i`` (-1: -inf, n_sample: +inf).
    Wanted: ``count(< lo value) = below <= k < count(< hi value)``. A guessed bound that no
    bisection step moved is checked afterwards, on its rows only (the guesses are almost
    always right, which saves two full counting passes); rows whose guess was wrong are
    bisected again from the whole range on that side.
    """
    n_rows = values.shape[0]
    n_sample = sample.shape[1] - 2
    row = np.arange(n_rows)
    lo_known = lo_known.copy()
    hi_known = (hi >= n_sample) if hi_known is None else hi_known.copy()
    counter = _RowCounter(values)
    while True:
        active = (hi - lo) > 1
        if not active.any():
            break
        mid = (lo + hi) // 2
        count = counter.count_below(sample[row, mid + 1])
        up = active & (count <= k)
        down = active & ~up
        lo[up] = mid[up]
        below[up] = count[up]
        lo_known |= up
        hi[down] = mid[down]
        hi_known |= down
    del counter
    check = np.flatnonzero(~lo_known | ~hi_known)
    if check.size == 0:
        return lo, hi, below
    part = values[check]
    counter = _RowCounter(part)
    sub = np.arange(check.size)
    at_lo = counter.count_below(sample[check, lo[check] + 1])
    at_hi = counter.count_below(sample[check, hi[check] + 1])
    del counter
    unchecked_lo, unchecked_hi = ~lo_known[check], ~hi_known[check]
    below[check[unchecked_lo]] = at_lo[unchecked_lo]
    too_high = unchecked_lo & (at_lo > k[check])  # the k-th entry is below the lo value
    too_low = unchecked_hi & (at_hi <= k[check])  # the k-th entry is at or above the hi value
    redo = too_high | too_low
    if redo.any():
        r = sub[redo]
        new_lo = np.where(too_high[r], -1, hi[check[r]])
        new_hi = np.where(too_high[r], lo[check[r]], n_sample)
        new_below = np.where(too_high[r], 0, at_hi[r])
        lo_r, hi_r, below_r = _narrow(
            part[r],
            sample[check[r]],
            k[check[r]],
            lo=new_lo,
            hi=new_hi,
            below=new_below,
            lo_known=np.ones(r.size, dtype=bool),
            hi_known=np.ones(r.size, dtype=bool),
        )
        lo[check[r]], hi[check[r]], below[check[r]] = lo_r, hi_r, below_r
    return lo, hi, below


def _select_order_stat(values: NDArray[np.float64], k: NDArray[np.intp]) -> _Selection:
    """The ``k[i]``-th smallest entry (0-based) of each row of ``values``, vectorised.

    ``values`` is C-contiguous float64 without NaN (+-inf allowed); ``0 <= k[i] < n_cols``.
    Sort-free selection: a sorted, evenly spaced sample of 256 columns of each row gives a
    bracket of sample values around the target (expected position +- 3.5 standard
    deviations, checked by counting, widened to the whole row if wrong); per-row bisection
    over the sample values (each step one vectorised comparison and count) narrows it to
    two adjacent sample values; the few entries between them are gathered and sorted. Each
    row's result is exact and depends only on that row. Rows of up to 512 entries are
    sorted. When the bracket is open at the top, entries equal to +inf are left out of
    ``band`` (``band_high`` is then +inf).
    """
    n_rows, n_cols = values.shape
    row = np.arange(n_rows)
    k = np.asarray(k, dtype=np.intp)
    if n_cols <= 2 * _SAMPLE:
        band = np.sort(values, axis=1)
        return _Selection(
            value=band[row, k],
            position=k,
            below=np.zeros(n_rows, dtype=np.intp),
            band=band,
            n_band=np.full(n_rows, n_cols, dtype=np.intp),
            band_low=np.full(n_rows, -np.inf),
            band_high=np.full(n_rows, np.inf),
        )
    n_sample = _SAMPLE
    columns = ((2 * np.arange(n_sample) + 1) * n_cols) // (2 * n_sample)
    sample = np.empty((n_rows, n_sample + 2))
    sample[:, 0] = -np.inf  # sample index i is column i + 1; index -1 stands for -inf
    sample[:, 1 : n_sample + 1] = np.sort(values[:, columns], axis=1)
    sample[:, n_sample + 1] = np.inf  # index n_sample: +inf, above every entry

    # bracket: sample indices lo < hi with count(< at(lo)) <= k < count(< at(hi)), guessed
    # as the expected position +- 3.5 standard deviations and checked in _narrow
    expected = (k + 0.5) * (n_sample / n_cols) - 0.5
    margin = int(np.ceil(3.5 * np.sqrt(n_sample * 0.25))) + 2
    lo = np.clip(np.floor(expected).astype(np.intp) - margin, -1, n_sample - 1)
    hi = np.clip(np.ceil(expected).astype(np.intp) + margin + 1, 0, n_sample)
    hi = np.maximum(hi, lo + 1)
    lo, hi, below = _narrow(
        values, sample, k, lo=lo, hi=hi, below=np.zeros(n_rows, dtype=np.intp), lo_known=lo < 0
    )
    counter = _RowCounter(values)

    def at(index: NDArray[np.intp]) -> NDArray[np.float64]:
        return sample[row, index + 1]

    band_low, band_high = at(lo), at(hi)
    mask = counter.mask
    np.greater_equal(values, band_low[:, None], out=mask)
    mask &= values < band_high[:, None]
    flat = np.flatnonzero(counter.buffer)
    rows, cols = np.divmod(flat, counter.buffer.shape[1])
    n_band = np.bincount(rows, minlength=n_rows)
    band = np.full((n_rows, max(int(n_band.max(initial=0)), 1)), np.inf)
    band[rows, np.arange(flat.size) - (np.cumsum(n_band) - n_band)[rows]] = values[rows, cols]
    band.sort(axis=1)
    position = k - below
    # position >= n_band only when the k-th entry is +inf (left out of an open-top band)
    value = np.where(position < n_band, band[row, np.minimum(position, band.shape[1] - 1)], np.inf)
    return _Selection(
        value=value,
        position=position,
        below=below,
        band=band,
        n_band=n_band,
        band_low=band_low,
        band_high=band_high,
    )


def _order_stat_pair(
    values: NDArray[np.float64], k: NDArray[np.intp]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The ``k``-th and ``(k+1)``-th smallest entries of each row (the second is +inf past the end)."""
    sel = _select_order_stat(values, k)
    following = sel.position + 1
    second = np.where(
        following < sel.n_band,
        sel.band[np.arange(values.shape[0]), np.minimum(following, sel.band.shape[1] - 1)],
        sel.band_high,
    )
    return sel.value, second


def _row_median(values: NDArray[np.float64], n_skip: NDArray[np.intp]) -> NDArray[np.float64]:
    """Median of each row without its ``n_skip`` smallest entries, as R's ``median``.

    An even count averages the two middle entries. NaN where no entry is left.
    """
    n_cols = values.shape[1]
    n_left = n_cols - n_skip
    k = np.minimum(n_skip + np.maximum(n_left - 1, 0) // 2, n_cols - 1)
    first, second = _order_stat_pair(values, k)
    with np.errstate(invalid="ignore"):  # -inf + inf in rows with nothing left
        out = np.where(n_left % 2 == 1, first, (first + second) / 2.0)
    return np.where(n_left > 0, out, np.nan)


def _trim_bounds(
    values: NDArray[np.float64], n_valid: NDArray[np.intp], trim: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Value bounds of the entries edgeR's TMM keeps by rank.

    ``values`` holds, per row, ``n_valid`` valid values and +inf elsewhere. An entry is kept
    when its ``rank(ties.method = "average")`` among the valid values lies in ``[lo, hi]``
    with ``lo = floor(n * trim) + 1`` and ``hi = n + 1 - lo``. Ranks grow with the value, so
    the kept entries are exactly those in ``[low, high]``, returned per row (low = +inf when
    none is kept). Only two order statistics per row are needed: the tie group at rank
    ``lo`` is kept if its average rank is at least ``lo``, else the next larger value starts
    the kept range (and symmetrically at ``hi``).
    """
    k = np.floor(n_valid * trim).astype(np.intp)  # 0-based position of rank lo
    lo_rank = k + 1.0
    hi_rank = (n_valid - k).astype(np.float64)
    has = n_valid > 0

    sel = _select_order_stat(values, np.where(has, k, 0))
    v = sel.value[:, None]
    start = sel.below + np.count_nonzero(sel.band < v, axis=1)  # entries below v's tie group
    end = sel.below + np.count_nonzero(sel.band <= v, axis=1)
    larger = np.where(sel.band > v, sel.band, np.inf).min(axis=1)  # +inf padding: none there
    next_value = np.where(np.isfinite(larger), larger, sel.band_high)
    low = np.where((start + 1 + end) / 2.0 >= lo_rank, sel.value, next_value)

    sel = _select_order_stat(values, np.where(has, n_valid - 1 - k, 0))
    w = sel.value[:, None]
    start = sel.below + np.count_nonzero(sel.band < w, axis=1)
    end = sel.below + np.count_nonzero(sel.band <= w, axis=1)
    high = sel.value.copy()
    step_down = (start + 1 + end) / 2.0 > hi_rank
    if step_down.any():
        smaller = np.where(sel.band < w, sel.band, -np.inf).max(axis=1)
        need = np.flatnonzero(step_down & ~(smaller > -np.inf) & (sel.below > 0))
        if need.size:  # the next smaller value lies below the band: one masked max
            part = values[need]
            smaller[need] = np.where(part < sel.band_low[need, None], part, -np.inf).max(axis=1)
        high = np.where(step_down, smaller, high)
    return np.where(has, low, np.inf), high


def _quantile_type7(values: NDArray[np.float64], p: float) -> NDArray[np.float64]:
    """R's ``quantile(x, p)`` (type 7) of each row, with R's interpolation formula."""
    n_rows, n_cols = values.shape
    index = 1.0 + (n_cols - 1) * p
    lo = int(np.floor(index))
    qs, upper = _order_stat_pair(values, np.full(n_rows, lo - 1, dtype=np.intp))
    h = index - lo
    if h > 0:
        qs = np.where(upper != qs, (1.0 - h) * qs + h * upper, qs)
    return qs


def _lib_size(
    counts: NDArray[Any], lib_size: ArrayLike | None, chunk_size: int | None
) -> NDArray[np.float64]:
    if lib_size is None:
        return _row_sums(counts, chunk_size)
    lib = np.asarray(lib_size, dtype=np.float64).reshape(-1)
    if lib.shape[0] != counts.shape[0]:
        msg = f"lib_size has {lib.shape[0]} values but counts have {counts.shape[0]} samples: pass one library size per sample."
        raise ValueError(msg)
    if not np.isfinite(lib).all() or (lib < 0).any():
        msg = "lib_size must hold finite, non-negative library sizes, one per sample."
        raise ValueError(msg)
    return lib


def _check_trim(name: str, value: float) -> float:
    if not (np.isfinite(value) and 0 <= value < 0.5):
        msg = f"{name} must be in [0, 0.5), got {value!r} (edgeR's default is {0.3 if name == 'logratio_trim' else 0.05})."
        raise ValueError(msg)
    return float(value)


# --------------------------------------------------------------------------- TMM


@dataclass(frozen=True)
class TmmReference:
    """What :func:`tmm_norm_factors` freezes to compute the factor of a new sample.

    Attributes
    ----------
    index : int
        Row of the reference sample in the fitting data.
    counts : ndarray of shape (n_genes,)
        The reference sample's counts (the reference profile).
    lib_size : float
        The reference sample's library size.
    log_scale : float
        Mean log of the fitting samples' raw TMM factors; factors are divided by
        ``exp(log_scale)`` so that the fitting samples' factors have geometric mean 1.
    """

    index: int
    counts: NDArray[np.float64]
    lib_size: float
    log_scale: float


def choose_tmm_reference(
    counts: ArrayLike, *, lib_size: ArrayLike | None = None, chunk_size: int | None = None
) -> int:
    """edgeR's automatic TMM reference sample (0-based row index).

    Parameters
    ----------
    counts : array-like of shape (n_samples, n_genes)
        Raw counts.
    lib_size : array-like of shape (n_samples,), optional
        Library sizes (default: row sums).
    chunk_size : int or None
        Rows processed at a time.

    Returns
    -------
    int
        The sample whose upper-quartile factor (75% quantile of its counts over the genes
        that are not zero in every sample, divided by its library size) is closest to the
        mean of those factors; the first one on ties. If the median of those factors is
        below 1e-20 (most samples have a zero upper quartile), the sample with the largest
        ``sum(sqrt(counts))`` instead, as edgeR (>= 3.26) does.

    Notes
    -----
    edgeR ``calcNormFactors``: ``f75 <- .calcFactorQuantile(x, lib.size, p = 0.75)``;
    ``refColumn <- which.min(abs(f75 - mean(f75)))`` (Robinson & Oshlack 2010).
    """
    array = _as_counts_array(counts)
    _, col_max = _column_stats(array, chunk_size, need_max=True)
    lib = _lib_size(array, lib_size, chunk_size)
    genes = np.flatnonzero(col_max > 0)
    if genes.size == 0:
        return 0
    f75 = np.empty(array.shape[0])
    for rows, block in _blocks(array, genes, chunk_size):
        f75[rows] = _quantile_type7(block, 0.75)
    with np.errstate(divide="ignore", invalid="ignore"):
        f75 = f75 / lib
    if np.median(f75) < 1e-20:
        sqrt_sums = np.empty(array.shape[0])
        for rows, block in _blocks(array, genes, chunk_size):
            sqrt_sums[rows] = np.sqrt(block, out=block).sum(axis=1)
        return int(np.argmax(sqrt_sums))
    return int(np.argmin(np.abs(f75 - f75.mean())))


def _tmm_raw_factors(
    counts: NDArray[Any],
    lib: NDArray[np.float64],
    ref_counts: NDArray[np.float64],
    ref_lib: float,
    *,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
    chunk_size: int | None,
) -> NDArray[np.float64]:
    """edgeR ``.calcFactorTMM`` of every row against one reference profile, by chunks."""
    out = np.empty(counts.shape[0])
    ref_genes = np.flatnonzero(ref_counts > 0)  # other genes have infinite log ratios
    ref = ref_counts[ref_genes]
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_prop = ref / ref_lib
        log_ref = np.log2(ref_prop)
        ref_var = (ref_lib - ref) / ref_lib / ref
    shape: tuple[int, int] | None = None
    for rows, obs in _blocks(counts, ref_genes, chunk_size):
        if shape != obs.shape:  # work buffers, reused for every chunk of this size
            shape = obs.shape
            prop, log_r, abs_e, var, work = (np.empty(shape) for _ in range(5))
            fin, mask = np.empty(shape, dtype=bool), np.empty(shape, dtype=bool)
        n_o = lib[rows][:, None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            np.divide(obs, n_o, out=prop)
            # M = log2((obs/nO)/(ref/nR)) exactly as edgeR: log2(obs/nO) - log2(ref/nR)
            # would break ties of equal ratios in the last bit and change the trimming.
            np.divide(prop, ref_prop, out=log_r)
            np.log2(log_r, out=log_r)
            np.log2(prop, out=abs_e)
            abs_e += log_ref
            abs_e *= 0.5  # A = (log2(obs/nO) + log2(ref/nR))/2
            np.reciprocal(obs, out=var)
            var += ref_var - 1.0 / n_o  # v = (nO-obs)/nO/obs + (nR-ref)/nR/ref
        # M and A are finite exactly where obs > 0 (the reference genes all have ref > 0).
        # A finite A is a mean of two log2 proportions of doubles, so A > -1075 always:
        # edgeR's default Acutoff (-1e10) then excludes nothing and needs no pass.
        np.greater(obs, 0.0, out=fin)
        if a_cutoff >= -1075.0:
            fin &= np.greater(abs_e, a_cutoff, out=mask)
        n_valid = np.count_nonzero(fin, axis=1)
        np.logical_not(fin, out=mask)  # mask: not usable
        np.abs(log_r, out=work)
        np.copyto(work, -np.inf, where=mask)
        max_abs = work.max(axis=1, initial=-np.inf)

        np.copyto(work, log_r)
        np.copyto(work, np.inf, where=mask)
        log_r_lo, log_r_hi = _trim_bounds(work, n_valid, logratio_trim)
        np.copyto(work, abs_e)
        np.copyto(work, np.inf, where=mask)
        abs_e_lo, abs_e_hi = _trim_bounds(work, n_valid, sum_trim)
        keep = fin  # fin is not needed any more
        keep &= np.greater_equal(log_r, log_r_lo[:, None], out=mask)
        keep &= np.less_equal(log_r, log_r_hi[:, None], out=mask)
        keep &= np.greater_equal(abs_e, abs_e_lo[:, None], out=mask)
        keep &= np.less_equal(abs_e, abs_e_hi[:, None], out=mask)
        np.logical_not(keep, out=mask)  # mask: not kept
        with np.errstate(divide="ignore", invalid="ignore"):
            if do_weighting:  # sum(M/v)/sum(1/v) over kept genes, NaN terms dropped (na.rm)
                # Kept genes have obs > 0 and ref > 0, so finite M and v > 0: zeroing the
                # others in M and 1/v is edgeR's na.rm sum without any NaN test.
                np.reciprocal(var, out=prop)
                np.copyto(prop, 0.0, where=mask)
                np.copyto(log_r, 0.0, where=mask)
                np.multiply(log_r, prop, out=work)
                f = work.sum(axis=1) / prop.sum(axis=1)
            else:
                np.copyto(log_r, 0.0, where=mask)
                f = log_r.sum(axis=1) / np.count_nonzero(keep, axis=1)
        f = np.where(np.isnan(f), 0.0, f)  # no gene left: factor 1
        out[rows] = np.where(max_abs < 1e-6, 1.0, np.exp2(f))
    return out


def tmm_norm_factors(
    counts: ArrayLike,
    *,
    reference: int | TmmReference | None = None,
    lib_size: ArrayLike | None = None,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
    a_cutoff: float = -1e10,
    chunk_size: int | None = None,
) -> tuple[NDArray[np.float64], TmmReference]:
    """TMM normalisation factors, as edgeR ``calcNormFactors(method="TMM")``.

    Parameters
    ----------
    counts : array-like of shape (n_samples, n_genes)
        Raw counts, samples in rows (integer, float32 or float64; not converted as a whole).
    reference : None, int or TmmReference
        None: edgeR's automatic reference sample (:func:`choose_tmm_reference`). int: that
        row is the reference (edgeR's ``refColumn``, but 0-based). :class:`TmmReference`: a
        reference frozen by an earlier call; every row's factor is computed against its
        profile and divided by its ``exp(log_scale)``, so a row gets the same factor alone
        as in any batch.
    lib_size : array-like of shape (n_samples,), optional
        Library sizes (default: row sums).
    logratio_trim, sum_trim : float
        Fractions trimmed from each end of the M (log ratio) and A (mean log expression)
        values (edgeR's ``logratioTrim``, ``sumTrim``).
    do_weighting : bool
        Weight the trimmed mean by inverse asymptotic variances (edgeR's ``doWeighting``).
    a_cutoff : float
        Genes with A <= ``a_cutoff`` are left out (edgeR's ``Acutoff``).
    chunk_size : int or None
        Rows processed at a time (None: about 2**19 values per chunk).

    Returns
    -------
    factors : ndarray of shape (n_samples,)
        Normalisation factors; with ``reference`` None or int they have geometric mean 1,
        as in edgeR. Effective library sizes are ``lib_size * factors``.
    reference : TmmReference
        The reference profile and normaliser, to pass back for new samples.

    Notes
    -----
    Per sample, with ``obs``/``ref`` its and the reference's counts and ``nO``/``nR`` their
    library sizes (edgeR ``.calcFactorTMM``): ``M = log2((obs/nO)/(ref/nR))``,
    ``A = (log2(obs/nO) + log2(ref/nR))/2``, ``v = (nO-obs)/nO/obs + (nR-ref)/nR/ref``. Genes
    with finite M and A and ``A > a_cutoff`` are kept; of those, genes whose average rank of
    M is in ``[floor(n*logratio_trim)+1, n-floor(n*logratio_trim)]`` and whose average rank of
    A is in the same range for ``sum_trim`` enter the mean of M weighted by ``1/v``. The
    factor is ``2**mean`` (1 if every ``|M| < 1e-6`` or no gene is left). The rank trimming
    runs on whole chunks of samples: the kept entries of a row are a value interval that
    one sort of the row determines. Genes that are zero in every sample are dropped (they
    never enter the mean), then the factors are divided by their geometric mean
    (Robinson & Oshlack 2010).
    """
    array = _as_counts_array(counts)
    logratio_trim = _check_trim("logratio_trim", logratio_trim)
    sum_trim = _check_trim("sum_trim", sum_trim)
    options = {
        "logratio_trim": logratio_trim,
        "sum_trim": sum_trim,
        "do_weighting": bool(do_weighting),
        "a_cutoff": float(a_cutoff),
        "chunk_size": chunk_size,
    }
    if isinstance(reference, TmmReference):
        ref_counts = np.asarray(reference.counts, dtype=np.float64)
        if ref_counts.shape != (array.shape[1],):
            msg = f"the TMM reference profile has {ref_counts.size} genes but counts have {array.shape[1]}: pass the same genes, in the same order, as in the fit."
            raise ValueError(msg)
        _column_stats(array, chunk_size)
        lib = _lib_size(array, lib_size, chunk_size)
        raw = _tmm_raw_factors(array, lib, ref_counts, float(reference.lib_size), **options)
        return raw / np.exp(reference.log_scale), reference

    n_samples = array.shape[0]
    _, col_max = _column_stats(array, chunk_size, need_max=True)
    lib = _lib_size(array, lib_size, chunk_size)
    if reference is None:
        index = choose_tmm_reference(array, lib_size=lib, chunk_size=chunk_size)
    else:
        if (
            isinstance(reference, bool)
            or int(reference) != reference
            or not 0 <= reference < n_samples
        ):
            msg = f"reference must be None, a row index in [0, {n_samples}) or a TmmReference, got {reference!r}."
            raise ValueError(msg)
        index = int(reference)
    ref_counts = np.asarray(array[index], dtype=np.float64).copy()
    if n_samples == 1 or not (col_max > 0).any():  # edgeR: method "none"
        raw = np.ones(n_samples)
    else:
        raw = _tmm_raw_factors(array, lib, ref_counts, float(lib[index]), **options)
    log_scale = float(np.mean(np.log(raw)))
    frozen = TmmReference(
        index=index, counts=ref_counts, lib_size=float(lib[index]), log_scale=log_scale
    )
    return raw / np.exp(log_scale), frozen


# --------------------------------------------------------------------------- upper quartile


@dataclass(frozen=True)
class UpperQuartileReference:
    """What :func:`upper_quartile_norm_factors` freezes for new samples.

    Attributes
    ----------
    genes : ndarray of bool, shape (n_genes,)
        Genes not zero in every fitting sample (edgeR drops the others before the quantile).
    log_scale : float
        Mean log of the fitting samples' raw factors (their geometric-mean normaliser).
    """

    genes: NDArray[np.bool_]
    log_scale: float


def upper_quartile_norm_factors(
    counts: ArrayLike,
    *,
    lib_size: ArrayLike | None = None,
    p: float = 0.75,
    reference: UpperQuartileReference | None = None,
    chunk_size: int | None = None,
) -> tuple[NDArray[np.float64], UpperQuartileReference]:
    """Upper-quartile normalisation factors, as edgeR ``calcNormFactors(method="upperquartile")``.

    Parameters
    ----------
    counts : array-like of shape (n_samples, n_genes)
        Raw counts, samples in rows.
    lib_size : array-like of shape (n_samples,), optional
        Library sizes (default: row sums).
    p : float
        Quantile (edgeR's ``p``; 0.75 is the upper quartile).
    reference : UpperQuartileReference, optional
        Frozen genes and normaliser from an earlier call (for new samples).
    chunk_size : int or None
        Rows processed at a time.

    Returns
    -------
    factors : ndarray of shape (n_samples,)
        ``quantile(counts[i, genes], p, type = 7) / lib_size[i]``, divided by the geometric
        mean of those values over the fitting samples.
    reference : UpperQuartileReference

    Notes
    -----
    Bullard et al. (2010); edgeR ``.calcFactorQuantile``.
    """
    array = _as_counts_array(counts)
    if not 0 < p < 1:
        msg = f"p must be in (0, 1), got {p!r}."
        raise ValueError(msg)
    _, col_max = _column_stats(array, chunk_size, need_max=True)
    lib = _lib_size(array, lib_size, chunk_size)
    genes = (col_max > 0) if reference is None else np.asarray(reference.genes, dtype=bool)
    if genes.shape != (array.shape[1],):
        msg = f"the upper-quartile reference has {genes.size} genes but counts have {array.shape[1]}: pass the same genes as in the fit."
        raise ValueError(msg)
    cols = np.flatnonzero(genes)
    if cols.size == 0:
        msg = (
            "every gene is zero in every fitting sample: upper-quartile factors cannot be computed."
        )
        raise ValueError(msg)
    raw = np.empty(array.shape[0])
    for rows, block in _blocks(array, cols, chunk_size):
        raw[rows] = _quantile_type7(block, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = raw / lib
    if reference is None:
        with np.errstate(divide="ignore"):
            log_scale = float(np.mean(np.log(raw)))
        if not np.isfinite(log_scale):
            msg = f"the {p:g} quantile of some sample's counts is zero (sample {int(np.argmin(raw))}), so upper-quartile factors are 0 or undefined: use library_size='tmm' or 'median_of_ratios', or filter lowly expressed genes first."
            raise ValueError(msg)
        reference = UpperQuartileReference(genes=genes, log_scale=log_scale)
    return raw / np.exp(reference.log_scale), reference


# --------------------------------------------------------------------------- filterByExpr


def filter_by_expr(
    counts: ArrayLike,
    *,
    lib_size: ArrayLike | None = None,
    group: ArrayLike | None = None,
    min_count: float = 10,
    min_total_count: float = 15,
    large_n: float = 10,
    min_prop: float = 0.7,
    chunk_size: int | None = None,
) -> NDArray[np.bool_]:
    """Genes with enough counts to keep, as edgeR ``filterByExpr`` (no design matrix).

    Parameters
    ----------
    counts : array-like of shape (n_samples, n_genes)
        Raw counts, samples in rows.
    lib_size : array-like of shape (n_samples,), optional
        Library sizes (default: row sums).
    group : array-like of shape (n_samples,), optional
        Group labels; the minimum sample size is then the smallest group's size. Without
        it every sample is in one group.
    min_count : float
        Minimum count, in the median-sized library, for a sample to count as expressing.
    min_total_count : float
        Minimum total count of a gene over all samples.
    large_n, min_prop : float
        With more than ``large_n`` samples in the smallest group, only
        ``large_n + (n - large_n) * min_prop`` of them need to express the gene.
    chunk_size : int or None
        Rows processed at a time.

    Returns
    -------
    ndarray of bool, shape (n_genes,)
        True for genes to keep.

    Notes
    -----
    edgeR ``filterByExpr.default`` (Chen, Lun & Smyth 2016): ``CPM.Cutoff = min.count /
    median(lib.size) * 1e6``; a gene is kept if ``CPM >= CPM.Cutoff`` in at least
    ``MinSampleSize - 1e-14`` samples and its total count is at least
    ``min.total.count - 1e-14``. For a DGEList, edgeR passes
    ``lib.size * norm.factors`` as ``lib_size``.
    """
    array = _as_counts_array(counts)
    _column_stats(array, chunk_size)
    lib = _lib_size(array, lib_size, chunk_size)
    n_samples, n_genes = array.shape
    if group is None:
        min_size = float(n_samples)
    else:
        labels = np.asarray(group).reshape(-1)
        if labels.shape[0] != n_samples:
            msg = f"group has {labels.shape[0]} labels but counts have {n_samples} samples: pass one group label per sample."
            raise ValueError(msg)
        _, sizes = np.unique(labels.astype(str), return_counts=True)
        min_size = float(sizes.min())
    if min_size > large_n:
        min_size = large_n + (min_size - large_n) * min_prop
    cutoff = min_count / np.median(lib) * 1e6
    n_expressing = np.zeros(n_genes, dtype=np.int64)
    totals = np.zeros(n_genes)
    for rows, block in _blocks(array, None, chunk_size):
        with np.errstate(divide="ignore", invalid="ignore"):
            cpm = block / lib[rows][:, None] * 1e6
        n_expressing += (cpm >= cutoff).sum(axis=0)
        totals += block.sum(axis=0)
    return (n_expressing >= min_size - _FILTER_TOL) & (totals >= min_total_count - _FILTER_TOL)


# --------------------------------------------------------------------------- log-CPM


def log_cpm(
    counts: ArrayLike,
    eff_lib_size: ArrayLike,
    *,
    prior_count: float = 2.0,
    mean_lib_size: float | None = None,
) -> NDArray[np.float64]:
    """Log2 counts per million with edgeR's library-scaled prior count.

    Parameters
    ----------
    counts : array-like of shape (n_samples, n_genes)
        Raw counts, samples in rows.
    eff_lib_size : array-like of shape (n_samples,)
        Effective library sizes (e.g. ``lib_size * tmm_factors``).
    prior_count : float
        Average count added to each observation (edgeR's ``prior.count``).
    mean_lib_size : float, optional
        Mean effective library size that scales the prior. Default: the mean of
        ``eff_lib_size``, as edgeR; pass the training samples' mean to transform new samples
        alone.

    Returns
    -------
    ndarray of shape (n_samples, n_genes), float64
        ``log2((counts + a) / (eff_lib_size + 2 a) * 1e6)`` with
        ``a = prior_count * eff_lib_size / mean_lib_size`` per sample.

    Notes
    -----
    edgeR ``cpm(y, log = TRUE, prior.count = 2)`` (Law et al. 2014; Robinson & Oshlack 2010).
    """
    array = _as_counts_array(counts)
    lib = np.asarray(eff_lib_size, dtype=np.float64).reshape(-1)
    if lib.shape[0] != array.shape[0]:
        msg = f"eff_lib_size has {lib.shape[0]} values but counts have {array.shape[0]} samples."
        raise ValueError(msg)
    mean = float(lib.mean()) if mean_lib_size is None else float(mean_lib_size)
    prior = prior_count * lib / mean
    return np.log2((array + prior[:, None]) / (lib + 2.0 * prior)[:, None] * 1e6)


# --------------------------------------------------------------------------- median of ratios


@dataclass(frozen=True)
class SizeFactorReference:
    """What :func:`median_of_ratios_size_factors` freezes for new samples.

    Attributes
    ----------
    log_geo_means : ndarray of shape (n_genes,)
        DESeq2's log geometric means; NaN for genes that are not used (DESeq2's -Inf).
    type : {"ratio", "poscounts"}
    log_scale : float
        Log of the divisor applied to the raw size factors: 0 for ``"ratio"``; for
        ``"poscounts"`` the mean log raw size factor of the fitting samples.
    """

    log_geo_means: NDArray[np.float64]
    type: str
    log_scale: float


def median_of_ratios_size_factors(
    counts: ArrayLike,
    *,
    log_geo_means: ArrayLike | None = None,
    type: Literal["ratio", "poscounts"] = "ratio",
    reference: SizeFactorReference | None = None,
    chunk_size: int | None = None,
) -> tuple[NDArray[np.float64], SizeFactorReference]:
    """DESeq2 median-of-ratios size factors (``estimateSizeFactors``).

    Parameters
    ----------
    counts : array-like of shape (n_samples, n_genes)
        Raw counts, samples in rows (integer, float32 or float64; not converted as a whole).
    log_geo_means : array-like of shape (n_genes,), optional
        DESeq2's ``log(geoMeans)``: with it, genes with a finite value and a positive count
        enter each sample's median, and the size factors are divided by their own geometric
        mean (DESeq2's behaviour for user-given ``geoMeans``).
    type : {"ratio", "poscounts"}
        ``"ratio"``: log geometric means over all samples; genes with a zero anywhere are
        left out. ``"poscounts"``: ``sum(log(y[y > 0])) / n_samples`` per gene (0 counts
        left out of the sum but counted in n), genes zero everywhere are left out, each
        sample's median uses its genes with positive counts, and the size factors are
        divided by their geometric mean.
    reference : SizeFactorReference, optional
        Frozen log geometric means and normaliser from an earlier call: each row's factor is
        computed from that row alone (genes with a frozen finite log geometric mean and a
        positive count) and divided by the frozen ``exp(log_scale)``.
    chunk_size : int or None
        Rows processed at a time (None: about 2**19 values per chunk).

    Returns
    -------
    size_factors : ndarray of shape (n_samples,)
        ``exp(median_g(log(y_g) - log_geo_mean_g))`` per sample, normalised as above.
    reference : SizeFactorReference
        The log geometric means and normaliser, to pass back for new samples.

    Raises
    ------
    ValueError
        If every gene has a zero (``"ratio"``) or is zero in every sample (DESeq2: "every
        gene contains at least one zero"), or a sample shares no usable gene.

    Notes
    -----
    Anders & Huber (2010); DESeq2 ``estimateSizeFactorsForMatrix`` and the ``poscounts``
    geometric mean ``geoMeanNZ`` (Love, Huber & Anders 2014). For ``"ratio"`` the genes left
    out are the same for every fitting sample, so a plain ``np.median`` over a column subset
    gives the medians. For a frozen reference, as in DESeq2 with ``geoMeans``, a new sample's
    zero counts are left out of its median.
    """
    array = _as_counts_array(counts)
    n_samples, n_genes = array.shape
    col_min, col_max = _column_stats(
        array, chunk_size, need_max=reference is None and log_geo_means is None
    )

    if reference is not None:
        lgm = np.asarray(reference.log_geo_means, dtype=np.float64).reshape(-1)
        if lgm.shape[0] != n_genes:
            msg = f"the size-factor reference has {lgm.shape[0]} genes but counts have {n_genes}: pass the same genes, in the same order, as in the fit."
            raise ValueError(msg)
        raw = _median_ratio(array, lgm, chunk_size=chunk_size)
        return raw / np.exp(reference.log_scale), reference

    if log_geo_means is not None:
        lgm = np.asarray(log_geo_means, dtype=np.float64).reshape(-1).copy()
        if lgm.shape[0] != n_genes:
            msg = f"log_geo_means has {lgm.shape[0]} values but counts have {n_genes} genes."
            raise ValueError(msg)
        lgm[~np.isfinite(lgm)] = np.nan
        if np.isnan(lgm).all():
            msg = "every log geometric mean is -Inf/NaN: no gene can be used for size factors."
            raise ValueError(msg)
        raw = _median_ratio(array, lgm, chunk_size=chunk_size)
        log_scale = float(np.mean(np.log(raw)))
        return raw / np.exp(log_scale), SizeFactorReference(lgm, type, log_scale)

    if type not in ZEROS:
        msg = f"type must be 'ratio' or 'poscounts', got {type!r}."
        raise ValueError(msg)
    if type == "ratio":
        genes = np.flatnonzero(col_min > 0)
        if genes.size == 0:
            msg = "every gene contains at least one zero, so DESeq2's 'ratio' log geometric means are all -Inf: use zeros='poscounts' (type='poscounts') or filter out lowly expressed genes."
            raise ValueError(msg)
        lgm = np.full(n_genes, np.nan)
        if n_samples * genes.size * 8 <= array.nbytes:
            # the log counts of the genes used take no more memory than the input: keep them
            # (one log per count instead of two)
            logs = np.empty((n_samples, genes.size))
            log_sum = np.zeros(genes.size)
            for rows, block in _blocks(array, genes, chunk_size):
                log_sum += np.log(block, out=logs[rows]).sum(axis=0)
            lgm[genes] = log_sum / n_samples
            ref = lgm[genes]
            raw = np.empty(n_samples)
            for rows in _chunks(n_samples, genes.size, chunk_size):
                block = logs[rows]
                block -= ref
                raw[rows] = _row_median(block, np.zeros(block.shape[0], dtype=np.intp))
            del logs
            return np.exp(raw), SizeFactorReference(lgm, "ratio", 0.0)
        log_sum = np.zeros(genes.size)
        for _, block in _blocks(array, genes, chunk_size):
            log_sum += np.log(block, out=block).sum(axis=0)
        lgm[genes] = log_sum / n_samples
        raw = _median_ratio(array, lgm, chunk_size=chunk_size, zeros=False)
        return raw, SizeFactorReference(lgm, "ratio", 0.0)

    genes = np.flatnonzero(col_max > 0)
    if genes.size == 0:
        msg = "every gene is zero in every sample: size factors cannot be computed."
        raise ValueError(msg)
    log_sum = np.zeros(genes.size)
    for _, block in _blocks(array, genes, chunk_size):
        np.maximum(block, 1.0, out=block, where=block == 0)  # log(1) = 0: zeros add nothing
        log_sum += np.log(block, out=block).sum(axis=0)
    lgm = np.full(n_genes, np.nan)
    lgm[genes] = log_sum / n_samples
    raw = _median_ratio(array, lgm, chunk_size=chunk_size)
    log_scale = float(np.mean(np.log(raw)))
    return raw / np.exp(log_scale), SizeFactorReference(lgm, "poscounts", log_scale)


def _median_ratio(
    counts: NDArray[Any], lgm: NDArray[np.float64], *, chunk_size: int | None, zeros: bool = True
) -> NDArray[np.float64]:
    """``exp(median(log(y) - lgm))`` per row over genes with finite ``lgm`` and ``y > 0``.

    Zero counts give ``-inf`` log ratios, the smallest entries of the row, so each row's
    median skips as many smallest entries as the row has zeros. ``zeros=False`` promises
    that the used genes hold no zero (DESeq2 "ratio" on its fitting data).
    """
    genes = np.flatnonzero(np.isfinite(lgm))
    ref = lgm[genes]
    out = np.empty(counts.shape[0])
    for rows, block in _blocks(counts, genes, chunk_size):
        n_zero = (
            np.count_nonzero(block == 0, axis=1)
            if zeros
            else np.zeros(block.shape[0], dtype=np.intp)
        )
        with np.errstate(divide="ignore"):
            ratios = np.log(block, out=block)
        ratios -= ref
        out[rows] = _row_median(ratios, n_zero)
    if np.isnan(out).any():
        row = int(np.flatnonzero(np.isnan(out))[0])
        msg = f"sample {row} has a zero count in every gene usable for its size factor (genes with a finite log geometric mean), so its median of ratios is undefined: drop that sample or use zeros='poscounts'."
        raise ValueError(msg)
    return np.exp(out)


# --------------------------------------------------------------------------- steps


def _validated_counts(step: FrozenTransform, X: ArrayLike, *, reset: bool) -> NDArray[np.float64]:
    data = step._check_input(X, reset=reset)
    check_counts(data)
    return data


@register_step
class FilterByExpr(FrozenTransform):
    """Keep genes with enough counts, as edgeR ``filterByExpr`` (Chen, Lun & Smyth 2016).

    ``fit`` decides which genes to keep from the development samples (CPM cutoff from their
    median library size, minimum number of expressing samples, minimum total count);
    ``transform`` returns the kept columns of the raw counts unchanged.

    Parameters
    ----------
    min_count : float
        Minimum count in a median-sized library (edgeR ``min.count``).
    min_total_count : float
        Minimum total count over the development samples (``min.total.count``).
    large_n : float
        Sample count above which only a proportion of samples must express a gene.
    min_prop : float
        That proportion (edgeR ``min.prop``).

    Attributes
    ----------
    keep_ : ndarray of bool, shape (n_features_in_,)
        Genes kept.
    cpm_cutoff_ : float
        ``min_count / median(lib_size) * 1e6`` of the development samples.
    min_sample_size_ : float
        Number of development samples that had to reach the cutoff.

    Notes
    -----
    No design matrix and no groups: every development sample is in one group, as
    ``filterByExpr(y)`` on a count matrix. ``transform`` checks that its input holds raw
    counts (non-negative integers, no NaN) and returns them as float64.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("keep_", "cpm_cutoff_", "min_sample_size_")

    def __init__(
        self,
        *,
        min_count: float = 10,
        min_total_count: float = 15,
        large_n: float = 10,
        min_prop: float = 0.7,
    ) -> None:
        self.min_count = min_count
        self.min_total_count = min_total_count
        self.large_n = large_n
        self.min_prop = min_prop

    def fit(self, X: ArrayLike, y: Any = None, *, batch: ArrayLike | None = None) -> FilterByExpr:
        """Choose the genes to keep from development counts (samples x genes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_genes)
            Raw, non-negative integer counts of the development samples.
        y, batch : ignored

        Returns
        -------
        FilterByExpr
            self, fitted.
        """
        for name in ("min_count", "min_total_count", "large_n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (np.isfinite(value) and value >= 0):
                msg = f"{name} must be a non-negative number, got {value!r}."
                raise ValueError(msg)
        if not (np.isfinite(self.min_prop) and 0 <= self.min_prop <= 1):
            msg = f"min_prop must be in [0, 1], got {self.min_prop!r}."
            raise ValueError(msg)
        data = _validated_counts(self, X, reset=True)
        keep = filter_by_expr(
            data,
            min_count=self.min_count,
            min_total_count=self.min_total_count,
            large_n=self.large_n,
            min_prop=self.min_prop,
        )
        if not keep.any():
            msg = f"filterByExpr kept none of the {data.shape[1]} features: too few counts for min_count={self.min_count} and min_total_count={self.min_total_count}; lower them or check that the input holds raw counts."
            raise ValueError(msg)
        n = float(data.shape[0])
        self.min_sample_size_ = float(
            self.large_n + (n - self.large_n) * self.min_prop if n > self.large_n else n
        )
        self.cpm_cutoff_ = float(self.min_count / np.median(data.sum(axis=1)) * 1e6)
        self.keep_ = keep
        return self

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Return the kept columns of the raw counts (float64), unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Raw, non-negative integer counts.
        batch : ignored

        Returns
        -------
        ndarray of shape (n_samples, keep_.sum()), float64
        """
        data = self._check_input(X, reset=False)
        _raise_bad_count(data, None, integers=True)
        return data[:, self.keep_]


@register_step
class CountNormaliser(FrozenTransform):
    """RNA-seq library-size normalisation and transformation, frozen on development samples.

    Parameters
    ----------
    library_size : {"tmm", "median_of_ratios", "upper_quartile", "none"}
        How effective library sizes are computed:

        - ``"tmm"``: edgeR TMM (Robinson & Oshlack 2010). ``fit`` picks the reference sample
          among the development samples and freezes its counts and library size; a sample's
          factor is computed against that profile and divided by the frozen geometric mean
          of the development samples' factors. Effective library size = ``lib_size * factor``.
        - ``"median_of_ratios"``: DESeq2 size factors (Anders & Huber 2010) against the
          frozen log geometric means (and, for ``zeros="poscounts"``, divided by the frozen
          geometric mean of the development samples' raw factors). Effective library size =
          ``size_factor *`` the geometric mean of the development library sizes, so that it is
          on the scale of a library size and log-CPM is comparable with the other methods.
        - ``"upper_quartile"``: edgeR upper-quartile factors (Bullard et al. 2010), genes and
          normaliser frozen; effective library size = ``lib_size * factor``.
        - ``"none"``: the library size (row sum).
    zeros : {"ratio", "poscounts"}
        DESeq2 ``type`` for ``"median_of_ratios"``: ``"ratio"`` uses only genes without a zero
        in any development sample; ``"poscounts"`` (default) handles zeros, as DESeq2
        recommends when every gene has a zero somewhere.
    reference : "auto" or int
        TMM reference sample: ``"auto"`` for edgeR's choice, or a 0-based row index into the
        samples passed to ``fit``.
    transformation : {"log_cpm", "vst", "log2_normalised"}
        Output scale:

        - ``"log_cpm"``: edgeR ``cpm(log = TRUE, prior.count)``, the prior scaled by the
          frozen mean effective library size of the development samples.
        - ``"vst"``: DESeq2's variance-stabilising transformation, its dispersion trend
          fitted on the development samples (:mod:`omics_ml.transforms.vst`).
        - ``"log2_normalised"``: ``log2(counts / size_factor + 1)`` (DESeq2 ``normTransform``).

        Size factors for ``"vst"`` and ``"log2_normalised"``: DESeq2's for
        ``"median_of_ratios"``; otherwise the effective library sizes divided by their
        geometric mean over the development samples.
    prior_count : float
        edgeR's ``prior.count`` for ``"log_cpm"``.
    logratio_trim, sum_trim : float
        TMM trimming fractions (edgeR ``logratioTrim``, ``sumTrim``).
    vst_fit_type : {"parametric", "mean"}
        Dispersion trend for ``"vst"``.

    Attributes
    ----------
    lib_size_log_mean_ : float
        Mean log library size of the development samples.
    reference_index_ : int or None
        TMM: row of the reference sample among the samples passed to ``fit``.
    reference_counts_ : ndarray or None
        TMM: the reference sample's counts.
    reference_lib_size_ : float or None
        TMM: its library size.
    factor_log_scale_ : float or None
        TMM, upper quartile, median of ratios: log of the frozen divisor of raw factors.
    log_geo_means_ : ndarray or None
        median_of_ratios: DESeq2 log geometric means (NaN = gene not used).
    uq_genes_ : ndarray of bool or None
        upper_quartile: genes used for the quantile.
    mean_eff_lib_size_ : float
        Mean effective library size of the development samples (scales the log-CPM prior).
    size_factor_log_scale_ : float
        Log of the divisor that turns effective library sizes into size factors.
    vst_trend_ : dict or None
        ``"vst"``: the fitted dispersion trend.

    Notes
    -----
    ``transform`` is row-independent: a sample's output depends only on its own counts and
    the frozen state. On the development samples, ``fit`` then ``transform`` reproduces edgeR
    (``calcNormFactors`` then ``cpm(log = TRUE)``) and DESeq2 (``estimateSizeFactors``). Counts
    must be raw non-negative integers without NaN, and every sample needs a positive library
    size; otherwise ``fit`` and ``transform`` raise a ValueError naming the sample.
    """

    state_attributes: ClassVar[tuple[str, ...]] = (
        "lib_size_log_mean_",
        "reference_index_",
        "reference_counts_",
        "reference_lib_size_",
        "factor_log_scale_",
        "log_geo_means_",
        "uq_genes_",
        "mean_eff_lib_size_",
        "size_factor_log_scale_",
        "vst_trend_",
    )

    def __init__(
        self,
        *,
        library_size: str = "tmm",
        zeros: str = "poscounts",
        reference: str | int = "auto",
        transformation: str = "log_cpm",
        prior_count: float = 2.0,
        logratio_trim: float = 0.3,
        sum_trim: float = 0.05,
        vst_fit_type: str = "parametric",
    ) -> None:
        self.library_size = library_size
        self.zeros = zeros
        self.reference = reference
        self.transformation = transformation
        self.prior_count = prior_count
        self.logratio_trim = logratio_trim
        self.sum_trim = sum_trim
        self.vst_fit_type = vst_fit_type

    def _check_params(self, n_samples: int) -> None:
        if self.library_size not in LIBRARY_SIZES:
            msg = f"library_size must be one of {LIBRARY_SIZES}, got {self.library_size!r}."
            raise ValueError(msg)
        if self.zeros not in ZEROS:
            msg = f"zeros must be one of {ZEROS}, got {self.zeros!r}."
            raise ValueError(msg)
        if self.transformation not in TRANSFORMS:
            msg = f"transformation must be one of {TRANSFORMS}, got {self.transformation!r}."
            raise ValueError(msg)
        if self.reference != "auto" and (
            isinstance(self.reference, bool)
            or not isinstance(self.reference, int | np.integer)
            or not 0 <= self.reference < n_samples
        ):
            msg = f"reference must be 'auto' or a row index in [0, {n_samples}) of the samples passed to fit, got {self.reference!r}."
            raise ValueError(msg)
        if isinstance(self.prior_count, bool) or not (
            np.isfinite(self.prior_count) and self.prior_count > 0
        ):
            msg = f"prior_count must be a positive number, got {self.prior_count!r} (edgeR's default is 2)."
            raise ValueError(msg)
        _check_trim("logratio_trim", self.logratio_trim)
        _check_trim("sum_trim", self.sum_trim)

    def fit(
        self, X: ArrayLike, y: Any = None, *, batch: ArrayLike | None = None
    ) -> CountNormaliser:
        """Learn and freeze the normalisation state from development counts (samples x genes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_genes)
            Raw, non-negative integer counts; every sample with a positive library size.
        y, batch : ignored

        Returns
        -------
        CountNormaliser
            self, fitted.
        """
        data = _validated_counts(self, X, reset=True)
        self._check_params(data.shape[0])
        lib = data.sum(axis=1)
        self.lib_size_log_mean_ = float(np.mean(np.log(lib)))
        self.reference_index_ = None
        self.reference_counts_ = None
        self.reference_lib_size_ = None
        self.factor_log_scale_ = None
        self.log_geo_means_ = None
        self.uq_genes_ = None
        self.vst_trend_ = None
        if self.library_size == "tmm":
            _, tmm_ref = tmm_norm_factors(
                data,
                reference=None if self.reference == "auto" else int(self.reference),
                lib_size=lib,
                logratio_trim=self.logratio_trim,
                sum_trim=self.sum_trim,
            )
            self.reference_index_ = tmm_ref.index
            self.reference_counts_ = tmm_ref.counts
            self.reference_lib_size_ = tmm_ref.lib_size
            self.factor_log_scale_ = tmm_ref.log_scale
        elif self.library_size == "median_of_ratios":
            _, sf_ref = median_of_ratios_size_factors(data, type=self.zeros)
            self.log_geo_means_ = sf_ref.log_geo_means
            self.factor_log_scale_ = sf_ref.log_scale
        elif self.library_size == "upper_quartile":
            _, uq_ref = upper_quartile_norm_factors(data, lib_size=lib)
            self.uq_genes_ = uq_ref.genes
            self.factor_log_scale_ = uq_ref.log_scale
        # effective library sizes of the development samples, as transform computes them
        self.size_factor_log_scale_ = 0.0
        eff, _ = self._scales(data, lib)
        if self.library_size == "median_of_ratios":
            self.size_factor_log_scale_ = self.lib_size_log_mean_
            eff = eff * np.exp(self.size_factor_log_scale_)  # _scales gave the size factors
        else:
            self.size_factor_log_scale_ = float(np.mean(np.log(eff)))
        size_factors = eff / np.exp(self.size_factor_log_scale_)
        self.mean_eff_lib_size_ = float(np.mean(eff))
        if self.transformation == "vst":
            from omics_ml.transforms.vst import fit_vst_dispersion_trend  # noqa: PLC0415

            self.vst_trend_ = fit_vst_dispersion_trend(
                data, size_factors, fit_type=self.vst_fit_type
            )
        return self

    def _scales(
        self, data: NDArray[np.float64], lib: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Effective library sizes and size factors of samples, from the frozen state."""
        if self.library_size == "median_of_ratios":
            sf_ref = SizeFactorReference(
                log_geo_means=np.asarray(self.log_geo_means_, dtype=np.float64),
                type=self.zeros,
                log_scale=float(self.factor_log_scale_),
            )
            size_factors, _ = median_of_ratios_size_factors(data, reference=sf_ref)
            return size_factors * np.exp(self.size_factor_log_scale_), size_factors
        if self.library_size == "tmm":
            tmm_ref = TmmReference(
                index=int(self.reference_index_),
                counts=np.asarray(self.reference_counts_, dtype=np.float64),
                lib_size=float(self.reference_lib_size_),
                log_scale=float(self.factor_log_scale_),
            )
            factors, _ = tmm_norm_factors(
                data,
                reference=tmm_ref,
                lib_size=lib,
                logratio_trim=self.logratio_trim,
                sum_trim=self.sum_trim,
            )
            eff = lib * factors
        elif self.library_size == "upper_quartile":
            uq_ref = UpperQuartileReference(
                genes=np.asarray(self.uq_genes_, dtype=bool),
                log_scale=float(self.factor_log_scale_),
            )
            factors, _ = upper_quartile_norm_factors(data, lib_size=lib, reference=uq_ref)
            zero = np.flatnonzero(~(factors > 0))
            if zero.size:
                msg = f"sample {zero[0]} has an upper quartile of 0 over the genes used in the fit, so its upper-quartile factor is 0: use library_size='tmm' or 'median_of_ratios', or drop that sample."
                raise ValueError(msg)
            eff = lib * factors
        else:
            eff = lib
        return eff, eff / np.exp(self.size_factor_log_scale_)

    def effective_lib_size(self, X: ArrayLike) -> NDArray[np.float64]:
        """Effective library sizes of samples, from their counts and the frozen state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Raw counts.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        data = _validated_counts(self, X, reset=False)
        return self._scales(data, data.sum(axis=1))[0]

    def size_factors(self, X: ArrayLike) -> NDArray[np.float64]:
        """Size factors of samples (used by ``"vst"`` and ``"log2_normalised"``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Raw counts.

        Returns
        -------
        ndarray of shape (n_samples,)
            DESeq2 size factors for ``"median_of_ratios"``; otherwise effective library sizes
            divided by their geometric mean over the development samples.
        """
        data = _validated_counts(self, X, reset=False)
        return self._scales(data, data.sum(axis=1))[1]

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Normalise and transform counts with the frozen state, each sample on its own.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Raw, non-negative integer counts; every sample with a positive library size.
        batch : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float64
        """
        data = _validated_counts(self, X, reset=False)
        eff, size_factors = self._scales(data, data.sum(axis=1))
        if self.transformation == "log_cpm":
            return log_cpm(
                data, eff, prior_count=self.prior_count, mean_lib_size=self.mean_eff_lib_size_
            )
        if self.transformation == "vst":
            from omics_ml.transforms.vst import vst_transform  # noqa: PLC0415

            return vst_transform(data, size_factors, self.vst_trend_)
        return np.log2(data / size_factors[:, None] + 1.0)
