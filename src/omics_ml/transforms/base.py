"""Base class of every normalisation step: scikit-learn fit/transform, fitted state as plain JSON.

A step is fitted on development samples only and then frozen: :meth:`FrozenTransform.to_json`
returns a JSON-serialisable dict (no pickle) and :func:`step_from_json` rebuilds the fitted step
from it, so the training rules and the registered model run the same code on the same state.

Contract of a step
------------------
- ``fit(X, y=None, *, batch=None)`` learns from a float64 array of shape (n_samples, n_features);
  NaN marks a missing value. ``batch`` (an array of batch labels, one per sample) is passed only to
  steps whose class attribute ``uses_batch`` is True.
- ``transform(X, *, batch=None)`` applies the frozen state. Row ``i`` of the output depends only on
  row ``i`` of the input (and its batch label): a sample is transformed alike alone or in any batch.
- ``get_feature_names_out(input_features)`` names the output columns; filters drop names.
- Fitted attributes end in ``_`` and are listed in the class attribute ``state_attributes`` so that
  :meth:`to_json` can save them; arrays, floats, ints, strings, lists and dicts are supported.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "STEP_REGISTRY",
    "ElementwiseTransform",
    "FrozenTransform",
    "as_float_matrix",
    "register_step",
    "step_from_json",
]

STATE_VERSION = 1

#: Step classes by name, filled by :func:`register_step`; used by :func:`step_from_json`.
STEP_REGISTRY: dict[str, type[FrozenTransform]] = {}


def register_step(cls: type[FrozenTransform]) -> type[FrozenTransform]:
    """Class decorator: make a step loadable by :func:`step_from_json` under its class name."""
    STEP_REGISTRY[cls.__name__] = cls
    return cls


def as_float_matrix(X: ArrayLike, *, name: str = "X") -> NDArray[np.float64]:
    """``X`` as a 2-D float64 array (a copy only when needed); ±inf is an error.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    name : str
        Used in the error message.
    """
    array = np.asarray(X, dtype=np.float64)
    if array.ndim != 2:
        msg = f"{name} must be 2-D (samples x features), got shape {array.shape}."
        raise ValueError(msg)
    if np.isinf(array).any():
        rows, cols = np.nonzero(np.isinf(array))
        msg = f"{name} holds infinite values (first at sample {rows[0]}, feature {cols[0]}); replace them with NaN for missing."
        raise ValueError(msg)
    return array


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        data = value.tolist()
        if value.dtype.kind == "f":
            data = (
                np.where(np.isnan(value), None, value).tolist() if np.isnan(value).any() else data
            )
        return {"__ndarray__": data, "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__ndarray__" in value:
        dtype = np.dtype(value["dtype"])
        data = value["__ndarray__"]
        if dtype.kind == "f":
            return np.array(data, dtype=object).astype(np.float64).astype(dtype)
        if dtype.kind in "OUS":
            return np.asarray(data, dtype=object)
        return np.asarray(data, dtype=dtype)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class FrozenTransform(TransformerMixin, BaseEstimator):
    """Base class: a fit/transform step whose fitted state round-trips through JSON."""

    #: Fitted attributes saved by :meth:`to_json` (``n_features_in_`` is always saved).
    state_attributes: ClassVar[tuple[str, ...]] = ()
    #: Whether ``fit``/``transform`` need the samples' batch labels.
    uses_batch: ClassVar[bool] = False
    #: Whether the step reads the raw table itself (text columns included) instead of floats;
    #: such a step must come first in a chain.
    reads_text: ClassVar[bool] = False

    def _check_input(self, X: ArrayLike, *, reset: bool) -> NDArray[np.float64]:
        array = as_float_matrix(X)
        if reset:
            self.n_features_in_ = array.shape[1]
        else:
            check_is_fitted(self, "n_features_in_")
            if array.shape[1] != self.n_features_in_:
                msg = f"{type(self).__name__} was fitted on {self.n_features_in_} features but got {array.shape[1]}."
                raise ValueError(msg)
        return array

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """Output feature names: the input names, minus any a filter dropped.

        Steps that drop features set a boolean ``keep_`` mask; others keep every feature.
        """
        check_is_fitted(self, "n_features_in_")
        if input_features is None:
            names = np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
        else:
            names = np.asarray(input_features, dtype=object)
        keep = getattr(self, "keep_", None)
        return names if keep is None else names[keep]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def to_json(self) -> dict[str, Any]:
        """Fitted state as a JSON-serialisable dict (no pickle)."""
        check_is_fitted(self, "n_features_in_")
        attributes = ("n_features_in_", *self.state_attributes)
        return {
            "step": type(self).__name__,
            "state_version": STATE_VERSION,
            "params": _encode(self.get_params()),
            "state": {name: _encode(getattr(self, name)) for name in attributes},
        }

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> FrozenTransform:
        """Rebuild a fitted step from :meth:`to_json` output."""
        if state.get("state_version") != STATE_VERSION:
            msg = f"unsupported step state_version {state.get('state_version')!r}; expected {STATE_VERSION}."
            raise ValueError(msg)
        obj = cls(**_decode(state["params"]))
        for name, value in state["state"].items():
            setattr(obj, name, _decode(value))
        return obj


class ElementwiseTransform(FrozenTransform):
    """Base class of stateless, element-wise steps: ``fit`` only checks input and parameters.

    Subclasses implement :meth:`_apply`, which validates and transforms a float64 array.
    """

    def _apply(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        raise NotImplementedError

    def fit(
        self, X: ArrayLike, y: object = None, *, batch: ArrayLike | None = None
    ) -> ElementwiseTransform:
        """Check the input and the parameters; nothing is learned.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Raw values; NaN marks a missing value.
        y, batch : ignored

        Returns
        -------
        self
        """
        self._apply(self._check_input(X, reset=True))
        return self

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Apply the element-wise transform.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
        batch : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float64
        """
        return self._apply(self._check_input(X, reset=False))


class FeatureFilter(FrozenTransform):
    """Base class of filters: ``fit`` sets the boolean ``keep_`` mask, ``transform`` applies it."""

    def transform(self, X: ArrayLike, *, batch: ArrayLike | None = None) -> NDArray[np.float64]:
        """Keep the features that passed the filter in ``fit``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
        batch : ignored

        Returns
        -------
        ndarray of shape (n_samples, keep_.sum()), float64
        """
        X = self._check_input(X, reset=False)
        return X[:, np.asarray(self.keep_, dtype=bool)]


def step_from_json(state: dict[str, Any]) -> FrozenTransform:
    """Rebuild any registered step from its :meth:`FrozenTransform.to_json` output."""
    name = state.get("step")
    if name not in STEP_REGISTRY:
        msg = f"unknown normalisation step {name!r}; known: {sorted(STEP_REGISTRY)}."
        raise ValueError(msg)
    return STEP_REGISTRY[name].from_json(state)
