"""How well predicted individual treatment benefit holds up on randomised data.

Given, per subject, the arm received, the observed outcome and the out-of-fold predicted
outcome under each arm, these functions measure what a what-if model promises:

- :func:`trial_contrast`: the trial's own average effect, model-free (Kaplan-Meier risk at the
  horizon per arm with Greenwood variance; difference of proportions or means otherwise);
- :func:`benefit_calibration`: observed against predicted benefit in groups of predicted
  benefit (calibration for benefit);
- :func:`c_for_benefit`: the c-for-benefit of van Klaveren et al. (J Clin Epidemiol 2018):
  treated and control subjects matched 1:1 on predicted benefit, each pair's observed benefit
  against its mean predicted benefit;
- :func:`policy_values`: the outcome under "treat if predicted benefit > 0" against treat-all
  and treat-none, by inverse-probability weighting of the subjects whose arm agrees with the
  policy (a weighted Kaplan-Meier estimate for survival).

Everything is on the outcome scale of :class:`ObservedOutcome`: risk of the event by the
horizon (survival), probability of the event class (classification), or the value
(regression). *Benefit* is signed so that positive favours the treated arm: the fall in risk
or probability, or the rise in value when higher is better.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from omics_ml.concordance import concordance_index
from omics_ml.evaluate import subject_bootstrap

__all__ = [
    "ObservedOutcome",
    "benefit_calibration",
    "c_for_benefit",
    "km_risk",
    "matched_pairs",
    "policy_values",
    "trial_contrast",
]


def km_risk(
    time: ArrayLike, event: ArrayLike, horizon: float, weights: ArrayLike | None = None
) -> tuple[float, float]:
    """Kaplan-Meier risk ``1 - S(horizon)`` and its Greenwood variance, optionally weighted.

    With ``weights`` each subject counts that much at risk and as an event (a weighted
    Kaplan-Meier estimate); the variance then uses the weighted counts in Greenwood's formula,
    which is only indicative (use a bootstrap for intervals). NaN when there are no subjects,
    or when follow-up ends before ``horizon`` while survival is still above zero.

    Returns
    -------
    risk, variance : float
    """
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=np.float64)
    w = np.ones_like(t) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = w > 0
    t, e, w = t[keep], e[keep], w[keep]
    if t.size == 0:
        return np.nan, np.nan
    order = np.argsort(t, kind="stable")
    t, e, w = t[order], e[order], w[order]
    times, first = np.unique(t, return_index=True)
    # Weight at risk summed from the last time back (not total minus a running sum): when all
    # still at risk have the event, at risk and deaths are then equal sums and survival is 0.
    at_risk = np.cumsum(np.add.reduceat(w, first)[::-1])[::-1]
    deaths = np.add.reduceat(w * e, first)
    use = (times <= horizon) & (deaths > 0)
    n, d = at_risk[use], deaths[use]
    survival = float(np.prod(1.0 - d / n))
    if horizon > t[-1] and survival > 0:
        return np.nan, np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(n > d, d / (n * (n - d)), np.inf)
    variance = survival**2 * float(terms.sum()) if survival > 0 else 0.0
    return 1.0 - survival, variance


@dataclass(frozen=True)
class ObservedOutcome:
    """The observed outcome of each subject, on the scale benefit is measured on.

    Attributes
    ----------
    kind : {"survival", "binary", "continuous"}
    value : ndarray
        Follow-up time (survival), 0/1 event-class indicator (binary) or the value.
    event : ndarray or None
        0/1 event indicator (survival).
    horizon : float or None
        Time at which risk is measured (survival).
    lower_is_better : bool
        True when a lower outcome (risk, probability, value) is better.
    """

    kind: str
    value: NDArray[np.float64]
    event: NDArray[np.float64] | None = None
    horizon: float | None = None
    lower_is_better: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("survival", "binary", "continuous"):
            msg = f"outcome kind {self.kind!r} is not survival, binary or continuous."
            raise ValueError(msg)
        if self.kind == "survival" and (self.event is None or self.horizon is None):
            msg = "a survival outcome needs event and horizon."
            raise ValueError(msg)

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is better (benefit = sign x effect)."""
        return -1.0 if self.lower_is_better else 1.0

    def __len__(self) -> int:
        return int(self.value.size)

    def take(self, idx: NDArray[np.int64]) -> ObservedOutcome:
        """The outcome of subjects ``idx``."""
        return ObservedOutcome(
            self.kind,
            self.value[idx],
            None if self.event is None else self.event[idx],
            self.horizon,
            self.lower_is_better,
        )

    def mean(
        self, mask: NDArray[np.bool_], weights: NDArray[np.float64] | None = None
    ) -> tuple[float, float]:
        """Outcome of the ``mask`` subjects (risk by the horizon, or mean) and its variance."""
        w = None if weights is None else weights[mask]
        if self.kind == "survival":
            assert self.event is not None and self.horizon is not None
            return km_risk(self.value[mask], self.event[mask], self.horizon, w)
        y = self.value[mask]
        if y.size == 0:
            return np.nan, np.nan
        if w is None:
            variance = float(y.var(ddof=1)) / y.size if y.size > 1 else np.nan
            return float(y.mean()), variance
        return float(np.average(y, weights=w)), np.nan

    def by_horizon(self) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Each subject's outcome as a number and whether it is known.

        Survival: 1 if the event happened by the horizon, 0 if the subject was followed past
        it event-free, unknown if censored before it. Otherwise the value itself.
        """
        if self.kind != "survival":
            return self.value, np.isfinite(self.value)
        assert self.event is not None and self.horizon is not None
        had_event = (self.event == 1) & (self.value <= self.horizon)
        known = had_event | (self.value > self.horizon)
        return had_event.astype(np.float64), known


def _interval(estimate: float, variance: float, level: float) -> dict[str, float]:
    z = float(stats.norm.ppf(0.5 + level / 2))
    se = float(np.sqrt(variance)) if np.isfinite(variance) else np.nan
    return {
        "estimate": float(estimate),
        "lower": float(estimate - z * se),
        "upper": float(estimate + z * se),
        "se": se,
    }


def trial_contrast(
    arm: NDArray[np.int64], outcome: ObservedOutcome, *, confidence_level: float = 0.95
) -> dict[str, Any]:
    """The randomised comparison itself: outcome per arm and treated minus control.

    Survival: Kaplan-Meier risk by the horizon per arm, Greenwood variances; binary and
    continuous: proportions or means with their sampling variances. Normal intervals.

    Parameters
    ----------
    arm : ndarray of int
        0 = control (reference arm), 1 = treated.
    outcome : ObservedOutcome

    Returns
    -------
    dict
        ``control`` and ``treated`` (outcome with interval and ``n``), ``effect``
        (treated - control, with interval) and ``benefit`` (effect signed so that positive
        favours the treated arm).
    """
    control = outcome.mean(arm == 0)
    treated = outcome.mean(arm == 1)
    effect = treated[0] - control[0]
    variance = treated[1] + control[1]
    signed = _interval(outcome.sign * effect, variance, confidence_level)
    return {
        "control": {**_interval(*control, confidence_level), "n": int((arm == 0).sum())},
        "treated": {**_interval(*treated, confidence_level), "n": int((arm == 1).sum())},
        "effect": _interval(effect, variance, confidence_level),
        "benefit": signed,
        "method": "Kaplan-Meier risk by the horizon, Greenwood variance"
        if outcome.kind == "survival"
        else "difference of means, normal interval",
    }


def _groups(values: NDArray[np.float64], n_groups: int) -> NDArray[np.int64]:
    ranks = np.empty(values.size, dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(values.size)
    return ranks * n_groups // max(values.size, 1)


def benefit_calibration(
    arm: NDArray[np.int64],
    outcome: ObservedOutcome,
    predicted_benefit: NDArray[np.float64],
    *,
    n_groups: int = 4,
    confidence_level: float = 0.95,
) -> dict[str, Any]:
    """Observed against predicted benefit in quantile groups of predicted benefit.

    In each group the observed benefit is the trial contrast of its subjects
    (:func:`trial_contrast`); the predicted benefit is the group's mean. A well calibrated
    model puts the groups on the diagonal. Also returned: the inverse-variance weighted
    least-squares line through the groups (slope 1, intercept 0 when calibrated) and the
    observed benefit of the highest group minus the lowest, with its interval (an interval
    that excludes 0 is evidence that benefit differs between patients).

    Returns
    -------
    dict
        ``groups`` (list of records: ``group``, ``n``, ``predicted``, ``observed``, ``lower``,
        ``upper``), ``slope``, ``intercept`` and ``top_minus_bottom``.
    """
    group = _groups(predicted_benefit, n_groups)
    rows = []
    for g in range(n_groups):
        mask = group == g
        contrast = trial_contrast(
            arm[mask], outcome.take(np.flatnonzero(mask)), confidence_level=confidence_level
        )
        observed = contrast["benefit"]
        rows.append(
            {
                "group": g + 1,
                "n": int(mask.sum()),
                "n_treated": contrast["treated"]["n"],
                "n_control": contrast["control"]["n"],
                "predicted": float(predicted_benefit[mask].mean()),
                "predicted_min": float(predicted_benefit[mask].min()),
                "predicted_max": float(predicted_benefit[mask].max()),
                "observed": observed["estimate"],
                "lower": observed["lower"],
                "upper": observed["upper"],
                "se": observed["se"],
            }
        )
    x = np.array([r["predicted"] for r in rows])
    y = np.array([r["observed"] for r in rows])
    se = np.array([r["se"] for r in rows])
    ok = np.isfinite(y) & np.isfinite(se) & (se > 0)
    slope = intercept = np.nan
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        w = 1.0 / se[ok] ** 2
        xm, ym = np.average(x[ok], weights=w), np.average(y[ok], weights=w)
        slope = float(np.sum(w * (x[ok] - xm) * (y[ok] - ym)) / np.sum(w * (x[ok] - xm) ** 2))
        intercept = float(ym - slope * xm)
    top, bottom = rows[-1], rows[0]
    spread = _interval(
        top["observed"] - bottom["observed"], top["se"] ** 2 + bottom["se"] ** 2, confidence_level
    )
    return {
        "groups": rows,
        "slope": slope,
        "intercept": intercept,
        "top_minus_bottom": spread,
        "predicted_top_minus_bottom": top["predicted"] - bottom["predicted"],
    }


def matched_pairs(
    arm: NDArray[np.int64], predicted_benefit: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """1:1 pairs of treated and control subjects matched on the rank of predicted benefit.

    Each arm is sorted by predicted benefit; the smaller arm's k-th subject is paired with the
    larger arm's subject at the same relative rank (``round(k (n_large - 1) / (n_small - 1))``),
    so the pairs span the whole range of both arms and the surplus of the larger arm is left
    out evenly. Ties are broken by position, so the pairing is deterministic.

    Returns
    -------
    treated, control : ndarray of int
        Indices of the paired subjects (same length).
    """
    treated = np.flatnonzero(arm == 1)
    control = np.flatnonzero(arm == 0)
    treated = treated[np.argsort(predicted_benefit[treated], kind="stable")]
    control = control[np.argsort(predicted_benefit[control], kind="stable")]
    n = min(treated.size, control.size)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)

    def spread(idx: NDArray[np.int64]) -> NDArray[np.int64]:
        if idx.size == n:
            return idx
        pick = np.rint(np.linspace(0, idx.size - 1, n)).astype(np.int64)
        return idx[pick]

    return spread(treated), spread(control)


def c_for_benefit(
    arm: NDArray[np.int64], outcome: ObservedOutcome, predicted_benefit: NDArray[np.float64]
) -> tuple[float, int]:
    """The c-for-benefit and the number of matched pairs behind it.

    Subjects whose outcome is unknown (censored before the horizon) are left out first. Each
    pair's observed benefit is ``sign x (treated outcome - control outcome)`` (for a binary
    outcome -1, 0 or 1), its predicted benefit the mean of its two subjects'. The index is the
    probability that of two pairs with different observed benefit, the one with more observed
    benefit has more predicted benefit (ties in predicted benefit count one half): 0.5 means
    the model ranks patients' benefit no better than chance.

    Returns
    -------
    c, n_pairs : float, int
        NaN when no two pairs differ in observed benefit.
    """
    value, known = outcome.by_horizon()
    idx = np.flatnonzero(known)
    t, c = matched_pairs(arm[idx], predicted_benefit[idx])
    t, c = idx[t], idx[c]
    if t.size < 2:
        return np.nan, int(t.size)
    observed = outcome.sign * (value[t] - value[c])
    predicted = 0.5 * (predicted_benefit[t] + predicted_benefit[c])
    if np.ptp(observed) == 0:
        return np.nan, int(t.size)
    # Harrell's C with every pair an "event" at time -observed: of two pairs with different
    # observed benefit, the one with more is "earlier", and should have more predicted benefit.
    result = concordance_index(np.ones(t.size, bool), -observed, predicted)
    return float(result.cindex), int(t.size)


def policy_values(
    arm: NDArray[np.int64],
    outcome: ObservedOutcome,
    predicted_benefit: NDArray[np.float64],
    propensity: NDArray[np.float64],
) -> dict[str, float]:
    """Outcome if everyone were treated, no one, or those with predicted benefit > 0.

    Each policy's value is the inverse-probability weighted outcome of the subjects whose
    received arm is the one the policy picks (weights ``1/P(arm received)``; a weighted
    Kaplan-Meier risk by the horizon for survival). On randomised data with the design's
    propensity this is unbiased for the outcome the policy would give.

    Returns
    -------
    dict
        ``treat_all``, ``treat_none``, ``model`` (outcome under each policy), ``fraction_treated``
        under the model's policy, ``gain_vs_best_fixed`` (benefit of the model's policy over the
        better of treat-all and treat-none, signed so that positive is better).
    """
    p_received = np.where(arm == 1, propensity, 1.0 - propensity)
    weights = 1.0 / np.clip(p_received, 1e-6, None)
    recommend = (predicted_benefit > 0).astype(np.int64)
    values = {}
    for name, choice in (
        ("treat_all", np.ones_like(arm)),
        ("treat_none", np.zeros_like(arm)),
        ("model", recommend),
    ):
        values[name] = outcome.mean(arm == choice, weights)[0]
    best_fixed = (
        min(values["treat_all"], values["treat_none"])
        if outcome.lower_is_better
        else max(values["treat_all"], values["treat_none"])
    )
    return {
        **values,
        "fraction_treated": float(recommend.mean()),
        "gain_vs_best_fixed": outcome.sign * (values["model"] - best_fixed),
        "gain_vs_treat_all": outcome.sign * (values["model"] - values["treat_all"]),
        "gain_vs_treat_none": outcome.sign * (values["model"] - values["treat_none"]),
    }


def bootstrapped(
    metrics_of: Callable[[NDArray[np.int64]], Mapping[str, float]],
    n: int,
    *,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Metrics of all ``n`` subjects with percentile intervals from resampling subjects."""
    return subject_bootstrap(
        metrics_of,
        metrics_of(np.arange(n)),
        np.arange(n),
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        seed=seed,
    )
