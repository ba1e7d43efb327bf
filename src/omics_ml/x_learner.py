"""The X-learner (Künzel et al., PNAS 2019) on the what-if outcome scale, for evaluation.

Given the T-learner's per-arm predictions on the training rows, each subject's effect is
imputed with the *other* arm's model (treated: observed - control prediction; control:
treated prediction - observed), one XGBoost regression per arm learns those imputed effects
from the baseline features, and the two are blended with the share of treated subjects:
``tau(x) = e * tau_control(x) + (1 - e) * tau_treated(x)``. It borrows strength across arms
when one arm is small or the effect is simpler than the outcome.

For survival the observed outcome is the event by the horizon, known for subjects with the
event before it or followed past it; those are weighted by the inverse probability of
remaining uncensored (Kaplan-Meier of the censoring times of the training rows), so the
censored subjects' share is carried by the others. The X-learner gives the effect, not a
curve: it is evaluated out of fold, not served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray
from sksurv.nonparametric import kaplan_meier_estimator

from omics_ml.tasks import Outcome

__all__ = ["XLearner", "fit_x_learner", "observed_on_scale"]

#: Effect regressions: shallow, shrunk, fixed rounds (the imputed effects are noisy).
_PARAMS = {
    "objective": "reg:squarederror",
    "tree_method": "hist",
    "learning_rate": 0.05,
    "max_depth": 2,
    "min_child_weight": 10,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "reg_lambda": 5.0,
    "max_bin": 64,
}
_ROUNDS = 100
#: Censoring survival below this is clipped (bounded weights).
_MIN_UNCENSORED = 0.05


def observed_on_scale(
    outcome: Outcome, scale: Mapping[str, Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each training row's observed outcome on the what-if scale, and its weight.

    Survival: 1 if the event happened by the horizon, 0 if followed past it event-free,
    NaN (weight 0) if censored before it; known rows are weighted by ``1 / G(t-)`` with
    ``G`` the Kaplan-Meier survival of the censoring times and ``t`` the earlier of the row's
    time and the horizon. Classification: 1 for the event class. Regression: the value.
    """
    if scale["kind"] == "survival":
        time = np.asarray(outcome.time, dtype=np.float64)
        event = np.asarray(outcome.event, dtype=bool)
        horizon = float(scale["horizon"])
        had_event = event & (time <= horizon)
        known = had_event | (time > horizon)
        times, uncensored = kaplan_meier_estimator(~event, time)
        at = np.minimum(time, horizon)
        # G(t-): the censoring survival just before t
        index = np.searchsorted(times, at, side="left") - 1
        g = np.where(index >= 0, uncensored[np.clip(index, 0, None)], 1.0)
        weight = np.where(known, 1.0 / np.clip(g, _MIN_UNCENSORED, None), 0.0)
        return np.where(known, had_event.astype(np.float64), np.nan), weight
    if scale["kind"] == "binary":
        y = (np.asarray(outcome.label).astype(str) == str(scale["event_class"])).astype(float)
        return y, np.ones_like(y)
    y = np.asarray(outcome.target, dtype=np.float64)
    return y, np.isfinite(y).astype(np.float64)


@dataclass
class XLearner:
    """The two effect regressions and the blending share of treated subjects."""

    treated_model: xgb.Booster
    control_model: xgb.Booster
    share_treated: float

    def effect(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        """Predicted effect (treated - reference, outcome scale) of each row."""
        tau_treated = self.treated_model.inplace_predict(features, validate_features=False)
        tau_control = self.control_model.inplace_predict(features, validate_features=False)
        e = self.share_treated
        return (e * np.asarray(tau_control) + (1 - e) * np.asarray(tau_treated)).astype(np.float64)


def fit_x_learner(
    features: NDArray[np.float32],
    arm: NDArray[np.int64],
    observed: NDArray[np.float64],
    weight: NDArray[np.float64],
    mu: tuple[NDArray[np.float64], NDArray[np.float64]],
    *,
    seed: int,
    nthread: int,
) -> XLearner:
    """Fit the X-learner on training rows.

    Parameters
    ----------
    features : ndarray of shape (n, p)
        Baseline features (without the arm).
    arm : ndarray of int
        0 reference, 1 treated, -1 other (left out).
    observed, weight : ndarray
        From :func:`observed_on_scale` (NaN / weight 0 where unknown).
    mu : pair of ndarray
        The T-learner's predictions of every row under the reference and the treated arm.
    seed, nthread
        XGBoost seed and threads.

    Returns
    -------
    XLearner
    """
    mu0, mu1 = mu
    known = np.isfinite(observed) & (weight > 0)
    params = {**_PARAMS, "seed": seed, "nthread": nthread}
    models = []
    for k, imputed in ((1, observed - mu0), (0, mu1 - observed)):
        rows = known & (arm == k)
        if rows.sum() < 2:
            msg = f"the X-learner needs outcomes of at least 2 subjects in arm {k}; it has {int(rows.sum())}."
            raise ValueError(msg)
        data = xgb.DMatrix(features[rows], label=imputed[rows], weight=weight[rows])
        models.append(xgb.train(params, data, num_boost_round=_ROUNDS))
    return XLearner(
        treated_model=models[0],
        control_model=models[1],
        share_treated=float((arm[arm >= 0] == 1).mean()),
    )
