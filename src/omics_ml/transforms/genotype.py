"""Genotype step: variant quality control and frozen allele orientation of additive dosages.

Dosages count copies (0, 1 or 2; fractional for imputed genotypes) of one allele per variant.
Call rate and minor-allele frequency (MAF) filters are standard variant QC (Anderson et al. 2010,
"Data quality control in genetic case-control association studies", *Nature Protocols* 5,
1564-1573; PLINK ``--geno`` and ``--maf``, Purcell et al. 2007, *Am J Hum Genet* 81, 559-575).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from omics_ml.transforms.base import FrozenTransform, register_step

__all__ = ["GenotypeQC"]

_IMPUTE_CHOICES = ("none", "mean")


def _number(value: object) -> float:
    """``value`` as a float, NaN when it is not a number (so that parameter checks fail)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _check_dosages(X: NDArray[np.float64]) -> None:
    """Raise ``ValueError`` when a non-missing dosage lies outside [0, 2]."""
    with np.errstate(invalid="ignore"):
        bad = (X < 0.0) | (X > 2.0)
    if bad.any():
        rows, cols = np.nonzero(bad)
        value = float(X[rows[0], cols[0]])
        msg = (
            f"GenotypeQC: dosage {value!r} at sample (row) {rows[0]}, variant (column) {cols[0]} "
            f"is outside [0, 2] ({rows.size} such value(s) in total): dosages must be 0-2 copies "
            f"of the counted allele (additive coding; fractional imputed dosages are allowed). "
            f"Recode genotypes as 0/1/2 and missing calls as NaN (not e.g. -9 or 3)."
        )
        raise ValueError(msg)


