"""The XGBoost device of a run (``model.device``): CPU, or a CUDA GPU that must really be there.

XGBoost falls back to the CPU with only a warning when ``device="cuda"`` finds no GPU; a run
that asked for a GPU then trains for hours on the CPU without saying so. :func:`resolve_device`
turns that into an error before training starts.
"""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import xgboost as xgb

__all__ = ["DEVICES", "DeviceError", "resolve_device"]

#: Values of ``model.device``.
DEVICES = ("cpu", "cuda")


class DeviceError(RuntimeError):
    """The configured device cannot be used on this machine."""


@functools.cache
def _cuda_device_in_use() -> str:
    """The device a tiny booster asked for ``cuda`` actually trained on."""
    rng = np.random.default_rng(0)
    data = xgb.DMatrix(rng.random((16, 2), dtype=np.float32), label=rng.random(16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        booster = xgb.train(
            {"device": "cuda", "tree_method": "hist", "verbosity": 0}, data, num_boost_round=1
        )
    return str(json.loads(booster.save_config())["learner"]["generic_param"]["device"])


def resolve_device(device: str | None) -> str:
    """Check ``model.device`` and return the XGBoost ``device`` parameter.

    Parameters
    ----------
    device : str or None
        ``"cpu"`` (default) or ``"cuda"`` (``"cuda:<ordinal>"`` picks one GPU).

    Returns
    -------
    str
        The device to pass to XGBoost.

    Raises
    ------
    DeviceError
        If a GPU is asked for and this XGBoost build has no CUDA support or finds no GPU.
    ValueError
        If ``device`` is not a known device.
    """
    device = device or "cpu"
    kind = device.split(":", 1)[0]
    if kind not in DEVICES or (kind == "cpu" and device != "cpu"):
        msg = f"model.device: unknown device {device!r}; use 'cpu' or 'cuda' (or 'cuda:<n>')."
        raise ValueError(msg)
    if kind == "cpu":
        return device
    if not xgb.build_info().get("USE_CUDA"):
        msg = (
            f"model.device is {device!r}, but this XGBoost {xgb.__version__} was built without "
            "CUDA. Install the pip wheel (built with CUDA on Linux x86_64 and aarch64) or set "
            "model.device: cpu."
        )
        raise DeviceError(msg)
    if _cuda_device_in_use() == "cpu":
        msg = (
            f"model.device is {device!r}, but XGBoost finds no usable GPU on this machine "
            "(no CUDA device is visible; check nvidia-smi and CUDA_VISIBLE_DEVICES). On a "
            "cluster, request one for the training jobs (the workflow asks SLURM for a GPU "
            "when model.device is cuda); otherwise set model.device: cpu."
        )
        raise DeviceError(msg)
    return device
