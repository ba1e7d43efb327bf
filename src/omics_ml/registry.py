"""Model registry: the promotion rule, the no-pickle check and registering a logged model.

A version is registered only after its run was logged completely and its artifact passed the
serving and no-pickle checks (:mod:`omics_ml.tracking`). Registration is the pipeline's last
step: the version is created with all its lineage and decision tags in one call, then gets the
``challenger`` alias, and the ``champion`` alias moves only by the configured rule.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from omics_ml.assess import higher_is_better

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PromotionDecision",
    "current_champion",
    "find_pickles",
    "promotion_decision",
    "register_version",
]

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Protocol markers that start every pickle stream of protocol 2 and later.
_PICKLE_MAGIC = tuple(bytes([0x80, p]) for p in range(2, 6))
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".cloudpickle", ".dill")


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a new version takes the champion alias, with the numbers behind it."""

    promote: bool
    reason: str
    rule: str
    metric: str
    margin: float
    new_value: float
    champion_value: float | None
    champion_version: str | None

    def tags(self) -> dict[str, str]:
        """The decision as ``promotion.*`` model-version (and run) tags."""
        return {
            "promotion.decision": "promoted" if self.promote else "not promoted",
            "promotion.reason": self.reason,
            "promotion.rule": self.rule,
            "promotion.metric": self.metric,
            "promotion.margin": f"{self.margin:g}",
            "promotion.new_value": f"{self.new_value:.6f}",
            "promotion.champion_value": "none"
            if self.champion_value is None
            else f"{self.champion_value:.6f}",
            "promotion.champion_version": self.champion_version or "none",
        }


def promotion_decision(
    rule: str,
    metric: str,
    new_value: float,
    champion_value: float | None,
    *,
    margin: float = 0.0,
    champion_version: str | None = None,
) -> PromotionDecision:
    """Decide whether a new version takes the champion alias.

    Parameters
    ----------
    rule : {"always", "if_better", "never"}
        ``if_better`` promotes the first version, and later a version whose holdout ``metric``
        beats the champion's by at least ``margin`` (strictly beats it when ``margin`` is 0).
    metric : str
        Holdout metric compared (direction from :func:`omics_ml.assess.higher_is_better`).
    new_value : float
        The new version's holdout metric.
    champion_value : float or None
        The current champion's, or None when there is no champion.
    margin : float, optional
        Required improvement, in the metric's units (>= 0).
    champion_version : str, optional
        The current champion's version, for the record.

    Returns
    -------
    PromotionDecision
    """
    if margin < 0 or not math.isfinite(margin):
        msg = f"tracking.promotion_margin must be a finite number >= 0, not {margin}."
        raise ValueError(msg)
    sign = 1.0 if higher_is_better(metric) else -1.0
    if champion_value is not None and not math.isfinite(champion_value):
        champion_value = None
    common = {
        "rule": rule,
        "metric": metric,
        "margin": margin,
        "new_value": new_value,
        "champion_value": champion_value,
        "champion_version": champion_version,
    }
    if rule == "never":
        return PromotionDecision(False, "promotion_rule is 'never'", **common)
    if rule == "always":
        return PromotionDecision(True, "promotion_rule is 'always'", **common)
    if rule != "if_better":
        msg = f"tracking.promotion_rule {rule!r} is not one of always, if_better, never."
        raise ValueError(msg)
    if champion_value is None:
        return PromotionDecision(True, "no current champion", **common)
    improvement = sign * (new_value - champion_value)
    # Values are compared at the 6 decimals of the version tags; 1e-9 absorbs float noise.
    promote = improvement > 1e-9 and improvement >= margin - 1e-9
    wanted = f"at least {margin:g} required" if margin > 0 else "any improvement required"
    verdict = "beats" if promote else "does not beat"
    reason = (
        f"holdout {metric} {new_value:.4f} {verdict} the champion's {champion_value:.4f} "
        f"(version {champion_version or '?'}): improvement {improvement:+.4f}, {wanted}"
    )
    return PromotionDecision(promote, reason, **common)


def find_pickles(directory: str | os.PathLike[str]) -> list[Path]:
    """Files under ``directory`` that are pickles (by suffix or by a pickle protocol header).

    A served model must load without unpickling anything: its booster is XGBoost's own UBJSON
    and its preprocessing is JSON.
    """
    found = []
    for path in sorted(Path(directory).rglob("*")):
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            head = handle.read(2)
        if path.suffix.lower() in _PICKLE_SUFFIXES or head in _PICKLE_MAGIC:
            found.append(path)
    return found


def current_champion(client: MlflowClient, model_name: str) -> Any | None:
    """The version holding the champion alias, or None (no such model or alias)."""
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def register_version(
    client: MlflowClient,
    *,
    model_uri: str,
    model_name: str,
    run_id: str,
    holdout: Mapping[str, float],
    rule: str,
    metric: str,
    margin: float,
    tags: Mapping[str, str],
) -> tuple[Any, PromotionDecision]:
    """Register a logged model, tag its lineage and decision, and set its aliases.

    The new version is created with every tag in one call, then takes ``challenger``; when the
    rule promotes it, it takes ``champion`` and ``challenger`` is removed (it is no longer
    challenging). Nothing is registered when ``metric`` is not among ``holdout``.

    Parameters
    ----------
    client : MlflowClient
        Client of the tracking and registry store.
    model_uri : str
        The logged model (``models:/m-...`` or ``runs:/<id>/model``).
    model_name : str
        Registered model name.
    run_id : str
        The pipeline's parent run.
    holdout : mapping
        Holdout metric estimates of the new model.
    rule, metric, margin
        The promotion rule (see :func:`promotion_decision`).
    tags : mapping
        Lineage tags of the version (config hash, data digests, metrics, ...).

    Returns
    -------
    (ModelVersion, PromotionDecision)
    """
    if metric not in holdout:
        msg = (
            f"tracking.promotion_metric {metric!r} is not a metric of this task; "
            f"choose one of {sorted(holdout)}."
        )
        raise ValueError(msg)
    # Compared at the precision of the version tags, where the champion's value is read.
    new_value = float(f"{holdout[metric]:.6f}")
    champion = current_champion(client, model_name)
    champion_value = None
    if champion is not None:
        champion_value = float(champion.tags.get(f"holdout_{metric}", "nan"))
    decision = promotion_decision(
        rule,
        metric,
        new_value,
        champion_value,
        margin=margin,
        champion_version=None if champion is None else str(champion.version),
    )
    version = mlflow.register_model(
        model_uri, model_name, tags={**tags, "lineage.run_id": run_id, **decision.tags()}
    )
    cv_value = tags.get(f"cv_{metric}")
    client.update_model_version(
        model_name,
        version.version,
        description=(
            f"Holdout {metric} {new_value:.4f}"
            + (f" (out-of-fold CV {float(cv_value):.4f})" if cv_value else "")
            + f". {'Promoted to champion' if decision.promote else 'Challenger'}: "
            f"{decision.reason}. Pipeline run {run_id}."
        ),
    )
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    if decision.promote:
        client.set_registered_model_alias(model_name, CHAMPION, version.version)
        client.delete_registered_model_alias(model_name, CHALLENGER)
    logger.info(
        "registered %s version %s: %s (%s)",
        model_name,
        version.version,
        "champion" if decision.promote else CHALLENGER,
        decision.reason,
    )
    return version, decision