@register_step
class GenotypeQC(FrozenTransform):
    """Filter variants by call rate and MAF; orient dosages to the training minor allele.

    Parameters
    ----------
    min_call_rate : float, default=0.95
        Keep variants called (non-NaN) in at least this fraction of development samples.
    min_maf : float, default=0.01
        Keep variants whose minor-allele frequency in development samples is at least this.
        Monomorphic variants (MAF = 0) are always dropped.
    orient_to_minor : bool, default=True
        If True, variants whose counted allele is the major allele in development samples
        (frequency > 0.5) are flipped (``dosage -> 2 - dosage``) so the counted allele is the
        training minor allele. The flip mask is frozen: new samples are flipped alike,
        whatever their own allele frequencies.
    impute : {"none", "mean"}, default="none"
        ``"none"`` keeps missing dosages as NaN (XGBoost handles them); ``"mean"`` replaces
        them by the training mean dosage after orientation, ``2 * allele_freq_``.

    Attributes
    ----------
    call_rate_ : ndarray of shape (n_features_in_,)
        Fraction of development samples with a call, per input variant.
    allele_freq_ : ndarray of shape (n_features_in_,)
        Frequency of the counted allele after orientation (the minor-allele frequency when
        ``orient_to_minor``), per input variant; NaN for variants never called.
    maf_ : ndarray of shape (n_features_in_,)
        Minor-allele frequency, ``min(p, 1 - p)``, per input variant.
    flip_ : ndarray of bool, shape (n_features_in_,)
        Variants whose dosage is flipped (``2 - dosage``).
    keep_ : ndarray of bool, shape (n_features_in_,)
        Variants passing the call-rate and MAF filters.

    Notes
    -----
    With ``p`` the mean dosage / 2 over called development samples, ``maf = min(p, 1 - p)`` and
    ``keep = (call_rate >= min_call_rate) & (maf >= min_maf) & (maf > 0)``, as PLINK's ``--geno``
    and ``--maf`` filters (Purcell et al. 2007; Anderson et al. 2010).
    """

    state_attributes: ClassVar[tuple[str, ...]] = (
        "call_rate_",
        "allele_freq_",
        "maf_",
        "flip_",
        "keep_",
    )

    def __init__(
        self,
        *,
        min_call_rate: float = 0.95,
        min_maf: float = 0.01,
        orient_to_minor: bool = True,
        impute: str = "none",
    ) -> None:
        self.min_call_rate = min_call_rate
        self.min_maf = min_maf
        self.orient_to_minor = orient_to_minor
        self.impute = impute

    def _validate_params(self) -> None:
        if not 0.0 <= _number(self.min_call_rate) <= 1.0:
            msg = f"GenotypeQC min_call_rate must be in [0, 1] (e.g. 0.95), got {self.min_call_rate!r}."
            raise ValueError(msg)
        if not 0.0 <= _number(self.min_maf) <= 0.5:
            msg = f"GenotypeQC min_maf must be in [0, 0.5] (e.g. 0.01), got {self.min_maf!r}."
            raise ValueError(msg)
        if not isinstance(self.orient_to_minor, bool | np.bool_):
            msg = f"GenotypeQC orient_to_minor must be true or false, got {self.orient_to_minor!r}."
            raise ValueError(msg)
        if self.impute not in _IMPUTE_CHOICES:
            msg = f"GenotypeQC impute must be one of {list(_IMPUTE_CHOICES)}, got {self.impute!r}."
            raise ValueError(msg)

    def fit(
        self, X: ArrayLike, y: ArrayLike | None = None, *, batch: ArrayLike | None = None
    ) -> GenotypeQC:
        """Learn call rates, allele frequencies, the keep mask and the flip mask.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_variants)
            Additive dosages in [0, 2] of development samples; NaN marks a missing call.
        y, batch : ignored

        Returns
        -------
        self : GenotypeQC
        """
        self._validate_params()
        array = self._check_input(X, reset=True)
        if array.shape[0] == 0:
            msg = "GenotypeQC needs at least one development sample to fit."
            raise ValueError(msg)
        _check_dosages(array)
        called = ~np.isnan(array)
        n_called = called.sum(axis=0)
        call_rate = n_called / array.shape[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(called, array, 0.0).sum(axis=0) / (2.0 * n_called)
        p = np.where(n_called > 0, p, np.nan)
        maf = np.minimum(p, 1.0 - p)
        flip = (p > 0.5) if self.orient_to_minor else np.zeros(p.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            keep = (call_rate >= self.min_call_rate) & (maf >= self.min_maf) & (maf > 0.0)
        if not keep.any():
            msg = (
                f"GenotypeQC: no variant passes quality control (min_call_rate={self.min_call_rate}, "
                f"min_maf={self.min_maf}; monomorphic variants are always dropped) out of "
                f"{array.shape[1]} variant(s); best call rate {np.nanmax(call_rate, initial=0.0):.3g}, "
                f"best MAF {np.nanmax(maf, initial=0.0):.3g}. Lower min_call_rate or min_maf, or "
                f"check the dosage matrix (samples in rows, variants in columns)."
            )
            raise ValueError(msg)
        self.call_rate_ = call_rate.astype(np.float64)
        self.allele_freq_ = np.where(flip, 1.0 - p, p).astype(np.float64)
        self.maf_ = maf.astype(np.float64)
        self.flip_ = flip.astype(bool)
        self.keep_ = keep.astype(bool)
        return self

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Keep passing variants, apply the frozen orientation and (optionally) impute.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_variants)
            Additive dosages in [0, 2], same variants and allele coding as in ``fit``.
        batch : ignored

        Returns
        -------
        dosages : ndarray of shape (n_samples, keep_.sum()), float64
        """
        self._validate_params()
        array = self._check_input(X, reset=False)
        _check_dosages(array)
        keep = np.asarray(self.keep_, dtype=bool)
        flip = np.asarray(self.flip_, dtype=bool)[keep]
        out = array[:, keep]
        out = np.where(flip, 2.0 - out, out)
        if self.impute == "mean":
            fill = 2.0 * np.asarray(self.allele_freq_, dtype=np.float64)[keep]
            out = np.where(np.isnan(out), fill, out)
        return out.astype(np.float64, copy=False)
