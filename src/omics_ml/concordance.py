"""Harrell's and Uno's concordance index in O(n log^2 n), equal to scikit-survival's.

scikit-survival compares every event with every later sample (O(n^2) time): 1.7 s per index on
40,000 subjects, which a 1,000-resample subject bootstrap of a biobank cohort turns into hours.
These functions count the same pairs with the same rules (comparable pairs, risk ties within
``tied_tol``, censored samples at an event's time comparable, events at the same time not) by
offline dominance counting: each level of the bit decomposition of the samples' time order is
one vectorised sort and four binary searches, so there is no loop over samples. Uno's
weights come from scikit-survival's own censoring estimator. Tests compare both indices and all
pair counts with scikit-survival on tied and untied data.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sksurv.exceptions import NoComparablePairException
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import check_y_survival

__all__ = ["Concordance", "concordance_index", "concordance_index_ipcw"]


class Concordance(NamedTuple):
    """As returned by scikit-survival: the index and the counts of pairs behind it."""

    cindex: float
    concordant: int
    discordant: int
    tied_risk: int
    tied_time: int


def _later_pair_counts(
    position: NDArray[np.int64],
    *,
    below: NDArray[np.int64],
    above: NDArray[np.int64],
    rank: NDArray[np.int64],
    is_i: NDArray[np.bool_],
    is_j: NDArray[np.bool_],
    cell: NDArray[np.int64],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Per sample i (``is_i``): over samples j (``is_j``) later in ``position`` in the same ``cell``,
    how many have ``rank < below[i]``, ``below[i] <= rank < above[i]``, and any rank.

    A pair (i, j) with position_j > position_i is counted once, at the highest bit where the
    two positions differ (i has 0 there, j has 1, and the bits above are equal).
    """
    n = position.size
    lower = np.zeros(n, np.int64)
    between = np.zeros(n, np.int64)
    total = np.zeros(n, np.int64)
    n_cells = int(cell.max()) + 1
    for level in range(max(1, int(n - 1).bit_length())):  # log2(n) levels
        block = (position >> (level + 1)) * n_cells + cell
        bit = ((position >> level) & 1).astype(bool)
        js = is_j & bit
        keys = np.sort(block[js] * n + rank[js])
        is_ = np.flatnonzero(is_i & ~bit)
        base = block[is_] * n
        start = np.searchsorted(keys, base)
        low = np.searchsorted(keys, base + below[is_])
        high = np.searchsorted(keys, base + above[is_])
        end = np.searchsorted(keys, base + n)
        lower[is_] += low - start
        between[is_] += high - low
        total[is_] += end - start
    return lower, between, total


def _concordance(
    event: NDArray[np.bool_],
    time: NDArray[np.float64],
    estimate: NDArray[np.float64],
    weights: NDArray[np.float64],
    tied_tol: float,
) -> Concordance:
    n = time.size
    # Time order with, at a tied time, events before censored samples: every sample after an
    # event is comparable with it except events at the same time, which are subtracted below.
    order = np.lexsort((~event, time))
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    sorted_estimate = np.sort(estimate)
    rank = np.empty(n, np.int64)
    rank[np.argsort(estimate, kind="stable")] = np.arange(n)
    below = np.searchsorted(sorted_estimate, estimate - tied_tol, side="left")
    above = np.searchsorted(sorted_estimate, estimate + tied_tol, side="right")
    _, time_group, group_size = np.unique(time, return_inverse=True, return_counts=True)
    # As scikit-survival: an event alone at the latest time is no comparison at all.
    counted = event.copy()
    if group_size[time_group[order[-1]]] == 1:
        counted[order[-1]] = False
    if not counted.any():
        msg = "Data has no comparable pairs, cannot estimate concordance index."
        raise NoComparablePairException(msg)
    everyone = np.ones(n, bool)
    one_cell = np.zeros(n, np.int64)
    pairs = {"below": below, "above": above, "rank": rank, "is_i": event}
    lower, tied, total = _later_pair_counts(position, **pairs, is_j=everyone, cell=one_cell)
    same_lower, same_tied, same_total = _later_pair_counts(
        position, **pairs, is_j=event, cell=time_group.astype(np.int64)
    )
    concordant = (lower - same_lower)[event]
    ties = (tied - same_tied)[event]
    comparable = (total - same_total)[event]
    w = weights[event]
    numerator = float(np.sum(w * (concordant + 0.5 * ties)))
    denominator = float(np.sum(w * comparable))
    events_at = np.bincount(time_group, weights=event, minlength=group_size.size)
    censored_at = group_size - events_at
    tied_time = int(np.sum(events_at * censored_at))
    return Concordance(
        cindex=numerator / denominator if denominator > 0 else float("nan"),
        concordant=int(concordant.sum()),
        discordant=int((comparable - concordant - ties).sum()),
        tied_risk=int(ties.sum()),
        tied_time=tied_time,
    )


def _arrays(event: ArrayLike, time: ArrayLike, estimate: ArrayLike) -> tuple[NDArray, ...]:
    e = np.asarray(event, dtype=bool).ravel()
    t = np.asarray(time, dtype=np.float64).ravel()
    r = np.asarray(estimate, dtype=np.float64).ravel()
    if not (e.size == t.size == r.size):
        msg = f"event ({e.size}), time ({t.size}) and estimate ({r.size}) differ in length."
        raise ValueError(msg)
    if not (np.isfinite(t).all() and np.isfinite(r).all()):
        msg = "time and estimate must be finite."
        raise ValueError(msg)
    return e, t, r


def concordance_index(
    event: ArrayLike, time: ArrayLike, estimate: ArrayLike, *, tied_tol: float = 1e-8
) -> Concordance:
    """Harrell's concordance index, as ``sksurv.metrics.concordance_index_censored``.

    Parameters
    ----------
    event, time : array-like of shape (n,)
        Event indicator (True: event) and observed time.
    estimate : array-like of shape (n,)
        Risk score (higher: earlier event).
    tied_tol : float
        Risk scores closer than this count as tied (half a concordant pair).

    Returns
    -------
    Concordance

    Raises
    ------
    sksurv.exceptions.NoComparablePairException
        If there is no event.
    """
    e, t, r = _arrays(event, time, estimate)
    return _concordance(e, t, r, np.ones(t.size), tied_tol)


def concordance_index_ipcw(
    survival_train: NDArray,
    survival_test: NDArray,
    estimate: ArrayLike,
    *,
    tau: float | None = None,
    tied_tol: float = 1e-8,
) -> Concordance:
    """Uno's concordance index, as ``sksurv.metrics.concordance_index_ipcw``.

    Events are weighted by the squared inverse probability of remaining uncensored (Kaplan-Meier
    of the training set's censoring); events at or after ``tau`` get weight 0.

    Parameters
    ----------
    survival_train, survival_test : structured arrays
        ``(event, time)`` records (``sksurv.util.Surv``).
    estimate : array-like
        Risk scores of the test set.
    tau : float, optional
        Truncation time.
    tied_tol : float
        As in :func:`concordance_index`.

    Returns
    -------
    Concordance
    """
    test_event, test_time = check_y_survival(survival_test)
    e, t, r = _arrays(test_event, test_time, estimate)
    censoring = CensoringDistributionEstimator().fit(survival_train)
    inside = np.ones(t.size, bool) if tau is None else t < tau
    ipcw = np.zeros(t.size)
    ipcw[inside] = censoring.predict_ipcw(survival_test[inside])
    return _concordance(e, t, r, np.square(ipcw), tied_tol)
